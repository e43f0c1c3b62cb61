/*
 * Tests of the DMA port (include/vtio/dma_port.h): the one door through which
 * a device reaches memory, with and without a translator (IOMMU) in front.
 *
 * Every test builds its own address space and port.  The translator here is
 * a fake IOMMU: a table of 4 KiB IOVA pages mapped to scattered physical
 * pages, some of which it refuses; it records what it is asked.
 */
#define _GNU_SOURCE
#include <vtio/dma_port.h>
#include <vtio/intr.h>
#include <vtio/mem.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

#define MiB VTIO_MiB
#define ONES64 0xffffffffffffffffull
#define RID 0x0108                       /* bus 1, device 1, function 0 */
#define PATTERN 0x8877665544332211ull    /* byte i is 0x11 * (i + 1) */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint8_t pat_byte(uint64_t i)
{
    return (uint8_t)(PATTERN >> (8 * (i % 8)));
}

/* ------------------------------------------------------------------------
 * A byte-store MMIO device (peer-to-peer target), counting its callbacks.
 */

struct regdev {
    uint8_t bytes[0x400];
    unsigned calls, bad;
};

static uint64_t regdev_read(void *opaque, uint64_t off, unsigned size)
{
    struct regdev *d = opaque;
    uint64_t v = 0;
    d->calls++;
    if (off % size || off + size > sizeof(d->bytes))
        d->bad++;
    else
        memcpy(&v, d->bytes + off, size);
    return v;
}

static void regdev_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct regdev *d = opaque;
    d->calls++;
    if (off % size || off + size > sizeof(d->bytes))
        d->bad++;
    else
        memcpy(d->bytes + off, &val, size);
}

static const struct vtio_mmio_ops regdev_ops = { regdev_read, regdev_write };

/* ------------------------------------------------------------------------
 * Fixture: RAM [0, 2 MiB) and [2 MiB, 4 MiB), optionally a device right
 * after them at 4 MiB, and a port with bus mastering on.
 */

#define DEV_BASE (4 * MiB)

struct fx {
    struct vtio_mem *mem;
    struct vtio_dma_port port;
    struct regdev dev;
};

static void fx_init(struct fx *f, bool with_dev)
{
    memset(f, 0, sizeof(*f));
    f->mem = vtio_mem_create();
    CHECK(f->mem != NULL);
    CHECK_OK(vtio_mem_add_ram(f->mem, 0, 2 * MiB, "lo"));
    CHECK_OK(vtio_mem_add_ram(f->mem, 2 * MiB, 2 * MiB, "hi"));
    if (with_dev)
        CHECK_OK(vtio_mem_add_mmio(f->mem, DEV_BASE, sizeof(f->dev.bytes), &regdev_ops, &f->dev,
                                   "dev"));
    vtio_dma_port_init(&f->port, f->mem, RID);
    vtio_dma_port_set_bus_master(&f->port, true);
}

static void fx_fini(struct fx *f)
{
    vtio_mem_destroy(f->mem);
    f->mem = NULL;
}

static struct vtio_dma_port_stats stats(struct vtio_dma_port *p)
{
    struct vtio_dma_port_stats st;
    vtio_dma_port_get_stats(p, &st);
    return st;
}

/* Whether [pa, pa + len) of machine memory reads as all `byte`. */
static bool mem_is(struct vtio_mem *m, uint64_t pa, uint64_t len, uint8_t byte)
{
    uint8_t buf[4096];
    while (len) {
        size_t n = len < sizeof(buf) ? len : sizeof(buf);
        vtio_mem_read(m, pa, buf, n);
        for (size_t i = 0; i < n; i++)
            if (buf[i] != byte)
                return false;
        pa += n, len -= n;
    }
    return true;
}

/* ------------------------------------------------------------------------
 * A fake IOMMU.
 */

#define XPAGES 32
#define IOVA_BASE 0x40000ull             /* also RAM as a PA: must stay untouched */

struct fake_iommu {
    uint64_t pa[XPAGES];                 /* page-aligned PA of each IOVA page */
    int err[XPAGES];                     /* refuse every access with this */
    int werr[XPAGES];                    /* refuse writes with this (read-only) */
    int bad_span;                        /* 1: answer span 0; 2: span len + 1 */
    uint16_t rid_seen;
    unsigned calls, wrong_rid, bad_len;
    /* msi() */
    int msi_ret;
    unsigned msi_calls;
    uint16_t msi_rid;
    uint64_t msi_addr;
    uint32_t msi_data;
};

static int fake_translate(void *opaque, uint16_t rid, uint64_t iova, uint64_t len,
                          enum vtio_dma_access access, uint64_t *pa, uint64_t *span)
{
    struct fake_iommu *f = opaque;
    f->calls++;
    f->rid_seen = rid;
    if (rid != RID)
        f->wrong_rid++;
    if (len == 0)
        f->bad_len++;
    if (iova < IOVA_BASE || (iova - IOVA_BASE) / VTIO_PAGE_SIZE >= XPAGES)
        return -EFAULT;
    unsigned page = (unsigned)((iova - IOVA_BASE) / VTIO_PAGE_SIZE);
    if (f->err[page])
        return f->err[page];
    if (access == VTIO_DMA_WRITE && f->werr[page])
        return f->werr[page];
    uint64_t in = iova & (VTIO_PAGE_SIZE - 1);
    *pa = f->pa[page] + in;
    *span = VTIO_PAGE_SIZE - in < len ? VTIO_PAGE_SIZE - in : len;
    if (f->bad_span == 1)
        *span = 0;
    else if (f->bad_span == 2)
        *span = len + 1;
    return 0;
}

static int fake_msi(void *opaque, uint16_t rid, uint64_t addr, uint32_t data)
{
    struct fake_iommu *f = opaque;
    f->msi_calls++;
    f->msi_rid = rid;
    f->msi_addr = addr;
    f->msi_data = data;
    return f->msi_ret;
}

static const struct vtio_dma_translator_ops fake_ops = { .translate = fake_translate,
                                                        .msi = fake_msi };
static const struct vtio_dma_translator_ops fake_ops_nomsi = { .translate = fake_translate };

/* IOVA page i -> a scattered PA page in [1 MiB, 4 MiB), crossing the RAM
 * region boundary, never the identity. */
static uint64_t scatter_pa(unsigned i)
{
    return 0x100000ull + (uint64_t)((i * 7u) % XPAGES) * 0x11000ull;
}

static void fake_init(struct fake_iommu *f)
{
    memset(f, 0, sizeof(*f));
    for (unsigned i = 0; i < XPAGES; i++)
        f->pa[i] = scatter_pa(i);
}

/* The PA the fake maps iova to. */
static uint64_t fake_pa(const struct fake_iommu *f, uint64_t iova)
{
    return f->pa[(iova - IOVA_BASE) / VTIO_PAGE_SIZE] + (iova & (VTIO_PAGE_SIZE - 1));
}

/* Whether every byte of every PA page the fake maps is zero. */
static bool fake_pages_zero(struct vtio_mem *m, const struct fake_iommu *f)
{
    for (unsigned i = 0; i < XPAGES; i++)
        if (!mem_is(m, f->pa[i], VTIO_PAGE_SIZE, 0))
            return false;
    return true;
}

/* ------------------------------------------------------------------------
 * Bus mastering.
 */

