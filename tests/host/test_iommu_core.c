/*
 * Tests of the IOMMU core (include/vtio/iommu.h, src/host/iommu/core.c and
 * group.c) with a fake hardware driver written here: its "page tables" are
 * an array of 4 KiB entries in host memory plus one allocator page per
 * 2 MiB region in use (so unmap has table pages to gather), and it records
 * every call the core makes.  The host boots with intel_iommu=off so the
 * VT-d driver stays out, and the test registers the fake itself.
 *
 * Grouping is checked on machines with extra functions plugged in (a
 * multi-function device) and, for bridges and ACS, which vtio's bus model
 * does not have, on a machine whose ECAM window is a config space the
 * test writes by hand: the host enumerates it through ECAM like any other.
 */
#include <vtio/host.h>
#include <vtio/intr.h>
#include <vtio/iommu.h>
#include <vtio/machine.h>
#include <vtio/mem.h>
#include <vtio/page_alloc.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "harness.h"
#include "host/iommu/iommu_priv.h"

#define PG        4096ull
#define APERTURE  ((1ull << 39) - 1)
#define ENGINE_RID(i) VTIO_PCI_RID(0, VTIO_MACHINE_FIRST_DEV + (i), 0)
#define NO_RID    (-1)

/* ------------------------------------------------------------------------
 * The fake driver
 * ------------------------------------------------------------------------ */

struct fake_entry {
    uint64_t iova, pa;
    unsigned prot;
};

struct fake_region {             /* a "table page" per 2 MiB in use */
    uint64_t base, pa;
};

struct fake_drv;

struct fake_domain {
    struct vtio_iommu_domain d;  /* first: the core's view */
    struct fake_drv *drv;
    pthread_mutex_t lock;
    struct fake_entry *e;
    size_t n, cap;
    struct fake_region region[64];
    unsigned n_region;
};

#define FAKE_MAX_DEVS 32

struct fake_drv {
    struct vtio_host *h;
    int unit;                    /* its address is the unit */
    int refuse_rid, fail_probe_rid, fail_attach_rid, force_rid;
    enum vtio_iommu_domain_type force_type;
    bool fail_alloc;
    /* what the core did */
    atomic_uint probes, releases, allocs, frees, attaches, maps, unmaps, syncs, flush_alls,
        fault_syncs, shutdowns;
    uint16_t dev_rid[FAKE_MAX_DEVS];
    struct vtio_iommu_domain *dev_domain[FAKE_MAX_DEVS];
    unsigned n_devs;
    /* the last iotlb_sync */
    pthread_mutex_t sync_lock;
    uint64_t sync_start, sync_end, sync_free_bytes;
    size_t sync_pages;
    /* faults fault_sync "finds" in hardware */
    struct vtio_iommu_fault pending[4];
    unsigned n_pending;
};

static struct vtio_iommu_domain *fake_attached(struct fake_drv *f, uint16_t rid)
{
    for (unsigned i = 0; i < f->n_devs; i++)
        if (f->dev_rid[i] == rid)
            return f->dev_domain[i];
    return NULL;
}

static int fake_attach(struct vtio_iommu_domain *d, struct vtio_device *dev)
{
    struct fake_drv *f = ((struct fake_domain *)d)->drv;
    if (f->fail_attach_rid == dev->rid)
        return -EIO;
    atomic_fetch_add(&f->attaches, 1);
    for (unsigned i = 0; i < f->n_devs; i++)
        if (f->dev_rid[i] == dev->rid) {
            f->dev_domain[i] = d;
            return 0;
        }
    if (f->n_devs < FAKE_MAX_DEVS) {
        f->dev_rid[f->n_devs] = dev->rid;
        f->dev_domain[f->n_devs++] = d;
    }
    return 0;
}

static struct fake_entry *find_entry(struct fake_domain *fd, uint64_t iova)
{
    for (size_t i = 0; i < fd->n; i++)
        if (fd->e[i].iova == iova)
            return &fd->e[i];
    return NULL;
}

static struct fake_region *find_region(struct fake_domain *fd, uint64_t iova)
{
    for (unsigned i = 0; i < fd->n_region; i++)
        if (fd->region[i].base == (iova & ~(VTIO_HUGE_SIZE - 1)))
            return &fd->region[i];
    return NULL;
}

static int fake_map(struct vtio_iommu_domain *d, uint64_t iova, uint64_t pa, uint64_t size,
                    unsigned prot)
{
    struct fake_domain *fd = (struct fake_domain *)d;
    int rc = 0;
    pthread_mutex_lock(&fd->lock);
    atomic_fetch_add(&fd->drv->maps, 1);
    for (uint64_t off = 0; off < size && rc == 0; off += PG)
        if (find_entry(fd, iova + off))
            rc = -EEXIST;
    for (uint64_t off = 0; off < size && rc == 0; off += PG) {
        if (!find_region(fd, iova + off)) {
            uint64_t tpa;
            if (fd->n_region == 64 || vtio_page_alloc(fd->drv->h->pages, 0, 0, &tpa) < 0) {
                rc = -ENOMEM;       /* (the test never gets here) */
                break;
            }
            fd->region[fd->n_region++] =
                (struct fake_region){ (iova + off) & ~(VTIO_HUGE_SIZE - 1), tpa };
        }
        if (fd->n == fd->cap) {
            fd->cap = fd->cap ? 2 * fd->cap : 64;
            fd->e = realloc(fd->e, fd->cap * sizeof(*fd->e));
        }
        fd->e[fd->n++] = (struct fake_entry){ iova + off, pa + off, prot };
    }
    pthread_mutex_unlock(&fd->lock);
    return rc;
}

static uint64_t fake_unmap(struct vtio_iommu_domain *d, uint64_t iova, uint64_t size,
                           struct vtio_iommu_gather *g)
{
    struct fake_domain *fd = (struct fake_domain *)d;
    uint64_t bytes = 0;
    pthread_mutex_lock(&fd->lock);
    atomic_fetch_add(&fd->drv->unmaps, 1);
    for (uint64_t off = 0; off < size; off += PG) {
        struct fake_entry *e = find_entry(fd, iova + off);
        if (!e)
            continue;
        *e = fd->e[--fd->n];
        bytes += PG;
        vtio_iommu_gather_add(g, iova + off, PG, PG);
    }
    /* table pages of regions left empty go to the gather */
    for (unsigned i = 0; i < fd->n_region;) {
        bool used = false;
        for (size_t j = 0; j < fd->n && !used; j++)
            used = (fd->e[j].iova & ~(VTIO_HUGE_SIZE - 1)) == fd->region[i].base;
        if (used) {
            i++;
            continue;
        }
        vtio_iommu_freelist_add(&g->freelist, fd->region[i].pa);
        fd->region[i] = fd->region[--fd->n_region];
    }
    pthread_mutex_unlock(&fd->lock);
    return bytes;
}

static void fake_iotlb_sync(struct vtio_iommu_domain *d, struct vtio_iommu_gather *g)
{
    struct fake_drv *f = ((struct fake_domain *)d)->drv;
    pthread_mutex_lock(&f->sync_lock);
    atomic_fetch_add(&f->syncs, 1);
    f->sync_start = g->start;
    f->sync_end = g->end;
    f->sync_pages = g->freelist.n;
    f->sync_free_bytes = vtio_page_alloc_free_bytes(f->h->pages);
    pthread_mutex_unlock(&f->sync_lock);
}

static void fake_flush_all(struct vtio_iommu_domain *d)
{
    atomic_fetch_add(&((struct fake_domain *)d)->drv->flush_alls, 1);
}

static int fake_iova_to_phys(struct vtio_iommu_domain *d, uint64_t iova, uint64_t *pa)
{
    struct fake_domain *fd = (struct fake_domain *)d;
    pthread_mutex_lock(&fd->lock);
    struct fake_entry *e = find_entry(fd, iova & ~(PG - 1));
    if (e)
        *pa = e->pa + (iova & (PG - 1));
    pthread_mutex_unlock(&fd->lock);
    return e ? 0 : -ENOENT;
}

static void fake_free(struct vtio_iommu_domain *d)
{
    struct fake_domain *fd = (struct fake_domain *)d;
    atomic_fetch_add(&fd->drv->frees, 1);
    for (unsigned i = 0; i < fd->n_region; i++)
        vtio_page_free(fd->drv->h->pages, fd->region[i].pa, 0);
    pthread_mutex_destroy(&fd->lock);
    free(fd->e);
    free(fd);
}

static const struct vtio_iommu_domain_ops fake_paging_ops = {
    .attach_dev = fake_attach, .map = fake_map, .unmap = fake_unmap,
    .iotlb_sync = fake_iotlb_sync, .flush_iotlb_all = fake_flush_all,
    .iova_to_phys = fake_iova_to_phys, .free = fake_free,
};
static const struct vtio_iommu_domain_ops fake_plain_ops = {   /* blocked, identity */
    .attach_dev = fake_attach, .free = fake_free,
};

