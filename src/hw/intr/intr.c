/*
 * The interrupt sink: the MSI window of the local APICs and the CPU-side
 * vector table behind it.
 *
 * A message is a 4-byte write into the window (see intr.h for the format).
 * The sink decodes it and calls the handler of (destination cpu, vector) on
 * the writing thread.  Each table entry holds the handler, its argument, a
 * delivery counter and an in-flight counter.
 *
 * Lock-free delivery with a safe unregister: a delivery first announces
 * itself (in_flight++), then loads the handler; unregister first clears the
 * handler, then waits for in_flight to drain.  Both steps are sequentially
 * consistent, so either the delivery sees the cleared handler or the
 * unregister sees the delivery and waits for it (the Dekker pattern).  The
 * argument is stored before the handler with release order, and loaded
 * after it, so a delivery never pairs a new handler with an old argument.
 * Register and unregister are serialised by `lock`.
 */
#define _GNU_SOURCE
#include <vtio/intr.h>
#include <vtio/mem.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "util/error.h"

struct vector_entry {
    _Atomic(vtio_intr_handler) fn;
    _Atomic(void *) opaque;
    _Atomic uint32_t in_flight;
    _Atomic uint64_t count;
};

struct vtio_intr {
    struct vtio_mem *mem;
    unsigned ncpus;
    pthread_mutex_t lock;                  /* serialises register/unregister */
    _Atomic uint64_t delivered, spurious, invalid;
    struct vector_entry table[];           /* [cpu * 256 + vector] */
};

static struct vector_entry *entry(struct vtio_intr *intr, unsigned cpu, unsigned vector)
{
    return &intr->table[cpu * VTIO_INTR_VECTORS + vector];
}

static void count(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* Decodes and delivers one message written at window offset off. */
static void deliver(struct vtio_intr *intr, uint64_t off, uint32_t data)
{
    unsigned cpu = (unsigned)((off & VTIO_MSI_ADDR_DEST_MASK) >> VTIO_MSI_ADDR_DEST_SHIFT);
    unsigned vector = data & VTIO_MSI_DATA_VECTOR_MASK;
    unsigned mode = (data >> VTIO_MSI_DATA_DM_SHIFT) & 7;
    /* Remappable format needs an interrupt-remapping unit in front of us;
     * only physical destinations and fixed/lowest-priority delivery are
     * modelled. */
    if ((off & (VTIO_MSI_ADDR_IF | VTIO_MSI_ADDR_DM)) || mode > 1 || cpu >= intr->ncpus ||
        vector < VTIO_INTR_FIRST_VECTOR) {
        count(&intr->invalid);
        return;
    }
    struct vector_entry *e = entry(intr, cpu, vector);
    atomic_fetch_add(&e->in_flight, 1);
    vtio_intr_handler fn = atomic_load(&e->fn);
    if (fn) {
        void *opaque = atomic_load_explicit(&e->opaque, memory_order_acquire);
        atomic_fetch_add_explicit(&e->count, 1, memory_order_relaxed);
        count(&intr->delivered);
        fn(opaque, cpu, vector);
    } else {
        count(&intr->spurious);
    }
    atomic_fetch_sub_explicit(&e->in_flight, 1, memory_order_release);
}

static uint64_t window_read(void *opaque, uint64_t off, unsigned size)
{
    (void)opaque, (void)off, (void)size;
    return 0;                      /* the window is write-only */
}

static void window_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct vtio_intr *intr = opaque;
    if (size != 4) {
        count(&intr->invalid);     /* a message is one dword */
        return;
    }
    deliver(intr, off, (uint32_t)val);
}

static const struct vtio_mmio_ops window_ops = { window_read, window_write };

struct vtio_intr *vtio_intr_create(struct vtio_mem *mem, unsigned ncpus)
{
    if (!mem || ncpus == 0 || ncpus > VTIO_INTR_MAX_CPUS) {
        vtio_fail(-EINVAL, "interrupt sink: ncpus %u is not 1..%d", ncpus, VTIO_INTR_MAX_CPUS);
        return NULL;
    }
    struct vtio_intr *intr =
        calloc(1, sizeof(*intr) + (size_t)ncpus * VTIO_INTR_VECTORS * sizeof(intr->table[0]));
    if (!intr)
        return NULL;
    intr->mem = mem;
    intr->ncpus = ncpus;
    pthread_mutex_init(&intr->lock, NULL);
    if (vtio_mem_add_mmio(mem, VTIO_MSI_WINDOW_BASE, VTIO_MSI_WINDOW_SIZE, &window_ops, intr,
                          "msi-window") < 0) {
        pthread_mutex_destroy(&intr->lock);
        free(intr);
        return NULL;
    }
    return intr;
}

