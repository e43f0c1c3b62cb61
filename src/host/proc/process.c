/*
 * A process's address space (include/vtio/process.h): its mappings of
 * machine RAM, mmap, munmap, virt_to_phys, create and exit.  The records of
 * the pages it owns (pin counts, orphans, locked-memory accounting) are
 * pin.c's; the two halves share struct vtio_process (process_internal.h).
 *
 * The CPU page table.  A mapping (an "area", Linux's VMA) is a range of host
 * virtual addresses reserved with mmap(PROT_NONE, MAP_NORESERVE) (2 MiB
 * aligned for huge pages) and filled, run by run, with the machine's RAM
 * memfd: mmap(MAP_SHARED | MAP_FIXED, memfd, offset of the run).  A run is a
 * stretch of pages consecutive both in the area and in machine RAM (and in
 * one memfd), so each run is one host mapping: the page-table entries of
 * its pages, all at once.  That is why the pointer and the physical address
 * show the same bytes.  Pages come from the host's page allocator, order 0
 * for 4 KiB mappings and order 9 for huge ones; consecutive blocks merge
 * into one run, which keeps the host's mapping count (vm.max_map_count)
 * low; a host mmap that fails for it makes our mmap fail with -ENOMEM.
 * Memory is zeroed before anyone can see it, by punching a hole in the
 * memfd (fallocate): every view of those pages, the machine's included,
 * then reads zeros, and the host backs them with fresh zeroed memory at the
 * first touch.  Mapping 1 GiB costs ~7 ms so, instead of ~150 ms for
 * populating and writing zeros (~700 ms when the host first backs the RAM),
 * which matters for programs that map large buffers and touch little of
 * them; where punching is refused, zeros are written.  Every page has its
 * physical address from the start (the header's MAP_POPULATE promise);
 * only the host's backing is lazy, as it is for all machine RAM.
 *
 * Lookups.  An address is found by binary search, over the areas and then
 * over the area's runs; the run found is what pinning takes (the rest of
 * it is physically contiguous).  munmap takes pages out of the address
 * space at once (the host mapping goes first, so a page is never free
 * while mapped) and hands them to pin.c, which frees those not pinned and
 * keeps the others as orphans until their last unpin.
 *
 * Exit.  destroy closes the files first (VFIO's release unpins what it
 * pinned), then unmaps every area.  If pins remain (something outlives the
 * files and still holds pages), the process is marked exited and the
 * struct, with its page records, stays until the unpin that drops the
 * last locked page, which frees the orphans and then the process, as
 * Linux's mm_struct outlives the program while VFIO holds it.  Pins that are
 * never dropped keep it (and their pages) forever.
 *
 * Locking.  One mutex (lock) guards the areas, the page records and the
 * counters; pin, unpin, mmap and munmap take it once per call.  The slow
 * parts of mmap (allocating, zeroing, host mmaps) run outside it, before
 * the area is published.  Lock order: process lock -> page allocator lock.
 * The file table has its own lock (files.c); nothing holds both.
 *
 * Invariants (under lock):
 *  - areas are sorted by va and disjoint; an area's runs are sorted by off,
 *    cover [0, size) without gaps, and are multiples of its page size;
 *  - every page of an area is recorded OWNED and MAPPED (pin.c);
 *  - mapped_bytes = sum of the areas' sizes.
 */
#define _GNU_SOURCE                         /* fallocate */
#include <vtio/host.h>
#include <vtio/page_alloc.h>
#include <vtio/process.h>

#include "host/proc/file_table.h"
#include "host/proc/process_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "util/error.h"

/* Pages consecutive in the area and in machine RAM: one host mapping. */
struct run {
    uint64_t off;             /* bytes from the area's start */
    uint64_t len;             /* bytes */
    uint64_t pa;
};

struct area {
    uint64_t va, size;
    uint64_t page_size;       /* PAGE or HUGE */
    struct run *runs;
    size_t nruns;
};

/* ---- areas and runs */

/* The index of the area holding va, or of the first area above it. */
static size_t area_search(const struct vtio_process *p, uint64_t va)
{
    size_t lo = 0, hi = p->nareas;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->areas[mid].va + p->areas[mid].size <= va)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The index of the run holding offset off of a. */
