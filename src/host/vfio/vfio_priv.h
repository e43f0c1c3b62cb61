/*
 * VFIO's insides (include/vtio/vfio.h is the interface).  Not public.
 *
 * Three layers, as in Linux's drivers/vfio:
 *
 *   vfio.c, container.c, group.c   the core: the per-host registry of
 *       groups, the files behind /dev/vfio/vfio and /dev/vfio/<id>, the
 *       viability rule and DMA ownership, device files;
 *   type1.c, type1_dma.c, type1_dirty.c   the IOMMU backend a container
 *       uses (vfio_iommu_backend_ops): the DMA mappings of the program's
 *       memory, and their dirty tracking;
 *   pci.c, pci_config.c, pci_irq.c  vfio-pci: what a device file does.
 *
 * Lifetimes.  A vfio_group exists while a device of its IOMMU group is
 * bound to vfio-pci.  A container lives while its file or a group set to
 * it refers to it.  A group's container stays set while the group file or
 * one of its device files is open.  Device files hold the group.
 *
 * Locking (outer to inner): vtio_vfio.lock (registry, binding) ->
 * vfio_container.lock (its groups, its backend) -> vfio_group.lock.  The
 * backend serialises its own mappings; vfio-pci serialises each device.
 */
#ifndef VTIO_HOST_VFIO_PRIV_H
#define VTIO_HOST_VFIO_PRIV_H

#include <vtio/vfio.h>

#include <pthread.h>

struct vtio_host;
struct vtio_iommu_group;
struct vfio_container;
struct vfio_group;
struct vfio_pci_device;

/* ---- the core */

struct vtio_vfio {
    struct vtio_host *host;
    pthread_mutex_t lock;
    struct vfio_group **groups;        /* by IOMMU group id; NULL: none bound */
    unsigned n_groups;
};

/* Boot and shutdown (host.c): the registry, empty.  @returns 0; -ENOMEM. */
int vtio_vfio_init(struct vtio_host *h);
void vtio_vfio_exit(struct vtio_host *h);

/* ---- IOMMU backend (Linux's vfio_iommu_driver_ops) */

struct vfio_iommu_backend_ops {
    const char *name;
    /* VFIO_CHECK_EXTENSION: 1 if the backend offers ext, else 0.  data is
     * NULL before SET_IOMMU. */
    long (*check_extension)(void *data, unsigned long ext);
    /* SET_IOMMU with type (an extension the backend offers).  Pins are
     * charged to proc.  @returns 0 and *data; -errno. */
    int (*open)(struct vtio_host *h, struct vtio_process *proc, unsigned long type,
                void **data);
    /* Unmaps and unpins everything; groups are already detached. */
    void (*release)(void *data);
    /* Every container ioctl but the three the core answers. */
    long (*ioctl)(void *data, unsigned long request, unsigned long arg);
    /* Puts g's devices behind the container's mappings (a domain of the
     * group's IOMMU, replaying what is mapped).  @returns 0; -errno, with g
     * back where it was. */
    int (*attach_group)(void *data, struct vtio_iommu_group *g);
    void (*detach_group)(void *data, struct vtio_iommu_group *g);
};

extern const struct vfio_iommu_backend_ops vfio_iommu_type1_ops;

/* ---- vfio-pci (pci.c): one per function bound to vfio-pci */

/* At bind / unbind. */
int vfio_pci_device_create(struct vtio_device *dev, struct vfio_pci_device **out);
void vfio_pci_device_destroy(struct vfio_pci_device *vd);
/* First open of the device and last close (Linux's open_device /
 * close_device): enable resets the function and turns memory decoding on;
 * disable frees every interrupt, turns bus mastering off and resets the
 * function, so nothing a program set up outlives its last file. */
int vfio_pci_enable(struct vfio_pci_device *vd);
void vfio_pci_disable(struct vfio_pci_device *vd);
/* The device file's calls. */
long vfio_pci_ioctl(struct vfio_pci_device *vd, unsigned long request, unsigned long arg);
ssize_t vfio_pci_rw(struct vfio_pci_device *vd, void *buf, size_t count, uint64_t off,
                    bool write);
int vfio_pci_mmap(struct vfio_pci_device *vd, uint64_t off, uint64_t len, unsigned prot,
                  struct vtio_mmio *out);

/* The offset of region `index` in the device file (vfio-pci's layout). */
#define VFIO_PCI_OFFSET_SHIFT 40
#define VFIO_PCI_INDEX_TO_OFFSET(index) ((uint64_t)(index) << VFIO_PCI_OFFSET_SHIFT)
#define VFIO_PCI_OFFSET_TO_INDEX(off) ((off) >> VFIO_PCI_OFFSET_SHIFT)
#define VFIO_PCI_OFFSET_MASK (((uint64_t)1 << VFIO_PCI_OFFSET_SHIFT) - 1)

/* ---- helpers for info structures with capability chains (vfio.c) */

/* A capability chain being built (vfio_info_add_capability in Linux). */
struct vfio_info_cap {
    uint8_t *buf;
    size_t size;
};
/* Appends a capability of `size` bytes (header included) and returns it
 * zeroed with id/version set and linked from the previous one; NULL on
 * -ENOMEM.  Offsets in the chain are relative to the chain's start. */
struct vfio_info_cap_header *vfio_info_cap_add(struct vfio_info_cap *caps, size_t size,
                                               uint16_t id, uint16_t version);
/* Shifts the chain's next offsets by `offset` (where it lands in the user's
 * structure). */
void vfio_info_cap_shift(struct vfio_info_cap *caps, size_t offset);
void vfio_info_cap_free(struct vfio_info_cap *caps);

/*
 * The argsz rule every GET_INFO shares: the user's structure (at uinfo,
 * argsz bytes) gets the first min(argsz, minsz) bytes of `info` (whose
 * argsz/flags/cap_offset the caller set; minsz is the whole structure) and,
 * if the chain fits after it, the chain at offset minsz rounded to 8, with
 * *cap_offset and the CAPS flag (caps_flag) set; if not, argsz is raised to
 * what is needed and cap_offset is 0 (not an error, as Linux).  @returns 0.
 */
int vfio_info_copy_out(void *uinfo, uint32_t argsz, void *info, size_t minsz,
                       struct vfio_info_cap *caps, uint32_t *flags, uint32_t caps_flag,
                       uint32_t *cap_offset);

#endif
