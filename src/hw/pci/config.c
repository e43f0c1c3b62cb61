/*
 * config: one function's configuration space.
 *
 * The space is three byte arrays (see pci_internal.h): the current value,
 * a write mask and a write-1-to-clear mask.  A write stores, byte by byte,
 *
 *     cfg = (cfg & ~wmask) | (val & wmask);   cfg &= ~(val & w1cmask)
 *
 * so read-only fields (ids, STATUS.CAP_LIST, the BAR type bits, capability
 * pointers) ignore writes without any per-register code, and a BAR's
 * low address bits, which are read-only zero, make "write all ones, read
 * back" return the size mask.  Only registers whose value changes the
 * machine need code after the store:
 *
 *   COMMAND       MEM maps or unmaps the BARs, BME gates the DMA port;
 *   BARs          a new base moves the BAR's MMIO region;
 *   MSI / MSI-X   enabling or unmasking sends the messages left pending;
 *   DEVCTL        Initiate Function Level Reset (never stored: reads 0).
 *
 * Layout built here: the type 0 header, then the capability list at 0x40:
 * PCI Express (version 2, endpoint, FLR capable), MSI if the device has MSI
 * vectors, MSI-X if it has MSI-X vectors.  The extended space
 * (0x100..0xFFF) is all zeros: its first header reads 0, which tells
 * software there are no extended capabilities.  A bridge (bridge.c) then
 * turns that into a root port: type 1 header, Root Port capability without
 * FLR, ACS in the extended space.
 *
 * Invariant: dev->lock is held for every access to cfg, and released before
 * the device's reset callback runs or pending messages are sent.
 */
#include "hw/pci/pci_internal.h"

#include <string.h>

/* Registers the header has and pci.h does not name (PCI Local Bus 3.0). */
#define CACHE_LINE_SIZE      0x0c
#define COMMAND_PARITY       0x0040    /* Parity Error Response */
#define COMMAND_SERR         0x0100    /* SERR# Enable */
/* STATUS errors software clears by writing 1: Master Data Parity Error,
 * Signaled/Received Target Abort, Received Master Abort, Signaled System
 * Error, Detected Parity Error. */
#define STATUS_ERRORS_W1C    0xf900
#define BAR_REGION_END       (VTIO_PCI_BAR0 + 4 * VTIO_PCIBUS_NUM_BARS)

/* PCI Express capability registers beyond those pci.h names. */
#define EXP_FLAGS_VERSION_2   0x0002   /* capability version 2, endpoint (type 0) */
#define EXP_DEVCAP_MPS_256    0x0001   /* Max_Payload_Size Supported: 256 bytes */
#define EXP_DEVCAP_RBER       0x8000   /* Role-Based Error Reporting */
/* DEVCTL: error reporting enables [3:0], Relaxed Ordering [4], Max Payload
 * [7:5], No Snoop [11], Max Read Request [14:12].  Extended tags, phantom
 * functions and aux power are not supported and read 0. */
#define EXP_DEVCTL_WRITABLE   0x78ff
#define EXP_DEVCTL_RESET      0x2810   /* RO and NS enabled, 512-byte reads */
#define EXP_DEVSTA_W1C        0x000f   /* error detected bits */
#define EXP_LNKCAP            0x0c
#define EXP_LNKCTL            0x10
#define EXP_LNKSTA            0x12
#define EXP_LNK_X1_2_5GT      0x0011   /* speed 2.5 GT/s, width x1 */
#define EXP_LNKCTL_WRITABLE   0x00cb   /* ASPM, RCB, Common Clock, Ext Synch */
#define EXP_LNKCAP2           0x2c
#define EXP_LNKCAP2_2_5GT     0x0002   /* supported speeds vector: 2.5 GT/s */
#define EXP_LNKCTL2           0x30

static void set8(struct vtio_pci_dev *dev, unsigned off, uint8_t v, uint8_t wmask)
{
    vtio_pcibus_init_reg(dev, off, 1, v, wmask);
}

