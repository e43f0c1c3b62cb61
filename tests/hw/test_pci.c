/*
 * PCI bus tests, part 1: the segment, ECAM, configuration space, BARs,
 * Function Level Reset and the errors of vtio_pci_dev_create().
 * MSI, MSI-X and bus mastering are in test_pci_msi.c.
 */
#include "test_pci_fixture.h"

static const uint16_t RID = VTIO_PCI_RID(0, 3, 0);

/* ---- ECAM and identity */

static void t_ecam_ids(void)
{
    struct fake f = { 0 };
    setup(false);
    struct vtio_pci_dev_info info = std_info(&f);
    plug(0, VTIO_PCI_DEVFN(3, 0), &info);

    CHECK_EQ(cfg_r32(RID, VTIO_PCI_VENDOR_ID), 0x56781234);
    CHECK_EQ(cfg_r16(RID, VTIO_PCI_DEVICE_ID), 0x5678);
    CHECK_EQ(cfg_r8(RID, VTIO_PCI_VENDOR_ID + 1), 0x12);
    CHECK_EQ(cfg_r32(RID, VTIO_PCI_REVISION_ID), 0x08800003);
    CHECK_EQ(cfg_r16(RID, VTIO_PCI_CLASS_DEVICE), 0x0880);
    CHECK_EQ(cfg_r32(RID, VTIO_PCI_SUBSYSTEM_VENDOR_ID), 0xef01abcd);
    CHECK_EQ(cfg_r8(RID, VTIO_PCI_HEADER_TYPE), 0);
    CHECK_EQ(cfg_r8(RID, VTIO_PCI_INTERRUPT_PIN), 0);
    /* A qword read is two dword config reads: ids, then COMMAND/STATUS. */
    CHECK_EQ(vtio_mem_read64(mem, ecam(RID, 0)),
             (uint64_t)VTIO_PCI_STATUS_CAP_LIST << 48 | 0x56781234);
    /* The same through the direct call. */
    CHECK_EQ(vtio_pci_cfg_read(bus, RID, 0, 4), 0x56781234);
    CHECK_EQ(vtio_pci_cfg_read(bus, RID, 0x0e, 1), 0);

    /* Missing functions, on this bus and another one, read all ones. */
    uint16_t none = VTIO_PCI_RID(0, 4, 0), far = VTIO_PCI_RID(7, 3, 0);
    CHECK_EQ(cfg_r32(none, 0), 0xffffffff);
    CHECK_EQ(cfg_r16(none, 2), 0xffff);
    CHECK_EQ(cfg_r8(none, 0x0e), 0xff);
    CHECK_EQ(cfg_r32(far, 0), 0xffffffff);
    CHECK_EQ(cfg_r32(VTIO_PCI_RID(0, 3, 1), 0), 0xffffffff);
    CHECK_EQ(vtio_mem_read64(mem, ecam(none, 0)), ~0ull);
    cfg_w32(none, VTIO_PCI_COMMAND, 0x6);          /* dropped */
    CHECK_EQ(cfg_r32(none, VTIO_PCI_COMMAND), 0xffffffff);
    CHECK_EQ(vtio_pci_cfg_read(bus, none, 0, 2), 0xffff);

    /* No extended capabilities: the header at 0x100 reads 0. */
    CHECK_EQ(cfg_r32(RID, 0x100), 0);
    CHECK_EQ(cfg_r32(RID, 0xffc), 0);

    /* Bad accesses through the direct call read all ones. */
    CHECK_EQ(vtio_pci_cfg_read(bus, RID, 1, 2), 0xffffffff);
    CHECK_EQ(vtio_pci_cfg_read(bus, RID, 0, 3), 0xffffffff);
    CHECK_EQ(vtio_pci_cfg_read(bus, RID, 0, 8), 0xffffffff);
    CHECK_EQ(vtio_pci_cfg_read(bus, RID, 4096, 4), 0xffffffff);
    vtio_pci_cfg_write(bus, RID, 4094, 0xffffffff, 4);    /* ignored */

    /* Function 0 of a multi-function device says so in its header type. */
    info.multifunction = true;
    plug(0, VTIO_PCI_DEVFN(5, 0), &info);
    CHECK_EQ(cfg_r8(VTIO_PCI_RID(0, 5, 0), VTIO_PCI_HEADER_TYPE), 0x80);
    teardown();
}

static void t_ecam_bus_range(void)
{
    struct fake f = { 0 };
    setup(false);
    const uint64_t base = 0xD0000000ull;
    struct vtio_pci_bus *b2 = vtio_pci_bus_create(mem, 1, base, 2, 3);
    CHECKF(b2 != NULL, "%s", vtio_last_error());
    CHECK_EQ(vtio_pci_bus_segment(b2), 1);
    CHECK(vtio_mem_is_mapped(mem, base, 2 * VTIO_MiB));
    CHECK(!vtio_mem_is_mapped(mem, base + 2 * VTIO_MiB, 1));

    struct vtio_pci_dev_info info = std_info(&f);
    struct vtio_pci_dev *dev = NULL;
    CHECK_OK(vtio_pci_dev_create(b2, 3, VTIO_PCI_DEVFN(1, 2), &info, &dev));
    /* Bus 3 is the second MiB of the window: offset (3 - 2) << 20. */
    uint64_t fn = base + (1ull << 20) + ((uint64_t)VTIO_PCI_DEVFN(1, 2) << 12);
    CHECK_EQ(vtio_mem_read32(mem, fn), 0x56781234);
    CHECK_EQ(vtio_mem_read32(mem, fn - (1ull << 20)), 0xffffffff);   /* bus 2: empty */
    CHECK(vtio_pci_bus_find(b2, VTIO_PCI_RID(3, 1, 2)) == dev);
    CHECK(vtio_pci_bus_find(b2, VTIO_PCI_RID(1, 1, 2)) == NULL);
    CHECK_EQ(vtio_pci_cfg_read(b2, VTIO_PCI_RID(4, 1, 2), 0, 4), 0xffffffff);
    /* The other segment's function is not on this one. */
    CHECK_EQ(cfg_r32(VTIO_PCI_RID(3, 1, 2), 0), 0xffffffff);

    CHECK_ERR(vtio_pci_dev_create(b2, 1, 0, &info, &dev), -EINVAL);
    CHECK_ERR(vtio_pci_dev_create(b2, 4, 0, &info, &dev), -EINVAL);
    vtio_pci_bus_destroy(b2);
    CHECK(!vtio_mem_is_mapped(mem, base, 1));
    teardown();
}

