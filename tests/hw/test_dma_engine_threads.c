/*
 * The DMA engine under concurrency: every channel driven at once from
 * several CPU threads, doorbells that race the channel going to sleep,
 * control writes racing work, resets and destroy with work in flight, and
 * an interrupt handler that resets its own channel.
 */
#include "test_dma_engine_fixture.h"

#include <pthread.h>
#include <stdio.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SLOW 1
#else
#define SLOW 0
#endif

/* A worker thread's verdict: the first failure, in words. */
struct verdict {
    char msg[256];
};

#define FAILED(v, ...) (snprintf((v)->msg, sizeof((v)->msg), __VA_ARGS__), false)

/* Waits for HEAD == TAIL without CHECKs (for worker threads). */
static bool wait_idle_quiet(unsigned ch, struct verdict *v)
{
    uint64_t t0 = now_ns();
    while (rd32(ch, VTIO_DMAE_HEAD) != F.tail[ch]) {
        if (state_of(ch) == VTIO_DMAE_STATE_HALTED)
            return FAILED(v, "channel %u halted: %s", ch,
                          vtio_dmae_status_name(rd32(ch, VTIO_DMAE_ERROR)));
        if (now_ns() - t0 > WAIT_NS)
            return FAILED(v, "channel %u stuck: HEAD %u TAIL %u", ch,
                          rd32(ch, VTIO_DMAE_HEAD), F.tail[ch]);
        sched_yield();
    }
    return true;
}

/* ---- every channel at once */

#define SRC_AREA   VTIO_MiB                    /* per channel: random source data */
#define SLOT_SIZE  0x10000                     /* per descriptor: a destination slot */
#define MAX_ROUND  8

struct chan_work {
    unsigned ch;
    uint64_t rng;
    uint8_t *src;                              /* host copy of the source area */
    unsigned intr_expected;
    uint64_t descs;
    /* This round: what each descriptor should have left in its slot. */
    unsigned n;
    struct { uint64_t off, len; uint8_t want[4 * 4096 + 8]; } out[MAX_ROUND];
};

static uint64_t src_of(unsigned ch) { return BUF(ch); }
static uint64_t slot_of(unsigned ch, unsigned j) { return BUF(ch) + SRC_AREA + SLOT_SIZE * j; }

static uint64_t rnd(struct chan_work *w, uint64_t n)
{
    return vtio_test_rand(&w->rng) % n;
}

/* Builds and announces a round of 1..MAX_ROUND random descriptors. */
static void round_submit(struct chan_work *w)
{
    unsigned ch = w->ch;
    w->n = 1 + (unsigned)rnd(w, MAX_ROUND);
    for (unsigned j = 0; j < w->n; j++) {
        uint64_t slot = slot_of(ch, j), len = 1 + rnd(w, 4 * 4096);
        uint64_t off = 64 + rnd(w, 4096);
        vtio_mem_set(F.mem, slot, GUARD_BYTE, SLOT_SIZE);
        w->out[j].off = off;
        w->out[j].len = len;
        uint8_t *want = w->out[j].want;
        uint16_t flags = rnd(w, 3) == 0 ? VTIO_DMAE_FLAG_INTR : 0;
        struct vtio_dmae_desc d;
        uint64_t s = rnd(w, SRC_AREA - len);
        switch (rnd(w, 3)) {
        case 0:
            d = desc(VTIO_DMAE_OP_COPY, flags, src_of(ch) + s, slot + off, len);
            memcpy(want, w->src + s, len);
            break;
        case 1: {
            uint64_t pat = vtio_test_rand(&w->rng);
            d = desc(VTIO_DMAE_OP_FILL, flags, pat, slot + off, len);
            for (uint64_t b = 0; b < len; b++)
                want[b] = (uint8_t)(pat >> (8 * (b % 8)));
            break;
        }
        default: {
            /* Gather from up to 4 pieces of the source into up to 4 pieces
             * of the slot, each destination piece followed by a 1-byte gap. */
            struct vtio_dmae_sg sl[4], dl[4];
            unsigned ns = 1 + (unsigned)rnd(w, 4), nd = 1 + (unsigned)rnd(w, 4);
            if (len < 8)
                ns = nd = 1;
            uint64_t left = len, at = 0;
            for (unsigned i = 0; i < ns; i++) {
                uint64_t piece = i == ns - 1 ? left : 1 + rnd(w, left - (ns - 1 - i));
                uint64_t so = rnd(w, SRC_AREA - piece);
                sl[i] = (struct vtio_dmae_sg){ src_of(ch) + so, (uint32_t)piece, 0 };
                memcpy(want + at, w->src + so, piece);
                left -= piece, at += piece;
            }
            left = len;
            uint64_t pos = slot + off;
            for (unsigned i = 0; i < nd; i++) {
                uint64_t piece = i == nd - 1 ? left : 1 + rnd(w, left - (nd - 1 - i));
                dl[i] = (struct vtio_dmae_sg){ pos, (uint32_t)piece, 0 };
                pos += piece + 1;
                left -= piece;
            }
            /* The expected image has the gaps: spread want out. */
            uint8_t tmp[4 * 4096 + 8];
            memcpy(tmp, want, len);
            uint64_t from = 0, to = 0;
            for (unsigned i = 0; i < nd; i++) {
                memcpy(want + to, tmp + from, dl[i].len);
                from += dl[i].len, to += dl[i].len;
                if (i != nd - 1)
                    want[to++] = GUARD_BYTE;
            }
            w->out[j].len = to;
            uint64_t lists = SGL(ch) + 0x800 * j;
            vtio_mem_write(F.mem, lists, sl, ns * sizeof(sl[0]));
            vtio_mem_write(F.mem, lists + 0x400, dl, nd * sizeof(dl[0]));
            d = desc(VTIO_DMAE_OP_COPY_SG, flags, lists, lists + 0x400, len);
            d.src_sg_count = ns;
            d.dst_sg_count = nd;
            break;
        }
        }
        d.completion = COMPL(ch) + 32 * j;
        d.cookie = w->descs++;
        if (flags)
            w->intr_expected++;
        put(ch, &d);
    }
    doorbell(ch);
}

