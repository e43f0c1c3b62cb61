/*
 * vtio demo: the main job.
 *
 * Builds the default machine, boots the host software on it (page
 * allocator, PCI enumeration, BAR placement), takes over the DMA engine with
 * its driver, and does what every account of DMA starts with: the CPU
 * programs the controller with source, destination and length on every
 * channel, goes on with other work while the device moves the data, and
 * handles one completion interrupt per channel at the end.  Then it checks
 * every byte and reports what it cost.  demo_iommu.c goes on with what the
 * IOMMU does for it, demo_vfio.c with a userspace driver on another engine.
 */
#include <vtio/dev/dma_engine.h>
#include <vtio/device.h>
#include <vtio/dma.h>
#include <vtio/drv/dma_engine.h>
#include <vtio/host.h>
#include <vtio/machine.h>
#include <vtio/mem.h>
#include <vtio/page_alloc.h>
#include <vtio/pci_enum.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"

#define VFIO_ENGINE 3     /* the engine demo_vfio.c gives to a process */

struct demo_opts {
    unsigned long long size;      /* bytes per channel */
    unsigned channels;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the CPU's "other work": a cache-resident integer hash, in units */

static uint64_t work_state = 1;

static void work_unit(void)
{
    uint64_t x = work_state;
    for (int i = 0; i < 20000; i++)
        x = x * 6364136223846793005ull + 1442695040888963407ull, x ^= x >> 29;
    work_state = x;
}

/* Units per second with nothing else going on. */
static double work_rate(void)
{
    double t0 = now_s(), t;
    unsigned long n = 0;
    do {
        work_unit();
        n++;
    } while ((t = now_s()) - t0 < 0.05);
    return n / (t - t0);
}

/* ---- completion interrupts, seen by the CPU */

static atomic_uint channels_done;

static void on_complete(void *arg, struct vtio_dmae_chan *ch)
{
    (void)arg, (void)ch;
    atomic_fetch_add_explicit(&channels_done, 1, memory_order_release);
}

/* ---- buffers in machine RAM */

/* Physical addresses for the CPU, DMA addresses for the device: the
 * buffers are mapped (src TO_DEVICE, dst BIDIRECTIONAL) for the whole job. */
struct buffers {
    uint64_t src, dst;
    vtio_dma_addr_t src_dma, dst_dma;
};

static void show_log(void *opaque, int level, const char *msg)
{
    (void)opaque, (void)level;
    printf("log      %s\n", msg);
}

static int map_buffers(struct vtio_host *h, struct vtio_dmae *e, struct buffers *b,
                       uint64_t size)
{
    struct vtio_device *dev = vtio_host_device(h, vtio_dmae_pci(e));
    b->src_dma = vtio_dma_map_page(dev, b->src, size, VTIO_DMA_TO_DEVICE);
    b->dst_dma = vtio_dma_map_page(dev, b->dst, size, VTIO_DMA_BIDIRECTIONAL);
    if (vtio_dma_mapping_error(dev, b->src_dma) || vtio_dma_mapping_error(dev, b->dst_dma)) {
        fprintf(stderr, "demo: map: %s\n", vtio_last_error());
        return -1;
    }
    return 0;
}

static void unmap_buffers(struct vtio_host *h, struct vtio_dmae *e, struct buffers *b,
                          uint64_t size)
{
    struct vtio_device *dev = vtio_host_device(h, vtio_dmae_pci(e));
    if (b->src_dma && !vtio_dma_mapping_error(dev, b->src_dma))
        vtio_dma_unmap_page(dev, b->src_dma, size, VTIO_DMA_TO_DEVICE);
    if (b->dst_dma && !vtio_dma_mapping_error(dev, b->dst_dma))
        vtio_dma_unmap_page(dev, b->dst_dma, size, VTIO_DMA_BIDIRECTIONAL);
}

static void print_machine(const struct vtio_host *h)
{
    printf("machine  %.1f GiB RAM, %u CPUs, PCI segment %u (ECAM at %#llx)\n",
           (double)vtio_mem_ram_size(h->mem) / VTIO_GiB, h->fw.ncpus, h->fw.pci_segment,
           (unsigned long long)h->fw.ecam_base);
    for (unsigned i = 0; i < vtio_pci_count(h->pci); i++) {
        const struct vtio_pci_function *fn = vtio_pci_get(h->pci, i);
        printf("found    %02x:%02x.%x %04x:%04x class %06x", fn->bus, fn->dev, fn->fn,
               fn->vendor_id, fn->device_id, fn->class_code);
        for (unsigned b = 0; b < VTIO_PCI_NUM_BARS; b++)
            if (fn->bar[b].size)
                printf("  BAR%u %#llx [%lluK]", b, (unsigned long long)fn->bar[b].base,
                       (unsigned long long)fn->bar[b].size >> 10);
        if (fn->cap_msix)
            printf("  MSI-X %u", fn->msix_table_size);
        printf("\n");
    }
}

/* The copy job on every channel.  Returns 0 if every byte arrived. */
static int copy_job(struct vtio_host *h, struct vtio_dmae *dev, const struct demo_opts *o,
                    struct buffers *buf)
{
    unsigned nch = o->channels;
    double rate = work_rate();
    atomic_store(&channels_done, 0);
    int64_t cookie[VTIO_DMAE_MAX_CHANNELS];

