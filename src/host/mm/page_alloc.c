/*
 * The physical page allocator: a binary buddy allocator over machine RAM.
 *
 * Metadata: two arrays indexed by page frame number (pfn = address >> 12)
 * over [0, highest RAM pfn), in one mmap(MAP_PRIVATE | MAP_ANONYMOUS |
 * MAP_NORESERVE) mapping that the kernel fills with zeros lazily:
 *   state[pfn]  one byte, non-zero only at the first page of a block:
 *               kind (FREE, ALLOC or RSV) | order;
 *   link[pfn]   next/prev pfns of a free block in its free list (32-bit pfns,
 *               NIL = UINT32_MAX), meaningful only while the block is free.
 * Holes between RAM ranges, and pages inside a block, are never written, so
 * they cost no host memory: a 16 GiB machine's allocator costs a few pages
 * until it is used, and creation does O(ranges x orders) work, not O(pages).
 * (Host-heap free lists plus a hash of free blocks would be as lazy but need
 * a lookup structure for buddies; a flat, lazily-zeroed array gives O(1)
 * buddy checks with no allocation on the free path.)
 *
 * Invariants (under the lock):
 *  - every page of managed RAM lies in exactly one block, and that block's
 *    first page carries its state; a block of order k starts at a multiple
 *    of 2^k pages;
 *  - a pfn whose state is 0 is not the start of any block, so the block
 *    covering a page p is the unique (h = p rounded down to 2^k, k) whose
 *    state[h] has order k (see find_block());
 *  - no two free buddies exist (freeing merges them at once);
 *  - each free block is on exactly one list: zone[zone of its pfn].head[order].
 *    Blocks never straddle 4 GiB: 4 GiB is a multiple of the largest block,
 *    so buddies are always in the same zone.
 *  - total == free + allocated + reserved (bytes).
 *
 * Threads: one mutex guards everything; zeroing a block (VTIO_PAGE_ZERO)
 * happens after it is taken, outside the lock.
 */
#include <vtio/mem.h>
#include <vtio/page_alloc.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "util/error.h"

#define MAXO      VTIO_PAGE_MAX_ORDER
#define NIL       UINT32_MAX
#define ST_ORDER  0x1fu
#define ST_KIND   0xc0u
#define ST_FREE   0x40u
#define ST_ALLOC  0x80u
#define ST_RSV    0xc0u
#define DMA32_PFN (VTIO_PAGE_DMA32_LIMIT >> VTIO_PAGE_SHIFT)

enum { ZONE_DMA32, ZONE_NORMAL, NZONES };

struct link {
    uint32_t next, prev;
};

struct zone {
    uint32_t head[MAXO + 1];
    uint64_t nfree[MAXO + 1];
    uint64_t free_pages;
};

struct range {
    uint64_t lo, hi;            /* pfns, [lo, hi) */
};

struct vtio_page_alloc {
    pthread_mutex_t lock;
    struct vtio_mem *mem;
    uint64_t npfn;              /* state/link cover [0, npfn) */
    uint8_t *state;
    struct link *link;
    void *map;
    size_t map_len;
    struct zone zone[NZONES];
    uint64_t total_pages, alloc_pages, rsv_pages;
    struct range *ranges;       /* RAM, in address order */
    unsigned nranges;
};

static unsigned zone_of(uint64_t pfn)
{
    return pfn < DMA32_PFN ? ZONE_DMA32 : ZONE_NORMAL;
}

static void list_add(struct vtio_page_alloc *pa, uint64_t pfn, unsigned order)
{
    struct zone *z = &pa->zone[zone_of(pfn)];
    uint32_t head = z->head[order];
    pa->link[pfn].prev = NIL;
    pa->link[pfn].next = head;
    if (head != NIL)
        pa->link[head].prev = (uint32_t)pfn;
    z->head[order] = (uint32_t)pfn;
    pa->state[pfn] = (uint8_t)(ST_FREE | order);
    z->nfree[order]++;
    z->free_pages += 1ull << order;
}

static void list_del(struct vtio_page_alloc *pa, uint64_t pfn, unsigned order)
{
    struct zone *z = &pa->zone[zone_of(pfn)];
    struct link *l = &pa->link[pfn];
    if (l->prev != NIL)
        pa->link[l->prev].next = l->next;
    else
        z->head[order] = l->next;
    if (l->next != NIL)
        pa->link[l->next].prev = l->prev;
    pa->state[pfn] = 0;
    z->nfree[order]--;
    z->free_pages -= 1ull << order;
}

