/*
 * The VT-d driver's interrupt remapping and fault reporting, on a booted
 * host: what the remapping table holds, which messages reach a CPU and
 * which are blocked, and how faults come back to software.
 *
 * Interrupts are raised the way the DMA engine raises them (a channel that
 * halts with CTRL.IE set signals its MSI-X entry), so no DMA mapping is
 * needed; the DMA fault is the engine fetching a descriptor from an IOVA
 * nothing maps.
 */
#include "harness.h"

#include <vtio/dev/dma_engine.h>
#include <vtio/host.h>
#include <vtio/intr.h>
#include <vtio/iommu.h>
#include <vtio/machine.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>
#include <vtio/vtd.h>
#include <vtio/vtd_regs.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "host/iommu/intel/intel_iommu.h"
#include "host/irq_remap.h"

/* ------------------------------------------------------------------------
 * The rig: a small machine, booted, with its log captured.
 */

#define LOG_LINES 64

struct rig {
    struct vtio_machine *m;
    struct vtio_host *h;
    pthread_mutex_t log_lock;
    char log[LOG_LINES][256];
    unsigned n_log;
};

static void capture(void *opaque, int level, const char *msg)
{
    struct rig *r = opaque;
    (void)level;
    pthread_mutex_lock(&r->log_lock);
    if (r->n_log < LOG_LINES)
        snprintf(r->log[r->n_log++], sizeof(r->log[0]), "%s", msg);
    pthread_mutex_unlock(&r->log_lock);
}

/* Whether one captured message contains a, b and c (those not NULL). */
static bool logged(struct rig *r, const char *a, const char *b, const char *c)
{
    bool found = false;
    pthread_mutex_lock(&r->log_lock);
    for (unsigned i = 0; i < r->n_log && !found; i++)
        found = strstr(r->log[i], a) && (!b || strstr(r->log[i], b)) &&
                (!c || strstr(r->log[i], c));
    pthread_mutex_unlock(&r->log_lock);
    return found;
}

static void boot(struct rig *r, const struct vtio_host_options *opts)
{
    struct vtio_host_options o = opts ? *opts : (struct vtio_host_options){ 0 };
    o.log_fn = capture;
    o.log_opaque = r;
    o.log_level = VTIO_LOG_WARN;
    CHECK_OK(vtio_host_boot_opts(r->m, &o, &r->h));
}

static void up_with(struct rig *r, const struct vtio_machine_config *mc,
                    const struct vtio_host_options *opts)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->log_lock, NULL);
    CHECK_OK(vtio_machine_create(mc, &r->m));
    boot(r, opts);
}

static void up(struct rig *r, unsigned engines)
{
    struct vtio_machine_config mc = { .ram_size = 256 * VTIO_MiB, .dma_engines = engines };
    up_with(r, &mc, NULL);
}

static void down(struct rig *r)
{
    vtio_host_shutdown(r->h);
    vtio_machine_destroy(r->m);
    pthread_mutex_destroy(&r->log_lock);
}

static uint32_t gsts(struct rig *r)
{
    return (uint32_t)vtio_vtd_reg_read(r->m->vtd, VTD_GSTS_REG, 4);
}

static struct vtio_vtd_stats vtd_stats(struct rig *r)
{
    struct vtio_vtd_stats st;
    vtio_vtd_get_stats(r->m->vtd, &st);
    return st;
}

/* ------------------------------------------------------------------------
 * Engines, their MSI-X table, and their interrupts.
 */

static const struct vtio_pci_function *engine(struct rig *r, unsigned i)
{
    const struct vtio_pci_function *fn =
        vtio_pci_find(r->h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, i);
    CHECK(fn != NULL);
    return fn;
}

static struct vtio_mmio bar(const struct vtio_pci_function *fn, unsigned i)
{
    struct vtio_mmio b;
    CHECK_OK(vtio_pci_bar_mmio(fn, i, &b));
    return b;
}

