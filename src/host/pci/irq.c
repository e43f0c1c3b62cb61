/*
 * MSI-X and MSI for drivers: the pci_alloc_irq_vectors() / request_irq()
 * half of the OS's PCI code.
 *
 * The device side of MSI-X is a table in one of the function's BARs
 * (16-byte entries: message address low/high, data, vector control with
 * the mask bit) and the capability's control word (enable, function mask).
 * The device side of MSI is its capability alone: one message address and
 * data for all vectors (the function puts the vector number into the low
 * log2(nvec) data bits), Multiple Message Enable, and, if the function has
 * them, per-vector Mask and Pending Bits.  This file programs both through
 * MMIO and config space, and takes CPU vectors from the interrupt vector
 * table (vtio_intr_alloc_vector), as an OS's irq domain does.  A vector is
 * unmasked only while a handler is registered for it; it is masked before
 * the handler goes away.
 *
 * With interrupt remapping on (h->irq_remap, src/host/irq_remap.h) messages
 * come from the remapping driver instead: for an MSI-X entry, a
 * remappable-format message naming an entry of its table that delivers the
 * vector to the cpu and accepts only this function's requester id; for MSI,
 * a block of nvec entries reserved at enable (one message names them all,
 * the vector number being the subhandle), each filled when its vector is
 * requested and emptied when it is freed.  Remapping entries are given
 * back after the vector is masked, so no message can name a freed entry.
 *
 * MSI without remapping cannot choose a cpu per vector: the data is the
 * CPU vector itself.  So enable reserves an aligned block of nvec vectors
 * on one cpu, taken from the top of the vector space (away from
 * vtio_intr_alloc_vector's lowest-first choices), each registered with a
 * dispatcher that calls the vector's requested handler while it is armed.
 * A request for another cpu while no vector has a handler moves the block
 * there (a new block first, then the message, then the old block goes), so
 * a single-vector MSI honours the cpu as MSI-X does.
 * Arming and disarming replace the handler without ever giving the vector
 * back (which another driver could take in between): free disarms, then
 * waits until no dispatcher call that saw it armed is still running — the
 * guarantee vtio_intr_unregister() gives for the other kinds.
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
#include <sched.h>
#include <stdlib.h>

#include "host/irq_remap.h"
#include "host/pci/pci_priv.h"
#include "util/error.h"

/* MSI capability with a 32-bit address: data and mask move up a dword. */
#define MSI_DATA_32 8
#define MSI_MASK_32 12
#define MSI_MME_SHIFT 4

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

static const char *type_name(enum vtio_pci_irq_type t)
{
    return t == VTIO_PCI_IRQ_MSIX ? "MSI-X" : "MSI";
}

/* ------------------------------------------------------------------------
 * The function's registers.
 */

static struct vtio_mmio msix_table(const struct vtio_pci_function *fn)
{
    const struct vtio_pci_bar *b = &fn->bar[fn->msix_table_bir];
    return (struct vtio_mmio){
        .mem = fn->mem,
        .base = b->base + fn->msix_table_offset,
        .size = (uint64_t)fn->msix_table_size * VTIO_PCI_MSIX_ENTRY_SIZE,
    };
}

static void msix_entry_mask(const struct vtio_pci_function *fn, unsigned i, bool masked)
{
    struct vtio_mmio t = msix_table(fn);
    uint64_t off = (uint64_t)i * VTIO_PCI_MSIX_ENTRY_SIZE + VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL;
    uint32_t ctrl = vtio_mmio_read32(&t, off);
    ctrl = masked ? ctrl | VTIO_PCI_MSIX_ENTRY_CTRL_MASKBIT
                  : ctrl & ~(uint32_t)VTIO_PCI_MSIX_ENTRY_CTRL_MASKBIT;
    vtio_mmio_write32(&t, off, ctrl);
}

static void msix_entry_write(const struct vtio_pci_function *fn, unsigned i, uint64_t addr,
                             uint32_t data)
{
    struct vtio_mmio t = msix_table(fn);
    uint64_t e = (uint64_t)i * VTIO_PCI_MSIX_ENTRY_SIZE;
    vtio_mmio_write32(&t, e + VTIO_PCI_MSIX_ENTRY_LOWER_ADDR, (uint32_t)addr);
    vtio_mmio_write32(&t, e + VTIO_PCI_MSIX_ENTRY_UPPER_ADDR, (uint32_t)(addr >> 32));
    vtio_mmio_write32(&t, e + VTIO_PCI_MSIX_ENTRY_DATA, data);
}

