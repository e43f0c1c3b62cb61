/*
 * Tests of the VT-d translation path beyond legacy second-level walks:
 * first-level (x86-64) walks with their faults and A/D updates, nested
 * translation, ATS translation requests, the unit as a DMA-port translator
 * (an access that crosses into an unmapped page is refused whole), and the
 * per-thread hot counters.
 */
#include "test_vtd_xlate_fixture.h"

#include <vtio/dma_port.h>

#include <pthread.h>

static const struct vtio_vtd_caps fl_caps = { .scalable = true, .first_level = true };
static const struct vtio_vtd_caps nest_caps = { .scalable = true, .nested = true };

#define FL_RWU (VTD_FL_P | VTD_FL_RW | VTD_FL_US)

/* A scalable-mode device (PASIDE set, RID_PASID 0) with PASID entry pasid
 * as given; returns the PASID directory. */
static uint64_t dev_with(struct fx *f, uint16_t sid, uint32_t pasid,
                         const struct vtdb_pasid_entry *e)
{
    uint64_t ea = vtdb_sm_ctx_table(&f->b, f->root, sid) + 32 * (sid & 0x7f);
    uint64_t pdir = vtdb_r64(&f->b, ea) & VTD_SM_CTX_PDIR_MASK;
    if (!(vtdb_r64(&f->b, ea) & VTD_SM_CTX_P)) {
        pdir = vtdb_page(&f->b);
        vtdb_sm_ctx(&f->b, f->root, sid, pdir, 2, VTD_SM_CTX_PASIDE, 0);
    }
    vtdb_pasid(&f->b, pdir, pasid, e);
    return pdir;
}

static int xp(struct fx *f, uint32_t pasid, uint64_t addr, bool write, bool priv,
              struct vtio_vtd_resp *r)
{
    return fx_xlate_pasid(f, SID, pasid, addr, write, priv, r);
}

/* A PASID request that must fault fr, recorded (unless FPD). */
static void pfault(struct fx *f, uint32_t pasid, uint64_t addr, bool write, bool priv, int fr)
{
    struct vtio_vtd_resp r;
    CHECK_ERR(xp(f, pasid, addr, write, priv, &r), -EFAULT);
    CHECK_EQ(r.fault, fr);
    fx_expect_record(f, SID, (uint8_t)fr, addr, write, true, pasid);
}

/* A and D of the level-`level` first-level entry for va. */
static uint64_t fl_flags(struct fx *f, uint64_t root, unsigned levels, uint64_t va,
                         unsigned level)
{
    return vtdb_r64(&f->b, vtdb_fl_entry(&f->b, root, levels, va, level)) &
           (VTD_FL_A | VTD_FL_D);
}

/* ------------------------------------------------------------------------
 * First level.
 */

