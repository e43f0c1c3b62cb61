/*
 * The IOVA allocator: a domain, and its red-black tree of ranges.
 *
 * How it works.  Every range in use (allocated, sitting in a cache, or
 * reserved) is a node of one red-black tree ordered by first pfn; the free
 * space is the gaps between nodes.  A reserved anchor node sits at
 * [end_pfn, end_pfn], just past the space, so every gap has a node above it
 * ("the gap below node c" is (prev(c)->hi, c->lo)).  An allocation looks for
 * the highest gap that holds the range below the limit: it starts at a hint,
 * the node placed by the last allocation in the same space (32-bit or not),
 * and walks down gap by gap (in-order predecessors), putting the range as
 * high in a gap as the alignment allows.  If it reaches start_pfn without a
 * fit, it walks the part it skipped, from the limit down to the hint.  Freeing
 * a range at or above the hint moves the hint up past it, so the next search
 * starts where space was just given back.  A search that fails remembers
 * (limit, size, alignment); a later request at or below that limit that is
 * at least as big and as strictly aligned fails at once, until something is
 * freed (Linux's max32_alloc_size, made exact).  The per-thread caches in
 * iova_rcache.c sit in front of all this for small sizes.
 *
 * Guarantees.  The two passes together visit every gap below the limit, so
 * a tree allocation fails only when no gap fits.  Nodes never overlap: a
 * range is placed only inside a gap.  A free must name exactly one allocated
 * node (found in O(log n)); anything else is refused before anything
 * changes.  Reserved nodes are never freed, so reserved pfns are never
 * handed out.  Insert and erase are O(log n) with at most three rotations.
 *
 * Limits.  The search is linear in the number of ranges it walks past, as
 * Linux's is: a tree crowded with small ranges under the limit makes a large
 * allocation walk them all (Linux's reported soft lockups; an augmented tree
 * keeping the largest gap per subtree would bound it, and is not done).  The
 * hint keeps the common case (allocations of similar sizes, freed roughly
 * in order) to a few steps.  The domain's mutex serialises every tree
 * operation; only the cache fast path avoids it.  pfns are 64-bit; the
 * space is [start_pfn, 2^64 / granule).
 */
#include "host/iommu/iova_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

static atomic_uint_fast64_t next_domain_id = 1;

/* ------------------------------------------------------------------------
 * Red-black tree (CLRS, with parent links and NULL leaves)
 * ------------------------------------------------------------------------ */

typedef struct iova_node node_t;

static bool is_red(const node_t *n)
{
    return n && n->red;
}

static void rotate_left(struct vtio_iova_domain *d, node_t *x)
{
    node_t *y = x->right;
    x->right = y->left;
    if (y->left)
        y->left->parent = x;
    y->parent = x->parent;
    if (!x->parent)
        d->root = y;
    else if (x == x->parent->left)
        x->parent->left = y;
    else
        x->parent->right = y;
    y->left = x;
    x->parent = y;
}

static void rotate_right(struct vtio_iova_domain *d, node_t *x)
{
    node_t *y = x->left;
    x->left = y->right;
    if (y->right)
        y->right->parent = x;
    y->parent = x->parent;
    if (!x->parent)
        d->root = y;
    else if (x == x->parent->right)
        x->parent->right = y;
    else
        x->parent->left = y;
    y->right = x;
    x->parent = y;
}

static node_t *rb_first(node_t *n)
{
    while (n && n->left)
        n = n->left;
    return n;
}

static node_t *rb_next(node_t *n)
{
    if (n->right)
        return rb_first(n->right);
    while (n->parent && n == n->parent->right)
        n = n->parent;
    return n->parent;
}

static node_t *rb_prev(node_t *n)
{
    if (n->left) {
        n = n->left;
        while (n->right)
            n = n->right;
        return n;
    }
    while (n->parent && n == n->parent->left)
        n = n->parent;
    return n->parent;
}

