/*
 * The mappings of a type1 container: MAP_DMA and UNMAP_DMA (Linux's
 * vfio_dma and its rb-tree in drivers/vfio/vfio_iommu_type1.c).
 *
 * Each MAP_DMA is one struct type1_dma, disjoint in IOVA from the others,
 * in a treap ordered by IOVA (O(log n) expected; a node's priority comes
 * from a xorshift generator, so no input order degrades it), at most
 * dma_entry_limit (65535, Linux's limit since CVE-2019-3882) of them.  The
 * IOVA allocator's red-black tree (src/host/iommu/iova.c) is not shared:
 * its code is written for its own node and domain types (rotations update
 * the domain's root, nodes are pfn ranges), so sharing it would first mean
 * taking a generic intrusive tree out of the IOMMU code, more than these
 * ~100 lines are worth.
 *
 * Mapping.  MAP_DMA pins the program's pages run by run, each run the
 * longest physically contiguous one (as vfio_pin_pages_remote does), up to
 * PIN_BATCH runs per vtio_process_pin_runs call, straight into the
 * mapping's run array; then maps each run of the batch, in order, into
 * every domain with one vtio_iommu_map (which uses 2 MiB and 1 GiB pages
 * where both addresses allow).  The runs (physical address, pages) stay in
 * the mapping, so that unmapping unpins them (in one call) without a page
 * walk.  Memory broken into single pages costs ~43 ns per run to map (11
 * ms per GiB), ~30 of them in vtio_iommu_map.  Any failure unwinds
 * everything: unmapped, unpinned, forgotten.  Locked memory is charged by
 * the pin calls (a page pinned twice counts once).  Invariant: mappings are
 * pinned and present in every domain exactly when the container has a
 * domain.  A mapping made before the first domain (Linux allows it) is only
 * recorded and is pinned when that domain comes (type1_dma_replay, which
 * also maps the runs of every mapping into each later domain); when the
 * last domain goes, every mapping goes with it (Linux's
 * vfio_iommu_unmap_unpin_all).
 *
 * Unmapping removes a mapping from every domain with one vtio_iommu_unmap
 * (one IOTLB invalidation, waited for) and only then unpins its runs: no
 * device can reach a page by the time it may be reused.  v2 refuses an
 * unmap that would cut a mapping (-EINVAL).  v1 keeps Linux's rule: the
 * mappings that start inside the range go whole, and one that starts
 * before it stops the walk, so a range starting inside a mapping unmaps
 * nothing and succeeds.  VFIO_DMA_UNMAP_FLAG_ALL takes everything; with
 * GET_DIRTY_BITMAP, each mapping is reported (type1_dirty.c) before it
 * goes.
 *
 * Everything here runs under the container's lock (MAP_DMA and UNMAP_DMA
 * take it), which is held across pinning and mapping (type1.c).
 */
#include "host/vfio/type1_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "host/proc/proc_priv.h"
#include "util/error.h"

#define PAGE_SHIFT VTIO_PAGE_SHIFT

/* Runs pinned per call (one process lock each): memory broken into
 * single pages then costs ~1/PIN_BATCH of a lock per page. */
#define PIN_BATCH 16u

#define VFIO_DMA_MAP_FLAGS   (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)
#define VFIO_DMA_UNMAP_FLAGS (VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL)

/* ------------------------------------------------------------------------
 * The mappings' treap
 * ------------------------------------------------------------------------ */

static uint64_t dma_last(const struct type1_dma *d)
{
    return d->iova + d->size - 1;
}

static uint32_t next_prio(struct type1 *c)
{
    uint32_t x = c->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return c->rng = x;
}

static struct type1_dma *rotate_right(struct type1_dma *t)
{
    struct type1_dma *l = t->left;
    t->left = l->right;
    l->right = t;
    return l;
}