/* Puts the block (pfn, order), whose state is already 0, on the free lists,
 * merging it with free buddies as far as they go. */
static void free_merge(struct vtio_page_alloc *pa, uint64_t pfn, unsigned order)
{
    while (order < MAXO) {
        uint64_t buddy = pfn ^ (1ull << order);
        if (buddy >= pa->npfn || pa->state[buddy] != (ST_FREE | order))
            break;
        list_del(pa, buddy, order);
        pfn &= ~(1ull << order);
        order++;
    }
    list_add(pa, pfn, order);
}

/* The largest order of a block that starts at pfn and ends by hi. */
static unsigned fit_order(uint64_t pfn, uint64_t hi)
{
    unsigned k = pfn ? (unsigned)__builtin_ctzll(pfn) : MAXO;
    if (k > MAXO)
        k = MAXO;
    while ((1ull << k) > hi - pfn)
        k--;
    return k;
}

/* Makes [lo, hi) (pfns, state all 0) free or reserved, as maximal aligned
 * blocks. */
static void put_range(struct vtio_page_alloc *pa, uint64_t lo, uint64_t hi, unsigned kind)
{
    while (lo < hi) {
        unsigned k = fit_order(lo, hi);
        if (kind == ST_FREE)
            free_merge(pa, lo, k);
        else
            pa->state[lo] = (uint8_t)(kind | k);
        lo += 1ull << k;
    }
}

/* The block covering pfn: returns its kind (0 if pfn is in no block) and its
 * first pfn and order. */
static unsigned find_block(const struct vtio_page_alloc *pa, uint64_t pfn, uint64_t *head,
                           unsigned *order)
{
    for (unsigned k = 0; k <= MAXO; k++) {
        uint64_t h = pfn & ~((1ull << k) - 1);
        uint8_t st = pa->state[h];
        if (st && (st & ST_ORDER) == k) {
            *head = h;
            *order = k;
            return st & ST_KIND;
        }
    }
    return 0;
}

/* ---- creation */

struct scan {
    struct range *r;
    unsigned n, cap;
    uint64_t max_hi;
    bool nomem;
};

static void scan_ram(void *arg, uint64_t base, uint64_t size, const char *name)
{
    struct scan *s = arg;
    (void)name;
    uint64_t lo = (base + VTIO_PAGE_SIZE - 1) >> VTIO_PAGE_SHIFT;
    uint64_t hi = (base + size) >> VTIO_PAGE_SHIFT;
    if (s->nomem || hi <= lo)
        return;
    if (s->n == s->cap) {
        unsigned cap = s->cap ? s->cap * 2 : 8;
        struct range *r = realloc(s->r, cap * sizeof(*r));
        if (!r) {
            s->nomem = true;
            return;
        }
        s->r = r;
        s->cap = cap;
    }
    s->r[s->n++] = (struct range){ lo, hi };
    if (hi > s->max_hi)
        s->max_hi = hi;
}

struct vtio_page_alloc *vtio_page_alloc_create(struct vtio_mem *mem)
{
    struct scan s = { 0 };
    struct vtio_page_alloc *pa = NULL;

