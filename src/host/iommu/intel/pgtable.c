/*
 * Second-level page tables of the VT-d driver (VT-d spec 9.8: second-stage
 * paging entries), built in machine RAM where the unit walks them.
 *
 * Format.  A table is one 4 KiB page of 512 entries of 8 bytes; 9 IOVA bits
 * index each level.  Level 1 entries map 4 KiB pages; an entry of level 2
 * or 3 with PS maps 2 MiB or 1 GiB; any other present entry of level 2 and
 * up points at the next table and has R and W set (as Linux sets them), so
 * that the leaf alone decides the permissions.  The root is level `levels`.
 * An entry is 0 or present (R or W set): nothing else is ever written.
 *
 * Map is three passes under pt->lock, so that a failure changes nothing:
 *   1. check: walk the tables that exist over the range; a leaf anywhere in
 *      it is -EEXIST; count the tables the map will need;
 *   2. allocate them all, zeroed, before any is linked (on -ENOMEM they are
 *      freed at once: the unit never saw them).  Spare pages are chained
 *      through their first word, which is cleared when the page is taken;
 *   3. install: link the new tables, write the leaves.  This cannot fail.
 * Passes 1 and 3 choose leaves by the same rule (fits_leaf: the entry's
 * whole span is in the range, iova and pa are aligned to it, and the level
 * is allowed), so the count is exact.
 *
 * Unmap clears the leaves inside the range.  A leaf partly inside is split
 * first: its replacement table, 512 leaves one level down with the same
 * address run and permissions, is written in full and then swapped in with
 * one store, so the unit sees the old leaf or the whole new table, never a
 * mix.  A table whose whole span the unmap covers is unlinked from its
 * parent and its page goes on g->freelist: the unit may still be walking it
 * until the caller's IOTLB invalidation completes.  A table emptied a page
 * at a time stays linked, as in Linux: the DMA API unmaps and maps single
 * pages all the time, and freeing the table on every unmap would make the
 * next map allocate and zero it again.  It goes when an unmap covers its
 * span, or with the domain.  The gather gets the span of every entry touched and the largest
 * leaf removed, a split leaf counting at its old size, since that is what
 * the unit may have cached.
 *
 * Concurrency.  The unit reads entries at any time, on any thread: every
 * entry is written with one 8-byte release store (intel_store_entry), a new
 * table is complete (zero, or the split's 512 leaves) before the store that
 * links it.  pt->lock serialises map and unmap; lookup takes no lock and
 * uses acquire loads, so it sees every table it reaches fully written.
 * table_pages counts the pages linked in (the root included), exactly.
 *
 * Speed.  Tables are reached through the direct map, never through vtio_mem
 * calls per entry.  A map inside one 2 MiB span whose tables all exist (the
 * DMA API's usual 4 KiB to 1 MiB) skips the passes: one walk, check, write
 * (map_in_leaf_table); an unmap inside one table clears its entries and
 * reads nothing else.
 */
#include <errno.h>

#include <vtio/page_alloc.h>

#include "host/iommu/intel/intel_iommu.h"
#include "util/error.h"

#define PT_ENTRIES   512u
#define PT_ADDR_MASK VTD_SL_ADDR_MASK(52)     /* address bits 51:12 of an entry */
#define PT_NONLEAF   (VTD_SL_R | VTD_SL_W)

static inline uint64_t level_size(unsigned level)
{
    return 1ull << VTD_LEVEL_SHIFT(level);
}

static inline unsigned level_index(uint64_t iova, unsigned level)
{
    return (unsigned)(iova >> VTD_LEVEL_SHIFT(level)) & (PT_ENTRIES - 1);
}

/* The first address of the entry after the one that covers a. */
static inline uint64_t next_entry(uint64_t a, unsigned level)
{
    return (a | (level_size(level) - 1)) + 1;
}

/* IOVA bits the tables translate: 39, 48 or 57. */
static inline unsigned pt_width(const struct intel_pgtable *pt)
{
    return VTD_LEVEL_SHIFT(pt->levels) + 9;
}

static inline uint64_t *table_va(const struct intel_pgtable *pt, uint64_t pa)
{
    return vtio_host_phys_to_virt(pt->host, pa);
}