static void set16(struct vtio_pci_dev *dev, unsigned off, uint16_t v, uint16_t wmask)
{
    vtio_pcibus_init_reg(dev, off, 2, v, wmask);
}

static void set32(struct vtio_pci_dev *dev, unsigned off, uint32_t v, uint32_t wmask)
{
    vtio_pcibus_init_reg(dev, off, 4, v, wmask);
}

static unsigned log2u(unsigned v)
{
    unsigned n = 0;
    while (v > 1) {
        v >>= 1;
        n++;
    }
    return n;
}

static void build_header(struct vtio_pci_dev *dev)
{
    const struct vtio_pci_dev_info *info = &dev->info;

    set16(dev, VTIO_PCI_VENDOR_ID, info->vendor_id, 0);
    set16(dev, VTIO_PCI_DEVICE_ID, info->device_id, 0);
    /* No I/O BARs, so COMMAND.IO is hardwired 0. */
    set16(dev, VTIO_PCI_COMMAND, 0,
          VTIO_PCI_COMMAND_MEM | VTIO_PCI_COMMAND_MASTER | COMMAND_PARITY |
              COMMAND_SERR | VTIO_PCI_COMMAND_INTX_DISABLE);
    set16(dev, VTIO_PCI_STATUS, VTIO_PCI_STATUS_CAP_LIST, 0);
    vtio_pcibus_le_put(dev->w1cmask + VTIO_PCI_STATUS, STATUS_ERRORS_W1C, 2);
    set8(dev, VTIO_PCI_REVISION_ID, info->revision, 0);
    set8(dev, VTIO_PCI_CLASS_PROG, (uint8_t)info->class_code, 0);
    set16(dev, VTIO_PCI_CLASS_DEVICE, (uint16_t)(info->class_code >> 8), 0);
    /* PCIe keeps Cache Line Size read-write with no effect. */
    set8(dev, CACHE_LINE_SIZE, 0, 0xff);
    set8(dev, VTIO_PCI_HEADER_TYPE, info->multifunction ? VTIO_PCI_HEADER_TYPE_MULTIFUNCTION : 0,
         0);
    vtio_pcibus_bars_build(dev);
    set16(dev, VTIO_PCI_SUBSYSTEM_VENDOR_ID, info->subsystem_vendor_id, 0);
    set16(dev, VTIO_PCI_SUBSYSTEM_ID, info->subsystem_id, 0);
    /* Interrupt Line is a scratch register for software; pin 0: no INTx. */
    set8(dev, VTIO_PCI_INTERRUPT_LINE, 0, 0xff);
    set8(dev, VTIO_PCI_INTERRUPT_PIN, 0, 0);
}

static void build_exp(struct vtio_pci_dev *dev, unsigned cap)
{
    set16(dev, cap + VTIO_PCI_EXP_FLAGS, EXP_FLAGS_VERSION_2, 0);
    set32(dev, cap + VTIO_PCI_EXP_DEVCAP,
          VTIO_PCI_EXP_DEVCAP_FLR | EXP_DEVCAP_RBER | EXP_DEVCAP_MPS_256, 0);
    /* BCR_FLR is deliberately not writable: config_write acts on it and it
     * reads back 0, as the spec requires. */
    set16(dev, cap + VTIO_PCI_EXP_DEVCTL, EXP_DEVCTL_RESET, EXP_DEVCTL_WRITABLE);
    vtio_pcibus_le_put(dev->w1cmask + cap + VTIO_PCI_EXP_DEVSTA, EXP_DEVSTA_W1C, 2);
    set32(dev, cap + EXP_LNKCAP, EXP_LNK_X1_2_5GT, 0);
    set16(dev, cap + EXP_LNKCTL, 0, EXP_LNKCTL_WRITABLE);
    set16(dev, cap + EXP_LNKSTA, EXP_LNK_X1_2_5GT, 0);
    set32(dev, cap + EXP_LNKCAP2, EXP_LNKCAP2_2_5GT, 0);
    set16(dev, cap + EXP_LNKCTL2, 1, 0);    /* target speed 2.5 GT/s */
}

