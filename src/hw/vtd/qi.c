/*
 * Queued invalidation (VT-d spec 6.5.2; registers IQH, IQT, IQA, ICS,
 * IECTL/IEDATA/IEADDR/IEUADDR, IQER: 11.4.9).
 *
 * The queue is a ring at IQA[63:12] of 4 KiB << IQA.QS bytes holding
 * 128-bit descriptors (IQA.DW = 0) or 256-bit ones (DW = 1, scalable-mode
 * units only).  IQH and IQT are byte offsets.  When software writes IQT the
 * unit processes the descriptors from IQH up to IQT, in order, here and
 * now, on the writing thread (the unit starts no threads); IQH advances past
 * each descriptor once it has taken effect.
 *
 * Descriptors: context-cache (context.c), IOTLB and PASID-based IOTLB
 * (iotlb.c), device-TLB and PASID-based device-TLB (iotlb.c's device-TLB),
 * interrupt-entry-cache (ir.c), PASID-cache (context.c), page-group
 * response (accepted and ignored: the unit has no page requests), and the
 * invalidation wait.  Since everything before a wait descriptor has already
 * been done when it is reached, FN (fence) needs nothing more; what the wait
 * adds is vtd_inflight_drain(): the status write (SW) and the completion
 * event (IF: ICS.IWC and the IEDATA/IEADDR message, subject to IECTL.IM)
 * happen only after every DMA that may still use a removed translation has
 * finished.  That is the guarantee software relies on.
 *
 * Errors (6.5.2.10):
 *  - IQE: an unknown or unsupported descriptor type, a reserved field set,
 *    a 256-bit-only type in a 128-bit queue, an address mask above
 *    CAP.MAMV, an invalid granularity, a descriptor that cannot be read or
 *    a status address that cannot be written; or IQT beyond the queue or
 *    not 256-bit aligned in a 256-bit queue.  FSTS.IQE is set (with the
 *    fault event under the usual rule), IQER.IQEI says why, IQH stays at
 *    the bad descriptor and nothing more is fetched until software clears
 *    IQE (regs.c then calls vtd_qi_process again).
 *  - ITE: a device-TLB invalidation aimed at a source-id with no ATS
 *    endpoint (see iotlb.c) finds no one to complete it, which on hardware
 *    ends in a time-out.  FSTS.ITE is set and IQER.ITESID names the source;
 *    processing goes on to the next wait descriptor, which is aborted (its
 *    status write and interrupt never happen, IQH moves past it), and then
 *    stops until software clears ITE, as Linux's qi_check_fault expects.
 *  - ICE (an invalid completion from an endpoint) cannot happen in vtio,
 *    where the device-TLBs answer inside the unit; it is never set.
 *
 * Locks: called with reg_lock held (it guards IQH/IQT/IQA, ICS, IECTL and
 * IQER); takes fault_lock through vtd_fault_set_status.  A drain waits for
 * device threads, which never take reg_lock inside an access.
 * Bound: one pass over the queue per call, at most 2^(QS+8) descriptors.
 */
#include "hw/vtd/vtd_internal.h"

#include <string.h>

#define QI_ERRORS (VTD_FSTS_IQE | VTD_FSTS_ICE | VTD_FSTS_ITE)

enum step { STEP_DONE, STEP_ERROR, STEP_STOP };

/* One pass over the queue. */
struct qi_pass {
    struct vtio_vtd *vtd;
    uint64_t d[4];          /* the descriptor: qw0..qw3 (qw2, qw3: 256-bit) */
    bool dw;                /* 256-bit descriptors */
    bool ite;               /* a device-TLB invalidation timed out */
    unsigned iqei;          /* why, on STEP_ERROR */
};

static enum step bad(struct qi_pass *p, unsigned iqei)
{
    p->iqei = iqei;
    return STEP_ERROR;
}

static bool halted(struct vtio_vtd *vtd)
{
    pthread_mutex_lock(&vtd->fault_lock);
    bool h = vtd->fsts & QI_ERRORS;
    pthread_mutex_unlock(&vtd->fault_lock);
    return h;
}

/* IQE (6.5.2.10): IQH stays where it is. */
static void queue_error(struct vtio_vtd *vtd, unsigned iqei)
{
    vtd->iqer = (vtd->iqer & ~VTD_IQER_IQEI_MASK) | VTD_MAKE(iqei, 3, 0);
    vtd_fault_set_status(vtd, VTD_FSTS_IQE);
}

