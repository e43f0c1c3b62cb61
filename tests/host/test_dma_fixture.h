/*
 * Shared fixture of the DMA API tests (tests/host/test_dma_*.c and
 * tests/integration/test_dma_iommu.c).
 *
 * A booted host on a default machine in one of four set-ups: no IOMMU at
 * all, or the VT-d unit with strict (DMA), lazy (DMA-FQ) or passthrough
 * (identity) default domains.  `dev` is the first DMA engine's function
 * (00:03.0), `dev2` the second's when the machine has two.  Host messages
 * go to a log sink that keeps the last few (tests look for words in them)
 * instead of stderr, since several tests provoke faults on purpose.
 *
 * The device side is modelled by hand, the way a device reaches memory:
 * rig_dev_write/read translate each page through the VT-d unit
 * (vtio_vtd_translate: the IOTLB, the page walk, the fault recording) and
 * then access RAM as a device (vtio_mem_dev_*); without a unit the DMA
 * address is the physical address.  They are for one thread; a test that
 * needs a device on its own thread uses a vtio_dma_port (which brackets
 * accesses for the unit's in-flight drain).
 */
#ifndef VTIO_TESTS_HOST_DMA_FIXTURE_H
#define VTIO_TESTS_HOST_DMA_FIXTURE_H

#include <vtio/device.h>
#include <vtio/dma.h>
#include <vtio/host.h>
#include <vtio/iommu.h>
#include <vtio/machine.h>
#include <vtio/mem.h>
#include <vtio/page_alloc.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>
#include <vtio/vtd.h>
#include <vtio/vtd_regs.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

#define RIG_4G      0x100000000ull
#define RIG_LOG_KEEP 16

enum rig_mode { RIG_NO_IOMMU, RIG_STRICT, RIG_LAZY, RIG_PASSTHROUGH, RIG_MODES };

static const char *const rig_mode_name[RIG_MODES] = { "no-iommu", "strict", "lazy",
                                                      "passthrough" };

struct rig_log {
    pthread_mutex_t lock;
    unsigned count;
    char msg[RIG_LOG_KEEP][256];
};

struct rig {
    enum rig_mode mode;
    struct vtio_machine *m;
    struct vtio_host *h;
    struct vtio_device *dev, *dev2;
    struct rig_log log;
};

static inline void rig_log_fn(void *opaque, int level, const char *msg)
{
    (void)level;
    struct rig_log *l = opaque;
    pthread_mutex_lock(&l->lock);
    snprintf(l->msg[l->count++ % RIG_LOG_KEEP], sizeof(l->msg[0]), "%s", msg);
    pthread_mutex_unlock(&l->lock);
}

/* Whether one of the last messages contains word. */
static inline bool rig_log_has(struct rig *r, const char *word)
{
    bool found = false;
    pthread_mutex_lock(&r->log.lock);
    for (unsigned i = 0; i < RIG_LOG_KEEP && !found; i++)
        found = strstr(r->log.msg[i], word) != NULL;
    pthread_mutex_unlock(&r->log.lock);
    return found;
}

/* The options of a mode on top of `extra` (NULL: none). */
static inline struct vtio_host_options rig_options(struct rig *r, enum rig_mode mode,
                                                   const struct vtio_host_options *extra)
{
    struct vtio_host_options o = extra ? *extra : (struct vtio_host_options){ 0 };
    o.iommu_mode = mode == RIG_STRICT        ? VTIO_HOST_IOMMU_STRICT
                   : mode == RIG_PASSTHROUGH ? VTIO_HOST_IOMMU_PASSTHROUGH
                                             : VTIO_HOST_IOMMU_LAZY;
    o.log_fn = rig_log_fn;
    o.log_opaque = &r->log;
    o.log_level = VTIO_LOG_INFO;
    return o;
}

static inline void rig_up_cfg(struct rig *r, enum rig_mode mode,
                              const struct vtio_machine_config *cfg,
                              const struct vtio_host_options *extra)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->log.lock, NULL);
    r->mode = mode;
    struct vtio_machine_config mc = *cfg;
    mc.no_iommu = mode == RIG_NO_IOMMU;
    CHECK_OK(vtio_machine_create(&mc, &r->m));
    struct vtio_host_options o = rig_options(r, mode, extra);
    CHECK_OK(vtio_host_boot_opts(r->m, &o, &r->h));
    r->dev = vtio_host_device_by_rid(r->h, VTIO_PCI_RID(0, VTIO_MACHINE_FIRST_DEV, 0));
    r->dev2 = vtio_host_device_by_rid(r->h, VTIO_PCI_RID(0, VTIO_MACHINE_FIRST_DEV + 1, 0));
    CHECK(r->dev != NULL);
}

