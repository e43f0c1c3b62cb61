/*
 * Tests of vtio_mem: the machine's physical address space (include/vtio/mem.h).
 *
 * Every test builds its own address space and destroys it; MMIO regions are
 * served by a small device model defined here that stores bytes and records
 * each callback, so tests can assert exactly how an access was dispatched.
 */
#define _GNU_SOURCE
#include <vtio/mem.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define MiB VTIO_MiB
#define GiB VTIO_GiB
#define ONES64 0xffffffffffffffffull

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------
 * A recording MMIO device: bytes[] is its register file; every callback is
 * logged (the first LOG_MAX of them) and checked against the header's
 * promise (size 1/2/4/8, off a multiple of size, inside the region).
 */

#define LOG_MAX 64

struct call {
    bool write;
    uint64_t off;
    unsigned size;
    uint64_t val;
};

struct logdev {
    uint8_t *bytes;
    uint64_t size;
    struct call log[LOG_MAX];
    size_t n;           /* callbacks so far (log keeps the first LOG_MAX) */
    size_t bad;         /* callbacks that broke the size/alignment promise */
};

static void logdev_record(struct logdev *d, bool write, uint64_t off, unsigned size,
                          uint64_t val)
{
    if (!(size == 1 || size == 2 || size == 4 || size == 8) || off % size ||
        off + size > d->size)
        d->bad++;
    if (d->n < LOG_MAX)
        d->log[d->n] = (struct call){ write, off, size, val };
    d->n++;
}

static uint64_t logdev_read(void *opaque, uint64_t off, unsigned size)
{
    struct logdev *d = opaque;
    uint64_t v = 0;
    if (off + size <= d->size && size <= 8)
        memcpy(&v, d->bytes + off, size);
    logdev_record(d, false, off, size, v);
    return v;
}

static void logdev_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct logdev *d = opaque;
    if (off + size <= d->size && size <= 8)
        memcpy(d->bytes + off, &val, size);
    logdev_record(d, true, off, size, val);
}

static const struct vtio_mmio_ops logdev_ops = { logdev_read, logdev_write };

static void logdev_init(struct logdev *d, uint64_t size)
{
    memset(d, 0, sizeof(*d));
    d->size = size;
    d->bytes = calloc(1, size);
    CHECK(d->bytes != NULL);
}

static void logdev_fini(struct logdev *d)
{
    free(d->bytes);
    d->bytes = NULL;
}

static void logdev_clear_log(struct logdev *d)
{
    d->n = 0;
    d->bad = 0;
}

/* Asserts the logged calls are exactly want[0..n) (op, off, size). */
static void check_calls(const struct logdev *d, bool write, const uint64_t (*want)[2], size_t n)
{
    CHECK_EQ(d->bad, 0);
    CHECK_EQ(d->n, n);
    for (size_t i = 0; i < n; i++) {
        CHECKF(d->log[i].write == write && d->log[i].off == want[i][0] &&
                   d->log[i].size == want[i][1],
               "call %zu: %s(off %#llx, size %u), want %s(off %#llx, size %u)", i,
               d->log[i].write ? "write" : "read", (unsigned long long)d->log[i].off,
               d->log[i].size, write ? "write" : "read", (unsigned long long)want[i][0],
               (unsigned)want[i][1]);
    }
}

static struct vtio_mem *mk(void)
{
    struct vtio_mem *m = vtio_mem_create();
    CHECK(m != NULL);
    return m;
}

static void count_ram(void *arg, uint64_t base, uint64_t size, const char *name)
{
    (void)base, (void)size, (void)name;
    (*(int *)arg)++;
}

static int n_ram_regions(struct vtio_mem *m)
{
    int n = 0;
    vtio_mem_for_each_ram(m, count_ram, &n);
    return n;
}

/* ------------------------------------------------------------------------
 * Adding regions.
 */

static void t_ram_add_einval(void)
{
    struct vtio_mem *m = mk();
    CHECK_ERR(vtio_mem_add_ram(m, 4096, 2 * MiB, "a"), -EINVAL);       /* base */
    CHECK(strlen(vtio_last_error()) > 0);
    CHECK_ERR(vtio_mem_add_ram(m, 1 * MiB, 2 * MiB, "a"), -EINVAL);    /* base 1 MiB */
    CHECK_ERR(vtio_mem_add_ram(m, 0, 4096, "a"), -EINVAL);             /* size */
    CHECK_ERR(vtio_mem_add_ram(m, 0, 3 * MiB, "a"), -EINVAL);          /* size 3 MiB */
    CHECK_ERR(vtio_mem_add_ram(m, 2 * MiB, 0, "a"), -EINVAL);          /* zero */
    CHECK_ERR(vtio_mem_add_ram(m, 0, 0, "a"), -EINVAL);
    /* [2^64 - 2 MiB, 2^64 + 2 MiB) wraps */
    CHECK_ERR(vtio_mem_add_ram(m, 0ull - 2 * MiB, 4 * MiB, "a"), -EINVAL);
    CHECK_ERR(vtio_mem_add_ram(m, 0ull - 2 * MiB, 0ull - 2 * MiB, "a"), -EINVAL);
    /* A failed call changes nothing. */
    CHECK_EQ(vtio_mem_ram_size(m), 0);
    CHECK_EQ(n_ram_regions(m), 0);
    CHECK(!vtio_mem_is_mapped(m, 0, 1));
    /* And the space still works. */
    CHECK_OK(vtio_mem_add_ram(m, 0, 2 * MiB, "ok"));
    CHECK_EQ(vtio_mem_ram_size(m), 2 * MiB);
    vtio_mem_destroy(m);
}

static void t_mmio_add_einval(void)
{
    struct vtio_mem *m = mk();
    struct logdev d;
    logdev_init(&d, 4096);
    const struct vtio_mmio_ops no_read = { NULL, logdev_write };
    const struct vtio_mmio_ops no_write = { logdev_read, NULL };
    CHECK_ERR(vtio_mem_add_mmio(m, 0x1000, 0, &logdev_ops, &d, "z"), -EINVAL);
    CHECK_ERR(vtio_mem_add_mmio(m, ONES64 - 0xff, 0x200, &logdev_ops, &d, "w"), -EINVAL);
    CHECK_ERR(vtio_mem_add_mmio(m, 0x1000, 0x1000, NULL, &d, "n"), -EINVAL);
    CHECK_ERR(vtio_mem_add_mmio(m, 0x1000, 0x1000, &no_read, &d, "r"), -EINVAL);
    CHECK_ERR(vtio_mem_add_mmio(m, 0x1000, 0x1000, &no_write, &d, "w"), -EINVAL);
    CHECK(!vtio_mem_is_mapped(m, 0x1000, 1));
    /* MMIO needs no alignment. */
    CHECK_OK(vtio_mem_add_mmio(m, 0x1003, 5, &logdev_ops, &d, "odd"));
    CHECK(vtio_mem_is_mapped(m, 0x1003, 5));
    CHECK(!vtio_mem_is_mapped(m, 0x1003, 6));
    CHECK(!vtio_mem_is_ram(m, 0x1003, 1));
    vtio_mem_destroy(m);
    logdev_fini(&d);
}