/* Links n (lo set, not overlapping anything) into the tree. */
static void rb_insert(struct vtio_iova_domain *d, node_t *n)
{
    node_t **link = &d->root, *parent = NULL;
    while (*link) {
        parent = *link;
        link = n->lo < parent->lo ? &parent->left : &parent->right;
    }
    n->parent = parent;
    n->left = n->right = NULL;
    n->red = true;
    *link = n;

    node_t *z = n, *p;
    while ((p = z->parent) && p->red) {
        node_t *g = p->parent;          /* exists: a red node is not the root */
        if (p == g->left) {
            node_t *u = g->right;
            if (is_red(u)) {
                p->red = u->red = false;
                g->red = true;
                z = g;
            } else {
                if (z == p->right) {
                    z = p;
                    rotate_left(d, z);
                    p = z->parent;
                }
                p->red = false;
                g->red = true;
                rotate_right(d, g);
            }
        } else {
            node_t *u = g->left;
            if (is_red(u)) {
                p->red = u->red = false;
                g->red = true;
                z = g;
            } else {
                if (z == p->left) {
                    z = p;
                    rotate_right(d, z);
                    p = z->parent;
                }
                p->red = false;
                g->red = true;
                rotate_left(d, g);
            }
        }
    }
    d->root->red = false;
}

static void transplant(struct vtio_iova_domain *d, node_t *u, node_t *v)
{
    if (!u->parent)
        d->root = v;
    else if (u == u->parent->left)
        u->parent->left = v;
    else
        u->parent->right = v;
    if (v)
        v->parent = u->parent;
}

/* x (maybe NULL) replaced a black node under xp and is one black short. */
static void erase_fixup(struct vtio_iova_domain *d, node_t *x, node_t *xp)
{
    while (x != d->root && !is_red(x)) {
        /* The sibling exists: x's side is short of a black, so the other
         * side has at least one black node. */
        if (x == xp->left) {
            node_t *w = xp->right;
            if (w->red) {
                w->red = false;
                xp->red = true;
                rotate_left(d, xp);
                w = xp->right;
            }
            if (!is_red(w->left) && !is_red(w->right)) {
                w->red = true;
                x = xp;
                xp = x->parent;
            } else {
                if (!is_red(w->right)) {
                    w->left->red = false;
                    w->red = true;
                    rotate_right(d, w);
                    w = xp->right;
                }
                w->red = xp->red;
                xp->red = false;
                w->right->red = false;
                rotate_left(d, xp);
                x = d->root;
            }
        } else {
            node_t *w = xp->left;
            if (w->red) {
                w->red = false;
                xp->red = true;
                rotate_right(d, xp);
                w = xp->left;
            }
            if (!is_red(w->left) && !is_red(w->right)) {
                w->red = true;
                x = xp;
                xp = x->parent;
            } else {
                if (!is_red(w->left)) {
                    w->right->red = false;
                    w->red = true;
                    rotate_left(d, w);
                    w = xp->left;
                }
                w->red = xp->red;
                xp->red = false;
                w->left->red = false;
                rotate_right(d, xp);
                x = d->root;
            }
        }
    }
    if (x)
        x->red = false;
}

static void rb_erase(struct vtio_iova_domain *d, node_t *z)
{
    node_t *x, *xp;
    bool removed_red = z->red;
    if (!z->left) {
        x = z->right;
        xp = z->parent;
        transplant(d, z, z->right);
    } else if (!z->right) {
        x = z->left;
        xp = z->parent;
        transplant(d, z, z->left);
    } else {
        node_t *y = rb_first(z->right);
        removed_red = y->red;
        x = y->right;
        if (y->parent == z) {
            xp = y;
        } else {
            xp = y->parent;
            transplant(d, y, y->right);
            y->right = z->right;
            y->right->parent = y;
        }
        transplant(d, z, y);
        y->left = z->left;
        y->left->parent = y;
        y->red = z->red;
    }
    if (!removed_red)
        erase_fixup(d, x, xp);
}