/* Size of a device-TLB invalidation (ATS invalidate request): one page
 * with S clear; with S set, the lowest clear bit of ADDR[63:12] at 12+n
 * means 2^(13+n) bytes (all ones: everything). */
static unsigned devtlb_size_shift(bool s, uint64_t addr)
{
    if (!s)
        return 12;
    return 13 + (unsigned)__builtin_ctzll(~(addr >> 12));
}

/* ------------------------------------------------------------------------
 * Descriptors (6.5.2.1 - 6.5.2.9).
 */

static enum step do_cc(struct qi_pass *p)
{
    uint64_t q0 = p->d[0];
    unsigned g = VTD_INV_G(q0);
    if ((q0 & VTD_INV_CC_Q0_RSVD) || p->d[1] || g == 0)
        return bad(p, VTD_IQEI_RSVD);
    vtd_ctx_cache_inv(p->vtd, g, VTD_INV_DID(q0), VTD_INV_CC_SID(q0), VTD_INV_CC_FM(q0));
    return STEP_DONE;
}

/* IOTLB: global, domain or page-selective; DW/DR (drain writes/reads) are
 * accepted: every access has drained by the time a wait completes. */
static enum step do_iotlb(struct qi_pass *p)
{
    uint64_t q0 = p->d[0], q1 = p->d[1];
    uint16_t did = VTD_INV_DID(q0);
    if ((q0 & VTD_INV_IOTLB_Q0_RSVD) || (q1 & VTD_INV_IOTLB_Q1_RSVD))
        return bad(p, VTD_IQEI_RSVD);
    switch (VTD_INV_G(q0)) {
    case VTD_INV_GLOBAL:
        vtd_iotlb_inv_all(p->vtd);
        return STEP_DONE;
    case VTD_INV_DOMAIN:
        vtd_iotlb_inv_domain(p->vtd, did);
        return STEP_DONE;
    case VTD_INV_PAGE:
        if (VTD_INV_AM(q1) > VTD_CAP_MAMV(p->vtd->cap))
            return bad(p, VTD_IQEI_RSVD);
        vtd_iotlb_inv_page(p->vtd, did, VTD_INV_ADDR(q1), VTD_INV_AM(q1), q1 & VTD_INV_IH);
        return STEP_DONE;
    }
    return bad(p, VTD_IQEI_RSVD);
}

static void time_out(struct qi_pass *p, uint16_t sid)
{
    struct vtio_vtd *vtd = p->vtd;
    vtd->iqer = (vtd->iqer & ~VTD_MAKE(0xffff, 47, VTD_IQER_ITESID_SHIFT)) |
                VTD_MAKE(sid, 47, VTD_IQER_ITESID_SHIFT);
    vtd_fault_set_status(vtd, VTD_FSTS_ITE);
    p->ite = true;
}

/* Device-TLB (ATS): requests without PASID; PFSID and MIP only matter to a
 * PCIe fabric and are ignored. */
static enum step do_devtlb(struct qi_pass *p)
{
    uint64_t q0 = p->d[0], q1 = p->d[1];
    if ((q0 & VTD_INV_DEVTLB_Q0_RSVD & ~VTD_INV_DEV_PFSID) || (q1 & VTD_INV_DEVTLB_Q1_RSVD))
        return bad(p, VTD_IQEI_RSVD);
    uint16_t sid = VTD_INV_DEV_SID(q0);
    uint64_t addr = VTD_INV_ADDR(q1);
    if (!vtd_devtlb_inv(p->vtd, sid, VTD_NO_PASID, addr,
                        devtlb_size_shift(q1 & VTD_INV_DEV_S, addr)))
        time_out(p, sid);
    return STEP_DONE;
}

static enum step do_pdevtlb(struct qi_pass *p)
{
    uint64_t q0 = p->d[0], q1 = p->d[1];
    if (q1 & VTD_INV_PDEVTLB_Q1_RSVD)
        return bad(p, VTD_IQEI_RSVD);
    uint16_t sid = VTD_INV_PDEV_SID(q0);
    uint32_t pasid = (q1 & VTD_INV_PDEV_G) ? VTD_NO_PASID : (uint32_t)VTD_INV_PASID(q0);
    uint64_t addr = VTD_INV_ADDR(q1);
    if (!vtd_devtlb_inv(p->vtd, sid, pasid, addr,
                        devtlb_size_shift(q1 & VTD_INV_PDEV_S, addr)))
        time_out(p, sid);
    return STEP_DONE;
}