static uint16_t msi_reg(const struct vtio_pci_function *fn, unsigned off64, unsigned off32)
{
    return (uint16_t)(fn->cap_msi + (fn->msi_64bit ? off64 : off32));
}

/* Mask bits of every vector the capability has set, or all cleared. */
static void msi_mask_all(const struct vtio_pci_function *fn, bool masked)
{
    if (fn->msi_maskable)
        vtio_pci_cfg_write32(fn, msi_reg(fn, VTIO_PCI_MSI_MASK_64, MSI_MASK_32),
                             masked ? ~0u : 0);
}

static void vector_mask(const struct vtio_pci_function *fn, enum vtio_pci_irq_type t,
                        unsigned i, bool masked)
{
    if (t == VTIO_PCI_IRQ_MSIX) {
        msix_entry_mask(fn, i, masked);
    } else if (fn->msi_maskable) {
        uint16_t at = msi_reg(fn, VTIO_PCI_MSI_MASK_64, MSI_MASK_32);
        uint32_t bits = vtio_pci_cfg_read32(fn, at);
        bits = masked ? bits | 1u << i : bits & ~(1u << i);
        vtio_pci_cfg_write32(fn, at, bits);
    }
}

/* Whether the function itself has MSI or MSI-X on (whoever turned it on). */
static bool messages_on_in_hw(const struct vtio_pci_function *fn)
{
    return (fn->cap_msi && (vtio_pci_cfg_read16(fn, fn->cap_msi + VTIO_PCI_MSI_FLAGS) &
                            VTIO_PCI_MSI_FLAGS_ENABLE)) ||
           (fn->cap_msix && (vtio_pci_cfg_read16(fn, fn->cap_msix + VTIO_PCI_MSIX_FLAGS) &
                             VTIO_PCI_MSIX_FLAGS_ENABLE));
}

static void intx_disable(const struct vtio_pci_function *fn, bool disabled)
{
    uint16_t cmd = vtio_pci_cfg_read16(fn, VTIO_PCI_COMMAND);
    cmd = disabled ? cmd | VTIO_PCI_COMMAND_INTX_DISABLE
                   : cmd & ~VTIO_PCI_COMMAND_INTX_DISABLE;
    vtio_pci_cfg_write16(fn, VTIO_PCI_COMMAND, cmd);
}

/* ------------------------------------------------------------------------
 * MSI without remapping: the reserved block and its dispatcher.
 */

static void msi_dispatch(void *opaque, unsigned cpu, unsigned vector)
{
    struct vtio_pci_irq *irq = opaque;
    atomic_fetch_add(&irq->running, 1);
    if (atomic_load(&irq->armed))
        irq->handler(irq->opaque, cpu, vector);
    atomic_fetch_sub(&irq->running, 1);
}

static void msi_arm(struct vtio_pci_irq *irq, vtio_intr_handler handler, void *opaque)
{
    irq->handler = handler;
    irq->opaque = opaque;
    atomic_store(&irq->armed, true);
}

/* When this returns no call of the handler is running, and none starts. */
static void msi_disarm(struct vtio_pci_irq *irq)
{
    atomic_store(&irq->armed, false);
    while (atomic_load(&irq->running))
        sched_yield();
}

static void unregister_range(struct vtio_intr *intr, unsigned cpu, unsigned base,
                             unsigned n)
{
    for (unsigned v = base; v < base + n; v++)
        vtio_intr_unregister(intr, cpu, v);
}

/* Registers the dispatcher on base..base+n-1 of cpu, all or none. */
static bool msi_claim_range(struct vtio_intr *intr, struct vtio_pci_irq *irq, unsigned n,
                            unsigned cpu, unsigned base)
{
    for (unsigned i = 0; i < n; i++) {
        if (vtio_intr_register(intr, cpu, base + i, msi_dispatch, &irq[i]) < 0) {
            unregister_range(intr, cpu, base, i);
            return false;
        }
    }
    return true;
}

/* An aligned block of n free vectors, trying `tries` cpus in turn from
 * `first` and each cpu's vectors from the top. */
