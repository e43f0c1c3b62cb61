/*
 * vtd: an Intel VT-d DMA- and interrupt-remapping unit.
 *
 * The unit is embeddable on its own.  Its creator supplies a narrow
 * platform interface (read and write physical memory, send an interrupt
 * message) and a description of what to implement (struct vtio_vtd_caps,
 * which becomes CAP and ECAP).  In return the unit offers:
 *  - its register file (vtio_vtd_reg_read/write: 4 KiB at the unit's base,
 *    VT-d offsets; 32- and 64-bit accesses; bad offsets read 0, writes to
 *    read-only bits are ignored);
 *  - translation of a DMA request (vtio_vtd_translate: request in, response
 *    out: an address and permissions, or a fault reason, recorded in the
 *    fault registers as the hardware would);
 *  - remapping of an interrupt request (vtio_vtd_interrupt);
 *  - a DMA-port translator (vtio_vtd_translator) so that vtio's machine
 *    puts it behind devices with no change to them.
 * Tables live in memory that the unit reads through the platform, in the
 * exact VT-d formats (include/vtio/vtd_regs.h): a table Linux would build,
 * this unit walks.
 *
 * Threads: any number of device threads may translate at once; an IOTLB hit
 * takes no lock.  Register accesses may come from any thread and are
 * serialised inside the unit.  The unit starts no threads: queued
 * invalidations are processed on the thread that writes IQT.
 *
 * The invalidation guarantee: once the status write of an invalidation-wait
 * descriptor is visible (or ICS.IWC is set), no DMA uses a translation that
 * the descriptors before it removed, including DMA that was already in
 * flight on other threads: the unit waits for accesses that started before
 * the invalidation (vtio_dma_port brackets every access) to finish.
 */
#ifndef VTIO_VTD_H
#define VTIO_VTD_H

#include <vtio/common.h>
#include <vtio/dma_port.h>
#include <vtio/mem.h>

struct vtio_vtd;

/* How the unit reaches the rest of the machine.  mem_read/mem_write return
 * 0 or a negative errno (the unit then reports a table access error). */
struct vtio_vtd_platform {
    int (*mem_read)(void *opaque, uint64_t pa, void *buf, size_t len);
    int (*mem_write)(void *opaque, uint64_t pa, const void *buf, size_t len);
    /* An interrupt message (compatibility format) leaving the unit: fault
     * events, invalidation completion events, and remapped interrupts.
     * May be NULL (messages are dropped).  Fault and invalidation events are
     * sent with a unit lock held (fault_lock / reg_lock), like a hard
     * interrupt: the callback must not call back into the unit (register
     * access, translate) on the same thread; defer that work. */
    void (*interrupt)(void *opaque, uint64_t addr, uint32_t data);
    void *opaque;
};

/* What the unit implements; zeroed fields take the defaults noted. */
struct vtio_vtd_caps {
    unsigned addr_width;      /* 39, 48 (default) or 57: MGAW, SAGAW up to it */
    bool no_2m_pages, no_1g_pages;    /* superpages are on by default */
    unsigned domain_id_bits;  /* 4..16 (CAP.ND = (bits-4)/2); default 16 */
    unsigned fault_regs;      /* number of FRCDs, 1..64; default 8 */
    bool caching_mode;        /* CAP.CM */
    bool no_queued_inv;       /* ECAP.QI (on by default) */
    bool no_intr_remap;       /* ECAP.IR (on by default) */
    bool device_tlb;          /* ECAP.DT: ATS */
    bool no_pass_through;     /* ECAP.PT (on by default) */
    bool scalable;            /* ECAP.SMTS (+PASID, SSTS) */
    bool first_level;         /* ECAP.FSTS (scalable only) */
    bool nested;              /* ECAP.NEST (scalable, first and second level) */
    unsigned pasid_bits;      /* 1..20; default 20 when scalable */
};

