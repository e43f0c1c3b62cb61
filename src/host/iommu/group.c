/*
 * IOMMU groups: which devices the IOMMU cannot tell apart, or cannot keep
 * apart (Linux's pci_device_group, reduced to the rules vtio's buses need).
 *
 * Two things merge functions into one group:
 *
 *  - Aliases.  A PCIe-to-PCI/PCI-X bridge takes ownership of the requests
 *    it forwards from its conventional side and puts its secondary bus
 *    number with device 0, function 0 on them (PCIe to PCI/PCI-X Bridge
 *    spec 1.0, 2.3); a conventional PCI-to-PCI bridge forwards with its own
 *    requester id.  Walking up from a function's bus, the aliasing bridge
 *    nearest the root decides the requester id the IOMMU sees, so every
 *    function below it, and the bridge itself, is one group.  Root ports
 *    and switch ports forward requester ids unchanged.
 *
 *  - Peer-to-peer inside a multi-function device.  Functions of one device
 *    may reach each other without their requests going up to the IOMMU
 *    unless each function has an ACS capability with Source Validation,
 *    Request Redirect, Completion Redirect and Upstream Forwarding enabled.
 *    If any function of the device lacks that, all its functions are one
 *    group.
 *
 * Everything else is a group of one function.  The sets are joined with a
 * union-find over the functions' indices (so the rules compose: a
 * multi-function device behind a bridge is one group with the bridge), and
 * groups are numbered in the order their first function was found.
 *
 * Config space is read only through the pci_enum accessors (ECAM loads),
 * including what enumeration does not keep: a bridge's secondary bus number
 * and the extended capability list.
 */
#include <vtio/pci.h>
#include <vtio/pci_enum.h>

#include <errno.h>
#include <stdlib.h>

#include "host/iommu/iommu_priv.h"
#include "util/error.h"

#define MAX_BRIDGE_DEPTH        256     /* buses; bounds a looping topology */

static bool is_bridge(const struct vtio_pci_function *f)
{
    return (f->header_type & 0x7f) == VTIO_PCI_HEADER_TYPE_BRIDGE;
}

/* The requester id a bridge gives the requests it forwards from below,
 * or -1 if it forwards them unchanged (a PCIe port). */
static int bridge_alias(const struct vtio_pci_function *br)
{
    if (!br->cap_exp)
        return br->rid;         /* conventional PCI-to-PCI bridge */
    uint16_t flags = vtio_pci_cfg_read16(br, br->cap_exp + VTIO_PCI_EXP_FLAGS);
    unsigned type = (flags & VTIO_PCI_EXP_FLAGS_TYPE) >> VTIO_PCI_EXP_FLAGS_TYPE_SHIFT;
    if (type == VTIO_PCI_EXP_TYPE_PCIE_TO_PCI)
        return VTIO_PCI_RID(vtio_pci_cfg_read8(br, VTIO_PCI_SECONDARY_BUS), 0, 0);
    return -1;
}

/* The bridge whose secondary bus is `bus`; NULL on a root bus. */
static const struct vtio_pci_function *parent_bridge(const struct vtio_pci_enum *e,
                                                     unsigned bus)
{
    unsigned n = vtio_pci_count(e);
    for (unsigned i = 0; i < n; i++) {
        const struct vtio_pci_function *f = vtio_pci_get(e, i);
        if (is_bridge(f) && f->bus != bus &&
            vtio_pci_cfg_read8(f, VTIO_PCI_SECONDARY_BUS) == bus)
            return f;
    }
    return NULL;
}

/* The requester id f's DMA carries, and the aliasing bridge nearest the
 * root above f (NULL if none). */
static uint16_t dma_alias(const struct vtio_pci_enum *e, const struct vtio_pci_function *f,
                          const struct vtio_pci_function **aliasing)
{
    uint16_t alias = f->rid;
    *aliasing = NULL;
    const struct vtio_pci_function *br = parent_bridge(e, f->bus);
    for (unsigned depth = 0; br && depth < MAX_BRIDGE_DEPTH; depth++) {
        int a = bridge_alias(br);
        if (a >= 0) {
            alias = (uint16_t)a;
            *aliasing = br;
        }
        br = parent_bridge(e, br->bus);
    }
    return alias;
}

/* Whether f has ACS with every peer-to-peer isolation control on. */
static bool acs_isolated(const struct vtio_pci_function *f)
{
    uint16_t pos = vtio_pci_find_ext_capability(f, VTIO_PCI_EXT_CAP_ID_ACS);
    return pos && (vtio_pci_cfg_read16(f, (uint16_t)(pos + VTIO_PCI_ACS_CTRL)) &
                   VTIO_PCI_ACS_ISOLATED) == VTIO_PCI_ACS_ISOLATED;
}

/* Whether every function of f's device (bus, device) in e is isolated. */
static bool device_isolated(const struct vtio_pci_enum *e, const struct vtio_pci_function *f)
{
    unsigned n = vtio_pci_count(e);
    for (unsigned i = 0; i < n; i++) {
        const struct vtio_pci_function *g = vtio_pci_get(e, i);
        if (g->bus == f->bus && g->dev == f->dev && !acs_isolated(g))
            return false;
    }
    return true;
}

static bool multifunction(const struct vtio_pci_enum *e, const struct vtio_pci_function *f)
{
    const struct vtio_pci_function *f0 =
        vtio_pci_find_rid(e, VTIO_PCI_RID(f->bus, f->dev, 0));
    return f0 && (f0->header_type & VTIO_PCI_HEADER_TYPE_MULTIFUNCTION);
}

/* ---- union-find over indices */