static int fake_probe(void *drv, struct vtio_device *dev, void **unit)
{
    struct fake_drv *f = drv;
    if (f->refuse_rid == dev->rid)
        return -ENODEV;
    if (f->fail_probe_rid == dev->rid)
        return -EIO;
    atomic_fetch_add(&f->probes, 1);
    dev->iommu_priv = f;
    *unit = &f->unit;
    return 0;
}

static void fake_release(void *drv, struct vtio_device *dev)
{
    atomic_fetch_add(&((struct fake_drv *)drv)->releases, 1);
    dev->iommu_priv = NULL;
}

static struct vtio_iommu_domain *fake_domain_alloc(void *drv, void *unit,
                                                   enum vtio_iommu_domain_type t)
{
    struct fake_drv *f = drv;
    if (f->fail_alloc || unit != &f->unit)
        return NULL;
    struct fake_domain *fd = calloc(1, sizeof(*fd));
    fd->drv = f;
    pthread_mutex_init(&fd->lock, NULL);
    bool paging = t != VTIO_IOMMU_DOMAIN_BLOCKED && t != VTIO_IOMMU_DOMAIN_IDENTITY;
    fd->d.ops = paging ? &fake_paging_ops : &fake_plain_ops;
    fd->d.aperture_end = APERTURE;
    fd->d.pgsize_bitmap = PG | VTIO_HUGE_SIZE;
    atomic_fetch_add(&f->allocs, 1);
    return &fd->d;
}

static enum vtio_iommu_domain_type fake_def_type(void *drv, struct vtio_device *dev)
{
    struct fake_drv *f = drv;
    return f->force_rid == dev->rid ? f->force_type : 0;
}

static void fake_fault_sync(void *drv)
{
    struct fake_drv *f = drv;
    atomic_fetch_add(&f->fault_syncs, 1);
    for (unsigned i = 0; i < f->n_pending; i++)
        vtio_iommu_report_fault(f->h->iommu, &f->pending[i]);
    f->n_pending = 0;
}

static void fake_shutdown(void *drv)
{
    atomic_fetch_add(&((struct fake_drv *)drv)->shutdowns, 1);
}

#define FAKE_OPS(deferred)                                                      \
    {                                                                          \
        .name = "fake", .probe_device = fake_probe, .release_device = fake_release, \
        .domain_alloc = fake_domain_alloc, .def_domain_type = fake_def_type,   \
        .fault_sync = fake_fault_sync, .shutdown = fake_shutdown,              \
        .deferred_flush = (deferred),                                          \
    }
static const struct vtio_iommu_ops fake_ops = FAKE_OPS(true);
static const struct vtio_iommu_ops fake_ops_strict_only = FAKE_OPS(false);

/* ------------------------------------------------------------------------
 * A log sink
 * ------------------------------------------------------------------------ */

#define LOG_MAX 64
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_msg[LOG_MAX][256];
static int log_lvl[LOG_MAX];
static unsigned log_n;

static void capture_log(void *opaque, int level, const char *msg)
{
    (void)opaque;
    pthread_mutex_lock(&log_lock);
    if (log_n < LOG_MAX) {
        snprintf(log_msg[log_n], sizeof(log_msg[0]), "%s", msg);
        log_lvl[log_n] = level;
    }
    log_n++;
    pthread_mutex_unlock(&log_lock);
}

static void log_reset(void)
{
    pthread_mutex_lock(&log_lock);
    log_n = 0;
    pthread_mutex_unlock(&log_lock);
}

/* How many captured messages contain s. */
static unsigned log_count(const char *s)
{
    unsigned n = 0;
    for (unsigned i = 0; i < log_n && i < LOG_MAX; i++)
        n += strstr(log_msg[i], s) != NULL;
    return n;
}

/* ------------------------------------------------------------------------
 * Rigs
 * ------------------------------------------------------------------------ */

struct rig {
    struct vtio_machine *m;
    struct vtio_host *h;
    struct fake_drv drv;
};

static void fake_init(struct fake_drv *f, struct vtio_host *h)
{
    *f = (struct fake_drv){ .h = h, .refuse_rid = NO_RID, .fail_probe_rid = NO_RID,
                            .fail_attach_rid = NO_RID, .force_rid = NO_RID,
                            .sync_lock = PTHREAD_MUTEX_INITIALIZER };
}

/* A machine with `engines` DMA engines (plus what plug() adds), booted
 * with opts (NULL: defaults) and intel_iommu=off; the fake not yet
 * registered. */
static void rig_boot(struct rig *r, unsigned engines, const struct vtio_host_options *o,
                     void (*plug)(struct vtio_machine *m))
{
    struct vtio_machine_config mc = { .ram_size = 128 * VTIO_MiB, .dma_engines = engines,
                                      .dma_channels = 1 };
    r->m = NULL;
    r->h = NULL;
    CHECK_OK(vtio_machine_create(&mc, &r->m));
    if (plug)
        plug(r->m);
    struct vtio_host_options opts = { 0 };
    if (o)
        opts = *o;
    opts.iommu_off = true;
    opts.log_fn = capture_log;
    log_reset();
    CHECK_OK(vtio_host_boot_opts(r->m, &opts, &r->h));
    CHECK(!vtio_iommu_present(r->h));
    fake_init(&r->drv, r->h);
}

static void rig_up(struct rig *r, unsigned engines, const struct vtio_host_options *o)
{
    rig_boot(r, engines, o, NULL);
    CHECK_OK(vtio_iommu_register(r->h, &fake_ops, &r->drv));
    CHECK(vtio_iommu_present(r->h));
}

static void rig_down(struct rig *r)
{
    vtio_host_shutdown(r->h);
    vtio_machine_destroy(r->m);
}

static struct vtio_device *engine(struct rig *r, unsigned i)
{
    struct vtio_device *d = vtio_host_device_by_rid(r->h, ENGINE_RID(i));
    CHECK(d != NULL);
    return d;
}

static struct vtio_iommu_domain *default_domain(struct rig *r, unsigned i)
{
    struct vtio_iommu_group *g = vtio_iommu_group_get(engine(r, i));
    CHECK(g != NULL);
    return vtio_iommu_group_default_domain(g);
}

/* A multi-function device at 00:07.0-2 (no ACS: vtio's functions have no
 * extended capabilities). */
static void plug_multifunction(struct vtio_machine *m)
{
    for (unsigned fn = 0; fn < 3; fn++) {
        struct vtio_pci_dev_info info = {
            .name = "mf", .vendor_id = 0x8086, .device_id = 0x1234,
            .class_code = 0x020000, .multifunction = fn == 0,
        };
        struct vtio_pci_dev *dev;
        CHECK_OK(vtio_pci_dev_create(m->pci, 0, VTIO_PCI_DEVFN(7, fn), &info, &dev));
    }
}

/* ------------------------------------------------------------------------
 * Registration and groups
 * ------------------------------------------------------------------------ */

static void t_groups_default(void)
{
    struct rig r;
    rig_up(&r, 3, NULL);
    CHECK_EQ(r.h->n_devices, 3);
    CHECK_EQ(vtio_iommu_group_count(r.h), 3);
    CHECK_EQ(atomic_load(&r.drv.probes), 3);
    for (unsigned i = 0; i < 3; i++) {
        struct vtio_device *dev = engine(&r, i);
        struct vtio_iommu_group *g = vtio_iommu_group_get(dev);
        CHECK(g != NULL);
        CHECK_EQ(vtio_iommu_group_id(g), i);
        CHECK(vtio_iommu_group_by_id(r.h, i) == g);
        struct vtio_device *out[4];
        CHECK_EQ(vtio_iommu_group_devices(g, out, 4), 1);
        CHECK(out[0] == dev);
        CHECK_EQ(g->alias_rid, dev->rid);
        CHECK(vtio_iommu_group_of_rid(r.h->iommu, dev->rid) == g);
        /* each device attached, in the fake, to its group's default domain */
        CHECK(vtio_iommu_group_domain(g) == vtio_iommu_group_default_domain(g));
        CHECK(fake_attached(&r.drv, dev->rid) == vtio_iommu_group_domain(g));
        CHECK(dev->iommu_priv == &r.drv);
    }
    CHECK(vtio_iommu_group_by_id(r.h, 3) == NULL);
    CHECK(vtio_iommu_group_of_rid(r.h->iommu, 0x0100) == NULL);
    /* a second driver is refused and shut down */
    struct fake_drv other;
    fake_init(&other, r.h);
    CHECK_ERR(vtio_iommu_register(r.h, &fake_ops, &other), -EBUSY);
    CHECK_EQ(atomic_load(&other.shutdowns), 1);
    rig_down(&r);
}

static void t_groups_unclaimed(void)
{
    struct rig r;
    rig_boot(&r, 3, NULL, NULL);
    r.drv.refuse_rid = ENGINE_RID(1);
    CHECK_OK(vtio_iommu_register(r.h, &fake_ops, &r.drv));
    CHECK_EQ(vtio_iommu_group_count(r.h), 2);
    CHECK(vtio_iommu_group_get(engine(&r, 1)) == NULL);
    CHECK_EQ(vtio_iommu_group_id(vtio_iommu_group_get(engine(&r, 2))), 1);
    struct vtio_iommu_domain *d;
    CHECK_ERR(vtio_iommu_domain_alloc(engine(&r, 1), VTIO_IOMMU_DOMAIN_UNMANAGED, &d), -ENODEV);
    rig_down(&r);
}