static void t_bme_off(void)
{
    struct fx f;
    fx_init(&f, true);
    vtio_dma_port_init(&f.port, f.mem, RID);     /* fresh: BME off */
    CHECK(!atomic_load(&f.port.bus_master));
    CHECK(atomic_load(&f.port.xlat) == NULL);
    CHECK_EQ(f.port.rid, RID);
    uint8_t buf[64], sentinel[64];
    memset(sentinel, 0xcd, sizeof(sentinel));
    memcpy(buf, sentinel, sizeof(buf));
    vtio_mem_write64(f.mem, 0x2000, 0x1122334455667788ull);
    enum vtio_dma_access which = 0;
    uint64_t diff = 12345;

    CHECK_ERR(vtio_dma_read(&f.port, 0x2000, buf, 8), -EPERM);
    CHECK_ERR(vtio_dma_write(&f.port, 0x1000, sentinel, 64), -EPERM);
    CHECK_ERR(vtio_dma_check(&f.port, 0x1000, 64, VTIO_DMA_READ), -EPERM);
    CHECK_ERR(vtio_dma_copy(&f.port, 0x1000, 0x2000, 8, &which), -EPERM);
    CHECK_ERR(vtio_dma_fill(&f.port, 0x1000, PATTERN, 64), -EPERM);
    CHECK_ERR(vtio_dma_compare(&f.port, 0x1000, 0x2000, 8, &diff), -EPERM);
    CHECK_ERR(vtio_dma_msi(&f.port, VTIO_MSI_WINDOW_BASE, 0x30), -EPERM);
    CHECK_ERR(vtio_dma_write(&f.port, DEV_BASE, sentinel, 8), -EPERM);
    CHECK_MEM_EQ(buf, sentinel, 64);
    CHECK(mem_is(f.mem, 0x1000, 0x1000, 0));
    CHECK_EQ(f.dev.calls, 0);
    CHECK_EQ(diff, 12345);
    struct vtio_dma_port_stats st = stats(&f.port);
    CHECK_EQ(st.master_aborts, 8);
    CHECK_EQ(st.reads, 0);
    CHECK_EQ(st.writes, 0);
    CHECK_EQ(st.bytes_read, 0);
    CHECK_EQ(st.bytes_written, 0);
    CHECK_EQ(st.msis, 0);

    /* On, it works; off again, refused again. */
    vtio_dma_port_set_bus_master(&f.port, true);
    CHECK_OK(vtio_dma_read(&f.port, 0x2000, buf, 8));
    CHECK_EQ(buf[0], 0x88);
    vtio_dma_port_set_bus_master(&f.port, false);
    CHECK_ERR(vtio_dma_read(&f.port, 0x2000, buf, 8), -EPERM);
    CHECK_EQ(stats(&f.port).master_aborts, 9);
    fx_fini(&f);
}

/* "With bus mastering disabled every access fails with -EPERM" includes
 * writes aimed at the interrupt window, whatever their size. */
static void t_bme_off_msi_window(void)
{
    struct fx f;
    fx_init(&f, false);
    struct vtio_intr *in = vtio_intr_create(f.mem, 1);
    CHECK(in != NULL);
    vtio_dma_port_init(&f.port, f.mem, RID);
    uint64_t v = 0x31;
    uint32_t v32 = 0x31;
    /* Results first, checks after teardown (a failed check skips it). */
    int r4 = vtio_dma_write(&f.port, VTIO_MSI_WINDOW_BASE, &v32, 4);
    int r8 = vtio_dma_write(&f.port, VTIO_MSI_WINDOW_BASE, &v, 8);
    int ru = vtio_dma_write(&f.port, VTIO_MSI_WINDOW_BASE + 2, &v32, 4);
    struct vtio_dma_port_stats st = stats(&f.port);
    struct vtio_intr_stats is;
    vtio_intr_get_stats(in, &is);
    vtio_intr_destroy(in);
    fx_fini(&f);
    CHECK_ERR(r4, -EPERM);
    CHECK_EQ(is.delivered + is.spurious + is.invalid, 0);
    CHECK_ERR(r8, -EPERM);
    CHECK_ERR(ru, -EPERM);
    CHECK_EQ(st.master_aborts, 3);
    CHECK_EQ(st.faults, 0);
}

/* ------------------------------------------------------------------------
 * Data movement without a translator.
 */

static void t_read_write(void)
{
    struct fx f;
    fx_init(&f, false);
    static const size_t lens[] = { 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 63, 64, 65, 4095, 4096, 4097, 20000 };
    uint8_t *data = malloc(20000), *got = malloc(20000 + 32);
    CHECK(data && got);
    uint64_t seed = 1, nw = 0, bytes = 0;
    for (uint64_t start = 2 * MiB - 40; start < 2 * MiB + 8; start += 3) {
        for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
            size_t len = lens[l];
            vtio_test_fill(data, len, seed++);
            CHECK_OK(vtio_dma_write(&f.port, start, data, len));
            nw++, bytes += len;
            /* The bytes are in machine memory... */
            vtio_mem_read(f.mem, start, got, len);
            CHECKF(memcmp(got, data, len) == 0, "write of %zu at %#llx", len,
                   (unsigned long long)start);
            /* ...and read back through the port, exactly, with nothing extra. */
            memset(got, 0xcd, len + 32);
            CHECK_OK(vtio_dma_read(&f.port, start, got, len));
            CHECK_MEM_EQ(got, data, len);
            CHECK_EQ(got[len], 0xcd);
        }
    }
    struct vtio_dma_port_stats st = stats(&f.port);
    CHECK_EQ(st.writes, nw);
    CHECK_EQ(st.reads, nw);
    CHECK_EQ(st.bytes_written, bytes);
    CHECK_EQ(st.bytes_read, bytes);
    CHECK_EQ(st.faults, 0);
    /* Zero length is fine and moves nothing. */
    CHECK_OK(vtio_dma_read(&f.port, 0x100, got, 0));
    CHECK_OK(vtio_dma_write(&f.port, 0x100, data, 0));
    free(data);
    free(got);
    fx_fini(&f);
}

static void t_peer_mmio(void)
{
    /* DMA to and from a device's registers (peer to peer), longer than the
     * port's MMIO staging and crossing from RAM into the device. */
    struct fx f;
    fx_init(&f, true);
    uint8_t data[0x300], got[0x300];
    vtio_test_fill(data, sizeof(data), 4);
    CHECK_OK(vtio_dma_write(&f.port, DEV_BASE + 3, data, 0x200));
    CHECK_MEM_EQ(f.dev.bytes + 3, data, 0x200);
    CHECK_EQ(f.dev.bytes[2], 0);
    CHECK_EQ(f.dev.bytes[0x203], 0);
    CHECK_OK(vtio_dma_read(&f.port, DEV_BASE + 3, got, 0x200));
    CHECK_MEM_EQ(got, data, 0x200);
    /* RAM -> device in one access. */
    CHECK_OK(vtio_dma_write(&f.port, DEV_BASE - 100, data, 0x300));
    CHECK_MEM_EQ(f.dev.bytes, data + 100, 0x300 - 100);
    vtio_mem_read(f.mem, DEV_BASE - 100, got, 100);
    CHECK_MEM_EQ(got, data, 100);
    CHECK_OK(vtio_dma_read(&f.port, DEV_BASE - 100, got, 0x300));
    CHECK_MEM_EQ(got, data, 0x300);
    CHECK_EQ(f.dev.bad, 0);
    fx_fini(&f);
}

static void t_copy(void)
{
    struct fx f;
    fx_init(&f, true);
    uint8_t *model = malloc(4 * MiB), *got = malloc(4 * MiB);
    CHECK(model && got);
    vtio_test_fill(model, 4 * MiB, 77);
    vtio_mem_write(f.mem, 0, model, 4 * MiB);
    enum vtio_dma_access which = 0;
    struct {
        uint64_t dst, src, len;
    } cases[] = {
        { 2 * MiB - 1000 + 3, 0x1000 + 5, 5000 },      /* dst crosses the boundary */
        { 0x8000 + 1, 2 * MiB - 77, 300 },             /* src crosses it */
        { 2 * MiB - 7, 2 * MiB - 8192 - 3, 4096 },     /* dst crosses, src just below */
        { 3 * MiB + 1, 3 * MiB / 2 + 2, 1 * MiB - 9 }, /* big, src crosses */
        { 0x30000, 0x10000 + 1, 1 },
    };
    uint64_t bytes = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_OK(vtio_dma_copy(&f.port, cases[i].dst, cases[i].src, cases[i].len, &which));
        memmove(model + cases[i].dst, model + cases[i].src, cases[i].len);
        bytes += cases[i].len;
    }
    vtio_mem_read(f.mem, 0, got, 4 * MiB);
    int same = memcmp(got, model, 4 * MiB) == 0;
    CHECKF(same, "memory after copies differs from the model");
    struct vtio_dma_port_stats st = stats(&f.port);
    CHECK_EQ(st.reads, 5);
    CHECK_EQ(st.writes, 5);
    CHECK_EQ(st.bytes_read, bytes);
    CHECK_EQ(st.bytes_written, bytes);
    CHECK_OK(vtio_dma_copy(&f.port, 0x30000, 0x10000, 0, &which));   /* len 0 */
    CHECK_EQ(vtio_mem_read8(f.mem, 0x30000), model[0x30000]);

    /* RAM -> device registers and back to RAM. */
    CHECK_OK(vtio_dma_copy(&f.port, DEV_BASE + 1, 0x5003, 0x150, NULL));
    CHECK_MEM_EQ(f.dev.bytes + 1, model + 0x5003, 0x150);
    CHECK_OK(vtio_dma_copy(&f.port, 0x9001, DEV_BASE + 1, 0x150, NULL));
    vtio_mem_read(f.mem, 0x9001, got, 0x150);
    CHECK_MEM_EQ(got, model + 0x5003, 0x150);
    CHECK_EQ(f.dev.bad, 0);
    free(model);
    free(got);
    fx_fini(&f);
}

