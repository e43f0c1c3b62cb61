/*
 * pci_enum: the operating system's view of PCI, and what drivers use of it.
 *
 * vtio_pci_enumerate() does what a kernel does at boot with the firmware's
 * description (ACPI MCFG and the host bridge's windows): it scans every bus
 * of the segment through ECAM (config space of bus b, device d, function f
 * at ecam_base + ((b - bus_start) << 20 | d << 15 | f << 12), read with
 * ordinary CPU loads), function 0 of each device and functions 1-7 only when
 * function 0 is multifunction; it decodes ids, class, the capability list
 * (MSI, MSI-X, PCI Express), the MSI vector count and features and the
 * MSI-X table/PBA location; it sizes every memory BAR (memory decode off
 * while sizing), places them in the firmware windows (64-bit BARs in the
 * 64-bit window, 32-bit BARs below 4 GiB, each aligned to its size, largest
 * first) and turns memory decoding on.
 *
 * Drivers then find their function, reach its configuration space with the
 * vtio_pci_cfg_* accessors, its registers with vtio_pci_bar_mmio(), turn
 * bus mastering on, and use MSI-X or MSI the way Linux drivers use
 * pci_alloc_irq_vectors() and request_irq(): vtio_pci_msix_enable() or
 * vtio_pci_msi_enable() once, then vtio_pci_request_irq() per vector (the
 * per-vector calls serve whichever of the two is enabled).  Nothing here reaches the machine
 * other than through memory accesses (ECAM, BAR MMIO) and the interrupt
 * vector table (vtio_intr_alloc_vector / unregister).
 *
 * Promises: the function list and each function's decoded fields are fixed
 * after enumeration (drivers may keep the pointers until the enumeration is
 * destroyed); BARs of all functions are disjoint and lie inside the windows.
 *
 * Threads: enumeration and destruction from one thread, with no other call
 * running.  Config accessors may be called from any thread (a config access
 * is a single memory access); read-modify-write helpers (set_master) and the
 * MSI-X/MSI calls are serialised per function by a lock.  The irq calls must not
 * be made from an interrupt handler.
 */
#ifndef VTIO_PCI_ENUM_H
#define VTIO_PCI_ENUM_H

#include <vtio/common.h>
#include <vtio/intr.h>
#include <vtio/mmio.h>

struct vtio_mem;
struct vtio_firmware;
struct vtio_host;
struct vtio_pci_enum;
struct vtio_pci_fn_priv;

#define VTIO_PCI_NUM_BARS   6
#define VTIO_PCI_ANY_ID     0xffffu        /* vtio_pci_find(): any vendor/device */
#define VTIO_PCI_IRQ_ANY_CPU (~0u)         /* vtio_pci_request_irq(): round-robin */

/* A memory BAR as enumeration found and placed it. */
struct vtio_pci_bar {
    uint64_t base;           /* physical address (0 if size is 0) */
    uint64_t size;           /* bytes; 0: no BAR here (or the upper half of a
                                64-bit BAR, or an I/O BAR, which vtio leaves
                                unassigned: the machine has no I/O space) */
    bool is_64bit;           /* this slot and the next form one BAR */
    bool prefetchable;
    bool is_io;              /* an I/O-space BAR (not placed) */
};

