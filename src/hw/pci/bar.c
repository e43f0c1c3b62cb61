/*
 * bar: Base Address Registers, and the MMIO region each one becomes.
 *
 * Only memory BARs exist.  A BAR's geometry (size, 32/64-bit, prefetchable)
 * is fixed when the function is created; config.c stores the BAR dwords with
 * a write mask that keeps the address bits below the size at zero, so
 * sizing (write all ones, read back) needs no code of its own.  A 64-bit BAR
 * takes two slots: the low dword carries the type bits, the next slot holds
 * the upper 32 address bits.
 *
 * Decoding rule (the one a bridge applies): BAR n answers at its base while
 *   COMMAND.MEM is set, and
 *   the base is programmed: neither 0 nor the sizing pattern (all address
 *   bits ones, what remains after "write all ones").
 * vtio_pcibus_bars_update_locked() re-applies the rule after any write to
 * COMMAND or a BAR: first it removes every region that must go (moved, or
 * decode turned off), then adds the new ones, so two BARs of one function
 * can trade places in a single pass.  A base that overlaps something else in
 * the address space (vtio_mem_add_mmio() refuses it) simply does not decode,
 * like a misprogrammed BAR on real hardware; the next COMMAND or BAR write
 * tries again.
 *
 * The region's callbacks are the bus's own wrapper (bar_ops), with the BAR
 * slot as opaque: accesses that fall in the MSI-X table or PBA are emulated
 * by msi.c, everything else goes to the device model's ops at the same
 * BAR-relative offset, without any bus lock held.  A BAR without ops reads 0
 * and drops writes.
 */
#include "hw/pci/pci_internal.h"

#include <errno.h>
#include <stdio.h>

#include "util/error.h"

#define BAR_MIN_SIZE       16ull
#define BAR32_MAX_SIZE     (2ull << 30)   /* bit 31 must remain an address bit */

int vtio_pcibus_bars_check(const struct vtio_pci_dev_info *info)
{
    for (unsigned i = 0; i < VTIO_PCIBUS_NUM_BARS; i++) {
        const struct vtio_pci_bar_info *b = &info->bar[i];
        if (b->size == 0)
            continue;
        if (b->size < BAR_MIN_SIZE || (b->size & (b->size - 1)))
            return vtio_fail(-EINVAL, "pci: BAR%u size %#llx is not a power of two >= 16",
                             i, (unsigned long long)b->size);
        if (!b->is_64bit) {
            if (b->size > BAR32_MAX_SIZE)
                return vtio_fail(-EINVAL, "pci: 32-bit BAR%u size %#llx is over 2 GiB", i,
                                 (unsigned long long)b->size);
            continue;
        }
        if (i == VTIO_PCIBUS_NUM_BARS - 1)
            return vtio_fail(-EINVAL, "pci: 64-bit BAR5 has no slot for its upper half");
        if (info->bar[i + 1].size)
            return vtio_fail(-EINVAL, "pci: BAR%u is the upper half of 64-bit BAR%u and must "
                             "have size 0", i + 1, i);
        i++;    /* skip the upper half */
    }
    return 0;
}

void vtio_pcibus_bars_build(struct vtio_pci_dev *dev)
{
    for (unsigned i = 0; i < VTIO_PCIBUS_NUM_BARS; i++) {
        struct vtio_pcibus_bar *bar = &dev->bar[i];
        bar->dev = dev;
        bar->index = i;
    }
    for (unsigned i = 0; i < VTIO_PCIBUS_NUM_BARS; i++) {
        const struct vtio_pci_bar_info *b = &dev->info.bar[i];
        struct vtio_pcibus_bar *bar = &dev->bar[i];
        unsigned reg = VTIO_PCI_BAR0 + 4 * i;
        if (b->size == 0)
            continue;

        bar->size = b->size;
        bar->is_64bit = b->is_64bit;
        bar->ops = b->ops;
        bar->opaque = b->opaque;
        snprintf(bar->region_name, sizeof(bar->region_name), "%s BAR%u", dev->name, i);

        uint64_t addr_mask = ~(b->size - 1) & VTIO_PCI_BAR_MEM_MASK;
        uint32_t type = (b->is_64bit ? VTIO_PCI_BAR_MEM_TYPE_64 : 0) |
                        (b->prefetchable ? VTIO_PCI_BAR_MEM_PREFETCH : 0);
        vtio_pcibus_le_put(dev->cfg + reg, type, 4);
        vtio_pcibus_le_put(dev->wmask + reg, (uint32_t)addr_mask, 4);
        if (b->is_64bit) {
            vtio_pcibus_le_put(dev->wmask + reg + 4, (uint32_t)(addr_mask >> 32), 4);
            i++;
        }
    }
}

