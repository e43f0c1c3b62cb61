/*
 * Tests of the VT-d unit in legacy mode: root and context entries, second-
 * level page walks of 3, 4 and 5 levels with 4 KiB, 2 MiB and 1 GiB pages,
 * permissions, and every legacy fault reason with its fault record.
 *
 * Each test builds its own unit and tables (tests/hw/vtd_builder.h) and
 * drives it through vtio_vtd_translate() and the register file.
 */
#include "test_vtd_xlate_fixture.h"

static const struct vtio_vtd_caps caps57 = { .addr_width = 57 };
static const struct vtio_vtd_caps caps48 = { .addr_width = 48 };

/* A legacy TT=00 context for sid with an empty second-level table. */
static uint64_t legacy_ctx(struct fx *f, uint16_t sid, unsigned aw, uint16_t did)
{
    uint64_t sl = vtdb_page(&f->b);
    vtdb_ctx_legacy(&f->b, f->root, sid, VTD_CTX_TT_MULTI_LEVEL, aw, did, sl, false);
    return sl;
}

/* ------------------------------------------------------------------------ */

static void t_disabled_identity(void)
{
    struct fx f;
    struct vtio_vtd_resp r;
    fx_init(&f, NULL);
    legacy_ctx(&f, SID, 2, DID);        /* tables exist but TE is off */
    CHECK_XLATE(&f, SID, 0x123456789ull, true, 0x123456789ull, 4096, true, true);
    CHECK_XLATE(&f, SID, 0xfff, false, 0xfff, 4096, true, true);
    /* A data access to the interrupt window is not DMA: refused, and with
     * remapping off nothing is recorded. */
    CHECK_ERR(fx_xlate(&f, SID, 0xfee00010, true, &r), -EFAULT);
    CHECK_EQ(r.fault, VTD_FR_INTERRUPT_ADDR);
    CHECK_EQ(fx_pending(&f), 0);
    CHECK_EQ(fx_walks(&f), 0);
    fx_fini(&f);
}

static void t_levels_and_page_sizes(void)
{
    for (unsigned aw = 1; aw <= 3; aw++) {
        struct fx f;
        fx_init(&f, &caps57);
        uint64_t sl = legacy_ctx(&f, SID, aw, DID);
        unsigned levels = aw + 2, top = 12 + 9 * levels;
        uint64_t hi = 1ull << (top - 1);             /* the highest IOVA bit */
        uint64_t v4k = hi | 0x12345000, v2m = hi | (5ull << 21), v1g = hi | (3ull << 30);
        vtdb_sl_map(&f.b, sl, levels, v4k, 0x123000, 12, VTD_SL_R | VTD_SL_W);
        vtdb_sl_map(&f.b, sl, levels, v2m, 0x600000, 21, VTD_SL_R | VTD_SL_W);
        vtdb_sl_map(&f.b, sl, levels, v1g, 0x40000000, 30, VTD_SL_R | VTD_SL_W);
        fx_enable(&f, false);
        CHECK_XLATE(&f, SID, v4k + 0xabc, false, 0x123abc, 4096, true, true);
        CHECK_XLATE(&f, SID, v4k + 0xabc, true, 0x123abc, 4096, true, true);
        CHECK_XLATE(&f, SID, v2m + 0x1f0ff8, true, 0x7f0ff8, 2 * MiB, true, true);
        CHECK_XLATE(&f, SID, v1g + 0x3ffffffc, false, 0x7ffffffc, GiB, true, true);
        /* The next page over is not mapped. */
        CHECK_XFAULT_REC(&f, SID, v4k + 0x1000, false, VTD_FR_READ);
        CHECK_EQ(fx_walks(&f), 4);     /* the write hit the IOTLB */
        fx_fini(&f);
    }
}