static struct type1_dma *rotate_left(struct type1_dma *t)
{
    struct type1_dma *r = t->right;
    t->right = r->left;
    r->left = t;
    return r;
}

static struct type1_dma *treap_insert(struct type1_dma *t, struct type1_dma *n)
{
    if (!t)
        return n;
    if (n->iova < t->iova) {
        t->left = treap_insert(t->left, n);
        if (t->left->prio > t->prio)
            t = rotate_right(t);
    } else {
        t->right = treap_insert(t->right, n);
        if (t->right->prio > t->prio)
            t = rotate_left(t);
    }
    return t;
}

/* Joins two treaps, every key of a below every key of b. */
static struct type1_dma *treap_join(struct type1_dma *a, struct type1_dma *b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    if (a->prio > b->prio) {
        a->right = treap_join(a->right, b);
        return a;
    }
    b->left = treap_join(a, b->left);
    return b;
}

static struct type1_dma *treap_erase(struct type1_dma *t, const struct type1_dma *n)
{
    if (t == n)
        return treap_join(t->left, t->right);
    if (n->iova < t->iova)
        t->left = treap_erase(t->left, n);
    else
        t->right = treap_erase(t->right, n);
    return t;
}

/* The lowest mapping that overlaps [start, last]; NULL if none.  Mappings
 * are disjoint, so their ends ascend with their starts. */
struct type1_dma *type1_dma_find(const struct type1 *c, uint64_t start, uint64_t last)
{
    struct type1_dma *t = c->root, *found = NULL;
    while (t) {
        if (dma_last(t) >= start) {
            found = t;
            t = t->left;
        } else {
            t = t->right;
        }
    }
    return found && found->iova <= last ? found : NULL;
}

/* The mapping with the lowest IOVA above d's; NULL at the end. */
struct type1_dma *type1_dma_next(const struct type1 *c, const struct type1_dma *d)
{
    struct type1_dma *t = c->root, *found = NULL;
    while (t) {
        if (t->iova > d->iova) {
            found = t;
            t = t->left;
        } else {
            t = t->right;
        }
    }
    return found;
}

struct type1_dma *type1_dma_first(const struct type1 *c)
{
    return type1_dma_find(c, 0, UINT64_MAX);
}

/* v2: [iova, last] must not cut a mapping. */
bool type1_dma_cuts(const struct type1 *c, uint64_t iova, uint64_t last)
{
    const struct type1_dma *d = type1_dma_find(c, iova, iova);
    if (d && d->iova != iova)
        return true;
    d = type1_dma_find(c, last, last);
    return d && dma_last(d) != last;
}

/* ------------------------------------------------------------------------
 * Pinning and mapping
 * ------------------------------------------------------------------------ */

/* Room in d for `more` runs after those it has.  @returns 0; -ENOMEM. */
static int runs_reserve(struct type1_dma *d, size_t more)
{
    if (d->n_runs + more <= d->cap_runs)
        return 0;
    size_t cap = d->cap_runs ? 2 * d->cap_runs : PIN_BATCH;
    while (cap < d->n_runs + more)
        cap *= 2;
    struct vtio_pin_run *runs = realloc(d->runs, cap * sizeof(*runs));
    if (!runs)
        return vtio_fail(-ENOMEM, "vfio type1: out of memory");
    d->runs = runs;
    d->cap_runs = cap;
    return 0;
}

/* Maps one run into every domain, or into none. */
static int map_run(struct type1 *c, uint64_t iova, uint64_t pa, uint64_t size, unsigned prot)
{
    for (unsigned i = 0; i < c->n_domains; i++) {
        int err = vtio_iommu_map(c->domains[i].domain, iova, pa, size, prot);
        if (err) {
            while (i--)
                vtio_iommu_unmap(c->domains[i].domain, iova, size);
            return err;
        }
    }
    return 0;
}

