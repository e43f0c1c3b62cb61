/*
 * The DMA mapping API (include/vtio/dma.h) on a 6 GiB machine (RAM above
 * 4 GiB), without an IOMMU and with the VT-d unit in each default mode:
 * argument errors, the address a device gets and what it may do through
 * it, 32-bit devices, bouncing, untrusted devices, scatter-gather merging,
 * coherent memory, and mapping_error.  What the device can do is checked on
 * the hardware: requests through the VT-d unit (test_dma_fixture.h).
 */
#include "host/test_dma_fixture.h"

#include "host/dma/dma_priv.h"

#define RAM (6 * VTIO_GiB)

/* Runs body once per mode. */
#define FOR_MODES(r, m, extra)                                                 \
    for (enum rig_mode m = 0; m < RIG_MODES; m++)                              \
        for (int once_ = (rig_up(&(r), m, RAM, extra), 1); once_;              \
             once_ = 0, rig_down(&(r)))

static void fill(void *p, size_t len, uint8_t seed)
{
    vtio_test_fill(p, len, seed);
}

static bool all_bytes(const void *p, size_t len, uint8_t v)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < len; i++)
        if (b[i] != v)
            return false;
    return true;
}

/* ---- argument errors */

static void check_map_errors(struct rig *r)
{
    char stack_buf[64];
    uint64_t pa = rig_pages(r, 0, VTIO_PAGE_ZERO);
    void *p = rig_va(r, pa);
    struct vtio_device *dev = r->dev;

    CHECK_EQ(vtio_dma_map_single(NULL, p, 64, VTIO_DMA_TO_DEVICE), VTIO_DMA_MAPPING_ERROR);
    CHECK_ERR(vtio_dma_mapping_error(NULL, VTIO_DMA_MAPPING_ERROR), -EINVAL);
    vtio_dma_addr_t a = vtio_dma_map_single(dev, p, 0, VTIO_DMA_TO_DEVICE);
    CHECK_ERR(vtio_dma_mapping_error(dev, a), -EINVAL);
    a = vtio_dma_map_single(dev, p, 64, VTIO_DMA_NONE);
    CHECK_ERR(vtio_dma_mapping_error(dev, a), -EINVAL);
    a = vtio_dma_map_single(dev, p, 64, (enum vtio_dma_direction)7);
    CHECK_ERR(vtio_dma_mapping_error(dev, a), -EINVAL);
    a = vtio_dma_map_single(dev, stack_buf, sizeof(stack_buf), VTIO_DMA_TO_DEVICE);
    CHECK_ERR(vtio_dma_mapping_error(dev, a), -EFAULT);
    a = vtio_dma_map_single(dev, NULL, 64, VTIO_DMA_TO_DEVICE);
    CHECK_ERR(vtio_dma_mapping_error(dev, a), -EFAULT);
    a = vtio_dma_map_page(dev, VTIO_MACHINE_MMIO32_BASE, 4096, VTIO_DMA_FROM_DEVICE);
    CHECK_ERR(vtio_dma_mapping_error(dev, a), -EFAULT);
    /* the last 2 KiB of low RAM and 2 KiB of the hole above it */
    a = vtio_dma_map_page(dev, VTIO_MACHINE_LOW_RAM_MAX - 2048, 4096, VTIO_DMA_FROM_DEVICE);
    CHECK_ERR(vtio_dma_mapping_error(dev, a), -EFAULT);
    a = vtio_dma_map_page(dev, ~0ull - 10, 100, VTIO_DMA_FROM_DEVICE);
    CHECK_ERR(vtio_dma_mapping_error(dev, a), -EFAULT);

    struct vtio_scatterlist sg[2] = { { .phys = pa, .length = 512 },
                                      { .phys = pa + 1024, .length = 0 } };
    CHECK_ERR(vtio_dma_map_sg(dev, NULL, 1, VTIO_DMA_TO_DEVICE), -EINVAL);
    CHECK_ERR(vtio_dma_map_sg(dev, sg, 0, VTIO_DMA_TO_DEVICE), -EINVAL);
    CHECK_ERR(vtio_dma_map_sg(dev, sg, 2, VTIO_DMA_TO_DEVICE), -EINVAL);
    CHECK_ERR(vtio_dma_map_sg(dev, sg, 1, VTIO_DMA_NONE), -EINVAL);
    CHECK_ERR(vtio_dma_map_sg(NULL, sg, 1, VTIO_DMA_TO_DEVICE), -EINVAL);
    sg[1] = (struct vtio_scatterlist){ .phys = VTIO_MACHINE_MMIO32_BASE, .length = 64 };
    CHECK_ERR(vtio_dma_map_sg(dev, sg, 2, VTIO_DMA_TO_DEVICE), -EFAULT);

    vtio_dma_addr_t handle = 0;
    CHECK(vtio_dma_alloc_coherent(dev, 0, &handle) == NULL);
    CHECK(vtio_dma_alloc_coherent(dev, 4096, NULL) == NULL);
    CHECK(vtio_dma_alloc_coherent(NULL, 4096, &handle) == NULL);
    CHECK(vtio_dma_alloc_coherent(dev, 2 * VTIO_GiB, &handle) == NULL);
}

