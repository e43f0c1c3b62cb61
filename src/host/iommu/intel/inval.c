/*
 * Invalidation of the unit's caches (VT-d spec 6.5): the context cache,
 * the PASID cache (scalable mode), the IOTLB and the interrupt entry cache.
 *
 * Queued invalidation (ECAP.QI, Linux's qi_submit_sync).  The queue is one
 * ring of 256 descriptors in RAM: 128-bit descriptors in a 4 KiB page, or
 * on units with scalable-mode support 256-bit ones in 8 KiB (IQA.DW = 1,
 * QS = 1, as Linux sets it, since the PASID-cache descriptor exists only
 * in 256-bit form; the upper halves stay zero).  A submission writes its
 * descriptors at the tail, then an invalidation-wait descriptor with SW = 1
 * that stores a fresh sequence number into a status word in RAM, moves IQT
 * past them and polls the status word through the direct map.  When the
 * number is there, every descriptor before it has taken effect and the
 * unit has waited out the DMA that might still use what they removed.
 * qi_lock serialises submissions, and the unit processes the queue on the
 * thread that writes IQT, so the queue is empty (IQH == IQT) whenever the
 * lock is free and a submission never waits for room.
 *
 * Errors: a descriptor the unit refuses halts the queue with FSTS.IQE and
 * IQH on it.  The submitter replaces it with a no-op wait (no status
 * write), clears IQE so the unit goes on, and returns -EIO once its own
 * wait has completed; a device-TLB time-out (ITE) aborts the wait, so ITE
 * is cleared and -EIO returned at once.  Either way the queue is usable
 * again afterwards.
 *
 * Register-based invalidation (no ECAP.QI): CCMD (ICC) for the context
 * cache, and IVA + the IOTLB register (IVT) at ECAP.IRO * 16 for the IOTLB;
 * software polls until the unit clears the busy bit and checks the actual
 * granularity it reports (CAIG / IAIG; 0 means not performed).  reg_lock
 * serialises them with the GCMD sequences.
 *
 * The flush functions return nothing, as Linux's do: a failure is logged
 * (and recorded for vtio_last_error); the caller has no better recovery.
 */
#include "host/iommu/intel/intel_iommu.h"

#include <vtio/page_alloc.h>

#include <errno.h>
#include <sched.h>

#include "util/error.h"

#define QI_LENGTH       256               /* descriptors in the ring */
#define QI_MAX_BATCH    (QI_LENGTH - 2)   /* one slot for the wait, one kept empty */
#define QI_POLL_TRIES   1000000
#define REG_POLL_TRIES  100000

/* 256-bit descriptors: units with scalable-mode support (IQA.DW). */
static bool qi_wide(const struct intel_iommu *u)
{
    return u->ecap & VTD_ECAP_SMTS;
}

static unsigned qi_desc_bytes(const struct intel_iommu *u)
{
    return qi_wide(u) ? 32 : 16;
}

/* ------------------------------------------------------------------------
 * The queue
 */

int intel_inval_init(struct intel_iommu *u)
{
    u->qi = NULL;
    if (!(u->ecap & VTD_ECAP_QI))
        return 0;                       /* register-based */
    unsigned order = qi_wide(u) ? 1 : 0;
    uint64_t q, st;
    if (vtio_page_alloc(u->host->pages, order, VTIO_PAGE_ZERO, &q) < 0)
        return vtio_fail(-ENOMEM, "%s: no memory for the invalidation queue", u->name);
    if (vtio_page_alloc(u->host->pages, 0, VTIO_PAGE_ZERO, &st) < 0) {
        vtio_page_free(u->host->pages, q, order);
        return vtio_fail(-ENOMEM, "%s: no memory for the invalidation status", u->name);
    }
    u->qi_pa = q;
    u->qi = vtio_host_phys_to_virt(u->host, q);
    u->qi_status_pa = st;
    u->qi_status = vtio_host_phys_to_virt(u->host, st);
    u->qi_tail = 0;
    u->qi_seq = 0;

    vtio_mmio_write64(&u->regs, VTD_IQT_REG, 0);
    vtio_mmio_write64(&u->regs, VTD_IQA_REG, q | (qi_wide(u) ? VTD_IQA_DW | 1 : 0));
    int ret = intel_gcmd(u, VTD_GCMD_QIE, true);
    if (ret) {
        vtio_page_free(u->host->pages, st, 0);
        vtio_page_free(u->host->pages, q, order);
        u->qi = NULL;
        u->qi_status = NULL;
    }
    return ret;
}

