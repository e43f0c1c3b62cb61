/*
 * The DMA mapping layer's insides (Linux's kernel/dma + dma-iommu).  Not
 * part of the public API.
 *
 *   mapping.c     the public calls: argument checks, the choice of path
 *                 per call (the device's current domain), statistics,
 *                 debug hooks
 *   direct.c      identity domain or no IOMMU: DMA address = physical,
 *                 bounced through swiotlb when the mask cannot reach
 *   iommu_dma.c   DMA / DMA_FQ domains: IOVA allocation, map/unmap through
 *                 the IOMMU core, map_sg into one range, coherent memory,
 *                 untrusted sub-page bouncing, strict or queued unmap
 *   swiotlb.c     the bounce pool below 4 GiB
 *   flush_queue.c lazy invalidation: per-thread rings, a host-wide timer
 *   debug.c       DMA-API debugging
 *
 * One path table serves both translated and direct devices, so mapping.c
 * has no "if IOMMU" of its own.
 */
#ifndef VTIO_HOST_DMA_PRIV_H
#define VTIO_HOST_DMA_PRIV_H

#include <vtio/dma.h>
#include <vtio/host.h>

#include <pthread.h>
#include <stdatomic.h>

#include "host/device_priv.h"
#include "host/iommu/iommu_priv.h"

struct vtio_swiotlb;
struct vtio_fq;
struct vtio_fq_timer;
struct vtio_dma_debug;
struct vtio_iova_domain;

/* ---- the host's DMA layer (h->dma) */

struct vtio_dma {
    struct vtio_host *host;
    struct vtio_swiotlb *swiotlb;      /* NULL if no pool could be made */
    struct vtio_fq_timer *fq_timer;    /* one timer thread for every flush queue */
    struct vtio_dma_debug *debug;      /* NULL unless dma_debug */
    /* statistics (relaxed atomics) */
    _Atomic uint64_t maps, unmaps, map_errors, bounced_maps, bounce_bytes_copied;
    _Atomic uint64_t strict_syncs, fq_queued, fq_flushes, fq_full_flushes,
        fq_timeout_flushes;
};

/* Boot and shutdown of the layer (host.c): before the IOMMU comes up, and
 * after it is gone.  @returns 0 or -errno. */
int vtio_dma_init(struct vtio_host *h);
void vtio_dma_exit(struct vtio_host *h);

/* ---- paths */

/*
 * One way of mapping.  Arguments are already checked by mapping.c (size > 0,
 * direction valid, sg entries non-empty).  Map calls return the DMA
 * address or VTIO_DMA_MAPPING_ERROR with vtio_fail() called.
 * `bounced` (map only) reports whether the data went through swiotlb.
 */
struct vtio_dma_path {
    vtio_dma_addr_t (*map_phys)(struct vtio_device *dev, uint64_t phys, size_t size,
                                enum vtio_dma_direction dir, bool *bounced);
    void (*unmap_phys)(struct vtio_device *dev, vtio_dma_addr_t addr, size_t size,
                       enum vtio_dma_direction dir);
    int (*map_sg)(struct vtio_device *dev, struct vtio_scatterlist *sg, int nents,
                  enum vtio_dma_direction dir);
    void (*unmap_sg)(struct vtio_device *dev, struct vtio_scatterlist *sg, int nents,
                     enum vtio_dma_direction dir);
    void (*sync)(struct vtio_device *dev, vtio_dma_addr_t addr, size_t size,
                 enum vtio_dma_direction dir, bool for_device);
    void *(*alloc_coherent)(struct vtio_device *dev, size_t size, vtio_dma_addr_t *handle);
    void (*free_coherent)(struct vtio_device *dev, size_t size, void *cpu_addr,
                          vtio_dma_addr_t handle);
};

extern const struct vtio_dma_path vtio_dma_direct_path;   /* direct.c */
extern const struct vtio_dma_path vtio_dma_iommu_path;    /* iommu_dma.c */

/* map_sg / unmap_sg without merging: each segment through p's map_phys /
 * unmap_phys (dma-direct, and the IOMMU path for untrusted devices).  A
 * failed map gives back what it mapped and returns the errno (mapping.c). */
