/*
 * Submitters: one thread per DMA channel, keeping it busy with checked work.
 *
 * A submitter owns `depth` slots; each slot has a source and a destination
 * block and holds at most one operation.  An operation goes
 *   place the layouts -> CPU writes the source -> map both (DMA API) ->
 *   prep (cookie) -> issue -> ... -> wait for the cookie -> check the
 *   completion record -> unmap both -> check every byte of both blocks'
 *   touched pages -> put the guard pattern back
 * so every mapping lives exactly as long as its one descriptor, and the
 * unmaps of one channel (with their IOTLB invalidations, strict or queued)
 * run while the other channels' DMA goes on through the same IOMMU.  Slots
 * are filled, issued with one doorbell, and completed oldest first, the
 * order in which a channel completes its descriptors.
 *
 * Operations (and what is checked besides the bytes):
 *   copy     60%  one region each side, map_single or map_page
 *   copy_sg  15%  1..8 regions each side, map_sg; the device gets the DMA
 *                 segments map_sg returned (merged where IOVAs meet)
 *   fill     12%  destination only: an 8-byte pattern repeated
 *   compare  13%  two buffers of equal content, or with one byte inverted:
 *                 the record's result and offset must say so
 * Directions are the narrowest (TO_DEVICE / FROM_DEVICE), or BIDIRECTIONAL
 * one time in four; half the descriptors ask for an interrupt (the waiter
 * sleeps on it), the others are polled; one in ten is a fence.
 *
 * Failures: a prep that fails, a completion with an error, a completion
 * that does not come within the time-out (lost), a record that names
 * another cookie or the wrong byte count, any byte out of place.  After
 * one, the submitter stops starting work and winds down what it issued.
 */
#include "soak.h"

#include <vtio/device.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    struct soak_block src_blk, dst_blk;
    enum soak_op op;
    int64_t cookie;
    uint64_t len;
    struct soak_layout src, dst;       /* src unused by fill */
    struct soak_mapping msrc, mdst;
    uint32_t want_result;              /* compare: 1 if the buffers differ */
    uint64_t want_bytes;               /* the record's byte count */
};

struct soak_submitter {
    struct soak *s;
    struct soak_engine *e;
    unsigned chan;
    struct vtio_dmae_chan *ch;
    struct soak_rng rng;
    struct soak_counters k;
    uint64_t issued, completed;        /* descriptors, by this thread's account */
    unsigned nslots, head, inflight;   /* ring of slots: oldest at head */
    struct slot slot[SOAK_MAX_DEPTH];
};

static const char *const op_name[SOAK_OPS] = { "copy", "copy_sg", "fill", "compare" };

struct soak_submitter *soak_submitter_create(struct soak *s, struct soak_engine *e,
                                             unsigned chan, uint64_t seed)
{
    struct soak_submitter *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    *t = (struct soak_submitter){ .s = s, .e = e, .chan = chan,
                                  .ch = vtio_dmae_chan(e->drv, chan), .nslots = s->o.depth };
    soak_rng_init(&t->rng, seed);
    for (unsigned i = 0; i < t->nslots; i++)
        if (soak_block_alloc(s, &t->slot[i].src_blk) < 0 ||
            soak_block_alloc(s, &t->slot[i].dst_blk) < 0) {
            soak_submitter_destroy(t);
            return NULL;
        }
    return t;
}

void soak_submitter_destroy(struct soak_submitter *t)
{
    if (!t)
        return;
    for (unsigned i = 0; i < t->nslots; i++) {
        soak_block_free(t->s, &t->slot[i].src_blk);
        soak_block_free(t->s, &t->slot[i].dst_blk);
    }
    free(t);
}

/* ---- starting an operation */

static enum soak_op pick_op(struct soak_rng *r)
{
    unsigned p = (unsigned)soak_below(r, 100);
    return p < 60 ? SOAK_OP_COPY : p < 75 ? SOAK_OP_COPY_SG : p < 87 ? SOAK_OP_FILL
                                                                    : SOAK_OP_COMPARE;
}

static enum vtio_dma_direction narrow_or_bidi(struct soak_rng *r, enum vtio_dma_direction d)
{
    return soak_one_in(r, 4) ? VTIO_DMA_BIDIRECTIONAL : d;
}

/* Places and fills the layouts of a new operation; sets what the record
 * must say. */
