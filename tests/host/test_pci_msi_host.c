/*
 * MSI as drivers use it (pci_enum.h: vtio_pci_msi_enable, the shared
 * per-vector calls request_irq / free_irq / irq_vector / irq_mask, and
 * vtio_pci_msi_disable), on a booted host, with interrupt remapping on and
 * off.
 *
 * Interrupts come from the DMA engine's MSI capability (MSI-X stays off):
 * either a real COPY descriptor with INTR, or a channel halted on purpose
 * (enabled with an empty ring, CTRL.IE set), which raises MSI vector
 * INT_VEC & (enabled - 1) on the calling thread, so a handler's count can
 * be checked right after.
 */
#include "harness.h"

#include <vtio/dev/dma_engine.h>
#include <vtio/device.h>
#include <vtio/dma.h>
#include <vtio/host.h>
#include <vtio/intr.h>
#include <vtio/iommu.h>
#include <vtio/machine.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>
#include <vtio/vtd.h>
#include <vtio/vtd_regs.h>

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------
 * The rig: 2 CPUs, two 4-channel engines, remapping on or off.
 */

struct rig {
    struct vtio_machine *m;
    struct vtio_host *h;
};

static void quiet(void *opaque, int level, const char *msg)
{
    (void)opaque, (void)level, (void)msg;       /* faults are provoked on purpose */
}

static void up(struct rig *r, bool intremap)
{
    struct vtio_machine_config mc = { .ram_size = 256 * VTIO_MiB, .ncpus = 2,
                                      .dma_engines = 2, .dma_channels = 4 };
    CHECK_OK(vtio_machine_create(&mc, &r->m));
    struct vtio_host_options o = { .no_intr_remap = !intremap, .log_fn = quiet };
    CHECK_OK(vtio_host_boot_opts(r->m, &o, &r->h));
    CHECK_EQ(r->h->irq_remap != NULL, intremap);
}

static void down(struct rig *r)
{
    vtio_host_shutdown(r->h);
    vtio_machine_destroy(r->m);
}

static const struct vtio_pci_function *engine(struct rig *r, unsigned i)
{
    const struct vtio_pci_function *fn =
        vtio_pci_find(r->h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, i);
    CHECK(fn != NULL);
    vtio_pci_set_master(fn, true);
    return fn;
}

static struct vtio_mmio regs(const struct vtio_pci_function *fn)
{
    struct vtio_mmio b;
    CHECK_OK(vtio_pci_bar_mmio(fn, VTIO_DMAE_BAR_REGS, &b));
    return b;
}

/* ------------------------------------------------------------------------
 * The MSI capability as the device holds it.
 */

static uint16_t msi_flags(const struct vtio_pci_function *fn)
{
    return vtio_pci_cfg_read16(fn, fn->cap_msi + VTIO_PCI_MSI_FLAGS);
}

static uint64_t msi_addr(const struct vtio_pci_function *fn)
{
    return vtio_pci_cfg_read32(fn, fn->cap_msi + VTIO_PCI_MSI_ADDRESS_LO) |
           (uint64_t)vtio_pci_cfg_read32(fn, fn->cap_msi + VTIO_PCI_MSI_ADDRESS_HI) << 32;
}

static uint32_t msi_data(const struct vtio_pci_function *fn)
{
    return vtio_pci_cfg_read16(fn, fn->cap_msi + VTIO_PCI_MSI_DATA_64);
}

static uint32_t msi_mask_bits(const struct vtio_pci_function *fn)
{
    return vtio_pci_cfg_read32(fn, fn->cap_msi + VTIO_PCI_MSI_MASK_64);
}

static uint32_t msi_pending_bits(const struct vtio_pci_function *fn)
{
    return vtio_pci_cfg_read32(fn, fn->cap_msi + VTIO_PCI_MSI_PENDING_64);
}

/* Rewrites the message, as a buggy driver or a malicious device owner would. */
static void msi_forge(const struct vtio_pci_function *fn, uint64_t addr, uint32_t data,
                      uint32_t mask)
{
    vtio_pci_cfg_write32(fn, fn->cap_msi + VTIO_PCI_MSI_ADDRESS_LO, (uint32_t)addr);
    vtio_pci_cfg_write32(fn, fn->cap_msi + VTIO_PCI_MSI_ADDRESS_HI, (uint32_t)(addr >> 32));
    vtio_pci_cfg_write16(fn, fn->cap_msi + VTIO_PCI_MSI_DATA_64, (uint16_t)data);
    vtio_pci_cfg_write32(fn, fn->cap_msi + VTIO_PCI_MSI_MASK_64, mask);
}