static inline bool is_leaf(uint64_t e, unsigned level)
{
    return level == 1 || (e & VTD_SL_PS);
}

static void count_tables(struct intel_pgtable *pt, int delta)
{
    atomic_fetch_add_explicit(&pt->table_pages, (uint64_t)(int64_t)delta, memory_order_relaxed);
}

/* ------------------------------------------------------------------------
 * Map
 */

struct map_op {
    uint64_t delta;          /* pa - iova (mod 2^64) */
    uint64_t bits;           /* R / W of the leaves */
    unsigned max_leaf;
    uint64_t need;           /* tables the install pass will link */
    uint64_t pool;           /* spare zeroed pages, chained by their first word */
};

/* Whether [s, e), the part of the range inside one level-`level` entry,
 * is mapped by that entry as a leaf. */
static inline bool fits_leaf(const struct map_op *op, unsigned level, uint64_t s, uint64_t e)
{
    if (level == 1)
        return true;
    uint64_t size = level_size(level);
    return level <= op->max_leaf && e - s == size && ((s | (s + op->delta)) & (size - 1)) == 0;
}

/* Tables a map of [s, e) links under an empty level-`level` entry (the
 * one it would point at included). */
static uint64_t tables_needed(const struct map_op *op, unsigned level, uint64_t s, uint64_t e)
{
    if (fits_leaf(op, level, s, e))
        return 0;
    if (level == 2)
        return 1;                       /* its entries are all 4 KiB leaves */
    uint64_t n = 1;
    for (uint64_t a = s, next; a < e; a = next) {
        next = next_entry(a, level - 1);
        n += tables_needed(op, level - 1, a, next < e ? next : e);
    }
    return n;
}

/* Pass 1: -EEXIST if a leaf lies in [s, e) under the table; counts the
 * tables the install pass will need in op->need. */
static int map_check(struct intel_pgtable *pt, struct map_op *op, uint64_t table,
                     unsigned level, uint64_t s, uint64_t e)
{
    const uint64_t *t = table_va(pt, table);
    for (uint64_t a = s, next; a < e; a = next) {
        next = next_entry(a, level);
        uint64_t ee = next < e ? next : e;
        uint64_t v = intel_load_entry(&t[level_index(a, level)]);
        if (!v)
            op->need += tables_needed(op, level, a, ee);
        else if (is_leaf(v, level))
            return vtio_fail(-EEXIST, "pgtable: IOVA %#llx is already mapped",
                             (unsigned long long)a);
        else if (map_check(pt, op, v & PT_ADDR_MASK, level - 1, a, ee) < 0)
            return -EEXIST;
    }
    return 0;
}

static void pool_free(struct intel_pgtable *pt, struct map_op *op)
{
    while (op->pool) {
        uint64_t pa = op->pool;
        op->pool = table_va(pt, pa)[0];
        vtio_page_free(pt->host->pages, pa, 0);
    }
}

/* Pass 2: op->need zeroed pages, or none and -ENOMEM. */
static int pool_fill(struct intel_pgtable *pt, struct map_op *op)
{
    for (uint64_t i = 0; i < op->need; i++) {
        uint64_t pa;
        if (vtio_page_alloc(pt->host->pages, 0, VTIO_PAGE_ZERO, &pa) < 0) {
            pool_free(pt, op);
            return vtio_fail(-ENOMEM, "pgtable: no page for a table (%llu needed)",
                             (unsigned long long)op->need);
        }
        table_va(pt, pa)[0] = op->pool;     /* not linked: the unit cannot see it */
        op->pool = pa;
    }
    return 0;
}

/* A zeroed page from the pool. */
static uint64_t pool_take(struct intel_pgtable *pt, struct map_op *op)
{
    uint64_t pa = op->pool;
    uint64_t *t = table_va(pt, pa);
    op->pool = t[0];
    t[0] = 0;
    return pa;
}

/* Pass 3: writes the leaves of [s, e) under the table, linking pool tables
 * where the walk needs one. */
