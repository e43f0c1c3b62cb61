/*
 * The machine's physical address space: a sorted map of RAM and MMIO
 * regions, and the CPU-side and device-side accessors over it.
 *
 * The map is an immutable array of region pointers sorted by base.  Readers
 * (every access, from any thread) load the current map with one acquire load
 * and binary-search it; they take no lock.  Writers (adding or removing a
 * region, which happens when software places a BAR) build a new array under
 * `lock` and publish it with a release store.  Old arrays and removed regions
 * are retired, not freed, until vtio_mem_destroy(): a reader that loaded an
 * old map may still be using it, and topology changes are rare enough that
 * keeping them costs nothing worth a reclamation scheme.
 *
 * Invariants: regions in a map never overlap and never wrap; RAM regions are
 * 2 MiB aligned in base and size, and their host mapping is 2 MiB aligned
 * too, so the host can back them with huge pages.
 *
 * Accesses are split at region boundaries; each piece goes to RAM (a copy,
 * single-copy atomic when naturally aligned and at most 8 bytes), to MMIO
 * (split into naturally aligned 1/2/4/8-byte callbacks) or to a hole.
 */
#define _GNU_SOURCE
#include <vtio/mem.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hw/mem/mem_internal.h"
#include "util/error.h"

enum region_kind { REGION_RAM, REGION_MMIO };

struct region {
    uint64_t base, size;          /* [base, base + size), never wraps */
    enum region_kind kind;
    char name[32];
    /* RAM */
    int fd;                       /* memfd backing the region */
    uint8_t *host;                /* its mapping, 2 MiB aligned */
    /* MMIO */
    const struct vtio_mmio_ops *ops;
    void *opaque;
};

struct map {
    size_t n;
    struct region *r[];           /* sorted by base */
};

struct vtio_mem {
    _Atomic(struct map *) map;    /* current snapshot; readers load-acquire */
    pthread_mutex_t lock;         /* serialises writers; guards the fields below */
    struct map **retired;         /* superseded snapshots, freed at destroy */
    size_t n_retired, cap_retired;
    struct region **dead;         /* removed regions, freed at destroy */
    size_t n_dead, cap_dead;
    _Atomic uint64_t cpu_hole_reads, cpu_hole_writes, dev_hole_accesses;
};

/* ------------------------------------------------------------------------
 * Host-side copies with the ordering the header promises.
 */

static bool small_aligned(const void *p, size_t len)
{
    return (len == 1 || len == 2 || len == 4 || len == 8) &&
           ((uintptr_t)p & (len - 1)) == 0;
}

/* A 16-byte entry (context, IRTE, invalidation descriptor) aligned to 8:
 * two single-copy-atomic 8-byte halves, low half first, as a unit reads a
 * 128-bit entry that software updates a half at a time. */
static bool entry_aligned(const void *p, size_t len)
{
    return len == 16 && ((uintptr_t)p & 7) == 0;
}

/* Copies from machine RAM at src into buf. */
void vtio_ram_load(void *buf, const void *src, size_t len)
{
    if (entry_aligned(src, len)) {
        vtio_ram_load(buf, src, 8);
        vtio_ram_load((uint8_t *)buf + 8, (const uint8_t *)src + 8, 8);
        return;
    }
    if (!small_aligned(src, len)) {
        memcpy(buf, src, len);
        return;
    }
    switch (len) {
    case 1: { uint8_t v = __atomic_load_n((const uint8_t *)src, __ATOMIC_ACQUIRE); memcpy(buf, &v, 1); break; }
    case 2: { uint16_t v = __atomic_load_n((const uint16_t *)src, __ATOMIC_ACQUIRE); memcpy(buf, &v, 2); break; }
    case 4: { uint32_t v = __atomic_load_n((const uint32_t *)src, __ATOMIC_ACQUIRE); memcpy(buf, &v, 4); break; }
    default: { uint64_t v = __atomic_load_n((const uint64_t *)src, __ATOMIC_ACQUIRE); memcpy(buf, &v, 8); break; }
    }
}

