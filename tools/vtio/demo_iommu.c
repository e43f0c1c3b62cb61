/*
 * vtio demo, second half: the same DMA engine behind the IOMMU.
 *
 * The host booted with its VT-d driver: every engine sits in an IOMMU group
 * with a DMA domain (lazy invalidation, Linux's x86 default), so the first
 * half's copies already went through the IOMMU with IOVAs from the DMA API.
 * This half shows the rest of what protection means and what it costs:
 *   identity  a second engine in an identity (pass-through) domain: its DMA
 *             addresses are physical addresses, nothing is translated;
 *   dma32     a third engine wired for 32-bit addresses reaches a buffer
 *             above 4 GiB through an IOVA below it;
 *   stray     the first engine reads past its mapping: the IOMMU refuses
 *             the access, the channel halts, the fault is logged with its
 *             decoded reason;
 *   costs     map+unmap of a page, a 64 KiB transfer with and without
 *             translation, and how long an unmapped IOVA stays usable in
 *             lazy mode.
 */
#include <vtio/dev/dma_engine.h>
#include <vtio/device.h>
#include <vtio/dma.h>
#include <vtio/drv/dma_engine.h>
#include <vtio/host.h>
#include <vtio/iommu.h>
#include <vtio/mem.h>
#include <vtio/page_alloc.h>
#include <vtio/pci_enum.h>
#include <vtio/vtd_regs.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "commands.h"

#define WAIT_NS 2000000000ull

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* What firmware and the unit's registers say: one line per unit. */
static void print_units(struct vtio_host *h)
{
    for (unsigned i = 0; i < h->fw.dmar.n_drhd; i++) {
        uint64_t base = h->fw.dmar.drhd[i].base;
        uint64_t cap = vtio_mem_read64(h->mem, base + VTD_CAP_REG);
        uint64_t ecap = vtio_mem_read64(h->mem, base + VTD_ECAP_REG);
        uint32_t gsts = vtio_mem_read32(h->mem, base + VTD_GSTS_REG);
        printf("iommu    dmar%u at %#llx: %llu-bit IOVAs, 4K%s%s pages, %s invalidation, "
               "%s; translation %s, interrupt remapping %s\n", i,
               (unsigned long long)base, (unsigned long long)VTD_CAP_MGAW(cap) + 1,
               VTD_CAP_SSLPS(cap) & 1 ? "/2M" : "", VTD_CAP_SSLPS(cap) & 2 ? "/1G" : "",
               ecap & VTD_ECAP_QI ? "queued" : "register",
               gsts & VTD_GSTS_RTPS ? "root table set" : "no root table",
               gsts & VTD_GSTS_TES ? "on" : "off", gsts & VTD_GSTS_IRES ? "on" : "off");
    }
}

static void print_groups(struct vtio_host *h)
{
    for (unsigned g = 0; g < vtio_iommu_group_count(h); g++) {
        struct vtio_iommu_group *grp = vtio_iommu_group_by_id(h, g);
        struct vtio_device *devs[8];
        unsigned n = vtio_iommu_group_devices(grp, devs, 8);
        printf("group    %u: ", g);
        for (unsigned i = 0; i < n && i < 8; i++)
            printf("%s ", vtio_device_name(devs[i]));
        printf("in a %s domain\n",
               vtio_iommu_domain_type_name(
                   vtio_iommu_domain_type(vtio_iommu_group_domain(grp))));
    }
}

/* Maps src and dst, copies size bytes with the engine, unmaps, and (if
 * src_dma is given) reports the DMA addresses used and checks the bytes.
 * @returns 0 if the copy (and the check) succeeded. */
