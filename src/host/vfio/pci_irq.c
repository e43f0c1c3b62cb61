/*
 * vfio-pci's interrupts: GET_IRQ_INFO and SET_IRQS (Linux's
 * vfio_pci_intrs.c and vfio_set_irqs_validate_and_prepare).
 *
 * A program gets a device's interrupts as eventfd(2)s.  SET_IRQS with
 * ACTION_TRIGGER | DATA_EVENTFD on the MSI or MSI-X index enables that kind
 * of interrupt with start + count vectors (the host's
 * vtio_pci_msix_enable / vtio_pci_msi_enable: the count is fixed until the
 * index is disabled, hence NORESIZE) and routes each vector to a host
 * handler that adds 1 to the vector's eventfd.  The descriptors are the
 * calling program's real ones; each is dup()ed (a reference, as Linux's
 * eventfd_ctx_fdget), so the program may close its own, and the dup is
 * closed when the vector is torn down (fd -1), the index disabled (count 0
 * with DATA_NONE) or the device's last file closed.  DATA_NONE / DATA_BOOL
 * with ACTION_TRIGGER signal the eventfds from software (loopback, as
 * Linux).  ACTION_MASK / ACTION_UNMASK mask a vector at the function (MSI-X
 * vector control, MSI mask bits): a message raised meanwhile stays pending
 * and arrives on unmask; Linux leaves these unimplemented for MSI/MSI-X
 * (-ENOTTY), vtio does them and says MASKABLE.  The ERR and REQ indexes
 * hold one eventfd each that only loopback signals (the host never reports
 * errors and refuses unbind while a device is open).  INTx has no vectors:
 * the DMA engine has no pin (the vfio.h contract leaves INTx out).
 *
 * A failed SET_IRQS changes nothing (stricter than Linux, which tears down
 * the vectors of a block it could not finish): all descriptors are taken
 * first, then the vectors that get their first eventfd are requested
 * (undone on failure), and only then are eventfds swapped and vectors torn
 * down, which cannot fail.
 *
 * Handlers run on device threads.  Each vector's eventfd is read by its
 * handler under the vector's trigger lock and changed under that lock
 * (and vd->lock), so a descriptor is never closed while a handler writes to
 * it.  A vector has a host irq requested exactly when it has an eventfd
 * (outside the middle of a SET_IRQS).  The host's MSI-X table lives in a
 * BAR, so every host irq call runs with memory decoding forced on.
 *
 * Writing 1 to an eventfd blocks only when its counter would overflow
 * (2^64 - 2), so the handler's write does not block in practice even if the
 * program's eventfd is not EFD_NONBLOCK.
 */
#include <vtio/host.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/vfio/vfio_pci_priv.h"
#include "util/error.h"

#define offsetofend(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))
#define NO_IRQ VFIO_PCI_NUM_IRQS

struct vfio_pci_irq_ctx {
    pthread_mutex_t lock;      /* trigger, against the handler */
    int trigger;               /* our dup of the program's eventfd; -1: none */
    bool masked;               /* ACTION_MASK, while it has a trigger */
};

/* ------------------------------------------------------------------------
 * eventfds
 * ------------------------------------------------------------------------ */

static void eventfd_signal(int fd)
{
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof(one));
    (void)r;    /* only fails when the counter is full: the program's lookout */
}

/* A reference on the program's eventfd fd (eventfd_ctx_fdget).
 * @returns our descriptor; -EBADF not open; -EINVAL not an eventfd. */
static int eventfd_get(int fd)
{
    int ours = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (ours < 0)
        return vtio_fail(errno == EBADF ? -EBADF : -errno, "vfio-pci: eventfd %d: %s", fd,
                         strerror(errno));
    char path[32], target[32] = "";
    snprintf(path, sizeof(path), "/proc/self/fd/%d", ours);
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n < 0 || strcmp(target, "anon_inode:[eventfd]") != 0) {
        close(ours);
        return vtio_fail(-EINVAL, "vfio-pci: descriptor %d is not an eventfd", fd);
    }
    return ours;
}

static void eventfd_put(int fd)
{
    if (fd >= 0)
        close(fd);
}

/* ------------------------------------------------------------------------
 * Vectors
 * ------------------------------------------------------------------------ */

static void msi_handler(void *opaque, unsigned cpu, unsigned vector)
{
    struct vfio_pci_irq_ctx *c = opaque;
    (void)cpu;
    (void)vector;
    pthread_mutex_lock(&c->lock);
    if (c->trigger >= 0)
        eventfd_signal(c->trigger);
    pthread_mutex_unlock(&c->lock);
}

