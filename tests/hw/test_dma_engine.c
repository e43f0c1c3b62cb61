/*
 * The DMA engine model, driven as software would drive it: identity and
 * registers, every operation byte for byte, completion records, counters,
 * interrupts, ring wrap-around, prefetch and FENCE, pause, resets, and the
 * speed of a large copy and of a doorbell.  Error codes are in
 * test_dma_engine_errors.c, concurrency in test_dma_engine_threads.c.
 */
#include "test_dma_engine_fixture.h"

#include <stdio.h>

/* ---- identity and registers */

static void t_identity(void)
{
    fixture_up(4);
    CHECK_EQ(cfg_rd(VTIO_PCI_VENDOR_ID, 2), VTIO_DMAE_VENDOR_ID);
    CHECK_EQ(cfg_rd(VTIO_PCI_DEVICE_ID, 2), VTIO_DMAE_DEVICE_ID);
    CHECK_EQ(cfg_rd(VTIO_PCI_REVISION_ID, 4), VTIO_DMAE_CLASS << 8 | VTIO_DMAE_REVISION);
    CHECK_EQ(cfg_rd(VTIO_PCI_BAR0, 4) & 0xf, VTIO_PCI_BAR_MEM_TYPE_64);
    CHECK_EQ(cfg_rd(VTIO_PCI_BAR0 + 8, 4) & 0xf, VTIO_PCI_BAR_MEM_TYPE_64);
    uint16_t flags = (uint16_t)cfg_rd((uint16_t)(F.msix_cap + VTIO_PCI_MSIX_FLAGS), 2);
    CHECK_EQ((flags & VTIO_PCI_MSIX_FLAGS_QSIZE) + 1, 4);
    CHECK_EQ(cfg_rd((uint16_t)(F.msix_cap + VTIO_PCI_MSIX_TABLE), 4),
             VTIO_DMAE_MSIX_TABLE | VTIO_DMAE_BAR_MSIX);
    CHECK_EQ(cfg_rd((uint16_t)(F.msix_cap + VTIO_PCI_MSIX_PBA), 4),
             VTIO_DMAE_MSIX_PBA | VTIO_DMAE_BAR_MSIX);

    CHECK_EQ(grd32(VTIO_DMAE_ID), (uint32_t)VTIO_DMAE_VENDOR_ID << 16 | VTIO_DMAE_DEVICE_ID);
    CHECK_EQ(grd32(VTIO_DMAE_VERSION), 0x00010000);
    uint32_t cap = grd32(VTIO_DMAE_CAP);
    CHECK_EQ(VTIO_DMAE_CAP_NCHAN(cap), 4);
    CHECK_EQ(VTIO_DMAE_CAP_PREFETCH(cap), VTIO_DMAE_PREFETCH);
    CHECK_EQ(VTIO_DMAE_CAP_MAX_RING_LOG2(cap), 16);
    CHECK_EQ(cap >> 21, 0);
    CHECK_EQ(grd32(VTIO_DMAE_GCTRL), 0);
    CHECK_EQ(grd32(VTIO_DMAE_GSTS), 0);
    for (unsigned ch = 0; ch < 4; ch++) {
        CHECK_EQ(rd64(ch, VTIO_DMAE_RING_BASE), 0);
        CHECK_EQ(rd32(ch, VTIO_DMAE_RING_SIZE), 0);
        CHECK_EQ(rd32(ch, VTIO_DMAE_CTRL), 0);
        CHECK_EQ(rd32(ch, VTIO_DMAE_HEAD), 0);
        CHECK_EQ(rd32(ch, VTIO_DMAE_TAIL), 0);
        CHECK_EQ(rd32(ch, VTIO_DMAE_STATUS), VTIO_DMAE_STATE_IDLE);
        CHECK_EQ(rd32(ch, VTIO_DMAE_ERROR), 0);
        CHECK_EQ(rd32(ch, VTIO_DMAE_ERR_INDEX), 0);
        CHECK_EQ(rd32(ch, VTIO_DMAE_INT_VEC), ch);
        CHECK_EQ(rd64(ch, VTIO_DMAE_COMPLETED), 0);
        CHECK_EQ(rd64(ch, VTIO_DMAE_BYTES), 0);
        CHECK_EQ(rd64(ch, VTIO_DMAE_ERR_ADDR), 0);
    }
    /* A channel the engine does not have, and unused offsets, read 0. */
    CHECK_EQ(rd32(4, VTIO_DMAE_INT_VEC), 0);
    CHECK_EQ(rd32(0, 0x40), 0);
    CHECK_EQ(grd32(0x100), 0);
    CHECK_EQ(vtio_mem_read32(F.mem, BAR0_BASE + VTIO_DMAE_REGS_SIZE - 4), 0);
    CHECK_EQ(vtio_dma_engine_pci(F.eng) != NULL, 1);
    CHECK_EQ(vtio_pci_dev_rid(vtio_dma_engine_pci(F.eng)), RID);
    fixture_down();
}

