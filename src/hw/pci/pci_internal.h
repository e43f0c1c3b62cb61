/*
 * pci_internal: the bus's private state, shared by the files of src/hw/pci.
 *
 *   bus.c     the segment: ECAM window, slot table, function creation
 *   config.c  one function's configuration space: layout, masks, side effects
 *   bar.c     BAR decoding and the MMIO wrapper that serves each BAR
 *   msi.c     MSI and MSI-X: the table, pending bits, message delivery
 *   bridge.c  the root port: type 1 header, ACS, and the bus's Source
 *             Validation of forged requester ids
 *
 * The model of a function is a 4 KiB byte array (cfg) plus two masks of the
 * same size: wmask says which bits software may write, w1cmask which bits
 * clear when software writes a 1.  Everything a driver can observe through
 * configuration space lives in cfg; registers with side effects (COMMAND,
 * BARs, MSI/MSI-X control, DEVCTL) are handled after the masked write.
 * cfg_reset is the power-on image that FLR copies back.
 *
 * Locking invariant: dev->lock guards cfg, the MSI-X table and PBA, and the
 * BARs' mapping state.  It is never held while a device model callback
 * (BAR ops, reset) runs or while a message is sent through the DMA port:
 * either could call straight back into this function (an interrupt handler
 * running on this thread that touches config space, a register write that
 * raises a vector).  Calling vtio_mem_add/remove_mmio under it is fine: the
 * address space never calls back while adding or removing.
 *
 * Immutable after vtio_pci_dev_create(): info, rid, name, bus, the capability
 * offsets, is_bridge, next_bridge, the BAR geometry and the masks.  Those
 * are read without the lock.
 *
 * Internal names are not VTIO_API (hidden in the shared library) and use
 * the vtio_pcibus_ prefix: vtio_ so they cannot collide with a program that
 * links the static library, pcibus_ so they cannot collide with the host
 * side's PCI code (src/host/pci uses vtio_pci_ for its own names).
 */
#ifndef VTIO_HW_PCI_INTERNAL_H
#define VTIO_HW_PCI_INTERNAL_H

#include <vtio/dma_port.h>
#include <vtio/pci.h>

#include <pthread.h>
#include <stdatomic.h>

#define VTIO_PCIBUS_NUM_BARS 6

/* Where the bus puts the capabilities (all in the first 256 bytes). */
#define VTIO_PCIBUS_EXP_CAP_SIZE  0x3c   /* PCIe capability, version 2 */
#define VTIO_PCIBUS_MSI_CAP_SIZE  0x18   /* 64-bit, per-vector masking */
#define VTIO_PCIBUS_MSIX_CAP_SIZE 0x0c

/* One BAR slot.  Geometry is fixed at creation; mapping state follows
 * COMMAND.MEM and the programmed base, under dev->lock. */
struct vtio_pcibus_bar {
    struct vtio_pci_dev *dev;
    unsigned index;
    uint64_t size;            /* 0: unused, or the upper half of a 64-bit BAR */
    bool is_64bit;
    const struct vtio_mmio_ops *ops;   /* the device's registers (may be NULL) */
    void *opaque;
    char region_name[64];     /* "name BARn": the MMIO region's name */
    /* under dev->lock */
    bool mapped;
    uint64_t mapped_base;
};

struct vtio_pcibus_msg {
    uint64_t addr;
    uint32_t data;
};

struct vtio_pci_dev {
    struct vtio_pci_bus *bus;
    uint16_t rid;
    char *name;
    struct vtio_pci_dev_info info;    /* the creator's description (a copy) */
    struct vtio_dma_port port;

    pthread_mutex_t lock;
    uint8_t cfg[VTIO_PCIE_CFG_SIZE];
    uint8_t wmask[VTIO_PCIE_CFG_SIZE];
    uint8_t w1cmask[VTIO_PCIE_CFG_SIZE];
    uint8_t cfg_reset[VTIO_PCIE_CFG_SIZE];

    /* Capability offsets in cfg; 0 = absent. */
    uint8_t exp_cap, msi_cap, msix_cap;
    uint16_t acs_cap;                 /* extended: ACS (bridges only) */

    /* A bridge has a type 1 header; the bus links its bridges through
     * next_bridge (see bus.c). */
    bool is_bridge;
    struct vtio_pci_dev *next_bridge;

