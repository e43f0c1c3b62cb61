/*
 * vfio-pci: what a VFIO device file does for one PCI function (Linux's
 * drivers/vfio/pci/vfio_pci_core.c and vfio_pci_rdwr.c).
 *
 * The file is a set of regions at fixed offsets (index << 40): BAR0-5, the
 * expansion ROM, the configuration space and legacy VGA.  GET_REGION_INFO
 * describes them; read/write reach them; mmap hands out a BAR as a register
 * window.  A BAR access through read/write is a CPU load or store on the
 * BAR as the host placed it, split into naturally aligned pieces of up to 8
 * bytes, and needs the program's memory decoding on (else -EIO, Linux's
 * memory_lock rule).  The MSI-X table is the host's: read/write skip it
 * (reads return all ones, writes are dropped) as current Linux does even
 * when the BAR may be mapped whole.  Whether it may: with interrupt
 * remapping on, a message the program writes into the table can only name
 * remapping entries the host made for this very function, so the BAR is
 * mappable whole and says so with VFIO_REGION_INFO_CAP_MSIX_MAPPABLE (Linux
 * since 4.16); without remapping the pages of the table are excluded from
 * mmap and a SPARSE_MMAP capability lists what is left (Linux before 4.16).
 * A BAR smaller than a page is not mappable: its page may hold another
 * function's registers (Linux reserves the rest of the page; the host placed
 * BARs long before VFIO came).
 *
 * Lifetime: create at bind, enable at the first open, disable at the last
 * close, destroy at unbind.  Enable puts the function in a known state:
 * bus mastering off, memory decoding on, a Function Level Reset, and that
 * state is saved.  Disable stops DMA (bus mastering off), frees every
 * interrupt and closes the program's eventfds, resets the function and
 * writes the saved state back, so nothing the program did survives it.
 *
 * Reset (VFIO_DEVICE_RESET, or the program setting FLR in its config
 * space) is Linux's pci_try_reset_function: save the function's state
 * (config header, PCIe control, MSI, and the MSI-X control word and table),
 * disable it, FLR, write the state back.  Interrupts therefore stay set up
 * across a reset, with the same messages, masks and eventfds, and the
 * virtual config space is untouched.  The host's PCI code has no
 * save/restore of its own, so this file keeps one.
 *
 * Locking: vfio_pci_priv.h.  Every entry point takes vd->lock; the region
 * and ioctl calls need the device enabled (-ENODEV otherwise: the core
 * hands out files only in between).
 */
#include <vtio/device.h>
#include <vtio/host.h>
#include <vtio/mem.h>

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "host/proc/proc_priv.h"
#include "host/vfio/vfio_pci_priv.h"
#include "util/error.h"

#define PAGE_ALIGN_UP(x) (((x) + VTIO_PAGE_SIZE - 1) & ~(VTIO_PAGE_SIZE - 1))
#define PAGE_ALIGN_DOWN(x) ((x) & ~(VTIO_PAGE_SIZE - 1))

/* MSI registers of a capability without 64-bit addresses. */
#define MSI_DATA_32 8
#define MSI_MASK_32 12
/* PCIe Link Control (pci.h names only what the bus model needs). */
#define EXP_LNKCTL 0x10

#define offsetofend(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

/* ------------------------------------------------------------------------
 * The function's BARs and MSI-X table as placed
 * ------------------------------------------------------------------------ */

/* Size of memory BAR i (0: empty slot, upper half, I/O, not placed). */
static uint64_t bar_size(const struct vfio_pci_device *vd, unsigned i)
{
    const struct vtio_pci_bar *b = &vd->fn->bar[i];
    return b->size && !b->is_io && b->base ? b->size : 0;
}

static bool bar_mmappable(const struct vfio_pci_device *vd, unsigned i)
{
    return bar_size(vd, i) >= VTIO_PAGE_SIZE;
}

static bool is_msix_bar(const struct vfio_pci_device *vd, unsigned i)
{
    return vd->fn->cap_msix && vd->fn->msix_table_bir == i;
}

static uint64_t msix_table_start(const struct vfio_pci_device *vd)
{
    return vd->fn->msix_table_offset;
}

static uint64_t msix_table_end(const struct vfio_pci_device *vd)
{
    return vd->fn->msix_table_offset +
           (uint64_t)vd->fn->msix_table_size * VTIO_PCI_MSIX_ENTRY_SIZE;
}

