/*
 * vfio_dmae: a poll-mode userspace driver for vtio's DMA engine, written
 * against the VFIO API alone (include/vtio/vfio.h), as DPDK's and SPDK's
 * drivers are written against Linux's.  examples/vfio_dma_copy.c walks
 * through it; bench/bench_vfio_copy.c, tools/vtio/demo_vfio.c and
 * tests/integration/test_vfio_safety.c use it too.
 *
 * What it touches: the descriptors its process holds (container, group,
 * device), BAR0 mapped into the program, configuration space through the
 * device file (pread/pwrite at the CONFIG region's offset), the program's
 * own memory (vtio_process_mmap) mapped for the device with MAP_DMA at
 * IOVAs the driver chooses, and an eventfd for the interrupt.  It knows
 * the device only from its datasheet (include/vtio/dev/dma_engine.h).
 *
 * Set-up (udrv_open): container, group (must be VIABLE), SET_CONTAINER,
 * SET_IOMMU TYPE1v2, GET_INFO (page sizes, the usable IOVA ranges),
 * GET_DEVICE_FD, the BAR0 and CONFIG regions, BAR0 mmap'd.  Memory
 * (udrv_dma_alloc): process memory, then MAP_DMA at the next free IOVA of
 * the usable ranges, from UDRV_IOVA_BASE up (far above any RAM address, so
 * an IOVA is never mistaken for a physical address), aligned to the page
 * size so 2 MiB pages map as 2 MiB IOMMU pages.  IOVAs are handed out once
 * and not reused, as a DPDK process maps its memory once at start-up.
 *
 * One channel per driver (udrv_start): its ring and completion records in
 * one mapped block; descriptor slot i always names record i.
 *   head  the next descriptor to reap      tail  the next slot to fill
 *   rung  the tail the device was last given (the TAIL register)
 *   head <= rung <= tail, tail - head <= entries - 1 (TAIL == HEAD is an
 *   empty ring)
 * Submitting zeroes the slot's record and writes the descriptor with plain
 * stores into the ring; udrv_doorbell() writes TAIL through the mapped BAR,
 * a release store that publishes them (x86 keeps stores in order; the
 * compiler barrier before it is DPDK's rte_io_wmb).  Reaping reads
 * each record's status word with acquire (the device writes it last), in
 * ring order; a slot is reused only once reaped.  A failed descriptor
 * halts the channel: its record says why, and udrv_reset() starts again.
 * A descriptor that could not even be fetched writes no record, so the
 * poll loop reads STATUS now and then (a register read is a bus round
 * trip, kept off the fast path).
 *
 * Completion is polled (udrv_poll / udrv_wait) or, with an eventfd set by
 * udrv_irq_eventfd(), awaited with read(2) on it (udrv_wait_irq).
 *
 * Errors: each call returns 0 (or a count) or -errno, and leaves a message
 * in u->err.  Threads: one thread at a time per driver (a DPDK queue is
 * one lcore's).
 */
#ifndef VTIO_EXAMPLES_VFIO_DMAE_H
#define VTIO_EXAMPLES_VFIO_DMAE_H

#include <vtio/dev/dma_engine.h>
#include <vtio/mmio.h>
#include <vtio/pci.h>
#include <vtio/process.h>
#include <vtio/vfio.h>

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define UDRV_IOVA_BASE   (256ull << 30)    /* first IOVA handed out */
#define UDRV_MAX_RANGES  8
#define UDRV_STATUS_EVERY 1024            /* empty polls between STATUS reads */
#define UDRV_PROT_RW     3                /* PROT_READ | PROT_WRITE */

/* Process memory mapped for the device. */
struct udrv_buf {
    void *va;              /* the program's pointer */
    uint64_t iova;         /* the device's address */
    uint64_t size;
};

struct udrv {
    struct vtio_process *proc;
    int container, group, device;          /* -1: not open */
    char err[256];

    /* From VFIO_IOMMU_GET_INFO. */
    uint64_t iova_pgsizes;
    struct vfio_iova_range ranges[UDRV_MAX_RANGES];
    unsigned nranges;
    uint64_t iova_next;                    /* bump allocator */