static int mapped_copy(struct vtio_host *h, struct vtio_dmae *e, uint64_t src, uint64_t dst,
                       uint64_t size, vtio_dma_addr_t *src_dma, vtio_dma_addr_t *dst_dma)
{
    struct vtio_device *dev = vtio_host_device(h, vtio_dmae_pci(e));
    vtio_dma_addr_t s = vtio_dma_map_page(dev, src, size, VTIO_DMA_TO_DEVICE);
    vtio_dma_addr_t d = vtio_dma_map_page(dev, dst, size, VTIO_DMA_FROM_DEVICE);
    if (vtio_dma_mapping_error(dev, s) || vtio_dma_mapping_error(dev, d)) {
        fprintf(stderr, "demo: map: %s\n", vtio_last_error());
        return -1;
    }
    struct vtio_dmae_chan *ch = vtio_dmae_chan(e, 0);
    int64_t c = vtio_dmae_prep_copy(ch, d, s, size, 0);
    vtio_dmae_issue(ch);
    int rc = c < 0 ? -1 : vtio_dmae_wait(ch, c, WAIT_NS, NULL);
    vtio_dma_unmap_page(dev, d, size, VTIO_DMA_FROM_DEVICE);
    vtio_dma_unmap_page(dev, s, size, VTIO_DMA_TO_DEVICE);
    if (src_dma) {
        *src_dma = s, *dst_dma = d;
        if (rc == 0 && !vtio_tool_same_bytes(h->mem, src, dst, size))
            rc = -1;
    }
    return rc < 0 ? -1 : 0;
}

static int probe(struct vtio_host *h, unsigned index, unsigned dma_bits, struct vtio_dmae **e)
{
    const struct vtio_pci_function *fn =
        vtio_pci_find(h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, index);
    struct vtio_dmae_config cfg = { .channels = 1, .dma_bits = dma_bits };
    if (!fn || vtio_dmae_probe(h, fn, &cfg, e) < 0) {
        fprintf(stderr, "demo: engine %u: %s\n", index, vtio_last_error());
        return -1;
    }
    return 0;
}

/* A second engine, its group switched to identity before its driver binds. */
static int identity_job(struct vtio_host *h, uint64_t src, uint64_t dst, struct vtio_dmae **e)
{
    const struct vtio_pci_function *fn =
        vtio_pci_find(h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, 1);
    struct vtio_iommu_group *g = fn ? vtio_iommu_group_get(vtio_host_device(h, fn)) : NULL;
    if (!g || vtio_iommu_group_set_default_type(g, VTIO_IOMMU_DOMAIN_IDENTITY) < 0 ||
        probe(h, 1, 0, e) < 0) {
        fprintf(stderr, "demo: identity domain: %s\n", vtio_last_error());
        return -1;
    }
    vtio_dma_addr_t s, d;
    int rc = mapped_copy(h, *e, src, dst, VTIO_MiB, &s, &d);
    printf("identity %s in an identity domain: buffer %#llx is DMA address %#llx "
           "(untranslated); 1 MiB copy %s\n", vtio_device_name(vtio_host_device(h, fn)),
           (unsigned long long)src, (unsigned long long)s, rc ? "FAILED" : "verified");
    return rc || s != src ? -1 : 0;
}

/* A third engine with a 32-bit DMA mask and a buffer above 4 GiB. */
static int dma32_job(struct vtio_host *h, uint64_t dst, struct vtio_dmae **e)
{
    uint64_t high;
    if (probe(h, 2, 32, e) < 0 || vtio_page_alloc(h->pages, 8, 0, &high) < 0) {
        fprintf(stderr, "demo: dma32: %s\n", vtio_last_error());
        return -1;
    }
    vtio_tool_fill_random(h->mem, high, VTIO_MiB, 32);
    vtio_dma_addr_t s, d;
    int rc = mapped_copy(h, *e, high, dst, VTIO_MiB, &s, &d);
    printf("dma32    %s takes 32-bit addresses: buffer at %#llx (above 4 GiB) reached "
           "through IOVA %#llx; 1 MiB copy %s\n",
           vtio_device_name(vtio_host_device(h, vtio_dmae_pci(*e))),
           (unsigned long long)high, (unsigned long long)s, rc ? "FAILED" : "verified");
    vtio_page_free(h->pages, high, 8);
    return rc || s >= 0x100000000ull || high < 0x100000000ull ? -1 : 0;
}

