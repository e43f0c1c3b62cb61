/*
 * The DMA engine driver.
 *
 * Each channel owns a ring of descriptors and a parallel array of completion
 * records, both in machine RAM; descriptor slot i always points at record i.
 * Cookies are sequence numbers: cookie c lives in slot (c - 1) % entries, and
 * the device echoes the cookie into the record, so a record proves which
 * descriptor it belongs to even after its slot has been reused.
 *
 * Ring accounting (all under ch->lock):
 *   reclaimed < c <= prepared   cookies in the ring, oldest first
 *   issued                      the last cookie the doorbell has announced
 * A slot is reused only after its record says the descriptor succeeded, so
 * the driver never overwrites a descriptor the device may still fetch.
 * Reclaiming copies the record aside (done[slot]), so a waiter that comes
 * after another thread's prep reclaimed its cookie still gets what the
 * device wrote (a compare's result, the byte count), until the slot's next
 * cookie is reclaimed in turn; after that only its success is known.
 *
 * Completion: the device writes the record's status word last, then raises
 * the channel's MSI-X vector.  The handler (on the device's thread) bumps a
 * counter and wakes sleepers; waiters spin on the record for a short while
 * first, which is what keeps the doorbell-to-completion latency low.
 */
#define _GNU_SOURCE
#include <vtio/device.h>
#include <vtio/dma.h>
#include <vtio/drv/dma_engine.h>
#include <vtio/host.h>
#include <vtio/mem.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/error.h"

#define SPIN_NS 50000        /* spin this long on a record before sleeping */
#define SG_BLOCK (2 * VTIO_DMAE_MAX_SG * sizeof(struct vtio_dmae_sg))   /* both lists */

/* A block of coherent memory: where the CPU and the device find it. */
struct coherent {
    uint64_t pa;
    vtio_dma_addr_t dma;
};

struct vtio_dmae_chan {
    struct vtio_dmae *dev;
    unsigned index;
    struct vtio_mmio regs;           /* this channel's register page */

    pthread_mutex_t lock;            /* serialises prep/issue/reset; guards: */
    unsigned entries;
    struct coherent ring, records;   /* descriptor ring, completion records */
    int64_t prepared, issued, reclaimed;
    struct coherent *sg;             /* per slot: SG list block (pa 0: none) */
    uint16_t *slot_flags;            /* per slot: the descriptor's flags */
    struct vtio_dmae_completion *done;   /* per slot: the record at reclaim */
    int64_t dropped_lo, dropped_hi;  /* (lo, hi]: cookies the last reset dropped */
    unsigned looks;                  /* incomplete looks, to pace STATUS reads */

    _Atomic(vtio_dmae_callback) callback;   /* called from the irq handler */
    _Atomic(void *) callback_arg;
    pthread_mutex_t irq_lock;        /* pairs with irq_cond for sleepers */
    pthread_cond_t irq_cond;
    _Atomic uint64_t irqs, sleeps;
};

struct vtio_dmae {
    struct vtio_host *host;
    const struct vtio_pci_function *fn;
    struct vtio_device *device;      /* for the DMA API */
    bool bound;
    struct vtio_mmio bar;            /* BAR0 */
    unsigned nchan;
    bool msix_on;
    struct vtio_dmae_chan chan[VTIO_DMAE_MAX_CHANNELS];
};

/* ------------------------------------------------------------------------
 * Memory the device reads and writes: coherent DMA memory from the DMA API.
 * The CPU writes it at its physical address; the device is given the DMA
 * address (an IOVA in a DMA domain, the physical address otherwise).
 */

static int coherent_alloc(struct vtio_dmae *dev, uint64_t size, struct coherent *c)
{
    vtio_dma_addr_t dma;
    void *cpu = vtio_dma_alloc_coherent(dev->device, size, &dma);
    if (!cpu)
        return -ENOMEM;        /* vtio_last_error() says why */
    vtio_host_virt_to_phys(dev->host, cpu, &c->pa);
    c->dma = dma;
    return 0;
}

