/*
 * Tests of PCI enumeration and MSI-X (include/vtio/pci_enum.h) and of host
 * boot: machines built with vtio_machine_create(), some with extra
 * functions plugged in by the test (that part plays the hardware vendor).
 */
#include <vtio/dev/dma_engine.h>
#include <vtio/host.h>
#include <vtio/machine.h>
#include <vtio/page_alloc.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "harness.h"

#define ENGINE_RID(i) VTIO_PCI_RID(0, VTIO_MACHINE_FIRST_DEV + (i), 0)

static struct vtio_machine *mk_machine(unsigned engines)
{
    struct vtio_machine_config cfg = { .ram_size = 256 * VTIO_MiB, .dma_engines = engines };
    struct vtio_machine *m = NULL;
    CHECK_OK(vtio_machine_create(&cfg, &m));
    return m;
}

static struct vtio_host *boot(struct vtio_machine *m)
{
    struct vtio_host *h = NULL;
    struct vtio_host_options o = { .iommu_off = true };   /* enumeration only */
    CHECK_OK(vtio_host_boot_opts(m, &o, &h));
    CHECK(h && h->pci && h->pages);
    return h;
}

static bool in_window(uint64_t base, uint64_t size, uint64_t wbase, uint64_t wsize)
{
    return base >= wbase && size <= wsize && base - wbase <= wsize - size;
}

/* Every placed BAR: inside its window, aligned, disjoint from all others. */
static void check_bars(struct vtio_host *h)
{
    const struct vtio_firmware *fw = &h->fw;
    unsigned n = vtio_pci_count(h->pci);
    for (unsigned i = 0; i < n; i++) {
        const struct vtio_pci_function *f = vtio_pci_get(h->pci, i);
        for (unsigned b = 0; b < VTIO_PCI_NUM_BARS; b++) {
            const struct vtio_pci_bar *x = &f->bar[b];
            if (!x->size)
                continue;
            CHECK_EQ(x->base & (x->size - 1), 0);
            if (x->is_64bit)
                CHECK(in_window(x->base, x->size, fw->mmio64_base, fw->mmio64_size));
            else
                CHECK(in_window(x->base, x->size, fw->mmio32_base, fw->mmio32_size));
            /* the BAR register holds the address software chose */
            uint64_t reg = vtio_pci_cfg_read32(f, (uint16_t)(VTIO_PCI_BAR0 + 4 * b)) & ~0xfull;
            if (x->is_64bit)
                reg |= (uint64_t)vtio_pci_cfg_read32(f, (uint16_t)(VTIO_PCI_BAR0 + 4 * b + 4)) << 32;
            CHECK_EQ(reg, x->base);
            for (unsigned j = 0; j < n; j++) {
                const struct vtio_pci_function *g = vtio_pci_get(h->pci, j);
                for (unsigned c = 0; c < VTIO_PCI_NUM_BARS; c++) {
                    const struct vtio_pci_bar *y = &g->bar[c];
                    if (!y->size || (i == j && b == c))
                        continue;
                    CHECKF(x->base + x->size <= y->base || y->base + y->size <= x->base,
                           "BAR %u of %04x overlaps BAR %u of %04x", b, f->rid, c, g->rid);
                }
            }
        }
        if (f->bar[0].size || f->bar[2].size)
            CHECK(vtio_pci_cfg_read16(f, VTIO_PCI_COMMAND) & VTIO_PCI_COMMAND_MEM);
    }
}

