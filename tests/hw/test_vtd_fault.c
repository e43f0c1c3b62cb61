/*
 * Tests of primary fault logging (src/hw/vtd/fault.c): what a fault record
 * holds, FSTS (PPF, PFO, FRI, the RW1C bits), collapsing and overflow, the
 * fault event with its mask, and recording from many threads while software
 * services the records the way Linux's DMAR fault handler does.
 *
 * Faults are injected with vtd_fault_record(), as the translation and
 * interrupt-remapping paths do; one test makes a real DMA fault through
 * vtio_vtd_translate().  Software's side uses only the registers.
 */
#include <vtio/mem.h>
#include <vtio/vtd.h>
#include <vtio/vtd_regs.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "hw/vtd/vtd_internal.h"

#define MiB       VTIO_MiB
#define RAM_SIZE  (4 * MiB)
#define ROOT_PA   0x10000ull
#define FRO       0x200
#define FRCD_LO(i) (FRO + 16 * (i))
#define FRCD_HI(i) (FRO + 16 * (i) + 8)
#define F_DWORD   0x80000000u      /* F in the top dword of an FRCD */
#define FE_DATA   0x4022u
#define FE_ADDR   0xfee02000u

/* ------------------------------------------------------------------------
 * Fixture (as in test_vtd_regs.c): RAM, the unit, an interrupt log.
 */

struct fx {
    struct vtio_mem *mem;
    struct vtio_vtd *vtd;
    _Atomic unsigned irqs;
    _Atomic uint64_t irq_addr;
    _Atomic uint32_t irq_data;
};

static int p_read(void *o, uint64_t pa, void *buf, size_t len)
{
    return vtio_mem_dev_read(((struct fx *)o)->mem, pa, buf, len);
}

static int p_write(void *o, uint64_t pa, const void *buf, size_t len)
{
    return vtio_mem_dev_write(((struct fx *)o)->mem, pa, buf, len);
}

/* Runs with the unit's fault lock held: records, never calls back. */
static void p_irq(void *o, uint64_t addr, uint32_t data)
{
    struct fx *f = o;
    atomic_store(&f->irq_addr, addr);
    atomic_store(&f->irq_data, data);
    atomic_fetch_add(&f->irqs, 1);
}

static void fx_init(struct fx *f, unsigned fault_regs)
{
    memset(f, 0, sizeof(*f));
    f->mem = vtio_mem_create();
    CHECK(f->mem);
    CHECK_OK(vtio_mem_add_ram(f->mem, 0, RAM_SIZE, "ram"));
    struct vtio_vtd_platform p = { p_read, p_write, p_irq, f };
    CHECK_OK(vtio_vtd_create(&(struct vtio_vtd_caps){ .fault_regs = fault_regs }, &p,
                             &f->vtd));
}

static void fx_fini(struct fx *f)
{
    vtio_vtd_destroy(f->vtd);
    vtio_mem_destroy(f->mem);
}

static uint32_t r32(struct fx *f, uint64_t off) { return (uint32_t)vtio_vtd_reg_read(f->vtd, off, 4); }
static uint64_t r64(struct fx *f, uint64_t off) { return vtio_vtd_reg_read(f->vtd, off, 8); }
static void w32(struct fx *f, uint64_t off, uint32_t v) { vtio_vtd_reg_write(f->vtd, off, v, 4); }
static void w64(struct fx *f, uint64_t off, uint64_t v) { vtio_vtd_reg_write(f->vtd, off, v, 8); }
static uint32_t fsts(struct fx *f) { return r32(f, VTD_FSTS_REG); }

/* Fault event programmed as Linux does (dmar_msi_write), then unmasked. */
static void fe_program(struct fx *f, bool unmask)
{
    w32(f, VTD_FEDATA_REG, FE_DATA);
    w32(f, VTD_FEADDR_REG, FE_ADDR);
    w32(f, VTD_FEUADDR_REG, 0);
    if (unmask)
        w32(f, VTD_FECTL_REG, 0);
}

static void dma_fault(struct fx *f, uint16_t sid, uint8_t reason, uint64_t addr)
{
    vtd_fault_record(f->vtd, &(struct vtd_fault){ .sid = sid, .reason = reason,
                                                  .addr = addr, .read = true });
}

