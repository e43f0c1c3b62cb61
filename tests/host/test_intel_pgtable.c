/*
 * The VT-d driver's second-level page tables (src/host/iommu/intel/pgtable.c),
 * checked against the hardware: the machine's VT-d unit walks the tables the
 * driver built (a legacy context entry of one source id points at the root)
 * and its answer — address, page size, permissions or a fault — is the
 * ground truth.  The unit's IOTLB is invalidated before every check, so each
 * answer comes from a walk of the tables as they are.
 */
#include "harness.h"
#include "hw/vtd_builder.h"

#include <vtio/host.h>
#include <vtio/machine.h>
#include <vtio/page_alloc.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host/iommu/intel/intel_iommu.h"

#define SID   0x0100u           /* 01:00.0: no device; only its context entry */
#define DID   1u
#define K4    VTIO_PAGE_SIZE
#define M2    (2 * VTIO_MiB)
#define G1    VTIO_GiB
#define RW    (VTIO_IOMMU_READ | VTIO_IOMMU_WRITE)

struct rig {
    struct vtio_machine *m;
    struct vtio_host *h;
    struct intel_pgtable pt;
    struct vtdb b;              /* root and context tables for the unit */
    uint64_t pool;
    uint64_t free0;             /* free RAM before the page tables */
};

static void up(struct rig *r, unsigned levels, unsigned max_leaf)
{
    struct vtio_machine_config mc = { .ram_size = 8 * VTIO_GiB, .dma_engines = -1u,
                                      .vtd_caps = { .addr_width = 57 } };
    CHECK_OK(vtio_machine_create(&mc, &r->m));
    struct vtio_host_options o = { .iommu_off = true };
    CHECK_OK(vtio_host_boot_opts(r->m, &o, &r->h));
    CHECK_OK(vtio_page_alloc(r->h->pages, 2, VTIO_PAGE_ZERO, &r->pool));
    r->free0 = vtio_page_alloc_free_bytes(r->h->pages);
    CHECK_OK(intel_pgtable_init(&r->pt, r->h, levels, max_leaf));
    CHECK_EQ(r->pt.table_pages, 1);

    vtdb_init_mem(&r->b, r->m->mem, r->pool, 4 * K4);
    uint64_t root = vtdb_page(&r->b);
    vtdb_ctx_legacy(&r->b, root, SID, VTD_CTX_TT_MULTI_LEVEL, levels - 2, DID, r->pt.root, true);
    CHECK(vtdb_enable(r->m->vtd, root, false));
}

static void down(struct rig *r)
{
    intel_pgtable_destroy(&r->pt);
    CHECK_EQ(vtio_page_alloc_free_bytes(r->h->pages), r->free0);   /* every table freed */
    vtio_host_shutdown(r->h);
    vtio_machine_destroy(r->m);
}

/* Register-based global IOTLB invalidation (QI is off). */
static void hw_flush(struct vtio_vtd *vtd)
{
    uint64_t off = VTD_ECAP_IRO(vtio_vtd_reg_read(vtd, VTD_ECAP_REG, 8)) * 16 + VTD_IOTLB_OFF;
    vtio_vtd_reg_write(vtd, off, VTD_IOTLB_IVT | VTD_MAKE(VTD_INV_GLOBAL, 61, 60), 8);
    while (vtio_vtd_reg_read(vtd, off, 8) & VTD_IOTLB_IVT)
        ;
}

static int hw_xlate(struct vtio_vtd *vtd, uint64_t iova, bool write, struct vtio_vtd_resp *resp)
{
    hw_flush(vtd);
    struct vtio_vtd_req req = { .sid = SID, .addr = iova, .write = write };
    return vtio_vtd_translate(vtd, &req, resp);
}

/* The unit and lookup both say: iova -> pa in a page of pgsize with prot. */
static void expect_mapped(struct rig *r, uint64_t iova, uint64_t pa, uint64_t pgsize,
                          unsigned prot)
{
    struct vtio_vtd_resp resp;
    bool write = !(prot & VTIO_IOMMU_READ);
    int rc = hw_xlate(r->m->vtd, iova, write, &resp);
    CHECKF(rc == 0, "iova %#llx: the unit faults (reason %#x)", (unsigned long long)iova,
           resp.fault);
    CHECK_EQ(resp.pa, pa);
    CHECK_EQ(resp.page_size, pgsize);
    CHECK_EQ(resp.read, (prot & VTIO_IOMMU_READ) != 0);
    CHECK_EQ(resp.write, (prot & VTIO_IOMMU_WRITE) != 0);

    uint64_t lpa = 0, lsize = 0;
    unsigned lprot = 0;
    CHECK_OK(intel_pgtable_lookup(&r->pt, iova, &lpa, &lsize, &lprot));
    CHECK_EQ(lpa, pa);
    CHECK_EQ(lsize, pgsize);
    CHECK_EQ(lprot, prot);
}

static void expect_hole(struct rig *r, uint64_t iova)
{
    struct vtio_vtd_resp resp;
    CHECKF(hw_xlate(r->m->vtd, iova, false, &resp) == -EFAULT,
           "iova %#llx: the unit translates it to %#llx", (unsigned long long)iova,
           (unsigned long long)resp.pa);
    CHECK_EQ(resp.fault, VTD_FR_READ);
    CHECK_ERR(intel_pgtable_lookup(&r->pt, iova, NULL, NULL, NULL), -ENOENT);
}

