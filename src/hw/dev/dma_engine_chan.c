/*
 * dma_engine channel executor: the thread behind each channel.
 *
 * A channel thread waits for work (spinning briefly, then sleeping), fetches
 * descriptors from its ring by DMA in batches, and executes them one by one:
 * format checks, a check that the completion record is writable, then the
 * data movement, the completion record (status last), HEAD/COMPLETED/BYTES,
 * and the interrupt.  Every byte a descriptor names is checked before the
 * first one moves (by the port itself for the one-call operations, by us for
 * each COPY_SG entry), so a descriptor that fails leaves memory untouched,
 * unless software changes mappings while it runs, which no check foresees.
 *
 * Invariants (the protocol is described in dma_engine_internal.h):
 *  - Only this thread writes HEAD, COMPLETED and BYTES while a session is
 *    open, and only between begin() and end() with the session's epoch
 *    still current when begin() returned true; every DMA and interrupt of
 *    the channel also happens inside begin()/end().
 *  - The data path takes no lock and allocates nothing: descriptors, SG lists
 *    and the overlap-check scratch live in struct dmae_chan.  ch->lock is
 *    taken per session, for a halt, and to wake a quiescer.
 *  - Every loop over guest-controlled memory is bounded: a batch is at most
 *    VTIO_DMAE_PREFETCH descriptors, an SG list at most VTIO_DMAE_MAX_SG
 *    entries, a fault search at most 64 bisection steps.
 */
#include "hw/dev/dma_engine_internal.h"

#include <vtio/dma_port.h>
#include <vtio/intr.h>

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "descriptors are little-endian and read as host structs");

/* How long an idle channel polls for a doorbell before it yields, then
 * sleeps: long enough to cover a driver's turnaround between an interrupt
 * and its next doorbell, short enough not to steal a core. */
#define SPIN_NS    30000u
#define SPIN_YIELDS 4

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- interrupts and halts */

void vtio_dmae_chan_interrupt(struct dmae_chan *ch)
{
    if (!(atomic_load(&ch->ctrl) & VTIO_DMAE_CTRL_IE))
        return;
    struct vtio_dma_engine *eng = ch->eng;
    uint32_t vec = atomic_load(&ch->int_vec);
    /* MSI-X disabled (-ENODEV): MSI, whose vector number must be below
     * what software enabled; the bus folds it further to Multiple Message
     * Enable (INT_VEC & (enabled - 1)), this fold keeps it below what the
     * capability offers. */
    if (vtio_pci_msix_notify(eng->pci, vec) == -ENODEV)
        vtio_pci_msi_notify(eng->pci, vec & (eng->msi_vectors - 1));
    /* Any other error (vector out of range, MSI disabled too, BME clear)
     * means the message is lost, as on hardware. */
}

void vtio_dmae_set_halt_locked(struct dmae_chan *ch, uint32_t err, uint32_t index,
                               uint64_t addr)
{
    if (atomic_load(&ch->state) == VTIO_DMAE_STATE_HALTED)
        return;                                  /* the first error stays */
    atomic_store(&ch->error, err);
    atomic_store(&ch->err_index, index);
    atomic_store(&ch->err_addr, addr);
    /* Release: whoever sees HALTED sees the error registers. */
    atomic_store_explicit(&ch->state, VTIO_DMAE_STATE_HALTED, memory_order_release);
}

/* ---- the busy section (see dma_engine_internal.h) */

static void end(struct dmae_chan *ch)
{
    atomic_store(&ch->busy, false);              /* seq_cst: Dekker with quiescers */
    if (atomic_load(&ch->quiescers)) {
        pthread_mutex_lock(&ch->lock);
        pthread_cond_broadcast(&ch->idle_cv);
        pthread_mutex_unlock(&ch->lock);
    }
}

/* @returns false (busy clear again) if the session is over. */
static bool begin(struct dmae_chan *ch, uint32_t epoch)
{
    atomic_store(&ch->busy, true);               /* seq_cst: Dekker with stop_begin() */
    if (atomic_load(&ch->epoch) == epoch)
        return true;
    end(ch);                                     /* a stop_begin() may have seen busy */
    return false;
}

