/*
 * fuzz_vfio: the VFIO calls of include/vtio/vfio.h with arguments chosen by
 * the input, made by a process (include/vtio/process.h) on a booted host.
 *
 * The host is booted once (LLVMFuzzerInitialize, or the first input): 128
 * MiB of RAM, one DMA engine with two channels at 00:03.0, the IOMMU on
 * with interrupt remapping (the default host), the engine bound to
 * vfio-pci.  Each input is one program's life: a fresh process with a
 * block of its own memory (byte 1: 1-64 pages of 4 KiB, or one 2 MiB page;
 * its memlock limit and CAP_IPC_LOCK), two eventfds, and, as far as byte 0
 * says (0-5), the usual set-up: open the container, open the group,
 * SET_CONTAINER, SET_IOMMU type1v2, GET_DEVICE_FD.  Then ops (op byte modulo
 * OP_COUNT):
 *
 *   IOCTL fd:u8 req:u8 argsz:u16 n:u16 bytes    any VFIO ioctl; argument
 *         bytes (after argsz) from the input, in a buffer of argsz + 256
 *         bytes; the integer, fd, string and user-pointer arguments are
 *         made honest (below)
 *   MAP   fd:u8 flags:u8 off:u32 iova:u64 size:u32   MAP_DMA of the process's
 *         own memory (flags bit 7: a bogus vaddr instead)
 *   PREAD / PWRITE fd:u8 region:u8 off:u32 count:u16 [bytes]
 *   MMAP  fd:u8 region:u8 off:u32 len:u32 prot:u8   (up to 4 mappings)
 *   MMIO  map:u8 off:u16 val:u32 write:u8           a register access through one
 *   MUNMAP map:u8
 *   OPEN  which:u8    the container, the group, another group, or garbage
 *   CLOSE fd:u8
 *   UNMAP_MEM off:u32 pages:u8   the program unmaps some of its memory
 *   MEMLOCK limit:u32            setrlimit(RLIMIT_MEMLOCK) in pages
 *   POKE  off:u32 n:u8 bytes     the program writes its memory (descriptors
 *         for the device, which DMAs through the container's mappings)
 *   WAIT  map:u8 ch:u8           polls (at most 20 ms) through a BAR0 mapping
 *         until DMA channel ch is idle or halted, as a driver waits
 * An fd operand picks one of the descriptors the program holds (container,
 * group, device, others it opened), or (bit 7) names a raw number.
 *
 * The program is honest where Linux would protect the kernel from a liar
 * and vtio cannot (it shares an address space with the program): every
 * pointer it passes points at memory it owns and as large as it says
 * (argsz, a dirty bitmap's size); fds in SET_IRQS are its eventfds, -1, or
 * numbers that are not open.  Everything else is up to the input.
 *
 * Invariants checked:
 *  - every call returns >= 0 or a negative errno (> -4096);
 *  - an ioctl with argsz at least Linux's minimum writes nothing past argsz;
 *    pread returns at most count bytes;
 *  - when the program has closed its files and mappings: nothing is pinned
 *    or charged to its memlock (locked_bytes, orphan_bytes 0), no file is
 *    open, and the device has bus mastering off (the last close disables it);
 *  - when the process is destroyed: the IOMMU group has no DMA owner and is
 *    back in its default domain, the device can be unbound (nothing holds
 *    it), and the host's free memory is what it was before the input (no
 *    page leaked: pins, page tables, bounce buffers);
 *  - and no crash, hang, leak or sanitizer report.
 */
#include "fuzz.h"

#include <vtio/device.h>
#include <vtio/host.h>
#include <vtio/iommu.h>
#include <vtio/machine.h>
#include <vtio/page_alloc.h>
#include <vtio/pci.h>
#include <vtio/process.h>
#include <vtio/vfio.h>

#include <vtio/dev/dma_engine.h>

