/*
 * The default vtio machine: RAM split around the 32-bit PCI hole, the
 * interrupt sink, one PCI segment with ECAM, a VT-d remapping unit in front
 * of the whole segment, and DMA engines on bus 0.  The memory map is in
 * include/vtio/machine.h; struct vtio_firmware is filled from the same
 * constants, so what firmware reports is what exists.
 *
 * The VT-d unit reaches the machine as a device does: its table reads and
 * status writes are device-side accesses to the address space (a hole is an
 * error the unit reports as a table access error), and the messages it
 * sends (fault events, remapped interrupts) are 4-byte writes into the
 * interrupt window, where the sink picks them up.  Every function of the
 * segment (DMA engines, and with config.rogue the root port and the rogue)
 * has the unit as the translator of its DMA port: the DMAR table says
 * INCLUDE_PCI_ALL.
 *
 * With config.rogue the machine plays firmware for the root port: it numbers
 * the bus below it (VTIO_MACHINE_ROGUE_BUS) when it creates it, as a BIOS
 * does before the OS boots.  ACS is left off; enabling it is the OS's job.
 */
#include <vtio/machine.h>
#include <vtio/dev/dma_engine.h>
#include <vtio/dev/rogue.h>
#include <vtio/intr.h>
#include <vtio/mem.h>
#include <vtio/pci.h>
#include <vtio/vtd.h>
#include <vtio/vtd_regs.h>

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

/* ---- the VT-d unit's platform: this machine's address space */

static int vtd_mem_read(void *opaque, uint64_t pa, void *buf, size_t len)
{
    return vtio_mem_dev_read(opaque, pa, buf, len);
}

static int vtd_mem_write(void *opaque, uint64_t pa, const void *buf, size_t len)
{
    return vtio_mem_dev_write(opaque, pa, buf, len);
}

static void vtd_interrupt(void *opaque, uint64_t addr, uint32_t data)
{
    /* An undeliverable message (outside the window) is dropped, as on a bus. */
    (void)vtio_mem_dev_write(opaque, addr, &data, sizeof(data));
}

/* Creates the unit, maps its registers and describes it in the DMAR table. */
static int add_vtd(struct vtio_machine *m, const struct vtio_vtd_caps *caps)
{
    struct vtio_vtd_platform plat = {
        .mem_read = vtd_mem_read,
        .mem_write = vtd_mem_write,
        .interrupt = vtd_interrupt,
        .opaque = m->mem,
    };
    int ret = vtio_vtd_create(caps, &plat, &m->vtd);
    if (ret < 0)
        return ret;
    ret = vtio_mem_add_mmio(m->mem, VTIO_MACHINE_VTD_BASE, VTD_REG_SIZE, &vtio_vtd_mmio_ops,
                            m->vtd, "vtd");
    if (ret < 0)
        return ret;
    uint64_t cap = vtio_vtd_reg_read(m->vtd, VTD_CAP_REG, 8);
    uint64_t ecap = vtio_vtd_reg_read(m->vtd, VTD_ECAP_REG, 8);
    struct vtio_dmar *dmar = &m->fw.dmar;
    dmar->host_addr_width = (uint8_t)(VTD_CAP_MGAW(cap) + 1);
    dmar->flags = (ecap & VTD_ECAP_IR ? VTIO_DMAR_INTR_REMAP : 0) |
                  (ecap & VTD_ECAP_EIM ? 0 : VTIO_DMAR_X2APIC_OPT_OUT);
    dmar->n_drhd = 1;
    dmar->drhd[0] = (struct vtio_dmar_drhd){
        .base = VTIO_MACHINE_VTD_BASE,
        .size = VTD_REG_SIZE,
        .segment = m->fw.pci_segment,
        .include_all = true,
    };
    return 0;
}

/* INCLUDE_PCI_ALL: the unit, if any, translates every function's DMA. */
static void behind_iommu(struct vtio_machine *m, struct vtio_pci_dev *dev)
{
    if (m->vtd)
        vtio_dma_port_set_translator(vtio_pci_dev_dma_port(dev), vtio_vtd_translator(m->vtd));
}

/* The root port at 00:1c.0 and, below it, the rogue at 01:00.0. */
static int add_rogue(struct vtio_machine *m)
{
    const uint8_t port_devfn = VTIO_PCI_DEVFN(VTIO_MACHINE_ROOT_PORT_DEV, 0);
    int ret = vtio_pci_root_port_create(m->pci, 0, port_devfn, VTIO_MACHINE_ROGUE_BUS,
                                        VTIO_MACHINE_ROGUE_BUS, &m->root_port);
    if (ret < 0)
        return ret;
    behind_iommu(m, m->root_port);
    ret = vtio_rogue_create(m->pci, VTIO_MACHINE_ROGUE_BUS, VTIO_PCI_DEVFN(0, 0),
                            VTIO_ROGUE_FUNCTIONS, &m->rogue);
    if (ret < 0)
        return ret;
    for (unsigned fn = 0; fn < VTIO_ROGUE_FUNCTIONS; fn++)
        behind_iommu(m, vtio_rogue_function(m->rogue, fn));
    return 0;
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
    if (!c.no_iommu && (ret = add_vtd(m, &c.vtd_caps)) < 0)
        goto fail;
    struct vtio_dma_engine_config ecfg = { .channels = c.dma_channels };
    for (unsigned i = 0; i < c.dma_engines; i++) {
        ret = vtio_dma_engine_create(m->pci, 0, VTIO_PCI_DEVFN(VTIO_MACHINE_FIRST_DEV + i, 0),
                                     &ecfg, &m->dma_engine[i]);
        if (ret < 0)
            goto fail;
        m->n_dma_engines++;
        behind_iommu(m, vtio_dma_engine_pci(m->dma_engine[i]));
    }
    if (c.rogue && (ret = add_rogue(m)) < 0)
        goto fail;
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
    vtio_rogue_destroy(m->rogue);
    /* The bus (and with it every DMA port that names the unit) goes before
     * the unit. */
    if (m->pci)
        vtio_pci_bus_destroy(m->pci);
    if (m->vtd) {
        vtio_mem_remove_mmio(m->mem, VTIO_MACHINE_VTD_BASE);
        vtio_vtd_destroy(m->vtd);
    }
    vtio_intr_destroy(m->intr);
    vtio_mem_destroy(m->mem);
    free(m);
}