/* Fills [start, start + len) and checks the pattern phase inside and a guard
 * of `guard` bytes on each side. */
static void fill_and_check(struct fx *f, uint64_t start, uint64_t len)
{
    const uint64_t g = 16;
    vtio_mem_set(f->mem, start - g, 0xee, len + 2 * g);
    CHECK_OK(vtio_dma_fill(&f->port, start, PATTERN, len));
    uint8_t *buf = malloc(len + 2 * g);
    CHECK(buf != NULL);
    vtio_mem_read(f->mem, start - g, buf, len + 2 * g);
    for (uint64_t i = 0; i < len + 2 * g; i++) {
        uint8_t want = (i < g || i >= g + len) ? 0xee : pat_byte(i - g);
        if (buf[i] != want) {
            uint8_t b = buf[i];
            free(buf);
            CHECKF(0, "fill(%#llx, len %llu): byte %lld is %#x, want %#x",
                   (unsigned long long)start, (unsigned long long)len, (long long)(i - g), b,
                   want);
        }
    }
    free(buf);
}

static void t_fill_phase(void)
{
    struct fx f;
    fx_init(&f, false);
    static const uint64_t starts[] = { 0x1000, 0x1003, 0x1007, 2 * MiB - 13, 2 * MiB - 8,
                                       2 * MiB - 1, 2 * MiB + 5 };
    static const uint64_t lens[] = { 1, 7, 8, 9, 13, 100, 4096, 4099, 9005, 70001 };
    for (size_t s = 0; s < sizeof(starts) / sizeof(starts[0]); s++)
        for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++)
            fill_and_check(&f, starts[s], lens[l]);
    /* A huge fill across the region boundary. */
    fill_and_check(&f, 1 * MiB + 3, 2 * MiB + 11);
    fx_fini(&f);
}

static void t_fill_mmio(void)
{
    /* Into device registers (staged in pieces) and from RAM into them. */
    struct fx f;
    fx_init(&f, true);
    CHECK_OK(vtio_dma_fill(&f.port, DEV_BASE + 3, PATTERN, 0x1f0));
    for (unsigned i = 0; i < 0x1f0; i++)
        CHECKF(f.dev.bytes[3 + i] == pat_byte(i), "device byte %#x is %#x", 3 + i,
               f.dev.bytes[3 + i]);
    CHECK_EQ(f.dev.bytes[2], 0);
    CHECK_EQ(f.dev.bytes[0x1f3], 0);
    memset(f.dev.bytes, 0, sizeof(f.dev.bytes));
    CHECK_OK(vtio_dma_fill(&f.port, DEV_BASE - 21, PATTERN, 200));
    for (unsigned i = 0; i < 21; i++)
        CHECK_EQ(vtio_mem_read8(f.mem, DEV_BASE - 21 + i), pat_byte(i));
    for (unsigned i = 21; i < 200; i++)
        CHECKF(f.dev.bytes[i - 21] == pat_byte(i), "transfer byte %u is %#x", i,
               f.dev.bytes[i - 21]);
    CHECK_EQ(f.dev.bad, 0);
    fx_fini(&f);
}

static void t_compare(void)
{
    struct fx f;
    fx_init(&f, true);
    const uint64_t len = 10000, a = 2 * MiB - 5000, b = 0x10003;
    uint8_t *data = malloc(len);
    CHECK(data != NULL);
    vtio_test_fill(data, len, 21);
    vtio_mem_write(f.mem, a, data, len);
    vtio_mem_write(f.mem, b, data, len);
    uint64_t diff = 1;
    CHECK_OK(vtio_dma_compare(&f.port, a, b, len, &diff));
    CHECK_EQ(diff, len);
    const uint64_t where[] = { 0, 1, 4999, 5000, 5003, 7777, len - 1 };
    for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
        uint8_t old = vtio_mem_read8(f.mem, b + where[i]);
        vtio_mem_write8(f.mem, b + where[i], (uint8_t)(old ^ 0x40));
        diff = 0xdead;
        CHECK_OK(vtio_dma_compare(&f.port, a, b, len, &diff));
        CHECK_EQ(diff, where[i]);
        CHECK_OK(vtio_dma_compare(&f.port, b, a, len, &diff));   /* symmetric */
        CHECK_EQ(diff, where[i]);
        /* Two differences: the first is reported. */
        vtio_mem_write8(f.mem, a + len - 1, (uint8_t)(vtio_mem_read8(f.mem, a + len - 1) ^ 1));
        CHECK_OK(vtio_dma_compare(&f.port, a, b, len, &diff));
        CHECK_EQ(diff, where[i]);
        vtio_mem_write8(f.mem, a + len - 1, (uint8_t)(vtio_mem_read8(f.mem, a + len - 1) ^ 1));
        vtio_mem_write8(f.mem, b + where[i], old);
    }
    CHECK_OK(vtio_dma_compare(&f.port, a, b, len, &diff));
    CHECK_EQ(diff, len);
    /* Compare does not write. */
    uint8_t *got = malloc(len);
    CHECK(got != NULL);
    vtio_mem_read(f.mem, a, got, len);
    CHECK_MEM_EQ(got, data, len);
    /* Against device registers. */
    memcpy(f.dev.bytes, data, 0x200);
    CHECK_OK(vtio_dma_compare(&f.port, DEV_BASE, a, 0x200, &diff));
    CHECK_EQ(diff, 0x200);
    f.dev.bytes[0x150] ^= 1;
    CHECK_OK(vtio_dma_compare(&f.port, a, DEV_BASE, 0x200, &diff));
    CHECK_EQ(diff, 0x150);
    /* Length 0: no difference, diff = 0. */
    CHECK_OK(vtio_dma_compare(&f.port, a, b, 0, &diff));
    CHECK_EQ(diff, 0);
    free(got);
    free(data);
    fx_fini(&f);
}

static void t_check(void)
{
    struct fx f;
    fx_init(&f, true);
    CHECK_OK(vtio_dma_check(&f.port, 0, 4 * MiB, VTIO_DMA_READ));
    CHECK_OK(vtio_dma_check(&f.port, 2 * MiB - 1, 2, VTIO_DMA_WRITE));
    CHECK_OK(vtio_dma_check(&f.port, DEV_BASE - 8, 16, VTIO_DMA_WRITE));
    CHECK_OK(vtio_dma_check(&f.port, 0x100, 0, VTIO_DMA_WRITE));
    CHECK_EQ(stats(&f.port).faults, 0);
    CHECK_ERR(vtio_dma_check(&f.port, DEV_BASE + 0x3f0, 0x11, VTIO_DMA_READ), -EFAULT);
    CHECK_ERR(vtio_dma_check(&f.port, 16 * MiB, 1, VTIO_DMA_WRITE), -EFAULT);
    CHECK_ERR(vtio_dma_check(&f.port, ONES64 - 7, 9, VTIO_DMA_READ), -EINVAL);
    struct vtio_dma_port_stats st = stats(&f.port);
    CHECK_EQ(st.faults, 2);
    CHECK_EQ(st.reads + st.writes + st.bytes_read + st.bytes_written, 0);
    CHECK_EQ(f.dev.calls, 0);
    fx_fini(&f);
}