/* Sets the vector's eventfd; @returns the one it had. */
static int ctx_swap_trigger(struct vfio_pci_irq_ctx *c, int fd)
{
    pthread_mutex_lock(&c->lock);
    int old = c->trigger;
    c->trigger = fd;
    pthread_mutex_unlock(&c->lock);
    return old;
}

void vfio_pci_irq_init(struct vfio_pci_device *vd)
{
    vd->irq_type = NO_IRQ;
    vd->num_ctx = 0;
    vd->ctx = NULL;
    vd->msi_qmax = 0;
    vd->err_trigger = vd->req_trigger = -1;
}

static bool msi_maskable(const struct vfio_pci_device *vd)
{
    return vtio_pci_cfg_read16(vd->fn, vd->fn->cap_msi + VTIO_PCI_MSI_FLAGS) &
           VTIO_PCI_MSI_FLAGS_MASKBIT;
}

static unsigned irq_count(const struct vfio_pci_device *vd, unsigned index)
{
    const struct vtio_pci_function *fn = vd->fn;
    switch (index) {
    case VFIO_PCI_MSI_IRQ_INDEX:
        return fn->cap_msi ? 1u << ((vtio_pci_cfg_read16(fn, fn->cap_msi + VTIO_PCI_MSI_FLAGS) &
                                     VTIO_PCI_MSI_FLAGS_QMASK) >> 1)
                           : 0;
    case VFIO_PCI_MSIX_IRQ_INDEX:
        return fn->cap_msix ? (vtio_pci_cfg_read16(fn, fn->cap_msix + VTIO_PCI_MSIX_FLAGS) &
                               VTIO_PCI_MSIX_FLAGS_QSIZE) + 1u
                            : 0;
    case VFIO_PCI_ERR_IRQ_INDEX:
        return fn->cap_exp ? 1 : 0;
    case VFIO_PCI_REQ_IRQ_INDEX:
        return 1;
    default:
        return 0;    /* INTx */
    }
}

static unsigned ceil_log2(unsigned n)
{
    unsigned k = 0;
    while ((1u << k) < n)
        k++;
    return k;
}

/* The host's MSI or MSI-X with nvec vectors, none routed yet. */
static int msi_enable(struct vfio_pci_device *vd, unsigned nvec, bool msix)
{
    struct vfio_pci_irq_ctx *ctx = calloc(nvec, sizeof(*ctx));
    if (!ctx)
        return vtio_fail(-ENOMEM, "vfio-pci: out of memory");
    uint16_t cmd = vfio_pci_memory_force_on(vd);
    /* MSI takes a power of two; the program uses the first nvec (Linux). */
    int rc = msix ? vtio_pci_msix_enable(vd->h, vd->fn, nvec)
                  : vtio_pci_msi_enable(vd->h, vd->fn, 1u << ceil_log2(nvec));
    vfio_pci_memory_restore(vd, cmd);
    if (rc < 0) {
        free(ctx);
        return rc;
    }
    for (unsigned i = 0; i < nvec; i++) {
        pthread_mutex_init(&ctx[i].lock, NULL);
        ctx[i].trigger = -1;
    }
    vd->ctx = ctx;
    vd->num_ctx = nvec;
    vd->irq_type = msix ? VFIO_PCI_MSIX_IRQ_INDEX : VFIO_PCI_MSI_IRQ_INDEX;
    vd->msi_qmax = msix ? 0 : ceil_log2(nvec);
    return 0;
}

/* Vector i loses its eventfd, then its host irq.  Taking the eventfd away
 * first (under the trigger lock) also orders every handler call that ran
 * before the teardown, and what the hardware did to deliver it, before the
 * host frees the vector's remapping entry.  Memory decoding on. */
static void vector_teardown(struct vfio_pci_device *vd, unsigned i)
{
    struct vfio_pci_irq_ctx *c = &vd->ctx[i];
    if (c->trigger < 0)
        return;
    int old = ctx_swap_trigger(c, -1);
    vtio_pci_free_irq(vd->h, vd->fn, i);
    eventfd_put(old);
    c->masked = false;
}

static void msi_disable(struct vfio_pci_device *vd)
{
    uint16_t cmd = vfio_pci_memory_force_on(vd);
    for (unsigned i = 0; i < vd->num_ctx; i++)
        vector_teardown(vd, i);
    if (vd->irq_type == VFIO_PCI_MSIX_IRQ_INDEX)
        vtio_pci_msix_disable(vd->h, vd->fn);
    else
        vtio_pci_msi_disable(vd->h, vd->fn);
    vfio_pci_memory_restore(vd, cmd);
    for (unsigned i = 0; i < vd->num_ctx; i++)
        pthread_mutex_destroy(&vd->ctx[i].lock);
    free(vd->ctx);
    vd->ctx = NULL;
    vd->num_ctx = 0;
    vd->irq_type = NO_IRQ;
    vd->msi_qmax = 0;
}

