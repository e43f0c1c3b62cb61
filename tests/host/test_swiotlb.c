/*
 * Tests of the bounce-buffer pool (src/host/dma/swiotlb.c) on a booted host
 * with 6 GiB of RAM, so that buffers above 4 GiB are at hand: what is
 * copied in which direction at map, sync and unmap, padding and alignment,
 * a full pool and bad arguments, and threads bouncing at once.
 */
#include "harness.h"

#include <vtio/host.h>
#include <vtio/machine.h>
#include <vtio/mem.h>
#include <vtio/page_alloc.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "host/dma/dma_priv.h"

#define SLOT VTIO_SWIOTLB_SLOT_SIZE
#define RUN_MAX VTIO_SWIOTLB_MAX_MAP

static const enum vtio_dma_direction dirs[] = { VTIO_DMA_TO_DEVICE, VTIO_DMA_FROM_DEVICE,
                                                VTIO_DMA_BIDIRECTIONAL };

/* ---- the host log, captured */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_log[512];
static unsigned n_err_logs;

static void capture_log(void *opaque, int level, const char *msg)
{
    (void)opaque;
    pthread_mutex_lock(&log_lock);
    if (level <= VTIO_LOG_ERR) {
        snprintf(last_log, sizeof(last_log), "%s", msg);
        n_err_logs++;
    }
    pthread_mutex_unlock(&log_lock);
}

static unsigned err_logs(void)
{
    pthread_mutex_lock(&log_lock);
    unsigned n = n_err_logs;
    pthread_mutex_unlock(&log_lock);
    return n;
}

/* ---- a host with a pool of its own */

struct rig {
    struct vtio_machine *m;
    struct vtio_host *h;
    struct vtio_swiotlb *p;
};

static void up_cpus(struct rig *r, uint64_t pool_bytes, unsigned ncpus)
{
    struct vtio_machine_config mc = { .ram_size = 6 * VTIO_GiB, .ncpus = ncpus };
    CHECK_OK(vtio_machine_create(&mc, &r->m));
    struct vtio_host_options o = { .iommu_off = true, .log_fn = capture_log };
    CHECK_OK(vtio_host_boot_opts(r->m, &o, &r->h));
    CHECK_OK(vtio_swiotlb_create(r->h, pool_bytes, &r->p));
}

/* Four CPUs: a pool of n segments has min(4, n) areas. */
static void up(struct rig *r, uint64_t pool_bytes)
{
    up_cpus(r, pool_bytes, 4);
}

static void down(struct rig *r)
{
    vtio_swiotlb_destroy(r->p);
    vtio_host_shutdown(r->h);
    vtio_machine_destroy(r->m);
}

static uint64_t used(struct rig *r)
{
    uint64_t total, u;
    vtio_swiotlb_usage(r->p, &total, &u);
    return u;
}

static uint8_t *va(struct rig *r, uint64_t pa)
{
    uint8_t *v = vtio_host_phys_to_virt(r->h, pa);
    CHECK(v != NULL);
    return v;
}

/* A block of RAM above 4 GiB (the ordinary zone comes first). */
static uint64_t high_buffer(struct rig *r, unsigned order)
{
    uint64_t pa;
    CHECK_OK(vtio_page_alloc(r->h->pages, order, 0, &pa));
    CHECK_GE(pa, VTIO_PAGE_DMA32_LIMIT);
    return pa;
}