static void check_setters(struct rig *r)
{
    struct vtio_device *dev = r->dev;
    CHECK_EQ(vtio_dma_get_mask(dev), VTIO_DMA_BIT_MASK(32));     /* PCI's default */
    CHECK_ERR(vtio_dma_set_mask(dev, VTIO_DMA_BIT_MASK(23)), -EIO);
    CHECK_ERR(vtio_dma_set_coherent_mask(dev, VTIO_DMA_BIT_MASK(20)), -EIO);
    CHECK_ERR(vtio_dma_set_mask_and_coherent(dev, 0), -EIO);
    CHECK_ERR(vtio_dma_set_mask(NULL, VTIO_DMA_BIT_MASK(32)), -EINVAL);
    CHECK_EQ(vtio_dma_get_mask(dev), VTIO_DMA_BIT_MASK(32));     /* unchanged */
    CHECK_OK(vtio_dma_set_mask(dev, VTIO_DMA_BIT_MASK(24)));
    CHECK_EQ(vtio_dma_get_mask(dev), VTIO_DMA_BIT_MASK(24));
    CHECK_OK(vtio_dma_set_mask_and_coherent(dev, VTIO_DMA_BIT_MASK(32)));
    CHECK_EQ(vtio_dma_get_mask(NULL), 0);

    CHECK_ERR(vtio_dma_set_max_seg_size(dev, 0), -EINVAL);
    CHECK_ERR(vtio_dma_set_max_seg_size(NULL, 4096), -EINVAL);
    CHECK_ERR(vtio_dma_set_seg_boundary(dev, 0x1000), -EINVAL);   /* not 2^n - 1 */
    CHECK_ERR(vtio_dma_set_seg_boundary(dev, 0x7ff), -EINVAL);    /* below 4 KiB - 1 */
    CHECK_ERR(vtio_dma_set_seg_boundary(NULL, 0xffff), -EINVAL);
    CHECK_EQ(atomic_load(&dev->seg_boundary_mask), 0xffffffffull);
    CHECK_OK(vtio_dma_set_seg_boundary(dev, 0x1fff));
    CHECK_OK(vtio_dma_set_max_seg_size(dev, 8192));
    CHECK_EQ(atomic_load(&dev->seg_boundary_mask), 0x1fffull);
    CHECK_EQ(atomic_load(&dev->max_seg_size), 8192);
}

/* Calls that return nothing shrug off nonsense. */
static void check_void_calls(struct rig *r)
{
    struct vtio_device *dev = r->dev;
    vtio_dma_unmap_single(NULL, 0x1000, 64, VTIO_DMA_TO_DEVICE);
    vtio_dma_unmap_single(dev, VTIO_DMA_MAPPING_ERROR, 64, VTIO_DMA_TO_DEVICE);
    vtio_dma_unmap_page(dev, 0x12345000, 0, VTIO_DMA_TO_DEVICE);
    vtio_dma_unmap_page(dev, 0x12345000, 4096, (enum vtio_dma_direction)9);
    vtio_dma_unmap_sg(dev, NULL, 3, VTIO_DMA_TO_DEVICE);
    vtio_dma_sync_single_for_cpu(NULL, 0x1000, 64, VTIO_DMA_FROM_DEVICE);
    vtio_dma_sync_single_for_device(dev, 0x1000, 0, VTIO_DMA_TO_DEVICE);
    vtio_dma_sync_sg_for_cpu(dev, NULL, 2, VTIO_DMA_FROM_DEVICE);
    vtio_dma_free_coherent(dev, 4096, NULL, 0);
    vtio_dma_free_coherent(NULL, 4096, NULL, 0);
    vtio_dma_flush(NULL);
    vtio_dma_get_stats(r->h, NULL);
    CHECK_EQ(vtio_dma_debug_check_leaks(dev), 0);          /* debugging is off */
    CHECK_EQ(vtio_dma_debug_check_leaks(NULL), 0);
}

static void t_arguments(void)
{
    struct rig r;
    FOR_MODES(r, m, NULL) {
        struct vtio_dma_stats before = rig_stats(&r);
        check_map_errors(&r);
        check_setters(&r);
        check_void_calls(&r);
        struct vtio_dma_stats st = rig_stats(&r);
        CHECK_EQ(st.maps, before.maps);
        CHECK_EQ(st.unmaps, before.unmaps);
        CHECK_GE(st.map_errors - before.map_errors, 9);

        /* A good mapping is no error, and is counted. */
        uint64_t pa = rig_pages(&r, 0, 0);
        vtio_dma_addr_t a = vtio_dma_map_single(r.dev, rig_va(&r, pa), 100, VTIO_DMA_TO_DEVICE);
        CHECK_EQ(vtio_dma_mapping_error(r.dev, a), 0);
        vtio_dma_unmap_single(r.dev, a, 100, VTIO_DMA_TO_DEVICE);
        st = rig_stats(&r);
        CHECK_EQ(st.maps, before.maps + 1);
        CHECK_EQ(st.unmaps, before.unmaps + 1);
    }
}

