/*
 * Attacks on another function's memory: the victim (the DMA engine at
 * 00:03.0) has a page of secrets mapped for its own DMA at victim_iova.
 *
 *  - other-function: the rogue asks for that DMA address with its own
 *    requester id.  An IOMMU translates it in the rogue's domain, where the
 *    victim's mapping does not exist; an identity domain or no IOMMU hands
 *    over whatever is at that address.
 *  - spoof-rid: the rogue puts the victim's requester id on its requests,
 *    so an IOMMU would translate them in the victim's domain.  The IOMMU
 *    cannot tell; what stops it is ACS Source Validation in the root port
 *    above the rogue, which Linux enables whenever an IOMMU is in use.
 */
#include <vtio/dev/rogue.h>
#include <vtio/device.h>
#include <vtio/machine.h>
#include <vtio/pci.h>

#include "attack/attack_priv.h"

/* Reads the victim's DMA address; how many secret bytes came back, or -errno. */
static long read_victim(struct attack_scene *sc)
{
    uint8_t buf[256];
    int ret = vtio_rogue_read(sc->rogue, sc->victim_iova, buf, sizeof(buf));
    return ret < 0 ? ret : (long)attack_secret_bytes(buf, sizeof(buf), SECRET_VICTIM, 0);
}

static void judge(struct attack_scene *sc, long leaked, const char *how)
{
    if (leaked > 0)
        attack_report(sc, VTIO_ATTACK_SUCCEEDED, "read %ld of the victim's secret bytes %s",
                      leaked, how);
    else
        attack_report(sc, VTIO_ATTACK_BLOCKED, "%s (%s)",
                      leaked < 0 ? "read refused" : "read no secret", how);
}

void attack_other_function(struct attack_scene *sc)
{
    judge(sc, read_victim(sc), "at the victim's DMA address");
}

void attack_spoof_rid(struct attack_scene *sc)
{
    vtio_rogue_forge_rid(sc->rogue, vtio_device_rid(sc->victim_dev));
    long leaked = read_victim(sc);
    vtio_rogue_forge_rid(sc->rogue, vtio_device_rid(sc->rogue_dev));
    judge(sc, leaked, "as 00:03.0");
}