/*
 * The first engine copies 8 KiB into a one-page destination.  IOVAs are
 * handed out top-down, so the page after the destination is the page
 * mapped just before it, read-only for the device (TO_DEVICE): the second
 * half of the write is refused, whatever lies behind that IOVA.
 */
static int stray_job(struct vtio_host *h, struct vtio_dmae *e, uint64_t src, uint64_t dst)
{
    struct vtio_device *dev = vtio_host_device(h, vtio_dmae_pci(e));
    struct vtio_dmae_chan *ch = vtio_dmae_chan(e, 0);
    vtio_dma_addr_t s = vtio_dma_map_page(dev, src, 2 * VTIO_PAGE_SIZE, VTIO_DMA_TO_DEVICE);
    vtio_dma_addr_t ro = vtio_dma_map_page(dev, src, VTIO_PAGE_SIZE, VTIO_DMA_TO_DEVICE);
    vtio_dma_addr_t d = vtio_dma_map_page(dev, dst, VTIO_PAGE_SIZE, VTIO_DMA_FROM_DEVICE);
    if (vtio_dma_mapping_error(dev, s) || vtio_dma_mapping_error(dev, ro) ||
        vtio_dma_mapping_error(dev, d))
        return -1;
    uint64_t before = vtio_iommu_fault_sync(h);
    int64_t c = vtio_dmae_prep_copy(ch, d, s, 2 * VTIO_PAGE_SIZE, 0);
    vtio_dmae_issue(ch);
    int rc = vtio_dmae_wait(ch, c, WAIT_NS, NULL);
    uint32_t err = vtio_dmae_error(ch);
    uint64_t after = vtio_iommu_fault_sync(h);
    struct vtio_iommu_fault f[VTIO_IOMMU_FAULT_LOG];
    unsigned n = vtio_iommu_fault_log(h, f, VTIO_IOMMU_FAULT_LOG);
    vtio_dmae_reset(ch);
    vtio_dma_unmap_page(dev, d, VTIO_PAGE_SIZE, VTIO_DMA_FROM_DEVICE);
    vtio_dma_unmap_page(dev, ro, VTIO_PAGE_SIZE, VTIO_DMA_TO_DEVICE);
    vtio_dma_unmap_page(dev, s, 2 * VTIO_PAGE_SIZE, VTIO_DMA_TO_DEVICE);
    printf("stray    %s writes 8 KiB into its 4 KiB destination at IOVA %#llx: %s "
           "(engine error %s)\n", vtio_device_name(dev), (unsigned long long)d,
           rc == 0 ? "NOT CAUGHT" : "the channel halted", vtio_dmae_status_name(err));
    if (after == before || n == 0) {
        printf("         no IOMMU fault was recorded\n");
        return -1;
    }
    const struct vtio_iommu_fault *last = &f[n - 1];
    printf("         IOMMU %s: [DMA %s] device %02x:%02x.%u, address %#llx, reason %#x: %s\n",
           last->unit, last->write ? "Write" : "Read", last->sid >> 8, (last->sid >> 3) & 0x1f,
           last->sid & 7, (unsigned long long)last->addr, last->reason, last->reason_str);
    return rc == 0 ? -1 : 0;
}

/* ns per map+unmap of one page. */
static double map_unmap_ns(struct vtio_device *dev, uint64_t page)
{
    const unsigned n = 20000;
    double t0 = now_s();
    for (unsigned i = 0; i < n; i++) {
        vtio_dma_addr_t a = vtio_dma_map_page(dev, page, VTIO_PAGE_SIZE, VTIO_DMA_TO_DEVICE);
        if (vtio_dma_mapping_error(dev, a))
            return -1;
        vtio_dma_unmap_page(dev, a, VTIO_PAGE_SIZE, VTIO_DMA_TO_DEVICE);
    }
    return (now_s() - t0) * 1e9 / n;
}

