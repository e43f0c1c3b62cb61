/*
 * Tests of the IOVA allocator (include/vtio/iova.h): placement, alignment,
 * limits, reserved ranges, exhaustion, bad frees, a random run against a
 * shadow bitmap, the per-thread caches and their lifetimes, and threads.
 */
#include <vtio/iova.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

#define G4K   4096ull
#define DMA32 VTIO_IOVA_DMA32_PFN
#define MSI_LO (0xFEE00000ull >> 12)
#define MSI_HI (0xFEEFFFFFull >> 12)

static struct vtio_iova_domain *mk(uint64_t start)
{
    struct vtio_iova_domain *d = vtio_iova_domain_create(G4K, start);
    CHECK(d);
    return d;
}

static void done(struct vtio_iova_domain *d)
{
    CHECK_OK(vtio_iova_check(d));
    CHECK_EQ(vtio_iova_domain_destroy(d, NULL, NULL), 0);
}

static struct vtio_iova_stats stats(struct vtio_iova_domain *d)
{
    struct vtio_iova_stats st;
    vtio_iova_get_stats(d, &st);
    return st;
}

static uint64_t pow2(uint64_t x)
{
    uint64_t p = 1;
    while (p < x)
        p <<= 1;
    return p;
}

/* ------------------------------------------------------------------------ */

static void t_top_down(void)
{
    struct vtio_iova_domain *d = mk(1);
    uint64_t p;
    CHECK_OK(vtio_iova_alloc(d, 1, DMA32, true, &p));
    CHECK_EQ(p, DMA32 - 1);
    CHECK_OK(vtio_iova_alloc(d, 1, DMA32, true, &p));
    CHECK_EQ(p, DMA32 - 2);
    CHECK_OK(vtio_iova_alloc(d, 16, DMA32, true, &p));
    CHECK_EQ(p, DMA32 - 32);                /* aligned below the two pages */
    CHECK_OK(vtio_iova_alloc(d, 3, DMA32, false, &p));
    CHECK_EQ(p, DMA32 - 35);                /* unaligned: right below */
    /* The search goes on below the last allocation (the hint); the gap
     * that alignment left above is used when a search from the limit is
     * needed (see t_exhaustion). */
    CHECK_OK(vtio_iova_alloc(d, 2, DMA32, true, &p));
    CHECK_EQ(p, DMA32 - 38);
    /* No limit: the top of the 52-bit pfn space. */
    CHECK_OK(vtio_iova_alloc(d, 1, UINT64_MAX, true, &p));
    CHECK_EQ(p, (1ull << 52) - 1);
    /* Free the highest 32-bit one: the next takes its place again. */
    CHECK_OK(vtio_iova_free(d, DMA32 - 1, 1));
    CHECK_OK(vtio_iova_alloc(d, 1, DMA32, true, &p));
    CHECK_EQ(p, DMA32 - 1);
    struct vtio_iova_stats st = stats(d);
    CHECK_EQ(st.ranges, 6);
    CHECK_EQ(st.pages, 1 + 1 + 16 + 3 + 2 + 1);
    CHECK_EQ(vtio_iova_domain_destroy(d, NULL, NULL), 6);   /* all leaked */

    /* Nothing fits below the hint: the search from the limit finds the gap
     * that alignment left above it. */
    d = mk(32);
    CHECK_OK(vtio_iova_alloc(d, 1, 64, true, &p));
    CHECK_EQ(p, 63);
    CHECK_OK(vtio_iova_alloc(d, 16, 64, true, &p));
    CHECK_EQ(p, 32);
    CHECK_OK(vtio_iova_alloc(d, 8, 64, true, &p));
    CHECK_EQ(p, 48);
    CHECK_OK(vtio_iova_alloc(d, 7, 64, false, &p));
    CHECK_EQ(p, 56);
    CHECK_ERR(vtio_iova_alloc(d, 1, 64, false, &p), -ENOMEM);
    CHECK_EQ(vtio_iova_domain_destroy(d, NULL, NULL), 4);
}

static void t_alignment(void)
{
    struct vtio_iova_domain *d = mk(1);
    uint64_t sizes[] = { 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 32, 33, 64, 100, 128, 512, 1000, 4096 };
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            uint64_t p, s = sizes[i];
            CHECK_OK(vtio_iova_alloc(d, s, DMA32, true, &p));
            CHECKF(p % pow2(s) == 0, "size %llu at %#llx", (unsigned long long)s,
                   (unsigned long long)p);
            CHECK_LE(p + s, DMA32);
            CHECK_OK(vtio_iova_alloc_fast(d, s, DMA32, &p));
            CHECKF(p % pow2(s) == 0, "fast size %llu at %#llx", (unsigned long long)s,
                   (unsigned long long)p);
            if (s <= VTIO_IOVA_CACHE_MAX_PAGES && round < 2)
                CHECK_OK(vtio_iova_free_fast(d, p, s));   /* and again from the cache */
        }
    }
    /* Every cache class, served from the cache. */
    for (unsigned k = 0; k < VTIO_IOVA_CACHE_CLASSES; k++) {
        uint64_t s = 1ull << k, p;
        CHECK_OK(vtio_iova_alloc_fast(d, s, DMA32, &p));
        CHECK_EQ(p % s, 0);
        CHECK_OK(vtio_iova_free_fast(d, p, s));
    }
    CHECK_OK(vtio_iova_check(d));
    vtio_iova_domain_destroy(d, NULL, NULL);
}

