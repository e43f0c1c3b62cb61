/*
 * vtio demo, third part: a userspace driver beside the in-host one.
 *
 * The first engine stays with the host's driver (DMA API, DMA-FQ domain).
 * The last engine is bound to vfio-pci and given to a process, which
 * drives it with the poll-mode userspace driver of examples/vfio_dmae.h
 * through VFIO alone, as DPDK or SPDK would:
 *   vfio      the container, the group (viable), type1v2, the usable IOVA
 *             ranges, the device file and its mapped BAR0;
 *   map       process memory in 2 MiB pages mapped with MAP_DMA at IOVAs
 *             the program chose, pinned and charged to its locked memory;
 *   copy      the same copies by both drivers, polled, and their rates;
 *   eventfd   one copy that interrupts: the channel's MSI-X vector
 *             signals an eventfd the program reads;
 *   safety    the program aims a descriptor at an IOVA it never mapped,
 *             the physical address of the in-host driver's buffer: the
 *             engine halts with a fault, the IOMMU logs it, the buffer is
 *             untouched;
 *   close     everything unmapped, unpinned and closed.
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
#include <vtio/process.h>
#include <vtio/vfio.h>

#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../examples/vfio_dmae.h"
#include "commands.h"

#define JOB      (16 * VTIO_MiB)    /* bytes each driver copies per run */
#define PIECE    VTIO_MiB           /* per descriptor */
#define RUNS     3                  /* best of */
#define WAIT_NS  2000000000ull

static double now_s(void)
{
    return (double)udrv_now_ns() * 1e-9;
}

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "demo: %s: %s\n", what, why);
    return -1;
}

/* ---- the in-host driver's run: DMA-API mapped buffers, channel 0 */

struct host_job {
    struct vtio_device *dev;
    struct vtio_dmae_chan *ch;
    uint64_t src, dst;                 /* physical */
    vtio_dma_addr_t src_dma, dst_dma;
};

static double host_run(struct host_job *j)
{
    double t0 = now_s();
    int64_t last = 0;
    for (uint64_t off = 0; off < JOB; off += PIECE)
        if ((last = vtio_dmae_prep_copy(j->ch, j->dst_dma + off, j->src_dma + off, PIECE,
                                        0)) < 0)
            return -1;
    vtio_dmae_issue(j->ch);
    int rc;
    while ((rc = vtio_dmae_poll(j->ch, last, NULL)) == -EAGAIN)
        __builtin_ia32_pause();
    return rc < 0 ? -1 : now_s() - t0;
}

static double udrv_run(struct udrv *u, const struct udrv_buf *src, const struct udrv_buf *dst)
{
    double t0 = now_s();
    for (uint64_t off = 0; off < JOB; off += PIECE)
        if (udrv_copy(u, dst->iova + off, src->iova + off, PIECE, 0, off / PIECE) < 0)
            return -1;
    udrv_doorbell(u);
    return udrv_wait(u, WAIT_NS, NULL) < 0 ? -1 : now_s() - t0;
}

/* ---- the steps */

static void show_setup(const struct udrv *u, struct vtio_device *dev, unsigned group)
{
    printf("vfio     %s bound to vfio-pci; process \"udrv\" opens /dev/vfio/vfio (fd %d) and "
           "/dev/vfio/%u (fd %d): viable; SET_CONTAINER, SET_IOMMU type1v2\n",
           vtio_device_name(dev), u->container, group, u->group);
    printf("         usable IOVA ranges:");
    for (unsigned i = 0; i < u->nranges; i++)
        printf(" %#llx-%#llx", (unsigned long long)u->ranges[i].start,
               (unsigned long long)u->ranges[i].end);
    printf(" (the MSI window is not one); IOMMU pages");
    for (unsigned b = 12; b < 64; b++)
        if (u->iova_pgsizes >> b & 1)
            printf(" %llu%c", b >= 30 ? 1ull << (b - 30) : b >= 20 ? 1ull << (b - 20)
                                                                   : 1ull << (b - 10),
                   b >= 30 ? 'G' : b >= 20 ? 'M' : 'K');
    printf("\n");
    printf("         device fd %d; BAR0 (%llu KiB) mmap'd into the program; bus mastering on "
           "through config space\n", u->device, (unsigned long long)u->bar0_size >> 10);
}

