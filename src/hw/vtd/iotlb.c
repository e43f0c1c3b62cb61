/*
 * The IOTLB and the device-TLB (VT-d spec 6.5: caching of leaf translations,
 * and their invalidation by domain, page range and PASID; 4.1: ATS).
 *
 * Model.  The IOTLB caches leaf translations found by page walks, tagged by
 * domain id, PASID (VTD_NO_PASID for requests without one) and page size.
 * A first-level entry also keeps the privilege of the request that walked
 * it (DATA_FL, DATA_SUP), because its permissions hold for that privilege
 * only; the callers take its hit only for a request of the same privilege
 * (vtd_xlate_priv_ok).
 * There is one array per page size (4 KiB, 2 MiB, 1 GiB), each
 * set-associative (WAYS ways), indexed by a hash of the page number and the
 * domain id only, so that a page-selective invalidation, which names no
 * PASID, finds every PASID's entries of a page in one set.  A lookup probes
 * the 4 KiB array first and the superpage arrays only while they hold
 * something, so an address inside a 2 MiB entry hits it.  vtio caches
 * leaf entries only (no paging-structure caches); invalidation hints that
 * let hardware keep paging-structure entries (IH) therefore change nothing:
 * the leaf entries of the range are dropped either way, as the spec
 * requires.
 *
 * The device-TLB stands for the address-translation caches of ATS
 * endpoints, which the unit keeps on their behalf: the same structure,
 * tagged by source-id instead of domain id, filled by ATS translation
 * requests and emptied by device-TLB invalidation descriptors.  A source-id
 * is an "ATS endpoint" from its first fill or vtd_devtlb_attach(); a
 * device-TLB invalidation aimed elsewhere has no one to answer it (ITE).
 *
 * Dropping more than asked is always allowed (the spec lets hardware
 * invalidate more); vtio does so in two places: the IOTLB descriptor's
 * domain and page-selective forms drop the domain's entries of every PASID,
 * and the PASID-based forms also drop the domain's entries tagged
 * VTD_NO_PASID (in scalable mode those come from the RID_PASID entry, which
 * may be the PASID named).
 *
 * Invariants:
 *  - an entry is a sequence lock over atomics: seq is odd while a writer is
 *    inside, and key/tag/data are only meaningful when seq read the same
 *    even value before and after them;
 *  - a fill never outlives an invalidation that ran after its walk began:
 *    a lookup that misses opens a "fill ticket" (thread-local) holding the
 *    table's invalidation generation; the insert that follows is dropped if
 *    the generation moved (or if no ticket matches), so a walk that read a
 *    removed entry cannot cache it after the invalidation completed.
 *
 * Threads: lookups from any number of threads take no lock and write no
 * shared memory (only the thread's own fill ticket on a miss).  Fills and
 * invalidations are serialised by the table's lock (a leaf lock: nothing is
 * called with it held).
 *
 * The tables and the lock-free probe are in iotlb_fast.h, so that the
 * IOTLB-hit path in translate.c inlines the probe; this file owns the rest.
 */
#include "hw/vtd/iotlb_fast.h"

#include "util/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The hit path (iotlb_fast.h) is inlined whole into vtd_iotlb_lookup /
 * vtd_devtlb_lookup; the miss path stays out of line. */
#define COLD static __attribute__((noinline, cold))

#define WAYS        TLB_WAYS
#define NSIZES      TLB_NSIZES

static const unsigned page_shift[NSIZES] = { TLB_SHIFT(0), TLB_SHIFT(1), TLB_SHIFT(2) };
/* Sets per page size (powers of two): 4K, 1K and 256 entries in the IOTLB
 * (168 KiB), a quarter of that in the device-TLB. */
static const unsigned iotlb_sets[NSIZES] = { 1024, 256, 64 };
static const unsigned devtlb_sets[NSIZES] = { 256, 64, 16 };

static _Atomic uint64_t next_tlb_id = 1;

/* ------------------------------------------------------------------------
 * Fill tickets: per thread, the tables' generations seen by recent misses.
 */

#define TICKETS 4

struct fill_ticket {
    uint64_t tlb_id;                    /* 0: free */
    uint64_t page;                      /* addr >> 12 */
    uint32_t pasid;
    uint16_t id;
    uint64_t gen;
};

static __thread struct fill_ticket tickets[TICKETS];
static __thread unsigned ticket_next;

static struct fill_ticket *ticket_find(uint64_t tlb_id, uint16_t id, uint32_t pasid,
                                       uint64_t addr, unsigned shift)
{
    for (unsigned i = 0; i < TICKETS; i++) {
        struct fill_ticket *t = &tickets[i];
        if (t->tlb_id == tlb_id && t->id == id && t->pasid == pasid &&
            (t->page << 12) >> shift == addr >> shift)
            return t;
    }
    return NULL;
}

