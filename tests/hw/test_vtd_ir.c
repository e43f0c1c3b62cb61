/*
 * VT-d interrupt remapping (spec chapter 5): every fault reason 20h-26h,
 * SID/SQ/SVT verification, handles and subhandles, CFIS, the interrupt
 * entry cache (stale until invalidated), pass-through with IR off, and the
 * remapped message field by field.  Each test builds its own unit over a
 * plain RAM buffer; the platform's interrupt callback records what leaves
 * the unit.
 */
#include "harness.h"

#include <vtio/intr.h>
#include <vtio/vtd.h>
#include <vtio/vtd_regs.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "hw/vtd/vtd_internal.h"

#define RAM_SIZE  (4ull << 20)
#define IRT       0x100000ull        /* the interrupt remapping table */
#define IQ        0x300000ull        /* invalidation queue */
#define STATUS    0x301000ull        /* wait-descriptor status */
#define SID_DEV   0x0118             /* 01:03.0, the requester in most tests */
#define MSG_MAX   64

struct rig {
    struct vtio_vtd *vtd;
    uint8_t *ram;
    pthread_mutex_t lock;            /* guards the message log */
    unsigned nmsg;
    uint64_t addr[MSG_MAX];
    uint32_t data[MSG_MAX];
    _Atomic uint64_t per_vector[256];
};

/* ---- platform: RAM in a buffer; aligned words move as atomics so the
 * concurrency test can rewrite IRTEs under readers. */

static int ram_read(void *opaque, uint64_t pa, void *buf, size_t len)
{
    struct rig *r = opaque;
    if (pa > RAM_SIZE || len > RAM_SIZE - pa)
        return -EFAULT;
    if (pa % 8 == 0 && len % 8 == 0) {
        for (size_t i = 0; i < len / 8; i++)
            ((uint64_t *)buf)[i] = __atomic_load_n((uint64_t *)(r->ram + pa) + i,
                                                   __ATOMIC_ACQUIRE);
    } else {
        memcpy(buf, r->ram + pa, len);
    }
    return 0;
}

static int ram_write(void *opaque, uint64_t pa, const void *buf, size_t len)
{
    struct rig *r = opaque;
    if (pa > RAM_SIZE || len > RAM_SIZE - pa)
        return -EFAULT;
    if (pa % 4 == 0 && len == 4)
        __atomic_store_n((uint32_t *)(r->ram + pa), *(const uint32_t *)buf, __ATOMIC_RELEASE);
    else
        memcpy(r->ram + pa, buf, len);
    return 0;
}

static void on_interrupt(void *opaque, uint64_t addr, uint32_t data)
{
    struct rig *r = opaque;
    atomic_fetch_add(&r->per_vector[data & 0xff], 1);
    pthread_mutex_lock(&r->lock);
    if (r->nmsg < MSG_MAX) {
        r->addr[r->nmsg] = addr;
        r->data[r->nmsg] = data;
    }
    r->nmsg++;
    pthread_mutex_unlock(&r->lock);
}

static void wr64(struct rig *r, uint64_t pa, uint64_t v)
{
    __atomic_store_n((uint64_t *)(r->ram + pa), v, __ATOMIC_RELEASE);
}

static uint64_t reg(struct rig *r, uint64_t off, unsigned size)
{
    return vtio_vtd_reg_read(r->vtd, off, size);
}

static void up(struct rig *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    r->ram = calloc(1, RAM_SIZE);
    CHECK(r->ram != NULL);
    struct vtio_vtd_platform plat = { .mem_read = ram_read, .mem_write = ram_write,
                                      .interrupt = on_interrupt, .opaque = r };
    CHECK_OK(vtio_vtd_create(NULL, &plat, &r->vtd));
}

static void down(struct rig *r)
{
    vtio_vtd_destroy(r->vtd);
    free(r->ram);
    pthread_mutex_destroy(&r->lock);
}

/* IRTA = table | S, SIRTP, then IRE (and CFI if asked), each acknowledged
 * in GSTS as Linux polls for it. */