static uint64_t stat_recorded(struct fx *f)
{
    struct vtio_vtd_stats st;
    vtio_vtd_get_stats(f->vtd, &st);
    return st.faults_recorded;
}

static uint64_t stat_dropped(struct fx *f)
{
    struct vtio_vtd_stats st;
    vtio_vtd_get_stats(f->vtd, &st);
    return st.faults_dropped;
}

/* Linux's handler (dmar_fault): from FRI, while F is set, read the record,
 * clear F with a write of the top dword; then clear PFO/PPF/PRO in FSTS.
 * Calls fn for each record; returns how many. */
static unsigned service(struct fx *f, void (*fn)(void *, uint64_t, uint64_t), void *arg)
{
    unsigned n = 0, nfr = (unsigned)VTD_CAP_NFR(r64(f, VTD_CAP_REG)) + 1;
    uint32_t s = fsts(f);
    if (s & VTD_FSTS_PPF) {
        unsigned i = (unsigned)VTD_FSTS_FRI(s);
        while (r32(f, FRCD_HI(i) + 4) & F_DWORD) {
            uint64_t lo = r64(f, FRCD_LO(i)), hi = r64(f, FRCD_HI(i));
            if (fn)
                fn(arg, lo, hi);
            w32(f, FRCD_HI(i) + 4, F_DWORD);
            n++;
            i = (i + 1) % nfr;
        }
    }
    w32(f, VTD_FSTS_REG, VTD_FSTS_PFO | VTD_FSTS_PPF | VTD_FSTS_PRO);
    return n;
}

/* ------------------------------------------------------------------------
 * Records and FSTS.
 */

static void t_record_fields(void)
{
    struct fx f;
    fx_init(&f, 0);
    /* A write with PASID, privileged, execute. */
    vtd_fault_record(f.vtd, &(struct vtd_fault){
        .sid = 0x1234, .reason = VTD_FR_WRITE, .addr = 0x12345678abcull, .read = false,
        .has_pasid = true, .pasid = 0xabcde, .priv = true, .exec = true });
    CHECK_EQ(r64(&f, FRCD_LO(0)), 0x12345678000ull);
    uint64_t hi = r64(&f, FRCD_HI(0));
    CHECK_EQ(VTD_FRCD_HI_SID(hi), 0x1234);
    CHECK_EQ(VTD_FRCD_HI_FR(hi), VTD_FR_WRITE);
    CHECK_EQ(VTD_FRCD_HI_PV(hi), 0xabcde);
    CHECK(hi & VTD_FRCD_HI_PP);
    CHECK(hi & VTD_FRCD_HI_PRIV);
    CHECK(hi & VTD_FRCD_HI_EXE);
    CHECK(hi & VTD_FRCD_HI_F);
    CHECK_EQ(hi & VTD_FRCD_HI_T, 0);                    /* write */
    CHECK_EQ(hi, 0x1234ull | 1ull << 29 | 1ull << 30 | 1ull << 31 | 0x05ull << 32 |
                 0xabcdeull << 40 | 1ull << 63);
    /* The dwords as Linux reads them: FR at +12 [7:0], PV at +12 [27:8],
     * T at +12 bit 30, SID and PP at +8. */
    uint32_t top = r32(&f, FRCD_HI(0) + 4), mid = r32(&f, FRCD_HI(0));
    CHECK_EQ(top & 0xff, VTD_FR_WRITE);
    CHECK_EQ((top >> 8) & 0xfffff, 0xabcde);
    CHECK_EQ((top >> 30) & 1, 0);
    CHECK_EQ(mid & 0xffff, 0x1234);
    CHECK_EQ(mid >> 31, 1);
    CHECK_EQ(fsts(&f), VTD_FSTS_PPF);                   /* FRI = 0 */

    /* A read without PASID: PP/PV/PRIV/EXE stay clear. */
    vtd_fault_record(f.vtd, &(struct vtd_fault){
        .sid = 0x0010, .reason = VTD_FR_READ, .addr = 0xfff, .read = true,
        .pasid = 0x77, .priv = true, .exec = true });
    CHECK_EQ(r64(&f, FRCD_LO(1)), 0);
    CHECK_EQ(r64(&f, FRCD_HI(1)), 0x0010ull | 0x06ull << 32 | 1ull << 62 | 1ull << 63);
    CHECK_EQ(fsts(&f), VTD_FSTS_PPF);                   /* FRI stays 0 */

    /* An interrupt-remapping fault: the index in FI[63:48], T = 0. */
    vtd_fault_record(f.vtd, &(struct vtd_fault){
        .sid = 0x00f8, .reason = VTD_FR_IR_ENTRY_P, .addr = 0xbeef, .is_ir = true,
        .read = true });
    CHECK_EQ(r64(&f, FRCD_LO(2)), 0xbeef000000000000ull);
    CHECK_EQ(r64(&f, FRCD_HI(2)), 0x00f8ull | 0x22ull << 32 | 1ull << 63);
    CHECK_EQ(stat_recorded(&f), 3);
    CHECK_EQ(stat_dropped(&f), 0);
    CHECK_EQ(atomic_load(&f.irqs), 0);                  /* FECTL.IM at reset */
    CHECK_EQ(r32(&f, VTD_FECTL_REG), VTD_xECTL_IM | VTD_xECTL_IP);
    fx_fini(&f);
}