/* Copies buf into machine RAM at dst. */
void vtio_ram_store(void *dst, const void *buf, size_t len)
{
    if (entry_aligned(dst, len)) {
        vtio_ram_store(dst, buf, 8);
        vtio_ram_store((uint8_t *)dst + 8, (const uint8_t *)buf + 8, 8);
        return;
    }
    if (!small_aligned(dst, len)) {
        memcpy(dst, buf, len);
        return;
    }
    switch (len) {
    case 1: { uint8_t v; memcpy(&v, buf, 1); __atomic_store_n((uint8_t *)dst, v, __ATOMIC_RELEASE); break; }
    case 2: { uint16_t v; memcpy(&v, buf, 2); __atomic_store_n((uint16_t *)dst, v, __ATOMIC_RELEASE); break; }
    case 4: { uint32_t v; memcpy(&v, buf, 4); __atomic_store_n((uint32_t *)dst, v, __ATOMIC_RELEASE); break; }
    default: { uint64_t v; memcpy(&v, buf, 8); __atomic_store_n((uint64_t *)dst, v, __ATOMIC_RELEASE); break; }
    }
}

/* ------------------------------------------------------------------------
 * The map.
 */

static struct map *map_get(struct vtio_mem *mem)
{
    return atomic_load_explicit(&mem->map, memory_order_acquire);
}

/* The region containing pa, or NULL; *next_base is the base of the first
 * region above pa (UINT64_MAX if none), so a hole's extent is known. */
static struct region *map_find(const struct map *m, uint64_t pa, uint64_t *next_base)
{
    size_t lo = 0, hi = m->n;          /* first region with base > pa is lo */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->r[mid]->base <= pa)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (next_base)
        *next_base = lo < m->n ? m->r[lo]->base : UINT64_MAX;
    if (lo == 0)
        return NULL;
    struct region *r = m->r[lo - 1];
    return pa - r->base < r->size ? r : NULL;
}

static bool range_wraps(uint64_t base, uint64_t size)
{
    return size == 0 || base + size - 1 < base;
}

static int push_ptr(void ***arr, size_t *n, size_t *cap, void *p)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        void **na = realloc(*arr, ncap * sizeof(*na));
        if (!na)
            return -ENOMEM;
        *arr = na;
        *cap = ncap;
    }
    (*arr)[(*n)++] = p;
    return 0;
}

/* Publishes a copy of the current map with `add` inserted or `del` removed.
 * Called with mem->lock held. */
static int map_replace(struct vtio_mem *mem, struct region *add, struct region *del)
{
    struct map *old = map_get(mem);
    size_t n = old->n + (add ? 1 : 0) - (del ? 1 : 0);
    struct map *m = malloc(sizeof(*m) + (n + 1) * sizeof(m->r[0]));
    if (!m)
        return -ENOMEM;
    /* Reserve the retire slot first, so nothing can fail after publishing. */
    if (push_ptr((void ***)&mem->retired, &mem->n_retired, &mem->cap_retired, old) < 0) {
        free(m);
        return -ENOMEM;
    }
    size_t j = 0;
    for (size_t i = 0; i < old->n; i++)
        if (old->r[i] != del)
            m->r[j++] = old->r[i];
    if (add) {
        size_t at = j;
        while (at > 0 && m->r[at - 1]->base > add->base) {
            m->r[at] = m->r[at - 1];
            at--;
        }
        m->r[at] = add;
        j++;
    }
    m->n = j;
    atomic_store_explicit(&mem->map, m, memory_order_release);
    return 0;
}

/* Compares last bytes, not ends: a region may end exactly at 2^64. */
static bool overlaps_any(const struct map *m, uint64_t base, uint64_t size)
{
    uint64_t last = base + size - 1;
    for (size_t i = 0; i < m->n; i++) {
        const struct region *r = m->r[i];
        if (base <= r->base + r->size - 1 && r->base <= last)
            return true;
    }
    return false;
}

