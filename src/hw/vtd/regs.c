/*
 * The register file of the VT-d unit (spec chapter 10 and 11.4): creation
 * from a caps description (which becomes CAP and ECAP), power-on reset,
 * 32- and 64-bit register access, the GCMD/GSTS command protocol, and
 * register-based invalidation (CCMD, IVA/IOTLB; 6.5.1).
 *
 * Register access (11.2): 4- and 8-byte accesses, naturally aligned, inside
 * the 4 KiB window; anything else reads 0 and is dropped.  A 64-bit
 * register may be written as two 32-bit halves: each half updates its own
 * bits, and the commands in CCMD and IOTLB act only once the high half (or
 * a 64-bit write) arrives, IQT once its low half does (Linux writes it with
 * a 32-bit store).  An 8-byte access to a pair of 32-bit registers is the
 * two dword accesses.  Read-only and reserved bits ignore writes and
 * reserved bits read 0; write-only registers (GCMD, IVA) read 0.
 *
 * GCMD (10.4.4): Linux keeps a shadow of the persistent bits and writes
 * "shadow | command", so TE, QIE, IRE and CFI are levels (the unit acts
 * when one differs from its status bit in GSTS) and SRTP, SIRTP, WBF and
 * SFL are one-shot (the unit acts whenever one is written as 1).  Every
 * command completes before the write returns, so GSTS is current when
 * software polls it.  The choices where the spec leaves room:
 *  - QIE=0 while IQH != IQT (descriptors pending, e.g. the queue halted on
 *    IQE) is ignored: QIES stays set, as Linux waits for the queue to drain;
 *  - IRE=1 before SIRTP has latched a table (IRTPS clear) is ignored;
 *  - SIRTP also empties the interrupt entry cache (allowed; CAP.ESIRTPS
 *    still reads 0, so software invalidates as the spec asks); SRTP only
 *    latches RTADDR (CAP.ESRTPS = 0: software invalidates the caches);
 *  - SFL/EAFL do nothing (no advanced fault logging, CAP.AFL = 0) and WBF
 *    has nothing to flush (CAP.RWBF = 0): WBFS reads 0 right away.
 * Register-based invalidation while queued invalidation is on (GSTS.QIES)
 * is ignored and reported as such: ICC/IVT clear at once with CAIG/IAIG =
 * 0, the encoding for "request not performed".
 *
 * Locks: reg_lock serialises every register access except the fault
 * registers (fault.c, under fault_lock; on the write path reg_lock is
 * taken first, so an FSTS write that clears IQE can resume the queue).
 * Queued invalidation runs in vtd_qi_process() on the thread that writes
 * IQT, with reg_lock held.  Translators never take reg_lock: GSTS and the
 * latched root and IRT addresses are atomics.
 */
#include "hw/vtd/vtd_internal.h"
#include "util/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define VTD_MAMV            18      /* PSI: up to 2^18 pages (1 GiB) at once */
#define DEFAULT_ADDR_WIDTH  48
#define DEFAULT_DID_BITS    16
#define DEFAULT_FAULT_REGS  8
#define MAX_PASID_BITS      20

#define GCMD_LEVEL_BITS (VTD_GCMD_TE | VTD_GCMD_QIE | VTD_GCMD_IRE | VTD_GCMD_CFI)

/* Writable bits of the command registers (the rest read-only/reserved). */
#define CCMD_CAIG_MASK   VTD_MAKE(3, 60, 59)
#define CCMD_WRITABLE    (VTD_CCMD_ICC | VTD_MAKE(3, 62, 61) | VTD_MAKE(3, 33, 32) | \
                          VTD_MAKE(0xffff, 31, 16) | VTD_MAKE(0xffff, 15, 0))
#define IOTLB_IAIG_MASK  VTD_MAKE(3, 58, 57)
#define IOTLB_WRITABLE   (VTD_IOTLB_IVT | VTD_MAKE(3, 61, 60) | VTD_IOTLB_DR | \
                          VTD_IOTLB_DW | VTD_MAKE(0xffff, 47, 32))
