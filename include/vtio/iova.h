/*
 * iova: the IOVA allocator of host software.
 *
 * A DMA mapping needs an I/O virtual address range that no other live
 * mapping of the same IOMMU domain uses.  This module hands such ranges out,
 * in pages of `granule` bytes (pfn = IOVA / granule), as Linux's iova.c does
 * for dma-iommu:
 *  - a range is placed top-down below the caller's limit (a 32-bit device
 *    passes limit_pfn = 4 GiB / granule): the search walks down from where
 *    the last allocation of that space ended (after frees, from the freed
 *    space), so mappings stay packed near the top and the low space stays
 *    free for big ones.  It is not always the highest possible place;
 *  - with size_aligned, a range of n pages starts at a multiple of n rounded
 *    up to a power of two (natural alignment, so it can use large pages);
 *  - reserved ranges (the MSI window 0xFEE00000-0xFEEFFFFF, PCI holes) are
 *    never handed out;
 *  - small ranges, up to VTIO_IOVA_CACHE_MAX_PAGES pages, can go through
 *    per-thread caches of recently freed ranges (vtio_iova_alloc_fast /
 *    vtio_iova_free_fast), which serve a hit without a lock.
 *
 * Promises:
 *  - no two ranges that are allocated at the same time overlap, and none
 *    overlaps a reserved range or lies below start_pfn;
 *  - every page of a returned range is below limit_pfn (exclusive);
 *  - the tree path (vtio_iova_alloc) fails with -ENOMEM only if no gap below
 *    the limit can hold the range: the search is exhaustive;
 *  - vtio_iova_alloc_fast fails with -ENOMEM only after it has returned the
 *    shared depot and the calling thread's own caches to the tree and tried
 *    the tree again.  Ranges in other threads' caches are handed back when
 *    those threads next use the domain, or exit (see vtio_iova_cache_flush);
 *  - vtio_iova_free rejects (-EINVAL, nothing changes) a range that is not
 *    exactly one allocated range.  vtio_iova_free_fast checks only what it
 *    can check without a lock (alignment, bounds) unless the domain has
 *    VTIO_IOVA_CHECK_FREES, which makes it check exactly (and take the lock);
 *  - a failed call changes nothing, except that a failed fast allocation may
 *    have flushed caches.
 *
 * Threads: every call may be made from any thread at the same time, except
 * vtio_iova_domain_destroy(), which must not race with any other call on the
 * same domain (threads that merely hold cached ranges of the domain need not
 * be stopped: they may exit before or after the destroy).  The tree is
 * guarded by one mutex per domain; the fast path's cache hit takes no lock
 * and writes only the calling thread's memory (it reads a few read-mostly
 * words of the domain).  A range allocated by one
 * thread may be freed by another.
 *
 * Costs: see the top of src/host/iommu/iova.c and bench/bench_iova.c.
 */
#ifndef VTIO_IOVA_H
#define VTIO_IOVA_H

#include <vtio/common.h>

struct vtio_iova_domain;

/* Sizes of 1, 2, 4 ... 32 pages have per-thread caches (the classes). */
#define VTIO_IOVA_CACHE_CLASSES   6
#define VTIO_IOVA_CACHE_MAX_PAGES (1ull << (VTIO_IOVA_CACHE_CLASSES - 1))

/* The highest pfn + 1 of a 32-bit device with 4 KiB granules. */
#define VTIO_IOVA_DMA32_PFN (0x100000000ull >> VTIO_PAGE_SHIFT)

/* Domain flags (vtio_iova_domain_set_flags). */
#define VTIO_IOVA_NO_CACHE     0x1u  /* the fast calls go straight to the tree */
#define VTIO_IOVA_CHECK_FREES  0x2u  /* free_fast checks the range exactly */

/* One range of the tree, as vtio_iova_find and the walkers report it. */
struct vtio_iova_range {
    uint64_t pfn_lo, pfn_hi;    /* inclusive */
    bool reserved;              /* from vtio_iova_reserve */
};

struct vtio_iova_stats {
    uint64_t tree_allocs;       /* ranges placed by the tree search */
    uint64_t tree_frees;        /* ranges taken out of the tree */
    uint64_t tree_failures;     /* tree searches that found no gap */
    uint64_t cache_hits;        /* fast allocations served by a cache */
    uint64_t cache_misses;      /* fast allocations that went to the tree */
    uint64_t cache_flushes;     /* vtio_iova_cache_flush calls, incl. automatic */
    uint64_t ranges;            /* allocated ranges in the tree (incl. cached) */
    uint64_t pages;             /* pages of those */
    uint64_t reserved_ranges;   /* reserved ranges (after merging) */
    uint64_t cached_ranges;     /* in thread caches and the depot (of those) */
    uint64_t depot_magazines;   /* full magazines in the shared depot */
};

/*
 * A domain whose pages are `granule` bytes (a power of two, 4 KiB .. 1 GiB)
 * and whose lowest allocatable pfn is start_pfn (>= 1 keeps IOVA 0, which
 * many drivers treat as "no address", out of use).  The space ends at
 * 2^64 / granule.
 * Returns NULL (and sets vtio_last_error) on a bad argument or no memory.
 */