/* ------------------------------------------------------------------------
 * Lookups
 * ------------------------------------------------------------------------ */

/* The last node with lo <= pfn, or NULL. */
static node_t *floor_node(struct vtio_iova_domain *d, uint64_t pfn)
{
    node_t *n = d->root, *best = NULL;
    while (n) {
        if (n->lo <= pfn) {
            best = n;
            n = n->right;
        } else {
            n = n->left;
        }
    }
    return best;
}

/* The first node with lo >= pfn, or NULL. */
static node_t *ceil_node(struct vtio_iova_domain *d, uint64_t pfn)
{
    node_t *n = d->root, *best = NULL;
    while (n) {
        if (n->lo >= pfn) {
            best = n;
            n = n->left;
        } else {
            n = n->right;
        }
    }
    return best;
}

node_t *iova_find_exact_locked(struct vtio_iova_domain *d, uint64_t pfn, uint64_t size)
{
    node_t *n = floor_node(d, pfn);
    if (!n || n->lo != pfn || n->hi - n->lo + 1 != size || n->reserved)
        return NULL;
    return n;
}

/* ------------------------------------------------------------------------
 * Allocation and freeing
 * ------------------------------------------------------------------------ */

static int space_of(const struct vtio_iova_domain *d, uint64_t limit)
{
    return limit <= d->dma32_pfn ? 0 : 1;
}

static uint64_t pow2_ceil(uint64_t x)
{
    return x <= 1 ? 1 : 1ull << (64 - __builtin_clzll(x - 1));
}

/*
 * Walks down from node c, trying the gap just below each node, and stops
 * before trying the gap below `stop` (NULL: at the bottom).  A range of
 * `size` pages fits in a gap if, placed as high as the gap, the limit and
 * the alignment mask allow, it starts at or above both the gap's bottom and
 * `lowest`.  Returns the node above the gap that fits (the new range's pfn
 * in *pfn), or NULL.
 */
static node_t *walk_down(node_t *c, node_t *stop, uint64_t size, uint64_t limit,
                         uint64_t mask, uint64_t lowest, uint64_t *pfn)
{
    for (; c && c != stop; c = rb_prev(c)) {
        uint64_t top = c->lo < limit ? c->lo : limit;      /* exclusive */
        if (top < lowest + size)
            return NULL;                /* every lower gap is lower still */
        node_t *p = rb_prev(c);
        uint64_t bottom = p && p->hi + 1 > lowest ? p->hi + 1 : lowest;
        uint64_t at = (top - size) & mask;
        if (at >= bottom) {
            *pfn = at;
            return c;
        }
    }
    return NULL;
}

int iova_tree_alloc_locked(struct vtio_iova_domain *d, uint64_t size, uint64_t limit,
                           bool aligned, uint64_t *pfn)
{
    if (limit > d->end_pfn)
        limit = d->end_pfn;
    if (d->fail_valid && limit <= d->fail_limit && size >= d->fail_size &&
        (aligned || !d->fail_aligned))
        goto full;                      /* a no-easier search failed already */
    if (limit < d->start_pfn + size)
        goto full;

    node_t *n = malloc(sizeof(*n));
    if (!n)
        return vtio_fail(-ENOMEM, "iova: out of host memory for a tree node");

    uint64_t mask = aligned ? ~(pow2_ceil(size) - 1) : ~0ull, at = 0;
    int space = space_of(d, limit);
    node_t *top = ceil_node(d, limit);          /* the anchor at worst */
    node_t *h = d->hint[space];
    node_t *c0 = h && h->lo <= limit ? h : top;
    /* Pass 1: below the hint.  Pass 2: from the limit down to the hint. */
    if (!walk_down(c0, NULL, size, limit, mask, d->start_pfn, &at) &&
        (c0 == top || !walk_down(top, c0, size, limit, mask, d->start_pfn, &at))) {
        free(n);
        goto full;
    }
    n->lo = at;
    n->hi = at + size - 1;
    n->reserved = n->cached = false;
    rb_insert(d, n);
    d->hint[space] = n;
    d->n_ranges++;
    d->n_pages += size;
    d->tree_allocs++;
    *pfn = at;
    return 0;

full:
    d->tree_failures++;
    d->fail_valid = true;
    d->fail_limit = limit;
    d->fail_size = size;
    d->fail_aligned = aligned;
    return vtio_fail(-ENOMEM, "iova: no %s%llu-page range fits below pfn %#llx",
                     aligned ? "aligned " : "", (unsigned long long)size,
                     (unsigned long long)limit);
}

