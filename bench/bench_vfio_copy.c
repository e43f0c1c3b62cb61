/*
 * bench_vfio_copy: the userspace driver against the in-host driver.
 *
 * Two DMA engines on one machine with the IOMMU on.  The first is driven
 * by the host's driver (include/vtio/drv/dma_engine.h) with buffers mapped
 * once through the DMA API in its default (DMA-FQ) domain; the second is
 * bound to vfio-pci and driven by the poll-mode userspace driver
 * (examples/vfio_dmae.h) with buffers of 2 MiB pages mapped once with
 * MAP_DMA, as DPDK maps its hugepages at start-up.  Both translate every
 * access through the same VT-d unit, with 2 MiB IOMMU pages.
 *
 * For each transfer size (64 KiB .. 16 MiB) a round queues a batch of
 * copies (up to 16 MiB in flight), rings the doorbell every 8 descriptors
 * and polls until the batch is done; the two drivers take turns (which
 * goes first alternates), best of at least 8 rounds and 0.6 s each.  Reported: GB/s of each and the
 * ratio userspace / in-host (target >= 0.95).
 */
#include "bench.h"
#include "../examples/vfio_dmae.h"

#include <vtio/device.h>
#include <vtio/dma.h>
#include <vtio/iommu.h>

#define POOL  (16ull << 20)
#define RING  256

struct host_side {
    struct vtio_dmae_chan *ch;
    vtio_dma_addr_t src, dst;
};

static void udrv_die(struct udrv *u, const char *what)
{
    fprintf(stderr, "bench: %s: %s\n", what, u->err);
    exit(1);
}

static unsigned batch_of(uint64_t size)
{
    unsigned batch = size >= POOL ? 1 : (unsigned)(POOL / size);
    return batch > 128 ? 128 : batch;
}

static double time_host(struct host_side *hs, uint64_t size, unsigned batch)
{
    double t0 = bench_now();
    int64_t last = 0;
    for (unsigned i = 0; i < batch; i++) {
        last = vtio_dmae_prep_copy(hs->ch, hs->dst + i * size, hs->src + i * size, size, 0);
        if (last < 0)
            bench_die("prep");
        if (i % 8 == 7)
            vtio_dmae_issue(hs->ch);
    }
    vtio_dmae_issue(hs->ch);
    int ret;
    while ((ret = vtio_dmae_poll(hs->ch, last, NULL)) == -EAGAIN)
        for (int i = 0; i < 64; i++)
            __builtin_ia32_pause();
    if (ret < 0)
        bench_die("poll");
    return bench_now() - t0;
}

static double time_udrv(struct udrv *u, const struct udrv_buf *src, const struct udrv_buf *dst,
                        uint64_t size, unsigned batch)
{
    double t0 = bench_now();
    for (unsigned i = 0; i < batch; i++) {
        if (udrv_copy(u, dst->iova + i * size, src->iova + i * size, size, 0, i) < 0)
            udrv_die(u, "submit");
        if (i % 8 == 7)
            udrv_doorbell(u);
    }
    udrv_doorbell(u);
    if (udrv_wait(u, 10000000000ull, NULL) < 0)
        udrv_die(u, "wait");
    return bench_now() - t0;
}

/* The in-host side: engine 0 under its driver, buffers mapped once. */
static void host_up(struct vtio_host *h, struct vtio_dmae **e, struct host_side *hs)
{
    const struct vtio_pci_function *fn =
        vtio_pci_find(h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, 0);
    struct vtio_dmae_config cfg = { .channels = 1, .ring_entries = RING };
    if (!fn || vtio_dmae_probe(h, fn, &cfg, e) < 0)
        bench_die("probe");
    struct vtio_device *dev = vtio_host_device(h, fn);
    uint64_t src, dst;
    if (vtio_page_alloc(h->pages, vtio_page_order(POOL), 0, &src) < 0 ||
        vtio_page_alloc(h->pages, vtio_page_order(POOL), 0, &dst) < 0)
        bench_die("allocate");
    vtio_mem_set(h->mem, src, 0x5a, POOL);
    vtio_mem_set(h->mem, dst, 0, POOL);
    hs->ch = vtio_dmae_chan(*e, 0);
    hs->src = vtio_dma_map_page(dev, src, POOL, VTIO_DMA_TO_DEVICE);
    hs->dst = vtio_dma_map_page(dev, dst, POOL, VTIO_DMA_FROM_DEVICE);
    if (vtio_dma_mapping_error(dev, hs->src) || vtio_dma_mapping_error(dev, hs->dst))
        bench_die("map");
}