/* A group attached to an unmanaged or blocked domain is someone else's. */
static void t_owned_elsewhere(void)
{
    struct rig r;
    rig_up(&r, RIG_STRICT, RAM, NULL);
    struct vtio_iommu_group *g = vtio_iommu_group_get(r.dev);
    CHECK(g != NULL);
    uint64_t pa = rig_pages(&r, 0, 0);
    enum vtio_iommu_domain_type types[] = { VTIO_IOMMU_DOMAIN_UNMANAGED,
                                            VTIO_IOMMU_DOMAIN_BLOCKED };
    for (unsigned i = 0; i < 2; i++) {
        struct vtio_iommu_domain *d;
        CHECK_OK(vtio_iommu_domain_alloc(r.dev, types[i], &d));
        CHECK_OK(vtio_iommu_attach_group(d, g));
        vtio_dma_addr_t a = vtio_dma_map_page(r.dev, pa, 4096, VTIO_DMA_TO_DEVICE);
        CHECK_ERR(vtio_dma_mapping_error(r.dev, a), -ENODEV);
        struct vtio_scatterlist sg = { .phys = pa, .length = 4096 };
        CHECK_ERR(vtio_dma_map_sg(r.dev, &sg, 1, VTIO_DMA_TO_DEVICE), -ENODEV);
        vtio_dma_addr_t handle;
        CHECK(vtio_dma_alloc_coherent(r.dev, 4096, &handle) == NULL);
        CHECK_OK(vtio_iommu_detach_group(d, g));
        CHECK_OK(vtio_iommu_domain_free(d));
        a = vtio_dma_map_page(r.dev, pa, 4096, VTIO_DMA_TO_DEVICE);
        CHECK_EQ(vtio_dma_mapping_error(r.dev, a), 0);
        vtio_dma_unmap_page(r.dev, a, 4096, VTIO_DMA_TO_DEVICE);
    }
    rig_down(&r);
}

/* ---- what the device gets */

/* dir's permissions as the device sees them at a; the CPU's data at pa. */
static void check_direction(struct rig *r, uint64_t pa, size_t len,
                            enum vtio_dma_direction dir)
{
    uint8_t *cpu = rig_va(r, pa);
    uint8_t want[8192], got[8192];
    fill(cpu, len, 1);
    memcpy(want, cpu, len);
    vtio_dma_addr_t a = vtio_dma_map_page(r->dev, pa, len, dir);
    CHECK_EQ(vtio_dma_mapping_error(r->dev, a), 0);
    struct vtio_iommu_domain *d = rig_domain(r->dev);
    if (rig_translated(r)) {
        uint64_t back;
        CHECK_OK(vtio_iommu_iova_to_phys(d, a + 100, &back));
        CHECK_EQ(back, pa + 100);
        CHECK_LT(a, RIG_4G);      /* 64-bit mask, but below 4 GiB first */
    } else {
        CHECK_EQ(a, pa);
    }
    int reason = 0;
    bool may_read = dir != VTIO_DMA_FROM_DEVICE || !rig_translated(r);
    bool may_write = dir != VTIO_DMA_TO_DEVICE || !rig_translated(r);
    int rc = rig_dev_read(r, a, got, len, &reason);
    if (may_read) {
        CHECK_OK(rc);
        CHECK_MEM_EQ(got, want, len);
    } else {
        CHECK_ERR(rc, -EFAULT);
        CHECK_EQ(reason, VTD_FR_READ);
    }
    fill(got, len, 2);
    rc = rig_dev_write(r, a + len - 16, got, 16, &reason);
    if (may_write) {
        CHECK_OK(rc);
        memcpy(want + len - 16, got, 16);
    } else {
        CHECK_ERR(rc, -EFAULT);
        CHECK_EQ(reason, VTD_FR_WRITE);
    }
    vtio_dma_unmap_page(r->dev, a, len, dir);
    CHECK_MEM_EQ(cpu, want, len);
    if (rig_translated(r)) {
        if (r->mode == RIG_LAZY)
            vtio_dma_flush(r->h);
        CHECK_ERR(rig_dev_read(r, a, got, 16, &reason), -EFAULT);   /* gone */
    }
}

static void t_directions(void)
{
    struct rig r;
    FOR_MODES(r, m, NULL) {
        CHECK_OK(vtio_dma_set_mask_and_coherent(r.dev, VTIO_DMA_BIT_MASK(64)));
        uint64_t pa = rig_pages(&r, 1, 0);
        CHECK_GE(pa, RIG_4G);
        check_direction(&r, pa, 8192, VTIO_DMA_TO_DEVICE);
        check_direction(&r, pa, 8192, VTIO_DMA_FROM_DEVICE);
        check_direction(&r, pa + 0x234, 5000, VTIO_DMA_BIDIRECTIONAL);
        CHECK_EQ(rig_stats(&r).bounced_maps, 0);
    }
}

/* A 32-bit device and a buffer above 4 GiB: an IOVA below 4 GiB, or a
 * bounce; data right both ways, with syncs in between. */
