/*
 * A VT-d unit's life (Linux's init_dmars / iommu_set_root_entry /
 * iommu_enable_translation): bring-up, translation on, shutdown; the GCMD
 * protocol; the root and context tables; domain ids.
 *
 * Bring-up, in Linux's order: CAP/ECAP decide the page-table depth, the
 * superpages, scalable or legacy mode and the domain-id space; whatever
 * firmware left on (TE, IRE, QIE: a kdump-style handover) is turned off;
 * a zeroed root table is latched with SRTP; the invalidation queue comes up
 * (inval.c); every cache the unit may hold from before is invalidated
 * globally (CAP.ESRTPS is not trusted to have done it); then fault
 * reporting (fault.c) and, if allowed, interrupt remapping (irq_remap.c).
 * Translation (TE) is turned on only after the IOMMU core has attached a
 * default domain to every device, so no DMA is ever blocked or translated
 * through half-built tables.  Shutdown runs the same steps backwards and
 * gives every table page back.
 *
 * GCMD is write-only and every write is a full command: software keeps the
 * persistent enables (TE, QIE, IRE, CFI) in u->gcmd and writes them with
 * each command; one-shot bits (SRTP, SIRTP, WBF, SFL) are written once and
 * never kept.  Each command is followed by a bounded poll of GSTS (the
 * model answers at once; real units within microseconds).
 *
 * Tables: the root table (one 4 KiB page, 256 entries by bus) links, per
 * bus, a legacy context table (256 x 16 B, by devfn) or, in scalable mode,
 * a lower and an upper table (128 x 32 B each, devfn 0-127 / 128-255).
 * Context tables are allocated when a bus is first used and live until
 * shutdown; the entries in them belong to domain.c.
 *
 * Locks: reg_lock serialises GCMD sequences (and register-based
 * invalidation, inval.c); ctx_lock guards the root and context tables
 * (taken by domain.c around a whole entry update, flushes included);
 * did_lock the domain-id bitmap.  Order: ctx_lock, then qi_lock or
 * reg_lock.
 */
#include "host/iommu/intel/intel_iommu.h"

#include <vtio/page_alloc.h>

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

#define GSTS_POLL_TRIES 100000
#define GCMD_PERSISTENT (VTD_GCMD_TE | VTD_GCMD_QIE | VTD_GCMD_IRE | VTD_GCMD_CFI)
#define DID_BITS_PER_WORD 64

/* ------------------------------------------------------------------------
 * GCMD / GSTS
 */

static const char *gcmd_bit_name(uint32_t bit)
{
    switch (bit) {
    case VTD_GCMD_TE:    return "TE";
    case VTD_GCMD_SRTP:  return "SRTP";
    case VTD_GCMD_SFL:   return "SFL";
    case VTD_GCMD_EAFL:  return "EAFL";
    case VTD_GCMD_WBF:   return "WBF";
    case VTD_GCMD_QIE:   return "QIE";
    case VTD_GCMD_IRE:   return "IRE";
    case VTD_GCMD_SIRTP: return "SIRTP";
    case VTD_GCMD_CFI:   return "CFI";
    default:             return NULL;
    }
}

/* Polls GSTS until (GSTS & bit) == want.  @returns true if it got there. */
static bool gsts_wait(struct intel_iommu *u, uint32_t bit, uint32_t want)
{
    for (unsigned i = 0; i < GSTS_POLL_TRIES; i++) {
        if ((vtio_mmio_read32(&u->regs, VTD_GSTS_REG) & bit) == want)
            return true;
        if (i % 64 == 63)
            sched_yield();
    }
    return false;
}

