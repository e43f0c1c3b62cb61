/*
 * The DMA engine's host driver: its API contract and every error return.
 */
#include "harness.h"

#include <vtio/dev/dma_engine.h>
#include <vtio/drv/dma_engine.h>
#include <vtio/host.h>
#include <vtio/machine.h>
#include <vtio/mem.h>
#include <vtio/page_alloc.h>
#include <vtio/pci_enum.h>

#include <errno.h>

struct rig {
    struct vtio_machine *m;
    struct vtio_host *h;
    const struct vtio_pci_function *fn;
    struct vtio_dmae *dma;
    struct vtio_dmae_chan *ch;
    uint64_t a, b;               /* two 1 MiB buffers */
};

static void up(struct rig *r, unsigned ring_entries)
{
    struct vtio_machine_config mc = { .ram_size = 256 * VTIO_MiB };
    CHECK_OK(vtio_machine_create(&mc, &r->m));
    /* Physical addresses as DMA addresses: an identity domain. */
    struct vtio_host_options o = { .iommu_mode = VTIO_HOST_IOMMU_PASSTHROUGH };
    CHECK_OK(vtio_host_boot_opts(r->m, &o, &r->h));
    r->fn = vtio_pci_find(r->h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, 0);
    CHECK(r->fn != NULL);
    struct vtio_dmae_config cfg = { .ring_entries = ring_entries };
    CHECK_OK(vtio_dmae_probe(r->h, r->fn, &cfg, &r->dma));
    r->ch = vtio_dmae_chan(r->dma, 0);
    CHECK_OK(vtio_page_alloc(r->h->pages, 8, VTIO_PAGE_ZERO, &r->a));
    CHECK_OK(vtio_page_alloc(r->h->pages, 8, VTIO_PAGE_ZERO, &r->b));
}

static void down(struct rig *r)
{
    vtio_dmae_remove(r->dma);
    vtio_host_shutdown(r->h);
    vtio_machine_destroy(r->m);
}

static void t_probe_errors(void)
{
    struct rig r;
    up(&r, 0);
    struct vtio_dmae *d;
    struct vtio_pci_function other = *r.fn;
    other.device_id = 0x1234;
    CHECK_ERR(vtio_dmae_probe(r.h, &other, NULL, &d), -ENODEV);
    struct vtio_dmae_config bad = { .ring_entries = 3 };
    CHECK_ERR(vtio_dmae_probe(r.h, r.fn, &bad, &d), -EINVAL);
    bad.ring_entries = 8192;
    CHECK_ERR(vtio_dmae_probe(r.h, r.fn, &bad, &d), -EINVAL);
    CHECK(vtio_dmae_chan(r.dma, 4) == NULL);
    down(&r);
}

static void t_prep_errors(void)
{
    struct rig r;
    up(&r, 0);
    CHECK_ERR(vtio_dmae_prep_copy(r.ch, r.b, r.a, 0, 0), -EINVAL);
    CHECK_ERR(vtio_dmae_prep_copy(r.ch, r.b, r.a, 8, 0x80), -EINVAL);
    struct vtio_dmae_seg s1[1] = { { r.a, 100 } }, s2[1] = { { r.b, 99 } };
    CHECK_ERR(vtio_dmae_prep_copy_sg(r.ch, s2, 1, s1, 1, 0), -EINVAL);
    CHECK_ERR(vtio_dmae_prep_copy_sg(r.ch, s2, 0, s1, 1, 0), -EINVAL);
    CHECK_ERR(vtio_dmae_prep_copy_sg(r.ch, s2, VTIO_DMAE_MAX_SG + 1, s1, 1, 0), -EINVAL);
    /* A cookie that was never issued. */
    CHECK_ERR(vtio_dmae_wait(r.ch, 99, 0, NULL), -EINVAL);
    int64_t c = vtio_dmae_prep_copy(r.ch, r.b, r.a, 8, 0);
    CHECK_GT(c, 0);
    CHECK_ERR(vtio_dmae_poll(r.ch, c, NULL), -EINVAL);     /* prepared, not issued */
    vtio_dmae_issue(r.ch);
    CHECK_OK(vtio_dmae_wait(r.ch, c, 0, NULL));
    down(&r);
}