static size_t run_search(const struct area *a, uint64_t off)
{
    size_t lo = 0, hi = a->nruns;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a->runs[mid].off + a->runs[mid].len <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Finds the area and run holding va.  @returns false if va is not mapped. */
static bool lookup(const struct vtio_process *p, uint64_t va, size_t *ai, size_t *ri)
{
    size_t a = area_search(p, va);
    if (a == p->nareas || va < p->areas[a].va)
        return false;
    *ai = a;
    *ri = run_search(&p->areas[a], va - p->areas[a].va);
    return true;
}

static uint64_t run_pa_at(const struct area *a, size_t ri, uint64_t va)
{
    return a->runs[ri].pa + (va - a->va - a->runs[ri].off);
}

/* Whether run ri of area ai exists and holds va. */
static bool run_holds(const struct vtio_process *p, size_t ai, size_t ri, uint64_t va)
{
    if (ai >= p->nareas || ri >= p->areas[ai].nruns)
        return false;
    const struct area *a = &p->areas[ai];
    uint64_t start = a->va + a->runs[ri].off;
    return va >= start && va - start < a->runs[ri].len;
}

bool proc_va_run(const struct vtio_process *p, uint64_t va, struct proc_va_cursor *cur,
                 uint64_t *pa, uint64_t *len)
{
    size_t ai = cur->area, ri = cur->run + 1;
    if (ai < p->nareas && ri >= p->areas[ai].nruns) {
        ai++;
        ri = 0;
    }
    if (!run_holds(p, ai, ri, va) && !lookup(p, va, &ai, &ri))
        return false;
    const struct area *a = &p->areas[ai];
    *pa = run_pa_at(a, ri, va);
    *len = a->va + a->runs[ri].off + a->runs[ri].len - va;
    *cur = (struct proc_va_cursor){ ai, ri };
    return true;
}

/* Calls fn on the pieces of machine RAM behind [lo, hi) of a (offsets). */
static void area_for_each_pa(struct vtio_process *p, const struct area *a, uint64_t lo,
                             uint64_t hi,
                             void (*fn)(struct vtio_process *p, uint64_t pfn, uint64_t n))
{
    for (size_t r = run_search(a, lo); r < a->nruns && a->runs[r].off < hi; r++) {
        const struct run *run = &a->runs[r];
        uint64_t from = lo > run->off ? lo : run->off;
        uint64_t to = min_u64(hi, run->off + run->len);
        fn(p, (run->pa + (from - run->off)) / PAGE, (to - from) / PAGE);
    }
}

/* Drops the runs of a before offset `cut` and rebases the rest to it. */
static void runs_trim_head(struct area *a, uint64_t cut)
{
    size_t first = run_search(a, cut);
    memmove(a->runs, a->runs + first, (a->nruns - first) * sizeof(*a->runs));
    a->nruns -= first;
    uint64_t skip = cut - a->runs[0].off;
    a->runs[0].off += skip;
    a->runs[0].pa += skip;
    a->runs[0].len -= skip;
    for (size_t r = 0; r < a->nruns; r++)
        a->runs[r].off -= cut;
    a->va += cut;
    a->size -= cut;
}

/* Drops the runs of a from offset `cut` on. */
static void runs_trim_tail(struct area *a, uint64_t cut)
{
    size_t last = run_search(a, cut - 1);
    a->runs[last].len = cut - a->runs[last].off;
    a->nruns = last + 1;
    a->size = cut;
}

static void area_insert(struct vtio_process *p, size_t at, const struct area *a)
{
    memmove(p->areas + at + 1, p->areas + at, (p->nareas - at) * sizeof(*p->areas));
    p->areas[at] = *a;
    p->nareas++;
}

static void area_remove(struct vtio_process *p, size_t at)
{
    free(p->areas[at].runs);
    memmove(p->areas + at, p->areas + at + 1, (p->nareas - at - 1) * sizeof(*p->areas));
    p->nareas--;
}

static int areas_reserve(struct vtio_process *p, size_t more)
{
    if (p->nareas + more <= p->areas_cap)
        return 0;
    size_t cap = p->areas_cap ? p->areas_cap * 2 : 8;
    while (cap < p->nareas + more)
        cap *= 2;
    struct area *n = realloc(p->areas, cap * sizeof(*n));
    if (!n)
        return vtio_fail(-ENOMEM, "process: no memory for mappings");
    p->areas = n;
    p->areas_cap = cap;
    return 0;
}

/* ---- create, destroy */

int vtio_process_create(struct vtio_host *h, const char *name, struct vtio_process **out)
{
    if (!h || !out)
        return vtio_fail(-EINVAL, "process_create: NULL host or result");
    struct vtio_process *p = calloc(1, sizeof(*p));
    if (p) {
        p->host = h;
        if (proc_pages_init(p) == 0 && !(p->files = vtio_file_table_create()))
            proc_pages_destroy(p);
    }
    if (!p || !p->files) {
        free(p);
        return vtio_fail(-ENOMEM, "process_create: no memory");
    }
    snprintf(p->name, sizeof(p->name), "%s", name ? name : "process");
    pthread_mutex_init(&p->lock, NULL);
    p->memlock_limit = VTIO_PROCESS_MEMLOCK_DEFAULT;
    *out = p;
    return 0;
}

void proc_free(struct vtio_process *p)
{
    vtio_file_table_destroy(p->files);
    proc_pages_destroy(p);
    free(p->areas);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* Unmaps all of area `at` (under lock). */
static void area_unmap_whole(struct vtio_process *p, size_t at)
{
    struct area *a = &p->areas[at];
    /* The program's view goes first: a page is never free while mapped. */
    munmap((void *)(uintptr_t)a->va, a->size);
    area_for_each_pa(p, a, 0, a->size, proc_pages_unmapped);
    p->mapped_bytes -= a->size;
    area_remove(p, at);
}

void vtio_process_destroy(struct vtio_process *p)
{
    if (!p)
        return;
    vtio_file_table_close_all(p->files);
    pthread_mutex_lock(&p->lock);
    while (p->nareas)
        area_unmap_whole(p, p->nareas - 1);
    p->exited = true;
    bool free_now = p->locked_pages == 0;
    if (!free_now)
        vtio_host_log(p->host, VTIO_LOG_WARN,
                      "process %s exits with %llu pages still pinned; they go at the last unpin",
                      p->name, (unsigned long long)p->locked_pages);
    pthread_mutex_unlock(&p->lock);
    if (free_now)
        proc_free(p);
}

const char *vtio_process_name(const struct vtio_process *p)
{
    return p ? p->name : "";
}

struct vtio_host *vtio_process_host(const struct vtio_process *p)
{
    return p ? p->host : NULL;
}

struct vtio_file_table *vtio_process_file_table(struct vtio_process *p)
{
    return p->files;
}

/* ---- mmap */

/* The blocks of a new area, before it is published. */
struct new_area {
    struct area a;
    size_t runs_cap;
    int fd;                   /* memfd and offset of the last run's end */
    uint64_t fd_end;
};

static void new_area_free_pages(struct vtio_process *p, struct new_area *n)
{
    unsigned order = n->a.page_size == HUGE ? VTIO_PAGE_ORDER_2M : 0;
    for (size_t r = 0; r < n->a.nruns; r++)
        for (uint64_t off = 0; off < n->a.runs[r].len; off += n->a.page_size)
            proc_page_free(p, n->a.runs[r].pa + off, order);
    free(n->a.runs);
}

/* Appends the block at pa to the area, extending the last run if it
 * continues it in machine RAM and in the memfd.  @returns 0; -ENOMEM. */
static int new_area_add(struct vtio_process *p, struct new_area *n, uint64_t pa)
{
    int fd;
    uint64_t fd_off;
    int rc = vtio_mem_ram_fd(p->host->mem, pa, &fd, &fd_off);
    if (rc < 0)
        return rc;
    struct area *a = &n->a;
    struct run *last = a->nruns ? &a->runs[a->nruns - 1] : NULL;
    if (last && last->pa + last->len == pa && n->fd == fd && n->fd_end == fd_off) {
        last->len += a->page_size;
    } else {
        uint64_t off = last ? last->off + last->len : 0;
        if (a->nruns == n->runs_cap) {
            size_t cap = n->runs_cap ? n->runs_cap * 2 : 16;
            struct run *runs = realloc(a->runs, cap * sizeof(*runs));
            if (!runs)
                return vtio_fail(-ENOMEM, "mmap: no memory for runs");
            a->runs = runs;
            n->runs_cap = cap;
        }
        a->runs[a->nruns++] = (struct run){ .off = off, .len = a->page_size, .pa = pa };
        n->fd = fd;
    }
    n->fd_end = fd_off + a->page_size;
    return 0;
}

static int new_area_alloc(struct vtio_process *p, struct new_area *n)
{
    unsigned order = n->a.page_size == HUGE ? VTIO_PAGE_ORDER_2M : 0;
    for (uint64_t off = 0; off < n->a.size; off += n->a.page_size) {
        uint64_t pa;
        int rc = vtio_page_alloc(p->host->pages, order, 0, &pa);
        if (rc == 0 && (rc = new_area_add(p, n, pa)) < 0)
            proc_page_free(p, pa, order);
        if (rc < 0) {
            new_area_free_pages(p, n);
            return vtio_fail(-ENOMEM, "mmap: machine RAM ran out (%llu of %llu bytes)",
                             (unsigned long long)off, (unsigned long long)n->a.size);
        }
    }
    return 0;
}

/* Zeroes a run of machine RAM: by punching a hole in the memfd (the host
 * drops the pages and hands out zeroed ones at the next touch, so the
 * zeroing costs nothing for RAM never touched and a fault per page for RAM
 * that is), else by writing zeros through the new mapping. */
static void zero_run(void *va, uint64_t len, int fd, uint64_t fd_off)
{
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)fd_off,
                  (off_t)len) < 0)
        memset(va, 0, len);
}

