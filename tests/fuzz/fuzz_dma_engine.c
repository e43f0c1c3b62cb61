/*
 * fuzz_dma_engine: the DMA engine (include/vtio/dev/dma_engine.h) driven
 * through its registers with descriptor rings, scatter-gather lists and
 * channel register values chosen by the input.
 *
 * The machine is made once (LLVMFuzzerInitialize, or the first input): no
 * IOMMU, 64 MiB of RAM, one engine with two channels at 00:03.0, BAR0 at
 * 0xC0000000, BAR2 at 0xC0010000, bus mastering and MSI-X on (vector 48 +
 * channel, CPU 0).  Every input starts from the same state: GCTRL.RESET,
 * the first MiB of RAM rewritten (below), bus mastering and MSI-X on again,
 * and each channel running on a 64-entry ring (channel n's at 0x4000 * n).
 *
 * RAM as the inputs see it (the first MiB, compared byte by byte):
 *   CTRL    [0, 64 KiB)          rings (0x0000, 0x4000), SG lists (0x8000)
 *   ARENA   [64 KiB, 320 KiB)    data, filled with a pattern
 *   CANARY  [320 KiB, 1 MiB)     0xa5; nothing names it unless the input does
 * An address operand (u64) says where by its top four bits: ARENA (0-5),
 * CTRL (6-7), zero (8), CANARY (9), a hole past RAM (10), the MSI window
 * (11), the engine's own BAR0 (12) and BAR2 (13), or itself (14-15: high
 * addresses, where lengths wrap); the rest of the value is the offset.  A
 * length operand: its top two bits pick 12, 16, 20 or 62 bits of it.
 *
 * Ops (op byte modulo OP_COUNT):
 *   DESC ch:u8 slot:u8 op:u8 flags:u8 src dst len completion:u64
 *        src_sg:u16 dst_sg:u16 cookie:u8 junk:u8   a descriptor into the ring
 *   SG   idx:u16 addr:u64 len:u32 junk:u8          an SG entry at 0x8000 + 16 idx
 *   RAM  off:u32 n:u8 bytes                        raw bytes in the first MiB
 *   DOORBELL ch:u8 n:u8 (raw TAIL:u16 if n & 0x80) TAIL moves on by n
 *   REG  ch:u8 reg:u8 val:u64                      a channel or global register
 *   BME  on:u8                                     COMMAND.BME
 *   MSIX on:u8                                     MSI-X enable
 *
 * After every op the harness waits (at most 2 s: longer is a hang) until
 * no channel has work it could do, and checks:
 *  - nothing in the first MiB changed that the descriptors consumed by this
 *    op do not name as written: COPY/FILL destinations, COPY_SG
 *    destination entries, completion records (descriptors and lists as they
 *    were before the op; when a named write overlaps a ring or an SG list,
 *    or reaches BAR0, the descriptors may have changed under the engine and
 *    this check is skipped for that op; once one reaches the MSI-X table,
 *    whose entries say where interrupt messages are written, for the rest
 *    of the input);
 *  - a halted channel's ERROR is one of the codes the header lists and
 *    (when it halted during this op) ERR_INDEX lies inside its ring;
 *  - and no crash, hang or sanitizer report.
 */
#include "fuzz.h"

#include <vtio/dev/dma_engine.h>
#include <vtio/intr.h>
#include <vtio/machine.h>
#include <vtio/mem.h>
#include <vtio/pci.h>

#include <sched.h>
#include <time.h>

#define RAM_SIZE    (64 * VTIO_MiB)
#define CHECKED     (1 * VTIO_MiB)
#define CTRL_SIZE   0x10000ull
#define SGL_BASE    0x8000ull
#define ARENA       0x10000ull
#define ARENA_SIZE  0x40000ull
#define CANARY      (ARENA + ARENA_SIZE)
#define CANARY_SIZE (CHECKED - CANARY)
#define BAR0_BASE   0xC0000000ull
#define BAR2_BASE   0xC0010000ull
#define RID         VTIO_PCI_RID(0, VTIO_MACHINE_FIRST_DEV, 0)
#define NCHAN       2
#define RING(n)     (0x4000ull * (n))
#define RING_ENTRIES 64
#define VEC(n)      (48u + (n))
#define WAIT_NS     2000000000ull
#define MAX_RANGES  8192
#define MAX_PENDING 4096     /* consumed descriptors beyond this: no byte check */

