/*
 * vfio-pci: what a VFIO device file does for a PCI function (the DMA
 * engine at 00:03.0), called directly on the host's device: the info
 * ioctls, config space virtualization, BAR access and mmap, interrupts as
 * eventfds (delivery, masking, loopback, teardown, errors), reset, and the
 * clean-up of the last close.
 */
#include "test_dma_fixture.h"

#include <vtio/dev/dma_engine.h>
#include <vtio/iommu.h>
#include <vtio/process.h>
#include <vtio/vfio.h>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "host/proc/proc_priv.h"
#include "host/vfio/vfio_pci_priv.h"

#define CFG(off) (VFIO_PCI_INDEX_TO_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX) + (off))
#define BAR(i, off) (VFIO_PCI_INDEX_TO_OFFSET(i) + (off))
#define NCHAN 4      /* the machine's engines have 4 channels: 4 MSI-X vectors */

struct t {
    struct rig r;
    struct vfio_pci_device *vd;
    const struct vtio_pci_function *fn;
};

static void up_opts(struct t *t, const struct vtio_host_options *o)
{
    rig_up(&t->r, RIG_LAZY, 256 * VTIO_MiB, o);
    t->fn = vtio_device_pci(t->r.dev);
    CHECK_OK(vfio_pci_device_create(t->r.dev, &t->vd));
    CHECK_OK(vfio_pci_enable(t->vd));
}

static void up(struct t *t)
{
    up_opts(t, NULL);
}

static void down(struct t *t)
{
    vfio_pci_device_destroy(t->vd);
    rig_down(&t->r);
}

static long ioc(struct t *t, unsigned long req, void *arg)
{
    return vfio_pci_ioctl(t->vd, req, (unsigned long)(uintptr_t)arg);
}

static uint32_t cfg_rd(struct t *t, uint16_t off, unsigned n)
{
    uint32_t v = 0;
    CHECK_EQ(vfio_pci_rw(t->vd, &v, n, CFG(off), false), n);
    return v;
}

static void cfg_wr(struct t *t, uint16_t off, uint32_t v, unsigned n)
{
    CHECK_EQ(vfio_pci_rw(t->vd, &v, n, CFG(off), true), n);
}

static unsigned count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    unsigned n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* SET_IRQS with a data array (elem bytes each; NULL for DATA_NONE). */
static long set_irqs(struct t *t, uint32_t flags, uint32_t index, uint32_t start,
                     uint32_t count, const void *data, size_t elem)
{
    size_t size = sizeof(struct vfio_irq_set) + count * elem;
    struct vfio_irq_set *s = calloc(1, size);
    CHECK(s != NULL);
    *s = (struct vfio_irq_set){ .argsz = (uint32_t)size, .flags = flags, .index = index,
                                .start = start, .count = count };
    if (data)
        memcpy(s->data, data, count * elem);
    long rc = ioc(t, VFIO_DEVICE_SET_IRQS, s);
    free(s);
    return rc;
}

static long set_eventfds(struct t *t, uint32_t index, uint32_t start, uint32_t count,
                         const int32_t *fds)
{
    return set_irqs(t, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index, start,
                    count, fds, sizeof(int32_t));
}

static long set_none(struct t *t, uint32_t action, uint32_t index, uint32_t start,
                     uint32_t count)
{
    return set_irqs(t, VFIO_IRQ_SET_DATA_NONE | action, index, start, count, NULL, 0);
}

static int new_eventfd(void)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    CHECK(fd >= 0);
    return fd;
}

/* The eventfd's count now (0 if none), without waiting. */
static uint64_t ev_take(int fd)
{
    uint64_t v = 0;
    return read(fd, &v, sizeof(v)) == sizeof(v) ? v : 0;
}

/* Waits (bounded) until the eventfd is signalled; its count. */
static uint64_t ev_wait(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    CHECK_EQ(poll(&p, 1, 10000), 1);
    return ev_take(fd);
}

/* ---- the DMA engine, driven through a BAR0 mapping as a userspace driver
 * would: channel 0, a 4-entry ring, a 512-byte copy */

struct eng {
    struct vtio_mmio regs;
    uint8_t *mem;                  /* one coherent page: ring, completion, buffers */
    vtio_dma_addr_t dma;
};

#define ENG_RING 0
#define ENG_COMPL 256
#define ENG_SRC 1024
#define ENG_DST 2048
#define ENG_LEN 512

static void eng_up(struct t *t, struct eng *e)
{
    CHECK_OK(vfio_pci_mmap(t->vd, BAR(VTIO_DMAE_BAR_REGS, 0), VTIO_DMAE_REGS_SIZE,
                           VTIO_PROT_READ | VTIO_PROT_WRITE, &e->regs));
    e->mem = vtio_dma_alloc_coherent(t->r.dev, VTIO_PAGE_SIZE, &e->dma);
    CHECK(e->mem != NULL);
}

static void eng_down(struct t *t, struct eng *e)
{
    vtio_dma_free_coherent(t->r.dev, VTIO_PAGE_SIZE, e->mem, e->dma);
}

/* Starts one COPY with an interrupt on vector 0 (ring programmed afresh). */
static void eng_copy(struct eng *e)
{
    uint64_t ch = VTIO_DMAE_CHAN_BASE(0);
    memset(e->mem, 0, ENG_SRC);
    vtio_test_fill(e->mem + ENG_SRC, ENG_LEN, 7);
    memset(e->mem + ENG_DST, 0, ENG_LEN);
    struct vtio_dmae_desc d = {
        .op_flags = VTIO_DMAE_OP_FLAGS(VTIO_DMAE_OP_COPY, VTIO_DMAE_FLAG_INTR),
        .src = e->dma + ENG_SRC, .dst = e->dma + ENG_DST, .len = ENG_LEN,
        .completion = e->dma + ENG_COMPL,
    };
    memcpy(e->mem + ENG_RING, &d, sizeof(d));
    vtio_mmio_write32(&e->regs, ch + VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_RESET);
    vtio_mmio_write64(&e->regs, ch + VTIO_DMAE_RING_BASE, e->dma + ENG_RING);
    vtio_mmio_write32(&e->regs, ch + VTIO_DMAE_RING_SIZE, 4);
    vtio_mmio_write32(&e->regs, ch + VTIO_DMAE_INT_VEC, 0);
    vtio_mmio_write32(&e->regs, ch + VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN | VTIO_DMAE_CTRL_IE);
    vtio_mmio_write32(&e->regs, ch + VTIO_DMAE_TAIL, 1);
}

/* Waits (bounded) for the copy's completion record; its status. */
static uint32_t eng_wait(struct eng *e)
{
    uint32_t *status = (uint32_t *)(void *)(e->mem + ENG_COMPL);
    for (long i = 0; i < 2000000; i++) {
        uint32_t s = __atomic_load_n(status, __ATOMIC_ACQUIRE);
        if (s)
            return s;
        sched_yield();
    }
    return 0;
}

static void bme_on(struct t *t)
{
    uint16_t cmd = (uint16_t)cfg_rd(t, VTIO_PCI_COMMAND, 2);
    cfg_wr(t, VTIO_PCI_COMMAND, cmd | VTIO_PCI_COMMAND_MASTER, 2);
}

/* ------------------------------------------------------------------------ */