void intel_inval_exit(struct intel_iommu *u)
{
    if (!u->qi)
        return;
    pthread_mutex_lock(&u->qi_lock);
    /* Every submission has completed: the queue is idle, QIE may go. */
    intel_gcmd(u, VTD_GCMD_QIE, false);
    vtio_page_free(u->host->pages, u->qi_status_pa, 0);
    vtio_page_free(u->host->pages, u->qi_pa, qi_wide(u) ? 1 : 0);
    u->qi = NULL;
    u->qi_status = NULL;
    pthread_mutex_unlock(&u->qi_lock);
}

static void qi_write_slot(struct intel_iommu *u, unsigned slot, uint64_t q0, uint64_t q1)
{
    unsigned words = qi_desc_bytes(u) / 8;
    uint64_t *d = &u->qi[(size_t)slot * words];
    for (unsigned i = 2; i < words; i++)
        intel_store_entry(&d[i], 0);
    intel_store_entry(&d[1], q1);
    intel_store_entry(&d[0], q0);
}

/* IQE: the descriptor at IQH was refused.  It becomes a no-op wait and the
 * unit is let go on.  @returns true if it was the submission's own wait
 * (whose status write will then never come). */
static bool qi_skip_bad(struct intel_iommu *u, unsigned wait_slot)
{
    unsigned head = (unsigned)(vtio_mmio_read64(&u->regs, VTD_IQH_REG) / qi_desc_bytes(u)) %
                    QI_LENGTH;
    unsigned iqei = (unsigned)VTD_IQER_IQEI(vtio_mmio_read64(&u->regs, VTD_IQER_REG));
    const uint64_t *d = &u->qi[(size_t)head * (qi_desc_bytes(u) / 8)];
    vtio_host_log(u->host, VTIO_LOG_ERR,
                  "%s: invalidation queue error (IQEI %u) on descriptor %u: %016llx %016llx",
                  u->name, iqei, head, (unsigned long long)d[0], (unsigned long long)d[1]);
    qi_write_slot(u, head, VTD_INV_DESC_WAIT, 0);
    vtio_mmio_write32(&u->regs, VTD_FSTS_REG, VTD_FSTS_IQE);
    return head == wait_slot;
}

/* Waits for the status write of the wait descriptor in wait_slot. */
static int qi_wait(struct intel_iommu *u, uint32_t seq, unsigned wait_slot)
{
    int err = 0;
    for (unsigned i = 0; i < QI_POLL_TRIES; i++) {
        if (atomic_load_explicit(u->qi_status, memory_order_acquire) == seq)
            return err;
        uint32_t fsts = vtio_mmio_read32(&u->regs, VTD_FSTS_REG);
        if (fsts & VTD_FSTS_IQE) {
            err = vtio_fail(-EIO, "%s: the unit refused an invalidation descriptor", u->name);
            if (qi_skip_bad(u, wait_slot))
                return err;
            continue;
        }
        if (fsts & (VTD_FSTS_ITE | VTD_FSTS_ICE)) {
            /* The wait was aborted; the queue moves on once ITE is clear. */
            vtio_mmio_write32(&u->regs, VTD_FSTS_REG, fsts & (VTD_FSTS_ITE | VTD_FSTS_ICE));
            vtio_host_log(u->host, VTIO_LOG_ERR, "%s: device-TLB invalidation timed out",
                          u->name);
            return vtio_fail(-EIO, "%s: invalidation time-out (ITE)", u->name);
        }
        if (i % 64 == 63)
            sched_yield();
    }
    vtio_host_log(u->host, VTIO_LOG_ERR, "%s: invalidation wait did not complete", u->name);
    return vtio_fail(-EIO, "%s: invalidation wait did not complete", u->name);
}

