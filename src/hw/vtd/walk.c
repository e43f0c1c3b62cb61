/*
 * Page walks (VT-d spec 3.6-3.8, 9.7-9.9): second level (second stage),
 * first level (first stage, x86-64 paging) and nested.
 *
 * Second level.  3, 4 or 5 levels from the table the context or PASID
 * entry names; 9 IOVA bits per level; leaves at level 1 (4 KiB), 2 (2 MiB,
 * PS, if CAP.SSLPS bit 0) or 3 (1 GiB, PS, if SSLPS bit 1).  Steps per
 * level, in this order, with the fault each one reports (the codes of
 * vtd-reference.md, which are QEMU's; the same in legacy and scalable
 * mode, as QEMU does):
 *   - the IOVA above min(MGAW, the table's width): 04h (before the walk);
 *   - the entry cannot be read: 07h, or 03h for the top table (the pointer
 *     in the context / PASID entry is bad);
 *   - R = W = 0 (not present): 06h for a read, 05h for a write — VT-d has
 *     no "not present" reason for the second level, so a hole reads as a
 *     permission fault, exactly as QEMU reports it;
 *   - reserved bits (address bits 51:HAW, TM (62), SNP (11) without
 *     ECAP.SC or in a non-leaf entry, PS in PML4E/PML5E or for a page size
 *     SSLPS lacks, the low address bits of a superpage): 0Ch;
 *   - the access not allowed by the AND of R/W down the walk: 06h / 05h.
 * On a 05h/06h fault *out holds the permissions found so far (both false
 * for a hole), which lets the caller tell "unmapped" from "read-only".
 *
 * First level.  4 or 5 levels (FSPM); the address must be canonical for
 * 48 / 57 bits (80h).  Per level: read error 70h (73h for the top table,
 * a bad FSPTPTR); P clear 71h; reserved bits (51:HAW, PS in PML4E/PML5E,
 * a 1 GiB page without CAP.FS1GP, superpage address bits 20:13 / 29:13)
 * 72h; a user request (priv clear) through an entry with U/S clear 81h; a
 * write through an entry with R/W clear 85h (supervisor writes pass when
 * the PASID entry's WPE is clear).  A supervisor request needs the PASID
 * entry's SRE (else 81h: vtio's choice, the reference has no code).  Bits
 * 63:52 (XD included: no ECAP.ERS) are ignored.  The walker sets A in
 * every entry it uses and D in the leaf of a write; the update re-reads the
 * entry and writes back its low byte through the platform (the platform
 * offers no compare-and-swap); a failed write is 91h.  A read reports the
 * page writable only if D is already set, so that the IOTLB never lets a
 * write skip the D update.  The permissions found are those of the
 * request's privilege, and the result says so (out->fl, out->sup), so that
 * a cached copy never answers a request of the other privilege.
 *
 * Nested.  Every first-level table address (the FSPTPTR and each next
 * table) is a guest-physical address translated by the second level
 * (ctx->sl_root) before it is read — as a read, and again as a write for
 * an A/D update — and so is the final output address (as the request's
 * access).  A second-level fault on the way is reported with its
 * second-level code.  The page is the smaller of the two stages' pages and
 * the permissions are the AND of both.
 *
 * Bounds: a walk visits at most 5 levels (plus 5 second-level walks of at
 * most 5 levels each when nested).  Threads: any thread; no state.
 */
#include "hw/vtd/vtd_internal.h"

#include <endian.h>

static uint64_t haw_rsvd(struct vtio_vtd *vtd)
{
    /* Address bits 51:HAW of any entry (bits 63:52 are not address bits). */
    return vtd->haw >= 52 ? 0 : ((1ull << 52) - 1) & ~((1ull << vtd->haw) - 1);
}

/* Address bits (HAW-1):12 of an entry; never above bit 51. */
static uint64_t addr_mask(struct vtio_vtd *vtd)
{
    return VTD_SL_ADDR_MASK(vtd->haw < 52 ? vtd->haw : 52);
}

static int read_entry(struct vtio_vtd *vtd, uint64_t pa, uint64_t *e)
{
    int ret = vtd_read(vtd, pa, e, 8);
    *e = le64toh(*e);
    return ret;
}

static unsigned level_index(uint64_t addr, unsigned level)
{
    return (unsigned)((addr >> VTD_LEVEL_SHIFT(level)) & 511);
}