static void t_registers(void)
{
    fixture_up(2);
    /* RING_BASE: one 64-bit access or two 32-bit halves. */
    wr64(0, VTIO_DMAE_RING_BASE, 0x1122334455667788ull);
    CHECK_EQ(rd64(0, VTIO_DMAE_RING_BASE), 0x1122334455667788ull);
    CHECK_EQ(rd32(0, VTIO_DMAE_RING_BASE), 0x55667788);
    CHECK_EQ(rd32(0, VTIO_DMAE_RING_BASE + 4), 0x11223344);
    wr32(0, VTIO_DMAE_RING_BASE + 4, 0xaabbccdd);
    CHECK_EQ(rd64(0, VTIO_DMAE_RING_BASE), 0xaabbccdd55667788ull);
    wr32(0, VTIO_DMAE_RING_BASE, 0x00001000);
    CHECK_EQ(rd64(0, VTIO_DMAE_RING_BASE), 0xaabbccdd00001000ull);
    wr32(0, VTIO_DMAE_RING_SIZE, 64);
    CHECK_EQ(rd32(0, VTIO_DMAE_RING_SIZE), 64);
    /* An 8-byte access elsewhere is two registers, low first. */
    CHECK_EQ(rd64(0, VTIO_DMAE_RING_SIZE), 64);
    CHECK_EQ(rd64(1, VTIO_DMAE_ERR_INDEX), (uint64_t)1 << 32);   /* ERR_INDEX | INT_VEC */
    /* CTRL: reserved bits read 0; RESET is not stored. */
    wr32(0, VTIO_DMAE_CTRL, ~(VTIO_DMAE_CTRL_EN | VTIO_DMAE_CTRL_RESET));
    CHECK_EQ(rd32(0, VTIO_DMAE_CTRL), VTIO_DMAE_CTRL_IE);
    wr32(0, VTIO_DMAE_CTRL, 0);
    /* INT_VEC holds an MSI-X table index (11 bits). */
    wr32(1, VTIO_DMAE_INT_VEC, 0xffffffff);
    CHECK_EQ(rd32(1, VTIO_DMAE_INT_VEC), 0x7ff);
    wr32(1, VTIO_DMAE_INT_VEC, 1);
    /* Read-only registers ignore writes. */
    static const unsigned ro[] = { VTIO_DMAE_HEAD, VTIO_DMAE_STATUS, VTIO_DMAE_ERROR,
                                   VTIO_DMAE_ERR_INDEX, VTIO_DMAE_COMPLETED,
                                   VTIO_DMAE_COMPLETED + 4, VTIO_DMAE_BYTES,
                                   VTIO_DMAE_ERR_ADDR };
    for (size_t i = 0; i < sizeof(ro) / sizeof(ro[0]); i++) {
        wr32(0, ro[i], 0xdeadbeef);
        CHECK_EQ(rd32(0, ro[i]), 0);
    }
    wr64(0, VTIO_DMAE_COMPLETED, ~0ull);
    CHECK_EQ(rd64(0, VTIO_DMAE_COMPLETED), 0);
    vtio_mem_write32(F.mem, BAR0_BASE + VTIO_DMAE_ID, 0);
    vtio_mem_write32(F.mem, BAR0_BASE + VTIO_DMAE_CAP, 0);
    CHECK_EQ(VTIO_DMAE_CAP_NCHAN(grd32(VTIO_DMAE_CAP)), 2);
    CHECK_EQ(grd32(VTIO_DMAE_ID) & 0xffff, VTIO_DMAE_DEVICE_ID);
    /* Narrow reads return bytes of the register; narrow writes are dropped. */
    CHECK_EQ(vtio_mem_read16(F.mem, BAR0_BASE + VTIO_DMAE_ID + 2), VTIO_DMAE_VENDOR_ID);
    CHECK_EQ(vtio_mem_read8(F.mem, BAR0_BASE + VTIO_DMAE_ID), VTIO_DMAE_DEVICE_ID & 0xff);
    vtio_mem_write8(F.mem, creg(1, VTIO_DMAE_INT_VEC), 7);
    CHECK_EQ(rd32(1, VTIO_DMAE_INT_VEC), 1);

    /* TAIL is stored while the channel is idle; ring registers are frozen
     * while EN is set. */
    wr32(0, VTIO_DMAE_TAIL, 0);
    chan_start(0, 16);
    wr64(0, VTIO_DMAE_RING_BASE, 0x5000);
    wr32(0, VTIO_DMAE_RING_SIZE, 4);
    CHECK_EQ(rd64(0, VTIO_DMAE_RING_BASE), RING(0));
    CHECK_EQ(rd32(0, VTIO_DMAE_RING_SIZE), 16);
    CHECK_EQ(rd32(0, VTIO_DMAE_CTRL), VTIO_DMAE_CTRL_EN | VTIO_DMAE_CTRL_IE);
    CHECK_EQ(rd64(0, VTIO_DMAE_HEAD), 0);                   /* HEAD | TAIL << 32 */
    fixture_down();
}

/* ---- operations */

static void t_copy(void)
{
    static const struct { uint64_t len; unsigned soff, doff; } cases[] = {
        { 1, 0, 0 }, { 7, 3, 5 }, { 64, 0, 0 }, { 4099, 1, 4095 }, { 65536, 8, 3 },
        { (1 << 20) + 5, 4093, 7 },
    };
    fixture_up(1);
    chan_start(0, 64);
    uint64_t total = 0;
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t src = BUF(0) + cases[i].soff, dst = BUF(1) + cases[i].doff;
        uint64_t len = cases[i].len;
        uint8_t *data = random_at(src, len, 100 + i);
        guard_set(dst, len);
        struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_COPY, 0, src, dst, len);
        d.completion = COMPL(0) + 32 * i;
        d.cookie = 0xc00c1e0000000000ull | i;
        uint32_t slot = put(0, &d);
        doorbell(0);
        CHECK(wait_idle(0));
        expect_ram(dst, data, len);
        guard_check(dst, len, false);
        expect_ram(src, data, len);                          /* source unchanged */
        free(data);
        struct vtio_dmae_completion c = record(d.completion);
        CHECK_EQ(c.status, VTIO_DMAE_STATUS_SUCCESS);
        CHECK_EQ(c.result, 0);
        CHECK_EQ(c.bytes, len);
        CHECK_EQ(c.fault_addr, 0);
        CHECK_EQ(c.cookie, d.cookie);
        total += len;
        CHECK_EQ(rd32(0, VTIO_DMAE_HEAD), slot + 1);
        CHECK_EQ(rd64(0, VTIO_DMAE_COMPLETED), i + 1);
        CHECK_EQ(rd64(0, VTIO_DMAE_BYTES), total);
        CHECK_EQ(state_of(0), VTIO_DMAE_STATE_RUNNING);
    }
    /* No interrupt was asked for. */
    CHECK_EQ(atomic_load(&F.irqs[0]), 0);
    fixture_down();
}

