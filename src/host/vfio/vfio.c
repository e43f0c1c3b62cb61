/*
 * VFIO's core: the registry of groups, binding to vfio-pci, the device
 * files, the calls of include/vtio/vfio.h, and the capability-chain helpers
 * every GET_INFO shares (Linux's drivers/vfio/vfio_main.c and group.c).
 *
 * A vfio_group stands for one IOMMU group some of whose devices are bound
 * to vfio-pci; it is what /dev/vfio/<id> opens.  It is counted (refs): one
 * per bound device, one for its open file, one per open device file.  At
 * zero it leaves the registry and is freed.  All of that, and each device's
 * open count, is under the registry lock, which is taken first whenever a
 * container's lock is taken too (group.c, container.c).
 *
 * Safety rests on three rules enforced here and in group.c:
 *  - a device file exists only for a group whose container has an IOMMU
 *    backend, so the device's DMA already goes through the container's
 *    domain (or is blocked) before the program can touch the device;
 *  - the first open enables the device from a reset state and the last
 *    close disables it (no bus mastering, no interrupts), so nothing a
 *    program set up survives it;
 *  - unbinding is refused while a device file is open.
 */
#include <vtio/device.h>
#include <vtio/host.h>
#include <vtio/iommu.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "host/device_priv.h"
#include "host/proc/proc_priv.h"
#include "host/vfio/vfio_core.h"
#include "util/error.h"

#define VFIO_PCI_DRIVER "vfio-pci"

/* ------------------------------------------------------------------------
 * Registry and binding
 * ------------------------------------------------------------------------ */

int vtio_vfio_init(struct vtio_host *h)
{
    struct vtio_vfio *v = calloc(1, sizeof(*v));
    unsigned n = vtio_iommu_group_count(h);
    struct vfio_group **groups = calloc(n ? n : 1, sizeof(*groups));
    if (!v || !groups) {
        free(v);
        free(groups);
        return vtio_fail(-ENOMEM, "vfio: out of memory");
    }
    v->host = h;
    v->groups = groups;
    v->n_groups = n;
    pthread_mutex_init(&v->lock, NULL);
    h->vfio = v;
    return 0;
}

/* Processes are gone by now (host.h: shutdown comes last), so no file
 * holds a group; devices still bound are simply forgotten with them. */
void vtio_vfio_exit(struct vtio_host *h)
{
    struct vtio_vfio *v = h ? h->vfio : NULL;
    if (!v)
        return;
    for (unsigned i = 0; i < v->n_groups; i++) {
        struct vfio_group *g = v->groups[i];
        if (!g)
            continue;
        for (unsigned j = 0; j < g->n_devs; j++) {
            vfio_pci_device_destroy(g->devs[j]->pci);
            vtio_device_unbind(g->devs[j]->dev);
            free(g->devs[j]);
        }
        free(g->devs);
        free(g);
    }
    pthread_mutex_destroy(&v->lock);
    free(v->groups);
    free(v);
    h->vfio = NULL;
}

static struct vtio_vfio *vfio_of(struct vtio_device *dev)
{
    struct vtio_host *h = dev ? vtio_device_host(dev) : NULL;
    return h ? h->vfio : NULL;
}

/* The registry's group for ig, made on first use (registry lock held). */
static struct vfio_group *group_get_locked(struct vtio_vfio *v, struct vtio_iommu_group *ig)
{
    unsigned id = vtio_iommu_group_id(ig);
    if (id >= v->n_groups)
        return NULL;
    if (!v->groups[id]) {
        struct vfio_group *g = calloc(1, sizeof(*g));
        unsigned max = vtio_iommu_group_devices(ig, NULL, 0);
        struct vfio_device **devs = calloc(max ? max : 1, sizeof(*devs));
        if (!g || !devs) {
            free(g);
            free(devs);
            return NULL;
        }
        g->vfio = v;
        g->iommu_group = ig;
        g->id = id;
        g->devs = devs;
        v->groups[id] = g;
    }
    return v->groups[id];
}