enum op { OP_DESC, OP_SG, OP_RAM, OP_DOORBELL, OP_REG, OP_BME, OP_MSIX, OP_COUNT };

struct range {
    uint64_t lo, hi;         /* [lo, hi), hi saturated at 2^64 - 1 */
};

/* A channel's registers as software reads them. */
struct chan_view {
    uint64_t base, completed;
    uint32_t size, head, tail, state;
};

static struct {
    struct vtio_machine *m;
    uint8_t *ram;            /* host view of the first MiB */
    uint8_t before[CHECKED]; /* the first MiB before the op */
    uint8_t pattern[ARENA_SIZE];
    bool high_dirty;         /* an op named RAM past the first MiB */
    unsigned msix_cap;
    struct range named[MAX_RANGES], sources[MAX_RANGES];
    unsigned n_named, n_sources;
    bool unsound;            /* a named write may have changed a descriptor */
    bool msix_written;       /* DMA reached the MSI-X table: until the next
                                input, interrupt messages may go anywhere */
} S;

/* ------------------------------------------------------------------------
 * Registers and configuration space.
 */

static uint64_t creg(unsigned ch, unsigned reg)
{
    return BAR0_BASE + VTIO_DMAE_CHAN_BASE(ch) + reg;
}

static uint32_t rd32(unsigned ch, unsigned reg)
{
    return vtio_mem_read32(S.m->mem, creg(ch, reg));
}

static uint64_t rd64(unsigned ch, unsigned reg)
{
    return vtio_mem_read64(S.m->mem, creg(ch, reg));
}

static void wr32(unsigned ch, unsigned reg, uint32_t v)
{
    vtio_mem_write32(S.m->mem, creg(ch, reg), v);
}

static void wr64(unsigned ch, unsigned reg, uint64_t v)
{
    vtio_mem_write64(S.m->mem, creg(ch, reg), v);
}

static uint32_t cfg_rd(uint16_t off, unsigned size)
{
    return vtio_pci_cfg_read(S.m->pci, RID, off, size);
}

static void cfg_wr(uint16_t off, uint32_t v, unsigned size)
{
    vtio_pci_cfg_write(S.m->pci, RID, off, v, size);
}

static struct chan_view view(unsigned ch)
{
    return (struct chan_view){
        .base = rd64(ch, VTIO_DMAE_RING_BASE), .completed = rd64(ch, VTIO_DMAE_COMPLETED),
        .size = rd32(ch, VTIO_DMAE_RING_SIZE), .head = rd32(ch, VTIO_DMAE_HEAD),
        .tail = rd32(ch, VTIO_DMAE_TAIL),
        .state = VTIO_DMAE_STATUS_STATE(rd32(ch, VTIO_DMAE_STATUS)),
    };
}

static bool ring_valid(const struct chan_view *v)
{
    return v->size >= 2 && v->size <= 65536 && !(v->size & (v->size - 1));
}

static void set_master(bool on)
{
    uint16_t cmd = (uint16_t)cfg_rd(VTIO_PCI_COMMAND, 2);
    cmd = on ? cmd | VTIO_PCI_COMMAND_MASTER : cmd & ~VTIO_PCI_COMMAND_MASTER;
    cfg_wr(VTIO_PCI_COMMAND, cmd, 2);
}

static void set_msix(bool on)
{
    cfg_wr((uint16_t)(S.msix_cap + VTIO_PCI_MSIX_FLAGS), on ? VTIO_PCI_MSIX_FLAGS_ENABLE : 0, 2);
}

