/*
 * VFIO's promise, proven end to end: a device given to a userspace program
 * can reach only what the program mapped, can raise only the interrupts the
 * host set up for it, cannot reach another container's memory, and holds
 * nothing once the program closes its files or exits.
 *
 * The program is the userspace driver of examples/vfio_dmae.h, driving real
 * DMA engines through VFIO alone; every stray access is a descriptor the
 * engine executes.  What is asserted is what hardware shows: the engine's
 * completion record (the error and the faulting address), the IOMMU's fault
 * log (vtio_iommu_fault_sync/fault_log), the bytes of the memory that was
 * aimed at, interrupt counters of the CPUs' vector table, and the VT-d
 * unit's own answer for an IOVA (tests/host/test_dma_fixture.h).
 *
 * The machine: three engines (00:03.0, 00:04.0, 00:05.0), each its own IOMMU
 * group, IOMMU on with interrupt remapping (the default host).
 */
#include <vtio/dev/dma_engine.h>
#include <vtio/drv/dma_engine.h>
#include <vtio/intr.h>
#include <vtio/process.h>
#include <vtio/vfio.h>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "host/test_dma_fixture.h"
#include "../../examples/vfio_dmae.h"

#define WAIT_NS  2000000000ull
#define BUF      (64 * VTIO_KiB)
#define PATTERN  0xa5

/* One userspace driver: a process with one engine, a source mapped
 * read-only (filled with its own pattern) and a destination write-only. */
struct user {
    struct vtio_device *dev;
    struct vtio_process *p;
    struct udrv u;
    struct udrv_buf src, dst;
};

static void rig_three(struct rig *r)
{
    struct vtio_machine_config mc = { .ram_size = 2 * VTIO_GiB, .ncpus = 2, .dma_engines = 3 };
    rig_up_cfg(r, RIG_LAZY, &mc, NULL);
}

static struct vtio_device *engine(struct rig *r, unsigned i)
{
    struct vtio_device *dev =
        vtio_host_device_by_rid(r->h, VTIO_PCI_RID(0, VTIO_MACHINE_FIRST_DEV + i, 0));
    CHECK(dev != NULL);
    return dev;
}

/* Binds dev to vfio-pci and opens it in a new process; iova_base (0: the
 * driver's default) is where its IOVAs start. */
static void user_up(struct rig *r, struct user *us, struct vtio_device *dev, uint64_t iova_base,
                    uint8_t fill)
{
    memset(us, 0, sizeof(*us));
    us->dev = dev;
    CHECK_OK(vtio_vfio_bind(dev));
    CHECK_OK(vtio_process_create(r->h, "udrv", &us->p));
    int rc = udrv_open(&us->u, us->p, vtio_iommu_group_id(vtio_iommu_group_get(dev)),
                       vtio_device_name(dev));
    CHECKF(rc == 0, "udrv_open: %s", us->u.err);
    if (iova_base)
        us->u.iova_next = iova_base;
    CHECKF(udrv_start(&us->u, 0, 16) == 0, "udrv_start: %s", us->u.err);
    CHECK_OK(udrv_dma_alloc(&us->u, BUF, 0, VFIO_DMA_MAP_FLAG_READ, &us->src));
    CHECK_OK(udrv_dma_alloc(&us->u, BUF, 0, VFIO_DMA_MAP_FLAG_WRITE, &us->dst));
    memset(us->src.va, fill, BUF);
}

static void user_down(struct user *us)
{
    udrv_dma_free(&us->u, &us->src);
    udrv_dma_free(&us->u, &us->dst);
    udrv_close(&us->u);
    vtio_process_destroy(us->p);
    CHECK_OK(vtio_vfio_unbind(us->dev));
}

/* One copy by the engine.  @returns the completion status. */
static uint32_t copy(struct user *us, uint64_t dst, uint64_t src, uint64_t len)
{
    struct vtio_dmae_completion rec = { 0 };
    CHECK_OK(udrv_copy(&us->u, dst, src, len, 0, 1));
    udrv_doorbell(&us->u);
    int rc = udrv_wait(&us->u, WAIT_NS, &rec);
    CHECK(rc != -ETIMEDOUT);
    if (rc < 0)
        udrv_reset(&us->u);     /* the channel halted on it; start again */
    return rc == 0 ? VTIO_DMAE_STATUS_SUCCESS : rec.status;
}

