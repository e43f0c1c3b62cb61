/*
 * The rogue device: its accesses land through its DMA port, bus mastering
 * stops it unless it ignores BME, its forged requester id is what a
 * translator sees, its loop counts what got through after a mark, its
 * MSI-X vectors reach a handler, and its registers and reset behave.
 *
 * The machine has no IOMMU (DMA addresses are physical) and the rogue at
 * 01:00.0 behind the root port, ACS off: nothing stands in its way unless a
 * test puts something there.
 */
#include <vtio/dev/rogue.h>
#include <vtio/host.h>
#include <vtio/intr.h>
#include <vtio/machine.h>
#include <vtio/mem.h>
#include <vtio/mmio.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>

#include "harness.h"

#define ROGUE_RID  VTIO_PCI_RID(VTIO_MACHINE_ROGUE_BUS, 0, 0)
#define ENGINE_RID VTIO_PCI_RID(0, VTIO_MACHINE_FIRST_DEV, 0)
#define BUF_PA     0x200000ull
#define HOLE_PA    0x20000000000ull      /* 2 TiB: nothing there */

static struct vtio_machine *m;
static struct vtio_rogue *r;

static void down(void)
{
    vtio_machine_destroy(m);
    m = NULL, r = NULL;
}

static void up(void)
{
    down();
    struct vtio_machine_config mc = { .ram_size = 64 * VTIO_MiB, .no_iommu = true,
                                      .rogue = true };
    CHECK_OK(vtio_machine_create(&mc, &m));
    r = m->rogue;
    CHECK(r != NULL);
    CHECK_EQ(vtio_pci_dev_rid(vtio_rogue_pci(r)), ROGUE_RID);
}

static void set_command(uint16_t cmd)
{
    vtio_pci_cfg_write(m->pci, ROGUE_RID, VTIO_PCI_COMMAND, cmd, 2);
}

static struct vtio_dma_port_stats port_stats(void)
{
    struct vtio_dma_port_stats st;
    vtio_dma_port_get_stats(vtio_pci_dev_dma_port(vtio_rogue_pci(r)), &st);
    return st;
}

/* ---- a translator that lets everything through and remembers who asked */

struct recorder {
    _Atomic unsigned calls;
    _Atomic uint16_t last_rid;
};

static int rec_translate(void *opaque, uint16_t rid, uint64_t iova, uint64_t len,
                         enum vtio_dma_access access, uint64_t *pa, uint64_t *span)
{
    struct recorder *rec = opaque;
    (void)access;
    atomic_fetch_add(&rec->calls, 1);
    atomic_store(&rec->last_rid, rid);
    *pa = iova;
    *span = len;
    return 0;
}

static int rec_msi(void *opaque, uint16_t rid, uint64_t addr, uint32_t data)
{
    struct recorder *rec = opaque;
    (void)addr, (void)data;
    atomic_fetch_add(&rec->calls, 1);
    atomic_store(&rec->last_rid, rid);
    return 0;           /* handled (as a remapping unit would) */
}

static const struct vtio_dma_translator_ops rec_ops = { .translate = rec_translate,
                                                        .msi = rec_msi };

/* ---- interrupts */

static _Atomic unsigned irqs;

static void count_irq(void *opaque, unsigned cpu, unsigned vector)
{
    (void)opaque, (void)cpu, (void)vector;
    atomic_fetch_add(&irqs, 1);
}

/* ---- tests */

static void t_accesses_land(void)
{
    up();
    set_command(VTIO_PCI_COMMAND_MASTER);
    uint8_t out[64], in[64], back[64];
    vtio_test_fill(out, sizeof(out), 1);
    CHECK_OK(vtio_rogue_write(r, BUF_PA, out, sizeof(out)));
    vtio_mem_read(m->mem, BUF_PA, back, sizeof(back));
    CHECK_MEM_EQ(back, out, sizeof(out));
    vtio_test_fill(back, sizeof(back), 2);
    vtio_mem_write(m->mem, BUF_PA + 4096, back, sizeof(back));
    CHECK_OK(vtio_rogue_read(r, BUF_PA + 4096, in, sizeof(in)));
    CHECK_MEM_EQ(in, back, sizeof(in));
    CHECK_ERR(vtio_rogue_read(r, HOLE_PA, in, sizeof(in)), -EFAULT);

    atomic_store(&irqs, 0);
    int vec = vtio_intr_alloc_vector(m->intr, 1, count_irq, NULL);
    CHECK_OK(vec);
    uint64_t addr;
    uint32_t data;
    vtio_msi_compose(1, (unsigned)vec, &addr, &data);
    CHECK_OK(vtio_rogue_msi(r, addr, data));
    CHECK_EQ(atomic_load(&irqs), 1);
    struct vtio_dma_port_stats st = port_stats();
    CHECK_EQ(st.writes, 1);
    CHECK_EQ(st.reads, 1);
    CHECK_EQ(st.msis, 1);
    down();
}

