/*
 * bench_dma_map: what one DMA-API mapping costs, per kind of domain.
 *
 * map_page + unmap_page of one 4 KiB page, and map_sg + unmap_sg of a
 * 64-page list of scattered pages, on the DMA engine's device, with the
 * device in each kind of domain:
 *   no-iommu   the machine has no IOMMU: dma-direct, nothing to do
 *   identity   IOMMU on, identity (pass-through) domain: dma-direct too
 *   strict     DMA domain: IOVA, page table, IOTLB invalidation per unmap
 *   lazy       DMA-FQ domain: the invalidation is queued and batched
 * Targets (issue 4): 4 KiB pair <= 300 ns strict, <= 150 ns lazy.  The
 * ratio column compares each with the no-IOMMU path of the same run.
 */
#include "bench.h"

#include <vtio/device.h>
#include <vtio/dma.h>

#define SG_PAGES 64


/* ns per map+unmap pair of one page: the best of 5 rounds of n pairs. */
static double pair_ns(struct vtio_device *dev, uint64_t pa, unsigned n)
{
    double best = 1e30;
    for (int round = 0; round < 5; round++) {
        uint64_t t0 = bench_now_ns();
        for (unsigned i = 0; i < n; i++) {
            vtio_dma_addr_t a = vtio_dma_map_page(dev, pa, VTIO_PAGE_SIZE,
                                                  VTIO_DMA_BIDIRECTIONAL);
            if (vtio_dma_mapping_error(dev, a))
                bench_die("map_page");
            vtio_dma_unmap_page(dev, a, VTIO_PAGE_SIZE, VTIO_DMA_BIDIRECTIONAL);
        }
        double ns = (double)(bench_now_ns() - t0) / n;
        if (ns < best)
            best = ns;
    }
    return best;
}

/* ns per map_sg+unmap_sg of SG_PAGES scattered pages (every other page). */
static double sg_ns(struct vtio_device *dev, uint64_t base, unsigned n, int *segs)
{
    struct vtio_scatterlist sg[SG_PAGES];
    double best = 1e30;
    for (int round = 0; round < 5; round++) {
        uint64_t t0 = bench_now_ns();
        for (unsigned i = 0; i < n; i++) {
            for (unsigned k = 0; k < SG_PAGES; k++)
                sg[k] = (struct vtio_scatterlist){ .phys = base + 2 * k * VTIO_PAGE_SIZE,
                                                   .length = VTIO_PAGE_SIZE };
            int nseg = vtio_dma_map_sg(dev, sg, SG_PAGES, VTIO_DMA_TO_DEVICE);
            if (nseg < 0)
                bench_die("map_sg");
            *segs = nseg;
            vtio_dma_unmap_sg(dev, sg, SG_PAGES, VTIO_DMA_TO_DEVICE);
        }
        double ns = (double)(bench_now_ns() - t0) / n;
        if (ns < best)
            best = ns;
    }
    return best;
}

int main(void)
{
    double base_pair = 0, base_sg = 0;
    printf("{\"bench\": \"dma_map\", \"results\": [");
    for (size_t i = 0; i < BENCH_NMODES; i++) {
        struct bench_rig r;
        bench_rig_up_mode(&r, 1 * VTIO_GiB, &bench_modes[i]);
        struct vtio_device *dev = vtio_host_device(r.h, r.fn);
        if (vtio_dma_set_mask_and_coherent(dev, VTIO_DMA_BIT_MASK(64)) < 0)
            bench_die("mask");
        uint64_t page = bench_alloc(&r, VTIO_PAGE_SIZE, NULL);
        uint64_t sgbuf = bench_alloc(&r, 2 * SG_PAGES * VTIO_PAGE_SIZE, NULL);
        pair_ns(dev, page, 20000);                  /* warm caches and tables */
        double pair = pair_ns(dev, page, 200000);
        int segs = 0;
        double sg = sg_ns(dev, sgbuf, 5000, &segs);
        if (i == 0)
            base_pair = pair, base_sg = sg;
        printf("%s{\"mode\": \"%s\", \"map_unmap_4k_ns\": %.1f, \"ratio_4k\": %.2f, "
               "\"map_sg_64_ns\": %.0f, \"ratio_sg\": %.2f, \"sg_segments\": %d}",
               i ? ", " : "", bench_modes[i].name, pair, pair / base_pair, sg, sg / base_sg,
               segs);
        fflush(stdout);
        bench_rig_down(&r);
    }
    printf("]}\n");
    return 0;
}