/* vtio_dma_find_fault names the first refused address, translating no
 * further than the refused page; a write check refuses the interrupt window. */
static void t_find_fault(void)
{
    struct fx f;
    fx_init(&f, true);
    uint64_t fault = 0;
    CHECK_OK(vtio_dma_find_fault(&f.port, 0, 4096, VTIO_DMA_READ, &fault));
    CHECK_ERR(vtio_dma_find_fault(&f.port, DEV_BASE + 0x3f0, 0x11, VTIO_DMA_READ, &fault),
              -EFAULT);
    CHECK_EQ(fault, DEV_BASE + 0x400);                 /* the first byte of the hole */
    /* A data write inside the interrupt window: refused at its first byte. */
    CHECK_ERR(vtio_dma_find_fault(&f.port, 0xFEE00010ull, 0x20, VTIO_DMA_WRITE, &fault),
              -EFAULT);
    CHECK_EQ(fault, 0xFEE00010ull);
    /* From a hole into the window: the hole's first byte comes first. */
    CHECK_ERR(vtio_dma_find_fault(&f.port, 0xFEDFFFF0ull, 0x20, VTIO_DMA_WRITE, &fault),
              -EFAULT);
    CHECK_EQ(fault, 0xFEDFFFF0ull);
    CHECK_ERR(vtio_dma_check(&f.port, 0xFEE00000ull, 4, VTIO_DMA_WRITE), -EFAULT);
    fx_fini(&f);

    fx_init(&f, false);
    struct fake_iommu io;
    fake_init(&io);
    const struct vtio_dma_translator xl = { &fake_ops, &io };
    vtio_dma_port_set_translator(&f.port, &xl);
    io.err[5] = -EACCES;
    io.calls = 0;
    CHECK_ERR(vtio_dma_find_fault(&f.port, IOVA_BASE + 2 * VTIO_PAGE_SIZE + 8,
                                  6 * VTIO_PAGE_SIZE, VTIO_DMA_READ, &fault), -EACCES);
    CHECK_EQ(fault, IOVA_BASE + 5 * VTIO_PAGE_SIZE);
    CHECK_EQ(io.calls, 4);                             /* pages 2, 3, 4, then 5 refused */
    vtio_dma_port_set_translator(&f.port, NULL);
    fx_fini(&f);
}

/* A range whose last byte is a hole is refused whole by every operation. */
static void t_hole_guard(void)
{
    struct fx f;
    fx_init(&f, true);
    uint8_t data[512], buf[512], sentinel[512];
    vtio_test_fill(data, sizeof(data), 8);
    memset(sentinel, 0xcd, sizeof(sentinel));
    memcpy(buf, sentinel, sizeof(buf));
    const uint64_t end = DEV_BASE + sizeof(f.dev.bytes);     /* hole from here */
    enum vtio_dma_access which = 0;
    uint64_t diff = 777;

    CHECK_ERR(vtio_dma_write(&f.port, DEV_BASE - 100, data, 100 + 0x400 + 1), -EFAULT);
    CHECK_ERR(vtio_dma_write(&f.port, end - 511, data, 512), -EFAULT);
    CHECK_ERR(vtio_dma_read(&f.port, DEV_BASE - 100, buf, 100 + 0x400 + 1), -EFAULT);
    CHECK_ERR(vtio_dma_fill(&f.port, DEV_BASE - 100, PATTERN, 100 + 0x400 + 1), -EFAULT);
    CHECK_ERR(vtio_dma_copy(&f.port, end - 10, 0x1000, 11, &which), -EFAULT);
    CHECK_EQ(which, VTIO_DMA_WRITE);
    which = 0;
    CHECK_ERR(vtio_dma_copy(&f.port, 0x1000, end - 10, 11, &which), -EFAULT);
    CHECK_EQ(which, VTIO_DMA_READ);
    CHECK_ERR(vtio_dma_compare(&f.port, 0x1000, end - 10, 11, &diff), -EFAULT);
    CHECK_ERR(vtio_dma_compare(&f.port, end - 10, 0x1000, 11, &diff), -EFAULT);
    CHECK_EQ(diff, 777);
    CHECK_MEM_EQ(buf, sentinel, sizeof(buf));
    CHECK_EQ(f.dev.calls, 0);                    /* the device saw nothing */
    CHECK(mem_is(f.mem, DEV_BASE - 4096, 4096, 0));
    CHECK(mem_is(f.mem, 0x1000, 16, 0));
    /* The RAM end too (with no device behind it). */
    CHECK_OK(vtio_mem_remove_mmio(f.mem, DEV_BASE));
    CHECK_ERR(vtio_dma_write(&f.port, DEV_BASE - 15, data, 16), -EFAULT);
    CHECK_ERR(vtio_dma_fill(&f.port, DEV_BASE - 15, PATTERN, 16), -EFAULT);
    CHECK(mem_is(f.mem, DEV_BASE - 4096, 4096, 0));
    struct vtio_dma_port_stats st = stats(&f.port);
    CHECK_EQ(st.faults, 10);
    CHECK_EQ(st.reads + st.writes, 0);
    fx_fini(&f);
}

static void t_wrap(void)
{
    struct fx f;
    fx_init(&f, false);
    uint8_t buf[16] = { 0 };
    enum vtio_dma_access which;
    uint64_t diff;
    const uint64_t a = ONES64 - 3;
    CHECK_ERR(vtio_dma_read(&f.port, a, buf, 8), -EINVAL);
    CHECK_ERR(vtio_dma_write(&f.port, a, buf, 8), -EINVAL);
    CHECK_ERR(vtio_dma_check(&f.port, a, 8, VTIO_DMA_WRITE), -EINVAL);
    CHECK_ERR(vtio_dma_copy(&f.port, 0x1000, a, 8, &which), -EINVAL);
    CHECK_ERR(vtio_dma_copy(&f.port, a, 0x1000, 8, &which), -EINVAL);
    CHECK_ERR(vtio_dma_fill(&f.port, a, PATTERN, 8), -EINVAL);
    CHECK_ERR(vtio_dma_compare(&f.port, 0x1000, a, 8, &diff), -EINVAL);
    CHECK_ERR(vtio_dma_compare(&f.port, a, 0x1000, 8, &diff), -EINVAL);
    CHECK_ERR(vtio_dma_msi(&f.port, ONES64 - 1, 0x30), -EINVAL);
    CHECK_ERR(vtio_dma_write(&f.port, 0x1000, buf, SIZE_MAX), -EINVAL);
    CHECK(mem_is(f.mem, 0, 0x2000, 0));
    /* Ending exactly at 2^64 does not wrap (it is a hole here). */
    CHECK_ERR(vtio_dma_read(&f.port, ONES64 - 7, buf, 8), -EFAULT);
    fx_fini(&f);
}

/* A range that wraps is -EINVAL even when it starts inside the MSI window. */
static void t_wrap_msi_window(void)
{
    struct fx f;
    fx_init(&f, false);
    uint8_t buf[16] = { 0 };
    int r = vtio_dma_write(&f.port, VTIO_MSI_WINDOW_BASE + 0x100, buf, SIZE_MAX);
    int r2 = vtio_dma_write(&f.port, VTIO_MSI_WINDOW_BASE, buf, SIZE_MAX);
    fx_fini(&f);
    CHECK_ERR(r, -EINVAL);
    CHECK_ERR(r2, -EINVAL);
}

/* ------------------------------------------------------------------------
 * Behind a translator.
 */

