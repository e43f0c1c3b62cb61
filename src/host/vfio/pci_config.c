/*
 * vfio-pci's configuration space: what the program reads and writes at the
 * config region (Linux's vfio_pci_config.c, the same rules).
 *
 * Every byte has two masks, built at enable by walking the function's
 * header and capability list:
 *   virt   bits kept in a virtual copy (vconfig): reads return the copy,
 *          writes change only the copy;
 *   wmask  bits the program may write; a write to the others is dropped
 *          silently, as Linux does (never an error).
 * A read returns the function's bits merged with the virtual ones; a write
 * of writable non-virtual bits is a read-modify-write of the function.
 * Accesses are split into naturally aligned pieces of at most 4 bytes.
 *
 * What that gives, per register (Linux's permission tables):
 *   ids, class, revision, header type        read through
 *   COMMAND      all writable, through, except INTx Disable (virtual): the
 *                program turns memory decoding and bus mastering (its DMA)
 *                on and off itself; the host keeps a copy of the MEM bit,
 *                which gates BAR access through read/write (pci.c)
 *   STATUS       read through, Capabilities List virtual, not writable
 *   BARs, ROM    virtual: a write changes the copy, a read returns it
 *                masked to the BAR's size with its type bits, so sizing
 *                (all ones, read back) works; the physical BARs never move
 *   cache line, latency timer, BIST          writable, through
 *   capability pointers, interrupt line/pin  virtual
 *   PCI Express  read through; Device Control writable (but phantom
 *                functions), with Max Payload Size and Initiate FLR
 *                virtual: setting FLR resets the function (pci.c), which
 *                keeps the program's set-up, and reads back 0;
 *   MSI          control (enable, multiple message enable), address, data
 *                virtual; mask and pending bits through.  Enable reaches
 *                the function only while SET_IRQS has MSI on, Multiple
 *                Message Enable at most what SET_IRQS allocated;
 *   MSI-X        read through, not writable: Enable and Function Mask read
 *                what the host set through SET_IRQS; the program cannot
 *                change them.
 * Capabilities other than these three are left out of the virtual list
 * (their bytes, like every byte outside the header and the known
 * capabilities, are passed through raw, as Linux does with gaps).
 *
 * Differences from Linux, on purpose: MSI's Multiple Message Capable and
 * 64-bit bits are read-only (Linux lets the program write them into its
 * copy); Max Read Request Size goes straight to the function.
 *
 * Locking: vd->lock held by every caller (vfio_pci_priv.h).
 */
#include <vtio/pci.h>
#include <vtio/pci_enum.h>

#include <errno.h>
#include <string.h>

#include "host/vfio/vfio_pci_priv.h"
#include "util/error.h"

#define STD_HEADER_SIZE   0x40
#define CACHE_LINE_SIZE   0x0c
#define LATENCY_TIMER     0x0d
#define BIST              0x0f
#define BAR_END           (VTIO_PCI_BAR0 + 4 * VTIO_PCI_NUM_BARS)
#define ROM_ADDRESS       0x30
#define CAP_LIST_NEXT     1
#define MAX_CAPS          48

/* Lengths Linux gives the capabilities it keeps. */
#define EXP_SIZEOF_V1     20
#define EXP_SIZEOF_V2     52
#define EXP_FLAGS_VERS    0x000f
#define EXP_DEVCTL_PAYLOAD 0x00e0
#define EXP_DEVCTL_PHANTOM 0x0200
#define EXP_DEVCTL2       0x28
#define EXP_DEVCTL2_ARI   0x0020
#define MSIX_SIZEOF       12

#define ALL 0xffffffffu