/* ------------------------------------------------------------------------
 * Handlers and raising.
 */

struct counter {
    atomic_uint n, cpu, vector;
};

static void on_irq(void *opaque, unsigned cpu, unsigned vector)
{
    struct counter *c = opaque;
    atomic_store(&c->cpu, cpu);
    atomic_store(&c->vector, vector);
    atomic_fetch_add(&c->n, 1);
}

static bool wait_count(struct counter *c, unsigned n)
{
    struct timespec ts = { 0, 1000000 };
    for (int i = 0; i < 5000 && atomic_load(&c->n) < n; i++)
        nanosleep(&ts, NULL);
    return atomic_load(&c->n) >= n;
}

/* Channel ch halts at once (empty ring, IE set) and raises its interrupt
 * on this thread. */
static void raise_chan(const struct vtio_pci_function *fn, unsigned ch)
{
    struct vtio_mmio b = regs(fn);
    uint64_t c = VTIO_DMAE_CHAN_BASE(ch);
    vtio_mmio_write32(&b, c + VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_RESET);
    vtio_mmio_write32(&b, c + VTIO_DMAE_RING_SIZE, 0);
    vtio_mmio_write32(&b, c + VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN | VTIO_DMAE_CTRL_IE);
    CHECK_EQ(VTIO_DMAE_STATUS_STATE(vtio_mmio_read32(&b, c + VTIO_DMAE_STATUS)),
             VTIO_DMAE_STATE_HALTED);
}

/* A 4 KiB COPY with INTR on channel 0, through the DMA API's coherent
 * memory; checks the bytes and waits for c to count one more. */
static void copy_with_irq(struct rig *r, const struct vtio_pci_function *fn,
                          struct counter *c)
{
    struct vtio_device *dev = vtio_host_device_by_rid(r->h, fn->rid);
    CHECK(dev != NULL);
    vtio_dma_addr_t ring_d, src_d, dst_d;
    struct vtio_dmae_desc *ring = vtio_dma_alloc_coherent(dev, 4096, &ring_d);
    uint8_t *src = vtio_dma_alloc_coherent(dev, 4096, &src_d);
    uint8_t *dst = vtio_dma_alloc_coherent(dev, 4096, &dst_d);
    CHECK(ring && src && dst);
    vtio_test_fill(src, 4096, 77);
    struct vtio_dmae_completion *rec = (void *)((uint8_t *)ring + 2048);
    ring[0] = (struct vtio_dmae_desc){
        .op_flags = VTIO_DMAE_OP_FLAGS(VTIO_DMAE_OP_COPY, VTIO_DMAE_FLAG_INTR),
        .src = src_d, .dst = dst_d, .len = 4096, .completion = ring_d + 2048,
    };
    unsigned before = atomic_load(&c->n);
    struct vtio_mmio b = regs(fn);
    uint64_t ch = VTIO_DMAE_CHAN_BASE(0);
    vtio_mmio_write32(&b, ch + VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_RESET);
    vtio_mmio_write64(&b, ch + VTIO_DMAE_RING_BASE, ring_d);
    vtio_mmio_write32(&b, ch + VTIO_DMAE_RING_SIZE, 4);
    vtio_mmio_write32(&b, ch + VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN | VTIO_DMAE_CTRL_IE);
    vtio_mmio_write32(&b, ch + VTIO_DMAE_TAIL, 1);
    CHECK(wait_count(c, before + 1));
    CHECK_EQ(__atomic_load_n(&rec->status, __ATOMIC_ACQUIRE), VTIO_DMAE_STATUS_SUCCESS);
    CHECK_MEM_EQ(dst, src, 4096);
    vtio_mmio_write32(&b, ch + VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_RESET);
    vtio_dma_free_coherent(dev, 4096, ring, ring_d);
    vtio_dma_free_coherent(dev, 4096, src, src_d);
    vtio_dma_free_coherent(dev, 4096, dst, dst_d);
}

/* ------------------------------------------------------------------------
 * The remapping table and faults.
 */

static void irte(struct rig *r, unsigned index, uint64_t e[2])
{
    uint64_t irta = vtio_vtd_reg_read(r->m->vtd, VTD_IRTA_REG, 8);
    const uint64_t *t = vtio_host_phys_to_virt(r->h, irta & VTD_IRTA_ADDR_MASK);
    CHECK(t != NULL);
    e[0] = __atomic_load_n(&t[2 * index], __ATOMIC_ACQUIRE);
    e[1] = __atomic_load_n(&t[2 * index + 1], __ATOMIC_ACQUIRE);
}

