/*
 * Lazy unmapping (DMA-FQ domains) against strict (DMA): the window in which
 * a device may still use an unmapped translation, what closes it (a flush,
 * the time-out, a full ring), that IOVAs are not handed out again before
 * their invalidation, and that destroying a queue releases what it held.
 *
 * The VT-d unit's IOTLB keeps a translation only if the device used it, so
 * every window check first has the device touch the buffer.
 */
#include "host/test_dma_fixture.h"

#include <time.h>

#define RAM      (1 * VTIO_GiB)
#define LONG_MS  60000u            /* a time-out that never fires in a test */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

/* Maps a page for the device and has the device use it (IOTLB filled). */
static vtio_dma_addr_t map_used(struct rig *r, uint64_t pa)
{
    vtio_dma_addr_t a = vtio_dma_map_page(r->dev, pa, 4096, VTIO_DMA_BIDIRECTIONAL);
    CHECK_EQ(vtio_dma_mapping_error(r->dev, a), 0);
    uint32_t v = 0x600d;
    CHECK_OK(rig_dev_write(r, a, &v, sizeof(v), NULL));
    return a;
}

static bool device_reaches(struct rig *r, vtio_dma_addr_t a)
{
    uint32_t v = 0xbad;
    return rig_dev_write(r, a, &v, sizeof(v), NULL) == 0;
}

static void boot(struct rig *r, enum rig_mode mode, unsigned fq_size, unsigned timeout_ms)
{
    struct vtio_host_options o = { .fq_size = fq_size, .fq_timeout_ms = timeout_ms };
    struct vtio_machine_config mc = { .ram_size = RAM, .ncpus = 1 };   /* one ring */
    rig_up_cfg(r, mode, &mc, &o);
}

/* Strict: gone when unmap returns.  Lazy: usable until vtio_dma_flush. */
static void t_window(void)
{
    struct rig r;
    boot(&r, RIG_STRICT, 0, LONG_MS);
    CHECK_EQ(vtio_iommu_domain_type(rig_domain(r.dev)), VTIO_IOMMU_DOMAIN_DMA);
    uint64_t pa = rig_pages(&r, 0, VTIO_PAGE_ZERO);
    vtio_dma_addr_t a = map_used(&r, pa);
    vtio_dma_unmap_page(r.dev, a, 4096, VTIO_DMA_BIDIRECTIONAL);
    CHECK(!device_reaches(&r, a));
    struct vtio_dma_stats st = rig_stats(&r);
    CHECK_EQ(st.strict_syncs, 1);
    CHECK_EQ(st.fq_queued, 0);
    rig_down(&r);

    boot(&r, RIG_LAZY, 0, LONG_MS);
    CHECK_EQ(vtio_iommu_domain_type(rig_domain(r.dev)), VTIO_IOMMU_DOMAIN_DMA_FQ);
    pa = rig_pages(&r, 0, VTIO_PAGE_ZERO);
    a = map_used(&r, pa);
    vtio_dma_unmap_page(r.dev, a, 4096, VTIO_DMA_BIDIRECTIONAL);
    CHECK(device_reaches(&r, a));                      /* the stale IOTLB entry */
    CHECK_EQ(*(uint32_t *)rig_va(&r, pa), 0xbad);      /* ... really reaches the page */
    st = rig_stats(&r);
    CHECK_EQ(st.fq_queued, 1);
    CHECK_EQ(st.strict_syncs, 0);
    CHECK_EQ(st.fq_flushes, 0);
    vtio_dma_flush(r.h);
    CHECK(!device_reaches(&r, a));
    CHECK_EQ(rig_stats(&r).fq_flushes, 1);
    rig_down(&r);
}

/* The timer closes the window by itself. */
static void t_timeout(void)
{
    struct rig r;
    boot(&r, RIG_LAZY, 0, 20);
    uint64_t pa = rig_pages(&r, 0, VTIO_PAGE_ZERO);
    vtio_dma_addr_t a = map_used(&r, pa);
    vtio_dma_unmap_page(r.dev, a, 4096, VTIO_DMA_BIDIRECTIONAL);
    /* Wait (bounded) for the timer; never assert how long it took. */
    for (int i = 0; i < 500 && rig_stats(&r).fq_timeout_flushes == 0; i++)
        sleep_ms(10);
    struct vtio_dma_stats st = rig_stats(&r);
    CHECK_GE(st.fq_timeout_flushes, 1);
    CHECK_GE(st.fq_flushes, 1);
    CHECK(!device_reaches(&r, a));
    /* Armed again by the next unmap. */
    a = map_used(&r, pa);
    vtio_dma_unmap_page(r.dev, a, 4096, VTIO_DMA_BIDIRECTIONAL);
    for (int i = 0; i < 500 && rig_stats(&r).fq_timeout_flushes < 2; i++)
        sleep_ms(10);
    CHECK_GE(rig_stats(&r).fq_timeout_flushes, 2);
    CHECK(!device_reaches(&r, a));
    rig_down(&r);
}

