/*
 * The IOMMU core (include/vtio/iommu.h; driver side in iommu_priv.h).
 *
 * Registration.  A driver's init calls vtio_iommu_register() once.  The
 * core asks the driver to claim every device (probe_device), forms groups
 * of the claimed ones (group.c), gives each group a default domain of the
 * type the options, the group's trust and the driver call for, attaches
 * every device of the group to it, and only then publishes h->iommu.  Any
 * failure undoes all of it and shuts the driver down.
 *
 * Which domain a device is in.  A group's current domain is one atomic
 * pointer (group->domain); the DMA layer reads it on every map without a
 * lock.  Changing it (attach, detach, a new default type) and creating or
 * freeing domains happen under iommu->lock, which also guards each
 * domain's `attached` count (groups whose current domain it is).  The
 * pointer is stored only after every device of the group has been switched
 * in hardware, so whoever reads the new domain finds its translations
 * live.
 *
 * Map and unmap take no core lock: they check their arguments against the
 * domain's geometry and call the driver, which serialises its own tables.
 * vtio_iommu_unmap is unmap plus vtio_iommu_gather_finish: invalidate, wait,
 * and only then free the table pages the unmap emptied (the unit may still
 * have been walking them).
 *
 * Faults are fault_log.c's.
 */
#include <vtio/host.h>
#include <vtio/page_alloc.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "host/dma/dma_priv.h"
#include "host/iommu/iommu_priv.h"
#include "util/error.h"

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

const char *vtio_iommu_domain_type_name(enum vtio_iommu_domain_type t)
{
    switch (t) {
    case VTIO_IOMMU_DOMAIN_BLOCKED: return "blocked";
    case VTIO_IOMMU_DOMAIN_IDENTITY: return "identity";
    case VTIO_IOMMU_DOMAIN_UNMANAGED: return "unmanaged";
    case VTIO_IOMMU_DOMAIN_DMA: return "DMA";
    case VTIO_IOMMU_DOMAIN_DMA_FQ: return "DMA-FQ";
    }
    return "unknown";
}

static bool is_dma_type(enum vtio_iommu_domain_type t)
{
    return t == VTIO_IOMMU_DOMAIN_DMA || t == VTIO_IOMMU_DOMAIN_DMA_FQ;
}

static bool is_paging(const struct vtio_iommu_domain *d)
{
    return d->type == VTIO_IOMMU_DOMAIN_UNMANAGED || is_dma_type(d->type);
}

static bool group_untrusted(const struct vtio_iommu_group *g)
{
    for (unsigned i = 0; i < g->n_devs; i++)
        if (g->devs[i]->untrusted)
            return true;
    return false;
}

/* ------------------------------------------------------------------------
 * Freelists
 * ------------------------------------------------------------------------ */

static int freelist_reserve(struct vtio_iommu_freelist *fl, size_t n)
{
    if (n <= fl->cap)
        return 0;
    size_t cap = fl->cap ? fl->cap : 16;
    while (cap < n)
        cap *= 2;
    uint64_t *a = realloc(fl->pa, cap * sizeof(*a));
    if (!a)
        return vtio_fail(-ENOMEM, "iommu: out of memory for a page freelist");
    fl->pa = a;
    fl->cap = cap;
    return 0;
}

int vtio_iommu_freelist_add(struct vtio_iommu_freelist *fl, uint64_t pa)
{
    if (!fl)
        return vtio_fail(-EINVAL, "iommu: NULL freelist");
    int rc = freelist_reserve(fl, fl->n + 1);
    if (rc == 0)
        fl->pa[fl->n++] = pa;
    return rc;
}

void vtio_iommu_freelist_release(struct vtio_iommu_freelist *fl, struct vtio_page_alloc *pages)
{
    if (!fl)
        return;
    for (size_t i = 0; i < fl->n; i++)
        vtio_page_free(pages, fl->pa[i], 0);
    fl->n = 0;
}

