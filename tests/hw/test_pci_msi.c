/*
 * PCI bus tests, part 2: MSI-X, MSI, bus mastering, and raising vectors from
 * many threads while software masks and unmasks them.
 *
 * Interrupts are watched with the fixture's capture region over the MSI
 * window (raw address and data of each message); one test goes through the
 * real interrupt sink to check the decode end to end.
 */
#include "test_pci_fixture.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>

static const uint16_t RID = VTIO_PCI_RID(0, 3, 0);
#define BAR4_AT (MMIO32_BASE + VTIO_MiB)
#define PBA_AT  (BAR4_AT + 0x2000)

static uint64_t entry_at(unsigned v)
{
    return BAR4_AT + (uint64_t)v * VTIO_PCI_MSIX_ENTRY_SIZE;
}

static void msix_program(unsigned v, uint64_t addr, uint32_t data, bool masked)
{
    vtio_mem_write32(mem, entry_at(v) + VTIO_PCI_MSIX_ENTRY_LOWER_ADDR, (uint32_t)addr);
    vtio_mem_write32(mem, entry_at(v) + VTIO_PCI_MSIX_ENTRY_UPPER_ADDR, (uint32_t)(addr >> 32));
    vtio_mem_write32(mem, entry_at(v) + VTIO_PCI_MSIX_ENTRY_DATA, data);
    vtio_mem_write32(mem, entry_at(v) + VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL, masked);
}

static void msix_mask(unsigned v, bool masked)
{
    vtio_mem_write32(mem, entry_at(v) + VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL, masked);
}

/* A placed, bus-mastering standard function at 00:03.0 (with a capture
 * region), plus the offsets of its MSI-X and MSI capabilities. */
static struct vtio_pci_dev *std_dev(struct fake *f, struct vtio_pci_dev_info *info,
                                    unsigned *msix, unsigned *msi)
{
    setup(true);
    struct vtio_pci_dev *dev = plug(0, VTIO_PCI_DEVFN(3, 0), info);
    std_place(RID, MMIO32_BASE, MMIO64_BASE, BAR4_AT);
    (void)f;
    *msix = find_cap(RID, VTIO_PCI_CAP_ID_MSIX);
    *msi = find_cap(RID, VTIO_PCI_CAP_ID_MSI);
    return dev;
}

static void msix_control(unsigned msix, uint16_t bits)
{
    cfg_w16(RID, msix + VTIO_PCI_MSIX_FLAGS, bits);
}

/* ---- MSI-X */

static void t_msix_table(void)
{
    struct fake f = { 0 };
    struct vtio_pci_dev_info info = std_info(&f);
    unsigned msix, msi;
    std_dev(&f, &info, &msix, &msi);

    for (unsigned v = 0; v < 8; v++) {
        CHECK_EQ(vtio_mem_read64(mem, entry_at(v)), 0);
        CHECK_EQ(vtio_mem_read32(mem, entry_at(v) + 8), 0);
        CHECK_EQ(vtio_mem_read32(mem, entry_at(v) + 12), 1);     /* masked at reset */
    }
    /* Address bits 1:0 are read-only 0; vector control has only bit 0. */
    vtio_mem_write32(mem, entry_at(2), 0xfee01003);
    CHECK_EQ(vtio_mem_read32(mem, entry_at(2)), 0xfee01000);
    vtio_mem_write32(mem, entry_at(2) + 12, 0xffffffff);
    CHECK_EQ(vtio_mem_read32(mem, entry_at(2) + 12), 1);
    vtio_mem_write32(mem, entry_at(2) + 12, 0);
    CHECK_EQ(vtio_mem_read32(mem, entry_at(2) + 12), 0);
    /* Qword accesses: address as one, data + control as one. */
    vtio_mem_write64(mem, entry_at(3), 0x00000001fee02000ull);
    CHECK_EQ(vtio_mem_read64(mem, entry_at(3)), 0x00000001fee02000ull);
    CHECK_EQ(vtio_mem_read32(mem, entry_at(3) + 4), 1);
    vtio_mem_write64(mem, entry_at(3) + 8, 0x0000000100001234ull);
    CHECK_EQ(vtio_mem_read32(mem, entry_at(3) + 8), 0x1234);
    CHECK_EQ(vtio_mem_read32(mem, entry_at(3) + 12), 1);
    CHECK_EQ(vtio_mem_read64(mem, entry_at(3) + 8), 0x0000000100001234ull);
    /* Entries are independent. */
    CHECK_EQ(vtio_mem_read64(mem, entry_at(4)), 0);
    /* The PBA is read-only. */
    vtio_mem_write64(mem, PBA_AT, ~0ull);
    CHECK_EQ(vtio_mem_read64(mem, PBA_AT), 0);
    teardown();
}

