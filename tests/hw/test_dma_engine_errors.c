/*
 * The DMA engine's error codes: every code, with the registers, completion
 * record and interrupt it produces, and proof that nothing was written.
 *
 * Each descriptor case runs as slot 1 of a ring, between a good FILL (slot
 * 0, which must complete) and another (slot 2, which must not run).  Before
 * it, the source area holds SRC_BYTE and every destination area GUARD_BYTE,
 * right up to the hole at 256 MiB; afterwards all of them must be unchanged.
 */
#include "test_dma_engine_fixture.h"

#define S        BUF(0)                      /* source area (SRC_BYTE) */
#define D        BUF(1)                      /* destination areas (GUARD_BYTE) */
#define D2       BUF(2)
#define H        HOLE
#define NEAR_H   (HOLE - VTIO_MiB)           /* RAM just below the hole (GUARD_BYTE) */
#define GOOD     BUF(3)                      /* the good FILLs' target */
#define SRC_BYTE 0x5a
#define OPF      VTIO_DMAE_OP_FLAGS

struct ecase {
    const char *what;
    struct vtio_dmae_desc d;                 /* completion 0: the default record */
    uint32_t err;
    uint64_t addr;                           /* ERR_ADDR and the record's fault_addr */
    unsigned nsrc, ndst;                     /* SG lists, written at SGL(0) / +0x1000 */
    struct vtio_dmae_sg src[3], dst[3];
    bool no_record;                          /* the record cannot be written */
};

#define SL  SGL(0)
#define DL  (SGL(0) + 0x1000)
#define SG(op_len, ns, nd) { .op_flags = OPF(VTIO_DMAE_OP_COPY_SG, 0), .src = SL, .dst = DL, \
                             .len = (op_len), .src_sg_count = (ns), .dst_sg_count = (nd) }

#define W(text)      .what = (text)
#define ERR(e, a)    .err = (e), .addr = (a)
#define LISTS(ns, nd) .nsrc = (ns), .ndst = (nd)