static void t_bus_master(void)
{
    up();
    uint8_t buf[8] = { 0 };
    uint64_t addr;
    uint32_t data;
    vtio_msi_compose(0, 40, &addr, &data);
    CHECK_ERR(vtio_rogue_read(r, BUF_PA, buf, sizeof(buf)), -EPERM);
    CHECK_ERR(vtio_rogue_write(r, BUF_PA, buf, sizeof(buf)), -EPERM);
    CHECK_ERR(vtio_rogue_msi(r, addr, data), -EPERM);
    CHECK_EQ(port_stats().master_aborts, 3);

    /* Ignoring BME: the requests go out anyway. */
    vtio_rogue_ignore_bme(r, true);
    buf[0] = 0x77;
    CHECK_OK(vtio_rogue_write(r, BUF_PA, buf, sizeof(buf)));
    CHECK_EQ(vtio_mem_read8(m->mem, BUF_PA), 0x77);
    CHECK_OK(vtio_rogue_read(r, BUF_PA, buf, sizeof(buf)));

    /* FLR returns the device to obeying the bus. */
    vtio_pci_dev_reset(vtio_rogue_pci(r));
    CHECK_ERR(vtio_rogue_read(r, BUF_PA, buf, sizeof(buf)), -EPERM);
    set_command(VTIO_PCI_COMMAND_MASTER);
    CHECK_OK(vtio_rogue_read(r, BUF_PA, buf, sizeof(buf)));
    set_command(0);
    CHECK_ERR(vtio_rogue_read(r, BUF_PA, buf, sizeof(buf)), -EPERM);
    down();
}

static void t_forge_rid(void)
{
    up();
    set_command(VTIO_PCI_COMMAND_MASTER);
    struct recorder rec = { 0 };
    const struct vtio_dma_translator xl = { .ops = &rec_ops, .opaque = &rec };
    struct vtio_dma_port *port = vtio_pci_dev_dma_port(vtio_rogue_pci(r));
    vtio_dma_port_set_translator(port, &xl);
    uint8_t buf[8];

    CHECK_OK(vtio_rogue_read(r, BUF_PA, buf, sizeof(buf)));
    CHECK_EQ(atomic_load(&rec.last_rid), ROGUE_RID);
    vtio_rogue_forge_rid(r, ENGINE_RID);
    CHECK_OK(vtio_rogue_read(r, BUF_PA, buf, sizeof(buf)));
    CHECK_EQ(atomic_load(&rec.last_rid), ENGINE_RID);
    atomic_store(&rec.last_rid, 0);
    CHECK_OK(vtio_rogue_msi(r, VTIO_MSI_WINDOW_BASE, 0x40));
    CHECK_EQ(atomic_load(&rec.last_rid), ENGINE_RID);
    /* Its own id undoes the forgery. */
    vtio_rogue_forge_rid(r, ROGUE_RID);
    CHECK_OK(vtio_rogue_write(r, BUF_PA, buf, sizeof(buf)));
    CHECK_EQ(atomic_load(&rec.last_rid), ROGUE_RID);
    /* So does FLR. */
    vtio_rogue_forge_rid(r, ENGINE_RID);
    vtio_pci_dev_reset(vtio_rogue_pci(r));
    set_command(VTIO_PCI_COMMAND_MASTER);
    CHECK_OK(vtio_rogue_read(r, BUF_PA, buf, sizeof(buf)));
    CHECK_EQ(atomic_load(&rec.last_rid), ROGUE_RID);
    CHECK_EQ(port_stats().source_violations, 0);     /* ACS is off */
    vtio_dma_port_set_translator(port, NULL);
    down();
}

#define FILL   0xa5
#define FILLED 0xa5a5a5a5a5a5a5a5ull

/* Waits until the loop has written its word at BUF_PA over a cleared one.
 * (The loop's 8-byte aligned writes are single-copy atomic, so the CPU may
 * watch them while they happen.) */
static void await_loop_write(void)
{
    vtio_mem_write64(m->mem, BUF_PA, 0);
    while (vtio_mem_read64(m->mem, BUF_PA) != FILLED)
        sched_yield();
}