static void t_dma32(void)
{
    struct rig r;
    FOR_MODES(r, m, NULL) {
        uint64_t pa = rig_pages(&r, 1, 0) + 0x10;
        const size_t len = 5000;
        CHECK_GE(pa, RIG_4G);
        uint8_t *cpu = rig_va(&r, pa);
        uint8_t want[5000], got[5000];
        fill(cpu, len, 3);
        vtio_dma_addr_t a = vtio_dma_map_page(r.dev, pa, len, VTIO_DMA_BIDIRECTIONAL);
        CHECK_EQ(vtio_dma_mapping_error(r.dev, a), 0);
        CHECK_LT(a + len - 1, RIG_4G);
        CHECK_EQ(rig_stats(&r).bounced_maps, rig_translated(&r) ? 0 : 1);
        CHECK_OK(rig_dev_read(&r, a, got, len, NULL));
        CHECK_MEM_EQ(got, cpu, len);

        fill(want, len, 4);                 /* device -> CPU, mapping kept */
        CHECK_OK(rig_dev_write(&r, a, want, len, NULL));
        vtio_dma_sync_single_for_cpu(r.dev, a, len, VTIO_DMA_BIDIRECTIONAL);
        CHECK_MEM_EQ(cpu, want, len);
        fill(cpu, len, 5);                  /* CPU -> device */
        vtio_dma_sync_single_for_device(r.dev, a, len, VTIO_DMA_BIDIRECTIONAL);
        CHECK_OK(rig_dev_read(&r, a, got, len, NULL));
        CHECK_MEM_EQ(got, cpu, len);
        fill(want, len, 6);                 /* device -> CPU at unmap */
        CHECK_OK(rig_dev_write(&r, a, want, len, NULL));
        vtio_dma_unmap_page(r.dev, a, len, VTIO_DMA_BIDIRECTIONAL);
        CHECK_MEM_EQ(cpu, want, len);

        /* FROM_DEVICE: the CPU's data does not matter, the device's lands. */
        a = vtio_dma_map_page(r.dev, pa, 300, VTIO_DMA_FROM_DEVICE);
        CHECK_EQ(vtio_dma_mapping_error(r.dev, a), 0);
        CHECK_OK(rig_dev_write(&r, a, want + 1, 300, NULL));
        vtio_dma_unmap_page(r.dev, a, 300, VTIO_DMA_FROM_DEVICE);
        CHECK_MEM_EQ(cpu, want + 1, 300);
        struct vtio_dma_stats st = rig_stats(&r);
        CHECK_EQ(st.swiotlb_used, 0);
        CHECK_GT(st.swiotlb_total, 0);
    }
}

/* The 32-bit first try for 64-bit devices, and iommu.forcedac. */
static void t_forcedac(void)
{
    for (int forced = 0; forced < 2; forced++) {
        struct rig r;
        struct vtio_host_options o = { .forcedac = forced };
        rig_up(&r, RIG_STRICT, RAM, &o);
        uint64_t pa = rig_pages(&r, 0, 0);
        CHECK_OK(vtio_dma_set_mask(r.dev, VTIO_DMA_BIT_MASK(40)));
        vtio_dma_addr_t a = vtio_dma_map_page(r.dev, pa, 4096, VTIO_DMA_TO_DEVICE);
        CHECK_EQ(vtio_dma_mapping_error(r.dev, a), 0);
        CHECK_LT(a, 1ull << 40);
        if (forced)
            CHECK_GE(a, RIG_4G);
        else
            CHECK_LT(a, RIG_4G);
        uint64_t back;
        CHECK_OK(vtio_iommu_iova_to_phys(rig_domain(r.dev), a, &back));
        CHECK_EQ(back, pa);
        vtio_dma_unmap_page(r.dev, a, 4096, VTIO_DMA_TO_DEVICE);
        rig_down(&r);
    }
}

/* Passthrough: DMA address = physical address, nothing bounced for a
 * 64-bit device. */
static void t_identity(void)
{
    struct rig r;
    rig_up(&r, RIG_PASSTHROUGH, RAM, NULL);
    CHECK_EQ(vtio_iommu_domain_type(rig_domain(r.dev)), VTIO_IOMMU_DOMAIN_IDENTITY);
    CHECK_OK(vtio_dma_set_mask_and_coherent(r.dev, VTIO_DMA_BIT_MASK(64)));
    uint64_t pa = rig_pages(&r, 2, 0) + 0x40;
    CHECK_GE(pa, RIG_4G);
    vtio_dma_addr_t a = vtio_dma_map_single(r.dev, rig_va(&r, pa), 10000, VTIO_DMA_FROM_DEVICE);
    CHECK_EQ(a, pa);
    uint64_t seen;
    int reason;
    CHECK_OK(rig_dev_xlate(&r, r.dev, a + 9000, true, &seen, &reason));
    CHECK_EQ(seen, pa + 9000);
    vtio_dma_unmap_single(r.dev, a, 10000, VTIO_DMA_FROM_DEVICE);
    CHECK_EQ(rig_stats(&r).bounced_maps, 0);
    rig_down(&r);
}

/* ---- untrusted devices */

