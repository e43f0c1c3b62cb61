/*
 * Tests of the interrupt sink (include/vtio/intr.h): registering handlers,
 * decoding and delivering message-signalled interrupts, counting the ones
 * that cannot be delivered, and the ordering and unregister guarantees.
 *
 * Each test builds its own address space and sink.  Handlers that run on
 * other threads only record (atomically); the test thread checks.
 */
#define _GNU_SOURCE
#include <vtio/dma_port.h>
#include <vtio/intr.h>
#include <vtio/mem.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

#define MiB VTIO_MiB

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct rec {
    _Atomic unsigned calls;
    _Atomic(void *) opaque;
    _Atomic unsigned cpu, vector;
};

static void rec_handler(void *opaque, unsigned cpu, unsigned vector)
{
    struct rec *r = opaque;
    atomic_store(&r->opaque, opaque);
    atomic_store(&r->cpu, cpu);
    atomic_store(&r->vector, vector);
    atomic_fetch_add(&r->calls, 1);
}

static void other_handler(void *opaque, unsigned cpu, unsigned vector)
{
    (void)cpu, (void)vector;
    atomic_fetch_add(&((struct rec *)opaque)->calls, 1);
}

struct fx {
    struct vtio_mem *mem;
    struct vtio_intr *in;
};

static void fx_init(struct fx *f, unsigned ncpus)
{
    f->mem = vtio_mem_create();
    CHECK(f->mem != NULL);
    CHECK_OK(vtio_mem_add_ram(f->mem, 0, 2 * MiB, "ram"));
    f->in = vtio_intr_create(f->mem, ncpus);
    CHECK(f->in != NULL);
}

static void fx_fini(struct fx *f)
{
    vtio_intr_destroy(f->in);
    vtio_mem_destroy(f->mem);
}

static struct vtio_intr_stats istats(struct vtio_intr *in)
{
    struct vtio_intr_stats st;
    vtio_intr_get_stats(in, &st);
    return st;
}

/* Sends (cpu, vector) the way a device would: a 4-byte write. */
static void send(struct vtio_mem *m, unsigned cpu, unsigned vector)
{
    uint64_t addr;
    uint32_t data;
    vtio_msi_compose(cpu, vector, &addr, &data);
    vtio_mem_write32(m, addr, data);
}

/* ------------------------------------------------------------------------
 * Creation and registration.
 */

static uint64_t dummy_read(void *opaque, uint64_t off, unsigned size)
{
    (void)opaque, (void)off, (void)size;
    return 0;
}

static void dummy_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    (void)opaque, (void)off, (void)val, (void)size;
}

static void t_create(void)
{
    struct vtio_mem *m = vtio_mem_create();
    CHECK(m != NULL);
    CHECK(vtio_intr_create(m, 0) == NULL);
    CHECK(strlen(vtio_last_error()) > 0);
    CHECK(vtio_intr_create(m, 65) == NULL);
    CHECK(vtio_intr_create(m, 1000) == NULL);
    CHECK(vtio_intr_create(NULL, 1) == NULL);
    CHECK(!vtio_mem_is_mapped(m, VTIO_MSI_WINDOW_BASE, 1));   /* nothing left behind */

    struct vtio_intr *in = vtio_intr_create(m, 64);
    CHECK(in != NULL);
    CHECK_EQ(vtio_intr_ncpus(in), 64);
    CHECK(vtio_mem_is_mapped(m, VTIO_MSI_WINDOW_BASE, VTIO_MSI_WINDOW_SIZE));
    CHECK(!vtio_mem_is_ram(m, VTIO_MSI_WINDOW_BASE, 4));
    /* The window is taken: a second sink cannot be made. */
    CHECK(vtio_intr_create(m, 1) == NULL);
    CHECK(strlen(vtio_last_error()) > 0);
    struct vtio_intr_stats st = istats(in);
    CHECK_EQ(st.delivered + st.spurious + st.invalid, 0);
    /* Destroying it frees the window. */
    vtio_intr_destroy(in);
    CHECK(!vtio_mem_is_mapped(m, VTIO_MSI_WINDOW_BASE, 1));
    in = vtio_intr_create(m, 1);
    CHECK(in != NULL);
    CHECK_EQ(vtio_intr_ncpus(in), 1);
    vtio_intr_destroy(in);
    vtio_intr_destroy(NULL);
    /* Something else in part of the window also stops it. */
    static const struct vtio_mmio_ops dummy = { dummy_read, dummy_write };
    CHECK_OK(vtio_mem_add_mmio(m, VTIO_MSI_WINDOW_BASE + VTIO_MSI_WINDOW_SIZE - 0x1000, 0x1000,
                               &dummy, NULL, "squatter"));
    CHECK(vtio_intr_create(m, 1) == NULL);
    vtio_mem_destroy(m);
}