static void t_msix_deliver(void)
{
    struct fake f = { 0 };
    struct vtio_pci_dev_info info = std_info(&f);
    unsigned msix, msi;
    struct vtio_pci_dev *dev = std_dev(&f, &info, &msix, &msi);

    msix_program(3, MSG_ADDR(3), 3, false);
    msix_control(msix, VTIO_PCI_MSIX_FLAGS_ENABLE);
    CHECK_EQ(vtio_pci_msix_notify(dev, 3), 0);
    CHECK_EQ(cap->count, 1);
    CHECK_EQ(cap->last_addr, MSG_ADDR(3));
    CHECK_EQ(cap->last_data, 3);
    /* Reprogramming takes effect for the next message. */
    msix_program(3, MSG_ADDR(0x44), 0x44, false);
    CHECK_EQ(vtio_pci_msix_notify(dev, 3), 0);
    CHECK_EQ(cap->last_addr, MSG_ADDR(0x44));
    CHECK_EQ(cap->last_data, 0x44);
    CHECK_EQ(cap->mismatches, 0);
    struct vtio_dma_port_stats st;
    vtio_dma_port_get_stats(vtio_pci_dev_dma_port(dev), &st);
    CHECK_EQ(st.msis, 2);

    /* A message to a hole fails the way the DMA port says. */
    msix_program(6, 0x7000000000ull, 6, false);
    CHECK_ERR(vtio_pci_msix_notify(dev, 6), -EFAULT);
    CHECK_EQ(cap->count, 2);

    CHECK_ERR(vtio_pci_msix_notify(dev, 8), -EINVAL);
    msix_control(msix, 0);
    CHECK_ERR(vtio_pci_msix_notify(dev, 3), -ENODEV);          /* not enabled */
    CHECK_EQ(vtio_mem_read64(mem, PBA_AT), 0);                 /* and lost */
    CHECK_EQ(cap->count, 2);

    /* No MSI-X capability at all. */
    struct vtio_pci_dev_info plain = std_info(&f);
    plain.msix_vectors = 0;
    plain.msi_vectors = 0;
    struct vtio_pci_dev *d2 = plug(0, VTIO_PCI_DEVFN(4, 0), &plain);
    CHECK_ERR(vtio_pci_msix_notify(d2, 0), -ENODEV);
    CHECK_ERR(vtio_pci_msi_notify(d2, 0), -ENODEV);
    teardown();
}

