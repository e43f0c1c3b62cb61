/*
 * The DMA API on a DMA or DMA_FQ domain (Linux's dma-iommu).
 *
 * Every domain the DMA API owns carries a cookie: an IOVA allocator with
 * 4 KiB granules starting at pfn 1 (IOVA 0 is never handed out), with the
 * MSI window, the PCI MMIO windows and the IOMMU's registers reserved (a
 * DMA to those addresses would not reach memory), and for DMA_FQ a flush
 * queue.  A domain whose queue cannot be made, or whose driver cannot defer
 * invalidation, becomes DMA (strict), as in Linux.
 *
 * Mapping [phys, phys + size): allocate an IOVA range for the whole pages
 * the buffer touches, map them with the direction's permissions (TO_DEVICE
 * read, FROM_DEVICE write, BIDIRECTIONAL both), return the IOVA plus the
 * buffer's offset in its first page.  IOVAs come from below
 * min(mask, aperture end); for a mask above 32 bits the space below 4 GiB is
 * tried first (PCI's 32-bit workaround: single-address-cycle transactions
 * are cheaper) until it fails once, after which the domain uses the whole
 * mask (iommu.forcedac skips the first try).  Allocation goes through the
 * per-thread IOVA caches (vtio_iova_alloc_fast), which round up to a power
 * of two and size-align every range; unmap frees with the same page count.
 *
 * Untrusted devices (behind an external-facing port) never get a page that
 * holds anything but their buffer: a buffer that does not start and end on
 * a page boundary is bounced through swiotlb into a run of slots aligned to
 * a page, whose padding swiotlb zeroes, and the bounce page is mapped
 * instead.  Their sg lists are mapped segment by segment for the same
 * reason.  Unmap and sync find a bounce by translating the IOVA and asking
 * whether the page belongs to the pool.
 *
 * Unmapping clears the entries into a gather, then either waits for the
 * IOTLB invalidation and frees the IOVA (strict, DMA), or hands IOVA and
 * emptied table pages to the flush queue (lazy, DMA_FQ), which frees them
 * after a later invalidation has completed.  An unmap that finds nothing
 * mapped frees nothing (the range may belong to someone else by now).
 *
 * Scatter-gather lists get one IOVA range.  Each segment occupies whole
 * pages at its in-page offset, moved up to the next boundary_mask + 1
 * multiple when it would cross one; the allocator's size alignment makes
 * those offsets relative to an aligned base, so the boundary holds in IOVA
 * space too.  Then segments that meet exactly in IOVA space (the previous
 * one ends on a page boundary, this one starts on one) merge, as long as
 * the result stays within max_seg_size and inside one boundary window.
 * Unmapping an sg list unmaps the one span from the first DMA segment to
 * the end of the last.
 *
 * Threads: no lock of its own.  The IOVA allocator, the IOMMU core and the
 * flush queue are thread-safe; the cookie's "32-bit first" hint is atomic.
 */
#include "host/dma/dma_priv.h"

#include <errno.h>
#include <stdlib.h>

#include <vtio/iova.h>
#include <vtio/page_alloc.h>

#include "util/error.h"

#define PAGE_MASK_LOW (VTIO_PAGE_SIZE - 1)
#define MSI_BASE      0xFEE00000ull
#define MSI_END       0xFEEFFFFFull

/* The cookie, with what only this file uses behind it. */
struct dma_cookie {
    struct vtio_dma_cookie pub;        /* first: d->dma_cookie points here */
    atomic_bool dac;                   /* 32-bit first try failed: use the whole mask */
};

static inline uint64_t page_offset(uint64_t a)
{
    return a & PAGE_MASK_LOW;
}

static inline uint64_t page_round_up(uint64_t a)
{
    return (a + PAGE_MASK_LOW) & ~PAGE_MASK_LOW;
}

static struct dma_cookie *cookie_of(struct vtio_iommu_domain *d)
{
    return (struct dma_cookie *)d->dma_cookie;
}

