/*
 * Private state shared by the PCI enumeration (enum.c) and its MSI-X/MSI
 * interrupt code (irq.c), and boot's ACS enabling (acs.c).  Not part of the
 * public API.
 *
 * Each function found gets a vtio_pci_fn_priv: its lock serialises
 * read-modify-write of COMMAND and all MSI-X/MSI state changes of that
 * function;
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

/* One vector (MSI-X entry or MSI vector number) of a function. */
struct vtio_pci_irq {
    bool used;                       /* a handler is requested */
    unsigned cpu, vector;
    /* MSI-X with interrupt remapping: the hook that made the entry's
     * message and its handle, given back after the entry is masked.  NULL:
     * the message is in compatibility format. */
    struct vtio_irq_remap *remap;
    int remap_handle;
    /* MSI without remapping: the vector reserved at enable calls `handler`
     * through irq.c's dispatcher while `armed`; `running` counts the
     * dispatcher calls in progress (see irq.c). */
    vtio_intr_handler handler;
    void *opaque;
    atomic_bool armed;
    atomic_uint running;
};

struct vtio_pci_fn_priv {
    pthread_mutex_t lock;
    struct vtio_pci_enum *owner;
    /* MSI-X or MSI, under lock */
    enum vtio_pci_irq_type type;
    unsigned nvec;
    struct vtio_pci_irq *irq;        /* nvec entries */
    struct vtio_intr *intr;          /* the sink the vectors came from */
    /* MSI: the block its one message names.  With remapping, msi_remap's
     * block of nvec entries; without, CPU vectors msi_base.. on msi_cpu. */
    struct vtio_irq_remap *msi_remap;
    int msi_remap_handle;
    unsigned msi_cpu, msi_base;
};

struct vtio_pci_enum {
    struct vtio_mem *mem;
    struct vtio_firmware fw;
    struct vtio_pci_function *fns;   /* scan order */
    unsigned n;
    atomic_uint next_cpu;            /* round-robin for VTIO_PCI_IRQ_ANY_CPU */
};

/* Frees the function's vectors and turns MSI-X or MSI off, whichever is
 * on (irq.c).  Called with the function's lock held. */
void vtio_pci_irqs_teardown_locked(const struct vtio_pci_function *fn);

/* Turns on ACS Source Validation, P2P Request/Completion Redirect and
 * Upstream Forwarding, where offered, on every function h->pci found (acs.c);
 * boot calls it when an IOMMU is to be used, before groups are formed. */
void vtio_pci_enable_acs(struct vtio_host *h);

#endif
