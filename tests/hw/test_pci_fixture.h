/*
 * Shared fixture of the PCI tests (test_pci.c, test_pci_msi.c).
 *
 * Every test starts from a fresh machine: 64 MiB of RAM at 0, one PCI
 * segment with ECAM at 0xE0000000 for buses 0-255, and (when a test wants
 * to watch interrupts) a capture region over the MSI window that records
 * each raw 4-byte message.  A test plugs "fake" functions whose BAR
 * callbacks record the last access and answer a pattern derived from the
 * offset, so a test can tell exactly which offset of which BAR was reached.
 *
 * Configuration space is always reached the way host software reaches it:
 * CPU reads and writes of the ECAM window (vtio_mem_read32 ...).
 */
#ifndef VTIO_TESTS_HW_PCI_FIXTURE_H
#define VTIO_TESTS_HW_PCI_FIXTURE_H

#include <vtio/dma_port.h>
#include <vtio/intr.h>
#include <vtio/mem.h>
#include <vtio/pci.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "harness.h"

#define ECAM_BASE   0xE0000000ull
#define MMIO32_BASE 0xC0000000ull
#define MMIO64_BASE 0x8000000000ull
#define RAM_SIZE    (64 * VTIO_MiB)

/* Message addresses the tests program: the MSI window plus a tag. */
#define MSG_ADDR(tag) (VTIO_MSI_WINDOW_BASE + ((uint64_t)(tag) << 2))

static struct vtio_mem *mem;
static struct vtio_pci_bus *bus;

/* ---- a fake device model */

struct fake {
    _Atomic uint64_t last_off, last_val;
    _Atomic unsigned last_size;
    _Atomic unsigned reads, writes, resets;
};

/* What a fake BAR answers at off: recognisable and offset-dependent. */
static inline uint64_t fake_pattern(uint64_t off)
{
    return 0xfa1e000000000000ull | off;
}

static inline uint64_t fake_read(void *opaque, uint64_t off, unsigned size)
{
    struct fake *f = opaque;
    atomic_store(&f->last_off, off);
    atomic_store(&f->last_size, size);
    atomic_fetch_add(&f->reads, 1);
    uint64_t v = fake_pattern(off);
    return size == 8 ? v : v & ((1ull << (8 * size)) - 1);
}

static inline void fake_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct fake *f = opaque;
    atomic_store(&f->last_off, off);
    atomic_store(&f->last_val, val);
    atomic_store(&f->last_size, size);
    atomic_fetch_add(&f->writes, 1);
}

static inline void fake_reset(void *opaque)
{
    struct fake *f = opaque;
    atomic_fetch_add(&f->resets, 1);
}

static const struct vtio_mmio_ops fake_ops = { fake_read, fake_write };

/*
 * The standard function: ids 1234:5678 (subsystem abcd:ef01), class
 * 0x088000 rev 3;
 *   BAR0 32-bit 16 KiB registers, BAR2 64-bit prefetchable 64 KiB registers,
 *   BAR4 64-bit 16 KiB holding only the MSI-X table (0) and PBA (0x2000);
 *   4 MSI vectors, 8 MSI-X vectors.
 */
static inline struct vtio_pci_dev_info std_info(struct fake *f)
{
    struct vtio_pci_dev_info info = {
        .name = "fake",
        .vendor_id = 0x1234, .device_id = 0x5678,
        .subsystem_vendor_id = 0xabcd, .subsystem_id = 0xef01,
        .class_code = 0x088000, .revision = 3,
        .msi_vectors = 4,
        .msix_vectors = 8, .msix_bar = 4,
        .msix_table_offset = 0, .msix_pba_offset = 0x2000,
        .reset = fake_reset, .opaque = f,
    };
    info.bar[0] = (struct vtio_pci_bar_info){ .size = 16 * VTIO_KiB, .ops = &fake_ops,
                                              .opaque = f };
    info.bar[2] = (struct vtio_pci_bar_info){ .size = 64 * VTIO_KiB, .is_64bit = true,
                                              .prefetchable = true, .ops = &fake_ops,
                                              .opaque = f };
    info.bar[4] = (struct vtio_pci_bar_info){ .size = 16 * VTIO_KiB, .is_64bit = true };
    return info;
}

/* ---- interrupt capture: a raw MMIO region over the MSI window */

#define CAPTURE_TAGS 4096
struct capture {
    _Atomic uint64_t count;
    _Atomic uint64_t last_addr;
    _Atomic uint32_t last_data;
    _Atomic uint64_t mismatches;     /* address tag != data */
    _Atomic uint32_t per_tag[CAPTURE_TAGS];
};
static struct capture *cap;

static inline uint64_t capture_read(void *opaque, uint64_t off, unsigned size)
{
    (void)opaque, (void)off, (void)size;
    return 0;
}

