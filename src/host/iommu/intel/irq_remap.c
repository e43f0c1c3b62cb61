/*
 * Interrupt remapping: the VT-d driver's half of Linux's IR irq domain
 * (drivers/iommu/intel/irq_remapping.c).
 *
 * Enabling (intel_ir_enable, once per unit, after its invalidation queue is
 * up): a zeroed table of 65536 IRTEs (1 MiB from the page allocator) is
 * latched with IRTA (S = 15; EIME clear: firmware opts out of x2APIC, so
 * destinations are 8-bit xAPIC ids in DST[15:8]) and SIRTP, the interrupt
 * entry cache is emptied, IRE is set, and compatibility-format interrupts
 * are blocked (CFI clear): from then on a device can reach a CPU only
 * through an entry this file wrote for it.  Remapping that firmware left on
 * is turned off first, CFIS left set is cleared; both are logged.
 *
 * The hook (src/host/irq_remap.h).  The first unit that enables remapping
 * installs one per host in h->irq_remap; later units join it.  alloc picks
 * the unit whose DMAR scope lists the requester id, else the INCLUDE_PCI_ALL
 * unit, takes a free index from that unit's bitmap, writes the IRTE
 * (present, fixed delivery, physical destination = the cpu's APIC id, the
 * vector, SVT = 01 with SQ = 0 and SID = rid, so that only this requester
 * may use it), invalidates that index in the IEC and returns the
 * remappable-format message (SHV clear: the handle alone names the entry).
 * free clears the entry, invalidates it and gives the index back.
 *
 * Blocks, for multiple-message MSI (alloc_block): n = 2^k entries taken
 * together, aligned to n (so a block never straddles a bitmap word), their
 * high qwords written with the SID check at once and their low qwords left
 * not present; the message names the first entry with SHV set and data 0,
 * and the unit adds the data the function sends (its vector number) as the
 * subhandle.  set_entry fills the low qword of one entry (the SID stays in
 * the table, where the entry's owner is recorded anyway), clear_entry
 * empties it again, free releases the whole block.  A single entry is a
 * block of one that alloc fills at once.  Handles are
 * k << 24 | unit seq << 16 | index of the first entry.
 *
 * Entry writes: the high qword (SID) first and the low one (P) last on
 * allocation, P first on free, each with a release store, so the unit never
 * reads a present entry with a stale half; the IEC invalidation that follows
 * makes the change visible, and when it returns no message uses the old
 * entry.
 *
 * Lifetime.  The hook and each unit's remapping state stay allocated while
 * a handle is outstanding, even after intel_ir_disable: host shutdown may
 * turn the IOMMU off before PCI gives the last vectors back, and a late
 * free must only release the index (the table is gone; the unit is off).
 *
 * Threads: alloc and free may come from any thread; one mutex per hook
 * serialises them with enable and disable (IRQ setup is rare; the IEC
 * invalidation inside waits for the unit).  Lock order: hook lock, then the
 * unit's QI and register locks.
 */
#include "host/iommu/intel/intel_iommu.h"

#include <vtio/intr.h>
#include <vtio/page_alloc.h>

#include <errno.h>
#include <stdlib.h>

#include "util/error.h"

#define IRT_S          15u                        /* 2^(S+1) = 65536 entries */
#define IRT_ENTRIES    (2u << IRT_S)
#define IRT_BYTES      ((uint64_t)IRT_ENTRIES * 16)
#define IRT_ORDER      8u                         /* 1 MiB = 2^8 pages */
#define IRT_MAP_WORDS  (IRT_ENTRIES / 64)
#define HANDLE_UNIT_SHIFT 16
#define HANDLE_ORDER_SHIFT 24
#define BLOCK_MAX_ORDER 5u                        /* 32 entries: MSI's limit */

/* One unit's remapping state. */
struct intel_ir {
    struct intel_ir_hook *hook;
    struct intel_iommu *unit;          /* NULL once disabled */
    unsigned seq;
    uint64_t table_pa;                 /* 0 once disabled */
    uint64_t *table;                   /* 2 qwords per entry, direct map */
    uint64_t used[IRT_MAP_WORDS];      /* bit i: entry i allocated */
    unsigned n_used;
    unsigned next;                     /* where the next search starts */
};