static void setup(struct soak_submitter *t, struct slot *sl)
{
    struct soak_rng *r = &t->rng;
    sl->op = pick_op(r);
    sl->len = soak_rand_len(r, t->s->o.max_len);
    sl->want_result = 0;
    sl->want_bytes = sl->len;
    bool sg = sl->op == SOAK_OP_COPY_SG;
    unsigned src_pieces = sg ? 1 + (unsigned)soak_below(r, SOAK_MAX_PIECES) : 1;
    unsigned dst_pieces = sg ? 1 + (unsigned)soak_below(r, SOAK_MAX_PIECES) : 1;
    struct soak_content data = { SOAK_CONTENT_DATA, soak_rand(r), UINT64_MAX };

    soak_layout_place(&sl->dst, &sl->dst_blk, sl->len, dst_pieces, r);
    sl->dst.c = data;
    if (sl->op == SOAK_OP_FILL) {
        sl->dst.c = (struct soak_content){ SOAK_CONTENT_FILL, soak_rand(r), UINT64_MAX };
        return;
    }
    soak_layout_place(&sl->src, &sl->src_blk, sl->len, src_pieces, r);
    sl->src.c = data;
    soak_layout_write(&sl->src);
    if (sl->op == SOAK_OP_COMPARE) {
        if (soak_one_in(r, 2)) {
            sl->dst.c.flip = soak_below(r, sl->len);
            sl->want_result = 1;
            sl->want_bytes = sl->dst.c.flip;
        }
        soak_layout_write(&sl->dst);        /* the second buffer: the CPU's */
    }
}

static bool map_slot(struct soak_submitter *t, struct slot *sl)
{
    struct soak_rng *r = &t->rng;
    bool sg = sl->op == SOAK_OP_COPY_SG;
    enum vtio_dma_direction dst_dir =
        sl->op == SOAK_OP_COMPARE ? VTIO_DMA_TO_DEVICE : VTIO_DMA_FROM_DEVICE;
    if (sl->op != SOAK_OP_FILL &&
        !soak_map(t->s, &t->k, t->e, &sl->src, narrow_or_bidi(r, VTIO_DMA_TO_DEVICE), sg, r,
                  &sl->msrc))
        return false;
    return soak_map(t->s, &t->k, t->e, &sl->dst, narrow_or_bidi(r, dst_dir), sg, r, &sl->mdst);
}

static int64_t prep_slot(struct soak_submitter *t, struct slot *sl)
{
    unsigned flags = (soak_one_in(&t->rng, 2) ? VTIO_DMAE_FLAG_INTR : 0) |
                     (soak_one_in(&t->rng, 10) ? VTIO_DMAE_FLAG_FENCE : 0);
    const struct vtio_dmae_seg *s = sl->msrc.seg, *d = sl->mdst.seg;
    switch (sl->op) {
    case SOAK_OP_COPY:
        return vtio_dmae_prep_copy(t->ch, d[0].addr, s[0].addr, sl->len, flags);
    case SOAK_OP_COPY_SG:
        return vtio_dmae_prep_copy_sg(t->ch, d, sl->mdst.nseg, s, sl->msrc.nseg, flags);
    case SOAK_OP_FILL:
        return vtio_dmae_prep_fill(t->ch, d[0].addr, sl->dst.c.key, sl->len, flags);
    case SOAK_OP_COMPARE:
        return vtio_dmae_prep_compare(t->ch, s[0].addr, d[0].addr, sl->len, flags);
    default:
        return -EINVAL;
    }
}

/* Gives a slot that never reached the device back: unmapped, blocks whole. */
static void undo(struct soak_submitter *t, struct slot *sl)
{
    soak_unmap(t->e, &t->k, &sl->msrc);
    soak_unmap(t->e, &t->k, &sl->mdst);
    soak_layout_restore(&sl->dst);
    if (sl->op != SOAK_OP_FILL)
        soak_layout_restore(&sl->src);
}

/* Sets up, maps and preps the next free slot.  @returns false on failure
 * (reported; the slot is undone). */
static bool start(struct soak_submitter *t)
{
    struct slot *sl = &t->slot[(t->head + t->inflight) % t->nslots];
    setup(t, sl);
    if (!map_slot(t, sl)) {
        undo(t, sl);
        return false;
    }
    int64_t cookie = prep_slot(t, sl);
    if (cookie < 0) {
        soak_fail(t->s, "%s chan %u: prep %s of %" PRIu64 " bytes: %s",
                  vtio_device_name(t->e->dev), t->chan, op_name[sl->op], sl->len,
                  vtio_last_error());
        undo(t, sl);
        return false;
    }
    sl->cookie = cookie;
    t->inflight++;
    t->issued++;
    return true;
}

/* ---- completing one */

