/*
 * vtio-soak: DMA, mapping and invalidation all at once, for a bounded time,
 * with every byte checked.
 *
 * The machine has --engines DMA engines of --channels channels (4 x 2 by
 * default), each taken over by the host's DMA engine driver, with the
 * IOMMU in the chosen --mode (strict, lazy, passthrough or none).  Then,
 * until --seconds have passed:
 *  - one submitter per channel (soak_dma.c) keeps it busy with copies,
 *    scatter-gather copies, fills and compares of 1 byte .. 1 MiB at random
 *    sub-page offsets, mapping each buffer for just its one descriptor, so
 *    unmaps and their IOTLB invalidations run beside other channels' DMA;
 *  - --mappers threads (soak_churn.c) map and unmap other buffers nonstop on
 *    the same devices and flush the flush queues;
 *  - in strict and lazy mode, a probe (soak_probe.c) on an engine of its own
 *    DMAs through IOVAs it has just unmapped, which must be refused.
 * Every buffer sits in a 2 MiB block of guard pattern (soak_verify.c); after
 * each completion the destination, the source and the guard bytes around
 * both are checked byte for byte, and every mapping is checked against the
 * IOMMU's page tables (soak_map.c).
 *
 * At the end: every block is checked whole; per channel, the descriptors
 * issued, the driver's count and the device's COMPLETED register must agree
 * (fewer completed: lost; more: duplicated); every IOMMU fault must be one
 * the probe caused (a fault handler on every domain, then the fault log);
 * after the drivers are removed the DMA layer must have unmapped exactly as
 * much as it mapped.  Any failure (wrong byte, completion error, completion
 * later than --timeout-ms, unexpected fault, host error message) is printed
 * on stderr when it happens and makes the exit status 1.
 *
 * Output: one JSON object on stdout (the numbers, what was verified, and
 * "errors"), one human line on stderr.  docs/soak.md explains both.
 */
#include "soak.h"

#include <vtio/dev/dma_engine.h>
#include <vtio/device.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>
#include <vtio/vtd.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_REPORTED 20            /* failures printed in full */

static const char *const mode_name[] = { "strict", "lazy", "passthrough", "none" };

/* ---- shared helpers (soak.h) */

uint64_t soak_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void soak_fail(struct soak *s, const char *fmt, ...)
{
    unsigned n = atomic_fetch_add(&s->failures, 1) + 1;
    atomic_store(&s->stop, true);
    if (n > MAX_REPORTED)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "vtio-soak: FAIL: %s\n", msg);
}

bool soak_should_stop(struct soak *s)
{
    return atomic_load_explicit(&s->stop, memory_order_relaxed) ||
           soak_now_ns() >= s->deadline_ns;
}

bool soak_fault_expected(struct soak *s, const struct vtio_iommu_fault *f)
{
    if (!s->probe || f->is_interrupt || f->sid != s->probe->rid)
        return false;
    bool found = false;
    pthread_mutex_lock(&s->stale_lock);
    for (size_t i = s->n_stale; i-- > 0 && !found;)
        found = f->write == s->stale[i].write && f->addr >= s->stale[i].lo &&
                f->addr < s->stale[i].hi;
    pthread_mutex_unlock(&s->stale_lock);
    return found;
}

void soak_counters_add(struct soak_counters *a, const struct soak_counters *b)
{
    /* struct soak_counters is nothing but uint64_t fields */
    uint64_t *x = (uint64_t *)a;
    const uint64_t *y = (const uint64_t *)b;
    for (size_t i = 0; i < sizeof(*a) / sizeof(uint64_t); i++)
        x[i] += y[i];
}

/* ---- options */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vtio-soak [options]\n"
            "  --seconds N        how long to run (default 10; fractions allowed)\n"
            "  --mode M           strict | lazy | passthrough | none (default lazy)\n"
            "  --engines N        DMA engines under load, 1..8 (default 4; 7 with the probe)\n"
            "  --channels N       channels per engine, 1..8 (default 2)\n"
            "  --mappers N        map/unmap threads without DMA, 0..64 (default 2)\n"
            "  --depth N          descriptors in flight per channel, 1..%d (default 2)\n"
            "  --max-len BYTES    largest transfer, 1..%llu (default %llu)\n"
            "  --timeout-ms N     a completion later than this is lost (default 5000)\n"
            "  --seed N           random seed (default: from the clock; printed)\n"
            "  --no-probe         no stray-access probe (strict and lazy have one)\n"
            "  --verbose          also print the host's fault lines\n",
            SOAK_MAX_DEPTH, (unsigned long long)SOAK_MAX_LEN, (unsigned long long)SOAK_MAX_LEN);
}

