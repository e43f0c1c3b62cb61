/*
 * machine: the default vtio computer, assembled from the hardware modules.
 *
 *   RAM          [0, min(ram, 3 GiB))  and the rest from 4 GiB up
 *   PCI MMIO     0xC0000000-0xDFFFFFFF for 32-bit BARs,
 *                0x8000000000 (512 GiB) + 64 GiB for 64-bit BARs
 *   ECAM         0xE0000000, 1 MiB per bus (segment 0, buses 0-255)
 *   VT-d unit    0xFED90000, 4 KiB of registers (unless no_iommu); every
 *                function of the segment is behind it (DMA and interrupts)
 *   MSI window   0xFEE00000-0xFEEFFFFF (the interrupt sink)
 *   DMA engines  00:03.0, 00:04.0, ...
 *   with rogue:  a PCIe root port at 00:1c.0 (ACS with Source Validation,
 *                secondary bus 1, as firmware numbered it) and behind it
 *                the malicious card of include/vtio/dev/rogue.h at
 *                01:00.0 (eight functions, 01:00.0-7, no ACS of its own)
 *
 * The VT-d unit powers on with translation and interrupt remapping off, so
 * until software programs it, DMA reaches physical memory unchanged and
 * interrupts reach the sink unchanged.
 *
 * What software may learn of it is in struct vtio_firmware, the part of a
 * real machine's firmware tables (e820, ACPI MCFG and DMAR, the host
 * bridge's windows) that an OS reads at boot.  Everything else software
 * does goes through memory, registers and interrupts.
 *
 * Threads: create and destroy from one thread; in between the machine's
 * parts follow their own rules.
 */
#ifndef VTIO_MACHINE_H
#define VTIO_MACHINE_H

#include <vtio/common.h>
#include <vtio/vtd.h>

struct vtio_mem;
struct vtio_intr;
struct vtio_pci_bus;
struct vtio_dma_engine;
struct vtio_pci_dev;
struct vtio_rogue;

#define VTIO_MACHINE_LOW_RAM_MAX   0xC0000000ull
#define VTIO_MACHINE_HIGH_RAM_BASE 0x100000000ull
#define VTIO_MACHINE_MMIO32_BASE   0xC0000000ull
#define VTIO_MACHINE_MMIO32_SIZE   0x20000000ull
#define VTIO_MACHINE_ECAM_BASE     0xE0000000ull
#define VTIO_MACHINE_MMIO64_BASE   0x8000000000ull
#define VTIO_MACHINE_MMIO64_SIZE   (64ull << 30)
#define VTIO_MACHINE_VTD_BASE      0xFED90000ull
#define VTIO_MACHINE_MAX_ENGINES   8
#define VTIO_MACHINE_FIRST_DEV     3      /* device number of the first engine */
#define VTIO_MACHINE_ROOT_PORT_DEV 0x1c   /* 00:1c.0, the rogue's root port */
#define VTIO_MACHINE_ROGUE_BUS     1      /* the rogue is 01:00.0 */

struct vtio_machine_config {
    uint64_t ram_size;       /* bytes, multiple of 2 MiB; 0 means 4 GiB */
    unsigned ncpus;          /* 1..64; 0 means 4 */
    unsigned dma_engines;    /* 0..8 engines on bus 0 (use -1u for none); 0 means 1 */
    unsigned dma_channels;   /* channels per engine; 0 means 4 */
    bool no_iommu;           /* leave the VT-d unit out (DMA goes straight to RAM) */
    bool rogue;              /* add the root port and the malicious device */
    struct vtio_vtd_caps vtd_caps;   /* what the unit implements; zero: defaults */
};

/* The ACPI DMAR table (VT-d spec ch. 8), as firmware describes the units. */
#define VTIO_DMAR_MAX_DRHD       4
#define VTIO_DMAR_MAX_SCOPE      16
#define VTIO_DMAR_INTR_REMAP     0x1    /* flags: interrupt remapping supported */
#define VTIO_DMAR_X2APIC_OPT_OUT 0x2    /* flags: firmware asks the OS not to use x2APIC */

/* A DMA remapping hardware unit definition (DRHD). */
struct vtio_dmar_drhd {
    uint64_t base;           /* register base address */
    uint64_t size;           /* bytes of registers (4 KiB multiple) */
    uint16_t segment;        /* PCI segment it serves */
    bool include_all;        /* INCLUDE_PCI_ALL: every function of the segment
                                that no other DRHD lists */
    unsigned n_scope;        /* device scopes (endpoints) when !include_all */
    uint16_t scope[VTIO_DMAR_MAX_SCOPE];   /* their requester ids */
};

struct vtio_dmar {
    uint8_t host_addr_width; /* HAW: DMA physical address width in bits
                                (the ACPI field holds this minus one) */
    unsigned flags;          /* VTIO_DMAR_INTR_REMAP, VTIO_DMAR_X2APIC_OPT_OUT */
    unsigned n_drhd;         /* 0: no DMAR table (no IOMMU) */
    struct vtio_dmar_drhd drhd[VTIO_DMAR_MAX_DRHD];
};

/* What firmware tells the OS. */
struct vtio_firmware {
    unsigned ncpus;
    uint16_t pci_segment;
    uint64_t ecam_base;
    uint8_t bus_start, bus_end;
    uint64_t mmio32_base, mmio32_size;
    uint64_t mmio64_base, mmio64_size;
    struct vtio_dmar dmar;
};

struct vtio_machine {
    struct vtio_mem *mem;
    struct vtio_intr *intr;
    struct vtio_pci_bus *pci;
    struct vtio_dma_engine *dma_engine[VTIO_MACHINE_MAX_ENGINES];
    unsigned n_dma_engines;
    struct vtio_vtd *vtd;    /* the VT-d unit; NULL with no_iommu */
    struct vtio_pci_dev *root_port;   /* NULL without rogue */
    struct vtio_rogue *rogue;         /* NULL without rogue */
    struct vtio_firmware fw;
};

/* @returns 0 and *out; -EINVAL bad config, VT-d caps included (message in
 * vtio_last_error()); -ENOMEM. */
VTIO_API int vtio_machine_create(const struct vtio_machine_config *cfg,
                                 struct vtio_machine **out);
/* Stops the devices, then frees everything (devices, bus, VT-d unit, sink,
 * memory, in that order). */
VTIO_API void vtio_machine_destroy(struct vtio_machine *m);

#endif