static void t_add_overlap(void)
{
    struct vtio_mem *m = mk();
    struct logdev d;
    logdev_init(&d, 4096);
    const uint64_t B = 1 * GiB;
    CHECK_OK(vtio_mem_add_ram(m, B, 4 * MiB, "ram"));
    vtio_mem_write64(m, B, 0x1122334455667788ull);
    CHECK_ERR(vtio_mem_add_ram(m, B, 4 * MiB, "same"), -EEXIST);
    CHECK(strlen(vtio_last_error()) > 0);
    CHECK_ERR(vtio_mem_add_ram(m, B + 2 * MiB, 4 * MiB, "tail"), -EEXIST);
    CHECK_ERR(vtio_mem_add_ram(m, B - 2 * MiB, 4 * MiB, "head"), -EEXIST);
    CHECK_ERR(vtio_mem_add_ram(m, B - 2 * MiB, 8 * MiB, "around"), -EEXIST);
    CHECK_ERR(vtio_mem_add_ram(m, B + 2 * MiB, 2 * MiB, "inside"), -EEXIST);
    /* MMIO against RAM, both ways. */
    CHECK_ERR(vtio_mem_add_mmio(m, B + 4 * MiB - 1, 2, &logdev_ops, &d, "m"), -EEXIST);
    CHECK_ERR(vtio_mem_add_mmio(m, B - 1, 2, &logdev_ops, &d, "m"), -EEXIST);
    CHECK_ERR(vtio_mem_add_mmio(m, B + 123, 1, &logdev_ops, &d, "m"), -EEXIST);
    const uint64_t M = 3 * GiB + 0x1000;
    CHECK_OK(vtio_mem_add_mmio(m, M, 0x1000, &logdev_ops, &d, "mmio"));
    CHECK_ERR(vtio_mem_add_ram(m, 3 * GiB, 2 * MiB, "over-mmio"), -EEXIST);
    CHECK_ERR(vtio_mem_add_mmio(m, M + 0xfff, 1, &logdev_ops, &d, "m2"), -EEXIST);
    CHECK_ERR(vtio_mem_add_mmio(m, M - 0x10, 0x11, &logdev_ops, &d, "m2"), -EEXIST);
    /* Nothing changed. */
    CHECK_EQ(vtio_mem_ram_size(m), 4 * MiB);
    CHECK_EQ(n_ram_regions(m), 1);
    CHECK_EQ(vtio_mem_read64(m, B), 0x1122334455667788ull);
    CHECK(!vtio_mem_is_mapped(m, 3 * GiB, 1));
    /* Exactly adjacent is fine. */
    CHECK_OK(vtio_mem_add_ram(m, B + 4 * MiB, 2 * MiB, "above"));
    CHECK_OK(vtio_mem_add_ram(m, B - 2 * MiB, 2 * MiB, "below"));
    CHECK_OK(vtio_mem_add_mmio(m, M + 0x1000, 0x10, &logdev_ops, &d, "m3"));
    CHECK_OK(vtio_mem_add_mmio(m, M - 0x10, 0x10, &logdev_ops, &d, "m4"));
    CHECK_EQ(vtio_mem_ram_size(m), 8 * MiB);
    CHECK(vtio_mem_is_ram(m, B - 2 * MiB, 8 * MiB));
    vtio_mem_destroy(m);
    logdev_fini(&d);
}

/* A region may end exactly at 2^64 (that does not wrap); overlap with it must
 * still be detected. */
static void t_overlap_at_top(void)
{
    struct vtio_mem *m = mk();
    struct logdev d;
    logdev_init(&d, 4096);
    const uint64_t top = 0ull - 0x1000;               /* [top, 2^64) */
    CHECK_OK(vtio_mem_add_mmio(m, top, 0x1000, &logdev_ops, &d, "top"));
    CHECK(vtio_mem_is_mapped(m, top, 0x1000));
    CHECK_ERR(vtio_mem_add_mmio(m, top + 0x800, 0x10, &logdev_ops, &d, "in-top"), -EEXIST);
    CHECK_ERR(vtio_mem_add_mmio(m, top - 0x10, 0x20, &logdev_ops, &d, "over-top"), -EEXIST);
    vtio_mem_destroy(m);

    /* The other way round: the new region is the one ending at 2^64. */
    m = mk();
    CHECK_OK(vtio_mem_add_mmio(m, top + 0x800, 0x10, &logdev_ops, &d, "small"));
    CHECK_ERR(vtio_mem_add_mmio(m, top, 0x1000, &logdev_ops, &d, "top"), -EEXIST);
    CHECK_ERR(vtio_mem_add_ram(m, 0ull - 2 * MiB, 2 * MiB, "top-ram"), -EEXIST);
    vtio_mem_destroy(m);
    logdev_fini(&d);
}

/* ------------------------------------------------------------------------
 * Sparse RAM.
 */

static void t_sparse_16g(void)
{
    struct vtio_mem *m = mk();
    const uint64_t base = 4 * GiB, size = 16 * GiB;
    uint64_t t0 = now_ns();
    CHECK_OK(vtio_mem_add_ram(m, base, size, "high"));
    uint64_t dt = now_ns() - t0;
    CHECKF(dt < 500000000ull, "adding 16 GiB took %llu ms", (unsigned long long)(dt / 1000000));
    CHECK_EQ(vtio_mem_ram_size(m), size);
    CHECK(vtio_mem_is_ram(m, base, size));
    CHECK(!vtio_mem_is_ram(m, base - 1, 2));
    CHECK(!vtio_mem_is_ram(m, base + size - 1, 2));
    uint64_t r0 = vtio_mem_ram_resident(m);
    CHECKF(r0 < 1 * MiB, "resident %llu bytes before any touch", (unsigned long long)r0);

    /* Reading untouched RAM gives zeros. */
    CHECK_EQ(vtio_mem_read64(m, base + 7 * GiB), 0);

    /* Touch 8 pages, each in its own 2 MiB block. */
    const int n = 8;
    for (int i = 0; i < n; i++)
        vtio_mem_write64(m, base + (uint64_t)i * (size / n) + 0x1230, 0xabc0 + (uint64_t)i);
    uint64_t r1 = vtio_mem_ram_resident(m);
    CHECKF(r1 >= r0 + n * VTIO_PAGE_SIZE && r1 <= r0 + n * VTIO_HUGE_SIZE,
           "resident grew from %llu to %llu after touching %d pages", (unsigned long long)r0,
           (unsigned long long)r1, n);
    for (int i = 0; i < n; i++)
        CHECK_EQ(vtio_mem_read64(m, base + (uint64_t)i * (size / n) + 0x1230), 0xabc0 + (uint64_t)i);
    /* The last byte of the region is RAM too. */
    vtio_mem_write8(m, base + size - 1, 0x5a);
    CHECK_EQ(vtio_mem_read8(m, base + size - 1), 0x5a);
    vtio_mem_destroy(m);
}

/* ------------------------------------------------------------------------
 * Reads and writes of many lengths and alignments, checked against a model
 * (a shadow copy of the whole space under test).
 */

static const size_t lens[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 15, 16, 17, 24, 31, 32, 33, 63, 64, 65, 100 };

/* One write (CPU or device side, by seed), then a read-back around it. */
static void model_step(struct vtio_mem *m, uint8_t *shadow, uint64_t total, uint64_t off,
                       size_t len, uint64_t seed)
{
    bool dev = (seed & 1) != 0;     /* alternate CPU-side and device-side */
    uint8_t data[70000], got[70000 + 64];
    CHECK(len <= sizeof(data));
    vtio_test_fill(data, len, seed);
    if (dev)
        CHECK_OK(vtio_mem_dev_write(m, off, data, len));
    else
        vtio_mem_write(m, off, data, len);
    memcpy(shadow + off, data, len);
    uint64_t lo = off >= 16 ? off - 16 : 0;
    uint64_t hi = off + len + 16 <= total ? off + len + 16 : total;
    if (dev)
        CHECK_OK(vtio_mem_dev_read(m, lo, got, hi - lo));
    else
        vtio_mem_read(m, lo, got, hi - lo);
    CHECKF(memcmp(got, shadow + lo, hi - lo) == 0,
           "%s write of %zu bytes at %#llx: read-back differs", dev ? "device" : "CPU", len,
           (unsigned long long)off);
}

static void model_run(struct vtio_mem *m, uint8_t *shadow, uint64_t total,
                      const uint64_t *bounds, size_t nb)
{
    uint64_t seed = 1;
    for (size_t b = 0; b < nb; b++) {
        for (uint64_t off = bounds[b] - 24; off <= bounds[b] + 24; off++)
            for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++)
                model_step(m, shadow, total, off, lens[l], seed++);
        /* Some long ones, starting at odd places, crossing the boundary. */
        static const size_t big[] = { 4095, 4096, 4097, 65536 + 3 };
        for (size_t l = 0; l < 4; l++)
            for (uint64_t back = 1; back < 4096; back += 1365)
                model_step(m, shadow, total, bounds[b] - back, big[l], seed++);
    }
    /* Same alignments, away from boundaries. */
    for (uint64_t off = 0x1000; off < 0x1010; off++)
        for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++)
            model_step(m, shadow, total, off, lens[l], seed++);
    /* Finally the whole space at once. */
    uint8_t *all = malloc(total);
    CHECK(all != NULL);
    vtio_mem_read(m, 0, all, total);
    int same = memcmp(all, shadow, total) == 0;
    free(all);
    CHECKF(same, "the whole space differs from the model");
}