int vtio_iommu_freelist_splice(struct vtio_iommu_freelist *dst, struct vtio_iommu_freelist *src)
{
    if (!dst || !src)
        return vtio_fail(-EINVAL, "iommu: NULL freelist");
    if (src->n == 0)
        return 0;
    int rc = freelist_reserve(dst, dst->n + src->n);
    if (rc < 0)
        return rc;
    memcpy(dst->pa + dst->n, src->pa, src->n * sizeof(*src->pa));
    dst->n += src->n;
    src->n = 0;
    return 0;
}

void vtio_iommu_freelist_free(struct vtio_iommu_freelist *fl)
{
    if (!fl)
        return;
    free(fl->pa);
    *fl = (struct vtio_iommu_freelist){ 0 };
}

/* ------------------------------------------------------------------------
 * Domains: making and freeing (iommu->lock held by the callers)
 * ------------------------------------------------------------------------ */

/* A new domain of type t on unit, with the DMA layer's state if it is a
 * DMA-API domain.  @returns 0 and *out or -errno (nothing left behind). */
static int domain_make(struct vtio_iommu *iommu, void *unit, enum vtio_iommu_domain_type t,
                       bool is_default, struct vtio_iommu_domain **out)
{
    struct vtio_iommu_domain *d = iommu->ops->domain_alloc(iommu->drv, unit, t);
    if (!d)
        return vtio_fail(-ENOMEM, "iommu: %s cannot make a %s domain (%s)", iommu->ops->name,
                         vtio_iommu_domain_type_name(t), vtio_last_error());
    /* The driver hands out a zeroed domain with ops, geometry and unit set;
     * what ties it to the core is set here. */
    d->type = t;
    d->iommu = iommu;
    d->unit = d->unit ? d->unit : unit;
    d->is_default = is_default;
    if (is_dma_type(t)) {
        int rc = vtio_dma_domain_init(iommu->host, d);
        if (rc < 0) {
            d->ops->free(d);
            return rc;
        }
    }
    *out = d;
    return 0;
}

static void domain_destroy(struct vtio_iommu_domain *d)
{
    /* A fault report that found d (before it was detached) runs its handler
     * under fault_lock: wait it out. */
    pthread_mutex_lock(&d->iommu->fault_lock);
    pthread_mutex_unlock(&d->iommu->fault_lock);
    if (is_dma_type(d->type))
        vtio_dma_domain_destroy(d->iommu->host, d);
    d->ops->free(d);
}

/*
 * Points every device of g at d in hardware.  If a device refuses, the ones
 * already switched go back to `back` (which they were on) and the error is
 * returned.  Does not touch g->domain.
 */
static int attach_devices(struct vtio_iommu_group *g, struct vtio_iommu_domain *d,
                          struct vtio_iommu_domain *back)
{
    for (unsigned i = 0; i < g->n_devs; i++) {
        int rc = d->ops->attach_dev(d, g->devs[i]);
        if (rc < 0) {
            const char *name = g->devs[i]->name;
            while (back && i-- > 0)
                back->ops->attach_dev(back, g->devs[i]);
            return vtio_fail(rc, "iommu: %s: cannot attach to a %s domain", name,
                             vtio_iommu_domain_type_name(d->type));
        }
    }
    return 0;
}

/* Makes d g's current domain (devices already switched). */
static void set_current(struct vtio_iommu_group *g, struct vtio_iommu_domain *d)
{
    struct vtio_iommu_domain *old = atomic_load_explicit(&g->domain, memory_order_relaxed);
    if (old)
        old->attached--;
    d->attached++;
    atomic_store_explicit(&g->domain, d, memory_order_release);
}

int vtio_iommu_group_switch_locked(struct vtio_iommu_group *g, struct vtio_iommu_domain *d)
{
    int rc = attach_devices(g, d, atomic_load(&g->domain));
    if (rc == 0)
        set_current(g, d);
    return rc;
}

int vtio_iommu_domain_make_locked(struct vtio_iommu_group *g, enum vtio_iommu_domain_type t,
                                  struct vtio_iommu_domain **out)
{
    return domain_make(g->iommu, g->unit, t, false, out);
}