static void t_limit(void)
{
    struct vtio_iova_domain *d = mk(1);
    uint64_t p;
    /* 64-bit allocations first, so the 32-bit ones must skip them. */
    for (int i = 0; i < 100; i++)
        CHECK_OK(vtio_iova_alloc(d, 8, UINT64_MAX, true, &p));
    for (int i = 0; i < 2000; i++) {
        uint64_t s = 1 + (uint64_t)i % 40;
        CHECK_OK(vtio_iova_alloc(d, s, DMA32, i & 1, &p));
        CHECK_LE(p + s, DMA32);
        CHECK_OK(vtio_iova_alloc_fast(d, s, DMA32, &p));
        CHECK_LE(p + s, DMA32);
        CHECK_OK(vtio_iova_free_fast(d, p, s));
    }
    /* A cached range above a low limit is not handed out below it. */
    CHECK_OK(vtio_iova_alloc_fast(d, 4, 0x10000, &p));
    CHECK_LE(p + 4, 0x10000);
    CHECK_OK(vtio_iova_check(d));
    /* A tiny window: exactly 4 pages in [1, 5). */
    struct vtio_iova_domain *t = mk(1);
    for (int i = 0; i < 4; i++) {
        CHECK_OK(vtio_iova_alloc(t, 1, 5, false, &p));
        CHECK_EQ(p, 4 - (uint64_t)i);
    }
    CHECK_ERR(vtio_iova_alloc(t, 1, 5, false, &p), -ENOMEM);
    CHECK_ERR(vtio_iova_alloc(t, 1, 1, false, &p), -EINVAL);   /* limit <= start */
    CHECK_EQ(vtio_iova_domain_destroy(t, NULL, NULL), 4);
    vtio_iova_domain_destroy(d, NULL, NULL);
}

static void t_reserved(void)
{
    /* The last 32 MiB below 4 GiB, holding the MSI window. */
    uint64_t lo = DMA32 - 8192;
    struct vtio_iova_domain *d = mk(lo);
    CHECK_OK(vtio_iova_reserve(d, MSI_LO, MSI_HI));
    uint64_t p, n = 0;
    while (vtio_iova_alloc(d, 1, DMA32, false, &p) == 0) {
        CHECKF(p < MSI_LO || p > MSI_HI, "MSI pfn %#llx handed out", (unsigned long long)p);
        CHECK_GE(p, lo);
        n++;
    }
    CHECK_EQ(n, 8192 - 256);
    struct vtio_iova_range r;
    CHECK_OK(vtio_iova_find(d, MSI_LO + 5, &r));
    CHECK(r.reserved);
    CHECK_EQ(r.pfn_lo, MSI_LO);
    CHECK_EQ(r.pfn_hi, MSI_HI);
    CHECK_ERR(vtio_iova_free(d, MSI_LO, 256), -EINVAL);    /* reserved: not freeable */
    CHECK_OK(vtio_iova_check(d));
    CHECK_EQ(vtio_iova_domain_destroy(d, NULL, NULL), n);

    /* Random holes; sizes 1..8 until full; nothing inside a hole. */
    d = mk(1);
    uint64_t seed = 7, limit = 1 << 14;
    static uint8_t hole[1 << 14];
    memset(hole, 0, sizeof(hole));
    for (int i = 0; i < 40; i++) {
        uint64_t a = 1 + vtio_test_rand(&seed) % (limit - 100), b = a + vtio_test_rand(&seed) % 64;
        CHECK_OK(vtio_iova_reserve(d, a, b));
        for (uint64_t x = a; x <= b; x++)
            hole[x] = 1;
    }
    /* Overlapping and touching reserves merge. */
    struct vtio_iova_stats st = stats(d);
    CHECK_LE(st.reserved_ranges, 40);
    for (int pass = 0; pass < 2; pass++) {
        while (vtio_iova_alloc(d, 1 + vtio_test_rand(&seed) % 8, limit, pass, &p) == 0) {
            CHECK_OK(vtio_iova_find(d, p, &r));
            CHECK(!r.reserved);
            for (uint64_t x = r.pfn_lo; x <= r.pfn_hi; x++)
                CHECKF(!hole[x], "reserved pfn %#llx handed out", (unsigned long long)x);
        }
        CHECK_OK(vtio_iova_check(d));
    }
    /* Reserving over an allocated range fails and changes nothing. */
    CHECK_ERR(vtio_iova_reserve(d, p - 1, limit - 1), -EEXIST);
    CHECK_EQ(stats(d).reserved_ranges, st.reserved_ranges);
    CHECK_ERR(vtio_iova_reserve(d, 10, 9), -EINVAL);
    CHECK_ERR(vtio_iova_reserve(d, 0, 1ull << 52), -EINVAL);
    vtio_iova_domain_destroy(d, NULL, NULL);

    /* Merging: [10,19] + [20,29] + [15,40] is one range [10,40]. */
    d = mk(1);
    CHECK_OK(vtio_iova_reserve(d, 10, 19));
    CHECK_OK(vtio_iova_reserve(d, 20, 29));
    CHECK_OK(vtio_iova_reserve(d, 15, 40));
    CHECK_EQ(stats(d).reserved_ranges, 1);
    CHECK_OK(vtio_iova_find(d, 33, &r));
    CHECK_EQ(r.pfn_lo, 10);
    CHECK_EQ(r.pfn_hi, 40);
    CHECK_ERR(vtio_iova_find(d, 41, &r), -ENOENT);
    done(d);
}