int vtio_dma_map_sg_each(const struct vtio_dma_path *p, struct vtio_device *dev,
                         struct vtio_scatterlist *sg, int nents, enum vtio_dma_direction dir);
void vtio_dma_unmap_sg_each(const struct vtio_dma_path *p, struct vtio_device *dev,
                            struct vtio_scatterlist *sg, int nents,
                            enum vtio_dma_direction dir);

/* A path's map_phys failing: records negerr as the calling thread's reason
 * (what vtio_dma_mapping_error reports; the message is vtio_fail's) and
 * returns VTIO_DMA_MAPPING_ERROR (mapping.c). */
vtio_dma_addr_t vtio_dma_map_fail(int negerr);

/* Whether [addr, addr + size) is below mask (dma_capable). */
static inline bool vtio_dma_capable(uint64_t mask, uint64_t addr, uint64_t size)
{
    return size != 0 && addr + size - 1 >= addr && addr + size - 1 <= mask;
}

/* ---- per-domain state of DMA / DMA_FQ domains (domain->dma_cookie) */

struct vtio_dma_cookie {
    struct vtio_iova_domain *iovad;    /* granule 4 KiB, start pfn 1, MSI
                                          window and holes reserved */
    struct vtio_fq *fq;                /* DMA_FQ only */
};

/* Called by the IOMMU core when it makes or frees a DMA / DMA_FQ domain.
 * A DMA_FQ domain whose queue cannot be made falls back to DMA (strict),
 * as in Linux.  @returns 0 or -errno. */
int vtio_dma_domain_init(struct vtio_host *h, struct vtio_iommu_domain *d);
void vtio_dma_domain_destroy(struct vtio_host *h, struct vtio_iommu_domain *d);

/* ---- swiotlb (swiotlb.c): 2 KiB slots, at most 128 contiguous (256 KiB
 * per mapping), the pool physically contiguous below 4 GiB. */

#define VTIO_SWIOTLB_SLOT_SHIFT 11
#define VTIO_SWIOTLB_SLOT_SIZE  (1u << VTIO_SWIOTLB_SLOT_SHIFT)
#define VTIO_SWIOTLB_SEG_SLOTS  128
#define VTIO_SWIOTLB_MAX_MAP    (VTIO_SWIOTLB_SLOT_SIZE * VTIO_SWIOTLB_SEG_SLOTS)

/* @returns 0 and *out; -ENOMEM. */
int vtio_swiotlb_create(struct vtio_host *h, uint64_t bytes, struct vtio_swiotlb **out);
void vtio_swiotlb_destroy(struct vtio_swiotlb *p);
/*
 * Takes slots for [orig, orig + size) and returns in *tlb the physical
 * address that stands for orig: the start of a run of slots aligned to
 * max(align_mask + 1, 2 KiB) (align_mask = granule - 1 for an untrusted
 * device, so that the run is a page of its own).  The original is copied
 * in for every direction (a device never sees what a previous user of the
 * slots left, as Linux does since 5.14), and the rest of the run, up to the
 * alignment, is zeroed.
 * @returns 0; -EINVAL size 0 or above VTIO_SWIOTLB_MAX_MAP; -ENOMEM full
 * ("swiotlb buffer is full").
 */
int vtio_swiotlb_map(struct vtio_swiotlb *p, uint64_t orig, size_t size, uint64_t align_mask,
                     enum vtio_dma_direction dir, uint64_t *tlb);
/* Copies back (FROM_DEVICE, BIDIRECTIONAL) and frees the slots. */
void vtio_swiotlb_unmap(struct vtio_swiotlb *p, uint64_t tlb, size_t size,
                        enum vtio_dma_direction dir);
/* for_device: copies orig -> slot (TO_DEVICE, BIDIRECTIONAL); else slot ->
 * orig (FROM_DEVICE, BIDIRECTIONAL).  tlb may be inside a mapping. */
void vtio_swiotlb_sync(struct vtio_swiotlb *p, uint64_t tlb, size_t size,
                       enum vtio_dma_direction dir, bool for_device);