static void t_rw_two_ram_regions(void)
{
    struct vtio_mem *m = mk();
    CHECK_OK(vtio_mem_add_ram(m, 2 * MiB, 2 * MiB, "hi"));   /* added out of order */
    CHECK_OK(vtio_mem_add_ram(m, 0, 2 * MiB, "lo"));
    CHECK(vtio_mem_is_ram(m, 0, 4 * MiB));
    uint8_t *shadow = calloc(1, 4 * MiB);
    CHECK(shadow != NULL);
    const uint64_t bounds[] = { 2 * MiB };
    model_run(m, shadow, 4 * MiB, bounds, 1);
    /* A single access covering both regions entirely. */
    uint8_t *buf = malloc(4 * MiB);
    CHECK(buf != NULL);
    vtio_test_fill(buf, 4 * MiB, 99);
    vtio_mem_write(m, 0, buf, 4 * MiB);
    memset(shadow, 0, 4 * MiB);
    CHECK_OK(vtio_mem_dev_read(m, 0, shadow, 4 * MiB));
    int same = memcmp(buf, shadow, 4 * MiB) == 0;
    free(buf);
    free(shadow);
    CHECK(same);
    vtio_mem_destroy(m);
}

static void t_rw_ram_mmio_ram(void)
{
    struct vtio_mem *m = mk();
    struct logdev d;
    logdev_init(&d, 2 * MiB);
    CHECK_OK(vtio_mem_add_ram(m, 0, 2 * MiB, "lo"));
    CHECK_OK(vtio_mem_add_mmio(m, 2 * MiB, 2 * MiB, &logdev_ops, &d, "dev"));
    CHECK_OK(vtio_mem_add_ram(m, 4 * MiB, 2 * MiB, "hi"));
    CHECK(vtio_mem_is_mapped(m, 0, 6 * MiB));
    CHECK(!vtio_mem_is_ram(m, 0, 6 * MiB));
    uint8_t *shadow = calloc(1, 6 * MiB);
    CHECK(shadow != NULL);
    const uint64_t bounds[] = { 2 * MiB, 4 * MiB };
    model_run(m, shadow, 6 * MiB, bounds, 2);
    CHECK_EQ(d.bad, 0);
    /* One access RAM -> all of the MMIO region -> RAM. */
    const uint64_t off = 2 * MiB - 5, len = 2 * MiB + 12;
    uint8_t *buf = malloc(len), *got = malloc(len);
    CHECK(buf && got);
    vtio_test_fill(buf, len, 7);
    CHECK_OK(vtio_mem_dev_write(m, off, buf, len));
    CHECK_OK(vtio_mem_dev_read(m, off, got, len));
    int same = memcmp(buf, got, len) == 0;
    int dev_same = memcmp(buf + 5, d.bytes, 2 * MiB) == 0;
    CHECK_EQ(d.bad, 0);
    free(buf);
    free(got);
    free(shadow);
    CHECK(same);
    CHECK(dev_same);
    vtio_mem_destroy(m);
    logdev_fini(&d);
}

/* ------------------------------------------------------------------------
 * Holes.
 */

static void t_cpu_hole(void)
{
    struct vtio_mem *m = mk();
    struct vtio_mem_stats st;
    CHECK_OK(vtio_mem_add_ram(m, 0, 2 * MiB, "ram"));
    vtio_mem_get_stats(m, &st);
    CHECK_EQ(st.cpu_hole_reads, 0);
    CHECK_EQ(st.cpu_hole_writes, 0);
    CHECK_EQ(st.dev_hole_accesses, 0);

    /* Entirely in a hole: all ones, one hole read each. */
    uint8_t buf[64], ones[64];
    memset(ones, 0xff, sizeof(ones));
    memset(buf, 0, sizeof(buf));
    vtio_mem_read(m, 16 * MiB, buf, sizeof(buf));
    CHECK_MEM_EQ(buf, ones, sizeof(buf));
    CHECK_EQ(vtio_mem_read8(m, 16 * MiB), 0xff);
    CHECK_EQ(vtio_mem_read16(m, 16 * MiB + 1), 0xffff);
    CHECK_EQ(vtio_mem_read32(m, 16 * MiB + 3), 0xffffffffu);
    CHECK_EQ(vtio_mem_read64(m, 0xdeadbeef000ull), ONES64);
    vtio_mem_get_stats(m, &st);
    CHECK_EQ(st.cpu_hole_reads, 5);
    CHECK_EQ(st.cpu_hole_writes, 0);

    /* Half RAM, half hole. */
    vtio_mem_write64(m, 2 * MiB - 8, 0x0807060504030201ull);
    uint8_t mix[8];
    vtio_mem_read(m, 2 * MiB - 4, mix, 8);
    const uint8_t want_mix[8] = { 5, 6, 7, 8, 0xff, 0xff, 0xff, 0xff };
    CHECK_MEM_EQ(mix, want_mix, 8);
    vtio_mem_get_stats(m, &st);
    CHECK_EQ(st.cpu_hole_reads, 6);

    /* Writes: the RAM part lands, the hole part is dropped and counted. */
    const uint8_t w[8] = { 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8 };
    vtio_mem_write(m, 2 * MiB - 4, w, 8);
    vtio_mem_write32(m, 32 * MiB, 0x12345678);
    vtio_mem_write8(m, 32 * MiB + 9, 1);
    vtio_mem_get_stats(m, &st);
    CHECK_EQ(st.cpu_hole_writes, 3);
    CHECK_EQ(vtio_mem_read32(m, 2 * MiB - 4), 0xa4a3a2a1u);
    CHECK_EQ(vtio_mem_read32(m, 32 * MiB), 0xffffffffu);
    /* The dropped bytes went nowhere: RAM added there later is zero. */
    CHECK_OK(vtio_mem_add_ram(m, 2 * MiB, 2 * MiB, "later"));
    CHECK_EQ(vtio_mem_read32(m, 2 * MiB), 0);
    vtio_mem_get_stats(m, &st);
    CHECK_EQ(st.dev_hole_accesses, 0);
    /* Zero-length accesses touch nothing and count nothing. */
    vtio_mem_read(m, 64 * MiB, buf, 0);
    vtio_mem_write(m, 64 * MiB, buf, 0);
    struct vtio_mem_stats st2;
    vtio_mem_get_stats(m, &st2);
    CHECK_EQ(st2.cpu_hole_reads, st.cpu_hole_reads);
    CHECK_EQ(st2.cpu_hole_writes, st.cpu_hole_writes);
    vtio_mem_destroy(m);
}

static void t_cpu_wrap(void)
{
    /* A CPU access running past 2^64 reads ones for the part beyond. */
    struct vtio_mem *m = mk();
    struct logdev d;
    logdev_init(&d, 16);
    memset(d.bytes, 0x11, 16);
    CHECK_OK(vtio_mem_add_mmio(m, 0ull - 16, 16, &logdev_ops, &d, "top"));
    uint8_t buf[24];
    vtio_mem_read(m, 0ull - 8, buf, sizeof(buf));
    for (int i = 0; i < 8; i++)
        CHECK_EQ(buf[i], 0x11);
    for (int i = 8; i < 24; i++)
        CHECK_EQ(buf[i], 0xff);
    const uint8_t w[16] = { 0 };
    vtio_mem_write(m, 0ull - 4, w, sizeof(w));   /* must not wrap to address 0 */
    CHECK_EQ(d.bad, 0);
    CHECK_EQ(vtio_mem_read32(m, 0ull - 4), 0);
    CHECK_EQ(vtio_mem_read32(m, 0ull - 8), 0x11111111u);
    vtio_mem_destroy(m);
    logdev_fini(&d);
}

