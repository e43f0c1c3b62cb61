/*
 * vfio: safe device access from userspace (Linux's VFIO, legacy container
 * and group interface, with the type1 IOMMU backend and vfio-pci).
 *
 * A userspace driver (DPDK, SPDK, a VMM) gets a PCI function to itself:
 * its registers (BARs mapped into the program), its interrupts (eventfds),
 * its configuration space, and DMA into the program's own memory through
 * IOVAs the program chooses.  Nothing it does with the device can reach
 * memory it did not map, or raise an interrupt it did not set up: the
 * device sits in an IOMMU domain of the container's (so its DMA is
 * translated only through what MAP_DMA put there), and its MSI-X messages
 * are remapped (only the entries the host set up for this function are
 * valid).
 *
 * The objects and the order of use are Linux's:
 *
 *   vtio_vfio_bind(dev)                        bind the function to vfio-pci
 *   container = open("/dev/vfio/vfio")
 *   group     = open("/dev/vfio/<iommu group id>")
 *   ioctl(group, VFIO_GROUP_GET_STATUS)        must be VIABLE
 *   ioctl(group, VFIO_GROUP_SET_CONTAINER, &container)
 *   ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU)
 *   ioctl(container, VFIO_IOMMU_GET_INFO / MAP_DMA / UNMAP_DMA ...)
 *   device    = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, "0000:00:03.0")
 *   ioctl(device, VFIO_DEVICE_GET_INFO / GET_REGION_INFO / SET_IRQS ...)
 *   pread/pwrite(device, ..., region offset)   config space and BARs
 *   mmap(device, ..., BAR region offset)       registers
 *
 * The structures below have the layout, names and values of Linux's
 * <linux/vfio.h> (the subset vtio implements), so a driver written for
 * Linux ports by replacing open/close/ioctl/pread/pwrite/mmap with the
 * vtio_vfio_* calls of the same arguments; the data does not change.  (Do
 * not include both headers in one file.)  Two differences a port sees:
 *  - descriptors are the process's (struct vtio_process, process.h), a
 *    namespace of their own; eventfds for SET_IRQS are real eventfd(2)s;
 *  - mmap of a BAR yields a struct vtio_mmio (mmio.h) whose accessors are
 *    the register loads and stores, instead of a pointer.
 *
 * Errors are Linux's: each call returns what the ioctl would (>= 0) or
 * -errno, with a message in vtio_last_error(); a failed call changes
 * nothing.
 *
 * What is not here: the iommufd/cdev interface, the sPAPR and no-IOMMU
 * backends, VFIO_IOMMU_MAP_DMA with VFIO_DMA_MAP_FLAG_VADDR (live update),
 * INTx (the DMA engine has no INTx pin), hot reset, migration and device
 * features.  CHECK_EXTENSION says so.
 *
 * Threads: every call is thread-safe.  A device's interrupts are signalled
 * from device threads (eventfd writes).
 */
#ifndef VTIO_VFIO_H
#define VTIO_VFIO_H

#include <vtio/common.h>
#include <vtio/mmio.h>

#include <sys/types.h>

struct vtio_device;
struct vtio_process;

/* ------------------------------------------------------------------------
 * The calls (Linux: open, close, ioctl, pread, pwrite, mmap, munmap)
 * ------------------------------------------------------------------------ */

/*
 * Binds dev to the vfio-pci driver (driver_override + bind): the host's DMA
 * API no longer serves it, and its IOMMU group appears as /dev/vfio/<id>.
 * @returns 0; -ENODEV no IOMMU translates dev (vtio has no no-IOMMU mode);
 * -EBUSY another driver is bound.
 */
VTIO_API int vtio_vfio_bind(struct vtio_device *dev);
/* Gives dev back (unbind).  @returns 0; -EINVAL not bound to vfio-pci;
 * -EBUSY a process has the device open (Linux waits; vtio refuses). */
VTIO_API int vtio_vfio_unbind(struct vtio_device *dev);

/* Opens "/dev/vfio/vfio" (a new container) or "/dev/vfio/<group id>".
 * @returns fd; -ENOENT no such file; -EBUSY the group is already open;
 * -EMFILE. */