static void t_device_info(void)
{
    struct t t;
    up(&t);
    struct vfio_device_info info = { .argsz = sizeof(info), .cap_offset = 77 };
    CHECK_OK(ioc(&t, VFIO_DEVICE_GET_INFO, &info));
    CHECK_EQ(info.flags, VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET);
    CHECK_EQ(info.num_regions, VFIO_PCI_NUM_REGIONS);
    CHECK_EQ(info.num_irqs, VFIO_PCI_NUM_IRQS);
    CHECK_EQ(info.cap_offset, 0);
    /* an old caller (16 bytes) does not get cap_offset written */
    struct vfio_device_info old = { .argsz = 16, .cap_offset = 77 };
    CHECK_OK(ioc(&t, VFIO_DEVICE_GET_INFO, &old));
    CHECK_EQ(old.cap_offset, 77);
    CHECK_EQ(old.num_regions, VFIO_PCI_NUM_REGIONS);
    struct vfio_device_info small = { .argsz = 15 };
    CHECK_ERR(ioc(&t, VFIO_DEVICE_GET_INFO, &small), -EINVAL);
    CHECK_ERR(ioc(&t, VFIO_DEVICE_GET_INFO, NULL), -EFAULT);
    CHECK_ERR(ioc(&t, VFIO_IO_(99), &info), -ENOTTY);
    CHECK_ERR(vfio_pci_enable(t.vd), -EBUSY);
    down(&t);
}

static void region(struct t *t, uint32_t index, struct vfio_region_info *ri)
{
    *ri = (struct vfio_region_info){ .argsz = sizeof(*ri), .index = index };
    CHECK_OK(ioc(t, VFIO_DEVICE_GET_REGION_INFO, ri));
    CHECK_EQ(ri->offset, VFIO_PCI_INDEX_TO_OFFSET(index));
}

static void t_region_info(void)
{
    struct t t;
    up(&t);
    struct vfio_region_info ri;
    region(&t, VFIO_PCI_BAR0_REGION_INDEX, &ri);
    CHECK_EQ(ri.size, VTIO_DMAE_REGS_SIZE);
    CHECK_EQ(ri.flags, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
                           VFIO_REGION_INFO_FLAG_MMAP);
    uint32_t empty[] = { 1, 3, 4, 5, VFIO_PCI_ROM_REGION_INDEX };
    for (unsigned i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
        region(&t, empty[i], &ri);
        CHECK_EQ(ri.size, 0);
        CHECK_EQ(ri.flags, 0);
    }
    region(&t, VFIO_PCI_CONFIG_REGION_INDEX, &ri);
    CHECK_EQ(ri.size, 4096);
    CHECK_EQ(ri.flags, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE);

    /* The MSI-X BAR with interrupt remapping: mappable whole, said by a cap */
    struct {
        struct vfio_region_info ri;
        uint8_t caps[64];
    } big = { .ri = { .argsz = sizeof(big), .index = VTIO_DMAE_BAR_MSIX } };
    CHECK_OK(ioc(&t, VFIO_DEVICE_GET_REGION_INFO, &big));
    CHECK_EQ(big.ri.size, VTIO_DMAE_MSIX_SIZE);
    CHECK_EQ(big.ri.flags, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
                               VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS);
    CHECK_EQ(big.ri.cap_offset, sizeof(struct vfio_region_info));
    struct vfio_info_cap_header *h = (void *)((uint8_t *)&big + big.ri.cap_offset);
    CHECK_EQ(h->id, VFIO_REGION_INFO_CAP_MSIX_MAPPABLE);
    CHECK_EQ(h->next, 0);
    /* too small for the chain: argsz says what is needed, no error */
    struct vfio_region_info ri2 = { .argsz = sizeof(ri2), .index = VTIO_DMAE_BAR_MSIX };
    CHECK_OK(ioc(&t, VFIO_DEVICE_GET_REGION_INFO, &ri2));
    CHECK_EQ(ri2.argsz, sizeof(ri2) + sizeof(struct vfio_info_cap_header));
    CHECK_EQ(ri2.cap_offset, 0);
    CHECK(ri2.flags & VFIO_REGION_INFO_FLAG_CAPS);

    ri = (struct vfio_region_info){ .argsz = sizeof(ri), .index = VFIO_PCI_VGA_REGION_INDEX };
    CHECK_ERR(ioc(&t, VFIO_DEVICE_GET_REGION_INFO, &ri), -EINVAL);
    ri.index = VFIO_PCI_NUM_REGIONS;
    CHECK_ERR(ioc(&t, VFIO_DEVICE_GET_REGION_INFO, &ri), -EINVAL);
    ri = (struct vfio_region_info){ .argsz = 31, .index = 0 };
    CHECK_ERR(ioc(&t, VFIO_DEVICE_GET_REGION_INFO, &ri), -EINVAL);
    down(&t);
}

static void t_msix_bar_without_ir(void)
{
    struct t t;
    struct vtio_host_options o = { .no_intr_remap = true };
    up_opts(&t, &o);
    CHECK(t.r.h->irq_remap == NULL);
    struct {
        struct vfio_region_info ri;
        uint8_t caps[64];
    } big = { .ri = { .argsz = sizeof(big), .index = VTIO_DMAE_BAR_MSIX } };
    CHECK_OK(ioc(&t, VFIO_DEVICE_GET_REGION_INFO, &big));
    CHECK(big.ri.flags & VFIO_REGION_INFO_FLAG_MMAP);
    struct vfio_region_info_cap_sparse_mmap *s = (void *)((uint8_t *)&big + big.ri.cap_offset);
    CHECK_EQ(s->header.id, VFIO_REGION_INFO_CAP_SPARSE_MMAP);
    /* the table is in the first page: one area, the rest of the BAR */
    CHECK_EQ(s->nr_areas, 1);
    CHECK_EQ(s->areas[0].offset, VTIO_PAGE_SIZE);
    CHECK_EQ(s->areas[0].size, VTIO_DMAE_MSIX_SIZE - VTIO_PAGE_SIZE);
    struct vtio_mmio m;
    CHECK_ERR(vfio_pci_mmap(t.vd, BAR(VTIO_DMAE_BAR_MSIX, 0), VTIO_PAGE_SIZE, 3, &m), -EINVAL);
    CHECK_ERR(vfio_pci_mmap(t.vd, BAR(VTIO_DMAE_BAR_MSIX, 0), VTIO_DMAE_MSIX_SIZE, 3, &m),
              -EINVAL);
    CHECK_OK(vfio_pci_mmap(t.vd, BAR(VTIO_DMAE_BAR_MSIX, VTIO_PAGE_SIZE),
                           VTIO_DMAE_MSIX_SIZE - VTIO_PAGE_SIZE, 3, &m));
    down(&t);
}