int intel_gcmd(struct intel_iommu *u, uint32_t bit, bool on)
{
    const char *name = gcmd_bit_name(bit);
    if (!name || bit == VTD_GCMD_EAFL)
        return vtio_fail(-EINVAL, "%s: %#x is not a GCMD command", u->name, bit);

    bool one_shot = bit & VTD_GCMD_ONE_SHOT;
    uint32_t want;
    pthread_mutex_lock(&u->reg_lock);
    uint32_t saved = u->gcmd, cmd;
    if (one_shot) {
        cmd = u->gcmd | bit;
        /* SRTP, SIRTP and SFL report completion by setting their status;
         * WBF by clearing WBFS. */
        want = bit == VTD_GCMD_WBF ? 0 : bit;
    } else {
        u->gcmd = on ? u->gcmd | bit : u->gcmd & ~bit;
        cmd = u->gcmd;
        want = on ? bit : 0;
    }
    vtio_mmio_write32(&u->regs, VTD_GCMD_REG, cmd);
    bool ok = gsts_wait(u, bit, want);
    if (!ok)
        u->gcmd = saved;        /* keep the copy what the unit actually does */
    pthread_mutex_unlock(&u->reg_lock);
    if (ok)
        return 0;
    vtio_host_log(u->host, VTIO_LOG_ERR, "%s: GSTS did not follow GCMD.%s%s", u->name, name,
                  one_shot ? "" : on ? "=1" : "=0");
    return vtio_fail(-EIO, "%s: GSTS did not follow GCMD.%s", u->name, name);
}

/* ------------------------------------------------------------------------
 * Domain ids
 */

int intel_did_alloc(struct intel_iommu *u)
{
    pthread_mutex_lock(&u->did_lock);
    for (unsigned w = 0; w * DID_BITS_PER_WORD < u->n_dids; w++) {
        uint64_t free_bits = ~u->did_map[w];
        if (!free_bits)
            continue;
        unsigned did = w * DID_BITS_PER_WORD + (unsigned)__builtin_ctzll(free_bits);
        if (did >= u->n_dids)
            break;
        u->did_map[w] |= 1ull << (did % DID_BITS_PER_WORD);
        pthread_mutex_unlock(&u->did_lock);
        return (int)did;
    }
    pthread_mutex_unlock(&u->did_lock);
    return vtio_fail(-ENOSPC, "%s: all %u domain ids are in use", u->name, u->n_dids);
}

void intel_did_free(struct intel_iommu *u, unsigned did)
{
    if (did == 0 || did >= u->n_dids)
        return;                 /* 0 stays reserved */
    pthread_mutex_lock(&u->did_lock);
    u->did_map[did / DID_BITS_PER_WORD] &= ~(1ull << (did % DID_BITS_PER_WORD));
    pthread_mutex_unlock(&u->did_lock);
}

/* ------------------------------------------------------------------------
 * Root and context tables
 */

static uint64_t *table_va(struct intel_iommu *u, uint64_t pa)
{
    return vtio_host_phys_to_virt(u->host, pa);
}

/* Caller holds ctx_lock. */
uint64_t *intel_context_entry(struct intel_iommu *u, uint16_t rid)
{
    uint64_t *root = table_va(u, u->root_table);
    /* Scalable: the root entry's low qword links devfn 0-127, the high one
     * 128-255; legacy: the low qword links the whole bus. */
    unsigned half = u->scalable && (rid & 0x80) ? 1 : 0;
    uint64_t *re = &root[2 * (rid >> 8) + half];
    uint64_t link = intel_load_entry(re);
    if (!(link & VTD_ROOT_P)) {
        uint64_t pa;
        if (vtio_page_alloc(u->host->pages, 0, VTIO_PAGE_ZERO, &pa) < 0) {
            vtio_fail(-ENOMEM, "%s: no page for the context table of bus %u", u->name,
                      rid >> 8);
            return NULL;
        }
        link = pa | VTD_ROOT_P;
        intel_store_entry(re, link);
    }
    uint8_t *table = (uint8_t *)table_va(u, link & VTD_ROOT_CTP_MASK);
    if (u->scalable)
        return (uint64_t *)(table + 32 * (rid & 0x7f));
    return (uint64_t *)(table + 16 * (rid & 0xff));
}

static void page_free(struct intel_iommu *u, uint64_t pa)
{
    vtio_page_free(u->host->pages, pa, 0);
}