/* A DMA request as it reaches the unit. */
struct vtio_vtd_req {
    uint16_t sid;             /* requester id: bus << 8 | devfn */
    bool has_pasid;
    uint32_t pasid;
    uint64_t addr;            /* the IOVA (or GVA with PASID) */
    bool write;               /* else read */
    bool exec, priv;          /* execute / privileged-mode request (with PASID) */
    bool translated;          /* AT=translated (ATS): addr is already an HPA */
};

struct vtio_vtd_resp {
    int fault;                /* 0, or an enum vtd_fault_reason */
    uint64_t pa;              /* the translation of addr */
    uint64_t page_size;       /* size of the page (or run) that maps addr */
    bool read, write;         /* permissions of that page */
};

/*
 * @returns 0 and *out; -EINVAL caps that the spec does not allow (message
 * in vtio_last_error()): bad address width, first-level or nested without
 * scalable mode, interrupt remapping, device-TLBs or scalable mode without
 * queued invalidation, domain_id_bits odd or outside 4..16, more than 64
 * fault_regs, more than 20 pasid_bits; -EINVAL also for a NULL out or a
 * platform without mem_read/mem_write; -ENOMEM.
 */
VTIO_API int vtio_vtd_create(const struct vtio_vtd_caps *caps,
                             const struct vtio_vtd_platform *platform,
                             struct vtio_vtd **out);
VTIO_API void vtio_vtd_destroy(struct vtio_vtd *vtd);
/* Power-on state: translation and remapping off, caches empty. */
VTIO_API void vtio_vtd_reset(struct vtio_vtd *vtd);

VTIO_API uint64_t vtio_vtd_reg_read(struct vtio_vtd *vtd, uint64_t off, unsigned size);
VTIO_API void vtio_vtd_reg_write(struct vtio_vtd *vtd, uint64_t off, uint64_t val,
                                 unsigned size);
/* The register file as MMIO callbacks (opaque = the unit), for vtio_mem. */
VTIO_API extern const struct vtio_mmio_ops vtio_vtd_mmio_ops;

/*
 * Translates one request.  With translation disabled (GSTS.TES clear) the
 * address passes through.  A fault is recorded (unless suppressed by FPD)
 * and returned in resp->fault.
 * @returns 0 translated; -EFAULT fault (resp->fault says which);
 * -EINVAL a malformed request (not a hardware fault: bad PASID value).
 */
VTIO_API int vtio_vtd_translate(struct vtio_vtd *vtd, const struct vtio_vtd_req *req,
                                struct vtio_vtd_resp *resp);

/*
 * An ATS translation request from a device (the device-TLB fill): like
 * translate, but faults are returned, not recorded, and only for devices
 * whose context allows ATS.
 */
VTIO_API int vtio_vtd_ats_translate(struct vtio_vtd *vtd, const struct vtio_vtd_req *req,
                                    struct vtio_vtd_resp *resp);

/*
 * An interrupt request: the 4-byte write (addr, data) by requester sid.
 * With interrupt remapping on, a remappable-format message is looked up in
 * the IRTE and sent on in compatibility format; a compatibility-format one
 * passes only while GSTS.CFIS is set.  Blocked requests are recorded as
 * faults.  With remapping off the message passes unchanged.
 * @returns 0 sent on; -EFAULT blocked (and recorded).
 */
VTIO_API int vtio_vtd_interrupt(struct vtio_vtd *vtd, uint16_t sid, uint64_t addr,
                                uint32_t data);

/* The unit as a DMA-port translator, to put it behind devices. */
VTIO_API const struct vtio_dma_translator *vtio_vtd_translator(struct vtio_vtd *vtd);

struct vtio_vtd_stats {
    uint64_t translations, iotlb_hits, iotlb_misses, page_walks;
    uint64_t context_cache_hits, context_cache_misses;
    uint64_t faults_recorded, faults_suppressed;
    uint64_t interrupts_remapped, interrupts_blocked;
    uint64_t qi_descriptors, invalidation_waits;
    uint64_t faults_dropped;  /* not logged: PFO set, collapsed onto a pending
                                 FRCD of the same source, or FRCDs full */
};
VTIO_API void vtio_vtd_get_stats(struct vtio_vtd *vtd, struct vtio_vtd_stats *st);

#endif
