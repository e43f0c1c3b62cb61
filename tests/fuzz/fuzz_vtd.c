/*
 * fuzz_vtd: the VT-d unit on its own (include/vtio/vtd.h), driven by a
 * program of register accesses, table contents, DMA requests and interrupt
 * requests, every part of it chosen by the input.
 *
 * Each input gets a fresh unit whose platform is 2 MiB of RAM at physical
 * address 0, zeroed (a static buffer; nothing survives from one input to
 * the next).  Bytes 0-1 pick the capabilities (address width, legacy or
 * scalable mode, first-level and nested, device-TLBs, superpages, 1-8
 * fault recording registers, caching mode, no queued invalidation).  Then
 * op after op (op byte modulo OP_COUNT, operands in the order read):
 *
 *   REG_W32 off:u16 val:u32      register write (off: bit 15 set = one of
 *   REG_W64 off:u16 val:u64        the architectural registers, else & 0xfff)
 *   REG_R   off:u16 size:u8      register read (size 4 or 8)
 *   RAM_W64 off:u32 val:u64      a table entry, IRTE, descriptor word...
 *   RAM_BYTES off:u32 n:u8 bytes n <= 64 raw bytes
 *   XLATE   sid:u16 flags:u8 pasid:u32 addr:u64
 *   ATS     (as XLATE)            an ATS translation request
 *   INTR    sid:u16 flags:u8 addr:u32 data:u32
 *   QI_PUSH n:u8 desc:4*u64      one descriptor at IQA+IQT, then IQT moves on
 *   ROOT    page:u16 flags:u8    RTADDR, SRTP, TE as Linux does (flags: SMT)
 *   QI_ON   page:u16 qs:u8       IQA, QIE
 *   IR_ON   page:u16 s:u8        IRTA, SIRTP, IRE (and CFI)
 *   CTX     sid:u16 tt:u8 did:u16 tbl:u8    legacy context entry (builder)
 *   SL_MAP  tbl:u8 lv:u8 iova:u64 pa:u32 perm:u8   second-level leaf
 *   SM_CTX  sid:u16 pdts:u8 flags:u8 tbl:u8 rid_pasid:u32
 *   PASID   tbl:u8 pasid:u32 pgtt:u8 did:u16 sl:u8 fl:u8 flags:u8
 *   FL_MAP  tbl:u8 lv:u8 va:u64 pa:u32 flags:u8    first-level leaf
 *   IRTE    tbl:u8 idx:u8 lo:u64 hi:u64
 *   RESET
 *   FLUSH                         global invalidation of every cache, as software
 *                                 does it: queued (context, IOTLB, PASID, interrupt
 *                                 entry caches) or through CCMD and IOTLB registers
 * The builder ops (CTX ... IRTE) write well-formed structures with
 * tests/hw/vtd_builder.h into a page pool at [1 MiB, 2 MiB), so the fuzzer
 * reaches deep states quickly and then corrupts them with the raw ops; tbl
 * names one of 16 pages of that pool, allocated on first use.
 *
 * Invariants checked (vtd.h and the file comments of src/hw/vtd):
 *  - the platform is asked only for 1..64-byte, naturally aligned accesses
 *    (it answers -EFAULT outside RAM, as the interface allows);
 *  - a translation that succeeds gives a 4 KiB / 2 MiB / 1 GiB page whose
 *    offset matches the request's, allows the access asked for, never
 *    lands in the interrupt window for a request without PASID, equals the
 *    address with translation off, and lies below 2^HAW otherwise (for
 *    untranslated requests); a fault is an 8-bit reason; -EINVAL only for
 *    a PASID wider than the unit's;
 *  - the same request made again at once gets the same answer (the IOTLB
 *    and context-cache hit paths agree with the walks that filled them),
 *    and the DMA-port translator agrees with vtio_vtd_translate;
 *  - the oracle (below): while the caches cannot be stale, every DMA, ATS
 *    and interrupt request gets the answer of a unit with empty caches;
 *  - interrupts: with remapping off a message passes unchanged; with it
 *    on, a message that passes goes out in compatibility format inside the
 *    window, and a blocked one sends nothing but a fault event; outside
 *    INTR only fault events and invalidation-completion events are sent;
 *  - fault registers: FSTS.PPF is set exactly when some FRCD has F, and
 *    then FSTS.FRI names one that does; GSTS.IRES implies IRTPS;
 *  - and no crash, leak or undefined behaviour (sanitizers).
 */
#include "fuzz.h"

#include <vtio/intr.h>
#include <vtio/vtd.h>
#include <vtio/vtd_regs.h>

#include <errno.h>

#include "hw/vtd/vtd_internal.h"
#include "hw/vtd_builder.h"

#define RAM_SIZE    (2 * VTIO_MiB)
#define POOL_BASE   (1 * VTIO_MiB)
#define POOL_TABLES 16
#define MAX_ACCESS  64               /* the largest table read: a QI descriptor is 32 */
#define MAX_MSGS    64

enum op {
    OP_REG_W32, OP_REG_W64, OP_REG_R, OP_RAM_W64, OP_RAM_BYTES, OP_XLATE, OP_ATS, OP_INTR,
    OP_QI_PUSH, OP_ROOT, OP_QI_ON, OP_IR_ON, OP_CTX, OP_SL_MAP, OP_SM_CTX, OP_PASID,
    OP_FL_MAP, OP_IRTE, OP_RESET, OP_FLUSH, OP_COUNT
};

