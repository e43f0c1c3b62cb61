/*
 * dma_engine: a PCI DMA controller with independent channels.
 *
 * This header is the device's datasheet in C: its identity, register map,
 * descriptor and completion formats and error codes, which drivers use, and
 * the call that plugs the model into a machine.  docs/dma-engine.md says the
 * same in prose.  All in-memory structures are little-endian.
 *
 * Model: each channel has a descriptor ring in memory, fetched by DMA, and
 * its own thread, so the CPU goes on working while a channel moves data.
 * Software writes descriptors, then the ring index one past the last into
 * TAIL (the doorbell).  The channel fetches descriptors in batches of up to
 * VTIO_DMAE_PREFETCH (never past TAIL or past a FENCE descriptor), executes
 * each, writes its completion record, advances HEAD, and raises its
 * interrupt if asked.  A descriptor the channel cannot execute halts it with
 * an error code until software resets it; nothing outside the descriptor's
 * named buffers is ever written.
 *
 * Interrupts: the function has both an MSI-X capability (one table entry
 * per channel, BAR2) and an MSI capability (64-bit address, per-vector
 * mask and pending bits, Multiple Message Capable = the channel count
 * rounded up to a power of two, VTIO_DMAE_MSI_VECTORS()).  A channel raises
 * MSI-X vector INT_VEC when MSI-X is enabled; otherwise, when MSI is
 * enabled, MSI vector INT_VEC & (k - 1), k the vectors software enabled
 * (Multiple Message Enable): the PCI spec lets a function change only the
 * low log2(k) bits of the message data, so with fewer vectors than channels
 * channels share vectors (with k = 1 all use vector 0).  With neither
 * enabled the interrupt is lost.
 */
#ifndef VTIO_DEV_DMA_ENGINE_H
#define VTIO_DEV_DMA_ENGINE_H

#include <vtio/common.h>

struct vtio_pci_bus;
struct vtio_dma_engine;

/* ---- PCI identity */
#define VTIO_DMAE_VENDOR_ID   0x5654      /* "VT": not PCI-SIG assigned, a model */
#define VTIO_DMAE_DEVICE_ID   0xd3a0
#define VTIO_DMAE_CLASS       0x088000    /* system peripheral, other (as IOAT/DSA) */
#define VTIO_DMAE_REVISION    1
#define VTIO_DMAE_MAX_CHANNELS 8
#define VTIO_DMAE_PREFETCH    8           /* descriptors fetched per batch */
/* MSI vectors the function offers with `channels` channels. */
#define VTIO_DMAE_MSI_VECTORS(channels) \
    ((channels) <= 1 ? 1u : (channels) <= 2 ? 2u : (channels) <= 4 ? 4u : 8u)

/* ---- BARs: BAR0 (64-bit) registers, BAR2 (64-bit) MSI-X table and PBA */
#define VTIO_DMAE_BAR_REGS    0
#define VTIO_DMAE_BAR_MSIX    2
#define VTIO_DMAE_REGS_SIZE   0x10000     /* page 0 global, page n+1 channel n */
#define VTIO_DMAE_MSIX_SIZE   0x4000
#define VTIO_DMAE_MSIX_TABLE  0x0000
#define VTIO_DMAE_MSIX_PBA    0x2000

/* ---- global registers (BAR0 page 0) */
#define VTIO_DMAE_ID          0x000   /* RO32: vendor << 16 | device */
#define VTIO_DMAE_VERSION     0x004   /* RO32: major << 16 | minor (1.0) */
#define VTIO_DMAE_CAP         0x008   /* RO32 */
#define  VTIO_DMAE_CAP_NCHAN(c)      ((c) & 0xff)          /* channels */
#define  VTIO_DMAE_CAP_PREFETCH(c)   (((c) >> 8) & 0xff)   /* batch size */
#define  VTIO_DMAE_CAP_MAX_RING_LOG2(c) (((c) >> 16) & 0x1f)
#define VTIO_DMAE_GCTRL       0x00c   /* RW32 */
#define  VTIO_DMAE_GCTRL_RESET 0x1    /* resets every channel (self-clearing) */
#define VTIO_DMAE_GSTS        0x010   /* RO32: bit n = channel n halted */