/* Test-side walk: the table pages below the root (into out, if given). */
static size_t walk_tables(struct rig *r, uint64_t table, unsigned level, uint64_t *out,
                          size_t n)
{
    const uint64_t *t = vtio_host_phys_to_virt(r->h, table);
    for (unsigned i = 0; i < 512 && level > 1; i++) {
        if (!t[i] || (t[i] & VTD_SL_PS))
            continue;
        CHECK_EQ(t[i] & (VTD_SL_R | VTD_SL_W), VTD_SL_R | VTD_SL_W);   /* directory: R|W */
        uint64_t child = t[i] & VTD_SL_ADDR_MASK(52);
        if (out)
            out[n] = child;
        n = walk_tables(r, child, level - 1, out, n + 1);
    }
    return n;
}

static void expect_table_pages(struct rig *r)
{
    CHECK_EQ(r->pt.table_pages, 1 + walk_tables(r, r->pt.root, r->pt.levels, NULL, 0));
}

static uint64_t unmap(struct rig *r, uint64_t iova, uint64_t size, struct vtio_iommu_gather *g)
{
    vtio_iommu_gather_init(g);
    return intel_pgtable_unmap(&r->pt, iova, size, g);
}

static void gather_done(struct rig *r, struct vtio_iommu_gather *g)
{
    vtio_iommu_freelist_release(&g->freelist, r->h->pages);
    vtio_iommu_freelist_free(&g->freelist);
}

/* ------------------------------------------------------------------------ */

static void t_leaf_choice(void)
{
    struct rig r;
    up(&r, 4, 3);
    /* 4K, then 2M, then 1G, then 4K: 1 GiB + 2 MiB + 8 KiB from 3G - 2M - 4K. */
    uint64_t iova = 3 * G1 - M2 - K4, off = 4 * G1, size = G1 + M2 + 2 * K4;
    CHECK_OK(intel_pgtable_map(&r.pt, iova, iova + off, size, RW));
    expect_mapped(&r, iova + 0x123, iova + off + 0x123, K4, RW);
    expect_mapped(&r, 3 * G1 - M2, 3 * G1 - M2 + off, M2, RW);
    expect_mapped(&r, 3 * G1 - 8, 3 * G1 - 8 + off, M2, RW);
    expect_mapped(&r, 3 * G1, 3 * G1 + off, G1, RW);
    expect_mapped(&r, 4 * G1 - K4, 4 * G1 - K4 + off, G1, RW);
    expect_mapped(&r, 4 * G1 + 0xff8, 4 * G1 + 0xff8 + off, K4, RW);
    expect_hole(&r, iova - K4);
    expect_hole(&r, iova + size);
    /* root, the 512 GiB table, two 1 GiB tables, two 2 MiB tables */
    CHECK_EQ(r.pt.table_pages, 6);
    expect_table_pages(&r);

    /* pa aligned only to 4 KiB: 4 KiB pages even where the IOVA is 2M-aligned;
     * read-only and write-only pages. */
    CHECK_OK(intel_pgtable_map(&r.pt, 16 * G1, 5 * G1 + K4, 4 * M2, VTIO_IOMMU_READ));
    expect_mapped(&r, 16 * G1, 5 * G1 + K4, K4, VTIO_IOMMU_READ);
    expect_mapped(&r, 16 * G1 + 3 * M2 + 5 * K4, 5 * G1 + 3 * M2 + 6 * K4, K4, VTIO_IOMMU_READ);
    CHECK_OK(intel_pgtable_map(&r.pt, 17 * G1, 6 * G1, M2, VTIO_IOMMU_WRITE));
    expect_mapped(&r, 17 * G1 + 77, 6 * G1 + 77, M2, VTIO_IOMMU_WRITE);
    struct vtio_vtd_resp resp;
    CHECK_ERR(hw_xlate(r.m->vtd, 17 * G1, false, &resp), -EFAULT);   /* no R: reads fault */
    CHECK_EQ(resp.fault, VTD_FR_READ);
    CHECK_ERR(hw_xlate(r.m->vtd, 16 * G1, true, &resp), -EFAULT);    /* no W */
    CHECK_EQ(resp.fault, VTD_FR_WRITE);
    expect_table_pages(&r);
    down(&r);
}

static void t_max_leaf(void)
{
    /* The same 1 GiB range: one 1G leaf, 512 2M leaves, or 262144 4K leaves. */
    static const uint64_t pgsize[4] = { 0, K4, M2, G1 };
    static const uint64_t tables[4] = { 0, 3 + 512, 3, 2 };
    for (unsigned ml = 1; ml <= 3; ml++) {
        struct rig r;
        up(&r, 4, ml);
        CHECK_OK(intel_pgtable_map(&r.pt, G1, 7 * G1, G1, RW));
        expect_mapped(&r, G1, 7 * G1, pgsize[ml], RW);
        expect_mapped(&r, 2 * G1 - 4, 8 * G1 - 4, pgsize[ml], RW);
        CHECK_EQ(r.pt.table_pages, tables[ml]);
        expect_table_pages(&r);
        struct vtio_iommu_gather g;
        /* 0..4 GiB covers the 1G-level table's entries but not the span of
         * the table above: that one stays, as in Linux. */
        CHECK_EQ(unmap(&r, 0, 4 * G1, &g), G1);
        CHECK_EQ(g.pgsize, pgsize[ml]);
        CHECK_EQ(g.freelist.n, tables[ml] - 2);
        CHECK_EQ(r.pt.table_pages, 2);
        expect_hole(&r, G1);
        gather_done(&r, &g);
        CHECK_EQ(unmap(&r, 0, 1ull << 48, &g), 0);      /* the whole space */
        CHECK_EQ(g.freelist.n, 1);
        CHECK_EQ(r.pt.table_pages, 1);
        expect_hole(&r, G1);
        gather_done(&r, &g);
        down(&r);
    }
}