/* A present scalable-mode context entry owns its PASID directory and the
 * PASID table that directory entry 0 links (domain.c). */
static void free_pasid_tables(struct intel_iommu *u, const uint64_t *ce)
{
    uint64_t q0 = intel_load_entry(&ce[0]);
    if (!(q0 & VTD_SM_CTX_P))
        return;
    uint64_t dir_pa = q0 & VTD_SM_CTX_PDIR_MASK;
    uint64_t dire = intel_load_entry(table_va(u, dir_pa));
    if (dire & VTD_PDIRE_P)
        page_free(u, dire & VTD_PDIRE_PTBL_MASK);
    page_free(u, dir_pa);
}

/* Frees every context table (and scalable PASID structure) and the root
 * table.  Translation is off: nothing walks them any more. */
static void free_tables(struct intel_iommu *u)
{
    if (!u->root_table)
        return;
    uint64_t *root = table_va(u, u->root_table);
    for (unsigned i = 0; i < 512; i++) {        /* 256 entries of two qwords */
        uint64_t link = root[i];
        if (!(link & VTD_ROOT_P) || (!u->scalable && (i & 1)))
            continue;
        uint64_t ctp = link & VTD_ROOT_CTP_MASK;
        if (u->scalable) {
            uint64_t *ct = table_va(u, ctp);
            for (unsigned e = 0; e < 128; e++)
                free_pasid_tables(u, &ct[4 * e]);
        }
        page_free(u, ctp);
    }
    page_free(u, u->root_table);
    u->root_table = 0;
}

/* Allocates and latches an empty root table. */
static int set_root_table(struct intel_iommu *u)
{
    if (vtio_page_alloc(u->host->pages, 0, VTIO_PAGE_ZERO, &u->root_table) < 0)
        return vtio_fail(-ENOMEM, "%s: no page for the root table", u->name);
    if (u->cap & VTD_CAP_RWBF)
        intel_gcmd(u, VTD_GCMD_WBF, true);
    vtio_mmio_write64(&u->regs, VTD_RTADDR_REG,
                      u->root_table | (u->scalable ? VTD_RTADDR_SMT : 0));
    return intel_gcmd(u, VTD_GCMD_SRTP, true);
}

/* ------------------------------------------------------------------------
 * Capabilities
 */

/* Page-table depth: 4 levels (48 bits) where SAGAW offers it, else what
 * the unit has (3, then 5).  @returns 0 if SAGAW is empty. */
static unsigned choose_levels(uint64_t cap)
{
    unsigned sagaw = (unsigned)VTD_CAP_SAGAW(cap);
    if (sagaw & (1u << 2))
        return 4;
    if (sagaw & (1u << 1))
        return 3;
    if (sagaw & (1u << 3))
        return 5;
    return 0;
}

/* SSLPS bit 0: 2 MiB leaves; bit 1 (only with bit 0): 1 GiB. */
static unsigned choose_max_leaf(uint64_t cap)
{
    unsigned sslps = (unsigned)VTD_CAP_SSLPS(cap);
    if (!(sslps & 1))
        return 1;
    return (sslps & 2) ? 3 : 2;
}

/* The register window Linux maps: at least up to the IOTLB registers and
 * the last fault recording register. */
static uint64_t reg_window(const struct intel_iommu *u)
{
    uint64_t iotlb_end = VTD_ECAP_IRO(u->ecap) * 16 + 16;
    uint64_t frcd_end = VTD_CAP_FRO(u->cap) * 16 + (VTD_CAP_NFR(u->cap) + 1) * VTD_FRCD_SIZE;
    uint64_t need = iotlb_end > frcd_end ? iotlb_end : frcd_end;
    need = (need + VTIO_PAGE_SIZE - 1) & ~(VTIO_PAGE_SIZE - 1);
    return need > u->regs.size ? need : u->regs.size;
}

