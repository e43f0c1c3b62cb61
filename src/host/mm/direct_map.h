/*
 * The direct map's life cycle (host.c).  The lookups are public: host.h.
 */
#ifndef VTIO_HOST_MM_DIRECT_MAP_H
#define VTIO_HOST_MM_DIRECT_MAP_H

struct vtio_mem;
struct vtio_direct_map;

#define VTIO_DIRECT_MAP_MAX_RANGES 8

/* @returns 0 and *out; -ENOSPC too many RAM ranges; -EFAULT; -ENOMEM. */
int vtio_direct_map_create(struct vtio_mem *mem, struct vtio_direct_map **out);
void vtio_direct_map_destroy(struct vtio_direct_map *dm);

#endif