/* ---- channel registers: at VTIO_DMAE_CHAN_BASE(n) */
#define VTIO_DMAE_CHAN_BASE(n) (0x1000u * ((n) + 1))
#define VTIO_DMAE_RING_BASE   0x00    /* RW64: ring address, 64-byte aligned */
#define VTIO_DMAE_RING_SIZE   0x08    /* RW32: entries, power of two, 2..65536 */
#define VTIO_DMAE_CTRL        0x0c    /* RW32 */
#define  VTIO_DMAE_CTRL_EN    0x1     /* run: ring registers are checked on 0->1 */
#define  VTIO_DMAE_CTRL_RESET 0x2     /* W1: stop, clear state (self-clearing) */
#define  VTIO_DMAE_CTRL_IE    0x4     /* interrupts enabled */
#define VTIO_DMAE_HEAD        0x10    /* RO32: next descriptor to complete */
#define VTIO_DMAE_TAIL        0x14    /* RW32: doorbell, one past the last ready;
                                         HEAD == TAIL is an empty ring, so at most
                                         RING_SIZE - 1 descriptors are outstanding */
#define VTIO_DMAE_STATUS      0x18    /* RO32 */
#define  VTIO_DMAE_STATUS_STATE(s) ((s) & 0x3)
#define  VTIO_DMAE_STATE_IDLE    0    /* not enabled */
#define  VTIO_DMAE_STATE_RUNNING 1    /* enabled: working or waiting for work */
#define  VTIO_DMAE_STATE_HALTED  2    /* stopped on an error until RESET */
#define  VTIO_DMAE_STATUS_BUSY 0x10   /* a descriptor is executing */
#define VTIO_DMAE_ERROR       0x1c    /* RO32: error code of the halt */
#define VTIO_DMAE_ERR_INDEX   0x20    /* RO32: ring index of the failed descriptor */
#define VTIO_DMAE_INT_VEC     0x24    /* RW32: MSI-X vector (reset: channel no.);
                                         MSI: INT_VEC & (enabled vectors - 1) */
#define VTIO_DMAE_COMPLETED   0x28    /* RO64: descriptors completed since reset */
#define VTIO_DMAE_BYTES       0x30    /* RO64: bytes moved since reset */
#define VTIO_DMAE_ERR_ADDR    0x38    /* RO64: the address that faulted */

/* ---- descriptor: 64 bytes, in the ring */
struct vtio_dmae_desc {
    uint32_t op_flags;      /* [7:0] opcode, [15:8] zero, [31:16] flags */
    uint32_t reserved0;     /* zero */
    uint64_t src;           /* COPY/COMPARE: source; FILL: 8-byte pattern;
                               COPY_SG: source SG list */
    uint64_t dst;           /* COPY/FILL: destination; COMPARE: second buffer;
                               COPY_SG: destination SG list */
    uint64_t len;           /* bytes, 1..VTIO_DMAE_MAX_LEN (NOP: 0) */
    uint64_t completion;    /* completion record address (32-byte aligned), 0 none */
    uint32_t src_sg_count;  /* COPY_SG: entries in the source list, 1..256 */
    uint32_t dst_sg_count;  /* COPY_SG: entries in the destination list */
    uint64_t cookie;        /* echoed in the completion record */
    uint64_t reserved1;     /* zero */
};
_Static_assert(sizeof(struct vtio_dmae_desc) == 64, "descriptor is 64 bytes");

#define VTIO_DMAE_OP_NOP      0       /* nothing: a fence or interrupt point */
#define VTIO_DMAE_OP_COPY     1
#define VTIO_DMAE_OP_FILL     2
#define VTIO_DMAE_OP_COMPARE  3
#define VTIO_DMAE_OP_COPY_SG  4
#define VTIO_DMAE_FLAG_INTR   0x0001  /* interrupt when this descriptor completes */
#define VTIO_DMAE_FLAG_FENCE  0x0002  /* fetch nothing after it until it completes */
#define VTIO_DMAE_OP_FLAGS(op, flags) ((uint32_t)(op) | (uint32_t)(flags) << 16)
#define VTIO_DMAE_MAX_LEN     (1ull << 40)
#define VTIO_DMAE_MAX_SG      256