/* One function found on the bus. */
struct vtio_pci_function {
    struct vtio_mem *mem;    /* the CPU's view, for ECAM and BAR accesses */
    uint64_t cfg_base;       /* ECAM address of its 4 KiB config space */
    uint16_t segment;
    uint16_t rid;            /* bus << 8 | device << 3 | function */
    uint8_t bus, dev, fn;
    uint16_t vendor_id, device_id;
    uint16_t subsystem_vendor_id, subsystem_id;
    uint32_t class_code;     /* class << 16 | subclass << 8 | prog-if */
    uint8_t revision;
    uint8_t header_type;     /* with the multifunction bit */
    /* Capability offsets in config space, 0 if absent. */
    uint8_t cap_msi, cap_msix, cap_exp;
    /* MSI (valid when cap_msi != 0): Multiple Message Capable as a count
     * (1, 2, 4, ... 32), 64-bit message address, per-vector mask and
     * pending bits. */
    unsigned msi_vectors;
    bool msi_64bit, msi_maskable;
    /* MSI-X (valid when cap_msix != 0). */
    unsigned msix_table_size;          /* vectors */
    uint8_t msix_table_bir, msix_pba_bir;
    uint32_t msix_table_offset, msix_pba_offset;
    struct vtio_pci_bar bar[VTIO_PCI_NUM_BARS];
    struct vtio_pci_fn_priv *priv;     /* enumeration's private state */
};

/*
 * Scans the segment that fw describes, places the BARs and enables memory
 * decoding (see the top of this file).
 * @returns 0 and *out; -EINVAL NULL argument or a firmware description
 * without ECAM; -ENOSPC the BARs do not fit a window (then no BAR was
 * written); -ENOMEM.
 */
VTIO_API int vtio_pci_enumerate(struct vtio_mem *mem, const struct vtio_firmware *fw,
                                struct vtio_pci_enum **out);
/* Releases the vectors of functions that still have MSI-X or MSI enabled
 * and turns it off on them, turns bus mastering off on every function (so no
 * device DMA outlives the OS), and frees the list.  NULL is a no-op. */
VTIO_API void vtio_pci_enum_destroy(struct vtio_pci_enum *e);

VTIO_API unsigned vtio_pci_count(const struct vtio_pci_enum *e);
/* The i-th function in scan order (bus, device, function); NULL past the end. */
VTIO_API const struct vtio_pci_function *vtio_pci_get(const struct vtio_pci_enum *e,
                                                      unsigned i);
/* The index-th function (0, 1, ...) with these ids in scan order;
 * VTIO_PCI_ANY_ID matches anything.  NULL if there is none. */
VTIO_API const struct vtio_pci_function *vtio_pci_find(const struct vtio_pci_enum *e,
                                                       uint16_t vendor, uint16_t device,
                                                       unsigned index);
/* The function with this requester id; NULL if none. */
VTIO_API const struct vtio_pci_function *vtio_pci_find_rid(const struct vtio_pci_enum *e,
                                                           uint16_t rid);

/*
 * Configuration space accessors (ECAM loads and stores).  off must be a
 * multiple of the size and below 4096; otherwise reads return all ones and
 * writes are dropped (a driver bug, reported in vtio_last_error()).
 */
VTIO_API uint32_t vtio_pci_cfg_read32(const struct vtio_pci_function *fn, uint16_t off);
VTIO_API uint16_t vtio_pci_cfg_read16(const struct vtio_pci_function *fn, uint16_t off);
VTIO_API uint8_t vtio_pci_cfg_read8(const struct vtio_pci_function *fn, uint16_t off);
VTIO_API void vtio_pci_cfg_write32(const struct vtio_pci_function *fn, uint16_t off,
                                   uint32_t v);
VTIO_API void vtio_pci_cfg_write16(const struct vtio_pci_function *fn, uint16_t off,
                                   uint16_t v);
VTIO_API void vtio_pci_cfg_write8(const struct vtio_pci_function *fn, uint16_t off,
                                  uint8_t v);

/* The offset of fn's first extended capability with this ID (PCIe Base
 * 7.6.3, the list from 0x100), like Linux's pci_find_ext_capability().
 * @returns the offset, or 0 if there is none (no PCI Express capability,
 * an empty list, or a malformed one: the walk is bounded). */
VTIO_API uint16_t vtio_pci_find_ext_capability(const struct vtio_pci_function *fn,
                                               uint16_t id);

/* Sets or clears COMMAND.BME (the function's DMA).  Read-modify-write under
 * the function's lock. */
