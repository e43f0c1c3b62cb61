/*
 * Tests of DMA-API debugging (src/host/dma/debug.c).  First through its
 * internal hooks as mapping.c drives them: every kind of misuse is reported
 * once, with the sites that made and misused the mapping; correct use
 * reports nothing, also from many threads.  Then through the public DMA API
 * on a host booted with dma_debug, where the sites are this file's lines.
 */
#include "harness.h"

#include <vtio/dev/dma_engine.h>
#include <vtio/device.h>
#include <vtio/dma.h>
#include <vtio/host.h>
#include <vtio/machine.h>
#include <vtio/page_alloc.h>
#include <vtio/pci_enum.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "host/dma/dma_priv.h"

#define SITE VTIO_DMA_SITE

/* ---- reports, captured */

#define MAX_SEEN 64

static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vtio_dma_debug_report seen[MAX_SEEN];
static unsigned n_seen;
static unsigned taken;              /* reports already looked at by one() */

static void on_report(void *opaque, const struct vtio_dma_debug_report *r)
{
    (void)opaque;
    pthread_mutex_lock(&seen_lock);
    if (n_seen < MAX_SEEN)
        seen[n_seen] = *r;
    n_seen++;
    pthread_mutex_unlock(&seen_lock);
}

static char last_log[512];
static unsigned n_err_logs;

static void capture_log(void *opaque, int level, const char *msg)
{
    (void)opaque;
    pthread_mutex_lock(&seen_lock);
    if (level <= VTIO_LOG_ERR) {
        snprintf(last_log, sizeof(last_log), "%s", msg);
        n_err_logs++;
    }
    pthread_mutex_unlock(&seen_lock);
}

/* ---- a host, two devices, the debugging state */

struct rig {
    struct vtio_machine *m;
    struct vtio_host *h;
    struct vtio_dma_debug *dbg;
    struct vtio_device *a, *b, *idle;   /* three of the host's devices */
    uint64_t buf;                   /* 64 KiB of RAM */
};

static void up(struct rig *r)
{
    struct vtio_machine_config mc = { .ram_size = 256 * VTIO_MiB, .dma_engines = 3 };
    CHECK_OK(vtio_machine_create(&mc, &r->m));
    struct vtio_host_options o = { .iommu_off = true, .log_fn = capture_log };
    CHECK_OK(vtio_host_boot_opts(r->m, &o, &r->h));
    CHECK_OK(vtio_dma_debug_create(r->h, &r->dbg));
    vtio_dma_debug_handler(r->dbg, on_report, NULL);
    CHECK_GE(r->h->n_devices, 3);
    r->a = r->h->devices[0];
    r->b = r->h->devices[1];
    r->idle = r->h->devices[2];
    CHECK_OK(vtio_page_alloc(r->h->pages, 4, VTIO_PAGE_ZERO, &r->buf));
    n_seen = 0;
    n_err_logs = 0;
    taken = 0;
}

static void down(struct rig *r)
{
    vtio_dma_debug_destroy(r->dbg);
    vtio_host_shutdown(r->h);
    vtio_machine_destroy(r->m);
}

static unsigned reports(void)
{
    pthread_mutex_lock(&seen_lock);
    unsigned n = n_seen;
    pthread_mutex_unlock(&seen_lock);
    return n;
}

/* The only report since the last call: of this kind. */
static const struct vtio_dma_debug_report *one(enum vtio_dma_debug_kind kind)
{
    unsigned n = reports();
    CHECKF(n == taken + 1, "%u reports, want 1 (last: %s)", n - taken,
           n ? seen[(n - 1) % MAX_SEEN].msg : "");
    const struct vtio_dma_debug_report *r = &seen[taken];
    taken = n;
    CHECKF(r->kind == kind, "report of kind %d (%s), want %d: %s", (int)r->kind, r->kind_name,
           (int)kind, r->msg);
    return r;
}

static void none_since(unsigned before)
{
    unsigned n = reports();
    CHECKF(n == before, "%u unexpected reports, first: %s", n - before,
           n > before ? seen[before % MAX_SEEN].msg : "");
}

#define ADDR 0x10000000ull

/* ------------------------------------------------------------------------ */