/* The host's hook: the units that remap, and who still needs this. */
struct intel_ir_hook {
    struct vtio_irq_remap remap;       /* h->irq_remap points here */
    struct vtio_host *host;
    pthread_mutex_t lock;              /* everything here and in ir[] */
    struct intel_ir *ir[VTIO_DMAR_MAX_DRHD];   /* by unit seq */
    unsigned refs;                     /* units enabled + handles outstanding */
};

static const struct vtio_irq_remap_ops ir_ops;

/* ------------------------------------------------------------------------
 * Which unit serves a requester.
 */

static bool drhd_lists(const struct vtio_dmar_drhd *d, uint16_t rid)
{
    for (unsigned i = 0; i < d->n_scope && i < VTIO_DMAR_MAX_SCOPE; i++)
        if (d->scope[i] == rid)
            return true;
    return false;
}

/* As the DMAR table says: a unit that lists rid, else the one that takes
 * every function of the segment.  Hook lock held. */
static struct intel_ir *ir_for_rid(struct intel_ir_hook *k, uint16_t rid)
{
    struct intel_ir *catch_all = NULL;
    for (unsigned i = 0; i < VTIO_DMAR_MAX_DRHD; i++) {
        struct intel_ir *ir = k->ir[i];
        if (!ir || !ir->unit)
            continue;
        const struct vtio_dmar_drhd *d = ir->unit->drhd;
        if (!d || d->include_all) {
            if (!catch_all)
                catch_all = ir;
        } else if (drhd_lists(d, rid)) {
            return ir;
        }
    }
    return catch_all;
}

/* ------------------------------------------------------------------------
 * Index allocation.  Hook lock held.
 */

/* n free entries (a power of two up to 32) aligned to n; the first's index. */
static int index_take(struct intel_ir *ir, unsigned n)
{
    uint64_t run = (1ull << n) - 1;
    for (unsigned k = 0; k < IRT_MAP_WORDS; k++) {
        unsigned w = (ir->next / 64 + k) % IRT_MAP_WORDS;
        if (ir->used[w] == ~0ull)
            continue;
        for (unsigned bit = 0; bit < 64; bit += n) {
            if (ir->used[w] & run << bit)
                continue;
            ir->used[w] |= run << bit;
            ir->n_used += n;
            ir->next = (w * 64 + bit + n) % IRT_ENTRIES;
            return (int)(w * 64 + bit);
        }
    }
    return -ENOSPC;
}

static bool index_held(const struct intel_ir *ir, unsigned index)
{
    return index < IRT_ENTRIES && (ir->used[index / 64] >> (index % 64) & 1);
}

static void index_put(struct intel_ir *ir, unsigned index, unsigned n)
{
    ir->used[index / 64] &= ~(((1ull << n) - 1) << (index % 64));
    ir->n_used -= n;
}

/* ------------------------------------------------------------------------
 * Life cycle of the shared objects.  Hook lock held where noted.
 */

/* Drops one reference; frees a disabled unit's state without handles, and
 * the hook once nothing needs it.  Lock held; @returns true if the caller
 * must free the hook (after unlocking). */
static bool hook_put_locked(struct intel_ir_hook *k, struct intel_ir *ir)
{
    if (ir && !ir->unit && ir->n_used == 0) {
        k->ir[ir->seq] = NULL;
        free(ir);
    }
    return --k->refs == 0;
}

static void hook_free(struct intel_ir_hook *k)
{
    pthread_mutex_destroy(&k->lock);
    free(k);
}

/* The host's hook, created on first use.  NULL: -ENOMEM. */
static struct intel_ir_hook *hook_get(struct vtio_host *h)
{
    if (h->irq_remap && h->irq_remap->ops == &ir_ops)
        return h->irq_remap->ctx;
    struct intel_ir_hook *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    k->remap = (struct vtio_irq_remap){ .ops = &ir_ops, .ctx = k };
    k->host = h;
    pthread_mutex_init(&k->lock, NULL);
    return k;
}

/* ------------------------------------------------------------------------
 * Entries.
 */

