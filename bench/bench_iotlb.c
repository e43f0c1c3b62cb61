/*
 * IOTLB-hit translation rate of the VT-d unit: vtio_vtd_translate() of a
 * mapped 4 KiB page (legacy mode, second-level tables, translation on), on
 * 1 and 2 threads translating at once, reported as translations per second
 * (all threads together) and the 2-thread speedup.  translate_64pages
 * cycles over NPAGES different mapped pages instead (all IOTLB hits), so a
 * speed-up that only helps when the same page repeats does not count.
 * The same for the raw IOTLB lookup of one page (vtd_iotlb_lookup,
 * internal: the bench links the static library), which bounds what
 * translate can reach.
 * Targets: >= 100 M translations/s on one thread, speedup >= 1.8.
 */
#include "bench.h"

#include <vtio/vtd.h>
#include <vtio/vtd_regs.h>

#include "../src/hw/vtd/vtd_internal.h"

#include <pthread.h>
#include <stdatomic.h>

#define SID     0x0100
#define DID     1
#define IOVA    0x12345000ull
#define PAGE_PA 0x00200000ull
#define ROOT    0x00100000ull       /* root, context, then 4 table pages */
#define NPAGES  64                  /* IOVA + 4K * i -> PAGE_PA + 4K * i */
#define SECONDS 0.5

static int mem_read(void *opaque, uint64_t pa, void *buf, size_t len)
{
    return vtio_mem_dev_read(opaque, pa, buf, len);
}

static int mem_write(void *opaque, uint64_t pa, const void *buf, size_t len)
{
    return vtio_mem_dev_write(opaque, pa, buf, len);
}

/* Root -> context (DID, 4-level) -> PML4 -> PDPT -> PD -> PT -> the pages
 * (NPAGES of them, in the same PT). */
static void build_tables(struct vtio_mem *mem)
{
    uint64_t ctx = ROOT + 0x1000, t[4];
    for (int i = 0; i < 4; i++)
        t[i] = ROOT + 0x2000 + 0x1000 * (uint64_t)i;
    vtio_mem_set(mem, ROOT, 0, 0x6000);
    vtio_mem_write64(mem, ROOT + 16 * (SID >> 8), ctx | VTD_ROOT_P);
    vtio_mem_write64(mem, ctx + 16 * (SID & 0xff) + 8, VTD_MAKE(2, 2, 0) | VTD_MAKE(DID, 23, 8));
    vtio_mem_write64(mem, ctx + 16 * (SID & 0xff), t[0] | VTD_CTX_P);
    for (int level = 4; level >= 1; level--) {
        uint64_t table = t[4 - level];
        uint64_t idx = (IOVA >> VTD_LEVEL_SHIFT(level)) & 511;
        uint64_t next = level > 1 ? t[5 - level] : PAGE_PA;
        vtio_mem_write64(mem, table + 8 * idx, next | VTD_SL_R | VTD_SL_W);
    }
    _Static_assert(((IOVA >> 12) & 511) + NPAGES <= 512, "the pages share one PT");
    for (uint64_t i = 1; i < NPAGES; i++)
        vtio_mem_write64(mem, t[3] + 8 * (((IOVA >> 12) & 511) + i),
                         (PAGE_PA + 0x1000 * i) | VTD_SL_R | VTD_SL_W);
}

static struct vtio_vtd *unit_up(struct vtio_mem *mem)
{
    struct vtio_vtd_caps caps = { 0 };
    struct vtio_vtd_platform p = { .mem_read = mem_read, .mem_write = mem_write, .opaque = mem };
    struct vtio_vtd *vtd;
    if (vtio_vtd_create(&caps, &p, &vtd) < 0)
        bench_die("create the unit");
    build_tables(mem);
    vtio_vtd_reg_write(vtd, VTD_RTADDR_REG, ROOT, 8);
    vtio_vtd_reg_write(vtd, VTD_GCMD_REG, VTD_GCMD_SRTP, 4);
    vtio_vtd_reg_write(vtd, VTD_GCMD_REG, VTD_GCMD_TE, 4);
    if (!(vtio_vtd_reg_read(vtd, VTD_GSTS_REG, 4) & VTD_GSTS_TES))
        bench_die("enable translation");
    return vtd;
}

enum mode { TRANSLATE, TRANSLATE_64, RAW_LOOKUP };