static void t_config_ids_and_caps(void)
{
    struct t t;
    up(&t);
    CHECK_EQ(cfg_rd(&t, VTIO_PCI_VENDOR_ID, 2), VTIO_DMAE_VENDOR_ID);
    CHECK_EQ(cfg_rd(&t, VTIO_PCI_DEVICE_ID, 2), VTIO_DMAE_DEVICE_ID);
    CHECK_EQ(cfg_rd(&t, VTIO_PCI_REVISION_ID, 4) >> 8, VTIO_DMAE_CLASS);
    /* read-only: the write is dropped, not refused */
    cfg_wr(&t, VTIO_PCI_VENDOR_ID, 0x1234, 2);
    CHECK_EQ(cfg_rd(&t, VTIO_PCI_VENDOR_ID, 2), VTIO_DMAE_VENDOR_ID);
    /* the capability list the program walks is the function's */
    unsigned at = cfg_rd(&t, VTIO_PCI_CAPABILITY_LIST, 1), n = 0;
    bool exp = false, msix = false;
    while (at && n++ < 8) {
        uint8_t id = (uint8_t)cfg_rd(&t, (uint16_t)at, 1);
        exp |= id == VTIO_PCI_CAP_ID_EXP && at == t.fn->cap_exp;
        msix |= id == VTIO_PCI_CAP_ID_MSIX && at == t.fn->cap_msix;
        at = cfg_rd(&t, (uint16_t)(at + 1), 1);
    }
    CHECK(exp && msix);
    /* any split works (Linux): one 256-byte read equals dword reads */
    uint8_t all[256];
    CHECK_EQ(vfio_pci_rw(t.vd, all, sizeof(all), CFG(0), false), sizeof(all));
    for (unsigned off = 0; off < 256; off += 4) {
        uint32_t v;
        memcpy(&v, all + off, 4);
        CHECK_EQ(v, cfg_rd(&t, (uint16_t)off, 4));
    }
    uint8_t three[3];
    CHECK_EQ(vfio_pci_rw(t.vd, three, 3, CFG(1), false), 3);
    CHECK_MEM_EQ(three, all + 1, 3);
    CHECK_ERR(vfio_pci_rw(t.vd, all, 8, CFG(4092), false), -EFAULT);
    CHECK_ERR(vfio_pci_rw(t.vd, all, 1, CFG(4096), false), -EFAULT);
    down(&t);
}

static void t_config_bars(void)
{
    struct t t;
    up(&t);
    uint32_t phys0 = vtio_pci_cfg_read32(t.fn, VTIO_PCI_BAR0);
    uint32_t phys1 = vtio_pci_cfg_read32(t.fn, VTIO_PCI_BAR0 + 4);
    /* reads show the placed BAR with its type bits (64-bit memory) */
    CHECK_EQ(cfg_rd(&t, VTIO_PCI_BAR0, 4), phys0);
    CHECK_EQ(phys0 & 0xf, VTIO_PCI_BAR_MEM_TYPE_64);
    /* sizing: all ones reads back the size mask; the function's BAR stays */
    cfg_wr(&t, VTIO_PCI_BAR0, ~0u, 4);
    cfg_wr(&t, VTIO_PCI_BAR0 + 4, ~0u, 4);
    CHECK_EQ(cfg_rd(&t, VTIO_PCI_BAR0, 4),
             (uint32_t)~(VTIO_DMAE_REGS_SIZE - 1) | VTIO_PCI_BAR_MEM_TYPE_64);
    CHECK_EQ(cfg_rd(&t, VTIO_PCI_BAR0 + 4, 4), ~0u);
    CHECK_EQ(vtio_pci_cfg_read32(t.fn, VTIO_PCI_BAR0), phys0);
    CHECK_EQ(vtio_pci_cfg_read32(t.fn, VTIO_PCI_BAR0 + 4), phys1);
    /* any address reads back aligned to the size; registers still answer */
    cfg_wr(&t, VTIO_PCI_BAR0, 0x12345678, 4);
    CHECK_EQ(cfg_rd(&t, VTIO_PCI_BAR0, 4), 0x12340000u | VTIO_PCI_BAR_MEM_TYPE_64);
    uint32_t id = 0;
    CHECK_EQ(vfio_pci_rw(t.vd, &id, 4, BAR(0, VTIO_DMAE_ID), false), 4);
    CHECK_EQ(id, (uint32_t)VTIO_DMAE_VENDOR_ID << 16 | VTIO_DMAE_DEVICE_ID);
    /* empty slots and the ROM read 0 whatever is written */
    cfg_wr(&t, VTIO_PCI_BAR0 + 16, ~0u, 4);
    CHECK_EQ(cfg_rd(&t, VTIO_PCI_BAR0 + 16, 4), 0);
    cfg_wr(&t, 0x30, ~0u, 4);
    CHECK_EQ(cfg_rd(&t, 0x30, 4), 0);
    down(&t);
}

static void t_config_command(void)
{
    struct t t;
    up(&t);
    uint16_t cmd = (uint16_t)cfg_rd(&t, VTIO_PCI_COMMAND, 2);
    CHECK(cmd & VTIO_PCI_COMMAND_MEM);
    CHECK(!(cmd & VTIO_PCI_COMMAND_MASTER));
    /* bus mastering through config space reaches the function */
    bme_on(&t);
    CHECK(vtio_pci_cfg_read16(t.fn, VTIO_PCI_COMMAND) & VTIO_PCI_COMMAND_MASTER);
    CHECK(cfg_rd(&t, VTIO_PCI_COMMAND, 2) & VTIO_PCI_COMMAND_MASTER);
    /* INTx Disable is virtual: the program sees its bit, the function not */
    uint16_t phys = vtio_pci_cfg_read16(t.fn, VTIO_PCI_COMMAND);
    cmd = (uint16_t)cfg_rd(&t, VTIO_PCI_COMMAND, 2);
    cfg_wr(&t, VTIO_PCI_COMMAND, cmd ^ VTIO_PCI_COMMAND_INTX_DISABLE, 2);
    CHECK_EQ(cfg_rd(&t, VTIO_PCI_COMMAND, 2), cmd ^ VTIO_PCI_COMMAND_INTX_DISABLE);
    CHECK_EQ(vtio_pci_cfg_read16(t.fn, VTIO_PCI_COMMAND), phys);
    /* memory decoding off: BAR access through read/write is -EIO */
    cfg_wr(&t, VTIO_PCI_COMMAND, cmd & ~VTIO_PCI_COMMAND_MEM, 2);
    uint32_t v;
    CHECK_ERR(vfio_pci_rw(t.vd, &v, 4, BAR(0, 0), false), -EIO);
    cfg_wr(&t, VTIO_PCI_COMMAND, cmd, 2);
    CHECK_EQ(vfio_pci_rw(t.vd, &v, 4, BAR(0, 0), false), 4);
    down(&t);
}

static void t_config_msix_control(void)
{
    struct t t;
    up(&t);
    uint16_t at = t.fn->cap_msix + VTIO_PCI_MSIX_FLAGS;
    uint16_t flags = (uint16_t)cfg_rd(&t, at, 2);
    CHECK_EQ(flags & VTIO_PCI_MSIX_FLAGS_QSIZE, NCHAN - 1);
    /* the program cannot enable MSI-X (or mask it) through config space */
    cfg_wr(&t, at, flags | VTIO_PCI_MSIX_FLAGS_ENABLE | VTIO_PCI_MSIX_FLAGS_MASKALL, 2);
    CHECK_EQ(cfg_rd(&t, at, 2), flags);
    CHECK(!(vtio_pci_cfg_read16(t.fn, at) & VTIO_PCI_MSIX_FLAGS_ENABLE));
    /* SET_IRQS does, and the program reads what the host set */
    int efd = new_eventfd();
    int32_t fds[1] = { efd };
    CHECK_OK(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, fds));
    CHECK(cfg_rd(&t, at, 2) & VTIO_PCI_MSIX_FLAGS_ENABLE);
    cfg_wr(&t, at, 0, 2);
    CHECK(vtio_pci_cfg_read16(t.fn, at) & VTIO_PCI_MSIX_FLAGS_ENABLE);
    close(efd);
    down(&t);
}

