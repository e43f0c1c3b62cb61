/*
 * The VT-d driver (src/host/iommu/intel): what the hardware sees after the
 * host programs it.  The unit's registers (vtio_vtd_reg_read), the tables
 * in RAM and vtio_vtd_translate (the unit's own answer to a DMA request)
 * are the ground truth; the driver's structures are looked at only where a
 * test drives one unit by hand.
 */
#include "harness.h"

#include <vtio/dev/dma_engine.h>
#include <vtio/device.h>
#include <vtio/host.h>
#include <vtio/iommu.h>
#include <vtio/machine.h>
#include <vtio/mem.h>
#include <vtio/page_alloc.h>
#include <vtio/pci_enum.h>
#include <vtio/vtd.h>
#include <vtio/vtd_regs.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#include "host/iommu/intel/intel_iommu.h"

#define ENGINE_RID ((uint16_t)(VTIO_MACHINE_FIRST_DEV << 3))   /* 00:03.0 */
#define RW (VTIO_IOMMU_READ | VTIO_IOMMU_WRITE)

/* The host log, kept for tests that expect a message (any thread may log). */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[8192];

static void log_keep(void *opaque, int level, const char *msg)
{
    (void)opaque;
    (void)level;
    pthread_mutex_lock(&log_lock);
    size_t n = strlen(log_text);
    snprintf(log_text + n, sizeof(log_text) - n, "%s\n", msg);
    pthread_mutex_unlock(&log_lock);
}

static void log_clear(void)
{
    pthread_mutex_lock(&log_lock);
    log_text[0] = 0;
    pthread_mutex_unlock(&log_lock);
}

static bool logged(const char *what)
{
    pthread_mutex_lock(&log_lock);
    bool found = strstr(log_text, what) != NULL;
    pthread_mutex_unlock(&log_lock);
    return found;
}

static const struct vtio_host_options quiet_log = { .log_fn = log_keep };

struct rig {
    struct vtio_machine *m;
    struct vtio_host *h;
    struct vtio_device *dev;           /* the first DMA engine */
};

static void up(struct rig *r, const struct vtio_vtd_caps *caps,
               const struct vtio_host_options *o)
{
    struct vtio_machine_config mc = { .ram_size = 512 * VTIO_MiB };
    if (caps)
        mc.vtd_caps = *caps;
    CHECK_OK(vtio_machine_create(&mc, &r->m));
    struct vtio_host_options opts = o ? *o : quiet_log;
    opts.log_fn = log_keep;
    log_clear();
    CHECK_OK(vtio_host_boot_opts(r->m, &opts, &r->h));
    r->dev = vtio_host_device_by_rid(r->h, ENGINE_RID);
    CHECK(r->dev != NULL);
}

static void down(struct rig *r)
{
    vtio_host_shutdown(r->h);
    vtio_machine_destroy(r->m);
}

static uint64_t reg(struct rig *r, uint64_t off, unsigned size)
{
    return vtio_vtd_reg_read(r->m->vtd, off, size);
}

/* The unit's view of a DMA request without PASID. */
static int xlate(struct rig *r, uint16_t rid, uint64_t addr, bool write,
                 struct vtio_vtd_resp *resp)
{
    struct vtio_vtd_req req = { .sid = rid, .addr = addr, .write = write };
    *resp = (struct vtio_vtd_resp){ 0 };
    return vtio_vtd_translate(r->m->vtd, &req, resp);
}

/* The context entry of rid as the unit would read it (2 qwords legacy,
 * 4 scalable); false if the root entry does not link a table. */
static bool context_entry(struct rig *r, uint16_t rid, uint64_t ce[4])
{
    uint64_t rta = reg(r, VTD_RTADDR_REG, 8);
    bool sm = VTD_RTADDR_TTM(rta) == 1;
    uint64_t root = rta & VTD_RTADDR_ADDR_MASK;
    uint64_t re = vtio_mem_read64(r->m->mem, root + 16ull * (rid >> 8) +
                                                 (sm && (rid & 0x80) ? 8 : 0));
    if (!(re & VTD_ROOT_P))
        return false;
    uint64_t at = (re & VTD_ROOT_CTP_MASK) + (sm ? 32ull * (rid & 0x7f) : 16ull * (rid & 0xff));
    for (unsigned i = 0; i < (sm ? 4u : 2u); i++)
        ce[i] = vtio_mem_read64(r->m->mem, at + 8 * i);
    return true;
}

/* The RID_PASID (0) PASID-table entry behind a scalable context entry. */
static void pasid_entry(struct rig *r, const uint64_t ce[4], uint64_t pe[2])
{
    uint64_t dire = vtio_mem_read64(r->m->mem, ce[0] & VTD_SM_CTX_PDIR_MASK);
    CHECK(dire & VTD_PDIRE_P);
    uint64_t tbl = dire & VTD_PDIRE_PTBL_MASK;
    pe[0] = vtio_mem_read64(r->m->mem, tbl);
    pe[1] = vtio_mem_read64(r->m->mem, tbl + 8);
}

/* The descriptor of the k-th last submission (k = 1: the last), for
 * submissions of one descriptor and its wait, read from the queue. */
static void inv_desc_back(struct rig *r, unsigned k, uint64_t d[2])
{
    uint64_t iqa = reg(r, VTD_IQA_REG, 8);
    unsigned dsz = (iqa & VTD_IQA_DW) ? 32 : 16;
    uint64_t qsize = 4096ull << VTD_IQA_QS(iqa);
    uint64_t tail = reg(r, VTD_IQT_REG, 8);
    CHECK_EQ(tail, reg(r, VTD_IQH_REG, 8));          /* all processed */
    uint64_t wait = (tail + qsize - (2 * k - 1) * dsz) % qsize;
    uint64_t at = (wait + qsize - dsz) % qsize;
    uint64_t base = iqa & VTD_IQA_ADDR_MASK;
    CHECK_EQ(VTD_INV_TYPE(vtio_mem_read64(r->m->mem, base + wait)), VTD_INV_DESC_WAIT);
    d[0] = vtio_mem_read64(r->m->mem, base + at);
    d[1] = vtio_mem_read64(r->m->mem, base + at + 8);
}