static void t_xlat_scatter(void)
{
    struct fx f;
    fx_init(&f, false);
    struct fake_iommu io;
    fake_init(&io);
    const struct vtio_dma_translator xl = { &fake_ops, &io };
    vtio_dma_port_set_translator(&f.port, &xl);

    const uint64_t iova = IOVA_BASE + 2 * VTIO_PAGE_SIZE + 0x345;
    const size_t len = 10 * VTIO_PAGE_SIZE + 123;
    uint8_t *data = malloc(len), *got = malloc(len);
    CHECK(data && got);
    vtio_test_fill(data, len, 31);
    CHECK_OK(vtio_dma_write(&f.port, iova, data, len));
    CHECK_GT(io.calls, 10);
    CHECK_EQ(io.wrong_rid, 0);
    CHECK_EQ(io.rid_seen, RID);
    CHECK_EQ(io.bad_len, 0);
    /* Each byte is at the translated address... */
    for (size_t i = 0; i < len;) {
        uint64_t in = (iova + i) & (VTIO_PAGE_SIZE - 1);
        size_t n = VTIO_PAGE_SIZE - in < len - i ? VTIO_PAGE_SIZE - in : len - i;
        vtio_mem_read(f.mem, fake_pa(&io, iova + i), got, n);
        CHECKF(memcmp(got, data + i, n) == 0, "IOVA %#llx: data not at PA %#llx",
               (unsigned long long)(iova + i), (unsigned long long)fake_pa(&io, iova + i));
        i += n;
    }
    /* ...and nowhere else: not at the IOVA taken as a PA. */
    CHECK(mem_is(f.mem, IOVA_BASE, XPAGES * VTIO_PAGE_SIZE, 0));
    /* Reading through the translator gives it back. */
    memset(got, 0, len);
    CHECK_OK(vtio_dma_read(&f.port, iova, got, len));
    CHECK_MEM_EQ(got, data, len);
    /* Removing the translator makes addresses physical again. */
    vtio_dma_port_set_translator(&f.port, NULL);
    unsigned calls = io.calls;
    CHECK_OK(vtio_dma_read(&f.port, iova, got, 16));
    CHECK(mem_is(f.mem, iova, 16, 0));
    CHECK_EQ(io.calls, calls);
    free(data);
    free(got);
    fx_fini(&f);
}

static void t_xlat_refuse(void)
{
    struct fx f;
    fx_init(&f, false);
    struct fake_iommu io;
    fake_init(&io);
    const struct vtio_dma_translator xl = { &fake_ops, &io };
    vtio_dma_port_set_translator(&f.port, &xl);
    const uint64_t iova = IOVA_BASE + 2 * VTIO_PAGE_SIZE + 0x10;   /* pages 2..9 */
    const size_t len = 7 * VTIO_PAGE_SIZE + 0x20;
    uint8_t *data = malloc(len), *buf = malloc(len), *sentinel = malloc(len);
    CHECK(data && buf && sentinel);
    vtio_test_fill(data, len, 41);
    memset(sentinel, 0xcd, len);
    unsigned faults = 0;

    /* A refused page anywhere: first, middle, last. */
    const unsigned bad_pages[] = { 2, 5, 9 };
    const int errs[] = { -EFAULT, -EACCES };
    for (size_t p = 0; p < 3; p++) {
        for (size_t e = 0; e < 2; e++) {
            io.err[bad_pages[p]] = errs[e];
            CHECK_ERR(vtio_dma_write(&f.port, iova, data, len), errs[e]);
            CHECK(fake_pages_zero(f.mem, &io));
            memcpy(buf, sentinel, len);
            CHECK_ERR(vtio_dma_read(&f.port, iova, buf, len), errs[e]);
            CHECK_MEM_EQ(buf, sentinel, len);
            CHECK_ERR(vtio_dma_fill(&f.port, iova, PATTERN, len), errs[e]);
            CHECK(fake_pages_zero(f.mem, &io));
            CHECK_ERR(vtio_dma_check(&f.port, iova, len, VTIO_DMA_READ), errs[e]);
            faults += 4;
            io.err[bad_pages[p]] = 0;
        }
    }
    /* Outside the fake's table: -EFAULT. */
    CHECK_ERR(vtio_dma_write(&f.port, IOVA_BASE + XPAGES * VTIO_PAGE_SIZE - 8, data, 16), -EFAULT);
    faults++;
    CHECK(fake_pages_zero(f.mem, &io));

    /* A read-only page: reads pass, writes get -EACCES and write nothing. */
    io.werr[6] = -EACCES;
    CHECK_ERR(vtio_dma_write(&f.port, iova, data, len), -EACCES);
    CHECK_ERR(vtio_dma_check(&f.port, iova, len, VTIO_DMA_WRITE), -EACCES);
    faults += 2;
    CHECK(fake_pages_zero(f.mem, &io));
    CHECK_OK(vtio_dma_check(&f.port, iova, len, VTIO_DMA_READ));
    CHECK_OK(vtio_dma_read(&f.port, iova, buf, len));
    /* Writes that avoid the page work. */
    CHECK_OK(vtio_dma_write(&f.port, iova, data, 4 * VTIO_PAGE_SIZE - 0x10));
    CHECK_EQ(stats(&f.port).faults, faults);
    CHECK_EQ(io.wrong_rid, 0);
    free(data);
    free(buf);
    free(sentinel);
    fx_fini(&f);
}

static void t_xlat_copy_which(void)
{
    struct fx f;
    fx_init(&f, false);
    struct fake_iommu io;
    fake_init(&io);
    const struct vtio_dma_translator xl = { &fake_ops, &io };
    vtio_dma_port_set_translator(&f.port, &xl);
    const uint64_t src = IOVA_BASE + 1 * VTIO_PAGE_SIZE + 0x10;    /* pages 1..5 */
    const uint64_t dst = IOVA_BASE + 16 * VTIO_PAGE_SIZE + 0x7f3;  /* pages 16..20 */
    const uint64_t len = 4 * VTIO_PAGE_SIZE + 0x100;
    uint8_t *data = malloc(len), *got = malloc(len);
    CHECK(data && got);
    vtio_test_fill(data, len, 51);
    /* Put the source data in place (through the translator). */
    CHECK_OK(vtio_dma_write(&f.port, src, data, len));
    enum vtio_dma_access which = 0;

    io.err[3] = -EFAULT;                                  /* a source page */
    CHECK_ERR(vtio_dma_copy(&f.port, dst, src, len, &which), -EFAULT);
    CHECK_EQ(which, VTIO_DMA_READ);
    io.err[3] = 0;
    io.err[19] = -EACCES;                                 /* a destination page */
    which = 0;
    CHECK_ERR(vtio_dma_copy(&f.port, dst, src, len, &which), -EACCES);
    CHECK_EQ(which, VTIO_DMA_WRITE);
    io.err[19] = 0;
    io.werr[16] = -EACCES;                                /* read-only destination */
    which = 0;
    CHECK_ERR(vtio_dma_copy(&f.port, dst, src, len, &which), -EACCES);
    CHECK_EQ(which, VTIO_DMA_WRITE);
    io.werr[16] = 0;
    io.werr[2] = -EACCES;                                 /* read-only source: fine */
    CHECK_ERR(vtio_dma_copy(&f.port, dst, src, len, NULL), 0);
    io.werr[2] = 0;
    CHECK_OK(vtio_dma_read(&f.port, dst, got, len));
    CHECK_MEM_EQ(got, data, len);
    CHECK_EQ(io.wrong_rid, 0);

    /* Nothing was written by the refused copies: redo from a clean dst. */
    fake_init(&io);
    vtio_mem_set(f.mem, 0, 0, 4 * MiB);
    CHECK_OK(vtio_dma_write(&f.port, src, data, len));
    io.err[20] = -EFAULT;                                 /* the last dst page */
    CHECK_ERR(vtio_dma_copy(&f.port, dst, src, len, &which), -EFAULT);
    CHECK_EQ(which, VTIO_DMA_WRITE);
    for (unsigned p = 16; p <= 20; p++)
        CHECK(mem_is(f.mem, io.pa[p], VTIO_PAGE_SIZE, 0));
    free(data);
    free(got);
    fx_fini(&f);
}