static void t_fill(void)
{
    const uint64_t pat = 0x0123456789abcdefull;
    fixture_up(1);
    chan_start(0, 8);
    static const struct { uint64_t len; unsigned off; } cases[] = {
        { 1, 0 }, { 8, 8 }, { 13, 3 }, { 1005, 5 }, { 3 * 4096 + 1, 4091 },
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t dst = BUF(0) + 0x10000 * i + cases[i].off, len = cases[i].len;
        guard_set(dst, len);
        struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_FILL, 0, pat, dst, len);
        d.completion = COMPL(0);
        d.cookie = i;
        put(0, &d);
        doorbell(0);
        CHECK(wait_idle(0));
        uint8_t *want = malloc(len);
        for (uint64_t b = 0; b < len; b++)
            want[b] = (uint8_t)(pat >> (8 * (b % 8)));     /* relative to the start */
        expect_ram(dst, want, len);
        free(want);
        guard_check(dst, len, false);
        struct vtio_dmae_completion c = record(COMPL(0));
        CHECK_EQ(c.status, VTIO_DMAE_STATUS_SUCCESS);
        CHECK_EQ(c.bytes, len);
        CHECK_EQ(c.cookie, i);
    }
    fixture_down();
}

static void t_compare(void)
{
    fixture_up(1);
    chan_start(0, 8);
    const uint64_t len = 10000, a = BUF(0) + 1, b = BUF(1) + 2;
    uint8_t *data = random_at(a, len, 7);
    vtio_mem_write(F.mem, b, data, len);
    /* Equal; then different at byte 0, 4321 and the last byte. */
    static const int64_t where[] = { -1, 0, 4321, 9999 };
    for (unsigned i = 0; i < 4; i++) {
        if (where[i] >= 0)
            vtio_mem_write8(F.mem, b + (uint64_t)where[i], (uint8_t)~data[where[i]]);
        struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_COMPARE, 0, a, b, len);
        d.completion = COMPL(0) + 32 * i;
        d.cookie = 77 + i;
        put(0, &d);
        doorbell(0);
        CHECK(wait_idle(0));
        struct vtio_dmae_completion c = record(d.completion);
        CHECK_EQ(c.status, VTIO_DMAE_STATUS_SUCCESS);
        CHECK_EQ(c.result, where[i] >= 0);
        CHECK_EQ(c.bytes, where[i] >= 0 ? (uint64_t)where[i] : len);
        CHECK_EQ(c.cookie, 77 + i);
        if (where[i] >= 0)
            vtio_mem_write8(F.mem, b + (uint64_t)where[i], data[where[i]]);
    }
    expect_ram(a, data, len);                                /* compare writes nothing */
    expect_ram(b, data, len);
    CHECK_EQ(rd64(0, VTIO_DMAE_BYTES), 4 * len);
    free(data);
    fixture_down();
}

/* Writes an SG list of n entries at list. */
static void put_sg(uint64_t list, const struct vtio_dmae_sg *sg, unsigned n)
{
    vtio_mem_write(F.mem, list, sg, n * sizeof(*sg));
}

static void t_copy_sg(void)
{
    fixture_up(1);
    chan_start(0, 8);
    /* Uneven segments: 8100 bytes as 4 source and 5 destination pieces. */
    struct vtio_dmae_sg src[4] = {
        { BUF(0) + 3, 100, 0 }, { BUF(0) + 0x10000, 5000, 0 }, { BUF(0) + 0x20001, 1, 0 },
        { BUF(0) + 0x30007, 2999, 0 },
    };
    struct vtio_dmae_sg dst[5] = {
        { BUF(1) + 0x40000, 1, 0 }, { BUF(1) + 5, 4095, 0 }, { BUF(1) + 0x10000, 3000, 0 },
        { BUF(1) + 0x20000, 1003, 0 }, { BUF(1) + 0x30000, 1, 0 },
    };
    uint8_t all[8100];
    vtio_test_fill(all, sizeof(all), 99);
    size_t off = 0;
    for (unsigned i = 0; i < 4; off += src[i].len, i++)
        vtio_mem_write(F.mem, src[i].addr, all + off, src[i].len);
    for (unsigned i = 0; i < 5; i++)
        guard_set(dst[i].addr, dst[i].len);
    put_sg(SGL(0), src, 4);
    put_sg(SGL(0) + 0x1000, dst, 5);
    struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_COPY_SG, VTIO_DMAE_FLAG_INTR, SGL(0),
                                   SGL(0) + 0x1000, sizeof(all));
    d.src_sg_count = 4;
    d.dst_sg_count = 5;
    d.completion = COMPL(0);
    d.cookie = 0x5651;
    put(0, &d);
    doorbell(0);
    CHECK(wait_idle(0));
    off = 0;
    for (unsigned i = 0; i < 5; off += dst[i].len, i++) {
        expect_ram(dst[i].addr, all + off, dst[i].len);
        guard_check(dst[i].addr, dst[i].len, false);
    }
    struct vtio_dmae_completion c = record(COMPL(0));
    CHECK_EQ(c.status, VTIO_DMAE_STATUS_SUCCESS);
    CHECK_EQ(c.bytes, sizeof(all));
    CHECK_EQ(c.cookie, 0x5651);
    CHECK_EQ(rd64(0, VTIO_DMAE_BYTES), sizeof(all));
    wait_irqs(0, 1);

    /* The largest list: 256 pieces of 16 bytes gathered into one. */
    static struct vtio_dmae_sg many[VTIO_DMAE_MAX_SG];
    for (unsigned i = 0; i < VTIO_DMAE_MAX_SG; i++)
        many[i] = (struct vtio_dmae_sg){ BUF(2) + 64 * i, 16, 0 };
    uint8_t *data = random_at(BUF(2), 64 * VTIO_DMAE_MAX_SG, 5);
    struct vtio_dmae_sg one = { BUF(3), 16 * VTIO_DMAE_MAX_SG, 0 };
    put_sg(SGL(0), many, VTIO_DMAE_MAX_SG);
    put_sg(SGL(0) + 0x2000, &one, 1);
    d = desc(VTIO_DMAE_OP_COPY_SG, 0, SGL(0), SGL(0) + 0x2000, 16 * VTIO_DMAE_MAX_SG);
    d.src_sg_count = VTIO_DMAE_MAX_SG;
    d.dst_sg_count = 1;
    put(0, &d);
    doorbell(0);
    CHECK(wait_idle(0));
    for (unsigned i = 0; i < VTIO_DMAE_MAX_SG; i++)
        expect_ram(BUF(3) + 16 * i, data + 64 * i, 16);
    free(data);
    fixture_down();
}