static void t_register_errors(void)
{
    struct fx f;
    fx_init(&f, 2);
    struct rec r = { 0 }, r2 = { 0 };
    CHECK_ERR(vtio_intr_register(f.in, 2, 40, rec_handler, &r), -EINVAL);     /* cpu */
    CHECK(strlen(vtio_last_error()) > 0);
    CHECK_ERR(vtio_intr_register(f.in, 64, 40, rec_handler, &r), -EINVAL);
    CHECK_ERR(vtio_intr_register(f.in, 0, 31, rec_handler, &r), -EINVAL);     /* vector */
    CHECK_ERR(vtio_intr_register(f.in, 0, 0, rec_handler, &r), -EINVAL);
    CHECK_ERR(vtio_intr_register(f.in, 0, 256, rec_handler, &r), -EINVAL);
    CHECK_ERR(vtio_intr_register(f.in, 0, 0x10020, rec_handler, &r), -EINVAL); /* not 0x20 */
    CHECK_ERR(vtio_intr_register(f.in, 0, 40, NULL, &r), -EINVAL);            /* no fn */
    CHECK_OK(vtio_intr_register(f.in, 0, 32, rec_handler, &r));
    CHECK_OK(vtio_intr_register(f.in, 0, 255, rec_handler, &r));
    CHECK_OK(vtio_intr_register(f.in, 1, 32, other_handler, &r2));           /* other cpu */
    CHECK_ERR(vtio_intr_register(f.in, 0, 32, other_handler, &r2), -EBUSY);
    CHECK_ERR(vtio_intr_register(f.in, 0, 32, rec_handler, &r), -EBUSY);
    /* The failed calls changed nothing: the first handler still gets it. */
    send(f.mem, 0, 32);
    CHECK_EQ(atomic_load(&r.calls), 1);
    CHECK_EQ(atomic_load(&r.vector), 32);
    CHECK_EQ(atomic_load(&r2.calls), 0);
    send(f.mem, 1, 32);
    CHECK_EQ(atomic_load(&r2.calls), 1);
    send(f.mem, 0, 255);
    CHECK_EQ(atomic_load(&r.calls), 2);
    CHECK_EQ(atomic_load(&r.vector), 255);
    CHECK_EQ(istats(f.in).delivered, 3);
    fx_fini(&f);
}

