/*
 * Interrupt remapping as the host's PCI MSI code sees it (Linux's irq
 * domain hierarchy: the IR domain sits between the vector domain and the
 * PCI-MSI domain).  Not part of the public API.
 *
 * When an IOMMU driver enables interrupt remapping it sets h->irq_remap;
 * from then on src/host/pci/irq.c asks it for every MSI-X message instead
 * of composing a compatibility-format one: the driver fills an interrupt
 * remapping table entry (destination, vector, and the requester id that
 * alone may use it) and returns the remappable-format message that selects
 * that entry.  Multiple-message MSI needs a block instead: one message for
 * n vectors, the function putting the vector number in the data's low
 * bits; the driver reserves n consecutive entries, the message selects the
 * first with the data as subhandle (SHV), and each entry is filled when
 * its vector is requested.
 */
#ifndef VTIO_HOST_IRQ_REMAP_H
#define VTIO_HOST_IRQ_REMAP_H

#include <vtio/common.h>

struct vtio_irq_remap_ops {
    /* An entry delivering `vector` to `cpu`, usable only by requests from
     * rid, and the message that selects it.  @returns the entry's handle
     * (>= 0); -ENOSPC table full; -ENODEV no unit remaps rid's interrupts;
     * -EINVAL cpu or vector the entry cannot hold. */
    int (*alloc)(void *ctx, uint16_t rid, unsigned cpu, unsigned vector, uint64_t *addr,
                 uint32_t *data);
    /* Clears the entry (every entry of a block) and invalidates the unit's
     * cached copy; when this returns no message can use it. */
    void (*free)(void *ctx, int handle);
    /* A block of n entries (n a power of two, 1..32), consecutive and
     * aligned to n, usable only by rid and none present yet, and the
     * message that selects it: entry 0 and, when n > 1, SHV with data 0,
     * so that data i selects entry i.  @returns the block's handle (for
     * set_entry, clear_entry, free); -ENOSPC no such run free; -ENODEV no
     * unit remaps rid's interrupts; -EINVAL n. */
    int (*alloc_block)(void *ctx, uint16_t rid, unsigned n, uint64_t *addr, uint32_t *data);
    /* Makes entry i of a block deliver `vector` to `cpu`.  @returns 0;
     * -EINVAL not a block handle, i out of it, cpu or vector as alloc. */
    int (*set_entry)(void *ctx, int handle, unsigned i, unsigned cpu, unsigned vector);
    /* Makes entry i of a block not present again (invalidated: when this
     * returns no message can use it); the block stays reserved. */
    void (*clear_entry)(void *ctx, int handle, unsigned i);
};

struct vtio_irq_remap {
    const struct vtio_irq_remap_ops *ops;
    void *ctx;
};

#endif
