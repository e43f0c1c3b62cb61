/*
 * VFIO's type1 IOMMU backend (src/host/vfio/type1.c), driven directly
 * through vfio_iommu_type1_ops on a booted host with the VT-d unit: a
 * process maps its memory, the DMA engine functions' IOMMU groups (claimed
 * for DMA, as VFIO does) are attached, and what a device can reach is
 * checked on the hardware, through the unit (test_dma_fixture.h).  Errors
 * and their errnos are Linux's vfio_iommu_type1.c's.
 */
#include "host/test_dma_fixture.h"

#include <vtio/process.h>
#include <vtio/vfio.h>

#include "host/proc/proc_priv.h"
#include "host/vfio/vfio_priv.h"

#include <stdlib.h>

#define RAM      (512 * VTIO_MiB)
#define IOVA     0x100000ull       /* where the tests map */
#define MSI_BASE 0xFEE00000ull
#define MSI_LAST 0xFEEFFFFFull

static const struct vfio_iommu_backend_ops *const ops = &vfio_iommu_type1_ops;

/* A host, a process, a container of `type` with dev's group attached. */
struct t1 {
    struct rig r;
    struct vtio_process *p;
    struct vtio_iommu_group *g, *g2;
    void *c;
    bool g_in, g2_in;
};

static void claim(struct t1 *t, struct vtio_iommu_group *g)
{
    CHECK(g != NULL);
    CHECK_OK(vtio_iommu_group_claim_dma_owner(g, t));
}

static void attach(struct t1 *t, struct vtio_iommu_group *g)
{
    CHECK_OK(ops->attach_group(t->c, g));
    if (g == t->g)
        t->g_in = true;
    else
        t->g2_in = true;
}

static void detach(struct t1 *t, struct vtio_iommu_group *g)
{
    ops->detach_group(t->c, g);
    if (g == t->g)
        t->g_in = false;
    else
        t->g2_in = false;
}

/* Up in `mode` (the groups' default domains) without attaching anything. */
static void up_mode(struct t1 *t, enum rig_mode mode, unsigned long type)
{
    memset(t, 0, sizeof(*t));
    rig_up(&t->r, mode, RAM, NULL);
    CHECK_OK(vtio_process_create(t->r.h, "type1", &t->p));
    t->g = vtio_iommu_group_get(t->r.dev);
    t->g2 = vtio_iommu_group_get(t->r.dev2);
    claim(t, t->g);
    claim(t, t->g2);
    CHECK_OK(ops->open(t->r.h, t->p, type, &t->c));
}

static void up_empty(struct t1 *t, unsigned long type)
{
    up_mode(t, RIG_STRICT, type);
}

static void up(struct t1 *t, unsigned long type)
{
    up_empty(t, type);
    attach(t, t->g);
}

/* The core's order: groups leave, then the backend is released. */
static void down(struct t1 *t)
{
    if (t->g_in)
        detach(t, t->g);
    if (t->g2_in)
        detach(t, t->g2);
    ops->release(t->c);
    CHECK_OK(vtio_iommu_group_release_dma_owner(t->g, t));
    CHECK_OK(vtio_iommu_group_release_dma_owner(t->g2, t));
    vtio_process_destroy(t->p);
    rig_down(&t->r);
}

static void *mem(struct t1 *t, uint64_t size, unsigned flags)
{
    void *va = NULL;
    CHECK_OK(vtio_process_mmap(t->p, size, flags, &va));
    return va;
}

static long map(struct t1 *t, const void *va, uint64_t iova, uint64_t size, uint32_t flags)
{
    struct vfio_iommu_type1_dma_map m = { .argsz = sizeof(m), .flags = flags,
                                          .vaddr = (uint64_t)(uintptr_t)va, .iova = iova,
                                          .size = size };
    return ops->ioctl(t->c, VFIO_IOMMU_MAP_DMA, (unsigned long)(uintptr_t)&m);
}

#define RW (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)

/* UNMAP_DMA; *done (if not NULL) gets the size written back. */
static long unmap(struct t1 *t, uint64_t iova, uint64_t size, uint32_t flags, uint64_t *done)
{
    struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u), .flags = flags, .iova = iova,
                                            .size = size };
    long rc = ops->ioctl(t->c, VFIO_IOMMU_UNMAP_DMA, (unsigned long)(uintptr_t)&u);
    if (done)
        *done = u.size;
    return rc;
}

static uint64_t locked(struct t1 *t)
{
    struct vtio_process_stats st;
    vtio_process_get_stats(t->p, &st);
    return st.locked_bytes;
}

/* The GET_INFO answer with room for every capability. */
struct info_buf {
    struct vfio_iommu_type1_info info;
    uint8_t caps[512];
};

static void get_info(struct t1 *t, struct info_buf *b)
{
    memset(b, 0, sizeof(*b));
    b->info.argsz = sizeof(*b);
    CHECK_OK(ops->ioctl(t->c, VFIO_IOMMU_GET_INFO, (unsigned long)(uintptr_t)b));
}

/* The capability `id` in an answer; NULL if absent. */
static const struct vfio_info_cap_header *find_cap(const struct info_buf *b, uint16_t id)
{
    if (!(b->info.flags & VFIO_IOMMU_INFO_CAPS))
        return NULL;
    uint32_t off = b->info.cap_offset;
    for (unsigned hops = 0; off && hops < 16; hops++) {
        CHECK(off >= sizeof(b->info) && off + sizeof(struct vfio_info_cap_header) <= sizeof(*b));
        const struct vfio_info_cap_header *h = (const void *)((const uint8_t *)b + off);
        if (h->id == id)
            return h;
        off = h->next;
    }
    return NULL;
}

static uint32_t dma_avail(struct t1 *t)
{
    struct info_buf b;
    get_info(t, &b);
    const struct vfio_iommu_type1_info_dma_avail *a =
        (const void *)find_cap(&b, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);
    CHECK(a != NULL);
    return a->avail;
}

/* The device (dev, or dev2) at IOVA: 0, or -EFAULT refused by the unit. */
static int dev_read(struct t1 *t, struct vtio_device *dev, uint64_t iova, void *buf,
                    size_t len)
{
    return rig_dev_access(&t->r, dev, iova, buf, len, false, NULL);
}