#define IVA_WRITABLE     (0xfffffffffffff000ull | VTD_IVA_IH | VTD_MAKE(0x3f, 5, 0))
#define RTADDR_TTM_MASK  VTD_MAKE(3, 11, 10)
#define IQA_QS_MASK      VTD_MAKE(7, 2, 0)
#define IRTA_S_MASK      VTD_MAKE(0xf, 3, 0)
#define PLM_MASK         0xfff00000u            /* PLMBASE/LIMIT: 1 MiB units */
#define PHM_LOW_MASK     0xfffffull             /* PHMBASE/LIMIT: 1 MiB units */
#define xEDATA_MASK      0x0000ffffu
#define xEADDR_MASK      0xfffffffcu

/* Physical-address bits the unit implements: (HAW-1):12. */
static uint64_t haw_mask(struct vtio_vtd *vtd)
{
    return VTD_SL_ADDR_MASK(vtd->haw);
}

static bool qi_enabled(struct vtio_vtd *vtd)
{
    return vtd_enabled(vtd, VTD_GSTS_QIES);
}

static uint64_t iro(struct vtio_vtd *vtd)
{
    return VTD_ECAP_IRO(vtd->ecap) * 16;
}

static bool is_frcd(struct vtio_vtd *vtd, uint64_t off)
{
    uint64_t base = VTD_CAP_FRO(vtd->cap) * 16;
    return off >= base && off < base + (uint64_t)vtd->nfr * VTD_FRCD_SIZE;
}

/* ------------------------------------------------------------------------
 * CAP and ECAP from the caps description (11.4.2, 11.4.3).
 */

static int normalise_caps(const struct vtio_vtd_caps *in, struct vtio_vtd_caps *c)
{
    *c = in ? *in : (struct vtio_vtd_caps){ 0 };
    if (!c->addr_width)
        c->addr_width = DEFAULT_ADDR_WIDTH;
    if (!c->domain_id_bits)
        c->domain_id_bits = DEFAULT_DID_BITS;
    if (!c->fault_regs)
        c->fault_regs = DEFAULT_FAULT_REGS;

    if (c->addr_width != 39 && c->addr_width != 48 && c->addr_width != 57)
        return vtio_fail(-EINVAL, "VT-d: address width %u is not 39, 48 or 57",
                         c->addr_width);
    if (c->domain_id_bits < 4 || c->domain_id_bits > 16 || c->domain_id_bits % 2)
        return vtio_fail(-EINVAL, "VT-d: %u domain-id bits (CAP.ND allows 4, 6, ... 16)",
                         c->domain_id_bits);
    if (c->fault_regs > VTD_MAX_FRCD)
        return vtio_fail(-EINVAL, "VT-d: %u fault recording registers (at most %u)",
                         c->fault_regs, VTD_MAX_FRCD);
    if ((c->first_level || c->nested) && !c->scalable)
        return vtio_fail(-EINVAL, "VT-d: first-level and nested translation need "
                                  "scalable mode");
    if (!c->no_intr_remap && c->no_queued_inv)
        return vtio_fail(-EINVAL, "VT-d: interrupt remapping needs queued invalidation");
    if (c->device_tlb && c->no_queued_inv)
        return vtio_fail(-EINVAL, "VT-d: device-TLBs need queued invalidation");
    if (c->scalable && c->no_queued_inv)
        return vtio_fail(-EINVAL, "VT-d: scalable mode needs queued invalidation");
    if (c->pasid_bits > MAX_PASID_BITS)
        return vtio_fail(-EINVAL, "VT-d: %u PASID bits (at most 20)", c->pasid_bits);

    if (c->scalable && !c->pasid_bits)
        c->pasid_bits = MAX_PASID_BITS;
    if (!c->scalable)
        c->pasid_bits = 0;
    /* ECAP.NEST implies first- and second-level support (ECAP.FSTS/SSTS). */
    if (c->nested)
        c->first_level = true;
    return 0;
}