static void ir_enable(struct rig *r, uint64_t irta, bool cfi)
{
    vtio_vtd_reg_write(r->vtd, VTD_IRTA_REG, irta, 8);
    vtio_vtd_reg_write(r->vtd, VTD_GCMD_REG, VTD_GCMD_SIRTP, 4);
    CHECK(reg(r, VTD_GSTS_REG, 4) & VTD_GSTS_IRTPS);
    uint32_t cmd = VTD_GCMD_IRE | (cfi ? VTD_GCMD_CFI : 0);
    vtio_vtd_reg_write(r->vtd, VTD_GCMD_REG, cmd, 4);
    uint32_t gsts = (uint32_t)reg(r, VTD_GSTS_REG, 4);
    CHECK(gsts & VTD_GSTS_IRES);
    CHECK_EQ(!!(gsts & VTD_GSTS_CFIS), cfi);
}

/* A remapped-format IRTE: vector to xAPIC destination dest. */
static uint64_t irte_lo(unsigned vector, unsigned dest)
{
    return VTD_IRTE_P | (uint64_t)vector << VTD_IRTE_V_SHIFT |
           (uint64_t)(dest << 8) << VTD_IRTE_DST_SHIFT;
}

static uint64_t irte_hi(uint16_t sid, unsigned sq, unsigned svt)
{
    return sid | (uint64_t)sq << VTD_IRTE_SQ_SHIFT | (uint64_t)svt << VTD_IRTE_SVT_SHIFT;
}

/* Writes an IRTE in memory only (the IEC may still hold the old one). */
static void put_irte(struct rig *r, unsigned idx, uint64_t lo, uint64_t hi)
{
    wr64(r, IRT + 16ull * idx, lo);
    wr64(r, IRT + 16ull * idx + 8, hi);
}

/* Writes an IRTE and invalidates it, as a driver must. */
static void set_irte(struct rig *r, unsigned idx, uint64_t lo, uint64_t hi)
{
    put_irte(r, idx, lo, hi);
    vtd_iec_inv(r->vtd, false, idx, 0);
}

static uint64_t remappable(unsigned handle, bool shv)
{
    return VTIO_MSI_WINDOW_BASE | VTD_MSI_MAKE_HANDLE(handle) | VTD_MSI_IF |
           (shv ? VTD_MSI_SHV : 0);
}

/* The last message that left the unit, and that it was message number n. */
static void expect_msg(struct rig *r, unsigned n, uint64_t addr, uint32_t data)
{
    CHECK_EQ(r->nmsg, n);
    CHECK_EQ(r->addr[n - 1], addr);
    CHECK_EQ(r->data[n - 1], data);
}

/* The first pending fault record: reason, SID, interrupt index, an
 * interrupt request (a write, no PASID).  Clears it again. */
static void expect_fault(struct rig *r, uint16_t sid, unsigned reason, unsigned index)
{
    uint32_t fsts = (uint32_t)reg(r, VTD_FSTS_REG, 4);
    CHECKF(fsts & VTD_FSTS_PPF, "no fault pending (FSTS %#x), want reason %#x", fsts, reason);
    uint64_t off = VTD_CAP_FRO(reg(r, VTD_CAP_REG, 8)) * 16 +
                   VTD_FSTS_FRI(fsts) * VTD_FRCD_SIZE;
    uint64_t lo = reg(r, off, 8), hi = reg(r, off + 8, 8);
    CHECK(hi & VTD_FRCD_HI_F);
    CHECK_EQ(VTD_FRCD_HI_FR(hi), reason);
    CHECK_EQ(VTD_FRCD_HI_SID(hi), sid);
    CHECK_EQ(lo >> VTD_FRCD_LO_IIDX_SHIFT, index);
    CHECK_EQ(hi & (VTD_FRCD_HI_T | VTD_FRCD_HI_PP), 0);
    vtio_vtd_reg_write(r->vtd, off + 12, VTD_FRCD_HI_F >> 32, 4);
    CHECK_EQ(reg(r, VTD_FSTS_REG, 4) & VTD_FSTS_PPF, 0);
}