static void build_msi(struct vtio_pci_dev *dev, unsigned cap)
{
    unsigned n = dev->info.msi_vectors;
    uint16_t flags = (uint16_t)(log2u(n) << 1) | VTIO_PCI_MSI_FLAGS_64BIT |
                     VTIO_PCI_MSI_FLAGS_MASKBIT;

    set16(dev, cap + VTIO_PCI_MSI_FLAGS, flags,
          VTIO_PCI_MSI_FLAGS_ENABLE | VTIO_PCI_MSI_FLAGS_QSIZE);
    set32(dev, cap + VTIO_PCI_MSI_ADDRESS_LO, 0, 0xfffffffc);  /* dword aligned */
    set32(dev, cap + VTIO_PCI_MSI_ADDRESS_HI, 0, 0xffffffff);
    /* 16-bit data; Extended Message Data (the next 16 bits) unsupported. */
    set16(dev, cap + VTIO_PCI_MSI_DATA_64, 0, 0xffff);
    set32(dev, cap + VTIO_PCI_MSI_MASK_64, 0, n == 32 ? 0xffffffffu : (1u << n) - 1);
    set32(dev, cap + VTIO_PCI_MSI_PENDING_64, 0, 0);   /* the bus sets these */
}

static void build_msix(struct vtio_pci_dev *dev, unsigned cap)
{
    const struct vtio_pci_dev_info *info = &dev->info;

    set16(dev, cap + VTIO_PCI_MSIX_FLAGS, (uint16_t)(info->msix_vectors - 1),
          VTIO_PCI_MSIX_FLAGS_ENABLE | VTIO_PCI_MSIX_FLAGS_MASKALL);
    set32(dev, cap + VTIO_PCI_MSIX_TABLE, info->msix_table_offset | info->msix_bar, 0);
    set32(dev, cap + VTIO_PCI_MSIX_PBA, info->msix_pba_offset | info->msix_bar, 0);
}

void vtio_pcibus_config_build(struct vtio_pci_dev *dev)
{
    unsigned caps[3], ncaps = 0, next = 0x40;

    memset(dev->cfg, 0, sizeof(dev->cfg));
    memset(dev->wmask, 0, sizeof(dev->wmask));
    memset(dev->w1cmask, 0, sizeof(dev->w1cmask));
    build_header(dev);

    dev->exp_cap = (uint8_t)next;
    set8(dev, next, VTIO_PCI_CAP_ID_EXP, 0);
    build_exp(dev, next);
    caps[ncaps++] = next;
    next += VTIO_PCIBUS_EXP_CAP_SIZE;
    next = (next + 7) & ~7u;

    if (dev->info.msi_vectors) {
        dev->msi_cap = (uint8_t)next;
        set8(dev, next, VTIO_PCI_CAP_ID_MSI, 0);
        build_msi(dev, next);
        caps[ncaps++] = next;
        next += VTIO_PCIBUS_MSI_CAP_SIZE;
        next = (next + 7) & ~7u;
    }
    if (dev->info.msix_vectors) {
        dev->msix_cap = (uint8_t)next;
        set8(dev, next, VTIO_PCI_CAP_ID_MSIX, 0);
        build_msix(dev, next);
        caps[ncaps++] = next;
    }

    set8(dev, VTIO_PCI_CAPABILITY_LIST, (uint8_t)caps[0], 0);
    for (unsigned i = 0; i < ncaps; i++)
        set8(dev, caps[i] + 1, i + 1 < ncaps ? (uint8_t)caps[i + 1] : 0, 0);
    if (dev->is_bridge)
        vtio_pcibus_bridge_build(dev);

    memcpy(dev->cfg_reset, dev->cfg, sizeof(dev->cfg));
}

uint16_t vtio_pcibus_config_get16_locked(const struct vtio_pci_dev *dev, unsigned off)
{
    return (uint16_t)vtio_pcibus_le_get(dev->cfg + off, 2);
}

uint32_t vtio_pcibus_config_get32_locked(const struct vtio_pci_dev *dev, unsigned off)
{
    return (uint32_t)vtio_pcibus_le_get(dev->cfg + off, 4);
}

