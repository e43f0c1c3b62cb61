/*
 * Tests of the VT-d register file (src/hw/vtd/regs.c): CAP/ECAP built from
 * the caps description, creation errors, reset values, read-only and
 * reserved bits, access sizes, the GCMD/GSTS protocol as Linux drives it,
 * and register-based invalidation (CCMD, IOTLB/IVA) with its handshakes.
 *
 * Every test builds its own unit over a fresh vtio_mem with 4 MiB of RAM at
 * 0; tables and invalidation queues are written there with CPU-side
 * accesses, as a driver would.  Effects of invalidations are observed
 * through the unit's own caches (vtd_ctx_lookup, vtd_iotlb_lookup).
 */
#include <vtio/mem.h>
#include <vtio/vtd.h>
#include <vtio/vtd_regs.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "hw/vtd/vtd_internal.h"

#define MiB       VTIO_MiB
#define RAM_SIZE  (4 * MiB)
#define IQ_BASE   0x100000ull      /* invalidation queue (4 KiB, 256 slots) */
#define STATUS_PA 0x180000ull      /* wait-descriptor status words */
#define ROOT_PA   0x010000ull
#define CTX_PA    0x011000ull
#define SLPT_PA   0x012000ull
#define IRT_PA    0x020000ull
#define IRO       0x100            /* vtio's IOTLB register block */
#define IVA       (IRO + VTD_IVA_OFF)
#define IOTLB     (IRO + VTD_IOTLB_OFF)
#define FRO       0x200

/* ------------------------------------------------------------------------
 * Fixture: RAM, the unit, and a log of the interrupt messages it sends.
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

static void p_irq(void *o, uint64_t addr, uint32_t data)
{
    struct fx *f = o;
    atomic_store(&f->irq_addr, addr);
    atomic_store(&f->irq_data, data);
    atomic_fetch_add(&f->irqs, 1);
}

static void fx_init(struct fx *f, const struct vtio_vtd_caps *caps)
{
    memset(f, 0, sizeof(*f));
    f->mem = vtio_mem_create();
    CHECK(f->mem);
    CHECK_OK(vtio_mem_add_ram(f->mem, 0, RAM_SIZE, "ram"));
    struct vtio_vtd_platform p = { p_read, p_write, p_irq, f };
    CHECK_OK(vtio_vtd_create(caps, &p, &f->vtd));
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
static uint32_t gsts(struct fx *f) { return r32(f, VTD_GSTS_REG); }

/* Queued invalidation: a 128-bit queue of 256 slots at IQ_BASE. */
static void qi_put(struct fx *f, unsigned slot, uint64_t q0, uint64_t q1)
{
    vtio_mem_write64(f->mem, IQ_BASE + 16 * slot, q0);
    vtio_mem_write64(f->mem, IQ_BASE + 16 * slot + 8, q1);
}

static uint64_t wait_desc(uint32_t data, bool intr)
{
    return VTD_INV_DESC_WAIT | VTD_INV_WAIT_SW | (intr ? VTD_INV_WAIT_IF : 0) |
           (uint64_t)data << 32;
}

static void qi_enable(struct fx *f)
{
    w64(f, VTD_IQA_REG, IQ_BASE);
    w32(f, VTD_IQT_REG, 0);
    w32(f, VTD_GCMD_REG, (gsts(f) & VTD_GSTS_TES) | VTD_GCMD_QIE);
    CHECK(gsts(f) & VTD_GSTS_QIES);
    CHECK_EQ(r64(f, VTD_IQH_REG), 0);
}

/* ------------------------------------------------------------------------
 * CAP and ECAP.
 */

static void check_common_cap(uint64_t cap)
{
    CHECK_EQ(cap & (VTD_CAP_AFL | VTD_CAP_RWBF | VTD_CAP_PLMR | VTD_CAP_PHMR), 0);
    CHECK_EQ(cap & VTD_CAP_ZLR, 0);
    CHECK_EQ(VTD_CAP_FRO(cap), FRO / 16);
    CHECK(cap & VTD_CAP_PSI);
    CHECK_EQ(VTD_CAP_MAMV(cap), 18);
    CHECK(cap & VTD_CAP_DWD);
    CHECK(cap & VTD_CAP_DRD);
    CHECK_EQ(cap & (VTD_CAP_PI | VTD_CAP_ECMDS | VTD_CAP_ESIRTPS | VTD_CAP_ESRTPS), 0);
}

static void t_cap_48_default(void)
{
    struct fx f;
    fx_init(&f, &(struct vtio_vtd_caps){ 0 });
    uint64_t cap = r64(&f, VTD_CAP_REG), ecap = r64(&f, VTD_ECAP_REG);
    check_common_cap(cap);
    CHECK_EQ(VTD_CAP_ND(cap), 6);                 /* 16 domain-id bits */
    CHECK_EQ(cap & VTD_CAP_CM, 0);
    CHECK_EQ(VTD_CAP_SAGAW(cap), 0x6);            /* 3 and 4 levels */
    CHECK_EQ(VTD_CAP_MGAW(cap), 47);
    CHECK_EQ(VTD_CAP_SSLPS(cap), 0x3);            /* 2 MiB and 1 GiB */
    CHECK_EQ(VTD_CAP_NFR(cap), 7);                /* 8 FRCDs */
    CHECK_EQ(cap & (VTD_CAP_FS1GP | VTD_CAP_FS5LP), 0);
    CHECK_EQ(cap, 0x00d2078c202f0606ull);

    CHECK(ecap & VTD_ECAP_QI);
    CHECK(ecap & VTD_ECAP_IR);
    CHECK(ecap & VTD_ECAP_PT);
    CHECK_EQ(ecap & (VTD_ECAP_C | VTD_ECAP_DT | VTD_ECAP_EIM | VTD_ECAP_SC), 0);
    CHECK_EQ(VTD_ECAP_IRO(ecap), IRO / 16);
    CHECK_EQ(VTD_ECAP_MHMV(ecap), 0xf);
    CHECK_EQ(ecap & (VTD_ECAP_NEST | VTD_ECAP_PRS | VTD_ECAP_ERS | VTD_ECAP_SRS), 0);
    CHECK_EQ(ecap & (VTD_ECAP_NWFS | VTD_ECAP_PASID | VTD_ECAP_SMTS), 0);
    CHECK_EQ(ecap & (VTD_ECAP_SSTS | VTD_ECAP_FSTS), 0);
    CHECK_EQ(VTD_ECAP_PSS(ecap), 0);
    CHECK_EQ(ecap, 0xf0104aull);
    CHECK_EQ(r32(&f, VTD_VER_REG), 0x10);
    fx_fini(&f);

    /* NULL caps are the defaults. */
    fx_init(&f, NULL);
    CHECK_EQ(r64(&f, VTD_CAP_REG), cap);
    CHECK_EQ(r64(&f, VTD_ECAP_REG), ecap);
    fx_fini(&f);
}

static void t_cap_39_minimal(void)
{
    struct fx f;
    fx_init(&f, &(struct vtio_vtd_caps){ .addr_width = 39, .no_2m_pages = true,
                                         .no_1g_pages = true, .domain_id_bits = 8,
                                         .fault_regs = 1 });
    uint64_t cap = r64(&f, VTD_CAP_REG);
    check_common_cap(cap);
    CHECK_EQ(VTD_CAP_ND(cap), 2);                 /* 2^(4+2*2) = 256 domains */
    CHECK_EQ(VTD_CAP_SAGAW(cap), 0x2);            /* 3 levels only */
    CHECK_EQ(VTD_CAP_MGAW(cap), 38);
    CHECK_EQ(VTD_CAP_SSLPS(cap), 0);
    CHECK_EQ(VTD_CAP_NFR(cap), 0);
    CHECK_EQ(cap, 0x00d2008020260202ull);
    CHECK_EQ(r64(&f, VTD_ECAP_REG), 0xf0104aull);
    fx_fini(&f);

    /* Superpages one at a time. */
    fx_init(&f, &(struct vtio_vtd_caps){ .no_1g_pages = true });
    CHECK_EQ(VTD_CAP_SSLPS(r64(&f, VTD_CAP_REG)), 0x1);
    fx_fini(&f);
    fx_init(&f, &(struct vtio_vtd_caps){ .no_2m_pages = true });
    CHECK_EQ(VTD_CAP_SSLPS(r64(&f, VTD_CAP_REG)), 0x2);
    fx_fini(&f);
}