static void t_bus_create_errors(void)
{
    setup(false);
    CHECK(vtio_pci_bus_create(mem, 0, 0xD0000000ull, 5, 4) == NULL);     /* empty range */
    CHECK(vtio_pci_bus_create(mem, 0, 0xD0080000ull, 0, 0) == NULL);     /* not 1 MiB aligned */
    CHECK(vtio_pci_bus_create(mem, 0, ECAM_BASE, 0, 0) == NULL);         /* ECAM taken */
    CHECK(vtio_pci_bus_create(mem, 0, 0, 0, 0) == NULL);                 /* over RAM */
    CHECK(vtio_pci_bus_create(NULL, 0, 0xD0000000ull, 0, 0) == NULL);
    CHECK(strlen(vtio_last_error()) > 0);
    teardown();
}

static void t_requester_ids(void)
{
    CHECK_EQ(VTIO_PCI_RID(0x12, 0x1f, 7), 0x12ff);
    CHECK_EQ(VTIO_PCI_RID(0, 3, 0), 0x0018);
    CHECK_EQ(VTIO_PCI_RID(0xff, 0, 1), 0xff01);
    CHECK_EQ(VTIO_PCI_RID(0x112, 0x21, 9), 0x1209);       /* fields are masked */
    CHECK_EQ(VTIO_PCI_DEVFN(3, 1), 0x19);
    CHECK_EQ(VTIO_PCI_DEVFN(0x1f, 7), 0xff);
    CHECK_EQ(VTIO_PCI_RID_BUS(0x12ff), 0x12);
    CHECK_EQ(VTIO_PCI_RID_DEV(0x12ff), 0x1f);
    CHECK_EQ(VTIO_PCI_RID_FN(0x12ff), 7);

    struct fake f = { 0 };
    setup(false);
    struct vtio_pci_dev_info info = std_info(&f);
    struct vtio_pci_dev *dev = plug(5, VTIO_PCI_DEVFN(2, 1), &info);
    CHECK_EQ(vtio_pci_dev_rid(dev), 0x0511);
    CHECK(vtio_pci_bus_find(bus, 0x0511) == dev);
    CHECK(vtio_pci_bus_find(bus, 0x0510) == NULL);
    CHECK(strcmp(vtio_pci_dev_name(dev), "fake") == 0);
    CHECK_EQ(vtio_pci_bus_segment(bus), 0);
    struct vtio_dma_port *port = vtio_pci_dev_dma_port(dev);
    CHECK_EQ(port->rid, 0x0511);
    CHECK(port->mem == mem);
    CHECK_EQ(cfg_r32(0x0511, 0), 0x56781234);
    teardown();
}

/* ---- configuration space semantics */

