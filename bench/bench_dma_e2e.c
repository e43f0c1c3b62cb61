/*
 * bench_dma_e2e: the cost of protection, end to end.
 *
 * One transfer = what a driver does per I/O: map the source TO_DEVICE and
 * the destination FROM_DEVICE, let the DMA engine copy, wait for the
 * completion, unmap both.  Timed per transfer size (4 KiB .. 1 MiB) with
 * the engine's device in each kind of domain (see bench_dma_map.c), and
 * compared with the machine without an IOMMU in the same run.
 *
 * The stale window of lazy mode: after a lazy unmap the device can still
 * use the IOVA until the flush queue is flushed.  The engine copies from
 * the just-unmapped IOVA again and again until a copy faults; the time
 * and the number of copies that got through are the window (0 in strict
 * mode, up to fq_timeout_ms = 10 ms in lazy mode).
 */
#include "bench.h"

#include <vtio/device.h>
#include <vtio/dma.h>

static const uint64_t sizes[] = { 4096, 16384, 65536, 262144, 1048576 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

static void transfer(struct vtio_device *dev, struct vtio_dmae_chan *ch, uint64_t src,
                     uint64_t dst, uint64_t size)
{
    vtio_dma_addr_t s = vtio_dma_map_page(dev, src, size, VTIO_DMA_TO_DEVICE);
    vtio_dma_addr_t d = vtio_dma_map_page(dev, dst, size, VTIO_DMA_FROM_DEVICE);
    if (vtio_dma_mapping_error(dev, s) || vtio_dma_mapping_error(dev, d))
        bench_die("map");
    int64_t c = vtio_dmae_prep_copy(ch, d, s, size, 0);
    if (c < 0)
        bench_die("prep");
    vtio_dmae_issue(ch);
    if (vtio_dmae_wait(ch, c, 0, NULL) < 0)
        bench_die("copy");
    vtio_dma_unmap_page(dev, d, size, VTIO_DMA_FROM_DEVICE);
    vtio_dma_unmap_page(dev, s, size, VTIO_DMA_TO_DEVICE);
}

/* Microseconds per transfer: best of 3 rounds of enough transfers to move
 * 64 MiB (at least 200). */
static double transfer_us(struct vtio_device *dev, struct vtio_dmae_chan *ch, uint64_t src,
                          uint64_t dst, uint64_t size)
{
    unsigned n = (unsigned)(64 * VTIO_MiB / size);
    if (n < 200)
        n = 200;
    double best = 1e30;
    for (int round = 0; round < 3; round++) {
        double t0 = bench_now();
        for (unsigned i = 0; i < n; i++)
            transfer(dev, ch, src, dst, size);
        double us = (bench_now() - t0) * 1e6 / n;
        if (us < best)
            best = us;
    }
    return best;
}

/* After a lazy unmap: how long, and for how many copies, the IOVA works. */
static void stale_window(struct vtio_device *dev, struct vtio_dmae_chan *ch, uint64_t src,
                         uint64_t dst, double *ms, unsigned *copies)
{
    vtio_dma_addr_t s = vtio_dma_map_page(dev, src, VTIO_PAGE_SIZE, VTIO_DMA_TO_DEVICE);
    vtio_dma_addr_t d = vtio_dma_map_page(dev, dst, VTIO_PAGE_SIZE, VTIO_DMA_FROM_DEVICE);
    if (vtio_dma_mapping_error(dev, s) || vtio_dma_mapping_error(dev, d))
        bench_die("map");
    int64_t c = vtio_dmae_prep_copy(ch, d, s, VTIO_PAGE_SIZE, 0);
    vtio_dmae_issue(ch);
    if (c < 0 || vtio_dmae_wait(ch, c, 0, NULL) < 0)   /* the IOTLB now holds s */
        bench_die("copy");
    vtio_dma_unmap_page(dev, s, VTIO_PAGE_SIZE, VTIO_DMA_TO_DEVICE);
    double t0 = bench_now();
    *copies = 0;
    for (;;) {
        c = vtio_dmae_prep_copy(ch, d, s, VTIO_PAGE_SIZE, 0);
        vtio_dmae_issue(ch);
        if (c < 0 || vtio_dmae_wait(ch, c, 0, NULL) < 0)
            break;
        ++*copies;
        if (bench_now() - t0 > 1.0)
            break;                 /* never flushed: report a 1 s window */
    }
    *ms = (bench_now() - t0) * 1e3;
    vtio_dmae_reset(ch);
    vtio_dma_unmap_page(dev, d, VTIO_PAGE_SIZE, VTIO_DMA_FROM_DEVICE);
}

int main(void)
{
    double base[NSIZES] = { 0 };
    printf("{\"bench\": \"dma_e2e\", \"results\": [");
    for (size_t i = 0; i < BENCH_NMODES; i++) {
        struct bench_rig r;
        bench_rig_up_mode(&r, 1 * VTIO_GiB, &bench_modes[i]);
        struct vtio_device *dev = vtio_host_device(r.h, r.fn);
        if (vtio_dma_set_mask_and_coherent(dev, VTIO_DMA_BIT_MASK(64)) < 0)
            bench_die("mask");
        struct vtio_dmae_chan *ch = vtio_dmae_chan(r.dev, 0);
        uint64_t src = bench_alloc(&r, VTIO_MiB, NULL), dst = bench_alloc(&r, VTIO_MiB, NULL);
        printf("%s{\"mode\": \"%s\", \"sizes\": [", i ? ", " : "", bench_modes[i].name);
        for (size_t k = 0; k < NSIZES; k++) {
            double us = transfer_us(dev, ch, src, dst, sizes[k]);
            if (i == 0)
                base[k] = us;
            printf("%s{\"size\": %llu, \"us\": %.2f, \"gbps\": %.2f, \"ratio\": %.2f}",
                   k ? ", " : "", (unsigned long long)sizes[k], us, sizes[k] / us / 1e3,
                   base[k] / us);
            fflush(stdout);
        }
        printf("]");
        const struct bench_mode *mode = &bench_modes[i];
        if (!mode->no_iommu && mode->iommu_mode != VTIO_HOST_IOMMU_PASSTHROUGH) {
            double ms;
            unsigned copies;
            stale_window(dev, ch, src, dst, &ms, &copies);
            printf(", \"stale_window_ms\": %.3f, \"stale_copies\": %u", ms, copies);
        }
        printf("}");
        bench_rig_down(&r);
    }
    printf("]}\n");
    return 0;
}