static void t_cap_57_scalable(void)
{
    struct fx f;
    fx_init(&f, &(struct vtio_vtd_caps){ .addr_width = 57, .scalable = true,
                                         .first_level = true, .nested = true,
                                         .caching_mode = true, .device_tlb = true,
                                         .pasid_bits = 16, .fault_regs = 64 });
    uint64_t cap = r64(&f, VTD_CAP_REG), ecap = r64(&f, VTD_ECAP_REG);
    check_common_cap(cap);
    CHECK_EQ(VTD_CAP_ND(cap), 6);
    CHECK(cap & VTD_CAP_CM);
    CHECK_EQ(VTD_CAP_SAGAW(cap), 0xe);            /* 3, 4 and 5 levels */
    CHECK_EQ(VTD_CAP_MGAW(cap), 56);
    CHECK_EQ(VTD_CAP_SSLPS(cap), 0x3);
    CHECK_EQ(VTD_CAP_NFR(cap), 63);
    CHECK(cap & VTD_CAP_FS1GP);
    CHECK(cap & VTD_CAP_FS5LP);
    CHECK_EQ(cap, 0x11d23f8c20380e86ull);

    CHECK(ecap & VTD_ECAP_QI);
    CHECK(ecap & VTD_ECAP_DT);
    CHECK(ecap & VTD_ECAP_IR);
    CHECK(ecap & VTD_ECAP_PT);
    CHECK(ecap & VTD_ECAP_NEST);
    CHECK(ecap & VTD_ECAP_SRS);
    CHECK_EQ(VTD_ECAP_PSS(ecap), 15);
    CHECK(ecap & VTD_ECAP_PASID);
    CHECK(ecap & VTD_ECAP_SMTS);
    CHECK(ecap & VTD_ECAP_SSTS);
    CHECK(ecap & VTD_ECAP_FSTS);
    CHECK_EQ(ecap & (VTD_ECAP_EIM | VTD_ECAP_PRS | VTD_ECAP_ERS | VTD_ECAP_NWFS), 0);
    CHECK_EQ(ecap, 0xc97884f0104eull);
    fx_fini(&f);
}

static void t_cap_options(void)
{
    struct fx f;
    fx_init(&f, &(struct vtio_vtd_caps){ .no_queued_inv = true, .no_intr_remap = true,
                                         .no_pass_through = true });
    CHECK_EQ(r64(&f, VTD_ECAP_REG), 0x1000ull);   /* only IRO; MHMV needs IR */
    fx_fini(&f);

    /* Scalable without first level: SL only, 20 PASID bits by default. */
    fx_init(&f, &(struct vtio_vtd_caps){ .scalable = true });
    uint64_t ecap = r64(&f, VTD_ECAP_REG);
    CHECK_EQ(VTD_ECAP_PSS(ecap), 19);
    CHECK(ecap & VTD_ECAP_SSTS);
    CHECK_EQ(ecap & (VTD_ECAP_FSTS | VTD_ECAP_SRS | VTD_ECAP_NEST), 0);
    CHECK_EQ(r64(&f, VTD_CAP_REG) & (VTD_CAP_FS1GP | VTD_CAP_FS5LP), 0);
    fx_fini(&f);

    /* Nested implies first-level support (ECAP.NEST needs FSTS and SSTS). */
    fx_init(&f, &(struct vtio_vtd_caps){ .scalable = true, .nested = true });
    ecap = r64(&f, VTD_ECAP_REG);
    CHECK(ecap & VTD_ECAP_NEST);
    CHECK(ecap & VTD_ECAP_FSTS);
    CHECK(ecap & VTD_ECAP_SSTS);
    CHECK(r64(&f, VTD_CAP_REG) & VTD_CAP_FS1GP);
    CHECK_EQ(r64(&f, VTD_CAP_REG) & VTD_CAP_FS5LP, 0);   /* 48-bit: 4 levels */
    fx_fini(&f);

    /* First level without 1 GiB pages: no FS1GP. */
    fx_init(&f, &(struct vtio_vtd_caps){ .scalable = true, .first_level = true,
                                         .no_1g_pages = true });
    CHECK_EQ(r64(&f, VTD_CAP_REG) & VTD_CAP_FS1GP, 0);
    fx_fini(&f);

    /* CAP.ND = (bits - 4) / 2. */
    static const unsigned bits[] = { 4, 6, 10, 14, 16 };
    for (unsigned i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
        fx_init(&f, &(struct vtio_vtd_caps){ .domain_id_bits = bits[i] });
        CHECK_EQ(VTD_CAP_ND(r64(&f, VTD_CAP_REG)), (bits[i] - 4) / 2);
        fx_fini(&f);
    }
}

static void t_create_errors(void)
{
    struct fx f;
    memset(&f, 0, sizeof(f));
    struct vtio_vtd_platform p = { p_read, p_write, p_irq, &f };
    struct vtio_vtd *vtd = (struct vtio_vtd *)&f;     /* must stay untouched */
    static const struct vtio_vtd_caps bad[] = {
        { .addr_width = 32 }, { .addr_width = 40 }, { .addr_width = 64 },
        { .first_level = true }, { .nested = true },
        { .no_queued_inv = true },                       /* IR needs QI */
        { .no_queued_inv = true, .no_intr_remap = true, .device_tlb = true },
        { .no_queued_inv = true, .no_intr_remap = true, .scalable = true },
        { .fault_regs = 65 }, { .fault_regs = 1000 },
        { .domain_id_bits = 2 }, { .domain_id_bits = 5 }, { .domain_id_bits = 18 },
        { .scalable = true, .pasid_bits = 21 },
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_ERR(vtio_vtd_create(&bad[i], &p, &vtd), -EINVAL);
        CHECK(vtd == (struct vtio_vtd *)&f);
        CHECK(vtio_last_error()[0] != '\0');
    }
    CHECK_ERR(vtio_vtd_create(NULL, NULL, &vtd), -EINVAL);
    CHECK_ERR(vtio_vtd_create(NULL, &(struct vtio_vtd_platform){ .mem_write = p_write }, &vtd),
              -EINVAL);
    CHECK_ERR(vtio_vtd_create(NULL, &(struct vtio_vtd_platform){ .mem_read = p_read }, &vtd),
              -EINVAL);
    CHECK_ERR(vtio_vtd_create(NULL, &p, NULL), -EINVAL);
    CHECK(vtd == (struct vtio_vtd *)&f);

    /* The edges that are allowed; no interrupt callback is fine too. */
    struct vtio_vtd_platform quiet = { p_read, p_write, NULL, NULL };
    static const struct vtio_vtd_caps good[] = {
        { .fault_regs = 64 }, { .fault_regs = 1 }, { .domain_id_bits = 4 },
        { .scalable = true, .pasid_bits = 1 }, { .no_queued_inv = true, .no_intr_remap = true },
        { .pasid_bits = 5 },                           /* ignored without scalable */
    };
    for (unsigned i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        CHECK_OK(vtio_vtd_create(&good[i], &quiet, &vtd));
        vtio_vtd_destroy(vtd);
    }
    vtio_vtd_destroy(NULL);
}

/* ------------------------------------------------------------------------
 * Reset values, read-only and reserved bits, access sizes.
 */