/* Fills the whole pool with 0xAA, as if earlier users had left data. */
static void dirty_pool(struct rig *r)
{
    uint64_t total;
    vtio_swiotlb_usage(r->p, &total, NULL);
    uint64_t base = vtio_swiotlb_end(r->p) + 1 - total;
    memset(va(r, base), 0xAA, total);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static bool copies_back(enum vtio_dma_direction d)
{
    return d == VTIO_DMA_FROM_DEVICE || d == VTIO_DMA_BIDIRECTIONAL;
}

static bool copies_in_on_sync(enum vtio_dma_direction d)
{
    return d == VTIO_DMA_TO_DEVICE || d == VTIO_DMA_BIDIRECTIONAL;
}

/* ------------------------------------------------------------------------ */

static void t_pool(void)
{
    struct rig r;
    up(&r, VTIO_MiB + 12345);
    uint64_t total, u;
    vtio_swiotlb_usage(r.p, &total, &u);
    CHECK_EQ(total, VTIO_MiB);                 /* the power of two below */
    CHECK_EQ(u, 0);
    uint64_t end = vtio_swiotlb_end(r.p), base = end + 1 - total;
    CHECK_LT(end, VTIO_PAGE_DMA32_LIMIT);
    CHECK_EQ(base % total, 0);
    CHECK(vtio_swiotlb_owns(r.p, base));
    CHECK(vtio_swiotlb_owns(r.p, end));
    CHECK(!vtio_swiotlb_owns(r.p, base - 1));
    CHECK(!vtio_swiotlb_owns(r.p, end + 1));

    /* Too small a size still gives one whole segment. */
    struct vtio_swiotlb *small;
    CHECK_OK(vtio_swiotlb_create(r.h, 1000, &small));
    vtio_swiotlb_usage(small, &total, NULL);
    CHECK_EQ(total, RUN_MAX);
    vtio_swiotlb_destroy(small);
    down(&r);
}

static void t_map_unmap_directions(void)
{
    struct rig r;
    up(&r, 4 * VTIO_MiB);
    uint64_t page = high_buffer(&r, 1);        /* 8 KiB */
    enum { OFF = 100, LEN = 3000 };
    uint8_t guard[8192], data[LEN], dev[LEN];
    vtio_test_fill(data, LEN, 1);
    vtio_test_fill(dev, LEN, 2);
    for (unsigned k = 0; k < 3; k++) {
        enum vtio_dma_direction d = dirs[k];
        vtio_test_fill(guard, sizeof(guard), 3 + k);
        memcpy(va(&r, page), guard, sizeof(guard));
        memcpy(va(&r, page + OFF), data, LEN);
        dirty_pool(&r);

        uint64_t tlb;
        CHECK_OK(vtio_swiotlb_map(r.p, page + OFF, LEN, 0, d, &tlb));
        CHECK(vtio_swiotlb_owns(r.p, tlb));
        CHECK_EQ(tlb % SLOT, 0);
        CHECK_EQ(used(&r), 2 * SLOT);
        CHECKF(memcmp(va(&r, tlb), data, LEN) == 0, "copied in for direction %d", (int)d);
        CHECKF(all_zero(va(&r, tlb) + LEN, 2 * SLOT - LEN), "padding zeroed, direction %d",
               (int)d);

        memcpy(va(&r, tlb), dev, LEN);         /* the device writes */
        vtio_swiotlb_unmap(r.p, tlb, LEN, d);
        CHECK_EQ(used(&r), 0);
        CHECK_MEM_EQ(va(&r, page + OFF), copies_back(d) ? dev : data, LEN);
        CHECK_MEM_EQ(va(&r, page), guard, OFF);                     /* nothing around it */
        CHECK_MEM_EQ(va(&r, page + OFF + LEN), guard + OFF + LEN, sizeof(guard) - OFF - LEN);
    }
    down(&r);
}

static void t_sync_sub_ranges(void)
{
    struct rig r;
    up(&r, 4 * VTIO_MiB);
    uint64_t buf = high_buffer(&r, 1);
    enum { LEN = 8192 };
    uint8_t orig[LEN], dev[2000], cpu[1000], want[LEN];
    vtio_test_fill(dev, sizeof(dev), 20);
    vtio_test_fill(cpu, sizeof(cpu), 21);
    for (unsigned k = 0; k < 3; k++) {
        enum vtio_dma_direction d = dirs[k];
        vtio_test_fill(orig, LEN, 22 + k);
        memcpy(va(&r, buf), orig, LEN);
        uint64_t tlb;
        CHECK_OK(vtio_swiotlb_map(r.p, buf, LEN, 0, d, &tlb));

        /* The device writes [1000, 3000), across a slot boundary; the CPU
         * takes it back. */
        memcpy(va(&r, tlb + 1000), dev, sizeof(dev));
        vtio_swiotlb_sync(r.p, tlb + 1000, sizeof(dev), d, false);
        memcpy(want, orig, LEN);
        if (copies_back(d))
            memcpy(want + 1000, dev, sizeof(dev));
        CHECK_MEM_EQ(va(&r, buf), want, LEN);

        /* The CPU writes [5000, 6000) of its buffer and gives it to the device. */
        uint8_t before[LEN];
        memcpy(before, va(&r, tlb), LEN);
        memcpy(va(&r, buf + 5000), cpu, sizeof(cpu));
        vtio_swiotlb_sync(r.p, tlb + 5000, sizeof(cpu), d, true);
        memcpy(want, before, LEN);
        if (copies_in_on_sync(d))
            memcpy(want + 5000, cpu, sizeof(cpu));
        CHECK_MEM_EQ(va(&r, tlb), want, LEN);

        vtio_swiotlb_unmap(r.p, tlb, LEN, d);
    }
    CHECK_EQ(used(&r), 0);
    down(&r);
}

static void t_alignment(void)
{
    struct rig r;
    up(&r, 4 * VTIO_MiB);
    uint64_t buf = high_buffer(&r, 2);
    uint8_t data[5000];
    vtio_test_fill(data, sizeof(data), 30);
    memcpy(va(&r, buf), data, sizeof(data));
    dirty_pool(&r);
    uint64_t small[8], aligned[8], big;
    for (unsigned i = 0; i < 8; i++) {
        /* A 2 KiB mapping first, so that the next free slot is mid-page. */
        CHECK_OK(vtio_swiotlb_map(r.p, buf, 100, 0, VTIO_DMA_TO_DEVICE, &small[i]));
        CHECK_OK(vtio_swiotlb_map(r.p, buf, 100, 4095, VTIO_DMA_TO_DEVICE, &aligned[i]));
        CHECK_EQ(aligned[i] % 4096, 0);
        CHECK_MEM_EQ(va(&r, aligned[i]), data, 100);
        CHECK(all_zero(va(&r, aligned[i]) + 100, 4096 - 100));   /* the page is its own */
    }
    CHECK_OK(vtio_swiotlb_map(r.p, buf, 5000, 4095, VTIO_DMA_BIDIRECTIONAL, &big));
    CHECK_EQ(big % 4096, 0);
    CHECK_MEM_EQ(va(&r, big), data, 5000);
    CHECK(all_zero(va(&r, big) + 5000, 8192 - 5000));
    CHECK_EQ(used(&r), 8 * SLOT + 8 * 4096 + 8192);
    for (unsigned i = 0; i < 8; i++) {
        vtio_swiotlb_unmap(r.p, small[i], 100, VTIO_DMA_TO_DEVICE);
        vtio_swiotlb_unmap(r.p, aligned[i], 100, VTIO_DMA_TO_DEVICE);
    }
    vtio_swiotlb_unmap(r.p, big, 5000, VTIO_DMA_BIDIRECTIONAL);
    CHECK_EQ(used(&r), 0);
    down(&r);
}

static void t_full(void)
{
    struct rig r;
    up(&r, VTIO_MiB);                          /* 512 slots, 4 segments */
    uint64_t buf = high_buffer(&r, 6);         /* 256 KiB */
    uint64_t tlb[4], t;
    /* Every segment is found, whatever area this thread starts in. */
    for (unsigned i = 0; i < 4; i++)
        CHECK_OK(vtio_swiotlb_map(r.p, buf, RUN_MAX, 0, VTIO_DMA_TO_DEVICE, &tlb[i]));
    CHECK_EQ(used(&r), VTIO_MiB);

    unsigned logs = err_logs();
    CHECK_ERR(vtio_swiotlb_map(r.p, buf, RUN_MAX, 0, VTIO_DMA_TO_DEVICE, &t), -ENOMEM);
    const char *want = "swiotlb buffer is full (sz: 262144 bytes), total 512 (slots), "
                       "used 512 (slots)";
    CHECKF(strcmp(vtio_last_error(), want) == 0, "last error: %s", vtio_last_error());
    CHECK_EQ(err_logs(), logs + 1);
    pthread_mutex_lock(&log_lock);
    bool logged = strcmp(last_log, want) == 0;
    pthread_mutex_unlock(&log_lock);
    CHECKF(logged, "log: %s", last_log);
    CHECK_ERR(vtio_swiotlb_map(r.p, buf, 1, 0, VTIO_DMA_FROM_DEVICE, &t), -ENOMEM);
    CHECK_EQ(used(&r), VTIO_MiB);              /* failures took nothing */

    /* One segment back: small mappings fill it, then it is full again. */
    vtio_swiotlb_unmap(r.p, tlb[2], RUN_MAX, VTIO_DMA_TO_DEVICE);
    uint64_t pieces[64];
    for (unsigned i = 0; i < 64; i++)
        CHECK_OK(vtio_swiotlb_map(r.p, buf, 4096, 0, VTIO_DMA_TO_DEVICE, &pieces[i]));
    CHECK_ERR(vtio_swiotlb_map(r.p, buf, 1, 0, VTIO_DMA_TO_DEVICE, &t), -ENOMEM);
    /* Two free neighbours make room for a run of two. */
    vtio_swiotlb_unmap(r.p, pieces[10], 4096, VTIO_DMA_TO_DEVICE);
    CHECK_ERR(vtio_swiotlb_map(r.p, buf, 4097, 0, VTIO_DMA_TO_DEVICE, &t), -ENOMEM);
    CHECK_OK(vtio_swiotlb_map(r.p, buf, 4096, 0, VTIO_DMA_TO_DEVICE, &pieces[10]));
    for (unsigned i = 0; i < 64; i++)
        vtio_swiotlb_unmap(r.p, pieces[i], 4096, VTIO_DMA_TO_DEVICE);
    CHECK_OK(vtio_swiotlb_map(r.p, buf, RUN_MAX, 0, VTIO_DMA_TO_DEVICE, &tlb[2]));
    for (unsigned i = 0; i < 4; i++)
        vtio_swiotlb_unmap(r.p, tlb[i], RUN_MAX, VTIO_DMA_TO_DEVICE);
    CHECK_EQ(used(&r), 0);
    down(&r);
}

static void t_bad_arguments(void)
{
    struct rig r;
    up(&r, VTIO_MiB);
    uint64_t buf = high_buffer(&r, 6), tlb = 0x1234;
    CHECK_ERR(vtio_swiotlb_map(r.p, buf, 0, 0, VTIO_DMA_TO_DEVICE, &tlb), -EINVAL);
    CHECK_ERR(vtio_swiotlb_map(r.p, buf, RUN_MAX + 1, 0, VTIO_DMA_TO_DEVICE, &tlb), -EINVAL);
    CHECK_ERR(vtio_swiotlb_map(r.p, buf, 100, 4094, VTIO_DMA_TO_DEVICE, &tlb), -EINVAL);
    CHECK_ERR(vtio_swiotlb_map(r.p, buf, 100, 0, VTIO_DMA_NONE, &tlb), -EINVAL);
    CHECK_ERR(vtio_swiotlb_map(r.p, ~0ull - 10, 100, 0, VTIO_DMA_TO_DEVICE, &tlb), -EINVAL);
    CHECK_EQ(tlb, 0x1234);
    CHECK_EQ(used(&r), 0);

    /* The largest mapping fits; unmaps that name no mapping change nothing. */
    CHECK_OK(vtio_swiotlb_map(r.p, buf, RUN_MAX, 0, VTIO_DMA_FROM_DEVICE, &tlb));
    unsigned logs = err_logs();
    vtio_swiotlb_unmap(r.p, tlb + SLOT, 100, VTIO_DMA_FROM_DEVICE);  /* inside, not a start */
    vtio_swiotlb_unmap(r.p, buf, 100, VTIO_DMA_FROM_DEVICE);         /* not in the pool */
    CHECK_EQ(used(&r), RUN_MAX);
    CHECK_EQ(err_logs(), logs + 2);
    vtio_swiotlb_unmap(r.p, tlb, RUN_MAX, VTIO_DMA_FROM_DEVICE);
    vtio_swiotlb_unmap(r.p, tlb, RUN_MAX, VTIO_DMA_FROM_DEVICE);     /* twice */
    CHECK_EQ(used(&r), 0);
    CHECK_EQ(err_logs(), logs + 3);

    /* A sync that runs past its mapping copies only the mapping. */
    uint8_t orig[8192], dev[8192];
    vtio_test_fill(orig, sizeof(orig), 40);
    vtio_test_fill(dev, sizeof(dev), 41);
    memcpy(va(&r, buf), orig, sizeof(orig));
    CHECK_OK(vtio_swiotlb_map(r.p, buf, 3000, 0, VTIO_DMA_FROM_DEVICE, &tlb));
    memcpy(va(&r, tlb), dev, 4096);
    vtio_swiotlb_sync(r.p, tlb, 8192, VTIO_DMA_FROM_DEVICE, false);
    CHECK_MEM_EQ(va(&r, buf), dev, 3000);
    CHECK_MEM_EQ(va(&r, buf + 3000), orig + 3000, sizeof(orig) - 3000);
    CHECK_EQ(err_logs(), logs + 4);
    vtio_swiotlb_unmap(r.p, tlb, 3000, VTIO_DMA_FROM_DEVICE);
    CHECK_EQ(used(&r), 0);
    down(&r);
}

/* ---- threads */

#define NTHREADS 4
#define ITERS    600
#define MAXLEN   (64 * 1024)

struct worker {
    struct rig *r;
    uint64_t buf;               /* 64 KiB above 4 GiB, this thread's */
    unsigned seed;
    unsigned bad_in, bad_back, full;
};

static void *bounce_loop(void *arg)
{
    struct worker *w = arg;
    uint64_t rnd = w->seed;
    uint8_t *orig = vtio_host_phys_to_virt(w->r->h, w->buf);
    static __thread uint8_t expect[MAXLEN], dev[MAXLEN];
    for (unsigned it = 0; it < ITERS; it++) {
        size_t len = 1 + vtio_test_rand(&rnd) % MAXLEN;
        enum vtio_dma_direction d = dirs[vtio_test_rand(&rnd) % 3];
        uint64_t mask = vtio_test_rand(&rnd) % 2 ? 4095 : 0;
        vtio_test_fill(orig, len, vtio_test_rand(&rnd));
        memcpy(expect, orig, len);
        uint64_t tlb;
        int rc;
        while ((rc = vtio_swiotlb_map(w->r->p, w->buf, len, mask, d, &tlb)) == -ENOMEM) {
            w->full++;
            sched_yield();
        }
        if (rc < 0 || memcmp(vtio_host_phys_to_virt(w->r->h, tlb), expect, len) != 0 ||
            (mask && tlb % 4096)) {
            w->bad_in++;
            if (rc < 0)
                continue;
        }
        vtio_test_fill(dev, len, vtio_test_rand(&rnd));
        memcpy(vtio_host_phys_to_virt(w->r->h, tlb), dev, len);
        vtio_swiotlb_unmap(w->r->p, tlb, len, d);
        if (memcmp(orig, copies_back(d) ? dev : expect, len) != 0)
            w->bad_back++;
    }
    return NULL;
}

static void t_threads(void)
{
    struct rig r;
    /* Two CPUs, so two areas for four threads; a small pool, so that
     * threads meet a full one and spill into each other's area. */
    up_cpus(&r, VTIO_MiB, 2);
    struct worker w[NTHREADS];
    pthread_t t[NTHREADS];
    for (unsigned i = 0; i < NTHREADS; i++) {
        w[i] = (struct worker){ .r = &r, .buf = high_buffer(&r, 4), .seed = 100 + i };
        CHECK_EQ(pthread_create(&t[i], NULL, bounce_loop, &w[i]), 0);
    }
    for (unsigned i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    for (unsigned i = 0; i < NTHREADS; i++) {
        CHECKF(w[i].bad_in == 0, "thread %u: %u maps copied in wrongly", i, w[i].bad_in);
        CHECKF(w[i].bad_back == 0, "thread %u: %u unmaps copied back wrongly", i,
               w[i].bad_back);
    }
    CHECK_EQ(used(&r), 0);
    down(&r);
}

static const struct vtio_test tests[] = {
    { "pool", "the pool is one power-of-two block below 4 GiB, aligned to its size, "
      "at least one segment; owns and end bound it exactly", t_pool },
    { "map_unmap_directions", "map copies the original in for every direction and zeroes "
      "the padding; unmap copies back only FROM_DEVICE and BIDIRECTIONAL, touching "
      "nothing around the buffer", t_map_unmap_directions },
    { "sync_sub_ranges", "sync of a sub-range crossing a slot copies exactly that range, "
      "to the CPU for FROM_DEVICE/BIDIRECTIONAL, to the device for TO_DEVICE/"
      "BIDIRECTIONAL", t_sync_sub_ranges },
    { "alignment", "with align_mask 4095 runs start on a page and the rest of their pages "
      "is zero, among 2 KiB runs", t_alignment },
    { "full", "a full pool fails with -ENOMEM and Linux's message (log and last error), "
      "takes nothing, and every area is searched before it says so", t_full },
    { "bad_arguments", "size 0, over 256 KiB, a bad mask or direction, a wrapping buffer "
      "are -EINVAL; unmaps of non-mappings and oversized syncs change nothing outside the "
      "mapping and are logged", t_bad_arguments },
    { "threads", "four threads bouncing random sizes, directions and alignments through a "
      "small pool see their own data and leave the pool empty", t_threads },
};

VTIO_TEST_MAIN(tests)