/* The message in MSI-X entry i, as the device will send it. */
static void msix_entry(const struct vtio_pci_function *fn, unsigned i, uint64_t *addr,
                       uint32_t *data)
{
    struct vtio_mmio t = bar(fn, VTIO_DMAE_BAR_MSIX);
    uint64_t e = VTIO_DMAE_MSIX_TABLE + (uint64_t)i * VTIO_PCI_MSIX_ENTRY_SIZE;
    *addr = vtio_mmio_read32(&t, e + VTIO_PCI_MSIX_ENTRY_LOWER_ADDR) |
            (uint64_t)vtio_mmio_read32(&t, e + VTIO_PCI_MSIX_ENTRY_UPPER_ADDR) << 32;
    *data = vtio_mmio_read32(&t, e + VTIO_PCI_MSIX_ENTRY_DATA);
}

/* Rewrites MSI-X entry i (masked while it changes, then unmasked), as a
 * buggy or malicious device or driver would. */
static void msix_forge(const struct vtio_pci_function *fn, unsigned i, uint64_t addr,
                       uint32_t data)
{
    struct vtio_mmio t = bar(fn, VTIO_DMAE_BAR_MSIX);
    uint64_t e = VTIO_DMAE_MSIX_TABLE + (uint64_t)i * VTIO_PCI_MSIX_ENTRY_SIZE;
    vtio_mmio_write32(&t, e + VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL, VTIO_PCI_MSIX_ENTRY_CTRL_MASKBIT);
    vtio_mmio_write32(&t, e + VTIO_PCI_MSIX_ENTRY_LOWER_ADDR, (uint32_t)addr);
    vtio_mmio_write32(&t, e + VTIO_PCI_MSIX_ENTRY_UPPER_ADDR, (uint32_t)(addr >> 32));
    vtio_mmio_write32(&t, e + VTIO_PCI_MSIX_ENTRY_DATA, data);
    vtio_mmio_write32(&t, e + VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL, 0);
}

/* Channel 0 halts at once (enabled with an empty ring) and, with IE set,
 * signals its MSI-X entry 0 on this thread.  Reset first, so it can be
 * raised again. */
static void engine_raise(const struct vtio_pci_function *fn)
{
    struct vtio_mmio regs = bar(fn, VTIO_DMAE_BAR_REGS);
    uint64_t ch = VTIO_DMAE_CHAN_BASE(0);
    vtio_mmio_write32(&regs, ch + VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_RESET);
    vtio_mmio_write32(&regs, ch + VTIO_DMAE_RING_SIZE, 0);
    vtio_mmio_write32(&regs, ch + VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN | VTIO_DMAE_CTRL_IE);
    CHECK_EQ(VTIO_DMAE_STATUS_STATE(vtio_mmio_read32(&regs, ch + VTIO_DMAE_STATUS)),
             VTIO_DMAE_STATE_HALTED);
}

static atomic_uint irq_hits;

static void count_irq(void *opaque, unsigned cpu, unsigned vector)
{
    (void)opaque;
    (void)cpu;
    (void)vector;
    atomic_fetch_add(&irq_hits, 1);
}

/* MSI-X on with one vector routed to count_irq on cpu. */
static void engine_irq(struct rig *r, const struct vtio_pci_function *fn, unsigned cpu)
{
    vtio_pci_set_master(fn, true);
    CHECK_OK(vtio_pci_msix_enable(r->h, fn, 1));
    CHECK_OK(vtio_pci_request_irq(r->h, fn, 0, count_irq, NULL, cpu));
}

/* ------------------------------------------------------------------------
 * The remapping table as the unit sees it.
 */

static unsigned handle_of(uint64_t addr)
{
    return (unsigned)VTD_MSI_HANDLE(addr);
}

/* The table IRTA names, through the direct map (NULL if none). */
static const uint64_t *irt(struct rig *r)
{
    uint64_t irta = vtio_vtd_reg_read(r->m->vtd, VTD_IRTA_REG, 8);
    return vtio_host_phys_to_virt(r->h, irta & VTD_IRTA_ADDR_MASK);
}

static void irte_at(const uint64_t *t, unsigned index, uint64_t e[2])
{
    e[0] = __atomic_load_n(&t[2 * index], __ATOMIC_ACQUIRE);
    e[1] = __atomic_load_n(&t[2 * index + 1], __ATOMIC_ACQUIRE);
}

