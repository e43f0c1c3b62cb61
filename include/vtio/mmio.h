/*
 * mmio: how a driver reaches a device's registers.
 *
 * A handle names a register window (a BAR as software placed it); drivers
 * use only these accessors, never pointers into a device model, so the same
 * driver source can later run over VFIO or inside a virtual machine, where
 * the accessors become trapped accesses.  Offsets are relative to the BAR;
 * an access outside it is a driver bug and reads all ones / is dropped.
 */
#ifndef VTIO_MMIO_H
#define VTIO_MMIO_H

#include <vtio/mem.h>

struct vtio_mmio {
    struct vtio_mem *mem;     /* the CPU's view of the address space */
    uint64_t base, size;
};

static inline bool vtio_mmio_ok_(const struct vtio_mmio *h, uint64_t off, unsigned n)
{
    return off < h->size && n <= h->size - off;
}
static inline uint32_t vtio_mmio_read32(const struct vtio_mmio *h, uint64_t off)
{
    return vtio_mmio_ok_(h, off, 4) ? vtio_mem_read32(h->mem, h->base + off) : ~0u;
}
static inline uint64_t vtio_mmio_read64(const struct vtio_mmio *h, uint64_t off)
{
    return vtio_mmio_ok_(h, off, 8) ? vtio_mem_read64(h->mem, h->base + off) : ~0ull;
}
static inline void vtio_mmio_write32(const struct vtio_mmio *h, uint64_t off, uint32_t v)
{
    if (vtio_mmio_ok_(h, off, 4))
        vtio_mem_write32(h->mem, h->base + off, v);
}
static inline void vtio_mmio_write64(const struct vtio_mmio *h, uint64_t off, uint64_t v)
{
    if (vtio_mmio_ok_(h, off, 8))
        vtio_mem_write64(h->mem, h->base + off, v);
}

#endif
