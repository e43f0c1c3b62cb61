/*
 * Fixture shared by the translation-path tests (test_vtd_walk.c,
 * test_vtd_context.c, test_vtd_translate.c): a machine memory with RAM, a
 * VT-d unit whose platform reads and writes that memory, a table builder
 * over a pool in it, and helpers to translate and to check the fault
 * recording registers as software sees them.
 *
 * Memory map: RAM [0, 64 MiB) and [4 GiB, 4 GiB + 2 MiB); table pool at
 * 32 MiB (16 MiB); everything else is a hole, so a table pointer into
 * [64 MiB, 4 GiB) makes the platform read fail (an access error).  Unit
 * writes (A/D updates) into [wfail_lo, wfail_hi) fail, to inject errors.
 */
#ifndef VTIO_TESTS_VTD_XLATE_FIXTURE_H
#define VTIO_TESTS_VTD_XLATE_FIXTURE_H

#include <vtio/mem.h>
#include <vtio/vtd.h>
#include <vtio/vtd_regs.h>

#include <errno.h>
#include <stdio.h>

#include "harness.h"
#include "hw/vtd/vtd_internal.h"
#include "vtd_builder.h"

#define MiB VTIO_MiB
#define GiB VTIO_GiB
#define FX_POOL      (32 * MiB)
#define FX_POOL_SIZE (16 * MiB)
#define FX_HOLE      (128 * MiB)        /* not RAM: platform reads fail */
#define FX_HIGH_RAM  (4 * GiB)
#define SID  0x0310                     /* 03:02.0 */
#define SID2 0x0311                     /* 03:02.1 */
#define DID  5

struct fx {
    struct vtio_mem *mem;
    struct vtio_vtd *vtd;
    struct vtdb b;
    uint64_t root;
    unsigned intr_count;
    uint64_t wfail_lo, wfail_hi;        /* unit writes into [lo, hi) fail */
};

static inline void fx_interrupt(void *opaque, uint64_t addr, uint32_t data)
{
    (void)addr, (void)data;
    ((struct fx *)opaque)->intr_count++;
}

static inline int fx_read(void *opaque, uint64_t pa, void *buf, size_t len)
{
    return vtio_mem_dev_read(((struct fx *)opaque)->mem, pa, buf, len);
}

static inline int fx_write(void *opaque, uint64_t pa, const void *buf, size_t len)
{
    struct fx *f = opaque;
    if (pa < f->wfail_hi && f->wfail_lo < pa + len)
        return -EIO;
    return vtio_mem_dev_write(f->mem, pa, buf, len);
}

/* A unit with caps (NULL: defaults) and an empty root table; translation
 * is not enabled yet (fx_enable). */
static inline void fx_init(struct fx *f, const struct vtio_vtd_caps *caps)
{
    memset(f, 0, sizeof(*f));
    f->mem = vtio_mem_create();
    CHECK(f->mem != NULL);
    CHECK_OK(vtio_mem_add_ram(f->mem, 0, 64 * MiB, "low"));
    CHECK_OK(vtio_mem_add_ram(f->mem, FX_HIGH_RAM, 2 * MiB, "high"));
    struct vtio_vtd_platform plat = {
        .mem_read = fx_read, .mem_write = fx_write, .interrupt = fx_interrupt, .opaque = f,
    };
    CHECK_OK(vtio_vtd_create(caps, &plat, &f->vtd));
    vtdb_init_mem(&f->b, f->mem, FX_POOL, FX_POOL_SIZE);
    f->root = vtdb_page(&f->b);
}

static inline void fx_fini(struct fx *f)
{
    vtio_vtd_destroy(f->vtd);
    vtio_mem_destroy(f->mem);
}

static inline void fx_enable(struct fx *f, bool scalable)
{
    CHECK(vtdb_enable(f->vtd, f->root, scalable));
}

/* A request without PASID. */
static inline int fx_xlate(struct fx *f, uint16_t sid, uint64_t addr, bool write,
                    struct vtio_vtd_resp *r)
{
    struct vtio_vtd_req q = { .sid = sid, .addr = addr, .write = write };
    return vtio_vtd_translate(f->vtd, &q, r);
}

static inline int fx_xlate_pasid(struct fx *f, uint16_t sid, uint32_t pasid, uint64_t addr,
                          bool write, bool priv, struct vtio_vtd_resp *r)
{
    struct vtio_vtd_req q = { .sid = sid, .has_pasid = true, .pasid = pasid, .addr = addr,
                              .write = write, .priv = priv };
    return vtio_vtd_translate(f->vtd, &q, r);
}

