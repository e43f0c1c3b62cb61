/*
 * Tests of host boot and its small parts (include/vtio/host.h,
 * include/vtio/device.h): the kernel command-line parser, option checks,
 * device objects (names, lookups, binding, DMA defaults), the direct map,
 * the log, and a boot that fails half-way cleaning up after itself.
 */
#include <vtio/device.h>
#include <vtio/dma.h>
#include <vtio/host.h>
#include <vtio/iommu.h>
#include <vtio/machine.h>
#include <vtio/mem.h>
#include <vtio/page_alloc.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"
#include "host/device_priv.h"

#define ENGINE_RID(i) VTIO_PCI_RID(0, VTIO_MACHINE_FIRST_DEV + (i), 0)

/* ---- a log sink */

static char last_msg[512];
static int last_level;
static unsigned n_msgs;

static void capture(void *opaque, int level, const char *msg)
{
    (void)opaque;
    snprintf(last_msg, sizeof(last_msg), "%s", msg);
    last_level = level;
    n_msgs++;
}

static struct vtio_machine *mk_machine(unsigned engines)
{
    struct vtio_machine_config cfg = { .ram_size = 128 * VTIO_MiB, .dma_engines = engines,
                                       .dma_channels = 1 };
    struct vtio_machine *m = NULL;
    CHECK_OK(vtio_machine_create(&cfg, &m));
    return m;
}

/* ---- options */

static struct vtio_host_options parsed(const char *line)
{
    struct vtio_host_options o = { 0 };
    int rc = vtio_host_options_parse(&o, line);
    CHECKF(rc == 0, "'%s': %d %s", line, rc, vtio_last_error());
    return o;
}

static void t_options_words(void)
{
    CHECK(parsed("intel_iommu=off").iommu_off);
    CHECK(!parsed("intel_iommu=off intel_iommu=on").iommu_off);
    CHECK(parsed("intel_iommu=sm_on").scalable_mode);
    CHECK(!parsed("intel_iommu=sm_on intel_iommu=sm_off").scalable_mode);
    struct vtio_host_options o = parsed("intel_iommu=on,sm_on");
    CHECK(!o.iommu_off && o.scalable_mode);

    CHECK_EQ(parsed("").iommu_mode, VTIO_HOST_IOMMU_LAZY);
    CHECK_EQ(parsed("iommu=pt").iommu_mode, VTIO_HOST_IOMMU_PASSTHROUGH);
    CHECK_EQ(parsed("iommu.passthrough=1").iommu_mode, VTIO_HOST_IOMMU_PASSTHROUGH);
    CHECK_EQ(parsed("iommu=pt iommu.passthrough=0").iommu_mode, VTIO_HOST_IOMMU_LAZY);
    CHECK_EQ(parsed("iommu.strict=1").iommu_mode, VTIO_HOST_IOMMU_STRICT);
    CHECK_EQ(parsed("iommu.strict=1 iommu.strict=0").iommu_mode, VTIO_HOST_IOMMU_LAZY);
    /* passthrough wins while on; strictness survives it (as in Linux) */
    CHECK_EQ(parsed("iommu.strict=1 iommu=pt").iommu_mode, VTIO_HOST_IOMMU_PASSTHROUGH);
    CHECK_EQ(parsed("iommu.strict=1 iommu=pt iommu=nopt").iommu_mode, VTIO_HOST_IOMMU_STRICT);

    CHECK(parsed("iommu.forcedac=1").forcedac);
    CHECK(!parsed("iommu.forcedac=1 iommu.forcedac=0").forcedac);
    CHECK(parsed("intremap=off").no_intr_remap);
    CHECK(!parsed("intremap=off intremap=on").no_intr_remap);
    CHECK(parsed("dma_debug=on").dma_debug);
    CHECK(!parsed("dma_debug=on dma_debug=off").dma_debug);

    CHECK_EQ(parsed("swiotlb=4096").swiotlb_bytes, 4096);
    CHECK_EQ(parsed("swiotlb=64K").swiotlb_bytes, 64 * VTIO_KiB);
    CHECK_EQ(parsed("swiotlb=32M").swiotlb_bytes, 32 * VTIO_MiB);
    CHECK_EQ(parsed("swiotlb=2g").swiotlb_bytes, 2 * VTIO_GiB);

    o = parsed("vtio.untrusted=00:03.0,0000:01:1f.7,ff:00.1");
    CHECK_EQ(o.n_untrusted, 3);
    CHECK_EQ(o.untrusted_rid[0], VTIO_PCI_RID(0, 3, 0));
    CHECK_EQ(o.untrusted_rid[1], VTIO_PCI_RID(1, 0x1f, 7));
    CHECK_EQ(o.untrusted_rid[2], VTIO_PCI_RID(0xff, 0, 1));
    CHECK_EQ(parsed("vtio.untrusted=00:03.0,00:04.0 vtio.untrusted=00:05.0").n_untrusted, 1);

    CHECK_EQ(parsed("loglevel=7").log_level, 7);
    CHECK_EQ(parsed("loglevel=3").log_level, 3);

    /* blanks of any kind between words; what the line does not name stays */
    o = (struct vtio_host_options){ .fq_size = 64, .dma_debug = true,
                                    .iommu_mode = VTIO_HOST_IOMMU_STRICT };
    CHECK_OK(vtio_host_options_parse(&o, "  intremap=off\t\nswiotlb=1M  "));
    CHECK(o.no_intr_remap);
    CHECK_EQ(o.swiotlb_bytes, VTIO_MiB);
    CHECK_EQ(o.fq_size, 64);
    CHECK(o.dma_debug);
    CHECK_EQ(o.iommu_mode, VTIO_HOST_IOMMU_STRICT);
}

