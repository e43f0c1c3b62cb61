/*
 * The VT-d driver as the IOMMU core sees it (Linux's dmar.c and the
 * intel_iommu_ops half of iommu.c): the units the firmware's DMAR table
 * describes, which unit serves which device, and the boot sequence.
 *
 * One struct intel_iommu per DRHD, named dmar0, dmar1 ... in table order.
 * A device belongs to the DRHD that lists its requester id in its device
 * scope; failing that, to the DRHD of its segment with INCLUDE_PCI_ALL
 * (which by definition covers what no other DRHD lists).
 *
 * Boot (intel_iommu_init): every unit is brought up with translation off
 * (iommu.c); if one is in caching mode, lazy DMA domains become strict (as
 * Linux does: each invalidation is a trap to the hypervisor, and batching
 * them would leave stale mappings visible to it for long); then the driver
 * registers with the core, which probes the
 * devices, forms groups and attaches their default domains, and only then
 * is translation turned on, unit by unit: no device ever runs through a
 * half-built context table.  A failure after registration unregisters,
 * which ends in shutdown() through the core; before it, the units already
 * up are shut down here.
 *
 * Threads: init and shutdown from the boot thread; probe/release from the
 * core under its lock; fault_sync from any thread (fault.c's rules).
 */
#include "host/iommu/intel/intel_iommu.h"

#include <vtio/intr.h>
#include <vtio/pci_enum.h>

#include <errno.h>
#include <stdlib.h>

#include "util/error.h"

/* The unit serving requester id rid of segment seg, or NULL. */
static struct intel_iommu *unit_for(struct intel_drv *drv, uint16_t seg, uint16_t rid)
{
    for (unsigned i = 0; i < drv->n_units; i++) {
        const struct vtio_dmar_drhd *d = drv->unit[i]->drhd;
        if (d->segment != seg || d->include_all)
            continue;
        for (unsigned s = 0; s < d->n_scope && s < VTIO_DMAR_MAX_SCOPE; s++)
            if (d->scope[s] == rid)
                return drv->unit[i];
    }
    for (unsigned i = 0; i < drv->n_units; i++) {
        const struct vtio_dmar_drhd *d = drv->unit[i]->drhd;
        if (d->segment == seg && d->include_all)
            return drv->unit[i];
    }
    return NULL;
}

static int intel_probe_device(void *opaque, struct vtio_device *dev, void **unit)
{
    struct intel_drv *drv = opaque;
    uint16_t seg = dev->pci ? dev->pci->segment : drv->host->fw.pci_segment;
    struct intel_iommu *u = unit_for(drv, seg, dev->rid);
    if (!u)
        return -ENODEV;
    dev->iommu_priv = u;
    *unit = u;
    return 0;
}

static void intel_release_device(void *opaque, struct vtio_device *dev)
{
    (void)opaque;
    dev->iommu_priv = NULL;
}

/* No device needs a particular default domain. */
static enum vtio_iommu_domain_type intel_def_domain_type(void *opaque, struct vtio_device *dev)
{
    (void)opaque;
    (void)dev;
    return 0;
}

/* The interrupt window: a DMA write there is an interrupt request the unit
 * remaps (or blocks), never translated (Linux reports the IOAPIC range as
 * IOMMU_RESV_MSI).  vtio's firmware describes no RMRRs. */
static unsigned intel_get_resv_regions(void *opaque, struct vtio_device *dev,
                                       struct vtio_iommu_resv_region *out, unsigned max)
{
    (void)opaque;
    (void)dev;
    if (max)
        out[0] = (struct vtio_iommu_resv_region){ .start = VTIO_MSI_WINDOW_BASE,
                                                  .length = VTIO_MSI_WINDOW_SIZE,
                                                  .type = VTIO_IOMMU_RESV_MSI };
    return 1;
}

static void intel_drv_fault_sync(void *opaque)
{
    struct intel_drv *drv = opaque;
    for (unsigned i = 0; i < drv->n_units; i++)
        intel_fault_sync(drv->unit[i]);
}

/* Every unit off (last first) and the driver freed. */
static void intel_drv_shutdown(void *opaque)
{
    struct intel_drv *drv = opaque;
    while (drv->n_units) {
        struct intel_iommu *u = drv->unit[--drv->n_units];
        intel_unit_shutdown(u);
        free(u);
    }
    free(drv);
}

static const struct vtio_iommu_ops intel_iommu_ops = {
    .name = "intel-iommu",
    .probe_device = intel_probe_device,
    .release_device = intel_release_device,
    .domain_alloc = intel_domain_alloc,
    .def_domain_type = intel_def_domain_type,
    .fault_sync = intel_drv_fault_sync,
    .get_resv_regions = intel_get_resv_regions,
    .shutdown = intel_drv_shutdown,
    .deferred_flush = true,
};

int intel_iommu_init(struct vtio_host *h)
{
    if (!h)
        return vtio_fail(-EINVAL, "intel-iommu: no host");
    const struct vtio_dmar *dmar = &h->fw.dmar;
    if (!dmar->n_drhd)
        return vtio_fail(-ENODEV, "intel-iommu: no DMAR table");
    if (dmar->n_drhd > VTIO_DMAR_MAX_DRHD)
        return vtio_fail(-EINVAL, "intel-iommu: %u DRHDs (at most %u)", dmar->n_drhd,
                         VTIO_DMAR_MAX_DRHD);
    struct intel_drv *drv = calloc(1, sizeof(*drv));
    if (!drv)
        return vtio_fail(-ENOMEM, "intel-iommu: out of memory");
    drv->host = h;

    for (unsigned i = 0; i < dmar->n_drhd; i++) {
        struct intel_iommu *u = calloc(1, sizeof(*u));
        int ret = u ? intel_unit_init(u, h, &dmar->drhd[i], i)
                    : vtio_fail(-ENOMEM, "intel-iommu: out of memory");
        if (ret) {
            free(u);
            intel_drv_shutdown(drv);
            return ret;
        }
        drv->unit[drv->n_units++] = u;
    }

    /* Under caching mode (a virtual IOMMU) every invalidation is a trap:
     * Linux then keeps DMA domains strict rather than batching. */
    for (unsigned i = 0; i < drv->n_units; i++) {
        if ((drv->unit[i]->cap & VTD_CAP_CM) && h->opts.iommu_mode == VTIO_HOST_IOMMU_LAZY) {
            vtio_host_log(h, VTIO_LOG_INFO, "DMAR: IOMMU batching disallowed due to "
                          "virtualization");
            h->opts.iommu_mode = VTIO_HOST_IOMMU_STRICT;
        }
    }

    int ret = vtio_iommu_register(h, &intel_iommu_ops, drv);
    if (ret)
        return ret;             /* the core has shut the driver down */
    for (unsigned i = 0; i < drv->n_units; i++) {
        ret = intel_unit_enable_translation(drv->unit[i]);
        if (ret) {
            vtio_iommu_unregister(h);
            return ret;
        }
        vtio_host_log(h, VTIO_LOG_INFO, "%s: DMA remapping enabled", drv->unit[i]->name);
    }
    return 0;
}