static void check_engine(const struct vtio_pci_function *f, unsigned i)
{
    CHECK(f);
    CHECK_EQ(f->rid, ENGINE_RID(i));
    CHECK_EQ(f->segment, 0);
    CHECK_EQ(f->bus, 0);
    CHECK_EQ(f->dev, VTIO_MACHINE_FIRST_DEV + i);
    CHECK_EQ(f->fn, 0);
    CHECK_EQ(f->vendor_id, VTIO_DMAE_VENDOR_ID);
    CHECK_EQ(f->device_id, VTIO_DMAE_DEVICE_ID);
    CHECK_EQ(f->class_code, VTIO_DMAE_CLASS);
    CHECK_EQ(f->revision, VTIO_DMAE_REVISION);
    CHECK_EQ(f->header_type & 0x7f, 0);
    CHECK_EQ(f->bar[VTIO_DMAE_BAR_REGS].size, VTIO_DMAE_REGS_SIZE);
    CHECK(f->bar[VTIO_DMAE_BAR_REGS].is_64bit);
    CHECK_EQ(f->bar[VTIO_DMAE_BAR_REGS + 1].size, 0);
    CHECK_EQ(f->bar[VTIO_DMAE_BAR_MSIX].size, VTIO_DMAE_MSIX_SIZE);
    CHECK(f->bar[VTIO_DMAE_BAR_MSIX].is_64bit);
    CHECK_EQ(f->bar[VTIO_DMAE_BAR_MSIX + 1].size, 0);
    /* the registers answer where the BAR was placed */
    struct vtio_mmio regs;
    CHECK_OK(vtio_pci_bar_mmio(f, VTIO_DMAE_BAR_REGS, &regs));
    CHECK_EQ(regs.base, f->bar[0].base);
    CHECK_EQ(regs.size, VTIO_DMAE_REGS_SIZE);
    CHECK_EQ(vtio_mmio_read32(&regs, VTIO_DMAE_ID),
             (uint32_t)VTIO_DMAE_VENDOR_ID << 16 | VTIO_DMAE_DEVICE_ID);
}

static void t_default(void)
{
    struct vtio_machine *m = mk_machine(0);
    struct vtio_host *h = boot(m);
    CHECK_EQ(vtio_pci_count(h->pci), 1);
    const struct vtio_pci_function *f = vtio_pci_find(h->pci, VTIO_DMAE_VENDOR_ID,
                                                      VTIO_DMAE_DEVICE_ID, 0);
    check_engine(f, 0);
    CHECK(vtio_pci_get(h->pci, 0) == f);
    CHECK(vtio_pci_get(h->pci, 1) == NULL);
    CHECK(vtio_pci_find_rid(h->pci, ENGINE_RID(0)) == f);
    CHECK(vtio_pci_find(h->pci, VTIO_PCI_ANY_ID, VTIO_PCI_ANY_ID, 0) == f);
    CHECK(vtio_pci_find(h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, 1) == NULL);
    CHECK(vtio_pci_find(h->pci, VTIO_DMAE_VENDOR_ID, 0x1234, 0) == NULL);
    /* decoded fields agree with config space */
    CHECK_EQ(vtio_pci_cfg_read16(f, VTIO_PCI_VENDOR_ID), VTIO_DMAE_VENDOR_ID);
    CHECK_EQ(vtio_pci_cfg_read8(f, VTIO_PCI_REVISION_ID), VTIO_DMAE_REVISION);
    CHECK_EQ(vtio_pci_cfg_read32(f, VTIO_PCI_VENDOR_ID),
             (uint32_t)VTIO_DMAE_DEVICE_ID << 16 | VTIO_DMAE_VENDOR_ID);
    CHECK_EQ(vtio_pci_cfg_read32(f, 3), ~0u);             /* misaligned */
    CHECK_EQ(vtio_pci_cfg_read16(f, 4096), 0xffff);       /* beyond the space */
    struct vtio_mmio x;
    CHECK_ERR(vtio_pci_bar_mmio(f, 1, &x), -EINVAL);      /* upper half */
    CHECK_ERR(vtio_pci_bar_mmio(f, 4, &x), -EINVAL);      /* empty */
    CHECK_ERR(vtio_pci_bar_mmio(f, 6, &x), -EINVAL);
    check_bars(h);
    /* the allocator keeps the first 1 MiB out */
    struct vtio_page_alloc_stats st;
    vtio_page_alloc_get_stats(h->pages, &st);
    CHECK_EQ(st.total_bytes, 256 * VTIO_MiB);
    CHECK_EQ(st.reserved_bytes, VTIO_MiB);
    vtio_host_shutdown(h);
    vtio_machine_destroy(m);
}

