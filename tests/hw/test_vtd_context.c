/*
 * Tests of the VT-d unit's context resolution: scalable-mode root and
 * context entries, PASID directory and tables (PGTT, RID_PASID, PDTS), the
 * faults of each, FPD at every level, and the context and PASID caches
 * (stale use before an invalidation, fresh after, with every granularity),
 * including translations racing with invalidations on other threads.
 */
#include "test_vtd_xlate_fixture.h"

#include <pthread.h>
#include <time.h>

static const struct vtio_vtd_caps sm_caps = { .scalable = true, .nested = true,
                                              .device_tlb = true };
static const struct vtio_vtd_caps sm_sl_only = { .scalable = true, .no_pass_through = true };

/* A scalable-mode device: its context entry and an empty PASID directory. */
static uint64_t sm_dev(struct fx *f, uint16_t sid, uint64_t flags, uint32_t rid_pasid,
                       unsigned pdts)
{
    uint64_t pdir = vtdb_page(&f->b);
    vtdb_sm_ctx(&f->b, f->root, sid, pdir, pdts, flags, rid_pasid);
    return pdir;
}

/* A second-level PASID entry (4-level tables) with a fresh table. */
static uint64_t sm_sl(struct fx *f, uint64_t pdir, uint32_t pasid, uint16_t did, bool fpd)
{
    uint64_t sl = vtdb_page(&f->b);
    struct vtdb_pasid_entry e = { .pgtt = VTD_PGTT_SL, .did = did, .aw = 2, .ssptptr = sl,
                                  .fpd = fpd };
    vtdb_pasid(&f->b, pdir, pasid, &e);
    return sl;
}

static int xp(struct fx *f, uint16_t sid, uint32_t pasid, uint64_t addr, bool write,
              struct vtio_vtd_resp *r)
{
    return fx_xlate_pasid(f, sid, pasid, addr, write, false, r);
}

#define CHECK_PFAULT_REC(f, sid_, pasid_, addr_, wr_, fr_)                      \
    do {                                                                        \
        struct vtio_vtd_resp pr_;                                               \
        CHECK_ERR(xp(f, sid_, pasid_, addr_, wr_, &pr_), -EFAULT);              \
        CHECK_EQ(pr_.fault, fr_);                                               \
        fx_expect_record(f, sid_, fr_, addr_, wr_, true, pasid_);               \
    } while (0)

/* ------------------------------------------------------------------------ */

static void t_rid_pasid(void)
{
    struct fx f;
    fx_init(&f, &sm_caps);
    uint64_t pdir = sm_dev(&f, SID, 0, 0, 2);
    uint64_t sl0 = sm_sl(&f, pdir, 0, DID, false);
    uint64_t sl9 = sm_sl(&f, pdir, 9, DID + 1, false);
    vtdb_sl_map(&f.b, sl0, 4, 0x10000, 0x200000, 12, VTD_SL_R | VTD_SL_W);
    vtdb_sl_map(&f.b, sl9, 4, 0x10000, 0x300000, 12, VTD_SL_R);
    /* 03:82.0 (the upper context table) uses RID_PASID 9. */
    uint64_t pdir2 = sm_dev(&f, 0x0390, 0, 9, 2);
    uint64_t sl2 = sm_sl(&f, pdir2, 9, DID + 2, false);
    vtdb_sl_map(&f.b, sl2, 4, 0x10000, 0x300000, 12, VTD_SL_R);
    fx_enable(&f, true);

    CHECK_XLATE(&f, SID, 0x10123, true, 0x200123, 4096, true, true);
    CHECK_XLATE(&f, 0x0390, 0x10123, false, 0x300123, 4096, true, false);
    /* Faults of requests without PASID carry no PASID, in SM codes where
     * the reference has them. */
    CHECK_XFAULT_REC(&f, 0x0390, 0x10123, true, VTD_FR_WRITE);
    CHECK_XFAULT_REC(&f, SID, 0x20000, false, VTD_FR_READ);
    fx_fini(&f);
}