/* The newest fault once the host has seen more than `seen` (bounded wait). */
static struct vtio_iommu_fault next_fault(struct rig *r, uint64_t seen)
{
    struct vtio_iommu_fault log[VTIO_IOMMU_FAULT_LOG];
    struct timespec ts = { 0, 1000000 };
    for (int i = 0; i < 5000; i++) {
        vtio_iommu_fault_sync(r->h);
        unsigned n = vtio_iommu_fault_log(r->h, log, VTIO_IOMMU_FAULT_LOG);
        if (n && log[n - 1].seq > seen)
            return log[n - 1];
        nanosleep(&ts, NULL);
    }
    CHECKF(0, "no fault after #%llu", (unsigned long long)seen);
    return log[0];
}

static uint64_t faults_so_far(struct rig *r)
{
    struct vtio_iommu_fault log[VTIO_IOMMU_FAULT_LOG];
    vtio_iommu_fault_sync(r->h);
    unsigned n = vtio_iommu_fault_log(r->h, log, VTIO_IOMMU_FAULT_LOG);
    return n ? log[n - 1].seq : 0;
}

static void dummy(void *opaque, unsigned cpu, unsigned vector)
{
    (void)opaque, (void)cpu, (void)vector;
}

/* Whether (cpu, vector) has no handler: it can be registered. */
static bool vector_free(struct rig *r, unsigned cpu, unsigned vector)
{
    if (vtio_intr_register(r->h->intr, cpu, vector, dummy, NULL) < 0)
        return false;
    CHECK_OK(vtio_intr_unregister(r->h->intr, cpu, vector));
    return true;
}

/* ------------------------------------------------------------------------
 * Tests.
 */

static void t_copy(void)
{
    for (int ir = 0; ir < 2; ir++) {
        struct rig r;
        up(&r, ir);
        const struct vtio_pci_function *fn = engine(&r, 0);
        CHECK(fn->cap_msi != 0);
        CHECK_EQ(fn->msi_vectors, 4);
        CHECK(fn->msi_64bit && fn->msi_maskable);
        CHECK_OK(vtio_pci_msi_enable(r.h, fn, 1));
        unsigned nvec = 0;
        CHECK_EQ(vtio_pci_irq_type(r.h, fn, &nvec), VTIO_PCI_IRQ_MSI);
        CHECK_EQ(nvec, 1);
        uint16_t flags = msi_flags(fn);
        CHECK(flags & VTIO_PCI_MSI_FLAGS_ENABLE);
        CHECK_EQ(flags & VTIO_PCI_MSI_FLAGS_QSIZE, 0);
        CHECK_EQ(vtio_pci_cfg_read16(fn, fn->cap_msix + VTIO_PCI_MSIX_FLAGS) &
                     VTIO_PCI_MSIX_FLAGS_ENABLE, 0);
        CHECK(vtio_pci_cfg_read16(fn, VTIO_PCI_COMMAND) & VTIO_PCI_COMMAND_INTX_DISABLE);
        CHECK_EQ(msi_mask_bits(fn) & 1, 1);          /* masked until requested */

        struct counter c = { 0 };
        CHECK_OK(vtio_pci_request_irq(r.h, fn, 0, on_irq, &c, 1));
        CHECK_EQ(msi_mask_bits(fn) & 1, 0);
        unsigned cpu, vec;
        CHECK_OK(vtio_pci_irq_vector(r.h, fn, 0, &cpu, &vec));
        CHECK_EQ(cpu, 1);
        if (ir) {
            CHECK(msi_addr(fn) & VTD_MSI_IF);
            CHECK_EQ(msi_addr(fn) & VTD_MSI_SHV, 0);     /* one vector: the handle alone */
        } else {
            CHECK_EQ(msi_addr(fn), VTIO_MSI_WINDOW_BASE | 1u << VTIO_MSI_ADDR_DEST_SHIFT);
            CHECK_EQ(msi_data(fn), vec);
        }
        copy_with_irq(&r, fn, &c);
        CHECK_EQ(atomic_load(&c.n), 1);
        CHECK_EQ(atomic_load(&c.cpu), 1);
        CHECK_EQ(atomic_load(&c.vector), vec);
        copy_with_irq(&r, fn, &c);
        CHECK_EQ(atomic_load(&c.n), 2);
        down(&r);
    }
}