static void last_inv_desc(struct rig *r, uint64_t d[2])
{
    inv_desc_back(r, 1, d);
}

static uint64_t qi_descriptors(struct rig *r)
{
    struct vtio_vtd_stats st;
    vtio_vtd_get_stats(r->m->vtd, &st);
    return st.qi_descriptors;
}

static uint64_t page(struct rig *r)
{
    uint64_t pa;
    CHECK_OK(vtio_page_alloc(r->h->pages, 0, VTIO_PAGE_ZERO, &pa));
    return pa;
}

/* An UNMANAGED domain attached to the engine's group. */
static struct vtio_iommu_domain *own_domain(struct rig *r)
{
    struct vtio_iommu_domain *d;
    CHECK_OK(vtio_iommu_domain_alloc(r->dev, VTIO_IOMMU_DOMAIN_UNMANAGED, &d));
    CHECK_OK(vtio_iommu_attach_group(d, vtio_iommu_group_get(r->dev)));
    return d;
}

static void release(struct rig *r, struct vtio_iommu_domain *d)
{
    CHECK_OK(vtio_iommu_detach_group(d, vtio_iommu_group_get(r->dev)));
    CHECK_OK(vtio_iommu_domain_free(d));
}

/* Map, translate (which caches it), unmap, translate again: must fault. */
static void check_map_unmap(struct rig *r)
{
    struct vtio_iommu_domain *d = own_domain(r);
    uint64_t pa = page(r), iova = 0x40000000, iova_ro = 0x40001000;
    struct vtio_vtd_resp resp;
    CHECK_OK(vtio_iommu_map(d, iova, pa, VTIO_PAGE_SIZE, RW));
    CHECK_OK(vtio_iommu_map(d, iova_ro, pa, VTIO_PAGE_SIZE, VTIO_IOMMU_READ));

    CHECK_OK(xlate(r, ENGINE_RID, iova + 0x123, true, &resp));
    CHECK_EQ(resp.pa, pa + 0x123);
    CHECK(resp.read && resp.write);
    CHECK_OK(xlate(r, ENGINE_RID, iova_ro, false, &resp));
    CHECK_EQ(resp.pa, pa);
    CHECK(resp.read && !resp.write);
    CHECK_ERR(xlate(r, ENGINE_RID, iova_ro, true, &resp), -EFAULT);
    CHECK_EQ(resp.fault, VTD_FR_WRITE);

    CHECK_EQ(vtio_iommu_unmap(d, iova, VTIO_PAGE_SIZE), VTIO_PAGE_SIZE);
    CHECK_ERR(xlate(r, ENGINE_RID, iova, false, &resp), -EFAULT);
    CHECK_OK(xlate(r, ENGINE_RID, iova_ro, false, &resp));   /* untouched */
    CHECK_EQ(vtio_iommu_unmap(d, iova_ro, VTIO_PAGE_SIZE), VTIO_PAGE_SIZE);
    CHECK_ERR(xlate(r, ENGINE_RID, iova_ro, false, &resp), -EFAULT);
    release(r, d);
    CHECK_OK(vtio_page_free(r->h->pages, pa, 0));
}

/* ------------------------------------------------------------------------ */

static void t_bringup(void)
{
    struct rig r;
    up(&r, NULL, NULL);
    uint32_t gsts = (uint32_t)reg(&r, VTD_GSTS_REG, 4);
    CHECK(gsts & VTD_GSTS_TES);
    CHECK(gsts & VTD_GSTS_RTPS);
    CHECK(gsts & VTD_GSTS_QIES);
    CHECK(gsts & VTD_GSTS_IRES);
    CHECK(r.h->irq_remap != NULL);
    CHECK_EQ(VTD_RTADDR_TTM(reg(&r, VTD_RTADDR_REG, 8)), 0);    /* legacy */
    /* The queue: 128-bit descriptors in one page, nothing pending. */
    uint64_t iqa = reg(&r, VTD_IQA_REG, 8);
    CHECK_EQ(iqa & (VTD_IQA_DW | 7), 0);
    CHECK_EQ(reg(&r, VTD_IQH_REG, 8), reg(&r, VTD_IQT_REG, 8));

    /* The engine's context entry: its DMA-FQ default domain, 4 levels. */
    uint64_t ce[4];
    CHECK(context_entry(&r, ENGINE_RID, ce));
    CHECK(ce[0] & VTD_CTX_P);
    CHECK_EQ(VTD_CTX_TT(ce[0]), VTD_CTX_TT_MULTI_LEVEL);
    CHECK_EQ(VTD_CTX_AW(ce[1]), 2);
    CHECK_NE(VTD_CTX_DID(ce[1]), 0);
    CHECK_NE(ce[0] & VTD_CTX_SLPTPTR_MASK, 0);
    struct vtio_iommu_group *g = vtio_iommu_group_get(r.dev);
    CHECK(g != NULL);
    struct vtio_iommu_domain *d = vtio_iommu_group_domain(g);
    CHECK_EQ(vtio_iommu_domain_type(d), VTIO_IOMMU_DOMAIN_DMA_FQ);
    uint64_t end, pgsizes;
    vtio_iommu_domain_geometry(d, &end, &pgsizes);
    CHECK_EQ(end, (1ull << 48) - 1);
    CHECK_EQ(pgsizes, VTIO_PAGE_SIZE | (2ull << 20) | (1ull << 30));
    /* Nothing mapped yet: the device's DMA faults. */
    struct vtio_vtd_resp resp;
    CHECK_ERR(xlate(&r, ENGINE_RID, 0x100000, false, &resp), -EFAULT);
    down(&r);
}

static void t_map_unmap(void)
{
    struct rig r;
    up(&r, NULL, NULL);
    check_map_unmap(&r);
    /* The old DMA domain is back in the context entry. */
    uint64_t ce[4];
    CHECK(context_entry(&r, ENGINE_RID, ce));
    CHECK(ce[0] & VTD_CTX_P);
    down(&r);
}