static void t_untrusted(void)
{
    enum rig_mode modes[] = { RIG_STRICT, RIG_LAZY };
    for (unsigned mi = 0; mi < 2; mi++) {
        struct rig r;
        struct vtio_host_options o = { .n_untrusted = 1 };
        o.untrusted_rid[0] = VTIO_PCI_RID(0, VTIO_MACHINE_FIRST_DEV, 0);
        rig_up(&r, modes[mi], RAM, &o);
        CHECK(vtio_device_untrusted(r.dev));
        CHECK_EQ(vtio_iommu_domain_type(rig_domain(r.dev)), VTIO_IOMMU_DOMAIN_DMA);

        uint64_t pa = rig_pages(&r, 0, 0);
        uint8_t *cpu = rig_va(&r, pa);
        memset(cpu, 0xEE, 4096);                     /* the neighbours' secrets */
        fill(cpu + 0x123, 100, 7);
        uint8_t page[4096], want[100];
        memcpy(want, cpu + 0x123, 100);

        vtio_dma_addr_t a = vtio_dma_map_single(r.dev, cpu + 0x123, 100, VTIO_DMA_TO_DEVICE);
        CHECK_EQ(vtio_dma_mapping_error(r.dev, a), 0);
        CHECK_EQ(rig_stats(&r).bounced_maps, 1);
        CHECK_EQ(rig_stats(&r).bounce_bytes_copied, 100);   /* copied in on map */
        uint64_t page_iova = a & ~(VTIO_PAGE_SIZE - 1), off = a - page_iova;
        CHECK_OK(rig_dev_read(&r, page_iova, page, 4096, NULL));   /* the whole page */
        CHECK_MEM_EQ(page + off, want, 100);
        CHECK(all_bytes(page, off, 0));
        CHECK(all_bytes(page + off + 100, 4096 - off - 100, 0));
        vtio_dma_unmap_single(r.dev, a, 100, VTIO_DMA_TO_DEVICE);

        /* A device writing all over its page reaches only the buffer. */
        a = vtio_dma_map_single(r.dev, cpu + 0x123, 100, VTIO_DMA_FROM_DEVICE);
        CHECK_EQ(vtio_dma_mapping_error(r.dev, a), 0);
        page_iova = a & ~(VTIO_PAGE_SIZE - 1);
        off = a - page_iova;
        fill(page, 4096, 8);
        CHECK_OK(rig_dev_write(&r, page_iova, page, 4096, NULL));
        vtio_dma_unmap_single(r.dev, a, 100, VTIO_DMA_FROM_DEVICE);
        CHECK_MEM_EQ(cpu + 0x123, page + off, 100);
        CHECK(all_bytes(cpu, 0x123, 0xEE));
        CHECK(all_bytes(cpu + 0x123 + 100, 4096 - 0x123 - 100, 0xEE));

        /* Whole pages need no bounce. */
        a = vtio_dma_map_page(r.dev, pa, 4096, VTIO_DMA_TO_DEVICE);
        uint64_t seen;
        CHECK_OK(vtio_iommu_iova_to_phys(rig_domain(r.dev), a, &seen));
        CHECK_EQ(seen, pa);
        vtio_dma_unmap_page(r.dev, a, 4096, VTIO_DMA_TO_DEVICE);
        CHECK_EQ(rig_stats(&r).bounced_maps, 2);

        /* sg lists: per segment, each sub-page one bounced. */
        struct vtio_scatterlist sg[3] = { { .phys = pa + 0x10, .length = 0x20 },
                                          { .phys = pa + 0x800, .length = 0x100 },
                                          { .phys = pa, .length = 4096 } };
        CHECK_EQ(vtio_dma_map_sg(r.dev, sg, 3, VTIO_DMA_BIDIRECTIONAL), 3);
        CHECK_EQ(rig_stats(&r).bounced_maps, 4);
        CHECK_OK(rig_dev_read(&r, sg[1].dma_address, page, 0x100, NULL));
        CHECK_MEM_EQ(page, cpu + 0x800, 0x100);
        vtio_dma_unmap_sg(r.dev, sg, 3, VTIO_DMA_BIDIRECTIONAL);
        CHECK_EQ(rig_stats(&r).swiotlb_used, 0);
        rig_down(&r);
    }
}

/* ---- scatter-gather */

static void map_pages_sg(struct vtio_scatterlist *sg, const uint64_t *pages)
{
    for (int i = 0; i < 4; i++)
        sg[i] = (struct vtio_scatterlist){ .phys = pages[i], .length = 4096 };
}

static void check_windows(const struct vtio_scatterlist *sg, int n, uint64_t bmask,
                          uint32_t max_seg)
{
    for (int j = 0; j < n; j++) {
        CHECK_LE(sg[j].dma_length, max_seg);
        CHECK_EQ(sg[j].dma_address & ~bmask,
                 (sg[j].dma_address + sg[j].dma_length - 1) & ~bmask);
    }
}

