/*
 * process: a userspace program on the host (Linux's mm_struct and file
 * table, for one program).
 *
 * A userspace driver (DPDK, SPDK, QEMU) runs in a process.  Its memory is
 * anonymous memory the host backs with machine RAM pages, and the program
 * reaches it through ordinary pointers: vtio_process_mmap() returns a host
 * pointer whose pages ARE machine RAM pages (each is the machine's memfd
 * mapped at that page's offset, as a CPU page table maps a user page), so a
 * device that DMAs to the physical page and the program that reads the
 * pointer see the same bytes.  Pages are 4 KiB, or 2 MiB with
 * VTIO_PROCESS_MAP_HUGE (hugetlbfs), each 2 MiB page one aligned order-9
 * block of machine RAM.  Memory is populated and zeroed when mapped
 * (MAP_POPULATE), so every page has a physical address at once.
 *
 * Pinning (pin_user_pages with FOLL_LONGTERM) is how VFIO keeps the pages
 * of a DMA mapping in place: a pinned page is neither freed nor reused
 * until its last pin goes, even if the program unmaps it meanwhile (it then
 * leaves the program's address space at once and machine RAM when unpinned).
 * Pinned pages count against the process's locked-memory limit
 * (RLIMIT_MEMLOCK): a page counts once however many times it is pinned.
 * The pin calls are for host software (src/host/proc/proc_priv.h).
 *
 * The process also holds the file descriptors that VFIO hands out
 * (include/vtio/vfio.h); destroying a process closes them first (which
 * unmaps and unpins what they held), then frees its memory: a program's
 * exit.
 *
 * Threads: every call is thread-safe (a lock per process for its address
 * space and pin counts, another for its file table).  Memory returned
 * by mmap may be used from any thread.  destroy must not race with other
 * calls on the same process.
 */
#ifndef VTIO_PROCESS_H
#define VTIO_PROCESS_H

#include <vtio/common.h>

struct vtio_host;
struct vtio_process;

/* vtio_process_mmap flags */
#define VTIO_PROCESS_MAP_HUGE 0x1u       /* 2 MiB pages (MAP_HUGETLB) */

/* Linux's default RLIMIT_MEMLOCK (8 MiB since 5.16), and no limit. */
#define VTIO_PROCESS_MEMLOCK_DEFAULT (8ull << 20)
#define VTIO_PROCESS_MEMLOCK_INFINITY (~0ull)

struct vtio_process_stats {
    uint64_t mapped_bytes;      /* in the address space now */
    uint64_t locked_bytes;      /* pinned pages, each counted once (locked_vm) */
    uint64_t memlock_limit;     /* bytes */
    uint64_t orphan_bytes;      /* unmapped by the program, still pinned */
    unsigned open_files;        /* file descriptors */
};

/*
 * Creates a process on h (name for messages: "qemu", "spdk").  Its
 * locked-memory limit starts at VTIO_PROCESS_MEMLOCK_DEFAULT.
 * @returns 0 and *out; -EINVAL h or out NULL; -ENOMEM.
 */
VTIO_API int vtio_process_create(struct vtio_host *h, const char *name,
                                 struct vtio_process **out);
/* The program exits: closes its files, then unmaps its memory.  Pages still
 * pinned by something that outlives the files are freed at their last
 * unpin.  NULL is a no-op. */
VTIO_API void vtio_process_destroy(struct vtio_process *p);
VTIO_API const char *vtio_process_name(const struct vtio_process *p);
VTIO_API struct vtio_host *vtio_process_host(const struct vtio_process *p);

/*
 * Maps size bytes of zeroed anonymous memory, populated with machine RAM
 * (4 KiB pages, or 2 MiB pages with VTIO_PROCESS_MAP_HUGE), and stores its
 * address in *addr (aligned to the page size).
 * @returns 0; -EINVAL size 0 or not a multiple of the page size, unknown
 * flags, addr NULL; -ENOMEM machine RAM (or host address space) ran out
 * (nothing is mapped then).
 */
VTIO_API int vtio_process_mmap(struct vtio_process *p, uint64_t size, unsigned flags,
                               void **addr);
/*
 * Unmaps [addr, addr + size), which may be part of a mapping (aligned to its
 * page size) or span several; holes in the range are ignored, as munmap(2)
 * does.  Unpinned pages go back to machine RAM now, pinned ones at their
 * last unpin.
 * @returns 0; -EINVAL addr or size not aligned to the page size of a mapping
 * it cuts, or size 0.
 */
VTIO_API int vtio_process_munmap(struct vtio_process *p, void *addr, uint64_t size);

/*
 * The physical address behind a byte of the process's memory
 * (/proc/self/pagemap).  @returns 0 and *pa; -EFAULT va is not mapped.
 */
VTIO_API int vtio_process_virt_to_phys(struct vtio_process *p, const void *va, uint64_t *pa);

/* setrlimit(RLIMIT_MEMLOCK): bytes, or VTIO_PROCESS_MEMLOCK_INFINITY.  A
 * limit below what is locked now is allowed (new pins then fail).
 * @returns 0; -EINVAL p NULL. */
VTIO_API int vtio_process_set_memlock_limit(struct vtio_process *p, uint64_t bytes);
/* CAP_IPC_LOCK: pins are still counted but never refused for the limit. */
VTIO_API void vtio_process_set_cap_ipc_lock(struct vtio_process *p, bool on);

VTIO_API void vtio_process_get_stats(struct vtio_process *p, struct vtio_process_stats *st);

#endif
