/*
 * The VT-d unit in the machine: where it sits, what firmware says of it,
 * and what it does to the DMA engine's traffic once software programs it
 * through registers and tables in RAM: translated DMA, a DMA fault that
 * halts the engine and is logged with the engine's source-id, and the
 * engine's MSI-X interrupts remapped (or blocked) by interrupt remapping.
 * The engine and its host driver are unchanged: they do not know the unit
 * is there.
 */
#include "harness.h"

#include <vtio/dev/dma_engine.h>
#include <vtio/drv/dma_engine.h>
#include <vtio/host.h>
#include <vtio/intr.h>
#include <vtio/machine.h>
#include <vtio/mem.h>
#include <vtio/mmio.h>
#include <vtio/page_alloc.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>
#include <vtio/vtd.h>
#include <vtio/vtd_regs.h>

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#define RAM        (1 * VTIO_GiB)
#define DEV_SID    VTIO_PCI_RID(0, VTIO_MACHINE_FIRST_DEV, 0)   /* 00:03.0 */
#define IOVA_MAP   0x80000000ull    /* 16 KiB mapped with 4 KiB pages */
#define IOVA_HOLE  0x90000000ull    /* nothing mapped */
#define WAIT_NS    5000000000ull

struct sys {
    struct vtio_machine *m;
    struct vtio_host *h;
    struct vtio_mem *mem;           /* the CPUs' view */
    const struct vtio_pci_function *fn;
    struct vtio_dmae *dma;
    struct vtio_dmae_chan *ch;
    uint64_t base;                  /* the unit's registers */
    uint32_t gcmd;                  /* persistent GCMD bits (Linux's shadow) */
};

static void boot(struct sys *s)
{
    memset(s, 0, sizeof(*s));
    struct vtio_machine_config mc = { .ram_size = RAM, .dma_channels = 2 };
    CHECK_OK(vtio_machine_create(&mc, &s->m));
    /* The test is the unit's software: the host's VT-d driver stays out. */
    struct vtio_host_options o = { .iommu_off = true };
    CHECK_OK(vtio_host_boot_opts(s->m, &o, &s->h));
    s->mem = s->h->mem;
    CHECK_EQ(s->h->fw.dmar.n_drhd, 1);
    s->base = s->h->fw.dmar.drhd[0].base;
    s->fn = vtio_pci_find(s->h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, 0);
    CHECK(s->fn != NULL);
    CHECK_OK(vtio_dmae_probe(s->h, s->fn, NULL, &s->dma));
    s->ch = vtio_dmae_chan(s->dma, 0);
}

static void shutdown_sys(struct sys *s)
{
    vtio_dmae_remove(s->dma);
    vtio_host_shutdown(s->h);
    vtio_machine_destroy(s->m);
}

static uint64_t page(struct sys *s)
{
    uint64_t pa;
    CHECK_OK(vtio_page_alloc(s->h->pages, 0, VTIO_PAGE_ZERO, &pa));
    return pa;
}

static uint32_t rd32(struct sys *s, uint64_t off) { return vtio_mem_read32(s->mem, s->base + off); }
static uint64_t rd64(struct sys *s, uint64_t off) { return vtio_mem_read64(s->mem, s->base + off); }
static void wr32(struct sys *s, uint64_t off, uint32_t v) { vtio_mem_write32(s->mem, s->base + off, v); }
static void wr64(struct sys *s, uint64_t off, uint64_t v) { vtio_mem_write64(s->mem, s->base + off, v); }

/* GCMD with the persistent bits plus cmd; GSTS must show `status` at once. */
static void command(struct sys *s, uint32_t cmd, uint32_t status)
{
    wr32(s, VTD_GCMD_REG, s->gcmd | cmd);
    CHECK_EQ(rd32(s, VTD_GSTS_REG) & status, status);
}

/* Maps iova -> pa with a leaf at 4 KiB (shift 12) or 2 MiB (21) in a
 * 4-level second-level table, adding missing tables. */
