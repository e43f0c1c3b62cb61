/*
 * A DMA request from start to finish (VT-d spec 3.4-3.9, 3.14-3.15, 7.1),
 * and the unit as a DMA-port translator.
 *
 * vtio_vtd_translate(), in order:
 *  1. GSTS.TES clear: the address passes unchanged (a 4 KiB page, read and
 *     write), nothing is cached or recorded.
 *  2. A request without PASID to 0xFEEx_xxxx is an interrupt request, not
 *     DMA (3.14); interrupt messages reach the unit through msi(), so a
 *     data access there is refused: fault 0Eh (87h in scalable mode).
 *     With TES clear it is refused the same way but not recorded.
 *  3. The context (vtd_ctx_lookup: root, context, PASID entries, cached).
 *  4. A translated request (AT = translated, an ATS device's own result)
 *     passes unchecked if the context allows ATS (legacy TT = 01, scalable
 *     DTE), else fault 0Dh.
 *  5. Pass-through: the address itself, if below 2^HAW (else 04h).
 *     Otherwise the IOTLB, tagged by DID and PASID (VTD_NO_PASID in legacy
 *     mode; in scalable mode the PASID whose entry was used, RID_PASID for
 *     requests without PASID, so PASID-based invalidations with RID_PASID
 *     reach them).  On a miss — or a hit whose permissions deny the access,
 *     which is checked again against memory (hardware may fault from the
 *     cached entry; re-walking is also how a write to a clean first-level
 *     page gets its D bit), or a first-level hit walked for the other
 *     privilege (its permissions are not this request's) — the context is
 *     looked up again (the miss opened the IOTLB's fill ticket, so a context
 *     read before a racing invalidation cannot feed a fill after it), then
 *     a second-level, first-level or nested walk and an IOTLB fill.
 *  6. The output address in 0xFEEx_xxxx: 0Eh (87h in scalable mode).  vtio
 *     checks the address the request produces; QEMU refuses any page that
 *     overlaps the range.
 * A fault is recorded (vtd_fault_record) unless it is a qualified fault
 * and an entry on the way had FPD set (faults_suppressed counts those).
 * The qualified faults are QEMU's list: all but root-entry and root/context
 * table errors, context-entry reserved bits, PASID directory/table access
 * errors and a bad TTM.
 *
 * ATS translation requests (vtio_vtd_ats_translate) take the same path but
 * return a fault instead of recording it, and a device whose context does
 * not allow ATS gets fault 0Dh (-EFAULT), as the hardware answers such a
 * request.  The answer is kept in the device-TLB (the device's ATC, which
 * the unit models for it, tagged by source-id and the request's PASID or
 * VTD_NO_PASID); a later request for a page it holds is answered from
 * there, so only a device-TLB invalidation makes the device see a change.
 *
 * The translator (vtd_translator_ops) serves vtio_dma_port: translate()
 * maps the page holding iova and returns span = the bytes from iova to the
 * end of that page (at most len), so the port checks an access that
 * crosses pages page by page and refuses it whole if any page faults.
 * -EACCES means a present page without the permission; -EFAULT anything
 * else.  msi() hands interrupt messages to interrupt remapping.
 *
 * The IOTLB-hit path (xlate_fast) is tried first by every translator
 * entry: TES set, a request that is not translated, outside the interrupt
 * window, whose context the context cache holds (only its tag is read:
 * kind, DID, PASID) with a kind that uses the IOTLB, and whose page the
 * IOTLB holds with the permission asked, mapping outside the window.  Both
 * caches' reads are inlined (context_fast.h, iotlb_fast.h); they read
 * only, so anything else, a miss included, starts over on the full path
 * above, which counts and opens the IOTLB's fill ticket as it goes.  The
 * path takes no lock and no shared-line atomic add: the cache slots are
 * sequence locks and the one counter it bumps (VTD_HOT_FAST_HITS) is a
 * per-thread shard (vtd_count_hot, defined here).
 *
 * Threads: any number of device threads at once.
 */
#include "hw/vtd/context_fast.h"
#include "hw/vtd/iotlb_fast.h"

#include "util/error.h"

#include <errno.h>

static bool is_intr_addr(uint64_t a)
{
    return (a >> 20) == 0xfee;          /* 0xFEE00000 - 0xFEEFFFFF */
}

static bool scalable(struct vtio_vtd *vtd)
{
    return VTD_RTADDR_TTM(atomic_load_explicit(&vtd->rtaddr_active, memory_order_relaxed)) == 1;
}