static void t_exhaustion(void)
{
    struct vtio_iova_domain *d = mk(0x100);
    uint64_t p, got[16];
    for (int i = 0; i < 16; i++) {
        CHECK_OK(vtio_iova_alloc(d, 16, 0x200, true, &got[i]));
        CHECK_EQ(got[i], 0x200 - 16 * (uint64_t)(i + 1));
    }
    CHECK_ERR(vtio_iova_alloc(d, 16, 0x200, true, &p), -ENOMEM);
    CHECK_ERR(vtio_iova_alloc(d, 1, 0x200, false, &p), -ENOMEM);   /* fast fail, too */
    CHECK_ERR(vtio_iova_alloc_fast(d, 1, 0x200, &p), -ENOMEM);
    CHECK_GE(stats(d).tree_failures, 3);
    /* Above the limit there is room. */
    CHECK_OK(vtio_iova_alloc(d, 16, 0x300, true, &p));
    CHECK_EQ(p, 0x2f0);
    CHECK_OK(vtio_iova_free(d, p, 16));
    /* Free one in the middle: exactly that place comes back. */
    CHECK_OK(vtio_iova_free(d, got[7], 16));
    CHECK_ERR(vtio_iova_alloc(d, 32, 0x200, true, &p), -ENOMEM);
    CHECK_OK(vtio_iova_alloc(d, 16, 0x200, true, &p));
    CHECK_EQ(p, got[7]);
    /* Unaligned 3 + aligned 8 in a freed 16: 3 at the top, 8 below. */
    CHECK_OK(vtio_iova_free(d, got[3], 16));
    CHECK_OK(vtio_iova_alloc(d, 3, 0x200, false, &p));
    CHECK_EQ(p, got[3] + 13);
    CHECK_OK(vtio_iova_alloc(d, 8, 0x200, true, &p));
    CHECK_EQ(p, got[3]);
    CHECK_OK(vtio_iova_check(d));
    vtio_iova_domain_destroy(d, NULL, NULL);

    /* The tree runs out while ranges sit in the cache: a fast allocation
     * flushes the caches and retries. */
    d = mk(0x100);
    for (int i = 0; i < 256; i++)
        CHECK_OK(vtio_iova_alloc_fast(d, 1, 0x200, &got[0]));
    for (uint64_t x = 0x100; x < 0x200; x++)
        CHECK_OK(vtio_iova_free_fast(d, x, 1));
    CHECK_EQ(stats(d).cached_ranges, 256);
    CHECK_ERR(vtio_iova_alloc(d, 32, 0x200, true, &p), -ENOMEM);
    CHECK_OK(vtio_iova_alloc_fast(d, 32, 0x200, &p));
    CHECK_EQ(p, 0x1e0);
    CHECK_EQ(stats(d).cached_ranges, 0);
    CHECK_GE(stats(d).cache_flushes, 1);
    CHECK_OK(vtio_iova_free_fast(d, p, 32));
    vtio_iova_cache_flush(d);
    done(d);
}

struct snap {
    struct vtio_iova_range r[64];
    uint64_t n;
};

static void snap_fn(void *opaque, const struct vtio_iova_range *r)
{
    struct snap *s = opaque;
    if (s->n < 64)
        s->r[s->n] = *r;
    s->n++;
}

