/*
 * The DMA mapping API's public calls (Linux's kernel/dma/mapping.c), and
 * the DMA layer's boot and shutdown.
 *
 * Each call checks its arguments, picks the path from the device's current
 * domain (no IOMMU or IDENTITY: direct.c; DMA or DMA_FQ: iommu_dma.c;
 * BLOCKED or UNMANAGED: the device's DMA belongs to someone else, -ENODEV),
 * calls it, counts, and tells DMA-API debugging (debug.c) when that is on.
 * Nothing here knows whether an IOMMU exists.
 *
 * Errors.  A failed streaming map returns VTIO_DMA_MAPPING_ERROR; why it
 * failed is kept per thread and per device (a few recent devices per
 * thread) for vtio_dma_mapping_error().  Paths report their errno through
 * vtio_dma_map_fail(), beside the message vtio_fail() recorded.  Calls that
 * return nothing ignore bad arguments; debugging (when on) sees them first,
 * so it can report them, and an unmap it rejects (never mapped, double)
 * never reaches a path.
 *
 * Boot: vtio_dma_init runs before the IOMMU comes up (domains need the
 * flush-queue timer), vtio_dma_exit after it has gone.  A bounce pool that
 * does not fit is not fatal: the layer runs without one, and maps that
 * would need it fail with -EIO.
 *
 * Threads: the calls are thread-safe: statistics are relaxed atomics, the
 * device's DMA parameters are atomics written under its lock, the error
 * memory is thread-local.
 */
#include "host/dma/dma_priv.h"

#include <errno.h>
#include <stdlib.h>

#include <vtio/mem.h>
#include <vtio/page_alloc.h>

#include "util/error.h"

#define SWIOTLB_DEFAULT_BYTES (64 * VTIO_MiB)
#define MIN_DMA_MASK          VTIO_DMA_BIT_MASK(24)

