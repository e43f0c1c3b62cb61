/*
 * device: the host's object for a device that does DMA (Linux's struct
 * device, for a PCI function).
 *
 * Boot creates one per PCI function; it lives until host shutdown.  It is
 * the handle that the IOMMU core (its group and domain) and the DMA API
 * (its masks, its mappings) work on, and it records which driver owns the
 * function: a driver binds before it maps memory and unbinds when it is
 * removed, which is when DMA-API debugging reports the mappings it leaked.
 *
 * DMA constraints start as Linux's for PCI: 32-bit streaming and coherent
 * masks (a driver whose device takes 64-bit addresses says so with
 * vtio_dma_set_mask_and_coherent), segments of at most 64 KiB that do not
 * cross a 4 GiB boundary.
 *
 * Threads: lookups are lock-free; bind/unbind and the DMA setters take the
 * device's lock.
 */
#ifndef VTIO_DEVICE_H
#define VTIO_DEVICE_H

#include <vtio/common.h>

struct vtio_host;
struct vtio_device;
struct vtio_pci_function;

/* The device of a PCI function (or requester id) of h; NULL if none. */
VTIO_API struct vtio_device *vtio_host_device(struct vtio_host *h,
                                              const struct vtio_pci_function *fn);
VTIO_API struct vtio_device *vtio_host_device_by_rid(struct vtio_host *h, uint16_t rid);

/* "0000:00:03.0" */
VTIO_API const char *vtio_device_name(const struct vtio_device *dev);
VTIO_API const struct vtio_pci_function *vtio_device_pci(const struct vtio_device *dev);
VTIO_API struct vtio_host *vtio_device_host(const struct vtio_device *dev);
VTIO_API uint16_t vtio_device_rid(const struct vtio_device *dev);
/* Behind an external-facing port (from the host options). */
VTIO_API bool vtio_device_untrusted(const struct vtio_device *dev);

/*
 * Binds a driver (by name, which must outlive the binding) to the device.
 * The driver maps through the DMA API, so the device's IOMMU group must not
 * be owned by a user (VFIO: iommu.h's DMA ownership).
 * @returns 0; -EBUSY another driver is bound, or the group is owned by a
 * user; -EINVAL no name.
 */
VTIO_API int vtio_device_bind(struct vtio_device *dev, const char *driver);
/* Unbinds; with DMA-API debugging on, reports every mapping the driver
 * left behind.  @returns the number of leaked mappings (0 without debug). */
VTIO_API unsigned vtio_device_unbind(struct vtio_device *dev);
/* The bound driver's name, or NULL. */
VTIO_API const char *vtio_device_driver(const struct vtio_device *dev);

#endif