/* Reserves the host addresses of the area (aligned to its page size) and
 * maps each run's memfd pages there.  @returns 0; -ENOMEM. */
static int new_area_map(struct vtio_process *p, struct new_area *n)
{
    struct area *a = &n->a;
    /* Over-reserve by a page size less a page, then trim to alignment. */
    uint64_t align = a->page_size, extra = align - PAGE;
    uint8_t *res = mmap(NULL, a->size + extra, PROT_NONE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED)
        return vtio_fail(-ENOMEM, "mmap: no host address space for %llu bytes",
                         (unsigned long long)a->size);
    uint64_t base = (uint64_t)(uintptr_t)res;
    uint64_t va = (base + align - 1) & ~(align - 1);
    if (va > base)
        munmap(res, va - base);
    if (base + extra > va)
        munmap((void *)(uintptr_t)(va + a->size), base + extra - va);
    a->va = va;

    for (size_t r = 0; r < a->nruns; r++) {
        int fd;
        uint64_t fd_off;
        void *want = (void *)(uintptr_t)(va + a->runs[r].off);
        void *got = MAP_FAILED;
        if (vtio_mem_ram_fd(p->host->mem, a->runs[r].pa, &fd, &fd_off) == 0)
            got = mmap(want, a->runs[r].len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                       fd, (off_t)fd_off);
        if (got != want) {
            munmap((void *)(uintptr_t)va, a->size);
            return vtio_fail(-ENOMEM, "mmap: host mapping %zu of %zu failed "
                             "(vm.max_map_count?)", r + 1, a->nruns);
        }
        zero_run(want, a->runs[r].len, fd, fd_off);
    }
    return 0;
}

