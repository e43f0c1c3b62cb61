/*
 * The VT-d driver of host software (Linux's drivers/iommu/intel/), split a
 * file per concept, all reaching the hardware only through its registers
 * (MMIO), tables in machine RAM, and interrupts:
 *
 *   dmar.c       finds the units in the firmware's DMAR table, matches
 *                devices to units, registers with the IOMMU core
 *   iommu.c      a unit's bring-up and shutdown: CAP/ECAP, root table and
 *                SRTP, global invalidations, TE; the GCMD protocol
 *   domain.c     domains: context (and scalable-mode PASID) entries,
 *                attach, map/unmap on the page tables, IOTLB sync
 *   pgtable.c    second-level page tables: 4 KiB / 2 MiB / 1 GiB leaves,
 *                split on partial unmap, empty tables collected for freeing
 *   inval.c      invalidation: the queue (QI) with wait descriptors, or the
 *                CCMD / IOTLB registers when the unit has no QI
 *   irq_remap.c  interrupt remapping: the IRTE table, SIRTP, IRE, CFIS off,
 *                and the host's irq_remap hook
 *   fault.c      the fault event interrupt, a fault thread, decoding and
 *                reporting to the core
 *
 * Tables are written through the CPUs' direct map (vtio_host_phys_to_virt)
 * with 8-byte release stores, so the unit, which reads the same RAM, never
 * sees a half-written entry; a new table is zeroed before it is linked.
 */
#ifndef VTIO_HOST_INTEL_IOMMU_H
#define VTIO_HOST_INTEL_IOMMU_H

#include <vtio/host.h>
#include <vtio/mmio.h>
#include <vtio/vtd_regs.h>

#include <pthread.h>
#include <stdatomic.h>

#include "host/iommu/iommu_priv.h"
#include "host/irq_remap.h"

struct intel_ir;
struct intel_fault;

/* ---- page tables (pgtable.c) */

struct intel_pgtable {
    struct vtio_host *host;            /* pages and direct map */
    uint64_t root;                     /* physical address of the top table */
    unsigned levels;                   /* 3, 4 or 5 (39, 48, 57-bit IOVAs) */
    unsigned max_leaf_level;           /* 1: 4 KiB only; 2: + 2 MiB; 3: + 1 GiB */
    pthread_mutex_t lock;              /* serialises map and unmap */
    _Atomic uint64_t table_pages;      /* pages of tables in use (root included) */
};

/* Allocates a zeroed root.  @returns 0; -EINVAL levels or leaf level;
 * -ENOMEM. */
int intel_pgtable_init(struct intel_pgtable *pt, struct vtio_host *h, unsigned levels,
                       unsigned max_leaf_level);
/* Frees every table page, root included (the tables must be unreachable:
 * no context entry points at them any more, and that was invalidated). */
void intel_pgtable_destroy(struct intel_pgtable *pt);
/*
 * Maps [iova, iova + size) -> [pa, ...) with prot (VTIO_IOMMU_READ/WRITE ->
 * the R and W bits), using a 2 MiB or 1 GiB leaf wherever iova and pa are
 * both aligned to it, the rest of the range covers it, and max_leaf_level
 * allows.  Page-aligned arguments inside the address width.
 * @returns 0; -EEXIST some page of the range is mapped (nothing changed);
 * -EINVAL misaligned, beyond the width, prot without R or W; -ENOMEM
 * (nothing changed: tables allocated on the way may stay, empty).
 */
int intel_pgtable_map(struct intel_pgtable *pt, uint64_t iova, uint64_t pa, uint64_t size,
                      unsigned prot);
/*
 * Clears every mapping in [iova, iova + size).  A large leaf partly inside
 * is split first (replaced by a table of smaller leaves for the part that
 * stays).  A table whose whole span lies in the range is unlinked from its
 * parent and its page added to g->freelist (tables emptied piecemeal stay,
 * as in Linux); the range and largest leaf go into g (vtio_iommu_gather_add).
 * @returns the bytes that were mapped in the range.  If a split needs a page
 * and none is left, the large leaf is kept whole and not counted (-ENOMEM
 * in vtio_last_error; Linux's driver has the same corner).
 */
uint64_t intel_pgtable_unmap(struct intel_pgtable *pt, uint64_t iova, uint64_t size,
                             struct vtio_iommu_gather *g);
/* @returns 0, *pa and *page_size (4K/2M/1G) and *prot; -ENOENT. */
int intel_pgtable_lookup(struct intel_pgtable *pt, uint64_t iova, uint64_t *pa,
                         uint64_t *page_size, unsigned *prot);

/* ---- a hardware unit */

struct intel_iommu {
    struct vtio_host *host;
    unsigned seq;                      /* dmar0, dmar1 ... */
    char name[8];
    const struct vtio_dmar_drhd *drhd; /* in host->fw.dmar */
    struct vtio_mmio regs;
    uint64_t cap, ecap;
    uint32_t gcmd;                     /* the GCMD bits software keeps set */
    pthread_mutex_t reg_lock;          /* GCMD sequences, register invalidation */