static uint64_t make_cap(const struct vtio_vtd_caps *c)
{
    unsigned aw = c->addr_width;
    /* SAGAW: every table depth the walker handles up to the width. */
    uint64_t sagaw = VTD_BIT(1) | (aw >= 48 ? VTD_BIT(2) : 0) | (aw >= 57 ? VTD_BIT(3) : 0);
    uint64_t sslps = (c->no_2m_pages ? 0 : 1) | (c->no_1g_pages ? 0 : 2);
    uint64_t cap = VTD_MAKE((c->domain_id_bits - 4) / 2, 2, 0)
                 | sagaw << VTD_CAP_SAGAW_SHIFT
                 | VTD_MAKE(aw - 1, 21, VTD_CAP_MGAW_SHIFT)
                 | VTD_MAKE(VTD_FRO_DEFAULT, 33, VTD_CAP_FRO_SHIFT)
                 | sslps << VTD_CAP_SSLPS_SHIFT
                 | VTD_CAP_PSI
                 | VTD_MAKE(c->fault_regs - 1, 47, VTD_CAP_NFR_SHIFT)
                 | VTD_MAKE(VTD_MAMV, 53, VTD_CAP_MAMV_SHIFT)
                 | VTD_CAP_DWD | VTD_CAP_DRD;
    if (c->caching_mode)
        cap |= VTD_CAP_CM;
    /* First level: 2 MiB pages always (x86 paging); 1 GiB unless disabled;
     * 5-level tables when the width reaches 57 bits. */
    if (c->first_level && !c->no_1g_pages)
        cap |= VTD_CAP_FS1GP;
    if (c->first_level && aw == 57)
        cap |= VTD_CAP_FS5LP;
    return cap;
}

static uint64_t make_ecap(const struct vtio_vtd_caps *c)
{
    uint64_t ecap = VTD_MAKE(VTD_IRO_DEFAULT, 17, VTD_ECAP_IRO_SHIFT);
    if (!c->no_queued_inv)
        ecap |= VTD_ECAP_QI;
    if (c->device_tlb)
        ecap |= VTD_ECAP_DT;
    if (!c->no_intr_remap)
        ecap |= VTD_ECAP_IR | VTD_MAKE(0xf, 23, VTD_ECAP_MHMV_SHIFT);
    if (!c->no_pass_through)
        ecap |= VTD_ECAP_PT;
    if (c->nested)
        ecap |= VTD_ECAP_NEST;
    if (c->scalable)
        ecap |= VTD_ECAP_SMTS | VTD_ECAP_PASID | VTD_ECAP_SSTS
              | VTD_MAKE(c->pasid_bits - 1, 39, VTD_ECAP_PSS_SHIFT);
    if (c->first_level)
        ecap |= VTD_ECAP_FSTS | VTD_ECAP_SRS;
    return ecap;
}

/* ------------------------------------------------------------------------
 * Life cycle.
 */

/* Power-on values (11.4); caches emptied.  reg_lock held. */
static void reset_locked(struct vtio_vtd *vtd)
{
    atomic_store_explicit(&vtd->gsts, 0, memory_order_release);
    atomic_store_explicit(&vtd->rtaddr_active, 0, memory_order_release);
    atomic_store_explicit(&vtd->irta_active, 0, memory_order_release);
    vtd->rtaddr = 0;
    vtd->ccmd = vtd->iotlb_reg = vtd->iva = 0;
    vtd->pmen = vtd->plmbase = vtd->plmlimit = 0;
    vtd->phmbase = vtd->phmlimit = 0;
    vtd->iqh = vtd->iqt = vtd->iqa = vtd->iqer = 0;
    vtd->ics = 0;
    vtd->iectl = VTD_xECTL_IM;
    vtd->iedata = vtd->ieaddr = vtd->ieuaddr = 0;
    vtd->irta = 0;
    vtd_fault_reset(vtd);

    vtd_ctx_cache_inv(vtd, VTD_INV_GLOBAL, 0, 0, 0);
    vtd_pasid_cache_inv(vtd, VTD_INV_PC_G_GLOBAL, 0, 0);
    vtd_iotlb_inv_all(vtd);
    vtd_devtlb_inv_all(vtd);
    vtd_iec_inv(vtd, true, 0, 0);
    /* Translation is off; wait out accesses that may still use old state. */
    vtd_inflight_drain(vtd);
}

