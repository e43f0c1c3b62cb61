/*
 * The flush queue: lazy IOTLB invalidation for DMA_FQ domains (Linux's
 * dma-iommu flush queue).
 *
 * A lazy unmap clears the page-table entries at once but does not wait for
 * the IOTLB invalidation.  The IOVA range (and the table pages the unmap
 * emptied) goes into a queue instead, and is released (the IOVA given back
 * to the allocator, the pages to the page allocator) only after a full
 * invalidation of the domain that *started after* it was queued has
 * completed.  Until then the device may still use a stale translation, so
 * the IOVA must not be handed to anyone else, and the table pages must not
 * be reused, since the hardware may still walk them.
 *
 * Bookkeeping, as Linux's: two counters per queue, flush_start_cnt and
 * flush_finish_cnt, raised before and after every full invalidation.  An
 * entry carries the start count read when it was queued; it may be released
 * once finish count > its counter (some invalidation that started after it
 * was queued has finished), or, by the thread that just did an
 * invalidation that started at count s, if its counter <= s.
 *
 * Layout: `rings` rings of `size` entries, each with its own lock; a thread
 * picks a ring by a per-thread index, so threads rarely share a lock.  When
 * a ring is full, the queuing thread invalidates the whole domain and
 * reclaims.  Otherwise a host-wide timer thread invalidates a queue
 * fq_timeout_ms after the first entry queued since its last timed flush.
 *
 * Ordering: the counters are sequentially consistent atomics, so "PTEs
 * cleared -> counter read" at queue time and "start count raised ->
 * invalidation" at flush time are ordered as the argument above needs.
 *
 * Timer: one thread per host sleeps on a condition variable (monotonic
 * clock) until the earliest deadline among the armed queues.  A queue is
 * armed at most once (atomic flag, cleared by the timer before it flushes,
 * so an entry queued after the clear re-arms and one queued before is
 * covered by that flush).  vtio_fq_destroy disarms its queue and waits out a
 * timed flush in progress on it before freeing anything.
 */
#include "host/dma/dma_priv.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <time.h>

#include <vtio/iova.h>

#include "util/error.h"

#define FQ_DEFAULT_SIZE       256u
#define FQ_DEFAULT_TIMEOUT_MS 10u

struct fq_entry {
    uint64_t pfn, pages;
    struct vtio_iommu_freelist freelist;
    uint64_t counter;              /* flush_start_cnt when queued */
};

struct fq_ring {
    pthread_mutex_t lock;
    unsigned head, count;          /* oldest entry, number of entries */
    struct fq_entry *e;
} __attribute__((aligned(64)));

struct vtio_fq {
    struct vtio_host *host;
    struct vtio_iommu_domain *domain;
    struct vtio_iova_domain *iovad;
    struct vtio_fq_timer *timer;
    unsigned nrings, size;
    uint64_t timeout_ns;
    _Atomic uint64_t flush_start_cnt, flush_finish_cnt;
    /* timer state: armed is read without the timer lock; the rest under it */
    atomic_bool armed;
    uint64_t deadline_ns;
    bool in_timer;                 /* the timer thread is flushing it now */
    struct vtio_fq *next_armed;
    struct fq_ring *rings;
};