    /* From VFIO_DEVICE_GET_REGION_INFO. */
    uint64_t config_off;
    uint64_t bar0_off, bar0_size;
    struct vtio_mmio bar0;                 /* BAR0 mmap'd; mem NULL: not mapped */

    /* The channel. */
    unsigned chan, entries;
    struct vtio_mmio regs;                 /* its register page */
    struct udrv_buf ring_buf;              /* ring, then records */
    struct vtio_dmae_desc *ring;
    struct vtio_dmae_completion *rec;
    uint64_t ring_iova, rec_iova;
    uint64_t head, tail, rung;             /* rung: the tail last written to TAIL */
    unsigned looks;
    int irq_fd;                            /* eventfd of the channel's vector; -1 */

    uint64_t completed, bytes;             /* reaped successfully */
};

/* Records "what: why" in u->err and returns rc.  udrv_fail is for a failed
 * vtio call (why: vtio_last_error()); udrv_error for the driver's own
 * checks (why: the errno's text). */
static inline int udrv_vfail_(struct udrv *u, int rc, bool lib, const char *fmt, va_list ap)
{
    char what[160];
    vsnprintf(what, sizeof(what), fmt, ap);
    const char *why = lib ? vtio_last_error() : NULL;
    snprintf(u->err, sizeof(u->err), "%s: %s", what, why && *why ? why : strerror(-rc));
    return rc;
}