static const struct ecase cases[] = {
    { W("opcode 5"), .d = { .op_flags = OPF(5, 0), .src = S, .dst = D, .len = 64 },
      ERR(VTIO_DMAE_ERR_OPCODE, 0) },
    { W("opcode 255"), .d = { .op_flags = OPF(255, 0), .len = 64 },
      ERR(VTIO_DMAE_ERR_OPCODE, 0) },
    { W("COPY of 0 bytes"), .d = { .op_flags = OPF(1, 0), .src = S, .dst = D },
      ERR(VTIO_DMAE_ERR_LENGTH, 0) },
    { W("FILL over MAX_LEN"),
      .d = { .op_flags = OPF(2, 0), .dst = D, .len = VTIO_DMAE_MAX_LEN + 1 },
      ERR(VTIO_DMAE_ERR_LENGTH, 0) },
    { W("NOP with a length"), .d = { .op_flags = OPF(0, 0), .len = 8 },
      ERR(VTIO_DMAE_ERR_LENGTH, 0) },
    { W("op_flags bits 15:8"),
      .d = { .op_flags = OPF(1, 0) | 0x100, .src = S, .dst = D, .len = 64 },
      ERR(VTIO_DMAE_ERR_RESERVED, 0) },
    { W("undefined flag"), .d = { .op_flags = OPF(1, 0x4), .src = S, .dst = D, .len = 64 },
      ERR(VTIO_DMAE_ERR_RESERVED, 0) },
    { W("reserved0"),
      .d = { .op_flags = OPF(1, 0), .reserved0 = 1, .src = S, .dst = D, .len = 64 },
      ERR(VTIO_DMAE_ERR_RESERVED, 0) },
    { W("reserved1"),
      .d = { .op_flags = OPF(2, 0), .dst = D, .len = 64, .reserved1 = 1ull << 63 },
      ERR(VTIO_DMAE_ERR_RESERVED, 0) },
    { W("misaligned completion"),
      .d = { .op_flags = OPF(1, 0), .src = S, .dst = D, .len = 64,
             .completion = COMPL(0) + 32 + 16 },
      ERR(VTIO_DMAE_ERR_RESERVED, 0), .no_record = true },
    { W("SG count on a COPY"),
      .d = { .op_flags = OPF(1, 0), .src = S, .dst = D, .len = 64, .src_sg_count = 1 },
      ERR(VTIO_DMAE_ERR_RESERVED, 0) },
    { W("NOP with an address"), .d = { .op_flags = OPF(0, 0), .src = S },
      ERR(VTIO_DMAE_ERR_RESERVED, 0) },
    { W("COPY overlapping"), .d = { .op_flags = OPF(1, 0), .src = D, .dst = D + 10, .len = 64 },
      ERR(VTIO_DMAE_ERR_OVERLAP, 0) },
    { W("COPY onto itself"), .d = { .op_flags = OPF(1, 0), .src = D, .dst = D, .len = 1 },
      ERR(VTIO_DMAE_ERR_OVERLAP, 0) },
    { W("SG source count 0"), .d = SG(64, 0, 1), ERR(VTIO_DMAE_ERR_SG, 0) },
    { W("SG destination count 257"), .d = SG(64, 1, 257), ERR(VTIO_DMAE_ERR_SG, 0) },
    { W("SG list misaligned"),
      .d = { .op_flags = OPF(4, 0), .src = SL + 8, .dst = DL, .len = 64, .src_sg_count = 1,
             .dst_sg_count = 1 },
      ERR(VTIO_DMAE_ERR_SG, 0) },
    { W("SG entry of 0 bytes"), .d = SG(64, 2, 1), ERR(VTIO_DMAE_ERR_SG, 0), LISTS(2, 1),
      .src = { { S, 0, 0 }, { S + 64, 64, 0 } }, .dst = { { D, 64, 0 } } },
    { W("SG totals differ"), .d = SG(64, 1, 1), ERR(VTIO_DMAE_ERR_SG, 0), LISTS(1, 1),
      .src = { { S, 64, 0 } }, .dst = { { D, 32, 0 } } },
    { W("SG totals differ from len"), .d = SG(32, 1, 1), ERR(VTIO_DMAE_ERR_SG, 0),
      LISTS(1, 1), .src = { { S, 64, 0 } }, .dst = { { D, 64, 0 } } },
    { W("SG entry reserved field"), .d = SG(64, 1, 1), ERR(VTIO_DMAE_ERR_RESERVED, 0),
      LISTS(1, 1), .src = { { S, 64, 1 } }, .dst = { { D, 64, 0 } } },
    { W("SG destination overlaps another source entry"), .d = SG(128, 2, 1),
      ERR(VTIO_DMAE_ERR_OVERLAP, 0), LISTS(2, 1),
      .src = { { S, 64, 0 }, { D + 100, 64, 0 } }, .dst = { { D, 128, 0 } } },
    { W("SG source list runs into the hole"),
      .d = { .op_flags = OPF(4, 0), .src = H - 32, .dst = DL, .len = 64, .src_sg_count = 3,
             .dst_sg_count = 1 },
      ERR(VTIO_DMAE_ERR_SG_FETCH, H) },
    { W("SG destination list in the hole"),
      .d = { .op_flags = OPF(4, 0), .src = SL, .dst = H + 4096, .len = 64,
             .src_sg_count = 1, .dst_sg_count = 1 },
      ERR(VTIO_DMAE_ERR_SG_FETCH, H + 4096), LISTS(1, 0), .src = { { S, 64, 0 } } },
    { W("COPY source runs into the hole"),
      .d = { .op_flags = OPF(1, 0), .src = H - 100, .dst = D, .len = 200 },
      ERR(VTIO_DMAE_ERR_SRC_FAULT, H) },
    { W("COPY destination runs into the hole"),
      .d = { .op_flags = OPF(1, 0), .src = S, .dst = H - 4099, .len = 8192 },
      ERR(VTIO_DMAE_ERR_DST_FAULT, H) },
    { W("COPY source far in the hole"),
      .d = { .op_flags = OPF(1, 0), .src = 0x7000000040ull, .dst = D, .len = 64 },
      ERR(VTIO_DMAE_ERR_SRC_FAULT, 0x7000000040ull) },
    { W("COPY source wraps the address space"),
      .d = { .op_flags = OPF(1, 0), .src = 0xffffffffffffffc0ull, .dst = D, .len = 128 },
      ERR(VTIO_DMAE_ERR_SRC_FAULT, 0xffffffffffffffc0ull) },
    { W("FILL into the hole"), .d = { .op_flags = OPF(2, 0), .src = 1, .dst = H - 8, .len = 64 },
      ERR(VTIO_DMAE_ERR_DST_FAULT, H) },
    { W("COMPARE first buffer"),
      .d = { .op_flags = OPF(3, 0), .src = H - 1, .dst = D, .len = 2 },
      ERR(VTIO_DMAE_ERR_SRC_FAULT, H) },
    { W("COMPARE second buffer"),
      .d = { .op_flags = OPF(3, 0), .src = S, .dst = H - 16, .len = 64 },
      ERR(VTIO_DMAE_ERR_DST_FAULT, H) },
    { W("SG source entry in the hole"), .d = SG(128, 2, 1), ERR(VTIO_DMAE_ERR_SRC_FAULT, H),
      LISTS(2, 1), .src = { { S, 64, 0 }, { H - 8, 64, 0 } }, .dst = { { D, 128, 0 } } },
    { W("SG destination entry in the hole"), .d = SG(128, 1, 2),
      ERR(VTIO_DMAE_ERR_DST_FAULT, H + 60), LISTS(1, 2),
      .src = { { S, 128, 0 } }, .dst = { { D, 64, 0 }, { H + 60, 64, 0 } } },
    { W("completion record in the MSI window"),
      .d = { .op_flags = OPF(1, 0), .src = S, .dst = D, .len = 64,
             .completion = VTIO_MSI_WINDOW_BASE + 0x40 },
      ERR(VTIO_DMAE_ERR_COMPLETION, VTIO_MSI_WINDOW_BASE + 0x40), .no_record = true },
    { W("COPY into the MSI window"),
      .d = { .op_flags = OPF(1, 0), .src = S, .dst = VTIO_MSI_WINDOW_BASE + 0x100, .len = 4 },
      ERR(VTIO_DMAE_ERR_DST_FAULT, VTIO_MSI_WINDOW_BASE + 0x100) },
    { W("FILL from a hole into the MSI window"),
      .d = { .op_flags = OPF(2, 0), .dst = VTIO_MSI_WINDOW_BASE - 8, .len = 64 },
      ERR(VTIO_DMAE_ERR_DST_FAULT, VTIO_MSI_WINDOW_BASE - 8) },
    { W("SG destination entry in the MSI window"), .d = SG(128, 1, 2),
      ERR(VTIO_DMAE_ERR_DST_FAULT, VTIO_MSI_WINDOW_BASE), LISTS(1, 2),
      .src = { { S, 128, 0 } }, .dst = { { D, 64, 0 }, { VTIO_MSI_WINDOW_BASE, 64, 0 } } },
    { W("completion record in the hole"),
      .d = { .op_flags = OPF(1, 0), .src = S, .dst = D, .len = 64, .completion = H },
      ERR(VTIO_DMAE_ERR_COMPLETION, H), .no_record = true },
};