static void t_collapse_same_sid(void)
{
    struct fx f;
    fx_init(&f, 0);
    dma_fault(&f, 0x0100, VTD_FR_READ, 0x1000);
    dma_fault(&f, 0x0100, VTD_FR_WRITE, 0x2000);       /* collapsed */
    CHECK_EQ(r64(&f, FRCD_LO(0)), 0x1000);
    CHECK_EQ(VTD_FRCD_HI_FR(r64(&f, FRCD_HI(0))), VTD_FR_READ);
    CHECK_EQ(r64(&f, FRCD_HI(1)), 0);
    CHECK_EQ(stat_recorded(&f), 1);
    CHECK_EQ(stat_dropped(&f), 1);

    dma_fault(&f, 0x0101, VTD_FR_READ, 0x3000);        /* another source */
    CHECK_EQ(VTD_FRCD_HI_SID(r64(&f, FRCD_HI(1))), 0x0101);
    /* Once the first is serviced, the source logs again (next slot). */
    w32(&f, FRCD_HI(0) + 4, F_DWORD);
    dma_fault(&f, 0x0100, VTD_FR_WRITE, 0x4000);
    CHECK_EQ(r64(&f, FRCD_LO(2)), 0x4000);
    CHECK_EQ(VTD_FRCD_HI_SID(r64(&f, FRCD_HI(2))), 0x0100);
    CHECK_EQ(stat_recorded(&f), 3);
    fx_fini(&f);
}

static void t_overflow_pfo(void)
{
    struct fx f;
    fx_init(&f, 4);
    fe_program(&f, true);
    for (unsigned i = 0; i < 4; i++)
        dma_fault(&f, (uint16_t)(1 + i), VTD_FR_READ, 0x1000 * (i + 1));
    CHECK_EQ(atomic_load(&f.irqs), 1);
    CHECK_EQ(fsts(&f), VTD_FSTS_PPF);
    dma_fault(&f, 5, VTD_FR_READ, 0x5000);              /* all four busy */
    CHECK_EQ(fsts(&f), VTD_FSTS_PPF | VTD_FSTS_PFO);
    CHECK_EQ(stat_dropped(&f), 1);
    CHECK_EQ(atomic_load(&f.irqs), 1);                  /* PPF was pending */

    /* A free FRCD does not help while PFO is set. */
    w32(&f, FRCD_HI(0) + 4, F_DWORD);
    CHECK_EQ(fsts(&f), VTD_FSTS_PPF | VTD_FSTS_PFO | 1 << VTD_FSTS_FRI_SHIFT);
    dma_fault(&f, 6, VTD_FR_READ, 0x6000);
    CHECK_EQ(stat_dropped(&f), 2);
    CHECK_EQ(r64(&f, FRCD_LO(0)), 0x1000);              /* old record stays */
    /* PFO is RW1C; then logging resumes in FRCD 0, FRI stays at 1. */
    w32(&f, VTD_FSTS_REG, VTD_FSTS_PFO);
    CHECK_EQ(fsts(&f), VTD_FSTS_PPF | 1 << VTD_FSTS_FRI_SHIFT);
    dma_fault(&f, 7, VTD_FR_WRITE, 0x7000);
    CHECK_EQ(r64(&f, FRCD_LO(0)), 0x7000);
    CHECK_EQ(VTD_FRCD_HI_SID(r64(&f, FRCD_HI(0))), 7);
    CHECK_EQ(fsts(&f), VTD_FSTS_PPF | 1 << VTD_FSTS_FRI_SHIFT);
    /* The next slot (1) is busy even though none is free: overflow again. */
    dma_fault(&f, 8, VTD_FR_READ, 0x8000);
    CHECK(fsts(&f) & VTD_FSTS_PFO);
    CHECK_EQ(stat_recorded(&f), 5);
    CHECK_EQ(stat_dropped(&f), 3);
    CHECK_EQ(atomic_load(&f.irqs), 1);
    fx_fini(&f);
}

