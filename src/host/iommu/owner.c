/*
 * DMA ownership of IOMMU groups (Linux's iommu_group_claim_dma_owner and
 * iommu_device_use_default_domain).
 *
 * A group is used one way at a time: either its devices' drivers map
 * through the DMA API (each bound such driver counts in owner_cnt and the
 * group stays on its default domain), or one user (VFIO) owns it (owner set)
 * and decides what it translates through.  The two exclude each other under
 * the core lock, which is what makes VFIO's viability rule hold: a program
 * never shares a group with a host driver, so it cannot DMA into that
 * driver's buffers, nor can the host driver DMA through the program's
 * mappings.
 *
 * While owned and not attached to the owner's domain, the group sits in a
 * blocking domain (no DMA at all), so nothing the default domain mapped for
 * a former host driver stays reachable.  The blocking domain is made at the
 * first claim and kept (marked is_default: the core's) until shutdown.
 *
 * Reserved regions are here too: what the owner of a group must not map.
 */
#include <errno.h>

#include "host/iommu/iommu_priv.h"
#include "util/error.h"

int vtio_iommu_device_use_default_domain(struct vtio_device *dev)
{
    struct vtio_iommu_group *g = dev ? dev->group : NULL;
    if (!g)
        return 0;
    pthread_mutex_lock(&g->iommu->lock);
    int rc = 0;
    if (g->owner)
        rc = vtio_fail(-EBUSY, "iommu: group %u of %s is owned by a user (VFIO)", g->id,
                       dev->name);
    else
        g->owner_cnt++;
    pthread_mutex_unlock(&g->iommu->lock);
    return rc;
}

void vtio_iommu_device_unuse_default_domain(struct vtio_device *dev)
{
    struct vtio_iommu_group *g = dev ? dev->group : NULL;
    if (!g)
        return;
    pthread_mutex_lock(&g->iommu->lock);
    if (g->owner_cnt)
        g->owner_cnt--;
    pthread_mutex_unlock(&g->iommu->lock);
}

static int claim_locked(struct vtio_iommu_group *g, void *owner)
{
    if (g->owner_cnt)
        return vtio_fail(-EPERM, "iommu: group %u: %u device(s) have a DMA-API driver bound",
                         g->id, g->owner_cnt);
    if (g->owner)
        return vtio_fail(-EPERM, "iommu: group %u is already owned", g->id);
    if (atomic_load(&g->domain) != g->default_domain)
        return vtio_fail(-EBUSY, "iommu: group %u is attached to a domain of its own", g->id);
    if (!g->blocking_domain) {
        int rc = vtio_iommu_domain_make_locked(g, VTIO_IOMMU_DOMAIN_BLOCKED,
                                               &g->blocking_domain);
        if (rc < 0)
            return rc;
        g->blocking_domain->is_default = true;
    }
    int rc = vtio_iommu_group_switch_locked(g, g->blocking_domain);
    if (rc == 0)
        g->owner = owner;
    return rc;
}

int vtio_iommu_group_claim_dma_owner(struct vtio_iommu_group *g, void *owner)
{
    if (!g || !owner)
        return vtio_fail(-EINVAL, "iommu: claim needs a group and an owner");
    pthread_mutex_lock(&g->iommu->lock);
    int rc = claim_locked(g, owner);
    pthread_mutex_unlock(&g->iommu->lock);
    return rc;
}

int vtio_iommu_group_release_dma_owner(struct vtio_iommu_group *g, void *owner)
{
    if (!g || !owner)
        return vtio_fail(-EINVAL, "iommu: release needs a group and an owner");
    pthread_mutex_lock(&g->iommu->lock);
    int rc = 0;
    if (g->owner != owner)
        rc = vtio_fail(-EINVAL, "iommu: group %u is not held by that owner", g->id);
    else if (atomic_load(&g->domain) != g->blocking_domain)
        rc = vtio_fail(-EINVAL, "iommu: group %u is still attached to its owner's domain",
                       g->id);
    if (rc == 0)
        rc = vtio_iommu_group_switch_locked(g, g->default_domain);
    if (rc == 0)
        g->owner = NULL;
    pthread_mutex_unlock(&g->iommu->lock);
    return rc;
}

bool vtio_iommu_group_dma_owner_claimed(struct vtio_iommu_group *g)
{
    if (!g)
        return false;
    pthread_mutex_lock(&g->iommu->lock);
    bool owned = g->owner != NULL;
    pthread_mutex_unlock(&g->iommu->lock);
    return owned;
}

/* The union of the devices' regions would be the group's; every device of
 * a group sits behind one unit, whose regions are the same for all. */
unsigned vtio_iommu_group_resv_regions(struct vtio_iommu_group *g,
                                       struct vtio_iommu_resv_region *out, unsigned max)
{
    if (!g || !g->n_devs || !g->iommu->ops->get_resv_regions)
        return 0;
    return g->iommu->ops->get_resv_regions(g->iommu->drv, g->devs[0], out, max);
}