static uint16_t cfg_size(const struct vfio_pci_device *vd)
{
    return vd->fn->cap_exp ? VTIO_PCIE_CFG_SIZE : VTIO_PCI_CFG_SIZE;
}

/* ------------------------------------------------------------------------
 * Save, reset, restore
 * ------------------------------------------------------------------------ */

uint16_t vfio_pci_memory_force_on(struct vfio_pci_device *vd)
{
    uint16_t cmd = vtio_pci_cfg_read16(vd->fn, VTIO_PCI_COMMAND);
    if (!(cmd & VTIO_PCI_COMMAND_MEM))
        vtio_pci_cfg_write16(vd->fn, VTIO_PCI_COMMAND, cmd | VTIO_PCI_COMMAND_MEM);
    return cmd;
}

void vfio_pci_memory_restore(struct vfio_pci_device *vd, uint16_t cmd)
{
    if (!(cmd & VTIO_PCI_COMMAND_MEM))
        vtio_pci_cfg_write16(vd->fn, VTIO_PCI_COMMAND, cmd);
}

static struct vtio_mmio msix_table_mmio(const struct vfio_pci_device *vd)
{
    const struct vtio_pci_function *fn = vd->fn;
    return (struct vtio_mmio){
        .mem = fn->mem,
        .base = fn->bar[fn->msix_table_bir].base + msix_table_start(vd),
        .size = msix_table_end(vd) - msix_table_start(vd),
    };
}

/* Copies the MSI-X table out of (to_table false) or into the function. */
static void msix_table_copy(struct vfio_pci_device *vd, uint32_t *saved, bool to_table)
{
    struct vtio_mmio t = msix_table_mmio(vd);
    uint16_t cmd = vfio_pci_memory_force_on(vd);
    for (uint64_t off = 0; off < t.size; off += 4) {
        if (to_table)
            vtio_mmio_write32(&t, off, saved[off / 4]);
        else
            saved[off / 4] = vtio_mmio_read32(&t, off);
    }
    vfio_pci_memory_restore(vd, cmd);
}

static void msi_regs(const struct vfio_pci_device *vd, uint16_t *data, uint16_t *mask)
{
    uint8_t at = vd->fn->cap_msi;
    uint16_t flags = vtio_pci_cfg_read16(vd->fn, at + VTIO_PCI_MSI_FLAGS);
    bool is64 = flags & VTIO_PCI_MSI_FLAGS_64BIT;
    *data = (uint16_t)(at + (is64 ? VTIO_PCI_MSI_DATA_64 : MSI_DATA_32));
    *mask = flags & VTIO_PCI_MSI_FLAGS_MASKBIT
                ? (uint16_t)(at + (is64 ? VTIO_PCI_MSI_MASK_64 : MSI_MASK_32))
                : 0;
}

static void save_state(struct vfio_pci_device *vd, struct vfio_pci_saved_state *s)
{
    const struct vtio_pci_function *fn = vd->fn;
    for (unsigned i = 0; i < 16; i++)
        s->header[i] = vtio_pci_cfg_read32(fn, (uint16_t)(4 * i));
    if (fn->cap_exp) {
        s->exp_devctl = vtio_pci_cfg_read16(fn, fn->cap_exp + VTIO_PCI_EXP_DEVCTL) &
                        (uint16_t)~VTIO_PCI_EXP_DEVCTL_BCR_FLR;
        s->exp_lnkctl = vtio_pci_cfg_read16(fn, fn->cap_exp + EXP_LNKCTL);
    }
    if (fn->cap_msi) {
        uint16_t data, mask;
        msi_regs(vd, &data, &mask);
        s->msi_flags = vtio_pci_cfg_read16(fn, fn->cap_msi + VTIO_PCI_MSI_FLAGS);
        s->msi_addr_lo = vtio_pci_cfg_read32(fn, fn->cap_msi + VTIO_PCI_MSI_ADDRESS_LO);
        s->msi_addr_hi = vtio_pci_cfg_read32(fn, fn->cap_msi + VTIO_PCI_MSI_ADDRESS_HI);
        s->msi_data = vtio_pci_cfg_read16(fn, data);
        s->msi_mask = mask ? vtio_pci_cfg_read32(fn, mask) : 0;
    }
    if (fn->cap_msix) {
        s->msix_flags = vtio_pci_cfg_read16(fn, fn->cap_msix + VTIO_PCI_MSIX_FLAGS);
        if (s->msix_flags & VTIO_PCI_MSIX_FLAGS_ENABLE)
            msix_table_copy(vd, s->msix_table, false);
    }
}