static void coherent_free(struct vtio_dmae *dev, struct coherent *c, uint64_t size)
{
    if (c->pa)
        vtio_dma_free_coherent(dev->device, size, vtio_host_phys_to_virt(dev->host, c->pa),
                               c->dma);
    *c = (struct coherent){ 0 };
}

static struct vtio_mem *cpu_mem(struct vtio_dmae_chan *ch)
{
    return ch->dev->host->mem;
}

/* ------------------------------------------------------------------------
 * Records and reclaiming.
 */

static unsigned slot_of(const struct vtio_dmae_chan *ch, int64_t cookie)
{
    return (unsigned)((uint64_t)(cookie - 1) % ch->entries);
}

static uint64_t record_off(unsigned slot)
{
    return (uint64_t)slot * sizeof(struct vtio_dmae_completion);
}

/* Reads the record of cookie: 1 complete, 0 not yet (or not its record). */
static int read_record(struct vtio_dmae_chan *ch, int64_t cookie,
                       struct vtio_dmae_completion *rec)
{
    uint64_t pa = ch->records.pa + record_off(slot_of(ch, cookie));
    /* The status word is written last by the device; read it first. */
    rec->status = vtio_mem_read32(cpu_mem(ch), pa);
    if (rec->status == 0)
        return 0;
    vtio_mem_read(cpu_mem(ch), pa, rec, sizeof(*rec));
    return rec->cookie == (uint64_t)cookie;
}

static void release_slot(struct vtio_dmae_chan *ch, unsigned slot)
{
    coherent_free(ch->dev, &ch->sg[slot], SG_BLOCK);
}

/* Frees the slots of cookies that completed successfully, oldest first. */
static void reclaim(struct vtio_dmae_chan *ch)
{
    while (ch->reclaimed < ch->issued) {
        struct vtio_dmae_completion rec;
        int64_t c = ch->reclaimed + 1;
        if (!read_record(ch, c, &rec) || rec.status != VTIO_DMAE_STATUS_SUCCESS)
            break;
        ch->done[slot_of(ch, c)] = rec;
        release_slot(ch, slot_of(ch, c));
        ch->reclaimed = c;
    }
}

static bool halted(struct vtio_dmae_chan *ch)
{
    uint32_t st = vtio_mmio_read32(&ch->regs, VTIO_DMAE_STATUS);
    return VTIO_DMAE_STATUS_STATE(st) == VTIO_DMAE_STATE_HALTED;
}

/*
 * Whether the channel halted before reaching a cookie that is not complete.
 * Descriptors complete in order, so the oldest one in the ring tells, from
 * memory: its record holds an error.  Only a halt that wrote no record (the
 * descriptor itself could not be fetched) needs the STATUS register, and a
 * register read costs a bus round trip, so a poll loop makes it only every
 * STATUS_EVERY looks.  Called with ch->lock.
 */
#define STATUS_EVERY 64

static bool stuck(struct vtio_dmae_chan *ch)
{
    struct vtio_dmae_completion rec;
    if (ch->reclaimed < ch->issued && read_record(ch, ch->reclaimed + 1, &rec) &&
        rec.status != VTIO_DMAE_STATUS_SUCCESS)
        return true;
    return ++ch->looks % STATUS_EVERY == 0 && halted(ch);
}

/* ------------------------------------------------------------------------
 * Preparing and issuing.
 */