/* The areas a failed descriptor must leave alone, and their contents. */
static const struct { uint64_t addr, len; uint8_t byte; } areas[] = {
    { S, 4 * VTIO_MiB, SRC_BYTE }, { D, 4 * VTIO_MiB, GUARD_BYTE },
    { D2, 4 * VTIO_MiB, GUARD_BYTE }, { NEAR_H, VTIO_MiB, GUARD_BYTE },
};

static void areas_set(void)
{
    for (size_t i = 0; i < sizeof(areas) / sizeof(areas[0]); i++)
        vtio_mem_set(F.mem, areas[i].addr, areas[i].byte, areas[i].len);
}

static void areas_check(const char *what)
{
    static uint8_t got[65536], want[65536];
    for (size_t i = 0; i < sizeof(areas) / sizeof(areas[0]); i++) {
        memset(want, areas[i].byte, sizeof(want));
        for (uint64_t off = 0; off < areas[i].len; off += sizeof(got)) {
            vtio_mem_read(F.mem, areas[i].addr + off, got, sizeof(got));
            CHECKF(memcmp(got, want, sizeof(got)) == 0, "%s: area %#llx was written", what,
                   (unsigned long long)(areas[i].addr + off));
        }
    }
}

/* Runs a good FILL, the descriptor d, and another good FILL; checks that the
 * channel halted at d with err/addr, and everything that follows from it. */