static void t_read_only_fields(void)
{
    struct fake f = { 0 };
    setup(false);
    struct vtio_pci_dev_info info = std_info(&f);
    plug(0, VTIO_PCI_DEVFN(3, 0), &info);

    cfg_w32(RID, VTIO_PCI_VENDOR_ID, 0xffffffff);
    CHECK_EQ(cfg_r32(RID, VTIO_PCI_VENDOR_ID), 0x56781234);
    cfg_w32(RID, VTIO_PCI_REVISION_ID, 0);
    CHECK_EQ(cfg_r32(RID, VTIO_PCI_REVISION_ID), 0x08800003);
    cfg_w32(RID, VTIO_PCI_SUBSYSTEM_VENDOR_ID, 0);
    CHECK_EQ(cfg_r32(RID, VTIO_PCI_SUBSYSTEM_VENDOR_ID), 0xef01abcd);
    cfg_w8(RID, VTIO_PCI_HEADER_TYPE, 0xff);
    CHECK_EQ(cfg_r8(RID, VTIO_PCI_HEADER_TYPE), 0);
    cfg_w8(RID, VTIO_PCI_CAPABILITY_LIST, 0);
    CHECK_EQ(cfg_r8(RID, VTIO_PCI_CAPABILITY_LIST), 0x40);
    cfg_w8(RID, VTIO_PCI_INTERRUPT_PIN, 1);
    CHECK_EQ(cfg_r8(RID, VTIO_PCI_INTERRUPT_PIN), 0);
    cfg_w32(RID, 0x30, 0xffffffff);                     /* no expansion ROM */
    CHECK_EQ(cfg_r32(RID, 0x30), 0);
    cfg_w32(RID, 0x100, 0xffffffff);
    CHECK_EQ(cfg_r32(RID, 0x100), 0);

    /* COMMAND: I/O space is hardwired 0 (no I/O BARs); MEM, BME, parity,
     * SERR and INTx disable are writable. */
    cfg_w16(RID, VTIO_PCI_COMMAND, 0xffff);
    uint16_t cmd = cfg_r16(RID, VTIO_PCI_COMMAND);
    CHECK_EQ(cmd & VTIO_PCI_COMMAND_IO, 0);
    CHECK_EQ(cmd, VTIO_PCI_COMMAND_MEM | VTIO_PCI_COMMAND_MASTER | 0x0040 | 0x0100 |
                      VTIO_PCI_COMMAND_INTX_DISABLE);
    cfg_w16(RID, VTIO_PCI_COMMAND, 0);
    CHECK_EQ(cfg_r16(RID, VTIO_PCI_COMMAND), 0);

    /* STATUS: CAP_LIST stays; error bits are RW1C and none is set. */
    cfg_w16(RID, VTIO_PCI_STATUS, 0xffff);
    CHECK_EQ(cfg_r16(RID, VTIO_PCI_STATUS), VTIO_PCI_STATUS_CAP_LIST);

    /* Interrupt Line and Cache Line Size are scratch registers. */
    cfg_w8(RID, VTIO_PCI_INTERRUPT_LINE, 0x0b);
    CHECK_EQ(cfg_r8(RID, VTIO_PCI_INTERRUPT_LINE), 0x0b);

    /* Capabilities: DEVCAP and the version field are read-only; DEVCTL's
     * unsupported bits read 0; MSI-X table size and locations are fixed. */
    unsigned exp = find_cap(RID, VTIO_PCI_CAP_ID_EXP);
    CHECK(exp != 0);
    uint32_t devcap = cfg_r32(RID, exp + VTIO_PCI_EXP_DEVCAP);
    cfg_w32(RID, exp + VTIO_PCI_EXP_DEVCAP, 0);
    CHECK_EQ(cfg_r32(RID, exp + VTIO_PCI_EXP_DEVCAP), devcap);
    cfg_w16(RID, exp + VTIO_PCI_EXP_FLAGS, 0);
    CHECK_EQ(cfg_r16(RID, exp + VTIO_PCI_EXP_FLAGS), 0x0002);
    CHECK_EQ(cfg_r16(RID, exp + VTIO_PCI_EXP_DEVCTL), 0x2810);   /* power-on */
    cfg_w16(RID, exp + VTIO_PCI_EXP_DEVCTL, 0x7fff);
    CHECK_EQ(cfg_r16(RID, exp + VTIO_PCI_EXP_DEVCTL), 0x78ff);
    CHECK_EQ(f.resets, 0);

    unsigned msix = find_cap(RID, VTIO_PCI_CAP_ID_MSIX);
    CHECK(msix != 0);
    cfg_w16(RID, msix + VTIO_PCI_MSIX_FLAGS, 0xffff);
    CHECK_EQ(cfg_r16(RID, msix + VTIO_PCI_MSIX_FLAGS),
             VTIO_PCI_MSIX_FLAGS_ENABLE | VTIO_PCI_MSIX_FLAGS_MASKALL | 7);
    cfg_w16(RID, msix + VTIO_PCI_MSIX_FLAGS, 0);
    cfg_w32(RID, msix + VTIO_PCI_MSIX_TABLE, 0x1234);
    CHECK_EQ(cfg_r32(RID, msix + VTIO_PCI_MSIX_TABLE), 4);
    cfg_w32(RID, msix + VTIO_PCI_MSIX_PBA, 0);
    CHECK_EQ(cfg_r32(RID, msix + VTIO_PCI_MSIX_PBA), 0x2004);
    teardown();
}

static void t_capability_walk(void)
{
    struct fake f = { 0 };
    setup(false);
    struct vtio_pci_dev_info info = std_info(&f);
    plug(0, VTIO_PCI_DEVFN(3, 0), &info);

    CHECK(cfg_r16(RID, VTIO_PCI_STATUS) & VTIO_PCI_STATUS_CAP_LIST);
    unsigned exp = find_cap(RID, VTIO_PCI_CAP_ID_EXP);
    unsigned msi = find_cap(RID, VTIO_PCI_CAP_ID_MSI);
    unsigned msix = find_cap(RID, VTIO_PCI_CAP_ID_MSIX);
    CHECK_EQ(exp, 0x40);
    CHECK(msi >= 0x40 && msix >= 0x40 && msi != msix);
    CHECK(msix + 12 <= 0x100 && msi + 24 <= 0x100);

    /* PCI Express capability version 2, endpoint, FLR capable. */
    uint16_t flags = cfg_r16(RID, exp + VTIO_PCI_EXP_FLAGS);
    CHECK_EQ(flags & 0xf, 2);
    CHECK_EQ((flags >> 4) & 0xf, 0);
    CHECK(cfg_r32(RID, exp + VTIO_PCI_EXP_DEVCAP) & VTIO_PCI_EXP_DEVCAP_FLR);

    /* MSI: 64-bit, per-vector masking, 4 vectors capable (log2 = 2). */
    uint16_t mf = cfg_r16(RID, msi + VTIO_PCI_MSI_FLAGS);
    CHECK(mf & VTIO_PCI_MSI_FLAGS_64BIT);
    CHECK(mf & VTIO_PCI_MSI_FLAGS_MASKBIT);
    CHECK_EQ((mf & VTIO_PCI_MSI_FLAGS_QMASK) >> 1, 2);
    CHECK_EQ(mf & (VTIO_PCI_MSI_FLAGS_ENABLE | VTIO_PCI_MSI_FLAGS_QSIZE), 0);

    /* MSI-X: 8 entries, table at BAR4 + 0, PBA at BAR4 + 0x2000. */
    CHECK_EQ(cfg_r16(RID, msix + VTIO_PCI_MSIX_FLAGS), 7);
    CHECK_EQ(cfg_r32(RID, msix + VTIO_PCI_MSIX_TABLE), 0x0 | 4);
    CHECK_EQ(cfg_r32(RID, msix + VTIO_PCI_MSIX_PBA), 0x2000 | 4);

    /* A function without MSI or MSI-X has only the PCIe capability. */
    info.msi_vectors = 0;
    info.msix_vectors = 0;
    plug(0, VTIO_PCI_DEVFN(4, 0), &info);
    uint16_t r4 = VTIO_PCI_RID(0, 4, 0);
    CHECK_EQ(find_cap(r4, VTIO_PCI_CAP_ID_EXP), 0x40);
    CHECK_EQ(find_cap(r4, VTIO_PCI_CAP_ID_MSI), 0);
    CHECK_EQ(find_cap(r4, VTIO_PCI_CAP_ID_MSIX), 0);
    CHECK_EQ(cfg_r8(r4, 0x41), 0);                       /* end of list */
    teardown();
}