/* Claims the next slot and writes desc into it.  Called with ch->lock. */
static int64_t push(struct vtio_dmae_chan *ch, struct vtio_dmae_desc *desc, unsigned flags,
                    const struct coherent *sg_block)
{
    /* One slot stays empty: TAIL == HEAD means an empty ring to the device. */
    if (ch->prepared - ch->reclaimed >= ch->entries - 1)
        reclaim(ch);
    if (ch->prepared - ch->reclaimed >= ch->entries - 1)
        return vtio_fail(-EBUSY, "channel %u: ring full", ch->index);
    int64_t cookie = ++ch->prepared;
    unsigned slot = slot_of(ch, cookie);
    desc->op_flags |= (uint32_t)flags << 16;
    desc->completion = ch->records.dma + record_off(slot);
    desc->cookie = (uint64_t)cookie;
    if (sg_block)
        ch->sg[slot] = *sg_block;
    ch->slot_flags[slot] = (uint16_t)flags;
    /* The record must read "not done" before the device can see the slot. */
    vtio_mem_set(cpu_mem(ch), ch->records.pa + record_off(slot), 0,
                 sizeof(struct vtio_dmae_completion));
    vtio_mem_write(cpu_mem(ch), ch->ring.pa + (uint64_t)slot * sizeof(*desc), desc,
                   sizeof(*desc));
    return cookie;
}

static int64_t prep(struct vtio_dmae_chan *ch, uint32_t op, uint64_t src, uint64_t dst,
                    uint64_t len, unsigned flags)
{
    if (len == 0)
        return vtio_fail(-EINVAL, "zero-length transfer");
    if (flags & ~(unsigned)(VTIO_DMAE_FLAG_INTR | VTIO_DMAE_FLAG_FENCE))
        return vtio_fail(-EINVAL, "unknown descriptor flags %#x", flags);
    struct vtio_dmae_desc d = { .op_flags = op, .src = src, .dst = dst, .len = len };
    pthread_mutex_lock(&ch->lock);
    int64_t ret = stuck(ch) ? vtio_fail(-EIO, "channel %u is halted", ch->index)
                             : push(ch, &d, flags, NULL);
    pthread_mutex_unlock(&ch->lock);
    return ret;
}

int64_t vtio_dmae_prep_copy(struct vtio_dmae_chan *ch, uint64_t dst, uint64_t src,
                            uint64_t len, unsigned flags)
{
    return prep(ch, VTIO_DMAE_OP_COPY, src, dst, len, flags);
}

int64_t vtio_dmae_prep_fill(struct vtio_dmae_chan *ch, uint64_t dst, uint64_t pattern,
                            uint64_t len, unsigned flags)
{
    return prep(ch, VTIO_DMAE_OP_FILL, pattern, dst, len, flags);
}

int64_t vtio_dmae_prep_compare(struct vtio_dmae_chan *ch, uint64_t a, uint64_t b,
                               uint64_t len, unsigned flags)
{
    return prep(ch, VTIO_DMAE_OP_COMPARE, a, b, len, flags);
}

/* Writes a list of n segments at pa; returns its byte total. */
static uint64_t write_sg(struct vtio_dmae_chan *ch, uint64_t pa,
                         const struct vtio_dmae_seg *seg, unsigned n)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < n; i++) {
        struct vtio_dmae_sg e = { .addr = seg[i].addr, .len = seg[i].len };
        vtio_mem_write(cpu_mem(ch), pa + i * sizeof(e), &e, sizeof(e));
        total += seg[i].len;
    }
    return total;
}

static uint64_t seg_total(const struct vtio_dmae_seg *seg, unsigned n)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += seg[i].len;
    return total;
}

