/*
 * Copy throughput of the DMA engine, 4 KiB to 64 MiB per descriptor on 1 to
 * 4 channels, against memcpy of the same bytes between the same buffers in
 * the same run.  Each round queues a batch of descriptors per channel (up to
 * 16 MiB in flight), ringing the doorbell every 8 descriptors so the engine
 * starts while the rest are prepared, and polls the last completion record; the baseline memcpy's the same batch on one CPU.
 * Target: ratio >= 0.9 for 64 KiB and up on one channel.  Run on a machine
 * without an IOMMU (the engine itself), and once more on one channel with
 * the VT-d unit present but off, to show what passing through it costs.
 */
#include "bench.h"

#include <errno.h>

#define MAX_CH 4
#define POOL (64ull << 20)

struct chan_bufs {
    uint64_t src, dst;
    void *hsrc, *hdst;
};

static double time_engine(struct bench_rig *r, struct chan_bufs *b, unsigned nch,
                          uint64_t size, unsigned batch)
{
    int64_t last[MAX_CH];
    double t0 = bench_now();
    for (unsigned c = 0; c < nch; c++) {
        struct vtio_dmae_chan *ch = vtio_dmae_chan(r->dev, c);
        for (unsigned i = 0; i < batch; i++) {
            unsigned flags = i + 1 == batch ? VTIO_DMAE_FLAG_INTR : 0;
            last[c] = vtio_dmae_prep_copy(ch, b[c].dst + i * size, b[c].src + i * size, size,
                                          flags);
            if (last[c] < 0)
                bench_die("prep");
            if (i % 8 == 7)
                vtio_dmae_issue(ch);    /* start the engine while preparing the rest */
        }
        vtio_dmae_issue(ch);
    }
    /* Poll for completion, as a poll-mode driver does: what is measured is
     * the engine, not how fast this machine wakes a sleeping thread. */
    for (unsigned c = 0; c < nch; c++) {
        int ret;
        while ((ret = vtio_dmae_poll(vtio_dmae_chan(r->dev, c), last[c], NULL)) == -EAGAIN)
            for (int i = 0; i < 64; i++)    /* stay light: the engine may share a core */
                __builtin_ia32_pause();
        if (ret < 0)
            bench_die("poll");
    }
    return bench_now() - t0;
}

static double time_memcpy(struct chan_bufs *b, unsigned nch, uint64_t size, unsigned batch)
{
    double t0 = bench_now();
    for (unsigned c = 0; c < nch; c++)
        for (unsigned i = 0; i < batch; i++)
            memcpy((char *)b[c].hdst + i * size, (char *)b[c].hsrc + i * size, size);
    return bench_now() - t0;
}

/* One series: every size on 1..max_ch channels, as JSON rows. */
static void series(const char *machine, unsigned max_ch, bool with_vtd, const char **sep)
{
    struct bench_rig r;
    bench_rig_up(&r, 2 * VTIO_GiB, max_ch, with_vtd);
    struct chan_bufs b[MAX_CH];
    for (unsigned c = 0; c < max_ch; c++) {
        b[c].src = bench_alloc(&r, POOL, &b[c].hsrc);
        b[c].dst = bench_alloc(&r, POOL, &b[c].hdst);
    }
    for (unsigned nch = 1; nch <= max_ch; nch++) {
        for (uint64_t size = 4096; size <= POOL; size *= 4) {
            unsigned batch = size >= (16u << 20) ? 1 : (unsigned)((16u << 20) / size);
            if (batch > 128)
                batch = 128;
            /* Best of several rounds, at least ~150 ms in all, for both. */
            double best_e = 1e9, best_m = 1e9, spent = 0;
            for (int round = 0; round < 30 && (round < 3 || spent < 0.15); round++) {
                double te = time_engine(&r, b, nch, size, batch);
                double tm = time_memcpy(b, nch, size, batch);
                best_e = te < best_e ? te : best_e;
                best_m = tm < best_m ? tm : best_m;
                spent += te + tm;
            }
            double bytes = (double)size * batch * nch;
            printf("%s  {\"machine\": \"%s\", \"channels\": %u, \"size\": %llu, "
                   "\"batch\": %u, \"engine_gbps\": %.3f, \"memcpy_gbps\": %.3f, "
                   "\"ratio\": %.3f}",
                   *sep, machine, nch, (unsigned long long)size, batch,
                   bytes / best_e / 1e9, bytes / best_m / 1e9, best_m / best_e);
            *sep = ",\n";
            fflush(stdout);
        }
    }
    bench_rig_down(&r);
}

int main(void)
{
    const char *sep = "";
    printf("{\"bench\": \"dma_copy\", \"unit\": \"GB/s\", \"results\": [\n");
    /* The engine itself: DMA straight to RAM. */
    series("no-iommu", MAX_CH, false, &sep);
    /* The same engine behind a VT-d unit that is present but off. */
    series("vtd-off", 1, true, &sep);
    printf("\n]}\n");
    return 0;
}
