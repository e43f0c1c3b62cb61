/*
 * Inside the VT-d unit: the state every file shares, and the calls between
 * the files.  One file per concept of the specification:
 *
 *   regs.c      the register file, GCMD/GSTS protocol, CAP/ECAP, create/reset,
 *               register-based invalidation (CCMD, IOTLB/IVA)      (ch. 10, 11)
 *   fault.c     primary fault logging: FRCDs, FSTS, fault event    (ch. 7)
 *   context.c   root, context, PASID directory and PASID table entries,
 *               legacy and scalable mode, with the context and PASID caches
 *                                                                  (ch. 3.4, 9)
 *               (context_fast.h: the cache slots and their read)
 *   walk.c      second-level and first-level page walks, nested    (ch. 3.5-3.8)
 *   iotlb.c     the IOTLB (lock-free lookup) and device-TLB        (ch. 6.5)
 *               (iotlb_fast.h: its tables and probe, for translate.c)
 *   qi.c        the invalidation queue and its descriptors         (ch. 6.5.2)
 *   inflight.c  tracking DMA in flight, so invalidation can wait it out
 *   ir.c        interrupt remapping and the interrupt entry cache  (ch. 5)
 *   translate.c a request from start to finish; the DMA-port translator
 *
 * Locks, outermost first:
 *   reg_lock    register writes and QI processing (one at a time, like the
 *               hardware's command interface).  Never held on the
 *               translation path.
 *   fault_lock  FRCDs, FSTS, FECTL (translators record faults under it).
 *   cache locks inside context.c / iotlb.c / ir.c, on their fill and
 *               invalidate paths only.
 * The translation path reads the "active" registers below as atomics and
 * takes no lock on an IOTLB hit.
 */
#ifndef VTIO_HW_VTD_INTERNAL_H
#define VTIO_HW_VTD_INTERNAL_H

#include <vtio/vtd.h>
#include <vtio/vtd_regs.h>

#include <pthread.h>
#include <stdatomic.h>

#define VTD_MAX_FRCD 64

/* ---- results shared between context.c, walk.c, iotlb.c, translate.c */

/* How a (sid, pasid) is translated, from its context / PASID entries. */
enum vtd_xlate_kind {
    VTD_XK_SL,          /* second-level tables (legacy TT 0/1, PGTT 2) */
    VTD_XK_PT,          /* pass-through (legacy TT 2, PGTT 4) */
    VTD_XK_FL,          /* first-level tables (PGTT 1) */
    VTD_XK_NESTED,      /* first level, each access translated by second (PGTT 3) */
};

struct vtd_ctx {
    enum vtd_xlate_kind kind;
    bool fpd;           /* fault processing disabled (context/PASID entry) */
    bool ats;           /* device-TLB allowed (legacy TT=1, SM DTE) */
    uint16_t did;
    uint64_t sl_root;   /* second-level table (page-aligned) */
    uint8_t sl_levels;  /* 3, 4, 5 */
    uint64_t fl_root;   /* first-level table */
    uint8_t fl_levels;  /* 4, 5 */
    bool sre, wpe;      /* supervisor requests / write-protect enable (FL) */
    uint32_t pasid;     /* IOTLB tag: the PASID whose entry was used (RID_PASID
                           for requests without PASID in scalable mode),
                           VTD_NO_PASID in legacy mode */
    bool rid_priv;      /* scalable: privilege of requests without PASID */
};

/* A translation of one page, as a walk found it or the IOTLB holds it. */
struct vtd_xlate {
    uint64_t pa;        /* physical base of the page */
    uint8_t shift;      /* page size: 12, 21 or 30 */
    bool read, write;
    bool fl;            /* first-level (or nested): read/write hold only for */
    bool sup;           /* requests of this privilege (supervisor or user) */
};

/* Whether a cached translation may answer a request of privilege sup.  A
 * first-level walk's permissions depend on the request's privilege (U/S,
 * the PASID entry's SRE and WPE), so its entry answers only requests of
 * the privilege that walked it; a second-level one answers anyone. */