static void t_permissions(void)
{
    struct fx f;
    fx_init(&f, &caps48);
    uint64_t sl = legacy_ctx(&f, SID, 2, DID);
    vtdb_sl_map(&f.b, sl, 4, 0x10000, 0x200000, 12, VTD_SL_R);
    vtdb_sl_map(&f.b, sl, 4, 0x11000, 0x201000, 12, VTD_SL_W);
    vtdb_sl_map(&f.b, sl, 4, 0x12000, 0x202000, 12, VTD_SL_R | VTD_SL_W);
    fx_enable(&f, false);

    CHECK_XLATE(&f, SID, 0x10008, false, 0x200008, 4096, true, false);
    CHECK_XFAULT_REC(&f, SID, 0x10008, true, VTD_FR_WRITE);        /* T = 0: write */
    CHECK_XLATE(&f, SID, 0x11010, true, 0x201010, 4096, false, true);
    CHECK_XFAULT_REC(&f, SID, 0x11010, false, VTD_FR_READ);        /* T = 1: read */
    CHECK_XLATE(&f, SID, 0x12000, false, 0x202000, 4096, true, true);
    CHECK_XLATE(&f, SID, 0x12fff, true, 0x202fff, 4096, true, true);
    /* Cached translations are still checked: a write to the read-only page
     * after a read filled the IOTLB faults the same way. */
    CHECK_XFAULT_REC(&f, SID, 0x10000, true, VTD_FR_WRITE);

    /* Permissions are ANDed down the walk: a read-only PDE makes its RW
     * leaf read-only. */
    vtdb_sl_map(&f.b, sl, 4, 0x400000, 0x300000, 12, VTD_SL_R | VTD_SL_W);
    uint64_t pde = vtdb_sl_entry(&f.b, sl, 4, 0x400000, 2);
    vtdb_w64(&f.b, pde, vtdb_r64(&f.b, pde) & ~VTD_SL_W);
    CHECK_XLATE(&f, SID, 0x400000, false, 0x300000, 4096, true, false);
    CHECK_XFAULT_REC(&f, SID, 0x400000, true, VTD_FR_WRITE);
    fx_fini(&f);
}

/* A not-present entry (R = W = 0) anywhere on the walk reads as a
 * permission fault of the request's kind (QEMU's reasons). */
static void t_not_present(void)
{
    struct fx f;
    fx_init(&f, &caps48);
    uint64_t sl = legacy_ctx(&f, SID, 2, DID);
    vtdb_sl_map(&f.b, sl, 4, 0x10000, 0x200000, 12, VTD_SL_R | VTD_SL_W);
    fx_enable(&f, false);
    CHECK_XFAULT_REC(&f, SID, 0x11000, false, VTD_FR_READ);          /* leaf */
    CHECK_XFAULT_REC(&f, SID, 0x11000, true, VTD_FR_WRITE);
    CHECK_XFAULT_REC(&f, SID, 1ull << 40, false, VTD_FR_READ);       /* PML4E */
    CHECK_XFAULT_REC(&f, SID, 1ull << 31, true, VTD_FR_WRITE);       /* PDPTE */
    /* Reserved bits of a not-present entry do not matter. */
    uint64_t pte = vtdb_sl_entry(&f.b, sl, 4, 0x13000, 1);
    vtdb_w64(&f.b, pte, VTD_BIT(51) | 0x123000);
    CHECK_XFAULT_REC(&f, SID, 0x13000, false, VTD_FR_READ);
    fx_fini(&f);
}

static void t_root_and_context_faults(void)
{
    struct fx f;
    struct vtio_vtd_caps c = { .addr_width = 48 };
    fx_init(&f, &c);
    legacy_ctx(&f, SID, 2, DID);
    fx_enable(&f, false);
    /* Root entry of bus 4 not present; context entry 03:02.1 not present. */
    CHECK_XFAULT_REC(&f, 0x0400, 0x1000, false, VTD_FR_ROOT_ENTRY_P);
    CHECK_XFAULT_REC(&f, SID2, 0x1000, true, VTD_FR_CONTEXT_ENTRY_P);
    /* AW: 3 (57-bit) is not in this unit's SAGAW; 0 and 4 never are. */
    uint64_t sl = vtdb_page(&f.b);
    static const unsigned bad_aw[] = { 0, 3, 4 };
    for (unsigned i = 0; i < 3; i++) {
        uint16_t sid = (uint16_t)(0x0320 + i);
        vtdb_ctx_legacy(&f.b, f.root, sid, 0, bad_aw[i], DID, sl, false);
        CHECK_XFAULT_REC(&f, sid, 0x1000, false, VTD_FR_CONTEXT_ENTRY_INV);
    }
    /* TT = 11 is reserved; TT = 01 needs ECAP.DT, which this unit lacks. */
    vtdb_ctx_legacy(&f.b, f.root, 0x0328, 3, 2, DID, sl, false);
    CHECK_XFAULT_REC(&f, 0x0328, 0x1000, false, VTD_FR_CONTEXT_ENTRY_INV);
    vtdb_ctx_legacy(&f.b, f.root, 0x0329, VTD_CTX_TT_DEV_IOTLB, 2, DID, sl, false);
    CHECK_XFAULT_REC(&f, 0x0329, 0x1000, false, VTD_FR_CONTEXT_ENTRY_INV);
    fx_fini(&f);
}