/* ---- BARs */

static void t_bar_sizing(void)
{
    struct fake f = { 0 };
    setup(false);
    struct vtio_pci_dev_info info = std_info(&f);
    plug(0, VTIO_PCI_DEVFN(3, 0), &info);

    /* Power-on: address 0, the type bits visible. */
    static const uint32_t reset[6] = { 0, 0, 0xc, 0, 0x4, 0 };
    /* After writing all ones: size mask | type bits.  BAR1 is unused;
     * BAR3 and BAR5 are the upper halves of 64-bit BARs of 64 and 16 KiB. */
    static const uint32_t sized[6] = { 0xffffc000, 0, 0xffff000c, 0xffffffff,
                                       0xffffc004, 0xffffffff };
    for (unsigned i = 0; i < 6; i++)
        CHECK_EQ(cfg_r32(RID, VTIO_PCI_BAR0 + 4 * i), reset[i]);
    for (unsigned i = 0; i < 6; i++)
        cfg_w32(RID, VTIO_PCI_BAR0 + 4 * i, 0xffffffff);
    for (unsigned i = 0; i < 6; i++)
        CHECK_EQ(cfg_r32(RID, VTIO_PCI_BAR0 + 4 * i), sized[i]);

    /* Placement keeps only the address bits above the size. */
    cfg_w32(RID, VTIO_PCI_BAR0, 0xc0001234);
    CHECK_EQ(cfg_r32(RID, VTIO_PCI_BAR0), 0xc0000000);
    cfg_w32(RID, VTIO_PCI_BAR0 + 8, 0x12345678);
    CHECK_EQ(cfg_r32(RID, VTIO_PCI_BAR0 + 8), 0x1234000c);

    /* Large BARs: 8 GiB 64-bit (all address bits in the upper dword), a
     * 2 GiB 32-bit one, a 16-byte prefetchable 32-bit one. */
    struct vtio_pci_dev_info big = {
        .name = "big", .vendor_id = 0x1234, .device_id = 0x1,
    };
    big.bar[0] = (struct vtio_pci_bar_info){ .size = 8 * VTIO_GiB, .is_64bit = true };
    big.bar[2] = (struct vtio_pci_bar_info){ .size = 2 * VTIO_GiB };
    big.bar[3] = (struct vtio_pci_bar_info){ .size = 16, .prefetchable = true };
    plug(0, VTIO_PCI_DEVFN(4, 0), &big);
    uint16_t r4 = VTIO_PCI_RID(0, 4, 0);
    for (unsigned i = 0; i < 6; i++)
        cfg_w32(r4, VTIO_PCI_BAR0 + 4 * i, 0xffffffff);
    CHECK_EQ(cfg_r32(r4, VTIO_PCI_BAR0), 0x00000004);
    CHECK_EQ(cfg_r32(r4, VTIO_PCI_BAR0 + 4), 0xfffffffe);
    CHECK_EQ(cfg_r32(r4, VTIO_PCI_BAR0 + 8), 0x80000000);
    CHECK_EQ(cfg_r32(r4, VTIO_PCI_BAR0 + 12), 0xfffffff8);
    CHECK_EQ(cfg_r32(r4, VTIO_PCI_BAR0 + 16), 0);
    /* Sizing with a qword access through ECAM: both halves at once. */
    vtio_mem_write64(mem, ecam(r4, VTIO_PCI_BAR0), ~0ull);
    CHECK_EQ(vtio_mem_read64(mem, ecam(r4, VTIO_PCI_BAR0)), 0xfffffffe00000004ull);
    teardown();
}

