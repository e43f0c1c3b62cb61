/*
 * swiotlb: the bounce-buffer pool (Linux's kernel/dma/swiotlb.c, written
 * here).  A device that cannot reach a buffer (its mask is below the
 * buffer, or it is untrusted and the buffer shares its pages with other
 * data) is given a copy of the buffer in this pool instead; the CPU copies
 * between the two at map, sync and unmap time.
 *
 * Layout.  The pool is one buddy block below 4 GiB (VTIO_PAGE_DMA32), so
 * it is physically contiguous and aligned to its size.  Its size is the
 * largest power of two that is at most the size asked for, between one
 * segment (256 KiB) and 1 GiB; if no such block is free, smaller ones are
 * tried down to one segment (Linux also halves its pool until it fits).
 * The pool is cut into 2 KiB slots; 128 slots make a segment, and a
 * mapping (a "run" of slots) never crosses a segment, so no mapping is
 * longer than 256 KiB.
 *
 * Areas.  The segments are shared out among "areas", one per CPU of the
 * machine (rounded up to a power of two, at most one per segment), each
 * with its own lock, search index and use count, so that threads mapping
 * at once mostly take different locks.  A thread starts in the area its
 * per-thread number picks and moves on to the next areas only if its own
 * has no room; the pool is full only when no area has a fitting run.
 *
 * Free runs.  As in Linux, every slot keeps free_run: the number of free
 * slots from it to the first used slot or the segment's end (0: in use).
 * A run of n slots fits at slot i iff free_run[i] >= n; taking or giving
 * back a run rewrites its own slots and the free slots just before it in
 * the same segment, so both are O(segment).  A search walks candidate
 * starts aligned to the stride from the area's index (where the last run
 * ended), wrapping once around the area.
 *
 * Per slot of a run: the original physical address its bytes stand for
 * and how many bytes of the original remain from it on, so that a sync may
 * start anywhere inside a mapping; the run's first slot also holds the
 * run's length.  These are written under the area lock at map and cleared
 * under it at unmap; sync reads them without the lock, relying, as the
 * DMA API does, on the caller not syncing a mapping it is unmapping.
 *
 * Copies are the CPU's: memcpy through the direct map (the original may
 * also be non-RAM, e.g. a BAR, and is then read and written through the
 * CPUs' view of memory).
 */
#include "host/dma/dma_priv.h"

#include <vtio/mem.h>
#include <vtio/page_alloc.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/error.h"

#define NO_ORIG         (~0ull)
#define SEG_BYTES       ((uint64_t)VTIO_SWIOTLB_MAX_MAP)
#define MIN_ORDER       6u              /* one segment: 256 KiB */
#define LOG_INTERVAL_S  5               /* rate limit of "buffer is full": */
#define LOG_BURST       10              /* ... 10 messages per 5 s, as Linux */

struct slot {
    uint64_t orig;          /* original address these 2 KiB stand for; NO_ORIG if free */
    uint32_t orig_left;     /* bytes of the original from this slot on (0 in padding) */
    uint8_t run;            /* first slot of a run: its length; else 0 */
    uint8_t free_run;       /* free slots from here to a used one or the segment end */
};

struct area {
    pthread_mutex_t lock;
    unsigned first, nslots; /* [first, first + nslots) of the pool's slots */
    unsigned index;         /* where the next search starts (relative) */
    _Atomic unsigned used;  /* slots in use (written under lock) */
} __attribute__((aligned(64)));

struct vtio_swiotlb {
    struct vtio_host *h;
    uint64_t base, bytes;
    unsigned order;
    unsigned nslots, nareas, area_slots;
    struct slot *slots;
    struct area *areas;
    pthread_mutex_t log_lock;       /* the rate limit below */
    time_t log_window;
    unsigned log_count;
};

static _Atomic unsigned next_thread_number;
static __thread unsigned thread_number;     /* 0: not yet given */

/* The area a thread tries first: threads are numbered as they first map. */
static unsigned home_area(const struct vtio_swiotlb *p)
{
    if (thread_number == 0)
        thread_number = atomic_fetch_add_explicit(&next_thread_number, 1,
                                                  memory_order_relaxed) + 1;
    return (thread_number - 1) % p->nareas;
}