static int read_caps(struct intel_iommu *u)
{
    const struct vtio_host_options *o = &u->host->opts;
    uint32_t ver = vtio_mmio_read32(&u->regs, VTD_VER_REG);
    u->cap = vtio_mmio_read64(&u->regs, VTD_CAP_REG);
    u->ecap = vtio_mmio_read64(&u->regs, VTD_ECAP_REG);
    if (u->cap == ~0ull || u->ecap == ~0ull)
        return vtio_fail(-EIO, "%s: registers at %#llx read all ones", u->name,
                         (unsigned long long)u->drhd->base);
    u->regs.size = reg_window(u);
    u->levels = choose_levels(u->cap);
    if (!u->levels)
        return vtio_fail(-EIO, "%s: no supported address width (SAGAW %#x)", u->name,
                         (unsigned)VTD_CAP_SAGAW(u->cap));
    u->max_leaf_level = choose_max_leaf(u->cap);
    u->scalable = o->scalable_mode && (u->ecap & VTD_ECAP_SMTS) &&
                  (u->ecap & VTD_ECAP_SSTS) && (u->ecap & VTD_ECAP_QI);
    u->pass_through = u->ecap & VTD_ECAP_PT;
    vtio_host_log(u->host, VTIO_LOG_INFO,
                  "%s: reg_base_addr %llx ver %u:%u cap %llx ecap %llx", u->name,
                  (unsigned long long)u->drhd->base, (ver >> 4) & 0xf, ver & 0xf,
                  (unsigned long long)u->cap, (unsigned long long)u->ecap);
    return 0;
}

static int did_map_init(struct intel_iommu *u)
{
    u->n_dids = 1u << (4 + 2 * VTD_CAP_ND(u->cap));
    size_t words = (u->n_dids + DID_BITS_PER_WORD - 1) / DID_BITS_PER_WORD;
    u->did_map = calloc(words, sizeof(uint64_t));
    if (!u->did_map)
        return vtio_fail(-ENOMEM, "%s: out of memory", u->name);
    u->did_map[0] = 1;          /* DID 0: caching mode's "not present" tag */
    return 0;
}

/* Turns off what firmware (or a previous kernel) left on, so the unit
 * starts from a known state: TE, IRE, then QIE once the queue is idle. */
static int take_over(struct intel_iommu *u)
{
    uint32_t gsts = vtio_mmio_read32(&u->regs, VTD_GSTS_REG);
    u->gcmd = gsts & GCMD_PERSISTENT;
    int ret = 0;
    if (gsts & VTD_GSTS_TES) {
        vtio_host_log(u->host, VTIO_LOG_WARN, "%s: translation was left on; turning it off",
                      u->name);
        ret = intel_gcmd(u, VTD_GCMD_TE, false);
    }
    if (!ret && (gsts & VTD_GSTS_IRES))
        ret = intel_gcmd(u, VTD_GCMD_IRE, false);
    if (!ret && (gsts & VTD_GSTS_QIES)) {
        /* A queue halted on an error never drains: let it go on. */
        uint32_t err = vtio_mmio_read32(&u->regs, VTD_FSTS_REG) &
                       (VTD_FSTS_IQE | VTD_FSTS_ICE | VTD_FSTS_ITE);
        if (err)
            vtio_mmio_write32(&u->regs, VTD_FSTS_REG, err);
        for (unsigned i = 0; i < GSTS_POLL_TRIES; i++)
            if (vtio_mmio_read64(&u->regs, VTD_IQH_REG) ==
                vtio_mmio_read64(&u->regs, VTD_IQT_REG))
                break;
        ret = intel_gcmd(u, VTD_GCMD_QIE, false);
    }
    return ret;
}

/* Interrupt remapping: the firmware must allow it, the unit have it, and
 * the queue be there (Linux needs QI for IR). */
static bool ir_allowed(const struct intel_iommu *u)
{
    const struct vtio_host *h = u->host;
    return (h->fw.dmar.flags & VTIO_DMAR_INTR_REMAP) && (u->ecap & VTD_ECAP_IR) && u->qi &&
           !h->opts.no_intr_remap;
}

/* ------------------------------------------------------------------------
 * Bring-up and shutdown
 */

