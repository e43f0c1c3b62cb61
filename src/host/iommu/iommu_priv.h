/*
 * The IOMMU core's insides and its interface to hardware drivers (Linux's
 * struct iommu_ops / iommu_domain_ops).  Not part of the public API.
 *
 * The split: the core (core.c, group.c) owns groups, default domains, the
 * attach rules, the fault log and the public calls of include/vtio/iommu.h;
 * a driver (intel/) owns its hardware units, their tables and their
 * invalidations, and fills these two tables:
 *
 *   vtio_iommu_ops         per driver: claim devices, make domains
 *   vtio_iommu_domain_ops  per domain: attach, map, unmap, flush, lookup
 *
 * Unmapping is split in two, as in Linux, so that a caller can batch: unmap
 * clears entries and collects what it touched in a gather (the IOVA range
 * and the table pages it emptied); iotlb_sync invalidates that range and
 * waits.  Table pages in a gather must not be freed before the invalidation
 * that follows their removal has completed (the hardware may still walk
 * them): the DMA layer's flush queue carries them until then; strict users
 * call vtio_iommu_gather_finish().
 */
#ifndef VTIO_HOST_IOMMU_PRIV_H
#define VTIO_HOST_IOMMU_PRIV_H

#include <vtio/iommu.h>

#include <pthread.h>
#include <stdatomic.h>

#include "host/device_priv.h"

struct vtio_page_alloc;

/* Table pages waiting to be freed (4 KiB each, physical addresses). */
struct vtio_iommu_freelist {
    uint64_t *pa;
    size_t n, cap;
};

/* @returns 0; -ENOMEM (the page stays the caller's). */
int vtio_iommu_freelist_add(struct vtio_iommu_freelist *fl, uint64_t pa);
/* Frees every page of fl to the allocator and empties fl (keeps its array). */
void vtio_iommu_freelist_release(struct vtio_iommu_freelist *fl, struct vtio_page_alloc *pages);
/* Moves src's pages to the end of dst (src left empty).  @returns 0; -ENOMEM. */
int vtio_iommu_freelist_splice(struct vtio_iommu_freelist *dst, struct vtio_iommu_freelist *src);
void vtio_iommu_freelist_free(struct vtio_iommu_freelist *fl);   /* the array itself */

/* What an unmap touched. */
struct vtio_iommu_gather {
    uint64_t start, end;       /* IOVA range [start, end); start == end: nothing */
    uint64_t pgsize;           /* largest leaf page size cleared */
    struct vtio_iommu_freelist freelist;
};

static inline void vtio_iommu_gather_init(struct vtio_iommu_gather *g)
{
    *g = (struct vtio_iommu_gather){ 0 };
}

static inline void vtio_iommu_gather_add(struct vtio_iommu_gather *g, uint64_t iova,
                                         uint64_t size, uint64_t pgsize)
{
    if (g->start == g->end) {
        g->start = iova;
        g->end = iova + size;
    } else {
        if (iova < g->start)
            g->start = iova;
        if (iova + size > g->end)
            g->end = iova + size;
    }
    if (pgsize > g->pgsize)
        g->pgsize = pgsize;
}

struct vtio_iommu_domain;

struct vtio_iommu_domain_ops {
    /* Points dev's context at this domain (and invalidates what the old
     * one left cached for dev).  @returns 0 or -errno. */
    int (*attach_dev)(struct vtio_iommu_domain *d, struct vtio_device *dev);
    /* Paging domains only.  iova, pa, size page-aligned and inside the
     * aperture (checked by the core).  May use large pages.  Does whatever
     * the hardware needs for a new mapping to be seen (caching mode).
     * @returns 0; -EEXIST (nothing changed); -ENOMEM (nothing changed). */
    int (*map)(struct vtio_iommu_domain *d, uint64_t iova, uint64_t pa, uint64_t size,
               unsigned prot);
    /* Clears [iova, iova + size), splitting large pages partly inside;
     * gathers range and emptied table pages.  No invalidation.
     * @returns bytes that were mapped. */
    uint64_t (*unmap)(struct vtio_iommu_domain *d, uint64_t iova, uint64_t size,
                      struct vtio_iommu_gather *g);
    /* Invalidates g's range (page-selective where it fits, else the whole
     * domain) and waits for completion.  Leaves g's freelist alone. */
    void (*iotlb_sync)(struct vtio_iommu_domain *d, struct vtio_iommu_gather *g);
    /* Invalidates everything the domain has cached, and waits. */
    void (*flush_iotlb_all)(struct vtio_iommu_domain *d);
    int (*iova_to_phys)(struct vtio_iommu_domain *d, uint64_t iova, uint64_t *pa);
    /* Frees the domain (never called while attached). */
    void (*free)(struct vtio_iommu_domain *d);
};

