/*
 * VFIO's type1 IOMMU backend (Linux's drivers/vfio/vfio_iommu_type1.c): the
 * DMA mappings of a container, made of the program's own memory.
 *
 * A container holds
 *  - its domains: one UNMANAGED IOMMU domain per IOMMU unit its groups sit
 *    behind.  A new group joins the first domain that takes it
 *    (vtio_iommu_attach_group refuses a domain of another unit), or gets a
 *    domain of its own, made from one of its devices, into which every
 *    existing mapping is replayed;
 *  - the valid IOVA list: the intersection of the domains' apertures minus
 *    every group's reserved regions (the MSI window), ascending and
 *    disjoint.  A group that would take away IOVAs an existing mapping uses
 *    is refused (-EINVAL).  With no domain the list is empty and means "no
 *    restriction", as in Linux;
 *  - its mappings (struct type1_dma, one per MAP_DMA), disjoint in IOVA, in
 *    a treap ordered by IOVA (O(log n) expected), at most dma_entry_limit
 *    (65535, Linux's limit since CVE-2019-3882) of them;
 *  - the dirty-tracking state.
 *
 * Mapping.  MAP_DMA pins the program's pages run by run
 * (vtio_process_pin_run returns the longest physically contiguous run, as
 * vfio_pin_pages_remote does), maps each run into every domain with one
 * vtio_iommu_map (which uses 2 MiB and 1 GiB pages where both addresses
 * allow), and keeps the runs (physical address, pages) in the mapping, so
 * that unmapping unpins without a page walk.  Any failure unwinds
 * everything: unmapped, unpinned, forgotten.  Locked memory is charged by
 * the pin calls (a page pinned twice counts once).  Invariant: mappings are
 * pinned and present in every domain exactly when the container has a
 * domain.  A mapping made before the first domain (Linux allows it) is only
 * recorded and is pinned when that domain comes; when the last domain goes,
 * every mapping goes with it (Linux's vfio_iommu_unmap_unpin_all).
 *
 * Unmapping removes a mapping from every domain with one vtio_iommu_unmap
 * (one IOTLB invalidation, waited for) and only then unpins its runs: no
 * device can reach a page by the time it may be reused.  v2 refuses an
 * unmap that would cut a mapping (-EINVAL).  v1 keeps Linux's rule: the
 * mappings that start inside the range go whole, and one that starts
 * before it stops the walk, so a range starting inside a mapping unmaps
 * nothing and succeeds.
 *
 * Dirty tracking is software, as in Linux's type1: a device behind an
 * IOMMU domain can write anywhere it is mapped and nothing records where
 * it did, so every pinned page is reported dirty at every report (and stays
 * so afterwards).  START gives each mapping a bitmap in the smallest page
 * size; GET_BITMAP and unmap-with-bitmap only set bits in the caller's
 * zeroed bitmap.
 *
 * Not here: VFIO_DMA_MAP_FLAG_VADDR and VFIO_DMA_UNMAP_FLAG_VADDR (live
 * update) are unknown flags (-EINVAL, what a kernel before 5.12 answers)
 * and UPDATE_VADDR is 0; pinning for emulated (mdev) devices.
 * VFIO_DMA_CC_IOMMU is 1 when every domain enforces cache coherency; VT-d
 * does that only with Snoop Control (ECAP.SC), which vtio's unit does not
 * have, so with a domain the answer is 0, as Linux's would be.
 *
 * Threads: one mutex per container guards all of it (Linux's iommu->lock)
 * and is held across pinning and mapping, so calls from several threads
 * serialise.  Lock order: the core's container lock, this one, then the
 * IOMMU core's and the process's.
 */
#include "host/vfio/vfio_priv.h"

#include <vtio/iommu.h>

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "host/proc/proc_priv.h"
#include "util/error.h"

#define PAGE_SHIFT VTIO_PAGE_SHIFT
#define PAGE_SIZE  VTIO_PAGE_SIZE

#define DMA_ENTRY_LIMIT 65535u         /* U16_MAX */

/* A dirty bitmap of n bits is stored in whole u64 words; Linux caps a
 * bitmap at INT_MAX bits (2^28 bytes: 8 TiB of 4 KiB pages). */
#define DIRTY_BITMAP_BYTES(n)  ((((uint64_t)(n) + 63) / 64) * 8)
#define DIRTY_BITMAP_PAGES_MAX ((uint64_t)INT_MAX)
#define DIRTY_BITMAP_SIZE_MAX  DIRTY_BITMAP_BYTES(DIRTY_BITMAP_PAGES_MAX)