static void t_bar_decode(void)
{
    struct fake f = { 0 };
    setup(false);
    struct vtio_pci_dev_info info = std_info(&f);
    plug(0, VTIO_PCI_DEVFN(3, 0), &info);
    const uint64_t b0 = MMIO32_BASE, b2 = MMIO64_BASE;

    cfg_w32(RID, VTIO_PCI_BAR0, (uint32_t)b0);
    vtio_mem_write64(mem, ecam(RID, VTIO_PCI_BAR0 + 8), b2);
    CHECK_EQ(cfg_r32(RID, VTIO_PCI_BAR0 + 12), (uint32_t)(b2 >> 32));

    /* Programmed but COMMAND.MEM clear: nothing decodes. */
    CHECK(!vtio_mem_is_mapped(mem, b0, 4));
    CHECK(!vtio_mem_is_mapped(mem, b2, 4));
    CHECK_EQ(vtio_mem_read32(mem, b0 + 0x124), 0xffffffff);
    CHECK_EQ(f.reads, 0);

    cfg_w16(RID, VTIO_PCI_COMMAND, VTIO_PCI_COMMAND_MEM);
    CHECK(vtio_mem_is_mapped(mem, b0, 16 * VTIO_KiB));
    CHECK(!vtio_mem_is_mapped(mem, b0 + 16 * VTIO_KiB, 1));
    CHECK(vtio_mem_is_mapped(mem, b2, 64 * VTIO_KiB));

    /* Accesses reach the device at BAR-relative offsets. */
    CHECK_EQ(vtio_mem_read32(mem, b0 + 0x124), (uint32_t)fake_pattern(0x124));
    CHECK_EQ(f.last_off, 0x124);
    CHECK_EQ(f.last_size, 4);
    vtio_mem_write32(mem, b0 + 0x3ffc, 0xdeadbeef);
    CHECK_EQ(f.last_off, 0x3ffc);
    CHECK_EQ(f.last_val, 0xdeadbeef);
    CHECK_EQ(f.writes, 1);
    CHECK_EQ(vtio_mem_read64(mem, b2 + 0xfff8), fake_pattern(0xfff8));
    CHECK_EQ(f.last_size, 8);
    vtio_mem_write16(mem, b2 + 0x22, 0xbeef);
    CHECK_EQ(f.last_off, 0x22);
    CHECK_EQ(f.last_size, 2);
    CHECK_EQ(f.last_val, 0xbeef);

    /* MEM off: gone; on again: back. */
    unsigned reads = f.reads;
    cfg_w16(RID, VTIO_PCI_COMMAND, 0);
    CHECK(!vtio_mem_is_mapped(mem, b0, 1));
    CHECK(!vtio_mem_is_mapped(mem, b2, 1));
    CHECK_EQ(vtio_mem_read32(mem, b0), 0xffffffff);
    CHECK_EQ(f.reads, reads);
    cfg_w16(RID, VTIO_PCI_COMMAND, VTIO_PCI_COMMAND_MEM);
    CHECK(vtio_mem_is_mapped(mem, b0, 1));

    /* Moving a decoding BAR: the old range becomes a hole. */
    cfg_w32(RID, VTIO_PCI_BAR0, (uint32_t)(b0 + 0x10000));
    CHECK(!vtio_mem_is_mapped(mem, b0, 1));
    CHECK(vtio_mem_is_mapped(mem, b0 + 0x10000, 16 * VTIO_KiB));
    CHECK_EQ(vtio_mem_read32(mem, b0 + 0x10008), (uint32_t)fake_pattern(8));
    CHECK_EQ(f.last_off, 8);
    vtio_mem_write64(mem, ecam(RID, VTIO_PCI_BAR0 + 8), b2 + VTIO_MiB);
    CHECK(!vtio_mem_is_mapped(mem, b2, 1));
    CHECK(vtio_mem_is_mapped(mem, b2 + VTIO_MiB, 64 * VTIO_KiB));
    CHECK_EQ(vtio_mem_read16(mem, b2 + VTIO_MiB + 0x40), (uint16_t)fake_pattern(0x40));

    /* Sizing while decoding, or base 0: the BAR stops decoding. */
    cfg_w32(RID, VTIO_PCI_BAR0, 0xffffffff);
    CHECK(!vtio_mem_is_mapped(mem, b0 + 0x10000, 1));
    CHECK(!vtio_mem_is_mapped(mem, 0xffffc000ull, 1));
    cfg_w32(RID, VTIO_PCI_BAR0, 0);
    CHECK_EQ(cfg_r32(RID, VTIO_PCI_BAR0), 0);
    reads = f.reads;
    vtio_mem_read32(mem, 0);                  /* RAM, not BAR0 at 0 */
    CHECK_EQ(f.reads, reads);
    cfg_w32(RID, VTIO_PCI_BAR0, (uint32_t)b0);
    CHECK(vtio_mem_is_mapped(mem, b0, 16 * VTIO_KiB));
    teardown();
}

static void t_bar_conflicts(void)
{
    struct fake fa = { 0 }, fb = { 0 };
    setup(false);
    struct vtio_pci_dev_info ia = std_info(&fa), ib = std_info(&fb);
    uint16_t ra = VTIO_PCI_RID(0, 3, 0), rb = VTIO_PCI_RID(0, 4, 0);
    plug(0, VTIO_PCI_DEVFN(3, 0), &ia);
    plug(0, VTIO_PCI_DEVFN(4, 0), &ib);
    const uint64_t x = MMIO32_BASE;

    cfg_w32(ra, VTIO_PCI_BAR0, (uint32_t)x);
    cfg_w16(ra, VTIO_PCI_COMMAND, VTIO_PCI_COMMAND_MEM);
    /* B's BAR0 at the same place does not decode; A keeps answering. */
    cfg_w32(rb, VTIO_PCI_BAR0, (uint32_t)x);
    cfg_w16(rb, VTIO_PCI_COMMAND, VTIO_PCI_COMMAND_MEM);
    vtio_mem_read32(mem, x);
    CHECK_EQ(fa.reads, 1);
    CHECK_EQ(fb.reads, 0);
    /* Once A lets go, B decodes at its next COMMAND or BAR write. */
    cfg_w16(ra, VTIO_PCI_COMMAND, 0);
    CHECK(!vtio_mem_is_mapped(mem, x, 1));
    cfg_w16(rb, VTIO_PCI_COMMAND, VTIO_PCI_COMMAND_MEM);
    vtio_mem_read32(mem, x);
    CHECK_EQ(fb.reads, 1);

    /* A BAR placed over RAM does not decode, and RAM is untouched. */
    vtio_mem_write32(mem, 0x100000, 0x5a5a5a5a);
    cfg_w32(rb, VTIO_PCI_BAR0 + 8, 0x100000);
    cfg_w32(rb, VTIO_PCI_BAR0 + 12, 0);
    CHECK_EQ(vtio_mem_read32(mem, 0x100000), 0x5a5a5a5a);
    vtio_mem_write32(mem, 0x100004, 0x11111111);
    CHECK_EQ(fb.writes, 0);
    CHECK(vtio_mem_is_ram(mem, 0x100000, 64 * VTIO_KiB));
    teardown();
}

