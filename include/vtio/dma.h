/*
 * dma: the DMA mapping API of host software (Linux's linux/dma-mapping.h).
 *
 * A driver never gives a device a physical address.  It maps a buffer for
 * a device and hands the device the DMA address it gets back; after the
 * transfer it unmaps.  What the DMA address is depends on how the device
 * is attached (iommu.h):
 *  - DMA or DMA_FQ domain: an IOVA from the domain's allocator, mapped in
 *    the IOMMU with the direction's permissions (TO_DEVICE read-only,
 *    FROM_DEVICE write-only, BIDIRECTIONAL both), below the device's mask;
 *    a 32-bit device so reaches memory anywhere;
 *  - identity domain, or no IOMMU: the physical address itself ("direct");
 *    a buffer the device's mask cannot reach is bounced through the
 *    swiotlb pool below 4 GiB;
 *  - untrusted device (host options) in a DMA domain: a mapping that does
 *    not cover whole pages is bounced, so that the device sees a page
 *    holding nothing but the buffer (and zeros).
 * Unmapping in a DMA domain is strict (the IOVA is reused only after its
 * IOTLB invalidation completed) or, in a DMA_FQ domain, lazy: queued on the
 * calling thread's flush queue, invalidated in batches when the queue fills
 * or fq_timeout_ms passes.  Until then the device may still use a stale
 * translation; vtio_dma_flush() closes the window at once.
 *
 * Ownership.  Between map (or sync_for_device) and unmap (or sync_for_cpu)
 * the buffer belongs to the device; the CPU must not touch it.  sync moves
 * ownership and copies bounce buffers in the direction's sense.
 *
 * Errors.  A map that fails returns VTIO_DMA_MAPPING_ERROR; the caller must
 * check with vtio_dma_mapping_error(), which says why (-ENOMEM: no IOVA
 * space or bounce slots; -EIO: the device cannot reach the memory; -EINVAL:
 * bad arguments; -ENODEV: the device's DMA is blocked).  The message is in
 * vtio_last_error().  Calls that return nothing ignore bad arguments (and
 * DMA-API debugging reports them).
 *
 * Debugging (host option dma_debug): every mapping is tracked with the call
 * site that made it (the macros below pass __FILE__:__LINE__), and misuse
 * is reported with that site: unmap of an address never mapped, double
 * unmap, size / direction / kind mismatch (unmap_single of an sg mapping),
 * a sync outside a mapping, a map error not checked, CPU access to a buffer
 * the device owns (caught when the CPU declares it with vtio_dma_cpu_access,
 * or, for TO_DEVICE buffers, by their contents changing while the device
 * owned them), and mappings still live when the driver unbinds.
 *
 * Threads: every call is thread-safe; map/unmap from many threads on one
 * device scale (per-thread IOVA caches and flush queues).
 */
#ifndef VTIO_DMA_H
#define VTIO_DMA_H

#include <vtio/common.h>

struct vtio_host;
struct vtio_device;

typedef uint64_t vtio_dma_addr_t;

#define VTIO_DMA_MAPPING_ERROR (~(vtio_dma_addr_t)0)
#define VTIO_DMA_BIT_MASK(n)   ((n) >= 64 ? ~0ull : (1ull << (n)) - 1)

enum vtio_dma_direction {
    VTIO_DMA_BIDIRECTIONAL = 0,
    VTIO_DMA_TO_DEVICE = 1,
    VTIO_DMA_FROM_DEVICE = 2,
    VTIO_DMA_NONE = 3,          /* debugging only: never valid for a mapping */
};

/* One segment of a scatter-gather list. */
struct vtio_scatterlist {
    uint64_t phys;              /* CPU physical address */
    uint32_t length;            /* bytes */
    /* set by vtio_dma_map_sg for the first n entries (n = its return) */
    vtio_dma_addr_t dma_address;
    uint32_t dma_length;
};

/* ---- device constraints */

/* @returns 0; -EIO the mask is below 24 bits (no memory could be reached). */
VTIO_API int vtio_dma_set_mask(struct vtio_device *dev, uint64_t mask);
VTIO_API int vtio_dma_set_coherent_mask(struct vtio_device *dev, uint64_t mask);
VTIO_API int vtio_dma_set_mask_and_coherent(struct vtio_device *dev, uint64_t mask);
VTIO_API uint64_t vtio_dma_get_mask(const struct vtio_device *dev);
/* map_sg never makes a DMA segment longer than max_seg_size bytes or one
 * that crosses a multiple of boundary_mask + 1.  @returns 0; -EINVAL 0, or
 * a boundary mask that is not 2^n - 1 or below 4 KiB - 1. */