/* A full ring forces an invalidation on the unmapping thread. */
static void t_full_ring(void)
{
    struct rig r;
    boot(&r, RIG_LAZY, 16, LONG_MS);
    uint64_t pa = rig_pages(&r, 0, VTIO_PAGE_ZERO);
    vtio_dma_addr_t first = map_used(&r, pa);
    vtio_dma_unmap_page(r.dev, first, 4096, VTIO_DMA_BIDIRECTIONAL);
    for (int i = 0; i < 15; i++) {
        vtio_dma_addr_t a = vtio_dma_map_page(r.dev, pa, 4096, VTIO_DMA_TO_DEVICE);
        vtio_dma_unmap_page(r.dev, a, 4096, VTIO_DMA_TO_DEVICE);
    }
    CHECK_EQ(rig_stats(&r).fq_full_flushes, 0);         /* 16 queued: full, not over */
    CHECK(device_reaches(&r, first));
    vtio_dma_addr_t a = vtio_dma_map_page(r.dev, pa, 4096, VTIO_DMA_TO_DEVICE);
    vtio_dma_unmap_page(r.dev, a, 4096, VTIO_DMA_TO_DEVICE);   /* the 17th */
    struct vtio_dma_stats st = rig_stats(&r);
    CHECK_EQ(st.fq_full_flushes, 1);
    CHECK_EQ(st.fq_flushes, 1);
    CHECK_EQ(st.fq_queued, 17);
    CHECK(!device_reaches(&r, first));
    rig_down(&r);
}

/* No IOVA is handed out again while its invalidation is pending. */
static void t_no_early_reuse(void)
{
    struct rig r;
    boot(&r, RIG_LAZY, 0, LONG_MS);
    uint64_t pa = rig_pages(&r, 0, VTIO_PAGE_ZERO);
    enum { N = 32 };
    vtio_dma_addr_t queued[N];
    for (int i = 0; i < N; i++) {
        queued[i] = vtio_dma_map_page(r.dev, pa, 4096, VTIO_DMA_TO_DEVICE);
        CHECK_EQ(vtio_dma_mapping_error(r.dev, queued[i]), 0);
        vtio_dma_unmap_page(r.dev, queued[i], 4096, VTIO_DMA_TO_DEVICE);
    }
    vtio_dma_addr_t live[N];
    for (int i = 0; i < N; i++) {
        live[i] = vtio_dma_map_page(r.dev, pa, 4096, VTIO_DMA_TO_DEVICE);
        for (int k = 0; k < N; k++)
            CHECK_NE(live[i], queued[k]);
    }
    for (int i = 0; i < N; i++)
        vtio_dma_unmap_page(r.dev, live[i], 4096, VTIO_DMA_TO_DEVICE);
    /* After the flush they come back (from this thread's IOVA cache). */
    vtio_dma_flush(r.h);
    vtio_dma_addr_t again = vtio_dma_map_page(r.dev, pa, 4096, VTIO_DMA_TO_DEVICE);
    bool reused = false;
    for (int k = 0; k < N; k++)
        reused |= again == queued[k] || again == live[k];
    CHECK(reused);
    vtio_dma_unmap_page(r.dev, again, 4096, VTIO_DMA_TO_DEVICE);
    rig_down(&r);
}

/* Replacing the default domain destroys its queue: everything it held
 * (IOVAs, emptied table pages) goes back, nothing is reported leaked. */