struct msg {
    uint64_t addr;
    uint32_t data;
};

static struct {
    uint8_t ram[RAM_SIZE];
    struct vtio_vtd *vtd;
    struct vtio_vtd_caps caps;
    struct vtdb b;                   /* the builder over ram */
    uint64_t table[POOL_TABLES];     /* pool pages named by tbl operands; 0 = none */
    unsigned n_msgs;                 /* messages sent; the last MAX_MSGS kept */
    struct msg msgs[MAX_MSGS];
    /* The oracle: a second unit, its caches emptied before each question. */
    struct vtio_vtd *oracle;
    unsigned oracle_msgs;
    struct msg oracle_msg;
    bool filled;                     /* a request may have filled the caches */
    bool stale;                      /* ... and tables changed since: they may differ */
    bool ats_filled, ats_stale;      /* the same for the device-TLB, which only
                                        device-TLB invalidations empty */
} S;

static void tables_changed(void);

/* ------------------------------------------------------------------------
 * The platform: RAM [0, 2 MiB), everything else a hole.
 */

static bool ram_range(uint64_t pa, size_t len)
{
    return pa < RAM_SIZE && len <= RAM_SIZE - pa;
}

static void check_access(uint64_t pa, size_t len, const char *what)
{
    FUZZ_CHECK(len >= 1 && len <= MAX_ACCESS, "platform %s of %zu bytes at %#llx", what, len,
               (unsigned long long)pa);
    size_t align = len < 8 ? len : 8;
    FUZZ_CHECK((len & (len - 1)) == 0 && pa % align == 0,
               "platform %s of %zu bytes at %#llx: not naturally aligned", what, len,
               (unsigned long long)pa);
}

static int plat_read(void *opaque, uint64_t pa, void *buf, size_t len)
{
    (void)opaque;
    check_access(pa, len, "read");
    if (!ram_range(pa, len))
        return -EFAULT;
    memcpy(buf, S.ram + pa, len);
    return 0;
}

/* The oracle's writes (A/D updates) succeed where the unit's would but
 * change nothing: asking it must not change what the unit sees.  The
 * unit's own writes other than A/D bytes (an invalidation-wait status) may
 * land on a table. */
static int plat_write(void *opaque, uint64_t pa, const void *buf, size_t len)
{
    check_access(pa, len, "write");
    if (!ram_range(pa, len))
        return -EFAULT;
    if (opaque == &S.oracle)
        return 0;
    memcpy(S.ram + pa, buf, len);
    if (len != 1)
        tables_changed();
    return 0;
}

static void plat_interrupt(void *opaque, uint64_t addr, uint32_t data)
{
    if (opaque == &S.oracle) {
        S.oracle_msg = (struct msg){ addr, data };
        S.oracle_msgs++;
        return;
    }
    S.msgs[S.n_msgs++ % MAX_MSGS] = (struct msg){ addr, data };
}

/* The builder's CPU-side accesses: outside RAM they read 0 and are dropped. */
static uint64_t cpu_read64(void *opaque, uint64_t pa)
{
    (void)opaque;
    uint64_t v = 0;
    if (ram_range(pa, 8))
        memcpy(&v, S.ram + pa, 8);
    return v;
}

static void cpu_write64(void *opaque, uint64_t pa, uint64_t v)
{
    (void)opaque;
    if (ram_range(pa, 8))
        memcpy(S.ram + pa, &v, 8);
    tables_changed();
}

/* ------------------------------------------------------------------------
 * Registers.
 */

static const uint16_t arch_regs[] = {
    VTD_VER_REG, VTD_CAP_REG, VTD_ECAP_REG, VTD_GCMD_REG, VTD_GSTS_REG, VTD_RTADDR_REG,
    VTD_CCMD_REG, VTD_CCMD_REG + 4, VTD_FSTS_REG, VTD_FECTL_REG, VTD_FEDATA_REG,
    VTD_FEADDR_REG, VTD_FEUADDR_REG, VTD_AFLOG_REG, VTD_PMEN_REG, VTD_PLMBASE_REG,
    VTD_PLMLIMIT_REG, VTD_PHMBASE_REG, VTD_PHMLIMIT_REG, VTD_IQH_REG, VTD_IQT_REG,
    VTD_IQA_REG, VTD_ICS_REG, VTD_IECTL_REG, VTD_IEDATA_REG, VTD_IEADDR_REG,
    VTD_IEUADDR_REG, VTD_IQER_REG, VTD_IRTA_REG, 0x100 + VTD_IVA_OFF, 0x100 + VTD_IOTLB_OFF,
    0x100 + VTD_IOTLB_OFF + 4, 0x200, 0x208, 0x20c, 0x210, 0x218, 0x21c, 0x270, 0x278,
};

static uint64_t reg_offset(uint16_t sel)
{
    if (sel & 0x8000)
        return arch_regs[(sel & 0x7fff) % (sizeof(arch_regs) / sizeof(arch_regs[0]))];
    return sel & 0xfff;
}

static uint64_t rd(uint64_t off, unsigned size)
{
    return vtio_vtd_reg_read(S.vtd, off, size);
}