/* ---- faults */

/*
 * The first address of [addr, addr + len) that the port refuses.  The port
 * stops translating at the first refused page, so an IOMMU sees the fault
 * once more, as for a retried request.  A range that runs past the top of
 * the address space faults at 0 if everything below the top is accessible.
 */
static uint64_t first_fault(struct vtio_dma_port *port, uint64_t addr, uint64_t len,
                            enum vtio_dma_access acc)
{
    bool wraps = addr && len > -addr;
    if (wraps)
        len = -addr;                             /* the bytes below 2^64 */
    uint64_t fault;
    if (vtio_dma_find_fault(port, addr, len, acc, &fault) == 0)
        return wraps ? 0 : addr;                 /* (or the mapping came back) */
    return fault;
}

/* The outcome of one descriptor: what its completion record says. */
struct outcome {
    uint32_t status;
    uint32_t result;          /* COMPARE: 1 if different */
    uint64_t bytes;           /* completion record's bytes field */
    uint64_t moved;           /* what the BYTES register counts */
    uint64_t addr;            /* faulting address */
};

static bool fail(struct outcome *o, uint32_t status, uint64_t addr)
{
    o->status = status;
    o->addr = addr;
    return false;
}

/* [a, a + alen) and [b, b + blen) share a byte (ends saturate at 2^64). */
static uint64_t range_end(uint64_t a, uint64_t len)
{
    return a + len < a ? UINT64_MAX : a + len;
}

static bool overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < range_end(b, blen) && b < range_end(a, alen);
}

/* Whether the port would access [addr, addr + len); if not, the fault goes
 * to o (the port's write check also refuses the interrupt window). */
static bool access_ok(struct vtio_dma_port *port, uint64_t addr, uint64_t len,
                      enum vtio_dma_access acc, uint32_t err, struct outcome *o)
{
    if (vtio_dma_check(port, addr, len, acc) == 0)
        return true;
    return fail(o, err, first_fault(port, addr, len, acc));
}

/* ---- format checks: no memory is touched */

static uint32_t check_format(const struct vtio_dmae_desc *d)
{
    uint32_t op = d->op_flags & 0xff;
    uint32_t flags = d->op_flags >> 16;

    if (op > VTIO_DMAE_OP_COPY_SG)
        return VTIO_DMAE_ERR_OPCODE;
    if ((d->op_flags & 0xff00) || (flags & ~DMAE_FLAGS_DEFINED) || d->reserved0 ||
        d->reserved1 || (d->completion & 31))
        return VTIO_DMAE_ERR_RESERVED;
    if (op != VTIO_DMAE_OP_COPY_SG && (d->src_sg_count || d->dst_sg_count))
        return VTIO_DMAE_ERR_RESERVED;
    if (op == VTIO_DMAE_OP_NOP) {
        if (d->src || d->dst)
            return VTIO_DMAE_ERR_RESERVED;
        return d->len ? VTIO_DMAE_ERR_LENGTH : VTIO_DMAE_STATUS_SUCCESS;
    }
    if (d->len == 0 || d->len > VTIO_DMAE_MAX_LEN)
        return VTIO_DMAE_ERR_LENGTH;
    if (op == VTIO_DMAE_OP_COPY && overlap(d->src, d->len, d->dst, d->len))
        return VTIO_DMAE_ERR_OVERLAP;
    if (op == VTIO_DMAE_OP_COPY_SG &&
        (d->src_sg_count - 1 >= VTIO_DMAE_MAX_SG || d->dst_sg_count - 1 >= VTIO_DMAE_MAX_SG ||
         (d->src & 15) || (d->dst & 15)))
        return VTIO_DMAE_ERR_SG;
    return VTIO_DMAE_STATUS_SUCCESS;
}

/* ---- operations: check every byte, then move them
 *
 * COPY, FILL and COMPARE make one port call, and the port checks the whole
 * of every range before it moves a byte (dma_port.h), so that call is the
 * check: a fault leaves memory untouched, and only then do we look for the
 * side and the first address that failed.  COPY_SG needs a call per piece,
 * so it checks every entry of both lists first.
 */