static void t_bad_frees(void)
{
    struct vtio_iova_domain *d = mk(1);
    uint64_t a, b, c;
    CHECK_OK(vtio_iova_reserve(d, 0x100, 0x1ff));
    CHECK_OK(vtio_iova_alloc(d, 8, DMA32, true, &a));
    CHECK_OK(vtio_iova_alloc(d, 5, DMA32, false, &b));
    CHECK_OK(vtio_iova_alloc(d, 1, DMA32, false, &c));
    struct snap before = { .n = 0 }, after = { .n = 0 };
    vtio_iova_for_each(d, snap_fn, &before);
    struct vtio_iova_stats s0 = stats(d);

    CHECK_ERR(vtio_iova_free(d, a, 4), -EINVAL);        /* part of a range */
    CHECK_ERR(vtio_iova_free(d, a + 1, 7), -EINVAL);    /* inside it */
    CHECK_ERR(vtio_iova_free(d, a, 16), -EINVAL);       /* bigger */
    CHECK_ERR(vtio_iova_free(d, a, 0), -EINVAL);
    CHECK_ERR(vtio_iova_free(d, 0x100, 256), -EINVAL);  /* reserved */
    CHECK_ERR(vtio_iova_free(d, 0x5000, 1), -EINVAL);   /* never allocated */
    CHECK_ERR(vtio_iova_free(d, b, 8), -EINVAL);
    CHECK_ERR(vtio_iova_free_fast(d, 0x1001, 2), -EINVAL);  /* misaligned for 2 */
    CHECK_ERR(vtio_iova_free_fast(d, 0, 1), -EINVAL);       /* below start */
    CHECK_ERR(vtio_iova_free_fast(d, 1ull << 52, 1), -EINVAL);  /* past the end */
    CHECK(strstr(vtio_last_error(), "iova") != NULL);

    vtio_iova_for_each(d, snap_fn, &after);
    CHECK_EQ(after.n, before.n);
    for (uint64_t i = 0; i < before.n; i++) {
        CHECK_EQ(after.r[i].pfn_lo, before.r[i].pfn_lo);
        CHECK_EQ(after.r[i].pfn_hi, before.r[i].pfn_hi);
        CHECK_EQ(after.r[i].reserved, before.r[i].reserved);
    }
    struct vtio_iova_stats s1 = stats(d);
    CHECK_EQ(s1.ranges, s0.ranges);
    CHECK_EQ(s1.tree_frees, s0.tree_frees);

    CHECK_OK(vtio_iova_free(d, b, 5));
    CHECK_ERR(vtio_iova_free(d, b, 5), -EINVAL);        /* double free */

    /* With CHECK_FREES, free_fast checks exactly, incl. double frees into
     * the cache. */
    CHECK_OK(vtio_iova_domain_set_flags(d, VTIO_IOVA_CHECK_FREES));
    CHECK_ERR(vtio_iova_domain_set_flags(d, 0x80), -EINVAL);
    uint64_t f;
    CHECK_OK(vtio_iova_alloc_fast(d, 2, DMA32, &f));
    CHECK_ERR(vtio_iova_free_fast(d, f, 1), -EINVAL);   /* wrong size */
    CHECK_OK(vtio_iova_free_fast(d, f, 2));
    CHECK_ERR(vtio_iova_free_fast(d, f, 2), -EINVAL);   /* already cached */
    CHECK_ERR(vtio_iova_free(d, f, 2), -EINVAL);        /* cached: not the caller's */
    uint64_t g;
    CHECK_OK(vtio_iova_alloc_fast(d, 2, DMA32, &g));
    CHECK_EQ(g, f);                                     /* from the cache */
    CHECK_OK(vtio_iova_free(d, g, 2));                  /* the caller's again */
    CHECK_OK(vtio_iova_free(d, a, 8));
    CHECK_OK(vtio_iova_free(d, c, 1));
    done(d);
}

/* A random mix against a shadow bitmap: no page is handed out twice, no
 * reserved or out-of-limit page ever; on a tree-only domain an -ENOMEM
 * means no aligned fit exists below the limit (the search is exhaustive). */
#define SPACE 8192
struct held {
    uint64_t pfn, size;
    bool fast;
};