/* A copy the engine must refuse with `status`, faulting at `fault_addr`. */
static void refused(struct user *us, uint64_t dst, uint64_t src, uint64_t len, uint32_t status,
                    uint64_t fault_addr)
{
    struct vtio_dmae_completion rec = { 0 };
    CHECK_OK(udrv_copy(&us->u, dst, src, len, 0, 7));
    udrv_doorbell(&us->u);
    CHECK_ERR(udrv_wait(&us->u, WAIT_NS, &rec), -EIO);
    CHECK_EQ(rec.status, status);
    CHECK_EQ(rec.fault_addr, fault_addr);
    CHECK_EQ(rec.cookie, 7);
    udrv_reset(&us->u);
}

/* Whether the IOMMU logged a fault after sequence number `after` by dev:
 * a DMA fault at the page of addr (write or read), or, with addr ~0, an
 * interrupt-remapping fault with `reason`. */
static bool fault_logged(struct rig *r, uint64_t after, struct vtio_device *dev, uint64_t addr,
                         bool write, int reason)
{
    vtio_iommu_fault_sync(r->h);
    struct vtio_iommu_fault f[VTIO_IOMMU_FAULT_LOG];
    unsigned n = vtio_iommu_fault_log(r->h, f, VTIO_IOMMU_FAULT_LOG);
    for (unsigned i = 0; i < n; i++) {
        if (f[i].seq <= after || f[i].sid != vtio_device_rid(dev))
            continue;
        if (addr == ~0ull ? f[i].is_interrupt && f[i].reason == reason
                          : !f[i].is_interrupt && f[i].write == write &&
                                f[i].addr == (addr & ~(VTIO_PAGE_SIZE - 1)) &&
                                (!reason || f[i].reason == reason))
            return true;
    }
    return false;
}

static bool all_bytes(const void *p, uint8_t v, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != v)
            return false;
    return true;
}

/* ------------------------------------------------------------------------
 * (a) DMA only where the container mapped.
 */

static void t_unmapped(void)
{
    struct rig r;
    struct user us;
    rig_three(&r);
    user_up(&r, &us, engine(&r, 0), 0, PATTERN);
    CHECK_EQ(copy(&us, us.dst.iova, us.src.iova, BUF), VTIO_DMAE_STATUS_SUCCESS);
    memset(us.dst.va, 0x11, BUF);

    /* The IOVA after the destination was never mapped: an 8 KiB write that
     * starts in the destination's last page is refused whole. */
    uint64_t hole = us.dst.iova + us.dst.size;
    uint64_t seq = vtio_iommu_fault_sync(r.h);
    refused(&us, hole - VTIO_PAGE_SIZE, us.src.iova, 2 * VTIO_PAGE_SIZE,
            VTIO_DMAE_ERR_DST_FAULT, hole);
    CHECK(fault_logged(&r, seq, us.dev, hole, true, 0));
    CHECK(all_bytes(us.dst.va, 0x11, BUF));
    /* Reading it is refused too, and nothing lands in the destination. */
    seq = vtio_iommu_fault_sync(r.h);
    refused(&us, us.dst.iova, hole, VTIO_PAGE_SIZE, VTIO_DMAE_ERR_SRC_FAULT, hole);
    CHECK(fault_logged(&r, seq, us.dev, hole, false, 0));
    CHECK(all_bytes(us.dst.va, 0x11, BUF));

    /* Descriptor fetches too: with its ring base at the hole the channel
     * halts before it can write any record. */
    uint64_t ring = us.u.ring_iova;
    us.u.ring_iova = hole;
    udrv_reset(&us.u);
    seq = vtio_iommu_fault_sync(r.h);
    struct vtio_dmae_completion rec;
    CHECK_OK(udrv_copy(&us.u, us.dst.iova, us.src.iova, BUF, 0, 5));
    udrv_doorbell(&us.u);
    CHECK_ERR(udrv_wait(&us.u, WAIT_NS, &rec), -EIO);
    CHECK_EQ(rec.status, 0);
    CHECK_EQ(vtio_mmio_read32(&us.u.regs, VTIO_DMAE_ERROR), VTIO_DMAE_ERR_DESC_FETCH);
    CHECK(fault_logged(&r, seq, us.dev, hole, false, 0));
    CHECK(all_bytes(us.dst.va, 0x11, BUF));
    us.u.ring_iova = ring;
    udrv_reset(&us.u);
    CHECK_EQ(copy(&us, us.dst.iova, us.src.iova, BUF), VTIO_DMAE_STATUS_SUCCESS);
    user_down(&us);
    rig_down(&r);
}

