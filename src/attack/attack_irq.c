/*
 * Forged interrupts.  An interrupt is a DMA write into the MSI window, so a
 * device can write any message it likes; interrupt remapping is what turns
 * "any message" into "the entries software gave this requester id".
 *
 *  - forge-compat: a compatibility-format message names a CPU and vector
 *    directly.  With remapping on, Linux clears GCMD.CFI, so the unit
 *    blocks such messages (fault 25h); without remapping they are delivered.
 *  - forge-sid: the rogue replays the victim's own message, read from the
 *    victim's MSI-X table.  With remapping the message names the victim's
 *    IRTE, whose source-id check refuses the rogue's requester id (26h).
 *  - spoof-msi: the same with the victim's requester id forged, which the
 *    source-id check cannot tell from the victim; ACS Source Validation in
 *    the rogue's root port drops it first.
 *  - forge-vector: an interrupt nobody assigned: a remappable message
 *    naming an IRTE that is not present, and a compatibility message to a
 *    vector without a handler.  Success is either reaching a CPU, as a
 *    spurious interrupt (still an interrupt the CPU must take).
 */
#include <vtio/dev/dma_engine.h>
#include <vtio/dev/rogue.h>
#include <vtio/device.h>
#include <vtio/host.h>
#include <vtio/intr.h>
#include <vtio/mmio.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>
#include <vtio/vtd_regs.h>

#include <errno.h>

#include "attack/attack_priv.h"

#define UNASSIGNED_VECTOR 0xef   /* vectors are handed out from 32 up */

/* Interrupts that reached a CPU on a vector without a handler.  (Delivered
 * ones do not tell: the IOMMU's own fault event is one.) */
static uint64_t spurious_interrupts(struct attack_scene *sc)
{
    struct vtio_intr_stats st;
    vtio_intr_get_stats(sc->h->intr, &st);
    return st.spurious;
}

/* Sends the message and says whether the victim's handler ran. */
static void judge_victim(struct attack_scene *sc, uint64_t addr, uint32_t data,
                         const char *what)
{
    uint64_t before = atomic_load(&sc->victim_irqs);
    int ret = vtio_rogue_msi(sc->rogue, addr, data);
    uint64_t fired = atomic_load(&sc->victim_irqs) - before;
    if (fired)
        attack_report(sc, VTIO_ATTACK_SUCCEEDED, "%s reached the victim's handler", what);
    else
        attack_report(sc, VTIO_ATTACK_BLOCKED, "%s %s", what,
                      ret == -EPERM ? "dropped by the root port (ACS)"
                      : ret < 0     ? "refused"
                                    : "dropped by the IOMMU");
}

void attack_forge_compat(struct attack_scene *sc)
{
    uint64_t addr;
    uint32_t data;
    vtio_msi_compose(sc->victim_cpu, sc->victim_vector, &addr, &data);
    judge_victim(sc, addr, data, "a compatibility-format message");
}

/* The message the victim's vector 0 sends, read from its MSI-X table. */
static bool victim_message(struct attack_scene *sc, uint64_t *addr, uint32_t *data)
{
    struct vtio_mmio table;
    if (vtio_pci_bar_mmio(sc->victim_fn, VTIO_DMAE_BAR_MSIX, &table) < 0) {
        attack_report(sc, VTIO_ATTACK_NA, "the victim's MSI-X table is not mapped");
        return false;
    }
    uint64_t entry = VTIO_DMAE_MSIX_TABLE;
    *addr = vtio_mmio_read32(&table, entry + VTIO_PCI_MSIX_ENTRY_LOWER_ADDR) |
            (uint64_t)vtio_mmio_read32(&table, entry + VTIO_PCI_MSIX_ENTRY_UPPER_ADDR) << 32;
    *data = vtio_mmio_read32(&table, entry + VTIO_PCI_MSIX_ENTRY_DATA);
    return true;
}

void attack_forge_sid(struct attack_scene *sc)
{
    uint64_t addr;
    uint32_t data;
    if (victim_message(sc, &addr, &data))
        judge_victim(sc, addr, data, "the victim's own message");
}

/* The same replay with the victim's requester id on it: the remapping
 * entry's source-id check passes, so only the fabric can stop it. */
void attack_spoof_msi(struct attack_scene *sc)
{
    uint64_t addr;
    uint32_t data;
    if (!victim_message(sc, &addr, &data))
        return;
    vtio_rogue_forge_rid(sc->rogue, vtio_device_rid(sc->victim_dev));
    judge_victim(sc, addr, data, "the victim's message as 00:03.0");
    vtio_rogue_forge_rid(sc->rogue, vtio_device_rid(sc->rogue_dev));
}

/* A remappable-format address naming IRTE `handle` (VT-d 5.1.2.2). */
static uint64_t remappable_addr(uint32_t handle)
{
    return VTIO_MSI_WINDOW_BASE | (uint64_t)(handle & 0x7fff) << 5 | VTIO_MSI_ADDR_IF |
           (uint64_t)(handle >> 15 & 1) << 2;
}

void attack_forge_vector(struct attack_scene *sc)
{
    uint64_t before = spurious_interrupts(sc);
    unsigned sent = 0;
    if (sc->h->iommu) {
        uint64_t irta = attack_vtd_reg64(sc, VTD_IRTA_REG);
        uint32_t last = (uint32_t)((2ull << VTD_IRTA_S(irta)) - 1);
        sent += vtio_rogue_msi(sc->rogue, remappable_addr(last), 0) == 0;
    }
    uint64_t addr;
    uint32_t data;
    vtio_msi_compose(0, UNASSIGNED_VECTOR, &addr, &data);
    sent += vtio_rogue_msi(sc->rogue, addr, data) == 0;
    uint64_t reached = spurious_interrupts(sc) - before;
    if (reached)
        attack_report(sc, VTIO_ATTACK_SUCCEEDED, "%llu unassigned interrupt%s reached a CPU",
                      (unsigned long long)reached, reached > 1 ? "s" : "");
    else
        attack_report(sc, VTIO_ATTACK_BLOCKED, "%u message%s sent, none reached a CPU", sent,
                      sent == 1 ? "" : "s");
}
