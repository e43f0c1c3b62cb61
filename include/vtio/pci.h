/*
 * pci: the PCI Express bus of the machine.
 *
 * One vtio_pci_bus is one PCI segment behind a host bridge: buses
 * [bus_start, bus_end], each with 32 devices of 8 functions.  A function is
 * addressed by segment/bus/device/function; its 16-bit requester id
 * (bus << 8 | device << 3 | function) is what an IOMMU sees on its DMA.
 *
 * Configuration space is reached the PCIe way, through ECAM: a memory region
 * of 1 MiB per bus (4 KiB per function) at ecam_base, so host software scans
 * the bus with ordinary memory reads, as an OS does.  Each function has the
 * 256-byte PCI space and the 4 KiB PCIe extended space, emulated with
 * per-byte write masks: read-only bits ignore writes, RW1C bits clear on 1.
 * A function that does not exist reads as all ones.
 *
 * What the bus emulates for every function, so device models don't:
 *  - the header: vendor/device/class ids, COMMAND (MEM decode, Bus Master
 *    Enable, which gates the function's DMA port), STATUS;
 *  - BARs that software sizes (write all ones, read back the size mask) and
 *    places; a memory BAR appears as an MMIO region in the address space
 *    while COMMAND.MEM is set and its base is not all ones/zero;
 *  - the capability list: PCI Express (with Function Level Reset), MSI and
 *    MSI-X.  MSI-X tables and the pending-bit array live in a BAR as the PCI
 *    spec lays them out (16-byte entries: address, upper address, data,
 *    vector control bit 0 = mask; PBA one bit per vector); a vector raised
 *    while masked (per vector or by the function mask) stays pending and is
 *    sent when unmasked.
 *
 * A PCI Express root port (vtio_pci_root_port_create) is a function with a
 * type 1 header that names the buses below it, and an ACS capability whose
 * Source Validation the bus enforces: a request from below the port that
 * carries a requester id whose bus is not below it is dropped (see
 * dma_port.h).
 *
 * Threads: configuration accesses, BAR MMIO and vtio_pci_msix_notify() may
 * come from any thread; each function's state is guarded by its own lock,
 * which is never held while a device model callback or a DMA runs.
 */
#ifndef VTIO_PCI_H
#define VTIO_PCI_H

#include <vtio/common.h>
#include <vtio/mem.h>

struct vtio_dma_port;
struct vtio_pci_bus;
struct vtio_pci_dev;

#define VTIO_PCI_RID(bus, dev, fn) \
    ((uint16_t)(((bus) & 0xff) << 8 | ((dev) & 0x1f) << 3 | ((fn) & 0x7)))
#define VTIO_PCI_DEVFN(dev, fn)    ((uint8_t)(((dev) & 0x1f) << 3 | ((fn) & 0x7)))
#define VTIO_PCI_RID_BUS(rid)      (((rid) >> 8) & 0xff)
#define VTIO_PCI_RID_DEV(rid)      (((rid) >> 3) & 0x1f)
#define VTIO_PCI_RID_FN(rid)       ((rid) & 0x7)

/* Configuration space layout (PCI Local Bus 3.0, PCIe Base). */
#define VTIO_PCI_CFG_SIZE        256
#define VTIO_PCIE_CFG_SIZE       4096
#define VTIO_PCI_VENDOR_ID       0x00
#define VTIO_PCI_DEVICE_ID       0x02
#define VTIO_PCI_COMMAND         0x04
#define  VTIO_PCI_COMMAND_IO     0x0001
#define  VTIO_PCI_COMMAND_MEM    0x0002
#define  VTIO_PCI_COMMAND_MASTER 0x0004     /* Bus Master Enable */
#define  VTIO_PCI_COMMAND_INTX_DISABLE 0x0400
#define VTIO_PCI_STATUS          0x06
#define  VTIO_PCI_STATUS_CAP_LIST 0x0010
#define VTIO_PCI_REVISION_ID     0x08
#define VTIO_PCI_CLASS_PROG      0x09
#define VTIO_PCI_CLASS_DEVICE    0x0a
#define VTIO_PCI_HEADER_TYPE     0x0e
#define  VTIO_PCI_HEADER_TYPE_MULTIFUNCTION 0x80
#define  VTIO_PCI_HEADER_TYPE_NORMAL 0x00
#define  VTIO_PCI_HEADER_TYPE_BRIDGE 0x01   /* type 1: PCI-to-PCI bridge */
#define VTIO_PCI_BAR0            0x10
#define  VTIO_PCI_BAR_MEM_TYPE_64 0x04
#define  VTIO_PCI_BAR_MEM_PREFETCH 0x08
#define  VTIO_PCI_BAR_MEM_MASK   (~0xfull)
#define VTIO_PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define VTIO_PCI_SUBSYSTEM_ID    0x2e
#define VTIO_PCI_CAPABILITY_LIST 0x34
#define VTIO_PCI_INTERRUPT_LINE  0x3c
#define VTIO_PCI_INTERRUPT_PIN   0x3d

