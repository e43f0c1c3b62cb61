/*
 * The attack suite's registry and its scene: the attacks and
 * configurations in matrix order, and the machine every run boots.
 *
 * One run = one fresh machine (256 MiB, two CPUs, one DMA engine, the
 * rogue's eight-function card behind its root port, a VT-d unit with
 * ATTACK_FAULT_REGS fault recording registers), one boot with the configuration's command
 * line, the victim's and the rogue's drivers, one attack, and a teardown in
 * reverse.  Nothing is shared between runs, so a run cannot inherit another
 * attack's damage (an attack may well scribble over the IOMMU's tables).
 *
 * The protections a run has are read off the booted host, never taken from
 * the configuration's name: the rogue's default domain type, whether the
 * rogue is untrusted, whether interrupt remapping came up, and the ACS
 * control of the port above the rogue.  That is what makes a "claimed but
 * succeeded" result mean something: the host said it protects, and it did
 * not.
 */
#include <vtio/attack.h>
#include <vtio/dev/dma_engine.h>
#include <vtio/dev/rogue.h>
#include <vtio/device.h>
#include <vtio/host.h>
#include <vtio/iommu.h>
#include <vtio/machine.h>
#include <vtio/mem.h>
#include <vtio/page_alloc.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>
#include <vtio/vtd_regs.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "attack/attack_priv.h"
#include "util/error.h"

/* ------------------------------------------------------------------------
 * The registry.
 */

#define T  VTIO_PROT_TRANSLATE

static const struct {
    struct vtio_attack_info info;
    attack_fn run;
} attacks[] = {
    { { "read-outside", "read a host page that was never mapped for the rogue", T },
      attack_read_outside },
    { { "write-outside", "write a host page that was never mapped for the rogue", T },
      attack_write_outside },
    { { "write-readonly", "write through a TO_DEVICE (read-only) mapping", T },
      attack_write_readonly },
    { { "subpage-read", "read the rest of the page around a 256-byte mapping",
        T | VTIO_PROT_BOUNCE },
      attack_subpage_read },
    { { "iova-reuse", "keep reading an IOVA after its unmap returned", T | VTIO_PROT_STRICT },
      attack_iova_reuse },
    { { "dma-tables", "write the IOMMU's root and context tables", T }, attack_dma_tables },
    { { "dma-irt", "write the interrupt remapping table", T }, attack_dma_irt },
    { { "spoof-rid", "read the victim's buffer with the victim's requester id",
        VTIO_PROT_ACS },
      attack_spoof_rid },
    { { "other-function", "read the victim's buffer at the victim's DMA address", T },
      attack_other_function },
    { { "forge-compat", "send a compatibility-format MSI to the victim's vector",
        VTIO_PROT_IR },
      attack_forge_compat },
    { { "forge-sid", "replay the victim's own MSI message from the rogue", VTIO_PROT_IR },
      attack_forge_sid },
    { { "forge-vector", "send an interrupt nobody assigned", VTIO_PROT_IR },
      attack_forge_vector },
    { { "spoof-msi", "replay the victim's MSI message with the victim's requester id",
        VTIO_PROT_ACS },
      attack_spoof_msi },
    { { "bme-off", "DMA after the driver cleared Bus Master Enable and left", T },
      attack_bme_off },
    { { "fault-flood", "overflow the fault log, then read a host page", T },
      attack_fault_flood },
};

#undef T

#define NATTACKS (sizeof(attacks) / sizeof(attacks[0]))

static const struct {
    struct vtio_attack_config cfg;
    bool is_default;
} configs[] = {
    { { "none", "", true, "no IOMMU: every device reaches all memory" }, true },
    { { "pt", "iommu=pt", false, "VT-d on, identity (pass-through) domains" }, true },
    { { "strict", "iommu.strict=1", false, "DMA domains, every unmap invalidates" }, true },
    { { "lazy", "iommu.strict=0", false, "DMA-FQ domains, batched invalidation" }, true },
    { { "lazy-bounce", "iommu.strict=0 vtio.untrusted=01:00.0", false,
        "lazy, the rogue untrusted: strict, sub-page mappings bounced" }, true },
    { { "strict-noir", "iommu.strict=1 intremap=off", false,
        "strict without interrupt remapping" }, true },
    { { "pt-noir", "iommu=pt intremap=off", false, "pass-through without interrupt remapping" },
      false },
    { { "lazy-noir", "iommu.strict=0 intremap=off", false,
        "lazy without interrupt remapping" }, false },
};