static void wr(uint64_t off, uint64_t val, unsigned size)
{
    vtio_vtd_reg_write(S.vtd, off, val, size);
}

static unsigned haw(void)
{
    return (unsigned)VTD_CAP_MGAW(rd(VTD_CAP_REG, 8)) + 1;
}

/* GCMD with the persistent bits kept, as Linux writes it. */
static void gcmd(uint32_t set, uint32_t clear)
{
    uint32_t keep = (uint32_t)rd(VTD_GSTS_REG, 4) &
                    (VTD_GCMD_TE | VTD_GCMD_QIE | VTD_GCMD_IRE | VTD_GCMD_CFI);
    wr(VTD_GCMD_REG, (keep & ~clear) | set, 4);
}

/* The event messages the unit may send outside INTR (fault and
 * invalidation completion), as its registers say now. */
struct events {
    struct msg fault, inv;
};

static struct events events_now(void)
{
    return (struct events){
        .fault = { rd(VTD_FEUADDR_REG, 4) << 32 | rd(VTD_FEADDR_REG, 4),
                   (uint32_t)rd(VTD_FEDATA_REG, 4) },
        .inv = { rd(VTD_IEUADDR_REG, 4) << 32 | rd(VTD_IEADDR_REG, 4),
                 (uint32_t)rd(VTD_IEDATA_REG, 4) },
    };
}

static bool same_msg(struct msg a, struct msg b)
{
    return a.addr == b.addr && a.data == b.data;
}

/* Every message sent since n_msgs was `from` is an event of before or after
 * (an op may change the event registers and unmask in one 8-byte write). */
static void check_events(unsigned from, struct events before, struct events after, bool inv_ok)
{
    if (S.n_msgs - from > MAX_MSGS)
        from = S.n_msgs - MAX_MSGS;
    for (unsigned i = from; i < S.n_msgs; i++) {
        struct msg m = S.msgs[i % MAX_MSGS];
        bool ok = same_msg(m, before.fault) || same_msg(m, after.fault) ||
                  (inv_ok && (same_msg(m, before.inv) || same_msg(m, after.inv)));
        FUZZ_CHECK(ok, "message %#llx/%#x is neither a fault nor an invalidation event",
                   (unsigned long long)m.addr, m.data);
    }
}

/* The fault-recording invariants of src/hw/vtd/fault.c. */
static void check_fault_regs(void)
{
    uint64_t cap = rd(VTD_CAP_REG, 8);
    unsigned nfr = (unsigned)VTD_CAP_NFR(cap) + 1, base = (unsigned)VTD_CAP_FRO(cap) * 16;
    uint32_t fsts = (uint32_t)rd(VTD_FSTS_REG, 4);
    bool any = false;
    for (unsigned i = 0; i < nfr; i++)
        any |= (rd(base + 16 * i + 8, 8) & VTD_FRCD_HI_F) != 0;
    FUZZ_CHECK(!!(fsts & VTD_FSTS_PPF) == any, "FSTS %#x but a pending FRCD: %d", fsts, any);
    if (fsts & VTD_FSTS_PPF) {
        unsigned fri = (unsigned)VTD_FSTS_FRI(fsts);
        FUZZ_CHECK(fri < nfr && (rd(base + 16 * fri + 8, 8) & VTD_FRCD_HI_F),
                   "FSTS.FRI %u names no pending record", fri);
    }
    uint32_t gsts = (uint32_t)rd(VTD_GSTS_REG, 4);
    FUZZ_CHECK(!(gsts & VTD_GSTS_IRES) || (gsts & VTD_GSTS_IRTPS),
               "GSTS %#x: remapping on without a table", gsts);
}

/* ------------------------------------------------------------------------
 * The oracle.  While no table or latched pointer has changed since the
 * first request that could fill a cache (since creation or reset), every
 * cache of the unit agrees with memory, so the unit must answer exactly as
 * a unit with empty caches does: the oracle, the same caps over the same
 * RAM, given the unit's latched root and interrupt table and its enables
 * (GSTS.TES, IRES, CFIS) and emptied before each question.  Once tables
 * change, stale answers are allowed until software invalidates: FLUSH (a
 * global invalidation of every cache that the unit reports done) or RESET
 * make the unit answerable to the oracle again; ATS answers, from the
 * device-TLB, only after RESET.
 */

static void tables_changed(void)
{
    S.stale |= S.filled;
    S.ats_stale |= S.ats_filled;
}

static void gcmd_of(struct vtio_vtd *u, uint32_t v)
{
    vtio_vtd_reg_write(u, VTD_GCMD_REG, v, 4);
}

static struct vtio_vtd *oracle(void)
{
    if (!S.oracle) {
        struct vtio_vtd_platform plat = { .mem_read = plat_read, .mem_write = plat_write,
                                          .interrupt = plat_interrupt, .opaque = &S.oracle };
        FUZZ_CHECK(vtio_vtd_create(&S.caps, &plat, &S.oracle) == 0, "oracle: %s",
                   vtio_last_error());
    } else {
        vtio_vtd_reset(S.oracle);
    }
    struct vtio_vtd *o = S.oracle;
    uint32_t levels = (uint32_t)rd(VTD_GSTS_REG, 4) &
                      (VTD_GSTS_TES | VTD_GSTS_IRES | VTD_GSTS_CFIS);
    vtio_vtd_reg_write(o, VTD_RTADDR_REG, atomic_load(&S.vtd->rtaddr_active), 8);
    vtio_vtd_reg_write(o, VTD_IRTA_REG, atomic_load(&S.vtd->irta_active), 8);
    gcmd_of(o, VTD_GCMD_SRTP | VTD_GCMD_SIRTP);
    gcmd_of(o, levels);
    return o;
}