struct vtio_fq_timer {
    struct vtio_host *host;
    pthread_mutex_t lock;
    pthread_cond_t wake;           /* a new earliest deadline, or stop */
    pthread_cond_t idle;           /* a timed flush finished */
    struct vtio_fq *armed;         /* armed queues (unordered list) */
    bool stop;
    pthread_t thread;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- entries */

static void entry_release(struct vtio_fq *fq, struct fq_entry *e)
{
    vtio_iova_free_fast(fq->iovad, e->pfn, e->pages);
    vtio_iommu_freelist_release(&e->freelist, fq->host->pages);
}

/* Releases the ring's oldest entries whose counter is below `limit`
 * (entries are in counter order within a ring).  Ring lock held. */
static void ring_reclaim(struct vtio_fq *fq, struct fq_ring *r, uint64_t limit)
{
    while (r->count && r->e[r->head].counter < limit) {
        entry_release(fq, &r->e[r->head]);
        r->head = (r->head + 1) % fq->size;
        r->count--;
    }
}

/* What an entry may be released under without a new flush. */
static uint64_t reclaim_limit(struct vtio_fq *fq)
{
    return atomic_load(&fq->flush_finish_cnt);
}

/*
 * One full invalidation of the domain, counted.  @returns the start count
 * it took: every entry whose counter is <= it was queued before the
 * invalidation started, so is covered by it.
 */
static uint64_t fq_invalidate(struct vtio_fq *fq)
{
    uint64_t s = atomic_fetch_add(&fq->flush_start_cnt, 1);
    fq->domain->ops->flush_iotlb_all(fq->domain);
    atomic_fetch_add(&fq->flush_finish_cnt, 1);
    atomic_fetch_add_explicit(&fq->host->dma->fq_flushes, 1, memory_order_relaxed);
    return s;
}

/* Invalidates, then releases in every ring what that covered. */
static void fq_flush_all_rings(struct vtio_fq *fq)
{
    uint64_t limit = fq_invalidate(fq) + 1;
    uint64_t finished = reclaim_limit(fq);
    if (finished > limit)
        limit = finished;
    for (unsigned i = 0; i < fq->nrings; i++) {
        struct fq_ring *r = &fq->rings[i];
        pthread_mutex_lock(&r->lock);
        ring_reclaim(fq, r, limit);
        pthread_mutex_unlock(&r->lock);
    }
}

/* ---- the calling thread's ring */

static atomic_uint next_ring_hint;
static _Thread_local unsigned ring_hint = UINT_MAX;

static struct fq_ring *my_ring(struct vtio_fq *fq)
{
    if (ring_hint == UINT_MAX)
        ring_hint = atomic_fetch_add_explicit(&next_ring_hint, 1, memory_order_relaxed) &
                    0x7fffffffu;
    return &fq->rings[ring_hint % fq->nrings];
}

/* ---- timer */

static void timer_arm(struct vtio_fq *fq)
{
    /* Cheap test first: the common case is "already armed". */
    if (atomic_load(&fq->armed) || atomic_exchange(&fq->armed, true))
        return;
    struct vtio_fq_timer *t = fq->timer;
    pthread_mutex_lock(&t->lock);
    fq->deadline_ns = now_ns() + fq->timeout_ns;
    fq->next_armed = t->armed;
    t->armed = fq;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
}

/* Unlinks fq from the armed list if it is there.  Timer lock held. */
static void timer_unlink(struct vtio_fq_timer *t, struct vtio_fq *fq)
{
    for (struct vtio_fq **p = &t->armed; *p; p = &(*p)->next_armed) {
        if (*p == fq) {
            *p = fq->next_armed;
            fq->next_armed = NULL;
            return;
        }
    }
}

static struct vtio_fq *timer_earliest(struct vtio_fq_timer *t)
{
    struct vtio_fq *best = NULL;
    for (struct vtio_fq *q = t->armed; q; q = q->next_armed)
        if (!best || q->deadline_ns < best->deadline_ns)
            best = q;
    return best;
}

static void timer_wait_until(struct vtio_fq_timer *t, uint64_t deadline_ns)
{
    struct timespec ts = { .tv_sec = (time_t)(deadline_ns / 1000000000ull),
                           .tv_nsec = (long)(deadline_ns % 1000000000ull) };
    pthread_cond_timedwait(&t->wake, &t->lock, &ts);
}

static void *timer_main(void *arg)
{
    struct vtio_fq_timer *t = arg;
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        struct vtio_fq *fq = timer_earliest(t);
        if (!fq) {
            pthread_cond_wait(&t->wake, &t->lock);
            continue;
        }
        if (now_ns() < fq->deadline_ns) {
            timer_wait_until(t, fq->deadline_ns);
            continue;
        }
        timer_unlink(t, fq);
        /* Cleared before the flush: an entry queued from now on re-arms. */
        atomic_store(&fq->armed, false);
        fq->in_timer = true;
        pthread_mutex_unlock(&t->lock);

        fq_flush_all_rings(fq);
        atomic_fetch_add_explicit(&fq->host->dma->fq_timeout_flushes, 1,
                                  memory_order_relaxed);

        pthread_mutex_lock(&t->lock);
        fq->in_timer = false;
        pthread_cond_broadcast(&t->idle);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

int vtio_fq_timer_create(struct vtio_host *h, struct vtio_fq_timer **out)
{
    struct vtio_fq_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return vtio_fail(-ENOMEM, "dma: out of memory for the flush-queue timer");
    t->host = h;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->wake, &ca);
    pthread_cond_init(&t->idle, NULL);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&t->thread, NULL, timer_main, t) != 0) {
        pthread_cond_destroy(&t->idle);
        pthread_cond_destroy(&t->wake);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return vtio_fail(-ENOMEM, "dma: cannot start the flush-queue timer thread");
    }
    *out = t;
    return 0;
}

