/*
 * dma_port: the one door through which a device reaches memory.
 *
 * Every bus master owns a port, named by its requester id.  A port moves data
 * between device buffers and the physical address space, asking first the
 * translator that serves its requester id (an IOMMU, from the VT-d part of
 * the machine) and going straight to physical memory when there is none.
 * Devices never see which: a device model written against this port works
 * unchanged behind an IOMMU.
 *
 * Semantics a device relies on:
 *  - An access is refused whole.  Every byte of the range is translated and
 *    checked before the first byte moves; if any of it faults the call
 *    returns an error and nothing is read or written.
 *  - With bus mastering disabled (PCI COMMAND.BME clear) every access fails
 *    with -EPERM (the request never leaves the function).
 *  - Naturally aligned accesses of up to 8 bytes are single-copy atomic and
 *    ordered as vtio_mem promises: a device that writes data and then a
 *    status word publishes both.
 *  - An interrupt is a posted write like any other, so it is ordered after
 *    the device's earlier writes on the same thread.  A 4-byte aligned
 *    vtio_dma_write() into the window 0xFEE00000-0xFEEFFFFF is an interrupt
 *    message (it goes through vtio_dma_msi()); any other data access that
 *    touches the window, or that an IOMMU translates into it, is refused.
 *
 * A malicious device model has two powers a compliant one never uses: it
 * may put another function's requester id on its requests
 * (vtio_dma_port_forge_rid) and it may go on issuing requests with bus
 * mastering disabled (vtio_dma_port_ignore_bme).  What stands against the
 * first is the fabric: a root or switch port with ACS Source Validation
 * enabled drops a request whose requester id is not from below it.  The bus
 * installs that check (vtio_dma_port_set_source_check); it runs only for a
 * forged requester id, so honest traffic never pays for it.
 *
 * Threads: a port may be used by many device threads at once; configuration
 * (bus master, translator, forged id) may change concurrently and takes
 * effect for the next access.
 */
#ifndef VTIO_DMA_PORT_H
#define VTIO_DMA_PORT_H

#include <vtio/common.h>
#include <stdatomic.h>

struct vtio_mem;

enum vtio_dma_access {
    VTIO_DMA_READ  = 1,   /* the device reads memory */
    VTIO_DMA_WRITE = 2,   /* the device writes memory */
};

/*
 * What stands between a requester and memory: an IOMMU.  Both calls run on
 * the device's thread.
 *
 * translate(): map [iova, iova + len) for an access by requester rid to the
 * physical address *pa; *span is how many bytes from iova map contiguously
 * (1..len).  Returns 0, or a negative errno when the access is refused
 * (-EFAULT not mapped, -EACCES permission); the translator records the fault
 * as its hardware would.
 *
 * msi(): an interrupt request (a write to the 0xFEEx_xxxx window).  Returns 0
 * when the message was handled (remapped, or blocked and recorded), or
 * -ENOSYS to let the write go on to memory untranslated.
 *
 * access_begin() / access_end() (optional) bracket every access, both of its
 * passes: an IOMMU uses them to wait out DMA in flight when it invalidates
 * (the invalidation-wait guarantee).
 */
struct vtio_dma_translator_ops {
    int (*translate)(void *opaque, uint16_t rid, uint64_t iova, uint64_t len,
                     enum vtio_dma_access access, uint64_t *pa, uint64_t *span);
    int (*msi)(void *opaque, uint16_t rid, uint64_t addr, uint32_t data);
    void (*access_begin)(void *opaque);
    void (*access_end)(void *opaque);
};

struct vtio_dma_translator {
    const struct vtio_dma_translator_ops *ops;
    void *opaque;
};

struct vtio_dma_port_stats {
    uint64_t reads, writes;          /* completed accesses */
    uint64_t bytes_read, bytes_written;
    uint64_t faults;                 /* accesses refused (fault or hole) */
    uint64_t master_aborts;          /* accesses with bus mastering off */
    uint64_t msis;                   /* interrupt messages sent */
    uint64_t source_violations;      /* forged requester ids the fabric dropped */
};

/*
 * The fabric's check of a request's requester id (ACS Source Validation),
 * called for a request whose requester id req_rid is not the function's
 * own (rid).  Returns 0 to let it through, -EPERM to drop it.
 */