/* The high qword: only requests from rid (SVT = 01, SQ = 0) may use it. */
static void irte_claim(struct intel_ir *ir, unsigned index, uint16_t rid)
{
    intel_store_entry(&ir->table[2 * index + 1],
                      rid | (uint64_t)VTD_IRTE_SVT_SID << VTD_IRTE_SVT_SHIFT);
}

/* The low qword of an entry already claimed, then the IEC invalidation. */
static void irte_target(struct intel_ir *ir, unsigned index, unsigned cpu, unsigned vector)
{
    uint64_t lo = VTD_IRTE_P | (uint64_t)vector << VTD_IRTE_V_SHIFT |
                  (uint64_t)(cpu & 0xff) << (VTD_IRTE_DST_SHIFT + 8);
    intel_store_entry(&ir->table[2 * index], lo);
    intel_flush_iec(ir->unit, false, index, 1);
}

/* Not present (P first), invalidated; `unclaim` also drops the SID. */
static void irte_clear(struct intel_ir *ir, unsigned index, unsigned n, bool unclaim)
{
    for (unsigned i = index; i < index + n; i++) {
        intel_store_entry(&ir->table[2 * i], 0);
        if (unclaim)
            intel_store_entry(&ir->table[2 * i + 1], 0);
    }
    intel_flush_iec(ir->unit, false, index, n);
}

static int check_target(unsigned cpu, unsigned vector)
{
    if (cpu > 0xff || vector < VTIO_INTR_FIRST_VECTOR || vector >= VTIO_INTR_VECTORS)
        return vtio_fail(-EINVAL, "irq remap: cpu %u / vector %u cannot be remapped", cpu,
                         vector);
    return 0;
}

/* A block of 2^order claimed entries for rid, none present; its handle and
 * the message that selects it.  Hook lock held. */
static int block_take_locked(struct intel_ir_hook *k, uint16_t rid, unsigned order,
                             struct intel_ir **out, uint64_t *addr, uint32_t *data)
{
    struct intel_ir *ir = ir_for_rid(k, rid);
    if (!ir)
        return vtio_fail(-ENODEV, "irq remap: no unit remaps interrupts of %02x:%02x.%u",
                         rid >> 8, (rid >> 3) & 0x1f, rid & 7);
    unsigned n = 1u << order;
    int rc = index_take(ir, n);
    if (rc < 0)
        return vtio_fail(-ENOSPC, "irq remap: %s: no %u free consecutive remapping entries",
                         ir->unit->name, n);
    unsigned index = (unsigned)rc;
    for (unsigned i = index; i < index + n; i++)
        irte_claim(ir, i, rid);
    k->refs++;
    *out = ir;
    *addr = VTIO_MSI_WINDOW_BASE | VTD_MSI_MAKE_HANDLE(index) | VTD_MSI_IF |
            (n > 1 ? VTD_MSI_SHV : 0);
    *data = 0;
    return (int)(order << HANDLE_ORDER_SHIFT | ir->seq << HANDLE_UNIT_SHIFT | index);
}

/* The block a handle names, if it is held: its unit's state, first index
 * and size.  Hook lock held. */
static struct intel_ir *block_of_locked(struct intel_ir_hook *k, int handle,
                                        unsigned *index, unsigned *n)
{
    unsigned order = (unsigned)handle >> HANDLE_ORDER_SHIFT;
    unsigned seq = ((unsigned)handle >> HANDLE_UNIT_SHIFT) & 0xff;
    *index = (unsigned)handle & (IRT_ENTRIES - 1);
    if (handle < 0 || order > BLOCK_MAX_ORDER || seq >= VTIO_DMAR_MAX_DRHD)
        return NULL;
    *n = 1u << order;
    struct intel_ir *ir = k->ir[seq];
    return ir && *index % *n == 0 && index_held(ir, *index) ? ir : NULL;
}

static int ir_alloc(void *ctx, uint16_t rid, unsigned cpu, unsigned vector, uint64_t *addr,
                    uint32_t *data)
{
    struct intel_ir_hook *k = ctx;
    int rc = check_target(cpu, vector);
    if (rc < 0 || !addr || !data)
        return rc < 0 ? rc : vtio_fail(-EINVAL, "irq remap: no message to fill");
    pthread_mutex_lock(&k->lock);
    struct intel_ir *ir = NULL;
    rc = block_take_locked(k, rid, 0, &ir, addr, data);
    if (rc >= 0)
        irte_target(ir, (unsigned)rc & (IRT_ENTRIES - 1), cpu, vector);
    pthread_mutex_unlock(&k->lock);
    return rc;
}