static void shadow_run(bool tree_only, uint64_t seed)
{
    struct vtio_iova_domain *d = mk(16);
    if (tree_only)
        CHECK_OK(vtio_iova_domain_set_flags(d, VTIO_IOVA_NO_CACHE));
    static uint8_t busy[SPACE];
    memset(busy, 0, sizeof(busy));
    CHECK_OK(vtio_iova_reserve(d, 3000, 3100));
    for (uint64_t x = 3000; x <= 3100; x++)
        busy[x] = 2;
    static struct held held[4096];
    size_t nheld = 0;
    uint64_t enomem = 0;
    for (int op = 0; op < 30000; op++) {
        uint64_t r = vtio_test_rand(&seed);
        if (nheld && (r % 100 < 45 || nheld == 4096)) {
            size_t i = (size_t)(r >> 8) % nheld;
            struct held h = held[i];
            held[i] = held[--nheld];
            for (uint64_t x = h.pfn; x < h.pfn + h.size; x++) {
                CHECK_EQ(busy[x], 1);
                busy[x] = 0;
            }
            CHECK_OK(h.fast ? vtio_iova_free_fast(d, h.pfn, h.size)
                            : vtio_iova_free(d, h.pfn, h.size));
            continue;
        }
        uint64_t size = (r >> 8) % 5 == 0 ? 1 + (r >> 16) % 200 : 1 + (r >> 16) % 32;
        uint64_t limit = (r >> 32) % 3 == 0 ? 1024 + (r >> 40) % (SPACE - 1024) : SPACE;
        int kind = (int)((r >> 24) % 3);        /* 0 aligned, 1 unaligned, 2 fast */
        uint64_t p;
        int rc = kind == 2 ? vtio_iova_alloc_fast(d, size, limit, &p)
                           : vtio_iova_alloc(d, size, limit, kind == 0, &p);
        uint64_t real = kind == 2 && size <= VTIO_IOVA_CACHE_MAX_PAGES ? pow2(size) : size;
        if (rc == -ENOMEM) {
            enomem++;
            if (tree_only) {
                uint64_t step = kind == 1 ? 1 : pow2(size);
                for (uint64_t at = 16 + (step - 16 % step) % step; at + real <= limit; at += step) {
                    uint64_t x = at;
                    while (x < at + real && !busy[x])
                        x++;
                    CHECKF(x < at + real, "-ENOMEM but %llu pages fit at %#llx below %#llx",
                           (unsigned long long)real, (unsigned long long)at,
                           (unsigned long long)limit);
                }
            }
            continue;
        }
        CHECK_OK(rc);
        CHECK_GE(p, 16);
        CHECK_LE(p + real, limit);
        if (kind != 1)
            CHECK_EQ(p % pow2(size), 0);
        for (uint64_t x = p; x < p + real; x++)
            CHECKF(!busy[x], "pfn %#llx handed out while %s", (unsigned long long)x,
                   busy[x] == 2 ? "reserved" : "allocated");
        memset(busy + p, 1, real);
        held[nheld++] = (struct held){ p, real, kind == 2 && size <= VTIO_IOVA_CACHE_MAX_PAGES };
        if (op % 1000 == 0)
            CHECK_OK(vtio_iova_check(d));
        if (op % 7919 == 0)
            vtio_iova_cache_flush(d);
    }
    CHECK_GT(enomem, 0);                        /* the space did fill up */
    CHECK_OK(vtio_iova_check(d));
    while (nheld) {
        struct held h = held[--nheld];
        CHECK_OK(vtio_iova_free(d, h.pfn, h.size));
    }
    vtio_iova_cache_flush(d);
    CHECK_EQ(stats(d).ranges, 0);
    done(d);
}

static void t_shadow_tree(void)
{
    shadow_run(true, 0x1234);
}

static void t_shadow_mixed(void)
{
    shadow_run(false, 0x9876);
}

static void t_cache_hit(void)
{
    struct vtio_iova_domain *d = mk(1);
    uint64_t p, q;
    CHECK_OK(vtio_iova_alloc_fast(d, 3, DMA32, &p));    /* miss: the tree */
    struct vtio_iova_stats st = stats(d);
    CHECK_EQ(st.cache_misses, 1);
    CHECK_EQ(st.cache_hits, 0);
    CHECK_EQ(st.tree_allocs, 1);
    CHECK_EQ(st.pages, 4);                              /* rounded up */
    CHECK_OK(vtio_iova_free_fast(d, p, 3));
    st = stats(d);
    CHECK_EQ(st.cached_ranges, 1);
    CHECK_EQ(st.ranges, 1);                             /* still in the tree */
    CHECK_EQ(st.tree_frees, 0);
    CHECK_OK(vtio_iova_alloc_fast(d, 4, DMA32, &q));    /* same class */
    CHECK_EQ(q, p);
    st = stats(d);
    CHECK_EQ(st.cache_hits, 1);
    CHECK_EQ(st.tree_allocs, 1);
    CHECK_EQ(st.cached_ranges, 0);
    CHECK_OK(vtio_iova_free(d, q, 4));                  /* the rounded size */
    /* A different class does not hit. */
    CHECK_OK(vtio_iova_alloc_fast(d, 1, DMA32, &p));
    CHECK_OK(vtio_iova_free_fast(d, p, 1));
    CHECK_OK(vtio_iova_alloc_fast(d, 2, DMA32, &q));
    CHECK_EQ(stats(d).cache_misses, 3);
    CHECK_OK(vtio_iova_free_fast(d, q, 2));
    /* NO_CACHE: straight to the tree. */
    vtio_iova_cache_flush(d);
    CHECK_OK(vtio_iova_domain_set_flags(d, VTIO_IOVA_NO_CACHE));
    CHECK_OK(vtio_iova_alloc_fast(d, 1, DMA32, &p));
    CHECK_OK(vtio_iova_free_fast(d, p, 1));
    CHECK_EQ(stats(d).cached_ranges, 0);
    CHECK_EQ(stats(d).ranges, 0);
    done(d);
}