static void t_levels(void)
{
    for (unsigned levels = 3; levels <= 5; levels++) {
        struct rig r;
        up(&r, levels, 3);
        uint64_t top = 1ull << (VTD_LEVEL_SHIFT(levels) + 9);
        /* The last 1 GiB + 2 MiB + 4 KiB of the space: the last entry of
         * every level is used. */
        uint64_t iova = top - G1 - M2 - K4, pa = 2 * G1 - M2 - K4;
        CHECK_OK(intel_pgtable_map(&r.pt, iova, pa, G1 + M2 + K4, RW));
        expect_mapped(&r, iova, pa, K4, RW);
        expect_mapped(&r, top - G1 - M2, 2 * G1 - M2, M2, RW);
        expect_mapped(&r, top - 1, 3 * G1 - 1, G1, RW);
        expect_hole(&r, iova - K4);
        CHECK_EQ(r.pt.table_pages, levels);     /* one table per level */
        expect_table_pages(&r);
        /* One past the width, and a range that crosses it. */
        CHECK_ERR(intel_pgtable_map(&r.pt, top, 0, K4, RW), -EINVAL);
        CHECK_ERR(intel_pgtable_map(&r.pt, top - K4, 0, 2 * K4, RW), -EINVAL);
        CHECK_ERR(intel_pgtable_lookup(&r.pt, top, NULL, NULL, NULL), -ENOENT);
        struct vtio_iommu_gather g;
        CHECK_EQ(unmap(&r, 0, top, &g), G1 + M2 + K4);   /* every span covered */
        CHECK_EQ(r.pt.table_pages, 1);
        gather_done(&r, &g);
        down(&r);
    }
}

static void t_eexist(void)
{
    struct rig r;
    up(&r, 4, 3);
    CHECK_OK(intel_pgtable_map(&r.pt, 10 * G1 + 5 * M2 + 3 * K4, 0x40000000, K4, RW));
    CHECK_OK(intel_pgtable_map(&r.pt, 12 * G1, 3 * G1, G1, VTIO_IOMMU_READ));
    uint64_t pages = r.pt.table_pages, free_bytes = vtio_page_alloc_free_bytes(r.h->pages);
    /* Overlapping the 4K page at the end of a range that would need new
     * tables first; inside, and around, the 1G leaf. */
    CHECK_ERR(intel_pgtable_map(&r.pt, 8 * G1, 0, 2 * G1 + 5 * M2 + 4 * K4, RW), -EEXIST);
    CHECK_ERR(intel_pgtable_map(&r.pt, 10 * G1 + 5 * M2 + 3 * K4, 0, K4, RW), -EEXIST);
    CHECK_ERR(intel_pgtable_map(&r.pt, 12 * G1 + 7 * M2, 0, M2, RW), -EEXIST);
    CHECK_ERR(intel_pgtable_map(&r.pt, 11 * G1, 2 * G1, 3 * G1, RW), -EEXIST);
    CHECK_ERR(intel_pgtable_map(&r.pt, 13 * G1 - K4, 0, 2 * K4, RW), -EEXIST);
    CHECK_EQ(r.pt.table_pages, pages);
    CHECK_EQ(vtio_page_alloc_free_bytes(r.h->pages), free_bytes);
    expect_hole(&r, 8 * G1);
    expect_hole(&r, 10 * G1 + 5 * M2 + 2 * K4);
    expect_hole(&r, 11 * G1);
    expect_hole(&r, 13 * G1);
    expect_mapped(&r, 10 * G1 + 5 * M2 + 3 * K4, 0x40000000, K4, RW);
    expect_mapped(&r, 12 * G1 + 7 * M2, 3 * G1 + 7 * M2, G1, VTIO_IOMMU_READ);
    /* Next to them, everything fits. */
    CHECK_OK(intel_pgtable_map(&r.pt, 10 * G1 + 5 * M2 + 4 * K4, 0, 2 * K4, RW));
    CHECK_OK(intel_pgtable_map(&r.pt, 13 * G1, 0, G1, RW));
    expect_table_pages(&r);
    down(&r);
}

