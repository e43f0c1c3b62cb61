/* PLACEHOLDER (link only): replaced by the DMA layer's mapping.c. */
#include "host/dma/dma_priv.h"

int vtio_dma_init(struct vtio_host *h)
{
    (void)h;
    return 0;
}

void vtio_dma_exit(struct vtio_host *h)
{
    (void)h;
}

int vtio_dma_domain_init(struct vtio_host *h, struct vtio_iommu_domain *d)
{
    (void)h;
    (void)d;
    return 0;
}

void vtio_dma_domain_destroy(struct vtio_host *h, struct vtio_iommu_domain *d)
{
    (void)h;
    (void)d;
}

unsigned vtio_dma_debug_check_leaks(struct vtio_device *dev)
{
    (void)dev;
    return 0;
}