static void t_attach_switches_did(void)
{
    struct rig r;
    up(&r, NULL, NULL);
    uint64_t ce[4];
    CHECK(context_entry(&r, ENGINE_RID, ce));
    unsigned old_did = (unsigned)VTD_CTX_DID(ce[1]);
    struct vtio_iommu_domain *d = own_domain(&r);
    CHECK(context_entry(&r, ENGINE_RID, ce));
    CHECK_NE(VTD_CTX_DID(ce[1]), old_did);
    CHECK_NE(VTD_CTX_DID(ce[1]), 0);
    /* Linux's order: the old entry's context cache, the old DID's IOTLB,
     * then (new entry written) the context cache again. */
    uint64_t desc[2];
    inv_desc_back(&r, 3, desc);
    CHECK_EQ(VTD_INV_TYPE(desc[0]), VTD_INV_DESC_CC);
    CHECK_EQ(VTD_INV_G(desc[0]), VTD_INV_DEVICE);
    CHECK_EQ(VTD_INV_CC_SID(desc[0]), ENGINE_RID);
    CHECK_EQ(VTD_INV_DID(desc[0]), old_did);
    inv_desc_back(&r, 2, desc);
    CHECK_EQ(VTD_INV_TYPE(desc[0]), VTD_INV_DESC_IOTLB);
    CHECK_EQ(VTD_INV_G(desc[0]), VTD_INV_DOMAIN);
    CHECK_EQ(VTD_INV_DID(desc[0]), old_did);
    inv_desc_back(&r, 1, desc);
    CHECK_EQ(VTD_INV_TYPE(desc[0]), VTD_INV_DESC_CC);
    CHECK_EQ(VTD_INV_G(desc[0]), VTD_INV_DEVICE);
    CHECK_EQ(VTD_INV_CC_SID(desc[0]), ENGINE_RID);
    CHECK_EQ(VTD_INV_DID(desc[0]), VTD_CTX_DID(ce[1]));
    release(&r, d);
    CHECK(context_entry(&r, ENGINE_RID, ce));
    CHECK_EQ(VTD_CTX_DID(ce[1]), old_did);
    down(&r);
}

static void t_did_reuse(void)
{
    /* A translation cached under a domain's DID must not outlive the
     * domain's attachment: the next domain that gets the DID sees nothing
     * of it. */
    struct rig r;
    up(&r, NULL, NULL);
    struct vtio_iommu_domain *a = own_domain(&r);
    uint64_t pa = page(&r), ce[4];
    struct vtio_vtd_resp resp;
    CHECK_OK(vtio_iommu_map(a, 0x9000, pa, VTIO_PAGE_SIZE, RW));
    CHECK_OK(xlate(&r, ENGINE_RID, 0x9000, false, &resp));
    CHECK(context_entry(&r, ENGINE_RID, ce));
    unsigned did_a = (unsigned)VTD_CTX_DID(ce[1]);
    CHECK_OK(vtio_iommu_detach_group(a, vtio_iommu_group_get(r.dev)));
    CHECK_OK(vtio_iommu_domain_free(a));        /* no unmap: the tables just go */
    struct vtio_iommu_domain *b = own_domain(&r);
    CHECK(context_entry(&r, ENGINE_RID, ce));
    CHECK_EQ(VTD_CTX_DID(ce[1]), did_a);
    CHECK_ERR(xlate(&r, ENGINE_RID, 0x9000, false, &resp), -EFAULT);
    release(&r, b);
    down(&r);
}

/* Threads mapping and unmapping disjoint ranges of one domain: every unmap
 * is invalidated before it returns, whichever thread submits. */
struct worker {
    struct rig *r;
    struct vtio_iommu_domain *d;
    uint64_t iova, pa;
    unsigned errors;
};

static void *map_unmap_worker(void *arg)
{
    struct worker *w = arg;
    struct vtio_vtd_resp resp;
    for (unsigned i = 0; i < 200; i++) {
        uint64_t iova = w->iova + (i % 16) * VTIO_PAGE_SIZE;
        if (vtio_iommu_map(w->d, iova, w->pa, VTIO_PAGE_SIZE, RW) ||
            xlate(w->r, ENGINE_RID, iova, true, &resp) || resp.pa != w->pa ||
            vtio_iommu_unmap(w->d, iova, VTIO_PAGE_SIZE) != VTIO_PAGE_SIZE ||
            xlate(w->r, ENGINE_RID, iova, false, &resp) != -EFAULT)
            w->errors++;
    }
    return NULL;
}

