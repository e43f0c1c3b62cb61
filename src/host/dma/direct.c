/*
 * The DMA API where nothing translates (Linux's dma-direct): no IOMMU, or
 * an identity domain.
 *
 * The DMA address of a buffer is its physical address.  A buffer the
 * device's streaming mask cannot reach is bounced through the swiotlb pool
 * (which lies below 4 GiB), provided the pool exists and the mask reaches
 * all of it; otherwise the map fails with -EIO.  Unmap and sync copy only
 * for bounced mappings, recognised by their address lying in the pool.
 * Scatter-gather lists are mapped segment by segment, never merged, as in
 * Linux: a DMA segment is exactly one CPU segment.
 *
 * Coherent memory comes straight from the page allocator, zeroed, from the
 * DMA32 zone when a block could land above the coherent mask (the top of
 * RAM is above it).  A mask below 4 GiB may still be missed by a DMA32
 * block; the allocation then retries, keeping the misses aside, a bounded
 * number of times (Linux falls back to its 16 MiB zone; vtio has none).
 *
 * Threads: no state of its own; the pool and the page allocator are
 * thread-safe.
 */
#include "host/dma/dma_priv.h"

#include <errno.h>

#include <vtio/mem.h>
#include <vtio/page_alloc.h>

#include "util/error.h"

#define COHERENT_TRIES 16

static struct vtio_swiotlb *pool_of(struct vtio_device *dev)
{
    return dev->host->dma->swiotlb;
}

/* Maps one buffer.  @returns the address or VTIO_DMA_MAPPING_ERROR with
 * *err (and vtio_fail) set. */
static vtio_dma_addr_t map_one(struct vtio_device *dev, uint64_t phys, size_t size,
                               enum vtio_dma_direction dir, bool *bounced, int *err)
{
    uint64_t mask = atomic_load_explicit(&dev->dma_mask, memory_order_relaxed);
    *bounced = false;
    if (vtio_dma_capable(mask, phys, size))
        return phys;
    struct vtio_swiotlb *pool = pool_of(dev);
    if (!pool || vtio_swiotlb_end(pool) > mask) {
        *err = vtio_fail(-EIO, "dma: %s: device cannot reach %#llx+%#llx (mask %#llx) and %s",
                         dev->name, (unsigned long long)phys, (unsigned long long)size,
                         (unsigned long long)mask,
                         pool ? "cannot reach the bounce pool either" : "there is no bounce pool");
        return VTIO_DMA_MAPPING_ERROR;
    }
    uint64_t tlb;
    *err = vtio_swiotlb_map(pool, phys, size, 0, dir, &tlb);
    if (*err < 0)
        return VTIO_DMA_MAPPING_ERROR;
    *bounced = true;
    return tlb;
}

static vtio_dma_addr_t direct_map_phys(struct vtio_device *dev, uint64_t phys, size_t size,
                                       enum vtio_dma_direction dir, bool *bounced)
{
    int err = 0;
    vtio_dma_addr_t addr = map_one(dev, phys, size, dir, bounced, &err);
    return addr == VTIO_DMA_MAPPING_ERROR ? vtio_dma_map_fail(err) : addr;
}

static void direct_unmap_phys(struct vtio_device *dev, vtio_dma_addr_t addr, size_t size,
                              enum vtio_dma_direction dir)
{
    struct vtio_swiotlb *pool = pool_of(dev);
    if (pool && vtio_swiotlb_owns(pool, addr))
        vtio_swiotlb_unmap(pool, addr, size, dir);
}

static void direct_sync(struct vtio_device *dev, vtio_dma_addr_t addr, size_t size,
                        enum vtio_dma_direction dir, bool for_device)
{
    struct vtio_swiotlb *pool = pool_of(dev);
    if (pool && vtio_swiotlb_owns(pool, addr))
        vtio_swiotlb_sync(pool, addr, size, dir, for_device);
}

static int direct_map_sg(struct vtio_device *dev, struct vtio_scatterlist *sg, int nents,
                         enum vtio_dma_direction dir)
{
    return vtio_dma_map_sg_each(&vtio_dma_direct_path, dev, sg, nents, dir);
}

static void direct_unmap_sg(struct vtio_device *dev, struct vtio_scatterlist *sg, int nents,
                            enum vtio_dma_direction dir)
{
    vtio_dma_unmap_sg_each(&vtio_dma_direct_path, dev, sg, nents, dir);
}

/* ---- coherent memory */

static void ram_top_visit(void *arg, uint64_t base, uint64_t size, const char *name)
{
    (void)name;
    uint64_t *top = arg;
    if (base + size - 1 > *top)
        *top = base + size - 1;
}

/* The highest RAM byte (from the firmware memory map). */
static uint64_t ram_top(struct vtio_host *h)
{
    uint64_t top = 0;
    vtio_mem_for_each_ram(h->mem, ram_top_visit, &top);
    return top;
}

/* A zeroed block of 2^order pages wholly below mask.  @returns 0 or -errno. */
static int alloc_below(struct vtio_host *h, unsigned order, uint64_t mask, uint64_t *out)
{
    uint64_t bytes = VTIO_PAGE_SIZE << order;
    if (ram_top(h) <= mask)
        return vtio_page_alloc(h->pages, order, VTIO_PAGE_ZERO, out);
    uint64_t missed[COHERENT_TRIES];
    unsigned n_missed = 0;
    int rc = -ENOMEM;
    while (n_missed < COHERENT_TRIES) {
        uint64_t pa;
        if (vtio_page_alloc(h->pages, order, VTIO_PAGE_DMA32, &pa) < 0)
            break;
        if (vtio_dma_capable(mask, pa, bytes)) {
            vtio_mem_set(h->mem, pa, 0, (size_t)bytes);
            *out = pa;
            rc = 0;
            break;
        }
        missed[n_missed++] = pa;
    }
    while (n_missed--)
        vtio_page_free(h->pages, missed[n_missed], order);
    if (rc < 0)
        vtio_fail(-ENOMEM, "dma: no free block of %#llx bytes below %#llx",
                  (unsigned long long)bytes, (unsigned long long)mask);
    return rc;
}

static void *direct_alloc_coherent(struct vtio_device *dev, size_t size, vtio_dma_addr_t *handle)
{
    struct vtio_host *h = dev->host;
    uint64_t mask = atomic_load_explicit(&dev->coherent_dma_mask, memory_order_relaxed);
    uint64_t pa;
    if (alloc_below(h, vtio_page_order(size), mask, &pa) < 0)
        return NULL;
    *handle = pa;
    return vtio_host_phys_to_virt(h, pa);
}

static void direct_free_coherent(struct vtio_device *dev, size_t size, void *cpu_addr,
                                 vtio_dma_addr_t handle)
{
    struct vtio_host *h = dev->host;
    uint64_t pa;
    if (vtio_host_virt_to_phys(h, cpu_addr, &pa) < 0 || pa != handle ||
        vtio_page_free(h->pages, pa, vtio_page_order(size)) < 0)
        vtio_host_log(h, VTIO_LOG_ERR, "dma: %s: free_coherent of %p / %#llx: not a pair "
                      "from alloc_coherent", dev->name, cpu_addr, (unsigned long long)handle);
}

const struct vtio_dma_path vtio_dma_direct_path = {
    .map_phys = direct_map_phys,
    .unmap_phys = direct_unmap_phys,
    .map_sg = direct_map_sg,
    .unmap_sg = direct_unmap_sg,
    .sync = direct_sync,
    .alloc_coherent = direct_alloc_coherent,
    .free_coherent = direct_free_coherent,
};
