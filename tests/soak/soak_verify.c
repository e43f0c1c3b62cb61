/*
 * The memory of the soak run, and the byte-by-byte checks.
 *
 * Every buffer lives in a block: 2 MiB of machine RAM from the host page
 * allocator, reached through the CPUs' direct map.  Invariant between
 * operations: every byte of a block holds the guard pattern, a function of
 * its physical address (so a byte copied from anywhere else, even from
 * another block's guard, is seen).  An operation places a layout in the
 * block (up to 8 regions at random sub-page offsets, with random gaps,
 * never in the first or last page), the CPU or the device fills the regions,
 * the check compares every region byte with what it must be and every other
 * byte of the pages the regions touch, plus one page on each side, with the
 * guard pattern; then the regions get the guard pattern back.  Bytes the
 * IOMMU exposes to the device along with a sub-page buffer (the rest of its
 * pages) are therefore checked after every operation, and whole blocks at
 * the end of the run.
 *
 * Contents are streams: byte j of a layout's stream is a function of the
 * content key and j alone, so the source of a copy, the destination's
 * expected bytes and a compare's second buffer are all made by the same
 * generator, with no copy of the data kept aside.  Generation and checks go
 * 8 bytes at a time; a mismatch is then searched byte by byte and reported
 * with its block, physical address, expected and actual value and how many
 * bytes of that span differ.
 */
#include "soak.h"

#include <vtio/page_alloc.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define GUARD_KEY 0x5eedfacecafef00dull
#define CHUNK     4096u

/* What a span of a block must hold. */
enum kind { GUARD, DATA, FILL };

/* Word k (bytes 8k .. 8k+7) of a stream.  For the guard pattern the stream
 * position is the physical address. */
static inline uint64_t word_at(enum kind kind, uint64_t key, uint64_t k)
{
    switch (kind) {
    case GUARD: return soak_mix(key ^ (k << 3));
    case DATA:  return soak_mix(key + k);
    case FILL:  return key;
    }
    return 0;
}

static inline uint8_t byte_at(enum kind kind, uint64_t key, uint64_t pos)
{
    return (uint8_t)(word_at(kind, key, pos >> 3) >> (8 * (pos & 7)));
}

/* Bytes [pos, pos + n) of a stream into out. */
static void stream_bytes(enum kind kind, uint64_t key, uint64_t pos, uint8_t *out, size_t n)
{
    size_t i = 0;
    for (; i < n && ((pos + i) & 7); i++)
        out[i] = byte_at(kind, key, pos + i);
    for (; i + 8 <= n; i += 8) {
        uint64_t w = word_at(kind, key, (pos + i) >> 3);
        memcpy(out + i, &w, 8);
    }
    for (; i < n; i++)
        out[i] = byte_at(kind, key, pos + i);
}

/* A span of a block and what it must hold. */
struct span {
    enum kind kind;
    uint64_t key, pos;          /* stream key and position of the first byte */
    uint64_t flip;              /* stream position of an inverted byte, or UINT64_MAX */
};

static struct span guard_span(const struct soak_block *b, uint64_t off)
{
    return (struct span){ GUARD, GUARD_KEY, b->pa + off, UINT64_MAX };
}

static struct span content_span(const struct soak_content *c, uint64_t stream)
{
    return (struct span){ c->kind == SOAK_CONTENT_FILL ? FILL : DATA, c->key, stream, c->flip };
}

static void span_bytes(const struct span *sp, uint64_t from, uint8_t *out, size_t n)
{
    stream_bytes(sp->kind, sp->key, sp->pos + from, out, n);
    if (sp->flip >= sp->pos + from && sp->flip < sp->pos + from + n)
        out[sp->flip - sp->pos - from] ^= 0xff;
}

static void span_write(const struct soak_block *b, uint64_t off, uint64_t len,
                       const struct span *sp)
{
    span_bytes(sp, 0, b->cpu + off, len);
}