static void t_correct_use(void)
{
    struct rig r;
    up(&r);
    struct vtio_dma_debug *d = r.dbg;
    /* single: map, check, sync both ways, unmap */
    vtio_dma_debug_map(d, r.a, VTIO_DMA_KIND_SINGLE, ADDR, r.buf, 4096, VTIO_DMA_TO_DEVICE, SITE);
    vtio_dma_debug_mapping_error(d, r.a, ADDR, SITE);
    vtio_dma_debug_sync(d, r.a, ADDR, 4096, VTIO_DMA_TO_DEVICE, false, SITE);
    vtio_dma_debug_cpu_access(d, r.a, r.buf, 4096, true, SITE);     /* the CPU owns it */
    memset(vtio_host_phys_to_virt(r.h, r.buf), 7, 4096);
    vtio_dma_debug_sync(d, r.a, ADDR + 100, 200, VTIO_DMA_TO_DEVICE, true, SITE);
    CHECK(vtio_dma_debug_unmap(d, r.a, VTIO_DMA_KIND_SINGLE, ADDR, 4096, VTIO_DMA_TO_DEVICE,
                               SITE));
    /* page, bidirectional: the device may write it */
    vtio_dma_debug_map(d, r.a, VTIO_DMA_KIND_PAGE, ADDR, r.buf, 8192, VTIO_DMA_BIDIRECTIONAL,
                       SITE);
    vtio_dma_debug_mapping_error(d, r.a, ADDR, SITE);
    memset(vtio_host_phys_to_virt(r.h, r.buf), 9, 8192);           /* "the device" */
    vtio_dma_debug_sync(d, r.a, ADDR + 5000, 100, VTIO_DMA_FROM_DEVICE, false, SITE);
    CHECK(vtio_dma_debug_unmap(d, r.a, VTIO_DMA_KIND_PAGE, ADDR, 8192, VTIO_DMA_BIDIRECTIONAL,
                               SITE));
    /* sg: three segments, synced and unmapped segment by segment */
    for (unsigned i = 0; i < 3; i++)
        vtio_dma_debug_map(d, r.a, VTIO_DMA_KIND_SG, ADDR + i * 0x10000, r.buf + i * 4096, 4096,
                           VTIO_DMA_FROM_DEVICE, SITE);
    for (unsigned i = 0; i < 3; i++)
        vtio_dma_debug_sync(d, r.a, ADDR + i * 0x10000, 4096, VTIO_DMA_FROM_DEVICE, false, SITE);
    for (unsigned i = 0; i < 3; i++)
        CHECK(vtio_dma_debug_unmap(d, r.a, VTIO_DMA_KIND_SG, ADDR + i * 0x10000, 4096,
                                   VTIO_DMA_FROM_DEVICE, SITE));
    /* coherent: the CPU may touch it at any time */
    vtio_dma_debug_map(d, r.a, VTIO_DMA_KIND_COHERENT, ADDR, r.buf, 4096,
                       VTIO_DMA_BIDIRECTIONAL, SITE);
    vtio_dma_debug_cpu_access(d, r.a, r.buf, 16, true, SITE);
    CHECK(vtio_dma_debug_unmap(d, r.a, VTIO_DMA_KIND_COHERENT, ADDR, 4096,
                               VTIO_DMA_BIDIRECTIONAL, SITE));
    /* a failed map, checked */
    vtio_dma_debug_map(d, r.a, VTIO_DMA_KIND_SINGLE, VTIO_DMA_MAPPING_ERROR, r.buf, 4096,
                       VTIO_DMA_TO_DEVICE, SITE);
    vtio_dma_debug_mapping_error(d, r.a, VTIO_DMA_MAPPING_ERROR, SITE);
    vtio_dma_debug_map(d, r.a, VTIO_DMA_KIND_SINGLE, ADDR, r.buf, 4096, VTIO_DMA_TO_DEVICE, SITE);
    vtio_dma_debug_mapping_error(d, r.a, ADDR, SITE);
    /* the same address twice (a direct device mapping one buffer twice) */
    vtio_dma_debug_map(d, r.a, VTIO_DMA_KIND_SINGLE, ADDR, r.buf, 100, VTIO_DMA_TO_DEVICE, SITE);
    vtio_dma_debug_mapping_error(d, r.a, ADDR, SITE);
    CHECK(vtio_dma_debug_unmap(d, r.a, VTIO_DMA_KIND_SINGLE, ADDR, 100, VTIO_DMA_TO_DEVICE,
                               SITE));
    CHECK(vtio_dma_debug_unmap(d, r.a, VTIO_DMA_KIND_SINGLE, ADDR, 4096, VTIO_DMA_TO_DEVICE,
                               SITE));
    /* the CPU touching memory no device owns */
    vtio_dma_debug_cpu_access(d, r.b, r.buf, 65536, false, SITE);
    CHECK_EQ(vtio_dma_debug_leaks(d, r.a), 0);
    none_since(0);
    CHECK_EQ(vtio_dma_debug_errors(d), 0);
    down(&r);
}

static void t_not_mapped(void)
{
    struct rig r;
    up(&r);
    const char *site = SITE;
    CHECK(!vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, ADDR, 4096,
                                VTIO_DMA_TO_DEVICE, site));
    const struct vtio_dma_debug_report *rep = one(VTIO_DMA_DEBUG_NOT_MAPPED);
    CHECK(strcmp(rep->kind_name, "not-mapped") == 0);
    CHECK(rep->site == site);
    CHECK(strcmp(rep->map_site, "") == 0);
    CHECK(rep->dev == r.a);
    CHECK_EQ(rep->addr, ADDR);
    CHECK(strstr(rep->msg, r.a->name) && strstr(rep->msg, "0x10000000") &&
          strstr(rep->msg, "test_dma_debug.c:"));

    /* A mapping of another device at that address does not count. */
    vtio_dma_debug_map(r.dbg, r.b, VTIO_DMA_KIND_COHERENT, ADDR, r.buf, 4096,
                       VTIO_DMA_BIDIRECTIONAL, SITE);
    vtio_dma_debug_sync(r.dbg, r.a, ADDR, 4096, VTIO_DMA_TO_DEVICE, true, site);
    rep = one(VTIO_DMA_DEBUG_NOT_MAPPED);
    CHECK(rep->site == site);
    CHECK(!vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_COHERENT, ADDR, 4096,
                                VTIO_DMA_BIDIRECTIONAL, site));
    one(VTIO_DMA_DEBUG_NOT_MAPPED);
    CHECK(vtio_dma_debug_unmap(r.dbg, r.b, VTIO_DMA_KIND_COHERENT, ADDR, 4096,
                               VTIO_DMA_BIDIRECTIONAL, site));
    CHECK_EQ(vtio_dma_debug_errors(r.dbg), 3);
    down(&r);
}

static void t_double_unmap(void)
{
    struct rig r;
    up(&r);
    const char *map_site = SITE, *unmap_site = SITE, *again = SITE;
    vtio_dma_debug_map(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, ADDR, r.buf, 4096,
                       VTIO_DMA_FROM_DEVICE, map_site);
    vtio_dma_debug_mapping_error(r.dbg, r.a, ADDR, SITE);
    CHECK(vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, ADDR, 4096,
                               VTIO_DMA_FROM_DEVICE, unmap_site));
    none_since(0);
    CHECK(!vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, ADDR, 4096,
                                VTIO_DMA_FROM_DEVICE, again));
    const struct vtio_dma_debug_report *rep = one(VTIO_DMA_DEBUG_DOUBLE_UNMAP);
    CHECK(strcmp(rep->kind_name, "double-unmap") == 0);
    CHECK(rep->map_site == map_site);
    CHECK(rep->unmap_site == unmap_site);
    CHECK(rep->site == again);
    /* The message names all three lines. */
    const char *lines[] = { map_site, unmap_site, again };
    for (unsigned i = 0; i < 3; i++)
        CHECKF(strstr(rep->msg, strrchr(lines[i], '/') + 1), "%s in %s", lines[i], rep->msg);
    /* The other device's unmap at that address was never a double. */
    CHECK(!vtio_dma_debug_unmap(r.dbg, r.b, VTIO_DMA_KIND_SINGLE, ADDR, 4096,
                                VTIO_DMA_FROM_DEVICE, again));
    one(VTIO_DMA_DEBUG_NOT_MAPPED);
    down(&r);
}

