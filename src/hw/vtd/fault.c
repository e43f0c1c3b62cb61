/*
 * Primary fault logging and the fault event (VT-d spec 7.2-7.3; registers
 * FSTS, FECTL, FEDATA, FEADDR, FEUADDR and FRCD, 11.4.4 and 11.4.14).
 *
 * A fault that is not suppressed (FPD) is logged in the fault recording
 * registers FRCD[0..nfr-1], which sit at CAP.FRO * 16 and form a ring:
 * frcd_next is where the next record goes.  The rules, in order (7.2.1):
 *  1. while FSTS.PFO is set nothing is logged;
 *  2. a fault from a source-id that already has a pending record (F=1) is
 *     collapsed onto it (not logged again);
 *  3. if FRCD[frcd_next] is still pending, the fault overflows: FSTS.PFO;
 *  4. else the record is written with F=1 and frcd_next advances.
 * Every fault that is not logged is counted in stats.faults_dropped.
 *
 * A fault event (an MSI through FEDATA/FEADDR/FEUADDR) is raised only when
 * FSTS had no interrupt condition pending before (PPF, PFO, IQE, ICE, ITE):
 * software services the conditions, then the next one interrupts again.
 * With FECTL.IM set the event is held in FECTL.IP and sent when software
 * clears IM; IP also clears once software has serviced every condition.
 *
 * Invariants (under fault_lock):
 *  - FSTS.PPF == some FRCD has F set (PPF is read-only and derived);
 *  - while PPF is set, FSTS.FRI names a pending FRCD: the one logged when
 *    PPF went from 0 to 1, and, when software clears that one, the next
 *    pending one after it in ring order (so FRI is always "the first
 *    pending record", which is where Linux's handler starts);
 *  - FECTL.IP implies FECTL.IM was set when the event arose.
 *
 * Locks: fault_lock guards all of the above.  Device threads record faults
 * under it; register accesses take it (with reg_lock outside it on the
 * write path).  Event messages are sent with the lock of their control
 * register held (fault_lock for FECTL, reg_lock for IECTL), so the
 * platform's interrupt callback must not call back into the unit.
 */
#include "hw/vtd/vtd_internal.h"

#include <string.h>

/* The FSTS bits that are interrupt conditions (7.3): a new one raises the
 * fault event only if none of these was set before. */
#define FSTS_EVENT_BITS (VTD_FSTS_PFO | VTD_FSTS_PPF | VTD_FSTS_AFO | VTD_FSTS_APF | \
                         VTD_FSTS_IQE | VTD_FSTS_ICE | VTD_FSTS_ITE | VTD_FSTS_PRO)
#define FSTS_FRI_MASK   (0xffu << VTD_FSTS_FRI_SHIFT)
#define FSTS_QI_ERRORS  (VTD_FSTS_IQE | VTD_FSTS_ICE | VTD_FSTS_ITE)

/* Event data: [15:0] without extended interrupt mode ([31:16] with EIM). */
#define FEDATA_MASK     0x0000ffffu
#define FEADDR_MASK     0xfffffffcu     /* bits 1:0 reserved */
/* FRCD: F as seen in the top dword (offset +12), where Linux clears it. */
#define FRCD_TOP_DWORD  12
#define FRCD_F_DWORD    ((uint32_t)(VTD_FRCD_HI_F >> 32))

static uint64_t frcd_base(struct vtio_vtd *vtd)
{
    return VTD_CAP_FRO(vtd->cap) * 16;
}

static bool is_frcd(struct vtio_vtd *vtd, uint64_t off)
{
    uint64_t base = frcd_base(vtd);
    return off >= base && off < base + (uint64_t)vtd->nfr * VTD_FRCD_SIZE;
}

static bool is_fault_dword(struct vtio_vtd *vtd, uint64_t off)
{
    return (off >= VTD_FSTS_REG && off <= VTD_FEUADDR_REG) || is_frcd(vtd, off);
}

/* ------------------------------------------------------------------------
 * Events.
 */

void vtd_send_event(struct vtio_vtd *vtd, uint32_t *ctl, uint32_t data, uint32_t addr,
                    uint32_t uaddr)
{
    /* Masked: the event waits in IP until IM is cleared (7.3, 6.5.2.10). */
    if (*ctl & VTD_xECTL_IM) {
        *ctl |= VTD_xECTL_IP;
        return;
    }
    *ctl &= ~(uint32_t)VTD_xECTL_IP;
    if (vtd->plat.interrupt)
        vtd->plat.interrupt(vtd->plat.opaque, (uint64_t)uaddr << 32 | addr, data);
}

/* A new interrupt condition arose with FSTS == before.  fault_lock held. */
static void fault_event_locked(struct vtio_vtd *vtd, uint32_t before)
{
    if (before & FSTS_EVENT_BITS)
        return;                     /* already pending: no second event */
    vtd_send_event(vtd, &vtd->fectl, vtd->fedata, vtd->feaddr, vtd->feuaddr);
}

