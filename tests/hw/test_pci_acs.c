/*
 * The PCIe root port and ACS Source Validation: the port's configuration
 * space as software sees it through ECAM, the bus dropping forged requester
 * ids from below a port with SV on (before any translator hears of them),
 * and the host turning ACS on at boot when, and only when, an IOMMU is used.
 */
#include <vtio/device.h>
#include <vtio/dma.h>
#include <vtio/host.h>
#include <vtio/iommu.h>
#include <vtio/machine.h>
#include <vtio/page_alloc.h>
#include <vtio/pci_enum.h>
#include <vtio/dev/rogue.h>

#include "test_pci_fixture.h"

#define PORT_RID   VTIO_PCI_RID(0, 0x1c, 0)
#define PORT_DEVFN VTIO_PCI_DEVFN(0x1c, 0)
#define EP_RID     VTIO_PCI_RID(1, 0, 0)
#define ENGINE_RID VTIO_PCI_RID(0, 3, 0)
#define BUF_PA     0x10000ull

/* ---- a translator that lets everything through and remembers who asked */

struct recorder {
    _Atomic unsigned translations, msis;
    _Atomic uint16_t last_rid;
};

static int rec_translate(void *opaque, uint16_t rid, uint64_t iova, uint64_t len,
                         enum vtio_dma_access access, uint64_t *pa, uint64_t *span)
{
    struct recorder *r = opaque;
    (void)access;
    atomic_fetch_add(&r->translations, 1);
    atomic_store(&r->last_rid, rid);
    *pa = iova;
    *span = len;
    return 0;
}

static int rec_msi(void *opaque, uint16_t rid, uint64_t addr, uint32_t data)
{
    struct recorder *r = opaque;
    (void)addr, (void)data;
    atomic_fetch_add(&r->msis, 1);
    atomic_store(&r->last_rid, rid);
    return -ENOSYS;     /* let it go on to the window */
}

static const struct vtio_dma_translator_ops rec_ops = { .translate = rec_translate,
                                                        .msi = rec_msi };

/* ---- helpers */

static struct vtio_pci_dev *root_port(uint8_t busno, uint8_t devfn, uint8_t sec, uint8_t sub)
{
    struct vtio_pci_dev *p = NULL;
    int rc = vtio_pci_root_port_create(bus, busno, devfn, sec, sub, &p);
    CHECKF(rc == 0, "root_port_create: %d %s", rc, vtio_last_error());
    return p;
}

/* The ACS capability's offset, found as software finds it. */
static unsigned find_acs(uint16_t rid)
{
    unsigned pos = VTIO_PCI_EXT_CAP_START;
    for (unsigned n = 0; pos && n < 64; n++) {
        uint32_t hdr = cfg_r32(rid, pos);
        if (VTIO_PCI_EXT_CAP_ID(hdr) == VTIO_PCI_EXT_CAP_ID_ACS)
            return pos;
        pos = VTIO_PCI_EXT_CAP_NEXT(hdr);
    }
    return 0;
}

static void set_acs(uint16_t port, uint16_t ctrl)
{
    unsigned pos = find_acs(port);
    CHECK(pos != 0);
    cfg_w16(port, pos + VTIO_PCI_ACS_CTRL, ctrl);
}

/* A plain function at rid with bus mastering on and the recorder as its
 * translator. */
static struct vtio_dma_port *endpoint(uint16_t rid, struct fake *f, struct recorder *rec,
                                      struct vtio_dma_translator *xl)
{
    struct vtio_pci_dev_info info = std_info(f);
    struct vtio_pci_dev *dev = plug((uint8_t)VTIO_PCI_RID_BUS(rid), (uint8_t)rid, &info);
    cfg_w16(rid, VTIO_PCI_COMMAND, VTIO_PCI_COMMAND_MASTER);
    *xl = (struct vtio_dma_translator){ .ops = &rec_ops, .opaque = rec };
    struct vtio_dma_port *port = vtio_pci_dev_dma_port(dev);
    vtio_dma_port_set_translator(port, xl);
    return port;
}

static uint64_t violations(struct vtio_dma_port *port)
{
    struct vtio_dma_port_stats st;
    vtio_dma_port_get_stats(port, &st);
    return st.source_violations;
}

/* ---- the port's configuration space */

