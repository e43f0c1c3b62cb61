/*
 * The inside of a process, shared by its two halves:
 *  - process.c, the address space: areas of host mappings of machine RAM,
 *    mmap, munmap, virt_to_phys, create and exit;
 *  - pin.c, the records of the machine RAM pages the process owns: their
 *    states and pin counts, the orphans that outlive munmap, and the
 *    locked-memory accounting of pins.
 * One mutex guards both (see process.c for the lock order).  Each half
 * reaches the other's state only through the calls below.  Not an
 * interface beyond src/host/proc/.
 */
#ifndef VTIO_HOST_PROC_PROCESS_INTERNAL_H
#define VTIO_HOST_PROC_PROCESS_INTERNAL_H

#include <vtio/process.h>

#include <pthread.h>
#include <stddef.h>

#define PAGE VTIO_PAGE_SIZE
#define HUGE VTIO_HUGE_SIZE

struct area;                  /* process.c */
struct pfn_chunk;             /* pin.c */
struct vtio_file_table;

struct vtio_process {
    struct vtio_host *host;
    char name[32];
    struct vtio_file_table *files;

    pthread_mutex_t lock;     /* everything below */
    /* the address space (process.c) */
    struct area *areas;       /* sorted by va */
    size_t nareas, areas_cap;
    uint64_t mapped_bytes;
    bool exited;              /* destroy ran; freed at the last unpin */
    /* the page records (pin.c) */
    struct pfn_chunk **chunks;   /* by pfn >> CHUNK_SHIFT; NULL: none yet */
    uint64_t nchunks;
    uint64_t locked_pages, orphan_bytes;
    uint64_t memlock_limit;
    bool cap_ipc_lock;
};

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* ---- page records (pin.c), for the address space */

/* The empty records of a new process: room to index every pfn of machine
 * RAM.  @returns 0; -ENOMEM. */
int proc_pages_init(struct vtio_process *p);
void proc_pages_destroy(struct vtio_process *p);
/* Makes sure [pfn, pfn + n) has records (under lock).  Call it for all of
 * a new area's pages before proc_pages_mapped, which cannot fail.
 * @returns 0; -ENOMEM. */
int proc_pages_prepare(struct vtio_process *p, uint64_t pfn, uint64_t n);
/* [pfn, pfn + n) are now owned and in an area (under lock). */
void proc_pages_mapped(struct vtio_process *p, uint64_t pfn, uint64_t n, bool huge);
/* [pfn, pfn + n) have left the address space (under lock): the unpinned
 * ones go back to the page allocator, the pinned ones become orphans. */
void proc_pages_unmapped(struct vtio_process *p, uint64_t pfn, uint64_t n);
/* Gives a block back to the host's page allocator (logged if refused). */
void proc_page_free(struct vtio_process *p, uint64_t pa, unsigned order);

/* ---- the address space (process.c), for the page records */

/* Where a lookup found its address (an area's run), meaningful while the
 * lock is held.  Any value is safe, as it is only a guess; { .area =
 * SIZE_MAX } guesses nothing. */
struct proc_va_cursor {
    size_t area, run;
};
/* The machine RAM behind user address va (under lock): *pa, and in *len
 * the bytes from va to the end of its run, all physically contiguous.  The
 * run after *cur's is tried first (O(1) for a walk run by run; a binary
 * search otherwise); *cur then names va's run.
 * @returns false: va is not mapped. */
bool proc_va_run(const struct vtio_process *p, uint64_t va, struct proc_va_cursor *cur,
                 uint64_t *pa, uint64_t *len);
/* Frees an exited process (its last pin has gone; not under lock). */
void proc_free(struct vtio_process *p);

#endif