static void unpin_runs(struct type1 *c, struct type1_dma *d)
{
    vtio_process_unpin_runs(c->proc, d->runs, d->n_runs);
    free(d->runs);
    d->runs = NULL;
    d->n_runs = d->cap_runs = 0;
}

/* Takes [d->iova, d->iova + mapped) out of every domain (invalidated when
 * this returns), then unpins d's runs. */
static void unmap_unpin(struct type1 *c, struct type1_dma *d, uint64_t mapped)
{
    if (mapped)
        for (unsigned i = 0; i < c->n_domains; i++)
            vtio_iommu_unmap(c->domains[i].domain, d->iova, mapped);
    unpin_runs(c, d);
}

/* Pins d's pages, a batch of runs at a time, recording the runs in d, and
 * maps each run into every domain, in order.
 * @returns 0; -ENOMEM (memlock limit, or memory), -EFAULT (a page is not
 * mapped), an IOMMU error: with nothing pinned or mapped. */
static int pin_map(struct type1 *c, struct type1_dma *d)
{
    uint64_t done = 0;                 /* bytes pinned and mapped */
    int err = 0;
    while (!err && done < d->size) {
        err = runs_reserve(d, PIN_BATCH);
        if (err)
            break;
        struct vtio_pin_run *batch = &d->runs[d->n_runs];
        unsigned n;
        long pages = vtio_process_pin_runs(c->proc, d->vaddr + done,
                                           (d->size - done) >> PAGE_SHIFT, batch, PIN_BATCH,
                                           &n);
        if (pages < 0) {
            err = (int)pages;
            break;
        }
        d->n_runs += n;
        for (unsigned i = 0; i < n && !err; i++) {
            uint64_t len = batch[i].pages << PAGE_SHIFT;
            err = map_run(c, d->iova + done, batch[i].pa, len, d->prot);
            if (!err)
                done += len;
        }
    }
    if (err)
        unmap_unpin(c, d, done);
    return err;
}

/* Unmaps and unpins all d holds (nothing if it was never pinned). */
static void dma_put_pages(struct type1 *c, struct type1_dma *d)
{
    unmap_unpin(c, d, d->runs ? d->size : 0);
}

/* Maps every mapping into new domain nd (pinning them first if the
 * container had no domain).  @returns 0; -errno with nd as it was. */
int type1_dma_replay(struct type1 *c, struct vtio_iommu_domain *nd)
{
    bool pinned = c->n_domains > 0;
    struct type1_domain *saved = c->domains;
    unsigned saved_n = c->n_domains;
    struct type1_domain only = { .domain = nd };
    if (!pinned) {
        /* pin_map maps into c's domains: for now, the new one alone */
        c->domains = &only;
        c->n_domains = 1;
    }
    int err = 0;
    struct type1_dma *d;
    for (d = type1_dma_first(c); d && !err; d = err ? d : type1_dma_next(c, d)) {
        if (!pinned) {
            err = pin_map(c, d);
            continue;
        }
        uint64_t iova = d->iova;
        for (size_t i = 0; i < d->n_runs && !err; i++) {
            uint64_t len = d->runs[i].pages << PAGE_SHIFT;
            err = vtio_iommu_map(nd, iova, d->runs[i].pa, len, d->prot);
            iova += len;
        }
        if (err)
            vtio_iommu_unmap(nd, d->iova, d->size);
    }
    if (err) {
        /* undo the mappings before d (d undid its own) */
        for (struct type1_dma *u = type1_dma_first(c); u != d; u = type1_dma_next(c, u)) {
            if (pinned)
                vtio_iommu_unmap(nd, u->iova, u->size);
            else
                dma_put_pages(c, u);
        }
    }
    c->domains = saved;
    c->n_domains = saved_n;
    return err;
}

/* ------------------------------------------------------------------------
 * MAP_DMA and UNMAP_DMA
 * ------------------------------------------------------------------------ */