static void t_destroy(void)
{
    struct rig r;
    boot(&r, RIG_LAZY, 0, LONG_MS);
    struct vtio_iommu_group *g = vtio_iommu_group_get(r.dev);
    uint64_t free_at_boot = vtio_page_alloc_free_bytes(r.h->pages);
    uint64_t pa = rig_pages(&r, 9, 0);               /* 2 MiB */
    /* Mappings of several sizes, some beyond the IOVA caches' classes. */
    vtio_dma_addr_t a[8];
    for (int i = 0; i < 8; i++) {
        a[i] = vtio_dma_map_page(r.dev, pa, 128 * VTIO_KiB + 4096 * i, VTIO_DMA_TO_DEVICE);
        CHECK_EQ(vtio_dma_mapping_error(r.dev, a[i]), 0);
    }
    for (int i = 0; i < 8; i++)
        vtio_dma_unmap_page(r.dev, a[i], 128 * VTIO_KiB + 4096 * i, VTIO_DMA_TO_DEVICE);
    CHECK_EQ(rig_stats(&r).fq_queued, 8);
    CHECK_EQ(rig_stats(&r).fq_flushes, 0);
    CHECK_OK(vtio_iommu_group_set_default_type(g, VTIO_IOMMU_DOMAIN_DMA));
    CHECK_GE(rig_stats(&r).fq_flushes, 1);
    CHECK_OK(vtio_iommu_group_set_default_type(g, VTIO_IOMMU_DOMAIN_DMA_FQ));
    CHECK_OK(vtio_page_free(r.h->pages, pa, 9));
    CHECK_EQ(vtio_page_alloc_free_bytes(r.h->pages), free_at_boot);
    CHECK(!rig_log_has(&r, "still live"));
    /* And a host that goes down with entries queued frees them too (the
     * sanitizer builds catch a leak). */
    pa = rig_pages(&r, 0, 0);
    vtio_dma_addr_t b = vtio_dma_map_page(r.dev, pa, 4096, VTIO_DMA_TO_DEVICE);
    vtio_dma_unmap_page(r.dev, b, 4096, VTIO_DMA_TO_DEVICE);
    rig_down(&r);
}

/* Many threads mapping and unmapping lazily at once, with full rings and
 * the timer firing under them: every mapping translates to its own page. */
struct churn {
    struct rig *r;
    uint64_t pa;
    _Atomic unsigned *wrong;
};

static void *churn_main(void *arg)
{
    struct churn *c = arg;
    for (int i = 0; i < 2000; i++) {
        vtio_dma_addr_t a = vtio_dma_map_page(c->r->dev, c->pa + 64, 64, VTIO_DMA_FROM_DEVICE);
        uint64_t pa;
        int reason;
        if (vtio_dma_mapping_error(c->r->dev, a) ||
            rig_dev_xlate(c->r, c->r->dev, a, true, &pa, &reason) || pa != c->pa + 64)
            atomic_fetch_add(c->wrong, 1);
        vtio_dma_unmap_page(c->r->dev, a, 64, VTIO_DMA_FROM_DEVICE);
    }
    return NULL;
}

static void t_threads(void)
{
    struct rig r;
    struct vtio_host_options o = { .fq_size = 16, .fq_timeout_ms = 1 };
    struct vtio_machine_config mc = { .ram_size = RAM, .ncpus = 2 };
    rig_up_cfg(&r, RIG_LAZY, &mc, &o);
    enum { T = 3 };
    _Atomic unsigned wrong = 0;
    struct churn c[T];
    pthread_t t[T];
    for (int i = 0; i < T; i++) {
        c[i] = (struct churn){ .r = &r, .pa = rig_pages(&r, 0, 0), .wrong = &wrong };
        CHECK_EQ(pthread_create(&t[i], NULL, churn_main, &c[i]), 0);
    }
    for (int i = 0; i < T; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(atomic_load(&wrong), 0);
    struct vtio_dma_stats st = rig_stats(&r);
    CHECK_EQ(st.maps, T * 2000);
    CHECK_EQ(st.fq_queued, T * 2000);
    CHECK_GE(st.fq_full_flushes, 1);
    rig_down(&r);
}

static const struct vtio_test tests[] = {
    { "window", "after a strict unmap the device faults at once; after a lazy one it still "
      "reaches the page through the IOTLB until vtio_dma_flush", t_window },
    { "timeout", "the flush-queue timer invalidates by itself, and re-arms", t_timeout },
    { "full_ring", "queuing into a full ring invalidates at once and releases the ring",
      t_full_ring },
    { "no_early_reuse", "an IOVA waiting in the queue is not handed out again until its "
      "invalidation", t_no_early_reuse },
    { "destroy", "freeing a DMA-FQ domain releases every queued IOVA and table page",
      t_destroy },
    { "threads", "threads mapping and unmapping lazily at once (full rings, timer) each "
      "see their own page through every mapping", t_threads },
};

VTIO_TEST_MAIN(tests)