static void t_msix_pending(void)
{
    struct fake f = { 0 };
    struct vtio_pci_dev_info info = std_info(&f);
    unsigned msix, msi;
    struct vtio_pci_dev *dev = std_dev(&f, &info, &msix, &msi);
    msix_control(msix, VTIO_PCI_MSIX_FLAGS_ENABLE);

    /* A masked vector stays pending, visible in the PBA through the BAR;
     * raising it again merges with the pending message. */
    msix_program(5, MSG_ADDR(5), 5, true);
    CHECK_EQ(vtio_pci_msix_notify(dev, 5), 1);
    CHECK_EQ(vtio_pci_msix_notify(dev, 5), 1);
    CHECK_EQ(cap->count, 0);
    CHECK_EQ(vtio_mem_read32(mem, PBA_AT), 1u << 5);
    CHECK_EQ(vtio_mem_read64(mem, PBA_AT), 1u << 5);
    CHECK_EQ(vtio_mem_read8(mem, PBA_AT), 1u << 5);
    /* Unmasking sends it once and clears the bit. */
    msix_mask(5, false);
    CHECK_EQ(cap->count, 1);
    CHECK_EQ(cap->last_data, 5);
    CHECK_EQ(vtio_mem_read64(mem, PBA_AT), 0);
    msix_mask(5, true);
    msix_mask(5, false);
    CHECK_EQ(cap->count, 1);

    /* Function mask: every vector pends; clearing it sends them all. */
    msix_program(2, MSG_ADDR(2), 2, false);
    msix_control(msix, VTIO_PCI_MSIX_FLAGS_ENABLE | VTIO_PCI_MSIX_FLAGS_MASKALL);
    CHECK_EQ(vtio_pci_msix_notify(dev, 2), 1);
    CHECK_EQ(vtio_pci_msix_notify(dev, 5), 1);
    CHECK_EQ(vtio_mem_read32(mem, PBA_AT), (1u << 2) | (1u << 5));
    CHECK_EQ(cap->count, 1);
    /* Per-vector unmask does not override the function mask. */
    msix_mask(5, false);
    CHECK_EQ(cap->count, 1);
    msix_control(msix, VTIO_PCI_MSIX_FLAGS_ENABLE);
    CHECK_EQ(cap->count, 3);
    CHECK_EQ(cap->per_tag[2], 1);
    CHECK_EQ(cap->per_tag[5], 2);
    CHECK_EQ(vtio_mem_read64(mem, PBA_AT), 0);

    /* A vector left pending while MSI-X is disabled goes out on enable. */
    msix_program(1, MSG_ADDR(1), 1, true);
    CHECK_EQ(vtio_pci_msix_notify(dev, 1), 1);
    msix_control(msix, 0);
    msix_mask(1, false);
    CHECK_EQ(cap->per_tag[1], 0);
    CHECK_EQ(vtio_mem_read32(mem, PBA_AT), 1u << 1);
    msix_control(msix, VTIO_PCI_MSIX_FLAGS_ENABLE);
    CHECK_EQ(cap->per_tag[1], 1);
    CHECK_EQ(vtio_mem_read32(mem, PBA_AT), 0);
    CHECK_EQ(cap->mismatches, 0);
    teardown();
}

static void t_bus_master(void)
{
    struct fake f = { 0 };
    struct vtio_pci_dev_info info = std_info(&f);
    unsigned msix, msi;
    struct vtio_pci_dev *dev = std_dev(&f, &info, &msix, &msi);
    struct vtio_dma_port *port = vtio_pci_dev_dma_port(dev);
    uint8_t buf[16] = { 0 };

    CHECK_OK(vtio_dma_read(port, 0x1000, buf, sizeof(buf)));
    cfg_w16(RID, VTIO_PCI_COMMAND, VTIO_PCI_COMMAND_MEM);       /* BME off */
    CHECK_ERR(vtio_dma_read(port, 0x1000, buf, sizeof(buf)), -EPERM);
    CHECK_ERR(vtio_dma_write(port, 0x1000, buf, sizeof(buf)), -EPERM);

    /* An unmasked vector cannot leave the function: the message is lost. */
    msix_control(msix, VTIO_PCI_MSIX_FLAGS_ENABLE);
    msix_program(0, MSG_ADDR(0), 0, false);
    CHECK_ERR(vtio_pci_msix_notify(dev, 0), -EPERM);
    CHECK_EQ(cap->count, 0);
    CHECK_EQ(vtio_mem_read64(mem, PBA_AT), 0);

    /* A pending vector unmasked with BME off waits for BME. */
    msix_program(1, MSG_ADDR(1), 1, true);
    CHECK_EQ(vtio_pci_msix_notify(dev, 1), 1);
    msix_mask(1, false);
    CHECK_EQ(cap->count, 0);
    CHECK_EQ(vtio_mem_read64(mem, PBA_AT), 1u << 1);
    cfg_w16(RID, VTIO_PCI_COMMAND, VTIO_PCI_COMMAND_MEM | VTIO_PCI_COMMAND_MASTER);
    CHECK_EQ(cap->count, 1);
    CHECK_EQ(cap->last_data, 1);
    CHECK_EQ(vtio_mem_read64(mem, PBA_AT), 0);
    CHECK_OK(vtio_dma_read(port, 0x1000, buf, sizeof(buf)));
    CHECK_EQ(vtio_pci_msix_notify(dev, 0), 0);
    teardown();
}