static void t_caps(void)
{
    struct vtio_machine *m = mk_machine(0);
    struct vtio_host *h = boot(m);
    const struct vtio_pci_function *f = vtio_pci_get(h->pci, 0);
    CHECK(f);
    CHECK_NE(f->cap_msix, 0);
    CHECK_NE(f->cap_exp, 0);
    CHECK_EQ(vtio_pci_cfg_read8(f, f->cap_msix), VTIO_PCI_CAP_ID_MSIX);
    CHECK_EQ(vtio_pci_cfg_read8(f, f->cap_exp), VTIO_PCI_CAP_ID_EXP);
    CHECK_GE(f->msix_table_size, 4);                      /* one per channel */
    CHECK_EQ(f->msix_table_bir, VTIO_DMAE_BAR_MSIX);
    CHECK_EQ(f->msix_table_offset, VTIO_DMAE_MSIX_TABLE);
    CHECK_EQ(f->msix_pba_bir, VTIO_DMAE_BAR_MSIX);
    CHECK_EQ(f->msix_pba_offset, VTIO_DMAE_MSIX_PBA);
    vtio_host_shutdown(h);
    vtio_machine_destroy(m);
}

static void t_several(void)
{
    struct vtio_machine *m = mk_machine(3);
    struct vtio_host *h = boot(m);
    CHECK_EQ(vtio_pci_count(h->pci), 3);
    for (unsigned i = 0; i < 3; i++) {
        const struct vtio_pci_function *f =
            vtio_pci_find(h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, i);
        check_engine(f, i);
        CHECK(vtio_pci_get(h->pci, i) == f);              /* scan order */
    }
    check_bars(h);
    vtio_host_shutdown(h);
    vtio_machine_destroy(m);
}

static void t_none(void)
{
    struct vtio_machine *m = mk_machine(-1u);
    struct vtio_host *h = boot(m);
    CHECK_EQ(vtio_pci_count(h->pci), 0);
    CHECK(vtio_pci_get(h->pci, 0) == NULL);
    CHECK(vtio_pci_find(h->pci, VTIO_PCI_ANY_ID, VTIO_PCI_ANY_ID, 0) == NULL);
    CHECK(vtio_pci_find_rid(h->pci, ENGINE_RID(0)) == NULL);
    vtio_host_shutdown(h);
    vtio_machine_destroy(m);
}

/* ---- extra functions plugged in by the test */

static uint64_t dummy_read(void *opaque, uint64_t off, unsigned size)
{
    (void)size;
    return (uint64_t)(uintptr_t)opaque + off;
}

static void dummy_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    (void)opaque, (void)off, (void)val, (void)size;
}

static const struct vtio_mmio_ops dummy_ops = { dummy_read, dummy_write };

static void plug(struct vtio_machine *m, uint8_t bus, uint8_t dev, uint8_t fn, bool multi,
                 uint64_t bar0_32bit, uint64_t bar2_64bit)
{
    struct vtio_pci_dev_info info = {
        .name = "test",
        .vendor_id = 0x1af4,
        .device_id = (uint16_t)(0x1000 + (bus << 8 | dev << 3 | fn)),
        .class_code = 0xff0000,
        .revision = 7,
        .multifunction = multi,
    };
    if (bar0_32bit)
        info.bar[0] = (struct vtio_pci_bar_info){ .size = bar0_32bit, .ops = &dummy_ops,
                                                  .opaque = (void *)(uintptr_t)0x1000 };
    if (bar2_64bit)
        info.bar[2] = (struct vtio_pci_bar_info){ .size = bar2_64bit, .is_64bit = true,
                                                  .prefetchable = true, .ops = &dummy_ops };
    struct vtio_pci_dev *d;
    CHECK_OK(vtio_pci_dev_create(m->pci, bus, VTIO_PCI_DEVFN(dev, fn), &info, &d));
}

