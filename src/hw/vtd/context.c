/*
 * Root, context and PASID structures (VT-d spec 3.4, 9.1-9.6) and the
 * context and PASID caches (6.2.1, 6.2.2).
 *
 * vtd_ctx_lookup() turns a requester id (and PASID) into a struct vtd_ctx:
 * how its requests are translated (second level, first level, nested or
 * pass-through), with which domain id and tables.
 *  - Legacy mode (RTADDR.TTM = 00): root entry by bus, 16-byte context
 *    entry by devfn (P, FPD, TT, SLPTPTR, AW, DID).  A request with PASID
 *    has no PASID structures to use: vtio blocks it with fault 0Dh (the
 *    legacy code for "the context entry does not allow this request").
 *  - Scalable mode (TTM = 01, needs ECAP.SMTS): root entry with lower and
 *    upper context tables, 32-byte context entries (PASIDE, DTE, PDTS,
 *    RID_PASID), then the PASID directory entry (PASID[19:6]) and the
 *    64-byte PASID-table entry (PASID[5:0]) whose PGTT picks the kind.
 *    Requests without PASID use the RID_PASID entry; a request with PASID
 *    needs PASIDE (else 0Dh, as above); a directory index beyond the
 *    2^(PDTS+7) entries the context declares is a directory access error
 *    (50h).  PASID-directory and PASID-entry reserved fields other than
 *    PGTT, AW and FSPM are not checked (QEMU checks none either).
 *  - TTM = 10 or 11 (or 01 without ECAP.SMTS): fault 31h.
 * Fault reasons are those of vtd-reference.md section 9; *fpd reports the
 * FPD bits of every entry read so far (context, PASID directory, PASID
 * entry), including a not-present entry's, as QEMU does.
 *
 * Caches.  As hardware may, the unit keeps what it read until software
 * invalidates it, so a changed entry is not seen before the invalidation:
 *  - the context cache: one slot per requester id (buses allocated on
 *    first use), holding the decoded context entry and the resolved
 *    translation of the device's requests without PASID (legacy: from the
 *    context entry; scalable: the RID_PASID entry, a PASID-cache entry);
 *  - the PASID cache for requests with PASID: direct-mapped by (SID,
 *    PASID), tagged with the DID of the PASID entry.
 * Only present, valid entries are cached (never a fault, whatever CAP.CM).
 * context_cache_hits counts lookups answered without reading the context
 * entry from memory, context_cache_misses those that read it.
 * Every slot is a sequence lock over atomics: a lookup takes no lock (the
 * IOTLB-hit path in translate.c reads a slot's tag on every translation,
 * through vtd_ctx_cached in context_fast.h, where the slots are defined),
 * and a reader that races with a writer just takes the slow path.  Fills
 * and invalidations are serialised by cache->lock; an invalidation bumps
 * cache->gen and a fill whose entries were read before the latest
 * invalidation is dropped, so nothing read before an invalidation is
 * cached after it.
 *
 * Invalidation granularity: a context-cache invalidation also drops the
 * PASID-cache entries of the devices it names (they embed context fields);
 * a domain-selective one drops legacy entries of that DID and, in scalable
 * mode, where context entries carry no DID, every entry.  Hardware may
 * always invalidate more than asked.
 *
 * Threads: vtd_ctx_lookup() from any device thread; invalidations from the
 * register / QI thread.  cache->lock is a leaf lock.
 */
#include "hw/vtd/context_fast.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A decoded context entry (either mode). */
struct cce {
    bool sm, fpd, ats, paside, rid_priv;
    unsigned tt, levels, pdts;
    uint16_t did;
    uint32_t rid_pasid;
    uint64_t ptr;                       /* SLPTPTR or PASID directory */
};

int vtd_ctx_cache_init(struct vtio_vtd *vtd)
{
    struct vtd_ctx_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    pthread_mutex_init(&c->lock, NULL);
    vtd->ctx_cache = c;
    return 0;
}