static void restore_msi(struct vfio_pci_device *vd, const struct vfio_pci_saved_state *s)
{
    const struct vtio_pci_function *fn = vd->fn;
    uint16_t data, mask;
    msi_regs(vd, &data, &mask);
    vtio_pci_cfg_write32(fn, fn->cap_msi + VTIO_PCI_MSI_ADDRESS_LO, s->msi_addr_lo);
    if (s->msi_flags & VTIO_PCI_MSI_FLAGS_64BIT)
        vtio_pci_cfg_write32(fn, fn->cap_msi + VTIO_PCI_MSI_ADDRESS_HI, s->msi_addr_hi);
    vtio_pci_cfg_write16(fn, data, s->msi_data);
    if (mask)
        vtio_pci_cfg_write32(fn, mask, s->msi_mask);
    vtio_pci_cfg_write16(fn, fn->cap_msi + VTIO_PCI_MSI_FLAGS, s->msi_flags);
}

/* As Linux restores MSI-X: enabled with the function masked while the
 * entries are written, then the saved control word. */
static void restore_msix(struct vfio_pci_device *vd, const struct vfio_pci_saved_state *s)
{
    uint16_t at = vd->fn->cap_msix + VTIO_PCI_MSIX_FLAGS;
    vtio_pci_cfg_write16(vd->fn, at, s->msix_flags | VTIO_PCI_MSIX_FLAGS_MASKALL);
    msix_table_copy(vd, s->msix_table, true);
    vtio_pci_cfg_write16(vd->fn, at, s->msix_flags);
}

static void restore_state(struct vfio_pci_device *vd, const struct vfio_pci_saved_state *s)
{
    const struct vtio_pci_function *fn = vd->fn;
    if (fn->cap_exp) {
        vtio_pci_cfg_write16(fn, fn->cap_exp + VTIO_PCI_EXP_DEVCTL, s->exp_devctl);
        vtio_pci_cfg_write16(fn, fn->cap_exp + EXP_LNKCTL, s->exp_lnkctl);
    }
    /* From the top down, as Linux: the BARs before COMMAND turns decoding
     * on; dword 0 (the ids) is read-only. */
    for (unsigned i = 15; i >= 1; i--)
        if (vtio_pci_cfg_read32(fn, (uint16_t)(4 * i)) != s->header[i])
            vtio_pci_cfg_write32(fn, (uint16_t)(4 * i), s->header[i]);
    if (fn->cap_msi && (s->msi_flags & VTIO_PCI_MSI_FLAGS_ENABLE))
        restore_msi(vd, s);
    if (fn->cap_msix && (s->msix_flags & VTIO_PCI_MSIX_FLAGS_ENABLE))
        restore_msix(vd, s);
}

static void do_flr(struct vfio_pci_device *vd)
{
    uint16_t at = vd->fn->cap_exp + VTIO_PCI_EXP_DEVCTL;
    vtio_pci_cfg_write16(vd->fn, at,
                         vtio_pci_cfg_read16(vd->fn, at) | VTIO_PCI_EXP_DEVCTL_BCR_FLR);
}

int vfio_pci_reset_function_locked(struct vfio_pci_device *vd)
{
    if (!vd->reset_works)
        return vtio_fail(-EINVAL, "vfio-pci: %s cannot reset (no FLR)",
                         vtio_device_name(vd->dev));
    save_state(vd, &vd->reset_state);
    /* pci_dev_save_and_disable: no decoding, no DMA, during the reset */
    vtio_pci_cfg_write16(vd->fn, VTIO_PCI_COMMAND, VTIO_PCI_COMMAND_INTX_DISABLE);
    do_flr(vd);
    restore_state(vd, &vd->reset_state);
    return 0;
}

/* ------------------------------------------------------------------------
 * Lifetime
 * ------------------------------------------------------------------------ */

static void free_saved_tables(struct vfio_pci_device *vd)
{
    free(vd->open_state.msix_table);
    free(vd->reset_state.msix_table);
}