static const struct {
    int (*init)(struct vtio_vtd *vtd);
    void (*fini)(struct vtio_vtd *vtd);
} parts[] = {
    { vtd_ctx_cache_init, vtd_ctx_cache_fini },
    { vtd_iotlb_init, vtd_iotlb_fini },
    { vtd_inflight_init, vtd_inflight_fini },
    { vtd_ir_init, vtd_ir_fini },
};
#define NPARTS (sizeof(parts) / sizeof(parts[0]))

int vtio_vtd_create(const struct vtio_vtd_caps *caps, const struct vtio_vtd_platform *platform,
                    struct vtio_vtd **out)
{
    if (!out)
        return vtio_fail(-EINVAL, "VT-d: no place for the unit");
    if (!platform || !platform->mem_read || !platform->mem_write)
        return vtio_fail(-EINVAL, "VT-d: the platform must read and write memory");
    struct vtio_vtd_caps c;
    int err = normalise_caps(caps, &c);
    if (err)
        return err;

    struct vtio_vtd *vtd = calloc(1, sizeof(*vtd));
    if (!vtd)
        return vtio_fail(-ENOMEM, "VT-d: out of memory");
    vtd->plat = *platform;
    vtd->caps = c;
    vtd->cap = make_cap(&c);
    vtd->ecap = make_ecap(&c);
    vtd->haw = c.addr_width;
    vtd->nfr = c.fault_regs;
    pthread_mutex_init(&vtd->reg_lock, NULL);
    pthread_mutex_init(&vtd->fault_lock, NULL);
    atomic_init(&vtd->gsts, 0);
    atomic_init(&vtd->rtaddr_active, 0);
    atomic_init(&vtd->irta_active, 0);

    size_t done = 0;
    for (; done < NPARTS; done++) {
        err = parts[done].init(vtd);
        if (err)
            break;
    }
    if (err) {
        while (done--)
            parts[done].fini(vtd);
        pthread_mutex_destroy(&vtd->fault_lock);
        pthread_mutex_destroy(&vtd->reg_lock);
        free(vtd);
        return vtio_fail(err, "VT-d: cannot set up the unit's caches (%d)", err);
    }
    vtd->translator = (struct vtio_dma_translator){ &vtd_translator_ops, vtd };

    pthread_mutex_lock(&vtd->reg_lock);
    reset_locked(vtd);
    pthread_mutex_unlock(&vtd->reg_lock);
    *out = vtd;
    return 0;
}

void vtio_vtd_destroy(struct vtio_vtd *vtd)
{
    if (!vtd)
        return;
    for (size_t i = NPARTS; i--;)
        parts[i].fini(vtd);
    pthread_mutex_destroy(&vtd->fault_lock);
    pthread_mutex_destroy(&vtd->reg_lock);
    free(vtd);
}

void vtio_vtd_reset(struct vtio_vtd *vtd)
{
    pthread_mutex_lock(&vtd->reg_lock);
    reset_locked(vtd);
    pthread_mutex_unlock(&vtd->reg_lock);
}

void vtio_vtd_get_stats(struct vtio_vtd *vtd, struct vtio_vtd_stats *st)
{
#define GET(f) st->f = atomic_load_explicit(&vtd->stats.f, memory_order_relaxed)
    GET(translations);
    GET(iotlb_hits);
    GET(iotlb_misses);
    GET(page_walks);
    GET(context_cache_hits);
    GET(context_cache_misses);
    GET(faults_recorded);
    GET(faults_suppressed);
    GET(interrupts_remapped);
    GET(interrupts_blocked);
    GET(qi_descriptors);
    GET(invalidation_waits);
    GET(faults_dropped);
#undef GET
    vtd_stats_add_hot(vtd, st);         /* the per-thread hot-path shards */
}

/* ------------------------------------------------------------------------
 * Commands: GCMD (10.4.4) and register-based invalidation (6.5.1).
 */

static void set_gsts(struct vtio_vtd *vtd, uint32_t set, uint32_t clear)
{
    uint32_t s = atomic_load_explicit(&vtd->gsts, memory_order_relaxed);
    atomic_store_explicit(&vtd->gsts, (s & ~clear) | set, memory_order_release);
}