static void sl_map(struct sys *s, uint64_t pml4, uint64_t iova, uint64_t pa, unsigned shift,
                   uint64_t perm)
{
    uint64_t table = pml4;
    for (unsigned level = 4; level > 1; level--) {
        uint64_t at = table + 8 * ((iova >> VTD_LEVEL_SHIFT(level)) & 511);
        if (VTD_LEVEL_SHIFT(level - 1) < shift) {   /* level - 1 would be too small */
            vtio_mem_write64(s->mem, at, pa | perm | VTD_SL_PS);
            return;
        }
        uint64_t e = vtio_mem_read64(s->mem, at);
        if (!(e & (VTD_SL_R | VTD_SL_W))) {
            e = page(s) | VTD_SL_R | VTD_SL_W;
            vtio_mem_write64(s->mem, at, e);
        }
        table = e & VTD_SL_ADDR_MASK(48);
    }
    vtio_mem_write64(s->mem, table + 8 * ((iova >> 12) & 511), pa | perm);
}

/*
 * What a driver does for legacy-mode DMA remapping: root table, a context
 * entry for 00:03.0 in domain 1 with 4-level tables that map all of RAM
 * 1:1 (rings and completion records keep working) plus IOVA_MAP -> dst,
 * SRTP, register-based global invalidation, TE.
 */
static void enable_translation(struct sys *s, uint64_t dst)
{
    uint64_t root = page(s), ctx = page(s), pml4 = page(s);
    vtio_mem_write64(s->mem, root + 16 * VTIO_PCI_RID_BUS(DEV_SID), ctx | VTD_ROOT_P);
    uint64_t ce = ctx + 16 * (DEV_SID & 0xff);
    vtio_mem_write64(s->mem, ce + 8, 2 | 1ull << VTD_CTX_DID_SHIFT);       /* AW 48-bit, DID 1 */
    vtio_mem_write64(s->mem, ce, pml4 | VTD_CTX_TT_MULTI_LEVEL << VTD_CTX_TT_SHIFT | VTD_CTX_P);
    for (uint64_t a = 0; a < RAM; a += VTIO_HUGE_SIZE)
        sl_map(s, pml4, a, a, 21, VTD_SL_R | VTD_SL_W);
    for (unsigned i = 0; i < 4; i++)
        sl_map(s, pml4, IOVA_MAP + 4096 * i, dst + 4096 * i, 12, VTD_SL_R | VTD_SL_W);

    wr64(s, VTD_RTADDR_REG, root);
    command(s, VTD_GCMD_SRTP, VTD_GSTS_RTPS);
    wr64(s, VTD_CCMD_REG, VTD_CCMD_ICC | (uint64_t)VTD_INV_GLOBAL << VTD_CCMD_CIRG_SHIFT);
    uint64_t ccmd = rd64(s, VTD_CCMD_REG);
    CHECK_EQ(ccmd & VTD_CCMD_ICC, 0);
    CHECK_NE(VTD_CCMD_CAIG(ccmd), 0);
    uint64_t iotlb = VTD_ECAP_IRO(rd64(s, VTD_ECAP_REG)) * 16 + VTD_IOTLB_OFF;
    wr64(s, iotlb, VTD_IOTLB_IVT | (uint64_t)VTD_INV_GLOBAL << VTD_IOTLB_IIRG_SHIFT);
    CHECK_EQ(rd64(s, iotlb) & VTD_IOTLB_IVT, 0);
    CHECK_NE(VTD_IOTLB_IAIG(rd64(s, iotlb)), 0);
    s->gcmd |= VTD_GCMD_TE;
    command(s, 0, VTD_GSTS_TES);
}

/* Interrupt remapping with one IRTE (index 0): vector to cpu, only from
 * 00:03.0.  CFI stays clear, as Linux leaves it. */
static void enable_ir(struct sys *s, unsigned cpu, unsigned vector)
{
    uint64_t irt = page(s);
    vtio_mem_write64(s->mem, irt, VTD_IRTE_P | (uint64_t)vector << VTD_IRTE_V_SHIFT |
                                      (uint64_t)(cpu << 8) << VTD_IRTE_DST_SHIFT);
    vtio_mem_write64(s->mem, irt + 8, DEV_SID | (uint64_t)VTD_IRTE_SVT_SID << VTD_IRTE_SVT_SHIFT);
    wr64(s, VTD_IRTA_REG, irt | 7);                                   /* 256 entries */
    command(s, VTD_GCMD_SIRTP, VTD_GSTS_IRTPS);
    s->gcmd |= VTD_GCMD_IRE;
    command(s, 0, VTD_GSTS_IRES);
    CHECK_EQ(rd32(s, VTD_GSTS_REG) & VTD_GSTS_CFIS, 0);
}