static int dev_write(struct t1 *t, struct vtio_device *dev, uint64_t iova, const void *buf,
                     size_t len)
{
    return rig_dev_access(&t->r, dev, iova, (void *)buf, len, true, NULL);
}

/* ---- the backend as a whole */

static void t_extensions(void)
{
    CHECK_EQ(ops->check_extension(NULL, VFIO_TYPE1_IOMMU), 1);
    CHECK_EQ(ops->check_extension(NULL, VFIO_TYPE1v2_IOMMU), 1);
    CHECK_EQ(ops->check_extension(NULL, VFIO_UNMAP_ALL), 1);
    CHECK_EQ(ops->check_extension(NULL, VFIO_UPDATE_VADDR), 0);
    CHECK_EQ(ops->check_extension(NULL, VFIO_DMA_CC_IOMMU), 0);
    CHECK_EQ(ops->check_extension(NULL, VFIO_SPAPR_TCE_IOMMU), 0);
    CHECK_EQ(ops->check_extension(NULL, VFIO_NOIOMMU_IOMMU), 0);

    struct t1 t;
    up(&t, VFIO_TYPE1v2_IOMMU);
    void *c = NULL;
    CHECK_ERR(ops->open(t.r.h, t.p, VFIO_SPAPR_TCE_IOMMU, &c), -EINVAL);
    CHECK_ERR(ops->open(t.r.h, t.p, VFIO_NOIOMMU_IOMMU, &c), -EINVAL);
    CHECK_ERR(ops->open(t.r.h, NULL, VFIO_TYPE1v2_IOMMU, &c), -EINVAL);
    CHECK_EQ(ops->check_extension(t.c, VFIO_TYPE1v2_IOMMU), 1);
    /* VT-d enforces coherency only with Snoop Control, which the unit lacks */
    CHECK_EQ(ops->check_extension(t.c, VFIO_DMA_CC_IOMMU), 0);
    CHECK_ERR(ops->ioctl(t.c, VFIO_IOMMU_ENABLE, 0), -ENOTTY);
    CHECK_ERR(ops->ioctl(t.c, VFIO_DEVICE_GET_INFO, 0), -ENOTTY);
    CHECK_ERR(ops->attach_group(t.c, t.g), -EINVAL);     /* already in */
    down(&t);
}

