/*
 * vtd_builder: builds VT-d translation structures in a test's machine
 * memory, bit for bit as include/vtio/vtd_regs.h describes them, so that
 * VT-d tests read like "map this IOVA, then corrupt that entry".
 *
 * Everything here is static inline and header-only; any VT-d test may
 * include it.  The builder writes through two callbacks (CPU-side 64-bit
 * read and write of physical memory); vtdb_init_mem() wires them to a
 * vtio_mem.  Tables come from a bump allocator of zeroed 4 KiB pages in a
 * pool the test names (nothing is ever freed; a test owns its pool).
 *
 * Builders create missing non-leaf structures and return the guest-physical
 * address of the entry they wrote (the leaf PTE, the context entry, the
 * PASID-table entry...), so a test can later corrupt exactly that entry:
 *
 *     uint64_t root = vtdb_page(&b);
 *     uint64_t sl = vtdb_page(&b);
 *     vtdb_ctx_legacy(&b, root, SID, VTD_CTX_TT_MULTI_LEVEL, 2, DID, sl, false);
 *     uint64_t pte = vtdb_sl_map(&b, sl, 4, 0x10000, 0x200000, 12, VTD_SL_R);
 *     vtdb_enable(vtd, root, false);
 *     ... translate ...
 *     vtdb_w64(&b, pte, vtdb_r64(&b, pte) | VTD_BIT(51));   reserved bit -> 0x0C
 *
 * Defaults used by the helpers: non-leaf second-level entries are R|W,
 * non-leaf first-level entries are P|RW|US (A left clear, so a test sees
 * the walker set it).
 *
 * Nested translation (PGTT=3): set b->nest_sl_root / nest_sl_levels /
 * nest_gpa_off before building first-level tables; each new first-level
 * table page is then allocated at SPA s, mapped R|W in the second level at
 * GPA s + nest_gpa_off, and first-level entries hold GPAs.  The leaf
 * address given to vtdb_fl_map() is a GPA the test maps itself.
 */
#ifndef VTIO_TESTS_VTD_BUILDER_H
#define VTIO_TESTS_VTD_BUILDER_H

#include <vtio/mem.h>
#include <vtio/vtd.h>
#include <vtio/vtd_regs.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

struct vtdb {
    uint64_t (*read64)(void *opaque, uint64_t pa);
    void (*write64)(void *opaque, uint64_t pa, uint64_t v);
    void *opaque;
    uint64_t next, end;             /* page pool: next free page, end */
    unsigned haw;                   /* address bits kept in table pointers */
    /* nested first-level tables (see the top comment); 0 = off */
    uint64_t nest_sl_root;
    unsigned nest_sl_levels;
    uint64_t nest_gpa_off;
};

static inline uint64_t vtdb_mem_read64_(void *opaque, uint64_t pa)
{
    return vtio_mem_read64((struct vtio_mem *)opaque, pa);
}

static inline void vtdb_mem_write64_(void *opaque, uint64_t pa, uint64_t v)
{
    vtio_mem_write64((struct vtio_mem *)opaque, pa, v);
}

/* A builder writing into mem, with tables from [pool, pool + size). */
static inline void vtdb_init_mem(struct vtdb *b, struct vtio_mem *mem, uint64_t pool,
                                 uint64_t size)
{
    *b = (struct vtdb){ .read64 = vtdb_mem_read64_, .write64 = vtdb_mem_write64_,
                        .opaque = mem, .next = pool, .end = pool + size, .haw = 52 };
}

static inline uint64_t vtdb_r64(struct vtdb *b, uint64_t pa)
{
    return b->read64(b->opaque, pa);
}

static inline void vtdb_w64(struct vtdb *b, uint64_t pa, uint64_t v)
{
    b->write64(b->opaque, pa, v);
}

/* A zeroed 4 KiB page from the pool (aborts when the pool is exhausted:
 * that is a bug in the test, not a condition to test). */
static inline uint64_t vtdb_page(struct vtdb *b)
{
    if (b->next + 4096 > b->end)
        abort();
    uint64_t pa = b->next;
    b->next += 4096;
    for (unsigned i = 0; i < 512; i++)
        vtdb_w64(b, pa + 8 * i, 0);
    return pa;
}

/* ------------------------------------------------------------------------
 * Legacy mode: root table (16-byte entries by bus), context tables (16-byte
 * entries by devfn).
 */

/* Root entry for bus: P and the context-table pointer. */
static inline uint64_t vtdb_root_set(struct vtdb *b, uint64_t root, uint8_t bus, uint64_t ctp)
{
    uint64_t ea = root + 16ull * bus;
    vtdb_w64(b, ea, (ctp & VTD_ROOT_CTP_MASK) | VTD_ROOT_P);
    vtdb_w64(b, ea + 8, 0);
    return ea;
}

