/*
 * Tests of queued invalidation (src/hw/vtd/qi.c) through the unit's
 * registers, as a driver reaches it: IQA, IQT, GCMD.QIE, FSTS, ICS, IECTL,
 * IQER; descriptors written into machine memory.  Cache contents are
 * checked through the internal IOTLB / device-TLB interface, and the
 * invalidation-wait guarantee with device threads doing DMA through a
 * vtio_dma_port while the test unmaps.
 *
 * Memory map of every test: RAM [0, 16 MiB); queue at QUEUE; status words
 * at STATUS; table pool at POOL; data pages from DATA.
 */
#define _GNU_SOURCE
#include "hw/vtd/vtd_internal.h"
#include "vtd_builder.h"

#include <vtio/dma_port.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define MiB VTIO_MiB
#define QUEUE   0x100000ull
#define STATUS  0x180000ull
#define POOL    0x400000ull
#define DATA    0x800000ull
#define SID     0x0210
#define DID     3
#define FEADDR  0xfee01000u
#define FEDATA  0x41u
#define IEADDR  0xfee02000u
#define IEDATA  0x42u
#define MAMV    18          /* regs.c's CAP.MAMV */

/* ------------------------------------------------------------------------
 * Fixture: a unit whose interrupt messages are recorded.
 */

struct msg {
    uint64_t addr;
    uint32_t data;
};

struct fx {
    struct vtio_mem *mem;
    struct vtio_vtd *vtd;
    struct vtdb b;
    bool dw;                    /* 256-bit descriptors */
    uint64_t qsize;             /* bytes */
    uint64_t tail;              /* software's copy of IQT */
    _Atomic unsigned nmsg;
    struct msg msg[64];
};

static int dev_read(void *opaque, uint64_t pa, void *buf, size_t len)
{
    return vtio_mem_dev_read(((struct fx *)opaque)->mem, pa, buf, len);
}

static int dev_write(void *opaque, uint64_t pa, const void *buf, size_t len)
{
    return vtio_mem_dev_write(((struct fx *)opaque)->mem, pa, buf, len);
}

static void on_interrupt(void *opaque, uint64_t addr, uint32_t data)
{
    struct fx *f = opaque;
    unsigned i = atomic_load(&f->nmsg);
    f->msg[i % 64] = (struct msg){ addr, data };     /* the last 64 */
    atomic_store(&f->nmsg, i + 1);
}

static uint64_t rd(struct fx *f, uint64_t off, unsigned size)
{
    return vtio_vtd_reg_read(f->vtd, off, size);
}

static void wr(struct fx *f, uint64_t off, uint64_t v, unsigned size)
{
    vtio_vtd_reg_write(f->vtd, off, v, size);
}

/* A scalable-mode unit with device-TLBs (so every descriptor type exists),
 * fault and completion events unmasked; QI on with the queue format asked. */
static void fx_init(struct fx *f, bool dw, unsigned qs)
{
    memset(f, 0, sizeof(*f));
    f->mem = vtio_mem_create();
    CHECK(f->mem != NULL);
    CHECK_OK(vtio_mem_add_ram(f->mem, 0, 16 * MiB, "ram"));
    vtdb_init_mem(&f->b, f->mem, POOL, DATA - POOL);
    struct vtio_vtd_caps caps = { .scalable = true, .device_tlb = true };
    struct vtio_vtd_platform p = { .mem_read = dev_read, .mem_write = dev_write,
                                   .interrupt = on_interrupt, .opaque = f };
    CHECK_OK(vtio_vtd_create(&caps, &p, &f->vtd));
    wr(f, VTD_FEDATA_REG, FEDATA, 4);
    wr(f, VTD_FEADDR_REG, FEADDR, 4);
    wr(f, VTD_FECTL_REG, 0, 4);
    wr(f, VTD_IEDATA_REG, IEDATA, 4);
    wr(f, VTD_IEADDR_REG, IEADDR, 4);
    wr(f, VTD_IECTL_REG, 0, 4);
    f->dw = dw;
    f->qsize = 4096ull << qs;
    wr(f, VTD_IQT_REG, 0, 8);
    wr(f, VTD_IQA_REG, QUEUE | (dw ? VTD_IQA_DW : 0) | qs, 8);
    wr(f, VTD_GCMD_REG, VTD_GCMD_QIE, 4);
    CHECK(rd(f, VTD_GSTS_REG, 4) & VTD_GSTS_QIES);
    CHECK_EQ(rd(f, VTD_IQH_REG, 8), 0);
}

static void fx_fini(struct fx *f)
{
    vtio_vtd_destroy(f->vtd);
    vtio_mem_destroy(f->mem);
}

/* ------------------------------------------------------------------------
 * Descriptors and the queue.
 */

struct desc {
    uint64_t q[4];
};

static struct desc d_wait(uint64_t flags, uint32_t data, uint64_t addr)
{
    return (struct desc){ { VTD_INV_DESC_WAIT | flags | (uint64_t)data << 32, addr } };
}

/* A wait with a status write of data to status word i. */
static struct desc d_wait_sw(unsigned i, uint32_t data)
{
    return d_wait(VTD_INV_WAIT_SW, data, STATUS + 4 * i);
}

static struct desc d_cc(unsigned g, uint16_t did, uint16_t sid, unsigned fm)
{
    return (struct desc){ { VTD_INV_DESC_CC | VTD_MAKE(g, 5, 4) | VTD_MAKE(did, 31, 16) |
                            VTD_MAKE(sid, 47, 32) | VTD_MAKE(fm, 49, 48), 0 } };
}