static inline bool vtd_xlate_priv_ok(const struct vtd_xlate *x, bool sup)
{
    return !x->fl || x->sup == sup;
}

/* ---- hot-path counters (translate.c)
 * The counters bumped on every IOTLB-hit translation are sharded per
 * thread: a shared atomic add there costs more than the lookup itself and
 * bounces a cache line between device threads (three shared adds cap one
 * thread near 70 M/s and two threads near 8 M/s each).  A thread owns one
 * shard (claimed on first use, released when the thread exits) and bumps
 * it with a relaxed load and store; threads beyond the owned shards share
 * the last one with atomic adds.  A translation that the IOTLB-hit path
 * answers bumps VTD_HOT_FAST_HITS alone, which stands for one each of
 * translations, iotlb_hits and context_cache_hits (one TLS access and one
 * store per translation).  A total is stats.<field> plus vtd_hot_sum()
 * (which adds the fast hits in; vtd_stats_add_hot() adds the totals into a
 * vtio_vtd_stats). */
enum vtd_hot_stat {
    VTD_HOT_TRANSLATIONS,
    VTD_HOT_IOTLB_HITS,
    VTD_HOT_CONTEXT_CACHE_HITS,
    VTD_HOT_FAST_HITS,
    VTD_HOT_N
};
#define VTD_STAT_SHARDS 32
struct vtd_stat_shard {
    _Atomic uint64_t n[VTD_HOT_N];
    uint64_t pad_[16 - VTD_HOT_N];       /* 128 bytes: no two shards share a line */
};

/* ---- per-file state (each owned by the file named) */

struct vtd_iotlb;       /* iotlb.c */
struct vtd_ctx_cache;   /* context.c: context cache and PASID cache */
struct vtd_iec;         /* ir.c: interrupt entry cache */
struct vtd_inflight;    /* inflight.c */

struct vtio_vtd {
    struct vtio_vtd_platform plat;
    struct vtio_vtd_caps caps;           /* normalised: defaults filled in */
    uint64_t cap, ecap;                  /* CAP_REG, ECAP_REG values */
    unsigned haw;                        /* host address width (= addr_width) */
    unsigned nfr;                        /* number of FRCDs */
    struct vtio_dma_translator translator;

    /* regs.c (under reg_lock unless atomic) */
    pthread_mutex_t reg_lock;
    _Atomic uint32_t gsts;               /* read by translators */
    uint64_t rtaddr;                     /* RTADDR as written */
    _Atomic uint64_t rtaddr_active;      /* latched by SRTP: table | TTM bits */
    uint64_t ccmd, iotlb_reg, iva;
    uint32_t pmen, plmbase, plmlimit;
    uint64_t phmbase, phmlimit;
    uint64_t iqh, iqt, iqa, iqer;
    uint32_t ics, iectl, iedata, ieaddr, ieuaddr;
    uint64_t irta;                       /* IRTA as written */
    _Atomic uint64_t irta_active;        /* latched by SIRTP */

    /* fault.c (under fault_lock) */
    pthread_mutex_t fault_lock;
    uint32_t fsts, fectl, fedata, feaddr, feuaddr;
    uint64_t frcd_lo[VTD_MAX_FRCD], frcd_hi[VTD_MAX_FRCD];
    unsigned frcd_next;                  /* where the next fault goes */

    struct vtd_iotlb *iotlb;
    struct vtd_ctx_cache *ctx_cache;
    struct vtd_iec *iec;
    struct vtd_inflight *inflight;

    struct {                             /* relaxed counters */
        _Atomic uint64_t translations, iotlb_hits, iotlb_misses, page_walks;
        _Atomic uint64_t context_cache_hits, context_cache_misses;
        _Atomic uint64_t faults_recorded, faults_suppressed;
        _Atomic uint64_t interrupts_remapped, interrupts_blocked;
        _Atomic uint64_t qi_descriptors, invalidation_waits;
        _Atomic uint64_t faults_dropped;     /* fault.c: PFO, collapsed, overflow */
    } stats;
    struct vtd_stat_shard hot[VTD_STAT_SHARDS];   /* see vtd_count_hot() */
};