static void expect_halt(const char *what, struct vtio_dmae_desc d, uint32_t err, uint64_t addr,
                        bool record_written)
{
    const uint64_t rec = COMPL(0) + 32;
    unsigned irqs = atomic_load(&F.irqs[0]);
    uint64_t done = rd64(0, VTIO_DMAE_COMPLETED);
    vtio_mem_set(F.mem, GOOD, 0, 128);
    vtio_mem_set(F.mem, COMPL(0), 0, 96);

    struct vtio_dmae_desc good = desc(VTIO_DMAE_OP_FILL, 0, 0x1111111111111111ull, GOOD, 64);
    uint32_t first = put(0, &good);
    if (!d.completion)
        d.completion = rec;
    d.cookie = 0xbad0000 + first;
    put(0, &d);
    good.dst = GOOD + 64;
    put(0, &good);
    doorbell(0);
    CHECKF(!wait_idle(0), "%s: the channel did not halt", what);

    uint32_t index = (first + 1) & (F.size[0] - 1);
    CHECKF(rd32(0, VTIO_DMAE_ERROR) == err, "%s: ERROR %#x (%s), want %#x (%s)", what,
           rd32(0, VTIO_DMAE_ERROR), vtio_dmae_status_name(rd32(0, VTIO_DMAE_ERROR)), err,
           vtio_dmae_status_name(err));
    CHECKF(rd64(0, VTIO_DMAE_ERR_ADDR) == addr, "%s: ERR_ADDR %#llx, want %#llx", what,
           (unsigned long long)rd64(0, VTIO_DMAE_ERR_ADDR), (unsigned long long)addr);
    CHECK_EQ(state_of(0), VTIO_DMAE_STATE_HALTED);
    CHECK_EQ(rd32(0, VTIO_DMAE_ERR_INDEX), index);
    CHECK_EQ(rd32(0, VTIO_DMAE_HEAD), index);
    CHECK_EQ(grd32(VTIO_DMAE_GSTS), 1);
    CHECK_EQ(rd64(0, VTIO_DMAE_COMPLETED), done + 1);
    CHECK_EQ(vtio_mem_read64(F.mem, GOOD), 0x1111111111111111ull);  /* slot 0 ran */
    CHECK_EQ(vtio_mem_read64(F.mem, GOOD + 64), 0);                  /* slot 2 did not */

    struct vtio_dmae_completion c = record(rec);
    if (record_written) {
        CHECK_EQ(c.status, err);
        CHECK_EQ(c.result, 0);
        CHECK_EQ(c.bytes, 0);
        CHECK_EQ(c.fault_addr, addr);
        CHECK_EQ(c.cookie, d.cookie);
    } else {
        static const struct vtio_dmae_completion zero;
        CHECK_MEM_EQ(&c, &zero, sizeof(c));
        CHECK_EQ(vtio_mem_read64(F.mem, rec + 32), 0);
    }
    /* The halt interrupts (IE is set) though the descriptor did not ask. */
    wait_irqs(0, irqs + 1);
    usleep(2000);
    CHECK_EQ(atomic_load(&F.irqs[0]), irqs + 1);
    CHECK_EQ(rd32(0, VTIO_DMAE_STATUS), VTIO_DMAE_STATE_HALTED);  /* and no longer BUSY */

    /* A halted channel ignores doorbells. */
    uint32_t tail = rd32(0, VTIO_DMAE_TAIL);
    wr32(0, VTIO_DMAE_TAIL, (tail + 1) & (F.size[0] - 1));
    usleep(1000);
    CHECK_EQ(rd32(0, VTIO_DMAE_TAIL), tail);
    CHECK_EQ(rd32(0, VTIO_DMAE_HEAD), index);
    CHECK_EQ(rd32(0, VTIO_DMAE_STATUS), VTIO_DMAE_STATE_HALTED);
    CHECK_EQ(vtio_mem_read64(F.mem, GOOD + 64), 0);
}

/* CTRL.RESET and start again. */
static void restart(void)
{
    wr32(0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_RESET);
    CHECK_EQ(rd32(0, VTIO_DMAE_STATUS), VTIO_DMAE_STATE_IDLE);
    CHECK_EQ(rd32(0, VTIO_DMAE_ERROR), 0);
    CHECK_EQ(grd32(VTIO_DMAE_GSTS), 0);
    chan_start(0, 16);
}

static void t_descriptor_errors(void)
{
    fixture_up(1);
    chan_start(0, 16);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct ecase *e = &cases[i];
        areas_set();
        if (e->nsrc)
            vtio_mem_write(F.mem, SL, e->src, e->nsrc * sizeof(e->src[0]));
        if (e->ndst)
            vtio_mem_write(F.mem, DL, e->dst, e->ndst * sizeof(e->dst[0]));
        expect_halt(e->what, e->d, e->err, e->addr, !e->no_record);
        areas_check(e->what);
        restart();
        /* ...and works after the reset. */
        struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_FILL, 0, 7, GOOD, 8);
        put(0, &d);
        doorbell(0);
        CHECKF(wait_idle(0), "%s: no work after RESET", e->what);
        CHECK_EQ(vtio_mem_read64(F.mem, GOOD), 7);
        restart();
    }
    fixture_down();
}