/* Takes allocated node n out of the tree and frees it. */
void iova_erase_locked(struct vtio_iova_domain *d, node_t *n)
{
    for (int s = 0; s < 2; s++) {
        node_t *h = d->hint[s];
        /* A hint at or below n moves above it: the next search in that
         * space starts where space was just given back.  (A hint is never
         * NULL and never left on a freed node.) */
        if (h == n || (n->lo >= h->lo && (s == 1 || n->hi < d->dma32_pfn)))
            d->hint[s] = rb_next(n);    /* the anchor at worst */
    }
    rb_erase(d, n);
    d->n_ranges--;
    d->n_pages -= n->hi - n->lo + 1;
    d->tree_frees++;
    d->fail_valid = false;
    free(n);
}

/* ------------------------------------------------------------------------
 * The domain
 * ------------------------------------------------------------------------ */

struct vtio_iova_domain *vtio_iova_domain_create(uint64_t granule, uint64_t start_pfn)
{
    if (granule < 4096 || granule > VTIO_GiB || (granule & (granule - 1))) {
        vtio_fail(-EINVAL, "iova: granule %#llx is not a power of two in 4 KiB..1 GiB",
                  (unsigned long long)granule);
        return NULL;
    }
    unsigned shift = (unsigned)__builtin_ctzll(granule);
    uint64_t end = 1ull << (64 - shift);
    if (start_pfn >= end) {
        vtio_fail(-EINVAL, "iova: start pfn %#llx is beyond the space",
                  (unsigned long long)start_pfn);
        return NULL;
    }
    struct vtio_iova_domain *d = calloc(1, sizeof(*d));
    node_t *anchor = calloc(1, sizeof(*anchor));
    if (!d || !anchor) {
        free(d);
        free(anchor);
        vtio_fail(-ENOMEM, "iova: out of host memory for a domain");
        return NULL;
    }
    d->id = atomic_fetch_add(&next_domain_id, 1);
    d->granule = granule;
    d->shift = shift;
    d->start_pfn = start_pfn;
    d->end_pfn = end;
    d->dma32_pfn = (1ull << 32) >> shift;
    pthread_mutex_init(&d->lock, NULL);
    anchor->lo = anchor->hi = end;
    anchor->reserved = true;
    rb_insert(d, anchor);
    d->anchor = d->hint[0] = d->hint[1] = anchor;
    iova_rcache_init(d);
    return d;
}

int vtio_iova_domain_set_flags(struct vtio_iova_domain *d, unsigned flags)
{
    if (flags & ~(VTIO_IOVA_NO_CACHE | VTIO_IOVA_CHECK_FREES))
        return vtio_fail(-EINVAL, "iova: unknown flags %#x", flags);
    atomic_store_explicit(&d->flags, flags, memory_order_relaxed);
    return 0;
}

uint64_t vtio_iova_granule(const struct vtio_iova_domain *d)
{
    return d->granule;
}

static void range_of(const node_t *n, struct vtio_iova_range *r)
{
    r->pfn_lo = n->lo;
    r->pfn_hi = n->hi;
    r->reserved = n->reserved;
}