#define VTD_COUNT(vtd, field) \
    atomic_fetch_add_explicit(&(vtd)->stats.field, 1, memory_order_relaxed)

/* This thread's shard index (-1 until claimed by vtd_stat_shard_claim). */
extern _Thread_local int vtd_stat_shard_id __attribute__((tls_model("initial-exec")));
int vtd_stat_shard_claim(void);
/* Bumps shard s (this thread's, claimed). */
static inline void vtd_count_shard(struct vtio_vtd *vtd, int s, enum vtd_hot_stat which)
{
    _Atomic uint64_t *c = &vtd->hot[s].n[which];
    if (s == VTD_STAT_SHARDS - 1)        /* the shared overflow shard */
        atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
    else                                 /* owned: no other writer */
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                              memory_order_relaxed);
}
static inline void vtd_count_hot(struct vtio_vtd *vtd, enum vtd_hot_stat which)
{
    int s = vtd_stat_shard_id;
    if (__builtin_expect(s < 0, 0))
        s = vtd_stat_shard_claim();
    vtd_count_shard(vtd, s, which);
}
/* The sharded count of which, with the fast hits it stands for. */
uint64_t vtd_hot_sum(struct vtio_vtd *vtd, enum vtd_hot_stat which);
/* Adds the sharded counts to translations, iotlb_hits, context_cache_hits. */
void vtd_stats_add_hot(struct vtio_vtd *vtd, struct vtio_vtd_stats *st);

/*
 * Sequence locks, the one protocol behind every lock-free cache of the unit
 * (context and PASID caches, IOTLB and device-TLB, interrupt entry cache),
 * without fences (ThreadSanitizer cannot follow them).  Writer, one at a
 * time under the cache's mutex: VTD_SEQ_WRITE_BEGIN (seq odd, relaxed), the
 * fields with release stores (a reader that sees a new field also sees the
 * odd seq), VTD_SEQ_WRITE_END (seq even, release).  Reader: seq with
 * acquire, the fields with acquire loads (which keep the second read of seq
 * after them), seq again; equal and even means one writer's whole update.
 * On x86 all of these are plain moves.  The readers stay with their caches,
 * shaped for their fields.
 */
#define VTD_SEQ_WRITE_BEGIN(seq)                                               \
    atomic_store_explicit((seq), atomic_load_explicit((seq), memory_order_relaxed) + 1, \
                          memory_order_relaxed)
#define VTD_SEQ_WRITE_END(seq)                                                 \
    atomic_store_explicit((seq), atomic_load_explicit((seq), memory_order_relaxed) + 1, \
                          memory_order_release)

/* Table memory through the platform; 0 or negative errno. */
static inline int vtd_read(struct vtio_vtd *vtd, uint64_t pa, void *buf, size_t len)
{
    return vtd->plat.mem_read(vtd->plat.opaque, pa, buf, len);
}
static inline int vtd_write(struct vtio_vtd *vtd, uint64_t pa, const void *buf, size_t len)
{
    return vtd->plat.mem_write(vtd->plat.opaque, pa, buf, len);
}
static inline bool vtd_enabled(struct vtio_vtd *vtd, uint32_t gsts_bit)
{
    return atomic_load_explicit(&vtd->gsts, memory_order_acquire) & gsts_bit;
}

/* ---- fault.c */

struct vtd_fault {
    uint16_t sid;
    uint8_t reason;          /* enum vtd_fault_reason */
    uint64_t addr;           /* DMA: the faulting address; IR: the interrupt index */
    bool is_ir;              /* an interrupt-remapping fault */
    bool read;               /* T: read request (DMA faults) */
    bool has_pasid, priv, exec;
    uint32_t pasid;
};
/* Records a primary fault (section 7.2.1): collapse onto a pending FRCD of
 * the same SID, overflow (PFO) when the next FRCD is busy, FSTS.PPF/FRI, and
 * the fault event interrupt subject to FECTL.IM.  Thread-safe. */