static void t_bar_rw(void)
{
    struct t t;
    up(&t);
    uint64_t v64 = 0;
    CHECK_EQ(vfio_pci_rw(t.vd, &v64, 8, BAR(0, VTIO_DMAE_ID), false), 8);
    CHECK_EQ((uint32_t)v64, (uint32_t)VTIO_DMAE_VENDOR_ID << 16 | VTIO_DMAE_DEVICE_ID);
    CHECK_EQ(v64 >> 32, 0x00010000);    /* VERSION 1.0 */
    /* a 64-bit register written and read back through the file */
    uint64_t base = 0xabcdef00ull, back = 0;
    uint64_t reg = VTIO_DMAE_CHAN_BASE(1) + VTIO_DMAE_RING_BASE;
    CHECK_EQ(vfio_pci_rw(t.vd, &base, 8, BAR(0, reg), true), 8);
    CHECK_EQ(vfio_pci_rw(t.vd, &back, 8, BAR(0, reg), false), 8);
    CHECK_EQ(back, base);
    CHECK_EQ(vtio_mem_read64(t.fn->mem, t.fn->bar[0].base + reg), base);
    /* clamped at the end of the BAR; past it, or no BAR there: -EINVAL */
    uint8_t buf[16];
    CHECK_EQ(vfio_pci_rw(t.vd, buf, 16, BAR(0, VTIO_DMAE_REGS_SIZE - 8), false), 8);
    CHECK_ERR(vfio_pci_rw(t.vd, buf, 4, BAR(0, VTIO_DMAE_REGS_SIZE), false), -EINVAL);
    CHECK_ERR(vfio_pci_rw(t.vd, buf, 4, BAR(1, 0), false), -EINVAL);
    CHECK_ERR(vfio_pci_rw(t.vd, buf, 4, BAR(VFIO_PCI_ROM_REGION_INDEX, 0), false), -EINVAL);
    CHECK_ERR(vfio_pci_rw(t.vd, buf, 4, BAR(VFIO_PCI_VGA_REGION_INDEX, 0), false), -EINVAL);
    CHECK_ERR(vfio_pci_rw(t.vd, buf, 4, BAR(12, 0), false), -EINVAL);
    /* the MSI-X table is the host's: reads all ones, writes dropped */
    int efd = new_eventfd();
    int32_t fds[1] = { efd };
    CHECK_OK(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, fds));
    uint64_t entry = t.fn->bar[VTIO_DMAE_BAR_MSIX].base + VTIO_DMAE_MSIX_TABLE;
    uint32_t data = vtio_mem_read32(t.fn->mem, entry + VTIO_PCI_MSIX_ENTRY_DATA);
    uint32_t junk = 0xdeadbeef;
    CHECK_EQ(vfio_pci_rw(t.vd, &junk, 4, BAR(2, VTIO_PCI_MSIX_ENTRY_DATA), true), 4);
    CHECK_EQ(vtio_mem_read32(t.fn->mem, entry + VTIO_PCI_MSIX_ENTRY_DATA), data);
    uint8_t table[32];
    CHECK_EQ(vfio_pci_rw(t.vd, table, sizeof(table), BAR(2, 0), false), sizeof(table));
    for (unsigned i = 0; i < sizeof(table); i++)
        CHECK_EQ(table[i], 0xff);
    /* ... but the PBA after it is readable */
    uint64_t pba = ~0ull;
    CHECK_EQ(vfio_pci_rw(t.vd, &pba, 8, BAR(2, VTIO_DMAE_MSIX_PBA), false), 8);
    CHECK_EQ(pba, 0);
    close(efd);
    down(&t);
}

static void t_mmap(void)
{
    struct t t;
    up(&t);
    struct vtio_mmio m;
    CHECK_OK(vfio_pci_mmap(t.vd, BAR(0, 0), VTIO_DMAE_REGS_SIZE, 3, &m));
    CHECK_EQ(m.base, t.fn->bar[0].base);
    CHECK_EQ(m.size, VTIO_DMAE_REGS_SIZE);
    CHECK_EQ(vtio_mmio_read32(&m, VTIO_DMAE_ID),
             (uint32_t)VTIO_DMAE_VENDOR_ID << 16 | VTIO_DMAE_DEVICE_ID);
    CHECK_OK(vfio_pci_mmap(t.vd, BAR(0, VTIO_DMAE_CHAN_BASE(0)), VTIO_PAGE_SIZE, 1, &m));
    CHECK_EQ(m.base, t.fn->bar[0].base + VTIO_DMAE_CHAN_BASE(0));
    CHECK_EQ(vtio_mmio_read32(&m, VTIO_DMAE_INT_VEC), 0);
    /* with interrupt remapping the MSI-X BAR maps whole */
    CHECK_OK(vfio_pci_mmap(t.vd, BAR(2, 0), VTIO_DMAE_MSIX_SIZE, 3, &m));
    CHECK_ERR(vfio_pci_mmap(t.vd, BAR(0, 8), VTIO_PAGE_SIZE, 3, &m), -EINVAL);
    CHECK_ERR(vfio_pci_mmap(t.vd, BAR(0, 0), VTIO_DMAE_REGS_SIZE + 1, 3, &m), -EINVAL);
    CHECK_ERR(vfio_pci_mmap(t.vd, BAR(0, VTIO_PAGE_SIZE), VTIO_DMAE_REGS_SIZE, 3, &m), -EINVAL);
    CHECK_ERR(vfio_pci_mmap(t.vd, BAR(0, 0), 0, 3, &m), -EINVAL);
    CHECK_ERR(vfio_pci_mmap(t.vd, BAR(0, 0), ~0ull, 3, &m), -EINVAL);
    CHECK_ERR(vfio_pci_mmap(t.vd, BAR(0, 0), VTIO_PAGE_SIZE, 4, &m), -EINVAL);
    CHECK_ERR(vfio_pci_mmap(t.vd, BAR(1, 0), VTIO_PAGE_SIZE, 3, &m), -EINVAL);
    CHECK_ERR(vfio_pci_mmap(t.vd, CFG(0), VTIO_PAGE_SIZE, 3, &m), -EINVAL);
    down(&t);
}

static void t_irq_info(void)
{
    struct t t;
    up(&t);
    struct vfio_irq_info ii = { .argsz = sizeof(ii), .index = VFIO_PCI_MSIX_IRQ_INDEX };
    CHECK_OK(ioc(&t, VFIO_DEVICE_GET_IRQ_INFO, &ii));
    CHECK_EQ(ii.count, NCHAN);
    CHECK_EQ(ii.flags, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE | VFIO_IRQ_INFO_MASKABLE);
    ii = (struct vfio_irq_info){ .argsz = sizeof(ii), .index = VFIO_PCI_INTX_IRQ_INDEX };
    CHECK_OK(ioc(&t, VFIO_DEVICE_GET_IRQ_INFO, &ii));
    CHECK_EQ(ii.count, 0);
    ii = (struct vfio_irq_info){ .argsz = sizeof(ii), .index = VFIO_PCI_MSI_IRQ_INDEX };
    CHECK_OK(ioc(&t, VFIO_DEVICE_GET_IRQ_INFO, &ii));
    CHECK_EQ(ii.count, t.fn->cap_msi ? 1u << ((vtio_pci_cfg_read16(t.fn, t.fn->cap_msi + 2) &
                                               VTIO_PCI_MSI_FLAGS_QMASK) >> 1)
                                     : 0);
    uint32_t one[] = { VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_REQ_IRQ_INDEX };
    for (unsigned i = 0; i < 2; i++) {
        ii = (struct vfio_irq_info){ .argsz = sizeof(ii), .index = one[i] };
        CHECK_OK(ioc(&t, VFIO_DEVICE_GET_IRQ_INFO, &ii));
        CHECK_EQ(ii.count, 1);
    }
    ii = (struct vfio_irq_info){ .argsz = sizeof(ii), .index = VFIO_PCI_NUM_IRQS };
    CHECK_ERR(ioc(&t, VFIO_DEVICE_GET_IRQ_INFO, &ii), -EINVAL);
    ii = (struct vfio_irq_info){ .argsz = 15, .index = 0 };
    CHECK_ERR(ioc(&t, VFIO_DEVICE_GET_IRQ_INFO, &ii), -EINVAL);
    down(&t);
}

