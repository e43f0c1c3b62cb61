/*
 * DMA-API debugging (Linux's kernel/dma/debug.c, written here): mapping.c
 * tells this file about every map, unmap, sync and mapping-error check
 * when the host runs with dma_debug, and this file reports misuse.
 *
 * What is tracked.  Every live mapping is an entry in a hash table keyed by
 * (device, DMA address), with its kind, CPU physical range, direction, the
 * call site that made it, who owns it now (device after map and
 * sync_for_device, CPU after sync_for_cpu), whether the driver checked it
 * with mapping_error, and, for TO_DEVICE mappings, a fingerprint of the
 * CPU buffer's contents taken when the device got it.  Two mappings may
 * share a key (the same buffer mapped twice by a direct device); lookups
 * then prefer the one that matches size, kind and direction, as Linux does.
 * Unmapped entries go to a bounded history ring, so that a second unmap is
 * reported as a double unmap naming where the mapping was made and first
 * unmapped, and not only as "not mapped".  A map that failed is remembered
 * per (device, thread) until that thread checks it with mapping_error; its
 * next map or unmap on the device reports it otherwise.  A successful
 * single/page mapping is "unchecked" until mapping_error sees its address
 * and is reported at unmap if it never was (sg and coherent mappings report
 * failure through their return values instead).
 *
 * Checks: at unmap, not-mapped / double-unmap (the unmap is then skipped),
 * size, kind and direction against the entry, unchecked error, and the
 * fingerprint; at sync, not-mapped, the range inside the mapping and the
 * direction (a BIDIRECTIONAL mapping may be synced either way); at
 * cpu_access, any streaming mapping the device owns that overlaps the
 * range (coherent memory is shared by design); at leaks, every live entry
 * of the device.  Ownership is per mapping: a partial sync hands the whole
 * mapping over (lenient: no report for the rest of it).
 *
 * Fingerprints.  The CPU cannot watch its own writes, so a TO_DEVICE
 * buffer is hashed when the device gets it and again when it comes back
 * (sync_for_cpu, unmap); a change means the CPU wrote while the device
 * owned it.  The device cannot have written it: a TO_DEVICE mapping is
 * read-only in the IOMMU (a direct device that writes anyway is blamed on
 * the CPU, the one false report possible).  Buffers outside RAM are not
 * hashed.
 *
 * Threads: one mutex over everything.  Debugging is allowed to be slow; it
 * must be exact.  Reports are built under the lock and delivered after it
 * is dropped, so a handler may call back into the DMA API.
 */
#include "host/dma/dma_priv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

#define HASH_BITS       10
#define HASH_SIZE       (1u << HASH_BITS)
#define HISTORY_SIZE    1024u
#define MAX_REPORTS     8               /* per call: an unmap can break many rules */

struct entry {
    struct entry *next;
    struct vtio_device *dev;
    vtio_dma_addr_t addr;
    uint64_t phys, size;
    enum vtio_dma_map_kind kind;
    enum vtio_dma_direction dir;
    const char *map_site;
    bool device_owns;
    bool checked;               /* mapping_error seen (single/page only) */
    bool fingerprinted;
    uint64_t fingerprint;
};

/* A mapping as it was when it was unmapped. */
struct unmapped {
    struct vtio_device *dev;
    vtio_dma_addr_t addr;
    uint64_t size;
    const char *map_site, *unmap_site;
};

/* A failed map not yet checked by the thread that made it. */
struct failed_map {
    struct failed_map *next;
    struct vtio_device *dev;
    pthread_t thread;
    const char *site;
};

struct vtio_dma_debug {
    struct vtio_host *h;
    pthread_mutex_t lock;
    struct entry *buckets[HASH_SIZE];
    struct unmapped history[HISTORY_SIZE];
    unsigned history_next, history_len;
    struct failed_map *failed;
    uint64_t max_size;          /* the longest mapping ever tracked */
    bool out_of_memory;         /* an entry could not be made: checks stop */
    vtio_dma_debug_fn fn;
    void *opaque;
    _Atomic uint64_t errors;
};

