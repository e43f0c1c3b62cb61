/*
 * Overlap: how much of its speed a CPU-bound loop keeps while a 64 MiB copy
 * is in flight, against the same loop alone in the same run.  The loop is a
 * cache-resident integer hash, so it competes with the copy only for CPU
 * time, which is the point: the engine's thread must not steal the CPU that
 * started it.  Target: >= 0.9.
 */
#include "bench.h"

#include <stdatomic.h>

static uint64_t state = 1;

static void unit(void)
{
    uint64_t x = state;
    for (int i = 0; i < 2000; i++)
        x = x * 6364136223846793005ull + 1442695040888963407ull, x ^= x >> 29;
    state = x;
}

static atomic_int done;

static void on_irq(void *arg, struct vtio_dmae_chan *ch)
{
    (void)arg, (void)ch;
    atomic_store_explicit(&done, 1, memory_order_release);
}

int main(void)
{
    struct bench_rig r;
    bench_rig_up(&r, 1 * VTIO_GiB, 1, false);
    const uint64_t size = 64ull << 20;
    uint64_t src = bench_alloc(&r, size, NULL), dst = bench_alloc(&r, size, NULL);
    struct vtio_dmae_chan *ch = vtio_dmae_chan(r.dev, 0);
    vtio_dmae_set_callback(ch, on_irq, NULL);

    double alone = 0, during = 0, copy_s = 0;
    for (int round = 0; round < 10; round++) {
        /* The loop alone, for about as long as a copy takes. */
        double t0 = bench_now(), t;
        unsigned long n = 0;
        do {
            unit();
            n++;
        } while ((t = bench_now()) - t0 < (copy_s > 0 ? copy_s : 0.02));
        double rate_alone = n / (t - t0);

        atomic_store(&done, 0);
        int64_t c = vtio_dmae_prep_copy(ch, dst, src, size, VTIO_DMAE_FLAG_INTR);
        t0 = bench_now();
        vtio_dmae_issue(ch);
        n = 0;
        while (!atomic_load_explicit(&done, memory_order_acquire)) {
            unit();
            n++;
        }
        t = bench_now();
        if (vtio_dmae_wait(ch, c, 0, NULL) < 0)
            bench_die("wait");
        copy_s = t - t0;
        if (round > 0) {        /* round 0 warms up */
            alone += rate_alone;
            during += n / copy_s;
        }
    }
    printf("{\"bench\": \"overlap\", \"copy_bytes\": %llu, \"copy_ms\": %.2f, "
           "\"loop_rate_alone\": %.0f, \"loop_rate_during_copy\": %.0f, \"ratio\": %.3f, "
           "\"target_ratio\": 0.9}\n",
           (unsigned long long)size, copy_s * 1e3, alone / 9, during / 9, during / alone);
    vtio_dmae_set_callback(ch, NULL, NULL);
    bench_rig_down(&r);
    return 0;
}
