/*
 * mem: the machine's physical address space.
 *
 * A 64-bit space holding RAM regions and MMIO regions that never overlap;
 * everything else is a hole.  RAM is backed by a memfd per region, so another
 * process (or KVM) can map the same pages later, and it is sparse: a 16 GiB
 * region costs nothing until its pages are touched.  RAM regions are 2 MiB
 * aligned in base and size so that huge pages can back them.
 *
 * Two kinds of access, as on a real machine:
 *  - CPU side (vtio_mem_read/write): a hole reads as all ones and a write to
 *    it is dropped, like a PCI master abort; both are counted.
 *  - Device side (vtio_mem_dev_read/write): a hole is an error the device
 *    must handle (-EFAULT); the access is checked whole first, so a failed
 *    device access reads or writes nothing.
 * Accesses may be of any length and cross region boundaries.  Inside an MMIO
 * region they are split into naturally aligned pieces of 1, 2, 4 or 8 bytes,
 * each dispatched to the region's callbacks.
 *
 * Ordering: naturally aligned RAM accesses of 1, 2, 4 and 8 bytes are single
 * copy atomic, reads with acquire and writes with release semantics (x86's
 * TSO gives this for free); a 16-byte access aligned to 8 (a 128-bit table
 * entry) is two such 8-byte accesses, low half first.  So a device that writes data and then an aligned
 * status word, and a CPU that sees the status word, also sees the data; the
 * same holds for a descriptor written by the CPU before a doorbell.
 *
 * Threads: accesses from any number of threads are safe and take no lock.
 * The region map is an immutable snapshot swapped atomically when a region is
 * added or removed (a BAR being placed); old snapshots live until
 * vtio_mem_destroy(), so a reader never sees freed memory.  Adding and
 * removing regions are serialised by a mutex.
 */
#ifndef VTIO_MEM_H
#define VTIO_MEM_H

#include <vtio/common.h>

struct vtio_mem;

/* Callbacks of an MMIO region.  off is relative to the region's base; size is
 * 1, 2, 4 or 8 and off is a multiple of size.  They run on the accessing
 * thread (a CPU thread for register accesses, a device thread for
 * peer-to-peer DMA) and must do their own locking. */
struct vtio_mmio_ops {
    uint64_t (*read)(void *opaque, uint64_t off, unsigned size);
    void (*write)(void *opaque, uint64_t off, uint64_t val, unsigned size);
};

struct vtio_mem_stats {
    uint64_t cpu_hole_reads;      /* CPU reads that returned all ones */
    uint64_t cpu_hole_writes;     /* CPU writes that were dropped */
    uint64_t dev_hole_accesses;   /* device accesses refused with -EFAULT */
};

VTIO_API struct vtio_mem *vtio_mem_create(void);
/* Unmaps and frees everything.  No access may be in flight. */
VTIO_API void vtio_mem_destroy(struct vtio_mem *mem);

/*
 * Adds RAM at [base, base + size).
 * @returns 0; -EINVAL if base or size is not 2 MiB aligned, size is 0 or the
 * range wraps; -EEXIST if it overlaps a region; -ENOMEM if the memfd or its
 * mapping cannot be made.
 */
VTIO_API int vtio_mem_add_ram(struct vtio_mem *mem, uint64_t base, uint64_t size,
                              const char *name);

/*
 * Adds an MMIO region at [base, base + size), dispatching to ops/opaque.
 * @returns 0; -EINVAL for size 0, a wrapping range or missing callbacks;
 * -EEXIST if it overlaps a region.
 */
VTIO_API int vtio_mem_add_mmio(struct vtio_mem *mem, uint64_t base, uint64_t size,
                               const struct vtio_mmio_ops *ops, void *opaque,
                               const char *name);

/* Removes the MMIO region that starts at base (RAM cannot be removed).
 * @returns 0; -ENOENT if no MMIO region starts there. */
VTIO_API int vtio_mem_remove_mmio(struct vtio_mem *mem, uint64_t base);

/* CPU-side access (see above).  Never fails. */
VTIO_API void vtio_mem_read(struct vtio_mem *mem, uint64_t pa, void *buf, size_t len);
VTIO_API void vtio_mem_write(struct vtio_mem *mem, uint64_t pa, const void *buf, size_t len);
VTIO_API uint8_t  vtio_mem_read8(struct vtio_mem *mem, uint64_t pa);
VTIO_API uint16_t vtio_mem_read16(struct vtio_mem *mem, uint64_t pa);
VTIO_API uint32_t vtio_mem_read32(struct vtio_mem *mem, uint64_t pa);
VTIO_API uint64_t vtio_mem_read64(struct vtio_mem *mem, uint64_t pa);
VTIO_API void vtio_mem_write8(struct vtio_mem *mem, uint64_t pa, uint8_t v);
VTIO_API void vtio_mem_write16(struct vtio_mem *mem, uint64_t pa, uint16_t v);
VTIO_API void vtio_mem_write32(struct vtio_mem *mem, uint64_t pa, uint32_t v);
VTIO_API void vtio_mem_write64(struct vtio_mem *mem, uint64_t pa, uint64_t v);
/* CPU-side fill, e.g. to zero a page. */
VTIO_API void vtio_mem_set(struct vtio_mem *mem, uint64_t pa, int byte, size_t len);

/*
 * Device-side access.
 * @returns 0; -EFAULT if any byte of the range is a hole (nothing is read
 * or written); -EINVAL if the range wraps.
 */
VTIO_API int vtio_mem_dev_read(struct vtio_mem *mem, uint64_t pa, void *buf, size_t len);
VTIO_API int vtio_mem_dev_write(struct vtio_mem *mem, uint64_t pa, const void *buf, size_t len);

/*
 * The contiguous RAM run that starts at pa: its host address and how many
 * bytes (at most len) are RAM from pa on without a region change.  This is
 * the fast path for a device's data mover and for mapping RAM elsewhere; it
 * is part of the machine, not something host software may use.
 * @returns 0; -EFAULT if pa is not RAM.
 */
VTIO_API int vtio_mem_ram_span(struct vtio_mem *mem, uint64_t pa, uint64_t len,
                               void **host, uint64_t *span);

/* Whether [pa, pa+len) is all RAM; all MMIO or RAM (no hole) for _mapped. */
VTIO_API bool vtio_mem_is_ram(struct vtio_mem *mem, uint64_t pa, uint64_t len);
VTIO_API bool vtio_mem_is_mapped(struct vtio_mem *mem, uint64_t pa, uint64_t len);

/* The memfd behind the RAM region holding pa and pa's offset in it (to map
 * guest RAM into another process later).  @returns 0; -EFAULT if not RAM. */
VTIO_API int vtio_mem_ram_fd(struct vtio_mem *mem, uint64_t pa, int *fd, uint64_t *offset);

/* Visits RAM regions in address order (the firmware memory map). */
VTIO_API void vtio_mem_for_each_ram(struct vtio_mem *mem,
                                    void (*fn)(void *arg, uint64_t base, uint64_t size,
                                               const char *name),
                                    void *arg);

/* Total RAM bytes, and bytes actually backed by host memory so far. */
VTIO_API uint64_t vtio_mem_ram_size(struct vtio_mem *mem);
VTIO_API uint64_t vtio_mem_ram_resident(struct vtio_mem *mem);

VTIO_API void vtio_mem_get_stats(struct vtio_mem *mem, struct vtio_mem_stats *st);

#endif