static unsigned round_up_pow2(unsigned n)
{
    unsigned r = 1;
    while (r < n)
        r <<= 1;
    return r;
}

/* ------------------------------------------------------------------------
 * Creation
 * ------------------------------------------------------------------------ */

/* The order of the pool for `bytes`: the largest power of two not above it,
 * clamped to [one segment, 1 GiB]. */
static unsigned pool_order(uint64_t bytes)
{
    unsigned order = MIN_ORDER;
    while (order < VTIO_PAGE_MAX_ORDER && (VTIO_PAGE_SIZE << (order + 1)) <= bytes)
        order++;
    return order;
}

static int alloc_pool_block(struct vtio_swiotlb *p, uint64_t bytes)
{
    unsigned want = pool_order(bytes);
    for (unsigned order = want;; order--) {
        if (vtio_page_alloc(p->h->pages, order, VTIO_PAGE_DMA32, &p->base) == 0) {
            p->order = order;
            p->bytes = VTIO_PAGE_SIZE << order;
            if (order < want)
                vtio_host_log(p->h, VTIO_LOG_WARN,
                              "swiotlb: bounce pool reduced to %llu KiB (no larger block "
                              "free below 4 GiB)", (unsigned long long)(p->bytes >> 10));
            return 0;
        }
        if (order == MIN_ORDER)
            return vtio_fail(-ENOMEM, "swiotlb: no %llu KiB free below 4 GiB for the "
                             "bounce pool", (unsigned long long)(SEG_BYTES >> 10));
    }
}

static void init_slots(struct vtio_swiotlb *p)
{
    for (unsigned i = 0; i < p->nslots; i++)
        p->slots[i] = (struct slot){
            .orig = NO_ORIG,
            .free_run = (uint8_t)(VTIO_SWIOTLB_SEG_SLOTS - i % VTIO_SWIOTLB_SEG_SLOTS),
        };
}

/* One area per CPU, rounded up to a power of two, at most one per segment
 * (both are powers of two, so every area holds the same whole segments). */
static unsigned count_areas(const struct vtio_swiotlb *p)
{
    unsigned nsegs = p->nslots / VTIO_SWIOTLB_SEG_SLOTS;
    unsigned want = round_up_pow2(p->h->fw.ncpus ? p->h->fw.ncpus : 1);
    return want < nsegs ? want : nsegs;
}

static void init_areas(struct vtio_swiotlb *p)
{
    p->area_slots = p->nslots / p->nareas;
    for (unsigned a = 0; a < p->nareas; a++) {
        pthread_mutex_init(&p->areas[a].lock, NULL);
        p->areas[a].first = a * p->area_slots;
        p->areas[a].nslots = p->area_slots;
    }
}

int vtio_swiotlb_create(struct vtio_host *h, uint64_t bytes, struct vtio_swiotlb **out)
{
    if (!h || !out)
        return vtio_fail(-EINVAL, "swiotlb: create needs a host");
    struct vtio_swiotlb *p = calloc(1, sizeof(*p));
    if (!p)
        return vtio_fail(-ENOMEM, "swiotlb: out of memory");
    p->h = h;
    int rc = alloc_pool_block(p, bytes);
    if (rc < 0) {
        free(p);
        return rc;
    }
    p->nslots = (unsigned)(p->bytes >> VTIO_SWIOTLB_SLOT_SHIFT);
    p->nareas = count_areas(p);
    p->slots = calloc(p->nslots, sizeof(*p->slots));
    p->areas = aligned_alloc(64, p->nareas * sizeof(*p->areas));
    if (!p->slots || !p->areas) {
        free(p->slots);
        free(p->areas);
        vtio_page_free(h->pages, p->base, p->order);
        unsigned nslots = p->nslots;
        free(p);
        return vtio_fail(-ENOMEM, "swiotlb: out of memory for %u slots", nslots);
    }
    memset(p->areas, 0, p->nareas * sizeof(*p->areas));
    init_slots(p);
    init_areas(p);
    pthread_mutex_init(&p->log_lock, NULL);
    vtio_host_log(h, VTIO_LOG_INFO, "swiotlb: mapped [%#llx-%#llx] (%lluMB), %u areas",
                  (unsigned long long)p->base, (unsigned long long)(p->base + p->bytes - 1),
                  (unsigned long long)(p->bytes >> 20), p->nareas);
    *out = p;
    return 0;
}