static void map_install(struct intel_pgtable *pt, struct map_op *op, uint64_t table,
                        unsigned level, uint64_t s, uint64_t e)
{
    uint64_t *t = table_va(pt, table);
    for (uint64_t a = s, next; a < e; a = next) {
        next = next_entry(a, level);
        uint64_t ee = next < e ? next : e;
        uint64_t *p = &t[level_index(a, level)];
        if (fits_leaf(op, level, a, ee)) {
            intel_store_entry(p, (a + op->delta) | op->bits | (level > 1 ? VTD_SL_PS : 0));
            continue;
        }
        uint64_t v = intel_load_entry(p);
        if (!v) {
            v = pool_take(pt, op) | PT_NONLEAF;
            intel_store_entry(p, v);    /* release: the page's zeros first */
            count_tables(pt, 1);
        }
        map_install(pt, op, v & PT_ADDR_MASK, level - 1, a, ee);
    }
}

/*
 * The DMA API's common case in one walk: [iova, end) lies inside one 2 MiB
 * span and is smaller than it, so every leaf is a 4 KiB one in a single
 * table.  If that table and those above it exist, checks and writes there.
 * @returns 0 or -EEXIST; 1: tables are missing, take the general path.
 */
static int map_in_leaf_table(struct intel_pgtable *pt, const struct map_op *op, uint64_t iova,
                             uint64_t end)
{
    uint64_t table = pt->root;
    for (unsigned level = pt->levels; level > 1; level--) {
        uint64_t v = intel_load_entry(&table_va(pt, table)[level_index(iova, level)]);
        if (!v)
            return 1;
        if (v & VTD_SL_PS)              /* a leaf over the whole range */
            return vtio_fail(-EEXIST, "pgtable: IOVA %#llx is already mapped",
                             (unsigned long long)iova);
        table = v & PT_ADDR_MASK;
    }
    uint64_t *t = table_va(pt, table);
    unsigned first = level_index(iova, 1), n = (unsigned)((end - iova) >> VTIO_PAGE_SHIFT);
    for (unsigned i = 0; i < n; i++)
        if (intel_load_entry(&t[first + i]))
            return vtio_fail(-EEXIST, "pgtable: IOVA %#llx is already mapped",
                             (unsigned long long)(iova + i * VTIO_PAGE_SIZE));
    for (unsigned i = 0; i < n; i++)
        intel_store_entry(&t[first + i], (iova + op->delta + i * VTIO_PAGE_SIZE) | op->bits);
    return 0;
}

int intel_pgtable_map(struct intel_pgtable *pt, uint64_t iova, uint64_t pa, uint64_t size,
                      unsigned prot)
{
    uint64_t end = iova + size;
    if (!size || ((iova | pa | size) & (VTIO_PAGE_SIZE - 1)))
        return vtio_fail(-EINVAL, "pgtable: map of %#llx bytes at %#llx -> %#llx: not "
                         "page-aligned or empty", (unsigned long long)size,
                         (unsigned long long)iova, (unsigned long long)pa);
    if (end < iova || (end - 1) >> pt_width(pt) || pa + size < pa || (pa + size - 1) >> 52)
        return vtio_fail(-EINVAL, "pgtable: map of %#llx bytes at %#llx -> %#llx: beyond "
                         "the %u-bit IOVA or 52-bit address width", (unsigned long long)size,
                         (unsigned long long)iova, (unsigned long long)pa, pt_width(pt));
    if (!(prot & (VTIO_IOMMU_READ | VTIO_IOMMU_WRITE)) ||
        (prot & ~(VTIO_IOMMU_READ | VTIO_IOMMU_WRITE)))
        return vtio_fail(-EINVAL, "pgtable: bad prot %#x", prot);

    struct map_op op = {
        .delta = pa - iova,
        .bits = ((prot & VTIO_IOMMU_READ) ? VTD_SL_R : 0) |
                ((prot & VTIO_IOMMU_WRITE) ? VTD_SL_W : 0),
        .max_leaf = pt->max_leaf_level,
    };
    bool in_leaf_table = size < VTIO_HUGE_SIZE &&
                         iova >> VTIO_HUGE_SHIFT == (end - 1) >> VTIO_HUGE_SHIFT;
    pthread_mutex_lock(&pt->lock);
    int rc = in_leaf_table ? map_in_leaf_table(pt, &op, iova, end) : 1;
    if (rc == 1) {
        rc = map_check(pt, &op, pt->root, pt->levels, iova, end);
        if (rc == 0)
            rc = pool_fill(pt, &op);
        if (rc == 0) {
            map_install(pt, &op, pt->root, pt->levels, iova, end);
            pool_free(pt, &op);         /* empty, unless the count was wrong */
        }
    }
    pthread_mutex_unlock(&pt->lock);
    return rc;
}