/* ------------------------------------------------------------------------
 * Second level.
 */

/* Reserved bits of a present second-level entry at level; *leaf says
 * whether it maps a page. */
static uint64_t sl_rsvd(struct vtio_vtd *vtd, uint64_t e, unsigned level, bool *leaf)
{
    uint64_t rsvd = haw_rsvd(vtd) | VTD_BIT(62);
    unsigned sslps = (unsigned)VTD_CAP_SSLPS(vtd->cap);
    *leaf = level == 1;
    if (level >= 2 && (e & VTD_SL_PS)) {
        if (level >= 4 || !(sslps & (1u << (level - 2))))
            return VTD_SL_PS;           /* no such page size */
        *leaf = true;
        rsvd |= ((1ull << VTD_LEVEL_SHIFT(level)) - 1) & ~0xfffull;
    }
    if (!*leaf || !(vtd->ecap & VTD_ECAP_SC))
        rsvd |= VTD_SL_SNP;
    return e & rsvd;
}

int vtd_sl_walk(struct vtio_vtd *vtd, uint64_t root, unsigned levels, uint64_t iova,
                bool write, struct vtd_xlate *out)
{
    unsigned width = VTD_LEVEL_SHIFT(levels) + 9;
    unsigned mgaw = (unsigned)VTD_CAP_MGAW(vtd->cap) + 1;
    bool r = true, w = true;

    out->read = out->write = false;
    if (levels < 3 || levels > 5)
        return VTD_FR_CONTEXT_ENTRY_INV;
    if (mgaw < width)
        width = mgaw;
    if (iova >> width)
        return VTD_FR_ADDR_BEYOND_MGAW;

    uint64_t table = root & ~0xfffull;
    for (unsigned level = levels; level >= 1; level--) {
        uint64_t e;
        bool leaf;
        if (read_entry(vtd, table + 8ull * level_index(iova, level), &e))
            return level == levels ? VTD_FR_CONTEXT_ENTRY_INV : VTD_FR_PAGING_ENTRY_INV;
        r = r && (e & VTD_SL_R);
        w = w && (e & VTD_SL_W);
        out->read = r, out->write = w;
        if (!(e & (VTD_SL_R | VTD_SL_W)))             /* not present */
            return write ? VTD_FR_WRITE : VTD_FR_READ;
        if (sl_rsvd(vtd, e, level, &leaf))
            return VTD_FR_PAGING_ENTRY_RSVD;
        if (!(write ? w : r))
            return write ? VTD_FR_WRITE : VTD_FR_READ;
        if (leaf) {
            out->shift = (uint8_t)VTD_LEVEL_SHIFT(level);
            out->pa = e & addr_mask(vtd) & ~((1ull << out->shift) - 1);
            return 0;
        }
        table = e & addr_mask(vtd);
    }
    return VTD_FR_PAGING_ENTRY_INV;     /* not reached: level 1 is a leaf */
}

/* ------------------------------------------------------------------------
 * First level.
 */

/* The physical address of a first-level structure at gpa: itself, or
 * through the second level when nested (write: for an A/D update). */
static int fl_access(struct vtio_vtd *vtd, const struct vtd_ctx *ctx, uint64_t gpa, bool write,
                     uint64_t *pa)
{
    struct vtd_xlate x;
    if (ctx->kind != VTD_XK_NESTED) {
        *pa = gpa;
        return 0;
    }
    int fr = vtd_sl_walk(vtd, ctx->sl_root, ctx->sl_levels, gpa, write, &x);
    if (fr == 0)
        *pa = x.pa | (gpa & ((1ull << x.shift) - 1));
    return fr;
}

/* Reserved bits of a present first-level entry at level. */
static uint64_t fl_rsvd(struct vtio_vtd *vtd, uint64_t e, unsigned level, bool *leaf)
{
    uint64_t rsvd = haw_rsvd(vtd);
    *leaf = level == 1;
    if (level >= 2 && (e & VTD_FL_PS)) {
        if (level >= 4 || (level == 3 && !(vtd->cap & VTD_CAP_FS1GP)))
            return VTD_FL_PS;
        *leaf = true;
        rsvd |= ((1ull << VTD_LEVEL_SHIFT(level)) - 1) & ~0x1fffull;   /* bit 12 is PAT */
    }
    return e & rsvd;
}