static void irte(struct rig *r, unsigned index, uint64_t e[2])
{
    const uint64_t *t = irt(r);
    CHECK(t != NULL);
    irte_at(t, index, e);
}

/* The driver's first unit. */
static struct intel_iommu *unit0(struct rig *r)
{
    CHECK(r->h->iommu != NULL);
    struct intel_drv *drv = r->h->iommu->drv;
    CHECK(drv && drv->n_units >= 1);
    return drv->unit[0];
}

/* ------------------------------------------------------------------------
 * Faults as software sees them.
 */

/* Waits (bounded) until the host has seen `want` faults since boot, each
 * look preceded by vtio_iommu_fault_sync if `sync` (else only the fault
 * thread reports).  @returns the count seen, and the newest entry of the
 * fault log in *last. */
static uint64_t faults_seen(struct rig *r, uint64_t want, bool sync,
                            struct vtio_iommu_fault *last)
{
    struct vtio_iommu_fault log[VTIO_IOMMU_FAULT_LOG];
    uint64_t seen = 0;
    for (int i = 0; i < 5000; i++) {
        seen = sync ? vtio_iommu_fault_sync(r->h) : 0;
        unsigned n = vtio_iommu_fault_log(r->h, log, VTIO_IOMMU_FAULT_LOG);
        if (!sync && n)
            seen = log[n - 1].seq;
        if (seen >= want) {
            if (last && n)
                *last = log[n - 1];
            return seen;
        }
        nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
    }
    return seen;
}

/* ------------------------------------------------------------------------
 * Tests.
 */

static void t_enabled_at_boot(void)
{
    struct rig r;
    up(&r, 1);
    CHECK(gsts(&r) & VTD_GSTS_IRES);
    CHECK(gsts(&r) & VTD_GSTS_IRTPS);
    CHECK(!(gsts(&r) & VTD_GSTS_CFIS));
    uint64_t irta = vtio_vtd_reg_read(r.m->vtd, VTD_IRTA_REG, 8);
    CHECK_EQ(VTD_IRTA_S(irta), 15);            /* 65536 entries */
    CHECK(!(irta & VTD_IRTA_EIME));           /* xAPIC: firmware opts out of x2APIC */
    CHECK(r.h->irq_remap != NULL);
    /* The fault event goes to a handler on CPU 0, compatibility format. */
    uint32_t fedata = (uint32_t)vtio_vtd_reg_read(r.m->vtd, VTD_FEDATA_REG, 4);
    uint32_t feaddr = (uint32_t)vtio_vtd_reg_read(r.m->vtd, VTD_FEADDR_REG, 4);
    uint32_t fectl = (uint32_t)vtio_vtd_reg_read(r.m->vtd, VTD_FECTL_REG, 4);
    CHECK_GE(fedata & 0xff, VTIO_INTR_FIRST_VECTOR);
    CHECK_EQ(feaddr, VTIO_MSI_WINDOW_BASE);
    CHECK(!(fectl & VTD_xECTL_IM));
    CHECK_ERR(vtio_intr_register(r.m->intr, 0, fedata & 0xff, count_irq, NULL), -EBUSY);
    down(&r);
}