static void expect_no_fault(struct rig *r)
{
    CHECK_EQ(reg(r, VTD_FSTS_REG, 4) & (VTD_FSTS_PPF | VTD_FSTS_PFO), 0);
}

/* Sends a request that must be blocked with reason/index, nothing sent. */
static void blocked(struct rig *r, uint16_t sid, uint64_t addr, uint32_t data, unsigned reason,
                    unsigned index)
{
    unsigned n = r->nmsg;
    CHECK_ERR(vtio_vtd_interrupt(r->vtd, sid, addr, data), -EFAULT);
    CHECK_EQ(r->nmsg, n);
    expect_fault(r, sid, reason, index);
}

/* ------------------------------------------------------------------------ */

static void t_off_passes_through(void)
{
    struct rig r;
    up(&r);
    CHECK_EQ(reg(&r, VTD_GSTS_REG, 4) & (VTD_GSTS_IRES | VTD_GSTS_CFIS), 0);
    /* Both formats pass unchanged, remappable ones included (nothing reads
     * the table: there is none). */
    CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, 0xfee01000, 0x4031));
    expect_msg(&r, 1, 0xfee01000, 0x4031);
    CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(7, true), 0x12345678));
    expect_msg(&r, 2, remappable(7, true), 0x12345678);
    expect_no_fault(&r);
    /* On, then off again: pass-through again. */
    ir_enable(&r, IRT | 7, false);
    vtio_vtd_reg_write(r.vtd, VTD_GCMD_REG, 0, 4);
    CHECK_EQ(reg(&r, VTD_GSTS_REG, 4) & VTD_GSTS_IRES, 0);
    CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, 0xfee02000, 0x22));
    expect_msg(&r, 3, 0xfee02000, 0x22);
    struct vtio_vtd_stats st;
    vtio_vtd_get_stats(r.vtd, &st);
    CHECK_EQ(st.interrupts_remapped, 0);
    CHECK_EQ(st.interrupts_blocked, 0);
    down(&r);
}

static void t_message_fields(void)
{
    struct rig r;
    up(&r);
    ir_enable(&r, IRT | 7, false);
    const uint64_t base = VTIO_MSI_WINDOW_BASE;
    static const struct {
        uint64_t lo;
        uint64_t addr;
        uint32_t data;
    } cases[] = {
        { 0, base, 0x30 },                                           /* vector 0x30, APIC 0 */
        { VTD_IRTE_DM, base | 1u << 2, 0x30 },                       /* DM -> address bit 2 */
        { VTD_IRTE_RH, base | 1u << 3, 0x30 },                       /* RH -> address bit 3 */
        { VTD_IRTE_TM, base, 0x30 | 1u << 15 },                      /* TM -> data bit 15 */
        { 0xfull << 8, base, 0x30 },                                 /* AVAIL: no effect */
        { 1ull << VTD_IRTE_DLM_SHIFT, base, 0x130 },                 /* DLM -> data 10:8 */
        { 2ull << VTD_IRTE_DLM_SHIFT, base, 0x230 },
        { 4ull << VTD_IRTE_DLM_SHIFT, base, 0x430 },
        { 7ull << VTD_IRTE_DLM_SHIFT, base, 0x730 },
        { 0xa5ull << 40, base | 0xa5u << 12, 0x30 },                 /* DST[15:8] -> 19:12 */
        { 0xcfull << VTD_IRTE_V_SHIFT, base, 0xff },                 /* vector bits OR in */
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        set_irte(&r, 3, irte_lo(0x30, 0) | cases[i].lo, 0);
        CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(3, false), 0));
        expect_msg(&r, i + 1, cases[i].addr, cases[i].data);
    }
    /* Everything at once. */
    set_irte(&r, 3, irte_lo(0x9a, 0x3c) | VTD_IRTE_DM | VTD_IRTE_RH | VTD_IRTE_TM |
                        5ull << VTD_IRTE_DLM_SHIFT, 0);
    CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(3, false), 0));
    expect_msg(&r, 12, base | 0x3c000 | 0xc, 0x9a | 0x500 | 0x8000);
    expect_no_fault(&r);
    struct vtio_vtd_stats st;
    vtio_vtd_get_stats(r.vtd, &st);
    CHECK_EQ(st.interrupts_remapped, 12);
    CHECK_EQ(st.interrupts_blocked, 0);
    down(&r);
}

