/*
 * Domains of the VT-d driver (Linux's dmar_domain): what a device's context
 * entry points at, and map/unmap on second-level page tables.
 *
 * Kinds:
 *  - BLOCKED: attaching clears the device's context entry (DMA then faults
 *    with "context entry not present").
 *  - IDENTITY: DMA address = physical address.  Every IDENTITY domain of a
 *    unit shares one DID and one translation, held by the unit's identity
 *    master (u->identity, made on first use, freed with the unit), as
 *    Linux's si_domain: with ECAP.PT the context entry says pass-through
 *    (legacy TT = 10, scalable PGTT = PT); without it, a 1:1 page table
 *    over all RAM built from the firmware's memory map with the largest
 *    pages the unit allows.
 *  - UNMANAGED, DMA, DMA_FQ: a page table (pgtable.c) and a DID of their
 *    own.  IOVAs span the width the unit's depth gives (39/48/57 bits),
 *    capped by CAP.MGAW.
 *
 * Attaching (Linux's domain_context_mapping_one and the scalable-mode
 * PASID setup) programs the entry of the requester id the device's DMA
 * carries (its group's alias).  An entry that is present is first torn
 * down: cleared, the device's context-cache entry (and in scalable mode its
 * PASID-cache entry) and the old DID's IOTLB entries invalidated; then the
 * new entry is written with the present bit last and the context cache
 * invalidated for the device, so the unit never sees a half-written entry
 * nor keeps one it cached.  In caching mode (CAP.CM) the unit may cache
 * not-present entries too, so the new DID's IOTLB is also flushed.
 *  - legacy: lo = SLPTPTR | TT | P, hi = AW | DID << 8;
 *  - scalable: the context entry points at a PASID directory (PDTS = 0:
 *    128 entries) whose entry 0 links a PASID table; its entry 0 (the
 *    RID_PASID used by requests without PASID) says PGTT = second level
 *    with SSPTPTR, AW and DID, or PGTT = pass-through.  The two pages belong
 *    to the context entry: kept while it is replaced, freed once a blocked
 *    attach has cleared it and the invalidation completed (iommu.c frees
 *    what is left at shutdown).
 *
 * map goes to the page table (plus a page-selective flush in caching mode,
 * where a not-present -> present change must be invalidated); unmap clears
 * into the caller's gather without invalidating; iotlb_sync invalidates the
 * gathered range.  Locks: ctx_lock around a whole attach; the page table
 * has its own lock; map/unmap on disjoint ranges run concurrently.
 */
#include "host/iommu/intel/intel_iommu.h"

#include <vtio/mem.h>
#include <vtio/page_alloc.h>

#include <errno.h>
#include <stdlib.h>

#include "util/error.h"

#define SZ_2M (2ull << 20)
#define SZ_1G (1ull << 30)

struct intel_domain {
    struct vtio_iommu_domain dom;      /* first: what the core sees */
    struct intel_iommu *u;
    uint16_t did;                      /* 0: BLOCKED */
    bool pass_through;                 /* identity without tables */
    struct intel_pgtable *tables;      /* own, the identity master's, or NULL */
    struct intel_pgtable pt;           /* paging domains and the identity master */
};

static struct intel_domain *to_intel(struct vtio_iommu_domain *d)
{
    return (struct intel_domain *)d;
}

static uint64_t *va(struct intel_iommu *u, uint64_t pa)
{
    return vtio_host_phys_to_virt(u->host, pa);
}

static unsigned unit_aw(const struct intel_iommu *u)
{
    return u->levels - 2;              /* AW 1/2/3 = 3/4/5 levels */
}

/* ------------------------------------------------------------------------
 * Context entries
 */

/* Invalidation after an entry of rid changed from present (old_did) to
 * not present. */
static void flush_torn_down(struct intel_iommu *u, uint16_t rid, uint16_t old_did)
{
    intel_flush_context(u, VTD_INV_DEVICE, old_did, rid);
    if (u->scalable)
        intel_flush_pasid_cache(u, old_did, 0);
    intel_flush_iotlb(u, VTD_INV_DOMAIN, old_did, 0, 0);
}

/* Invalidation after an entry of rid became present with did. */
static void flush_set_up(struct intel_iommu *u, uint16_t rid, uint16_t did)
{
    intel_flush_context(u, VTD_INV_DEVICE, did, rid);
    if (u->scalable)
        intel_flush_pasid_cache(u, did, 0);
    if (u->cap & VTD_CAP_CM)
        intel_flush_iotlb(u, VTD_INV_DOMAIN, did, 0, 0);
    else if (u->cap & VTD_CAP_RWBF)
        intel_gcmd(u, VTD_GCMD_WBF, true);
}