#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RAM_SIZE    (128 * VTIO_MiB)
#define MAX_FDS     8
#define MAX_MAPS    4
#define MAX_ARGSZ   0x3000u
#define CANARY      256u
#define CANARY_BYTE 0xcd
#define MAX_BITMAP  (64 * VTIO_KiB)
#define FD_CONTAINER 0
#define FD_GROUP    1
#define FD_DEVICE   2

enum op {
    OP_IOCTL, OP_MAP, OP_PREAD, OP_PWRITE, OP_MMAP, OP_MMIO, OP_MUNMAP, OP_OPEN, OP_CLOSE,
    OP_UNMAP_MEM, OP_MEMLOCK, OP_POKE, OP_WAIT, OP_COUNT
};

static struct {
    struct vtio_machine *m;
    struct vtio_host *h;
    struct vtio_device *dev;
    struct vtio_iommu_group *group;
    unsigned group_id;
    uint64_t free_bytes;            /* the host's free RAM between inputs */
    bool settled;                   /* free_bytes measured after a first input */
    /* this input's program */
    struct vtio_process *p;
    uint8_t *mem;                   /* its memory block */
    uint64_t mem_size;
    int fds[MAX_FDS];               /* -1: none */
    struct vtio_mmio maps[MAX_MAPS];
    bool mapped[MAX_MAPS];
    int efd[2];
} S;

/* ------------------------------------------------------------------------
 * The host, booted once.
 */

static void quiet_log(void *opaque, int level, const char *msg)
{
    (void)opaque, (void)level, (void)msg;
    FUZZ_TRACE("host: %s\n", msg);
}

static void host_up(void)
{
    struct vtio_machine_config mc = { .ram_size = RAM_SIZE, .ncpus = 1, .dma_engines = 1,
                                      .dma_channels = 2 };
    FUZZ_CHECK(vtio_machine_create(&mc, &S.m) == 0, "machine: %s", vtio_last_error());
    struct vtio_host_options o = { .log_fn = quiet_log, .log_level = VTIO_LOG_DEBUG };
    FUZZ_CHECK(vtio_host_boot_opts(S.m, &o, &S.h) == 0, "boot: %s", vtio_last_error());
    S.dev = vtio_host_device_by_rid(S.h, VTIO_PCI_RID(0, VTIO_MACHINE_FIRST_DEV, 0));
    FUZZ_CHECK(S.dev != NULL, "no engine");
    S.group = vtio_iommu_group_get(S.dev);
    FUZZ_CHECK(S.group != NULL, "no IOMMU group");
    S.group_id = vtio_iommu_group_id(S.group);
    FUZZ_CHECK(vtio_vfio_bind(S.dev) == 0, "bind: %s", vtio_last_error());
    S.free_bytes = vtio_page_alloc_free_bytes(S.h->pages);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (!S.h)
        host_up();
    return 0;
}

/* ------------------------------------------------------------------------
 * The program's descriptors.
 */

static void check_rc(long rc, const char *what)
{
    FUZZ_CHECK(rc >= -4095, "%s returned %ld", what, rc);
}

static int fd_operand(uint8_t v)
{
    if (v & 0x80)
        return (int8_t)(v << 1) >> 1;       /* a raw number, -64..63 */
    return S.fds[v % MAX_FDS];
}

/* A new descriptor goes into the table; with the table full the program
 * closes it at once (it must not lose track of what it holds). */
static void fd_keep(int fd)
{
    for (unsigned i = 0; i < MAX_FDS; i++)
        if (S.fds[i] < 0 || S.fds[i] == fd) {
            S.fds[i] = fd;
            return;
        }
    check_rc(vtio_vfio_close(S.p, fd), "close");
}

static void fd_forget(int fd)
{
    for (unsigned i = 0; i < MAX_FDS; i++)
        if (S.fds[i] == fd)
            S.fds[i] = -1;
}


static int open_path(const char *path)
{
    int fd = vtio_vfio_open(S.p, path);
    FUZZ_TRACE("open %s: %d\n", path, fd);
    check_rc(fd, "open");
    if (fd >= 0)
        fd_keep(fd);
    return fd;
}