void vtd_ctx_cache_fini(struct vtio_vtd *vtd)
{
    struct vtd_ctx_cache *c = vtd->ctx_cache;
    if (!c)
        return;
    for (unsigned i = 0; i < 256; i++)
        free(atomic_load_explicit(&c->bus[i], memory_order_relaxed));
    pthread_mutex_destroy(&c->lock);
    free(c);
    vtd->ctx_cache = NULL;
}

/* ------------------------------------------------------------------------
 * Slot reads and writes (the sequence-lock protocol of vtd_internal.h).
 */

#define LD(x) atomic_load_explicit(&(x), memory_order_acquire)
#define ST(x, v) atomic_store_explicit(&(x), (v), memory_order_release)

/* Reads a sid slot's context entry: v = ce, ce_ptr.  False if a writer
 * was inside (treat as a miss). */
static bool sid_slot_read(struct sid_slot *s, uint64_t v[2])
{
    uint32_t s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
    if (s1 & 1)
        return false;
    v[0] = LD(s->ce), v[1] = LD(s->ce_ptr);
    return atomic_load_explicit(&s->seq, memory_order_relaxed) == s1;
}

/* ------------------------------------------------------------------------
 * Packing.
 */

static uint64_t ctx_tag(const struct vtd_ctx *x)
{
    return PK_VALID | VTD_MAKE(x->kind, 3, 2) | VTD_MAKE(x->did, 31, 16) |
           VTD_MAKE(x->pasid, 63, 32);
}

/* The image of a resolved entry: stored and loaded a word at a time (each
 * an atomic, under the slot's sequence lock). */
static void img_store(_Atomic uint64_t *img, const struct vtd_ctx *x)
{
    uint64_t w[IMG_WORDS] = { 0 };
    memcpy(w, x, sizeof(*x));
    for (unsigned i = 0; i < IMG_WORDS; i++)
        ST(img[i], w[i]);
}

static uint64_t pack_cce(const struct cce *e)
{
    if (!e->sm)     /* legacy: the entry is the translation */
        return PK_VALID | VTD_MAKE(e->tt == VTD_CTX_TT_PASS_THROUGH ? VTD_XK_PT : VTD_XK_SL, 3, 2) |
               (e->fpd ? PK_FPD : 0) | (e->ats ? PK_ATS : 0) | VTD_MAKE(e->levels, 10, 8) |
               VTD_MAKE(e->did, 31, 16);
    return PK_VALID | PK_SM | (e->fpd ? PK_FPD : 0) | (e->ats ? PK_ATS : 0) |
           (e->paside ? PK_PASIDE : 0) | (e->rid_priv ? PK_PRIV : 0) |
           VTD_MAKE(e->rid_pasid, 51, 32) | VTD_MAKE(e->pdts, 54, 52);
}

static void unpack_cce(uint64_t w, uint64_t ptr, struct cce *e)
{
    memset(e, 0, sizeof(*e));
    e->sm = w & PK_SM;
    e->fpd = w & PK_FPD;
    e->ats = w & PK_ATS;
    e->ptr = ptr;
    if (!e->sm) {
        e->tt = PK_KIND(w) == VTD_XK_PT ? VTD_CTX_TT_PASS_THROUGH : 0;
        e->levels = (unsigned)PK_SL_LEVELS(w);
        e->did = (uint16_t)PK_DID(w);
    } else {
        e->paside = w & PK_PASIDE;
        e->rid_priv = w & PK_PRIV;
        e->rid_pasid = (uint32_t)PK_PASID(w);
        e->pdts = (unsigned)PK_PDTS(w);
    }
}

static void legacy_ctx(const struct cce *e, struct vtd_ctx *x)
{
    memset(x, 0, sizeof(*x));
    x->kind = e->tt == VTD_CTX_TT_PASS_THROUGH ? VTD_XK_PT : VTD_XK_SL;
    x->fpd = e->fpd;
    x->ats = e->ats;
    x->did = e->did;
    x->sl_root = e->ptr;
    x->sl_levels = (uint8_t)e->levels;
    x->pasid = VTD_NO_PASID;
}

