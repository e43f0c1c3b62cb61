/*
 * msi: message-signalled interrupts, MSI and MSI-X, as the PCI spec lays
 * them out.
 *
 * MSI state lives entirely in configuration space (config.c built the
 * capability: 64-bit address, per-vector masking): Message Control's enable
 * and Multiple Message Enable, address, data, the Mask Bits register that
 * software writes and the Pending Bits register that only the bus writes.
 * With 2^k vectors allocated the function sends data with its low k bits
 * replaced by the vector number; a device that raises a vector beyond what
 * software allocated shares a vector (the number is folded into the
 * allocated range), which is what the spec lets a function do when it gets
 * fewer vectors than it asked for.
 *
 * MSI-X state is the table (16-byte entries: lower address, upper address,
 * data, vector control whose bit 0 masks) and the Pending Bit Array, both
 * in a BAR; bar.c routes accesses that fall in them here.  Message
 * Control's enable and Function Mask live in config space.
 *
 * Raising a vector (vtio_pci_msix_notify, vtio_pci_msi_notify):
 *   capability absent or disabled   -> -ENODEV, the interrupt is lost;
 *   masked (vector or function)     -> pending bit set, returns 1;
 *   otherwise                        -> the message goes out through the DMA
 *                                       port: 0, or its error (-EPERM with
 *                                       bus mastering off: lost).
 * A pending vector is sent, and its pending bit cleared, when it becomes
 * deliverable: unmasked, capability enabled, function mask clear, and bus
 * mastering on.  Config and table writes that could make it so call
 * vtio_pcibus_deliver_pending() after dropping the lock.
 *
 * Exactly once: the decision "send now or leave pending" and the clearing of
 * a pending bit are both made under dev->lock, and each sends the message
 * it took only after unlocking (a handler running on this thread may touch
 * config space again).  So a raise is either sent by its notify call, or
 * sets a pending bit that exactly one later delivery clears and sends;
 * raises of a vector while it is already pending merge into that one
 * message, as on hardware.
 */
#include "hw/pci/pci_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

#define MSIX_MAX_VECTORS 2048
#define MSI_MAX_VECTORS  32
#define DELIVER_BATCH    16

static uint64_t msix_table_len(unsigned n)
{
    return (uint64_t)n * VTIO_PCI_MSIX_ENTRY_SIZE;
}

static uint64_t msix_pba_len(unsigned n)
{
    return (uint64_t)(n + 63) / 64 * 8;
}

static bool in_range(uint64_t off, uint64_t start, uint64_t len)
{
    return off >= start && off - start < len;
}

int vtio_pcibus_msi_check(const struct vtio_pci_dev_info *info)
{
    unsigned n = info->msi_vectors;
    if (n > MSI_MAX_VECTORS || (n & (n - 1)))
        return vtio_fail(-EINVAL, "pci: %u MSI vectors: must be 0 or a power of two up to 32",
                         n);

    n = info->msix_vectors;
    if (n == 0)
        return 0;
    if (n > MSIX_MAX_VECTORS)
        return vtio_fail(-EINVAL, "pci: %u MSI-X vectors: at most 2048", n);
    if (info->msix_bar >= VTIO_PCIBUS_NUM_BARS || info->bar[info->msix_bar].size == 0)
        return vtio_fail(-EINVAL, "pci: MSI-X BAR%u is not a BAR of the function",
                         info->msix_bar);
    if ((info->msix_table_offset | info->msix_pba_offset) & VTIO_PCI_MSIX_BIR_MASK)
        return vtio_fail(-EINVAL, "pci: MSI-X table %#x or PBA %#x offset not 8-byte aligned",
                         info->msix_table_offset, info->msix_pba_offset);

    uint64_t bar_size = info->bar[info->msix_bar].size;
    uint64_t toff = info->msix_table_offset, tlen = msix_table_len(n);
    uint64_t poff = info->msix_pba_offset, plen = msix_pba_len(n);
    if (toff > bar_size || tlen > bar_size - toff)
        return vtio_fail(-EINVAL, "pci: MSI-X table [%#llx, +%#llx) outside BAR%u (%#llx bytes)",
                         (unsigned long long)toff, (unsigned long long)tlen, info->msix_bar,
                         (unsigned long long)bar_size);
    if (poff > bar_size || plen > bar_size - poff)
        return vtio_fail(-EINVAL, "pci: MSI-X PBA [%#llx, +%#llx) outside BAR%u (%#llx bytes)",
                         (unsigned long long)poff, (unsigned long long)plen, info->msix_bar,
                         (unsigned long long)bar_size);
    if (toff < poff + plen && poff < toff + tlen)
        return vtio_fail(-EINVAL, "pci: MSI-X table and PBA overlap");
    return 0;
}

