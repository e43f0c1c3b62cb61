/*
 * The whole machine end to end: boot, enumerate, place BARs, set up MSI-X,
 * then drive every DMA channel at once from several CPU threads through the
 * host driver, and check every byte and every interrupt.
 */
#include "harness.h"

#include <vtio/dev/dma_engine.h>
#include <vtio/drv/dma_engine.h>
#include <vtio/host.h>
#include <vtio/intr.h>
#include <vtio/machine.h>
#include <vtio/mem.h>
#include <vtio/page_alloc.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

/* These tests give the engine physical addresses: identity (pass-through)
 * domains make DMA address = physical address with the IOMMU on. */
static const struct vtio_host_options identity = { .iommu_mode = VTIO_HOST_IOMMU_PASSTHROUGH };

struct system {
    struct vtio_machine *m;
    struct vtio_host *h;
    const struct vtio_pci_function *fn;
    struct vtio_dmae *dma;
};

static void boot(struct system *s, unsigned engines, unsigned channels)
{
    struct vtio_machine_config mc = { .ram_size = 1 * VTIO_GiB, .dma_engines = engines,
                                      .dma_channels = channels };
    CHECK_OK(vtio_machine_create(&mc, &s->m));
    CHECK_OK(vtio_host_boot_opts(s->m, &identity, &s->h));
    s->fn = vtio_pci_find(s->h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, 0);
    CHECK(s->fn != NULL);
    CHECK_OK(vtio_dmae_probe(s->h, s->fn, NULL, &s->dma));
}

static void shutdown_system(struct system *s)
{
    vtio_dmae_remove(s->dma);
    vtio_host_shutdown(s->h);
    vtio_machine_destroy(s->m);
}

static uint64_t alloc(struct system *s, uint64_t size)
{
    uint64_t pa;
    CHECK_OK(vtio_page_alloc(s->h->pages, vtio_page_order(size), 0, &pa));
    return pa;
}

static void t_boot(void)
{
    struct system s;
    boot(&s, 1, 4);
    /* Enumeration saw the device the machine plugged in, where it is. */
    CHECK_EQ(s.fn->rid, VTIO_PCI_RID(0, VTIO_MACHINE_FIRST_DEV, 0));
    CHECK_EQ(s.fn->class_code, VTIO_DMAE_CLASS);
    CHECK_EQ(s.fn->bar[VTIO_DMAE_BAR_REGS].size, VTIO_DMAE_REGS_SIZE);
    CHECK_EQ(s.fn->bar[VTIO_DMAE_BAR_MSIX].size, VTIO_DMAE_MSIX_SIZE);
    CHECK_EQ(s.fn->msix_table_size, 4);
    CHECK_EQ(vtio_dmae_channels(s.dma), 4);
    /* BAR0 answers at the address the OS gave it. */
    struct vtio_mmio bar;
    CHECK_OK(vtio_pci_bar_mmio(s.fn, VTIO_DMAE_BAR_REGS, &bar));
    CHECK_EQ(vtio_mmio_read32(&bar, VTIO_DMAE_ID),
             (uint32_t)VTIO_DMAE_VENDOR_ID << 16 | VTIO_DMAE_DEVICE_ID);
    shutdown_system(&s);
}

/* ---- all channels from several threads */

#define XFERS 24
#define MAXLEN (256 * 1024)

struct worker {
    struct system *s;
    unsigned channel;
    uint64_t src, dst;          /* XFERS * MAXLEN each */
    uint64_t seed;
    int errors;
    unsigned long interrupts_seen;
};

static atomic_ulong callbacks[8];

static void on_irq(void *arg, struct vtio_dmae_chan *ch)
{
    (void)ch;
    atomic_fetch_add(&callbacks[(uintptr_t)arg], 1);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct vtio_mem *mem = w->s->h->mem;
    struct vtio_dmae_chan *ch = vtio_dmae_chan(w->s->dma, w->channel);
    uint8_t *want = malloc(MAXLEN), *got = malloc(MAXLEN);
    uint64_t rng = w->seed;
    for (unsigned i = 0; i < XFERS; i++) {
        uint64_t len = 1 + vtio_test_rand(&rng) % MAXLEN;
        uint64_t src = w->src + (uint64_t)i * MAXLEN, dst = w->dst + (uint64_t)i * MAXLEN;
        vtio_test_fill(want, len, rng);
        vtio_mem_write(mem, src, want, len);
        /* Guard bytes after the destination must survive. */
        vtio_mem_set(mem, dst, 0xee, MAXLEN);
        int64_t c;
        if (i % 3 == 2)          /* every third one a fill, to mix operations */
            c = vtio_dmae_prep_fill(ch, dst, 0x1122334455667788ull, len, VTIO_DMAE_FLAG_INTR);
        else
            c = vtio_dmae_prep_copy(ch, dst, src, len, VTIO_DMAE_FLAG_INTR);
        vtio_dmae_issue(ch);
        struct vtio_dmae_completion rec;
        if (c < 0 || vtio_dmae_wait(ch, c, 5000000000ull, &rec) < 0 ||
            rec.status != VTIO_DMAE_STATUS_SUCCESS || rec.bytes != len) {
            w->errors++;
            continue;
        }
        if (i % 3 == 2)
            for (uint64_t k = 0; k < len; k++)
                want[k] = (uint8_t)(0x1122334455667788ull >> (8 * (k % 8)));
        vtio_mem_read(mem, dst, got, MAXLEN);
        if (memcmp(got, want, len) != 0)
            w->errors++;
        for (uint64_t k = len; k < MAXLEN; k++)
            if (got[k] != 0xee) {
                w->errors++;
                break;
            }
    }
    free(want);
    free(got);
    return NULL;
}