/* A miss: remember the generation.  An open ticket for the same page keeps
 * its older generation (its walk may still be running further up). */
COLD void ticket_open(struct tlb *t, uint16_t id, uint32_t pasid, uint64_t addr)
{
    if (ticket_find(t->id, id, pasid, addr, 12))
        return;
    struct fill_ticket *k = &tickets[ticket_next++ % TICKETS];
    /* Acquire: the walk that follows sees every table write made before the
     * invalidation that published this generation. */
    k->gen = atomic_load_explicit(&t->gen, memory_order_acquire);
    k->tlb_id = t->id;
    k->page = addr >> 12;
    k->pasid = pasid;
    k->id = id;
}

/* ------------------------------------------------------------------------
 * The set-associative table.
 */

static uint16_t tag_id(uint64_t tag)
{
    return (uint16_t)(tag >> 16);
}

static uint32_t tag_pasid(uint64_t tag)
{
    return (uint32_t)(tag >> 32);
}

/* Leaves *t safe to tlb_fini() even when it fails. */
static int tlb_init(struct tlb *t, const unsigned *sets)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    t->id = atomic_fetch_add(&next_tlb_id, 1);
    atomic_init(&t->gen, 1);
    for (unsigned s = 0; s < NSIZES; s++) {
        struct tlb_array *a = &t->arr[s];
        a->shift = page_shift[s];
        a->mask = sets[s] - 1;
        a->sets = aligned_alloc(128, sets[s] * sizeof(struct tlb_set));
        a->victim = calloc(sets[s], 1);
        if (!a->sets || !a->victim)
            return -ENOMEM;
        memset(a->sets, 0, sets[s] * sizeof(struct tlb_set));
        atomic_init(&a->valid, 0);
    }
    return 0;
}

static void tlb_fini(struct tlb *t)
{
    for (unsigned s = 0; s < NSIZES; s++) {
        free(t->arr[s].sets);
        free(t->arr[s].victim);
    }
    pthread_mutex_destroy(&t->lock);
}

/* The sequence lock (vtd_internal.h): its reader is tlb_entry_match
 * (iotlb_fast.h). */

/* Writes one entry; under the table lock (one writer at a time). */
static void entry_write(struct tlb_entry *e, uint64_t key, uint64_t tag, uint64_t data)
{
    VTD_SEQ_WRITE_BEGIN(&e->seq);
    atomic_store_explicit(&e->key, key, memory_order_release);
    atomic_store_explicit(&e->tag, tag, memory_order_release);
    atomic_store_explicit(&e->data, data, memory_order_release);
    VTD_SEQ_WRITE_END(&e->seq);
}

/* A lookup: the lock-free probe, and on a miss the fill ticket. */
static inline __attribute__((always_inline))
bool tlb_lookup(struct tlb *t, uint16_t id, uint32_t pasid, uint64_t addr,
                struct vtd_xlate *out)
{
    uint64_t d = tlb_probe(t, tlb_make_tag(id, pasid), addr);
    if (d) {
        *out = (struct vtd_xlate){ .pa = d & DATA_PA, .shift = (uint8_t)TLB_HIT_SHIFT(d),
                                   .read = d & DATA_R, .write = d & DATA_W,
                                   .fl = d & DATA_FL, .sup = d & DATA_SUP };
        return true;
    }
    ticket_open(t, id, pasid, addr);
    return false;
}

static void tlb_insert(struct tlb *t, uint16_t id, uint32_t pasid, uint64_t addr,
                       const struct vtd_xlate *x)
{
    unsigned s;
    for (s = 0; s < NSIZES && page_shift[s] != x->shift; s++)
        ;
    if (s == NSIZES)
        return;                         /* not a page size the unit caches */
    struct tlb_array *a = &t->arr[s];
    uint64_t key = addr >> a->shift, tag = tlb_make_tag(id, pasid);
    uint64_t data = (x->pa & ~((1ull << a->shift) - 1)) | (x->read ? DATA_R : 0) |
                    (x->write ? DATA_W : 0) | (x->fl ? DATA_FL : 0) | (x->sup ? DATA_SUP : 0);

    pthread_mutex_lock(&t->lock);
    struct fill_ticket *k = ticket_find(t->id, id, pasid, addr, a->shift);
    bool fresh = k && k->gen == atomic_load_explicit(&t->gen, memory_order_relaxed);
    if (k)
        k->tlb_id = 0;                  /* one fill per miss */
    if (!fresh) {
        pthread_mutex_unlock(&t->lock);
        return;                         /* an invalidation ran since the miss */
    }
    struct tlb_set *set = tlb_set_of(a, key, id);
    size_t si = (size_t)(set - a->sets);
    int way = -1, empty = -1;
    for (unsigned w = 0; w < WAYS; w++) {
        /* Under the lock nothing changes under us: plain loads suffice. */
        uint64_t g = atomic_load_explicit(&set->e[w].tag, memory_order_relaxed);
        if (!(g & TAG_VALID)) {
            if (empty < 0)
                empty = (int)w;
        } else if (g == tag &&
                   atomic_load_explicit(&set->e[w].key, memory_order_relaxed) == key) {
            way = (int)w;               /* refresh the entry in place */
        }
    }
    if (way < 0 && empty >= 0) {
        way = empty;
        atomic_fetch_add_explicit(&a->valid, 1, memory_order_relaxed);
    } else if (way < 0) {
        way = a->victim[si];            /* round-robin replacement */
        a->victim[si] = (uint8_t)((way + 1) % WAYS);
    }
    entry_write(&set->e[way], key, tag, data);
    pthread_mutex_unlock(&t->lock);
}

