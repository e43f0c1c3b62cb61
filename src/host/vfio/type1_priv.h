/*
 * The type1 IOMMU backend's insides, shared by its three files:
 *   type1.c        the container: its domains and groups, the valid IOVA
 *                  list, GET_INFO, the ioctl dispatch, open and release;
 *   type1_dma.c    the mappings: their tree, MAP_DMA and UNMAP_DMA,
 *                  pinning and mapping runs, replaying into a new domain;
 *   type1_dirty.c  dirty tracking: DIRTY_PAGES and the bitmaps.
 * Every call below but the ioctl handlers (which take it) runs with the
 * container's lock held.  Not an interface beyond src/host/vfio/.
 */
#ifndef VTIO_HOST_VFIO_TYPE1_PRIV_H
#define VTIO_HOST_VFIO_TYPE1_PRIV_H

#include "host/proc/proc_priv.h"
#include "host/vfio/vfio_priv.h"

#include <vtio/iommu.h>

#include <limits.h>
#include <pthread.h>
#include <stddef.h>

#define DMA_ENTRY_LIMIT 65535u         /* U16_MAX */

/* A dirty bitmap of n bits is stored in whole u64 words; Linux caps a
 * bitmap at INT_MAX bits (2^28 bytes: 8 TiB of 4 KiB pages). */
#define DIRTY_BITMAP_BYTES(n)  ((((uint64_t)(n) + 63) / 64) * 8)
#define DIRTY_BITMAP_PAGES_MAX ((uint64_t)INT_MAX)
#define DIRTY_BITMAP_SIZE_MAX  DIRTY_BITMAP_BYTES(DIRTY_BITMAP_PAGES_MAX)

/* One MAP_DMA. */
struct type1_dma {
    struct type1_dma *left, *right;    /* treap by iova */
    uint32_t prio;                     /* heap order: parent >= child */
    uint64_t iova, size, vaddr;
    unsigned prot;                     /* VTIO_IOMMU_READ | WRITE */
    struct vtio_pin_run *runs;         /* NULL: not pinned (no domain yet) */
    size_t n_runs, cap_runs;
    uint64_t *bitmap;                  /* dirty bits while tracking */
};

struct type1_domain {
    struct vtio_iommu_domain *domain;
    struct vtio_iommu_group **groups;
    unsigned n_groups;
    uint64_t aperture_end, pgsize_bitmap;
    bool enforce_cache_coherency;
};

/* An inclusive IOVA range. */
struct iova_range {
    uint64_t start, last;
};

struct iova_list {
    struct iova_range *r;
    unsigned n, cap;
};

struct type1 {
    struct vtio_process *proc;         /* whose pages are pinned */
    pthread_mutex_t lock;              /* everything below */
    bool v2;
    struct type1_domain *domains;
    unsigned n_domains;
    struct iova_list iovas;            /* empty: no domain, no restriction */
    uint64_t pgsize_bitmap;            /* sizes every domain maps */
    struct type1_dma *root;
    uint32_t rng;                      /* treap priorities (xorshift32) */
    unsigned dma_avail;
    bool dirty_tracking;
};

/* The smallest page every domain maps: the unit of IOVAs and bitmaps. */
static inline uint64_t type1_min_pgsize(const struct type1 *c)
{
    return c->pgsize_bitmap & -c->pgsize_bitmap;
}

/* ---- the container (type1.c) */

/* Whether [start, last] lies inside one valid range (all does with no
 * domain). */
bool type1_iova_valid(const struct type1 *c, uint64_t start, uint64_t last);

/* ---- the mappings (type1_dma.c) */

/* The lowest mapping that overlaps [start, last]; NULL if none. */
struct type1_dma *type1_dma_find(const struct type1 *c, uint64_t start, uint64_t last);
struct type1_dma *type1_dma_first(const struct type1 *c);
/* The mapping with the lowest IOVA above d's; NULL at the end. */
struct type1_dma *type1_dma_next(const struct type1 *c, const struct type1_dma *d);
/* Whether [iova, last] cuts a mapping (starts or ends inside one). */
bool type1_dma_cuts(const struct type1 *c, uint64_t iova, uint64_t last);
/* Unmaps, unpins and forgets every mapping. */
void type1_dma_remove_all(struct type1 *c);
/* Maps every mapping into new domain nd (pinning them first if the
 * container had no domain).  @returns 0; -errno with nd as it was. */
int type1_dma_replay(struct type1 *c, struct vtio_iommu_domain *nd);
/* VFIO_IOMMU_MAP_DMA and UNMAP_DMA (arg not NULL; they take the lock). */
long type1_map_dma(struct type1 *c, void *arg);
long type1_unmap_dma(struct type1 *c, void *arg);

/* ---- dirty tracking (type1_dirty.c) */

/* A zeroed bitmap for d in pages of pgsize.  @returns 0; -EINVAL too
 * large; -ENOMEM. */
int type1_dirty_alloc(struct type1_dma *d, uint64_t pgsize);
/* Sets d's dirty bits in the user's bitmap, whose bit 0 is base_iova, and
 * starts d's next interval. */
void type1_dirty_report(struct type1_dma *d, uint64_t *user, uint64_t base_iova,
                        uint64_t pgsize);
/* The checks Linux makes on a user's dirty bitmap before taking the lock.
 * @returns 0; -EINVAL. */
int type1_dirty_check_bitmap(const struct vfio_bitmap *bm, uint64_t range_size);
/* VFIO_IOMMU_DIRTY_PAGES (arg not NULL; takes the lock). */
long type1_dirty_pages(struct type1 *c, void *arg);

#endif