static int copies(struct host_job *hj, struct udrv *u, const struct udrv_buf *src,
                  const struct udrv_buf *dst, struct vtio_device *udev)
{
    double best_h = 1e9, best_u = 1e9;
    for (int i = 0; i < RUNS; i++) {
        double th = host_run(hj), tu = udrv_run(u, src, dst);
        if (th < 0 || tu < 0)
            return fail("copy", th < 0 ? vtio_last_error() : u->err);
        best_h = th < best_h ? th : best_h;
        best_u = tu < best_u ? tu : best_u;
    }
    bool host_ok = memcmp(vtio_host_phys_to_virt(vtio_device_host(hj->dev), hj->src),
                          vtio_host_phys_to_virt(vtio_device_host(hj->dev), hj->dst), JOB) == 0;
    bool user_ok = memcmp(src->va, dst->va, JOB) == 0;
    printf("copy     %llu MiB in %llu descriptors of %llu MiB, polled, best of %d:\n",
           JOB >> 20, JOB / PIECE, PIECE >> 20, RUNS);
    printf("           in-host driver,   %s (DMA API, DMA-FQ domain): %6.2f GB/s, %s\n",
           vtio_device_name(hj->dev), JOB / best_h / 1e9, host_ok ? "verified" : "DIFFERENT");
    printf("           userspace driver, %s (VFIO, its container):  %6.2f GB/s, %s "
           "(%.2fx the in-host driver)\n", vtio_device_name(udev), JOB / best_u / 1e9,
           user_ok ? "verified" : "DIFFERENT", best_h / best_u);
    return host_ok && user_ok ? 0 : -1;
}

static int eventfd_copy(struct udrv *u, const struct udrv_buf *src, const struct udrv_buf *dst)
{
    int efd = eventfd(0, EFD_CLOEXEC);
    if (efd < 0)
        return fail("eventfd", strerror(errno));
    int rc = udrv_irq_eventfd(u, efd);
    if (rc == 0)
        rc = udrv_copy(u, dst->iova, src->iova, PIECE, VTIO_DMAE_FLAG_INTR, 99);
    udrv_doorbell(u);
    int n = rc == 0 ? udrv_wait_irq(u, 2000) : rc;
    if (n > 0)
        rc = udrv_wait(u, WAIT_NS, NULL);
    udrv_irq_eventfd(u, -1);
    close(efd);
    if (n < 0 || rc < 0)
        return fail("eventfd copy", u->err);
    printf("eventfd  SET_IRQS: MSI-X entry 0 -> an eventfd; a 1 MiB copy with FLAG_INTR, "
           "then read() on it returned %d\n", n);
    return 0;
}

/* The program aims at the in-host driver's destination by physical address. */
static int stray(struct vtio_host *h, struct udrv *u, const struct udrv_buf *src,
                 uint64_t victim)
{
    uint8_t before[256], after[256];
    vtio_mem_read(h->mem, victim, before, sizeof(before));
    uint64_t seen = vtio_iommu_fault_sync(h);
    struct vtio_dmae_completion rec = { 0 };
    int rc = udrv_copy(u, victim, src->iova, 4096, 0, 1);
    udrv_doorbell(u);
    if (rc == 0)
        rc = udrv_wait(u, WAIT_NS, &rec);
    udrv_reset(u);
    uint64_t now = vtio_iommu_fault_sync(h);
    struct vtio_iommu_fault f[VTIO_IOMMU_FAULT_LOG];
    unsigned n = vtio_iommu_fault_log(h, f, VTIO_IOMMU_FAULT_LOG);
    vtio_mem_read(h->mem, victim, after, sizeof(after));
    bool untouched = memcmp(before, after, sizeof(before)) == 0;
    printf("safety   the program writes to IOVA %#llx, never mapped (the physical address of "
           "the in-host driver's buffer):\n", (unsigned long long)victim);
    printf("           engine: %s at %#llx, channel halted (reset by the program)\n",
           rc == -EIO ? vtio_dmae_status_name(rec.status) : "NOT REFUSED",
           (unsigned long long)rec.fault_addr);
    if (now > seen && n)
        printf("           IOMMU %s: [DMA %s] device %02x:%02x.%u, address %#llx, reason "
               "%#x: %s\n", f[n - 1].unit, f[n - 1].write ? "Write" : "Read",
               f[n - 1].sid >> 8, (f[n - 1].sid >> 3) & 0x1f, f[n - 1].sid & 7,
               (unsigned long long)f[n - 1].addr, f[n - 1].reason, f[n - 1].reason_str);
    printf("           the buffer at %#llx: %s\n", (unsigned long long)victim,
           untouched ? "untouched" : "CHANGED");
    return rc == -EIO && now > seen && untouched ? 0 : -1;
}

static int host_job_up(struct vtio_host *h, struct vtio_dmae *e0, struct host_job *j)
{
    j->dev = vtio_host_device(h, vtio_dmae_pci(e0));
    j->ch = vtio_dmae_chan(e0, 0);
    if (vtio_page_alloc(h->pages, vtio_page_order(JOB), 0, &j->src) < 0 ||
        vtio_page_alloc(h->pages, vtio_page_order(JOB), 0, &j->dst) < 0)
        return fail("allocate", vtio_last_error());
    vtio_tool_fill_random(h->mem, j->src, JOB, 5);
    vtio_mem_set(h->mem, j->dst, 0, JOB);
    j->src_dma = vtio_dma_map_page(j->dev, j->src, JOB, VTIO_DMA_TO_DEVICE);
    j->dst_dma = vtio_dma_map_page(j->dev, j->dst, JOB, VTIO_DMA_FROM_DEVICE);
    if (vtio_dma_mapping_error(j->dev, j->src_dma) ||
        vtio_dma_mapping_error(j->dev, j->dst_dma))
        return fail("map", vtio_last_error());
    return 0;
}