static void t_groups_multifunction(void)
{
    struct rig r;
    rig_boot(&r, 2, NULL, plug_multifunction);
    CHECK_OK(vtio_iommu_register(r.h, &fake_ops, &r.drv));
    CHECK_EQ(r.h->n_devices, 5);
    CHECK_EQ(vtio_iommu_group_count(r.h), 3);     /* 03.0, 04.0, 07.0-2 */
    struct vtio_iommu_group *g = vtio_iommu_group_by_id(r.h, 2);
    struct vtio_device *out[8];
    CHECK_EQ(vtio_iommu_group_devices(g, out, 8), 3);
    for (unsigned fn = 0; fn < 3; fn++) {
        CHECK_EQ(out[fn]->rid, VTIO_PCI_RID(0, 7, fn));
        CHECK(vtio_iommu_group_get(out[fn]) == g);
        CHECK(fake_attached(&r.drv, out[fn]->rid) == vtio_iommu_group_domain(g));
    }
    CHECK_EQ(g->alias_rid, VTIO_PCI_RID(0, 7, 0));
    /* attaching a group switches every device of it */
    struct vtio_iommu_domain *u;
    CHECK_OK(vtio_iommu_domain_alloc(out[1], VTIO_IOMMU_DOMAIN_UNMANAGED, &u));
    CHECK_OK(vtio_iommu_attach_group(u, g));
    for (unsigned fn = 0; fn < 3; fn++)
        CHECK(fake_attached(&r.drv, out[fn]->rid) == u);
    /* a device refusing the attach leaves the whole group where it was */
    CHECK_OK(vtio_iommu_detach_group(u, g));
    r.drv.fail_attach_rid = VTIO_PCI_RID(0, 7, 2);
    CHECK_ERR(vtio_iommu_attach_group(u, g), -EIO);
    CHECK(vtio_iommu_group_domain(g) == vtio_iommu_group_default_domain(g));
    for (unsigned fn = 0; fn < 3; fn++)
        CHECK(fake_attached(&r.drv, out[fn]->rid) == vtio_iommu_group_default_domain(g));
    r.drv.fail_attach_rid = NO_RID;
    CHECK_OK(vtio_iommu_domain_free(u));
    rig_down(&r);
}

/* ---- a hand-written PCI topology behind a fake ECAM window */

#define TOPO_BUSES 5
#define TOPO_ECAM  0xE0000000ull

struct topo {
    uint8_t *cfg[TOPO_BUSES * 256];      /* by rid; NULL: nothing there */
};

static uint64_t topo_read(void *opaque, uint64_t off, unsigned size)
{
    struct topo *t = opaque;
    uint8_t *c = t->cfg[off >> 12];
    uint64_t v = 0;
    unsigned reg = off & 0xfff;
    for (unsigned i = 0; i < size; i++)
        v |= (uint64_t)(c ? c[reg + i] : 0xff) << (8 * i);
    return v;
}

static void topo_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    (void)opaque, (void)off, (void)val, (void)size;     /* read-only space */
}

static const struct vtio_mmio_ops topo_ops = { topo_read, topo_write };

static void put16(uint8_t *c, unsigned off, uint16_t v)
{
    c[off] = (uint8_t)v;
    c[off + 1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *c, unsigned off, uint32_t v)
{
    put16(c, off, (uint16_t)v);
    put16(c, off + 2, (uint16_t)(v >> 16));
}

#define EXP_ENDPOINT    0x0
#define EXP_ROOT_PORT   0x4
#define EXP_PCIE_TO_PCI 0x7
#define NO_EXP          0xff
#define ACS_ALL         0x001d          /* SV | RR | CR | UF */

/* A function: header type (| 0x80 multi-function), a PCI Express
 * capability of port type `exp` (NO_EXP: a conventional function),
 * secondary bus (bridges), and ACS control bits (with an ACS capability
 * if acs != 0). */
static void topo_fn(struct topo *t, uint16_t rid, uint8_t hdr, uint8_t exp, uint8_t sec,
                    uint16_t acs)
{
    uint8_t *c = calloc(1, 4096);
    CHECK(c != NULL);
    t->cfg[rid] = c;
    put16(c, VTIO_PCI_VENDOR_ID, 0x8086);
    put16(c, VTIO_PCI_DEVICE_ID, 0x1000 + rid);
    c[VTIO_PCI_HEADER_TYPE] = hdr;
    if ((hdr & 0x7f) == 1) {
        c[0x18] = (uint8_t)(rid >> 8);     /* primary */
        c[0x19] = sec;                      /* secondary */
        c[0x1a] = sec;                      /* subordinate */
    }
    if (exp != NO_EXP) {
        put16(c, VTIO_PCI_STATUS, VTIO_PCI_STATUS_CAP_LIST);
        c[VTIO_PCI_CAPABILITY_LIST] = 0x40;
        c[0x40] = VTIO_PCI_CAP_ID_EXP;
        put16(c, 0x40 + VTIO_PCI_EXP_FLAGS, (uint16_t)(0x2 | exp << 4));
    }
    if (acs) {
        put32(c, 0x100, 0x000d | 1u << 16);    /* ACS, version 1, last */
        put16(c, 0x104, ACS_ALL);              /* capabilities */
        put16(c, 0x106, acs);                  /* control */
    }
}

struct topo_machine {
    struct vtio_machine m;
    struct topo t;
};

/*
 *   00:00.0  endpoint
 *   00:01.0  root port -> bus 1:   01:00.0 endpoint
 *   00:05.0-1 multi-function, no ACS
 *   00:06.0-1 multi-function, ACS fully on in both
 *   00:08.0-1 multi-function, ACS on in .0, Upstream Forwarding off in .1
 *   00:09.0  conventional PCI bridge -> bus 3:  03:00.0
 *   00:1e.0  PCIe-to-PCI bridge -> bus 2:  02:01.0, 02:02.0, and 02:03.0 a
 *            conventional bridge -> bus 4:  04:00.0
 */
static struct topo_machine *topo_create(void)
{
    struct topo_machine *tm = calloc(1, sizeof(*tm));
    CHECK(tm != NULL);
    struct topo *t = &tm->t;
    topo_fn(t, VTIO_PCI_RID(0, 0, 0), 0, EXP_ENDPOINT, 0, 0);
    topo_fn(t, VTIO_PCI_RID(0, 1, 0), 1, EXP_ROOT_PORT, 1, 0);
    topo_fn(t, VTIO_PCI_RID(1, 0, 0), 0, EXP_ENDPOINT, 0, 0);
    topo_fn(t, VTIO_PCI_RID(0, 5, 0), 0x80, EXP_ENDPOINT, 0, 0);
    topo_fn(t, VTIO_PCI_RID(0, 5, 1), 0x80, EXP_ENDPOINT, 0, 0);
    topo_fn(t, VTIO_PCI_RID(0, 6, 0), 0x80, EXP_ENDPOINT, 0, ACS_ALL);
    topo_fn(t, VTIO_PCI_RID(0, 6, 1), 0x80, EXP_ENDPOINT, 0, ACS_ALL);
    topo_fn(t, VTIO_PCI_RID(0, 8, 0), 0x80, EXP_ENDPOINT, 0, ACS_ALL);
    topo_fn(t, VTIO_PCI_RID(0, 8, 1), 0x80, EXP_ENDPOINT, 0, ACS_ALL & ~0x10);
    topo_fn(t, VTIO_PCI_RID(0, 9, 0), 1, NO_EXP, 3, 0);
    topo_fn(t, VTIO_PCI_RID(3, 0, 0), 0, NO_EXP, 0, 0);
    topo_fn(t, VTIO_PCI_RID(0, 0x1e, 0), 1, EXP_PCIE_TO_PCI, 2, 0);
    topo_fn(t, VTIO_PCI_RID(2, 1, 0), 0, NO_EXP, 0, 0);
    topo_fn(t, VTIO_PCI_RID(2, 2, 0), 0, NO_EXP, 0, 0);
    topo_fn(t, VTIO_PCI_RID(2, 3, 0), 1, NO_EXP, 4, 0);
    topo_fn(t, VTIO_PCI_RID(4, 0, 0), 0, NO_EXP, 0, 0);

    struct vtio_machine *m = &tm->m;
    m->mem = vtio_mem_create();
    CHECK(m->mem != NULL);
    CHECK_OK(vtio_mem_add_ram(m->mem, 0, 64 * VTIO_MiB, "ram"));
    CHECK_OK(vtio_mem_add_mmio(m->mem, TOPO_ECAM, TOPO_BUSES * VTIO_MiB, &topo_ops, t, "ecam"));
    m->intr = vtio_intr_create(m->mem, 1);
    CHECK(m->intr != NULL);
    m->fw = (struct vtio_firmware){
        .ncpus = 1, .ecam_base = TOPO_ECAM, .bus_start = 0, .bus_end = TOPO_BUSES - 1,
        .mmio32_base = VTIO_MACHINE_MMIO32_BASE, .mmio32_size = 16 * VTIO_MiB,
    };
    return tm;
}

static void topo_destroy(struct topo_machine *tm)
{
    vtio_intr_destroy(tm->m.intr);
    vtio_mem_destroy(tm->m.mem);
    for (unsigned i = 0; i < TOPO_BUSES * 256; i++)
        free(tm->t.cfg[i]);
    free(tm);
}

static void t_groups_topology(void)
{
    struct topo_machine *tm = topo_create();
    struct vtio_host_options o = { .iommu_off = true, .log_fn = capture_log };
    struct vtio_host *h;
    CHECK_OK(vtio_host_boot_opts(&tm->m, &o, &h));
    CHECK_EQ(h->n_devices, 16);
    struct fake_drv drv;
    fake_init(&drv, h);
    CHECK_OK(vtio_iommu_register(h, &fake_ops, &drv));

    static const struct {
        uint16_t alias;
        unsigned n;
        uint16_t rid[5];
    } want[] = {
        { 0x0000, 1, { 0x0000 } },
        { 0x0008, 1, { 0x0008 } },                      /* root port */
        { 0x0028, 2, { 0x0028, 0x0029 } },              /* 05.x: no ACS */
        { 0x0030, 1, { 0x0030 } },                      /* 06.0: ACS */
        { 0x0031, 1, { 0x0031 } },                      /* 06.1: ACS */
        { 0x0040, 2, { 0x0040, 0x0041 } },              /* 08.x: one lacks UF */
        { 0x0048, 2, { 0x0048, 0x0300 } },              /* conventional bridge */
        { 0x0200, 5, { 0x00f0, 0x0208, 0x0210, 0x0218, 0x0400 } },   /* PCIe-to-PCI */
        { 0x0100, 1, { 0x0100 } },                      /* behind a root port */
    };
    CHECK_EQ(vtio_iommu_group_count(h), sizeof(want) / sizeof(want[0]));
    for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        struct vtio_iommu_group *g = vtio_iommu_group_by_id(h, i);
        struct vtio_device *out[8];
        CHECKF(vtio_iommu_group_devices(g, out, 8) == want[i].n, "group %u has %u devices", i,
               vtio_iommu_group_devices(g, out, 8));
        CHECK_EQ(g->alias_rid, want[i].alias);
        for (unsigned j = 0; j < want[i].n; j++) {
            CHECK_EQ(out[j]->rid, want[i].rid[j]);
            CHECK(vtio_iommu_group_get(out[j]) == g);
        }
        /* a fault carrying the alias finds the group */
        CHECK(vtio_iommu_group_of_rid(h->iommu, want[i].alias) == g);
    }

    /* the rule itself, on the enumeration */
    const struct vtio_pci_function *fns[16];
    unsigned group_of[16];
    uint16_t alias_of[16];
    for (unsigned i = 0; i < 16; i++)
        fns[i] = vtio_pci_get(h->pci, i);
    CHECK_EQ(vtio_iommu_pci_groups(h->pci, fns, 16, group_of, alias_of), 9);
    CHECK_EQ(alias_of[15], 0x0200);     /* 04:00.0, two bridges down */
    CHECK_EQ(group_of[15], 7);
    CHECK_ERR(vtio_iommu_pci_groups(NULL, fns, 16, group_of, alias_of), -EINVAL);
    /* without the bridge in the set, its children still share a group */
    CHECK_EQ(vtio_iommu_pci_groups(h->pci, fns + 11, 4, group_of, alias_of), 2);
    CHECK_EQ(group_of[0], 0);           /* 02:01.0 */
    CHECK_EQ(group_of[1], 0);           /* 02:02.0 */
    CHECK_EQ(group_of[2], 0);           /* 02:03.0 */
    CHECK_EQ(group_of[3], 1);           /* 03:00.0 */

    vtio_host_shutdown(h);
    CHECK_EQ(atomic_load(&drv.releases), 16);
    CHECK_EQ(atomic_load(&drv.frees), atomic_load(&drv.allocs));
    topo_destroy(tm);
}

