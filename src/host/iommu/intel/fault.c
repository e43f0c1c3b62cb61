/*
 * Fault reporting: the fault event interrupt, a fault thread per unit, and
 * the decoding of fault records for the IOMMU core (Linux's dmar_fault()
 * in drivers/iommu/intel/dmar.c, run as a threaded interrupt).
 *
 * The fault event is an MSI the unit sends through FEDATA/FEADDR/FEUADDR:
 * here a vector on CPU 0 in compatibility format (the unit's own events are
 * never remapped).  The unit sends it with one of its locks held, on the
 * thread that caused the fault (vtd.h): the handler therefore must not
 * touch the unit's registers.  It only wakes the unit's fault thread (an
 * atomic flag and a semaphore post, both non-blocking), as a threaded
 * interrupt's hard half would.
 *
 * Servicing (the thread, or intel_fault_sync from any thread; one mutex
 * serialises them so that records are reported once and in order): read
 * FSTS; walk the fault recording registers from FSTS.FRI around the ring,
 * decode each record with F set, clear its F (a write of bit 127 alone),
 * report it; then clear PFO.  Faults the unit records meanwhile do not
 * raise a new event while PPF is still set, so servicing repeats until FSTS
 * shows neither PPF nor PFO.  Queue errors (IQE, ITE, ICE) are left for the
 * invalidation code, which recovers the queue; they are only logged here,
 * once each time they appear.
 *
 * Each record becomes a struct vtio_iommu_fault for vtio_iommu_report_fault
 * (the core logs it rate-limited, keeps it and calls the domain's handler).
 * Before the core is registered (faults during bring-up) a record is logged
 * directly.
 */
#define _GNU_SOURCE                         /* pthread_setname_np */
#include "host/iommu/intel/intel_iommu.h"

#include <vtio/intr.h>

#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/error.h"

#define FAULT_CPU       0u
#define FSTS_QUEUE_ERRS (VTD_FSTS_IQE | VTD_FSTS_ICE | VTD_FSTS_ITE)
#define FRCD_F_TOP      ((uint32_t)(VTD_FRCD_HI_F >> 32))   /* F in the top dword */
#define FRCD_TOP_DWORD  12

struct intel_fault {
    struct intel_iommu *unit;
    unsigned vector;
    pthread_t thread;
    sem_t wake;
    atomic_bool pending;               /* an event arrived since the last wake */
    atomic_bool stop;
    pthread_mutex_t lock;              /* servicing: the thread vs intel_fault_sync */
    uint32_t queue_errs_seen;          /* under lock: logged already */
};

/* ------------------------------------------------------------------------
 * Reasons, in Linux's words.
 */

static const char *const dma_reasons[] = {
    [0x00] = "Software",
    [0x01] = "Present bit in root entry is clear",
    [0x02] = "Present bit in context entry is clear",
    [0x03] = "Invalid context entry",
    [0x04] = "Access beyond MGAW",
    [0x05] = "PTE Write access is not set",
    [0x06] = "PTE Read access is not set",
    [0x07] = "Next page table ptr is invalid",
    [0x08] = "Root table address invalid",
    [0x09] = "Context table ptr is invalid",
    [0x0a] = "non-zero reserved fields in RTP",
    [0x0b] = "non-zero reserved fields in CTP",
    [0x0c] = "non-zero reserved fields in PTE",
    [0x0d] = "PCE for translation request specifies blocking",
};