/* Reports of one call, delivered after the lock is dropped. */
struct batch {
    unsigned n;
    struct vtio_dma_debug_report r[MAX_REPORTS];
};

static const char *const kind_names[] = {
    [VTIO_DMA_DEBUG_NOT_MAPPED] = "not-mapped",
    [VTIO_DMA_DEBUG_DOUBLE_UNMAP] = "double-unmap",
    [VTIO_DMA_DEBUG_SIZE_MISMATCH] = "size-mismatch",
    [VTIO_DMA_DEBUG_DIR_MISMATCH] = "direction-mismatch",
    [VTIO_DMA_DEBUG_KIND_MISMATCH] = "kind-mismatch",
    [VTIO_DMA_DEBUG_SYNC_RANGE] = "sync-range",
    [VTIO_DMA_DEBUG_UNCHECKED] = "unchecked-error",
    [VTIO_DMA_DEBUG_CPU_ACCESS] = "cpu-access",
    [VTIO_DMA_DEBUG_LEAK] = "leak",
};

static const char *map_kind_name(enum vtio_dma_map_kind k)
{
    static const char *const names[] = { "single", "page", "scatter-gather", "coherent" };
    return (unsigned)k < 4 ? names[k] : "?";
}

static const char *dir_name(enum vtio_dma_direction d)
{
    static const char *const names[] = { "bidirectional", "to-device", "from-device",
                                         "none" };
    return (unsigned)d < 4 ? names[d] : "?";
}

/* "file.c:12" of a "/long/path/file.c:12" site, to keep messages short. */
static const char *short_site(const char *site)
{
    if (!site || !*site)
        return "?";
    const char *slash = strrchr(site, '/');
    return slash ? slash + 1 : site;
}

/* ------------------------------------------------------------------------
 * Reports
 * ------------------------------------------------------------------------ */

/* Starts a report in the batch; the caller writes its message. */
static struct vtio_dma_debug_report *report(struct vtio_dma_debug *dbg, struct batch *b,
                                            enum vtio_dma_debug_kind kind,
                                            struct vtio_device *dev, const char *site,
                                            const char *map_site, vtio_dma_addr_t addr,
                                            uint64_t size)
{
    atomic_fetch_add_explicit(&dbg->errors, 1, memory_order_relaxed);
    if (b->n == MAX_REPORTS)
        return NULL;
    struct vtio_dma_debug_report *r = &b->r[b->n++];
    *r = (struct vtio_dma_debug_report){
        .kind = kind, .kind_name = kind_names[kind], .dev = dev,
        .site = site ? site : "", .map_site = map_site ? map_site : "", .unmap_site = "",
        .addr = addr, .size = size,
    };
    return r;
}

