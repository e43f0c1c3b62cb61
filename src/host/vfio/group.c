/*
 * The group file, /dev/vfio/<id> (Linux's drivers/vfio/group.c).
 *
 * A group is viable when every device in its IOMMU group is bound to
 * vfio-pci or to nothing: then no host driver shares the group's IOMMU
 * context with the program.  SET_CONTAINER enforces it by claiming the
 * IOMMU group's DMA ownership (iommu.h), which fails with -EPERM while a
 * DMA-API driver is bound and, once held, refuses such a driver until the
 * group leaves its container.  From the claim to the backend's attach the
 * group's DMA is blocked.
 *
 * One group file may be open at a time (-EBUSY, as Linux).  The group stays
 * in its container while the group file or any of its device files is
 * open; the last close takes it out (and with the container's last group,
 * the container's mappings go).
 */
#include <vtio/device.h>
#include <vtio/iommu.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "host/device_priv.h"
#include "host/proc/proc_priv.h"
#include "host/vfio/vfio_core.h"
#include "util/error.h"

/* Every device of the IOMMU group is bound to a driver that manages DMA
 * itself (vfio-pci) or to nothing. */
static bool group_viable(struct vfio_group *g)
{
    unsigned n = vtio_iommu_group_devices(g->iommu_group, NULL, 0);
    struct vtio_device **devs = calloc(n ? n : 1, sizeof(*devs));
    if (!devs)
        return false;          /* cannot tell: not viable, which is safe */
    vtio_iommu_group_devices(g->iommu_group, devs, n);
    bool viable = true;
    for (unsigned i = 0; i < n && viable; i++) {
        pthread_mutex_lock(&devs[i]->lock);
        viable = !atomic_load(&devs[i]->driver) || devs[i]->driver_managed_dma;
        pthread_mutex_unlock(&devs[i]->lock);
    }
    free(devs);
    return viable;
}

static long get_status(struct vfio_group *g, unsigned long arg)
{
    struct vfio_group_status *st = (void *)arg;
    if (!st || st->argsz < sizeof(*st))
        return vtio_fail(-EINVAL, "vfio: GROUP_GET_STATUS: argsz %u < %zu",
                         st ? st->argsz : 0, sizeof(*st));
    st->flags = 0;
    if (group_viable(g))
        st->flags |= VFIO_GROUP_FLAGS_VIABLE;
    if (g->container)
        st->flags |= VFIO_GROUP_FLAGS_CONTAINER_SET;
    return 0;
}

static long set_container(struct vfio_group *g, struct vtio_process *p, unsigned long arg)
{
    const int *fdp = (const int *)arg;
    if (!fdp)
        return vtio_fail(-EFAULT, "vfio: GROUP_SET_CONTAINER needs a pointer to an fd");
    if (g->container)
        return vtio_fail(-EINVAL, "vfio: group %u is already in a container", g->id);
    struct vfio_container *c;
    int rc = vfio_container_get_fd(p, *fdp, &c);
    if (rc < 0)
        return rc;
    rc = vtio_iommu_group_claim_dma_owner(g->iommu_group, g);
    if (rc < 0)
        rc = vtio_fail(rc, "vfio: group %u is not viable (%s)", g->id, vtio_last_error());
    if (rc == 0) {
        rc = vfio_container_add_group(c, g);
        if (rc < 0)
            vtio_iommu_group_release_dma_owner(g->iommu_group, g);
    }
    if (rc < 0) {
        vfio_container_put(c);
        return rc;
    }
    g->container = c;          /* keeps the reference taken above */
    return 0;
}

static void unset_container_locked(struct vfio_group *g)
{
    struct vfio_container *c = g->container;
    vfio_container_remove_group(c, g);
    vtio_iommu_group_release_dma_owner(g->iommu_group, g);
    g->container = NULL;
    vfio_container_put(c);
}

static long unset_container(struct vfio_group *g)
{
    if (!g->container)
        return vtio_fail(-EINVAL, "vfio: group %u is in no container", g->id);
    if (g->device_files)
        return vtio_fail(-EBUSY, "vfio: group %u has %u device file(s) open", g->id,
                         g->device_files);
    unset_container_locked(g);
    return 0;
}

static long get_device_fd(struct vfio_group *g, struct vtio_process *p, unsigned long arg)
{
    const char *name = (const char *)arg;
    if (!name)
        return vtio_fail(-EFAULT, "vfio: GROUP_GET_DEVICE_FD needs a device name");
    if (!g->container || !vfio_container_has_iommu(g->container))
        return vtio_fail(-EINVAL, "vfio: group %u: set a container and its IOMMU first",
                         g->id);
    return vfio_device_open_locked(g, p, name);
}

static long group_ioctl(void *priv, struct vtio_process *p, unsigned long request,
                        unsigned long arg)
{
    struct vfio_group *g = priv;
    pthread_mutex_lock(&g->vfio->lock);
    long rc;
    switch (request) {
    case VFIO_GROUP_GET_STATUS:      rc = get_status(g, arg); break;
    case VFIO_GROUP_SET_CONTAINER:   rc = set_container(g, p, arg); break;
    case VFIO_GROUP_UNSET_CONTAINER: rc = unset_container(g); break;
    case VFIO_GROUP_GET_DEVICE_FD:   rc = get_device_fd(g, p, arg); break;
    default:
        rc = vtio_fail(-ENOTTY, "vfio: unknown group ioctl %#lx", request);
    }
    pthread_mutex_unlock(&g->vfio->lock);
    return rc;
}

void vfio_group_file_closed_locked(struct vfio_group *g)
{
    if (!g->file_open && !g->device_files && g->container)
        unset_container_locked(g);
}

static void group_release(void *priv)
{
    struct vfio_group *g = priv;
    struct vtio_vfio *v = g->vfio;
    pthread_mutex_lock(&v->lock);
    g->file_open = false;
    vfio_group_file_closed_locked(g);
    vfio_group_put_locked(g);
    pthread_mutex_unlock(&v->lock);
}

static const struct vtio_file_ops group_fops = {
    .ioctl = group_ioctl,
    .release = group_release,
};

int vfio_group_open(struct vtio_vfio *v, struct vtio_process *p, unsigned long id)
{
    pthread_mutex_lock(&v->lock);
    struct vfio_group *g = id < v->n_groups ? v->groups[id] : NULL;
    int rc;
    if (!g)
        rc = vtio_fail(-ENOENT, "vfio: /dev/vfio/%lu: no device of that group is bound to "
                       "vfio-pci", id);
    else if (g->file_open)
        rc = vtio_fail(-EBUSY, "vfio: /dev/vfio/%lu is already open", id);
    else
        rc = vtio_process_fd_install(p, &group_fops, g);
    if (rc >= 0) {
        g->file_open = true;
        g->refs++;
    }
    pthread_mutex_unlock(&v->lock);
    return rc;
}