static void t_operations(void)
{
    struct rig r;
    up(&r, 0);
    uint8_t data[3000], got[3000];
    vtio_test_fill(data, sizeof(data), 5);
    vtio_mem_write(r.h->mem, r.a, data, sizeof(data));

    /* Copy, without an interrupt: wait polls. */
    int64_t c = vtio_dmae_prep_copy(r.ch, r.b, r.a, sizeof(data), 0);
    vtio_dmae_issue(r.ch);
    struct vtio_dmae_completion rec;
    CHECK_OK(vtio_dmae_wait(r.ch, c, 0, &rec));
    CHECK_EQ(rec.status, VTIO_DMAE_STATUS_SUCCESS);
    CHECK_EQ(rec.bytes, sizeof(data));
    CHECK_EQ(rec.cookie, c);
    vtio_mem_read(r.h->mem, r.b, got, sizeof(got));
    CHECK_MEM_EQ(got, data, sizeof(data));

    /* Compare: equal, then different at 2222. */
    c = vtio_dmae_prep_compare(r.ch, r.a, r.b, sizeof(data), VTIO_DMAE_FLAG_INTR);
    vtio_dmae_issue(r.ch);
    CHECK_OK(vtio_dmae_wait(r.ch, c, 0, &rec));
    CHECK_EQ(rec.result, 0);
    vtio_mem_write8(r.h->mem, r.b + 2222, (uint8_t)~data[2222]);
    c = vtio_dmae_prep_compare(r.ch, r.a, r.b, sizeof(data), VTIO_DMAE_FLAG_INTR);
    vtio_dmae_issue(r.ch);
    CHECK_OK(vtio_dmae_wait(r.ch, c, 0, &rec));
    CHECK_EQ(rec.result, 1);
    CHECK_EQ(rec.bytes, 2222);

    /* SG: gather three pieces into one. */
    struct vtio_dmae_seg src[3] = { { r.a, 10 }, { r.a + 100, 20 }, { r.a + 1000, 30 } };
    struct vtio_dmae_seg dst[1] = { { r.b + 4096, 60 } };
    c = vtio_dmae_prep_copy_sg(r.ch, dst, 1, src, 3, VTIO_DMAE_FLAG_INTR);
    vtio_dmae_issue(r.ch);
    CHECK_OK(vtio_dmae_wait(r.ch, c, 0, NULL));
    vtio_mem_read(r.h->mem, r.b + 4096, got, 60);
    CHECK_MEM_EQ(got, data, 10);
    CHECK_MEM_EQ(got + 10, data + 100, 20);
    CHECK_MEM_EQ(got + 30, data + 1000, 30);
    down(&r);
}

static void t_ring_full(void)
{
    struct rig r;
    up(&r, 4);
    int64_t c[3];     /* a ring of 4 holds 3: TAIL == HEAD would read as empty */
    for (int i = 0; i < 3; i++)
        CHECK_GT(c[i] = vtio_dmae_prep_fill(r.ch, r.b + 64 * i, i, 64, 0), 0);
    CHECK_ERR(vtio_dmae_prep_fill(r.ch, r.b, 0, 64, 0), -EBUSY);
    vtio_dmae_issue(r.ch);
    CHECK_OK(vtio_dmae_wait(r.ch, c[2], 0, NULL));
    /* Completed slots are reclaimed: the ring takes work again, many times round. */
    for (int i = 0; i < 40; i++) {
        int64_t k = vtio_dmae_prep_fill(r.ch, r.b, (uint64_t)i, 64, 0);
        CHECK_GT(k, 0);
        vtio_dmae_issue(r.ch);
        CHECK_OK(vtio_dmae_wait(r.ch, k, 0, NULL));
    }
    CHECK_OK(vtio_dmae_wait(r.ch, c[0], 0, NULL));    /* long reclaimed: still success */
    down(&r);
}

static void t_reclaimed_record(void)
{
    struct rig r;
    up(&r, 4);
    /* b differs from a (both zero) at byte 100. */
    vtio_mem_write8(r.h->mem, r.b + 100, 0x5a);
    int64_t cmp = vtio_dmae_prep_compare(r.ch, r.a, r.b, 4096, 0);
    CHECK_GT(cmp, 0);
    int64_t last = 0;
    for (int i = 0; i < 2; i++)
        CHECK_GT(last = vtio_dmae_prep_fill(r.ch, r.a + 8192, 0, 64, 0), 0);
    vtio_dmae_issue(r.ch);
    CHECK_OK(vtio_dmae_wait(r.ch, last, 0, NULL));
    /* The ring is full: this prep reclaims the compare's slot before anyone
     * waited for it; its waiter must still get the device's record. */
    CHECK_GT(vtio_dmae_prep_fill(r.ch, r.a + 8192, 0, 64, 0), 0);
    struct vtio_dmae_completion rec;
    CHECK_OK(vtio_dmae_wait(r.ch, cmp, 0, &rec));
    CHECK_EQ(rec.cookie, (uint64_t)cmp);
    CHECK_EQ(rec.result, 1);
    CHECK_EQ(rec.bytes, 100);
    down(&r);
}