/* Phase 1 of set_block: a reference on each eventfd (-1 where fds[] is
 * negative).  @returns 0; the first error, with none taken. */
static int take_eventfds(const uint8_t *fds, unsigned count, int *ours)
{
    for (unsigned k = 0; k < count; k++) {
        int32_t fd;
        memcpy(&fd, fds + k * sizeof(fd), sizeof(fd));
        ours[k] = fd < 0 ? -1 : eventfd_get(fd);
        if (ours[k] < -1) {
            int rc = ours[k];
            while (k--)
                eventfd_put(ours[k]);
            return rc;
        }
    }
    return 0;
}

/* Phase 2: host irqs for the vectors that get their first eventfd, which is
 * in place before the vector is unmasked, so nothing raised is lost.
 * @returns 0 (fresh[] says which); an error, with all of them undone. */
static int request_fresh(struct vfio_pci_device *vd, unsigned start, unsigned count,
                         const int *ours, bool *fresh)
{
    int rc = 0;
    unsigned k;
    for (k = 0; k < count && rc == 0; k++) {
        struct vfio_pci_irq_ctx *c = &vd->ctx[start + k];
        if (ours[k] < 0 || c->trigger >= 0)
            continue;
        ctx_swap_trigger(c, ours[k]);
        rc = vtio_pci_request_irq(vd->h, vd->fn, start + k, msi_handler, c,
                                  VTIO_PCI_IRQ_ANY_CPU);
        if (rc < 0)
            ctx_swap_trigger(c, -1);
        else
            fresh[k] = true;
    }
    for (; rc < 0 && k--;)
        if (fresh[k]) {
            vtio_pci_free_irq(vd->h, vd->fn, start + k);
            ctx_swap_trigger(&vd->ctx[start + k], -1);
        }
    return rc;
}

/* Phase 3, which cannot fail: new eventfds for live vectors, teardown of
 * the vectors given none. */
static void commit_block(struct vfio_pci_device *vd, unsigned start, unsigned count,
                         const int *ours, const bool *fresh)
{
    for (unsigned k = 0; k < count; k++) {
        if (fresh[k])
            continue;
        if (ours[k] >= 0)
            eventfd_put(ctx_swap_trigger(&vd->ctx[start + k], ours[k]));
        else
            vector_teardown(vd, start + k);
    }
}

/* Gives vectors start..start+count-1 the eventfds fds[] (int32, negative:
 * none), all or nothing (see the top of the file).  Memory decoding on. */
static int set_block(struct vfio_pci_device *vd, unsigned start, unsigned count,
                     const uint8_t *fds)
{
    if (start >= vd->num_ctx || start + count > vd->num_ctx)
        return vtio_fail(-EINVAL, "vfio-pci: vectors %u..+%u, %u enabled", start, count,
                         vd->num_ctx);
    int *ours = malloc((count ? count : 1) * sizeof(*ours));
    bool *fresh = calloc(count ? count : 1, sizeof(*fresh));
    int rc = ours && fresh ? take_eventfds(fds, count, ours)
                           : vtio_fail(-ENOMEM, "vfio-pci: out of memory");
    if (rc == 0 && (rc = request_fresh(vd, start, count, ours, fresh)) < 0) {
        for (unsigned k = 0; k < count; k++)
            eventfd_put(ours[k]);
    }
    if (rc == 0)
        commit_block(vd, start, count, ours, fresh);
    free(ours);
    free(fresh);
    return rc;
}

/* DATA_NONE / DATA_BOOL: signal the eventfds of the chosen vectors. */
static void loopback(struct vfio_pci_device *vd, unsigned start, unsigned count, uint32_t flags,
                     const uint8_t *bools)
{
    for (unsigned k = 0; k < count; k++) {
        struct vfio_pci_irq_ctx *c = &vd->ctx[start + k];
        if (c->trigger >= 0 && ((flags & VFIO_IRQ_SET_DATA_NONE) || bools[k]))
            eventfd_signal(c->trigger);
    }
}

