/*
 * acs: PCI Express Access Control Services, turned on as Linux does when an
 * IOMMU is in use.
 *
 * Linux's IOMMU drivers ask for ACS at boot (pci_request_acs(), which
 * intel-iommu calls once it has found a DMAR table it will use); from then
 * on every function with an ACS capability gets, of the controls it offers,
 * Source Validation, P2P Request Redirect, P2P Completion Redirect and
 * Upstream Forwarding (pci_std_enable_acs()).  Together they make a port
 * drop requests that claim a requester id from outside its subtree and send
 * peer-to-peer traffic up to the IOMMU instead of across, which is what lets
 * the IOMMU layer put the functions below separate ports in separate groups.
 * Translation Blocking is left alone: Linux sets it only for ports facing
 * untrusted devices when ATS is off, and vtio has no ATS to block.
 *
 * Here that happens once, at boot, before the IOMMU driver forms groups
 * (the caller sees to it), over the functions enumeration found.  Control
 * bits already set stay set; bits a function does not offer are not written
 * (its capability register says which).  Only config space accesses, through
 * the pci_enum accessors.
 */
#include <vtio/host.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>

#include "host/pci/pci_priv.h"

/* @returns whether fn has an ACS capability (and now has it enabled). */
static bool enable_one(const struct vtio_pci_function *fn)
{
    uint16_t pos = vtio_pci_find_ext_capability(fn, VTIO_PCI_EXT_CAP_ID_ACS);
    if (!pos)
        return false;
    uint16_t cap = vtio_pci_cfg_read16(fn, (uint16_t)(pos + VTIO_PCI_ACS_CAP));
    uint16_t ctrl = vtio_pci_cfg_read16(fn, (uint16_t)(pos + VTIO_PCI_ACS_CTRL));
    vtio_pci_cfg_write16(fn, (uint16_t)(pos + VTIO_PCI_ACS_CTRL),
                         (uint16_t)(ctrl | (cap & VTIO_PCI_ACS_ISOLATED)));
    return true;
}

void vtio_pci_enable_acs(struct vtio_host *h)
{
    unsigned n = 0, count = vtio_pci_count(h->pci);
    for (unsigned i = 0; i < count; i++)
        n += enable_one(vtio_pci_get(h->pci, i));
    if (n)
        vtio_host_log(h, VTIO_LOG_INFO, "PCI: ACS enabled on %u function%s", n,
                      n == 1 ? "" : "s");
}