static int attach_legacy(struct intel_domain *id, uint64_t *ce, uint16_t rid)
{
    struct intel_iommu *u = id->u;
    uint64_t lo = intel_load_entry(&ce[0]);
    if (lo & VTD_CTX_P) {
        uint16_t old_did = (uint16_t)VTD_CTX_DID(intel_load_entry(&ce[1]));
        intel_store_entry(&ce[0], 0);
        intel_store_entry(&ce[1], 0);
        flush_torn_down(u, rid, old_did);
    }
    if (id->dom.type == VTIO_IOMMU_DOMAIN_BLOCKED)
        return 0;
    lo = id->pass_through ? VTD_MAKE(VTD_CTX_TT_PASS_THROUGH, 3, VTD_CTX_TT_SHIFT)
                          : id->tables->root | VTD_MAKE(VTD_CTX_TT_MULTI_LEVEL, 3,
                                                        VTD_CTX_TT_SHIFT);
    intel_store_entry(&ce[1], VTD_MAKE(unit_aw(u), 2, 0) |
                                  VTD_MAKE(id->did, 23, VTD_CTX_DID_SHIFT));
    intel_store_entry(&ce[0], lo | VTD_CTX_P);
    flush_set_up(u, rid, id->did);
    return 0;
}

/* The RID_PASID entry (PASID 0) of a scalable-mode PASID table. */
static void write_pasid_entry(struct intel_domain *id, uint64_t *pe)
{
    struct intel_iommu *u = id->u;
    intel_store_entry(&pe[0], 0);
    for (unsigned i = 2; i < 8; i++)
        intel_store_entry(&pe[i], 0);
    intel_store_entry(&pe[1], VTD_MAKE(id->did, 15, 0));
    uint64_t q0 = VTD_MAKE(unit_aw(u), 4, VTD_PTE_AW_SHIFT) | VTD_PTE_P;
    if (id->pass_through)
        q0 |= VTD_MAKE(VTD_PGTT_PT, 8, VTD_PTE_PGTT_SHIFT);
    else
        q0 |= id->tables->root | VTD_MAKE(VTD_PGTT_SL, 8, VTD_PTE_PGTT_SHIFT);
    intel_store_entry(&pe[0], q0);
}

static int attach_scalable(struct intel_domain *id, uint64_t *ce, uint16_t rid)
{
    struct intel_iommu *u = id->u;
    struct vtio_page_alloc *pages = u->host->pages;
    uint64_t q0 = intel_load_entry(&ce[0]), dir_pa, tbl_pa;
    if (q0 & VTD_SM_CTX_P) {
        dir_pa = q0 & VTD_SM_CTX_PDIR_MASK;
        tbl_pa = intel_load_entry(va(u, dir_pa)) & VTD_PDIRE_PTBL_MASK;
        uint16_t old_did = (uint16_t)VTD_PTE_DID(intel_load_entry(&va(u, tbl_pa)[1]));
        intel_store_entry(&ce[0], 0);
        flush_torn_down(u, rid, old_did);
        if (id->dom.type == VTIO_IOMMU_DOMAIN_BLOCKED) {
            /* Unreachable now that the invalidation has completed. */
            vtio_page_free(pages, tbl_pa, 0);
            vtio_page_free(pages, dir_pa, 0);
            return 0;
        }
    } else {
        if (id->dom.type == VTIO_IOMMU_DOMAIN_BLOCKED)
            return 0;
        if (vtio_page_alloc(pages, 0, VTIO_PAGE_ZERO, &dir_pa) < 0)
            return vtio_fail(-ENOMEM, "%s: no page for a PASID directory", u->name);
        if (vtio_page_alloc(pages, 0, VTIO_PAGE_ZERO, &tbl_pa) < 0) {
            vtio_page_free(pages, dir_pa, 0);
            return vtio_fail(-ENOMEM, "%s: no page for a PASID table", u->name);
        }
    }
    write_pasid_entry(id, va(u, tbl_pa));
    intel_store_entry(va(u, dir_pa), tbl_pa | VTD_PDIRE_P);
    intel_store_entry(&ce[1], 0);      /* RID_PASID = 0 */
    intel_store_entry(&ce[2], 0);
    intel_store_entry(&ce[3], 0);
    intel_store_entry(&ce[0], dir_pa | VTD_MAKE(0, 11, VTD_SM_CTX_PDTS_SHIFT) | VTD_SM_CTX_P);
    flush_set_up(u, rid, id->did);
    return 0;
}