static void t_handle_and_subhandle(void)
{
    struct rig r;
    up(&r);
    ir_enable(&r, IRT | 15, false);                  /* 65536 entries: 1 MiB */
    set_irte(&r, 0x8003, irte_lo(0x41, 1), 0);       /* handle[15] is address bit 2 */
    set_irte(&r, 0x7fff, irte_lo(0x42, 1), 0);
    set_irte(&r, 0x0010, irte_lo(0x43, 1), 0);
    set_irte(&r, 0x0012, irte_lo(0x44, 1), 0);
    CHECK_EQ(remappable(0x8003, false), 0xfee00000u | 3u << 5 | 1u << 4 | 1u << 2);
    CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(0x8003, false), 0));
    CHECK_EQ(r.data[0], 0x41);
    CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(0x7fff, false), 0));
    CHECK_EQ(r.data[1], 0x42);
    /* SHV: index = handle + subhandle (data 15:0). */
    CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(0x10, true), 2));
    CHECK_EQ(r.data[2], 0x44);
    CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(0x10, true), 0));
    CHECK_EQ(r.data[3], 0x43);
    /* Without SHV the data is not looked at. */
    CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(0x10, false), 0xffff0002));
    CHECK_EQ(r.data[4], 0x43);
    /* Address bits 1:0 are don't-care. */
    CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(0x12, false) | 3, 0));
    CHECK_EQ(r.data[5], 0x44);
    expect_no_fault(&r);
    down(&r);
}

static void t_fault_request_reserved(void)
{
    struct rig r;
    up(&r);
    ir_enable(&r, IRT | 7, true);
    set_irte(&r, 4, irte_lo(0x50, 0), 0);
    /* 20h: address bits 63:32 set (either format), not 0xFEEx_xxxx, or
     * SHV with data bits 31:16 set (index recorded: the handle). */
    blocked(&r, SID_DEV, 1ull << 32 | remappable(4, false), 0, VTD_FR_IR_REQ_RSVD, 0);
    blocked(&r, SID_DEV, 1ull << 63 | 0xfee00000, 0x30, VTD_FR_IR_REQ_RSVD, 0);
    blocked(&r, SID_DEV, 0xfed00000 | VTD_MSI_MAKE_HANDLE(4) | VTD_MSI_IF, 0,
            VTD_FR_IR_REQ_RSVD, 0);
    blocked(&r, SID_DEV, remappable(4, true), 0x10000, VTD_FR_IR_REQ_RSVD, 4);
    struct vtio_vtd_stats st;
    vtio_vtd_get_stats(r.vtd, &st);
    CHECK_EQ(st.interrupts_blocked, 4);
    CHECK_EQ(st.faults_recorded, 4);
    CHECK_EQ(st.interrupts_remapped, 0);
    down(&r);
}

static void t_fault_index_beyond_table(void)
{
    struct rig r;
    up(&r);
    ir_enable(&r, IRT | 0, false);                   /* S=0: 2 entries */
    set_irte(&r, 0, irte_lo(0x50, 0), 0);
    set_irte(&r, 1, irte_lo(0x51, 0), 0);
    CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(1, false), 0));
    blocked(&r, SID_DEV, remappable(2, false), 0, VTD_FR_IR_INDEX_OVER, 2);
    blocked(&r, SID_DEV, remappable(0x8000, false), 0, VTD_FR_IR_INDEX_OVER, 0x8000);
    /* The subhandle carries it over the end. */
    blocked(&r, SID_DEV, remappable(1, true), 1, VTD_FR_IR_INDEX_OVER, 2);
    down(&r);
}