    /* Program every channel, then ring the doorbells: from here the CPU is free. */
    double t0 = now_s();
    for (unsigned c = 0; c < nch; c++) {
        struct vtio_dmae_chan *ch = vtio_dmae_chan(dev, c);
        vtio_dmae_set_callback(ch, on_complete, NULL);
        cookie[c] = vtio_dmae_prep_copy(ch, buf[c].dst_dma, buf[c].src_dma, o->size,
                                        VTIO_DMAE_FLAG_INTR);
        if (cookie[c] < 0) {
            fprintf(stderr, "demo: prep on channel %u: %s\n", c, vtio_last_error());
            return -1;
        }
        vtio_dmae_issue(ch);
    }
    double t_issued = now_s();
    unsigned long units = 0;
    double busy = 0;
    while (atomic_load_explicit(&channels_done, memory_order_acquire) < nch) {
        double u0 = now_s();
        work_unit();
        busy += now_s() - u0;
        units++;
    }
    double t1 = now_s();

    int failed = 0;
    for (unsigned c = 0; c < nch; c++) {
        struct vtio_dmae_chan *ch = vtio_dmae_chan(dev, c);
        struct vtio_dmae_completion rec;
        if (vtio_dmae_wait(ch, cookie[c], 1000000000ull, &rec) < 0) {
            fprintf(stderr, "demo: channel %u: %s\n", c, vtio_last_error());
            failed = 1;
        }
        vtio_dmae_set_callback(ch, NULL, NULL);
    }
    unsigned long long irqs = 0;
    for (unsigned c = 0; c < nch; c++) {
        struct vtio_dmae_chan_stats st;
        vtio_dmae_chan_stats(vtio_dmae_chan(dev, c), &st);
        irqs += st.interrupts;
    }
    double elapsed = t1 - t0;
    double total = (double)o->size * nch;
    printf("copy     %u x %llu MiB, one descriptor per channel: %.0f MiB moved in %.1f ms "
           "(%.2f GB/s)\n", nch, o->size >> 20, total / VTIO_MiB, elapsed * 1e3,
           total / elapsed / 1e9);
    printf("         programming took %.1f us; %llu completion interrupts taken\n",
           (t_issued - t0) * 1e6, irqs);
    printf("cpu      %.0f%% of the transfer time went to other work: %lu work units "
           "(%.0f%% of its standalone speed)\n", 100.0 * busy / elapsed, units,
           100.0 * units / (elapsed * rate));
    for (unsigned c = 0; c < nch; c++)
        if (!vtio_tool_same_bytes(h->mem, buf[c].src, buf[c].dst, o->size)) {
            fprintf(stderr, "demo: channel %u: destination differs from source\n", c);
            failed = 1;
        }
    if (!failed)
        printf("verify   all %.0f MiB compared byte for byte: identical\n", total / VTIO_MiB);
    return failed ? -1 : 0;
}

/* The engine's other operations, on channel 0: fill, compare, SG copy. */
static int other_ops(struct vtio_host *h, struct vtio_dmae *dev, struct buffers *buf)
{
    struct vtio_dmae_chan *ch = vtio_dmae_chan(dev, 0);
    struct vtio_dmae_completion rec;
    uint64_t d = buf[0].dst;                 /* the CPU's address */
    vtio_dma_addr_t dd = buf[0].dst_dma, sd = buf[0].src_dma;   /* the device's */
    int ret = 0;

    int64_t c = vtio_dmae_prep_fill(ch, dd, 0x0123456789abcdefull, 4096, VTIO_DMAE_FLAG_INTR);
    vtio_dmae_issue(ch);
    ret |= vtio_dmae_wait(ch, c, 1000000000ull, &rec);
    uint64_t word = vtio_mem_read64(h->mem, d + 4088);

    /* Compare against a CPU-written copy with one byte changed at 1000. */
    uint8_t page[4096];
    vtio_mem_read(h->mem, d, page, sizeof(page));
    page[1000] ^= 0xff;
    vtio_mem_write(h->mem, d + 8192, page, sizeof(page));
    c = vtio_dmae_prep_compare(ch, dd, dd + 8192, 4096, VTIO_DMAE_FLAG_INTR);
    vtio_dmae_issue(ch);
    ret |= vtio_dmae_wait(ch, c, 1000000000ull, &rec);
    uint64_t diff_at = rec.bytes;
    bool cmp_ok = rec.result == 1 && diff_at == 1000;

    /* Scatter-gather: three uneven pieces of the source into two pieces. */
    struct vtio_dmae_seg src[3] = { { sd, 1000 }, { sd + 5000, 3000 }, { sd + 9000, 96 } };
    struct vtio_dmae_seg dst[2] = { { dd + 65536, 2048 }, { dd + 131072, 2048 } };
    c = vtio_dmae_prep_copy_sg(ch, dst, 2, src, 3, VTIO_DMAE_FLAG_INTR);
    vtio_dmae_issue(ch);
    ret |= vtio_dmae_wait(ch, c, 1000000000ull, &rec);
    bool sg_ok = vtio_tool_same_bytes(h->mem, buf[0].src, d + 65536, 1000) &&
                 vtio_tool_same_bytes(h->mem, buf[0].src + 5000, d + 65536 + 1000, 1048) &&
                 vtio_tool_same_bytes(h->mem, buf[0].src + 6048, d + 131072, 1952) &&
                 vtio_tool_same_bytes(h->mem, buf[0].src + 9000, d + 131072 + 1952, 96);

    printf("ops      fill 4 KiB: last word %#llx; compare: first difference at byte %llu; "
           "SG copy 3 -> 2 segments: %s\n", (unsigned long long)word,
           (unsigned long long)diff_at, sg_ok ? "identical" : "DIFFERENT");
    return ret < 0 || !sg_ok || !cmp_ok || word != 0x0123456789abcdefull ? -1 : 0;
}

static int parse(int argc, char **argv, struct demo_opts *o)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--size") && i + 1 < argc) {
            o->size = vtio_tool_parse_size(argv[++i]);
        } else if (!strcmp(argv[i], "--channels") && i + 1 < argc) {
            o->channels = (unsigned)atoi(argv[++i]);
        } else {
            printf("usage: vtio demo [--size BYTES] [--channels N]\n"
                   "  --size      bytes each channel copies (default 16M, 4K..256M)\n"
                   "  --channels  channels to use (default 4, 1..8)\n");
            return strcmp(argv[i], "--help") ? -1 : 1;
        }
    }
    if (o->size < 4096 || o->size > 256 * VTIO_MiB || o->channels < 1 ||
        o->channels > VTIO_DMAE_MAX_CHANNELS) {
        fprintf(stderr, "demo: --size must be 4K..256M and --channels 1..8\n");
        return -1;
    }
    return 0;
}