int vfio_pci_device_create(struct vtio_device *dev, struct vfio_pci_device **out)
{
    const struct vtio_pci_function *fn = dev ? vtio_device_pci(dev) : NULL;
    if (!fn || !out)
        return vtio_fail(-EINVAL, "vfio-pci: create needs a PCI device and an output");
    struct vfio_pci_device *vd = calloc(1, sizeof(*vd));
    if (!vd)
        return vtio_fail(-ENOMEM, "vfio-pci: out of memory");
    vd->dev = dev;
    vd->h = vtio_device_host(dev);
    vd->fn = fn;
    if (fn->cap_msix) {
        size_t n = (size_t)fn->msix_table_size * VTIO_PCI_MSIX_ENTRY_SIZE / 4;
        vd->open_state.msix_table = calloc(n, sizeof(uint32_t));
        vd->reset_state.msix_table = calloc(n, sizeof(uint32_t));
        if (!vd->open_state.msix_table || !vd->reset_state.msix_table) {
            free_saved_tables(vd);
            free(vd);
            return vtio_fail(-ENOMEM, "vfio-pci: out of memory");
        }
    }
    vd->reset_works = fn->cap_exp && (vtio_pci_cfg_read32(fn, fn->cap_exp + VTIO_PCI_EXP_DEVCAP) &
                                      VTIO_PCI_EXP_DEVCAP_FLR);
    pthread_mutex_init(&vd->lock, NULL);
    vfio_pci_irq_init(vd);
    *out = vd;
    return 0;
}

void vfio_pci_device_destroy(struct vfio_pci_device *vd)
{
    if (!vd)
        return;
    vfio_pci_disable(vd);
    pthread_mutex_destroy(&vd->lock);
    free_saved_tables(vd);
    free(vd);
}

int vfio_pci_enable(struct vfio_pci_device *vd)
{
    if (!vd)
        return vtio_fail(-EINVAL, "vfio-pci: NULL device");
    pthread_mutex_lock(&vd->lock);
    int rc = 0;
    if (vd->enabled) {
        rc = vtio_fail(-EBUSY, "vfio-pci: %s is already enabled", vtio_device_name(vd->dev));
    } else {
        /* Linux: no bus mastering in the state we save; pci_enable_device
         * turns memory decoding on; then a reset if the function has one. */
        vtio_pci_set_master(vd->fn, false);
        vtio_pci_cfg_write16(vd->fn, VTIO_PCI_COMMAND,
                             vtio_pci_cfg_read16(vd->fn, VTIO_PCI_COMMAND) |
                                 VTIO_PCI_COMMAND_MEM);
        if (vd->reset_works)
            vfio_pci_reset_function_locked(vd);
        save_state(vd, &vd->open_state);
        vfio_pci_config_init(vd);
        vd->enabled = true;
    }
    pthread_mutex_unlock(&vd->lock);
    return rc;
}

void vfio_pci_disable(struct vfio_pci_device *vd)
{
    if (!vd)
        return;
    pthread_mutex_lock(&vd->lock);
    if (vd->enabled) {
        vtio_pci_set_master(vd->fn, false);
        vfio_pci_irq_teardown(vd);
        vtio_pci_cfg_write16(vd->fn, VTIO_PCI_COMMAND, VTIO_PCI_COMMAND_INTX_DISABLE);
        if (vd->reset_works)
            do_flr(vd);
        restore_state(vd, &vd->open_state);
        vd->enabled = false;
    }
    pthread_mutex_unlock(&vd->lock);
}

/* ------------------------------------------------------------------------
 * GET_INFO, GET_REGION_INFO
 * ------------------------------------------------------------------------ */

static long ioctl_get_info(struct vfio_pci_device *vd, void *arg)
{
    struct vfio_device_info info = { 0 };
    size_t minsz = offsetofend(struct vfio_device_info, num_irqs);
    memcpy(&info, arg, minsz);
    if (info.argsz < minsz)
        return vtio_fail(-EINVAL, "vfio-pci: GET_INFO argsz %u < %zu", info.argsz, minsz);
    /* cap_offset is copied back only to callers that know it (Linux). */
    if (info.argsz >= offsetofend(struct vfio_device_info, cap_offset))
        minsz = offsetofend(struct vfio_device_info, cap_offset);
    info.flags = VFIO_DEVICE_FLAGS_PCI | (vd->reset_works ? VFIO_DEVICE_FLAGS_RESET : 0);
    info.num_regions = VFIO_PCI_NUM_REGIONS;
    info.num_irqs = VFIO_PCI_NUM_IRQS;
    info.cap_offset = 0;
    return vfio_info_copy_out(arg, info.argsz, &info, minsz, NULL, &info.flags,
                              VFIO_DEVICE_FLAGS_CAPS, &info.cap_offset);
}