static void t_get_info(void)
{
    struct t1 t;
    up(&t, VFIO_TYPE1v2_IOMMU);
    struct info_buf b;
    get_info(&t, &b);
    CHECK_EQ(b.info.flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
    CHECK(b.info.iova_pgsizes & VTIO_PAGE_SIZE);
    CHECK(b.info.iova_pgsizes & (2 * VTIO_MiB));
    CHECK_EQ(b.info.iova_pgsizes & (VTIO_PAGE_SIZE - 1), 0);
    CHECK_EQ(b.info.cap_offset, sizeof(b.info));
    CHECK_LE(b.info.argsz, sizeof(b));

    uint64_t aperture_end, pgsizes;
    vtio_iommu_domain_geometry(vtio_iommu_group_domain(t.g), &aperture_end, &pgsizes);
    CHECK_EQ(b.info.iova_pgsizes, pgsizes);
    const struct vfio_iommu_type1_info_cap_iova_range *range =
        (const void *)find_cap(&b, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
    CHECK(range != NULL);
    CHECK_EQ(range->header.version, 1);
    CHECK_EQ(range->nr_iovas, 2);      /* the MSI window cut out of the aperture */
    CHECK_EQ(range->iova_ranges[0].start, 0);
    CHECK_EQ(range->iova_ranges[0].end, MSI_BASE - 1);
    CHECK_EQ(range->iova_ranges[1].start, MSI_LAST + 1);
    CHECK_EQ(range->iova_ranges[1].end, aperture_end);
    const struct vfio_iommu_type1_info_cap_migration *mig =
        (const void *)find_cap(&b, VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION);
    CHECK(mig != NULL);
    CHECK_EQ(mig->flags, 0);
    CHECK_EQ(mig->pgsize_bitmap, VTIO_PAGE_SIZE);
    CHECK_EQ(mig->max_dirty_bitmap_size, 256 * VTIO_MiB);   /* INT_MAX bits */
    CHECK_EQ(dma_avail(&t), 65535);

    /* too small for the chain: the needed size, cap_offset 0, no error */
    struct info_buf small;
    memset(&small, 0xAA, sizeof(small));
    small.info.argsz = sizeof(small.info);
    CHECK_OK(ops->ioctl(t.c, VFIO_IOMMU_GET_INFO, (unsigned long)(uintptr_t)&small));
    uint32_t needed = small.info.argsz;
    CHECK_GT(needed, sizeof(small.info));
    CHECK_EQ(small.info.cap_offset, 0);
    CHECK_EQ(small.info.flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
    CHECK_EQ(small.caps[0], 0xAA);
    /* exactly the needed size: the whole chain, nothing past it */
    memset(&small, 0xAA, sizeof(small));
    small.info.argsz = needed;
    CHECK_OK(ops->ioctl(t.c, VFIO_IOMMU_GET_INFO, (unsigned long)(uintptr_t)&small));
    CHECK_EQ(small.info.argsz, needed);
    CHECK_EQ(small.info.cap_offset, sizeof(small.info));
    CHECK_MEM_EQ(&small.info.flags, &b.info.flags, needed - sizeof(uint32_t));
    CHECK_EQ(((uint8_t *)&small)[needed], 0xAA);
    /* an old caller's 16 bytes: nothing written past them */
    memset(&small, 0xAA, sizeof(small));
    small.info.argsz = 16;
    CHECK_OK(ops->ioctl(t.c, VFIO_IOMMU_GET_INFO, (unsigned long)(uintptr_t)&small));
    CHECK_EQ(small.info.argsz, needed);
    CHECK_EQ(small.info.iova_pgsizes, pgsizes);
    CHECK_EQ(small.info.cap_offset, 0xAAAAAAAAu);
    /* below the minimum */
    small.info.argsz = 15;
    CHECK_ERR(ops->ioctl(t.c, VFIO_IOMMU_GET_INFO, (unsigned long)(uintptr_t)&small), -EINVAL);
    CHECK_ERR(ops->ioctl(t.c, VFIO_IOMMU_GET_INFO, 0), -EFAULT);
    down(&t);
}

/* ---- MAP_DMA */

static void t_map_errors(void)
{
    struct t1 t;
    up(&t, VFIO_TYPE1v2_IOMMU);
    uint8_t *va = mem(&t, 64 * VTIO_KiB, 0);
    uint64_t aperture_end, pgsizes;
    vtio_iommu_domain_geometry(vtio_iommu_group_domain(t.g), &aperture_end, &pgsizes);

    struct vfio_iommu_type1_dma_map m = { .argsz = sizeof(m) - 1, .flags = RW,
                                          .vaddr = (uintptr_t)va, .iova = IOVA, .size = 4096 };
    CHECK_ERR(ops->ioctl(t.c, VFIO_IOMMU_MAP_DMA, (unsigned long)(uintptr_t)&m), -EINVAL);
    CHECK_ERR(map(&t, va, IOVA, 4096, RW | VFIO_DMA_MAP_FLAG_VADDR), -EINVAL);
    CHECK_ERR(map(&t, va, IOVA, 4096, 1u << 7), -EINVAL);
    CHECK_ERR(map(&t, va, IOVA, 4096, 0), -EINVAL);                 /* neither READ nor WRITE */
    CHECK_ERR(map(&t, va, IOVA, 0, RW), -EINVAL);
    CHECK_ERR(map(&t, va, IOVA + 512, 4096, RW), -EINVAL);
    CHECK_ERR(map(&t, va + 512, IOVA, 4096, RW), -EINVAL);
    CHECK_ERR(map(&t, va, IOVA, 4096 + 512, RW), -EINVAL);
    CHECK_ERR(map(&t, va, 0xFFFFFFFFFFFFF000ull, 8192, RW), -EINVAL);   /* wraps */
    CHECK_ERR(map(&t, va, MSI_BASE, 4096, RW), -EINVAL);
    CHECK_ERR(map(&t, va, MSI_BASE - 4096, 8192, RW), -EINVAL);
    CHECK_ERR(map(&t, va, aperture_end + 1, 4096, RW), -EINVAL);
    CHECK_ERR(map(&t, (void *)(uintptr_t)0x1000, IOVA, 4096, RW), -EFAULT);
    CHECK_ERR(ops->ioctl(t.c, VFIO_IOMMU_MAP_DMA, 0), -EFAULT);
    CHECK_EQ(locked(&t), 0);
    CHECK_EQ(dma_avail(&t), 65535);

    CHECK_OK(map(&t, va, IOVA, 16 * VTIO_KiB, RW));
    CHECK_ERR(map(&t, va, IOVA, 16 * VTIO_KiB, RW), -EEXIST);
    CHECK_ERR(map(&t, va, IOVA + 12 * VTIO_KiB, 8192, RW), -EEXIST);
    CHECK_ERR(map(&t, va, IOVA - 4096, 8192, RW), -EEXIST);
    CHECK_ERR(map(&t, va, IOVA - 4096, 64 * VTIO_KiB, RW), -EEXIST);
    CHECK_OK(map(&t, va, IOVA - 4096, 4096, RW));                       /* touching is fine */
    CHECK_OK(map(&t, va, IOVA + 16 * VTIO_KiB, 4096, RW));
    CHECK_EQ(dma_avail(&t), 65532);
    /* a fault partway: the first pages were pinned and mapped, then undone */
    uint8_t *two = mem(&t, 8192, 0);
    CHECK_OK(vtio_process_munmap(t.p, two + 4096, 4096));
    uint64_t before = locked(&t);
    CHECK_ERR(map(&t, two, 0x40000000, 8192, RW), -EFAULT);
    CHECK_EQ(locked(&t), before);
    uint8_t byte;
    CHECK_ERR(dev_read(&t, t.r.dev, 0x40000000, &byte, 1), -EFAULT);
    CHECK_EQ(dma_avail(&t), 65532);
    down(&t);
}

static void t_map_reaches_memory(void)
{
    /* whatever the groups' default domains were */
    for (enum rig_mode mode = RIG_STRICT; mode <= RIG_PASSTHROUGH; mode++) {
        struct t1 t;
        up_mode(&t, mode, VFIO_TYPE1v2_IOMMU);
        attach(&t, t.g);
        uint8_t *va = mem(&t, 64 * VTIO_KiB, 0);
        CHECK_OK(map(&t, va, IOVA, 64 * VTIO_KiB, RW));

        /* the program writes, the device reads the same bytes at the IOVA */
        vtio_test_fill(va, 64 * VTIO_KiB, 1);
        uint8_t buf[64 * 1024];
        CHECK_OK(dev_read(&t, t.r.dev, IOVA, buf, sizeof(buf)));
        CHECK_MEM_EQ(buf, va, sizeof(buf));
        /* the device writes, the program sees it */
        vtio_test_fill(buf, 8192, 2);
        CHECK_OK(dev_write(&t, t.r.dev, IOVA + 0x3000, buf, 8192));
        CHECK_MEM_EQ(va + 0x3000, buf, 8192);
        /* nothing around the mapping */
        CHECK_ERR(dev_read(&t, t.r.dev, IOVA - 4096, buf, 1), -EFAULT);
        CHECK_ERR(dev_read(&t, t.r.dev, IOVA + 64 * VTIO_KiB, buf, 1), -EFAULT);
        /* the other function's group is not in the container */
        CHECK_ERR(dev_read(&t, t.r.dev2, IOVA, buf, 1), -EFAULT);
        down(&t);
    }
}

static void t_map_huge(void)
{
    struct t1 t;
    up(&t, VFIO_TYPE1v2_IOMMU);
    uint8_t *va = mem(&t, 8 * VTIO_MiB, VTIO_PROCESS_MAP_HUGE);
    CHECK_OK(map(&t, va, 64 * VTIO_MiB, 8 * VTIO_MiB, RW));
    CHECK_EQ(locked(&t), 8 * VTIO_MiB);
    uint64_t pa, va_pa;
    CHECK_OK(vtio_iommu_iova_to_phys(vtio_iommu_group_domain(t.g), 64 * VTIO_MiB + 0x345000,
                                     &pa));
    CHECK_OK(vtio_process_virt_to_phys(t.p, va + 0x345000, &va_pa));
    CHECK_EQ(pa, va_pa);
    /* the unit maps it in 2 MiB pages */
    struct vtio_vtd_req req = { .sid = vtio_device_rid(t.r.dev), .addr = 64 * VTIO_MiB };
    struct vtio_vtd_resp resp;
    CHECK_OK(vtio_vtd_translate(t.r.m->vtd, &req, &resp));
    CHECK_GE(resp.page_size, 2 * VTIO_MiB);
    uint64_t done;
    CHECK_OK(unmap(&t, 64 * VTIO_MiB, 8 * VTIO_MiB, 0, &done));
    CHECK_EQ(done, 8 * VTIO_MiB);
    CHECK_EQ(locked(&t), 0);
    down(&t);
}

/* n pages of the process's memory, each its own physical run (every
 * other page of the allocator taken while they are mapped). */
static uint8_t *scattered_mem(struct t1 *t, unsigned n)
{
    uint64_t *taken = malloc(2 * n * sizeof(*taken));
    CHECK(taken != NULL);
    for (unsigned i = 0; i < 2 * n; i++)
        CHECK_OK(vtio_page_alloc(t->r.h->pages, 0, 0, &taken[i]));
    for (unsigned i = 1; i < 2 * n; i += 2)
        CHECK_OK(vtio_page_free(t->r.h->pages, taken[i], 0));
    uint8_t *va = mem(t, (uint64_t)n * VTIO_PAGE_SIZE, 0);
    for (unsigned i = 0; i < 2 * n; i += 2)
        CHECK_OK(vtio_page_free(t->r.h->pages, taken[i], 0));
    free(taken);
    unsigned runs = 0;
    uint64_t prev = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t pa;
        CHECK_OK(vtio_process_virt_to_phys(t->p, va + i * VTIO_PAGE_SIZE, &pa));
        runs += i == 0 || pa != prev + VTIO_PAGE_SIZE;
        prev = pa;
    }
    CHECK_EQ(runs, n);
    return va;
}

static void t_map_scattered(void)
{
    enum { N = 100 };                  /* runs: several pinning batches */
    const uint64_t size = N * VTIO_PAGE_SIZE;
    struct t1 t;
    up(&t, VFIO_TYPE1v2_IOMMU);
    uint8_t *va = scattered_mem(&t, N);
    CHECK_OK(map(&t, va, IOVA, size, RW));
    CHECK_EQ(locked(&t), size);
    /* each page at its IOVA, in order */
    vtio_test_fill(va, size, 3);
    static uint8_t buf[N * 4096];
    CHECK_OK(dev_read(&t, t.r.dev, IOVA, buf, size));
    CHECK_MEM_EQ(buf, va, size);
    uint64_t done;
    CHECK_OK(unmap(&t, IOVA, size, 0, &done));
    CHECK_EQ(done, size);
    CHECK_EQ(locked(&t), 0);
    CHECK_ERR(dev_read(&t, t.r.dev, IOVA, buf, 1), -EFAULT);

    /* the limit met part way: -ENOMEM, nothing pinned or mapped */
    CHECK_OK(vtio_process_set_memlock_limit(t.p, (N / 2 + 3) * VTIO_PAGE_SIZE));
    CHECK_ERR(map(&t, va, IOVA, size, RW), -ENOMEM);
    CHECK_EQ(locked(&t), 0);
    CHECK_ERR(dev_read(&t, t.r.dev, IOVA, buf, 1), -EFAULT);
    CHECK_EQ(dma_avail(&t), 65535);
    CHECK_OK(vtio_process_set_memlock_limit(t.p, VTIO_PROCESS_MEMLOCK_INFINITY));
    /* a hole part way: -EFAULT, nothing pinned or mapped */
    CHECK_OK(vtio_process_munmap(t.p, va + (N / 2 + 3) * VTIO_PAGE_SIZE, VTIO_PAGE_SIZE));
    CHECK_ERR(map(&t, va, IOVA, size, RW), -EFAULT);
    CHECK_EQ(locked(&t), 0);
    CHECK_ERR(dev_read(&t, t.r.dev, IOVA, buf, 1), -EFAULT);
    down(&t);
}

static void t_permissions(void)
{
    struct t1 t;
    up(&t, VFIO_TYPE1v2_IOMMU);
    uint8_t *va = mem(&t, 8192, 0);
    CHECK_OK(map(&t, va, IOVA, 4096, VFIO_DMA_MAP_FLAG_READ));
    CHECK_OK(map(&t, va + 4096, IOVA + 4096, 4096, VFIO_DMA_MAP_FLAG_WRITE));
    va[0] = 0x5a;
    uint8_t byte = 0;
    CHECK_OK(dev_read(&t, t.r.dev, IOVA, &byte, 1));
    CHECK_EQ(byte, 0x5a);
    CHECK_ERR(dev_write(&t, t.r.dev, IOVA, &byte, 1), -EFAULT);   /* read-only: no writes */
    CHECK_EQ(va[0], 0x5a);
    byte = 0x77;
    CHECK_OK(dev_write(&t, t.r.dev, IOVA + 4096, &byte, 1));
    CHECK_EQ(va[4096], 0x77);
    CHECK_ERR(dev_read(&t, t.r.dev, IOVA + 4096, &byte, 1), -EFAULT);
    down(&t);
}

/* ---- UNMAP_DMA */

static void t_unmap(void)
{
    struct t1 t;
    up(&t, VFIO_TYPE1v2_IOMMU);
    uint8_t *va = mem(&t, 64 * VTIO_KiB, 0);
    const uint64_t A = IOVA, B = IOVA + 16 * VTIO_KiB, C = IOVA + 48 * VTIO_KiB;
    CHECK_OK(map(&t, va, A, 16 * VTIO_KiB, RW));
    CHECK_OK(map(&t, va + 16 * VTIO_KiB, B, 32 * VTIO_KiB, RW));
    CHECK_OK(map(&t, va + 48 * VTIO_KiB, C, 16 * VTIO_KiB, RW));
    CHECK_EQ(locked(&t), 64 * VTIO_KiB);

    uint64_t done = 7;
    struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u) - 1, .iova = A, .size = 4096 };
    CHECK_ERR(ops->ioctl(t.c, VFIO_IOMMU_UNMAP_DMA, (unsigned long)(uintptr_t)&u), -EINVAL);
    CHECK_ERR(unmap(&t, A, 4096, VFIO_DMA_UNMAP_FLAG_VADDR, NULL), -EINVAL);
    CHECK_ERR(unmap(&t, A, 4096, 1u << 5, NULL), -EINVAL);
    CHECK_ERR(unmap(&t, A + 512, 4096, 0, NULL), -EINVAL);
    CHECK_ERR(unmap(&t, A, 0, 0, NULL), -EINVAL);
    CHECK_ERR(unmap(&t, A, 4095, 0, NULL), -EINVAL);
    CHECK_ERR(unmap(&t, 0xFFFFFFFFFFFFF000ull, 8192, 0, NULL), -EINVAL);
    /* v2: an unmap may not cut a mapping, at either end */
    CHECK_ERR(unmap(&t, A, 4096, 0, &done), -EINVAL);
    CHECK_EQ(done, 4096);                        /* left alone on error */
    CHECK_ERR(unmap(&t, A, 24 * VTIO_KiB, 0, NULL), -EINVAL);
    CHECK_ERR(unmap(&t, B + 4096, 32 * VTIO_KiB, 0, NULL), -EINVAL);
    CHECK_ERR(unmap(&t, A - 4096, 8192, 0, NULL), -EINVAL);
    CHECK_EQ(locked(&t), 64 * VTIO_KiB);
    uint8_t byte;
    CHECK_OK(dev_read(&t, t.r.dev, A, &byte, 1));

    /* nothing in the range: success, size 0 */
    CHECK_OK(unmap(&t, 0x40000000, 4096, 0, &done));
    CHECK_EQ(done, 0);
    /* several whole mappings in one call */
    CHECK_OK(unmap(&t, A - 4096, 48 * VTIO_KiB + 4096, 0, &done));
    CHECK_EQ(done, 48 * VTIO_KiB);
    CHECK_ERR(dev_read(&t, t.r.dev, A, &byte, 1), -EFAULT);
    CHECK_ERR(dev_read(&t, t.r.dev, B + 8192, &byte, 1), -EFAULT);
    CHECK_OK(dev_read(&t, t.r.dev, C, &byte, 1));
    CHECK_EQ(locked(&t), 16 * VTIO_KiB);
    CHECK_EQ(dma_avail(&t), 65534);

    /* ALL: iova and size must be 0; not with a bitmap */
    CHECK_ERR(unmap(&t, C, 0, VFIO_DMA_UNMAP_FLAG_ALL, NULL), -EINVAL);
    CHECK_ERR(unmap(&t, 0, 4096, VFIO_DMA_UNMAP_FLAG_ALL, NULL), -EINVAL);
    CHECK_ERR(unmap(&t, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
                    NULL), -EINVAL);
    CHECK_OK(map(&t, va, 0xFFFFF000ull, 4096, RW));     /* another, high up */
    CHECK_OK(unmap(&t, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL, &done));
    CHECK_EQ(done, 16 * VTIO_KiB + 4096);
    CHECK_ERR(dev_read(&t, t.r.dev, C, &byte, 1), -EFAULT);
    CHECK_EQ(locked(&t), 0);
    CHECK_EQ(dma_avail(&t), 65535);
    down(&t);
}