uint64_t vtio_iova_domain_destroy(struct vtio_iova_domain *d, vtio_iova_range_fn leak_fn,
                                  void *opaque)
{
    if (!d)
        return 0;
    iova_rcache_destroy(d);             /* every cached range back to the tree */
    uint64_t leaks = 0;
    /* Post-order teardown without recursion: unlink each leaf as reached. */
    node_t *n = d->root;
    while (n) {
        if (n->left) {
            n = n->left;
        } else if (n->right) {
            n = n->right;
        } else {
            node_t *p = n->parent;
            if (p)
                *(p->left == n ? &p->left : &p->right) = NULL;
            if (!n->reserved) {
                leaks++;
                if (leak_fn) {
                    struct vtio_iova_range r;
                    range_of(n, &r);
                    leak_fn(opaque, &r);
                }
            }
            free(n);
            n = p;
        }
    }
    pthread_mutex_destroy(&d->lock);
    free(d);
    return leaks;
}

int vtio_iova_reserve(struct vtio_iova_domain *d, uint64_t pfn_lo, uint64_t pfn_hi)
{
    if (pfn_lo > pfn_hi || pfn_hi >= d->end_pfn)
        return vtio_fail(-EINVAL, "iova: cannot reserve pfns [%#llx, %#llx]",
                         (unsigned long long)pfn_lo, (unsigned long long)pfn_hi);
    node_t *nn = malloc(sizeof(*nn));
    if (!nn)
        return vtio_fail(-ENOMEM, "iova: out of host memory for a tree node");
    pthread_mutex_lock(&d->lock);
    /* Every node that overlaps or touches [lo, hi]: from the last one
     * starting at or below lo - 1, up while they start at or below hi + 1. */
    uint64_t lo = pfn_lo, hi = pfn_hi;
    uint64_t from = lo ? lo - 1 : 0, to = hi + 1;
    node_t *n = floor_node(d, from);
    if (!n || n->hi < from)
        n = n ? rb_next(n) : rb_first(d->root);
    for (node_t *m = n; m && m->lo <= to && m != d->anchor; m = rb_next(m)) {
        bool overlaps = m->lo <= pfn_hi && m->hi >= pfn_lo;
        if (overlaps && !m->reserved) {
            pthread_mutex_unlock(&d->lock);
            free(nn);
            return vtio_fail(-EEXIST, "iova: pfns [%#llx, %#llx] overlap allocated "
                             "range [%#llx, %#llx]", (unsigned long long)pfn_lo,
                             (unsigned long long)pfn_hi, (unsigned long long)m->lo,
                             (unsigned long long)m->hi);
        }
    }
    /* Merge the reserved neighbours into one node. */
    while (n && n->lo <= to && n != d->anchor) {
        node_t *next = rb_next(n);
        if (n->reserved) {
            lo = n->lo < lo ? n->lo : lo;
            hi = n->hi > hi ? n->hi : hi;
            for (int s = 0; s < 2; s++)
                if (d->hint[s] == n)
                    d->hint[s] = next;
            rb_erase(d, n);
            d->n_reserved--;
            free(n);
        }
        n = next;
    }
    nn->lo = lo;
    nn->hi = hi;
    nn->reserved = true;
    nn->cached = false;
    rb_insert(d, nn);
    d->n_reserved++;
    pthread_mutex_unlock(&d->lock);
    return 0;
}