/* The parts of the MSI-X BAR outside the pages of the table. */
static int add_sparse_mmap_cap(struct vfio_pci_device *vd, uint64_t bar_len,
                               struct vfio_info_cap *caps)
{
    struct vfio_region_sparse_mmap_area areas[2];
    uint32_t n = 0;
    uint64_t lo = PAGE_ALIGN_DOWN(msix_table_start(vd));
    uint64_t hi = PAGE_ALIGN_UP(msix_table_end(vd));
    if (lo > 0)
        areas[n++] = (struct vfio_region_sparse_mmap_area){ .offset = 0, .size = lo };
    if (hi < bar_len)
        areas[n++] = (struct vfio_region_sparse_mmap_area){ .offset = hi, .size = bar_len - hi };
    size_t size = sizeof(struct vfio_region_info_cap_sparse_mmap) + n * sizeof(areas[0]);
    struct vfio_info_cap_header *h = vfio_info_cap_add(caps, size,
                                                       VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1);
    if (!h)
        return -ENOMEM;
    struct vfio_region_info_cap_sparse_mmap *sparse = (void *)h;
    sparse->nr_areas = n;
    memcpy(sparse->areas, areas, n * sizeof(areas[0]));
    return 0;
}

static int add_msix_cap(struct vfio_pci_device *vd, uint64_t bar_len, struct vfio_info_cap *caps)
{
    if (!vd->h->irq_remap)
        return add_sparse_mmap_cap(vd, bar_len, caps);
    return vfio_info_cap_add(caps, sizeof(struct vfio_info_cap_header),
                             VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, 1)
               ? 0
               : -ENOMEM;
}

/* Fills info for a BAR region (index < 6). */
static int bar_region_info(struct vfio_pci_device *vd, struct vfio_region_info *info,
                           struct vfio_info_cap *caps)
{
    info->size = bar_size(vd, info->index);
    if (!info->size)
        return 0;
    info->flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    if (!bar_mmappable(vd, info->index))
        return 0;
    info->flags |= VFIO_REGION_INFO_FLAG_MMAP;
    return is_msix_bar(vd, info->index) ? add_msix_cap(vd, info->size, caps) : 0;
}

static long ioctl_get_region_info(struct vfio_pci_device *vd, void *arg)
{
    struct vfio_region_info info = { 0 };
    size_t minsz = offsetofend(struct vfio_region_info, offset);
    memcpy(&info, arg, minsz);
    if (info.argsz < minsz)
        return vtio_fail(-EINVAL, "vfio-pci: GET_REGION_INFO argsz %u < %zu", info.argsz,
                         minsz);
    struct vfio_info_cap caps = { 0 };
    int rc = 0;
    info.flags = 0;
    info.size = 0;
    info.cap_offset = 0;
    info.offset = VFIO_PCI_INDEX_TO_OFFSET(info.index);
    switch (info.index) {
    case VFIO_PCI_CONFIG_REGION_INDEX:
        info.size = cfg_size(vd);
        info.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        break;
    case VFIO_PCI_BAR0_REGION_INDEX ... VFIO_PCI_BAR5_REGION_INDEX:
        rc = bar_region_info(vd, &info, &caps);
        break;
    case VFIO_PCI_ROM_REGION_INDEX:
        break;    /* no expansion ROM: size 0 (Linux) */
    case VFIO_PCI_VGA_REGION_INDEX:
        return vtio_fail(-EINVAL, "vfio-pci: %s is not a VGA device",
                         vtio_device_name(vd->dev));
    default:
        return vtio_fail(-EINVAL, "vfio-pci: no region %u", info.index);
    }
    if (rc == 0)
        rc = vfio_info_copy_out(arg, info.argsz, &info, minsz, &caps, &info.flags,
                                VFIO_REGION_INFO_FLAG_CAPS, &info.cap_offset);
    else
        rc = vtio_fail(rc, "vfio-pci: out of memory");
    vfio_info_cap_free(&caps);
    return rc;
}