static bool round_check(struct chan_work *w, struct verdict *v)
{
    static _Thread_local uint8_t got[SLOT_SIZE];
    unsigned ch = w->ch;
    if (!wait_idle_quiet(ch, v))
        return false;
    for (unsigned j = 0; j < w->n; j++) {
        struct vtio_dmae_completion c = record(COMPL(ch) + 32 * j);
        if (c.status != VTIO_DMAE_STATUS_SUCCESS || c.cookie != w->descs - w->n + j)
            return FAILED(v, "channel %u: record %u status %#x cookie %llu", ch, j, c.status,
                          (unsigned long long)c.cookie);
        vtio_mem_read(F.mem, slot_of(ch, j), got, SLOT_SIZE);
        uint64_t off = w->out[j].off, len = w->out[j].len;
        for (uint64_t b = 0; b < SLOT_SIZE; b++) {
            uint8_t want = b >= off && b < off + len ? w->out[j].want[b - off] : GUARD_BYTE;
            if (got[b] != want)
                return FAILED(v, "channel %u slot %u byte %llu: %#x, want %#x", ch, j,
                              (unsigned long long)b, got[b], want);
        }
    }
    return true;
}

struct worker {
    pthread_t thread;
    struct chan_work *w[2];
    unsigned rounds;
    struct verdict v;
};

static void *worker_main(void *arg)
{
    struct worker *k = arg;
    for (unsigned r = 0; r < k->rounds; r++) {
        round_submit(k->w[0]);
        round_submit(k->w[1]);
        if (!round_check(k->w[0], &k->v) || !round_check(k->w[1], &k->v))
            break;
    }
    return NULL;
}