static void t_unmap_v1(void)
{
    struct t1 t;
    up(&t, VFIO_TYPE1_IOMMU);
    uint8_t *va = mem(&t, 64 * VTIO_KiB, 0);
    const uint64_t A = IOVA, B = IOVA + 32 * VTIO_KiB;
    CHECK_OK(map(&t, va, A, 32 * VTIO_KiB, RW));
    CHECK_OK(map(&t, va + 32 * VTIO_KiB, B, 32 * VTIO_KiB, RW));
    /* starting inside A: nothing (not even B), and no error */
    uint64_t done = 7;
    CHECK_OK(unmap(&t, A + 4096, 64 * VTIO_KiB, 0, &done));
    CHECK_EQ(done, 0);
    /* covering A's first page: all of A */
    CHECK_OK(unmap(&t, A, 4096, 0, &done));
    CHECK_EQ(done, 32 * VTIO_KiB);
    uint8_t byte;
    CHECK_ERR(dev_read(&t, t.r.dev, A + 8192, &byte, 1), -EFAULT);
    CHECK_OK(dev_read(&t, t.r.dev, B, &byte, 1));
    CHECK_EQ(locked(&t), 32 * VTIO_KiB);
    /* dirty tracking is v2's */
    struct vfio_iommu_type1_dirty_bitmap d = { .argsz = sizeof(d),
                                               .flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_START };
    CHECK_ERR(ops->ioctl(t.c, VFIO_IOMMU_DIRTY_PAGES, (unsigned long)(uintptr_t)&d), -EACCES);
    down(&t);
}