/* ------------------------------------------------------------------------
 * Region read/write
 * ------------------------------------------------------------------------ */

/* One load or store of w bytes at physical pa. */
static void bar_access(struct vtio_mem *mem, uint64_t pa, uint8_t *buf, size_t w, bool write)
{
    uint64_t v = 0;
    if (write)
        memcpy(&v, buf, w);
    switch (w) {
    case 8:
        if (write)
            vtio_mem_write64(mem, pa, v);
        else
            v = vtio_mem_read64(mem, pa);
        break;
    case 4:
        if (write)
            vtio_mem_write32(mem, pa, (uint32_t)v);
        else
            v = vtio_mem_read32(mem, pa);
        break;
    case 2:
        if (write)
            vtio_mem_write16(mem, pa, (uint16_t)v);
        else
            v = vtio_mem_read16(mem, pa);
        break;
    default:
        if (write)
            vtio_mem_write8(mem, pa, (uint8_t)v);
        else
            v = vtio_mem_read8(mem, pa);
        break;
    }
    if (!write)
        memcpy(buf, &v, w);
}

/* Linux's do_io_rw: pieces outside [x_start, x_end) go to the BAR, the
 * excluded range (the MSI-X table) reads all ones and drops writes. */
static ssize_t bar_rw(struct vfio_pci_device *vd, unsigned bar, uint8_t *buf, size_t count,
                      uint64_t pos, bool write)
{
    uint64_t size = bar_size(vd, bar);
    if (!size)
        return vtio_fail(-EINVAL, "vfio-pci: %s has no BAR%u", vtio_device_name(vd->dev), bar);
    if (pos >= size)
        return vtio_fail(-EINVAL, "vfio-pci: offset %#llx is past BAR%u (%#llx bytes)",
                         (unsigned long long)pos, bar, (unsigned long long)size);
    if (!vfio_pci_memory_enabled(vd))
        return vtio_fail(-EIO, "vfio-pci: BAR%u access with memory decoding off", bar);
    if (count > size - pos)
        count = (size_t)(size - pos);
    uint64_t x_start = 0, x_end = 0;
    if (is_msix_bar(vd, bar)) {
        x_start = msix_table_start(vd);
        x_end = msix_table_end(vd);
    }
    uint64_t base = vd->fn->bar[bar].base;
    size_t done = 0;
    while (done < count) {
        uint64_t at = pos + done;
        size_t left = count - done, n;
        if (at >= x_start && at < x_end) {
            n = left < x_end - at ? left : (size_t)(x_end - at);
            if (!write)
                memset(buf + done, 0xff, n);
        } else {
            size_t fillable = at < x_start && x_start - at < left ? (size_t)(x_start - at) : left;
            n = vfio_pci_access_width(at, fillable, 8);
            bar_access(vd->fn->mem, base + at, buf + done, n, write);
        }
        done += n;
    }
    return (ssize_t)done;
}

ssize_t vfio_pci_rw(struct vfio_pci_device *vd, void *buf, size_t count, uint64_t off,
                    bool write)
{
    if (!vd || (!buf && count))
        return vtio_fail(-EFAULT, "vfio-pci: no buffer");
    uint64_t index = VFIO_PCI_OFFSET_TO_INDEX(off), pos = off & VFIO_PCI_OFFSET_MASK;
    pthread_mutex_lock(&vd->lock);
    ssize_t rc;
    if (!vd->enabled)
        rc = vtio_fail(-ENODEV, "vfio-pci: device not open");
    else if (index == VFIO_PCI_CONFIG_REGION_INDEX)
        rc = vfio_pci_config_rw(vd, buf, count, pos, write);
    else if (index <= VFIO_PCI_BAR5_REGION_INDEX)
        rc = bar_rw(vd, (unsigned)index, buf, count, pos, write);
    else
        rc = vtio_fail(-EINVAL, "vfio-pci: offset %#llx is in no region (index %llu)",
                       (unsigned long long)off, (unsigned long long)index);
    pthread_mutex_unlock(&vd->lock);
    return rc;
}