static void t_fault_not_present_and_fpd(void)
{
    struct rig r;
    up(&r);
    ir_enable(&r, IRT | 7, false);
    set_irte(&r, 9, irte_lo(0x50, 0) & ~VTD_IRTE_P, 0);
    blocked(&r, SID_DEV, remappable(9, false), 0, VTD_FR_IR_ENTRY_P, 9);
    /* FPD is honoured even in a not-present entry: blocked, not recorded. */
    set_irte(&r, 9, VTD_IRTE_FPD, 0);
    CHECK_ERR(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(9, false), 0), -EFAULT);
    expect_no_fault(&r);
    /* FPD in a present entry suppresses its SID fault, too. */
    set_irte(&r, 10, irte_lo(0x51, 0) | VTD_IRTE_FPD, irte_hi(0x0200, 0, VTD_IRTE_SVT_SID));
    CHECK_ERR(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(10, false), 0), -EFAULT);
    expect_no_fault(&r);
    struct vtio_vtd_stats st;
    vtio_vtd_get_stats(r.vtd, &st);
    CHECK_EQ(st.interrupts_blocked, 3);
    CHECK_EQ(st.faults_recorded, 1);
    CHECK_EQ(st.faults_suppressed, 2);
    CHECK_EQ(r.nmsg, 0);
    down(&r);
}

static void t_fault_table_access(void)
{
    struct rig r;
    up(&r);
    ir_enable(&r, RAM_SIZE | 7, false);              /* the table is outside RAM */
    blocked(&r, SID_DEV, remappable(5, false), 0, VTD_FR_IR_ROOT_INVAL, 5);
    down(&r);
}

static void t_fault_irte_reserved(void)
{
    struct rig r;
    up(&r);
    ir_enable(&r, IRT | 7, false);
    CHECK_EQ(reg(&r, VTD_CAP_REG, 8) & VTD_CAP_PI, 0);
    static const struct { uint64_t lo, hi; } bad[] = {
        { 1ull << 12, 0 }, { 1ull << 14, 0 },        /* lo 14:12 */
        { 1ull << 24, 0 }, { 1ull << 31, 0 },        /* lo 31:24 */
        { VTD_IRTE_IM, 0 },                          /* posted format without CAP.PI */
        { 1ull << 32, 0 }, { 1ull << 39, 0 },        /* xAPIC: DST 7:0 reserved */
        { 1ull << 48, 0 }, { 1ull << 63, 0 },        /* xAPIC: DST 31:16 reserved */
        { 0, 1ull << 20 }, { 0, 1ull << 63 },        /* hi 127:84 */
        { 0, 3ull << VTD_IRTE_SVT_SHIFT },           /* SVT 11b is reserved */
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set_irte(&r, 6, irte_lo(0x50, 0) | bad[i].lo, bad[i].hi);
        blocked(&r, SID_DEV, remappable(6, false), 0, VTD_FR_IR_IRTE_RSVD, 6);
    }
    /* FPD suppresses it. */
    set_irte(&r, 6, irte_lo(0x50, 0) | VTD_IRTE_FPD | 1ull << 12, 0);
    CHECK_ERR(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(6, false), 0), -EFAULT);
    expect_no_fault(&r);
    down(&r);
}

static void t_compatibility_format(void)
{
    struct rig r;
    up(&r);
    /* CFIS clear (what Linux leaves): blocked, 25h, no index. */
    ir_enable(&r, IRT | 7, false);
    blocked(&r, SID_DEV, 0xfee01000, 0x31, VTD_FR_IR_REQ_COMPAT, 0);
    /* CFIS set: passes unchanged, and is not "remapped". */
    vtio_vtd_reg_write(r.vtd, VTD_GCMD_REG, VTD_GCMD_IRE | VTD_GCMD_CFI, 4);
    CHECK(reg(&r, VTD_GSTS_REG, 4) & VTD_GSTS_CFIS);
    CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, 0xfee01008, 0x8131));
    expect_msg(&r, 1, 0xfee01008, 0x8131);
    expect_no_fault(&r);
    struct vtio_vtd_stats st;
    vtio_vtd_get_stats(r.vtd, &st);
    CHECK_EQ(st.interrupts_remapped, 0);
    CHECK_EQ(st.interrupts_blocked, 1);
    down(&r);
}

