/*
 * Mapping a layout for a device through the DMA API, and checking the
 * result against the IOMMU.
 *
 * A layout of one region is mapped with map_single (through its direct-map
 * pointer) or map_page (through its physical address), or, like a layout of
 * several regions, with map_sg.  The device is then given the DMA segments
 * the call returned.  Right after mapping, each page of those segments is
 * looked up in the IOMMU's page tables (vtio_iommu_iova_to_phys) and must
 * lead to the very bytes of the layout at the same stream offset; without a
 * paging domain (pass-through, no IOMMU) the DMA address must be the
 * physical address.  The lookup is safe while other threads map and unmap:
 * the tables above a live mapping are never freed, and lookups are
 * lock-free readers of entries written with release stores.
 */
#include "soak.h"

#include <vtio/device.h>

#include <errno.h>
#include <inttypes.h>
#include <string.h>

/* The physical address of stream offset pos of l. */
static uint64_t layout_pa(const struct soak_layout *l, uint64_t pos)
{
    for (unsigned i = 0; i < l->n; i++) {
        if (pos < l->r[i].len)
            return l->b->pa + l->r[i].off + pos;
        pos -= l->r[i].len;
    }
    return UINT64_MAX;
}

/* Where the device's DMA address dma leads. */
static int device_view(struct soak_engine *e, uint64_t dma, uint64_t *pa)
{
    if (!e->domain) {
        *pa = dma;
        return 0;
    }
    return vtio_iommu_iova_to_phys(e->domain, dma, pa);
}

/* Walks the segments in stream order, one lookup per DMA page. */
static bool check_translation(struct soak *s, struct soak_counters *k, struct soak_engine *e,
                              const struct soak_layout *l, const struct soak_mapping *mp)
{
    uint64_t pos = 0;
    for (unsigned i = 0; i < mp->nseg; i++) {
        const struct vtio_dmae_seg *sg = &mp->seg[i];
        for (uint64_t done = 0; done < sg->len;) {
            uint64_t dma = sg->addr + done, want = layout_pa(l, pos + done), got = 0;
            int rc = device_view(e, dma, &got);
            k->translations++;
            if (rc < 0 || got != want) {
                soak_fail(s, "%s: DMA address %#" PRIx64 " (segment %u of %u, stream offset "
                          "%" PRIu64 ") leads to %s%#" PRIx64 ", the buffer is at pa %#" PRIx64,
                          vtio_device_name(e->dev), dma, i + 1, mp->nseg, pos + done,
                          rc < 0 ? "nothing: " : "pa ", rc < 0 ? (uint64_t)-rc : got, want);
                return false;
            }
            uint64_t to_page_end = VTIO_PAGE_SIZE - (dma & (VTIO_PAGE_SIZE - 1));
            done += to_page_end;
        }
        pos += sg->len;
    }
    if (pos != l->len) {
        soak_fail(s, "%s: DMA segments cover %" PRIu64 " bytes, the buffer has %" PRIu64,
                  vtio_device_name(e->dev), pos, l->len);
        return false;
    }
    return true;
}

static bool map_sg(struct soak *s, struct soak_engine *e, const struct soak_layout *l,
                   struct soak_mapping *mp)
{
    mp->sg = true;
    mp->nents = (int)l->n;
    for (unsigned i = 0; i < l->n; i++)
        mp->sgl[i] = (struct vtio_scatterlist){ .phys = l->b->pa + l->r[i].off,
                                                .length = (uint32_t)l->r[i].len };
    int n = vtio_dma_map_sg(e->dev, mp->sgl, mp->nents, mp->dir);
    if (n <= 0 || n > mp->nents) {
        soak_fail(s, "%s: map_sg of %u entries: %d (%s)", vtio_device_name(e->dev), l->n, n,
                  vtio_last_error());
        return false;
    }
    mp->nseg = (unsigned)n;
    for (int i = 0; i < n; i++)
        mp->seg[i] = (struct vtio_dmae_seg){ mp->sgl[i].dma_address, mp->sgl[i].dma_length };
    return true;
}

static bool map_one(struct soak *s, struct soak_engine *e, const struct soak_layout *l,
                    struct soak_rng *r, struct soak_mapping *mp)
{
    uint64_t off = l->r[0].off;
    mp->sg = false;
    mp->by_page = soak_one_in(r, 2);
    mp->addr = mp->by_page
                   ? vtio_dma_map_page(e->dev, l->b->pa + off, (size_t)l->len, mp->dir)
                   : vtio_dma_map_single(e->dev, l->b->cpu + off, (size_t)l->len, mp->dir);
    int err = vtio_dma_mapping_error(e->dev, mp->addr);
    if (err) {
        soak_fail(s, "%s: map_%s of %" PRIu64 " bytes: %d (%s)", vtio_device_name(e->dev),
                  mp->by_page ? "page" : "single", l->len, err, vtio_last_error());
        return false;
    }
    mp->nseg = 1;
    mp->seg[0] = (struct vtio_dmae_seg){ mp->addr, (uint32_t)l->len };
    return true;
}

bool soak_map(struct soak *s, struct soak_counters *k, struct soak_engine *e,
              const struct soak_layout *l, enum vtio_dma_direction dir, bool sg,
              struct soak_rng *r, struct soak_mapping *mp)
{
    memset(mp, 0, sizeof(*mp));
    mp->dir = dir;
    bool ok = sg || l->n > 1 ? map_sg(s, e, l, mp) : map_one(s, e, l, r, mp);
    if (!ok)
        return false;
    mp->mapped = true;
    k->maps++;
    k->sg_maps += mp->sg;
    return check_translation(s, k, e, l, mp);
}

void soak_unmap(struct soak_engine *e, struct soak_counters *k, struct soak_mapping *mp)
{
    if (!mp->mapped)
        return;
    if (mp->sg)
        vtio_dma_unmap_sg(e->dev, mp->sgl, mp->nents, mp->dir);
    else if (mp->by_page)
        vtio_dma_unmap_page(e->dev, mp->addr, (size_t)mp->seg[0].len, mp->dir);
    else
        vtio_dma_unmap_single(e->dev, mp->addr, (size_t)mp->seg[0].len, mp->dir);
    mp->mapped = false;
    k->unmaps++;
}