/* ------------------------------------------------------------------------
 * mmap
 * ------------------------------------------------------------------------ */

static int check_mmap(struct vfio_pci_device *vd, uint64_t index, uint64_t pos, uint64_t len,
                      unsigned prot)
{
    if (index > VFIO_PCI_BAR5_REGION_INDEX || !bar_mmappable(vd, (unsigned)index))
        return vtio_fail(-EINVAL, "vfio-pci: region %llu cannot be mapped",
                         (unsigned long long)index);
    if (prot & ~(unsigned)(VTIO_PROT_READ | VTIO_PROT_WRITE))
        return vtio_fail(-EINVAL, "vfio-pci: mmap protection %#x", prot);
    uint64_t size = PAGE_ALIGN_UP(bar_size(vd, (unsigned)index));
    if (len == 0 || pos % VTIO_PAGE_SIZE || len > size || pos > size - PAGE_ALIGN_UP(len))
        return vtio_fail(-EINVAL, "vfio-pci: mmap of [%#llx, +%#llx) does not fit BAR%llu "
                         "(page-aligned offset, %#llx bytes)", (unsigned long long)pos,
                         (unsigned long long)len, (unsigned long long)index,
                         (unsigned long long)size);
    /* Without interrupt remapping the table's pages stay the host's. */
    uint64_t end = pos + PAGE_ALIGN_UP(len);
    if (is_msix_bar(vd, (unsigned)index) && !vd->h->irq_remap &&
        pos < msix_table_end(vd) && end > msix_table_start(vd))
        return vtio_fail(-EINVAL, "vfio-pci: mmap of BAR%llu overlaps the MSI-X table",
                         (unsigned long long)index);
    return 0;
}

int vfio_pci_mmap(struct vfio_pci_device *vd, uint64_t off, uint64_t len, unsigned prot,
                  struct vtio_mmio *out)
{
    if (!vd || !out)
        return vtio_fail(-EINVAL, "vfio-pci: mmap needs a device and an output");
    uint64_t index = VFIO_PCI_OFFSET_TO_INDEX(off), pos = off & VFIO_PCI_OFFSET_MASK;
    pthread_mutex_lock(&vd->lock);
    int rc = vd->enabled ? check_mmap(vd, index, pos, len, prot)
                         : vtio_fail(-ENODEV, "vfio-pci: device not open");
    if (rc == 0)
        *out = (struct vtio_mmio){ .mem = vd->fn->mem,
                                   .base = vd->fn->bar[index].base + pos,
                                   .size = len };
    pthread_mutex_unlock(&vd->lock);
    return rc;
}

/* ------------------------------------------------------------------------
 * ioctl
 * ------------------------------------------------------------------------ */

static long ioctl_locked(struct vfio_pci_device *vd, unsigned long request, void *arg)
{
    if (request == VFIO_DEVICE_RESET)
        return vfio_pci_reset_function_locked(vd);
    if (request != VFIO_DEVICE_GET_INFO && request != VFIO_DEVICE_GET_REGION_INFO &&
        request != VFIO_DEVICE_GET_IRQ_INFO && request != VFIO_DEVICE_SET_IRQS)
        return vtio_fail(-ENOTTY, "vfio-pci: unknown ioctl %#lx", request);
    if (!arg)
        return vtio_fail(-EFAULT, "vfio-pci: ioctl %#lx without its structure", request);
    switch (request) {
    case VFIO_DEVICE_GET_INFO:
        return ioctl_get_info(vd, arg);
    case VFIO_DEVICE_GET_REGION_INFO:
        return ioctl_get_region_info(vd, arg);
    case VFIO_DEVICE_GET_IRQ_INFO:
        return vfio_pci_ioctl_get_irq_info(vd, arg);
    default:
        return vfio_pci_ioctl_set_irqs(vd, arg);
    }
}

long vfio_pci_ioctl(struct vfio_pci_device *vd, unsigned long request, unsigned long arg)
{
    if (!vd)
        return vtio_fail(-EINVAL, "vfio-pci: NULL device");
    pthread_mutex_lock(&vd->lock);
    long rc = vd->enabled ? ioctl_locked(vd, request, (void *)(uintptr_t)arg)
                          : vtio_fail(-ENODEV, "vfio-pci: device not open");
    pthread_mutex_unlock(&vd->lock);
    return rc;
}