static void t_einval(void)
{
    struct rig r;
    up(&r, 4, 3);
    struct intel_pgtable bad;
    CHECK_ERR(intel_pgtable_init(&bad, r.h, 2, 1), -EINVAL);
    CHECK_ERR(intel_pgtable_init(&bad, r.h, 6, 1), -EINVAL);
    CHECK_ERR(intel_pgtable_init(&bad, r.h, 4, 0), -EINVAL);
    CHECK_ERR(intel_pgtable_init(&bad, r.h, 4, 4), -EINVAL);

    uint64_t free_bytes = vtio_page_alloc_free_bytes(r.h->pages);
    CHECK_ERR(intel_pgtable_map(&r.pt, 0x1000, 0x2000, 0, RW), -EINVAL);
    CHECK_ERR(intel_pgtable_map(&r.pt, 0x1800, 0x2000, K4, RW), -EINVAL);
    CHECK_ERR(intel_pgtable_map(&r.pt, 0x1000, 0x2100, K4, RW), -EINVAL);
    CHECK_ERR(intel_pgtable_map(&r.pt, 0x1000, 0x2000, 0x1200, RW), -EINVAL);
    CHECK_ERR(intel_pgtable_map(&r.pt, 0x1000, 0x2000, K4, 0), -EINVAL);
    CHECK_ERR(intel_pgtable_map(&r.pt, 0x1000, 0x2000, K4, RW | 4), -EINVAL);
    CHECK_ERR(intel_pgtable_map(&r.pt, 0x1000, 1ull << 52, K4, RW), -EINVAL);
    CHECK_ERR(intel_pgtable_map(&r.pt, 0x1000, (1ull << 52) - K4, 2 * K4, RW), -EINVAL);
    CHECK_ERR(intel_pgtable_map(&r.pt, 0x1000, 0, -0x1000ull, RW), -EINVAL);
    CHECK_ERR(intel_pgtable_map(&r.pt, 1ull << 48, 0, K4, RW), -EINVAL);
    CHECK_EQ(r.pt.table_pages, 1);
    CHECK_EQ(vtio_page_alloc_free_bytes(r.h->pages), free_bytes);
    expect_hole(&r, 0x1000);

    CHECK_OK(intel_pgtable_map(&r.pt, 0x1000, (1ull << 52) - K4, K4, RW));   /* the last pa */
    struct vtio_iommu_gather g;
    CHECK_EQ(unmap(&r, 0x1800, K4, &g), 0);
    CHECK_EQ(unmap(&r, 0x1000, 0x800, &g), 0);
    CHECK_EQ(unmap(&r, 0x1000, (1ull << 48), &g), 0);      /* beyond the width */
    CHECK_EQ(g.start, g.end);
    CHECK_EQ(intel_pgtable_unmap(&r.pt, 0x1000, K4, NULL), 0);
    CHECK_EQ(unmap(&r, 0x1000, 0, &g), 0);
    expect_mapped(&r, 0x1000, (1ull << 52) - K4, K4, RW);
    CHECK_EQ(unmap(&r, 0, 1ull << 48, &g), K4);            /* the whole space */
    CHECK_EQ(r.pt.table_pages, 1);
    gather_done(&r, &g);
    down(&r);
}

static void t_split(void)
{
    struct rig r;
    up(&r, 4, 3);
    uint64_t iova = 5 * G1, pa = 2 * G1;
    CHECK_OK(intel_pgtable_map(&r.pt, iova, pa, G1, VTIO_IOMMU_READ));
    CHECK_EQ(r.pt.table_pages, 2);
    uint64_t hole = iova + 7 * M2 + 9 * K4;

    struct vtio_iommu_gather g;
    CHECK_EQ(unmap(&r, hole, K4, &g), K4);
    CHECK_EQ(g.start, hole);
    CHECK_EQ(g.end, hole + K4);
    CHECK_EQ(g.pgsize, G1);            /* what the unit may have cached */
    CHECK_EQ(g.freelist.n, 0);
    CHECK_EQ(r.pt.table_pages, 4);     /* + 2 MiB leaves, + 4 KiB leaves */
    expect_table_pages(&r);
    expect_hole(&r, hole);
    expect_hole(&r, hole + K4 - 1);
    expect_mapped(&r, hole - K4, pa + 7 * M2 + 8 * K4, K4, VTIO_IOMMU_READ);
    expect_mapped(&r, hole + K4, pa + 7 * M2 + 10 * K4, K4, VTIO_IOMMU_READ);
    expect_mapped(&r, iova + 7 * M2, pa + 7 * M2, K4, VTIO_IOMMU_READ);
    expect_mapped(&r, iova, pa, M2, VTIO_IOMMU_READ);
    expect_mapped(&r, iova + 8 * M2, pa + 8 * M2, M2, VTIO_IOMMU_READ);
    expect_mapped(&r, iova + G1 - 1, pa + G1 - 1, M2, VTIO_IOMMU_READ);
    gather_done(&r, &g);

    /* A range over the split 2 MiB and into the next one: */
    CHECK_EQ(unmap(&r, hole, M2, &g), M2 - K4);    /* all but the old hole */
    CHECK_EQ(g.pgsize, M2);
    expect_hole(&r, iova + 8 * M2 + 8 * K4);
    expect_mapped(&r, iova + 8 * M2 + 9 * K4, pa + 8 * M2 + 9 * K4, K4, VTIO_IOMMU_READ);
    expect_mapped(&r, iova + 7 * M2 + 8 * K4, pa + 7 * M2 + 8 * K4, K4, VTIO_IOMMU_READ);
    expect_table_pages(&r);
    gather_done(&r, &g);

    /* Lookup gives the offset within the page. */
    uint64_t lpa;
    CHECK_OK(intel_pgtable_lookup(&r.pt, iova + 0x12345, &lpa, NULL, NULL));
    CHECK_EQ(lpa, pa + 0x12345);
    down(&r);
}