/* Sets A (and D) in the entry at gpa / pa, which the walk read as e. */
static int fl_set_ad(struct vtio_vtd *vtd, const struct vtd_ctx *ctx, uint64_t gpa, uint64_t pa,
                     uint64_t bits)
{
    uint64_t cur;
    int fr;
    if (ctx->kind == VTD_XK_NESTED && (fr = fl_access(vtd, ctx, gpa, true, &pa)) != 0)
        return fr;                      /* the second level refuses the write */
    if (read_entry(vtd, pa, &cur))
        return VTD_FR_FS_BIT_UPDATE_FAILED;
    if (!(cur & VTD_FL_P))              /* changed under us: gone */
        return VTD_FR_FS_PAGING_ENTRY_P;
    uint8_t low = (uint8_t)(cur | bits);   /* A (5) and D (6) live in byte 0 */
    if (vtd_write(vtd, pa, &low, 1))
        return VTD_FR_FS_BIT_UPDATE_FAILED;
    return 0;
}

int vtd_fl_walk(struct vtio_vtd *vtd, const struct vtd_ctx *ctx, uint64_t addr, bool write,
                bool priv, bool exec, struct vtd_xlate *out)
{
    unsigned levels = ctx->fl_levels, width = VTD_LEVEL_SHIFT(levels) + 9;
    bool us = true, rw = true;
    uint64_t table = ctx->fl_root & ~0xfffull, e = 0;
    unsigned level;
    int fr;

    (void)exec;                         /* no ECAP.ERS: execute is not checked */
    out->read = out->write = false;
    out->fl = true;                     /* the permissions below are priv's */
    out->sup = priv;
    /* Canonical: bits 63:width-1 all equal. */
    if ((uint64_t)((int64_t)(addr << (64 - width)) >> (64 - width)) != addr)
        return VTD_FR_FS_NON_CANONICAL;
    if (priv && !ctx->sre)
        return VTD_FR_FS_PAGING_ENTRY_US;

    for (level = levels; level >= 1; level--) {
        uint64_t gpa = table + 8ull * level_index(addr, level);
        uint64_t pa;
        bool leaf;
        if ((fr = fl_access(vtd, ctx, gpa, false, &pa)) != 0)
            return fr;
        if (read_entry(vtd, pa, &e))
            return level == levels ? VTD_FR_PASID_ENTRY_FSPTPTR_INV : VTD_FR_FS_PAGING_ENTRY_INV;
        if (!(e & VTD_FL_P))
            return VTD_FR_FS_PAGING_ENTRY_P;
        if (fl_rsvd(vtd, e, level, &leaf))
            return VTD_FR_FS_PAGING_ENTRY_RSVD;
        us = us && (e & VTD_FL_US);
        rw = rw && (e & VTD_FL_RW);
        out->read = !priv ? us : true;
        out->write = out->read && (rw || (priv && !ctx->wpe));
        if (!out->read)
            return VTD_FR_FS_PAGING_ENTRY_US;
        if (write && !out->write)
            return VTD_FR_SM_WRITE;
        uint64_t bits = VTD_FL_A | (leaf && write ? VTD_FL_D : 0);
        if ((e & bits) != bits) {
            if ((fr = fl_set_ad(vtd, ctx, gpa, pa, bits)) != 0)
                return fr;
            e |= bits;
        }
        if (leaf)
            break;
        table = e & addr_mask(vtd);
    }

    out->shift = (uint8_t)VTD_LEVEL_SHIFT(level);
    uint64_t page = e & addr_mask(vtd) & ~((1ull << out->shift) - 1);
    out->write = out->write && (e & VTD_FL_D);   /* clean page: writes walk again */
    if (ctx->kind != VTD_XK_NESTED) {
        out->pa = page;
        return 0;
    }

    /* Nested: the output GPA through the second level, as the access. */
    struct vtd_xlate x;
    uint64_t gpa = page | (addr & ((1ull << out->shift) - 1));
    if ((fr = vtd_sl_walk(vtd, ctx->sl_root, ctx->sl_levels, gpa, write, &x)) != 0) {
        out->read = x.read, out->write = x.write;
        return fr;
    }
    if (x.shift < out->shift)
        out->shift = x.shift;
    out->pa = (x.pa | (gpa & ((1ull << x.shift) - 1))) & ~((1ull << out->shift) - 1);
    out->read = out->read && x.read;
    out->write = out->write && x.write;
    return 0;
}
