/*
 * PCI enumeration through ECAM, as an OS does it at boot.
 *
 * Steps (vtio_pci_enumerate):
 *  1. scan: for every bus of the firmware's range and every device, read
 *     function 0's vendor id (all ones: nothing there); read functions 1-7
 *     only if function 0's header type has the multifunction bit.  Decode
 *     ids, class, header type and the capability list (at most
 *     MAX_CAPS entries are followed, so a looping list cannot hang us).
 *  2. size: with the function's memory and I/O decode off, write all ones
 *     to each BAR, read the size mask back, restore the BAR; a 64-bit BAR
 *     takes two slots.  Then COMMAND is restored.
 *  3. place: every memory BAR of every function, largest first (so each
 *     next base is already aligned and the window packs without holes),
 *     naturally aligned; 64-bit BARs in the 64-bit window (the 32-bit one if
 *     firmware gives none), 32-bit BARs in the 32-bit window.  All addresses
 *     are computed before any is written, so -ENOSPC leaves the bus as it
 *     was (sized and restored).
 *  4. write the BARs and set COMMAND.MEM on every function with one.
 *
 * Everything goes through vtio_mem_read/write on the ECAM window: this file
 * knows config-space layout, not the bus model.
 *
 * Threads: see pci_enum.h.  The function array never moves after
 * vtio_pci_enumerate() returns.
 */
#include <vtio/machine.h>
#include <vtio/mem.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "host/pci/pci_priv.h"
#include "util/error.h"

#define MAX_CAPS 48
#define MAX_FUNCTIONS (256 * 32 * 8)

/* ---- config accessors */

static bool cfg_ok(const struct vtio_pci_function *fn, uint16_t off, unsigned size)
{
    if (fn && off < VTIO_PCIE_CFG_SIZE && off % size == 0)
        return true;
    vtio_fail(-EINVAL, "pci: bad config access of %u bytes at %#x", size, off);
    return false;
}

uint32_t vtio_pci_cfg_read32(const struct vtio_pci_function *fn, uint16_t off)
{
    return cfg_ok(fn, off, 4) ? vtio_mem_read32(fn->mem, fn->cfg_base + off) : ~0u;
}

uint16_t vtio_pci_cfg_read16(const struct vtio_pci_function *fn, uint16_t off)
{
    return cfg_ok(fn, off, 2) ? vtio_mem_read16(fn->mem, fn->cfg_base + off) : 0xffff;
}

uint8_t vtio_pci_cfg_read8(const struct vtio_pci_function *fn, uint16_t off)
{
    return cfg_ok(fn, off, 1) ? vtio_mem_read8(fn->mem, fn->cfg_base + off) : 0xff;
}

void vtio_pci_cfg_write32(const struct vtio_pci_function *fn, uint16_t off, uint32_t v)
{
    if (cfg_ok(fn, off, 4))
        vtio_mem_write32(fn->mem, fn->cfg_base + off, v);
}

void vtio_pci_cfg_write16(const struct vtio_pci_function *fn, uint16_t off, uint16_t v)
{
    if (cfg_ok(fn, off, 2))
        vtio_mem_write16(fn->mem, fn->cfg_base + off, v);
}

void vtio_pci_cfg_write8(const struct vtio_pci_function *fn, uint16_t off, uint8_t v)
{
    if (cfg_ok(fn, off, 1))
        vtio_mem_write8(fn->mem, fn->cfg_base + off, v);
}

void vtio_pci_set_master(const struct vtio_pci_function *fn, bool on)
{
    if (!fn || !fn->priv)
        return;
    pthread_mutex_lock(&fn->priv->lock);
    uint16_t cmd = vtio_pci_cfg_read16(fn, VTIO_PCI_COMMAND);
    cmd = on ? (cmd | VTIO_PCI_COMMAND_MASTER) : (cmd & ~VTIO_PCI_COMMAND_MASTER);
    vtio_pci_cfg_write16(fn, VTIO_PCI_COMMAND, cmd);
    pthread_mutex_unlock(&fn->priv->lock);
}