static int attach_rid(struct intel_domain *id, uint16_t rid)
{
    struct intel_iommu *u = id->u;
    pthread_mutex_lock(&u->ctx_lock);
    uint64_t *ce = intel_context_entry(u, rid);
    int ret = !ce ? -ENOMEM : u->scalable ? attach_scalable(id, ce, rid)
                                          : attach_legacy(id, ce, rid);
    pthread_mutex_unlock(&u->ctx_lock);
    return ret;
}

/* The context entries of every requester id the device's DMA may carry:
 * its own and, behind an aliasing bridge, the bridge's alias (as Linux's
 * pci_for_each_dma_alias).  Functions that share a group for another
 * reason (peer-to-peer) keep their own ids on the wire. */
static int intel_attach_dev(struct vtio_iommu_domain *d, struct vtio_device *dev)
{
    struct intel_domain *id = to_intel(d);
    if (!dev || dev->iommu_priv != id->u)
        return vtio_fail(-EINVAL, "%s: the device is not behind this unit", id->u->name);
    int ret = attach_rid(id, dev->rid);
    if (ret == 0 && dev->group && dev->dma_alias != dev->rid)
        ret = attach_rid(id, dev->dma_alias);
    return ret;
}

/* ------------------------------------------------------------------------
 * Mapping
 */

static int intel_map(struct vtio_iommu_domain *d, uint64_t iova, uint64_t pa, uint64_t size,
                     unsigned prot)
{
    struct intel_domain *id = to_intel(d);
    if (!id->tables || id->pass_through || d->type == VTIO_IOMMU_DOMAIN_IDENTITY)
        return vtio_fail(-EINVAL, "%s: a %s domain has no mappings of its own", id->u->name,
                         vtio_iommu_domain_type_name(d->type));
    int ret = intel_pgtable_map(id->tables, iova, pa, size, prot);
    /* Caching mode: the unit may hold the not-present entries. */
    if (!ret && (id->u->cap & VTD_CAP_CM))
        intel_flush_iotlb_range(id->u, id->did, iova, iova + size);
    return ret;
}

static uint64_t intel_unmap(struct vtio_iommu_domain *d, uint64_t iova, uint64_t size,
                            struct vtio_iommu_gather *g)
{
    struct intel_domain *id = to_intel(d);
    if (!id->tables || d->type == VTIO_IOMMU_DOMAIN_IDENTITY)
        return 0;
    return intel_pgtable_unmap(id->tables, iova, size, g);
}

static void intel_iotlb_sync(struct vtio_iommu_domain *d, struct vtio_iommu_gather *g)
{
    struct intel_domain *id = to_intel(d);
    if (id->did && g->start != g->end)
        intel_flush_iotlb_range(id->u, id->did, g->start, g->end);
}

static void intel_flush_all(struct vtio_iommu_domain *d)
{
    struct intel_domain *id = to_intel(d);
    if (id->did)
        intel_flush_iotlb(id->u, VTD_INV_DOMAIN, id->did, 0, 0);
}

static int intel_iova_to_phys(struct vtio_iommu_domain *d, uint64_t iova, uint64_t *pa)
{
    struct intel_domain *id = to_intel(d);
    if (id->pass_through) {            /* everything below the width, as the unit */
        if (iova > d->aperture_end)
            return -ENOENT;
        *pa = iova;
        return 0;
    }
    uint64_t base, page_size;
    unsigned prot;
    if (!id->tables || intel_pgtable_lookup(id->tables, iova, &base, &page_size, &prot) < 0)
        return -ENOENT;
    *pa = (base & ~(page_size - 1)) | (iova & (page_size - 1));
    return 0;
}

/* ------------------------------------------------------------------------
 * Life cycle
 */

static void domain_geometry(struct intel_domain *id)
{
    struct intel_iommu *u = id->u;
    unsigned width = VTD_AW_TO_WIDTH(unit_aw(u));
    unsigned mgaw = (unsigned)VTD_CAP_MGAW(u->cap) + 1;
    if (mgaw < width)
        width = mgaw;
    id->dom.aperture_end = width >= 64 ? UINT64_MAX : (1ull << width) - 1;
    id->dom.pgsize_bitmap = VTIO_PAGE_SIZE | (u->max_leaf_level >= 2 ? SZ_2M : 0) |
                            (u->max_leaf_level >= 3 ? SZ_1G : 0);
}