static int intr_fault(struct vtio_vtd *vtd)
{
    return scalable(vtd) ? VTD_FR_SM_INTERRUPT_ADDR : VTD_FR_INTERRUPT_ADDR;
}

/* Qualified faults (7.1.2): the ones FPD suppresses. */
static bool qualified(int fr)
{
    switch (fr) {
    case VTD_FR_ROOT_ENTRY_P:
    case VTD_FR_ROOT_TABLE_INV:
    case VTD_FR_CONTEXT_TABLE_INV:
    case VTD_FR_ROOT_ENTRY_RSVD:
    case VTD_FR_CONTEXT_ENTRY_RSVD:
    case VTD_FR_PASID_DIR_ACCESS_ERR:
    case VTD_FR_PASID_TABLE_ACCESS_ERR:
    case VTD_FR_RTADDR_INV_TTM:
        return false;
    default:
        return true;
    }
}

static void identity(uint64_t addr, struct vtd_xlate *x)
{
    *x = (struct vtd_xlate){ .pa = addr & ~0xfffull, .shift = 12, .read = true, .write = true };
}

/* Steps 2-6 of the top comment (TES set): 0 and the page in *x, or a
 * fault reason; *fpd from the entries read.  The full path: xlate_fast
 * answers the IOTLB hits of translate and the DMA port before this. */
static int xlate(struct vtio_vtd *vtd, const struct vtio_vtd_req *req, bool ats,
                 struct vtd_xlate *x, bool *fpd)
{
    struct vtd_ctx ctx;
    int fr;

    *x = (struct vtd_xlate){ 0 };
    if (!req->has_pasid && is_intr_addr(req->addr)) {
        *fpd = false;
        return intr_fault(vtd);
    }
    if ((fr = vtd_ctx_lookup(vtd, req->sid, req->has_pasid, req->pasid, &ctx, fpd)) != 0)
        return fr;
    if ((ats || req->translated) && !ctx.ats)
        return VTD_FR_CONTEXT_ENTRY_TT;
    if (req->translated && !ats) {
        identity(req->addr, x);
        return 0;
    }

    /* A first-level walk and its cached result depend on the privilege. */
    bool sup = req->has_pasid ? req->priv : ctx.rid_priv;
    if (ctx.kind != VTD_XK_PT) {
        if (vtd_iotlb_lookup(vtd, ctx.did, ctx.pasid, req->addr, x) &&
            (req->write ? x->write : x->read) && vtd_xlate_priv_ok(x, sup)) {
            vtd_count_hot(vtd, VTD_HOT_IOTLB_HITS);
            goto out;
        }
        VTD_COUNT(vtd, iotlb_misses);
        /* The miss opened the IOTLB's fill ticket; the context read before
         * it may predate an invalidation (software invalidates the context
         * cache before the IOTLB), so read it again: a fill is then either
         * made from the fresh context or dropped by the IOTLB. */
        if ((fr = vtd_ctx_lookup(vtd, req->sid, req->has_pasid, req->pasid, &ctx, fpd)) != 0)
            return fr;
    }
    if (ctx.kind == VTD_XK_PT) {
        if (vtd->haw < 64 && (req->addr >> vtd->haw))
            return VTD_FR_ADDR_BEYOND_MGAW;
        identity(req->addr, x);
    } else {
        VTD_COUNT(vtd, page_walks);
        if (ctx.kind == VTD_XK_SL)
            fr = vtd_sl_walk(vtd, ctx.sl_root, ctx.sl_levels, req->addr, req->write, x);
        else
            fr = vtd_fl_walk(vtd, &ctx, req->addr, req->write, sup, req->exec, x);
        if (fr)
            return fr;
        vtd_iotlb_insert(vtd, ctx.did, ctx.pasid, req->addr, x);
    }
out:
    if (is_intr_addr(x->pa | (req->addr & ((1ull << x->shift) - 1))))
        return intr_fault(vtd);
    return 0;
}

/* A context tag without its kind is the IOTLB tag (tlb_make_tag). */
_Static_assert(TAG_IOTLB(PK_VALID | VTD_MAKE(VTD_XK_NESTED, 3, 2) | VTD_MAKE(0xabcd, 31, 16) |
                         VTD_MAKE(0x89abcdefu, 63, 32)) ==
                   (0x89abcdefull << 32 | 0xabcdull << 16 | TAG_VALID),
               "context and IOTLB tags agree");