static void dma_remove(struct type1 *c, struct type1_dma *d)
{
    dma_put_pages(c, d);
    c->root = treap_erase(c->root, d);
    free(d->bitmap);
    free(d);
    c->dma_avail++;
}

void type1_dma_remove_all(struct type1 *c)
{
    while (c->root)
        dma_remove(c, c->root);
}

static int do_map(struct type1 *c, const struct vfio_iommu_type1_dma_map *map)
{
    unsigned prot = (map->flags & VFIO_DMA_MAP_FLAG_READ ? VTIO_IOMMU_READ : 0) |
                    (map->flags & VFIO_DMA_MAP_FLAG_WRITE ? VTIO_IOMMU_WRITE : 0);
    if (!prot)
        return vtio_fail(-EINVAL, "vfio type1: MAP_DMA without READ or WRITE");
    uint64_t pgsize = type1_min_pgsize(c);
    if (!map->size || ((map->size | map->iova | map->vaddr) & (pgsize - 1)))
        return vtio_fail(-EINVAL, "vfio type1: MAP_DMA iova %#llx vaddr %#llx size %#llx: not "
                         "a non-zero multiple of %#llx", (unsigned long long)map->iova,
                         (unsigned long long)map->vaddr, (unsigned long long)map->size,
                         (unsigned long long)pgsize);
    uint64_t last = map->iova + map->size - 1;
    if (last < map->iova || map->vaddr + map->size - 1 < map->vaddr)
        return vtio_fail(-EINVAL, "vfio type1: MAP_DMA range wraps around");
    if (type1_dma_find(c, map->iova, last))
        return vtio_fail(-EEXIST, "vfio type1: MAP_DMA [%#llx, %#llx] overlaps a mapping",
                         (unsigned long long)map->iova, (unsigned long long)last);
    if (!c->dma_avail)
        return vtio_fail(-ENOSPC, "vfio type1: %u mappings already (dma_entry_limit)",
                         DMA_ENTRY_LIMIT);
    if (!type1_iova_valid(c, map->iova, last))
        return vtio_fail(-EINVAL, "vfio type1: MAP_DMA [%#llx, %#llx] is not in a valid IOVA "
                         "range", (unsigned long long)map->iova, (unsigned long long)last);

    struct type1_dma *d = malloc(sizeof(*d));
    if (!d)
        return vtio_fail(-ENOMEM, "vfio type1: out of memory");
    *d = (struct type1_dma){ .prio = next_prio(c), .iova = map->iova, .size = map->size,
                             .vaddr = map->vaddr, .prot = prot };
    int err = c->n_domains ? pin_map(c, d) : 0;
    if (!err && c->dirty_tracking)
        err = type1_dirty_alloc(d, pgsize);
    if (err) {
        dma_put_pages(c, d);
        free(d);
        return err;
    }
    c->root = treap_insert(c->root, d);
    c->dma_avail--;
    return 0;
}

/* Unmaps what [iova, last] holds (see the rules at the top); *unmapped
 * gets the bytes.  bitmap: also report their dirty pages into it. */
static int do_unmap(struct type1 *c, uint64_t iova, uint64_t last,
                    const struct vfio_bitmap *bitmap, uint64_t *unmapped)
{
    *unmapped = 0;
    if (c->v2 && type1_dma_cuts(c, iova, last))
        return vtio_fail(-EINVAL, "vfio type1: UNMAP_DMA [%#llx, %#llx] would cut a mapping",
                         (unsigned long long)iova, (unsigned long long)last);
    struct type1_dma *d = type1_dma_find(c, iova, last);
    while (d && d->iova <= last) {
        if (!c->v2 && d->iova < iova)
            break;
        struct type1_dma *next = type1_dma_next(c, d);
        if (bitmap)
            type1_dirty_report(d, bitmap->data, iova, bitmap->pgsize);
        *unmapped += d->size;
        dma_remove(c, d);
        d = next;
    }
    return 0;
}