static void t_bar_routing(void)
{
    struct fake f = { 0 };
    setup(false);
    /* MSI-X table and PBA inside the register BAR: the bus claims exactly
     * their bytes, the device gets everything around them. */
    struct vtio_pci_dev_info info = std_info(&f);
    info.msix_bar = 0;
    info.msix_table_offset = 0x1000;      /* 8 entries: 0x1000-0x107f */
    info.msix_pba_offset = 0x1800;        /* one qword */
    plug(0, VTIO_PCI_DEVFN(3, 0), &info);
    std_place(RID, MMIO32_BASE, MMIO64_BASE, MMIO32_BASE + VTIO_MiB);
    const uint64_t b0 = MMIO32_BASE;

    CHECK_EQ(vtio_mem_read32(mem, b0), (uint32_t)fake_pattern(0));
    unsigned reads = f.reads;
    CHECK_EQ(vtio_mem_read32(mem, b0 + 0x1000), 0);      /* entry 0 address */
    CHECK_EQ(vtio_mem_read32(mem, b0 + 0x107c), 1);      /* entry 7 masked */
    CHECK_EQ(vtio_mem_read64(mem, b0 + 0x1800), 0);      /* PBA */
    CHECK_EQ(f.reads, reads);
    CHECK_EQ(vtio_mem_read32(mem, b0 + 0x1080), (uint32_t)fake_pattern(0x1080));
    CHECK_EQ(vtio_mem_read32(mem, b0 + 0x0ffc), (uint32_t)fake_pattern(0x0ffc));
    CHECK_EQ(vtio_mem_read32(mem, b0 + 0x1808), (uint32_t)fake_pattern(0x1808));
    vtio_mem_write32(mem, b0 + 0x1008, 0x77);            /* entry 0 data */
    CHECK_EQ(f.writes, 0);
    CHECK_EQ(vtio_mem_read32(mem, b0 + 0x1008), 0x77);

    /* A BAR without ops (BAR4 here holds nothing) reads 0, drops writes. */
    const uint64_t b4 = MMIO32_BASE + VTIO_MiB;
    CHECK(vtio_mem_is_mapped(mem, b4, 16 * VTIO_KiB));
    vtio_mem_write32(mem, b4 + 0x3000, 0x12345678);
    CHECK_EQ(vtio_mem_read32(mem, b4 + 0x3000), 0);
    CHECK_EQ(vtio_mem_read64(mem, b4), 0);
    teardown();
}

/* ---- creation errors */

static int try_create(const struct vtio_pci_dev_info *info)
{
    struct vtio_pci_dev *dev = NULL;
    int rc = vtio_pci_dev_create(bus, 0, VTIO_PCI_DEVFN(6, 0), info, &dev);
    if (rc < 0 && dev != NULL)
        return -9999;          /* *out must be left alone on failure */
    return rc;
}

static void t_create_errors(void)
{
    struct fake f = { 0 };
    setup(false);
    struct vtio_pci_dev_info base = std_info(&f), i;
    struct vtio_pci_dev *dev = NULL;

    CHECK_ERR(vtio_pci_dev_create(bus, 0, 0, NULL, &dev), -EINVAL);
    CHECK_ERR(vtio_pci_dev_create(bus, 0, 0, &base, NULL), -EINVAL);
    struct vtio_pci_bus *small = vtio_pci_bus_create(mem, 1, 0xD0000000ull, 0, 3);
    CHECK(small != NULL);
    CHECK_ERR(vtio_pci_dev_create(small, 4, 0, &base, &dev), -EINVAL);   /* bad bus */
    vtio_pci_bus_destroy(small);

    i = base; i.bar[0].size = 0x3000;                 /* not a power of two */
    CHECK_ERR(try_create(&i), -EINVAL);
    i = base; i.bar[0].size = 8;                      /* under 16 bytes */
    CHECK_ERR(try_create(&i), -EINVAL);
    i = base; i.bar[0].size = 4 * VTIO_GiB;           /* too big for 32 bits */
    CHECK_ERR(try_create(&i), -EINVAL);
    i = base; i.bar[4].size = 0; i.msix_vectors = 0;
    i.bar[5] = (struct vtio_pci_bar_info){ .size = 4096, .is_64bit = true };
    CHECK_ERR(try_create(&i), -EINVAL);               /* 64-bit BAR in slot 5 */
    CHECK(strstr(vtio_last_error(), "BAR5") != NULL);
    i = base; i.bar[3].size = 4096;                   /* upper half of BAR2 */
    CHECK_ERR(try_create(&i), -EINVAL);

    i = base; i.msi_vectors = 3;
    CHECK_ERR(try_create(&i), -EINVAL);
    i = base; i.msi_vectors = 64;
    CHECK_ERR(try_create(&i), -EINVAL);
    i = base; i.msix_vectors = 2049;
    CHECK_ERR(try_create(&i), -EINVAL);
    i = base; i.msix_bar = 1;                         /* no BAR1 */
    CHECK_ERR(try_create(&i), -EINVAL);
    i = base; i.msix_bar = 5;                         /* upper half of BAR4 */
    CHECK_ERR(try_create(&i), -EINVAL);
    i = base; i.msix_bar = 6;
    CHECK_ERR(try_create(&i), -EINVAL);
    i = base; i.msix_table_offset = 0x3f90;           /* 128 bytes from 0x3f90 */
    CHECK_ERR(try_create(&i), -EINVAL);
    CHECK(strstr(vtio_last_error(), "outside") != NULL);
    i = base; i.msix_table_offset = 0x4000;
    CHECK_ERR(try_create(&i), -EINVAL);
    i = base; i.msix_pba_offset = 0x4000;             /* PBA outside */
    CHECK_ERR(try_create(&i), -EINVAL);
    i = base; i.msix_pba_offset = 0x40;               /* inside the table */
    CHECK_ERR(try_create(&i), -EINVAL);
    i = base; i.msix_table_offset = 0x104;            /* not 8-byte aligned */
    CHECK_ERR(try_create(&i), -EINVAL);
    i = base; i.msix_vectors = 2048;                  /* 32 KiB table: too big */
    CHECK_ERR(try_create(&i), -EINVAL);

    /* None of that plugged anything. */
    CHECK(vtio_pci_bus_find(bus, VTIO_PCI_RID(0, 6, 0)) == NULL);
    CHECK_EQ(cfg_r32(VTIO_PCI_RID(0, 6, 0), 0), 0xffffffff);

    /* The largest MSI-X table fits a 64 KiB BAR. */
    i = base; i.bar[4].size = 64 * VTIO_KiB; i.msix_vectors = 2048;
    i.msix_pba_offset = 0x8000;
    CHECK_OK(try_create(&i));
    CHECK_EQ(cfg_r16(VTIO_PCI_RID(0, 6, 0), find_cap(VTIO_PCI_RID(0, 6, 0),
                                                     VTIO_PCI_CAP_ID_MSIX) + 2), 2047);
    /* And now the slot is taken. */
    CHECK_ERR(try_create(&base), -EEXIST);
    CHECK(strstr(vtio_last_error(), "taken") != NULL);
    teardown();
}