static void t_fl_pages_and_ad_bits(void)
{
    struct fx f;
    struct vtio_vtd_resp r;
    fx_init(&f, &fl_caps);
    uint64_t fl = vtdb_page(&f.b);
    struct vtdb_pasid_entry e = { .pgtt = VTD_PGTT_FL, .did = DID, .fsptptr = fl };
    dev_with(&f, SID, 5, &e);
    e.did = DID + 1;
    dev_with(&f, SID, 0, &e);                            /* RID_PASID: same tables */
    vtdb_fl_map(&f.b, fl, 4, 0x7000, 0x100000, 12, FL_RWU);
    vtdb_fl_map(&f.b, fl, 4, 0x40200000, 0x600000, 21, FL_RWU);
    vtdb_fl_map(&f.b, fl, 4, 0x80000000, 0x40000000, 30, FL_RWU);
    vtdb_fl_map(&f.b, fl, 4, 0xffff800000001000ull, 0x300000, 12, FL_RWU);
    fx_enable(&f, true);

    /* A read sets A at every level, not D; the page is reported writable
     * only once it is dirty. */
    CHECK_OK(xp(&f, 5, 0x7abc, false, false, &r));
    CHECK_EQ(r.pa, 0x100abc);
    CHECK_EQ(r.page_size, 4096);
    CHECK(r.read && !r.write);
    for (unsigned l = 4; l >= 1; l--)
        CHECK_EQ(fl_flags(&f, fl, 4, 0x7000, l), VTD_FL_A);
    /* A write (after the read cached the clean page) sets D in the leaf. */
    CHECK_OK(xp(&f, 5, 0x7abc, true, false, &r));
    CHECK(r.read && r.write);
    CHECK_EQ(fl_flags(&f, fl, 4, 0x7000, 1), VTD_FL_A | VTD_FL_D);
    CHECK_EQ(fl_flags(&f, fl, 4, 0x7000, 2), VTD_FL_A);
    /* 2 MiB and 1 GiB pages, an upper-half canonical address, and a
     * request without PASID through RID_PASID. */
    CHECK_OK(xp(&f, 5, 0x40312345, true, false, &r));
    CHECK_EQ(r.pa, 0x712345);
    CHECK_EQ(r.page_size, 2 * MiB);
    CHECK_EQ(fl_flags(&f, fl, 4, 0x40200000, 2), VTD_FL_A | VTD_FL_D);
    CHECK_OK(xp(&f, 5, 0xbffffff8, false, false, &r));
    CHECK_EQ(r.pa, 0x7ffffff8);
    CHECK_EQ(r.page_size, GiB);
    CHECK_OK(xp(&f, 5, 0xffff800000001010ull, false, false, &r));
    CHECK_EQ(r.pa, 0x300010);
    CHECK_XLATE(&f, SID, 0x7008, true, 0x100008, 4096, true, true);
    fx_fini(&f);
}

static void t_fl_5_level(void)
{
    struct fx f;
    struct vtio_vtd_resp r;
    struct vtio_vtd_caps c = { .scalable = true, .first_level = true, .addr_width = 57 };
    fx_init(&f, &c);
    uint64_t fl = vtdb_page(&f.b);
    struct vtdb_pasid_entry e = { .pgtt = VTD_PGTT_FL, .did = DID, .fsptptr = fl, .fspm = 1 };
    dev_with(&f, SID, 5, &e);
    uint64_t va = 0xff00000000001000ull;                 /* bit 56 set */
    vtdb_fl_map(&f.b, fl, 5, va, 0x100000, 12, FL_RWU);
    vtdb_fl_map(&f.b, fl, 5, 0x00ff000000002000ull, 0x101000, 12, FL_RWU);
    fx_enable(&f, true);
    CHECK_OK(xp(&f, 5, va | 0x10, true, false, &r));
    CHECK_EQ(r.pa, 0x100010);
    CHECK_OK(xp(&f, 5, 0x00ff000000002020ull, false, false, &r));
    CHECK_EQ(r.pa, 0x101020);
    CHECK_EQ(fl_flags(&f, fl, 5, va, 5), VTD_FL_A);
    pfault(&f, 5, 0x0100000000000000ull, false, false, VTD_FR_FS_NON_CANONICAL);
    fx_fini(&f);
}