/* A descriptor whose IOVA is some memory's physical address. */
static void aim_at_phys(struct rig *r, struct user *us, uint64_t pa, const uint8_t *cpu_view)
{
    CHECK_LT(pa, UDRV_IOVA_BASE);         /* so the container cannot have it mapped */
    uint64_t seq = vtio_iommu_fault_sync(r->h);
    refused(us, pa, us->src.iova, VTIO_PAGE_SIZE, VTIO_DMAE_ERR_DST_FAULT, pa);
    CHECK(fault_logged(r, seq, us->dev, pa, true, 0));
    CHECK(all_bytes(cpu_view, PATTERN, VTIO_PAGE_SIZE));
    /* Nor can the device read it: the destination stays as it was. */
    memset(us->dst.va, 0, BUF);
    seq = vtio_iommu_fault_sync(r->h);
    refused(us, us->dst.iova, pa, VTIO_PAGE_SIZE, VTIO_DMAE_ERR_SRC_FAULT, pa);
    CHECK(fault_logged(r, seq, us->dev, pa, false, 0));
    CHECK(all_bytes(us->dst.va, 0, BUF));
}

static void t_physical(void)
{
    struct rig r;
    struct user us;
    rig_three(&r);
    user_up(&r, &us, engine(&r, 0), 0, 0x3c);

    /* A page of the host's. */
    uint64_t host_pa = rig_pages(&r, 0, 0);
    uint8_t *host_va = rig_va(&r, host_pa);
    memset(host_va, PATTERN, VTIO_PAGE_SIZE);
    aim_at_phys(&r, &us, host_pa, host_va);

    /* A page of another process. */
    struct vtio_process *q;
    void *q_va;
    uint64_t q_pa;
    CHECK_OK(vtio_process_create(r.h, "victim", &q));
    CHECK_OK(vtio_process_mmap(q, VTIO_PAGE_SIZE, 0, &q_va));
    memset(q_va, PATTERN, VTIO_PAGE_SIZE);
    CHECK_OK(vtio_process_virt_to_phys(q, q_va, &q_pa));
    aim_at_phys(&r, &us, q_pa, q_va);

    /* Its own memory, by physical address instead of IOVA. */
    uint64_t own_pa;
    CHECK_OK(vtio_process_virt_to_phys(us.p, us.src.va, &own_pa));
    memset(us.src.va, PATTERN, BUF);
    aim_at_phys(&r, &us, own_pa, us.src.va);

    vtio_process_destroy(q);
    vtio_page_free(r.h->pages, host_pa, 0);
    user_down(&us);
    rig_down(&r);
}