static int msi_reserve_block(struct vtio_host *h, struct vtio_pci_fn_priv *p, unsigned n,
                             unsigned first, unsigned tries)
{
    unsigned ncpus = vtio_intr_ncpus(h->intr);
    for (unsigned k = 0; k < tries; k++) {
        unsigned cpu = (first + k) % ncpus;
        for (unsigned base = VTIO_INTR_VECTORS - n; base >= VTIO_INTR_FIRST_VECTOR;
             base -= n) {
            if (msi_claim_range(h->intr, p->irq, n, cpu, base)) {
                p->msi_cpu = cpu;
                p->msi_base = base;
                return 0;
            }
        }
    }
    return vtio_fail(-ENOSPC, "pci: no %u consecutive free vectors %s for MSI", n,
                     tries > 1 ? "on any cpu" : "on that cpu");
}

static void msi_write_message(const struct vtio_pci_function *fn, uint64_t addr,
                              uint32_t data)
{
    vtio_pci_cfg_write32(fn, fn->cap_msi + VTIO_PCI_MSI_ADDRESS_LO, (uint32_t)addr);
    if (fn->msi_64bit)
        vtio_pci_cfg_write32(fn, fn->cap_msi + VTIO_PCI_MSI_ADDRESS_HI,
                             (uint32_t)(addr >> 32));
    vtio_pci_cfg_write16(fn, msi_reg(fn, VTIO_PCI_MSI_DATA_64, MSI_DATA_32), (uint16_t)data);
}

/* Moves the block to `cpu` while no vector of it has a handler (so every
 * vector is masked, if the function can mask): a new block there, the
 * message pointed at it, the old one given back. */
static int msi_move_block(struct vtio_host *h, const struct vtio_pci_function *fn,
                          struct vtio_pci_fn_priv *p, unsigned cpu)
{
    for (unsigned i = 0; i < p->nvec; i++)
        if (p->irq[i].used)
            return vtio_fail(-EINVAL, "pci: without interrupt remapping the MSI vectors "
                             "of %02x:%02x.%u all go to cpu %u", fn->bus, fn->dev, fn->fn,
                             p->msi_cpu);
    unsigned old_cpu = p->msi_cpu, old_base = p->msi_base;
    int rc = msi_reserve_block(h, p, p->nvec, cpu, 1);
    if (rc < 0)
        return rc;
    uint64_t addr;
    uint32_t data;
    vtio_msi_compose(p->msi_cpu, p->msi_base, &addr, &data);
    msi_write_message(fn, addr, data);
    unregister_range(p->intr, old_cpu, old_base, p->nvec);
    return 0;
}

/* ------------------------------------------------------------------------
 * Routing one vector to a handler, and back.  Lock held.
 */

/* MSI-X: the message that reaches (cpu, vector) from fn, remapped when the
 * host remaps interrupts.  Fills irq's remapping fields. */
static int msix_message(struct vtio_host *h, const struct vtio_pci_function *fn,
                        struct vtio_pci_irq *irq, uint64_t *addr, uint32_t *data)
{
    struct vtio_irq_remap *r = h->irq_remap;
    if (!r) {
        vtio_msi_compose(irq->cpu, irq->vector, addr, data);
        return 0;
    }
    int handle = r->ops->alloc(r->ctx, fn->rid, irq->cpu, irq->vector, addr, data);
    if (handle < 0)
        return handle;
    irq->remap = r;
    irq->remap_handle = handle;
    return 0;
}

/* Points the function's vector `index` at irq->cpu / irq->vector. */
static int route(struct vtio_host *h, const struct vtio_pci_function *fn,
                 struct vtio_pci_fn_priv *p, unsigned index, struct vtio_pci_irq *irq)
{
    if (p->type == VTIO_PCI_IRQ_MSI) {
        struct vtio_irq_remap *r = p->msi_remap;
        return r->ops->set_entry(r->ctx, p->msi_remap_handle, index, irq->cpu, irq->vector);
    }
    uint64_t addr;
    uint32_t data;
    int rc = msix_message(h, fn, irq, &addr, &data);
    if (rc == 0)
        msix_entry_write(fn, index, addr, data);
    return rc;
}

/* Undoes route(): after it no message of the vector reaches a CPU through a
 * remapping entry. */
static void unroute(struct vtio_pci_fn_priv *p, unsigned index, struct vtio_pci_irq *irq)
{
    if (p->type == VTIO_PCI_IRQ_MSI)
        p->msi_remap->ops->clear_entry(p->msi_remap->ctx, p->msi_remap_handle, index);
    else if (irq->remap)
        irq->remap->ops->free(irq->remap->ctx, irq->remap_handle);
}

