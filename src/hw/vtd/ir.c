/*
 * Interrupt remapping (VT-d spec chapter 5) and the interrupt entry cache.
 *
 * With GSTS.IRES set, every interrupt request (a DWORD write into
 * 0xFEEx_xxxx) is checked here before it reaches the CPUs:
 *  - a compatibility-format request (address bit 4 clear) passes unchanged
 *    only while GSTS.CFIS is set, and is blocked (fault 25h) otherwise;
 *  - a remappable-format request names an interrupt remapping table entry
 *    (IRTE) by its handle (plus the subhandle from the data when SHV is
 *    set); the IRTE, read from the table latched by SIRTP (irta_active),
 *    supplies destination, vector, delivery and trigger mode, and says which
 *    requesters may use it (SID/SQ/SVT).  The result goes on as a
 *    compatibility-format message through the platform's interrupt call.
 * A blocked request is recorded as a primary fault like a DMA fault (the
 * interrupt index in FRCD bits 63:48), unless the IRTE that was read has
 * FPD set.  With GSTS.IRES clear the message passes unchanged.
 *
 * The interrupt entry cache (IEC) holds present IRTEs by index, as
 * hardware may: a changed IRTE is not seen until software invalidates it
 * (vtd_iec_inv, from the IEC descriptor or SIRTP).  It is direct-mapped;
 * each slot is a sequence lock over atomics, so a lookup takes no lock and
 * never blocks a device thread (a lookup that races a writer misses and
 * reads the table).  Fills and invalidations are serialised by
 * iec->lock; an invalidation bumps iec->gen, and a fill whose IRTE was read
 * before the latest invalidation is dropped, so nothing read before an
 * invalidation is cached after it.
 *
 * Threads: vtio_vtd_interrupt() runs on any device thread, concurrently;
 * it takes no lock on an IEC hit, and iec->lock (a leaf) otherwise.
 */
#include "hw/vtd/vtd_internal.h"

#include <vtio/intr.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define IEC_SLOTS 256u                  /* direct-mapped by index */

struct iec_slot {
    _Atomic uint32_t seq;               /* odd while a writer is inside */
    _Atomic uint32_t tag;               /* interrupt index + 1; 0 = empty */
    _Atomic uint64_t lo, hi;            /* the IRTE */
};

struct vtd_iec {
    pthread_mutex_t lock;               /* fills and invalidations */
    _Atomic uint64_t gen;               /* bumped by every invalidation */
    struct iec_slot slot[IEC_SLOTS];
};

/* Address bits of an interrupt request (5.1.2): [31:20] = 0xFEE. */
#define MSI_ADDR_HEAD(a)     VTD_FIELD(a, 31, 20)
#define MSI_ADDR_HEAD_VALUE  0xfee
/* Data bits 31:16 are reserved in a remappable request that uses SHV. */
#define MSI_DATA_RSVD        0xffff0000u
/* xAPIC mode: only DST[15:8] (IRTE bits 47:40) holds the APIC id. */
#define IRTE_LO_XAPIC_RSVD   0xffff00ff00000000ull
/* SID qualifier: which requester-id bits take part in the compare. */
static const uint16_t sq_mask[4] = { 0xffff, 0xfffb, 0xfff9, 0xfff8 };

/* ------------------------------------------------------------------------
 * The interrupt entry cache.
 */

int vtd_ir_init(struct vtio_vtd *vtd)
{
    struct vtd_iec *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    pthread_mutex_init(&c->lock, NULL);
    vtd->iec = c;
    return 0;
}

void vtd_ir_fini(struct vtio_vtd *vtd)
{
    if (!vtd->iec)
        return;
    pthread_mutex_destroy(&vtd->iec->lock);
    free(vtd->iec);
    vtd->iec = NULL;
}

/* Lock-free: true and irte[] if slot holds index, read consistently. */
static bool iec_lookup(struct vtd_iec *c, uint32_t index, uint64_t irte[2])
{
    struct iec_slot *s = &c->slot[index % IEC_SLOTS];
    uint32_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
    if (seq & 1)
        return false;                   /* being written: go to memory */
    /* Acquire field loads keep the re-check of seq after them, and one that
     * reads a writer's store also sees that writer's odd seq (no fences:
     * ThreadSanitizer does not model them). */
    uint32_t tag = atomic_load_explicit(&s->tag, memory_order_acquire);
    irte[0] = atomic_load_explicit(&s->lo, memory_order_acquire);
    irte[1] = atomic_load_explicit(&s->hi, memory_order_acquire);
    return atomic_load_explicit(&s->seq, memory_order_relaxed) == seq && tag == index + 1;
}