static void t_loop_counts(void)
{
    up();
    set_command(VTIO_PCI_COMMAND_MASTER);
    struct vtio_rogue_loop_stats st;
    const struct vtio_rogue_loop wr = { .access = VTIO_DMA_WRITE, .addr = BUF_PA, .len = 8,
                                        .fill = FILL };

    /* Without a mark nothing counts as after it. */
    CHECK_OK(vtio_rogue_loop_start(r, &wr));
    CHECK_EQ(vtio_mem_read64(m->mem, BUF_PA), FILLED);      /* the first access is done */
    CHECK_OK(vtio_rogue_loop_stop(r, &st));
    CHECK_GE(st.accesses, 1);
    CHECK_EQ(st.ok, st.accesses);
    CHECK_EQ(st.after_mark, 0);
    CHECK_EQ(st.last_ok_ns, 0);

    /* After the mark: a write landing over a byte cleared after the mark
     * started after the mark, so at least one is counted. */
    CHECK_OK(vtio_rogue_loop_start(r, &wr));
    vtio_rogue_loop_mark(r);
    await_loop_write();
    await_loop_write();
    CHECK_OK(vtio_rogue_loop_stop(r, &st));
    CHECK_GE(st.ok_after_mark, 1);
    CHECK_LE(st.ok_after_mark, st.after_mark);
    CHECK_LE(st.after_mark, st.accesses);
    CHECK_EQ(st.ok, st.accesses);

    /* A loop on nothing never succeeds. */
    const struct vtio_rogue_loop rd = { .access = VTIO_DMA_READ, .addr = HOLE_PA, .len = 8 };
    CHECK_OK(vtio_rogue_loop_start(r, &rd));
    vtio_rogue_loop_mark(r);
    CHECK_OK(vtio_rogue_loop_stop(r, &st));
    CHECK_GE(st.accesses, 1);
    CHECK_EQ(st.ok, 0);
    CHECK_EQ(st.ok_after_mark, 0);
    CHECK_EQ(st.last_ok_ns, 0);

    /* Bus mastering turned off under a running loop stops what it gets. */
    CHECK_OK(vtio_rogue_loop_start(r, &wr));
    set_command(0);
    vtio_rogue_loop_mark(r);
    CHECK_OK(vtio_rogue_loop_stop(r, &st));
    CHECK_EQ(st.ok_after_mark, 0);
    CHECK_GE(port_stats().master_aborts, st.after_mark);
    down();
}

static void t_loop_errors(void)
{
    up();
    struct vtio_rogue_loop l = { .access = VTIO_DMA_READ, .addr = BUF_PA, .len = 0 };
    CHECK_ERR(vtio_rogue_loop_start(r, &l), -EINVAL);
    l.len = 4097;
    CHECK_ERR(vtio_rogue_loop_start(r, &l), -EINVAL);
    l.len = 8;
    l.access = (enum vtio_dma_access)3;
    CHECK_ERR(vtio_rogue_loop_start(r, &l), -EINVAL);
    CHECK_ERR(vtio_rogue_loop_start(r, NULL), -EINVAL);
    CHECK_ERR(vtio_rogue_loop_stop(r, NULL), -EINVAL);
    l.access = VTIO_DMA_READ;
    l.len = 4096;
    CHECK_OK(vtio_rogue_loop_start(r, &l));      /* BME is off: it fails, and runs */
    CHECK_ERR(vtio_rogue_loop_start(r, &l), -EBUSY);
    CHECK_OK(vtio_rogue_loop_stop(r, NULL));
    CHECK_ERR(vtio_rogue_loop_stop(r, NULL), -EINVAL);
    struct vtio_rogue *other = NULL;
    CHECK_ERR(vtio_rogue_create(m->pci, VTIO_MACHINE_ROGUE_BUS, 0, 1, &other), -EEXIST);
    CHECK_ERR(vtio_rogue_create(NULL, 2, 0, 1, &other), -EINVAL);
    CHECK_ERR(vtio_rogue_create(m->pci, 2, 0, 0, &other), -EINVAL);
    CHECK_ERR(vtio_rogue_create(m->pci, 2, 0, VTIO_ROGUE_FUNCTIONS + 1, &other), -EINVAL);
    CHECK_ERR(vtio_rogue_create(m->pci, 2, VTIO_PCI_DEVFN(0, 1), 2, &other), -EINVAL);
    /* A card whose last slot is taken plugs nothing in. */
    struct vtio_rogue *lone = NULL;
    CHECK_OK(vtio_rogue_create(m->pci, 2, VTIO_PCI_DEVFN(0, 7), 1, &lone));
    CHECK_ERR(vtio_rogue_create(m->pci, 2, 0, VTIO_ROGUE_FUNCTIONS, &other), -EEXIST);
    CHECK(!vtio_pci_bus_find(m->pci, VTIO_PCI_RID(2, 0, 0)));
    vtio_rogue_destroy(lone);
    /* The machine's card: eight functions, each its own requester id. */
    for (unsigned fn = 0; fn < VTIO_ROGUE_FUNCTIONS; fn++)
        CHECK_EQ(vtio_pci_dev_rid(vtio_rogue_function(r, fn)),
                 VTIO_PCI_RID(VTIO_MACHINE_ROGUE_BUS, 0, fn));
    CHECK(!vtio_rogue_function(r, VTIO_ROGUE_FUNCTIONS));
    /* A running loop is stopped by destroying the machine. */
    CHECK_OK(vtio_rogue_loop_start(r, &l));
    down();
}