/* Every implemented register at its power-on value. */
static void check_reset_values(struct fx *f)
{
    CHECK_EQ(r32(f, VTD_VER_REG), 0x10);
    CHECK_EQ(r32(f, VTD_GCMD_REG), 0);
    CHECK_EQ(gsts(f), 0);
    CHECK_EQ(r64(f, VTD_RTADDR_REG), 0);
    CHECK_EQ(r64(f, VTD_CCMD_REG), 0);
    CHECK_EQ(r32(f, VTD_FSTS_REG), 0);
    CHECK_EQ(r32(f, VTD_FECTL_REG), VTD_xECTL_IM);
    CHECK_EQ(r32(f, VTD_FEDATA_REG), 0);
    CHECK_EQ(r32(f, VTD_FEADDR_REG), 0);
    CHECK_EQ(r32(f, VTD_FEUADDR_REG), 0);
    CHECK_EQ(r64(f, VTD_AFLOG_REG), 0);
    CHECK_EQ(r32(f, VTD_PMEN_REG), 0);
    CHECK_EQ(r32(f, VTD_PLMBASE_REG), 0);
    CHECK_EQ(r32(f, VTD_PLMLIMIT_REG), 0);
    CHECK_EQ(r64(f, VTD_PHMBASE_REG), 0);
    CHECK_EQ(r64(f, VTD_PHMLIMIT_REG), 0);
    CHECK_EQ(r64(f, VTD_IQH_REG), 0);
    CHECK_EQ(r64(f, VTD_IQT_REG), 0);
    CHECK_EQ(r64(f, VTD_IQA_REG), 0);
    CHECK_EQ(r32(f, VTD_ICS_REG), 0);
    CHECK_EQ(r32(f, VTD_IECTL_REG), VTD_xECTL_IM);
    CHECK_EQ(r32(f, VTD_IEDATA_REG), 0);
    CHECK_EQ(r32(f, VTD_IEADDR_REG), 0);
    CHECK_EQ(r32(f, VTD_IEUADDR_REG), 0);
    CHECK_EQ(r64(f, VTD_IQER_REG), 0);
    CHECK_EQ(r64(f, VTD_IRTA_REG), 0);
    CHECK_EQ(r64(f, IVA), 0);
    CHECK_EQ(r64(f, IOTLB), 0);
    unsigned nfr = (unsigned)VTD_CAP_NFR(r64(f, VTD_CAP_REG)) + 1;
    for (unsigned i = 0; i < nfr; i++) {
        CHECK_EQ(r64(f, FRO + 16 * i), 0);
        CHECK_EQ(r64(f, FRO + 16 * i + 8), 0);
    }
    CHECK_EQ(atomic_load(&f->vtd->rtaddr_active), 0);
    CHECK_EQ(atomic_load(&f->vtd->irta_active), 0);
}