VTIO_API int vtio_vfio_open(struct vtio_process *p, const char *path);
/* @returns 0; -EBADF. */
VTIO_API int vtio_vfio_close(struct vtio_process *p, int fd);
/* ioctl(fd, request, arg): arg is a pointer or an integer, as on Linux. */
#define vtio_vfio_ioctl(p, fd, request, arg) \
    vtio_vfio_ioctl_((p), (fd), (request), (unsigned long)(uintptr_t)(arg))
VTIO_API long vtio_vfio_ioctl_(struct vtio_process *p, int fd, unsigned long request,
                               unsigned long arg);
/* Region access at offset (from VFIO_DEVICE_GET_REGION_INFO).
 * @returns bytes done; -EINVAL outside a region or a bad access size;
 * -EBADF. */
VTIO_API ssize_t vtio_vfio_pread(struct vtio_process *p, int fd, void *buf, size_t count,
                                 uint64_t offset);
VTIO_API ssize_t vtio_vfio_pwrite(struct vtio_process *p, int fd, const void *buf,
                                  size_t count, uint64_t offset);
/* Maps [offset, offset + length) of a region that has
 * VFIO_REGION_INFO_FLAG_MMAP.  prot: PROT_READ | PROT_WRITE values (1, 2).
 * The mapping keeps the device open until munmap.
 * @returns 0 and *out; -EINVAL not mappable, misaligned or too long;
 * -EBADF. */
VTIO_API int vtio_vfio_mmap(struct vtio_process *p, int fd, uint64_t offset, uint64_t length,
                            int prot, struct vtio_mmio *out);
/* @returns 0; -EINVAL m is not a mapping of p. */
VTIO_API int vtio_vfio_munmap(struct vtio_process *p, const struct vtio_mmio *m);

/* ------------------------------------------------------------------------
 * <linux/vfio.h>: values and structures
 * ------------------------------------------------------------------------ */

#define VFIO_API_VERSION 0

/* Extensions (VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU) */
#define VFIO_TYPE1_IOMMU         1
#define VFIO_SPAPR_TCE_IOMMU     2
#define VFIO_TYPE1v2_IOMMU       3
#define VFIO_DMA_CC_IOMMU        4
#define VFIO_EEH                 5
#define VFIO_SPAPR_TCE_v2_IOMMU  7
#define VFIO_NOIOMMU_IOMMU       8
#define VFIO_UNMAP_ALL           9
#define VFIO_UPDATE_VADDR        10

/* ioctl numbers: _IO(';', 100 + n) */
#define VFIO_TYPE (';')
#define VFIO_BASE 100
#define VFIO_IO_(nr) ((unsigned long)(((unsigned)VFIO_TYPE << 8) | (VFIO_BASE + (nr))))

/* Capability chains: each header's next is the offset of the next one from
 * the start of the info structure, 0 at the end. */
struct vfio_info_cap_header {
    uint16_t id;
    uint16_t version;
    uint32_t next;
};

/* ---- container */
#define VFIO_GET_API_VERSION      VFIO_IO_(0)
#define VFIO_CHECK_EXTENSION      VFIO_IO_(1)
#define VFIO_SET_IOMMU            VFIO_IO_(2)

/* ---- group */
struct vfio_group_status {
    uint32_t argsz;
    uint32_t flags;
#define VFIO_GROUP_FLAGS_VIABLE        (1 << 0)
#define VFIO_GROUP_FLAGS_CONTAINER_SET (1 << 1)
};
#define VFIO_GROUP_GET_STATUS     VFIO_IO_(3)
#define VFIO_GROUP_SET_CONTAINER  VFIO_IO_(4)   /* arg: int *container_fd */
#define VFIO_GROUP_UNSET_CONTAINER VFIO_IO_(5)
#define VFIO_GROUP_GET_DEVICE_FD  VFIO_IO_(6)   /* arg: const char *name */