static int add_region(struct vtio_mem *mem, struct region *r)
{
    pthread_mutex_lock(&mem->lock);
    int ret;
    if (overlaps_any(map_get(mem), r->base, r->size))
        ret = vtio_fail(-EEXIST, "region %s [%#llx, %#llx) overlaps an existing region",
                        r->name, (unsigned long long)r->base,
                        (unsigned long long)(r->base + r->size));
    else
        ret = map_replace(mem, r, NULL);
    pthread_mutex_unlock(&mem->lock);
    return ret;
}

/* ------------------------------------------------------------------------
 * Creating and destroying.
 */

struct vtio_mem *vtio_mem_create(void)
{
    struct vtio_mem *mem = calloc(1, sizeof(*mem));
    struct map *empty = calloc(1, sizeof(*empty));
    if (!mem || !empty) {
        free(mem);
        free(empty);
        return NULL;
    }
    pthread_mutex_init(&mem->lock, NULL);
    atomic_init(&mem->map, empty);
    return mem;
}

static void region_free(struct region *r)
{
    if (r->kind == REGION_RAM) {
        munmap(r->host, r->size);
        close(r->fd);
    }
    free(r);
}

void vtio_mem_destroy(struct vtio_mem *mem)
{
    if (!mem)
        return;
    struct map *m = map_get(mem);
    for (size_t i = 0; i < m->n; i++)
        region_free(m->r[i]);
    free(m);
    for (size_t i = 0; i < mem->n_retired; i++)
        free(mem->retired[i]);
    for (size_t i = 0; i < mem->n_dead; i++)
        region_free(mem->dead[i]);
    free(mem->retired);
    free(mem->dead);
    pthread_mutex_destroy(&mem->lock);
    free(mem);
}

static void set_name(struct region *r, const char *name)
{
    snprintf(r->name, sizeof(r->name), "%s", name ? name : "?");
}

/* Maps size bytes of fd at a 2 MiB aligned host address: reserve a larger
 * window, then place the shared mapping at its aligned start. */
static void *map_aligned(int fd, uint64_t size)
{
    size_t span = size + VTIO_HUGE_SIZE;
    uint8_t *resv = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                         -1, 0);
    if (resv == MAP_FAILED)
        return NULL;
    uint8_t *aligned = (uint8_t *)(((uintptr_t)resv + VTIO_HUGE_SIZE - 1) &
                                   ~(uintptr_t)(VTIO_HUGE_SIZE - 1));
    void *p = mmap(aligned, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
        munmap(resv, span);
        return NULL;
    }
    if (aligned > resv)
        munmap(resv, aligned - resv);
    if (aligned + size < resv + span)
        munmap(aligned + size, resv + span - (aligned + size));
    return p;
}

int vtio_mem_add_ram(struct vtio_mem *mem, uint64_t base, uint64_t size, const char *name)
{
    if ((base | size) & (VTIO_HUGE_SIZE - 1))
        return vtio_fail(-EINVAL, "RAM [%#llx + %#llx) is not 2 MiB aligned",
                         (unsigned long long)base, (unsigned long long)size);
    if (range_wraps(base, size))
        return vtio_fail(-EINVAL, "RAM size is zero or the range wraps");

    struct region *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->kind = REGION_RAM;
    r->base = base;
    r->size = size;
    set_name(r, name);
    r->fd = memfd_create(r->name, MFD_CLOEXEC);
    if (r->fd < 0) {
        free(r);
        return vtio_fail(-ENOMEM, "memfd_create failed for RAM %s", name);
    }
    /* ftruncate only sets the size: pages are allocated on first touch. */
    if (ftruncate(r->fd, (off_t)size) < 0 || !(r->host = map_aligned(r->fd, size))) {
        close(r->fd);
        free(r);
        return vtio_fail(-ENOMEM, "cannot back %llu bytes of RAM", (unsigned long long)size);
    }
    madvise(r->host, size, MADV_HUGEPAGE);   /* a hint; honoured where shmem THP is on */
    int ret = add_region(mem, r);
    if (ret < 0)
        region_free(r);
    return ret;
}