/* One I/O address space.  Drivers embed this at the start of their own. */
struct vtio_iommu_domain {
    enum vtio_iommu_domain_type type;
    const struct vtio_iommu_domain_ops *ops;
    struct vtio_iommu *iommu;          /* the core it belongs to */
    void *unit;                        /* the driver's hardware unit */
    uint64_t aperture_end;             /* highest mappable IOVA (inclusive) */
    uint64_t pgsize_bitmap;            /* e.g. 4K | 2M | 1G */
    bool is_default;                   /* a group's default or blocking domain:
                                          the core's, never attached by hand */
    unsigned attached;                 /* groups attached (core lock) */
    _Atomic(vtio_iommu_fault_fn) fault_fn;
    void *_Atomic fault_opaque;
    void *dma_cookie;                  /* DMA layer (DMA / DMA_FQ): dma_priv.h */
};

struct vtio_iommu_ops {
    const char *name;
    /* Claims dev if one of the driver's units serves it (sets
     * dev->iommu_priv and *unit).  @returns 0; -ENODEV not ours. */
    int (*probe_device)(void *drv, struct vtio_device *dev, void **unit);
    void (*release_device)(void *drv, struct vtio_device *dev);
    /* A new, unattached domain of type t on `unit`.  NULL on failure
     * (vtio_last_error says why). */
    struct vtio_iommu_domain *(*domain_alloc)(void *drv, void *unit,
                                              enum vtio_iommu_domain_type t);
    /* Optional: a type dev must have as default (0 = no preference;
     * BLOCKED is never returned). */
    enum vtio_iommu_domain_type (*def_domain_type)(void *drv, struct vtio_device *dev);
    /* Processes the faults the hardware has recorded (vtio_iommu_fault_sync). */
    void (*fault_sync)(void *drv);
    /* Optional: stores up to max of the IOVA ranges dev's DMA cannot be
     * translated in (the interrupt window, RMRRs), ascending; returns how
     * many there are. */
    unsigned (*get_resv_regions)(void *drv, struct vtio_device *dev,
                                 struct vtio_iommu_resv_region *out, unsigned max);
    /* Turns the hardware off and frees the driver (after every domain). */
    void (*shutdown)(void *drv);
    bool deferred_flush;               /* IOMMU_CAP_DEFERRED_FLUSH: lazy allowed */
};

struct vtio_iommu_group {
    struct vtio_iommu *iommu;
    unsigned id;
    uint16_t alias_rid;                /* the requester id the group's DMA carries */
    struct vtio_device **devs;
    unsigned n_devs;
    void *unit;                        /* the hardware unit serving it */
    struct vtio_iommu_domain *default_domain;
    _Atomic(struct vtio_iommu_domain *) domain;   /* current */
    /* DMA ownership (owner.c), under the core lock: how many devices have a
     * DMA-API driver bound, or which user holds the group (never both). */
    unsigned owner_cnt;
    void *owner;
    struct vtio_iommu_domain *blocking_domain;   /* while owned; made at first claim */
};

struct vtio_iommu {
    struct vtio_host *host;
    const struct vtio_iommu_ops *ops;
    void *drv;
    pthread_mutex_t lock;              /* groups, attach, domain lifetime */
    struct vtio_iommu_group **groups;
    unsigned n_groups;
    /* fault log */
    pthread_mutex_t fault_lock;
    struct vtio_iommu_fault log[VTIO_IOMMU_FAULT_LOG];
    uint64_t fault_seq;                /* faults seen; log[(seq - 1) % N] is the last */
    uint64_t ratelimit_begin_ns;       /* logging: at most 10 per 5 s, as Linux */
    unsigned ratelimit_printed, ratelimit_missed;
    bool dying;                        /* unregister began: reports are dropped */
};

/*
 * Driver entry points into the core.
 *
 * vtio_iommu_register: called by a driver's init at boot.  The core then
 * probes every device, forms groups, allocates and attaches default
 * domains.  @returns 0 or -errno (the driver is shut down on failure).
 */