static inline int udrv_fail(struct udrv *u, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int udrv_fail(struct udrv *u, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    udrv_vfail_(u, rc, true, fmt, ap);
    va_end(ap);
    return rc;
}

static inline int udrv_error(struct udrv *u, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int udrv_error(struct udrv *u, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    udrv_vfail_(u, rc, false, fmt, ap);
    va_end(ap);
    return rc;
}

/* ------------------------------------------------------------------------
 * Container, group, device.
 */

/* Reads the IOVA-range capability out of a GET_INFO answer. */
static inline void udrv_parse_iova_ranges(struct udrv *u, const uint8_t *info, size_t size,
                                          uint32_t cap_offset)
{
    u->nranges = 0;
    for (uint32_t off = cap_offset; off && off + sizeof(struct vfio_info_cap_header) <= size;) {
        const struct vfio_info_cap_header *hdr = (const void *)(info + off);
        const struct vfio_iommu_type1_info_cap_iova_range *cap = (const void *)hdr;
        if (hdr->id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE && off + sizeof(*cap) <= size) {
            for (uint32_t i = 0; i < cap->nr_iovas && u->nranges < UDRV_MAX_RANGES &&
                                 off + sizeof(*cap) + (i + 1) * sizeof(cap->iova_ranges[0]) <= size;
                 i++)
                u->ranges[u->nranges++] = cap->iova_ranges[i];
        }
        if (hdr->next <= off)
            break;                         /* the chain only goes forward */
        off = hdr->next;
    }
}

/* VFIO_IOMMU_GET_INFO twice, as Linux users do: once for the size the
 * capability chain needs, once with room for it. */
static inline int udrv_iommu_info(struct udrv *u)
{
    union {
        struct vfio_iommu_type1_info info;
        uint8_t bytes[1024];
    } buf;
    memset(&buf, 0, sizeof(buf));
    buf.info.argsz = sizeof(buf.info);
    long rc = vtio_vfio_ioctl(u->proc, u->container, VFIO_IOMMU_GET_INFO, &buf.info);
    if (rc < 0)
        return udrv_fail(u, (int)rc, "VFIO_IOMMU_GET_INFO");
    uint32_t need = buf.info.argsz;
    if (need > sizeof(buf))
        return udrv_error(u, -ENOSPC, "GET_INFO wants %u bytes", need);
    memset(&buf, 0, sizeof(buf));
    buf.info.argsz = need;
    rc = vtio_vfio_ioctl(u->proc, u->container, VFIO_IOMMU_GET_INFO, &buf.info);
    if (rc < 0)
        return udrv_fail(u, (int)rc, "VFIO_IOMMU_GET_INFO");
    u->iova_pgsizes = buf.info.flags & VFIO_IOMMU_INFO_PGSIZES ? buf.info.iova_pgsizes : 4096;
    if (buf.info.flags & VFIO_IOMMU_INFO_CAPS)
        udrv_parse_iova_ranges(u, buf.bytes, need, buf.info.cap_offset);
    if (u->nranges == 0)
        return udrv_error(u, -ENODEV, "GET_INFO reports no usable IOVA range");
    /* IOVAs from UDRV_IOVA_BASE if the ranges reach it, else from 1 MiB up
     * (never IOVA 0, a classic stray pointer). */
    u->iova_next = u->ranges[u->nranges - 1].end >= UDRV_IOVA_BASE ? UDRV_IOVA_BASE : 1u << 20;
    return 0;
}

static inline int udrv_region(struct udrv *u, unsigned index, struct vfio_region_info *ri)
{
    memset(ri, 0, sizeof(*ri));
    ri->argsz = sizeof(*ri);
    ri->index = index;
    long rc = vtio_vfio_ioctl(u->proc, u->device, VFIO_DEVICE_GET_REGION_INFO, ri);
    return rc < 0 ? udrv_fail(u, (int)rc, "GET_REGION_INFO %u", index) : 0;
}

/* The device file's regions: configuration space and BAR0, which is
 * mapped into the program. */
static inline int udrv_device_regions(struct udrv *u)
{
    struct vfio_device_info di = { .argsz = sizeof(di) };
    long rc = vtio_vfio_ioctl(u->proc, u->device, VFIO_DEVICE_GET_INFO, &di);
    if (rc < 0)
        return udrv_fail(u, (int)rc, "VFIO_DEVICE_GET_INFO");
    if (!(di.flags & VFIO_DEVICE_FLAGS_PCI) || di.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX)
        return udrv_error(u, -ENODEV, "not a vfio-pci device");
    struct vfio_region_info cfg, bar;
    if ((rc = udrv_region(u, VFIO_PCI_CONFIG_REGION_INDEX, &cfg)) < 0 ||
        (rc = udrv_region(u, VFIO_PCI_BAR0_REGION_INDEX, &bar)) < 0)
        return (int)rc;
    if (!(bar.flags & VFIO_REGION_INFO_FLAG_MMAP) || bar.size < VTIO_DMAE_REGS_SIZE)
        return udrv_error(u, -ENODEV, "BAR0 is not mappable or too small");
    u->config_off = cfg.offset;
    u->bar0_off = bar.offset;
    u->bar0_size = bar.size;
    rc = vtio_vfio_mmap(u->proc, u->device, bar.offset, bar.size, UDRV_PROT_RW, &u->bar0);
    if (rc < 0) {
        u->bar0.mem = NULL;
        return udrv_fail(u, (int)rc, "mmap BAR0");
    }
    uint32_t id = vtio_mmio_read32(&u->bar0, VTIO_DMAE_ID);
    if (id != ((uint32_t)VTIO_DMAE_VENDOR_ID << 16 | VTIO_DMAE_DEVICE_ID))
        return udrv_error(u, -ENODEV, "BAR0 ID register reads %#x", id);
    return 0;
}

/*
 * Opens everything for the device named dev_name ("0000:00:03.0") of IOMMU
 * group group_id (/sys/bus/pci/devices/<name>/iommu_group), already bound
 * to vfio-pci, in a new container of process p.  On failure, what was
 * opened is closed again.
 */
static inline int udrv_open(struct udrv *u, struct vtio_process *p, unsigned group_id,
                            const char *dev_name);
static inline void udrv_close(struct udrv *u);

static inline int udrv_open_steps(struct udrv *u, unsigned group_id, const char *dev_name)
{
    char path[32];
    long rc = u->container = vtio_vfio_open(u->proc, "/dev/vfio/vfio");
    if (rc < 0)
        return udrv_fail(u, (int)rc, "open /dev/vfio/vfio");
    if (vtio_vfio_ioctl(u->proc, u->container, VFIO_GET_API_VERSION, 0) != VFIO_API_VERSION ||
        vtio_vfio_ioctl(u->proc, u->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) != 1)
        return udrv_error(u, -EINVAL, "unknown VFIO API or no type1v2 IOMMU");
    snprintf(path, sizeof(path), "/dev/vfio/%u", group_id);
    rc = u->group = vtio_vfio_open(u->proc, path);
    if (rc < 0)
        return udrv_fail(u, (int)rc, "open %s", path);
    struct vfio_group_status st = { .argsz = sizeof(st) };
    rc = vtio_vfio_ioctl(u->proc, u->group, VFIO_GROUP_GET_STATUS, &st);
    if (rc < 0)
        return udrv_fail(u, (int)rc, "VFIO_GROUP_GET_STATUS");
    if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE))
        return udrv_error(u, -EPERM, "group %u is not viable (bind all its devices to vfio-pci)",
                         group_id);
    if ((rc = vtio_vfio_ioctl(u->proc, u->group, VFIO_GROUP_SET_CONTAINER, &u->container)) < 0)
        return udrv_fail(u, (int)rc, "VFIO_GROUP_SET_CONTAINER");
    if ((rc = vtio_vfio_ioctl(u->proc, u->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU)) < 0)
        return udrv_fail(u, (int)rc, "VFIO_SET_IOMMU");
    if ((rc = udrv_iommu_info(u)) < 0)
        return (int)rc;
    rc = u->device = (int)vtio_vfio_ioctl(u->proc, u->group, VFIO_GROUP_GET_DEVICE_FD, dev_name);
    if (rc < 0)
        return udrv_fail(u, (int)rc, "VFIO_GROUP_GET_DEVICE_FD %s", dev_name);
    return udrv_device_regions(u);
}

