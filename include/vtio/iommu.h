/*
 * iommu: the host's IOMMU core (Linux's drivers/iommu/iommu.c).
 *
 * A format-independent layer between users of DMA remapping (the DMA API,
 * VFIO, virtual machines) and a hardware driver (src/host/iommu/intel for
 * VT-d; the driver interface is src/host/iommu/iommu_priv.h, so AMD-Vi or
 * SMMUv3 drivers can sit beside it).
 *
 * Groups.  A group is the smallest set of devices the IOMMU can isolate
 * from each other; all devices of a group share one domain.  Functions
 * behind a PCIe-to-PCI bridge reach the IOMMU with the one requester id the
 * bridge gives them (its secondary bus, device 0, function 0; a
 * conventional PCI bridge uses its own), and the functions of a
 * multi-function device without ACS isolation can reach each other
 * peer-to-peer, so each of those sets is one group (with the bridge).
 * Group ids are 0, 1, 2 ... in the order devices were found.
 *
 * Domains.  A domain is one I/O address space:
 *  - BLOCKED    no DMA at all;
 *  - IDENTITY   DMA address = physical address, nothing translated
 *               (Linux's iommu.passthrough=1);
 *  - UNMANAGED  its owner maps and unmaps (VFIO, a VM);
 *  - DMA        owned by the DMA API, strict invalidation;
 *  - DMA_FQ     owned by the DMA API, invalidation batched in flush queues
 *               (lazy): an unmapped IOVA stays usable by the device until
 *               the next flush, at most fq_timeout_ms later.
 * Each group has a default domain (of the host's default type, or DMA for a
 * group with an untrusted device, or what the driver requires); the DMA API
 * works on it.  A user that wants a group for itself attaches its own domain
 * and detaches to give the group back.
 *
 * Faults the hardware reports are decoded, logged (rate-limited), kept in a
 * ring of the last VTIO_IOMMU_FAULT_LOG entries and passed to the fault
 * handler of the domain the device is attached to.
 *
 * Threads: all calls are thread-safe.  map/unmap on one domain may run from
 * many threads at once on disjoint ranges.  Fault handlers run on the
 * driver's fault thread and may call any IOMMU function but the fault ones.
 */
#ifndef VTIO_IOMMU_H
#define VTIO_IOMMU_H

#include <vtio/common.h>

struct vtio_host;
struct vtio_device;
struct vtio_iommu_group;
struct vtio_iommu_domain;

enum vtio_iommu_domain_type {
    VTIO_IOMMU_DOMAIN_BLOCKED = 0,
    VTIO_IOMMU_DOMAIN_IDENTITY,
    VTIO_IOMMU_DOMAIN_UNMANAGED,
    VTIO_IOMMU_DOMAIN_DMA,
    VTIO_IOMMU_DOMAIN_DMA_FQ,
};

/* Mapping permissions. */
#define VTIO_IOMMU_READ  0x1u
#define VTIO_IOMMU_WRITE 0x2u

#define VTIO_IOMMU_FAULT_LOG 64

/* One fault, decoded. */
struct vtio_iommu_fault {
    uint64_t seq;              /* 1, 2, 3 ... per host */
    uint16_t sid;              /* requester id */
    bool is_interrupt;         /* an interrupt-remapping fault */
    bool write;                /* DMA write (else read) */
    uint64_t addr;             /* page address of the DMA, or the IRTE index */
    bool has_pasid;
    uint32_t pasid;
    uint8_t reason;            /* VT-d fault reason (enum vtd_fault_reason) */
    const char *reason_str;    /* "PTE Write access is not set", ... */
    const char *unit;          /* "dmar0" */
};

typedef void (*vtio_iommu_fault_fn)(void *opaque, struct vtio_iommu_domain *d,
                                    const struct vtio_iommu_fault *f);

/* Whether an IOMMU translates for h's devices. */
VTIO_API bool vtio_iommu_present(struct vtio_host *h);
/* "blocked", "identity", "unmanaged", "DMA", "DMA-FQ" */
VTIO_API const char *vtio_iommu_domain_type_name(enum vtio_iommu_domain_type t);

/* ---- groups */

/* dev's group; NULL if no IOMMU translates dev. */
VTIO_API struct vtio_iommu_group *vtio_iommu_group_get(struct vtio_device *dev);
VTIO_API unsigned vtio_iommu_group_id(const struct vtio_iommu_group *g);
VTIO_API unsigned vtio_iommu_group_count(struct vtio_host *h);
VTIO_API struct vtio_iommu_group *vtio_iommu_group_by_id(struct vtio_host *h, unsigned id);
/* Stores up to max of the group's devices; @returns how many it has. */
VTIO_API unsigned vtio_iommu_group_devices(struct vtio_iommu_group *g,
                                           struct vtio_device **out, unsigned max);
VTIO_API struct vtio_iommu_domain *vtio_iommu_group_domain(struct vtio_iommu_group *g);
VTIO_API struct vtio_iommu_domain *vtio_iommu_group_default_domain(struct vtio_iommu_group *g);
/*
 * Replaces the group's default domain with a new one of type t (IDENTITY,
 * DMA or DMA_FQ), like writing /sys/kernel/iommu_groups/N/type.
 * @returns 0; -EBUSY a device of the group has a driver, or the group is
 * attached to another domain; -EPERM IDENTITY or DMA_FQ for a group with
 * an untrusted device; -EINVAL other types; -ENOMEM.
 */
VTIO_API int vtio_iommu_group_set_default_type(struct vtio_iommu_group *g,
                                               enum vtio_iommu_domain_type t);