static void t_dev_hole(void)
{
    struct vtio_mem *m = mk();
    struct logdev d;
    logdev_init(&d, 64);
    struct vtio_mem_stats st;
    CHECK_OK(vtio_mem_add_ram(m, 0, 2 * MiB, "ram"));
    CHECK_OK(vtio_mem_add_mmio(m, 8 * MiB, 64, &logdev_ops, &d, "dev"));
    uint8_t pat[64], buf[64], zero[64] = { 0 }, sentinel[64];
    vtio_test_fill(pat, sizeof(pat), 5);
    memset(sentinel, 0xcd, sizeof(sentinel));

    /* Only the last byte is a hole. */
    CHECK_ERR(vtio_mem_dev_write(m, 2 * MiB - 15, pat, 16), -EFAULT);
    vtio_mem_read(m, 2 * MiB - 64, buf, 64);
    CHECK_MEM_EQ(buf, zero, 64);
    memcpy(buf, sentinel, 64);
    CHECK_ERR(vtio_mem_dev_read(m, 2 * MiB - 15, buf, 16), -EFAULT);
    CHECK_MEM_EQ(buf, sentinel, 64);
    /* Only the first byte is a hole. */
    CHECK_ERR(vtio_mem_dev_write(m, 8 * MiB - 1, pat, 2), -EFAULT);
    /* MMIO followed by a hole: no callback at all. */
    CHECK_ERR(vtio_mem_dev_write(m, 8 * MiB, pat, 65), -EFAULT);
    CHECK_ERR(vtio_mem_dev_read(m, 8 * MiB + 60, buf, 5), -EFAULT);
    CHECK_EQ(d.n, 0);
    CHECK_MEM_EQ(buf, sentinel, 64);
    /* Entirely a hole. */
    CHECK_ERR(vtio_mem_dev_read(m, 3 * MiB, buf, 8), -EFAULT);
    CHECK_MEM_EQ(buf, sentinel, 64);
    vtio_mem_get_stats(m, &st);
    CHECK_EQ(st.dev_hole_accesses, 6);
    CHECK_EQ(st.cpu_hole_reads, 0);
    CHECK_EQ(st.cpu_hole_writes, 0);

    /* A wrapping range is -EINVAL, not a hole. */
    CHECK_ERR(vtio_mem_dev_read(m, ONES64 - 3, buf, 8), -EINVAL);
    CHECK_ERR(vtio_mem_dev_write(m, ONES64, pat, 2), -EINVAL);
    CHECK_MEM_EQ(buf, sentinel, 64);

    /* The good cases still work, up to the very last byte. */
    CHECK_OK(vtio_mem_dev_write(m, 2 * MiB - 16, pat, 16));
    CHECK_OK(vtio_mem_dev_read(m, 2 * MiB - 16, buf, 16));
    CHECK_MEM_EQ(buf, pat, 16);
    CHECK_OK(vtio_mem_dev_write(m, 8 * MiB, pat, 64));
    CHECK_MEM_EQ(d.bytes, pat, 64);
    CHECK_OK(vtio_mem_dev_read(m, 0, buf, 0));
    vtio_mem_destroy(m);
    logdev_fini(&d);
}

/* ------------------------------------------------------------------------
 * MMIO dispatch.
 */

static void t_mmio_split(void)
{
    struct vtio_mem *m = mk();
    struct logdev d;
    logdev_init(&d, 0x1000);
    const uint64_t B = 0xfe000000ull;
    CHECK_OK(vtio_mem_add_mmio(m, B, 0x1000, &logdev_ops, &d, "regs"));
    uint8_t data[16];
    for (int i = 0; i < 16; i++)
        data[i] = (uint8_t)(0x10 + i);

    /* 13 bytes at offset 1: 1 + 2 + 4 + 4 + 2. */
    vtio_mem_write(m, B + 1, data, 13);
    static const uint64_t w1[][2] = { { 1, 1 }, { 2, 2 }, { 4, 4 }, { 8, 4 }, { 12, 2 } };
    check_calls(&d, true, w1, 5);
    CHECK_EQ(d.log[0].val, 0x10);
    CHECK_EQ(d.log[1].val, 0x1211);
    CHECK_EQ(d.log[2].val, 0x16151413);
    CHECK_EQ(d.log[3].val, 0x1a191817);
    CHECK_EQ(d.log[4].val, 0x1c1b);
    CHECK_EQ(d.bytes[0], 0);
    CHECK_MEM_EQ(d.bytes + 1, data, 13);
    CHECK_EQ(d.bytes[14], 0);

    logdev_clear_log(&d);
    uint8_t got[16];
    memset(got, 0, sizeof(got));
    vtio_mem_read(m, B + 1, got, 13);
    check_calls(&d, false, w1, 5);
    CHECK_MEM_EQ(got, data, 13);

    /* 13 bytes at offset 3: 1 + 4 + 8. */
    logdev_clear_log(&d);
    vtio_mem_read(m, B + 3, got, 13);
    static const uint64_t w2[][2] = { { 3, 1 }, { 4, 4 }, { 8, 8 } };
    check_calls(&d, false, w2, 3);

    /* 13 bytes at offset 0x17 (odd, past 8): 1 + 8 + 4. */
    logdev_clear_log(&d);
    vtio_mem_write(m, B + 0x17, data, 13);
    static const uint64_t w3[][2] = { { 0x17, 1 }, { 0x18, 8 }, { 0x20, 4 } };
    check_calls(&d, true, w3, 3);

    /* Aligned 16 bytes: two 8-byte accesses; 2 bytes at 7: two 1-byte. */
    logdev_clear_log(&d);
    vtio_mem_read(m, B + 0x40, got, 16);
    static const uint64_t w4[][2] = { { 0x40, 8 }, { 0x48, 8 } };
    check_calls(&d, false, w4, 2);
    logdev_clear_log(&d);
    vtio_mem_write(m, B + 7, data, 2);
    static const uint64_t w5[][2] = { { 7, 1 }, { 8, 1 } };
    check_calls(&d, true, w5, 2);

    /* Device-side accesses dispatch the same way. */
    logdev_clear_log(&d);
    CHECK_OK(vtio_mem_dev_write(m, B + 1, data, 13));
    check_calls(&d, true, w1, 5);
    vtio_mem_destroy(m);
    logdev_fini(&d);
}

/* An MMIO region whose base is not 8-aligned: offsets stay region-relative. */
static void t_mmio_odd_base(void)
{
    struct vtio_mem *m = mk();
    struct logdev d;
    logdev_init(&d, 16);
    CHECK_OK(vtio_mem_add_mmio(m, 0x10003, 16, &logdev_ops, &d, "odd"));
    uint8_t data[16];
    vtio_test_fill(data, sizeof(data), 3);
    vtio_mem_write(m, 0x10003, data, 16);
    static const uint64_t w[][2] = { { 0, 8 }, { 8, 8 } };
    check_calls(&d, true, w, 2);
    CHECK_MEM_EQ(d.bytes, data, 16);
    vtio_mem_destroy(m);
    logdev_fini(&d);
}