static int set_msi_trigger(struct vfio_pci_device *vd, unsigned index, unsigned start,
                           unsigned count, uint32_t flags, const uint8_t *data)
{
    bool msix = index == VFIO_PCI_MSIX_IRQ_INDEX;
    if (vd->irq_type == (int)index && count == 0 && (flags & VFIO_IRQ_SET_DATA_NONE)) {
        msi_disable(vd);
        return 0;
    }
    if (vd->irq_type != (int)index && vd->irq_type != NO_IRQ)
        return vtio_fail(-EINVAL, "vfio-pci: another interrupt type is enabled");
    if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
        bool enabling = vd->irq_type == NO_IRQ;
        if (enabling && count == 0)
            return vtio_fail(-EINVAL, "vfio-pci: enabling with no vectors");
        int rc = enabling ? msi_enable(vd, start + count, msix) : 0;
        if (rc < 0)
            return rc;
        uint16_t cmd = vfio_pci_memory_force_on(vd);
        rc = set_block(vd, start, count, data);
        vfio_pci_memory_restore(vd, cmd);
        if (rc < 0 && enabling)
            msi_disable(vd);
        return rc;
    }
    if (vd->irq_type != (int)index || start + count > vd->num_ctx)
        return vtio_fail(-EINVAL, "vfio-pci: vectors %u..+%u are not enabled", start, count);
    loopback(vd, start, count, flags, data);
    return 0;
}

static int set_msi_mask(struct vfio_pci_device *vd, unsigned index, unsigned start,
                        unsigned count, uint32_t flags, const uint8_t *data, bool mask)
{
    if (flags & VFIO_IRQ_SET_DATA_EVENTFD)
        return vtio_fail(-ENOTTY, "vfio-pci: (un)masking by eventfd is not implemented");
    if (vd->irq_type != (int)index || start + count > vd->num_ctx)
        return vtio_fail(-EINVAL, "vfio-pci: vectors %u..+%u are not enabled", start, count);
    if (index == VFIO_PCI_MSI_IRQ_INDEX && !msi_maskable(vd))
        return vtio_fail(-EINVAL, "vfio-pci: the function's MSI has no mask bits");
    uint16_t cmd = vfio_pci_memory_force_on(vd);
    int rc = 0;
    for (unsigned k = 0; k < count && rc == 0; k++) {
        struct vfio_pci_irq_ctx *c = &vd->ctx[start + k];
        bool chosen = (flags & VFIO_IRQ_SET_DATA_NONE) || data[k];
        /* vectors without an eventfd are masked by the host already */
        if (!chosen || c->trigger < 0 || c->masked == mask)
            continue;
        rc = vtio_pci_irq_mask(vd->h, vd->fn, start + k, mask);
        if (rc == 0)
            c->masked = mask;
    }
    vfio_pci_memory_restore(vd, cmd);
    return rc;
}

/* ERR and REQ: one eventfd each (Linux's vfio_pci_set_ctx_trigger_single). */
static int set_single_trigger(int *trigger, unsigned count, uint32_t flags,
                              const uint8_t *data)
{
    if (flags & VFIO_IRQ_SET_DATA_NONE) {
        if (*trigger < 0)
            return vtio_fail(-EINVAL, "vfio-pci: no eventfd set");
        if (count) {
            eventfd_signal(*trigger);
        } else {
            eventfd_put(*trigger);
            *trigger = -1;
        }
        return 0;
    }
    if (!count)
        return vtio_fail(-EINVAL, "vfio-pci: no data");
    if (flags & VFIO_IRQ_SET_DATA_BOOL) {
        if (data[0] && *trigger >= 0)
            eventfd_signal(*trigger);
        return 0;
    }
    int32_t fd;
    memcpy(&fd, data, sizeof(fd));
    if (fd < -1)
        return 0;
    int ours = fd == -1 ? -1 : eventfd_get(fd);
    if (ours < -1)
        return ours;
    eventfd_put(*trigger);
    *trigger = ours;
    return 0;
}

/* ------------------------------------------------------------------------
 * The ioctls
 * ------------------------------------------------------------------------ */