static void t_nop(void)
{
    fixture_up(1);
    chan_start(0, 4);
    struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_NOP, VTIO_DMAE_FLAG_INTR, 0, 0, 0);
    d.completion = COMPL(0);
    d.cookie = 0x9090;
    put(0, &d);
    doorbell(0);
    CHECK(wait_idle(0));
    wait_irqs(0, 1);
    struct vtio_dmae_completion c = record(COMPL(0));
    CHECK_EQ(c.status, VTIO_DMAE_STATUS_SUCCESS);
    CHECK_EQ(c.bytes, 0);
    CHECK_EQ(c.cookie, 0x9090);
    CHECK_EQ(rd64(0, VTIO_DMAE_COMPLETED), 1);
    CHECK_EQ(rd64(0, VTIO_DMAE_BYTES), 0);
    fixture_down();
}

/* ---- interrupts */

#define IRQ_DESCS 24
static uint64_t irq_dst[IRQ_DESCS];
static uint8_t *irq_want[IRQ_DESCS];
static unsigned irq_order[IRQ_DESCS];           /* i-th interrupt -> descriptor */
static _Atomic unsigned irq_seen, irq_bad;

/* Runs on the channel's thread: the interrupt's descriptor must be done. */
static void check_data_hook(unsigned ch)
{
    (void)ch;
    unsigned i = irq_order[atomic_fetch_add(&irq_seen, 1)];
    uint8_t got[512];
    vtio_mem_read(F.mem, irq_dst[i], got, sizeof(got));
    struct vtio_dmae_completion c = record(COMPL(0) + 32 * i);
    if (memcmp(got, irq_want[i], sizeof(got)) || c.status != VTIO_DMAE_STATUS_SUCCESS)
        atomic_fetch_add(&irq_bad, 1);
}

static void t_interrupts(void)
{
    fixture_up(2);
    chan_start(0, 64);
    atomic_store(&irq_seen, 0);
    atomic_store(&irq_bad, 0);
    unsigned nintr = 0;
    for (unsigned i = 0; i < IRQ_DESCS; i++) {
        bool intr = i % 3 == 1 || i == IRQ_DESCS - 1;
        irq_dst[i] = BUF(1) + 1024 * i;
        irq_want[i] = random_at(BUF(0) + 1024 * i, 512, 1000 + i);
        struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_COPY, intr ? VTIO_DMAE_FLAG_INTR : 0,
                                       BUF(0) + 1024 * i, irq_dst[i], 512);
        d.completion = COMPL(0) + 32 * i;
        put(0, &d);
        if (intr)
            irq_order[nintr++] = i;
    }
    atomic_store(&F.hook, check_data_hook);
    doorbell(0);
    CHECK(wait_idle(0));
    wait_irqs(0, nintr);
    usleep(20000);
    CHECK_EQ(atomic_load(&F.irqs[0]), nintr);                /* once each, no more */
    CHECK_EQ(atomic_load(&F.irqs[1]), 0);                    /* and on its own vector */
    CHECK_EQ(atomic_load(&irq_bad), 0);
    atomic_store(&F.hook, NULL);
    for (unsigned i = 0; i < IRQ_DESCS; i++)
        free(irq_want[i]);

    /* CTRL.IE clear: no interrupt. */
    wr32(0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN);
    struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_NOP, VTIO_DMAE_FLAG_INTR, 0, 0, 0);
    put(0, &d);
    doorbell(0);
    CHECK(wait_idle(0));
    usleep(10000);
    CHECK_EQ(atomic_load(&F.irqs[0]), nintr);

    /* A masked vector stays pending and arrives (once) when unmasked. */
    wr32(0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN | VTIO_DMAE_CTRL_IE);
    msix_mask(0, true);
    put(0, &d);
    put(0, &d);
    doorbell(0);
    CHECK(wait_idle(0));
    usleep(10000);
    CHECK_EQ(atomic_load(&F.irqs[0]), nintr);
    msix_mask(0, false);
    wait_irqs(0, nintr + 1);

    /* INT_VEC picks the vector: channel 0 now signals on vector 1. */
    wr32(0, VTIO_DMAE_INT_VEC, 1);
    put(0, &d);
    doorbell(0);
    wait_irqs(1, 1);
    CHECK_EQ(atomic_load(&F.irqs[0]), nintr + 1);
    /* A vector the function does not have: the message is lost. */
    wr32(0, VTIO_DMAE_INT_VEC, 9);
    put(0, &d);
    doorbell(0);
    CHECK(wait_idle(0));
    CHECK_EQ(state_of(0), VTIO_DMAE_STATE_RUNNING);
    fixture_down();
}

/* A NOP with INTR on channel ch: one interrupt raise, nothing else. */
static void raise_on(unsigned ch)
{
    struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_NOP, VTIO_DMAE_FLAG_INTR, 0, 0, 0);
    put(ch, &d);
    doorbell(ch);
    CHECK(wait_idle(ch));
}