void vtio_swiotlb_destroy(struct vtio_swiotlb *p)
{
    if (!p)
        return;
    for (unsigned a = 0; a < p->nareas; a++)
        pthread_mutex_destroy(&p->areas[a].lock);
    pthread_mutex_destroy(&p->log_lock);
    vtio_page_free(p->h->pages, p->base, p->order);
    free(p->areas);
    free(p->slots);
    free(p);
}

/* ------------------------------------------------------------------------
 * Runs of slots (area lock held)
 * ------------------------------------------------------------------------ */

static bool same_segment(unsigned a, unsigned b)
{
    return a / VTIO_SWIOTLB_SEG_SLOTS == b / VTIO_SWIOTLB_SEG_SLOTS;
}

/* After slot `end` changed, renumbers the free slots just before it. */
static void renumber_free_before(struct vtio_swiotlb *p, unsigned end, unsigned count)
{
    for (unsigned i = end; i-- > 0 && same_segment(i, end) && p->slots[i].free_run;)
        p->slots[i].free_run = (uint8_t)++count;
}

static void take_run(struct vtio_swiotlb *p, unsigned idx, unsigned n, uint64_t orig,
                     size_t size)
{
    for (unsigned j = 0; j < n; j++) {
        struct slot *s = &p->slots[idx + j];
        uint64_t skip = (uint64_t)j << VTIO_SWIOTLB_SLOT_SHIFT;
        s->orig = orig + skip;
        s->orig_left = size > skip ? (uint32_t)(size - skip) : 0;
        s->run = j == 0 ? (uint8_t)n : 0;
        s->free_run = 0;
    }
    renumber_free_before(p, idx, 0);
}

static void give_back_run(struct vtio_swiotlb *p, unsigned idx, unsigned n)
{
    unsigned end = idx + n;
    unsigned count = end < p->nslots && same_segment(end, idx) ? p->slots[end].free_run : 0;
    for (unsigned j = n; j-- > 0;)
        p->slots[idx + j] = (struct slot){ .orig = NO_ORIG, .free_run = (uint8_t)++count };
    renumber_free_before(p, idx, count);
}

/* Finds and takes n slots at a multiple of stride in area a.
 * @returns the first slot's index, or -1 if the area has no such run. */
static long area_alloc(struct vtio_swiotlb *p, struct area *a, unsigned n, unsigned stride,
                       uint64_t orig, size_t size)
{
    long found = -1;
    pthread_mutex_lock(&a->lock);
    unsigned used = atomic_load_explicit(&a->used, memory_order_relaxed);
    if (used + n <= a->nslots) {
        unsigned i = (a->index + stride - 1) / stride * stride;
        for (unsigned tries = a->nslots / stride; tries > 0; tries--, i += stride) {
            if (i >= a->nslots)
                i = 0;
            if (p->slots[a->first + i].free_run >= n) {
                found = (long)(a->first + i);
                take_run(p, a->first + i, n, orig, size);
                a->index = (i + n) % a->nslots;
                atomic_store_explicit(&a->used, used + n, memory_order_relaxed);
                break;
            }
        }
    }
    pthread_mutex_unlock(&a->lock);
    return found;
}

static struct area *area_of(struct vtio_swiotlb *p, unsigned idx)
{
    return &p->areas[idx / p->area_slots];
}

static unsigned used_slots(struct vtio_swiotlb *p)
{
    unsigned used = 0;
    for (unsigned a = 0; a < p->nareas; a++)
        used += atomic_load_explicit(&p->areas[a].used, memory_order_relaxed);
    return used;
}

/* ------------------------------------------------------------------------
 * Copies and messages
 * ------------------------------------------------------------------------ */

/* The CPU copies len bytes between the original and the pool; the pool
 * side is always in the direct map. */
