/*
 * Dirty-page tracking of the type1 backend (VFIO_IOMMU_DIRTY_PAGES, and
 * UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP), as Linux's type1
 * does it: in software.
 *
 * A device behind an IOMMU domain can write anywhere it is mapped and
 * nothing records where it did, so every pinned page is reported dirty at
 * every report (and stays so afterwards).  START gives each mapping a
 * bitmap in the smallest page size (type1_min_pgsize); a mapping made
 * while tracking gets its own at MAP_DMA; STOP frees them all.  A report
 * (GET_BITMAP, or an unmap with a bitmap) marks every page of a pinned
 * mapping dirty, ORs the mapping's bits into the caller's zeroed bitmap at
 * its offset from the range's start and, for GET_BITMAP, clears them: the
 * next interval starts.  DIRTY_PAGES needs v2 (-EACCES otherwise);
 * GET_BITMAP needs a range made of whole mappings.  A caller's bitmap is
 * checked before the lock is taken (page size a power of two, at least one
 * page, big enough, at most DIRTY_BITMAP_SIZE_MAX bytes), as in Linux.
 *
 * Invariant (under the container's lock): every mapping has a bitmap of
 * size / pgsize bits exactly while dirty_tracking is on.
 */
#include "host/vfio/type1_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

#define VFIO_DIRTY_FLAGS                                                      \
    (VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP |  \
     VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP)

/* ------------------------------------------------------------------------
 * Bitmaps
 * ------------------------------------------------------------------------ */

int type1_dirty_alloc(struct type1_dma *d, uint64_t pgsize)
{
    uint64_t pages = d->size / pgsize;
    if (pages > DIRTY_BITMAP_PAGES_MAX)
        return vtio_fail(-EINVAL, "vfio type1: mapping too large to track dirty pages");
    d->bitmap = calloc(1, DIRTY_BITMAP_BYTES(pages));
    return d->bitmap ? 0 : vtio_fail(-ENOMEM, "vfio type1: out of memory");
}

static void bitmap_set_all(uint64_t *bm, uint64_t nbits)
{
    memset(bm, 0xff, nbits / 64 * 8);
    if (nbits % 64)
        bm[nbits / 64] |= (1ull << (nbits % 64)) - 1;
}

/* ORs nbits of src into dst from bit `at` on. */
static void bitmap_or_at(uint64_t *dst, uint64_t at, const uint64_t *src, uint64_t nbits)
{
    for (uint64_t i = 0; i < nbits; i += 64) {
        uint64_t w = src[i / 64];
        if (nbits - i < 64)
            w &= (1ull << (nbits - i)) - 1;
        uint64_t bit = at + i, shift = bit % 64;
        dst[bit / 64] |= w << shift;
        if (shift && w >> (64 - shift))
            dst[bit / 64 + 1] |= w >> (64 - shift);
    }
}

/* Sets d's dirty bits in the user's bitmap, whose bit 0 is base_iova, and
 * starts d's next interval: a pinned page is dirty again at once. */
void type1_dirty_report(struct type1_dma *d, uint64_t *user, uint64_t base_iova,
                        uint64_t pgsize)
{
    uint64_t nbits = d->size / pgsize;
    if (d->runs)
        bitmap_set_all(d->bitmap, nbits);
    bitmap_or_at(user, (d->iova - base_iova) / pgsize, d->bitmap, nbits);
}

/* The checks Linux makes on a dirty bitmap before taking the lock. */
int type1_dirty_check_bitmap(const struct vfio_bitmap *bm, uint64_t range_size)
{
    if (!bm->data)
        return vtio_fail(-EINVAL, "vfio type1: dirty bitmap without data");
    if (!bm->pgsize || (bm->pgsize & (bm->pgsize - 1)))
        return vtio_fail(-EINVAL, "vfio type1: dirty bitmap page size %#llx",
                         (unsigned long long)bm->pgsize);
    uint64_t pages = range_size / bm->pgsize;
    if (!pages || !bm->size || bm->size > DIRTY_BITMAP_SIZE_MAX ||
        bm->size < DIRTY_BITMAP_BYTES(pages))
        return vtio_fail(-EINVAL, "vfio type1: dirty bitmap of %llu bytes for %llu pages",
                         (unsigned long long)bm->size, (unsigned long long)pages);
    return 0;
}