/* ---- MSI-X table and PBA */

static uint8_t *msix_entry(struct vtio_pci_dev *dev, unsigned v)
{
    return dev->msix_table + (size_t)v * VTIO_PCI_MSIX_ENTRY_SIZE;
}

static bool msix_entry_masked_locked(struct vtio_pci_dev *dev, unsigned v)
{
    return msix_entry(dev, v)[VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL] &
           VTIO_PCI_MSIX_ENTRY_CTRL_MASKBIT;
}

static struct vtio_pcibus_msg msix_msg_locked(struct vtio_pci_dev *dev, unsigned v)
{
    const uint8_t *e = msix_entry(dev, v);
    struct vtio_pcibus_msg m = {
        .addr = vtio_pcibus_le_get(e + VTIO_PCI_MSIX_ENTRY_LOWER_ADDR, 8),
        .data = (uint32_t)vtio_pcibus_le_get(e + VTIO_PCI_MSIX_ENTRY_DATA, 4),
    };
    return m;
}

int vtio_pcibus_msix_alloc(struct vtio_pci_dev *dev)
{
    unsigned n = dev->info.msix_vectors;
    if (n == 0)
        return 0;
    dev->msix_table = calloc(n, VTIO_PCI_MSIX_ENTRY_SIZE);
    dev->msix_pba_words = (n + 63) / 64;
    dev->msix_pba = calloc(dev->msix_pba_words, sizeof(uint64_t));
    if (!dev->msix_table || !dev->msix_pba) {
        vtio_pcibus_msix_free(dev);
        return vtio_fail(-ENOMEM, "pci: out of memory for %u MSI-X vectors", n);
    }
    dev->msix_vectors = n;
    vtio_pcibus_msix_reset_locked(dev);
    return 0;
}

void vtio_pcibus_msix_free(struct vtio_pci_dev *dev)
{
    free(dev->msix_table);
    free(dev->msix_pba);
    dev->msix_table = NULL;
    dev->msix_pba = NULL;
    dev->msix_vectors = 0;
}

void vtio_pcibus_msix_reset_locked(struct vtio_pci_dev *dev)
{
    if (!dev->msix_vectors)
        return;
    memset(dev->msix_table, 0, msix_table_len(dev->msix_vectors));
    for (unsigned v = 0; v < dev->msix_vectors; v++)
        msix_entry(dev, v)[VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL] = VTIO_PCI_MSIX_ENTRY_CTRL_MASKBIT;
    memset(dev->msix_pba, 0, dev->msix_pba_words * sizeof(uint64_t));
}

bool vtio_pcibus_msix_claims(const struct vtio_pcibus_bar *bar, uint64_t off)
{
    const struct vtio_pci_dev *dev = bar->dev;
    const struct vtio_pci_dev_info *info = &dev->info;
    unsigned n = info->msix_vectors;

    if (n == 0 || bar->index != info->msix_bar)
        return false;
    return in_range(off, info->msix_table_offset, msix_table_len(n)) ||
           in_range(off, info->msix_pba_offset, msix_pba_len(n));
}

/* Accesses reach here naturally aligned and at most 8 bytes, so with the
 * table and PBA 8-byte aligned an access lies wholly in one of them. */
uint64_t vtio_pcibus_msix_mmio_read(struct vtio_pci_dev *dev, uint64_t off, unsigned size)
{
    const struct vtio_pci_dev_info *info = &dev->info;
    uint64_t v = 0;

    pthread_mutex_lock(&dev->lock);
    if (in_range(off, info->msix_table_offset, msix_table_len(dev->msix_vectors))) {
        v = vtio_pcibus_le_get(dev->msix_table + (off - info->msix_table_offset), size);
    } else {
        uint64_t bit = (off - info->msix_pba_offset) * 8;
        uint64_t word = dev->msix_pba[bit / 64];
        v = word >> (bit % 64);
        if (size < 8)
            v &= (1ull << (8 * size)) - 1;
    }
    pthread_mutex_unlock(&dev->lock);
    return v;
}

/* Which bits of each byte of an entry software may write: the address is
 * dword aligned (bits 1:0 read 0), vector control has only its mask bit. */