int vtio_mem_add_mmio(struct vtio_mem *mem, uint64_t base, uint64_t size,
                      const struct vtio_mmio_ops *ops, void *opaque, const char *name)
{
    if (range_wraps(base, size))
        return vtio_fail(-EINVAL, "MMIO size is zero or the range wraps");
    if (!ops || !ops->read || !ops->write)
        return vtio_fail(-EINVAL, "MMIO region %s has no read/write callbacks",
                         name ? name : "?");
    struct region *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->kind = REGION_MMIO;
    r->base = base;
    r->size = size;
    r->fd = -1;
    r->ops = ops;
    r->opaque = opaque;
    set_name(r, name);
    int ret = add_region(mem, r);
    if (ret < 0)
        free(r);
    return ret;
}

int vtio_mem_remove_mmio(struct vtio_mem *mem, uint64_t base)
{
    pthread_mutex_lock(&mem->lock);
    struct region *r = map_find(map_get(mem), base, NULL);
    int ret;
    if (!r || r->base != base || r->kind != REGION_MMIO)
        ret = vtio_fail(-ENOENT, "no MMIO region starts at %#llx", (unsigned long long)base);
    else if ((ret = push_ptr((void ***)&mem->dead, &mem->n_dead, &mem->cap_dead, r)) == 0 &&
             (ret = map_replace(mem, NULL, r)) < 0)
        mem->n_dead--;
    pthread_mutex_unlock(&mem->lock);
    return ret;
}

/* ------------------------------------------------------------------------
 * Accessors.  One walker serves every access: it visits the range piece by
 * piece (a piece never crosses a region boundary) and hands each piece to
 * the caller's RAM, MMIO or hole step.
 */

struct piece {
    struct region *r;    /* NULL for a hole */
    uint64_t pa, len;
};

/* The piece of [pa, pa + len) that starts at pa. */
static struct piece piece_at(const struct map *m, uint64_t pa, uint64_t len)
{
    uint64_t next;
    struct piece p = { map_find(m, pa, &next), pa, len };
    uint64_t room = p.r ? p.r->base + p.r->size - pa : next - pa;
    if (room && room < len)
        p.len = room;
    return p;
}

static uint64_t mmio_read(struct region *r, uint64_t off, unsigned size)
{
    return r->ops->read(r->opaque, off, size);
}

/* Splits an MMIO piece into naturally aligned accesses of 1, 2, 4, 8 bytes. */
static unsigned mmio_chunk(uint64_t off, uint64_t len)
{
    unsigned size = 8;
    while (size > 1 && ((off & (size - 1)) || size > len))
        size >>= 1;
    return size;
}

static void mmio_read_piece(struct region *r, uint64_t off, uint8_t *buf, uint64_t len)
{
    while (len) {
        unsigned n = mmio_chunk(off, len);
        uint64_t v = mmio_read(r, off, n);
        memcpy(buf, &v, n);         /* little-endian host, like the machine */
        off += n, buf += n, len -= n;
    }
}

static void mmio_write_piece(struct region *r, uint64_t off, const uint8_t *buf, uint64_t len)
{
    while (len) {
        unsigned n = mmio_chunk(off, len);
        uint64_t v = 0;
        memcpy(&v, buf, n);
        r->ops->write(r->opaque, off, v, n);
        off += n, buf += n, len -= n;
    }
}

/* The walkers take the map snapshot to use, so that a device access checks
 * and performs against one and the same topology. */