static bool check_record(struct soak_submitter *t, struct slot *sl, int rc,
                         const struct vtio_dmae_completion *rec, const char *what)
{
    if (rc == -ETIMEDOUT) {
        soak_fail(t->s, "%s: lost completion: not complete after %u ms", what,
                  t->s->o.timeout_ms);
        return false;
    }
    if (rc < 0) {
        soak_fail(t->s, "%s: completed with an error (%d): status %s, fault address %#" PRIx64
                  ", channel error %s", what, rc, vtio_dmae_status_name(rec->status),
                  rec->fault_addr, vtio_dmae_status_name(vtio_dmae_error(t->ch)));
        return false;
    }
    if (rec->status != VTIO_DMAE_STATUS_SUCCESS || rec->cookie != (uint64_t)sl->cookie ||
        rec->bytes != sl->want_bytes || rec->result != sl->want_result) {
        soak_fail(t->s, "%s: completion record says status %s, cookie %" PRIu64 ", %" PRIu64
                  " bytes, result %u; expected success, cookie %" PRId64 ", %" PRIu64
                  " bytes, result %u", what, vtio_dmae_status_name(rec->status), rec->cookie,
                  rec->bytes, rec->result, sl->cookie, sl->want_bytes, sl->want_result);
        return false;
    }
    return true;
}

static bool complete(struct soak_submitter *t)
{
    struct slot *sl = &t->slot[t->head];
    char what[160];
    snprintf(what, sizeof(what), "%s chan %u, %s of %" PRIu64 " bytes (cookie %" PRId64 ")",
             vtio_device_name(t->e->dev), t->chan, op_name[sl->op], sl->len, sl->cookie);
    struct vtio_dmae_completion rec;
    memset(&rec, 0, sizeof(rec));
    int rc = vtio_dmae_wait(t->ch, sl->cookie, (uint64_t)t->s->o.timeout_ms * 1000000ull, &rec);
    bool ok = check_record(t, sl, rc, &rec, what);
    if (rc != -ETIMEDOUT)
        t->completed++;
    /* The device is done with the buffers (or they will not be checked). */
    soak_unmap(t->e, &t->k, &sl->msrc);
    soak_unmap(t->e, &t->k, &sl->mdst);
    if (ok) {
        char part[200];
        snprintf(part, sizeof(part), "%s, destination", what);
        ok = soak_layout_check(t->s, &t->k, &sl->dst, part);
        if (ok && sl->op != SOAK_OP_FILL) {
            snprintf(part, sizeof(part), "%s, source", what);
            ok = soak_layout_check(t->s, &t->k, &sl->src, part);
        }
    }
    if (ok) {
        t->k.ops[sl->op]++;
        t->k.dma_bytes += sl->len;
    }
    soak_layout_restore(&sl->dst);
    if (sl->op != SOAK_OP_FILL)
        soak_layout_restore(&sl->src);
    t->head = (t->head + 1) % t->nslots;
    t->inflight--;
    return ok;
}

void *soak_submitter_run(void *arg)
{
    struct soak_submitter *t = arg;
    bool failed = false;
    while (!failed && !soak_should_stop(t->s)) {
        while (t->inflight < t->nslots && !failed)
            failed = !start(t);
        vtio_dmae_issue(t->ch);
        if (t->inflight)
            failed |= !complete(t);
    }
    /* Wind down: everything issued is waited for and checked. */
    vtio_dmae_issue(t->ch);
    while (t->inflight)
        complete(t);
    return NULL;
}

void soak_submitter_finish(struct soak_submitter *t, struct soak_counters *k)
{
    struct soak *s = t->s;
    for (unsigned i = 0; i < t->nslots; i++) {
        soak_block_check(s, &t->k, &t->slot[i].src_blk, "submitter source block at the end");
        soak_block_check(s, &t->k, &t->slot[i].dst_blk, "submitter destination block at the end");
    }
    struct vtio_dmae_chan_stats st;
    vtio_dmae_chan_stats(t->ch, &st);
    const char *name = vtio_device_name(t->e->dev);
    if (t->completed != t->issued)
        soak_fail(s, "%s chan %u: %" PRIu64 " descriptors issued, %" PRIu64 " completed",
                  name, t->chan, t->issued, t->completed);
    /* The driver's count and the device's COMPLETED register must agree with
     * ours: fewer is a lost completion, more a duplicate one. */
    if (st.submitted != t->issued || st.completed != t->issued)
        soak_fail(s, "%s chan %u: issued %" PRIu64 " descriptors; the driver counts %" PRIu64
                  " submitted, the device %" PRIu64 " completed",
                  name, t->chan, t->issued, st.submitted, st.completed);
    t->k.issued = t->issued;
    t->k.lost = t->issued - t->completed;
    soak_counters_add(k, &t->k);
}