static void t_topology(void)
{
    struct vtio_machine *m = mk_machine(0);
    plug(m, 0, 16, 0, true, 4096, 0);       /* multifunction: fns 0, 2, 7 */
    plug(m, 0, 16, 2, false, 0, 1 << 20);
    plug(m, 0, 16, 7, false, 256, 0);
    plug(m, 0, 17, 0, false, 8192, 0);      /* single function ... */
    plug(m, 0, 17, 3, false, 4096, 0);      /* ... so fn 3 is not looked at */
    plug(m, 0, 18, 1, false, 4096, 0);      /* no fn 0: nothing there */
    plug(m, 7, 0, 0, false, 0, 4ull << 30); /* another bus, a 4 GiB BAR */
    plug(m, 255, 31, 0, false, 16, 16);     /* the last slot, tiny BARs */
    struct vtio_host *h = boot(m);
    static const uint16_t want[] = {
        VTIO_PCI_RID(0, 3, 0), VTIO_PCI_RID(0, 16, 0), VTIO_PCI_RID(0, 16, 2),
        VTIO_PCI_RID(0, 16, 7), VTIO_PCI_RID(0, 17, 0), VTIO_PCI_RID(7, 0, 0),
        VTIO_PCI_RID(255, 31, 0),
    };
    CHECK_EQ(vtio_pci_count(h->pci), sizeof(want) / sizeof(want[0]));
    for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct vtio_pci_function *f = vtio_pci_get(h->pci, i);
        CHECK_EQ(f->rid, want[i]);
        CHECK_EQ(f->bus, VTIO_PCI_RID_BUS(want[i]));
        CHECK_EQ(f->dev, VTIO_PCI_RID_DEV(want[i]));
        CHECK_EQ(f->fn, VTIO_PCI_RID_FN(want[i]));
        if (i > 0) {
            CHECK_EQ(f->vendor_id, 0x1af4);
            CHECK_EQ(f->device_id, (uint16_t)(0x1000 + want[i]));
            CHECK_EQ(f->class_code, 0xff0000);
            CHECK_EQ(f->revision, 7);
        }
    }
    CHECK(vtio_pci_find_rid(h->pci, VTIO_PCI_RID(0, 17, 3)) == NULL);
    CHECK(vtio_pci_find_rid(h->pci, VTIO_PCI_RID(0, 18, 1)) == NULL);
    CHECK(vtio_pci_get(h->pci, 1)->header_type & VTIO_PCI_HEADER_TYPE_MULTIFUNCTION);

    const struct vtio_pci_function *f = vtio_pci_find_rid(h->pci, VTIO_PCI_RID(0, 16, 7));
    CHECK_EQ(f->bar[0].size, 256);
    CHECK(!f->bar[0].is_64bit);
    CHECK_EQ(f->cap_msix, 0);
    f = vtio_pci_find_rid(h->pci, VTIO_PCI_RID(0, 16, 2));
    CHECK_EQ(f->bar[2].size, 1 << 20);
    CHECK(f->bar[2].prefetchable);
    f = vtio_pci_find_rid(h->pci, VTIO_PCI_RID(7, 0, 0));
    CHECK_EQ(f->bar[2].size, 4ull << 30);
    f = vtio_pci_find_rid(h->pci, VTIO_PCI_RID(0, 16, 0));
    struct vtio_mmio r;
    CHECK_OK(vtio_pci_bar_mmio(f, 0, &r));
    CHECK_EQ(vtio_mmio_read32(&r, 0x40), 0x1040);          /* the dummy answers */
    check_bars(h);
    vtio_host_shutdown(h);
    vtio_machine_destroy(m);
}

static void t_nospace(void)
{
    struct vtio_machine *m = mk_machine(0);
    plug(m, 0, 20, 0, false, 256 * VTIO_MiB, 0);
    plug(m, 0, 21, 0, false, 256 * VTIO_MiB, 0);
    plug(m, 0, 22, 0, false, 4096, 0);     /* 512 MiB + 4 KiB > the window */
    struct vtio_host *h = NULL;
    CHECK_ERR(vtio_host_boot(m, &h), -ENOSPC);
    CHECK(h == NULL);
    /* nothing was placed or decoded */
    uint64_t cfg = m->fw.ecam_base + ((uint64_t)VTIO_PCI_DEVFN(20, 0) << 12);
    CHECK_EQ(vtio_mem_read32(m->mem, cfg + VTIO_PCI_BAR0) & ~0xfu, 0);
    CHECK_EQ(vtio_mem_read16(m->mem, cfg + VTIO_PCI_COMMAND) & VTIO_PCI_COMMAND_MEM, 0);
    vtio_machine_destroy(m);
}

