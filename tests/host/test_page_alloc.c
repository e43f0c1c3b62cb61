/*
 * Tests of the physical page allocator (include/vtio/page_alloc.h), on
 * address spaces built directly with vtio_mem (no PCI needed).
 */
#include <vtio/mem.h>
#include <vtio/page_alloc.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "harness.h"

#define MiB VTIO_MiB
#define GiB VTIO_GiB

static struct vtio_mem *mk_mem(uint64_t low, uint64_t high)
{
    struct vtio_mem *m = vtio_mem_create();
    CHECK(m);
    if (low)
        CHECK_OK(vtio_mem_add_ram(m, 0, low, "low"));
    if (high)
        CHECK_OK(vtio_mem_add_ram(m, 4 * GiB, high, "high"));
    return m;
}

static void check_sum(struct vtio_page_alloc *pa)
{
    struct vtio_page_alloc_stats st;
    vtio_page_alloc_get_stats(pa, &st);
    CHECK_EQ(st.total_bytes, st.free_bytes + st.allocated_bytes + st.reserved_bytes);
    uint64_t blocks = 0;
    for (unsigned k = 0; k <= VTIO_PAGE_MAX_ORDER; k++)
        blocks += st.free_blocks[k] * (VTIO_PAGE_SIZE << k);
    CHECK_EQ(blocks, st.free_bytes);
}

static void t_every_order(void)
{
    struct vtio_mem *m = mk_mem(2 * GiB, 0);
    struct vtio_page_alloc *pa = vtio_page_alloc_create(m);
    CHECK(pa);
    CHECK_EQ(vtio_page_alloc_total_bytes(pa), 2 * GiB);
    CHECK_EQ(vtio_page_alloc_free_bytes(pa), 2 * GiB);
    for (unsigned k = 0; k <= VTIO_PAGE_MAX_ORDER; k++) {
        uint64_t a, size = VTIO_PAGE_SIZE << k;
        CHECK_OK(vtio_page_alloc(pa, k, 0, &a));
        CHECK_EQ(a & (size - 1), 0);
        CHECK(vtio_mem_is_ram(m, a, size));
        CHECK_EQ(vtio_page_alloc_free_bytes(pa), 2 * GiB - size);
        check_sum(pa);
        CHECK_OK(vtio_page_free(pa, a, k));
        CHECK_EQ(vtio_page_alloc_free_bytes(pa), 2 * GiB);
    }
    uint64_t a;
    CHECK_ERR(vtio_page_alloc(pa, VTIO_PAGE_MAX_ORDER + 1, 0, &a), -EINVAL);
    CHECK_ERR(vtio_page_alloc(pa, 0, 0x100, &a), -EINVAL);
    CHECK_EQ(vtio_page_order(1), 0);
    CHECK_EQ(vtio_page_order(4096), 0);
    CHECK_EQ(vtio_page_order(4097), 1);
    CHECK_EQ(vtio_page_order(2 * MiB), VTIO_PAGE_ORDER_2M);
    CHECK_EQ(vtio_page_order(GiB), VTIO_PAGE_MAX_ORDER);
    CHECK_EQ(vtio_page_order(GiB + 1), VTIO_PAGE_MAX_ORDER + 1);
    vtio_page_alloc_destroy(pa);
    vtio_mem_destroy(m);
}

struct blk {
    uint64_t addr;
    unsigned order;
};