/* ------------------------------------------------------------------------
 * ioctl arguments.
 */

struct ioctl_kind {
    unsigned long req;
    enum { ARG_NONE, ARG_INT, ARG_FD_PTR, ARG_STRING, ARG_STRUCT } arg;
    uint32_t minsz;                 /* Linux's minimum argsz (ARG_STRUCT) */
};

static const struct ioctl_kind ioctls[] = {
    { VFIO_GET_API_VERSION, ARG_NONE, 0 },
    { VFIO_CHECK_EXTENSION, ARG_INT, 0 },
    { VFIO_SET_IOMMU, ARG_INT, 0 },
    { VFIO_GROUP_GET_STATUS, ARG_STRUCT, sizeof(struct vfio_group_status) },
    { VFIO_GROUP_SET_CONTAINER, ARG_FD_PTR, 0 },
    { VFIO_GROUP_UNSET_CONTAINER, ARG_NONE, 0 },
    { VFIO_GROUP_GET_DEVICE_FD, ARG_STRING, 0 },
    { VFIO_DEVICE_GET_INFO, ARG_STRUCT, offsetof(struct vfio_device_info, cap_offset) },
    { VFIO_DEVICE_GET_REGION_INFO, ARG_STRUCT, sizeof(struct vfio_region_info) },
    { VFIO_DEVICE_GET_IRQ_INFO, ARG_STRUCT, sizeof(struct vfio_irq_info) },
    { VFIO_DEVICE_SET_IRQS, ARG_STRUCT, sizeof(struct vfio_irq_set) },
    { VFIO_DEVICE_RESET, ARG_NONE, 0 },
    { VFIO_IOMMU_GET_INFO, ARG_STRUCT, offsetof(struct vfio_iommu_type1_info, cap_offset) },
    { VFIO_IOMMU_MAP_DMA, ARG_STRUCT, sizeof(struct vfio_iommu_type1_dma_map) },
    { VFIO_IOMMU_UNMAP_DMA, ARG_STRUCT, sizeof(struct vfio_iommu_type1_dma_unmap) },
    { VFIO_IOMMU_ENABLE, ARG_NONE, 0 },
    { VFIO_IOMMU_DISABLE, ARG_NONE, 0 },
    { VFIO_IOMMU_DIRTY_PAGES, ARG_STRUCT, sizeof(struct vfio_iommu_type1_dirty_bitmap) },
    { VFIO_IO_(30), ARG_STRUCT, 0 },           /* not a VFIO ioctl */
    { 0x5401, ARG_STRUCT, 0 },                 /* TCGETS */
};
#define N_IOCTLS (sizeof(ioctls) / sizeof(ioctls[0]))

/* A user pointer inside an argument: made to point at a buffer of the
 * size the argument says (at most MAX_BITMAP), or NULL; *bitmaps keeps it
 * to free after the call. */
static void honest_bitmap(struct vfio_bitmap *bm, void **keep)
{
    if (!bm->data)
        return;
    if (bm->size > MAX_BITMAP)
        bm->size = MAX_BITMAP;
    *keep = calloc(1, bm->size ? bm->size : 1);
    bm->data = *keep;
}

/* SET_IRQS eventfds: 0 and 1 name the program's eventfds. */
static void honest_eventfds(struct vfio_irq_set *set, uint32_t argsz)
{
    if (!(set->flags & VFIO_IRQ_SET_DATA_EVENTFD) || argsz < sizeof(*set))
        return;
    for (uint32_t off = 0; off + 4 <= argsz - sizeof(*set); off += 4) {
        int32_t fd;
        memcpy(&fd, set->data + off, 4);
        if (fd == 0 || fd == 1)
            fd = S.efd[fd];
        else if (fd > 2 && fd < 1024)
            fd = 1000 + fd % 24;            /* not open in this process */
        memcpy(set->data + off, &fd, 4);
    }
}