/* Software serviced conditions: once none is left, the held event is void
 * (FECTL.IP clears).  fault_lock held. */
static void fault_serviced_locked(struct vtio_vtd *vtd)
{
    if (!(vtd->fsts & FSTS_EVENT_BITS))
        vtd->fectl &= ~(uint32_t)VTD_xECTL_IP;
}

/* ------------------------------------------------------------------------
 * Recording (7.2.1).
 */

static void make_record(const struct vtd_fault *f, uint64_t *lo, uint64_t *hi)
{
    uint64_t h = VTD_MAKE(f->sid, 15, 0) | (uint64_t)f->reason << VTD_FRCD_HI_FR_SHIFT;
    if (f->is_ir) {
        /* Interrupt-remapping fault: FI holds the interrupt index in 63:48;
         * the request was a write (T = 0). */
        *lo = VTD_MAKE(f->addr, 63, VTD_FRCD_LO_IIDX_SHIFT);
    } else {
        *lo = f->addr & VTD_FRCD_LO_FI_MASK;
        if (f->read)
            h |= VTD_FRCD_HI_T;
    }
    /* PRIV and EXE are defined only for requests with PASID. */
    if (f->has_pasid) {
        h |= VTD_FRCD_HI_PP | VTD_MAKE(f->pasid, 59, VTD_FRCD_HI_PV_SHIFT);
        if (f->priv)
            h |= VTD_FRCD_HI_PRIV;
        if (f->exec)
            h |= VTD_FRCD_HI_EXE;
    }
    *hi = h | VTD_FRCD_HI_F;
}

void vtd_fault_record(struct vtio_vtd *vtd, const struct vtd_fault *f)
{
    pthread_mutex_lock(&vtd->fault_lock);
    uint32_t before = vtd->fsts;

    /* 1. Overflowed: nothing is logged until software clears PFO. */
    if (before & VTD_FSTS_PFO)
        goto drop;
    /* 2. Collapse onto a pending record of the same source-id. */
    for (unsigned i = 0; i < vtd->nfr; i++) {
        if ((vtd->frcd_hi[i] & VTD_FRCD_HI_F) && VTD_FRCD_HI_SID(vtd->frcd_hi[i]) == f->sid)
            goto drop;
    }
    /* 3. The next record is still pending: primary fault overflow.  PPF is
     * set (that record is pending), so no new event. */
    unsigned i = vtd->frcd_next;
    if (vtd->frcd_hi[i] & VTD_FRCD_HI_F) {
        vtd->fsts |= VTD_FSTS_PFO;
        goto drop;
    }
    /* 4. Log it; FRI names it if it is the first pending record. */
    make_record(f, &vtd->frcd_lo[i], &vtd->frcd_hi[i]);
    vtd->frcd_next = (i + 1) % vtd->nfr;
    if (!(before & VTD_FSTS_PPF))
        vtd->fsts = (vtd->fsts & ~FSTS_FRI_MASK) | i << VTD_FSTS_FRI_SHIFT;
    vtd->fsts |= VTD_FSTS_PPF;
    VTD_COUNT(vtd, faults_recorded);
    fault_event_locked(vtd, before);
    pthread_mutex_unlock(&vtd->fault_lock);
    return;

drop:
    VTD_COUNT(vtd, faults_dropped);
    pthread_mutex_unlock(&vtd->fault_lock);
}

void vtd_fault_set_status(struct vtio_vtd *vtd, uint32_t fsts_bits)
{
    pthread_mutex_lock(&vtd->fault_lock);
    uint32_t before = vtd->fsts;
    vtd->fsts |= fsts_bits & FSTS_QI_ERRORS;
    if (vtd->fsts != before)
        fault_event_locked(vtd, before);
    pthread_mutex_unlock(&vtd->fault_lock);
}

/* Software cleared F of FRCD[i] (RW1C).  fault_lock held. */
static void frcd_clear_locked(struct vtio_vtd *vtd, unsigned i)
{
    if (!(vtd->frcd_hi[i] & VTD_FRCD_HI_F))
        return;
    vtd->frcd_hi[i] &= ~VTD_FRCD_HI_F;      /* the other fields stay readable */

    /* PPF follows the F bits; FRI moves on to the next pending record. */
    unsigned fri = VTD_FSTS_FRI(vtd->fsts);
    for (unsigned k = 1; k <= vtd->nfr; k++) {
        unsigned j = (fri + k) % vtd->nfr;
        if (vtd->frcd_hi[j] & VTD_FRCD_HI_F) {
            if (fri == i)
                vtd->fsts = (vtd->fsts & ~FSTS_FRI_MASK) | j << VTD_FSTS_FRI_SHIFT;
            return;                         /* PPF stays set */
        }
    }
    vtd->fsts &= ~(uint32_t)VTD_FSTS_PPF;
    fault_serviced_locked(vtd);
}