static void t_typed_accessors(void)
{
    struct vtio_mem *m = mk();
    struct logdev d;
    logdev_init(&d, 0x100);
    CHECK_OK(vtio_mem_add_ram(m, 0, 2 * MiB, "ram"));
    CHECK_OK(vtio_mem_add_mmio(m, 0xfed00000ull, 0x100, &logdev_ops, &d, "regs"));

    /* RAM: values and their little-endian layout, at several alignments. */
    for (uint64_t a = 0x100; a < 0x110; a++) {
        vtio_mem_set(m, 0x100, 0, 64);
        vtio_mem_write8(m, a, 0xa5);
        CHECK_EQ(vtio_mem_read8(m, a), 0xa5);
        vtio_mem_write16(m, a + 8, 0xbeef);
        CHECK_EQ(vtio_mem_read16(m, a + 8), 0xbeef);
        vtio_mem_write32(m, a + 16, 0xdeadbeefu);
        CHECK_EQ(vtio_mem_read32(m, a + 16), 0xdeadbeefu);
        vtio_mem_write64(m, a + 24, 0x0123456789abcdefull);
        CHECK_EQ(vtio_mem_read64(m, a + 24), 0x0123456789abcdefull);
        uint8_t b[8];
        vtio_mem_read(m, a + 24, b, 8);
        const uint8_t le[8] = { 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01 };
        CHECK_MEM_EQ(b, le, 8);
        vtio_mem_read(m, a + 8, b, 2);
        CHECK_EQ(b[0], 0xef);
        CHECK_EQ(b[1], 0xbe);
        CHECK_EQ(vtio_mem_read8(m, a + 1), 0);   /* write8 wrote one byte */
    }

    /* MMIO: one callback per aligned typed access, with the value. */
    const uint64_t R = 0xfed00000ull;
    vtio_mem_write32(m, R + 4, 0xcafef00du);
    static const uint64_t c1[][2] = { { 4, 4 } };
    check_calls(&d, true, c1, 1);
    CHECK_EQ(d.log[0].val, 0xcafef00du);
    logdev_clear_log(&d);
    CHECK_EQ(vtio_mem_read32(m, R + 4), 0xcafef00du);
    check_calls(&d, false, c1, 1);
    logdev_clear_log(&d);
    vtio_mem_write64(m, R + 8, 0x1122334455667788ull);
    static const uint64_t c2[][2] = { { 8, 8 } };
    check_calls(&d, true, c2, 1);
    CHECK_EQ(d.log[0].val, 0x1122334455667788ull);
    logdev_clear_log(&d);
    CHECK_EQ(vtio_mem_read64(m, R + 8), 0x1122334455667788ull);
    CHECK_EQ(vtio_mem_read16(m, R + 10), 0x5566);
    CHECK_EQ(vtio_mem_read8(m, R + 15), 0x11);
    static const uint64_t c3[][2] = { { 8, 8 }, { 10, 2 }, { 15, 1 } };
    check_calls(&d, false, c3, 3);
    logdev_clear_log(&d);
    vtio_mem_write16(m, R + 0x20, 0x7788);
    vtio_mem_write8(m, R + 0x23, 0x99);
    static const uint64_t c4[][2] = { { 0x20, 2 }, { 0x23, 1 } };
    check_calls(&d, true, c4, 2);
    /* An unaligned 32-bit read of a register is split, and reassembled. */
    logdev_clear_log(&d);
    CHECK_EQ(vtio_mem_read32(m, R + 10), 0x33445566u);
    static const uint64_t c5[][2] = { { 10, 2 }, { 12, 2 } };
    check_calls(&d, false, c5, 2);
    vtio_mem_destroy(m);
    logdev_fini(&d);
}

static void t_mem_set(void)
{
    struct vtio_mem *m = mk();
    struct logdev d;
    logdev_init(&d, 0x2000);
    CHECK_OK(vtio_mem_add_ram(m, 0, 2 * MiB, "lo"));
    CHECK_OK(vtio_mem_add_ram(m, 2 * MiB, 2 * MiB, "hi"));
    CHECK_OK(vtio_mem_add_mmio(m, 8 * MiB, 0x2000, &logdev_ops, &d, "dev"));

    /* Across the RAM boundary, unaligned. */
    vtio_mem_set(m, 2 * MiB - 4097, 0x5c, 8195);
    uint8_t *buf = malloc(16384);
    CHECK(buf != NULL);
    vtio_mem_read(m, 2 * MiB - 8192, buf, 16384);
    for (size_t i = 0; i < 16384; i++) {
        uint64_t pa = 2 * MiB - 8192 + i;
        uint8_t want = (pa >= 2 * MiB - 4097 && pa < 2 * MiB - 4097 + 8195) ? 0x5c : 0;
        CHECKF(buf[i] == want, "byte at %#llx is %#x, want %#x", (unsigned long long)pa,
               buf[i], want);
    }
    /* Zero a page. */
    vtio_mem_set(m, 2 * MiB - 4096, 0, 4096);
    CHECK_EQ(vtio_mem_read8(m, 2 * MiB - 4097), 0x5c);
    CHECK_EQ(vtio_mem_read64(m, 2 * MiB - 4096), 0);
    CHECK_EQ(vtio_mem_read64(m, 2 * MiB - 8), 0);
    CHECK_EQ(vtio_mem_read8(m, 2 * MiB), 0x5c);
    /* len 0 does nothing. */
    vtio_mem_set(m, 0, 0x77, 0);
    CHECK_EQ(vtio_mem_read8(m, 0), 0);

    /* MMIO: dispatched as aligned pieces, every byte set. */
    vtio_mem_set(m, 8 * MiB + 3, 0xe7, 0x1ffa);
    CHECK_EQ(d.bad, 0);
    CHECK(d.n > 0);
    for (size_t i = 0; i < 0x2000; i++)
        CHECKF(d.bytes[i] == ((i >= 3 && i < 0x1ffd) ? 0xe7 : 0), "MMIO byte %#zx is %#x", i,
               d.bytes[i]);
    /* Holes: dropped and counted. */
    struct vtio_mem_stats st0, st1;
    vtio_mem_get_stats(m, &st0);
    vtio_mem_set(m, 4 * MiB - 8, 0x33, 16);
    vtio_mem_get_stats(m, &st1);
    CHECK_GT(st1.cpu_hole_writes, st0.cpu_hole_writes);
    CHECK_EQ(vtio_mem_read64(m, 4 * MiB - 8), 0x3333333333333333ull);
    free(buf);
    vtio_mem_destroy(m);
    logdev_fini(&d);
}

/* ------------------------------------------------------------------------
 * Removing and re-adding MMIO.
 */

static void t_remove_mmio(void)
{
    struct vtio_mem *m = mk();
    struct logdev d1, d2;
    logdev_init(&d1, 0x100);
    logdev_init(&d2, 0x200);
    memset(d1.bytes, 0x11, 0x100);
    memset(d2.bytes, 0x22, 0x200);
    CHECK_OK(vtio_mem_add_ram(m, 0, 2 * MiB, "ram"));
    const uint64_t B = 0xc0000000ull;
    CHECK_OK(vtio_mem_add_mmio(m, B, 0x100, &logdev_ops, &d1, "bar0"));

    CHECK_ERR(vtio_mem_remove_mmio(m, 0), -ENOENT);            /* RAM */
    CHECK(strlen(vtio_last_error()) > 0);
    CHECK_ERR(vtio_mem_remove_mmio(m, 0x1000), -ENOENT);       /* inside RAM */
    CHECK_ERR(vtio_mem_remove_mmio(m, B + 8), -ENOENT);        /* not the start */
    CHECK_ERR(vtio_mem_remove_mmio(m, B + 0x100), -ENOENT);    /* hole */
    CHECK_ERR(vtio_mem_remove_mmio(m, 0xdead0000ull), -ENOENT);
    CHECK_EQ(vtio_mem_ram_size(m), 2 * MiB);                   /* RAM stays */
    CHECK_EQ(vtio_mem_read32(m, B), 0x11111111u);

    CHECK_OK(vtio_mem_remove_mmio(m, B));
    CHECK(!vtio_mem_is_mapped(m, B, 1));
    logdev_clear_log(&d1);
    CHECK_EQ(vtio_mem_read32(m, B), 0xffffffffu);
    vtio_mem_write32(m, B, 0);
    CHECK_EQ(d1.n, 0);                                         /* no callback */
    uint32_t v;
    CHECK_ERR(vtio_mem_dev_read(m, B, &v, 4), -EFAULT);
    CHECK_ERR(vtio_mem_remove_mmio(m, B), -ENOENT);            /* already gone */

    /* Re-add at the same base, with another device and size. */
    CHECK_OK(vtio_mem_add_mmio(m, B, 0x200, &logdev_ops, &d2, "bar0-again"));
    CHECK_EQ(vtio_mem_read32(m, B + 0x180), 0x22222222u);
    CHECK_EQ(d1.n, 0);
    CHECK_EQ(d2.n, 1);
    CHECK_OK(vtio_mem_remove_mmio(m, B));
    /* Where MMIO was, RAM may go. */
    CHECK_OK(vtio_mem_add_ram(m, B, 2 * MiB, "ram2"));
    CHECK_EQ(vtio_mem_read32(m, B), 0);
    CHECK_ERR(vtio_mem_remove_mmio(m, B), -ENOENT);
    /* Many add/remove cycles. */
    for (int i = 0; i < 200; i++) {
        CHECK_OK(vtio_mem_add_mmio(m, 0xd0000000ull + (uint64_t)(i % 7) * 0x1000, 0x100,
                                   &logdev_ops, &d1, "cyc"));
        CHECK_EQ(vtio_mem_read8(m, 0xd0000000ull + (uint64_t)(i % 7) * 0x1000), 0x11);
        CHECK_OK(vtio_mem_remove_mmio(m, 0xd0000000ull + (uint64_t)(i % 7) * 0x1000));
    }
    vtio_mem_destroy(m);
    logdev_fini(&d1);
    logdev_fini(&d2);
}

