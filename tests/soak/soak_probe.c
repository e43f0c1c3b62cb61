/*
 * The stray-access probe: a device that DMAs through an IOVA right after
 * it was unmapped must be refused, and must not move a byte.
 *
 * The probe has an engine of its own (the last one, one channel), so its
 * IOMMU domain has no other user: between its unmap and its stray DMA no
 * other thread can be handed the same IOVA, and the refusal it expects
 * cannot be confused with a legitimate reuse.  Each round, alternately:
 *
 *  read:  copy A -> B (succeeds, and leaves A's translation in the IOTLB);
 *         unmap B, check it, put the guard back, map B again as B';
 *         unmap A (lazy mode: then vtio_dma_flush(), which is what closes
 *         the lazy window); A's IOVA must be gone from the page tables;
 *         copy stale A -> B' must fail with src-fault at A's IOVA, and B
 *         must still be all guard: nothing was read through the stale entry.
 *  write: copy A -> B; unmap B (lazy: flush), check it, put the guard
 *         back; copy A -> stale B must fail with dst-fault at B's IOVA,
 *         and B must still be all guard: nothing was written through it.
 *
 * After each refusal the channel (halted, as the device defines) is reset.
 * The stale range is registered before the stray DMA, so the fault handler
 * (soak.c) can tell these faults, and only these, as expected.  Pass-through
 * and no-IOMMU modes protect nothing, so there is no probe there.
 */
#include "soak.h"

#include <vtio/device.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PROBE_LEN (16 * VTIO_KiB)
#define PAUSE_NS      1000000          /* between rounds: faults are not free */

struct soak_prober {
    struct soak *s;
    struct soak_engine *e;
    struct vtio_dmae_chan *ch;
    struct soak_rng rng;
    struct soak_counters k;
    struct soak_block a_blk, b_blk;
    struct soak_layout a, b;
    struct soak_mapping ma, mb;
};

struct soak_prober *soak_prober_create(struct soak *s, uint64_t seed)
{
    struct soak_prober *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->s = s;
    t->e = s->probe;
    t->ch = vtio_dmae_chan(t->e->drv, 0);
    soak_rng_init(&t->rng, seed);
    if (soak_block_alloc(s, &t->a_blk) < 0 || soak_block_alloc(s, &t->b_blk) < 0) {
        soak_prober_destroy(t);
        return NULL;
    }
    return t;
}

void soak_prober_destroy(struct soak_prober *t)
{
    if (!t)
        return;
    soak_block_free(t->s, &t->a_blk);
    soak_block_free(t->s, &t->b_blk);
    free(t);
}

/* Copies a -> b (DMA addresses) and waits.  @returns the wait's result. */
static int copy(struct soak_prober *t, uint64_t dst, uint64_t src, uint64_t len,
                struct vtio_dmae_completion *rec)
{
    memset(rec, 0, sizeof(*rec));
    int64_t cookie = vtio_dmae_prep_copy(t->ch, dst, src, len, VTIO_DMAE_FLAG_INTR);
    if (cookie < 0)
        return (int)cookie;
    vtio_dmae_issue(t->ch);
    return vtio_dmae_wait(t->ch, cookie, (uint64_t)t->s->o.timeout_ms * 1000000ull, rec);
}

/* Makes a mapping stale: unmaps it, flushes in lazy mode, registers the
 * range as one the probe will touch, and checks the page tables forgot it. */
static bool make_stale(struct soak_prober *t, struct soak_mapping *mp, bool write,
                       struct soak_stale *st)
{
    struct soak *s = t->s;
    uint64_t addr = mp->seg[0].addr, len = mp->seg[0].len;
    st->lo = addr & ~(VTIO_PAGE_SIZE - 1);
    st->hi = (addr + len + VTIO_PAGE_SIZE - 1) & ~(VTIO_PAGE_SIZE - 1);
    st->write = write;
    soak_unmap(t->e, &t->k, mp);
    if (s->o.mode == SOAK_LAZY) {
        vtio_dma_flush(s->h);
        t->k.flushes++;
    }
    pthread_mutex_lock(&s->stale_lock);
    if (s->n_stale == s->cap_stale) {
        size_t cap = s->cap_stale ? 2 * s->cap_stale : 256;
        struct soak_stale *n = realloc(s->stale, cap * sizeof(*n));
        if (n) {
            s->stale = n;
            s->cap_stale = cap;
        }
    }
    bool room = s->n_stale < s->cap_stale;
    if (room)
        s->stale[s->n_stale++] = *st;
    pthread_mutex_unlock(&s->stale_lock);
    if (!room) {
        soak_fail(s, "probe: out of memory");
        return false;
    }
    for (uint64_t iova = st->lo; iova < st->hi; iova += VTIO_PAGE_SIZE) {
        uint64_t pa;
        t->k.translations++;
        if (vtio_iommu_iova_to_phys(t->e->domain, iova, &pa) == 0) {
            soak_fail(s, "probe: IOVA %#" PRIx64 " still leads to pa %#" PRIx64 " after unmap",
                      iova, pa);
            return false;
        }
    }
    return true;
}