static void t_port_config(void)
{
    setup(false);
    root_port(0, PORT_DEVFN, 1, 1);
    CHECK_EQ(cfg_r16(PORT_RID, VTIO_PCI_VENDOR_ID), VTIO_PCI_ROOT_PORT_VENDOR_ID);
    CHECK_EQ(cfg_r16(PORT_RID, VTIO_PCI_DEVICE_ID), VTIO_PCI_ROOT_PORT_DEVICE_ID);
    CHECK_EQ(cfg_r8(PORT_RID, VTIO_PCI_HEADER_TYPE), VTIO_PCI_HEADER_TYPE_BRIDGE);
    CHECK_EQ(cfg_r32(PORT_RID, VTIO_PCI_REVISION_ID) >> 8, VTIO_PCI_CLASS_BRIDGE_PCI);
    /* Firmware's numbering reads back, and software may renumber. */
    CHECK_EQ(cfg_r8(PORT_RID, VTIO_PCI_PRIMARY_BUS), 0);
    CHECK_EQ(cfg_r8(PORT_RID, VTIO_PCI_SECONDARY_BUS), 1);
    CHECK_EQ(cfg_r8(PORT_RID, VTIO_PCI_SUBORDINATE_BUS), 1);
    cfg_w8(PORT_RID, VTIO_PCI_SUBORDINATE_BUS, 4);
    CHECK_EQ(cfg_r8(PORT_RID, VTIO_PCI_SUBORDINATE_BUS), 4);
    /* No BARs: sizing reads back 0. */
    cfg_w32(PORT_RID, VTIO_PCI_BAR0, ~0u);
    CHECK_EQ(cfg_r32(PORT_RID, VTIO_PCI_BAR0), 0);
    /* Memory windows keep address bits [31:20] only; the prefetchable one
     * says it decodes 64 bits. */
    cfg_w16(PORT_RID, VTIO_PCI_MEMORY_BASE, 0xffff);
    CHECK_EQ(cfg_r16(PORT_RID, VTIO_PCI_MEMORY_BASE), 0xfff0);
    cfg_w16(PORT_RID, VTIO_PCI_PREF_MEMORY_LIMIT, 0xffff);
    CHECK_EQ(cfg_r16(PORT_RID, VTIO_PCI_PREF_MEMORY_LIMIT), 0xfff1);
    /* PCI Express capability: a Root Port, without FLR. */
    unsigned exp = cfg_r8(PORT_RID, VTIO_PCI_CAPABILITY_LIST);
    CHECK_EQ(cfg_r8(PORT_RID, exp), VTIO_PCI_CAP_ID_EXP);
    CHECK_EQ((cfg_r16(PORT_RID, exp + VTIO_PCI_EXP_FLAGS) & VTIO_PCI_EXP_FLAGS_TYPE) >> 4,
             VTIO_PCI_EXP_TYPE_ROOT_PORT);
    CHECK_EQ(cfg_r32(PORT_RID, exp + VTIO_PCI_EXP_DEVCAP) & VTIO_PCI_EXP_DEVCAP_FLR, 0);
    cfg_w16(PORT_RID, exp + VTIO_PCI_EXP_DEVCTL, VTIO_PCI_EXP_DEVCTL_BCR_FLR);
    CHECK_EQ(cfg_r8(PORT_RID, VTIO_PCI_SUBORDINATE_BUS), 4);    /* no reset happened */
    /* ACS: found by walking the extended list; offers SV TB RR CR UF; the
     * control keeps only what is offered, and starts off. */
    unsigned acs = find_acs(PORT_RID);
    CHECK_EQ(acs, VTIO_PCI_EXT_CAP_START);
    uint16_t offered = VTIO_PCI_ACS_SV | VTIO_PCI_ACS_TB | VTIO_PCI_ACS_RR |
                       VTIO_PCI_ACS_CR | VTIO_PCI_ACS_UF;
    CHECK_EQ(cfg_r16(PORT_RID, acs + VTIO_PCI_ACS_CAP), offered);
    CHECK_EQ(cfg_r16(PORT_RID, acs + VTIO_PCI_ACS_CTRL), 0);
    cfg_w16(PORT_RID, acs + VTIO_PCI_ACS_CTRL, 0xffff);
    CHECK_EQ(cfg_r16(PORT_RID, acs + VTIO_PCI_ACS_CAP), offered);
    CHECK_EQ(cfg_r16(PORT_RID, acs + VTIO_PCI_ACS_CTRL), offered);
    /* An endpoint has no extended capabilities. */
    struct fake f = { 0 };
    struct vtio_pci_dev_info info = std_info(&f);
    plug(0, VTIO_PCI_DEVFN(3, 0), &info);
    CHECK_EQ(cfg_r32(ENGINE_RID, VTIO_PCI_EXT_CAP_START), 0);
    teardown();
}

