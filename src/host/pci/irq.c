/*
 * MSI-X for drivers: the pci_alloc_irq_vectors() / request_irq() half of
 * the OS's PCI code.
 *
 * The device side of MSI-X is a table in one of the function's BARs
 * (16-byte entries: message address low/high, data, vector control with
 * the mask bit) and the capability's control word (enable, function mask).
 * This file programs both through MMIO and config space, and takes CPU
 * vectors from the interrupt vector table (vtio_intr_alloc_vector), as an
 * OS's irq domain does.  An entry is unmasked only while a handler is
 * registered for the vector it points at; it is masked before the handler
 * goes away.
 *
 * With interrupt remapping on (h->irq_remap, src/host/irq_remap.h) the
 * message comes from the remapping driver instead: a remappable-format
 * message naming an entry of its table that delivers the vector to the cpu
 * and accepts only this function's requester id.  The entry is given back
 * after the MSI-X entry is masked, so no message can name a freed entry.
 *
 * Threads: every call takes the function's lock (pci_priv.h), so calls on
 * one function are serialised; calls on different functions run in
 * parallel.  Unmasking may deliver a pending message at once, on the
 * calling thread, with the lock held: handlers must not call back here
 * (intr.h already forbids blocking in handlers).
 */
#include <vtio/host.h>
#include <vtio/intr.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>

#include <errno.h>
#include <stdlib.h>

#include "host/irq_remap.h"
#include "host/pci/pci_priv.h"
#include "util/error.h"

/* The function's private state, if fn belongs to h's enumeration. */
static struct vtio_pci_fn_priv *priv_of(struct vtio_host *h,
                                        const struct vtio_pci_function *fn)
{
    if (!h || !fn || !fn->priv || !h->pci || fn->priv->owner != h->pci) {
        vtio_fail(-EINVAL, "pci: function is not one of this host's");
        return NULL;
    }
    return fn->priv;
}

static struct vtio_mmio msix_table(const struct vtio_pci_function *fn)
{
    const struct vtio_pci_bar *b = &fn->bar[fn->msix_table_bir];
    return (struct vtio_mmio){
        .mem = fn->mem,
        .base = b->base + fn->msix_table_offset,
        .size = (uint64_t)fn->msix_table_size * VTIO_PCI_MSIX_ENTRY_SIZE,
    };
}

static void entry_mask(const struct vtio_mmio *t, unsigned i, bool masked)
{
    uint64_t off = (uint64_t)i * VTIO_PCI_MSIX_ENTRY_SIZE + VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL;
    uint32_t ctrl = vtio_mmio_read32(t, off);
    ctrl = masked ? ctrl | VTIO_PCI_MSIX_ENTRY_CTRL_MASKBIT
                  : ctrl & ~(uint32_t)VTIO_PCI_MSIX_ENTRY_CTRL_MASKBIT;
    vtio_mmio_write32(t, off, ctrl);
}

/* Masks entry i and gives its remapping entry and vector back.  Lock held. */
static void release(const struct vtio_pci_function *fn, struct vtio_pci_fn_priv *p,
                    unsigned i)
{
    struct vtio_mmio t = msix_table(fn);
    struct vtio_pci_irq *irq = &p->irq[i];
    entry_mask(&t, i, true);
    if (irq->remap)
        irq->remap->ops->free(irq->remap->ctx, irq->remap_handle);
    vtio_intr_unregister(p->intr, irq->cpu, irq->vector);
    *irq = (struct vtio_pci_irq){ .used = false };
}

/* The message that reaches (cpu, vector) from fn: remapped when the host
 * remaps interrupts.  Fills *irq.  @returns 0; errors of the hook's alloc. */
static int make_message(struct vtio_host *h, const struct vtio_pci_function *fn,
                        unsigned cpu, unsigned vector, struct vtio_pci_irq *irq,
                        uint64_t *addr, uint32_t *data)
{
    *irq = (struct vtio_pci_irq){ .used = true, .cpu = cpu, .vector = vector };
    struct vtio_irq_remap *r = h->irq_remap;
    if (!r) {
        vtio_msi_compose(cpu, vector, addr, data);
        return 0;
    }
    int handle = r->ops->alloc(r->ctx, fn->rid, cpu, vector, addr, data);
    if (handle < 0)
        return handle;
    irq->remap = r;
    irq->remap_handle = handle;
    return 0;
}