    struct vtio_pcibus_bar bar[VTIO_PCIBUS_NUM_BARS];

    /* MSI-X: table entries and pending bits, under lock. */
    unsigned msix_vectors;
    uint8_t *msix_table;              /* msix_vectors * 16 bytes, LE */
    uint64_t *msix_pba;               /* one bit per vector */
    unsigned msix_pba_words;
};

struct vtio_pci_bus {
    struct vtio_mem *mem;
    uint16_t segment;
    uint64_t ecam_base, ecam_size;
    uint8_t bus_start, bus_end;
    pthread_mutex_t slot_lock;        /* serialises plugging functions */
    /* (busno - bus_start) * 256 + devfn; published with release stores so
     * an ECAM reader on another thread sees a fully built function. */
    _Atomic(struct vtio_pci_dev *) *slots;
    /* The bridges, newest first, pushed under slot_lock with a release
     * store and never removed: the source check walks them without a lock. */
    _Atomic(struct vtio_pci_dev *) bridges;
};

/* Little-endian access to byte arrays (config space, the MSI-X table);
 * size is 1..8. */
static inline uint64_t vtio_pcibus_le_get(const uint8_t *p, unsigned size)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static inline void vtio_pcibus_le_put(uint8_t *p, uint64_t v, unsigned size)
{
    for (unsigned i = 0; i < size; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Sets a register's power-on value and write mask (size 1..4 bytes), while
 * the function's configuration space is built, before it is published. */
static inline void vtio_pcibus_init_reg(struct vtio_pci_dev *dev, unsigned off, unsigned size,
                                        uint32_t v, uint32_t wmask)
{
    vtio_pcibus_le_put(dev->cfg + off, v, size);
    vtio_pcibus_le_put(dev->wmask + off, wmask, size);
}

/* bus.c: a function is made in two steps so that a creator can finish its
 * configuration space before anyone can see it.  alloc builds it (and
 * installs the source check on its port); publish plugs it in, or frees it
 * on -EEXIST. */
int vtio_pcibus_dev_alloc(struct vtio_pci_bus *bus, uint8_t busno, uint8_t devfn,
                          const struct vtio_pci_dev_info *info, bool is_bridge,
                          struct vtio_pci_dev **out);
int vtio_pcibus_dev_publish(struct vtio_pci_dev *dev, struct vtio_pci_dev **out);

/* bridge.c */
void vtio_pcibus_bridge_build(struct vtio_pci_dev *dev);
int vtio_pcibus_source_check(void *bus, uint16_t rid, uint16_t req_rid);

/* config.c */
void vtio_pcibus_config_build(struct vtio_pci_dev *dev);
uint32_t vtio_pcibus_config_read(struct vtio_pci_dev *dev, uint16_t off, unsigned size);
void vtio_pcibus_config_write(struct vtio_pci_dev *dev, uint16_t off, uint32_t val,
                              unsigned size);
uint16_t vtio_pcibus_config_get16_locked(const struct vtio_pci_dev *dev, unsigned off);
uint32_t vtio_pcibus_config_get32_locked(const struct vtio_pci_dev *dev, unsigned off);

/* bar.c */
int vtio_pcibus_bars_check(const struct vtio_pci_dev_info *info);
void vtio_pcibus_bars_build(struct vtio_pci_dev *dev);
void vtio_pcibus_bars_update_locked(struct vtio_pci_dev *dev);
void vtio_pcibus_bars_unmap_locked(struct vtio_pci_dev *dev);

/* msi.c */
int vtio_pcibus_msi_check(const struct vtio_pci_dev_info *info);
int vtio_pcibus_msix_alloc(struct vtio_pci_dev *dev);
void vtio_pcibus_msix_free(struct vtio_pci_dev *dev);
void vtio_pcibus_msix_reset_locked(struct vtio_pci_dev *dev);
bool vtio_pcibus_msix_claims(const struct vtio_pcibus_bar *bar, uint64_t off);
uint64_t vtio_pcibus_msix_mmio_read(struct vtio_pci_dev *dev, uint64_t off, unsigned size);
void vtio_pcibus_msix_mmio_write(struct vtio_pci_dev *dev, uint64_t off, uint64_t val,
                                 unsigned size);
void vtio_pcibus_deliver_pending(struct vtio_pci_dev *dev);

#endif