/* Publishes the area (under lock).  @returns 0; -ENOMEM. */
static int area_publish(struct vtio_process *p, struct area *a)
{
    int rc = areas_reserve(p, 1);
    for (size_t r = 0; r < a->nruns && rc == 0; r++)
        rc = proc_pages_prepare(p, a->runs[r].pa / PAGE, a->runs[r].len / PAGE);
    if (rc < 0)
        return rc;
    for (size_t r = 0; r < a->nruns; r++)
        proc_pages_mapped(p, a->runs[r].pa / PAGE, a->runs[r].len / PAGE, a->page_size == HUGE);
    area_insert(p, area_search(p, a->va), a);
    p->mapped_bytes += a->size;
    return 0;
}

int vtio_process_mmap(struct vtio_process *p, uint64_t size, unsigned flags, void **addr)
{
    if (!p || !addr)
        return vtio_fail(-EINVAL, "mmap: NULL process or result");
    if (flags & ~VTIO_PROCESS_MAP_HUGE)
        return vtio_fail(-EINVAL, "mmap: unknown flags %#x", flags);
    uint64_t page_size = (flags & VTIO_PROCESS_MAP_HUGE) ? HUGE : PAGE;
    if (size == 0 || size % page_size)
        return vtio_fail(-EINVAL, "mmap: size %#llx is not a multiple of %llu KiB",
                         (unsigned long long)size, (unsigned long long)(page_size >> 10));
    if (size > vtio_page_alloc_free_bytes(p->host->pages))
        return vtio_fail(-ENOMEM, "mmap: %llu bytes is more than the free machine RAM",
                         (unsigned long long)size);

    struct new_area n = { .a = { .size = size, .page_size = page_size }, .fd = -1 };
    int rc = new_area_alloc(p, &n);
    if (rc < 0)
        return rc;
    if ((rc = new_area_map(p, &n)) < 0) {
        new_area_free_pages(p, &n);
        return rc;
    }
    pthread_mutex_lock(&p->lock);
    rc = area_publish(p, &n.a);
    pthread_mutex_unlock(&p->lock);
    if (rc < 0) {
        munmap((void *)(uintptr_t)n.a.va, size);
        new_area_free_pages(p, &n);
        return rc;
    }
    *addr = (void *)(uintptr_t)n.a.va;
    return 0;
}

/* ---- munmap */

