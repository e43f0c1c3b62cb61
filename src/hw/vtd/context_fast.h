/*
 * The context and PASID caches' slots and their lock-free read, shared by
 * context.c (which owns the caches: the structures in memory, fills,
 * invalidations) and translate.c, whose IOTLB-hit path inlines the read
 * and takes from it only the tag (kind, DID, PASID), not the whole entry.
 * See context.c for the model; this header only reads.
 */
#ifndef VTIO_HW_VTD_CONTEXT_FAST_H
#define VTIO_HW_VTD_CONTEXT_FAST_H

#include "hw/vtd/vtd_internal.h"

#include <string.h>

#define CTX_HOT static inline __attribute__((always_inline))

#define PASID_SLOTS 1024u               /* PASID cache: direct-mapped */

/* A decoded context entry packed into one word (plus its table pointer),
 * and the tag of a resolved entry (valid, kind, DID, PASID: invalidations
 * match DID and PASID; the kind is there so that the IOTLB-hit path needs
 * nothing else).  The resolved entry itself is kept as an image of its
 * struct vtd_ctx, so the slow users copy words and decode nothing. */
#define PK_VALID        VTD_BIT(0)
#define PK_SM           VTD_BIT(1)      /* a scalable-mode context entry */
#define PK_KIND(w)      VTD_FIELD(w, 3, 2)  /* context entry and tag */
#define PK_FPD          VTD_BIT(4)
#define PK_ATS          VTD_BIT(5)
#define PK_SL_LEVELS(w) VTD_FIELD(w, 10, 8)
#define PK_PASIDE       VTD_BIT(14)
#define PK_PRIV         VTD_BIT(15)     /* RID_PRIV */
#define PK_DID(w)       VTD_FIELD(w, 31, 16)    /* context entry and tag */
#define PK_PASID(w)     VTD_FIELD(w, 51, 32)    /* RID_PASID */
#define PK_PDTS(w)      VTD_FIELD(w, 54, 52)
#define TAG_PASID(w)    VTD_FIELD(w, 63, 32)    /* tag: PASID, VTD_NO_PASID whole */
/* The tag without its kind is the IOTLB's tag of the same DID and PASID
 * (iotlb_fast.h: tlb_make_tag), which the hit path uses as it is. */
#define TAG_IOTLB(w)    ((w) & ~VTD_MAKE(3, 3, 2))

#define IMG_WORDS 6
_Static_assert(sizeof(struct vtd_ctx) == 8 * IMG_WORDS, "a vtd_ctx is a slot's image");

/* One requester id: its context-cache entry, and the translation that its
 * requests without PASID use (legacy: the context entry's; scalable: the
 * RID_PASID entry's, i.e. a PASID-cache entry).  ce == 0 / rp == 0: empty.
 * seq and rp first: the IOTLB-hit path reads only those (and seq again). */
struct sid_slot {
    _Atomic uint32_t seq;               /* odd while a writer is inside */
    _Atomic uint64_t rp;                /* tag of img */
    _Atomic uint64_t ce, ce_ptr;        /* ce_ptr: SL table or PASID directory */
    _Atomic uint64_t img[IMG_WORDS];    /* struct vtd_ctx */
};

struct sid_bus {
    struct sid_slot slot[256];
};

/* A PASID-cache entry for a request with PASID (w's PASID field and sid
 * are the key). */
struct pasid_slot {
    _Atomic uint32_t seq;
    _Atomic uint32_t sid;
    _Atomic uint64_t w;                 /* tag of img */
    _Atomic uint64_t img[IMG_WORDS];
};

struct vtd_ctx_cache {
    pthread_mutex_t lock;               /* fills and invalidations */
    _Atomic uint64_t gen;               /* bumped by every invalidation */
    _Atomic(struct sid_bus *) bus[256]; /* allocated under lock, kept until fini */
    struct pasid_slot pslot[PASID_SLOTS];
};

CTX_HOT unsigned ctx_pasid_hash(uint16_t sid, uint32_t pasid)
{
    uint32_t h = (uint32_t)sid * 0x9e3779b1u ^ pasid * 0x85ebca77u;
    return (h ^ (h >> 15)) % PASID_SLOTS;
}

/* A slot's image into *x, word by word into place (no staging copy: a
 * wide reload of narrow stores would stall on store forwarding).  Acquire
 * loads, inside the slot's sequence lock (see context.c). */
CTX_HOT void ctx_img_load(_Atomic uint64_t *img, struct vtd_ctx *x)
{
    for (unsigned i = 0; i < IMG_WORDS; i++) {
        uint64_t w = atomic_load_explicit(&img[i], memory_order_acquire);
        memcpy((char *)x + 8 * i, &w, 8);
    }
}

/* What the caches hold for (sid, pasid): the sid slot's resolved entry for
 * a request without PASID, the PASID cache's for one with (if the context
 * entry is cached, scalable and allows PASIDs).  No lock, no store.
 * @returns the entry's tag (PK_VALID | kind | DID | PASID) and, if img is
 * not NULL, the entry in *img; 0 if nothing is cached or a writer was
 * inside (the caller takes the slow path). */
CTX_HOT uint64_t vtd_ctx_cached(struct vtio_vtd *vtd, uint16_t sid, bool has_pasid,
                                uint32_t pasid, struct vtd_ctx *img)
{
    struct vtd_ctx_cache *c = vtd->ctx_cache;
    struct sid_bus *b = atomic_load_explicit(&c->bus[sid >> 8], memory_order_acquire);
    if (__builtin_expect(b == NULL, 0))
        return 0;
    struct sid_slot *s = &b->slot[sid & 0xff];
    uint32_t s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
    if (s1 & 1)
        return 0;
    if (!has_pasid) {
        uint64_t tag = atomic_load_explicit(&s->rp, memory_order_acquire);
        if (!(tag & PK_VALID))
            return 0;
        if (img)
            ctx_img_load(s->img, img);
        return atomic_load_explicit(&s->seq, memory_order_relaxed) == s1 ? tag : 0;
    }
    const uint64_t need = PK_VALID | PK_SM | PK_PASIDE;
    if ((atomic_load_explicit(&s->ce, memory_order_acquire) & need) != need ||
        atomic_load_explicit(&s->seq, memory_order_relaxed) != s1)
        return 0;
    struct pasid_slot *p = &c->pslot[ctx_pasid_hash(sid, pasid)];
    uint32_t p1 = atomic_load_explicit(&p->seq, memory_order_acquire);
    uint32_t psid = atomic_load_explicit(&p->sid, memory_order_acquire);
    uint64_t tag = atomic_load_explicit(&p->w, memory_order_acquire);
    if ((p1 & 1) || !(tag & PK_VALID) || psid != sid || TAG_PASID(tag) != pasid)
        return 0;
    if (img)
        ctx_img_load(p->img, img);
    return atomic_load_explicit(&p->seq, memory_order_relaxed) == p1 ? tag : 0;
}

#endif