static inline void capture_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct capture *c = opaque;
    (void)size;
    atomic_store(&c->last_addr, VTIO_MSI_WINDOW_BASE + off);
    atomic_store(&c->last_data, (uint32_t)val);
    if ((off >> 2) < CAPTURE_TAGS)
        atomic_fetch_add(&c->per_tag[off >> 2], 1);
    if ((off >> 2) != (uint32_t)val)
        atomic_fetch_add(&c->mismatches, 1);
    atomic_fetch_add(&c->count, 1);
}

static const struct vtio_mmio_ops capture_ops = { capture_read, capture_write };

/* ---- setup */

static inline void teardown(void)
{
    if (bus)
        vtio_pci_bus_destroy(bus);
    if (mem)
        vtio_mem_destroy(mem);
    free(cap);
    bus = NULL, mem = NULL, cap = NULL;
}

/* A fresh machine; a test that failed half-way left its machine behind,
 * and this frees it first. */
static inline void setup(bool capture)
{
    teardown();
    mem = vtio_mem_create();
    CHECK(mem != NULL);
    CHECK_OK(vtio_mem_add_ram(mem, 0, RAM_SIZE, "ram"));
    bus = vtio_pci_bus_create(mem, 0, ECAM_BASE, 0, 255);
    CHECKF(bus != NULL, "bus_create: %s", vtio_last_error());
    if (capture) {
        cap = calloc(1, sizeof(*cap));
        CHECK(cap != NULL);
        CHECK_OK(vtio_mem_add_mmio(mem, VTIO_MSI_WINDOW_BASE, VTIO_MSI_WINDOW_SIZE,
                                   &capture_ops, cap, "msi-capture"));
    }
}

static inline struct vtio_pci_dev *plug(uint8_t busno, uint8_t devfn,
                                 const struct vtio_pci_dev_info *info)
{
    struct vtio_pci_dev *dev = NULL;
    int rc = vtio_pci_dev_create(bus, busno, devfn, info, &dev);
    CHECKF(rc == 0, "dev_create: %d %s", rc, vtio_last_error());
    return dev;
}

/* ---- configuration access through ECAM, as host software does it */

static inline uint64_t ecam(uint16_t rid, unsigned reg)
{
    return ECAM_BASE + ((uint64_t)rid << 12) + reg;
}
static inline uint32_t cfg_r32(uint16_t rid, unsigned reg)
{
    return vtio_mem_read32(mem, ecam(rid, reg));
}
static inline uint16_t cfg_r16(uint16_t rid, unsigned reg)
{
    return vtio_mem_read16(mem, ecam(rid, reg));
}
static inline uint8_t cfg_r8(uint16_t rid, unsigned reg)
{
    return vtio_mem_read8(mem, ecam(rid, reg));
}
static inline void cfg_w32(uint16_t rid, unsigned reg, uint32_t v)
{
    vtio_mem_write32(mem, ecam(rid, reg), v);
}
static inline void cfg_w16(uint16_t rid, unsigned reg, uint16_t v)
{
    vtio_mem_write16(mem, ecam(rid, reg), v);
}
static inline void cfg_w8(uint16_t rid, unsigned reg, uint8_t v)
{
    vtio_mem_write8(mem, ecam(rid, reg), v);
}

/* Walks the capability list as an OS does; 0 if id is absent. */
static inline unsigned find_cap(uint16_t rid, uint8_t id)
{
    if (!(cfg_r16(rid, VTIO_PCI_STATUS) & VTIO_PCI_STATUS_CAP_LIST))
        return 0;
    unsigned pos = cfg_r8(rid, VTIO_PCI_CAPABILITY_LIST) & ~3u;
    for (int ttl = 48; pos >= 0x40 && ttl > 0; ttl--) {
        if (cfg_r8(rid, pos) == id)
            return pos;
        pos = cfg_r8(rid, pos + 1) & ~3u;
    }
    return 0;
}

/* Places BARs 0, 2 and 4 of a standard function (BAR4 holds its MSI-X
 * table and PBA) and turns on memory decode and bus mastering. */
static inline void std_place(uint16_t rid, uint64_t bar0, uint64_t bar2, uint64_t bar4)
{
    cfg_w32(rid, VTIO_PCI_BAR0, (uint32_t)bar0);
    cfg_w32(rid, VTIO_PCI_BAR0 + 8, (uint32_t)bar2);
    cfg_w32(rid, VTIO_PCI_BAR0 + 12, (uint32_t)(bar2 >> 32));
    cfg_w32(rid, VTIO_PCI_BAR0 + 16, (uint32_t)bar4);
    cfg_w32(rid, VTIO_PCI_BAR0 + 20, (uint32_t)(bar4 >> 32));
    cfg_w16(rid, VTIO_PCI_COMMAND, VTIO_PCI_COMMAND_MEM | VTIO_PCI_COMMAND_MASTER);
}

#endif