static unsigned dir_to_prot(enum vtio_dma_direction dir)
{
    switch (dir) {
    case VTIO_DMA_TO_DEVICE:
        return VTIO_IOMMU_READ;
    case VTIO_DMA_FROM_DEVICE:
        return VTIO_IOMMU_WRITE;
    default:
        return VTIO_IOMMU_READ | VTIO_IOMMU_WRITE;
    }
}

/* The DMA-API domain dev's calls work on; NULL (vtio_fail -ENODEV) if its
 * domain changed to one the DMA API does not own. */
static struct vtio_iommu_domain *dma_domain_of(struct vtio_device *dev)
{
    struct vtio_iommu_domain *d = vtio_iommu_dma_domain(dev);
    if (!d || !d->dma_cookie ||
        (d->type != VTIO_IOMMU_DOMAIN_DMA && d->type != VTIO_IOMMU_DOMAIN_DMA_FQ)) {
        vtio_fail(-ENODEV, "dma: %s is not in a DMA domain", dev->name);
        return NULL;
    }
    return d;
}

static struct vtio_swiotlb *pool_of(struct vtio_device *dev)
{
    return dev->host->dma->swiotlb;
}

/* ---- IOVA space */

static int iova_alloc(struct vtio_device *dev, struct vtio_iommu_domain *d, uint64_t pages,
                      uint64_t mask, uint64_t *iova)
{
    struct dma_cookie *c = cookie_of(d);
    uint64_t limit = mask < d->aperture_end ? mask : d->aperture_end;
    uint64_t limit_pfn = (limit >> VTIO_PAGE_SHIFT) + 1;
    uint64_t pfn;

    if (limit_pfn > VTIO_IOVA_DMA32_PFN && !dev->host->opts.forcedac &&
        !atomic_load_explicit(&c->dac, memory_order_relaxed)) {
        if (vtio_iova_alloc_fast(c->pub.iovad, pages, VTIO_IOVA_DMA32_PFN, &pfn) == 0) {
            *iova = pfn << VTIO_PAGE_SHIFT;
            return 0;
        }
        if (!atomic_exchange(&c->dac, true))
            vtio_host_log(dev->host, VTIO_LOG_INFO, "dma: %s: using %d-bit DMA addresses",
                          dev->name, 64 - __builtin_clzll(limit));
    }
    if (vtio_iova_alloc_fast(c->pub.iovad, pages, limit_pfn, &pfn) < 0)
        return vtio_fail(-ENOMEM, "dma: %s: no IOVA space for %llu pages below %#llx",
                         dev->name, (unsigned long long)pages, (unsigned long long)limit);
    *iova = pfn << VTIO_PAGE_SHIFT;
    return 0;
}

static void iova_free(struct vtio_iommu_domain *d, uint64_t iova, uint64_t pages)
{
    vtio_iova_free_fast(cookie_of(d)->pub.iovad, iova >> VTIO_PAGE_SHIFT, pages);
}

/* ---- map and unmap of IOVA ranges */

/* Maps the pages of [phys, phys + size) at a new IOVA below mask.
 * @returns the DMA address of phys, or VTIO_DMA_MAPPING_ERROR (vtio_fail). */
static vtio_dma_addr_t map_range(struct vtio_device *dev, struct vtio_iommu_domain *d,
                                 uint64_t phys, size_t size, unsigned prot, uint64_t mask,
                                 int *err)
{
    uint64_t off = page_offset(phys);
    uint64_t len = page_round_up(off + size);
    uint64_t iova;
    *err = iova_alloc(dev, d, len >> VTIO_PAGE_SHIFT, mask, &iova);
    if (*err < 0)
        return VTIO_DMA_MAPPING_ERROR;
    *err = vtio_iommu_map_raw(d, iova, phys - off, len, prot);
    if (*err < 0) {
        iova_free(d, iova, len >> VTIO_PAGE_SHIFT);
        return VTIO_DMA_MAPPING_ERROR;
    }
    return iova + off;
}