/* The IOTLB-hit path (top comment): reads only but for the one counter.
 * @returns the IOTLB's data word (page base | DATA_R | DATA_W | TLB_HIT |
 * size, see iotlb_fast.h) and the translation of req->addr in *pa, or 0:
 * take the full path.  A hit here is exactly what the full path would
 * answer from the same cache contents (fault-free, so FPD plays no part).
 * It makes no call, so that its callers need no stack frame: a thread
 * without a counter shard yet takes the full path, which claims one. */
static inline __attribute__((always_inline))
uint64_t xlate_fast(struct vtio_vtd *vtd, const struct vtio_vtd_req *req, uint64_t *pa)
{
    int shard = vtd_stat_shard_id;
    /* The window check before the context: a request with PASID may use
     * those addresses, but the full path sorts that out. */
    if (shard < 0 || !vtd_enabled(vtd, VTD_GSTS_TES) || req->translated ||
        is_intr_addr(req->addr))
        return 0;
    uint64_t tag = vtd_ctx_cached(vtd, req->sid, req->has_pasid, req->pasid, NULL);
    if (!tag || PK_KIND(tag) == VTD_XK_PT)
        return 0;
    uint64_t d = vtd_iotlb_probe(vtd, TAG_IOTLB(tag), req->addr);
    /* A miss (0) has no permission either.  A first-level entry of the
     * other privilege is not ours; a request without PASID counts as a
     * user's here (RID_PRIV is in the full path's context). */
    if (!(d & (req->write ? DATA_W : DATA_R)) ||
        !tlb_data_priv_ok(d, req->has_pasid && req->priv))
        return 0;
    *pa = (d & DATA_PA) | (req->addr & ((1ull << TLB_HIT_SHIFT(d)) - 1));
    if (is_intr_addr(*pa))
        return 0;
    vtd_count_shard(vtd, shard, VTD_HOT_FAST_HITS);
    return d;
}

__attribute__((cold, noinline))
static void record(struct vtio_vtd *vtd, const struct vtio_vtd_req *req, int fr, bool fpd)
{
    if (fpd && qualified(fr)) {
        VTD_COUNT(vtd, faults_suppressed);
        return;
    }
    struct vtd_fault f = {
        .sid = req->sid,
        .reason = (uint8_t)fr,
        .addr = req->addr,
        .read = !req->write,
        .has_pasid = req->has_pasid,
        .priv = req->has_pasid && req->priv,
        .exec = req->has_pasid && req->exec,
        .pasid = req->has_pasid ? req->pasid : 0,
    };
    vtd_fault_record(vtd, &f);
}

/* The whole request: 0 and *x, or a fault reason (recorded if asked). */
static inline int translate_req(struct vtio_vtd *vtd, const struct vtio_vtd_req *req, bool ats,
                         bool rec, struct vtd_xlate *x)
{
    bool fpd;
    if (!vtd_enabled(vtd, VTD_GSTS_TES)) {
        *x = (struct vtd_xlate){ 0 };
        if (!req->has_pasid && is_intr_addr(req->addr))
            return VTD_FR_INTERRUPT_ADDR;
        identity(req->addr, x);
        return 0;
    }
    int fr = xlate(vtd, req, ats, x, &fpd);
    if (fr && rec)
        record(vtd, req, fr, fpd);
    return fr;
}

__attribute__((cold, noinline))
static int bad_req(struct vtio_vtd *vtd, const struct vtio_vtd_req *req,
                   struct vtio_vtd_resp *resp)
{
    if (!vtd || !req || !resp)
        return vtio_fail(-EINVAL, "vtd translate: NULL argument");
    unsigned bits = (vtd->ecap & VTD_ECAP_PASID) ? (unsigned)VTD_ECAP_PSS(vtd->ecap) + 1 : 20;
    return vtio_fail(-EINVAL, "vtd translate: PASID %#x wider than %u bits", req->pasid, bits);
}

/* -EINVAL (through bad_req, out of line) for a NULL argument or a PASID
 * wider than the unit's; checked for requests with PASID only. */
static inline int check_req(struct vtio_vtd *vtd, const struct vtio_vtd_req *req,
                            struct vtio_vtd_resp *resp)
{
    if (__builtin_expect(!vtd || !req || !resp, 0))
        return bad_req(vtd, req, resp);
    if (req->has_pasid) {
        unsigned bits = (vtd->ecap & VTD_ECAP_PASID) ? (unsigned)VTD_ECAP_PSS(vtd->ecap) + 1 : 20;
        if (req->pasid >> bits)
            return bad_req(vtd, req, resp);
    }
    return 0;
}