/* A machine with `ram` bytes (2 CPUs, two DMA engines) in `mode`. */
static inline void rig_up(struct rig *r, enum rig_mode mode, uint64_t ram,
                          const struct vtio_host_options *extra)
{
    struct vtio_machine_config mc = { .ram_size = ram, .ncpus = 2, .dma_engines = 2 };
    rig_up_cfg(r, mode, &mc, extra);
}

static inline void rig_down(struct rig *r)
{
    vtio_host_shutdown(r->h);
    vtio_machine_destroy(r->m);
    pthread_mutex_destroy(&r->log.lock);
}

static inline bool rig_translated(const struct rig *r)
{
    return r->mode == RIG_STRICT || r->mode == RIG_LAZY;
}

/* The domain dev's DMA API works on (NULL without an IOMMU). */
static inline struct vtio_iommu_domain *rig_domain(struct vtio_device *dev)
{
    struct vtio_iommu_group *g = vtio_iommu_group_get(dev);
    return g ? vtio_iommu_group_domain(g) : NULL;
}

/* A block of 2^order pages (flags: VTIO_PAGE_*); its physical address. */
static inline uint64_t rig_pages(struct rig *r, unsigned order, unsigned flags)
{
    uint64_t pa = 0;
    CHECK_OK(vtio_page_alloc(r->h->pages, order, flags, &pa));
    return pa;
}

static inline void *rig_va(struct rig *r, uint64_t pa)
{
    void *p = vtio_host_phys_to_virt(r->h, pa);
    CHECK(p != NULL);
    return p;
}

/*
 * The device's view of one DMA address: what the unit answers for a
 * request by dev (identity without a unit).  @returns 0 and *pa; -EFAULT
 * with *reason the fault reason.
 */
static inline int rig_dev_xlate(struct rig *r, struct vtio_device *dev, uint64_t addr,
                                bool write, uint64_t *pa, int *reason)
{
    *reason = 0;
    if (!r->m->vtd) {
        *pa = addr;
        return 0;
    }
    struct vtio_vtd_req req = { .sid = vtio_device_rid(dev), .addr = addr, .write = write };
    struct vtio_vtd_resp resp;
    int rc = vtio_vtd_translate(r->m->vtd, &req, &resp);
    *reason = resp.fault;
    if (rc == 0 && !(write ? resp.write : resp.read)) {
        *reason = write ? VTD_FR_WRITE : VTD_FR_READ;
        return -EFAULT;
    }
    *pa = resp.pa;
    return rc;
}

/* A device access of len bytes at DMA address addr, page by page.
 * @returns 0; -EFAULT (with *reason) at the first page refused. */
static inline int rig_dev_access(struct rig *r, struct vtio_device *dev, uint64_t addr,
                                 void *buf, size_t len, bool write, int *reason)
{
    int dummy;
    if (!reason)
        reason = &dummy;
    while (len) {
        size_t chunk = VTIO_PAGE_SIZE - (addr & (VTIO_PAGE_SIZE - 1));
        if (chunk > len)
            chunk = len;
        uint64_t pa;
        int rc = rig_dev_xlate(r, dev, addr, write, &pa, reason);
        if (rc == 0)
            rc = write ? vtio_mem_dev_write(r->m->mem, pa, buf, chunk)
                       : vtio_mem_dev_read(r->m->mem, pa, buf, chunk);
        if (rc < 0)
            return rc;
        addr += chunk;
        buf = (char *)buf + chunk;
        len -= chunk;
    }
    return 0;
}

static inline int rig_dev_write(struct rig *r, uint64_t addr, const void *buf, size_t len,
                                int *reason)
{
    return rig_dev_access(r, r->dev, addr, (void *)buf, len, true, reason);
}

static inline int rig_dev_read(struct rig *r, uint64_t addr, void *buf, size_t len,
                               int *reason)
{
    return rig_dev_access(r, r->dev, addr, buf, len, false, reason);
}

static inline struct vtio_dma_stats rig_stats(struct rig *r)
{
    struct vtio_dma_stats st;
    vtio_dma_get_stats(r->h, &st);
    return st;
}

#endif