/*
 * DMA ownership (Linux's iommu_group_claim_dma_owner), the rule that keeps
 * a group whole: a group is either the DMA API's (its devices' drivers map
 * through their default domain) or one user's (VFIO), never both.
 * Binding a DMA-API driver (vtio_device_bind) to a device of an owned group
 * fails with -EBUSY; claiming a group in which a DMA-API driver is bound
 * fails with -EPERM.  A claimed group is put in a blocking domain (no DMA)
 * until its owner attaches a domain of its own, and goes back to blocking
 * when the owner detaches it; release gives it its default domain again.
 * @returns 0; -EPERM a DMA-API driver is bound, or another owner holds the
 * group; -EBUSY the group is attached to a non-default domain; -EINVAL
 * owner NULL; -ENOMEM.
 */
VTIO_API int vtio_iommu_group_claim_dma_owner(struct vtio_iommu_group *g, void *owner);
/* @returns 0; -EINVAL owner does not hold g (or g is still attached to a
 * domain of the owner's). */
VTIO_API int vtio_iommu_group_release_dma_owner(struct vtio_iommu_group *g, void *owner);
VTIO_API bool vtio_iommu_group_dma_owner_claimed(struct vtio_iommu_group *g);

/* IOVA ranges no mapping of the group may use (Linux's reserved regions):
 * the MSI window, where the unit takes every write as an interrupt request. */
enum vtio_iommu_resv_type {
    VTIO_IOMMU_RESV_DIRECT,    /* firmware needs it mapped 1:1 (RMRR) */
    VTIO_IOMMU_RESV_RESERVED,  /* not usable */
    VTIO_IOMMU_RESV_MSI,       /* the interrupt window */
};
struct vtio_iommu_resv_region {
    uint64_t start, length;
    enum vtio_iommu_resv_type type;
};
/* Stores up to max of g's reserved regions, ascending.  @returns how many
 * there are. */
VTIO_API unsigned vtio_iommu_group_resv_regions(struct vtio_iommu_group *g,
                                                struct vtio_iommu_resv_region *out,
                                                unsigned max);

/* ---- domains */

/*
 * A new domain of type t (BLOCKED, IDENTITY or UNMANAGED) for the IOMMU
 * that serves dev (not attached to anything yet).
 * @returns 0 and *out; -ENODEV no IOMMU serves dev; -EINVAL type; -ENOMEM.
 */
VTIO_API int vtio_iommu_domain_alloc(struct vtio_device *dev, enum vtio_iommu_domain_type t,
                                     struct vtio_iommu_domain **out);
/* Frees a domain from vtio_iommu_domain_alloc.  @returns 0; -EBUSY still
 * attached to a group. */
VTIO_API int vtio_iommu_domain_free(struct vtio_iommu_domain *d);
VTIO_API enum vtio_iommu_domain_type vtio_iommu_domain_type(const struct vtio_iommu_domain *d);
/* The IOVAs the domain can map: [0, *aperture_end] (inclusive), in pages of
 * the sizes in *pgsize_bitmap (bit n set: 2^n bytes). */
VTIO_API void vtio_iommu_domain_geometry(const struct vtio_iommu_domain *d,
                                         uint64_t *aperture_end, uint64_t *pgsize_bitmap);

/*
 * Attaches g to d in place of its default domain, or of the blocking
 * domain of a claimed group (every device of g is switched; the old
 * translations are invalidated before this returns).
 * @returns 0; -EBUSY g is already attached to another domain;
 * -EINVAL d belongs to another IOMMU or is a DMA-API domain.
 */
VTIO_API int vtio_iommu_attach_group(struct vtio_iommu_domain *d, struct vtio_iommu_group *g);
/* Gives g back to its default domain (to blocking if it is claimed).
 * @returns 0; -EINVAL not attached to d. */
VTIO_API int vtio_iommu_detach_group(struct vtio_iommu_domain *d, struct vtio_iommu_group *g);

/*
 * Maps [iova, iova + size) to [pa, pa + size) with prot (VTIO_IOMMU_READ and
 * or WRITE), using the largest pages both addresses allow.  Only for
 * UNMANAGED domains (the DMA API maps its own).
 * @returns 0; -EINVAL size 0, not page-aligned, prot 0 or unknown bits,
 * beyond the aperture, or the domain is not UNMANAGED; -EEXIST some page is
 * already mapped (nothing is changed); -ENOMEM.
 */
VTIO_API int vtio_iommu_map(struct vtio_iommu_domain *d, uint64_t iova, uint64_t pa,
                            uint64_t size, unsigned prot);
/*
 * Unmaps [iova, iova + size) (page-aligned; large pages partly inside are
 * split) and invalidates the IOTLB before returning: when this returns no
 * device uses the old translations.
 * @returns the bytes that were mapped in the range (0 if none).
 */
VTIO_API uint64_t vtio_iommu_unmap(struct vtio_iommu_domain *d, uint64_t iova, uint64_t size);
/* @returns 0 and *pa; -ENOENT iova is not mapped. */
VTIO_API int vtio_iommu_iova_to_phys(struct vtio_iommu_domain *d, uint64_t iova,
                                     uint64_t *pa);

/* ---- faults */

/* Calls fn (from the fault thread) for faults of devices attached to d. */
VTIO_API void vtio_iommu_set_fault_handler(struct vtio_iommu_domain *d, vtio_iommu_fault_fn fn,
                                           void *opaque);
/*
 * Processes every fault the hardware has recorded so far on this thread
 * (the fault thread may be behind).  @returns the total number of faults
 * seen since boot.
 */
VTIO_API uint64_t vtio_iommu_fault_sync(struct vtio_host *h);
/* Copies the last faults, oldest first, up to max.  @returns how many. */
VTIO_API unsigned vtio_iommu_fault_log(struct vtio_host *h, struct vtio_iommu_fault *out,
                                       unsigned max);

#endif