#define VFIO_DMA_MAP_FLAGS   (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)
#define VFIO_DMA_UNMAP_FLAGS (VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL)
#define VFIO_DIRTY_FLAGS                                                      \
    (VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP |  \
     VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP)

/* Pages pinned together: physically contiguous. */
struct pinned_run {
    uint64_t pa;
    uint64_t pages;
};

/* One MAP_DMA. */
struct type1_dma {
    struct type1_dma *left, *right;    /* treap by iova */
    uint32_t prio;                     /* heap order: parent >= child */
    uint64_t iova, size, vaddr;
    unsigned prot;                     /* VTIO_IOMMU_READ | WRITE */
    struct pinned_run *runs;           /* NULL: not pinned (no domain yet) */
    size_t n_runs, cap_runs;
    uint64_t *bitmap;                  /* dirty bits while tracking */
};

struct type1_domain {
    struct vtio_iommu_domain *domain;
    struct vtio_iommu_group **groups;
    unsigned n_groups;
    uint64_t aperture_end, pgsize_bitmap;
    bool enforce_cache_coherency;
};

/* An inclusive IOVA range. */
struct iova_range {
    uint64_t start, last;
};

struct iova_list {
    struct iova_range *r;
    unsigned n, cap;
};

struct type1 {
    struct vtio_process *proc;         /* whose pages are pinned */
    pthread_mutex_t lock;              /* everything below */
    bool v2;
    struct type1_domain *domains;
    unsigned n_domains;
    struct iova_list iovas;            /* empty: no domain, no restriction */
    uint64_t pgsize_bitmap;            /* sizes every domain maps */
    struct type1_dma *root;
    uint32_t rng;                      /* treap priorities (xorshift32) */
    unsigned dma_avail;
    bool dirty_tracking;
};

static uint64_t smallest_page(const struct type1 *c)
{
    return c->pgsize_bitmap & -c->pgsize_bitmap;
}

static uint64_t dma_last(const struct type1_dma *d)
{
    return d->iova + d->size - 1;
}

/* ------------------------------------------------------------------------
 * The mappings' treap
 * ------------------------------------------------------------------------ */

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
static struct type1_dma *dma_find(const struct type1 *c, uint64_t start, uint64_t last)
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
static struct type1_dma *dma_next(const struct type1 *c, const struct type1_dma *d)
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

static struct type1_dma *dma_first(const struct type1 *c)
{
    return dma_find(c, 0, UINT64_MAX);
}

/* ------------------------------------------------------------------------
 * Pinning and mapping
 * ------------------------------------------------------------------------ */

