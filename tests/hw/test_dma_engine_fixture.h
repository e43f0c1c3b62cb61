/*
 * Shared fixture of the DMA engine tests (test_dma_engine*.c).
 *
 * A bare machine without host software: 256 MiB of RAM at 0 (everything
 * from 0x10000000 up to the BARs is a hole), an interrupt sink with 4 CPUs,
 * one PCI segment with ECAM at 0xE0000000, and the engine at 00:03.0.  The
 * fixture programs it the way software would: configuration writes (BAR0
 * at 0xC0000000, BAR2 at 0xC0010000, MEM and bus mastering on, MSI-X
 * enabled), MSI-X table entries through BAR2, registers through BAR0,
 * descriptors and buffers in RAM with CPU-side accesses.  Channel n's
 * vector goes to CPU 0, vector VEC(n), whose handler counts deliveries and
 * runs the test's hook (on the channel's thread).
 *
 * RAM layout used by the tests:
 *   RING(n)     0x00100000 + n * 64 KiB   descriptor rings (up to 1024)
 *   COMPL(n)    0x00200000 + n * 64 KiB   completion records (2048 each)
 *   SGL(n)      0x00300000 + n * 64 KiB   SG lists
 *   SCRATCH     0x00400000                small test data
 *   BUF(n)      0x01000000 + n * 4 MiB    per-channel buffers
 *   BIG_SRC/DST 0x04000000, 0x08000000    64 MiB each
 */
#ifndef VTIO_TESTS_HW_DMA_ENGINE_FIXTURE_H
#define VTIO_TESTS_HW_DMA_ENGINE_FIXTURE_H

#include <vtio/dev/dma_engine.h>
#include <vtio/dma_port.h>
#include <vtio/intr.h>
#include <vtio/mem.h>
#include <vtio/pci.h>

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define RAM_SIZE   (256 * VTIO_MiB)
#define HOLE       RAM_SIZE                    /* first byte of the hole */
#define ECAM       0xE0000000ull
#define BAR0_BASE  0xC0000000ull
#define BAR2_BASE  0xC0010000ull
#define DEVFN      VTIO_PCI_DEVFN(3, 0)
#define RID        VTIO_PCI_RID(0, 3, 0)
#define VEC(n)     (48u + (n))

#define RING(n)    (0x00100000ull + (uint64_t)(n) * 0x10000)
#define COMPL(n)   (0x00200000ull + (uint64_t)(n) * 0x10000)
#define SGL(n)     (0x00300000ull + (uint64_t)(n) * 0x10000)
#define SCRATCH    0x00400000ull
#define BUF(n)     (0x01000000ull + (uint64_t)(n) * 0x400000)
#define BIG_SRC    0x04000000ull
#define BIG_DST    0x08000000ull

#define WAIT_NS    (20ull * 1000000000)        /* a test fails, never hangs */

typedef void (*irq_hook)(unsigned chan);

struct fixture {
    struct vtio_mem *mem;
    struct vtio_intr *intr;
    struct vtio_pci_bus *bus;
    struct vtio_dma_engine *eng;
    unsigned nchan;
    unsigned msix_cap;
    _Atomic unsigned irqs[VTIO_DMAE_MAX_CHANNELS];
    _Atomic(irq_hook) hook;
    /* Software's view of each channel's ring. */
    uint32_t size[VTIO_DMAE_MAX_CHANNELS], tail[VTIO_DMAE_MAX_CHANNELS];
};

static struct fixture F;

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- registers */

static inline uint64_t creg(unsigned ch, unsigned reg)
{
    return BAR0_BASE + VTIO_DMAE_CHAN_BASE(ch) + reg;
}
static inline uint32_t rd32(unsigned ch, unsigned reg)
{
    return vtio_mem_read32(F.mem, creg(ch, reg));
}
static inline uint64_t rd64(unsigned ch, unsigned reg)
{
    return vtio_mem_read64(F.mem, creg(ch, reg));
}
static inline void wr32(unsigned ch, unsigned reg, uint32_t v)
{
    vtio_mem_write32(F.mem, creg(ch, reg), v);
}
static inline void wr64(unsigned ch, unsigned reg, uint64_t v)
{
    vtio_mem_write64(F.mem, creg(ch, reg), v);
}
static inline uint32_t grd32(unsigned reg)
{
    return vtio_mem_read32(F.mem, BAR0_BASE + reg);
}
static inline uint32_t state_of(unsigned ch)
{
    return VTIO_DMAE_STATUS_STATE(rd32(ch, VTIO_DMAE_STATUS));
}

/* ---- configuration space */

static inline uint32_t cfg_rd(uint16_t off, unsigned size)
{
    return vtio_pci_cfg_read(F.bus, RID, off, size);
}
static inline void cfg_wr(uint16_t off, uint32_t v, unsigned size)
{
    vtio_pci_cfg_write(F.bus, RID, off, v, size);
}