static void t_msix_remapped(void)
{
    struct rig r;
    up(&r, 1);
    const struct vtio_pci_function *fn = engine(&r, 0);
    engine_irq(&r, fn, 2);
    unsigned cpu, vec;
    CHECK_OK(vtio_pci_irq_vector(r.h, fn, 0, &cpu, &vec));
    CHECK_EQ(cpu, 2);

    /* The device holds a remappable-format message: a handle, no vector. */
    uint64_t addr;
    uint32_t data;
    msix_entry(fn, 0, &addr, &data);
    CHECK_EQ(addr >> 20, VTIO_MSI_WINDOW_BASE >> 20);
    CHECK(addr & VTD_MSI_IF);
    CHECK(!(addr & VTD_MSI_SHV));
    CHECK_EQ(data, 0);

    /* The entry it names delivers the vector to cpu 2, for this device only. */
    uint64_t e[2];
    irte(&r, handle_of(addr), e);
    CHECK(e[0] & VTD_IRTE_P);
    CHECK_EQ(VTD_IRTE_V(e[0]), vec);
    CHECK_EQ(VTD_IRTE_XAPIC_DEST(e[0]), 2);
    CHECK_EQ(VTD_IRTE_DLM(e[0]), 0);           /* fixed */
    CHECK(!(e[0] & (VTD_IRTE_DM | VTD_IRTE_TM | VTD_IRTE_IM | VTD_IRTE_FPD)));
    CHECK_EQ(VTD_IRTE_SVT(e[1]), VTD_IRTE_SVT_SID);
    CHECK_EQ(VTD_IRTE_SQ(e[1]), 0);
    CHECK_EQ(VTD_IRTE_SID(e[1]), fn->rid);

    /* And the engine's interrupt reaches the handler through it. */
    atomic_store(&irq_hits, 0);
    uint64_t remapped = vtd_stats(&r).interrupts_remapped;
    engine_raise(fn);
    engine_raise(fn);
    CHECK_EQ(atomic_load(&irq_hits), 2);
    CHECK_EQ(vtio_intr_count(r.m->intr, 2, vec), 2);
    CHECK_EQ(vtd_stats(&r).interrupts_remapped, remapped + 2);
    CHECK_OK(vtio_pci_msix_disable(r.h, fn));
    down(&r);
}

static void t_compat_blocked(void)
{
    struct rig r;
    up(&r, 1);
    const struct vtio_pci_function *fn = engine(&r, 0);
    engine_irq(&r, fn, 1);
    unsigned cpu, vec;
    CHECK_OK(vtio_pci_irq_vector(r.h, fn, 0, &cpu, &vec));

    /* The entry rewritten to the old-style message for the same vector. */
    uint64_t addr;
    uint32_t data;
    vtio_msi_compose(cpu, vec, &addr, &data);
    msix_forge(fn, 0, addr, data);
    atomic_store(&irq_hits, 0);
    uint64_t blocked = vtd_stats(&r).interrupts_blocked;
    uint64_t before = vtio_iommu_fault_sync(r.h);
    engine_raise(fn);
    CHECK_EQ(atomic_load(&irq_hits), 0);
    CHECK_EQ(vtd_stats(&r).interrupts_blocked, blocked + 1);

    struct vtio_iommu_fault f;
    CHECK_EQ(faults_seen(&r, before + 1, true, &f), before + 1);
    CHECK(f.is_interrupt);
    CHECK_EQ(f.reason, VTD_FR_IR_REQ_COMPAT);
    CHECK_EQ(f.sid, fn->rid);
    CHECK(strcmp(f.reason_str, "Blocked a compatibility format interrupt request") == 0);
    CHECK(strcmp(f.unit, "dmar0") == 0);
    CHECK(!(vtio_vtd_reg_read(r.m->vtd, VTD_FSTS_REG, 4) & VTD_FSTS_PPF));
    CHECK_OK(vtio_pci_msix_disable(r.h, fn));
    down(&r);
}

static void t_wrong_source_blocked(void)
{
    struct rig r;
    up(&r, 2);
    const struct vtio_pci_function *a = engine(&r, 0), *b = engine(&r, 1);
    engine_irq(&r, a, 0);
    engine_irq(&r, b, 0);
    uint64_t b_addr;
    uint32_t b_data;
    msix_entry(b, 0, &b_addr, &b_data);

    /* Engine a sends the message that names b's entry. */
    msix_forge(a, 0, b_addr, b_data);
    atomic_store(&irq_hits, 0);
    uint64_t before = vtio_iommu_fault_sync(r.h);
    engine_raise(a);
    CHECK_EQ(atomic_load(&irq_hits), 0);
    struct vtio_iommu_fault f;
    CHECK_EQ(faults_seen(&r, before + 1, true, &f), before + 1);
    CHECK(f.is_interrupt);
    CHECK_EQ(f.reason, VTD_FR_IR_SID_ERR);
    CHECK_EQ(f.sid, a->rid);
    CHECK_EQ(f.addr, handle_of(b_addr));      /* the IRTE index */

    /* b itself still gets through. */
    engine_raise(b);
    CHECK_EQ(atomic_load(&irq_hits), 1);
    CHECK_OK(vtio_pci_msix_disable(r.h, a));
    CHECK_OK(vtio_pci_msix_disable(r.h, b));
    down(&r);
}

