/*
 * VFIO's type1 IOMMU backend (Linux's drivers/vfio/vfio_iommu_type1.c): the
 * DMA mappings of a container, made of the program's own memory.  This
 * file is the container; its mappings are type1_dma.c's, its dirty
 * tracking type1_dirty.c's (type1_priv.h joins them).
 *
 * A container holds
 *  - its domains: one UNMANAGED IOMMU domain per IOMMU unit its groups sit
 *    behind.  A new group joins the first domain that takes it
 *    (vtio_iommu_attach_group refuses a domain of another unit), or gets a
 *    domain of its own, made from one of its devices, into which every
 *    existing mapping is replayed.  When the last group of the last domain
 *    leaves, every mapping goes too;
 *  - the valid IOVA list: the intersection of the domains' apertures minus
 *    every group's reserved regions (the MSI window), ascending and
 *    disjoint.  A group that would take away IOVAs an existing mapping uses
 *    is refused (-EINVAL).  With no domain the list is empty and means "no
 *    restriction", as in Linux;
 *  - its mappings and the dirty-tracking state;
 *  - the page sizes every domain maps (pgsize_bitmap; with no domain,
 *    every size from 4 KiB): the smallest is the unit of MAP_DMA, UNMAP_DMA
 *    and dirty bitmaps.
 *
 * GET_INFO reports the page sizes and three capabilities: the IOVA ranges
 * (when there is a domain), migration (the dirty bitmap's page size and
 * largest size) and how many more mappings may be made (DMA_AVAIL).
 *
 * Not here: VFIO_DMA_MAP_FLAG_VADDR and VFIO_DMA_UNMAP_FLAG_VADDR (live
 * update) are unknown flags (-EINVAL, what a kernel before 5.12 answers)
 * and UPDATE_VADDR is 0; pinning for emulated (mdev) devices.
 * VFIO_DMA_CC_IOMMU is 1 when every domain enforces cache coherency; VT-d
 * does that only with Snoop Control (ECAP.SC), which vtio's unit does not
 * have, so with a domain the answer is 0, as Linux's would be.
 *
 * Threads: one mutex per container guards all of it (Linux's iommu->lock)
 * and is held across pinning and mapping, so calls from several threads
 * serialise.  Lock order: the core's container lock, this one, then the
 * IOMMU core's and the process's.
 */
#include "host/vfio/type1_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

#define PAGE_SIZE VTIO_PAGE_SIZE

/* ------------------------------------------------------------------------
 * The valid IOVA list
 * ------------------------------------------------------------------------ */

/* Whether [start, last] lies inside one valid range. */
bool type1_iova_valid(const struct type1 *c, uint64_t start, uint64_t last)
{
    for (unsigned i = 0; i < c->iovas.n; i++)
        if (start >= c->iovas.r[i].start && last <= c->iovas.r[i].last)
            return true;
    return c->iovas.n == 0;
}

/* Room for one more range in l.  @returns 0; -ENOMEM. */
static int iova_list_grow(struct iova_list *l)
{
    if (l->n < l->cap)
        return 0;
    unsigned cap = l->cap ? 2 * l->cap : 4;
    struct iova_range *r = realloc(l->r, cap * sizeof(*r));
    if (!r)
        return vtio_fail(-ENOMEM, "vfio type1: out of memory");
    l->r = r;
    l->cap = cap;
    return 0;
}

/* Removes [start, last] from l.  @returns 0; -ENOMEM. */
static int iova_list_subtract(struct iova_list *l, uint64_t start, uint64_t last)
{
    int err = iova_list_grow(l);       /* a split adds a range */
    if (err)
        return err;
    for (unsigned i = 0; i < l->n; i++) {
        struct iova_range *r = &l->r[i];
        if (start > r->last || last < r->start)
            continue;
        if (start > r->start && last < r->last) {
            /* a hole in the middle: split */
            memmove(r + 2, r + 1, (l->n - i - 1) * sizeof(*r));
            r[1] = (struct iova_range){ last + 1, r->last };
            r->last = start - 1;
            l->n++;
            return 0;
        }
        if (start > r->start) {
            r->last = start - 1;
        } else if (last < r->last) {
            r->start = last + 1;
        } else {
            memmove(r, r + 1, (l->n - i - 1) * sizeof(*r));
            l->n--;
            i--;
        }
    }
    return 0;
}

/* Removes g's reserved regions from l.  @returns 0; -ENOMEM. */
static int iova_list_subtract_group(struct iova_list *l, struct vtio_iommu_group *g)
{
    unsigned n = vtio_iommu_group_resv_regions(g, NULL, 0);
    struct vtio_iommu_resv_region *resv = calloc(n ? n : 1, sizeof(*resv));
    if (!resv)
        return vtio_fail(-ENOMEM, "vfio type1: out of memory");
    n = vtio_iommu_group_resv_regions(g, resv, n);
    int err = 0;
    for (unsigned i = 0; i < n && !err; i++)
        if (resv[i].length)
            err = iova_list_subtract(l, resv[i].start, resv[i].start + resv[i].length - 1);
    free(resv);
    return err;
}

