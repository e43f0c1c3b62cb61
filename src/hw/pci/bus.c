/*
 * bus: one PCI segment, its ECAM window and its slots.
 *
 * The segment covers buses [bus_start, bus_end].  Its slot table has 256
 * entries (devfn) per bus; a function is found by requester id in O(1).
 * Slots are filled by vtio_pci_dev_create() and emptied only by
 * vtio_pci_bus_destroy(): functions are never unplugged one by one, so a
 * pointer read from the table stays valid for the life of the bus.  Filling
 * is serialised by slot_lock and published with a release store; readers
 * (ECAM on any CPU thread, vtio_pci_bus_find) take no lock.  Bridges are
 * also kept on a list of their own, published the same way, for the source
 * check (bridge.c) to find the ports above a function.
 *
 * Every function's DMA port gets the bus's source check when the function is
 * made, before it is published, so no request ever goes out unchecked.
 *
 * ECAM: the window at ecam_base maps, for bus b, devfn df and register r,
 *     offset = (b - bus_start) << 20 | df << 12 | r
 * The address space hands us naturally aligned accesses of 1, 2, 4 or 8
 * bytes; an 8-byte access is two dword configuration accesses, low first
 * (what a host bridge does with a qword it cannot forward as one).  A slot
 * without a function reads all ones and drops writes: that is how
 * enumeration learns the slot is empty.
 */
#include "hw/pci/pci_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

#define ECAM_BUS_SHIFT   20
#define ECAM_DEVFN_SHIFT 12
#define ECAM_REG_MASK    0xfffu

static unsigned bus_count(const struct vtio_pci_bus *bus)
{
    return (unsigned)bus->bus_end - bus->bus_start + 1;
}

static _Atomic(struct vtio_pci_dev *) *slot(struct vtio_pci_bus *bus, uint8_t busno,
                                            uint8_t devfn)
{
    return &bus->slots[(size_t)(busno - bus->bus_start) * 256 + devfn];
}

static bool bus_in_range(const struct vtio_pci_bus *bus, unsigned busno)
{
    return busno >= bus->bus_start && busno <= bus->bus_end;
}

struct vtio_pci_dev *vtio_pci_bus_find(struct vtio_pci_bus *bus, uint16_t rid)
{
    if (!bus || !bus_in_range(bus, VTIO_PCI_RID_BUS(rid)))
        return NULL;
    return atomic_load_explicit(slot(bus, (uint8_t)VTIO_PCI_RID_BUS(rid), (uint8_t)rid),
                                memory_order_acquire);
}

static bool cfg_access_ok(uint16_t off, unsigned size)
{
    return (size == 1 || size == 2 || size == 4) && off % size == 0 &&
           off + size <= VTIO_PCIE_CFG_SIZE;
}

uint32_t vtio_pci_cfg_read(struct vtio_pci_bus *bus, uint16_t rid, uint16_t off,
                           unsigned size)
{
    if (!cfg_access_ok(off, size))
        return ~0u;
    struct vtio_pci_dev *dev = vtio_pci_bus_find(bus, rid);
    if (!dev)
        return size == 4 ? ~0u : (1u << (8 * size)) - 1;
    return vtio_pcibus_config_read(dev, off, size);
}

void vtio_pci_cfg_write(struct vtio_pci_bus *bus, uint16_t rid, uint16_t off, uint32_t val,
                        unsigned size)
{
    if (!cfg_access_ok(off, size))
        return;
    struct vtio_pci_dev *dev = vtio_pci_bus_find(bus, rid);
    if (dev)
        vtio_pcibus_config_write(dev, off, val, size);
}

/* ---- ECAM */

static uint16_t ecam_rid(const struct vtio_pci_bus *bus, uint64_t off)
{
    unsigned busno = bus->bus_start + (unsigned)(off >> ECAM_BUS_SHIFT);
    unsigned devfn = (unsigned)(off >> ECAM_DEVFN_SHIFT) & 0xff;
    return (uint16_t)(busno << 8 | devfn);
}