#define NCONFIGS (sizeof(configs) / sizeof(configs[0]))

unsigned vtio_attack_count(void)
{
    return NATTACKS;
}

const struct vtio_attack_info *vtio_attack_get(unsigned i)
{
    return i < NATTACKS ? &attacks[i].info : NULL;
}

int vtio_attack_find(const char *name)
{
    for (unsigned i = 0; name && i < NATTACKS; i++)
        if (!strcmp(attacks[i].info.name, name))
            return (int)i;
    return -ENOENT;
}

unsigned vtio_attack_config_count(void)
{
    return NCONFIGS;
}

const struct vtio_attack_config *vtio_attack_config_get(unsigned i)
{
    return i < NCONFIGS ? &configs[i].cfg : NULL;
}

int vtio_attack_config_find(const char *name)
{
    for (unsigned i = 0; name && i < NCONFIGS; i++)
        if (!strcmp(configs[i].cfg.name, name))
            return (int)i;
    return -ENOENT;
}

bool vtio_attack_config_is_default(unsigned i)
{
    return i < NCONFIGS && configs[i].is_default;
}

const char *vtio_attack_result_name(enum vtio_attack_result r)
{
    switch (r) {
    case VTIO_ATTACK_NA:        return "n/a";
    case VTIO_ATTACK_BLOCKED:   return "blocked";
    case VTIO_ATTACK_SUCCEEDED: return "succeeded";
    case VTIO_ATTACK_WINDOW:    return "window";
    }
    return "?";
}

/* ------------------------------------------------------------------------
 * Helpers the attacks share.
 */

void attack_report(struct attack_scene *sc, enum vtio_attack_result r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sc->out->detail, sizeof(sc->out->detail), fmt, ap);
    va_end(ap);
    sc->out->result = r;
}

uint8_t attack_secret_byte(uint64_t seed, size_t i)
{
    uint64_t x = (seed + i) * 0x9e3779b97f4a7c15ull;
    return (uint8_t)((x >> 56) | 1);      /* never 0: a zeroed page holds no secret */
}

uint64_t attack_secret_page(struct attack_scene *sc, uint64_t seed)
{
    uint64_t pa;
    if (vtio_page_alloc(sc->h->pages, 0, 0, &pa) < 0)
        return 0;
    uint8_t *p = vtio_host_phys_to_virt(sc->h, pa);
    for (size_t i = 0; i < ATTACK_PAGE; i++)
        p[i] = attack_secret_byte(seed, i);
    return pa;
}

size_t attack_secret_bytes(const uint8_t *buf, size_t len, uint64_t seed, size_t off)
{
    size_t leaked = 0, run = 0;
    for (size_t i = 0; i < len; i++) {
        run = buf[i] == attack_secret_byte(seed, off + i) ? run + 1 : 0;
        if (run == 16)
            leaked += 16;
        else if (run > 16)
            leaked++;
    }
    return leaked;
}

bool attack_secret_intact(struct attack_scene *sc, uint64_t pa, uint64_t seed)
{
    const uint8_t *p = vtio_host_phys_to_virt(sc->h, pa);
    for (size_t i = 0; i < ATTACK_PAGE; i++)
        if (p[i] != attack_secret_byte(seed, i))
            return false;
    return true;
}

uint64_t attack_vtd_reg64(struct attack_scene *sc, uint32_t off)
{
    return vtio_mem_read64(sc->h->mem, VTIO_MACHINE_VTD_BASE + off);
}

uint32_t attack_vtd_reg32(struct attack_scene *sc, uint32_t off)
{
    return vtio_mem_read32(sc->h->mem, VTIO_MACHINE_VTD_BASE + off);
}