static unsigned uf_find(unsigned *parent, unsigned i)
{
    while (parent[i] != i) {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    return i;
}

/* Joins the sets of a and b; the smaller index stays the root, so a set's
 * root is its first function in scan order. */
static void uf_union(unsigned *parent, unsigned a, unsigned b)
{
    a = uf_find(parent, a);
    b = uf_find(parent, b);
    if (a < b)
        parent[b] = a;
    else if (b < a)
        parent[a] = b;
}

/* The index in fns of the function with requester id rid, or n. */
static unsigned index_of(const struct vtio_pci_function *const *fns, unsigned n, uint16_t rid)
{
    for (unsigned i = 0; i < n; i++)
        if (fns[i]->rid == rid)
            return i;
    return n;
}

int vtio_iommu_pci_groups(const struct vtio_pci_enum *e,
                          const struct vtio_pci_function *const *fns, unsigned n,
                          unsigned *group_of, uint16_t *alias_of)
{
    if (!e || (n && (!fns || !group_of || !alias_of)))
        return vtio_fail(-EINVAL, "iommu: NULL argument to group formation");
    unsigned *parent = calloc(n ? n : 1, sizeof(*parent));
    if (!parent)
        return vtio_fail(-ENOMEM, "iommu: out of memory forming groups");
    for (unsigned i = 0; i < n; i++)
        parent[i] = i;

    for (unsigned i = 0; i < n; i++) {
        const struct vtio_pci_function *aliasing;
        alias_of[i] = dma_alias(e, fns[i], &aliasing);
        if (aliasing) {
            unsigned b = index_of(fns, n, aliasing->rid);
            if (b < n)
                uf_union(parent, i, b);
        }
        for (unsigned j = 0; j < i; j++)
            if (alias_of[j] == alias_of[i] && alias_of[i] != fns[i]->rid)
                uf_union(parent, i, j);
        if (multifunction(e, fns[i]) && !device_isolated(e, fns[i]))
            for (unsigned j = 0; j < i; j++)
                if (fns[j]->bus == fns[i]->bus && fns[j]->dev == fns[i]->dev)
                    uf_union(parent, i, j);
    }

    /* Number the sets by their roots, which are their first members. */
    unsigned groups = 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned r = uf_find(parent, i);
        group_of[i] = r == i ? groups++ : group_of[r];
    }
    free(parent);
    return (int)groups;
}

/* ---- the core's groups */

static void free_groups(struct vtio_iommu_group **groups, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (groups[i]) {
            free(groups[i]->devs);
            free(groups[i]);
        }
    free(groups);
}

/* The requester id a group's DMA carries: the alias its members share if
 * a bridge aliases them, else its first device's own. */
static uint16_t group_alias(const struct vtio_iommu_group *g, struct vtio_device **devs,
                            const uint16_t *alias_of, const unsigned *group_of, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (group_of[i] == g->id && alias_of[i] != devs[i]->rid)
            return alias_of[i];
    return g->devs[0]->rid;
}

int vtio_iommu_groups_create(struct vtio_iommu *iommu, struct vtio_device **devs,
                             void **units, unsigned n)
{
    const struct vtio_pci_function **fns = calloc(n ? n : 1, sizeof(*fns));
    unsigned *group_of = calloc(n ? n : 1, sizeof(*group_of));
    uint16_t *alias_of = calloc(n ? n : 1, sizeof(*alias_of));
    struct vtio_iommu_group **groups = NULL;
    int ngroups = -ENOMEM;
    if (fns && group_of && alias_of) {
        for (unsigned i = 0; i < n; i++)
            fns[i] = devs[i]->pci;
        ngroups = vtio_iommu_pci_groups(iommu->host->pci, fns, n, group_of, alias_of);
    }
    if (ngroups >= 0 && !(groups = calloc(ngroups ? (unsigned)ngroups : 1, sizeof(*groups))))
        ngroups = -ENOMEM;
    for (int gi = 0; gi >= 0 && gi < ngroups; gi++) {
        struct vtio_iommu_group *g = calloc(1, sizeof(*g));
        groups[gi] = g;
        unsigned members = 0;
        for (unsigned i = 0; i < n; i++)
            members += group_of[i] == (unsigned)gi;
        if (!g || !(g->devs = calloc(members, sizeof(*g->devs)))) {
            free_groups(groups, (unsigned)ngroups);
            groups = NULL;
            ngroups = -ENOMEM;
            break;
        }
        g->iommu = iommu;
        g->id = (unsigned)gi;
        for (unsigned i = 0; i < n; i++)
            if (group_of[i] == g->id) {
                if (g->n_devs == 0)
                    g->unit = units[i];
                g->devs[g->n_devs++] = devs[i];
            }
        g->alias_rid = group_alias(g, devs, alias_of, group_of, n);
        atomic_init(&g->domain, NULL);
    }
    if (ngroups >= 0) {
        for (unsigned i = 0; i < n; i++) {
            devs[i]->group = groups[group_of[i]];
            devs[i]->dma_alias = alias_of[i];
        }
        iommu->groups = groups;
        iommu->n_groups = (unsigned)ngroups;
    }
    free(fns);
    free(group_of);
    free(alias_of);
    if (ngroups < 0)
        return ngroups == -ENOMEM ? vtio_fail(-ENOMEM, "iommu: out of memory forming groups")
                                  : ngroups;
    return 0;
}

void vtio_iommu_groups_destroy(struct vtio_iommu *iommu)
{
    for (unsigned i = 0; i < iommu->n_groups; i++)
        for (unsigned j = 0; j < iommu->groups[i]->n_devs; j++)
            iommu->groups[i]->devs[j]->group = NULL;
    free_groups(iommu->groups, iommu->n_groups);
    iommu->groups = NULL;
    iommu->n_groups = 0;
}