static void t_flush(void)
{
    struct vtio_iova_domain *d = mk(1);
    static uint64_t p[400];
    for (int i = 0; i < 100; i++)
        CHECK_OK(vtio_iova_alloc_fast(d, 4, DMA32, &p[i]));
    for (int i = 0; i < 100; i++)
        CHECK_OK(vtio_iova_free_fast(d, p[i], 4));
    struct vtio_iova_stats st = stats(d);
    CHECK_EQ(st.ranges, 100);
    CHECK_EQ(st.cached_ranges, 100);
    CHECK_EQ(vtio_iova_cache_flush(d), 100);
    st = stats(d);
    CHECK_EQ(st.ranges, 0);
    CHECK_EQ(st.cached_ranges, 0);
    CHECK_EQ(st.tree_frees, 100);
    /* Past two magazines: full ones go to the depot, and come back. */
    for (int i = 0; i < 400; i++)
        CHECK_OK(vtio_iova_alloc_fast(d, 1, DMA32, &p[i]));
    for (int i = 0; i < 400; i++)
        CHECK_OK(vtio_iova_free_fast(d, p[i], 1));
    st = stats(d);
    CHECK_EQ(st.cached_ranges, 400);
    CHECK_GE(st.depot_magazines, 4);
    for (int i = 0; i < 400; i++)
        CHECK_OK(vtio_iova_alloc_fast(d, 1, DMA32, &p[i]));
    st = stats(d);
    CHECK_EQ(st.cache_hits, 400);
    CHECK_EQ(st.cached_ranges, 0);
    CHECK_EQ(st.depot_magazines, 0);
    for (int i = 0; i < 400; i++)
        CHECK_OK(vtio_iova_free_fast(d, p[i], 1));
    CHECK_EQ(vtio_iova_cache_flush(d), 400);
    CHECK_EQ(stats(d).ranges, 0);
    done(d);
}

static void t_find_and_leaks(void)
{
    struct vtio_iova_domain *d = mk(1);
    uint64_t p;
    struct vtio_iova_range r;
    CHECK_OK(vtio_iova_alloc(d, 10, DMA32, false, &p));
    CHECK_OK(vtio_iova_find(d, p + 9, &r));
    CHECK_EQ(r.pfn_lo, p);
    CHECK_EQ(r.pfn_hi, p + 9);
    CHECK(!r.reserved);
    CHECK_ERR(vtio_iova_find(d, p - 1, &r), -ENOENT);
    CHECK_ERR(vtio_iova_find(d, 1ull << 52, &r), -ENOENT);  /* the anchor is hidden */
    CHECK_OK(vtio_iova_alloc(d, 2, DMA32, false, &p));
    CHECK_OK(vtio_iova_reserve(d, 5, 6));
    CHECK_EQ(vtio_iova_granule(d), G4K);
    CHECK(vtio_iova_domain_create(1000, 1) == NULL);
    CHECK(vtio_iova_domain_create(G4K, 1ull << 52) == NULL);
    CHECK_ERR(vtio_iova_alloc(d, 0, DMA32, false, &p), -EINVAL);
    CHECK_ERR(vtio_iova_alloc_fast(d, 0, DMA32, &p), -EINVAL);
    /* Leak report: the two allocated ranges, not the reserved one, not the
     * cached one. */
    CHECK_OK(vtio_iova_alloc_fast(d, 1, DMA32, &p));
    CHECK_OK(vtio_iova_free_fast(d, p, 1));
    struct snap s = { .n = 0 };
    CHECK_EQ(vtio_iova_domain_destroy(d, snap_fn, &s), 2);
    CHECK_EQ(s.n, 2);
    CHECK(!s.r[0].reserved && !s.r[1].reserved);
    CHECK_EQ(s.r[0].pfn_hi - s.r[0].pfn_lo + s.r[1].pfn_hi - s.r[1].pfn_lo, 9 + 1);
}

static void t_two_domains(void)
{
    struct vtio_iova_domain *a = mk(1), *b = mk(0x1000);
    uint64_t p, q;
    for (int i = 0; i < 50; i++) {
        CHECK_OK(vtio_iova_alloc_fast(a, 1, 0x2000, &p));
        CHECK_OK(vtio_iova_alloc_fast(b, 1, 0x2000, &q));
        CHECK_OK(vtio_iova_free_fast(a, p, 1));
        CHECK_OK(vtio_iova_free_fast(b, q, 1));
    }
    CHECK_EQ(stats(a).cached_ranges, 1);
    CHECK_EQ(stats(b).cached_ranges, 1);
    CHECK_EQ(stats(a).cache_hits, 49);
    CHECK_EQ(stats(b).cache_hits, 49);
    /* Destroy a while this thread caches its ranges, then make a new domain
     * (it may reuse a's address) and use it: no stale cache is found. */
    done(a);
    struct vtio_iova_domain *c = mk(0x100);
    CHECK_OK(vtio_iova_alloc_fast(c, 1, 0x200, &p));
    CHECK_EQ(stats(c).cache_misses, 1);
    CHECK_EQ(p, 0x1ff);
    CHECK_OK(vtio_iova_free_fast(c, p, 1));
    done(c);
    done(b);
}