static inline unsigned find_cap(uint8_t id)
{
    unsigned off = cfg_rd(VTIO_PCI_CAPABILITY_LIST, 1) & ~3u;
    for (int n = 0; off && n < 48; n++) {
        if (cfg_rd((uint16_t)off, 1) == id)
            return off;
        off = cfg_rd((uint16_t)(off + 1), 1) & ~3u;
    }
    return 0;
}

static inline void set_master(bool on)
{
    uint16_t cmd = (uint16_t)cfg_rd(VTIO_PCI_COMMAND, 2);
    cmd = on ? cmd | VTIO_PCI_COMMAND_MASTER : cmd & ~VTIO_PCI_COMMAND_MASTER;
    cfg_wr(VTIO_PCI_COMMAND, cmd, 2);
}

static inline void msix_mask(unsigned vec, bool masked)
{
    vtio_mem_write32(F.mem, BAR2_BASE + VTIO_DMAE_MSIX_TABLE + 16 * vec +
                     VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL, masked ? 1 : 0);
}

static inline void irq_handler(void *opaque, unsigned cpu, unsigned vector)
{
    (void)opaque, (void)cpu;
    unsigned ch = vector - VEC(0);
    irq_hook h = atomic_load(&F.hook);
    if (h)
        h(ch);                           /* before counting: waiters see its effect */
    atomic_fetch_add(&F.irqs[ch], 1);
}

static inline void fixture_down(void)
{
    vtio_dma_engine_destroy(F.eng);
    vtio_pci_bus_destroy(F.bus);
    vtio_intr_destroy(F.intr);
    vtio_mem_destroy(F.mem);
    F.eng = NULL;
}

/* Places the BARs, turns on decoding and bus mastering, and sets up
 * MSI-X (also after an FLR, which clears all of that). */
static inline void pci_program(void)
{
    cfg_wr(VTIO_PCI_BAR0, (uint32_t)BAR0_BASE, 4);
    cfg_wr(VTIO_PCI_BAR0 + 4, (uint32_t)(BAR0_BASE >> 32), 4);
    cfg_wr(VTIO_PCI_BAR0 + 8, (uint32_t)BAR2_BASE, 4);
    cfg_wr(VTIO_PCI_BAR0 + 12, (uint32_t)(BAR2_BASE >> 32), 4);
    cfg_wr(VTIO_PCI_COMMAND, VTIO_PCI_COMMAND_MEM | VTIO_PCI_COMMAND_MASTER, 2);
    CHECK((F.msix_cap = find_cap(VTIO_PCI_CAP_ID_MSIX)) != 0);
    cfg_wr((uint16_t)(F.msix_cap + VTIO_PCI_MSIX_FLAGS), VTIO_PCI_MSIX_FLAGS_ENABLE, 2);
    for (unsigned v = 0; v < F.nchan; v++) {
        uint64_t addr;
        uint32_t data;
        vtio_msi_compose(0, VEC(v), &addr, &data);
        uint64_t e = BAR2_BASE + VTIO_DMAE_MSIX_TABLE + 16 * v;
        vtio_mem_write32(F.mem, e + VTIO_PCI_MSIX_ENTRY_LOWER_ADDR, (uint32_t)addr);
        vtio_mem_write32(F.mem, e + VTIO_PCI_MSIX_ENTRY_UPPER_ADDR, (uint32_t)(addr >> 32));
        vtio_mem_write32(F.mem, e + VTIO_PCI_MSIX_ENTRY_DATA, data);
        msix_mask(v, false);
    }
}

/* Builds the machine and programs the engine as a driver would, up to (not
 * including) the channels' ring registers. */
static inline void fixture_up(unsigned nchan)
{
    if (F.eng)                           /* a failed test left its machine */
        fixture_down();
    memset(&F, 0, sizeof(F));
    F.nchan = nchan;
    CHECK((F.mem = vtio_mem_create()) != NULL);
    CHECK_OK(vtio_mem_add_ram(F.mem, 0, RAM_SIZE, "ram"));
    CHECK((F.intr = vtio_intr_create(F.mem, 4)) != NULL);
    CHECK((F.bus = vtio_pci_bus_create(F.mem, 0, ECAM, 0, 255)) != NULL);
    struct vtio_dma_engine_config cfg = { .channels = nchan };
    CHECK_OK(vtio_dma_engine_create(F.bus, 0, DEVFN, &cfg, &F.eng));

    pci_program();
    for (unsigned v = 0; v < nchan; v++)
        CHECK_OK(vtio_intr_register(F.intr, 0, VEC(v), irq_handler, NULL));
}

/* Programs channel ch's ring (size entries at RING(ch)) and enables it,
 * with interrupts. */
static inline void chan_start(unsigned ch, uint32_t size)
{
    F.size[ch] = size;
    F.tail[ch] = rd32(ch, VTIO_DMAE_TAIL);
    vtio_mem_set(F.mem, RING(ch), 0, (size_t)size * 64);
    wr64(ch, VTIO_DMAE_RING_BASE, RING(ch));
    wr32(ch, VTIO_DMAE_RING_SIZE, size);
    wr32(ch, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN | VTIO_DMAE_CTRL_IE);
    CHECK_EQ(state_of(ch), VTIO_DMAE_STATE_RUNNING);
}