static inline int udrv_open(struct udrv *u, struct vtio_process *p, unsigned group_id,
                            const char *dev_name)
{
    memset(u, 0, sizeof(*u));
    u->proc = p;
    u->container = u->group = u->device = u->irq_fd = -1;
    int rc = udrv_open_steps(u, group_id, dev_name);
    if (rc < 0) {
        char why[sizeof(u->err)];
        memcpy(why, u->err, sizeof(why));
        udrv_close(u);
        memcpy(u->err, why, sizeof(why));
    }
    return rc;
}

/* ------------------------------------------------------------------------
 * Configuration space, through the device file.
 */

static inline int udrv_cfg_read16(struct udrv *u, uint16_t off, uint16_t *v)
{
    ssize_t n = vtio_vfio_pread(u->proc, u->device, v, 2, u->config_off + off);
    return n == 2 ? 0 : udrv_fail(u, n < 0 ? (int)n : -EIO, "config read at %#x", off);
}

static inline int udrv_cfg_write16(struct udrv *u, uint16_t off, uint16_t v)
{
    ssize_t n = vtio_vfio_pwrite(u->proc, u->device, &v, 2, u->config_off + off);
    return n == 2 ? 0 : udrv_fail(u, n < 0 ? (int)n : -EIO, "config write at %#x", off);
}

/* COMMAND.BME: whether the function may master the bus (do DMA). */
static inline int udrv_set_master(struct udrv *u, bool on)
{
    uint16_t cmd;
    int rc = udrv_cfg_read16(u, VTIO_PCI_COMMAND, &cmd);
    if (rc == 0) {
        cmd = on ? cmd | VTIO_PCI_COMMAND_MASTER : cmd & ~VTIO_PCI_COMMAND_MASTER;
        rc = udrv_cfg_write16(u, VTIO_PCI_COMMAND, cmd);
    }
    return rc;
}

/* ------------------------------------------------------------------------
 * Memory for the device: the program's own, mapped with MAP_DMA.
 */

static inline uint64_t udrv_align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) & ~(a - 1);
}

/* The next free IOVA for size bytes aligned to align, at or above
 * u->iova_next; 0 if none is left. */