/* ------------------------------------------------------------------------
 * Default domains
 * ------------------------------------------------------------------------ */

static enum vtio_iommu_domain_type type_of(struct rig *r, unsigned i)
{
    return vtio_iommu_domain_type(default_domain(r, i));
}

static void t_default_types(void)
{
    static const struct {
        enum vtio_host_iommu_mode mode;
        const struct vtio_iommu_ops *ops;
        enum vtio_iommu_domain_type want;
    } cases[] = {
        { VTIO_HOST_IOMMU_LAZY, &fake_ops, VTIO_IOMMU_DOMAIN_DMA_FQ },
        { VTIO_HOST_IOMMU_LAZY, &fake_ops_strict_only, VTIO_IOMMU_DOMAIN_DMA },
        { VTIO_HOST_IOMMU_STRICT, &fake_ops, VTIO_IOMMU_DOMAIN_DMA },
        { VTIO_HOST_IOMMU_PASSTHROUGH, &fake_ops, VTIO_IOMMU_DOMAIN_IDENTITY },
    };
    for (unsigned c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct vtio_host_options o = { .iommu_mode = cases[c].mode, .n_untrusted = 1,
                                       .untrusted_rid = { ENGINE_RID(1) } };
        struct rig r;
        rig_boot(&r, 2, &o, NULL);
        CHECK_OK(vtio_iommu_register(r.h, cases[c].ops, &r.drv));
        CHECK_EQ(type_of(&r, 0), cases[c].want);
        CHECK_EQ(type_of(&r, 1), VTIO_IOMMU_DOMAIN_DMA);   /* untrusted: always DMA */
        CHECK(default_domain(&r, 0)->is_default);
        /* DMA-API domains were handed to the DMA layer, identity ones not */
        CHECK_EQ(default_domain(&r, 0)->dma_cookie != NULL,
                 cases[c].want != VTIO_IOMMU_DOMAIN_IDENTITY);
        CHECK(default_domain(&r, 1)->dma_cookie != NULL);
        CHECK(default_domain(&r, 0) != default_domain(&r, 1));
        rig_down(&r);
    }
}

static void t_driver_type(void)
{
    /* the driver requires identity for 03.0, DMA for 04.0 under passthrough */
    struct rig r;
    rig_boot(&r, 3, NULL, NULL);
    r.drv.force_rid = ENGINE_RID(0);
    r.drv.force_type = VTIO_IOMMU_DOMAIN_IDENTITY;
    CHECK_OK(vtio_iommu_register(r.h, &fake_ops, &r.drv));
    CHECK_EQ(type_of(&r, 0), VTIO_IOMMU_DOMAIN_IDENTITY);
    CHECK_EQ(type_of(&r, 1), VTIO_IOMMU_DOMAIN_DMA_FQ);
    rig_down(&r);

    struct vtio_host_options o = { .iommu_mode = VTIO_HOST_IOMMU_PASSTHROUGH };
    rig_boot(&r, 2, &o, NULL);
    r.drv.force_rid = ENGINE_RID(1);
    r.drv.force_type = VTIO_IOMMU_DOMAIN_DMA;
    CHECK_OK(vtio_iommu_register(r.h, &fake_ops, &r.drv));
    CHECK_EQ(type_of(&r, 0), VTIO_IOMMU_DOMAIN_IDENTITY);
    CHECK_EQ(type_of(&r, 1), VTIO_IOMMU_DOMAIN_DMA);
    rig_down(&r);

    /* an untrusted device gets DMA even if the driver asks for identity */
    struct vtio_host_options u = { .n_untrusted = 1, .untrusted_rid = { ENGINE_RID(0) } };
    rig_boot(&r, 1, &u, NULL);
    r.drv.force_rid = ENGINE_RID(0);
    r.drv.force_type = VTIO_IOMMU_DOMAIN_IDENTITY;
    CHECK_OK(vtio_iommu_register(r.h, &fake_ops, &r.drv));
    CHECK_EQ(type_of(&r, 0), VTIO_IOMMU_DOMAIN_DMA);
    CHECK_EQ(log_count("untrusted"), 1);
    rig_down(&r);
}