static void t_beyond_mgaw(void)
{
    struct fx f;
    fx_init(&f, &caps48);
    uint64_t sl4 = legacy_ctx(&f, SID, 2, DID);
    uint64_t sl3 = legacy_ctx(&f, SID2, 1, DID + 1);
    vtdb_sl_map(&f.b, sl4, 4, (1ull << 47) | 0x1000, 0x5000, 12, VTD_SL_R);
    vtdb_sl_map(&f.b, sl3, 3, (1ull << 38) | 0x1000, 0x6000, 12, VTD_SL_R);
    fx_enable(&f, false);
    CHECK_XLATE(&f, SID, (1ull << 47) | 0x1234, false, 0x5234, 4096, true, false);
    CHECK_XFAULT_REC(&f, SID, 1ull << 48, false, VTD_FR_ADDR_BEYOND_MGAW);
    CHECK_XFAULT_REC(&f, SID, ~0ull & ~0xfffull, true, VTD_FR_ADDR_BEYOND_MGAW);
    /* A 3-level table covers 39 bits. */
    CHECK_XLATE(&f, SID2, (1ull << 38) | 0x1004, false, 0x6004, 4096, true, false);
    CHECK_XFAULT_REC(&f, SID2, 1ull << 39, false, VTD_FR_ADDR_BEYOND_MGAW);
    fx_fini(&f);

    /* A 39-bit unit: MGAW and its only table depth both stop at 2^39. */
    struct vtio_vtd_caps c39 = { .addr_width = 39 };
    fx_init(&f, &c39);
    uint64_t sl = legacy_ctx(&f, SID, 1, DID);
    vtdb_sl_map(&f.b, sl, 3, 0x7fffff000ull, 0x7000, 12, VTD_SL_R);
    fx_enable(&f, false);
    CHECK_XLATE(&f, SID, 0x7fffff008ull, false, 0x7008, 4096, true, false);
    CHECK_XFAULT_REC(&f, SID, 1ull << 39, false, VTD_FR_ADDR_BEYOND_MGAW);
    fx_fini(&f);
}

