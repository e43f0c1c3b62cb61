/*
 * The default vtio machine: RAM split around the 32-bit PCI hole, the
 * interrupt sink, one PCI segment with ECAM, and DMA engines on bus 0.
 * The memory map is in include/vtio/machine.h; struct vtio_firmware is
 * filled from the same constants, so what firmware reports is what exists.
 */
#include <vtio/machine.h>
#include <vtio/dev/dma_engine.h>
#include <vtio/intr.h>
#include <vtio/mem.h>
#include <vtio/pci.h>

#include <errno.h>
#include <stdlib.h>

#include "util/error.h"

static int add_ram(struct vtio_mem *mem, uint64_t ram)
{
    uint64_t low = ram < VTIO_MACHINE_LOW_RAM_MAX ? ram : VTIO_MACHINE_LOW_RAM_MAX;
    int ret = vtio_mem_add_ram(mem, 0, low, "ram-low");
    if (ret == 0 && ram > low)
        ret = vtio_mem_add_ram(mem, VTIO_MACHINE_HIGH_RAM_BASE, ram - low, "ram-high");
    return ret;
}

int vtio_machine_create(const struct vtio_machine_config *cfg, struct vtio_machine **out)
{
    struct vtio_machine_config c = cfg ? *cfg : (struct vtio_machine_config){ 0 };
    if (!c.ram_size)
        c.ram_size = 4 * VTIO_GiB;
    if (!c.ncpus)
        c.ncpus = 4;
    if (!c.dma_engines)
        c.dma_engines = 1;
    else if (c.dma_engines == -1u)
        c.dma_engines = 0;
    if (!c.dma_channels)
        c.dma_channels = 4;
    if (c.ram_size % VTIO_HUGE_SIZE)
        return vtio_fail(-EINVAL, "RAM size %llu is not a multiple of 2 MiB",
                         (unsigned long long)c.ram_size);
    if (c.ncpus > VTIO_INTR_MAX_CPUS)
        return vtio_fail(-EINVAL, "%u CPUs: at most %d", c.ncpus, VTIO_INTR_MAX_CPUS);
    if (c.dma_engines > VTIO_MACHINE_MAX_ENGINES)
        return vtio_fail(-EINVAL, "%u DMA engines: at most %d", c.dma_engines,
                         VTIO_MACHINE_MAX_ENGINES);
    if (c.dma_channels > VTIO_DMAE_MAX_CHANNELS)
        return vtio_fail(-EINVAL, "%u DMA channels: at most %d", c.dma_channels,
                         VTIO_DMAE_MAX_CHANNELS);

    struct vtio_machine *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->fw = (struct vtio_firmware){
        .ncpus = c.ncpus,
        .pci_segment = 0,
        .ecam_base = VTIO_MACHINE_ECAM_BASE,
        .bus_start = 0,
        .bus_end = 255,
        .mmio32_base = VTIO_MACHINE_MMIO32_BASE,
        .mmio32_size = VTIO_MACHINE_MMIO32_SIZE,
        .mmio64_base = VTIO_MACHINE_MMIO64_BASE,
        .mmio64_size = VTIO_MACHINE_MMIO64_SIZE,
    };
    int ret = -ENOMEM;
    if (!(m->mem = vtio_mem_create()) || (ret = add_ram(m->mem, c.ram_size)) < 0)
        goto fail;
    ret = -ENOMEM;
    if (!(m->intr = vtio_intr_create(m->mem, c.ncpus)))
        goto fail;
    if (!(m->pci = vtio_pci_bus_create(m->mem, m->fw.pci_segment, m->fw.ecam_base,
                                       m->fw.bus_start, m->fw.bus_end)))
        goto fail;
    struct vtio_dma_engine_config ecfg = { .channels = c.dma_channels };
    for (unsigned i = 0; i < c.dma_engines; i++) {
        ret = vtio_dma_engine_create(m->pci, 0, VTIO_PCI_DEVFN(VTIO_MACHINE_FIRST_DEV + i, 0),
                                     &ecfg, &m->dma_engine[i]);
        if (ret < 0)
            goto fail;
        m->n_dma_engines++;
    }
    *out = m;
    return 0;
fail:
    vtio_machine_destroy(m);
    return ret;
}

void vtio_machine_destroy(struct vtio_machine *m)
{
    if (!m)
        return;
    for (unsigned i = 0; i < m->n_dma_engines; i++)
        vtio_dma_engine_destroy(m->dma_engine[i]);
    if (m->pci)
        vtio_pci_bus_destroy(m->pci);
    vtio_intr_destroy(m->intr);
    vtio_mem_destroy(m->mem);
    free(m);
}