/* MSI without remapping: vectors are reserved at enable, not per request. */
static bool msi_reserved(const struct vtio_pci_fn_priv *p)
{
    return p->type == VTIO_PCI_IRQ_MSI && !p->msi_remap;
}

/* Masks vector i and lets its handler, vector and remapping entry go. */
static void release(const struct vtio_pci_function *fn, struct vtio_pci_fn_priv *p,
                    unsigned i)
{
    struct vtio_pci_irq *irq = &p->irq[i];
    vector_mask(fn, p->type, i, true);
    if (msi_reserved(p)) {
        msi_disarm(irq);
    } else {
        unroute(p, i, irq);
        vtio_intr_unregister(p->intr, irq->cpu, irq->vector);
    }
    irq->used = false;
    irq->remap = NULL;
}

static int request_locked(struct vtio_host *h, const struct vtio_pci_function *fn,
                          struct vtio_pci_fn_priv *p, unsigned index,
                          vtio_intr_handler handler, void *opaque, unsigned cpu)
{
    struct vtio_pci_irq *irq = &p->irq[index];
    if (msi_reserved(p)) {
        if (cpu != VTIO_PCI_IRQ_ANY_CPU && cpu != p->msi_cpu) {
            int rc = msi_move_block(h, fn, p, cpu);
            if (rc < 0)
                return rc;
        }
        irq->cpu = p->msi_cpu;
        irq->vector = p->msi_base + index;
        msi_arm(irq, handler, opaque);
    } else {
        if (cpu == VTIO_PCI_IRQ_ANY_CPU)
            cpu = atomic_fetch_add(&p->owner->next_cpu, 1) % vtio_intr_ncpus(h->intr);
        int vec = vtio_intr_alloc_vector(h->intr, cpu, handler, opaque);
        if (vec < 0)
            return vec;
        irq->cpu = cpu;
        irq->vector = (unsigned)vec;
        int rc = route(h, fn, p, index, irq);
        if (rc < 0) {
            vtio_intr_unregister(h->intr, cpu, (unsigned)vec);
            return rc;
        }
    }
    irq->used = true;
    vector_mask(fn, p->type, index, false);
    return 0;
}

/* ------------------------------------------------------------------------
 * Enable and disable.
 */

/* Checks common to both enables.  Lock held. */
static int check_enable(const struct vtio_pci_function *fn, struct vtio_pci_fn_priv *p)
{
    if (p->type != VTIO_PCI_IRQ_NONE)
        return vtio_fail(-EBUSY, "pci: %s is already enabled on %02x:%02x.%u",
                         type_name(p->type), fn->bus, fn->dev, fn->fn);
    if (messages_on_in_hw(fn))
        return vtio_fail(-EBUSY, "pci: %02x:%02x.%u already has MSI or MSI-X on", fn->bus,
                         fn->dev, fn->fn);
    return 0;
}

static int check_msix_enable(const struct vtio_pci_function *fn, unsigned nvec)
{
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
    return 0;
}

static int check_msi_enable(const struct vtio_pci_function *fn, unsigned nvec)
{
    if (!fn->cap_msi)
        return vtio_fail(-ENODEV, "pci: %02x:%02x.%u has no MSI capability", fn->bus,
                         fn->dev, fn->fn);
    if (nvec == 0 || (nvec & (nvec - 1)) || nvec > fn->msi_vectors)
        return vtio_fail(-EINVAL, "pci: %u MSI vectors asked: a power of two up to %u",
                         nvec, fn->msi_vectors);
    return 0;
}

/* The per-vector array, and the state that says which kind is on. */
static int start(struct vtio_host *h, struct vtio_pci_fn_priv *p, enum vtio_pci_irq_type t,
                 unsigned nvec)
{
    p->irq = calloc(nvec, sizeof(*p->irq));
    if (!p->irq)
        return vtio_fail(-ENOMEM, "pci: out of memory");
    p->type = t;
    p->nvec = nvec;
    p->intr = h->intr;
    return 0;
}

static void finish(struct vtio_pci_fn_priv *p)
{
    free(p->irq);
    p->irq = NULL;
    p->nvec = 0;
    p->type = VTIO_PCI_IRQ_NONE;
    p->msi_remap = NULL;
}

