/*
 * dma_engine internals, shared by the register file (dma_engine.c) and the
 * channel executor (dma_engine_chan.c).
 *
 * Who touches what:
 *  - CPU threads run the MMIO callbacks (dma_engine.c): they write the
 *    control registers, ring the doorbell, and reset or pause channels.
 *  - Channel n's thread (dma_engine_chan.c) is the only one that fetches and
 *    executes channel n's descriptors and that advances HEAD, COMPLETED and
 *    BYTES.
 *
 * The "session" protocol between the two:
 *  - A channel thread works in sessions: under ch->lock it snapshots epoch,
 *    state, RING_BASE, RING_SIZE and HEAD, then, without the lock, fetches
 *    and executes descriptors while ch->epoch still equals its snapshot.
 *  - Around each batch (fetch, then for each descriptor: execute, completion
 *    record, HEAD/COMPLETED/BYTES, interrupt) it sets ch->busy and then
 *    re-checks ch->epoch (both seq_cst); between descriptors of the batch it
 *    re-checks the epoch and stops early if it moved.
 *  - Anything that must stop the channel (EN 1->0, RESET, a bad TAIL,
 *    destroy, FLR) brackets its work with stop_begin()/stop_end() in
 *    dma_engine.c, under ch->lock.  stop_begin() increments quiescers (no
 *    session opens while it is non-zero) and the epoch, then waits on
 *    idle_cv until busy is clear.  The seq_cst pair (busy store, epoch load)
 *    against (epoch increment, busy load) is a Dekker handshake: either the
 *    thread sees the new epoch and does not start, or the quiescer sees busy
 *    and waits for the descriptor to end.  Between the two calls the thread
 *    touches no register, so the caller may rewrite them freely; stop_end()
 *    kicks the thread so it opens a session afresh if there is one to open.
 *    A quiescer running on the channel's own thread (an interrupt handler)
 *    does not wait: its descriptor has retired, all but the busy flag.
 *  - Waking: every event the thread must notice (doorbell, enable, reset,
 *    destroy) increments ch->kick.  An idle thread spins on kick briefly,
 *    then sets ch->sleeping under ch->lock and waits on wake_cv while kick is
 *    unchanged.  An event increments kick (seq_cst) and signals wake_cv under
 *    the lock only if it sees sleeping (seq_cst): again either the thread
 *    sees the new kick before sleeping, or the event sees sleeping and its
 *    signal arrives after the thread is waiting (it holds the lock till then).
 *
 * Locks: ch->lock guards the writers of every channel register except those
 * the thread owns during a session (HEAD, COMPLETED, BYTES, busy), plus stop,
 * sleeping's transitions and both condition variables.  It is never held
 * across a DMA or an interrupt.  Registers are atomics so that MMIO reads
 * take no lock.
 */
#ifndef VTIO_HW_DEV_DMA_ENGINE_INTERNAL_H
#define VTIO_HW_DEV_DMA_ENGINE_INTERNAL_H

#include <vtio/dev/dma_engine.h>
#include <vtio/pci.h>

#include <pthread.h>
#include <stdatomic.h>

#define DMAE_VERSION       0x00010000u      /* 1.0 */
#define DMAE_MAX_RING_LOG2 16u
#define DMAE_DEFAULT_CHANNELS 4u
#define DMAE_INT_VEC_MASK  0x7ffu           /* an MSI-X table index */
#define DMAE_FLAGS_DEFINED (VTIO_DMAE_FLAG_INTR | VTIO_DMAE_FLAG_FENCE)

/* A byte range [lo, hi) for the COPY_SG overlap check. */
struct dmae_range {
    uint64_t lo, hi;
};

struct dmae_chan {
    struct vtio_dma_engine *eng;
    unsigned idx;
    pthread_t thread;
    bool started;

    pthread_mutex_t lock;
    pthread_cond_t wake_cv;          /* the thread sleeps here (kick unchanged) */
    pthread_cond_t idle_cv;          /* quiescers wait here for !busy */
    bool stop;                       /* lock: destroy asked the thread to exit */

    /* Registers.  Writers hold lock, except during a session the thread's
     * own head/completed/bytes; readers take no lock. */
    _Atomic uint64_t ring_base;
    _Atomic uint32_t ring_size;
    _Atomic uint32_t ctrl;           /* EN | IE (RESET always reads 0) */
    _Atomic uint32_t head, tail;
    _Atomic uint32_t state;          /* VTIO_DMAE_STATE_*; release after ERROR* */
    _Atomic uint32_t error, err_index;
    _Atomic uint64_t err_addr;
    _Atomic uint32_t int_vec;
    _Atomic uint64_t completed, bytes;

    /* The session and wake protocols (see the top of this file). */
    _Atomic uint32_t epoch;
    _Atomic uint32_t kick;
    _Atomic bool busy;               /* a descriptor is in progress */
    _Atomic bool sleeping;           /* the thread waits on wake_cv */
    _Atomic uint32_t quiescers;      /* stop_begin() callers not yet at stop_end() */

    /* Thread-private scratch, so the data path never allocates. */
    struct vtio_dmae_desc batch[VTIO_DMAE_PREFETCH];
    struct vtio_dmae_sg sg_src[VTIO_DMAE_MAX_SG], sg_dst[VTIO_DMAE_MAX_SG];
    struct dmae_range r_src[VTIO_DMAE_MAX_SG], r_dst[VTIO_DMAE_MAX_SG];
};

struct vtio_dma_engine {
    struct vtio_pci_dev *pci;
    struct vtio_dma_port *port;
    unsigned nchan;
    unsigned msi_vectors;            /* MSI capable: nchan rounded up to 2^k */
    struct dmae_chan *ch;            /* nchan entries, cache-line aligned */
};

/* dma_engine_chan.c */
/* The channel thread. */
void *vtio_dmae_chan_main(void *arg);
/* Raises the channel's interrupt if CTRL.IE is set: its MSI-X vector, or
 * with MSI-X off its MSI vector (vtio/dev/dma_engine.h).  No lock held. */
void vtio_dmae_chan_interrupt(struct dmae_chan *ch);
/* Records a halt: ERROR, ERR_INDEX, ERR_ADDR, then STATE = HALTED (so GSTS
 * shows it).  ch->lock held. */
void vtio_dmae_set_halt_locked(struct dmae_chan *ch, uint32_t err, uint32_t index,
                               uint64_t addr);

#endif