int vtio_pci_bar_mmio(const struct vtio_pci_function *fn, unsigned bar,
                      struct vtio_mmio *out)
{
    if (!fn || !out || bar >= VTIO_PCI_NUM_BARS)
        return vtio_fail(-EINVAL, "pci: bad BAR index %u", bar);
    const struct vtio_pci_bar *b = &fn->bar[bar];
    if (b->size == 0 || b->is_io)
        return vtio_fail(-EINVAL, "pci: %02x:%02x.%u has no memory BAR %u", fn->bus,
                         fn->dev, fn->fn, bar);
    *out = (struct vtio_mmio){ .mem = fn->mem, .base = b->base, .size = b->size };
    return 0;
}

uint16_t vtio_pci_find_ext_capability(const struct vtio_pci_function *fn, uint16_t id)
{
    if (!fn || !fn->cap_exp)
        return 0;               /* conventional PCI: no extended space */
    uint16_t pos = VTIO_PCI_EXT_CAP_START;
    /* Each capability takes at least 4 bytes: a longer walk is a loop. */
    for (unsigned ttl = (VTIO_PCIE_CFG_SIZE - VTIO_PCI_EXT_CAP_START) / 4; ttl; ttl--) {
        uint32_t hdr = vtio_pci_cfg_read32(fn, pos);
        if (hdr == 0 || hdr == ~0u)
            return 0;
        if (VTIO_PCI_EXT_CAP_ID(hdr) == id)
            return pos;
        pos = (uint16_t)VTIO_PCI_EXT_CAP_NEXT(hdr);
        if (pos < VTIO_PCI_EXT_CAP_START)
            return 0;
    }
    return 0;
}

/* ---- lookup */

unsigned vtio_pci_count(const struct vtio_pci_enum *e)
{
    return e ? e->n : 0;
}

const struct vtio_pci_function *vtio_pci_get(const struct vtio_pci_enum *e, unsigned i)
{
    return e && i < e->n ? &e->fns[i] : NULL;
}

const struct vtio_pci_function *vtio_pci_find(const struct vtio_pci_enum *e,
                                              uint16_t vendor, uint16_t device,
                                              unsigned index)
{
    for (unsigned i = 0; e && i < e->n; i++) {
        const struct vtio_pci_function *f = &e->fns[i];
        if ((vendor == VTIO_PCI_ANY_ID || f->vendor_id == vendor) &&
            (device == VTIO_PCI_ANY_ID || f->device_id == device) && index-- == 0)
            return f;
    }
    return NULL;
}

const struct vtio_pci_function *vtio_pci_find_rid(const struct vtio_pci_enum *e,
                                                  uint16_t rid)
{
    for (unsigned i = 0; e && i < e->n; i++)
        if (e->fns[i].rid == rid)
            return &e->fns[i];
    return NULL;
}

/* ---- step 1: scan */

static uint64_t ecam_addr(const struct vtio_firmware *fw, unsigned bus, unsigned devfn)
{
    return fw->ecam_base + ((uint64_t)(bus - fw->bus_start) << 20) + ((uint64_t)devfn << 12);
}

static void read_caps(struct vtio_pci_function *f)
{
    if (!(vtio_pci_cfg_read16(f, VTIO_PCI_STATUS) & VTIO_PCI_STATUS_CAP_LIST))
        return;
    uint8_t p = vtio_pci_cfg_read8(f, VTIO_PCI_CAPABILITY_LIST) & 0xfc;
    for (unsigned n = 0; n < MAX_CAPS && p >= 0x40; n++) {
        uint8_t id = vtio_pci_cfg_read8(f, p);
        uint8_t next = vtio_pci_cfg_read8(f, p + 1) & 0xfc;
        if (id == VTIO_PCI_CAP_ID_MSI && !f->cap_msi)
            f->cap_msi = p;
        else if (id == VTIO_PCI_CAP_ID_EXP && !f->cap_exp)
            f->cap_exp = p;
        else if (id == VTIO_PCI_CAP_ID_MSIX && !f->cap_msix)
            f->cap_msix = p;
        p = next;
    }
    if (f->cap_msi) {
        uint16_t flags = vtio_pci_cfg_read16(f, f->cap_msi + VTIO_PCI_MSI_FLAGS);
        unsigned mmc = (flags & VTIO_PCI_MSI_FLAGS_QMASK) >> 1;
        f->msi_vectors = 1u << (mmc <= 5 ? mmc : 0);    /* 6, 7 are reserved */
        f->msi_64bit = flags & VTIO_PCI_MSI_FLAGS_64BIT;
        f->msi_maskable = flags & VTIO_PCI_MSI_FLAGS_MASKBIT;
    }
    if (f->cap_msix) {
        uint16_t flags = vtio_pci_cfg_read16(f, f->cap_msix + VTIO_PCI_MSIX_FLAGS);
        uint32_t t = vtio_pci_cfg_read32(f, f->cap_msix + VTIO_PCI_MSIX_TABLE);
        uint32_t b = vtio_pci_cfg_read32(f, f->cap_msix + VTIO_PCI_MSIX_PBA);
        f->msix_table_size = (flags & VTIO_PCI_MSIX_FLAGS_QSIZE) + 1u;
        f->msix_table_bir = t & VTIO_PCI_MSIX_BIR_MASK;
        f->msix_table_offset = t & ~(uint32_t)VTIO_PCI_MSIX_BIR_MASK;
        f->msix_pba_bir = b & VTIO_PCI_MSIX_BIR_MASK;
        f->msix_pba_offset = b & ~(uint32_t)VTIO_PCI_MSIX_BIR_MASK;
    }
}