int vtio_iova_alloc(struct vtio_iova_domain *d, uint64_t size_pages, uint64_t limit_pfn,
                    bool size_aligned, uint64_t *pfn)
{
    if (size_pages == 0 || size_pages >= d->end_pfn)
        return vtio_fail(-EINVAL, "iova: cannot allocate %llu pages",
                         (unsigned long long)size_pages);
    if (limit_pfn <= d->start_pfn)
        return vtio_fail(-EINVAL, "iova: limit pfn %#llx is not above the start pfn %#llx",
                         (unsigned long long)limit_pfn, (unsigned long long)d->start_pfn);
    pthread_mutex_lock(&d->lock);
    int rc = iova_tree_alloc_locked(d, size_pages, limit_pfn, size_aligned, pfn);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int vtio_iova_free(struct vtio_iova_domain *d, uint64_t pfn, uint64_t size_pages)
{
    pthread_mutex_lock(&d->lock);
    node_t *n = size_pages ? iova_find_exact_locked(d, pfn, size_pages) : NULL;
    if (!n || n->cached) {
        pthread_mutex_unlock(&d->lock);
        return vtio_fail(-EINVAL, "iova: pfns %#llx + %llu pages are not an allocated range",
                         (unsigned long long)pfn, (unsigned long long)size_pages);
    }
    iova_erase_locked(d, n);
    pthread_mutex_unlock(&d->lock);
    return 0;
}

int vtio_iova_find(struct vtio_iova_domain *d, uint64_t pfn, struct vtio_iova_range *r)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&d->lock);
    node_t *n = floor_node(d, pfn);
    if (n && n != d->anchor && pfn <= n->hi) {
        range_of(n, r);
        rc = 0;
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

uint64_t vtio_iova_for_each(struct vtio_iova_domain *d, vtio_iova_range_fn fn, void *opaque)
{
    uint64_t count = 0;
    pthread_mutex_lock(&d->lock);
    for (node_t *n = rb_first(d->root); n != d->anchor; n = rb_next(n)) {
        struct vtio_iova_range r;
        range_of(n, &r);
        if (fn)
            fn(opaque, &r);
        count++;
    }
    pthread_mutex_unlock(&d->lock);
    return count;
}

void vtio_iova_get_stats(struct vtio_iova_domain *d, struct vtio_iova_stats *st)
{
    memset(st, 0, sizeof(*st));
    iova_rcache_stats(d, st);
    pthread_mutex_lock(&d->lock);
    st->tree_allocs = d->tree_allocs;
    st->tree_frees = d->tree_frees;
    st->tree_failures = d->tree_failures;
    st->ranges = d->n_ranges;
    st->pages = d->n_pages;
    st->reserved_ranges = d->n_reserved;
    pthread_mutex_unlock(&d->lock);
}

/* ------------------------------------------------------------------------
 * Debugging
 * ------------------------------------------------------------------------ */

/* Black height of the subtree at n, or -1 with *why set. */
static int check_subtree(const node_t *n, const char **why)
{
    if (!n)
        return 1;
    if ((n->left && n->left->parent != n) || (n->right && n->right->parent != n)) {
        *why = "broken parent link";
        return -1;
    }
    if (n->red && (is_red(n->left) || is_red(n->right))) {
        *why = "red node with a red child";
        return -1;
    }
    int l = check_subtree(n->left, why), r = check_subtree(n->right, why);
    if (l < 0 || r < 0)
        return -1;
    if (l != r) {
        *why = "unequal black heights";
        return -1;
    }
    return l + !n->red;
}

int vtio_iova_check(struct vtio_iova_domain *d)
{
    const char *why = NULL;
    uint64_t ranges = 0, pages = 0, reserved = 0;
    pthread_mutex_lock(&d->lock);
    if (is_red(d->root))
        why = "red root";
    else if (check_subtree(d->root, &why) >= 0) {
        node_t *prev = NULL;
        for (node_t *n = rb_first(d->root); n && !why; prev = n, n = rb_next(n)) {
            if (n->lo > n->hi)
                why = "range ends before it starts";
            else if (prev && prev->hi >= n->lo)
                why = "ranges overlap or are out of order";
            else if (n == d->anchor)
                ;
            else if (n->reserved)
                reserved++;
            else {
                ranges++;
                pages += n->hi - n->lo + 1;
                if (n->lo < d->start_pfn || n->hi >= d->end_pfn)
                    why = "allocated range outside the space";
            }
        }
        if (!why && (ranges != d->n_ranges || pages != d->n_pages || reserved != d->n_reserved))
            why = "counts do not match the tree";
    }
    pthread_mutex_unlock(&d->lock);
    return why ? vtio_fail(-EIO, "iova: %s", why) : 0;
}
