/*
 * page_alloc: the physical page allocator of host software.
 *
 * Everything host software keeps in machine RAM (IOMMU tables, descriptor
 * rings, DMA buffers) comes from here, so that devices and the IOMMU find it
 * at a physical address as they would on a real computer.  It is a buddy
 * allocator over the RAM ranges that firmware reports (the e820 map, i.e.
 * vtio_mem_for_each_ram() at creation time): blocks of 2^order pages of
 * 4 KiB, order 0 (4 KiB) up to VTIO_PAGE_MAX_ORDER = 18 (1 GiB); a 2 MiB
 * block is order 9.  A block of order k is always aligned to its size.
 *
 * Memory is split in two zones, as x86 kernels do: DMA32 (below 4 GiB) and
 * NORMAL (from 4 GiB up).  An ordinary allocation prefers NORMAL and falls
 * back to DMA32; VTIO_PAGE_DMA32 allocates only below 4 GiB (for devices and
 * registers that take 32-bit addresses).
 *
 * Promises:
 *  - creation costs O(number of RAM ranges x orders), never O(pages): a
 *    16 GiB machine gets an allocator at once, and neither machine RAM nor
 *    the allocator's own metadata is touched beyond the blocks in use;
 *  - the allocator never reads or writes machine RAM itself, except to zero
 *    a block when asked to (VTIO_PAGE_ZERO, through the CPU: vtio_mem_set);
 *  - total == free + allocated + reserved, in bytes, at all times;
 *  - a failed call changes nothing.
 *
 * Threads: every call is thread-safe (one mutex per allocator).
 * vtio_page_alloc_destroy() must not race with other calls.
 */
#ifndef VTIO_PAGE_ALLOC_H
#define VTIO_PAGE_ALLOC_H

#include <vtio/common.h>

struct vtio_mem;
struct vtio_page_alloc;

#define VTIO_PAGE_MAX_ORDER 18          /* 2^18 pages = 1 GiB */
#define VTIO_PAGE_ORDER_2M  9           /* 2 MiB */
#define VTIO_PAGE_DMA32_LIMIT 0x100000000ull

/* Allocation flags. */
#define VTIO_PAGE_ZERO  0x1u            /* fill the block with zeros */
#define VTIO_PAGE_DMA32 0x2u            /* the block lies below 4 GiB */

struct vtio_page_alloc_stats {
    uint64_t total_bytes;       /* RAM under management (incl. reserved) */
    uint64_t free_bytes;        /* free, both zones */
    uint64_t free_dma32_bytes;  /* free below 4 GiB */
    uint64_t allocated_bytes;   /* handed out by vtio_page_alloc() */
    uint64_t reserved_bytes;    /* taken out by vtio_page_alloc_reserve() */
    uint64_t free_blocks[VTIO_PAGE_MAX_ORDER + 1];  /* free blocks per order */
};

/* The order of the smallest block that holds size bytes (0 for size 0);
 * VTIO_PAGE_MAX_ORDER + 1 if size is over 1 GiB. */
static inline unsigned vtio_page_order(uint64_t size)
{
    unsigned order = 0;
    while (order <= VTIO_PAGE_MAX_ORDER && (VTIO_PAGE_SIZE << order) < size)
        order++;
    return order;
}

/*
 * Creates an allocator over every RAM range of mem (whole pages inside each
 * range; adjacent ranges merge), all of it free.  RAM added to mem later is
 * not seen.  mem must outlive the allocator.
 * Returns NULL (and sets vtio_last_error) if mem has no RAM, RAM reaches
 * beyond 16 TiB (pfns are kept in 32 bits), or host memory runs out.
 */
VTIO_API struct vtio_page_alloc *vtio_page_alloc_create(struct vtio_mem *mem);
/* Frees the allocator's metadata (not machine RAM; blocks still allocated
 * are simply forgotten). */
VTIO_API void vtio_page_alloc_destroy(struct vtio_page_alloc *pa);

/*
 * Takes [base, base + size) out of the free pool for good (firmware areas,
 * the low 1 MiB).  The range is widened to whole pages; parts of it that are
 * not RAM, or are already reserved, are ignored.
 * @returns 0; -EINVAL size 0 or the range wraps; -EBUSY some page of it is
 * allocated (nothing is reserved then).
 */
VTIO_API int vtio_page_alloc_reserve(struct vtio_page_alloc *pa, uint64_t base,
                                     uint64_t size);

/*
 * Allocates a block of 2^order pages, aligned to its size, and stores its
 * physical address in *out.  flags: VTIO_PAGE_ZERO, VTIO_PAGE_DMA32.
 * @returns 0; -EINVAL order > VTIO_PAGE_MAX_ORDER, unknown flags or out NULL;
 * -ENOMEM no free block that large (in the zone asked for).
 */
VTIO_API int vtio_page_alloc(struct vtio_page_alloc *pa, unsigned order, unsigned flags,
                             uint64_t *out);

/*
 * Returns a block to the pool, merging it with its free buddies.  order must
 * be the order it was allocated with.
 * @returns 0; -EINVAL order out of range, addr not aligned to the block size,
 * or addr not the start of an allocated block of that order (never
 * allocated, already free, reserved, or allocated with another order); the
 * allocator is unchanged then.
 */
VTIO_API int vtio_page_free(struct vtio_page_alloc *pa, uint64_t addr, unsigned order);

VTIO_API uint64_t vtio_page_alloc_free_bytes(struct vtio_page_alloc *pa);
VTIO_API uint64_t vtio_page_alloc_total_bytes(struct vtio_page_alloc *pa);
VTIO_API void vtio_page_alloc_get_stats(struct vtio_page_alloc *pa,
                                        struct vtio_page_alloc_stats *st);

#endif