/* The latched pointers, whose change makes cached entries stale. */
struct latched {
    uint64_t root, irt;
};

static struct latched latched_now(void)
{
    return (struct latched){ atomic_load(&S.vtd->rtaddr_active),
                             atomic_load(&S.vtd->irta_active) };
}

/* ------------------------------------------------------------------------
 * DMA requests.
 */

static bool is_intr_addr(uint64_t a)
{
    return (a >> 20) == 0xfee;
}

static uint64_t request_addr(uint64_t raw, unsigned sel)
{
    switch (sel) {
    case 0: return raw & 0x7fffffffffull;                 /* 39 bits */
    case 1: return raw & 0x3fffff;                        /* the first 4 MiB */
    case 2: return VTIO_MSI_WINDOW_BASE | (raw & 0xfffff);
    default: return raw;
    }
}

static void check_response(const struct vtio_vtd_req *q, int rc, const struct vtio_vtd_resp *r,
                           bool tes)
{
    if (rc == -EINVAL) {
        FUZZ_CHECK(q->has_pasid, "-EINVAL for a request without PASID");
        return;
    }
    if (rc == -EFAULT) {
        FUZZ_CHECK(r->fault > 0 && r->fault < 256, "fault reason %d", r->fault);
        return;
    }
    FUZZ_CHECK(rc == 0, "translate returned %d", rc);
    uint64_t size = r->page_size;
    FUZZ_CHECK(r->fault == 0, "success with fault %d", r->fault);
    FUZZ_CHECK(size == 1ull << 12 || size == 1ull << 21 || size == 1ull << 30,
               "page size %#llx", (unsigned long long)size);
    FUZZ_CHECK(((r->pa ^ q->addr) & (size - 1)) == 0, "pa %#llx for addr %#llx, page %#llx",
               (unsigned long long)r->pa, (unsigned long long)q->addr,
               (unsigned long long)size);
    FUZZ_CHECK(q->write ? r->write : r->read, "%s allowed on a page without that permission",
               q->write ? "write" : "read");
    FUZZ_CHECK(q->has_pasid || !is_intr_addr(r->pa), "DMA translated into the MSI window: %#llx",
               (unsigned long long)r->pa);
    if (!tes)
        FUZZ_CHECK(r->pa == q->addr, "translation off, yet %#llx became %#llx",
                   (unsigned long long)q->addr, (unsigned long long)r->pa);
    else if (!q->translated)
        FUZZ_CHECK(r->pa >> haw() == 0, "pa %#llx above HAW %u", (unsigned long long)r->pa,
                   haw());
}

static bool same_response(int rc1, const struct vtio_vtd_resp *a, int rc2,
                          const struct vtio_vtd_resp *b)
{
    return rc1 == rc2 && a->fault == b->fault && a->pa == b->pa &&
           a->page_size == b->page_size && a->read == b->read && a->write == b->write;
}

/* The DMA-port translator must agree with translate for a plain request. */
static void check_port(const struct vtio_vtd_req *q, int rc, const struct vtio_vtd_resp *r,
                       uint64_t len)
{
    const struct vtio_dma_translator *t = vtio_vtd_translator(S.vtd);
    uint64_t pa = 0, span = 0;
    t->ops->access_begin(t->opaque);
    int prc = t->ops->translate(t->opaque, q->sid, q->addr, len,
                                q->write ? VTIO_DMA_WRITE : VTIO_DMA_READ, &pa, &span);
    t->ops->access_end(t->opaque);
    if (rc != 0) {
        FUZZ_CHECK(prc == -EFAULT || prc == -EACCES, "port gave %d where translate faulted",
                   prc);
        return;
    }
    FUZZ_CHECK(prc == 0, "port refused (%d) what translate allowed", prc);
    FUZZ_CHECK(pa == r->pa, "port pa %#llx, translate pa %#llx", (unsigned long long)pa,
               (unsigned long long)r->pa);
    uint64_t in_page = r->page_size - (q->addr & (r->page_size - 1));
    FUZZ_CHECK(span >= 1 && span <= len && (span == len || span == in_page),
               "span %#llx for len %#llx", (unsigned long long)span, (unsigned long long)len);
}