static uint8_t entry_byte_wmask(unsigned pos)
{
    if (pos == VTIO_PCI_MSIX_ENTRY_LOWER_ADDR)
        return 0xfc;
    if (pos < VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL)
        return 0xff;
    if (pos == VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL)
        return VTIO_PCI_MSIX_ENTRY_CTRL_MASKBIT;
    return 0;
}

void vtio_pcibus_msix_mmio_write(struct vtio_pci_dev *dev, uint64_t off, uint64_t val,
                                 unsigned size)
{
    const struct vtio_pci_dev_info *info = &dev->info;
    bool ctrl_written = false;

    /* The PBA is read-only: writes to it are dropped. */
    if (!in_range(off, info->msix_table_offset, msix_table_len(dev->msix_vectors)))
        return;

    pthread_mutex_lock(&dev->lock);
    uint64_t rel = off - info->msix_table_offset;
    for (unsigned i = 0; i < size; i++) {
        uint64_t a = rel + i;
        unsigned pos = (unsigned)(a % VTIO_PCI_MSIX_ENTRY_SIZE);
        uint8_t m = entry_byte_wmask(pos), b = (uint8_t)(val >> (8 * i));
        dev->msix_table[a] = (uint8_t)((dev->msix_table[a] & ~m) | (b & m));
        if (pos == VTIO_PCI_MSIX_ENTRY_VECTOR_CTRL)
            ctrl_written = true;
    }
    pthread_mutex_unlock(&dev->lock);

    if (ctrl_written)
        vtio_pcibus_deliver_pending(dev);
}

int vtio_pci_msix_notify(struct vtio_pci_dev *dev, unsigned vector)
{
    if (!dev || !dev->msix_vectors)
        return -ENODEV;
    if (vector >= dev->msix_vectors)
        return vtio_fail(-EINVAL, "pci: %s has no MSI-X vector %u", dev->name, vector);

    pthread_mutex_lock(&dev->lock);
    uint16_t ctrl = vtio_pcibus_config_get16_locked(dev, dev->msix_cap + VTIO_PCI_MSIX_FLAGS);
    if (!(ctrl & VTIO_PCI_MSIX_FLAGS_ENABLE)) {
        pthread_mutex_unlock(&dev->lock);
        return -ENODEV;
    }
    if ((ctrl & VTIO_PCI_MSIX_FLAGS_MASKALL) || msix_entry_masked_locked(dev, vector)) {
        dev->msix_pba[vector / 64] |= 1ull << (vector % 64);
        pthread_mutex_unlock(&dev->lock);
        return 1;
    }
    struct vtio_pcibus_msg m = msix_msg_locked(dev, vector);
    pthread_mutex_unlock(&dev->lock);
    return vtio_dma_msi(&dev->port, m.addr, m.data);
}

/* ---- MSI */

/* Vectors software allocated: 2^MME, never more than the function offers. */
static unsigned msi_allocated_locked(const struct vtio_pci_dev *dev)
{
    uint16_t flags = vtio_pcibus_config_get16_locked(dev, dev->msi_cap + VTIO_PCI_MSI_FLAGS);
    unsigned mme = (flags & VTIO_PCI_MSI_FLAGS_QSIZE) >> 4;
    unsigned mmc = (flags & VTIO_PCI_MSI_FLAGS_QMASK) >> 1;
    return 1u << (mme < mmc ? mme : mmc);
}

static struct vtio_pcibus_msg msi_msg_locked(const struct vtio_pci_dev *dev, unsigned v,
                                          unsigned allocated)
{
    unsigned cap = dev->msi_cap;
    uint32_t data = vtio_pcibus_config_get16_locked(dev, cap + VTIO_PCI_MSI_DATA_64);
    struct vtio_pcibus_msg m = {
        .addr = vtio_pcibus_config_get32_locked(dev, cap + VTIO_PCI_MSI_ADDRESS_LO) |
                (uint64_t)vtio_pcibus_config_get32_locked(dev, cap + VTIO_PCI_MSI_ADDRESS_HI)
                    << 32,
        .data = (data & ~(allocated - 1)) | v,
    };
    return m;
}