static void t_after_unmap(void)
{
    struct rig r;
    struct user us;
    rig_three(&r);
    user_up(&r, &us, engine(&r, 0), 0, PATTERN);
    struct udrv_buf b = { 0 };
    CHECK_OK(udrv_dma_alloc(&us.u, BUF, 0, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                            &b));
    /* Used once, so the IOTLB holds its translation ... */
    CHECK_EQ(copy(&us, b.iova, us.src.iova, BUF), VTIO_DMAE_STATUS_SUCCESS);
    CHECK(all_bytes(b.va, PATTERN, BUF));
    /* ... which UNMAP_DMA must have invalidated by the time it returns. */
    CHECK_EQ(udrv_unmap(&us.u, b.iova, b.size), b.size);
    memset(b.va, 0x77, BUF);
    uint64_t seq = vtio_iommu_fault_sync(r.h);
    refused(&us, b.iova, us.src.iova, BUF, VTIO_DMAE_ERR_DST_FAULT, b.iova);
    CHECK(fault_logged(&r, seq, us.dev, b.iova, true, 0));
    CHECK(all_bytes(b.va, 0x77, BUF));
    seq = vtio_iommu_fault_sync(r.h);
    refused(&us, us.dst.iova, b.iova, BUF, VTIO_DMAE_ERR_SRC_FAULT, b.iova);
    CHECK(fault_logged(&r, seq, us.dev, b.iova, false, 0));
    CHECK_OK(vtio_process_munmap(us.p, b.va, b.size));
    user_down(&us);
    rig_down(&r);
}

static void t_permissions(void)
{
    struct rig r;
    struct user us;
    rig_three(&r);
    user_up(&r, &us, engine(&r, 0), 0, PATTERN);
    CHECK_EQ(copy(&us, us.dst.iova, us.src.iova, VTIO_PAGE_SIZE), VTIO_DMAE_STATUS_SUCCESS);
    /* The source is mapped READ: the device reads it, never writes it. */
    uint64_t seq = vtio_iommu_fault_sync(r.h);
    refused(&us, us.src.iova, us.src.iova + VTIO_PAGE_SIZE, VTIO_PAGE_SIZE,
            VTIO_DMAE_ERR_DST_FAULT, us.src.iova);
    CHECK(fault_logged(&r, seq, us.dev, us.src.iova, true, VTD_FR_WRITE));
    CHECK(all_bytes(us.src.va, PATTERN, BUF));
    /* The destination is mapped WRITE: the device cannot read it back. */
    memset(us.dst.va, 0x42, BUF);
    seq = vtio_iommu_fault_sync(r.h);
    refused(&us, us.dst.iova + VTIO_PAGE_SIZE, us.dst.iova, VTIO_PAGE_SIZE,
            VTIO_DMAE_ERR_SRC_FAULT, us.dst.iova);
    CHECK(fault_logged(&r, seq, us.dev, us.dst.iova, false, VTD_FR_READ));
    CHECK(all_bytes(us.dst.va, 0x42, BUF));
    user_down(&us);
    rig_down(&r);
}

/* ------------------------------------------------------------------------
 * (b) Interrupts only as the host set them up.
 */

static atomic_uint stray_irqs;

static void count_irq(void *opaque, unsigned cpu, unsigned vector)
{
    (void)opaque, (void)cpu, (void)vector;
    atomic_fetch_add(&stray_irqs, 1);
}

static bool eventfd_fired(int efd, int timeout_ms)
{
    struct pollfd pfd = { .fd = efd, .events = POLLIN };
    if (poll(&pfd, 1, timeout_ms) != 1)
        return false;
    uint64_t v;
    return read(efd, &v, sizeof(v)) == (ssize_t)sizeof(v) && v > 0;
}

/* Writes MSI-X entry 0 of the mapped table. */
static void msix_entry0(const struct vtio_mmio *msix, uint64_t addr, uint32_t data)
{
    uint64_t e = VTIO_DMAE_MSIX_TABLE;
    vtio_mmio_write32(msix, e + VTIO_PCI_MSIX_ENTRY_LOWER_ADDR, (uint32_t)addr);
    vtio_mmio_write32(msix, e + VTIO_PCI_MSIX_ENTRY_UPPER_ADDR, (uint32_t)(addr >> 32));
    vtio_mmio_write32(msix, e + VTIO_PCI_MSIX_ENTRY_DATA, data);
}

/* A copy that interrupts when done, then until the IOMMU has logged an
 * interrupt-remapping fault of `reason` by the engine (or 2 s). */
static bool intr_copy_blocked(struct rig *r, struct user *us, int reason)
{
    uint64_t seq = vtio_iommu_fault_sync(r->h);
    CHECK_OK(udrv_copy(&us->u, us->dst.iova, us->src.iova, VTIO_PAGE_SIZE,
                       VTIO_DMAE_FLAG_INTR, 3));
    udrv_doorbell(&us->u);
    CHECK_OK(udrv_wait(&us->u, WAIT_NS, NULL));
    for (int i = 0; i < 2000; i++) {
        if (fault_logged(r, seq, us->dev, ~0ull, false, reason))
            return true;
        usleep(1000);
    }
    return false;
}

