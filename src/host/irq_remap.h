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
 * that entry.
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
    /* Clears the entry and invalidates the unit's cached copy; when this
     * returns no message can use it. */
    void (*free)(void *ctx, int handle);
};

struct vtio_irq_remap {
    const struct vtio_irq_remap_ops *ops;
    void *ctx;
};

#endif
