/*
 * Shared by the benchmark programs: a machine with the DMA engine driven by
 * its host driver, a clock, statistics, and JSON output.  Each benchmark
 * prints one JSON object on stdout; bench/run.sh collects them.  Every
 * figure is compared with a baseline measured in the same run (memcpy of
 * the same bytes, the CPU loop alone) and reported as a ratio, because this
 * machine is shared and absolute numbers drift.
 */
#ifndef VTIO_BENCH_H
#define VTIO_BENCH_H

#include <vtio/dev/dma_engine.h>
#include <vtio/drv/dma_engine.h>
#include <vtio/host.h>
#include <vtio/machine.h>
#include <vtio/mem.h>
#include <vtio/page_alloc.h>
#include <vtio/pci_enum.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct bench_rig {
    struct vtio_machine *m;
    struct vtio_host *h;
    const struct vtio_pci_function *fn;
    struct vtio_dmae *dev;
};

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void bench_die(const char *what)
{
    fprintf(stderr, "bench: %s: %s\n", what, vtio_last_error());
    exit(1);
}

static inline void bench_log_quiet(void *opaque, int level, const char *msg)
{
    (void)opaque, (void)level, (void)msg;
}

/* A booted machine (with or without its IOMMU) with `channels` DMA channels
 * under the host driver, the host booted with options *o (its log is kept
 * quiet: benches fault on purpose). */
static inline void bench_rig_up_opts(struct bench_rig *r, uint64_t ram, unsigned channels,
                                     bool no_iommu, const struct vtio_host_options *o)
{
    struct vtio_machine_config mc = { .ram_size = ram, .dma_channels = channels,
                                      .no_iommu = no_iommu };
    struct vtio_host_options opts = *o;
    opts.log_fn = bench_log_quiet;
    if (vtio_machine_create(&mc, &r->m) < 0 || vtio_host_boot_opts(r->m, &opts, &r->h) < 0)
        bench_die("boot");
    r->fn = vtio_pci_find(r->h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, 0);
    struct vtio_dmae_config dc = { .channels = channels };
    if (!r->fn || vtio_dmae_probe(r->h, r->fn, &dc, &r->dev) < 0)
        bench_die("probe");
}

/* How the engine's device reaches memory, for the DMA-API benchmarks. */
struct bench_mode {
    const char *name;
    bool no_iommu;                       /* the machine has no IOMMU */
    enum vtio_host_iommu_mode iommu_mode;
};

static const struct bench_mode bench_modes[] __attribute__((unused)) = {
    { "no-iommu", true, VTIO_HOST_IOMMU_STRICT },          /* dma-direct: the baseline */
    { "identity", false, VTIO_HOST_IOMMU_PASSTHROUGH },
    { "strict", false, VTIO_HOST_IOMMU_STRICT },
    { "lazy", false, VTIO_HOST_IOMMU_LAZY },
};
#define BENCH_NMODES (sizeof(bench_modes) / sizeof(bench_modes[0]))

/* One engine with one channel, its device in the domain `mode` asks for. */
static inline void bench_rig_up_mode(struct bench_rig *r, uint64_t ram,
                                     const struct bench_mode *mode)
{
    struct vtio_host_options o = { .iommu_mode = mode->iommu_mode };
    bench_rig_up_opts(r, ram, 1, mode->no_iommu, &o);
}

/* The engine with physical addresses: with_vtd puts the VT-d unit in front
 * of it, left off (host booted with intel_iommu=off), as at power-on: every
 * access still passes through the unit. */
static inline void bench_rig_up(struct bench_rig *r, uint64_t ram, unsigned channels,
                                bool with_vtd)
{
    struct vtio_host_options o = { .iommu_off = true };
    bench_rig_up_opts(r, ram, channels, !with_vtd, &o);
}

static inline void bench_rig_down(struct bench_rig *r)
{
    vtio_dmae_remove(r->dev);
    vtio_host_shutdown(r->h);
    vtio_machine_destroy(r->m);
}

/* size bytes of machine RAM, touched, and its host address for baselines. */
static inline uint64_t bench_alloc(struct bench_rig *r, uint64_t size, void **host)
{
    uint64_t pa, span;
    if (vtio_page_alloc(r->h->pages, vtio_page_order(size), 0, &pa) < 0)
        bench_die("allocate");
    vtio_mem_set(r->h->mem, pa, 0x5a, size);
    if (host && (vtio_mem_ram_span(r->h->mem, pa, size, host, &span) < 0 || span < size))
        bench_die("host view of RAM");
    return pa;
}

static inline int bench_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of n samples (sorts them). */
static inline uint64_t bench_quantile(uint64_t *v, size_t n, double q)
{
    qsort(v, n, sizeof(*v), bench_cmp_u64);
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

#endif