static void t_free_tables(void)
{
    struct rig r;
    up(&r, 5, 3);
    /* Scattered pages: each needs its own chain of tables. */
    static const uint64_t at[] = { 0x1000, 0x3000, 0x200000, 0x40000000, 0x8000000000ull,
                                   0x1000000000000ull, 0x1ffffffffff000ull };
    size_t n = sizeof(at) / sizeof(at[0]);
    for (size_t i = 0; i < n; i++)
        CHECK_OK(intel_pgtable_map(&r.pt, at[i], 0x10000000 + i * K4, K4, RW));
    uint64_t tables[64];
    size_t nt = walk_tables(&r, r.pt.root, 5, tables, 0);
    CHECK_EQ(r.pt.table_pages, 1 + nt);

    /* Clearing one of two pages of a table frees nothing. */
    struct vtio_iommu_gather g;
    CHECK_EQ(unmap(&r, 0x1000, K4, &g), K4);
    CHECK_EQ(g.freelist.n, 0);
    CHECK_EQ(r.pt.table_pages, 1 + nt);
    expect_mapped(&r, 0x3000, 0x10000000 + K4, K4, RW);
    gather_done(&r, &g);

    /* The rest, page by page: tables emptied a page at a time stay linked
     * (Linux frees only tables whose whole span an unmap covers), ready for
     * the next map; an unmap of the whole space then frees every one. */
    for (size_t i = 1; i < n; i++) {
        CHECK_EQ(unmap(&r, at[i], K4, &g), K4);
        expect_hole(&r, at[i]);
        expect_table_pages(&r);
        CHECK_EQ(g.start, at[i]);
        CHECK_EQ(g.end, at[i] + K4);
        CHECK_EQ(g.freelist.n, 0);
        gather_done(&r, &g);
    }
    CHECK_EQ(r.pt.table_pages, 1 + nt);
    struct vtio_iommu_freelist all = { 0 };
    CHECK_EQ(unmap(&r, 0, 1ull << 57, &g), 0);
    CHECK_OK(vtio_iommu_freelist_splice(&all, &g.freelist));
    vtio_iommu_freelist_free(&g.freelist);
    CHECK_EQ(r.pt.table_pages, 1);
    CHECK_EQ(all.n, nt);
    for (size_t i = 0; i < nt; i++) {         /* exactly the tables there were */
        size_t k = 0;
        while (k < all.n && all.pa[k] != tables[i])
            k++;
        CHECK(k < all.n);
    }
    vtio_iommu_freelist_release(&all, r.h->pages);
    vtio_iommu_freelist_free(&all);
    down(&r);
}

static void t_gather(void)
{
    struct rig r;
    up(&r, 4, 3);
    uint64_t a = 3 * G1 + 5 * M2 + 7 * K4, b = 3 * G1 + 10 * M2;
    CHECK_OK(intel_pgtable_map(&r.pt, a, 0, K4, RW));
    CHECK_OK(intel_pgtable_map(&r.pt, b, 0, M2, RW));
    struct vtio_iommu_gather g;
    CHECK_EQ(unmap(&r, 3 * G1, 16 * M2, &g), K4 + M2);
    CHECK_LE(g.start, a);
    CHECK_GE(g.start, 3 * G1);
    CHECK_GE(g.end, b + M2);
    CHECK_LE(g.end, 3 * G1 + 16 * M2);
    CHECK_EQ(g.pgsize, M2);
    CHECK_EQ(g.freelist.n, 1);          /* the 4K table: its whole 2M span unmapped */
    CHECK_EQ(r.pt.table_pages, 3);      /* root, 512G and 1G tables stay */
    gather_done(&r, &g);

    /* An empty table whose whole span is unmapped goes too. */
    CHECK_EQ(unmap(&r, 3 * G1, G1, &g), 0);
    CHECK_EQ(g.freelist.n, 1);
    CHECK_EQ(r.pt.table_pages, 2);
    gather_done(&r, &g);

    /* Nothing there at all: an empty gather. */
    CHECK_EQ(unmap(&r, 3 * G1, G1, &g), 0);
    CHECK_EQ(g.start, g.end);
    CHECK_EQ(g.pgsize, 0);
    CHECK_EQ(g.freelist.n, 0);

    /* Gathers accumulate over unmaps. */
    CHECK_OK(intel_pgtable_map(&r.pt, a, 0, K4, RW));
    CHECK_OK(intel_pgtable_map(&r.pt, b, 0, M2, RW));
    vtio_iommu_gather_init(&g);
    CHECK_EQ(intel_pgtable_unmap(&r.pt, b, M2, &g), M2);
    CHECK_EQ(intel_pgtable_unmap(&r.pt, a, K4, &g), K4);
    CHECK_EQ(g.start, a);
    CHECK_EQ(g.end, b + M2);
    CHECK_EQ(g.pgsize, M2);
    CHECK_EQ(g.freelist.n, 0);          /* page-sized unmaps free no table */
    CHECK_EQ(intel_pgtable_unmap(&r.pt, 3 * G1, G1, &g), 0);
    CHECK_EQ(g.freelist.n, 2);          /* the 4K table and the 1G-span table */
    gather_done(&r, &g);
    down(&r);
}

/* Takes every free page of the allocator; @returns how many blocks (in out). */
static unsigned exhaust(struct rig *r, uint64_t (*out)[2], unsigned max)
{
    unsigned n = 0;
    for (int order = VTIO_PAGE_MAX_ORDER; order >= 0; order--) {
        uint64_t pa;
        while (n < max && vtio_page_alloc(r->h->pages, (unsigned)order, 0, &pa) == 0) {
            out[n][0] = pa;
            out[n][1] = (uint64_t)order;
            n++;
        }
    }
    CHECK_EQ(vtio_page_alloc_free_bytes(r->h->pages), 0);
    return n;
}