static void t_options_errors(void)
{
    static const char *const bad[] = {
        "intel_iommu=maybe", "intel_iommu=", "intel_iommu=on,", "iommu=off", "iommu",
        "iommu.passthrough=2", "iommu.strict=yes", "iommu.forcedac=", "intremap=0",
        "dma_debug=1", "swiotlb=", "swiotlb=0", "swiotlb=12T", "swiotlb=K", "swiotlb=-1",
        "swiotlb=99999999999999999999", "swiotlb=17179869184G",
        "vtio.untrusted=", "vtio.untrusted=00:20.0", "vtio.untrusted=00:03.8",
        "vtio.untrusted=100:00.0", "vtio.untrusted=0001:00:03.0", "vtio.untrusted=00.03.0",
        "vtio.untrusted=00:03", "vtio.untrusted=00:03.0,,00:04.0",
        "vtio.untrusted=0:1.0,0:2.0,0:3.0,0:4.0,0:5.0,0:6.0,0:7.0,0:8.0,0:9.0,0:a.0,"
        "0:b.0,0:c.0,0:d.0,0:e.0,0:f.0,0:10.0,0:11.0",
        "loglevel=8", "loglevel=", "loglevel=x", "loglevel=10",
        "quiet", "iommu.strict=1 nosuchword=1",
    };
    struct vtio_host_options ref = { .iommu_mode = VTIO_HOST_IOMMU_PASSTHROUGH, .fq_size = 32,
                                     .n_untrusted = 1, .untrusted_rid = { 0x18 },
                                     .log_level = 6 };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct vtio_host_options o = ref;
        int rc = vtio_host_options_parse(&o, bad[i]);
        CHECKF(rc == -EINVAL, "'%s' returned %d", bad[i], rc);
        CHECKF(memcmp(&o, &ref, sizeof(o)) == 0, "'%s' changed the options", bad[i]);
    }
    /* the message names the word */
    struct vtio_host_options o = ref;
    CHECK_ERR(vtio_host_options_parse(&o, "intremap=off frobnicate=3"), -EINVAL);
    CHECKF(strstr(vtio_last_error(), "frobnicate") != NULL, "%s", vtio_last_error());
    CHECK_ERR(vtio_host_options_parse(&o, "iommu.strict=7"), -EINVAL);
    CHECKF(strstr(vtio_last_error(), "iommu.strict=7") != NULL, "%s", vtio_last_error());
    CHECK_ERR(vtio_host_options_parse(NULL, ""), -EINVAL);
    CHECK_ERR(vtio_host_options_parse(&o, NULL), -EINVAL);
    CHECK(memcmp(&o, &ref, sizeof(o)) == 0);
}