static void t_reserved_bits(void)
{
    struct fx f;
    struct vtio_vtd_caps c = { .addr_width = 48, .no_1g_pages = true };
    fx_init(&f, &c);
    uint64_t sl = legacy_ctx(&f, SID, 2, DID);
    uint64_t pte = vtdb_sl_map(&f.b, sl, 4, 0x10000, 0x200000, 12, VTD_SL_R | VTD_SL_W);
    uint64_t big = vtdb_sl_map(&f.b, sl, 4, 0x40000000, 0x400000, 21, VTD_SL_R | VTD_SL_W);
    fx_enable(&f, false);
    uint64_t good = vtdb_r64(&f.b, pte);

    /* Leaf PTE: address bits above HAW (51:48), TM (62), SNP without
     * ECAP.SC. */
    static const uint64_t bad[] = { VTD_BIT(48), VTD_BIT(51), VTD_BIT(62), VTD_SL_SNP };
    for (unsigned i = 0; i < 4; i++) {
        vtdb_w64(&f.b, pte, good | bad[i]);
        CHECK_XFAULT_REC(&f, SID, 0x10000, false, VTD_FR_PAGING_ENTRY_RSVD);
    }
    /* Ignored bits (63, 61:52, A/D, EMT) are not reserved. */
    vtdb_w64(&f.b, pte, good | VTD_BIT(63) | VTD_BIT(55) | VTD_SL_A | VTD_SL_D | 0x38);
    CHECK_XLATE(&f, SID, 0x10000, false, 0x200000, 4096, true, true);

    /* 2 MiB leaf: address bits 20:12 are reserved. */
    vtdb_w64(&f.b, big, vtdb_r64(&f.b, big) | VTD_BIT(12));
    CHECK_XFAULT_REC(&f, SID, 0x40000000, false, VTD_FR_PAGING_ENTRY_RSVD);
    /* PS in a PML4E; a 1 GiB page on a unit without SSLPS bit 1. */
    vtdb_sl_map(&f.b, sl, 4, 0x80000000, 0x500000, 12, VTD_SL_R);
    uint64_t pdpte = vtdb_sl_entry(&f.b, sl, 4, 0x80000000, 3);
    vtdb_w64(&f.b, pdpte, 0x40000000 | VTD_SL_PS | VTD_SL_R);
    CHECK_XFAULT_REC(&f, SID, 0x80000000, false, VTD_FR_PAGING_ENTRY_RSVD);
    uint64_t pml4e = vtdb_sl_entry(&f.b, sl, 4, 1ull << 39, 4);
    vtdb_w64(&f.b, pml4e, VTD_SL_PS | VTD_SL_R);
    CHECK_XFAULT_REC(&f, SID, 1ull << 39, false, VTD_FR_PAGING_ENTRY_RSVD);
    /* A non-leaf entry with SNP. */
    vtdb_sl_map(&f.b, sl, 4, 0x800000000ull, 0x500000, 12, VTD_SL_R);
    uint64_t pde = vtdb_sl_entry(&f.b, sl, 4, 0x800000000ull, 2);
    vtdb_w64(&f.b, pde, vtdb_r64(&f.b, pde) | VTD_SL_SNP);
    CHECK_XFAULT_REC(&f, SID, 0x800000000ull, false, VTD_FR_PAGING_ENTRY_RSVD);

    /* Root entry: bits 11:1 and the whole upper quadword; context entry:
     * lo 11:4, hi bit 7 and 63:24. */
    uint64_t re = f.root + 16 * (SID >> 8);
    uint64_t ce = vtdb_ctx_table(&f.b, f.root, SID >> 8) + 16 * (SID & 0xff);
    uint64_t re_lo = vtdb_r64(&f.b, re), ce_lo = vtdb_r64(&f.b, ce), ce_hi = vtdb_r64(&f.b, ce + 8);
    static const struct { unsigned off; uint64_t bit; uint8_t fr; } rs[] = {
        { 0, VTD_BIT(1), VTD_FR_ROOT_ENTRY_RSVD },  { 8, VTD_BIT(0), VTD_FR_ROOT_ENTRY_RSVD },
        { 0, VTD_BIT(50), VTD_FR_ROOT_ENTRY_RSVD }, { 16, VTD_BIT(4), VTD_FR_CONTEXT_ENTRY_RSVD },
        { 24, VTD_BIT(7), VTD_FR_CONTEXT_ENTRY_RSVD }, { 24, VTD_BIT(40), VTD_FR_CONTEXT_ENTRY_RSVD },
    };
    for (unsigned i = 0; i < sizeof(rs) / sizeof(rs[0]); i++) {
        uint64_t at = rs[i].off < 16 ? re + rs[i].off : ce + rs[i].off - 16;
        uint64_t was = vtdb_r64(&f.b, at);
        vtdb_w64(&f.b, at, was | rs[i].bit);
        vtd_ctx_cache_inv(f.vtd, VTD_INV_GLOBAL, 0, 0, 0);
        CHECK_XFAULT_REC(&f, SID, 0x10000, false, rs[i].fr);
        vtdb_w64(&f.b, at, was);
    }
    CHECK_EQ(vtdb_r64(&f.b, re), re_lo);
    CHECK_EQ(vtdb_r64(&f.b, ce), ce_lo);
    CHECK_EQ(vtdb_r64(&f.b, ce + 8), ce_hi);
    vtd_ctx_cache_inv(f.vtd, VTD_INV_GLOBAL, 0, 0, 0);
    CHECK_XLATE(&f, SID, 0x10000, false, 0x200000, 4096, true, true);
    fx_fini(&f);
}