static void t_msix_delivery(void)
{
    struct t t;
    up(&t);
    struct eng e;
    eng_up(&t, &e);
    bme_on(&t);
    int efd = new_eventfd();
    int32_t fds[1] = { efd };
    CHECK_OK(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, fds));
    eng_copy(&e);
    CHECK_EQ(eng_wait(&e), VTIO_DMAE_STATUS_SUCCESS);
    CHECK_MEM_EQ(e.mem + ENG_DST, e.mem + ENG_SRC, ENG_LEN);
    CHECK_EQ(ev_wait(efd), 1);
    /* the program's descriptor may go: the device holds its own reference */
    int efd2 = dup(efd);
    close(efd);
    eng_copy(&e);
    CHECK_EQ(eng_wait(&e), VTIO_DMAE_STATUS_SUCCESS);
    CHECK_EQ(ev_wait(efd2), 1);
    close(efd2);
    eng_down(&t, &e);
    down(&t);
}

static void t_bme_gates_dma(void)
{
    struct t t;
    up(&t);
    struct eng e;
    eng_up(&t, &e);
    /* enable left bus mastering off: the engine cannot fetch */
    eng_copy(&e);
    uint64_t ch = VTIO_DMAE_CHAN_BASE(0);
    uint32_t st = 0;
    for (long i = 0; i < 2000000 && VTIO_DMAE_STATUS_STATE(st) != VTIO_DMAE_STATE_HALTED; i++) {
        st = vtio_mmio_read32(&e.regs, ch + VTIO_DMAE_STATUS);
        sched_yield();
    }
    CHECK_EQ(VTIO_DMAE_STATUS_STATE(st), VTIO_DMAE_STATE_HALTED);
    CHECK_EQ(vtio_mmio_read32(&e.regs, ch + VTIO_DMAE_ERROR), VTIO_DMAE_ERR_DESC_FETCH);
    bme_on(&t);
    eng_copy(&e);
    CHECK_EQ(eng_wait(&e), VTIO_DMAE_STATUS_SUCCESS);
    eng_down(&t, &e);
    down(&t);
}

/* Waits (bounded) for MSI-X vector 0's pending bit. */
static bool pba_pending0(struct t *t)
{
    for (long i = 0; i < 2000000; i++) {
        uint64_t pba = 0;
        CHECK_EQ(vfio_pci_rw(t->vd, &pba, 8, BAR(2, VTIO_DMAE_MSIX_PBA), false), 8);
        if (pba & 1)
            return true;
        sched_yield();
    }
    return false;
}

static void t_msix_mask(void)
{
    struct t t;
    up(&t);
    struct eng e;
    eng_up(&t, &e);
    bme_on(&t);
    int efd = new_eventfd();
    int32_t fds[1] = { efd };
    CHECK_OK(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, fds));
    CHECK_OK(set_none(&t, VFIO_IRQ_SET_ACTION_MASK, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1));
    eng_copy(&e);
    CHECK_EQ(eng_wait(&e), VTIO_DMAE_STATUS_SUCCESS);
    CHECK(pba_pending0(&t));
    CHECK_EQ(ev_take(efd), 0);
    /* unmasking delivers what was pending, once */
    uint8_t yes = 1;
    CHECK_OK(set_irqs(&t, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_UNMASK,
                      VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, &yes, 1));
    CHECK_EQ(ev_wait(efd), 1);
    CHECK_EQ(ev_take(efd), 0);
    /* masking survives a change of eventfd */
    CHECK_OK(set_none(&t, VFIO_IRQ_SET_ACTION_MASK, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1));
    int efd2 = new_eventfd();
    fds[0] = efd2;
    CHECK_OK(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, fds));
    eng_copy(&e);
    CHECK_EQ(eng_wait(&e), VTIO_DMAE_STATUS_SUCCESS);
    CHECK(pba_pending0(&t));
    CHECK_EQ(ev_take(efd2), 0);
    CHECK_OK(set_none(&t, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1));
    CHECK_EQ(ev_wait(efd2), 1);
    CHECK_EQ(ev_take(efd), 0);
    /* errors: not enabled vectors, masking by eventfd */
    CHECK_ERR(set_none(&t, VFIO_IRQ_SET_ACTION_MASK, VFIO_PCI_MSIX_IRQ_INDEX, 1, 1), -EINVAL);
    CHECK_ERR(set_irqs(&t, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK,
                       VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, fds, 4), -ENOTTY);
    close(efd);
    close(efd2);
    eng_down(&t, &e);
    down(&t);
}

static void t_loopback_and_teardown(void)
{
    struct t t;
    up(&t);
    unsigned fds_before = count_fds();
    int a = new_eventfd(), b = new_eventfd();
    int32_t fds[2] = { a, b };
    CHECK_OK(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 0, 2, fds));
    CHECK_EQ(count_fds(), fds_before + 4);    /* ours and the device's dups */
    CHECK_OK(set_none(&t, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 2));
    CHECK_EQ(ev_take(a), 1);
    CHECK_EQ(ev_take(b), 1);
    uint8_t bools[2] = { 0, 1 };
    CHECK_OK(set_irqs(&t, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER,
                      VFIO_PCI_MSIX_IRQ_INDEX, 0, 2, bools, 1));
    CHECK_EQ(ev_take(a), 0);
    CHECK_EQ(ev_take(b), 1);
    /* fd -1 tears one vector down: its dup is closed, loopback skips it */
    int32_t none = -1;
    CHECK_OK(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 1, 1, &none));
    CHECK_EQ(count_fds(), fds_before + 3);
    unsigned cpu, vec;
    CHECK_ERR(vtio_pci_irq_vector(t.r.h, t.fn, 1, &cpu, &vec), -ENOENT);
    CHECK_OK(vtio_pci_irq_vector(t.r.h, t.fn, 0, &cpu, &vec));
    CHECK_OK(set_none(&t, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 2));
    CHECK_EQ(ev_take(a), 1);
    CHECK_EQ(ev_take(b), 0);
    /* NORESIZE: the index was enabled with 2 vectors */
    int32_t more[3] = { a, a, a };
    CHECK_ERR(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 0, 3, more), -EINVAL);
    /* count 0, DATA_NONE: the index off, every dup closed */
    CHECK_OK(set_none(&t, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 0));
    CHECK_EQ(count_fds(), fds_before + 2);
    CHECK(!(vtio_pci_cfg_read16(t.fn, t.fn->cap_msix + 2) & VTIO_PCI_MSIX_FLAGS_ENABLE));
    CHECK_ERR(set_none(&t, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1), -EINVAL);
    /* it can be enabled again, with another size */
    CHECK_OK(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 2, 1, fds));
    CHECK_OK(set_none(&t, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 2, 1));
    CHECK_EQ(ev_take(a), 1);
    close(a);
    close(b);
    down(&t);
}