static void t_all_channels_concurrently(void)
{
    struct system s;
    boot(&s, 1, 4);
    struct worker w[4];
    pthread_t tid[4];
    for (unsigned c = 0; c < 4; c++) {
        atomic_store(&callbacks[c], 0);
        vtio_dmae_set_callback(vtio_dmae_chan(s.dma, c), on_irq, (void *)(uintptr_t)c);
        w[c] = (struct worker){ .s = &s, .channel = c, .seed = 100 + c,
                                .src = alloc(&s, (uint64_t)XFERS * MAXLEN),
                                .dst = alloc(&s, (uint64_t)XFERS * MAXLEN) };
    }
    for (unsigned c = 0; c < 4; c++)
        CHECK_EQ(pthread_create(&tid[c], NULL, worker_main, &w[c]), 0);
    for (unsigned c = 0; c < 4; c++)
        pthread_join(tid[c], NULL);
    for (unsigned c = 0; c < 4; c++) {
        CHECK_EQ(w[c].errors, 0);
        /* One interrupt per descriptor, delivered to this channel's handler. */
        CHECK_EQ(atomic_load(&callbacks[c]), XFERS);
        struct vtio_dmae_chan_stats st;
        vtio_dmae_chan_stats(vtio_dmae_chan(s.dma, c), &st);
        CHECK_EQ(st.completed, XFERS);
        CHECK_EQ(st.interrupts, XFERS);
        unsigned cpu, vector;
        CHECK_OK(vtio_pci_irq_vector(s.h, s.fn, c, &cpu, &vector));
        CHECK_EQ(vtio_intr_count(s.h->intr, cpu, vector), XFERS);
        vtio_dmae_set_callback(vtio_dmae_chan(s.dma, c), NULL, NULL);
    }
    shutdown_system(&s);
}

/* Two threads share one channel: the channel lock keeps the ring sane. */
static void t_shared_channel(void)
{
    struct system s;
    boot(&s, 1, 1);
    struct worker w[2];
    pthread_t tid[2];
    for (unsigned i = 0; i < 2; i++)
        w[i] = (struct worker){ .s = &s, .channel = 0, .seed = 7 + i,
                                .src = alloc(&s, (uint64_t)XFERS * MAXLEN),
                                .dst = alloc(&s, (uint64_t)XFERS * MAXLEN) };
    for (unsigned i = 0; i < 2; i++)
        CHECK_EQ(pthread_create(&tid[i], NULL, worker_main, &w[i]), 0);
    for (unsigned i = 0; i < 2; i++)
        pthread_join(tid[i], NULL);
    CHECK_EQ(w[0].errors, 0);
    CHECK_EQ(w[1].errors, 0);
    shutdown_system(&s);
}

/* Several engines on the bus each get their own BARs and vectors. */
static void t_several_engines(void)
{
    struct vtio_machine *m;
    struct vtio_host *h;
    struct vtio_machine_config mc = { .ram_size = 512 * VTIO_MiB, .dma_engines = 3 };
    CHECK_OK(vtio_machine_create(&mc, &m));
    CHECK_OK(vtio_host_boot_opts(m, &identity, &h));
    struct vtio_dmae *dma[3];
    uint64_t src = 0, dst = 0;
    CHECK_OK(vtio_page_alloc(h->pages, 0, 0, &src));
    CHECK_OK(vtio_page_alloc(h->pages, 0, 0, &dst));
    for (unsigned i = 0; i < 3; i++) {
        const struct vtio_pci_function *fn =
            vtio_pci_find(h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, i);
        CHECK(fn != NULL);
        CHECK_OK(vtio_dmae_probe(h, fn, NULL, &dma[i]));
    }
    for (unsigned i = 0; i < 3; i++) {
        struct vtio_dmae_chan *ch = vtio_dmae_chan(dma[i], 1);
        int64_t c = vtio_dmae_prep_fill(ch, dst + 8 * i, 0x0101010101010101ull * (i + 1), 8,
                                        VTIO_DMAE_FLAG_INTR);
        vtio_dmae_issue(ch);
        CHECK_OK(vtio_dmae_wait(ch, c, 5000000000ull, NULL));
    }
    for (unsigned i = 0; i < 3; i++)
        CHECK_EQ(vtio_mem_read8(h->mem, dst + 8 * i + 7), i + 1);
    for (unsigned i = 0; i < 3; i++)
        vtio_dmae_remove(dma[i]);
    vtio_host_shutdown(h);
    vtio_machine_destroy(m);
}

static const struct vtio_test tests[] = {
    { "boot", "the OS finds the engine by ECAM, places its BARs and reaches its registers",
      t_boot },
    { "all_channels_concurrently",
      "4 threads drive 4 channels at once: every byte, guard byte and interrupt checks out",
      t_all_channels_concurrently },
    { "shared_channel", "2 threads sharing one channel both get correct results",
      t_shared_channel },
    { "several_engines", "3 engines are enumerated and driven independently",
      t_several_engines },
};
VTIO_TEST_MAIN(tests)