static void t_concurrent_unmaps(void)
{
    struct rig r;
    up(&r, NULL, NULL);
    struct vtio_iommu_domain *d = own_domain(&r);
    struct worker w[4];
    pthread_t t[4];
    for (unsigned i = 0; i < 4; i++) {
        w[i] = (struct worker){ .r = &r, .d = d, .iova = (uint64_t)(i + 1) << 30,
                                .pa = page(&r) };
        CHECK_OK(-pthread_create(&t[i], NULL, map_unmap_worker, &w[i]));
    }
    for (unsigned i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (unsigned i = 0; i < 4; i++)
        CHECK_EQ(w[i].errors, 0);
    CHECK_EQ(reg(&r, VTD_FSTS_REG, 4) & (VTD_FSTS_IQE | VTD_FSTS_ITE), 0);
    release(&r, d);
    down(&r);
}

static void t_psi_and_dsi(void)
{
    struct rig r;
    up(&r, NULL, NULL);
    struct vtio_iommu_domain *d = own_domain(&r);
    uint64_t pa = page(&r), desc[2];
    uint64_t ce[4];
    CHECK(context_entry(&r, ENGINE_RID, ce));
    uint16_t did = (uint16_t)VTD_CTX_DID(ce[1]);

    /* One page: page-selective, AM 0. */
    CHECK_OK(vtio_iommu_map(d, 0x7000, pa, VTIO_PAGE_SIZE, RW));
    CHECK_EQ(vtio_iommu_unmap(d, 0x7000, VTIO_PAGE_SIZE), VTIO_PAGE_SIZE);
    last_inv_desc(&r, desc);
    CHECK_EQ(VTD_INV_TYPE(desc[0]), VTD_INV_DESC_IOTLB);
    CHECK_EQ(VTD_INV_G(desc[0]), VTD_INV_PAGE);
    CHECK_EQ(VTD_INV_DID(desc[0]), did);
    CHECK_EQ(VTD_INV_ADDR(desc[1]), 0x7000);
    CHECK_EQ(VTD_INV_AM(desc[1]), 0);

    /* Two pages across a 4 MiB boundary: the aligned 8 MiB block, AM 11. */
    CHECK_OK(vtio_iommu_map(d, 0x3ff000, pa, VTIO_PAGE_SIZE, RW));
    CHECK_OK(vtio_iommu_map(d, 0x400000, pa, VTIO_PAGE_SIZE, RW));
    CHECK_EQ(vtio_iommu_unmap(d, 0x3ff000, 2 * VTIO_PAGE_SIZE), 2 * VTIO_PAGE_SIZE);
    last_inv_desc(&r, desc);
    CHECK_EQ(VTD_INV_G(desc[0]), VTD_INV_PAGE);
    CHECK_EQ(VTD_INV_AM(desc[1]), 11);
    CHECK_EQ(VTD_INV_ADDR(desc[1]), 0);

    /* 2 GiB: a mask of 19 is above the unit's MAMV (18): domain-selective. */
    CHECK_LT(VTD_CAP_MAMV(reg(&r, VTD_CAP_REG, 8)), 19);
    CHECK_OK(vtio_iommu_map(d, 1ull << 30, 0, 2ull << 30, RW));
    CHECK_EQ(vtio_iommu_unmap(d, 1ull << 30, 2ull << 30), 2ull << 30);
    last_inv_desc(&r, desc);
    CHECK_EQ(VTD_INV_TYPE(desc[0]), VTD_INV_DESC_IOTLB);
    CHECK_EQ(VTD_INV_G(desc[0]), VTD_INV_DOMAIN);
    CHECK_EQ(VTD_INV_DID(desc[0]), did);
    release(&r, d);
    down(&r);
}

static void t_register_invalidation(void)
{
    struct rig r;
    struct vtio_vtd_caps caps = { .no_queued_inv = true, .no_intr_remap = true };
    up(&r, &caps, NULL);
    uint32_t gsts = (uint32_t)reg(&r, VTD_GSTS_REG, 4);
    CHECK(gsts & VTD_GSTS_TES);
    CHECK(!(gsts & (VTD_GSTS_QIES | VTD_GSTS_IRES)));
    CHECK(r.h->irq_remap == NULL);
    check_map_unmap(&r);
    CHECK_EQ(qi_descriptors(&r), 0);
    down(&r);
}

static void t_no_intr_remap_option(void)
{
    struct rig r;
    struct vtio_host_options o = { .no_intr_remap = true };
    up(&r, NULL, &o);
    uint32_t gsts = (uint32_t)reg(&r, VTD_GSTS_REG, 4);
    CHECK(gsts & VTD_GSTS_QIES);
    CHECK(!(gsts & VTD_GSTS_IRES));
    CHECK(r.h->irq_remap == NULL);
    down(&r);
}

static void t_scalable(void)
{
    struct rig r;
    struct vtio_vtd_caps caps = { .scalable = true };
    struct vtio_host_options o = { .scalable_mode = true };
    up(&r, &caps, &o);
    CHECK_EQ(VTD_RTADDR_TTM(reg(&r, VTD_RTADDR_REG, 8)), 1);
    CHECK(reg(&r, VTD_IQA_REG, 8) & VTD_IQA_DW);
    uint64_t ce[4], pe[2];
    CHECK(context_entry(&r, ENGINE_RID, ce));
    CHECK(ce[0] & VTD_SM_CTX_P);
    CHECK_EQ(VTD_SM_CTX_RID_PASID(ce[1]), 0);
    pasid_entry(&r, ce, pe);
    CHECK(pe[0] & VTD_PTE_P);
    CHECK_EQ(VTD_PTE_PGTT(pe[0]), VTD_PGTT_SL);
    CHECK_EQ(VTD_PTE_AW(pe[0]), 2);
    CHECK_NE(VTD_PTE_DID(pe[1]), 0);
    CHECK_NE(pe[0] & VTD_PTE_SSPTPTR_MASK, 0);
    check_map_unmap(&r);
    down(&r);
}

static void t_scalable_needs_option(void)
{
    struct rig r;
    struct vtio_vtd_caps caps = { .scalable = true };
    up(&r, &caps, NULL);
    CHECK_EQ(VTD_RTADDR_TTM(reg(&r, VTD_RTADDR_REG, 8)), 0);
    check_map_unmap(&r);
    down(&r);
}

static void check_identity(struct rig *r)
{
    struct vtio_vtd_resp resp;
    uint64_t pa = page(r);
    CHECK_OK(xlate(r, ENGINE_RID, pa + 0x10, true, &resp));
    CHECK_EQ(resp.pa, pa + 0x10);
    CHECK_OK(xlate(r, ENGINE_RID, 0x300000, false, &resp));
    CHECK_EQ(resp.pa, 0x300000);
    struct vtio_iommu_domain *d = vtio_iommu_group_domain(vtio_iommu_group_get(r->dev));
    CHECK_EQ(vtio_iommu_domain_type(d), VTIO_IOMMU_DOMAIN_IDENTITY);
    uint64_t out;
    CHECK_OK(vtio_iommu_iova_to_phys(d, pa, &out));
    CHECK_EQ(out, pa);
}

static void t_identity_pass_through(void)
{
    struct rig r;
    struct vtio_host_options o = { .iommu_mode = VTIO_HOST_IOMMU_PASSTHROUGH };
    up(&r, NULL, &o);
    uint64_t ce[4];
    CHECK(context_entry(&r, ENGINE_RID, ce));
    CHECK(ce[0] & VTD_CTX_P);
    CHECK_EQ(VTD_CTX_TT(ce[0]), VTD_CTX_TT_PASS_THROUGH);
    check_identity(&r);
    down(&r);
}

static void t_identity_tables(void)
{
    struct rig r;
    struct vtio_vtd_caps caps = { .no_pass_through = true };
    struct vtio_host_options o = { .iommu_mode = VTIO_HOST_IOMMU_PASSTHROUGH };
    up(&r, &caps, &o);
    uint64_t ce[4];
    CHECK(context_entry(&r, ENGINE_RID, ce));
    CHECK_EQ(VTD_CTX_TT(ce[0]), VTD_CTX_TT_MULTI_LEVEL);
    check_identity(&r);
    /* 1:1 over RAM in large pages (512 MiB of RAM: 2 MiB leaves). */
    struct vtio_vtd_resp resp;
    CHECK_OK(xlate(&r, ENGINE_RID, 0x1234000, false, &resp));
    CHECK_EQ(resp.page_size, 2ull << 20);
    /* Not RAM: not mapped. */
    CHECK_ERR(xlate(&r, ENGINE_RID, 1ull << 40, false, &resp), -EFAULT);
    down(&r);
}

static void t_identity_scalable(void)
{
    struct rig r;
    struct vtio_vtd_caps caps = { .scalable = true };
    struct vtio_host_options o = { .scalable_mode = true,
                                   .iommu_mode = VTIO_HOST_IOMMU_PASSTHROUGH };
    up(&r, &caps, &o);
    uint64_t ce[4], pe[2];
    CHECK(context_entry(&r, ENGINE_RID, ce));
    pasid_entry(&r, ce, pe);
    CHECK_EQ(VTD_PTE_PGTT(pe[0]), VTD_PGTT_PT);
    check_identity(&r);
    down(&r);

    caps.no_pass_through = true;
    up(&r, &caps, &o);
    CHECK(context_entry(&r, ENGINE_RID, ce));
    pasid_entry(&r, ce, pe);
    CHECK_EQ(VTD_PTE_PGTT(pe[0]), VTD_PGTT_SL);
    check_identity(&r);
    down(&r);
}

static void t_caching_mode(void)
{
    struct rig r;
    struct vtio_vtd_caps caps = { .caching_mode = true };
    up(&r, &caps, NULL);
    /* Lazy (the default) becomes strict, as in Linux. */
    struct vtio_iommu_domain *dd = vtio_iommu_group_domain(vtio_iommu_group_get(r.dev));
    CHECK_EQ(vtio_iommu_domain_type(dd), VTIO_IOMMU_DOMAIN_DMA);
    struct vtio_iommu_domain *d = own_domain(&r);
    uint64_t pa = page(&r), desc[2];
    uint64_t before = qi_descriptors(&r);
    CHECK_OK(vtio_iommu_map(&*d, 0x5000, pa, VTIO_PAGE_SIZE, RW));
    CHECK_EQ(qi_descriptors(&r), before + 2);       /* PSI and its wait */
    last_inv_desc(&r, desc);
    CHECK_EQ(VTD_INV_TYPE(desc[0]), VTD_INV_DESC_IOTLB);
    CHECK_EQ(VTD_INV_G(desc[0]), VTD_INV_PAGE);
    CHECK_EQ(VTD_INV_ADDR(desc[1]), 0x5000);
    release(&r, d);
    down(&r);

    /* Without caching mode a map submits nothing. */
    up(&r, NULL, NULL);
    d = own_domain(&r);
    pa = page(&r);
    before = qi_descriptors(&r);
    CHECK_OK(vtio_iommu_map(d, 0x5000, pa, VTIO_PAGE_SIZE, RW));
    CHECK_EQ(qi_descriptors(&r), before);
    release(&r, d);
    down(&r);
}

static void check_width(unsigned addr_width, unsigned aw, unsigned width)
{
    struct rig r;
    struct vtio_vtd_caps caps = { .addr_width = addr_width };
    up(&r, &caps, NULL);
    uint64_t ce[4];
    CHECK(context_entry(&r, ENGINE_RID, ce));
    CHECK_EQ(VTD_CTX_AW(ce[1]), aw);
    struct vtio_iommu_domain *d = own_domain(&r);
    uint64_t end, pgsizes;
    vtio_iommu_domain_geometry(d, &end, &pgsizes);
    CHECK_EQ(end, (1ull << width) - 1);
    uint64_t pa = page(&r), top = (1ull << width) - VTIO_PAGE_SIZE;
    CHECK_OK(vtio_iommu_map(d, top, pa, VTIO_PAGE_SIZE, RW));
    struct vtio_vtd_resp resp;
    CHECK_OK(xlate(&r, ENGINE_RID, top + 8, false, &resp));
    CHECK_EQ(resp.pa, pa + 8);
    CHECK_ERR(vtio_iommu_map(d, 1ull << width, pa, VTIO_PAGE_SIZE, RW), -EINVAL);
    CHECK_EQ(vtio_iommu_unmap(d, top, VTIO_PAGE_SIZE), VTIO_PAGE_SIZE);
    release(&r, d);
    down(&r);
}

static void t_widths(void)
{
    check_width(39, 1, 39);
    check_width(48, 2, 48);
    check_width(57, 2, 48);     /* 4 levels where SAGAW has them */
}

static void t_superpages(void)
{
    struct rig r;
    up(&r, NULL, NULL);
    struct vtio_iommu_domain *d = own_domain(&r);
    uint64_t blk;
    CHECK_OK(vtio_page_alloc(r.h->pages, VTIO_PAGE_ORDER_2M, 0, &blk));
    CHECK_OK(vtio_iommu_map(d, 0x40000000, blk, 2ull << 20, RW));
    struct vtio_vtd_resp resp;
    CHECK_OK(xlate(&r, ENGINE_RID, 0x40000000 + 0x12345, false, &resp));
    CHECK_EQ(resp.page_size, 2ull << 20);
    CHECK_EQ(resp.pa, blk + 0x12345);
    release(&r, d);
    down(&r);

    struct vtio_vtd_caps caps = { .no_2m_pages = true, .no_1g_pages = true };
    up(&r, &caps, NULL);
    d = own_domain(&r);
    uint64_t end, pgsizes;
    vtio_iommu_domain_geometry(d, &end, &pgsizes);
    CHECK_EQ(pgsizes, VTIO_PAGE_SIZE);
    CHECK_OK(vtio_page_alloc(r.h->pages, VTIO_PAGE_ORDER_2M, 0, &blk));
    CHECK_OK(vtio_iommu_map(d, 0x40000000, blk, 2ull << 20, RW));
    CHECK_OK(xlate(&r, ENGINE_RID, 0x40000000 + 0x12345, false, &resp));
    CHECK_EQ(resp.page_size, VTIO_PAGE_SIZE);
    CHECK_EQ(resp.pa, blk + 0x12345);
    release(&r, d);
    down(&r);

    struct vtio_vtd_caps no1g = { .no_1g_pages = true };
    up(&r, &no1g, NULL);
    d = own_domain(&r);
    vtio_iommu_domain_geometry(d, &end, &pgsizes);
    CHECK_EQ(pgsizes, VTIO_PAGE_SIZE | (2ull << 20));
    release(&r, d);
    down(&r);
}

static void check_blocked(struct rig *r)
{
    struct vtio_iommu_domain *b;
    CHECK_OK(vtio_iommu_domain_alloc(r->dev, VTIO_IOMMU_DOMAIN_BLOCKED, &b));
    struct vtio_iommu_group *g = vtio_iommu_group_get(r->dev);
    struct vtio_vtd_resp resp;
    CHECK_OK(vtio_iommu_attach_group(b, g));
    uint64_t ce[4];
    CHECK(context_entry(r, ENGINE_RID, ce));
    CHECK(!(ce[0] & VTD_CTX_P));
    CHECK_ERR(xlate(r, ENGINE_RID, 0x1000, false, &resp), -EFAULT);
    CHECK_EQ(resp.fault, VTD_FR_CONTEXT_ENTRY_P);
    /* Reported through the driver's fault_sync. */
    CHECK_GE(vtio_iommu_fault_sync(r->h), 1);
    struct vtio_iommu_fault f[VTIO_IOMMU_FAULT_LOG];
    unsigned n = vtio_iommu_fault_log(r->h, f, VTIO_IOMMU_FAULT_LOG);
    CHECK_GE(n, 1);
    CHECK_EQ(f[n - 1].reason, VTD_FR_CONTEXT_ENTRY_P);
    CHECK_EQ(f[n - 1].sid, ENGINE_RID);
    CHECK_EQ(f[n - 1].addr, 0x1000);
    CHECK(f[n - 1].unit && strcmp(f[n - 1].unit, "dmar0") == 0);
    CHECK_OK(vtio_iommu_detach_group(b, g));
    CHECK(context_entry(r, ENGINE_RID, ce));
    CHECK(ce[0] & VTD_CTX_P);
    CHECK_OK(vtio_iommu_domain_free(b));
}

static void t_blocked(void)
{
    struct rig r;
    up(&r, NULL, NULL);
    check_blocked(&r);
    down(&r);
    struct vtio_vtd_caps caps = { .scalable = true };
    struct vtio_host_options o = { .scalable_mode = true };
    up(&r, &caps, &o);
    check_blocked(&r);
    check_map_unmap(&r);
    down(&r);
}

static void t_device_scope(void)
{
    /* A DRHD that lists only the first engine: the second is not behind
     * any unit and gets no group. */
    struct vtio_machine_config mc = { .ram_size = 256 * VTIO_MiB, .dma_engines = 2 };
    struct rig r;
    CHECK_OK(vtio_machine_create(&mc, &r.m));
    struct vtio_dmar_drhd *d = &r.m->fw.dmar.drhd[0];
    d->include_all = false;
    d->n_scope = 1;
    d->scope[0] = ENGINE_RID;
    CHECK_OK(vtio_host_boot_opts(r.m, &quiet_log, &r.h));
    struct vtio_device *a = vtio_host_device_by_rid(r.h, ENGINE_RID);
    struct vtio_device *b = vtio_host_device_by_rid(r.h, ENGINE_RID + 8);
    CHECK(a && b);
    CHECK(vtio_iommu_group_get(a) != NULL);
    CHECK(vtio_iommu_group_get(b) == NULL);
    down(&r);
}

static void t_shutdown(void)
{
    struct rig r;
    up(&r, NULL, NULL);
    vtio_host_shutdown(r.h);
    uint32_t gsts = (uint32_t)vtio_vtd_reg_read(r.m->vtd, VTD_GSTS_REG, 4);
    CHECK(!(gsts & (VTD_GSTS_TES | VTD_GSTS_QIES | VTD_GSTS_IRES)));
    vtio_machine_destroy(r.m);
}

/* ------------------------------------------------------------------------
 * One unit driven by hand on a host booted without the IOMMU.
 */


struct unit_rig {
    struct rig r;
    struct intel_iommu u;
    uint64_t allocated;        /* page allocator, before the unit */
};

static uint64_t allocated_bytes(struct vtio_host *h)
{
    struct vtio_page_alloc_stats st;
    vtio_page_alloc_get_stats(h->pages, &st);
    return st.allocated_bytes;
}

static void unit_up(struct unit_rig *ur, const struct vtio_vtd_caps *caps,
                    const struct vtio_host_options *extra)
{
    struct vtio_machine_config mc = { .ram_size = 256 * VTIO_MiB };
    if (caps)
        mc.vtd_caps = *caps;
    CHECK_OK(vtio_machine_create(&mc, &ur->r.m));
    struct vtio_host_options o = extra ? *extra : quiet_log;
    o.iommu_off = true;
    o.log_fn = log_keep;
    log_clear();
    CHECK_OK(vtio_host_boot_opts(ur->r.m, &o, &ur->r.h));
    ur->allocated = allocated_bytes(ur->r.h);
    CHECK_OK(intel_unit_init(&ur->u, ur->r.h, &ur->r.h->fw.dmar.drhd[0], 0));
}

static void unit_down(struct unit_rig *ur)
{
    intel_unit_shutdown(&ur->u);
    CHECK_EQ(allocated_bytes(ur->r.h), ur->allocated);     /* every page back */
    down(&ur->r);
}

static void t_unit_bringup(void)
{
    struct unit_rig ur;
    unit_up(&ur, NULL, NULL);
    struct rig *r = &ur.r;
    uint32_t gsts = (uint32_t)reg(r, VTD_GSTS_REG, 4);
    CHECK(gsts & VTD_GSTS_RTPS);
    CHECK(gsts & VTD_GSTS_QIES);
    CHECK(!(gsts & VTD_GSTS_TES));      /* not before the domains are there */
    CHECK_EQ(reg(r, VTD_RTADDR_REG, 8), ur.u.root_table);
    CHECK_EQ(ur.u.levels, 4);
    CHECK_EQ(ur.u.max_leaf_level, 3);
    CHECK(!ur.u.scalable);
    CHECK(ur.u.qi != NULL);
    CHECK_EQ(ur.u.gcmd & VTD_GCMD_ONE_SHOT, 0);
    CHECK_EQ(ur.u.n_dids, 1u << 16);
    CHECK_ERR(intel_gcmd(&ur.u, VTD_GCMD_TE | VTD_GCMD_QIE, true), -EINVAL);
    CHECK_OK(intel_unit_enable_translation(&ur.u));
    CHECK(reg(r, VTD_GSTS_REG, 4) & VTD_GSTS_TES);
    intel_unit_shutdown(&ur.u);
    gsts = (uint32_t)reg(r, VTD_GSTS_REG, 4);
    CHECK(!(gsts & (VTD_GSTS_TES | VTD_GSTS_QIES | VTD_GSTS_IRES)));
    CHECK_EQ(allocated_bytes(r->h), ur.allocated);
    down(r);
}

static void t_unit_domains_freed(void)
{
    /* Context tables, PASID structures, identity tables: all back. */
    struct vtio_vtd_caps caps[] = { { 0 }, { .no_pass_through = true },
                                    { .scalable = true },
                                    { .no_queued_inv = true, .no_intr_remap = true } };
    struct vtio_host_options sm = { .scalable_mode = true };
    for (unsigned i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        struct unit_rig ur;
        unit_up(&ur, &caps[i], &sm);
        struct vtio_device *dev = vtio_host_device_by_rid(ur.r.h, ENGINE_RID);
        CHECK(dev != NULL);
        struct vtio_iommu_group *saved_group = dev->group;
        dev->group = NULL;
        dev->iommu_priv = &ur.u;
        struct vtio_iommu_domain *id = intel_domain_alloc(NULL, &ur.u,
                                                          VTIO_IOMMU_DOMAIN_IDENTITY);
        struct vtio_iommu_domain *pd = intel_domain_alloc(NULL, &ur.u,
                                                          VTIO_IOMMU_DOMAIN_UNMANAGED);
        CHECK(id && pd);
        CHECK_OK(id->ops->attach_dev(id, dev));
        CHECK_OK(intel_unit_enable_translation(&ur.u));
        struct vtio_vtd_resp resp;
        CHECK_OK(xlate(&ur.r, ENGINE_RID, 0x200000, false, &resp));
        CHECK_EQ(resp.pa, 0x200000);
        CHECK_OK(pd->ops->attach_dev(pd, dev));
        uint64_t pa = page(&ur.r);
        CHECK_OK(pd->ops->map(pd, 0x10000, pa, VTIO_PAGE_SIZE, RW));
        CHECK_OK(xlate(&ur.r, ENGINE_RID, 0x10000, false, &resp));
        CHECK_EQ(resp.pa, pa);
        CHECK_OK(vtio_page_free(ur.r.h->pages, pa, 0));
        /* Leave pd attached: shutdown frees the context and PASID pages
         * that are still linked; the domains are freed before it. */
        id->ops->free(id);
        pd->ops->free(pd);
        dev->iommu_priv = NULL;
        dev->group = saved_group;
        unit_down(&ur);
    }
}

static void t_unit_takeover(void)
{
    /* A unit left with translation and the queue on (kdump-style). */
    struct vtio_machine_config mc = { .ram_size = 256 * VTIO_MiB };
    struct rig r;
    CHECK_OK(vtio_machine_create(&mc, &r.m));
    struct vtio_host_options o = quiet_log;
    o.iommu_off = true;
    log_clear();
    CHECK_OK(vtio_host_boot_opts(r.m, &o, &r.h));
    uint64_t q = page(&r);
    vtio_vtd_reg_write(r.m->vtd, VTD_IQA_REG, q, 8);
    vtio_vtd_reg_write(r.m->vtd, VTD_GCMD_REG, VTD_GCMD_QIE, 4);
    vtio_vtd_reg_write(r.m->vtd, VTD_GCMD_REG, VTD_GCMD_QIE | VTD_GCMD_TE, 4);
    CHECK_EQ(reg(&r, VTD_GSTS_REG, 4) & (VTD_GSTS_TES | VTD_GSTS_QIES),
             VTD_GSTS_TES | VTD_GSTS_QIES);
    struct intel_iommu u;
    CHECK_OK(intel_unit_init(&u, r.h, &r.h->fw.dmar.drhd[0], 0));
    uint32_t gsts = (uint32_t)reg(&r, VTD_GSTS_REG, 4);
    CHECK(!(gsts & VTD_GSTS_TES));
    CHECK(gsts & VTD_GSTS_QIES);                       /* ours, on a new queue */
    CHECK(logged("dmar0: translation was left on"));
    CHECK_EQ(reg(&r, VTD_IQA_REG, 8) & VTD_IQA_ADDR_MASK, u.qi_pa);
    intel_unit_shutdown(&u);
    down(&r);
}

static void t_unit_queue_error(void)
{
    struct unit_rig ur;
    unit_up(&ur, NULL, NULL);
    /* Type 0 is no descriptor: IQE; the driver skips it and recovers. */
    const uint64_t bad[2][2] = { { VTD_INV_DESC_CC | VTD_MAKE(VTD_INV_GLOBAL, 5, 4), 0 },
                                 { 0, 0 } };
    CHECK_ERR(intel_qi_submit(&ur.u, bad, 2), -EIO);
    CHECK(logged("dmar0: invalidation queue error (IQEI 6)"));
    CHECK_EQ(reg(&ur.r, VTD_FSTS_REG, 4) & VTD_FSTS_IQE, 0);
    CHECK_EQ(reg(&ur.r, VTD_IQH_REG, 8), reg(&ur.r, VTD_IQT_REG, 8));
    CHECK_OK(intel_qi_submit(&ur.u, bad, 1));
    /* More descriptors than the ring holds go in batches. */
    uint64_t many[600][2];
    for (unsigned i = 0; i < 600; i++)
        many[i][0] = VTD_INV_DESC_IOTLB | VTD_MAKE(VTD_INV_GLOBAL, 5, 4), many[i][1] = 0;
    uint64_t before = qi_descriptors(&ur.r);
    CHECK_OK(intel_qi_submit(&ur.u, (const uint64_t (*)[2])many, 600));
    CHECK_EQ(qi_descriptors(&ur.r), before + 600 + 3);
    unit_down(&ur);
}

static void t_unit_dids(void)
{
    struct unit_rig ur;
    struct vtio_vtd_caps caps = { .domain_id_bits = 4 };
    unit_up(&ur, &caps, NULL);
    int seen = 0;
    for (unsigned i = 1; i < 16; i++) {
        int did = intel_did_alloc(&ur.u);
        CHECK_GT(did, 0);
        CHECK_LT(did, 16);
        CHECK_EQ(seen & (1 << did), 0);
        seen |= 1 << did;
    }
    CHECK_ERR(intel_did_alloc(&ur.u), -ENOSPC);
    intel_did_free(&ur.u, 7);
    CHECK_EQ(intel_did_alloc(&ur.u), 7);
    intel_did_free(&ur.u, 0);                           /* stays reserved */
    CHECK_ERR(intel_did_alloc(&ur.u), -ENOSPC);
    unit_down(&ur);
}

static void t_unit_range_masks(void)
{
    /* Register-based: the IVA register holds the last page-selective mask. */
    struct unit_rig ur;
    struct vtio_vtd_caps caps = { .no_queued_inv = true, .no_intr_remap = true };
    unit_up(&ur, &caps, NULL);
    CHECK(ur.u.qi == NULL);
    uint64_t iro = VTD_ECAP_IRO(ur.u.ecap) * 16;
    intel_flush_iotlb_range(&ur.u, 5, 0x10000, 0x11000);
    uint64_t v = reg(&ur.r, iro + VTD_IOTLB_OFF, 8);
    CHECK_EQ(VTD_IOTLB_IAIG(v), VTD_INV_PAGE);
    CHECK_EQ(VTD_IOTLB_DID(v), 5);
    intel_flush_iotlb_range(&ur.u, 5, 0x10000, 0x10000 + (1ull << 31));
    v = reg(&ur.r, iro + VTD_IOTLB_OFF, 8);
    CHECK_EQ(VTD_IOTLB_IAIG(v), VTD_INV_DOMAIN);
    intel_flush_context(&ur.u, VTD_INV_DEVICE, 5, ENGINE_RID);
    CHECK_EQ(VTD_CCMD_CAIG(reg(&ur.r, VTD_CCMD_REG, 8)), VTD_INV_DEVICE);
    unit_down(&ur);
}

static const struct vtio_test tests[] = {
    { "unit_bringup", "a unit brought up by hand has its root table latched, the queue on and "
      "translation off until asked; shutdown turns all off and frees every page",
      t_unit_bringup },
    { "unit_domains_freed", "identity (with and without PT), paging, scalable and "
      "register-based units translate as programmed and give every table page back",
      t_unit_domains_freed },
    { "unit_takeover", "a unit left with TE and QIE on is turned off and taken over",
      t_unit_takeover },
    { "unit_queue_error", "a refused descriptor returns -EIO and leaves the queue usable; "
      "long submissions are split into ring-sized batches", t_unit_queue_error },
    { "unit_dids", "domain ids come from CAP.ND's space, 0 is never handed out", t_unit_dids },
    { "unit_range_masks", "register-based IOTLB flushes use page-selective where the mask "
      "fits MAMV and domain-selective beyond", t_unit_range_masks },
    { "bringup", "after boot GSTS has TES/RTPS/QIES/IRES and the engine's context entry "
      "points at its DMA-FQ domain with AW 4-level and a DID", t_bringup },
    { "map_unmap", "a mapping of an UNMANAGED domain translates with its permissions and "
      "an unmap removes even a cached translation", t_map_unmap },
    { "attach_switches_did", "attaching another domain changes the entry's DID with Linux's "
      "flushes (context, old DID's IOTLB, context); detaching restores the old one",
      t_attach_switches_did },
    { "did_reuse", "a domain id freed after detach carries no cached translation to the "
      "next domain that gets it", t_did_reuse },
    { "concurrent_unmaps", "four threads map, use and unmap their own pages of one domain; "
      "every unmap is seen by the unit at once", t_concurrent_unmaps },
    { "psi_and_dsi", "unmaps are invalidated page-selectively with the covering mask, "
      "domain-selectively beyond MAMV", t_psi_and_dsi },
    { "register_invalidation", "without QI (and IR) the CCMD/IOTLB registers invalidate",
      t_register_invalidation },
    { "no_intr_remap_option", "intremap=off leaves IRES clear", t_no_intr_remap_option },
    { "scalable", "scalable mode: TTM=01, 256-bit queue, PASID entry with PGTT=SL",
      t_scalable },
    { "scalable_needs_option", "a scalable-capable unit stays legacy unless sm_on",
      t_scalable_needs_option },
    { "identity_pass_through", "iommu=pt with ECAP.PT: TT=pass-through, 1:1",
      t_identity_pass_through },
    { "identity_tables", "iommu=pt without ECAP.PT: 1:1 tables over RAM in large pages",
      t_identity_tables },
    { "identity_scalable", "scalable identity: PGTT=PT, or SL 1:1 tables without PT",
      t_identity_scalable },
    { "caching_mode", "under CAP.CM DMA domains are strict and every map is followed by a "
      "PSI of its range; without CM a map submits nothing", t_caching_mode },
    { "widths", "39/48/57-bit units: AW and aperture (4 levels where offered)", t_widths },
    { "superpages", "2 MiB leaves when SSLPS allows, 4 KiB only without", t_superpages },
    { "blocked", "a BLOCKED domain clears the context entry: faults are context-entry-not-"
      "present; detach restores it (legacy and scalable)", t_blocked },
    { "device_scope", "a DRHD's device scope decides which devices are translated",
      t_device_scope },
    { "shutdown", "host shutdown leaves TES, QIES and IRES clear", t_shutdown },
};

VTIO_TEST_MAIN(tests)
