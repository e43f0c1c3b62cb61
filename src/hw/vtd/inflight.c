/*
 * DMA in flight, so that invalidation can wait it out (the guarantee of the
 * invalidation-wait descriptor, VT-d spec 6.5.2.8 and 6.5.5: once the wait
 * completes, no DMA uses a translation that earlier descriptors removed).
 *
 * How it works.  Every thread that accesses memory through the unit owns a
 * slot in the unit (one cache line, registered on its first access).  The
 * DMA port brackets every device access with vtd_access_begin/end; begin
 * writes the current global epoch into the thread's slot ("in an access
 * since epoch E"), end writes 0 ("idle").  vtd_inflight_drain() bumps the
 * epoch to E' and waits, yielding, until every slot is idle or shows an
 * epoch >= E': each access that was already running when the drain began
 * has ended, and each access that began later began after the caches were
 * invalidated, so it can only see the new state.
 *
 * Why that is enough: begin stores its slot and then issues a full fence
 * before the access reads any translation; the drain issues a full fence
 * after the invalidation and before it reads the slots.  So either the
 * drain sees the slot (and waits for it) or the access sees the
 * invalidation (Dekker's pattern).
 *
 * Cost: begin and end write only the thread's own slot (plus the fence on
 * begin); they read the epoch, whose line only drains write.  A drain reads
 * the slots up to the highest one ever taken, not the whole block.
 *
 * Lifetimes.  A thread finds its slot through a thread-local cache keyed by
 * the unit's id, an integer never reused, so a stale cache entry never
 * matches a later unit at the same address.  When a thread exits, a
 * pthread key destructor gives its slots back, but only to units that still
 * live: units are listed in a registry, and both unit destruction and
 * thread exit hold the registry lock, so a slot is never touched after its
 * unit was freed.  A destroyed unit simply stops matching.
 *
 * Bounds and limits: a drain waits for each slot at most once, for as long
 * as the access in it lasts (an access that never ends stalls it).  A
 * thread keeps slots in at most MAX_REFS units at once (idle ones are given
 * back to make room); being inside accesses on more, or running out of
 * memory for a slot, aborts: without a slot no invalidation could wait for
 * the thread.  Fills that race with an invalidation are iotlb.c's part.
 *
 * Locks: registry_lock (outer) then inf->lock (slot allocation and
 * release).  Neither is taken on begin/end once the thread has a slot.
 * A drain holds no lock of its own; it is called with reg_lock held, so a
 * device thread must not touch the unit's registers inside an access.
 */
#include "hw/vtd/vtd_internal.h"

#include "util/error.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_SLOTS 64
#define MAX_REFS    16                  /* units a thread keeps slots in */

struct slot {
    _Atomic uint64_t state;             /* 0 idle, else the epoch the access began in */
    unsigned depth;                     /* nested brackets (owner only) */
    bool used;                          /* owned by a thread (under inf->lock) */
} __attribute__((aligned(64)));

struct block {
    struct slot slot[BLOCK_SLOTS];
    _Atomic(struct block *) next;       /* appended under inf->lock */
    /* 1 + the highest slot ever taken (under inf->lock): drains look no
     * further.  Stored before the taker's first access, whose begin fence
     * then orders it before any drain that could miss the slot. */
    _Atomic unsigned used_hi;
};