static inline uint64_t udrv_iova_alloc(struct udrv *u, uint64_t size, uint64_t align)
{
    for (unsigned i = 0; i < u->nranges; i++) {
        const struct vfio_iova_range *r = &u->ranges[i];
        uint64_t from = u->iova_next > r->start ? u->iova_next : r->start;
        uint64_t iova = udrv_align_up(from, align);
        if (iova >= from && iova <= r->end && size - 1 <= r->end - iova) {
            u->iova_next = iova + size;
            return iova;
        }
    }
    return 0;
}

/* MAP_DMA of [va, va + size) at iova; flags: VFIO_DMA_MAP_FLAG_READ/WRITE
 * (what the device may do). */
static inline int udrv_map(struct udrv *u, void *va, uint64_t iova, uint64_t size,
                           uint32_t flags)
{
    struct vfio_iommu_type1_dma_map map = {
        .argsz = sizeof(map), .flags = flags,
        .vaddr = (uint64_t)(uintptr_t)va, .iova = iova, .size = size,
    };
    long rc = vtio_vfio_ioctl(u->proc, u->container, VFIO_IOMMU_MAP_DMA, &map);
    return rc < 0 ? udrv_fail(u, (int)rc, "MAP_DMA %#llx+%#llx", (unsigned long long)iova,
                              (unsigned long long)size)
                  : 0;
}

/* UNMAP_DMA; @returns the bytes unmapped. */
static inline int64_t udrv_unmap(struct udrv *u, uint64_t iova, uint64_t size)
{
    struct vfio_iommu_type1_dma_unmap unmap = { .argsz = sizeof(unmap), .iova = iova,
                                                .size = size };
    long rc = vtio_vfio_ioctl(u->proc, u->container, VFIO_IOMMU_UNMAP_DMA, &unmap);
    return rc < 0 ? udrv_fail(u, (int)rc, "UNMAP_DMA %#llx", (unsigned long long)iova)
                  : (int64_t)unmap.size;
}

/*
 * size bytes of process memory (4 KiB pages, or 2 MiB with
 * VTIO_PROCESS_MAP_HUGE in mmap_flags) mapped for the device with
 * map_flags (VFIO_DMA_MAP_FLAG_READ: the device reads it; _WRITE: writes).
 */
static inline int udrv_dma_alloc(struct udrv *u, uint64_t size, unsigned mmap_flags,
                                 uint32_t map_flags, struct udrv_buf *b)
{
    uint64_t page = mmap_flags & VTIO_PROCESS_MAP_HUGE ? VTIO_HUGE_SIZE : VTIO_PAGE_SIZE;
    size = udrv_align_up(size, page);
    void *va;
    int rc = vtio_process_mmap(u->proc, size, mmap_flags, &va);
    if (rc < 0)
        return udrv_fail(u, rc, "mmap %llu bytes", (unsigned long long)size);
    uint64_t iova = udrv_iova_alloc(u, size, page);
    rc = iova ? udrv_map(u, va, iova, size, map_flags)
              : udrv_error(u, -ENOSPC, "no IOVA range has %llu bytes left",
                          (unsigned long long)size);
    if (rc < 0) {
        vtio_process_munmap(u->proc, va, size);
        return rc;
    }
    *b = (struct udrv_buf){ .va = va, .iova = iova, .size = size };
    return 0;
}

static inline int udrv_dma_free(struct udrv *u, struct udrv_buf *b)
{
    if (!b->va)
        return 0;
    int64_t n = udrv_unmap(u, b->iova, b->size);
    int rc = vtio_process_munmap(u->proc, b->va, b->size);
    *b = (struct udrv_buf){ 0 };
    return n < 0 ? (int)n : rc;
}

/* ------------------------------------------------------------------------
 * The channel.
 */

