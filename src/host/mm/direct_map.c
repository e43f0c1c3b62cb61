/*
 * direct_map: the CPUs' linear map of RAM (a kernel's direct map).
 *
 * Every RAM range of the machine is one contiguous host mapping
 * (vtio_mem_ram_span), so the direct map is a short array of
 * {physical base, size, host pointer}, copied once at boot from the RAM map
 * firmware reports.  Lookups in either direction scan it (machines have two
 * or three ranges) and take no lock: the array never changes after boot.
 *
 * What the host uses it for: writing IOMMU tables and descriptor rings at
 * memory speed, handing drivers CPU pointers for DMA buffers, and the
 * pagemap-style lookup (virt_to_phys) that software with a pointer needs to
 * learn which physical page backs it.
 */
#include <vtio/host.h>
#include <vtio/mem.h>

#include <errno.h>
#include <stdlib.h>

#include "host/mm/direct_map.h"
#include "util/error.h"

struct dmap_range {
    uint64_t base, size;
    uint8_t *va;
};

struct vtio_direct_map {
    unsigned n;
    struct dmap_range r[VTIO_DIRECT_MAP_MAX_RANGES];
    int err;
};

static void add_range(void *arg, uint64_t base, uint64_t size, const char *name)
{
    (void)name;
    struct vtio_direct_map *dm = arg;
    if (dm->n == VTIO_DIRECT_MAP_MAX_RANGES) {
        dm->err = -ENOSPC;
        return;
    }
    dm->r[dm->n++] = (struct dmap_range){ .base = base, .size = size };
}

int vtio_direct_map_create(struct vtio_mem *mem, struct vtio_direct_map **out)
{
    struct vtio_direct_map *dm = calloc(1, sizeof(*dm));
    if (!dm)
        return vtio_fail(-ENOMEM, "direct map: out of memory");
    vtio_mem_for_each_ram(mem, add_range, dm);
    for (unsigned i = 0; i < dm->n && dm->err == 0; i++) {
        void *va;
        uint64_t span;
        if (vtio_mem_ram_span(mem, dm->r[i].base, dm->r[i].size, &va, &span) < 0 ||
            span != dm->r[i].size)
            dm->err = -EFAULT;
        dm->r[i].va = va;
    }
    if (dm->err) {
        int err = dm->err;
        free(dm);
        return vtio_fail(err, "direct map: RAM map has more than %d ranges or a range "
                         "without one host mapping", VTIO_DIRECT_MAP_MAX_RANGES);
    }
    *out = dm;
    return 0;
}

void vtio_direct_map_destroy(struct vtio_direct_map *dm)
{
    free(dm);
}

void *vtio_host_phys_to_virt(struct vtio_host *h, uint64_t pa)
{
    const struct vtio_direct_map *dm = h->dmap;
    for (unsigned i = 0; i < dm->n; i++)
        if (pa - dm->r[i].base < dm->r[i].size)
            return dm->r[i].va + (pa - dm->r[i].base);
    return NULL;
}

int vtio_host_virt_to_phys(struct vtio_host *h, const void *va, uint64_t *pa)
{
    const struct vtio_direct_map *dm = h->dmap;
    uintptr_t p = (uintptr_t)va;
    for (unsigned i = 0; i < dm->n; i++) {
        uintptr_t base = (uintptr_t)dm->r[i].va;
        if (p - base < dm->r[i].size) {
            *pa = dm->r[i].base + (p - base);
            return 0;
        }
    }
    return vtio_fail(-EFAULT, "virt_to_phys: %p is not in the direct map of RAM", va);
}