static int respond(int fr, const struct vtd_xlate *x, const struct vtio_vtd_req *req,
                   struct vtio_vtd_resp *resp)
{
    if (fr) {
        *resp = (struct vtio_vtd_resp){ .fault = fr };
        return -EFAULT;
    }
    uint64_t size = 1ull << x->shift;
    *resp = (struct vtio_vtd_resp){
        .pa = x->pa | (req->addr & (size - 1)),
        .page_size = size,
        .read = x->read,
        .write = x->write,
    };
    return 0;
}

/* Out of line, so that the hit path in vtio_vtd_translate needs no frame. */
__attribute__((noinline))
static int translate_full(struct vtio_vtd *vtd, const struct vtio_vtd_req *req,
                          struct vtio_vtd_resp *resp)
{
    struct vtd_xlate x;
    vtd_count_hot(vtd, VTD_HOT_TRANSLATIONS);
    return respond(translate_req(vtd, req, false, true, &x), &x, req, resp);
}

int vtio_vtd_translate(struct vtio_vtd *vtd, const struct vtio_vtd_req *req,
                       struct vtio_vtd_resp *resp)
{
    uint64_t pa, d;
    int ret = check_req(vtd, req, resp);
    if (ret < 0)
        return ret;
    if (__builtin_expect((d = xlate_fast(vtd, req, &pa)) != 0, 1)) {
        /* Field by field: a compound literal would zero the padding too. */
        resp->fault = 0;
        resp->pa = pa;
        resp->page_size = 1ull << TLB_HIT_SHIFT(d);
        resp->read = (d & DATA_R) != 0;
        resp->write = (d & DATA_W) != 0;
        return 0;
    }
    return translate_full(vtd, req, resp);
}

int vtio_vtd_ats_translate(struct vtio_vtd *vtd, const struct vtio_vtd_req *req,
                           struct vtio_vtd_resp *resp)
{
    struct vtd_xlate x;
    int ret = check_req(vtd, req, resp);
    if (ret < 0)
        return ret;
    vtd_count_hot(vtd, VTD_HOT_TRANSLATIONS);
    if (!vtd_enabled(vtd, VTD_GSTS_TES))
        return respond(translate_req(vtd, req, true, false, &x), &x, req, resp);
    /* The device's ATC (the device-TLB, tagged by source-id and the
     * request's own PASID): what it holds is answered from there; a miss
     * is translated and filled. */
    uint32_t tag = req->has_pasid ? req->pasid : VTD_NO_PASID;
    if (vtd_devtlb_lookup(vtd, req->sid, tag, req->addr, &x) &&
        (req->write ? x.write : x.read) && vtd_xlate_priv_ok(&x, req->has_pasid && req->priv))
        return respond(0, &x, req, resp);
    int fr = translate_req(vtd, req, true, false, &x);
    if (fr == 0)
        vtd_devtlb_insert(vtd, req->sid, tag, req->addr, &x);
    return respond(fr, &x, req, resp);
}

/* ------------------------------------------------------------------------
 * The DMA-port translator.
 */

__attribute__((noinline))
static int op_translate_full(struct vtio_vtd *vtd, const struct vtio_vtd_req *req,
                             uint64_t len, uint64_t *pa, uint64_t *span)
{
    uint64_t iova = req->addr;
    struct vtd_xlate x;

    vtd_count_hot(vtd, VTD_HOT_TRANSLATIONS);
    if (!vtd_enabled(vtd, VTD_GSTS_TES) && !is_intr_addr(iova)) {
        *pa = iova;                     /* untranslated: the whole access at once */
        *span = len;
        return 0;
    }
    int fr = translate_req(vtd, req, false, true, &x);
    switch (fr) {
    case 0:
        break;
    case VTD_FR_READ:
    case VTD_FR_WRITE:           /* present but not permitted, or a hole */
        return x.read || x.write ? -EACCES : -EFAULT;
    case VTD_FR_SM_WRITE:
    case VTD_FR_FS_PAGING_ENTRY_US:
        return -EACCES;
    default:
        return -EFAULT;
    }
    uint64_t size = 1ull << x.shift, off = iova & (size - 1);
    *pa = x.pa | off;
    *span = size - off < len ? size - off : len;
    return 0;
}

static int op_translate(void *opaque, uint16_t rid, uint64_t iova, uint64_t len,
                        enum vtio_dma_access access, uint64_t *pa, uint64_t *span)
{
    struct vtio_vtd *vtd = opaque;
    struct vtio_vtd_req req = { .sid = rid, .addr = iova, .write = access == VTIO_DMA_WRITE };
    uint64_t d, p;

