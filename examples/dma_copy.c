/*
 * dma_copy: the smallest complete driver for vtio's DMA engine.
 *
 * It does by hand, on one channel, what every DMA driver does:
 *   1. find the device on the bus and map its registers (BAR0);
 *   2. bind to the device and get memory the device can reach through the DMA
 *      API: coherent memory for the ring and the completion record, and
 *      streaming mappings for the data (behind the IOMMU the device sees
 *      IOVAs, never physical addresses);
 *   3. route the channel's MSI-X vector to an interrupt handler;
 *   4. turn on bus mastering and start the channel;
 *   5. write a COPY descriptor and ring the doorbell (TAIL);
 *   6. do something else until the interrupt says it is done;
 *   7. unmap, read the completion record and check the data.
 *
 * The full driver (include/vtio/drv/dma_engine.h) adds every channel,
 * batching, cookies, errors and resets; docs/dma-engine.md is the datasheet.
 * This program uses only the public API and links against libvtio.so.
 */
#include <vtio/dev/dma_engine.h>
#include <vtio/device.h>
#include <vtio/dma.h>
#include <vtio/host.h>
#include <vtio/machine.h>
#include <vtio/mem.h>
#include <vtio/page_alloc.h>
#include <vtio/pci_enum.h>

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define COPY_BYTES (1u << 20)

/* Set by the interrupt handler.  It runs on the device's thread (like a
 * hard interrupt): it only records what happened. */
static atomic_uint irq_vector;      /* 0 until the interrupt arrives */

static void dma_interrupt(void *opaque, unsigned cpu, unsigned vector)
{
    (void)opaque, (void)cpu;
    atomic_store_explicit(&irq_vector, vector, memory_order_release);
}

static int fail(const char *what)
{
    fprintf(stderr, "dma_copy: %s: %s\n", what, vtio_last_error());
    return 1;
}

