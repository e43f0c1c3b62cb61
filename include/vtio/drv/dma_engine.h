/*
 * drv/dma_engine: the host driver for vtio's DMA engine.
 *
 * Like a Linux dmaengine driver: a client prepares descriptors on a channel
 * (each gets a cookie), issues them (one doorbell write for the batch), goes
 * on with other work, and waits for a cookie; the channel's MSI-X interrupt
 * wakes the waiter.  Every descriptor points at its own completion record,
 * so the driver learns what finished, and how, from memory the device wrote.
 *
 * Addresses given to the prep calls are DMA addresses, what the device will
 * put on the bus: with no IOMMU they are physical addresses; behind an IOMMU
 * they are IOVAs from the DMA mapping API.
 *
 * The driver binds to the function's device (include/vtio/device.h) and
 * sets its DMA mask; rings, completion records and SG lists are coherent
 * DMA memory (vtio_dma_alloc_coherent).  It reaches the device only through
 * its BAR0 registers, its completion records and its interrupts.
 *
 * Threads: the calls on one channel are serialised by the channel's lock, so
 * any thread may prep, issue and wait on any channel; different channels
 * never share a lock.  The interrupt handler takes no lock.
 */
#ifndef VTIO_DRV_DMA_ENGINE_H
#define VTIO_DRV_DMA_ENGINE_H

#include <vtio/common.h>
#include <vtio/dev/dma_engine.h>

struct vtio_host;
struct vtio_pci_function;
struct vtio_dmae;
struct vtio_dmae_chan;

struct vtio_dmae_config {
    unsigned ring_entries;    /* per channel, power of two 2..4096; 0 means 256 */
    unsigned channels;        /* how many to use; 0 means all the device has */
    unsigned dma_bits;        /* address bits the board wires, 24..64; 0 means 64
                                 (the DMA mask the driver sets) */
};

/* A scatter-gather entry for vtio_dmae_prep_copy_sg(). */
struct vtio_dmae_seg {
    uint64_t addr;
    uint32_t len;
};

/*
 * Takes over an engine: binds to its device, sets the DMA mask, resets it,
 * allocates rings and completion records, enables bus mastering and MSI-X
 * (one vector per channel), enables the channels.
 * @returns 0 and *out; -ENODEV not a vtio DMA engine; -EBUSY another driver
 * has the device; -ENOMEM; -EINVAL bad config; errors from MSI-X setup.
 */
VTIO_API int vtio_dmae_probe(struct vtio_host *h, const struct vtio_pci_function *fn,
                             const struct vtio_dmae_config *cfg, struct vtio_dmae **out);
/* Quiesces the engine (channels reset, interrupts freed, bus mastering off)
 * and frees everything.  No call may be in progress on any channel. */
VTIO_API void vtio_dmae_remove(struct vtio_dmae *dev);

VTIO_API unsigned vtio_dmae_channels(const struct vtio_dmae *dev);
/* The PCI function the driver took over. */
VTIO_API const struct vtio_pci_function *vtio_dmae_pci(const struct vtio_dmae *dev);
VTIO_API struct vtio_dmae_chan *vtio_dmae_chan(struct vtio_dmae *dev, unsigned index);

/*
 * Prepare one descriptor.  flags: VTIO_DMAE_FLAG_INTR (interrupt when it
 * completes; vtio_dmae_wait() sleeps only on such descriptors, else it
 * polls), VTIO_DMAE_FLAG_FENCE.
 * @returns a cookie (> 0) naming it; -EBUSY the ring is full: it holds
 * ring_entries - 1 descriptors not yet completed (wait for earlier work);
 * -EIO the channel is known to have halted (see vtio_dmae_reset()): the
 * driver learns it from the failed descriptor's completion record, or, for
 * a descriptor that could not even be fetched, from the STATUS register,
 * which it reads only every 64th look to keep register reads off the
 * polling path; -EINVAL len 0 or bad SG lists.
 */
VTIO_API int64_t vtio_dmae_prep_copy(struct vtio_dmae_chan *ch, uint64_t dst, uint64_t src,
                                     uint64_t len, unsigned flags);
VTIO_API int64_t vtio_dmae_prep_fill(struct vtio_dmae_chan *ch, uint64_t dst,
                                     uint64_t pattern, uint64_t len, unsigned flags);
VTIO_API int64_t vtio_dmae_prep_compare(struct vtio_dmae_chan *ch, uint64_t a, uint64_t b,
                                        uint64_t len, unsigned flags);
VTIO_API int64_t vtio_dmae_prep_copy_sg(struct vtio_dmae_chan *ch,
                                        const struct vtio_dmae_seg *dst, unsigned ndst,
                                        const struct vtio_dmae_seg *src, unsigned nsrc,
                                        unsigned flags);
/* Writes the doorbell for everything prepared so far. */
VTIO_API void vtio_dmae_issue(struct vtio_dmae_chan *ch);

/*
 * Waits until the descriptor `cookie` has completed (spinning briefly, then
 * sleeping until an interrupt) and copies its completion record to *out if
 * out is not NULL.  timeout_ns 0 waits for ever.
 * @returns 0 success; -EIO it (or an earlier descriptor) failed: the
 * channel halted, *out holds the record, vtio_dmae_error() says why;
 * -ECANCELED the last vtio_dmae_reset() dropped it; -ETIMEDOUT; -EINVAL a
 * cookie never issued on this channel.
 */
VTIO_API int vtio_dmae_wait(struct vtio_dmae_chan *ch, int64_t cookie, uint64_t timeout_ns,
                            struct vtio_dmae_completion *out);
/* Like vtio_dmae_wait() without waiting: -EAGAIN if not complete yet. */
VTIO_API int vtio_dmae_poll(struct vtio_dmae_chan *ch, int64_t cookie,
                            struct vtio_dmae_completion *out);

/* The channel's ERROR register (0 when running). */
VTIO_API uint32_t vtio_dmae_error(struct vtio_dmae_chan *ch);
/* Resets a (halted) channel: work not completed is dropped, the ring starts
 * again empty.  @returns 0. */
VTIO_API int vtio_dmae_reset(struct vtio_dmae_chan *ch);

/*
 * Calls fn(arg, ch) from the channel's interrupt handler, i.e. on the
 * device's thread each time the channel interrupts (a descriptor with
 * FLAG_INTR completed, or the channel halted).  Like a dmaengine callback it
 * must be short and must not call the driver back.  NULL removes it; a
 * call already running may still finish.
 */
typedef void (*vtio_dmae_callback)(void *arg, struct vtio_dmae_chan *ch);
VTIO_API void vtio_dmae_set_callback(struct vtio_dmae_chan *ch, vtio_dmae_callback fn,
                                     void *arg);

struct vtio_dmae_chan_stats {
    uint64_t submitted;    /* descriptors issued */
    uint64_t completed;    /* the COMPLETED register */
    uint64_t interrupts;   /* taken by the driver */
    uint64_t sleeps;       /* waits that had to sleep */
};
VTIO_API void vtio_dmae_chan_stats(struct vtio_dmae_chan *ch, struct vtio_dmae_chan_stats *st);

#endif