static void t_boot_bad_options(void)
{
    struct vtio_machine *m = mk_machine(1);
    struct vtio_host *h = NULL;
    struct vtio_host_options bad[] = {
        { .iommu_mode = (enum vtio_host_iommu_mode)3 },
        { .n_untrusted = VTIO_HOST_MAX_UNTRUSTED + 1 },
        { .log_level = -1 },
        { .log_level = 8 },
        { .fq_size = 100 },
        { .fq_size = 1u << 20 },
        { .fq_timeout_ms = 3600000 },
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECKF(vtio_host_boot_opts(m, &bad[i], &h) == -EINVAL, "case %u booted", i);
        CHECK(h == NULL);
    }
    CHECK_ERR(vtio_host_boot_opts(NULL, NULL, &h), -EINVAL);
    CHECK_ERR(vtio_host_boot_opts(m, NULL, NULL), -EINVAL);
    /* and the machine still boots afterwards */
    CHECK_OK(vtio_host_boot(m, &h));
    vtio_host_shutdown(h);
    vtio_machine_destroy(m);
}

static void t_boot_failure_cleans_up(void)
{
    /* BARs that do not fit the windows fail enumeration after the
     * allocator and direct map were made; ASan checks they were freed */
    struct vtio_machine *m = mk_machine(2);
    m->fw.mmio32_size = 4096;
    m->fw.mmio64_size = 4096;
    struct vtio_host *h = NULL;
    CHECK_ERR(vtio_host_boot(m, &h), -ENOSPC);
    CHECK(h == NULL);
    vtio_machine_destroy(m);
}

static void t_boot_no_iommu(void)
{
    struct vtio_machine *m = mk_machine(2);
    struct vtio_host *h;
    struct vtio_host_options o = { .iommu_off = true };
    CHECK_OK(vtio_host_boot_opts(m, &o, &h));
    CHECK(!vtio_iommu_present(h));
    CHECK(h->iommu == NULL);
    CHECK(vtio_iommu_group_get(vtio_host_device_by_rid(h, ENGINE_RID(0))) == NULL);
    CHECK(h->pages && h->dmap && h->pci);
    /* the low 1 MiB is kept out of the allocator */
    struct vtio_page_alloc_stats st;
    vtio_page_alloc_get_stats(h->pages, &st);
    CHECK_GE(st.reserved_bytes, VTIO_MiB);
    vtio_host_shutdown(h);
    vtio_machine_destroy(m);

    struct vtio_machine_config cfg = { .ram_size = 64 * VTIO_MiB, .no_iommu = true };
    CHECK_OK(vtio_machine_create(&cfg, &m));
    CHECK_OK(vtio_host_boot(m, &h));
    CHECK(!vtio_iommu_present(h));
    vtio_host_shutdown(h);
    vtio_machine_destroy(m);
}

/* ---- devices */

