/*
 * host: the operating system that runs on a vtio machine (the software
 * half of the house, src/host/).
 *
 * vtio_host_boot() does what a kernel does at boot with what firmware told
 * it: builds the physical page allocator from the RAM map, enumerates PCI
 * through ECAM, sizes and places every BAR in the firmware's windows and
 * turns memory decoding on.  Drivers then find their functions, enable bus
 * mastering and MSI-X and request interrupt vectors, all through
 * configuration space, MMIO and the interrupt vector table.
 *
 * Threads: boot and shutdown from one thread.  The page allocator and the
 * irq calls are thread-safe.
 */
#ifndef VTIO_HOST_H
#define VTIO_HOST_H

#include <vtio/common.h>
#include <vtio/intr.h>
#include <vtio/machine.h>
#include <vtio/mmio.h>

struct vtio_page_alloc;
struct vtio_pci_enum;

struct vtio_host {
    struct vtio_mem *mem;              /* the CPUs' view of memory */
    struct vtio_intr *intr;            /* the CPUs' interrupt vector tables */
    struct vtio_firmware fw;
    struct vtio_page_alloc *pages;     /* machine RAM for tables and buffers */
    struct vtio_pci_enum *pci;         /* what enumeration found */
};

/* @returns 0 and *out; -ENOMEM; -ENOSPC if the BARs do not fit the windows. */
VTIO_API int vtio_host_boot(struct vtio_machine *m, struct vtio_host **out);
VTIO_API void vtio_host_shutdown(struct vtio_host *h);

#endif