/* ---- MSI */

static void t_msi(void)
{
    struct fake f = { 0 };
    struct vtio_pci_dev_info info = std_info(&f);
    unsigned msix, msi;
    struct vtio_pci_dev *dev = std_dev(&f, &info, &msix, &msi);
    const uint64_t addr = VTIO_MSI_WINDOW_BASE + 0x1000;

    CHECK_ERR(vtio_pci_msi_notify(dev, 0), -ENODEV);            /* not enabled */
    cfg_w32(RID, msi + VTIO_PCI_MSI_ADDRESS_LO, (uint32_t)addr | 3);
    CHECK_EQ(cfg_r32(RID, msi + VTIO_PCI_MSI_ADDRESS_LO), (uint32_t)addr);
    cfg_w32(RID, msi + VTIO_PCI_MSI_ADDRESS_HI, 0);
    cfg_w16(RID, msi + VTIO_PCI_MSI_DATA_64, 0x40);
    /* Enable with 4 vectors (Multiple Message Enable = 2). */
    cfg_w16(RID, msi + VTIO_PCI_MSI_FLAGS, VTIO_PCI_MSI_FLAGS_ENABLE | 2 << 4);
    CHECK_EQ(cfg_r16(RID, msi + VTIO_PCI_MSI_FLAGS) & 0x71, 0x21);
    CHECK_EQ(vtio_pci_msi_notify(dev, 2), 0);
    CHECK_EQ(cap->last_addr, addr);
    CHECK_EQ(cap->last_data, 0x42);
    CHECK_ERR(vtio_pci_msi_notify(dev, 4), -EINVAL);

    /* Mask bits: only the 4 implemented are writable; a masked vector
     * pends in the read-only Pending Bits and goes out when unmasked. */
    cfg_w32(RID, msi + VTIO_PCI_MSI_MASK_64, 0xffffffff);
    CHECK_EQ(cfg_r32(RID, msi + VTIO_PCI_MSI_MASK_64), 0xf);
    cfg_w32(RID, msi + VTIO_PCI_MSI_MASK_64, 0x2);
    CHECK_EQ(vtio_pci_msi_notify(dev, 1), 1);
    CHECK_EQ(cap->count, 1);
    CHECK_EQ(cfg_r32(RID, msi + VTIO_PCI_MSI_PENDING_64), 0x2);
    cfg_w32(RID, msi + VTIO_PCI_MSI_PENDING_64, 0);             /* read-only */
    CHECK_EQ(cfg_r32(RID, msi + VTIO_PCI_MSI_PENDING_64), 0x2);
    cfg_w32(RID, msi + VTIO_PCI_MSI_MASK_64, 0);
    CHECK_EQ(cap->count, 2);
    CHECK_EQ(cap->last_data, 0x41);
    CHECK_EQ(cfg_r32(RID, msi + VTIO_PCI_MSI_PENDING_64), 0);

    /* One vector allocated: every vector folds onto it. */
    cfg_w16(RID, msi + VTIO_PCI_MSI_FLAGS, VTIO_PCI_MSI_FLAGS_ENABLE);
    CHECK_EQ(vtio_pci_msi_notify(dev, 3), 0);
    CHECK_EQ(cap->last_data, 0x40);
    /* MME above what the function offers is clamped to 4 vectors. */
    cfg_w16(RID, msi + VTIO_PCI_MSI_FLAGS, VTIO_PCI_MSI_FLAGS_ENABLE | 7 << 4);
    CHECK_EQ(vtio_pci_msi_notify(dev, 3), 0);
    CHECK_EQ(cap->last_data, 0x43);

    /* BME off: the port refuses; disabled: -ENODEV. */
    cfg_w16(RID, VTIO_PCI_COMMAND, VTIO_PCI_COMMAND_MEM);
    CHECK_ERR(vtio_pci_msi_notify(dev, 0), -EPERM);
    cfg_w16(RID, msi + VTIO_PCI_MSI_FLAGS, 0);
    CHECK_ERR(vtio_pci_msi_notify(dev, 0), -ENODEV);
    CHECK_EQ(cap->count, 4);
    teardown();
}