    if (!mem) {
        vtio_fail(-EINVAL, "page_alloc: no memory given");
        return NULL;
    }
    vtio_mem_for_each_ram(mem, scan_ram, &s);
    if (s.nomem) {
        vtio_fail(-ENOMEM, "page_alloc: out of host memory");
        goto fail;
    }
    if (s.n == 0) {
        vtio_fail(-EINVAL, "page_alloc: the machine has no RAM");
        goto fail;
    }
    if (s.max_hi >= NIL) {
        vtio_fail(-EINVAL, "page_alloc: RAM reaches %#llx, beyond the 16 TiB supported",
                  (unsigned long long)(s.max_hi << VTIO_PAGE_SHIFT));
        goto fail;
    }
    pa = calloc(1, sizeof(*pa));
    if (!pa) {
        vtio_fail(-ENOMEM, "page_alloc: out of host memory");
        goto fail;
    }
    pa->mem = mem;
    pa->ranges = s.r;
    pa->nranges = s.n;
    pa->npfn = s.max_hi;
    size_t state_len = (pa->npfn + VTIO_PAGE_SIZE - 1) & ~(VTIO_PAGE_SIZE - 1);
    pa->map_len = state_len + pa->npfn * sizeof(struct link);
    pa->map = mmap(NULL, pa->map_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (pa->map == MAP_FAILED) {
        vtio_fail(-ENOMEM, "page_alloc: cannot map %zu bytes of metadata", pa->map_len);
        pa->ranges = NULL;
        free(pa);
        goto fail;
    }
    pa->state = pa->map;
    pa->link = (struct link *)((char *)pa->map + state_len);
    pthread_mutex_init(&pa->lock, NULL);
    for (unsigned z = 0; z < NZONES; z++)
        for (unsigned k = 0; k <= MAXO; k++)
            pa->zone[z].head[k] = NIL;
    for (unsigned i = 0; i < pa->nranges; i++) {
        put_range(pa, pa->ranges[i].lo, pa->ranges[i].hi, ST_FREE);
        pa->total_pages += pa->ranges[i].hi - pa->ranges[i].lo;
    }
    return pa;

fail:
    free(s.r);
    return NULL;
}

void vtio_page_alloc_destroy(struct vtio_page_alloc *pa)
{
    if (!pa)
        return;
    munmap(pa->map, pa->map_len);
    pthread_mutex_destroy(&pa->lock);
    free(pa->ranges);
    free(pa);
}

/* ---- reserve */

/* Walks the RAM pages of [lo, hi).  check: @returns -EBUSY at the first
 * allocated page.  Otherwise reserves every free page. */
static int walk_reserve(struct vtio_page_alloc *pa, uint64_t lo, uint64_t hi, bool check)
{
    for (unsigned i = 0; i < pa->nranges; i++) {
        uint64_t p = lo > pa->ranges[i].lo ? lo : pa->ranges[i].lo;
        uint64_t end = hi < pa->ranges[i].hi ? hi : pa->ranges[i].hi;
        while (p < end) {
            uint64_t h;
            unsigned k;
            unsigned kind = find_block(pa, p, &h, &k);
            if (!kind) {                /* cannot happen inside RAM */
                p++;
                continue;
            }
            uint64_t bend = h + (1ull << k);
            if (kind == ST_ALLOC && check)
                return vtio_fail(-EBUSY, "page_alloc: cannot reserve %#llx, it is allocated",
                                 (unsigned long long)(p << VTIO_PAGE_SHIFT));
            if (kind == ST_FREE && !check) {
                uint64_t rlo = p, rhi = end < bend ? end : bend;
                list_del(pa, h, k);
                put_range(pa, h, rlo, ST_FREE);
                put_range(pa, rlo, rhi, ST_RSV);
                put_range(pa, rhi, bend, ST_FREE);
                pa->rsv_pages += rhi - rlo;
            }
            p = bend;
        }
    }
    return 0;
}

int vtio_page_alloc_reserve(struct vtio_page_alloc *pa, uint64_t base, uint64_t size)
{
    if (!pa || size == 0 || base + size < base)
        return vtio_fail(-EINVAL, "page_alloc: bad reserve range %#llx+%#llx",
                         (unsigned long long)base, (unsigned long long)size);
    uint64_t lo = base >> VTIO_PAGE_SHIFT;
    uint64_t hi = (base + size - 1) / VTIO_PAGE_SIZE + 1;   /* no overflow at 2^64 */

    pthread_mutex_lock(&pa->lock);
    int rc = walk_reserve(pa, lo, hi, true);
    if (rc == 0)
        walk_reserve(pa, lo, hi, false);
    pthread_mutex_unlock(&pa->lock);
    return rc;
}

/* ---- allocate and free */

int vtio_page_alloc(struct vtio_page_alloc *pa, unsigned order, unsigned flags,
                    uint64_t *out)
{
    if (!pa || !out)
        return vtio_fail(-EINVAL, "page_alloc: NULL argument");
    if (order > MAXO)
        return vtio_fail(-EINVAL, "page_alloc: order %u is over %u", order, MAXO);
    if (flags & ~(VTIO_PAGE_ZERO | VTIO_PAGE_DMA32))
        return vtio_fail(-EINVAL, "page_alloc: unknown flags %#x", flags);

    static const unsigned any[] = { ZONE_NORMAL, ZONE_DMA32 };
    static const unsigned dma32[] = { ZONE_DMA32 };
    const unsigned *zones = (flags & VTIO_PAGE_DMA32) ? dma32 : any;
    unsigned nz = (flags & VTIO_PAGE_DMA32) ? 1 : 2;
    uint64_t pfn = 0;
    bool found = false;

    pthread_mutex_lock(&pa->lock);
    for (unsigned zi = 0; zi < nz && !found; zi++) {
        struct zone *z = &pa->zone[zones[zi]];
        for (unsigned k = order; k <= MAXO; k++) {
            if (z->head[k] == NIL)
                continue;
            pfn = z->head[k];
            list_del(pa, pfn, k);
            while (k > order) {         /* keep the low half, free the high */
                k--;
                list_add(pa, pfn + (1ull << k), k);
            }
            pa->state[pfn] = (uint8_t)(ST_ALLOC | order);
            pa->alloc_pages += 1ull << order;
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&pa->lock);
    if (!found)
        return vtio_fail(-ENOMEM, "page_alloc: no free block of order %u%s", order,
                         (flags & VTIO_PAGE_DMA32) ? " below 4 GiB" : "");
    *out = pfn << VTIO_PAGE_SHIFT;
    if (flags & VTIO_PAGE_ZERO)
        vtio_mem_set(pa->mem, *out, 0, (size_t)(VTIO_PAGE_SIZE << order));
    return 0;
}

int vtio_page_free(struct vtio_page_alloc *pa, uint64_t addr, unsigned order)
{
    if (!pa)
        return vtio_fail(-EINVAL, "page_alloc: NULL allocator");
    if (order > MAXO)
        return vtio_fail(-EINVAL, "page_free: order %u is over %u", order, MAXO);
    if (addr & ((VTIO_PAGE_SIZE << order) - 1))
        return vtio_fail(-EINVAL, "page_free: %#llx is not aligned to order %u",
                         (unsigned long long)addr, order);
    uint64_t pfn = addr >> VTIO_PAGE_SHIFT;
    int rc = 0;

    pthread_mutex_lock(&pa->lock);
    if (pfn >= pa->npfn || pa->state[pfn] != (ST_ALLOC | order)) {
        rc = vtio_fail(-EINVAL, "page_free: %#llx is not an allocated block of order %u",
                       (unsigned long long)addr, order);
    } else {
        pa->state[pfn] = 0;
        pa->alloc_pages -= 1ull << order;
        free_merge(pa, pfn, order);
    }
    pthread_mutex_unlock(&pa->lock);
    return rc;
}

/* ---- counters */

void vtio_page_alloc_get_stats(struct vtio_page_alloc *pa, struct vtio_page_alloc_stats *st)
{
    memset(st, 0, sizeof(*st));
    pthread_mutex_lock(&pa->lock);
    st->total_bytes = pa->total_pages << VTIO_PAGE_SHIFT;
    st->allocated_bytes = pa->alloc_pages << VTIO_PAGE_SHIFT;
    st->reserved_bytes = pa->rsv_pages << VTIO_PAGE_SHIFT;
    st->free_dma32_bytes = pa->zone[ZONE_DMA32].free_pages << VTIO_PAGE_SHIFT;
    st->free_bytes = st->free_dma32_bytes +
                     (pa->zone[ZONE_NORMAL].free_pages << VTIO_PAGE_SHIFT);
    for (unsigned k = 0; k <= MAXO; k++)
        st->free_blocks[k] = pa->zone[ZONE_DMA32].nfree[k] + pa->zone[ZONE_NORMAL].nfree[k];
    pthread_mutex_unlock(&pa->lock);
}

uint64_t vtio_page_alloc_free_bytes(struct vtio_page_alloc *pa)
{
    pthread_mutex_lock(&pa->lock);
    uint64_t v = (pa->zone[ZONE_DMA32].free_pages + pa->zone[ZONE_NORMAL].free_pages)
                 << VTIO_PAGE_SHIFT;
    pthread_mutex_unlock(&pa->lock);
    return v;
}

uint64_t vtio_page_alloc_total_bytes(struct vtio_page_alloc *pa)
{
    return pa->total_pages << VTIO_PAGE_SHIFT;   /* fixed at creation */
}