void vtio_pci_msix_teardown_locked(const struct vtio_pci_function *fn)
{
    struct vtio_pci_fn_priv *p = fn->priv;
    if (!p->msix_on)
        return;
    for (unsigned i = 0; i < p->nvec; i++)
        if (p->irq[i].used)
            release(fn, p, i);
    uint16_t at = (uint16_t)(fn->cap_msix + VTIO_PCI_MSIX_FLAGS);
    uint16_t flags = vtio_pci_cfg_read16(fn, at);
    vtio_pci_cfg_write16(fn, at, flags | VTIO_PCI_MSIX_FLAGS_MASKALL);
    vtio_pci_cfg_write16(fn, at, flags & ~(VTIO_PCI_MSIX_FLAGS_ENABLE |
                                           VTIO_PCI_MSIX_FLAGS_MASKALL));
    uint16_t cmd = vtio_pci_cfg_read16(fn, VTIO_PCI_COMMAND);
    vtio_pci_cfg_write16(fn, VTIO_PCI_COMMAND, cmd & ~VTIO_PCI_COMMAND_INTX_DISABLE);
    free(p->irq);
    p->irq = NULL;
    p->nvec = 0;
    p->msix_on = false;
}

static int check_enable(const struct vtio_pci_function *fn, struct vtio_pci_fn_priv *p,
                        unsigned nvec)
{
    if (p->msix_on)
        return vtio_fail(-EBUSY, "pci: MSI-X is already enabled on %02x:%02x.%u",
                         fn->bus, fn->dev, fn->fn);
    if (!fn->cap_msix)
        return vtio_fail(-ENODEV, "pci: %02x:%02x.%u has no MSI-X capability", fn->bus,
                         fn->dev, fn->fn);
    if (nvec == 0 || nvec > fn->msix_table_size)
        return vtio_fail(-EINVAL, "pci: %u MSI-X vectors asked, the table has %u", nvec,
                         fn->msix_table_size);
    const struct vtio_pci_bar *b =
        fn->msix_table_bir < VTIO_PCI_NUM_BARS ? &fn->bar[fn->msix_table_bir] : NULL;
    uint64_t tsize = (uint64_t)fn->msix_table_size * VTIO_PCI_MSIX_ENTRY_SIZE;
    if (!b || b->size == 0 || b->is_io || fn->msix_table_offset > b->size ||
        tsize > b->size - fn->msix_table_offset)
        return vtio_fail(-ENODEV, "pci: the MSI-X table of %02x:%02x.%u is not inside a "
                         "placed BAR", fn->bus, fn->dev, fn->fn);
    if (fn->cap_msi && (vtio_pci_cfg_read16(fn, fn->cap_msi + VTIO_PCI_MSI_FLAGS) &
                        VTIO_PCI_MSI_FLAGS_ENABLE))
        return vtio_fail(-EBUSY, "pci: MSI is enabled on %02x:%02x.%u", fn->bus, fn->dev,
                         fn->fn);
    return 0;
}