/*
 * Unmaps [iova, iova + len) (page-aligned; one allocated IOVA range) and
 * frees it: strict (wait, then free) or lazy (flush queue).
 */
static void unmap_range(struct vtio_device *dev, struct vtio_iommu_domain *d, uint64_t iova,
                        uint64_t len)
{
    struct vtio_dma *dma = dev->host->dma;
    struct dma_cookie *c = cookie_of(d);
    struct vtio_iommu_gather g;
    vtio_iommu_gather_init(&g);
    uint64_t unmapped = vtio_iommu_unmap_raw(d, iova, len, &g);
    if (unmapped == 0) {
        /* Nothing there: the IOVA is not ours to free. */
        vtio_host_log(dev->host, VTIO_LOG_WARN, "dma: %s: unmap of %#llx+%#llx: not mapped",
                      dev->name, (unsigned long long)iova, (unsigned long long)len);
        vtio_iommu_freelist_free(&g.freelist);
        return;
    }
    if (c->pub.fq) {
        vtio_fq_queue(c->pub.fq, iova >> VTIO_PAGE_SHIFT, len >> VTIO_PAGE_SHIFT, &g.freelist);
        atomic_fetch_add_explicit(&dma->fq_queued, 1, memory_order_relaxed);
    } else {
        vtio_iommu_gather_finish(d, &g);
        iova_free(d, iova, len >> VTIO_PAGE_SHIFT);
        atomic_fetch_add_explicit(&dma->strict_syncs, 1, memory_order_relaxed);
    }
    vtio_iommu_freelist_free(&g.freelist);
}

/* Whether the mapping at addr is a bounce (untrusted devices only), and its
 * slot address. */
static bool find_bounce(struct vtio_device *dev, struct vtio_iommu_domain *d,
                        vtio_dma_addr_t addr, uint64_t *tlb)
{
    struct vtio_swiotlb *pool = pool_of(dev);
    return dev->untrusted && pool && vtio_iommu_iova_to_phys(d, addr, tlb) == 0 &&
           vtio_swiotlb_owns(pool, *tlb);
}

/* ---- the path */

/* Maps one buffer, bounced first if dev is untrusted and the buffer does
 * not cover whole pages.  @returns the address, or VTIO_DMA_MAPPING_ERROR
 * with *err (and vtio_fail) set. */
static vtio_dma_addr_t map_one(struct vtio_device *dev, struct vtio_iommu_domain *d,
                               uint64_t phys, size_t size, enum vtio_dma_direction dir,
                               bool *bounced, int *err)
{
    struct vtio_swiotlb *pool = pool_of(dev);
    bool bounce = dev->untrusted && page_offset(phys | size) != 0;
    uint64_t pa = phys;
    if (bounce) {
        if (!pool) {
            *err = vtio_fail(-ENOMEM, "dma: %s: untrusted sub-page mapping needs a bounce "
                             "pool, and there is none", dev->name);
            return VTIO_DMA_MAPPING_ERROR;
        }
        *err = vtio_swiotlb_map(pool, phys, size, PAGE_MASK_LOW, dir, &pa);
        if (*err < 0)
            return VTIO_DMA_MAPPING_ERROR;
    }
    vtio_dma_addr_t addr = map_range(dev, d, pa, size, dir_to_prot(dir),
                                     atomic_load_explicit(&dev->dma_mask, memory_order_relaxed),
                                     err);
    if (addr == VTIO_DMA_MAPPING_ERROR && bounce)
        vtio_swiotlb_unmap(pool, pa, size, VTIO_DMA_TO_DEVICE);   /* no copy back */
    *bounced = bounce;
    return addr;
}

