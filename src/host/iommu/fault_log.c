/*
 * The IOMMU core's fault log (include/vtio/iommu.h, "faults"; the driver
 * side is vtio_iommu_report_fault in iommu_priv.h).
 *
 * The driver decodes each hardware fault record and reports it here, from
 * its fault thread or from vtio_iommu_fault_sync on the caller's thread.
 * A report takes the next sequence number and a slot in a ring of the last
 * VTIO_IOMMU_FAULT_LOG faults, both under fault_lock, so the ring's order
 * is the sequence order; log[(seq - 1) % N] holds fault seq.  It prints
 * Linux's DMAR line at most 10 times per 5 seconds (then says how many
 * were suppressed, as Linux's ratelimit does) at VTIO_LOG_ERR, and calls
 * the fault handler of the domain the faulting requester id is attached
 * to.  Printing and the handler run with no lock held, so a handler may
 * call back into the core (but not into the fault calls: fault_sync would
 * re-enter the driver's fault processing).
 */
#include <vtio/host.h>
#include <vtio/pci.h>

#include <time.h>

#include "host/iommu/iommu_priv.h"

#define FAULT_RATELIMIT_NS    (5ull * 1000000000ull)   /* Linux's DEFAULT_RATELIMIT_INTERVAL */
#define FAULT_RATELIMIT_BURST 10u                      /* ... and _BURST */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void vtio_iommu_set_fault_handler(struct vtio_iommu_domain *d, vtio_iommu_fault_fn fn,
                                  void *opaque)
{
    if (!d)
        return;
    /* A reader loads fn, then opaque: publish opaque first when setting,
     * withdraw fn first when clearing. */
    if (fn) {
        atomic_store_explicit(&d->fault_opaque, opaque, memory_order_relaxed);
        atomic_store_explicit(&d->fault_fn, fn, memory_order_release);
    } else {
        atomic_store_explicit(&d->fault_fn, NULL, memory_order_release);
        atomic_store_explicit(&d->fault_opaque, opaque, memory_order_relaxed);
    }
}

/*
 * Linux's __ratelimit with interval 5 s and burst 10 (fault_lock held):
 * the first 10 messages of a window print; the rest are counted, and the
 * first call of the next window reports the count.  @returns whether this
 * message prints; *missed the count to report first (0: none).
 */
static bool fault_ratelimit(struct vtio_iommu *iommu, uint64_t now, unsigned *missed)
{
    *missed = 0;
    if (iommu->ratelimit_begin_ns == 0)
        iommu->ratelimit_begin_ns = now;
    if (now - iommu->ratelimit_begin_ns >= FAULT_RATELIMIT_NS) {
        *missed = iommu->ratelimit_missed;
        iommu->ratelimit_begin_ns = now;
        iommu->ratelimit_printed = 0;
        iommu->ratelimit_missed = 0;
    }
    if (iommu->ratelimit_printed < FAULT_RATELIMIT_BURST) {
        iommu->ratelimit_printed++;
        return true;
    }
    iommu->ratelimit_missed++;
    return false;
}

/* Linux's DMAR fault line (dmar_fault_do_one). */
static void fault_print(struct vtio_host *h, const struct vtio_iommu_fault *f)
{
    const char *reason = f->reason_str ? f->reason_str : "Unknown";
    unsigned bus = VTIO_PCI_RID_BUS(f->sid), dev = VTIO_PCI_RID_DEV(f->sid);
    unsigned fn = VTIO_PCI_RID_FN(f->sid);
    if (f->is_interrupt)
        vtio_host_log(h, VTIO_LOG_ERR, "DMAR: [INTR-REMAP] Request device [%02x:%02x.%u] "
                      "fault index 0x%llx [fault reason 0x%02x] %s", bus, dev, fn,
                      (unsigned long long)f->addr, f->reason, reason);
    else if (f->has_pasid)
        vtio_host_log(h, VTIO_LOG_ERR, "DMAR: [%s PASID 0x%x] Request device [%02x:%02x.%u] "
                      "fault addr 0x%llx [fault reason 0x%02x] %s",
                      f->write ? "DMA Write" : "DMA Read", f->pasid, bus, dev, fn,
                      (unsigned long long)f->addr, f->reason, reason);
    else
        vtio_host_log(h, VTIO_LOG_ERR, "DMAR: [%s NO_PASID] Request device [%02x:%02x.%u] "
                      "fault addr 0x%llx [fault reason 0x%02x] %s",
                      f->write ? "DMA Write" : "DMA Read", bus, dev, fn,
                      (unsigned long long)f->addr, f->reason, reason);
}

void vtio_iommu_report_fault(struct vtio_iommu *iommu, const struct vtio_iommu_fault *f)
{
    if (!iommu || !f)
        return;
    struct vtio_iommu_fault entry = *f;
    unsigned missed;
    /* The domain's handler runs under fault_lock: a domain is freed only
     * after taking it (domain_destroy), and unregister sets `dying` under it
     * before freeing groups, so the group and domain found here stay alive
     * while the handler runs. */
    pthread_mutex_lock(&iommu->fault_lock);
    if (iommu->dying) {
        pthread_mutex_unlock(&iommu->fault_lock);
        return;
    }
    entry.seq = ++iommu->fault_seq;
    iommu->log[(entry.seq - 1) % VTIO_IOMMU_FAULT_LOG] = entry;
    bool print = fault_ratelimit(iommu, now_ns(), &missed);
    struct vtio_iommu_group *g = vtio_iommu_group_of_rid(iommu, entry.sid);
    struct vtio_iommu_domain *d = g ? atomic_load_explicit(&g->domain, memory_order_acquire)
                                    : NULL;
    vtio_iommu_fault_fn fn = d ? atomic_load_explicit(&d->fault_fn, memory_order_acquire)
                               : NULL;
    if (fn)
        fn(atomic_load_explicit(&d->fault_opaque, memory_order_relaxed), d, &entry);
    pthread_mutex_unlock(&iommu->fault_lock);

    if (missed)
        vtio_host_log(iommu->host, VTIO_LOG_WARN, "dmar_fault: %u callbacks suppressed",
                      missed);
    if (print)
        fault_print(iommu->host, &entry);
}

uint64_t vtio_iommu_fault_sync(struct vtio_host *h)
{
    if (!h || !h->iommu)
        return 0;
    struct vtio_iommu *iommu = h->iommu;
    if (iommu->ops->fault_sync)
        iommu->ops->fault_sync(iommu->drv);
    pthread_mutex_lock(&iommu->fault_lock);
    uint64_t seq = iommu->fault_seq;
    pthread_mutex_unlock(&iommu->fault_lock);
    return seq;
}

unsigned vtio_iommu_fault_log(struct vtio_host *h, struct vtio_iommu_fault *out, unsigned max)
{
    if (!h || !h->iommu || !out)
        return 0;
    struct vtio_iommu *iommu = h->iommu;
    pthread_mutex_lock(&iommu->fault_lock);
    uint64_t have = iommu->fault_seq < VTIO_IOMMU_FAULT_LOG ? iommu->fault_seq
                                                            : VTIO_IOMMU_FAULT_LOG;
    unsigned n = have < max ? (unsigned)have : max;
    /* the last n, oldest first */
    for (unsigned i = 0; i < n; i++) {
        uint64_t seq = iommu->fault_seq - n + 1 + i;
        out[i] = iommu->log[(seq - 1) % VTIO_IOMMU_FAULT_LOG];
    }
    pthread_mutex_unlock(&iommu->fault_lock);
    return n;
}