enum stage { STAGE_NONE, STAGE_ROOT, STAGE_INVAL, STAGE_FAULT };

static void undo(struct intel_iommu *u, enum stage done)
{
    if (done >= STAGE_FAULT)
        intel_fault_exit(u);
    if (done >= STAGE_INVAL)
        intel_inval_exit(u);
    free_tables(u);
    free(u->did_map);
    u->did_map = NULL;
    pthread_mutex_destroy(&u->did_lock);
    pthread_mutex_destroy(&u->ctx_lock);
    pthread_mutex_destroy(&u->qi_lock);
    pthread_mutex_destroy(&u->reg_lock);
}

int intel_unit_init(struct intel_iommu *u, struct vtio_host *h, const struct vtio_dmar_drhd *d,
                    unsigned seq)
{
    if (!u || !h || !d)
        return vtio_fail(-EINVAL, "intel-iommu: unit_init needs a unit, a host and a DRHD");
    memset(u, 0, sizeof(*u));
    u->host = h;
    u->seq = seq;
    snprintf(u->name, sizeof(u->name), "dmar%u", seq % 1000u);
    u->drhd = d;
    u->regs = (struct vtio_mmio){ .mem = h->mem, .base = d->base, .size = d->size };
    pthread_mutex_init(&u->reg_lock, NULL);
    pthread_mutex_init(&u->ctx_lock, NULL);
    pthread_mutex_init(&u->did_lock, NULL);
    pthread_mutex_init(&u->qi_lock, NULL);

    enum stage done = STAGE_NONE;
    int ret = read_caps(u);
    if (!ret)
        ret = did_map_init(u);
    if (!ret)
        ret = take_over(u);
    if (!ret)
        ret = set_root_table(u);
    if (!ret) {
        done = STAGE_ROOT;
        ret = intel_inval_init(u);
    }
    if (!ret) {
        done = STAGE_INVAL;
        /* Anything cached from before the new root table goes. */
        intel_flush_context(u, VTD_INV_GLOBAL, 0, 0);
        if (u->scalable)
            intel_flush_pasid_cache(u, 0, 0);
        intel_flush_iotlb(u, VTD_INV_GLOBAL, 0, 0, 0);
        ret = intel_fault_init(u);
    }
    if (!ret) {
        done = STAGE_FAULT;
        if (ir_allowed(u))
            ret = intel_ir_enable(u);
    }
    if (ret) {
        undo(u, done);
        return ret;
    }
    vtio_host_log(h, VTIO_LOG_INFO, "%s: %s mode, %u-level tables, %s invalidation%s",
                  u->name, u->scalable ? "scalable" : "legacy", u->levels,
                  u->qi ? "queued" : "register-based",
                  u->ir ? ", interrupt remapping on" : "");
    return 0;
}

int intel_unit_enable_translation(struct intel_iommu *u)
{
    int ret = intel_gcmd(u, VTD_GCMD_TE, true);
    if (ret)
        return ret;
    /* Protected memory regions (if any) are covered by the page tables
     * now; turn them off as Linux does. */
    if (u->cap & (VTD_CAP_PLMR | VTD_CAP_PHMR)) {
        vtio_mmio_write32(&u->regs, VTD_PMEN_REG, 0);
        for (unsigned i = 0; i < GSTS_POLL_TRIES; i++)
            if (!(vtio_mmio_read32(&u->regs, VTD_PMEN_REG) & VTD_PMEN_PRS))
                break;
    }
    return 0;
}

void intel_unit_shutdown(struct intel_iommu *u)
{
    if (!u || !u->host)
        return;
    if (u->gcmd & VTD_GCMD_TE)
        intel_gcmd(u, VTD_GCMD_TE, false);
    if (u->ir)
        intel_ir_disable(u);
    /* The identity domain's tables and DID outlive every domain handed
     * out for it (domain.c); they go with the unit. */
    if (u->identity) {
        u->identity->ops->free(u->identity);
        u->identity = NULL;
    }
    undo(u, STAGE_FAULT);
    u->host = NULL;
}