static vtio_dma_addr_t iommu_map_phys(struct vtio_device *dev, uint64_t phys, size_t size,
                                      enum vtio_dma_direction dir, bool *bounced)
{
    struct vtio_iommu_domain *d = dma_domain_of(dev);
    if (!d)
        return vtio_dma_map_fail(-ENODEV);
    int err = 0;
    vtio_dma_addr_t addr = map_one(dev, d, phys, size, dir, bounced, &err);
    return addr == VTIO_DMA_MAPPING_ERROR ? vtio_dma_map_fail(err) : addr;
}

static void iommu_unmap_phys(struct vtio_device *dev, vtio_dma_addr_t addr, size_t size,
                             enum vtio_dma_direction dir)
{
    struct vtio_iommu_domain *d = dma_domain_of(dev);
    if (!d)
        return;
    uint64_t tlb;
    bool bounced = find_bounce(dev, d, addr, &tlb);
    uint64_t off = page_offset(addr);
    unmap_range(dev, d, addr - off, page_round_up(off + size));
    /* After the unmap: the device can no longer write into the slots. */
    if (bounced)
        vtio_swiotlb_unmap(pool_of(dev), tlb, size, dir);
}

static void iommu_sync(struct vtio_device *dev, vtio_dma_addr_t addr, size_t size,
                       enum vtio_dma_direction dir, bool for_device)
{
    struct vtio_iommu_domain *d = dma_domain_of(dev);
    uint64_t tlb;
    if (d && find_bounce(dev, d, addr, &tlb))
        vtio_swiotlb_sync(pool_of(dev), tlb, size, dir, for_device);
}

/* ---- scatter-gather */

/* Where a segment of span bytes goes at relative IOVA pos: moved up to the
 * next window if it would cross a boundary_mask + 1 multiple and fits one. */
static uint64_t sg_place(uint64_t pos, uint64_t span, uint64_t boundary_mask)
{
    bool crosses = (pos & ~boundary_mask) != ((pos + span - 1) & ~boundary_mask);
    if (crosses && span - 1 <= boundary_mask)
        pos = (pos | boundary_mask) + 1;
    return pos;
}

static int iommu_map_sg(struct vtio_device *dev, struct vtio_scatterlist *sg, int nents,
                        enum vtio_dma_direction dir)
{
    struct vtio_iommu_domain *d = dma_domain_of(dev);
    if (!d)
        return -ENODEV;
    if (dev->untrusted)         /* one mapping per segment, each bounced as needed */
        return vtio_dma_map_sg_each(&vtio_dma_iommu_path, dev, sg, nents, dir);

    uint64_t bmask = atomic_load_explicit(&dev->seg_boundary_mask, memory_order_relaxed);
    uint64_t max_seg = atomic_load_explicit(&dev->max_seg_size, memory_order_relaxed);
    uint64_t pos = 0;
    for (int i = 0; i < nents; i++) {
        uint64_t span = page_round_up(page_offset(sg[i].phys) + sg[i].length);
        pos = sg_place(pos, span, bmask) + span;
    }
    uint64_t total = pos, iova;
    int rc = iova_alloc(dev, d, total >> VTIO_PAGE_SHIFT,
                        atomic_load_explicit(&dev->dma_mask, memory_order_relaxed), &iova);
    if (rc < 0)
        return rc;