static void t_interrupts(void)
{
    struct rig r;
    struct user us;
    rig_three(&r);
    /* Engine 0 under the host's driver: its vector is a real host handler. */
    const struct vtio_pci_function *fn0 =
        vtio_pci_find(r.h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, 0);
    struct vtio_dmae *host_drv;
    struct vtio_dmae_config cfg = { .channels = 1 };
    CHECK_OK(vtio_dmae_probe(r.h, fn0, &cfg, &host_drv));
    user_up(&r, &us, engine(&r, 1), 0, PATTERN);

    /* What the host set up works: the channel's vector signals the eventfd. */
    int efd = eventfd(0, EFD_CLOEXEC);
    CHECK(efd >= 0);
    CHECKF(udrv_irq_eventfd(&us.u, efd) == 0, "%s", us.u.err);
    CHECK_OK(udrv_copy(&us.u, us.dst.iova, us.src.iova, VTIO_PAGE_SIZE, VTIO_DMAE_FLAG_INTR, 1));
    udrv_doorbell(&us.u);
    CHECK(eventfd_fired(efd, 2000));
    CHECK_OK(udrv_wait(&us.u, WAIT_NS, NULL));

    /* The MSI-X table is in BAR2, which the program may map whole. */
    struct vfio_region_info bar2;
    CHECK_OK(udrv_region(&us.u, VFIO_PCI_BAR2_REGION_INDEX, &bar2));
    CHECK(bar2.flags & VFIO_REGION_INFO_FLAG_MMAP);
    struct vtio_mmio msix;
    CHECK_OK(vtio_vfio_mmap(us.p, us.u.device, bar2.offset, bar2.size, UDRV_PROT_RW, &msix));

    /* 1. A compatibility-format message straight at a host vector. */
    atomic_store(&stray_irqs, 0);
    int vec = vtio_intr_alloc_vector(r.h->intr, 0, count_irq, NULL);
    CHECK_GE(vec, 32);
    uint64_t addr;
    uint32_t data;
    vtio_msi_compose(0, (unsigned)vec, &addr, &data);
    msix_entry0(&msix, addr, data);
    CHECK(intr_copy_blocked(&r, &us, VTD_FR_IR_REQ_COMPAT));
    CHECK_EQ(atomic_load(&stray_irqs), 0);
    CHECK_EQ(vtio_intr_count(r.h->intr, 0, (unsigned)vec), 0);
    CHECK(!eventfd_fired(efd, 0));

    /* 2. Engine 0's remappable message: its IRTE takes only engine 0's
     * requester id. */
    struct vtio_mmio msix0;
    CHECK_OK(vtio_pci_bar_mmio(fn0, VTIO_DMAE_BAR_MSIX, &msix0));
    uint64_t e0 = VTIO_DMAE_MSIX_TABLE;
    addr = vtio_mmio_read32(&msix0, e0 + VTIO_PCI_MSIX_ENTRY_LOWER_ADDR) |
           (uint64_t)vtio_mmio_read32(&msix0, e0 + VTIO_PCI_MSIX_ENTRY_UPPER_ADDR) << 32;
    data = vtio_mmio_read32(&msix0, e0 + VTIO_PCI_MSIX_ENTRY_DATA);
    CHECK(addr & VTIO_MSI_ADDR_IF);
    struct vtio_dmae_chan_stats before, after;
    vtio_dmae_chan_stats(vtio_dmae_chan(host_drv, 0), &before);
    msix_entry0(&msix, addr, data);
    CHECK(intr_copy_blocked(&r, &us, VTD_FR_IR_SID_ERR));
    vtio_dmae_chan_stats(vtio_dmae_chan(host_drv, 0), &after);
    CHECK_EQ(after.interrupts, before.interrupts);
    CHECK(!eventfd_fired(efd, 0));

    /* 3. The engine's own DMA into the interrupt window: a data write there
     * is refused, and the window cannot be mapped. */
    refused(&us, VTIO_MSI_WINDOW_BASE, us.src.iova, 4, VTIO_DMAE_ERR_DST_FAULT,
            VTIO_MSI_WINDOW_BASE);
    CHECK_ERR(udrv_map(&us.u, us.dst.va, VTIO_MSI_WINDOW_BASE, VTIO_PAGE_SIZE,
                       VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE), -EINVAL);
    CHECK_EQ(atomic_load(&stray_irqs), 0);
    CHECK(!eventfd_fired(efd, 0));

    CHECK_OK(vtio_vfio_munmap(us.p, &msix));
    user_down(&us);
    close(efd);
    vtio_intr_unregister(r.h->intr, 0, (unsigned)vec);
    vtio_dmae_remove(host_drv);
    rig_down(&r);
}