void vtd_fault_record(struct vtio_vtd *vtd, const struct vtd_fault *f);
uint64_t vtd_fault_reg_read(struct vtio_vtd *vtd, uint64_t off, unsigned size);
/* Returns false if off is not a fault register. */
bool vtd_fault_reg_write(struct vtio_vtd *vtd, uint64_t off, uint64_t val, unsigned size);
void vtd_fault_reset(struct vtio_vtd *vtd);
/* Sets invalidation-queue error bits (VTD_FSTS_IQE / ICE / ITE) in FSTS and
 * raises the fault event under the same rule as a recorded fault (only if
 * FSTS had no status pending).  Thread-safe (takes fault_lock). */
void vtd_fault_set_status(struct vtio_vtd *vtd, uint32_t fsts_bits);
/* Sends an event message (fault, invalidation completion) unless masked:
 * sets IP in *ctl instead when IM is set.  Caller holds the lock of *ctl. */
void vtd_send_event(struct vtio_vtd *vtd, uint32_t *ctl, uint32_t data, uint32_t addr,
                    uint32_t uaddr);

/* ---- context.c */

int vtd_ctx_cache_init(struct vtio_vtd *vtd);
void vtd_ctx_cache_fini(struct vtio_vtd *vtd);
/* Resolves (sid, pasid) to its translation through the root, context and
 * (scalable mode) PASID structures, using and filling the context and PASID
 * caches.  rid_pasid is used for requests without PASID in scalable mode.
 * @returns 0, or a fault reason; *fpd tells whether the entries that were
 * read asked for fault processing to be disabled. */
int vtd_ctx_lookup(struct vtio_vtd *vtd, uint16_t sid, bool has_pasid, uint32_t pasid,
                   struct vtd_ctx *ctx, bool *fpd);
/* Context-cache invalidation: granularity VTD_INV_GLOBAL / DOMAIN / DEVICE
 * (sid with function mask fm). */
void vtd_ctx_cache_inv(struct vtio_vtd *vtd, unsigned gran, uint16_t did, uint16_t sid,
                       unsigned fm);
/* PASID-cache invalidation: VTD_INV_PC_G_DOMAIN / PASID / GLOBAL. */
void vtd_pasid_cache_inv(struct vtio_vtd *vtd, unsigned gran, uint16_t did, uint32_t pasid);

/* ---- walk.c */

/* Second-level walk of iova from root (levels 3-5).  @returns 0 and *out,
 * or a fault reason (VTD_FR_ADDR_BEYOND_MGAW, VTD_FR_PAGING_ENTRY_INV,
 * VTD_FR_PAGING_ENTRY_RSVD, VTD_FR_READ/WRITE, ...).  Permissions are the
 * AND over the walk; out->read/write say what the page allows. */
int vtd_sl_walk(struct vtio_vtd *vtd, uint64_t root, unsigned levels, uint64_t iova,
                bool write, struct vtd_xlate *out);
/* First-level (x86-64 paging) walk, setting A/D bits; nested when
 * ctx->kind is VTD_XK_NESTED (every table access translated by the second
 * level). */
int vtd_fl_walk(struct vtio_vtd *vtd, const struct vtd_ctx *ctx, uint64_t addr, bool write,
                bool priv, bool exec, struct vtd_xlate *out);

/* ---- iotlb.c */

int vtd_iotlb_init(struct vtio_vtd *vtd);
void vtd_iotlb_fini(struct vtio_vtd *vtd);
#define VTD_NO_PASID 0xffffffffu      /* tag of requests without PASID */
/* Lock-free lookup of the page holding addr.  @returns true and *out. */
bool vtd_iotlb_lookup(struct vtio_vtd *vtd, uint16_t did, uint32_t pasid, uint64_t addr,
                      struct vtd_xlate *out);