/* ---- limits and accounting */

static void t_dma_avail(void)
{
    struct t1 t;
    up(&t, VFIO_TYPE1v2_IOMMU);
    uint8_t *va = mem(&t, 4096, 0);
    /* one page at 65535 IOVAs: the container's limit, the page locked once */
    for (uint64_t i = 0; i < 65535; i++)
        CHECK_OK(map(&t, va, i * 4096, 4096, VFIO_DMA_MAP_FLAG_READ));
    CHECK_EQ(dma_avail(&t), 0);
    CHECK_ERR(map(&t, va, 65535 * 4096ull, 4096, VFIO_DMA_MAP_FLAG_READ), -ENOSPC);
    CHECK_EQ(locked(&t), 4096);
    va[0] = 0x42;
    uint8_t byte = 0;
    CHECK_OK(dev_read(&t, t.r.dev, 65534 * 4096ull, &byte, 1));
    CHECK_EQ(byte, 0x42);
    CHECK_OK(unmap(&t, 4096, 4096, 0, NULL));
    CHECK_EQ(dma_avail(&t), 1);
    CHECK_OK(map(&t, va, 65535 * 4096ull, 4096, VFIO_DMA_MAP_FLAG_READ));
    uint64_t done;
    CHECK_OK(unmap(&t, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL, &done));
    CHECK_EQ(done, 65535 * 4096ull);
    CHECK_EQ(dma_avail(&t), 65535);
    CHECK_EQ(locked(&t), 0);
    down(&t);
}

