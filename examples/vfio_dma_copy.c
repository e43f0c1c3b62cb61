/*
 * vfio_dma_copy: the DMA engine driven from userspace through VFIO, as a
 * DPDK or SPDK driver drives a device on Linux.
 *
 *   1. boot the machine (IOMMU on) and bind the first engine to vfio-pci;
 *   2. start a process: the userspace program;
 *   3. open the container and the engine's group, check the group is
 *      viable, attach it, choose the type1v2 IOMMU, read the IOVA ranges
 *      (GET_INFO), get the device file, map BAR0 (all in udrv_open,
 *      examples/vfio_dmae.h, the driver itself);
 *   4. get memory from the process and map it for the device: ring and
 *      completion records read+write, the source read-only, the destination
 *      write-only (MAP_DMA at IOVAs the program chooses);
 *   5. turn bus mastering on through configuration space and program a
 *      channel through the mapped BAR;
 *   6. copy, taking completions by polling the completion records;
 *   7. copy again, sleeping on an eventfd the channel's MSI-X vector
 *      signals (SET_IRQS);
 *   8. unmap, close everything: the process's locked memory goes back to 0.
 *
 * Only the VFIO and process calls reach the device and memory; the host's
 * own DMA API and driver are not involved.  Exits 0 if every byte arrived.
 */
#include <vtio/device.h>
#include <vtio/host.h>
#include <vtio/iommu.h>
#include <vtio/machine.h>
#include <vtio/pci_enum.h>
#include <vtio/process.h>
#include <vtio/vfio.h>

#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vfio_dmae.h"

#define BUF_BYTES  (1u << 20)
#define COPY_BYTES (64u << 10)
#define NCOPIES    (BUF_BYTES / COPY_BYTES)
#define WAIT_NS    2000000000ull

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "vfio_dma_copy: %s: %s\n", what, why);
    return 1;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 131 + seed + (i >> 12));
}

static void print_setup(const struct udrv *u, unsigned group_id, const char *name)
{
    printf("vfio     container fd %d, group /dev/vfio/%u fd %d (viable), type1v2 IOMMU, "
           "device %s fd %d\n", u->container, group_id, u->group, name, u->device);
    printf("iommu    IOVA page sizes %#llx; usable IOVA ranges:",
           (unsigned long long)u->iova_pgsizes);
    for (unsigned i = 0; i < u->nranges; i++)
        printf(" [%#llx-%#llx]", (unsigned long long)u->ranges[i].start,
               (unsigned long long)u->ranges[i].end);
    printf("\nbar0     region at file offset %#llx, %llu KiB, mmap'd; config region at %#llx\n",
           (unsigned long long)u->bar0_off, (unsigned long long)u->bar0_size >> 10,
           (unsigned long long)u->config_off);
}

/* Queues the buffer's copies in COPY_BYTES pieces; the last may interrupt. */
static int queue_copies(struct udrv *u, const struct udrv_buf *dst, const struct udrv_buf *src,
                        unsigned last_flags)
{
    for (unsigned i = 0; i < NCOPIES; i++) {
        uint64_t off = (uint64_t)i * COPY_BYTES;
        int rc = udrv_copy(u, dst->iova + off, src->iova + off, COPY_BYTES,
                           i + 1 == NCOPIES ? last_flags : 0, i + 1);
        if (rc < 0)
            return rc;
    }
    udrv_doorbell(u);
    return 0;
}

/* Poll mode: spin on the completion records. */
static int copy_polled(struct udrv *u, const struct udrv_buf *dst, const struct udrv_buf *src)
{
    memset(dst->va, 0, dst->size);
    int rc = queue_copies(u, dst, src, 0);
    if (rc == 0)
        rc = udrv_wait(u, WAIT_NS, NULL);
    if (rc < 0)
        return fail("polled copy", u->err);
    bool same = memcmp(dst->va, src->va, BUF_BYTES) == 0;
    printf("poll     %u copies of %u KiB, completions taken from the records: %s\n", NCOPIES,
           COPY_BYTES >> 10, same ? "data identical" : "DATA DIFFERS");
    return same ? 0 : 1;
}