    /* Map each segment's pages and merge as we go; entry n - 1 is the DMA
     * segment being built (n - 1 <= i, so inputs not yet read stay intact). */
    unsigned prot = dir_to_prot(dir);
    uint64_t cur_start = 0, cur_len = 0;
    int n = 0;
    pos = 0;
    for (int i = 0; i < nents; i++) {
        uint64_t off = page_offset(sg[i].phys), len = sg[i].length;
        uint64_t span = page_round_up(off + len);
        pos = sg_place(pos, span, bmask);
        rc = vtio_iommu_map_raw(d, iova + pos, sg[i].phys - off, span, prot);
        if (rc < 0) {
            struct vtio_iommu_gather g;
            vtio_iommu_gather_init(&g);
            if (pos)
                vtio_iommu_unmap_raw(d, iova, pos, &g);
            vtio_iommu_gather_finish(d, &g);
            vtio_iommu_freelist_free(&g.freelist);
            iova_free(d, iova, total >> VTIO_PAGE_SHIFT);
            return rc;
        }
        uint64_t s = iova + pos + off;
        bool joins = n > 0 && s == cur_start + cur_len && cur_len + len <= max_seg &&
                     (cur_start & ~bmask) == ((s + len - 1) & ~bmask);
        if (joins) {
            cur_len += len;
        } else {
            n++;
            cur_start = s;
            cur_len = len;
        }
        sg[n - 1].dma_address = cur_start;
        sg[n - 1].dma_length = (uint32_t)cur_len;
        pos += span;
    }
    for (int j = n; j < nents; j++) {
        sg[j].dma_address = VTIO_DMA_MAPPING_ERROR;
        sg[j].dma_length = 0;
    }
    return n;
}

static void iommu_unmap_sg(struct vtio_device *dev, struct vtio_scatterlist *sg, int nents,
                           enum vtio_dma_direction dir)
{
    struct vtio_iommu_domain *d = dma_domain_of(dev);
    if (!d)
        return;
    if (dev->untrusted) {
        vtio_dma_unmap_sg_each(&vtio_dma_iommu_path, dev, sg, nents, dir);
        return;
    }
    uint64_t start = sg[0].dma_address & ~PAGE_MASK_LOW, end = start;
    for (int i = 0; i < nents && sg[i].dma_length; i++)
        end = page_round_up(sg[i].dma_address + sg[i].dma_length);
    if (end > start)
        unmap_range(dev, d, start, end - start);
}

/* ---- coherent memory */

static void *iommu_alloc_coherent(struct vtio_device *dev, size_t size, vtio_dma_addr_t *handle)
{
    struct vtio_iommu_domain *d = dma_domain_of(dev);
    if (!d)
        return NULL;
    struct vtio_host *h = dev->host;
    uint64_t len = page_round_up(size), pa;
    unsigned order = vtio_page_order(len);
    if (vtio_page_alloc(h->pages, order, VTIO_PAGE_ZERO, &pa) < 0)
        return NULL;
    int rc;
    vtio_dma_addr_t addr = map_range(
        dev, d, pa, len, VTIO_IOMMU_READ | VTIO_IOMMU_WRITE,
        atomic_load_explicit(&dev->coherent_dma_mask, memory_order_relaxed), &rc);
    if (addr == VTIO_DMA_MAPPING_ERROR) {
        vtio_page_free(h->pages, pa, order);
        return NULL;
    }
    *handle = addr;
    return vtio_host_phys_to_virt(h, pa);
}

static void iommu_free_coherent(struct vtio_device *dev, size_t size, void *cpu_addr,
                                vtio_dma_addr_t handle)
{
    struct vtio_iommu_domain *d = dma_domain_of(dev);
    struct vtio_host *h = dev->host;
    uint64_t pa, mapped;
    if (!d || vtio_host_virt_to_phys(h, cpu_addr, &pa) < 0 ||
        vtio_iommu_iova_to_phys(d, handle, &mapped) < 0 || mapped != pa) {
        vtio_host_log(h, VTIO_LOG_ERR, "dma: %s: free_coherent of %p / %#llx: not a pair "
                      "from alloc_coherent", dev->name, cpu_addr, (unsigned long long)handle);
        return;
    }
    uint64_t len = page_round_up(size);
    unmap_range(dev, d, handle, len);
    vtio_page_free(h->pages, pa, vtio_page_order(len));
}

const struct vtio_dma_path vtio_dma_iommu_path = {
    .map_phys = iommu_map_phys,
    .unmap_phys = iommu_unmap_phys,
    .map_sg = iommu_map_sg,
    .unmap_sg = iommu_unmap_sg,
    .sync = iommu_sync,
    .alloc_coherent = iommu_alloc_coherent,
    .free_coherent = iommu_free_coherent,
};