/* Type 1 (bridge) header. */
#define VTIO_PCI_PRIMARY_BUS     0x18
#define VTIO_PCI_SECONDARY_BUS   0x19
#define VTIO_PCI_SUBORDINATE_BUS 0x1a
#define VTIO_PCI_SEC_STATUS      0x1e
#define VTIO_PCI_MEMORY_BASE     0x20
#define VTIO_PCI_MEMORY_LIMIT    0x22
#define VTIO_PCI_PREF_MEMORY_BASE  0x24
#define VTIO_PCI_PREF_MEMORY_LIMIT 0x26
#define VTIO_PCI_PREF_BASE_UPPER32  0x28
#define VTIO_PCI_PREF_LIMIT_UPPER32 0x2c
#define VTIO_PCI_BRIDGE_CONTROL  0x3e
#define VTIO_PCI_CLASS_BRIDGE_PCI 0x060400  /* class code of a PCI-to-PCI bridge */

#define VTIO_PCI_CAP_ID_MSI      0x05
#define VTIO_PCI_CAP_ID_EXP      0x10
#define VTIO_PCI_CAP_ID_MSIX     0x11

/* MSI capability. */
#define VTIO_PCI_MSI_FLAGS       2
#define  VTIO_PCI_MSI_FLAGS_ENABLE 0x0001
#define  VTIO_PCI_MSI_FLAGS_QMASK  0x000e   /* multiple message capable */
#define  VTIO_PCI_MSI_FLAGS_QSIZE  0x0070   /* multiple message enable */
#define  VTIO_PCI_MSI_FLAGS_64BIT  0x0080
#define  VTIO_PCI_MSI_FLAGS_MASKBIT 0x0100
#define VTIO_PCI_MSI_ADDRESS_LO  4
#define VTIO_PCI_MSI_ADDRESS_HI  8
#define VTIO_PCI_MSI_DATA_64     12
#define VTIO_PCI_MSI_MASK_64     16
#define VTIO_PCI_MSI_PENDING_64  20

/* MSI-X capability and table. */
#define VTIO_PCI_MSIX_FLAGS      2
#define  VTIO_PCI_MSIX_FLAGS_QSIZE 0x07ff   /* table size - 1 */
#define  VTIO_PCI_MSIX_FLAGS_MASKALL 0x4000
#define  VTIO_PCI_MSIX_FLAGS_ENABLE 0x8000
#define VTIO_PCI_MSIX_TABLE      4          /* [2:0] BIR, [31:3] offset */
#define VTIO_PCI_MSIX_PBA        8
#define  VTIO_PCI_MSIX_BIR_MASK  0x7
#define VTIO_PCI_MSIX_ENTRY_SIZE 16
#define VTIO_PCI_MSIX_ENTRY_LOWER_ADDR 0
#define VTIO_PCI_MSIX_ENTRY_UPPER_ADDR 4
#define VTIO_PCI_MSIX_ENTRY_DATA 8
#define VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL 12
#define  VTIO_PCI_MSIX_ENTRY_CTRL_MASKBIT 0x1