static void t_enomem(void)
{
    struct rig r;
    up(&r, 4, 3);
    CHECK_OK(intel_pgtable_map(&r.pt, G1, 6 * G1, G1, RW));
    CHECK_OK(intel_pgtable_map(&r.pt, 5 * G1, 0x100000, K4, RW));
    uint64_t spare, blocks[256][2];
    CHECK_OK(vtio_page_alloc(r.h->pages, 0, 0, &spare));
    unsigned n = exhaust(&r, blocks, 256);

    /* A map that needs two tables, with none and then with one free page:
     * nothing changes, the one page is still free. */
    uint64_t pages = r.pt.table_pages;
    CHECK_ERR(intel_pgtable_map(&r.pt, 7 * G1 + K4, 0, K4, RW), -ENOMEM);
    CHECK_OK(vtio_page_free(r.h->pages, spare, 0));
    CHECK_ERR(intel_pgtable_map(&r.pt, 7 * G1 + K4, 0, K4, RW), -ENOMEM);
    CHECK_EQ(vtio_page_alloc_free_bytes(r.h->pages), K4);
    CHECK_EQ(r.pt.table_pages, pages);
    expect_hole(&r, 7 * G1 + K4);

    /* 4 KiB out of the 1 GiB leaf needs two splits; the page allows the
     * first (1G -> 2M leaves, the same translations), the 2 MiB leaf stays
     * whole and is not counted. */
    struct vtio_iommu_gather g;
    CHECK_EQ(unmap(&r, G1 + 3 * M2 + K4, K4, &g), 0);
    CHECK(strstr(vtio_last_error(), "out of memory") != NULL);
    expect_mapped(&r, G1 + 3 * M2 + K4, 6 * G1 + 3 * M2 + K4, M2, RW);
    expect_mapped(&r, G1, 6 * G1, M2, RW);
    expect_table_pages(&r);
    /* Memory back: the unmap completes. */
    for (unsigned i = 0; i < n; i++)
        CHECK_OK(vtio_page_free(r.h->pages, blocks[i][0], (unsigned)blocks[i][1]));
    CHECK_EQ(unmap(&r, G1 + 3 * M2 + K4, K4, &g), K4);
    expect_hole(&r, G1 + 3 * M2 + K4);
    expect_mapped(&r, G1 + 3 * M2, 6 * G1 + 3 * M2, K4, RW);
    CHECK_OK(intel_pgtable_map(&r.pt, 7 * G1 + K4, 0, K4, RW));
    expect_table_pages(&r);
    gather_done(&r, &g);
    down(&r);
}

/* ------------------------------------------------------------------------
 * Random operations against a model: one pa (or 0) per 4 KiB page of a
 * 4 GiB window.
 */

#define WIN_PAGES (4 * G1 / K4)
#define WIN_BASE  (0x7f00000000ull)    /* 1 GiB-aligned, inside 48 bits */

struct model {
    uint64_t *pa;              /* pa | prot, 0 = unmapped */
};

static uint64_t rand_size(uint64_t *seed)
{
    switch (vtio_test_rand(seed) % 8) {
    case 0: return G1 + (vtio_test_rand(seed) % 4) * M2 + (vtio_test_rand(seed) % 3) * K4;
    case 1: case 2: return (1 + vtio_test_rand(seed) % 3) * M2 + (vtio_test_rand(seed) % 2) * K4;
    default: return (1 + vtio_test_rand(seed) % 16) * K4;
    }
}

static uint64_t rand_iova(uint64_t *seed, uint64_t size)
{
    uint64_t span = WIN_PAGES * K4 - size;
    uint64_t a = vtio_test_rand(seed) % (span / K4 + 1) * K4;
    switch (vtio_test_rand(seed) % 4) {      /* often aligned to something big */
    case 0: a &= ~(G1 - 1); break;
    case 1: a &= ~(M2 - 1); break;
    default: break;
    }
    return a;
}

static void t_random(void)
{
    struct rig r;
    up(&r, 4, 3);
    struct model md = { .pa = calloc(WIN_PAGES, sizeof(uint64_t)) };
    CHECK(md.pa != NULL);
    uint64_t seed = 0x5eed1234;
    unsigned maps = 0, eexist = 0, unmaps = 0;
    for (unsigned op = 0; op < 1000; op++) {
        uint64_t size = rand_size(&seed);
        uint64_t off = rand_iova(&seed, size);
        uint64_t first = off / K4, n = size / K4;
        if (vtio_test_rand(&seed) % 3) {
            /* pa: same alignment as the IOVA up to 1 GiB, or just 4 KiB */
            uint64_t pa = (8 + vtio_test_rand(&seed) % 8) * G1 + (off & (G1 - 1));
            if (vtio_test_rand(&seed) % 4 == 0)
                pa += K4;
            unsigned prot = 1 + (unsigned)(vtio_test_rand(&seed) % 3);
            bool busy = false;
            for (uint64_t i = 0; i < n && !busy; i++)
                busy = md.pa[first + i] != 0;
            int rc = intel_pgtable_map(&r.pt, WIN_BASE + off, pa, size, prot);
            if (busy) {
                CHECK_ERR(rc, -EEXIST);
                eexist++;
            } else {
                CHECK_OK(rc);
                for (uint64_t i = 0; i < n; i++)
                    md.pa[first + i] = (pa + i * K4) | prot;
                maps++;
            }
        } else {
            uint64_t want = 0;
            for (uint64_t i = 0; i < n; i++) {
                want += md.pa[first + i] ? K4 : 0;
                md.pa[first + i] = 0;
            }
            struct vtio_iommu_gather g;
            CHECK_EQ(unmap(&r, WIN_BASE + off, size, &g), want);
            if (want) {                 /* inside the range asked for */
                CHECK_LT(g.start, g.end);
                CHECK_GE(g.start, WIN_BASE + off);
                CHECK_LE(g.end, WIN_BASE + off + size);
            }
            gather_done(&r, &g);
            unmaps++;
        }
        /* Spot checks: lookups and the unit, pages inside and around. */
        for (unsigned k = 0; k < 12; k++) {
            uint64_t p = vtio_test_rand(&seed) % WIN_PAGES;
            if (k < 4)
                p = first + vtio_test_rand(&seed) % n;
            else if (k == 4)
                p = first ? first - 1 : first;
            else if (k == 5)
                p = first + n < WIN_PAGES ? first + n : first + n - 1;
            uint64_t iova = WIN_BASE + p * K4 + (vtio_test_rand(&seed) % K4 & ~7ull);
            uint64_t e = md.pa[p];
            if (!e) {
                if (k < 8)
                    expect_hole(&r, iova);
                else
                    CHECK_ERR(intel_pgtable_lookup(&r.pt, iova, NULL, NULL, NULL), -ENOENT);
                continue;
            }
            uint64_t lpa, lsize;
            unsigned lprot;
            CHECK_OK(intel_pgtable_lookup(&r.pt, iova, &lpa, &lsize, &lprot));
            CHECK_EQ(lpa, (e & ~0xfffull) + (iova & 0xfff));
            CHECK_EQ(lprot, e & 3);
            if (k < 8)
                expect_mapped(&r, iova, lpa, lsize, lprot);
        }
        if (op % 50 == 0)
            expect_table_pages(&r);
    }
    CHECK_GT(maps, 150);
    CHECK_GT(eexist, 30);
    CHECK_GT(unmaps, 150);
    expect_table_pages(&r);
    struct vtio_iommu_gather g;
    unmap(&r, 0, 1ull << VTD_LEVEL_SHIFT(r.pt.levels + 1), &g);   /* the whole space: every table goes */
    CHECK_EQ(r.pt.table_pages, 1);
    gather_done(&r, &g);
    free(md.pa);
    down(&r);
}