/* The stray DMA must have failed with `want` at an address of st. */
static bool check_refused(struct soak_prober *t, int rc, const struct vtio_dmae_completion *rec,
                          uint32_t want, const struct soak_stale *st)
{
    bool ok = rc == -EIO && rec->status == want && rec->fault_addr >= st->lo &&
              rec->fault_addr < st->hi;
    if (!ok)
        soak_fail(t->s, "probe: %s through stale IOVAs [%#" PRIx64 ", %#" PRIx64 ") gave %d, "
                  "status %s at %#" PRIx64 "; expected %s there",
                  st->write ? "write" : "read", st->lo, st->hi, rc,
                  vtio_dmae_status_name(rec->status), rec->fault_addr,
                  vtio_dmae_status_name(want));
    vtio_dmae_reset(t->ch);
    t->k.probes++;
    return ok;
}

static bool check_copy(struct soak_prober *t, int rc, const struct vtio_dmae_completion *rec)
{
    if (rc == 0 && rec->status == VTIO_DMAE_STATUS_SUCCESS && rec->bytes == t->a.len)
        return true;
    soak_fail(t->s, "probe: copy of %" PRIu64 " bytes before the stray access: %d, status %s",
              t->a.len, rc, vtio_dmae_status_name(rec->status));
    return false;
}

static bool round_trip(struct soak_prober *t, bool write)
{
    struct soak *s = t->s;
    struct soak_rng *r = &t->rng;
    uint64_t len = soak_rand_len(r, MAX_PROBE_LEN);
    struct soak_content data = { SOAK_CONTENT_DATA, soak_rand(r), UINT64_MAX };
    soak_layout_place(&t->a, &t->a_blk, len, 1, r);
    soak_layout_place(&t->b, &t->b_blk, len, 1, r);
    t->a.c = t->b.c = data;
    soak_layout_write(&t->a);
    struct vtio_dmae_completion rec;
    struct soak_stale st;
    bool ok = soak_map(s, &t->k, t->e, &t->a, VTIO_DMA_TO_DEVICE, false, r, &t->ma) &&
              soak_map(s, &t->k, t->e, &t->b, VTIO_DMA_FROM_DEVICE, false, r, &t->mb) &&
              check_copy(t, copy(t, t->mb.seg[0].addr, t->ma.seg[0].addr, len, &rec), &rec);
    if (ok && write) {
        uint64_t stale_b = t->mb.seg[0].addr;
        ok = make_stale(t, &t->mb, true, &st) &&
             soak_layout_check(s, &t->k, &t->b, "probe destination");
        soak_layout_restore(&t->b);
        ok = ok && check_refused(t, copy(t, stale_b, t->ma.seg[0].addr, len, &rec), &rec,
                                 VTIO_DMAE_ERR_DST_FAULT, &st);
    } else if (ok) {
        soak_unmap(t->e, &t->k, &t->mb);
        ok = soak_layout_check(s, &t->k, &t->b, "probe destination");
        soak_layout_restore(&t->b);
        uint64_t stale_a = t->ma.seg[0].addr;
        ok = ok && soak_map(s, &t->k, t->e, &t->b, VTIO_DMA_FROM_DEVICE, false, r, &t->mb) &&
             make_stale(t, &t->ma, false, &st) &&
             check_refused(t, copy(t, t->mb.seg[0].addr, stale_a, len, &rec), &rec,
                           VTIO_DMAE_ERR_SRC_FAULT, &st);
    }
    soak_unmap(t->e, &t->k, &t->ma);
    soak_unmap(t->e, &t->k, &t->mb);
    ok = ok && soak_layout_check(s, &t->k, &t->a, "probe source");
    soak_layout_restore(&t->a);
    /* Nothing may have reached B through a stale translation. */
    return ok && soak_block_check(s, &t->k, &t->b_blk, "probe destination after the stray DMA");
}

void *soak_prober_run(void *arg)
{
    struct soak_prober *t = arg;
    bool write = false;
    while (!soak_should_stop(t->s) && round_trip(t, write)) {
        write = !write;
        nanosleep(&(struct timespec){ 0, PAUSE_NS }, NULL);
    }
    return NULL;
}

void soak_prober_finish(struct soak_prober *t, struct soak_counters *k)
{
    soak_block_check(t->s, &t->k, &t->a_blk, "probe source block at the end");
    soak_block_check(t->s, &t->k, &t->b_blk, "probe destination block at the end");
    soak_counters_add(k, &t->k);
}