static void access_read(struct vtio_mem *mem, const struct map *m, uint64_t pa, uint8_t *buf,
                        uint64_t len)
{
    while (len) {
        struct piece p = piece_at(m, pa, len);
        if (!p.r) {
            memset(buf, 0xff, p.len);
            atomic_fetch_add_explicit(&mem->cpu_hole_reads, 1, memory_order_relaxed);
        } else if (p.r->kind == REGION_RAM) {
            vtio_ram_load(buf, p.r->host + (pa - p.r->base), p.len);
        } else {
            mmio_read_piece(p.r, pa - p.r->base, buf, p.len);
        }
        pa += p.len, buf += p.len, len -= p.len;
    }
}

static void access_write(struct vtio_mem *mem, const struct map *m, uint64_t pa,
                         const uint8_t *buf, uint64_t len)
{
    while (len) {
        struct piece p = piece_at(m, pa, len);
        if (!p.r)
            atomic_fetch_add_explicit(&mem->cpu_hole_writes, 1, memory_order_relaxed);
        else if (p.r->kind == REGION_RAM)
            vtio_ram_store(p.r->host + (pa - p.r->base), buf, p.len);
        else
            mmio_write_piece(p.r, pa - p.r->base, buf, p.len);
        pa += p.len, buf += p.len, len -= p.len;
    }
}

/* A CPU access that wraps past 2^64 is clipped: the rest is a hole. */
static uint64_t clip(uint64_t pa, uint64_t len)
{
    return len && pa + len - 1 < pa ? 0 - pa : len;
}

void vtio_mem_read(struct vtio_mem *mem, uint64_t pa, void *buf, size_t len)
{
    uint64_t n = clip(pa, len);
    access_read(mem, map_get(mem), pa, buf, n);
    if (n < len)
        memset((uint8_t *)buf + n, 0xff, len - n);
}

void vtio_mem_write(struct vtio_mem *mem, uint64_t pa, const void *buf, size_t len)
{
    access_write(mem, map_get(mem), pa, buf, clip(pa, len));
}

void vtio_mem_set(struct vtio_mem *mem, uint64_t pa, int byte, size_t len)
{
    uint8_t chunk[4096];
    memset(chunk, byte, sizeof(chunk));
    const struct map *m = map_get(mem);
    len = clip(pa, len);
    while (len) {
        struct piece p = piece_at(m, pa, len);
        if (p.r && p.r->kind == REGION_RAM) {
            memset(p.r->host + (pa - p.r->base), byte, p.len);
        } else {
            for (uint64_t done = 0; done < p.len; done += sizeof(chunk)) {
                uint64_t n = p.len - done < sizeof(chunk) ? p.len - done : sizeof(chunk);
                access_write(mem, m, pa + done, chunk, n);
            }
        }
        pa += p.len, len -= p.len;
    }
}

#define MEM_ACCESSORS(bits)                                                    \
    uint##bits##_t vtio_mem_read##bits(struct vtio_mem *mem, uint64_t pa)      \
    {                                                                          \
        uint##bits##_t v;                                                      \
        vtio_mem_read(mem, pa, &v, sizeof(v));                                 \
        return v;                                                              \
    }                                                                          \
    void vtio_mem_write##bits(struct vtio_mem *mem, uint64_t pa, uint##bits##_t v) \
    {                                                                          \
        vtio_mem_write(mem, pa, &v, sizeof(v));                                \
    }
MEM_ACCESSORS(8)
MEM_ACCESSORS(16)
MEM_ACCESSORS(32)
MEM_ACCESSORS(64)

/* Whether every byte of [pa, pa + len) is in a region of m (of RAM only if
 * ram_only). */
static bool all_in_regions(const struct map *m, uint64_t pa, uint64_t len, bool ram_only)
{
    if (range_wraps(pa, len))
        return false;
    while (len) {
        struct piece p = piece_at(m, pa, len);
        if (!p.r || (ram_only && p.r->kind != REGION_RAM))
            return false;
        pa += p.len, len -= p.len;
    }
    return true;
}

