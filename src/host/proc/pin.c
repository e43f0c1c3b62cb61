/*
 * The pages a process owns: their records, their pins and the
 * locked-memory accounting (the pin calls of proc_priv.h; the address
 * space they come from is process.c).
 *
 * Page records.  Each 4 KiB page of machine RAM that this process owns has
 * a pin count and a state byte (OWNED, MAPPED, HUGE), in arrays indexed by
 * pfn, one chunk per GiB of physical space, allocated (and touched, so that
 * pins do not take the host's page faults) the first time the process maps
 * a page there: 1.3 MiB per GiB.  Indexing by pfn makes unpinning by
 * physical address a direct lookup, which keeps working for pages the
 * program has unmapped.  Each 2 MiB block of pfns also counts its pages
 * with a non-zero pin count, so a huge page knows when its last pin went.
 *
 * Pinning asks the address space for the run that holds the address; the
 * rest of it is the longest physically contiguous stretch there, as runs
 * break only where machine RAM does (or where one memfd ends and the next
 * begins: the run is then shorter than it could be, which callers handle as
 * they handle the end of a mapping; the next mapping is not looked at).
 * The counts of its pages are incremented in a tight loop that counts
 * 0 -> 1 transitions: those are charged to locked memory (a page counts
 * once however often it is pinned).  If the charge would exceed
 * RLIMIT_MEMLOCK without CAP_IPC_LOCK, the increments are undone before the
 * lock is dropped, so nobody sees them.  As in Linux, only new pages are
 * checked: pinning pages that are already pinned never fails for the
 * limit.  Unpinning decrements by pfn and uncharges 1 -> 0 transitions.
 * Both cost about 1 ns per page (1 GiB: 0.3 ms to pin, 0.2 ms to unpin).
 *
 * Batches.  Memory broken into many runs pays per run: a lock, and two
 * binary searches (areas, then runs) to find the address.  pin_runs pins
 * run after run under one lock and finds each next run from where the
 * previous one was (a cursor into the address space, O(1)); unpin_runs
 * drops many runs under one lock.  On memory of single-page runs that is
 * ~14 ns per run to pin instead of ~56, ~7 to unpin instead of ~18.  A run
 * pin_runs cannot pin ends the batch, not the call: what came before stays
 * pinned and is returned, and the caller's next call meets the error, as
 * it would have run by run.
 *
 * Orphans.  munmap takes pages out of the address space at once (state loses
 * MAPPED, the host mapping goes).  An unpinned page goes back to the page
 * allocator then; a pinned one becomes an orphan, still OWNED, and goes back
 * at the unpin that takes its count (for a 2 MiB page: the count of all its
 * 512 pages) to zero.  A huge page is always freed as one order-9 block.
 * The unpin that drops the last locked page of an exited process frees the
 * process too (process.c, "Exit").
 *
 * Locking: the process's one mutex (process.c), taken once per call.
 * Since every pin count is read and written under it, the counts are plain
 * integers (the increments vectorise).
 *
 * Invariants (under lock):
 *  - a page is OWNED iff it is in an area (MAPPED) or an orphan; orphans
 *    have a pin in their page (4 KiB) or block (2 MiB);
 *  - locked_pages = number of pages with a non-zero pin count;
 *    block_pinned[b] = the same within 2 MiB block b;
 *  - orphan_bytes = bytes of orphan pages (2 MiB per orphan huge page).
 */
#include <vtio/host.h>
#include <vtio/mem.h>
#include <vtio/page_alloc.h>

#include "host/proc/process_internal.h"
#include "host/proc/proc_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

#define BLOCK_PAGES (HUGE / PAGE)                    /* 512 */
#define CHUNK_SHIFT 18                               /* pfns per chunk: 1 GiB */
#define CHUNK_PAGES (1u << CHUNK_SHIFT)
#define CHUNK_BLOCKS (CHUNK_PAGES / BLOCK_PAGES)

/* Page state bits. */
#define PG_OWNED  0x1u        /* allocated for this process, not yet freed */
#define PG_MAPPED 0x2u        /* in an area (else, if OWNED: an orphan) */
#define PG_HUGE   0x4u        /* part of a 2 MiB page (an order-9 block) */

/* Pin counts, states and per-block pinned-page counts of 1 GiB of pfns. */
struct pfn_chunk {
    uint32_t pins[CHUNK_PAGES];
    uint16_t block_pinned[CHUNK_BLOCKS];
    uint8_t state[CHUNK_PAGES];
};

/* ---- page records */

static struct pfn_chunk *chunk_of(const struct vtio_process *p, uint64_t pfn)
{
    uint64_t c = pfn >> CHUNK_SHIFT;
    return c < p->nchunks ? p->chunks[c] : NULL;
}