static void op_ioctl(struct fuzz_in *in)
{
    int fd = fd_operand(fuzz_u8(in));
    uint8_t sel = fuzz_u8(in);
    const struct ioctl_kind *k = &ioctls[sel % N_IOCTLS];
    uint32_t argsz = fuzz_u16(in) % (MAX_ARGSZ + 1);
    uint16_t n = fuzz_u16(in);
    long rc;

    switch (k->arg) {
    case ARG_NONE:
        rc = vtio_vfio_ioctl(S.p, fd, k->req, 0);
        break;
    case ARG_INT:
        rc = vtio_vfio_ioctl(S.p, fd, k->req, (unsigned long)(n % 16));
        break;
    case ARG_FD_PTR: {
        int target = fd_operand((uint8_t)n);
        rc = vtio_vfio_ioctl(S.p, fd, k->req, &target);
        break;
    }
    case ARG_STRING: {
        char name[33];
        if (n & 1) {
            snprintf(name, sizeof(name), "%s", vtio_device_name(S.dev));
        } else {
            fuzz_bytes(in, name, sizeof(name) - 1);
            name[sizeof(name) - 1] = 0;
        }
        rc = vtio_vfio_ioctl(S.p, fd, k->req, name);
        if (rc >= 0)
            fd_keep((int)rc);
        break;
    }
    default: {
        uint8_t *buf = malloc(argsz + CANARY);
        void *bitmap = NULL;
        memset(buf, 0, argsz);
        memset(buf + argsz, CANARY_BYTE, CANARY);
        memcpy(buf, &argsz, argsz < 4 ? argsz : 4);
        if (argsz > 4)
            fuzz_bytes(in, buf + 4, n % (argsz - 4 + 1));
        if (k->req == VFIO_IOMMU_UNMAP_DMA && argsz >= 48)
            honest_bitmap((struct vfio_bitmap *)(buf + 24), &bitmap);
        else if (k->req == VFIO_IOMMU_DIRTY_PAGES && argsz >= 48)
            honest_bitmap((struct vfio_bitmap *)(buf + 8 + 16), &bitmap);
        else if (k->req == VFIO_DEVICE_SET_IRQS)
            honest_eventfds((struct vfio_irq_set *)buf, argsz);
        rc = vtio_vfio_ioctl(S.p, fd, k->req, buf);
        if (argsz >= k->minsz)
            for (uint32_t i = 0; i < CANARY; i++)
                FUZZ_CHECK(buf[argsz + i] == CANARY_BYTE,
                           "ioctl %#lx (argsz %u) wrote %u bytes past argsz", k->req, argsz,
                           i + 1);
        free(bitmap);
        free(buf);
        break;
    }
    }
    FUZZ_TRACE("ioctl fd %d %#lx argsz %u: %ld %s\n", fd, k->req, argsz, rc,
               rc < 0 ? vtio_last_error() : "");
    check_rc(rc, "ioctl");
}

/* ------------------------------------------------------------------------
 * The other calls.
 */

static void op_map(struct fuzz_in *in)
{
    int fd = fd_operand(fuzz_u8(in));
    uint8_t flags = fuzz_u8(in);
    uint32_t off = fuzz_u32(in);
    struct vfio_iommu_type1_dma_map map = {
        .argsz = sizeof(map), .flags = flags & 3, .iova = fuzz_u64(in),
        .size = (uint64_t)fuzz_u32(in),
    };
    if (flags & 0x80)
        map.vaddr = (uint64_t)off << 12;
    else
        map.vaddr = (uint64_t)(uintptr_t)S.mem + ((flags & 0x40) ? off : (off << 12)) % S.mem_size;
    if (!(flags & 0x20))
        map.size = (map.size % 64 + 1) << 12;
    long rc = vtio_vfio_ioctl(S.p, fd, VFIO_IOMMU_MAP_DMA, &map);
    FUZZ_TRACE("map iova %#llx size %#llx: %ld %s\n", (unsigned long long)map.iova,
               (unsigned long long)map.size, rc, rc < 0 ? vtio_last_error() : "");
    check_rc(rc, "MAP_DMA");
}