bool vtio_mem_is_mapped(struct vtio_mem *mem, uint64_t pa, uint64_t len)
{
    return all_in_regions(map_get(mem), pa, len, false);
}

bool vtio_mem_is_ram(struct vtio_mem *mem, uint64_t pa, uint64_t len)
{
    return all_in_regions(map_get(mem), pa, len, true);
}

/* Checks a device access against snapshot m; on success the access must be
 * performed against the same m. */
static int dev_check(struct vtio_mem *mem, const struct map *m, uint64_t pa, size_t len)
{
    if (len && pa + len - 1 < pa)
        return -EINVAL;
    if (len && !all_in_regions(m, pa, len, false)) {
        atomic_fetch_add_explicit(&mem->dev_hole_accesses, 1, memory_order_relaxed);
        return -EFAULT;
    }
    return 0;
}

int vtio_mem_dev_read(struct vtio_mem *mem, uint64_t pa, void *buf, size_t len)
{
    const struct map *m = map_get(mem);
    int ret = dev_check(mem, m, pa, len);
    if (ret == 0)
        access_read(mem, m, pa, buf, len);
    return ret;
}

int vtio_mem_dev_write(struct vtio_mem *mem, uint64_t pa, const void *buf, size_t len)
{
    const struct map *m = map_get(mem);
    int ret = dev_check(mem, m, pa, len);
    if (ret == 0)
        access_write(mem, m, pa, buf, len);
    return ret;
}

int vtio_mem_ram_span(struct vtio_mem *mem, uint64_t pa, uint64_t len, void **host,
                      uint64_t *span)
{
    struct region *r = map_find(map_get(mem), pa, NULL);
    if (!r || r->kind != REGION_RAM)
        return -EFAULT;
    uint64_t room = r->base + r->size - pa;
    *host = r->host + (pa - r->base);
    *span = len < room ? len : room;
    return 0;
}

int vtio_mem_ram_fd(struct vtio_mem *mem, uint64_t pa, int *fd, uint64_t *offset)
{
    struct region *r = map_find(map_get(mem), pa, NULL);
    if (!r || r->kind != REGION_RAM)
        return vtio_fail(-EFAULT, "%#llx is not RAM", (unsigned long long)pa);
    *fd = r->fd;
    *offset = pa - r->base;
    return 0;
}

void vtio_mem_for_each_ram(struct vtio_mem *mem,
                           void (*fn)(void *arg, uint64_t base, uint64_t size, const char *name),
                           void *arg)
{
    const struct map *m = map_get(mem);
    for (size_t i = 0; i < m->n; i++)
        if (m->r[i]->kind == REGION_RAM)
            fn(arg, m->r[i]->base, m->r[i]->size, m->r[i]->name);
}

uint64_t vtio_mem_ram_size(struct vtio_mem *mem)
{
    const struct map *m = map_get(mem);
    uint64_t total = 0;
    for (size_t i = 0; i < m->n; i++)
        if (m->r[i]->kind == REGION_RAM)
            total += m->r[i]->size;
    return total;
}

uint64_t vtio_mem_ram_resident(struct vtio_mem *mem)
{
    const struct map *m = map_get(mem);
    uint64_t total = 0;
    for (size_t i = 0; i < m->n; i++) {
        struct stat st;
        if (m->r[i]->kind == REGION_RAM && fstat(m->r[i]->fd, &st) == 0)
            total += (uint64_t)st.st_blocks * 512;   /* pages the memfd really holds */
    }
    return total;
}

void vtio_mem_get_stats(struct vtio_mem *mem, struct vtio_mem_stats *st)
{
    st->cpu_hole_reads = atomic_load(&mem->cpu_hole_reads);
    st->cpu_hole_writes = atomic_load(&mem->cpu_hole_writes);
    st->dev_hole_accesses = atomic_load(&mem->dev_hole_accesses);
}