static void t_accounting(void)
{
    struct t1 t;
    up(&t, VFIO_TYPE1v2_IOMMU);
    uint8_t *va = mem(&t, 256 * VTIO_KiB, 0);
    CHECK_OK(map(&t, va, IOVA, 64 * VTIO_KiB, RW));
    CHECK_EQ(locked(&t), 64 * VTIO_KiB);
    /* the same pages at a second IOVA count once */
    CHECK_OK(map(&t, va, 0x40000000, 64 * VTIO_KiB, RW));
    CHECK_EQ(locked(&t), 64 * VTIO_KiB);
    CHECK_OK(unmap(&t, IOVA, 64 * VTIO_KiB, 0, NULL));
    CHECK_EQ(locked(&t), 64 * VTIO_KiB);
    CHECK_OK(unmap(&t, 0x40000000, 64 * VTIO_KiB, 0, NULL));
    CHECK_EQ(locked(&t), 0);

    /* over RLIMIT_MEMLOCK: -ENOMEM, nothing pinned or mapped */
    CHECK_OK(vtio_process_set_memlock_limit(t.p, 128 * VTIO_KiB));
    CHECK_OK(map(&t, va, IOVA, 64 * VTIO_KiB, RW));
    CHECK_ERR(map(&t, va + 64 * VTIO_KiB, 0x40000000, 128 * VTIO_KiB, RW), -ENOMEM);
    CHECK_EQ(locked(&t), 64 * VTIO_KiB);
    uint8_t byte;
    CHECK_ERR(dev_read(&t, t.r.dev, 0x40000000, &byte, 1), -EFAULT);
    CHECK_EQ(dma_avail(&t), 65534);
    /* already-locked pages cost nothing more */
    CHECK_OK(map(&t, va, 0x40000000, 64 * VTIO_KiB, RW));
    /* CAP_IPC_LOCK: counted, never refused */
    vtio_process_set_cap_ipc_lock(t.p, true);
    CHECK_OK(map(&t, va + 64 * VTIO_KiB, 0x80000000, 192 * VTIO_KiB, RW));
    CHECK_EQ(locked(&t), 256 * VTIO_KiB);
    down(&t);
}

/* ---- dirty tracking */

static long dirty(struct t1 *t, uint32_t flags)
{
    struct vfio_iommu_type1_dirty_bitmap d = { .argsz = sizeof(d), .flags = flags };
    return ops->ioctl(t->c, VFIO_IOMMU_DIRTY_PAGES, (unsigned long)(uintptr_t)&d);
}

static long get_bitmap(struct t1 *t, uint64_t iova, uint64_t size, uint64_t pgsize,
                       uint64_t *bits, uint64_t bytes)
{
    struct {
        struct vfio_iommu_type1_dirty_bitmap d;
        struct vfio_iommu_type1_dirty_bitmap_get g;
    } a = { .d = { .argsz = sizeof(a), .flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP },
            .g = { .iova = iova, .size = size,
                   .bitmap = { .pgsize = pgsize, .size = bytes, .data = bits } } };
    return ops->ioctl(t->c, VFIO_IOMMU_DIRTY_PAGES, (unsigned long)(uintptr_t)&a);
}

static long unmap_bitmap(struct t1 *t, uint64_t iova, uint64_t size, uint64_t *bits,
                         uint64_t bytes, uint64_t *done)
{
    struct {
        struct vfio_iommu_type1_dma_unmap u;
        struct vfio_bitmap b;
    } a = { .u = { .argsz = sizeof(a), .flags = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
                   .iova = iova, .size = size },
            .b = { .pgsize = 4096, .size = bytes, .data = bits } };
    long rc = ops->ioctl(t->c, VFIO_IOMMU_UNMAP_DMA, (unsigned long)(uintptr_t)&a);
    *done = a.u.size;
    return rc;
}

/* Bits [from, to) of bits are set, and no other of the first n. */
static bool bits_exactly(const uint64_t *bits, unsigned n, unsigned from, unsigned to)
{
    for (unsigned i = 0; i < n; i++)
        if (!!(bits[i / 64] & (1ull << (i % 64))) != (i >= from && i < to))
            return false;
    return true;
}