static void t_alloc_vector(void)
{
    struct fx f;
    fx_init(&f, 2);
    struct rec r = { 0 };
    CHECK_EQ(vtio_intr_alloc_vector(f.in, 0, rec_handler, &r), 32);
    CHECK_EQ(vtio_intr_alloc_vector(f.in, 0, rec_handler, &r), 33);
    CHECK_OK(vtio_intr_register(f.in, 0, 35, rec_handler, &r));
    CHECK_EQ(vtio_intr_alloc_vector(f.in, 0, rec_handler, &r), 34);
    CHECK_EQ(vtio_intr_alloc_vector(f.in, 0, rec_handler, &r), 36);
    /* Per cpu: cpu 1 starts at 32 again. */
    CHECK_EQ(vtio_intr_alloc_vector(f.in, 1, rec_handler, &r), 32);
    /* Fill cpu 0 up: 224 vectors in all. */
    int got = 5;
    for (;;) {
        int v = vtio_intr_alloc_vector(f.in, 0, rec_handler, &r);
        if (v < 0) {
            CHECK_ERR(v, -ENOSPC);
            break;
        }
        CHECK_EQ(v, 32 + got);
        got++;
        CHECK_LE(got, 224);
    }
    CHECK_EQ(got, 224);
    CHECK_ERR(vtio_intr_alloc_vector(f.in, 0, rec_handler, &r), -ENOSPC);
    CHECK(strlen(vtio_last_error()) > 0);
    CHECK_ERR(vtio_intr_register(f.in, 0, 200, rec_handler, &r), -EBUSY);
    /* A freed vector is found again, lowest first. */
    CHECK_OK(vtio_intr_unregister(f.in, 0, 100));
    CHECK_OK(vtio_intr_unregister(f.in, 0, 40));
    CHECK_EQ(vtio_intr_alloc_vector(f.in, 0, rec_handler, &r), 40);
    CHECK_EQ(vtio_intr_alloc_vector(f.in, 0, rec_handler, &r), 100);
    CHECK_ERR(vtio_intr_alloc_vector(f.in, 0, rec_handler, &r), -ENOSPC);
    /* Bad arguments. */
    CHECK_ERR(vtio_intr_alloc_vector(f.in, 2, rec_handler, &r), -EINVAL);
    CHECK_ERR(vtio_intr_alloc_vector(f.in, 1, NULL, &r), -EINVAL);
    CHECK_EQ(vtio_intr_alloc_vector(f.in, 1, rec_handler, &r), 33);   /* unchanged */
    /* An allocated vector delivers. */
    send(f.mem, 1, 33);
    CHECK_EQ(atomic_load(&r.calls), 1);
    CHECK_EQ(atomic_load(&r.cpu), 1);
    CHECK_EQ(atomic_load(&r.vector), 33);
    fx_fini(&f);
}

