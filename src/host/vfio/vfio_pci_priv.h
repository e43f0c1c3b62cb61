/*
 * vfio-pci's insides, shared by its three files (the core sees only the
 * calls of vfio_priv.h):
 *
 *   pci.c         the device: GET_INFO, GET_REGION_INFO, region reads and
 *                 writes, mmap, RESET, enable (first open) and disable
 *                 (last close), and the save/reset/restore of the function;
 *   pci_config.c  the configuration space the program sees (Linux's
 *                 vfio_pci_config.c): a virtual copy with per-bit rules;
 *   pci_irq.c     GET_IRQ_INFO and SET_IRQS: MSI and MSI-X vectors as the
 *                 program's eventfds (Linux's vfio_pci_intrs.c).
 *
 * Locking: vd->lock serialises every call on the device (Linux's igate and
 * memory_lock in one): ioctls, region accesses, mmap, enable, disable.  The
 * interrupt handlers never take it; they take only their vector's trigger
 * lock (pci_irq.c), which nothing holds while calling into the host's PCI
 * code.  Everything below "under lock" is read and written with vd->lock
 * held.
 */
#ifndef VTIO_HOST_VFIO_PCI_PRIV_H
#define VTIO_HOST_VFIO_PCI_PRIV_H

#include <vtio/pci.h>
#include <vtio/pci_enum.h>

#include "host/vfio/vfio_priv.h"

struct vtio_host;
struct vfio_pci_irq_ctx;

/*
 * The function's physical state, saved before a reset and written back
 * after it (Linux's pci_save_state / pci_restore_state): the header, the
 * PCI Express control registers, MSI and MSI-X (control word and, for
 * MSI-X, the whole vector table, whose messages the host composed).
 */
struct vfio_pci_saved_state {
    uint32_t header[16];               /* config dwords 0x00..0x3c */
    uint16_t exp_devctl, exp_lnkctl;
    uint16_t msi_flags;
    uint32_t msi_addr_lo, msi_addr_hi, msi_mask;
    uint16_t msi_data;
    uint16_t msix_flags;
    uint32_t *msix_table;              /* 4 dwords per entry; table size entries */
};

struct vfio_pci_device {
    /* set at create */
    struct vtio_device *dev;
    struct vtio_host *h;
    const struct vtio_pci_function *fn;
    bool reset_works;                  /* PCIe Function Level Reset */

    pthread_mutex_t lock;
    /* under lock */
    bool enabled;                      /* between vfio_pci_enable and _disable */
    struct vfio_pci_saved_state open_state;   /* as enable left it: disable's target */
    struct vfio_pci_saved_state reset_state;  /* around a RESET */

    /* configuration space (pci_config.c) */
    uint8_t vconfig[VTIO_PCIE_CFG_SIZE];      /* the virtual values */
    uint8_t virt[VTIO_PCIE_CFG_SIZE];         /* bits read and written in vconfig */
    uint8_t wmask[VTIO_PCIE_CFG_SIZE];        /* bits the program may write */
    uint32_t rbar[VTIO_PCI_NUM_BARS];         /* the physical BARs, to restore */
    uint8_t cap_msi, cap_exp;                 /* where they are (0: hidden/absent) */

    /* interrupts (pci_irq.c) */
    int irq_type;                      /* VFIO_PCI_MSI/MSIX_IRQ_INDEX, or
                                          VFIO_PCI_NUM_IRQS: none */
    unsigned num_ctx;                  /* vectors enabled (start + count) */
    struct vfio_pci_irq_ctx *ctx;      /* num_ctx of them */
    unsigned msi_qmax;                 /* log2 of the MSI vectors enabled */
    int err_trigger, req_trigger;      /* eventfds of the ERR and REQ indexes, -1 */
};

/* The widest naturally aligned access (1, 2, 4 ... max bytes) at pos that
 * fits in n bytes: how region accesses are split. */
static inline size_t vfio_pci_access_width(uint64_t pos, size_t n, size_t max)
{
    for (size_t w = max; w > 1; w /= 2)
        if (n >= w && pos % w == 0)
            return w;
    return 1;
}

/* ---- pci.c */

/* Save, Function Level Reset, restore (Linux's pci_try_reset_function).
 * @returns 0; -EINVAL the function has no FLR.  Lock held. */
int vfio_pci_reset_function_locked(struct vfio_pci_device *vd);
/* Memory decoding on for a host access to the BARs (the MSI-X table),
 * whatever the program set; @returns the COMMAND value to give back to
 * vfio_pci_memory_restore (Linux's vfio_pci_memory_lock_and_enable). */
uint16_t vfio_pci_memory_force_on(struct vfio_pci_device *vd);
void vfio_pci_memory_restore(struct vfio_pci_device *vd, uint16_t cmd);

/* ---- pci_config.c */

/* Builds the virtual configuration space from the function's (at enable).
 * Lock held. */
void vfio_pci_config_init(struct vfio_pci_device *vd);
/* A read or write of count bytes at pos of the config region, in naturally
 * aligned pieces of up to 4 bytes.  @returns count; -EFAULT outside the
 * 4 KiB space (Linux).  Lock held. */
ssize_t vfio_pci_config_rw(struct vfio_pci_device *vd, void *buf, size_t count, uint64_t pos,
                           bool write);
/* Whether the program has memory decoding on (virtual COMMAND.MEM): BAR
 * accesses through read/write need it.  Lock held. */
bool vfio_pci_memory_enabled(const struct vfio_pci_device *vd);

/* ---- pci_irq.c */

void vfio_pci_irq_init(struct vfio_pci_device *vd);
/* VFIO_DEVICE_GET_IRQ_INFO and VFIO_DEVICE_SET_IRQS.  Lock held. */
long vfio_pci_ioctl_get_irq_info(struct vfio_pci_device *vd, void *arg);
long vfio_pci_ioctl_set_irqs(struct vfio_pci_device *vd, void *arg);
/* Frees every vector and closes every eventfd (last close).  Lock held. */
void vfio_pci_irq_teardown(struct vfio_pci_device *vd);

#endif