static void t_reset_values(void)
{
    struct fx f;
    fx_init(&f, NULL);
    check_reset_values(&f);
    /* Unimplemented registers (page requests, MTRRs, perfmon...) read 0. */
    static const uint64_t zero[] = { 0x30, 0x48, 0x50, 0x98, VTD_PQH_REG, VTD_PQT_REG,
                                     VTD_PQA_REG, VTD_PRS_REG, VTD_PECTL_REG, 0x100 + 0x10,
                                     0x300, 0x400, 0x430, 0xff8 };
    for (unsigned i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
        CHECK_EQ(r64(&f, zero[i]), 0);
    CHECK_EQ(r64(&f, FRO + 16 * 8), 0);           /* past the last FRCD */
    fx_fini(&f);
}

static void t_reset_after_use(void)
{
    struct fx f;
    fx_init(&f, NULL);
    /* Program nearly everything, enable everything, log a fault. */
    w64(&f, VTD_RTADDR_REG, ROOT_PA);
    w64(&f, VTD_IRTA_REG, IRT_PA | 0xf);
    w32(&f, VTD_GCMD_REG, VTD_GCMD_SRTP);
    w32(&f, VTD_GCMD_REG, VTD_GCMD_SIRTP);
    qi_put(&f, 0, wait_desc(1, false), STATUS_PA);
    qi_enable(&f);
    w32(&f, VTD_IQT_REG, 1 << 4);
    CHECK_EQ(r64(&f, VTD_IQH_REG), 1 << 4);
    w32(&f, VTD_GCMD_REG, VTD_GCMD_QIE | VTD_GCMD_TE | VTD_GCMD_IRE | VTD_GCMD_CFI);
    CHECK_EQ(gsts(&f), VTD_GSTS_TES | VTD_GSTS_RTPS | VTD_GSTS_QIES | VTD_GSTS_IRES |
                       VTD_GSTS_IRTPS | VTD_GSTS_CFIS);
    w32(&f, VTD_FECTL_REG, 0);
    w32(&f, VTD_FEDATA_REG, 0x41);
    w32(&f, VTD_FEADDR_REG, 0xfee00000);
    w32(&f, VTD_IECTL_REG, 0);
    w32(&f, VTD_IEDATA_REG, 0x42);
    w32(&f, VTD_IEADDR_REG, 0xfee00000);
    w32(&f, VTD_PMEN_REG, VTD_PMEN_EPM);
    w32(&f, VTD_PLMBASE_REG, 0x100000);
    w32(&f, VTD_PLMLIMIT_REG, 0x200000);
    w64(&f, VTD_PHMBASE_REG, 1ull << 32);
    w64(&f, VTD_PHMLIMIT_REG, 2ull << 32);
    w64(&f, IVA, 0x5000);
    vtd_fault_record(f.vtd, &(struct vtd_fault){ .sid = 1, .reason = 2, .addr = 0x1000 });
    CHECK(r32(&f, VTD_FSTS_REG) & VTD_FSTS_PPF);

    vtio_vtd_reset(f.vtd);
    check_reset_values(&f);
    fx_fini(&f);
}

/* Writes of all ones: only writable bits stick; the rest read as before. */
static void t_ro_reserved_writes(void)
{
    struct fx f;
    fx_init(&f, NULL);
    uint64_t cap = r64(&f, VTD_CAP_REG), ecap = r64(&f, VTD_ECAP_REG);
    const uint64_t ones = ~0ull;
    static const uint64_t ro[] = { VTD_VER_REG, VTD_CAP_REG, VTD_ECAP_REG, VTD_IQH_REG,
                                   VTD_IQER_REG, VTD_AFLOG_REG, 0x30, 0x48, 0x50,
                                   VTD_PQA_REG, 0x100 + 0x10, 0x800 };
    for (unsigned i = 0; i < sizeof(ro) / sizeof(ro[0]); i++) {
        w64(&f, ro[i], ones);
        w32(&f, ro[i] + 4, 0xffffffff);
    }
    CHECK_EQ(r32(&f, VTD_VER_REG), 0x10);
    CHECK_EQ(r64(&f, VTD_CAP_REG), cap);
    CHECK_EQ(r64(&f, VTD_ECAP_REG), ecap);
    CHECK_EQ(r64(&f, VTD_IQH_REG), 0);
    CHECK_EQ(r64(&f, VTD_IQER_REG), 0);
    CHECK_EQ(r64(&f, VTD_AFLOG_REG), 0);
    CHECK_EQ(r64(&f, 0x30), 0);
    CHECK_EQ(r64(&f, 0x800), 0);
    CHECK_EQ(gsts(&f), 0);

    /* GSTS itself is read-only (GCMD is the command). */
    w32(&f, VTD_GSTS_REG, 0xffffffff);
    CHECK_EQ(gsts(&f), 0);

    /* RTADDR: address bits up to HAW-1 (48) and TTM. */
    w64(&f, VTD_RTADDR_REG, ones);
    CHECK_EQ(r64(&f, VTD_RTADDR_REG), 0x0000fffffffffc00ull);
    /* IQA: address, QS; DW is reserved without scalable mode. */
    w64(&f, VTD_IQA_REG, ones);
    CHECK_EQ(r64(&f, VTD_IQA_REG), 0x0000fffffffff007ull);
    /* IQT: bits 18:4. */
    w64(&f, VTD_IQT_REG, ones);
    CHECK_EQ(r64(&f, VTD_IQT_REG), 0x7fff0);
    /* IRTA: address and S; EIME is reserved without ECAP.EIM. */
    w64(&f, VTD_IRTA_REG, ones);
    CHECK_EQ(r64(&f, VTD_IRTA_REG), 0x0000fffffffff00full);
    /* IVA is write-only. */
    w64(&f, IVA, ones);
    CHECK_EQ(r64(&f, IVA), 0);
    CHECK_EQ(f.vtd->iva, 0xfffffffffffff07full);
    /* Event registers: data [15:0], address [31:2], no upper address
     * without EIM; IP is read-only. */
    w32(&f, VTD_FEDATA_REG, 0xffffffff);
    w32(&f, VTD_FEADDR_REG, 0xffffffff);
    w32(&f, VTD_FEUADDR_REG, 0xffffffff);
    w32(&f, VTD_FECTL_REG, 0xffffffff);
    CHECK_EQ(r32(&f, VTD_FEDATA_REG), 0xffff);
    CHECK_EQ(r32(&f, VTD_FEADDR_REG), 0xfffffffc);
    CHECK_EQ(r32(&f, VTD_FEUADDR_REG), 0);
    CHECK_EQ(r32(&f, VTD_FECTL_REG), VTD_xECTL_IM);
    w32(&f, VTD_IEDATA_REG, 0xffffffff);
    w32(&f, VTD_IEADDR_REG, 0xffffffff);
    w32(&f, VTD_IEUADDR_REG, 0xffffffff);
    w32(&f, VTD_IECTL_REG, 0xffffffff);
    CHECK_EQ(r32(&f, VTD_IEDATA_REG), 0xffff);
    CHECK_EQ(r32(&f, VTD_IEADDR_REG), 0xfffffffc);
    CHECK_EQ(r32(&f, VTD_IEUADDR_REG), 0);
    CHECK_EQ(r32(&f, VTD_IECTL_REG), VTD_xECTL_IM);
    /* FSTS: nothing to clear, PPF/FRI read-only; ICS: only IWC (RW1C). */
    w32(&f, VTD_FSTS_REG, 0xffffffff);
    CHECK_EQ(r32(&f, VTD_FSTS_REG), 0);
    w32(&f, VTD_ICS_REG, 0xffffffff);
    CHECK_EQ(r32(&f, VTD_ICS_REG), 0);
    /* PMEN: EPM with its status; PLM/PHM: 1 MiB granularity. */
    w32(&f, VTD_PMEN_REG, 0xffffffff);
    CHECK_EQ(r32(&f, VTD_PMEN_REG), VTD_PMEN_EPM | VTD_PMEN_PRS);
    w32(&f, VTD_PMEN_REG, 0);
    CHECK_EQ(r32(&f, VTD_PMEN_REG), 0);
    w32(&f, VTD_PLMBASE_REG, 0xffffffff);
    w32(&f, VTD_PLMLIMIT_REG, 0xffffffff);
    CHECK_EQ(r32(&f, VTD_PLMBASE_REG), 0xfff00000);
    CHECK_EQ(r32(&f, VTD_PLMLIMIT_REG), 0xfff00000);
    w64(&f, VTD_PHMBASE_REG, ones);
    w64(&f, VTD_PHMLIMIT_REG, ones);
    CHECK_EQ(r64(&f, VTD_PHMBASE_REG), 0x0000fffffff00000ull);
    CHECK_EQ(r64(&f, VTD_PHMLIMIT_REG), 0x0000fffffff00000ull);
    /* FRCDs: read-only except F. */
    w64(&f, FRO, ones);
    w64(&f, FRO + 8, ones);
    CHECK_EQ(r64(&f, FRO), 0);
    CHECK_EQ(r64(&f, FRO + 8), 0);
    CHECK_EQ(gsts(&f), 0);
    fx_fini(&f);

    /* With scalable mode IQA.DW is writable; a 39-bit unit keeps 38:12. */
    fx_init(&f, &(struct vtio_vtd_caps){ .addr_width = 39, .scalable = true });
    w64(&f, VTD_IQA_REG, ones);
    CHECK_EQ(r64(&f, VTD_IQA_REG), 0x0000007ffffff807ull);
    w64(&f, VTD_RTADDR_REG, ones);
    CHECK_EQ(r64(&f, VTD_RTADDR_REG), 0x0000007ffffffc00ull);
    fx_fini(&f);
}

static void t_access_sizes(void)
{
    struct fx f;
    fx_init(&f, NULL);
    uint64_t cap = r64(&f, VTD_CAP_REG);
    /* 32-bit halves of a 64-bit register. */
    CHECK_EQ(r32(&f, VTD_CAP_REG), (uint32_t)cap);
    CHECK_EQ(r32(&f, VTD_CAP_REG + 4), (uint32_t)(cap >> 32));
    /* A 64-bit read of two 32-bit registers: low one in the low half. */
    w32(&f, VTD_FEDATA_REG, 0x1234);
    CHECK_EQ(r64(&f, VTD_FECTL_REG), (uint64_t)0x1234 << 32 | VTD_xECTL_IM);
    CHECK_EQ(r64(&f, VTD_GCMD_REG), 0);
    /* ...and a 64-bit write to two 32-bit registers writes both. */
    w64(&f, VTD_FEADDR_REG, 0x00000000fee01000ull);
    CHECK_EQ(r32(&f, VTD_FEADDR_REG), 0xfee01000);
    w64(&f, VTD_IEDATA_REG - 4, (uint64_t)0x77 << 32 | VTD_xECTL_IM);
    CHECK_EQ(r32(&f, VTD_IEDATA_REG), 0x77);
    CHECK_EQ(r32(&f, VTD_IECTL_REG), VTD_xECTL_IM);

    /* Bad sizes, misaligned or outside the window: read 0, writes dropped. */
    CHECK_EQ(vtio_vtd_reg_read(f.vtd, VTD_CAP_REG, 1), 0);
    CHECK_EQ(vtio_vtd_reg_read(f.vtd, VTD_CAP_REG, 2), 0);
    CHECK_EQ(vtio_vtd_reg_read(f.vtd, VTD_CAP_REG + 4, 8), 0);
    CHECK_EQ(vtio_vtd_reg_read(f.vtd, VTD_CAP_REG + 2, 4), 0);
    CHECK_EQ(vtio_vtd_reg_read(f.vtd, VTD_REG_SIZE, 4), 0);
    CHECK_EQ(vtio_vtd_reg_read(f.vtd, ~0ull - 3, 4), 0);
    CHECK_EQ(vtio_vtd_reg_read(f.vtd, VTD_CAP_REG, 3), 0);
    vtio_vtd_reg_write(f.vtd, VTD_RTADDR_REG, 0x5000, 1);
    vtio_vtd_reg_write(f.vtd, VTD_RTADDR_REG, 0x5000, 2);
    vtio_vtd_reg_write(f.vtd, VTD_RTADDR_REG + 4, 0x5000, 8);
    vtio_vtd_reg_write(f.vtd, VTD_RTADDR_REG + 2, 0x5000, 4);
    vtio_vtd_reg_write(f.vtd, VTD_REG_SIZE - 4, 0x5000, 8);
    CHECK_EQ(r64(&f, VTD_RTADDR_REG), 0);
    CHECK_EQ(vtio_vtd_reg_read(f.vtd, VTD_REG_SIZE - 4, 4), 0);
    fx_fini(&f);
}

static void t_mmio_ops(void)
{
    struct fx f;
    fx_init(&f, NULL);
    const uint64_t base = 0xfed90000;
    CHECK_OK(vtio_mem_add_mmio(f.mem, base, VTD_REG_SIZE, &vtio_vtd_mmio_ops, f.vtd, "dmar"));
    CHECK_EQ(vtio_mem_read64(f.mem, base + VTD_CAP_REG), r64(&f, VTD_CAP_REG));
    CHECK_EQ(vtio_mem_read32(f.mem, base + VTD_VER_REG), 0x10);
    vtio_mem_write64(f.mem, base + VTD_RTADDR_REG, ROOT_PA);
    vtio_mem_write32(f.mem, base + VTD_GCMD_REG, VTD_GCMD_SRTP);
    CHECK_EQ(vtio_mem_read32(f.mem, base + VTD_GSTS_REG), VTD_GSTS_RTPS);
    CHECK_EQ(atomic_load(&f.vtd->rtaddr_active), ROOT_PA);
    /* Byte accesses are not register accesses. */
    CHECK_EQ(vtio_mem_read8(f.mem, base + VTD_VER_REG), 0);
    fx_fini(&f);
}

static void t_stats_zero(void)
{
    struct fx f;
    fx_init(&f, NULL);
    struct vtio_vtd_stats st;
    memset(&st, 0xa5, sizeof(st));
    vtio_vtd_get_stats(f.vtd, &st);
    struct vtio_vtd_stats zero;
    memset(&zero, 0, sizeof(zero));
    CHECK_MEM_EQ(&st, &zero, sizeof(st));
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * GCMD / GSTS.
 */

static void t_gcmd_srtp(void)
{
    struct fx f;
    fx_init(&f, NULL);
    w64(&f, VTD_RTADDR_REG, ROOT_PA);
    CHECK_EQ(atomic_load(&f.vtd->rtaddr_active), 0);  /* not before SRTP */
    w32(&f, VTD_GCMD_REG, VTD_GCMD_SRTP);
    CHECK_EQ(gsts(&f), VTD_GSTS_RTPS);
    CHECK_EQ(r32(&f, VTD_GCMD_REG), 0);                /* GCMD is write-only */
    CHECK_EQ(atomic_load(&f.vtd->rtaddr_active), ROOT_PA);

    /* A new RTADDR takes effect with the next SRTP only; TTM comes along. */
    w64(&f, VTD_RTADDR_REG, 0x30000 | VTD_RTADDR_SMT);
    CHECK_EQ(atomic_load(&f.vtd->rtaddr_active), ROOT_PA);
    CHECK_EQ(r64(&f, VTD_RTADDR_REG), 0x30000 | VTD_RTADDR_SMT);
    w32(&f, VTD_GCMD_REG, VTD_GCMD_SRTP);
    CHECK_EQ(atomic_load(&f.vtd->rtaddr_active), 0x30000 | VTD_RTADDR_SMT);
    CHECK_EQ(gsts(&f), VTD_GSTS_RTPS);
    fx_fini(&f);
}

static void t_gcmd_te_level(void)
{
    struct fx f;
    fx_init(&f, NULL);
    w64(&f, VTD_RTADDR_REG, ROOT_PA);
    w32(&f, VTD_GCMD_REG, VTD_GCMD_SRTP);
    w32(&f, VTD_GCMD_REG, VTD_GCMD_TE);
    CHECK_EQ(gsts(&f), VTD_GSTS_TES | VTD_GSTS_RTPS);
    CHECK(vtd_enabled(f.vtd, VTD_GSTS_TES));
    w32(&f, VTD_GCMD_REG, VTD_GCMD_TE);                /* same level: no change */
    CHECK_EQ(gsts(&f), VTD_GSTS_TES | VTD_GSTS_RTPS);
    w32(&f, VTD_GCMD_REG, 0);                          /* TE=0 turns it off */
    CHECK_EQ(gsts(&f), VTD_GSTS_RTPS);
    CHECK(!vtd_enabled(f.vtd, VTD_GSTS_TES));
    fx_fini(&f);
}

/* Linux: gcmd (shadow of the levels) | the one-shot command. */
static void t_gcmd_linux_pattern(void)
{
    struct fx f;
    fx_init(&f, NULL);
    uint32_t shadow = 0;
    qi_put(&f, 0, wait_desc(7, false), STATUS_PA);
    qi_put(&f, 1, wait_desc(8, false), STATUS_PA + 4);
    w64(&f, VTD_IQA_REG, IQ_BASE);
    shadow |= VTD_GCMD_QIE;
    w32(&f, VTD_GCMD_REG, shadow);
    w32(&f, VTD_IQT_REG, 2 << 4);
    CHECK_EQ(r64(&f, VTD_IQH_REG), 2 << 4);
    CHECK_EQ(vtio_mem_read32(f.mem, STATUS_PA + 4), 8);

    w64(&f, VTD_RTADDR_REG, ROOT_PA);
    w32(&f, VTD_GCMD_REG, shadow | VTD_GCMD_SRTP);
    CHECK_EQ(gsts(&f), VTD_GSTS_QIES | VTD_GSTS_RTPS);
    /* QIE written again as a level: the queue is not restarted. */
    CHECK_EQ(r64(&f, VTD_IQH_REG), 2 << 4);
    shadow |= VTD_GCMD_TE;
    w32(&f, VTD_GCMD_REG, shadow);
    CHECK_EQ(gsts(&f), VTD_GSTS_QIES | VTD_GSTS_RTPS | VTD_GSTS_TES);
    /* SRTP again while translating: latches the new root, levels kept. */
    w64(&f, VTD_RTADDR_REG, ROOT_PA + 0x1000);
    w32(&f, VTD_GCMD_REG, shadow | VTD_GCMD_SRTP);
    CHECK_EQ(gsts(&f), VTD_GSTS_QIES | VTD_GSTS_RTPS | VTD_GSTS_TES);
    CHECK_EQ(atomic_load(&f.vtd->rtaddr_active), ROOT_PA + 0x1000);
    w32(&f, VTD_GCMD_REG, shadow | VTD_GCMD_WBF);
    CHECK_EQ(gsts(&f), VTD_GSTS_QIES | VTD_GSTS_RTPS | VTD_GSTS_TES);
    /* Clearing one level leaves the others. */
    shadow &= ~VTD_GCMD_TE;
    w32(&f, VTD_GCMD_REG, shadow);
    CHECK_EQ(gsts(&f), VTD_GSTS_QIES | VTD_GSTS_RTPS);
    CHECK_EQ(r64(&f, VTD_IQH_REG), 2 << 4);
    fx_fini(&f);
}

static void t_gcmd_wbf_sfl(void)
{
    struct fx f;
    fx_init(&f, NULL);
    w32(&f, VTD_GCMD_REG, VTD_GCMD_WBF);
    CHECK_EQ(gsts(&f) & VTD_GSTS_WBFS, 0);             /* done at once */
    w32(&f, VTD_GCMD_REG, VTD_GCMD_SFL | VTD_GCMD_EAFL);
    CHECK_EQ(gsts(&f), 0);                             /* no advanced fault log */
    fx_fini(&f);
}

static void t_gcmd_ir(void)
{
    struct fx f;
    fx_init(&f, NULL);
    /* IRE before SIRTP: ignored. */
    w32(&f, VTD_GCMD_REG, VTD_GCMD_IRE);
    CHECK_EQ(gsts(&f), 0);
    /* SIRTP latches IRTA. */
    w64(&f, VTD_IRTA_REG, IRT_PA | 0xf);
    CHECK_EQ(atomic_load(&f.vtd->irta_active), 0);
    w32(&f, VTD_GCMD_REG, VTD_GCMD_SIRTP);
    CHECK_EQ(gsts(&f), VTD_GSTS_IRTPS);
    CHECK_EQ(atomic_load(&f.vtd->irta_active), IRT_PA | 0xf);
    /* IRE now takes; CFI is a level of its own. */
    w32(&f, VTD_GCMD_REG, VTD_GCMD_IRE);
    CHECK_EQ(gsts(&f), VTD_GSTS_IRTPS | VTD_GSTS_IRES);
    w32(&f, VTD_GCMD_REG, VTD_GCMD_IRE | VTD_GCMD_CFI);
    CHECK_EQ(gsts(&f), VTD_GSTS_IRTPS | VTD_GSTS_IRES | VTD_GSTS_CFIS);
    /* Linux: gcmd &= ~CFI after enabling IR. */
    w32(&f, VTD_GCMD_REG, VTD_GCMD_IRE);
    CHECK_EQ(gsts(&f), VTD_GSTS_IRTPS | VTD_GSTS_IRES);
    /* A new table with SIRTP | the levels. */
    w64(&f, VTD_IRTA_REG, (IRT_PA + 0x10000) | 3);
    w32(&f, VTD_GCMD_REG, VTD_GCMD_IRE | VTD_GCMD_SIRTP);
    CHECK_EQ(gsts(&f), VTD_GSTS_IRTPS | VTD_GSTS_IRES);
    CHECK_EQ(atomic_load(&f.vtd->irta_active), (IRT_PA + 0x10000) | 3);
    w32(&f, VTD_GCMD_REG, 0);
    CHECK_EQ(gsts(&f), VTD_GSTS_IRTPS);
    fx_fini(&f);

    /* Without ECAP.IR the IR commands are reserved bits. */
    fx_init(&f, &(struct vtio_vtd_caps){ .no_intr_remap = true });
    w64(&f, VTD_IRTA_REG, IRT_PA);
    w32(&f, VTD_GCMD_REG, VTD_GCMD_SIRTP);
    w32(&f, VTD_GCMD_REG, VTD_GCMD_IRE | VTD_GCMD_CFI);
    CHECK_EQ(gsts(&f), 0);
    CHECK_EQ(atomic_load(&f.vtd->irta_active), 0);
    fx_fini(&f);
}

static void t_gcmd_qie(void)
{
    struct fx f;
    fx_init(&f, NULL);
    for (unsigned i = 0; i < 3; i++)
        qi_put(&f, i, wait_desc(0x100 + i, false), STATUS_PA + 4 * i);
    qi_enable(&f);
    w32(&f, VTD_IQT_REG, 3 << 4);
    CHECK_EQ(r64(&f, VTD_IQH_REG), 3 << 4);
    CHECK_EQ(vtio_mem_read32(f.mem, STATUS_PA + 8), 0x102);

    /* The queue is idle: disabling works.  IQT writes then do nothing. */
    w32(&f, VTD_GCMD_REG, 0);
    CHECK_EQ(gsts(&f), 0);
    CHECK_EQ(r64(&f, VTD_IQH_REG), 3 << 4);
    qi_put(&f, 0, wait_desc(0x300, false), STATUS_PA + 16);
    w32(&f, VTD_IQT_REG, 1 << 4);
    CHECK_EQ(vtio_mem_read32(f.mem, STATUS_PA + 16), 0);
    CHECK_EQ(r64(&f, VTD_IQH_REG), 3 << 4);

    /* Enabling again restarts at IQH = 0 and runs what IQT already names
     * (software should enable with IQT = 0; hardware copes either way). */
    w32(&f, VTD_GCMD_REG, VTD_GCMD_QIE);
    CHECK_EQ(gsts(&f), VTD_GSTS_QIES);
    CHECK_EQ(r64(&f, VTD_IQH_REG), 1 << 4);
    CHECK_EQ(vtio_mem_read32(f.mem, STATUS_PA + 16), 0x300);

    /* No queued invalidation in ECAP: QIE is ignored. */
    fx_fini(&f);
    fx_init(&f, &(struct vtio_vtd_caps){ .no_queued_inv = true, .no_intr_remap = true });
    w32(&f, VTD_GCMD_REG, VTD_GCMD_QIE);
    CHECK_EQ(gsts(&f), 0);
    fx_fini(&f);
}

/* QIE=0 while descriptors are pending (the queue halted on IQE) is
 * ignored; clearing IQE lets the queue go on, then QIE=0 works. */
static void t_gcmd_qie_disable_refused(void)
{
    struct fx f;
    fx_init(&f, NULL);
    qi_put(&f, 0, wait_desc(1, false), STATUS_PA);
    qi_put(&f, 1, 0xf, 0);                              /* unknown type */
    qi_put(&f, 2, wait_desc(3, false), STATUS_PA + 8);
    qi_enable(&f);
    w32(&f, VTD_IQT_REG, 3 << 4);
    CHECK(r32(&f, VTD_FSTS_REG) & VTD_FSTS_IQE);
    CHECK_EQ(r64(&f, VTD_IQH_REG), 1 << 4);             /* at the bad one */
    CHECK_EQ(vtio_mem_read32(f.mem, STATUS_PA), 1);
    CHECK_EQ(vtio_mem_read32(f.mem, STATUS_PA + 8), 0);

    w32(&f, VTD_GCMD_REG, 0);
    CHECK_EQ(gsts(&f), VTD_GSTS_QIES);                  /* refused */

    /* Linux's recovery: overwrite the bad descriptor, clear IQE. */
    qi_put(&f, 1, wait_desc(2, false), STATUS_PA + 4);
    w32(&f, VTD_FSTS_REG, VTD_FSTS_IQE);
    CHECK_EQ(r32(&f, VTD_FSTS_REG) & VTD_FSTS_IQE, 0);
    CHECK_EQ(r64(&f, VTD_IQH_REG), 3 << 4);
    CHECK_EQ(vtio_mem_read32(f.mem, STATUS_PA + 4), 2);
    CHECK_EQ(vtio_mem_read32(f.mem, STATUS_PA + 8), 3);

    w32(&f, VTD_GCMD_REG, 0);
    CHECK_EQ(gsts(&f), 0);
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * Register-based invalidation.
 */

static uint64_t ccmd(unsigned cirg, uint16_t did, uint16_t sid, unsigned fm)
{
    return VTD_CCMD_ICC | (uint64_t)cirg << VTD_CCMD_CIRG_SHIFT | (uint64_t)fm << 32 |
           (uint64_t)sid << 16 | did;
}

static uint64_t iotlb_cmd(unsigned iirg, uint16_t did)
{
    return VTD_IOTLB_IVT | (uint64_t)iirg << VTD_IOTLB_IIRG_SHIFT | VTD_IOTLB_DR |
           VTD_IOTLB_DW | (uint64_t)did << 32;
}

static void t_ccmd_handshake(void)
{
    struct fx f;
    fx_init(&f, NULL);
    w64(&f, VTD_CCMD_REG, ccmd(VTD_INV_GLOBAL, 0, 0, 0));
    uint64_t v = r64(&f, VTD_CCMD_REG);
    CHECK_EQ(v & VTD_CCMD_ICC, 0);                      /* done at once */
    CHECK_EQ(VTD_CCMD_CAIG(v), VTD_INV_GLOBAL);
    CHECK_EQ(VTD_CCMD_CIRG(v), VTD_INV_GLOBAL);

    w64(&f, VTD_CCMD_REG, ccmd(VTD_INV_DOMAIN, 42, 0, 0));
    v = r64(&f, VTD_CCMD_REG);
    CHECK_EQ(v & VTD_CCMD_ICC, 0);
    CHECK_EQ(VTD_CCMD_CAIG(v), VTD_INV_DOMAIN);
    CHECK_EQ(VTD_CCMD_DID(v), 42);

    w64(&f, VTD_CCMD_REG, ccmd(VTD_INV_DEVICE, 42, 0x0308, 2));
    v = r64(&f, VTD_CCMD_REG);
    CHECK_EQ(v, (uint64_t)VTD_INV_DEVICE << VTD_CCMD_CIRG_SHIFT |
                (uint64_t)VTD_INV_DEVICE << VTD_CCMD_CAIG_SHIFT | 2ull << 32 |
                0x0308ull << 16 | 42);

    /* CIRG 0 is reserved: not performed, CAIG 0. */
    w64(&f, VTD_CCMD_REG, ccmd(0, 1, 0, 0));
    v = r64(&f, VTD_CCMD_REG);
    CHECK_EQ(v & VTD_CCMD_ICC, 0);
    CHECK_EQ(VTD_CCMD_CAIG(v), 0);

    /* CAIG is read-only; without ICC nothing happens. */
    w64(&f, VTD_CCMD_REG, 3ull << VTD_CCMD_CAIG_SHIFT | 3ull << VTD_CCMD_CIRG_SHIFT);
    v = r64(&f, VTD_CCMD_REG);
    CHECK_EQ(VTD_CCMD_CAIG(v), 0);
    CHECK_EQ(VTD_CCMD_CIRG(v), 3);
    fx_fini(&f);
}

/* A legacy root and context table mapping SID 0x0008 in domain did. */
static void build_context(struct fx *f, uint16_t did)
{
    vtio_mem_set(f->mem, ROOT_PA, 0, 0x3000);
    vtio_mem_write64(f->mem, ROOT_PA, CTX_PA | VTD_ROOT_P);
    vtio_mem_write64(f->mem, CTX_PA + 16 * 8, SLPT_PA | VTD_CTX_P);
    vtio_mem_write64(f->mem, CTX_PA + 16 * 8 + 8, 2 | (uint64_t)did << VTD_CTX_DID_SHIFT);
}

static void set_did(struct fx *f, uint16_t did)
{
    vtio_mem_write64(f->mem, CTX_PA + 16 * 8 + 8, 2 | (uint64_t)did << VTD_CTX_DID_SHIFT);
}

static unsigned ctx_did(struct fx *f)
{
    struct vtd_ctx ctx;
    bool fpd = false;
    CHECK_EQ(vtd_ctx_lookup(f->vtd, 0x0008, false, 0, &ctx, &fpd), 0);
    CHECK_EQ(ctx.kind, VTD_XK_SL);
    return ctx.did;
}

static void t_ccmd_invalidates(void)
{
    struct fx f;
    fx_init(&f, NULL);
    build_context(&f, 5);
    w64(&f, VTD_RTADDR_REG, ROOT_PA);
    w32(&f, VTD_GCMD_REG, VTD_GCMD_SRTP);
    CHECK_EQ(ctx_did(&f), 5);
    set_did(&f, 6);
    CHECK_EQ(ctx_did(&f), 5);                           /* cached */

    w64(&f, VTD_CCMD_REG, ccmd(VTD_INV_DEVICE, 5, 0x0008, 0));
    CHECK_EQ(VTD_CCMD_CAIG(r64(&f, VTD_CCMD_REG)), VTD_INV_DEVICE);
    CHECK_EQ(ctx_did(&f), 6);
    set_did(&f, 7);
    w64(&f, VTD_CCMD_REG, ccmd(VTD_INV_DOMAIN, 6, 0, 0));
    CHECK_EQ(VTD_CCMD_CAIG(r64(&f, VTD_CCMD_REG)), VTD_INV_DOMAIN);
    CHECK_EQ(ctx_did(&f), 7);
    set_did(&f, 8);
    w64(&f, VTD_CCMD_REG, ccmd(VTD_INV_GLOBAL, 0, 0, 0));
    CHECK_EQ(ctx_did(&f), 8);
    /* Device-selective with a function mask: FM=3 ignores devfn[2:0]. */
    set_did(&f, 9);
    w64(&f, VTD_CCMD_REG, ccmd(VTD_INV_DEVICE, 8, 0x000f, 3));
    CHECK_EQ(ctx_did(&f), 9);
    fx_fini(&f);
}

static void t_iotlb_handshake(void)
{
    struct fx f;
    fx_init(&f, NULL);
    w64(&f, IOTLB, iotlb_cmd(VTD_INV_GLOBAL, 0));
    uint64_t v = r64(&f, IOTLB);
    CHECK_EQ(v & VTD_IOTLB_IVT, 0);
    CHECK_EQ(VTD_IOTLB_IAIG(v), VTD_INV_GLOBAL);
    CHECK_EQ(VTD_IOTLB_IIRG(v), VTD_INV_GLOBAL);
    CHECK(v & VTD_IOTLB_DR);
    CHECK(v & VTD_IOTLB_DW);

    w64(&f, IOTLB, iotlb_cmd(VTD_INV_DOMAIN, 9));
    v = r64(&f, IOTLB);
    CHECK_EQ(v, (uint64_t)VTD_INV_DOMAIN << VTD_IOTLB_IIRG_SHIFT |
                (uint64_t)VTD_INV_DOMAIN << VTD_IOTLB_IAIG_SHIFT | VTD_IOTLB_DR |
                VTD_IOTLB_DW | 9ull << 32);

    w64(&f, IVA, 0x40000 | 18);                         /* AM = MAMV: fine */
    w64(&f, IOTLB, iotlb_cmd(VTD_INV_PAGE, 9));
    CHECK_EQ(VTD_IOTLB_IAIG(r64(&f, IOTLB)), VTD_INV_PAGE);
    w64(&f, IVA, 0x40000 | 19);                         /* AM > MAMV: refused */
    w64(&f, IOTLB, iotlb_cmd(VTD_INV_PAGE, 9));
    v = r64(&f, IOTLB);
    CHECK_EQ(v & VTD_IOTLB_IVT, 0);
    CHECK_EQ(VTD_IOTLB_IAIG(v), 0);
    w64(&f, IOTLB, iotlb_cmd(0, 9));                    /* IIRG 0: reserved */
    v = r64(&f, IOTLB);
    CHECK_EQ(v & VTD_IOTLB_IVT, 0);
    CHECK_EQ(VTD_IOTLB_IAIG(v), 0);
    /* Reserved bits and IAIG ignore writes. */
    w64(&f, IOTLB, ~VTD_IOTLB_IVT);
    CHECK_EQ(r64(&f, IOTLB), 0x3003ffff00000000ull);
    fx_fini(&f);
}

/* A fill as the translation path makes it: a lookup that misses, then the
 * insert (iotlb.c drops fills that no miss opened). */
static void insert(struct fx *f, uint16_t did, uint64_t addr)
{
    struct vtd_xlate x = { .pa = 0x200000 + addr, .shift = 12, .read = true, .write = true };
    struct vtd_xlate miss;
    CHECK(!vtd_iotlb_lookup(f->vtd, did, VTD_NO_PASID, addr, &miss));
    vtd_iotlb_insert(f->vtd, did, VTD_NO_PASID, addr, &x);
}

static bool cached(struct fx *f, uint16_t did, uint64_t addr)
{
    struct vtd_xlate x;
    if (!vtd_iotlb_lookup(f->vtd, did, VTD_NO_PASID, addr, &x))
        return false;
    CHECK_EQ(x.pa, 0x200000 + addr);
    return true;
}

static void t_iotlb_invalidates(void)
{
    struct fx f;
    fx_init(&f, NULL);
    for (unsigned i = 0; i < 5; i++)
        insert(&f, 5, 0x10000 + 0x1000 * i);
    insert(&f, 6, 0x10000);
    for (unsigned i = 0; i < 5; i++)
        CHECK(cached(&f, 5, 0x10000 + 0x1000 * i));

    /* PSI: 2^2 pages from 0x10000 (the address inside the range). */
    w64(&f, IVA, 0x12000 | 2);
    w64(&f, IOTLB, iotlb_cmd(VTD_INV_PAGE, 5));
    CHECK_EQ(VTD_IOTLB_IAIG(r64(&f, IOTLB)), VTD_INV_PAGE);
    for (unsigned i = 0; i < 4; i++)
        CHECK(!cached(&f, 5, 0x10000 + 0x1000 * i));
    CHECK(cached(&f, 5, 0x14000));
    CHECK(cached(&f, 6, 0x10000));

    insert(&f, 5, 0x10000);
    w64(&f, IOTLB, iotlb_cmd(VTD_INV_DOMAIN, 5));
    CHECK(!cached(&f, 5, 0x10000));
    CHECK(!cached(&f, 5, 0x14000));
    CHECK(cached(&f, 6, 0x10000));

    insert(&f, 5, 0x10000);
    w64(&f, IOTLB, iotlb_cmd(VTD_INV_GLOBAL, 0));
    CHECK(!cached(&f, 5, 0x10000));
    CHECK(!cached(&f, 6, 0x10000));
    fx_fini(&f);
}

/* A 64-bit register written as two halves: the command runs with the
 * high half. */
static void t_half_writes(void)
{
    struct fx f;
    fx_init(&f, NULL);
    build_context(&f, 5);
    w64(&f, VTD_RTADDR_REG, ROOT_PA);
    w32(&f, VTD_GCMD_REG, VTD_GCMD_SRTP);
    CHECK_EQ(ctx_did(&f), 5);
    set_did(&f, 6);

    uint64_t c = ccmd(VTD_INV_DEVICE, 5, 0x0008, 0);
    w32(&f, VTD_CCMD_REG, (uint32_t)c);
    CHECK_EQ(r64(&f, VTD_CCMD_REG), (uint32_t)c);
    CHECK_EQ(ctx_did(&f), 5);                           /* not yet */
    w32(&f, VTD_CCMD_REG + 4, (uint32_t)(c >> 32));
    uint64_t v = r64(&f, VTD_CCMD_REG);
    CHECK_EQ(v & VTD_CCMD_ICC, 0);
    CHECK_EQ(VTD_CCMD_CAIG(v), VTD_INV_DEVICE);
    CHECK_EQ(VTD_CCMD_SID(v), 0x0008);
    CHECK_EQ(ctx_did(&f), 6);

    /* IVA and IOTLB in halves. */
    insert(&f, 5, 0x7000);
    insert(&f, 5, 0x8000);
    w32(&f, IVA, 0x7000);
    w32(&f, IVA + 4, 0);
    uint64_t t = iotlb_cmd(VTD_INV_PAGE, 5);
    w32(&f, IOTLB, (uint32_t)t);
    CHECK(cached(&f, 5, 0x7000));
    w32(&f, IOTLB + 4, (uint32_t)(t >> 32));
    CHECK_EQ(VTD_IOTLB_IAIG(r64(&f, IOTLB)), VTD_INV_PAGE);
    CHECK(!cached(&f, 5, 0x7000));
    CHECK(cached(&f, 5, 0x8000));

    /* Address registers: each half lands in its own bits. */
    w32(&f, VTD_RTADDR_REG + 4, 0x12);
    CHECK_EQ(r64(&f, VTD_RTADDR_REG), 0x12ull << 32 | ROOT_PA);
    w32(&f, VTD_RTADDR_REG, 0x5000);
    CHECK_EQ(r64(&f, VTD_RTADDR_REG), 0x12ull << 32 | 0x5000);
    w32(&f, VTD_IQA_REG, 0x3000 | 1);
    w32(&f, VTD_IQA_REG + 4, 0x1);
    CHECK_EQ(r64(&f, VTD_IQA_REG), 0x100003001ull);
    w32(&f, VTD_IRTA_REG + 4, 0x2);
    w32(&f, VTD_IRTA_REG, IRT_PA | 7);
    CHECK_EQ(r64(&f, VTD_IRTA_REG), 0x2ull << 32 | IRT_PA | 7);

    /* IQT acts on its low half (Linux writes it with writel). */
    qi_put(&f, 0, wait_desc(0x55, false), STATUS_PA);
    qi_enable(&f);
    w32(&f, VTD_IQT_REG, 1 << 4);
    CHECK_EQ(r64(&f, VTD_IQH_REG), 1 << 4);
    CHECK_EQ(vtio_mem_read32(f.mem, STATUS_PA), 0x55);
    w32(&f, VTD_IQT_REG + 4, 0xffffffff);               /* reserved */
    CHECK_EQ(r64(&f, VTD_IQT_REG), 1 << 4);
    fx_fini(&f);
}

static void t_reg_inv_ignored_with_qi(void)
{
    struct fx f;
    fx_init(&f, NULL);
    build_context(&f, 5);
    w64(&f, VTD_RTADDR_REG, ROOT_PA);
    w32(&f, VTD_GCMD_REG, VTD_GCMD_SRTP);
    CHECK_EQ(ctx_did(&f), 5);
    insert(&f, 5, 0x1000);
    qi_enable(&f);

    set_did(&f, 6);
    w64(&f, VTD_CCMD_REG, ccmd(VTD_INV_GLOBAL, 0, 0, 0));
    uint64_t v = r64(&f, VTD_CCMD_REG);
    CHECK_EQ(v & VTD_CCMD_ICC, 0);                      /* no hang... */
    CHECK_EQ(VTD_CCMD_CAIG(v), 0);                      /* ...but not done */
    CHECK_EQ(ctx_did(&f), 5);

    w64(&f, IOTLB, iotlb_cmd(VTD_INV_GLOBAL, 0));
    v = r64(&f, IOTLB);
    CHECK_EQ(v & VTD_IOTLB_IVT, 0);
    CHECK_EQ(VTD_IOTLB_IAIG(v), 0);
    CHECK(cached(&f, 5, 0x1000));

    /* Once QI is off again, the registers work. */
    w32(&f, VTD_GCMD_REG, 0);
    CHECK_EQ(gsts(&f) & VTD_GSTS_QIES, 0);
    w64(&f, IOTLB, iotlb_cmd(VTD_INV_GLOBAL, 0));
    CHECK_EQ(VTD_IOTLB_IAIG(r64(&f, IOTLB)), VTD_INV_GLOBAL);
    CHECK(!cached(&f, 5, 0x1000));
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * Invalidation completion event: ICS.IWC, IECTL.IM/IP.
 */

static void t_iectl_ics(void)
{
    struct fx f;
    fx_init(&f, NULL);
    w32(&f, VTD_IEDATA_REG, 0x4021);
    w32(&f, VTD_IEADDR_REG, 0xfee01000);
    qi_put(&f, 0, wait_desc(1, true), STATUS_PA);
    qi_put(&f, 1, wait_desc(2, true), STATUS_PA);
    qi_enable(&f);

    /* Masked (reset value): IWC and IP, no message. */
    w32(&f, VTD_IQT_REG, 1 << 4);
    CHECK_EQ(r32(&f, VTD_ICS_REG), VTD_ICS_IWC);
    CHECK_EQ(r32(&f, VTD_IECTL_REG), VTD_xECTL_IM | VTD_xECTL_IP);
    CHECK_EQ(atomic_load(&f.irqs), 0);
    /* Unmasking sends the held message and clears IP. */
    w32(&f, VTD_IECTL_REG, 0);
    CHECK_EQ(atomic_load(&f.irqs), 1);
    CHECK_EQ(atomic_load(&f.irq_addr), 0xfee01000);
    CHECK_EQ(atomic_load(&f.irq_data), 0x4021);
    CHECK_EQ(r32(&f, VTD_IECTL_REG), 0);
    /* IWC is RW1C; writing 0 leaves it. */
    w32(&f, VTD_ICS_REG, 0);
    CHECK_EQ(r32(&f, VTD_ICS_REG), VTD_ICS_IWC);
    w32(&f, VTD_ICS_REG, VTD_ICS_IWC);
    CHECK_EQ(r32(&f, VTD_ICS_REG), 0);

    /* Unmasked: the next completion interrupts at once. */
    w32(&f, VTD_IQT_REG, 2 << 4);
    CHECK_EQ(r32(&f, VTD_ICS_REG), VTD_ICS_IWC);
    CHECK_EQ(atomic_load(&f.irqs), 2);
    CHECK_EQ(r32(&f, VTD_IECTL_REG), 0);
    w32(&f, VTD_ICS_REG, VTD_ICS_IWC);

    /* Masked, then serviced by clearing IWC: IP goes, nothing is sent. */
    w32(&f, VTD_IECTL_REG, VTD_xECTL_IM);
    qi_put(&f, 2, wait_desc(3, true), STATUS_PA);
    w32(&f, VTD_IQT_REG, 3 << 4);
    CHECK_EQ(r32(&f, VTD_IECTL_REG), VTD_xECTL_IM | VTD_xECTL_IP);
    w32(&f, VTD_ICS_REG, VTD_ICS_IWC);
    CHECK_EQ(r32(&f, VTD_IECTL_REG), VTD_xECTL_IM);
    w32(&f, VTD_IECTL_REG, 0);
    CHECK_EQ(atomic_load(&f.irqs), 2);
    fx_fini(&f);
}

static const struct vtio_test tests[] = {
    { "cap_48_default", "the default unit's CAP and ECAP, field by field and whole", t_cap_48_default },
    { "cap_39_minimal", "a 39-bit unit without superpages, 256 domains and one FRCD", t_cap_39_minimal },
    { "cap_57_scalable", "a 57-bit scalable unit with first-level, nested, CM, DT and 16 PASID bits", t_cap_57_scalable },
    { "cap_options", "QI/IR/PT options, scalable defaults, nested implying first level, CAP.ND", t_cap_options },
    { "create_errors", "every caps combination the spec forbids, and bad arguments, fail with -EINVAL", t_create_errors },
    { "reset_values", "every register reads its power-on value; unimplemented ones read 0", t_reset_values },
    { "reset_after_use", "vtio_vtd_reset brings a fully programmed unit back to power-on values", t_reset_after_use },
    { "ro_reserved_writes", "read-only and reserved bits ignore writes of all ones", t_ro_reserved_writes },
    { "access_sizes", "32-bit halves, 64-bit pairs, and bad sizes/alignments read 0 and drop writes", t_access_sizes },
    { "mmio_ops", "the register file works as an MMIO region of a vtio_mem", t_mmio_ops },
    { "stats_zero", "a new unit's statistics are all zero", t_stats_zero },
    { "gcmd_srtp", "SRTP latches RTADDR (with TTM) into the active root; GCMD reads 0", t_gcmd_srtp },
    { "gcmd_te_level", "TE is a level: set, repeat, clear", t_gcmd_te_level },
    { "gcmd_linux_pattern", "Linux's 'shadow | one-shot' writes keep the levels and do the command", t_gcmd_linux_pattern },
    { "gcmd_wbf_sfl", "WBF completes at once; SFL/EAFL do nothing without AFL", t_gcmd_wbf_sfl },
    { "gcmd_ir", "SIRTP latches IRTA, IRE needs IRTPS, CFI is a level; all ignored without ECAP.IR", t_gcmd_ir },
    { "gcmd_qie", "QIE enables the queue at IQH 0, disables when idle; ignored without ECAP.QI", t_gcmd_qie },
    { "gcmd_qie_disable_refused", "QIE=0 is ignored while IQH != IQT; clearing IQE resumes the queue", t_gcmd_qie_disable_refused },
    { "ccmd_handshake", "CCMD: ICC clears at once, CAIG reports the granularity, CIRG 0 is refused", t_ccmd_handshake },
    { "ccmd_invalidates", "device, domain and global CCMD invalidations drop cached context entries", t_ccmd_invalidates },
    { "iotlb_handshake", "IOTLB: IVT clears at once, IAIG reports, AM > MAMV and IIRG 0 are refused", t_iotlb_handshake },
    { "iotlb_invalidates", "page (with AM), domain and global IOTLB invalidation drop the right entries", t_iotlb_invalidates },
    { "half_writes", "64-bit registers in 32-bit halves: commands run with the high half, IQT with the low", t_half_writes },
    { "reg_inv_ignored_with_qi", "CCMD/IOTLB invalidations are refused (CAIG/IAIG 0) while QI is on", t_reg_inv_ignored_with_qi },
    { "iectl_ics", "invalidation completion: IWC RW1C, IECTL IM/IP, message on unmask, IP cleared by IWC", t_iectl_ics },
};

VTIO_TEST_MAIN(tests)
