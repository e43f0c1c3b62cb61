/*
 * The IOVA range caches: per-thread magazines of recently freed ranges, and a
 * shared depot of full magazines, one set per size class (1, 2, 4 ... 32
 * pages).  The design is Bonwick and Adams' magazine layer ("Magazines and
 * Vmem", USENIX 2001), which Linux's iova rcache uses per CPU; here it is per
 * thread, because a user-space thread can be preempted anywhere and a
 * per-CPU structure would need a lock or restartable sequences.
 *
 * How it works.  Each thread that uses a domain has a struct iova_tcache for
 * it: per class a `loaded` and a `prev` magazine (a stack of up to 63 pfns).
 * A fast free pushes on `loaded`; when it is full and `prev` is not, the two
 * swap; when both are full, the full `loaded` goes to the depot and an empty
 * one takes its place.  A fast allocation pops from `loaded` (the top entry
 * that fits below the limit: "try harder", as Linux does, so a 32-bit
 * request is served even if the top entry is above 4 GiB), else swaps in a
 * non-empty `prev`, else takes a full magazine from the depot; a miss goes
 * to the tree.  Ranges in caches stay allocated in the tree, so the tree
 * never hands them out twice.  The depot has a mutex per class and is
 * touched once per 63 operations at most.
 *
 * Finding the thread's cache for a domain: a thread-local pointer to the
 * last one used, checked against the domain's id (ids are unique and never
 * reused, so a cache left over from a destroyed domain never matches a new
 * domain at the same address); else a walk of the thread's own list; else a
 * new cache.  Lifetimes: a process-wide registry mutex guards the link
 * between caches and domains (each domain lists its threads' caches, each
 * cache names its domain or NULL).
 *  - A thread that exits (pthread key destructor) returns each of its caches
 *    to the tree of its domain, if the domain still lives, and frees it.
 *  - A domain that is destroyed returns every thread's cached ranges to its
 *    tree and marks those caches dead (domain NULL); the threads free them
 *    when they exit or next make a cache.  vtio_iova_domain_destroy must not
 *    race with calls on the domain, so no thread is using those magazines.
 *  - Lock order: registry, then the domain's tree lock; depot locks are
 *    never held with another lock.
 *
 * Flushing.  A thread's magazines are its own memory, touched without a
 * lock, so no other thread can empty them while the owner may run.
 * vtio_iova_cache_flush returns the depot and the caller's own magazines at
 * once, and bumps the domain's flush generation; every other thread sees
 * the new generation at its next fast call on the domain (one relaxed load
 * of a read-mostly word) and returns its own magazines then.
 *
 * Guarantees.  A cache hit takes no lock and writes only the calling
 * thread's memory (the statistics counters included).  A range is in at
 * most one magazine, and a cached range is never in the tree's free space,
 * so it is handed out at most once.  A failed fast allocation has flushed
 * the depot and the caller's caches and retried the tree.
 *
 * Limits.  Idle threads keep up to 2 magazines per class until they call
 * again or exit: at most 2 x 63 x 63 pages = 31 MiB of IOVA space per thread
 * with 4 KiB granules.  vtio_iova_free_fast trusts its caller unless the
 * domain has VTIO_IOVA_CHECK_FREES: a double free goes into the cache and
 * hands the range out twice.  The depot is bounded (IOVA_DEPOT_MAX), not
 * trimmed over time.
 */
#include "host/iommu/iova_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

struct iova_tcache {
    uint64_t dom_id;                        /* immutable */
    unsigned gen;                           /* the domain's flush_gen seen */
    struct iova_mag *loaded[IOVA_NCLASS];   /* owner only (or a destroy) */
    struct iova_mag *prev[IOVA_NCLASS];
    /* Written by the owner only (relaxed load + store, no read-modify-write),
     * read by vtio_iova_get_stats. */
    atomic_uint_fast64_t hits, misses, cached;
    struct iova_tcache *t_next;             /* the owner's list */
    struct vtio_iova_domain *dom;           /* registry; NULL once destroyed */
    struct iova_tcache *d_next, *d_prev;    /* registry: the domain's list */
};