int cmd_demo(int argc, char **argv)
{
    struct demo_opts o = { .size = 16 * VTIO_MiB, .channels = 4 };
    int ret = parse(argc, argv, &o);
    if (ret)
        return ret > 0 ? 0 : 2;

    /* Four engines: the job's, one for an identity domain, one wired for
     * 32-bit addresses, one for a userspace driver.  The host log (IOMMU
     * faults) is shown, indented. */
    struct vtio_machine_config mcfg = { .dma_engines = VFIO_ENGINE + 1,
                                        .dma_channels = o.channels > 4 ? o.channels : 4 };
    struct vtio_host_options hopts = { .log_fn = show_log };
    struct vtio_machine *m;
    struct vtio_host *h;
    if (vtio_machine_create(&mcfg, &m) < 0 || vtio_host_boot_opts(m, &hopts, &h) < 0) {
        fprintf(stderr, "demo: cannot build the machine: %s\n", vtio_last_error());
        return 1;
    }
    printf("vtio demo: the CPU programs a DMA engine, computes while it copies, and takes "
           "its interrupts\n\n");
    print_machine(h);

    const struct vtio_pci_function *fn =
        vtio_pci_find(h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, 0);
    struct vtio_dmae *dev = NULL;
    struct vtio_dmae_config dcfg = { .channels = o.channels };
    if (!fn || vtio_dmae_probe(h, fn, &dcfg, &dev) < 0) {
        fprintf(stderr, "demo: no DMA engine to drive: %s\n", vtio_last_error());
        vtio_host_shutdown(h);
        vtio_machine_destroy(m);
        return 1;
    }
    printf("driver   %u channels, 256-entry rings in coherent DMA memory, one MSI-X vector "
           "each\n\n", vtio_dmae_channels(dev));

    struct buffers buf[VTIO_DMAE_MAX_CHANNELS] = { 0 };
    unsigned order = vtio_page_order(o.size);
    ret = 0;
    for (unsigned c = 0; c < o.channels && ret == 0; c++) {
        ret = vtio_page_alloc(h->pages, order, 0, &buf[c].src);
        if (ret == 0)
            ret = vtio_page_alloc(h->pages, order, 0, &buf[c].dst);
        if (ret == 0) {
            vtio_tool_fill_random(h->mem, buf[c].src, o.size, c + 1);
            /* Touch the destination too: RAM on a real machine exists before
             * use, and a first-touch page fault is not the engine's cost. */
            vtio_mem_set(h->mem, buf[c].dst, 0, o.size);
            ret = map_buffers(h, dev, &buf[c], o.size);
        }
    }
    if (ret == 0)
        ret = copy_job(h, dev, &o, buf);
    if (ret == 0)
        ret = other_ops(h, dev, buf);
    if (ret == 0) {
        printf("mapped   DMA addresses the engine was given: source %#llx, destination %#llx\n",
               (unsigned long long)buf[0].src_dma, (unsigned long long)buf[0].dst_dma);
        ret = vtio_tool_demo_iommu(h, dev, buf[0].src, buf[0].dst);
    }
    if (ret == 0)
        ret = vtio_tool_demo_vfio(h, dev, VFIO_ENGINE);
    if (ret < 0)
        fprintf(stderr, "demo: FAILED\n");

    for (unsigned c = 0; c < o.channels; c++)
        unmap_buffers(h, dev, &buf[c], o.size);
    vtio_dmae_remove(dev);
    vtio_host_shutdown(h);
    vtio_machine_destroy(m);
    return ret < 0 ? 1 : 0;
}