static void t_source_id_verification(void)
{
    struct rig r;
    up(&r);
    ir_enable(&r, IRT | 7, false);
    const uint64_t a = remappable(2, false);
    const uint16_t sid = 0x0a1f;                     /* 0a:03.7 */
    /* SVT 00b: any requester. */
    set_irte(&r, 2, irte_lo(0x60, 0), irte_hi(0x1234, 3, VTD_IRTE_SVT_NONE));
    CHECK_OK(vtio_vtd_interrupt(r.vtd, 0x0001, a, 0));
    CHECK_OK(vtio_vtd_interrupt(r.vtd, 0xffff, a, 0));
    /* SVT 01b: all 16 bits, or all but the function bits SQ names. */
    static const struct { unsigned sq; uint16_t pass, fail; } sq[] = {
        { 0, sid, sid ^ 0x4 },                       /* SQ 0: every bit counts */
        { 0, sid, sid ^ 0x1 },
        { 1, sid ^ 0x4, sid ^ 0x2 },                 /* SQ 1: ignore bit 2 */
        { 2, sid ^ 0x6, sid ^ 0x1 },                 /* SQ 2: ignore bits 2:1 */
        { 3, sid ^ 0x7, sid ^ 0x8 },                 /* SQ 3: ignore bits 2:0 */
        { 3, sid ^ 0x7, sid ^ 0x100 },
    };
    for (unsigned i = 0; i < sizeof(sq) / sizeof(sq[0]); i++) {
        set_irte(&r, 2, irte_lo(0x60, 0), irte_hi(sid, sq[i].sq, VTD_IRTE_SVT_SID));
        CHECK_OK(vtio_vtd_interrupt(r.vtd, sq[i].pass, a, 0));
        CHECK_OK(vtio_vtd_interrupt(r.vtd, sid, a, 0));
        blocked(&r, sq[i].fail, a, 0, VTD_FR_IR_SID_ERR, 2);
    }
    /* SVT 10b: the requester's bus in [SID[15:8], SID[7:0]]; SQ unused. */
    set_irte(&r, 2, irte_lo(0x60, 0), irte_hi(0x0205, 3, VTD_IRTE_SVT_BUS));
    for (unsigned bus = 2; bus <= 5; bus++)
        CHECK_OK(vtio_vtd_interrupt(r.vtd, (uint16_t)(bus << 8 | 0xff), a, 0));
    blocked(&r, 0x01ff, a, 0, VTD_FR_IR_SID_ERR, 2);
    blocked(&r, 0x0600, a, 0, VTD_FR_IR_SID_ERR, 2);
    set_irte(&r, 2, irte_lo(0x60, 0), irte_hi(0x0707, 0, VTD_IRTE_SVT_BUS));
    CHECK_OK(vtio_vtd_interrupt(r.vtd, 0x0738, a, 0));
    blocked(&r, 0x0838, a, 0, VTD_FR_IR_SID_ERR, 2);
    down(&r);
}

static void t_iec_stale_until_invalidated(void)
{
    struct rig r;
    up(&r);
    ir_enable(&r, IRT | 7, false);
    for (unsigned i = 4; i <= 8; i++)
        set_irte(&r, i, irte_lo(0x40 + i, 0), 0);
    for (unsigned i = 4; i <= 8; i++)                /* fill the cache */
        CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(i, false), 0));
    /* The driver changes the entries without invalidating: the unit may
     * (and vtio does) keep using what it cached. */
    for (unsigned i = 4; i <= 8; i++)
        put_irte(&r, i, irte_lo(0x80 + i, 0), 0);
    unsigned n = r.nmsg;
    for (unsigned i = 4; i <= 8; i++) {
        CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(i, false), 0));
        CHECK_EQ(r.data[n++], 0x40 + i);
    }
    /* Index-selective with mask: IIDX 5, IM 2 covers 4..7, not 8. */
    vtd_iec_inv(r.vtd, false, 5, 2);
    for (unsigned i = 4; i <= 8; i++) {
        CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(i, false), 0));
        CHECK_EQ(r.data[n++], (i == 8 ? 0x40 : 0x80) + i);
    }
    /* Even a now-invalid entry is served from the cache until invalidated. */
    put_irte(&r, 8, 0, 0);
    CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(8, false), 0));
    CHECK_EQ(r.data[n++], 0x48);
    vtd_iec_inv(r.vtd, true, 0, 0);                  /* global */
    blocked(&r, SID_DEV, remappable(8, false), 0, VTD_FR_IR_ENTRY_P, 8);
    /* Not-present entries are not cached: making one present needs no
     * invalidation to be seen. */
    put_irte(&r, 8, irte_lo(0x77, 0), 0);
    CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(8, false), 0));
    CHECK_EQ(r.data[n++], 0x77);
    down(&r);
}