/* Maps a checked single mapping at ADDR. */
static void map_checked(struct rig *r, enum vtio_dma_map_kind kind, uint64_t size,
                        enum vtio_dma_direction dir, const char *site)
{
    vtio_dma_debug_map(r->dbg, r->a, kind, ADDR, r->buf, size, dir, site);
    vtio_dma_debug_mapping_error(r->dbg, r->a, ADDR, SITE);
}

static void t_mismatches(void)
{
    struct rig r;
    up(&r);
    const char *m = SITE, *u = SITE;
    const struct vtio_dma_debug_report *rep;

    map_checked(&r, VTIO_DMA_KIND_SINGLE, 4096, VTIO_DMA_TO_DEVICE, m);
    CHECK(vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, ADDR, 2048,
                               VTIO_DMA_TO_DEVICE, u));
    rep = one(VTIO_DMA_DEBUG_SIZE_MISMATCH);
    CHECK(strcmp(rep->kind_name, "size-mismatch") == 0);
    CHECK(rep->map_site == m && rep->site == u);
    CHECK(strstr(rep->msg, "4096") && strstr(rep->msg, "2048"));

    map_checked(&r, VTIO_DMA_KIND_PAGE, 4096, VTIO_DMA_TO_DEVICE, m);
    CHECK(vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_PAGE, ADDR, 4096,
                               VTIO_DMA_FROM_DEVICE, u));
    rep = one(VTIO_DMA_DEBUG_DIR_MISMATCH);
    CHECK(strcmp(rep->kind_name, "direction-mismatch") == 0);
    CHECK(rep->map_site == m && rep->site == u);
    CHECK(strstr(rep->msg, "to-device") && strstr(rep->msg, "from-device"));

    /* unmap_single of an sg segment; of a page mapping; free_coherent of a
     * streaming one; unmap_single of coherent memory */
    static const enum vtio_dma_map_kind mapped[] = { VTIO_DMA_KIND_SG, VTIO_DMA_KIND_PAGE,
                                                     VTIO_DMA_KIND_SINGLE,
                                                     VTIO_DMA_KIND_COHERENT };
    static const enum vtio_dma_map_kind unmapped[] = { VTIO_DMA_KIND_SINGLE,
                                                       VTIO_DMA_KIND_SINGLE,
                                                       VTIO_DMA_KIND_COHERENT,
                                                       VTIO_DMA_KIND_SINGLE };
    for (unsigned i = 0; i < 4; i++) {
        map_checked(&r, mapped[i], 4096, VTIO_DMA_BIDIRECTIONAL, m);
        CHECK(vtio_dma_debug_unmap(r.dbg, r.a, unmapped[i], ADDR, 4096,
                                   VTIO_DMA_BIDIRECTIONAL, u));
        rep = one(VTIO_DMA_DEBUG_KIND_MISMATCH);
        CHECK(strcmp(rep->kind_name, "kind-mismatch") == 0);
        CHECK(rep->map_site == m && rep->site == u);
    }
    CHECK_EQ(vtio_dma_debug_leaks(r.dbg, r.a), 0);    /* every unmap went through */
    CHECK_EQ(vtio_dma_debug_errors(r.dbg), 6);
    down(&r);
}

static void t_sync_checks(void)
{
    struct rig r;
    up(&r);
    const char *m = SITE, *s = SITE;
    const struct vtio_dma_debug_report *rep;
    map_checked(&r, VTIO_DMA_KIND_SINGLE, 4096, VTIO_DMA_FROM_DEVICE, m);

    vtio_dma_debug_sync(r.dbg, r.a, ADDR + 4000, 200, VTIO_DMA_FROM_DEVICE, false, s);
    rep = one(VTIO_DMA_DEBUG_SYNC_RANGE);
    CHECK(strcmp(rep->kind_name, "sync-range") == 0);
    CHECK(rep->map_site == m && rep->site == s);
    vtio_dma_debug_sync(r.dbg, r.a, ADDR + 100, 100, VTIO_DMA_TO_DEVICE, true, s);
    rep = one(VTIO_DMA_DEBUG_DIR_MISMATCH);
    CHECK(rep->map_site == m && rep->site == s);
    vtio_dma_debug_sync(r.dbg, r.a, ADDR - 1, 2, VTIO_DMA_FROM_DEVICE, true, s);
    one(VTIO_DMA_DEBUG_NOT_MAPPED);
    vtio_dma_debug_sync(r.dbg, r.a, ADDR + 4096, 1, VTIO_DMA_FROM_DEVICE, true, s);
    one(VTIO_DMA_DEBUG_NOT_MAPPED);
    vtio_dma_debug_sync(r.dbg, r.a, ADDR + 4095, 1, VTIO_DMA_FROM_DEVICE, true, s);
    CHECK(vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, ADDR, 4096,
                               VTIO_DMA_FROM_DEVICE, SITE));

    /* Inside a long mapping that starts mid-page, far from its start; and
     * a BIDIRECTIONAL mapping synced either way. */
    unsigned before = reports();
    vtio_dma_debug_map(r.dbg, r.a, VTIO_DMA_KIND_SG, ADDR + 0x800, r.buf, 40 * VTIO_MiB,
                       VTIO_DMA_BIDIRECTIONAL, m);
    vtio_dma_debug_sync(r.dbg, r.a, ADDR + 0x800 + 40 * VTIO_MiB - 8, 8, VTIO_DMA_TO_DEVICE,
                        true, s);
    vtio_dma_debug_sync(r.dbg, r.a, ADDR + 0x800 + 20 * VTIO_MiB, 8, VTIO_DMA_FROM_DEVICE,
                        false, s);
    none_since(before);
    CHECK(vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_SG, ADDR + 0x800, 40 * VTIO_MiB,
                               VTIO_DMA_BIDIRECTIONAL, SITE));
    CHECK_EQ(vtio_dma_debug_errors(r.dbg), 4);
    down(&r);
}