static void t_xlat_bad_span(void)
{
    struct fx f;
    fx_init(&f, false);
    struct fake_iommu io;
    fake_init(&io);
    const struct vtio_dma_translator xl = { &fake_ops, &io };
    vtio_dma_port_set_translator(&f.port, &xl);
    uint8_t data[64], buf[64], sentinel[64];
    vtio_test_fill(data, sizeof(data), 61);
    memset(sentinel, 0xcd, sizeof(sentinel));
    for (int mode = 1; mode <= 2; mode++) {
        io.bad_span = mode;
        memcpy(buf, sentinel, sizeof(buf));
        CHECK_ERR(vtio_dma_write(&f.port, IOVA_BASE + 0x100, data, 64), -EFAULT);
        CHECK_ERR(vtio_dma_read(&f.port, IOVA_BASE + 0x100, buf, 64), -EFAULT);
        CHECK_ERR(vtio_dma_fill(&f.port, IOVA_BASE + 0x100, PATTERN, 64), -EFAULT);
        CHECK_ERR(vtio_dma_check(&f.port, IOVA_BASE + 0x100, 64, VTIO_DMA_READ), -EFAULT);
        CHECK_MEM_EQ(buf, sentinel, sizeof(buf));
        CHECK(fake_pages_zero(f.mem, &io));
    }
    CHECK_EQ(stats(&f.port).faults, 8);
    fx_fini(&f);
}

static void t_xlat_to_hole(void)
{
    /* The translator maps a page to a physical hole (or only its tail). */
    struct fx f;
    fx_init(&f, false);
    struct fake_iommu io;
    fake_init(&io);
    io.pa[4] = 64 * MiB;                          /* a hole */
    io.pa[6] = 4 * MiB - VTIO_PAGE_SIZE / 2;      /* half RAM, half hole */
    const struct vtio_dma_translator xl = { &fake_ops, &io };
    vtio_dma_port_set_translator(&f.port, &xl);
    uint8_t data[3 * 4096];
    vtio_test_fill(data, sizeof(data), 71);
    CHECK_ERR(vtio_dma_write(&f.port, IOVA_BASE + 2 * VTIO_PAGE_SIZE, data, sizeof(data)),
              -EFAULT);
    CHECK_ERR(vtio_dma_write(&f.port, IOVA_BASE + 5 * VTIO_PAGE_SIZE, data, 2 * VTIO_PAGE_SIZE),
              -EFAULT);
    CHECK(mem_is(f.mem, io.pa[2], VTIO_PAGE_SIZE, 0));
    CHECK(mem_is(f.mem, io.pa[3], VTIO_PAGE_SIZE, 0));
    CHECK(mem_is(f.mem, io.pa[5], VTIO_PAGE_SIZE, 0));
    CHECK(mem_is(f.mem, 4 * MiB - VTIO_PAGE_SIZE / 2, VTIO_PAGE_SIZE / 2, 0));
    /* Its first half alone is fine. */
    CHECK_OK(vtio_dma_write(&f.port, IOVA_BASE + 6 * VTIO_PAGE_SIZE, data, VTIO_PAGE_SIZE / 2));
    fx_fini(&f);
}