static void t_dirty(void)
{
    struct t1 t;
    up(&t, VFIO_TYPE1v2_IOMMU);
    uint8_t *va = mem(&t, 512 * VTIO_KiB, 0);
    /* 5 pages at page 3 and 70 pages at page 100 of the range from IOVA */
    CHECK_OK(map(&t, va, IOVA + 3 * 4096, 5 * 4096, RW));
    CHECK_OK(map(&t, va + 5 * 4096, IOVA + 100 * 4096, 70 * 4096, RW));
    uint64_t bits[4] = { 0 };
    const uint64_t range = 256 * 4096;

    CHECK_ERR(dirty(&t, 0), -EINVAL);
    CHECK_ERR(dirty(&t, VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP),
              -EINVAL);
    CHECK_ERR(dirty(&t, 1u << 3), -EINVAL);
    CHECK_ERR(get_bitmap(&t, IOVA, range, 4096, bits, sizeof(bits)), -EINVAL);   /* not started */
    uint64_t done;
    CHECK_ERR(unmap_bitmap(&t, IOVA, range, bits, sizeof(bits), &done), -EINVAL);
    CHECK_OK(dirty(&t, VFIO_IOMMU_DIRTY_PAGES_FLAG_START));
    CHECK_OK(dirty(&t, VFIO_IOMMU_DIRTY_PAGES_FLAG_START));     /* again: no change */

    CHECK_ERR(get_bitmap(&t, IOVA, range, 8192, bits, sizeof(bits)), -EINVAL);
    CHECK_ERR(get_bitmap(&t, IOVA, range, 0, bits, sizeof(bits)), -EINVAL);
    CHECK_ERR(get_bitmap(&t, IOVA, range, 4096, bits, sizeof(bits) - 8), -EINVAL);
    CHECK_ERR(get_bitmap(&t, IOVA, range, 4096, NULL, sizeof(bits)), -EINVAL);
    CHECK_ERR(get_bitmap(&t, IOVA + 512, range, 4096, bits, sizeof(bits)), -EINVAL);
    CHECK_ERR(get_bitmap(&t, IOVA + 4 * 4096, 4096, 4096, bits, 8), -EINVAL);  /* cuts */
    CHECK_ERR(get_bitmap(&t, IOVA, 101 * 4096, 4096, bits, 8 * 2), -EINVAL);   /* cuts */
    CHECK(bits_exactly(bits, 256, 0, 0));

    /* every pinned page is dirty, and is again at the next report */
    for (int round = 0; round < 2; round++) {
        memset(bits, 0, sizeof(bits));
        CHECK_OK(get_bitmap(&t, IOVA, range, 4096, bits, sizeof(bits)));
        for (unsigned i = 0; i < 256; i++)
            CHECK_EQ(!!(bits[i / 64] & (1ull << (i % 64))),
                     (i >= 3 && i < 8) || (i >= 100 && i < 170));
    }
    /* a range of exactly the second mapping: bit 0 is its first page */
    memset(bits, 0, sizeof(bits));
    CHECK_OK(get_bitmap(&t, IOVA + 100 * 4096, 70 * 4096, 4096, bits, 16));
    CHECK(bits_exactly(bits, 128, 0, 70));
    /* bits are only set: what the caller had stays */
    bits[1] = 1ull << 63;
    CHECK_OK(get_bitmap(&t, IOVA + 100 * 4096, 70 * 4096, 4096, bits, 16));
    CHECK_EQ(bits[1], (1ull << 63) | ((1ull << 6) - 1));

    /* unmap with the bitmap: the mapping's pages, then it is gone */
    CHECK_ERR(unmap_bitmap(&t, IOVA + 3 * 4096, 4096, bits, 8, &done), -EINVAL);     /* cuts */
    CHECK_ERR(unmap_bitmap(&t, IOVA, range, bits, 8, &done), -EINVAL);              /* small */
    memset(bits, 0, sizeof(bits));
    CHECK_OK(unmap_bitmap(&t, IOVA, 64 * 4096, bits, 8, &done));
    CHECK_EQ(done, 5 * 4096);
    CHECK(bits_exactly(bits, 64, 3, 8));
    /* a new mapping while tracking is tracked */
    CHECK_OK(map(&t, va, IOVA + 200 * 4096, 2 * 4096, RW));
    memset(bits, 0, sizeof(bits));
    CHECK_OK(get_bitmap(&t, IOVA + 200 * 4096, 2 * 4096, 4096, bits, 8));
    CHECK(bits_exactly(bits, 64, 0, 2));

    CHECK_OK(dirty(&t, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP));
    CHECK_OK(dirty(&t, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP));
    CHECK_ERR(get_bitmap(&t, IOVA, range, 4096, bits, sizeof(bits)), -EINVAL);
    CHECK_ERR(unmap_bitmap(&t, IOVA, range, bits, sizeof(bits), &done), -EINVAL);
    down(&t);
}

/* ---- groups and domains */

static void t_groups(void)
{
    struct t1 t;
    up_empty(&t, VFIO_TYPE1v2_IOMMU);
    uint8_t *va = mem(&t, 64 * VTIO_KiB, 0);
    /* before any group: recorded, not pinned, anywhere */
    CHECK_OK(map(&t, va, IOVA, 64 * VTIO_KiB, RW));
    CHECK_EQ(locked(&t), 0);
    CHECK_OK(map(&t, va, MSI_BASE, 4096, RW));
    /* the group's MSI window holds a mapping: refused, nothing changed */
    CHECK_ERR(ops->attach_group(t.c, t.g), -EINVAL);
    CHECK_EQ(locked(&t), 0);
    uint8_t byte;
    CHECK_ERR(dev_read(&t, t.r.dev, IOVA, &byte, 1), -EFAULT);
    CHECK_OK(unmap(&t, MSI_BASE, 4096, 0, NULL));
    /* now it joins: the mapping is pinned and replayed */
    attach(&t, t.g);
    CHECK_EQ(locked(&t), 64 * VTIO_KiB);
    va[5] = 0x11;
    CHECK_OK(dev_read(&t, t.r.dev, IOVA + 5, &byte, 1));
    CHECK_EQ(byte, 0x11);
    /* the second function's group joins the same domain (same unit) */
    attach(&t, t.g2);
    CHECK(vtio_iommu_group_domain(t.g) == vtio_iommu_group_domain(t.g2));
    CHECK_OK(dev_read(&t, t.r.dev2, IOVA + 5, &byte, 1));
    CHECK_OK(map(&t, va, 0x40000000, 4096, RW));
    CHECK_OK(dev_read(&t, t.r.dev2, 0x40000000 + 5, &byte, 1));
    CHECK_EQ(locked(&t), 64 * VTIO_KiB);
    /* the first leaves: blocked; the mappings stay for the second */
    detach(&t, t.g);
    CHECK_ERR(dev_read(&t, t.r.dev, IOVA, &byte, 1), -EFAULT);
    CHECK_OK(dev_read(&t, t.r.dev2, IOVA, &byte, 1));
    CHECK_EQ(dma_avail(&t), 65533);
    /* the last leaves: every mapping goes (Linux) */
    detach(&t, t.g2);
    CHECK_EQ(locked(&t), 0);
    CHECK_EQ(dma_avail(&t), 65535);
    down(&t);
}

static void t_release(void)
{
    struct t1 t;
    up(&t, VFIO_TYPE1v2_IOMMU);
    attach(&t, t.g2);
    uint8_t *va = mem(&t, 4 * VTIO_MiB, 0);
    uint8_t *huge = mem(&t, 4 * VTIO_MiB, VTIO_PROCESS_MAP_HUGE);
    uint64_t free_before = vtio_page_alloc_free_bytes(t.r.h->pages);
    CHECK_OK(map(&t, va, IOVA, 4 * VTIO_MiB, RW));
    CHECK_OK(map(&t, huge, 1ull << 32, 4 * VTIO_MiB, RW));
    CHECK_OK(map(&t, va, 1ull << 40, 4 * VTIO_MiB, VFIO_DMA_MAP_FLAG_READ));
    CHECK_OK(dirty(&t, VFIO_IOMMU_DIRTY_PAGES_FLAG_START));
    CHECK_EQ(locked(&t), 8 * VTIO_MiB);
    CHECK_LT(vtio_page_alloc_free_bytes(t.r.h->pages), free_before);   /* page tables */
    /* the core takes the groups out, then releases: all unpinned */
    down(&t);
}