static void t_fl_faults(void)
{
    struct fx f;
    struct vtio_vtd_resp r;
    struct vtio_vtd_caps c = { .scalable = true, .first_level = true, .no_1g_pages = true };
    fx_init(&f, &c);
    uint64_t fl = vtdb_page(&f.b);
    struct vtdb_pasid_entry e = { .pgtt = VTD_PGTT_FL, .did = DID, .fsptptr = fl };
    dev_with(&f, SID, 5, &e);
    e.sre = true;
    dev_with(&f, SID, 6, &e);                            /* supervisor allowed */
    e.wpe = true;
    dev_with(&f, SID, 7, &e);                            /* ... with write protect */
    e.fsptptr = FX_HOLE;
    e.sre = e.wpe = false;
    dev_with(&f, SID, 8, &e);                            /* FSPTPTR in the hole */
    vtdb_fl_map(&f.b, fl, 4, 0x1000, 0x100000, 12, FL_RWU);
    vtdb_fl_map(&f.b, fl, 4, 0x2000, 0x101000, 12, VTD_FL_P | VTD_FL_US);        /* RO */
    vtdb_fl_map(&f.b, fl, 4, 0x3000, 0x102000, 12, VTD_FL_P | VTD_FL_RW);        /* supervisor */
    uint64_t pte4 = vtdb_fl_map(&f.b, fl, 4, 0x4000, 0x103000, 12, FL_RWU);
    uint64_t big = vtdb_fl_map(&f.b, fl, 4, 0x40000000, 0x200000, 21, FL_RWU);
    /* A user request through a supervisor-only PDE (the leaf is U/S). */
    vtdb_fl_map(&f.b, fl, 4, 0x80000000, 0x104000, 12, FL_RWU);
    uint64_t pde = vtdb_fl_entry(&f.b, fl, 4, 0x80000000, 2);
    vtdb_w64(&f.b, pde, vtdb_r64(&f.b, pde) & ~VTD_FL_US);
    fx_enable(&f, true);

    pfault(&f, 5, 0x0000800000000000ull, false, false, VTD_FR_FS_NON_CANONICAL);
    pfault(&f, 5, 0x5000, false, false, VTD_FR_FS_PAGING_ENTRY_P);
    pfault(&f, 5, 1ull << 39, true, false, VTD_FR_FS_PAGING_ENTRY_P);
    /* R/W clear: reads pass, writes fault 85h. */
    CHECK_OK(xp(&f, 5, 0x2000, false, false, &r));
    CHECK(r.read && !r.write);
    pfault(&f, 5, 0x2000, true, false, VTD_FR_SM_WRITE);
    /* U/S clear at the leaf or above: a user request faults 81h. */
    pfault(&f, 5, 0x3000, false, false, VTD_FR_FS_PAGING_ENTRY_US);
    pfault(&f, 5, 0x80000000, false, false, VTD_FR_FS_PAGING_ENTRY_US);
    /* Supervisor requests: need SRE; write to a read-only page passes
     * unless WPE. */
    pfault(&f, 5, 0x3000, false, true, VTD_FR_FS_PAGING_ENTRY_US);
    CHECK_OK(xp(&f, 6, 0x3000, false, true, &r));
    CHECK_EQ(r.pa, 0x102000);
    CHECK_OK(xp(&f, 6, 0x2000, true, true, &r));
    CHECK_EQ(r.pa, 0x101000);
    pfault(&f, 7, 0x2000, true, true, VTD_FR_SM_WRITE);
    /* Reserved: address bit 51 (HAW 48), superpage bits 20:13, PS in the
     * PML4E, a 1 GiB page without CAP.FS1GP. */
    vtdb_w64(&f.b, pte4, vtdb_r64(&f.b, pte4) | VTD_BIT(51));
    pfault(&f, 5, 0x4000, false, false, VTD_FR_FS_PAGING_ENTRY_RSVD);
    vtdb_w64(&f.b, big, vtdb_r64(&f.b, big) | VTD_BIT(13));
    pfault(&f, 5, 0x40000000, false, false, VTD_FR_FS_PAGING_ENTRY_RSVD);
    uint64_t pml4e = vtdb_fl_entry(&f.b, fl, 4, 0x1000, 4);
    uint64_t pdpte = vtdb_fl_entry(&f.b, fl, 4, 0x1000, 3);
    uint64_t good4 = vtdb_r64(&f.b, pml4e), good3 = vtdb_r64(&f.b, pdpte);
    vtdb_w64(&f.b, pml4e, good4 | VTD_FL_PS);
    pfault(&f, 5, 0x1000, false, false, VTD_FR_FS_PAGING_ENTRY_RSVD);
    vtdb_w64(&f.b, pml4e, good4);
    vtdb_w64(&f.b, pdpte, VTD_FL_P | VTD_FL_US | VTD_FL_PS);
    pfault(&f, 5, 0x1000, false, false, VTD_FR_FS_PAGING_ENTRY_RSVD);
    /* Tables out of RAM: the top one is a bad FSPTPTR (73h), below 70h. */
    vtdb_w64(&f.b, pdpte, FX_HOLE | FL_RWU);
    pfault(&f, 5, 0x1000, false, false, VTD_FR_FS_PAGING_ENTRY_INV);
    vtdb_w64(&f.b, pdpte, good3);
    pfault(&f, 8, 0x1000, false, false, VTD_FR_PASID_ENTRY_FSPTPTR_INV);
    /* The A update cannot be written: 91h. */
    f.wfail_lo = FX_POOL, f.wfail_hi = FX_POOL + FX_POOL_SIZE;
    pfault(&f, 5, 0x1000, false, false, VTD_FR_FS_BIT_UPDATE_FAILED);
    f.wfail_lo = f.wfail_hi = 0;
    CHECK_OK(xp(&f, 5, 0x1000, true, false, &r));
    CHECK_EQ(r.pa, 0x100000);
    fx_fini(&f);
}