static unsigned find_cap(uint8_t id)
{
    unsigned off = cfg_rd(VTIO_PCI_CAPABILITY_LIST, 1) & ~3u;
    for (int n = 0; off && n < 48; n++) {
        if (cfg_rd((uint16_t)off, 1) == id)
            return off;
        off = cfg_rd((uint16_t)(off + 1), 1) & ~3u;
    }
    return 0;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------
 * The machine, made once.
 */

static void irq_handler(void *opaque, unsigned cpu, unsigned vector)
{
    (void)opaque, (void)cpu, (void)vector;
}

static void machine_up(void)
{
    struct vtio_machine_config mc = { .ram_size = RAM_SIZE, .ncpus = 1, .dma_engines = 1,
                                      .dma_channels = NCHAN, .no_iommu = true };
    FUZZ_CHECK(vtio_machine_create(&mc, &S.m) == 0, "machine: %s", vtio_last_error());
    void *host = NULL;
    uint64_t span = 0;
    FUZZ_CHECK(vtio_mem_ram_span(S.m->mem, 0, CHECKED, &host, &span) == 0 && span == CHECKED,
               "RAM at 0");
    S.ram = host;
    cfg_wr(VTIO_PCI_BAR0, (uint32_t)BAR0_BASE, 4);
    cfg_wr(VTIO_PCI_BAR0 + 4, (uint32_t)(BAR0_BASE >> 32), 4);
    cfg_wr(VTIO_PCI_BAR0 + 8, (uint32_t)BAR2_BASE, 4);
    cfg_wr(VTIO_PCI_BAR0 + 12, (uint32_t)(BAR2_BASE >> 32), 4);
    cfg_wr(VTIO_PCI_COMMAND, VTIO_PCI_COMMAND_MEM | VTIO_PCI_COMMAND_MASTER, 2);
    S.msix_cap = find_cap(VTIO_PCI_CAP_ID_MSIX);
    FUZZ_CHECK(S.msix_cap != 0, "no MSI-X capability");
    for (unsigned v = 0; v < NCHAN; v++)
        FUZZ_CHECK(vtio_intr_register(S.m->intr, 0, VEC(v), irq_handler, NULL) == 0, "irq");
    for (uint64_t i = 0; i < ARENA_SIZE; i++)
        S.pattern[i] = (uint8_t)(i * 7 + (i >> 8) * 13 + 1);
}

/* The MSI-X table as software set it up. */
static void msix_program(void)
{
    for (unsigned v = 0; v < NCHAN; v++) {
        uint64_t addr, e = BAR2_BASE + VTIO_DMAE_MSIX_TABLE + 16 * v;
        uint32_t data;
        vtio_msi_compose(0, VEC(v), &addr, &data);
        vtio_mem_write32(S.m->mem, e + VTIO_PCI_MSIX_ENTRY_LOWER_ADDR, (uint32_t)addr);
        vtio_mem_write32(S.m->mem, e + VTIO_PCI_MSIX_ENTRY_UPPER_ADDR, (uint32_t)(addr >> 32));
        vtio_mem_write32(S.m->mem, e + VTIO_PCI_MSIX_ENTRY_DATA, data);
        vtio_mem_write32(S.m->mem, e + VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL, 0);
    }
}

static void fill_pattern(void)
{
    memset(S.ram, 0, CTRL_SIZE);
    memcpy(S.ram + ARENA, S.pattern, ARENA_SIZE);
    memset(S.ram + CANARY, 0xa5, CANARY_SIZE);
    if (S.high_dirty)
        vtio_mem_set(S.m->mem, CHECKED, 0, RAM_SIZE - CHECKED);
    S.high_dirty = false;
}

static bool quiet(unsigned ch)
{
    struct chan_view v = view(ch);
    uint32_t st = rd32(ch, VTIO_DMAE_STATUS);
    return !(st & VTIO_DMAE_STATUS_BUSY) &&
           (v.state != VTIO_DMAE_STATE_RUNNING || v.head == v.tail);
}

/* Waits until no channel has work it could do. */
static void wait_quiet(const char *after)
{
    uint64_t t0 = now_ns();
    for (unsigned ch = 0; ch < NCHAN; ch++) {
        while (!quiet(ch)) {
            struct chan_view v = view(ch);
            FUZZ_CHECK(now_ns() - t0 < WAIT_NS,
                       "channel %u hangs after %s: HEAD %u TAIL %u size %u state %u STATUS %#x",
                       ch, after, v.head, v.tail, v.size, v.state,
                       rd32(ch, VTIO_DMAE_STATUS));
            sched_yield();
        }
    }
}

static void start_channel(unsigned ch)
{
    wr64(ch, VTIO_DMAE_RING_BASE, RING(ch));
    wr32(ch, VTIO_DMAE_RING_SIZE, RING_ENTRIES);
    wr32(ch, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN | VTIO_DMAE_CTRL_IE);
}

/* Every input starts here. */
static void reset_state(void)
{
    vtio_mem_write32(S.m->mem, BAR0_BASE + VTIO_DMAE_GCTRL, VTIO_DMAE_GCTRL_RESET);
    wait_quiet("GCTRL.RESET");
    fill_pattern();
    S.msix_written = false;
    set_master(true);
    set_msix(true);
    msix_program();
    for (unsigned ch = 0; ch < NCHAN; ch++)
        start_channel(ch);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (!S.m)
        machine_up();
    return 0;
}

/* ------------------------------------------------------------------------
 * Operands.
 */

static uint64_t addr_operand(uint64_t v)
{
    uint64_t low = v & ((1ull << 60) - 1);
    switch (v >> 60) {
    case 0: case 1: case 2: case 3: case 4: case 5:
        return ARENA + v % ARENA_SIZE;
    case 6: case 7:
        return low % CTRL_SIZE;
    case 8:  return 0;
    case 9:  return CANARY + low % CANARY_SIZE;
    case 10: return RAM_SIZE + (low & 0xfffffff);
    case 11: return VTIO_MSI_WINDOW_BASE + (low & 0xfffff);
    case 12: return BAR0_BASE + (low & (VTIO_DMAE_REGS_SIZE - 1));
    case 13: return BAR2_BASE + (low & (VTIO_DMAE_MSIX_SIZE - 1));
    default: return v;
    }
}

static uint64_t len_operand(uint64_t v)
{
    static const uint64_t mask[4] = { 0xfff, 0xffff, 0xfffff, (1ull << 62) - 1 };
    return v & mask[v >> 62];
}

/* ------------------------------------------------------------------------
 * What consumed descriptors name.
 */

static void add_range(struct range *set, unsigned *n, uint64_t lo, uint64_t len)
{
    if (!len)
        return;
    if (*n == MAX_RANGES) {
        S.unsound = true;                /* too many to track: no byte check */
        return;
    }
    uint64_t hi = lo + len < lo ? UINT64_MAX : lo + len;
    set[(*n)++] = (struct range){ lo, hi };
    if (set == S.named && lo < RAM_SIZE && hi > CHECKED)
        S.high_dirty = true;
}

static bool overlaps(uint64_t lo, uint64_t hi, const struct range *r)
{
    return lo < r->hi && r->lo < hi;
}

/* Reads from the RAM image before the op (or RAM past the first MiB);
 * outside RAM, zeros. */
static void read_before(uint64_t pa, void *buf, size_t len)
{
    memset(buf, 0, len);
    if (pa + len >= pa && pa + len <= CHECKED)
        memcpy(buf, S.before + pa, len);
    else if (pa < RAM_SIZE && len <= RAM_SIZE - pa)
        vtio_mem_read(S.m->mem, pa, buf, len);
}

static void name_sg_list(uint64_t list, uint32_t count, bool writes)
{
    if (count == 0 || count > VTIO_DMAE_MAX_SG)
        return;
    add_range(S.sources, &S.n_sources, list, 16ull * count);
    for (uint32_t i = 0; writes && i < count; i++) {
        struct vtio_dmae_sg e;
        read_before(list + 16ull * i, &e, sizeof(e));
        add_range(S.named, &S.n_named, e.addr, e.len);
    }
}

static void name_descriptor(const struct vtio_dmae_desc *d)
{
    if (d->completion)
        add_range(S.named, &S.n_named, d->completion, sizeof(struct vtio_dmae_completion));
    switch (d->op_flags & 0xff) {
    case VTIO_DMAE_OP_COPY:
    case VTIO_DMAE_OP_FILL:
        add_range(S.named, &S.n_named, d->dst, d->len);
        break;
    case VTIO_DMAE_OP_COPY_SG:
        name_sg_list(d->src, d->src_sg_count, false);
        name_sg_list(d->dst, d->dst_sg_count, true);
        break;
    default:
        break;
    }
}

/* The descriptors channel ch consumed during the op: `n` from before's
 * HEAD on, in the ring before or after (a reset may have changed it), and
 * the one it halted on. */
static void name_consumed(const struct chan_view *b, const struct chan_view *a, uint32_t err_index)
{
    uint64_t n = a->completed >= b->completed ? a->completed - b->completed : 0;
    bool halted = a->state == VTIO_DMAE_STATE_HALTED && b->state != VTIO_DMAE_STATE_HALTED;
    if (n > MAX_PENDING) {
        S.unsound = true;
        return;
    }
    const struct chan_view *rings[2] = { b, a };
    for (unsigned r = 0; r < 2; r++) {
        const struct chan_view *v = rings[r];
        if (!ring_valid(v))
            continue;
        add_range(S.sources, &S.n_sources, v->base, 64ull * v->size);
        for (uint64_t i = 0; i <= n; i++) {
            uint32_t idx = i < n ? (uint32_t)((b->head + i) & (v->size - 1)) : err_index;
            if (i == n && (!halted || err_index >= v->size))
                break;
            struct vtio_dmae_desc d;
            read_before(v->base + 64ull * idx, &d, sizeof(d));
            name_descriptor(&d);
        }
    }
}

/* ------------------------------------------------------------------------
 * The checks after an op.
 */

static bool named(uint64_t pa)
{
    for (unsigned i = 0; i < S.n_named; i++)
        if (pa >= S.named[i].lo && pa < S.named[i].hi)
            return true;
    return false;
}

static void check_writes(const char *what)
{
    for (unsigned i = 0; i < S.n_named && !S.unsound; i++) {
        for (unsigned j = 0; j < S.n_sources; j++)
            if (overlaps(S.named[i].lo, S.named[i].hi, &S.sources[j]))
                S.unsound = true;      /* a descriptor or list may have changed */
        if (overlaps(BAR0_BASE, BAR0_BASE + VTIO_DMAE_REGS_SIZE, &S.named[i]))
            S.unsound = true;          /* the engine may have reprogrammed itself */
        if (overlaps(BAR2_BASE, BAR2_BASE + VTIO_DMAE_MSIX_SIZE, &S.named[i]))
            S.msix_written = true;     /* an MSI-X message is a write to any address */
    }
    if (S.unsound || S.msix_written)
        return;
    for (uint64_t off = 0; off < CHECKED; off += 4096) {
        if (memcmp(S.before + off, S.ram + off, 4096) == 0)
            continue;
        for (uint64_t pa = off; pa < off + 4096; pa++)
            FUZZ_CHECK(S.before[pa] == S.ram[pa] || named(pa),
                       "after %s the byte at %#llx changed (%#x -> %#x), which no consumed "
                       "descriptor names", what, (unsigned long long)pa, S.before[pa],
                       S.ram[pa]);
    }
}

static bool documented_error(uint32_t e)
{
    switch (e) {
    case VTIO_DMAE_ERR_OPCODE: case VTIO_DMAE_ERR_LENGTH: case VTIO_DMAE_ERR_OVERLAP:
    case VTIO_DMAE_ERR_RESERVED: case VTIO_DMAE_ERR_SG: case VTIO_DMAE_ERR_DESC_FETCH:
    case VTIO_DMAE_ERR_SRC_FAULT: case VTIO_DMAE_ERR_DST_FAULT: case VTIO_DMAE_ERR_SG_FETCH:
    case VTIO_DMAE_ERR_COMPLETION: case VTIO_DMAE_ERR_RING:
        return true;
    default:
        return false;
    }
}

/* b, a: the channel before and after the op.  (A halted channel's ring
 * registers may change later, with EN clear: ERR_INDEX is checked against
 * the ring it halted on, in the op that halted it.) */
static void check_halt(unsigned ch, const struct chan_view *b, const struct chan_view *a)
{
    if (a->state != VTIO_DMAE_STATE_HALTED)
        return;
    uint32_t err = rd32(ch, VTIO_DMAE_ERROR), index = rd32(ch, VTIO_DMAE_ERR_INDEX);
    FUZZ_CHECK(documented_error(err), "channel %u halted with error %#x", ch, err);
    FUZZ_CHECK(b->state == VTIO_DMAE_STATE_HALTED || err == VTIO_DMAE_ERR_RING ||
                   index < a->size,
               "channel %u halted at index %u of a %u-entry ring", ch, index, a->size);
}

/* ------------------------------------------------------------------------
 * Ops.
 */

static void op_desc(struct fuzz_in *in)
{
    unsigned ch = fuzz_u8(in) % NCHAN;
    uint8_t slot = fuzz_u8(in), op = fuzz_u8(in), flags = fuzz_u8(in);
    struct vtio_dmae_desc d = {
        .op_flags = VTIO_DMAE_OP_FLAGS((op & 0x80) ? op : op % 6,
                                       (flags & 0x80) ? flags << 4 : flags & 3),
    };
    uint64_t src = fuzz_u64(in), dst = fuzz_u64(in), len = fuzz_u64(in), c = fuzz_u64(in);
    d.src = (d.op_flags & 0xff) == VTIO_DMAE_OP_FILL ? src : addr_operand(src);
    d.dst = addr_operand(dst);
    d.len = len_operand(len);
    d.completion = (c & 1) ? addr_operand(c) : addr_operand(c) & ~31ull;
    d.src_sg_count = fuzz_u16(in);
    d.dst_sg_count = fuzz_u16(in);
    d.cookie = fuzz_u8(in);
    uint8_t junk = fuzz_u8(in);
    if (junk & 1)
        d.reserved0 = junk;
    if (junk & 2)
        d.reserved1 = junk;
    if ((d.op_flags & 0xff) == VTIO_DMAE_OP_NOP && !(junk & 4))
        d.src = d.dst = d.len = 0;
    struct chan_view v = view(ch);
    if (!ring_valid(&v))
        return;
    uint64_t at = v.base + 64ull * (slot & (v.size - 1));
    if (at < CHECKED && at + sizeof(d) <= CHECKED)
        memcpy(S.ram + at, &d, sizeof(d));
}

static void op_sg(struct fuzz_in *in)
{
    uint16_t idx = fuzz_u16(in) % ((CTRL_SIZE - SGL_BASE) / 16);
    struct vtio_dmae_sg e = { .addr = addr_operand(fuzz_u64(in)), .len = fuzz_u32(in) };
    uint8_t junk = fuzz_u8(in);
    e.reserved = (junk & 1) ? junk : 0;
    memcpy(S.ram + SGL_BASE + 16ull * idx, &e, sizeof(e));
}

static void op_ram(struct fuzz_in *in)
{
    uint64_t off = fuzz_u32(in) % CHECKED;
    uint8_t buf[64];
    size_t n = fuzz_u8(in) % (sizeof(buf) + 1);
    fuzz_bytes(in, buf, n);
    if (n > CHECKED - off)
        n = CHECKED - off;
    memcpy(S.ram + off, buf, n);
}

static void op_doorbell(struct fuzz_in *in)
{
    unsigned ch = fuzz_u8(in) % NCHAN;
    uint8_t n = fuzz_u8(in);
    struct chan_view v = view(ch);
    uint32_t tail = (n & 0x80) ? fuzz_u16(in)
                               : (ring_valid(&v) ? (v.tail + n) & (v.size - 1) : v.tail + n);
    wr32(ch, VTIO_DMAE_TAIL, tail);
}

static void op_reg(struct fuzz_in *in)
{
    unsigned ch = fuzz_u8(in) % NCHAN;
    uint8_t reg = fuzz_u8(in);
    uint64_t val = fuzz_u64(in);
    switch (reg % 8) {
    case 0: wr64(ch, VTIO_DMAE_RING_BASE, (reg & 0x80) ? val : addr_operand(val)); break;
    case 1: wr32(ch, VTIO_DMAE_RING_SIZE, (reg & 0x80) ? (uint32_t)val : 1u << (val % 18)); break;
    case 2: wr32(ch, VTIO_DMAE_CTRL, (uint32_t)val & ((reg & 0x80) ? ~0u : 7u)); break;
    case 3: wr32(ch, VTIO_DMAE_INT_VEC, (uint32_t)val); break;
    case 4: wr32(ch, VTIO_DMAE_TAIL, (uint32_t)val); break;
    case 5: vtio_mem_write32(S.m->mem, BAR0_BASE + VTIO_DMAE_GCTRL, (uint32_t)val); break;
    case 6: start_channel(ch); break;
    default:                           /* any register, any size */
        vtio_mem_write(S.m->mem, BAR0_BASE + (val >> 32) % VTIO_DMAE_REGS_SIZE, &val,
                       1u << (reg >> 6));
        break;
    }
}

static void run_op(struct fuzz_in *in, enum op op)
{
    switch (op) {
    case OP_DESC:     op_desc(in); break;
    case OP_SG:       op_sg(in); break;
    case OP_RAM:      op_ram(in); break;
    case OP_DOORBELL: op_doorbell(in); break;
    case OP_REG:      op_reg(in); break;
    case OP_BME:      set_master(fuzz_u8(in) & 1); break;
    case OP_MSIX:     set_msix(fuzz_u8(in) & 1); break;
    case OP_COUNT:    break;
    }
}

static const char *const op_names[OP_COUNT] = { "DESC", "SG", "RAM", "DOORBELL", "REG", "BME",
                                                "MSIX" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = fuzz_in_make(data, size);
    LLVMFuzzerInitialize(NULL, NULL);
    reset_state();
    while (fuzz_more(&in)) {
        enum op op = (enum op)(fuzz_u8(&in) % OP_COUNT);
        struct chan_view b[NCHAN], a[NCHAN];
        for (unsigned ch = 0; ch < NCHAN; ch++)
            b[ch] = view(ch);
        bool memory_op = op == OP_DESC || op == OP_SG || op == OP_RAM;
        if (!memory_op)
            memcpy(S.before, S.ram, CHECKED);
        run_op(&in, op);
        if (memory_op)
            continue;               /* software's writes: nothing runs */
        wait_quiet(op_names[op]);
        S.n_named = S.n_sources = 0;
        S.unsound = false;
        for (unsigned ch = 0; ch < NCHAN; ch++) {
            a[ch] = view(ch);
            name_consumed(&b[ch], &a[ch], rd32(ch, VTIO_DMAE_ERR_INDEX));
            check_halt(ch, &b[ch], &a[ch]);
            FUZZ_TRACE("%s: channel %u HEAD %u -> %u, completed %llu, state %u, error %#x\n",
                       op_names[op], ch, b[ch].head, a[ch].head,
                       (unsigned long long)a[ch].completed, a[ch].state,
                       rd32(ch, VTIO_DMAE_ERROR));
        }
        check_writes(op_names[op]);
    }
    return 0;
}