static void t_multi_vector(void)
{
    for (int ir = 0; ir < 2; ir++) {
        struct rig r;
        up(&r, ir);
        const struct vtio_pci_function *fn = engine(&r, 0);
        CHECK_OK(vtio_pci_msi_enable(r.h, fn, 4));
        CHECK_EQ((msi_flags(fn) & VTIO_PCI_MSI_FLAGS_QSIZE) >> 4, 2);   /* MME: 4 */
        CHECK_EQ(msi_mask_bits(fn) & 0xf, 0xf);
        uint64_t addr = msi_addr(fn);
        unsigned base = 0, block_cpu = 0;
        if (ir) {
            /* SHV: the vector number selects the entry; none present yet. */
            CHECK(addr & VTD_MSI_IF);
            CHECK(addr & VTD_MSI_SHV);
            CHECK_EQ(msi_data(fn), 0);
            base = (unsigned)VTD_MSI_HANDLE(addr);
            CHECK_EQ(base % 4, 0);
            for (unsigned i = 0; i < 4; i++) {
                uint64_t e[2];
                irte(&r, base + i, e);
                CHECK_EQ(e[0] & VTD_IRTE_P, 0);
                CHECK_EQ(VTD_IRTE_SID(e[1]), fn->rid);
            }
        } else {
            /* One aligned block of CPU vectors on one cpu. */
            CHECK_EQ(addr & VTIO_MSI_ADDR_IF, 0);
            block_cpu = (unsigned)((addr & VTIO_MSI_ADDR_DEST_MASK) >> 12);
            base = msi_data(fn);
            CHECK_EQ(base % 4, 0);
            CHECK_GE(base, VTIO_INTR_FIRST_VECTOR);
        }

        struct counter c[4] = { 0 };
        if (!ir) {
            /* The first request moves the block to its cpu; later ones
             * must follow it. */
            block_cpu = 1 - block_cpu;
            CHECK_OK(vtio_pci_request_irq(r.h, fn, 0, on_irq, &c[0], block_cpu));
            CHECK_EQ((msi_addr(fn) & VTIO_MSI_ADDR_DEST_MASK) >> 12, block_cpu);
            base = msi_data(fn);
            CHECK_EQ(base % 4, 0);
            CHECK_ERR(vtio_pci_request_irq(r.h, fn, 1, on_irq, &c[1], 1 - block_cpu),
                      -EINVAL);
        }
        for (unsigned i = ir ? 0 : 1; i < 4; i++) {
            unsigned want_cpu = ir ? i % 2 : i == 1 ? block_cpu : VTIO_PCI_IRQ_ANY_CPU;
            CHECK_OK(vtio_pci_request_irq(r.h, fn, i, on_irq, &c[i], want_cpu));
        }
        unsigned cpu[4], vec[4];
        for (unsigned i = 0; i < 4; i++) {
            CHECK_OK(vtio_pci_irq_vector(r.h, fn, i, &cpu[i], &vec[i]));
            if (ir) {
                CHECK_EQ(cpu[i], i % 2);
                uint64_t e[2];
                irte(&r, base + i, e);
                CHECK(e[0] & VTD_IRTE_P);
                CHECK_EQ(VTD_IRTE_V(e[0]), vec[i]);
            } else {
                CHECK_EQ(cpu[i], block_cpu);
                CHECK_EQ(vec[i], base + i);
            }
        }
        CHECK_EQ(msi_mask_bits(fn) & 0xf, 0);
        /* Channel i raises vector i, which reaches handler i only. */
        for (unsigned i = 0; i < 4; i++) {
            raise_chan(fn, i);
            for (unsigned j = 0; j < 4; j++)
                CHECK_EQ(atomic_load(&c[j].n), j <= i);
            CHECK_EQ(atomic_load(&c[i].cpu), cpu[i]);
            CHECK_EQ(atomic_load(&c[i].vector), vec[i]);
        }
        CHECK_OK(vtio_pci_msi_disable(r.h, fn));

        /* Fewer vectors than channels: channel 3 folds onto vector 1. */
        CHECK_OK(vtio_pci_msi_enable(r.h, fn, 2));
        struct counter d[2] = { 0 };
        CHECK_OK(vtio_pci_request_irq(r.h, fn, 0, on_irq, &d[0], VTIO_PCI_IRQ_ANY_CPU));
        CHECK_OK(vtio_pci_request_irq(r.h, fn, 1, on_irq, &d[1], VTIO_PCI_IRQ_ANY_CPU));
        raise_chan(fn, 3);
        CHECK_EQ(atomic_load(&d[0].n), 0);
        CHECK_EQ(atomic_load(&d[1].n), 1);
        raise_chan(fn, 2);
        CHECK_EQ(atomic_load(&d[0].n), 1);
        down(&r);                                /* shutdown releases what is left */
    }
}