int64_t vtio_dmae_prep_copy_sg(struct vtio_dmae_chan *ch, const struct vtio_dmae_seg *dst,
                               unsigned ndst, const struct vtio_dmae_seg *src, unsigned nsrc,
                               unsigned flags)
{
    if (!ndst || !nsrc || ndst > VTIO_DMAE_MAX_SG || nsrc > VTIO_DMAE_MAX_SG)
        return vtio_fail(-EINVAL, "SG lists need 1..%d entries", VTIO_DMAE_MAX_SG);
    uint64_t total = seg_total(src, nsrc);
    if (total == 0 || total != seg_total(dst, ndst))
        return vtio_fail(-EINVAL, "SG lists are empty or of different lengths");
    if (flags & ~(unsigned)(VTIO_DMAE_FLAG_INTR | VTIO_DMAE_FLAG_FENCE))
        return vtio_fail(-EINVAL, "unknown descriptor flags %#x", flags);

    /* Both lists in one block: sources first, destinations at the half. */
    const uint64_t half = SG_BLOCK / 2;
    struct coherent block;
    int ret = coherent_alloc(ch->dev, SG_BLOCK, &block);
    if (ret < 0)
        return ret;
    write_sg(ch, block.pa, src, nsrc);
    write_sg(ch, block.pa + half, dst, ndst);
    struct vtio_dmae_desc d = {
        .op_flags = VTIO_DMAE_OP_COPY_SG, .src = block.dma, .dst = block.dma + half,
        .len = total,
        .src_sg_count = nsrc, .dst_sg_count = ndst,
    };
    pthread_mutex_lock(&ch->lock);
    int64_t cookie = stuck(ch) ? vtio_fail(-EIO, "channel %u is halted", ch->index)
                                : push(ch, &d, flags, &block);
    pthread_mutex_unlock(&ch->lock);
    if (cookie < 0)
        coherent_free(ch->dev, &block, SG_BLOCK);
    return cookie;
}

void vtio_dmae_issue(struct vtio_dmae_chan *ch)
{
    pthread_mutex_lock(&ch->lock);
    if (ch->issued != ch->prepared) {
        ch->issued = ch->prepared;
        /* The doorbell: everything written to the ring before it is visible
         * to the device once it sees the new tail. */
        vtio_mmio_write32(&ch->regs, VTIO_DMAE_TAIL,
                          (uint32_t)((uint64_t)ch->prepared % ch->entries));
    }
    pthread_mutex_unlock(&ch->lock);
}

/* ------------------------------------------------------------------------
 * Completion.
 */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void chan_irq(void *opaque, unsigned cpu, unsigned vector)
{
    struct vtio_dmae_chan *ch = opaque;
    (void)cpu, (void)vector;
    atomic_fetch_add_explicit(&ch->irqs, 1, memory_order_relaxed);
    vtio_dmae_callback cb = atomic_load_explicit(&ch->callback, memory_order_acquire);
    if (cb)
        cb(atomic_load_explicit(&ch->callback_arg, memory_order_relaxed), ch);
    pthread_mutex_lock(&ch->irq_lock);
    pthread_cond_broadcast(&ch->irq_cond);
    pthread_mutex_unlock(&ch->irq_lock);
}

/* One look at cookie: 0 done, -EIO failed (or stuck behind a failure),
 * -EAGAIN not yet. */
static int check_cookie(struct vtio_dmae_chan *ch, int64_t cookie,
                        struct vtio_dmae_completion *out)
{
    struct vtio_dmae_completion rec;
    memset(&rec, 0, sizeof(rec));
    pthread_mutex_lock(&ch->lock);
    int ret;
    if (cookie <= 0 || cookie > ch->issued) {
        ret = vtio_fail(-EINVAL, "cookie %lld was not issued on channel %u",
                        (long long)cookie, ch->index);
    } else if (cookie > ch->dropped_lo && cookie <= ch->dropped_hi) {
        ret = vtio_fail(-ECANCELED, "cookie %lld was dropped by a channel reset",
                        (long long)cookie);
    } else if (cookie <= ch->reclaimed) {
        rec = ch->done[slot_of(ch, cookie)];       /* its slot was reclaimed */
        if (rec.cookie != (uint64_t)cookie) {      /* ... and reclaimed again since */
            memset(&rec, 0, sizeof(rec));
            rec.status = VTIO_DMAE_STATUS_SUCCESS;
            rec.cookie = (uint64_t)cookie;
        }
        ret = 0;
    } else if (read_record(ch, cookie, &rec)) {
        ret = rec.status == VTIO_DMAE_STATUS_SUCCESS ? 0 : -EIO;
    } else if (!stuck(ch)) {
        ret = -EAGAIN;
    } else if (read_record(ch, cookie, &rec)) {
        /* The halt may have come after the first look: the device writes a
         * descriptor's record before it halts, so this one completed (or
         * is the one that failed) and its record says how. */
        ret = rec.status == VTIO_DMAE_STATUS_SUCCESS ? 0 : -EIO;
    } else {
        ret = -EIO;                                /* stuck behind the failure */
    }
    pthread_mutex_unlock(&ch->lock);
    if (ret == -EIO)
        vtio_fail(-EIO, "channel %u halted: %s", ch->index,
                  vtio_dmae_status_name(vtio_dmae_error(ch)));
    if (out && (ret == 0 || ret == -EIO))
        *out = rec;
    return ret;
}