/* The chunks of [pfn, pfn + n) exist from now on. */
int proc_pages_prepare(struct vtio_process *p, uint64_t pfn, uint64_t n)
{
    for (uint64_t c = pfn >> CHUNK_SHIFT; c <= (pfn + n - 1) >> CHUNK_SHIFT; c++) {
        if (c >= p->nchunks)
            return vtio_fail(-ENOMEM, "process: pfn %#llx beyond machine RAM",
                             (unsigned long long)pfn);
        if (p->chunks[c])
            continue;
        /* Touched now, at mmap, so that the first pins do not pay the
         * host's page faults. */
        if (!(p->chunks[c] = malloc(sizeof(struct pfn_chunk))))
            return vtio_fail(-ENOMEM, "process: no memory for page metadata");
        memset(p->chunks[c], 0, sizeof(struct pfn_chunk));
    }
    return 0;
}

/*
 * Walks [pfn, pfn + n) in pieces that stay inside one 2 MiB block (hence
 * one chunk), skipping pieces whose chunk does not exist:
 *     for (struct piece pc = pieces(pfn, n); piece_next(p, &pc);) ...
 */
struct piece {
    struct pfn_chunk *c;
    uint32_t i;               /* index of the piece's first page in c */
    uint32_t n;               /* pages */
    uint64_t pfn;             /* of its first page */
    uint64_t next, end;       /* what is left to walk */
};

static struct piece pieces(uint64_t pfn, uint64_t n)
{
    return (struct piece){ .next = pfn, .end = pfn + n };
}

static bool piece_next(const struct vtio_process *p, struct piece *pc)
{
    while (pc->next < pc->end) {
        pc->pfn = pc->next;
        pc->n = (uint32_t)min_u64(pc->end - pc->pfn, BLOCK_PAGES - (pc->pfn % BLOCK_PAGES));
        pc->c = chunk_of(p, pc->pfn);
        pc->i = (uint32_t)(pc->pfn & (CHUNK_PAGES - 1));
        pc->next += pc->n;
        if (pc->c)
            return true;
    }
    return false;
}

static void state_set(struct vtio_process *p, uint64_t pfn, uint64_t n, uint8_t st)
{
    for (struct piece pc = pieces(pfn, n); piece_next(p, &pc);)
        memset(&pc.c->state[pc.i], st, pc.n);
}

/* Increments the pin counts of [pfn, pfn + n); @returns how many were 0. */
static uint64_t pins_inc(struct vtio_process *p, uint64_t pfn, uint64_t n)
{
    uint64_t fresh_total = 0;
    for (struct piece pc = pieces(pfn, n); piece_next(p, &pc);) {
        uint32_t *pins = &pc.c->pins[pc.i];
        uint32_t fresh = 0;
        for (uint32_t j = 0; j < pc.n; j++) {
            fresh += pins[j] == 0;
            pins[j]++;
        }
        pc.c->block_pinned[pc.i / BLOCK_PAGES] += (uint16_t)fresh;
        fresh_total += fresh;
    }
    return fresh_total;
}

/* Decrements the non-zero pin counts of [pfn, pfn + n); @returns how many
 * reached 0, and in *unpinned how many were 0 already (a caller's bug). */
static uint64_t pins_dec(struct vtio_process *p, uint64_t pfn, uint64_t n, uint64_t *unpinned)
{
    uint64_t zeroed_total = 0, pinned = 0;
    for (struct piece pc = pieces(pfn, n); piece_next(p, &pc);) {
        uint32_t *pins = &pc.c->pins[pc.i];
        uint32_t zeroed = 0, idle = 0;
        for (uint32_t j = 0; j < pc.n; j++) {
            zeroed += pins[j] == 1;
            idle += pins[j] == 0;
            pins[j] -= pins[j] != 0;
        }
        pc.c->block_pinned[pc.i / BLOCK_PAGES] -= (uint16_t)zeroed;
        zeroed_total += zeroed;
        pinned += pc.n - idle;
    }
    *unpinned = n - pinned;
    return zeroed_total;
}

void proc_page_free(struct vtio_process *p, uint64_t pa, unsigned order)
{
    if (vtio_page_free(p->host->pages, pa, order) < 0)
        vtio_host_log(p->host, VTIO_LOG_ERR, "process %s: cannot free %#llx (order %u)",
                      p->name, (unsigned long long)pa, order);
}