/* The context table of bus (made present if missing). */
static inline uint64_t vtdb_ctx_table(struct vtdb *b, uint64_t root, uint8_t bus)
{
    uint64_t lo = vtdb_r64(b, root + 16ull * bus);
    if (lo & VTD_ROOT_P)
        return lo & VTD_ROOT_CTP_MASK;
    uint64_t ct = vtdb_page(b);
    vtdb_root_set(b, root, bus, ct);
    return ct;
}

/* Writes the raw legacy context entry of sid; returns its address. */
static inline uint64_t vtdb_ctx_raw(struct vtdb *b, uint64_t root, uint16_t sid, uint64_t lo,
                                    uint64_t hi)
{
    uint64_t ea = vtdb_ctx_table(b, root, (uint8_t)(sid >> 8)) + 16ull * (sid & 0xff);
    vtdb_w64(b, ea + 8, hi);
    vtdb_w64(b, ea, lo);
    return ea;
}

/* A present legacy context entry: tt (VTD_CTX_TT_*), aw (1/2/3 = 3/4/5
 * levels), did, second-level table slptptr, fpd. */
static inline uint64_t vtdb_ctx_legacy(struct vtdb *b, uint64_t root, uint16_t sid, unsigned tt,
                                       unsigned aw, uint16_t did, uint64_t slptptr, bool fpd)
{
    uint64_t lo = VTD_CTX_P | (fpd ? VTD_CTX_FPD : 0) | VTD_MAKE(tt, 3, 2) |
                  (slptptr & VTD_CTX_SLPTPTR_MASK);
    uint64_t hi = VTD_MAKE(aw, 2, 0) | VTD_MAKE(did, 23, 8);
    return vtdb_ctx_raw(b, root, sid, lo, hi);
}

/* ------------------------------------------------------------------------
 * Scalable mode: root entries with lower (devfn 0-127) and upper (128-255)
 * context tables of 32-byte entries; PASID directory (8-byte entries,
 * PASID[19:6]) and PASID tables (64-byte entries, PASID[5:0]).
 */

static inline uint64_t vtdb_sm_ctx_table(struct vtdb *b, uint64_t root, uint16_t sid)
{
    uint64_t ea = root + 16ull * (sid >> 8) + ((sid & 0x80) ? 8 : 0);
    uint64_t e = vtdb_r64(b, ea);
    if (e & VTD_ROOT_LP)
        return e & VTD_ROOT_CTP_MASK;
    uint64_t ct = vtdb_page(b);
    vtdb_w64(b, ea, ct | VTD_ROOT_LP);
    return ct;
}

/* Writes the scalable-mode context entry of sid (4 quadwords); returns its
 * address. */
static inline uint64_t vtdb_sm_ctx_raw(struct vtdb *b, uint64_t root, uint16_t sid,
                                       uint64_t q0, uint64_t q1)
{
    uint64_t ea = vtdb_sm_ctx_table(b, root, sid) + 32ull * (sid & 0x7f);
    vtdb_w64(b, ea + 8, q1);
    vtdb_w64(b, ea + 16, 0);
    vtdb_w64(b, ea + 24, 0);
    vtdb_w64(b, ea, q0);
    return ea;
}

/* A present scalable-mode context entry.  flags: VTD_SM_CTX_FPD / DTE /
 * PASIDE / PRE; pdts: directory of 2^(pdts+7) entries. */
static inline uint64_t vtdb_sm_ctx(struct vtdb *b, uint64_t root, uint16_t sid, uint64_t pdir,
                                   unsigned pdts, uint64_t flags, uint32_t rid_pasid)
{
    uint64_t q0 = VTD_SM_CTX_P | flags | VTD_MAKE(pdts, 11, 9) | (pdir & VTD_SM_CTX_PDIR_MASK);
    return vtdb_sm_ctx_raw(b, root, sid, q0, VTD_MAKE(rid_pasid, 19, 0));
}

/* Address of the PASID-directory entry of pasid. */
static inline uint64_t vtdb_pdire_addr(uint64_t pdir, uint32_t pasid)
{
    return pdir + 8ull * (pasid >> 6);
}

