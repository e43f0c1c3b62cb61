/*
 * dma_engine: the device's PCI face and register file, and its life cycle.
 *
 * The engine is one PCI function: BAR0 holds the registers (page 0 global,
 * page n + 1 channel n), BAR2 the MSI-X table and PBA, which the bus
 * emulates, as it does the MSI capability the engine also offers (for
 * software that uses MSI; MSI-X wins when both are enabled).  This file decodes register accesses on the CPU's thread and
 * turns them into channel state changes; dma_engine_chan.c runs the
 * channels.  The protocol between the two (sessions, epochs, the busy flag,
 * the kick counter) is described in dma_engine_internal.h.
 *
 * Register accesses: 4- and 8-byte, naturally aligned.  An 8-byte access to
 * a 64-bit register is atomic; elsewhere it is two 4-byte accesses, low
 * first.  1- and 2-byte reads return those bytes of the 32-bit register;
 * such writes are ignored.  Reserved bits and unused offsets read 0;
 * writes to them and to read-only registers are ignored.
 *
 * Locks: each channel's ch->lock serialises the register writes that change
 * its state (CTRL, ring registers, a TAIL write outside the fast path,
 * resets).  The doorbell fast path (channel running, TAIL in range) takes no
 * lock.  A write that stops a channel (EN 1->0, RESET, a bad TAIL) waits, in
 * stop_begin(), for the descriptor in progress to retire; that is why an
 * interrupt handler must not reset a channel other than its own (two
 * handlers doing so to each other's channel would wait on each other).
 * Interrupts are raised with no lock held.
 */
#include "hw/dev/dma_engine_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

/* ---- waking and stopping a channel thread */

/* Called after an event the thread must notice; ch->lock held or not. */
static void kick(struct dmae_chan *ch, bool locked)
{
    atomic_fetch_add(&ch->kick, 1);              /* seq_cst: Dekker with sleeping */
    if (atomic_load(&ch->sleeping)) {
        if (!locked)
            pthread_mutex_lock(&ch->lock);
        pthread_cond_signal(&ch->wake_cv);
        if (!locked)
            pthread_mutex_unlock(&ch->lock);
    }
}

/* Stops the channel's session after the descriptor in progress (waits for
 * it, unless called on the channel's own thread).  ch->lock held; it is
 * released while waiting. */
static void stop_begin(struct dmae_chan *ch)
{
    atomic_fetch_add(&ch->quiescers, 1);
    atomic_fetch_add(&ch->epoch, 1);             /* seq_cst: Dekker with begin() */
    if (ch->started && pthread_equal(pthread_self(), ch->thread))
        return;
    while (atomic_load(&ch->busy))
        pthread_cond_wait(&ch->idle_cv, &ch->lock);
}

static void stop_end(struct dmae_chan *ch)
{
    atomic_fetch_sub(&ch->quiescers, 1);
    kick(ch, true);
}

/* The RESET of a channel (power_on: also the registers RESET keeps). */
static void reset_locked(struct dmae_chan *ch, bool power_on)
{
    stop_begin(ch);
    atomic_store(&ch->head, 0);
    atomic_store(&ch->tail, 0);
    atomic_store(&ch->error, 0);
    atomic_store(&ch->err_index, 0);
    atomic_store(&ch->err_addr, 0);
    atomic_store(&ch->completed, 0);
    atomic_store(&ch->bytes, 0);
    atomic_store(&ch->ctrl, 0);
    atomic_store(&ch->state, VTIO_DMAE_STATE_IDLE);
    if (power_on) {
        atomic_store(&ch->ring_base, 0);
        atomic_store(&ch->ring_size, 0);
        atomic_store(&ch->int_vec, ch->idx);
    }
    stop_end(ch);
}

static void reset_all(struct vtio_dma_engine *eng, bool power_on)
{
    for (unsigned i = 0; i < eng->nchan; i++) {
        pthread_mutex_lock(&eng->ch[i].lock);
        reset_locked(&eng->ch[i], power_on);
        pthread_mutex_unlock(&eng->ch[i].lock);
    }
}

/* PCI Function Level Reset and bus reset: back to the power-on state. */
static void pci_reset(void *opaque)
{
    reset_all(opaque, true);
}

/* ---- channel register writes */