static uint64_t region_offset(uint8_t region, uint32_t off)
{
    return ((uint64_t)(region % 10) << 40) + off;
}

static void op_rw(struct fuzz_in *in, bool write)
{
    int fd = fd_operand(fuzz_u8(in));
    uint8_t region = fuzz_u8(in);
    uint32_t off = fuzz_u32(in);
    size_t count = fuzz_u16(in) % 4097;
    uint8_t *buf = malloc(count ? count : 1);
    ssize_t rc;
    if (write) {
        fuzz_bytes(in, buf, count);
        rc = vtio_vfio_pwrite(S.p, fd, buf, count, region_offset(region, off));
    } else {
        rc = vtio_vfio_pread(S.p, fd, buf, count, region_offset(region, off));
    }
    free(buf);
    FUZZ_TRACE("%s fd %d region %u off %#x count %zu: %zd\n", write ? "pwrite" : "pread", fd,
               region % 10, off, count, rc);
    check_rc(rc, write ? "pwrite" : "pread");
    FUZZ_CHECK(rc <= (ssize_t)count, "%s of %zu bytes returned %zd", write ? "pwrite" : "pread",
               count, rc);
}

static void op_mmap(struct fuzz_in *in)
{
    int fd = fd_operand(fuzz_u8(in));
    uint8_t region = fuzz_u8(in);
    uint32_t off = fuzz_u32(in), len = fuzz_u32(in);
    uint8_t prot = fuzz_u8(in);
    for (unsigned i = 0; i < MAX_MAPS; i++) {
        if (S.mapped[i])
            continue;
        int rc = vtio_vfio_mmap(S.p, fd, region_offset(region, off), len, prot & 0x83 ? prot : 3,
                                &S.maps[i]);
        FUZZ_TRACE("mmap fd %d region %u off %#x len %#x: %d\n", fd, region % 10, off, len, rc);
        check_rc(rc, "mmap");
        S.mapped[i] = rc == 0;
        return;
    }
}

static void op_mmio(struct fuzz_in *in)
{
    unsigned i = fuzz_u8(in) % MAX_MAPS;
    uint16_t off = fuzz_u16(in);
    uint32_t val = fuzz_u32(in);
    uint8_t write = fuzz_u8(in);
    if (!S.mapped[i])
        return;
    if (write & 1)
        vtio_mmio_write32(&S.maps[i], off, val);
    else
        (void)vtio_mmio_read32(&S.maps[i], off);
}

static void op_munmap(unsigned i)
{
    if (!S.mapped[i])
        return;
    check_rc(vtio_vfio_munmap(S.p, &S.maps[i]), "munmap");
    S.mapped[i] = false;
}

static void op_open(uint8_t which)
{
    char path[48];
    switch (which % 5) {
    case 0: snprintf(path, sizeof(path), "/dev/vfio/vfio"); break;
    case 1: snprintf(path, sizeof(path), "/dev/vfio/%u", S.group_id); break;
    case 2: snprintf(path, sizeof(path), "/dev/vfio/%u", which); break;
    case 3: snprintf(path, sizeof(path), "/dev/vfio/%d", (int8_t)which); break;
    default: snprintf(path, sizeof(path), "/dev/vfio/%u%c", S.group_id, which); break;
    }
    open_path(path);
}

static void op_close(uint8_t v)
{
    int fd = fd_operand(v);
    check_rc(vtio_vfio_close(S.p, fd), "close");
    fd_forget(fd);
}