static void count(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* ---- why the last map failed, per thread and device */

#define ERR_SLOTS 8

struct map_err {
    const struct vtio_device *dev;
    int err;
};
static _Thread_local struct map_err map_errs[ERR_SLOTS];
static _Thread_local unsigned map_err_next;
static _Thread_local int path_errno;

vtio_dma_addr_t vtio_dma_map_fail(int negerr)
{
    path_errno = negerr < 0 ? negerr : -EIO;
    return VTIO_DMA_MAPPING_ERROR;
}

static void remember_error(const struct vtio_device *dev, int err)
{
    for (unsigned i = 0; i < ERR_SLOTS; i++) {
        if (map_errs[i].dev == dev && map_errs[i].err) {
            map_errs[i].err = err;
            return;
        }
    }
    map_errs[map_err_next++ % ERR_SLOTS] = (struct map_err){ dev, err };
}

static int recall_error(const struct vtio_device *dev)
{
    for (unsigned i = 0; i < ERR_SLOTS; i++)
        if (map_errs[i].dev == dev && map_errs[i].err)
            return map_errs[i].err;
    return -EINVAL;     /* an address that no map of this thread returned */
}

/* ---- checks and the path */

static bool dir_valid(enum vtio_dma_direction dir)
{
    return dir == VTIO_DMA_BIDIRECTIONAL || dir == VTIO_DMA_TO_DEVICE ||
           dir == VTIO_DMA_FROM_DEVICE;
}

/* The device's DMA layer; NULL for no device or a host without one. */
static struct vtio_dma *dma_of(struct vtio_device *dev)
{
    return dev && dev->host ? dev->host->dma : NULL;
}

static struct vtio_dma_debug *debug_of(struct vtio_device *dev)
{
    struct vtio_dma *dma = dma_of(dev);
    return dma ? dma->debug : NULL;
}

/* Checks what every map needs.  @returns 0 or -errno (vtio_fail). */
static int check_map(struct vtio_device *dev, size_t size, enum vtio_dma_direction dir)
{
    if (!dev)
        return vtio_fail(-EINVAL, "dma: no device");
    if (!dev->host || !dev->host->dma)
        return vtio_fail(-ENODEV, "dma: %s: the DMA layer is not up", dev->name);
    if (size == 0)
        return vtio_fail(-EINVAL, "dma: %s: map of 0 bytes", dev->name);
    if (!dir_valid(dir))
        return vtio_fail(-EINVAL, "dma: %s: direction %d is not valid for a mapping",
                         dev->name, (int)dir);
    return 0;
}

/* Whether [phys, phys + size) is RAM, contiguous in the direct map. */
static int check_ram(struct vtio_device *dev, uint64_t phys, uint64_t size)
{
    struct vtio_host *h = dev->host;
    uint64_t last = phys + size - 1;
    const char *first_va = vtio_host_phys_to_virt(h, phys);
    const char *last_va = last >= phys ? vtio_host_phys_to_virt(h, last) : NULL;
    if (!first_va || !last_va || (uint64_t)(last_va - first_va) != size - 1)
        return vtio_fail(-EFAULT, "dma: %s: %#llx+%#llx is not RAM", dev->name,
                         (unsigned long long)phys, (unsigned long long)size);
    return 0;
}

/* The physical address of a direct-map buffer.  @returns 0 or -EFAULT. */
static int cpu_to_phys(struct vtio_device *dev, const void *cpu_addr, size_t size,
                       uint64_t *phys)
{
    struct vtio_host *h = dev->host;
    uint64_t last;
    if (!cpu_addr || vtio_host_virt_to_phys(h, cpu_addr, phys) < 0 ||
        vtio_host_virt_to_phys(h, (const char *)cpu_addr + size - 1, &last) < 0 ||
        last - *phys != size - 1)
        return vtio_fail(-EFAULT, "dma: %s: %p+%#zx is not in the direct map", dev->name,
                         cpu_addr, size);
    return 0;
}

/* The path for dev's current domain; NULL and *err = -ENODEV if the DMA
 * API may not use the device. */
static const struct vtio_dma_path *path_of(struct vtio_device *dev, int *err)
{
    struct vtio_iommu_domain *d = vtio_iommu_dma_domain(dev);
    if (!d)
        return &vtio_dma_direct_path;
    enum vtio_iommu_domain_type t = d->type;
    switch (t) {
    case VTIO_IOMMU_DOMAIN_IDENTITY:
        return &vtio_dma_direct_path;
    case VTIO_IOMMU_DOMAIN_DMA:
    case VTIO_IOMMU_DOMAIN_DMA_FQ:
        return &vtio_dma_iommu_path;
    default:
        *err = vtio_fail(-ENODEV, "dma: %s: its DMA is %s (another user owns the device)",
                         dev->name, t == VTIO_IOMMU_DOMAIN_BLOCKED ? "blocked"
                                                                   : "in an unmanaged domain");
        return NULL;
    }
}

/* ---- streaming maps of one buffer */

static vtio_dma_addr_t map_common(struct vtio_device *dev, enum vtio_dma_map_kind kind,
                                  uint64_t phys, size_t size, enum vtio_dma_direction dir,
                                  const char *site, int err)
{
    if (err) {
        /* check_map failed: dev may be NULL or without a DMA layer */
        remember_error(dev, err);
        struct vtio_dma *dma = dma_of(dev);
        if (dma && dma->debug)
            vtio_dma_debug_map(dma->debug, dev, kind, VTIO_DMA_MAPPING_ERROR, phys, size, dir,
                               site);
        if (dma)
            count(&dma->map_errors, 1);
        return VTIO_DMA_MAPPING_ERROR;
    }
    struct vtio_dma *dma = dev->host->dma;
    vtio_dma_addr_t addr = VTIO_DMA_MAPPING_ERROR;
    bool bounced = false;
    const struct vtio_dma_path *p = path_of(dev, &err);
    if (p) {
        path_errno = -ENOMEM;
        addr = p->map_phys(dev, phys, size, dir, &bounced);
        if (addr == VTIO_DMA_MAPPING_ERROR)
            err = path_errno;
    }
    if (addr == VTIO_DMA_MAPPING_ERROR) {
        remember_error(dev, err);
        count(&dma->map_errors, 1);
    } else {
        count(&dma->maps, 1);
        if (bounced)
            count(&dma->bounced_maps, 1);
    }
    if (dma->debug)
        vtio_dma_debug_map(dma->debug, dev, kind, addr, phys, size, dir, site);
    return addr;
}

vtio_dma_addr_t vtio_dma_map_single_site(struct vtio_device *dev, void *cpu_addr, size_t size,
                                         enum vtio_dma_direction dir, const char *site)
{
    uint64_t phys = 0;
    int err = check_map(dev, size, dir);
    if (!err)
        err = cpu_to_phys(dev, cpu_addr, size, &phys);
    return map_common(dev, VTIO_DMA_KIND_SINGLE, phys, size, dir, site, err);
}

vtio_dma_addr_t vtio_dma_map_page_site(struct vtio_device *dev, uint64_t phys, size_t size,
                                       enum vtio_dma_direction dir, const char *site)
{
    int err = check_map(dev, size, dir);
    if (!err)
        err = check_ram(dev, phys, size);
    return map_common(dev, VTIO_DMA_KIND_PAGE, phys, size, dir, site, err);
}

static void unmap_common(struct vtio_device *dev, enum vtio_dma_map_kind kind,
                         vtio_dma_addr_t addr, size_t size, enum vtio_dma_direction dir,
                         const char *site)
{
    struct vtio_dma *dma = dma_of(dev);
    if (!dma)
        return;
    if (dma->debug && !vtio_dma_debug_unmap(dma->debug, dev, kind, addr, size, dir, site))
        return;
    int err = 0;
    const struct vtio_dma_path *p = path_of(dev, &err);
    if (!p || size == 0 || !dir_valid(dir) || addr == VTIO_DMA_MAPPING_ERROR)
        return;
    p->unmap_phys(dev, addr, size, dir);
    count(&dma->unmaps, 1);
}

void vtio_dma_unmap_single_site(struct vtio_device *dev, vtio_dma_addr_t addr, size_t size,
                                enum vtio_dma_direction dir, const char *site)
{
    unmap_common(dev, VTIO_DMA_KIND_SINGLE, addr, size, dir, site);
}

void vtio_dma_unmap_page_site(struct vtio_device *dev, vtio_dma_addr_t addr, size_t size,
                              enum vtio_dma_direction dir, const char *site)
{
    unmap_common(dev, VTIO_DMA_KIND_PAGE, addr, size, dir, site);
}

int vtio_dma_mapping_error_site(struct vtio_device *dev, vtio_dma_addr_t addr,
                                const char *site)
{
    struct vtio_dma_debug *dbg = debug_of(dev);
    if (dbg)
        vtio_dma_debug_mapping_error(dbg, dev, addr, site);
    return addr == VTIO_DMA_MAPPING_ERROR ? recall_error(dev) : 0;
}

void vtio_dma_sync_single_site(struct vtio_device *dev, vtio_dma_addr_t addr, size_t size,
                               enum vtio_dma_direction dir, bool for_device, const char *site)
{
    struct vtio_dma_debug *dbg = debug_of(dev);
    if (dbg)
        vtio_dma_debug_sync(dbg, dev, addr, size, dir, for_device, site);
    int err = 0;
    const struct vtio_dma_path *p = dma_of(dev) ? path_of(dev, &err) : NULL;
    if (p && size && dir_valid(dir))
        p->sync(dev, addr, size, dir, for_device);
}

/* ---- scatter-gather */

int vtio_dma_map_sg_each(const struct vtio_dma_path *p, struct vtio_device *dev,
                         struct vtio_scatterlist *sg, int nents, enum vtio_dma_direction dir)
{
    for (int i = 0; i < nents; i++) {
        bool bounced = false;
        path_errno = -ENOMEM;
        sg[i].dma_address = p->map_phys(dev, sg[i].phys, sg[i].length, dir, &bounced);
        if (sg[i].dma_address == VTIO_DMA_MAPPING_ERROR) {
            int err = path_errno;
            while (i--)   /* TO_DEVICE: give bounce slots back without copying */
                p->unmap_phys(dev, sg[i].dma_address, sg[i].length, VTIO_DMA_TO_DEVICE);
            return err;
        }
        sg[i].dma_length = sg[i].length;
        if (bounced)
            count(&dev->host->dma->bounced_maps, 1);
    }
    return nents;
}

void vtio_dma_unmap_sg_each(const struct vtio_dma_path *p, struct vtio_device *dev,
                            struct vtio_scatterlist *sg, int nents,
                            enum vtio_dma_direction dir)
{
    for (int i = 0; i < nents && sg[i].dma_length; i++)
        p->unmap_phys(dev, sg[i].dma_address, sg[i].dma_length, dir);
}

static int check_sg(struct vtio_device *dev, struct vtio_scatterlist *sg, int nents,
                    enum vtio_dma_direction dir)
{
    int err = check_map(dev, 1, dir);
    if (err)
        return err;
    if (!sg || nents <= 0)
        return vtio_fail(-EINVAL, "dma: %s: empty scatterlist", dev->name);
    for (int i = 0; i < nents; i++) {
        if (sg[i].length == 0)
            return vtio_fail(-EINVAL, "dma: %s: scatterlist entry %d is empty", dev->name, i);
        err = check_ram(dev, sg[i].phys, sg[i].length);
        if (err)
            return err;
    }
    return 0;
}

/* Tells debugging about each DMA segment, with the CPU range it starts at
 * (the CPU entries it merged are consecutive; their lengths add up to it). */
static void debug_map_sg(struct vtio_dma_debug *dbg, struct vtio_device *dev,
                         struct vtio_scatterlist *sg, int nents, int n,
                         enum vtio_dma_direction dir, const char *site)
{
    int e = 0;
    for (int j = 0; j < n; j++) {
        uint64_t phys = e < nents ? sg[e].phys : 0, covered = 0;
        while (e < nents && covered < sg[j].dma_length)
            covered += sg[e++].length;
        vtio_dma_debug_map(dbg, dev, VTIO_DMA_KIND_SG, sg[j].dma_address, phys,
                           sg[j].dma_length, dir, site);
    }
}

int vtio_dma_map_sg_site(struct vtio_device *dev, struct vtio_scatterlist *sg, int nents,
                         enum vtio_dma_direction dir, const char *site)
{
    int n = check_sg(dev, sg, nents, dir);
    const struct vtio_dma_path *p = n ? NULL : path_of(dev, &n);
    if (p)
        n = p->map_sg(dev, sg, nents, dir);
    struct vtio_dma *dma = dma_of(dev);
    if (!dma)
        return n;
    if (n <= 0) {
        count(&dma->map_errors, 1);
        return n < 0 ? n : -EIO;
    }
    count(&dma->maps, 1);
    if (dma->debug)
        debug_map_sg(dma->debug, dev, sg, nents, n, dir, site);
    return n;
}

void vtio_dma_unmap_sg_site(struct vtio_device *dev, struct vtio_scatterlist *sg, int nents,
                            enum vtio_dma_direction dir, const char *site)
{
    struct vtio_dma *dma = dma_of(dev);
    if (!dma || !sg || nents <= 0)
        return;
    if (dma->debug) {
        for (int j = 0; j < nents && sg[j].dma_length; j++)
            if (!vtio_dma_debug_unmap(dma->debug, dev, VTIO_DMA_KIND_SG, sg[j].dma_address,
                                      sg[j].dma_length, dir, site) && j == 0)
                return;
    }
    int err = 0;
    const struct vtio_dma_path *p = path_of(dev, &err);
    if (!p || !dir_valid(dir) || sg[0].dma_length == 0)
        return;
    p->unmap_sg(dev, sg, nents, dir);
    count(&dma->unmaps, 1);
}

void vtio_dma_sync_sg_site(struct vtio_device *dev, struct vtio_scatterlist *sg, int nents,
                           enum vtio_dma_direction dir, bool for_device, const char *site)
{
    if (!dma_of(dev) || !sg || nents <= 0)
        return;
    for (int j = 0; j < nents && sg[j].dma_length; j++)
        vtio_dma_sync_single_site(dev, sg[j].dma_address, sg[j].dma_length, dir, for_device,
                                  site);
}

/* ---- coherent memory */

void *vtio_dma_alloc_coherent_site(struct vtio_device *dev, size_t size,
                                   vtio_dma_addr_t *handle, const char *site)
{
    int err = check_map(dev, size, VTIO_DMA_BIDIRECTIONAL);
    if (!err && !handle)
        err = vtio_fail(-EINVAL, "dma: %s: alloc_coherent needs a handle", dev->name);
    if (!err && vtio_page_order(size) > VTIO_PAGE_MAX_ORDER)
        err = vtio_fail(-ENOMEM, "dma: %s: coherent block of %#zx bytes is over 1 GiB",
                        dev->name, size);
    const struct vtio_dma_path *p = err ? NULL : path_of(dev, &err);
    void *cpu = p ? p->alloc_coherent(dev, size, handle) : NULL;
    struct vtio_dma *dma = dma_of(dev);
    if (!dma)
        return cpu;
    if (!cpu) {
        count(&dma->map_errors, 1);
        return NULL;
    }
    count(&dma->maps, 1);
    if (dma->debug) {
        uint64_t phys = 0;
        vtio_host_virt_to_phys(dev->host, cpu, &phys);
        vtio_dma_debug_map(dma->debug, dev, VTIO_DMA_KIND_COHERENT, *handle, phys, size,
                           VTIO_DMA_BIDIRECTIONAL, site);
    }
    return cpu;
}

void vtio_dma_free_coherent_site(struct vtio_device *dev, size_t size, void *cpu_addr,
                                 vtio_dma_addr_t handle, const char *site)
{
    struct vtio_dma *dma = dma_of(dev);
    if (!dma || !cpu_addr)
        return;
    if (dma->debug && !vtio_dma_debug_unmap(dma->debug, dev, VTIO_DMA_KIND_COHERENT, handle,
                                            size, VTIO_DMA_BIDIRECTIONAL, site))
        return;
    int err = 0;
    const struct vtio_dma_path *p = path_of(dev, &err);
    if (!p || size == 0 || vtio_page_order(size) > VTIO_PAGE_MAX_ORDER)
        return;
    p->free_coherent(dev, size, cpu_addr, handle);
    count(&dma->unmaps, 1);
}

/* ---- device constraints */

int vtio_dma_set_mask(struct vtio_device *dev, uint64_t mask)
{
    if (!dev)
        return vtio_fail(-EINVAL, "dma: no device");
    if (mask < MIN_DMA_MASK)
        return vtio_fail(-EIO, "dma: %s: mask %#llx is below 24 bits", dev->name,
                         (unsigned long long)mask);
    pthread_mutex_lock(&dev->lock);
    atomic_store(&dev->dma_mask, mask);
    pthread_mutex_unlock(&dev->lock);
    return 0;
}

int vtio_dma_set_coherent_mask(struct vtio_device *dev, uint64_t mask)
{
    if (!dev)
        return vtio_fail(-EINVAL, "dma: no device");
    if (mask < MIN_DMA_MASK)
        return vtio_fail(-EIO, "dma: %s: coherent mask %#llx is below 24 bits", dev->name,
                         (unsigned long long)mask);
    pthread_mutex_lock(&dev->lock);
    atomic_store(&dev->coherent_dma_mask, mask);
    pthread_mutex_unlock(&dev->lock);
    return 0;
}

int vtio_dma_set_mask_and_coherent(struct vtio_device *dev, uint64_t mask)
{
    int rc = vtio_dma_set_mask(dev, mask);
    return rc ? rc : vtio_dma_set_coherent_mask(dev, mask);
}

uint64_t vtio_dma_get_mask(const struct vtio_device *dev)
{
    return dev ? atomic_load(&dev->dma_mask) : 0;
}

int vtio_dma_set_max_seg_size(struct vtio_device *dev, uint32_t size)
{
    if (!dev || size == 0)
        return vtio_fail(-EINVAL, "dma: max segment size of 0 (or no device)");
    pthread_mutex_lock(&dev->lock);
    atomic_store(&dev->max_seg_size, size);
    pthread_mutex_unlock(&dev->lock);
    return 0;
}

int vtio_dma_set_seg_boundary(struct vtio_device *dev, uint64_t boundary_mask)
{
    if (!dev || boundary_mask < VTIO_PAGE_SIZE - 1 || (boundary_mask & (boundary_mask + 1)))
        return vtio_fail(-EINVAL, "dma: segment boundary mask %#llx is not 2^n - 1 >= 4 KiB - 1",
                         (unsigned long long)boundary_mask);
    pthread_mutex_lock(&dev->lock);
    atomic_store(&dev->seg_boundary_mask, boundary_mask);
    pthread_mutex_unlock(&dev->lock);
    return 0;
}

/* ---- lazy mode, statistics, debugging */

void vtio_dma_flush(struct vtio_host *h)
{
    if (!h || !h->iommu)
        return;
    struct vtio_iommu *iommu = h->iommu;
    pthread_mutex_lock(&iommu->lock);
    for (unsigned i = 0; i < iommu->n_groups; i++) {
        struct vtio_iommu_domain *d = iommu->groups[i]->default_domain;
        const struct vtio_dma_cookie *c = d ? d->dma_cookie : NULL;
        if (c && c->fq)
            vtio_fq_flush(c->fq);
    }
    pthread_mutex_unlock(&iommu->lock);
}

void vtio_dma_get_stats(struct vtio_host *h, struct vtio_dma_stats *st)
{
    if (!st)
        return;
    *st = (struct vtio_dma_stats){ 0 };
    if (!h || !h->dma)
        return;
    struct vtio_dma *dma = h->dma;
    st->maps = atomic_load(&dma->maps);
    st->unmaps = atomic_load(&dma->unmaps);
    st->map_errors = atomic_load(&dma->map_errors);
    st->bounced_maps = atomic_load(&dma->bounced_maps);
    st->bounce_bytes_copied = atomic_load(&dma->bounce_bytes_copied);
    if (dma->swiotlb)
        vtio_swiotlb_usage(dma->swiotlb, &st->swiotlb_total, &st->swiotlb_used);
    st->strict_syncs = atomic_load(&dma->strict_syncs);
    st->fq_queued = atomic_load(&dma->fq_queued);
    st->fq_flushes = atomic_load(&dma->fq_flushes);
    st->fq_full_flushes = atomic_load(&dma->fq_full_flushes);
    st->fq_timeout_flushes = atomic_load(&dma->fq_timeout_flushes);
    if (dma->debug)
        st->debug_errors = vtio_dma_debug_errors(dma->debug);
}

void vtio_dma_debug_set_handler(struct vtio_host *h, vtio_dma_debug_fn fn, void *opaque)
{
    if (h && h->dma && h->dma->debug)
        vtio_dma_debug_handler(h->dma->debug, fn, opaque);
}

void vtio_dma_cpu_access_site(struct vtio_device *dev, const void *cpu_addr, size_t len,
                              bool write, const char *site)
{
    struct vtio_dma_debug *dbg = debug_of(dev);
    uint64_t phys;
    if (dbg && len && vtio_host_virt_to_phys(dev->host, cpu_addr, &phys) == 0)
        vtio_dma_debug_cpu_access(dbg, dev, phys, len, write, site);
}

unsigned vtio_dma_debug_check_leaks(struct vtio_device *dev)
{
    struct vtio_dma_debug *dbg = debug_of(dev);
    return dbg ? vtio_dma_debug_leaks(dbg, dev) : 0;
}

/* ---- boot and shutdown */

static void low_ram_visit(void *arg, uint64_t base, uint64_t size, const char *name)
{
    (void)name;
    uint64_t *low = arg;
    if (base < VTIO_PAGE_DMA32_LIMIT)
        *low += (base + size < VTIO_PAGE_DMA32_LIMIT ? base + size : VTIO_PAGE_DMA32_LIMIT) - base;
}

/* 64 MiB, or an eighth of the RAM below 4 GiB if that is less (whole pages). */
static uint64_t default_pool_bytes(struct vtio_host *h)
{
    uint64_t low = 0;
    vtio_mem_for_each_ram(h->mem, low_ram_visit, &low);
    uint64_t bytes = low / 8 < SWIOTLB_DEFAULT_BYTES ? low / 8 : SWIOTLB_DEFAULT_BYTES;
    return bytes & ~(VTIO_PAGE_SIZE - 1);
}

int vtio_dma_init(struct vtio_host *h)
{
    if (!h)
        return vtio_fail(-EINVAL, "dma: init without a host");
    struct vtio_dma *dma = calloc(1, sizeof(*dma));
    if (!dma)
        return vtio_fail(-ENOMEM, "dma: out of memory");
    dma->host = h;

    uint64_t bytes = h->opts.swiotlb_bytes ? h->opts.swiotlb_bytes : default_pool_bytes(h);
    if (bytes && vtio_swiotlb_create(h, bytes, &dma->swiotlb) < 0) {
        vtio_host_log(h, VTIO_LOG_WARN, "dma: no bounce pool of %llu bytes (%s): running "
                      "without one", (unsigned long long)bytes, vtio_last_error());
        dma->swiotlb = NULL;
    }
    int rc = vtio_fq_timer_create(h, &dma->fq_timer);
    if (rc == 0 && h->opts.dma_debug)
        rc = vtio_dma_debug_create(h, &dma->debug);
    if (rc < 0) {
        vtio_fq_timer_destroy(dma->fq_timer);
        if (dma->swiotlb)
            vtio_swiotlb_destroy(dma->swiotlb);
        free(dma);
        return rc;
    }
    h->dma = dma;
    return 0;
}

void vtio_dma_exit(struct vtio_host *h)
{
    if (!h || !h->dma)
        return;
    struct vtio_dma *dma = h->dma;
    if (dma->debug)
        vtio_dma_debug_destroy(dma->debug);
    vtio_fq_timer_destroy(dma->fq_timer);
    if (dma->swiotlb)
        vtio_swiotlb_destroy(dma->swiotlb);
    h->dma = NULL;
    free(dma);
}
