/*
 * Attacks on the IOMMU's own memory: its translation tables and its
 * interrupt remapping table live in ordinary RAM, where the unit walks
 * them.  A device that could write them could map itself anything, or
 * forge any interrupt.  The addresses are no secret: the unit's registers
 * (RTADDR_REG, IRTA_REG) say where the tables are, and the rogue tries
 * them as DMA addresses.
 *
 * The writes are aimed at entries that matter to nobody else (the root
 * entry of bus 255, the rogue's own context entry, the last IRTE), so a
 * success damages only the attacker; success is judged by the bytes.
 */
#include <vtio/dev/rogue.h>
#include <vtio/host.h>
#include <vtio/mem.h>
#include <vtio/pci.h>
#include <vtio/vtd_regs.h>

#include <string.h>

#include "attack/attack_priv.h"

#define ENTRY 16u    /* root, context and remapping entries are 16 bytes */

struct target {
    const char *what;
    uint64_t pa;
};

/* Writes a pattern over each target; returns the first target that changed. */
static const struct target *write_targets(struct attack_scene *sc, const struct target *t,
                                          unsigned n)
{
    uint8_t junk[ENTRY], before[ENTRY], after[ENTRY];
    memset(junk, 0xee, sizeof(junk));
    for (unsigned i = 0; i < n; i++) {
        vtio_mem_read(sc->h->mem, t[i].pa, before, sizeof(before));
        vtio_rogue_write(sc->rogue, t[i].pa, junk, sizeof(junk));
        vtio_mem_read(sc->h->mem, t[i].pa, after, sizeof(after));
        if (memcmp(before, after, sizeof(before)))
            return &t[i];
    }
    return NULL;
}

static void judge(struct attack_scene *sc, const struct target *t, unsigned n)
{
    const struct target *hit = write_targets(sc, t, n);
    if (hit)
        attack_report(sc, VTIO_ATTACK_SUCCEEDED, "overwrote %s at %#llx", hit->what,
                      (unsigned long long)hit->pa);
    else
        attack_report(sc, VTIO_ATTACK_BLOCKED, "%u table writes refused", n);
}

void attack_dma_tables(struct attack_scene *sc)
{
    if (!sc->h->iommu) {
        attack_report(sc, VTIO_ATTACK_NA, "no IOMMU, no tables");
        return;
    }
    uint64_t root = attack_vtd_reg64(sc, VTD_RTADDR_REG) & VTD_RTADDR_ADDR_MASK;
    struct target t[2] = { { "the root entry of bus 255", root + 255 * ENTRY } };
    unsigned n = 1;
    uint64_t root_lo = vtio_mem_read64(sc->h->mem, root + VTIO_MACHINE_ROGUE_BUS * ENTRY);
    if (root_lo & VTD_ROOT_P)
        t[n++] = (struct target){ "the rogue's own context entry", root_lo & VTD_ROOT_CTP_MASK };
    judge(sc, t, n);
}

void attack_dma_irt(struct attack_scene *sc)
{
    if (!sc->h->irq_remap) {
        attack_report(sc, VTIO_ATTACK_NA, "no interrupt remapping table");
        return;
    }
    uint64_t irta = attack_vtd_reg64(sc, VTD_IRTA_REG);
    uint64_t entries = 2ull << VTD_IRTA_S(irta);
    struct target t = { "the last interrupt remapping entry",
                        (irta & VTD_IRTA_ADDR_MASK) + (entries - 1) * ENTRY };
    judge(sc, &t, 1);
}