void vtd_fault_reset(struct vtio_vtd *vtd)
{
    pthread_mutex_lock(&vtd->fault_lock);
    vtd->fsts = 0;
    vtd->fectl = VTD_xECTL_IM;               /* masked at reset */
    vtd->fedata = vtd->feaddr = vtd->feuaddr = 0;
    memset(vtd->frcd_lo, 0, sizeof(vtd->frcd_lo));
    memset(vtd->frcd_hi, 0, sizeof(vtd->frcd_hi));
    vtd->frcd_next = 0;
    pthread_mutex_unlock(&vtd->fault_lock);
}

/* ------------------------------------------------------------------------
 * Register access.  off is from the unit's base; accesses arrive 4- or
 * 8-byte and naturally aligned (regs.c checks).  An 8-byte access is the
 * two dwords under one hold of the lock, so a 64-bit FRCD read is atomic.
 */

static uint32_t dword_read_locked(struct vtio_vtd *vtd, uint64_t off)
{
    if (is_frcd(vtd, off)) {
        uint64_t rel = off - frcd_base(vtd);
        unsigned i = (unsigned)(rel / VTD_FRCD_SIZE);
        uint64_t q = (rel & 8) ? vtd->frcd_hi[i] : vtd->frcd_lo[i];
        return (uint32_t)(q >> (8 * (rel & 4)));
    }
    switch (off) {
    case VTD_FSTS_REG:    return vtd->fsts;
    case VTD_FECTL_REG:   return vtd->fectl;
    case VTD_FEDATA_REG:  return vtd->fedata;
    case VTD_FEADDR_REG:  return vtd->feaddr;
    case VTD_FEUADDR_REG: return vtd->feuaddr;
    default:              return 0;       /* reserved */
    }
}

static void dword_write_locked(struct vtio_vtd *vtd, uint64_t off, uint32_t v)
{
    bool eim = vtd->ecap & VTD_ECAP_EIM;

    if (is_frcd(vtd, off)) {
        /* Only F (bit 127, bit 31 of the top dword) is writable: RW1C. */
        uint64_t rel = off - frcd_base(vtd);
        if (rel % VTD_FRCD_SIZE == FRCD_TOP_DWORD && (v & FRCD_F_DWORD))
            frcd_clear_locked(vtd, (unsigned)(rel / VTD_FRCD_SIZE));
        return;
    }
    switch (off) {
    case VTD_FSTS_REG:
        /* RW1C status bits; PPF and FRI are read-only. */
        vtd->fsts &= ~(v & (uint32_t)VTD_FSTS_RW1C);
        fault_serviced_locked(vtd);
        break;
    case VTD_FECTL_REG:
        /* IM is writable, IP read-only.  Unmasking with an event held
         * sends it now (7.3). */
        if (v & VTD_xECTL_IM) {
            vtd->fectl |= VTD_xECTL_IM;
        } else {
            vtd->fectl &= ~(uint32_t)VTD_xECTL_IM;
            if (vtd->fectl & VTD_xECTL_IP)
                vtd_send_event(vtd, &vtd->fectl, vtd->fedata, vtd->feaddr, vtd->feuaddr);
        }
        break;
    case VTD_FEDATA_REG:
        vtd->fedata = eim ? v : v & FEDATA_MASK;
        break;
    case VTD_FEADDR_REG:
        vtd->feaddr = v & FEADDR_MASK;
        break;
    case VTD_FEUADDR_REG:
        vtd->feuaddr = eim ? v : 0;         /* RsvdZ without x2APIC mode */
        break;
    default:
        break;                              /* reserved */
    }
}

uint64_t vtd_fault_reg_read(struct vtio_vtd *vtd, uint64_t off, unsigned size)
{
    pthread_mutex_lock(&vtd->fault_lock);
    uint64_t v = dword_read_locked(vtd, off);
    if (size == 8)
        v |= (uint64_t)dword_read_locked(vtd, off + 4) << 32;
    pthread_mutex_unlock(&vtd->fault_lock);
    return v;
}

bool vtd_fault_reg_write(struct vtio_vtd *vtd, uint64_t off, uint64_t val, unsigned size)
{
    if (!is_fault_dword(vtd, off) && !(size == 8 && is_fault_dword(vtd, off + 4)))
        return false;
    pthread_mutex_lock(&vtd->fault_lock);
    dword_write_locked(vtd, off, (uint32_t)val);
    if (size == 8)
        dword_write_locked(vtd, off + 4, (uint32_t)(val >> 32));
    pthread_mutex_unlock(&vtd->fault_lock);
    return true;
}