/* ------------------------------------------------------------------------
 * ram_span, ram_fd, for_each_ram.
 */

static void t_ram_span(void)
{
    struct vtio_mem *m = mk();
    struct logdev d;
    logdev_init(&d, 0x100);
    CHECK_OK(vtio_mem_add_ram(m, 0, 2 * MiB, "lo"));
    CHECK_OK(vtio_mem_add_ram(m, 2 * MiB, 2 * MiB, "hi"));
    CHECK_OK(vtio_mem_add_mmio(m, 4 * MiB, 0x100, &logdev_ops, &d, "dev"));
    void *host = NULL;
    uint64_t span = 0;
    CHECK_OK(vtio_mem_ram_span(m, 0x100, 50, &host, &span));
    CHECK_EQ(span, 50);
    CHECK(host != NULL);
    /* The host address is the RAM: writes through it are visible. */
    memcpy(host, "vtio-span", 9);
    char s[10] = { 0 };
    vtio_mem_read(m, 0x100, s, 9);
    CHECK(strcmp(s, "vtio-span") == 0);
    /* Clipped at the region end, even where the next region is RAM. */
    CHECK_OK(vtio_mem_ram_span(m, 2 * MiB - 100, 1000, &host, &span));
    CHECK_EQ(span, 100);
    memset(host, 0x6b, 100);
    CHECK_EQ(vtio_mem_read8(m, 2 * MiB - 1), 0x6b);
    CHECK_EQ(vtio_mem_read8(m, 2 * MiB - 101), 0);
    CHECK_EQ(vtio_mem_read8(m, 2 * MiB), 0);
    CHECK_OK(vtio_mem_ram_span(m, 2 * MiB - 100, 50, &host, &span));
    CHECK_EQ(span, 50);
    CHECK_OK(vtio_mem_ram_span(m, 4 * MiB - 1, ONES64, &host, &span));
    CHECK_EQ(span, 1);
    CHECK_OK(vtio_mem_ram_span(m, 2 * MiB, 8 * MiB, &host, &span));
    CHECK_EQ(span, 2 * MiB);
    CHECK_EQ(((uintptr_t)host) % VTIO_HUGE_SIZE, 0);   /* huge-page-able mapping */
    /* MMIO and holes are not RAM. */
    CHECK_ERR(vtio_mem_ram_span(m, 4 * MiB, 8, &host, &span), -EFAULT);
    CHECK_ERR(vtio_mem_ram_span(m, 4 * MiB + 0x100, 8, &host, &span), -EFAULT);
    CHECK_ERR(vtio_mem_ram_span(m, ONES64, 1, &host, &span), -EFAULT);
    vtio_mem_destroy(m);
    logdev_fini(&d);
}

static void t_ram_fd(void)
{
    struct vtio_mem *m = mk();
    struct logdev d;
    logdev_init(&d, 0x100);
    CHECK_OK(vtio_mem_add_ram(m, 0, 2 * MiB, "lo"));
    CHECK_OK(vtio_mem_add_ram(m, 1 * GiB, 4 * MiB, "hi"));
    CHECK_OK(vtio_mem_add_mmio(m, 2 * GiB, 0x100, &logdev_ops, &d, "dev"));
    uint8_t data[8192];
    vtio_test_fill(data, sizeof(data), 11);
    const uint64_t pa = 1 * GiB + 2 * MiB + 0x3000 + 17;
    vtio_mem_write(m, pa, data, sizeof(data));

    int fd = -1, fd_lo = -1;
    uint64_t off = 0;
    CHECK_OK(vtio_mem_ram_fd(m, pa, &fd, &off));
    CHECK(fd >= 0);
    CHECK_EQ(off, 2 * MiB + 0x3000 + 17);
    uint64_t off_lo = 1;
    CHECK_OK(vtio_mem_ram_fd(m, 0x10, &fd_lo, &off_lo));
    CHECK_NE(fd_lo, fd);
    CHECK_EQ(off_lo, 0x10);

    /* Map the same pages the way another process would. */
    uint64_t page_off = off & ~(VTIO_PAGE_SIZE - 1);
    size_t maplen = 4 * VTIO_PAGE_SIZE;
    uint8_t *p = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)page_off);
    CHECK(p != MAP_FAILED);
    CHECK_MEM_EQ(p + (off - page_off), data, sizeof(data));
    /* And the other way: a store through the fd mapping is machine RAM. */
    memcpy(p + (off - page_off), "through-fd", 10);
    char s[11] = { 0 };
    vtio_mem_read(m, pa, s, 10);
    munmap(p, maplen);
    CHECK(strcmp(s, "through-fd") == 0);

    CHECK_ERR(vtio_mem_ram_fd(m, 2 * GiB, &fd, &off), -EFAULT);       /* MMIO */
    CHECK_ERR(vtio_mem_ram_fd(m, 1 * GiB - 1, &fd, &off), -EFAULT);   /* hole */
    CHECK_ERR(vtio_mem_ram_fd(m, 1 * GiB + 4 * MiB, &fd, &off), -EFAULT);
    vtio_mem_destroy(m);
    logdev_fini(&d);
}

struct visit {
    int n;
    uint64_t base[8], size[8];
    char name[8][32];
};

static void record_ram(void *arg, uint64_t base, uint64_t size, const char *name)
{
    struct visit *v = arg;
    if (v->n < 8) {
        v->base[v->n] = base;
        v->size[v->n] = size;
        snprintf(v->name[v->n], sizeof(v->name[0]), "%s", name);
    }
    v->n++;
}

static void t_for_each_ram(void)
{
    struct vtio_mem *m = mk();
    struct logdev d;
    logdev_init(&d, 0x100);
    CHECK_OK(vtio_mem_add_ram(m, 8 * GiB, 2 * MiB, "c"));
    CHECK_OK(vtio_mem_add_mmio(m, 3 * GiB, 0x100, &logdev_ops, &d, "mmio"));
    CHECK_OK(vtio_mem_add_ram(m, 0, 2 * MiB, "a"));
    CHECK_OK(vtio_mem_add_ram(m, 4 * GiB, 6 * MiB, "b2"));
    CHECK_OK(vtio_mem_add_ram(m, 2 * MiB, 4 * MiB, "a2"));
    CHECK_OK(vtio_mem_add_mmio(m, 0xfee00000ull, 0x100, &logdev_ops, &d, "mmio2"));
    struct visit v = { 0 };
    vtio_mem_for_each_ram(m, record_ram, &v);
    CHECK_EQ(v.n, 4);
    const uint64_t wb[] = { 0, 2 * MiB, 4 * GiB, 8 * GiB };
    const uint64_t ws[] = { 2 * MiB, 4 * MiB, 6 * MiB, 2 * MiB };
    const char *wn[] = { "a", "a2", "b2", "c" };
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(v.base[i], wb[i]);
        CHECK_EQ(v.size[i], ws[i]);
        CHECKF(strcmp(v.name[i], wn[i]) == 0, "region %d is named %s, want %s", i, v.name[i],
               wn[i]);
    }
    CHECK_EQ(vtio_mem_ram_size(m), 14 * MiB);
    /* An empty space visits nothing. */
    struct vtio_mem *e = mk();
    struct visit ve = { 0 };
    vtio_mem_for_each_ram(e, record_ram, &ve);
    CHECK_EQ(ve.n, 0);
    CHECK_EQ(vtio_mem_ram_size(e), 0);
    CHECK_EQ(vtio_mem_ram_resident(e), 0);
    vtio_mem_destroy(e);
    vtio_mem_destroy(m);
    logdev_fini(&d);
}