struct failing_thread {
    struct rig *r;
    const char *site;
};

static void *fail_a_map(void *arg)
{
    struct failing_thread *f = arg;
    vtio_dma_debug_map(f->r->dbg, f->r->a, VTIO_DMA_KIND_PAGE, VTIO_DMA_MAPPING_ERROR,
                       f->r->buf, 4096, VTIO_DMA_TO_DEVICE, f->site);
    return NULL;
}

static void t_unchecked(void)
{
    struct rig r;
    up(&r);
    const char *m = SITE, *u = SITE, *failed = SITE, *next = SITE;
    const struct vtio_dma_debug_report *rep;

    vtio_dma_debug_map(r.dbg, r.a, VTIO_DMA_KIND_PAGE, ADDR, r.buf, 4096,
                       VTIO_DMA_TO_DEVICE, m);
    CHECK(vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_PAGE, ADDR, 4096,
                               VTIO_DMA_TO_DEVICE, u));
    rep = one(VTIO_DMA_DEBUG_UNCHECKED);
    CHECK(strcmp(rep->kind_name, "unchecked-error") == 0);
    CHECK(rep->map_site == m && rep->site == u);

    /* A failed map not checked: reported at the next map, once. */
    vtio_dma_debug_map(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, VTIO_DMA_MAPPING_ERROR, r.buf, 4096,
                       VTIO_DMA_TO_DEVICE, failed);
    none_since(1);
    map_checked(&r, VTIO_DMA_KIND_SINGLE, 4096, VTIO_DMA_TO_DEVICE, next);
    rep = one(VTIO_DMA_DEBUG_UNCHECKED);
    CHECK(rep->map_site == failed && rep->site == next);
    CHECK(vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, ADDR, 4096,
                               VTIO_DMA_TO_DEVICE, u));
    /* ... or at the next unmap; another device's calls do not count. */
    vtio_dma_debug_map(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, VTIO_DMA_MAPPING_ERROR, r.buf, 4096,
                       VTIO_DMA_TO_DEVICE, failed);
    vtio_dma_debug_map(r.dbg, r.b, VTIO_DMA_KIND_COHERENT, ADDR, r.buf, 4096,
                       VTIO_DMA_BIDIRECTIONAL, SITE);
    CHECK(vtio_dma_debug_unmap(r.dbg, r.b, VTIO_DMA_KIND_COHERENT, ADDR, 4096,
                               VTIO_DMA_BIDIRECTIONAL, SITE));
    none_since(2);
    CHECK(!vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, ADDR + 0x100000, 4096,
                                VTIO_DMA_TO_DEVICE, u));
    CHECK_EQ(reports(), 4);                     /* unchecked, then not-mapped */
    CHECK_EQ(seen[2].kind, VTIO_DMA_DEBUG_UNCHECKED);
    CHECK(seen[2].map_site == failed);
    CHECK_EQ(seen[3].kind, VTIO_DMA_DEBUG_NOT_MAPPED);

    /* Another thread's unchecked failure is that thread's business. */
    struct failing_thread f = { &r, failed };
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, fail_a_map, &f), 0);
    pthread_join(t, NULL);
    map_checked(&r, VTIO_DMA_KIND_SINGLE, 4096, VTIO_DMA_TO_DEVICE, next);
    CHECK(vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, ADDR, 4096,
                               VTIO_DMA_TO_DEVICE, u));
    none_since(4);
    down(&r);
}

static void t_cpu_access(void)
{
    struct rig r;
    up(&r);
    const char *m = SITE, *s = SITE;
    const struct vtio_dma_debug_report *rep;
    vtio_dma_debug_map(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, ADDR, r.buf + 4096, 4096,
                       VTIO_DMA_FROM_DEVICE, m);
    vtio_dma_debug_mapping_error(r.dbg, r.a, ADDR, SITE);

    vtio_dma_debug_cpu_access(r.dbg, r.a, r.buf + 8191, 1, false, s);
    rep = one(VTIO_DMA_DEBUG_CPU_ACCESS);
    CHECK(strcmp(rep->kind_name, "cpu-access") == 0);
    CHECK(rep->map_site == m && rep->site == s && rep->dev == r.a);
    CHECK_EQ(rep->addr, ADDR);
    vtio_dma_debug_cpu_access(r.dbg, r.a, r.buf, 4097, true, s);    /* one byte of it */
    one(VTIO_DMA_DEBUG_CPU_ACCESS);
    vtio_dma_debug_cpu_access(r.dbg, r.a, r.buf, 4096, true, s);    /* just before */
    vtio_dma_debug_cpu_access(r.dbg, r.a, r.buf + 8192, 4096, true, s);
    none_since(2);

    /* The CPU owns it between sync_for_cpu and sync_for_device. */
    vtio_dma_debug_sync(r.dbg, r.a, ADDR, 4096, VTIO_DMA_FROM_DEVICE, false, SITE);
    vtio_dma_debug_cpu_access(r.dbg, r.a, r.buf + 4096, 4096, true, s);
    none_since(2);
    vtio_dma_debug_sync(r.dbg, r.a, ADDR, 4096, VTIO_DMA_FROM_DEVICE, true, SITE);
    vtio_dma_debug_cpu_access(r.dbg, r.a, r.buf + 4096, 4096, true, s);
    one(VTIO_DMA_DEBUG_CPU_ACCESS);
    CHECK(vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, ADDR, 4096,
                               VTIO_DMA_FROM_DEVICE, SITE));
    vtio_dma_debug_cpu_access(r.dbg, r.a, r.buf + 4096, 4096, true, s);
    none_since(3);

    /* Coherent memory is shared. */
    vtio_dma_debug_map(r.dbg, r.a, VTIO_DMA_KIND_COHERENT, ADDR, r.buf, 4096,
                       VTIO_DMA_BIDIRECTIONAL, m);
    vtio_dma_debug_cpu_access(r.dbg, r.a, r.buf, 4096, true, s);
    none_since(3);
    CHECK(vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_COHERENT, ADDR, 4096,
                               VTIO_DMA_BIDIRECTIONAL, SITE));
    down(&r);
}