static void t_requests_with_pasid(void)
{
    struct fx f;
    struct vtio_vtd_resp r;
    fx_init(&f, &sm_caps);
    uint64_t pdir = sm_dev(&f, SID, VTD_SM_CTX_PASIDE, 0, 0);    /* 128 dir entries */
    uint64_t sl = sm_sl(&f, pdir, 0x123, DID, false);            /* dir 4, entry 0x23 */
    vtdb_sl_map(&f.b, sl, 4, 0x5000, 0x400000, 12, VTD_SL_R | VTD_SL_W);
    uint64_t pdir2 = sm_dev(&f, SID2, 0, 0, 0);                  /* PASIDE clear */
    sm_sl(&f, pdir2, 0x123, DID, false);
    fx_enable(&f, true);

    CHECK_OK(xp(&f, SID, 0x123, 0x5abc, true, &r));
    CHECK_EQ(r.pa, 0x400abc);
    CHECK_EQ(r.page_size, 4096);
    CHECK(r.read && r.write);
    CHECK_PFAULT_REC(&f, SID, 0x123, 0x6000, false, VTD_FR_READ);
    /* PASID 0x123 is not the RID_PASID: a request without PASID misses. */
    CHECK_XFAULT_REC(&f, SID, 0x5000, false, VTD_FR_PASID_DIR_ENTRY_P);
    /* PASIDE clear: requests with PASID are not allowed. */
    CHECK_PFAULT_REC(&f, SID2, 0x123, 0x5000, false, VTD_FR_CONTEXT_ENTRY_TT);
    /* PDTS = 0: 128 directory entries, so PASID 128 * 64 is outside. */
    CHECK_PFAULT_REC(&f, SID, 128 * 64, 0x5000, false, VTD_FR_PASID_DIR_ACCESS_ERR);
    /* Wider than ECAP.PSS allows: not a request. */
    CHECK_ERR(xp(&f, SID, 1u << 20, 0x5000, false, &r), -EINVAL);
    fx_fini(&f);

    struct vtio_vtd_caps c8 = { .scalable = true, .pasid_bits = 8 };
    fx_init(&f, &c8);
    CHECK_ERR(xp(&f, SID, 256, 0x5000, false, &r), -EINVAL);
    fx_fini(&f);
}