static bool completion_ok(struct vtio_dma_port *port, const struct vtio_dmae_desc *d,
                          struct outcome *o)
{
    return !d->completion ||
           access_ok(port, d->completion, sizeof(struct vtio_dmae_completion),
                     VTIO_DMA_WRITE, VTIO_DMAE_ERR_COMPLETION, o);
}

/* A two-range transfer failed: blame the source if it faults, else the
 * destination (also when neither faults any more: a mapping that came back,
 * or a destination the port refuses to write, such as the MSI window). */
static bool blame(struct vtio_dma_port *port, uint64_t src, enum vtio_dma_access sacc,
                  uint64_t dst, enum vtio_dma_access dacc, uint64_t len, struct outcome *o)
{
    if (access_ok(port, src, len, sacc, VTIO_DMAE_ERR_SRC_FAULT, o) &&
        access_ok(port, dst, len, dacc, VTIO_DMAE_ERR_DST_FAULT, o))
        fail(o, VTIO_DMAE_ERR_DST_FAULT, dst);
    return false;
}

static bool op_copy(struct vtio_dma_port *port, const struct vtio_dmae_desc *d,
                    struct outcome *o)
{
    /* One call: the port copies RAM to RAM directly, at memcpy speed. */
    if (vtio_dma_copy(port, d->dst, d->src, d->len, NULL))
        return blame(port, d->src, VTIO_DMA_READ, d->dst, VTIO_DMA_WRITE, d->len, o);
    o->bytes = o->moved = d->len;
    return true;
}

static bool op_fill(struct vtio_dma_port *port, const struct vtio_dmae_desc *d,
                    struct outcome *o)
{
    if (vtio_dma_fill(port, d->dst, d->src, d->len)) {
        if (access_ok(port, d->dst, d->len, VTIO_DMA_WRITE, VTIO_DMAE_ERR_DST_FAULT, o))
            fail(o, VTIO_DMAE_ERR_DST_FAULT, d->dst);    /* (as in blame()) */
        return false;
    }
    o->bytes = o->moved = d->len;
    return true;
}

static bool op_compare(struct vtio_dma_port *port, const struct vtio_dmae_desc *d,
                       struct outcome *o)
{
    uint64_t diff = 0;
    if (vtio_dma_compare(port, d->src, d->dst, d->len, &diff))
        return blame(port, d->src, VTIO_DMA_READ, d->dst, VTIO_DMA_READ, d->len, o);
    o->result = diff < d->len;
    o->bytes = diff;
    o->moved = d->len;
    return true;
}