static void t_is_ram_mapped(void)
{
    struct vtio_mem *m = mk();
    struct logdev d;
    logdev_init(&d, 0x100);
    CHECK_OK(vtio_mem_add_ram(m, 0, 2 * MiB, "a"));
    CHECK_OK(vtio_mem_add_mmio(m, 2 * MiB, 0x100, &logdev_ops, &d, "m"));
    CHECK(vtio_mem_is_ram(m, 0, 2 * MiB));
    CHECK(!vtio_mem_is_ram(m, 0, 2 * MiB + 1));
    CHECK(vtio_mem_is_mapped(m, 0, 2 * MiB + 0x100));
    CHECK(!vtio_mem_is_mapped(m, 0, 2 * MiB + 0x101));
    CHECK(!vtio_mem_is_mapped(m, 2 * MiB + 0x100, 1));
    CHECK(vtio_mem_is_mapped(m, 2 * MiB + 0xff, 1));
    CHECK(!vtio_mem_is_ram(m, 2 * MiB, 1));
    CHECK(!vtio_mem_is_mapped(m, ONES64, 2));     /* wraps */
    vtio_mem_destroy(m);
    logdev_fini(&d);
}

/* ------------------------------------------------------------------------
 * Concurrency.
 */

#define DEVVAL 0x5ec0de5ec0de5ec0ull
#define RAMVAL 0x0123456789abcdefull
#define FLAP_A (2 * MiB)                /* right after RAM */
#define FLAP_B 0x10000000ull
#define STABLE 0x20000000ull

static uint64_t const_read(void *opaque, uint64_t off, unsigned size)
{
    atomic_fetch_add_explicit((_Atomic uint64_t *)opaque, 1, memory_order_relaxed);
    uint64_t v = DEVVAL;
    uint64_t r = 0;
    memcpy(&r, (uint8_t *)&v + (off & 7), size);
    return r;
}

static void const_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    (void)off, (void)val, (void)size;
    atomic_fetch_add_explicit((_Atomic uint64_t *)opaque, 1, memory_order_relaxed);
}

static const struct vtio_mmio_ops const_ops = { const_read, const_write };

struct topo_ctx {
    struct vtio_mem *mem;
    _Atomic bool stop;
    _Atomic uint64_t calls;
    _Atomic uint64_t bad, reads, ones;
    _Atomic uint64_t dev_ok, dev_fault, dev_ones;
    _Atomic uint64_t cycles;
    int writer_err;
};

static void *topo_reader(void *arg)
{
    struct topo_ctx *c = arg;
    uint64_t n = 0;
    while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
        uint64_t v = vtio_mem_read64(c->mem, FLAP_A);
        if (v != DEVVAL && v != ONES64)
            atomic_fetch_add(&c->bad, 1);
        if (v == ONES64)
            atomic_fetch_add_explicit(&c->ones, 1, memory_order_relaxed);
        /* RAM then the flapping region, in one access. */
        uint64_t pair[2];
        vtio_mem_read(c->mem, FLAP_A - 8, pair, 16);
        if (pair[0] != RAMVAL || (pair[1] != DEVVAL && pair[1] != ONES64))
            atomic_fetch_add(&c->bad, 1);
        v = vtio_mem_read64(c->mem, FLAP_B + 8);
        if (v != DEVVAL && v != ONES64)
            atomic_fetch_add(&c->bad, 1);
        if (vtio_mem_read64(c->mem, STABLE) != DEVVAL)
            atomic_fetch_add(&c->bad, 1);
        if (vtio_mem_read64(c->mem, 0x1000) != RAMVAL)
            atomic_fetch_add(&c->bad, 1);
        vtio_mem_write64(c->mem, FLAP_A, 1);       /* goes to the device or is dropped */
        n++;
    }
    atomic_fetch_add(&c->reads, n);
    return NULL;
}

/* Device side only: every access either reaches the device whole, or fails
 * with -EFAULT having moved nothing; it never "succeeds" into a hole. */
static void *topo_dev_reader(void *arg)
{
    struct topo_ctx *c = arg;
    uint64_t n = 0;
    while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
        uint64_t dv = 0x77;
        int r = vtio_mem_dev_read(c->mem, FLAP_B, &dv, 8);
        if (r == 0 && dv == DEVVAL)
            atomic_fetch_add_explicit(&c->dev_ok, 1, memory_order_relaxed);
        else if (r == -EFAULT && dv == 0x77)
            atomic_fetch_add_explicit(&c->dev_fault, 1, memory_order_relaxed);
        else if (r == 0 && dv == ONES64)
            atomic_fetch_add_explicit(&c->dev_ones, 1, memory_order_relaxed);
        else
            atomic_fetch_add(&c->bad, 1);
        if ((n & 15) == 0) {
            uint64_t w = 0x42;
            (void)vtio_mem_dev_write(c->mem, FLAP_B, &w, 8);
        }
        n++;
    }
    atomic_fetch_add(&c->reads, n);
    return NULL;
}

static void spin_ns(uint64_t ns)
{
    uint64_t t = now_ns();
    while (now_ns() - t < ns)
        ;
}

/* Flaps FLAP_B, holding each state a few microseconds, until told to stop
 * (the number of cycles is bounded: every cycle retires a map). */
static void *topo_dev_writer(void *arg)
{
    struct topo_ctx *c = arg;
    uint64_t n = 0;
    while (!atomic_load_explicit(&c->stop, memory_order_relaxed) && n < 60000) {
        if (vtio_mem_add_mmio(c->mem, FLAP_B, 0x100, &const_ops, &c->calls, "flap-b") < 0) {
            c->writer_err = 1;
            break;
        }
        spin_ns(3000);
        if (vtio_mem_remove_mmio(c->mem, FLAP_B) < 0) {
            c->writer_err = 1;
            break;
        }
        spin_ns(3000);
        n++;
    }
    atomic_store(&c->cycles, n);
    return NULL;
}

static void *topo_writer(void *arg)
{
    struct topo_ctx *c = arg;
    uint64_t n = 0;
    while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
        if (vtio_mem_add_mmio(c->mem, FLAP_A, 0x1000 + (n & 1) * 0x1000, &const_ops, &c->calls,
                              "flap-a") < 0 ||
            vtio_mem_add_mmio(c->mem, FLAP_B, 0x100, &const_ops, &c->calls, "flap-b") < 0 ||
            vtio_mem_remove_mmio(c->mem, FLAP_A) < 0 ||
            vtio_mem_remove_mmio(c->mem, FLAP_B) < 0) {
            c->writer_err = 1;
            break;
        }
        n++;
        if (n >= 20000)
            break;
    }
    atomic_store(&c->cycles, n);
    return NULL;
}