/* ------------------------------------------------------------------------
 * Reading the structures from memory.
 */

static uint64_t above_haw(struct vtio_vtd *vtd)
{
    return vtd->haw >= 64 ? 0 : ~((1ull << vtd->haw) - 1);
}

static bool sagaw_has(struct vtio_vtd *vtd, unsigned aw)
{
    return aw >= 1 && aw <= 3 && (VTD_CAP_SAGAW(vtd->cap) & (1u << aw));
}

/* An entry of n quadwords, read one aligned quadword at a time: each is
 * single-copy atomic against the CPU's 8-byte stores (vtio_mem's promise),
 * as a hardware walker's reads are; the entry as a whole is not, and need
 * not be (software changes a live entry only through a not-present state
 * and an invalidation). */
static int read_qwords(struct vtio_vtd *vtd, uint64_t pa, uint64_t *q, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        int ret = vtd_read(vtd, pa + 8 * i, &q[i], 8);
        if (ret)
            return ret;
        q[i] = le64toh(q[i]);
    }
    return 0;
}

/* Legacy root and context entries (9.1, 9.3). */
static int read_legacy(struct vtio_vtd *vtd, uint64_t rta, uint16_t sid, struct cce *e,
                       bool *fpd)
{
    uint64_t re[2], ce[2];
    if (read_qwords(vtd, rta + 16ull * (sid >> 8), re, 2))
        return VTD_FR_ROOT_TABLE_INV;
    if (!(re[0] & VTD_ROOT_P))
        return VTD_FR_ROOT_ENTRY_P;
    if ((re[0] & (VTD_ROOT_LO_RSVD | above_haw(vtd))) || re[1])
        return VTD_FR_ROOT_ENTRY_RSVD;

    if (read_qwords(vtd, (re[0] & VTD_ROOT_CTP_MASK) + 16ull * (sid & 0xff), ce, 2))
        return VTD_FR_CONTEXT_TABLE_INV;
    *fpd = ce[0] & VTD_CTX_FPD;         /* FPD applies even with P clear */
    if (!(ce[0] & VTD_CTX_P))
        return VTD_FR_CONTEXT_ENTRY_P;
    uint64_t did_rsvd = (uint64_t)~((1u << (4 + 2 * VTD_CAP_ND(vtd->cap))) - 1) & 0xffff;
    if ((ce[0] & (VTD_CTX_LO_RSVD | above_haw(vtd))) || (ce[1] & VTD_CTX_HI_RSVD) ||
        (VTD_CTX_DID(ce[1]) & did_rsvd))
        return VTD_FR_CONTEXT_ENTRY_RSVD;

    memset(e, 0, sizeof(*e));
    e->fpd = *fpd;
    e->tt = (unsigned)VTD_CTX_TT(ce[0]);
    e->did = (uint16_t)VTD_CTX_DID(ce[1]);
    e->ptr = ce[0] & VTD_CTX_SLPTPTR_MASK;
    e->levels = VTD_AW_TO_LEVELS((unsigned)VTD_CTX_AW(ce[1]));
    /* TT: 00 SL only; 01 SL + device-TLB (ECAP.DT); 10 pass-through (ECAP.PT). */
    switch (e->tt) {
    case VTD_CTX_TT_MULTI_LEVEL:
        break;
    case VTD_CTX_TT_DEV_IOTLB:
        if (!(vtd->ecap & VTD_ECAP_DT))
            return VTD_FR_CONTEXT_ENTRY_INV;
        e->ats = true;
        break;
    case VTD_CTX_TT_PASS_THROUGH:
        if (!(vtd->ecap & VTD_ECAP_PT))
            return VTD_FR_CONTEXT_ENTRY_INV;
        return 0;                       /* AW does not matter */
    default:
        return VTD_FR_CONTEXT_ENTRY_INV;
    }
    if (!sagaw_has(vtd, (unsigned)VTD_CTX_AW(ce[1])))
        return VTD_FR_CONTEXT_ENTRY_INV;
    return 0;
}