/* Writes one slot; caller holds c->lock. */
static void slot_store(struct iec_slot *s, uint32_t tag, uint64_t lo, uint64_t hi)
{
    VTD_SEQ_WRITE_BEGIN(&s->seq);
    atomic_store_explicit(&s->tag, tag, memory_order_release);
    atomic_store_explicit(&s->lo, lo, memory_order_release);
    atomic_store_explicit(&s->hi, hi, memory_order_release);
    VTD_SEQ_WRITE_END(&s->seq);
}

/* Caches an IRTE read while the invalidation generation was gen. */
static void iec_fill(struct vtd_iec *c, uint64_t gen, uint32_t index, const uint64_t irte[2])
{
    pthread_mutex_lock(&c->lock);
    if (atomic_load_explicit(&c->gen, memory_order_relaxed) == gen)
        slot_store(&c->slot[index % IEC_SLOTS], index + 1, irte[0], irte[1]);
    pthread_mutex_unlock(&c->lock);
}

void vtd_iec_inv(struct vtio_vtd *vtd, bool global, uint32_t index, unsigned im)
{
    struct vtd_iec *c = vtd->iec;
    /* Index-selective: 2^IM entries, the low IM bits of IIDX ignored (6.5.2.7). */
    if (im > 16)
        im = 16;
    uint32_t first = index & ~((1u << im) - 1), count = 1u << im;
    pthread_mutex_lock(&c->lock);
    /* Release: a filler that reads the new generation also reads the IRTE
     * software wrote before invalidating. */
    atomic_fetch_add_explicit(&c->gen, 1, memory_order_release);
    for (unsigned i = 0; i < IEC_SLOTS; i++) {
        struct iec_slot *s = &c->slot[i];
        uint32_t tag = atomic_load_explicit(&s->tag, memory_order_relaxed);
        if (tag && (global || tag - 1 - first < count))
            slot_store(s, 0, 0, 0);
    }
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------------------
 * Remapping (5.1.4).
 */

/* IRTE reserved fields for the mode the table was latched in. */
static bool irte_reserved(const uint64_t irte[2], bool x2apic)
{
    if (irte[0] & VTD_IRTE_IM)
        return true;        /* posted format: vtio implements no CAP.PI */
    if (irte[0] & VTD_IRTE_LO_RSVD)
        return true;
    if (!x2apic && (irte[0] & IRTE_LO_XAPIC_RSVD))
        return true;
    if (irte[1] & VTD_IRTE_HI_RSVD)
        return true;
    return VTD_IRTE_SVT(irte[1]) == 3;      /* SVT 11b is reserved */
}

/*
 * Source-id verification (SVT): 01b compares the requester id with SID on
 * the bits SQ selects; 10b requires the requester's bus to lie in
 * [SID[15:8], SID[7:0]] (start bus, end bus: what Linux programs for
 * devices behind a PCIe-to-PCI bridge).
 */
static bool sid_ok(uint16_t sid, const uint64_t irte[2])
{
    uint16_t want = (uint16_t)VTD_IRTE_SID(irte[1]);
    switch (VTD_IRTE_SVT(irte[1])) {
    case VTD_IRTE_SVT_SID: {
        uint16_t mask = sq_mask[VTD_IRTE_SQ(irte[1])];
        return (sid & mask) == (want & mask);
    }
    case VTD_IRTE_SVT_BUS: {
        unsigned bus = sid >> 8, start = want >> 8, end = want & 0xff;
        return bus >= start && bus <= end;
    }
    default:
        return true;
    }
}

int vtd_ir_remap(struct vtio_vtd *vtd, uint16_t sid, uint64_t addr, uint32_t data,
                 uint64_t *out_addr, uint32_t *out_data, bool *fpd, uint16_t *index)
{
    *fpd = false;
    *index = 0;

    /* 1. An interrupt request is a DWORD write to 0xFEEx_xxxx; address
     *    bits 63:32 are reserved. */
    if ((addr >> 32) || MSI_ADDR_HEAD(addr) != MSI_ADDR_HEAD_VALUE)
        return VTD_FR_IR_REQ_RSVD;

    /* 2. Compatibility format: passes only while CFIS is set. */
    if (!(addr & VTD_MSI_IF)) {
        if (!vtd_enabled(vtd, VTD_GSTS_CFIS))
            return VTD_FR_IR_REQ_COMPAT;
        *out_addr = addr;
        *out_data = data;
        return 0;
    }

    /* 3. Remappable format: the handle, plus the subhandle if SHV. */
    uint32_t idx = (uint32_t)VTD_MSI_HANDLE(addr);
    *index = (uint16_t)idx;
    if (addr & VTD_MSI_SHV) {
        if (data & MSI_DATA_RSVD)
            return VTD_FR_IR_REQ_RSVD;
        idx += (uint32_t)VTD_MSI_SUBHANDLE(data);
    }
    *index = (uint16_t)idx;

    /* 4. The index must lie in the table: 2^(S+1) entries. */
    uint64_t irta = atomic_load_explicit(&vtd->irta_active, memory_order_acquire);
    if (idx >= (2u << VTD_IRTA_S(irta)))
        return VTD_FR_IR_INDEX_OVER;
    bool x2apic = (irta & VTD_IRTA_EIME) && (vtd->ecap & VTD_ECAP_EIM);

    /* 5. The IRTE: from the IEC, else from the table (access error 23h).
     *    Only present entries are cached. */
    uint64_t irte[2];
    if (!iec_lookup(vtd->iec, idx, irte)) {
        uint64_t gen = atomic_load_explicit(&vtd->iec->gen, memory_order_acquire);
        if (vtd_read(vtd, (irta & VTD_IRTA_ADDR_MASK) + (uint64_t)idx * 16, irte,
                     sizeof(irte)) < 0)
            return VTD_FR_IR_ROOT_INVAL;
        if (irte[0] & VTD_IRTE_P)
            iec_fill(vtd->iec, gen, idx, irte);
    }

    /* 6. Checks on the entry; FPD (read even when P is clear) suppresses
     *    the recording of these faults. */
    *fpd = irte[0] & VTD_IRTE_FPD;
    if (!(irte[0] & VTD_IRTE_P))
        return VTD_FR_IR_ENTRY_P;
    if (irte_reserved(irte, x2apic))
        return VTD_FR_IR_IRTE_RSVD;
    if (!sid_ok(sid, irte))
        return VTD_FR_IR_SID_ERR;

    /* 7. The remapped message, in compatibility format: destination id in
     *    address [19:12] (x2APIC: id[31:8] in address [63:40]), DM, RH;
     *    data: vector, delivery mode, trigger mode. */
    uint32_t dest = x2apic ? (uint32_t)VTD_IRTE_DST(irte[0])
                           : (uint32_t)VTD_IRTE_XAPIC_DEST(irte[0]);
    uint64_t a = VTIO_MSI_WINDOW_BASE | (uint64_t)(dest & 0xff) << VTIO_MSI_ADDR_DEST_SHIFT;
    if (irte[0] & VTD_IRTE_DM)
        a |= VTIO_MSI_ADDR_DM;
    if (irte[0] & VTD_IRTE_RH)
        a |= VTIO_MSI_ADDR_RH;
    a |= (uint64_t)(dest >> 8) << 40;
    uint32_t d = (uint32_t)VTD_IRTE_V(irte[0]) |
                 (uint32_t)VTD_IRTE_DLM(irte[0]) << VTIO_MSI_DATA_DM_SHIFT;
    if (irte[0] & VTD_IRTE_TM)
        d |= VTIO_MSI_DATA_TRIGGER;
    *out_addr = a;
    *out_data = d;
    return 0;
}

static void send(struct vtio_vtd *vtd, uint64_t addr, uint32_t data)
{
    if (vtd->plat.interrupt)
        vtd->plat.interrupt(vtd->plat.opaque, addr, data);
}

int vtio_vtd_interrupt(struct vtio_vtd *vtd, uint16_t sid, uint64_t addr, uint32_t data)
{
    if (!vtd_enabled(vtd, VTD_GSTS_IRES)) {
        send(vtd, addr, data);          /* remapping off: unchanged */
        return 0;
    }
    uint64_t out_addr;
    uint32_t out_data;
    bool fpd;
    uint16_t index;
    int fr = vtd_ir_remap(vtd, sid, addr, data, &out_addr, &out_data, &fpd, &index);
    if (fr) {
        VTD_COUNT(vtd, interrupts_blocked);
        if (fpd) {
            VTD_COUNT(vtd, faults_suppressed);
        } else {
            struct vtd_fault f = { .sid = sid, .reason = (uint8_t)fr, .addr = index,
                                   .is_ir = true };
            vtd_fault_record(vtd, &f);
        }
        return -EFAULT;
    }
    if (addr & VTD_MSI_IF)
        VTD_COUNT(vtd, interrupts_remapped);
    send(vtd, out_addr, out_data);
    return 0;
}