VTIO_API int vtio_dma_set_max_seg_size(struct vtio_device *dev, uint32_t size);
VTIO_API int vtio_dma_set_seg_boundary(struct vtio_device *dev, uint64_t boundary_mask);

/* ---- streaming mappings (the _site functions take the caller's
 *      "file:line"; use the macros) */

#define VTIO_DMA_STR_(x) #x
#define VTIO_DMA_STR(x)  VTIO_DMA_STR_(x)
#define VTIO_DMA_SITE    __FILE__ ":" VTIO_DMA_STR(__LINE__)

/* Maps size bytes at cpu_addr (a direct-map pointer: vtio_host_phys_to_virt). */
#define vtio_dma_map_single(dev, cpu_addr, size, dir) \
    vtio_dma_map_single_site(dev, cpu_addr, size, dir, VTIO_DMA_SITE)
/* Maps size bytes at physical address phys. */
#define vtio_dma_map_page(dev, phys, size, dir) \
    vtio_dma_map_page_site(dev, phys, size, dir, VTIO_DMA_SITE)
#define vtio_dma_unmap_single(dev, addr, size, dir) \
    vtio_dma_unmap_single_site(dev, addr, size, dir, VTIO_DMA_SITE)
#define vtio_dma_unmap_page(dev, addr, size, dir) \
    vtio_dma_unmap_page_site(dev, addr, size, dir, VTIO_DMA_SITE)
#define vtio_dma_mapping_error(dev, addr) \
    vtio_dma_mapping_error_site(dev, addr, VTIO_DMA_SITE)
/* Maps nents segments; in a DMA domain into one IOVA range, merging
 * segments that meet in IOVA space (within max_seg_size and the boundary).
 * @returns the number of DMA segments (>= 1); -EINVAL, -ENOMEM, -EIO. */
#define vtio_dma_map_sg(dev, sg, nents, dir) \
    vtio_dma_map_sg_site(dev, sg, nents, dir, VTIO_DMA_SITE)
/* nents as passed to map_sg (not its return). */
#define vtio_dma_unmap_sg(dev, sg, nents, dir) \
    vtio_dma_unmap_sg_site(dev, sg, nents, dir, VTIO_DMA_SITE)
#define vtio_dma_sync_single_for_cpu(dev, addr, size, dir) \
    vtio_dma_sync_single_site(dev, addr, size, dir, false, VTIO_DMA_SITE)
#define vtio_dma_sync_single_for_device(dev, addr, size, dir) \
    vtio_dma_sync_single_site(dev, addr, size, dir, true, VTIO_DMA_SITE)
#define vtio_dma_sync_sg_for_cpu(dev, sg, nents, dir) \
    vtio_dma_sync_sg_site(dev, sg, nents, dir, false, VTIO_DMA_SITE)
#define vtio_dma_sync_sg_for_device(dev, sg, nents, dir) \
    vtio_dma_sync_sg_site(dev, sg, nents, dir, true, VTIO_DMA_SITE)

VTIO_API vtio_dma_addr_t vtio_dma_map_single_site(struct vtio_device *dev, void *cpu_addr,
                                                  size_t size, enum vtio_dma_direction dir,
                                                  const char *site);
VTIO_API vtio_dma_addr_t vtio_dma_map_page_site(struct vtio_device *dev, uint64_t phys,
                                                size_t size, enum vtio_dma_direction dir,
                                                const char *site);
VTIO_API void vtio_dma_unmap_single_site(struct vtio_device *dev, vtio_dma_addr_t addr,
                                         size_t size, enum vtio_dma_direction dir,
                                         const char *site);
VTIO_API void vtio_dma_unmap_page_site(struct vtio_device *dev, vtio_dma_addr_t addr,
                                       size_t size, enum vtio_dma_direction dir,
                                       const char *site);
/* @returns 0 if addr is a good mapping; else the errno of the failed map
 * (this thread's last failed map on dev). */
VTIO_API int vtio_dma_mapping_error_site(struct vtio_device *dev, vtio_dma_addr_t addr,
                                         const char *site);
VTIO_API int vtio_dma_map_sg_site(struct vtio_device *dev, struct vtio_scatterlist *sg,
                                  int nents, enum vtio_dma_direction dir, const char *site);
VTIO_API void vtio_dma_unmap_sg_site(struct vtio_device *dev, struct vtio_scatterlist *sg,
                                     int nents, enum vtio_dma_direction dir,
                                     const char *site);
VTIO_API void vtio_dma_sync_single_site(struct vtio_device *dev, vtio_dma_addr_t addr,
                                        size_t size, enum vtio_dma_direction dir,
                                        bool for_device, const char *site);