static void t_fingerprint(void)
{
    struct rig r;
    up(&r);
    const char *m = SITE, *u = SITE;
    const struct vtio_dma_debug_report *rep;
    uint8_t *cpu = vtio_host_phys_to_virt(r.h, r.buf);

    /* Written while the device owned it: caught at unmap. */
    map_checked(&r, VTIO_DMA_KIND_SINGLE, 3000, VTIO_DMA_TO_DEVICE, m);
    cpu[2999] ^= 1;
    CHECK(vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, ADDR, 3000,
                               VTIO_DMA_TO_DEVICE, u));
    rep = one(VTIO_DMA_DEBUG_CPU_ACCESS);
    CHECK(rep->map_site == m && rep->site == u);
    CHECK(strstr(rep->msg, "wrote"));

    /* ... at sync_for_cpu, and only once. */
    map_checked(&r, VTIO_DMA_KIND_SINGLE, 3000, VTIO_DMA_TO_DEVICE, m);
    cpu[0] ^= 1;
    vtio_dma_debug_sync(r.dbg, r.a, ADDR, 3000, VTIO_DMA_TO_DEVICE, false, u);
    rep = one(VTIO_DMA_DEBUG_CPU_ACCESS);
    CHECK(rep->site == u);
    /* Written while the CPU owned it, handed back: fine. */
    cpu[1] ^= 1;
    vtio_dma_debug_sync(r.dbg, r.a, ADDR, 3000, VTIO_DMA_TO_DEVICE, true, SITE);
    CHECK(vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, ADDR, 3000,
                               VTIO_DMA_TO_DEVICE, u));
    none_since(2);

    /* Bytes outside the mapping and buffers the device writes are not its business. */
    map_checked(&r, VTIO_DMA_KIND_SINGLE, 3000, VTIO_DMA_TO_DEVICE, m);
    cpu[3000] ^= 1;
    CHECK(vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, ADDR, 3000,
                               VTIO_DMA_TO_DEVICE, u));
    map_checked(&r, VTIO_DMA_KIND_SINGLE, 3000, VTIO_DMA_FROM_DEVICE, m);
    cpu[5] ^= 1;
    CHECK(vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, ADDR, 3000,
                               VTIO_DMA_FROM_DEVICE, u));
    none_since(2);
    down(&r);
}

static void t_leaks(void)
{
    struct rig r;
    up(&r);
    const char *m = SITE;
    for (unsigned i = 0; i < 20; i++)
        vtio_dma_debug_map(r.dbg, r.a, VTIO_DMA_KIND_SG, ADDR + i * 4096, r.buf, 4096,
                           VTIO_DMA_FROM_DEVICE, m);
    vtio_dma_debug_map(r.dbg, r.b, VTIO_DMA_KIND_COHERENT, ADDR, r.buf, 4096,
                       VTIO_DMA_BIDIRECTIONAL, SITE);
    CHECK_EQ(vtio_dma_debug_leaks(r.dbg, r.a), 20);
    CHECK_EQ(reports(), 20);
    uint64_t addrs = 0;
    for (unsigned i = 0; i < 20; i++) {
        CHECK_EQ(seen[i].kind, VTIO_DMA_DEBUG_LEAK);
        CHECK(strcmp(seen[i].kind_name, "leak") == 0);
        CHECK(seen[i].map_site == m && seen[i].dev == r.a);
        CHECK_EQ(seen[i].size, 4096);
        addrs |= 1ull << ((seen[i].addr - ADDR) / 4096);
    }
    CHECK_EQ(addrs, (1ull << 20) - 1);          /* each mapping once */
    CHECK_EQ(vtio_dma_debug_leaks(r.dbg, r.a), 0);   /* forgotten */
    CHECK(vtio_dma_debug_unmap(r.dbg, r.b, VTIO_DMA_KIND_COHERENT, ADDR, 4096,
                               VTIO_DMA_BIDIRECTIONAL, SITE));
    CHECK_EQ(reports(), 20);
    CHECK_EQ(vtio_dma_debug_errors(r.dbg), 20);
    down(&r);
}

static void t_host_log_by_default(void)
{
    struct rig r;
    up(&r);
    vtio_dma_debug_handler(r.dbg, NULL, NULL);
    const char *m = SITE, *u = SITE;
    map_checked(&r, VTIO_DMA_KIND_SINGLE, 4096, VTIO_DMA_TO_DEVICE, m);
    CHECK(vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, ADDR, 4096,
                               VTIO_DMA_TO_DEVICE, u));
    CHECK(!vtio_dma_debug_unmap(r.dbg, r.a, VTIO_DMA_KIND_SINGLE, ADDR, 4096,
                                VTIO_DMA_TO_DEVICE, u));
    CHECK_EQ(reports(), 0);
    CHECK_EQ(n_err_logs, 1);
    CHECKF(strstr(last_log, r.a->name) && strstr(last_log, "double-unmap") &&
           strstr(last_log, strrchr(m, '/') + 1) && strstr(last_log, strrchr(u, '/') + 1),
           "log: %s", last_log);
    CHECK_EQ(vtio_dma_debug_errors(r.dbg), 1);
    down(&r);
}