VTIO_API void vtio_pci_set_master(const struct vtio_pci_function *fn, bool on);

/* A handle on memory BAR `bar` (0-5) as placed.
 * @returns 0 and *out; -EINVAL bar out of range, no memory BAR there (empty
 * slot, upper half of a 64-bit BAR, I/O BAR) or out NULL. */
VTIO_API int vtio_pci_bar_mmio(const struct vtio_pci_function *fn, unsigned bar,
                               struct vtio_mmio *out);

/*
 * Enables MSI-X with nvec vectors (entries 0..nvec-1 usable), like
 * pci_alloc_irq_vectors(..., PCI_IRQ_MSIX).  The capability is enabled with
 * the function mask set while every table entry is masked, then the function
 * mask is cleared: no vector fires until vtio_pci_request_irq() unmasks it.
 * INTx is disabled.
 * @returns 0; -EINVAL fn not from h's enumeration, nvec 0 or over the table
 * size; -ENODEV no MSI-X capability, or its table is not inside a placed
 * BAR; -EBUSY MSI-X or MSI already enabled; -ENOMEM.
 */
VTIO_API int vtio_pci_msix_enable(struct vtio_host *h, const struct vtio_pci_function *fn,
                                  unsigned nvec);

/*
 * Enables MSI with nvec vectors (0..nvec-1), like pci_alloc_irq_vectors(...,
 * PCI_IRQ_MSI): Multiple Message Enable = log2(nvec), so the function sends
 * the message data with its low log2(nvec) bits replaced by the vector
 * number.  Every vector is masked (when the capability has mask bits)
 * before the capability is enabled, and the message address and data are
 * written before: a vector raised before vtio_pci_request_irq() stays
 * pending (with mask bits) and never reaches a handler.  INTx is disabled.
 *  - With interrupt remapping on, a block of nvec consecutive remapping
 *    entries (aligned to nvec) is reserved for this function, none present
 *    until its vector is requested; the message names the block (SHV set
 *    when nvec > 1, subhandle = vector number), as Linux's intel
 *    irq_remapping does for multi-MSI.  Each vector can go to any cpu.
 *  - Without it, the data is a CPU vector, so the nvec vectors are one
 *    aligned block of free vectors on one cpu (chosen round-robin here;
 *    see vtio_pci_request_irq() for moving it) and all of them are
 *    delivered there; they stay reserved until vtio_pci_msi_disable().
 * @returns 0; -EINVAL fn not from h, nvec 0, not a power of two or over
 * fn->msi_vectors; -ENODEV no MSI capability; -EBUSY MSI or MSI-X already
 * enabled; -ENOSPC no aligned block of nvec free vectors on any cpu (no
 * remapping), or no nvec free consecutive remapping entries; -ENOMEM.
 */
VTIO_API int vtio_pci_msi_enable(struct vtio_host *h, const struct vtio_pci_function *fn,
                                 unsigned nvec);

/* Frees every vector still requested, gives the reserved vectors or
 * remapping entries back, then turns MSI off (and INTx back on).
 * @returns 0; -EINVAL fn not from h or MSI not enabled. */
VTIO_API int vtio_pci_msi_disable(struct vtio_host *h, const struct vtio_pci_function *fn);

/* Which kind of message-signalled interrupt fn has enabled. */
enum vtio_pci_irq_type {
    VTIO_PCI_IRQ_NONE = 0,
    VTIO_PCI_IRQ_MSI = 1,
    VTIO_PCI_IRQ_MSIX = 2,
};

/* The kind enabled on fn and, if nvec is not NULL, how many vectors
 * (0 with VTIO_PCI_IRQ_NONE).  VTIO_PCI_IRQ_NONE also when fn is not from
 * h (then vtio_last_error() says so). */
VTIO_API enum vtio_pci_irq_type vtio_pci_irq_type(struct vtio_host *h,
                                                  const struct vtio_pci_function *fn,
                                                  unsigned *nvec);

