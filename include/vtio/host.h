/*
 * host: the operating system that runs on a vtio machine (the software
 * half of the house, src/host/).
 *
 * vtio_host_boot() does what a kernel does at boot with what firmware told
 * it, in this order:
 *  1. builds the physical page allocator from the RAM map and the CPUs'
 *     direct map of RAM (vtio_host_phys_to_virt / vtio_host_virt_to_phys);
 *  2. enumerates PCI through ECAM, places every BAR, and creates one
 *     struct vtio_device per function (include/vtio/device.h);
 *  3. if firmware describes IOMMUs (the DMAR table) and the options allow:
 *     brings the VT-d driver up (root table, invalidation queue, interrupt
 *     remapping, fault reporting), puts every device in an IOMMU group with
 *     a default domain, and turns translation on (include/vtio/iommu.h);
 *  4. sets up the DMA mapping layer: the bounce-buffer pool (swiotlb), the
 *     flush-queue timer and, if asked, DMA-API debugging (include/vtio/dma.h);
 *  5. with an IOMMU, VFIO (include/vtio/vfio.h), so that processes
 *     (include/vtio/process.h) can drive devices from userspace.
 * Drivers then find their functions, bind to their devices, enable bus
 * mastering and MSI-X (remapped, when interrupt remapping is on) and map
 * memory for DMA through the DMA API.
 *
 * The options are those of a Linux kernel command line; a string in that
 * syntax can be parsed into them (vtio_host_options_parse).
 *
 * Threads: boot and shutdown from one thread.  The page allocator, the irq
 * calls, the IOMMU and DMA APIs are thread-safe (see their headers).
 */
#ifndef VTIO_HOST_H
#define VTIO_HOST_H

#include <vtio/common.h>
#include <vtio/intr.h>
#include <vtio/machine.h>
#include <vtio/mmio.h>

struct vtio_page_alloc;
struct vtio_pci_enum;
struct vtio_device;
struct vtio_iommu;
struct vtio_dma;
struct vtio_direct_map;
struct vtio_irq_remap;
struct vtio_vfio;

/* The default domain of translated devices (iommu.passthrough, iommu.strict). */
enum vtio_host_iommu_mode {
    VTIO_HOST_IOMMU_LAZY = 0,    /* DMA-FQ: batched invalidation (Linux x86 default) */
    VTIO_HOST_IOMMU_STRICT,      /* DMA: every unmap waits for its invalidation */
    VTIO_HOST_IOMMU_PASSTHROUGH, /* identity: DMA address = physical address */
};

/* Where the host's messages go (like the kernel log). */
enum vtio_log_level { VTIO_LOG_ERR = 3, VTIO_LOG_WARN = 4, VTIO_LOG_INFO = 6, VTIO_LOG_DEBUG = 7 };
typedef void (*vtio_log_fn)(void *opaque, int level, const char *msg);

#define VTIO_HOST_MAX_UNTRUSTED 16

struct vtio_host_options {
    bool iommu_off;              /* intel_iommu=off: ignore the DMAR table */
    enum vtio_host_iommu_mode iommu_mode;
    bool scalable_mode;          /* intel_iommu=sm_on: scalable mode if the unit has it */
    bool no_intr_remap;          /* intremap=off */
    bool forcedac;               /* iommu.forcedac=1: no 32-bit IOVA first try */
    bool dma_debug;              /* dma_debug=on: DMA-API debugging (dma.h) */
    uint64_t swiotlb_bytes;      /* swiotlb=: bounce pool size; 0 = 64 MiB, capped
                                    to 1/8 of the RAM below 4 GiB */
    unsigned fq_size;            /* flush-queue entries per ring; 0 = 256 */
    unsigned fq_timeout_ms;      /* flush-queue time-out; 0 = 10 ms */
    /* Functions behind an external-facing port (ACPI ExternalFacingPort):
     * untrusted, always in a strict DMA domain, sub-page mappings bounced. */
    unsigned n_untrusted;
    uint16_t untrusted_rid[VTIO_HOST_MAX_UNTRUSTED];
    /* Messages: at or below log_level (0 = VTIO_LOG_WARN) go to log_fn
     * (NULL = stderr, prefixed "vtio: "). */
    int log_level;
    vtio_log_fn log_fn;
    void *log_opaque;
};

struct vtio_host {
    struct vtio_mem *mem;              /* the CPUs' view of memory */
    struct vtio_intr *intr;            /* the CPUs' interrupt vector tables */
    struct vtio_firmware fw;
    struct vtio_host_options opts;
    struct vtio_page_alloc *pages;     /* machine RAM for tables and buffers */
    struct vtio_direct_map *dmap;      /* RAM as the CPUs address it */
    struct vtio_pci_enum *pci;         /* what enumeration found */
    struct vtio_device **devices;      /* one per PCI function, scan order */
    unsigned n_devices;
    struct vtio_iommu *iommu;          /* IOMMU core; NULL: no IOMMU in use */
    struct vtio_irq_remap *irq_remap;  /* interrupt remapping; NULL: off */
    struct vtio_dma *dma;              /* DMA mapping layer */
    struct vtio_vfio *vfio;            /* VFIO (NULL: no IOMMU) */
};

/* Boots with the default options (all zero: IOMMU on if present, lazy DMA
 * domains, interrupt remapping on, no debugging).
 * @returns 0 and *out; -ENOMEM; -ENOSPC if the BARs do not fit the windows;
 * -EIO the IOMMU did not come up (message says why). */
VTIO_API int vtio_host_boot(struct vtio_machine *m, struct vtio_host **out);
/* The same with options (NULL = defaults); -EINVAL bad options. */
VTIO_API int vtio_host_boot_opts(struct vtio_machine *m, const struct vtio_host_options *o,
                                 struct vtio_host **out);
/* Undoes boot in reverse: VFIO, DMA layer, IOMMU (translation and
 * remapping off, tables freed), devices, PCI, allocator.  Drivers must be
 * removed and processes destroyed first. */
VTIO_API void vtio_host_shutdown(struct vtio_host *h);

/*
 * Parses a kernel command line into *o (which keeps what the line does not
 * mention): "intel_iommu=on|off|sm_on|sm_off", "iommu=pt|nopt",
 * "iommu.passthrough=0|1", "iommu.strict=0|1", "iommu.forcedac=0|1",
 * "intremap=on|off", "dma_debug=on|off", "swiotlb=<bytes>[K|M|G]",
 * "vtio.untrusted=<bus:dev.fn>[,...]", "loglevel=<n>".
 * @returns 0; -EINVAL an unknown word or bad value (message names it; *o
 * unchanged).
 */
VTIO_API int vtio_host_options_parse(struct vtio_host_options *o, const char *cmdline);

/*
 * The CPUs' direct map: every RAM byte has one host virtual address, as in a
 * kernel's linear map.  phys_to_virt returns NULL for an address that is not
 * RAM.  virt_to_phys is the pagemap lookup (/proc/self/pagemap's job): the
 * physical address behind a pointer into RAM; -EFAULT if it points elsewhere.
 * Both are lock-free and O(number of RAM ranges).
 */
VTIO_API void *vtio_host_phys_to_virt(struct vtio_host *h, uint64_t pa);
VTIO_API int vtio_host_virt_to_phys(struct vtio_host *h, const void *va, uint64_t *pa);

/* A message to the host log at `level` (printf format). */
VTIO_API void vtio_host_log(struct vtio_host *h, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