long vfio_pci_ioctl_get_irq_info(struct vfio_pci_device *vd, void *arg)
{
    struct vfio_irq_info info;
    size_t minsz = offsetofend(struct vfio_irq_info, count);
    memcpy(&info, arg, minsz);
    if (info.argsz < minsz || info.index >= VFIO_PCI_NUM_IRQS)
        return vtio_fail(-EINVAL, "vfio-pci: GET_IRQ_INFO argsz %u, index %u", info.argsz,
                         info.index);
    if (info.index == VFIO_PCI_ERR_IRQ_INDEX && !vd->fn->cap_exp)
        return vtio_fail(-EINVAL, "vfio-pci: no error interrupt on a non-PCIe function");
    info.flags = VFIO_IRQ_INFO_EVENTFD;
    info.count = irq_count(vd, info.index);
    if (info.index == VFIO_PCI_INTX_IRQ_INDEX)
        info.flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
    else
        info.flags |= VFIO_IRQ_INFO_NORESIZE;
    if (info.count && (info.index == VFIO_PCI_MSIX_IRQ_INDEX ||
                       (info.index == VFIO_PCI_MSI_IRQ_INDEX && msi_maskable(vd))))
        info.flags |= VFIO_IRQ_INFO_MASKABLE;
    memcpy(arg, &info, minsz);
    return 0;
}

/* Linux's vfio_set_irqs_validate_and_prepare.  @returns the data size. */
static long validate(const struct vfio_irq_set *hdr, unsigned max, size_t minsz)
{
    if (hdr->argsz < minsz || hdr->index >= VFIO_PCI_NUM_IRQS ||
        hdr->count >= UINT32_MAX - hdr->start ||
        (hdr->flags & ~(uint32_t)(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK)))
        return vtio_fail(-EINVAL, "vfio-pci: SET_IRQS argsz %u index %u start %u count %u "
                         "flags %#x", hdr->argsz, hdr->index, hdr->start, hdr->count,
                         hdr->flags);
    if (hdr->start >= max || hdr->start + hdr->count > max)
        return vtio_fail(-EINVAL, "vfio-pci: vectors %u..+%u of index %u, which has %u",
                         hdr->start, hdr->count, hdr->index, max);
    size_t size;
    switch (hdr->flags & VFIO_IRQ_SET_DATA_TYPE_MASK) {
    case VFIO_IRQ_SET_DATA_NONE:
        size = 0;
        break;
    case VFIO_IRQ_SET_DATA_BOOL:
        size = sizeof(uint8_t);
        break;
    case VFIO_IRQ_SET_DATA_EVENTFD:
        size = sizeof(int32_t);
        break;
    default:
        return vtio_fail(-EINVAL, "vfio-pci: SET_IRQS needs exactly one data type");
    }
    if (size && hdr->argsz - minsz < (uint64_t)hdr->count * size)
        return vtio_fail(-EINVAL, "vfio-pci: SET_IRQS argsz %u holds fewer than %u entries",
                         hdr->argsz, hdr->count);
    return (long)(hdr->count * size);
}

long vfio_pci_ioctl_set_irqs(struct vfio_pci_device *vd, void *arg)
{
    struct vfio_irq_set hdr;
    size_t minsz = offsetofend(struct vfio_irq_set, count);
    memcpy(&hdr, arg, minsz);
    unsigned max = hdr.index < VFIO_PCI_NUM_IRQS ? irq_count(vd, hdr.index) : 0;
    long rc = validate(&hdr, max, minsz);
    if (rc < 0)
        return rc;
    const uint8_t *data = (const uint8_t *)arg + minsz;
    uint32_t action = hdr.flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
    switch (hdr.index) {
    case VFIO_PCI_MSI_IRQ_INDEX:
    case VFIO_PCI_MSIX_IRQ_INDEX:
        if (action == VFIO_IRQ_SET_ACTION_TRIGGER)
            return set_msi_trigger(vd, hdr.index, hdr.start, hdr.count, hdr.flags, data);
        if (action == VFIO_IRQ_SET_ACTION_MASK || action == VFIO_IRQ_SET_ACTION_UNMASK)
            return set_msi_mask(vd, hdr.index, hdr.start, hdr.count, hdr.flags, data,
                                action == VFIO_IRQ_SET_ACTION_MASK);
        break;
    case VFIO_PCI_ERR_IRQ_INDEX:
    case VFIO_PCI_REQ_IRQ_INDEX:
        if (action == VFIO_IRQ_SET_ACTION_TRIGGER)
            return set_single_trigger(hdr.index == VFIO_PCI_ERR_IRQ_INDEX ? &vd->err_trigger
                                                                          : &vd->req_trigger,
                                      hdr.count, hdr.flags, data);
        break;
    }
    return vtio_fail(-ENOTTY, "vfio-pci: SET_IRQS action %#x on index %u", action, hdr.index);
}

void vfio_pci_irq_teardown(struct vfio_pci_device *vd)
{
    if (vd->irq_type != NO_IRQ)
        msi_disable(vd);
    eventfd_put(vd->err_trigger);
    eventfd_put(vd->req_trigger);
    vd->err_trigger = vd->req_trigger = -1;
}