/* ---- device */
struct vfio_device_info {
    uint32_t argsz;
    uint32_t flags;
#define VFIO_DEVICE_FLAGS_RESET    (1 << 0)
#define VFIO_DEVICE_FLAGS_PCI      (1 << 1)
#define VFIO_DEVICE_FLAGS_PLATFORM (1 << 2)
#define VFIO_DEVICE_FLAGS_AMBA     (1 << 3)
#define VFIO_DEVICE_FLAGS_CCW      (1 << 4)
#define VFIO_DEVICE_FLAGS_AP       (1 << 5)
#define VFIO_DEVICE_FLAGS_FSL_MC   (1 << 6)
#define VFIO_DEVICE_FLAGS_CAPS     (1 << 7)
#define VFIO_DEVICE_FLAGS_CDX      (1 << 8)
    uint32_t num_regions;
    uint32_t num_irqs;
    uint32_t cap_offset;
    uint32_t pad;
};
#define VFIO_DEVICE_GET_INFO      VFIO_IO_(7)
#define VFIO_DEVICE_API_PCI_STRING "vfio-pci"

struct vfio_region_info {
    uint32_t argsz;
    uint32_t flags;
#define VFIO_REGION_INFO_FLAG_READ  (1 << 0)
#define VFIO_REGION_INFO_FLAG_WRITE (1 << 1)
#define VFIO_REGION_INFO_FLAG_MMAP  (1 << 2)
#define VFIO_REGION_INFO_FLAG_CAPS  (1 << 3)
    uint32_t index;
    uint32_t cap_offset;
    uint64_t size;
    uint64_t offset;
};
#define VFIO_DEVICE_GET_REGION_INFO VFIO_IO_(8)

#define VFIO_REGION_INFO_CAP_SPARSE_MMAP 1
struct vfio_region_sparse_mmap_area {
    uint64_t offset;
    uint64_t size;
};
struct vfio_region_info_cap_sparse_mmap {
    struct vfio_info_cap_header header;
    uint32_t nr_areas;
    uint32_t reserved;
    struct vfio_region_sparse_mmap_area areas[];
};
#define VFIO_REGION_INFO_CAP_TYPE 2
struct vfio_region_info_cap_type {
    struct vfio_info_cap_header header;
    uint32_t type;
    uint32_t subtype;
};
/* The MSI-X table's BAR may be mapped whole (interrupt remapping makes the
 * table harmless to the host). */
#define VFIO_REGION_INFO_CAP_MSIX_MAPPABLE 3

struct vfio_irq_info {
    uint32_t argsz;
    uint32_t flags;
#define VFIO_IRQ_INFO_EVENTFD    (1 << 0)
#define VFIO_IRQ_INFO_MASKABLE   (1 << 1)
#define VFIO_IRQ_INFO_AUTOMASKED (1 << 2)
#define VFIO_IRQ_INFO_NORESIZE   (1 << 3)
    uint32_t index;
    uint32_t count;
};
#define VFIO_DEVICE_GET_IRQ_INFO  VFIO_IO_(9)

struct vfio_irq_set {
    uint32_t argsz;
    uint32_t flags;
#define VFIO_IRQ_SET_DATA_NONE      (1 << 0)
#define VFIO_IRQ_SET_DATA_BOOL      (1 << 1)
#define VFIO_IRQ_SET_DATA_EVENTFD   (1 << 2)
#define VFIO_IRQ_SET_ACTION_MASK    (1 << 3)
#define VFIO_IRQ_SET_ACTION_UNMASK  (1 << 4)
#define VFIO_IRQ_SET_ACTION_TRIGGER (1 << 5)
    uint32_t index;
    uint32_t start;
    uint32_t count;
    uint8_t data[];
};
#define VFIO_DEVICE_SET_IRQS      VFIO_IO_(10)
#define VFIO_IRQ_SET_DATA_TYPE_MASK \
    (VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD)
#define VFIO_IRQ_SET_ACTION_TYPE_MASK \
    (VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER)

#define VFIO_DEVICE_RESET         VFIO_IO_(11)