static void t_mask_pending(void)
{
    for (int ir = 0; ir < 2; ir++) {
        struct rig r;
        up(&r, ir);
        const struct vtio_pci_function *fn = engine(&r, 0);
        struct counter c = { 0 };
        CHECK_OK(vtio_pci_msi_enable(r.h, fn, 1));
        CHECK_OK(vtio_pci_request_irq(r.h, fn, 0, on_irq, &c, VTIO_PCI_IRQ_ANY_CPU));
        raise_chan(fn, 0);
        CHECK_EQ(atomic_load(&c.n), 1);

        /* Masked: held pending (two raises merge), delivered on unmask. */
        CHECK_OK(vtio_pci_irq_mask(r.h, fn, 0, true));
        CHECK_EQ(msi_mask_bits(fn) & 1, 1);
        raise_chan(fn, 0);
        raise_chan(fn, 1);                        /* folds onto vector 0 too */
        CHECK_EQ(atomic_load(&c.n), 1);
        CHECK_EQ(msi_pending_bits(fn) & 1, 1);
        CHECK_OK(vtio_pci_irq_mask(r.h, fn, 0, false));
        CHECK_EQ(atomic_load(&c.n), 2);
        CHECK_EQ(msi_pending_bits(fn) & 1, 0);

        /* Raised between free and the next request: arrives at the new handler. */
        CHECK_OK(vtio_pci_free_irq(r.h, fn, 0));
        raise_chan(fn, 0);
        CHECK_EQ(msi_pending_bits(fn) & 1, 1);
        struct counter c2 = { 0 };
        CHECK_OK(vtio_pci_request_irq(r.h, fn, 0, on_irq, &c2, VTIO_PCI_IRQ_ANY_CPU));
        CHECK_EQ(atomic_load(&c2.n), 1);
        CHECK_EQ(atomic_load(&c.n), 2);
        CHECK_OK(vtio_pci_msi_disable(r.h, fn));

        /* The same call gates an MSI-X entry, through the PBA. */
        CHECK_OK(vtio_pci_msix_enable(r.h, fn, 1));
        struct counter x = { 0 };
        CHECK_OK(vtio_pci_request_irq(r.h, fn, 0, on_irq, &x, VTIO_PCI_IRQ_ANY_CPU));
        CHECK_OK(vtio_pci_irq_mask(r.h, fn, 0, true));
        raise_chan(fn, 0);
        CHECK_EQ(atomic_load(&x.n), 0);
        struct vtio_mmio pba = { .mem = fn->mem, .size = 8,
                                 .base = fn->bar[fn->msix_pba_bir].base + fn->msix_pba_offset };
        CHECK_EQ(vtio_mmio_read64(&pba, 0) & 1, 1);
        CHECK_OK(vtio_pci_irq_mask(r.h, fn, 0, false));
        CHECK_EQ(atomic_load(&x.n), 1);
        CHECK_EQ(vtio_mmio_read64(&pba, 0) & 1, 0);
        down(&r);
    }
}

static void t_exclusive(void)
{
    struct rig r;
    up(&r, true);
    const struct vtio_pci_function *fn = engine(&r, 0);
    CHECK_EQ(vtio_pci_irq_type(r.h, fn, NULL), VTIO_PCI_IRQ_NONE);
    CHECK_OK(vtio_pci_msi_enable(r.h, fn, 2));
    CHECK_ERR(vtio_pci_msix_enable(r.h, fn, 1), -EBUSY);
    CHECK_ERR(vtio_pci_msi_enable(r.h, fn, 2), -EBUSY);
    CHECK_ERR(vtio_pci_msix_disable(r.h, fn), -EINVAL);       /* the other kind is on */
    CHECK_EQ(vtio_pci_cfg_read16(fn, fn->cap_msix + VTIO_PCI_MSIX_FLAGS) &
                 VTIO_PCI_MSIX_FLAGS_ENABLE, 0);
    CHECK_OK(vtio_pci_msi_disable(r.h, fn));
    CHECK_EQ(msi_flags(fn) & VTIO_PCI_MSI_FLAGS_ENABLE, 0);

    CHECK_OK(vtio_pci_msix_enable(r.h, fn, 4));
    CHECK_ERR(vtio_pci_msi_enable(r.h, fn, 1), -EBUSY);
    CHECK_ERR(vtio_pci_msi_disable(r.h, fn), -EINVAL);
    CHECK_EQ(msi_flags(fn) & VTIO_PCI_MSI_FLAGS_ENABLE, 0);
    unsigned nvec = 0;
    CHECK_EQ(vtio_pci_irq_type(r.h, fn, &nvec), VTIO_PCI_IRQ_MSIX);
    CHECK_EQ(nvec, 4);
    CHECK_OK(vtio_pci_msix_disable(r.h, fn));

    /* MSI turned on behind the host's back also blocks MSI-X. */
    vtio_pci_cfg_write16(fn, fn->cap_msi + VTIO_PCI_MSI_FLAGS, VTIO_PCI_MSI_FLAGS_ENABLE);
    CHECK_ERR(vtio_pci_msix_enable(r.h, fn, 1), -EBUSY);
    vtio_pci_cfg_write16(fn, fn->cap_msi + VTIO_PCI_MSI_FLAGS, 0);
    CHECK_OK(vtio_pci_msi_enable(r.h, fn, 1));
    down(&r);
}