static void t_set_irqs_errors(void)
{
    struct t t;
    up(&t);
    int a = new_eventfd(), b = new_eventfd();
    int32_t fds[2] = { a, -1 };
    CHECK_OK(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 0, 2, fds));
    unsigned fds_before = count_fds();
    uint32_t trig = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    /* header */
    struct vfio_irq_set s = { .argsz = 19, .flags = trig, .index = VFIO_PCI_MSIX_IRQ_INDEX };
    CHECK_ERR(ioc(&t, VFIO_DEVICE_SET_IRQS, &s), -EINVAL);
    CHECK_ERR(set_eventfds(&t, VFIO_PCI_NUM_IRQS, 0, 1, fds), -EINVAL);
    CHECK_ERR(set_eventfds(&t, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, fds), -EINVAL);
    CHECK_ERR(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, NCHAN - 1, 2, fds), -EINVAL);
    CHECK_ERR(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, NCHAN, 0, fds), -EINVAL);
    CHECK_ERR(set_irqs(&t, trig | (1u << 6), VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, fds, 4), -EINVAL);
    CHECK_ERR(set_irqs(&t, trig | VFIO_IRQ_SET_DATA_BOOL, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, fds, 4),
              -EINVAL);
    CHECK_ERR(set_irqs(&t, trig | VFIO_IRQ_SET_ACTION_MASK, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, fds,
                       4), -ENOTTY);
    CHECK_ERR(set_irqs(&t, VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, NULL, 0),
              -ENOTTY);
    struct {
        struct vfio_irq_set s;
        int32_t fd;
    } short_data = { { .argsz = sizeof(struct vfio_irq_set) + 4, .flags = trig,
                       .index = VFIO_PCI_MSIX_IRQ_INDEX, .count = 2 }, a };
    CHECK_ERR(ioc(&t, VFIO_DEVICE_SET_IRQS, &short_data), -EINVAL);
    /* bad descriptors; a failed call changes nothing */
    int closed = 1000;    /* (a number just closed would be reused by our dups) */
    CHECK(fcntl(closed, F_GETFD) < 0);
    int32_t bad[2] = { b, closed };
    CHECK_ERR(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 0, 2, bad), -EBADF);
    int p[2];
    CHECK_OK(pipe(p));
    bad[1] = p[0];
    CHECK_ERR(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 0, 2, bad), -EINVAL);
    close(p[0]);
    close(p[1]);
    CHECK_EQ(count_fds(), fds_before);
    CHECK_OK(set_none(&t, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 2));
    CHECK_EQ(ev_take(a), 1);
    CHECK_EQ(ev_take(b), 0);
    unsigned cpu, vec;
    CHECK_ERR(vtio_pci_irq_vector(t.r.h, t.fn, 1, &cpu, &vec), -ENOENT);
    /* one kind at a time: MSI while MSI-X is on */
    int32_t one = a;
    CHECK_ERR(set_eventfds(&t, VFIO_PCI_MSI_IRQ_INDEX, 0, 1, &one), -EINVAL);
    /* ERR and REQ hold one eventfd each; loopback signals them */
    CHECK_ERR(set_none(&t, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_ERR_IRQ_INDEX, 0, 1), -EINVAL);
    CHECK_OK(set_eventfds(&t, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, &one));
    CHECK_OK(set_none(&t, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_REQ_IRQ_INDEX, 0, 1));
    CHECK_EQ(ev_take(a), 1);
    CHECK_ERR(set_eventfds(&t, VFIO_PCI_REQ_IRQ_INDEX, 0, 2, fds), -EINVAL);
    CHECK_ERR(set_none(&t, VFIO_IRQ_SET_ACTION_MASK, VFIO_PCI_REQ_IRQ_INDEX, 0, 1), -ENOTTY);
    close(a);
    close(b);
    down(&t);
}

static void nop_handler(void *opaque, unsigned cpu, unsigned vector)
{
    (void)opaque;
    (void)cpu;
    (void)vector;
}

/* Takes every free CPU vector (recorded in taken[*n...]). */
static void take_all_vectors(struct vtio_intr *intr, unsigned (*taken)[2], unsigned *n)
{
    for (unsigned cpu = 0; cpu < vtio_intr_ncpus(intr); cpu++)
        for (int v; (v = vtio_intr_alloc_vector(intr, cpu, nop_handler, NULL)) >= 0; (*n)++) {
            taken[*n][0] = cpu;
            taken[*n][1] = (unsigned)v;
        }
}

static void t_set_irqs_no_vectors_left(void)
{
    struct t t;
    up(&t);
    int a = new_eventfd(), b = new_eventfd();
    int32_t fds[3] = { a, -1, -1 };
    CHECK_OK(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 0, 3, fds));
    /* every CPU vector taken: the host cannot route a new vector */
    struct vtio_intr *intr = t.r.h->intr;
    static unsigned taken[64 * 256][2];
    unsigned n = 0;
    take_all_vectors(intr, taken, &n);
    unsigned fds_before = count_fds();
    /* vector 0 would change eventfd, vectors 1 and 2 would be new: nothing
     * happens, vector 0 keeps its eventfd */
    int32_t more[3] = { b, a, b };
    CHECK_ERR(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 0, 3, more), -ENOSPC);
    CHECK_EQ(count_fds(), fds_before);
    CHECK_OK(set_none(&t, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 3));
    CHECK_EQ(ev_take(a), 1);
    CHECK_EQ(ev_take(b), 0);
    unsigned cpu, vec;
    CHECK_ERR(vtio_pci_irq_vector(t.r.h, t.fn, 1, &cpu, &vec), -ENOENT);
    /* nor can a disabled index be enabled */
    CHECK_OK(set_none(&t, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 0));
    take_all_vectors(intr, taken, &n);
    CHECK_ERR(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, fds), -ENOSPC);
    CHECK(!(vtio_pci_cfg_read16(t.fn, t.fn->cap_msix + 2) & VTIO_PCI_MSIX_FLAGS_ENABLE));
    while (n--)
        CHECK_OK(vtio_intr_unregister(intr, taken[n][0], taken[n][1]));
    CHECK_OK(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, fds));
    close(a);
    close(b);
    down(&t);
}

/* Waits (bounded) for MSI vector 0's pending bit (read through config). */
static bool msi_pending0(struct t *t)
{
    uint16_t at = t->fn->cap_msi + VTIO_PCI_MSI_PENDING_64;
    for (long i = 0; i < 2000000; i++) {
        if (cfg_rd(t, at, 4) & 1)
            return true;
        sched_yield();
    }
    return false;
}

