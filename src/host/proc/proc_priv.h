/*
 * What host software (VFIO) does with a process: pin its pages and keep its
 * files (Linux's pin_user_pages and struct file).  Not part of the public
 * API; the process itself is include/vtio/process.h.
 *
 * Pinning.  vtio_process_pin_run pins, from a page-aligned user address,
 * the longest run of pages that are consecutive in machine RAM too (at most
 * max_pages 4 KiB pages), as Linux's vfio_pin_pages_remote hands type1 one
 * physically contiguous run per call; vtio_process_pin_runs pins several
 * successive runs under one lock, for memory broken into many.  Every
 * 4 KiB page has its own pin count; a page whose count goes 0 -> 1 is
 * charged to the process's locked memory, 1 -> 0 uncharged, so a page
 * pinned twice counts once.  Unpinning names a run by physical address, as
 * it was pinned (a run may be unpinned in pieces).  A page the program
 * unmapped while pinned stays allocated until its last unpin.
 *
 * Files.  A file is an object behind a descriptor: ops + private data + a
 * reference count.  The descriptor holds one reference, a call in progress
 * another (so a close racing an ioctl frees nothing under it), and a
 * mapping of the file (vtio_process_file_mmap) a third, as on Linux, where
 * an mmap keeps its file open after close(2).  release runs when the last
 * reference goes.  Descriptors are the lowest free numbers from 0; they
 * name files of this process only.
 */
#ifndef VTIO_HOST_PROC_PRIV_H
#define VTIO_HOST_PROC_PRIV_H

#include <vtio/mmio.h>
#include <vtio/process.h>

#include <sys/types.h>

#define VTIO_PROCESS_MAX_FILES 1024

/* ---- pinning */

/*
 * Pins the pages from vaddr on, up to max_pages, that form one physically
 * contiguous run: stores the run's first physical address in *pa and
 * returns its length in pages (>= 1).
 * @returns pages; -EINVAL vaddr not page-aligned or max_pages 0; -EFAULT
 * vaddr is not mapped; -ENOMEM the new pins would take locked memory over
 * the limit without CAP_IPC_LOCK (message "RLIMIT_MEMLOCK (<limit>)
 * exceeded"; nothing is pinned then).
 */
long vtio_process_pin_run(struct vtio_process *p, uint64_t vaddr, uint64_t max_pages,
                          uint64_t *pa);
/* Drops one pin from each of the npages pages from physical pa, pinned by
 * vtio_process_pin_run of p. */
void vtio_process_unpin_run(struct vtio_process *p, uint64_t pa, uint64_t npages);

/* Pages pinned together: physically contiguous. */
struct vtio_pin_run {
    uint64_t pa;
    uint64_t pages;
};

/*
 * Pins the pages from vaddr on, up to max_pages, as successive physically
 * contiguous runs, each the one vtio_process_pin_run would pin there, at
 * most max_runs of them, under one lock: runs[0 .. *nruns) in address
 * order.  It stops early at a page it cannot pin (not mapped, or over the
 * memlock limit), keeping what it pinned: the next call, from there, gets
 * the error.
 * @returns pages pinned (>= 1); the errors of vtio_process_pin_run when
 * not even the first run can be pinned (*nruns 0, nothing pinned);
 * -EINVAL also for runs or nruns NULL or max_runs 0.
 */
long vtio_process_pin_runs(struct vtio_process *p, uint64_t vaddr, uint64_t max_pages,
                           struct vtio_pin_run *runs, unsigned max_runs, unsigned *nruns);
/* vtio_process_unpin_run of each of runs[0 .. n), under one lock. */
void vtio_process_unpin_runs(struct vtio_process *p, const struct vtio_pin_run *runs,
                             size_t n);

/* ---- files */

struct vtio_file;

struct vtio_file_ops {
    /* All optional but release; a missing one answers -ENOTTY (ioctl),
     * -EINVAL (read, write) or -ENODEV (mmap). */
    long (*ioctl)(void *priv, struct vtio_process *p, unsigned long request,
                  unsigned long arg);
    ssize_t (*read)(void *priv, void *buf, size_t count, uint64_t off);
    ssize_t (*write)(void *priv, const void *buf, size_t count, uint64_t off);
    /* Maps [off, off + len) of the file: a register window for the caller's
     * MMIO accessors.  prot: VTIO_PROT_READ | VTIO_PROT_WRITE. */
    int (*mmap)(void *priv, uint64_t off, uint64_t len, unsigned prot,
                struct vtio_mmio *out);
    /* The last reference is gone: free priv. */
    void (*release)(void *priv);
};

#define VTIO_PROT_READ  0x1u
#define VTIO_PROT_WRITE 0x2u

/* A new descriptor for a file made of ops/priv (one reference: the
 * descriptor's).  On failure release is NOT called.
 * @returns fd; -EMFILE the table is full; -ENOMEM. */
int vtio_process_fd_install(struct vtio_process *p, const struct vtio_file_ops *ops,
                            void *priv);
/* Takes a reference on fd's file.  @returns it; NULL (-EBADF in
 * vtio_last_error) no such descriptor. */
struct vtio_file *vtio_process_fget(struct vtio_process *p, int fd);
void vtio_file_put(struct vtio_file *f);
const struct vtio_file_ops *vtio_file_ops_of(const struct vtio_file *f);
void *vtio_file_priv(const struct vtio_file *f);
/* @returns 0; -EBADF. */
int vtio_process_fd_close(struct vtio_process *p, int fd);

/* The calls on a descriptor (what the syscalls do: fget, call, put). */
long vtio_process_ioctl(struct vtio_process *p, int fd, unsigned long request,
                        unsigned long arg);
ssize_t vtio_process_pread(struct vtio_process *p, int fd, void *buf, size_t count,
                           uint64_t off);
ssize_t vtio_process_pwrite(struct vtio_process *p, int fd, const void *buf, size_t count,
                            uint64_t off);
/* mmap keeps a reference on the file until vtio_process_file_munmap (or
 * process exit).  @returns 0; -EBADF; what the file's mmap returns. */
int vtio_process_file_mmap(struct vtio_process *p, int fd, uint64_t off, uint64_t len,
                           unsigned prot, struct vtio_mmio *out);
/* @returns 0; -EINVAL m is not a mapping of this process. */
int vtio_process_file_munmap(struct vtio_process *p, const struct vtio_mmio *m);

#endif