static void t_all_channels(void)
{
    enum { NCH = VTIO_DMAE_MAX_CHANNELS, NTHREADS = NCH / 2 };
    static struct chan_work work[NCH];
    static struct worker workers[NTHREADS];
    fixture_up(NCH);
    for (unsigned ch = 0; ch < NCH; ch++) {
        struct chan_work *w = &work[ch];
        memset(w, 0, sizeof(*w));
        w->ch = ch;
        w->rng = 0x1234 + ch;
        w->src = random_at(src_of(ch), SRC_AREA, 500 + ch);
        chan_start(ch, 64);
    }
    for (unsigned t = 0; t < NTHREADS; t++) {
        workers[t] = (struct worker){ .w = { &work[t], &work[t + NTHREADS] },
                                      .rounds = SLOW ? 60 : 300 };
        CHECK_OK(-pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]));
    }
    for (unsigned t = 0; t < NTHREADS; t++)
        pthread_join(workers[t].thread, NULL);
    for (unsigned t = 0; t < NTHREADS; t++)
        CHECKF(!workers[t].v.msg[0], "worker %u: %s", t, workers[t].v.msg);
    uint64_t total = 0;
    for (unsigned ch = 0; ch < NCH; ch++) {
        wait_irqs(ch, work[ch].intr_expected);
        CHECK_EQ(rd64(ch, VTIO_DMAE_COMPLETED), work[ch].descs);
        total += work[ch].descs;
        free(work[ch].src);
    }
    usleep(10000);
    for (unsigned ch = 0; ch < NCH; ch++)
        CHECK_EQ(atomic_load(&F.irqs[ch]), work[ch].intr_expected);
    printf("    %llu descriptors on %u channels from %u threads\n",
           (unsigned long long)total, NCH, NTHREADS);
    fixture_down();
}

/* ---- doorbells racing sleep */

struct pinger {
    pthread_t thread;
    unsigned ch, n;
    struct verdict v;
};

/* One descriptor at a time, with pauses that let the channel spin, yield or
 * fall asleep before the next doorbell: a lost wakeup hangs a wait. */
static void *pinger_main(void *arg)
{
    struct pinger *p = arg;
    uint64_t rng = p->ch + 1;
    for (unsigned i = 0; i < p->n; i++) {
        struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_FILL, 0, i, BUF(p->ch), 8);
        put(p->ch, &d);
        doorbell(p->ch);
        if (!wait_idle_quiet(p->ch, &p->v))
            return NULL;
        if (vtio_mem_read64(F.mem, BUF(p->ch)) != i) {
            snprintf(p->v.msg, sizeof(p->v.msg), "channel %u: fill %u missing", p->ch, i);
            return NULL;
        }
        uint64_t r = vtio_test_rand(&rng) % 100;
        uint64_t pause_ns = r < 60 ? 0 : r < 80 ? 10000 : r < 97 ? 40000 : 300000;
        uint64_t t0 = now_ns();
        while (now_ns() - t0 < pause_ns)
            sched_yield();
    }
    return NULL;
}

static void t_doorbell_races_sleep(void)
{
    enum { NCH = 3 };
    static struct pinger p[NCH];
    fixture_up(NCH);
    for (unsigned ch = 0; ch < NCH; ch++) {
        chan_start(ch, 16);
        p[ch] = (struct pinger){ .ch = ch, .n = SLOW ? 1000 : 4000 };
        CHECK_OK(-pthread_create(&p[ch].thread, NULL, pinger_main, &p[ch]));
    }
    for (unsigned ch = 0; ch < NCH; ch++)
        pthread_join(p[ch].thread, NULL);
    for (unsigned ch = 0; ch < NCH; ch++) {
        CHECKF(!p[ch].v.msg[0], "%s", p[ch].v.msg);
        CHECK_EQ(rd64(ch, VTIO_DMAE_COMPLETED), p[ch].n);
    }
    fixture_down();
}

/* ---- control writes racing work */

static _Atomic bool stop_racing;

static void *doorbell_spammer(void *arg)
{
    (void)arg;
    uint32_t t = 0;
    while (!atomic_load(&stop_racing)) {
        t = (t + 1) & 15;
        wr32(0, VTIO_DMAE_TAIL, t);
        (void)rd32(0, VTIO_DMAE_STATUS);
        (void)rd64(0, VTIO_DMAE_COMPLETED);
    }
    return NULL;
}

static void *control_spammer(void *arg)
{
    (void)arg;
    uint64_t rng = 99;
    while (!atomic_load(&stop_racing)) {
        switch (vtio_test_rand(&rng) % 4) {
        case 0: wr32(0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_RESET); break;
        case 1: wr32(0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN | VTIO_DMAE_CTRL_IE); break;
        case 2: wr32(0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_IE); break;
        default:
            vtio_mem_write32(F.mem, BAR0_BASE + VTIO_DMAE_GCTRL, VTIO_DMAE_GCTRL_RESET);
            break;
        }
        sched_yield();
    }
    return NULL;
}