int main(void)
{
    /* The machine (RAM, PCI bus, one DMA engine) and the OS booted on it. */
    struct vtio_machine *m;
    struct vtio_host *h;
    if (vtio_machine_create(NULL, &m) < 0 || vtio_host_boot(m, &h) < 0)
        return fail("boot");

    /* 1. Find the engine; its registers are BAR0. */
    const struct vtio_pci_function *fn =
        vtio_pci_find(h->pci, VTIO_DMAE_VENDOR_ID, VTIO_DMAE_DEVICE_ID, 0);
    struct vtio_mmio bar0;
    if (!fn || vtio_pci_bar_mmio(fn, VTIO_DMAE_BAR_REGS, &bar0) < 0)
        return fail("find the DMA engine");
    printf("found the DMA engine at %02x:%02x.%x, registers at %#llx\n", fn->bus, fn->dev,
           fn->fn, (unsigned long long)bar0.base);
    struct vtio_mmio chan0 = { bar0.mem, bar0.base + VTIO_DMAE_CHAN_BASE(0), 0x1000 };

    /* 2. The driver owns the device and says what addresses it can take.
     * One coherent page holds a 16-entry ring (1 KiB) and, after it, the
     * completion record; two 1 MiB buffers are the source and destination,
     * mapped for the device in the direction the data goes. */
    struct vtio_device *dev = vtio_host_device(h, fn);
    if (vtio_device_bind(dev, "dma_copy") < 0 ||
        vtio_dma_set_mask_and_coherent(dev, VTIO_DMA_BIT_MASK(64)) < 0)
        return fail("bind the device");
    vtio_dma_addr_t ring_dma;
    uint8_t *ring_cpu = vtio_dma_alloc_coherent(dev, VTIO_PAGE_SIZE, &ring_dma);
    uint64_t src, dst;
    if (!ring_cpu ||
        vtio_page_alloc(h->pages, vtio_page_order(COPY_BYTES), 0, &src) < 0 ||
        vtio_page_alloc(h->pages, vtio_page_order(COPY_BYTES), 0, &dst) < 0)
        return fail("allocate memory");
    const size_t record_off = 16 * sizeof(struct vtio_dmae_desc);
    static uint8_t data[COPY_BYTES];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 3);
    vtio_mem_write(h->mem, src, data, sizeof(data));
    vtio_dma_addr_t src_dma = vtio_dma_map_page(dev, src, COPY_BYTES, VTIO_DMA_TO_DEVICE);
    vtio_dma_addr_t dst_dma = vtio_dma_map_page(dev, dst, COPY_BYTES, VTIO_DMA_FROM_DEVICE);
    if (vtio_dma_mapping_error(dev, src_dma) || vtio_dma_mapping_error(dev, dst_dma))
        return fail("map the buffers");
    printf("buffers at %#llx and %#llx are DMA addresses %#llx and %#llx for the device\n",
           (unsigned long long)src, (unsigned long long)dst, (unsigned long long)src_dma,
           (unsigned long long)dst_dma);

    /* 3. MSI-X: one vector, entry 0, handled on CPU 0. */
    if (vtio_pci_msix_enable(h, fn, 1) < 0 ||
        vtio_pci_request_irq(h, fn, 0, dma_interrupt, NULL, 0) < 0)
        return fail("set up MSI-X");

    /* 4. Let the device master the bus, then program and enable channel 0. */
    vtio_pci_set_master(fn, true);
    vtio_mmio_write64(&chan0, VTIO_DMAE_RING_BASE, ring_dma);
    vtio_mmio_write32(&chan0, VTIO_DMAE_RING_SIZE, 16);
    vtio_mmio_write32(&chan0, VTIO_DMAE_INT_VEC, 0);
    vtio_mmio_write32(&chan0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_EN | VTIO_DMAE_CTRL_IE);

    /* 5. A COPY descriptor in slot 0, then the doorbell: TAIL = 1. */
    struct vtio_dmae_desc d = {
        .op_flags = VTIO_DMAE_OP_FLAGS(VTIO_DMAE_OP_COPY, VTIO_DMAE_FLAG_INTR),
        .src = src_dma, .dst = dst_dma, .len = COPY_BYTES,
        .completion = ring_dma + record_off, .cookie = 42,
    };
    memcpy(ring_cpu, &d, sizeof(d));       /* coherent memory: a plain store */
    vtio_mmio_write32(&chan0, VTIO_DMAE_TAIL, 1);
    printf("copy of %u KiB issued\n", COPY_BYTES >> 10);

    /* 6. Other work until the interrupt arrives. */
    unsigned long spins = 0;
    unsigned vector;
    while (!(vector = atomic_load_explicit(&irq_vector, memory_order_acquire)))
        spins++;
    printf("interrupt on vector %u; the CPU looped %lu times meanwhile\n", vector, spins);

    /* 7. Unmapping gives the buffers back to the CPU; then the completion
     * record and the data. */
    vtio_dma_unmap_page(dev, src_dma, COPY_BYTES, VTIO_DMA_TO_DEVICE);
    vtio_dma_unmap_page(dev, dst_dma, COPY_BYTES, VTIO_DMA_FROM_DEVICE);
    struct vtio_dmae_completion rec;
    memcpy(&rec, ring_cpu + record_off, sizeof(rec));
    static uint8_t out[COPY_BYTES];
    vtio_mem_read(h->mem, dst, out, sizeof(out));
    bool ok = rec.status == VTIO_DMAE_STATUS_SUCCESS && rec.cookie == 42 &&
              rec.bytes == COPY_BYTES && memcmp(out, data, sizeof(out)) == 0;
    printf("completion: status %s, %llu bytes, cookie %llu; data %s\n",
           vtio_dmae_status_name(rec.status), (unsigned long long)rec.bytes,
           (unsigned long long)rec.cookie, ok ? "identical" : "WRONG");

    /* Tear down in reverse: stop the channel, free the vector, drop mastering. */
    vtio_mmio_write32(&chan0, VTIO_DMAE_CTRL, VTIO_DMAE_CTRL_RESET);
    vtio_pci_msix_disable(h, fn);
    vtio_pci_set_master(fn, false);
    vtio_dma_free_coherent(dev, VTIO_PAGE_SIZE, ring_cpu, ring_dma);
    vtio_device_unbind(dev);
    vtio_host_shutdown(h);
    vtio_machine_destroy(m);
    return ok ? 0 : 1;
}