/* ------------------------------------------------------------------------
 * The scene.
 */

#define ROGUE_RID  VTIO_PCI_RID(VTIO_MACHINE_ROGUE_BUS, 0, 0)
#define VICTIM_RID VTIO_PCI_RID(0, VTIO_MACHINE_FIRST_DEV, 0)
#define PORT_RID   VTIO_PCI_RID(0, VTIO_MACHINE_ROOT_PORT_DEV, 0)

/* Host messages are expected (attacks provoke faults): keep them quiet,
 * but count the overflows of the fault log the host reports, as a reader
 * of the kernel log would. */
static void scene_log(void *opaque, int level, const char *msg)
{
    (void)level;
    struct attack_scene *sc = opaque;
    if (strstr(msg, "fault overflow"))
        atomic_fetch_add(&sc->fault_overflows, 1);
}

static void victim_irq(void *opaque, unsigned cpu, unsigned vector)
{
    (void)cpu, (void)vector;
    struct attack_scene *sc = opaque;
    atomic_fetch_add(&sc->victim_irqs, 1);
}

/* Whether ACS Source Validation is on in the port above the rogue. */
static bool acs_source_validation(struct attack_scene *sc)
{
    const struct vtio_pci_function *port = vtio_pci_find_rid(sc->h->pci, PORT_RID);
    int pos = port ? vtio_pci_find_ext_capability(port, VTIO_PCI_EXT_CAP_ID_ACS) : 0;
    return pos > 0 && (vtio_pci_cfg_read16(port, (uint16_t)(pos + VTIO_PCI_ACS_CTRL)) &
                       VTIO_PCI_ACS_SV);
}

/* What the booted host protects with, as far as the rogue is concerned. */
static unsigned protections(struct attack_scene *sc)
{
    unsigned have = 0;
    struct vtio_iommu_group *g = vtio_iommu_group_get(sc->rogue_dev);
    struct vtio_iommu_domain *d = g ? vtio_iommu_group_domain(g) : NULL;
    enum vtio_iommu_domain_type t = d ? vtio_iommu_domain_type(d) : VTIO_IOMMU_DOMAIN_IDENTITY;
    if (t == VTIO_IOMMU_DOMAIN_DMA || t == VTIO_IOMMU_DOMAIN_DMA_FQ)
        have |= VTIO_PROT_TRANSLATE;
    if (t == VTIO_IOMMU_DOMAIN_DMA)
        have |= VTIO_PROT_STRICT;
    if ((have & VTIO_PROT_TRANSLATE) && vtio_device_untrusted(sc->rogue_dev))
        have |= VTIO_PROT_BOUNCE;
    if (sc->h->irq_remap)
        have |= VTIO_PROT_IR;
    if (acs_source_validation(sc))
        have |= VTIO_PROT_ACS;
    return have;
}

/* The victim: a secret page mapped for its DMA, and one MSI-X vector. */
static int victim_setup(struct attack_scene *sc)
{
    int ret = vtio_device_bind(sc->victim_dev, "victim");
    if (ret < 0)
        return ret;
    vtio_pci_set_master(sc->victim_fn, true);
    if (!(sc->victim_pa = attack_secret_page(sc, SECRET_VICTIM)))
        return vtio_fail(-ENOMEM, "attack: no memory for the victim's page");
    sc->victim_iova = vtio_dma_map_page(sc->victim_dev, sc->victim_pa, ATTACK_PAGE,
                                        VTIO_DMA_BIDIRECTIONAL);
    if (vtio_dma_mapping_error(sc->victim_dev, sc->victim_iova))
        return vtio_fail(-ENOMEM, "attack: cannot map the victim's page");
    if ((ret = vtio_pci_msix_enable(sc->h, sc->victim_fn, 1)) < 0 ||
        (ret = vtio_pci_request_irq(sc->h, sc->victim_fn, 0, victim_irq, sc, 0)) < 0)
        return ret;
    return vtio_pci_irq_vector(sc->h, sc->victim_fn, 0, &sc->victim_cpu, &sc->victim_vector);
}