/* Frees g if nothing refers to it (registry lock held). */
static void group_free_unused_locked(struct vfio_group *g)
{
    if (g->refs)
        return;
    g->vfio->groups[g->id] = NULL;
    free(g->devs);
    free(g);
}

void vfio_group_put_locked(struct vfio_group *g)
{
    g->refs--;
    group_free_unused_locked(g);
}

static int bind_locked(struct vtio_vfio *v, struct vtio_device *dev)
{
    struct vtio_iommu_group *ig = vtio_iommu_group_get(dev);
    if (!ig)
        return vtio_fail(-ENODEV, "vfio: no IOMMU translates %s (no IOMMU group)",
                         vtio_device_name(dev));
    struct vfio_group *g = group_get_locked(v, ig);
    struct vfio_device *vd = calloc(1, sizeof(*vd));
    int rc = g && vd ? 0 : vtio_fail(-ENOMEM, "vfio: out of memory");
    if (rc == 0)
        rc = vtio_device_bind_managed(dev, VFIO_PCI_DRIVER);
    if (rc == 0) {
        rc = vfio_pci_device_create(dev, &vd->pci);
        if (rc < 0)
            vtio_device_unbind(dev);
    }
    if (rc < 0) {
        free(vd);
        if (g)
            group_free_unused_locked(g);     /* made for this bind */
        return rc;
    }
    vd->group = g;
    vd->dev = dev;
    g->devs[g->n_devs++] = vd;
    g->refs++;
    return 0;
}

int vtio_vfio_bind(struct vtio_device *dev)
{
    struct vtio_vfio *v = vfio_of(dev);
    if (!v)
        return vtio_fail(dev ? -ENODEV : -EINVAL, "vfio: %s",
                         dev ? "the host has no IOMMU, so no VFIO" : "NULL device");
    pthread_mutex_lock(&v->lock);
    int rc = bind_locked(v, dev);
    pthread_mutex_unlock(&v->lock);
    return rc;
}

/* The bound device behind dev, and its index in its group (lock held). */
static struct vfio_device *find_bound_locked(struct vtio_vfio *v, struct vtio_device *dev,
                                             unsigned *index)
{
    struct vtio_iommu_group *ig = vtio_iommu_group_get(dev);
    struct vfio_group *g = ig ? v->groups[vtio_iommu_group_id(ig)] : NULL;
    for (unsigned i = 0; g && i < g->n_devs; i++)
        if (g->devs[i]->dev == dev) {
            *index = i;
            return g->devs[i];
        }
    return NULL;
}

int vtio_vfio_unbind(struct vtio_device *dev)
{
    struct vtio_vfio *v = vfio_of(dev);
    if (!v)
        return vtio_fail(-EINVAL, "vfio: no VFIO on this device's host");
    pthread_mutex_lock(&v->lock);
    unsigned i = 0;
    struct vfio_device *vd = find_bound_locked(v, dev, &i);
    int rc = 0;
    if (!vd)
        rc = vtio_fail(-EINVAL, "vfio: %s is not bound to vfio-pci", vtio_device_name(dev));
    else if (vd->open_count)
        rc = vtio_fail(-EBUSY, "vfio: %s is open in a process", vtio_device_name(dev));
    if (rc == 0) {
        struct vfio_group *g = vd->group;
        g->devs[i] = g->devs[--g->n_devs];
        vfio_pci_device_destroy(vd->pci);
        vtio_device_unbind(dev);
        free(vd);
        vfio_group_put_locked(g);
    }
    pthread_mutex_unlock(&v->lock);
    return rc;
}

/* ------------------------------------------------------------------------
 * Device files
 * ------------------------------------------------------------------------ */

static long device_ioctl(void *priv, struct vtio_process *p, unsigned long request,
                         unsigned long arg)
{
    (void)p;
    return vfio_pci_ioctl(((struct vfio_device *)priv)->pci, request, arg);
}