/* Appends the function at (bus, devfn) if one answers.  @returns 1 added,
 * 0 nothing there, -ENOMEM. */
static int probe(struct vtio_pci_enum *e, unsigned *cap, unsigned bus, unsigned devfn)
{
    struct vtio_pci_function f = {
        .mem = e->mem,
        .cfg_base = ecam_addr(&e->fw, bus, devfn),
        .segment = e->fw.pci_segment,
        .rid = VTIO_PCI_RID(bus, devfn >> 3, devfn & 7),
        .bus = (uint8_t)bus,
        .dev = (uint8_t)(devfn >> 3),
        .fn = (uint8_t)(devfn & 7),
    };
    uint32_t id = vtio_pci_cfg_read32(&f, VTIO_PCI_VENDOR_ID);
    if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0)
        return 0;
    f.vendor_id = id & 0xffff;
    f.device_id = (uint16_t)(id >> 16);
    uint32_t cr = vtio_pci_cfg_read32(&f, VTIO_PCI_REVISION_ID);
    f.revision = cr & 0xff;
    f.class_code = cr >> 8;
    f.header_type = vtio_pci_cfg_read8(&f, VTIO_PCI_HEADER_TYPE);
    if ((f.header_type & 0x7f) == 0) {
        f.subsystem_vendor_id = vtio_pci_cfg_read16(&f, VTIO_PCI_SUBSYSTEM_VENDOR_ID);
        f.subsystem_id = vtio_pci_cfg_read16(&f, VTIO_PCI_SUBSYSTEM_ID);
    }
    read_caps(&f);

    if (e->n == *cap) {
        unsigned ncap = *cap ? *cap * 2 : 16;
        struct vtio_pci_function *a = realloc(e->fns, ncap * sizeof(*a));
        if (!a)
            return vtio_fail(-ENOMEM, "pci: out of memory while scanning");
        e->fns = a;
        *cap = ncap;
    }
    e->fns[e->n++] = f;
    return 1;
}

static int scan(struct vtio_pci_enum *e)
{
    unsigned cap = 0;
    for (unsigned bus = e->fw.bus_start; bus <= e->fw.bus_end; bus++) {
        for (unsigned dev = 0; dev < 32; dev++) {
            int rc = probe(e, &cap, bus, VTIO_PCI_DEVFN(dev, 0));
            if (rc < 0)
                return rc;
            if (rc == 0)
                continue;
            if (!(e->fns[e->n - 1].header_type & VTIO_PCI_HEADER_TYPE_MULTIFUNCTION))
                continue;
            for (unsigned fn = 1; fn < 8; fn++)
                if ((rc = probe(e, &cap, bus, VTIO_PCI_DEVFN(dev, fn))) < 0)
                    return rc;
        }
    }
    return 0;
}

/* ---- step 2: size */

static unsigned bar_slots(const struct vtio_pci_function *f)
{
    switch (f->header_type & 0x7f) {
    case 0: return 6;       /* endpoint */
    case 1: return 2;       /* PCI-to-PCI bridge */
    default: return 0;
    }
}