static int ir_alloc_block(void *ctx, uint16_t rid, unsigned n, uint64_t *addr,
                          uint32_t *data)
{
    struct intel_ir_hook *k = ctx;
    if (n == 0 || (n & (n - 1)) || n > 1u << BLOCK_MAX_ORDER || !addr || !data)
        return vtio_fail(-EINVAL, "irq remap: a block of %u entries (a power of two, "
                         "at most %u)", n, 1u << BLOCK_MAX_ORDER);
    pthread_mutex_lock(&k->lock);
    struct intel_ir *ir = NULL;
    int rc = block_take_locked(k, rid, (unsigned)__builtin_ctz(n), &ir, addr, data);
    pthread_mutex_unlock(&k->lock);
    return rc;
}

static int ir_set_entry(void *ctx, int handle, unsigned i, unsigned cpu, unsigned vector)
{
    struct intel_ir_hook *k = ctx;
    int rc = check_target(cpu, vector);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&k->lock);
    unsigned index, n;
    struct intel_ir *ir = block_of_locked(k, handle, &index, &n);
    if (!ir || !ir->unit || i >= n)
        rc = vtio_fail(-EINVAL, "irq remap: no entry %u in block %#x", i, (unsigned)handle);
    else
        irte_target(ir, index + i, cpu, vector);
    pthread_mutex_unlock(&k->lock);
    return rc;
}

static void ir_clear_entry(void *ctx, int handle, unsigned i)
{
    struct intel_ir_hook *k = ctx;
    pthread_mutex_lock(&k->lock);
    unsigned index, n;
    struct intel_ir *ir = block_of_locked(k, handle, &index, &n);
    if (ir && ir->unit && i < n)
        irte_clear(ir, index + i, 1, false);
    pthread_mutex_unlock(&k->lock);
}

static void ir_free(void *ctx, int handle)
{
    struct intel_ir_hook *k = ctx;
    pthread_mutex_lock(&k->lock);
    unsigned index, n;
    struct intel_ir *ir = block_of_locked(k, handle, &index, &n);
    bool last = false;
    if (ir) {
        if (ir->unit)
            irte_clear(ir, index, n, true);
        index_put(ir, index, n);
        last = hook_put_locked(k, ir);
    }
    pthread_mutex_unlock(&k->lock);
    if (last)
        hook_free(k);
}

static const struct vtio_irq_remap_ops ir_ops = {
    .alloc = ir_alloc,
    .free = ir_free,
    .alloc_block = ir_alloc_block,
    .set_entry = ir_set_entry,
    .clear_entry = ir_clear_entry,
};

/* ------------------------------------------------------------------------
 * Enable and disable.
 */

static uint32_t gsts(struct intel_iommu *u)
{
    return vtio_mmio_read32(&u->regs, VTD_GSTS_REG);
}

/* IRTA, SIRTP, IEC flush, IRE, CFI off.  @returns 0; -EIO. */
static int hw_enable(struct intel_iommu *u, struct intel_ir *ir)
{
    struct vtio_host *h = u->host;
    /* Looked at first: the next GCMD write (from a shadow without CFI)
     * already clears it. */
    if (gsts(u) & VTD_GSTS_CFIS)
        vtio_host_log(h, VTIO_LOG_WARN, "%s: compatibility-format interrupts were allowed "
                      "(CFIS set): blocking them", u->name);
    if (gsts(u) & VTD_GSTS_IRES) {
        vtio_host_log(h, VTIO_LOG_WARN, "%s: interrupt remapping was left on by firmware; "
                      "turning it off", u->name);
        if (intel_gcmd(u, VTD_GCMD_IRE, false) < 0)
            return -EIO;
    }
    vtio_mmio_write64(&u->regs, VTD_IRTA_REG, ir->table_pa | IRT_S);
    int rc = intel_gcmd(u, VTD_GCMD_SIRTP, true);
    if (rc == 0) {
        intel_flush_iec(u, true, 0, 0);
        rc = intel_gcmd(u, VTD_GCMD_IRE, true);
    }
    if (rc == 0 && (gsts(u) & VTD_GSTS_CFIS))
        rc = intel_gcmd(u, VTD_GCMD_CFI, false);
    if (rc == 0 && (gsts(u) & VTD_GSTS_CFIS))
        rc = vtio_fail(-EIO, "%s: compatibility-format interrupts still pass despite "
                       "remapping", u->name);
    if (rc < 0)
        (void)intel_gcmd(u, VTD_GCMD_IRE, false);
    return rc < 0 ? -EIO : 0;
}