/* The first pending fault record: checks and clears it. */
static void expect_fault(struct sys *s, unsigned reason, uint64_t lo_want, bool read)
{
    uint32_t fsts = rd32(s, VTD_FSTS_REG);
    CHECKF(fsts & VTD_FSTS_PPF, "no fault pending (FSTS %#x)", fsts);
    uint64_t off = VTD_CAP_FRO(rd64(s, VTD_CAP_REG)) * 16 + VTD_FSTS_FRI(fsts) * VTD_FRCD_SIZE;
    uint64_t lo = rd64(s, off), hi = rd64(s, off + 8);
    CHECK(hi & VTD_FRCD_HI_F);
    CHECK_EQ(VTD_FRCD_HI_SID(hi), DEV_SID);
    CHECK_EQ(VTD_FRCD_HI_FR(hi), reason);
    CHECK_EQ(lo, lo_want);
    CHECK_EQ(!!(hi & VTD_FRCD_HI_T), read);
    CHECK_EQ(hi & VTD_FRCD_HI_PP, 0);
    wr32(s, off + 12, (uint32_t)(VTD_FRCD_HI_F >> 32));
    CHECK_EQ(rd32(s, VTD_FSTS_REG) & VTD_FSTS_PPF, 0);
}

/* Waits up to 5 s for an asynchronous effect (an interrupt after the
 * completion record); returns whether it happened. */
#define EVENTUALLY(cond)                                                       \
    ({                                                                         \
        struct timespec t0_, t_;                                               \
        clock_gettime(CLOCK_MONOTONIC, &t0_);                                  \
        bool ok_;                                                              \
        while (!(ok_ = (cond))) {                                              \
            clock_gettime(CLOCK_MONOTONIC, &t_);                               \
            if (t_.tv_sec - t0_.tv_sec > 5)                                    \
                break;                                                         \
            sched_yield();                                                     \
        }                                                                      \
        ok_;                                                                   \
    })

static int copy(struct sys *s, uint64_t dst, uint64_t src, uint64_t len,
                struct vtio_dmae_completion *rec)
{
    int64_t c = vtio_dmae_prep_copy(s->ch, dst, src, len, VTIO_DMAE_FLAG_INTR);
    CHECK_GT(c, 0);
    vtio_dmae_issue(s->ch);
    return vtio_dmae_wait(s->ch, c, WAIT_NS, rec);
}

/* ------------------------------------------------------------------------ */