static void t_port_create_errors(void)
{
    setup(false);
    struct vtio_pci_dev *p = NULL;
    CHECK_ERR(vtio_pci_root_port_create(NULL, 0, PORT_DEVFN, 1, 1, &p), -EINVAL);
    CHECK_ERR(vtio_pci_root_port_create(bus, 0, PORT_DEVFN, 1, 1, NULL), -EINVAL);
    CHECK_ERR(vtio_pci_root_port_create(bus, 2, PORT_DEVFN, 2, 3, &p), -EINVAL);  /* sec = own */
    CHECK_ERR(vtio_pci_root_port_create(bus, 0, PORT_DEVFN, 3, 2, &p), -EINVAL);  /* sec > sub */
    CHECK(vtio_pci_bus_find(bus, PORT_RID) == NULL);
    root_port(0, PORT_DEVFN, 1, 1);
    CHECK_ERR(vtio_pci_root_port_create(bus, 0, PORT_DEVFN, 2, 2, &p), -EEXIST);
    CHECK_EQ(cfg_r8(PORT_RID, VTIO_PCI_SECONDARY_BUS), 1);
    teardown();

    /* A segment that ends at bus 1 has no bus 2 to put below a port. */
    mem = vtio_mem_create();
    CHECK(mem != NULL);
    bus = vtio_pci_bus_create(mem, 0, ECAM_BASE, 0, 1);
    CHECK(bus != NULL);
    CHECK_ERR(vtio_pci_root_port_create(bus, 0, PORT_DEVFN, 1, 2, &p), -EINVAL);
    teardown();
}

/* ---- Source Validation */

static void t_forged_sv_off_passes(void)
{
    struct fake f = { 0 };
    struct recorder rec = { 0 };
    struct vtio_dma_translator xl;
    setup(false);
    root_port(0, PORT_DEVFN, 1, 1);
    struct vtio_dma_port *port = endpoint(EP_RID, &f, &rec, &xl);
    vtio_dma_port_forge_rid(port, ENGINE_RID);
    uint8_t buf[16] = { 1, 2, 3 };
    CHECK_OK(vtio_dma_write(port, BUF_PA, buf, sizeof(buf)));
    CHECK_EQ(atomic_load(&rec.last_rid), ENGINE_RID);
    CHECK_EQ(violations(port), 0);
    teardown();
}

static void t_forged_sv_on_dropped(void)
{
    struct fake f = { 0 };
    struct recorder rec = { 0 };
    struct vtio_dma_translator xl;
    setup(true);
    root_port(0, PORT_DEVFN, 1, 1);
    struct vtio_dma_port *port = endpoint(EP_RID, &f, &rec, &xl);
    set_acs(PORT_RID, VTIO_PCI_ACS_ISOLATED);
    vtio_dma_port_forge_rid(port, ENGINE_RID);

    uint8_t before[16], buf[16];
    vtio_mem_read(mem, BUF_PA, before, sizeof(before));
    memset(buf, 0x5a, sizeof(buf));
    CHECK_ERR(vtio_dma_write(port, BUF_PA, buf, sizeof(buf)), -EPERM);
    CHECK_ERR(vtio_dma_read(port, BUF_PA, buf, sizeof(buf)), -EPERM);
    CHECK_ERR(vtio_dma_msi(port, MSG_ADDR(7), 7), -EPERM);
    CHECK_ERR(vtio_dma_check(port, BUF_PA, 16, VTIO_DMA_READ), -EPERM);
    CHECK_EQ(violations(port), 4);
    CHECK_EQ(atomic_load(&rec.translations), 0);     /* the IOMMU never hears of it */
    CHECK_EQ(atomic_load(&rec.msis), 0);
    CHECK_EQ(atomic_load(&cap->count), 0);
    vtio_mem_read(mem, BUF_PA, buf, sizeof(buf));
    CHECK_MEM_EQ(buf, before, sizeof(buf));

    /* A requester id from below the port passes: SV checks bus numbers. */
    vtio_dma_port_forge_rid(port, VTIO_PCI_RID(1, 0, 1));
    CHECK_OK(vtio_dma_read(port, BUF_PA, buf, sizeof(buf)));
    CHECK_EQ(atomic_load(&rec.last_rid), VTIO_PCI_RID(1, 0, 1));
    /* Turning SV off again lets the forged id through. */
    vtio_dma_port_forge_rid(port, ENGINE_RID);
    set_acs(PORT_RID, 0);
    CHECK_OK(vtio_dma_read(port, BUF_PA, buf, sizeof(buf)));
    CHECK_EQ(atomic_load(&rec.last_rid), ENGINE_RID);
    CHECK_EQ(violations(port), 4);
    teardown();
}