/* Scalable-mode root and context entries (9.2, 9.4). */
static int read_scalable(struct vtio_vtd *vtd, uint64_t rta, uint16_t sid, struct cce *e,
                         bool *fpd)
{
    uint64_t re, ce[4];
    bool upper = sid & 0x80;            /* devfn 128-255: the upper table */
    if (read_qwords(vtd, rta + 16ull * (sid >> 8) + (upper ? 8 : 0), &re, 1))
        return VTD_FR_ROOT_TABLE_INV;
    if (!(re & VTD_ROOT_LP))            /* LP or UP: bit 0 of its half */
        return VTD_FR_ROOT_ENTRY_P;
    if (re & (VTD_ROOT_LO_RSVD | above_haw(vtd)))
        return VTD_FR_ROOT_ENTRY_RSVD;

    if (read_qwords(vtd, (re & VTD_ROOT_CTP_MASK) + 32ull * (sid & 0x7f), ce, 4))
        return VTD_FR_CONTEXT_TABLE_INV;
    *fpd = ce[0] & VTD_SM_CTX_FPD;
    if (!(ce[0] & VTD_SM_CTX_P))
        return VTD_FR_CONTEXT_ENTRY_P;
    if ((ce[0] & (VTD_SM_CTX_Q0_RSVD | above_haw(vtd))) || (ce[1] & VTD_SM_CTX_Q1_RSVD) ||
        ce[2] || ce[3])
        return VTD_FR_CONTEXT_ENTRY_RSVD;

    memset(e, 0, sizeof(*e));
    e->sm = true;
    e->fpd = *fpd;
    e->ats = (ce[0] & VTD_SM_CTX_DTE) && (vtd->ecap & VTD_ECAP_DT);
    e->paside = (ce[0] & VTD_SM_CTX_PASIDE) && (vtd->ecap & VTD_ECAP_PASID);
    e->pdts = (unsigned)VTD_SM_CTX_PDTS(ce[0]);
    e->ptr = ce[0] & VTD_SM_CTX_PDIR_MASK;
    e->rid_pasid = (uint32_t)VTD_SM_CTX_RID_PASID(ce[1]);
    e->rid_priv = ce[1] & VTD_BIT(20);
    return 0;
}

static int read_context(struct vtio_vtd *vtd, uint16_t sid, struct cce *e, bool *fpd)
{
    uint64_t rta = atomic_load_explicit(&vtd->rtaddr_active, memory_order_acquire);
    unsigned ttm = (unsigned)VTD_RTADDR_TTM(rta);
    if (ttm == 0)
        return read_legacy(vtd, rta & VTD_RTADDR_ADDR_MASK, sid, e, fpd);
    if (ttm == 1 && (vtd->ecap & VTD_ECAP_SMTS))
        return read_scalable(vtd, rta & VTD_RTADDR_ADDR_MASK, sid, e, fpd);
    return VTD_FR_RTADDR_INV_TTM;
}

/* PASID directory and PASID-table entry of pasid (9.5, 9.6). */
static int read_pasid(struct vtio_vtd *vtd, const struct cce *e, uint32_t pasid,
                      struct vtd_ctx *x, bool *fpd)
{
    uint64_t dir_index = pasid >> 6, pdire, pe[8];
    if (dir_index >= (1ull << (e->pdts + 7)))
        return VTD_FR_PASID_DIR_ACCESS_ERR;
    if (read_qwords(vtd, e->ptr + 8 * dir_index, &pdire, 1))
        return VTD_FR_PASID_DIR_ACCESS_ERR;
    if (pdire & VTD_PDIRE_FPD)
        *fpd = true;
    if (!(pdire & VTD_PDIRE_P))
        return VTD_FR_PASID_DIR_ENTRY_P;
    if (read_qwords(vtd, (pdire & VTD_PDIRE_PTBL_MASK) + 64ull * (pasid & 63), pe, 8))
        return VTD_FR_PASID_TABLE_ACCESS_ERR;
    if (pe[0] & VTD_PTE_FPD)
        *fpd = true;
    if (!(pe[0] & VTD_PTE_P))
        return VTD_FR_PASID_ENTRY_P;