static void msi_set_enable(unsigned cap, unsigned mme, bool on)
{
    uint16_t flags = (uint16_t)cfg_rd((uint16_t)(cap + VTIO_PCI_MSI_FLAGS), 2);
    flags = (uint16_t)((flags & ~(VTIO_PCI_MSI_FLAGS_QSIZE | VTIO_PCI_MSI_FLAGS_ENABLE)) |
                       mme << 4 | (on ? VTIO_PCI_MSI_FLAGS_ENABLE : 0));
    cfg_wr((uint16_t)(cap + VTIO_PCI_MSI_FLAGS), flags, 2);
}

static void t_msi(void)
{
    /* The capability: channels rounded up to a power of two, 64-bit, maskable. */
    const unsigned chans[] = { 1, 3, 8 }, mmc[] = { 0, 2, 3 };
    for (unsigned i = 0; i < 3; i++) {
        fixture_up(chans[i]);
        unsigned cap = find_cap(VTIO_PCI_CAP_ID_MSI);
        CHECK(cap != 0);
        uint16_t flags = (uint16_t)cfg_rd((uint16_t)(cap + VTIO_PCI_MSI_FLAGS), 2);
        CHECK_EQ((flags & VTIO_PCI_MSI_FLAGS_QMASK) >> 1, mmc[i]);
        CHECK_EQ(1u << mmc[i], VTIO_DMAE_MSI_VECTORS(chans[i]));
        CHECK(flags & VTIO_PCI_MSI_FLAGS_64BIT);
        CHECK(flags & VTIO_PCI_MSI_FLAGS_MASKBIT);
        CHECK_EQ(flags & VTIO_PCI_MSI_FLAGS_ENABLE, 0);
        fixture_down();
    }

    fixture_up(4);
    unsigned cap = find_cap(VTIO_PCI_CAP_ID_MSI);
    for (unsigned ch = 0; ch < 4; ch++)
        chan_start(ch, 16);
    /* MSI-X off, MSI with 2 of the 4 vectors, data = VEC(0) (aligned). */
    cfg_wr((uint16_t)(F.msix_cap + VTIO_PCI_MSIX_FLAGS), 0, 2);
    uint64_t addr;
    uint32_t data;
    vtio_msi_compose(0, VEC(0), &addr, &data);
    cfg_wr((uint16_t)(cap + VTIO_PCI_MSI_ADDRESS_LO), (uint32_t)addr, 4);
    cfg_wr((uint16_t)(cap + VTIO_PCI_MSI_ADDRESS_HI), (uint32_t)(addr >> 32), 4);
    cfg_wr((uint16_t)(cap + VTIO_PCI_MSI_DATA_64), data, 2);
    msi_set_enable(cap, 1, true);

    /* INT_VEC & (2 - 1): channels 0 and 2 on vector 0, 1 and 3 on vector 1. */
    raise_on(0);
    wait_irqs(0, 1);
    raise_on(3);
    wait_irqs(1, 1);
    raise_on(2);
    wait_irqs(0, 2);
    usleep(10000);
    CHECK_EQ(atomic_load(&F.irqs[0]), 2);
    CHECK_EQ(atomic_load(&F.irqs[1]), 1);
    CHECK_EQ(atomic_load(&F.irqs[2]) + atomic_load(&F.irqs[3]), 0);

    /* A masked vector sets its pending bit and is sent once on unmask. */
    cfg_wr((uint16_t)(cap + VTIO_PCI_MSI_MASK_64), 1, 4);
    raise_on(0);
    raise_on(2);
    usleep(10000);
    CHECK_EQ(atomic_load(&F.irqs[0]), 2);
    CHECK_EQ(cfg_rd((uint16_t)(cap + VTIO_PCI_MSI_PENDING_64), 4), 1);
    cfg_wr((uint16_t)(cap + VTIO_PCI_MSI_MASK_64), 0, 4);
    wait_irqs(0, 3);
    CHECK_EQ(cfg_rd((uint16_t)(cap + VTIO_PCI_MSI_PENDING_64), 4), 0);

    /* One vector enabled: every channel uses vector 0. */
    msi_set_enable(cap, 0, true);
    raise_on(3);
    wait_irqs(0, 4);
    CHECK_EQ(atomic_load(&F.irqs[1]), 1);

    /* MSI-X on again wins over MSI: channel 3 signals its table entry. */
    cfg_wr((uint16_t)(F.msix_cap + VTIO_PCI_MSIX_FLAGS), VTIO_PCI_MSIX_FLAGS_ENABLE, 2);
    raise_on(3);
    wait_irqs(3, 1);
    CHECK_EQ(atomic_load(&F.irqs[0]), 4);

    /* Neither enabled: the interrupt is lost, the channel runs on. */
    cfg_wr((uint16_t)(F.msix_cap + VTIO_PCI_MSIX_FLAGS), 0, 2);
    msi_set_enable(cap, 0, false);
    raise_on(1);
    usleep(10000);
    CHECK_EQ(atomic_load(&F.irqs[0]) + atomic_load(&F.irqs[1]), 5);
    CHECK_EQ(cfg_rd((uint16_t)(cap + VTIO_PCI_MSI_PENDING_64), 4), 0);
    CHECK_EQ(state_of(1), VTIO_DMAE_STATE_RUNNING);
    fixture_down();
}

/* ---- the ring */