static void t_free_clears_entry(void)
{
    struct rig r;
    up(&r, 1);
    const struct vtio_pci_function *fn = engine(&r, 0);
    engine_irq(&r, fn, 3);
    uint64_t addr;
    uint32_t data;
    msix_entry(fn, 0, &addr, &data);
    unsigned index = handle_of(addr);
    engine_raise(fn);                          /* the unit has now cached the entry */
    CHECK_OK(vtio_pci_free_irq(r.h, fn, 0));

    uint64_t e[2];
    irte(&r, index, e);
    CHECK_EQ(e[0], 0);
    CHECK_EQ(e[1], 0);

    /* The stale message no longer works: the cached copy was invalidated. */
    msix_forge(fn, 0, addr, data);
    uint64_t remapped = vtd_stats(&r).interrupts_remapped;
    uint64_t before = vtio_iommu_fault_sync(r.h);
    engine_raise(fn);
    CHECK_EQ(vtd_stats(&r).interrupts_remapped, remapped);
    struct vtio_iommu_fault f;
    CHECK_EQ(faults_seen(&r, before + 1, true, &f), before + 1);
    CHECK_EQ(f.reason, VTD_FR_IR_ENTRY_P);
    CHECK_EQ(f.addr, index);

    /* The index is free again. */
    CHECK_OK(vtio_pci_request_irq(r.h, fn, 0, count_irq, NULL, 3));
    msix_entry(fn, 0, &addr, &data);
    irte(&r, handle_of(addr), e);
    CHECK(e[0] & VTD_IRTE_P);
    CHECK_OK(vtio_pci_msix_disable(r.h, fn));
    down(&r);
}

static void t_dma_fault_logged(void)
{
    struct rig r;
    up(&r, 1);
    const struct vtio_pci_function *fn = engine(&r, 0);
    vtio_pci_set_master(fn, true);

    /* Channel 0 fetches its first descriptor from an IOVA nothing maps. */
    const uint64_t iova = 0x7654000;
    struct vtio_mmio regs = bar(fn, VTIO_DMAE_BAR_REGS);
    uint64_t ch = VTIO_DMAE_CHAN_BASE(0);
    vtio_mmio_write64(&regs, ch + VTIO_DMAE_RING_BASE, iova);
    vtio_mmio_write32(&regs, ch + VTIO_DMAE_RING_SIZE, 16);
    vtio_mmio_write32(&regs, ch + VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN);
    vtio_mmio_write32(&regs, ch + VTIO_DMAE_TAIL, 1);

    /* No fault_sync: the fault event and the fault thread report it (once
     * or more: the engine may look for the faulting byte again). */
    struct vtio_iommu_fault f;
    CHECK_GE(faults_seen(&r, 1, false, &f), 1);
    for (int i = 0; i < 5000 && !vtio_mmio_read32(&regs, ch + VTIO_DMAE_ERROR); i++)
        nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
    CHECK_EQ(vtio_mmio_read32(&regs, ch + VTIO_DMAE_ERROR), VTIO_DMAE_ERR_DESC_FETCH);
    CHECK(!f.is_interrupt);
    CHECK(!f.write);
    CHECK_EQ(f.sid, fn->rid);
    CHECK_EQ(f.addr, iova);
    CHECK_EQ(f.reason, VTD_FR_READ);
    CHECK(strcmp(f.reason_str, "PTE Read access is not set") == 0);
    CHECK(!f.has_pasid);
    /* The message went through the host's log function. */
    char dev[16];
    snprintf(dev, sizeof(dev), "%02x:%02x.%u", fn->bus, fn->dev, fn->fn);
    CHECK(logged(&r, dev, "0x7654000", "PTE Read access is not set"));
    down(&r);
}