static ssize_t device_read(void *priv, void *buf, size_t count, uint64_t off)
{
    return vfio_pci_rw(((struct vfio_device *)priv)->pci, buf, count, off, false);
}

static ssize_t device_write(void *priv, const void *buf, size_t count, uint64_t off)
{
    return vfio_pci_rw(((struct vfio_device *)priv)->pci, (void *)buf, count, off, true);
}

static int device_mmap(void *priv, uint64_t off, uint64_t len, unsigned prot,
                       struct vtio_mmio *out)
{
    return vfio_pci_mmap(((struct vfio_device *)priv)->pci, off, len, prot, out);
}

static void device_release(void *priv)
{
    struct vfio_device *vd = priv;
    struct vfio_group *g = vd->group;
    struct vtio_vfio *v = g->vfio;
    pthread_mutex_lock(&v->lock);
    if (--vd->open_count == 0)
        vfio_pci_disable(vd->pci);
    g->device_files--;
    vfio_group_file_closed_locked(g);
    vfio_group_put_locked(g);
    pthread_mutex_unlock(&v->lock);
}

static const struct vtio_file_ops device_fops = {
    .ioctl = device_ioctl,
    .read = device_read,
    .write = device_write,
    .mmap = device_mmap,
    .release = device_release,
};

int vfio_device_open_locked(struct vfio_group *g, struct vtio_process *p, const char *name)
{
    struct vfio_device *vd = NULL;
    for (unsigned i = 0; i < g->n_devs && !vd; i++)
        if (strcmp(vtio_device_name(g->devs[i]->dev), name) == 0)
            vd = g->devs[i];
    if (!vd)
        return vtio_fail(-ENODEV, "vfio: group %u has no device \"%s\" bound to vfio-pci",
                         g->id, name);
    if (vd->open_count == 0) {
        int rc = vfio_pci_enable(vd->pci);
        if (rc < 0)
            return rc;
    }
    int fd = vtio_process_fd_install(p, &device_fops, vd);
    if (fd < 0) {
        if (vd->open_count == 0)
            vfio_pci_disable(vd->pci);
        return fd;
    }
    vd->open_count++;
    g->device_files++;
    g->refs++;
    return fd;
}

/* ------------------------------------------------------------------------
 * The calls
 * ------------------------------------------------------------------------ */

int vtio_vfio_open(struct vtio_process *p, const char *path)
{
    struct vtio_host *h = p ? vtio_process_host(p) : NULL;
    if (!h || !path)
        return vtio_fail(-EINVAL, "vfio: open needs a process and a path");
    if (!h->vfio)
        return vtio_fail(-ENOENT, "vfio: %s: the host has no IOMMU, so no VFIO", path);
    static const char dir[] = "/dev/vfio/";
    if (strncmp(path, dir, sizeof(dir) - 1) != 0)
        return vtio_fail(-ENOENT, "vfio: %s: not a VFIO file", path);
    const char *leaf = path + sizeof(dir) - 1;
    if (strcmp(leaf, "vfio") == 0)
        return vfio_container_open(h->vfio, p);
    char *end;
    unsigned long id = strtoul(leaf, &end, 10);
    if (!*leaf || *end || leaf[0] == '-' || leaf[0] == '+')
        return vtio_fail(-ENOENT, "vfio: %s: no such file", path);
    return vfio_group_open(h->vfio, p, id);
}

int vtio_vfio_close(struct vtio_process *p, int fd)
{
    return p ? vtio_process_fd_close(p, fd) : vtio_fail(-EINVAL, "vfio: NULL process");
}

long vtio_vfio_ioctl_(struct vtio_process *p, int fd, unsigned long request, unsigned long arg)
{
    return p ? vtio_process_ioctl(p, fd, request, arg)
             : vtio_fail(-EINVAL, "vfio: NULL process");
}

ssize_t vtio_vfio_pread(struct vtio_process *p, int fd, void *buf, size_t count,
                        uint64_t offset)
{
    return p ? vtio_process_pread(p, fd, buf, count, offset)
             : vtio_fail(-EINVAL, "vfio: NULL process");
}

