/*
 * host: the OS's boot and shutdown (see include/vtio/host.h).
 *
 * Boot reads only what firmware hands over (struct vtio_firmware and the
 * RAM map of the CPUs' address space) and brings the software up in the
 * order a kernel does:
 *
 *   1. page allocator over the RAM map, minus the first 1 MiB (as x86
 *      kernels keep it: real-mode IVT, BIOS data, option ROMs live there
 *      on real machines), and the CPUs' direct map of RAM;
 *   2. PCI enumeration (BARs placed), then one device object per function;
 *   3. the DMA layer (bounce pool, flush-queue timer, debugging), which
 *      must exist before the IOMMU core makes DMA domains;
 *   4. the VT-d driver, if firmware has a DMAR table and the options do not
 *      turn it off (ACS is turned on first, as pci_request_acs() makes
 *      Linux do); it registers with the IOMMU core, which forms groups
 *      and attaches default domains.  -ENODEV from it means "no IOMMU";
 *      any other error fails the boot.
 *
 * Shutdown undoes it in reverse, starting with the enumeration: that turns
 * MSI-X off on every function (freeing interrupt-remapping entries through
 * h->irq_remap while the driver still runs) and bus mastering off, so no
 * device DMA is left when the IOMMU's domains and tables go away.  A boot
 * that fails part-way runs the same teardown over what it made.  The
 * machine itself is untouched and must be destroyed after the host.
 *
 * Threads: boot and shutdown from one thread, with no other host call
 * running.
 */
#include <vtio/host.h>
#include <vtio/page_alloc.h>
#include <vtio/pci_enum.h>

#include <errno.h>
#include <stdlib.h>

#include "host/device_priv.h"
#include "host/dma/dma_priv.h"
#include "host/iommu/intel/intel_iommu.h"
#include "host/iommu/iommu_priv.h"
#include "host/mm/direct_map.h"
#include "host/pci/pci_priv.h"
#include "host/vfio/vfio_priv.h"
#include "util/error.h"

#define LOW_RESERVED     (1ull << 20)
#define FQ_SIZE_MAX      65536u
#define FQ_TIMEOUT_MAX   600000u      /* ms: ten minutes */

int vtio_host_boot(struct vtio_machine *m, struct vtio_host **out)
{
    return vtio_host_boot_opts(m, NULL, out);
}

static int check_options(const struct vtio_host_options *o)
{
    if (o->iommu_mode > VTIO_HOST_IOMMU_PASSTHROUGH)
        return vtio_fail(-EINVAL, "host: unknown IOMMU mode %d", (int)o->iommu_mode);
    if (o->n_untrusted > VTIO_HOST_MAX_UNTRUSTED)
        return vtio_fail(-EINVAL, "host: %u untrusted devices (at most %d)", o->n_untrusted,
                         VTIO_HOST_MAX_UNTRUSTED);
    if (o->log_level < 0 || o->log_level > VTIO_LOG_DEBUG)
        return vtio_fail(-EINVAL, "host: log level %d is not 0-%d", o->log_level,
                         VTIO_LOG_DEBUG);
    if (o->fq_size > FQ_SIZE_MAX || (o->fq_size & (o->fq_size - 1)))
        return vtio_fail(-EINVAL, "host: flush-queue size %u is not a power of two up to %u",
                         o->fq_size, FQ_SIZE_MAX);
    if (o->fq_timeout_ms > FQ_TIMEOUT_MAX)
        return vtio_fail(-EINVAL, "host: flush-queue time-out %u ms is over %u ms",
                         o->fq_timeout_ms, FQ_TIMEOUT_MAX);
    return 0;
}

/* Warns about untrusted requester ids that name no function. */
static void check_untrusted(struct vtio_host *h)
{
    for (unsigned i = 0; i < h->opts.n_untrusted; i++) {
        uint16_t rid = h->opts.untrusted_rid[i];
        if (!vtio_host_device_by_rid(h, rid))
            vtio_host_log(h, VTIO_LOG_WARN, "vtio.untrusted: no device %02x:%02x.%u",
                          rid >> 8, (rid >> 3) & 0x1f, rid & 7u);
    }
}

/* Undoes boot (all of it, or as far as it got). */
static void teardown(struct vtio_host *h, bool dma_up)
{
    vtio_vfio_exit(h);
    vtio_pci_enum_destroy(h->pci);
    h->pci = NULL;
    for (unsigned i = 0; i < h->n_devices; i++)
        h->devices[i]->pci = NULL;
    vtio_iommu_unregister(h);
    if (dma_up)
        vtio_dma_exit(h);
    vtio_host_devices_destroy(h);
    vtio_direct_map_destroy(h->dmap);
    vtio_page_alloc_destroy(h->pages);
    free(h);
}

/* Steps 1 and 2. */
static int boot_memory_and_pci(struct vtio_host *h)
{
    h->pages = vtio_page_alloc_create(h->mem);
    if (!h->pages)
        return -ENOMEM;         /* message already recorded */
    int rc = vtio_page_alloc_reserve(h->pages, 0, LOW_RESERVED);
    if (rc == 0)
        rc = vtio_direct_map_create(h->mem, &h->dmap);
    if (rc == 0)
        rc = vtio_pci_enumerate(h->mem, &h->fw, &h->pci);
    if (rc == 0)
        rc = vtio_host_devices_create(h);
    return rc;
}

/* Step 4.  @returns 0 (with or without an IOMMU) or the driver's error. */
static int boot_iommu(struct vtio_host *h)
{
    if (h->opts.iommu_off || h->fw.dmar.n_drhd == 0)
        return 0;
    vtio_pci_enable_acs(h);     /* pci_request_acs(): before groups form */
    int rc = intel_iommu_init(h);
    if (rc == -ENODEV) {
        vtio_host_log(h, VTIO_LOG_INFO, "DMAR: no IOMMU in use");
        return 0;
    }
    return rc;
}

int vtio_host_boot_opts(struct vtio_machine *m, const struct vtio_host_options *o,
                        struct vtio_host **out)
{
    if (!m || !out || !m->mem || !m->intr)
        return vtio_fail(-EINVAL, "host: boot needs a machine");
    struct vtio_host_options opts = { 0 };
    if (o)
        opts = *o;
    int rc = check_options(&opts);
    if (rc < 0)
        return rc;
    struct vtio_host *h = calloc(1, sizeof(*h));
    if (!h)
        return vtio_fail(-ENOMEM, "host: out of memory");
    h->mem = m->mem;
    h->intr = m->intr;
    h->fw = m->fw;
    h->opts = opts;

    bool dma_up = false;
    rc = boot_memory_and_pci(h);
    if (rc == 0) {
        check_untrusted(h);
        rc = vtio_dma_init(h);
        dma_up = rc == 0;
    }
    if (rc == 0)
        rc = boot_iommu(h);
    if (rc == 0 && h->iommu)
        rc = vtio_vfio_init(h);
    if (rc < 0) {
        teardown(h, dma_up);
        return rc;
    }
    *out = h;
    return 0;
}

void vtio_host_shutdown(struct vtio_host *h)
{
    if (h)
        teardown(h, true);
}