/* -EINVAL if a mapping uses an IOVA outside l. */
static int check_mappings_inside(const struct type1 *c, const struct iova_list *l)
{
    uint64_t gap = 0;                  /* where the gap before r[i] starts */
    for (unsigned i = 0; i < l->n; i++) {
        if (l->r[i].start > gap && type1_dma_find(c, gap, l->r[i].start - 1))
            break;
        if (l->r[i].last == UINT64_MAX)
            return 0;
        gap = l->r[i].last + 1;
    }
    if (!l->n || type1_dma_find(c, gap, UINT64_MAX))
        return vtio_fail(-EINVAL, "vfio type1: the group's IOMMU cannot translate IOVAs a "
                         "mapping uses (aperture or reserved region)");
    return 0;
}

/*
 * The valid list of the container's domains and groups, plus group g (if
 * not NULL) in a domain whose aperture ends at aperture_end.  @returns 0
 * and *out; -EINVAL it would be empty or leave out IOVAs a mapping uses;
 * -ENOMEM.
 */
static int iova_list_build(struct type1 *c, struct vtio_iommu_group *g, uint64_t aperture_end,
                           struct iova_list *out)
{
    *out = (struct iova_list){ 0 };
    uint64_t end = aperture_end;
    for (unsigned i = 0; i < c->n_domains; i++)
        if (c->domains[i].aperture_end < end)
            end = c->domains[i].aperture_end;
    int err = iova_list_grow(out);
    if (!err)
        out->r[out->n++] = (struct iova_range){ 0, end };
    if (!err && g)
        err = iova_list_subtract_group(out, g);
    for (unsigned i = 0; i < c->n_domains && !err; i++)
        for (unsigned j = 0; j < c->domains[i].n_groups && !err; j++)
            err = iova_list_subtract_group(out, c->domains[i].groups[j]);
    if (!err && !out->n)
        err = vtio_fail(-EINVAL, "vfio type1: the reserved regions leave no IOVA to map");
    if (!err)
        err = check_mappings_inside(c, out);
    if (err) {
        free(out->r);
        *out = (struct iova_list){ 0 };
    }
    return err;
}

static void iova_list_install(struct type1 *c, struct iova_list *l)
{
    free(c->iovas.r);
    c->iovas = *l;
}

/* ------------------------------------------------------------------------
 * Domains and groups
 * ------------------------------------------------------------------------ */

static void update_pgsize_bitmap(struct type1 *c)
{
    /* With no domain: every size from 4 KiB (Linux's PAGE_MASK). */
    c->pgsize_bitmap = ~(PAGE_SIZE - 1);
    for (unsigned i = 0; i < c->n_domains; i++)
        c->pgsize_bitmap &= c->domains[i].pgsize_bitmap;
    if (c->pgsize_bitmap & (PAGE_SIZE - 1))
        c->pgsize_bitmap = (c->pgsize_bitmap & ~(PAGE_SIZE - 1)) | PAGE_SIZE;
}

static struct type1_domain *domain_of(struct type1 *c, struct vtio_iommu_group *g,
                                      unsigned *at)
{
    for (unsigned i = 0; i < c->n_domains; i++)
        for (unsigned j = 0; j < c->domains[i].n_groups; j++)
            if (c->domains[i].groups[j] == g) {
                if (at)
                    *at = j;
                return &c->domains[i];
            }
    return NULL;
}

static int group_add(struct type1_domain *td, struct vtio_iommu_group *g)
{
    struct vtio_iommu_group **gs = realloc(td->groups, (td->n_groups + 1) * sizeof(*gs));
    if (!gs)
        return vtio_fail(-ENOMEM, "vfio type1: out of memory");
    gs[td->n_groups++] = g;
    td->groups = gs;
    return 0;
}