static void t_set_default_type(void)
{
    struct vtio_host_options o = { .n_untrusted = 1, .untrusted_rid = { ENGINE_RID(1) } };
    struct rig r;
    rig_boot(&r, 2, &o, NULL);
    CHECK_OK(vtio_iommu_register(r.h, &fake_ops, &r.drv));
    struct vtio_device *dev = engine(&r, 0);
    struct vtio_iommu_group *g = vtio_iommu_group_get(dev);
    struct vtio_iommu_group *ug = vtio_iommu_group_get(engine(&r, 1));
    struct vtio_iommu_domain *old = vtio_iommu_group_default_domain(g);

    CHECK_ERR(vtio_iommu_group_set_default_type(NULL, VTIO_IOMMU_DOMAIN_DMA), -EINVAL);
    CHECK_ERR(vtio_iommu_group_set_default_type(g, VTIO_IOMMU_DOMAIN_UNMANAGED), -EINVAL);
    CHECK_ERR(vtio_iommu_group_set_default_type(g, VTIO_IOMMU_DOMAIN_BLOCKED), -EINVAL);
    CHECK_ERR(vtio_iommu_group_set_default_type(g, (enum vtio_iommu_domain_type)42), -EINVAL);
    CHECK_ERR(vtio_iommu_group_set_default_type(ug, VTIO_IOMMU_DOMAIN_IDENTITY), -EPERM);
    CHECK_ERR(vtio_iommu_group_set_default_type(ug, VTIO_IOMMU_DOMAIN_DMA_FQ), -EPERM);
    CHECK_OK(vtio_iommu_group_set_default_type(ug, VTIO_IOMMU_DOMAIN_DMA));

    CHECK_OK(vtio_device_bind(dev, "drv"));
    CHECK_ERR(vtio_iommu_group_set_default_type(g, VTIO_IOMMU_DOMAIN_IDENTITY), -EBUSY);
    CHECK(vtio_iommu_group_default_domain(g) == old);
    vtio_device_unbind(dev);

    struct vtio_iommu_domain *u;
    CHECK_OK(vtio_iommu_domain_alloc(dev, VTIO_IOMMU_DOMAIN_UNMANAGED, &u));
    CHECK_OK(vtio_iommu_attach_group(u, g));
    CHECK_ERR(vtio_iommu_group_set_default_type(g, VTIO_IOMMU_DOMAIN_IDENTITY), -EBUSY);
    CHECK_OK(vtio_iommu_detach_group(u, g));
    CHECK_OK(vtio_iommu_domain_free(u));

    unsigned frees = atomic_load(&r.drv.frees);
    CHECK_OK(vtio_iommu_group_set_default_type(g, VTIO_IOMMU_DOMAIN_IDENTITY));
    struct vtio_iommu_domain *now = vtio_iommu_group_default_domain(g);
    CHECK(now != old);
    CHECK_EQ(vtio_iommu_domain_type(now), VTIO_IOMMU_DOMAIN_IDENTITY);
    CHECK(vtio_iommu_group_domain(g) == now);
    CHECK(fake_attached(&r.drv, dev->rid) == now);
    CHECK_EQ(atomic_load(&r.drv.frees), frees + 1);     /* the old default is gone */
    CHECK_OK(vtio_iommu_group_set_default_type(g, VTIO_IOMMU_DOMAIN_DMA));
    CHECK_EQ(type_of(&r, 0), VTIO_IOMMU_DOMAIN_DMA);
    rig_down(&r);

    /* no DMA-FQ on an IOMMU without deferred flushing */
    rig_boot(&r, 1, NULL, NULL);
    CHECK_OK(vtio_iommu_register(r.h, &fake_ops_strict_only, &r.drv));
    CHECK_ERR(vtio_iommu_group_set_default_type(vtio_iommu_group_get(engine(&r, 0)),
                                                VTIO_IOMMU_DOMAIN_DMA_FQ), -EINVAL);
    rig_down(&r);
}

/* ------------------------------------------------------------------------
 * Domains
 * ------------------------------------------------------------------------ */

static void t_domain_errors(void)
{
    struct rig r;
    rig_up(&r, 2, NULL);
    struct vtio_device *dev = engine(&r, 0);
    struct vtio_iommu_group *g = vtio_iommu_group_get(dev);
    struct vtio_iommu_group *g1 = vtio_iommu_group_get(engine(&r, 1));
    struct vtio_iommu_domain *def = vtio_iommu_group_default_domain(g);
    struct vtio_iommu_domain *u, *v, *blocked, *d;

    CHECK_ERR(vtio_iommu_domain_alloc(NULL, VTIO_IOMMU_DOMAIN_UNMANAGED, &d), -EINVAL);
    CHECK_ERR(vtio_iommu_domain_alloc(dev, VTIO_IOMMU_DOMAIN_UNMANAGED, NULL), -EINVAL);
    CHECK_ERR(vtio_iommu_domain_alloc(dev, VTIO_IOMMU_DOMAIN_DMA, &d), -EINVAL);
    CHECK_ERR(vtio_iommu_domain_alloc(dev, VTIO_IOMMU_DOMAIN_DMA_FQ, &d), -EINVAL);
    r.drv.fail_alloc = true;
    CHECK_ERR(vtio_iommu_domain_alloc(dev, VTIO_IOMMU_DOMAIN_UNMANAGED, &d), -ENOMEM);
    r.drv.fail_alloc = false;

    CHECK_OK(vtio_iommu_domain_alloc(dev, VTIO_IOMMU_DOMAIN_UNMANAGED, &u));
    CHECK_OK(vtio_iommu_domain_alloc(dev, VTIO_IOMMU_DOMAIN_UNMANAGED, &v));
    CHECK_OK(vtio_iommu_domain_alloc(dev, VTIO_IOMMU_DOMAIN_BLOCKED, &blocked));
    CHECK_EQ(vtio_iommu_domain_type(u), VTIO_IOMMU_DOMAIN_UNMANAGED);
    CHECK_EQ(vtio_iommu_domain_type(blocked), VTIO_IOMMU_DOMAIN_BLOCKED);
    uint64_t end, bitmap;
    vtio_iommu_domain_geometry(u, &end, &bitmap);
    CHECK_EQ(end, APERTURE);
    CHECK_EQ(bitmap, PG | VTIO_HUGE_SIZE);

    CHECK_ERR(vtio_iommu_attach_group(NULL, g), -EINVAL);
    CHECK_ERR(vtio_iommu_attach_group(u, NULL), -EINVAL);
    CHECK_ERR(vtio_iommu_attach_group(vtio_iommu_group_default_domain(g1), g), -EINVAL);
    CHECK_ERR(vtio_iommu_detach_group(u, g), -EINVAL);         /* not attached */
    CHECK_OK(vtio_iommu_attach_group(u, g));
    CHECK(vtio_iommu_group_domain(g) == u);
    CHECK(fake_attached(&r.drv, dev->rid) == u);
    CHECK_ERR(vtio_iommu_attach_group(u, g), -EBUSY);          /* twice */
    CHECK_ERR(vtio_iommu_attach_group(v, g), -EBUSY);          /* another */
    CHECK_ERR(vtio_iommu_domain_free(u), -EBUSY);
    CHECK_ERR(vtio_iommu_detach_group(v, g), -EINVAL);         /* wrong domain */
    CHECK_ERR(vtio_iommu_detach_group(def, g), -EINVAL);
    /* one domain may serve two groups */
    CHECK_OK(vtio_iommu_attach_group(u, g1));
    CHECK_OK(vtio_iommu_detach_group(u, g));
    CHECK_ERR(vtio_iommu_domain_free(u), -EBUSY);
    CHECK_OK(vtio_iommu_detach_group(u, g1));
    CHECK(vtio_iommu_group_domain(g) == def);
    CHECK(fake_attached(&r.drv, dev->rid) == def);
    CHECK_OK(vtio_iommu_attach_group(blocked, g));
    CHECK(fake_attached(&r.drv, dev->rid) == blocked);
    CHECK_OK(vtio_iommu_detach_group(blocked, g));

    CHECK_ERR(vtio_iommu_domain_free(NULL), -EINVAL);
    CHECK_ERR(vtio_iommu_domain_free(def), -EINVAL);
    unsigned frees = atomic_load(&r.drv.frees);
    CHECK_OK(vtio_iommu_domain_free(u));
    CHECK_OK(vtio_iommu_domain_free(v));
    CHECK_OK(vtio_iommu_domain_free(blocked));
    CHECK_EQ(atomic_load(&r.drv.frees), frees + 3);
    rig_down(&r);
}