/* ---- MSI-X */

struct counter {
    atomic_uint n;
    atomic_uint cpu, vector;
};

static void on_irq(void *opaque, unsigned cpu, unsigned vector)
{
    struct counter *c = opaque;
    atomic_store(&c->cpu, cpu);
    atomic_store(&c->vector, vector);
    atomic_fetch_add(&c->n, 1);
}

static uint32_t entry32(const struct vtio_mmio *t, unsigned i, unsigned off)
{
    return vtio_mmio_read32(t, (uint64_t)i * VTIO_PCI_MSIX_ENTRY_SIZE + off);
}

static void t_msix(void)
{
    struct vtio_machine *m = mk_machine(0);
    struct vtio_host *h = boot(m);
    const struct vtio_pci_function *f = vtio_pci_get(h->pci, 0);
    struct vtio_mmio t = { .mem = f->mem, .base = f->bar[f->msix_table_bir].base +
                                                  f->msix_table_offset,
                           .size = f->msix_table_size * 16ull };
    struct counter c = { 0 };
    uint16_t flags_at = (uint16_t)(f->cap_msix + VTIO_PCI_MSIX_FLAGS);

    CHECK_ERR(vtio_pci_request_irq(h, f, 0, on_irq, &c, 0), -EINVAL);  /* not enabled */
    CHECK_ERR(vtio_pci_msix_disable(h, f), -EINVAL);
    CHECK_ERR(vtio_pci_msix_enable(h, f, 0), -EINVAL);
    CHECK_ERR(vtio_pci_msix_enable(h, f, f->msix_table_size + 1), -EINVAL);
    struct vtio_pci_function stranger = *f;
    stranger.priv = NULL;
    CHECK_ERR(vtio_pci_msix_enable(h, &stranger, 1), -EINVAL);
    CHECK_EQ(vtio_pci_cfg_read16(f, flags_at) & VTIO_PCI_MSIX_FLAGS_ENABLE, 0);

    CHECK_OK(vtio_pci_msix_enable(h, f, 2));
    CHECK_ERR(vtio_pci_msix_enable(h, f, 2), -EBUSY);
    uint16_t flags = vtio_pci_cfg_read16(f, flags_at);
    CHECK(flags & VTIO_PCI_MSIX_FLAGS_ENABLE);
    CHECK(!(flags & VTIO_PCI_MSIX_FLAGS_MASKALL));
    CHECK(vtio_pci_cfg_read16(f, VTIO_PCI_COMMAND) & VTIO_PCI_COMMAND_INTX_DISABLE);
    for (unsigned i = 0; i < f->msix_table_size; i++)
        CHECK(entry32(&t, i, VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL) & 1);

    CHECK_ERR(vtio_pci_request_irq(h, f, 2, on_irq, &c, 0), -EINVAL);   /* index */
    CHECK_ERR(vtio_pci_request_irq(h, f, 0, NULL, &c, 0), -EINVAL);
    CHECK_ERR(vtio_pci_request_irq(h, f, 0, on_irq, &c, 99), -EINVAL);  /* cpu */
    CHECK_OK(vtio_pci_request_irq(h, f, 1, on_irq, &c, 2));
    unsigned cpu, vec;
    CHECK_OK(vtio_pci_irq_vector(h, f, 1, &cpu, &vec));
    CHECK_EQ(cpu, 2);
    CHECK_GE(vec, VTIO_INTR_FIRST_VECTOR);
    CHECK_EQ(entry32(&t, 1, VTIO_PCI_MSIX_ENTRY_LOWER_ADDR), 0xfee02000u);
    CHECK_EQ(entry32(&t, 1, VTIO_PCI_MSIX_ENTRY_UPPER_ADDR), 0);
    CHECK_EQ(entry32(&t, 1, VTIO_PCI_MSIX_ENTRY_DATA), vec);
    CHECK_EQ(entry32(&t, 1, VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL) & 1, 0);
    CHECK(entry32(&t, 0, VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL) & 1);
    CHECK_ERR(vtio_pci_request_irq(h, f, 1, on_irq, &c, 2), -EBUSY);
    CHECK_ERR(vtio_pci_irq_vector(h, f, 0, &cpu, &vec), -ENOENT);

    /* the message, written as the device would write it, reaches on_irq */
    vtio_mem_write32(m->mem, 0xfee02000u, vec);
    CHECK_EQ(atomic_load(&c.n), 1);
    CHECK_EQ(atomic_load(&c.cpu), 2);
    CHECK_EQ(atomic_load(&c.vector), vec);

    CHECK_OK(vtio_pci_request_irq(h, f, 0, on_irq, &c, VTIO_PCI_IRQ_ANY_CPU));
    unsigned cpu0;
    CHECK_OK(vtio_pci_irq_vector(h, f, 0, &cpu0, NULL));
    CHECK_LT(cpu0, m->fw.ncpus);

    CHECK_OK(vtio_pci_free_irq(h, f, 1));
    CHECK(entry32(&t, 1, VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL) & 1);
    CHECK_ERR(vtio_pci_free_irq(h, f, 1), -ENOENT);
    CHECK_ERR(vtio_pci_free_irq(h, f, 5), -EINVAL);
    vtio_mem_write32(m->mem, 0xfee02000u, vec);             /* now spurious */
    CHECK_EQ(atomic_load(&c.n), 1);

    CHECK_OK(vtio_pci_msix_disable(h, f));                  /* frees entry 0 too */
    CHECK_EQ(vtio_pci_cfg_read16(f, flags_at) & VTIO_PCI_MSIX_FLAGS_ENABLE, 0);
    CHECK_EQ(vtio_pci_cfg_read16(f, VTIO_PCI_COMMAND) & VTIO_PCI_COMMAND_INTX_DISABLE, 0);
    CHECK_ERR(vtio_pci_request_irq(h, f, 0, on_irq, &c, 0), -EINVAL);
    CHECK_OK(vtio_pci_msix_enable(h, f, f->msix_table_size));   /* again, all of it */
    CHECK_OK(vtio_pci_request_irq(h, f, f->msix_table_size - 1, on_irq, &c, 0));
    vtio_host_shutdown(h);                                  /* releases it */
    vtio_machine_destroy(m);
}