VTIO_API void vtio_dma_sync_sg_site(struct vtio_device *dev, struct vtio_scatterlist *sg,
                                    int nents, enum vtio_dma_direction dir, bool for_device,
                                    const char *site);

/* ---- coherent memory: CPU and device may both use it at any time */

#define vtio_dma_alloc_coherent(dev, size, handle) \
    vtio_dma_alloc_coherent_site(dev, size, handle, VTIO_DMA_SITE)
#define vtio_dma_free_coherent(dev, size, cpu_addr, handle) \
    vtio_dma_free_coherent_site(dev, size, cpu_addr, handle, VTIO_DMA_SITE)
/* Zeroed, physically contiguous, page-aligned memory below the coherent
 * mask (direct) or mapped below it (DMA domain).  @returns the CPU's
 * pointer (direct map) and *handle; NULL on failure (vtio_last_error). */
VTIO_API void *vtio_dma_alloc_coherent_site(struct vtio_device *dev, size_t size,
                                            vtio_dma_addr_t *handle, const char *site);
VTIO_API void vtio_dma_free_coherent_site(struct vtio_device *dev, size_t size,
                                          void *cpu_addr, vtio_dma_addr_t handle,
                                          const char *site);

/* ---- lazy mode, statistics, debugging */

/* Invalidates every flush queue of h now and releases what they held: no
 * device uses a translation unmapped before this call. */
VTIO_API void vtio_dma_flush(struct vtio_host *h);

struct vtio_dma_stats {
    uint64_t maps, unmaps, map_errors;     /* streaming + coherent, all devices */
    uint64_t bounced_maps;                 /* maps that went through swiotlb */
    uint64_t bounce_bytes_copied;
    uint64_t swiotlb_total, swiotlb_used;  /* bytes */
    uint64_t strict_syncs;                 /* IOTLB invalidations waited for at unmap */
    uint64_t fq_queued;                    /* unmaps queued lazily */
    uint64_t fq_flushes;                   /* flush-queue invalidations */
    uint64_t fq_full_flushes;              /* ... because a ring was full */
    uint64_t fq_timeout_flushes;           /* ... by the timer */
    uint64_t debug_errors;                 /* misuses reported */
};
VTIO_API void vtio_dma_get_stats(struct vtio_host *h, struct vtio_dma_stats *st);

/* What DMA-API debugging found. */
enum vtio_dma_debug_kind {
    VTIO_DMA_DEBUG_NOT_MAPPED = 1,   /* unmap/sync of an address never mapped */
    VTIO_DMA_DEBUG_DOUBLE_UNMAP,     /* unmap of a mapping already unmapped */
    VTIO_DMA_DEBUG_SIZE_MISMATCH,
    VTIO_DMA_DEBUG_DIR_MISMATCH,
    VTIO_DMA_DEBUG_KIND_MISMATCH,    /* single vs page vs sg vs coherent */
    VTIO_DMA_DEBUG_SYNC_RANGE,       /* sync outside the mapping */
    VTIO_DMA_DEBUG_UNCHECKED,        /* mapping error never checked */
    VTIO_DMA_DEBUG_CPU_ACCESS,       /* CPU touched a buffer the device owns */
    VTIO_DMA_DEBUG_LEAK,             /* still mapped at driver unbind */
};

struct vtio_dma_debug_report {
    enum vtio_dma_debug_kind kind;
    const char *kind_name;           /* "double-unmap", ... */
    struct vtio_device *dev;
    const char *site;                /* the call that misused the API */
    const char *map_site;            /* the call that made the mapping ("" if none) */
    const char *unmap_site;          /* for a double unmap: the first unmap */
    vtio_dma_addr_t addr;
    uint64_t size;
    char msg[256];                   /* the whole report, one line */
};
typedef void (*vtio_dma_debug_fn)(void *opaque, const struct vtio_dma_debug_report *r);

/* Receives every report (NULL: reports go to the host log as errors). */
VTIO_API void vtio_dma_debug_set_handler(struct vtio_host *h, vtio_dma_debug_fn fn,
                                         void *opaque);
/* The CPU is about to read (write = false) or write [cpu_addr, +len):
 * reported if a mapping the device owns covers any of it. */
#define vtio_dma_cpu_access(dev, cpu_addr, len, write) \
    vtio_dma_cpu_access_site(dev, cpu_addr, len, write, VTIO_DMA_SITE)
VTIO_API void vtio_dma_cpu_access_site(struct vtio_device *dev, const void *cpu_addr,
                                       size_t len, bool write, const char *site);
/* Reports every live mapping of dev as a leak (also done at unbind).
 * @returns how many. */
VTIO_API unsigned vtio_dma_debug_check_leaks(struct vtio_device *dev);

#endif