/* Through a booted host: BARs placed, MSI-X programmed by the OS. */
static void quiet(void *opaque, int level, const char *msg)
{
    (void)opaque, (void)level, (void)msg;
}

static void t_host_view(void)
{
    up();
    struct vtio_host *h = NULL;
    struct vtio_host_options o = { .log_fn = quiet };
    CHECK_OK(vtio_host_boot_opts(m, &o, &h));
    const struct vtio_pci_function *fn = vtio_pci_find_rid(h->pci, ROGUE_RID);
    CHECK(fn != NULL);
    CHECK_EQ(fn->class_code, VTIO_ROGUE_CLASS);

    /* BAR0 scratch registers read back what was written, 32 and 64 bits. */
    struct vtio_mmio regs;
    CHECK_OK(vtio_pci_bar_mmio(fn, VTIO_ROGUE_BAR_REGS, &regs));
    vtio_mmio_write32(&regs, 0x10, 0xdeadbeef);
    vtio_mmio_write64(&regs, 0xff8, 0x0123456789abcdefull);
    CHECK_EQ(vtio_mmio_read32(&regs, 0x10), 0xdeadbeef);
    CHECK_EQ(vtio_mmio_read64(&regs, 0xff8), 0x0123456789abcdefull);
    CHECK_EQ(vtio_mmio_read32(&regs, 0xffc), 0x01234567);
    vtio_mmio_write32(&regs, 0xff8, 0);
    CHECK_EQ(vtio_mmio_read64(&regs, 0xff8), 0x0123456700000000ull);
    CHECK_EQ(vtio_mmio_read32(&regs, 0x14), 0);

    /* MSI-X: a programmed vector reaches its handler; an unrequested one
     * stays masked and pending. */
    atomic_store(&irqs, 0);
    vtio_pci_set_master(fn, true);
    CHECK_OK(vtio_pci_msix_enable(h, fn, VTIO_ROGUE_VECTORS));
    CHECK_OK(vtio_pci_request_irq(h, fn, 0, count_irq, NULL, 0));
    CHECK_EQ(vtio_rogue_raise(r, 0), 0);
    CHECK_EQ(atomic_load(&irqs), 1);
    CHECK_EQ(vtio_rogue_raise(r, 1), 1);
    CHECK_EQ(atomic_load(&irqs), 1);
    CHECK_ERR(vtio_rogue_raise(r, VTIO_ROGUE_VECTORS), -EINVAL);

    /* FLR clears the registers. */
    CHECK_OK(vtio_pci_msix_disable(h, fn));
    vtio_pci_dev_reset(vtio_rogue_pci(r));
    CHECK_EQ(vtio_pci_cfg_read16(fn, VTIO_PCI_COMMAND) & VTIO_PCI_COMMAND_MEM, 0);
    vtio_pci_cfg_write32(fn, VTIO_PCI_BAR0, (uint32_t)regs.base);
    vtio_pci_cfg_write16(fn, VTIO_PCI_COMMAND, VTIO_PCI_COMMAND_MEM);
    CHECK_EQ(vtio_mmio_read32(&regs, 0x10), 0);
    vtio_host_shutdown(h);
    down();
}

static const struct vtio_test tests[] = {
    { "accesses_land", "reads, writes and interrupt messages through the rogue's port reach "
      "memory and the sink, a hole faults, and the port counts them", t_accesses_land },
    { "bus_master", "with BME clear every access fails -EPERM unless the rogue ignores BME; "
      "FLR makes it obey again", t_bus_master },
    { "forge_rid", "a forged requester id is what the translator sees, for data and "
      "interrupts; its own id and FLR undo it", t_forge_rid },
    { "loop_counts", "the loop counts accesses and successes, only those after the mark as "
      "after it; a loop on a hole or with BME off gets nothing through", t_loop_counts },
    { "loop_errors", "bad loop arguments give -EINVAL, a second loop -EBUSY, stop without a "
      "loop -EINVAL, a taken slot -EEXIST; destroy stops a running loop", t_loop_errors },
    { "host_view", "booted host: BAR0 registers read back 32/64-bit writes, a programmed "
      "MSI-X vector reaches its handler and a masked one stays pending",
      t_host_view },
};

VTIO_TEST_MAIN(tests)
