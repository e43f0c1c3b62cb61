/*
 * bridge: the PCI Express root port, and the fabric's check of requester
 * ids (ACS Source Validation).
 *
 * A root port is a function like any other (bus.c makes it, config.c builds
 * the common part of its configuration space); this file turns that into a
 * type 1 header and adds what makes it a port:
 *
 *   bus numbers   primary, secondary, subordinate: read-write.  Firmware
 *                 (vtio_pci_root_port_create's caller, as a BIOS does at
 *                 boot) numbers them before the function is visible; they
 *                 are not part of the power-on image, so a reset clears them.
 *   windows       memory and prefetchable memory base/limit: read-write and
 *                 nothing more.  The bus decodes flat (every BAR of the
 *                 segment answers wherever software put it), so the windows
 *                 route nothing; software that programs them sees them back.
 *                 No I/O window (the machine has no I/O space), no ROM.
 *   COMMAND       as for any function, but BME of the port does not gate
 *                 what it forwards from below (no forwarding is modelled,
 *                 only its checks); Secondary Bus Reset is not implemented.
 *   PCIe cap      Device/Port Type = Root Port, no FLR, Root Control
 *                 read-write without effect.
 *   ACS           extended capability at 0x100 offering SV, TB, RR, CR, UF;
 *                 the control bits for those are read-write, all off at
 *                 power-on (software turns them on, see src/host/pci/acs.c).
 *                 Of them the bus enforces SV; TB, RR, CR and UF have nothing
 *                 to act on (no ATS, no peer-to-peer routing in the model).
 *
 * Source Validation.  Every function's DMA port has vtio_pcibus_source_check
 * installed; the port calls it only for a request whose requester id is not
 * the function's own (a forged one), so honest traffic never gets here.
 * Walking up from the function's bus, each port above it with SV enabled
 * requires the request's bus number to lie in its [secondary, subordinate]
 * range, as a downstream port checks what enters it from below.  The walk
 * takes each port's lock to read its registers (the same state software
 * sees through config space); no DMA runs under those locks, so it cannot
 * wait on the caller.
 */
#include "hw/pci/pci_internal.h"

#include <errno.h>

#include "util/error.h"

/* Type 1 header and PCI Express fields pci.h does not name. */
#define IO_BASE_UPPER16       0x30
#define BRIDGE_ROM_ADDRESS    0x38
#define SEC_STATUS_ERRORS_W1C 0xf900   /* Secondary Status error bits */
#define MEM_WINDOW_WRITABLE   0xfff0   /* address bits [31:20] of base/limit */
#define PREF_WINDOW_64BIT     0x0001   /* prefetchable window decodes 64 bits */
#define BRIDGE_CTL_WRITABLE   0x0003   /* Parity Error Response, SERR# Enable */
#define EXP_ROOT_CTL          0x1c
#define EXP_ROOT_CTL_WRITABLE 0x001f   /* error reporting and PME interrupt */
#define ACS_VERSION           1
#define ACS_OFFERED (VTIO_PCI_ACS_SV | VTIO_PCI_ACS_TB | VTIO_PCI_ACS_RR | \
                     VTIO_PCI_ACS_CR | VTIO_PCI_ACS_UF)