/* The PASID table of pasid's directory entry (made present if missing). */
static inline uint64_t vtdb_pasid_table(struct vtdb *b, uint64_t pdir, uint32_t pasid)
{
    uint64_t ea = vtdb_pdire_addr(pdir, pasid);
    uint64_t e = vtdb_r64(b, ea);
    if (e & VTD_PDIRE_P)
        return e & VTD_PDIRE_PTBL_MASK;
    uint64_t t = vtdb_page(b);
    vtdb_w64(b, ea, t | VTD_PDIRE_P | (e & VTD_PDIRE_FPD));
    return t;
}

/* Writes PASID-table entry q[0..7] of pasid; returns its address. */
static inline uint64_t vtdb_pasid_raw(struct vtdb *b, uint64_t pdir, uint32_t pasid,
                                      const uint64_t q[8])
{
    uint64_t ea = vtdb_pasid_table(b, pdir, pasid) + 64ull * (pasid & 63);
    for (unsigned i = 7; i > 0; i--)
        vtdb_w64(b, ea + 8 * i, q[i]);
    vtdb_w64(b, ea, q[0]);
    return ea;
}

/* What a PASID-table entry says (zero fields are left zero). */
struct vtdb_pasid_entry {
    unsigned pgtt;          /* VTD_PGTT_FL / SL / NESTED / PT */
    uint16_t did;
    unsigned aw;            /* second stage: 1/2/3 */
    uint64_t ssptptr;       /* second-stage table */
    uint64_t fsptptr;       /* first-stage table */
    unsigned fspm;          /* 0 4-level, 1 5-level */
    bool fpd, sre, wpe;
};

static inline uint64_t vtdb_pasid(struct vtdb *b, uint64_t pdir, uint32_t pasid,
                                  const struct vtdb_pasid_entry *e)
{
    uint64_t q[8] = { 0 };
    q[0] = VTD_PTE_P | (e->fpd ? VTD_PTE_FPD : 0) | VTD_MAKE(e->aw, 4, 2) |
           VTD_MAKE(e->pgtt, 8, 6) | (e->ssptptr & VTD_PTE_SSPTPTR_MASK);
    q[1] = VTD_MAKE(e->did, 15, 0);
    q[2] = (e->sre ? VTD_PTE_SRE : 0) | VTD_MAKE(e->fspm, 3, 2) | (e->wpe ? VTD_PTE_WPE : 0) |
           (e->fsptptr & VTD_PTE_FSPTPTR_MASK);
    return vtdb_pasid_raw(b, pdir, pasid, q);
}

/* ------------------------------------------------------------------------
 * Second-level (second-stage) page tables: levels 3/4/5; leaf at level 1
 * (4 KiB), 2 (2 MiB, PS) or 3 (1 GiB, PS).
 */

static inline unsigned vtdb_index(uint64_t addr, unsigned level)
{
    return (unsigned)((addr >> VTD_LEVEL_SHIFT(level)) & 511);
}

/* Address of the level-`level` entry for iova, creating missing tables
 * above it (non-leaf entries R|W).  Does not write the entry itself. */
static inline uint64_t vtdb_sl_entry(struct vtdb *b, uint64_t root, unsigned levels,
                                     uint64_t iova, unsigned level)
{
    uint64_t table = root;
    for (unsigned l = levels; l > level; l--) {
        uint64_t ea = table + 8ull * vtdb_index(iova, l);
        uint64_t e = vtdb_r64(b, ea);
        if (!(e & (VTD_SL_R | VTD_SL_W)) || (e & VTD_SL_PS)) {
            uint64_t t = vtdb_page(b);
            vtdb_w64(b, ea, t | VTD_SL_R | VTD_SL_W);
            table = t;
        } else {
            table = e & VTD_SL_ADDR_MASK(b->haw);
        }
    }
    return table + 8ull * vtdb_index(iova, level);
}

/* Maps the page of size 1 << shift (12, 21, 30) at iova to pa with perms
 * (VTD_SL_R / VTD_SL_W, plus any extra bits); returns the leaf's address. */
static inline uint64_t vtdb_sl_map(struct vtdb *b, uint64_t root, unsigned levels,
                                   uint64_t iova, uint64_t pa, unsigned shift, uint64_t perms)
{
    unsigned level = (shift - 12) / 9 + 1;
    uint64_t ea = vtdb_sl_entry(b, root, levels, iova, level);
    uint64_t mask = ~((1ull << shift) - 1) & VTD_SL_ADDR_MASK(b->haw);
    vtdb_w64(b, ea, (pa & mask) | perms | (level > 1 ? VTD_SL_PS : 0));
    return ea;
}

/* ------------------------------------------------------------------------
 * First-level (first-stage, x86-64) page tables: 4 or 5 levels.
 */

/* The SPA of a first-level table referenced by GPA (nested) or SPA. */
static inline uint64_t vtdb_fl_spa(struct vtdb *b, uint64_t table)
{
    return b->nest_sl_root ? table - b->nest_gpa_off : table;
}

