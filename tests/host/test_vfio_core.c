/*
 * Tests of VFIO's core (src/host/vfio/vfio.c, group.c, container.c) through
 * the public calls: binding to vfio-pci, the files of /dev/vfio, the group
 * and container ioctls with Linux's errors, the viability rule and DMA
 * ownership, and what closing files and exiting does.
 *
 * The machine has two DMA engines (00:03.0 and 00:04.0, one group each)
 * and a three-function device without ACS at 00:07.0-2 (one group), so the
 * viability rule has a group with several devices to work on.
 */
#include <vtio/device.h>
#include <vtio/host.h>
#include <vtio/iommu.h>
#include <vtio/machine.h>
#include <vtio/page_alloc.h>
#include <vtio/pci.h>
#include <vtio/process.h>
#include <vtio/vfio.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

#define ENGINE0 VTIO_PCI_RID(0, 3, 0)
#define ENGINE1 VTIO_PCI_RID(0, 4, 0)
#define MF(fn)  VTIO_PCI_RID(0, 7, fn)

struct rig {
    struct vtio_machine *m;
    struct vtio_host *h;
    struct vtio_process *p;
};

static void quiet(void *opaque, int level, const char *msg)
{
    (void)opaque;
    (void)level;
    (void)msg;
}

static void rig_up_opts(struct rig *r, bool iommu)
{
    memset(r, 0, sizeof(*r));
    struct vtio_machine_config mc = { .ram_size = 512ull << 20, .ncpus = 2, .dma_engines = 2,
                                      .no_iommu = !iommu };
    CHECK_OK(vtio_machine_create(&mc, &r->m));
    for (unsigned fn = 0; fn < 3; fn++) {
        struct vtio_pci_dev_info info = {
            .name = "mf", .vendor_id = 0x8086, .device_id = 0x1234,
            .class_code = 0x020000, .multifunction = fn == 0,
        };
        struct vtio_pci_dev *dev;
        CHECK_OK(vtio_pci_dev_create(r->m->pci, 0, VTIO_PCI_DEVFN(7, fn), &info, &dev));
    }
    struct vtio_host_options o = { .iommu_mode = VTIO_HOST_IOMMU_STRICT, .log_fn = quiet };
    CHECK_OK(vtio_host_boot_opts(r->m, &o, &r->h));
    CHECK_OK(vtio_process_create(r->h, "test", &r->p));
}

static void rig_up(struct rig *r)
{
    rig_up_opts(r, true);
}

static void rig_down(struct rig *r)
{
    vtio_process_destroy(r->p);
    vtio_host_shutdown(r->h);
    vtio_machine_destroy(r->m);
}

static struct vtio_device *dev_of(struct rig *r, uint16_t rid)
{
    struct vtio_device *d = vtio_host_device_by_rid(r->h, rid);
    CHECK(d != NULL);
    return d;
}

static unsigned group_id(struct rig *r, uint16_t rid)
{
    return vtio_iommu_group_id(vtio_iommu_group_get(dev_of(r, rid)));
}

static int open_group(struct rig *r, uint16_t rid)
{
    char path[32];
    snprintf(path, sizeof(path), "/dev/vfio/%u", group_id(r, rid));
    return vtio_vfio_open(r->p, path);
}

static uint32_t group_flags(struct rig *r, int group)
{
    struct vfio_group_status st = { .argsz = sizeof(st) };
    CHECK_OK(vtio_vfio_ioctl(r->p, group, VFIO_GROUP_GET_STATUS, &st));
    return st.flags;
}

/* A container with the engine's group in it and type1 set: what every
 * userspace driver does first.  Stores the fds. */