int vtio_pci_msi_notify(struct vtio_pci_dev *dev, unsigned vector)
{
    if (!dev || !dev->msi_cap)
        return -ENODEV;
    if (vector >= dev->info.msi_vectors)
        return vtio_fail(-EINVAL, "pci: %s has no MSI vector %u", dev->name, vector);

    unsigned cap = dev->msi_cap;
    pthread_mutex_lock(&dev->lock);
    uint16_t flags = vtio_pcibus_config_get16_locked(dev, cap + VTIO_PCI_MSI_FLAGS);
    if (!(flags & VTIO_PCI_MSI_FLAGS_ENABLE)) {
        pthread_mutex_unlock(&dev->lock);
        return -ENODEV;
    }
    unsigned allocated = msi_allocated_locked(dev);
    unsigned v = vector & (allocated - 1);
    if (vtio_pcibus_config_get32_locked(dev, cap + VTIO_PCI_MSI_MASK_64) & (1u << v)) {
        uint32_t pending = vtio_pcibus_config_get32_locked(dev, cap + VTIO_PCI_MSI_PENDING_64);
        vtio_pcibus_le_put(dev->cfg + cap + VTIO_PCI_MSI_PENDING_64, pending | (1u << v), 4);
        pthread_mutex_unlock(&dev->lock);
        return 1;
    }
    struct vtio_pcibus_msg m = msi_msg_locked(dev, v, allocated);
    pthread_mutex_unlock(&dev->lock);
    return vtio_dma_msi(&dev->port, m.addr, m.data);
}

/* ---- delivering what was left pending */

/* Takes up to max deliverable pending messages, clearing their bits. */
static unsigned collect_locked(struct vtio_pci_dev *dev, struct vtio_pcibus_msg *msgs,
                               unsigned max)
{
    unsigned n = 0;

    /* With bus mastering off nothing can leave the function: keep it all
     * pending until BME is set. */
    if (!(vtio_pcibus_config_get16_locked(dev, VTIO_PCI_COMMAND) & VTIO_PCI_COMMAND_MASTER))
        return 0;

    if (dev->msix_cap) {
        uint16_t ctrl = vtio_pcibus_config_get16_locked(dev, dev->msix_cap + VTIO_PCI_MSIX_FLAGS);
        bool live = (ctrl & VTIO_PCI_MSIX_FLAGS_ENABLE) && !(ctrl & VTIO_PCI_MSIX_FLAGS_MASKALL);
        for (unsigned w = 0; live && w < dev->msix_pba_words && n < max; w++) {
            uint64_t bits = dev->msix_pba[w];
            while (bits && n < max) {
                unsigned v = w * 64 + (unsigned)__builtin_ctzll(bits);
                uint64_t bit = bits & -bits;
                bits &= bits - 1;
                if (msix_entry_masked_locked(dev, v))
                    continue;
                dev->msix_pba[w] &= ~bit;
                msgs[n++] = msix_msg_locked(dev, v);
            }
        }
    }

    if (dev->msi_cap && n < max) {
        unsigned cap = dev->msi_cap;
        uint16_t flags = vtio_pcibus_config_get16_locked(dev, cap + VTIO_PCI_MSI_FLAGS);
        if (flags & VTIO_PCI_MSI_FLAGS_ENABLE) {
            unsigned allocated = msi_allocated_locked(dev);
            uint32_t live = allocated == 32 ? ~0u : (1u << allocated) - 1;
            uint32_t pending = vtio_pcibus_config_get32_locked(dev, cap + VTIO_PCI_MSI_PENDING_64);
            uint32_t ready = pending & live &
                             ~vtio_pcibus_config_get32_locked(dev, cap + VTIO_PCI_MSI_MASK_64);
            while (ready && n < max) {
                unsigned v = (unsigned)__builtin_ctz(ready);
                ready &= ready - 1;
                pending &= ~(1u << v);
                msgs[n++] = msi_msg_locked(dev, v, allocated);
            }
            vtio_pcibus_le_put(dev->cfg + cap + VTIO_PCI_MSI_PENDING_64, pending, 4);
        }
    }
    return n;
}

void vtio_pcibus_deliver_pending(struct vtio_pci_dev *dev)
{
    struct vtio_pcibus_msg msgs[DELIVER_BATCH];
    unsigned n;

    do {
        pthread_mutex_lock(&dev->lock);
        n = collect_locked(dev, msgs, DELIVER_BATCH);
        pthread_mutex_unlock(&dev->lock);
        /* A send that fails here (BME cleared since we looked) is lost, as
         * a message in flight when software turns mastering off. */
        for (unsigned i = 0; i < n; i++)
            vtio_dma_msi(&dev->port, msgs[i].addr, msgs[i].data);
    } while (n == DELIVER_BATCH);
}