static void t_halt_and_reset(void)
{
    struct rig r;
    up(&r, 8);
    const uint64_t hole = 0x7000000000ull;           /* no RAM or MMIO there */
    int64_t bad = vtio_dmae_prep_copy(r.ch, r.b, hole, 64, VTIO_DMAE_FLAG_INTR);
    int64_t behind = vtio_dmae_prep_fill(r.ch, r.b, 1, 64, VTIO_DMAE_FLAG_INTR);
    vtio_dmae_issue(r.ch);
    struct vtio_dmae_completion rec;
    CHECK_ERR(vtio_dmae_wait(r.ch, bad, 0, &rec), -EIO);
    CHECK_EQ(rec.status, VTIO_DMAE_ERR_SRC_FAULT);
    CHECK_EQ(rec.fault_addr, hole);
    CHECK_EQ(vtio_dmae_error(r.ch), VTIO_DMAE_ERR_SRC_FAULT);
    CHECK_ERR(vtio_dmae_wait(r.ch, behind, 0, NULL), -EIO);   /* stuck behind it */
    CHECK_ERR(vtio_dmae_prep_fill(r.ch, r.b, 0, 8, 0), -EIO);
    CHECK_EQ(vtio_mem_read64(r.h->mem, r.b), 0);               /* nothing was written */

    CHECK_OK(vtio_dmae_reset(r.ch));
    CHECK_EQ(vtio_dmae_error(r.ch), 0);
    CHECK_ERR(vtio_dmae_wait(r.ch, behind, 0, NULL), -ECANCELED);
    int64_t c = vtio_dmae_prep_fill(r.ch, r.b, 0x4242424242424242ull, 8, VTIO_DMAE_FLAG_INTR);
    CHECK_GT(c, behind);
    vtio_dmae_issue(r.ch);
    CHECK_OK(vtio_dmae_wait(r.ch, c, 0, NULL));
    CHECK_EQ(vtio_mem_read64(r.h->mem, r.b), 0x4242424242424242ull);
    down(&r);
}

/* A waiter that sees the halt must also see the record written before it,
 * however the two race (the device writes the record, then halts). */
static void t_halt_record_race(void)
{
    struct rig r;
    up(&r, 8);
    const uint64_t hole = 0x7000000000ull;
    unsigned without_record = 0;
    for (unsigned i = 0; i < 3000; i++) {
        int64_t c = vtio_dmae_prep_copy(r.ch, r.b, hole, 64, i & 1 ? VTIO_DMAE_FLAG_INTR : 0);
        CHECK_GT(c, 0);
        vtio_dmae_issue(r.ch);
        struct vtio_dmae_completion rec;
        memset(&rec, 0, sizeof(rec));
        CHECK_ERR(vtio_dmae_wait(r.ch, c, 0, &rec), -EIO);
        without_record += rec.status != VTIO_DMAE_ERR_SRC_FAULT;
        CHECK_OK(vtio_dmae_reset(r.ch));
    }
    CHECK_EQ(without_record, 0);
    down(&r);
}

static const struct vtio_test tests[] = {
    { "probe_errors", "probe refuses other devices (-ENODEV) and bad ring sizes (-EINVAL)",
      t_probe_errors },
    { "prep_errors", "bad lengths, flags, SG lists and unissued cookies give -EINVAL",
      t_prep_errors },
    { "operations", "copy, compare and SG copy through the driver return the right records",
      t_operations },
    { "ring_full", "a full ring gives -EBUSY and completed slots are reclaimed",
      t_ring_full },
    { "reclaimed_record", "a cookie whose slot another prep reclaimed still yields the "
      "device's record (compare result and offset)", t_reclaimed_record },
    { "halt_and_reset", "a fault halts the channel (-EIO, record, error register), "
      "reset cancels queued work and the channel works again", t_halt_and_reset },
    { "halt_record_race", "a wait that fails on a halt always returns the failed "
      "descriptor's record, even when the halt is seen before the record", t_halt_record_race },
};
VTIO_TEST_MAIN(tests)