/* ------------------------------------------------------------------------
 * (c) Containers are apart.
 */

/* a's engine aims at b's IOVAs and at the physical address of b's memory. */
static void cross(struct rig *r, struct user *a, struct user *b)
{
    memset(b->dst.va, 0x5b, BUF);
    uint64_t seq = vtio_iommu_fault_sync(r->h);
    refused(a, b->dst.iova, a->src.iova, VTIO_PAGE_SIZE, VTIO_DMAE_ERR_DST_FAULT, b->dst.iova);
    CHECK(fault_logged(r, seq, a->dev, b->dst.iova, true, 0));
    seq = vtio_iommu_fault_sync(r->h);
    refused(a, a->dst.iova, b->src.iova, VTIO_PAGE_SIZE, VTIO_DMAE_ERR_SRC_FAULT, b->src.iova);
    CHECK(fault_logged(r, seq, a->dev, b->src.iova, false, 0));
    uint64_t pa;
    CHECK_OK(vtio_process_virt_to_phys(b->p, b->dst.va, &pa));
    CHECK_LT(pa, UDRV_IOVA_BASE);
    refused(a, pa, a->src.iova, VTIO_PAGE_SIZE, VTIO_DMAE_ERR_DST_FAULT, pa);
    CHECK(all_bytes(b->dst.va, 0x5b, BUF));
}

static void t_containers(void)
{
    struct rig r;
    struct user a, b;
    rig_three(&r);
    user_up(&r, &a, engine(&r, 1), 0, 0xaa);
    user_up(&r, &b, engine(&r, 2), UDRV_IOVA_BASE + 64 * VTIO_GiB, 0xbb);
    CHECK_NE(a.dst.iova, b.dst.iova);
    cross(&r, &a, &b);
    cross(&r, &b, &a);

    /* The same IOVA in each container is each program's own memory. */
    const uint64_t same = UDRV_IOVA_BASE + 128 * VTIO_GiB;
    void *pa_va, *pb_va;
    CHECK_OK(vtio_process_mmap(a.p, VTIO_PAGE_SIZE, 0, &pa_va));
    CHECK_OK(vtio_process_mmap(b.p, VTIO_PAGE_SIZE, 0, &pb_va));
    CHECK_OK(udrv_map(&a.u, pa_va, same, VTIO_PAGE_SIZE, VFIO_DMA_MAP_FLAG_WRITE));
    CHECK_OK(udrv_map(&b.u, pb_va, same, VTIO_PAGE_SIZE, VFIO_DMA_MAP_FLAG_WRITE));
    CHECK_EQ(copy(&a, same, a.src.iova, VTIO_PAGE_SIZE), VTIO_DMAE_STATUS_SUCCESS);
    CHECK_EQ(copy(&b, same, b.src.iova, VTIO_PAGE_SIZE), VTIO_DMAE_STATUS_SUCCESS);
    CHECK(all_bytes(pa_va, 0xaa, VTIO_PAGE_SIZE));
    CHECK(all_bytes(pb_va, 0xbb, VTIO_PAGE_SIZE));

    user_down(&a);
    user_down(&b);
    rig_down(&r);
}

/* ------------------------------------------------------------------------
 * (d) Closing the container, or exiting, gives everything back.
 */