/* Interrupt mode: the last descriptor interrupts; read() the eventfd. */
static int copy_with_eventfd(struct udrv *u, const struct udrv_buf *dst,
                             const struct udrv_buf *src)
{
    int efd = eventfd(0, EFD_CLOEXEC);
    if (efd < 0)
        return fail("eventfd", strerror(errno));
    int rc = udrv_irq_eventfd(u, efd);
    memset(dst->va, 0, dst->size);
    if (rc == 0)
        rc = queue_copies(u, dst, src, VTIO_DMAE_FLAG_INTR);
    int irqs = rc == 0 ? udrv_wait_irq(u, 2000) : rc;
    if (irqs > 0)
        rc = udrv_poll(u, NULL) == NCOPIES ? 0 : udrv_error(u, -EIO, "not all completed");
    else
        rc = irqs;
    udrv_irq_eventfd(u, -1);
    close(efd);
    if (rc < 0)
        return fail("eventfd copy", u->err);
    bool same = memcmp(dst->va, src->va, BUF_BYTES) == 0;
    printf("eventfd  %u copies, the last with an interrupt: read() returned %d; %s\n", NCOPIES,
           irqs, same ? "data identical" : "DATA DIFFERS");
    return same ? 0 : 1;
}

static int run(struct vtio_process *p, struct vtio_device *dev)
{
    unsigned group_id = vtio_iommu_group_id(vtio_iommu_group_get(dev));
    const char *name = vtio_device_name(dev);
    struct udrv u;
    if (udrv_open(&u, p, group_id, name) < 0)
        return fail("open", u.err);
    print_setup(&u, group_id, name);

    struct udrv_buf src = { 0 }, dst = { 0 };
    int rc = udrv_start(&u, 0, 64);
    if (rc == 0)
        rc = udrv_dma_alloc(&u, BUF_BYTES, 0, VFIO_DMA_MAP_FLAG_READ, &src);
    if (rc == 0)
        rc = udrv_dma_alloc(&u, BUF_BYTES, 0, VFIO_DMA_MAP_FLAG_WRITE, &dst);
    if (rc < 0) {
        udrv_close(&u);
        return fail("set up", u.err);
    }
    struct vtio_process_stats st;
    vtio_process_get_stats(p, &st);
    printf("map      ring+records %llu KiB at IOVA %#llx (rw), source at %#llx (read), "
           "destination at %#llx (write); %llu KiB pinned\n",
           (unsigned long long)u.ring_buf.size >> 10, (unsigned long long)u.ring_buf.iova,
           (unsigned long long)src.iova, (unsigned long long)dst.iova,
           (unsigned long long)st.locked_bytes >> 10);
    printf("channel  0: bus mastering on (config COMMAND), %u-entry ring programmed through "
           "BAR0\n", u.entries);

    fill(src.va, BUF_BYTES, 7);
    rc = copy_polled(&u, &dst, &src);
    if (rc == 0)
        rc = copy_with_eventfd(&u, &dst, &src);

    if (udrv_dma_free(&u, &src) < 0 || udrv_dma_free(&u, &dst) < 0)
        rc = fail("unmap", u.err);
    udrv_close(&u);
    vtio_process_get_stats(p, &st);
    printf("close    everything unmapped and closed: %llu bytes pinned, %u files open\n",
           (unsigned long long)st.locked_bytes, st.open_files);
    return rc == 0 && st.locked_bytes == 0 && st.open_files == 0 ? 0 : 1;
}

int main(void)
{
    struct vtio_machine *m;
    struct vtio_host *h;
    if (vtio_machine_create(NULL, &m) < 0 || vtio_host_boot(m, &h) < 0)
        return fail("boot", vtio_last_error());
    /* The first engine is 00:03.0; binding it is what writing vfio-pci to
     * its driver_override and bind does on Linux. */
    const struct vtio_pci_function *fn =
        vtio_pci_find(h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, 0);
    struct vtio_device *dev = fn ? vtio_host_device(h, fn) : NULL;
    if (!dev || vtio_vfio_bind(dev) < 0)
        return fail("bind to vfio-pci", vtio_last_error());
    printf("bind     %s -> vfio-pci (IOMMU group %u)\n", vtio_device_name(dev),
           vtio_iommu_group_id(vtio_iommu_group_get(dev)));

    struct vtio_process *p;
    if (vtio_process_create(h, "vfio_dma_copy", &p) < 0)
        return fail("process", vtio_last_error());
    int rc = run(p, dev);
    vtio_process_destroy(p);
    if (vtio_vfio_unbind(dev) < 0)
        rc = fail("unbind", vtio_last_error());
    vtio_host_shutdown(h);
    vtio_machine_destroy(m);
    printf("%s\n", rc == 0 ? "done" : "FAILED");
    return rc;
}