static void t_ring_wrap(void)
{
    fixture_up(1);
    chan_start(0, 8);
    uint64_t done = 0;
    /* Batches of 1..7 (a ring of 8 holds at most 7), many times round. */
    for (unsigned round = 0; round < 40; round++) {
        unsigned n = 1 + round % 7;
        uint32_t first = F.tail[0];
        for (unsigned k = 0; k < n; k++) {
            struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_FILL, 0, 0x0101010101010101ull * round,
                                           BUF(0) + 64 * ((first + k) % 8), 64);
            d.completion = COMPL(0) + 32 * ((first + k) % 8);
            d.cookie = round << 8 | k;
            put(0, &d);
        }
        doorbell(0);
        CHECK(wait_idle(0));
        done += n;
        CHECK_EQ(rd32(0, VTIO_DMAE_HEAD), F.tail[0]);
        CHECK_EQ(rd64(0, VTIO_DMAE_COMPLETED), done);
        for (unsigned k = 0; k < n; k++) {
            uint32_t slot = (first + k) % 8;
            struct vtio_dmae_completion c = record(COMPL(0) + 32 * slot);
            CHECK_EQ(c.status, VTIO_DMAE_STATUS_SUCCESS);
            CHECK_EQ(c.cookie, round << 8 | k);
            CHECK_EQ(vtio_mem_read64(F.mem, BUF(0) + 64 * slot), 0x0101010101010101ull * round);
        }
    }
    fixture_down();
}

/* A COPY at slot 0 rewrites the descriptor in slot 2 (a FILL of pattern A
 * into one of pattern B).  Without a fence slot 2 was already fetched in the
 * same batch and the old descriptor runs; with FENCE on slot 0 the new one
 * does.  Descriptors past TAIL are never run. */
static void t_fence(void)
{
    const uint64_t A = 0xaaaaaaaaaaaaaaaaull, B = 0xbbbbbbbbbbbbbbbbull;
    for (int fence = 0; fence < 2; fence++) {
        fixture_up(1);
        chan_start(0, 16);
        struct vtio_dmae_desc newer = desc(VTIO_DMAE_OP_FILL, 0, B, BUF(1), 64);
        vtio_mem_write(F.mem, SCRATCH, &newer, sizeof(newer));
        struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_COPY, fence ? VTIO_DMAE_FLAG_FENCE : 0,
                                       SCRATCH, RING(0) + 2 * 64, 64);
        put(0, &d);
        d = desc(VTIO_DMAE_OP_NOP, 0, 0, 0, 0);
        put(0, &d);
        d = desc(VTIO_DMAE_OP_FILL, 0, A, BUF(1), 64);
        put(0, &d);
        /* Two more, not announced. */
        d = desc(VTIO_DMAE_OP_FILL, 0, A, BUF(2), 64);
        guard_set(BUF(2), 128);
        put(0, &d);
        d = desc(VTIO_DMAE_OP_FILL, 0, A, BUF(2) + 64, 64);
        put(0, &d);
        wr32(0, VTIO_DMAE_TAIL, 3);
        F.tail[0] = 3;
        CHECK(wait_idle(0));
        CHECK_EQ(vtio_mem_read64(F.mem, BUF(1)), fence ? B : A);
        CHECK_EQ(vtio_mem_read64(F.mem, BUF(1) + 56), fence ? B : A);
        usleep(5000);
        CHECK_EQ(rd32(0, VTIO_DMAE_HEAD), 3);
        guard_check(BUF(2), 128, true);
        F.tail[0] = 5;
        doorbell(0);
        CHECK(wait_idle(0));
        CHECK_EQ(vtio_mem_read64(F.mem, BUF(2) + 64), A);
        CHECK_EQ(rd64(0, VTIO_DMAE_COMPLETED), 5);
        fixture_down();
    }
}

/* A batch longer than the prefetch window, and one that wraps the ring. */
static void t_prefetch_batches(void)
{
    fixture_up(1);
    chan_start(0, 32);
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned k = 0; k < 29; k++) {
            struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_FILL, 0, round * 100 + k,
                                           BUF(0) + 8 * k, 8);
            put(0, &d);
        }
        doorbell(0);
        CHECK(wait_idle(0));
        for (unsigned k = 0; k < 29; k++)
            CHECK_EQ(vtio_mem_read64(F.mem, BUF(0) + 8 * k), round * 100 + k);
    }
    CHECK_EQ(rd64(0, VTIO_DMAE_COMPLETED), 87);
    CHECK_EQ(rd32(0, VTIO_DMAE_HEAD), 87 % 32);
    fixture_down();
}

/* ---- pausing and resetting */

static void t_pause_resume(void)
{
    fixture_up(1);
    chan_start(0, 16);
    struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_FILL, 0, 1, BUF(0), 8);
    put(0, &d);
    doorbell(0);
    CHECK(wait_idle(0));
    wr32(0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_IE);             /* EN 1 -> 0 */
    CHECK_EQ(state_of(0), VTIO_DMAE_STATE_IDLE);
    CHECK_EQ(rd32(0, VTIO_DMAE_HEAD), 1);
    d = desc(VTIO_DMAE_OP_FILL, 0, 2, BUF(0), 8);
    put(0, &d);
    doorbell(0);                                             /* stored, not run */
    CHECK_EQ(rd32(0, VTIO_DMAE_TAIL), 2);
    usleep(5000);
    CHECK_EQ(rd32(0, VTIO_DMAE_HEAD), 1);
    CHECK_EQ(vtio_mem_read64(F.mem, BUF(0)), 1);
    wr32(0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN | VTIO_DMAE_CTRL_IE);
    CHECK(wait_idle(0));
    CHECK_EQ(vtio_mem_read64(F.mem, BUF(0)), 2);
    CHECK_EQ(rd64(0, VTIO_DMAE_COMPLETED), 2);
    fixture_down();
}

static void run_some(unsigned ch, unsigned n)
{
    for (unsigned k = 0; k < n; k++) {
        struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_FILL, 0, k, BUF(ch) + 8 * k, 8);
        put(ch, &d);
    }
    doorbell(ch);
    CHECK(wait_idle(ch));
}