/* ---- blocks and layouts */

int soak_block_alloc(struct soak *s, struct soak_block *b)
{
    int rc = vtio_page_alloc(s->h->pages, SOAK_BLOCK_ORDER, 0, &b->pa);
    if (rc < 0)
        return rc;
    b->cpu = vtio_host_phys_to_virt(s->h, b->pa);
    struct span g = guard_span(b, 0);
    span_write(b, 0, SOAK_BLOCK_SIZE, &g);
    return 0;
}

void soak_block_free(struct soak *s, struct soak_block *b)
{
    if (b->cpu)
        vtio_page_free(s->h->pages, b->pa, SOAK_BLOCK_ORDER);
    b->cpu = NULL;
}

uint64_t soak_rand_len(struct soak_rng *r, uint64_t max)
{
    unsigned bits = 0;
    while ((2ull << bits) <= max)
        bits++;                                   /* 2^bits <= max < 2^(bits+1) */
    uint64_t lo = 1ull << soak_below(r, bits + 1);
    uint64_t len = lo + soak_below(r, lo);        /* [lo, 2 lo) */
    return len > max ? max : len;
}

/* Splits len into n pieces >= 1 (>= a page each and page multiples when
 * aligned) at sorted random cuts. */
static void split(uint64_t len, unsigned n, bool aligned, struct soak_rng *r, uint64_t *piece)
{
    uint64_t unit = aligned ? VTIO_PAGE_SIZE : 1, units = len / unit;
    uint64_t cut[SOAK_MAX_PIECES + 1];
    cut[0] = 0;
    cut[n] = len;
    for (unsigned i = 1; i < n; i++) {           /* n - 1 distinct cuts in (0, units) */
        uint64_t c;
        bool dup;
        do {
            c = 1 + soak_below(r, units - 1);
            dup = false;
            for (unsigned j = 1; j < i; j++)
                dup |= cut[j] == c * unit;
        } while (dup);
        unsigned j = i;
        for (; j > 1 && cut[j - 1] > c * unit; j--)
            cut[j] = cut[j - 1];
        cut[j] = c * unit;
    }
    for (unsigned i = 0; i < n; i++)
        piece[i] = cut[i + 1] - cut[i];
}

void soak_layout_place(struct soak_layout *l, struct soak_block *b, uint64_t len,
                       unsigned pieces, struct soak_rng *r)
{
    if (pieces < 1)
        pieces = 1;
    if (pieces > SOAK_MAX_PIECES)
        pieces = SOAK_MAX_PIECES;
    if (pieces > len)
        pieces = (unsigned)len;
    /* One layout in four is page-aligned (start, pieces and gaps), which is
     * what lets map_sg merge segments in IOVA space. */
    bool aligned = soak_one_in(r, 4) && len >= pieces * VTIO_PAGE_SIZE;
    uint64_t piece[SOAK_MAX_PIECES];
    split(len, pieces, aligned, r, piece);
    uint64_t off = VTIO_PAGE_SIZE + (aligned ? 0 : soak_below(r, VTIO_PAGE_SIZE));
    l->b = b;
    l->n = pieces;
    l->len = len;
    for (unsigned i = 0; i < pieces; i++) {
        if (i > 0 && !soak_one_in(r, 3))
            off += aligned ? VTIO_PAGE_SIZE * (1 + soak_below(r, 2))
                           : 1 + soak_below(r, 2 * VTIO_PAGE_SIZE - 1);
        l->r[i] = (struct soak_region){ off, piece[i] };
        off += piece[i];
    }
    /* 1 MiB of data + 7 gaps < 8 KiB + 8 KiB of start stays below the last page */
    _Static_assert(VTIO_PAGE_SIZE * 2 + SOAK_MAX_LEN + SOAK_MAX_PIECES * 2 * VTIO_PAGE_SIZE <=
                       SOAK_BLOCK_SIZE - VTIO_PAGE_SIZE,
                   "a layout fits inside its block's guard pages");
}