static enum step do_iec(struct qi_pass *p)
{
    uint64_t q0 = p->d[0];
    bool index = q0 & VTD_INV_IEC_G;
    if ((q0 & VTD_INV_IEC_Q0_RSVD) || p->d[1])
        return bad(p, VTD_IQEI_RSVD);
    if (index && VTD_INV_IEC_IM(q0) > VTD_ECAP_MHMV(p->vtd->ecap))
        return bad(p, VTD_IQEI_RSVD);
    vtd_iec_inv(p->vtd, !index, (uint32_t)VTD_INV_IEC_IIDX(q0), (unsigned)VTD_INV_IEC_IM(q0));
    return STEP_DONE;
}

static enum step do_piotlb(struct qi_pass *p)
{
    uint64_t q0 = p->d[0], q1 = p->d[1];
    uint16_t did = VTD_INV_DID(q0);
    uint32_t pasid = (uint32_t)VTD_INV_PASID(q0);
    if ((q0 & VTD_INV_PIOTLB_Q0_RSVD) || (q1 & VTD_INV_PIOTLB_Q1_RSVD))
        return bad(p, VTD_IQEI_RSVD);
    switch (VTD_INV_G(q0)) {
    case VTD_INV_PIOTLB_G_PASID:
        vtd_iotlb_inv_pasid(p->vtd, did, pasid);
        return STEP_DONE;
    case VTD_INV_PIOTLB_G_PAGE:
        if (VTD_INV_AM(q1) > VTD_CAP_MAMV(p->vtd->cap))
            return bad(p, VTD_IQEI_RSVD);
        vtd_iotlb_inv_pasid_page(p->vtd, did, pasid, VTD_INV_ADDR(q1), VTD_INV_AM(q1),
                                 q1 & VTD_INV_IH);
        return STEP_DONE;
    }
    return bad(p, VTD_IQEI_RSVD);
}

static enum step do_pc(struct qi_pass *p)
{
    uint64_t q0 = p->d[0];
    unsigned g = VTD_INV_G(q0);
    if ((q0 & VTD_INV_PC_Q0_RSVD) || p->d[1])
        return bad(p, VTD_IQEI_RSVD);
    if (g != VTD_INV_PC_G_DOMAIN && g != VTD_INV_PC_G_PASID && g != VTD_INV_PC_G_GLOBAL)
        return bad(p, VTD_IQEI_RSVD);
    vtd_pasid_cache_inv(p->vtd, g, VTD_INV_DID(q0), (uint32_t)VTD_INV_PASID(q0));
    return STEP_DONE;
}

/* Page-group response: answers a page request; the unit makes none, so
 * there is nothing to answer.  qw2/qw3 carry software's private data. */
static enum step do_pgrp(struct qi_pass *p)
{
    if ((p->d[0] & VTD_INV_PGRP_Q0_RSVD) || (p->d[1] & VTD_INV_PGRP_Q1_RSVD))
        return bad(p, VTD_IQEI_RSVD);
    return STEP_DONE;
}

/* Invalidation wait (6.5.2.8). */
static enum step do_wait(struct qi_pass *p)
{
    struct vtio_vtd *vtd = p->vtd;
    uint64_t q0 = p->d[0], q1 = p->d[1];
    /* PD (page-request drain) is reserved: the unit has no page requests. */
    if ((q0 & (VTD_INV_WAIT_Q0_RSVD | VTD_INV_WAIT_PD)) || (q1 & 3))
        return bad(p, VTD_IQEI_RSVD);
    if (p->ite)
        return STEP_STOP;       /* aborted: waits on a timed-out invalidation */
    /* FN: the descriptors before this one have all taken effect.  Now the
     * DMA that began before them, and may hold what they removed. */
    vtd_inflight_drain(vtd);
    if (q0 & VTD_INV_WAIT_SW) {
        uint32_t data = (uint32_t)VTD_INV_WAIT_DATA(q0);
        if (vtd_write(vtd, VTD_INV_WAIT_ADDR(q1), &data, sizeof(data)) < 0)
            return bad(p, VTD_IQEI_NONE);
    }
    /* IF: ICS.IWC and the completion event; while IWC is still set from an
     * earlier wait, software has not serviced it and no new event is sent. */
    if ((q0 & VTD_INV_WAIT_IF) && !(vtd->ics & VTD_ICS_IWC)) {
        vtd->ics |= VTD_ICS_IWC;
        vtd_send_event(vtd, &vtd->iectl, vtd->iedata, vtd->ieaddr, vtd->ieuaddr);
    }
    VTD_COUNT(vtd, invalidation_waits);
    return STEP_DONE;
}

