/*
 * The strict-mode guarantee under concurrency, end to end: DMA API, IOVA
 * allocator, VT-d driver (page tables, queued invalidation and its wait),
 * and the VT-d unit (IOTLB, in-flight drain).
 *
 * A device thread keeps writing through an IOVA while the main thread
 * unmaps it (strict) and maps the same IOVA, which the allocator hands out
 * again at once from its cache, to a new owner's page, read-only for the
 * device.  When unmap returns, the old translation must be dead: the old
 * buffer never changes again, the new owner's page never receives the
 * writer's data, and the writer sees faults.  (Each write carries a new
 * sequence number, so a write that lands is seen.)  The device is a DMA port of
 * the device's requester id behind the unit, so every access is bracketed
 * for the unit's in-flight drain, as the machine's devices are.
 */
#include "host/test_dma_fixture.h"

#include <vtio/dma_port.h>

#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#define ROUNDS   1000
#define WAIT_NS  (5ull * 1000000000)     /* a test fails, never hangs */

struct writer {
    struct vtio_dma_port port;
    _Atomic uint64_t iova;              /* 0: idle */
    _Atomic uint64_t writes, faults, attempts;
    atomic_bool stop;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint8_t data[256];
    memset(data, 0xD0, sizeof(data));
    uint64_t seq = 0;
    while (!atomic_load(&w->stop)) {
        uint64_t iova = atomic_load(&w->iova);
        if (!iova) {
            sched_yield();
            continue;
        }
        seq++;                          /* every write differs from the last */
        memcpy(data + 8, &seq, sizeof(seq));
        if (vtio_dma_write(&w->port, iova, data, sizeof(data)) == 0)
            atomic_fetch_add(&w->writes, 1);
        else
            atomic_fetch_add(&w->faults, 1);
        atomic_fetch_add(&w->attempts, 1);
    }
    return NULL;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Waits (bounded) until *counter exceeds base. */
static bool wait_above(_Atomic uint64_t *counter, uint64_t base)
{
    uint64_t end = now_ns() + WAIT_NS;
    while (atomic_load(counter) <= base)
        if (now_ns() > end)
            return false;
        else
            sched_yield();
    return true;
}

static void t_strict_unmap_kills_writer(void)
{
    struct rig r;
    struct vtio_machine_config mc = { .ram_size = 512 * VTIO_MiB, .ncpus = 2 };
    rig_up_cfg(&r, RIG_STRICT, &mc, NULL);
    CHECK_EQ(vtio_iommu_domain_type(rig_domain(r.dev)), VTIO_IOMMU_DOMAIN_DMA);

    struct writer w = { 0 };
    vtio_dma_port_init(&w.port, r.m->mem, vtio_device_rid(r.dev));
    vtio_dma_port_set_translator(&w.port, vtio_vtd_translator(r.m->vtd));
    vtio_dma_port_set_bus_master(&w.port, true);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, writer_main, &w), 0);

    uint64_t old_pa = rig_pages(&r, 0, 0), new_pa = rig_pages(&r, 0, 0);
    uint8_t *old_buf = rig_va(&r, old_pa), *new_buf = rig_va(&r, new_pa);
    uint8_t snapshot[4096], owner_data[4096];
    unsigned reused = 0;
    for (int round = 0; round < ROUNDS; round++) {
        memset(old_buf, 0, 4096);
        vtio_test_fill(owner_data, sizeof(owner_data), (uint64_t)round + 1);
        memcpy(new_buf, owner_data, 4096);

        vtio_dma_addr_t a = vtio_dma_map_page(r.dev, old_pa, 4096, VTIO_DMA_FROM_DEVICE);
        CHECK_EQ(vtio_dma_mapping_error(r.dev, a), 0);
        uint64_t writes = atomic_load(&w.writes);
        atomic_store(&w.iova, a);
        CHECK(wait_above(&w.writes, writes));          /* the device is at it */

        vtio_dma_unmap_page(r.dev, a, 4096, VTIO_DMA_FROM_DEVICE);
        memcpy(snapshot, old_buf, 4096);               /* final: nothing lands after */
        CHECK(snapshot[0] == 0xD0);

        vtio_dma_addr_t b = vtio_dma_map_page(r.dev, new_pa, 4096, VTIO_DMA_TO_DEVICE);
        CHECK_EQ(vtio_dma_mapping_error(r.dev, b), 0);
        reused += b == a;
        uint64_t faults = atomic_load(&w.faults), attempts = atomic_load(&w.attempts);
        CHECK(wait_above(&w.attempts, attempts + 2));  /* the writer tried again */
        CHECK_MEM_EQ(old_buf, snapshot, 4096);
        CHECK_MEM_EQ(new_buf, owner_data, 4096);
        CHECK_GT(atomic_load(&w.faults), faults);      /* ... and was refused */
        atomic_store(&w.iova, 0);
        vtio_dma_unmap_page(r.dev, b, 4096, VTIO_DMA_TO_DEVICE);
    }
    atomic_store(&w.stop, true);
    pthread_join(t, NULL);
    /* The point of the exercise: the same IOVA went straight to a new owner. */
    CHECK_EQ(reused, ROUNDS);
    CHECK_EQ(rig_stats(&r).strict_syncs, 2 * ROUNDS);
    vtio_iommu_fault_sync(r.h);
    rig_down(&r);
}

static const struct vtio_test tests[] = {
    { "strict_unmap_kills_writer", "in strict mode, once unmap returns, a device still "
      "writing through the IOVA faults, the old buffer never changes again, and the IOVA's "
      "new owner never receives the old writer's data", t_strict_unmap_kills_writer },
};

VTIO_TEST_MAIN(tests)