/* ERR_RING: checked on EN 0->1, and TAIL >= RING_SIZE while running. */
static void t_ring_errors(void)
{
    static const struct { uint64_t base; uint32_t size, tail; } bad[] = {
        { RING(0) + 32, 16, 0 }, { RING(0), 0, 0 }, { RING(0), 1, 0 }, { RING(0), 24, 0 },
        { RING(0), 131072, 0 }, { RING(0), 16, 16 }, { 0xfffffffffffffc00ull, 64, 0 },
    };
    fixture_up(1);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned irqs = atomic_load(&F.irqs[0]);
        wr64(0, VTIO_DMAE_RING_BASE, bad[i].base);
        wr32(0, VTIO_DMAE_RING_SIZE, bad[i].size);
        wr32(0, VTIO_DMAE_TAIL, bad[i].tail);
        wr32(0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN | VTIO_DMAE_CTRL_IE);
        CHECKF(state_of(0) == VTIO_DMAE_STATE_HALTED, "case %zu: not halted", i);
        CHECK_EQ(rd32(0, VTIO_DMAE_ERROR), VTIO_DMAE_ERR_RING);
        CHECK_EQ(rd32(0, VTIO_DMAE_ERR_INDEX), 0);
        CHECK_EQ(rd64(0, VTIO_DMAE_ERR_ADDR), 0);
        CHECK_EQ(grd32(VTIO_DMAE_GSTS), 1);
        wait_irqs(0, irqs + 1);
        wr32(0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_RESET);
        CHECK_EQ(rd32(0, VTIO_DMAE_TAIL), 0);
    }
    /* The largest ring is fine. */
    wr64(0, VTIO_DMAE_RING_BASE, BUF(0));
    wr32(0, VTIO_DMAE_RING_SIZE, 65536);
    wr32(0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN);
    CHECK_EQ(state_of(0), VTIO_DMAE_STATE_RUNNING);
    wr32(0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_RESET);

    /* TAIL out of range while running halts at HEAD, after the work before. */
    chan_start(0, 16);
    struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_FILL, 0, 3, GOOD, 8);
    put(0, &d);
    put(0, &d);
    doorbell(0);
    CHECK(wait_idle(0));
    unsigned irqs = atomic_load(&F.irqs[0]);
    wr32(0, VTIO_DMAE_TAIL, 16);
    CHECK_EQ(state_of(0), VTIO_DMAE_STATE_HALTED);
    CHECK_EQ(rd32(0, VTIO_DMAE_ERROR), VTIO_DMAE_ERR_RING);
    CHECK_EQ(rd32(0, VTIO_DMAE_ERR_INDEX), 2);
    CHECK_EQ(rd32(0, VTIO_DMAE_TAIL), 2);
    wait_irqs(0, irqs + 1);
    /* Disabling does not clear a halt; only RESET does. */
    wr32(0, VTIO_DMAE_CTRL, 0);
    CHECK_EQ(state_of(0), VTIO_DMAE_STATE_HALTED);
    wr32(0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN);
    CHECK_EQ(state_of(0), VTIO_DMAE_STATE_HALTED);
    restart();
    fixture_down();
}

/* Bus mastering off: the descriptor fetch fails (and the interrupt cannot
 * leave the function either). */
static void t_bus_master_off(void)
{
    fixture_up(1);
    chan_start(0, 16);
    struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_FILL, VTIO_DMAE_FLAG_INTR, 5, GOOD, 8);
    put(0, &d);
    doorbell(0);
    CHECK(wait_idle(0));
    wait_irqs(0, 1);
    set_master(false);
    vtio_mem_set(F.mem, GOOD, 0, 8);
    put(0, &d);
    doorbell(0);
    CHECK(!wait_idle(0));
    CHECK_EQ(rd32(0, VTIO_DMAE_ERROR), VTIO_DMAE_ERR_DESC_FETCH);
    CHECK_EQ(rd32(0, VTIO_DMAE_ERR_INDEX), 1);
    CHECK_EQ(rd64(0, VTIO_DMAE_ERR_ADDR), RING(0) + 64);
    CHECK_EQ(vtio_mem_read64(F.mem, GOOD), 0);
    usleep(2000);
    CHECK_EQ(atomic_load(&F.irqs[0]), 1);                     /* lost with BME off */
    set_master(true);
    restart();
    put(0, &d);
    doorbell(0);
    CHECK(wait_idle(0));
    CHECK_EQ(vtio_mem_read64(F.mem, GOOD), 5);
    fixture_down();
}