    memset(x, 0, sizeof(*x));
    /* PGTT must name a translation type ECAP advertises. */
    unsigned pgtt = (unsigned)VTD_PTE_PGTT(pe[0]);
    uint64_t need;
    switch (pgtt) {
    case VTD_PGTT_FL:     x->kind = VTD_XK_FL;     need = VTD_ECAP_FSTS; break;
    case VTD_PGTT_SL:     x->kind = VTD_XK_SL;     need = VTD_ECAP_SSTS; break;
    case VTD_PGTT_NESTED: x->kind = VTD_XK_NESTED; need = VTD_ECAP_NEST; break;
    case VTD_PGTT_PT:     x->kind = VTD_XK_PT;     need = VTD_ECAP_PT;   break;
    default:
        return VTD_FR_PASID_TABLE_ENTRY_INV;
    }
    if (!(vtd->ecap & need))
        return VTD_FR_PASID_TABLE_ENTRY_INV;
    /* Second stage: AW must be in SAGAW. */
    if (pgtt == VTD_PGTT_SL || pgtt == VTD_PGTT_NESTED) {
        unsigned aw = (unsigned)VTD_PTE_AW(pe[0]);
        if (!sagaw_has(vtd, aw))
            return VTD_FR_PASID_TABLE_ENTRY_INV;
        x->sl_root = pe[0] & VTD_PTE_SSPTPTR_MASK;
        x->sl_levels = (uint8_t)VTD_AW_TO_LEVELS(aw);
    }
    /* First stage: FSPM 0 = 4-level, 1 = 5-level (CAP.FS5LP). */
    if (pgtt == VTD_PGTT_FL || pgtt == VTD_PGTT_NESTED) {
        unsigned fspm = (unsigned)VTD_PTE_FSPM(pe[2]);
        if (fspm > 1 || (fspm == 1 && !(vtd->cap & VTD_CAP_FS5LP)))
            return VTD_FR_PASID_TABLE_ENTRY_INV;
        x->fl_root = pe[2] & VTD_PTE_FSPTPTR_MASK;
        x->fl_levels = (uint8_t)(4 + fspm);
        x->sre = (pe[2] & VTD_PTE_SRE) && (vtd->ecap & VTD_ECAP_SRS);
        x->wpe = pe[2] & VTD_PTE_WPE;
    }
    x->did = (uint16_t)VTD_PTE_DID(pe[1]);
    x->fpd = *fpd;
    x->ats = e->ats;
    x->pasid = pasid;
    x->rid_priv = e->rid_priv;
    return 0;
}

/* ------------------------------------------------------------------------
 * Lookup.
 */

static struct sid_slot *sid_slot_get(struct vtd_ctx_cache *c, uint16_t sid)
{
    struct sid_bus *b = atomic_load_explicit(&c->bus[sid >> 8], memory_order_acquire);
    return b ? &b->slot[sid & 0xff] : NULL;
}

/* The slot of sid, allocating its bus.  Caller holds c->lock. */
static struct sid_slot *sid_slot_make(struct vtd_ctx_cache *c, uint16_t sid)
{
    struct sid_bus *b = atomic_load_explicit(&c->bus[sid >> 8], memory_order_relaxed);
    if (!b) {
        b = calloc(1, sizeof(*b));
        if (!b)
            return NULL;                /* nothing cached: still correct */
        atomic_store_explicit(&c->bus[sid >> 8], b, memory_order_release);
    }
    return &b->slot[sid & 0xff];
}

/* Stores what a slow lookup read, unless an invalidation came in between:
 * the context entry e, and the translation x (NULL after a fault) that a
 * request without PASID (in the sid slot) or with PASID (in the PASID
 * cache) resolved to. */