/* ---- threads ------------------------------------------------------------ */

#define HSPACE (1u << 16)
#define NTHREADS 4

struct hammer {
    struct vtio_iova_domain *d;
    _Atomic uint8_t *owner;
    int id, iters;
    uint64_t errors, ops;
    char what[160];
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    uint64_t seed = 0x5eed + (uint64_t)h->id, pfn[16], size[16];
    int n = 0;
    for (int it = 0; it < h->iters && !h->errors; it++) {
        uint64_t r = vtio_test_rand(&seed);
        if (n == 16 || (n && r % 2)) {
            int i = (int)((r >> 8) % (uint64_t)n);
            for (uint64_t x = pfn[i]; x < pfn[i] + pow2(size[i]); x++)
                atomic_store_explicit(&h->owner[x], 0, memory_order_relaxed);
            if (vtio_iova_free_fast(h->d, pfn[i], size[i]) < 0)
                h->errors++;
            pfn[i] = pfn[n - 1];
            size[i] = size[n - 1];
            n--;
        } else {
            uint64_t s = 1 + (r >> 16) % VTIO_IOVA_CACHE_MAX_PAGES, p;
            if (vtio_iova_alloc_fast(h->d, s, HSPACE, &p) < 0) {
                snprintf(h->what, sizeof(h->what), "alloc: %s", vtio_last_error());
                h->errors++;
                break;
            }
            for (uint64_t x = p; x < p + pow2(s); x++) {
                uint8_t zero = 0;
                if (!atomic_compare_exchange_strong_explicit(&h->owner[x], &zero,
                                                             (uint8_t)h->id,
                                                             memory_order_relaxed,
                                                             memory_order_relaxed)) {
                    snprintf(h->what, sizeof(h->what), "pfn %#llx held by thread %u",
                             (unsigned long long)x, zero);
                    h->errors++;
                }
            }
            pfn[n] = p;
            size[n++] = s;
        }
        if (it % 5000 == 4999 && h->id == 1)
            vtio_iova_cache_flush(h->d);       /* others drain at their next call */
        h->ops++;
    }
    while (n--) {                               /* leave with cached ranges */
        for (uint64_t x = pfn[n]; x < pfn[n] + pow2(size[n]); x++)
            atomic_store_explicit(&h->owner[x], 0, memory_order_relaxed);
        vtio_iova_free_fast(h->d, pfn[n], size[n]);
    }
    return NULL;
}