static void t_pgtt_kinds(void)
{
    struct fx f;
    fx_init(&f, &sm_caps);
    uint64_t pdir = sm_dev(&f, SID, VTD_SM_CTX_PASIDE, 0, 2);
    /* PGTT 4: pass-through below 2^HAW. */
    struct vtdb_pasid_entry pt = { .pgtt = VTD_PGTT_PT, .did = DID };
    vtdb_pasid(&f.b, pdir, 1, &pt);
    /* PGTT 1: first level, a 4 KiB page with P|RW|US. */
    uint64_t fl = vtdb_page(&f.b);
    struct vtdb_pasid_entry fe = { .pgtt = VTD_PGTT_FL, .did = DID, .fsptptr = fl };
    vtdb_pasid(&f.b, pdir, 2, &fe);
    vtdb_fl_map(&f.b, fl, 4, 0x7000, 0x500000, 12, VTD_FL_P | VTD_FL_RW | VTD_FL_US);
    /* PGTT 3: nested, second level identity over the first-level tables. */
    uint64_t sl = vtdb_page(&f.b);
    vtdb_sl_map(&f.b, sl, 4, 0, 0, 30, VTD_SL_R | VTD_SL_W);
    struct vtdb_pasid_entry ne = { .pgtt = VTD_PGTT_NESTED, .did = DID + 1, .aw = 2,
                                   .ssptptr = sl, .fsptptr = fl };
    vtdb_pasid(&f.b, pdir, 3, &ne);
    fx_enable(&f, true);

    struct vtio_vtd_resp r;
    CHECK_OK(xp(&f, SID, 1, 0x123456789ull, true, &r));
    CHECK_EQ(r.pa, 0x123456789ull);
    CHECK_PFAULT_REC(&f, SID, 1, 1ull << 48, false, VTD_FR_ADDR_BEYOND_MGAW);
    CHECK_OK(xp(&f, SID, 2, 0x7008, true, &r));
    CHECK_EQ(r.pa, 0x500008);
    CHECK_OK(xp(&f, SID, 3, 0x7010, false, &r));
    CHECK_EQ(r.pa, 0x500010);
    CHECK(r.read && r.write);

    /* Invalid programming, 5Bh: reserved PGTT values, AW outside SAGAW,
     * FSPM 1 without CAP.FS5LP and FSPM 2. */
    static const struct vtdb_pasid_entry bad[] = {
        { .pgtt = 0, .did = DID }, { .pgtt = 5, .did = DID }, { .pgtt = 7, .did = DID },
        { .pgtt = VTD_PGTT_SL, .aw = 3, .did = DID }, { .pgtt = VTD_PGTT_SL, .aw = 0, .did = DID },
        { .pgtt = VTD_PGTT_FL, .fspm = 1, .did = DID }, { .pgtt = VTD_PGTT_FL, .fspm = 2, .did = DID },
        { .pgtt = VTD_PGTT_NESTED, .aw = 4, .did = DID },
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        vtdb_pasid(&f.b, pdir, 10 + i, &bad[i]);
        CHECK_PFAULT_REC(&f, SID, 10 + i, 0x1000, false, VTD_FR_PASID_TABLE_ENTRY_INV);
    }
    fx_fini(&f);

    /* A unit with second level only: PGTT 1, 3 and 4 are not supported. */
    fx_init(&f, &sm_sl_only);
    pdir = sm_dev(&f, SID, VTD_SM_CTX_PASIDE, 0, 2);
    sl = sm_sl(&f, pdir, 4, DID, false);
    vtdb_sl_map(&f.b, sl, 4, 0x1000, 0x2000, 12, VTD_SL_R);
    static const unsigned unsupported[] = { VTD_PGTT_FL, VTD_PGTT_NESTED, VTD_PGTT_PT };
    for (unsigned i = 0; i < 3; i++) {
        struct vtdb_pasid_entry e = { .pgtt = unsupported[i], .did = DID, .aw = 2, .ssptptr = sl,
                                      .fsptptr = sl };
        vtdb_pasid(&f.b, pdir, 1 + i, &e);
    }
    fx_enable(&f, true);
    CHECK_OK(xp(&f, SID, 4, 0x1000, false, &r));
    CHECK_EQ(r.pa, 0x2000);
    for (unsigned i = 0; i < 3; i++)
        CHECK_PFAULT_REC(&f, SID, 1 + i, 0x1000, false, VTD_FR_PASID_TABLE_ENTRY_INV);
    fx_fini(&f);
}