/* vfio-pci regions and interrupts */
enum {
    VFIO_PCI_BAR0_REGION_INDEX,
    VFIO_PCI_BAR1_REGION_INDEX,
    VFIO_PCI_BAR2_REGION_INDEX,
    VFIO_PCI_BAR3_REGION_INDEX,
    VFIO_PCI_BAR4_REGION_INDEX,
    VFIO_PCI_BAR5_REGION_INDEX,
    VFIO_PCI_ROM_REGION_INDEX,
    VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_PCI_VGA_REGION_INDEX,
    VFIO_PCI_NUM_REGIONS = 9
};
enum {
    VFIO_PCI_INTX_IRQ_INDEX,
    VFIO_PCI_MSI_IRQ_INDEX,
    VFIO_PCI_MSIX_IRQ_INDEX,
    VFIO_PCI_ERR_IRQ_INDEX,
    VFIO_PCI_REQ_IRQ_INDEX,
    VFIO_PCI_NUM_IRQS
};

/* ---- type1 IOMMU (on the container) */
struct vfio_iommu_type1_info {
    uint32_t argsz;
    uint32_t flags;
#define VFIO_IOMMU_INFO_PGSIZES (1 << 0)
#define VFIO_IOMMU_INFO_CAPS    (1 << 1)
    uint64_t iova_pgsizes;
    uint32_t cap_offset;
    uint32_t pad;
};

#define VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE 1
struct vfio_iova_range {
    uint64_t start;
    uint64_t end;          /* inclusive */
};
struct vfio_iommu_type1_info_cap_iova_range {
    struct vfio_info_cap_header header;
    uint32_t nr_iovas;
    uint32_t reserved;
    struct vfio_iova_range iova_ranges[];
};

#define VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION 2
struct vfio_iommu_type1_info_cap_migration {
    struct vfio_info_cap_header header;
    uint32_t flags;
    uint64_t pgsize_bitmap;
    uint64_t max_dirty_bitmap_size;    /* bytes */
};

#define VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL 3
struct vfio_iommu_type1_info_dma_avail {
    struct vfio_info_cap_header header;
    uint32_t avail;
};
#define VFIO_IOMMU_GET_INFO       VFIO_IO_(12)

struct vfio_iommu_type1_dma_map {
    uint32_t argsz;
    uint32_t flags;
#define VFIO_DMA_MAP_FLAG_READ  (1 << 0)
#define VFIO_DMA_MAP_FLAG_WRITE (1 << 1)
#define VFIO_DMA_MAP_FLAG_VADDR (1 << 2)
    uint64_t vaddr;
    uint64_t iova;
    uint64_t size;
};
#define VFIO_IOMMU_MAP_DMA        VFIO_IO_(13)

struct vfio_bitmap {
    uint64_t pgsize;       /* page size of one bit */
    uint64_t size;         /* bytes at data */
    uint64_t *data;        /* zeroed by the caller; bits are only set */
};

struct vfio_iommu_type1_dma_unmap {
    uint32_t argsz;
    uint32_t flags;
#define VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP (1 << 0)
#define VFIO_DMA_UNMAP_FLAG_ALL              (1 << 1)
#define VFIO_DMA_UNMAP_FLAG_VADDR            (1 << 2)
    uint64_t iova;
    uint64_t size;         /* out: bytes unmapped */
    uint8_t data[];        /* struct vfio_bitmap with GET_DIRTY_BITMAP */
};
#define VFIO_IOMMU_UNMAP_DMA      VFIO_IO_(14)
#define VFIO_IOMMU_ENABLE         VFIO_IO_(15)
#define VFIO_IOMMU_DISABLE        VFIO_IO_(16)

struct vfio_iommu_type1_dirty_bitmap {
    uint32_t argsz;
    uint32_t flags;
#define VFIO_IOMMU_DIRTY_PAGES_FLAG_START      (1 << 0)
#define VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP       (1 << 1)
#define VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP (1 << 2)
    uint8_t data[];        /* struct vfio_iommu_type1_dirty_bitmap_get */
};
struct vfio_iommu_type1_dirty_bitmap_get {
    uint64_t iova;
    uint64_t size;
    struct vfio_bitmap bitmap;
};
#define VFIO_IOMMU_DIRTY_PAGES    VFIO_IO_(17)

#endif