static inline void udrv_chan_program(struct udrv *u)
{
    vtio_mmio_write32(&u->regs, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_RESET);
    vtio_mmio_write64(&u->regs, VTIO_DMAE_RING_BASE, u->ring_iova);
    vtio_mmio_write32(&u->regs, VTIO_DMAE_RING_SIZE, u->entries);
    vtio_mmio_write32(&u->regs, VTIO_DMAE_INT_VEC, 0);
    vtio_mmio_write32(&u->regs, VTIO_DMAE_CTRL,
                      VTIO_DMAE_CTRL_EN | (u->irq_fd >= 0 ? VTIO_DMAE_CTRL_IE : 0));
    u->head = u->tail = u->rung = 0;
    u->looks = 0;
}

/*
 * Takes channel chan with a ring of entries (power of two, 2..4096):
 * maps ring and records (the device reads the ring and writes records),
 * turns bus mastering on and starts the channel, interrupts off.
 */
static inline int udrv_start(struct udrv *u, unsigned chan, unsigned entries)
{
    uint32_t cap = vtio_mmio_read32(&u->bar0, VTIO_DMAE_CAP);
    if (chan >= VTIO_DMAE_CAP_NCHAN(cap))
        return udrv_error(u, -EINVAL, "the engine has %u channels", VTIO_DMAE_CAP_NCHAN(cap));
    if (entries < 2 || entries > 4096 || (entries & (entries - 1)))
        return udrv_error(u, -EINVAL, "ring of %u entries", entries);
    uint64_t ring_bytes = (uint64_t)entries * sizeof(struct vtio_dmae_desc);
    uint64_t rec_bytes = (uint64_t)entries * sizeof(struct vtio_dmae_completion);
    int rc = udrv_dma_alloc(u, ring_bytes + rec_bytes, 0,
                            VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, &u->ring_buf);
    if (rc < 0)
        return rc;
    u->chan = chan;
    u->entries = entries;
    u->regs = (struct vtio_mmio){ u->bar0.mem, u->bar0.base + VTIO_DMAE_CHAN_BASE(chan),
                                  0x1000 };
    u->ring = u->ring_buf.va;
    u->rec = (struct vtio_dmae_completion *)((uint8_t *)u->ring_buf.va + ring_bytes);
    u->ring_iova = u->ring_buf.iova;
    u->rec_iova = u->ring_buf.iova + ring_bytes;
    if ((rc = udrv_set_master(u, true)) < 0)
        return rc;
    udrv_chan_program(u);
    return 0;
}

/* Starts the channel again after a halt: what was not reaped is dropped. */
static inline int udrv_reset(struct udrv *u)
{
    udrv_chan_program(u);
    return 0;
}

/* Free slots in the ring. */
static inline unsigned udrv_space(const struct udrv *u)
{
    return (unsigned)(u->entries - 1 - (u->tail - u->head));
}

/*
 * Queues one descriptor (op: VTIO_DMAE_OP_*, flags: VTIO_DMAE_FLAG_*) of
 * IOVAs; the device sees it at the next udrv_doorbell().
 * @returns 0; -EBUSY the ring is full (reap first).
 */
static inline int udrv_submit(struct udrv *u, uint32_t op, uint64_t dst, uint64_t src,
                              uint64_t len, unsigned flags, uint64_t cookie)
{
    if (udrv_space(u) == 0)
        return -EBUSY;
    unsigned slot = (unsigned)(u->tail % u->entries);
    struct vtio_dmae_desc d = {
        .op_flags = VTIO_DMAE_OP_FLAGS(op, flags), .src = src, .dst = dst, .len = len,
        .completion = u->rec_iova + (uint64_t)slot * sizeof(struct vtio_dmae_completion),
        .cookie = cookie,
    };
    memset(&u->rec[slot], 0, sizeof(u->rec[slot]));
    memcpy(&u->ring[slot], &d, sizeof(d));
    u->tail++;
    return 0;
}

static inline int udrv_copy(struct udrv *u, uint64_t dst, uint64_t src, uint64_t len,
                            unsigned flags, uint64_t cookie)
{
    return udrv_submit(u, VTIO_DMAE_OP_COPY, dst, src, len, flags, cookie);
}