int vtio_pci_msix_enable(struct vtio_host *h, const struct vtio_pci_function *fn,
                         unsigned nvec)
{
    struct vtio_pci_fn_priv *p = priv_of(h, fn);
    if (!p)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    int rc = check_enable(fn, p, nvec);
    struct vtio_pci_irq *irq = NULL;
    if (rc == 0 && !(irq = calloc(nvec, sizeof(*irq))))
        rc = vtio_fail(-ENOMEM, "pci: out of memory");
    if (rc == 0) {
        uint16_t cmd = vtio_pci_cfg_read16(fn, VTIO_PCI_COMMAND);
        vtio_pci_cfg_write16(fn, VTIO_PCI_COMMAND, cmd | VTIO_PCI_COMMAND_INTX_DISABLE);
        /* Enable with the function masked, mask every entry, unmask the
         * function: nothing can fire until an entry is programmed. */
        uint16_t at = (uint16_t)(fn->cap_msix + VTIO_PCI_MSIX_FLAGS);
        uint16_t flags = vtio_pci_cfg_read16(fn, at);
        vtio_pci_cfg_write16(fn, at, flags | VTIO_PCI_MSIX_FLAGS_ENABLE |
                                         VTIO_PCI_MSIX_FLAGS_MASKALL);
        struct vtio_mmio t = msix_table(fn);
        for (unsigned i = 0; i < fn->msix_table_size; i++)
            entry_mask(&t, i, true);
        vtio_pci_cfg_write16(fn, at, (flags | VTIO_PCI_MSIX_FLAGS_ENABLE) &
                                         ~VTIO_PCI_MSIX_FLAGS_MASKALL);
        p->irq = irq;
        p->nvec = nvec;
        p->intr = h->intr;
        p->msix_on = true;
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

/* Common checks of the per-entry calls.  Lock held. */
static int check_entry(const struct vtio_pci_function *fn, struct vtio_pci_fn_priv *p,
                       unsigned index)
{
    if (!p->msix_on)
        return vtio_fail(-EINVAL, "pci: MSI-X is not enabled on %02x:%02x.%u", fn->bus,
                         fn->dev, fn->fn);
    if (index >= p->nvec)
        return vtio_fail(-EINVAL, "pci: MSI-X entry %u, only %u enabled", index, p->nvec);
    return 0;
}

/* check_entry, and the entry must have a handler.  Lock held. */
static int check_used(const struct vtio_pci_function *fn, struct vtio_pci_fn_priv *p,
                      unsigned index)
{
    int rc = check_entry(fn, p, index);
    if (rc == 0 && !p->irq[index].used)
        rc = vtio_fail(-ENOENT, "pci: MSI-X entry %u has no handler", index);
    return rc;
}

int vtio_pci_request_irq(struct vtio_host *h, const struct vtio_pci_function *fn,
                         unsigned index, vtio_intr_handler handler, void *opaque,
                         unsigned cpu)
{
    struct vtio_pci_fn_priv *p = priv_of(h, fn);
    if (!p)
        return -EINVAL;
    if (!handler)
        return vtio_fail(-EINVAL, "pci: request_irq without a handler");
    unsigned ncpus = vtio_intr_ncpus(h->intr);
    if (cpu != VTIO_PCI_IRQ_ANY_CPU && cpu >= ncpus)
        return vtio_fail(-EINVAL, "pci: cpu %u, the machine has %u", cpu, ncpus);

    pthread_mutex_lock(&p->lock);
    int rc = check_entry(fn, p, index);
    if (rc == 0 && p->irq[index].used)
        rc = vtio_fail(-EBUSY, "pci: MSI-X entry %u already has a handler", index);
    if (rc == 0 && cpu == VTIO_PCI_IRQ_ANY_CPU)
        cpu = atomic_fetch_add(&p->owner->next_cpu, 1) % ncpus;
    int vec = rc ? rc : vtio_intr_alloc_vector(h->intr, cpu, handler, opaque);
    if (rc == 0 && vec < 0)
        rc = vec;
    uint64_t addr = 0;
    uint32_t data = 0;
    struct vtio_pci_irq irq;
    if (rc == 0 && (rc = make_message(h, fn, cpu, (unsigned)vec, &irq, &addr, &data)) < 0)
        vtio_intr_unregister(h->intr, cpu, (unsigned)vec);
    if (rc == 0) {
        p->irq[index] = irq;
        struct vtio_mmio t = msix_table(fn);
        uint64_t e = (uint64_t)index * VTIO_PCI_MSIX_ENTRY_SIZE;
        vtio_mmio_write32(&t, e + VTIO_PCI_MSIX_ENTRY_LOWER_ADDR, (uint32_t)addr);
        vtio_mmio_write32(&t, e + VTIO_PCI_MSIX_ENTRY_UPPER_ADDR, (uint32_t)(addr >> 32));
        vtio_mmio_write32(&t, e + VTIO_PCI_MSIX_ENTRY_DATA, data);
        entry_mask(&t, index, false);
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int vtio_pci_irq_vector(struct vtio_host *h, const struct vtio_pci_function *fn,
                        unsigned index, unsigned *cpu, unsigned *vector)
{
    struct vtio_pci_fn_priv *p = priv_of(h, fn);
    if (!p)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    int rc = check_used(fn, p, index);
    if (rc == 0) {
        if (cpu)
            *cpu = p->irq[index].cpu;
        if (vector)
            *vector = p->irq[index].vector;
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int vtio_pci_free_irq(struct vtio_host *h, const struct vtio_pci_function *fn,
                      unsigned index)
{
    struct vtio_pci_fn_priv *p = priv_of(h, fn);
    if (!p)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    int rc = check_used(fn, p, index);
    if (rc == 0)
        release(fn, p, index);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int vtio_pci_msix_disable(struct vtio_host *h, const struct vtio_pci_function *fn)
{
    struct vtio_pci_fn_priv *p = priv_of(h, fn);
    if (!p)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    int rc = 0;
    if (!p->msix_on)
        rc = vtio_fail(-EINVAL, "pci: MSI-X is not enabled on %02x:%02x.%u", fn->bus,
                       fn->dev, fn->fn);
    else
        vtio_pci_msix_teardown_locked(fn);
    pthread_mutex_unlock(&p->lock);
    return rc;
}