/* ---- threads: correct use from many threads reports nothing */

#define NTHREADS 4
#define ITERS    3000

struct worker {
    struct rig *r;
    unsigned id;
    bool ok;
};

static void *map_loop(void *arg)
{
    struct worker *w = arg;
    struct vtio_dma_debug *d = w->r->dbg;
    struct vtio_device *dev = w->id % 2 ? w->r->b : w->r->a;
    uint64_t phys = w->r->buf + w->id * 8192;
    w->ok = true;
    for (unsigned i = 0; i < ITERS; i++) {
        vtio_dma_addr_t addr = ADDR + ((uint64_t)w->id << 24) + (i % 64) * 4096;
        enum vtio_dma_direction dir = (enum vtio_dma_direction)(i % 3);
        vtio_dma_debug_map(d, dev, VTIO_DMA_KIND_PAGE, addr, phys, 4096, dir, SITE);
        vtio_dma_debug_mapping_error(d, dev, addr, SITE);
        vtio_dma_debug_sync(d, dev, addr + 8, 8, dir, false, SITE);
        vtio_dma_debug_cpu_access(d, dev, phys, 4096, true, SITE);
        vtio_dma_debug_sync(d, dev, addr, 4096, dir, true, SITE);
        vtio_dma_debug_cpu_access(d, dev, phys + 4096, 4096, false, SITE);
        if (!vtio_dma_debug_unmap(d, dev, VTIO_DMA_KIND_PAGE, addr, 4096, dir, SITE))
            w->ok = false;
    }
    return NULL;
}