static void t_pasid_structure_faults(void)
{
    struct fx f;
    fx_init(&f, &sm_caps);
    uint64_t pdir = sm_dev(&f, SID, VTD_SM_CTX_PASIDE, 0, 2);
    sm_sl(&f, pdir, 64, DID, false);                      /* dir entry 1 present */
    /* Dir entry 2 points at a PASID table in the hole; dir entry 3 is not
     * present but has FPD; PASID 64+5 is not present in a present table. */
    vtdb_w64(&f.b, vtdb_pdire_addr(pdir, 128), FX_HOLE | VTD_PDIRE_P);
    vtdb_w64(&f.b, vtdb_pdire_addr(pdir, 192), VTD_PDIRE_FPD);
    /* PASID 70: not present, FPD set in the entry itself. */
    uint64_t pe = vtdb_pasid_table(&f.b, pdir, 70) + 64 * (70 & 63);
    vtdb_w64(&f.b, pe, VTD_PTE_FPD);
    /* 03:02.1: its PASID directory lies in the hole. */
    vtdb_sm_ctx(&f.b, f.root, SID2, FX_HOLE, 2, VTD_SM_CTX_PASIDE | VTD_SM_CTX_FPD, 0);
    fx_enable(&f, true);

    CHECK_PFAULT_REC(&f, SID, 0, 0x1000, false, VTD_FR_PASID_DIR_ENTRY_P);
    CHECK_PFAULT_REC(&f, SID, 64 + 5, 0x1000, true, VTD_FR_PASID_ENTRY_P);
    CHECK_PFAULT_REC(&f, SID, 128, 0x1000, false, VTD_FR_PASID_TABLE_ACCESS_ERR);
    /* Access errors are not qualified: the context's FPD does not hide them. */
    CHECK_PFAULT_REC(&f, SID2, 3, 0x1000, false, VTD_FR_PASID_DIR_ACCESS_ERR);

    /* FPD in a not-present directory entry or PASID entry suppresses. */
    struct vtio_vtd_resp r;
    uint64_t sup = atomic_load(&f.vtd->stats.faults_suppressed);
    CHECK_ERR(xp(&f, SID, 192, 0x1000, false, &r), -EFAULT);
    CHECK_EQ(r.fault, VTD_FR_PASID_DIR_ENTRY_P);
    CHECK_ERR(xp(&f, SID, 70, 0x1000, false, &r), -EFAULT);
    CHECK_EQ(r.fault, VTD_FR_PASID_ENTRY_P);
    CHECK_EQ(fx_pending(&f), 0);
    CHECK_EQ(atomic_load(&f.vtd->stats.faults_suppressed), sup + 2);

    /* FPD in a present PASID entry suppresses its page faults. */
    uint64_t sl = sm_sl(&f, pdir, 71, DID, true);
    vtdb_sl_map(&f.b, sl, 4, 0x1000, 0x2000, 12, VTD_SL_R);
    CHECK_ERR(xp(&f, SID, 71, 0x1000, true, &r), -EFAULT);
    CHECK_EQ(r.fault, VTD_FR_WRITE);
    CHECK_EQ(fx_pending(&f), 0);
    fx_fini(&f);
}

static void t_sm_root_and_context(void)
{
    struct fx f;
    fx_init(&f, &sm_caps);
    uint64_t pdir = sm_dev(&f, SID, 0, 0, 2);
    uint64_t sl = sm_sl(&f, pdir, 0, DID, false);
    vtdb_sl_map(&f.b, sl, 4, 0x1000, 0x2000, 12, VTD_SL_R);
    fx_enable(&f, true);
    CHECK_XLATE(&f, SID, 0x1000, false, 0x2000, 4096, true, false);
    /* 03:82.0 is in the upper half, whose UP is clear; 03:03.0 has no
     * context entry. */
    CHECK_XFAULT_REC(&f, 0x0390, 0x1000, false, VTD_FR_ROOT_ENTRY_P);
    CHECK_XFAULT_REC(&f, 0x0318, 0x1000, false, VTD_FR_CONTEXT_ENTRY_P);
    /* Reserved bits of the scalable root entry and context entry. */
    uint64_t re = f.root + 16 * 3;
    uint64_t ce = vtdb_sm_ctx_table(&f.b, f.root, SID) + 32 * (SID & 0x7f);
    static const struct { uint64_t at_off; bool in_root; uint64_t bit; uint8_t fr; } rs[] = {
        { 0, true, VTD_BIT(3), VTD_FR_ROOT_ENTRY_RSVD },
        { 0, false, VTD_BIT(5), VTD_FR_CONTEXT_ENTRY_RSVD },
        { 8, false, VTD_BIT(21), VTD_FR_CONTEXT_ENTRY_RSVD },
        { 16, false, VTD_BIT(0), VTD_FR_CONTEXT_ENTRY_RSVD },
        { 24, false, VTD_BIT(63), VTD_FR_CONTEXT_ENTRY_RSVD },
    };
    for (unsigned i = 0; i < sizeof(rs) / sizeof(rs[0]); i++) {
        uint64_t at = (rs[i].in_root ? re : ce) + rs[i].at_off;
        uint64_t was = vtdb_r64(&f.b, at);
        vtdb_w64(&f.b, at, was | rs[i].bit);
        vtd_ctx_cache_inv(f.vtd, VTD_INV_GLOBAL, 0, 0, 0);
        CHECK_XFAULT_REC(&f, SID, 0x1000, false, rs[i].fr);
        vtdb_w64(&f.b, at, was);
    }
    /* RTADDR.TTM = 10 is reserved. */
    vtio_vtd_reg_write(f.vtd, VTD_RTADDR_REG, f.root | VTD_BIT(11), 8);
    vtio_vtd_reg_write(f.vtd, VTD_GCMD_REG, VTD_GCMD_TE | VTD_GCMD_SRTP, 4);
    vtd_ctx_cache_inv(f.vtd, VTD_INV_GLOBAL, 0, 0, 0);
    CHECK_XFAULT_REC(&f, SID, 0x1000, false, VTD_FR_RTADDR_INV_TTM);
    fx_fini(&f);

    /* A legacy-only unit treats TTM = 01 as invalid too. */
    fx_init(&f, NULL);
    fx_enable(&f, true);
    CHECK_XFAULT_REC(&f, SID, 0x1000, false, VTD_FR_RTADDR_INV_TTM);
    fx_fini(&f);
}