/* Hands what was submitted to the device. */
static inline void udrv_doorbell(struct udrv *u)
{
    if (u->rung == u->tail)
        return;
    /* Descriptors and zeroed records must be visible before the tail.  The
     * register store is a release store (mmio.h, as x86 orders stores), so
     * only the compiler must keep the ring stores before it: DPDK's
     * rte_io_wmb() on x86. */
    atomic_signal_fence(memory_order_release);
    vtio_mmio_write32(&u->regs, VTIO_DMAE_TAIL, (uint32_t)(u->tail % u->entries));
    u->rung = u->tail;
}

static inline bool udrv_halted(struct udrv *u)
{
    uint32_t st = vtio_mmio_read32(&u->regs, VTIO_DMAE_STATUS);
    return VTIO_DMAE_STATUS_STATE(st) == VTIO_DMAE_STATE_HALTED;
}

/* A halt that wrote no record: -EIO with the ERROR register's reason. */
static inline int udrv_halt_error(struct udrv *u, struct vtio_dmae_completion *last)
{
    if (last)
        memset(last, 0, sizeof(*last));
    return udrv_error(u, -EIO, "channel halted: %s",
                      vtio_dmae_status_name(vtio_mmio_read32(&u->regs, VTIO_DMAE_ERROR)));
}

/*
 * Reaps completed descriptors in ring order.  last (if not NULL) gets the
 * last record read.
 * @returns how many completed successfully (0: none yet); -EIO the oldest
 * one failed (its record is in *last) or the channel halted without a
 * record (last->status 0; the ERROR register says why).
 */
static inline int udrv_poll(struct udrv *u, struct vtio_dmae_completion *last)
{
    int n = 0;
    while (u->head < u->rung) {
        struct vtio_dmae_completion *r = &u->rec[u->head % u->entries];
        uint32_t status = __atomic_load_n(&r->status, __ATOMIC_ACQUIRE);
        if (status == 0)
            break;
        if (last) {
            *last = *r;
            last->status = status;
        }
        if (status != VTIO_DMAE_STATUS_SUCCESS)
            return udrv_error(u, -EIO, "descriptor %llu: %s at %#llx",
                              (unsigned long long)r->cookie, vtio_dmae_status_name(status),
                              (unsigned long long)r->fault_addr);
        u->bytes += r->bytes;
        u->head++;
        n++;
    }
    u->completed += (uint64_t)n;
    if (n == 0 && u->head < u->rung && ++u->looks % UDRV_STATUS_EVERY == 0 && udrv_halted(u))
        return udrv_halt_error(u, last);
    return n;
}

static inline uint64_t udrv_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Polls until everything rung has completed.  Descriptors complete in
 * order, so the loop watches only the newest one's record and reaps the
 * lot when it is written: the oldest pending record shares a cache line
 * with the one the engine writes next, and reading it on every look would
 * pull that line away from the engine for each completion.  Every 64th
 * look reaps anyway (a failed descriptor stops the ones after it), and a
 * halt that wrote no record shows in STATUS.
 * @returns 0; -EIO (see udrv_poll); -ETIMEDOUT after timeout_ns.
 */