static void t_threads_hammer(void)
{
    struct vtio_iova_domain *d = mk(1);
    _Atomic uint8_t *owner = calloc(HSPACE, 1);
    CHECK(owner);
    struct hammer h[NTHREADS];
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        h[i] = (struct hammer){ .d = d, .owner = owner, .id = i + 1, .iters = 200000 };
        CHECK_EQ(pthread_create(&th[i], NULL, hammer_main, &h[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        CHECK_EQ(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < NTHREADS; i++) {
        CHECKF(h[i].errors == 0, "thread %d: %s", h[i].id, h[i].what);
        CHECK_GT(h[i].ops, 0);
    }
    /* The threads have exited: their magazines are back in the tree; only
     * the depot still caches. */
    struct vtio_iova_stats st = stats(d);
    CHECK_EQ(st.ranges, st.depot_magazines * 63);
    CHECK_EQ(st.cached_ranges, st.ranges);
    CHECK_GT(st.cache_hits, st.cache_misses);
    CHECK_OK(vtio_iova_check(d));
    done(d);
    free(owner);
}

struct lifer {
    struct vtio_iova_domain *d;
    pthread_barrier_t *step;
    int rc;
};

static int use_cache(struct vtio_iova_domain *d, int n)
{
    uint64_t p[200];
    for (int i = 0; i < n; i++)
        if (vtio_iova_alloc_fast(d, 1 + (uint64_t)i % 8, DMA32, &p[i]) < 0)
            return -1;
    for (int i = 0; i < n; i++)
        if (vtio_iova_free_fast(d, p[i], 1 + (uint64_t)i % 8) < 0)
            return -1;
    return 0;
}

static void *exit_with_cache(void *arg)
{
    struct lifer *l = arg;
    l->rc = use_cache(l->d, 150);
    return NULL;
}

/* The thread caches ranges of d, the main thread destroys d, then the
 * thread makes and uses another domain, and exits. */
static void *outlive_domain(void *arg)
{
    struct lifer *l = arg;
    l->rc = use_cache(l->d, 100);
    pthread_barrier_wait(l->step);      /* main destroys d */
    pthread_barrier_wait(l->step);
    struct vtio_iova_domain *e = vtio_iova_domain_create(G4K, 1);
    if (!e || use_cache(e, 100) < 0 || vtio_iova_domain_destroy(e, NULL, NULL) != 0)
        l->rc = -1;
    e = vtio_iova_domain_create(G4K, 1);    /* one left for the exit hook */
    if (!e || use_cache(e, 10) < 0)
        l->rc = -1;
    l->d = e;
    return NULL;
}

struct cross {
    struct vtio_iova_domain *d;
    uint64_t pfn[64];
    int rc;
};

static void *free_others(void *arg)
{
    struct cross *c = arg;
    for (int i = 0; i < 64; i++)
        if (vtio_iova_free_fast(c->d, c->pfn[i], 2) < 0)
            c->rc = -1;
    return NULL;
}

static void t_cross_thread_free(void)
{
    struct vtio_iova_domain *d = mk(1);
    struct cross c = { .d = d };
    for (int i = 0; i < 64; i++)
        CHECK_OK(vtio_iova_alloc_fast(d, 2, DMA32, &c.pfn[i]));
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, free_others, &c), 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_OK(c.rc);
    /* The freeing thread cached them, then exited: back in the tree, except
     * a full magazine it pushed to the depot. */
    struct vtio_iova_stats st = stats(d);
    CHECK_EQ(st.ranges, st.cached_ranges);
    CHECK_EQ(st.ranges, st.depot_magazines * 63);
    CHECK_EQ(vtio_iova_cache_flush(d), st.ranges);
    CHECK_EQ(stats(d).ranges, 0);
    done(d);
}

static void t_thread_lifetimes(void)
{
    /* Threads exit while the domain lives: their caches go back. */
    struct vtio_iova_domain *d = mk(1);
    struct lifer l[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        l[i] = (struct lifer){ .d = d };
        CHECK_EQ(pthread_create(&th[i], NULL, exit_with_cache, &l[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(pthread_join(th[i], NULL), 0);
        CHECK_OK(l[i].rc);
    }
    struct vtio_iova_stats st = stats(d);
    CHECK_EQ(st.cached_ranges, 0);
    CHECK_EQ(st.ranges, 0);
    CHECK_EQ(st.cache_hits + st.cache_misses, 3 * 150);
    done(d);                                /* after the threads: nothing leaks */

    /* The domain is destroyed while a thread lives with cached ranges. */
    d = mk(1);
    pthread_barrier_t step;
    pthread_barrier_init(&step, NULL, 2);
    struct lifer o = { .d = d, .step = &step };
    CHECK_EQ(pthread_create(&th[0], NULL, outlive_domain, &o), 0);
    pthread_barrier_wait(&step);
    CHECK_OK(o.rc);
    st = stats(d);
    CHECK_GT(st.cached_ranges, 0);
    CHECK_EQ(vtio_iova_domain_destroy(d, NULL, NULL), 0);  /* cached ranges are not leaks */
    pthread_barrier_wait(&step);
    CHECK_EQ(pthread_join(th[0], NULL), 0);
    CHECK_OK(o.rc);
    /* The thread exited holding a cache of o.d: returned, so o.d is clean. */
    st = stats(o.d);
    CHECK_EQ(st.ranges, 0);
    done(o.d);
    pthread_barrier_destroy(&step);
}

static const struct vtio_test tests[] = {
    { "top_down", "ranges are placed top-down below the limit, gaps left by alignment are reused", t_top_down },
    { "alignment", "size-aligned ranges of every size (and every cache class) start at a multiple of the size rounded to a power of two", t_alignment },
    { "limit", "no range reaches the 32-bit limit (tree and cache), 64-bit ranges are skipped, a 4-page window holds exactly 4", t_limit },
    { "reserved", "the MSI window and random holes are never handed out; reserves merge; reserving over an allocation is -EEXIST", t_reserved },
    { "exhaustion", "a full space gives -ENOMEM (fast-fail too), a free makes exactly that room again, a fast allocation flushes caches and retries", t_exhaustion },
    { "bad_frees", "frees of partial, wrong-size, reserved, unallocated and double-freed ranges are -EINVAL and change nothing", t_bad_frees },
    { "shadow_tree", "30000 random tree operations never hand out a busy, reserved or out-of-limit page, and -ENOMEM means nothing fits", t_shadow_tree },
    { "shadow_mixed", "30000 random tree and cached operations never hand out a busy page", t_shadow_mixed },
    { "cache_hit", "a freed small range is the next allocation of its class (a hit), other classes miss, NO_CACHE bypasses", t_cache_hit },
    { "flush", "cached ranges, in magazines and the depot, go back to the tree on a flush", t_flush },
    { "find_and_leaks", "find reports the holding range; destroy reports exactly the caller's unfreed ranges", t_find_and_leaks },
    { "two_domains", "one thread keeps separate caches per domain, and a destroyed domain's cache is never reused", t_two_domains },
    { "threads_hammer", "4 threads allocating and freeing through the caches never hold the same page at once", t_threads_hammer },
    { "cross_thread_free", "ranges allocated on one thread and freed on another go back to the tree", t_cross_thread_free },
    { "thread_lifetimes", "threads exiting return their caches; a domain destroyed under a live thread's cache is safe on both sides", t_thread_lifetimes },
};

VTIO_TEST_MAIN(tests)