static void t_unregister(void)
{
    struct fx f;
    fx_init(&f, 2);
    struct rec r = { 0 };
    CHECK_ERR(vtio_intr_unregister(f.in, 0, 40), -ENOENT);
    CHECK(strlen(vtio_last_error()) > 0);
    CHECK_ERR(vtio_intr_unregister(f.in, 2, 40), -EINVAL);
    CHECK_ERR(vtio_intr_unregister(f.in, 0, 31), -EINVAL);
    CHECK_ERR(vtio_intr_unregister(f.in, 0, 256), -EINVAL);
    CHECK_OK(vtio_intr_register(f.in, 0, 40, rec_handler, &r));
    CHECK_ERR(vtio_intr_unregister(f.in, 1, 40), -ENOENT);    /* other cpu */
    send(f.mem, 0, 40);
    CHECK_EQ(atomic_load(&r.calls), 1);
    CHECK_OK(vtio_intr_unregister(f.in, 0, 40));
    CHECK_ERR(vtio_intr_unregister(f.in, 0, 40), -ENOENT);
    /* Now the message is spurious. */
    send(f.mem, 0, 40);
    CHECK_EQ(atomic_load(&r.calls), 1);
    struct vtio_intr_stats st = istats(f.in);
    CHECK_EQ(st.delivered, 1);
    CHECK_EQ(st.spurious, 1);
    CHECK_EQ(vtio_intr_count(f.in, 0, 40), 1);
    /* And the slot can be used again. */
    struct rec r2 = { 0 };
    CHECK_OK(vtio_intr_register(f.in, 0, 40, rec_handler, &r2));
    send(f.mem, 0, 40);
    CHECK_EQ(atomic_load(&r2.calls), 1);
    CHECK(atomic_load(&r2.opaque) == &r2);
    CHECK_EQ(atomic_load(&r.calls), 1);
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * Delivery.
 */

static void t_deliver(void)
{
    struct fx f;
    fx_init(&f, 4);
    struct rec r[4];
    memset(r, 0, sizeof(r));
    for (unsigned c = 0; c < 4; c++)
        CHECK_OK(vtio_intr_register(f.in, c, 0x41, rec_handler, &r[c]));
    uint64_t addr;
    uint32_t data;
    vtio_msi_compose(3, 0x41, &addr, &data);
    CHECK_EQ(addr, 0xfee03000ull);
    CHECK_EQ(data, 0x41);
    vtio_mem_write32(f.mem, addr, data);
    CHECK_EQ(atomic_load(&r[3].calls), 1);
    CHECK(atomic_load(&r[3].opaque) == &r[3]);
    CHECK_EQ(atomic_load(&r[3].cpu), 3);
    CHECK_EQ(atomic_load(&r[3].vector), 0x41);
    for (unsigned c = 0; c < 3; c++)
        CHECK_EQ(atomic_load(&r[c].calls), 0);
    CHECK_EQ(vtio_intr_count(f.in, 3, 0x41), 1);
    CHECK_EQ(vtio_intr_count(f.in, 0, 0x41), 0);
    CHECK_EQ(istats(f.in).delivered, 1);

    /* Through a DMA port, as a device sends it. */
    struct vtio_dma_port port;
    vtio_dma_port_init(&port, f.mem, 0x10);
    vtio_dma_port_set_bus_master(&port, true);
    vtio_msi_compose(1, 0x41, &addr, &data);
    CHECK_OK(vtio_dma_msi(&port, addr, data));
    CHECK_OK(vtio_dma_write(&port, addr, &data, 4));
    CHECK_EQ(atomic_load(&r[1].calls), 2);
    CHECK_EQ(atomic_load(&r[1].cpu), 1);
    CHECK_EQ(vtio_intr_count(f.in, 1, 0x41), 2);

    /* Variants that are still deliverable: lowest-priority delivery, the
     * redirection hint, level trigger. */
    vtio_mem_write32(f.mem, addr, data | (1u << VTIO_MSI_DATA_DM_SHIFT));
    vtio_mem_write32(f.mem, addr | VTIO_MSI_ADDR_RH, data);
    vtio_mem_write32(f.mem, addr, data | VTIO_MSI_DATA_TRIGGER);
    CHECK_EQ(atomic_load(&r[1].calls), 5);
    CHECK_EQ(vtio_intr_count(f.in, 1, 0x41), 5);
    struct vtio_intr_stats st = istats(f.in);
    CHECK_EQ(st.delivered, 6);
    CHECK_EQ(st.spurious, 0);
    CHECK_EQ(st.invalid, 0);
    /* Counts of bad slots are 0, not a crash. */
    CHECK_EQ(vtio_intr_count(f.in, 4, 0x41), 0);
    CHECK_EQ(vtio_intr_count(f.in, 0, 5), 0);
    CHECK_EQ(vtio_intr_count(f.in, 0, 300), 0);
    fx_fini(&f);
}

static void t_spurious_invalid(void)
{
    struct fx f;
    fx_init(&f, 2);
    struct rec r = { 0 };
    /* A handler where each malformed message would land if misdecoded. */
    CHECK_OK(vtio_intr_register(f.in, 0, 0x40, rec_handler, &r));
    CHECK_OK(vtio_intr_register(f.in, 1, 0x40, rec_handler, &r));
    uint64_t addr;
    uint32_t data;
    vtio_msi_compose(1, 0x40, &addr, &data);

    /* Spurious: valid, but nothing registered on that (cpu, vector). */
    send(f.mem, 1, 0x41);
    send(f.mem, 0, 0xff);
    struct vtio_intr_stats st = istats(f.in);
    CHECK_EQ(st.spurious, 2);
    CHECK_EQ(st.invalid, 0);

    /* Invalid, one reason each. */
    vtio_mem_write32(f.mem, addr | VTIO_MSI_ADDR_IF, data);           /* remappable */
    vtio_mem_write32(f.mem, addr | VTIO_MSI_ADDR_DM, data);           /* logical */
    uint64_t a2;
    uint32_t d2;
    vtio_msi_compose(2, 0x40, &a2, &d2);                              /* cpu >= ncpus */
    vtio_mem_write32(f.mem, a2, d2);
    vtio_msi_compose(255, 0x40, &a2, &d2);
    vtio_mem_write32(f.mem, a2, d2);
    vtio_mem_write32(f.mem, addr, 0x1f);                              /* vector 31 */
    vtio_mem_write32(f.mem, addr, 0x00);                              /* vector 0 */
    vtio_mem_write32(f.mem, addr, data | (4u << VTIO_MSI_DATA_DM_SHIFT));   /* NMI */
    vtio_mem_write32(f.mem, addr, data | (2u << VTIO_MSI_DATA_DM_SHIFT));   /* SMI */
    vtio_mem_write32(f.mem, addr, data | (5u << VTIO_MSI_DATA_DM_SHIFT));   /* INIT */
    vtio_mem_write32(f.mem, addr, data | (7u << VTIO_MSI_DATA_DM_SHIFT));   /* ExtINT */
    vtio_mem_write16(f.mem, addr, (uint16_t)data);                    /* 2 bytes */
    vtio_mem_write8(f.mem, addr, (uint8_t)data);                      /* 1 byte */
    vtio_mem_write64(f.mem, addr, data | ((uint64_t)data << 32));     /* 8 bytes */
    st = istats(f.in);
    CHECK_EQ(st.invalid, 13);
    CHECK_EQ(st.spurious, 2);
    CHECK_EQ(st.delivered, 0);
    CHECK_EQ(atomic_load(&r.calls), 0);
    CHECK_EQ(vtio_intr_count(f.in, 1, 0x40), 0);
    CHECK_EQ(vtio_intr_count(f.in, 0, 0x40), 0);
    /* The well-formed message still works afterwards. */
    vtio_mem_write32(f.mem, addr, data);
    CHECK_EQ(atomic_load(&r.calls), 1);
    CHECK_EQ(istats(f.in).delivered, 1);
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * Ordering: data written by DMA before the interrupt is visible to the
 * handler, and, through its release store, to a waiting CPU thread.
 */

#define ORD_BUF 0x10000ull
#define ORD_LEN (64 * 1024)
#define ORD_ROUNDS 200

struct ord {
    struct vtio_mem *mem;
    struct vtio_dma_port port;
    uint64_t addr;
    uint32_t data;
    _Atomic uint32_t raised;      /* round the handler saw (release) */
    _Atomic uint32_t acked;       /* round the CPU side finished (release) */
    _Atomic uint32_t handler_bad; /* the handler saw stale data */
    _Atomic int dev_err;
    _Atomic bool abort;           /* the test gave up: the device stops */
};

static void ord_fill(uint8_t *buf, uint32_t round)
{
    for (size_t i = 0; i < ORD_LEN; i += 4) {
        uint32_t v = round * 0x9e3779b9u + (uint32_t)i;
        memcpy(buf + i, &v, 4);
    }
}

static void ord_handler(void *opaque, unsigned cpu, unsigned vector)
{
    struct ord *o = opaque;
    (void)cpu, (void)vector;
    uint32_t round = atomic_load_explicit(&o->acked, memory_order_relaxed) + 1;
    /* Spot-check the buffer from the handler: first and last words. */
    uint32_t first, last;
    vtio_mem_read(o->mem, ORD_BUF, &first, 4);
    vtio_mem_read(o->mem, ORD_BUF + ORD_LEN - 4, &last, 4);
    if (first != round * 0x9e3779b9u || last != round * 0x9e3779b9u + (ORD_LEN - 4))
        atomic_fetch_add(&o->handler_bad, 1);
    atomic_store_explicit(&o->raised, round, memory_order_release);
}

static void *ord_device(void *arg)
{
    struct ord *o = arg;
    uint8_t *buf = malloc(ORD_LEN);
    if (!buf) {
        atomic_store(&o->dev_err, -ENOMEM);
        return NULL;
    }
    for (uint32_t round = 1; round <= ORD_ROUNDS; round++) {
        /* Wait until the CPU side has consumed the previous round. */
        while (atomic_load_explicit(&o->acked, memory_order_acquire) != round - 1) {
            if (atomic_load(&o->abort))
                goto out;
            sched_yield();
        }
        ord_fill(buf, round);
        int r = vtio_dma_write(&o->port, ORD_BUF, buf, ORD_LEN);
        if (r == 0)
            r = vtio_dma_msi(&o->port, o->addr, o->data);
        if (r < 0) {
            atomic_store(&o->dev_err, r);
            break;
        }
    }
out:
    free(buf);
    return NULL;
}

static void t_ordering(void)
{
    struct ord *o = calloc(1, sizeof(*o));
    CHECK(o != NULL);
    struct fx f;
    fx_init(&f, 2);
    o->mem = f.mem;
    vtio_dma_port_init(&o->port, f.mem, 0x20);
    vtio_dma_port_set_bus_master(&o->port, true);
    int v = vtio_intr_alloc_vector(f.in, 1, ord_handler, o);
    CHECK_GE(v, 32);
    vtio_msi_compose(1, (unsigned)v, &o->addr, &o->data);
    pthread_t dev;
    CHECK_EQ(pthread_create(&dev, NULL, ord_device, o), 0);
    uint8_t *want = malloc(ORD_LEN), *got = malloc(ORD_LEN);
    uint32_t bad_round = 0;
    uint64_t deadline = now_ns() + 5000000000ull;
    for (uint32_t round = 1; round <= ORD_ROUNDS && want && got; round++) {
        while (atomic_load_explicit(&o->raised, memory_order_acquire) != round &&
               atomic_load(&o->dev_err) == 0 && now_ns() < deadline)
            sched_yield();
        if (atomic_load_explicit(&o->raised, memory_order_acquire) != round)
            break;
        ord_fill(want, round);
        vtio_mem_read(f.mem, ORD_BUF, got, ORD_LEN);
        if (!bad_round && memcmp(want, got, ORD_LEN) != 0)
            bad_round = round;
        atomic_store_explicit(&o->acked, round, memory_order_release);
    }
    atomic_store(&o->abort, true);
    pthread_join(dev, NULL);
    free(want);
    free(got);
    CHECK_EQ(atomic_load(&o->dev_err), 0);
    CHECK_EQ(atomic_load(&o->acked), ORD_ROUNDS);
    CHECK_EQ(bad_round, 0);
    CHECK_EQ(atomic_load(&o->handler_bad), 0);
    CHECK_EQ(vtio_intr_count(f.in, 1, (unsigned)v), ORD_ROUNDS);
    fx_fini(&f);
    free(o);
}

/* ------------------------------------------------------------------------
 * Unregister while another thread delivers: once unregister returns, the
 * handler never runs again.
 */

struct race {
    struct vtio_mem *mem;
    struct vtio_dma_port port;
    uint64_t addr;
    uint32_t data;
    _Atomic bool stop;
    _Atomic bool unregistered;    /* set by the test after unregister returns */
    _Atomic uint64_t calls;
    _Atomic uint64_t late;        /* calls that saw `unregistered` set */
    _Atomic uint64_t sent;
    _Atomic int dev_err;
};

static void race_handler(void *opaque, unsigned cpu, unsigned vector)
{
    struct race *r = opaque;
    (void)cpu, (void)vector;
    if (atomic_load(&r->unregistered))
        atomic_fetch_add(&r->late, 1);
    atomic_fetch_add(&r->calls, 1);
    /* A handler that takes a moment, so unregister has one to wait for. */
    for (volatile int i = 0; i < 50; i++)
        ;
    if (atomic_load(&r->unregistered))
        atomic_fetch_add(&r->late, 1);
}

static void *race_device(void *arg)
{
    struct race *r = arg;
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
        int e = vtio_dma_msi(&r->port, r->addr, r->data);
        if (e < 0) {
            atomic_store(&r->dev_err, e);
            break;
        }
        atomic_fetch_add_explicit(&r->sent, 1, memory_order_relaxed);
    }
    return NULL;
}

static void t_unregister_race(void)
{
    struct race *r = calloc(1, sizeof(*r));
    CHECK(r != NULL);
    struct fx f;
    fx_init(&f, 1);
    r->mem = f.mem;
    vtio_dma_port_init(&r->port, f.mem, 0x30);
    vtio_dma_port_set_bus_master(&r->port, true);
    const unsigned vec = 0x77;
    vtio_msi_compose(0, vec, &r->addr, &r->data);
    pthread_t dev;
    CHECK_EQ(pthread_create(&dev, NULL, race_device, r), 0);
    int rounds = 0, err = 0;
    uint64_t deadline = now_ns() + 3000000000ull;
    for (; rounds < 100 && now_ns() < deadline && !err; rounds++) {
        atomic_store(&r->unregistered, false);
        uint64_t c0 = atomic_load(&r->calls);
        err = vtio_intr_register(f.in, 0, vec, race_handler, r);
        if (err)
            break;
        /* Let some deliveries reach the handler... */
        while (atomic_load(&r->calls) < c0 + 20 && now_ns() < deadline &&
               !atomic_load(&r->dev_err))
            sched_yield();
        /* ...then take it away while they keep coming. */
        err = vtio_intr_unregister(f.in, 0, vec);
        atomic_store(&r->unregistered, true);
        /* Keep delivering for a while with no handler. */
        uint64_t s0 = atomic_load(&r->sent);
        while (atomic_load(&r->sent) < s0 + 200 && now_ns() < deadline &&
               !atomic_load(&r->dev_err))
            sched_yield();
    }
    atomic_store(&r->stop, true);
    pthread_join(dev, NULL);
    CHECK_EQ(err, 0);
    CHECK_EQ(atomic_load(&r->dev_err), 0);
    CHECK_GE(rounds, 10);
    CHECK_EQ(atomic_load(&r->late), 0);
    CHECK_GT(atomic_load(&r->calls), 0);
    struct vtio_intr_stats st = istats(f.in);
    CHECK_EQ(st.delivered, atomic_load(&r->calls));
    CHECK_GT(st.spurious, 0);
    CHECK_EQ(st.invalid, 0);
    CHECK_EQ(st.delivered + st.spurious, atomic_load(&r->sent));
    fx_fini(&f);
    free(r);
}

/* Two devices send to different vectors concurrently while a third vector
 * is registered and unregistered: counts add up exactly. */
struct multi {
    struct vtio_mem *mem;
    unsigned vector;
    unsigned n;
    struct rec r;
};

static void *multi_device(void *arg)
{
    struct multi *m = arg;
    for (unsigned i = 0; i < m->n; i++)
        send(m->mem, 0, m->vector);
    return NULL;
}

static void t_concurrent_vectors(void)
{
    struct fx f;
    fx_init(&f, 1);
    struct multi m[2];
    memset(m, 0, sizeof(m));
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        m[i].mem = f.mem;
        m[i].vector = 0x50 + (unsigned)i;
        m[i].n = 20000;
        CHECK_OK(vtio_intr_register(f.in, 0, m[i].vector, rec_handler, &m[i].r));
    }
    for (int i = 0; i < 2; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, multi_device, &m[i]), 0);
    struct rec other = { 0 };
    for (int i = 0; i < 500; i++) {
        CHECK_OK(vtio_intr_register(f.in, 0, 0x60, other_handler, &other));
        CHECK_OK(vtio_intr_unregister(f.in, 0, 0x60));
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(atomic_load(&m[i].r.calls), m[i].n);
        CHECK_EQ(vtio_intr_count(f.in, 0, m[i].vector), m[i].n);
        CHECK_EQ(atomic_load(&m[i].r.vector), m[i].vector);
    }
    CHECK_EQ(atomic_load(&other.calls), 0);
    CHECK_EQ(istats(f.in).delivered, 40000);
    fx_fini(&f);
}

