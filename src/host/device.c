/*
 * device: the host's device objects (include/vtio/device.h), one per PCI
 * function, made at boot from the enumeration and freed at shutdown.
 *
 * h->devices is filled once, in scan order, before anything else can see
 * it, and never changes until shutdown: lookups walk it without a lock
 * (machines have a handful of functions, so a scan is cheap).  A device's
 * lock serialises driver binding and the DMA setters; the fields those
 * write are atomics, so hot paths read them without it.
 */
#include <vtio/device.h>
#include <vtio/dma.h>
#include <vtio/pci_enum.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "host/device_priv.h"
#include "host/iommu/iommu_priv.h"
#include "util/error.h"

/* Linux's PCI defaults (pci_setup_device, dma_parms). */
#define DEFAULT_DMA_MASK        0xffffffffull
#define DEFAULT_MAX_SEG_SIZE    (64u * 1024u)
#define DEFAULT_SEG_BOUNDARY    0xffffffffull

static bool listed_untrusted(const struct vtio_host_options *o, uint16_t rid)
{
    for (unsigned i = 0; i < o->n_untrusted && i < VTIO_HOST_MAX_UNTRUSTED; i++)
        if (o->untrusted_rid[i] == rid)
            return true;
    return false;
}

static void device_init(struct vtio_device *dev, struct vtio_host *h,
                        const struct vtio_pci_function *fn)
{
    dev->host = h;
    dev->pci = fn;
    dev->rid = fn->rid;
    snprintf(dev->name, sizeof(dev->name), "%04x:%02x:%02x.%u", fn->segment, fn->bus,
             fn->dev, fn->fn);
    dev->untrusted = listed_untrusted(&h->opts, fn->rid);
    pthread_mutex_init(&dev->lock, NULL);
    atomic_init(&dev->driver, NULL);
    atomic_init(&dev->dma_mask, DEFAULT_DMA_MASK);
    atomic_init(&dev->coherent_dma_mask, DEFAULT_DMA_MASK);
    atomic_init(&dev->max_seg_size, DEFAULT_MAX_SEG_SIZE);
    atomic_init(&dev->seg_boundary_mask, DEFAULT_SEG_BOUNDARY);
}

int vtio_host_devices_create(struct vtio_host *h)
{
    unsigned n = vtio_pci_count(h->pci);
    struct vtio_device **devs = calloc(n + 1, sizeof(*devs));
    if (!devs)
        return vtio_fail(-ENOMEM, "host: out of memory for devices");
    for (unsigned i = 0; i < n; i++) {
        devs[i] = calloc(1, sizeof(*devs[i]));
        if (!devs[i]) {
            while (i-- > 0) {
                pthread_mutex_destroy(&devs[i]->lock);
                free(devs[i]);
            }
            free(devs);
            return vtio_fail(-ENOMEM, "host: out of memory for devices");
        }
        device_init(devs[i], h, vtio_pci_get(h->pci, i));
    }
    h->devices = devs;
    h->n_devices = n;
    return 0;
}

void vtio_host_devices_destroy(struct vtio_host *h)
{
    for (unsigned i = 0; i < h->n_devices; i++) {
        pthread_mutex_destroy(&h->devices[i]->lock);
        free(h->devices[i]);
    }
    free(h->devices);
    h->devices = NULL;
    h->n_devices = 0;
}

struct vtio_device *vtio_host_device(struct vtio_host *h, const struct vtio_pci_function *fn)
{
    for (unsigned i = 0; h && fn && i < h->n_devices; i++)
        if (h->devices[i]->pci == fn)
            return h->devices[i];
    return NULL;
}

struct vtio_device *vtio_host_device_by_rid(struct vtio_host *h, uint16_t rid)
{
    for (unsigned i = 0; h && i < h->n_devices; i++)
        if (h->devices[i]->rid == rid)
            return h->devices[i];
    return NULL;
}

const char *vtio_device_name(const struct vtio_device *dev)
{
    return dev ? dev->name : "(none)";
}

const struct vtio_pci_function *vtio_device_pci(const struct vtio_device *dev)
{
    return dev ? dev->pci : NULL;
}

struct vtio_host *vtio_device_host(const struct vtio_device *dev)
{
    return dev ? dev->host : NULL;
}

uint16_t vtio_device_rid(const struct vtio_device *dev)
{
    return dev ? dev->rid : 0;
}

bool vtio_device_untrusted(const struct vtio_device *dev)
{
    return dev && dev->untrusted;
}

/* A DMA-API driver first registers as a user of the group's default
 * domain (refused while VFIO owns the group), then binds; the group rule is
 * checked before the device lock, which nests inside the core's. */
static int bind_driver(struct vtio_device *dev, const char *driver, bool managed_dma)
{
    if (!dev || !driver || !driver[0])
        return vtio_fail(-EINVAL, "device: bind needs a device and a driver name");
    int rc = managed_dma ? 0 : vtio_iommu_device_use_default_domain(dev);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&dev->lock);
    const char *cur = atomic_load(&dev->driver);
    if (cur) {
        rc = vtio_fail(-EBUSY, "device: %s is already bound to %s", dev->name, cur);
    } else {
        dev->driver_managed_dma = managed_dma;
        atomic_store(&dev->driver, driver);
    }
    pthread_mutex_unlock(&dev->lock);
    if (rc < 0 && !managed_dma)
        vtio_iommu_device_unuse_default_domain(dev);
    return rc;
}

int vtio_device_bind(struct vtio_device *dev, const char *driver)
{
    return bind_driver(dev, driver, false);
}

int vtio_device_bind_managed(struct vtio_device *dev, const char *driver)
{
    return bind_driver(dev, driver, true);
}

unsigned vtio_device_unbind(struct vtio_device *dev)
{
    if (!dev)
        return 0;
    pthread_mutex_lock(&dev->lock);
    const char *was = atomic_exchange(&dev->driver, NULL);
    bool managed_dma = dev->driver_managed_dma;
    dev->driver_managed_dma = false;
    pthread_mutex_unlock(&dev->lock);
    if (!was)
        return 0;
    if (!managed_dma)
        vtio_iommu_device_unuse_default_domain(dev);
    /* What the driver left mapped is reported after it is gone, as Linux's
     * dma-debug does on BUS_NOTIFY_UNBOUND_DRIVER. */
    return vtio_dma_debug_check_leaks(dev);
}

const char *vtio_device_driver(const struct vtio_device *dev)
{
    return dev ? atomic_load(&dev->driver) : NULL;
}