/* ------------------------------------------------------------------------
 * Unmap
 */

struct unmap_op {
    uint64_t unmapped;       /* bytes of leaves cleared */
    uint64_t lo, hi;         /* span of the entries touched; lo == hi: none */
    uint64_t pgsize;         /* largest leaf removed (split leaves included) */
    struct vtio_iommu_freelist *freelist;
    int err;                 /* a split or the freelist ran out of memory */
};

static void touched(struct unmap_op *op, uint64_t s, uint64_t e, uint64_t pgsize)
{
    if (op->lo == op->hi || s < op->lo)
        op->lo = s;
    if (e > op->hi)
        op->hi = e;
    if (pgsize > op->pgsize)
        op->pgsize = pgsize;
}

static inline bool line_empty(const uint64_t *t, unsigned line)
{
    const uint64_t *l = t + 8 * line;
    return !(l[0] | l[1] | l[2] | l[3] | l[4] | l[5] | l[6] | l[7]);
}

/* Whether every entry of t is clear (a whole-span unmap leaves a table
 * clear unless a split ran out of pages).  Plain loads: only this thread
 * (under pt->lock) writes tables, the unit only reads them. */
static bool table_empty(const uint64_t *t)
{
    for (unsigned line = 0; line < PT_ENTRIES / 8; line++)
        if (!line_empty(t, line))
            return false;
    return true;
}

/* The table that replaces leaf v of level `level`: the same pages as
 * 512 leaves one level down, written before anyone can see the table.
 * 0: no page. */
static uint64_t split_leaf(struct intel_pgtable *pt, uint64_t v, unsigned level)
{
    uint64_t pa;
    if (vtio_page_alloc(pt->host->pages, 0, 0, &pa) < 0)
        return 0;
    unsigned child = level - 1;
    uint64_t step = level_size(child);
    uint64_t e = (v & ~VTD_SL_PS) | (child > 1 ? VTD_SL_PS : 0);
    uint64_t *t = table_va(pt, pa);
    for (unsigned i = 0; i < PT_ENTRIES; i++)
        intel_store_entry(&t[i], e + i * step);
    return pa;
}

/* Clears [s, e) under table t of level `level`. */
static void unmap_level(struct intel_pgtable *pt, struct unmap_op *op, uint64_t *t,
                        unsigned level, uint64_t s, uint64_t e)
{
    for (uint64_t a = s, next; a < e; a = next) {
        next = next_entry(a, level);
        uint64_t ee = next < e ? next : e;
        unsigned i = level_index(a, level);
        uint64_t v = intel_load_entry(&t[i]);
        if (!v)
            continue;
        uint64_t size = level_size(level);
        bool whole = ee - a == size;
        if (is_leaf(v, level)) {
            if (whole) {
                intel_store_entry(&t[i], 0);
                op->unmapped += size;
                touched(op, a, ee, size);
                continue;
            }
            uint64_t table = split_leaf(pt, v, level);
            if (!table) {
                op->err = -ENOMEM;
                continue;
            }
            intel_store_entry(&t[i], table | PT_NONLEAF);   /* release: the 512 leaves first */
            count_tables(pt, 1);
            touched(op, a, ee, size);
            v = table | PT_NONLEAF;     /* the part inside is cleared below */
        }
        uint64_t child = v & PT_ADDR_MASK;
        uint64_t *ct = table_va(pt, child);
        unmap_level(pt, op, ct, level - 1, a, ee);
        if (!whole || !table_empty(ct))
            continue;
        if (vtio_iommu_freelist_add(op->freelist, child) < 0) {
            op->err = -ENOMEM;          /* stays linked, empty */
            continue;
        }
        intel_store_entry(&t[i], 0);
        count_tables(pt, -1);
        touched(op, a, ee, VTIO_PAGE_SIZE);
    }
}