static void t_devices(void)
{
    struct vtio_machine *m = mk_machine(3);
    struct vtio_host *h;
    struct vtio_host_options o = { .iommu_off = true, .n_untrusted = 2,
                                   .untrusted_rid = { ENGINE_RID(1), VTIO_PCI_RID(0, 0x1f, 0) },
                                   .log_fn = capture };
    n_msgs = 0;
    CHECK_OK(vtio_host_boot_opts(m, &o, &h));
    /* an untrusted id that names nothing is reported */
    CHECK_EQ(n_msgs, 1);
    CHECK(strstr(last_msg, "00:1f.0") != NULL);
    CHECK_EQ(h->n_devices, 3);
    for (unsigned i = 0; i < 3; i++) {
        const struct vtio_pci_function *fn = vtio_pci_get(h->pci, i);
        struct vtio_device *dev = vtio_host_device(h, fn);
        CHECK(dev != NULL);
        CHECK(dev == h->devices[i]);
        CHECK(vtio_host_device_by_rid(h, ENGINE_RID(i)) == dev);
        CHECK(vtio_device_pci(dev) == fn);
        CHECK(vtio_device_host(dev) == h);
        CHECK_EQ(vtio_device_rid(dev), ENGINE_RID(i));
        char want[16];
        snprintf(want, sizeof(want), "0000:00:%02x.0", VTIO_MACHINE_FIRST_DEV + i);
        CHECK(strcmp(vtio_device_name(dev), want) == 0);
        CHECK_EQ(vtio_device_untrusted(dev), i == 1);
        /* Linux's PCI defaults */
        CHECK_EQ(atomic_load(&dev->dma_mask), 0xffffffffull);
        CHECK_EQ(atomic_load(&dev->coherent_dma_mask), 0xffffffffull);
        CHECK_EQ(atomic_load(&dev->max_seg_size), 65536);
        CHECK_EQ(atomic_load(&dev->seg_boundary_mask), 0xffffffffull);
        CHECK(dev->group == NULL);
    }
    CHECK(strcmp(vtio_device_name(h->devices[0]), "0000:00:03.0") == 0);
    CHECK(vtio_host_device_by_rid(h, 0x0100) == NULL);
    CHECK(vtio_host_device(h, NULL) == NULL);
    struct vtio_pci_function copy = *vtio_pci_get(h->pci, 0);
    CHECK(vtio_host_device(h, &copy) == NULL);      /* not one of h's */
    CHECK(vtio_host_device_by_rid(NULL, ENGINE_RID(0)) == NULL);

    struct vtio_device *dev = h->devices[0];
    CHECK(vtio_device_driver(dev) == NULL);
    CHECK_ERR(vtio_device_bind(dev, NULL), -EINVAL);
    CHECK_ERR(vtio_device_bind(dev, ""), -EINVAL);
    CHECK_ERR(vtio_device_bind(NULL, "x"), -EINVAL);
    CHECK_OK(vtio_device_bind(dev, "alpha"));
    CHECK(strcmp(vtio_device_driver(dev), "alpha") == 0);
    CHECK_ERR(vtio_device_bind(dev, "beta"), -EBUSY);
    CHECK(strcmp(vtio_device_driver(dev), "alpha") == 0);
    CHECK_EQ(vtio_device_unbind(dev), 0);           /* no leaks without debugging */
    CHECK(vtio_device_driver(dev) == NULL);
    CHECK_EQ(vtio_device_unbind(dev), 0);           /* unbinding twice is harmless */
    CHECK_OK(vtio_device_bind(dev, "beta"));
    vtio_device_unbind(dev);
    vtio_host_shutdown(h);
    vtio_machine_destroy(m);
}

/* ---- direct map */

static void t_direct_map(void)
{
    struct vtio_machine_config cfg = { .ram_size = 4 * VTIO_GiB, .dma_engines = 1 };
    struct vtio_machine *m;
    CHECK_OK(vtio_machine_create(&cfg, &m));
    struct vtio_host *h;
    CHECK_OK(vtio_host_boot(m, &h));
    /* low RAM and RAM above 4 GiB, written through the CPU view, read
     * through the direct map and back */
    const uint64_t pas[] = { 0x0, 0x123458, VTIO_MACHINE_LOW_RAM_MAX - 8,
                             VTIO_MACHINE_HIGH_RAM_BASE, VTIO_MACHINE_HIGH_RAM_BASE + 0x7777770 };
    for (unsigned i = 0; i < sizeof(pas) / sizeof(pas[0]); i++) {
        uint64_t *va = vtio_host_phys_to_virt(h, pas[i]);
        CHECK(va != NULL);
        vtio_mem_write64(m->mem, pas[i], 0x1111111111111111ull * (i + 1));
        CHECK_EQ(*va, 0x1111111111111111ull * (i + 1));
        *va = ~*va;
        CHECK_EQ(vtio_mem_read64(m->mem, pas[i]), ~(0x1111111111111111ull * (i + 1)));
        uint64_t back;
        CHECK_OK(vtio_host_virt_to_phys(h, va, &back));
        CHECK_EQ(back, pas[i]);
        CHECK_OK(vtio_host_virt_to_phys(h, (char *)va + 3, &back));
        CHECK_EQ(back, pas[i] + 3);
    }
    /* not RAM: the hole, MMIO, past the end */
    CHECK(vtio_host_phys_to_virt(h, VTIO_MACHINE_LOW_RAM_MAX) == NULL);
    CHECK(vtio_host_phys_to_virt(h, VTIO_MACHINE_ECAM_BASE) == NULL);
    CHECK(vtio_host_phys_to_virt(h, VTIO_MACHINE_HIGH_RAM_BASE + VTIO_GiB) == NULL);
    uint64_t pa = 0x5a5a;
    int local;
    CHECK_ERR(vtio_host_virt_to_phys(h, &local, &pa), -EFAULT);
    CHECK_EQ(pa, 0x5a5a);
    char *top = vtio_host_phys_to_virt(h, VTIO_MACHINE_LOW_RAM_MAX - 1);
    CHECK_ERR(vtio_host_virt_to_phys(h, top + 1, &pa), -EFAULT);
    vtio_host_shutdown(h);
    vtio_machine_destroy(m);
}