static struct desc d_iotlb(unsigned g, uint16_t did, uint64_t addr, unsigned am, bool ih)
{
    return (struct desc){ { VTD_INV_DESC_IOTLB | VTD_MAKE(g, 5, 4) | VTD_INV_IOTLB_DW |
                            VTD_INV_IOTLB_DR | VTD_MAKE(did, 31, 16),
                            addr | (ih ? VTD_INV_IH : 0) | am } };
}

static struct desc d_piotlb(unsigned g, uint16_t did, uint32_t pasid, uint64_t addr,
                            unsigned am)
{
    return (struct desc){ { VTD_INV_DESC_PIOTLB | VTD_MAKE(g, 5, 4) | VTD_MAKE(did, 31, 16) |
                            VTD_MAKE(pasid, 51, 32), addr | am } };
}

static struct desc d_devtlb(uint16_t sid, uint64_t q1)
{
    /* PFSID and MIP filled as Linux does for a VF: not reserved. */
    return (struct desc){ { VTD_INV_DESC_DEVTLB | VTD_MAKE(0x5, 15, 12) | VTD_MAKE(4, 20, 16) |
                            VTD_MAKE(sid, 47, 32) | VTD_MAKE(0x123, 63, 52), q1 } };
}

static struct desc d_pdevtlb(uint16_t sid, uint32_t pasid, uint64_t q1)
{
    return (struct desc){ { VTD_INV_DESC_PDEVTLB | VTD_MAKE(sid, 31, 16) |
                            VTD_MAKE(pasid, 51, 32), q1 } };
}

static struct desc d_iec(bool index, unsigned im, uint16_t idx)
{
    return (struct desc){ { VTD_INV_DESC_IEC | (index ? VTD_INV_IEC_G : 0) |
                            VTD_MAKE(im, 31, 27) | VTD_MAKE(idx, 47, 32), 0 } };
}

static struct desc d_pc(unsigned g, uint16_t did, uint32_t pasid)
{
    return (struct desc){ { VTD_INV_DESC_PC | VTD_MAKE(g, 5, 4) | VTD_MAKE(did, 31, 16) |
                            VTD_MAKE(pasid, 51, 32), 0 } };
}

static struct desc d_pgrp(void)
{
    return (struct desc){ { VTD_INV_DESC_PGRP | VTD_INV_PGRP_PP | VTD_MAKE(1, 15, 12) |
                            VTD_MAKE(SID, 31, 16) | VTD_MAKE(5, 51, 32),
                            VTD_BIT(2) | VTD_MAKE(17, 11, 3), 0xdead, 0xbeef } };
}

static unsigned dsize(struct fx *f)
{
    return f->dw ? 32 : 16;
}

/* Writes descriptors at the software tail (wrapping), then IQT once. */
static void submit(struct fx *f, const struct desc *d, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        vtio_mem_write(f->mem, QUEUE + f->tail, d[i].q, dsize(f));
        f->tail = (f->tail + dsize(f)) % f->qsize;
    }
    wr(f, VTD_IQT_REG, f->tail, 8);
}

static uint32_t status(struct fx *f, unsigned i)
{
    return vtio_mem_read32(f->mem, STATUS + 4 * i);
}

static void clear_status(struct fx *f)
{
    vtio_mem_set(f->mem, STATUS, 0, 4096);
}

static uint32_t fsts(struct fx *f)
{
    return (uint32_t)rd(f, VTD_FSTS_REG, 4);
}

/* The queue went idle with no error. */
static void check_idle(struct fx *f)
{
    CHECK_EQ(fsts(f) & (VTD_FSTS_IQE | VTD_FSTS_ITE | VTD_FSTS_ICE), 0);
    CHECK_EQ(rd(f, VTD_IQH_REG, 8), f->tail);
}

/* A fill the way translate.c makes one. */
static void fill(struct vtio_vtd *vtd, uint16_t did, uint32_t pasid, uint64_t addr,
                 uint64_t pa, unsigned shift)
{
    struct vtd_xlate x = { .pa = pa, .shift = (uint8_t)shift, .read = true, .write = true }, out;
    CHECK(!vtd_iotlb_lookup(vtd, did, pasid, addr, &out));
    vtd_iotlb_insert(vtd, did, pasid, addr, &x);
}

static bool cached(struct vtio_vtd *vtd, uint16_t did, uint32_t pasid, uint64_t addr)
{
    struct vtd_xlate out;
    return vtd_iotlb_lookup(vtd, did, pasid, addr, &out);
}

static void devfill(struct vtio_vtd *vtd, uint16_t sid, uint32_t pasid, uint64_t addr)
{
    struct vtd_xlate x = { .pa = addr, .shift = 12, .read = true, .write = true }, out;
    CHECK(!vtd_devtlb_lookup(vtd, sid, pasid, addr, &out));
    vtd_devtlb_insert(vtd, sid, pasid, addr, &x);
}

static bool devcached(struct vtio_vtd *vtd, uint16_t sid, uint32_t pasid, uint64_t addr)
{
    struct vtd_xlate out;
    return vtd_devtlb_lookup(vtd, sid, pasid, addr, &out);
}

static struct vtio_vtd_stats stats(struct fx *f)
{
    struct vtio_vtd_stats st;
    vtio_vtd_get_stats(f->vtd, &st);
    return st;
}

/* ------------------------------------------------------------------------
 * Wait descriptors.
 */