static void t_unit_at_its_base(void)
{
    struct vtio_machine *m;
    CHECK_OK(vtio_machine_create(NULL, &m));
    CHECK(m->vtd != NULL);
    uint64_t b = VTIO_MACHINE_VTD_BASE;
    CHECK_EQ(b, 0xFED90000ull);
    /* Registers answer CPU loads at the base, as MMIO. */
    CHECK_EQ(vtio_mem_read32(m->mem, b + VTD_VER_REG), VTD_VER_VALUE);
    uint64_t cap = vtio_mem_read64(m->mem, b + VTD_CAP_REG);
    uint64_t ecap = vtio_mem_read64(m->mem, b + VTD_ECAP_REG);
    CHECK_EQ(cap, vtio_vtd_reg_read(m->vtd, VTD_CAP_REG, 8));
    CHECK_EQ((uint32_t)cap, vtio_mem_read32(m->mem, b + VTD_CAP_REG));
    CHECK_EQ(cap >> 32, vtio_mem_read32(m->mem, b + VTD_CAP_REG + 4));
    CHECK_EQ(VTD_CAP_MGAW(cap), 47);                     /* default: 48-bit */
    CHECK(VTD_CAP_SAGAW(cap) & 4);
    CHECK(ecap & VTD_ECAP_QI);
    CHECK(ecap & VTD_ECAP_IR);
    CHECK_EQ(vtio_mem_read32(m->mem, b + VTD_GSTS_REG), 0);   /* power-on: all off */
    vtio_mem_write64(m->mem, b + VTD_RTADDR_REG, 0x1234000);
    CHECK_EQ(vtio_mem_read64(m->mem, b + VTD_RTADDR_REG), 0x1234000);
    /* Firmware's DMAR table describes exactly this unit. */
    const struct vtio_dmar *d = &m->fw.dmar;
    CHECK_EQ(d->n_drhd, 1);
    CHECK_EQ(d->host_addr_width, 48);
    CHECK_EQ(d->flags & VTIO_DMAR_INTR_REMAP, VTIO_DMAR_INTR_REMAP);
    CHECK_EQ(d->drhd[0].base, b);
    CHECK_EQ(d->drhd[0].size, VTD_REG_SIZE);
    CHECK_EQ(d->drhd[0].segment, m->fw.pci_segment);
    CHECK(d->drhd[0].include_all);
    CHECK_EQ(d->drhd[0].n_scope, 0);
    vtio_machine_destroy(m);

    /* The caps chosen in the config are what CAP says and firmware reports. */
    struct vtio_machine_config mc = { .ram_size = 256 * VTIO_MiB,
                                      .vtd_caps = { .addr_width = 39, .no_intr_remap = true } };
    CHECK_OK(vtio_machine_create(&mc, &m));
    cap = vtio_mem_read64(m->mem, b + VTD_CAP_REG);
    CHECK_EQ(VTD_CAP_MGAW(cap), 38);
    CHECK_EQ(m->fw.dmar.host_addr_width, 39);
    CHECK_EQ(m->fw.dmar.flags & VTIO_DMAR_INTR_REMAP, 0);
    CHECK_EQ(vtio_mem_read64(m->mem, b + VTD_ECAP_REG) & VTD_ECAP_IR, 0);
    vtio_machine_destroy(m);

    /* Caps the spec does not allow are a bad config. */
    mc = (struct vtio_machine_config){ .ram_size = 256 * VTIO_MiB,
                                       .vtd_caps = { .addr_width = 40 } };
    CHECK_ERR(vtio_machine_create(&mc, &m), -EINVAL);

    /* Without it: no registers (a hole reads all ones), no DMAR table. */
    mc = (struct vtio_machine_config){ .ram_size = 256 * VTIO_MiB, .no_iommu = true };
    CHECK_OK(vtio_machine_create(&mc, &m));
    CHECK(m->vtd == NULL);
    CHECK_EQ(m->fw.dmar.n_drhd, 0);
    CHECK_EQ(vtio_mem_read32(m->mem, b + VTD_VER_REG), 0xffffffffu);
    vtio_machine_destroy(m);
}

static void t_pass_through_at_power_on(void)
{
    struct sys s;
    boot(&s);
    uint64_t a = page(&s), b = page(&s);
    uint8_t data[4096], got[4096];
    vtio_test_fill(data, sizeof(data), 11);
    vtio_mem_write(s.mem, a, data, sizeof(data));
    CHECK_OK(copy(&s, b, a, sizeof(data), NULL));
    vtio_mem_read(s.mem, b, got, sizeof(got));
    CHECK_MEM_EQ(got, data, sizeof(data));
    /* The unit saw the traffic and translated nothing. */
    struct vtio_vtd_stats st;
    vtio_vtd_get_stats(s.m->vtd, &st);
    CHECK_EQ(st.page_walks, 0);
    CHECK_EQ(st.faults_recorded, 0);
    shutdown_sys(&s);
}

static void t_translated_dma(void)
{
    struct sys s;
    boot(&s);
    uint64_t src = page(&s), dst, bigsrc;
    CHECK_OK(vtio_page_alloc(s.h->pages, 2, VTIO_PAGE_ZERO, &dst));   /* 16 KiB */
    CHECK_OK(vtio_page_alloc(s.h->pages, 2, 0, &bigsrc));
    enable_translation(&s, dst);
    uint8_t data[9000], got[9000];
    vtio_test_fill(data, sizeof(data), 12);
    vtio_mem_write(s.mem, bigsrc, data, sizeof(data));
    /* Into the 4 KiB-mapped IOVA range, crossing two page boundaries: the
     * bytes land at the mapped physical pages. */
    struct vtio_dmae_completion rec;
    CHECK_OK(copy(&s, IOVA_MAP + 0x100, bigsrc, sizeof(data), &rec));
    CHECK_EQ(rec.status, VTIO_DMAE_STATUS_SUCCESS);
    vtio_mem_read(s.mem, dst + 0x100, got, sizeof(got));
    CHECK_MEM_EQ(got, data, sizeof(data));
    CHECK_EQ(vtio_mem_read8(s.mem, dst + 0xff), 0);
    /* And back out of it. */
    CHECK_OK(copy(&s, src, IOVA_MAP + 0x2000, 1024, &rec));
    vtio_mem_read(s.mem, src, got, 1024);
    CHECK_MEM_EQ(got, data + 0x2000 - 0x100, 1024);
    struct vtio_vtd_stats st;
    vtio_vtd_get_stats(s.m->vtd, &st);
    CHECK_GT(st.page_walks, 0);
    CHECK_GT(st.translations, 0);
    CHECK_EQ(st.faults_recorded, 0);
    CHECK_EQ(rd32(&s, VTD_FSTS_REG) & VTD_FSTS_PPF, 0);
    shutdown_sys(&s);
}