static void t_map_errors(void)
{
    struct rig r;
    rig_up(&r, 1, NULL);
    struct vtio_iommu_domain *u, *ident;
    CHECK_OK(vtio_iommu_domain_alloc(engine(&r, 0), VTIO_IOMMU_DOMAIN_UNMANAGED, &u));
    CHECK_OK(vtio_iommu_domain_alloc(engine(&r, 0), VTIO_IOMMU_DOMAIN_IDENTITY, &ident));
    const unsigned RW = VTIO_IOMMU_READ | VTIO_IOMMU_WRITE;
    uint64_t pa = 0x200000;

    CHECK_ERR(vtio_iommu_map(NULL, 0x1000, pa, PG, RW), -EINVAL);
    CHECK_ERR(vtio_iommu_map(u, 0x1000, pa, 0, RW), -EINVAL);             /* size 0 */
    CHECK_ERR(vtio_iommu_map(u, 0x1800, pa, PG, RW), -EINVAL);            /* iova */
    CHECK_ERR(vtio_iommu_map(u, 0x1000, pa + 8, PG, RW), -EINVAL);        /* pa */
    CHECK_ERR(vtio_iommu_map(u, 0x1000, pa, PG + 1, RW), -EINVAL);        /* size */
    CHECK_ERR(vtio_iommu_map(u, 0x1000, pa, PG, 0), -EINVAL);             /* prot 0 */
    CHECK_ERR(vtio_iommu_map(u, 0x1000, pa, PG, 0x4), -EINVAL);           /* unknown bit */
    CHECK_ERR(vtio_iommu_map(u, 0x1000, pa, PG, RW | 0x8), -EINVAL);
    CHECK_ERR(vtio_iommu_map(u, APERTURE + 1, pa, PG, RW), -EINVAL);      /* beyond */
    CHECK_ERR(vtio_iommu_map(u, APERTURE + 1 - PG, pa, 2 * PG, RW), -EINVAL);
    CHECK_ERR(vtio_iommu_map(u, 0xfffffffffffff000ull, pa, 2 * PG, RW), -EINVAL); /* wraps */
    CHECK_ERR(vtio_iommu_map(u, 0x1000, 0xfffffffffffff000ull, 2 * PG, RW), -EINVAL);
    CHECK_ERR(vtio_iommu_map(ident, 0x1000, pa, PG, RW), -EINVAL);        /* not unmanaged */
    CHECK_ERR(vtio_iommu_map(default_domain(&r, 0), 0x1000, pa, PG, RW), -EINVAL);
    CHECK_ERR(vtio_iommu_map_raw(ident, 0x1000, pa, PG, RW), -EINVAL);    /* no tables */
    CHECK_EQ(atomic_load(&r.drv.maps), 0);                                /* none reached it */

    CHECK_OK(vtio_iommu_map(u, APERTURE + 1 - PG, pa, PG, VTIO_IOMMU_READ));  /* last page */
    CHECK_OK(vtio_iommu_map(u, 0x1000, pa, 4 * PG, RW));
    CHECK_EQ(atomic_load(&r.drv.maps), 2);
    CHECK_ERR(vtio_iommu_map(u, 0x3000, pa, 4 * PG, RW), -EEXIST);        /* overlaps */
    uint64_t out;
    CHECK_ERR(vtio_iommu_iova_to_phys(u, 0x5000, &out), -ENOENT);         /* unchanged */
    CHECK_OK(vtio_iommu_iova_to_phys(u, 0x2abc, &out));
    CHECK_EQ(out, pa + 0x1abc);
    CHECK_ERR(vtio_iommu_iova_to_phys(u, APERTURE + 1, &out), -ENOENT);
    CHECK_ERR(vtio_iommu_iova_to_phys(NULL, 0, &out), -EINVAL);
    CHECK_OK(vtio_iommu_iova_to_phys(ident, 0x1234567, &out));
    CHECK_EQ(out, 0x1234567);

    unsigned unmaps = atomic_load(&r.drv.unmaps);
    CHECK_EQ(vtio_iommu_unmap(NULL, 0x1000, PG), 0);
    CHECK_EQ(vtio_iommu_unmap(u, 0x1800, PG), 0);
    CHECK_EQ(vtio_iommu_unmap(u, 0x1000, 0), 0);
    CHECK_EQ(vtio_iommu_unmap(u, APERTURE + 1, PG), 0);
    CHECK_EQ(vtio_iommu_unmap(ident, 0x1000, PG), 0);
    CHECK_EQ(vtio_iommu_unmap(default_domain(&r, 0), 0x1000, PG), 0);
    CHECK_EQ(atomic_load(&r.drv.unmaps), unmaps);
    CHECK_EQ(vtio_iommu_unmap(u, 0x2000, 2 * PG), 2 * PG);
    CHECK_EQ(vtio_iommu_unmap(u, 0x0000, 8 * PG), 2 * PG);                /* the rest */
    CHECK_EQ(vtio_iommu_unmap(u, 0x0000, 8 * PG), 0);
    CHECK_EQ(vtio_iommu_unmap(u, APERTURE + 1 - PG, PG), PG);
    CHECK_OK(vtio_iommu_domain_free(u));
    CHECK_OK(vtio_iommu_domain_free(ident));
    rig_down(&r);
}

static void t_unmap_sync(void)
{
    struct rig r;
    rig_up(&r, 1, NULL);
    struct vtio_iommu_domain *u;
    CHECK_OK(vtio_iommu_domain_alloc(engine(&r, 0), VTIO_IOMMU_DOMAIN_UNMANAGED, &u));
    uint64_t before = vtio_page_alloc_free_bytes(r.h->pages);
    /* two 2 MiB regions in use: two "table pages" */
    CHECK_OK(vtio_iommu_map(u, 0x1ff000, 0x400000, 2 * PG, VTIO_IOMMU_READ));
    CHECK_EQ(vtio_page_alloc_free_bytes(r.h->pages), before - 2 * PG);
    unsigned syncs = atomic_load(&r.drv.syncs);
    CHECK_EQ(vtio_iommu_unmap(u, 0x1ff000, 2 * PG), 2 * PG);
    CHECK_EQ(atomic_load(&r.drv.syncs), syncs + 1);
    CHECK_EQ(r.drv.sync_start, 0x1ff000);
    CHECK_EQ(r.drv.sync_end, 0x201000);
    /* at the sync the emptied tables were gathered but not yet freed ... */
    CHECK_EQ(r.drv.sync_pages, 2);
    CHECK_EQ(r.drv.sync_free_bytes, before - 2 * PG);
    /* ... and once unmap returned they were */
    CHECK_EQ(vtio_page_alloc_free_bytes(r.h->pages), before);

    /* the raw pair, as the DMA layer uses it */
    CHECK_OK(vtio_iommu_map_raw(u, 0x10000, 0x400000, PG, VTIO_IOMMU_WRITE));
    struct vtio_iommu_gather g;
    vtio_iommu_gather_init(&g);
    CHECK_EQ(vtio_iommu_unmap_raw(u, 0x10000, PG, &g), PG);
    CHECK_EQ(atomic_load(&r.drv.syncs), syncs + 1);     /* no invalidation yet */
    CHECK_EQ(g.freelist.n, 1);
    vtio_iommu_gather_finish(u, &g);
    CHECK_EQ(atomic_load(&r.drv.syncs), syncs + 2);
    CHECK_EQ(g.freelist.n, 0);
    CHECK_EQ(vtio_page_alloc_free_bytes(r.h->pages), before);
    /* nothing mapped: nothing to invalidate */
    CHECK_EQ(vtio_iommu_unmap(u, 0x10000, PG), 0);
    CHECK_EQ(atomic_load(&r.drv.syncs), syncs + 2);
    CHECK_OK(vtio_iommu_domain_free(u));
    rig_down(&r);
}

static void t_freelist(void)
{
    struct rig r;
    rig_up(&r, 1, NULL);
    uint64_t before = vtio_page_alloc_free_bytes(r.h->pages);
    struct vtio_iommu_freelist a = { 0 }, b = { 0 };
    for (unsigned i = 0; i < 40; i++) {
        uint64_t pa;
        CHECK_OK(vtio_page_alloc(r.h->pages, 0, 0, &pa));
        CHECK_OK(vtio_iommu_freelist_add(i % 2 ? &a : &b, pa));
    }
    CHECK_ERR(vtio_iommu_freelist_add(NULL, 0), -EINVAL);
    CHECK_OK(vtio_iommu_freelist_splice(&a, &b));
    CHECK_EQ(a.n, 40);
    CHECK_EQ(b.n, 0);
    CHECK_OK(vtio_iommu_freelist_splice(&a, &b));        /* empty source */
    CHECK_EQ(vtio_page_alloc_free_bytes(r.h->pages), before - 40 * PG);
    vtio_iommu_freelist_release(&a, r.h->pages);
    CHECK_EQ(a.n, 0);
    CHECK_EQ(vtio_page_alloc_free_bytes(r.h->pages), before);
    vtio_iommu_freelist_free(&a);
    vtio_iommu_freelist_free(&b);
    CHECK(a.pa == NULL);
    rig_down(&r);
}

static void t_names(void)
{
    CHECK(strcmp(vtio_iommu_domain_type_name(VTIO_IOMMU_DOMAIN_BLOCKED), "blocked") == 0);
    CHECK(strcmp(vtio_iommu_domain_type_name(VTIO_IOMMU_DOMAIN_IDENTITY), "identity") == 0);
    CHECK(strcmp(vtio_iommu_domain_type_name(VTIO_IOMMU_DOMAIN_UNMANAGED), "unmanaged") == 0);
    CHECK(strcmp(vtio_iommu_domain_type_name(VTIO_IOMMU_DOMAIN_DMA), "DMA") == 0);
    CHECK(strcmp(vtio_iommu_domain_type_name(VTIO_IOMMU_DOMAIN_DMA_FQ), "DMA-FQ") == 0);
    CHECK(strcmp(vtio_iommu_domain_type_name((enum vtio_iommu_domain_type)9), "unknown") == 0);
    /* no IOMMU: every query answers "none" */
    CHECK(!vtio_iommu_present(NULL));
    CHECK_EQ(vtio_iommu_group_count(NULL), 0);
    CHECK(vtio_iommu_group_get(NULL) == NULL);
    CHECK_EQ(vtio_iommu_fault_sync(NULL), 0);
}