static void t_errors(void)
{
    struct rig r;
    up(&r, true);
    const struct vtio_pci_function *fn = engine(&r, 0);
    struct counter c = { 0 };
    uint16_t flags0 = msi_flags(fn);

    CHECK_ERR(vtio_pci_msi_enable(r.h, fn, 0), -EINVAL);
    CHECK_ERR(vtio_pci_msi_enable(r.h, fn, 3), -EINVAL);       /* not a power of two */
    CHECK_ERR(vtio_pci_msi_enable(r.h, fn, 8), -EINVAL);       /* the engine offers 4 */
    struct vtio_pci_function no_msi = *fn;
    no_msi.cap_msi = 0;
    CHECK_ERR(vtio_pci_msi_enable(r.h, &no_msi, 1), -ENODEV);
    struct vtio_pci_function stranger = *fn;
    stranger.priv = NULL;
    CHECK_ERR(vtio_pci_msi_enable(r.h, &stranger, 1), -EINVAL);
    CHECK_ERR(vtio_pci_msi_enable(NULL, fn, 1), -EINVAL);
    CHECK_EQ(msi_flags(fn), flags0);                             /* nothing changed */
    CHECK_EQ(vtio_pci_irq_type(r.h, &stranger, NULL), VTIO_PCI_IRQ_NONE);

    /* Not enabled. */
    CHECK_ERR(vtio_pci_request_irq(r.h, fn, 0, on_irq, &c, 0), -EINVAL);
    CHECK_ERR(vtio_pci_free_irq(r.h, fn, 0), -EINVAL);
    CHECK_ERR(vtio_pci_irq_vector(r.h, fn, 0, NULL, NULL), -EINVAL);
    CHECK_ERR(vtio_pci_irq_mask(r.h, fn, 0, true), -EINVAL);
    CHECK_ERR(vtio_pci_msi_disable(r.h, fn), -EINVAL);

    /* Enabled, wrong use. */
    CHECK_OK(vtio_pci_msi_enable(r.h, fn, 2));
    CHECK_ERR(vtio_pci_request_irq(r.h, fn, 2, on_irq, &c, 0), -EINVAL);   /* index */
    CHECK_ERR(vtio_pci_request_irq(r.h, fn, 0, NULL, &c, 0), -EINVAL);
    CHECK_ERR(vtio_pci_request_irq(r.h, fn, 0, on_irq, &c, 2), -EINVAL);   /* cpu */
    CHECK_ERR(vtio_pci_free_irq(r.h, fn, 0), -ENOENT);
    CHECK_ERR(vtio_pci_irq_mask(r.h, fn, 1, false), -ENOENT);
    CHECK_ERR(vtio_pci_irq_vector(r.h, fn, 1, NULL, NULL), -ENOENT);
    CHECK_EQ(msi_mask_bits(fn) & 3, 3);                         /* still all masked */
    CHECK_OK(vtio_pci_request_irq(r.h, fn, 0, on_irq, &c, 0));
    CHECK_ERR(vtio_pci_request_irq(r.h, fn, 0, on_irq, &c, 0), -EBUSY);
    CHECK_ERR(vtio_pci_irq_mask(r.h, fn, 2, true), -EINVAL);
    CHECK_ERR(vtio_pci_free_irq(r.h, fn, 2), -EINVAL);
    raise_chan(fn, 0);
    CHECK_EQ(atomic_load(&c.n), 1);                             /* still works */
    down(&r);
}