void vtio_iommu_domain_destroy_locked(struct vtio_iommu_domain *d)
{
    domain_destroy(d);
}

/* ------------------------------------------------------------------------
 * Default domains
 * ------------------------------------------------------------------------ */

/* What the host options ask for. */
static enum vtio_iommu_domain_type mode_type(const struct vtio_iommu *iommu)
{
    switch (iommu->host->opts.iommu_mode) {
    case VTIO_HOST_IOMMU_STRICT: return VTIO_IOMMU_DOMAIN_DMA;
    case VTIO_HOST_IOMMU_PASSTHROUGH: return VTIO_IOMMU_DOMAIN_IDENTITY;
    case VTIO_HOST_IOMMU_LAZY: break;
    }
    return VTIO_IOMMU_DOMAIN_DMA_FQ;
}

/* The type the driver requires for g's devices (0: none).  Devices that
 * disagree leave the choice to the options, as Linux does, with a warning. */
static enum vtio_iommu_domain_type driver_type(const struct vtio_iommu *iommu,
                                               const struct vtio_iommu_group *g)
{
    if (!iommu->ops->def_domain_type)
        return 0;
    enum vtio_iommu_domain_type want = 0;
    const struct vtio_device *first = NULL;
    for (unsigned i = 0; i < g->n_devs; i++) {
        enum vtio_iommu_domain_type t = iommu->ops->def_domain_type(iommu->drv, g->devs[i]);
        if (t != VTIO_IOMMU_DOMAIN_IDENTITY && !is_dma_type(t))
            continue;           /* no preference (or nothing a default can be) */
        if (want && t != want) {
            vtio_host_log(iommu->host, VTIO_LOG_WARN,
                          "iommu: device %s needs a %s domain but %s in group %u needs %s; "
                          "using the default", g->devs[i]->name, vtio_iommu_domain_type_name(t),
                          first->name, g->id, vtio_iommu_domain_type_name(want));
            return 0;
        }
        want = t;
        first = g->devs[i];
    }
    return want;
}

/* The type of g's default domain: the driver's requirement, else the host
 * options; DMA for a group with an untrusted device whatever was asked;
 * never DMA_FQ on an IOMMU that cannot defer flushes. */
static enum vtio_iommu_domain_type default_type(const struct vtio_iommu *iommu,
                                                const struct vtio_iommu_group *g)
{
    enum vtio_iommu_domain_type t = driver_type(iommu, g);
    if (!t)
        t = mode_type(iommu);
    if (group_untrusted(g) && t != VTIO_IOMMU_DOMAIN_DMA) {
        if (t == VTIO_IOMMU_DOMAIN_IDENTITY)
            vtio_host_log(iommu->host, VTIO_LOG_WARN,
                          "iommu: group %u has an untrusted device; using a DMA domain, "
                          "not identity", g->id);
        t = VTIO_IOMMU_DOMAIN_DMA;
    }
    if (t == VTIO_IOMMU_DOMAIN_DMA_FQ && !iommu->ops->deferred_flush)
        t = VTIO_IOMMU_DOMAIN_DMA;
    return t;
}

static int group_setup_default(struct vtio_iommu *iommu, struct vtio_iommu_group *g)
{
    struct vtio_iommu_domain *d;
    int rc = domain_make(iommu, g->unit, default_type(iommu, g), true, &d);
    if (rc < 0)
        return rc;
    rc = attach_devices(g, d, NULL);
    if (rc < 0) {
        domain_destroy(d);
        return rc;
    }
    g->default_domain = d;
    set_current(g, d);
    vtio_host_log(iommu->host, VTIO_LOG_DEBUG, "iommu: group %u: %u device(s), default domain %s",
                  g->id, g->n_devs, vtio_iommu_domain_type_name(d->type));
    return 0;
}

/* ------------------------------------------------------------------------
 * Registration
 * ------------------------------------------------------------------------ */