/*
 * The per-vector calls below work on whichever of MSI-X and MSI is enabled;
 * `index` is the MSI-X table entry or the MSI vector number.
 *
 * Routes vector `index` to `handler`, like request_irq(): allocates a
 * free vector on `cpu` (VTIO_PCI_IRQ_ANY_CPU: CPUs in turn) with
 * vtio_intr_alloc_vector(), writes the entry's message address and data
 * through the table's BAR and unmasks it: a compatibility-format message
 * (vtio_msi_compose), or, with interrupt remapping on, a remappable-format
 * one that selects an IRTE only this function may use.  A vector the
 * device raised while masked is delivered now.  The handler runs as
 * intr.h describes (on the device's thread, short, non-blocking).
 * MSI: with remapping, a vector is allocated on `cpu` and the vector's
 * entry of the block is made present; without remapping the vector
 * reserved at enable is used: a `cpu` other than the block's moves the
 * block there if no vector has a handler yet (else -EINVAL), so the first
 * request picks the cpu of all.  Then its mask bit is cleared.  Without mask bits the
 * vector is live from here on (and before, a raise was dropped: an IR
 * fault with remapping, nothing without).
 * @returns 0; -EINVAL fn not from h, neither MSI-X nor MSI enabled,
 * index >= nvec, no handler, cpu out of range (or, MSI without remapping,
 * not the cpu other vectors with handlers use); -EBUSY the entry already
 * has a handler; -ENOSPC no free vector (MSI without remapping: no aligned
 * block of nvec) on that cpu, or no free remapping entry.
 */
VTIO_API int vtio_pci_request_irq(struct vtio_host *h, const struct vtio_pci_function *fn,
                                  unsigned index, vtio_intr_handler handler, void *opaque,
                                  unsigned cpu);

/* Where vector `index` is routed.  @returns 0 and *cpu, *vector; -EINVAL fn
 * not from h, MSI-X and MSI off, index out of range; -ENOENT no handler on
 * it. */
VTIO_API int vtio_pci_irq_vector(struct vtio_host *h, const struct vtio_pci_function *fn,
                                 unsigned index, unsigned *cpu, unsigned *vector);

/*
 * Undoes vtio_pci_request_irq(): masks the vector, then unregisters the
 * handler (when this returns, no call of it is running; a message raised
 * meanwhile stays pending in the PBA or the MSI pending bits).  MSI with
 * remapping: the entry of the block is made not present again; without
 * mask bits a raise from then on is an IR fault (remapping) or dropped.
 * @returns 0; -EINVAL fn not from h, MSI-X and MSI off, index out of
 * range; -ENOENT no handler on that entry.
 */
VTIO_API int vtio_pci_free_irq(struct vtio_host *h, const struct vtio_pci_function *fn,
                               unsigned index);

/*
 * Masks (masked = true) or unmasks vector `index` at the function, for
 * callers such as VFIO that gate a requested vector without freeing it.
 * While masked the function keeps a raise pending (MSI-X PBA, MSI pending
 * bits) and sends it when unmasked, so nothing is lost; raises while
 * masked merge into one.  vtio_pci_request_irq() unmasks, free masks.
 * @returns 0; -EINVAL fn not from h, MSI-X and MSI off, index out of
 * range; -ENOENT no handler on it; -EOPNOTSUPP MSI without mask bits.
 */
VTIO_API int vtio_pci_irq_mask(struct vtio_host *h, const struct vtio_pci_function *fn,
                               unsigned index, bool masked);

/* Frees every vector still requested, then turns MSI-X off (and INTx back
 * on), like pci_free_irq_vectors().
 * @returns 0; -EINVAL fn not from h or MSI-X not enabled. */
VTIO_API int vtio_pci_msix_disable(struct vtio_host *h, const struct vtio_pci_function *fn);

#endif