static inline int udrv_wait(struct udrv *u, uint64_t timeout_ns,
                            struct vtio_dmae_completion *last)
{
    uint64_t deadline = udrv_now_ns() + timeout_ns;
    for (unsigned looks = 1; u->head < u->rung; looks++) {
        const struct vtio_dmae_completion *newest = &u->rec[(u->rung - 1) % u->entries];
        if (__atomic_load_n(&newest->status, __ATOMIC_ACQUIRE) || looks % 64 == 0) {
            int n = udrv_poll(u, last);
            if (n < 0)
                return n;
            if (n > 0)
                continue;
        }
        if (looks % UDRV_STATUS_EVERY == 0) {
            if (udrv_halted(u))
                return udrv_poll(u, last) < 0 ? -EIO : udrv_halt_error(u, last);
            if (udrv_now_ns() > deadline)
                return udrv_error(u, -ETIMEDOUT, "%llu descriptors still pending",
                                  (unsigned long long)(u->rung - u->head));
        }
        for (int i = 0; i < 32; i++)
            __builtin_ia32_pause();         /* the engine may share our core */
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Interrupts: the channel's MSI-X vector signals an eventfd.
 */

/*
 * VFIO_DEVICE_SET_IRQS on MSI-X entry 0 (the channel's INT_VEC): efd >= 0
 * makes it signal efd (ACTION_TRIGGER, DATA_EVENTFD) and turns the
 * channel's interrupts on; efd -1 tears MSI-X down (DATA_NONE, count 0) and
 * turns them off.  Only descriptors with VTIO_DMAE_FLAG_INTR (and halts)
 * interrupt.
 */
static inline int udrv_irq_eventfd(struct udrv *u, int efd)
{
    union {
        struct vfio_irq_set set;
        uint8_t bytes[sizeof(struct vfio_irq_set) + sizeof(int32_t)];
    } buf;
    memset(&buf, 0, sizeof(buf));
    buf.set.argsz = sizeof(buf);
    buf.set.index = VFIO_PCI_MSIX_IRQ_INDEX;
    buf.set.start = 0;
    if (efd >= 0) {
        int32_t fd = efd;
        buf.set.flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
        buf.set.count = 1;
        memcpy(buf.set.data, &fd, sizeof(fd));
    } else {
        buf.set.argsz = sizeof(buf.set);
        buf.set.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
        buf.set.count = 0;
    }
    long rc = vtio_vfio_ioctl(u->proc, u->device, VFIO_DEVICE_SET_IRQS, &buf.set);
    if (rc < 0)
        return udrv_fail(u, (int)rc, "SET_IRQS MSI-X %s", efd >= 0 ? "eventfd" : "off");
    u->irq_fd = efd;
    if (u->entries) {
        uint32_t ctrl = vtio_mmio_read32(&u->regs, VTIO_DMAE_CTRL);
        ctrl = efd >= 0 ? ctrl | VTIO_DMAE_CTRL_IE : ctrl & ~VTIO_DMAE_CTRL_IE;
        vtio_mmio_write32(&u->regs, VTIO_DMAE_CTRL, ctrl & ~VTIO_DMAE_CTRL_RESET);
    }
    return 0;
}

/* Sleeps in read(2) on the eventfd until the channel interrupts (at most
 * timeout_ms).  @returns the interrupts counted since the last read (>= 1);
 * -ETIMEDOUT; -errno of poll/read. */
static inline int udrv_wait_irq(struct udrv *u, int timeout_ms)
{
    struct pollfd pfd = { .fd = u->irq_fd, .events = POLLIN };
    int r = poll(&pfd, 1, timeout_ms);
    if (r == 0)
        return udrv_error(u, -ETIMEDOUT, "no interrupt in %d ms", timeout_ms);
    uint64_t count;
    if (r < 0 || read(u->irq_fd, &count, sizeof(count)) != (ssize_t)sizeof(count))
        return udrv_error(u, errno ? -errno : -EIO, "eventfd");
    return (int)count;
}

/* ------------------------------------------------------------------------
 * Tear-down, in reverse: channel, interrupts, bus mastering, ring, BAR,
 * device, group, container (whose release unmaps what is still mapped).
 */
static inline void udrv_close(struct udrv *u)
{
    if (u->entries) {
        vtio_mmio_write32(&u->regs, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_RESET);
        u->entries = 0;
    }
    if (u->irq_fd >= 0)
        udrv_irq_eventfd(u, -1);
    if (u->device >= 0 && u->bar0.mem)
        udrv_set_master(u, false);
    udrv_dma_free(u, &u->ring_buf);
    if (u->bar0.mem)
        vtio_vfio_munmap(u->proc, &u->bar0);
    u->bar0.mem = NULL;
    if (u->device >= 0)
        vtio_vfio_close(u->proc, u->device);
    if (u->group >= 0)
        vtio_vfio_close(u->proc, u->group);
    if (u->container >= 0)
        vtio_vfio_close(u->proc, u->container);
    u->device = u->group = u->container = -1;
}

#endif