static bool ring_ok(uint64_t base, uint32_t size, uint32_t head, uint32_t tail)
{
    return !(base & 63) && size >= 2 && size <= (1u << DMAE_MAX_RING_LOG2) &&
           !(size & (size - 1)) && base <= UINT64_MAX - (uint64_t)size * 64 + 1 &&
           head < size && tail < size;
}

/* CTRL.EN 0->1.  @returns whether the channel halted (an interrupt is due). */
static bool enable_locked(struct dmae_chan *ch)
{
    if (atomic_load(&ch->state) != VTIO_DMAE_STATE_IDLE)
        return false;                            /* HALTED stays so until RESET */
    uint32_t head = atomic_load(&ch->head);
    if (!ring_ok(atomic_load(&ch->ring_base), atomic_load(&ch->ring_size), head,
                 atomic_load(&ch->tail))) {
        vtio_dmae_set_halt_locked(ch, VTIO_DMAE_ERR_RING, head, 0);
        return true;
    }
    atomic_store(&ch->state, VTIO_DMAE_STATE_RUNNING);
    kick(ch, true);
    return false;
}

static void write_ctrl(struct dmae_chan *ch, uint32_t v)
{
    bool irq = false;

    pthread_mutex_lock(&ch->lock);
    uint32_t old = atomic_load(&ch->ctrl);
    uint32_t val = v & (VTIO_DMAE_CTRL_EN | VTIO_DMAE_CTRL_IE);
    if (v & VTIO_DMAE_CTRL_RESET) {
        reset_locked(ch, false);                 /* the write's other bits are ignored */
    } else if ((old & VTIO_DMAE_CTRL_EN) && !(val & VTIO_DMAE_CTRL_EN)) {
        stop_begin(ch);                          /* pause after the current descriptor */
        atomic_store(&ch->ctrl, val);
        if (atomic_load(&ch->state) == VTIO_DMAE_STATE_RUNNING)
            atomic_store(&ch->state, VTIO_DMAE_STATE_IDLE);
        stop_end(ch);
    } else {
        atomic_store(&ch->ctrl, val);
        if (!(old & VTIO_DMAE_CTRL_EN) && (val & VTIO_DMAE_CTRL_EN))
            irq = enable_locked(ch);
    }
    pthread_mutex_unlock(&ch->lock);
    if (irq)
        vtio_dmae_chan_interrupt(ch);
}

/* The doorbell. */
static void write_tail(struct dmae_chan *ch, uint32_t v)
{
    /* Fast path, no lock: running and in range.  Release: the thread that
     * acquires the new TAIL sees the descriptors written before the doorbell. */
    if (atomic_load(&ch->state) == VTIO_DMAE_STATE_RUNNING && v < atomic_load(&ch->ring_size)) {
        atomic_store_explicit(&ch->tail, v, memory_order_release);
        kick(ch, false);
        return;
    }

    bool irq = false;
    pthread_mutex_lock(&ch->lock);
    switch (atomic_load(&ch->state)) {
    case VTIO_DMAE_STATE_IDLE:                   /* checked when EN is set */
        atomic_store(&ch->tail, v);
        break;
    case VTIO_DMAE_STATE_RUNNING:
        if (v < atomic_load(&ch->ring_size)) {
            atomic_store_explicit(&ch->tail, v, memory_order_release);
            kick(ch, true);
            break;
        }
        stop_begin(ch);                          /* TAIL >= RING_SIZE: halt */
        if (atomic_load(&ch->state) == VTIO_DMAE_STATE_RUNNING) {
            vtio_dmae_set_halt_locked(ch, VTIO_DMAE_ERR_RING, atomic_load(&ch->head), 0);
            irq = true;
        }
        stop_end(ch);
        break;
    default:                                     /* HALTED: doorbells are ignored */
        break;
    }
    pthread_mutex_unlock(&ch->lock);
    if (irq)
        vtio_dmae_chan_interrupt(ch);
}