int vtio_iommu_register(struct vtio_host *h, const struct vtio_iommu_ops *ops, void *drv);
/* Tears the core down: devices back to... nothing (blocked), default domains
 * freed, then ops->shutdown.  Called by vtio_host_shutdown. */
void vtio_iommu_unregister(struct vtio_host *h);
/* A decoded hardware fault: into the log, the rate-limited message, and
 * the fault handler of the domain of the device with f->sid. */
void vtio_iommu_report_fault(struct vtio_iommu *iommu, const struct vtio_iommu_fault *f);
/* Core lock held: points every device of g at d and makes d current (the
 * devices go back to where they were if one refuses).  @returns 0; -errno. */
int vtio_iommu_group_switch_locked(struct vtio_iommu_group *g, struct vtio_iommu_domain *d);
/* Core lock held: a new domain of type t for g's unit (not attached). */
int vtio_iommu_domain_make_locked(struct vtio_iommu_group *g, enum vtio_iommu_domain_type t,
                                  struct vtio_iommu_domain **out);
/* Frees a domain that no group uses (core lock held). */
void vtio_iommu_domain_destroy_locked(struct vtio_iommu_domain *d);

/*
 * The binding side of DMA ownership (owner.c; Linux's
 * iommu_device_use_default_domain): called by vtio_device_bind for a
 * driver that maps through the DMA API, with dev's lock NOT held.
 * @returns 0 (also when no IOMMU translates dev); -EBUSY the group is owned
 * by a user.
 */
int vtio_iommu_device_use_default_domain(struct vtio_device *dev);
void vtio_iommu_device_unuse_default_domain(struct vtio_device *dev);

/* The group of the device with requester id rid; NULL if none. */
struct vtio_iommu_group *vtio_iommu_group_of_rid(struct vtio_iommu *iommu, uint16_t rid);

/*
 * Group formation (group.c), the rule on PCI functions: functions behind a
 * PCIe-to-PCI/PCI-X (or conventional PCI) bridge share the requester id the
 * bridge puts on their DMA and form one group with the bridge; the functions
 * of a multi-function device not all of whose functions have ACS Source
 * Validation, Request and Completion Redirect and Upstream Forwarding on
 * form one group; every other function is a group of its own.  e is the
 * whole enumeration (for the bridges above fns); fns[0..n) the functions to
 * group, in scan order.  Stores group_of[i] (0, 1, ... in order of each
 * group's first function) and alias_of[i] (the requester id fns[i]'s DMA
 * carries).  @returns the number of groups; -EINVAL NULL; -ENOMEM.
 */
struct vtio_pci_enum;
struct vtio_pci_function;
int vtio_iommu_pci_groups(const struct vtio_pci_enum *e,
                          const struct vtio_pci_function *const *fns, unsigned n,
                          unsigned *group_of, uint16_t *alias_of);
/* Builds iommu->groups for the n probed devices devs[] (scan order) served
 * by units[]: sets dev->group, each group's alias_rid and unit.
 * @returns 0; -ENOMEM (nothing left allocated). */
int vtio_iommu_groups_create(struct vtio_iommu *iommu, struct vtio_device **devs,
                             void **units, unsigned n);
/* Frees the groups (dev->group back to NULL).  Domains are the caller's. */
void vtio_iommu_groups_destroy(struct vtio_iommu *iommu);

/* What the DMA layer needs: the domain a device's DMA API calls work on
 * (its group's current domain; NULL if no IOMMU translates dev). */
static inline struct vtio_iommu_domain *vtio_iommu_dma_domain(struct vtio_device *dev)
{
    return dev->group ? atomic_load_explicit(&dev->group->domain, memory_order_acquire)
                      : NULL;
}

/* Map/unmap without the UNMANAGED check, for the DMA layer (dma/iommu_dma.c):
 * the same contracts as vtio_iommu_map and ops->unmap. */
int vtio_iommu_map_raw(struct vtio_iommu_domain *d, uint64_t iova, uint64_t pa, uint64_t size,
                       unsigned prot);
uint64_t vtio_iommu_unmap_raw(struct vtio_iommu_domain *d, uint64_t iova, uint64_t size,
                              struct vtio_iommu_gather *g);
/* Invalidates g's range and waits, then frees g's table pages. */
void vtio_iommu_gather_finish(struct vtio_iommu_domain *d, struct vtio_iommu_gather *g);

#endif