static void t_map_sg(void)
{
    struct rig r;
    FOR_MODES(r, m, NULL) {
        CHECK_OK(vtio_dma_set_mask(r.dev, VTIO_DMA_BIT_MASK(64)));
        CHECK_OK(vtio_dma_set_max_seg_size(r.dev, 1u << 20));
        uint64_t pages[4];
        for (int i = 0; i < 4; i++)
            pages[i] = rig_pages(&r, 0, VTIO_PAGE_ZERO);
        struct vtio_scatterlist sg[4];
        map_pages_sg(sg, pages);
        int n = vtio_dma_map_sg(r.dev, sg, 4, VTIO_DMA_BIDIRECTIONAL);
        bool tr = rig_translated(&r);
        CHECK_EQ(n, tr ? 1 : 4);                 /* direct never merges */
        if (tr) {
            CHECK_EQ(sg[0].dma_length, 16384);
            for (int j = 1; j < 4; j++)
                CHECK_EQ(sg[j].dma_length, 0);
            uint8_t data[16384];
            fill(data, sizeof(data), 9);
            CHECK_OK(rig_dev_write(&r, sg[0].dma_address, data, sizeof(data), NULL));
            for (int i = 0; i < 4; i++)
                CHECK_MEM_EQ(rig_va(&r, pages[i]), data + 4096 * i, 4096);
        } else {
            for (int i = 0; i < 4; i++) {
                CHECK_EQ(sg[i].dma_address, pages[i]);
                CHECK_EQ(sg[i].dma_length, 4096);
            }
        }
        vtio_dma_unmap_sg(r.dev, sg, 4, VTIO_DMA_BIDIRECTIONAL);
        if (tr) {
            vtio_dma_flush(r.h);
            uint8_t b;
            CHECK_ERR(rig_dev_read(&r, sg[0].dma_address + 3 * 4096, &b, 1, NULL), -EFAULT);
        }

        /* max_seg_size 8 KiB: two segments. */
        CHECK_OK(vtio_dma_set_max_seg_size(r.dev, 8192));
        map_pages_sg(sg, pages);
        n = vtio_dma_map_sg(r.dev, sg, 4, VTIO_DMA_TO_DEVICE);
        CHECK_EQ(n, tr ? 2 : 4);
        check_windows(sg, n, ~0ull, 8192);
        vtio_dma_unmap_sg(r.dev, sg, 4, VTIO_DMA_TO_DEVICE);

        /* an 8 KiB boundary: never a segment across a multiple of 8 KiB */
        CHECK_OK(vtio_dma_set_max_seg_size(r.dev, 1u << 20));
        CHECK_OK(vtio_dma_set_seg_boundary(r.dev, 0x1fff));
        map_pages_sg(sg, pages);
        sg[0].phys += 0x800;                     /* a half page first */
        sg[0].length = 0x800;
        n = vtio_dma_map_sg(r.dev, sg, 4, VTIO_DMA_TO_DEVICE);
        CHECK_EQ(n, tr ? 2 : 4);                 /* 0x800 + 4 KiB, then 8 KiB */
        check_windows(sg, n, 0x1fff, 1u << 20);
        uint8_t got[16384];
        CHECK_OK(rig_dev_read(&r, sg[n - 1].dma_address, got, 4096, NULL));
        CHECK_MEM_EQ(got, rig_va(&r, pages[tr ? 2 : 3]), 4096);
        vtio_dma_unmap_sg(r.dev, sg, 4, VTIO_DMA_TO_DEVICE);

        /* A segment that would straddle a 16 KiB boundary starts at the next. */
        CHECK_OK(vtio_dma_set_seg_boundary(r.dev, 0x3fff));
        uint64_t block = rig_pages(&r, 2, 0);
        struct vtio_scatterlist two[2] = { { .phys = pages[0], .length = 4096 },
                                           { .phys = block, .length = 16384 } };
        n = vtio_dma_map_sg(r.dev, two, 2, VTIO_DMA_FROM_DEVICE);
        CHECK_EQ(n, 2);
        check_windows(two, n, 0x3fff, 1u << 20);
        fill(got, sizeof(got), 12);
        CHECK_OK(rig_dev_write(&r, two[1].dma_address, got, 16384, NULL));
        vtio_dma_unmap_sg(r.dev, two, 2, VTIO_DMA_FROM_DEVICE);
        CHECK_MEM_EQ(rig_va(&r, block), got, 16384);
        CHECK_OK(vtio_dma_set_seg_boundary(r.dev, 0xffffffff));

        /* Sub-page pieces: only segments that meet on a page boundary merge. */
        struct vtio_scatterlist mix[4] = {
            { .phys = pages[0] + 0x100, .length = 0x200 },
            { .phys = pages[1], .length = 4096 },
            { .phys = pages[2], .length = 4096 },
            { .phys = pages[3], .length = 0x80 },
        };
        n = vtio_dma_map_sg(r.dev, mix, 4, VTIO_DMA_FROM_DEVICE);
        CHECK_EQ(n, tr ? 2 : 4);
        if (tr) {
            CHECK_EQ(mix[0].dma_length, 0x200);
            CHECK_EQ(mix[0].dma_address & 0xfff, 0x100);
            CHECK_EQ(mix[1].dma_length, 8192 + 0x80);
            CHECK_EQ(mix[1].dma_address & 0xfff, 0);
        }
        uint8_t data[8192 + 0x80];
        fill(data, sizeof(data), 10);
        CHECK_OK(rig_dev_write(&r, mix[1].dma_address, data, tr ? sizeof(data) : 4096, NULL));
        vtio_dma_unmap_sg(r.dev, mix, 4, VTIO_DMA_FROM_DEVICE);
        CHECK_MEM_EQ(rig_va(&r, pages[1]), data, 4096);
        if (tr) {
            CHECK_MEM_EQ(rig_va(&r, pages[2]), data + 4096, 4096);
            CHECK_MEM_EQ(rig_va(&r, pages[3]), data + 8192, 0x80);
        }
    }
}

/* ---- coherent memory */