static struct intel_domain *domain_new(struct intel_iommu *u, enum vtio_iommu_domain_type t)
{
    struct intel_domain *id = calloc(1, sizeof(*id));
    if (!id) {
        vtio_fail(-ENOMEM, "%s: out of memory", u->name);
        return NULL;
    }
    id->u = u;
    id->dom.type = t;
    id->dom.ops = &intel_domain_ops;
    id->dom.iommu = u->host->iommu;
    id->dom.unit = u;
    atomic_init(&id->dom.fault_fn, NULL);
    atomic_init(&id->dom.fault_opaque, NULL);
    domain_geometry(id);
    return id;
}

/* A DID and a page table of the unit's depth.  @returns 0 or -errno. */
static int paging_init(struct intel_domain *id)
{
    int did = intel_did_alloc(id->u);
    if (did < 0)
        return did;
    int ret = intel_pgtable_init(&id->pt, id->u->host, id->u->levels, id->u->max_leaf_level);
    if (ret) {
        intel_did_free(id->u, (unsigned)did);
        return ret;
    }
    id->did = (uint16_t)did;
    id->tables = &id->pt;
    return 0;
}

struct identity_map {
    struct intel_pgtable *pt;
    int err;
};

static void identity_map_range(void *arg, uint64_t base, uint64_t size, const char *name)
{
    (void)name;
    struct identity_map *im = arg;
    if (!im->err)
        im->err = intel_pgtable_map(im->pt, base, base, size, VTIO_IOMMU_READ | VTIO_IOMMU_WRITE);
}

/* The unit's identity master: DID and, without ECAP.PT, the 1:1 tables.
 * ctx_lock held. */
static struct intel_domain *identity_master(struct intel_iommu *u)
{
    if (u->identity)
        return to_intel(u->identity);
    struct intel_domain *m = domain_new(u, VTIO_IOMMU_DOMAIN_IDENTITY);
    if (!m)
        return NULL;
    int ret;
    if (u->pass_through) {
        m->pass_through = true;
        ret = intel_did_alloc(u);
        if (ret >= 0) {
            m->did = (uint16_t)ret;
            ret = 0;
        }
    } else {
        ret = paging_init(m);
        if (!ret) {
            struct identity_map im = { .pt = m->tables };
            vtio_mem_for_each_ram(u->host->mem, identity_map_range, &im);
            ret = im.err;
            if (ret) {
                intel_pgtable_destroy(m->tables);
                intel_did_free(u, m->did);
            }
        }
    }
    if (ret) {
        free(m);
        return NULL;
    }
    u->identity = &m->dom;
    return m;
}

struct vtio_iommu_domain *intel_domain_alloc(void *drv, void *unit, enum vtio_iommu_domain_type t)
{
    (void)drv;
    struct intel_iommu *u = unit;
    if (!u) {
        vtio_fail(-EINVAL, "intel-iommu: a domain needs a unit");
        return NULL;
    }
    struct intel_domain *id, *m;
    switch (t) {
    case VTIO_IOMMU_DOMAIN_BLOCKED:
        return (id = domain_new(u, t)) ? &id->dom : NULL;
    case VTIO_IOMMU_DOMAIN_IDENTITY:
        pthread_mutex_lock(&u->ctx_lock);
        m = identity_master(u);
        pthread_mutex_unlock(&u->ctx_lock);
        if (!m || !(id = domain_new(u, t)))
            return NULL;
        id->did = m->did;
        id->pass_through = m->pass_through;
        id->tables = m->tables;
        return &id->dom;
    case VTIO_IOMMU_DOMAIN_UNMANAGED:
    case VTIO_IOMMU_DOMAIN_DMA:
    case VTIO_IOMMU_DOMAIN_DMA_FQ:
        if (!(id = domain_new(u, t)))
            return NULL;
        if (paging_init(id)) {
            free(id);
            return NULL;
        }
        return &id->dom;
    }
    vtio_fail(-EINVAL, "%s: unknown domain type %d", u->name, (int)t);
    return NULL;
}

static void intel_domain_free(struct vtio_iommu_domain *d)
{
    struct intel_domain *id = to_intel(d);
    /* An identity domain only borrows the master's DID and tables. */
    bool owner = id->tables == &id->pt || &id->dom == id->u->identity;
    if (owner) {
        if (id->tables)
            intel_pgtable_destroy(id->tables);
        intel_did_free(id->u, id->did);
    }
    free(id);
}

const struct vtio_iommu_domain_ops intel_domain_ops = {
    .attach_dev = intel_attach_dev,
    .map = intel_map,
    .unmap = intel_unmap,
    .iotlb_sync = intel_iotlb_sync,
    .flush_iotlb_all = intel_flush_all,
    .iova_to_phys = intel_iova_to_phys,
    .free = intel_domain_free,
};
