/*
 * rogue: a malicious PCI device, driven by a script (the attack suite,
 * include/vtio/attack.h, or a test).
 *
 * To the host it looks like any other function: an identity, a small BAR of
 * registers, an MSI-X capability with VTIO_ROGUE_VECTORS vectors (table and
 * PBA in BAR2), Function Level Reset.  A driver can bind to it, map memory
 * for it and give it interrupts.  What it then does with its DMA port is up
 * to whoever holds the struct vtio_rogue: read or write any address, send
 * any interrupt message, put another function's requester id on its
 * requests, ignore a cleared Bus Master Enable.  It reaches memory only
 * through its DMA port like every device, so whatever stands between a
 * device and memory (an IOMMU, interrupt remapping, ACS at the port above
 * it) applies to it exactly as to an honest device.
 *
 * The card may have more functions (up to VTIO_ROGUE_FUNCTIONS): function 0
 * is the one drivers bind to; the others are accomplices with the same
 * identity and nothing else, there for their requester ids (an attack that
 * needs many sources, such as overflowing the IOMMU's fault log, drives
 * their DMA ports directly).
 *
 * Two ways to drive it:
 *  - one access at a time, from the caller's thread (vtio_rogue_read ...);
 *  - a loop on the device's own thread that repeats one access as fast as it
 *    can (vtio_rogue_loop_*), for attacks on a window in time: the caller
 *    marks a moment (say, right after an unmap returned) and the loop
 *    counts what got through after it.
 *
 * Threads: the single-access calls may come from any thread (the port is
 * thread-safe); one loop at a time; create and destroy from one thread.
 */
#ifndef VTIO_DEV_ROGUE_H
#define VTIO_DEV_ROGUE_H

#include <vtio/common.h>
#include <vtio/dma_port.h>

struct vtio_pci_bus;
struct vtio_pci_dev;
struct vtio_rogue;

/* ---- PCI identity */
#define VTIO_ROGUE_VENDOR_ID  0x5654      /* "VT", as the DMA engine */
#define VTIO_ROGUE_DEVICE_ID  0xbad0
#define VTIO_ROGUE_CLASS      0xff0000    /* unassigned class */
#define VTIO_ROGUE_VECTORS    4           /* MSI-X vectors */
#define VTIO_ROGUE_FUNCTIONS  8           /* at most, on one card */

/* ---- BARs: BAR0 (32-bit) 4 KiB of scratch registers, BAR2 (32-bit) MSI-X */
#define VTIO_ROGUE_BAR_REGS   0
#define VTIO_ROGUE_BAR_MSIX   2
#define VTIO_ROGUE_REGS_SIZE  0x1000
#define VTIO_ROGUE_MSIX_SIZE  0x1000
#define VTIO_ROGUE_MSIX_TABLE 0x000
#define VTIO_ROGUE_MSIX_PBA   0x800

/* Plugs the card into slot (busno, devfn): `functions` functions (1..8)
 * from devfn on, whose function number must then be 0.  The ports have no
 * translator; whoever builds the machine sets it, as for any function.
 * @returns 0 and *out; -EINVAL bad functions or slot; -EEXIST a slot is
 * taken (checked before any function is plugged in); -ENOMEM. */
VTIO_API int vtio_rogue_create(struct vtio_pci_bus *bus, uint8_t busno, uint8_t devfn,
                               unsigned functions, struct vtio_rogue **out);
/* Stops the loop if one runs; the function stays on the bus until the bus
 * is destroyed. */
VTIO_API void vtio_rogue_destroy(struct vtio_rogue *r);
/* Function 0, the rogue proper. */
VTIO_API struct vtio_pci_dev *vtio_rogue_pci(struct vtio_rogue *r);
/* Function fn of the card; NULL if it has no such function. */
VTIO_API struct vtio_pci_dev *vtio_rogue_function(struct vtio_rogue *r, unsigned fn);

/* ---- single accesses: vtio_dma_read/write/msi on its port (same errors) */
VTIO_API int vtio_rogue_read(struct vtio_rogue *r, uint64_t addr, void *buf, size_t len);
VTIO_API int vtio_rogue_write(struct vtio_rogue *r, uint64_t addr, const void *buf,
                              size_t len);
VTIO_API int vtio_rogue_msi(struct vtio_rogue *r, uint64_t addr, uint32_t data);
/* Raises MSI-X vector `vector` honestly (vtio_pci_msix_notify). */
VTIO_API int vtio_rogue_raise(struct vtio_rogue *r, unsigned vector);

/* ---- powers no honest device uses */
/* Requests carry `rid` from now on (vtio_rogue_pci's own id undoes it). */
VTIO_API void vtio_rogue_forge_rid(struct vtio_rogue *r, uint16_t rid);
VTIO_API void vtio_rogue_ignore_bme(struct vtio_rogue *r, bool ignore);

/* ---- the loop on the device's thread */
struct vtio_rogue_loop {
    enum vtio_dma_access access;   /* VTIO_DMA_READ or VTIO_DMA_WRITE */
    uint64_t addr;
    uint32_t len;                  /* 1..4096 */
    uint8_t fill;                  /* byte a write loop writes */
};

struct vtio_rogue_loop_stats {
    uint64_t accesses, ok;         /* all of them, and those that succeeded */
    /* Those that started after vtio_rogue_loop_mark(): */
    uint64_t after_mark, ok_after_mark;
    uint64_t last_ok_ns;           /* start of the last one that succeeded,
                                      ns after the mark (0: none did) */
};

/* Starts the loop and returns once its first access has completed.
 * @returns 0; -EINVAL bad loop; -EBUSY a loop runs; -ENOMEM. */
VTIO_API int vtio_rogue_loop_start(struct vtio_rogue *r, const struct vtio_rogue_loop *loop);
/* Marks now: accesses that start later are counted as after the mark. */
VTIO_API void vtio_rogue_loop_mark(struct vtio_rogue *r);
/* Stops the loop and says what it did.  @returns 0; -EINVAL no loop. */
VTIO_API int vtio_rogue_loop_stop(struct vtio_rogue *r, struct vtio_rogue_loop_stats *st);

#endif