static atomic_uint fault_events;

static void on_fault_event(void *opaque, unsigned cpu, unsigned vector)
{
    (void)opaque, (void)cpu, (void)vector;
    atomic_fetch_add(&fault_events, 1);
}

static void t_dma_fault_halts_engine(void)
{
    struct sys s;
    boot(&s);
    uint64_t src = page(&s), dst;
    CHECK_OK(vtio_page_alloc(s.h->pages, 2, VTIO_PAGE_ZERO, &dst));
    enable_translation(&s, dst);
    /* The fault event goes to a vector of cpu 2, as a driver sets it up. */
    atomic_store(&fault_events, 0);
    int fv = vtio_intr_alloc_vector(s.h->intr, 2, on_fault_event, NULL);
    CHECK_GT(fv, 0);
    uint64_t msi;
    uint32_t data;
    vtio_msi_compose(2, (unsigned)fv, &msi, &data);
    wr32(&s, VTD_FEDATA_REG, data);
    wr32(&s, VTD_FEADDR_REG, (uint32_t)msi);
    wr32(&s, VTD_FEUADDR_REG, 0);
    wr32(&s, VTD_FECTL_REG, 0);                       /* unmask */

    /* A write to an unmapped IOVA: refused whole, the channel halts. */
    vtio_mem_write64(s.mem, dst, 0x1111);
    struct vtio_dmae_completion rec;
    CHECK_ERR(copy(&s, IOVA_HOLE + 0x10, src, 64, &rec), -EIO);
    CHECK_EQ(vtio_dmae_error(s.ch), VTIO_DMAE_ERR_DST_FAULT);
    CHECK_EQ(rec.status, VTIO_DMAE_ERR_DST_FAULT);
    expect_fault(&s, VTD_FR_WRITE, IOVA_HOLE, false);
    CHECK_EQ(atomic_load(&fault_events), 1);
    CHECK_OK(vtio_dmae_reset(s.ch));

    /* A read of one: the source side faults. */
    CHECK_ERR(copy(&s, IOVA_MAP, IOVA_HOLE + 0x3000, 64, &rec), -EIO);
    CHECK_EQ(vtio_dmae_error(s.ch), VTIO_DMAE_ERR_SRC_FAULT);
    expect_fault(&s, VTD_FR_READ, IOVA_HOLE + 0x3000, true);
    CHECK_EQ(vtio_mem_read64(s.mem, dst), 0x1111);     /* nothing was written */
    CHECK_OK(vtio_dmae_reset(s.ch));

    /* A copy that runs off the end of the mapped range is refused whole. */
    CHECK_ERR(copy(&s, IOVA_MAP + 0x3f00, src, 0x200, &rec), -EIO);
    expect_fault(&s, VTD_FR_WRITE, IOVA_MAP + 0x4000, false);
    CHECK_EQ(vtio_mem_read64(s.mem, dst + 0x3f00), 0);
    CHECK_OK(vtio_dmae_reset(s.ch));
    CHECK_EQ(atomic_load(&fault_events), 3);

    /* After the faults the channel works again. */
    CHECK_OK(copy(&s, IOVA_MAP, src, 64, &rec));
    vtio_intr_unregister(s.h->intr, 2, (unsigned)fv);
    shutdown_sys(&s);
}

static atomic_uint remapped_irqs;

static void on_remapped(void *opaque, unsigned cpu, unsigned vector)
{
    (void)opaque, (void)cpu, (void)vector;
    atomic_fetch_add(&remapped_irqs, 1);
}