static void check_reset_state(unsigned ch, uint64_t ring, uint32_t size, uint32_t vec)
{
    CHECK_EQ(rd32(ch, VTIO_DMAE_HEAD), 0);
    CHECK_EQ(rd32(ch, VTIO_DMAE_TAIL), 0);
    CHECK_EQ(rd32(ch, VTIO_DMAE_CTRL), 0);
    CHECK_EQ(rd32(ch, VTIO_DMAE_STATUS), VTIO_DMAE_STATE_IDLE);
    CHECK_EQ(rd32(ch, VTIO_DMAE_ERROR), 0);
    CHECK_EQ(rd32(ch, VTIO_DMAE_ERR_INDEX), 0);
    CHECK_EQ(rd64(ch, VTIO_DMAE_ERR_ADDR), 0);
    CHECK_EQ(rd64(ch, VTIO_DMAE_COMPLETED), 0);
    CHECK_EQ(rd64(ch, VTIO_DMAE_BYTES), 0);
    CHECK_EQ(rd64(ch, VTIO_DMAE_RING_BASE), ring);
    CHECK_EQ(rd32(ch, VTIO_DMAE_RING_SIZE), size);
    CHECK_EQ(rd32(ch, VTIO_DMAE_INT_VEC), vec);
}

static void t_reset(void)
{
    fixture_up(3);
    for (unsigned ch = 0; ch < 3; ch++) {
        chan_start(ch, 8);
        run_some(ch, 5);
    }
    wr32(1, VTIO_DMAE_INT_VEC, 2);
    /* Channel reset: clears the state, keeps ring and vector. */
    wr32(1, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_RESET | VTIO_DMAE_CTRL_EN);
    check_reset_state(1, RING(1), 8, 2);
    CHECK_EQ(rd32(0, VTIO_DMAE_HEAD), 5);                    /* others untouched */
    CHECK_EQ(rd32(2, VTIO_DMAE_HEAD), 5);
    /* And works again, from slot 0. */
    wr32(1, VTIO_DMAE_INT_VEC, 1);
    chan_start(1, 8);
    CHECK_EQ(F.tail[1], 0);
    run_some(1, 3);
    CHECK_EQ(rd64(1, VTIO_DMAE_COMPLETED), 3);

    /* GCTRL.RESET: every channel. */
    vtio_mem_write32(F.mem, BAR0_BASE + VTIO_DMAE_GCTRL, VTIO_DMAE_GCTRL_RESET);
    CHECK_EQ(grd32(VTIO_DMAE_GCTRL), 0);
    for (unsigned ch = 0; ch < 3; ch++)
        check_reset_state(ch, RING(ch), 8, ch);

    /* Function Level Reset: the power-on state, ring registers too. */
    wr32(2, VTIO_DMAE_INT_VEC, 0);
    chan_start(2, 8);
    run_some(2, 2);
    vtio_pci_dev_reset(vtio_dma_engine_pci(F.eng));
    CHECK_EQ(cfg_rd(VTIO_PCI_COMMAND, 2) & VTIO_PCI_COMMAND_MEM, 0);
    pci_program();
    for (unsigned ch = 0; ch < 3; ch++)
        check_reset_state(ch, 0, 0, ch);
    chan_start(2, 8);
    run_some(2, 4);
    CHECK_EQ(rd64(2, VTIO_DMAE_COMPLETED), 4);
    fixture_down();
}

/* ---- speed */

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

static void t_copy_64mib(void)
{
    const uint64_t len = 64 * VTIO_MiB;
    fixture_up(1);
    chan_start(0, 8);
    uint8_t *data = random_at(BIG_SRC, len, 64);
    vtio_mem_set(F.mem, BIG_DST, 0, len);                    /* fault the pages in */
    uint8_t *copy = malloc(len);
    CHECK(copy != NULL);
    memset(copy, 1, len);                                    /* (not calloc'd zero pages) */
    uint64_t t0 = now_ns();
    memcpy(copy, data, len);
    uint64_t t_memcpy = now_ns() - t0;

    struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_COPY, 0, BIG_SRC, BIG_DST, len);
    put(0, &d);
    t0 = now_ns();
    doorbell(0);
    CHECK(wait_idle(0));
    uint64_t t_engine = now_ns() - t0;
    expect_ram(BIG_DST, copy, len);
    printf("    64 MiB copy: engine %.2f ms (%.1f GB/s), memcpy %.2f ms (%.1f GB/s)\n",
           t_engine / 1e6, len / (double)t_engine, t_memcpy / 1e6, len / (double)t_memcpy);
    if (!SANITIZED)
        CHECKF(t_engine < 4 * t_memcpy + 20000000, "engine copy %llu ns vs memcpy %llu ns",
               (unsigned long long)t_engine, (unsigned long long)t_memcpy);
    free(copy);
    free(data);
    fixture_down();
}

static _Atomic uint64_t irq_at;

static void stamp_hook(unsigned ch)
{
    (void)ch;
    atomic_store(&irq_at, now_ns());
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Doorbell to interrupt handler, one NOP at a time, the driver spinning.
 * @returns the median in ns. */
static uint64_t measure_latency(void)
{
    enum { N = 2000 };
    static uint64_t lat[N];
    struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_NOP, VTIO_DMAE_FLAG_INTR, 0, 0, 0);
    for (unsigned i = 0; i < N; i++) {
        put(0, &d);
        unsigned before = atomic_load(&F.irqs[0]);
        uint64_t t0 = now_ns();
        doorbell(0);
        while (atomic_load(&F.irqs[0]) == before)
            CHECKF(now_ns() - t0 < WAIT_NS, "no interrupt for NOP %u", i);
        lat[i] = atomic_load(&irq_at) - t0;
    }
    qsort(lat, N, sizeof(lat[0]), cmp_u64);
    printf("    doorbell -> handler: median %.2f us, p90 %.2f us, p99 %.2f us\n",
           lat[N / 2] / 1e3, lat[N * 9 / 10] / 1e3, lat[N * 99 / 100] / 1e3);
    return lat[N / 2];
}