static void t_coherent(void)
{
    struct rig r;
    FOR_MODES(r, m, NULL) {
        /* Dirty some memory and give it back, so zeroing is visible. */
        uint64_t junk = rig_pages(&r, 2, VTIO_PAGE_DMA32);
        memset(rig_va(&r, junk), 0x77, 4 * 4096);
        CHECK_OK(vtio_page_free(r.h->pages, junk, 2));

        vtio_dma_addr_t handle = 0;
        const size_t len = 3 * 4096;
        uint8_t *cpu = vtio_dma_alloc_coherent(r.dev, len, &handle);
        CHECK(cpu != NULL);
        CHECK(all_bytes(cpu, len, 0));
        CHECK_LT(handle + len - 1, RIG_4G);            /* the 32-bit coherent mask */
        CHECK_EQ(handle & 0xfff, 0);
        uint64_t pa;
        CHECK_OK(vtio_host_virt_to_phys(r.h, cpu, &pa));
        if (rig_translated(&r)) {
            uint64_t back;
            CHECK_OK(vtio_iommu_iova_to_phys(rig_domain(r.dev), handle + 8192, &back));
            CHECK_EQ(back, pa + 8192);
        } else {
            CHECK_EQ(handle, pa);
        }
        uint8_t data[len], got[len];
        fill(data, len, 11);
        CHECK_OK(rig_dev_write(&r, handle, data, len, NULL));   /* no sync needed */
        CHECK_MEM_EQ(cpu, data, len);
        memset(cpu + 100, 0x42, 50);
        CHECK_OK(rig_dev_read(&r, handle, got, len, NULL));
        CHECK_MEM_EQ(got, cpu, len);
        vtio_dma_free_coherent(r.dev, len, cpu, handle);
        struct vtio_dma_stats st = rig_stats(&r);
        CHECK_EQ(st.maps, 1);
        CHECK_EQ(st.unmaps, 1);

        /* A 30-bit coherent mask, 64-bit streaming. */
        CHECK_OK(vtio_dma_set_mask(r.dev, VTIO_DMA_BIT_MASK(64)));
        CHECK_OK(vtio_dma_set_coherent_mask(r.dev, VTIO_DMA_BIT_MASK(30)));
        cpu = vtio_dma_alloc_coherent(r.dev, 4096, &handle);
        CHECK(cpu != NULL);
        CHECK_LT(handle, 1ull << 30);
        vtio_dma_free_coherent(r.dev, 4096, cpu, handle);
    }
}

/* ---- mapping_error */

struct other_thread {
    struct vtio_device *dev;
    int err;
};

static void *fail_on_other_thread(void *arg)
{
    struct other_thread *t = arg;
    vtio_dma_addr_t a = vtio_dma_map_page(t->dev, 0x1000, 0, VTIO_DMA_TO_DEVICE);
    t->err = vtio_dma_mapping_error(t->dev, a);
    return NULL;
}

static void t_mapping_error(void)
{
    /* A 24-bit device reaches neither a buffer above 16 MiB nor the pool
     * (a buddy block of 64 MiB, so at 64 MiB or above). */
    struct rig r;
    struct vtio_host_options o = { 0 };
    rig_up(&r, RIG_NO_IOMMU, RAM, &o);
    CHECK_EQ(rig_stats(&r).swiotlb_total, 64 * VTIO_MiB);
    uint64_t high = rig_pages(&r, 0, 0);
    CHECK_GE(high, RIG_4G);
    CHECK_OK(vtio_dma_set_mask(r.dev, VTIO_DMA_BIT_MASK(24)));
    vtio_dma_addr_t a = vtio_dma_map_page(r.dev, high, 64, VTIO_DMA_TO_DEVICE);
    CHECK_EQ(a, VTIO_DMA_MAPPING_ERROR);
    CHECK_ERR(vtio_dma_mapping_error(r.dev, a), -EIO);
    CHECK(strstr(vtio_last_error(), "cannot reach") != NULL);

    /* Another device's failure, and another thread's, change nothing here. */
    CHECK(r.dev2 != NULL);
    a = vtio_dma_map_single(r.dev2, &o, 8, VTIO_DMA_TO_DEVICE);
    CHECK_ERR(vtio_dma_mapping_error(r.dev2, a), -EFAULT);
    pthread_t t;
    struct other_thread ot = { .dev = r.dev };
    CHECK_EQ(pthread_create(&t, NULL, fail_on_other_thread, &ot), 0);
    pthread_join(t, NULL);
    CHECK_ERR(ot.err, -EINVAL);
    CHECK_ERR(vtio_dma_mapping_error(r.dev, VTIO_DMA_MAPPING_ERROR), -EIO);
    CHECK_ERR(vtio_dma_mapping_error(r.dev2, VTIO_DMA_MAPPING_ERROR), -EFAULT);
    /* A 64-bit device needs no pool; a good address is never an error. */
    CHECK_OK(vtio_dma_set_mask(r.dev, VTIO_DMA_BIT_MASK(64)));
    a = vtio_dma_map_page(r.dev, high, 64, VTIO_DMA_TO_DEVICE);
    CHECK_EQ(a, high);
    CHECK_EQ(vtio_dma_mapping_error(r.dev, a), 0);
    vtio_dma_unmap_page(r.dev, a, 64, VTIO_DMA_TO_DEVICE);
    rig_down(&r);

    /* A full pool: -ENOMEM, and room again once a mapping goes. */
    o.swiotlb_bytes = 1 * VTIO_MiB;
    rig_up(&r, RIG_NO_IOMMU, RAM, &o);
    CHECK_EQ(rig_stats(&r).swiotlb_total, 1 * VTIO_MiB);
    uint64_t big = rig_pages(&r, 8, 0);          /* 1 MiB above 4 GiB */
    CHECK_GE(big, RIG_4G);
    vtio_dma_addr_t held[4];
    for (int i = 0; i < 4; i++) {
        held[i] = vtio_dma_map_page(r.dev, big + i * VTIO_SWIOTLB_MAX_MAP,
                                    VTIO_SWIOTLB_MAX_MAP, VTIO_DMA_TO_DEVICE);
        CHECK_EQ(vtio_dma_mapping_error(r.dev, held[i]), 0);
    }
    a = vtio_dma_map_page(r.dev, big, 4096, VTIO_DMA_TO_DEVICE);
    CHECK_ERR(vtio_dma_mapping_error(r.dev, a), -ENOMEM);
    vtio_dma_unmap_page(r.dev, held[3], VTIO_SWIOTLB_MAX_MAP, VTIO_DMA_TO_DEVICE);
    a = vtio_dma_map_page(r.dev, big, 4096, VTIO_DMA_TO_DEVICE);
    CHECK_EQ(vtio_dma_mapping_error(r.dev, a), 0);
    vtio_dma_unmap_page(r.dev, a, 4096, VTIO_DMA_TO_DEVICE);
    for (int i = 0; i < 3; i++)
        vtio_dma_unmap_page(r.dev, held[i], VTIO_SWIOTLB_MAX_MAP, VTIO_DMA_TO_DEVICE);
    struct vtio_dma_stats st = rig_stats(&r);
    CHECK_EQ(st.swiotlb_used, 0);
    CHECK_EQ(st.bounced_maps, 5);
    CHECK_EQ(st.map_errors, 1);
    rig_down(&r);
}