static void t_honest_unaffected(void)
{
    struct fake f = { 0 };
    struct recorder rec = { 0 };
    struct vtio_dma_translator xl;
    setup(true);
    root_port(0, PORT_DEVFN, 1, 1);
    struct vtio_dma_port *port = endpoint(EP_RID, &f, &rec, &xl);
    set_acs(PORT_RID, VTIO_PCI_ACS_ISOLATED);
    uint8_t buf[16] = { 9 };
    CHECK_OK(vtio_dma_write(port, BUF_PA, buf, sizeof(buf)));
    CHECK_OK(vtio_dma_read(port, BUF_PA, buf, sizeof(buf)));
    CHECK_OK(vtio_dma_msi(port, MSG_ADDR(3), 3));
    CHECK_EQ(atomic_load(&rec.last_rid), EP_RID);
    CHECK_EQ(atomic_load(&cap->per_tag[3]), 1);
    /* Forging one's own id is no forgery. */
    vtio_dma_port_forge_rid(port, EP_RID);
    CHECK_OK(vtio_dma_read(port, BUF_PA, buf, sizeof(buf)));
    CHECK_EQ(violations(port), 0);
    teardown();
}

static void t_bus0_forging_passes(void)
{
    struct fake f = { 0 };
    struct recorder rec = { 0 };
    struct vtio_dma_translator xl;
    setup(false);
    root_port(0, PORT_DEVFN, 1, 1);
    set_acs(PORT_RID, VTIO_PCI_ACS_ISOLATED);
    struct vtio_dma_port *port = endpoint(ENGINE_RID, &f, &rec, &xl);
    vtio_dma_port_forge_rid(port, EP_RID);      /* no port above bus 0 checks */
    uint8_t buf[8];
    CHECK_OK(vtio_dma_read(port, BUF_PA, buf, sizeof(buf)));
    CHECK_EQ(atomic_load(&rec.last_rid), EP_RID);
    CHECK_EQ(violations(port), 0);
    teardown();
}

/* Ports nest: every port on the way up with SV on checks the id. */
static void t_nested_ports(void)
{
    struct fake f = { 0 };
    struct recorder rec = { 0 };
    struct vtio_dma_translator xl;
    const uint16_t inner = VTIO_PCI_RID(1, 0, 0), ep = VTIO_PCI_RID(2, 0, 0);
    setup(false);
    root_port(0, PORT_DEVFN, 1, 5);
    root_port(1, 0, 2, 2);
    struct vtio_dma_port *port = endpoint(ep, &f, &rec, &xl);
    uint8_t buf[8];

    /* SV on the outer port only: ids from buses 1-5 pass, others do not. */
    set_acs(PORT_RID, VTIO_PCI_ACS_SV);
    vtio_dma_port_forge_rid(port, VTIO_PCI_RID(3, 0, 0));
    CHECK_OK(vtio_dma_read(port, BUF_PA, buf, sizeof(buf)));
    vtio_dma_port_forge_rid(port, ENGINE_RID);
    CHECK_ERR(vtio_dma_read(port, BUF_PA, buf, sizeof(buf)), -EPERM);

    /* SV on the inner port only: only bus 2 passes. */
    set_acs(PORT_RID, 0);
    set_acs(inner, VTIO_PCI_ACS_SV);
    vtio_dma_port_forge_rid(port, VTIO_PCI_RID(3, 0, 0));
    CHECK_ERR(vtio_dma_read(port, BUF_PA, buf, sizeof(buf)), -EPERM);
    vtio_dma_port_forge_rid(port, VTIO_PCI_RID(2, 1, 0));
    CHECK_OK(vtio_dma_read(port, BUF_PA, buf, sizeof(buf)));
    CHECK_EQ(violations(port), 2);
    teardown();
}