static void op_translate(struct fuzz_in *in, bool ats)
{
    struct vtio_vtd_req q = { .sid = fuzz_u16(in) };
    uint8_t f = fuzz_u8(in);
    uint32_t pasid = fuzz_u32(in);
    uint64_t raw = fuzz_u64(in);
    q.has_pasid = f & 1;
    q.pasid = (f & 2) ? pasid : pasid & 0xfffff;
    q.write = f & 4;
    q.exec = f & 8;
    q.priv = f & 16;
    q.translated = (f & 0xe0) == 0xe0;
    q.addr = request_addr(raw, (f >> 5) & 3);

    bool tes = rd(VTD_GSTS_REG, 4) & VTD_GSTS_TES;
    int (*xl)(struct vtio_vtd *, const struct vtio_vtd_req *, struct vtio_vtd_resp *) =
        ats ? vtio_vtd_ats_translate : vtio_vtd_translate;
    struct vtio_vtd_resp r1 = { 0 }, r2 = { 0 };     /* -EINVAL leaves them */
    struct events ev = events_now();
    unsigned from = S.n_msgs;
    int rc1 = xl(S.vtd, &q, &r1);
    FUZZ_TRACE("%s sid %#x%s pasid %#x addr %#llx %s: %d fault %#x pa %#llx size %#llx %c%c\n",
               ats ? "ats" : "translate", q.sid, q.has_pasid ? " with" : "", q.pasid,
               (unsigned long long)q.addr, q.write ? "write" : "read", rc1, r1.fault,
               (unsigned long long)r1.pa, (unsigned long long)r1.page_size, r1.read ? 'r' : '-',
               r1.write ? 'w' : '-');
    check_response(&q, rc1, &r1, tes);
    int rc2 = xl(S.vtd, &q, &r2);
    FUZZ_CHECK(same_response(rc1, &r1, rc2, &r2),
               "asked twice: %d pa %#llx fault %d, then %d pa %#llx fault %d", rc1,
               (unsigned long long)r1.pa, r1.fault, rc2, (unsigned long long)r2.pa, r2.fault);
    if (!ats && !q.has_pasid && !q.translated)
        check_port(&q, rc1, &r1, 1 + (raw >> 52));
    check_events(from, ev, ev, false);
    if (!S.stale && !(ats && S.ats_stale)) {
        struct vtio_vtd_resp o = { 0 };
        int orc = xl(oracle(), &q, &o);
        FUZZ_CHECK(orc == rc1 && o.fault == r1.fault &&
                       (rc1 != 0 || (o.pa == r1.pa && o.page_size == r1.page_size)),
                   "cached answer %d fault %#x pa %#llx size %#llx, fresh answer %d fault "
                   "%#x pa %#llx size %#llx", rc1, r1.fault, (unsigned long long)r1.pa,
                   (unsigned long long)r1.page_size, orc, o.fault, (unsigned long long)o.pa,
                   (unsigned long long)o.page_size);
    }
    S.filled = true;
    S.ats_filled |= ats;
}

/* ------------------------------------------------------------------------
 * Interrupt requests.
 */

static void op_interrupt(struct fuzz_in *in)
{
    uint16_t sid = fuzz_u16(in);
    uint8_t f = fuzz_u8(in);
    uint32_t a32 = fuzz_u32(in), data = fuzz_u32(in);
    /* Mostly in the window; remappable format or not as the bits say. */
    uint64_t addr = (f & 1) ? (uint64_t)a32 << (f & 2 ? 32 : 0) | a32
                            : VTIO_MSI_WINDOW_BASE | (a32 & 0xfffff);
    bool ires = rd(VTD_GSTS_REG, 4) & VTD_GSTS_IRES;
    struct events ev = events_now();
    unsigned from = S.n_msgs;
    int rc = vtio_vtd_interrupt(S.vtd, sid, addr, data);
    struct msg last = S.msgs[(S.n_msgs - 1) % MAX_MSGS];    /* if one was sent */
    FUZZ_TRACE("interrupt sid %#x %#llx/%#x: %d, %u messages, last %#llx/%#x\n", sid,
               (unsigned long long)addr, data, rc, S.n_msgs - from,
               (unsigned long long)last.addr, last.data);

    if (!ires) {
        FUZZ_CHECK(rc == 0 && S.n_msgs == from + 1 && last.addr == addr && last.data == data,
                   "remapping off: %d, %u messages", rc, S.n_msgs - from);
    } else if (rc == 0) {
        FUZZ_CHECK(S.n_msgs == from + 1, "one remapped message, not %u", S.n_msgs - from);
        FUZZ_CHECK(is_intr_addr(last.addr) && !(last.addr >> 32) &&
                       !(last.addr & VTIO_MSI_ADDR_IF),
                   "remapped to %#llx", (unsigned long long)last.addr);
        if (!(addr & VTIO_MSI_ADDR_IF))
            FUZZ_CHECK(last.addr == addr && last.data == data, "compatibility format changed");
    } else {
        FUZZ_CHECK(rc == -EFAULT, "interrupt returned %d", rc);
        check_events(from, ev, ev, false);
    }
    if (!S.stale) {
        struct vtio_vtd *o = oracle();
        S.oracle_msgs = 0;
        int orc = vtio_vtd_interrupt(o, sid, addr, data);
        FUZZ_CHECK(orc == rc, "cached answer %d, fresh answer %d", rc, orc);
        FUZZ_CHECK(rc != 0 || (S.oracle_msgs == 1 && same_msg(S.oracle_msg, last)),
                   "cached message %#llx/%#x, fresh %#llx/%#x", (unsigned long long)last.addr,
                   last.data, (unsigned long long)S.oracle_msg.addr, S.oracle_msg.data);
    }
    S.filled = true;
}

/* ------------------------------------------------------------------------
 * Set-up shortcuts (register sequences as Linux's driver writes them).
 */