static void t_msi(void)
{
    struct t t;
    up(&t);
    struct vfio_irq_info ii = { .argsz = sizeof(ii), .index = VFIO_PCI_MSI_IRQ_INDEX };
    CHECK_OK(ioc(&t, VFIO_DEVICE_GET_IRQ_INFO, &ii));
    CHECK_EQ(ii.count, VTIO_DMAE_MSI_VECTORS(NCHAN));
    CHECK_EQ(ii.flags, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE | VFIO_IRQ_INFO_MASKABLE);
    struct eng e;
    eng_up(&t, &e);
    bme_on(&t);
    int a = new_eventfd(), b = new_eventfd();
    /* 3 vectors: the function gets 4 (a power of two), the program uses 3 */
    int32_t fds[3] = { a, b, b };
    CHECK_OK(set_eventfds(&t, VFIO_PCI_MSI_IRQ_INDEX, 0, 3, fds));
    uint16_t at = t.fn->cap_msi + VTIO_PCI_MSI_FLAGS;
    CHECK(vtio_pci_cfg_read16(t.fn, at) & VTIO_PCI_MSI_FLAGS_ENABLE);
    CHECK_ERR(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, fds), -EINVAL);
    CHECK_ERR(set_eventfds(&t, VFIO_PCI_MSI_IRQ_INDEX, 3, 1, fds), -EINVAL);
    /* the engine's channel 0 raises MSI vector 0 */
    eng_copy(&e);
    CHECK_EQ(eng_wait(&e), VTIO_DMAE_STATUS_SUCCESS);
    CHECK_EQ(ev_wait(a), 1);
    CHECK_EQ(ev_take(b), 0);
    /* masked: pending in the capability, delivered on unmask */
    CHECK_OK(set_none(&t, VFIO_IRQ_SET_ACTION_MASK, VFIO_PCI_MSI_IRQ_INDEX, 0, 1));
    eng_copy(&e);
    CHECK_EQ(eng_wait(&e), VTIO_DMAE_STATUS_SUCCESS);
    CHECK(msi_pending0(&t));
    CHECK_EQ(ev_take(a), 0);
    CHECK_OK(set_none(&t, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_PCI_MSI_IRQ_INDEX, 0, 1));
    CHECK_EQ(ev_wait(a), 1);
    CHECK_OK(set_none(&t, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSI_IRQ_INDEX, 1, 2));
    CHECK_EQ(ev_take(b), 2);
    /* the virtual control word: enable and queue size at most what SET_IRQS did */
    cfg_wr(&t, at, (uint16_t)cfg_rd(&t, at, 2) | 0x70 | VTIO_PCI_MSI_FLAGS_ENABLE, 2);
    CHECK_EQ((cfg_rd(&t, at, 2) & VTIO_PCI_MSI_FLAGS_QSIZE) >> 4, 2);
    CHECK(cfg_rd(&t, at, 2) & VTIO_PCI_MSI_FLAGS_ENABLE);
    /* the message address and data are the program's copy, not the host's */
    uint16_t lo = t.fn->cap_msi + VTIO_PCI_MSI_ADDRESS_LO;
    uint32_t host_lo = vtio_pci_cfg_read32(t.fn, lo);
    cfg_wr(&t, lo, 0xfee01000, 4);
    CHECK_EQ(cfg_rd(&t, lo, 4), 0xfee01000);
    CHECK_EQ(vtio_pci_cfg_read32(t.fn, lo), host_lo);
    CHECK_OK(set_none(&t, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSI_IRQ_INDEX, 0, 0));
    CHECK(!(vtio_pci_cfg_read16(t.fn, at) & VTIO_PCI_MSI_FLAGS_ENABLE));
    /* with MSI off the program cannot turn it on through config */
    cfg_wr(&t, at, (uint16_t)cfg_rd(&t, at, 2) | VTIO_PCI_MSI_FLAGS_ENABLE, 2);
    CHECK(!(cfg_rd(&t, at, 2) & VTIO_PCI_MSI_FLAGS_ENABLE));
    CHECK(!(vtio_pci_cfg_read16(t.fn, at) & VTIO_PCI_MSI_FLAGS_ENABLE));
    close(a);
    close(b);
    eng_down(&t, &e);
    down(&t);
}

static void t_reset(void)
{
    struct t t;
    up(&t);
    struct eng e;
    eng_up(&t, &e);
    bme_on(&t);
    int efd = new_eventfd();
    int32_t fds[1] = { efd };
    CHECK_OK(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, fds));
    cfg_wr(&t, VTIO_PCI_BAR0, ~0u, 4);    /* virtual state survives a reset */
    uint64_t reg = VTIO_DMAE_CHAN_BASE(2) + VTIO_DMAE_RING_BASE;
    vtio_mmio_write64(&e.regs, reg, 0x1000);
    CHECK_OK(ioc(&t, VFIO_DEVICE_RESET, NULL));
    CHECK_EQ(vtio_mmio_read64(&e.regs, reg), 0);    /* the engine was reset */
    CHECK_EQ(cfg_rd(&t, VTIO_PCI_BAR0, 4),
             (uint32_t)~(VTIO_DMAE_REGS_SIZE - 1) | VTIO_PCI_BAR_MEM_TYPE_64);
    CHECK(cfg_rd(&t, VTIO_PCI_COMMAND, 2) & VTIO_PCI_COMMAND_MASTER);
    /* interrupts kept their set-up: a copy still reaches the eventfd */
    eng_copy(&e);
    CHECK_EQ(eng_wait(&e), VTIO_DMAE_STATUS_SUCCESS);
    CHECK_EQ(ev_wait(efd), 1);
    /* FLR through config space does the same and reads back 0 */
    uint16_t devctl = t.fn->cap_exp + VTIO_PCI_EXP_DEVCTL;
    vtio_mmio_write64(&e.regs, reg, 0x1000);
    cfg_wr(&t, devctl, cfg_rd(&t, devctl, 2) | VTIO_PCI_EXP_DEVCTL_BCR_FLR, 2);
    CHECK_EQ(vtio_mmio_read64(&e.regs, reg), 0);
    CHECK(!(cfg_rd(&t, devctl, 2) & VTIO_PCI_EXP_DEVCTL_BCR_FLR));
    eng_copy(&e);
    CHECK_EQ(eng_wait(&e), VTIO_DMAE_STATUS_SUCCESS);
    CHECK_EQ(ev_wait(efd), 1);
    close(efd);
    eng_down(&t, &e);
    down(&t);
}

static void t_disable_cleans_up(void)
{
    struct t t;
    up(&t);
    uint32_t bar0 = vtio_pci_cfg_read32(t.fn, VTIO_PCI_BAR0);
    unsigned fds_before = count_fds();
    int a = new_eventfd();
    int32_t fds[3] = { a, a, a };
    CHECK_OK(set_eventfds(&t, VFIO_PCI_MSIX_IRQ_INDEX, 0, 3, fds));
    CHECK_OK(set_eventfds(&t, VFIO_PCI_ERR_IRQ_INDEX, 0, 1, fds));
    CHECK_OK(set_none(&t, VFIO_IRQ_SET_ACTION_MASK, VFIO_PCI_MSIX_IRQ_INDEX, 1, 1));
    bme_on(&t);
    cfg_wr(&t, VTIO_PCI_COMMAND, (uint16_t)cfg_rd(&t, VTIO_PCI_COMMAND, 2) &
                                     ~VTIO_PCI_COMMAND_MEM, 2);
    close(a);
    CHECK_EQ(count_fds(), fds_before + 4);
    vfio_pci_disable(t.vd);
    /* every dup closed, no irq, no DMA, the BARs where the host put them */
    CHECK_EQ(count_fds(), fds_before);
    CHECK_EQ(vtio_pci_irq_type(t.r.h, t.fn, NULL), VTIO_PCI_IRQ_NONE);
    CHECK(!(vtio_pci_cfg_read16(t.fn, t.fn->cap_msix + 2) & VTIO_PCI_MSIX_FLAGS_ENABLE));
    uint16_t cmd = vtio_pci_cfg_read16(t.fn, VTIO_PCI_COMMAND);
    CHECK(!(cmd & VTIO_PCI_COMMAND_MASTER));
    CHECK(cmd & VTIO_PCI_COMMAND_MEM);
    CHECK_EQ(vtio_pci_cfg_read32(t.fn, VTIO_PCI_BAR0), bar0);
    /* closed: the file's calls are refused; a new open starts afresh */
    struct vfio_device_info info = { .argsz = sizeof(info) };
    CHECK_ERR(ioc(&t, VFIO_DEVICE_GET_INFO, &info), -ENODEV);
    uint32_t v;
    CHECK_ERR(vfio_pci_rw(t.vd, &v, 4, CFG(0), false), -ENODEV);
    CHECK_OK(vfio_pci_enable(t.vd));
    CHECK(!(cfg_rd(&t, VTIO_PCI_COMMAND, 2) & VTIO_PCI_COMMAND_MASTER));
    CHECK_EQ(vfio_pci_rw(t.vd, &v, 4, BAR(0, VTIO_DMAE_ID), false), 4);
    down(&t);
}