struct worker {
    struct vtio_vtd *vtd;
    enum mode mode;
    pthread_barrier_t *start;
    uint64_t count;
    double seconds;
    uint64_t sink;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct vtio_vtd_req req = { .sid = SID, .addr = IOVA + 0x10 };
    struct vtio_vtd_resp resp;
    struct vtd_xlate x;
    uint64_t sink = 0, n = 0;
    /* Warm: the first translation of a page walks and fills the IOTLB. */
    for (uint64_t i = 0; i < NPAGES; i++) {
        req.addr = IOVA + 0x1000 * i + 0x10;
        if (vtio_vtd_translate(w->vtd, &req, &resp) < 0 ||
            resp.pa != PAGE_PA + 0x1000 * i + 0x10)
            bench_die("translate");
    }
    req.addr = IOVA + 0x10;
    pthread_barrier_wait(w->start);
    double t0 = bench_now(), t;
    do {
        for (int i = 0; i < 65536; i++) {
            if (w->mode == TRANSLATE) {
                vtio_vtd_translate(w->vtd, &req, &resp);
                sink += resp.pa;
            } else if (w->mode == TRANSLATE_64) {
                req.addr = IOVA + 0x1000 * (uint64_t)(i % NPAGES) + 0x10;
                vtio_vtd_translate(w->vtd, &req, &resp);
                sink += resp.pa;
            } else {
                vtd_iotlb_lookup(w->vtd, DID, VTD_NO_PASID, req.addr, &x);
                sink += x.pa;
            }
        }
        n += 65536;
    } while ((t = bench_now()) - t0 < SECONDS);
    w->count = n;
    w->seconds = t - t0;
    w->sink = sink;
    return NULL;
}

/* Translations per second of all threads together. */
static double rate(struct vtio_vtd *vtd, enum mode mode, unsigned threads)
{
    struct worker w[2];
    pthread_t th[2];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, threads);
    for (unsigned i = 0; i < threads; i++) {
        w[i] = (struct worker){ .vtd = vtd, .mode = mode, .start = &start };
        if (pthread_create(&th[i], NULL, worker_main, &w[i]) != 0)
            bench_die("thread");
    }
    double total = 0;
    for (unsigned i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += (double)w[i].count / w[i].seconds;
        if (w[i].sink == 0)
            bench_die("no translation");
    }
    pthread_barrier_destroy(&start);
    return total;
}

/* The best of a few runs: the machine is shared and noisy. */
static double best(struct vtio_vtd *vtd, enum mode mode, unsigned threads)
{
    double r = 0;
    for (int i = 0; i < 3; i++) {
        double x = rate(vtd, mode, threads);
        r = x > r ? x : r;
    }
    return r;
}

int main(void)
{
    struct vtio_mem *mem = vtio_mem_create();
    if (!mem || vtio_mem_add_ram(mem, 0, 16 * VTIO_MiB, "ram") < 0)
        bench_die("RAM");
    struct vtio_vtd *vtd = unit_up(mem);

    double t1 = best(vtd, TRANSLATE, 1), t2 = best(vtd, TRANSLATE, 2);
    double m1 = best(vtd, TRANSLATE_64, 1), m2 = best(vtd, TRANSLATE_64, 2);
    double r1 = best(vtd, RAW_LOOKUP, 1), r2 = best(vtd, RAW_LOOKUP, 2);
    struct vtio_vtd_stats st;
    vtio_vtd_get_stats(vtd, &st);

    printf("{\"bench\": \"iotlb\", \"unit\": \"lookups_per_s\", \"page\": \"4KiB\", "
           "\"translate\": {\"threads_1\": %.0f, \"threads_2\": %.0f, \"speedup_2\": %.2f}, "
           "\"translate_64pages\": {\"threads_1\": %.0f, \"threads_2\": %.0f, "
           "\"speedup_2\": %.2f}, "
           "\"raw_lookup\": {\"threads_1\": %.0f, \"threads_2\": %.0f, \"speedup_2\": %.2f}, "
           "\"iotlb_misses\": %llu, \"target_lookups_per_s\": 100000000, "
           "\"target_speedup_2\": 1.8}\n",
           t1, t2, t2 / t1, m1, m2, m2 / m1, r1, r2, r2 / r1, (unsigned long long)st.iotlb_misses);
    vtio_vtd_destroy(vtd);
    vtio_mem_destroy(mem);
    return 0;
}