static void copy_orig(struct vtio_swiotlb *p, uint64_t tlb, uint64_t orig, size_t len,
                      bool to_pool)
{
    if (len == 0)
        return;
    uint8_t *pool = vtio_host_phys_to_virt(p->h, tlb);
    uint8_t *o = vtio_host_phys_to_virt(p->h, orig);
    bool direct = o && vtio_host_phys_to_virt(p->h, orig + len - 1) == o + len - 1;
    if (direct)
        memcpy(to_pool ? pool : o, to_pool ? o : pool, len);
    else if (to_pool)
        vtio_mem_read(p->h->mem, orig, pool, len);
    else
        vtio_mem_write(p->h->mem, orig, pool, len);
    if (p->h->dma)
        atomic_fetch_add_explicit(&p->h->dma->bounce_bytes_copied, len, memory_order_relaxed);
}

static bool log_allowed(struct vtio_swiotlb *p)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&p->log_lock);
    if (now.tv_sec - p->log_window >= LOG_INTERVAL_S) {
        p->log_window = now.tv_sec;
        p->log_count = 0;
    }
    bool ok = p->log_count++ < LOG_BURST;
    pthread_mutex_unlock(&p->log_lock);
    return ok;
}

/* Linux's words, in the log (rate-limited) and as the call's error. */
static int pool_full(struct vtio_swiotlb *p, size_t size)
{
    char msg[160];
    snprintf(msg, sizeof(msg),
             "swiotlb buffer is full (sz: %zu bytes), total %u (slots), used %u (slots)",
             size, p->nslots, used_slots(p));
    if (log_allowed(p))
        vtio_host_log(p->h, VTIO_LOG_ERR, "%s", msg);
    return vtio_fail(-ENOMEM, "%s", msg);
}

/* ------------------------------------------------------------------------
 * Map, unmap, sync
 * ------------------------------------------------------------------------ */

static int check_map_args(uint64_t orig, size_t size, uint64_t align_mask,
                          enum vtio_dma_direction dir)
{
    if (size == 0 || size > VTIO_SWIOTLB_MAX_MAP)
        return vtio_fail(-EINVAL, "swiotlb: cannot bounce %zu bytes (1 to %u)", size,
                         VTIO_SWIOTLB_MAX_MAP);
    if (orig + size - 1 < orig)
        return vtio_fail(-EINVAL, "swiotlb: buffer at %#llx wraps",
                         (unsigned long long)orig);
    if ((align_mask & (align_mask + 1)) != 0 || align_mask >= VTIO_SWIOTLB_MAX_MAP)
        return vtio_fail(-EINVAL, "swiotlb: alignment mask %#llx is not 2^n - 1 below %u",
                         (unsigned long long)align_mask, VTIO_SWIOTLB_MAX_MAP);
    if (dir != VTIO_DMA_BIDIRECTIONAL && dir != VTIO_DMA_TO_DEVICE &&
        dir != VTIO_DMA_FROM_DEVICE)
        return vtio_fail(-EINVAL, "swiotlb: bad DMA direction %d", (int)dir);
    return 0;
}

int vtio_swiotlb_map(struct vtio_swiotlb *p, uint64_t orig, size_t size, uint64_t align_mask,
                     enum vtio_dma_direction dir, uint64_t *tlb)
{
    if (!p || !tlb)
        return vtio_fail(-EINVAL, "swiotlb: map needs a pool and a result");
    int rc = check_map_args(orig, size, align_mask, dir);
    if (rc < 0)
        return rc;
    uint64_t align = align_mask + 1 > VTIO_SWIOTLB_SLOT_SIZE ? align_mask + 1
                                                             : VTIO_SWIOTLB_SLOT_SIZE;
    uint64_t run_bytes = (size + align - 1) & ~(align - 1);
    unsigned n = (unsigned)(run_bytes >> VTIO_SWIOTLB_SLOT_SHIFT);
    unsigned stride = (unsigned)(align >> VTIO_SWIOTLB_SLOT_SHIFT);

    long idx = -1;
    unsigned home = home_area(p);
    for (unsigned k = 0; k < p->nareas && idx < 0; k++)
        idx = area_alloc(p, &p->areas[(home + k) % p->nareas], n, stride, orig, size);
    if (idx < 0)
        return pool_full(p, size);

    uint64_t pa = p->base + ((uint64_t)idx << VTIO_SWIOTLB_SLOT_SHIFT);
    copy_orig(p, pa, orig, size, true);
    memset((uint8_t *)vtio_host_phys_to_virt(p->h, pa) + size, 0, run_bytes - size);
    *tlb = pa;
    return 0;
}

