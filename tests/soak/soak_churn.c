/*
 * Mappers: threads that map and unmap nonstop, without DMA, on the same
 * devices (so the same IOMMU domains, IOVA allocators and flush queues) as
 * the submitters.
 *
 * A mapper keeps up to MAX_LIVE mappings of its own block alive: each step
 * either maps a new one (1 byte .. 256 KiB, 1..8 regions, single, page or
 * sg, a random direction, for a random engine) or unmaps a random live one,
 * so allocations and frees of every size interleave with the submitters'.
 * Every map is checked page by page against the page tables, like the
 * submitters' (soak_map.c).  Every FLUSH_EVERY steps it calls
 * vtio_dma_flush(), which in lazy mode invalidates every flush queue at
 * once, racing the queues' own full-ring and timer flushes.
 *
 * Nothing ever DMAs to a mapper's block, so all of it must keep the guard
 * pattern: it is checked whole every CHECK_EVERY steps and at the end.
 */
#include "soak.h"

#include <stdlib.h>

#define MAX_LIVE     16
#define MAX_MAP_LEN  (256 * VTIO_KiB)
#define FLUSH_EVERY  512
#define CHECK_EVERY  4096

struct live {
    struct soak_engine *e;
    struct soak_layout l;
    struct soak_mapping mp;
};

struct soak_mapper {
    struct soak *s;
    struct soak_rng rng;
    struct soak_counters k;
    struct soak_block blk;
    unsigned n_live;
    struct live live[MAX_LIVE];
};

struct soak_mapper *soak_mapper_create(struct soak *s, uint64_t seed)
{
    struct soak_mapper *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->s = s;
    soak_rng_init(&t->rng, seed);
    if (soak_block_alloc(s, &t->blk) < 0) {
        free(t);
        return NULL;
    }
    return t;
}

void soak_mapper_destroy(struct soak_mapper *t)
{
    if (!t)
        return;
    soak_block_free(t->s, &t->blk);
    free(t);
}

static bool map_new(struct soak_mapper *t)
{
    struct soak_rng *r = &t->rng;
    static const enum vtio_dma_direction dirs[] = { VTIO_DMA_TO_DEVICE, VTIO_DMA_FROM_DEVICE,
                                                    VTIO_DMA_BIDIRECTIONAL };
    struct live *lv = &t->live[t->n_live];
    lv->e = &t->s->eng[soak_below(r, t->s->n_eng)];
    uint64_t len = soak_rand_len(r, MAX_MAP_LEN);
    bool sg = soak_one_in(r, 3);
    unsigned pieces = sg ? 1 + (unsigned)soak_below(r, SOAK_MAX_PIECES) : 1;
    soak_layout_place(&lv->l, &t->blk, len, pieces, r);
    if (!soak_map(t->s, &t->k, lv->e, &lv->l, dirs[soak_below(r, 3)], sg, r, &lv->mp)) {
        soak_unmap(lv->e, &t->k, &lv->mp);
        return false;
    }
    t->n_live++;
    return true;
}

static void unmap_one(struct soak_mapper *t, unsigned i)
{
    soak_unmap(t->live[i].e, &t->k, &t->live[i].mp);
    t->live[i] = t->live[--t->n_live];
}

void *soak_mapper_run(void *arg)
{
    struct soak_mapper *t = arg;
    bool ok = true;
    for (uint64_t step = 1; ok && !soak_should_stop(t->s); step++) {
        bool grow = t->n_live == 0 || (t->n_live < MAX_LIVE && soak_one_in(&t->rng, 2));
        if (grow)
            ok = map_new(t);
        else
            unmap_one(t, (unsigned)soak_below(&t->rng, t->n_live));
        if (step % FLUSH_EVERY == 0) {
            vtio_dma_flush(t->s->h);
            t->k.flushes++;
        }
        if (step % CHECK_EVERY == 0)
            ok &= soak_block_check(t->s, &t->k, &t->blk, "mapper block (never DMA'd)");
    }
    while (t->n_live)
        unmap_one(t, t->n_live - 1);
    return NULL;
}

void soak_mapper_finish(struct soak_mapper *t, struct soak_counters *k)
{
    soak_block_check(t->s, &t->k, &t->blk, "mapper block (never DMA'd) at the end");
    soak_counters_add(k, &t->k);
}