static int by_addr(const void *a, const void *b)
{
    const struct blk *x = a, *y = b;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static void t_no_overlap(void)
{
    struct vtio_mem *m = mk_mem(64 * MiB, 64 * MiB);
    struct vtio_page_alloc *pa = vtio_page_alloc_create(m);
    CHECK(pa);
    enum { N = 3000 };
    struct blk *b = calloc(N, sizeof(*b));
    uint64_t seed = 7, used = 0;
    unsigned n = 0;
    for (; n < N; n++) {
        unsigned k = (unsigned)(vtio_test_rand(&seed) % 6);
        int rc = vtio_page_alloc(pa, k, (n & 1) ? VTIO_PAGE_DMA32 : 0, &b[n].addr);
        if (rc == -ENOMEM)
            break;
        CHECK_OK(rc);
        b[n].order = k;
        used += VTIO_PAGE_SIZE << k;
        CHECK(vtio_mem_is_ram(m, b[n].addr, VTIO_PAGE_SIZE << k));
        CHECK_EQ(b[n].addr & ((VTIO_PAGE_SIZE << k) - 1), 0);
    }
    CHECK_GT(n, 100);
    check_sum(pa);
    CHECK_EQ(vtio_page_alloc_free_bytes(pa), 128 * MiB - used);
    qsort(b, n, sizeof(*b), by_addr);
    for (unsigned i = 1; i < n; i++)
        CHECKF(b[i - 1].addr + (VTIO_PAGE_SIZE << b[i - 1].order) <= b[i].addr,
               "blocks %#llx (order %u) and %#llx overlap",
               (unsigned long long)b[i - 1].addr, b[i - 1].order,
               (unsigned long long)b[i].addr);
    for (unsigned i = 0; i < n; i++)
        CHECK_OK(vtio_page_free(pa, b[i].addr, b[i].order));
    CHECK_EQ(vtio_page_alloc_free_bytes(pa), 128 * MiB);
    free(b);
    vtio_page_alloc_destroy(pa);
    vtio_mem_destroy(m);
}

static void t_coalesce(void)
{
    struct vtio_mem *m = mk_mem(64 * MiB, 0);
    struct vtio_page_alloc *pa = vtio_page_alloc_create(m);
    CHECK(pa);
    struct vtio_page_alloc_stats st;
    vtio_page_alloc_get_stats(pa, &st);
    CHECK_EQ(st.free_blocks[14], 1);      /* 64 MiB at 0: one order-14 block */
    unsigned npages = (unsigned)(64 * MiB / VTIO_PAGE_SIZE);
    uint64_t *a = calloc(npages + 1, sizeof(*a));
    unsigned n = 0;
    while (vtio_page_alloc(pa, 0, 0, &a[n]) == 0)
        n++;
    CHECK_EQ(n, npages);
    CHECK_EQ(vtio_page_alloc_free_bytes(pa), 0);
    uint64_t seed = 99;                   /* free in a random order */
    for (unsigned i = n - 1; i > 0; i--) {
        unsigned j = (unsigned)(vtio_test_rand(&seed) % (i + 1));
        uint64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
    for (unsigned i = 0; i < n; i++)
        CHECK_OK(vtio_page_free(pa, a[i], 0));
    vtio_page_alloc_get_stats(pa, &st);
    CHECK_EQ(st.free_bytes, 64 * MiB);
    CHECK_EQ(st.free_blocks[14], 1);
    for (unsigned k = 0; k < 14; k++)
        CHECK_EQ(st.free_blocks[k], 0);
    free(a);
    vtio_page_alloc_destroy(pa);
    vtio_mem_destroy(m);
}

static void t_dma32(void)
{
    struct vtio_mem *m = mk_mem(16 * MiB, 16 * MiB);
    struct vtio_page_alloc *pa = vtio_page_alloc_create(m);
    CHECK(pa);
    uint64_t a;
    CHECK_OK(vtio_page_alloc(pa, 0, 0, &a));
    CHECK_GE(a, 4 * GiB);                 /* ordinary: NORMAL zone first */
    CHECK_OK(vtio_page_free(pa, a, 0));
    unsigned n = 0;
    while (vtio_page_alloc(pa, 8, VTIO_PAGE_DMA32, &a) == 0) {
        CHECK_LT(a + (1 * MiB), 4 * GiB + 1);
        n++;
    }
    CHECK_EQ(n, 16);                      /* 16 MiB of 1 MiB blocks */
    CHECK_ERR(vtio_page_alloc(pa, 0, VTIO_PAGE_DMA32, &a), -ENOMEM);
    struct vtio_page_alloc_stats st;
    vtio_page_alloc_get_stats(pa, &st);
    CHECK_EQ(st.free_dma32_bytes, 0);
    CHECK_EQ(st.free_bytes, 16 * MiB);
    CHECK_OK(vtio_page_alloc(pa, 0, 0, &a));   /* NORMAL still has room */
    CHECK_GE(a, 4 * GiB);
    vtio_page_alloc_destroy(pa);
    vtio_mem_destroy(m);
}

static void t_fallback(void)
{
    struct vtio_mem *m = mk_mem(8 * MiB, 0);
    struct vtio_page_alloc *pa = vtio_page_alloc_create(m);
    CHECK(pa);
    uint64_t a;
    CHECK_OK(vtio_page_alloc(pa, 3, 0, &a));   /* no NORMAL zone: DMA32 serves */
    CHECK_LT(a, 8 * MiB);
    vtio_page_alloc_destroy(pa);
    vtio_mem_destroy(m);
}

static void t_zero(void)
{
    struct vtio_mem *m = mk_mem(4 * MiB, 0);
    struct vtio_page_alloc *pa = vtio_page_alloc_create(m);
    CHECK(pa);
    vtio_mem_set(m, 0, 0xa5, 4 * MiB);
    uint64_t a;
    CHECK_OK(vtio_page_alloc(pa, 4, 0, &a));
    CHECK_EQ(vtio_mem_read64(m, a + 8), 0xa5a5a5a5a5a5a5a5ull);   /* not zeroed */
    CHECK_OK(vtio_page_free(pa, a, 4));
    CHECK_OK(vtio_page_alloc(pa, 4, VTIO_PAGE_ZERO, &a));
    static uint8_t buf[16 * 4096], zero[16 * 4096];
    vtio_mem_read(m, a, buf, sizeof(buf));
    CHECK_MEM_EQ(buf, zero, sizeof(buf));
    CHECK_EQ(vtio_mem_read8(m, a + sizeof(buf)), 0xa5);      /* nothing beyond */
    vtio_page_alloc_destroy(pa);
    vtio_mem_destroy(m);
}

static void t_exhaust(void)
{
    struct vtio_mem *m = mk_mem(8 * MiB, 0);
    struct vtio_page_alloc *pa = vtio_page_alloc_create(m);
    CHECK(pa);
    uint64_t a, b;
    CHECK_ERR(vtio_page_alloc(pa, 12, 0, &a), -ENOMEM);      /* 16 MiB > RAM */
    CHECK_OK(vtio_page_alloc(pa, 11, 0, &a));                /* all 8 MiB */
    CHECK_EQ(a, 0);
    for (unsigned k = 0; k <= VTIO_PAGE_MAX_ORDER; k++)
        CHECK_ERR(vtio_page_alloc(pa, k, 0, &b), -ENOMEM);
    check_sum(pa);
    CHECK_OK(vtio_page_free(pa, a, 11));
    CHECK_OK(vtio_page_alloc(pa, 0, 0, &b));
    vtio_page_alloc_destroy(pa);
    vtio_mem_destroy(m);
}

static void same_stats(struct vtio_page_alloc *pa, const struct vtio_page_alloc_stats *before)
{
    struct vtio_page_alloc_stats st;
    vtio_page_alloc_get_stats(pa, &st);
    CHECK_MEM_EQ(&st, before, sizeof(st));
}

static void t_bad_free(void)
{
    struct vtio_mem *m = mk_mem(32 * MiB, 0);
    struct vtio_page_alloc *pa = vtio_page_alloc_create(m);
    CHECK(pa);
    CHECK_OK(vtio_page_alloc_reserve(pa, 0, MiB));
    uint64_t a, b;
    CHECK_OK(vtio_page_alloc(pa, 2, 0, &a));
    CHECK_OK(vtio_page_alloc(pa, 0, 0, &b));
    CHECK_OK(vtio_page_free(pa, b, 0));                     /* b is free now */
    struct vtio_page_alloc_stats st;
    vtio_page_alloc_get_stats(pa, &st);

    CHECK_ERR(vtio_page_free(pa, a + 4096, 2), -EINVAL);    /* misaligned */
    CHECK_ERR(vtio_page_free(pa, a + 100, 0), -EINVAL);     /* not a page */
    CHECK_ERR(vtio_page_free(pa, a + 4096, 0), -EINVAL);    /* inside a block */
    CHECK_ERR(vtio_page_free(pa, a, 1), -EINVAL);           /* wrong order */
    CHECK_ERR(vtio_page_free(pa, a, 3), -EINVAL);
    CHECK_ERR(vtio_page_free(pa, a, VTIO_PAGE_MAX_ORDER + 1), -EINVAL);
    CHECK_ERR(vtio_page_free(pa, b, 0), -EINVAL);           /* already free */
    CHECK_ERR(vtio_page_free(pa, 0, 0), -EINVAL);           /* reserved */
    CHECK_ERR(vtio_page_free(pa, 64 * MiB, 0), -EINVAL);    /* beyond RAM */
    CHECK_ERR(vtio_page_free(pa, 8 * GiB, 0), -EINVAL);
    CHECK_ERR(vtio_page_free(pa, 24 * MiB, 0), -EINVAL);    /* never allocated */
    same_stats(pa, &st);
    CHECK_OK(vtio_page_free(pa, a, 2));
    CHECK_ERR(vtio_page_free(pa, a, 2), -EINVAL);           /* double free */
    CHECK_EQ(vtio_page_alloc_free_bytes(pa), 31 * MiB);
    check_sum(pa);
    vtio_page_alloc_destroy(pa);
    vtio_mem_destroy(m);
}

static void t_reserve(void)
{
    struct vtio_mem *m = mk_mem(16 * MiB, 16 * MiB);
    struct vtio_page_alloc *pa = vtio_page_alloc_create(m);
    CHECK(pa);
    CHECK_OK(vtio_page_alloc_reserve(pa, 0, MiB));
    CHECK_OK(vtio_page_alloc_reserve(pa, 0x9fc00, 0x400));  /* already reserved */
    CHECK_OK(vtio_page_alloc_reserve(pa, 3 * MiB + 5, 10)); /* widened to a page */
    CHECK_OK(vtio_page_alloc_reserve(pa, 15 * MiB, 2 * GiB)); /* crosses into a hole */
    struct vtio_page_alloc_stats st;
    vtio_page_alloc_get_stats(pa, &st);
    CHECK_EQ(st.reserved_bytes, MiB + 4096 + MiB);
    check_sum(pa);
    CHECK_ERR(vtio_page_alloc_reserve(pa, 0, 0), -EINVAL);
    CHECK_ERR(vtio_page_alloc_reserve(pa, ~0ull - 10, 100), -EINVAL);

    uint64_t a;
    unsigned n = 0;
    while (vtio_page_alloc(pa, 0, VTIO_PAGE_DMA32, &a) == 0) {
        CHECKF(a >= MiB && a != 3 * MiB && a < 15 * MiB, "got reserved page %#llx",
               (unsigned long long)a);
        n++;
    }
    CHECK_EQ(n, (14 * MiB - 4096) / 4096);
    /* A range that holds an allocated page is refused whole. */
    CHECK_OK(vtio_page_alloc(pa, 4, 0, &a));
    vtio_page_alloc_get_stats(pa, &st);
    CHECK_ERR(vtio_page_alloc_reserve(pa, a - 2 * MiB, 4 * MiB), -EBUSY);
    same_stats(pa, &st);
    CHECK_OK(vtio_page_free(pa, a, 4));
    CHECK_OK(vtio_page_alloc_reserve(pa, a + 4096, 4096));
    vtio_page_alloc_get_stats(pa, &st);
    CHECK_EQ(st.reserved_bytes, MiB + 4096 + MiB + 4096);
    check_sum(pa);
    vtio_page_alloc_destroy(pa);
    vtio_mem_destroy(m);
}

static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return (uint64_t)res * 4096;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void t_sparse_16g(void)
{
    struct vtio_mem *m = mk_mem(3 * GiB, 13 * GiB);
    uint64_t rss0 = rss_bytes();
    double t0 = now_s();
    struct vtio_page_alloc *pa = vtio_page_alloc_create(m);
    double dt = now_s() - t0;
    CHECK(pa);
    CHECKF(dt < 0.05, "creation took %.3f s", dt);
    CHECK_EQ(vtio_page_alloc_total_bytes(pa), 16 * GiB);
    CHECK_EQ(vtio_page_alloc_free_bytes(pa), 16 * GiB);
    uint64_t a[8];
    for (unsigned i = 0; i < 8; i++)
        CHECK_OK(vtio_page_alloc(pa, i, i < 2 ? VTIO_PAGE_ZERO : 0, &a[i]));
    CHECK_OK(vtio_page_alloc_reserve(pa, 0, MiB));
    /* Two zeroed pages touched machine RAM; the rest did not. */
    CHECK_LE(vtio_mem_ram_resident(m), 4 * MiB);
    /* Metadata for 4M pages stayed unbacked. */
    uint64_t grew = rss_bytes() - rss0;
    CHECKF(grew < 2 * MiB, "host RSS grew by %llu bytes", (unsigned long long)grew);
    for (unsigned i = 0; i < 8; i++)
        CHECK_OK(vtio_page_free(pa, a[i], i));
    CHECK_EQ(vtio_page_alloc_free_bytes(pa), 16 * GiB - MiB);
    vtio_page_alloc_destroy(pa);
    vtio_mem_destroy(m);
}

/* ---- concurrency */

struct worker {
    struct vtio_page_alloc *pa;
    struct vtio_mem *mem;
    unsigned id;
    int err;
    uint64_t errs;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    enum { LIVE = 32, ITERS = 20000 };
    struct blk live[LIVE] = { 0 };
    bool have[LIVE] = { false };
    uint64_t seed = 1234 + w->id;
    for (unsigned it = 0; it < ITERS; it++) {
        unsigned s = (unsigned)(vtio_test_rand(&seed) % LIVE);
        if (have[s]) {
            uint64_t tag = vtio_mem_read64(w->mem, live[s].addr);
            if (tag != ((uint64_t)w->id << 48 | live[s].addr))
                w->errs++;      /* someone else got our block */
            int rc = vtio_page_free(w->pa, live[s].addr, live[s].order);
            if (rc)
                w->err = rc;
            have[s] = false;
        } else {
            unsigned k = (unsigned)(vtio_test_rand(&seed) % 5);
            int rc = vtio_page_alloc(w->pa, k, (it & 3) ? 0 : VTIO_PAGE_DMA32, &live[s].addr);
            if (rc == -ENOMEM)
                continue;
            if (rc) {
                w->err = rc;
                continue;
            }
            live[s].order = k;
            have[s] = true;
            vtio_mem_write64(w->mem, live[s].addr, (uint64_t)w->id << 48 | live[s].addr);
        }
    }
    for (unsigned s = 0; s < LIVE; s++)
        if (have[s] && vtio_page_free(w->pa, live[s].addr, live[s].order))
            w->err = -1;
    return NULL;
}

static void t_threads(void)
{
    struct vtio_mem *m = mk_mem(8 * MiB, 8 * MiB);
    struct vtio_page_alloc *pa = vtio_page_alloc_create(m);
    CHECK(pa);
    pthread_t th[4];
    struct worker w[4];
    for (unsigned i = 0; i < 4; i++) {
        w[i] = (struct worker){ .pa = pa, .mem = m, .id = i + 1 };
        CHECK_EQ(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (unsigned i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (unsigned i = 0; i < 4; i++) {
        CHECK_EQ(w[i].err, 0);
        CHECK_EQ(w[i].errs, 0);
    }
    CHECK_EQ(vtio_page_alloc_free_bytes(pa), 16 * MiB);
    check_sum(pa);
    vtio_page_alloc_destroy(pa);
    vtio_mem_destroy(m);
}

static void t_no_ram(void)
{
    struct vtio_mem *m = vtio_mem_create();
    CHECK(m);
    CHECK(vtio_page_alloc_create(m) == NULL);
    CHECK(vtio_page_alloc_create(NULL) == NULL);
    vtio_mem_destroy(m);
}

static const struct vtio_test tests[] = {
    { "every_order", "blocks of every order 0..18 come back aligned, in RAM, and free restores the count", t_every_order },
    { "no_overlap", "thousands of mixed-order blocks in two zones never overlap", t_no_overlap },
    { "coalesce", "all 4 KiB pages allocated then freed in random order merge back into one block", t_coalesce },
    { "dma32", "DMA32 blocks lie below 4 GiB, ordinary ones prefer 4 GiB up, DMA32 runs out alone", t_dma32 },
    { "fallback", "without RAM above 4 GiB ordinary allocations come from below", t_fallback },
    { "zero", "VTIO_PAGE_ZERO zeroes the whole block and nothing else", t_zero },
    { "exhaust", "exhaustion returns -ENOMEM for every order and the allocator recovers", t_exhaust },
    { "bad_free", "misaligned, unknown, wrong-order, reserved and double frees return -EINVAL and change nothing", t_bad_free },
    { "reserve", "reserved ranges are never handed out; reserving an allocated page is -EBUSY and changes nothing", t_reserve },
    { "sparse_16g", "a 16 GiB machine gets its allocator at once and neither RAM nor metadata gets resident", t_sparse_16g },
    { "threads", "4 threads allocating and freeing never share a block and the pool ends whole", t_threads },
    { "no_ram", "an address space without RAM gives no allocator", t_no_ram },
};

VTIO_TEST_MAIN(tests)