int main(void)
{
    struct vtio_machine_config mc = { .ram_size = 2 * VTIO_GiB, .ncpus = 2, .dma_engines = 2,
                                      .dma_channels = 1 };
    struct vtio_host_options o = { .log_fn = bench_log_quiet };
    struct vtio_machine *m;
    struct vtio_host *h;
    if (vtio_machine_create(&mc, &m) < 0 || vtio_host_boot_opts(m, &o, &h) < 0)
        bench_die("boot");
    struct vtio_dmae *e0;
    struct host_side hs;
    host_up(h, &e0, &hs);

    /* The userspace side: engine 1, bound to vfio-pci, in a process. */
    const struct vtio_pci_function *fn1 =
        vtio_pci_find(h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, 1);
    struct vtio_device *dev1 = fn1 ? vtio_host_device(h, fn1) : NULL;
    struct vtio_process *p;
    if (!dev1 || vtio_vfio_bind(dev1) < 0 || vtio_process_create(h, "bench", &p) < 0)
        bench_die("bind / process");
    vtio_process_set_memlock_limit(p, 64 * VTIO_MiB);
    struct udrv u;
    struct udrv_buf src, dst;
    if (udrv_open(&u, p, vtio_iommu_group_id(vtio_iommu_group_get(dev1)),
                  vtio_device_name(dev1)) < 0 ||
        udrv_start(&u, 0, RING) < 0 ||
        udrv_dma_alloc(&u, POOL, VTIO_PROCESS_MAP_HUGE, VFIO_DMA_MAP_FLAG_READ, &src) < 0 ||
        udrv_dma_alloc(&u, POOL, VTIO_PROCESS_MAP_HUGE, VFIO_DMA_MAP_FLAG_WRITE, &dst) < 0)
        udrv_die(&u, "userspace driver");
    memset(src.va, 0x5a, POOL);
    memset(dst.va, 0, POOL);    /* first touch: the host backs process memory lazily */

    printf("{\"bench\": \"vfio_copy\", \"unit\": \"GB/s\", \"results\": [\n");
    const char *sep = "";
    for (uint64_t size = 64 * VTIO_KiB; size <= POOL; size *= 4) {
        unsigned batch = batch_of(size);
        double best_h = 1e9, best_u = 1e9, spent = 0;
        for (int round = 0; round < 80 && (round < 8 || spent < 0.6); round++) {
            /* Alternate which goes first, so neither always follows the other. */
            double th, tu;
            if (round & 1) {
                tu = time_udrv(&u, &src, &dst, size, batch);
                th = time_host(&hs, size, batch);
            } else {
                th = time_host(&hs, size, batch);
                tu = time_udrv(&u, &src, &dst, size, batch);
            }
            best_h = th < best_h ? th : best_h;
            best_u = tu < best_u ? tu : best_u;
            spent += th + tu;
        }
        double bytes = (double)size * batch;
        printf("%s  {\"size\": %llu, \"batch\": %u, \"host_gbps\": %.3f, \"vfio_gbps\": %.3f, "
               "\"ratio\": %.3f}", sep, (unsigned long long)size, batch, bytes / best_h / 1e9,
               bytes / best_u / 1e9, best_h / best_u);
        sep = ",\n";
        fflush(stdout);
    }
    printf("\n]}\n");
    if (memcmp(src.va, dst.va, POOL) != 0)
        bench_die("userspace copies differ from their source");

    udrv_dma_free(&u, &src);
    udrv_dma_free(&u, &dst);
    udrv_close(&u);
    vtio_process_destroy(p);
    vtio_vfio_unbind(dev1);
    struct vtio_device *dev0 = vtio_host_device(h, vtio_dmae_pci(e0));
    vtio_dma_unmap_page(dev0, hs.src, POOL, VTIO_DMA_TO_DEVICE);
    vtio_dma_unmap_page(dev0, hs.dst, POOL, VTIO_DMA_FROM_DEVICE);
    vtio_dmae_remove(e0);
    vtio_host_shutdown(h);
    vtio_machine_destroy(m);
    return 0;
}