VTIO_API struct vtio_iova_domain *vtio_iova_domain_create(uint64_t granule, uint64_t start_pfn);

/* VTIO_IOVA_* flags; set them before the domain is shared between threads.
 * @returns 0; -EINVAL unknown flags. */
VTIO_API int vtio_iova_domain_set_flags(struct vtio_iova_domain *d, unsigned flags);

typedef void (*vtio_iova_range_fn)(void *opaque, const struct vtio_iova_range *r);

/*
 * Returns every cached range to the tree, then frees the domain.  Ranges the
 * caller still holds are leaks: each is passed to leak_fn (if not NULL)
 * before the domain goes.  Threads that still have caches of this domain
 * simply forget them.
 * @returns the number of leaked ranges (0 for a clean domain).
 */
VTIO_API uint64_t vtio_iova_domain_destroy(struct vtio_iova_domain *d,
                                           vtio_iova_range_fn leak_fn, void *opaque);

VTIO_API uint64_t vtio_iova_granule(const struct vtio_iova_domain *d);

/*
 * Takes pfns [pfn_lo, pfn_hi] (inclusive, as Linux's reserve_iova) out of
 * use for good.  Reserved ranges that overlap or touch merge into one.
 * Ranges currently allocated are not taken over (Linux merges them too):
 * reserve before allocating, or flush the caches first.
 * @returns 0; -EINVAL pfn_lo > pfn_hi or beyond the space; -EEXIST the range
 * overlaps an allocated (or cached) range; -ENOMEM no host memory.
 */
VTIO_API int vtio_iova_reserve(struct vtio_iova_domain *d, uint64_t pfn_lo, uint64_t pfn_hi);

/*
 * Allocates size_pages pages from the tree, top-down (see above), with
 * every page below limit_pfn (exclusive; values past the end of the
 * space mean "the whole space") and at or above start_pfn, aligned to
 * size_pages rounded up to a power of two if size_aligned.
 * @returns 0 and the first pfn in *pfn; -EINVAL size 0 or limit <= start;
 * -ENOMEM no gap fits below the limit (or no host memory).
 */
VTIO_API int vtio_iova_alloc(struct vtio_iova_domain *d, uint64_t size_pages,
                             uint64_t limit_pfn, bool size_aligned, uint64_t *pfn);

/*
 * Frees a range from vtio_iova_alloc (or a fast allocation of the same
 * rounded size).  pfn and size_pages must be exactly those of one allocated
 * range.
 * @returns 0; -EINVAL not an allocated range (a reserved one, a part of one,
 * a range sitting in a cache with VTIO_IOVA_CHECK_FREES): nothing changes.
 */
VTIO_API int vtio_iova_free(struct vtio_iova_domain *d, uint64_t pfn, uint64_t size_pages);

/*
 * The cached pair.  Sizes up to VTIO_IOVA_CACHE_MAX_PAGES are rounded up to
 * a power of two and served from the calling thread's cache of freed ranges
 * of that size (or the shared depot), else from the tree; larger sizes go to
 * the tree.  Ranges are always size-aligned.  On -ENOMEM from the tree the
 * caches are flushed (vtio_iova_cache_flush) and the tree tried once more.
 * A range from alloc_fast must be freed with free_fast and the same size
 * (or with vtio_iova_free and the rounded size).
 * @returns as vtio_iova_alloc / vtio_iova_free.  free_fast's -EINVAL covers
 * a misaligned pfn or one outside the space; with VTIO_IOVA_CHECK_FREES it
 * also covers everything vtio_iova_free rejects.
 */
VTIO_API int vtio_iova_alloc_fast(struct vtio_iova_domain *d, uint64_t size_pages,
                                  uint64_t limit_pfn, uint64_t *pfn);
VTIO_API int vtio_iova_free_fast(struct vtio_iova_domain *d, uint64_t pfn, uint64_t size_pages);

/*
 * Returns the shared depot's ranges and the calling thread's cached ranges
 * of d to the tree, at once, and asks every other thread to return its own
 * at its next call on d (a thread's cache is its own memory: no other thread
 * may empty it while it runs).  A thread that exits returns its caches
 * itself.
 * @returns the number of ranges returned to the tree now.
 */
VTIO_API uint64_t vtio_iova_cache_flush(struct vtio_iova_domain *d);

/*
 * The range of the tree (allocated, cached or reserved) that holds pfn.
 * @returns 0 and *r; -ENOENT pfn is free.
 */
VTIO_API int vtio_iova_find(struct vtio_iova_domain *d, uint64_t pfn, struct vtio_iova_range *r);

/* Calls fn for every range of the tree in ascending order, under the
 * domain's lock (fn must not call into d).  @returns the number of ranges. */
VTIO_API uint64_t vtio_iova_for_each(struct vtio_iova_domain *d, vtio_iova_range_fn fn,
                                     void *opaque);

VTIO_API void vtio_iova_get_stats(struct vtio_iova_domain *d, struct vtio_iova_stats *st);

/* Debugging: verifies the tree (order, no overlaps, red-black rules, parent
 * links, counts).  @returns 0; -EIO with a message saying what is wrong. */
VTIO_API int vtio_iova_check(struct vtio_iova_domain *d);

#endif