static int range_cmp(const void *a, const void *b)
{
    const struct dmae_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Whether any destination byte is also a source byte: both lists sorted by
 * start, then one merge-like sweep (n log n for n <= 256 entries). */
static bool sg_overlap(struct dmae_chan *ch, unsigned ns, unsigned nd)
{
    for (unsigned i = 0; i < ns; i++)
        ch->r_src[i] = (struct dmae_range){ ch->sg_src[i].addr,
                                            range_end(ch->sg_src[i].addr, ch->sg_src[i].len) };
    for (unsigned i = 0; i < nd; i++)
        ch->r_dst[i] = (struct dmae_range){ ch->sg_dst[i].addr,
                                            range_end(ch->sg_dst[i].addr, ch->sg_dst[i].len) };
    qsort(ch->r_src, ns, sizeof(ch->r_src[0]), range_cmp);
    qsort(ch->r_dst, nd, sizeof(ch->r_dst[0]), range_cmp);
    /* A range passed over ends before every later range of the other list
     * begins, so it cannot overlap any of them. */
    for (unsigned i = 0, j = 0; i < ns && j < nd;) {
        if (ch->r_src[i].hi <= ch->r_dst[j].lo)
            i++;
        else if (ch->r_dst[j].hi <= ch->r_src[i].lo)
            j++;
        else
            return true;
    }
    return false;
}

/* Reads an SG list and checks its entries; the total length goes to *total. */
static bool sg_load(struct vtio_dma_port *port, uint64_t list, unsigned n,
                    struct vtio_dmae_sg *sg, uint64_t *total, struct outcome *o)
{
    size_t size = (size_t)n * sizeof(*sg);
    if (vtio_dma_read(port, list, sg, size))
        return fail(o, VTIO_DMAE_ERR_SG_FETCH, first_fault(port, list, size, VTIO_DMA_READ));
    *total = 0;
    for (unsigned i = 0; i < n; i++) {
        if (sg[i].reserved)
            return fail(o, VTIO_DMAE_ERR_RESERVED, 0);
        if (sg[i].len == 0)
            return fail(o, VTIO_DMAE_ERR_SG, 0);
        *total += sg[i].len;                     /* <= 256 * 2^32: no overflow */
    }
    return true;
}

static bool op_copy_sg(struct dmae_chan *ch, struct vtio_dma_port *port,
                       const struct vtio_dmae_desc *d, struct outcome *o)
{
    unsigned ns = d->src_sg_count, nd = d->dst_sg_count;
    struct vtio_dmae_sg *s = ch->sg_src, *t = ch->sg_dst;
    uint64_t stotal, dtotal;

    if (!sg_load(port, d->src, ns, s, &stotal, o) || !sg_load(port, d->dst, nd, t, &dtotal, o))
        return false;
    if (stotal != d->len || dtotal != d->len)
        return fail(o, VTIO_DMAE_ERR_SG, 0);
    if (sg_overlap(ch, ns, nd))
        return fail(o, VTIO_DMAE_ERR_OVERLAP, 0);
    for (unsigned i = 0; i < ns; i++)
        if (!access_ok(port, s[i].addr, s[i].len, VTIO_DMA_READ, VTIO_DMAE_ERR_SRC_FAULT, o))
            return false;
    for (unsigned i = 0; i < nd; i++)
        if (!access_ok(port, t[i].addr, t[i].len, VTIO_DMA_WRITE, VTIO_DMAE_ERR_DST_FAULT, o))
            return false;

    /* Walk both lists at once; each piece lies inside one entry of each. */
    unsigned i = 0, j = 0;
    uint64_t soff = 0, doff = 0;
    for (uint64_t left = d->len; left;) {
        uint64_t n = s[i].len - soff;
        if (n > t[j].len - doff)
            n = t[j].len - doff;
        if (vtio_dma_copy(port, t[j].addr + doff, s[i].addr + soff, n, NULL))
            return blame(port, s[i].addr + soff, VTIO_DMA_READ, t[j].addr + doff,
                         VTIO_DMA_WRITE, n, o);
        left -= n;
        if ((soff += n) == s[i].len)
            i++, soff = 0;
        if ((doff += n) == t[j].len)
            j++, doff = 0;
    }
    o->bytes = o->moved = d->len;
    return true;
}

static void execute(struct dmae_chan *ch, const struct vtio_dmae_desc *d, struct outcome *o)
{
    struct vtio_dma_port *port = ch->eng->port;

    *o = (struct outcome){ .status = check_format(d) };
    if (o->status != VTIO_DMAE_STATUS_SUCCESS || !completion_ok(port, d, o))
        return;
    switch (d->op_flags & 0xff) {
    case VTIO_DMAE_OP_NOP:     break;
    case VTIO_DMAE_OP_COPY:    op_copy(port, d, o); break;
    case VTIO_DMAE_OP_FILL:    op_fill(port, d, o); break;
    case VTIO_DMAE_OP_COMPARE: op_compare(port, d, o); break;
    case VTIO_DMAE_OP_COPY_SG: op_copy_sg(ch, port, d, o); break;
    }
}

/* ---- completion */

/* Writes the record: everything but status first, then status as one
 * aligned 4-byte write, which the port orders after the rest. */
static int write_completion(struct vtio_dma_port *port, const struct vtio_dmae_desc *d,
                            const struct outcome *o)
{
    struct vtio_dmae_completion c = {
        .status = o->status, .result = o->result, .bytes = o->bytes,
        .fault_addr = o->addr, .cookie = d->cookie,
    };
    int r = vtio_dma_write(port, d->completion + 4, (const char *)&c + 4, sizeof(c) - 4);
    return r ? r : vtio_dma_write(port, d->completion, &c.status, 4);
}

/* Halts the channel with o's error at ring index `index`.  d (NULL for a
 * descriptor that could not be fetched) gets an error completion record if
 * its record address is valid and writable. */
static void halt(struct dmae_chan *ch, const struct vtio_dmae_desc *d, uint32_t index,
                 const struct outcome *o)
{
    struct vtio_dma_port *port = ch->eng->port;

    if (d && d->completion && !(d->completion & 31) && o->status != VTIO_DMAE_ERR_COMPLETION &&
        completion_ok(port, d, &(struct outcome){ 0 }))
        write_completion(port, d, o);            /* result and bytes are 0 */
    pthread_mutex_lock(&ch->lock);
    vtio_dmae_set_halt_locked(ch, o->status, index, o->addr);
    pthread_mutex_unlock(&ch->lock);
    vtio_dmae_chan_interrupt(ch);
}

/* Executes and retires the descriptor at ring index `index`.
 * @returns false if the channel halted. */
static bool run_one(struct dmae_chan *ch, const struct vtio_dmae_desc *d, uint32_t index,
                    uint32_t size)
{
    struct vtio_dma_port *port = ch->eng->port;
    struct outcome o;

    execute(ch, d, &o);
    if (o.status == VTIO_DMAE_STATUS_SUCCESS && d->completion &&
        write_completion(port, d, &o)) {
        o.status = VTIO_DMAE_ERR_COMPLETION;
        o.addr = first_fault(port, d->completion, sizeof(struct vtio_dmae_completion),
                             VTIO_DMA_WRITE);
    }
    if (o.status != VTIO_DMAE_STATUS_SUCCESS) {
        halt(ch, d, index, &o);
        return false;
    }
    /* Release: software that sees HEAD past this descriptor sees its data
     * and its completion record. */
    atomic_store_explicit(&ch->head, (index + 1) & (size - 1), memory_order_release);
    atomic_fetch_add_explicit(&ch->completed, 1, memory_order_release);
    atomic_fetch_add_explicit(&ch->bytes, o.moved, memory_order_release);
    if ((d->op_flags >> 16) & VTIO_DMAE_FLAG_INTR)
        vtio_dmae_chan_interrupt(ch);
    return true;
}

/* ---- fetching */

/*
 * Reads n descriptors from ring index idx on (wrapping at the end of the
 * ring) into ch->batch.  If a read fails, the descriptors are read one by
 * one so that those before the unreadable one still run.
 * @returns how many were read; on a short count *fault is the first
 * unreadable address.
 */
static unsigned fetch(struct dmae_chan *ch, uint64_t base, uint32_t size, uint32_t idx,
                      unsigned n, uint64_t *fault)
{
    struct vtio_dma_port *port = ch->eng->port;
    const size_t dsz = sizeof(struct vtio_dmae_desc);
    unsigned first = size - idx < n ? size - idx : n;

    if (vtio_dma_read(port, base + idx * dsz, ch->batch, first * dsz) == 0 &&
        (first == n || vtio_dma_read(port, base, ch->batch + first, (n - first) * dsz) == 0))
        return n;
    for (unsigned i = 0; i < n; i++) {
        uint64_t a = base + ((idx + i) & (size - 1)) * dsz;
        if (vtio_dma_read(port, a, &ch->batch[i], dsz)) {
            *fault = first_fault(port, a, dsz, VTIO_DMA_READ);
            return i;
        }
    }
    return n;                 /* the mapping came back between the reads */
}

/* ---- sessions */

enum session_end { SESSION_IDLE, SESSION_OVER };

/*
 * Runs the channel while the epoch stays `epoch`: a batch at a time, up to
 * TAIL, stopping after a FENCE descriptor so that what follows it is read
 * only once it has completed.
 * @returns SESSION_IDLE when HEAD caught up with TAIL (*seen is the kick
 * count read before TAIL); SESSION_OVER when the channel halted or the
 * epoch moved on.
 */
static enum session_end run_session(struct dmae_chan *ch, uint32_t epoch, uint64_t base,
                                    uint32_t size, uint32_t head, uint32_t *seen)
{
    for (;;) {
        *seen = atomic_load(&ch->kick);
        uint32_t tail = atomic_load_explicit(&ch->tail, memory_order_acquire);
        if (tail == head)                        /* (a stale session must not sleep) */
            return atomic_load(&ch->epoch) == epoch ? SESSION_IDLE : SESSION_OVER;
        if (!begin(ch, epoch))
            return SESSION_OVER;
        if (tail >= size) {
            /* Only software racing CTRL against TAIL gets here: the
             * doorbell refuses a bad TAIL while the channel runs. */
            halt(ch, NULL, head, &(struct outcome){ .status = VTIO_DMAE_ERR_RING });
            end(ch);
            return SESSION_OVER;
        }

        unsigned avail = (tail - head) & (size - 1);
        unsigned n = avail < VTIO_DMAE_PREFETCH ? avail : VTIO_DMAE_PREFETCH;
        uint64_t fault = 0;
        unsigned got = fetch(ch, base, size, head, n, &fault);
        unsigned run = got;
        for (unsigned i = 0; i < got; i++)
            if ((ch->batch[i].op_flags >> 16) & VTIO_DMAE_FLAG_FENCE) {
                run = i + 1;                     /* the rest is fetched again later */
                break;
            }

        for (unsigned i = 0; i < run; i++) {
            if ((i && atomic_load(&ch->epoch) != epoch) ||
                !run_one(ch, &ch->batch[i], head, size)) {
                end(ch);
                return SESSION_OVER;
            }
            head = (head + 1) & (size - 1);
        }
        if (run == got && got < n) {
            halt(ch, NULL, head,
                 &(struct outcome){ .status = VTIO_DMAE_ERR_DESC_FETCH, .addr = fault });
            end(ch);
            return SESSION_OVER;
        }
        end(ch);
    }
}

/* Waits until ch->kick differs from seen (or destroy): polls for SPIN_NS if
 * asked, yields a few times, then sleeps on wake_cv. */
static void idle_wait(struct dmae_chan *ch, uint32_t seen, bool spin)
{
    if (spin) {
        uint64_t t0 = now_ns();
        for (unsigned i = 1;; i++) {
            if (atomic_load_explicit(&ch->kick, memory_order_acquire) != seen)
                return;
            cpu_relax();
            if (!(i & 63) && now_ns() - t0 > SPIN_NS)
                break;
        }
        for (int i = 0; i < SPIN_YIELDS; i++) {
            sched_yield();
            if (atomic_load_explicit(&ch->kick, memory_order_acquire) != seen)
                return;
        }
    }
    pthread_mutex_lock(&ch->lock);
    atomic_store(&ch->sleeping, true);           /* seq_cst: Dekker with the kick */
    while (atomic_load(&ch->kick) == seen && !ch->stop)
        pthread_cond_wait(&ch->wake_cv, &ch->lock);
    atomic_store(&ch->sleeping, false);
    pthread_mutex_unlock(&ch->lock);
}

void *vtio_dmae_chan_main(void *arg)
{
    struct dmae_chan *ch = arg;

    for (;;) {
        uint32_t seen = atomic_load(&ch->kick);
        pthread_mutex_lock(&ch->lock);
        if (ch->stop) {
            pthread_mutex_unlock(&ch->lock);
            return NULL;
        }
        uint32_t epoch = atomic_load(&ch->epoch);
        /* While a stop is under way no session opens; its end kicks us. */
        uint32_t state = atomic_load(&ch->quiescers) ? VTIO_DMAE_STATE_IDLE
                                                     : atomic_load(&ch->state);
        uint64_t base = atomic_load(&ch->ring_base);
        uint32_t size = atomic_load(&ch->ring_size);
        uint32_t head = atomic_load(&ch->head);
        pthread_mutex_unlock(&ch->lock);

        if (state != VTIO_DMAE_STATE_RUNNING)
            idle_wait(ch, seen, false);
        else if (run_session(ch, epoch, base, size, head, &seen) == SESSION_IDLE)
            idle_wait(ch, seen, true);
        /* SESSION_OVER: open the next session at once; whatever ended this
         * one may already have been followed by its kick. */
    }
}