static void gcmd_write_locked(struct vtio_vtd *vtd, uint32_t v)
{
    uint32_t sts = atomic_load_explicit(&vtd->gsts, memory_order_relaxed);
    uint32_t changed = (sts ^ v) & GCMD_LEVEL_BITS;
    bool ir = vtd->ecap & VTD_ECAP_IR;

    /* SRTP: latch the root table (and its TTM) for the translators. */
    if (v & VTD_GCMD_SRTP) {
        atomic_store_explicit(&vtd->rtaddr_active, vtd->rtaddr, memory_order_release);
        set_gsts(vtd, VTD_GSTS_RTPS, 0);
    }
    /* SIRTP: latch the interrupt remapping table. */
    if (ir && (v & VTD_GCMD_SIRTP)) {
        atomic_store_explicit(&vtd->irta_active, vtd->irta, memory_order_release);
        vtd_iec_inv(vtd, true, 0, 0);
        set_gsts(vtd, VTD_GSTS_IRTPS, 0);
    }
    /* WBF: no write buffer (CAP.RWBF = 0); the flush is done at once. */
    if (v & VTD_GCMD_WBF)
        set_gsts(vtd, 0, VTD_GSTS_WBFS);

    /* QIE: enabling starts the queue at IQH = 0; disabling waits for an
     * idle queue (IQH == IQT), else the command is ignored. */
    if ((changed & VTD_GCMD_QIE) && (vtd->ecap & VTD_ECAP_QI)) {
        if (v & VTD_GCMD_QIE) {
            vtd->iqh = 0;
            set_gsts(vtd, VTD_GSTS_QIES, 0);
            if (vtd->iqt != vtd->iqh)
                vtd_qi_process(vtd);
        } else if (vtd->iqh == vtd->iqt) {
            set_gsts(vtd, 0, VTD_GSTS_QIES);
        }
    }
    /* IRE: interrupt remapping needs a latched table. */
    if (ir && (changed & VTD_GCMD_IRE)) {
        if (!(v & VTD_GCMD_IRE))
            set_gsts(vtd, 0, VTD_GSTS_IRES);
        else if (vtd_enabled(vtd, VTD_GSTS_IRTPS))
            set_gsts(vtd, VTD_GSTS_IRES, 0);
    }
    /* CFI: compatibility-format interrupts pass while CFIS is set. */
    if (ir && (changed & VTD_GCMD_CFI))
        set_gsts(vtd, (v & VTD_GCMD_CFI) ? VTD_GSTS_CFIS : 0,
                 (v & VTD_GCMD_CFI) ? 0 : VTD_GSTS_CFIS);
    /* TE: DMA remapping on or off. */
    if (changed & VTD_GCMD_TE)
        set_gsts(vtd, (v & VTD_GCMD_TE) ? VTD_GSTS_TES : 0,
                 (v & VTD_GCMD_TE) ? 0 : VTD_GSTS_TES);
}

/* CCMD with ICC set: context-cache invalidation (6.5.1.1).  CAIG reports
 * the granularity performed, 0 if none. */
static void ccmd_invalidate_locked(struct vtio_vtd *vtd)
{
    uint64_t v = vtd->ccmd;
    unsigned gran = (unsigned)VTD_CCMD_CIRG(v), done = 0;

    if (!qi_enabled(vtd)) {
        switch (gran) {
        case VTD_INV_GLOBAL:
            vtd_ctx_cache_inv(vtd, VTD_INV_GLOBAL, 0, 0, 0);
            done = gran;
            break;
        case VTD_INV_DOMAIN:
            vtd_ctx_cache_inv(vtd, VTD_INV_DOMAIN, (uint16_t)VTD_CCMD_DID(v), 0, 0);
            done = gran;
            break;
        case VTD_INV_DEVICE:
            vtd_ctx_cache_inv(vtd, VTD_INV_DEVICE, (uint16_t)VTD_CCMD_DID(v),
                              (uint16_t)VTD_CCMD_SID(v), (unsigned)VTD_CCMD_FM(v));
            done = gran;
            break;
        default:                    /* 0 is reserved */
            break;
        }
    }
    vtd->ccmd = (v & ~(VTD_CCMD_ICC | CCMD_CAIG_MASK)) |
                VTD_MAKE(done, 60, VTD_CCMD_CAIG_SHIFT);
}