/* An orphan piece of a huge page: the block goes once none of it is pinned. */
static void reap_huge(struct vtio_process *p, const struct piece *pc, bool count_orphans)
{
    uint32_t head = pc->i & ~(uint32_t)(BLOCK_PAGES - 1);
    if (pc->c->block_pinned[pc->i / BLOCK_PAGES] == 0) {
        memset(&pc->c->state[head], 0, BLOCK_PAGES);
        proc_page_free(p, (pc->pfn - (pc->i - head)) * PAGE, VTIO_PAGE_ORDER_2M);
        if (!count_orphans)
            p->orphan_bytes -= HUGE;
    } else if (count_orphans) {
        p->orphan_bytes += HUGE;
    }
}

static void reap_small(struct vtio_process *p, const struct piece *pc, bool count_orphans)
{
    for (uint32_t j = pc->i; j < pc->i + pc->n; j++) {
        if ((pc->c->state[j] & (PG_OWNED | PG_MAPPED)) != PG_OWNED)
            continue;
        if (pc->c->pins[j] == 0) {
            pc->c->state[j] = 0;
            proc_page_free(p, (pc->pfn + (j - pc->i)) * PAGE, 0);
            if (!count_orphans)
                p->orphan_bytes -= PAGE;
        } else if (count_orphans) {
            p->orphan_bytes += PAGE;
        }
    }
}

/*
 * Gives back the pages of [pfn, pfn + n) that no longer need to stay: owned,
 * not mapped, not pinned (for a huge page: none of its 512).  Called after
 * unmapping, which also counts the orphans it leaves (count_orphans), and
 * after unpinning, which uncounts the orphans it frees.
 */
static void reap(struct vtio_process *p, uint64_t pfn, uint64_t n, bool count_orphans)
{
    for (struct piece pc = pieces(pfn, n); piece_next(p, &pc);) {
        uint8_t head_state = pc.c->state[pc.i & ~(uint32_t)(BLOCK_PAGES - 1)];
        if (!(head_state & PG_HUGE))
            reap_small(p, &pc, count_orphans);
        else if ((head_state & (PG_OWNED | PG_MAPPED)) == PG_OWNED)
            reap_huge(p, &pc, count_orphans);
    }
}

void proc_pages_mapped(struct vtio_process *p, uint64_t pfn, uint64_t n, bool huge)
{
    state_set(p, pfn, n, PG_OWNED | PG_MAPPED | (huge ? PG_HUGE : 0));
}

void proc_pages_unmapped(struct vtio_process *p, uint64_t pfn, uint64_t n)
{
    for (struct piece pc = pieces(pfn, n); piece_next(p, &pc);)
        for (uint32_t j = pc.i; j < pc.i + pc.n; j++)
            pc.c->state[j] &= (uint8_t)~PG_MAPPED;
    reap(p, pfn, n, true);
}

static void note_ram_end(void *arg, uint64_t base, uint64_t size, const char *name)
{
    (void)name;
    uint64_t *end = arg;
    if (base + size > *end)
        *end = base + size;
}

int proc_pages_init(struct vtio_process *p)
{
    uint64_t ram_end = 0;
    vtio_mem_for_each_ram(p->host->mem, note_ram_end, &ram_end);
    p->nchunks = (ram_end / PAGE + CHUNK_PAGES - 1) >> CHUNK_SHIFT;
    p->chunks = calloc(p->nchunks ? p->nchunks : 1, sizeof(*p->chunks));
    return p->chunks ? 0 : -ENOMEM;
}

void proc_pages_destroy(struct vtio_process *p)
{
    for (uint64_t c = 0; c < p->nchunks; c++)
        free(p->chunks[c]);
    free(p->chunks);
}

/* ---- pinning */

/*
 * Pins the run at vaddr, at most max_pages of it (under lock); cur: where
 * the previous run of the same call was found.  @returns pages and *pa;
 * -EFAULT not mapped; -ENOMEM over the limit (nothing pinned).  Sets no
 * message: only the caller knows whether the error is reported.
 */
static long pin_one(struct vtio_process *p, uint64_t vaddr, uint64_t max_pages,
                    struct proc_va_cursor *cur, uint64_t *pa)
{
    uint64_t first, len;
    if (!proc_va_run(p, vaddr, cur, &first, &len))
        return -EFAULT;
    uint64_t n = min_u64(max_pages, len / PAGE);
    uint64_t fresh = pins_inc(p, first / PAGE, n);
    if (fresh && !p->cap_ipc_lock && p->locked_pages + fresh > p->memlock_limit / PAGE) {
        uint64_t ignored;
        pins_dec(p, first / PAGE, n, &ignored);
        return -ENOMEM;
    }
    p->locked_pages += fresh;
    *pa = first;
    return (long)n;
}