/* PCI Express capability (the parts vtio models). */
#define VTIO_PCI_EXP_FLAGS       2
#define  VTIO_PCI_EXP_FLAGS_TYPE 0x00f0     /* Device/Port Type */
#define  VTIO_PCI_EXP_TYPE_ENDPOINT  0x0
#define  VTIO_PCI_EXP_TYPE_ROOT_PORT 0x4
#define  VTIO_PCI_EXP_TYPE_PCIE_TO_PCI 0x7  /* PCI Express to PCI/PCI-X bridge */
#define  VTIO_PCI_EXP_FLAGS_TYPE_SHIFT 4
#define VTIO_PCI_EXP_DEVCAP      4
#define  VTIO_PCI_EXP_DEVCAP_FLR 0x10000000
#define VTIO_PCI_EXP_DEVCTL      8
#define  VTIO_PCI_EXP_DEVCTL_BCR_FLR 0x8000  /* initiate FLR (reads 0) */
#define VTIO_PCI_EXP_DEVSTA      10

/* Extended capabilities (PCIe Base 7.6.3): a list from 0x100, each header
 * ID [15:0], version [19:16], next offset [31:20] (0 ends the list). */
#define VTIO_PCI_EXT_CAP_START   0x100
#define VTIO_PCI_EXT_CAP_ID(hdr)   ((hdr) & 0xffff)
#define VTIO_PCI_EXT_CAP_NEXT(hdr) (((hdr) >> 20) & 0xffc)
#define VTIO_PCI_EXT_CAP_ID_ACS  0x000d

/* Access Control Services (PCIe Base 7.7.8): capability and control. */
#define VTIO_PCI_ACS_CAP         0x04
#define VTIO_PCI_ACS_CTRL        0x06
#define  VTIO_PCI_ACS_SV         0x0001     /* Source Validation */
#define  VTIO_PCI_ACS_TB         0x0002     /* Translation Blocking */
#define  VTIO_PCI_ACS_RR         0x0004     /* P2P Request Redirect */
#define  VTIO_PCI_ACS_CR         0x0008     /* P2P Completion Redirect */
#define  VTIO_PCI_ACS_UF         0x0010     /* Upstream Forwarding */
#define  VTIO_PCI_ACS_EC         0x0020     /* P2P Egress Control */
#define  VTIO_PCI_ACS_DT         0x0040     /* Direct Translated P2P */
/* The controls that keep a function's requests going up to the IOMMU: what
 * Linux enables when an IOMMU is in use and requires for isolation. */
#define VTIO_PCI_ACS_ISOLATED (VTIO_PCI_ACS_SV | VTIO_PCI_ACS_RR | VTIO_PCI_ACS_CR | \
                               VTIO_PCI_ACS_UF)

/* The root port's identity. */
#define VTIO_PCI_ROOT_PORT_VENDOR_ID 0x5654   /* "VT" */
#define VTIO_PCI_ROOT_PORT_DEVICE_ID 0x0100

/* One BAR as a device model declares it. */
struct vtio_pci_bar_info {
    uint64_t size;            /* power of two, >= 16; 0 = no BAR */
    bool is_64bit;            /* takes this BAR and the next */
    bool prefetchable;
    /* The device's registers in this BAR.  May be NULL for a BAR that holds
     * only the MSI-X table and PBA, which the bus emulates itself. */
    const struct vtio_mmio_ops *ops;
    void *opaque;
};

struct vtio_pci_dev_info {
    const char *name;
    uint16_t vendor_id, device_id;
    uint16_t subsystem_vendor_id, subsystem_id;
    uint32_t class_code;      /* class << 16 | subclass << 8 | prog-if */
    uint8_t revision;
    bool multifunction;       /* header type bit 7 (set it on function 0) */
    struct vtio_pci_bar_info bar[6];
    unsigned msi_vectors;     /* 0 (no MSI capability), 1, 2, 4, ... 32 */
    unsigned msix_vectors;    /* 0 (no MSI-X capability) .. 2048 */
    unsigned msix_bar;        /* BAR holding the table and the PBA */
    uint32_t msix_table_offset, msix_pba_offset;   /* 8-byte aligned */
    /* Function Level Reset (through the PCIe capability) and the bus's
     * reset: the device returns to its power-on state.  The bus has already
     * reset the configuration space.  May be NULL. */
    void (*reset)(void *opaque);
    void *opaque;
};