static void t_xlat_fill_compare(void)
{
    struct fx f;
    fx_init(&f, false);
    struct fake_iommu io;
    fake_init(&io);
    const struct vtio_dma_translator xl = { &fake_ops, &io };
    vtio_dma_port_set_translator(&f.port, &xl);
    /* Fill: the phase follows the transfer, across scattered pages. */
    const uint64_t start = IOVA_BASE + 3 * VTIO_PAGE_SIZE + 0x7fd;
    const uint64_t len = 5 * VTIO_PAGE_SIZE + 77;
    CHECK_OK(vtio_dma_fill(&f.port, start, PATTERN, len));
    for (uint64_t i = 0; i < len; i++) {
        uint8_t b = vtio_mem_read8(f.mem, fake_pa(&io, start + i));
        CHECKF(b == pat_byte(i), "fill byte %llu (IOVA %#llx) is %#x, want %#x",
               (unsigned long long)i, (unsigned long long)(start + i), b, pat_byte(i));
    }
    CHECK_EQ(vtio_mem_read8(f.mem, fake_pa(&io, start - 1)), 0);
    CHECK_EQ(vtio_mem_read8(f.mem, fake_pa(&io, start + len)), 0);
    /* Compare through the translator: a copy of the filled range. */
    const uint64_t other = IOVA_BASE + 20 * VTIO_PAGE_SIZE + 0x11;
    CHECK_OK(vtio_dma_copy(&f.port, other, start, len, NULL));
    uint64_t diff = 0;
    CHECK_OK(vtio_dma_compare(&f.port, start, other, len, &diff));
    CHECK_EQ(diff, len);
    uint64_t at = 2 * VTIO_PAGE_SIZE + 5;
    vtio_mem_write8(f.mem, fake_pa(&io, other + at), 0);
    CHECK_OK(vtio_dma_compare(&f.port, start, other, len, &diff));
    CHECK_EQ(diff, at);
    io.err[24] = -EFAULT;
    diff = 99;
    CHECK_ERR(vtio_dma_compare(&f.port, start, other, len, &diff), -EFAULT);
    CHECK_EQ(diff, 99);
    CHECK_EQ(io.wrong_rid, 0);
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * Interrupt messages.
 */

struct irq_rec {
    unsigned calls;
    void *opaque;
    unsigned cpu, vector;
};

static void irq_handler(void *opaque, unsigned cpu, unsigned vector)
{
    struct irq_rec *r = opaque;
    r->calls++;
    r->opaque = opaque;
    r->cpu = cpu;
    r->vector = vector;
}

static void t_msi_window_write(void)
{
    struct fx f;
    fx_init(&f, false);
    /* RAM right below the window, to see that nothing leaks into it. */
    CHECK_OK(vtio_mem_add_ram(f.mem, VTIO_MSI_WINDOW_BASE - 2 * MiB, 2 * MiB, "below"));
    struct vtio_intr *in = vtio_intr_create(f.mem, 2);
    CHECK(in != NULL);
    struct irq_rec rec = { 0 };
    CHECK_OK(vtio_intr_register(in, 1, 0x41, irq_handler, &rec));
    uint64_t addr;
    uint32_t data;
    vtio_msi_compose(1, 0x41, &addr, &data);

    CHECK_OK(vtio_dma_write(&f.port, addr, &data, 4));
    CHECK_EQ(rec.calls, 1);
    CHECK(rec.opaque == &rec);
    CHECK_EQ(rec.cpu, 1);
    CHECK_EQ(rec.vector, 0x41);
    CHECK_EQ(stats(&f.port).msis, 1);

    /* Anything else aimed at the window is refused and raises nothing. */
    uint64_t d64 = data | ((uint64_t)data << 32);
    uint16_t d16 = (uint16_t)data;
    CHECK_ERR(vtio_dma_write(&f.port, addr, &d64, 8), -EFAULT);
    CHECK_ERR(vtio_dma_write(&f.port, addr + 2, &data, 4), -EFAULT);
    CHECK_ERR(vtio_dma_write(&f.port, addr + 1, &data, 4), -EFAULT);
    CHECK_ERR(vtio_dma_write(&f.port, addr, &d16, 2), -EFAULT);
    CHECK_ERR(vtio_dma_write(&f.port, VTIO_MSI_WINDOW_BASE - 4, &d64, 8), -EFAULT);
    CHECK_ERR(vtio_dma_fill(&f.port, addr, data, 4), -EFAULT);
    CHECK_ERR(vtio_dma_fill(&f.port, VTIO_MSI_WINDOW_BASE - 4, data, 8), -EFAULT);
    vtio_mem_write32(f.mem, 0x1000, data);
    enum vtio_dma_access which = 0;
    CHECK_ERR(vtio_dma_copy(&f.port, addr, 0x1000, 4, &which), -EFAULT);
    CHECK_EQ(which, VTIO_DMA_WRITE);
    CHECK_EQ(rec.calls, 1);
    CHECK(mem_is(f.mem, VTIO_MSI_WINDOW_BASE - 16, 16, 0));
    struct vtio_intr_stats is;
    vtio_intr_get_stats(in, &is);
    CHECK_EQ(is.delivered, 1);
    CHECK_EQ(is.invalid, 0);
    struct vtio_dma_port_stats st = stats(&f.port);
    CHECK_EQ(st.msis, 1);
    CHECK_EQ(st.faults, 8);

    /* vtio_dma_msi itself. */
    CHECK_OK(vtio_dma_msi(&f.port, addr, data));
    CHECK_EQ(rec.calls, 2);
    CHECK_EQ(vtio_intr_count(in, 1, 0x41), 2);
    CHECK_EQ(stats(&f.port).msis, 2);
    vtio_intr_destroy(in);
    /* With no sink the window is a hole: the message faults. */
    CHECK_ERR(vtio_dma_msi(&f.port, addr, data), -EFAULT);
    CHECK_EQ(stats(&f.port).msis, 2);
    CHECK_EQ(stats(&f.port).faults, 9);
    fx_fini(&f);
}

static void t_msi_translator(void)
{
    struct fx f;
    fx_init(&f, false);
    struct vtio_intr *in = vtio_intr_create(f.mem, 1);
    CHECK(in != NULL);
    struct irq_rec rec = { 0 };
    CHECK_OK(vtio_intr_register(in, 0, 0x50, irq_handler, &rec));
    uint64_t addr;
    uint32_t data;
    vtio_msi_compose(0, 0x50, &addr, &data);
    struct fake_iommu io;
    fake_init(&io);
    const struct vtio_dma_translator xl = { &fake_ops, &io };
    vtio_dma_port_set_translator(&f.port, &xl);

    /* The IOMMU handles it (remapped or blocked): the sink never sees it. */
    io.msi_ret = 0;
    CHECK_OK(vtio_dma_msi(&f.port, addr, data));
    CHECK_EQ(io.msi_calls, 1);
    CHECK_EQ(io.msi_rid, RID);
    CHECK_EQ(io.msi_addr, addr);
    CHECK_EQ(io.msi_data, data);
    CHECK_EQ(rec.calls, 0);
    CHECK_EQ(stats(&f.port).msis, 1);
    /* A 4-byte DMA write to the window goes the same way, untranslated. */
    CHECK_OK(vtio_dma_write(&f.port, addr, &data, 4));
    CHECK_EQ(io.msi_calls, 2);
    CHECK_EQ(io.calls, 0);
    CHECK_EQ(rec.calls, 0);

    /* -ENOSYS: the write goes on to the sink. */
    io.msi_ret = -ENOSYS;
    CHECK_OK(vtio_dma_msi(&f.port, addr, data));
    CHECK_EQ(io.msi_calls, 3);
    CHECK_EQ(rec.calls, 1);
    CHECK_EQ(rec.vector, 0x50);
    CHECK_EQ(stats(&f.port).msis, 3);

    /* A translator without an msi op: straight to the sink. */
    const struct vtio_dma_translator xl2 = { &fake_ops_nomsi, &io };
    vtio_dma_port_set_translator(&f.port, &xl2);
    CHECK_OK(vtio_dma_msi(&f.port, addr, data));
    CHECK_EQ(io.msi_calls, 3);
    CHECK_EQ(rec.calls, 2);

    /* Bus mastering off: neither the IOMMU nor the sink sees it. */
    vtio_dma_port_set_translator(&f.port, &xl);
    vtio_dma_port_set_bus_master(&f.port, false);
    CHECK_ERR(vtio_dma_msi(&f.port, addr, data), -EPERM);
    CHECK_EQ(io.msi_calls, 3);
    CHECK_EQ(rec.calls, 2);
    vtio_intr_destroy(in);
    fx_fini(&f);
}

static void t_stats(void)
{
    struct fx f;
    fx_init(&f, false);
    struct vtio_intr *in = vtio_intr_create(f.mem, 1);
    CHECK(in != NULL);
    struct irq_rec rec = { 0 };
    CHECK_OK(vtio_intr_register(in, 0, 0x60, irq_handler, &rec));
    uint8_t buf[256] = { 0 };
    uint64_t diff;
    CHECK_OK(vtio_dma_write(&f.port, 0x1000, buf, 100));
    CHECK_OK(vtio_dma_read(&f.port, 0x1000, buf, 50));
    CHECK_OK(vtio_dma_copy(&f.port, 0x3000, 0x1000, 30, NULL));
    CHECK_OK(vtio_dma_fill(&f.port, 0x4000, PATTERN, 10));
    CHECK_OK(vtio_dma_compare(&f.port, 0x1000, 0x2000, 20, &diff));
    CHECK_OK(vtio_dma_check(&f.port, 0x1000, 20, VTIO_DMA_READ));
    CHECK_ERR(vtio_dma_read(&f.port, 8 * MiB, buf, 4), -EFAULT);
    CHECK_OK(vtio_dma_msi(&f.port, VTIO_MSI_WINDOW_BASE, 0x60));
    struct vtio_dma_port_stats st = stats(&f.port);
    CHECK_EQ(st.writes, 3);             /* write, copy, fill */
    CHECK_EQ(st.bytes_written, 140);
    CHECK_EQ(st.reads, 4);              /* read, copy, compare x2 */
    CHECK_EQ(st.bytes_read, 50 + 30 + 40);
    CHECK_EQ(st.faults, 1);
    CHECK_EQ(st.master_aborts, 0);
    CHECK_EQ(st.msis, 1);
    CHECK_EQ(rec.calls, 1);
    vtio_intr_destroy(in);
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * Concurrency: device threads on one port while its configuration changes.
 */

struct ident {
    _Atomic uint64_t calls;
};

static int ident_translate(void *opaque, uint16_t rid, uint64_t iova, uint64_t len,
                           enum vtio_dma_access access, uint64_t *pa, uint64_t *span)
{
    struct ident *id = opaque;
    (void)rid, (void)access;
    atomic_fetch_add_explicit(&id->calls, 1, memory_order_relaxed);
    uint64_t in = iova & (VTIO_PAGE_SIZE - 1);
    *pa = iova;
    *span = VTIO_PAGE_SIZE - in < len ? VTIO_PAGE_SIZE - in : len;
    return 0;
}

static const struct vtio_dma_translator_ops ident_ops = { .translate = ident_translate };

/* ---- the access bracket: every call is one begin/end pair around all of
 * its translations (what an IOMMU needs to wait out DMA in flight). */
struct bracket {
    int depth, pairs, bad;       /* bad: a translation outside a bracket */
};

static int bracket_translate(void *opaque, uint16_t rid, uint64_t iova, uint64_t len,
                             enum vtio_dma_access access, uint64_t *pa, uint64_t *span)
{
    struct bracket *b = opaque;
    (void)rid, (void)access;
    if (b->depth != 1)
        b->bad++;
    *pa = iova;
    *span = len;
    return 0;
}
static void bracket_begin(void *opaque) { ((struct bracket *)opaque)->depth++; }
static void bracket_end(void *opaque)
{
    struct bracket *b = opaque;
    b->depth--;
    b->pairs++;
}
static const struct vtio_dma_translator_ops bracket_ops = {
    .translate = bracket_translate, .access_begin = bracket_begin, .access_end = bracket_end,
};

static void t_access_bracket(void)
{
    struct vtio_mem *m = vtio_mem_create();
    CHECK_OK(vtio_mem_add_ram(m, 0, 2 * MiB, "ram"));
    struct vtio_dma_port port;
    vtio_dma_port_init(&port, m, 0x10);
    vtio_dma_port_set_bus_master(&port, true);
    struct bracket b = { 0 };
    struct vtio_dma_translator xl = { &bracket_ops, &b };
    vtio_dma_port_set_translator(&port, &xl);
    uint8_t buf[64] = { 1 };
    uint64_t diff;
    CHECK_OK(vtio_dma_write(&port, 0x1000, buf, sizeof(buf)));
    CHECK_OK(vtio_dma_read(&port, 0x1000, buf, sizeof(buf)));
    CHECK_OK(vtio_dma_copy(&port, 0x2000, 0x1000, 64, NULL));
    CHECK_OK(vtio_dma_fill(&port, 0x3000, 7, 64));
    CHECK_OK(vtio_dma_compare(&port, 0x1000, 0x2000, 64, &diff));
    CHECK_OK(vtio_dma_check(&port, 0x1000, 64, VTIO_DMA_READ));
    CHECK_EQ(b.pairs, 6);
    CHECK_EQ(b.depth, 0);
    CHECK_EQ(b.bad, 0);
    vtio_dma_port_set_translator(&port, NULL);
    vtio_mem_destroy(m);
}

struct dev_thread {
    struct vtio_dma_port *port;
    int id;
    uint64_t deadline;
    uint64_t ok, eperm, other, torn;
};

static bool untorn(uint64_t v)
{
    return v == (v & 0xff) * 0x0101010101010101ull;
}

static void *dev_thread_fn(void *arg)
{
    struct dev_thread *t = arg;
    for (uint64_t i = 0;; i++) {
        if ((i & 255) == 0 && now_ns() > t->deadline)
            break;
        uint64_t pa = 0x1000 + (i & 3) * 8;
        uint64_t v = (uint8_t)(i * 2 + (uint64_t)t->id) * 0x0101010101010101ull, got = 0;
        int r = vtio_dma_write(t->port, pa, &v, 8);
        if (r == 0)
            r = vtio_dma_read(t->port, pa ^ 8, &got, 8);
        if (r == 0) {
            t->ok++;
            if (!untorn(got))
                t->torn++;
        } else if (r == -EPERM) {
            t->eperm++;
        } else {
            t->other++;
        }
    }
    return NULL;
}

static void t_concurrent_port(void)
{
    struct fx f;
    fx_init(&f, false);
    struct ident id = { 0 };
    const struct vtio_dma_translator xl = { &ident_ops, &id };
    struct dev_thread t[2];
    pthread_t th[2];
    uint64_t deadline = now_ns() + 300000000ull;
    for (int i = 0; i < 2; i++) {
        t[i] = (struct dev_thread){ .port = &f.port, .id = i, .deadline = deadline };
        CHECK_EQ(pthread_create(&th[i], NULL, dev_thread_fn, &t[i]), 0);
    }
    for (unsigned n = 0; now_ns() < deadline; n++) {
        vtio_dma_port_set_translator(&f.port, (n & 1) ? &xl : NULL);
        vtio_dma_port_set_bus_master(&f.port, (n % 5) != 0);
        struct timespec ts = { 0, 200000 };
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(t[i].other, 0);
        CHECK_EQ(t[i].torn, 0);
        CHECK_GT(t[i].ok, 0);
    }
    CHECK_GT(atomic_load(&id.calls), 0);
    struct vtio_dma_port_stats st = stats(&f.port);
    CHECK_GE(st.writes, t[0].ok + t[1].ok);
    CHECK_GE(st.reads, t[0].ok + t[1].ok);
    CHECK_GT(st.master_aborts, 0);
    fx_fini(&f);
}

/* A status word published with an aligned 8-byte fill or copy is single-copy
 * atomic like any aligned 8-byte DMA access: a CPU polling it never sees a
 * torn value (and ThreadSanitizer sees no race). */
struct status_ctx {
    struct vtio_dma_port *port;
    uint64_t deadline;
    _Atomic bool done;
    int err;
};

#define STATUS_PA 0x3000ull
#define SRC_PA 0x4000ull

static void *status_device(void *arg)
{
    struct status_ctx *c = arg;
    for (uint64_t i = 0; now_ns() < c->deadline; i++) {
        uint64_t v = (uint8_t)i * 0x0101010101010101ull;
        int r = (i & 1) ? vtio_dma_fill(c->port, STATUS_PA, v, 8)
                        : vtio_dma_copy(c->port, STATUS_PA, SRC_PA + 8 * (i & 6), 8, NULL);
        if (r < 0) {
            c->err = r;
            break;
        }
    }
    atomic_store(&c->done, true);
    return NULL;
}

static void t_small_fill_copy_atomic(void)
{
    struct fx f;
    fx_init(&f, false);
    for (uint64_t k = 0; k < 8; k++)
        vtio_mem_write64(f.mem, SRC_PA + 8 * k, (0x40 + k) * 0x0101010101010101ull);
    struct status_ctx c = { .port = &f.port, .deadline = now_ns() + 200000000ull };
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, status_device, &c), 0);
    uint64_t torn = 0, polls = 0;
    while (!atomic_load(&c.done)) {
        if (!untorn(vtio_mem_read64(f.mem, STATUS_PA)))
            torn++;
        polls++;
    }
    pthread_join(t, NULL);
    fx_fini(&f);
    CHECK_EQ(c.err, 0);
    CHECK_EQ(torn, 0);
    CHECK_GT(polls, 0);
}