static pthread_mutex_t registry = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static bool exit_key_ok;

static __thread struct iova_tcache *my_caches;     /* every domain */
static __thread struct iova_tcache *my_last;       /* the last one used */

static void bump(atomic_uint_fast64_t *c, int64_t by)
{
    /* Only the owner writes: a plain add, made race-free for readers. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + (uint64_t)by,
                          memory_order_relaxed);
}

static unsigned class_of(uint64_t size)
{
    return size <= 1 ? 0 : 64u - (unsigned)__builtin_clzll(size - 1);
}

/* ------------------------------------------------------------------------
 * Magazines
 * ------------------------------------------------------------------------ */

/* Takes the topmost entry whose range fits below the limit (pfn <= max). */
static bool mag_pop(struct iova_mag *m, uint64_t max, uint64_t *pfn)
{
    if (!m)
        return false;
    for (uint64_t i = m->n; i-- > 0;) {
        if (m->pfn[i] <= max) {
            *pfn = m->pfn[i];
            m->pfn[i] = m->pfn[--m->n];
            return true;
        }
    }
    return false;
}

/* Frees every range of m (class k) out of the tree; d->lock held. */
static uint64_t mag_to_tree_locked(struct vtio_iova_domain *d, struct iova_mag *m, unsigned k,
                                   uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        struct iova_node *node = iova_find_exact_locked(d, m->pfn[i], 1ull << k);
        if (node)           /* else a caller freed it twice without checking */
            iova_erase_locked(d, node);
    }
    return n;
}

/* Returns a thread's magazines of d to the tree and frees them. */
static uint64_t tcache_drain(struct vtio_iova_domain *d, struct iova_tcache *tc)
{
    uint64_t count = 0;
    pthread_mutex_lock(&d->lock);
    for (unsigned k = 0; k < IOVA_NCLASS; k++) {
        struct iova_mag *ms[2] = { tc->loaded[k], tc->prev[k] };
        for (int i = 0; i < 2; i++)
            if (ms[i])
                count += mag_to_tree_locked(d, ms[i], k, ms[i]->n);
    }
    pthread_mutex_unlock(&d->lock);
    for (unsigned k = 0; k < IOVA_NCLASS; k++) {
        free(tc->loaded[k]);
        free(tc->prev[k]);
        tc->loaded[k] = tc->prev[k] = NULL;
    }
    atomic_store_explicit(&tc->cached, 0, memory_order_relaxed);
    return count;
}

/* Pushes a full magazine on the depot, or (depot full) gives its ranges
 * back to the tree. */
static void depot_push(struct vtio_iova_domain *d, unsigned k, struct iova_mag *m)
{
    struct iova_depot *dp = &d->depot[k];
    pthread_mutex_lock(&dp->lock);
    bool kept = dp->count < IOVA_DEPOT_MAX;
    if (kept) {
        m->next = dp->head;
        dp->head = m;
        dp->count++;
    }
    pthread_mutex_unlock(&dp->lock);
    if (!kept) {
        pthread_mutex_lock(&d->lock);
        mag_to_tree_locked(d, m, k, IOVA_MAG_SIZE);
        pthread_mutex_unlock(&d->lock);
        free(m);
    }
}

static struct iova_mag *depot_pop(struct vtio_iova_domain *d, unsigned k)
{
    struct iova_depot *dp = &d->depot[k];
    pthread_mutex_lock(&dp->lock);
    struct iova_mag *m = dp->head;
    if (m) {
        dp->head = m->next;
        dp->count--;
        m->n = IOVA_MAG_SIZE;
    }
    pthread_mutex_unlock(&dp->lock);
    return m;
}