static void t_overflow(void)
{
    struct vtio_machine_config mc = {
        .ram_size = 256 * VTIO_MiB,
        .vtd_caps = { .fault_regs = 2 },
    };
    struct rig r;
    up_with(&r, &mc, NULL);
    uint64_t before = vtio_iommu_fault_sync(r.h);

    /* Five requesters send blocked messages while the fault event is held
     * back (as when the CPU is busy): two records, then overflow. */
    vtio_vtd_reg_write(r.m->vtd, VTD_FECTL_REG, VTD_xECTL_IM, 4);
    uint64_t addr;
    uint32_t data;
    vtio_msi_compose(0, 0x40, &addr, &data);
    for (uint16_t sid = 0x100; sid < 0x105; sid++)
        CHECK_ERR(vtio_vtd_interrupt(r.m->vtd, sid, addr, data), -EFAULT);
    CHECK(vtio_vtd_reg_read(r.m->vtd, VTD_FSTS_REG, 4) & VTD_FSTS_PFO);

    struct vtio_iommu_fault f;
    CHECK_EQ(faults_seen(&r, before + 2, true, &f), before + 2);
    CHECK_EQ(f.sid, 0x101);
    CHECK_EQ(vtio_vtd_reg_read(r.m->vtd, VTD_FSTS_REG, 4) & (VTD_FSTS_PFO | VTD_FSTS_PPF), 0);
    CHECK(logged(&r, "dmar0", "overflow", NULL));

    /* Unmasked again, later faults are reported by the fault thread. */
    vtio_vtd_reg_write(r.m->vtd, VTD_FECTL_REG, 0, 4);
    for (uint16_t sid = 0x200; sid < 0x203; sid++) {
        CHECK_ERR(vtio_vtd_interrupt(r.m->vtd, sid, addr, data), -EFAULT);
        uint64_t want = before + 3 + (sid - 0x200u);
        CHECK_EQ(faults_seen(&r, want, false, &f), want);
        CHECK_EQ(f.sid, sid);
        CHECK_EQ(f.reason, VTD_FR_IR_REQ_COMPAT);
    }
    down(&r);
}

static void t_no_intr_remap(void)
{
    struct vtio_machine_config mc = { .ram_size = 256 * VTIO_MiB };
    struct vtio_host_options o = { .no_intr_remap = true };
    struct rig r;
    up_with(&r, &mc, &o);
    CHECK(!(gsts(&r) & VTD_GSTS_IRES));
    CHECK(r.h->irq_remap == NULL);
    const struct vtio_pci_function *fn = engine(&r, 0);
    engine_irq(&r, fn, 1);
    unsigned cpu, vec;
    CHECK_OK(vtio_pci_irq_vector(r.h, fn, 0, &cpu, &vec));
    uint64_t addr, want_addr;
    uint32_t data, want_data;
    msix_entry(fn, 0, &addr, &data);
    vtio_msi_compose(1, vec, &want_addr, &want_data);
    CHECK_EQ(addr, want_addr);
    CHECK_EQ(data, want_data);
    atomic_store(&irq_hits, 0);
    engine_raise(fn);
    CHECK_EQ(atomic_load(&irq_hits), 1);
    CHECK_OK(vtio_pci_msix_disable(r.h, fn));
    down(&r);
}

static void t_firmware_cfis(void)
{
    struct vtio_machine_config mc = { .ram_size = 256 * VTIO_MiB };
    struct rig r;
    memset(&r, 0, sizeof(r));
    pthread_mutex_init(&r.log_lock, NULL);
    CHECK_OK(vtio_machine_create(&mc, &r.m));
    /* Firmware let compatibility-format interrupts through. */
    vtio_vtd_reg_write(r.m->vtd, VTD_GCMD_REG, VTD_GCMD_CFI, 4);
    CHECK(gsts(&r) & VTD_GSTS_CFIS);
    boot(&r, NULL);
    CHECK(gsts(&r) & VTD_GSTS_IRES);
    CHECK(!(gsts(&r) & VTD_GSTS_CFIS));
    CHECK(logged(&r, "dmar0", "ompatibility", NULL));
    down(&r);
}