static void t_interrupt_remapping(void)
{
    struct sys s;
    boot(&s);
    enable_translation(&s, page(&s));     /* both remappings on, as Linux runs */
    atomic_store(&remapped_irqs, 0);
    int v = vtio_intr_alloc_vector(s.h->intr, 1, on_remapped, NULL);
    CHECK_GT(v, 0);
    enable_ir(&s, 1, (unsigned)v);
    unsigned drv_cpu, drv_vec;
    CHECK_OK(vtio_pci_irq_vector(s.h, s.fn, 0, &drv_cpu, &drv_vec));
    uint64_t drv_count = vtio_intr_count(s.h->intr, drv_cpu, drv_vec);

    /* MSI-X entry 0 in remappable format: handle 0, SHV, subhandle 0. */
    struct vtio_mmio msix;
    CHECK_OK(vtio_pci_bar_mmio(s.fn, VTIO_DMAE_BAR_MSIX, &msix));
    uint64_t e0 = VTIO_DMAE_MSIX_TABLE;
    uint32_t compat_addr = vtio_mmio_read32(&msix, e0 + VTIO_PCI_MSIX_ENTRY_LOWER_ADDR);
    uint32_t compat_data = vtio_mmio_read32(&msix, e0 + VTIO_PCI_MSIX_ENTRY_DATA);
    vtio_mmio_write32(&msix, e0 + VTIO_PCI_MSIX_ENTRY_LOWER_ADDR,
                      (uint32_t)(VTIO_MSI_WINDOW_BASE | VTD_MSI_MAKE_HANDLE(0) | VTD_MSI_IF |
                                 VTD_MSI_SHV));
    vtio_mmio_write32(&msix, e0 + VTIO_PCI_MSIX_ENTRY_DATA, 0);

    uint64_t a = page(&s), b = page(&s);
    CHECK_OK(copy(&s, b, a, 128, NULL));
    CHECK(EVENTUALLY(atomic_load(&remapped_irqs) == 1));
    CHECK_EQ(atomic_load(&remapped_irqs), 1);         /* the IRTE's vector and cpu */
    CHECK_EQ(vtio_intr_count(s.h->intr, 1, (unsigned)v), 1);
    CHECK_EQ(vtio_intr_count(s.h->intr, drv_cpu, drv_vec), drv_count);
    struct vtio_vtd_stats st;
    vtio_vtd_get_stats(s.m->vtd, &st);
    CHECK_EQ(st.interrupts_remapped, 1);
    CHECK_EQ(rd32(&s, VTD_FSTS_REG) & VTD_FSTS_PPF, 0);

    /* Back to the compatibility-format message: with CFIS clear it is
     * blocked (25h, from 00:03.0) and reaches no CPU. */
    vtio_mmio_write32(&msix, e0 + VTIO_PCI_MSIX_ENTRY_LOWER_ADDR, compat_addr);
    vtio_mmio_write32(&msix, e0 + VTIO_PCI_MSIX_ENTRY_DATA, compat_data);
    CHECK_OK(copy(&s, b, a, 128, NULL));
    CHECK(EVENTUALLY(rd32(&s, VTD_FSTS_REG) & VTD_FSTS_PPF));
    expect_fault(&s, VTD_FR_IR_REQ_COMPAT, 0, false);
    vtio_vtd_get_stats(s.m->vtd, &st);
    CHECK_EQ(st.interrupts_blocked, 1);
    CHECK_EQ(vtio_intr_count(s.h->intr, drv_cpu, drv_vec), drv_count);
    CHECK_EQ(atomic_load(&remapped_irqs), 1);
    vtio_intr_unregister(s.h->intr, 1, (unsigned)v);
    shutdown_sys(&s);
}

static const struct vtio_test tests[] = {
    { "unit_at_its_base", "the unit's VER/CAP/ECAP/GSTS answer CPU loads at 0xFED90000, the "
      "DMAR table describes it, caps and no_iommu are honoured", t_unit_at_its_base },
    { "pass_through_at_power_on", "with TE clear the engine's DMA reaches RAM unchanged",
      t_pass_through_at_power_on },
    { "translated_dma", "once root/context/SL tables are set and TE is on, a copy into a "
      "mapped IOVA lands at the mapped PA, and back", t_translated_dma },
    { "dma_fault_halts_engine", "a copy to/from an unmapped IOVA halts the engine and logs "
      "SID 00:03.0, reason, address, R/W; the fault event reaches its vector",
      t_dma_fault_halts_engine },
    { "interrupt_remapping", "a remappable MSI-X entry reaches the IRTE's vector; a "
      "compatibility one is blocked with 25h while CFIS is clear", t_interrupt_remapping },
};
VTIO_TEST_MAIN(tests)