/* The slot index of a pool address; false if pa is not in the pool. */
static bool slot_index(const struct vtio_swiotlb *p, uint64_t pa, unsigned *idx)
{
    if (!p || pa - p->base >= p->bytes)
        return false;
    *idx = (unsigned)((pa - p->base) >> VTIO_SWIOTLB_SLOT_SHIFT);
    return true;
}

/* Reads the run that starts at pa (under its area's lock). */
static bool run_at(struct vtio_swiotlb *p, uint64_t pa, unsigned *idx, struct slot *head)
{
    if (!slot_index(p, pa, idx) || (pa & (VTIO_SWIOTLB_SLOT_SIZE - 1)) != 0)
        return false;
    struct area *a = area_of(p, *idx);
    pthread_mutex_lock(&a->lock);
    *head = p->slots[*idx];
    pthread_mutex_unlock(&a->lock);
    return head->run != 0;
}

void vtio_swiotlb_unmap(struct vtio_swiotlb *p, uint64_t tlb, size_t size,
                        enum vtio_dma_direction dir)
{
    unsigned idx;
    struct slot head;
    if (!run_at(p, tlb, &idx, &head)) {
        if (p)
            vtio_host_log(p->h, VTIO_LOG_ERR, "swiotlb: unmap of %#llx, which is not the "
                          "start of a bounce buffer", (unsigned long long)tlb);
        return;
    }
    if (dir == VTIO_DMA_FROM_DEVICE || dir == VTIO_DMA_BIDIRECTIONAL)
        copy_orig(p, tlb, head.orig, size < head.orig_left ? size : head.orig_left, false);

    struct area *a = area_of(p, idx);
    pthread_mutex_lock(&a->lock);
    if (p->slots[idx].run == head.run) {    /* else a racing double unmap took it */
        give_back_run(p, idx, head.run);
        atomic_store_explicit(&a->used,
                              atomic_load_explicit(&a->used, memory_order_relaxed) - head.run,
                              memory_order_relaxed);
    }
    pthread_mutex_unlock(&a->lock);
}

void vtio_swiotlb_sync(struct vtio_swiotlb *p, uint64_t tlb, size_t size,
                       enum vtio_dma_direction dir, bool for_device)
{
    unsigned idx;
    if (!slot_index(p, tlb, &idx) || size == 0)
        return;
    bool copies = dir == VTIO_DMA_BIDIRECTIONAL ||
                  dir == (for_device ? VTIO_DMA_TO_DEVICE : VTIO_DMA_FROM_DEVICE);
    if (!copies)
        return;
    const struct slot *s = &p->slots[idx];
    uint32_t off = (uint32_t)(tlb & (VTIO_SWIOTLB_SLOT_SIZE - 1));
    if (s->orig == NO_ORIG || off + size > s->orig_left) {
        vtio_host_log(p->h, VTIO_LOG_ERR, "swiotlb: sync of [%#llx, +%zu) outside a bounce "
                      "buffer (%u bytes mapped there)", (unsigned long long)tlb, size,
                      s->orig == NO_ORIG || off > s->orig_left ? 0 : s->orig_left - off);
        if (s->orig == NO_ORIG || off >= s->orig_left)
            return;
        size = s->orig_left - off;          /* Linux clamps, too */
    }
    copy_orig(p, tlb, s->orig + off, size, for_device);
}

/* ------------------------------------------------------------------------
 * Queries
 * ------------------------------------------------------------------------ */

bool vtio_swiotlb_owns(const struct vtio_swiotlb *p, uint64_t pa)
{
    unsigned idx;
    return slot_index(p, pa, &idx);
}

uint64_t vtio_swiotlb_end(const struct vtio_swiotlb *p)
{
    return p ? p->base + p->bytes - 1 : 0;
}

void vtio_swiotlb_usage(struct vtio_swiotlb *p, uint64_t *total, uint64_t *used)
{
    uint64_t t = 0, u = 0;
    if (p) {
        t = (uint64_t)p->nslots << VTIO_SWIOTLB_SLOT_SHIFT;
        u = (uint64_t)used_slots(p) << VTIO_SWIOTLB_SLOT_SHIFT;
    }
    if (total)
        *total = t;
    if (used)
        *used = u;
}