long vtio_process_pin_runs(struct vtio_process *p, uint64_t vaddr, uint64_t max_pages,
                           struct vtio_pin_run *runs, unsigned max_runs, unsigned *nruns)
{
    if (!p || !runs || !nruns)
        return vtio_fail(-EINVAL, "pin: NULL process or result");
    if (max_runs == 0)
        return vtio_fail(-EINVAL, "pin: no room for a run");
    *nruns = 0;
    if ((vaddr & (PAGE - 1)) || max_pages == 0)
        return vtio_fail(-EINVAL, "pin: address %#llx not page aligned or no pages",
                         (unsigned long long)vaddr);
    struct proc_va_cursor cur = { .area = SIZE_MAX };   /* no guess */
    uint64_t done = 0;
    unsigned n = 0;
    long got = 0;
    pthread_mutex_lock(&p->lock);
    while (n < max_runs && done < max_pages) {
        got = pin_one(p, vaddr + done * PAGE, max_pages - done, &cur, &runs[n].pa);
        if (got < 0)
            break;
        runs[n++].pages = (uint64_t)got;
        done += (uint64_t)got;
    }
    uint64_t limit = p->memlock_limit;
    pthread_mutex_unlock(&p->lock);
    *nruns = n;
    if (n)
        return (long)done;
    if (got == -EFAULT)
        return vtio_fail(-EFAULT, "pin: %#llx is not mapped in %s",
                         (unsigned long long)vaddr, p->name);
    return vtio_fail(-ENOMEM, "RLIMIT_MEMLOCK (%llu) exceeded", (unsigned long long)limit);
}

long vtio_process_pin_run(struct vtio_process *p, uint64_t vaddr, uint64_t max_pages,
                          uint64_t *pa)
{
    if (!pa)
        return vtio_fail(-EINVAL, "pin: NULL process or result");
    struct vtio_pin_run run;
    unsigned n;
    long pages = vtio_process_pin_runs(p, vaddr, max_pages, &run, 1, &n);
    if (pages > 0)
        *pa = run.pa;
    return pages;
}

/* Drops one pin from [pfn, pfn + n) (under lock).  @returns how many of
 * those pages were not pinned (a caller's bug). */
static uint64_t unpin_one(struct vtio_process *p, uint64_t pfn, uint64_t n)
{
    uint64_t unpinned;
    p->locked_pages -= pins_dec(p, pfn, n, &unpinned);
    if (p->orphan_bytes)
        reap(p, pfn, n, false);
    return unpinned;
}

void vtio_process_unpin_run(struct vtio_process *p, uint64_t pa, uint64_t npages)
{
    if (!p || npages == 0)
        return;
    pthread_mutex_lock(&p->lock);
    uint64_t unpinned = unpin_one(p, pa / PAGE, npages);
    bool free_now = p->exited && p->locked_pages == 0;
    pthread_mutex_unlock(&p->lock);
    if (unpinned)
        vtio_host_log(p->host, VTIO_LOG_ERR,
                      "process %s: unpin of %llu pages at %#llx: %llu were not pinned",
                      p->name, (unsigned long long)npages, (unsigned long long)pa,
                      (unsigned long long)unpinned);
    if (free_now)
        proc_free(p);
}

void vtio_process_unpin_runs(struct vtio_process *p, const struct vtio_pin_run *runs,
                             size_t n)
{
    if (!p || !runs || n == 0)
        return;
    uint64_t unpinned = 0, first_bad = 0;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < n; i++) {
        uint64_t bad = runs[i].pages ? unpin_one(p, runs[i].pa / PAGE, runs[i].pages) : 0;
        if (bad && !unpinned)
            first_bad = runs[i].pa;
        unpinned += bad;
    }
    bool free_now = p->exited && p->locked_pages == 0;
    pthread_mutex_unlock(&p->lock);
    if (unpinned)
        vtio_host_log(p->host, VTIO_LOG_ERR,
                      "process %s: unpin of %zu runs (the first bad one at %#llx): %llu "
                      "pages were not pinned", p->name, n, (unsigned long long)first_bad,
                      (unsigned long long)unpinned);
    if (free_now)
        proc_free(p);
}

/* ---- the limit */

int vtio_process_set_memlock_limit(struct vtio_process *p, uint64_t bytes)
{
    if (!p)
        return vtio_fail(-EINVAL, "set_memlock_limit: NULL process");
    pthread_mutex_lock(&p->lock);
    p->memlock_limit = bytes;
    pthread_mutex_unlock(&p->lock);
    return 0;
}

void vtio_process_set_cap_ipc_lock(struct vtio_process *p, bool on)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->cap_ipc_lock = on;
    pthread_mutex_unlock(&p->lock);
}