static void t_control_races(void)
{
    fixture_up(1);
    chan_start(0, 16);
    /* Every slot holds a valid FILL, so whatever TAIL says is runnable. */
    for (unsigned i = 0; i < 16; i++) {
        struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_FILL, VTIO_DMAE_FLAG_INTR, i,
                                       BUF(0) + 4096 * i, 4096);
        d.completion = COMPL(0) + 32 * i;
        put(0, &d);
    }
    atomic_store(&stop_racing, false);
    pthread_t a, b;
    CHECK_OK(-pthread_create(&a, NULL, doorbell_spammer, NULL));
    CHECK_OK(-pthread_create(&b, NULL, control_spammer, NULL));
    usleep(SLOW ? 300000 : 500000);
    atomic_store(&stop_racing, true);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    CHECK(rd64(0, VTIO_DMAE_COMPLETED) < (1ull << 40));     /* something sane */
    /* Whatever happened, RESET brings the channel back to a known state. */
    wr32(0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_RESET);
    CHECK_EQ(rd32(0, VTIO_DMAE_STATUS), VTIO_DMAE_STATE_IDLE);
    CHECK_EQ(rd64(0, VTIO_DMAE_COMPLETED), 0);
    chan_start(0, 16);
    struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_FILL, 0, 0x77, BUF(1), 8);
    put(0, &d);
    doorbell(0);
    CHECK(wait_idle(0));
    CHECK_EQ(vtio_mem_read64(F.mem, BUF(1)), 0x77);
    fixture_down();
}

/* ---- resets and destroy with work in flight */

#define BIG_LEN (64 * VTIO_MiB)

/* Queues a 64 MiB copy and then 6 small ones on channel 0; returns the data. */
static uint8_t *queue_big_work(void)
{
    uint8_t *data = random_at(BIG_SRC, BIG_LEN, 3);
    vtio_mem_set(F.mem, BIG_DST, GUARD_BYTE, BIG_LEN);
    struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_COPY, 0, BIG_SRC, BIG_DST, BIG_LEN);
    d.completion = COMPL(0);
    put(0, &d);
    for (unsigned i = 1; i < 7; i++) {
        d = desc(VTIO_DMAE_OP_COPY, 0, BIG_SRC, BUF(1) + 0x10000 * i, 4096);
        d.completion = COMPL(0) + 32 * i;
        vtio_mem_set(F.mem, d.dst, GUARD_BYTE, 4096);
        put(0, &d);
    }
    return data;
}

/* After the channel stopped: every descriptor either completed whole (record
 * and data) or did not start (no record, destination untouched), and those
 * that completed come first.  @returns how many completed. */
static unsigned check_all_or_nothing(const uint8_t *data)
{
    unsigned done = 0;
    bool stopped = false;
    for (unsigned i = 0; i < 7; i++) {
        struct vtio_dmae_completion c = record(COMPL(0) + 32 * i);
        uint64_t dst = i ? BUF(1) + 0x10000 * i : BIG_DST;
        uint64_t len = i ? 4096 : BIG_LEN;
        if (c.status == VTIO_DMAE_STATUS_SUCCESS) {
            CHECKF(!stopped, "descriptor %u completed after one that did not", i);
            expect_ram(dst, data, len);
            done++;
        } else {
            CHECK_EQ(c.status, 0);
            stopped = true;
            guard_check(dst + GUARD, len - 2 * GUARD, true);
        }
    }
    return done;
}

static void t_reset_in_flight(void)
{
    fixture_up(1);
    chan_start(0, 16);
    uint8_t *data = queue_big_work();
    doorbell(0);
    /* Wait until the big copy is under way, then reset. */
    uint64_t t0 = now_ns();
    while (!(rd32(0, VTIO_DMAE_STATUS) & VTIO_DMAE_STATUS_BUSY) && now_ns() - t0 < WAIT_NS)
        ;
    wr32(0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_RESET);
    CHECK_EQ(rd32(0, VTIO_DMAE_STATUS), VTIO_DMAE_STATE_IDLE);
    CHECK_EQ(rd32(0, VTIO_DMAE_HEAD), 0);
    CHECK_EQ(rd64(0, VTIO_DMAE_COMPLETED), 0);
    usleep(20000);
    unsigned done = check_all_or_nothing(data);
    printf("    %u of 7 descriptors had completed at the reset\n", done);
    CHECK_LT(done, 7);
    free(data);
    /* It runs again from slot 0. */
    chan_start(0, 16);
    struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_FILL, 0, 0x42, BUF(2), 8);
    put(0, &d);
    doorbell(0);
    CHECK(wait_idle(0));
    CHECK_EQ(vtio_mem_read64(F.mem, BUF(2)), 0x42);
    fixture_down();
}