/* ------------------------------------------------------------------------
 * Faults
 * ------------------------------------------------------------------------ */

struct seen {
    unsigned calls;
    struct vtio_iommu_domain *d;
    struct vtio_iommu_fault f;
};

static void on_fault(void *opaque, struct vtio_iommu_domain *d, const struct vtio_iommu_fault *f)
{
    struct seen *s = opaque;
    s->calls++;
    s->d = d;
    s->f = *f;
}

static struct vtio_iommu_fault read_fault(uint16_t sid, uint64_t addr)
{
    return (struct vtio_iommu_fault){ .sid = sid, .addr = addr, .reason = 0x06,
                                      .reason_str = "PTE Read access is not set",
                                      .unit = "dmar0" };
}

static void t_fault_log(void)
{
    struct rig r;
    rig_up(&r, 2, NULL);
    struct vtio_iommu *iommu = r.h->iommu;
    struct vtio_iommu_fault out[VTIO_IOMMU_FAULT_LOG + 8];
    CHECK_EQ(vtio_iommu_fault_log(r.h, out, 8), 0);
    for (unsigned i = 0; i < 3; i++) {
        struct vtio_iommu_fault f = read_fault(ENGINE_RID(i % 2), 0x1000 * (i + 1));
        f.write = i == 2;
        vtio_iommu_report_fault(iommu, &f);
    }
    CHECK_EQ(vtio_iommu_fault_log(r.h, out, 8), 3);
    for (unsigned i = 0; i < 3; i++) {
        CHECK_EQ(out[i].seq, i + 1);
        CHECK_EQ(out[i].addr, 0x1000 * (i + 1));
        CHECK_EQ(out[i].sid, ENGINE_RID(i % 2));
    }
    CHECK(out[2].write);
    CHECK_EQ(vtio_iommu_fault_log(r.h, out, 2), 2);      /* the last two */
    CHECK_EQ(out[0].seq, 2);
    CHECK_EQ(out[1].seq, 3);

    /* fault_sync asks the driver for what hardware recorded */
    r.drv.pending[0] = read_fault(ENGINE_RID(1), 0xabc000);
    r.drv.n_pending = 1;
    CHECK_EQ(vtio_iommu_fault_sync(r.h), 4);
    CHECK_EQ(atomic_load(&r.drv.fault_syncs), 1);
    CHECK_EQ(vtio_iommu_fault_log(r.h, out, 1), 1);
    CHECK_EQ(out[0].addr, 0xabc000);

    /* the ring keeps the last VTIO_IOMMU_FAULT_LOG */
    for (unsigned i = 0; i < 70; i++) {
        struct vtio_iommu_fault f = read_fault(ENGINE_RID(0), (uint64_t)i << 12);
        vtio_iommu_report_fault(iommu, &f);
    }
    CHECK_EQ(vtio_iommu_fault_sync(r.h), 74);
    CHECK_EQ(vtio_iommu_fault_log(r.h, out, VTIO_IOMMU_FAULT_LOG + 8), VTIO_IOMMU_FAULT_LOG);
    CHECK_EQ(out[0].seq, 74 - VTIO_IOMMU_FAULT_LOG + 1);
    CHECK_EQ(out[VTIO_IOMMU_FAULT_LOG - 1].seq, 74);
    CHECK_EQ(out[VTIO_IOMMU_FAULT_LOG - 1].addr, 69ull << 12);
    for (unsigned i = 1; i < VTIO_IOMMU_FAULT_LOG; i++)
        CHECK_EQ(out[i].seq, out[i - 1].seq + 1);
    rig_down(&r);
}

static void t_fault_handler(void)
{
    struct rig r;
    rig_up(&r, 2, NULL);
    struct vtio_iommu *iommu = r.h->iommu;
    struct vtio_iommu_group *g = vtio_iommu_group_get(engine(&r, 0));
    struct vtio_iommu_domain *def = vtio_iommu_group_default_domain(g);
    struct seen on_def = { 0 }, on_u = { 0 };
    vtio_iommu_set_fault_handler(def, on_fault, &on_def);

    struct vtio_iommu_fault f = read_fault(ENGINE_RID(0), 0x5000);
    vtio_iommu_report_fault(iommu, &f);
    CHECK_EQ(on_def.calls, 1);
    CHECK(on_def.d == def);
    CHECK_EQ(on_def.f.seq, 1);
    CHECK_EQ(on_def.f.addr, 0x5000);
    /* another group's fault does not reach this domain's handler */
    f.sid = ENGINE_RID(1);
    vtio_iommu_report_fault(iommu, &f);
    CHECK_EQ(on_def.calls, 1);

    /* attached elsewhere: that domain's handler */
    struct vtio_iommu_domain *u;
    CHECK_OK(vtio_iommu_domain_alloc(engine(&r, 0), VTIO_IOMMU_DOMAIN_UNMANAGED, &u));
    vtio_iommu_set_fault_handler(u, on_fault, &on_u);
    CHECK_OK(vtio_iommu_attach_group(u, g));
    f.sid = ENGINE_RID(0);
    f.write = true;
    vtio_iommu_report_fault(iommu, &f);
    CHECK_EQ(on_def.calls, 1);
    CHECK_EQ(on_u.calls, 1);
    CHECK(on_u.d == u);
    CHECK_EQ(on_u.f.seq, 3);
    CHECK(on_u.f.write);
    CHECK_OK(vtio_iommu_detach_group(u, g));
    CHECK_OK(vtio_iommu_domain_free(u));

    /* a handler removed is not called */
    vtio_iommu_set_fault_handler(def, NULL, NULL);
    vtio_iommu_report_fault(iommu, &f);
    CHECK_EQ(on_def.calls, 1);
    /* a requester id nobody has is logged all the same */
    f.sid = 0x0700;
    vtio_iommu_report_fault(iommu, &f);
    CHECK_EQ(vtio_iommu_fault_sync(r.h), 5);
    rig_down(&r);
}

static void t_fault_messages(void)
{
    struct rig r;
    rig_up(&r, 1, NULL);
    struct vtio_iommu *iommu = r.h->iommu;
    log_reset();
    struct vtio_iommu_fault f = read_fault(ENGINE_RID(0), 0x7f000);
    vtio_iommu_report_fault(iommu, &f);
    CHECK_EQ(log_n, 1);
    CHECK_EQ(log_lvl[0], VTIO_LOG_ERR);
    CHECKF(strcmp(log_msg[0], "DMAR: [DMA Read NO_PASID] Request device [00:03.0] fault addr "
                              "0x7f000 [fault reason 0x06] PTE Read access is not set") == 0,
           "got '%s'", log_msg[0]);
    struct vtio_iommu_fault w = { .sid = ENGINE_RID(0), .write = true, .addr = 0x2000,
                                  .has_pasid = true, .pasid = 5, .reason = 0x05,
                                  .reason_str = "PTE Write access is not set" };
    vtio_iommu_report_fault(iommu, &w);
    CHECKF(strcmp(log_msg[1], "DMAR: [DMA Write PASID 0x5] Request device [00:03.0] fault "
                              "addr 0x2000 [fault reason 0x05] PTE Write access is not set") == 0,
           "got '%s'", log_msg[1]);
    struct vtio_iommu_fault ir = { .sid = ENGINE_RID(0), .is_interrupt = true, .addr = 7,
                                   .reason = 0x25, .reason_str = NULL };
    vtio_iommu_report_fault(iommu, &ir);
    CHECKF(strstr(log_msg[2], "[INTR-REMAP] Request device [00:03.0] fault index 0x7 "
                              "[fault reason 0x25]") != NULL, "got '%s'", log_msg[2]);

    /* 20 more in a burst: 7 print (10 in the window), 13 are counted */
    for (unsigned i = 0; i < 20; i++)
        vtio_iommu_report_fault(iommu, &f);
    CHECK_EQ(log_n, 10);
    CHECK_EQ(vtio_iommu_fault_sync(r.h), 23);           /* all logged in the ring */
    /* the next window (moved back by hand, not waited for) reports them */
    pthread_mutex_lock(&iommu->fault_lock);
    iommu->ratelimit_begin_ns -= 6000000000ull;
    pthread_mutex_unlock(&iommu->fault_lock);
    vtio_iommu_report_fault(iommu, &f);
    CHECK_EQ(log_n, 12);
    CHECKF(strstr(log_msg[10], "13 callbacks suppressed") != NULL, "got '%s'", log_msg[10]);
    CHECK(strstr(log_msg[11], "DMAR: [DMA Read NO_PASID]") != NULL);
    rig_down(&r);
}

/* ------------------------------------------------------------------------
 * Threads, failures, teardown
 * ------------------------------------------------------------------------ */