/* Fills the entry for the page holding addr.  A fill must follow, on the
 * same thread, the lookup of addr that missed: the insert is dropped if an
 * invalidation ran since that lookup (the walk may have read a removed
 * entry), or if there was no such lookup. */
void vtd_iotlb_insert(struct vtio_vtd *vtd, uint16_t did, uint32_t pasid, uint64_t addr,
                      const struct vtd_xlate *x);
void vtd_iotlb_inv_all(struct vtio_vtd *vtd);
void vtd_iotlb_inv_domain(struct vtio_vtd *vtd, uint16_t did);
/* Page-selective: 2^am pages from addr (aligned down); ih = leaf-only hint. */
void vtd_iotlb_inv_page(struct vtio_vtd *vtd, uint16_t did, uint64_t addr, unsigned am,
                        bool ih);
/* PASID-based: all of (did, pasid), or 2^am pages of it. */
void vtd_iotlb_inv_pasid(struct vtio_vtd *vtd, uint16_t did, uint32_t pasid);
void vtd_iotlb_inv_pasid_page(struct vtio_vtd *vtd, uint16_t did, uint32_t pasid,
                              uint64_t addr, unsigned am, bool ih);
/* Device-TLB (iotlb.c): the translation caches of ATS endpoints, kept by
 * the unit on their behalf and tagged by source-id (not DID).  Same rules
 * as the IOTLB: lock-free lookup, insert after a missed lookup.  A source-id
 * becomes an ATS endpoint with its first insert or vtd_devtlb_attach(). */
bool vtd_devtlb_lookup(struct vtio_vtd *vtd, uint16_t sid, uint32_t pasid, uint64_t addr,
                       struct vtd_xlate *out);
void vtd_devtlb_insert(struct vtio_vtd *vtd, uint16_t sid, uint32_t pasid, uint64_t addr,
                       const struct vtd_xlate *x);
void vtd_devtlb_attach(struct vtio_vtd *vtd, uint16_t sid);
/* Drops sid's entries overlapping [addr, addr + 2^size_shift) (aligned
 * down; size_shift >= 64: everything): of one PASID, or of every PASID and
 * requests without PASID when pasid == VTD_NO_PASID.
 * @returns false if sid is no ATS endpoint (nothing answers: ITE). */
bool vtd_devtlb_inv(struct vtio_vtd *vtd, uint16_t sid, uint32_t pasid, uint64_t addr,
                    unsigned size_shift);
void vtd_devtlb_inv_all(struct vtio_vtd *vtd);

/* ---- inflight.c */

int vtd_inflight_init(struct vtio_vtd *vtd);
void vtd_inflight_fini(struct vtio_vtd *vtd);
/* Brackets one device access (every translation it uses is inside). */
void vtd_access_begin(struct vtio_vtd *vtd);
void vtd_access_end(struct vtio_vtd *vtd);
/* Returns once every access that began before the call has ended (the
 * caller's own open access, if any, excepted). */
void vtd_inflight_drain(struct vtio_vtd *vtd);

/* ---- qi.c */

/* Processes descriptors from IQH to IQT (called with reg_lock held after
 * an IQT write, or when IQE is cleared). */
void vtd_qi_process(struct vtio_vtd *vtd);

/* ---- ir.c */

int vtd_ir_init(struct vtio_vtd *vtd);
void vtd_ir_fini(struct vtio_vtd *vtd);
/* Remaps an interrupt request; @returns 0 and the compatibility-format
 * message to send, or a fault reason (recorded by the caller). */
int vtd_ir_remap(struct vtio_vtd *vtd, uint16_t sid, uint64_t addr, uint32_t data,
                 uint64_t *out_addr, uint32_t *out_data, bool *fpd, uint16_t *index);
/* Interrupt-entry-cache invalidation: all, or 2^im entries from index. */
void vtd_iec_inv(struct vtio_vtd *vtd, bool global, uint32_t index, unsigned im);

/* ---- translate.c */

extern const struct vtio_dma_translator_ops vtd_translator_ops;

#endif