static uint64_t page_addr(uint16_t page)
{
    return ((uint64_t)page << 12) % RAM_SIZE;
}

static void op_root(struct fuzz_in *in)
{
    uint64_t root = page_addr(fuzz_u16(in));
    uint8_t f = fuzz_u8(in);
    wr(VTD_RTADDR_REG, root | ((f & 1) ? VTD_RTADDR_SMT : 0) | (f & 2 ? VTD_BIT(11) : 0), 8);
    gcmd(VTD_GCMD_SRTP, 0);
    if (!(f & 4))
        gcmd(VTD_GCMD_TE, 0);
}

static void op_qi_on(struct fuzz_in *in)
{
    uint64_t base = page_addr(fuzz_u16(in));
    uint8_t f = fuzz_u8(in);
    wr(VTD_IQA_REG, base | (f & 7) | ((f & 8) ? VTD_IQA_DW : 0), 8);
    gcmd(VTD_GCMD_QIE, 0);
}

static void op_ir_on(struct fuzz_in *in)
{
    uint64_t base = page_addr(fuzz_u16(in));
    uint8_t f = fuzz_u8(in);
    wr(VTD_IRTA_REG, base | (f & 15), 8);
    gcmd(VTD_GCMD_SIRTP, 0);
    gcmd(VTD_GCMD_IRE | ((f & 16) ? VTD_GCMD_CFI : 0), 0);
}

/* One descriptor into the queue at IQT (if that is RAM), then IQT moves to
 * the next slot: software's submit. */
static void op_qi_push(struct fuzz_in *in)
{
    uint8_t n = fuzz_u8(in);
    uint64_t d[4];
    for (unsigned i = 0; i < 4; i++)
        d[i] = fuzz_u64(in);
    uint64_t iqa = rd(VTD_IQA_REG, 8), iqt = rd(VTD_IQT_REG, 8) & VTD_IQ_OFF_MASK;
    unsigned dsize = (iqa & VTD_IQA_DW) ? 32 : 16;
    uint64_t qsize = 4096ull << VTD_IQA_QS(iqa), at = (iqa & VTD_IQA_ADDR_MASK) + iqt;
    if (ram_range(at, dsize))
        memcpy(S.ram + at, d, dsize);
    tables_changed();
    wr(VTD_IQT_REG, (iqt + dsize * (1 + (n & 3))) & (qsize - 1), n & 0x80 ? 4 : 8);
    FUZZ_TRACE("qi push %#llx %#llx: IQH %#llx IQT %#llx FSTS %#llx IQER %#llx\n",
               (unsigned long long)d[0], (unsigned long long)d[1],
               (unsigned long long)rd(VTD_IQH_REG, 8), (unsigned long long)rd(VTD_IQT_REG, 8),
               (unsigned long long)rd(VTD_FSTS_REG, 4), (unsigned long long)rd(VTD_IQER_REG, 8));
}

/* Global invalidation of every cache but the device-TLB, the way a driver
 * does it; @returns whether the unit reports it done. */
static bool flush_queued(void)
{
    uint64_t iqa = rd(VTD_IQA_REG, 8), ecap = rd(VTD_ECAP_REG, 8);
    bool dw = iqa & VTD_IQA_DW;
    unsigned dsize = dw ? 32 : 16;
    uint64_t qsize = 4096ull << VTD_IQA_QS(iqa), base = iqa & VTD_IQA_ADDR_MASK;
    uint64_t tail = rd(VTD_IQT_REG, 8) & VTD_IQ_OFF_MASK;
    uint64_t desc[4] = { VTD_INV_DESC_CC | VTD_MAKE(VTD_INV_GLOBAL, 5, 4),
                         VTD_INV_DESC_IOTLB | VTD_MAKE(VTD_INV_GLOBAL, 5, 4),
                         VTD_INV_DESC_PC | VTD_MAKE(VTD_INV_PC_G_GLOBAL, 5, 4),
                         VTD_INV_DESC_IEC };
    bool sm = ecap & VTD_ECAP_SMTS, ir = ecap & VTD_ECAP_IR;
    if (sm && !dw)
        return false;                /* the PASID cache needs 256-bit descriptors */
    for (unsigned i = 0; i < 4; i++) {
        if ((i == 2 && !sm) || (i == 3 && !ir))
            continue;
        uint8_t d[32] = { 0 };
        memcpy(d, &desc[i], 8);
        if (!ram_range(base + tail, dsize))
            return false;
        memcpy(S.ram + base + tail, d, dsize);
        tables_changed();            /* the queue may lie on a table */
        tail = (tail + dsize) & (qsize - 1);
    }
    wr(VTD_IQT_REG, tail, 8);
    uint32_t fsts = (uint32_t)rd(VTD_FSTS_REG, 4);
    return (rd(VTD_IQH_REG, 8) & VTD_IQ_OFF_MASK) == tail &&
           !(fsts & (VTD_FSTS_IQE | VTD_FSTS_ICE | VTD_FSTS_ITE));
}