struct mapper {
    struct vtio_iommu_domain *d;
    uint64_t base;
    int errors;
    atomic_bool done;
};

#define MAPPER_PAGES 128

static void *mapper_run(void *arg)
{
    struct mapper *m = arg;
    for (unsigned round = 0; round < 4; round++) {
        for (unsigned i = 0; i < MAPPER_PAGES; i++)
            if (vtio_iommu_map(m->d, m->base + i * PG, 0x100000 + i * PG, PG,
                               VTIO_IOMMU_READ) < 0)
                m->errors++;
        for (unsigned i = 0; i < MAPPER_PAGES; i++) {
            uint64_t pa;
            if (vtio_iommu_iova_to_phys(m->d, m->base + i * PG, &pa) < 0 ||
                pa != 0x100000 + i * PG)
                m->errors++;
        }
        if (vtio_iommu_unmap(m->d, m->base, MAPPER_PAGES * PG) != MAPPER_PAGES * PG)
            m->errors++;
    }
    atomic_store(&m->done, true);
    return NULL;
}

static void t_threads(void)
{
    struct rig r;
    rig_up(&r, 2, NULL);
    struct vtio_iommu_domain *u, *other;
    CHECK_OK(vtio_iommu_domain_alloc(engine(&r, 0), VTIO_IOMMU_DOMAIN_UNMANAGED, &u));
    CHECK_OK(vtio_iommu_attach_group(u, vtio_iommu_group_get(engine(&r, 0))));
    enum { N = 4 };
    struct mapper m[N];
    pthread_t t[N];
    for (unsigned i = 0; i < N; i++) {
        m[i] = (struct mapper){ .d = u, .base = (uint64_t)(i + 1) << 30 };
        CHECK_EQ(pthread_create(&t[i], NULL, mapper_run, &m[i]), 0);
    }
    /* meanwhile: domains come and go on the other group, faults arrive */
    struct vtio_iommu_group *g1 = vtio_iommu_group_get(engine(&r, 1));
    for (unsigned i = 0; i < 50; i++) {
        CHECK_OK(vtio_iommu_domain_alloc(engine(&r, 1), VTIO_IOMMU_DOMAIN_UNMANAGED, &other));
        CHECK_OK(vtio_iommu_attach_group(other, g1));
        struct vtio_iommu_fault f = read_fault(ENGINE_RID(1), 0x1000);
        vtio_iommu_report_fault(r.h->iommu, &f);
        CHECK_OK(vtio_iommu_detach_group(other, g1));
        CHECK_OK(vtio_iommu_domain_free(other));
    }
    for (unsigned i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ(m[i].errors, 0);
    }
    CHECK_EQ(atomic_load(&r.drv.maps), N * 4 * MAPPER_PAGES);

    /* map and unmap never wait for the core lock: they finish while it is held */
    struct mapper solo = { .d = u, .base = 8ull << 30 };
    pthread_t ts;
    pthread_mutex_lock(&r.h->iommu->lock);
    CHECK_EQ(pthread_create(&ts, NULL, mapper_run, &solo), 0);
    for (unsigned i = 0; i < 10000 && !atomic_load(&solo.done); i++)
        nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
    bool done = atomic_load(&solo.done);
    pthread_mutex_unlock(&r.h->iommu->lock);
    pthread_join(ts, NULL);
    CHECK(done);
    CHECK_EQ(solo.errors, 0);

    CHECK_OK(vtio_iommu_detach_group(u, vtio_iommu_group_get(engine(&r, 0))));
    CHECK_OK(vtio_iommu_domain_free(u));
    rig_down(&r);
}

static void t_register_failures(void)
{
    struct rig r;
    /* a probe error */
    rig_boot(&r, 2, NULL, NULL);
    r.drv.fail_probe_rid = ENGINE_RID(1);
    CHECK_ERR(vtio_iommu_register(r.h, &fake_ops, &r.drv), -EIO);
    CHECK(!vtio_iommu_present(r.h));
    CHECK_EQ(atomic_load(&r.drv.shutdowns), 1);
    CHECK_EQ(atomic_load(&r.drv.releases), atomic_load(&r.drv.probes));
    CHECK(vtio_iommu_group_get(engine(&r, 0)) == NULL);
    rig_down(&r);
    /* no default domain can be made */
    rig_boot(&r, 2, NULL, NULL);
    r.drv.fail_alloc = true;
    CHECK_ERR(vtio_iommu_register(r.h, &fake_ops, &r.drv), -ENOMEM);
    CHECK(!vtio_iommu_present(r.h));
    CHECK_EQ(atomic_load(&r.drv.shutdowns), 1);
    CHECK_EQ(atomic_load(&r.drv.releases), 2);
    rig_down(&r);
    /* a device refuses its default domain: the groups made so far are undone */
    rig_boot(&r, 3, NULL, NULL);
    r.drv.fail_attach_rid = ENGINE_RID(2);
    CHECK_ERR(vtio_iommu_register(r.h, &fake_ops, &r.drv), -EIO);
    CHECK_EQ(atomic_load(&r.drv.frees), atomic_load(&r.drv.allocs));
    CHECK_EQ(atomic_load(&r.drv.shutdowns), 1);
    rig_down(&r);
    /* a driver without the required ops */
    rig_boot(&r, 1, NULL, NULL);
    struct vtio_iommu_ops bad = fake_ops;
    bad.domain_alloc = NULL;
    CHECK_ERR(vtio_iommu_register(r.h, &bad, &r.drv), -EINVAL);
    CHECK_ERR(vtio_iommu_register(NULL, &fake_ops, &r.drv), -EINVAL);
    rig_down(&r);
}

static void t_shutdown(void)
{
    struct rig r;
    rig_boot(&r, 3, NULL, plug_multifunction);
    struct fake_drv *f = &r.drv;
    CHECK_OK(vtio_iommu_register(r.h, &fake_ops, f));
    /* one default domain replaced on the way */
    CHECK_OK(vtio_iommu_group_set_default_type(vtio_iommu_group_get(engine(&r, 1)),
                                               VTIO_IOMMU_DOMAIN_IDENTITY));
    unsigned groups = vtio_iommu_group_count(r.h);
    CHECK_EQ(groups, 4);
    vtio_host_shutdown(r.h);
    CHECK_EQ(atomic_load(&f->shutdowns), 1);
    CHECK_EQ(atomic_load(&f->releases), 6);
    CHECK_EQ(atomic_load(&f->probes), 6);
    CHECK_EQ(atomic_load(&f->allocs), 5);
    CHECK_EQ(atomic_load(&f->frees), 5);
    vtio_machine_destroy(r.m);
}

static const struct vtio_test tests[] = {
    { "groups_default", "one group per DMA engine function, ids in scan order, each device attached to its group's default domain; a second driver is refused", t_groups_default },
    { "groups_unclaimed", "a device the driver does not claim has no group and no domains; group ids stay dense", t_groups_unclaimed },
    { "groups_multifunction", "the functions of a multi-function device without ACS form one group, attached and rolled back together", t_groups_multifunction },
    { "groups_topology", "bridges alias the functions below them into one group with the bridge (PCIe-to-PCI: secondary bus 00.0; conventional: its own id); ACS-isolated functions stay apart; root ports do not alias", t_groups_topology },
    { "default_types", "lazy gives DMA-FQ (DMA without deferred flush), strict DMA, passthrough identity, untrusted always DMA", t_default_types },
    { "driver_type", "the driver's def_domain_type overrides the options, except identity for an untrusted device", t_driver_type },
    { "set_default_type", "set_default_type refuses bound, attached, untrusted and non-default types and otherwise replaces and frees the default domain", t_set_default_type },
    { "domain_errors", "domain alloc/attach/detach/free return the documented errors and switch devices in the driver", t_domain_errors },
    { "map_errors", "map/unmap refuse bad sizes, alignment, permissions, aperture, wraps and non-unmanaged domains before the driver sees them", t_map_errors },
    { "unmap_sync", "unmap invalidates the gathered range before freeing the emptied table pages; unmap_raw + gather_finish do the same in two steps", t_unmap_sync },
    { "freelist", "freelists grow, splice, release their pages to the allocator and free their arrays", t_freelist },
    { "names", "type names, and the NULL/no-IOMMU answers of the queries", t_names },
    { "fault_log", "faults get sequence numbers, fault_sync asks the driver, the log returns the last 64 oldest first", t_fault_log },
    { "fault_handler", "a fault calls the handler of the domain the faulting device is attached to, only that one", t_fault_handler },
    { "fault_messages", "fault messages have Linux's DMAR format at ERR level, 10 per window, then a suppressed count", t_fault_messages },
    { "threads", "map/unmap from 4 threads on one domain while domains are attached and freed, and without the core lock", t_threads },
    { "register_failures", "a failed registration (probe, alloc, attach, bad ops) undoes everything and shuts the driver down", t_register_failures },
    { "shutdown", "shutdown releases every device, frees every default domain (replaced ones too) and shuts the driver down once", t_shutdown },
};

VTIO_TEST_MAIN(tests)