/* Tables outside RAM: the platform read fails, and each level reports its
 * access error. */
static void t_access_errors(void)
{
    struct fx f;
    fx_init(&f, &caps48);
    uint64_t sl = legacy_ctx(&f, SID, 2, DID);
    vtdb_sl_map(&f.b, sl, 4, 0x10000, 0x200000, 12, VTD_SL_R);
    /* 03:03.0 has its SL table in the hole; 04:xx has its context table
     * there; a PDE of 03:02.0 points there too. */
    vtdb_ctx_legacy(&f.b, f.root, 0x0318, 0, 2, DID + 1, FX_HOLE, false);
    vtdb_root_set(&f.b, f.root, 4, FX_HOLE);
    vtdb_sl_map(&f.b, sl, 4, 0x400000, 0x300000, 12, VTD_SL_R);
    uint64_t pde = vtdb_sl_entry(&f.b, sl, 4, 0x400000, 2);
    vtdb_w64(&f.b, pde, FX_HOLE | VTD_SL_R | VTD_SL_W);
    fx_enable(&f, false);

    CHECK_XLATE(&f, SID, 0x10000, false, 0x200000, 4096, true, false);
    CHECK_XFAULT_REC(&f, 0x0318, 0x10000, false, VTD_FR_CONTEXT_ENTRY_INV);
    CHECK_XFAULT_REC(&f, 0x0400, 0x10000, false, VTD_FR_CONTEXT_TABLE_INV);
    CHECK_XFAULT_REC(&f, SID, 0x400000, false, VTD_FR_PAGING_ENTRY_INV);

    /* The root table itself in the hole. */
    CHECK(vtdb_enable(f.vtd, FX_HOLE, false));
    vtd_ctx_cache_inv(f.vtd, VTD_INV_GLOBAL, 0, 0, 0);
    CHECK_XFAULT_REC(&f, SID, 0x10000, false, VTD_FR_ROOT_TABLE_INV);
    fx_fini(&f);
}

static void t_pass_through(void)
{
    struct fx f;
    fx_init(&f, &caps48);
    vtdb_ctx_legacy(&f.b, f.root, SID, VTD_CTX_TT_PASS_THROUGH, 2, DID, 0, false);
    fx_enable(&f, false);
    CHECK_XLATE(&f, SID, 0x123456789ull, true, 0x123456789ull, 4096, true, true);
    CHECK_XLATE(&f, SID, (1ull << 48) - 1, false, (1ull << 48) - 1, 4096, true, true);
    CHECK_XFAULT_REC(&f, SID, 1ull << 48, false, VTD_FR_ADDR_BEYOND_MGAW);
    CHECK_EQ(fx_walks(&f), 0);
    fx_fini(&f);

    /* Without ECAP.PT, TT = 10 is invalid programming. */
    struct vtio_vtd_caps c = { .no_pass_through = true };
    fx_init(&f, &c);
    vtdb_ctx_legacy(&f.b, f.root, SID, VTD_CTX_TT_PASS_THROUGH, 2, DID, 0, false);
    fx_enable(&f, false);
    CHECK_XFAULT_REC(&f, SID, 0x1000, false, VTD_FR_CONTEXT_ENTRY_INV);
    fx_fini(&f);
}

static void t_interrupt_range(void)
{
    struct fx f;
    fx_init(&f, &caps48);
    uint64_t sl = legacy_ctx(&f, SID, 2, DID);
    vtdb_sl_map(&f.b, sl, 4, 0x10000, 0xfee00000, 12, VTD_SL_R | VTD_SL_W);
    vtdb_sl_map(&f.b, sl, 4, 0xfee00000, 0x200000, 12, VTD_SL_R | VTD_SL_W);
    fx_enable(&f, false);
    /* An IOVA mapped into the interrupt range; a DMA to the range itself
     * (whatever the tables say). */
    CHECK_XFAULT_REC(&f, SID, 0x10040, true, VTD_FR_INTERRUPT_ADDR);
    CHECK_XFAULT_REC(&f, SID, 0xfee00000, false, VTD_FR_INTERRUPT_ADDR);
    fx_fini(&f);
}