static void fill(struct vtio_vtd *vtd, uint64_t gen, uint16_t sid, const struct cce *e,
                 bool has_pasid, const struct vtd_ctx *x)
{
    struct vtd_ctx_cache *c = vtd->ctx_cache;
    pthread_mutex_lock(&c->lock);
    if (atomic_load_explicit(&c->gen, memory_order_relaxed) != gen)
        goto out;
    struct sid_slot *s = sid_slot_make(c, sid);
    if (!s)
        goto out;
    bool rp = !has_pasid && x;
    if (!(LD(s->ce) & PK_VALID) || rp) {
        VTD_SEQ_WRITE_BEGIN(&s->seq);
        ST(s->ce, pack_cce(e));
        ST(s->ce_ptr, e->ptr);
        if (rp) {
            img_store(s->img, x);
            ST(s->rp, ctx_tag(x));
        }
        VTD_SEQ_WRITE_END(&s->seq);
    }
    if (has_pasid && x) {
        struct pasid_slot *p = &c->pslot[ctx_pasid_hash(sid, x->pasid)];
        VTD_SEQ_WRITE_BEGIN(&p->seq);
        ST(p->sid, sid);
        img_store(p->img, x);
        ST(p->w, ctx_tag(x));
        VTD_SEQ_WRITE_END(&p->seq);
    }
out:
    pthread_mutex_unlock(&c->lock);
}

__attribute__((noinline))
static int lookup_slow(struct vtio_vtd *vtd, uint16_t sid, bool has_pasid, uint32_t pasid,
                       struct vtd_ctx *x, bool *fpd)
{
    struct vtd_ctx_cache *c = vtd->ctx_cache;
    /* The generation before anything is read: a fill is dropped if an
     * invalidation has run since. */
    uint64_t gen = atomic_load_explicit(&c->gen, memory_order_acquire);
    struct sid_slot *s = sid_slot_get(c, sid);
    struct cce e;
    uint64_t v[2];
    int fr;

    *fpd = false;
    if (s && sid_slot_read(s, v) && (v[0] & PK_VALID)) {
        vtd_count_hot(vtd, VTD_HOT_CONTEXT_CACHE_HITS);
        unpack_cce(v[0], v[1], &e);
        *fpd = e.fpd;
    } else {
        VTD_COUNT(vtd, context_cache_misses);
        if ((fr = read_context(vtd, sid, &e, fpd)) != 0)
            return fr;
    }

    if (!e.sm) {
        if (has_pasid) {                /* no PASID structures in legacy mode */
            fill(vtd, gen, sid, &e, has_pasid, NULL);
            return VTD_FR_CONTEXT_ENTRY_TT;
        }
        legacy_ctx(&e, x);
        fill(vtd, gen, sid, &e, has_pasid, x);
        return 0;
    }
    if (has_pasid && !e.paside) {
        fill(vtd, gen, sid, &e, has_pasid, NULL);
        return VTD_FR_CONTEXT_ENTRY_TT;
    }
    fr = read_pasid(vtd, &e, has_pasid ? pasid : e.rid_pasid, x, fpd);
    fill(vtd, gen, sid, &e, has_pasid, fr ? NULL : x);
    return fr;
}

int vtd_ctx_lookup(struct vtio_vtd *vtd, uint16_t sid, bool has_pasid, uint32_t pasid,
                   struct vtd_ctx *ctx, bool *fpd)
{
    /* Fast path: everything cached; no lock, no memory read, no store but
     * the thread's own counter. */
    if (__builtin_expect(vtd_ctx_cached(vtd, sid, has_pasid, pasid, ctx) != 0, 1)) {
        vtd_count_hot(vtd, VTD_HOT_CONTEXT_CACHE_HITS);
        *fpd = ctx->fpd;
        return 0;
    }
    return lookup_slow(vtd, sid, has_pasid, pasid, ctx, fpd);
}

/* ------------------------------------------------------------------------
 * Invalidation.
 */