int vtio_dmae_poll(struct vtio_dmae_chan *ch, int64_t cookie, struct vtio_dmae_completion *out)
{
    return check_cookie(ch, cookie, out);
}

int vtio_dmae_wait(struct vtio_dmae_chan *ch, int64_t cookie, uint64_t timeout_ns,
                   struct vtio_dmae_completion *out)
{
    uint64_t start = now_ns();
    uint64_t deadline = timeout_ns ? start + timeout_ns : UINT64_MAX;
    int ret;
    while ((ret = check_cookie(ch, cookie, out)) == -EAGAIN) {
        uint64_t t = now_ns();
        if (t >= deadline)
            return vtio_fail(-ETIMEDOUT, "cookie %lld not complete", (long long)cookie);
        if (t - start < SPIN_NS) {
            __builtin_ia32_pause();
            continue;
        }
        pthread_mutex_lock(&ch->lock);
        bool intr = ch->slot_flags[slot_of(ch, cookie)] & VTIO_DMAE_FLAG_INTR;
        pthread_mutex_unlock(&ch->lock);
        if (!intr) {
            sched_yield();      /* nothing will interrupt: keep polling, politely */
            continue;
        }
        /* Sleep until the next interrupt (or 10 ms, to notice a halt whose
         * interrupt was disabled).  The record is rechecked under irq_lock,
         * and the handler broadcasts under it, so no wakeup is lost. */
        pthread_mutex_lock(&ch->irq_lock);
        if (check_cookie(ch, cookie, NULL) == -EAGAIN) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 10000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            atomic_fetch_add_explicit(&ch->sleeps, 1, memory_order_relaxed);
            pthread_cond_timedwait(&ch->irq_cond, &ch->irq_lock, &ts);
        }
        pthread_mutex_unlock(&ch->irq_lock);
    }
    return ret;
}

uint32_t vtio_dmae_error(struct vtio_dmae_chan *ch)
{
    return vtio_mmio_read32(&ch->regs, VTIO_DMAE_ERROR);
}

/* Programs the ring into the (reset) channel and starts it. */
static void chan_start(struct vtio_dmae_chan *ch)
{
    vtio_mmio_write64(&ch->regs, VTIO_DMAE_RING_BASE, ch->ring.dma);
    vtio_mmio_write32(&ch->regs, VTIO_DMAE_RING_SIZE, ch->entries);
    vtio_mmio_write32(&ch->regs, VTIO_DMAE_INT_VEC, ch->index);
    vtio_mmio_write32(&ch->regs, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN | VTIO_DMAE_CTRL_IE);
}