static bool flush_registers(void)
{
    uint64_t iotlb = VTD_ECAP_IRO(rd(VTD_ECAP_REG, 8)) * 16 + VTD_IOTLB_OFF;
    wr(VTD_CCMD_REG, VTD_CCMD_ICC | VTD_MAKE(VTD_INV_GLOBAL, 62, 61), 8);
    wr(iotlb, VTD_IOTLB_IVT | VTD_MAKE(VTD_INV_GLOBAL, 61, 60), 8);
    return VTD_CCMD_CAIG(rd(VTD_CCMD_REG, 8)) == VTD_INV_GLOBAL &&
           VTD_IOTLB_IAIG(rd(iotlb, 8)) == VTD_INV_GLOBAL;
}

static void op_flush(void)
{
    bool qi = rd(VTD_GSTS_REG, 4) & VTD_GSTS_QIES;
    bool done = qi ? flush_queued() : flush_registers();
    FUZZ_TRACE("flush (%s): %s\n", qi ? "queued" : "registers", done ? "done" : "not done");
    if (done)
        S.stale = false;
}

/* ------------------------------------------------------------------------
 * Builder ops: well-formed structures in the pool.
 */

/* Pool page number tbl (allocated on first use); 0 when the pool is out. */
static uint64_t table(uint8_t tbl)
{
    uint64_t *t = &S.table[tbl % POOL_TABLES];
    if (!*t && S.b.next + 4096 <= S.b.end)
        *t = vtdb_page(&S.b);
    return *t;
}

/* Builders allocate up to 5 pages per call; vtdb_page aborts when the pool
 * runs out, so an op runs only with room to spare. */
static bool pool_room(void)
{
    return S.b.next + 8 * 4096 <= S.b.end;
}

static uint64_t root_table(void)
{
    return rd(VTD_RTADDR_REG, 8) & VTD_RTADDR_ADDR_MASK;
}

static void op_ctx(struct fuzz_in *in)
{
    uint16_t sid = fuzz_u16(in);
    uint8_t tt = fuzz_u8(in);
    uint16_t did = fuzz_u16(in);
    uint64_t sl = table(fuzz_u8(in));
    if (!pool_room() || !ram_range(root_table(), 4096))
        return;
    vtdb_ctx_legacy(&S.b, root_table(), sid, tt & 3, 1 + ((tt >> 2) & 3) % 3, did, sl, tt & 0x80);
}

static void op_sl_map(struct fuzz_in *in)
{
    uint64_t root = table(fuzz_u8(in));
    uint8_t lv = fuzz_u8(in);
    uint64_t iova = fuzz_u64(in);
    uint32_t pa = fuzz_u32(in);
    uint8_t perm = fuzz_u8(in);
    unsigned levels = 3 + (lv & 3) % 3, shift = 12 + 9 * (((lv >> 2) & 3) % 3);
    if (!root || !pool_room())
        return;
    uint64_t extra = (perm & 4) ? VTD_SL_SNP : 0;
    vtdb_sl_map(&S.b, root, levels, iova, (uint64_t)pa << 4, shift, (perm & 3) | extra);
}

static void op_sm_ctx(struct fuzz_in *in)
{
    uint16_t sid = fuzz_u16(in);
    uint8_t pdts = fuzz_u8(in), flags = fuzz_u8(in);
    uint64_t pdir = table(fuzz_u8(in));
    uint32_t rid_pasid = fuzz_u32(in);
    if (!pool_room() || !ram_range(root_table(), 4096))
        return;
    vtdb_sm_ctx(&S.b, root_table(), sid, pdir, pdts & 7, flags & 0x1f & ~VTD_SM_CTX_P,
                rid_pasid & 0xfffff);
}

static void op_pasid(struct fuzz_in *in)
{
    uint64_t pdir = table(fuzz_u8(in));
    uint32_t pasid = fuzz_u32(in) & 0xfffff;
    uint8_t pgtt = fuzz_u8(in);
    uint16_t did = fuzz_u16(in);
    uint64_t sl = table(fuzz_u8(in)), fl = table(fuzz_u8(in));
    uint8_t f = fuzz_u8(in);
    if (!pdir || !pool_room() || !ram_range(vtdb_pdire_addr(pdir, pasid), 8))
        return;
    struct vtdb_pasid_entry e = {
        .pgtt = 1 + pgtt % 4, .did = did, .aw = 1 + (pgtt >> 2) % 3, .ssptptr = sl,
        .fsptptr = fl, .fspm = (f >> 4) & 1, .fpd = f & 1, .sre = f & 2, .wpe = f & 4,
    };
    vtdb_pasid(&S.b, pdir, pasid, &e);
}

static void op_fl_map(struct fuzz_in *in)
{
    uint64_t root = table(fuzz_u8(in));
    uint8_t lv = fuzz_u8(in);
    uint64_t va = fuzz_u64(in);
    uint32_t pa = fuzz_u32(in);
    uint8_t flags = fuzz_u8(in);
    unsigned levels = 4 + (lv & 1), shift = 12 + 9 * ((lv >> 1) % 3);
    if (!root || !pool_room())
        return;
    vtdb_fl_map(&S.b, root, levels, va, (uint64_t)pa << 4, shift, flags & 0x7f);
}

static void op_irte(struct fuzz_in *in)
{
    uint64_t t = table(fuzz_u8(in));
    uint8_t idx = fuzz_u8(in);
    uint64_t lo = fuzz_u64(in), hi = fuzz_u64(in);
    if (!t)
        return;
    cpu_write64(NULL, t + 16ull * idx + 8, hi);
    cpu_write64(NULL, t + 16ull * idx, lo);
}