static void build_type1_header(struct vtio_pci_dev *dev)
{
    uint8_t type = VTIO_PCI_HEADER_TYPE_BRIDGE |
                   (dev->info.multifunction ? VTIO_PCI_HEADER_TYPE_MULTIFUNCTION : 0);
    vtio_pcibus_init_reg(dev, VTIO_PCI_HEADER_TYPE, 1, type, 0);
    vtio_pcibus_init_reg(dev, VTIO_PCI_PRIMARY_BUS, 1, 0, 0xff);
    vtio_pcibus_init_reg(dev, VTIO_PCI_SECONDARY_BUS, 1, 0, 0xff);
    vtio_pcibus_init_reg(dev, VTIO_PCI_SUBORDINATE_BUS, 1, 0, 0xff);
    vtio_pcibus_init_reg(dev, VTIO_PCI_SEC_STATUS, 2, 0, 0);
    vtio_pcibus_le_put(dev->w1cmask + VTIO_PCI_SEC_STATUS, SEC_STATUS_ERRORS_W1C, 2);
    vtio_pcibus_init_reg(dev, VTIO_PCI_MEMORY_BASE, 2, 0, MEM_WINDOW_WRITABLE);
    vtio_pcibus_init_reg(dev, VTIO_PCI_MEMORY_LIMIT, 2, 0, MEM_WINDOW_WRITABLE);
    vtio_pcibus_init_reg(dev, VTIO_PCI_PREF_MEMORY_BASE, 2, PREF_WINDOW_64BIT,
                         MEM_WINDOW_WRITABLE);
    vtio_pcibus_init_reg(dev, VTIO_PCI_PREF_MEMORY_LIMIT, 2, PREF_WINDOW_64BIT,
                         MEM_WINDOW_WRITABLE);
    vtio_pcibus_init_reg(dev, VTIO_PCI_PREF_BASE_UPPER32, 4, 0, 0xffffffff);
    vtio_pcibus_init_reg(dev, VTIO_PCI_PREF_LIMIT_UPPER32, 4, 0, 0xffffffff);
    vtio_pcibus_init_reg(dev, IO_BASE_UPPER16, 4, 0, 0);
    vtio_pcibus_init_reg(dev, BRIDGE_ROM_ADDRESS, 4, 0, 0);
    vtio_pcibus_init_reg(dev, VTIO_PCI_BRIDGE_CONTROL, 2, 0, BRIDGE_CTL_WRITABLE);
}

static void build_root_port_exp(struct vtio_pci_dev *dev)
{
    unsigned cap = dev->exp_cap;
    uint16_t flags = vtio_pcibus_config_get16_locked(dev, cap + VTIO_PCI_EXP_FLAGS);
    flags = (uint16_t)((flags & ~VTIO_PCI_EXP_FLAGS_TYPE) |
                       VTIO_PCI_EXP_TYPE_ROOT_PORT << VTIO_PCI_EXP_FLAGS_TYPE_SHIFT);
    vtio_pcibus_init_reg(dev, cap + VTIO_PCI_EXP_FLAGS, 2, flags, 0);
    uint32_t devcap = vtio_pcibus_config_get32_locked(dev, cap + VTIO_PCI_EXP_DEVCAP);
    vtio_pcibus_init_reg(dev, cap + VTIO_PCI_EXP_DEVCAP, 4, devcap & ~VTIO_PCI_EXP_DEVCAP_FLR,
                         0);
    vtio_pcibus_init_reg(dev, cap + EXP_ROOT_CTL, 2, 0, EXP_ROOT_CTL_WRITABLE);
}

static void build_acs(struct vtio_pci_dev *dev)
{
    unsigned pos = VTIO_PCI_EXT_CAP_START;
    /* The only extended capability: next offset 0 ends the list. */
    vtio_pcibus_init_reg(dev, pos, 4, VTIO_PCI_EXT_CAP_ID_ACS | ACS_VERSION << 16, 0);
    vtio_pcibus_init_reg(dev, pos + VTIO_PCI_ACS_CAP, 2, ACS_OFFERED, 0);
    vtio_pcibus_init_reg(dev, pos + VTIO_PCI_ACS_CTRL, 2, 0, ACS_OFFERED);
    dev->acs_cap = (uint16_t)pos;
}

void vtio_pcibus_bridge_build(struct vtio_pci_dev *dev)
{
    build_type1_header(dev);
    build_root_port_exp(dev);
    build_acs(dev);
}