enum ending { CLOSE_FILES, EXIT };

/* A program maps memory (4 KiB and 2 MiB pages) for its device, copies,
 * then ends as `how` says without unmapping anything. */
static void session(struct rig *r, struct vtio_device *dev, enum ending how)
{
    struct user us;
    user_up(r, &us, dev, 0, PATTERN);
    struct udrv_buf huge = { 0 };
    CHECK_OK(udrv_dma_alloc(&us.u, VTIO_HUGE_SIZE, VTIO_PROCESS_MAP_HUGE,
                            VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, &huge));
    CHECK_EQ(copy(&us, huge.iova, us.src.iova, BUF), VTIO_DMAE_STATUS_SUCCESS);
    struct vtio_process_stats st;
    vtio_process_get_stats(us.p, &st);
    CHECK_GE(st.locked_bytes, VTIO_HUGE_SIZE + 2 * BUF);

    /* The unit translates the IOVA to the program's page now. */
    uint64_t pa, want;
    int reason;
    CHECK_OK(vtio_process_virt_to_phys(us.p, huge.va, &want));
    CHECK_OK(rig_dev_xlate(r, dev, huge.iova, true, &pa, &reason));
    CHECK_EQ(pa, want);

    if (how == CLOSE_FILES) {
        CHECK_OK(vtio_vfio_munmap(us.p, &us.u.bar0));
        CHECK_OK(vtio_vfio_close(us.p, us.u.device));
        CHECK_OK(vtio_vfio_close(us.p, us.u.group));
        CHECK_OK(vtio_vfio_close(us.p, us.u.container));
        vtio_process_get_stats(us.p, &st);
        CHECK_EQ(st.locked_bytes, 0);
        CHECK_EQ(st.open_files, 0);
        CHECK_GE(st.mapped_bytes, VTIO_HUGE_SIZE + 2 * BUF);   /* still the program's */
    }
    vtio_process_destroy(us.p);
    CHECK_ERR(rig_dev_xlate(r, dev, huge.iova, true, &pa, &reason), -EFAULT);
    CHECK_OK(vtio_vfio_unbind(dev));
}

static void t_release(void)
{
    struct rig r;
    rig_three(&r);
    struct vtio_device *dev = engine(&r, 0);
    /* Once first: what the host keeps for good (a blocking domain, say) is
     * allocated by then. */
    session(&r, dev, EXIT);
    uint64_t free0 = vtio_page_alloc_free_bytes(r.h->pages);
    session(&r, dev, CLOSE_FILES);
    CHECK_EQ(vtio_page_alloc_free_bytes(r.h->pages), free0);
    session(&r, dev, EXIT);
    CHECK_EQ(vtio_page_alloc_free_bytes(r.h->pages), free0);
    rig_down(&r);
}

static const struct vtio_test tests[] = {
    { "unmapped", "a descriptor at an IOVA the container never mapped is refused whole (engine "
      "error, IOMMU fault at that page, the mapped part untouched); so is a ring there",
      t_unmapped },
    { "physical", "IOVAs equal to physical addresses of host memory, another process's memory "
      "or the program's own reach nothing, for writes and reads", t_physical },
    { "after_unmap", "after UNMAP_DMA returns, the device can no longer use the IOVA, even "
      "though it was in the IOTLB, and the memory behind it is untouched", t_after_unmap },
    { "permissions", "a READ mapping cannot be written by the device, nor a WRITE mapping "
      "read (permission faults 05h and 06h)", t_permissions },
    { "interrupts", "through its mapped MSI-X table the program can only reach its own "
      "eventfd: a compatibility-format message or another function's remappable one is "
      "blocked by interrupt remapping and logged; DMA into the MSI window is refused",
      t_interrupts },
    { "containers", "two engines in two processes' containers cannot reach each other's "
      "IOVAs or memory, and one IOVA means each container's own page", t_containers },
    { "release", "closing the files or exiting unpins everything (locked bytes 0), frees it "
      "(page allocator back to where it was) and the IOVA stops translating", t_release },
};

VTIO_TEST_MAIN(tests)