static uint32_t probe_mask(const struct vtio_pci_function *f, uint16_t off, uint32_t orig)
{
    vtio_pci_cfg_write32(f, off, ~0u);
    uint32_t m = vtio_pci_cfg_read32(f, off);
    vtio_pci_cfg_write32(f, off, orig);
    return m;
}

static void size_bars(struct vtio_pci_function *f)
{
    unsigned nslots = bar_slots(f);
    if (!nslots)
        return;
    uint16_t cmd = vtio_pci_cfg_read16(f, VTIO_PCI_COMMAND);
    vtio_pci_cfg_write16(f, VTIO_PCI_COMMAND,
                         cmd & ~(VTIO_PCI_COMMAND_MEM | VTIO_PCI_COMMAND_IO));
    for (unsigned i = 0; i < nslots; i++) {
        uint16_t off = (uint16_t)(VTIO_PCI_BAR0 + 4 * i);
        struct vtio_pci_bar *b = &f->bar[i];
        uint32_t orig = vtio_pci_cfg_read32(f, off);
        if (orig & 1) {                     /* I/O space: noted, not placed */
            uint32_t m = probe_mask(f, off, orig) & ~3u;
            b->is_io = m != 0;
            continue;
        }
        bool is64 = ((orig >> 1) & 3) == 2;
        if (is64 && i + 1 >= nslots)        /* a 64-bit BAR in the last slot */
            continue;
        uint64_t mask = probe_mask(f, off, orig) & ~0xfull;
        if (is64) {
            uint32_t orig_hi = vtio_pci_cfg_read32(f, off + 4);
            mask |= (uint64_t)probe_mask(f, off + 4, orig_hi) << 32;
        } else if (mask) {                  /* 0: an unimplemented BAR */
            mask |= 0xffffffff00000000ull;
        }
        uint64_t size = ~mask + 1;
        if (mask != 0 && (size & (size - 1)) == 0) {
            b->size = size;
            b->is_64bit = is64;
            b->prefetchable = (orig & VTIO_PCI_BAR_MEM_PREFETCH) != 0;
        }
        if (is64)
            i++;
    }
    vtio_pci_cfg_write16(f, VTIO_PCI_COMMAND, cmd);
}

/* ---- steps 3 and 4: place and enable */

struct placement {
    unsigned fn, bar;
    uint64_t size, base;
    bool use64;
};

static int by_size(const void *a, const void *b)
{
    const struct placement *x = a, *y = b;
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    if (x->fn != y->fn)
        return x->fn < y->fn ? -1 : 1;
    return x->bar < y->bar ? -1 : x->bar > y->bar;
}