/* ------------------------------------------------------------------------
 * DIRTY_PAGES
 * ------------------------------------------------------------------------ */

static int dirty_start(struct type1 *c)
{
    if (c->dirty_tracking)
        return 0;
    uint64_t pgsize = type1_min_pgsize(c);
    for (struct type1_dma *d = type1_dma_first(c); d; d = type1_dma_next(c, d)) {
        int err = type1_dirty_alloc(d, pgsize);
        if (err) {
            for (struct type1_dma *u = type1_dma_first(c); u != d; u = type1_dma_next(c, u)) {
                free(u->bitmap);
                u->bitmap = NULL;
            }
            return err;
        }
    }
    c->dirty_tracking = true;
    return 0;
}

static void dirty_stop(struct type1 *c)
{
    for (struct type1_dma *d = type1_dma_first(c); d; d = type1_dma_next(c, d)) {
        free(d->bitmap);
        d->bitmap = NULL;
    }
    c->dirty_tracking = false;
}

/* GET_BITMAP: the range must cover whole mappings, as Linux requires. */
static int dirty_get(struct type1 *c, const struct vfio_iommu_type1_dirty_bitmap_get *g)
{
    uint64_t pgsize = type1_min_pgsize(c), last = g->iova + g->size - 1;
    if (g->bitmap.pgsize != pgsize)
        return vtio_fail(-EINVAL, "vfio type1: dirty bitmap page size must be %#llx",
                         (unsigned long long)pgsize);
    if ((g->iova & (pgsize - 1)) || !g->size || (g->size & (pgsize - 1)))
        return vtio_fail(-EINVAL, "vfio type1: GET_BITMAP range not aligned to %#llx",
                         (unsigned long long)pgsize);
    if (!c->dirty_tracking)
        return vtio_fail(-EINVAL, "vfio type1: GET_BITMAP while dirty tracking is off");
    if (type1_dma_cuts(c, g->iova, last))
        return vtio_fail(-EINVAL, "vfio type1: GET_BITMAP [%#llx, %#llx] cuts a mapping",
                         (unsigned long long)g->iova, (unsigned long long)last);
    for (struct type1_dma *d = type1_dma_find(c, g->iova, last); d && d->iova <= last;
         d = type1_dma_next(c, d)) {
        type1_dirty_report(d, g->bitmap.data, g->iova, pgsize);
        memset(d->bitmap, 0, DIRTY_BITMAP_BYTES(d->size / pgsize));
    }
    return 0;
}

long type1_dirty_pages(struct type1 *c, void *arg)
{
    if (!c->v2)
        return vtio_fail(-EACCES, "vfio type1: DIRTY_PAGES needs VFIO_TYPE1v2_IOMMU");
    struct vfio_iommu_type1_dirty_bitmap dirty;
    size_t minsz = offsetof(struct vfio_iommu_type1_dirty_bitmap, data);
    memcpy(&dirty, arg, minsz);
    if (dirty.argsz < minsz || (dirty.flags & ~VFIO_DIRTY_FLAGS))
        return vtio_fail(-EINVAL, "vfio type1: DIRTY_PAGES argsz %u flags %#x", dirty.argsz,
                         dirty.flags);
    if (!dirty.flags || (dirty.flags & (dirty.flags - 1)))
        return vtio_fail(-EINVAL, "vfio type1: DIRTY_PAGES needs exactly one of START, STOP, "
                         "GET_BITMAP");
    struct vfio_iommu_type1_dirty_bitmap_get range;
    if (dirty.flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP) {
        if (dirty.argsz - minsz < sizeof(range))
            return vtio_fail(-EINVAL, "vfio type1: GET_BITMAP argsz %u has no range",
                             dirty.argsz);
        memcpy(&range, (uint8_t *)arg + minsz, sizeof(range));
        if (range.iova + range.size < range.iova)
            return vtio_fail(-EINVAL, "vfio type1: GET_BITMAP range wraps around");
        int err = type1_dirty_check_bitmap(&range.bitmap, range.size);
        if (err)
            return err;
    }
    pthread_mutex_lock(&c->lock);
    int err = 0;
    if (dirty.flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_START)
        err = dirty_start(c);
    else if (dirty.flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP)
        dirty_stop(c);
    else
        err = dirty_get(c, &range);
    pthread_mutex_unlock(&c->lock);
    return err;
}