/* ---- through the public API, as a userspace driver (vfio.h) */

static void t_public_api(void)
{
    struct rig r;
    rig_up(&r, RIG_LAZY, 256 * VTIO_MiB, NULL);
    struct vtio_process *p;
    CHECK_OK(vtio_process_create(r.h, "udrv", &p));
    CHECK_OK(vtio_vfio_bind(r.dev));
    char path[32];
    snprintf(path, sizeof(path), "/dev/vfio/%u", vtio_iommu_group_id(vtio_iommu_group_get(r.dev)));
    int container = vtio_vfio_open(p, "/dev/vfio/vfio"), group = vtio_vfio_open(p, path);
    CHECK_OK(container);
    CHECK_OK(group);
    CHECK_OK(vtio_vfio_ioctl(p, group, VFIO_GROUP_SET_CONTAINER, &container));
    CHECK_OK(vtio_vfio_ioctl(p, container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
    int dev = (int)vtio_vfio_ioctl(p, group, VFIO_GROUP_GET_DEVICE_FD, vtio_device_name(r.dev));
    CHECK_OK(dev);
    struct vfio_device_info info = { .argsz = sizeof(info) };
    CHECK_OK(vtio_vfio_ioctl(p, dev, VFIO_DEVICE_GET_INFO, &info));
    CHECK_EQ(info.num_regions, VFIO_PCI_NUM_REGIONS);
    uint32_t id = 0;
    CHECK_EQ(vtio_vfio_pread(p, dev, &id, 4, BAR(0, VTIO_DMAE_ID)), 4);
    CHECK_EQ(id, (uint32_t)VTIO_DMAE_VENDOR_ID << 16 | VTIO_DMAE_DEVICE_ID);
    struct vtio_mmio regs;
    CHECK_OK(vtio_vfio_mmap(p, dev, BAR(0, 0), VTIO_DMAE_REGS_SIZE, 3, &regs));
    /* DMA memory at IOVA 1 MiB, through the container */
    uint8_t *mem;
    CHECK_OK(vtio_process_mmap(p, VTIO_PAGE_SIZE, 0, (void **)&mem));
    struct vfio_iommu_type1_dma_map map = {
        .argsz = sizeof(map), .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
        .vaddr = (uint64_t)(uintptr_t)mem, .iova = 1 << 20, .size = VTIO_PAGE_SIZE,
    };
    CHECK_OK(vtio_vfio_ioctl(p, container, VFIO_IOMMU_MAP_DMA, &map));
    unsigned fds_before = count_fds();
    int efd = new_eventfd();
    struct {
        struct vfio_irq_set s;
        int32_t fd;
    } irq = { { .argsz = sizeof(irq), .index = VFIO_PCI_MSIX_IRQ_INDEX, .count = 1,
                .flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER }, efd };
    CHECK_OK(vtio_vfio_ioctl(p, dev, VFIO_DEVICE_SET_IRQS, &irq));
    uint16_t cmd = 0;
    CHECK_EQ(vtio_vfio_pread(p, dev, &cmd, 2, CFG(VTIO_PCI_COMMAND)), 2);
    cmd |= VTIO_PCI_COMMAND_MASTER;
    CHECK_EQ(vtio_vfio_pwrite(p, dev, &cmd, 2, CFG(VTIO_PCI_COMMAND)), 2);
    struct eng e = { .regs = regs, .mem = mem, .dma = 1 << 20 };
    eng_copy(&e);
    CHECK_EQ(eng_wait(&e), VTIO_DMAE_STATUS_SUCCESS);
    CHECK_MEM_EQ(mem + ENG_DST, mem + ENG_SRC, ENG_LEN);
    CHECK_EQ(ev_wait(efd), 1);
    /* the last close (the mapping holds the file too) cleans up */
    CHECK_OK(vtio_vfio_munmap(p, &regs));
    CHECK_OK(vtio_vfio_close(p, dev));
    close(efd);
    CHECK_EQ(count_fds(), fds_before);
    CHECK(!(vtio_pci_cfg_read16(vtio_device_pci(r.dev), VTIO_PCI_COMMAND) &
            VTIO_PCI_COMMAND_MASTER));
    CHECK_OK(vtio_vfio_close(p, group));
    CHECK_OK(vtio_vfio_close(p, container));
    vtio_process_destroy(p);
    CHECK_OK(vtio_vfio_unbind(r.dev));
    rig_down(&r);
}

static const struct vtio_test tests[] = {
    { "device_info", "GET_INFO reports PCI|RESET, 9 regions, 5 irq indexes, honours argsz",
      t_device_info },
    { "region_info", "GET_REGION_INFO sizes every region, flags mmap, chains MSIX_MAPPABLE "
      "on the MSI-X BAR with remapping, refuses VGA, bad index and short argsz",
      t_region_info },
    { "msix_bar_without_ir", "without interrupt remapping the MSI-X table pages are excluded "
      "from mmap and a SPARSE_MMAP cap lists the rest", t_msix_bar_without_ir },
    { "config_ids_and_caps", "config reads ids and the capability list through, drops "
      "read-only writes, splits any access, refuses past 4 KiB", t_config_ids_and_caps },
    { "config_bars", "BARs are virtual: sizing reads the size mask, the physical BAR never "
      "moves", t_config_bars },
    { "config_command", "COMMAND: bus mastering reaches the function, INTx Disable is "
      "virtual, memory decoding off makes BAR access -EIO", t_config_command },
    { "config_msix_control", "the program cannot enable MSI-X through config; it reads what "
      "SET_IRQS set", t_config_msix_control },
    { "bar_rw", "read/write reach the engine's registers in pieces up to 8 bytes, clamp at "
      "the BAR's end, skip the MSI-X table", t_bar_rw },
    { "mmap", "mmap gives register windows inside mappable BARs and refuses the rest",
      t_mmap },
    { "irq_info", "GET_IRQ_INFO: MSI-X count and flags, INTx 0, ERR/REQ 1, errors",
      t_irq_info },
    { "msix_delivery", "an engine interrupt arrives on the program's eventfd, also after the "
      "program closed its descriptor", t_msix_delivery },
    { "bme_gates_dma", "the engine's DMA fails until the program sets bus mastering in config",
      t_bme_gates_dma },
    { "msix_mask", "a masked vector's interrupt waits in the PBA and arrives once on unmask",
      t_msix_mask },
    { "loopback_and_teardown", "DATA_NONE/BOOL triggers signal eventfds; fd -1 and count 0 "
      "tear down and close the dups", t_loopback_and_teardown },
    { "set_irqs_errors", "SET_IRQS validates header, data, descriptors (-EBADF, -EINVAL) and a "
      "failed call changes nothing", t_set_irqs_errors },
    { "set_irqs_no_vectors_left", "a SET_IRQS the host cannot route (-ENOSPC) changes "
      "nothing: eventfds, vectors and the index stay as they were", t_set_irqs_no_vectors_left },
    { "msi", "MSI: the engine's interrupt on the eventfd, mask/unmask via pending bits, "
      "exclusive with MSI-X, virtual control word and message", t_msi },
    { "reset", "RESET and config FLR reset the engine and keep BARs, bus mastering, virtual "
      "config and interrupts", t_reset },
    { "public_api", "through vtio_vfio_*: a device file of a container with type1 copies "
      "into the program's mapped memory with an eventfd interrupt; close cleans up",
      t_public_api },
    { "disable_cleans_up", "the last close frees irqs, closes the dups, stops DMA, puts the "
      "BARs back; a new open starts clean", t_disable_cleans_up },
};

VTIO_TEST_MAIN(tests)