/* Up to QI_MAX_BATCH descriptors and a wait.  qi_lock held. */
static int qi_submit_batch(struct intel_iommu *u, const uint64_t (*desc)[2], unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        qi_write_slot(u, (u->qi_tail + i) % QI_LENGTH, desc[i][0], desc[i][1]);
    if (++u->qi_seq == 0)               /* 0 is what the status word starts as */
        u->qi_seq = 1;
    uint32_t seq = u->qi_seq;
    unsigned wait_slot = (u->qi_tail + n) % QI_LENGTH;
    qi_write_slot(u, wait_slot,
                  VTD_INV_DESC_WAIT | VTD_INV_WAIT_SW | (uint64_t)seq << 32, u->qi_status_pa);
    u->qi_tail = (wait_slot + 1) % QI_LENGTH;
    vtio_mmio_write64(&u->regs, VTD_IQT_REG, (uint64_t)u->qi_tail * qi_desc_bytes(u));
    return qi_wait(u, seq, wait_slot);
}

int intel_qi_submit(struct intel_iommu *u, const uint64_t (*desc)[2], unsigned n)
{
    if (!u->qi)
        return vtio_fail(-ENODEV, "%s: no invalidation queue", u->name);
    int ret = 0;
    pthread_mutex_lock(&u->qi_lock);
    do {
        unsigned batch = n < QI_MAX_BATCH ? n : QI_MAX_BATCH;
        int r = qi_submit_batch(u, desc, batch);
        if (r && !ret)
            ret = r;
        desc += batch;
        n -= batch;
    } while (n);
    pthread_mutex_unlock(&u->qi_lock);
    return ret;
}

static void qi_one(struct intel_iommu *u, uint64_t q0, uint64_t q1)
{
    const uint64_t d[1][2] = { { q0, q1 } };
    intel_qi_submit(u, d, 1);
}

/* ------------------------------------------------------------------------
 * Register-based invalidation
 */

/* Polls the 64-bit register at off until busy clears.  reg_lock held.
 * @returns the last value read (busy still set: timed out). */
static uint64_t reg_wait(struct intel_iommu *u, uint64_t off, uint64_t busy)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < REG_POLL_TRIES; i++) {
        v = vtio_mmio_read64(&u->regs, off);
        if (!(v & busy))
            break;
        if (i % 64 == 63)
            sched_yield();
    }
    return v;
}

static void ccmd_flush(struct intel_iommu *u, unsigned gran, uint16_t did, uint16_t sid)
{
    uint64_t cmd = VTD_CCMD_ICC | VTD_MAKE(gran, 62, VTD_CCMD_CIRG_SHIFT) |
                   VTD_MAKE(sid, 31, 16) | VTD_MAKE(did, 15, 0);
    pthread_mutex_lock(&u->reg_lock);
    vtio_mmio_write64(&u->regs, VTD_CCMD_REG, cmd);
    uint64_t v = reg_wait(u, VTD_CCMD_REG, VTD_CCMD_ICC);
    pthread_mutex_unlock(&u->reg_lock);
    if ((v & VTD_CCMD_ICC) || !VTD_CCMD_CAIG(v)) {
        vtio_host_log(u->host, VTIO_LOG_ERR, "%s: context-cache invalidation failed", u->name);
        vtio_fail(-EIO, "%s: context-cache invalidation failed", u->name);
    }
}

static void iotlb_reg_flush(struct intel_iommu *u, unsigned gran, uint16_t did, uint64_t addr,
                            unsigned am)
{
    uint64_t iro = VTD_ECAP_IRO(u->ecap) * 16;
    uint64_t cmd = VTD_IOTLB_IVT | VTD_MAKE(gran, 61, VTD_IOTLB_IIRG_SHIFT) |
                   VTD_MAKE(did, 47, 32);
    if (u->cap & VTD_CAP_DRD)
        cmd |= VTD_IOTLB_DR;
    if (u->cap & VTD_CAP_DWD)
        cmd |= VTD_IOTLB_DW;
    pthread_mutex_lock(&u->reg_lock);
    if (gran == VTD_INV_PAGE)
        vtio_mmio_write64(&u->regs, iro + VTD_IVA_OFF, VTD_IVA_ADDR(addr) | am);
    vtio_mmio_write64(&u->regs, iro + VTD_IOTLB_OFF, cmd);
    uint64_t v = reg_wait(u, iro + VTD_IOTLB_OFF, VTD_IOTLB_IVT);
    pthread_mutex_unlock(&u->reg_lock);
    if ((v & VTD_IOTLB_IVT) || !VTD_IOTLB_IAIG(v)) {
        vtio_host_log(u->host, VTIO_LOG_ERR, "%s: IOTLB invalidation failed", u->name);
        vtio_fail(-EIO, "%s: IOTLB invalidation failed", u->name);
    }
}