/* Release with mappings left: the process's locked memory and the page
 * allocator are as before the maps. */
static void t_release_accounts(void)
{
    struct t1 t;
    up_empty(&t, VFIO_TYPE1v2_IOMMU);
    uint8_t *va = mem(&t, 4 * VTIO_MiB, 0);
    uint64_t free_before = vtio_page_alloc_free_bytes(t.r.h->pages);
    attach(&t, t.g);
    CHECK_OK(map(&t, va, IOVA, 4 * VTIO_MiB, RW));
    CHECK_OK(map(&t, va, 1ull << 32, 2 * VTIO_MiB, RW));
    detach(&t, t.g);
    ops->release(t.c);
    CHECK_EQ(locked(&t), 0);
    CHECK_EQ(vtio_page_alloc_free_bytes(t.r.h->pages), free_before);
    /* and a container released with its group still attached (no core) */
    CHECK_OK(ops->open(t.r.h, t.p, VFIO_TYPE1v2_IOMMU, &t.c));
    CHECK_OK(ops->attach_group(t.c, t.g));
    CHECK_OK(map(&t, va, IOVA, 4 * VTIO_MiB, RW));
    ops->release(t.c);
    CHECK_EQ(locked(&t), 0);
    CHECK_EQ(vtio_page_alloc_free_bytes(t.r.h->pages), free_before);
    uint8_t byte;
    CHECK_ERR(dev_read(&t, t.r.dev, IOVA, &byte, 1), -EFAULT);
    CHECK_OK(ops->open(t.r.h, t.p, VFIO_TYPE1v2_IOMMU, &t.c));   /* for down() */
    down(&t);
}

/* ---- threads */

#define THREADS 4
#define ROUNDS  300

struct worker {
    struct t1 *t;
    uint8_t *va;
    unsigned id;
    long err;
};

static void *worker(void *arg)
{
    struct worker *w = arg;
    uint64_t base = 0x10000000ull * (w->id + 1);
    for (unsigned i = 0; i < ROUNDS && !w->err; i++) {
        uint64_t iova = base + (i % 8) * 0x100000, size = ((i % 4) + 1) * 4096;
        w->err = map(w->t, w->va, iova, size, RW);
        if (!w->err && i % 3 == 0) {
            struct info_buf b = { .info.argsz = sizeof(b) };
            w->err = w->t->c ? ops->ioctl(w->t->c, VFIO_IOMMU_GET_INFO,
                                          (unsigned long)(uintptr_t)&b) : 0;
        }
        uint64_t done = 0;
        if (!w->err)
            w->err = unmap(w->t, iova, size, 0, &done);
        if (!w->err && done != size)
            w->err = -1000;
    }
    return NULL;
}

static void t_threads(void)
{
    struct t1 t;
    up(&t, VFIO_TYPE1v2_IOMMU);
    uint8_t *va = mem(&t, 64 * VTIO_KiB, 0);
    pthread_t th[THREADS];
    struct worker w[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        w[i] = (struct worker){ .t = &t, .va = va + i * 16 * VTIO_KiB, .id = i };
        CHECK_EQ(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    }
    for (unsigned i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(w[i].err, 0);
    }
    CHECK_EQ(locked(&t), 0);
    CHECK_EQ(dma_avail(&t), 65535);
    down(&t);
}

static const struct vtio_test tests[] = {
    { "extensions", "CHECK_EXTENSION answers TYPE1, TYPE1v2, UNMAP_ALL yes, UPDATE_VADDR and "
      "DMA_CC_IOMMU (no snoop control) no; open takes only the type1 types", t_extensions },
    { "get_info", "GET_INFO gives the page sizes and the chain IOVA_RANGE (aperture minus the "
      "MSI window), MIGRATION, DMA_AVAIL; a short argsz gets the needed size and nothing past "
      "it", t_get_info },
    { "map_errors", "MAP_DMA refuses bad argsz, flags, alignment, wrap, reserved or out-of-"
      "aperture IOVAs (-EINVAL), overlaps (-EEXIST), unmapped memory (-EFAULT), leaving nothing "
      "behind", t_map_errors },
    { "map_reaches_memory", "after MAP_DMA the device reads what the program wrote at the IOVA "
      "and its writes land in the program's memory; nothing else is reachable (strict, lazy "
      "and passthrough hosts)",
      t_map_reaches_memory },
    { "map_huge", "2 MiB pages map at their physical addresses with 2 MiB IOMMU pages",
      t_map_huge },
    { "map_scattered", "memory in single-page physical runs maps page by page in order; "
      "the memlock limit or a hole met part way fails with nothing pinned or mapped",
      t_map_scattered },
    { "permissions", "a READ mapping refuses device writes, a WRITE one device reads",
      t_permissions },
    { "unmap", "UNMAP_DMA removes whole mappings and reports the bytes; v2 refuses to cut "
      "one; ALL unmaps everything", t_unmap },
    { "unmap_v1", "v1 unmaps whole mappings that start in the range and nothing from a range "
      "starting inside one; DIRTY_PAGES is v2's", t_unmap_v1 },
    { "dma_avail", "65535 mappings per container, then -ENOSPC; DMA_AVAIL counts down and back",
      t_dma_avail },
    { "accounting", "pinned pages count once in locked memory; over RLIMIT_MEMLOCK MAP_DMA "
      "fails -ENOMEM with nothing mapped; CAP_IPC_LOCK lifts the limit", t_accounting },
    { "dirty", "dirty tracking: START, GET_BITMAP of whole mappings at the smallest page size "
      "reports every pinned page, again and again, unmap with a bitmap, STOP", t_dirty },
    { "groups", "maps before a group are replayed at attach; a reserved region over a mapping "
      "refuses the group; a second group shares the domain; the last group out takes the "
      "mappings", t_groups },
    { "release", "closing a container with mappings and dirty tracking unpins everything",
      t_release },
    { "release_accounts", "after release the locked memory and the page allocator are as "
      "before the maps", t_release_accounts },
    { "threads", "map and unmap from several threads at once", t_threads },
};

VTIO_TEST_MAIN(tests)