/* us per 64 KiB transfer, mapping and unmapping included. */
static double transfer_us(struct vtio_host *h, struct vtio_dmae *e, uint64_t src, uint64_t dst)
{
    const unsigned n = 500;
    double t0 = now_s();
    for (unsigned i = 0; i < n; i++)
        if (mapped_copy(h, e, src, dst, 64 * VTIO_KiB, NULL, NULL) < 0)
            return -1;
    return (now_s() - t0) * 1e6 / n;
}

/* After a lazy unmap: how long, and for how many copies, the IOVA works. */
static void stale_window(struct vtio_host *h, struct vtio_dmae *e, uint64_t src, uint64_t dst)
{
    struct vtio_device *dev = vtio_host_device(h, vtio_dmae_pci(e));
    struct vtio_dmae_chan *ch = vtio_dmae_chan(e, 0);
    vtio_dma_addr_t s = vtio_dma_map_page(dev, src, VTIO_PAGE_SIZE, VTIO_DMA_TO_DEVICE);
    vtio_dma_addr_t d = vtio_dma_map_page(dev, dst, VTIO_PAGE_SIZE, VTIO_DMA_FROM_DEVICE);
    int64_t c = vtio_dmae_prep_copy(ch, d, s, VTIO_PAGE_SIZE, 0);
    vtio_dmae_issue(ch);
    vtio_dmae_wait(ch, c, WAIT_NS, NULL);              /* the IOTLB now holds s */
    vtio_dma_unmap_page(dev, s, VTIO_PAGE_SIZE, VTIO_DMA_TO_DEVICE);
    double t0 = now_s();
    unsigned copies = 0;
    while (now_s() - t0 < 1.0) {
        c = vtio_dmae_prep_copy(ch, d, s, VTIO_PAGE_SIZE, 0);
        vtio_dmae_issue(ch);
        if (c < 0 || vtio_dmae_wait(ch, c, WAIT_NS, NULL) < 0)
            break;
        copies++;
    }
    double ms = (now_s() - t0) * 1e3;
    vtio_dmae_reset(ch);
    vtio_dma_unmap_page(dev, d, VTIO_PAGE_SIZE, VTIO_DMA_FROM_DEVICE);
    printf("         lazy invalidation: after unmap the device still used the stale IOVA "
           "%u times, for %.1f ms, until the flush queue's flush (strict mode: 0)\n",
           copies, ms);
}

static void costs(struct vtio_host *h, struct vtio_dmae *dma_dom, struct vtio_dmae *ident,
                  uint64_t src, uint64_t dst)
{
    struct vtio_device *d0 = vtio_host_device(h, vtio_dmae_pci(dma_dom));
    struct vtio_device *d1 = vtio_host_device(h, vtio_dmae_pci(ident));
    double m0 = map_unmap_ns(d0, src), m1 = map_unmap_ns(d1, src);
    double t0 = transfer_us(h, dma_dom, src, dst), t1 = transfer_us(h, ident, src, dst);
    printf("costs    map+unmap of a 4 KiB page: %.0f ns in the DMA domain, %.0f ns in the "
           "identity domain\n", m0, m1);
    printf("         64 KiB transfer with its map and unmap: %.1f us translated, %.1f us "
           "untranslated (protection costs %+.0f%%)\n", t0, t1, 100.0 * (t0 - t1) / t1);
    stale_window(h, dma_dom, src, dst);
}

int vtio_tool_demo_iommu(struct vtio_host *h, struct vtio_dmae *e0, uint64_t src, uint64_t dst)
{
    if (!vtio_iommu_present(h)) {
        printf("iommu    none: DMA addresses are physical addresses\n");
        return 0;
    }
    printf("\n");
    print_units(h);
    print_groups(h);
    struct vtio_dmae *e1 = NULL, *e2 = NULL;
    int rc = identity_job(h, src, dst, &e1);
    if (rc == 0)
        rc = dma32_job(h, dst, &e2);
    if (rc == 0)
        rc = stray_job(h, e0, src, dst);
    if (rc == 0)
        costs(h, e0, e1, src, dst);
    vtio_dmae_remove(e2);
    vtio_dmae_remove(e1);
    return rc;
}