/* ------------------------------------------------------------------------
 * The flushes
 */

void intel_flush_context(struct intel_iommu *u, unsigned gran, uint16_t did, uint16_t sid)
{
    if (gran == VTD_INV_GLOBAL)
        did = 0, sid = 0;
    else if (gran == VTD_INV_DOMAIN)
        sid = 0;
    if (!u->qi) {
        ccmd_flush(u, gran, did, sid);
        return;
    }
    qi_one(u, VTD_INV_DESC_CC | VTD_MAKE(gran, 5, VTD_INV_G_SHIFT) |
                  VTD_MAKE(did, 31, VTD_INV_DID_SHIFT) | VTD_MAKE(sid, 47, 32),
           0);
}

void intel_flush_iotlb(struct intel_iommu *u, unsigned gran, uint16_t did, uint64_t addr,
                       unsigned am)
{
    /* Page-selective only where the unit allows it; more is always safe. */
    if (gran == VTD_INV_PAGE && (!(u->cap & VTD_CAP_PSI) || am > VTD_CAP_MAMV(u->cap)))
        gran = VTD_INV_DOMAIN;
    if (gran != VTD_INV_PAGE)
        addr = 0, am = 0;
    if (gran == VTD_INV_GLOBAL)
        did = 0;
    if (!u->qi) {
        iotlb_reg_flush(u, gran, did, addr, am);
        return;
    }
    uint64_t q0 = VTD_INV_DESC_IOTLB | VTD_MAKE(gran, 5, VTD_INV_G_SHIFT) |
                  VTD_MAKE(did, 31, VTD_INV_DID_SHIFT);
    if (u->cap & VTD_CAP_DRD)
        q0 |= VTD_INV_IOTLB_DR;
    if (u->cap & VTD_CAP_DWD)
        q0 |= VTD_INV_IOTLB_DW;
    qi_one(u, q0, VTD_INV_ADDR(addr) | am);
}

/* The address mask of the smallest naturally aligned block of pages that
 * holds pages first..last: the number of low bits in which they differ. */
static unsigned covering_mask(uint64_t first, uint64_t last)
{
    uint64_t diff = first ^ last;
    return diff ? 64 - (unsigned)__builtin_clzll(diff) : 0;
}

void intel_flush_iotlb_range(struct intel_iommu *u, uint16_t did, uint64_t start, uint64_t end)
{
    if (end <= start)
        return;
    uint64_t first = start >> VTIO_PAGE_SHIFT, last = (end - 1) >> VTIO_PAGE_SHIFT;
    unsigned am = covering_mask(first, last);
    if (am > 63)
        am = 63;
    /* intel_flush_iotlb falls back to domain-selective when PSI cannot
     * express the mask. */
    intel_flush_iotlb(u, VTD_INV_PAGE, did, (first >> am << am) << VTIO_PAGE_SHIFT, am);
}

void intel_flush_pasid_cache(struct intel_iommu *u, uint16_t did, uint32_t pasid)
{
    if (!u->qi)
        return;             /* scalable mode always has the queue */
    unsigned g = did ? VTD_INV_PC_G_PASID : VTD_INV_PC_G_GLOBAL;
    qi_one(u, VTD_INV_DESC_PC | VTD_MAKE(g, 5, VTD_INV_G_SHIFT) |
                  (did ? VTD_MAKE(did, 31, VTD_INV_DID_SHIFT) | VTD_MAKE(pasid, 51, 32) : 0),
           0);
}

void intel_flush_iec(struct intel_iommu *u, bool global, unsigned index, unsigned count)
{
    if (!u->qi)
        return;             /* interrupt remapping always has the queue */
    unsigned im = count > 1 ? 64 - (unsigned)__builtin_clzll((uint64_t)count - 1) : 0;
    if (im > VTD_ECAP_MHMV(u->ecap))
        global = true;
    uint64_t q0 = VTD_INV_DESC_IEC;
    if (!global)
        q0 |= VTD_INV_IEC_G | VTD_MAKE(im, 31, 27) | VTD_MAKE(index >> im << im, 47, 32);
    qi_one(u, q0, 0);
}