/* ------------------------------------------------------------------------
 * Concurrency: the unit walks while the tables change.  Table pages freed
 * by unmaps are given back only after the walking thread has started a new
 * translation (an epoch handshake standing in for the IOTLB flush's
 * "in-flight DMA has drained").
 */

#define STABLE4K  (0x40000000ull + 5 * K4)     /* next to the 4 KiB churn */
#define STABLE2M  (0x40000000ull + 4 * M2)     /* next to a table that comes and goes */
#define SPLIT1G   (3 * G1)                     /* 1 GiB leaf, split and unmapped */
#define SPLIT_KEEP (SPLIT1G + 300 * M2 + 17 * K4)
#define PA_OF(iova) ((iova) + 0x100000000ull)

struct conc {
    struct rig *r;
    atomic_bool stop;
    atomic_uint_fast64_t split_gen;      /* odd: SPLIT_KEEP is mapped */
    atomic_uint_fast64_t epoch_req, epoch_ack;
    uint64_t checks, split_checks, failures;     /* translator's */
    uint64_t map_failures;                       /* mapper's */
    uint64_t bad_iova, bad_pa;
    int bad_fault;
};

static bool conc_check(struct conc *c, uint64_t iova)
{
    struct vtio_vtd_resp resp;
    int rc = hw_xlate(c->r->m->vtd, iova, false, &resp);
    if (rc == 0 && resp.pa == PA_OF(iova))
        return true;
    if (!c->failures++) {
        c->bad_iova = iova;
        c->bad_pa = resp.pa;
        c->bad_fault = resp.fault;
    }
    return false;
}

static void *translator(void *arg)
{
    struct conc *c = arg;
    while (!atomic_load(&c->stop)) {
        atomic_store(&c->epoch_ack, atomic_load(&c->epoch_req));
        conc_check(c, STABLE4K);
        conc_check(c, STABLE2M + (c->checks % 512) * K4);
        uint64_t lpa = 0;               /* and the lock-free lookup */
        if (intel_pgtable_lookup(&c->r->pt, STABLE4K + 8, &lpa, NULL, NULL) != 0 ||
            lpa != PA_OF(STABLE4K + 8)) {
            if (!c->failures++) {
                c->bad_iova = STABLE4K + 8;
                c->bad_pa = lpa;
                c->bad_fault = -1;
            }
        }
        uint64_t g0 = atomic_load(&c->split_gen);
        if (g0 & 1) {
            struct vtio_vtd_resp resp;
            int rc = hw_xlate(c->r->m->vtd, SPLIT_KEEP, false, &resp);
            if (atomic_load(&c->split_gen) == g0) {
                c->split_checks++;
                if (rc != 0 || resp.pa != PA_OF(SPLIT_KEEP)) {
                    if (!c->failures++) {
                        c->bad_iova = SPLIT_KEEP;
                        c->bad_pa = resp.pa;
                        c->bad_fault = resp.fault;
                    }
                }
            }
        }
        c->checks++;
    }
    return NULL;
}

static void conc_unmap(struct conc *c, uint64_t iova, uint64_t size, struct vtio_iommu_freelist *fl)
{
    struct vtio_iommu_gather g;
    vtio_iommu_gather_init(&g);
    intel_pgtable_unmap(&c->r->pt, iova, size, &g);
    if (vtio_iommu_freelist_splice(fl, &g.freelist) < 0)
        c->map_failures++;
    vtio_iommu_freelist_free(&g.freelist);
}

static void conc_map(struct conc *c, uint64_t iova, uint64_t size)
{
    if (intel_pgtable_map(&c->r->pt, iova, PA_OF(iova), size, RW) < 0)
        c->map_failures++;
}