static void sid_slot_clear(struct sid_slot *s, bool ce, bool rp)
{
    VTD_SEQ_WRITE_BEGIN(&s->seq);
    if (ce) {
        ST(s->ce, 0);
        ST(s->ce_ptr, 0);
    }
    if (ce || rp)                       /* the resolved entry needs its context */
        ST(s->rp, 0);
    VTD_SEQ_WRITE_END(&s->seq);
}

static void pasid_slot_clear(struct pasid_slot *p)
{
    VTD_SEQ_WRITE_BEGIN(&p->seq);
    ST(p->w, 0);
    ST(p->sid, 0);
    VTD_SEQ_WRITE_END(&p->seq);
}

/* Function mask (6.5.1.1, CCMD.FM): 1 masks SID bit 2, 2 bits 2:1, 3 bits 2:0. */
static uint16_t fm_mask(unsigned fm)
{
    static const uint16_t mask[4] = { 0xffff, 0xfffb, 0xfff9, 0xfff8 };
    return mask[fm & 3];
}

void vtd_ctx_cache_inv(struct vtio_vtd *vtd, unsigned gran, uint16_t did, uint16_t sid,
                       unsigned fm)
{
    struct vtd_ctx_cache *c = vtd->ctx_cache;
    uint16_t m = fm_mask(fm);
    pthread_mutex_lock(&c->lock);
    atomic_fetch_add_explicit(&c->gen, 1, memory_order_release);
    for (unsigned bus = 0; bus < 256; bus++) {
        struct sid_bus *b = atomic_load_explicit(&c->bus[bus], memory_order_relaxed);
        if (!b)
            continue;
        for (unsigned devfn = 0; devfn < 256; devfn++) {
            struct sid_slot *s = &b->slot[devfn];
            uint64_t ce = LD(s->ce);
            uint16_t this = (uint16_t)(bus << 8 | devfn);
            bool drop;
            if (!(ce & PK_VALID))
                continue;
            if (gran == VTD_INV_DOMAIN)
                drop = (ce & PK_SM) || PK_DID(ce) == did;
            else if (gran == VTD_INV_DEVICE)
                drop = (this & m) == (sid & m);
            else
                drop = true;            /* global (and anything else) */
            if (drop)
                sid_slot_clear(s, true, true);
        }
    }
    for (unsigned i = 0; i < PASID_SLOTS; i++) {
        struct pasid_slot *p = &c->pslot[i];
        if (!(LD(p->w) & PK_VALID))
            continue;
        if (gran != VTD_INV_DEVICE || ((uint16_t)LD(p->sid) & m) == (sid & m))
            pasid_slot_clear(p);
    }
    pthread_mutex_unlock(&c->lock);
}

void vtd_pasid_cache_inv(struct vtio_vtd *vtd, unsigned gran, uint16_t did, uint32_t pasid)
{
    struct vtd_ctx_cache *c = vtd->ctx_cache;
    pthread_mutex_lock(&c->lock);
    atomic_fetch_add_explicit(&c->gen, 1, memory_order_release);
#define PC_MATCH(w)                                                            \
    (gran == VTD_INV_PC_G_DOMAIN ? PK_DID(w) == did                            \
     : gran == VTD_INV_PC_G_PASID ? PK_DID(w) == did && TAG_PASID(w) == pasid   \
     : true)
    for (unsigned bus = 0; bus < 256; bus++) {
        struct sid_bus *b = atomic_load_explicit(&c->bus[bus], memory_order_relaxed);
        for (unsigned devfn = 0; b && devfn < 256; devfn++) {
            uint64_t rp = LD(b->slot[devfn].rp);
            if ((rp & PK_VALID) && (LD(b->slot[devfn].ce) & PK_SM) && PC_MATCH(rp))
                sid_slot_clear(&b->slot[devfn], false, true);
        }
    }
    for (unsigned i = 0; i < PASID_SLOTS; i++) {
        uint64_t w = LD(c->pslot[i].w);
        if ((w & PK_VALID) && PC_MATCH(w))
            pasid_slot_clear(&c->pslot[i]);
    }
#undef PC_MATCH
    pthread_mutex_unlock(&c->lock);
}