/* ------------------------------------------------------------------------
 * The program.
 */

static void op_reg_write(struct fuzz_in *in, unsigned size)
{
    uint64_t off = reg_offset(fuzz_u16(in));
    uint64_t val = size == 8 ? fuzz_u64(in) : fuzz_u32(in);
    struct events before = events_now();
    unsigned from = S.n_msgs;
    wr(off & ~(uint64_t)(size - 1), val, size);
    check_events(from, before, events_now(), true);
}

static void op_ram(struct fuzz_in *in, bool bytes)
{
    uint64_t off = fuzz_u32(in) % RAM_SIZE;
    if (!bytes) {
        cpu_write64(NULL, off & ~7ull, fuzz_u64(in));
        return;
    }
    uint8_t buf[64];
    size_t n = fuzz_u8(in) % (sizeof(buf) + 1);
    fuzz_bytes(in, buf, n);
    if (n > RAM_SIZE - off)
        n = RAM_SIZE - off;
    memcpy(S.ram + off, buf, n);
    tables_changed();
}

/* One op, with the check of the messages it sent (the request ops check
 * their own). */
static void run_op_checked(struct fuzz_in *in, enum op op)
{
    struct events before = events_now();
    unsigned from = S.n_msgs;
    switch (op) {
    case OP_REG_W32: op_reg_write(in, 4); return;
    case OP_REG_W64: op_reg_write(in, 8); return;
    case OP_REG_R: {
        uint64_t off = reg_offset(fuzz_u16(in));
        (void)rd(off, fuzz_u8(in));
        return;
    }
    case OP_RAM_W64:   op_ram(in, false); return;
    case OP_RAM_BYTES: op_ram(in, true); return;
    case OP_XLATE:     op_translate(in, false); return;
    case OP_ATS:       op_translate(in, true); return;
    case OP_INTR:      op_interrupt(in); return;
    case OP_QI_PUSH:   op_qi_push(in); break;
    case OP_ROOT:      op_root(in); break;
    case OP_QI_ON:     op_qi_on(in); break;
    case OP_IR_ON:     op_ir_on(in); break;
    case OP_CTX:       op_ctx(in); return;
    case OP_SL_MAP:    op_sl_map(in); return;
    case OP_SM_CTX:    op_sm_ctx(in); return;
    case OP_PASID:     op_pasid(in); return;
    case OP_FL_MAP:    op_fl_map(in); return;
    case OP_IRTE:      op_irte(in); return;
    case OP_RESET:     vtio_vtd_reset(S.vtd); break;
    case OP_FLUSH:     op_flush(); break;
    case OP_COUNT:     return;
    }
    check_events(from, before, events_now(), true);
}

/* One op, and the bookkeeping of the oracle. */
static void run_op(struct fuzz_in *in, enum op op)
{
    struct latched l = latched_now();
    run_op_checked(in, op);
    struct latched now = latched_now();
    if (now.root != l.root || now.irt != l.irt)
        tables_changed();
    if (op == OP_RESET)
        S.filled = S.stale = S.ats_filled = S.ats_stale = false;
}

static struct vtio_vtd_caps caps_from(uint8_t a, uint8_t b)
{
    static const unsigned widths[4] = { 39, 48, 57, 48 };
    struct vtio_vtd_caps c = {
        .addr_width = widths[a & 3],
        .scalable = a & 4,
        .device_tlb = a & 32,
        .no_2m_pages = a & 64,
        .no_1g_pages = a & 128,
        .fault_regs = 1 + (b & 7),
        .caching_mode = b & 8,
        .no_intr_remap = b & 16,
        .no_pass_through = b & 32,
    };
    c.first_level = c.scalable && (a & 8);
    c.nested = c.scalable && (a & 16);
    if (b & 64) {               /* register-based invalidation only */
        c.no_queued_inv = c.no_intr_remap = true;
        c.device_tlb = c.scalable = c.first_level = c.nested = false;
    }
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = fuzz_in_make(data, size);
    uint8_t a = fuzz_u8(&in), b = fuzz_u8(&in);

    memset(S.ram, 0, sizeof(S.ram));
    memset(S.table, 0, sizeof(S.table));
    S.n_msgs = 0;
    S.filled = S.stale = S.ats_filled = S.ats_stale = false;
    S.caps = caps_from(a, b);
    struct vtio_vtd_platform plat = { .mem_read = plat_read, .mem_write = plat_write,
                                      .interrupt = plat_interrupt };
    int rc = vtio_vtd_create(&S.caps, &plat, &S.vtd);
    FUZZ_CHECK(rc == 0, "caps %#x %#x refused: %s", a, b, vtio_last_error());
    S.b = (struct vtdb){ .read64 = cpu_read64, .write64 = cpu_write64, .next = POOL_BASE,
                         .end = RAM_SIZE, .haw = 52 };

    while (fuzz_more(&in)) {
        run_op(&in, (enum op)(fuzz_u8(&in) % OP_COUNT));
        check_fault_regs();
    }
    vtio_vtd_destroy(S.vtd);
    vtio_vtd_destroy(S.oracle);
    S.vtd = S.oracle = NULL;
    return 0;
}