/* A ring whose last slots lie in the hole: the readable descriptors of the
 * batch run, the first unreadable one halts the channel. */
static void t_ring_in_hole(void)
{
    fixture_up(1);
    const uint64_t ring = H - 2 * 64;
    wr64(0, VTIO_DMAE_RING_BASE, ring);
    wr32(0, VTIO_DMAE_RING_SIZE, 4);
    wr32(0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN | VTIO_DMAE_CTRL_IE);
    for (unsigned i = 0; i < 2; i++) {
        struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_FILL, 0, 0x10 + i, GOOD + 8 * i, 8);
        vtio_mem_write(F.mem, ring + 64 * i, &d, sizeof(d));
    }
    wr32(0, VTIO_DMAE_TAIL, 3);
    F.tail[0] = 3;
    CHECK(!wait_idle(0));
    CHECK_EQ(rd32(0, VTIO_DMAE_ERROR), VTIO_DMAE_ERR_DESC_FETCH);
    CHECK_EQ(rd32(0, VTIO_DMAE_ERR_INDEX), 2);
    CHECK_EQ(rd64(0, VTIO_DMAE_ERR_ADDR), H);
    CHECK_EQ(rd64(0, VTIO_DMAE_COMPLETED), 2);
    CHECK_EQ(vtio_mem_read64(F.mem, GOOD), 0x10);
    CHECK_EQ(vtio_mem_read64(F.mem, GOOD + 8), 0x11);
    wait_irqs(0, 1);
    fixture_down();
}

/* Without CTRL.IE a halt raises no interrupt. */
static void t_halt_without_ie(void)
{
    fixture_up(1);
    chan_start(0, 8);
    wr32(0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN);
    struct vtio_dmae_desc d = desc(7, VTIO_DMAE_FLAG_INTR, 0, 0, 0);
    put(0, &d);
    doorbell(0);
    CHECK(!wait_idle(0));
    CHECK_EQ(rd32(0, VTIO_DMAE_ERROR), VTIO_DMAE_ERR_OPCODE);
    usleep(5000);
    CHECK_EQ(atomic_load(&F.irqs[0]), 0);
    fixture_down();
}

/* A fault on one channel leaves the others running. */
static void t_halt_is_per_channel(void)
{
    fixture_up(2);
    chan_start(0, 8);
    chan_start(1, 8);
    struct vtio_dmae_desc bad = desc(VTIO_DMAE_OP_COPY, 0, H, BUF(2), 8);
    put(1, &bad);
    doorbell(1);
    CHECK(!wait_idle(1));
    CHECK_EQ(grd32(VTIO_DMAE_GSTS), 2);
    struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_FILL, 0, 9, GOOD, 8);
    put(0, &d);
    doorbell(0);
    CHECK(wait_idle(0));
    CHECK_EQ(vtio_mem_read64(F.mem, GOOD), 9);
    vtio_mem_write32(F.mem, BAR0_BASE + VTIO_DMAE_GCTRL, VTIO_DMAE_GCTRL_RESET);
    CHECK_EQ(grd32(VTIO_DMAE_GSTS), 0);
    fixture_down();
}

static const struct vtio_test tests[] = {
    { "descriptor_errors", "each malformed or faulting descriptor halts its channel with "
      "the right ERROR, ERR_INDEX, ERR_ADDR, record and one interrupt, writes nothing, "
      "ignores doorbells, and works after RESET", t_descriptor_errors },
    { "ring_errors", "bad RING_BASE/RING_SIZE/TAIL halt with ERR_RING on enable, TAIL out "
      "of range halts a running channel, and only RESET clears a halt", t_ring_errors },
    { "bus_master_off", "with BME clear the descriptor fetch fails (ERR_DESC_FETCH at the "
      "slot's address) and nothing is written", t_bus_master_off },
    { "ring_in_hole", "descriptors readable before a hole run; the first in the hole halts "
      "with ERR_DESC_FETCH and its address", t_ring_in_hole },
    { "halt_without_ie", "a halt with CTRL.IE clear raises no interrupt", t_halt_without_ie },
    { "halt_is_per_channel", "a halted channel shows in GSTS and does not stop the others",
      t_halt_is_per_channel },
};
VTIO_TEST_MAIN(tests)
