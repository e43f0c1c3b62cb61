/*
 * Private state shared by the PCI enumeration (enum.c) and its MSI-X
 * interrupt code (irq.c).  Not part of the public API.
 *
 * Each function found gets a vtio_pci_fn_priv: its lock serialises
 * read-modify-write of COMMAND and all MSI-X state changes of that function;
 * `owner` identifies the enumeration it came from, so calls given a
 * function of another host are refused.
 */
#ifndef VTIO_HOST_PCI_PRIV_H
#define VTIO_HOST_PCI_PRIV_H

#include <vtio/machine.h>
#include <vtio/pci_enum.h>

#include <pthread.h>
#include <stdatomic.h>

struct vtio_irq_remap;

struct vtio_pci_irq {
    bool used;
    unsigned cpu, vector;
    /* With interrupt remapping: the hook that made the entry's message and
     * its handle, given back after the entry is masked.  NULL: the message
     * is in compatibility format. */
    struct vtio_irq_remap *remap;
    int remap_handle;
};

struct vtio_pci_fn_priv {
    pthread_mutex_t lock;
    struct vtio_pci_enum *owner;
    /* MSI-X, under lock */
    bool msix_on;
    unsigned nvec;
    struct vtio_pci_irq *irq;        /* nvec entries */
    struct vtio_intr *intr;          /* the sink the vectors came from */
};

struct vtio_pci_enum {
    struct vtio_mem *mem;
    struct vtio_firmware fw;
    struct vtio_pci_function *fns;   /* scan order */
    unsigned n;
    atomic_uint next_cpu;            /* round-robin for VTIO_PCI_IRQ_ANY_CPU */
};

/* Frees the function's vectors and turns MSI-X off if it is on (irq.c).
 * Called with the function's lock held. */
void vtio_pci_msix_teardown_locked(const struct vtio_pci_function *fn);

#endif