static void t_concurrent(void)
{
    struct rig r;
    up(&r, 4, 3);
    struct conc c = { .r = &r };
    conc_map(&c, STABLE4K, K4);
    conc_map(&c, STABLE2M, M2);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, translator, &c), 0);

    struct vtio_iommu_freelist pending = { 0 };
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned iter = 0;
    do {
        /* 4 KiB pages in the stable page's table. */
        for (unsigned i = 0; i < 8; i++)
            conc_map(&c, 0x40000000ull + (16 + i) * K4, K4);
        conc_unmap(&c, 0x40000000ull + 16 * K4, 8 * K4, &pending);
        /* A table beside the stable 2 MiB leaf: created, then freed. */
        conc_map(&c, STABLE2M + M2 + 3 * K4, 2 * K4);
        conc_unmap(&c, STABLE2M + M2, M2, &pending);
        /* A 1 GiB leaf split twice down to 4 KiB around the kept page. */
        conc_map(&c, SPLIT1G, G1);
        atomic_fetch_add(&c.split_gen, 1);
        conc_unmap(&c, SPLIT1G, 300 * M2 + 16 * K4, &pending);
        conc_unmap(&c, SPLIT_KEEP + K4, G1 - (SPLIT_KEEP + K4 - SPLIT1G), &pending);
        for (unsigned i = 0; i < 8; i++) {      /* churn in the kept page's table */
            conc_map(&c, SPLIT1G + 300 * M2, 16 * K4);
            conc_unmap(&c, SPLIT1G + 300 * M2, 16 * K4, &pending);
        }
        atomic_fetch_add(&c.split_gen, 1);
        conc_unmap(&c, SPLIT1G, G1, &pending);
        /* Give table pages back once the walker has moved on. */
        if (++iter % 16 == 0) {
            uint_fast64_t want = atomic_fetch_add(&c.epoch_req, 1) + 1;
            while (atomic_load(&c.epoch_ack) < want)
                sched_yield();
            vtio_iommu_freelist_release(&pending, r.h->pages);
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000000000ll + (t.tv_nsec - t0.tv_nsec) < 700000000ll &&
             iter < 100000);
    atomic_store(&c.stop, true);
    pthread_join(th, NULL);
    vtio_iommu_freelist_release(&pending, r.h->pages);
    vtio_iommu_freelist_free(&pending);

    printf("    concurrent: %u mapper rounds, %llu translator rounds, %llu split checks\n",
           iter, (unsigned long long)c.checks, (unsigned long long)c.split_checks);
    CHECKF(c.failures == 0, "%llu failures; first at %#llx: pa %#llx fault %#x",
           (unsigned long long)c.failures, (unsigned long long)c.bad_iova,
           (unsigned long long)c.bad_pa, c.bad_fault);
    CHECK_EQ(c.map_failures, 0);
    CHECK_GT(iter, 10);
    CHECK_GT(c.checks, 10);
    expect_table_pages(&r);
    CHECK_EQ(r.pt.table_pages, 4);      /* root, 512G, 1G, the stable 4K page's table */
    down(&r);
}

/* Not a check: the cost of the DMA API's common case, for the lead to see. */
static void t_speed(void)
{
    struct rig r;
    up(&r, 4, 3);
    uint64_t iova = 0xfff00000ull;
    CHECK_OK(intel_pgtable_map(&r.pt, iova - K4, 0x200000000ull, K4, RW));   /* keeps tables */
    enum { N = 200000 };
    struct vtio_iommu_gather g;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 0; i < N; i++) {
        if (intel_pgtable_map(&r.pt, iova, 0x100000000ull + i % 64 * K4, K4, RW) < 0)
            break;
        vtio_iommu_gather_init(&g);
        if (intel_pgtable_unmap(&r.pt, iova, K4, &g) != K4)
            break;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    printf("    map+unmap of one 4 KiB page, warm 4-level table: %.1f ns per pair\n", ns / N);
    CHECK_EQ(r.pt.table_pages, 4);
    expect_hole(&r, iova);
    down(&r);
}

static const struct vtio_test tests[] = {
    { "leaf_choice", "4K, 2M and 1G leaves are used exactly where iova and pa are aligned and the range covers them, with the permissions asked, as the unit walks them", t_leaf_choice },
    { "max_leaf", "max_leaf_level 1/2/3 limits the leaves to 4K, 2M, 1G for the same range; unmap frees every table", t_max_leaf },
    { "levels", "3-, 4- and 5-level tables translate up to the last page of 39-, 48- and 57-bit spaces, and refuse beyond", t_levels },
    { "eexist", "a map overlapping any mapped page fails with -EEXIST and changes nothing: tables, free RAM, translations", t_eexist },
    { "einval", "bad init, map and unmap arguments are refused and change nothing", t_einval },
    { "split", "unmapping 4 KiB of a 1 GiB leaf splits it down to 4 KiB: the rest translates as before, the hole faults", t_split },
    { "free_tables", "tables emptied a page at a time stay for reuse; an unmap covering their span unlinks them onto the freelist, exactly those", t_free_tables },
    { "gather", "the gather holds the unmapped span and largest page size, across unmaps, and nothing when nothing was mapped", t_gather },
    { "enomem", "without pages a map fails with -ENOMEM changing nothing, and an unmap keeps the large page it cannot split", t_enomem },
    { "random", "random maps and unmaps agree with a model of 4 KiB pages, in lookups and in the unit's walks", t_random },
    { "concurrent", "pages that stay mapped always translate while another thread maps, unmaps and splits around them", t_concurrent },
    { "speed", "prints the time of one 4 KiB map+unmap pair (not asserted)", t_speed },
};

VTIO_TEST_MAIN(tests)