static void t_fpd(void)
{
    struct fx f;
    struct vtio_vtd_resp r;
    fx_init(&f, &caps48);
    uint64_t sl = vtdb_page(&f.b);
    vtdb_ctx_legacy(&f.b, f.root, SID, 0, 2, DID, sl, true);    /* FPD */
    vtdb_sl_map(&f.b, sl, 4, 0x10000, 0x200000, 12, VTD_SL_R);
    /* 03:02.1: not present, but FPD set (it applies with P clear). */
    vtdb_ctx_raw(&f.b, f.root, SID2, VTD_CTX_FPD, 0);
    /* 03:02.2: FPD with a reserved bit (not a qualified fault). */
    uint64_t ce = vtdb_ctx_legacy(&f.b, f.root, 0x0312, 0, 2, DID, sl, true);
    vtdb_w64(&f.b, ce, vtdb_r64(&f.b, ce) | VTD_BIT(5));
    fx_enable(&f, false);

    CHECK_XLATE(&f, SID, 0x10000, false, 0x200000, 4096, true, false);
    uint64_t before = atomic_load(&f.vtd->stats.faults_suppressed);
    CHECK_ERR(fx_xlate(&f, SID, 0x10000, true, &r), -EFAULT);       /* write to RO */
    CHECK_EQ(r.fault, VTD_FR_WRITE);
    CHECK_ERR(fx_xlate(&f, SID, 0x20000, false, &r), -EFAULT);      /* not mapped */
    CHECK_EQ(r.fault, VTD_FR_READ);
    CHECK_ERR(fx_xlate(&f, SID, 1ull << 50, false, &r), -EFAULT);   /* beyond MGAW */
    CHECK_EQ(r.fault, VTD_FR_ADDR_BEYOND_MGAW);
    CHECK_ERR(fx_xlate(&f, SID2, 0x10000, false, &r), -EFAULT);
    CHECK_EQ(r.fault, VTD_FR_CONTEXT_ENTRY_P);
    CHECK_EQ(fx_pending(&f), 0);
    CHECK_EQ(atomic_load(&f.vtd->stats.faults_suppressed), before + 4);
    CHECK_XFAULT_REC(&f, 0x0312, 0x10000, false, VTD_FR_CONTEXT_ENTRY_RSVD);
    fx_fini(&f);
}

static void t_iotlb_fill_and_hit(void)
{
    struct fx f;
    fx_init(&f, &caps48);
    uint64_t sl = legacy_ctx(&f, SID, 2, DID);
    uint64_t pte = vtdb_sl_map(&f.b, sl, 4, 0x10000, 0x200000, 12, VTD_SL_R | VTD_SL_W);
    fx_enable(&f, false);
    CHECK_XLATE(&f, SID, 0x10010, false, 0x200010, 4096, true, true);
    CHECK_EQ(fx_walks(&f), 1);
    uint64_t hits = vtd_hot_sum(f.vtd, VTD_HOT_IOTLB_HITS);
    /* A changed PTE is not seen until the IOTLB is invalidated. */
    vtdb_w64(&f.b, pte, 0x300000 | VTD_SL_R | VTD_SL_W);
    CHECK_XLATE(&f, SID, 0x10020, true, 0x200020, 4096, true, true);
    CHECK_EQ(fx_walks(&f), 1);
    CHECK_EQ(vtd_hot_sum(f.vtd, VTD_HOT_IOTLB_HITS), hits + 1);
    vtd_iotlb_inv_page(f.vtd, DID, 0x10000, 0, false);
    CHECK_XLATE(&f, SID, 0x10020, true, 0x300020, 4096, true, true);
    CHECK_EQ(fx_walks(&f), 2);
    /* Another device in the same domain shares the cached translation. */
    vtdb_ctx_legacy(&f.b, f.root, SID2, 0, 2, DID, sl, false);
    CHECK_XLATE(&f, SID2, 0x10fff, false, 0x300fff, 4096, true, true);
    CHECK_EQ(fx_walks(&f), 2);
    fx_fini(&f);
}