/* ---- the cookie */

/* Takes [base, base + size) out of the IOVA space (if it is inside it). */
static int reserve_window(struct vtio_iova_domain *iovad, uint64_t aperture_end, uint64_t base,
                          uint64_t size)
{
    if (size == 0 || base > aperture_end)
        return 0;
    uint64_t last = base + size - 1;
    if (last < base || last > aperture_end)
        last = aperture_end;
    int rc = vtio_iova_reserve(iovad, base >> VTIO_PAGE_SHIFT, last >> VTIO_PAGE_SHIFT);
    return rc == -ENOMEM ? rc : 0;
}

static int reserve_holes(struct vtio_host *h, struct vtio_iommu_domain *d,
                         struct vtio_iova_domain *iovad)
{
    const struct vtio_firmware *fw = &h->fw;
    int rc = reserve_window(iovad, d->aperture_end, MSI_BASE, MSI_END - MSI_BASE + 1);
    if (rc == 0)
        rc = reserve_window(iovad, d->aperture_end, fw->mmio32_base, fw->mmio32_size);
    if (rc == 0)
        rc = reserve_window(iovad, d->aperture_end, fw->mmio64_base, fw->mmio64_size);
    for (unsigned i = 0; rc == 0 && i < fw->dmar.n_drhd; i++)
        rc = reserve_window(iovad, d->aperture_end, fw->dmar.drhd[i].base,
                            fw->dmar.drhd[i].size);
    return rc;
}

int vtio_dma_domain_init(struct vtio_host *h, struct vtio_iommu_domain *d)
{
    if (!h || !h->dma || !d ||
        (d->type != VTIO_IOMMU_DOMAIN_DMA && d->type != VTIO_IOMMU_DOMAIN_DMA_FQ))
        return vtio_fail(-EINVAL, "dma: cookie for a domain that is not DMA or DMA-FQ");
    struct dma_cookie *c = calloc(1, sizeof(*c));
    if (!c)
        return vtio_fail(-ENOMEM, "dma: out of memory for a domain cookie");
    c->pub.iovad = vtio_iova_domain_create(VTIO_PAGE_SIZE, 1);
    if (!c->pub.iovad) {
        free(c);
        return -ENOMEM;
    }
    int rc = reserve_holes(h, d, c->pub.iovad);
    if (rc < 0) {
        vtio_iova_domain_destroy(c->pub.iovad, NULL, NULL);
        free(c);
        return rc;
    }
    d->dma_cookie = &c->pub;
    if (d->type == VTIO_IOMMU_DOMAIN_DMA_FQ) {
        if (!d->iommu || !d->iommu->ops || !d->iommu->ops->deferred_flush) {
            vtio_host_log(h, VTIO_LOG_INFO, "dma: the IOMMU cannot defer invalidation: "
                          "strict domain");
            d->type = VTIO_IOMMU_DOMAIN_DMA;
        } else if (vtio_fq_create(h, d, &c->pub.fq) < 0) {
            vtio_host_log(h, VTIO_LOG_WARN, "dma: no flush queue (%s): strict domain",
                          vtio_last_error());
            d->type = VTIO_IOMMU_DOMAIN_DMA;
        }
    }
    return 0;
}

void vtio_dma_domain_destroy(struct vtio_host *h, struct vtio_iommu_domain *d)
{
    if (!d || !d->dma_cookie)
        return;
    struct dma_cookie *c = cookie_of(d);
    vtio_fq_destroy(c->pub.fq);          /* gives its IOVAs back first */
    uint64_t leaked = vtio_iova_domain_destroy(c->pub.iovad, NULL, NULL);
    if (leaked && h)
        vtio_host_log(h, VTIO_LOG_WARN, "dma: domain freed with %llu mappings still live",
                      (unsigned long long)leaked);
    d->dma_cookie = NULL;
    free(c);
}
