/*
 * vtio-soak: what the soak program's parts share (soak.c has the overview).
 *
 *   soak.c         options, the machine and host, the threads, the final
 *                  checks and the report
 *   soak_verify.c  the memory every thread works in: 2 MiB blocks of guard
 *                  pattern, layouts of data regions in them, byte checks
 *   soak_map.c     mapping a layout through the DMA API, and checking what
 *                  the device will see against the IOMMU's page tables
 *   soak_dma.c     submitters: one per channel, DMA with checked results
 *   soak_churn.c   mappers: map and unmap without DMA, flush queues
 *   soak_probe.c   the stray-access probe: DMA to IOVAs just unmapped
 *
 * Every thread counts into its own struct soak_counters; soak.c adds them
 * up after joining, so counting needs no atomics.  A failure anywhere goes
 * through soak_fail(), which prints it, counts it and stops the run.
 */
#ifndef VTIO_SOAK_H
#define VTIO_SOAK_H

#include <vtio/dma.h>
#include <vtio/drv/dma_engine.h>
#include <vtio/host.h>
#include <vtio/iommu.h>
#include <vtio/machine.h>

#include <pthread.h>
#include <stdatomic.h>

#define SOAK_BLOCK_ORDER  9                                /* 2 MiB blocks */
#define SOAK_BLOCK_SIZE   (VTIO_PAGE_SIZE << SOAK_BLOCK_ORDER)
#define SOAK_MAX_LEN      VTIO_MiB                         /* largest transfer */
#define SOAK_MAX_PIECES   8                                /* regions per layout */
#define SOAK_MAX_DEPTH    16                               /* descriptors in flight */

enum soak_mode { SOAK_STRICT, SOAK_LAZY, SOAK_PASSTHROUGH, SOAK_NONE };

struct soak_opts {
    double seconds;
    enum soak_mode mode;
    unsigned engines, channels;    /* engines under load, channels each */
    unsigned mappers;              /* map/unmap threads without DMA */
    unsigned depth;                /* descriptors each submitter keeps in flight */
    uint64_t max_len;              /* transfers are 1..max_len bytes */
    uint64_t seed;
    unsigned timeout_ms;           /* a completion later than this is lost */
    bool probe;                    /* run the stray-access probe (IOMMU modes) */
    bool verbose;
};

/* A DMA engine taken over by the driver. */
struct soak_engine {
    unsigned index;                       /* machine engine number */
    struct vtio_dmae *drv;
    struct vtio_device *dev;
    uint16_t rid;
    struct vtio_iommu_domain *domain;     /* its paging DMA domain; NULL: DMA
                                             address = physical address */
};

enum soak_op { SOAK_OP_COPY, SOAK_OP_COPY_SG, SOAK_OP_FILL, SOAK_OP_COMPARE, SOAK_OPS };

struct soak_counters {
    uint64_t issued, lost;            /* descriptors issued; never completed */
    uint64_t ops[SOAK_OPS];           /* descriptors completed and checked */
    uint64_t dma_bytes;               /* bytes those descriptors processed */
    uint64_t maps, sg_maps, unmaps;   /* this program's own DMA-API calls */
    uint64_t flushes;                 /* vtio_dma_flush calls */
    uint64_t data_bytes;              /* data bytes compared (destinations, sources) */
    uint64_t guard_bytes;             /* guard bytes compared */
    uint64_t translations;            /* DMA pages checked against the page tables */
    uint64_t probes;                  /* stray accesses tried (all refused) */
};

/* A stale IOVA range the probe used on purpose: faults there are expected. */
struct soak_stale {
    uint64_t lo, hi;                  /* [lo, hi), page-aligned */
    bool write;
};

struct soak {
    struct soak_opts o;
    struct vtio_machine *m;
    struct vtio_host *h;
    struct soak_engine eng[VTIO_MACHINE_MAX_ENGINES];
    unsigned n_eng;                   /* under load: eng[0 .. n_eng) */
    struct soak_engine *probe;        /* the probe's engine (eng[n_eng]); NULL: none */
    uint64_t deadline_ns;
    atomic_bool stop;
    atomic_uint failures;
    atomic_ullong unexpected_faults, expected_faults, fault_lines;
    pthread_mutex_t stale_lock;       /* guards stale, n_stale, cap_stale */
    struct soak_stale *stale;
    size_t n_stale, cap_stale;
};