void vtio_fq_timer_destroy(struct vtio_fq_timer *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stop = true;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    pthread_cond_destroy(&t->idle);
    pthread_cond_destroy(&t->wake);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* ---- queues */

int vtio_fq_create(struct vtio_host *h, struct vtio_iommu_domain *d, struct vtio_fq **out)
{
    const struct vtio_dma_cookie *cookie = d->dma_cookie;
    if (!h->dma || !h->dma->fq_timer || !cookie || !cookie->iovad)
        return vtio_fail(-EINVAL, "dma: flush queue needs the DMA layer and a cookie");
    struct vtio_fq *fq = calloc(1, sizeof(*fq));
    if (!fq)
        return vtio_fail(-ENOMEM, "dma: out of memory for a flush queue");
    fq->host = h;
    fq->domain = d;
    fq->iovad = cookie->iovad;
    fq->timer = h->dma->fq_timer;
    fq->nrings = h->fw.ncpus ? h->fw.ncpus : 1;
    fq->size = h->opts.fq_size ? h->opts.fq_size : FQ_DEFAULT_SIZE;
    fq->timeout_ns = (uint64_t)(h->opts.fq_timeout_ms ? h->opts.fq_timeout_ms
                                                      : FQ_DEFAULT_TIMEOUT_MS) * 1000000ull;
    fq->rings = aligned_alloc(64, sizeof(*fq->rings) * fq->nrings);
    if (!fq->rings) {
        free(fq);
        return vtio_fail(-ENOMEM, "dma: out of memory for flush-queue rings");
    }
    unsigned made = 0;
    for (; made < fq->nrings; made++) {
        struct fq_ring *r = &fq->rings[made];
        *r = (struct fq_ring){ 0 };
        r->e = calloc(fq->size, sizeof(*r->e));
        if (!r->e)
            break;
        pthread_mutex_init(&r->lock, NULL);
    }
    if (made < fq->nrings) {
        while (made--) {
            pthread_mutex_destroy(&fq->rings[made].lock);
            free(fq->rings[made].e);
        }
        free(fq->rings);
        free(fq);
        return vtio_fail(-ENOMEM, "dma: out of memory for flush-queue entries");
    }
    *out = fq;
    return 0;
}

void vtio_fq_destroy(struct vtio_fq *fq)
{
    if (!fq)
        return;
    struct vtio_fq_timer *t = fq->timer;
    pthread_mutex_lock(&t->lock);
    timer_unlink(t, fq);
    while (fq->in_timer)
        pthread_cond_wait(&t->idle, &t->lock);
    pthread_mutex_unlock(&t->lock);

    fq_flush_all_rings(fq);     /* nobody queues any more: this empties every ring */
    for (unsigned i = 0; i < fq->nrings; i++) {
        struct fq_ring *r = &fq->rings[i];
        for (unsigned k = 0; k < fq->size; k++)
            vtio_iommu_freelist_free(&r->e[k].freelist);
        pthread_mutex_destroy(&r->lock);
        free(r->e);
    }
    free(fq->rings);
    free(fq);
}

void vtio_fq_queue(struct vtio_fq *fq, uint64_t pfn, uint64_t pages,
                   struct vtio_iommu_freelist *fl)
{
    struct fq_ring *r = my_ring(fq);
    pthread_mutex_lock(&r->lock);
    ring_reclaim(fq, r, reclaim_limit(fq));
    if (r->count == fq->size) {
        uint64_t limit = fq_invalidate(fq) + 1;
        atomic_fetch_add_explicit(&fq->host->dma->fq_full_flushes, 1, memory_order_relaxed);
        ring_reclaim(fq, r, limit);
    }
    struct fq_entry *e = &r->e[(r->head + r->count) % fq->size];
    e->pfn = pfn;
    e->pages = pages;
    /* The page tables were changed before this read (seq_cst): any
     * invalidation that starts with a higher count covers them. */
    e->counter = atomic_load(&fq->flush_start_cnt);
    /* Take the caller's pages by swapping arrays: the entry's old array is
     * empty (released), so the caller is left with an empty freelist. */
    struct vtio_iommu_freelist spare = e->freelist;
    e->freelist = *fl;
    *fl = spare;
    r->count++;
    pthread_mutex_unlock(&r->lock);
    timer_arm(fq);
}

void vtio_fq_flush(struct vtio_fq *fq)
{
    if (fq)
        fq_flush_all_rings(fq);
}