static void t_fl_fpd(void)
{
    struct fx f;
    struct vtio_vtd_resp r;
    fx_init(&f, &fl_caps);
    uint64_t fl = vtdb_page(&f.b);
    struct vtdb_pasid_entry e = { .pgtt = VTD_PGTT_FL, .did = DID, .fsptptr = fl, .fpd = true };
    dev_with(&f, SID, 5, &e);
    fx_enable(&f, true);
    CHECK_ERR(xp(&f, 5, 0x5000, false, false, &r), -EFAULT);
    CHECK_EQ(r.fault, VTD_FR_FS_PAGING_ENTRY_P);
    CHECK_ERR(xp(&f, 5, 0x0000800000000000ull, false, false, &r), -EFAULT);
    CHECK_EQ(r.fault, VTD_FR_FS_NON_CANONICAL);
    CHECK_EQ(fx_pending(&f), 0);
    CHECK_EQ(atomic_load(&f.vtd->stats.faults_suppressed), 2);
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * Nested: first-level tables live in guest-physical space that the second
 * level maps (GPA = SPA + 1 GiB for the tables the builder makes).
 */

#define GPA_OFF GiB

static void t_nested(void)
{
    struct fx f;
    struct vtio_vtd_resp r;
    fx_init(&f, &nest_caps);
    uint64_t sl = vtdb_page(&f.b);
    f.b.nest_sl_root = sl, f.b.nest_sl_levels = 4, f.b.nest_gpa_off = GPA_OFF;
    uint64_t fl = vtdb_fl_table(&f.b);                   /* a GPA */
    struct vtdb_pasid_entry e = { .pgtt = VTD_PGTT_NESTED, .did = DID, .aw = 2,
                                  .ssptptr = sl, .fsptptr = fl };
    dev_with(&f, SID, 5, &e);
    const uint64_t va = 0x40201000, va2 = 0x40202000, va3 = 0x40203000;
    vtdb_fl_map(&f.b, fl, 4, va, 0x10000000, 12, FL_RWU);     /* -> GPA 256 MiB */
    vtdb_fl_map(&f.b, fl, 4, va2, 0x10001000, 12, FL_RWU);
    vtdb_fl_map(&f.b, fl, 4, va3, 0x10002000, 12, FL_RWU);    /* GPA not in SL */
    vtdb_fl_map(&f.b, fl, 4, 0x80000000, 0x20000000, 21, FL_RWU);   /* 2 MiB */
    vtdb_sl_map(&f.b, sl, 4, 0x10000000, 0x700000, 12, VTD_SL_R | VTD_SL_W);
    vtdb_sl_map(&f.b, sl, 4, 0x10001000, 0x701000, 12, VTD_SL_R);
    vtdb_sl_map(&f.b, sl, 4, 0x20000000, 0x900000, 12, VTD_SL_R | VTD_SL_W);
    vtdb_sl_map(&f.b, sl, 4, 0x20001000, 0x904000, 12, VTD_SL_R | VTD_SL_W);
    fx_enable(&f, true);

    /* The table GPAs are holes in SPA terms: this works only through the
     * second level; A and D land in the SPA copies. */
    CHECK_OK(xp(&f, 5, va + 0x123, true, false, &r));
    CHECK_EQ(r.pa, 0x700123);
    CHECK_EQ(r.page_size, 4096);
    CHECK(r.read && r.write);
    for (unsigned l = 4; l >= 2; l--)
        CHECK_EQ(fl_flags(&f, fl, 4, va, l), VTD_FL_A);
    CHECK_EQ(fl_flags(&f, fl, 4, va, 1), VTD_FL_A | VTD_FL_D);
    /* Permissions are the AND of both stages: the SL page is read-only. */
    CHECK_OK(xp(&f, 5, va2, false, false, &r));
    CHECK(r.read && !r.write);
    pfault(&f, 5, va2, true, false, VTD_FR_WRITE);
    /* The output GPA has no second-level mapping: a second-level fault. */
    pfault(&f, 5, va3, false, false, VTD_FR_READ);
    /* A 2 MiB first-level page over 4 KiB second-level pages: 4 KiB. */
    CHECK_OK(xp(&f, 5, 0x80001008, false, false, &r));
    CHECK_EQ(r.pa, 0x904008);
    CHECK_EQ(r.page_size, 4096);

    /* The second level moves the leaf table: remap its GPA to a copy whose
     * entry for va points elsewhere, and the walk reads the copy. */
    uint64_t pte = vtdb_fl_entry(&f.b, fl, 4, va, 1);
    uint64_t pt_spa = pte & ~0xfffull, copy = vtdb_page(&f.b);
    for (unsigned i = 0; i < 512; i++)
        vtdb_w64(&f.b, copy + 8 * i, vtdb_r64(&f.b, pt_spa + 8 * i));
    vtdb_w64(&f.b, copy + (pte & 0xfff), 0x10001000 | FL_RWU);
    vtdb_sl_map(&f.b, sl, 4, pt_spa + GPA_OFF, copy, 12, VTD_SL_R | VTD_SL_W);
    vtd_iotlb_inv_all(f.vtd);
    CHECK_OK(xp(&f, 5, va + 0x10, false, false, &r));
    CHECK_EQ(r.pa, 0x701010);
    CHECK_EQ(vtdb_r64(&f.b, copy + (pte & 0xfff)) & VTD_FL_A, VTD_FL_A);

    /* The leaf table read-only in the second level: the A update of an
     * untouched entry is a second-level write fault. */
    vtdb_w64(&f.b, copy + ((pte + 8) & 0xfff), 0x10000000 | FL_RWU);   /* va + 4 KiB, A clear */
    vtdb_sl_map(&f.b, sl, 4, pt_spa + GPA_OFF, copy, 12, VTD_SL_R);
    vtd_iotlb_inv_all(f.vtd);
    pfault(&f, 5, va + 0x1000, false, false, VTD_FR_WRITE);
    /* The leaf table unmapped in the second level: a read fault on the way,
     * whatever the request. */
    vtdb_sl_map(&f.b, sl, 4, pt_spa + GPA_OFF, 0, 12, 0);
    pfault(&f, 5, va + 0x20, true, false, VTD_FR_READ);
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * ATS and the DMA-port translator.
 */

static void t_ats_translate(void)
{
    struct fx f;
    struct vtio_vtd_resp r;
    struct vtio_vtd_caps c = { .device_tlb = true };
    fx_init(&f, &c);
    uint64_t sl = vtdb_page(&f.b);
    vtdb_sl_map(&f.b, sl, 4, 0x1000, 0x2000, 12, VTD_SL_R);
    vtdb_ctx_legacy(&f.b, f.root, SID, VTD_CTX_TT_DEV_IOTLB, 2, DID, sl, false);
    vtdb_ctx_legacy(&f.b, f.root, SID2, VTD_CTX_TT_MULTI_LEVEL, 2, DID, sl, false);
    struct vtio_vtd_req q = { .sid = SID, .addr = 0x1234 };
    /* TE off: the address comes back unchanged. */
    CHECK_OK(vtio_vtd_ats_translate(f.vtd, &q, &r));
    CHECK_EQ(r.pa, 0x1234);
    fx_enable(&f, false);
    CHECK_OK(vtio_vtd_ats_translate(f.vtd, &q, &r));
    CHECK_EQ(r.pa, 0x2234);
    CHECK(r.read && !r.write);
    /* Faults are answered, not recorded. */
    q.write = true;
    CHECK_ERR(vtio_vtd_ats_translate(f.vtd, &q, &r), -EFAULT);
    CHECK_EQ(r.fault, VTD_FR_WRITE);
    q.sid = SID2, q.write = false;
    CHECK_ERR(vtio_vtd_ats_translate(f.vtd, &q, &r), -EFAULT);
    CHECK_EQ(r.fault, VTD_FR_CONTEXT_ENTRY_TT);
    CHECK_EQ(fx_pending(&f), 0);

    /* The answer lives in the device-TLB: an IOTLB invalidation alone does
     * not change what the device gets, a device-TLB invalidation does. */
    q.sid = SID;
    vtdb_sl_map(&f.b, sl, 4, 0x1000, 0x3000, 12, VTD_SL_R | VTD_SL_W);
    vtd_iotlb_inv_all(f.vtd);
    CHECK_OK(vtio_vtd_ats_translate(f.vtd, &q, &r));
    CHECK_EQ(r.pa, 0x2234);
    CHECK(vtd_devtlb_inv(f.vtd, SID, VTD_NO_PASID, 0x1000, 12));
    CHECK_OK(vtio_vtd_ats_translate(f.vtd, &q, &r));
    CHECK_EQ(r.pa, 0x3234);
    CHECK(r.read && r.write);
    fx_fini(&f);
}

static void t_translator_op(void)
{
    struct fx f;
    fx_init(&f, NULL);
    uint64_t sl = vtdb_page(&f.b);
    vtdb_ctx_legacy(&f.b, f.root, SID, 0, 2, DID, sl, false);
    vtdb_sl_map(&f.b, sl, 4, 0x1000, 0x5000, 12, VTD_SL_R | VTD_SL_W);
    vtdb_sl_map(&f.b, sl, 4, 0x2000, 0x9000, 12, VTD_SL_R);
    vtdb_sl_map(&f.b, sl, 4, 0x200000, 0x400000, 21, VTD_SL_R | VTD_SL_W);
    const struct vtio_dma_translator *xl = vtio_vtd_translator(f.vtd);
    CHECK(xl->ops == &vtd_translator_ops && xl->opaque == f.vtd);
    uint64_t pa, span;
    /* TE off: everything passes as one span. */
    CHECK_OK(xl->ops->translate(xl->opaque, SID, 0x1ff0, 0x5000, VTIO_DMA_READ, &pa, &span));
    CHECK_EQ(pa, 0x1ff0);
    CHECK_EQ(span, 0x5000);
    fx_enable(&f, false);
    /* Spans end at the page end: 4 KiB and 2 MiB pages. */
    CHECK_OK(xl->ops->translate(xl->opaque, SID, 0x1ff0, 0x100, VTIO_DMA_WRITE, &pa, &span));
    CHECK_EQ(pa, 0x5ff0);
    CHECK_EQ(span, 0x10);
    CHECK_OK(xl->ops->translate(xl->opaque, SID, 0x2ff0, 0x8, VTIO_DMA_READ, &pa, &span));
    CHECK_EQ(pa, 0x9ff0);
    CHECK_EQ(span, 0x8);
    CHECK_OK(xl->ops->translate(xl->opaque, SID, 0x200100, 3 * MiB, VTIO_DMA_READ, &pa, &span));
    CHECK_EQ(pa, 0x400100);
    CHECK_EQ(span, 2 * MiB - 0x100);
    /* -EACCES for a present page without the permission, -EFAULT for a
     * hole; both recorded. */
    CHECK_ERR(xl->ops->translate(xl->opaque, SID, 0x2000, 8, VTIO_DMA_WRITE, &pa, &span), -EACCES);
    fx_expect_record(&f, SID, VTD_FR_WRITE, 0x2000, true, false, 0);
    CHECK_ERR(xl->ops->translate(xl->opaque, SID, 0x3000, 8, VTIO_DMA_READ, &pa, &span), -EFAULT);
    fx_expect_record(&f, SID, VTD_FR_READ, 0x3000, false, false, 0);
    /* msi() is interrupt remapping's: with it off the message passes. */
    CHECK_OK(xl->ops->msi(xl->opaque, SID, 0xfee00000, 0x41));
    CHECK_EQ(f.intr_count, 1);
    fx_fini(&f);
}

/* Bytes [pa, pa + len) of memory all equal to byte. */
static bool mem_is(struct fx *f, uint64_t pa, size_t len, uint8_t byte)
{
    for (size_t i = 0; i < len; i++)
        if (vtio_mem_read8(f->mem, pa + i) != byte)
            return false;
    return true;
}

static void t_port_crossing_pages(void)
{
    struct fx f;
    fx_init(&f, NULL);
    uint64_t sl = vtdb_page(&f.b);
    vtdb_ctx_legacy(&f.b, f.root, SID, 0, 2, DID, sl, false);
    /* IOVA 0x10000-0x11fff: two scattered pages; 0x12000 unmapped;
     * 0x14000 RW followed by 0x15000 read-only. */
    vtdb_sl_map(&f.b, sl, 4, 0x10000, 0x600000, 12, VTD_SL_R | VTD_SL_W);
    vtdb_sl_map(&f.b, sl, 4, 0x11000, 0x500000, 12, VTD_SL_R | VTD_SL_W);
    vtdb_sl_map(&f.b, sl, 4, 0x14000, 0x800000, 12, VTD_SL_R | VTD_SL_W);
    vtdb_sl_map(&f.b, sl, 4, 0x15000, 0x700000, 12, VTD_SL_R);
    fx_enable(&f, false);
    struct vtio_dma_port port;
    vtio_dma_port_init(&port, f.mem, SID);
    vtio_dma_port_set_bus_master(&port, true);
    vtio_dma_port_set_translator(&port, vtio_vtd_translator(f.vtd));

    uint8_t buf[0x1000], back[0x1000], got[0x1000];
    vtio_test_fill(buf, sizeof(buf), 7);
    /* Across the two mapped pages: lands split in physical memory. */
    CHECK_OK(vtio_dma_write(&port, 0x10800, buf, 0x1000));
    vtio_mem_read(f.mem, 0x600800, got, 0x800);
    vtio_mem_read(f.mem, 0x500000, got + 0x800, 0x800);
    CHECK_MEM_EQ(got, buf, 0x1000);
    CHECK_OK(vtio_dma_read(&port, 0x10800, back, 0x1000));
    CHECK_MEM_EQ(back, buf, 0x1000);
    /* Into the unmapped page: refused whole, the mapped half untouched. */
    vtio_mem_set(f.mem, 0x500000, 0, 0x1000);
    CHECK_ERR(vtio_dma_write(&port, 0x11800, buf, 0x1000), -EFAULT);
    CHECK(mem_is(&f, 0x500000, 0x1000, 0));
    fx_expect_record(&f, SID, VTD_FR_WRITE, 0x12000, true, false, 0);
    CHECK_ERR(vtio_dma_read(&port, 0x11ff8, back, 16), -EFAULT);
    fx_expect_record(&f, SID, VTD_FR_READ, 0x12000, false, false, 0);
    /* Into the read-only page: -EACCES, the writable half untouched. */
    CHECK_ERR(vtio_dma_fill(&port, 0x14ff0, 0x1122334455667788ull, 0x20), -EACCES);
    CHECK(mem_is(&f, 0x800ff0, 0x10, 0));
    fx_expect_record(&f, SID, VTD_FR_WRITE, 0x15000, true, false, 0);
    CHECK_OK(vtio_dma_read(&port, 0x14ff0, back, 0x20));
    struct vtio_dma_port_stats st;
    vtio_dma_port_get_stats(&port, &st);
    CHECK_EQ(st.faults, 3);
    CHECK_EQ(st.writes, 1);
    CHECK_EQ(st.reads, 2);
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * Counters.
 */

struct counter_arg {
    struct fx *f;
    unsigned n;
    _Atomic unsigned bad;
};

static void *count_worker(void *p)
{
    struct counter_arg *a = p;
    for (unsigned i = 0; i < a->n; i++) {
        struct vtio_vtd_resp r;
        if (fx_xlate(a->f, SID, 0x1000 + (i & 0xff), false, &r) != 0 || r.pa != 0x2000 + (i & 0xff))
            atomic_fetch_add(&a->bad, 1);
    }
    return NULL;
}

static void t_hot_counters(void)
{
    struct fx f;
    fx_init(&f, NULL);
    uint64_t sl = vtdb_page(&f.b);
    vtdb_ctx_legacy(&f.b, f.root, SID, 0, 2, DID, sl, false);
    vtdb_sl_map(&f.b, sl, 4, 0x1000, 0x2000, 12, VTD_SL_R);
    fx_enable(&f, false);
    CHECK_XLATE(&f, SID, 0x1000, false, 0x2000, 4096, true, false);   /* fill */

    /* Threads come and go (their shards are handed on); the sums stay
     * exact. */
    struct counter_arg a = { .f = &f, .n = 20000 };
    for (unsigned round = 0; round < 3; round++) {
        pthread_t t[3];
        for (int i = 0; i < 3; i++)
            CHECK_EQ(pthread_create(&t[i], NULL, count_worker, &a), 0);
        for (int i = 0; i < 3; i++)
            pthread_join(t[i], NULL);
    }
    CHECK_EQ(atomic_load(&a.bad), 0);
    uint64_t n = 1 + 9ull * a.n;
    CHECK_EQ(vtd_hot_sum(f.vtd, VTD_HOT_TRANSLATIONS), n);
    CHECK_EQ(vtd_hot_sum(f.vtd, VTD_HOT_IOTLB_HITS), n - 1);
    CHECK_EQ(atomic_load(&f.vtd->stats.iotlb_misses), 1);
    CHECK_EQ(fx_walks(&f), 1);
    CHECK_EQ(fx_ctx_misses(&f), 1);
    CHECK_EQ(fx_ctx_hits(&f), n);          /* every lookup but the first */
    struct vtio_vtd_stats st = { 0 };
    vtd_stats_add_hot(f.vtd, &st);
    CHECK_EQ(st.translations, n);
    CHECK_EQ(st.iotlb_hits, n - 1);
    fx_fini(&f);
}

static const struct vtio_test tests[] = {
    { "fl_pages_and_ad_bits", "first-level 4K/2M/1G pages, upper-half canonical VAs, A at every level and D on write", t_fl_pages_and_ad_bits },
    { "fl_5_level", "FSPM=1 walks 5 levels with 57-bit canonical addresses", t_fl_5_level },
    { "fl_faults", "first-level faults 80h/71h/72h/81h/85h/70h/73h/91h, SRE and WPE for supervisor requests", t_fl_faults },
    { "fl_fpd", "FPD in the PASID entry suppresses first-level faults", t_fl_fpd },
    { "nested", "nested walks read first-level tables through the second level and report its faults", t_nested },
    { "ats_translate", "ATS translation answers without recording, only where the context allows ATS", t_ats_translate },
    { "translator_op", "the DMA-port translator returns page spans, -EACCES/-EFAULT and passes MSIs on", t_translator_op },
    { "port_crossing_pages", "a DMA crossing into an unmapped or read-only page is refused whole", t_port_crossing_pages },
    { "hot_counters", "per-thread counters sum exactly across threads that come and go", t_hot_counters },
};

VTIO_TEST_MAIN(tests)