static uint32_t le_get(const uint8_t *p, unsigned n)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static void le_put(uint8_t *p, uint32_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t width_mask(unsigned n)
{
    return n == 4 ? ALL : (1u << (8 * n)) - 1;
}

static bool touches(uint64_t pos, unsigned n, unsigned reg, unsigned len)
{
    return pos < reg + len && reg < pos + n;
}

/* ---- the function's own config space */

static uint32_t hw_read(const struct vfio_pci_device *vd, uint16_t pos, unsigned n)
{
    return n == 4   ? vtio_pci_cfg_read32(vd->fn, pos)
           : n == 2 ? vtio_pci_cfg_read16(vd->fn, pos)
                    : vtio_pci_cfg_read8(vd->fn, pos);
}

static void hw_write(const struct vfio_pci_device *vd, uint16_t pos, uint32_t v, unsigned n)
{
    if (n == 4)
        vtio_pci_cfg_write32(vd->fn, pos, v);
    else if (n == 2)
        vtio_pci_cfg_write16(vd->fn, pos, (uint16_t)v);
    else
        vtio_pci_cfg_write8(vd->fn, pos, (uint8_t)v);
}

/* ---- permissions */

static void perm(struct vfio_pci_device *vd, unsigned off, unsigned n, uint32_t virt,
                 uint32_t write)
{
    le_put(vd->virt + off, virt, n);
    le_put(vd->wmask + off, write, n);
}

/* [off, off + len) read through and read-only, with its current values in
 * vconfig (a later virt bit starts from the function's value). */
static void perm_read_only(struct vfio_pci_device *vd, unsigned off, unsigned len)
{
    memset(vd->virt + off, 0, len);
    memset(vd->wmask + off, 0, len);
    for (unsigned i = 0; i < len; i++)
        vd->vconfig[off + i] = vtio_pci_cfg_read8(vd->fn, (uint16_t)(off + i));
}

static void header_perms(struct vfio_pci_device *vd)
{
    perm_read_only(vd, 0, STD_HEADER_SIZE);
    perm(vd, VTIO_PCI_VENDOR_ID, 2, ALL, 0);
    perm(vd, VTIO_PCI_DEVICE_ID, 2, ALL, 0);
    perm(vd, VTIO_PCI_COMMAND, 2, VTIO_PCI_COMMAND_INTX_DISABLE, ALL);
    perm(vd, VTIO_PCI_STATUS, 2, VTIO_PCI_STATUS_CAP_LIST, 0);
    perm(vd, CACHE_LINE_SIZE, 1, 0, ALL);
    perm(vd, LATENCY_TIMER, 1, 0, ALL);
    perm(vd, BIST, 1, 0, ALL);
    for (unsigned off = VTIO_PCI_BAR0; off < BAR_END; off += 4)
        perm(vd, off, 4, ALL, ALL);
    perm(vd, ROM_ADDRESS, 4, ALL, ALL);
    perm(vd, VTIO_PCI_CAPABILITY_LIST, 1, ALL, 0);
    perm(vd, VTIO_PCI_INTERRUPT_LINE, 1, ALL, ALL);
    /* no INTx through VFIO (vfio.h): pin 0 */
    perm(vd, VTIO_PCI_INTERRUPT_PIN, 1, ALL, 0);
    vd->vconfig[VTIO_PCI_INTERRUPT_PIN] = 0;
}

static void exp_perms(struct vfio_pci_device *vd, unsigned at, unsigned len)
{
    perm(vd, at + VTIO_PCI_EXP_DEVCTL, 2, VTIO_PCI_EXP_DEVCTL_BCR_FLR | EXP_DEVCTL_PAYLOAD,
         (uint16_t)~EXP_DEVCTL_PHANTOM);
    if (len > EXP_DEVCTL2)
        perm(vd, at + EXP_DEVCTL2, 2, 0, (uint16_t)~EXP_DEVCTL2_ARI);
    vd->cap_exp = (uint8_t)at;
}

static void msi_perms(struct vfio_pci_device *vd, unsigned at, uint16_t flags)
{
    bool is64 = flags & VTIO_PCI_MSI_FLAGS_64BIT;
    unsigned data = is64 ? VTIO_PCI_MSI_DATA_64 : 8, mask = data + 4;
    perm(vd, at + VTIO_PCI_MSI_FLAGS, 1, ALL,
         VTIO_PCI_MSI_FLAGS_ENABLE | VTIO_PCI_MSI_FLAGS_QSIZE);
    perm(vd, at + VTIO_PCI_MSI_ADDRESS_LO, 4, ALL, ALL);
    if (is64)
        perm(vd, at + VTIO_PCI_MSI_ADDRESS_HI, 4, ALL, ALL);
    perm(vd, at + data, 2, ALL, ALL);
    if (flags & VTIO_PCI_MSI_FLAGS_MASKBIT) {
        perm(vd, at + mask, 4, 0, ALL);
        perm(vd, at + mask + 4, 4, 0, ALL);
    }
    vd->cap_msi = (uint8_t)at;
}

/* How many bytes of the capability at `at` vfio-pci shows; 0: hidden. */
static unsigned cap_len(const struct vfio_pci_device *vd, uint8_t id, unsigned at)
{
    uint16_t flags = vtio_pci_cfg_read16(vd->fn, (uint16_t)(at + 2));
    switch (id) {
    case VTIO_PCI_CAP_ID_EXP:
        return (flags & EXP_FLAGS_VERS) == 1 ? EXP_SIZEOF_V1 : EXP_SIZEOF_V2;
    case VTIO_PCI_CAP_ID_MSI:
        return 10 + (flags & VTIO_PCI_MSI_FLAGS_64BIT ? 4 : 0) +
               (flags & VTIO_PCI_MSI_FLAGS_MASKBIT ? 10 : 0);
    case VTIO_PCI_CAP_ID_MSIX:
        return MSIX_SIZEOF;
    default:
        return 0;
    }
}

/* Walks the function's capability list; the kept ones are linked in
 * vconfig, hidden ones skipped (Linux's vfio_cap_init). */
static void caps_init(struct vfio_pci_device *vd)
{
    uint8_t *prev = &vd->vconfig[VTIO_PCI_CAPABILITY_LIST];
    unsigned kept = 0, loops = MAX_CAPS;
    unsigned at = (vtio_pci_cfg_read16(vd->fn, VTIO_PCI_STATUS) & VTIO_PCI_STATUS_CAP_LIST)
                      ? vtio_pci_cfg_read8(vd->fn, VTIO_PCI_CAPABILITY_LIST) & ~3u
                      : 0;
    while (at >= STD_HEADER_SIZE && loops--) {
        uint8_t id = vtio_pci_cfg_read8(vd->fn, (uint16_t)at);
        unsigned next = vtio_pci_cfg_read8(vd->fn, (uint16_t)(at + CAP_LIST_NEXT)) & ~3u;
        unsigned len = cap_len(vd, id, at);
        if (!len || at + len > VTIO_PCI_CFG_SIZE) {
            *prev = (uint8_t)next;
            at = next;
            continue;
        }
        perm_read_only(vd, at, len);
        perm(vd, at + CAP_LIST_NEXT, 1, ALL, 0);
        if (id == VTIO_PCI_CAP_ID_EXP)
            exp_perms(vd, at, len);
        else if (id == VTIO_PCI_CAP_ID_MSI)
            msi_perms(vd, at, vtio_pci_cfg_read16(vd->fn, (uint16_t)(at + VTIO_PCI_MSI_FLAGS)));
        prev = &vd->vconfig[at + CAP_LIST_NEXT];
        at = next;
        kept++;
    }
    if (!kept)
        vd->vconfig[VTIO_PCI_STATUS] &= (uint8_t)~VTIO_PCI_STATUS_CAP_LIST;
}

/* ---- BARs */

static bool bar_placed(const struct vtio_pci_bar *b)
{
    return b->size && !b->is_io && b->base;
}

/* The virtual BARs as hardware would show them: address bits below the
 * size read 0, the type bits are the BAR's (Linux's vfio_bar_fixup). */
static void bar_fixup(struct vfio_pci_device *vd)
{
    for (unsigned i = 0; i < VTIO_PCI_NUM_BARS; i++) {
        const struct vtio_pci_bar *b = &vd->fn->bar[i];
        uint8_t *at = vd->vconfig + VTIO_PCI_BAR0 + 4 * i;
        if (!bar_placed(b)) {
            le_put(at, 0, 4);
            continue;
        }
        uint64_t mask = ~(b->size - 1);
        uint32_t type = (b->prefetchable ? VTIO_PCI_BAR_MEM_PREFETCH : 0) |
                        (b->is_64bit ? VTIO_PCI_BAR_MEM_TYPE_64 : 0);
        le_put(at, (le_get(at, 4) & (uint32_t)mask) | type, 4);
        if (b->is_64bit && i + 1 < VTIO_PCI_NUM_BARS) {
            le_put(at + 4, le_get(at + 4, 4) & (uint32_t)(mask >> 32), 4);
            i++;
        }
    }
    le_put(vd->vconfig + ROM_ADDRESS, 0, 4);    /* no expansion ROM */
}

/* The physical BARs were lost (a reset the host did not see): put back
 * what enable found (Linux's vfio_bar_restore). */
static void bar_restore_if_lost(struct vfio_pci_device *vd, bool force)
{
    bool lost = force;
    for (unsigned i = 0; i < VTIO_PCI_NUM_BARS && !lost; i++)
        lost = vd->rbar[i] &&
               vtio_pci_cfg_read32(vd->fn, (uint16_t)(VTIO_PCI_BAR0 + 4 * i)) != vd->rbar[i];
    if (!lost)
        return;
    for (unsigned i = 0; i < VTIO_PCI_NUM_BARS; i++)
        vtio_pci_cfg_write32(vd->fn, (uint16_t)(VTIO_PCI_BAR0 + 4 * i), vd->rbar[i]);
}

void vfio_pci_config_init(struct vfio_pci_device *vd)
{
    memset(vd->vconfig, 0, sizeof(vd->vconfig));
    memset(vd->virt, 0, sizeof(vd->virt));
    /* Bytes outside the header and the capabilities kept: raw access. */
    memset(vd->wmask, 0xff, sizeof(vd->wmask));
    vd->cap_exp = vd->cap_msi = 0;
    header_perms(vd);
    for (unsigned i = 0; i < VTIO_PCI_NUM_BARS; i++)
        vd->rbar[i] = vtio_pci_cfg_read32(vd->fn, (uint16_t)(VTIO_PCI_BAR0 + 4 * i));
    caps_init(vd);
    bar_fixup(vd);
}

bool vfio_pci_memory_enabled(const struct vfio_pci_device *vd)
{
    return le_get(vd->vconfig + VTIO_PCI_COMMAND, 2) & VTIO_PCI_COMMAND_MEM;
}

/* ---- access */

static uint32_t config_read(struct vfio_pci_device *vd, uint16_t pos, unsigned n)
{
    uint32_t all = width_mask(n);
    uint32_t virt = le_get(vd->virt + pos, n), v = le_get(vd->vconfig + pos, n);
    if (virt != all)
        v = (hw_read(vd, pos, n) & ~virt) | (v & virt);
    return v & all;
}

static void default_write(struct vfio_pci_device *vd, uint16_t pos, unsigned n, uint32_t val)
{
    uint32_t w = le_get(vd->wmask + pos, n), virt = le_get(vd->virt + pos, n);
    if (w & virt) {
        uint32_t v = le_get(vd->vconfig + pos, n);
        le_put(vd->vconfig + pos, (v & ~(w & virt)) | (val & w & virt), n);
    }
    if (w & ~virt) {
        uint32_t phys = hw_read(vd, pos, n);
        hw_write(vd, pos, (phys & ~(w & ~virt)) | (val & w & ~virt), n);
    }
}

/* COMMAND, before the write: if the program turns decoding on that it
 * believes is on while the function has it off, or the BARs changed, the
 * function went through a reset behind our back: restore the BARs first. */
static void command_pre(struct vfio_pci_device *vd, uint32_t val)
{
    bool new_mem = val & VTIO_PCI_COMMAND_MEM;
    bool phys_mem = vtio_pci_cfg_read16(vd->fn, VTIO_PCI_COMMAND) & VTIO_PCI_COMMAND_MEM;
    bar_restore_if_lost(vd, new_mem && vfio_pci_memory_enabled(vd) && !phys_mem);
}

/* COMMAND, after: remember the program's memory (and I/O) enable. */
static void command_post(struct vfio_pci_device *vd, uint32_t val)
{
    uint16_t keep = VTIO_PCI_COMMAND_MEM | VTIO_PCI_COMMAND_IO;
    uint16_t cmd = (uint16_t)le_get(vd->vconfig + VTIO_PCI_COMMAND, 2);
    le_put(vd->vconfig + VTIO_PCI_COMMAND, (cmd & ~keep) | (val & keep), 2);
}

/* Device Control: Initiate FLR resets the function and reads back 0. */
static void exp_devctl_post(struct vfio_pci_device *vd)
{
    uint8_t *ctl = vd->vconfig + vd->cap_exp + VTIO_PCI_EXP_DEVCTL;
    uint16_t v = (uint16_t)le_get(ctl, 2);
    if (!(v & VTIO_PCI_EXP_DEVCTL_BCR_FLR))
        return;
    le_put(ctl, v & (uint16_t)~VTIO_PCI_EXP_DEVCTL_BCR_FLR, 2);
    if (vd->reset_works)
        vfio_pci_reset_function_locked(vd);
}

/* MSI control: enable only while SET_IRQS has MSI on, at most the vectors
 * it allocated; the result goes to the function too (Linux). */
static void msi_flags_post(struct vfio_pci_device *vd)
{
    uint16_t at = vd->cap_msi + VTIO_PCI_MSI_FLAGS;
    uint16_t flags = (uint16_t)le_get(vd->vconfig + at, 2);
    if (vd->irq_type != VFIO_PCI_MSI_IRQ_INDEX)
        flags &= (uint16_t)~VTIO_PCI_MSI_FLAGS_ENABLE;
    unsigned qsize = (flags & VTIO_PCI_MSI_FLAGS_QSIZE) >> 4;
    if (qsize > vd->msi_qmax)
        flags = (uint16_t)((flags & ~VTIO_PCI_MSI_FLAGS_QSIZE) | vd->msi_qmax << 4);
    le_put(vd->vconfig + at, flags, 2);
    vtio_pci_cfg_write16(vd->fn, at, flags);
}

static void config_write(struct vfio_pci_device *vd, uint16_t pos, unsigned n, uint32_t val)
{
    bool command = pos == VTIO_PCI_COMMAND;
    if (command)
        command_pre(vd, val);
    default_write(vd, pos, n, val);
    if (command)
        command_post(vd, val);
    if (touches(pos, n, VTIO_PCI_BAR0, BAR_END - VTIO_PCI_BAR0) ||
        touches(pos, n, ROM_ADDRESS, 4))
        bar_fixup(vd);
    if (vd->cap_exp && touches(pos, n, vd->cap_exp + VTIO_PCI_EXP_DEVCTL, 2))
        exp_devctl_post(vd);
    if (vd->cap_msi && touches(pos, n, vd->cap_msi + VTIO_PCI_MSI_FLAGS, 2))
        msi_flags_post(vd);
}

ssize_t vfio_pci_config_rw(struct vfio_pci_device *vd, void *buf, size_t count, uint64_t pos,
                           bool write)
{
    uint16_t size = vd->fn->cap_exp ? VTIO_PCIE_CFG_SIZE : VTIO_PCI_CFG_SIZE;
    if (pos >= size || count > size - pos)
        return vtio_fail(-EFAULT, "vfio-pci: config access [%#llx, +%zu) is outside the "
                         "%u-byte space", (unsigned long long)pos, count, size);
    uint8_t *p = buf;
    for (size_t done = 0; done < count;) {
        uint16_t at = (uint16_t)(pos + done);
        unsigned n = (unsigned)vfio_pci_access_width(at, count - done, 4);
        if (write)
            config_write(vd, at, n, le_get(p + done, n));
        else
            le_put(p + done, config_read(vd, at, n), n);
        done += n;
    }
    return (ssize_t)count;
}