static void t_disable_frees(void)
{
    /* Remapping on: the vectors and the whole block of entries go back. */
    struct rig r;
    up(&r, true);
    const struct vtio_pci_function *fn = engine(&r, 0);
    struct counter c[4] = { 0 };
    CHECK_OK(vtio_pci_msi_enable(r.h, fn, 4));
    unsigned base = (unsigned)VTD_MSI_HANDLE(msi_addr(fn));
    unsigned cpu[4], vec[4];
    for (unsigned i = 0; i < 4; i++) {
        CHECK_OK(vtio_pci_request_irq(r.h, fn, i, on_irq, &c[i], VTIO_PCI_IRQ_ANY_CPU));
        CHECK_OK(vtio_pci_irq_vector(r.h, fn, i, &cpu[i], &vec[i]));
        CHECK(!vector_free(&r, cpu[i], vec[i]));
    }
    /* free_irq empties its entry; the block stays reserved. */
    CHECK_OK(vtio_pci_free_irq(r.h, fn, 3));
    CHECK(vector_free(&r, cpu[3], vec[3]));
    uint64_t e[2];
    irte(&r, base + 3, e);
    CHECK_EQ(e[0], 0);
    CHECK_EQ(VTD_IRTE_SID(e[1]), fn->rid);

    CHECK_OK(vtio_pci_msi_disable(r.h, fn));
    for (unsigned i = 0; i < 4; i++) {
        CHECK(vector_free(&r, cpu[i], vec[i]));
        irte(&r, base + i, e);
        CHECK_EQ(e[0], 0);
        CHECK_EQ(e[1], 0);
    }
    CHECK_EQ(msi_flags(fn) & (VTIO_PCI_MSI_FLAGS_ENABLE | VTIO_PCI_MSI_FLAGS_QSIZE), 0);
    CHECK_EQ(vtio_pci_cfg_read16(fn, VTIO_PCI_COMMAND) & VTIO_PCI_COMMAND_INTX_DISABLE, 0);
    CHECK_EQ(vtio_pci_irq_type(r.h, fn, NULL), VTIO_PCI_IRQ_NONE);
    raise_chan(fn, 0);                                         /* MSI off: lost */
    for (unsigned i = 0; i < 4; i++)
        CHECK_EQ(atomic_load(&c[i].n), 0);
    down(&r);

    /* Remapping off: the reserved block, requested or not, goes back. */
    up(&r, false);
    fn = engine(&r, 0);
    CHECK_OK(vtio_pci_msi_enable(r.h, fn, 4));
    unsigned bcpu = (unsigned)((msi_addr(fn) & VTIO_MSI_ADDR_DEST_MASK) >> 12);
    base = msi_data(fn);
    CHECK_OK(vtio_pci_request_irq(r.h, fn, 1, on_irq, &c[1], VTIO_PCI_IRQ_ANY_CPU));
    for (unsigned i = 0; i < 4; i++)
        CHECK(!vector_free(&r, bcpu, base + i));
    CHECK_OK(vtio_pci_free_irq(r.h, fn, 1));
    CHECK(!vector_free(&r, bcpu, base + 1));                   /* still reserved */
    /* Unmasked behind the host's back, the freed vector reaches the CPU
     * but no handler. */
    vtio_pci_cfg_write32(fn, fn->cap_msi + VTIO_PCI_MSI_MASK_64, 0);
    raise_chan(fn, 1);
    CHECK_EQ(vtio_intr_count(r.h->intr, bcpu, base + 1), 1);
    CHECK_EQ(atomic_load(&c[1].n), 0);
    CHECK_OK(vtio_pci_msi_disable(r.h, fn));
    for (unsigned i = 0; i < 4; i++)
        CHECK(vector_free(&r, bcpu, base + i));

    /* Shutdown turns MSI off on a function that still has it. */
    CHECK_OK(vtio_pci_msi_enable(r.h, fn, 4));
    CHECK_OK(vtio_pci_request_irq(r.h, fn, 0, on_irq, &c[0], VTIO_PCI_IRQ_ANY_CPU));
    uint64_t flags_pa = fn->cfg_base + fn->cap_msi + VTIO_PCI_MSI_FLAGS;
    struct vtio_machine *m = r.m;
    vtio_host_shutdown(r.h);
    CHECK_EQ(vtio_mem_read16(m->mem, flags_pa) & VTIO_PCI_MSI_FLAGS_ENABLE, 0);
    vtio_machine_destroy(m);
}