static const char *const ir_reasons[] = {
    [VTD_FR_IR_REQ_RSVD - 0x20] =
        "Detected reserved fields in the decoded interrupt-remapped request",
    [VTD_FR_IR_INDEX_OVER - 0x20] = "Interrupt index exceeded the interrupt-remapping table size",
    [VTD_FR_IR_ENTRY_P - 0x20] = "Present field in the IRTE entry is clear",
    [VTD_FR_IR_ROOT_INVAL - 0x20] = "Error accessing interrupt-remapping table pointed by IRTA_REG",
    [VTD_FR_IR_IRTE_RSVD - 0x20] = "Detected reserved fields in the IRTE entry",
    [VTD_FR_IR_REQ_COMPAT - 0x20] = "Blocked a compatibility format interrupt request",
    [VTD_FR_IR_SID_ERR - 0x20] =
        "Blocked an interrupt request due to source-id verification failure",
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static bool is_ir_reason(uint8_t reason)
{
    return reason >= VTD_FR_IR_REQ_RSVD && reason - VTD_FR_IR_REQ_RSVD < (int)N_OF(ir_reasons);
}

const char *intel_fault_reason_str(uint8_t reason)
{
    if (is_ir_reason(reason))
        return ir_reasons[reason - VTD_FR_IR_REQ_RSVD];
    if (reason < N_OF(dma_reasons))
        return dma_reasons[reason];
    return "Unknown";
}

/* ------------------------------------------------------------------------
 * Decoding and reporting.
 */

static struct vtio_iommu_fault decode(struct intel_iommu *u, uint64_t lo, uint64_t hi)
{
    uint8_t reason = (uint8_t)VTD_FRCD_HI_FR(hi);
    bool is_ir = is_ir_reason(reason);
    return (struct vtio_iommu_fault){
        .sid = (uint16_t)VTD_FRCD_HI_SID(hi),
        .is_interrupt = is_ir,
        .write = !(hi & VTD_FRCD_HI_T),
        .addr = is_ir ? lo >> VTD_FRCD_LO_IIDX_SHIFT : lo & VTD_FRCD_LO_FI_MASK,
        .has_pasid = (hi & VTD_FRCD_HI_PP) != 0,
        .pasid = (hi & VTD_FRCD_HI_PP) ? (uint32_t)VTD_FRCD_HI_PV(hi) : 0,
        .reason = reason,
        .reason_str = intel_fault_reason_str(reason),
        .unit = u->name,
    };
}

static void report(struct intel_iommu *u, const struct vtio_iommu_fault *f)
{
    struct vtio_host *h = u->host;
    if (h->iommu) {
        vtio_iommu_report_fault(h->iommu, f);
        return;
    }
    vtio_host_log(h, VTIO_LOG_ERR, "%s: %s fault from %02x:%02x.%u %s %#llx "
                  "[fault reason %#04x] %s", u->name,
                  f->is_interrupt ? "interrupt" : f->write ? "DMA write" : "DMA read",
                  f->sid >> 8, (f->sid >> 3) & 0x1f, f->sid & 7,
                  f->is_interrupt ? "index" : "addr", (unsigned long long)f->addr,
                  f->reason, f->reason_str);
}

/* ------------------------------------------------------------------------
 * Servicing.  f->lock held.
 */

static uint32_t fsts_read(struct intel_iommu *u)
{
    return vtio_mmio_read32(&u->regs, VTD_FSTS_REG);
}

/* Reports and clears every pending record, oldest (FRI) first.
 * @returns how many. */
static unsigned drain_records(struct intel_iommu *u, unsigned first)
{
    uint64_t base = VTD_CAP_FRO(u->cap) * 16;
    unsigned n = (unsigned)VTD_CAP_NFR(u->cap) + 1, done = 0;
    for (unsigned k = 0; k < n; k++) {
        uint64_t at = base + (uint64_t)((first + k) % n) * VTD_FRCD_SIZE;
        uint64_t hi = vtio_mmio_read64(&u->regs, at + 8);
        if (!(hi & VTD_FRCD_HI_F) || hi == ~0ull)
            continue;
        uint64_t lo = vtio_mmio_read64(&u->regs, at);
        vtio_mmio_write32(&u->regs, at + FRCD_TOP_DWORD, FRCD_F_TOP);
        struct vtio_iommu_fault f = decode(u, lo, hi);
        report(u, &f);
        done++;
    }
    return done;
}

/* Logs queue errors that were not set at the last look. */
static void note_queue_errors(struct intel_fault *f, uint32_t fsts)
{
    struct intel_iommu *u = f->unit;
    uint32_t now = fsts & FSTS_QUEUE_ERRS, fresh = now & ~f->queue_errs_seen;
    f->queue_errs_seen = now;
    if (!fresh)
        return;
    uint64_t iqer = vtio_mmio_read64(&u->regs, VTD_IQER_REG);
    vtio_host_log(u->host, VTIO_LOG_ERR, "%s: invalidation queue error:%s%s%s (IQER %#llx)",
                  u->name, fresh & VTD_FSTS_IQE ? " IQE" : "",
                  fresh & VTD_FSTS_ITE ? " ITE" : "", fresh & VTD_FSTS_ICE ? " ICE" : "",
                  (unsigned long long)iqer);
}

static void service(struct intel_fault *f)
{
    struct intel_iommu *u = f->unit;
    for (;;) {
        uint32_t fsts = fsts_read(u);
        if (fsts == ~0u)
            return;                        /* the registers are gone */
        note_queue_errors(f, fsts);
        if (!(fsts & (VTD_FSTS_PPF | VTD_FSTS_PFO)))
            return;
        unsigned done = 0;
        if (fsts & VTD_FSTS_PPF)
            done = drain_records(u, (unsigned)VTD_FSTS_FRI(fsts));
        if (fsts & VTD_FSTS_PFO) {
            vtio_mmio_write32(&u->regs, VTD_FSTS_REG, VTD_FSTS_PFO);
            vtio_host_log(u->host, VTIO_LOG_WARN, "%s: fault overflow: faults were lost "
                          "while the recording registers were full", u->name);
        } else if (done == 0) {
            return;                        /* PPF without a pending record */
        }
    }
}

/* ------------------------------------------------------------------------
 * The interrupt and the thread.
 */

/* The fault event: on the faulting thread, under a unit lock. */
static void fault_irq(void *opaque, unsigned cpu, unsigned vector)
{
    struct intel_fault *f = opaque;
    (void)cpu;
    (void)vector;
    if (!atomic_exchange(&f->pending, true))
        sem_post(&f->wake);
}

static void *fault_thread(void *arg)
{
    struct intel_fault *f = arg;
    for (;;) {
        while (sem_wait(&f->wake) < 0 && errno == EINTR)
            ;
        if (atomic_load(&f->stop))
            return NULL;
        atomic_store(&f->pending, false);
        pthread_mutex_lock(&f->lock);
        service(f);
        pthread_mutex_unlock(&f->lock);
    }
}

static void fault_free(struct intel_fault *f)
{
    sem_destroy(&f->wake);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

int intel_fault_init(struct intel_iommu *u)
{
    if (!u || !u->host)
        return vtio_fail(-EINVAL, "fault: no unit");
    if (u->fault)
        return 0;
    struct vtio_host *h = u->host;
    struct intel_fault *f = calloc(1, sizeof(*f));
    if (!f)
        return vtio_fail(-ENOMEM, "%s: out of memory", u->name);
    f->unit = u;
    pthread_mutex_init(&f->lock, NULL);
    sem_init(&f->wake, 0, 0);

    int vec = vtio_intr_alloc_vector(h->intr, FAULT_CPU, fault_irq, f);
    if (vec < 0) {
        fault_free(f);
        return vtio_fail(vec, "%s: no vector for the fault event", u->name);
    }
    f->vector = (unsigned)vec;
    int rc = pthread_create(&f->thread, NULL, fault_thread, f);
    if (rc != 0) {
        vtio_intr_unregister(h->intr, FAULT_CPU, f->vector);
        fault_free(f);
        return vtio_fail(-rc, "%s: cannot start the fault thread", u->name);
    }
    char name[16];
    snprintf(name, sizeof(name), "%s-fault", u->name);
    pthread_setname_np(f->thread, name);

    uint64_t addr;
    uint32_t data;
    vtio_msi_compose(FAULT_CPU, f->vector, &addr, &data);
    vtio_mmio_write32(&u->regs, VTD_FEDATA_REG, data);
    vtio_mmio_write32(&u->regs, VTD_FEADDR_REG, (uint32_t)addr);
    vtio_mmio_write32(&u->regs, VTD_FEUADDR_REG, (uint32_t)(addr >> 32));
    u->fault = f;
    /* Unmasking sends an event held since reset: faults recorded before
     * now are serviced at once. */
    vtio_mmio_write32(&u->regs, VTD_FECTL_REG, 0);
    return 0;
}

void intel_fault_exit(struct intel_iommu *u)
{
    if (!u || !u->fault)
        return;
    struct intel_fault *f = u->fault;
    vtio_mmio_write32(&u->regs, VTD_FECTL_REG, (uint32_t)VTD_xECTL_IM);
    /* When this returns no handler call is running: nothing posts again. */
    vtio_intr_unregister(u->host->intr, FAULT_CPU, f->vector);
    atomic_store(&f->stop, true);
    sem_post(&f->wake);
    pthread_join(f->thread, NULL);
    u->fault = NULL;
    fault_free(f);
}

void intel_fault_sync(struct intel_iommu *u)
{
    if (!u || !u->fault)
        return;
    struct intel_fault *f = u->fault;
    pthread_mutex_lock(&f->lock);
    service(f);
    pthread_mutex_unlock(&f->lock);
}