static void t_destroy_in_flight(void)
{
    fixture_up(4);
    for (unsigned ch = 0; ch < 4; ch++)
        chan_start(ch, 16);
    uint8_t *data = queue_big_work();
    for (unsigned ch = 1; ch < 4; ch++) {
        for (unsigned i = 0; i < 10; i++) {
            struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_FILL, VTIO_DMAE_FLAG_INTR, i,
                                           BUF(ch) + 0x1000 * i, 0x1000);
            put(ch, &d);
        }
    }
    for (unsigned ch = 0; ch < 4; ch++)
        doorbell(ch);
    uint64_t t0 = now_ns();
    while (!(rd32(0, VTIO_DMAE_STATUS) & VTIO_DMAE_STATUS_BUSY) && now_ns() - t0 < WAIT_NS)
        ;
    vtio_dma_engine_destroy(F.eng);
    F.eng = NULL;
    uint64_t took = now_ns() - t0;
    CHECK_LT(took, WAIT_NS);
    unsigned done = check_all_or_nothing(data);
    printf("    destroy took %.1f ms; %u of 7 descriptors had completed\n", took / 1e6, done);
    free(data);
    vtio_pci_bus_destroy(F.bus);
    vtio_intr_destroy(F.intr);
    vtio_mem_destroy(F.mem);
}

/* ---- a handler that resets its own channel */

static void reset_hook(unsigned ch)
{
    wr32(ch, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_RESET);
}

static void t_handler_resets_channel(void)
{
    fixture_up(1);
    chan_start(0, 16);
    atomic_store(&F.hook, reset_hook);
    struct vtio_dmae_desc d = desc(VTIO_DMAE_OP_FILL, VTIO_DMAE_FLAG_INTR, 1, BUF(0), 8);
    put(0, &d);
    d.dst = BUF(0) + 8;
    put(0, &d);                                  /* behind it: dropped by the reset */
    doorbell(0);
    wait_irqs(0, 1);
    CHECK_EQ(state_of(0), VTIO_DMAE_STATE_IDLE);
    CHECK_EQ(rd32(0, VTIO_DMAE_HEAD), 0);
    CHECK_EQ(rd64(0, VTIO_DMAE_COMPLETED), 0);
    usleep(5000);
    CHECK_EQ(vtio_mem_read64(F.mem, BUF(0)), 1);
    CHECK_EQ(vtio_mem_read64(F.mem, BUF(0) + 8), 0);
    atomic_store(&F.hook, NULL);
    chan_start(0, 16);
    d = desc(VTIO_DMAE_OP_FILL, 0, 2, BUF(0) + 16, 8);
    put(0, &d);
    doorbell(0);
    CHECK(wait_idle(0));
    CHECK_EQ(vtio_mem_read64(F.mem, BUF(0) + 16), 2);
    fixture_down();
}

static const struct vtio_test tests[] = {
    { "all_channels", "8 channels driven by 4 threads with random COPY/FILL/COPY_SG "
      "rounds: every byte, guard, record and interrupt checks out", t_all_channels },
    { "doorbell_races_sleep", "single doorbells with pauses that let channels spin, yield "
      "and sleep are never lost", t_doorbell_races_sleep },
    { "control_races", "doorbells racing EN, RESET and GCTRL.RESET from other threads "
      "neither hang nor corrupt the channel", t_control_races },
    { "reset_in_flight", "RESET during a 64 MiB copy waits for it: each descriptor is "
      "all or nothing, and the channel restarts cleanly", t_reset_in_flight },
    { "destroy_in_flight", "destroy with work queued on 4 channels finishes the copy in "
      "progress, runs nothing after it, and returns", t_destroy_in_flight },
    { "handler_resets_channel", "an interrupt handler may reset its own channel without "
      "deadlock; the work behind it is dropped", t_handler_resets_channel },
};
VTIO_TEST_MAIN(tests)