long type1_map_dma(struct type1 *c, void *arg)
{
    struct vfio_iommu_type1_dma_map map;
    memcpy(&map, arg, sizeof(map));
    if (map.argsz < sizeof(map))
        return vtio_fail(-EINVAL, "vfio type1: MAP_DMA argsz %u < %zu", map.argsz, sizeof(map));
    if (map.flags & ~VFIO_DMA_MAP_FLAGS)
        return vtio_fail(-EINVAL, "vfio type1: MAP_DMA flags %#x unknown",
                         map.flags & ~VFIO_DMA_MAP_FLAGS);
    pthread_mutex_lock(&c->lock);
    int err = do_map(c, &map);
    pthread_mutex_unlock(&c->lock);
    return err;
}

long type1_unmap_dma(struct type1 *c, void *arg)
{
    struct vfio_iommu_type1_dma_unmap unmap;
    size_t minsz = offsetof(struct vfio_iommu_type1_dma_unmap, data);
    memcpy(&unmap, arg, minsz);
    if (unmap.argsz < minsz)
        return vtio_fail(-EINVAL, "vfio type1: UNMAP_DMA argsz %u < %zu", unmap.argsz, minsz);
    if (unmap.flags & ~VFIO_DMA_UNMAP_FLAGS)
        return vtio_fail(-EINVAL, "vfio type1: UNMAP_DMA flags %#x unknown",
                         unmap.flags & ~VFIO_DMA_UNMAP_FLAGS);
    bool all = unmap.flags & VFIO_DMA_UNMAP_FLAG_ALL;
    bool dirty = unmap.flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
    if (dirty && all)
        return vtio_fail(-EINVAL, "vfio type1: UNMAP_DMA: ALL with GET_DIRTY_BITMAP");
    struct vfio_bitmap bitmap = { 0 };
    if (dirty) {
        if (unmap.argsz < minsz + sizeof(bitmap))
            return vtio_fail(-EINVAL, "vfio type1: UNMAP_DMA argsz %u has no bitmap",
                             unmap.argsz);
        memcpy(&bitmap, (uint8_t *)arg + minsz, sizeof(bitmap));
        int err = type1_dirty_check_bitmap(&bitmap, unmap.size);
        if (err)
            return err;
    }

    pthread_mutex_lock(&c->lock);
    uint64_t pgsize = type1_min_pgsize(c), last = unmap.iova + unmap.size - 1;
    int err = 0;
    if (unmap.iova & (pgsize - 1))
        err = vtio_fail(-EINVAL, "vfio type1: UNMAP_DMA iova %#llx not aligned to %#llx",
                        (unsigned long long)unmap.iova, (unsigned long long)pgsize);
    else if (all && (unmap.iova || unmap.size))
        err = vtio_fail(-EINVAL, "vfio type1: UNMAP_DMA ALL needs iova and size 0");
    else if (!all && (!unmap.size || (unmap.size & (pgsize - 1)) || last < unmap.iova))
        err = vtio_fail(-EINVAL, "vfio type1: UNMAP_DMA size %#llx", 
                        (unsigned long long)unmap.size);
    else if (dirty && !c->dirty_tracking)
        err = vtio_fail(-EINVAL, "vfio type1: UNMAP_DMA with a bitmap while dirty tracking "
                        "is off");
    else if (dirty && bitmap.pgsize != pgsize)
        err = vtio_fail(-EINVAL, "vfio type1: dirty bitmap page size must be %#llx",
                        (unsigned long long)pgsize);
    uint64_t unmapped = 0;
    if (!err)
        err = do_unmap(c, all ? 0 : unmap.iova, all ? UINT64_MAX : last,
                       dirty ? &bitmap : NULL, &unmapped);
    pthread_mutex_unlock(&c->lock);
    if (err)
        return err;
    unmap.size = unmapped;
    memcpy(arg, &unmap, minsz);
    return 0;
}