/* IOTLB register with IVT set: IOTLB invalidation (6.5.1.2) using IVA for
 * page-selective requests.  IAIG reports the granularity performed, 0 if
 * none (also for AM > CAP.MAMV).  The unit drains as DW/DR ask (CAP.DWD,
 * DRD): once IVT reads 0, no DMA uses what was invalidated. */
static void iotlb_invalidate_locked(struct vtio_vtd *vtd)
{
    uint64_t v = vtd->iotlb_reg;
    uint16_t did = (uint16_t)VTD_IOTLB_DID(v);
    unsigned gran = (unsigned)VTD_IOTLB_IIRG(v), done = 0;

    if (!qi_enabled(vtd)) {
        switch (gran) {
        case VTD_INV_GLOBAL:
            vtd_iotlb_inv_all(vtd);
            done = gran;
            break;
        case VTD_INV_DOMAIN:
            vtd_iotlb_inv_domain(vtd, did);
            done = gran;
            break;
        case VTD_INV_PAGE:
            if (VTD_IVA_AM(vtd->iva) <= VTD_MAMV) {
                vtd_iotlb_inv_page(vtd, did, VTD_IVA_ADDR(vtd->iva),
                                   (unsigned)VTD_IVA_AM(vtd->iva), vtd->iva & VTD_IVA_IH);
                done = gran;
            }
            break;
        default:                    /* 0 is reserved */
            break;
        }
        if (done)
            vtd_inflight_drain(vtd);
    }
    vtd->iotlb_reg = (v & ~(VTD_IOTLB_IVT | IOTLB_IAIG_MASK)) |
                     VTD_MAKE(done, 58, VTD_IOTLB_IAIG_SHIFT);
}

/* ------------------------------------------------------------------------
 * Register access.
 */

static bool access_ok(uint64_t off, unsigned size)
{
    return (size == 4 || size == 8) && off % size == 0 && off <= VTD_REG_SIZE - size;
}

/* Whether the qword at off (8-aligned) is one 64-bit register. */
static bool is_reg64(struct vtio_vtd *vtd, uint64_t off)
{
    switch (off) {
    case VTD_CAP_REG: case VTD_ECAP_REG: case VTD_RTADDR_REG: case VTD_CCMD_REG:
    case VTD_AFLOG_REG: case VTD_PHMBASE_REG: case VTD_PHMLIMIT_REG:
    case VTD_IQH_REG: case VTD_IQT_REG: case VTD_IQA_REG: case VTD_IQER_REG:
    case VTD_IRTA_REG: case VTD_PQH_REG: case VTD_PQT_REG: case VTD_PQA_REG:
        return true;
    default:
        return off == iro(vtd) + VTD_IVA_OFF || off == iro(vtd) + VTD_IOTLB_OFF ||
               is_frcd(vtd, off);
    }
}

/* The qword at off (8-aligned).  reg_lock held; not for fault registers. */
static uint64_t qword_read_locked(struct vtio_vtd *vtd, uint64_t off)
{
    uint32_t gsts = atomic_load_explicit(&vtd->gsts, memory_order_relaxed);
    if (off == iro(vtd) + VTD_IOTLB_OFF)
        return vtd->iotlb_reg;
    switch (off) {
    case VTD_VER_REG:      return VTD_VER_VALUE;
    case VTD_CAP_REG:      return vtd->cap;
    case VTD_ECAP_REG:     return vtd->ecap;
    case VTD_GCMD_REG:     return (uint64_t)gsts << 32;        /* GCMD is WO */
    case VTD_RTADDR_REG:   return vtd->rtaddr;
    case VTD_CCMD_REG:     return vtd->ccmd;
    case VTD_PMEN_REG & ~7ull: return (uint64_t)vtd->pmen << 32;
    case VTD_PLMBASE_REG:  return vtd->plmbase | (uint64_t)vtd->plmlimit << 32;
    case VTD_PHMBASE_REG:  return vtd->phmbase;
    case VTD_PHMLIMIT_REG: return vtd->phmlimit;
    case VTD_IQH_REG:      return vtd->iqh;
    case VTD_IQT_REG:      return vtd->iqt;
    case VTD_IQA_REG:      return vtd->iqa;
    case VTD_ICS_REG & ~7ull: return (uint64_t)vtd->ics << 32;
    case VTD_IECTL_REG:    return vtd->iectl | (uint64_t)vtd->iedata << 32;
    case VTD_IEADDR_REG:   return vtd->ieaddr | (uint64_t)vtd->ieuaddr << 32;
    case VTD_IQER_REG:     return vtd->iqer;
    case VTD_IRTA_REG:     return vtd->irta;
    default:               return 0;      /* reserved, unimplemented, IVA (WO) */
    }
}