/*
 * Creates a segment whose ECAM window for buses [bus_start, bus_end] is
 * mapped at ecam_base (1 MiB per bus).
 * Returns NULL (and sets vtio_last_error) on bad arguments or overlap.
 */
VTIO_API struct vtio_pci_bus *vtio_pci_bus_create(struct vtio_mem *mem, uint16_t segment,
                                                  uint64_t ecam_base, uint8_t bus_start,
                                                  uint8_t bus_end);
/* Destroys the bus and every function on it (their BARs are unmapped);
 * the device models must already be stopped. */
VTIO_API void vtio_pci_bus_destroy(struct vtio_pci_bus *bus);
VTIO_API uint16_t vtio_pci_bus_segment(const struct vtio_pci_bus *bus);

/*
 * Plugs a function into slot (busno, devfn).
 * @returns 0 and *out; -EINVAL bad bus number, bad BAR size or layout, bad
 * MSI/MSI-X counts or an MSI-X table/PBA outside its BAR; -EEXIST slot
 * taken; -ENOMEM.
 */
VTIO_API int vtio_pci_dev_create(struct vtio_pci_bus *bus, uint8_t busno, uint8_t devfn,
                                 const struct vtio_pci_dev_info *info,
                                 struct vtio_pci_dev **out);

/*
 * Plugs a PCI Express root port into slot (busno, devfn) with the buses
 * [secondary, subordinate] below it, numbered as firmware would at boot.
 * It has a type 1 header (class VTIO_PCI_CLASS_BRIDGE_PCI, no BARs), a PCI
 * Express capability (Root Port) and an ACS extended capability offering
 * SV, TB, RR, CR and UF, all off at power-on.
 * @returns 0 and *out; -EINVAL busno < secondary <= subordinate does not
 * hold or a bus is outside the segment; -EEXIST slot taken; -ENOMEM.
 */
VTIO_API int vtio_pci_root_port_create(struct vtio_pci_bus *bus, uint8_t busno,
                                       uint8_t devfn, uint8_t secondary,
                                       uint8_t subordinate, struct vtio_pci_dev **out);

VTIO_API uint16_t vtio_pci_dev_rid(const struct vtio_pci_dev *dev);
VTIO_API const char *vtio_pci_dev_name(const struct vtio_pci_dev *dev);
/* The function's DMA port (bus mastering follows COMMAND.BME). */
VTIO_API struct vtio_dma_port *vtio_pci_dev_dma_port(struct vtio_pci_dev *dev);
/* Finds a function by requester id; NULL if none. */
VTIO_API struct vtio_pci_dev *vtio_pci_bus_find(struct vtio_pci_bus *bus, uint16_t rid);

/*
 * The device raises MSI-X vector (or MSI vector) `vector`.  If the
 * capability is enabled and the vector unmasked, the message goes out
 * through the DMA port now; if masked, the pending bit is set and the
 * message goes out when it is unmasked.
 * @returns 0 sent; 1 left pending; -ENODEV capability absent or disabled
 * (the interrupt is lost, as on hardware); -EINVAL no such vector;
 * other negative values from the DMA port (e.g. -EPERM with BME clear).
 */
VTIO_API int vtio_pci_msix_notify(struct vtio_pci_dev *dev, unsigned vector);
VTIO_API int vtio_pci_msi_notify(struct vtio_pci_dev *dev, unsigned vector);

/* Configuration access by bus-relative requester id (what ECAM does).
 * size is 1, 2 or 4 and off a multiple of it; a missing function reads all
 * ones and ignores writes.  Returns all ones for a bad size/offset. */
VTIO_API uint32_t vtio_pci_cfg_read(struct vtio_pci_bus *bus, uint16_t rid, uint16_t off,
                                    unsigned size);
VTIO_API void vtio_pci_cfg_write(struct vtio_pci_bus *bus, uint16_t rid, uint16_t off,
                                 uint32_t val, unsigned size);

/* A Function Level Reset, as if software set DEVCTL.BCR_FLR. */
VTIO_API void vtio_pci_dev_reset(struct vtio_pci_dev *dev);

#endif