static void msix_turn_on(const struct vtio_pci_function *fn)
{
    intx_disable(fn, true);
    /* Enable with the function masked, mask every entry, unmask the
     * function: nothing can fire until an entry is programmed. */
    uint16_t at = (uint16_t)(fn->cap_msix + VTIO_PCI_MSIX_FLAGS);
    uint16_t flags = vtio_pci_cfg_read16(fn, at);
    vtio_pci_cfg_write16(fn, at, flags | VTIO_PCI_MSIX_FLAGS_ENABLE |
                                     VTIO_PCI_MSIX_FLAGS_MASKALL);
    for (unsigned i = 0; i < fn->msix_table_size; i++)
        msix_entry_mask(fn, i, true);
    vtio_pci_cfg_write16(fn, at, (flags | VTIO_PCI_MSIX_FLAGS_ENABLE) &
                                     ~VTIO_PCI_MSIX_FLAGS_MASKALL);
}

int vtio_pci_msix_enable(struct vtio_host *h, const struct vtio_pci_function *fn,
                         unsigned nvec)
{
    struct vtio_pci_fn_priv *p = priv_of(h, fn);
    if (!p)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    int rc = check_enable(fn, p);
    if (rc == 0)
        rc = check_msix_enable(fn, nvec);
    if (rc == 0)
        rc = start(h, p, VTIO_PCI_IRQ_MSIX, nvec);
    if (rc == 0)
        msix_turn_on(fn);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

/* The block every MSI vector's message names, and that message. */
static int msi_block(struct vtio_host *h, const struct vtio_pci_function *fn,
                     struct vtio_pci_fn_priv *p, uint64_t *addr, uint32_t *data)
{
    struct vtio_irq_remap *r = h->irq_remap;
    if (r) {
        int handle = r->ops->alloc_block(r->ctx, fn->rid, p->nvec, addr, data);
        if (handle < 0)
            return handle;
        p->msi_remap = r;
        p->msi_remap_handle = handle;
        return 0;
    }
    unsigned ncpus = vtio_intr_ncpus(h->intr);
    unsigned first = atomic_fetch_add(&p->owner->next_cpu, 1) % ncpus;
    int rc = msi_reserve_block(h, p, p->nvec, first, ncpus);
    if (rc == 0)
        vtio_msi_compose(p->msi_cpu, p->msi_base, addr, data);
    return rc;
}

static void msi_block_release(struct vtio_pci_fn_priv *p)
{
    if (p->msi_remap)
        p->msi_remap->ops->free(p->msi_remap->ctx, p->msi_remap_handle);
    else
        unregister_range(p->intr, p->msi_cpu, p->msi_base, p->nvec);
}

/* Mask bits, message, then enable with Multiple Message Enable. */
static void msi_turn_on(const struct vtio_pci_function *fn, unsigned nvec, uint64_t addr,
                        uint32_t data)
{
    intx_disable(fn, true);
    msi_mask_all(fn, true);
    msi_write_message(fn, addr, data);
    uint16_t at = (uint16_t)(fn->cap_msi + VTIO_PCI_MSI_FLAGS);
    uint16_t flags = vtio_pci_cfg_read16(fn, at) & ~VTIO_PCI_MSI_FLAGS_QSIZE;
    flags |= (uint16_t)(__builtin_ctz(nvec) << MSI_MME_SHIFT) | VTIO_PCI_MSI_FLAGS_ENABLE;
    vtio_pci_cfg_write16(fn, at, flags);
}

int vtio_pci_msi_enable(struct vtio_host *h, const struct vtio_pci_function *fn,
                        unsigned nvec)
{
    struct vtio_pci_fn_priv *p = priv_of(h, fn);
    if (!p)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    int rc = check_enable(fn, p);
    if (rc == 0)
        rc = check_msi_enable(fn, nvec);
    if (rc == 0)
        rc = start(h, p, VTIO_PCI_IRQ_MSI, nvec);
    uint64_t addr = 0;
    uint32_t data = 0;
    if (rc == 0 && (rc = msi_block(h, fn, p, &addr, &data)) < 0)
        finish(p);
    if (rc == 0)
        msi_turn_on(fn, nvec, addr, data);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

void vtio_pci_irqs_teardown_locked(const struct vtio_pci_function *fn)
{
    struct vtio_pci_fn_priv *p = fn->priv;
    if (p->type == VTIO_PCI_IRQ_NONE)
        return;
    for (unsigned i = 0; i < p->nvec; i++)
        if (p->irq[i].used)
            release(fn, p, i);
    if (p->type == VTIO_PCI_IRQ_MSIX) {
        uint16_t at = (uint16_t)(fn->cap_msix + VTIO_PCI_MSIX_FLAGS);
        uint16_t flags = vtio_pci_cfg_read16(fn, at);
        vtio_pci_cfg_write16(fn, at, flags | VTIO_PCI_MSIX_FLAGS_MASKALL);
        vtio_pci_cfg_write16(fn, at, flags & ~(VTIO_PCI_MSIX_FLAGS_ENABLE |
                                               VTIO_PCI_MSIX_FLAGS_MASKALL));
    } else {
        /* Off first, so nothing is sent while the block goes away. */
        uint16_t at = (uint16_t)(fn->cap_msi + VTIO_PCI_MSI_FLAGS);
        uint16_t flags = vtio_pci_cfg_read16(fn, at);
        vtio_pci_cfg_write16(fn, at, flags & ~(VTIO_PCI_MSI_FLAGS_ENABLE |
                                               VTIO_PCI_MSI_FLAGS_QSIZE));
        msi_block_release(p);
    }
    intx_disable(fn, false);
    finish(p);
}

static int disable(struct vtio_host *h, const struct vtio_pci_function *fn,
                   enum vtio_pci_irq_type t)
{
    struct vtio_pci_fn_priv *p = priv_of(h, fn);
    if (!p)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    int rc = 0;
    if (p->type != t)
        rc = vtio_fail(-EINVAL, "pci: %s is not enabled on %02x:%02x.%u", type_name(t),
                       fn->bus, fn->dev, fn->fn);
    else
        vtio_pci_irqs_teardown_locked(fn);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int vtio_pci_msix_disable(struct vtio_host *h, const struct vtio_pci_function *fn)
{
    return disable(h, fn, VTIO_PCI_IRQ_MSIX);
}

int vtio_pci_msi_disable(struct vtio_host *h, const struct vtio_pci_function *fn)
{
    return disable(h, fn, VTIO_PCI_IRQ_MSI);
}

enum vtio_pci_irq_type vtio_pci_irq_type(struct vtio_host *h,
                                         const struct vtio_pci_function *fn, unsigned *nvec)
{
    struct vtio_pci_fn_priv *p = priv_of(h, fn);
    enum vtio_pci_irq_type t = VTIO_PCI_IRQ_NONE;
    unsigned n = 0;
    if (p) {
        pthread_mutex_lock(&p->lock);
        t = p->type;
        n = p->nvec;
        pthread_mutex_unlock(&p->lock);
    }
    if (nvec)
        *nvec = n;
    return t;
}

/* ------------------------------------------------------------------------
 * Per-vector calls.
 */

/* Common checks of the per-vector calls.  Lock held. */
static int check_entry(const struct vtio_pci_function *fn, struct vtio_pci_fn_priv *p,
                       unsigned index)
{
    if (p->type == VTIO_PCI_IRQ_NONE)
        return vtio_fail(-EINVAL, "pci: neither MSI-X nor MSI is enabled on %02x:%02x.%u",
                         fn->bus, fn->dev, fn->fn);
    if (index >= p->nvec)
        return vtio_fail(-EINVAL, "pci: %s vector %u, only %u enabled", type_name(p->type),
                         index, p->nvec);
    return 0;
}

/* check_entry, and the vector must have a handler.  Lock held. */
static int check_used(const struct vtio_pci_function *fn, struct vtio_pci_fn_priv *p,
                      unsigned index)
{
    int rc = check_entry(fn, p, index);
    if (rc == 0 && !p->irq[index].used)
        rc = vtio_fail(-ENOENT, "pci: %s vector %u has no handler", type_name(p->type),
                       index);
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
        rc = vtio_fail(-EBUSY, "pci: %s vector %u already has a handler",
                       type_name(p->type), index);
    if (rc == 0)
        rc = request_locked(h, fn, p, index, handler, opaque, cpu);
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

int vtio_pci_irq_mask(struct vtio_host *h, const struct vtio_pci_function *fn,
                      unsigned index, bool masked)
{
    struct vtio_pci_fn_priv *p = priv_of(h, fn);
    if (!p)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    int rc = check_used(fn, p, index);
    if (rc == 0 && p->type == VTIO_PCI_IRQ_MSI && !fn->msi_maskable)
        rc = vtio_fail(-EOPNOTSUPP, "pci: the MSI capability of %02x:%02x.%u has no mask "
                       "bits", fn->bus, fn->dev, fn->fn);
    if (rc == 0)
        vector_mask(fn, p->type, index, masked);
    pthread_mutex_unlock(&p->lock);
    return rc;
}