ssize_t vtio_vfio_pwrite(struct vtio_process *p, int fd, const void *buf, size_t count,
                         uint64_t offset)
{
    return p ? vtio_process_pwrite(p, fd, buf, count, offset)
             : vtio_fail(-EINVAL, "vfio: NULL process");
}

int vtio_vfio_mmap(struct vtio_process *p, int fd, uint64_t offset, uint64_t length, int prot,
                   struct vtio_mmio *out)
{
    if (!p || !out)
        return vtio_fail(-EINVAL, "vfio: mmap needs a process and an output");
    if (prot < 0 || (unsigned)prot & ~(VTIO_PROT_READ | VTIO_PROT_WRITE))
        return vtio_fail(-EINVAL, "vfio: mmap: bad protection %#x", (unsigned)prot);
    return vtio_process_file_mmap(p, fd, offset, length, (unsigned)prot, out);
}

int vtio_vfio_munmap(struct vtio_process *p, const struct vtio_mmio *m)
{
    return p && m ? vtio_process_file_munmap(p, m)
                  : vtio_fail(-EINVAL, "vfio: munmap needs a process and a mapping");
}

/* ------------------------------------------------------------------------
 * Capability chains
 * ------------------------------------------------------------------------ */

struct vfio_info_cap_header *vfio_info_cap_add(struct vfio_info_cap *caps, size_t size,
                                               uint16_t id, uint16_t version)
{
    /* Each capability starts 8-byte aligned, so its u64 fields are. */
    size_t at = (caps->size + 7) & ~(size_t)7;
    uint8_t *buf = realloc(caps->buf, at + size);
    if (!buf) {
        vtio_fail(-ENOMEM, "vfio: out of memory");
        return NULL;
    }
    memset(buf + caps->size, 0, at + size - caps->size);
    /* link: the previous capability's next is this one's offset */
    if (caps->size) {
        size_t prev = 0;
        for (;;) {
            struct vfio_info_cap_header *h = (struct vfio_info_cap_header *)(buf + prev);
            if (!h->next)
                break;
            prev = h->next;
        }
        ((struct vfio_info_cap_header *)(buf + prev))->next = (uint32_t)at;
    }
    caps->buf = buf;
    caps->size = at + size;
    struct vfio_info_cap_header *h = (struct vfio_info_cap_header *)(buf + at);
    h->id = id;
    h->version = version;
    return h;
}

void vfio_info_cap_shift(struct vfio_info_cap *caps, size_t offset)
{
    if (!caps->size)
        return;
    size_t at = 0;
    for (;;) {
        struct vfio_info_cap_header *h = (struct vfio_info_cap_header *)(caps->buf + at);
        size_t next = h->next;
        if (!next)
            break;
        h->next = (uint32_t)(next + offset);
        at = next;
    }
}

void vfio_info_cap_free(struct vfio_info_cap *caps)
{
    free(caps->buf);
    *caps = (struct vfio_info_cap){ 0 };
}

int vfio_info_copy_out(void *uinfo, uint32_t argsz, void *info, size_t minsz,
                       struct vfio_info_cap *caps, uint32_t *flags, uint32_t caps_flag,
                       uint32_t *cap_offset)
{
    if (caps && caps->size) {
        size_t at = (minsz + 7) & ~(size_t)7;
        *flags |= caps_flag;
        if (argsz < at + caps->size) {
            /* Too small: say how much is needed; no error (Linux). */
            *(uint32_t *)info = (uint32_t)(at + caps->size);
            *cap_offset = 0;
        } else {
            vfio_info_cap_shift(caps, at);
            memcpy((uint8_t *)uinfo + at, caps->buf, caps->size);
            *cap_offset = (uint32_t)at;
        }
    }
    /* An older caller's shorter structure gets what fits, nothing past its
     * end (Linux writes back min(argsz, sizeof(info))). */
    memcpy(uinfo, info, argsz < minsz ? argsz : minsz);
    return 0;
}