static void victim_teardown(struct attack_scene *sc)
{
    if (vtio_pci_irq_type(sc->h, sc->victim_fn, NULL) == VTIO_PCI_IRQ_MSIX)
        vtio_pci_msix_disable(sc->h, sc->victim_fn);
    if (sc->victim_iova && !vtio_dma_mapping_error(sc->victim_dev, sc->victim_iova))
        vtio_dma_unmap_page(sc->victim_dev, sc->victim_iova, ATTACK_PAGE,
                            VTIO_DMA_BIDIRECTIONAL);
    if (vtio_device_driver(sc->victim_dev))
        vtio_device_unbind(sc->victim_dev);
}

static int scene_boot(struct attack_scene *sc, const struct vtio_attack_config *cfg)
{
    struct vtio_machine_config mc = {
        .ram_size = 256ull << 20,
        .ncpus = 2,
        .dma_engines = 1,
        .dma_channels = 1,
        .no_iommu = cfg->no_iommu,
        .rogue = true,
        .vtd_caps.fault_regs = ATTACK_FAULT_REGS,
    };
    struct vtio_host_options o = { .log_fn = scene_log, .log_opaque = sc,
                                   .log_level = VTIO_LOG_WARN };
    int ret = vtio_host_options_parse(&o, cfg->cmdline ? cfg->cmdline : "");
    if (ret < 0 || (ret = vtio_machine_create(&mc, &sc->m)) < 0 ||
        (ret = vtio_host_boot_opts(sc->m, &o, &sc->h)) < 0)
        return ret;
    sc->rogue = sc->m->rogue;
    sc->rogue_dev = vtio_host_device_by_rid(sc->h, ROGUE_RID);
    sc->victim_dev = vtio_host_device_by_rid(sc->h, VICTIM_RID);
    if (!sc->rogue_dev || !sc->victim_dev)
        return vtio_fail(-ENODEV, "attack: the host found no %s",
                         sc->rogue_dev ? "victim at 00:03.0" : "rogue at 01:00.0");
    sc->rogue_fn = vtio_device_pci(sc->rogue_dev);
    sc->victim_fn = vtio_device_pci(sc->victim_dev);
    if ((ret = victim_setup(sc)) < 0)
        return ret;
    if ((ret = vtio_device_bind(sc->rogue_dev, "rogue")) < 0)
        return ret;
    vtio_pci_set_master(sc->rogue_fn, true);
    sc->have = protections(sc);
    return 0;
}

static void scene_teardown(struct attack_scene *sc)
{
    if (sc->h) {
        vtio_rogue_forge_rid(sc->rogue, ROGUE_RID);
        if (sc->rogue_dev && vtio_device_driver(sc->rogue_dev))
            vtio_device_unbind(sc->rogue_dev);
        if (sc->victim_dev)
            victim_teardown(sc);
        vtio_host_shutdown(sc->h);
    }
    if (sc->m)
        vtio_machine_destroy(sc->m);
}

int vtio_attack_run(const struct vtio_attack_config *cfg, unsigned attack,
                    struct vtio_attack_outcome *out)
{
    if (!cfg || !out || attack >= NATTACKS)
        return vtio_fail(-EINVAL, "attack: %s", !cfg ? "no configuration" : !out
                                                     ? "no outcome to fill"
                                                     : "no such attack");
    memset(out, 0, sizeof(*out));
    struct attack_scene sc = { .out = out };
    int ret = scene_boot(&sc, cfg);
    if (ret == 0) {
        out->have = sc.have;
        uint64_t faults0 = sc.h->iommu ? vtio_iommu_fault_sync(sc.h) : 0;
        attacks[attack].run(&sc);
        out->faults = sc.h->iommu ? vtio_iommu_fault_sync(sc.h) - faults0 : 0;
        unsigned needs = attacks[attack].info.needs;
        out->claimed = out->result != VTIO_ATTACK_NA && (sc.have & needs) == needs;
    }
    scene_teardown(&sc);
    return ret;
}