/* RING_BASE (either half or whole) and RING_SIZE: ignored while CTRL.EN. */
static void write_ring(struct dmae_chan *ch, unsigned reg, uint64_t v, unsigned size)
{
    pthread_mutex_lock(&ch->lock);
    if (!(atomic_load(&ch->ctrl) & VTIO_DMAE_CTRL_EN)) {
        uint64_t base = atomic_load(&ch->ring_base);
        if (reg == VTIO_DMAE_RING_SIZE)
            atomic_store(&ch->ring_size, (uint32_t)v);
        else if (size == 8)
            atomic_store(&ch->ring_base, v);
        else if (reg == VTIO_DMAE_RING_BASE)
            atomic_store(&ch->ring_base, (base & ~0xffffffffull) | (uint32_t)v);
        else
            atomic_store(&ch->ring_base, (base & 0xffffffffull) | v << 32);
    }
    pthread_mutex_unlock(&ch->lock);
}

static void chan_write32(struct dmae_chan *ch, unsigned reg, uint32_t v)
{
    switch (reg) {
    case VTIO_DMAE_RING_BASE:
    case VTIO_DMAE_RING_BASE + 4:
    case VTIO_DMAE_RING_SIZE:
        write_ring(ch, reg, v, 4);
        break;
    case VTIO_DMAE_CTRL:
        write_ctrl(ch, v);
        break;
    case VTIO_DMAE_TAIL:
        write_tail(ch, v);
        break;
    case VTIO_DMAE_INT_VEC:
        atomic_store(&ch->int_vec, v & DMAE_INT_VEC_MASK);
        break;
    default:                                     /* read-only or reserved */
        break;
    }
}

/* ---- register reads */

static uint64_t chan_read64(struct dmae_chan *ch, unsigned reg)
{
    switch (reg) {
    case VTIO_DMAE_RING_BASE: return atomic_load(&ch->ring_base);
    case VTIO_DMAE_COMPLETED: return atomic_load_explicit(&ch->completed, memory_order_acquire);
    case VTIO_DMAE_BYTES:     return atomic_load_explicit(&ch->bytes, memory_order_acquire);
    case VTIO_DMAE_ERR_ADDR:  return atomic_load(&ch->err_addr);
    }
    return 0;
}

static bool is_reg64(unsigned reg)
{
    return reg == VTIO_DMAE_RING_BASE || reg == VTIO_DMAE_COMPLETED ||
           reg == VTIO_DMAE_BYTES || reg == VTIO_DMAE_ERR_ADDR;
}

static uint32_t chan_read32(struct dmae_chan *ch, unsigned reg)
{
    if (is_reg64(reg & ~7u))
        return (uint32_t)(chan_read64(ch, reg & ~7u) >> (reg & 4 ? 32 : 0));
    switch (reg) {
    case VTIO_DMAE_RING_SIZE: return atomic_load(&ch->ring_size);
    case VTIO_DMAE_CTRL:      return atomic_load(&ch->ctrl);
    case VTIO_DMAE_HEAD:      return atomic_load_explicit(&ch->head, memory_order_acquire);
    case VTIO_DMAE_TAIL:      return atomic_load(&ch->tail);
    case VTIO_DMAE_STATUS:
        return atomic_load_explicit(&ch->state, memory_order_acquire) |
               (atomic_load(&ch->busy) ? VTIO_DMAE_STATUS_BUSY : 0);
    case VTIO_DMAE_ERROR:     return atomic_load(&ch->error);
    case VTIO_DMAE_ERR_INDEX: return atomic_load(&ch->err_index);
    case VTIO_DMAE_INT_VEC:   return atomic_load(&ch->int_vec);
    }
    return 0;
}

static uint32_t global_read32(struct vtio_dma_engine *eng, unsigned reg)
{
    uint32_t v = 0;
    switch (reg) {
    case VTIO_DMAE_ID:
        return (uint32_t)VTIO_DMAE_VENDOR_ID << 16 | VTIO_DMAE_DEVICE_ID;
    case VTIO_DMAE_VERSION:
        return DMAE_VERSION;
    case VTIO_DMAE_CAP:
        return eng->nchan | VTIO_DMAE_PREFETCH << 8 | DMAE_MAX_RING_LOG2 << 16;
    case VTIO_DMAE_GSTS:
        for (unsigned i = 0; i < eng->nchan; i++)
            if (atomic_load(&eng->ch[i].state) == VTIO_DMAE_STATE_HALTED)
                v |= 1u << i;
        return v;
    }
    return 0;                                    /* GCTRL.RESET reads 0 */
}

/* ---- MMIO dispatch */