struct vtd_inflight {
    _Atomic uint64_t epoch __attribute__((aligned(64)));  /* written by drains only */
    uint64_t id __attribute__((aligned(64)));             /* unique, never reused */
    pthread_mutex_t lock;
    struct vtd_inflight *live_next;     /* registry (under registry_lock) */
    struct block first;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vtd_inflight *live;       /* units alive (under registry_lock) */
static _Atomic uint64_t next_unit_id = 1;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;

/* This thread's slots: refs[0..nrefs), and the last one used. */
struct slot_ref {
    uint64_t id;
    struct vtd_inflight *inf;           /* valid only while the unit lives */
    struct slot *slot;
};
static __thread struct slot_ref refs[MAX_REFS];
static __thread unsigned nrefs;
static __thread struct slot_ref last;

/* ------------------------------------------------------------------------
 * Slots.
 */

static struct vtd_inflight *find_live_locked(uint64_t id)
{
    for (struct vtd_inflight *inf = live; inf; inf = inf->live_next)
        if (inf->id == id)
            return inf;
    return NULL;
}

/* Gives a slot back; registry_lock held, so inf is alive. */
static void slot_release(struct vtd_inflight *inf, struct slot *s)
{
    pthread_mutex_lock(&inf->lock);
    s->depth = 0;
    s->used = false;
    atomic_store_explicit(&s->state, 0, memory_order_release);
    pthread_mutex_unlock(&inf->lock);
}

static void drop_ref(unsigned i)
{
    if (last.id == refs[i].id)
        memset(&last, 0, sizeof(last));
    refs[i] = refs[--nrefs];
}

/* The pthread key destructor: the thread is exiting. */
static void thread_exit(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&registry_lock);
    for (unsigned i = 0; i < nrefs; i++) {
        struct vtd_inflight *inf = find_live_locked(refs[i].id);
        if (inf)
            slot_release(inf, refs[i].slot);
    }
    pthread_mutex_unlock(&registry_lock);
    nrefs = 0;
    memset(&last, 0, sizeof(last));
}

static void make_key(void)
{
    if (pthread_key_create(&exit_key, thread_exit) != 0) {
        fprintf(stderr, "vtio: vtd: cannot create the thread-exit key\n");
        abort();
    }
}

/* Forgets slots in units that are gone, and makes room for one more ref. */
static void refs_make_room(void)
{
    pthread_mutex_lock(&registry_lock);
    for (unsigned i = 0; i < nrefs;) {
        if (!find_live_locked(refs[i].id))
            drop_ref(i);
        else
            i++;
    }
    /* Still full: give back a slot that is idle (re-registered on use). */
    for (unsigned i = 0; nrefs == MAX_REFS && i < nrefs; i++) {
        if (refs[i].slot->depth == 0) {
            slot_release(refs[i].inf, refs[i].slot);
            drop_ref(i);
        }
    }
    pthread_mutex_unlock(&registry_lock);
}

static struct slot *slot_take(struct vtd_inflight *inf)
{
    pthread_mutex_lock(&inf->lock);
    struct block *b = &inf->first, *tail = b;
    for (; b; tail = b, b = atomic_load_explicit(&b->next, memory_order_relaxed)) {
        for (unsigned i = 0; i < BLOCK_SLOTS; i++) {
            if (!b->slot[i].used) {
                b->slot[i].used = true;
                if (i + 1 > atomic_load_explicit(&b->used_hi, memory_order_relaxed))
                    atomic_store_explicit(&b->used_hi, i + 1, memory_order_relaxed);
                pthread_mutex_unlock(&inf->lock);
                return &b->slot[i];
            }
        }
    }
    /* More threads than slots: another block, published to drains. */
    b = aligned_alloc(64, sizeof(*b));
    if (!b) {
        fprintf(stderr, "vtio: vtd: out of memory for a DMA-tracking slot\n");
        abort();   /* without a slot, invalidation could not wait for this thread */
    }
    memset(b, 0, sizeof(*b));
    b->slot[0].used = true;
    atomic_store_explicit(&b->used_hi, 1, memory_order_relaxed);
    atomic_store_explicit(&tail->next, b, memory_order_release);
    pthread_mutex_unlock(&inf->lock);
    return &b->slot[0];
}

static struct slot *slot_register(struct vtd_inflight *inf)
{
    pthread_once(&key_once, make_key);
    refs_make_room();
    if (nrefs == MAX_REFS) {
        fprintf(stderr, "vtio: vtd: a thread is inside accesses on %d units\n", MAX_REFS);
        abort();
    }
    struct slot *s = slot_take(inf);
    refs[nrefs++] = (struct slot_ref){ .id = inf->id, .inf = inf, .slot = s };
    last = refs[nrefs - 1];
    pthread_setspecific(exit_key, (void *)1);
    return s;
}