static const struct vtio_test tests[] = {
    { "find_fault", "find_fault names the first refused byte and stops translating there",
      t_find_fault },
    { "access_bracket", "every call is one access_begin/end pair around all its translations",
      t_access_bracket },
    { "bme_off", "a fresh port has bus mastering off: every operation is -EPERM, moves nothing and counts a master abort", t_bme_off },
    { "bme_off_msi_window", "with bus mastering off, writes aimed at the MSI window are -EPERM too, whatever their size", t_bme_off_msi_window },
    { "read_write", "reads and writes of many lengths across a RAM region boundary move exactly the data, with counted stats", t_read_write },
    { "peer_mmio", "DMA into and out of device registers, and from RAM into them in one access, moves exactly the data", t_peer_mmio },
    { "copy", "copies across a RAM region boundary and between RAM and device registers match a model", t_copy },
    { "fill_phase", "fill puts pattern byte i % 8 at transfer byte i for unaligned starts and lengths crossing a region boundary, touching nothing else", t_fill_phase },
    { "fill_mmio", "fill into device registers, and from RAM into them, keeps the pattern phase", t_fill_mmio },
    { "compare", "compare reports the first differing offset (first, middle, last byte) or len, symmetrically, without writing", t_compare },
    { "check", "check accepts mapped ranges and refuses holes (-EFAULT) and wraps (-EINVAL) without accessing anything", t_check },
    { "hole_guard", "a range whose last byte is a hole is refused whole by read/write/fill/copy/compare: nothing moves, copy names the side", t_hole_guard },
    { "wrap", "every operation on a range that wraps past 2^64 is -EINVAL", t_wrap },
    { "wrap_msi_window", "a write whose wrapping range starts in the MSI window is -EINVAL like any wrap", t_wrap_msi_window },
    { "xlat_scatter", "behind a translator, data lands at the translated (scattered) addresses only, rid is the port's, and reads give it back", t_xlat_scatter },
    { "xlat_refuse", "a page refused with -EFAULT or -EACCES anywhere in the range fails the whole access with that error and writes nothing", t_xlat_refuse },
    { "xlat_copy_which", "copy reports which side the translator refused and writes nothing when it refuses", t_xlat_copy_which },
    { "xlat_bad_span", "a translator answering span 0 or span > len is a fault that moves nothing", t_xlat_bad_span },
    { "xlat_to_hole", "a translation into a physical hole (even half a page) fails the access whole", t_xlat_to_hole },
    { "xlat_fill_compare", "fill phase and compare offsets follow the transfer across scattered translated pages", t_xlat_fill_compare },
    { "msi_window_write", "an aligned 4-byte DMA write to the MSI window is an interrupt; 8-byte, unaligned, 2-byte, straddling, fill and copy writes are refused", t_msi_window_write },
    { "msi_translator", "an IOMMU msi op that handles the message keeps it from the sink; -ENOSYS or no op lets it through", t_msi_translator },
    { "stats", "each completed access, fault and interrupt message is counted once with its bytes", t_stats },
    { "small_fill_copy_atomic", "a status word written by an aligned 8-byte fill or copy is single-copy atomic for a polling CPU", t_small_fill_copy_atomic },
    { "concurrent_port", "two device threads using a port while bus mastering and the translator change get 0 or -EPERM, untorn data", t_concurrent_port },
};

VTIO_TEST_MAIN(tests)
