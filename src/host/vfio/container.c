/*
 * The container file, /dev/vfio/vfio (Linux's drivers/vfio/container.c).
 *
 * A container is one set of DMA mappings shared by the groups set to it.
 * It answers three ioctls itself — GET_API_VERSION, CHECK_EXTENSION and
 * SET_IOMMU — and passes every other one to its IOMMU backend (type1), as
 * Linux does; before SET_IOMMU those fail with -EINVAL.  SET_IOMMU needs a
 * group in the container (the backend learns from it which IOMMU to make a
 * domain on) and attaches every group.  The backend is released with the
 * last group that leaves, so a container without groups maps nothing.
 *
 * The process that opened the container is the one whose memory MAP_DMA
 * pins and whose locked-memory limit it is charged to.
 *
 * References: the file holds one, each group set to it one.  The lock
 * covers the group list and the backend pointer; the backend does its own
 * locking for the mappings.
 */
#include <vtio/process.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "host/proc/proc_priv.h"
#include "host/vfio/vfio_core.h"
#include "util/error.h"

struct vfio_container {
    struct vtio_vfio *vfio;
    struct vtio_process *proc;
    atomic_uint refs;
    pthread_mutex_t lock;
    struct vfio_group *groups;         /* via container_next */
    const struct vfio_iommu_backend_ops *backend;
    void *backend_data;
};

/* The backends vtio has: type1 (the only one, as on x86 Linux). */
static const struct vfio_iommu_backend_ops *const backends[] = { &vfio_iommu_type1_ops };

void vfio_container_put(struct vfio_container *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    /* Groups hold references, so none is left; neither is a backend. */
    pthread_mutex_destroy(&c->lock);
    free(c);
}

bool vfio_container_has_iommu(struct vfio_container *c)
{
    pthread_mutex_lock(&c->lock);
    bool has = c->backend != NULL;
    pthread_mutex_unlock(&c->lock);
    return has;
}

int vfio_container_add_group(struct vfio_container *c, struct vfio_group *g)
{
    pthread_mutex_lock(&c->lock);
    int rc = c->backend ? c->backend->attach_group(c->backend_data, g->iommu_group) : 0;
    if (rc == 0) {
        g->container_next = c->groups;
        c->groups = g;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static void release_backend_locked(struct vfio_container *c)
{
    c->backend->release(c->backend_data);
    c->backend = NULL;
    c->backend_data = NULL;
}

void vfio_container_remove_group(struct vfio_container *c, struct vfio_group *g)
{
    pthread_mutex_lock(&c->lock);
    for (struct vfio_group **pp = &c->groups; *pp; pp = &(*pp)->container_next)
        if (*pp == g) {
            *pp = g->container_next;
            break;
        }
    g->container_next = NULL;
    if (c->backend) {
        c->backend->detach_group(c->backend_data, g->iommu_group);
        if (!c->groups)
            release_backend_locked(c);
    }
    pthread_mutex_unlock(&c->lock);
}

static long check_extension(struct vfio_container *c, unsigned long ext)
{
    long rc = 0;
    pthread_mutex_lock(&c->lock);
    if (c->backend) {
        rc = c->backend->check_extension(c->backend_data, ext);
    } else {
        for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]) && rc <= 0; i++)
            rc = backends[i]->check_extension(NULL, ext);
    }
    pthread_mutex_unlock(&c->lock);
    return rc > 0 ? rc : 0;
}

/* Opens the backend that offers `type` and attaches every group to it
 * (container lock held). */
static long set_iommu_locked(struct vfio_container *c, unsigned long type)
{
    if (c->backend)
        return vtio_fail(-EBUSY, "vfio: SET_IOMMU: the container already has an IOMMU");
    if (!c->groups)
        return vtio_fail(-EINVAL, "vfio: SET_IOMMU: set a group to the container first");
    const struct vfio_iommu_backend_ops *b = NULL;
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]) && !b; i++)
        if (backends[i]->check_extension(NULL, type) > 0)
            b = backends[i];
    if (!b)
        return vtio_fail(-ENODEV, "vfio: SET_IOMMU: no IOMMU backend of type %lu", type);
    void *data;
    int rc = b->open(c->vfio->host, c->proc, type, &data);
    if (rc < 0)
        return rc;
    struct vfio_group *g;
    for (g = c->groups; g; g = g->container_next) {
        rc = b->attach_group(data, g->iommu_group);
        if (rc < 0)
            break;
    }
    if (rc < 0) {
        for (struct vfio_group *h = c->groups; h != g; h = h->container_next)
            b->detach_group(data, h->iommu_group);
        b->release(data);
        return rc;
    }
    c->backend = b;
    c->backend_data = data;
    return 0;
}

static long container_ioctl(void *priv, struct vtio_process *p, unsigned long request,
                            unsigned long arg)
{
    (void)p;
    struct vfio_container *c = priv;
    switch (request) {
    case VFIO_GET_API_VERSION:
        return VFIO_API_VERSION;
    case VFIO_CHECK_EXTENSION:
        return check_extension(c, arg);
    case VFIO_SET_IOMMU: {
        pthread_mutex_lock(&c->lock);
        long rc = set_iommu_locked(c, arg);
        pthread_mutex_unlock(&c->lock);
        return rc;
    }
    default:
        break;
    }
    /* Under the container lock: the last group leaving releases the
     * backend, which must not happen under a MAP_DMA in progress. */
    pthread_mutex_lock(&c->lock);
    const struct vfio_iommu_backend_ops *b = c->backend;
    void *data = c->backend_data;
    long rc = b ? b->ioctl(data, request, arg)
                : vtio_fail(-EINVAL, "vfio: container ioctl %#lx before SET_IOMMU", request);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static void container_release(void *priv)
{
    vfio_container_put(priv);
}

static const struct vtio_file_ops container_fops = {
    .ioctl = container_ioctl,
    .release = container_release,
};

int vfio_container_open(struct vtio_vfio *v, struct vtio_process *p)
{
    struct vfio_container *c = calloc(1, sizeof(*c));
    if (!c)
        return vtio_fail(-ENOMEM, "vfio: out of memory");
    c->vfio = v;
    c->proc = p;
    atomic_init(&c->refs, 1);
    pthread_mutex_init(&c->lock, NULL);
    int fd = vtio_process_fd_install(p, &container_fops, c);
    if (fd < 0) {
        pthread_mutex_destroy(&c->lock);
        free(c);
    }
    return fd;
}

int vfio_container_get_fd(struct vtio_process *p, int fd, struct vfio_container **out)
{
    struct vtio_file *f = vtio_process_fget(p, fd);
    if (!f)
        return vtio_fail(-EBADF, "vfio: fd %d is not open", fd);
    int rc = 0;
    if (vtio_file_ops_of(f) == &container_fops) {
        *out = vtio_file_priv(f);
        atomic_fetch_add(&(*out)->refs, 1);
    } else {
        rc = vtio_fail(-EINVAL, "vfio: fd %d is not a VFIO container", fd);
    }
    vtio_file_put(f);
    return rc;
}
