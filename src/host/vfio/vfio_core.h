/*
 * The core's own objects (vfio.c, group.c, container.c): groups, bound
 * devices, containers.  The rest of VFIO sees vfio_priv.h only.
 */
#ifndef VTIO_HOST_VFIO_CORE_H
#define VTIO_HOST_VFIO_CORE_H

#include "host/vfio/vfio_priv.h"

/* A function bound to vfio-pci (registry lock). */
struct vfio_device {
    struct vfio_group *group;
    struct vtio_device *dev;
    struct vfio_pci_device *pci;
    unsigned open_count;               /* device files open on it */
};

/* An IOMMU group with devices bound to vfio-pci (registry lock for all). */
struct vfio_group {
    struct vtio_vfio *vfio;
    struct vtio_iommu_group *iommu_group;
    unsigned id;
    unsigned refs;                     /* bound devices + group file + device files */
    struct vfio_device **devs;         /* bound ones */
    unsigned n_devs;
    bool file_open;                    /* /dev/vfio/<id> is open (once at a time) */
    unsigned device_files;
    struct vfio_container *container;  /* set: the group is its owner's */
    struct vfio_group *container_next;
};

/* Drops a reference; frees the group at zero (registry lock held). */
void vfio_group_put_locked(struct vfio_group *g);
/* A group or device file closed: with none left open, the group leaves its
 * container (registry lock held). */
void vfio_group_file_closed_locked(struct vfio_group *g);
/* /dev/vfio/<id>.  @returns fd or -errno. */
int vfio_group_open(struct vtio_vfio *v, struct vtio_process *p, unsigned long id);
/* A device file for the bound device `name` of g (registry lock held; the
 * caller checked the container).  @returns fd or -errno. */
int vfio_device_open_locked(struct vfio_group *g, struct vtio_process *p, const char *name);

/* /dev/vfio/vfio.  @returns fd or -errno. */
int vfio_container_open(struct vtio_vfio *v, struct vtio_process *p);
/* The container behind fd of p, with a reference taken.  @returns 0;
 * -EBADF fd is not open; -EINVAL it is not a container. */
int vfio_container_get_fd(struct vtio_process *p, int fd, struct vfio_container **out);
void vfio_container_put(struct vfio_container *c);
/* Adds g (claimed by the caller) to c, attaching it to c's backend if c
 * has one.  @returns 0; -errno (g not added). */
int vfio_container_add_group(struct vfio_container *c, struct vfio_group *g);
/* Takes g out of c: detached from the backend (the backend is released
 * with the last group, as Linux does). */
void vfio_container_remove_group(struct vfio_container *c, struct vfio_group *g);
/* Whether c has an IOMMU backend (SET_IOMMU done). */
bool vfio_container_has_iommu(struct vfio_container *c);

#endif