/* Whether pa lies in the pool. */
bool vtio_swiotlb_owns(const struct vtio_swiotlb *p, uint64_t pa);
/* The pool's highest byte (what a device mask must reach). */
uint64_t vtio_swiotlb_end(const struct vtio_swiotlb *p);
/* The pool's size and the part of it in mapped runs, in bytes (either
 * pointer may be NULL). */
void vtio_swiotlb_usage(struct vtio_swiotlb *p, uint64_t *total, uint64_t *used);

/* ---- flush queue (flush_queue.c) */

/*
 * A queue for domain d: `rings` rings of `size` entries (threads pick a
 * ring by a per-thread index), flushed by a full domain invalidation when
 * a ring is full or `timeout_ms` after the first entry was queued.  An
 * entry is released (IOVA freed to the domain's cookie allocator with
 * vtio_iova_free_fast, table pages freed) only after an invalidation that
 * started after it was queued has completed.
 * @returns 0 and *out; -ENOMEM.
 */
int vtio_fq_create(struct vtio_host *h, struct vtio_iommu_domain *d, struct vtio_fq **out);
/* Flushes, releases everything, stops the timer for it, frees. */
void vtio_fq_destroy(struct vtio_fq *fq);
/* Queues an unmapped range (pfn, pages as given to vtio_iova_free_fast) and
 * takes the gather's table pages (freelist left empty). */
void vtio_fq_queue(struct vtio_fq *fq, uint64_t pfn, uint64_t pages,
                   struct vtio_iommu_freelist *fl);
/* Invalidates now and releases every entry queued before the call. */
void vtio_fq_flush(struct vtio_fq *fq);
/* The host-wide timer thread (dma init / exit). */
int vtio_fq_timer_create(struct vtio_host *h, struct vtio_fq_timer **out);
void vtio_fq_timer_destroy(struct vtio_fq_timer *t);

/* ---- DMA-API debugging (debug.c): mapping.c calls these only when
 * h->dma->debug is set.  "kind" of a mapping: */
enum vtio_dma_map_kind { VTIO_DMA_KIND_SINGLE, VTIO_DMA_KIND_PAGE, VTIO_DMA_KIND_SG,
                         VTIO_DMA_KIND_COHERENT };

int vtio_dma_debug_create(struct vtio_host *h, struct vtio_dma_debug **out);
void vtio_dma_debug_destroy(struct vtio_dma_debug *dbg);
/* A successful map (for sg: one call per DMA segment, with the cpu range
 * it covers; for an error: addr = VTIO_DMA_MAPPING_ERROR to arm the
 * "unchecked" check). */
void vtio_dma_debug_map(struct vtio_dma_debug *dbg, struct vtio_device *dev,
                        enum vtio_dma_map_kind kind, vtio_dma_addr_t addr, uint64_t phys,
                        uint64_t size, enum vtio_dma_direction dir, const char *site);
/* Checks an unmap against the tracked mapping and forgets it.  @returns
 * true if the unmap may proceed (a mapping matched on address); false: the
 * error was reported and the unmap must be skipped (not mapped / double). */
bool vtio_dma_debug_unmap(struct vtio_dma_debug *dbg, struct vtio_device *dev,
                          enum vtio_dma_map_kind kind, vtio_dma_addr_t addr, uint64_t size,
                          enum vtio_dma_direction dir, const char *site);
void vtio_dma_debug_sync(struct vtio_dma_debug *dbg, struct vtio_device *dev,
                         vtio_dma_addr_t addr, uint64_t size, enum vtio_dma_direction dir,
                         bool for_device, const char *site);
void vtio_dma_debug_mapping_error(struct vtio_dma_debug *dbg, struct vtio_device *dev,
                                  vtio_dma_addr_t addr, const char *site);
void vtio_dma_debug_cpu_access(struct vtio_dma_debug *dbg, struct vtio_device *dev,
                               uint64_t phys, uint64_t len, bool write, const char *site);
unsigned vtio_dma_debug_leaks(struct vtio_dma_debug *dbg, struct vtio_device *dev);
uint64_t vtio_dma_debug_errors(struct vtio_dma_debug *dbg);
void vtio_dma_debug_handler(struct vtio_dma_debug *dbg, vtio_dma_debug_fn fn, void *opaque);

#endif