void vtio_intr_destroy(struct vtio_intr *intr)
{
    if (!intr)
        return;
    vtio_mem_remove_mmio(intr->mem, VTIO_MSI_WINDOW_BASE);
    pthread_mutex_destroy(&intr->lock);
    free(intr);
}

unsigned vtio_intr_ncpus(const struct vtio_intr *intr)
{
    return intr->ncpus;
}

static int check_slot(const struct vtio_intr *intr, unsigned cpu, unsigned vector)
{
    if (cpu >= intr->ncpus)
        return vtio_fail(-EINVAL, "cpu %u: the machine has %u", cpu, intr->ncpus);
    if (vector < VTIO_INTR_FIRST_VECTOR || vector >= VTIO_INTR_VECTORS)
        return vtio_fail(-EINVAL, "vector %u is not %d..255", vector, VTIO_INTR_FIRST_VECTOR);
    return 0;
}

/* Installs fn; called with intr->lock held and the slot known free. */
static void install(struct vector_entry *e, vtio_intr_handler fn, void *opaque)
{
    atomic_store_explicit(&e->opaque, opaque, memory_order_release);
    atomic_store(&e->fn, fn);
}

int vtio_intr_register(struct vtio_intr *intr, unsigned cpu, unsigned vector,
                       vtio_intr_handler fn, void *opaque)
{
    int ret = check_slot(intr, cpu, vector);
    if (ret < 0)
        return ret;
    if (!fn)
        return vtio_fail(-EINVAL, "no handler given");
    pthread_mutex_lock(&intr->lock);
    struct vector_entry *e = entry(intr, cpu, vector);
    if (atomic_load(&e->fn))
        ret = vtio_fail(-EBUSY, "cpu %u vector %u already has a handler", cpu, vector);
    else
        install(e, fn, opaque);
    pthread_mutex_unlock(&intr->lock);
    return ret;
}

int vtio_intr_alloc_vector(struct vtio_intr *intr, unsigned cpu, vtio_intr_handler fn,
                           void *opaque)
{
    int ret = check_slot(intr, cpu, VTIO_INTR_FIRST_VECTOR);
    if (ret < 0)
        return ret;
    if (!fn)
        return vtio_fail(-EINVAL, "no handler given");
    ret = -ENOSPC;
    pthread_mutex_lock(&intr->lock);
    for (unsigned v = VTIO_INTR_FIRST_VECTOR; v < VTIO_INTR_VECTORS; v++) {
        struct vector_entry *e = entry(intr, cpu, v);
        if (!atomic_load(&e->fn)) {
            install(e, fn, opaque);
            ret = (int)v;
            break;
        }
    }
    pthread_mutex_unlock(&intr->lock);
    if (ret < 0)
        vtio_fail(ret, "cpu %u has no free vector", cpu);
    return ret;
}

int vtio_intr_unregister(struct vtio_intr *intr, unsigned cpu, unsigned vector)
{
    int ret = check_slot(intr, cpu, vector);
    if (ret < 0)
        return ret;
    pthread_mutex_lock(&intr->lock);
    struct vector_entry *e = entry(intr, cpu, vector);
    if (!atomic_load(&e->fn)) {
        ret = vtio_fail(-ENOENT, "cpu %u vector %u has no handler", cpu, vector);
    } else {
        atomic_store(&e->fn, NULL);
        while (atomic_load(&e->in_flight))   /* a running handler is short */
            sched_yield();
    }
    pthread_mutex_unlock(&intr->lock);
    return ret;
}

uint64_t vtio_intr_count(struct vtio_intr *intr, unsigned cpu, unsigned vector)
{
    if (check_slot(intr, cpu, vector) < 0)
        return 0;
    return atomic_load_explicit(&entry(intr, cpu, vector)->count, memory_order_relaxed);
}

void vtio_intr_get_stats(struct vtio_intr *intr, struct vtio_intr_stats *st)
{
    st->delivered = atomic_load(&intr->delivered);
    st->spurious = atomic_load(&intr->spurious);
    st->invalid = atomic_load(&intr->invalid);
}