static void t_latency(void)
{
    fixture_up(1);
    chan_start(0, 256);
    atomic_store(&F.hook, stamp_hook);
    /* The target is ~1 us on an idle machine; the bound only catches a
     * channel that sleeps between doorbells.  A loaded machine (other tests
     * running) gets three tries. */
    uint64_t median = measure_latency();
    for (int tries = 1; !SANITIZED && median >= 200000 && tries < 3; tries++)
        median = measure_latency();
    if (!SANITIZED)
        CHECK_LT(median, 200000);
    atomic_store(&F.hook, NULL);
    fixture_down();
}

static void t_status_names(void)
{
    CHECK(strcmp(vtio_dmae_status_name(VTIO_DMAE_STATUS_SUCCESS), "success") == 0);
    CHECK(strcmp(vtio_dmae_status_name(VTIO_DMAE_ERR_SRC_FAULT), "src-fault") == 0);
    CHECK(strcmp(vtio_dmae_status_name(VTIO_DMAE_ERR_RING), "ring") == 0);
    CHECK(strcmp(vtio_dmae_status_name(0x99), "unknown") == 0);
    static const uint32_t all[] = {
        VTIO_DMAE_ERR_OPCODE, VTIO_DMAE_ERR_LENGTH, VTIO_DMAE_ERR_OVERLAP,
        VTIO_DMAE_ERR_RESERVED, VTIO_DMAE_ERR_SG, VTIO_DMAE_ERR_DESC_FETCH,
        VTIO_DMAE_ERR_DST_FAULT, VTIO_DMAE_ERR_SG_FETCH, VTIO_DMAE_ERR_COMPLETION,
    };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        CHECK(strcmp(vtio_dmae_status_name(all[i]), "unknown") != 0);
}

static void t_create_errors(void)
{
    struct vtio_mem *mem = vtio_mem_create();
    CHECK(mem != NULL);
    struct vtio_pci_bus *bus = vtio_pci_bus_create(mem, 0, ECAM, 0, 0);
    CHECK(bus != NULL);
    struct vtio_dma_engine *eng = NULL, *other = NULL;
    struct vtio_dma_engine_config cfg = { .channels = VTIO_DMAE_MAX_CHANNELS + 1 };
    CHECK_ERR(vtio_dma_engine_create(bus, 0, DEVFN, &cfg, &eng), -EINVAL);
    CHECK_ERR(vtio_dma_engine_create(NULL, 0, DEVFN, NULL, &eng), -EINVAL);
    CHECK_ERR(vtio_dma_engine_create(bus, 1, DEVFN, NULL, &eng), -EINVAL);  /* no bus 1 */
    CHECK_OK(vtio_dma_engine_create(bus, 0, DEVFN, NULL, &eng));            /* 4 channels */
    CHECK_ERR(vtio_dma_engine_create(bus, 0, DEVFN, NULL, &other), -EEXIST);
    CHECK_EQ(vtio_pci_cfg_read(bus, RID, VTIO_PCI_VENDOR_ID, 2), VTIO_DMAE_VENDOR_ID);
    vtio_dma_engine_destroy(eng);
    vtio_pci_bus_destroy(bus);
    vtio_mem_destroy(mem);
}

static const struct vtio_test tests[] = {
    { "identity", "config space identity, BAR types, MSI-X layout and every register's "
      "reset value match the datasheet", t_identity },
    { "registers", "64-bit registers work whole and as halves, reserved bits read 0, RO "
      "registers and narrow writes are ignored, ring registers freeze while EN", t_registers },
    { "copy", "COPY of 1 B..1 MiB at odd alignments moves every byte, touches no guard "
      "byte, writes the completion record and advances HEAD/COMPLETED/BYTES", t_copy },
    { "fill", "FILL writes pattern byte i % 8 at any alignment and length, and nothing "
      "outside", t_fill },
    { "compare", "COMPARE reports equal (bytes = len) or the offset of the first "
      "difference, and writes nothing", t_compare },
    { "copy_sg", "COPY_SG with uneven segment lists, and with 256-entry lists, gathers and "
      "scatters every byte in order", t_copy_sg },
    { "nop", "NOP completes with a record and an interrupt and moves nothing", t_nop },
    { "interrupts", "one interrupt per INTR descriptor, after its data and record; none "
      "with IE clear; masked vectors stay pending; INT_VEC picks the vector",
      t_interrupts },
    { "msi", "the MSI capability offers the channels rounded up to a power of two; with "
      "MSI-X off a channel raises MSI vector INT_VEC & (enabled - 1), masked vectors stay "
      "pending, MSI-X wins when both are on, neither loses the interrupt", t_msi },
    { "ring_wrap", "batches of 1..7 descriptors go round a ring of 8 forty times with "
      "every record and byte right", t_ring_wrap },
    { "fence", "a descriptor rewritten by an earlier COPY runs only behind a FENCE; "
      "descriptors past TAIL never run", t_fence },
    { "prefetch_batches", "29 descriptors at once (several batches, wrapping) all run",
      t_prefetch_batches },
    { "pause_resume", "EN 1->0 pauses with HEAD kept; TAIL written meanwhile runs on "
      "re-enable", t_pause_resume },
    { "reset", "CTRL.RESET, GCTRL.RESET and FLR clear what they should, keep what they "
      "should, and the channel works after each", t_reset },
    { "copy_64mib", "a 64 MiB COPY is byte-exact and runs at memcpy speed", t_copy_64mib },
    { "latency", "doorbell-to-handler latency stays in microseconds", t_latency },
    { "status_names", "every status code has a name", t_status_names },
    { "create_errors", "bad channel counts, bus numbers and taken slots are refused",
      t_create_errors },
};
VTIO_TEST_MAIN(tests)
