/*
 * The IOTLB's tables and their lock-free probe, shared by iotlb.c (which
 * owns the tables: fills, invalidations, fill tickets) and translate.c,
 * whose IOTLB-hit path inlines the probe instead of calling through
 * vtd_iotlb_lookup.  See iotlb.c for the model and the invariants; this
 * header only reads.
 *
 * vtd_iotlb_probe() is a lookup without the miss bookkeeping: it opens no
 * fill ticket, so a caller that goes on to walk and fill after a miss must
 * look up again with vtd_iotlb_lookup (which does).
 */
#ifndef VTIO_HW_VTD_IOTLB_FAST_H
#define VTIO_HW_VTD_IOTLB_FAST_H

#include "hw/vtd/vtd_internal.h"

#define TLB_HOT     static inline __attribute__((always_inline))

#define TLB_WAYS    4
#define TLB_NSIZES  3                   /* 4 KiB, 2 MiB, 1 GiB */
#define TLB_SHIFT(s) (12u + 9u * (s))   /* page size of array s */
#define TAG_VALID   1ull                /* tag bit 0 */
#define DATA_R      1ull                /* data: page base | R | W */
#define DATA_W      2ull
#define DATA_PA     (~0xfffull)
#define DATA_FL     0x20ull             /* vtd_xlate.fl */
#define DATA_SUP    0x40ull             /* vtd_xlate.sup */

/* What a probe returns besides the data word's R, W and page base:
 * TLB_HIT (a hit, even of an entry with no permission at page 0) and the
 * array's index, from which TLB_HIT_SHIFT() gives the page size. */
#define TLB_HIT     4ull
#define TLB_HIT_SIZE(d)  ((unsigned)((d) >> 3) & 3)
#define TLB_HIT_SHIFT(d) TLB_SHIFT(TLB_HIT_SIZE(d))

struct tlb_entry {
    _Atomic uint64_t seq;               /* odd while being written */
    _Atomic uint64_t key;               /* page number: addr >> shift */
    _Atomic uint64_t tag;               /* pasid << 32 | id << 16 | TAG_VALID */
    _Atomic uint64_t data;              /* page base | DATA_R | DATA_W */
};

struct tlb_set {
    struct tlb_entry e[TLB_WAYS];
} __attribute__((aligned(128)));

struct tlb_array {
    unsigned shift;                     /* page size: TLB_SHIFT(index) */
    uint64_t mask;                      /* sets - 1 */
    struct tlb_set *sets;
    uint8_t *victim;                    /* next way to replace (under lock) */
    _Atomic unsigned valid;             /* valid entries; 0 lets lookups skip */
};

struct tlb {
    uint64_t id;                        /* unique for fill tickets */
    pthread_mutex_t lock;               /* fills and invalidations */
    _Atomic uint64_t gen;               /* bumped by every invalidation */
    struct tlb_array arr[TLB_NSIZES];
};

struct vtd_iotlb {
    struct tlb iotlb;                   /* tagged by DID */
    struct tlb devtlb;                  /* tagged by SID */
    uint64_t ats_sid[65536 / 64];       /* ATS endpoints (under devtlb.lock) */
};

TLB_HOT uint64_t tlb_make_tag(uint16_t id, uint32_t pasid)
{
    return (uint64_t)pasid << 32 | (uint64_t)id << 16 | TAG_VALID;
}

TLB_HOT struct tlb_set *tlb_set_of(const struct tlb_array *a, uint64_t key, uint16_t id)
{
    /* Consecutive pages of a domain go to consecutive sets. */
    return &a->sets[(key + (uint64_t)id * 0x9e3779b1u) & a->mask];
}

/*
 * The sequence lock, without fences (which ThreadSanitizer cannot follow):
 * the writer stores the fields with release, so a reader whose acquire
 * load sees a new field value also sees the odd seq stored before it; the
 * reader's acquire field loads keep its second read of seq after them.
 * On x86 all of these are plain moves.
 */

/* Entry e if it holds (key, tag), read consistently: seq, key, tag, data,
 * seq again, each compared as soon as loaded (a mismatch or a writer
 * inside is a miss), so that few values are live at once.
 * @returns data | TLB_HIT, or 0. */
TLB_HOT uint64_t tlb_entry_match(struct tlb_entry *e, uint64_t key, uint64_t tag)
{
    /* Cheap filter first; the sequence-checked read confirms. */
    if (atomic_load_explicit(&e->key, memory_order_relaxed) != key)
        return 0;
    uint64_t s1 = atomic_load_explicit(&e->seq, memory_order_acquire);
    if ((s1 & 1) || atomic_load_explicit(&e->key, memory_order_acquire) != key ||
        atomic_load_explicit(&e->tag, memory_order_acquire) != tag)
        return 0;
    uint64_t d = atomic_load_explicit(&e->data, memory_order_acquire);
    return atomic_load_explicit(&e->seq, memory_order_relaxed) == s1 ? d | TLB_HIT : 0;
}

/* One array (page size 2^shift, a compile-time constant at each call).
 * @returns the entry's data | TLB_HIT, or 0. */
TLB_HOT uint64_t tlb_probe_array(struct tlb_array *a, unsigned shift, uint64_t addr,
                                 uint16_t id, uint64_t tag)
{
    uint64_t key = addr >> shift, d;
    struct tlb_set *set = tlb_set_of(a, key, id);
#pragma GCC unroll 4
    for (unsigned w = 0; w < TLB_WAYS; w++)
        if ((d = tlb_entry_match(&set->e[w], key, tag)) != 0)
            return d;
    return 0;
}

/* The 4 KiB array first, then the superpage arrays while they hold
 * anything; tag is tlb_make_tag(id, pasid).  @returns data | TLB_HIT |
 * size index << 3, or 0 (a miss; no fill ticket opened). */
TLB_HOT uint64_t tlb_probe(struct tlb *t, uint64_t tag, uint64_t addr)
{
    uint16_t id = (uint16_t)(tag >> 16);
    uint64_t d;
    if ((d = tlb_probe_array(&t->arr[0], TLB_SHIFT(0), addr, id, tag)) != 0)
        return d;
    if (atomic_load_explicit(&t->arr[1].valid, memory_order_relaxed) &&
        (d = tlb_probe_array(&t->arr[1], TLB_SHIFT(1), addr, id, tag)) != 0)
        return d | 1u << 3;
    if (atomic_load_explicit(&t->arr[2].valid, memory_order_relaxed) &&
        (d = tlb_probe_array(&t->arr[2], TLB_SHIFT(2), addr, id, tag)) != 0)
        return d | 2u << 3;
    return 0;
}

_Static_assert(TLB_NSIZES == 3, "tlb_probe names each array");
_Static_assert((DATA_PA & (TLB_HIT | 3u << 3)) == 0, "the hit bits are below the page base");
_Static_assert(((DATA_FL | DATA_SUP) & (DATA_PA | DATA_R | DATA_W | TLB_HIT | 3u << 3)) == 0,
               "the privilege bits are bits of their own");

/* vtd_xlate_priv_ok() on a data word. */
TLB_HOT bool tlb_data_priv_ok(uint64_t d, bool sup)
{
    return !(d & DATA_FL) || !(d & DATA_SUP) == !sup;
}

/* The IOTLB-hit path's lookup (see the top comment) of the entries
 * tagged tag = tlb_make_tag(did, pasid). */
TLB_HOT uint64_t vtd_iotlb_probe(struct vtio_vtd *vtd, uint64_t tag, uint64_t addr)
{
    return tlb_probe(&vtd->iotlb->iotlb, tag, addr);
}

#endif