/* Frees every group's default domain.  First no device can find a domain
 * through its group any more; a user domain still attached stays the
 * user's.  Translation stays as the hardware has it until ops->shutdown
 * turns it off, and no device does DMA by then (bus mastering is off). */
static void free_default_domains(struct vtio_iommu *iommu)
{
    for (unsigned i = 0; i < iommu->n_groups; i++)
        for (unsigned j = 0; j < iommu->groups[i]->n_devs; j++)
            iommu->groups[i]->devs[j]->group = NULL;
    for (unsigned i = 0; i < iommu->n_groups; i++) {
        struct vtio_iommu_group *g = iommu->groups[i];
        struct vtio_iommu_domain *cur = atomic_load(&g->domain);
        if (cur && cur != g->default_domain)
            cur->attached--;
        atomic_store(&g->domain, NULL);
        if (g->default_domain)
            domain_destroy(g->default_domain);
        if (g->blocking_domain)
            domain_destroy(g->blocking_domain);
        g->default_domain = g->blocking_domain = NULL;
    }
}

static void release_devices(struct vtio_iommu *iommu, struct vtio_device **devs, unsigned n)
{
    for (unsigned i = 0; i < n && iommu->ops->release_device; i++)
        iommu->ops->release_device(iommu->drv, devs[i]);
}

/* The last step of unregistering, or of a failed registration. */
static void iommu_free(struct vtio_iommu *iommu)
{
    vtio_iommu_groups_destroy(iommu);
    iommu->ops->shutdown(iommu->drv);
    /* Only now: the driver's fault thread, which reads it, is gone. */
    if (iommu->host->iommu == iommu)
        iommu->host->iommu = NULL;
    pthread_mutex_destroy(&iommu->lock);
    pthread_mutex_destroy(&iommu->fault_lock);
    free(iommu);
}

/* Asks the driver to claim each device.  @returns how many it claimed
 * (stored in claimed[] and units[]), or -errno. */
static int probe_devices(struct vtio_iommu *iommu, struct vtio_device **claimed, void **units)
{
    struct vtio_host *h = iommu->host;
    int n = 0;
    for (unsigned i = 0; i < h->n_devices; i++) {
        void *unit = NULL;
        int rc = iommu->ops->probe_device(iommu->drv, h->devices[i], &unit);
        if (rc == -ENODEV)
            continue;
        if (rc < 0) {
            release_devices(iommu, claimed, (unsigned)n);
            return vtio_fail(rc, "iommu: %s: probing %s failed (%s)", iommu->ops->name,
                             h->devices[i]->name, vtio_last_error());
        }
        claimed[n] = h->devices[i];
        units[n++] = unit;
    }
    return n;
}

int vtio_iommu_register(struct vtio_host *h, const struct vtio_iommu_ops *ops, void *drv)
{
    if (!h || !ops || !ops->probe_device || !ops->domain_alloc || !ops->shutdown)
        return vtio_fail(-EINVAL, "iommu: register needs a host and a driver with "
                         "probe_device, domain_alloc and shutdown");
    if (h->iommu) {
        ops->shutdown(drv);
        return vtio_fail(-EBUSY, "iommu: %s: an IOMMU driver is already registered",
                         ops->name);
    }
    struct vtio_iommu *iommu = calloc(1, sizeof(*iommu));
    struct vtio_device **claimed = calloc(h->n_devices + 1, sizeof(*claimed));
    void **units = calloc(h->n_devices + 1, sizeof(*units));
    if (!iommu || !claimed || !units) {
        free(iommu);
        free(claimed);
        free(units);
        ops->shutdown(drv);
        return vtio_fail(-ENOMEM, "iommu: out of memory");
    }
    iommu->host = h;
    iommu->ops = ops;
    iommu->drv = drv;
    pthread_mutex_init(&iommu->lock, NULL);
    pthread_mutex_init(&iommu->fault_lock, NULL);

    int rc = probe_devices(iommu, claimed, units);
    unsigned n_claimed = rc > 0 ? (unsigned)rc : 0;
    if (rc >= 0)
        rc = vtio_iommu_groups_create(iommu, claimed, units, n_claimed);
    pthread_mutex_lock(&iommu->lock);
    for (unsigned i = 0; rc == 0 && i < iommu->n_groups; i++)
        rc = group_setup_default(iommu, iommu->groups[i]);
    pthread_mutex_unlock(&iommu->lock);
    free(units);
    if (rc < 0) {
        free_default_domains(iommu);
        release_devices(iommu, claimed, n_claimed);
    }
    free(claimed);
    if (rc < 0) {
        iommu_free(iommu);
        return rc;
    }
    h->iommu = iommu;
    vtio_host_log(h, VTIO_LOG_INFO, "iommu: %s: %u of %u devices in %u groups",
                  ops->name ? ops->name : "driver", n_claimed, h->n_devices, iommu->n_groups);
    return 0;
}