static uint64_t depot_flush(struct vtio_iova_domain *d)
{
    uint64_t count = 0;
    for (unsigned k = 0; k < IOVA_NCLASS; k++) {
        struct iova_depot *dp = &d->depot[k];
        pthread_mutex_lock(&dp->lock);
        struct iova_mag *list = dp->head;
        dp->head = NULL;
        dp->count = 0;
        pthread_mutex_unlock(&dp->lock);
        if (!list)
            continue;
        pthread_mutex_lock(&d->lock);
        for (struct iova_mag *m = list; m; m = m->next)
            count += mag_to_tree_locked(d, m, k, IOVA_MAG_SIZE);
        pthread_mutex_unlock(&d->lock);
        while (list) {
            struct iova_mag *next = list->next;
            free(list);
            list = next;
        }
    }
    return count;
}

/* ------------------------------------------------------------------------
 * Thread caches and their lifetimes
 * ------------------------------------------------------------------------ */

static void unlink_from_domain(struct iova_tcache *tc)
{
    if (tc->d_prev)
        tc->d_prev->d_next = tc->d_next;
    else
        tc->dom->tcaches = tc->d_next;
    if (tc->d_next)
        tc->d_next->d_prev = tc->d_prev;
    tc->dom = NULL;
}

/* pthread key destructor: the thread is exiting. */
static void thread_exit(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&registry);
    for (struct iova_tcache *tc = my_caches, *next; tc; tc = next) {
        next = tc->t_next;
        struct vtio_iova_domain *d = tc->dom;
        if (d) {
            tcache_drain(d, tc);
            d->retired_hits += atomic_load_explicit(&tc->hits, memory_order_relaxed);
            d->retired_misses += atomic_load_explicit(&tc->misses, memory_order_relaxed);
            unlink_from_domain(tc);
        }
        free(tc);
    }
    pthread_mutex_unlock(&registry);
    my_caches = my_last = NULL;
}

static void make_exit_key(void)
{
    exit_key_ok = pthread_key_create(&exit_key, thread_exit) == 0;
}

/* A new cache of d for this thread, or NULL (then the caller uses the tree). */
static struct iova_tcache *tcache_new(struct vtio_iova_domain *d)
{
    pthread_once(&key_once, make_exit_key);
    if (!exit_key_ok || pthread_setspecific(exit_key, (void *)1) != 0)
        return NULL;            /* without the exit hook, ranges could strand */
    struct iova_tcache *tc = calloc(1, sizeof(*tc));
    if (!tc)
        return NULL;
    tc->dom_id = d->id;
    tc->gen = atomic_load_explicit(&d->flush_gen, memory_order_relaxed);
    pthread_mutex_lock(&registry);
    /* Free this thread's caches of destroyed domains. */
    for (struct iova_tcache **p = &my_caches; *p;) {
        struct iova_tcache *old = *p;
        if (!old->dom) {
            *p = old->t_next;
            if (my_last == old)
                my_last = NULL;
            free(old);
        } else {
            p = &old->t_next;
        }
    }
    tc->dom = d;
    tc->d_next = d->tcaches;
    if (d->tcaches)
        d->tcaches->d_prev = tc;
    d->tcaches = tc;
    pthread_mutex_unlock(&registry);
    tc->t_next = my_caches;
    my_caches = tc;
    return tc;
}

static struct iova_tcache *tcache_find(const struct vtio_iova_domain *d)
{
    struct iova_tcache *tc = my_last;
    if (tc && tc->dom_id == d->id)
        return tc;
    for (tc = my_caches; tc; tc = tc->t_next)
        if (tc->dom_id == d->id)
            return my_last = tc;
    return NULL;
}

/* This thread's cache of d, up to date with flushes; NULL if none can be made. */
static struct iova_tcache *tcache_get(struct vtio_iova_domain *d)
{
    struct iova_tcache *tc = tcache_find(d);
    if (__builtin_expect(!tc, 0)) {
        tc = tcache_new(d);
        if (!tc)
            return NULL;
        my_last = tc;
    }
    unsigned gen = atomic_load_explicit(&d->flush_gen, memory_order_relaxed);
    if (__builtin_expect(tc->gen != gen, 0)) {
        tcache_drain(d, tc);
        tc->gen = gen;
    }
    return tc;
}

/* ------------------------------------------------------------------------
 * The fast calls
 * ------------------------------------------------------------------------ */