/* Whether [lo, hi) cuts area a only at its page size. */
static bool cut_aligned(const struct area *a, uint64_t lo, uint64_t hi)
{
    uint64_t m = a->page_size - 1;
    return (lo <= a->va || !(lo & m)) && (hi >= a->va + a->size || !(hi & m));
}

/* Takes [lo, hi), which overlaps area `at`, out of it (under lock; the
 * room for a split was reserved).  @returns the index after what is left. */
static size_t area_cut(struct vtio_process *p, size_t at, uint64_t lo, uint64_t hi,
                       struct run *split_runs)
{
    struct area *a = &p->areas[at];
    uint64_t end = a->va + a->size;
    uint64_t cut_lo = lo > a->va ? lo : a->va, cut_hi = min_u64(hi, end);
    if (cut_lo == a->va && cut_hi == end) {
        area_unmap_whole(p, at);
        return at;
    }
    munmap((void *)(uintptr_t)cut_lo, cut_hi - cut_lo);
    area_for_each_pa(p, a, cut_lo - a->va, cut_hi - a->va, proc_pages_unmapped);
    p->mapped_bytes -= cut_hi - cut_lo;
    if (cut_lo == a->va) {
        runs_trim_head(a, cut_hi - a->va);
        return at;
    }
    if (cut_hi == end) {
        runs_trim_tail(a, cut_lo - a->va);
        return at + 1;
    }
    /* A hole in the middle: the tail becomes an area of its own. */
    struct area tail = *a;
    memcpy(split_runs, a->runs, a->nruns * sizeof(*split_runs));
    tail.runs = split_runs;
    runs_trim_head(&tail, cut_hi - a->va);
    runs_trim_tail(a, cut_lo - a->va);
    area_insert(p, at + 1, &tail);
    return at + 2;
}

int vtio_process_munmap(struct vtio_process *p, void *addr, uint64_t size)
{
    uint64_t lo = (uint64_t)(uintptr_t)addr, hi = lo + size;
    if (!p)
        return vtio_fail(-EINVAL, "munmap: NULL process");
    if (size == 0 || (lo | size) & (PAGE - 1) || hi < lo)
        return vtio_fail(-EINVAL, "munmap: [%#llx, +%#llx) is empty, wraps or is not "
                         "page aligned", (unsigned long long)lo, (unsigned long long)size);
    pthread_mutex_lock(&p->lock);
    size_t first = area_search(p, lo), at;
    for (at = first; at < p->nareas && p->areas[at].va < hi; at++) {
        if (!cut_aligned(&p->areas[at], lo, hi)) {
            pthread_mutex_unlock(&p->lock);
            return vtio_fail(-EINVAL, "munmap: [%#llx, %#llx) cuts a 2 MiB page",
                             (unsigned long long)lo, (unsigned long long)hi);
        }
    }
    /* Only a range strictly inside one area splits it: room first, so that
     * nothing fails once pages start going. */
    struct run *split_runs = NULL;
    if (at == first + 1 && lo > p->areas[first].va &&
        hi < p->areas[first].va + p->areas[first].size) {
        split_runs = malloc(p->areas[first].nruns * sizeof(*split_runs));
        if (!split_runs || areas_reserve(p, 1) < 0) {
            pthread_mutex_unlock(&p->lock);
            free(split_runs);
            return vtio_fail(-ENOMEM, "munmap: no memory to split a mapping");
        }
    }
    for (at = first; at < p->nareas && p->areas[at].va < hi;)
        at = area_cut(p, at, lo, hi, split_runs);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

int vtio_process_virt_to_phys(struct vtio_process *p, const void *va, uint64_t *pa)
{
    if (!p || !pa)
        return vtio_fail(-EINVAL, "virt_to_phys: NULL process or result");
    uint64_t v = (uint64_t)(uintptr_t)va;
    size_t ai, ri;
    pthread_mutex_lock(&p->lock);
    bool found = lookup(p, v, &ai, &ri);
    if (found)
        *pa = run_pa_at(&p->areas[ai], ri, v);
    pthread_mutex_unlock(&p->lock);
    return found ? 0 : vtio_fail(-EFAULT, "virt_to_phys: %p is not mapped in %s", va, p->name);
}

void vtio_process_get_stats(struct vtio_process *p, struct vtio_process_stats *st)
{
    if (!p || !st)
        return;
    pthread_mutex_lock(&p->lock);
    *st = (struct vtio_process_stats){
        .mapped_bytes = p->mapped_bytes,
        .locked_bytes = p->locked_pages * PAGE,
        .memlock_limit = p->memlock_limit,
        .orphan_bytes = p->orphan_bytes,
    };
    pthread_mutex_unlock(&p->lock);
    st->open_files = vtio_file_table_open_files(p->files);
}