    unsigned levels;                   /* page-table levels used: 3, 4 or 5 */
    unsigned max_leaf_level;           /* from CAP.SSLPS */
    bool scalable;                     /* root table in scalable mode */
    bool pass_through;                 /* ECAP.PT: identity without tables */
    uint64_t root_table;               /* pa */
    pthread_mutex_t ctx_lock;          /* context tables and entries */

    /* domain ids: 0 reserved (caching mode uses it for "no translation") */
    pthread_mutex_t did_lock;
    uint64_t *did_map;
    unsigned n_dids;

    /* invalidation queue (inval.c): NULL queue = register-based */
    pthread_mutex_t qi_lock;
    uint64_t qi_pa;
    uint64_t *qi;                      /* 256 descriptors of 16 bytes (32 on units
                                          with ECAP.SMTS: IQA.DW, as Linux) */
    unsigned qi_tail;
    uint64_t qi_status_pa;             /* the wait descriptors' status words */
    _Atomic uint32_t *qi_status;
    uint32_t qi_seq;

    struct intel_ir *ir;               /* NULL: remapping off */
    struct intel_fault *fault;
    struct vtio_iommu_domain *identity;   /* the unit's shared identity domain */
};

/* dmar.c: the driver as the core sees it. */
struct intel_drv {
    struct vtio_host *host;
    struct intel_iommu *unit[VTIO_DMAR_MAX_DRHD];
    unsigned n_units;
};

/* Brings every unit of the DMAR table up and registers with the core.
 * @returns 0; -ENODEV no DMAR table; -EIO a unit misbehaved; -ENOMEM. */
int intel_iommu_init(struct vtio_host *h);

/* iommu.c */
int intel_unit_init(struct intel_iommu *u, struct vtio_host *h, const struct vtio_dmar_drhd *d,
                    unsigned seq);
/* TE on (after the default domains are attached) / everything off. */
int intel_unit_enable_translation(struct intel_iommu *u);
void intel_unit_shutdown(struct intel_iommu *u);
/* Sets (on) or clears one GCMD bit and waits for GSTS to follow; one-shot
 * bits (SRTP, SIRTP, WBF) are written once and waited for.  @returns 0;
 * -EIO GSTS did not follow. */
int intel_gcmd(struct intel_iommu *u, uint32_t bit, bool on);
/* The entry a device with requester id rid uses (allocates the context
 * table on demand).  Legacy: 16 bytes; scalable: 32.  NULL: -ENOMEM.
 * Caller holds ctx_lock. */
uint64_t *intel_context_entry(struct intel_iommu *u, uint16_t rid);
int intel_did_alloc(struct intel_iommu *u);
void intel_did_free(struct intel_iommu *u, unsigned did);

/* inval.c: every call waits for completion.  Granularities VTD_INV_*. */
int intel_inval_init(struct intel_iommu *u);       /* QI on if ECAP.QI */
void intel_inval_exit(struct intel_iommu *u);      /* QI off */
void intel_flush_context(struct intel_iommu *u, unsigned gran, uint16_t did, uint16_t sid);
void intel_flush_iotlb(struct intel_iommu *u, unsigned gran, uint16_t did, uint64_t addr,
                       unsigned am);
/* Page-selective with the smallest address mask that covers [start, end)
 * when CAP.PSI allows and the mask is <= CAP.MAMV; else domain-selective. */
void intel_flush_iotlb_range(struct intel_iommu *u, uint16_t did, uint64_t start,
                             uint64_t end);
/* Scalable mode: the PASID-cache entries of a domain (after a PASID entry
 * changed); did 0 (never a domain's): every entry (global). */
void intel_flush_pasid_cache(struct intel_iommu *u, uint16_t did, uint32_t pasid);
/* Interrupt entry cache: global, or `count` (power of two) entries from index. */
void intel_flush_iec(struct intel_iommu *u, bool global, unsigned index, unsigned count);
/* Submits n 128-bit descriptors followed by a wait, and waits.  @returns 0;
 * -EIO the unit reported a queue error (IQE/ITE: the queue is recovered). */
int intel_qi_submit(struct intel_iommu *u, const uint64_t (*desc)[2], unsigned n);

/* domain.c */
struct vtio_iommu_domain *intel_domain_alloc(void *drv, void *unit,
                                             enum vtio_iommu_domain_type t);
extern const struct vtio_iommu_domain_ops intel_domain_ops;

/* irq_remap.c: enables remapping on u (the first unit also installs
 * h->irq_remap).  @returns 0 or -errno. */
int intel_ir_enable(struct intel_iommu *u);
void intel_ir_disable(struct intel_iommu *u);

/* fault.c */
int intel_fault_init(struct intel_iommu *u);
void intel_fault_exit(struct intel_iommu *u);
/* Reads and clears every recorded fault now, reporting each to the core. */
void intel_fault_sync(struct intel_iommu *u);
const char *intel_fault_reason_str(uint8_t reason);

/* Entry stores the unit may read concurrently. */
static inline void intel_store_entry(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline uint64_t intel_load_entry(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

#endif