static void t_threads(void)
{
    struct rig r;
    up(&r);
    struct worker w[NTHREADS];
    pthread_t t[NTHREADS];
    for (unsigned i = 0; i < NTHREADS; i++) {
        w[i] = (struct worker){ .r = &r, .id = i };
        CHECK_EQ(pthread_create(&t[i], NULL, map_loop, &w[i]), 0);
    }
    for (unsigned i = 0; i < 200; i++)          /* meanwhile, an idle device leaks nothing */
        CHECK_EQ(vtio_dma_debug_leaks(r.dbg, r.idle), 0);
    for (unsigned i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    for (unsigned i = 0; i < NTHREADS; i++)
        CHECK(w[i].ok);
    none_since(0);
    CHECK_EQ(vtio_dma_debug_errors(r.dbg), 0);
    CHECK_EQ(vtio_dma_debug_leaks(r.dbg, r.a) + vtio_dma_debug_leaks(r.dbg, r.b), 0);
    down(&r);
}


/* ------------------------------------------------------------------------
 * Through the public API (host option dma_debug)
 * ------------------------------------------------------------------------ */

struct api_rig {
    struct vtio_machine *m;
    struct vtio_host *h;
    struct vtio_device *dev;        /* the DMA engine */
    uint64_t buf;                   /* 64 KiB */
    uint8_t *cpu;
};

static void api_up(struct api_rig *r, bool iommu_off, uint64_t ram)
{
    struct vtio_machine_config mc = { .ram_size = ram };
    CHECK_OK(vtio_machine_create(&mc, &r->m));
    struct vtio_host_options o = { .iommu_off = iommu_off, .dma_debug = true,
                                   .log_fn = capture_log };
    CHECK_OK(vtio_host_boot_opts(r->m, &o, &r->h));
    const struct vtio_pci_function *fn =
        vtio_pci_find(r->h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, 0);
    CHECK(fn != NULL);
    r->dev = vtio_host_device(r->h, fn);
    CHECK(r->dev != NULL);
    vtio_dma_debug_set_handler(r->h, on_report, NULL);
    CHECK_OK(vtio_page_alloc(r->h->pages, 4, VTIO_PAGE_ZERO, &r->buf));
    r->cpu = vtio_host_phys_to_virt(r->h, r->buf);
    n_seen = 0;
    n_err_logs = 0;
    taken = 0;
}

static void api_down(struct api_rig *r)
{
    vtio_host_shutdown(r->h);
    vtio_machine_destroy(r->m);
}

/* Whether a site is "<...>/test_dma_debug.c:<line>". */
static bool site_is(const char *site, int line)
{
    char want[64];
    int n = snprintf(want, sizeof(want), "/test_dma_debug.c:%d", line);
    size_t len = strlen(site);
    return len >= (size_t)n && strcmp(site + len - (size_t)n, want) == 0;
}

#define CHECK_SITE(site, line) \
    CHECKF(site_is(site, line), "site %s, want this file's line %d", site, line)

static uint64_t api_debug_errors(struct api_rig *r)
{
    struct vtio_dma_stats st;
    vtio_dma_get_stats(r->h, &st);
    return st.debug_errors;
}

static void t_api_correct_use(void)
{
    struct api_rig r;
    api_up(&r, false, 256 * VTIO_MiB);
    struct vtio_device *dev = r.dev;
    vtio_dma_addr_t a = vtio_dma_map_single(dev, r.cpu, 4096, VTIO_DMA_TO_DEVICE);
    CHECK_OK(vtio_dma_mapping_error(dev, a));
    vtio_dma_sync_single_for_cpu(dev, a, 4096, VTIO_DMA_TO_DEVICE);
    vtio_dma_cpu_access(dev, r.cpu, 4096, true);
    r.cpu[0]++;
    vtio_dma_sync_single_for_device(dev, a, 4096, VTIO_DMA_TO_DEVICE);
    vtio_dma_unmap_single(dev, a, 4096, VTIO_DMA_TO_DEVICE);

    a = vtio_dma_map_page(dev, r.buf + 8192, 100, VTIO_DMA_FROM_DEVICE);
    CHECK_OK(vtio_dma_mapping_error(dev, a));
    vtio_dma_sync_single_for_cpu(dev, a + 50, 50, VTIO_DMA_FROM_DEVICE);
    vtio_dma_unmap_page(dev, a, 100, VTIO_DMA_FROM_DEVICE);

    struct vtio_scatterlist sg[3] = { { .phys = r.buf, .length = 4096 },
                                      { .phys = r.buf + 4096, .length = 4096 },
                                      { .phys = r.buf + 20000, .length = 300 } };
    CHECK_GT(vtio_dma_map_sg(dev, sg, 3, VTIO_DMA_BIDIRECTIONAL), 0);
    vtio_dma_sync_sg_for_cpu(dev, sg, 3, VTIO_DMA_BIDIRECTIONAL);
    vtio_dma_sync_sg_for_device(dev, sg, 3, VTIO_DMA_BIDIRECTIONAL);
    vtio_dma_unmap_sg(dev, sg, 3, VTIO_DMA_BIDIRECTIONAL);

    vtio_dma_addr_t handle;
    uint8_t *coh = vtio_dma_alloc_coherent(dev, 8192, &handle);
    CHECK(coh != NULL);
    vtio_dma_cpu_access(dev, coh, 8192, true);
    vtio_dma_free_coherent(dev, 8192, coh, handle);

    CHECK_EQ(vtio_dma_debug_check_leaks(dev), 0);
    none_since(0);
    CHECK_EQ(api_debug_errors(&r), 0);
    api_down(&r);
}

static void t_api_misuse(void)
{
    struct api_rig r;
    api_up(&r, false, 256 * VTIO_MiB);
    struct vtio_device *dev = r.dev;
    const struct vtio_dma_debug_report *rep;
    vtio_dma_addr_t a;
    int ml, ul, ul2;    /* lines of the map and unmap calls (each on the call's line) */

    /* wrong size */
    a = vtio_dma_map_single(dev, r.cpu, 4096, VTIO_DMA_TO_DEVICE); ml = __LINE__;
    CHECK_OK(vtio_dma_mapping_error(dev, a));
    vtio_dma_unmap_single(dev, a, 2048, VTIO_DMA_TO_DEVICE); ul = __LINE__;
    rep = one(VTIO_DMA_DEBUG_SIZE_MISMATCH);
    CHECK(rep->dev == dev);
    CHECK_EQ(rep->addr, a);
    CHECK_SITE(rep->map_site, ml);
    CHECK_SITE(rep->site, ul);

    /* double unmap: the second is refused, naming both earlier calls */
    a = vtio_dma_map_single(dev, r.cpu, 4096, VTIO_DMA_FROM_DEVICE); ml = __LINE__;
    CHECK_OK(vtio_dma_mapping_error(dev, a));
    vtio_dma_unmap_single(dev, a, 4096, VTIO_DMA_FROM_DEVICE); ul = __LINE__;
    vtio_dma_unmap_single(dev, a, 4096, VTIO_DMA_FROM_DEVICE); ul2 = __LINE__;
    rep = one(VTIO_DMA_DEBUG_DOUBLE_UNMAP);
    CHECK_SITE(rep->map_site, ml);
    CHECK_SITE(rep->unmap_site, ul);
    CHECK_SITE(rep->site, ul2);

    /* never checked */
    a = vtio_dma_map_page(dev, r.buf, 512, VTIO_DMA_TO_DEVICE); ml = __LINE__;
    vtio_dma_unmap_page(dev, a, 512, VTIO_DMA_TO_DEVICE); ul = __LINE__;
    rep = one(VTIO_DMA_DEBUG_UNCHECKED);
    CHECK_SITE(rep->map_site, ml);
    CHECK_SITE(rep->site, ul);

    /* unmap_single of a page mapping; another direction */
    a = vtio_dma_map_page(dev, r.buf, 512, VTIO_DMA_TO_DEVICE); ml = __LINE__;
    CHECK_OK(vtio_dma_mapping_error(dev, a));
    vtio_dma_unmap_single(dev, a, 512, VTIO_DMA_TO_DEVICE);
    CHECK_SITE(one(VTIO_DMA_DEBUG_KIND_MISMATCH)->map_site, ml);
    a = vtio_dma_map_single(dev, r.cpu, 512, VTIO_DMA_TO_DEVICE); ml = __LINE__;
    CHECK_OK(vtio_dma_mapping_error(dev, a));
    vtio_dma_unmap_single(dev, a, 512, VTIO_DMA_BIDIRECTIONAL);
    CHECK_SITE(one(VTIO_DMA_DEBUG_DIR_MISMATCH)->map_site, ml);

    /* sync past the end; CPU access while the device owns it; a CPU write
     * to a TO_DEVICE buffer found at unmap */
    a = vtio_dma_map_single(dev, r.cpu, 4096, VTIO_DMA_TO_DEVICE); ml = __LINE__;
    CHECK_OK(vtio_dma_mapping_error(dev, a));
    vtio_dma_sync_single_for_cpu(dev, a + 4000, 200, VTIO_DMA_TO_DEVICE); ul = __LINE__;
    rep = one(VTIO_DMA_DEBUG_SYNC_RANGE);
    CHECK_SITE(rep->map_site, ml);
    CHECK_SITE(rep->site, ul);
    vtio_dma_sync_single_for_device(dev, a, 4096, VTIO_DMA_TO_DEVICE);
    vtio_dma_cpu_access(dev, r.cpu + 100, 1, false); ul = __LINE__;
    rep = one(VTIO_DMA_DEBUG_CPU_ACCESS);
    CHECK_SITE(rep->map_site, ml);
    CHECK_SITE(rep->site, ul);
    r.cpu[100] ^= 0xff;
    vtio_dma_unmap_single(dev, a, 4096, VTIO_DMA_TO_DEVICE); ul = __LINE__;
    rep = one(VTIO_DMA_DEBUG_CPU_ACCESS);
    CHECK_SITE(rep->site, ul);

    /* an address never mapped */
    vtio_dma_unmap_single(dev, 0x12345000, 4096, VTIO_DMA_TO_DEVICE); ul = __LINE__;
    rep = one(VTIO_DMA_DEBUG_NOT_MAPPED);
    CHECK_SITE(rep->site, ul);
    CHECK(strcmp(rep->map_site, "") == 0);

    /* a failed map never checked, found at the next map */
    uint8_t not_ram[64];
    a = vtio_dma_map_single(dev, not_ram, sizeof(not_ram), VTIO_DMA_TO_DEVICE); ml = __LINE__;
    CHECK_EQ(a, VTIO_DMA_MAPPING_ERROR);
    a = vtio_dma_map_single(dev, r.cpu, 64, VTIO_DMA_TO_DEVICE); ul = __LINE__;
    rep = one(VTIO_DMA_DEBUG_UNCHECKED);
    CHECK_SITE(rep->map_site, ml);
    CHECK_SITE(rep->site, ul);
    CHECK_OK(vtio_dma_mapping_error(dev, a));

    /* ... and left mapped when the driver goes */
    CHECK_OK(vtio_device_bind(dev, "test"));
    CHECK_EQ(vtio_device_unbind(dev), 1);
    rep = one(VTIO_DMA_DEBUG_LEAK);
    CHECK_SITE(rep->map_site, ul);
    CHECK_EQ(rep->addr, a);
    CHECK_EQ(api_debug_errors(&r), 11);
    api_down(&r);
}

static void t_api_bounced_double_unmap(void)
{
    struct api_rig r;
    api_up(&r, true, 6 * VTIO_GiB);             /* no IOMMU: a 32-bit device bounces */
    uint64_t high;
    CHECK_OK(vtio_page_alloc(r.h->pages, 0, 0, &high));
    CHECK_GE(high, VTIO_PAGE_DMA32_LIMIT);
    vtio_dma_addr_t a = vtio_dma_map_page(r.dev, high, 4096, VTIO_DMA_FROM_DEVICE);
    CHECK_OK(vtio_dma_mapping_error(r.dev, a));
    struct vtio_dma_stats st;
    vtio_dma_get_stats(r.h, &st);
    CHECK_EQ(st.bounced_maps, 1);
    CHECK_EQ(st.swiotlb_used, 4096);
    vtio_dma_unmap_page(r.dev, a, 4096, VTIO_DMA_FROM_DEVICE);
    /* A bounce slot mapped again in between must not be freed by the
     * stale unmap: debugging refuses it. */
    vtio_dma_addr_t b = vtio_dma_map_page(r.dev, high, 4096, VTIO_DMA_FROM_DEVICE);
    CHECK_OK(vtio_dma_mapping_error(r.dev, b));
    vtio_dma_unmap_page(r.dev, b, 4096, VTIO_DMA_FROM_DEVICE);
    vtio_dma_unmap_page(r.dev, a, 4096, VTIO_DMA_FROM_DEVICE);
    one(VTIO_DMA_DEBUG_DOUBLE_UNMAP);
    vtio_dma_get_stats(r.h, &st);
    CHECK_EQ(st.swiotlb_used, 0);
    CHECK_EQ(st.unmaps, 2);
    api_down(&r);
}

static const struct vtio_test tests[] = {
    { "correct_use", "map, check, sync both ways, unmap of every kind, a checked failure, "
      "one buffer mapped twice and CPU access to CPU-owned memory report nothing",
      t_correct_use },
    { "not_mapped", "unmap or sync of an address the device never mapped is one not-mapped "
      "report naming the device, the address and the site; the unmap is refused",
      t_not_mapped },
    { "double_unmap", "a second unmap is one double-unmap report naming where the mapping "
      "was made and first unmapped; another device's unmap there is not-mapped",
      t_double_unmap },
    { "mismatches", "unmap with another size, direction or kind (single/page/sg/coherent) "
      "is one report each, with both sites, and the unmap still happens", t_mismatches },
    { "sync_checks", "a sync running past its mapping, in another direction, or starting "
      "outside it is reported; syncs deep inside a long mapping are found", t_sync_checks },
    { "unchecked", "an unchecked single mapping is reported at unmap; an unchecked failed "
      "map at the same thread's next map or unmap on the device, once", t_unchecked },
    { "cpu_access", "CPU access overlapping a device-owned streaming mapping is reported; "
      "CPU-owned (after sync_for_cpu), unmapped and coherent memory are not",
      t_cpu_access },
    { "fingerprint", "a TO_DEVICE buffer changed while the device owned it is reported at "
      "unmap or sync_for_cpu; changes while the CPU owned it, outside it, or to a "
      "FROM_DEVICE buffer are not", t_fingerprint },
    { "leaks", "leaks reports every live mapping of the device once and forgets them; "
      "other devices keep theirs", t_leaks },
    { "host_log_by_default", "with no handler a report is one error line in the host log "
      "naming the device, the kind and the sites", t_host_log_by_default },
    { "threads", "four threads mapping, syncing, declaring CPU access and unmapping "
      "correctly, with leak checks running beside them, report nothing", t_threads },
    { "api_correct_use", "through the public API with dma_debug: single, page, sg and "
      "coherent mappings used by the rules report nothing", t_api_correct_use },
    { "api_misuse", "through the public API: wrong size, double unmap, unchecked, wrong "
      "kind and direction, sync past the end, CPU access and writes, unknown address, an "
      "unchecked failed map and a leak at unbind are each one report whose map_site and "
      "site are this file's lines", t_api_misuse },
    { "api_bounced_double_unmap", "a double unmap of a bounced mapping is reported and "
      "refused, so the bounce slots in use again stay mapped", t_api_bounced_double_unmap },
};

VTIO_TEST_MAIN(tests)