uint64_t intel_pgtable_unmap(struct intel_pgtable *pt, uint64_t iova, uint64_t size,
                             struct vtio_iommu_gather *g)
{
    uint64_t end = iova + size;
    if (!g) {
        vtio_fail(-EINVAL, "pgtable: unmap without a gather");
        return 0;
    }
    if (((iova | size) & (VTIO_PAGE_SIZE - 1)) || end < iova ||
        (size && (end - 1) >> pt_width(pt))) {
        vtio_fail(-EINVAL, "pgtable: unmap of %#llx bytes at %#llx: not page-aligned or "
                  "beyond the %u-bit IOVA width", (unsigned long long)size,
                  (unsigned long long)iova, pt_width(pt));
        return 0;
    }
    struct unmap_op op = { .freelist = &g->freelist };
    pthread_mutex_lock(&pt->lock);
    unmap_level(pt, &op, table_va(pt, pt->root), pt->levels, iova, end);
    pthread_mutex_unlock(&pt->lock);
    if (op.hi > op.lo)
        vtio_iommu_gather_add(g, op.lo, op.hi - op.lo, op.pgsize);
    if (op.err)
        vtio_fail(op.err, "pgtable: out of memory during unmap at %#llx: a large page or "
                  "an empty table was left in place", (unsigned long long)iova);
    return op.unmapped;
}

/* ------------------------------------------------------------------------
 * Lookup, life cycle
 */

int intel_pgtable_lookup(struct intel_pgtable *pt, uint64_t iova, uint64_t *pa,
                         uint64_t *page_size, unsigned *prot)
{
    if (!(iova >> pt_width(pt))) {
        uint64_t table = pt->root;
        for (unsigned level = pt->levels; level >= 1; level--) {
            /* No lock: a racing unmap may have put this page on a freelist
             * (it is still RAM, but what it holds is anyone's guess). */
            const uint64_t *t = table_va(pt, table);
            uint64_t v = t ? intel_load_entry(&t[level_index(iova, level)]) : 0;
            if (!v)
                break;
            if (is_leaf(v, level)) {
                uint64_t size = level_size(level);
                if (pa)
                    *pa = (v & PT_ADDR_MASK & ~(size - 1)) | (iova & (size - 1));
                if (page_size)
                    *page_size = size;
                if (prot)
                    *prot = ((v & VTD_SL_R) ? VTIO_IOMMU_READ : 0) |
                            ((v & VTD_SL_W) ? VTIO_IOMMU_WRITE : 0);
                return 0;
            }
            table = v & PT_ADDR_MASK;
        }
    }
    return vtio_fail(-ENOENT, "pgtable: IOVA %#llx is not mapped", (unsigned long long)iova);
}

int intel_pgtable_init(struct intel_pgtable *pt, struct vtio_host *h, unsigned levels,
                       unsigned max_leaf_level)
{
    if (!pt || !h || levels < 3 || levels > 5 || max_leaf_level < 1 || max_leaf_level > 3)
        return vtio_fail(-EINVAL, "pgtable: %u levels with leaves up to level %u",
                         levels, max_leaf_level);
    uint64_t root;
    int rc = vtio_page_alloc(h->pages, 0, VTIO_PAGE_ZERO, &root);
    if (rc < 0)
        return vtio_fail(rc, "pgtable: no page for the root table");
    *pt = (struct intel_pgtable){ .host = h, .root = root, .levels = levels,
                                  .max_leaf_level = max_leaf_level };
    pthread_mutex_init(&pt->lock, NULL);
    atomic_init(&pt->table_pages, 1);
    return 0;
}

/* Frees the tables below t (level `level`), not t itself. */
static void free_below(struct intel_pgtable *pt, const uint64_t *t, unsigned level)
{
    for (unsigned i = 0; i < PT_ENTRIES; i++) {
        if (!t[i] || is_leaf(t[i], level))
            continue;
        uint64_t child = t[i] & PT_ADDR_MASK;
        free_below(pt, table_va(pt, child), level - 1);
        vtio_page_free(pt->host->pages, child, 0);
    }
}

void intel_pgtable_destroy(struct intel_pgtable *pt)
{
    if (!pt || !pt->host)
        return;
    free_below(pt, table_va(pt, pt->root), pt->levels);
    vtio_page_free(pt->host->pages, pt->root, 0);
    pthread_mutex_destroy(&pt->lock);
    *pt = (struct intel_pgtable){ 0 };
}