/* ---- an interrupt from the DMA engine itself */

static bool wait_count(struct counter *c, unsigned n)
{
    struct timespec ts = { 0, 1000000 };
    for (int i = 0; i < 5000 && atomic_load(&c->n) < n; i++)
        nanosleep(&ts, NULL);
    return atomic_load(&c->n) >= n;
}

/* Runs one NOP|INTR descriptor on channel 0 of the engine. */
static void run_nop(struct vtio_host *h, const struct vtio_pci_function *f, uint64_t ring)
{
    struct vtio_dmae_desc d = { .op_flags = VTIO_DMAE_OP_FLAGS(VTIO_DMAE_OP_NOP,
                                                               VTIO_DMAE_FLAG_INTR) };
    vtio_mem_write(h->mem, ring, &d, sizeof(d));
    struct vtio_mmio regs;
    CHECK_OK(vtio_pci_bar_mmio(f, VTIO_DMAE_BAR_REGS, &regs));
    uint64_t ch = VTIO_DMAE_CHAN_BASE(0);
    vtio_mmio_write64(&regs, ch + VTIO_DMAE_RING_BASE, ring);
    vtio_mmio_write32(&regs, ch + VTIO_DMAE_RING_SIZE, 4);
    vtio_mmio_write32(&regs, ch + VTIO_DMAE_INT_VEC, 0);
    vtio_mmio_write32(&regs, ch + VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN | VTIO_DMAE_CTRL_IE);
    vtio_mmio_write32(&regs, ch + VTIO_DMAE_TAIL, 1);
    struct timespec ts = { 0, 1000000 };
    for (int i = 0; i < 5000 && vtio_mmio_read32(&regs, ch + VTIO_DMAE_HEAD) != 1; i++)
        nanosleep(&ts, NULL);
    CHECK_EQ(vtio_mmio_read32(&regs, ch + VTIO_DMAE_HEAD), 1);
}