static bool parse_uint(const char *arg, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 0);
    if (errno || end == arg || *end || arg[0] == '-' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static int parse_mode(const char *arg)
{
    for (unsigned i = 0; i < sizeof(mode_name) / sizeof(mode_name[0]); i++)
        if (strcmp(arg, mode_name[i]) == 0)
            return (int)i;
    return -1;
}

/* @returns 0; 1 for --help; -1 bad usage (said on stderr). */
static int parse_opts(int argc, char **argv, struct soak_opts *o)
{
    static const struct option longs[] = {
        { "seconds", 1, NULL, 's' }, { "mode", 1, NULL, 'm' },
        { "engines", 1, NULL, 'e' }, { "channels", 1, NULL, 'c' },
        { "mappers", 1, NULL, 'M' }, { "depth", 1, NULL, 'd' },
        { "max-len", 1, NULL, 'l' }, { "timeout-ms", 1, NULL, 't' },
        { "seed", 1, NULL, 'S' },    { "no-probe", 0, NULL, 'n' },
        { "verbose", 0, NULL, 'v' }, { "help", 0, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    *o = (struct soak_opts){ .seconds = 10, .mode = SOAK_LAZY, .engines = 4, .channels = 2,
                             .mappers = 2, .depth = 2, .max_len = SOAK_MAX_LEN,
                             .seed = soak_now_ns(), .timeout_ms = 5000, .probe = true };
    int c, mode, idx = 0;
    uint64_t v = 0;
    char *end;
    while ((c = getopt_long(argc, argv, "", longs, &idx)) != -1) {
        bool ok = true;
        switch (c) {
        case 's':
            o->seconds = strtod(optarg, &end);
            ok = *optarg && !*end && o->seconds > 0 && o->seconds <= 86400;
            break;
        case 'm':
            ok = (mode = parse_mode(optarg)) >= 0;
            o->mode = (enum soak_mode)mode;
            break;
        case 'e':
            ok = parse_uint(optarg, 1, VTIO_MACHINE_MAX_ENGINES, &v);
            o->engines = (unsigned)v;
            break;
        case 'c':
            ok = parse_uint(optarg, 1, VTIO_DMAE_MAX_CHANNELS, &v);
            o->channels = (unsigned)v;
            break;
        case 'M':
            ok = parse_uint(optarg, 0, 64, &v);
            o->mappers = (unsigned)v;
            break;
        case 'd':
            ok = parse_uint(optarg, 1, SOAK_MAX_DEPTH, &v);
            o->depth = (unsigned)v;
            break;
        case 'l': ok = parse_uint(optarg, 1, SOAK_MAX_LEN, &o->max_len); break;
        case 't':
            ok = parse_uint(optarg, 1, 600000, &v);
            o->timeout_ms = (unsigned)v;
            break;
        case 'S': ok = parse_uint(optarg, 0, UINT64_MAX, &o->seed); break;
        case 'n': o->probe = false; break;
        case 'v': o->verbose = true; break;
        case 'h': usage(stdout); return 1;
        default: ok = false; optarg = NULL; break;
        }
        if (!ok) {
            if (optarg)
                fprintf(stderr, "vtio-soak: bad value '%s' for --%s\n", optarg,
                        longs[idx].name);
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vtio-soak: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->mode == SOAK_PASSTHROUGH || o->mode == SOAK_NONE)
        o->probe = false;                      /* nothing to refuse a stray access */
    if (o->probe && o->engines == VTIO_MACHINE_MAX_ENGINES) {
        fprintf(stderr, "vtio-soak: the probe needs an engine of its own: --engines up to %d, "
                "or --no-probe\n", VTIO_MACHINE_MAX_ENGINES - 1);
        return -1;
    }
    return 0;
}

/* ---- the machine, the host, the drivers */

static void host_log(void *opaque, int level, const char *msg)
{
    struct soak *s = opaque;
    /* Fault lines: the fault handlers judge the faults themselves. */
    if (strncmp(msg, "DMAR: [", 7) == 0 || strstr(msg, "callbacks suppressed")) {
        atomic_fetch_add(&s->fault_lines, 1);
        if (s->o.verbose)
            fprintf(stderr, "vtio-soak: host: %s\n", msg);
        return;
    }
    fprintf(stderr, "vtio-soak: host: %s\n", msg);
    if (level <= VTIO_LOG_ERR)
        soak_fail(s, "host error message: %s", msg);
}

static void on_fault(void *opaque, struct vtio_iommu_domain *d, const struct vtio_iommu_fault *f)
{
    struct soak *s = opaque;
    (void)d;
    if (soak_fault_expected(s, f)) {
        atomic_fetch_add(&s->expected_faults, 1);
        return;
    }
    atomic_fetch_add(&s->unexpected_faults, 1);
    soak_fail(s, "IOMMU fault by %02x:%02x.%u: %s %s %#" PRIx64 ": %s",
              VTIO_PCI_RID_BUS(f->sid), VTIO_PCI_RID_DEV(f->sid), VTIO_PCI_RID_FN(f->sid),
              f->is_interrupt ? "interrupt" : f->write ? "DMA write" : "DMA read",
              f->is_interrupt ? "index" : "at", f->addr,
              f->reason_str ? f->reason_str : "?");
}

/* The default domain the mode must give a translated device. */
static enum vtio_iommu_domain_type wanted_domain(enum soak_mode m)
{
    return m == SOAK_STRICT ? VTIO_IOMMU_DOMAIN_DMA
           : m == SOAK_LAZY ? VTIO_IOMMU_DOMAIN_DMA_FQ
                            : VTIO_IOMMU_DOMAIN_IDENTITY;
}

static int take_engine(struct soak *s, unsigned i, unsigned channels)
{
    struct soak_engine *e = &s->eng[i];
    const struct vtio_pci_function *fn =
        vtio_pci_find(s->h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, i);
    struct vtio_dmae_config cfg = { .channels = channels };
    int rc = fn ? vtio_dmae_probe(s->h, fn, &cfg, &e->drv) : -ENODEV;
    if (rc < 0)
        return rc;
    e->index = i;
    e->dev = vtio_host_device(s->h, fn);
    e->rid = vtio_device_rid(e->dev);
    if (!vtio_iommu_present(s->h))
        return 0;
    struct vtio_iommu_domain *d = vtio_iommu_group_domain(vtio_iommu_group_get(e->dev));
    enum vtio_iommu_domain_type type = vtio_iommu_domain_type(d);
    if (type != wanted_domain(s->o.mode)) {
        fprintf(stderr, "vtio-soak: %s is in a %s domain, mode %s wants %s\n",
                vtio_device_name(e->dev), vtio_iommu_domain_type_name(type),
                mode_name[s->o.mode], vtio_iommu_domain_type_name(wanted_domain(s->o.mode)));
        return -EINVAL;
    }
    if (type != VTIO_IOMMU_DOMAIN_IDENTITY)
        e->domain = d;
    vtio_iommu_set_fault_handler(d, on_fault, s);
    return 0;
}

/* Boots, then takes the engines; *boot: the DMA layer's counts before. */
static int setup(struct soak *s, struct vtio_dma_stats *boot)
{
    const struct soak_opts *o = &s->o;
    struct vtio_machine_config mc = { .dma_engines = o->engines + o->probe,
                                      .dma_channels = o->channels,
                                      .no_iommu = o->mode == SOAK_NONE };
    struct vtio_host_options ho = {
        .iommu_mode = o->mode == SOAK_STRICT        ? VTIO_HOST_IOMMU_STRICT
                      : o->mode == SOAK_PASSTHROUGH ? VTIO_HOST_IOMMU_PASSTHROUGH
                                                    : VTIO_HOST_IOMMU_LAZY,
        .log_level = VTIO_LOG_WARN, .log_fn = host_log, .log_opaque = s,
    };
    int rc = vtio_machine_create(&mc, &s->m);
    if (rc == 0)
        rc = vtio_host_boot_opts(s->m, &ho, &s->h);
    if (rc == 0)
        vtio_dma_get_stats(s->h, boot);
    for (unsigned i = 0; rc == 0 && i < o->engines + o->probe; i++)
        rc = take_engine(s, i, i < o->engines ? o->channels : 1);
    s->n_eng = o->engines;
    s->probe = o->probe ? &s->eng[o->engines] : NULL;
    return rc;
}

static void remove_engines(struct soak *s)
{
    for (unsigned i = 0; i < VTIO_MACHINE_MAX_ENGINES; i++) {
        struct soak_engine *e = &s->eng[i];
        if (!e->drv)
            continue;
        struct vtio_iommu_group *g = vtio_iommu_group_get(e->dev);
        if (g)
            vtio_iommu_set_fault_handler(vtio_iommu_group_domain(g), NULL, NULL);
        vtio_dmae_remove(e->drv);
        e->drv = NULL;
    }
}

/* ---- the run */

struct workers {
    unsigned n_sub, n_map;
    struct soak_submitter *sub[VTIO_MACHINE_MAX_ENGINES * VTIO_DMAE_MAX_CHANNELS];
    struct soak_mapper *map[64];
    struct soak_prober *probe;
    pthread_t sub_t[VTIO_MACHINE_MAX_ENGINES * VTIO_DMAE_MAX_CHANNELS], map_t[64], probe_t;
};

static int create_workers(struct soak *s, struct workers *w)
{
    uint64_t seed = s->o.seed;
    for (unsigned e = 0; e < s->n_eng; e++)
        for (unsigned c = 0; c < vtio_dmae_channels(s->eng[e].drv); c++)
            if (!(w->sub[w->n_sub++] = soak_submitter_create(s, &s->eng[e], c, seed++)))
                return -ENOMEM;
    for (unsigned i = 0; i < s->o.mappers; i++)
        if (!(w->map[w->n_map++] = soak_mapper_create(s, seed++)))
            return -ENOMEM;
    if (s->probe && !(w->probe = soak_prober_create(s, seed++)))
        return -ENOMEM;
    return 0;
}

static void destroy_workers(struct workers *w)
{
    for (unsigned i = 0; i < w->n_sub; i++)
        soak_submitter_destroy(w->sub[i]);
    for (unsigned i = 0; i < w->n_map; i++)
        soak_mapper_destroy(w->map[i]);
    soak_prober_destroy(w->probe);
}

static void start_workers(struct workers *w)
{
    int rc = 0;
    for (unsigned i = 0; i < w->n_sub && !rc; i++)
        rc = pthread_create(&w->sub_t[i], NULL, soak_submitter_run, w->sub[i]);
    for (unsigned i = 0; i < w->n_map && !rc; i++)
        rc = pthread_create(&w->map_t[i], NULL, soak_mapper_run, w->map[i]);
    if (w->probe && !rc)
        rc = pthread_create(&w->probe_t, NULL, soak_prober_run, w->probe);
    if (rc) {                                        /* nothing started is joined */
        fprintf(stderr, "vtio-soak: cannot start threads: %s\n", strerror(rc));
        abort();
    }
}

static void join_workers(struct workers *w)
{
    for (unsigned i = 0; i < w->n_sub; i++)
        pthread_join(w->sub_t[i], NULL);
    for (unsigned i = 0; i < w->n_map; i++)
        pthread_join(w->map_t[i], NULL);
    if (w->probe)
        pthread_join(w->probe_t, NULL);
}

static void finish_workers(struct workers *w, struct soak_counters *k)
{
    for (unsigned i = 0; i < w->n_sub; i++)
        soak_submitter_finish(w->sub[i], k);
    for (unsigned i = 0; i < w->n_map; i++)
        soak_mapper_finish(w->map[i], k);
    if (w->probe)
        soak_prober_finish(w->probe, k);
}

/* Every fault the IOMMU recorded was handled, and the log holds only the
 * probe's. */
static void check_faults(struct soak *s)
{
    if (!vtio_iommu_present(s->h))
        return;
    uint64_t total = vtio_iommu_fault_sync(s->h);
    uint64_t handled = atomic_load(&s->expected_faults) + atomic_load(&s->unexpected_faults);
    if (total != handled)
        soak_fail(s, "the IOMMU reported %" PRIu64 " faults, the domains' handlers saw %" PRIu64,
                  total, handled);
    struct vtio_iommu_fault log[VTIO_IOMMU_FAULT_LOG];
    unsigned n = vtio_iommu_fault_log(s->h, log, VTIO_IOMMU_FAULT_LOG);
    for (unsigned i = 0; i < n; i++)
        if (!soak_fault_expected(s, &log[i]))
            soak_fail(s, "fault log entry %" PRIu64 ": sid %#x, %s at %#" PRIx64 " (%s)",
                      log[i].seq, log[i].sid, log[i].write ? "write" : "read", log[i].addr,
                      log[i].reason_str ? log[i].reason_str : "?");
}

/* What the run did, for the report. */
struct results {
    double seconds;
    struct soak_counters k;
    struct vtio_dma_stats dma;         /* during the run */
    struct vtio_vtd_stats vtd;         /* during the run */
    unsigned threads;
};

static void stats_delta(struct vtio_dma_stats *a, const struct vtio_dma_stats *b)
{
    a->maps = b->maps - a->maps;
    a->unmaps = b->unmaps - a->unmaps;
    a->strict_syncs = b->strict_syncs - a->strict_syncs;
    a->fq_flushes = b->fq_flushes - a->fq_flushes;
    a->bounced_maps = b->bounced_maps - a->bounced_maps;
}

static void vtd_snapshot(struct soak *s, struct vtio_vtd_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (s->m->vtd)
        vtio_vtd_get_stats(s->m->vtd, st);
}

static void run(struct soak *s, struct workers *w, struct results *res)
{
    struct vtio_vtd_stats vtd0, vtd1;
    struct vtio_dma_stats dma1;
    vtio_dma_get_stats(s->h, &res->dma);
    vtd_snapshot(s, &vtd0);
    uint64_t t0 = soak_now_ns();
    s->deadline_ns = t0 + (uint64_t)(s->o.seconds * 1e9);
    start_workers(w);
    join_workers(w);
    res->seconds = (double)(soak_now_ns() - t0) / 1e9;
    vtio_dma_get_stats(s->h, &dma1);
    stats_delta(&res->dma, &dma1);
    vtd_snapshot(s, &vtd1);
    res->vtd.qi_descriptors = vtd1.qi_descriptors - vtd0.qi_descriptors;
    res->vtd.invalidation_waits = vtd1.invalidation_waits - vtd0.invalidation_waits;
    res->threads = w->n_sub + w->n_map + (w->probe != NULL);
    finish_workers(w, &res->k);
    check_faults(s);
}

/* After the drivers are gone, the DMA layer holds no mapping of theirs. */
static void check_unmapped(struct soak *s, const struct vtio_dma_stats *before)
{
    vtio_dma_flush(s->h);
    struct vtio_dma_stats st;
    vtio_dma_get_stats(s->h, &st);
    uint64_t maps = st.maps - before->maps, unmaps = st.unmaps - before->unmaps;
    if (maps != unmaps)
        soak_fail(s, "the DMA layer made %" PRIu64 " mappings and %" PRIu64 " unmappings",
                  maps, unmaps);
    if (st.swiotlb_used)
        soak_fail(s, "%" PRIu64 " bytes of bounce buffers still in use", st.swiotlb_used);
}

/* ---- the report */

static void report(const struct soak *s, const struct results *r)
{
    const struct soak_counters *k = &r->k;
    uint64_t descs = 0;
    for (unsigned i = 0; i < SOAK_OPS; i++)
        descs += k->ops[i];
    uint64_t copies = k->ops[SOAK_OP_COPY] + k->ops[SOAK_OP_COPY_SG];
    double t = r->seconds > 0 ? r->seconds : 1;
    unsigned failures = atomic_load(&s->failures);
    printf("{\"mode\":\"%s\",\"seconds\":%.2f,\"engines\":%u,\"channels\":%u,"
           "\"submitters\":%u,\"mappers\":%u,\"probe\":%s,\"threads\":%u,\"depth\":%u,"
           "\"max_len\":%" PRIu64 ",\"seed\":%" PRIu64 ","
           "\"descriptors\":%" PRIu64 ",\"copies\":%" PRIu64 ",\"copies_sg\":%" PRIu64
           ",\"fills\":%" PRIu64 ",\"compares\":%" PRIu64 ","
           "\"descriptors_per_s\":%.0f,\"copies_per_s\":%.0f,\"bytes\":%" PRIu64
           ",\"bytes_per_s\":%.0f,"
           "\"maps\":%" PRIu64 ",\"unmaps\":%" PRIu64 ",\"maps_per_s\":%.0f,"
           "\"unmaps_per_s\":%.0f,\"sg_maps\":%" PRIu64 ",\"flushes\":%" PRIu64 ","
           "\"strict_syncs\":%" PRIu64 ",\"fq_flushes\":%" PRIu64 ",\"qi_descriptors\":%" PRIu64
           ",\"invalidation_waits\":%" PRIu64 ","
           "\"bytes_verified\":%" PRIu64 ",\"guard_bytes_verified\":%" PRIu64
           ",\"translations_checked\":%" PRIu64 ","
           "\"stray_probes\":%" PRIu64 ",\"stray_faults\":%llu,\"faults\":%llu,"
           "\"lost_completions\":%" PRIu64 ",\"errors\":%u}\n",
           mode_name[s->o.mode], r->seconds, s->n_eng, s->o.channels, s->n_eng * s->o.channels,
           s->o.mappers, s->probe ? "true" : "false", r->threads, s->o.depth, s->o.max_len,
           s->o.seed, descs, k->ops[SOAK_OP_COPY], k->ops[SOAK_OP_COPY_SG],
           k->ops[SOAK_OP_FILL], k->ops[SOAK_OP_COMPARE], descs / t, copies / t, k->dma_bytes,
           k->dma_bytes / t, r->dma.maps, r->dma.unmaps, r->dma.maps / t, r->dma.unmaps / t,
           k->sg_maps, k->flushes, r->dma.strict_syncs, r->dma.fq_flushes,
           r->vtd.qi_descriptors, r->vtd.invalidation_waits, k->data_bytes, k->guard_bytes,
           k->translations, k->probes,
           (unsigned long long)atomic_load(&s->expected_faults),
           (unsigned long long)atomic_load(&s->unexpected_faults), k->lost, failures);
    fflush(stdout);
    fprintf(stderr,
            "vtio-soak: %s, %.1f s, %u engines x %u channels, %u mappers%s: %" PRIu64
            " descriptors (%.0f/s, %.0f MB/s), %.0f maps/s; verified %.2f GB of data, "
            "%.2f GB of guard, %" PRIu64 " translations, %" PRIu64 " stray accesses refused; "
            "%u failures: %s\n",
            mode_name[s->o.mode], r->seconds, s->n_eng, s->o.channels, s->o.mappers,
            s->probe ? ", probe" : "", descs, descs / t, k->dma_bytes / t / 1e6,
            r->dma.maps / t, k->data_bytes / 1e9, k->guard_bytes / 1e9, k->translations,
            k->probes, failures, failures ? "FAIL" : "PASS");
}

int main(int argc, char **argv)
{
    static struct soak s;
    int rc = parse_opts(argc, argv, &s.o);
    if (rc)
        return rc > 0 ? 0 : 2;
    pthread_mutex_init(&s.stale_lock, NULL);
    struct vtio_dma_stats boot = { 0 };
    rc = setup(&s, &boot);
    struct workers w = { 0 };
    if (rc == 0)
        rc = create_workers(&s, &w);
    if (rc < 0) {
        fprintf(stderr, "vtio-soak: setup failed: %s (%s)\n", strerror(-rc), vtio_last_error());
        atomic_fetch_add(&s.failures, 1);
    }
    struct results res = { 0 };
    if (rc == 0) {
        run(&s, &w, &res);
    }
    destroy_workers(&w);
    remove_engines(&s);
    if (rc == 0)
        check_unmapped(&s, &boot);
    if (rc == 0)
        report(&s, &res);
    if (s.h)
        vtio_host_shutdown(s.h);
    if (s.m)
        vtio_machine_destroy(s.m);
    free(s.stale);
    pthread_mutex_destroy(&s.stale_lock);
    return atomic_load(&s.failures) ? 1 : 0;
}