int vtio_pci_root_port_create(struct vtio_pci_bus *bus, uint8_t busno, uint8_t devfn,
                              uint8_t secondary, uint8_t subordinate,
                              struct vtio_pci_dev **out)
{
    if (!bus || !out)
        return vtio_fail(-EINVAL, "pci: vtio_pci_root_port_create needs a bus and out");
    if (!(busno < secondary && secondary <= subordinate))
        return vtio_fail(-EINVAL, "pci: a port on bus %u cannot have buses [%u, %u] below it",
                         busno, secondary, subordinate);
    if (subordinate > bus->bus_end)
        return vtio_fail(-EINVAL, "pci: bus %u is outside the segment's buses [%u, %u]",
                         subordinate, bus->bus_start, bus->bus_end);
    const struct vtio_pci_dev_info info = {
        .name = "pcie-root-port",
        .vendor_id = VTIO_PCI_ROOT_PORT_VENDOR_ID,
        .device_id = VTIO_PCI_ROOT_PORT_DEVICE_ID,
        .class_code = VTIO_PCI_CLASS_BRIDGE_PCI,
    };
    struct vtio_pci_dev *dev;
    int rc = vtio_pcibus_dev_alloc(bus, busno, devfn, &info, true, &dev);
    if (rc < 0)
        return rc;
    /* Firmware's numbering, done before anyone can see the function. */
    dev->cfg[VTIO_PCI_PRIMARY_BUS] = busno;
    dev->cfg[VTIO_PCI_SECONDARY_BUS] = secondary;
    dev->cfg[VTIO_PCI_SUBORDINATE_BUS] = subordinate;
    return vtio_pcibus_dev_publish(dev, out);
}

/* ---- Source Validation */

/* What the check needs of a port, read under its lock. */
struct port_window {
    uint8_t secondary, subordinate;
    uint16_t acs_ctrl;
};

static struct port_window window_of(struct vtio_pci_dev *br)
{
    pthread_mutex_lock(&br->lock);
    struct port_window w = {
        .secondary = br->cfg[VTIO_PCI_SECONDARY_BUS],
        .subordinate = br->cfg[VTIO_PCI_SUBORDINATE_BUS],
        .acs_ctrl = br->acs_cap ? vtio_pcibus_config_get16_locked(
                                      br, br->acs_cap + VTIO_PCI_ACS_CTRL)
                                : 0,
    };
    pthread_mutex_unlock(&br->lock);
    return w;
}

/* The port nearest above bus b: of the bridges whose buses hold b, the one
 * with the highest secondary bus (nested ranges: the innermost).  Only a
 * bridge whose secondary bus lies beyond its own bus counts, so each step
 * up lands on a lower bus and the walk ends. */
static struct vtio_pci_dev *port_above(struct vtio_pci_bus *bus, unsigned b,
                                       struct port_window *w)
{
    struct vtio_pci_dev *best = NULL;
    for (struct vtio_pci_dev *br = atomic_load_explicit(&bus->bridges, memory_order_acquire);
         br; br = br->next_bridge) {
        struct port_window bw = window_of(br);
        if (bw.secondary > VTIO_PCI_RID_BUS(br->rid) && bw.secondary <= b &&
            b <= bw.subordinate && (!best || bw.secondary > w->secondary)) {
            best = br;
            *w = bw;
        }
    }
    return best;
}

int vtio_pcibus_source_check(void *opaque, uint16_t rid, uint16_t req_rid)
{
    struct vtio_pci_bus *bus = opaque;
    unsigned req_bus = VTIO_PCI_RID_BUS(req_rid);
    struct port_window w;
    for (struct vtio_pci_dev *br = port_above(bus, VTIO_PCI_RID_BUS(rid), &w); br;
         br = port_above(bus, VTIO_PCI_RID_BUS(br->rid), &w))
        if ((w.acs_ctrl & VTIO_PCI_ACS_SV) && (req_bus < w.secondary || req_bus > w.subordinate))
            return -EPERM;
    return 0;
}