/* ---- reset */

static void t_flr(void)
{
    struct fake f = { 0 };
    setup(false);
    struct vtio_pci_dev_info info = std_info(&f);
    struct vtio_pci_dev *dev = plug(0, VTIO_PCI_DEVFN(3, 0), &info);
    const uint64_t b4 = MMIO32_BASE + VTIO_MiB;
    std_place(RID, MMIO32_BASE, MMIO64_BASE, b4);
    unsigned exp = find_cap(RID, VTIO_PCI_CAP_ID_EXP);
    unsigned msix = find_cap(RID, VTIO_PCI_CAP_ID_MSIX);
    unsigned msi = find_cap(RID, VTIO_PCI_CAP_ID_MSI);

    /* Dirty everything software can dirty. */
    cfg_w8(RID, VTIO_PCI_INTERRUPT_LINE, 5);
    cfg_w16(RID, exp + VTIO_PCI_EXP_DEVCTL, 0x0020);
    cfg_w16(RID, msix + VTIO_PCI_MSIX_FLAGS, VTIO_PCI_MSIX_FLAGS_ENABLE);
    cfg_w16(RID, msi + VTIO_PCI_MSI_FLAGS, VTIO_PCI_MSI_FLAGS_ENABLE);
    cfg_w32(RID, msi + VTIO_PCI_MSI_MASK_64, 0xf);
    vtio_mem_write64(mem, b4, MSG_ADDR(1));
    vtio_mem_write32(mem, b4 + 12, 0);
    CHECK_EQ(vtio_mem_read32(mem, b4 + 12), 0);
    uint8_t buf[8];
    struct vtio_dma_port *port = vtio_pci_dev_dma_port(dev);
    CHECK_OK(vtio_dma_read(port, 0x1000, buf, sizeof(buf)));
    CHECK_EQ(vtio_pci_msi_notify(dev, 0), 1);           /* masked: pending */

    /* Initiate FLR: the bit is never stored; the reset callback runs once. */
    CHECK_EQ(cfg_r16(RID, exp + VTIO_PCI_EXP_DEVCTL) & VTIO_PCI_EXP_DEVCTL_BCR_FLR, 0);
    cfg_w16(RID, exp + VTIO_PCI_EXP_DEVCTL,
            cfg_r16(RID, exp + VTIO_PCI_EXP_DEVCTL) | VTIO_PCI_EXP_DEVCTL_BCR_FLR);
    CHECK_EQ(f.resets, 1);

    CHECK_EQ(cfg_r16(RID, VTIO_PCI_COMMAND), 0);
    CHECK_EQ(cfg_r32(RID, VTIO_PCI_BAR0), 0);
    CHECK_EQ(cfg_r32(RID, VTIO_PCI_BAR0 + 8), 0xc);
    CHECK_EQ(cfg_r32(RID, VTIO_PCI_BAR0 + 12), 0);
    CHECK_EQ(cfg_r32(RID, VTIO_PCI_BAR0 + 16), 0x4);
    CHECK_EQ(cfg_r8(RID, VTIO_PCI_INTERRUPT_LINE), 0);
    CHECK_EQ(cfg_r16(RID, exp + VTIO_PCI_EXP_DEVCTL), 0x2810);
    CHECK_EQ(cfg_r16(RID, msix + VTIO_PCI_MSIX_FLAGS), 7);
    CHECK_EQ(cfg_r16(RID, msi + VTIO_PCI_MSI_FLAGS) & VTIO_PCI_MSI_FLAGS_ENABLE, 0);
    CHECK_EQ(cfg_r32(RID, msi + VTIO_PCI_MSI_MASK_64), 0);
    CHECK_EQ(cfg_r32(RID, msi + VTIO_PCI_MSI_PENDING_64), 0);
    CHECK(!vtio_mem_is_mapped(mem, MMIO32_BASE, 1));
    CHECK(!vtio_mem_is_mapped(mem, MMIO64_BASE, 1));
    CHECK(!vtio_mem_is_mapped(mem, b4, 1));
    CHECK_ERR(vtio_dma_read(port, 0x1000, buf, sizeof(buf)), -EPERM);
    CHECK_ERR(vtio_pci_msix_notify(dev, 0), -ENODEV);

    /* The MSI-X table is back to power-on: zero, every vector masked. */
    std_place(RID, MMIO32_BASE, MMIO64_BASE, b4);
    CHECK_EQ(vtio_mem_read64(mem, b4), 0);
    CHECK_EQ(vtio_mem_read32(mem, b4 + 12), 1);
    CHECK_EQ(vtio_mem_read64(mem, b4 + 0x2000), 0);

    /* vtio_pci_dev_reset does the same. */
    cfg_w8(RID, VTIO_PCI_INTERRUPT_LINE, 9);
    vtio_pci_dev_reset(dev);
    CHECK_EQ(f.resets, 2);
    CHECK_EQ(cfg_r8(RID, VTIO_PCI_INTERRUPT_LINE), 0);
    CHECK_EQ(cfg_r16(RID, VTIO_PCI_COMMAND), 0);
    CHECK(!vtio_mem_is_mapped(mem, MMIO32_BASE, 1));

    /* A function without a reset callback resets its config space too. */
    info.reset = NULL;
    plug(0, VTIO_PCI_DEVFN(4, 0), &info);
    uint16_t r4 = VTIO_PCI_RID(0, 4, 0);
    cfg_w16(r4, VTIO_PCI_COMMAND, VTIO_PCI_COMMAND_MASTER);
    cfg_w16(r4, exp + VTIO_PCI_EXP_DEVCTL, VTIO_PCI_EXP_DEVCTL_BCR_FLR);
    CHECK_EQ(cfg_r16(r4, VTIO_PCI_COMMAND), 0);
    CHECK_EQ(f.resets, 2);
    teardown();
}