/* ---- end to end through the interrupt sink */

struct seen {
    _Atomic unsigned calls, cpu, vector;
};

static void on_irq(void *opaque, unsigned cpu, unsigned vector)
{
    struct seen *s = opaque;
    atomic_store(&s->cpu, cpu);
    atomic_store(&s->vector, vector);
    atomic_fetch_add(&s->calls, 1);
}

static void t_intr_sink(void)
{
    struct fake f = { 0 };
    struct vtio_pci_dev_info info = std_info(&f);
    setup(false);
    struct vtio_intr *intr = vtio_intr_create(mem, 4);
    CHECKF(intr != NULL, "%s", vtio_last_error());
    struct vtio_pci_dev *dev = plug(0, VTIO_PCI_DEVFN(3, 0), &info);
    std_place(RID, MMIO32_BASE, MMIO64_BASE, BAR4_AT);
    unsigned msix = find_cap(RID, VTIO_PCI_CAP_ID_MSIX);
    unsigned msi = find_cap(RID, VTIO_PCI_CAP_ID_MSI);

    struct seen s = { 0 };
    CHECK_OK(vtio_intr_register(intr, 2, 0x41, on_irq, &s));
    CHECK_OK(vtio_intr_register(intr, 1, 0x50, on_irq, &s));
    uint64_t addr;
    uint32_t data;
    vtio_msi_compose(2, 0x41, &addr, &data);
    msix_program(7, addr, data, false);
    msix_control(msix, VTIO_PCI_MSIX_FLAGS_ENABLE);
    CHECK_EQ(vtio_pci_msix_notify(dev, 7), 0);
    CHECK_EQ(s.calls, 1);
    CHECK_EQ(s.cpu, 2);
    CHECK_EQ(s.vector, 0x41);
    CHECK_EQ(vtio_intr_count(intr, 2, 0x41), 1);
    msix_control(msix, 0);

    vtio_msi_compose(1, 0x50, &addr, &data);
    cfg_w32(RID, msi + VTIO_PCI_MSI_ADDRESS_LO, (uint32_t)addr);
    cfg_w32(RID, msi + VTIO_PCI_MSI_ADDRESS_HI, (uint32_t)(addr >> 32));
    cfg_w16(RID, msi + VTIO_PCI_MSI_DATA_64, (uint16_t)data);
    cfg_w16(RID, msi + VTIO_PCI_MSI_FLAGS, VTIO_PCI_MSI_FLAGS_ENABLE);
    CHECK_EQ(vtio_pci_msi_notify(dev, 0), 0);
    CHECK_EQ(s.calls, 2);
    CHECK_EQ(s.cpu, 1);
    CHECK_EQ(s.vector, 0x50);
    vtio_pci_bus_destroy(bus);
    bus = NULL;
    vtio_intr_destroy(intr);
    teardown();
}