void vtio_iommu_unregister(struct vtio_host *h)
{
    if (!h || !h->iommu)
        return;
    struct vtio_iommu *iommu = h->iommu;
    /* Faults first: the driver's fault thread runs until ops->shutdown; from
     * here what it reports is dropped, so it never meets a group or domain
     * being freed. */
    pthread_mutex_lock(&iommu->fault_lock);
    iommu->dying = true;
    pthread_mutex_unlock(&iommu->fault_lock);
    free_default_domains(iommu);
    /* the devices the driver claimed are exactly the groups' members */
    for (unsigned i = 0; i < iommu->n_groups; i++)
        release_devices(iommu, iommu->groups[i]->devs, iommu->groups[i]->n_devs);
    iommu_free(iommu);
}

bool vtio_iommu_present(struct vtio_host *h)
{
    return h && h->iommu;
}

/* ------------------------------------------------------------------------
 * Groups
 * ------------------------------------------------------------------------ */

struct vtio_iommu_group *vtio_iommu_group_get(struct vtio_device *dev)
{
    return dev ? dev->group : NULL;
}

unsigned vtio_iommu_group_id(const struct vtio_iommu_group *g)
{
    return g ? g->id : 0;
}

unsigned vtio_iommu_group_count(struct vtio_host *h)
{
    return h && h->iommu ? h->iommu->n_groups : 0;
}

struct vtio_iommu_group *vtio_iommu_group_by_id(struct vtio_host *h, unsigned id)
{
    return h && h->iommu && id < h->iommu->n_groups ? h->iommu->groups[id] : NULL;
}

unsigned vtio_iommu_group_devices(struct vtio_iommu_group *g, struct vtio_device **out,
                                  unsigned max)
{
    if (!g)
        return 0;
    for (unsigned i = 0; out && i < g->n_devs && i < max; i++)
        out[i] = g->devs[i];
    return g->n_devs;
}

struct vtio_iommu_domain *vtio_iommu_group_domain(struct vtio_iommu_group *g)
{
    return g ? atomic_load_explicit(&g->domain, memory_order_acquire) : NULL;
}

struct vtio_iommu_domain *vtio_iommu_group_default_domain(struct vtio_iommu_group *g)
{
    if (!g)
        return NULL;
    pthread_mutex_lock(&g->iommu->lock);
    struct vtio_iommu_domain *d = g->default_domain;
    pthread_mutex_unlock(&g->iommu->lock);
    return d;
}

struct vtio_iommu_group *vtio_iommu_group_of_rid(struct vtio_iommu *iommu, uint16_t rid)
{
    if (!iommu)
        return NULL;
    for (unsigned i = 0; i < iommu->n_groups; i++)
        for (unsigned j = 0; j < iommu->groups[i]->n_devs; j++)
            if (iommu->groups[i]->devs[j]->rid == rid)
                return iommu->groups[i];
    for (unsigned i = 0; i < iommu->n_groups; i++)
        if (iommu->groups[i]->alias_rid == rid)
            return iommu->groups[i];
    return NULL;
}