    if (__builtin_expect((d = xlate_fast(vtd, &req, &p)) != 0, 1)) {
        uint64_t size = 1ull << TLB_HIT_SHIFT(d), off = iova & (size - 1);
        *pa = p;
        *span = size - off < len ? size - off : len;
        return 0;
    }
    return op_translate_full(vtd, &req, len, pa, span);
}

/* An interrupt message is a posted write: the device gets no completion, so
 * a message the unit blocks (and records as a fault) is still "sent" as far
 * as the device can tell, as the port's contract says. */
static int op_msi(void *opaque, uint16_t rid, uint64_t addr, uint32_t data)
{
    vtio_vtd_interrupt(opaque, rid, addr, data);
    return 0;
}

static void op_access_begin(void *opaque)
{
    vtd_access_begin(opaque);
}

static void op_access_end(void *opaque)
{
    vtd_access_end(opaque);
}

const struct vtio_dma_translator_ops vtd_translator_ops = {
    .translate = op_translate,
    .msi = op_msi,
    .access_begin = op_access_begin,
    .access_end = op_access_end,
};

const struct vtio_dma_translator *vtio_vtd_translator(struct vtio_vtd *vtd)
{
    return &vtd->translator;
}

/* ------------------------------------------------------------------------
 * Hot-path counters (see vtd_internal.h).  Shards 0..VTD_STAT_SHARDS-2 are
 * owned, one thread each, claimed with a CAS on a bitmap and released by a
 * thread-exit destructor; the release/acquire pair hands the shard's
 * counts to the next owner.  The last shard is shared (atomic adds).
 */

_Thread_local int vtd_stat_shard_id __attribute__((tls_model("initial-exec"))) = -1;

static pthread_once_t shard_once = PTHREAD_ONCE_INIT;
static pthread_key_t shard_key;
static bool shard_key_ok;
static _Atomic uint64_t shard_owned;    /* bit i: shard i has a live owner */

_Static_assert(VTD_STAT_SHARDS <= 64, "the owner bitmap is one word");

static void shard_release(void *v)
{
    unsigned i = (unsigned)(uintptr_t)v - 1;
    vtd_stat_shard_id = VTD_STAT_SHARDS - 1;   /* later counts here go to the shared shard */
    atomic_fetch_and_explicit(&shard_owned, ~(1ull << i), memory_order_release);
}

static void shard_key_make(void)
{
    shard_key_ok = pthread_key_create(&shard_key, shard_release) == 0;
}

int vtd_stat_shard_claim(void)
{
    const uint64_t all = (1ull << (VTD_STAT_SHARDS - 1)) - 1;
    pthread_once(&shard_once, shard_key_make);
    uint64_t owned = atomic_load_explicit(&shard_owned, memory_order_acquire);
    while (shard_key_ok && (~owned & all)) {
        unsigned i = (unsigned)__builtin_ctzll(~owned & all);
        if (atomic_compare_exchange_weak_explicit(&shard_owned, &owned, owned | (1ull << i),
                                                  memory_order_acquire,
                                                  memory_order_acquire)) {
            if (pthread_setspecific(shard_key, (void *)(uintptr_t)(i + 1)) != 0) {
                shard_release((void *)(uintptr_t)(i + 1));
                break;
            }
            return vtd_stat_shard_id = (int)i;
        }
    }
    return vtd_stat_shard_id = VTD_STAT_SHARDS - 1;
}

uint64_t vtd_hot_sum(struct vtio_vtd *vtd, enum vtd_hot_stat which)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < VTD_STAT_SHARDS; i++) {
        n += atomic_load_explicit(&vtd->hot[i].n[which], memory_order_relaxed);
        if (which != VTD_HOT_FAST_HITS)     /* a fast hit is one of each */
            n += atomic_load_explicit(&vtd->hot[i].n[VTD_HOT_FAST_HITS],
                                      memory_order_relaxed);
    }
    return n;
}

void vtd_stats_add_hot(struct vtio_vtd *vtd, struct vtio_vtd_stats *st)
{
    st->translations += vtd_hot_sum(vtd, VTD_HOT_TRANSLATIONS);
    st->iotlb_hits += vtd_hot_sum(vtd, VTD_HOT_IOTLB_HITS);
    st->context_cache_hits += vtd_hot_sum(vtd, VTD_HOT_CONTEXT_CACHE_HITS);
}