/* What an invalidation drops. */
struct inv_sel {
    bool any_id;                        /* every id (global) */
    uint16_t id;
    bool any_pasid;
    uint32_t pasid;
    bool no_pasid_too;                  /* with a pasid: also VTD_NO_PASID entries */
    uint64_t first, last;               /* byte range, inclusive */
};

static bool sel_match(const struct inv_sel *sel, uint64_t tag, uint64_t key, unsigned shift)
{
    if (!(tag & TAG_VALID))
        return false;
    if (!sel->any_id && tag_id(tag) != sel->id)
        return false;
    if (!sel->any_pasid && tag_pasid(tag) != sel->pasid &&
        !(sel->no_pasid_too && tag_pasid(tag) == VTD_NO_PASID))
        return false;
    /* The entry's page overlaps the range (a superpage overlapping a small
     * range is dropped whole). */
    uint64_t lo = key << shift, hi = lo + ((1ull << shift) - 1);
    return lo <= sel->last && sel->first <= hi;
}

static void drop_in_set(struct tlb_array *a, struct tlb_set *set, const struct inv_sel *sel)
{
    for (unsigned w = 0; w < WAYS; w++) {
        struct tlb_entry *e = &set->e[w];
        uint64_t tag = atomic_load_explicit(&e->tag, memory_order_relaxed);
        uint64_t key = atomic_load_explicit(&e->key, memory_order_relaxed);
        if (sel_match(sel, tag, key, a->shift)) {
            entry_write(e, 0, 0, 0);
            atomic_fetch_sub_explicit(&a->valid, 1, memory_order_relaxed);
        }
    }
}

static void tlb_invalidate(struct tlb *t, const struct inv_sel *sel)
{
    pthread_mutex_lock(&t->lock);
    /* First the generation, so a fill whose walk began before this point is
     * refused even if it reaches the lock after we leave it.  Release: a
     * walk that reads this generation sees the table writes before it. */
    atomic_fetch_add_explicit(&t->gen, 1, memory_order_acq_rel);
    for (unsigned s = 0; s < NSIZES; s++) {
        struct tlb_array *a = &t->arr[s];
        if (!atomic_load_explicit(&a->valid, memory_order_relaxed))
            continue;
        uint64_t k0 = sel->first >> a->shift, k1 = sel->last >> a->shift;
        if (!sel->any_id && k1 - k0 <= a->mask) {
            /* A short range of one id: only the sets its pages hash to. */
            for (uint64_t k = k0;; k++) {
                drop_in_set(a, tlb_set_of(a, k, sel->id), sel);
                if (k == k1)
                    break;
            }
        } else {
            for (uint64_t i = 0; i <= a->mask; i++)
                drop_in_set(a, &a->sets[i], sel);
        }
    }
    pthread_mutex_unlock(&t->lock);
}

/* The byte range [addr, addr + 2^shift) with addr aligned down. */
static void sel_range(struct inv_sel *sel, uint64_t addr, unsigned shift)
{
    if (shift >= 64) {
        sel->first = 0;
        sel->last = UINT64_MAX;
        return;
    }
    uint64_t size = 1ull << shift;
    sel->first = addr & ~(size - 1);
    sel->last = sel->first + (size - 1);
}

/* ------------------------------------------------------------------------
 * The IOTLB.
 */

int vtd_iotlb_init(struct vtio_vtd *vtd)
{
    struct vtd_iotlb *c = calloc(1, sizeof(*c));
    if (!c)
        return vtio_fail(-ENOMEM, "vtd: no memory for the IOTLB");
    int r1 = tlb_init(&c->iotlb, iotlb_sets), r2 = tlb_init(&c->devtlb, devtlb_sets);
    if (r1 < 0 || r2 < 0) {
        tlb_fini(&c->iotlb);
        tlb_fini(&c->devtlb);
        free(c);
        return vtio_fail(-ENOMEM, "vtd: no memory for the IOTLB");
    }
    vtd->iotlb = c;
    return 0;
}