static void lock_devices(struct vtio_iommu_group *g, bool lock)
{
    for (unsigned i = 0; i < g->n_devs; i++)
        if (lock)
            pthread_mutex_lock(&g->devs[i]->lock);
        else
            pthread_mutex_unlock(&g->devs[i]->lock);
}

/* Under the core lock and the group's device locks (no driver can bind
 * meanwhile). */
static int replace_default(struct vtio_iommu_group *g, enum vtio_iommu_domain_type t)
{
    struct vtio_iommu *iommu = g->iommu;
    for (unsigned i = 0; i < g->n_devs; i++)
        if (atomic_load(&g->devs[i]->driver))
            return vtio_fail(-EBUSY, "iommu: group %u: %s is bound to %s", g->id,
                             g->devs[i]->name, atomic_load(&g->devs[i]->driver));
    struct vtio_iommu_domain *old = g->default_domain;
    if (atomic_load(&g->domain) != old)
        return vtio_fail(-EBUSY, "iommu: group %u is attached to another domain", g->id);
    if (old->type == t)
        return 0;
    struct vtio_iommu_domain *d;
    int rc = domain_make(iommu, g->unit, t, true, &d);
    if (rc < 0)
        return rc;
    rc = attach_devices(g, d, old);
    if (rc < 0) {
        domain_destroy(d);
        return rc;
    }
    g->default_domain = d;
    set_current(g, d);
    domain_destroy(old);
    return 0;
}

int vtio_iommu_group_set_default_type(struct vtio_iommu_group *g,
                                      enum vtio_iommu_domain_type t)
{
    if (!g)
        return vtio_fail(-EINVAL, "iommu: NULL group");
    if (t != VTIO_IOMMU_DOMAIN_IDENTITY && !is_dma_type(t))
        return vtio_fail(-EINVAL, "iommu: a default domain cannot be %s",
                         vtio_iommu_domain_type_name(t));
    if (t != VTIO_IOMMU_DOMAIN_DMA && group_untrusted(g))
        return vtio_fail(-EPERM, "iommu: group %u has an untrusted device: only DMA", g->id);
    if (t == VTIO_IOMMU_DOMAIN_DMA_FQ && !g->iommu->ops->deferred_flush)
        return vtio_fail(-EINVAL, "iommu: %s cannot defer flushes (no DMA-FQ)",
                         g->iommu->ops->name);
    pthread_mutex_lock(&g->iommu->lock);
    lock_devices(g, true);
    int rc = replace_default(g, t);
    lock_devices(g, false);
    pthread_mutex_unlock(&g->iommu->lock);
    return rc;
}

/* ------------------------------------------------------------------------
 * Domains: the public calls
 * ------------------------------------------------------------------------ */

int vtio_iommu_domain_alloc(struct vtio_device *dev, enum vtio_iommu_domain_type t,
                            struct vtio_iommu_domain **out)
{
    if (!dev || !out)
        return vtio_fail(-EINVAL, "iommu: NULL argument to domain_alloc");
    if (t != VTIO_IOMMU_DOMAIN_BLOCKED && t != VTIO_IOMMU_DOMAIN_IDENTITY &&
        t != VTIO_IOMMU_DOMAIN_UNMANAGED)
        return vtio_fail(-EINVAL, "iommu: cannot allocate a %s domain (the DMA API owns those)",
                         vtio_iommu_domain_type_name(t));
    struct vtio_iommu_group *g = dev->group;
    if (!g)
        return vtio_fail(-ENODEV, "iommu: no IOMMU translates %s", dev->name);
    pthread_mutex_lock(&g->iommu->lock);
    int rc = domain_make(g->iommu, g->unit, t, false, out);
    pthread_mutex_unlock(&g->iommu->lock);
    return rc;
}