static void t_wait_status(void)
{
    for (int dw = 0; dw <= 1; dw++) {
        struct fx f;
        fx_init(&f, dw, 0);
        struct desc d[3] = { d_wait_sw(0, 0x11111111), d_wait(VTD_INV_WAIT_SW | VTD_INV_WAIT_FN,
                                                              0xcafef00d, STATUS + 8),
                             d_wait(0, 0, 0) };         /* no SW, no IF: a bare fence */
        submit(&f, d, 3);
        CHECK_EQ(status(&f, 0), 0x11111111);
        CHECK_EQ(status(&f, 1), 0);
        CHECK_EQ(status(&f, 2), 0xcafef00d);
        check_idle(&f);
        CHECK_EQ(f.tail, 3 * dsize(&f));
        CHECK_EQ(rd(&f, VTD_ICS_REG, 4), 0);
        CHECK_EQ(atomic_load(&f.nmsg), 0);
        struct vtio_vtd_stats st = stats(&f);
        CHECK_EQ(st.qi_descriptors, 3);
        CHECK_EQ(st.invalidation_waits, 3);
        fx_fini(&f);
    }
}

static void t_wait_interrupt(void)
{
    struct fx f;
    fx_init(&f, false, 0);
    /* Unmasked: IWC and the completion message, once. */
    struct desc d = d_wait(VTD_INV_WAIT_IF, 0, 0);
    submit(&f, &d, 1);
    CHECK_EQ(rd(&f, VTD_ICS_REG, 4), VTD_ICS_IWC);
    CHECK_EQ(atomic_load(&f.nmsg), 1);
    CHECK_EQ(f.msg[0].addr, IEADDR);
    CHECK_EQ(f.msg[0].data, IEDATA);
    CHECK_EQ(rd(&f, VTD_IECTL_REG, 4) & VTD_xECTL_IP, 0);
    /* IWC still set: no second event. */
    submit(&f, &d, 1);
    CHECK_EQ(atomic_load(&f.nmsg), 1);
    /* Serviced: the next one interrupts again; SW and IF together. */
    wr(&f, VTD_ICS_REG, VTD_ICS_IWC, 4);
    CHECK_EQ(rd(&f, VTD_ICS_REG, 4), 0);
    struct desc both = d_wait(VTD_INV_WAIT_IF | VTD_INV_WAIT_SW, 7, STATUS);
    submit(&f, &both, 1);
    CHECK_EQ(status(&f, 0), 7);
    CHECK_EQ(atomic_load(&f.nmsg), 2);
    wr(&f, VTD_ICS_REG, VTD_ICS_IWC, 4);
    /* Masked: IWC and IECTL.IP, no message until IM is cleared. */
    wr(&f, VTD_IECTL_REG, VTD_xECTL_IM, 4);
    submit(&f, &d, 1);
    CHECK_EQ(rd(&f, VTD_ICS_REG, 4), VTD_ICS_IWC);
    CHECK_EQ(rd(&f, VTD_IECTL_REG, 4), VTD_xECTL_IM | VTD_xECTL_IP);
    CHECK_EQ(atomic_load(&f.nmsg), 2);
    wr(&f, VTD_IECTL_REG, 0, 4);
    CHECK_EQ(atomic_load(&f.nmsg), 3);
    CHECK_EQ(f.msg[2].data, IEDATA);
    CHECK_EQ(rd(&f, VTD_IECTL_REG, 4), 0);
    /* Masked, then serviced before unmasking: the held event is void. */
    wr(&f, VTD_ICS_REG, VTD_ICS_IWC, 4);
    wr(&f, VTD_IECTL_REG, VTD_xECTL_IM, 4);
    submit(&f, &d, 1);
    wr(&f, VTD_ICS_REG, VTD_ICS_IWC, 4);
    CHECK_EQ(rd(&f, VTD_IECTL_REG, 4), VTD_xECTL_IM);
    wr(&f, VTD_IECTL_REG, 0, 4);
    CHECK_EQ(atomic_load(&f.nmsg), 3);
    check_idle(&f);
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * Each descriptor type, in a 128-bit and a 256-bit queue.
 */

static void run_iotlb_descs(struct fx *f)
{
    struct vtio_vtd *v = f->vtd;
    for (uint64_t a = 0; a < 0x8000; a += 0x1000) {
        fill(v, 1, VTD_NO_PASID, a, 0x100000 + a, 12);
        fill(v, 2, VTD_NO_PASID, a, 0x200000 + a, 12);
    }
    fill(v, 1, VTD_NO_PASID, 0x400000, 0x600000, 21);
    /* Page-selective: 2 pages at 0x2000 (address given unaligned). */
    struct desc d[2] = { d_iotlb(VTD_INV_PAGE, 1, 0x3000, 1, true), d_wait_sw(0, 1) };
    submit(f, d, 2);
    CHECK_EQ(status(f, 0), 1);
    CHECK(cached(v, 1, VTD_NO_PASID, 0x1000));
    CHECK(!cached(v, 1, VTD_NO_PASID, 0x2000));
    CHECK(!cached(v, 1, VTD_NO_PASID, 0x3000));
    CHECK(cached(v, 1, VTD_NO_PASID, 0x4000));
    CHECK(cached(v, 2, VTD_NO_PASID, 0x2000));
    /* A page inside the superpage drops it. */
    d[0] = d_iotlb(VTD_INV_PAGE, 1, 0x5ff000, 0, false);
    submit(f, d, 1);
    CHECK(!cached(v, 1, VTD_NO_PASID, 0x400000));
    /* Domain, then global. */
    d[0] = d_iotlb(VTD_INV_DOMAIN, 2, 0, 0, false);
    submit(f, d, 1);
    CHECK(!cached(v, 2, VTD_NO_PASID, 0x5000));
    CHECK(cached(v, 1, VTD_NO_PASID, 0x5000));
    d[0] = d_iotlb(VTD_INV_GLOBAL, 0, 0, 0, false);
    submit(f, d, 1);
    CHECK(!cached(v, 1, VTD_NO_PASID, 0x5000));
    check_idle(f);
}

static void run_cc_desc(struct fx *f, bool scalable)
{
    /* A device with a context; a translation caches it.  Then the context
     * entry goes away in memory: after the invalidations, faults 02h. */
    uint64_t root = vtdb_page(&f->b), sl = vtdb_page(&f->b), ce;
    if (scalable) {
        uint64_t pdir = vtdb_page(&f->b);
        ce = vtdb_sm_ctx(&f->b, root, SID, pdir, 0, 0, 0);
        vtdb_pasid(&f->b, pdir, 0, &(struct vtdb_pasid_entry){ .pgtt = VTD_PGTT_SL, .aw = 2,
                                                               .did = DID, .ssptptr = sl });
    } else {
        ce = vtdb_ctx_legacy(&f->b, root, SID, VTD_CTX_TT_MULTI_LEVEL, 2, DID, sl, false);
    }
    vtdb_sl_map(&f->b, sl, 4, 0x10000, DATA, 12, VTD_SL_R | VTD_SL_W);
    CHECK(vtdb_enable(f->vtd, root, scalable));
    struct vtio_vtd_req req = { .sid = SID, .addr = 0x10010 };
    struct vtio_vtd_resp resp;
    CHECK_OK(vtio_vtd_translate(f->vtd, &req, &resp));
    CHECK_EQ(resp.pa, DATA + 0x10);
    uint64_t misses = stats(f).context_cache_misses;
    vtdb_w64(&f->b, ce, 0);
    struct desc d[4] = { d_cc(VTD_INV_DEVICE, DID, SID, 0),
                         scalable ? d_pc(VTD_INV_PC_G_DOMAIN, DID, 0)
                                  : d_cc(VTD_INV_DOMAIN, DID, 0, 0),
                         d_iotlb(VTD_INV_DOMAIN, DID, 0, 0, false), d_wait_sw(1, 2) };
    submit(f, d, 4);
    CHECK_EQ(status(f, 1), 2);
    CHECK_ERR(vtio_vtd_translate(f->vtd, &req, &resp), -EFAULT);
    CHECK_EQ(resp.fault, VTD_FR_CONTEXT_ENTRY_P);
    CHECK_GT(stats(f).context_cache_misses, misses);
    d[0] = d_cc(VTD_INV_GLOBAL, 0, 0, 0);
    d[1] = d_cc(VTD_INV_DEVICE, 0, SID & ~7, 3);
    submit(f, d, 2);
    check_idle(f);
}

static void run_devtlb_descs(struct fx *f)
{
    struct vtio_vtd *v = f->vtd;
    for (uint64_t a = 0; a < 0x10000; a += 0x1000)
        devfill(v, SID, VTD_NO_PASID, a);
    /* S = 0: one page. */
    struct desc d[2] = { d_devtlb(SID, 0x3000), d_wait_sw(0, 5) };
    submit(f, d, 2);
    CHECK_EQ(status(f, 0), 5);
    CHECK(!devcached(v, SID, VTD_NO_PASID, 0x3000));
    CHECK(devcached(v, SID, VTD_NO_PASID, 0x2000));
    CHECK(devcached(v, SID, VTD_NO_PASID, 0x4000));
    /* S = 1, address 0x8000 | 0x3000 (bits 12, 13 set, 14 clear): 32 KiB
     * from 0x8000. */
    d[0] = d_devtlb(SID, 0xb000 | VTD_INV_DEV_S);
    submit(f, d, 1);
    CHECK(devcached(v, SID, VTD_NO_PASID, 0x7000));
    for (uint64_t a = 0x8000; a < 0x10000; a += 0x1000)
        CHECK(!devcached(v, SID, VTD_NO_PASID, a));
    /* All ones: everything (as Linux flushes a whole device). */
    d[0] = d_devtlb(SID, 0x7ffffffffffff000ull | VTD_INV_DEV_S);
    submit(f, d, 1);
    CHECK(!devcached(v, SID, VTD_NO_PASID, 0x0));
    check_idle(f);
}

static void run_iec_desc(struct fx *f)
{
    struct desc d[3] = { d_iec(false, 0, 0), d_iec(true, 4, 0x20), d_wait_sw(0, 9) };
    submit(f, d, 3);
    CHECK_EQ(status(f, 0), 9);
    check_idle(f);
}

static void t_types_128(void)
{
    struct fx f;
    fx_init(&f, false, 0);
    run_iotlb_descs(&f);
    run_devtlb_descs(&f);
    run_iec_desc(&f);
    run_cc_desc(&f, false);
    fx_fini(&f);
}

static void t_types_256(void)
{
    struct fx f;
    fx_init(&f, true, 1);
    run_iotlb_descs(&f);
    run_devtlb_descs(&f);
    run_iec_desc(&f);
    run_cc_desc(&f, true);

    /* PASID-based IOTLB: all of a PASID, then two pages of another. */
    struct vtio_vtd *v = f.vtd;
    for (uint64_t a = 0; a < 0x4000; a += 0x1000) {
        fill(v, 1, 5, a, a, 12);
        fill(v, 1, 6, a, a, 12);
        fill(v, 2, 5, a, a, 12);
    }
    struct desc d[3] = { d_piotlb(VTD_INV_PIOTLB_G_PASID, 1, 5, 0, 0),
                         d_piotlb(VTD_INV_PIOTLB_G_PAGE, 1, 6, 0x2000, 1), d_wait_sw(0, 3) };
    submit(&f, d, 3);
    CHECK_EQ(status(&f, 0), 3);
    CHECK(!cached(v, 1, 5, 0x0));
    CHECK(!cached(v, 1, 5, 0x3000));
    CHECK(cached(v, 1, 6, 0x1000));
    CHECK(!cached(v, 1, 6, 0x2000));
    CHECK(!cached(v, 1, 6, 0x3000));
    CHECK(cached(v, 2, 5, 0x0));
    /* PASID-based device-TLB: one PASID's page; then G: every PASID. */
    devfill(v, SID, 5, 0x1000);
    devfill(v, SID, 6, 0x1000);
    d[0] = d_pdevtlb(SID, 5, 0x1000);
    submit(&f, d, 1);
    CHECK(!devcached(v, SID, 5, 0x1000));
    CHECK(devcached(v, SID, 6, 0x1000));
    d[0] = d_pdevtlb(SID, 5, 0x1000 | VTD_INV_PDEV_G | VTD_INV_PDEV_S);   /* 8 KiB */
    submit(&f, d, 1);
    CHECK(!devcached(v, SID, 6, 0x1000));
    /* PASID cache (every granularity) and a page-group response (its
     * private data in qw2/qw3 is not reserved). */
    struct desc p[5] = { d_pc(VTD_INV_PC_G_DOMAIN, DID, 0), d_pc(VTD_INV_PC_G_PASID, DID, 7),
                         d_pc(VTD_INV_PC_G_GLOBAL, 0, 0), d_pgrp(), d_wait_sw(2, 4) };
    submit(&f, p, 5);
    CHECK_EQ(status(&f, 2), 4);
    check_idle(&f);
    fx_fini(&f);
}

/* The tail wraps around the end of the queue, many times. */
static void t_wraparound(void)
{
    const struct { bool dw; unsigned qs; } cfg[3] = { { false, 0 }, { true, 0 }, { true, 1 } };
    for (unsigned c = 0; c < 3; c++) {
        struct fx f;
        fx_init(&f, cfg[c].dw, cfg[c].qs);
        unsigned slots = (unsigned)(f.qsize / dsize(&f)), total = 0;
        struct desc d[128];
        for (unsigned round = 0; round < 9; round++) {
            clear_status(&f);
            unsigned n = 37 + round * 11;               /* <= 125 < slots: never full */
            for (unsigned i = 0; i < n; i++)
                d[i] = d_wait_sw(i, round * 1000 + i + 1);
            submit(&f, d, n);
            for (unsigned i = 0; i < n; i++)
                CHECK_EQ(status(&f, i), round * 1000 + i + 1);
            check_idle(&f);
            total += n;
        }
        CHECK_GT(total, 2 * slots);
        CHECK_EQ(stats(&f).qi_descriptors, total);
        fx_fini(&f);
    }
}

/* ------------------------------------------------------------------------
 * Errors.
 */

struct bad_case {
    const char *what;
    struct desc d;
    unsigned iqei;
};

/* good wait, bad descriptor, good wait: the first completes, the queue
 * stops at the bad one with IQE (and one fault event), the last waits.
 * Then, as Linux does, the bad slot is overwritten with a wait and IQE
 * cleared: the queue resumes. */
static void check_bad(struct fx *f, const struct bad_case *c)
{
    clear_status(f);
    unsigned nmsg = atomic_load(&f->nmsg);
    uint64_t bad_at = (f->tail + dsize(f)) % f->qsize;
    struct desc d[3] = { d_wait_sw(0, 1), c->d, d_wait_sw(1, 2) };
    submit(f, d, 3);
    CHECKF(status(f, 0) == 1, "%s: the wait before did not complete", c->what);
    CHECKF(status(f, 1) == 0, "%s: the wait after completed", c->what);
    CHECKF(fsts(f) & VTD_FSTS_IQE, "%s: no IQE", c->what);
    CHECKF(rd(f, VTD_IQH_REG, 8) == bad_at, "%s: IQH %#llx, want %#llx", c->what,
           (unsigned long long)rd(f, VTD_IQH_REG, 8), (unsigned long long)bad_at);
    CHECKF(VTD_IQER_IQEI(rd(f, VTD_IQER_REG, 8)) == c->iqei, "%s: IQEI %llu, want %u",
           c->what, (unsigned long long)VTD_IQER_IQEI(rd(f, VTD_IQER_REG, 8)), c->iqei);
    CHECKF(atomic_load(&f->nmsg) == nmsg + 1, "%s: %u fault events", c->what,
           atomic_load(&f->nmsg) - nmsg);
    CHECK_EQ(f->msg[nmsg % 64].addr, FEADDR);
    CHECK_EQ(f->msg[nmsg % 64].data, FEDATA);
    /* Another tail write while IQE is set fetches nothing. */
    wr(f, VTD_IQT_REG, f->tail, 8);
    CHECK_EQ(rd(f, VTD_IQH_REG, 8), bad_at);
    struct desc fix = d_wait_sw(2, 3);
    vtio_mem_write(f->mem, QUEUE + bad_at, fix.q, dsize(f));
    wr(f, VTD_FSTS_REG, VTD_FSTS_IQE, 4);
    CHECKF(status(f, 2) == 3 && status(f, 1) == 2, "%s: no recovery", c->what);
    check_idle(f);
}

#define RSVD VTD_IQEI_RSVD
#define BIT VTD_BIT

static void t_iqe_128(void)
{
    struct fx f;
    fx_init(&f, false, 0);
    struct desc w = d_wait_sw(3, 0);
    const struct bad_case cases[] = {
        { "type 0", { { 0, 0 } }, VTD_IQEI_INV_TYPE },
        { "type 0xa", { { 0xa, 0 } }, VTD_IQEI_INV_TYPE },
        { "type 0x12 (bit 9)", { { 0x2 | BIT(9) | VTD_MAKE(1, 5, 4), 0 } }, VTD_IQEI_INV_TYPE },
        { "PASID IOTLB in 128-bit", d_piotlb(VTD_INV_PIOTLB_G_PASID, 1, 1, 0, 0), VTD_IQEI_DW_MISMATCH },
        { "PASID cache in 128-bit", d_pc(VTD_INV_PC_G_GLOBAL, 0, 0), VTD_IQEI_DW_MISMATCH },
        { "PASID dev-TLB in 128-bit", d_pdevtlb(SID, 1, 0), VTD_IQEI_DW_MISMATCH },
        { "page group in 128-bit", d_pgrp(), VTD_IQEI_DW_MISMATCH },
        { "CC bit 6", { { d_cc(VTD_INV_GLOBAL, 0, 0, 0).q[0] | BIT(6), 0 } }, RSVD },
        { "CC bit 50", { { d_cc(VTD_INV_GLOBAL, 0, 0, 0).q[0] | BIT(50), 0 } }, RSVD },
        { "CC qw1", { { d_cc(VTD_INV_GLOBAL, 0, 0, 0).q[0], 1 } }, RSVD },
        { "CC G=0", d_cc(0, 0, 0, 0), RSVD },
        { "IOTLB bit 8", { { d_iotlb(VTD_INV_GLOBAL, 0, 0, 0, false).q[0] | BIT(8), 0 } }, RSVD },
        { "IOTLB bit 32", { { d_iotlb(VTD_INV_GLOBAL, 0, 0, 0, false).q[0] | BIT(32), 0 } }, RSVD },
        { "IOTLB qw1 bit 7", { { d_iotlb(VTD_INV_PAGE, 1, 0, 0, false).q[0], BIT(7) } }, RSVD },
        { "IOTLB G=0", d_iotlb(0, 1, 0, 0, false), RSVD },
        { "IOTLB AM > MAMV", d_iotlb(VTD_INV_PAGE, 1, 0, MAMV + 1, false), RSVD },
        { "dev-TLB bit 4", { { d_devtlb(SID, 0).q[0] | BIT(4), 0 } }, RSVD },
        { "dev-TLB bit 48", { { d_devtlb(SID, 0).q[0] | BIT(48), 0 } }, RSVD },
        { "dev-TLB qw1 bit 1", d_devtlb(SID, BIT(1)), RSVD },
        { "IEC bit 5", { { d_iec(false, 0, 0).q[0] | BIT(5), 0 } }, RSVD },
        { "IEC qw1", { { d_iec(false, 0, 0).q[0], 4 } }, RSVD },
        { "IEC IM > MHMV", d_iec(true, 16, 0), RSVD },
        { "wait bit 8", { { w.q[0] | BIT(8), w.q[1] } }, RSVD },
        { "wait bit 12", { { w.q[0] | BIT(12), w.q[1] } }, RSVD },
        { "wait PD", { { w.q[0] | VTD_INV_WAIT_PD, w.q[1] } }, RSVD },
        { "wait qw1 bit 1", { { w.q[0], w.q[1] | 2 } }, RSVD },
        { "wait status address outside RAM", d_wait_sw(0, 1), VTD_IQEI_NONE },
    };
    size_t n = sizeof(cases) / sizeof(cases[0]);
    struct bad_case last = cases[n - 1];
    last.d.q[1] = 0x40000000;                   /* a hole */
    /* Four passes put the bad descriptors at many offsets, across the
     * wrap of the 256-slot queue. */
    for (unsigned pass = 0; pass < 4; pass++) {
        for (size_t i = 0; i + 1 < n; i++)
            check_bad(&f, &cases[i]);
        check_bad(&f, &last);
    }
    CHECK_GT(4 * 3 * n * 16, f.qsize);
    fx_fini(&f);
}

static void t_iqe_256(void)
{
    struct fx f;
    fx_init(&f, true, 0);
    struct desc up = d_iotlb(VTD_INV_GLOBAL, 0, 0, 0, false), cc = d_cc(VTD_INV_GLOBAL, 0, 0, 0);
    up.q[2] = 1;
    cc.q[3] = BIT(63);
    const struct bad_case cases[] = {
        { "type 0xb", { { 0xb, 0 } }, VTD_IQEI_INV_TYPE },
        { "IOTLB qw2", up, RSVD },
        { "CC qw3", cc, RSVD },
        { "PIOTLB bit 6", { { d_piotlb(VTD_INV_PIOTLB_G_PASID, 1, 1, 0, 0).q[0] | BIT(6), 0 } }, RSVD },
        { "PIOTLB bit 52", { { d_piotlb(VTD_INV_PIOTLB_G_PASID, 1, 1, 0, 0).q[0] | BIT(52), 0 } }, RSVD },
        { "PIOTLB qw1 bit 8", d_piotlb(VTD_INV_PIOTLB_G_PAGE, 1, 1, BIT(8), 0), RSVD },
        { "PIOTLB G=0", d_piotlb(0, 1, 1, 0, 0), RSVD },
        { "PIOTLB G=1", d_piotlb(1, 1, 1, 0, 0), RSVD },
        { "PIOTLB AM > MAMV", d_piotlb(VTD_INV_PIOTLB_G_PAGE, 1, 1, 0, MAMV + 1), RSVD },
        { "PC bit 7", { { d_pc(VTD_INV_PC_G_GLOBAL, 0, 0).q[0] | BIT(7), 0 } }, RSVD },
        { "PC G=2", d_pc(2, 0, 0), RSVD },
        { "PC qw1", { { d_pc(VTD_INV_PC_G_GLOBAL, 0, 0).q[0], BIT(12) } }, RSVD },
        { "PASID dev-TLB qw1 bit 1", d_pdevtlb(SID, 1, BIT(1)), RSVD },
        { "page group bit 5", { { d_pgrp().q[0] | BIT(5), d_pgrp().q[1] } }, RSVD },
        { "page group qw1 bit 12", { { d_pgrp().q[0], d_pgrp().q[1] | BIT(12) } }, RSVD },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_bad(&f, &cases[i]);
    fx_fini(&f);
}

/* A tail software cannot mean: IQE, IQH unmoved; fixed by a good tail. */
static void check_bad_tail(struct fx *f, uint64_t tail, unsigned iqei)
{
    clear_status(f);
    struct desc d = d_wait_sw(0, 6);
    vtio_mem_write(f->mem, QUEUE + f->tail, d.q, dsize(f));
    uint64_t head = rd(f, VTD_IQH_REG, 8);
    wr(f, VTD_IQT_REG, tail, 8);
    CHECK(fsts(f) & VTD_FSTS_IQE);
    CHECK_EQ(VTD_IQER_IQEI(rd(f, VTD_IQER_REG, 8)), iqei);
    CHECK_EQ(rd(f, VTD_IQH_REG, 8), head);
    CHECK_EQ(status(f, 0), 0);
    f->tail = (f->tail + dsize(f)) % f->qsize;
    wr(f, VTD_IQT_REG, f->tail, 8);             /* still halted */
    CHECK_EQ(status(f, 0), 0);
    wr(f, VTD_FSTS_REG, VTD_FSTS_IQE, 4);
    CHECK_EQ(status(f, 0), 6);
    check_idle(f);
}

static void t_iqe_tail(void)
{
    struct fx f;
    fx_init(&f, false, 0);                      /* 4 KiB: 256 x 16 bytes */
    check_bad_tail(&f, 0x1000, VTD_IQEI_BAD_TAIL);
    check_bad_tail(&f, 0x7fff0, VTD_IQEI_BAD_TAIL);
    fx_fini(&f);
    fx_init(&f, true, 1);                       /* 8 KiB: 256 x 32 bytes */
    check_bad_tail(&f, 0x30, VTD_IQEI_DW_MISMATCH);
    check_bad_tail(&f, 0x2000, VTD_IQEI_BAD_TAIL);
    fx_fini(&f);
}

/* A device-TLB invalidation nobody answers: ITE, the source in ITESID, the
 * next wait aborted (no status, IQH past it), nothing more until software
 * clears ITE.  IQE's event rule applies: one fault event. */
static void t_ite(void)
{
    for (int dw = 0; dw <= 1; dw++) {
        struct fx f;
        fx_init(&f, dw, 0);
        vtd_devtlb_attach(f.vtd, SID);
        struct desc d[5] = { d_devtlb(SID, 0), d_devtlb(0x0abc, 0),
                             d_iotlb(VTD_INV_GLOBAL, 0, 0, 0, false), d_wait_sw(0, 1),
                             d_wait_sw(1, 2) };
        fill(f.vtd, 1, VTD_NO_PASID, 0x1000, 0x1000, 12);
        submit(&f, d, 5);
        CHECK(fsts(&f) & VTD_FSTS_ITE);
        CHECK_EQ(fsts(&f) & VTD_FSTS_IQE, 0);
        CHECK_EQ(VTD_IQER_ITESID(rd(&f, VTD_IQER_REG, 8)), 0x0abc);
        CHECK(!cached(f.vtd, 1, VTD_NO_PASID, 0x1000));     /* went on to the IOTLB one */
        CHECK_EQ(status(&f, 0), 0);                         /* aborted */
        CHECK_EQ(status(&f, 1), 0);                         /* not fetched */
        CHECK_EQ(rd(&f, VTD_IQH_REG, 8), 4 * dsize(&f));
        CHECK_EQ(atomic_load(&f.nmsg), 1);
        CHECK_EQ(f.msg[0].addr, FEADDR);
        wr(&f, VTD_FSTS_REG, VTD_FSTS_ITE, 4);
        CHECK_EQ(status(&f, 1), 2);
        check_idle(&f);
        fx_fini(&f);
    }
}

/* ------------------------------------------------------------------------
 * The guarantee: once a wait's status write is visible, no DMA uses a
 * translation the descriptors before it removed, including DMA in flight.
 *
 * Device threads write their sequence numbers through IOVA page V, mapped
 * to a fresh "old page" each round, 2 KiB per access (a wide window
 * between translation and copy).  The test thread clears the PTE, queues
 * an IOTLB invalidation and a wait, and once the status is visible takes a
 * snapshot of the old page: it must never change again.
 */

#define G_IOVA   0x40000000ull
#define G_DEVS   2
#define G_ROUNDS 40
#define G_SPAN   2048
#define G_CHURN  50

struct gdev {
    struct vtio_dma_port *port;
    unsigned idx;
    _Atomic bool *stop;
    _Atomic uint64_t done, faulted;
};

static void *gdev_main(void *arg)
{
    struct gdev *g = arg;
    uint64_t buf[G_SPAN / 8];
    for (uint64_t seq = 1; !atomic_load_explicit(g->stop, memory_order_acquire); seq++) {
        for (unsigned i = 0; i < G_SPAN / 8; i++)
            buf[i] = seq;
        int r = vtio_dma_write(g->port, G_IOVA + g->idx * G_SPAN, buf, G_SPAN);
        if (r == 0)
            atomic_fetch_add_explicit(&g->done, 1, memory_order_relaxed);
        else
            atomic_fetch_add_explicit(&g->faulted, 1, memory_order_relaxed);
    }
    return NULL;
}

static uint64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000 + (uint64_t)t.tv_nsec / 1000;
}

/* Yields until *a + *b >= target or ms have passed; whether it got there. */
static bool wait_count(_Atomic uint64_t *a, _Atomic uint64_t *b, uint64_t target, unsigned ms)
{
    uint64_t t0 = now_us();
    while (atomic_load(a) + atomic_load(b) < target) {
        if (now_us() - t0 > ms * 1000ull)
            return false;
        sched_yield();
    }
    return true;
}

static void t_guarantee(void)
{
    struct fx f;
    fx_init(&f, false, 0);
    uint64_t root = vtdb_page(&f.b), sl = vtdb_page(&f.b);
    vtdb_ctx_legacy(&f.b, root, SID, VTD_CTX_TT_MULTI_LEVEL, 2, DID, sl, false);
    uint64_t pte = vtdb_sl_entry(&f.b, sl, 4, G_IOVA, 1);
    CHECK(vtdb_enable(f.vtd, root, false));

    struct vtio_dma_port port;
    vtio_dma_port_init(&port, f.mem, SID);
    vtio_dma_port_set_bus_master(&port, true);
    vtio_dma_port_set_translator(&port, vtio_vtd_translator(f.vtd));

    _Atomic bool stop = false;
    struct gdev dev[G_DEVS];
    pthread_t th[G_DEVS];
    for (unsigned i = 0; i < G_DEVS; i++) {
        dev[i] = (struct gdev){ .port = &port, .idx = i, .stop = &stop };
        CHECK_EQ(pthread_create(&th[i], NULL, gdev_main, &dev[i]), 0);
    }
    uint64_t changed = 0, writes_seen = 0;
    static uint8_t snap[4096], later[4096];
    for (unsigned round = 0; round < G_ROUNDS; round++) {
        uint64_t old = DATA + round * 4096ull;
        vtio_mem_set(f.mem, old, 0, 4096);
        /* Map (not-present to present: no invalidation needed). */
        vtdb_w64(&f.b, pte, old | VTD_SL_R | VTD_SL_W);
        uint64_t before = atomic_load(&dev[0].done) + atomic_load(&dev[1].done);
        CHECK(wait_count(&dev[0].done, &dev[1].done, before + 20, 5000));
        /* Churn: invalidations of the live mapping keep the devices
         * missing and walking, so that the unmap below meets walks (and
         * fills) in progress, not only IOTLB hits. */
        struct desc d[2] = { d_iotlb(VTD_INV_PAGE, DID, G_IOVA, 0, false),
                             d_wait_sw(0, round + 1) };
        for (unsigned i = 0; i < G_CHURN; i++)
            submit(&f, d, 1);
        /* Unmap: clear the PTE, invalidate, wait. */
        vtdb_w64(&f.b, pte, 0);
        submit(&f, d, 2);
        CHECK_EQ(status(&f, 0), round + 1);     /* synchronous: visible on return */
        vtio_mem_read(f.mem, old, snap, sizeof(snap));
        for (unsigned i = 0; i < sizeof(snap); i += 8) {
            uint64_t v;
            memcpy(&v, snap + i, 8);
            writes_seen += v != 0;
        }
        /* The devices go on trying (and should fault) for a while. */
        uint64_t faults = atomic_load(&dev[0].faulted) + atomic_load(&dev[1].faulted);
        wait_count(&dev[0].faulted, &dev[1].faulted, faults + 20, 200);
        uint64_t t0 = now_us();
        while (now_us() - t0 < 1000)
            sched_yield();
        vtio_mem_read(f.mem, old, later, sizeof(later));
        changed += memcmp(snap, later, sizeof(snap)) != 0;
    }
    atomic_store(&stop, true);
    for (unsigned i = 0; i < G_DEVS; i++)
        CHECK_EQ(pthread_join(th[i], NULL), 0);
    CHECK_EQ(changed, 0);
    CHECK_GT(writes_seen, 0);
    for (unsigned i = 0; i < G_DEVS; i++) {
        CHECK_GT(atomic_load(&dev[i].done), 0);
        CHECK_GT(atomic_load(&dev[i].faulted), 0);
    }
    check_idle(&f);
    fx_fini(&f);
}

static const struct vtio_test tests[] = {
    { "wait_status", "wait descriptors write their status data (FN and bare fences too) in both queue widths, counted in the stats", t_wait_status },
    { "wait_interrupt", "a wait with IF sets ICS.IWC and sends IEDATA/IEADDR once, or holds it in IECTL.IP while IM is set", t_wait_interrupt },
    { "types_128", "IOTLB (global/domain/page), device-TLB (sizes), IEC and context-cache descriptors take effect in a 128-bit queue", t_types_128 },
    { "types_256", "every descriptor type, PASID-based ones included, takes effect in a 256-bit queue", t_types_256 },
    { "wraparound", "descriptors are processed in order across the end of 128- and 256-bit queues of two sizes", t_wraparound },
    { "iqe_128", "each malformed 128-bit-queue descriptor sets IQE and its IQEI, stops IQH at it with one fault event, and the queue resumes once fixed", t_iqe_128 },
    { "iqe_256", "each malformed 256-bit-queue descriptor sets IQE and its IQEI, stops IQH at it, and the queue resumes once fixed", t_iqe_256 },
    { "iqe_tail", "a tail beyond the queue or misaligned for 256-bit descriptors sets IQE and leaves IQH; a good tail and clearing IQE resume", t_iqe_tail },
    { "ite", "a device-TLB invalidation to a source with no ATS endpoint sets ITE and ITESID, aborts the next wait and halts until ITE is cleared", t_ite },
    { "guarantee", "after a wait's status write no in-flight or later DMA writes through the translation the invalidation removed", t_guarantee },
};

VTIO_TEST_MAIN(tests)
