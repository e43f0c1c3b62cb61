/*
 * intr: the interrupt sink, where message-signalled interrupts arrive.
 *
 * An interrupt is a 4-byte memory write to the window 0xFEE00000-0xFEEFFFFF.
 * The sink owns that window as an MMIO region, decodes the compatibility
 * format (address [19:12] destination APIC id, [3] redirection hint, [2]
 * destination mode; data [7:0] vector, [10:8] delivery mode, [15] trigger
 * mode) and calls the handler that CPU-side software registered for that
 * (cpu, vector).  Messages it cannot deliver are counted, never fatal:
 * remappable-format messages (address bit 4) when nothing remaps them, a
 * destination that is no CPU, a vector below 32, a vector without a handler
 * (spurious).
 *
 * Where handlers run: on the thread that wrote the message (a device
 * thread), like a hard interrupt: they must be short and must not block or
 * call back into the device synchronously.  Because the message is written
 * after the device's data, a handler always sees the data the device's DMA
 * wrote before the interrupt; a handler that publishes with a release store
 * (or a mutex) passes that on to whichever thread waits.
 *
 * Threads: delivery is lock-free on the handler table's read side;
 * vtio_intr_unregister() waits until no call of the old handler is running.
 */
#ifndef VTIO_INTR_H
#define VTIO_INTR_H

#include <vtio/common.h>

struct vtio_mem;
struct vtio_intr;

#define VTIO_MSI_WINDOW_BASE 0xFEE00000ull
#define VTIO_MSI_WINDOW_SIZE 0x00100000ull
#define VTIO_INTR_VECTORS    256
#define VTIO_INTR_FIRST_VECTOR 32     /* 0-31 are exceptions */
#define VTIO_INTR_MAX_CPUS   64

/* Compatibility-format message fields. */
#define VTIO_MSI_ADDR_DEST_SHIFT 12
#define VTIO_MSI_ADDR_DEST_MASK  (0xffull << 12)
#define VTIO_MSI_ADDR_IF         (1ull << 4)   /* 1: remappable format */
#define VTIO_MSI_ADDR_RH         (1ull << 3)
#define VTIO_MSI_ADDR_DM         (1ull << 2)   /* 1: logical destination */
#define VTIO_MSI_DATA_VECTOR_MASK 0xffu
#define VTIO_MSI_DATA_DM_SHIFT   8            /* delivery mode [10:8] */
#define VTIO_MSI_DATA_TRIGGER    (1u << 15)

typedef void (*vtio_intr_handler)(void *opaque, unsigned cpu, unsigned vector);

struct vtio_intr_stats {
    uint64_t delivered;     /* handler called */
    uint64_t spurious;      /* valid message, no handler */
    uint64_t invalid;       /* undeliverable: format, destination, vector */
};

/* Creates the sink and maps its window into mem.  ncpus: 1..64.
 * Returns NULL (and sets vtio_last_error) on bad arguments or if the
 * window is taken. */
VTIO_API struct vtio_intr *vtio_intr_create(struct vtio_mem *mem, unsigned ncpus);
VTIO_API void vtio_intr_destroy(struct vtio_intr *intr);
VTIO_API unsigned vtio_intr_ncpus(const struct vtio_intr *intr);

/* @returns 0; -EINVAL cpu out of range, vector < 32 or > 255, no handler;
 * -EBUSY the vector already has a handler on that cpu. */
VTIO_API int vtio_intr_register(struct vtio_intr *intr, unsigned cpu, unsigned vector,
                                vtio_intr_handler fn, void *opaque);
/* Registers fn on the lowest free vector of cpu.
 * @returns the vector (>= 32); -ENOSPC none free; -EINVAL as above. */
VTIO_API int vtio_intr_alloc_vector(struct vtio_intr *intr, unsigned cpu,
                                    vtio_intr_handler fn, void *opaque);
/* Removes the handler; when it returns, no call of it is running.
 * Must not be called from the handler itself.
 * @returns 0; -EINVAL bad cpu/vector; -ENOENT no handler there. */
VTIO_API int vtio_intr_unregister(struct vtio_intr *intr, unsigned cpu, unsigned vector);

/* Interrupts delivered to (cpu, vector) so far. */
VTIO_API uint64_t vtio_intr_count(struct vtio_intr *intr, unsigned cpu, unsigned vector);
VTIO_API void vtio_intr_get_stats(struct vtio_intr *intr, struct vtio_intr_stats *st);

/* The compatibility-format message that reaches (cpu, vector): physical
 * destination mode, fixed delivery, edge triggered. */
static inline void vtio_msi_compose(unsigned cpu, unsigned vector, uint64_t *addr,
                                    uint32_t *data)
{
    *addr = VTIO_MSI_WINDOW_BASE | ((uint64_t)(cpu & 0xff) << VTIO_MSI_ADDR_DEST_SHIFT);
    *data = vector & VTIO_MSI_DATA_VECTOR_MASK;
}

#endif