/* A new first-level table page: its address as entries reference it. */
static inline uint64_t vtdb_fl_table(struct vtdb *b)
{
    uint64_t spa = vtdb_page(b);
    if (!b->nest_sl_root)
        return spa;
    uint64_t gpa = spa + b->nest_gpa_off;
    uint64_t save = b->nest_sl_root;
    b->nest_sl_root = 0;
    vtdb_sl_map(b, save, b->nest_sl_levels, gpa, spa, 12, VTD_SL_R | VTD_SL_W);
    b->nest_sl_root = save;
    return gpa;
}

/* SPA of the level-`level` entry for va under root (GPA when nested),
 * creating missing tables (P|RW|US). */
static inline uint64_t vtdb_fl_entry(struct vtdb *b, uint64_t root, unsigned levels, uint64_t va,
                                     unsigned level)
{
    uint64_t table = root;
    for (unsigned l = levels; l > level; l--) {
        uint64_t ea = vtdb_fl_spa(b, table) + 8ull * vtdb_index(va, l);
        uint64_t e = vtdb_r64(b, ea);
        if (!(e & VTD_FL_P) || (e & VTD_FL_PS)) {
            uint64_t t = vtdb_fl_table(b);
            vtdb_w64(b, ea, t | VTD_FL_P | VTD_FL_RW | VTD_FL_US);
            table = t;
        } else {
            table = e & VTD_SL_ADDR_MASK(b->haw);
        }
    }
    return vtdb_fl_spa(b, table) + 8ull * vtdb_index(va, level);
}

/* Maps va to pa (a page of 1 << shift) with flags (VTD_FL_P, RW, US, A,
 * D...; PS is added for large pages); returns the leaf's SPA. */
static inline uint64_t vtdb_fl_map(struct vtdb *b, uint64_t root, unsigned levels, uint64_t va,
                                   uint64_t pa, unsigned shift, uint64_t flags)
{
    unsigned level = (shift - 12) / 9 + 1;
    uint64_t ea = vtdb_fl_entry(b, root, levels, va, level);
    uint64_t mask = ~((1ull << shift) - 1) & VTD_SL_ADDR_MASK(b->haw);
    vtdb_w64(b, ea, (pa & mask) | flags | (level > 1 ? VTD_FL_PS : 0));
    return ea;
}

/* ------------------------------------------------------------------------
 * The unit: a platform over a vtio_mem, and the driver's enable sequence.
 */

static inline int vtdb_mem_dev_read_(void *opaque, uint64_t pa, void *buf, size_t len)
{
    return vtio_mem_dev_read((struct vtio_mem *)opaque, pa, buf, len);
}

static inline int vtdb_mem_dev_write_(void *opaque, uint64_t pa, const void *buf, size_t len)
{
    return vtio_mem_dev_write((struct vtio_mem *)opaque, pa, buf, len);
}

/* Table reads and A/D writes go to mem as device accesses (a hole is an
 * error: the unit reports an access fault); no interrupt callback. */
static inline struct vtio_vtd_platform vtdb_mem_platform(struct vtio_mem *mem)
{
    return (struct vtio_vtd_platform){ .mem_read = vtdb_mem_dev_read_,
                                       .mem_write = vtdb_mem_dev_write_, .opaque = mem };
}

/* Latches root (legacy or scalable) with SRTP, then sets TE, as Linux
 * does; each command is followed by its GSTS status check. */
static inline bool vtdb_enable(struct vtio_vtd *vtd, uint64_t root, bool scalable)
{
    vtio_vtd_reg_write(vtd, VTD_RTADDR_REG, root | (scalable ? VTD_RTADDR_SMT : 0), 8);
    uint32_t gsts = (uint32_t)vtio_vtd_reg_read(vtd, VTD_GSTS_REG, 4);
    uint32_t persist = gsts & (VTD_GCMD_TE | VTD_GCMD_QIE | VTD_GCMD_IRE | VTD_GCMD_CFI);
    vtio_vtd_reg_write(vtd, VTD_GCMD_REG, persist | VTD_GCMD_SRTP, 4);
    if (!(vtio_vtd_reg_read(vtd, VTD_GSTS_REG, 4) & VTD_GSTS_RTPS))
        return false;
    vtio_vtd_reg_write(vtd, VTD_GCMD_REG, persist | VTD_GCMD_TE, 4);
    return (vtio_vtd_reg_read(vtd, VTD_GSTS_REG, 4) & VTD_GSTS_TES) != 0;
}

#endif