/* This thread's slot in inf; registers one if create. */
static inline struct slot *slot_of(struct vtd_inflight *inf, bool create)
{
    if (last.id == inf->id)
        return last.slot;
    for (unsigned i = 0; i < nrefs; i++) {
        if (refs[i].id == inf->id) {
            last = refs[i];
            return last.slot;
        }
    }
    return create ? slot_register(inf) : NULL;
}

/* ------------------------------------------------------------------------
 * The unit's side.
 */

int vtd_inflight_init(struct vtio_vtd *vtd)
{
    struct vtd_inflight *inf = aligned_alloc(64, sizeof(*inf));
    if (!inf)
        return vtio_fail(-ENOMEM, "vtd: no memory for DMA tracking");
    memset(inf, 0, sizeof(*inf));
    inf->id = atomic_fetch_add(&next_unit_id, 1);
    atomic_init(&inf->epoch, 1);
    pthread_mutex_init(&inf->lock, NULL);
    pthread_mutex_lock(&registry_lock);
    inf->live_next = live;
    live = inf;
    pthread_mutex_unlock(&registry_lock);
    vtd->inflight = inf;
    return 0;
}

/* No access may be in flight.  Threads that hold slots keep stale refs,
 * which never match again and are skipped at their exit. */
void vtd_inflight_fini(struct vtio_vtd *vtd)
{
    struct vtd_inflight *inf = vtd->inflight;
    if (!inf)
        return;
    pthread_mutex_lock(&registry_lock);
    for (struct vtd_inflight **p = &live; *p; p = &(*p)->live_next) {
        if (*p == inf) {
            *p = inf->live_next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    struct block *b = atomic_load(&inf->first.next);
    while (b) {
        struct block *next = atomic_load(&b->next);
        free(b);
        b = next;
    }
    pthread_mutex_destroy(&inf->lock);
    free(inf);
    vtd->inflight = NULL;
}

void vtd_access_begin(struct vtio_vtd *vtd)
{
    struct vtd_inflight *inf = vtd->inflight;
    struct slot *s = slot_of(inf, true);
    if (s->depth++)
        return;                         /* nested: the outer bracket counts */
    /* Acquire: an access that sees a drain's epoch also sees the
     * invalidation that preceded it. */
    uint64_t e = atomic_load_explicit(&inf->epoch, memory_order_acquire);
    atomic_store_explicit(&s->state, e, memory_order_relaxed);
    /* The slot is visible before the access reads any translation state
     * (pairs with the fence in vtd_inflight_drain). */
    atomic_thread_fence(memory_order_seq_cst);
}

void vtd_access_end(struct vtio_vtd *vtd)
{
    struct slot *s = slot_of(vtd->inflight, false);
    if (!s || !s->depth)
        return;                         /* unbalanced: nothing open */
    if (--s->depth == 0) {
        /* Release: what the access wrote is visible to the drain that sees
         * the slot idle. */
        atomic_store_explicit(&s->state, 0, memory_order_release);
    }
}

void vtd_inflight_drain(struct vtio_vtd *vtd)
{
    struct vtd_inflight *inf = vtd->inflight;
    struct slot *self = slot_of(inf, false);
    uint64_t target = atomic_fetch_add_explicit(&inf->epoch, 1, memory_order_seq_cst) + 1;
    /* The invalidation before us is visible before we read any slot. */
    atomic_thread_fence(memory_order_seq_cst);
    /* Bound: each slot is waited on once; an access that begins after the
     * bump shows epoch >= target and is not waited for. */
    for (struct block *b = &inf->first; b;
         b = atomic_load_explicit(&b->next, memory_order_acquire)) {
        unsigned hi = atomic_load_explicit(&b->used_hi, memory_order_relaxed);
        for (unsigned i = 0; i < hi; i++) {
            struct slot *s = &b->slot[i];
            if (s == self)
                continue;               /* our own open access cannot end here */
            for (;;) {
                uint64_t st = atomic_load_explicit(&s->state, memory_order_acquire);
                if (st == 0 || st >= target)
                    break;
                sched_yield();
            }
        }
    }
}