uint32_t vtio_pcibus_config_read(struct vtio_pci_dev *dev, uint16_t off, unsigned size)
{
    pthread_mutex_lock(&dev->lock);
    uint32_t v = (uint32_t)vtio_pcibus_le_get(dev->cfg + off, size);
    pthread_mutex_unlock(&dev->lock);
    return v;
}

/* Whether the access [off, off + size) touches [reg, reg + len). */
static bool touches(unsigned off, unsigned size, unsigned reg, unsigned len)
{
    return off < reg + len && reg < off + size;
}

/* Back to power-on: configuration space, MSI-X state, BARs unmapped, bus
 * mastering off.  The caller runs the device's own reset after unlocking. */
static void reset_locked(struct vtio_pci_dev *dev)
{
    vtio_pcibus_bars_unmap_locked(dev);
    memcpy(dev->cfg, dev->cfg_reset, sizeof(dev->cfg));
    vtio_pcibus_msix_reset_locked(dev);
    vtio_dma_port_set_bus_master(&dev->port, false);
}

/* Whether writing DEVCTL.BCR_FLR resets the function (DEVCAP says so). */
static bool flr_capable_locked(const struct vtio_pci_dev *dev)
{
    return vtio_pcibus_config_get32_locked(dev, dev->exp_cap + VTIO_PCI_EXP_DEVCAP) &
           VTIO_PCI_EXP_DEVCAP_FLR;
}

static void run_device_reset(struct vtio_pci_dev *dev)
{
    if (dev->info.reset)
        dev->info.reset(dev->info.opaque);
}

void vtio_pcibus_config_write(struct vtio_pci_dev *dev, uint16_t off, uint32_t val,
                              unsigned size)
{
    bool flr = false, irq_state = false;

    pthread_mutex_lock(&dev->lock);
    for (unsigned i = 0; i < size; i++) {
        unsigned a = off + i;
        uint8_t b = (uint8_t)(val >> (8 * i));
        dev->cfg[a] = (uint8_t)((dev->cfg[a] & ~dev->wmask[a]) | (b & dev->wmask[a]));
        dev->cfg[a] &= (uint8_t)~(b & dev->w1cmask[a]);
        if (a == dev->exp_cap + VTIO_PCI_EXP_DEVCTL + 1u &&
            (b & (VTIO_PCI_EXP_DEVCTL_BCR_FLR >> 8)))
            flr = true;
    }

    if (flr && flr_capable_locked(dev)) {
        reset_locked(dev);
        pthread_mutex_unlock(&dev->lock);
        run_device_reset(dev);
        return;
    }

    if (touches(off, size, VTIO_PCI_COMMAND, 2)) {
        uint16_t cmd = vtio_pcibus_config_get16_locked(dev, VTIO_PCI_COMMAND);
        vtio_dma_port_set_bus_master(&dev->port, (cmd & VTIO_PCI_COMMAND_MASTER) != 0);
        irq_state = true;    /* BME on may release pending messages */
    }
    if (touches(off, size, VTIO_PCI_COMMAND, 2) ||
        touches(off, size, VTIO_PCI_BAR0, BAR_REGION_END - VTIO_PCI_BAR0))
        vtio_pcibus_bars_update_locked(dev);
    if (dev->msi_cap && touches(off, size, dev->msi_cap, VTIO_PCIBUS_MSI_CAP_SIZE))
        irq_state = true;
    if (dev->msix_cap && touches(off, size, dev->msix_cap, VTIO_PCIBUS_MSIX_CAP_SIZE))
        irq_state = true;
    pthread_mutex_unlock(&dev->lock);

    if (irq_state)
        vtio_pcibus_deliver_pending(dev);
}

void vtio_pci_dev_reset(struct vtio_pci_dev *dev)
{
    if (!dev)
        return;
    pthread_mutex_lock(&dev->lock);
    reset_locked(dev);
    pthread_mutex_unlock(&dev->lock);
    run_device_reset(dev);
}