static void t_forged(void)
{
    struct rig r;
    up(&r, true);
    const struct vtio_pci_function *a = engine(&r, 0), *b = engine(&r, 1);
    struct counter c = { 0 };
    CHECK_OK(vtio_pci_msi_enable(r.h, a, 2));
    CHECK_OK(vtio_pci_request_irq(r.h, a, 0, on_irq, &c, 0));
    raise_chan(a, 0);
    CHECK_EQ(atomic_load(&c.n), 1);
    uint64_t a_addr = msi_addr(a);
    unsigned a_base = (unsigned)VTD_MSI_HANDLE(a_addr);
    unsigned a_vec;
    CHECK_OK(vtio_pci_irq_vector(r.h, a, 0, NULL, &a_vec));

    /* Vector 1 was never requested: unmasked behind the host's back, its
     * entry is not present. */
    uint64_t seen = faults_so_far(&r);
    vtio_pci_cfg_write32(a, a->cap_msi + VTIO_PCI_MSI_MASK_64, 0);
    raise_chan(a, 1);
    struct vtio_iommu_fault f = next_fault(&r, seen);
    CHECK(f.is_interrupt);
    CHECK_EQ(f.reason, VTD_FR_IR_ENTRY_P);
    CHECK_EQ(f.sid, a->rid);
    CHECK_EQ(f.addr, a_base + 1);
    seen = f.seq;

    /* Engine b sends a's message: the entry checks the requester id. */
    CHECK_OK(vtio_pci_msi_enable(r.h, b, 1));
    msi_forge(b, a_addr, 0, 0);
    raise_chan(b, 0);
    f = next_fault(&r, seen);
    CHECK_EQ(f.reason, VTD_FR_IR_SID_ERR);
    CHECK_EQ(f.sid, b->rid);
    CHECK_EQ(f.addr, a_base);
    seen = f.seq;

    /* A subhandle past a's block names no entry of a's. */
    msi_forge(a, a_addr, 6, 0);
    raise_chan(a, 0);
    f = next_fault(&r, seen);
    CHECK(f.reason == VTD_FR_IR_ENTRY_P || f.reason == VTD_FR_IR_SID_ERR);
    seen = f.seq;

    /* A compatibility-format message straight to a's vector is blocked. */
    uint64_t compat;
    uint32_t data;
    vtio_msi_compose(0, a_vec, &compat, &data);
    msi_forge(a, compat, data, 0);
    raise_chan(a, 0);
    f = next_fault(&r, seen);
    CHECK_EQ(f.reason, VTD_FR_IR_REQ_COMPAT);
    CHECK_EQ(atomic_load(&c.n), 1);                            /* no forgery reached it */
    CHECK_EQ(vtio_intr_count(r.h->intr, 0, a_vec), 1);
    down(&r);
}

static const struct vtio_test tests[] = {
    { "copy", "with remapping on and off, MSI with one vector: the capability is set up "
      "masked, request_irq unmasks, and an engine COPY with INTR calls the handler on the "
      "requested cpu and vector", t_copy },
    { "multi_vector", "4 vectors: with remapping a block of 4 aligned IRTEs named by one "
      "SHV message, each vector on its own cpu; without, an aligned block of CPU vectors "
      "on one cpu, moved by the first request, later ones held to it; each channel reaches only its handler; with 2 "
      "vectors channels fold onto INT_VEC & 1", t_multi_vector },
    { "mask_pending", "irq_mask holds a raise in the MSI pending bits (merged) and unmask "
      "delivers it once; a raise between free and request reaches the new handler; the "
      "same call gates MSI-X through the PBA", t_mask_pending },
    { "exclusive", "MSI and MSI-X exclude each other (-EBUSY), also when the function has "
      "one on behind the host's back; each disable refuses the other kind", t_exclusive },
    { "errors", "nvec 0, not a power of two or over the capability, no capability, a "
      "stranger function, calls before enable, bad index, cpu or handler, double request "
      "and free of nothing are refused and change nothing", t_errors },
    { "disable_frees", "free_irq empties its IRTE but keeps the block; msi_disable gives "
      "back every vector and clears the whole block; without remapping the reserved "
      "vectors go back and a freed one calls no handler; shutdown turns MSI off",
      t_disable_frees },
    { "forged", "with remapping, messages the host did not set up (an unrequested "
      "vector, another function's handle, a subhandle past the block, compatibility "
      "format) fault with the right reason and never reach a handler", t_forged },
};
VTIO_TEST_MAIN(tests)