/* The channel whose page holds off, or NULL for page 0 and unused pages. */
static struct dmae_chan *chan_at(struct vtio_dma_engine *eng, uint64_t off)
{
    uint64_t page = off >> 12;
    return page >= 1 && page <= eng->nchan ? &eng->ch[page - 1] : NULL;
}

static uint32_t read32(struct vtio_dma_engine *eng, uint64_t off)
{
    struct dmae_chan *ch = chan_at(eng, off);
    if (ch)
        return chan_read32(ch, off & 0xfff);
    return off < 0x1000 ? global_read32(eng, (unsigned)off) : 0;
}

static void write32(struct vtio_dma_engine *eng, uint64_t off, uint32_t v)
{
    struct dmae_chan *ch = chan_at(eng, off);
    if (ch)
        chan_write32(ch, off & 0xfff, v);
    else if (off == VTIO_DMAE_GCTRL && (v & VTIO_DMAE_GCTRL_RESET))
        reset_all(eng, false);
}

static uint64_t regs_read(void *opaque, uint64_t off, unsigned size)
{
    struct vtio_dma_engine *eng = opaque;
    struct dmae_chan *ch = chan_at(eng, off);

    if (size == 8) {
        if (ch && is_reg64(off & 0xfff))
            return chan_read64(ch, off & 0xfff);
        return read32(eng, off) | (uint64_t)read32(eng, off + 4) << 32;
    }
    uint32_t v = read32(eng, off & ~3ull);
    if (size == 4)
        return v;
    return (v >> (off & 3) * 8) & (size == 2 ? 0xffff : 0xff);
}

static void regs_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct vtio_dma_engine *eng = opaque;
    struct dmae_chan *ch = chan_at(eng, off);

    if (size == 8) {
        if (ch && (off & 0xfff) == VTIO_DMAE_RING_BASE) {
            write_ring(ch, VTIO_DMAE_RING_BASE, val, 8);
        } else {
            write32(eng, off, (uint32_t)val);
            write32(eng, off + 4, (uint32_t)(val >> 32));
        }
    } else if (size == 4) {
        write32(eng, off, (uint32_t)val);
    }
}

static const struct vtio_mmio_ops regs_ops = {
    .read = regs_read,
    .write = regs_write,
};

/* ---- life cycle */

static void stop_threads(struct vtio_dma_engine *eng)
{
    for (unsigned i = 0; i < eng->nchan; i++) {
        struct dmae_chan *ch = &eng->ch[i];
        if (!ch->started)
            continue;
        pthread_mutex_lock(&ch->lock);
        stop_begin(ch);                          /* finish the descriptor in progress */
        ch->stop = true;
        stop_end(ch);
        pthread_mutex_unlock(&ch->lock);
    }
    for (unsigned i = 0; i < eng->nchan; i++)
        if (eng->ch[i].started)
            pthread_join(eng->ch[i].thread, NULL);
}

static void free_engine(struct vtio_dma_engine *eng)
{
    for (unsigned i = 0; i < eng->nchan; i++) {
        pthread_cond_destroy(&eng->ch[i].idle_cv);
        pthread_cond_destroy(&eng->ch[i].wake_cv);
        pthread_mutex_destroy(&eng->ch[i].lock);
    }
    free(eng->ch);
    free(eng);
}

int vtio_dma_engine_create(struct vtio_pci_bus *bus, uint8_t busno, uint8_t devfn,
                           const struct vtio_dma_engine_config *cfg,
                           struct vtio_dma_engine **out)
{
    unsigned nchan = cfg && cfg->channels ? cfg->channels : DMAE_DEFAULT_CHANNELS;
    if (!bus || !out)
        return vtio_fail(-EINVAL, "dma_engine: no bus or no result pointer");
    if (nchan > VTIO_DMAE_MAX_CHANNELS)
        return vtio_fail(-EINVAL, "dma_engine: %u channels (1..%u)", nchan,
                         VTIO_DMAE_MAX_CHANNELS);