/* ---- the host at boot */

static void quiet(void *opaque, int level, const char *msg)
{
    (void)opaque, (void)level, (void)msg;
}

struct booted {
    struct vtio_machine *m;
    struct vtio_host *h;
};

static struct booted boot_rogue(bool no_iommu, bool iommu_off)
{
    struct vtio_machine_config mc = { .ram_size = 256 * VTIO_MiB, .no_iommu = no_iommu,
                                      .rogue = true };
    struct booted b = { 0 };
    CHECK_OK(vtio_machine_create(&mc, &b.m));
    CHECK(b.m->root_port != NULL && b.m->rogue != NULL);
    struct vtio_host_options o = { .iommu_off = iommu_off, .log_fn = quiet };
    int rc = vtio_host_boot_opts(b.m, &o, &b.h);
    CHECKF(rc == 0, "boot: %d %s", rc, vtio_last_error());
    return b;
}

static void shut(struct booted *b)
{
    vtio_host_shutdown(b->h);
    vtio_machine_destroy(b->m);
}

static uint16_t port_acs_ctrl(struct vtio_host *h)
{
    const struct vtio_pci_function *port = vtio_pci_find_rid(h->pci, PORT_RID);
    CHECK(port != NULL);
    uint16_t pos = vtio_pci_find_ext_capability(port, VTIO_PCI_EXT_CAP_ID_ACS);
    CHECK(pos != 0);
    return vtio_pci_cfg_read16(port, (uint16_t)(pos + VTIO_PCI_ACS_CTRL));
}

static unsigned group_of(struct vtio_host *h, uint16_t rid)
{
    struct vtio_device *d = vtio_host_device_by_rid(h, rid);
    CHECK(d != NULL);
    struct vtio_iommu_group *g = vtio_iommu_group_get(d);
    CHECK(g != NULL);
    return vtio_iommu_group_id(g);
}

static void t_host_enables_acs(void)
{
    struct booted b = boot_rogue(false, false);
    /* Enumeration found the port and the rogue behind it, BARs placed. */
    const struct vtio_pci_function *port = vtio_pci_find_rid(b.h->pci, PORT_RID);
    const struct vtio_pci_function *rogue = vtio_pci_find_rid(b.h->pci, EP_RID);
    CHECK(port != NULL && rogue != NULL);
    CHECK_EQ(port->header_type & 0x7f, VTIO_PCI_HEADER_TYPE_BRIDGE);
    CHECK_EQ(rogue->vendor_id, VTIO_ROGUE_VENDOR_ID);
    CHECK_EQ(rogue->device_id, VTIO_ROGUE_DEVICE_ID);
    CHECK_EQ(rogue->bar[VTIO_ROGUE_BAR_REGS].size, VTIO_ROGUE_REGS_SIZE);
    CHECK(rogue->bar[VTIO_ROGUE_BAR_REGS].base >= VTIO_MACHINE_MMIO32_BASE);
    CHECK_EQ(rogue->msix_table_size, VTIO_ROGUE_VECTORS);
    /* ACS on the port as Linux sets it; TB left alone. */
    CHECK_EQ(port_acs_ctrl(b.h), VTIO_PCI_ACS_ISOLATED);
    /* Groups: the port alone, the rogue card's eight functions (no ACS of
     * their own, so they may reach each other), the engine alone. */
    unsigned gp = group_of(b.h, PORT_RID), gr = group_of(b.h, EP_RID);
    unsigned ge = group_of(b.h, ENGINE_RID);
    CHECK(gp != gr && gr != ge && gp != ge);
    struct vtio_device *rd = vtio_host_device_by_rid(b.h, EP_RID);
    CHECK_EQ(vtio_iommu_group_devices(vtio_iommu_group_get(rd), NULL, 0), VTIO_ROGUE_FUNCTIONS);
    /* And the fabric now drops the rogue's forgeries of the engine's id. */
    struct vtio_dma_port *rp = vtio_pci_dev_dma_port(vtio_rogue_pci(b.m->rogue));
    vtio_pci_set_master(rogue, true);
    vtio_rogue_forge_rid(b.m->rogue, ENGINE_RID);
    uint8_t buf[8];
    CHECK_ERR(vtio_rogue_read(b.m->rogue, BUF_PA, buf, sizeof(buf)), -EPERM);
    CHECK_EQ(violations(rp), 1);
    shut(&b);
}