void vtd_iotlb_fini(struct vtio_vtd *vtd)
{
    struct vtd_iotlb *c = vtd->iotlb;
    if (!c)
        return;
    tlb_fini(&c->iotlb);
    tlb_fini(&c->devtlb);
    free(c);
    vtd->iotlb = NULL;
}

bool vtd_iotlb_lookup(struct vtio_vtd *vtd, uint16_t did, uint32_t pasid, uint64_t addr,
                      struct vtd_xlate *out)
{
    return tlb_lookup(&vtd->iotlb->iotlb, did, pasid, addr, out);
}

void vtd_iotlb_insert(struct vtio_vtd *vtd, uint16_t did, uint32_t pasid, uint64_t addr,
                      const struct vtd_xlate *x)
{
    tlb_insert(&vtd->iotlb->iotlb, did, pasid, addr, x);
}

void vtd_iotlb_inv_all(struct vtio_vtd *vtd)
{
    struct inv_sel sel = { .any_id = true, .any_pasid = true, .last = UINT64_MAX };
    tlb_invalidate(&vtd->iotlb->iotlb, &sel);
}

void vtd_iotlb_inv_domain(struct vtio_vtd *vtd, uint16_t did)
{
    struct inv_sel sel = { .id = did, .any_pasid = true, .last = UINT64_MAX };
    tlb_invalidate(&vtd->iotlb->iotlb, &sel);
}

/* Page-selective (6.5.1.2): 2^am 4 KiB pages from addr aligned down to that
 * size.  ih only spares paging-structure caches, which vtio has none of. */
void vtd_iotlb_inv_page(struct vtio_vtd *vtd, uint16_t did, uint64_t addr, unsigned am,
                        bool ih)
{
    (void)ih;
    struct inv_sel sel = { .id = did, .any_pasid = true };
    sel_range(&sel, addr, 12 + am);
    tlb_invalidate(&vtd->iotlb->iotlb, &sel);
}

void vtd_iotlb_inv_pasid(struct vtio_vtd *vtd, uint16_t did, uint32_t pasid)
{
    struct inv_sel sel = { .id = did, .pasid = pasid, .no_pasid_too = true,
                           .last = UINT64_MAX };
    tlb_invalidate(&vtd->iotlb->iotlb, &sel);
}

void vtd_iotlb_inv_pasid_page(struct vtio_vtd *vtd, uint16_t did, uint32_t pasid,
                              uint64_t addr, unsigned am, bool ih)
{
    (void)ih;
    struct inv_sel sel = { .id = did, .pasid = pasid, .no_pasid_too = true };
    sel_range(&sel, addr, 12 + am);
    tlb_invalidate(&vtd->iotlb->iotlb, &sel);
}

/* ------------------------------------------------------------------------
 * The device-TLB.
 */

static void mark_ats_locked(struct vtd_iotlb *c, uint16_t sid)
{
    c->ats_sid[sid / 64] |= 1ull << (sid % 64);
}

bool vtd_devtlb_lookup(struct vtio_vtd *vtd, uint16_t sid, uint32_t pasid, uint64_t addr,
                       struct vtd_xlate *out)
{
    return tlb_lookup(&vtd->iotlb->devtlb, sid, pasid, addr, out);
}

void vtd_devtlb_insert(struct vtio_vtd *vtd, uint16_t sid, uint32_t pasid, uint64_t addr,
                       const struct vtd_xlate *x)
{
    vtd_devtlb_attach(vtd, sid);
    tlb_insert(&vtd->iotlb->devtlb, sid, pasid, addr, x);
}

void vtd_devtlb_attach(struct vtio_vtd *vtd, uint16_t sid)
{
    struct vtd_iotlb *c = vtd->iotlb;
    pthread_mutex_lock(&c->devtlb.lock);
    mark_ats_locked(c, sid);
    pthread_mutex_unlock(&c->devtlb.lock);
}

bool vtd_devtlb_inv(struct vtio_vtd *vtd, uint16_t sid, uint32_t pasid, uint64_t addr,
                    unsigned size_shift)
{
    struct vtd_iotlb *c = vtd->iotlb;
    pthread_mutex_lock(&c->devtlb.lock);
    bool ats = c->ats_sid[sid / 64] & (1ull << (sid % 64));
    pthread_mutex_unlock(&c->devtlb.lock);
    if (!ats)
        return false;
    struct inv_sel sel = { .id = sid, .any_pasid = pasid == VTD_NO_PASID, .pasid = pasid };
    sel_range(&sel, addr, size_shift);
    tlb_invalidate(&c->devtlb, &sel);
    return true;
}

void vtd_devtlb_inv_all(struct vtio_vtd *vtd)
{
    struct inv_sel sel = { .any_id = true, .any_pasid = true, .last = UINT64_MAX };
    tlb_invalidate(&vtd->iotlb->devtlb, &sel);
}