static struct intel_ir *ir_create(struct intel_iommu *u, struct intel_ir_hook *k)
{
    struct intel_ir *ir = calloc(1, sizeof(*ir));
    if (!ir) {
        vtio_fail(-ENOMEM, "%s: out of memory", u->name);
        return NULL;
    }
    if (vtio_page_alloc(u->host->pages, IRT_ORDER, VTIO_PAGE_ZERO, &ir->table_pa) < 0) {
        vtio_fail(-ENOMEM, "%s: no 1 MiB for the interrupt remapping table", u->name);
        free(ir);
        return NULL;
    }
    ir->table = vtio_host_phys_to_virt(u->host, ir->table_pa);
    if (!ir->table) {
        vtio_fail(-EFAULT, "%s: the remapping table is outside the direct map", u->name);
        vtio_page_free(u->host->pages, ir->table_pa, IRT_ORDER);
        free(ir);
        return NULL;
    }
    ir->hook = k;
    ir->unit = u;
    ir->seq = u->seq;
    return ir;
}

static void ir_release_table(struct intel_ir *ir, struct vtio_host *h)
{
    vtio_page_free(h->pages, ir->table_pa, IRT_ORDER);
    ir->table_pa = 0;
    ir->table = NULL;
    ir->unit = NULL;
}

int intel_ir_enable(struct intel_iommu *u)
{
    if (!u || !u->host)
        return vtio_fail(-EINVAL, "irq remap: no unit");
    if (u->ir)
        return 0;
    if (!(u->ecap & VTD_ECAP_IR) || !u->qi)
        return vtio_fail(-ENODEV, "%s: no interrupt remapping (needs ECAP.IR and queued "
                         "invalidation)", u->name);
    if (u->seq >= VTIO_DMAR_MAX_DRHD)
        return vtio_fail(-EINVAL, "%s: unit number %u out of range", u->name, u->seq);
    struct vtio_host *h = u->host;
    struct intel_ir_hook *k = hook_get(h);
    if (!k)
        return vtio_fail(-ENOMEM, "%s: out of memory", u->name);

    pthread_mutex_lock(&k->lock);
    int rc = 0;
    struct intel_ir *ir = NULL;
    if (k->ir[u->seq])
        rc = vtio_fail(-EBUSY, "%s: handles of an earlier remapping table are still out",
                       u->name);
    else if (!(ir = ir_create(u, k)))
        rc = -ENOMEM;
    else if ((rc = hw_enable(u, ir)) < 0)
        ir_release_table(ir, h);
    if (rc == 0) {
        k->ir[u->seq] = ir;
        k->refs++;
        u->ir = ir;
        h->irq_remap = &k->remap;
    } else {
        free(ir);
    }
    bool unused = k->refs == 0;
    pthread_mutex_unlock(&k->lock);
    if (unused)
        hook_free(k);
    if (rc == 0)
        vtio_host_log(h, VTIO_LOG_INFO, "%s: interrupt remapping enabled (xAPIC mode)",
                      u->name);
    return rc;
}

void intel_ir_disable(struct intel_iommu *u)
{
    if (!u || !u->ir)
        return;
    struct intel_ir *ir = u->ir;
    struct intel_ir_hook *k = ir->hook;
    struct vtio_host *h = u->host;

    pthread_mutex_lock(&k->lock);
    (void)intel_gcmd(u, VTD_GCMD_IRE, false);     /* a unit that does not follow: no undo */
    if (h->irq_remap == &k->remap)
        h->irq_remap = NULL;
    ir_release_table(ir, h);
    u->ir = NULL;
    bool last = hook_put_locked(k, ir);
    pthread_mutex_unlock(&k->lock);
    if (last)
        hook_free(k);
}