/* Marks (or unmarks) a cached range in the tree, with VTIO_IOVA_CHECK_FREES. */
static int mark_cached(struct vtio_iova_domain *d, uint64_t pfn, uint64_t size, bool cached)
{
    int rc = 0;
    pthread_mutex_lock(&d->lock);
    struct iova_node *n = iova_find_exact_locked(d, pfn, size);
    if (!n || n->cached == cached)
        rc = vtio_fail(-EINVAL, "iova: pfns %#llx + %llu pages are not an allocated range",
                       (unsigned long long)pfn, (unsigned long long)size);
    else
        n->cached = cached;
    pthread_mutex_unlock(&d->lock);
    return rc;
}

static int tree_alloc(struct vtio_iova_domain *d, uint64_t size, uint64_t limit, uint64_t *pfn)
{
    int rc = vtio_iova_alloc(d, size, limit, true, pfn);
    if (rc == -ENOMEM) {
        vtio_iova_cache_flush(d);
        rc = vtio_iova_alloc(d, size, limit, true, pfn);
    }
    return rc;
}

int vtio_iova_alloc_fast(struct vtio_iova_domain *d, uint64_t size_pages, uint64_t limit_pfn,
                         uint64_t *pfn)
{
    if (size_pages == 0 || size_pages > VTIO_IOVA_CACHE_MAX_PAGES)
        return tree_alloc(d, size_pages, limit_pfn, pfn);
    unsigned k = class_of(size_pages), flags = atomic_load_explicit(&d->flags,
                                                                   memory_order_relaxed);
    uint64_t size = 1ull << k;
    if (flags & VTIO_IOVA_NO_CACHE)
        return tree_alloc(d, size, limit_pfn, pfn);
    struct iova_tcache *tc = tcache_get(d);
    if (!tc) {
        atomic_fetch_add_explicit(&d->orphan_misses, 1, memory_order_relaxed);
        return tree_alloc(d, size, limit_pfn, pfn);
    }
    if (limit_pfn > d->end_pfn)
        limit_pfn = d->end_pfn;
    if (limit_pfn >= size) {
        uint64_t max = limit_pfn - size;
        struct iova_mag *m = tc->loaded[k];
        bool hit = false;
        if (m && m->n) {
            hit = mag_pop(m, max, pfn);
        } else if (tc->prev[k] && tc->prev[k]->n) {
            tc->loaded[k] = tc->prev[k];
            tc->prev[k] = m;
            hit = mag_pop(tc->loaded[k], max, pfn);
        } else if ((m = depot_pop(d, k))) {
            free(tc->loaded[k]);        /* empty (or never made) */
            tc->loaded[k] = m;
            bump(&tc->cached, IOVA_MAG_SIZE);
            hit = mag_pop(m, max, pfn);
        }
        if (hit) {
            bump(&tc->hits, 1);
            bump(&tc->cached, -1);
            if (flags & VTIO_IOVA_CHECK_FREES)
                mark_cached(d, *pfn, size, false);
            return 0;
        }
    }
    bump(&tc->misses, 1);
    return tree_alloc(d, size, limit_pfn, pfn);
}