/* ---- concurrency: raisers against a masker */

#define CONC_VECTORS  64
#define CONC_RAISERS  4
#define CONC_MASKERS  2            /* unmasks, hence deliveries, race too */
#define CONC_ROUNDS   300          /* at least this many raises per vector */
#define CONC_TOGGLES  1000         /* ... and until the masker did this many */
#define CONC_PER      (CONC_VECTORS / CONC_RAISERS)

struct raiser {
    pthread_t thread;
    struct vtio_pci_dev *dev;
    unsigned first;
    uint32_t raised[CONC_PER];
    unsigned rounds, sent_now, left_pending;
    int error;                 /* first unexpected notify result, or timeout */
};

static atomic_bool conc_stop;
static _Atomic unsigned conc_toggles;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Raises each of its vectors in turn; after each raise waits until the
 * capture has seen that many messages of the vector, so no two raises of a
 * vector ever merge and the count must match exactly.  Runs until it did
 * CONC_ROUNDS rounds and the masker had time to interfere. */
static void *raiser_main(void *arg)
{
    struct raiser *r = arg;
    double give_up = now_s() + 20;
    while (!r->error && (r->rounds < CONC_ROUNDS || atomic_load(&conc_toggles) < CONC_TOGGLES)) {
        for (unsigned i = 0; i < CONC_PER && !r->error; i++) {
            unsigned v = r->first + i;
            int rc = vtio_pci_msix_notify(r->dev, v);
            if (rc == 0)
                r->sent_now++;
            else if (rc == 1)
                r->left_pending++;
            else
                r->error = rc;
            r->raised[i]++;
            while (atomic_load(&cap->per_tag[v]) < r->raised[i]) {
                if (now_s() > give_up) {
                    r->error = -ETIMEDOUT;
                    break;
                }
                sched_yield();
            }
        }
        r->rounds++;
    }
    return NULL;
}

/* Keeps a mask in place for a moment: either spinning (raisers on other
 * CPUs run into it) or sleeping up to 50 us (raisers get every CPU). */
static void hold(uint64_t r)
{
    static _Atomic unsigned sink;
    if (r & 1) {
        struct timespec ts = { 0, (long)(r % 50000) };
        nanosleep(&ts, NULL);
        return;
    }
    for (uint64_t i = 0; i < r % 4096; i++)
        atomic_fetch_add_explicit(&sink, 1, memory_order_relaxed);
}

/* Masks and unmasks runs of random vectors, and now and then the whole function,
 * always leaving everything unmasked between toggles. */
struct masker {
    pthread_t thread;
    unsigned msix;
    uint64_t seed;
};

static void *masker_main(void *arg)
{
    struct masker *m = arg;
    unsigned msix = m->msix;
    uint64_t seed = m->seed;
    while (!atomic_load(&conc_stop)) {
        unsigned v = (unsigned)(vtio_test_rand(&seed) % CONC_VECTORS);
        unsigned n = 1 + (unsigned)(vtio_test_rand(&seed) % 16);
        for (unsigned i = 0; i < n; i++)
            msix_mask((v + i) % CONC_VECTORS, true);
        hold(vtio_test_rand(&seed));
        for (unsigned i = n; i-- > 0;)
            msix_mask((v + i) % CONC_VECTORS, false);
        if (atomic_fetch_add(&conc_toggles, 1) % 8 == 0) {
            msix_control(msix, VTIO_PCI_MSIX_FLAGS_ENABLE | VTIO_PCI_MSIX_FLAGS_MASKALL);
            hold(vtio_test_rand(&seed));
            msix_control(msix, VTIO_PCI_MSIX_FLAGS_ENABLE);
        }
    }
    return NULL;
}