static void t_rw1c_fri(void)
{
    struct fx f;
    fx_init(&f, 0);
    for (unsigned i = 0; i < 3; i++)
        dma_fault(&f, (uint16_t)(0x10 + i), VTD_FR_READ, 0x1000 * (i + 1));
    uint64_t lo1 = r64(&f, FRCD_LO(1)), hi1 = r64(&f, FRCD_HI(1));

    /* Everything but F is read-only; writing F as 0 does nothing. */
    w64(&f, FRCD_LO(1), ~0ull);
    w32(&f, FRCD_LO(1) + 4, 0xffffffff);
    w32(&f, FRCD_HI(1), 0xffffffff);
    w32(&f, FRCD_HI(1) + 4, 0x7fffffff);
    w64(&f, FRCD_HI(1), 0x7fffffffffffffffull);
    CHECK_EQ(r64(&f, FRCD_LO(1)), lo1);
    CHECK_EQ(r64(&f, FRCD_HI(1)), hi1);
    /* FSTS: PPF and FRI are read-only. */
    w32(&f, VTD_FSTS_REG, VTD_FSTS_PPF | 0xff00);
    CHECK_EQ(fsts(&f), VTD_FSTS_PPF);

    /* Out of order: FRCD 1 first; FRI stays on 0. */
    w32(&f, FRCD_HI(1) + 4, F_DWORD);
    CHECK_EQ(r64(&f, FRCD_HI(1)), hi1 & ~VTD_FRCD_HI_F);   /* fields stay */
    CHECK_EQ(fsts(&f), VTD_FSTS_PPF);
    /* FRCD 0 with Linux's 32-bit write: FRI moves to the next pending, 2. */
    w32(&f, FRCD_HI(0) + 4, F_DWORD);
    CHECK_EQ(fsts(&f), VTD_FSTS_PPF | 2 << VTD_FSTS_FRI_SHIFT);
    /* FRCD 2 with a 64-bit write of the high qword: nothing pending. */
    w64(&f, FRCD_HI(2), VTD_FRCD_HI_F);
    CHECK_EQ(fsts(&f) & VTD_FSTS_PPF, 0);
    CHECK_EQ(r64(&f, FRCD_HI(2)) & VTD_FRCD_HI_F, 0);

    /* The ring goes on at FRCD 3; FRI names it. */
    dma_fault(&f, 0x20, VTD_FR_READ, 0x9000);
    CHECK_EQ(fsts(&f), VTD_FSTS_PPF | 3 << VTD_FSTS_FRI_SHIFT);
    CHECK_EQ(r64(&f, FRCD_LO(3)), 0x9000);
    fx_fini(&f);
}

struct seen {
    unsigned n;
    uint64_t lo[16], hi[16];
};

static void note(void *arg, uint64_t lo, uint64_t hi)
{
    struct seen *s = arg;
    if (s->n < 16) {
        s->lo[s->n] = lo;
        s->hi[s->n] = hi;
    }
    s->n++;
}