/* ---- log */

static void t_log(void)
{
    struct vtio_machine *m = mk_machine(1);
    struct vtio_host *h;
    struct vtio_host_options o = { .iommu_off = true, .log_fn = capture };
    CHECK_OK(vtio_host_boot_opts(m, &o, &h));
    n_msgs = 0;
    vtio_host_log(h, VTIO_LOG_ERR, "error %d", 1);
    CHECK_EQ(n_msgs, 1);
    CHECK(strcmp(last_msg, "error 1") == 0);
    CHECK_EQ(last_level, VTIO_LOG_ERR);
    vtio_host_log(h, VTIO_LOG_WARN, "warning %s\n", "two");
    CHECK_EQ(n_msgs, 2);
    CHECK(strcmp(last_msg, "warning two") == 0);     /* the newline is the sink's */
    vtio_host_log(h, VTIO_LOG_INFO, "info");         /* default level: WARN */
    vtio_host_log(h, VTIO_LOG_DEBUG, "debug");
    CHECK_EQ(n_msgs, 2);
    h->opts.log_level = VTIO_LOG_DEBUG;
    vtio_host_log(h, VTIO_LOG_DEBUG, "debug");
    CHECK_EQ(n_msgs, 3);
    h->opts.log_level = VTIO_LOG_ERR;
    vtio_host_log(h, VTIO_LOG_WARN, "warn");
    CHECK_EQ(n_msgs, 3);
    /* a long message is cut, not overrun */
    char big[2000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    vtio_host_log(h, VTIO_LOG_ERR, "%s", big);
    CHECK_EQ(n_msgs, 4);
    CHECK_GT(strlen(last_msg), 100);
    vtio_host_shutdown(h);
    vtio_machine_destroy(m);
}

static const struct vtio_test tests[] = {
    { "options_words", "every documented command-line word sets its option; iommu=pt and iommu.strict combine as in Linux; unnamed options stay", t_options_words },
    { "options_errors", "unknown words and bad values return -EINVAL, name the word, and leave the options unchanged", t_options_errors },
    { "boot_bad_options", "boot refuses out-of-range options with -EINVAL and boots afterwards", t_boot_bad_options },
    { "boot_failure", "a boot that fails in PCI enumeration returns its error and frees what it made", t_boot_failure_cleans_up },
    { "boot_no_iommu", "intel_iommu=off and a machine without VT-d boot with no IOMMU and no groups; the low 1 MiB is reserved", t_boot_no_iommu },
    { "devices", "one device per function: names, lookups, untrusted flags, Linux's DMA defaults, bind/unbind errors", t_devices },
    { "direct_map", "phys_to_virt and virt_to_phys round-trip in low and high RAM; non-RAM is NULL / -EFAULT", t_direct_map },
    { "log", "the log filters by level (WARN by default), strips the newline and hands messages to log_fn", t_log },
};

VTIO_TEST_MAIN(tests)