/* Writes the one-line message: "<dev>: DMA-API: <kind>: <what> at <site>". */
static void say(struct vtio_dma_debug_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(struct vtio_dma_debug_report *r, const char *fmt, ...)
{
    if (!r)
        return;
    char what[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(r->msg, sizeof(r->msg), "%s: DMA-API: %s: %s at %s", r->dev ? r->dev->name : "?",
             r->kind_name, what, short_site(r->site));
}

static void deliver(struct vtio_dma_debug *dbg, struct batch *b)
{
    if (b->n == 0)
        return;
    pthread_mutex_lock(&dbg->lock);
    vtio_dma_debug_fn fn = dbg->fn;
    void *opaque = dbg->opaque;
    pthread_mutex_unlock(&dbg->lock);
    for (unsigned i = 0; i < b->n; i++) {
        if (fn)
            fn(opaque, &b->r[i]);
        else
            vtio_host_log(dbg->h, VTIO_LOG_ERR, "%s", b->r[i].msg);
    }
}

/* ------------------------------------------------------------------------
 * Fingerprints
 * ------------------------------------------------------------------------ */

/* A 64-bit hash of the CPU's view of [phys, +size); false outside RAM. */
static bool fingerprint(struct vtio_dma_debug *dbg, uint64_t phys, uint64_t size,
                        uint64_t *out)
{
    const uint8_t *p = vtio_host_phys_to_virt(dbg->h, phys);
    if (!p || size == 0 || vtio_host_phys_to_virt(dbg->h, phys + size - 1) != p + size - 1)
        return false;
    uint64_t h = 0xcbf29ce484222325ull ^ size;
    uint64_t i = 0;
    for (; i + 8 <= size; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < size; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    *out = h;
    return true;
}

static void take_fingerprint(struct vtio_dma_debug *dbg, struct entry *e)
{
    e->fingerprinted = e->dir == VTIO_DMA_TO_DEVICE && e->kind != VTIO_DMA_KIND_COHERENT &&
                       fingerprint(dbg, e->phys, e->size, &e->fingerprint);
}

/* The device gives e back to the CPU: reports a CPU write while it owned e. */
static void check_fingerprint(struct vtio_dma_debug *dbg, struct batch *b, struct entry *e,
                              const char *site)
{
    uint64_t now;
    if (!e->device_owns || !e->fingerprinted || !fingerprint(dbg, e->phys, e->size, &now) ||
        now == e->fingerprint)
        return;
    say(report(dbg, b, VTIO_DMA_DEBUG_CPU_ACCESS, e->dev, site, e->map_site, e->addr,
               e->size),
        "CPU wrote to a buffer the device owned [addr=%#" PRIx64 "] [phys=%#" PRIx64
        "] [size=%" PRIu64 "] [to-device] mapped at %s",
        e->addr, e->phys, e->size, short_site(e->map_site));
}

/* ------------------------------------------------------------------------
 * The table (lock held)
 * ------------------------------------------------------------------------ */

static unsigned bucket_of(const struct vtio_device *dev, vtio_dma_addr_t addr)
{
    uint64_t k = (addr >> 12) ^ ((uintptr_t)dev >> 6);
    return (unsigned)((k * 0x9e3779b97f4a7c15ull) >> (64 - HASH_BITS));
}

/* The entry for (dev, addr) that best matches size, kind and dir. */
static struct entry **find_exact(struct vtio_dma_debug *dbg, struct vtio_device *dev,
                                 vtio_dma_addr_t addr, uint64_t size,
                                 enum vtio_dma_map_kind kind, enum vtio_dma_direction dir)
{
    struct entry **best = NULL;
    int best_score = -1;
    for (struct entry **pp = &dbg->buckets[bucket_of(dev, addr)]; *pp; pp = &(*pp)->next) {
        const struct entry *e = *pp;
        if (e->dev != dev || e->addr != addr)
            continue;
        int score = (e->size == size) + (e->kind == kind) + (e->dir == dir);
        if (score > best_score) {
            best = pp;
            best_score = score;
        }
    }
    return best;
}

/* The entry of dev whose DMA range contains addr (the start of a sync).
 * Entries are hashed by the page of their first byte: a mapping that starts
 * on an earlier page is found by walking back over as many pages as the
 * longest mapping has, or, when that is more pages than buckets, by looking
 * at every bucket. */
static struct entry *find_containing(struct vtio_dma_debug *dbg, struct vtio_device *dev,
                                     vtio_dma_addr_t addr)
{
    uint64_t pages_back = (dbg->max_size + 0xfff) >> 12;   /* boundaries it can cross */
    vtio_dma_addr_t page = addr & ~(vtio_dma_addr_t)0xfff;
    if (pages_back > page >> 12)
        pages_back = page >> 12;
    bool everywhere = pages_back >= HASH_SIZE;
    for (uint64_t k = 0; k <= (everywhere ? HASH_SIZE - 1 : pages_back); k++) {
        unsigned i = everywhere ? (unsigned)k : bucket_of(dev, page - (k << 12));
        for (struct entry *e = dbg->buckets[i]; e; e = e->next)
            if (e->dev == dev && addr - e->addr < e->size)
                return e;
    }
    return NULL;
}

static struct entry *first_owned_overlap(struct vtio_dma_debug *dbg, uint64_t phys,
                                         uint64_t len)
{
    for (unsigned i = 0; i < HASH_SIZE; i++)
        for (struct entry *e = dbg->buckets[i]; e; e = e->next)
            if (e->device_owns && e->kind != VTIO_DMA_KIND_COHERENT &&
                phys < e->phys + e->size && e->phys < phys + len)
                return e;
    return NULL;
}

static void remember_unmap(struct vtio_dma_debug *dbg, const struct entry *e,
                           const char *site)
{
    dbg->history[dbg->history_next] = (struct unmapped){
        .dev = e->dev, .addr = e->addr, .size = e->size, .map_site = e->map_site,
        .unmap_site = site,
    };
    dbg->history_next = (dbg->history_next + 1) % HISTORY_SIZE;
    if (dbg->history_len < HISTORY_SIZE)
        dbg->history_len++;
}

/* The latest unmap of (dev, addr) still in the history, or NULL. */
static const struct unmapped *find_unmapped(struct vtio_dma_debug *dbg,
                                            const struct vtio_device *dev,
                                            vtio_dma_addr_t addr)
{
    for (unsigned k = 1; k <= dbg->history_len; k++) {
        const struct unmapped *u =
            &dbg->history[(dbg->history_next + HISTORY_SIZE - k) % HISTORY_SIZE];
        if (u->dev == dev && u->addr == addr)
            return u;
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Failed maps (lock held)
 * ------------------------------------------------------------------------ */

static struct failed_map **find_failed(struct vtio_dma_debug *dbg,
                                       const struct vtio_device *dev)
{
    pthread_t self = pthread_self();
    for (struct failed_map **pp = &dbg->failed; *pp; pp = &(*pp)->next)
        if ((*pp)->dev == dev && pthread_equal((*pp)->thread, self))
            return pp;
    return NULL;
}

static void forget_failed(struct failed_map **pp)
{
    struct failed_map *f = *pp;
    *pp = f->next;
    free(f);
}

/* The driver maps or unmaps again on dev: a failure it never checked is
 * reported now (once). */
static void check_failed(struct vtio_dma_debug *dbg, struct batch *b,
                         struct vtio_device *dev, const char *site)
{
    struct failed_map **pp = find_failed(dbg, dev);
    if (!pp)
        return;
    say(report(dbg, b, VTIO_DMA_DEBUG_UNCHECKED, dev, site, (*pp)->site,
               VTIO_DMA_MAPPING_ERROR, 0),
        "device driver failed to check map error of the failed map at %s",
        short_site((*pp)->site));
    forget_failed(pp);
}

static void remember_failed(struct vtio_dma_debug *dbg, struct vtio_device *dev,
                            const char *site)
{
    struct failed_map **pp = find_failed(dbg, dev);
    if (pp) {                           /* the last failure is the one to check */
        (*pp)->site = site;
        return;
    }
    struct failed_map *f = malloc(sizeof(*f));
    if (!f)
        return;
    *f = (struct failed_map){ .next = dbg->failed, .dev = dev, .thread = pthread_self(),
                              .site = site };
    dbg->failed = f;
}

/* ------------------------------------------------------------------------
 * The hooks
 * ------------------------------------------------------------------------ */

int vtio_dma_debug_create(struct vtio_host *h, struct vtio_dma_debug **out)
{
    if (!h || !out)
        return vtio_fail(-EINVAL, "dma debug: create needs a host");
    struct vtio_dma_debug *dbg = calloc(1, sizeof(*dbg));
    if (!dbg)
        return vtio_fail(-ENOMEM, "dma debug: out of memory");
    dbg->h = h;
    pthread_mutex_init(&dbg->lock, NULL);
    *out = dbg;
    return 0;
}

void vtio_dma_debug_destroy(struct vtio_dma_debug *dbg)
{
    if (!dbg)
        return;
    for (unsigned i = 0; i < HASH_SIZE; i++)
        while (dbg->buckets[i]) {
            struct entry *e = dbg->buckets[i];
            dbg->buckets[i] = e->next;
            free(e);
        }
    while (dbg->failed)
        forget_failed(&dbg->failed);
    pthread_mutex_destroy(&dbg->lock);
    free(dbg);
}

static bool checks_single_error(enum vtio_dma_map_kind kind)
{
    return kind == VTIO_DMA_KIND_SINGLE || kind == VTIO_DMA_KIND_PAGE;
}

void vtio_dma_debug_map(struct vtio_dma_debug *dbg, struct vtio_device *dev,
                        enum vtio_dma_map_kind kind, vtio_dma_addr_t addr, uint64_t phys,
                        uint64_t size, enum vtio_dma_direction dir, const char *site)
{
    if (!dbg || !dev)
        return;
    struct batch b = { 0 };
    pthread_mutex_lock(&dbg->lock);
    check_failed(dbg, &b, dev, site);
    if (addr == VTIO_DMA_MAPPING_ERROR) {
        if (checks_single_error(kind))
            remember_failed(dbg, dev, site);
    } else if (!dbg->out_of_memory) {
        struct entry *e = malloc(sizeof(*e));
        if (e) {
            *e = (struct entry){
                .dev = dev, .addr = addr, .phys = phys, .size = size, .kind = kind,
                .dir = dir, .map_site = site, .device_owns = true,
                .checked = !checks_single_error(kind),
            };
            take_fingerprint(dbg, e);
            if (size > dbg->max_size)
                dbg->max_size = size;
            unsigned i = bucket_of(dev, addr);
            e->next = dbg->buckets[i];
            dbg->buckets[i] = e;
        } else {
            dbg->out_of_memory = true;
            vtio_host_log(dbg->h, VTIO_LOG_ERR,
                          "DMA-API: debugging out of memory - disabling");
        }
    }
    pthread_mutex_unlock(&dbg->lock);
    deliver(dbg, &b);
}

/* An unmap that matched no live mapping: a double unmap if the history
 * still has the address, else an address never mapped. */
static void report_unmatched_unmap(struct vtio_dma_debug *dbg, struct batch *b,
                                   struct vtio_device *dev, vtio_dma_addr_t addr,
                                   uint64_t size, const char *site)
{
    const struct unmapped *u = find_unmapped(dbg, dev, addr);
    if (!u) {
        say(report(dbg, b, VTIO_DMA_DEBUG_NOT_MAPPED, dev, site, NULL, addr, size),
            "device driver tries to free DMA memory it has not allocated [addr=%#" PRIx64
            "] [size=%" PRIu64 "]", addr, size);
        return;
    }
    struct vtio_dma_debug_report *r =
        report(dbg, b, VTIO_DMA_DEBUG_DOUBLE_UNMAP, dev, site, u->map_site, addr, size);
    if (r)
        r->unmap_site = u->unmap_site ? u->unmap_site : "";
    say(r, "device driver frees DMA memory twice [addr=%#" PRIx64 "] [size=%" PRIu64
        "] mapped at %s, first unmapped at %s", addr, u->size, short_site(u->map_site),
        short_site(u->unmap_site));
}

/* The checks of an unmap that matched entry e. */
static void check_unmap(struct vtio_dma_debug *dbg, struct batch *b, struct entry *e,
                        enum vtio_dma_map_kind kind, uint64_t size,
                        enum vtio_dma_direction dir, const char *site)
{
    struct vtio_device *dev = e->dev;
    const char *ms = short_site(e->map_site);
    if (e->size != size)
        say(report(dbg, b, VTIO_DMA_DEBUG_SIZE_MISMATCH, dev, site, e->map_site, e->addr, size),
            "frees DMA memory with a different size [addr=%#" PRIx64 "] [mapped as %" PRIu64
            " bytes] [unmapped as %" PRIu64 " bytes] mapped at %s", e->addr, e->size, size, ms);
    if (e->kind != kind)
        say(report(dbg, b, VTIO_DMA_DEBUG_KIND_MISMATCH, dev, site, e->map_site, e->addr, size),
            "frees DMA memory with the wrong function [addr=%#" PRIx64 "] [mapped as %s] "
            "[unmapped as %s] mapped at %s", e->addr, map_kind_name(e->kind),
            map_kind_name(kind), ms);
    if (e->dir != dir)
        say(report(dbg, b, VTIO_DMA_DEBUG_DIR_MISMATCH, dev, site, e->map_site, e->addr, size),
            "frees DMA memory with a different direction [addr=%#" PRIx64 "] [size=%" PRIu64
            "] [mapped as %s] [unmapped as %s] mapped at %s", e->addr, e->size,
            dir_name(e->dir), dir_name(dir), ms);
    if (!e->checked)
        say(report(dbg, b, VTIO_DMA_DEBUG_UNCHECKED, dev, site, e->map_site, e->addr, size),
            "device driver failed to check map error [addr=%#" PRIx64 "] [size=%" PRIu64
            "] mapped at %s", e->addr, e->size, ms);
    check_fingerprint(dbg, b, e, site);
}

bool vtio_dma_debug_unmap(struct vtio_dma_debug *dbg, struct vtio_device *dev,
                          enum vtio_dma_map_kind kind, vtio_dma_addr_t addr, uint64_t size,
                          enum vtio_dma_direction dir, const char *site)
{
    if (!dbg || !dev)
        return true;
    struct batch b = { 0 };
    bool matched = true;
    pthread_mutex_lock(&dbg->lock);
    check_failed(dbg, &b, dev, site);
    if (!dbg->out_of_memory) {
        struct entry **pp = find_exact(dbg, dev, addr, size, kind, dir);
        if (pp) {
            struct entry *e = *pp;
            check_unmap(dbg, &b, e, kind, size, dir, site);
            *pp = e->next;
            remember_unmap(dbg, e, site);
            free(e);
        } else {
            report_unmatched_unmap(dbg, &b, dev, addr, size, site);
            matched = false;
        }
    }
    pthread_mutex_unlock(&dbg->lock);
    deliver(dbg, &b);
    return matched;
}

static void check_sync(struct vtio_dma_debug *dbg, struct batch *b, struct entry *e,
                       vtio_dma_addr_t addr, uint64_t size, enum vtio_dma_direction dir,
                       const char *site)
{
    const char *ms = short_site(e->map_site);
    if (size > e->size - (addr - e->addr))
        say(report(dbg, b, VTIO_DMA_DEBUG_SYNC_RANGE, e->dev, site, e->map_site, addr, size),
            "syncs DMA memory outside the mapping [mapping=%#" PRIx64 "+%" PRIu64
            "] [sync=%#" PRIx64 "+%" PRIu64 "] mapped at %s", e->addr, e->size, addr, size,
            ms);
    if (e->dir != VTIO_DMA_BIDIRECTIONAL && dir != e->dir)
        say(report(dbg, b, VTIO_DMA_DEBUG_DIR_MISMATCH, e->dev, site, e->map_site, addr, size),
            "syncs DMA memory with a different direction [addr=%#" PRIx64 "] [size=%" PRIu64
            "] [mapped as %s] [synced as %s] mapped at %s", addr, size, dir_name(e->dir),
            dir_name(dir), ms);
}

void vtio_dma_debug_sync(struct vtio_dma_debug *dbg, struct vtio_device *dev,
                         vtio_dma_addr_t addr, uint64_t size, enum vtio_dma_direction dir,
                         bool for_device, const char *site)
{
    if (!dbg || !dev)
        return;
    struct batch b = { 0 };
    pthread_mutex_lock(&dbg->lock);
    struct entry *e = dbg->out_of_memory ? NULL : find_containing(dbg, dev, addr);
    if (e) {
        check_sync(dbg, &b, e, addr, size, dir, site);
        if (for_device) {
            if (!e->device_owns)
                take_fingerprint(dbg, e);
            e->device_owns = true;
        } else {
            check_fingerprint(dbg, &b, e, site);
            e->device_owns = false;
        }
    } else if (!dbg->out_of_memory) {
        say(report(dbg, &b, VTIO_DMA_DEBUG_NOT_MAPPED, dev, site, NULL, addr, size),
            "device driver tries to sync DMA memory it has not allocated [addr=%#" PRIx64
            "] [size=%" PRIu64 "]", addr, size);
    }
    pthread_mutex_unlock(&dbg->lock);
    deliver(dbg, &b);
}

void vtio_dma_debug_mapping_error(struct vtio_dma_debug *dbg, struct vtio_device *dev,
                                  vtio_dma_addr_t addr, const char *site)
{
    (void)site;
    if (!dbg || !dev)
        return;
    pthread_mutex_lock(&dbg->lock);
    if (addr == VTIO_DMA_MAPPING_ERROR) {
        struct failed_map **pp = find_failed(dbg, dev);
        if (pp)
            forget_failed(pp);
    } else {
        /* The first unchecked mapping at addr, as Linux marks. */
        for (struct entry *e = dbg->buckets[bucket_of(dev, addr)]; e; e = e->next)
            if (e->dev == dev && e->addr == addr && !e->checked) {
                e->checked = true;
                break;
            }
    }
    pthread_mutex_unlock(&dbg->lock);
}

void vtio_dma_debug_cpu_access(struct vtio_dma_debug *dbg, struct vtio_device *dev,
                               uint64_t phys, uint64_t len, bool write, const char *site)
{
    if (!dbg || len == 0)
        return;
    struct batch b = { 0 };
    pthread_mutex_lock(&dbg->lock);
    const struct entry *e = first_owned_overlap(dbg, phys, len);
    if (e)
        say(report(dbg, &b, VTIO_DMA_DEBUG_CPU_ACCESS, e->dev, site, e->map_site, e->addr,
                   e->size),
            "CPU %s [phys=%#" PRIx64 "+%" PRIu64 "] owned by the device [addr=%#" PRIx64
            "] [phys=%#" PRIx64 "+%" PRIu64 "] [%s]%s%s mapped at %s",
            write ? "writes" : "reads", phys, len, e->addr, e->phys, e->size,
            dir_name(e->dir), dev && dev != e->dev ? " declared for " : "",
            dev && dev != e->dev ? dev->name : "", short_site(e->map_site));
    pthread_mutex_unlock(&dbg->lock);
    deliver(dbg, &b);
}

/* Reports and forgets up to a batch of dev's live mappings.  @returns how
 * many. */
static unsigned take_leaks(struct vtio_dma_debug *dbg, struct batch *b,
                           struct vtio_device *dev)
{
    unsigned n = 0;
    for (unsigned i = 0; i < HASH_SIZE && n < MAX_REPORTS; i++) {
        for (struct entry **pp = &dbg->buckets[i]; *pp && n < MAX_REPORTS;) {
            struct entry *e = *pp;
            if (e->dev != dev) {
                pp = &e->next;
                continue;
            }
            say(report(dbg, b, VTIO_DMA_DEBUG_LEAK, dev, e->map_site, e->map_site, e->addr,
                       e->size),
                "DMA mapping still live [addr=%#" PRIx64 "] [phys=%#" PRIx64 "] [size=%"
                PRIu64 "] [%s] [%s]", e->addr, e->phys, e->size, map_kind_name(e->kind),
                dir_name(e->dir));
            *pp = e->next;
            free(e);
            n++;
        }
    }
    return n;
}

unsigned vtio_dma_debug_leaks(struct vtio_dma_debug *dbg, struct vtio_device *dev)
{
    if (!dbg || !dev)
        return 0;
    unsigned leaks = 0, n;
    do {                        /* batch by batch: a driver can leak thousands */
        struct batch b = { 0 };
        pthread_mutex_lock(&dbg->lock);
        n = take_leaks(dbg, &b, dev);
        struct failed_map **pp;
        while (n < MAX_REPORTS && (pp = find_failed(dbg, dev)) != NULL)
            forget_failed(pp);
        pthread_mutex_unlock(&dbg->lock);
        deliver(dbg, &b);
        leaks += n;
    } while (n == MAX_REPORTS);
    return leaks;
}

uint64_t vtio_dma_debug_errors(struct vtio_dma_debug *dbg)
{
    return dbg ? atomic_load_explicit(&dbg->errors, memory_order_relaxed) : 0;
}

void vtio_dma_debug_handler(struct vtio_dma_debug *dbg, vtio_dma_debug_fn fn, void *opaque)
{
    if (!dbg)
        return;
    pthread_mutex_lock(&dbg->lock);
    dbg->fn = fn;
    dbg->opaque = opaque;
    pthread_mutex_unlock(&dbg->lock);
}