/* Translates and requires success with pa, page size and permissions. */
#define CHECK_XLATE(f, sid_, addr_, wr_, want_pa, want_size, want_r, want_w)    \
    do {                                                                        \
        struct vtio_vtd_resp xr_;                                                \
        CHECK_OK(fx_xlate(f, sid_, addr_, wr_, &xr_));                           \
        CHECK_EQ(xr_.fault, 0);                                                  \
        CHECK_EQ(xr_.pa, want_pa);                                               \
        CHECK_EQ(xr_.page_size, want_size);                                      \
        CHECK_EQ(xr_.read, want_r);                                              \
        CHECK_EQ(xr_.write, want_w);                                             \
    } while (0)

/* Translates and requires fault reason fr. */
#define CHECK_XFAULT(f, sid_, addr_, wr_, fr_)                                   \
    do {                                                                        \
        struct vtio_vtd_resp xr_;                                                \
        CHECK_ERR(fx_xlate(f, sid_, addr_, wr_, &xr_), -EFAULT);                \
        CHECK_EQ(xr_.fault, fr_);                                                 \
    } while (0)

static inline uint64_t fx_frcd_off(struct fx *f, unsigned i)
{
    uint64_t cap = vtio_vtd_reg_read(f->vtd, VTD_CAP_REG, 8);
    return VTD_CAP_FRO(cap) * 16 + 16ull * i;
}

/* Number of fault records pending (F set). */
static inline unsigned fx_pending(struct fx *f)
{
    uint64_t cap = vtio_vtd_reg_read(f->vtd, VTD_CAP_REG, 8);
    unsigned n = 0;
    for (unsigned i = 0; i <= VTD_CAP_NFR(cap); i++)
        if (vtio_vtd_reg_read(f->vtd, fx_frcd_off(f, i) + 8, 8) & VTD_FRCD_HI_F)
            n++;
    return n;
}

/* The one pending record (at FSTS.FRI) must say exactly this; then it is
 * cleared as Linux's handler does (F written to the top dword, PFO/PPF to
 * FSTS), so the next fault of the same source is logged again. */
static inline void fx_expect_record(struct fx *f, uint16_t sid, uint8_t fr, uint64_t addr, bool write,
                             bool pp, uint32_t pasid)
{
    uint32_t fsts = (uint32_t)vtio_vtd_reg_read(f->vtd, VTD_FSTS_REG, 4);
    CHECK(fsts & VTD_FSTS_PPF);
    CHECK_EQ(fx_pending(f), 1);
    uint64_t off = fx_frcd_off(f, VTD_FSTS_FRI(fsts));
    uint64_t lo = vtio_vtd_reg_read(f->vtd, off, 8), hi = vtio_vtd_reg_read(f->vtd, off + 8, 8);
    CHECK_EQ(lo, addr & ~0xfffull);
    CHECK_EQ(VTD_FRCD_HI_SID(hi), sid);
    CHECK_EQ(VTD_FRCD_HI_FR(hi), fr);
    CHECK_EQ(!!(hi & VTD_FRCD_HI_T), !write);
    CHECK_EQ(!!(hi & VTD_FRCD_HI_PP), pp);
    CHECK_EQ(VTD_FRCD_HI_PV(hi), pp ? pasid : 0);
    vtio_vtd_reg_write(f->vtd, off + 12, 0x80000000u, 4);
    vtio_vtd_reg_write(f->vtd, VTD_FSTS_REG, VTD_FSTS_PFO | VTD_FSTS_PPF, 4);
    CHECK_EQ(fx_pending(f), 0);
}

/* A fault of a request without PASID, recorded. */
#define CHECK_XFAULT_REC(f, sid_, addr_, wr_, fr_)                              \
    do {                                                                        \
        CHECK_XFAULT(f, sid_, addr_, wr_, fr_);                                 \
        fx_expect_record(f, sid_, fr_, addr_, wr_, false, 0);                   \
    } while (0)

/* Counters read from the unit's state directly (the per-thread shards
 * included, whatever vtio_vtd_get_stats reports). */
static inline uint64_t fx_ctx_hits(struct fx *f)
{
    return atomic_load(&f->vtd->stats.context_cache_hits) +
           vtd_hot_sum(f->vtd, VTD_HOT_CONTEXT_CACHE_HITS);
}

static inline uint64_t fx_ctx_misses(struct fx *f)
{
    return atomic_load(&f->vtd->stats.context_cache_misses);
}

static inline uint64_t fx_walks(struct fx *f)
{
    return atomic_load(&f->vtd->stats.page_walks);
}

#endif
