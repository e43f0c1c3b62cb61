/*
 * The host's device object (include/vtio/device.h), as the IOMMU core and
 * the DMA layer see it.  Not part of the public API.
 *
 * Fields under "set at boot" never change after vtio_host_boot returns, so
 * hot paths read them without a lock.  `group` is set by the IOMMU core at
 * boot; the group's current domain is read through the group (an atomic
 * pointer: iommu_priv.h).
 */
#ifndef VTIO_HOST_DEVICE_PRIV_H
#define VTIO_HOST_DEVICE_PRIV_H

#include <vtio/device.h>
#include <vtio/host.h>

#include <pthread.h>
#include <stdatomic.h>

struct vtio_iommu_group;
struct vtio_dma_dev;

struct vtio_device {
    /* set at boot */
    struct vtio_host *host;
    const struct vtio_pci_function *pci;
    uint16_t rid;
    char name[16];
    bool untrusted;
    struct vtio_iommu_group *group;    /* NULL: no IOMMU translates it */
    uint16_t dma_alias;                /* the requester id its DMA carries: an
                                          aliasing bridge's, else rid */
    void *iommu_priv;                  /* the hardware driver's per-device data */

    pthread_mutex_t lock;              /* driver binding, DMA parameters */
    _Atomic(const char *) driver;
    bool driver_managed_dma;           /* the bound driver does not use the DMA
                                          API (vfio-pci), under lock */

    /* DMA parameters (dma.h setters; read without the lock) */
    _Atomic uint64_t dma_mask, coherent_dma_mask;
    _Atomic uint32_t max_seg_size;
    _Atomic uint64_t seg_boundary_mask;

    struct vtio_dma_dev *dma;          /* the DMA layer's per-device state */
};

/*
 * Binds a driver that manages DMA itself rather than through the DMA API
 * (Linux's driver_managed_dma: vfio-pci): it does not count as a DMA-API
 * user of the device's IOMMU group, so the group can be owned by a user.
 * Unbind with vtio_device_unbind.  @returns as vtio_device_bind.
 */
int vtio_device_bind_managed(struct vtio_device *dev, const char *driver);

/* Creates h->devices from h->pci (boot) and frees them (shutdown). */
int vtio_host_devices_create(struct vtio_host *h);
void vtio_host_devices_destroy(struct vtio_host *h);

#endif