/* The base BAR i decodes at, or false if it must not decode. */
static bool bar_base_locked(struct vtio_pci_dev *dev, const struct vtio_pcibus_bar *bar,
                            uint64_t *base)
{
    unsigned reg = VTIO_PCI_BAR0 + 4 * bar->index;
    uint64_t addr = vtio_pcibus_config_get32_locked(dev, reg);
    uint64_t sizing = ~(bar->size - 1) & VTIO_PCI_BAR_MEM_MASK;

    if (bar->is_64bit)
        addr |= (uint64_t)vtio_pcibus_config_get32_locked(dev, reg + 4) << 32;
    else
        sizing &= 0xffffffffull;
    addr &= VTIO_PCI_BAR_MEM_MASK;
    if (addr == 0 || addr == sizing)
        return false;
    *base = addr;
    return true;
}

static void bar_unmap_locked(struct vtio_pci_dev *dev, struct vtio_pcibus_bar *bar)
{
    if (!bar->mapped)
        return;
    vtio_mem_remove_mmio(dev->bus->mem, bar->mapped_base);
    bar->mapped = false;
}

static const struct vtio_mmio_ops bar_ops;

void vtio_pcibus_bars_update_locked(struct vtio_pci_dev *dev)
{
    bool mem_on = vtio_pcibus_config_get16_locked(dev, VTIO_PCI_COMMAND) & VTIO_PCI_COMMAND_MEM;
    uint64_t want_base[VTIO_PCIBUS_NUM_BARS];
    bool want[VTIO_PCIBUS_NUM_BARS];

    for (unsigned i = 0; i < VTIO_PCIBUS_NUM_BARS; i++) {
        struct vtio_pcibus_bar *bar = &dev->bar[i];
        want[i] = bar->size && mem_on && bar_base_locked(dev, bar, &want_base[i]);
        if (bar->mapped && (!want[i] || want_base[i] != bar->mapped_base))
            bar_unmap_locked(dev, bar);
    }
    for (unsigned i = 0; i < VTIO_PCIBUS_NUM_BARS; i++) {
        struct vtio_pcibus_bar *bar = &dev->bar[i];
        if (!want[i] || bar->mapped)
            continue;
        if (vtio_mem_add_mmio(dev->bus->mem, want_base[i], bar->size, &bar_ops, bar,
                              bar->region_name) == 0) {
            bar->mapped = true;
            bar->mapped_base = want_base[i];
        }
    }
}

void vtio_pcibus_bars_unmap_locked(struct vtio_pci_dev *dev)
{
    for (unsigned i = 0; i < VTIO_PCIBUS_NUM_BARS; i++)
        bar_unmap_locked(dev, &dev->bar[i]);
}

static uint64_t bar_read(void *opaque, uint64_t off, unsigned size)
{
    struct vtio_pcibus_bar *bar = opaque;

    if (vtio_pcibus_msix_claims(bar, off))
        return vtio_pcibus_msix_mmio_read(bar->dev, off, size);
    if (bar->ops && bar->ops->read)
        return bar->ops->read(bar->opaque, off, size);
    return 0;
}

static void bar_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct vtio_pcibus_bar *bar = opaque;

    if (vtio_pcibus_msix_claims(bar, off)) {
        vtio_pcibus_msix_mmio_write(bar->dev, off, val, size);
        return;
    }
    if (bar->ops && bar->ops->write)
        bar->ops->write(bar->opaque, off, val, size);
}

static const struct vtio_mmio_ops bar_ops = {
    .read = bar_read,
    .write = bar_write,
};