    struct vtio_dma_engine *eng = calloc(1, sizeof(*eng));
    size_t chsize = (nchan * sizeof(struct dmae_chan) + 63) & ~(size_t)63;
    struct dmae_chan *chs = eng ? aligned_alloc(64, chsize) : NULL;
    if (!chs) {
        free(eng);
        return vtio_fail(-ENOMEM, "dma_engine: out of memory");
    }
    memset(chs, 0, chsize);
    eng->ch = chs;
    eng->nchan = nchan;
    eng->msi_vectors = VTIO_DMAE_MSI_VECTORS(nchan);
    for (unsigned i = 0; i < nchan; i++) {
        struct dmae_chan *ch = &chs[i];
        ch->eng = eng;
        ch->idx = i;
        atomic_init(&ch->int_vec, i);
        atomic_init(&ch->state, VTIO_DMAE_STATE_IDLE);
        pthread_mutex_init(&ch->lock, NULL);
        pthread_cond_init(&ch->wake_cv, NULL);
        pthread_cond_init(&ch->idle_cv, NULL);
    }

    /* Threads first: they sleep until the function's registers (which do
     * not exist yet) enable a channel, and a function, once plugged, cannot
     * be unplugged if a thread then failed to start. */
    int r = 0;
    for (unsigned i = 0; i < nchan && !r; i++) {
        r = -pthread_create(&chs[i].thread, NULL, vtio_dmae_chan_main, &chs[i]);
        chs[i].started = !r;
    }
    if (r) {
        stop_threads(eng);
        free_engine(eng);
        return vtio_fail(r == -ENOMEM ? -ENOMEM : -EAGAIN,
                         "dma_engine: cannot start a channel thread");
    }

    struct vtio_pci_dev_info info = {
        .name = "dma-engine",
        .vendor_id = VTIO_DMAE_VENDOR_ID,
        .device_id = VTIO_DMAE_DEVICE_ID,
        .subsystem_vendor_id = VTIO_DMAE_VENDOR_ID,
        .subsystem_id = VTIO_DMAE_DEVICE_ID,
        .class_code = VTIO_DMAE_CLASS,
        .revision = VTIO_DMAE_REVISION,
        .bar[VTIO_DMAE_BAR_REGS] = { .size = VTIO_DMAE_REGS_SIZE, .is_64bit = true,
                                     .ops = &regs_ops, .opaque = eng },
        .bar[VTIO_DMAE_BAR_MSIX] = { .size = VTIO_DMAE_MSIX_SIZE, .is_64bit = true },
        .msi_vectors = eng->msi_vectors,
        .msix_vectors = nchan,
        .msix_bar = VTIO_DMAE_BAR_MSIX,
        .msix_table_offset = VTIO_DMAE_MSIX_TABLE,
        .msix_pba_offset = VTIO_DMAE_MSIX_PBA,
        .reset = pci_reset,
        .opaque = eng,
    };
    r = vtio_pci_dev_create(bus, busno, devfn, &info, &eng->pci);
    if (r) {
        stop_threads(eng);
        free_engine(eng);
        return r;
    }
    eng->port = vtio_pci_dev_dma_port(eng->pci);
    *out = eng;
    return 0;
}

void vtio_dma_engine_destroy(struct vtio_dma_engine *eng)
{
    if (!eng)
        return;
    stop_threads(eng);
    free_engine(eng);
}

struct vtio_pci_dev *vtio_dma_engine_pci(struct vtio_dma_engine *eng)
{
    return eng->pci;
}

const char *vtio_dmae_status_name(uint32_t status)
{
    switch (status) {
    case 0:                          return "pending";
    case VTIO_DMAE_STATUS_SUCCESS:   return "success";
    case VTIO_DMAE_ERR_OPCODE:       return "bad-opcode";
    case VTIO_DMAE_ERR_LENGTH:       return "bad-length";
    case VTIO_DMAE_ERR_OVERLAP:      return "overlap";
    case VTIO_DMAE_ERR_RESERVED:     return "reserved";
    case VTIO_DMAE_ERR_SG:           return "bad-sg";
    case VTIO_DMAE_ERR_DESC_FETCH:   return "desc-fetch";
    case VTIO_DMAE_ERR_SRC_FAULT:    return "src-fault";
    case VTIO_DMAE_ERR_DST_FAULT:    return "dst-fault";
    case VTIO_DMAE_ERR_SG_FETCH:     return "sg-fetch";
    case VTIO_DMAE_ERR_COMPLETION:   return "completion";
    case VTIO_DMAE_ERR_RING:         return "ring";
    }
    return "unknown";
}