static const struct vtio_test tests[] = {
    { "create", "create refuses ncpus 0 or > 64, no mem, and a taken window (NULL with a message); destroy frees the window", t_create },
    { "register_errors", "register is -EINVAL for a bad cpu, vector < 32 or > 255, or no handler, -EBUSY for a taken slot, and failures change nothing", t_register_errors },
    { "alloc_vector", "alloc_vector gives the lowest free vector from 32 per cpu, -ENOSPC when all 224 are taken, and reuses freed ones", t_alloc_vector },
    { "unregister", "unregister is -ENOENT for an empty slot and -EINVAL for a bad one; afterwards the message is spurious and the slot reusable", t_unregister },
    { "deliver", "a 4-byte write of the composed message calls the handler with (opaque, cpu, vector) on that cpu only, and counts it", t_deliver },
    { "spurious_invalid", "a message with no handler is counted spurious; remappable, logical, bad cpu, vector < 32, NMI/SMI/INIT/ExtINT and non-4-byte ones are invalid; no handler runs", t_spurious_invalid },
    { "ordering", "data a device writes by DMA before its MSI is seen by the handler and, via the handler's release store, by the waiting CPU thread", t_ordering },
    { "unregister_race", "after unregister returns, the handler never runs again although a device keeps sending", t_unregister_race },
    { "concurrent_vectors", "two devices sending to two vectors while a third is registered and unregistered are each delivered exactly once", t_concurrent_vectors },
};

VTIO_TEST_MAIN(tests)
