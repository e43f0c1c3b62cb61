/*
 * Inside the machine: copies to and from host memory that backs machine RAM
 * with the ordering vtio_mem promises (naturally aligned accesses of up to 8
 * bytes are single-copy atomic: loads acquire, stores release; anything else
 * is a plain copy).  The DMA port uses them on spans from vtio_mem_ram_span().
 */
#ifndef VTIO_HW_MEM_INTERNAL_H
#define VTIO_HW_MEM_INTERNAL_H

#include <stddef.h>

void vtio_ram_load(void *buf, const void *src, size_t len);
void vtio_ram_store(void *dst, const void *buf, size_t len);

#endif