/* ---- scatter-gather entry: 16 bytes, lists 16-byte aligned */
struct vtio_dmae_sg {
    uint64_t addr;
    uint32_t len;           /* 1..2^32-1 */
    uint32_t reserved;      /* zero */
};
_Static_assert(sizeof(struct vtio_dmae_sg) == 16, "SG entry is 16 bytes");

/* ---- completion record: 32 bytes; status is written last */
struct vtio_dmae_completion {
    uint32_t status;        /* 0 until written; VTIO_DMAE_STATUS_SUCCESS or an error */
    uint32_t result;        /* COMPARE: 0 equal, 1 different */
    uint64_t bytes;         /* bytes processed (COMPARE: offset of first difference) */
    uint64_t fault_addr;    /* on a fault, the address that faulted */
    uint64_t cookie;        /* the descriptor's cookie */
};
_Static_assert(sizeof(struct vtio_dmae_completion) == 32, "completion is 32 bytes");

/* ---- status and error codes (completion status and the ERROR register) */
#define VTIO_DMAE_STATUS_SUCCESS  0x01
#define VTIO_DMAE_ERR_OPCODE      0x10  /* unknown operation */
#define VTIO_DMAE_ERR_LENGTH      0x11  /* zero or over VTIO_DMAE_MAX_LEN */
#define VTIO_DMAE_ERR_OVERLAP     0x12  /* copy source and destination overlap */
#define VTIO_DMAE_ERR_RESERVED    0x13  /* reserved field/flag set, misaligned record */
#define VTIO_DMAE_ERR_SG          0x14  /* bad SG count, entry or total length */
#define VTIO_DMAE_ERR_DESC_FETCH  0x20  /* the descriptor could not be read */
#define VTIO_DMAE_ERR_SRC_FAULT   0x21  /* a source byte could not be read */
#define VTIO_DMAE_ERR_DST_FAULT   0x22  /* a destination byte could not be written */
#define VTIO_DMAE_ERR_SG_FETCH    0x23  /* an SG list could not be read */
#define VTIO_DMAE_ERR_COMPLETION  0x24  /* the completion record could not be written */
#define VTIO_DMAE_ERR_RING        0x30  /* bad RING_BASE/RING_SIZE, or TAIL >= size */

/* A short name for a status or error code ("success", "src-fault", ...). */
VTIO_API const char *vtio_dmae_status_name(uint32_t status);

/* ---- the model */
struct vtio_dma_engine_config {
    unsigned channels;      /* 1..VTIO_DMAE_MAX_CHANNELS; 0 means 4 */
};

/*
 * Plugs a DMA engine into (busno, devfn) and starts its channel threads.
 * @returns 0 and *out; -EINVAL bad channel count; errors of
 * vtio_pci_dev_create(); -ENOMEM / -EAGAIN if threads cannot start.
 */
VTIO_API int vtio_dma_engine_create(struct vtio_pci_bus *bus, uint8_t busno, uint8_t devfn,
                                    const struct vtio_dma_engine_config *cfg,
                                    struct vtio_dma_engine **out);
/* Stops the channel threads (finishing the descriptor in progress) and frees
 * the model.  Destroy the engine before its bus: the PCI function stays
 * plugged (the bus has no unplug), so from here on nothing may reach it
 * (BARs, configuration space, FLR) but vtio_pci_bus_destroy().  Not from an
 * interrupt handler of the engine. */
VTIO_API void vtio_dma_engine_destroy(struct vtio_dma_engine *eng);
VTIO_API struct vtio_pci_dev *vtio_dma_engine_pci(struct vtio_dma_engine *eng);

#endif