/* ---- soak.c */
uint64_t soak_now_ns(void);
/* Reports a failure (printf format), counts it and stops the run. */
void soak_fail(struct soak *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Whether the run should end (deadline passed, or a failure). */
bool soak_should_stop(struct soak *s);
/* Whether an IOMMU fault is one the probe caused on purpose. */
bool soak_fault_expected(struct soak *s, const struct vtio_iommu_fault *f);

/* ---- random numbers (xorshift64*): one generator per thread */
struct soak_rng {
    uint64_t state;
};
static inline uint64_t soak_mix(uint64_t x)   /* splitmix64's finaliser */
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
static inline void soak_rng_init(struct soak_rng *r, uint64_t seed)
{
    r->state = soak_mix(seed) | 1;
}
static inline uint64_t soak_rand(struct soak_rng *r)
{
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return r->state * 0x2545f4914f6cdd1dull;
}
/* Uniform in [0, n), n > 0. */
static inline uint64_t soak_below(struct soak_rng *r, uint64_t n)
{
    return soak_rand(r) % n;
}
/* True with probability 1 / n. */
static inline bool soak_one_in(struct soak_rng *r, unsigned n)
{
    return soak_below(r, n) == 0;
}
/* A length in [1, max], log-uniform: every power of two is as likely. */
uint64_t soak_rand_len(struct soak_rng *r, uint64_t max);

/* ---- soak_verify.c: blocks, layouts, checks */

/* 2 MiB of machine RAM from the page allocator, all guard pattern except
 * the regions of the layout currently placed in it. */
struct soak_block {
    uint64_t pa;
    uint8_t *cpu;                     /* the direct map */
};

/* What a layout's regions hold, as one stream of bytes across them. */
enum soak_content_kind {
    SOAK_CONTENT_DATA,                /* pseudo-random bytes from key */
    SOAK_CONTENT_FILL,                /* the 8-byte pattern key, repeated */
};
struct soak_content {
    enum soak_content_kind kind;
    uint64_t key;
    uint64_t flip;                    /* stream offset of one inverted byte;
                                         UINT64_MAX: none */
};

struct soak_region {
    uint64_t off, len;                /* in the block */
};

/* Up to SOAK_MAX_PIECES regions of one block, ascending, not touching the
 * block's first and last page; the stream runs through them in order. */
struct soak_layout {
    struct soak_block *b;
    unsigned n;
    struct soak_region r[SOAK_MAX_PIECES];
    struct soak_content c;
    uint64_t len;                     /* stream length: sum of r[].len */
};

int soak_block_alloc(struct soak *s, struct soak_block *b);
void soak_block_free(struct soak *s, struct soak_block *b);
/* Places len bytes in `pieces` regions (1..SOAK_MAX_PIECES, <= len) at
 * random sub-page offsets with random gaps, sometimes page-aligned. */
void soak_layout_place(struct soak_layout *l, struct soak_block *b, uint64_t len,
                       unsigned pieces, struct soak_rng *r);
/* The CPU writes the content into the regions. */
void soak_layout_write(const struct soak_layout *l);
/* The CPU puts the guard pattern back over the regions. */
void soak_layout_restore(const struct soak_layout *l);
/* Checks every byte of the regions against the content and every byte
 * around them (their pages and one more page each side) against the guard
 * pattern.  On a mismatch reports `what` and where, and returns false. */
bool soak_layout_check(struct soak *s, struct soak_counters *k, const struct soak_layout *l,
                       const char *what);
/* Checks that the whole block is guard pattern. */
bool soak_block_check(struct soak *s, struct soak_counters *k, const struct soak_block *b,
                      const char *what);

/* ---- soak_map.c: a layout mapped for a device */
struct soak_mapping {
    bool mapped, sg, by_page;        /* map_sg / map_page / map_single */
    enum vtio_dma_direction dir;
    vtio_dma_addr_t addr;             /* single */
    int nents;                        /* sg: entries passed */
    struct vtio_scatterlist sgl[SOAK_MAX_PIECES];
    unsigned nseg;                    /* what the device is given */
    struct vtio_dmae_seg seg[SOAK_MAX_PIECES];
};

/* Maps l for e's device in direction dir: map_sg if sg (or l has several
 * regions), else map_single or map_page at random.  Then checks that each
 * page of every segment translates to the layout's physical bytes.
 * @returns true; false after soak_fail(). */
bool soak_map(struct soak *s, struct soak_counters *k, struct soak_engine *e,
              const struct soak_layout *l, enum vtio_dma_direction dir, bool sg,
              struct soak_rng *r, struct soak_mapping *mp);
void soak_unmap(struct soak_engine *e, struct soak_counters *k, struct soak_mapping *mp);

/* ---- the threads: each runs until soak_should_stop(), then winds down */
struct soak_submitter;
struct soak_submitter *soak_submitter_create(struct soak *s, struct soak_engine *e,
                                             unsigned chan, uint64_t seed);
void *soak_submitter_run(void *arg);
/* Adds what it counted to *k; its own accounting: issued == completed. */
void soak_submitter_finish(struct soak_submitter *t, struct soak_counters *k);
void soak_submitter_destroy(struct soak_submitter *t);

struct soak_mapper;
struct soak_mapper *soak_mapper_create(struct soak *s, uint64_t seed);
void *soak_mapper_run(void *arg);
void soak_mapper_finish(struct soak_mapper *t, struct soak_counters *k);
void soak_mapper_destroy(struct soak_mapper *t);

struct soak_prober;
struct soak_prober *soak_prober_create(struct soak *s, uint64_t seed);
void *soak_prober_run(void *arg);
void soak_prober_finish(struct soak_prober *t, struct soak_counters *k);
void soak_prober_destroy(struct soak_prober *t);

/* Adds b's counts to a. */
void soak_counters_add(struct soak_counters *a, const struct soak_counters *b);

#endif