static void host_job_down(struct vtio_host *h, struct host_job *j)
{
    if (j->src_dma && !vtio_dma_mapping_error(j->dev, j->src_dma))
        vtio_dma_unmap_page(j->dev, j->src_dma, JOB, VTIO_DMA_TO_DEVICE);
    if (j->dst_dma && !vtio_dma_mapping_error(j->dev, j->dst_dma))
        vtio_dma_unmap_page(j->dev, j->dst_dma, JOB, VTIO_DMA_FROM_DEVICE);
    if (j->src)
        vtio_page_free(h->pages, j->src, vtio_page_order(JOB));
    if (j->dst)
        vtio_page_free(h->pages, j->dst, vtio_page_order(JOB));
}

/* The program's part: open, map, copy beside the host, stray, close. */
static int user_side(struct vtio_host *h, struct vtio_process *p, struct vtio_device *udev,
                     struct host_job *hj)
{
    unsigned group = vtio_iommu_group_id(vtio_iommu_group_get(udev));
    struct udrv u;
    if (udrv_open(&u, p, group, vtio_device_name(udev)) < 0)
        return fail("vfio", u.err);
    struct udrv_buf src = { 0 }, dst = { 0 };
    int rc = udrv_start(&u, 0, 64);
    if (rc == 0)
        rc = udrv_dma_alloc(&u, JOB, VTIO_PROCESS_MAP_HUGE, VFIO_DMA_MAP_FLAG_READ, &src);
    if (rc == 0)
        rc = udrv_dma_alloc(&u, JOB, VTIO_PROCESS_MAP_HUGE, VFIO_DMA_MAP_FLAG_WRITE, &dst);
    if (rc < 0) {
        udrv_close(&u);
        return fail("vfio", u.err);
    }
    show_setup(&u, udev, group);
    struct vtio_process_stats st;
    vtio_process_get_stats(p, &st);
    printf("map      MAP_DMA: ring+records at IOVA %#llx (read/write), %llu MiB source at "
           "%#llx (read), %llu MiB destination at %#llx (write), 2 MiB pages; %llu MiB "
           "pinned of a %llu MiB memlock limit\n", (unsigned long long)u.ring_iova,
           JOB >> 20, (unsigned long long)src.iova, JOB >> 20, (unsigned long long)dst.iova,
           (unsigned long long)st.locked_bytes >> 20,
           (unsigned long long)st.memlock_limit >> 20);
    memcpy(src.va, vtio_host_phys_to_virt(h, hj->src), JOB);
    memset(dst.va, 0, JOB);    /* first touch (the host backs process memory lazily) */
    rc = copies(hj, &u, &src, &dst, udev);
    if (rc == 0)
        rc = eventfd_copy(&u, &src, &dst);
    if (rc == 0)
        rc = stray(h, &u, &src, hj->dst);
    udrv_dma_free(&u, &src);
    udrv_dma_free(&u, &dst);
    udrv_close(&u);
    vtio_process_get_stats(p, &st);
    printf("close    UNMAP_DMA, close device, group and container: %llu bytes pinned, %u files "
           "open\n", (unsigned long long)st.locked_bytes, st.open_files);
    return rc == 0 && st.locked_bytes == 0 ? 0 : -1;
}

int vtio_tool_demo_vfio(struct vtio_host *h, struct vtio_dmae *e0, unsigned engine)
{
    if (!vtio_iommu_present(h))
        return 0;                         /* VFIO needs an IOMMU */
    printf("\nuserspace: one engine driven through VFIO, as DPDK or SPDK drive theirs\n");
    const struct vtio_pci_function *fn =
        vtio_pci_find(h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, engine);
    struct vtio_device *udev = fn ? vtio_host_device(h, fn) : NULL;
    if (!udev || vtio_vfio_bind(udev) < 0)
        return fail("bind to vfio-pci", vtio_last_error());
    struct host_job hj = { 0 };
    struct vtio_process *p = NULL;
    int rc = host_job_up(h, e0, &hj);
    if (rc == 0 && vtio_process_create(h, "udrv", &p) < 0)
        rc = fail("process", vtio_last_error());
    if (rc == 0 && vtio_process_set_memlock_limit(p, 64 * VTIO_MiB) < 0)
        rc = fail("memlock", vtio_last_error());
    if (rc == 0)
        rc = user_side(h, p, udev, &hj);
    vtio_process_destroy(p);
    host_job_down(h, &hj);
    if (vtio_vfio_unbind(udev) < 0)
        rc = fail("unbind", vtio_last_error());
    return rc;
}
