/*
 * host: the OS's boot and shutdown (see include/vtio/host.h).
 *
 * Boot reads only what firmware hands over (struct vtio_firmware and the
 * RAM map of the CPUs' address space), then builds the page allocator,
 * keeps the first 1 MiB out of it (as x86 kernels do: real-mode IVT, BIOS
 * data, option ROMs live there on real machines) and enumerates PCI.
 * Shutdown undoes it in reverse: MSI-X off and vectors freed, bus mastering
 * off on every function, allocator gone.  The machine itself is untouched
 * and must be destroyed after the host.
 *
 * Threads: boot and shutdown from one thread, with no other host call
 * running.
 */
#include <vtio/host.h>
#include <vtio/page_alloc.h>
#include <vtio/pci_enum.h>

#include "host/mm/direct_map.h"

#include <errno.h>
#include <stdlib.h>

#include "util/error.h"

#define LOW_RESERVED (1ull << 20)

int vtio_host_boot(struct vtio_machine *m, struct vtio_host **out)
{
    return vtio_host_boot_opts(m, NULL, out);
}

/* PLACEHOLDER wiring: options are stored, not yet acted on (the IOMMU core's
 * boot sequence replaces this). */
int vtio_host_boot_opts(struct vtio_machine *m, const struct vtio_host_options *o,
                        struct vtio_host **out)
{
    if (!m || !out || !m->mem || !m->intr)
        return vtio_fail(-EINVAL, "host: boot needs a machine");
    struct vtio_host *h = calloc(1, sizeof(*h));
    if (!h)
        return vtio_fail(-ENOMEM, "host: out of memory");
    h->mem = m->mem;
    h->intr = m->intr;
    h->fw = m->fw;
    if (o)
        h->opts = *o;

    int rc = 0;
    h->pages = vtio_page_alloc_create(h->mem);
    if (!h->pages)
        rc = -ENOMEM;           /* message already recorded */
    if (rc == 0)
        rc = vtio_page_alloc_reserve(h->pages, 0, LOW_RESERVED);
    if (rc == 0)
        rc = vtio_direct_map_create(h->mem, &h->dmap);
    if (rc == 0)
        rc = vtio_pci_enumerate(h->mem, &h->fw, &h->pci);
    if (rc < 0) {
        vtio_direct_map_destroy(h->dmap);
        vtio_page_alloc_destroy(h->pages);
        free(h);
        return rc;
    }
    *out = h;
    return 0;
}

void vtio_host_shutdown(struct vtio_host *h)
{
    if (!h)
        return;
    vtio_pci_enum_destroy(h->pci);
    vtio_direct_map_destroy(h->dmap);
    vtio_page_alloc_destroy(h->pages);
    free(h);
}