/* One descriptor: checks its type against the queue and the unit, then
 * runs it. */
static enum step step(struct qi_pass *p)
{
    struct vtio_vtd *vtd = p->vtd;
    unsigned type = VTD_INV_TYPE(p->d[0]);
    bool wide = type >= VTD_INV_DESC_PIOTLB;        /* 256-bit-only types */
    if (type == 0 || type > VTD_INV_DESC_PGRP)
        return bad(p, VTD_IQEI_INV_TYPE);
    if (wide && !p->dw)
        return bad(p, VTD_IQEI_DW_MISMATCH);
    if (((type == VTD_INV_DESC_DEVTLB || type == VTD_INV_DESC_PDEVTLB) &&
         !(vtd->ecap & VTD_ECAP_DT)) ||
        (type == VTD_INV_DESC_IEC && !(vtd->ecap & VTD_ECAP_IR)))
        return bad(p, VTD_IQEI_INV_TYPE);
    /* In a 256-bit queue the upper half is reserved, except for the
     * page-group response's private data. */
    if (p->dw && type != VTD_INV_DESC_PGRP && (p->d[2] || p->d[3]))
        return bad(p, VTD_IQEI_RSVD);

    switch (type) {
    case VTD_INV_DESC_CC:      return do_cc(p);
    case VTD_INV_DESC_IOTLB:   return do_iotlb(p);
    case VTD_INV_DESC_DEVTLB:  return do_devtlb(p);
    case VTD_INV_DESC_IEC:     return do_iec(p);
    case VTD_INV_DESC_WAIT:    return do_wait(p);
    case VTD_INV_DESC_PIOTLB:  return do_piotlb(p);
    case VTD_INV_DESC_PC:      return do_pc(p);
    case VTD_INV_DESC_PDEVTLB: return do_pdevtlb(p);
    default:                   return do_pgrp(p);
    }
}

/* ------------------------------------------------------------------------
 * The queue.
 */

void vtd_qi_process(struct vtio_vtd *vtd)
{
    if (!vtd_enabled(vtd, VTD_GSTS_QIES) || halted(vtd))
        return;
    struct qi_pass p = { .vtd = vtd };
    p.dw = (vtd->iqa & VTD_IQA_DW) && (vtd->ecap & VTD_ECAP_SMTS);
    uint64_t base = vtd->iqa & VTD_IQA_ADDR_MASK;
    uint64_t qsize = 4096ull << VTD_IQA_QS(vtd->iqa);
    unsigned dsize = p.dw ? 32 : 16;
    uint64_t head = vtd->iqh & VTD_IQ_OFF_MASK, tail = vtd->iqt & VTD_IQ_OFF_MASK;

    /* The tail must name a descriptor slot inside the queue. */
    if (p.dw && (tail & 16)) {
        queue_error(vtd, VTD_IQEI_DW_MISMATCH);
        return;
    }
    if (tail >= qsize || head >= qsize || (p.dw && (head & 16))) {
        queue_error(vtd, VTD_IQEI_BAD_TAIL);
        return;
    }
    for (uint64_t n = qsize / dsize; head != tail && n; n--) {
        memset(p.d, 0, sizeof(p.d));
        if (vtd_read(vtd, base + head, p.d, dsize) < 0) {
            queue_error(vtd, VTD_IQEI_NONE);
            return;
        }
        enum step s = step(&p);
        if (s == STEP_ERROR) {
            queue_error(vtd, p.iqei);
            return;
        }
        VTD_COUNT(vtd, qi_descriptors);
        head = (head + dsize) & (qsize - 1);
        vtd->iqh = head;
        if (s == STEP_STOP)
            return;
    }
}