int vtio_iommu_domain_free(struct vtio_iommu_domain *d)
{
    if (!d)
        return vtio_fail(-EINVAL, "iommu: NULL domain");
    if (d->is_default)
        return vtio_fail(-EINVAL, "iommu: a group's default domain is the core's to free");
    struct vtio_iommu *iommu = d->iommu;
    pthread_mutex_lock(&iommu->lock);
    if (d->attached) {
        pthread_mutex_unlock(&iommu->lock);
        return vtio_fail(-EBUSY, "iommu: domain still attached to %u group(s)", d->attached);
    }
    domain_destroy(d);
    pthread_mutex_unlock(&iommu->lock);
    return 0;
}

enum vtio_iommu_domain_type vtio_iommu_domain_type(const struct vtio_iommu_domain *d)
{
    return d ? d->type : VTIO_IOMMU_DOMAIN_BLOCKED;
}

void vtio_iommu_domain_geometry(const struct vtio_iommu_domain *d, uint64_t *aperture_end,
                                uint64_t *pgsize_bitmap)
{
    if (aperture_end)
        *aperture_end = d ? d->aperture_end : 0;
    if (pgsize_bitmap)
        *pgsize_bitmap = d ? d->pgsize_bitmap : 0;
}

int vtio_iommu_attach_group(struct vtio_iommu_domain *d, struct vtio_iommu_group *g)
{
    if (!d || !g)
        return vtio_fail(-EINVAL, "iommu: NULL argument to attach_group");
    if (d->iommu != g->iommu)
        return vtio_fail(-EINVAL, "iommu: domain and group %u belong to different IOMMUs",
                         g->id);
    if (d->is_default || is_dma_type(d->type))
        return vtio_fail(-EINVAL, "iommu: a DMA-API domain cannot be attached by hand");
    struct vtio_iommu *iommu = g->iommu;
    pthread_mutex_lock(&iommu->lock);
    int rc = 0;
    struct vtio_iommu_domain *cur = atomic_load(&g->domain);
    if (cur != g->default_domain && cur != g->blocking_domain)
        rc = vtio_fail(-EBUSY, "iommu: group %u is already attached to a %s domain", g->id,
                       vtio_iommu_domain_type_name(cur->type));
    if (rc == 0)
        rc = vtio_iommu_group_switch_locked(g, d);
    pthread_mutex_unlock(&iommu->lock);
    return rc;
}

int vtio_iommu_detach_group(struct vtio_iommu_domain *d, struct vtio_iommu_group *g)
{
    if (!d || !g)
        return vtio_fail(-EINVAL, "iommu: NULL argument to detach_group");
    struct vtio_iommu *iommu = g->iommu;
    pthread_mutex_lock(&iommu->lock);
    int rc = 0;
    if (atomic_load(&g->domain) != d || d == g->default_domain || d == g->blocking_domain)
        rc = vtio_fail(-EINVAL, "iommu: group %u is not attached to that domain", g->id);
    /* An owned group goes back to blocking: its owner still holds it. */
    if (rc == 0)
        rc = vtio_iommu_group_switch_locked(g, g->owner ? g->blocking_domain
                                                        : g->default_domain);
    pthread_mutex_unlock(&iommu->lock);
    return rc;
}

/* ------------------------------------------------------------------------
 * Map and unmap (no core lock: the driver serialises its tables)
 * ------------------------------------------------------------------------ */

static uint64_t min_page(const struct vtio_iommu_domain *d)
{
    uint64_t bitmap = d->pgsize_bitmap ? d->pgsize_bitmap : VTIO_PAGE_SIZE;
    return bitmap & -bitmap;
}

/* [iova, iova + size) is a whole number of the domain's smallest pages
 * inside its aperture. */
static int check_range(const struct vtio_iommu_domain *d, uint64_t iova, uint64_t size)
{
    uint64_t page = min_page(d);
    if (size == 0 || (iova | size) & (page - 1))
        return vtio_fail(-EINVAL, "iommu: range %#llx+%#llx is empty or not aligned to %#llx",
                         (unsigned long long)iova, (unsigned long long)size,
                         (unsigned long long)page);
    if (iova + size - 1 < iova || iova + size - 1 > d->aperture_end)
        return vtio_fail(-EINVAL, "iommu: range %#llx+%#llx is beyond the aperture (%#llx)",
                         (unsigned long long)iova, (unsigned long long)size,
                         (unsigned long long)d->aperture_end);
    return 0;
}