/* g into a new domain of its own IOMMU, with the mappings replayed. */
static int attach_new_domain(struct type1 *c, struct vtio_iommu_group *g)
{
    struct vtio_device *dev;
    if (!vtio_iommu_group_devices(g, &dev, 1))
        return vtio_fail(-ENODEV, "vfio type1: group %u has no device",
                         vtio_iommu_group_id(g));
    struct type1_domain td = { 0 };
    int err = vtio_iommu_domain_alloc(dev, VTIO_IOMMU_DOMAIN_UNMANAGED, &td.domain);
    if (err)
        return err;
    vtio_iommu_domain_geometry(td.domain, &td.aperture_end, &td.pgsize_bitmap);
    /* Only VT-d's Snoop Control enforces coherency; vtio's unit lacks it. */
    td.enforce_cache_coherency = false;

    struct iova_list l;
    struct type1_domain *ds = NULL;
    err = iova_list_build(c, g, td.aperture_end, &l);
    if (!err)
        err = group_add(&td, g);
    if (!err) {
        ds = realloc(c->domains, (c->n_domains + 1) * sizeof(*ds));
        if (!ds)
            err = vtio_fail(-ENOMEM, "vfio type1: out of memory");
        else
            c->domains = ds;
    }
    if (!err)
        err = vtio_iommu_attach_group(td.domain, g);
    if (!err) {
        err = type1_dma_replay(c, td.domain);
        if (err)
            vtio_iommu_detach_group(td.domain, g);
    }
    if (err) {
        free(l.r);
        free(td.groups);
        vtio_iommu_domain_free(td.domain);
        return err;
    }
    c->domains[c->n_domains++] = td;
    iova_list_install(c, &l);
    update_pgsize_bitmap(c);
    return 0;
}

/* g into the first domain that takes it (one of g's IOMMU, whose aperture
 * the list already has: only g's reserved regions narrow it).
 * @returns 0; -ENODEV none takes it; -errno. */
static int attach_existing_domain(struct type1 *c, struct vtio_iommu_group *g)
{
    struct iova_list l;
    int err = iova_list_build(c, g, UINT64_MAX, &l);
    for (unsigned i = 0; i < c->n_domains && !err; i++) {
        struct type1_domain *td = &c->domains[i];
        if (vtio_iommu_attach_group(td->domain, g) < 0)
            continue;
        err = group_add(td, g);
        if (err) {
            vtio_iommu_detach_group(td->domain, g);
            break;
        }
        iova_list_install(c, &l);
        return 0;
    }
    free(l.r);
    return err ? err : -ENODEV;
}

static int type1_attach_group(void *data, struct vtio_iommu_group *g)
{
    struct type1 *c = data;
    if (!g)
        return vtio_fail(-EINVAL, "vfio type1: no group");
    pthread_mutex_lock(&c->lock);
    int err = 0;
    if (domain_of(c, g, NULL)) {
        err = vtio_fail(-EINVAL, "vfio type1: group %u is already in the container",
                        vtio_iommu_group_id(g));
        goto out;
    }
    err = c->n_domains ? attach_existing_domain(c, g) : -ENODEV;
    if (err == -ENODEV)
        err = attach_new_domain(c, g);
out:
    pthread_mutex_unlock(&c->lock);
    return err;
}

static void domain_release(struct type1_domain *td)
{
    for (unsigned j = 0; j < td->n_groups; j++)
        vtio_iommu_detach_group(td->domain, td->groups[j]);
    free(td->groups);
    vtio_iommu_domain_free(td->domain);
}