/* Linux's handler sees every record once, in order, across the wrap. */
static void t_linux_handler(void)
{
    struct fx f;
    fx_init(&f, 8);
    fe_program(&f, true);
    for (unsigned i = 0; i < 6; i++)
        dma_fault(&f, (uint16_t)i, VTD_FR_READ, 0x1000 * i);
    CHECK_EQ(atomic_load(&f.irqs), 1);
    CHECK_EQ(atomic_load(&f.irq_addr), FE_ADDR);
    CHECK_EQ(atomic_load(&f.irq_data), FE_DATA);
    CHECK_EQ(service(&f, NULL, NULL), 6);
    CHECK_EQ(fsts(&f) & 0xff, 0);                       /* FRI: only with PPF */

    /* Next batch wraps: FRCD 6, 7, 0, 1. */
    for (unsigned i = 0; i < 4; i++)
        dma_fault(&f, (uint16_t)(0x100 + i), (uint8_t)(VTD_FR_ROOT_ENTRY_P + i), 0x10000 * i);
    CHECK_EQ(atomic_load(&f.irqs), 2);
    CHECK_EQ(fsts(&f), VTD_FSTS_PPF | 6 << VTD_FSTS_FRI_SHIFT);
    struct seen s = { 0 };
    CHECK_EQ(service(&f, note, &s), 4);
    for (unsigned i = 0; i < 4; i++) {
        CHECK_EQ(s.lo[i], 0x10000 * i);
        CHECK_EQ(VTD_FRCD_HI_SID(s.hi[i]), 0x100 + i);
        CHECK_EQ(VTD_FRCD_HI_FR(s.hi[i]), VTD_FR_ROOT_ENTRY_P + i);
    }
    CHECK_EQ(fsts(&f) & VTD_FSTS_PPF, 0);
    CHECK_EQ(r32(&f, VTD_FECTL_REG), 0);
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * The fault event.
 */

static void t_event_once(void)
{
    struct fx f;
    fx_init(&f, 0);
    fe_program(&f, true);
    dma_fault(&f, 1, VTD_FR_READ, 0x1000);
    CHECK_EQ(atomic_load(&f.irqs), 1);
    CHECK_EQ(atomic_load(&f.irq_addr), FE_ADDR);
    CHECK_EQ(atomic_load(&f.irq_data), FE_DATA);
    CHECK_EQ(r32(&f, VTD_FECTL_REG), 0);               /* sent: no IP */
    /* A second fault while PPF is pending: logged, no interrupt. */
    dma_fault(&f, 2, VTD_FR_READ, 0x2000);
    CHECK_EQ(atomic_load(&f.irqs), 1);
    CHECK_EQ(stat_recorded(&f), 2);
    /* Serviced: the next fault interrupts again. */
    CHECK_EQ(service(&f, NULL, NULL), 2);
    dma_fault(&f, 3, VTD_FR_READ, 0x3000);
    CHECK_EQ(atomic_load(&f.irqs), 2);
    /* Some other pending condition (IQE) also holds the event back. */
    service(&f, NULL, NULL);
    vtd_fault_set_status(f.vtd, VTD_FSTS_IQE);
    CHECK_EQ(atomic_load(&f.irqs), 3);                  /* IQE is an event */
    dma_fault(&f, 4, VTD_FR_READ, 0x4000);
    CHECK_EQ(atomic_load(&f.irqs), 3);
    fx_fini(&f);
}

static void t_event_masked(void)
{
    struct fx f;
    fx_init(&f, 0);
    fe_program(&f, false);                              /* IM stays set */
    dma_fault(&f, 1, VTD_FR_READ, 0x1000);
    CHECK_EQ(atomic_load(&f.irqs), 0);
    CHECK_EQ(r32(&f, VTD_FECTL_REG), VTD_xECTL_IM | VTD_xECTL_IP);
    dma_fault(&f, 2, VTD_FR_READ, 0x2000);
    CHECK_EQ(atomic_load(&f.irqs), 0);
    /* Writing IM=1 again changes nothing; IP is read-only. */
    w32(&f, VTD_FECTL_REG, VTD_xECTL_IM);
    CHECK_EQ(r32(&f, VTD_FECTL_REG), VTD_xECTL_IM | VTD_xECTL_IP);
    /* Unmask: the held event goes out once. */
    w32(&f, VTD_FECTL_REG, 0);
    CHECK_EQ(atomic_load(&f.irqs), 1);
    CHECK_EQ(atomic_load(&f.irq_data), FE_DATA);
    CHECK_EQ(r32(&f, VTD_FECTL_REG), 0);
    w32(&f, VTD_FECTL_REG, 0);
    CHECK_EQ(atomic_load(&f.irqs), 1);

    /* Masked again, a new event is held; servicing the faults voids it. */
    service(&f, NULL, NULL);
    w32(&f, VTD_FECTL_REG, VTD_xECTL_IM);
    dma_fault(&f, 3, VTD_FR_READ, 0x3000);
    CHECK_EQ(r32(&f, VTD_FECTL_REG), VTD_xECTL_IM | VTD_xECTL_IP);
    service(&f, NULL, NULL);
    CHECK_EQ(r32(&f, VTD_FECTL_REG), VTD_xECTL_IM);
    w32(&f, VTD_FECTL_REG, 0);
    CHECK_EQ(atomic_load(&f.irqs), 1);
    fx_fini(&f);
}

/* IQE/ICE/ITE from the invalidation queue: events and RW1C. */
static void t_qi_error_status(void)
{
    struct fx f;
    fx_init(&f, 0);
    fe_program(&f, true);
    vtd_fault_set_status(f.vtd, VTD_FSTS_ICE | VTD_FSTS_PPF | VTD_FSTS_PFO);
    CHECK_EQ(fsts(&f), VTD_FSTS_ICE);                   /* only QI errors */
    CHECK_EQ(atomic_load(&f.irqs), 1);
    vtd_fault_set_status(f.vtd, VTD_FSTS_ITE);
    CHECK_EQ(fsts(&f), VTD_FSTS_ICE | VTD_FSTS_ITE);
    CHECK_EQ(atomic_load(&f.irqs), 1);
    w32(&f, VTD_FSTS_REG, VTD_FSTS_ICE);
    CHECK_EQ(fsts(&f), VTD_FSTS_ITE);
    w32(&f, VTD_FSTS_REG, 0);
    CHECK_EQ(fsts(&f), VTD_FSTS_ITE);
    w32(&f, VTD_FSTS_REG, VTD_FSTS_ITE);
    CHECK_EQ(fsts(&f), 0);
    vtd_fault_set_status(f.vtd, VTD_FSTS_IQE);
    CHECK_EQ(fsts(&f), VTD_FSTS_IQE);
    CHECK_EQ(atomic_load(&f.irqs), 2);
    fx_fini(&f);
}

static void t_fault_reset(void)
{
    struct fx f;
    fx_init(&f, 2);
    fe_program(&f, true);
    for (unsigned i = 0; i < 3; i++)
        dma_fault(&f, (uint16_t)i, VTD_FR_READ, 0x1000);
    CHECK_EQ(fsts(&f), VTD_FSTS_PPF | VTD_FSTS_PFO);
    vtio_vtd_reset(f.vtd);
    CHECK_EQ(fsts(&f), 0);
    CHECK_EQ(r32(&f, VTD_FECTL_REG), VTD_xECTL_IM);
    CHECK_EQ(r32(&f, VTD_FEDATA_REG), 0);
    CHECK_EQ(r32(&f, VTD_FEADDR_REG), 0);
    for (unsigned i = 0; i < 2; i++) {
        CHECK_EQ(r64(&f, FRCD_LO(i)), 0);
        CHECK_EQ(r64(&f, FRCD_HI(i)), 0);
    }
    dma_fault(&f, 9, VTD_FR_READ, 0x9000);              /* starts at FRCD 0 */
    CHECK_EQ(r64(&f, FRCD_LO(0)), 0x9000);
    CHECK_EQ(fsts(&f), VTD_FSTS_PPF);
    fx_fini(&f);
}

/* A real DMA fault: translation on, no root entry for the bus. */
static void t_translate_fault(void)
{
    struct fx f;
    fx_init(&f, 0);
    fe_program(&f, true);
    vtio_mem_set(f.mem, ROOT_PA, 0, 0x1000);
    w64(&f, VTD_RTADDR_REG, ROOT_PA);
    w32(&f, VTD_GCMD_REG, VTD_GCMD_SRTP);
    w32(&f, VTD_GCMD_REG, VTD_GCMD_TE);
    CHECK_EQ(r32(&f, VTD_GSTS_REG), VTD_GSTS_TES | VTD_GSTS_RTPS);

    struct vtio_vtd_resp resp;
    memset(&resp, 0, sizeof(resp));
    struct vtio_vtd_req req = { .sid = 0x0310, .addr = 0x12345678, .write = false };
    CHECK_ERR(vtio_vtd_translate(f.vtd, &req, &resp), -EFAULT);
    CHECK_EQ(resp.fault, VTD_FR_ROOT_ENTRY_P);
    CHECK_EQ(r64(&f, FRCD_LO(0)), 0x12345000);
    CHECK_EQ(r64(&f, FRCD_HI(0)), 0x0310ull | (uint64_t)VTD_FR_ROOT_ENTRY_P << 32 |
                                  VTD_FRCD_HI_T | VTD_FRCD_HI_F);
    CHECK_EQ(atomic_load(&f.irqs), 1);
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * Concurrency: recorders on several threads, Linux's handler on another.
 */

#define NREC     4
#define PER_REC  10000

struct race {
    struct fx *f;
    unsigned t;
    _Atomic bool *stop;
    unsigned handled, bad;
};

static void *recorder(void *arg)
{
    struct race *r = arg;
    for (unsigned i = 0; i < PER_REC; i++) {
        uint16_t sid = (uint16_t)(r->t << 8 | (i & 0x3f));
        vtd_fault_record(r->f->vtd, &(struct vtd_fault){
            .sid = sid, .reason = (uint8_t)(1 + r->t), .addr = (uint64_t)sid << 12,
            .read = i & 1 });
        if (i % 4 == 0)
            sched_yield();              /* give the handler a chance */
    }
    return NULL;
}

static void check_record(void *arg, uint64_t lo, uint64_t hi)
{
    struct race *r = arg;
    uint16_t sid = (uint16_t)VTD_FRCD_HI_SID(hi);
    if (VTD_FRCD_HI_FR(hi) != 1u + (sid >> 8) || lo != (uint64_t)sid << 12)
        r->bad++;
}

static void *clearer(void *arg)
{
    struct race *r = arg;
    while (!atomic_load(r->stop))
        r->handled += service(r->f, check_record, r);
    return NULL;
}

static void t_threads(void)
{
    struct fx f;
    fx_init(&f, 16);
    fe_program(&f, true);
    _Atomic bool stop = false;
    struct race rec[NREC], clr = { .f = &f, .stop = &stop };
    pthread_t th[NREC], ct;
    CHECK_EQ(pthread_create(&ct, NULL, clearer, &clr), 0);
    for (unsigned t = 0; t < NREC; t++) {
        rec[t] = (struct race){ .f = &f, .t = t, .stop = &stop };
        CHECK_EQ(pthread_create(&th[t], NULL, recorder, &rec[t]), 0);
    }
    for (unsigned t = 0; t < NREC; t++)
        pthread_join(th[t], NULL);
    atomic_store(&stop, true);
    pthread_join(ct, NULL);
    /* What is still pending, serviced now. */
    while (fsts(&f) & VTD_FSTS_PPF)
        clr.handled += service(&f, check_record, &clr);

    CHECK_EQ(clr.bad, 0);
    CHECK_EQ(stat_recorded(&f) + stat_dropped(&f), NREC * PER_REC);
    CHECK_EQ(clr.handled, stat_recorded(&f));
    CHECK_GT(stat_recorded(&f), 0);
    CHECK_GE(atomic_load(&f.irqs), 1);
    CHECK_LE(atomic_load(&f.irqs), stat_recorded(&f));
    CHECK_EQ(fsts(&f) & 0xff, 0);                       /* nothing pending */
    fx_fini(&f);
}

static const struct vtio_test tests[] = {
    { "record_fields", "DMA and IR fault records hold SID, FR, FI, T, PP/PV, PRIV/EXE and F", t_record_fields },
    { "collapse_same_sid", "a fault from a source with a pending record is not logged again", t_collapse_same_sid },
    { "overflow_pfo", "all FRCDs busy sets PFO; nothing is logged until PFO is cleared", t_overflow_pfo },
    { "rw1c_fri", "F is RW1C through the top dword/qword, the rest RO; FRI follows the first pending", t_rw1c_fri },
    { "linux_handler", "Linux's handler loop sees every record in order, across the ring's wrap", t_linux_handler },
    { "event_once", "one fault event message per serviced batch, with FEDATA/FEADDR", t_event_once },
    { "event_masked", "with IM set the event waits in IP, is sent on unmask, voided by servicing", t_event_masked },
    { "qi_error_status", "IQE/ICE/ITE raise the event under the same rule and are RW1C", t_qi_error_status },
    { "fault_reset", "reset clears FSTS, FRCDs and the event registers; logging restarts at 0", t_fault_reset },
    { "translate_fault", "a DMA without a root entry is refused and logged with reason 1", t_translate_fault },
    { "threads", "four threads record while one services: counts add up, every record intact", t_threads },
};

VTIO_TEST_MAIN(tests)