static int run_add(struct type1_dma *d, uint64_t pa, uint64_t pages)
{
    if (d->n_runs == d->cap_runs) {
        size_t cap = d->cap_runs ? 2 * d->cap_runs : 16;
        struct pinned_run *runs = realloc(d->runs, cap * sizeof(*runs));
        if (!runs)
            return vtio_fail(-ENOMEM, "vfio type1: out of memory");
        d->runs = runs;
        d->cap_runs = cap;
    }
    d->runs[d->n_runs++] = (struct pinned_run){ pa, pages };
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
    for (size_t i = 0; i < d->n_runs; i++)
        vtio_process_unpin_run(c->proc, d->runs[i].pa, d->runs[i].pages);
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

/* Pins d's pages run by run and maps each run into every domain.
 * @returns 0; -ENOMEM (memlock limit, or memory), -EFAULT (a page is not
 * mapped), an IOMMU error: with nothing pinned or mapped. */
static int pin_map(struct type1 *c, struct type1_dma *d)
{
    uint64_t done = 0;
    int err = 0;
    while (!err && done < d->size) {
        uint64_t pa;
        long pages = vtio_process_pin_run(c->proc, d->vaddr + done,
                                          (d->size - done) >> PAGE_SHIFT, &pa);
        if (pages < 0) {
            err = (int)pages;
            break;
        }
        err = run_add(d, pa, (uint64_t)pages);
        if (err) {
            vtio_process_unpin_run(c->proc, pa, (uint64_t)pages);
            break;
        }
        uint64_t len = (uint64_t)pages << PAGE_SHIFT;
        err = map_run(c, d->iova + done, pa, len, d->prot);
        if (!err)
            done += len;
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

/* ------------------------------------------------------------------------
 * Dirty bitmaps
 * ------------------------------------------------------------------------ */

static int bitmap_alloc(struct type1_dma *d, uint64_t pgsize)
{
    uint64_t pages = d->size / pgsize;
    if (pages > DIRTY_BITMAP_PAGES_MAX)
        return vtio_fail(-EINVAL, "vfio type1: mapping too large to track dirty pages");
    d->bitmap = calloc(1, DIRTY_BITMAP_BYTES(pages));
    return d->bitmap ? 0 : vtio_fail(-ENOMEM, "vfio type1: out of memory");
}

static void bitmap_set_all(uint64_t *bm, uint64_t nbits)
{
    memset(bm, 0xff, nbits / 64 * 8);
    if (nbits % 64)
        bm[nbits / 64] |= (1ull << (nbits % 64)) - 1;
}

/* ORs nbits of src into dst from bit `at` on. */
static void bitmap_or_at(uint64_t *dst, uint64_t at, const uint64_t *src, uint64_t nbits)
{
    for (uint64_t i = 0; i < nbits; i += 64) {
        uint64_t w = src[i / 64];
        if (nbits - i < 64)
            w &= (1ull << (nbits - i)) - 1;
        uint64_t bit = at + i, shift = bit % 64;
        dst[bit / 64] |= w << shift;
        if (shift && w >> (64 - shift))
            dst[bit / 64 + 1] |= w >> (64 - shift);
    }
}

/* Sets d's dirty bits in the user's bitmap, whose bit 0 is base_iova, and
 * starts d's next interval: a pinned page is dirty again at once. */
static void report_dirty(struct type1_dma *d, uint64_t *user, uint64_t base_iova,
                         uint64_t pgsize)
{
    uint64_t nbits = d->size / pgsize;
    if (d->runs)
        bitmap_set_all(d->bitmap, nbits);
    bitmap_or_at(user, (d->iova - base_iova) / pgsize, d->bitmap, nbits);
}

/* ------------------------------------------------------------------------
 * Mappings
 * ------------------------------------------------------------------------ */

static void dma_remove(struct type1 *c, struct type1_dma *d)
{
    dma_put_pages(c, d);
    c->root = treap_erase(c->root, d);
    free(d->bitmap);
    free(d);
    c->dma_avail++;
}

static void dma_remove_all(struct type1 *c)
{
    while (c->root)
        dma_remove(c, c->root);
}

/* Whether [start, last] lies inside one valid range. */
static bool iova_valid(const struct type1 *c, uint64_t start, uint64_t last)
{
    for (unsigned i = 0; i < c->iovas.n; i++)
        if (start >= c->iovas.r[i].start && last <= c->iovas.r[i].last)
            return true;
    return c->iovas.n == 0;
}

static int do_map(struct type1 *c, const struct vfio_iommu_type1_dma_map *map)
{
    unsigned prot = (map->flags & VFIO_DMA_MAP_FLAG_READ ? VTIO_IOMMU_READ : 0) |
                    (map->flags & VFIO_DMA_MAP_FLAG_WRITE ? VTIO_IOMMU_WRITE : 0);
    if (!prot)
        return vtio_fail(-EINVAL, "vfio type1: MAP_DMA without READ or WRITE");
    uint64_t pgsize = smallest_page(c);
    if (!map->size || ((map->size | map->iova | map->vaddr) & (pgsize - 1)))
        return vtio_fail(-EINVAL, "vfio type1: MAP_DMA iova %#llx vaddr %#llx size %#llx: not "
                         "a non-zero multiple of %#llx", (unsigned long long)map->iova,
                         (unsigned long long)map->vaddr, (unsigned long long)map->size,
                         (unsigned long long)pgsize);
    uint64_t last = map->iova + map->size - 1;
    if (last < map->iova || map->vaddr + map->size - 1 < map->vaddr)
        return vtio_fail(-EINVAL, "vfio type1: MAP_DMA range wraps around");
    if (dma_find(c, map->iova, last))
        return vtio_fail(-EEXIST, "vfio type1: MAP_DMA [%#llx, %#llx] overlaps a mapping",
                         (unsigned long long)map->iova, (unsigned long long)last);
    if (!c->dma_avail)
        return vtio_fail(-ENOSPC, "vfio type1: %u mappings already (dma_entry_limit)",
                         DMA_ENTRY_LIMIT);
    if (!iova_valid(c, map->iova, last))
        return vtio_fail(-EINVAL, "vfio type1: MAP_DMA [%#llx, %#llx] is not in a valid IOVA "
                         "range", (unsigned long long)map->iova, (unsigned long long)last);

    struct type1_dma *d = malloc(sizeof(*d));
    if (!d)
        return vtio_fail(-ENOMEM, "vfio type1: out of memory");
    *d = (struct type1_dma){ .prio = next_prio(c), .iova = map->iova, .size = map->size,
                             .vaddr = map->vaddr, .prot = prot };
    int err = c->n_domains ? pin_map(c, d) : 0;
    if (!err && c->dirty_tracking)
        err = bitmap_alloc(d, pgsize);
    if (err) {
        dma_put_pages(c, d);
        free(d);
        return err;
    }
    c->root = treap_insert(c->root, d);
    c->dma_avail--;
    return 0;
}

/* v2: [iova, last] must not cut a mapping. */
static bool cuts_mapping(const struct type1 *c, uint64_t iova, uint64_t last)
{
    const struct type1_dma *d = dma_find(c, iova, iova);
    if (d && d->iova != iova)
        return true;
    d = dma_find(c, last, last);
    return d && dma_last(d) != last;
}

/* Unmaps what [iova, last] holds (see the rules at the top); *unmapped
 * gets the bytes.  bitmap: also report their dirty pages into it. */
static int do_unmap(struct type1 *c, uint64_t iova, uint64_t last,
                    const struct vfio_bitmap *bitmap, uint64_t *unmapped)
{
    *unmapped = 0;
    if (c->v2 && cuts_mapping(c, iova, last))
        return vtio_fail(-EINVAL, "vfio type1: UNMAP_DMA [%#llx, %#llx] would cut a mapping",
                         (unsigned long long)iova, (unsigned long long)last);
    struct type1_dma *d = dma_find(c, iova, last);
    while (d && d->iova <= last) {
        if (!c->v2 && d->iova < iova)
            break;
        struct type1_dma *next = dma_next(c, d);
        if (bitmap)
            report_dirty(d, bitmap->data, iova, bitmap->pgsize);
        *unmapped += d->size;
        dma_remove(c, d);
        d = next;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * The valid IOVA list
 * ------------------------------------------------------------------------ */

/* Room for one more range in l.  @returns 0; -ENOMEM. */
static int iova_list_grow(struct iova_list *l)
{
    if (l->n < l->cap)
        return 0;
    unsigned cap = l->cap ? 2 * l->cap : 4;
    struct iova_range *r = realloc(l->r, cap * sizeof(*r));
    if (!r)
        return vtio_fail(-ENOMEM, "vfio type1: out of memory");
    l->r = r;
    l->cap = cap;
    return 0;
}

/* Removes [start, last] from l.  @returns 0; -ENOMEM. */
static int iova_list_subtract(struct iova_list *l, uint64_t start, uint64_t last)
{
    int err = iova_list_grow(l);       /* a split adds a range */
    if (err)
        return err;
    for (unsigned i = 0; i < l->n; i++) {
        struct iova_range *r = &l->r[i];
        if (start > r->last || last < r->start)
            continue;
        if (start > r->start && last < r->last) {
            /* a hole in the middle: split */
            memmove(r + 2, r + 1, (l->n - i - 1) * sizeof(*r));
            r[1] = (struct iova_range){ last + 1, r->last };
            r->last = start - 1;
            l->n++;
            return 0;
        }
        if (start > r->start) {
            r->last = start - 1;
        } else if (last < r->last) {
            r->start = last + 1;
        } else {
            memmove(r, r + 1, (l->n - i - 1) * sizeof(*r));
            l->n--;
            i--;
        }
    }
    return 0;
}

/* Removes g's reserved regions from l.  @returns 0; -ENOMEM. */
static int iova_list_subtract_group(struct iova_list *l, struct vtio_iommu_group *g)
{
    unsigned n = vtio_iommu_group_resv_regions(g, NULL, 0);
    struct vtio_iommu_resv_region *resv = calloc(n ? n : 1, sizeof(*resv));
    if (!resv)
        return vtio_fail(-ENOMEM, "vfio type1: out of memory");
    n = vtio_iommu_group_resv_regions(g, resv, n);
    int err = 0;
    for (unsigned i = 0; i < n && !err; i++)
        if (resv[i].length)
            err = iova_list_subtract(l, resv[i].start, resv[i].start + resv[i].length - 1);
    free(resv);
    return err;
}

/* -EINVAL if a mapping uses an IOVA outside l. */
static int check_mappings_inside(const struct type1 *c, const struct iova_list *l)
{
    uint64_t gap = 0;                  /* where the gap before r[i] starts */
    for (unsigned i = 0; i < l->n; i++) {
        if (l->r[i].start > gap && dma_find(c, gap, l->r[i].start - 1))
            break;
        if (l->r[i].last == UINT64_MAX)
            return 0;
        gap = l->r[i].last + 1;
    }
    if (!l->n || dma_find(c, gap, UINT64_MAX))
        return vtio_fail(-EINVAL, "vfio type1: the group's IOMMU cannot translate IOVAs a "
                         "mapping uses (aperture or reserved region)");
    return 0;
}

/*
 * The valid list of the container's domains and groups, plus group g (if
 * not NULL) in a domain whose aperture ends at aperture_end.  @returns 0
 * and *out; -EINVAL it would be empty or leave out IOVAs a mapping uses;
 * -ENOMEM.
 */
static int iova_list_build(struct type1 *c, struct vtio_iommu_group *g, uint64_t aperture_end,
                           struct iova_list *out)
{
    *out = (struct iova_list){ 0 };
    uint64_t end = aperture_end;
    for (unsigned i = 0; i < c->n_domains; i++)
        if (c->domains[i].aperture_end < end)
            end = c->domains[i].aperture_end;
    int err = iova_list_grow(out);
    if (!err)
        out->r[out->n++] = (struct iova_range){ 0, end };
    if (!err && g)
        err = iova_list_subtract_group(out, g);
    for (unsigned i = 0; i < c->n_domains && !err; i++)
        for (unsigned j = 0; j < c->domains[i].n_groups && !err; j++)
            err = iova_list_subtract_group(out, c->domains[i].groups[j]);
    if (!err && !out->n)
        err = vtio_fail(-EINVAL, "vfio type1: the reserved regions leave no IOVA to map");
    if (!err)
        err = check_mappings_inside(c, out);
    if (err) {
        free(out->r);
        *out = (struct iova_list){ 0 };
    }
    return err;
}

static void iova_list_install(struct type1 *c, struct iova_list *l)
{
    free(c->iovas.r);
    c->iovas = *l;
}

/* ------------------------------------------------------------------------
 * Domains and groups
 * ------------------------------------------------------------------------ */

static void update_pgsize_bitmap(struct type1 *c)
{
    /* With no domain: every size from 4 KiB (Linux's PAGE_MASK). */
    c->pgsize_bitmap = ~(PAGE_SIZE - 1);
    for (unsigned i = 0; i < c->n_domains; i++)
        c->pgsize_bitmap &= c->domains[i].pgsize_bitmap;
    if (c->pgsize_bitmap & (PAGE_SIZE - 1))
        c->pgsize_bitmap = (c->pgsize_bitmap & ~(PAGE_SIZE - 1)) | PAGE_SIZE;
}

static struct type1_domain *domain_of(struct type1 *c, struct vtio_iommu_group *g,
                                      unsigned *at)
{
    for (unsigned i = 0; i < c->n_domains; i++)
        for (unsigned j = 0; j < c->domains[i].n_groups; j++)
            if (c->domains[i].groups[j] == g) {
                if (at)
                    *at = j;
                return &c->domains[i];
            }
    return NULL;
}

static int group_add(struct type1_domain *td, struct vtio_iommu_group *g)
{
    struct vtio_iommu_group **gs = realloc(td->groups, (td->n_groups + 1) * sizeof(*gs));
    if (!gs)
        return vtio_fail(-ENOMEM, "vfio type1: out of memory");
    gs[td->n_groups++] = g;
    td->groups = gs;
    return 0;
}

/* Maps every mapping into new domain nd (pinning them first if the
 * container had no domain).  @returns 0; -errno with nd as it was. */
static int replay(struct type1 *c, struct vtio_iommu_domain *nd)
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
    for (d = dma_first(c); d && !err; d = err ? d : dma_next(c, d)) {
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
        for (struct type1_dma *u = dma_first(c); u != d; u = dma_next(c, u)) {
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

/* g into a new domain of its own IOMMU, with the mappings replayed. */
static int attach_new_domain(struct type1 *c, struct vtio_iommu_group *g)
{
    struct vtio_device *dev;
    if (!vtio_iommu_group_devices(g, &dev, 1))
        return vtio_fail(-ENODEV, "vfio type1: group %u has no device",
                         vtio_iommu_group_id(g));
    struct type1_domain td = { 0 };
    int err = vtio_iommu_domain_alloc(dev, VTIO_IOMMU_DOMAIN_UNMANAGED, &td.domain);
    if (err)
        return err;
    vtio_iommu_domain_geometry(td.domain, &td.aperture_end, &td.pgsize_bitmap);
    /* Only VT-d's Snoop Control enforces coherency; vtio's unit lacks it. */
    td.enforce_cache_coherency = false;

    struct iova_list l;
    struct type1_domain *ds = NULL;
    err = iova_list_build(c, g, td.aperture_end, &l);
    if (!err)
        err = group_add(&td, g);
    if (!err) {
        ds = realloc(c->domains, (c->n_domains + 1) * sizeof(*ds));
        if (!ds)
            err = vtio_fail(-ENOMEM, "vfio type1: out of memory");
        else
            c->domains = ds;
    }
    if (!err)
        err = vtio_iommu_attach_group(td.domain, g);
    if (!err) {
        err = replay(c, td.domain);
        if (err)
            vtio_iommu_detach_group(td.domain, g);
    }
    if (err) {
        free(l.r);
        free(td.groups);
        vtio_iommu_domain_free(td.domain);
        return err;
    }
    c->domains[c->n_domains++] = td;
    iova_list_install(c, &l);
    update_pgsize_bitmap(c);
    return 0;
}

/* g into the first domain that takes it (one of g's IOMMU, whose aperture
 * the list already has: only g's reserved regions narrow it).
 * @returns 0; -ENODEV none takes it; -errno. */
static int attach_existing_domain(struct type1 *c, struct vtio_iommu_group *g)
{
    struct iova_list l;
    int err = iova_list_build(c, g, UINT64_MAX, &l);
    for (unsigned i = 0; i < c->n_domains && !err; i++) {
        struct type1_domain *td = &c->domains[i];
        if (vtio_iommu_attach_group(td->domain, g) < 0)
            continue;
        err = group_add(td, g);
        if (err) {
            vtio_iommu_detach_group(td->domain, g);
            break;
        }
        iova_list_install(c, &l);
        return 0;
    }
    free(l.r);
    return err ? err : -ENODEV;
}

static int type1_attach_group(void *data, struct vtio_iommu_group *g)
{
    struct type1 *c = data;
    if (!g)
        return vtio_fail(-EINVAL, "vfio type1: no group");
    pthread_mutex_lock(&c->lock);
    int err = 0;
    if (domain_of(c, g, NULL)) {
        err = vtio_fail(-EINVAL, "vfio type1: group %u is already in the container",
                        vtio_iommu_group_id(g));
        goto out;
    }
    err = c->n_domains ? attach_existing_domain(c, g) : -ENODEV;
    if (err == -ENODEV)
        err = attach_new_domain(c, g);
out:
    pthread_mutex_unlock(&c->lock);
    return err;
}

static void domain_release(struct type1_domain *td)
{
    for (unsigned j = 0; j < td->n_groups; j++)
        vtio_iommu_detach_group(td->domain, td->groups[j]);
    free(td->groups);
    vtio_iommu_domain_free(td->domain);
}

static void type1_detach_group(void *data, struct vtio_iommu_group *g)
{
    struct type1 *c = data;
    pthread_mutex_lock(&c->lock);
    unsigned at;
    struct type1_domain *td = domain_of(c, g, &at);
    if (td) {
        vtio_iommu_detach_group(td->domain, g);
        td->groups[at] = td->groups[--td->n_groups];
        if (!td->n_groups) {
            if (c->n_domains == 1)
                dma_remove_all(c);
            domain_release(td);
            *td = c->domains[--c->n_domains];
            update_pgsize_bitmap(c);
        }
        /* Fewer apertures and regions: the list can only grow, so no
         * mapping is in the way and build fails only for memory, when the
         * old, narrower list stays. */
        struct iova_list l;
        if (!c->n_domains)
            iova_list_install(c, &(struct iova_list){ 0 });
        else if (!iova_list_build(c, NULL, UINT64_MAX, &l))
            iova_list_install(c, &l);
    }
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------------------
 * The ioctls
 * ------------------------------------------------------------------------ */

static int add_caps(struct type1 *c, struct vfio_info_cap *caps)
{
    struct vfio_iommu_type1_info_cap_migration *mig = (void *)vfio_info_cap_add(
        caps, sizeof(*mig), VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, 1);
    if (!mig)
        return -ENOMEM;
    mig->pgsize_bitmap = smallest_page(c);
    mig->max_dirty_bitmap_size = DIRTY_BITMAP_SIZE_MAX;

    struct vfio_iommu_type1_info_dma_avail *avail = (void *)vfio_info_cap_add(
        caps, sizeof(*avail), VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1);
    if (!avail)
        return -ENOMEM;
    avail->avail = c->dma_avail;

    if (!c->iovas.n)
        return 0;
    struct vfio_iommu_type1_info_cap_iova_range *range = (void *)vfio_info_cap_add(
        caps, sizeof(*range) + c->iovas.n * sizeof(range->iova_ranges[0]),
        VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1);
    if (!range)
        return -ENOMEM;
    range->nr_iovas = c->iovas.n;
    for (unsigned i = 0; i < c->iovas.n; i++)
        range->iova_ranges[i] = (struct vfio_iova_range){ c->iovas.r[i].start,
                                                          c->iovas.r[i].last };
    return 0;
}

static long get_info(struct type1 *c, void *arg)
{
    struct vfio_iommu_type1_info info = { 0 };
    size_t minsz = offsetof(struct vfio_iommu_type1_info, cap_offset);
    memcpy(&info, arg, minsz);
    if (info.argsz < minsz)
        return vtio_fail(-EINVAL, "vfio type1: GET_INFO argsz %u < %zu", info.argsz, minsz);

    struct vfio_info_cap caps = { 0 };
    pthread_mutex_lock(&c->lock);
    info.flags = VFIO_IOMMU_INFO_PGSIZES;
    info.iova_pgsizes = c->pgsize_bitmap;
    int err = add_caps(c, &caps);
    pthread_mutex_unlock(&c->lock);
    if (err) {
        vfio_info_cap_free(&caps);
        return err;
    }
    vfio_info_copy_out(arg, info.argsz, &info, sizeof(info), &caps, &info.flags,
                       VFIO_IOMMU_INFO_CAPS, &info.cap_offset);
    vfio_info_cap_free(&caps);
    return 0;
}

static long map_dma(struct type1 *c, void *arg)
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

/* The checks Linux makes on a dirty bitmap before taking the lock. */
static int check_bitmap(const struct vfio_bitmap *bm, uint64_t range_size)
{
    if (!bm->data)
        return vtio_fail(-EINVAL, "vfio type1: dirty bitmap without data");
    if (!bm->pgsize || (bm->pgsize & (bm->pgsize - 1)))
        return vtio_fail(-EINVAL, "vfio type1: dirty bitmap page size %#llx",
                         (unsigned long long)bm->pgsize);
    uint64_t pages = range_size / bm->pgsize;
    if (!pages || !bm->size || bm->size > DIRTY_BITMAP_SIZE_MAX ||
        bm->size < DIRTY_BITMAP_BYTES(pages))
        return vtio_fail(-EINVAL, "vfio type1: dirty bitmap of %llu bytes for %llu pages",
                         (unsigned long long)bm->size, (unsigned long long)pages);
    return 0;
}

static long unmap_dma(struct type1 *c, void *arg)
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
        int err = check_bitmap(&bitmap, unmap.size);
        if (err)
            return err;
    }

    pthread_mutex_lock(&c->lock);
    uint64_t pgsize = smallest_page(c), last = unmap.iova + unmap.size - 1;
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

static int dirty_start(struct type1 *c)
{
    if (c->dirty_tracking)
        return 0;
    uint64_t pgsize = smallest_page(c);
    for (struct type1_dma *d = dma_first(c); d; d = dma_next(c, d)) {
        int err = bitmap_alloc(d, pgsize);
        if (err) {
            for (struct type1_dma *u = dma_first(c); u != d; u = dma_next(c, u)) {
                free(u->bitmap);
                u->bitmap = NULL;
            }
            return err;
        }
    }
    c->dirty_tracking = true;
    return 0;
}

static void dirty_stop(struct type1 *c)
{
    for (struct type1_dma *d = dma_first(c); d; d = dma_next(c, d)) {
        free(d->bitmap);
        d->bitmap = NULL;
    }
    c->dirty_tracking = false;
}

/* GET_BITMAP: the range must cover whole mappings, as Linux requires. */
static int dirty_get(struct type1 *c, const struct vfio_iommu_type1_dirty_bitmap_get *g)
{
    uint64_t pgsize = smallest_page(c), last = g->iova + g->size - 1;
    if (g->bitmap.pgsize != pgsize)
        return vtio_fail(-EINVAL, "vfio type1: dirty bitmap page size must be %#llx",
                         (unsigned long long)pgsize);
    if ((g->iova & (pgsize - 1)) || !g->size || (g->size & (pgsize - 1)))
        return vtio_fail(-EINVAL, "vfio type1: GET_BITMAP range not aligned to %#llx",
                         (unsigned long long)pgsize);
    if (!c->dirty_tracking)
        return vtio_fail(-EINVAL, "vfio type1: GET_BITMAP while dirty tracking is off");
    if (cuts_mapping(c, g->iova, last))
        return vtio_fail(-EINVAL, "vfio type1: GET_BITMAP [%#llx, %#llx] cuts a mapping",
                         (unsigned long long)g->iova, (unsigned long long)last);
    for (struct type1_dma *d = dma_find(c, g->iova, last); d && d->iova <= last;
         d = dma_next(c, d)) {
        report_dirty(d, g->bitmap.data, g->iova, pgsize);
        memset(d->bitmap, 0, DIRTY_BITMAP_BYTES(d->size / pgsize));
    }
    return 0;
}

static long dirty_pages(struct type1 *c, void *arg)
{
    if (!c->v2)
        return vtio_fail(-EACCES, "vfio type1: DIRTY_PAGES needs VFIO_TYPE1v2_IOMMU");
    struct vfio_iommu_type1_dirty_bitmap dirty;
    size_t minsz = offsetof(struct vfio_iommu_type1_dirty_bitmap, data);
    memcpy(&dirty, arg, minsz);
    if (dirty.argsz < minsz || (dirty.flags & ~VFIO_DIRTY_FLAGS))
        return vtio_fail(-EINVAL, "vfio type1: DIRTY_PAGES argsz %u flags %#x", dirty.argsz,
                         dirty.flags);
    if (!dirty.flags || (dirty.flags & (dirty.flags - 1)))
        return vtio_fail(-EINVAL, "vfio type1: DIRTY_PAGES needs exactly one of START, STOP, "
                         "GET_BITMAP");
    struct vfio_iommu_type1_dirty_bitmap_get range;
    if (dirty.flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP) {
        if (dirty.argsz - minsz < sizeof(range))
            return vtio_fail(-EINVAL, "vfio type1: GET_BITMAP argsz %u has no range",
                             dirty.argsz);
        memcpy(&range, (uint8_t *)arg + minsz, sizeof(range));
        if (range.iova + range.size < range.iova)
            return vtio_fail(-EINVAL, "vfio type1: GET_BITMAP range wraps around");
        int err = check_bitmap(&range.bitmap, range.size);
        if (err)
            return err;
    }
    pthread_mutex_lock(&c->lock);
    int err = 0;
    if (dirty.flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_START)
        err = dirty_start(c);
    else if (dirty.flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP)
        dirty_stop(c);
    else
        err = dirty_get(c, &range);
    pthread_mutex_unlock(&c->lock);
    return err;
}

static long type1_ioctl(void *data, unsigned long request, unsigned long arg)
{
    struct type1 *c = data;
    void *p = (void *)(uintptr_t)arg;
    if (!p && (request == VFIO_IOMMU_GET_INFO || request == VFIO_IOMMU_MAP_DMA ||
               request == VFIO_IOMMU_UNMAP_DMA || request == VFIO_IOMMU_DIRTY_PAGES))
        return vtio_fail(-EFAULT, "vfio type1: NULL argument");
    switch (request) {
    case VFIO_IOMMU_GET_INFO:    return get_info(c, p);
    case VFIO_IOMMU_MAP_DMA:     return map_dma(c, p);
    case VFIO_IOMMU_UNMAP_DMA:   return unmap_dma(c, p);
    case VFIO_IOMMU_DIRTY_PAGES: return dirty_pages(c, p);
    default:
        return vtio_fail(-ENOTTY, "vfio type1: unknown ioctl %#lx", request);
    }
}

/* ------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------ */

static long type1_check_extension(void *data, unsigned long ext)
{
    struct type1 *c = data;
    switch (ext) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
    case VFIO_UNMAP_ALL:
        return 1;
    case VFIO_DMA_CC_IOMMU: {
        if (!c)
            return 0;
        long all = 1;
        pthread_mutex_lock(&c->lock);
        for (unsigned i = 0; i < c->n_domains; i++)
            if (!c->domains[i].enforce_cache_coherency)
                all = 0;
        pthread_mutex_unlock(&c->lock);
        return all;
    }
    default:
        return 0;
    }
}

static int type1_open(struct vtio_host *h, struct vtio_process *proc, unsigned long type,
                      void **data)
{
    if (!h || !proc || !data)
        return vtio_fail(-EINVAL, "vfio type1: open needs a host, a process and a result");
    if (type != VFIO_TYPE1_IOMMU && type != VFIO_TYPE1v2_IOMMU)
        return vtio_fail(-EINVAL, "vfio type1: IOMMU type %lu is not type1", type);
    struct type1 *c = calloc(1, sizeof(*c));
    if (!c)
        return vtio_fail(-ENOMEM, "vfio type1: out of memory");
    c->proc = proc;
    c->v2 = type == VFIO_TYPE1v2_IOMMU;
    c->dma_avail = DMA_ENTRY_LIMIT;
    c->rng = 0x9e3779b9u;
    update_pgsize_bitmap(c);
    pthread_mutex_init(&c->lock, NULL);
    *data = c;
    return 0;
}

static void type1_release(void *data)
{
    struct type1 *c = data;
    if (!c)
        return;
    dma_remove_all(c);
    for (unsigned i = 0; i < c->n_domains; i++)
        domain_release(&c->domains[i]);
    free(c->domains);
    free(c->iovas.r);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

const struct vfio_iommu_backend_ops vfio_iommu_type1_ops = {
    .name = "vfio-iommu-type1",
    .check_extension = type1_check_extension,
    .open = type1_open,
    .release = type1_release,
    .ioctl = type1_ioctl,
    .attach_group = type1_attach_group,
    .detach_group = type1_detach_group,
};