/* ---- descriptors */

static inline struct vtio_dmae_desc desc(uint32_t op, uint16_t flags, uint64_t src,
                                         uint64_t dst, uint64_t len)
{
    struct vtio_dmae_desc d = { .op_flags = VTIO_DMAE_OP_FLAGS(op, flags),
                                .src = src, .dst = dst, .len = len };
    return d;
}

/* Writes d into the next free slot of ch's ring (not yet announced),
 * clearing its completion record first.  @returns the slot. */
static inline uint32_t put(unsigned ch, const struct vtio_dmae_desc *d)
{
    uint32_t slot = F.tail[ch];
    if (d->completion && !(d->completion & 31) && d->completion < RAM_SIZE)
        vtio_mem_set(F.mem, d->completion, 0, sizeof(struct vtio_dmae_completion));
    vtio_mem_write(F.mem, RING(ch) + (uint64_t)slot * 64, d, sizeof(*d));
    F.tail[ch] = (slot + 1) & (F.size[ch] - 1);
    return slot;
}

static inline void doorbell(unsigned ch)
{
    wr32(ch, VTIO_DMAE_TAIL, F.tail[ch]);
}

/* Waits until HEAD reaches TAIL (returns true) or the channel halts
 * (returns false); fails the test after WAIT_NS. */
static inline bool wait_idle(unsigned ch)
{
    uint64_t t0 = now_ns();
    for (;;) {
        if (rd32(ch, VTIO_DMAE_HEAD) == F.tail[ch])
            return true;
        if (state_of(ch) == VTIO_DMAE_STATE_HALTED)
            return false;
        CHECKF(now_ns() - t0 < WAIT_NS, "channel %u stuck: HEAD %u TAIL %u STATUS %#x", ch,
               rd32(ch, VTIO_DMAE_HEAD), F.tail[ch], rd32(ch, VTIO_DMAE_STATUS));
        sched_yield();
    }
}

static inline void wait_irqs(unsigned ch, unsigned n)
{
    uint64_t t0 = now_ns();
    while (atomic_load(&F.irqs[ch]) < n) {
        CHECKF(now_ns() - t0 < WAIT_NS, "channel %u: %u interrupts, want %u", ch,
               atomic_load(&F.irqs[ch]), n);
        sched_yield();
    }
}

static inline struct vtio_dmae_completion record(uint64_t addr)
{
    struct vtio_dmae_completion c;
    vtio_mem_read(F.mem, addr, &c, sizeof(c));
    return c;
}

/* ---- buffers with guard bytes */

#define GUARD 64
#define GUARD_BYTE 0xa5

/* Fills [addr - GUARD, addr + len + GUARD) with GUARD_BYTE. */
static inline void guard_set(uint64_t addr, uint64_t len)
{
    vtio_mem_set(F.mem, addr - GUARD, GUARD_BYTE, len + 2 * GUARD);
}

/* Checks the guard bytes around [addr, addr + len) and, if len_untouched,
 * that the buffer itself still holds GUARD_BYTE. */
static inline void guard_check(uint64_t addr, uint64_t len, bool untouched)
{
    uint8_t g[GUARD], want[GUARD];
    memset(want, GUARD_BYTE, sizeof(want));
    vtio_mem_read(F.mem, addr - GUARD, g, GUARD);
    CHECK_MEM_EQ(g, want, GUARD);
    vtio_mem_read(F.mem, addr + len, g, GUARD);
    CHECK_MEM_EQ(g, want, GUARD);
    for (uint64_t off = 0; untouched && off < len; off += GUARD) {
        size_t n = len - off < GUARD ? (size_t)(len - off) : GUARD;
        vtio_mem_read(F.mem, addr + off, g, n);
        CHECK_MEM_EQ(g, want, n);
    }
}

/* Random test data, written to RAM and returned in *host (malloc'd). */
static inline uint8_t *random_at(uint64_t addr, size_t len, uint64_t seed)
{
    uint8_t *p = malloc(len ? len : 1);
    CHECK(p != NULL);
    vtio_test_fill(p, len, seed);
    vtio_mem_write(F.mem, addr, p, len);
    return p;
}

/* Checks that RAM at addr holds want[0, len). */
static inline void expect_ram(uint64_t addr, const uint8_t *want, size_t len)
{
    uint8_t *got = malloc(len ? len : 1);
    CHECK(got != NULL);
    vtio_mem_read(F.mem, addr, got, len);
    int same = memcmp(got, want, len) == 0;
    if (!same) {
        size_t i = 0;
        while (got[i] == want[i])
            i++;
        uint8_t a = got[i], b = want[i];
        free(got);
        CHECKF(0, "RAM at %#llx differs at byte %zu: %#x, want %#x",
               (unsigned long long)addr, i, a, b);
    }
    free(got);
}

#endif