static void op_unmap_mem(struct fuzz_in *in)
{
    uint64_t page = S.mem_size > VTIO_HUGE_SIZE - 1 ? VTIO_HUGE_SIZE : VTIO_PAGE_SIZE;
    uint64_t off = (fuzz_u32(in) * page) % S.mem_size;
    uint64_t len = (1 + fuzz_u8(in) % 8) * page;
    check_rc(vtio_process_munmap(S.p, S.mem + off, len), "process munmap");
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A driver's poll: HEAD reaches TAIL, or the channel stops. */
static void op_wait(unsigned i, unsigned ch)
{
    const struct vtio_mmio *m = &S.maps[i];
    uint64_t regs = VTIO_DMAE_CHAN_BASE(ch % VTIO_DMAE_MAX_CHANNELS), t0 = now_ns();
    if (!S.mapped[i])
        return;
    while (now_ns() - t0 < 20000000) {
        uint32_t st = vtio_mmio_read32(m, regs + VTIO_DMAE_STATUS);
        if (st == ~0u || VTIO_DMAE_STATUS_STATE(st) != VTIO_DMAE_STATE_RUNNING ||
            vtio_mmio_read32(m, regs + VTIO_DMAE_HEAD) ==
                vtio_mmio_read32(m, regs + VTIO_DMAE_TAIL))
            break;
        sched_yield();
    }
    FUZZ_TRACE("wait channel %u: status %#x error %#x\n", ch,
               vtio_mmio_read32(m, regs + VTIO_DMAE_STATUS),
               vtio_mmio_read32(m, regs + VTIO_DMAE_ERROR));
}

/* The program stores into its own memory (if that page is still mapped). */
static void op_poke(struct fuzz_in *in)
{
    uint64_t off = fuzz_u32(in) % S.mem_size;
    uint8_t buf[64];
    size_t n = fuzz_u8(in) % (sizeof(buf) + 1);
    fuzz_bytes(in, buf, n);
    if (n > S.mem_size - off)
        n = S.mem_size - off;
    uint64_t pa;
    if (n && vtio_process_virt_to_phys(S.p, S.mem + off, &pa) == 0 &&
        vtio_process_virt_to_phys(S.p, S.mem + off + n - 1, &pa) == 0)
        memcpy(S.mem + off, buf, n);
}

static void run_op(struct fuzz_in *in, enum op op)
{
    switch (op) {
    case OP_IOCTL:     op_ioctl(in); break;
    case OP_MAP:       op_map(in); break;
    case OP_PREAD:     op_rw(in, false); break;
    case OP_PWRITE:    op_rw(in, true); break;
    case OP_MMAP:      op_mmap(in); break;
    case OP_MMIO:      op_mmio(in); break;
    case OP_MUNMAP:    op_munmap(fuzz_u8(in) % MAX_MAPS); break;
    case OP_OPEN:      op_open(fuzz_u8(in)); break;
    case OP_CLOSE:     op_close(fuzz_u8(in)); break;
    case OP_UNMAP_MEM: op_unmap_mem(in); break;
    case OP_MEMLOCK:
        vtio_process_set_memlock_limit(S.p, (uint64_t)fuzz_u32(in) << 12);
        break;
    case OP_POKE:      op_poke(in); break;
    case OP_WAIT: {
        unsigned i = fuzz_u8(in) % MAX_MAPS;
        op_wait(i, fuzz_u8(in));
        break;
    }
    case OP_COUNT:     break;
    }
}

/* ------------------------------------------------------------------------
 * A program's life.
 */

/* The usual set-up, as far as `steps` goes (each step as udrv_open does). */
static void set_up(unsigned steps)
{
    char path[32];
    if (steps >= 1)
        S.fds[FD_CONTAINER] = open_path("/dev/vfio/vfio");
    snprintf(path, sizeof(path), "/dev/vfio/%u", S.group_id);
    if (steps >= 2)
        S.fds[FD_GROUP] = open_path(path);
    if (steps >= 3)
        check_rc(vtio_vfio_ioctl(S.p, S.fds[FD_GROUP], VFIO_GROUP_SET_CONTAINER,
                                 &S.fds[FD_CONTAINER]), "SET_CONTAINER");
    if (steps >= 4)
        check_rc(vtio_vfio_ioctl(S.p, S.fds[FD_CONTAINER], VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU),
                 "SET_IOMMU");
    if (steps >= 5) {
        long fd = vtio_vfio_ioctl(S.p, S.fds[FD_GROUP], VFIO_GROUP_GET_DEVICE_FD,
                                  vtio_device_name(S.dev));
        check_rc(fd, "GET_DEVICE_FD");
        S.fds[FD_DEVICE] = (int)fd;
    }
}

static void program_start(uint8_t memory)
{
    FUZZ_CHECK(vtio_process_create(S.h, "fuzz", &S.p) == 0, "process: %s", vtio_last_error());
    bool huge = memory & 0x80;
    S.mem_size = huge ? VTIO_HUGE_SIZE : (uint64_t)(1 + memory % 64) << 12;
    void *va = NULL;
    int rc = vtio_process_mmap(S.p, S.mem_size, huge ? VTIO_PROCESS_MAP_HUGE : 0, &va);
    FUZZ_CHECK(rc == 0, "process memory: %s", vtio_last_error());
    S.mem = va;
    if (memory & 0x40)
        vtio_process_set_memlock_limit(S.p, 4 * VTIO_PAGE_SIZE);
    vtio_process_set_cap_ipc_lock(S.p, memory & 0x20);
    for (unsigned i = 0; i < MAX_FDS; i++)
        S.fds[i] = -1;
    memset(S.mapped, 0, sizeof(S.mapped));
    for (unsigned i = 0; i < 2; i++) {
        S.efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        FUZZ_CHECK(S.efd[i] >= 0, "eventfd");
    }
}

/* The program closes what it holds; then nothing of it may remain. */
static void program_exit(void)
{
    for (unsigned i = 0; i < MAX_MAPS; i++)
        op_munmap(i);
    for (unsigned i = 0; i < MAX_FDS; i++)
        if (S.fds[i] >= 0)
            check_rc(vtio_vfio_close(S.p, S.fds[i]), "close");
    struct vtio_process_stats st;
    vtio_process_get_stats(S.p, &st);
    FUZZ_CHECK(st.open_files == 0, "%u files still open", st.open_files);
    FUZZ_CHECK(st.locked_bytes == 0 && st.orphan_bytes == 0,
               "with every file closed: %llu bytes locked, %llu orphaned",
               (unsigned long long)st.locked_bytes, (unsigned long long)st.orphan_bytes);
    uint16_t cmd = (uint16_t)vtio_pci_cfg_read(S.m->pci, vtio_device_rid(S.dev),
                                               VTIO_PCI_COMMAND, 2);
    FUZZ_CHECK(!(cmd & VTIO_PCI_COMMAND_MASTER), "device closed, bus mastering on (%#x)", cmd);
    vtio_process_destroy(S.p);
    S.p = NULL;
    for (unsigned i = 0; i < 2; i++)
        close(S.efd[i]);

    FUZZ_CHECK(!vtio_iommu_group_dma_owner_claimed(S.group), "group still owned");
    FUZZ_CHECK(vtio_iommu_group_domain(S.group) == vtio_iommu_group_default_domain(S.group),
               "group not back in its default domain");
    FUZZ_CHECK(vtio_vfio_unbind(S.dev) == 0, "unbind: %s", vtio_last_error());
    FUZZ_CHECK(vtio_vfio_bind(S.dev) == 0, "bind: %s", vtio_last_error());
    uint64_t free_now = vtio_page_alloc_free_bytes(S.h->pages);
    if (!S.settled) {               /* caches the first program filled stay */
        S.free_bytes = free_now;
        S.settled = true;
    }
    FUZZ_CHECK(free_now == S.free_bytes, "host free memory %llu bytes, was %llu",
               (unsigned long long)free_now, (unsigned long long)S.free_bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = fuzz_in_make(data, size);
    LLVMFuzzerInitialize(NULL, NULL);
    uint8_t steps = fuzz_u8(&in), memory = fuzz_u8(&in);
    program_start(memory);
    set_up(steps % 6);
    while (fuzz_more(&in))
        run_op(&in, (enum op)(fuzz_u8(&in) % OP_COUNT));
    program_exit();
    return 0;
}