static void t_shutdown(void)
{
    struct rig r;
    up(&r, 1);
    unsigned vec = (unsigned)vtio_vtd_reg_read(r.m->vtd, VTD_FEDATA_REG, 4) & 0xff;
    /* A driver that never gave its vector back: PCI frees it after the
     * IOMMU is gone. */
    engine_irq(&r, engine(&r, 0), 0);
    vtio_host_shutdown(r.h);
    CHECK(!(gsts(&r) & VTD_GSTS_IRES));
    CHECK_OK(vtio_intr_register(r.m->intr, 0, vec, count_irq, NULL));
    vtio_machine_destroy(r.m);
    pthread_mutex_destroy(&r.log_lock);
}

static void t_disable_with_vectors_out(void)
{
    struct rig r;
    up(&r, 1);
    const struct vtio_pci_function *fn = engine(&r, 0);
    engine_irq(&r, fn, 1);
    /* Remapping goes away under a requested vector (as if the IOMMU were
     * shut down first); giving the vector back later is still safe. */
    intel_ir_disable(unit0(&r));
    CHECK(!(gsts(&r) & VTD_GSTS_IRES));
    CHECK(r.h->irq_remap == NULL);
    CHECK_OK(vtio_pci_free_irq(r.h, fn, 0));
    /* On again: a fresh table, and new vectors are remapped through it. */
    CHECK_OK(intel_ir_enable(unit0(&r)));
    CHECK(r.h->irq_remap != NULL);
    CHECK_OK(vtio_pci_request_irq(r.h, fn, 0, count_irq, NULL, 1));
    uint64_t addr;
    uint32_t data;
    msix_entry(fn, 0, &addr, &data);
    CHECK(addr & VTD_MSI_IF);
    atomic_store(&irq_hits, 0);
    engine_raise(fn);
    CHECK_EQ(atomic_load(&irq_hits), 1);
    CHECK_OK(vtio_pci_msix_disable(r.h, fn));
    down(&r);
}

static void t_table_full(void)
{
    struct rig r;
    up(&r, 1);
    struct vtio_irq_remap *ir = r.h->irq_remap;
    CHECK(ir != NULL);
    static int handle[65536];
    uint64_t addr;
    uint32_t data;
    unsigned n = 0;
    int rc;
    while ((rc = ir->ops->alloc(ir->ctx, 0x18, 0, 0x30, &addr, &data)) >= 0 && n < 65536)
        handle[n++] = rc;
    CHECK_EQ(n, 65536);
    CHECK_ERR(rc, -ENOSPC);
    /* One given back is the one handed out next. */
    ir->ops->free(ir->ctx, handle[1234]);
    rc = ir->ops->alloc(ir->ctx, 0x18, 0, 0x30, &addr, &data);
    CHECK_EQ(rc, handle[1234]);
    CHECK_EQ(handle_of(addr), (unsigned)handle[1234] & 0xffff);
    for (unsigned i = 0; i < n; i++)
        ir->ops->free(ir->ctx, handle[i]);
    /* Bad requests change nothing. */
    CHECK_ERR(ir->ops->alloc(ir->ctx, 0x18, 0, 7, &addr, &data), -EINVAL);
    CHECK_ERR(ir->ops->alloc(ir->ctx, 0x18, 300, 0x30, &addr, &data), -EINVAL);
    ir->ops->free(ir->ctx, 12345);             /* not allocated: ignored */
    down(&r);
}

/* Threads request and free vectors of their own engine at once: each entry
 * they get is theirs (its SID) and all are clear at the end. */
struct churn {
    struct rig *r;
    const uint64_t *irt;
    const struct vtio_pci_function *fn;
    int err;
};

static void *churn_thread(void *arg)
{
    struct churn *c = arg;
    for (int round = 0; round < 50 && !c->err; round++) {
        for (unsigned i = 0; i < 4 && !c->err; i++)
            if (vtio_pci_request_irq(c->r->h, c->fn, i, count_irq, NULL, i))
                c->err = 1;
        for (unsigned i = 0; i < 4 && !c->err; i++) {
            uint64_t addr, e[2];
            uint32_t data;
            msix_entry(c->fn, i, &addr, &data);
            irte_at(c->irt, handle_of(addr), e);
            if (!(e[0] & VTD_IRTE_P) || VTD_IRTE_SID(e[1]) != c->fn->rid)
                c->err = 2;
        }
        for (unsigned i = 0; i < 4; i++)
            vtio_pci_free_irq(c->r->h, c->fn, i);
    }
    return NULL;
}