static void t_sm_interrupt_range(void)
{
    struct fx f;
    fx_init(&f, &sm_caps);
    uint64_t pdir = sm_dev(&f, SID, VTD_SM_CTX_PASIDE, 0, 2);
    uint64_t sl = sm_sl(&f, pdir, 0, DID, false);
    vtdb_sl_map(&f.b, sl, 4, 0x1000, 0xfee01000, 12, VTD_SL_R | VTD_SL_W);
    struct vtdb_pasid_entry pt = { .pgtt = VTD_PGTT_PT, .did = DID };
    vtdb_pasid(&f.b, pdir, 1, &pt);
    fx_enable(&f, true);
    CHECK_XFAULT_REC(&f, SID, 0x1000, true, VTD_FR_SM_INTERRUPT_ADDR);
    CHECK_XFAULT_REC(&f, SID, 0xfee00000, true, VTD_FR_SM_INTERRUPT_ADDR);
    /* With PASID the range is ordinary input, but pass-through lands in
     * it. */
    CHECK_PFAULT_REC(&f, SID, 1, 0xfee00040, false, VTD_FR_SM_INTERRUPT_ADDR);
    struct vtio_vtd_resp r;
    CHECK_OK(xp(&f, SID, 1, 0xfed00040, false, &r));
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * Caches.
 */

static void ccmd(struct fx *f, unsigned gran, uint16_t did, uint16_t sid, unsigned fm)
{
    vtio_vtd_reg_write(f->vtd, VTD_CCMD_REG,
                       VTD_CCMD_ICC | (uint64_t)gran << VTD_CCMD_CIRG_SHIFT |
                           (uint64_t)fm << 32 | (uint64_t)sid << 16 | did, 8);
    CHECK_EQ(vtio_vtd_reg_read(f->vtd, VTD_CCMD_REG, 8) & VTD_CCMD_ICC, 0);
}

static void t_context_cache_stale_then_fresh(void)
{
    struct fx f;
    fx_init(&f, NULL);
    uint64_t sl = vtdb_page(&f.b);
    vtdb_sl_map(&f.b, sl, 4, 0x1000, 0x2000, 12, VTD_SL_R);
    uint64_t ce = vtdb_ctx_legacy(&f.b, f.root, SID, 0, 2, DID, sl, false);
    fx_enable(&f, false);

    /* The first translation reads the context entry (a miss), and after
     * its IOTLB miss looks the context up again (a hit). */
    uint64_t m0 = fx_ctx_misses(&f), h0 = fx_ctx_hits(&f);
    CHECK_XLATE(&f, SID, 0x1000, false, 0x2000, 4096, true, false);
    CHECK_EQ(fx_ctx_misses(&f), m0 + 1);
    CHECK_EQ(fx_ctx_hits(&f), h0 + 1);
    /* Software clears the context entry but does not invalidate: the
     * cached entry goes on being used, as hardware may. */
    vtdb_w64(&f.b, ce, 0);
    CHECK_XLATE(&f, SID, 0x1000, false, 0x2000, 4096, true, false);
    CHECK_EQ(fx_ctx_misses(&f), m0 + 1);
    CHECK_EQ(fx_ctx_hits(&f), h0 + 2);
    /* Device-selective invalidation through CCMD: now the entry is read. */
    ccmd(&f, VTD_INV_DEVICE, DID, SID, 0);
    CHECK_XFAULT_REC(&f, SID, 0x1000, false, VTD_FR_CONTEXT_ENTRY_P);
    CHECK_EQ(fx_ctx_misses(&f), m0 + 2);
    /* Faults are not cached: the entry written back is seen at once. */
    vtdb_ctx_legacy(&f.b, f.root, SID, 0, 2, DID, sl, false);
    CHECK_XLATE(&f, SID, 0x1000, false, 0x2000, 4096, true, false);
    fx_fini(&f);
}

/* Eight functions 03:02.0-7; FM masks SID bit 2, bits 2:1, bits 2:0. */
static void t_context_cache_function_mask(void)
{
    static const uint8_t dropped[4] = { 0x01, 0x11, 0x55, 0xff };   /* bit i: function i */
    for (unsigned fm = 0; fm < 4; fm++) {
        struct fx f;
        fx_init(&f, NULL);
        uint64_t sl = vtdb_page(&f.b);
        vtdb_sl_map(&f.b, sl, 4, 0x1000, 0x2000, 12, VTD_SL_R);
        uint64_t ce[8];
        for (unsigned fn = 0; fn < 8; fn++)
            ce[fn] = vtdb_ctx_legacy(&f.b, f.root, (uint16_t)(SID + fn), 0, 2, DID, sl, false);
        fx_enable(&f, false);
        for (unsigned fn = 0; fn < 8; fn++) {
            CHECK_XLATE(&f, SID + fn, 0x1000, false, 0x2000, 4096, true, false);
            vtdb_w64(&f.b, ce[fn], 0);
        }
        vtd_ctx_cache_inv(f.vtd, VTD_INV_DEVICE, 0, SID, fm);
        for (unsigned fn = 0; fn < 8; fn++) {
            if (dropped[fm] & (1u << fn))
                CHECK_XFAULT_REC(&f, SID + fn, 0x1000, false, VTD_FR_CONTEXT_ENTRY_P);
            else
                CHECK_XLATE(&f, SID + fn, 0x1000, false, 0x2000, 4096, true, false);
        }
        fx_fini(&f);
    }
}

static void t_context_cache_domain_and_global(void)
{
    struct fx f;
    fx_init(&f, NULL);
    uint64_t sl = vtdb_page(&f.b);
    vtdb_sl_map(&f.b, sl, 4, 0x1000, 0x2000, 12, VTD_SL_R);
    uint64_t a = vtdb_ctx_legacy(&f.b, f.root, SID, 0, 2, DID, sl, false);
    uint64_t b = vtdb_ctx_legacy(&f.b, f.root, 0x0500, 0, 2, DID + 1, sl, false);
    fx_enable(&f, false);
    CHECK_XLATE(&f, SID, 0x1000, false, 0x2000, 4096, true, false);
    CHECK_XLATE(&f, 0x0500, 0x1000, false, 0x2000, 4096, true, false);
    vtdb_w64(&f.b, a, 0);
    vtdb_w64(&f.b, b, 0);
    vtd_ctx_cache_inv(f.vtd, VTD_INV_DOMAIN, DID + 1, 0, 0);
    CHECK_XLATE(&f, SID, 0x1000, false, 0x2000, 4096, true, false);
    CHECK_XFAULT_REC(&f, 0x0500, 0x1000, false, VTD_FR_CONTEXT_ENTRY_P);
    ccmd(&f, VTD_INV_GLOBAL, 0, 0, 0);
    CHECK_XFAULT_REC(&f, SID, 0x1000, false, VTD_FR_CONTEXT_ENTRY_P);
    fx_fini(&f);
}

static void t_pasid_cache(void)
{
    struct fx f;
    fx_init(&f, &sm_caps);
    uint64_t pdir = sm_dev(&f, SID, VTD_SM_CTX_PASIDE, 3, 2);
    uint64_t sl = sm_sl(&f, pdir, 3, DID, false);        /* RID_PASID */
    vtdb_sl_map(&f.b, sl, 4, 0x1000, 0x2000, 12, VTD_SL_R);
    struct vtdb_pasid_entry e = { .pgtt = VTD_PGTT_SL, .did = DID, .aw = 2, .ssptptr = sl };
    uint64_t pe7 = vtdb_pasid(&f.b, pdir, 7, &e);
    uint64_t pe3 = vtdb_pasid_table(&f.b, pdir, 3) + 64 * 3;
    e.did = DID + 1;
    uint64_t pe9 = vtdb_pasid(&f.b, pdir, 9, &e);
    fx_enable(&f, true);

    struct vtio_vtd_resp r;
    CHECK_OK(xp(&f, SID, 7, 0x1000, false, &r));
    CHECK_OK(xp(&f, SID, 9, 0x1000, false, &r));
    CHECK_XLATE(&f, SID, 0x1000, false, 0x2000, 4096, true, false);
    vtdb_w64(&f.b, pe7, 0);
    vtdb_w64(&f.b, pe9, 0);
    vtdb_w64(&f.b, pe3, 0);
    /* Stale until invalidated; a selective invalidation of another PASID
     * or domain changes nothing. */
    vtd_pasid_cache_inv(f.vtd, VTD_INV_PC_G_PASID, DID, 8);
    vtd_pasid_cache_inv(f.vtd, VTD_INV_PC_G_PASID, DID + 1, 7);
    CHECK_OK(xp(&f, SID, 7, 0x1000, false, &r));
    CHECK_OK(xp(&f, SID, 9, 0x1000, false, &r));
    CHECK_XLATE(&f, SID, 0x1000, false, 0x2000, 4096, true, false);
    /* PASID-selective (DID, 7): only PASID 7 is read again. */
    vtd_pasid_cache_inv(f.vtd, VTD_INV_PC_G_PASID, DID, 7);
    CHECK_PFAULT_REC(&f, SID, 7, 0x1000, false, VTD_FR_PASID_ENTRY_P);
    CHECK_OK(xp(&f, SID, 9, 0x1000, false, &r));
    /* PASID-selective with the RID_PASID reaches requests without PASID. */
    vtd_pasid_cache_inv(f.vtd, VTD_INV_PC_G_PASID, DID, 3);
    CHECK_XFAULT_REC(&f, SID, 0x1000, false, VTD_FR_PASID_ENTRY_P);
    /* Domain-selective for DID + 1. */
    vtd_pasid_cache_inv(f.vtd, VTD_INV_PC_G_DOMAIN, DID + 1, 0);
    CHECK_PFAULT_REC(&f, SID, 9, 0x1000, false, VTD_FR_PASID_ENTRY_P);
    /* Global, after the entries come back: fresh again. */
    e.did = DID;
    vtdb_pasid(&f.b, pdir, 7, &e);
    CHECK_OK(xp(&f, SID, 7, 0x1000, false, &r));
    vtd_pasid_cache_inv(f.vtd, VTD_INV_PC_G_GLOBAL, 0, 0);
    vtdb_w64(&f.b, pe7, 0);
    vtd_pasid_cache_inv(f.vtd, VTD_INV_PC_G_GLOBAL, 0, 0);
    CHECK_PFAULT_REC(&f, SID, 7, 0x1000, false, VTD_FR_PASID_ENTRY_P);
    /* A device-selective context-cache invalidation drops the device's
     * PASID entries too. */
    vtdb_pasid(&f.b, pdir, 7, &e);
    CHECK_OK(xp(&f, SID, 7, 0x1000, false, &r));
    vtdb_w64(&f.b, pe7, 0);
    vtd_ctx_cache_inv(f.vtd, VTD_INV_DEVICE, 0, SID, 0);
    CHECK_PFAULT_REC(&f, SID, 7, 0x1000, false, VTD_FR_PASID_ENTRY_P);
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * Concurrency: device threads translate while the context entry flips
 * between two second-level tables (one 8-byte store, as a driver would
 * retarget it), each flip followed by the context-cache and IOTLB
 * invalidations software issues.  Every translation must be one of the two
 * mappings, the state after the last invalidation must be what a fresh
 * lookup sees (no stale fill survives it), and under TSan nothing races.
 */

struct race {
    struct fx *f;
    _Atomic bool stop;
    _Atomic uint64_t done, bad;
};

static void *race_worker(void *arg)
{
    struct race *rc = arg;
    uint64_t n = 0;
    while (!atomic_load(&rc->stop)) {
        struct vtio_vtd_resp r;
        int ret = fx_xlate(rc->f, SID, 0x1008, false, &r);
        if (ret != 0 || (r.pa != 0x2008 && r.pa != 0x3008))
            atomic_fetch_add(&rc->bad, 1);
        n++;
    }
    atomic_fetch_add(&rc->done, n);
    return NULL;
}

static void t_lookups_race_invalidations(void)
{
    struct fx f;
    fx_init(&f, NULL);
    uint64_t sl_a = vtdb_page(&f.b), sl_b = vtdb_page(&f.b);
    vtdb_sl_map(&f.b, sl_a, 4, 0x1000, 0x2000, 12, VTD_SL_R);
    vtdb_sl_map(&f.b, sl_b, 4, 0x1000, 0x3000, 12, VTD_SL_R);
    vtdb_ctx_legacy(&f.b, f.root, SID, 0, 2, DID, sl_a, false);
    fx_enable(&f, false);

    struct race rc = { .f = &f };
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, race_worker, &rc), 0);
    struct timespec ts = { 0, 200000 };
    uint64_t ce = vtdb_ctx_table(&f.b, f.root, SID >> 8) + 16 * (SID & 0xff);
    uint64_t lo = vtdb_r64(&f.b, ce) & ~VTD_CTX_SLPTPTR_MASK;
    for (unsigned i = 0; i < 200; i++) {
        vtdb_w64(&f.b, ce, lo | ((i & 1) ? sl_b : sl_a));
        vtd_ctx_cache_inv(f.vtd, VTD_INV_DEVICE, 0, SID, 0);
        vtd_iotlb_inv_domain(f.vtd, DID);
        nanosleep(&ts, NULL);
    }
    atomic_store(&rc.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(atomic_load(&rc.bad), 0);
    CHECK_GT(atomic_load(&rc.done), 200);
    /* The last state is what a fresh lookup sees. */
    CHECK_XLATE(&f, SID, 0x1008, false, 0x3008, 4096, true, false);
    fx_fini(&f);
}

static const struct vtio_test tests[] = {
    { "rid_pasid", "requests without PASID use the RID_PASID entry, lower and upper context tables", t_rid_pasid },
    { "requests_with_pasid", "PASID requests need PASIDE (0Dh), stay within PDTS (50h) and ECAP.PSS (-EINVAL)", t_requests_with_pasid },
    { "pgtt_kinds", "PGTT 1/2/3/4 translate; reserved PGTT, bad AW/FSPM and unsupported types fault 5Bh", t_pgtt_kinds },
    { "pasid_structure_faults", "PASID dir/table faults 50h/51h/58h/59h and FPD in dir and PASID entries", t_pasid_structure_faults },
    { "sm_root_and_context", "scalable root/context not present and reserved bits; TTM 10 and SM without SMTS fault 31h", t_sm_root_and_context },
    { "sm_interrupt_range", "in scalable mode the interrupt range faults 87h, with PASID only as output", t_sm_interrupt_range },
    { "context_cache_stale_then_fresh", "a cached context entry is used until CCMD invalidates it; faults are not cached", t_context_cache_stale_then_fresh },
    { "context_cache_function_mask", "device-selective invalidation with FM 0-3 drops exactly the functions masked", t_context_cache_function_mask },
    { "context_cache_domain_and_global", "domain-selective drops only that DID's entries, global drops all", t_context_cache_domain_and_global },
    { "pasid_cache", "PASID-cache entries stay until a PASID/domain/global or device context invalidation", t_pasid_cache },
    { "lookups_race_invalidations", "translations on two threads racing context flips see only valid mappings", t_lookups_race_invalidations },
};

VTIO_TEST_MAIN(tests)