static int place_bars(struct vtio_pci_enum *e)
{
    const struct vtio_firmware *fw = &e->fw;
    unsigned n = 0;
    for (unsigned i = 0; i < e->n; i++)
        for (unsigned b = 0; b < VTIO_PCI_NUM_BARS; b++)
            n += e->fns[i].bar[b].size && !e->fns[i].bar[b].is_io;
    if (!n)
        return 0;
    struct placement *p = calloc(n, sizeof(*p));
    if (!p)
        return vtio_fail(-ENOMEM, "pci: out of memory while placing BARs");
    n = 0;
    for (unsigned i = 0; i < e->n; i++)
        for (unsigned b = 0; b < VTIO_PCI_NUM_BARS; b++) {
            const struct vtio_pci_bar *bar = &e->fns[i].bar[b];
            if (bar->size && !bar->is_io)
                p[n++] = (struct placement){ .fn = i, .bar = b, .size = bar->size,
                                             .use64 = bar->is_64bit && fw->mmio64_size };
        }
    qsort(p, n, sizeof(*p), by_size);

    /* A 32-bit window must lie below 4 GiB to be of use. */
    uint64_t w32_end = fw->mmio32_base + fw->mmio32_size;
    if (w32_end > 0x100000000ull || w32_end < fw->mmio32_base)
        w32_end = fw->mmio32_base;
    uint64_t next[2] = { fw->mmio32_base, fw->mmio64_base };
    uint64_t end[2] = { w32_end, fw->mmio64_base + fw->mmio64_size };
    int rc = 0;
    for (unsigned i = 0; i < n && rc == 0; i++) {
        unsigned w = p[i].use64;
        uint64_t base = (next[w] + p[i].size - 1) & ~(p[i].size - 1);
        if (base < next[w] || base + p[i].size < base || base + p[i].size > end[w]) {
            const struct vtio_pci_function *f = &e->fns[p[i].fn];
            rc = vtio_fail(-ENOSPC, "pci: BAR %u of %02x:%02x.%u (%#llx bytes) does not "
                           "fit the %s-bit window", p[i].bar, f->bus, f->dev, f->fn,
                           (unsigned long long)p[i].size, w ? "64" : "32");
            break;
        }
        p[i].base = base;
        next[w] = base + p[i].size;
    }
    if (rc == 0) {
        for (unsigned i = 0; i < n; i++) {
            struct vtio_pci_function *f = &e->fns[p[i].fn];
            uint16_t off = (uint16_t)(VTIO_PCI_BAR0 + 4 * p[i].bar);
            vtio_pci_cfg_write32(f, off, (uint32_t)p[i].base);
            if (f->bar[p[i].bar].is_64bit)
                vtio_pci_cfg_write32(f, off + 4, (uint32_t)(p[i].base >> 32));
            f->bar[p[i].bar].base = p[i].base;
        }
        for (unsigned i = 0; i < e->n; i++) {
            struct vtio_pci_function *f = &e->fns[i];
            bool any = false;
            for (unsigned b = 0; b < VTIO_PCI_NUM_BARS; b++)
                any |= f->bar[b].size && !f->bar[b].is_io;
            if (any)
                vtio_pci_cfg_write16(f, VTIO_PCI_COMMAND,
                                     vtio_pci_cfg_read16(f, VTIO_PCI_COMMAND) |
                                         VTIO_PCI_COMMAND_MEM);
        }
    }
    free(p);
    return rc;
}

/* ---- the whole */

static void free_enum(struct vtio_pci_enum *e)
{
    for (unsigned i = 0; i < e->n; i++) {
        struct vtio_pci_fn_priv *p = e->fns[i].priv;
        if (p) {
            pthread_mutex_destroy(&p->lock);
            free(p->irq);
            free(p);
        }
    }
    free(e->fns);
    free(e);
}

int vtio_pci_enumerate(struct vtio_mem *mem, const struct vtio_firmware *fw,
                       struct vtio_pci_enum **out)
{
    if (!mem || !fw || !out)
        return vtio_fail(-EINVAL, "pci: NULL argument to enumerate");
    if (fw->ecam_base == 0 || fw->bus_end < fw->bus_start)
        return vtio_fail(-EINVAL, "pci: firmware describes no ECAM window");
    struct vtio_pci_enum *e = calloc(1, sizeof(*e));
    if (!e)
        return vtio_fail(-ENOMEM, "pci: out of memory");
    e->mem = mem;
    e->fw = *fw;
    atomic_init(&e->next_cpu, 0);

    int rc = scan(e);
    for (unsigned i = 0; rc == 0 && i < e->n; i++) {
        struct vtio_pci_fn_priv *p = calloc(1, sizeof(*p));
        if (!p) {
            rc = vtio_fail(-ENOMEM, "pci: out of memory");
            break;
        }
        pthread_mutex_init(&p->lock, NULL);
        p->owner = e;
        e->fns[i].priv = p;
    }
    for (unsigned i = 0; rc == 0 && i < e->n; i++)
        size_bars(&e->fns[i]);
    if (rc == 0)
        rc = place_bars(e);
    if (rc < 0) {
        free_enum(e);
        return rc;
    }
    *out = e;
    return 0;
}

void vtio_pci_enum_destroy(struct vtio_pci_enum *e)
{
    if (!e)
        return;
    for (unsigned i = 0; i < e->n; i++) {
        const struct vtio_pci_function *f = &e->fns[i];
        pthread_mutex_lock(&f->priv->lock);
        vtio_pci_irqs_teardown_locked(f);
        uint16_t cmd = vtio_pci_cfg_read16(f, VTIO_PCI_COMMAND);
        if (cmd & VTIO_PCI_COMMAND_MASTER)
            vtio_pci_cfg_write16(f, VTIO_PCI_COMMAND, cmd & ~VTIO_PCI_COMMAND_MASTER);
        pthread_mutex_unlock(&f->priv->lock);
    }
    free_enum(e);
}