static void t_threads(void)
{
    struct rig r;
    up(&r, 3);
    struct churn c[3];
    pthread_t t[3];
    for (unsigned i = 0; i < 3; i++) {
        c[i] = (struct churn){ .r = &r, .irt = irt(&r), .fn = engine(&r, i) };
        CHECK(c[i].irt != NULL);
        CHECK_OK(vtio_pci_msix_enable(r.h, c[i].fn, 4));
        CHECK_EQ(pthread_create(&t[i], NULL, churn_thread, &c[i]), 0);
    }
    for (unsigned i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ(c[i].err, 0);
    }
    for (unsigned index = 0; index < 64; index++) {
        uint64_t e[2];
        irte(&r, index, e);
        CHECK_EQ(e[0] | e[1], 0);
    }
    down(&r);
}

static void t_reason_strings(void)
{
    CHECK(strcmp(intel_fault_reason_str(VTD_FR_WRITE), "PTE Write access is not set") == 0);
    CHECK(strcmp(intel_fault_reason_str(VTD_FR_CONTEXT_ENTRY_P),
                 "Present bit in context entry is clear") == 0);
    CHECK(strcmp(intel_fault_reason_str(VTD_FR_IR_SID_ERR),
                 "Blocked an interrupt request due to source-id verification failure") == 0);
    CHECK(strcmp(intel_fault_reason_str(VTD_FR_IR_INDEX_OVER),
                 "Interrupt index exceeded the interrupt-remapping table size") == 0);
    CHECK(strcmp(intel_fault_reason_str(0x0e), "Unknown") == 0);
    CHECK(strcmp(intel_fault_reason_str(0x27), "Unknown") == 0);
    CHECK(strcmp(intel_fault_reason_str(0xff), "Unknown") == 0);
}

static const struct vtio_test tests[] = {
    { "enabled_at_boot", "boot turns remapping on (IRES, table of 65536, xAPIC), blocks "
      "compatibility format (CFIS clear) and routes the fault event to CPU 0",
      t_enabled_at_boot },
    { "msix_remapped", "a requested MSI-X vector is a remappable message whose IRTE holds "
      "vector, destination and SID, and the engine's interrupts reach the handler",
      t_msix_remapped },
    { "compat_blocked", "a compatibility-format message from a device is blocked and "
      "reported as fault 0x25 with its source", t_compat_blocked },
    { "wrong_source_blocked", "a device using another device's IRTE is blocked with fault "
      "0x26 naming the index; the owner still gets through", t_wrong_source_blocked },
    { "free_clears_entry", "free_irq clears the IRTE and invalidates the cached copy; the "
      "index is reused", t_free_clears_entry },
    { "dma_fault_logged", "an engine read of an unmapped IOVA is reported by the fault "
      "thread with device, address and reason, and logged through log_fn",
      t_dma_fault_logged },
    { "overflow", "more faults than records: the recorded ones are reported, PFO cleared "
      "and logged, and later faults are still reported", t_overflow },
    { "no_intr_remap", "intremap=off leaves IRES clear and MSI-X in compatibility format",
      t_no_intr_remap },
    { "firmware_cfis", "CFIS left set by firmware is cleared at boot, with a warning",
      t_firmware_cfis },
    { "shutdown", "shutdown turns remapping off and frees the fault vector, also with a "
      "vector still requested", t_shutdown },
    { "disable_with_vectors_out", "remapping turned off under a requested vector: the "
      "vector is still freed safely, and remapping can be turned on again",
      t_disable_with_vectors_out },
    { "table_full", "65536 entries can be held, then -ENOSPC; a freed index is reused; bad "
      "requests are refused", t_table_full },
    { "threads", "concurrent request/free on several devices keeps every entry its own "
      "device's and leaves the table clear", t_threads },
    { "reason_strings", "fault reasons read as Linux words them, Unknown otherwise",
      t_reason_strings },
};

VTIO_TEST_MAIN(tests)