/* The IEC descriptor through the invalidation queue, as Linux sends it. */
static void t_iec_invalidation_descriptor(void)
{
    struct rig r;
    up(&r);
    vtio_vtd_reg_write(r.vtd, VTD_IQT_REG, 0, 8);
    vtio_vtd_reg_write(r.vtd, VTD_IQA_REG, IQ, 8);
    vtio_vtd_reg_write(r.vtd, VTD_GCMD_REG, VTD_GCMD_QIE, 4);
    CHECK(reg(&r, VTD_GSTS_REG, 4) & VTD_GSTS_QIES);
    vtio_vtd_reg_write(r.vtd, VTD_IRTA_REG, IRT | 7, 8);
    vtio_vtd_reg_write(r.vtd, VTD_GCMD_REG, VTD_GCMD_QIE | VTD_GCMD_SIRTP, 4);
    vtio_vtd_reg_write(r.vtd, VTD_GCMD_REG, VTD_GCMD_QIE | VTD_GCMD_IRE, 4);
    CHECK(reg(&r, VTD_GSTS_REG, 4) & VTD_GSTS_IRES);
    set_irte(&r, 12, irte_lo(0x50, 0), 0);
    CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(12, false), 0));
    put_irte(&r, 12, irte_lo(0x51, 0), 0);
    CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(12, false), 0));
    CHECK_EQ(r.data[1], 0x50);
    /* Index-selective IEC descriptor (IIDX 12, IM 0) and a wait. */
    wr64(&r, IQ, VTD_INV_DESC_IEC | VTD_INV_IEC_G | 12ull << 32);
    wr64(&r, IQ + 8, 0);
    wr64(&r, IQ + 16, VTD_INV_DESC_WAIT | VTD_INV_WAIT_SW | 0x5a5aull << 32);
    wr64(&r, IQ + 24, STATUS);
    vtio_vtd_reg_write(r.vtd, VTD_IQT_REG, 2 << VTD_IQ_OFF_SHIFT, 8);
    CHECK_EQ(__atomic_load_n((uint32_t *)(r.ram + STATUS), __ATOMIC_ACQUIRE), 0x5a5a);
    CHECK_EQ(reg(&r, VTD_FSTS_REG, 4) & VTD_FSTS_IQE, 0);
    CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(12, false), 0));
    CHECK_EQ(r.data[2], 0x51);
    down(&r);
}

/* ---- concurrency: device threads remap while the CPU rewrites and
 * invalidates; a message carries the old or the new vector, never a torn
 * one, and after an invalidation the new one. */

#define THREADS 4
#define ROUNDS  20000

struct sender {
    struct rig *r;
    unsigned index;
    _Atomic bool *stop;
    unsigned errors;
};

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    for (unsigned i = 0; i < ROUNDS && !atomic_load(s->stop); i++)
        if (vtio_vtd_interrupt(s->r->vtd, SID_DEV, remappable(s->index, false), 0) < 0)
            s->errors++;
    return NULL;
}