static void set_up_engine(struct rig *r, uint16_t rid, int *container, int *group)
{
    CHECK_OK(vtio_vfio_bind(dev_of(r, rid)));
    *container = vtio_vfio_open(r->p, "/dev/vfio/vfio");
    CHECK(*container >= 0);
    *group = open_group(r, rid);
    CHECK(*group >= 0);
    CHECK_OK(vtio_vfio_ioctl(r->p, *group, VFIO_GROUP_SET_CONTAINER, container));
    CHECK_OK(vtio_vfio_ioctl(r->p, *container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
}

static enum vtio_iommu_domain_type domain_type_of(struct rig *r, uint16_t rid)
{
    struct vtio_iommu_group *g = vtio_iommu_group_get(dev_of(r, rid));
    return vtio_iommu_domain_type(vtio_iommu_group_domain(g));
}

/* ------------------------------------------------------------------------ */

static void t_bind(void)
{
    struct rig r;
    rig_up(&r);
    struct vtio_device *d = dev_of(&r, ENGINE0);
    CHECK_OK(vtio_vfio_bind(d));
    CHECK(strcmp(vtio_device_driver(d), "vfio-pci") == 0);
    CHECK_ERR(vtio_vfio_bind(d), -EBUSY);
    /* a DMA-API driver cannot take it meanwhile */
    CHECK_ERR(vtio_device_bind(d, "dmae"), -EBUSY);
    CHECK_OK(vtio_vfio_unbind(d));
    CHECK(vtio_device_driver(d) == NULL);
    CHECK_ERR(vtio_vfio_unbind(d), -EINVAL);
    /* bound to another driver: refused */
    CHECK_OK(vtio_device_bind(d, "dmae"));
    CHECK_ERR(vtio_vfio_bind(d), -EBUSY);
    vtio_device_unbind(d);
    rig_down(&r);
}

static void t_no_iommu(void)
{
    struct rig r;
    rig_up_opts(&r, false);
    CHECK(r.h->vfio == NULL);
    CHECK_ERR(vtio_vfio_bind(dev_of(&r, ENGINE0)), -ENODEV);
    CHECK_ERR(vtio_vfio_open(r.p, "/dev/vfio/vfio"), -ENOENT);
    rig_down(&r);
}

static void t_open_paths(void)
{
    struct rig r;
    rig_up(&r);
    CHECK_ERR(vtio_vfio_open(r.p, "/dev/vfio/0"), -ENOENT);   /* nothing bound yet */
    CHECK_OK(vtio_vfio_bind(dev_of(&r, ENGINE0)));
    CHECK_ERR(vtio_vfio_open(r.p, "/dev/vfio/99"), -ENOENT);
    CHECK_ERR(vtio_vfio_open(r.p, "/dev/vfio/"), -ENOENT);
    CHECK_ERR(vtio_vfio_open(r.p, "/dev/vfio/0x0"), -ENOENT);
    CHECK_ERR(vtio_vfio_open(r.p, "/dev/null"), -ENOENT);
    CHECK_ERR(vtio_vfio_open(r.p, NULL), -EINVAL);
    int g = open_group(&r, ENGINE0);
    CHECK(g >= 0);
    CHECK_ERR(open_group(&r, ENGINE0), -EBUSY);               /* one open at a time */
    int c1 = vtio_vfio_open(r.p, "/dev/vfio/vfio");
    int c2 = vtio_vfio_open(r.p, "/dev/vfio/vfio");           /* containers: any number */
    CHECK(c1 >= 0 && c2 >= 0 && c1 != c2);
    CHECK_OK(vtio_vfio_close(r.p, g));
    CHECK_ERR(vtio_vfio_close(r.p, g), -EBADF);
    g = open_group(&r, ENGINE0);                              /* open again after close */
    CHECK(g >= 0);
    CHECK_ERR(vtio_vfio_ioctl(r.p, g, VFIO_GET_API_VERSION, 0), -ENOTTY);
    CHECK_ERR(vtio_vfio_ioctl(r.p, 1000, VFIO_GET_API_VERSION, 0), -EBADF);
    rig_down(&r);
}

static void t_container_ioctls(void)
{
    struct rig r;
    rig_up(&r);
    CHECK_OK(vtio_vfio_bind(dev_of(&r, ENGINE0)));
    int c = vtio_vfio_open(r.p, "/dev/vfio/vfio");
    CHECK_EQ(vtio_vfio_ioctl(r.p, c, VFIO_GET_API_VERSION, 0), VFIO_API_VERSION);
    CHECK_EQ(vtio_vfio_ioctl(r.p, c, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU), 1);
    CHECK_EQ(vtio_vfio_ioctl(r.p, c, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU), 1);
    CHECK_EQ(vtio_vfio_ioctl(r.p, c, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL), 1);
    CHECK_EQ(vtio_vfio_ioctl(r.p, c, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_IOMMU), 0);
    CHECK_EQ(vtio_vfio_ioctl(r.p, c, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU), 0);
    CHECK_EQ(vtio_vfio_ioctl(r.p, c, VFIO_CHECK_EXTENSION, 12345), 0);
    /* SET_IOMMU needs a group; backend ioctls need SET_IOMMU */
    CHECK_ERR(vtio_vfio_ioctl(r.p, c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), -EINVAL);
    struct vfio_iommu_type1_dma_map map = { .argsz = sizeof(map) };
    CHECK_ERR(vtio_vfio_ioctl(r.p, c, VFIO_IOMMU_MAP_DMA, &map), -EINVAL);
    int g = open_group(&r, ENGINE0);
    CHECK_OK(vtio_vfio_ioctl(r.p, g, VFIO_GROUP_SET_CONTAINER, &c));
    CHECK_ERR(vtio_vfio_ioctl(r.p, c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU), -ENODEV);
    CHECK_OK(vtio_vfio_ioctl(r.p, c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
    CHECK_ERR(vtio_vfio_ioctl(r.p, c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), -EBUSY);
    /* now the backend answers */
    struct vfio_iommu_type1_info info = { .argsz = sizeof(info) };
    CHECK_OK(vtio_vfio_ioctl(r.p, c, VFIO_IOMMU_GET_INFO, &info));
    CHECK(info.flags & VFIO_IOMMU_INFO_PGSIZES);
    CHECK(info.iova_pgsizes & 4096);
    rig_down(&r);
}

static void t_group_status_and_container(void)
{
    struct rig r;
    rig_up(&r);
    CHECK_OK(vtio_vfio_bind(dev_of(&r, ENGINE0)));
    int g = open_group(&r, ENGINE0);
    struct vfio_group_status st = { .argsz = 4 };
    CHECK_ERR(vtio_vfio_ioctl(r.p, g, VFIO_GROUP_GET_STATUS, &st), -EINVAL);
    CHECK_EQ(group_flags(&r, g), VFIO_GROUP_FLAGS_VIABLE);
    /* a device fd needs a container with an IOMMU */
    CHECK_ERR(vtio_vfio_ioctl(r.p, g, VFIO_GROUP_GET_DEVICE_FD, "0000:00:03.0"), -EINVAL);
    int bad = 999;
    CHECK_ERR(vtio_vfio_ioctl(r.p, g, VFIO_GROUP_SET_CONTAINER, &bad), -EBADF);
    CHECK_ERR(vtio_vfio_ioctl(r.p, g, VFIO_GROUP_SET_CONTAINER, &g), -EINVAL);  /* not a container */
    CHECK_ERR(vtio_vfio_ioctl(r.p, g, VFIO_GROUP_UNSET_CONTAINER, 0), -EINVAL);
    int c = vtio_vfio_open(r.p, "/dev/vfio/vfio");
    enum vtio_iommu_domain_type before = domain_type_of(&r, ENGINE0);
    CHECK_OK(vtio_vfio_ioctl(r.p, g, VFIO_GROUP_SET_CONTAINER, &c));
    CHECK_EQ(group_flags(&r, g), VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET);
    CHECK_ERR(vtio_vfio_ioctl(r.p, g, VFIO_GROUP_SET_CONTAINER, &c), -EINVAL);
    /* claimed, no backend yet: the group's DMA is blocked */
    CHECK_EQ(domain_type_of(&r, ENGINE0), VTIO_IOMMU_DOMAIN_BLOCKED);
    CHECK_ERR(vtio_vfio_ioctl(r.p, g, VFIO_GROUP_GET_DEVICE_FD, "0000:00:03.0"), -EINVAL);
    CHECK_OK(vtio_vfio_ioctl(r.p, c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
    CHECK_EQ(domain_type_of(&r, ENGINE0), VTIO_IOMMU_DOMAIN_UNMANAGED);
    CHECK_ERR(vtio_vfio_ioctl(r.p, g, VFIO_GROUP_GET_DEVICE_FD, "0000:00:04.0"), -ENODEV);
    CHECK_ERR(vtio_vfio_ioctl(r.p, g, VFIO_GROUP_GET_DEVICE_FD, NULL), -EFAULT);
    int d = (int)vtio_vfio_ioctl(r.p, g, VFIO_GROUP_GET_DEVICE_FD, "0000:00:03.0");
    CHECK(d >= 0);
    struct vfio_device_info di = { .argsz = sizeof(di) };
    CHECK_OK(vtio_vfio_ioctl(r.p, d, VFIO_DEVICE_GET_INFO, &di));
    CHECK(di.flags & VFIO_DEVICE_FLAGS_PCI);
    /* open device: no unset, no unbind */
    CHECK_ERR(vtio_vfio_ioctl(r.p, g, VFIO_GROUP_UNSET_CONTAINER, 0), -EBUSY);
    CHECK_ERR(vtio_vfio_unbind(dev_of(&r, ENGINE0)), -EBUSY);
    CHECK_OK(vtio_vfio_close(r.p, d));
    CHECK_OK(vtio_vfio_ioctl(r.p, g, VFIO_GROUP_UNSET_CONTAINER, 0));
    CHECK_EQ(group_flags(&r, g), VFIO_GROUP_FLAGS_VIABLE);
    /* released: back on the default domain, and the container lost its
     * backend with its last group */
    CHECK_EQ(domain_type_of(&r, ENGINE0), before);
    struct vfio_iommu_type1_info info = { .argsz = sizeof(info) };
    CHECK_ERR(vtio_vfio_ioctl(r.p, c, VFIO_IOMMU_GET_INFO, &info), -EINVAL);
    rig_down(&r);
}

/* The viability rule on the three-function group. */
static void t_viability(void)
{
    struct rig r;
    rig_up(&r);
    CHECK_EQ(group_id(&r, MF(0)), group_id(&r, MF(2)));
    struct vtio_device *f0 = dev_of(&r, MF(0)), *f1 = dev_of(&r, MF(1));
    CHECK_OK(vtio_vfio_bind(f0));
    CHECK_OK(vtio_device_bind(f1, "e1000e"));      /* a host driver in the group */
    int g = open_group(&r, MF(0));
    int c = vtio_vfio_open(r.p, "/dev/vfio/vfio");
    CHECK_EQ(group_flags(&r, g), 0);                /* not viable */
    CHECK_ERR(vtio_vfio_ioctl(r.p, g, VFIO_GROUP_SET_CONTAINER, &c), -EPERM);
    vtio_device_unbind(f1);                          /* f1 now has no driver: fine */
    CHECK_EQ(group_flags(&r, g), VFIO_GROUP_FLAGS_VIABLE);
    CHECK_OK(vtio_vfio_ioctl(r.p, g, VFIO_GROUP_SET_CONTAINER, &c));
    /* while the group is owned, no host driver may bind in it */
    CHECK_ERR(vtio_device_bind(f1, "e1000e"), -EBUSY);
    CHECK_OK(vtio_vfio_bind(f1));                   /* vfio-pci may */
    CHECK_OK(vtio_vfio_ioctl(r.p, c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
    int d1 = (int)vtio_vfio_ioctl(r.p, g, VFIO_GROUP_GET_DEVICE_FD, "0000:00:07.1");
    CHECK(d1 >= 0);
    CHECK_OK(vtio_vfio_close(r.p, d1));
    CHECK_OK(vtio_vfio_close(r.p, g));               /* last file: group leaves */
    CHECK_OK(vtio_vfio_unbind(f1));
    CHECK_OK(vtio_device_bind(f1, "e1000e"));       /* and host drivers are welcome */
    vtio_device_unbind(f1);
    rig_down(&r);
}

/* Two groups in one container share its mappings; a group in a second
 * container is apart. */
static void t_two_groups(void)
{
    struct rig r;
    rig_up(&r);
    int c, g0;
    set_up_engine(&r, ENGINE0, &c, &g0);
    CHECK_OK(vtio_vfio_bind(dev_of(&r, ENGINE1)));
    int g1 = open_group(&r, ENGINE1);
    CHECK_OK(vtio_vfio_ioctl(r.p, g1, VFIO_GROUP_SET_CONTAINER, &c));  /* joins the backend */
    CHECK_EQ(domain_type_of(&r, ENGINE1), VTIO_IOMMU_DOMAIN_UNMANAGED);
    struct vtio_iommu_group *ig0 = vtio_iommu_group_get(dev_of(&r, ENGINE0));
    struct vtio_iommu_group *ig1 = vtio_iommu_group_get(dev_of(&r, ENGINE1));
    CHECK(vtio_iommu_group_domain(ig0) == vtio_iommu_group_domain(ig1));
    /* the first group leaves: the backend stays for the second */
    CHECK_OK(vtio_vfio_close(r.p, g0));
    struct vfio_iommu_type1_info info = { .argsz = sizeof(info) };
    CHECK_OK(vtio_vfio_ioctl(r.p, c, VFIO_IOMMU_GET_INFO, &info));
    CHECK(vtio_iommu_group_domain(ig0) == vtio_iommu_group_default_domain(ig0));
    rig_down(&r);
}

/* Process exit closes everything: groups released, device disabled,
 * nothing left bound to the process. */
static void t_exit_releases(void)
{
    struct rig r;
    rig_up(&r);
    struct vtio_page_alloc_stats before;
    vtio_page_alloc_get_stats(r.h->pages, &before);
    int c, g;
    set_up_engine(&r, ENGINE0, &c, &g);
    int d = (int)vtio_vfio_ioctl(r.p, g, VFIO_GROUP_GET_DEVICE_FD, "0000:00:03.0");
    CHECK(d >= 0);
    struct vtio_process_stats ps;
    vtio_process_get_stats(r.p, &ps);
    CHECK_EQ(ps.open_files, 3);
    vtio_process_destroy(r.p);
    r.p = NULL;
    struct vtio_iommu_group *ig = vtio_iommu_group_get(dev_of(&r, ENGINE0));
    CHECK(vtio_iommu_group_domain(ig) == vtio_iommu_group_default_domain(ig));
    CHECK(!vtio_iommu_group_dma_owner_claimed(ig));
    struct vtio_page_alloc_stats after;
    vtio_page_alloc_get_stats(r.h->pages, &after);
    CHECK_EQ(after.free_bytes, before.free_bytes);
    /* the device is still bound to vfio-pci and can be opened again */
    CHECK_OK(vtio_process_create(r.h, "again", &r.p));
    int c2 = vtio_vfio_open(r.p, "/dev/vfio/vfio");
    int g2 = open_group(&r, ENGINE0);
    CHECK_OK(vtio_vfio_ioctl(r.p, g2, VFIO_GROUP_SET_CONTAINER, &c2));
    rig_down(&r);
}

static const struct vtio_test tests[] = {
    { "bind", "vtio_vfio_bind takes a function for vfio-pci, refuses a bound one, and "
      "DMA-API drivers cannot bind it meanwhile", t_bind },
    { "no_iommu", "without an IOMMU there is no VFIO: bind -ENODEV, no /dev/vfio", t_no_iommu },
    { "open_paths", "/dev/vfio/vfio and /dev/vfio/<group> open; unknown paths -ENOENT, a "
      "group once at a time (-EBUSY), bad fds -EBADF, wrong ioctls -ENOTTY", t_open_paths },
    { "container_ioctls", "API version, extensions, SET_IOMMU rules (a group first, "
      "-ENODEV, -EBUSY) and backend ioctls only after it", t_container_ioctls },
    { "group_container", "GET_STATUS flags, SET/UNSET_CONTAINER rules, blocked DMA until "
      "SET_IOMMU, device fds only with an IOMMU, open devices pin the set-up",
      t_group_status_and_container },
    { "viability", "a group with a host driver bound is not viable (-EPERM); an owned "
      "group refuses host drivers (-EBUSY) until released", t_viability },
    { "two_groups", "groups of one container share its domain; the backend outlives a "
      "group that leaves", t_two_groups },
    { "exit_releases", "process exit closes every file: ownership released, default "
      "domain back, no memory kept", t_exit_releases },
};

VTIO_TEST_MAIN(tests)
