/*
 * A process's file table: descriptors, refcounted files, file mappings
 * (Linux's files_struct, struct file and the VMAs of a VM_IO mapping).
 *
 * A file is {ops, priv, refs}.  References: one per descriptor naming it,
 * one per call in progress (fget .. put), one per mapping made through it.
 * The count is atomic, so a put needs no lock; the put that takes it to
 * zero runs release and frees the file, on the putter's thread and with no
 * lock of ours held (release is VFIO's teardown: it unpins, which takes the
 * process's address-space lock, and may close other things).
 *
 * The table: fd -> file for fds in [0, VTIO_PROCESS_MAX_FILES), a new
 * descriptor taking the lowest free number (as POSIX requires), and a list
 * of file mappings {register window -> file}.  One mutex guards both; it is
 * held only to look up, insert or remove entries and to take a reference,
 * never across a file's own calls, so a file's ioctl may open or close
 * descriptors of the same process.  Lookup and reference are one step under
 * the lock: a close racing an fget either comes first (EBADF) or finds the
 * reference already taken (the file outlives the call).
 *
 * Invariant: open == number of non-NULL slots; each slot and each mapping
 * holds exactly one reference on its file.
 */
#include "host/proc/file_table.h"
#include "host/proc/proc_priv.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "util/error.h"

struct vtio_file {
    const struct vtio_file_ops *ops;
    void *priv;
    atomic_uint refs;
};

struct file_mapping {
    struct vtio_mmio window;
    struct vtio_file *file;
    struct file_mapping *next;
};

struct vtio_file_table {
    pthread_mutex_t lock;
    struct vtio_file *fd[VTIO_PROCESS_MAX_FILES];
    unsigned open;
    unsigned lowest_free;              /* no free slot below it */
    struct file_mapping *mappings;
};

/* ---- files */

static void file_get(struct vtio_file *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void vtio_file_put(struct vtio_file *f)
{
    if (!f)
        return;
    /* acq_rel: everything done through earlier references happens before
     * release sees priv. */
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1) {
        f->ops->release(f->priv);
        free(f);
    }
}

const struct vtio_file_ops *vtio_file_ops_of(const struct vtio_file *f)
{
    return f ? f->ops : NULL;
}

void *vtio_file_priv(const struct vtio_file *f)
{
    return f ? f->priv : NULL;
}

/* ---- the table */