void soak_layout_write(const struct soak_layout *l)
{
    uint64_t stream = 0;
    for (unsigned i = 0; i < l->n; i++) {
        struct span sp = content_span(&l->c, stream);
        span_write(l->b, l->r[i].off, l->r[i].len, &sp);
        stream += l->r[i].len;
    }
}

void soak_layout_restore(const struct soak_layout *l)
{
    for (unsigned i = 0; i < l->n; i++) {
        struct span g = guard_span(l->b, l->r[i].off);
        span_write(l->b, l->r[i].off, l->r[i].len, &g);
    }
}

/* ---- checks */

/* Reports the first differing byte of [off, off + len) and how many differ. */
static void report(struct soak *s, const struct soak_block *b, uint64_t off, uint64_t len,
                   const struct span *sp, const char *what, const char *part)
{
    uint64_t first = UINT64_MAX, differ = 0;
    uint8_t want = 0, got = 0;
    for (uint64_t i = 0; i < len; i++) {
        uint8_t w;
        span_bytes(sp, i, &w, 1);
        if (b->cpu[off + i] != w) {
            if (first == UINT64_MAX) {
                first = i;
                want = w;
                got = b->cpu[off + i];
            }
            differ++;
        }
    }
    soak_fail(s, "%s: %s byte at block offset %#" PRIx64 " (pa %#" PRIx64 ") is 0x%02x, "
              "expected 0x%02x; %" PRIu64 " of the %" PRIu64 " bytes of that span differ",
              what, part, off + first, b->pa + off + first, got, want, differ, len);
}

/* Checks [off, off + len) of b against sp. */
static bool check_span(struct soak *s, const struct soak_block *b, uint64_t off, uint64_t len,
                       const struct span *sp, const char *what, const char *part)
{
    uint8_t want[CHUNK];
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done < CHUNK ? (size_t)(len - done) : CHUNK;
        span_bytes(sp, done, want, n);
        if (memcmp(b->cpu + off + done, want, n) != 0) {
            report(s, b, off, len, sp, what, part);
            return false;
        }
        done += n;
    }
    return true;
}

static bool check_guard(struct soak *s, struct soak_counters *k, const struct soak_block *b,
                        uint64_t lo, uint64_t hi, const char *what)
{
    if (hi <= lo)
        return true;
    struct span g = guard_span(b, lo);
    k->guard_bytes += hi - lo;
    return check_span(s, b, lo, hi - lo, &g, what, "guard");
}

bool soak_layout_check(struct soak *s, struct soak_counters *k, const struct soak_layout *l,
                       const char *what)
{
    const uint64_t page = VTIO_PAGE_SIZE;
    uint64_t first = l->r[0].off, last = l->r[l->n - 1].off + l->r[l->n - 1].len;
    uint64_t lo = (first & ~(page - 1)) - page;                /* >= 0: never page 0 */
    uint64_t hi = ((last + page - 1) & ~(page - 1)) + page;    /* <= block size */
    uint64_t stream = 0;
    for (unsigned i = 0; i < l->n; i++) {
        const struct soak_region *rg = &l->r[i];
        if (!check_guard(s, k, l->b, lo, rg->off, what))
            return false;
        struct span sp = content_span(&l->c, stream);
        char part[48];
        snprintf(part, sizeof(part), "region %u/%u (stream offset %" PRIu64 ")", i + 1, l->n,
                 stream);
        k->data_bytes += rg->len;
        if (!check_span(s, l->b, rg->off, rg->len, &sp, what, part))
            return false;
        stream += rg->len;
        lo = rg->off + rg->len;
    }
    return check_guard(s, k, l->b, lo, hi, what);
}

bool soak_block_check(struct soak *s, struct soak_counters *k, const struct soak_block *b,
                      const char *what)
{
    return check_guard(s, k, b, 0, SOAK_BLOCK_SIZE, what);
}