int vtio_iova_free_fast(struct vtio_iova_domain *d, uint64_t pfn, uint64_t size_pages)
{
    if (size_pages == 0 || size_pages > VTIO_IOVA_CACHE_MAX_PAGES)
        return vtio_iova_free(d, pfn, size_pages);
    unsigned k = class_of(size_pages), flags = atomic_load_explicit(&d->flags,
                                                                   memory_order_relaxed);
    uint64_t size = 1ull << k;
    if ((pfn & (size - 1)) || pfn < d->start_pfn || pfn > d->end_pfn - size)
        return vtio_fail(-EINVAL, "iova: pfn %#llx is not a fast range of %llu pages",
                         (unsigned long long)pfn, (unsigned long long)size);
    if (flags & VTIO_IOVA_NO_CACHE)
        return vtio_iova_free(d, pfn, size);
    if ((flags & VTIO_IOVA_CHECK_FREES) && mark_cached(d, pfn, size, true) < 0)
        return -EINVAL;
    struct iova_tcache *tc = tcache_get(d);
    if (!tc)
        goto to_tree;
    struct iova_mag *m = tc->loaded[k];
    if (!m || m->n == IOVA_MAG_SIZE) {
        struct iova_mag *p = tc->prev[k];
        if (m && p && p->n < IOVA_MAG_SIZE) {
            tc->loaded[k] = p;          /* swap: room in prev */
            tc->prev[k] = m;
        } else {
            struct iova_mag *fresh = malloc(sizeof(*fresh));
            if (!fresh)
                goto to_tree;
            fresh->n = 0;
            if (m && !p) {
                tc->prev[k] = m;        /* first fill: keep it as prev */
            } else if (m) {
                bump(&tc->cached, -IOVA_MAG_SIZE);
                depot_push(d, k, m);    /* both full */
            }
            tc->loaded[k] = fresh;
        }
        m = tc->loaded[k];
    }
    m->pfn[m->n++] = pfn;
    bump(&tc->cached, 1);
    return 0;

to_tree:
    pthread_mutex_lock(&d->lock);
    struct iova_node *n = iova_find_exact_locked(d, pfn, size);
    if (n)
        iova_erase_locked(d, n);
    pthread_mutex_unlock(&d->lock);
    return n ? 0 : vtio_fail(-EINVAL, "iova: pfns %#llx + %llu pages are not an allocated "
                             "range", (unsigned long long)pfn, (unsigned long long)size);
}

uint64_t vtio_iova_cache_flush(struct vtio_iova_domain *d)
{
    atomic_fetch_add_explicit(&d->flushes, 1, memory_order_relaxed);
    unsigned gen = atomic_fetch_add_explicit(&d->flush_gen, 1, memory_order_relaxed) + 1;
    uint64_t count = 0;
    struct iova_tcache *tc = tcache_find(d);
    if (tc) {
        count += tcache_drain(d, tc);
        tc->gen = gen;
    }
    return count + depot_flush(d);
}

/* ------------------------------------------------------------------------
 * Hooks for iova.c
 * ------------------------------------------------------------------------ */

void iova_rcache_init(struct vtio_iova_domain *d)
{
    for (unsigned k = 0; k < IOVA_NCLASS; k++)
        pthread_mutex_init(&d->depot[k].lock, NULL);
}

void iova_rcache_destroy(struct vtio_iova_domain *d)
{
    pthread_mutex_lock(&registry);
    for (struct iova_tcache *tc = d->tcaches; tc; tc = tc->d_next) {
        tcache_drain(d, tc);    /* no call on d runs: the owner is not in it */
        tc->dom = NULL;
    }
    d->tcaches = NULL;
    pthread_mutex_unlock(&registry);
    depot_flush(d);
    for (unsigned k = 0; k < IOVA_NCLASS; k++)
        pthread_mutex_destroy(&d->depot[k].lock);
}

void iova_rcache_stats(struct vtio_iova_domain *d, struct vtio_iova_stats *st)
{
    pthread_mutex_lock(&registry);
    st->cache_hits = d->retired_hits;
    st->cache_misses = d->retired_misses;
    for (struct iova_tcache *tc = d->tcaches; tc; tc = tc->d_next) {
        st->cache_hits += atomic_load_explicit(&tc->hits, memory_order_relaxed);
        st->cache_misses += atomic_load_explicit(&tc->misses, memory_order_relaxed);
        st->cached_ranges += atomic_load_explicit(&tc->cached, memory_order_relaxed);
    }
    pthread_mutex_unlock(&registry);
    st->cache_misses += atomic_load_explicit(&d->orphan_misses, memory_order_relaxed);
    st->cache_flushes = atomic_load_explicit(&d->flushes, memory_order_relaxed);
    for (unsigned k = 0; k < IOVA_NCLASS; k++) {
        pthread_mutex_lock(&d->depot[k].lock);
        st->depot_magazines += d->depot[k].count;
        pthread_mutex_unlock(&d->depot[k].lock);
    }
    st->cached_ranges += st->depot_magazines * IOVA_MAG_SIZE;
}
