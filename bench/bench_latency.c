/*
 * Doorbell-to-handler latency of a 64-byte copy: from just before the
 * doorbell write to the moment the channel's interrupt handler runs (the
 * driver's callback, on the device thread, takes the timestamp).  "warm":
 * back to back, the channel still polling for work; "cold": after a pause
 * long enough for the channel thread to have gone to sleep.
 * Target: warm median under 2 us.
 */
#include "bench.h"

#include <stdatomic.h>
#include <unistd.h>

static _Atomic uint64_t handled_at;

static void on_irq(void *arg, struct vtio_dmae_chan *ch)
{
    (void)arg, (void)ch;
    atomic_store_explicit(&handled_at, bench_now_ns(), memory_order_release);
}

static void measure(struct bench_rig *r, uint64_t src, uint64_t dst, uint64_t *lat,
                    size_t n, unsigned pause_us)
{
    struct vtio_dmae_chan *ch = vtio_dmae_chan(r->dev, 0);
    for (size_t i = 0; i < n; i++) {
        if (pause_us)
            usleep(pause_us);
        atomic_store(&handled_at, 0);
        int64_t c = vtio_dmae_prep_copy(ch, dst, src, 64, VTIO_DMAE_FLAG_INTR);
        if (c < 0)
            bench_die("prep");
        uint64_t t0 = bench_now_ns();
        vtio_dmae_issue(ch);
        uint64_t t1;
        while (!(t1 = atomic_load_explicit(&handled_at, memory_order_acquire)))
            __builtin_ia32_pause();
        lat[i] = t1 - t0;
        if (vtio_dmae_wait(ch, c, 0, NULL) < 0)
            bench_die("wait");
    }
}

int main(void)
{
    struct bench_rig r;
    bench_rig_up(&r, 1 * VTIO_GiB, 1, false);
    uint64_t src = bench_alloc(&r, 4096, NULL), dst = bench_alloc(&r, 4096, NULL);
    vtio_dmae_set_callback(vtio_dmae_chan(r.dev, 0), on_irq, NULL);

    enum { WARM = 20000, COLD = 200 };
    static uint64_t warm[WARM], cold[COLD];
    measure(&r, src, dst, warm, 1000, 0);            /* warm-up */
    measure(&r, src, dst, warm, WARM, 0);
    measure(&r, src, dst, cold, COLD, 2000);

    printf("{\"bench\": \"doorbell_latency\", \"unit\": \"ns\", \"copy_bytes\": 64, "
           "\"warm\": {\"samples\": %d, \"median\": %llu, \"p99\": %llu, \"min\": %llu}, "
           "\"cold\": {\"samples\": %d, \"median\": %llu, \"p99\": %llu}, "
           "\"target_median_ns\": 2000}\n",
           WARM, (unsigned long long)bench_quantile(warm, WARM, 0.5),
           (unsigned long long)bench_quantile(warm, WARM, 0.99),
           (unsigned long long)bench_quantile(warm, WARM, 0.0), COLD,
           (unsigned long long)bench_quantile(cold, COLD, 0.5),
           (unsigned long long)bench_quantile(cold, COLD, 0.99));
    vtio_dmae_set_callback(vtio_dmae_chan(r.dev, 0), NULL, NULL);
    bench_rig_down(&r);
    return 0;
}