static uint64_t ecam_read(void *opaque, uint64_t off, unsigned size)
{
    struct vtio_pci_bus *bus = opaque;
    uint16_t rid = ecam_rid(bus, off), reg = (uint16_t)(off & ECAM_REG_MASK);

    if (size == 8)
        return vtio_pci_cfg_read(bus, rid, reg, 4) |
               (uint64_t)vtio_pci_cfg_read(bus, rid, (uint16_t)(reg + 4), 4) << 32;
    return vtio_pci_cfg_read(bus, rid, reg, size);
}

static void ecam_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct vtio_pci_bus *bus = opaque;
    uint16_t rid = ecam_rid(bus, off), reg = (uint16_t)(off & ECAM_REG_MASK);

    if (size == 8) {
        vtio_pci_cfg_write(bus, rid, reg, (uint32_t)val, 4);
        vtio_pci_cfg_write(bus, rid, (uint16_t)(reg + 4), (uint32_t)(val >> 32), 4);
        return;
    }
    vtio_pci_cfg_write(bus, rid, reg, (uint32_t)val, size);
}

static const struct vtio_mmio_ops ecam_ops = {
    .read = ecam_read,
    .write = ecam_write,
};

/* ---- the segment */

struct vtio_pci_bus *vtio_pci_bus_create(struct vtio_mem *mem, uint16_t segment,
                                         uint64_t ecam_base, uint8_t bus_start,
                                         uint8_t bus_end)
{
    if (!mem) {
        vtio_fail(-EINVAL, "pci: no address space");
        return NULL;
    }
    if (bus_start > bus_end) {
        vtio_fail(-EINVAL, "pci: bus range [%u, %u] is empty", bus_start, bus_end);
        return NULL;
    }
    if (ecam_base & ((1ull << ECAM_BUS_SHIFT) - 1)) {
        vtio_fail(-EINVAL, "pci: ECAM base %#llx is not 1 MiB aligned",
                  (unsigned long long)ecam_base);
        return NULL;
    }

    struct vtio_pci_bus *bus = calloc(1, sizeof(*bus));
    if (!bus) {
        vtio_fail(-ENOMEM, "pci: out of memory");
        return NULL;
    }
    bus->mem = mem;
    bus->segment = segment;
    bus->ecam_base = ecam_base;
    bus->bus_start = bus_start;
    bus->bus_end = bus_end;
    bus->ecam_size = (uint64_t)bus_count(bus) << ECAM_BUS_SHIFT;
    bus->slots = calloc((size_t)bus_count(bus) * 256, sizeof(*bus->slots));
    if (!bus->slots) {
        free(bus);
        vtio_fail(-ENOMEM, "pci: out of memory");
        return NULL;
    }
    pthread_mutex_init(&bus->slot_lock, NULL);
    atomic_init(&bus->bridges, NULL);

    int rc = vtio_mem_add_mmio(mem, ecam_base, bus->ecam_size, &ecam_ops, bus, "pci-ecam");
    if (rc < 0) {
        vtio_fail(rc, "pci: cannot map ECAM window [%#llx, +%#llx): error %d",
                  (unsigned long long)ecam_base, (unsigned long long)bus->ecam_size, rc);
        pthread_mutex_destroy(&bus->slot_lock);
        free(bus->slots);
        free(bus);
        return NULL;
    }
    return bus;
}

static void dev_free(struct vtio_pci_dev *dev)
{
    vtio_pcibus_msix_free(dev);
    pthread_mutex_destroy(&dev->lock);
    free(dev->name);
    free(dev);
}

void vtio_pci_bus_destroy(struct vtio_pci_bus *bus)
{
    if (!bus)
        return;
    vtio_mem_remove_mmio(bus->mem, bus->ecam_base);
    for (size_t i = 0; i < (size_t)bus_count(bus) * 256; i++) {
        struct vtio_pci_dev *dev = atomic_load_explicit(&bus->slots[i], memory_order_acquire);
        if (!dev)
            continue;
        pthread_mutex_lock(&dev->lock);
        vtio_pcibus_bars_unmap_locked(dev);
        pthread_mutex_unlock(&dev->lock);
        dev_free(dev);
    }
    pthread_mutex_destroy(&bus->slot_lock);
    free(bus->slots);
    free(bus);
}