int vtio_dmae_reset(struct vtio_dmae_chan *ch)
{
    pthread_mutex_lock(&ch->lock);
    reclaim(ch);                     /* what completed before the reset counts */
    vtio_mmio_write32(&ch->regs, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_RESET);
    for (int64_t c = ch->reclaimed + 1; c <= ch->prepared; c++)
        release_slot(ch, slot_of(ch, c));
    /* Cookies keep counting up, so old cookies stay distinguishable; the
     * ring restarts at slot 0, which is where the next cookie must land. */
    int64_t next = ch->prepared + 1;
    int64_t align = (int64_t)((uint64_t)(next - 1) % ch->entries);
    ch->dropped_lo = ch->reclaimed;
    ch->dropped_hi = ch->prepared;
    ch->prepared = ch->issued = ch->reclaimed = next - 1 + (align ? ch->entries - align : 0);
    chan_start(ch);
    pthread_mutex_unlock(&ch->lock);
    return 0;
}

void vtio_dmae_set_callback(struct vtio_dmae_chan *ch, vtio_dmae_callback fn, void *arg)
{
    atomic_store_explicit(&ch->callback_arg, arg, memory_order_relaxed);
    atomic_store_explicit(&ch->callback, fn, memory_order_release);
}

void vtio_dmae_chan_stats(struct vtio_dmae_chan *ch, struct vtio_dmae_chan_stats *st)
{
    pthread_mutex_lock(&ch->lock);
    st->submitted = (uint64_t)ch->issued;
    pthread_mutex_unlock(&ch->lock);
    st->completed = vtio_mmio_read64(&ch->regs, VTIO_DMAE_COMPLETED);
    st->interrupts = atomic_load(&ch->irqs);
    st->sleeps = atomic_load(&ch->sleeps);
}

/* ------------------------------------------------------------------------
 * Probe and remove.
 */

static int chan_init(struct vtio_dmae *dev, unsigned i, unsigned entries)
{
    struct vtio_dmae_chan *ch = &dev->chan[i];
    ch->dev = dev;
    ch->index = i;
    ch->entries = entries;
    ch->regs = (struct vtio_mmio){ dev->bar.mem, dev->bar.base + VTIO_DMAE_CHAN_BASE(i),
                                   0x1000 };
    pthread_mutex_init(&ch->lock, NULL);
    pthread_mutex_init(&ch->irq_lock, NULL);
    pthread_cond_init(&ch->irq_cond, NULL);
    ch->sg = calloc(entries, sizeof(*ch->sg));
    ch->slot_flags = calloc(entries, sizeof(*ch->slot_flags));
    ch->done = calloc(entries, sizeof(*ch->done));
    if (!ch->sg || !ch->slot_flags || !ch->done)
        return -ENOMEM;
    int ret = coherent_alloc(dev, (uint64_t)entries * sizeof(struct vtio_dmae_desc), &ch->ring);
    if (ret == 0)
        ret = coherent_alloc(dev, (uint64_t)entries * sizeof(struct vtio_dmae_completion),
                             &ch->records);
    return ret;
}

static void chan_fini(struct vtio_dmae_chan *ch)
{
    if (!ch->dev)
        return;
    if (ch->sg)
        for (unsigned s = 0; s < ch->entries; s++)
            release_slot(ch, s);
    coherent_free(ch->dev, &ch->ring, (uint64_t)ch->entries * sizeof(struct vtio_dmae_desc));
    coherent_free(ch->dev, &ch->records,
                  (uint64_t)ch->entries * sizeof(struct vtio_dmae_completion));
    free(ch->sg);
    free(ch->slot_flags);
    free(ch->done);
    pthread_cond_destroy(&ch->irq_cond);
    pthread_mutex_destroy(&ch->irq_lock);
    pthread_mutex_destroy(&ch->lock);
}