static void t_concurrent_remap_and_invalidate(void)
{
    struct rig r;
    up(&r);
    ir_enable(&r, IRT | 7, false);
    for (unsigned i = 0; i < THREADS; i++)
        set_irte(&r, i, irte_lo(0x40, 0), 0);
    _Atomic bool stop = false;
    struct sender s[THREADS];
    pthread_t tid[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        s[i] = (struct sender){ .r = &r, .index = i, .stop = &stop };
        CHECK_EQ(pthread_create(&tid[i], NULL, sender_main, &s[i]), 0);
    }
    for (unsigned k = 0; k < 400; k++) {
        unsigned v = 0x40 + (k & 1);
        for (unsigned i = 0; i < THREADS; i++)
            put_irte(&r, i, irte_lo(v, 0), 0);
        if (k % 3)
            vtd_iec_inv(r.vtd, false, 0, 2);
        else
            vtd_iec_inv(r.vtd, true, 0, 0);
    }
    atomic_store(&stop, true);
    for (unsigned i = 0; i < THREADS; i++) {
        pthread_join(tid[i], NULL);
        CHECK_EQ(s[i].errors, 0);
    }
    uint64_t total = 0;
    for (unsigned v = 0; v < 256; v++)
        if (v != 0x40 && v != 0x41)
            CHECK_EQ(atomic_load(&r.per_vector[v]), 0);
    total = atomic_load(&r.per_vector[0x40]) + atomic_load(&r.per_vector[0x41]);
    struct vtio_vtd_stats st;
    vtio_vtd_get_stats(r.vtd, &st);
    CHECK_EQ(st.interrupts_remapped, total);
    /* After the last invalidation every lookup sees the last vector. */
    for (unsigned i = 0; i < THREADS; i++) {
        set_irte(&r, i, irte_lo(0x42, 0), 0);
        CHECK_OK(vtio_vtd_interrupt(r.vtd, SID_DEV, remappable(i, false), 0));
    }
    CHECK_EQ(atomic_load(&r.per_vector[0x42]), THREADS);
    down(&r);
}

static const struct vtio_test tests[] = {
    { "off_passes_through", "with GSTS.IRES clear both formats pass unchanged and nothing is "
      "counted or recorded", t_off_passes_through },
    { "message_fields", "each IRTE field lands in its bit of the compatibility-format "
      "address/data, and nothing else does", t_message_fields },
    { "handle_and_subhandle", "the handle is address 19:5 plus bit 2 as bit 15, SHV adds "
      "data 15:0, address 1:0 and non-SHV data are ignored", t_handle_and_subhandle },
    { "fault_request_reserved", "fault 20h for address 63:32, a non-0xFEE address and SHV "
      "data 31:16, with SID and index", t_fault_request_reserved },
    { "fault_index_beyond_table", "fault 21h for an index (with or without subhandle) "
      "beyond 2^(S+1), index recorded", t_fault_index_beyond_table },
    { "fault_not_present_and_fpd", "fault 22h for P=0; FPD (even with P=0) blocks without "
      "recording and counts suppressed", t_fault_not_present_and_fpd },
    { "fault_table_access", "fault 23h when the IRTE cannot be read", t_fault_table_access },
    { "fault_irte_reserved", "fault 24h for each reserved IRTE field, posted format without "
      "CAP.PI, SVT 11b; FPD suppresses it", t_fault_irte_reserved },
    { "compatibility_format", "fault 25h for compatibility format with CFIS clear; with "
      "CFIS set it passes unchanged", t_compatibility_format },
    { "source_id_verification", "fault 26h per SVT/SQ: SQ masks function bits, SVT 10b "
      "checks the bus range, SVT 00b checks nothing", t_source_id_verification },
    { "iec_stale_until_invalidated", "cached IRTEs are used until an index/mask or global "
      "IEC invalidation; not-present ones are not cached", t_iec_stale_until_invalidated },
    { "iec_invalidation_descriptor", "an IEC descriptor and wait through the queue make "
      "a changed IRTE visible", t_iec_invalidation_descriptor },
    { "concurrent_remap_and_invalidate", "4 threads remap while the CPU rewrites and "
      "invalidates: only old/new vectors, new after the last invalidation",
      t_concurrent_remap_and_invalidate },
};
VTIO_TEST_MAIN(tests)