uint64_t vtio_vtd_reg_read(struct vtio_vtd *vtd, uint64_t off, unsigned size)
{
    if (!access_ok(off, size))
        return 0;
    uint64_t q = off & ~7ull, v;
    if ((q >= VTD_FSTS_REG - 4 && q <= VTD_FEUADDR_REG - 4) || is_frcd(vtd, q)) {
        v = vtd_fault_reg_read(vtd, q, 8);
    } else {
        pthread_mutex_lock(&vtd->reg_lock);
        v = qword_read_locked(vtd, q);
        pthread_mutex_unlock(&vtd->reg_lock);
    }
    return size == 8 ? v : (uint32_t)(v >> (8 * (off & 4)));
}

/* A write to a 32-bit register.  reg_lock held. */
static void dword_write_locked(struct vtio_vtd *vtd, uint64_t off, uint32_t v)
{
    bool eim = vtd->ecap & VTD_ECAP_EIM;

    switch (off) {
    case VTD_GCMD_REG:
        gcmd_write_locked(vtd, v);
        break;
    case VTD_FSTS_REG: {
        /* Clearing IQE (or ICE/ITE) lets a halted queue go on. */
        uint32_t before = (uint32_t)vtd_fault_reg_read(vtd, VTD_FSTS_REG, 4);
        vtd_fault_reg_write(vtd, off, v, 4);
        if ((before & v & (VTD_FSTS_IQE | VTD_FSTS_ICE | VTD_FSTS_ITE)) && qi_enabled(vtd))
            vtd_qi_process(vtd);
        break;
    }
    case VTD_FECTL_REG: case VTD_FEDATA_REG: case VTD_FEADDR_REG: case VTD_FEUADDR_REG:
        vtd_fault_reg_write(vtd, off, v, 4);
        break;
    case VTD_PMEN_REG:
        /* No protected regions (CAP.PLMR = PHMR = 0): EPM is stored and
         * PRS follows it. */
        vtd->pmen = (v & VTD_PMEN_EPM) ? (uint32_t)(VTD_PMEN_EPM | VTD_PMEN_PRS) : 0;
        break;
    case VTD_PLMBASE_REG:
        vtd->plmbase = v & PLM_MASK;
        break;
    case VTD_PLMLIMIT_REG:
        vtd->plmlimit = v & PLM_MASK;
        break;
    case VTD_ICS_REG:
        /* IWC is RW1C; clearing it services a held completion event. */
        if (v & VTD_ICS_IWC) {
            vtd->ics &= ~(uint32_t)VTD_ICS_IWC;
            vtd->iectl &= ~(uint32_t)VTD_xECTL_IP;
        }
        break;
    case VTD_IECTL_REG:
        if (v & VTD_xECTL_IM) {
            vtd->iectl |= VTD_xECTL_IM;
        } else {
            vtd->iectl &= ~(uint32_t)VTD_xECTL_IM;
            if (vtd->iectl & VTD_xECTL_IP)
                vtd_send_event(vtd, &vtd->iectl, vtd->iedata, vtd->ieaddr, vtd->ieuaddr);
        }
        break;
    case VTD_IEDATA_REG:
        vtd->iedata = eim ? v : v & xEDATA_MASK;
        break;
    case VTD_IEADDR_REG:
        vtd->ieaddr = v & xEADDR_MASK;
        break;
    case VTD_IEUADDR_REG:
        vtd->ieuaddr = eim ? v : 0;
        break;
    default:
        break;                              /* read-only or reserved */
    }
}