/* ---- destroy */

static void t_destroy(void)
{
    struct fake f = { 0 };
    setup(false);
    struct vtio_pci_dev_info info = std_info(&f);
    plug(0, VTIO_PCI_DEVFN(3, 0), &info);
    plug(9, VTIO_PCI_DEVFN(31, 7), &info);
    std_place(RID, MMIO32_BASE, MMIO64_BASE, MMIO32_BASE + VTIO_MiB);
    CHECK(vtio_mem_is_mapped(mem, MMIO32_BASE, 1));

    vtio_pci_bus_destroy(bus);
    bus = NULL;
    CHECK(!vtio_mem_is_mapped(mem, ECAM_BASE, 1));
    CHECK(!vtio_mem_is_mapped(mem, MMIO32_BASE, 1));
    CHECK(!vtio_mem_is_mapped(mem, MMIO64_BASE, 1));
    CHECK(!vtio_mem_is_mapped(mem, MMIO32_BASE + VTIO_MiB, 1));
    /* Everything it held is free again. */
    bus = vtio_pci_bus_create(mem, 0, ECAM_BASE, 0, 255);
    CHECK(bus != NULL);
    CHECK_EQ(cfg_r32(RID, 0), 0xffffffff);
    vtio_pci_bus_destroy(NULL);
    teardown();
}

static const struct vtio_test tests[] = {
    { "ecam_ids", "ECAM reads through the CPU path return the ids; missing functions and bad accesses read all ones", t_ecam_ids },
    { "ecam_bus_range", "a segment for buses 2-3 maps bus 3 at ECAM offset 1 MiB and refuses other bus numbers", t_ecam_bus_range },
    { "bus_create_errors", "bus creation fails on an empty range, misaligned or overlapping ECAM, no address space", t_bus_create_errors },
    { "requester_ids", "the RID/DEVFN macros pack and unpack fields; rid, name, find and the DMA port agree", t_requester_ids },
    { "read_only_fields", "ids, header type, pointers, capability fields ignore writes; COMMAND.IO is 0; DEVCTL keeps only supported bits", t_read_only_fields },
    { "capability_walk", "the capability list walks PCIe (v2 endpoint, FLR), MSI (64-bit, maskable), MSI-X", t_capability_walk },
    { "bar_sizing", "all-ones writes read back size masks with 32/64-bit and prefetch type bits, including 8 GiB and 2 GiB BARs", t_bar_sizing },
    { "bar_decode", "BARs decode only with COMMAND.MEM and a programmed base, reach the device at BAR offsets, and move", t_bar_decode },
    { "bar_conflicts", "a BAR that overlaps another region does not decode, nothing crashes, and it decodes once free", t_bar_conflicts },
    { "bar_routing", "the bus serves the MSI-X table and PBA inside a BAR and forwards every other offset; no ops reads 0", t_bar_routing },
    { "create_errors", "every bad vtio_pci_dev_create argument gives its exact errno and plugs nothing", t_create_errors },
    { "flr", "initiating FLR (and vtio_pci_dev_reset) restores power-on config, unmaps BARs, stops DMA, calls reset", t_flr },
    { "destroy", "destroying the bus unmaps ECAM and every BAR so the ranges can be reused", t_destroy },
};

VTIO_TEST_MAIN(tests)