/* ---- debugging hooks */

struct reports {
    unsigned n;
    enum vtio_dma_debug_kind last;
    char site[128];
};

static void on_report(void *opaque, const struct vtio_dma_debug_report *rep)
{
    struct reports *rs = opaque;
    rs->n++;
    rs->last = rep->kind;
    snprintf(rs->site, sizeof(rs->site), "%s", rep->site ? rep->site : "");
}

static void t_debug_hooks(void)
{
    struct rig r;
    struct vtio_host_options o = { .dma_debug = true };
    rig_up(&r, RIG_STRICT, RAM, &o);
    struct reports rs = { 0 };
    vtio_dma_debug_set_handler(r.h, on_report, &rs);
    uint64_t pa = rig_pages(&r, 0, 0);
    vtio_dma_addr_t a = vtio_dma_map_page(r.dev, pa, 4096, VTIO_DMA_TO_DEVICE);
    CHECK_EQ(vtio_dma_mapping_error(r.dev, a), 0);
    vtio_dma_addr_t b = vtio_dma_map_page(r.dev, pa, 512, VTIO_DMA_FROM_DEVICE);
    CHECK_EQ(vtio_dma_mapping_error(r.dev, b), 0);
    vtio_dma_unmap_page(r.dev, a, 4096, VTIO_DMA_TO_DEVICE);
    CHECK_EQ(rs.n, 0);
    vtio_dma_unmap_page(r.dev, a, 4096, VTIO_DMA_TO_DEVICE);    /* double */
    CHECK_EQ(rs.n, 1);
    CHECK_EQ(rs.last, VTIO_DMA_DEBUG_DOUBLE_UNMAP);
    CHECK(strstr(rs.site, "test_dma_api.c") != NULL);
    CHECK_EQ(vtio_dma_debug_check_leaks(r.dev), 1);            /* b */
    CHECK_EQ(rs.last, VTIO_DMA_DEBUG_LEAK);
    CHECK_GE(rig_stats(&r).debug_errors, 2);
    vtio_dma_unmap_page(r.dev, b, 512, VTIO_DMA_FROM_DEVICE);
    CHECK_EQ(vtio_dma_debug_check_leaks(r.dev), 0);
    rig_down(&r);
}

static const struct vtio_test tests[] = {
    { "arguments", "every call refuses bad arguments with the documented errno in every mode, "
      "and the calls that return nothing shrug them off", t_arguments },
    { "owned_elsewhere", "a device attached to an unmanaged or blocked domain cannot be "
      "mapped (-ENODEV) until it is given back", t_owned_elsewhere },
    { "directions", "the device reads TO_DEVICE, writes FROM_DEVICE, both BIDIRECTIONAL, and "
      "the VT-d unit refuses the rest; unmapped addresses fault", t_directions },
    { "dma32", "a 32-bit device reaches a buffer above 4 GiB (IOVA below 4 GiB or a bounce) "
      "with the right data both ways, through syncs and unmap", t_dma32 },
    { "forcedac", "64-bit devices get IOVAs below 4 GiB first unless iommu.forcedac",
      t_forcedac },
    { "identity", "in passthrough the DMA address is the physical address", t_identity },
    { "untrusted", "an untrusted device's sub-page buffer is bounced into a page that holds "
      "nothing else, and it cannot write past it", t_untrusted },
    { "map_sg", "map_sg makes one IOVA range, merges what meets on page boundaries within "
      "max_seg_size and the boundary, and direct never merges", t_map_sg },
    { "coherent", "coherent memory is zeroed, below the coherent mask, and shared live by "
      "CPU and device", t_coherent },
    { "mapping_error", "mapping_error says why this thread's last map on this device failed: "
      "-EIO unreachable even by bouncing, -ENOMEM pool full, -EFAULT, -EINVAL", t_mapping_error },
    { "debug_hooks", "with dma_debug a double unmap is reported with its site and a live "
      "mapping is a leak", t_debug_hooks },
};

VTIO_TEST_MAIN(tests)