typedef int (*vtio_dma_source_check_fn)(void *opaque, uint16_t rid, uint16_t req_rid);

struct vtio_dma_port {
    struct vtio_mem *mem;
    uint16_t rid;                                    /* requester id */
    _Atomic uint16_t req_rid;                        /* what requests carry: rid
                                                        unless forged */
    _Atomic(bool) bus_master;                        /* COMMAND.BME */
    _Atomic(bool) ignore_bme;                        /* a malicious model's */
    vtio_dma_source_check_fn source_check;           /* NULL: nothing checks */
    void *source_opaque;
    _Atomic(const struct vtio_dma_translator *) xlat; /* NULL: no IOMMU */
    struct {
        _Atomic uint64_t reads, writes, bytes_read, bytes_written;
        _Atomic uint64_t faults, master_aborts, msis, source_violations;
    } stats;
};

/* A fresh port: bus mastering off, no translator. */
VTIO_API void vtio_dma_port_init(struct vtio_dma_port *port, struct vtio_mem *mem,
                                 uint16_t rid);
VTIO_API void vtio_dma_port_set_bus_master(struct vtio_dma_port *port, bool on);
/* xlat must stay valid while set (NULL removes it). */
VTIO_API void vtio_dma_port_set_translator(struct vtio_dma_port *port,
                                           const struct vtio_dma_translator *xlat);
/* Set once by the bus that plugs the function in, before any access. */
VTIO_API void vtio_dma_port_set_source_check(struct vtio_dma_port *port,
                                             vtio_dma_source_check_fn fn, void *opaque);
/* A malicious model's powers (see the top comment).  forge_rid(port,
 * port->rid) stops forging. */
VTIO_API void vtio_dma_port_forge_rid(struct vtio_dma_port *port, uint16_t rid);
VTIO_API void vtio_dma_port_ignore_bme(struct vtio_dma_port *port, bool ignore);
VTIO_API void vtio_dma_port_get_stats(struct vtio_dma_port *port,
                                      struct vtio_dma_port_stats *st);

/*
 * Data movement.  All return 0, or: -EPERM bus mastering off, or a forged
 * requester id the fabric dropped; -EFAULT a hole
 * or an unmapped IOVA; -EACCES an IOMMU permission fault; -EINVAL a range
 * that wraps.  On error nothing was read or written.
 */
VTIO_API int vtio_dma_read(struct vtio_dma_port *port, uint64_t addr, void *buf, size_t len);
VTIO_API int vtio_dma_write(struct vtio_dma_port *port, uint64_t addr, const void *buf,
                            size_t len);
/* Checks that [addr, addr + len) may be accessed, without accessing it
 * (a write check also refuses the interrupt window). */
VTIO_API int vtio_dma_check(struct vtio_dma_port *port, uint64_t addr, uint64_t len,
                            enum vtio_dma_access access);
/* vtio_dma_check() that also says where: on failure *fault is the first
 * address refused.  Translation stops there, so an IOMMU records one fault. */
VTIO_API int vtio_dma_find_fault(struct vtio_dma_port *port, uint64_t addr, uint64_t len,
                                 enum vtio_dma_access access, uint64_t *fault);
/* Memory to memory inside the device's data path, without a staging copy.
 * A fault on the source is reported as such: *which (if not NULL) is set to
 * VTIO_DMA_READ or VTIO_DMA_WRITE for the side that failed. */
VTIO_API int vtio_dma_copy(struct vtio_dma_port *port, uint64_t dst, uint64_t src,
                           uint64_t len, enum vtio_dma_access *which);
/* Writes len bytes of an 8-byte pattern (byte i gets pattern byte i % 8). */
VTIO_API int vtio_dma_fill(struct vtio_dma_port *port, uint64_t dst, uint64_t pattern,
                           uint64_t len);
/* Compares two buffers; *diff = offset of the first differing byte, or len. */
VTIO_API int vtio_dma_compare(struct vtio_dma_port *port, uint64_t a, uint64_t b,
                              uint64_t len, uint64_t *diff);
/* Sends an interrupt message: a 4-byte write of data at addr. */
VTIO_API int vtio_dma_msi(struct vtio_dma_port *port, uint64_t addr, uint32_t data);

#endif