int vtio_dmae_probe(struct vtio_host *h, const struct vtio_pci_function *fn,
                    const struct vtio_dmae_config *cfg, struct vtio_dmae **out)
{
    if (fn->vendor_id != VTIO_DMAE_VENDOR_ID || fn->device_id != VTIO_DMAE_DEVICE_ID)
        return vtio_fail(-ENODEV, "%04x:%04x is not a vtio DMA engine", fn->vendor_id,
                         fn->device_id);
    unsigned entries = cfg && cfg->ring_entries ? cfg->ring_entries : 256;
    if (entries < 2 || entries > 4096 || (entries & (entries - 1)))
        return vtio_fail(-EINVAL, "ring of %u entries: need a power of two 2..4096", entries);
    unsigned bits = cfg && cfg->dma_bits ? cfg->dma_bits : 64;
    if (bits < 24 || bits > 64)
        return vtio_fail(-EINVAL, "%u DMA address bits: need 24..64", bits);

    struct vtio_dmae *dev = calloc(1, sizeof(*dev));
    if (!dev)
        return -ENOMEM;
    dev->host = h;
    dev->fn = fn;
    dev->device = vtio_host_device(h, fn);
    if (!dev->device) {
        free(dev);
        return vtio_fail(-ENODEV, "pci: function is not one of this host's");
    }
    int ret = vtio_device_bind(dev->device, "vtio-dmae");
    if (ret < 0) {
        free(dev);
        return ret;
    }
    dev->bound = true;
    /* The engine takes 64-bit addresses; a board may wire fewer. */
    ret = vtio_dma_set_mask_and_coherent(dev->device, VTIO_DMA_BIT_MASK(bits));
    if (ret == 0)
        ret = vtio_pci_bar_mmio(fn, VTIO_DMAE_BAR_REGS, &dev->bar);
    if (ret < 0)
        goto fail;
    vtio_mmio_write32(&dev->bar, VTIO_DMAE_GCTRL, VTIO_DMAE_GCTRL_RESET);
    dev->nchan = VTIO_DMAE_CAP_NCHAN(vtio_mmio_read32(&dev->bar, VTIO_DMAE_CAP));
    if (cfg && cfg->channels && cfg->channels < dev->nchan)
        dev->nchan = cfg->channels;
    if (dev->nchan == 0 || dev->nchan > VTIO_DMAE_MAX_CHANNELS) {
        ret = vtio_fail(-ENODEV, "engine reports %u channels", dev->nchan);
        goto fail;
    }
    for (unsigned i = 0; i < dev->nchan; i++)
        if ((ret = chan_init(dev, i, entries)) < 0)
            goto fail;
    if ((ret = vtio_pci_msix_enable(h, fn, dev->nchan)) < 0)
        goto fail;
    dev->msix_on = true;
    for (unsigned i = 0; i < dev->nchan; i++) {
        ret = vtio_pci_request_irq(h, fn, i, chan_irq, &dev->chan[i], i % h->fw.ncpus);
        if (ret < 0)
            goto fail;
    }
    vtio_pci_set_master(fn, true);
    for (unsigned i = 0; i < dev->nchan; i++)
        chan_start(&dev->chan[i]);
    *out = dev;
    return 0;
fail:
    vtio_dmae_remove(dev);
    return ret;
}

void vtio_dmae_remove(struct vtio_dmae *dev)
{
    if (!dev)
        return;
    if (dev->bar.mem)
        vtio_mmio_write32(&dev->bar, VTIO_DMAE_GCTRL, VTIO_DMAE_GCTRL_RESET);
    vtio_pci_set_master(dev->fn, false);
    if (dev->msix_on)
        vtio_pci_msix_disable(dev->host, dev->fn);    /* frees the vectors too */
    for (unsigned i = 0; i < VTIO_DMAE_MAX_CHANNELS; i++)
        chan_fini(&dev->chan[i]);
    if (dev->bound)
        vtio_device_unbind(dev->device);
    free(dev);
}

const struct vtio_pci_function *vtio_dmae_pci(const struct vtio_dmae *dev)
{
    return dev->fn;
}

unsigned vtio_dmae_channels(const struct vtio_dmae *dev)
{
    return dev->nchan;
}

struct vtio_dmae_chan *vtio_dmae_chan(struct vtio_dmae *dev, unsigned index)
{
    return index < dev->nchan ? &dev->chan[index] : NULL;
}