static void t_host_no_iommu_no_acs(void)
{
    struct booted b = boot_rogue(false, true);      /* intel_iommu=off */
    CHECK_EQ(port_acs_ctrl(b.h), 0);
    shut(&b);
    b = boot_rogue(true, false);                    /* no VT-d unit at all */
    CHECK_EQ(port_acs_ctrl(b.h), 0);
    shut(&b);
}

/* The card's functions share a group (no ACS of their own), so they share
 * its domain: every function's own requester id must find it, not just the
 * first's (regression: only the group's first id had a context entry). */
static void t_group_functions_share_domain(void)
{
    struct booted b = boot_rogue(false, false);
    struct vtio_device *d0 = vtio_host_device_by_rid(b.h, EP_RID);
    CHECK_OK(vtio_device_bind(d0, "rogue"));
    uint64_t pa;
    CHECK_OK(vtio_page_alloc(b.h->pages, 0, VTIO_PAGE_ZERO, &pa));
    memset(vtio_host_phys_to_virt(b.h, pa), 0x5a, 64);
    vtio_dma_addr_t iova = vtio_dma_map_page(d0, pa, 4096, VTIO_DMA_TO_DEVICE);
    CHECK(!vtio_dma_mapping_error(d0, iova));
    for (unsigned fn = 0; fn < VTIO_ROGUE_FUNCTIONS; fn++) {
        struct vtio_dma_port *p = vtio_pci_dev_dma_port(vtio_rogue_function(b.m->rogue, fn));
        vtio_dma_port_ignore_bme(p, true);
        uint8_t buf[64];
        CHECKF(vtio_dma_read(p, iova, buf, sizeof(buf)) == 0, "function %u", fn);
        CHECK_EQ(buf[63], 0x5a);
        vtio_dma_port_ignore_bme(p, false);
    }
    vtio_dma_unmap_page(d0, iova, 4096, VTIO_DMA_TO_DEVICE);
    vtio_device_unbind(d0);
    shut(&b);
}

static const struct vtio_test tests[] = {
    { "port_config", "the root port has a type 1 header, bridge class, RW bus numbers and "
      "windows, a Root Port PCIe capability without FLR and an ACS capability found by "
      "walking the extended list whose control keeps only the offered bits", t_port_config },
    { "port_create_errors", "bad root port arguments give -EINVAL/-EEXIST and plug nothing",
      t_port_create_errors },
    { "forged_sv_off", "a forged requester id from below a port without SV reaches the "
      "translator", t_forged_sv_off_passes },
    { "forged_sv_on", "with SV on, a forged id from outside the port's buses is dropped "
      "(-EPERM, counted, never translated, nothing written, no interrupt); ids from "
      "below pass", t_forged_sv_on_dropped },
    { "honest_unaffected", "SV does not touch a function's own requester id",
      t_honest_unaffected },
    { "bus0_forging", "a function on bus 0 has no port above it, so its forged id passes",
      t_bus0_forging_passes },
    { "nested_ports", "every port on the way up with SV on checks the forged id",
      t_nested_ports },
    { "host_enables_acs", "booting with the IOMMU finds 00:1c.0 and 01:00.0, sets SV RR CR UF "
      "on the port, puts the rogue in a group of its own and the fabric drops its forgeries",
      t_host_enables_acs },
    { "host_no_iommu", "with intel_iommu=off or no VT-d unit ACS stays off",
      t_host_no_iommu_no_acs },
    { "group_shares_domain", "every function of the card reaches a mapping made for "
      "function 0 in their shared domain", t_group_functions_share_domain },
};

VTIO_TEST_MAIN(tests)
