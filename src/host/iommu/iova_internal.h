/*
 * What the two halves of the IOVA allocator share: iova.c (the domain and
 * its tree of ranges) and iova_rcache.c (per-thread caches of freed ranges
 * and the shared depot).  Not a public interface.
 */
#ifndef VTIO_HOST_IOMMU_IOVA_INTERNAL_H
#define VTIO_HOST_IOMMU_IOVA_INTERNAL_H

#include <vtio/iova.h>

#include <pthread.h>
#include <stdatomic.h>

#define IOVA_NCLASS VTIO_IOVA_CACHE_CLASSES

/* A range in the red-black tree, keyed by lo.  Ranges never overlap. */
struct iova_node {
    struct iova_node *left, *right, *parent;
    uint64_t lo, hi;            /* inclusive pfns */
    bool red;
    bool reserved;              /* vtio_iova_reserve, or the anchor */
    bool cached;                /* in a cache (kept only with CHECK_FREES) */
};

/*
 * A magazine: a stack of freed ranges of one size class.
 *
 * 63 pfns plus a one-word header make 64 words, 512 bytes (8 cache lines).
 * Linux uses 127 (1 KiB) per CPU.  A thread is not a CPU: a program may run
 * many more threads than CPUs, and every thread can strand two magazines per
 * class, up to 2 x 63 x (1+2+...+32 pages) x 4 KiB = 31 MiB of IOVA space
 * (62 MiB with 127).  63 still amortises the depot's mutex (about 25 ns
 * uncontended) to under half a nanosecond per operation.
 */
#define IOVA_MAG_SIZE 63
struct iova_mag {
    union {
        uint64_t n;             /* filled entries, while a thread holds it */
        struct iova_mag *next;  /* in the depot, where it is always full */
    };
    uint64_t pfn[IOVA_MAG_SIZE];
};
_Static_assert(sizeof(struct iova_mag) == 512, "a magazine is 64 words");

/*
 * The depot holds at most this many full magazines per class (Linux trims
 * its depot to the number of CPUs every 100 ms; vtio has no timer thread,
 * so the bound is fixed and a magazine pushed over it goes back to the
 * tree at once).  16 x 63 ranges = 1008 per class: enough to carry a burst
 * between a freeing thread and an allocating one.
 */
#define IOVA_DEPOT_MAX 16

struct iova_depot {
    pthread_mutex_t lock;
    struct iova_mag *head;      /* full magazines; lock */
    unsigned count;             /* lock */
} __attribute__((aligned(64)));

struct iova_tcache;

struct vtio_iova_domain {
    uint64_t id;                /* unique for the process, never reused */
    uint64_t granule;
    unsigned shift;
    uint64_t start_pfn;         /* lowest allocatable */
    uint64_t end_pfn;           /* 2^64 / granule: the anchor's pfn */
    uint64_t dma32_pfn;         /* 4 GiB / granule */
    _Atomic unsigned flags;     /* VTIO_IOVA_* */
    atomic_uint flush_gen;      /* bumped by vtio_iova_cache_flush */
    atomic_uint_fast64_t flushes;
    atomic_uint_fast64_t orphan_misses;  /* fast allocations with no cache */

    /* The tree; everything below up to the depots is guarded by lock. */
    pthread_mutex_t lock;
    struct iova_node *root;
    struct iova_node *anchor;   /* reserved [end_pfn, end_pfn]: a ceiling */
    struct iova_node *hint[2];  /* where the last search ended: 32-bit, any */
    bool fail_valid;            /* a search of fail_size below fail_limit */
    bool fail_aligned;          /*   failed, and nothing was freed since */
    uint64_t fail_limit, fail_size;
    uint64_t n_ranges, n_pages, n_reserved;
    uint64_t tree_allocs, tree_frees, tree_failures;

    struct iova_depot depot[IOVA_NCLASS];

    /* Guarded by the rcache's registry lock (iova_rcache.c). */
    struct iova_tcache *tcaches;          /* live threads' caches of d */
    uint64_t retired_hits, retired_misses;  /* from threads that exited */
};

/* iova.c: the tree, all under d->lock. */
int iova_tree_alloc_locked(struct vtio_iova_domain *d, uint64_t size, uint64_t limit,
                           bool aligned, uint64_t *pfn);
struct iova_node *iova_find_exact_locked(struct vtio_iova_domain *d, uint64_t pfn,
                                         uint64_t size);
void iova_erase_locked(struct vtio_iova_domain *d, struct iova_node *n);

/* iova_rcache.c */
void iova_rcache_init(struct vtio_iova_domain *d);
void iova_rcache_destroy(struct vtio_iova_domain *d);
void iova_rcache_stats(struct vtio_iova_domain *d, struct vtio_iova_stats *st);

#endif