static void t_concurrent_masking(void)
{
    struct fake f = { 0 };
    struct vtio_pci_dev_info info = std_info(&f);
    info.msix_vectors = CONC_VECTORS;
    unsigned msix, msi;
    struct vtio_pci_dev *dev = std_dev(&f, &info, &msix, &msi);
    for (unsigned v = 0; v < CONC_VECTORS; v++)
        msix_program(v, MSG_ADDR(v), v, false);
    msix_control(msix, VTIO_PCI_MSIX_FLAGS_ENABLE);

    struct raiser r[CONC_RAISERS];
    struct masker m[CONC_MASKERS];
    memset(r, 0, sizeof(r));
    atomic_store(&conc_stop, false);
    atomic_store(&conc_toggles, 0);
    for (unsigned i = 0; i < CONC_MASKERS; i++) {
        m[i] = (struct masker){ .msix = msix, .seed = 12345 + i };
        CHECK_EQ(pthread_create(&m[i].thread, NULL, masker_main, &m[i]), 0);
    }
    for (unsigned i = 0; i < CONC_RAISERS; i++) {
        r[i].dev = dev;
        r[i].first = i * CONC_PER;
        CHECK_EQ(pthread_create(&r[i].thread, NULL, raiser_main, &r[i]), 0);
    }
    for (unsigned i = 0; i < CONC_RAISERS; i++)
        pthread_join(r[i].thread, NULL);
    atomic_store(&conc_stop, true);
    for (unsigned i = 0; i < CONC_MASKERS; i++)
        pthread_join(m[i].thread, NULL);

    /* Each masker undoes every mask it sets, so the function ends
     * unmasked: nothing may remain pending, and every raise was delivered
     * exactly once. */
    CHECK_EQ(cfg_r16(RID, msix + VTIO_PCI_MSIX_FLAGS), VTIO_PCI_MSIX_FLAGS_ENABLE | 63);
    CHECK_EQ(vtio_mem_read64(mem, PBA_AT), 0);
    uint64_t total = 0, pending = 0;
    for (unsigned i = 0; i < CONC_RAISERS; i++) {
        CHECKF(r[i].error == 0, "raiser %u: %d", i, r[i].error);
        CHECK_GE(r[i].rounds, CONC_ROUNDS);
        pending += r[i].left_pending;
        for (unsigned k = 0; k < CONC_PER; k++) {
            unsigned v = r[i].first + k;
            CHECK_EQ(r[i].raised[k], r[i].rounds);
            CHECK_EQ(cap->per_tag[v], r[i].raised[k]);
            total += r[i].raised[k];
        }
    }
    CHECK_EQ(cap->count, total);
    CHECK_EQ(cap->mismatches, 0);
    printf("    %llu raised, %llu of them left pending and delivered on unmask, "
           "%u mask toggles\n",
           (unsigned long long)total, (unsigned long long)pending,
           atomic_load(&conc_toggles));
    teardown();
}

static const struct vtio_test tests[] = {
    { "msix_table", "MSI-X entries reset masked, take dword and qword accesses, keep RO bits; the PBA ignores writes", t_msix_table },
    { "msix_deliver", "an enabled unmasked vector sends its entry's address/data; bad vector -EINVAL, disabled or absent -ENODEV", t_msix_deliver },
    { "msix_pending", "masked vectors (per vector or function mask) set PBA bits readable through the BAR and send once on unmask or enable", t_msix_pending },
    { "bus_master", "with BME clear the DMA port returns -EPERM, notify fails, and pending vectors wait for BME", t_bus_master },
    { "msi", "MSI sends address/data with the vector in the low bits, masks into read-only pending bits, folds and clamps MME", t_msi },
    { "intr_sink", "MSI-X and MSI messages composed for (cpu, vector) reach the interrupt sink's handler", t_intr_sink },
    { "concurrent_masking", "raisers on 4 threads against 2 maskers toggling vector and function masks: every raise delivered exactly once", t_concurrent_masking },
};

VTIO_TEST_MAIN(tests)