/* A write to (half of) a 64-bit register at off8.  reg_lock held. */
static void qword_write_locked(struct vtio_vtd *vtd, uint64_t off8, uint64_t val,
                               uint64_t off, unsigned size)
{
    bool low = size == 8 || !(off & 4), high = size == 8 || (off & 4);
    unsigned sh = (unsigned)(off & 4) * 8;
    uint64_t keep = size == 8 ? 0 : ~(0xffffffffull << sh);
    uint64_t in = size == 8 ? val : (uint64_t)(uint32_t)val << sh;
#define MERGE(reg) (((reg) & keep) | in)

    if (off8 == iro(vtd) + VTD_IVA_OFF) {
        vtd->iva = MERGE(vtd->iva) & IVA_WRITABLE;
    } else if (off8 == iro(vtd) + VTD_IOTLB_OFF) {
        vtd->iotlb_reg = (MERGE(vtd->iotlb_reg) & IOTLB_WRITABLE) |
                         (vtd->iotlb_reg & IOTLB_IAIG_MASK);
        if (high && (vtd->iotlb_reg & VTD_IOTLB_IVT))
            iotlb_invalidate_locked(vtd);
    } else {
        switch (off8) {
        case VTD_RTADDR_REG:
            vtd->rtaddr = MERGE(vtd->rtaddr) & (haw_mask(vtd) | RTADDR_TTM_MASK);
            break;
        case VTD_CCMD_REG:
            vtd->ccmd = (MERGE(vtd->ccmd) & CCMD_WRITABLE) | (vtd->ccmd & CCMD_CAIG_MASK);
            if (high && (vtd->ccmd & VTD_CCMD_ICC))
                ccmd_invalidate_locked(vtd);
            break;
        case VTD_PHMBASE_REG:
            vtd->phmbase = MERGE(vtd->phmbase) & haw_mask(vtd) & ~PHM_LOW_MASK;
            break;
        case VTD_PHMLIMIT_REG:
            vtd->phmlimit = MERGE(vtd->phmlimit) & haw_mask(vtd) & ~PHM_LOW_MASK;
            break;
        case VTD_IQT_REG:
            /* The tail moved: process the new descriptors now. */
            vtd->iqt = MERGE(vtd->iqt) & VTD_IQ_OFF_MASK;
            if (low && qi_enabled(vtd))
                vtd_qi_process(vtd);
            break;
        case VTD_IQA_REG: {
            uint64_t dw = (vtd->ecap & VTD_ECAP_SMTS) ? VTD_IQA_DW : 0;
            vtd->iqa = MERGE(vtd->iqa) & (haw_mask(vtd) | dw | IQA_QS_MASK);
            break;
        }
        case VTD_IRTA_REG: {
            uint64_t eime = (vtd->ecap & VTD_ECAP_EIM) ? VTD_IRTA_EIME : 0;
            vtd->irta = MERGE(vtd->irta) & (haw_mask(vtd) | eime | IRTA_S_MASK);
            break;
        }
        default:
            break;                          /* CAP, ECAP, IQH, IQER, ...: RO */
        }
    }
#undef MERGE
}

void vtio_vtd_reg_write(struct vtio_vtd *vtd, uint64_t off, uint64_t val, unsigned size)
{
    if (!access_ok(off, size))
        return;
    uint64_t q = off & ~7ull;
    pthread_mutex_lock(&vtd->reg_lock);
    if (is_frcd(vtd, q)) {
        vtd_fault_reg_write(vtd, off, val, size);    /* F is RW1C, the rest RO */
    } else if (is_reg64(vtd, q)) {
        qword_write_locked(vtd, q, val, off, size);
    } else if (size == 8) {
        dword_write_locked(vtd, off, (uint32_t)val);
        dword_write_locked(vtd, off + 4, (uint32_t)(val >> 32));
    } else {
        dword_write_locked(vtd, off, (uint32_t)val);
    }
    pthread_mutex_unlock(&vtd->reg_lock);
}

static uint64_t mmio_read(void *opaque, uint64_t off, unsigned size)
{
    return vtio_vtd_reg_read(opaque, off, size);
}

static void mmio_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    vtio_vtd_reg_write(opaque, off, val, size);
}

const struct vtio_mmio_ops vtio_vtd_mmio_ops = { .read = mmio_read, .write = mmio_write };