static int check_paging(const struct vtio_iommu_domain *d)
{
    if (!d)
        return vtio_fail(-EINVAL, "iommu: NULL domain");
    if (!is_paging(d) || !d->ops->map || !d->ops->unmap)
        return vtio_fail(-EINVAL, "iommu: a %s domain has no page tables",
                         vtio_iommu_domain_type_name(d->type));
    return 0;
}

int vtio_iommu_map_raw(struct vtio_iommu_domain *d, uint64_t iova, uint64_t pa, uint64_t size,
                       unsigned prot)
{
    int rc = check_paging(d);
    if (rc == 0)
        rc = check_range(d, iova, size);
    if (rc < 0)
        return rc;
    if (pa & (min_page(d) - 1) || pa + size - 1 < pa)
        return vtio_fail(-EINVAL, "iommu: physical range %#llx+%#llx is not aligned or wraps",
                         (unsigned long long)pa, (unsigned long long)size);
    if (prot == 0 || prot & ~(VTIO_IOMMU_READ | VTIO_IOMMU_WRITE))
        return vtio_fail(-EINVAL, "iommu: bad mapping permissions %#x", prot);
    return d->ops->map(d, iova, pa, size, prot);
}

int vtio_iommu_map(struct vtio_iommu_domain *d, uint64_t iova, uint64_t pa, uint64_t size,
                   unsigned prot)
{
    if (d && d->type != VTIO_IOMMU_DOMAIN_UNMANAGED)
        return vtio_fail(-EINVAL, "iommu: only unmanaged domains are mapped by hand (this "
                         "one is %s)", vtio_iommu_domain_type_name(d->type));
    return vtio_iommu_map_raw(d, iova, pa, size, prot);
}

uint64_t vtio_iommu_unmap_raw(struct vtio_iommu_domain *d, uint64_t iova, uint64_t size,
                              struct vtio_iommu_gather *g)
{
    if (check_paging(d) < 0 || check_range(d, iova, size) < 0)
        return 0;
    if (!g) {
        vtio_fail(-EINVAL, "iommu: unmap without a gather");
        return 0;
    }
    return d->ops->unmap(d, iova, size, g);
}

void vtio_iommu_gather_finish(struct vtio_iommu_domain *d, struct vtio_iommu_gather *g)
{
    if (!d || !g)
        return;
    if ((g->start != g->end || g->freelist.n) && d->ops->iotlb_sync)
        d->ops->iotlb_sync(d, g);
    vtio_iommu_freelist_release(&g->freelist, d->iommu->host->pages);
    vtio_iommu_freelist_free(&g->freelist);
    vtio_iommu_gather_init(g);
}

uint64_t vtio_iommu_unmap(struct vtio_iommu_domain *d, uint64_t iova, uint64_t size)
{
    if (d && d->type != VTIO_IOMMU_DOMAIN_UNMANAGED) {
        vtio_fail(-EINVAL, "iommu: only unmanaged domains are unmapped by hand (this one "
                  "is %s)", vtio_iommu_domain_type_name(d->type));
        return 0;
    }
    struct vtio_iommu_gather g;
    vtio_iommu_gather_init(&g);
    uint64_t bytes = vtio_iommu_unmap_raw(d, iova, size, &g);
    vtio_iommu_gather_finish(d, &g);
    return bytes;
}

int vtio_iommu_iova_to_phys(struct vtio_iommu_domain *d, uint64_t iova, uint64_t *pa)
{
    if (!d || !pa)
        return vtio_fail(-EINVAL, "iommu: NULL argument to iova_to_phys");
    if (d->type == VTIO_IOMMU_DOMAIN_IDENTITY) {
        *pa = iova;
        return 0;
    }
    if (!is_paging(d) || !d->ops->iova_to_phys || iova > d->aperture_end)
        return -ENOENT;
    return d->ops->iova_to_phys(d, iova, pa);
}