static void t_device_irq(void)
{
    struct vtio_machine *m = mk_machine(0);
    struct vtio_host *h = boot(m);
    const struct vtio_pci_function *f = vtio_pci_get(h->pci, 0);
    uint64_t ring;
    CHECK_OK(vtio_page_alloc(h->pages, 0, VTIO_PAGE_ZERO | VTIO_PAGE_DMA32, &ring));
    vtio_pci_set_master(f, true);
    CHECK(vtio_pci_cfg_read16(f, VTIO_PCI_COMMAND) & VTIO_PCI_COMMAND_MASTER);
    struct counter c = { 0 };
    CHECK_OK(vtio_pci_msix_enable(h, f, 1));
    CHECK_OK(vtio_pci_request_irq(h, f, 0, on_irq, &c, 1));
    unsigned vec;
    CHECK_OK(vtio_pci_irq_vector(h, f, 0, NULL, &vec));
    run_nop(h, f, ring);
    CHECK(wait_count(&c, 1));
    CHECK_EQ(atomic_load(&c.cpu), 1);
    CHECK_EQ(atomic_load(&c.vector), vec);
    CHECK_EQ(vtio_intr_count(h->intr, 1, vec), 1);
    uint64_t cfg = f->cfg_base, msix = cfg + f->cap_msix + VTIO_PCI_MSIX_FLAGS;
    vtio_host_shutdown(h);
    /* shutdown stopped the device's DMA and its MSI-X */
    CHECK_EQ(vtio_mem_read16(m->mem, cfg + VTIO_PCI_COMMAND) & VTIO_PCI_COMMAND_MASTER, 0);
    CHECK_EQ(vtio_mem_read16(m->mem, msix) & VTIO_PCI_MSIX_FLAGS_ENABLE, 0);
    vtio_machine_destroy(m);
}

/* A vector raised while masked waits in the PBA and arrives on request_irq. */
static void t_pending(void)
{
    struct vtio_machine *m = mk_machine(0);
    struct vtio_host *h = boot(m);
    const struct vtio_pci_function *f = vtio_pci_get(h->pci, 0);
    uint64_t ring;
    CHECK_OK(vtio_page_alloc(h->pages, 0, VTIO_PAGE_ZERO, &ring));
    vtio_pci_set_master(f, true);
    CHECK_OK(vtio_pci_msix_enable(h, f, 1));
    run_nop(h, f, ring);
    struct vtio_mmio pba = { .mem = f->mem, .base = f->bar[f->msix_pba_bir].base +
                                                    f->msix_pba_offset, .size = 8 };
    CHECK_EQ(vtio_mmio_read64(&pba, 0) & 1, 1);
    struct counter c = { 0 };
    CHECK_OK(vtio_pci_request_irq(h, f, 0, on_irq, &c, 0));
    CHECK(wait_count(&c, 1));
    CHECK_EQ(vtio_mmio_read64(&pba, 0) & 1, 0);
    uint64_t cfg = f->cfg_base;
    vtio_host_shutdown(h);
    CHECK_EQ(vtio_mem_read16(m->mem, cfg + VTIO_PCI_COMMAND) & VTIO_PCI_COMMAND_MASTER, 0);
    vtio_machine_destroy(m);
}

static const struct vtio_test tests[] = {
    { "default", "the default machine's DMA engine is found at 00:03.0 with its ids, class and reachable BARs", t_default },
    { "caps", "the capability list is walked and the MSI-X table and PBA are located in BAR2", t_caps },
    { "several", "three engines are all found, in slot order, with disjoint aligned BARs", t_several },
    { "none", "a machine without devices enumerates to an empty list", t_none },
    { "topology", "multifunction devices, missing functions, other buses and odd BAR sizes are handled", t_topology },
    { "nospace", "BARs that overflow the 32-bit window fail boot with -ENOSPC and place nothing", t_nospace },
    { "msix", "MSI-X enable masks everything, request_irq programs and unmasks an entry, free and disable undo it", t_msix },
    { "device_irq", "a DMA engine descriptor with FLAG_INTR reaches the requested handler", t_device_irq },
    { "pending", "a vector raised while masked stays pending and is delivered on request_irq", t_pending },
};

VTIO_TEST_MAIN(tests)