uint16_t vtio_pci_bus_segment(const struct vtio_pci_bus *bus)
{
    return bus->segment;
}

/* ---- functions */

int vtio_pcibus_dev_alloc(struct vtio_pci_bus *bus, uint8_t busno, uint8_t devfn,
                          const struct vtio_pci_dev_info *info, bool is_bridge,
                          struct vtio_pci_dev **out)
{
    int rc;

    if (!bus || !info)
        return vtio_fail(-EINVAL, "pci: vtio_pci_dev_create needs a bus, info and out");
    if (!bus_in_range(bus, busno))
        return vtio_fail(-EINVAL, "pci: bus %u is outside the segment's buses [%u, %u]", busno,
                         bus->bus_start, bus->bus_end);
    if ((rc = vtio_pcibus_bars_check(info)) < 0 || (rc = vtio_pcibus_msi_check(info)) < 0)
        return rc;

    struct vtio_pci_dev *dev = calloc(1, sizeof(*dev));
    if (!dev)
        return vtio_fail(-ENOMEM, "pci: out of memory");
    dev->name = strdup(info->name ? info->name : "pci-function");
    if (!dev->name) {
        free(dev);
        return vtio_fail(-ENOMEM, "pci: out of memory");
    }
    dev->bus = bus;
    dev->rid = VTIO_PCI_RID(busno, devfn >> 3, devfn);
    dev->info = *info;
    dev->info.name = dev->name;
    dev->is_bridge = is_bridge;
    pthread_mutex_init(&dev->lock, NULL);
    vtio_dma_port_init(&dev->port, bus->mem, dev->rid);
    vtio_dma_port_set_source_check(&dev->port, vtio_pcibus_source_check, bus);
    if ((rc = vtio_pcibus_msix_alloc(dev)) < 0) {
        dev_free(dev);
        return rc;
    }
    vtio_pcibus_config_build(dev);
    *out = dev;
    return 0;
}

int vtio_pcibus_dev_publish(struct vtio_pci_dev *dev, struct vtio_pci_dev **out)
{
    struct vtio_pci_bus *bus = dev->bus;
    uint8_t busno = (uint8_t)VTIO_PCI_RID_BUS(dev->rid), devfn = (uint8_t)dev->rid;

    pthread_mutex_lock(&bus->slot_lock);
    _Atomic(struct vtio_pci_dev *) *s = slot(bus, busno, devfn);
    if (atomic_load_explicit(s, memory_order_relaxed)) {
        pthread_mutex_unlock(&bus->slot_lock);
        dev_free(dev);
        return vtio_fail(-EEXIST, "pci: slot %02x:%02x.%u is taken", busno, devfn >> 3,
                         devfn & 7);
    }
    atomic_store_explicit(s, dev, memory_order_release);
    if (dev->is_bridge) {
        dev->next_bridge = atomic_load_explicit(&bus->bridges, memory_order_relaxed);
        atomic_store_explicit(&bus->bridges, dev, memory_order_release);
    }
    pthread_mutex_unlock(&bus->slot_lock);
    *out = dev;
    return 0;
}

int vtio_pci_dev_create(struct vtio_pci_bus *bus, uint8_t busno, uint8_t devfn,
                        const struct vtio_pci_dev_info *info, struct vtio_pci_dev **out)
{
    if (!out)
        return vtio_fail(-EINVAL, "pci: vtio_pci_dev_create needs a bus, info and out");
    struct vtio_pci_dev *dev = NULL;
    int rc = vtio_pcibus_dev_alloc(bus, busno, devfn, info, false, &dev);
    return rc < 0 ? rc : vtio_pcibus_dev_publish(dev, out);
}

uint16_t vtio_pci_dev_rid(const struct vtio_pci_dev *dev)
{
    return dev->rid;
}

const char *vtio_pci_dev_name(const struct vtio_pci_dev *dev)
{
    return dev->name;
}

struct vtio_dma_port *vtio_pci_dev_dma_port(struct vtio_pci_dev *dev)
{
    return &dev->port;
}