static void type1_detach_group(void *data, struct vtio_iommu_group *g)
{
    struct type1 *c = data;
    pthread_mutex_lock(&c->lock);
    unsigned at;
    struct type1_domain *td = domain_of(c, g, &at);
    if (td) {
        vtio_iommu_detach_group(td->domain, g);
        td->groups[at] = td->groups[--td->n_groups];
        if (!td->n_groups) {
            if (c->n_domains == 1)
                type1_dma_remove_all(c);
            domain_release(td);
            *td = c->domains[--c->n_domains];
            update_pgsize_bitmap(c);
        }
        /* Fewer apertures and regions: the list can only grow, so no
         * mapping is in the way and build fails only for memory, when the
         * old, narrower list stays. */
        struct iova_list l;
        if (!c->n_domains)
            iova_list_install(c, &(struct iova_list){ 0 });
        else if (!iova_list_build(c, NULL, UINT64_MAX, &l))
            iova_list_install(c, &l);
    }
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------------------
 * GET_INFO and the ioctls
 * ------------------------------------------------------------------------ */

static int add_caps(struct type1 *c, struct vfio_info_cap *caps)
{
    struct vfio_iommu_type1_info_cap_migration *mig = (void *)vfio_info_cap_add(
        caps, sizeof(*mig), VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, 1);
    if (!mig)
        return -ENOMEM;
    mig->pgsize_bitmap = type1_min_pgsize(c);
    mig->max_dirty_bitmap_size = DIRTY_BITMAP_SIZE_MAX;

    struct vfio_iommu_type1_info_dma_avail *avail = (void *)vfio_info_cap_add(
        caps, sizeof(*avail), VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1);
    if (!avail)
        return -ENOMEM;
    avail->avail = c->dma_avail;

    if (!c->iovas.n)
        return 0;
    struct vfio_iommu_type1_info_cap_iova_range *range = (void *)vfio_info_cap_add(
        caps, sizeof(*range) + c->iovas.n * sizeof(range->iova_ranges[0]),
        VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1);
    if (!range)
        return -ENOMEM;
    range->nr_iovas = c->iovas.n;
    for (unsigned i = 0; i < c->iovas.n; i++)
        range->iova_ranges[i] = (struct vfio_iova_range){ c->iovas.r[i].start,
                                                          c->iovas.r[i].last };
    return 0;
}

static long get_info(struct type1 *c, void *arg)
{
    struct vfio_iommu_type1_info info = { 0 };
    size_t minsz = offsetof(struct vfio_iommu_type1_info, cap_offset);
    memcpy(&info, arg, minsz);
    if (info.argsz < minsz)
        return vtio_fail(-EINVAL, "vfio type1: GET_INFO argsz %u < %zu", info.argsz, minsz);

    struct vfio_info_cap caps = { 0 };
    pthread_mutex_lock(&c->lock);
    info.flags = VFIO_IOMMU_INFO_PGSIZES;
    info.iova_pgsizes = c->pgsize_bitmap;
    int err = add_caps(c, &caps);
    pthread_mutex_unlock(&c->lock);
    if (err) {
        vfio_info_cap_free(&caps);
        return err;
    }
    vfio_info_copy_out(arg, info.argsz, &info, sizeof(info), &caps, &info.flags,
                       VFIO_IOMMU_INFO_CAPS, &info.cap_offset);
    vfio_info_cap_free(&caps);
    return 0;
}

static long type1_ioctl(void *data, unsigned long request, unsigned long arg)
{
    struct type1 *c = data;
    void *p = (void *)(uintptr_t)arg;
    if (!p && (request == VFIO_IOMMU_GET_INFO || request == VFIO_IOMMU_MAP_DMA ||
               request == VFIO_IOMMU_UNMAP_DMA || request == VFIO_IOMMU_DIRTY_PAGES))
        return vtio_fail(-EFAULT, "vfio type1: NULL argument");
    switch (request) {
    case VFIO_IOMMU_GET_INFO:    return get_info(c, p);
    case VFIO_IOMMU_MAP_DMA:     return type1_map_dma(c, p);
    case VFIO_IOMMU_UNMAP_DMA:   return type1_unmap_dma(c, p);
    case VFIO_IOMMU_DIRTY_PAGES: return type1_dirty_pages(c, p);
    default:
        return vtio_fail(-ENOTTY, "vfio type1: unknown ioctl %#lx", request);
    }
}

/* ------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------ */

static long type1_check_extension(void *data, unsigned long ext)
{
    struct type1 *c = data;
    switch (ext) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
    case VFIO_UNMAP_ALL:
        return 1;
    case VFIO_DMA_CC_IOMMU: {
        if (!c)
            return 0;
        long all = 1;
        pthread_mutex_lock(&c->lock);
        for (unsigned i = 0; i < c->n_domains; i++)
            if (!c->domains[i].enforce_cache_coherency)
                all = 0;
        pthread_mutex_unlock(&c->lock);
        return all;
    }
    default:
        return 0;
    }
}

static int type1_open(struct vtio_host *h, struct vtio_process *proc, unsigned long type,
                      void **data)
{
    if (!h || !proc || !data)
        return vtio_fail(-EINVAL, "vfio type1: open needs a host, a process and a result");
    if (type != VFIO_TYPE1_IOMMU && type != VFIO_TYPE1v2_IOMMU)
        return vtio_fail(-EINVAL, "vfio type1: IOMMU type %lu is not type1", type);
    struct type1 *c = calloc(1, sizeof(*c));
    if (!c)
        return vtio_fail(-ENOMEM, "vfio type1: out of memory");
    c->proc = proc;
    c->v2 = type == VFIO_TYPE1v2_IOMMU;
    c->dma_avail = DMA_ENTRY_LIMIT;
    c->rng = 0x9e3779b9u;
    update_pgsize_bitmap(c);
    pthread_mutex_init(&c->lock, NULL);
    *data = c;
    return 0;
}

static void type1_release(void *data)
{
    struct type1 *c = data;
    if (!c)
        return;
    type1_dma_remove_all(c);
    for (unsigned i = 0; i < c->n_domains; i++)
        domain_release(&c->domains[i]);
    free(c->domains);
    free(c->iovas.r);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

const struct vfio_iommu_backend_ops vfio_iommu_type1_ops = {
    .name = "vfio-iommu-type1",
    .check_extension = type1_check_extension,
    .open = type1_open,
    .release = type1_release,
    .ioctl = type1_ioctl,
    .attach_group = type1_attach_group,
    .detach_group = type1_detach_group,
};