static void t_concurrent_topology(void)
{
    struct topo_ctx c;
    memset(&c, 0, sizeof(c));
    c.mem = mk();
    CHECK_OK(vtio_mem_add_ram(c.mem, 0, 2 * MiB, "ram"));
    vtio_mem_write64(c.mem, 0x1000, RAMVAL);
    vtio_mem_write64(c.mem, FLAP_A - 8, RAMVAL);
    CHECK_OK(vtio_mem_add_mmio(c.mem, STABLE, 0x100, &const_ops, &c.calls, "stable"));
    pthread_t r[2], w;
    for (int i = 0; i < 2; i++)
        CHECK_EQ(pthread_create(&r[i], NULL, topo_reader, &c), 0);
    CHECK_EQ(pthread_create(&w, NULL, topo_writer, &c), 0);
    uint64_t t0 = now_ns();
    while (now_ns() - t0 < 1500000000ull && atomic_load(&c.cycles) == 0) {
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    atomic_store(&c.stop, true);
    pthread_join(w, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(r[i], NULL);
    CHECK_EQ(c.writer_err, 0);
    CHECK_EQ(atomic_load(&c.bad), 0);
    CHECK_GT(atomic_load(&c.cycles), 10);
    CHECK_GT(atomic_load(&c.reads), 10);
    CHECK_GT(atomic_load(&c.calls), 0);
    /* Afterwards the map is consistent. */
    CHECK(!vtio_mem_is_mapped(c.mem, FLAP_A, 1));
    CHECK_EQ(vtio_mem_read64(c.mem, STABLE), DEVVAL);
    CHECK_OK(vtio_mem_add_mmio(c.mem, FLAP_A, 0x1000, &const_ops, &c.calls, "again"));
    CHECK_EQ(vtio_mem_read64(c.mem, FLAP_A), DEVVAL);
    vtio_mem_destroy(c.mem);
}

static void t_concurrent_topology_dev(void)
{
    struct topo_ctx c;
    memset(&c, 0, sizeof(c));
    c.mem = mk();
    CHECK_OK(vtio_mem_add_ram(c.mem, 0, 2 * MiB, "ram"));
    /* Three threads on a small machine: readers get preempted mid-access,
     * which is when a removal can fall between checking and accessing. */
    pthread_t r[3], w;
    for (int i = 0; i < 3; i++)
        CHECK_EQ(pthread_create(&r[i], NULL, topo_dev_reader, &c), 0);
    CHECK_EQ(pthread_create(&w, NULL, topo_dev_writer, &c), 0);
    uint64_t t0 = now_ns();
    while (now_ns() - t0 < 400000000ull && atomic_load(&c.cycles) == 0) {
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    atomic_store(&c.stop, true);
    pthread_join(w, NULL);
    for (int i = 0; i < 3; i++)
        pthread_join(r[i], NULL);
    CHECK_EQ(c.writer_err, 0);
    CHECK_EQ(atomic_load(&c.bad), 0);
    CHECK_GT(atomic_load(&c.reads), 10);
    /* Nothing but device accesses ran, so no CPU-side hole access may have
     * been counted, and no device read may have returned the hole's ones. */
    struct vtio_mem_stats st;
    vtio_mem_get_stats(c.mem, &st);
    CHECKF(atomic_load(&c.dev_ones) == 0,
           "%llu of %llu device reads returned 0 with all ones (a hole) instead of -EFAULT",
           (unsigned long long)atomic_load(&c.dev_ones), (unsigned long long)atomic_load(&c.reads));
    CHECK_EQ(st.cpu_hole_reads, 0);
    CHECK_EQ(st.cpu_hole_writes, 0);
    vtio_mem_destroy(c.mem);
}

struct tear_ctx {
    struct vtio_mem *mem;
    int id;
    uint64_t iters;
    uint64_t torn;
    uint64_t deadline;
};

static bool all_bytes_equal(uint64_t v)
{
    return v == (v & 0xff) * 0x0101010101010101ull;
}

static void *tear_thread(void *arg)
{
    struct tear_ctx *c = arg;
    const uint64_t addrs[] = { 0x1000, 0x1008, 2 * MiB - 16, 2 * MiB - 8 };
    uint64_t i = 0;
    for (;;) {
        if ((i & 1023) == 0 && now_ns() > c->deadline && i >= 20000)
            break;
        uint64_t pa = addrs[i & 3];
        uint8_t b = (uint8_t)(i * 2 + (uint64_t)c->id);
        uint64_t v = b * 0x0101010101010101ull, got;
        switch ((i >> 2) % 3) {
        case 0:
            vtio_mem_write64(c->mem, pa, v);
            got = vtio_mem_read64(c->mem, pa ^ 8);
            break;
        case 1:
            vtio_mem_write(c->mem, pa, &v, 8);
            vtio_mem_read(c->mem, pa ^ 8, &got, 8);
            break;
        default:
            if (vtio_mem_dev_write(c->mem, pa, &v, 8) < 0 ||
                vtio_mem_dev_read(c->mem, pa ^ 8, &got, 8) < 0)
                got = 0x0102;   /* counts as torn */
            break;
        }
        if (!all_bytes_equal(got))
            c->torn++;
        if (!all_bytes_equal(vtio_mem_read64(c->mem, pa)))
            c->torn++;
        i++;
    }
    c->iters = i;
    return NULL;
}

static void t_no_tearing(void)
{
    struct vtio_mem *m = mk();
    CHECK_OK(vtio_mem_add_ram(m, 0, 2 * MiB, "lo"));
    CHECK_OK(vtio_mem_add_ram(m, 2 * MiB, 2 * MiB, "hi"));
    struct tear_ctx c[2];
    pthread_t t[2];
    uint64_t deadline = now_ns() + 400000000ull;
    for (int i = 0; i < 2; i++) {
        c[i] = (struct tear_ctx){ .mem = m, .id = i, .deadline = deadline };
        CHECK_EQ(pthread_create(&t[i], NULL, tear_thread, &c[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(c[i].torn, 0);
        CHECK_GE(c[i].iters, 20000);
    }
    vtio_mem_destroy(m);
}

static const struct vtio_test tests[] = {
    { "ram_add_einval", "RAM that is not 2 MiB aligned in base or size, of size 0 or wrapping is -EINVAL and changes nothing", t_ram_add_einval },
    { "mmio_add_einval", "MMIO of size 0, wrapping, or without both callbacks is -EINVAL; unaligned MMIO is fine", t_mmio_add_einval },
    { "add_overlap", "any overlap between RAM and RAM or RAM and MMIO is -EEXIST and changes nothing; adjacent regions are fine", t_add_overlap },
    { "overlap_at_top", "overlap with a region that ends exactly at 2^64 is -EEXIST", t_overlap_at_top },
    { "sparse_16g", "16 GiB of RAM at 4 GiB is added fast, starts with almost nothing resident and grows by about the pages touched", t_sparse_16g },
    { "rw_two_ram_regions", "CPU and device reads/writes of many lengths and alignments match a model, across two adjacent RAM regions", t_rw_two_ram_regions },
    { "rw_ram_mmio_ram", "reads/writes across RAM -> MMIO -> RAM boundaries match a model and reach the device's registers", t_rw_ram_mmio_ram },
    { "cpu_hole", "CPU reads of a hole return all ones, writes to it are dropped, and both are counted per access", t_cpu_hole },
    { "cpu_wrap", "a CPU access running past 2^64 is clipped: ones read beyond, nothing written at address 0", t_cpu_wrap },
    { "dev_hole", "a device access touching a hole anywhere (even only its last byte) is -EFAULT, moves nothing and is counted; a wrap is -EINVAL", t_dev_hole },
    { "mmio_split", "an MMIO access is split into naturally aligned 1/2/4/8-byte callbacks in exactly the expected (off, size) order", t_mmio_split },
    { "mmio_odd_base", "MMIO offsets are relative to an unaligned region base", t_mmio_odd_base },
    { "typed_accessors", "read8..64/write8..64 store little-endian in RAM and make single callbacks of their size on aligned MMIO", t_typed_accessors },
    { "mem_set", "vtio_mem_set fills RAM across regions and MMIO byte-exactly, drops hole bytes, and len 0 is a no-op", t_mem_set },
    { "remove_mmio", "remove_mmio is -ENOENT for RAM, holes and non-base addresses; a removed region is a hole; the base can be reused", t_remove_mmio },
    { "ram_span", "ram_span gives the host address and a span clipped at the region end; MMIO and holes are -EFAULT", t_ram_span },
    { "ram_fd", "mapping the memfd from ram_fd at the given offset shows the same bytes both ways; non-RAM is -EFAULT", t_ram_fd },
    { "for_each_ram", "for_each_ram visits RAM regions only, in address order, with their sizes and names", t_for_each_ram },
    { "is_ram_mapped", "is_ram and is_mapped tell RAM, MMIO and holes apart over whole ranges", t_is_ram_mapped },
    { "concurrent_topology", "readers hammering RAM and MMIO while a thread adds/removes MMIO see the device's value or all ones, never garbage", t_concurrent_topology },
    { "concurrent_topology_dev", "device reads/writes racing with MMIO add/remove either reach the device or fail with -EFAULT, never succeed into a hole", t_concurrent_topology_dev },
    { "no_tearing", "aligned 8-byte RAM writes and reads from two threads are never torn", t_no_tearing },
};

VTIO_TEST_MAIN(tests)