static void t_translated_and_pasid_requests(void)
{
    struct fx f;
    struct vtio_vtd_resp r;
    struct vtio_vtd_caps c = { .device_tlb = true };
    fx_init(&f, &c);
    uint64_t sl = vtdb_page(&f.b);
    vtdb_ctx_legacy(&f.b, f.root, SID, VTD_CTX_TT_DEV_IOTLB, 2, DID, sl, false);
    vtdb_ctx_legacy(&f.b, f.root, SID2, VTD_CTX_TT_MULTI_LEVEL, 2, DID, sl, false);
    fx_enable(&f, false);
    /* AT = translated: passed unchecked where ATS is allowed (TT = 01). */
    struct vtio_vtd_req q = { .sid = SID, .addr = 0x7654321, .write = true, .translated = true };
    CHECK_OK(vtio_vtd_translate(f.vtd, &q, &r));
    CHECK_EQ(r.pa, 0x7654321);
    CHECK(r.read && r.write);
    q.sid = SID2;
    CHECK_ERR(vtio_vtd_translate(f.vtd, &q, &r), -EFAULT);
    CHECK_EQ(r.fault, VTD_FR_CONTEXT_ENTRY_TT);
    fx_expect_record(&f, SID2, VTD_FR_CONTEXT_ENTRY_TT, 0x7654321, true, false, 0);
    /* A request with PASID has no PASID structures in legacy mode. */
    CHECK_ERR(fx_xlate_pasid(&f, SID, 7, 0x1000, false, false, &r), -EFAULT);
    CHECK_EQ(r.fault, VTD_FR_CONTEXT_ENTRY_TT);
    fx_expect_record(&f, SID, VTD_FR_CONTEXT_ENTRY_TT, 0x1000, false, true, 7);
    /* A PASID wider than 20 bits is not a request at all. */
    CHECK_ERR(fx_xlate_pasid(&f, SID, 1u << 20, 0x1000, false, false, &r), -EINVAL);
    fx_fini(&f);
}

static const struct vtio_test tests[] = {
    { "disabled_identity", "with TE off addresses pass unchanged and the interrupt window is refused unrecorded", t_disabled_identity },
    { "levels_and_page_sizes", "3/4/5-level tables map 4K, 2M and 1G pages at the highest IOVA bit", t_levels_and_page_sizes },
    { "permissions", "R-only, W-only and RW leaves, and R/W ANDed down the walk, give 05h/06h with T set right", t_permissions },
    { "not_present", "an entry with R=W=0 at any level is a read (06h) or write (05h) fault", t_not_present },
    { "root_and_context_faults", "root/context not present (01h/02h), AW outside SAGAW and bad TT (03h)", t_root_and_context_faults },
    { "beyond_mgaw", "IOVAs above the table width or MGAW fault 04h", t_beyond_mgaw },
    { "reserved_bits", "reserved bits in root (0Ah), context (0Bh) and paging entries (0Ch), ignored bits pass", t_reserved_bits },
    { "access_errors", "tables outside RAM give 08h/09h/03h/07h", t_access_errors },
    { "pass_through", "TT=10 is identity below 2^HAW, 04h above, 03h without ECAP.PT", t_pass_through },
    { "interrupt_range", "an output or input address in 0xFEEx_xxxx faults 0Eh", t_interrupt_range },
    { "fpd", "FPD suppresses qualified faults (counted) but not reserved-bit faults", t_fpd },
    { "iotlb_fill_and_hit", "a walk fills the IOTLB, hits skip the walk until invalidated, domains share", t_iotlb_fill_and_hit },
    { "translated_and_pasid_requests", "AT=translated passes only with TT=01; PASID requests fault 0Dh in legacy mode", t_translated_and_pasid_requests },
};

VTIO_TEST_MAIN(tests)