struct vtio_file_table *vtio_file_table_create(void)
{
    struct vtio_file_table *t = calloc(1, sizeof(*t));
    if (!t) {
        vtio_fail(-ENOMEM, "process: no memory for a file table");
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

void vtio_file_table_close_all(struct vtio_file_table *t)
{
    for (;;) {
        /* Take entries out under the lock, put them outside it: a release
         * may close descriptors or mappings of this table itself. */
        struct vtio_file *f = NULL;
        struct file_mapping *m = NULL;
        pthread_mutex_lock(&t->lock);
        for (unsigned fd = 0; fd < VTIO_PROCESS_MAX_FILES && !f; fd++) {
            f = t->fd[fd];
            t->fd[fd] = NULL;
        }
        if (f) {
            t->open--;
        } else if ((m = t->mappings) != NULL) {
            t->mappings = m->next;
        }
        t->lowest_free = 0;
        pthread_mutex_unlock(&t->lock);
        if (!f && !m)
            return;
        vtio_file_put(f);
        if (m) {
            vtio_file_put(m->file);
            free(m);
        }
    }
}

void vtio_file_table_destroy(struct vtio_file_table *t)
{
    if (!t)
        return;
    vtio_file_table_close_all(t);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

unsigned vtio_file_table_open_files(struct vtio_file_table *t)
{
    pthread_mutex_lock(&t->lock);
    unsigned n = t->open;
    pthread_mutex_unlock(&t->lock);
    return n;
}

/* ---- descriptors */

int vtio_process_fd_install(struct vtio_process *p, const struct vtio_file_ops *ops,
                            void *priv)
{
    if (!p || !ops || !ops->release)
        return vtio_fail(-EINVAL, "fd_install: NULL process, ops or release");
    struct vtio_file *f = malloc(sizeof(*f));
    if (!f)
        return vtio_fail(-ENOMEM, "fd_install: no memory for a file");
    *f = (struct vtio_file){ .ops = ops, .priv = priv };
    atomic_init(&f->refs, 1);

    struct vtio_file_table *t = vtio_process_file_table(p);
    int fd = -1;
    pthread_mutex_lock(&t->lock);
    for (unsigned i = t->lowest_free; i < VTIO_PROCESS_MAX_FILES; i++) {
        if (!t->fd[i]) {
            t->fd[i] = f;
            t->open++;
            t->lowest_free = i + 1;
            fd = (int)i;
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    if (fd < 0) {
        free(f);
        return vtio_fail(-EMFILE, "fd_install: %s has %u files open",
                         vtio_process_name(p), VTIO_PROCESS_MAX_FILES);
    }
    return fd;
}

static bool fd_in_range(int fd)
{
    return fd >= 0 && fd < VTIO_PROCESS_MAX_FILES;
}

struct vtio_file *vtio_process_fget(struct vtio_process *p, int fd)
{
    struct vtio_file *f = NULL;
    if (p && fd_in_range(fd)) {
        struct vtio_file_table *t = vtio_process_file_table(p);
        pthread_mutex_lock(&t->lock);
        f = t->fd[fd];
        if (f)
            file_get(f);
        pthread_mutex_unlock(&t->lock);
    }
    if (!f)
        vtio_fail(-EBADF, "fd %d is not an open file", fd);
    return f;
}

int vtio_process_fd_close(struct vtio_process *p, int fd)
{
    struct vtio_file *f = NULL;
    if (p && fd_in_range(fd)) {
        struct vtio_file_table *t = vtio_process_file_table(p);
        pthread_mutex_lock(&t->lock);
        f = t->fd[fd];
        if (f) {
            t->fd[fd] = NULL;
            t->open--;
            if ((unsigned)fd < t->lowest_free)
                t->lowest_free = (unsigned)fd;
        }
        pthread_mutex_unlock(&t->lock);
    }
    if (!f)
        return vtio_fail(-EBADF, "close: fd %d is not an open file", fd);
    vtio_file_put(f);
    return 0;
}

/* ---- calls on a descriptor: fget, call, put */

long vtio_process_ioctl(struct vtio_process *p, int fd, unsigned long request,
                        unsigned long arg)
{
    struct vtio_file *f = vtio_process_fget(p, fd);
    if (!f)
        return -EBADF;
    long rc = f->ops->ioctl ? f->ops->ioctl(f->priv, p, request, arg)
                            : vtio_fail(-ENOTTY, "ioctl %#lx: fd %d has no ioctls",
                                        request, fd);
    vtio_file_put(f);
    return rc;
}

ssize_t vtio_process_pread(struct vtio_process *p, int fd, void *buf, size_t count,
                           uint64_t off)
{
    struct vtio_file *f = vtio_process_fget(p, fd);
    if (!f)
        return -EBADF;
    ssize_t rc = f->ops->read ? f->ops->read(f->priv, buf, count, off)
                              : vtio_fail(-EINVAL, "pread: fd %d cannot be read", fd);
    vtio_file_put(f);
    return rc;
}

ssize_t vtio_process_pwrite(struct vtio_process *p, int fd, const void *buf, size_t count,
                            uint64_t off)
{
    struct vtio_file *f = vtio_process_fget(p, fd);
    if (!f)
        return -EBADF;
    ssize_t rc = f->ops->write ? f->ops->write(f->priv, buf, count, off)
                               : vtio_fail(-EINVAL, "pwrite: fd %d cannot be written", fd);
    vtio_file_put(f);
    return rc;
}

/* ---- file mappings */

int vtio_process_file_mmap(struct vtio_process *p, int fd, uint64_t off, uint64_t len,
                           unsigned prot, struct vtio_mmio *out)
{
    if (!out)
        return vtio_fail(-EINVAL, "mmap: NULL result");
    struct vtio_file *f = vtio_process_fget(p, fd);
    if (!f)
        return -EBADF;
    int rc;
    struct file_mapping *m = NULL;
    if (!f->ops->mmap)
        rc = vtio_fail(-ENODEV, "mmap: fd %d cannot be mapped", fd);
    else if (!(m = malloc(sizeof(*m))))
        rc = vtio_fail(-ENOMEM, "mmap: no memory for a mapping");
    else
        rc = f->ops->mmap(f->priv, off, len, prot, &m->window);
    if (rc < 0) {
        free(m);
        vtio_file_put(f);
        return rc;
    }
    /* The reference fget took is the mapping's from now on. */
    struct vtio_file_table *t = vtio_process_file_table(p);
    m->file = f;
    pthread_mutex_lock(&t->lock);
    m->next = t->mappings;
    t->mappings = m;
    pthread_mutex_unlock(&t->lock);
    *out = m->window;
    return 0;
}

static bool same_window(const struct vtio_mmio *a, const struct vtio_mmio *b)
{
    return a->mem == b->mem && a->base == b->base && a->size == b->size;
}

int vtio_process_file_munmap(struct vtio_process *p, const struct vtio_mmio *m)
{
    struct file_mapping *found = NULL;
    if (p && m) {
        struct vtio_file_table *t = vtio_process_file_table(p);
        pthread_mutex_lock(&t->lock);
        for (struct file_mapping **pp = &t->mappings; *pp; pp = &(*pp)->next) {
            if (same_window(&(*pp)->window, m)) {
                found = *pp;
                *pp = found->next;
                break;
            }
        }
        pthread_mutex_unlock(&t->lock);
    }
    if (!found)
        return vtio_fail(-EINVAL, "munmap: not a file mapping of this process");
    vtio_file_put(found->file);
    free(found);
    return 0;
}
