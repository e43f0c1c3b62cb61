/*
 * Tests of the VT-d IOTLB, device-TLB and in-flight tracking
 * (src/hw/vtd/iotlb.c, inflight.c), through their internal interface
 * (vtd_internal.h) on a real unit.
 *
 * Every test creates its own unit over its own machine memory.  The IOTLB is
 * filled the way translate.c fills it: a lookup that misses, then an
 * insert on the same thread.
 */
#define _GNU_SOURCE
#include "hw/vtd/vtd_internal.h"
#include "vtd_builder.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define MiB VTIO_MiB
#define GiB VTIO_GiB
#define DID 5
#define SID 0x0310

struct fx {
    struct vtio_mem *mem;
    struct vtio_vtd *vtd;
};

static void fx_init(struct fx *f, const struct vtio_vtd_caps *caps)
{
    struct vtio_vtd_caps none = { 0 };
    f->mem = vtio_mem_create();
    CHECK(f->mem != NULL);
    CHECK_OK(vtio_mem_add_ram(f->mem, 0, 4 * MiB, "ram"));
    struct vtio_vtd_platform p = vtdb_mem_platform(f->mem);
    CHECK_OK(vtio_vtd_create(caps ? caps : &none, &p, &f->vtd));
}

static void fx_fini(struct fx *f)
{
    vtio_vtd_destroy(f->vtd);
    vtio_mem_destroy(f->mem);
}

static struct vtd_xlate xl(uint64_t pa, unsigned shift, bool r, bool w)
{
    return (struct vtd_xlate){ .pa = pa, .shift = (uint8_t)shift, .read = r, .write = w };
}

/* What translate.c does on a miss: lookup (must miss), then insert. */
static void fill(struct vtio_vtd *vtd, uint16_t did, uint32_t pasid, uint64_t addr,
                 struct vtd_xlate x)
{
    struct vtd_xlate out;
    CHECK(!vtd_iotlb_lookup(vtd, did, pasid, addr, &out));
    vtd_iotlb_insert(vtd, did, pasid, addr, &x);
}

static bool hit(struct vtio_vtd *vtd, uint16_t did, uint32_t pasid, uint64_t addr,
                struct vtd_xlate *out)
{
    return vtd_iotlb_lookup(vtd, did, pasid, addr, out);
}

/* Hits at addr with this page base. */
static void check_hit(struct vtio_vtd *vtd, uint16_t did, uint32_t pasid, uint64_t addr,
                      uint64_t pa, unsigned shift)
{
    struct vtd_xlate out;
    CHECKF(hit(vtd, did, pasid, addr, &out), "no hit at %#" PRIx64, addr);
    CHECK_EQ(out.pa, pa);
    CHECK_EQ(out.shift, shift);
}

static void check_miss(struct vtio_vtd *vtd, uint16_t did, uint32_t pasid, uint64_t addr)
{
    struct vtd_xlate out;
    CHECKF(!hit(vtd, did, pasid, addr, &out), "unexpected hit at %#" PRIx64, addr);
}

/* ------------------------------------------------------------------------
 * Lookups and fills.
 */

static void t_hit_4k(void)
{
    struct fx f;
    fx_init(&f, NULL);
    fill(f.vtd, DID, VTD_NO_PASID, 0x12345678, xl(0xabcde000, 12, true, false));
    struct vtd_xlate out;
    CHECK(hit(f.vtd, DID, VTD_NO_PASID, 0x12345000, &out));
    CHECK_EQ(out.pa, 0xabcde000);
    CHECK_EQ(out.shift, 12);
    CHECK(out.read);
    CHECK(!out.write);
    check_hit(f.vtd, DID, VTD_NO_PASID, 0x12345fff, 0xabcde000, 12);
    check_miss(f.vtd, DID, VTD_NO_PASID, 0x12344fff);
    check_miss(f.vtd, DID, VTD_NO_PASID, 0x12346000);
    /* A far-away address whose low page bits are the same. */
    check_miss(f.vtd, DID, VTD_NO_PASID, 0x12345000 + (1ull << 52));
    /* Refill of the same page replaces the entry (new permissions). */
    vtd_iotlb_inv_page(f.vtd, DID, 0x12345000, 0, false);
    fill(f.vtd, DID, VTD_NO_PASID, 0x12345000, xl(0xabcde000, 12, true, true));
    CHECK(hit(f.vtd, DID, VTD_NO_PASID, 0x12345010, &out));
    CHECK(out.read && out.write);
    fx_fini(&f);
}

static void t_superpages(void)
{
    struct fx f;
    fx_init(&f, NULL);
    /* 2 MiB at 0x40200000 -> 0x80000000; an unaligned pa is aligned. */
    fill(f.vtd, DID, VTD_NO_PASID, 0x40234567, xl(0x80000000 | 0x1000, 21, true, true));
    for (uint64_t a = 0x40200000; a < 0x40400000; a += 0x3f000)
        check_hit(f.vtd, DID, VTD_NO_PASID, a, 0x80000000, 21);
    check_hit(f.vtd, DID, VTD_NO_PASID, 0x403fffff, 0x80000000, 21);
    check_miss(f.vtd, DID, VTD_NO_PASID, 0x401fffff);
    check_miss(f.vtd, DID, VTD_NO_PASID, 0x40400000);
    /* 1 GiB at 0x1_0000_0000. */
    fill(f.vtd, DID, VTD_NO_PASID, 0x100000000, xl(0x200000000ull, 30, true, false));
    check_hit(f.vtd, DID, VTD_NO_PASID, 0x100000000, 0x200000000ull, 30);
    check_hit(f.vtd, DID, VTD_NO_PASID, 0x13fffffff, 0x200000000ull, 30);
    check_hit(f.vtd, DID, VTD_NO_PASID, 0x123456789, 0x200000000ull, 30);
    check_miss(f.vtd, DID, VTD_NO_PASID, 0x140000000);
    check_miss(f.vtd, DID, VTD_NO_PASID, 0x0ffffffff);
    /* A 4 KiB entry inside the 2 MiB one is found first; both coexist. */
    fill(f.vtd, 7, VTD_NO_PASID, 0x40201000, xl(0x9000, 12, true, true));
    check_hit(f.vtd, 7, VTD_NO_PASID, 0x40201000, 0x9000, 12);
    check_hit(f.vtd, DID, VTD_NO_PASID, 0x40201000, 0x80000000, 21);
    fx_fini(&f);
}

static void t_fill_rules(void)
{
    struct fx f;
    fx_init(&f, NULL);
    struct vtd_xlate x = xl(0x5000, 12, true, true), out;
    /* No lookup before: dropped.  (Each check below is a lookup that
     * misses, so it opens the next fill of that page.) */
    vtd_iotlb_insert(f.vtd, DID, VTD_NO_PASID, 0x1000, &x);
    check_miss(f.vtd, DID, VTD_NO_PASID, 0x1000);
    /* An invalidation (of anything) between miss and insert: dropped. */
    vtd_iotlb_inv_domain(f.vtd, 99);
    vtd_iotlb_insert(f.vtd, DID, VTD_NO_PASID, 0x1000, &x);
    check_miss(f.vtd, DID, VTD_NO_PASID, 0x1000);
    /* The miss just checked licenses one fill; after an invalidation, the
     * next insert is refused again. */
    vtd_iotlb_insert(f.vtd, DID, VTD_NO_PASID, 0x1000, &x);
    check_hit(f.vtd, DID, VTD_NO_PASID, 0x1000, 0x5000, 12);
    vtd_iotlb_inv_all(f.vtd);
    vtd_iotlb_insert(f.vtd, DID, VTD_NO_PASID, 0x1000, &x);
    check_miss(f.vtd, DID, VTD_NO_PASID, 0x1000);
    vtd_iotlb_inv_all(f.vtd);
    vtd_iotlb_insert(f.vtd, DID, VTD_NO_PASID, 0x1000, &x);    /* spends that miss */
    /* A miss for another page (or domain, or PASID) does not license it. */
    CHECK(!vtd_iotlb_lookup(f.vtd, DID, VTD_NO_PASID, 0x2000, &out));
    CHECK(!vtd_iotlb_lookup(f.vtd, DID + 1, VTD_NO_PASID, 0x1000, &out));
    CHECK(!vtd_iotlb_lookup(f.vtd, DID, 0, 0x1000, &out));
    vtd_iotlb_insert(f.vtd, DID, VTD_NO_PASID, 0x1000, &x);
    check_miss(f.vtd, DID, VTD_NO_PASID, 0x1000);
    vtd_iotlb_inv_all(f.vtd);
    vtd_iotlb_insert(f.vtd, DID, VTD_NO_PASID, 0x1000, &x);    /* spends that miss */
    /* Nested misses: the inner fill is fine; the outer one began before an
     * invalidation that came between the two misses and is dropped. */
    CHECK(!vtd_iotlb_lookup(f.vtd, DID, VTD_NO_PASID, 0x3000, &out));
    vtd_iotlb_inv_all(f.vtd);
    CHECK(!vtd_iotlb_lookup(f.vtd, DID, VTD_NO_PASID, 0x4000, &out));
    struct vtd_xlate y = xl(0x6000, 12, true, false);
    vtd_iotlb_insert(f.vtd, DID, VTD_NO_PASID, 0x4000, &y);
    vtd_iotlb_insert(f.vtd, DID, VTD_NO_PASID, 0x3000, &x);
    check_hit(f.vtd, DID, VTD_NO_PASID, 0x4000, 0x6000, 12);
    check_miss(f.vtd, DID, VTD_NO_PASID, 0x3000);
    /* A fill of a superpage is licensed by a miss anywhere inside it. */
    CHECK(!vtd_iotlb_lookup(f.vtd, DID, VTD_NO_PASID, 0x612345, &out));
    struct vtd_xlate big = xl(0x800000, 21, true, true);
    vtd_iotlb_insert(f.vtd, DID, VTD_NO_PASID, 0x612345, &big);
    check_hit(f.vtd, DID, VTD_NO_PASID, 0x600000, 0x800000, 21);
    /* A size the IOTLB does not cache is ignored. */
    struct vtd_xlate z = xl(0, 39, true, true);
    CHECK(!vtd_iotlb_lookup(f.vtd, DID, VTD_NO_PASID, 0, &out));
    vtd_iotlb_insert(f.vtd, DID, VTD_NO_PASID, 0, &z);
    check_miss(f.vtd, DID, VTD_NO_PASID, 0);
    fx_fini(&f);
}

static void t_tags(void)
{
    struct fx f;
    fx_init(&f, NULL);
    uint64_t a = 0x7000;
    fill(f.vtd, 1, VTD_NO_PASID, a, xl(0x10000, 12, true, true));
    fill(f.vtd, 2, VTD_NO_PASID, a, xl(0x20000, 12, true, true));
    fill(f.vtd, 1, 0, a, xl(0x30000, 12, true, true));
    fill(f.vtd, 1, 0xfffff, a, xl(0x40000, 12, true, true));
    check_hit(f.vtd, 1, VTD_NO_PASID, a, 0x10000, 12);
    check_hit(f.vtd, 2, VTD_NO_PASID, a, 0x20000, 12);
    check_hit(f.vtd, 1, 0, a, 0x30000, 12);
    check_hit(f.vtd, 1, 0xfffff, a, 0x40000, 12);
    check_miss(f.vtd, 3, VTD_NO_PASID, a);
    check_miss(f.vtd, 2, 0, a);
    check_miss(f.vtd, 1, 1, a);
    /* The device-TLB is separate and tagged by source-id. */
    struct vtd_xlate out;
    CHECK(!vtd_devtlb_lookup(f.vtd, 1, VTD_NO_PASID, a, &out));
    fx_fini(&f);
}

/* More pages than the cache holds: evicted ones miss, none is wrong. */
static void t_capacity(void)
{
    struct fx f;
    fx_init(&f, NULL);
    enum { N = 40000 };
    for (uint64_t i = 0; i < N; i++)
        fill(f.vtd, (uint16_t)(i % 3), VTD_NO_PASID, i << 12, xl((i + 1000) << 12, 12, true, true));
    unsigned hits = 0;
    for (uint64_t i = 0; i < N; i++) {
        struct vtd_xlate out;
        if (hit(f.vtd, (uint16_t)(i % 3), VTD_NO_PASID, i << 12, &out)) {
            CHECK_EQ(out.pa, (i + 1000) << 12);
            hits++;
        }
    }
    CHECK_GE(hits, 3072);       /* most of the 4096 4 KiB entries (all, today) */
    CHECK_LT(hits, N);
    vtd_iotlb_inv_all(f.vtd);
    for (uint64_t i = 0; i < N; i += 97)
        check_miss(f.vtd, (uint16_t)(i % 3), VTD_NO_PASID, i << 12);
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * Invalidation.
 */

/* Entries of two domains: 4 KiB pages at 0..64 KiB, a 2 MiB page at
 * 2 MiB, a 1 GiB page at 1 GiB, with PASIDs none and 9. */
static void populate(struct vtio_vtd *vtd)
{
    for (uint16_t did = 1; did <= 2; did++) {
        uint32_t pasids[2] = { VTD_NO_PASID, 9 };
        for (unsigned p = 0; p < 2; p++) {
            for (uint64_t a = 0; a < 0x10000; a += 0x1000)
                fill(vtd, did, pasids[p], a, xl(0x100000 + a, 12, true, true));
            fill(vtd, did, pasids[p], 0x200000, xl(0x400000, 21, true, true));
            fill(vtd, did, pasids[p], 0x40000000, xl(0x80000000, 30, true, true));
        }
    }
}

static bool has(struct vtio_vtd *vtd, uint16_t did, uint32_t pasid, uint64_t a)
{
    struct vtd_xlate out;
    return hit(vtd, did, pasid, a, &out);
}

static void t_inv_global_domain(void)
{
    struct fx f;
    fx_init(&f, NULL);
    populate(f.vtd);
    vtd_iotlb_inv_domain(f.vtd, 1);
    for (uint64_t a = 0; a < 0x10000; a += 0x1000) {
        CHECK(!has(f.vtd, 1, VTD_NO_PASID, a));
        CHECK(!has(f.vtd, 1, 9, a));
        CHECK(has(f.vtd, 2, VTD_NO_PASID, a));
        CHECK(has(f.vtd, 2, 9, a));
    }
    CHECK(!has(f.vtd, 1, 9, 0x200000));
    CHECK(!has(f.vtd, 1, VTD_NO_PASID, 0x40000000));
    CHECK(has(f.vtd, 2, 9, 0x200000));
    CHECK(has(f.vtd, 2, VTD_NO_PASID, 0x40000000));
    vtd_iotlb_inv_all(f.vtd);
    CHECK(!has(f.vtd, 2, 9, 0x3000));
    CHECK(!has(f.vtd, 2, 9, 0x200000));
    CHECK(!has(f.vtd, 2, VTD_NO_PASID, 0x40000000));
    fx_fini(&f);
}

static void t_inv_page(void)
{
    struct fx f;
    fx_init(&f, NULL);
    populate(f.vtd);
    /* am = 0: exactly one page, every PASID of the domain. */
    vtd_iotlb_inv_page(f.vtd, 1, 0x5000, 0, false);
    CHECK(!has(f.vtd, 1, VTD_NO_PASID, 0x5000));
    CHECK(!has(f.vtd, 1, 9, 0x5000));
    CHECK(has(f.vtd, 1, VTD_NO_PASID, 0x4000));
    CHECK(has(f.vtd, 1, VTD_NO_PASID, 0x6000));
    CHECK(has(f.vtd, 2, VTD_NO_PASID, 0x5000));
    /* am = 2 with an unaligned address: the aligned 16 KiB around it. */
    vtd_iotlb_inv_page(f.vtd, 1, 0x9abc, 2, true);
    CHECK(has(f.vtd, 1, VTD_NO_PASID, 0x7000));
    for (uint64_t a = 0x8000; a < 0xc000; a += 0x1000)
        CHECK(!has(f.vtd, 1, 9, a));
    CHECK(has(f.vtd, 1, VTD_NO_PASID, 0xc000));
    /* A 4 KiB invalidation inside a superpage drops the superpage. */
    vtd_iotlb_inv_page(f.vtd, 1, 0x3ff000, 0, false);
    CHECK(!has(f.vtd, 1, VTD_NO_PASID, 0x200000));
    CHECK(!has(f.vtd, 1, 9, 0x300000));
    CHECK(has(f.vtd, 2, 9, 0x300000));
    vtd_iotlb_inv_page(f.vtd, 2, 0x40000000 + 0x12345000, 0, false);
    CHECK(!has(f.vtd, 2, 9, 0x40000000));
    CHECK(has(f.vtd, 2, 9, 0x200000));
    CHECK(has(f.vtd, 1, 9, 0x40000000));
    /* am = 9 (2 MiB) at 0: every 4 KiB page below 2 MiB, not the 2 MiB page
     * above; am = 18 (1 GiB) at 0 drops them all for domain 2 but not the
     * 1 GiB page at 1 GiB. */
    vtd_iotlb_inv_page(f.vtd, 2, 0, 9, false);
    for (uint64_t a = 0; a < 0x10000; a += 0x1000)
        CHECK(!has(f.vtd, 2, VTD_NO_PASID, a));
    CHECK(has(f.vtd, 2, VTD_NO_PASID, 0x200000));
    vtd_iotlb_inv_page(f.vtd, 2, 0x1234, 18, false);
    CHECK(!has(f.vtd, 2, VTD_NO_PASID, 0x200000));
    CHECK(has(f.vtd, 1, 9, 0x40000000));
    /* The largest mask: everything of the domain. */
    vtd_iotlb_inv_page(f.vtd, 1, 0, 63, false);
    CHECK(!has(f.vtd, 1, 9, 0x40000000));
    CHECK(!has(f.vtd, 1, VTD_NO_PASID, 0x7000));
    fx_fini(&f);
}

static void t_inv_pasid(void)
{
    struct fx f;
    fx_init(&f, NULL);
    populate(f.vtd);
    fill(f.vtd, 1, 4, 0x1000, xl(0x111000, 12, true, true));
    /* PASID 9 of domain 1: also the domain's requests-without-PASID. */
    vtd_iotlb_inv_pasid(f.vtd, 1, 9);
    CHECK(!has(f.vtd, 1, 9, 0x1000));
    CHECK(!has(f.vtd, 1, 9, 0x200000));
    CHECK(!has(f.vtd, 1, VTD_NO_PASID, 0x1000));
    CHECK(has(f.vtd, 1, 4, 0x1000));
    CHECK(has(f.vtd, 2, 9, 0x1000));
    CHECK(has(f.vtd, 2, VTD_NO_PASID, 0x1000));
    /* Page-selective within a PASID. */
    vtd_iotlb_inv_pasid_page(f.vtd, 2, 9, 0x2000, 1, false);
    CHECK(has(f.vtd, 2, 9, 0x1000));
    CHECK(!has(f.vtd, 2, 9, 0x2000));
    CHECK(!has(f.vtd, 2, 9, 0x3000));
    CHECK(has(f.vtd, 2, 9, 0x4000));
    CHECK(!has(f.vtd, 2, VTD_NO_PASID, 0x2000));
    CHECK(has(f.vtd, 2, VTD_NO_PASID, 0x4000));
    vtd_iotlb_inv_pasid_page(f.vtd, 2, 9, 0x40001000, 0, false);
    CHECK(!has(f.vtd, 2, 9, 0x40000000));
    CHECK(has(f.vtd, 2, 9, 0x200000));
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * The device-TLB.
 */

static void devfill(struct vtio_vtd *vtd, uint16_t sid, uint32_t pasid, uint64_t a,
                    struct vtd_xlate x)
{
    struct vtd_xlate out;
    CHECK(!vtd_devtlb_lookup(vtd, sid, pasid, a, &out));
    vtd_devtlb_insert(vtd, sid, pasid, a, &x);
}

static bool devhas(struct vtio_vtd *vtd, uint16_t sid, uint32_t pasid, uint64_t a)
{
    struct vtd_xlate out;
    return vtd_devtlb_lookup(vtd, sid, pasid, a, &out);
}

static void t_devtlb(void)
{
    struct fx f;
    fx_init(&f, NULL);
    /* Nobody at SID: an invalidation has no one to answer it. */
    CHECK(!vtd_devtlb_inv(f.vtd, SID, VTD_NO_PASID, 0, 12));
    vtd_devtlb_attach(f.vtd, SID);
    CHECK(vtd_devtlb_inv(f.vtd, SID, VTD_NO_PASID, 0, 12));
    CHECK(!vtd_devtlb_inv(f.vtd, SID + 1, VTD_NO_PASID, 0, 12));
    /* A fill makes a source an endpoint too. */
    devfill(f.vtd, 0x0400, VTD_NO_PASID, 0x1000, xl(0x8000, 12, true, false));
    CHECK(vtd_devtlb_inv(f.vtd, 0x0400, 3, 0x5000, 12));
    CHECK(devhas(f.vtd, 0x0400, VTD_NO_PASID, 0x1000));

    for (uint64_t a = 0; a < 0x8000; a += 0x1000) {
        devfill(f.vtd, SID, VTD_NO_PASID, a, xl(0x100000 + a, 12, true, true));
        devfill(f.vtd, SID, 7, a, xl(0x200000 + a, 12, true, true));
    }
    devfill(f.vtd, SID, 7, 0x200000, xl(0x400000, 21, true, true));
    CHECK(!devhas(f.vtd, SID + 1, VTD_NO_PASID, 0x1000));   /* tagged by SID */
    CHECK(!vtd_iotlb_lookup(f.vtd, SID, VTD_NO_PASID, 0x1000, &(struct vtd_xlate){ 0 }));
    /* One page, PASID 7 only. */
    CHECK(vtd_devtlb_inv(f.vtd, SID, 7, 0x1000, 12));
    CHECK(!devhas(f.vtd, SID, 7, 0x1000));
    CHECK(devhas(f.vtd, SID, VTD_NO_PASID, 0x1000));
    CHECK(devhas(f.vtd, SID, 7, 0x2000));
    /* 16 KiB from 0x4000 (aligned down from 0x5000), every PASID. */
    CHECK(vtd_devtlb_inv(f.vtd, SID, VTD_NO_PASID, 0x5000, 14));
    for (uint64_t a = 0x4000; a < 0x8000; a += 0x1000) {
        CHECK(!devhas(f.vtd, SID, VTD_NO_PASID, a));
        CHECK(!devhas(f.vtd, SID, 7, a));
    }
    CHECK(devhas(f.vtd, SID, 7, 0x3000));
    /* A page inside the 2 MiB entry drops it. */
    CHECK(vtd_devtlb_inv(f.vtd, SID, 7, 0x3ff000, 12));
    CHECK(!devhas(f.vtd, SID, 7, 0x200000));
    /* Everything. */
    CHECK(vtd_devtlb_inv(f.vtd, SID, VTD_NO_PASID, 0, 64));
    CHECK(!devhas(f.vtd, SID, VTD_NO_PASID, 0x0));
    CHECK(!devhas(f.vtd, SID, 7, 0x3000));
    CHECK(devhas(f.vtd, 0x0400, VTD_NO_PASID, 0x1000));
    vtd_devtlb_inv_all(f.vtd);
    CHECK(!devhas(f.vtd, 0x0400, VTD_NO_PASID, 0x1000));
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * Concurrency: lookups while the main thread fills and invalidates.  The
 * mapping is a pure function of (did, page), so every hit can be checked.
 */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#define CPAGES 256
static uint64_t expect_pa(uint16_t did, uint64_t page)
{
    return ((uint64_t)did << 32) + ((page * 7 + 3) << 12);
}

struct reader {
    struct vtio_vtd *vtd;
    _Atomic bool *stop;
    _Atomic uint64_t hits;              /* watched by the writer */
    uint64_t misses, wrong;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    uint64_t seed = (uintptr_t)r;
    while (!atomic_load_explicit(r->stop, memory_order_acquire)) {
        uint64_t v = vtio_test_rand(&seed);
        uint16_t did = (uint16_t)(1 + v % 3);
        uint64_t page = (v >> 8) % CPAGES;
        struct vtd_xlate out;
        if (vtd_iotlb_lookup(r->vtd, did, VTD_NO_PASID, (page << 12) | (v & 0xfff), &out)) {
            atomic_store_explicit(&r->hits, atomic_load_explicit(&r->hits, memory_order_relaxed) + 1,
                                  memory_order_relaxed);
            if (out.pa != expect_pa(did, page) || out.shift != 12 || !out.read || out.write)
                r->wrong++;
        } else {
            r->misses++;
        }
    }
    return NULL;
}

static void t_concurrent_lookups(void)
{
    struct fx f;
    fx_init(&f, NULL);
    _Atomic bool stop = false;
    struct reader rd[2] = { { .vtd = f.vtd, .stop = &stop }, { .vtd = f.vtd, .stop = &stop } };
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, reader_main, &rd[i]), 0);
    uint64_t seed = 42, t0 = now_ms();
    /* At least 20000 rounds, and until both readers have hit a good deal
     * (they may start late on a loaded machine); at most 5 s. */
    for (unsigned round = 0;
         round < 20000 || ((atomic_load(&rd[0].hits) < 10000 || atomic_load(&rd[1].hits) < 10000) &&
                           now_ms() - t0 < 5000);
         round++) {
        uint64_t v = vtio_test_rand(&seed);
        uint16_t did = (uint16_t)(1 + v % 3);
        uint64_t page = (v >> 8) % CPAGES;
        struct vtd_xlate out;
        if (!vtd_iotlb_lookup(f.vtd, did, VTD_NO_PASID, page << 12, &out)) {
            struct vtd_xlate x = xl(expect_pa(did, page), 12, true, false);
            vtd_iotlb_insert(f.vtd, did, VTD_NO_PASID, page << 12, &x);
        }
        switch ((v >> 40) % 64) {
        case 0: vtd_iotlb_inv_all(f.vtd); break;
        case 1: vtd_iotlb_inv_domain(f.vtd, did); break;
        case 2: case 3: vtd_iotlb_inv_page(f.vtd, did, page << 12, (unsigned)(v >> 50) % 4, false); break;
        default: break;
        }
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(rd[i].wrong, 0);
        CHECK_GT(rd[i].hits, 0);
    }
    fx_fini(&f);
}

/* ------------------------------------------------------------------------
 * In-flight tracking.
 */


/* A thread holding an access open until told to end it. */
struct holder {
    struct vtio_vtd *vtd;
    _Atomic int state;          /* 0 start, 1 inside, 2 told to end, 3 ended */
    pthread_t th;
};

static void *holder_main(void *arg)
{
    struct holder *h = arg;
    vtd_access_begin(h->vtd);
    vtd_access_begin(h->vtd);           /* nested: the outer one counts */
    vtd_access_end(h->vtd);
    atomic_store(&h->state, 1);
    while (atomic_load(&h->state) != 2)
        sched_yield();
    vtd_access_end(h->vtd);
    atomic_store(&h->state, 3);
    return NULL;
}

static void holder_start(struct holder *h, struct vtio_vtd *vtd)
{
    h->vtd = vtd;
    atomic_store(&h->state, 0);
    CHECK_EQ(pthread_create(&h->th, NULL, holder_main, h), 0);
    while (atomic_load(&h->state) != 1)
        sched_yield();
}

static void holder_end(struct holder *h)
{
    atomic_store(&h->state, 2);
    CHECK_EQ(pthread_join(h->th, NULL), 0);
    CHECK_EQ(atomic_load(&h->state), 3);
}

struct drainer {
    struct vtio_vtd *vtd;
    _Atomic bool done;
    pthread_t th;
};

static void *drainer_main(void *arg)
{
    struct drainer *d = arg;
    vtd_inflight_drain(d->vtd);
    atomic_store(&d->done, true);
    return NULL;
}

static void drainer_start(struct drainer *d, struct vtio_vtd *vtd)
{
    d->vtd = vtd;
    atomic_store(&d->done, false);
    CHECK_EQ(pthread_create(&d->th, NULL, drainer_main, d), 0);
}

/* Waits up to ms for the drainer to finish. */
static bool drainer_done_within(struct drainer *d, uint64_t ms)
{
    uint64_t t0 = now_ms();
    while (!atomic_load(&d->done) && now_ms() - t0 < ms)
        usleep(1000);
    return atomic_load(&d->done);
}

static void t_drain_waits(void)
{
    struct fx f;
    fx_init(&f, NULL);
    /* Nothing in flight: returns at once, also with the caller's own
     * access open (it cannot wait for itself). */
    vtd_inflight_drain(f.vtd);
    vtd_access_begin(f.vtd);
    vtd_inflight_drain(f.vtd);
    vtd_access_end(f.vtd);

    struct holder a;
    holder_start(&a, f.vtd);
    struct drainer d;
    drainer_start(&d, f.vtd);
    CHECK(!drainer_done_within(&d, 100));       /* a began before: waited for */
    holder_end(&a);
    CHECK(drainer_done_within(&d, 5000));
    CHECK_EQ(pthread_join(d.th, NULL), 0);
    fx_fini(&f);
}

static void t_drain_ignores_later(void)
{
    struct fx f;
    fx_init(&f, NULL);
    struct holder a, b;
    holder_start(&a, f.vtd);
    struct drainer d;
    drainer_start(&d, f.vtd);
    /* The drain has begun (it must not finish while a is open); 200 ms is
     * ample for it to have bumped the epoch, even on a loaded machine. */
    CHECK(!drainer_done_within(&d, 200));
    holder_start(&b, f.vtd);                    /* b begins after it */
    CHECK(!atomic_load(&d.done));
    holder_end(&a);
    CHECK(drainer_done_within(&d, 5000));       /* b is still open */
    CHECK_EQ(atomic_load(&b.state), 1);
    CHECK_EQ(pthread_join(d.th, NULL), 0);
    holder_end(&b);
    fx_fini(&f);
}

static void *touch_main(void *arg)
{
    struct vtio_vtd *vtd = arg;
    vtd_access_begin(vtd);
    vtd_access_end(vtd);
    return NULL;
}

static void *leak_main(void *arg)
{
    vtd_access_begin(arg);
    return NULL;
}

/* Threads that come and go give their slots back (more threads than one
 * block of slots, sequentially and at once). */
static void t_thread_lifetimes(void)
{
    struct fx f;
    fx_init(&f, NULL);
    for (int i = 0; i < 150; i++) {
        pthread_t th;
        CHECK_EQ(pthread_create(&th, NULL, touch_main, f.vtd), 0);
        CHECK_EQ(pthread_join(th, NULL), 0);
    }
    enum { N = 80 };
    pthread_t th[N];
    for (int i = 0; i < N; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, touch_main, f.vtd), 0);
    for (int i = 0; i < N; i++)
        CHECK_EQ(pthread_join(th[i], NULL), 0);
    vtd_inflight_drain(f.vtd);                  /* no slot left busy */
    /* A thread that exits inside an access (a bug of its own) does not
     * block drains forever: its slot is given back. */
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, leak_main, f.vtd), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
    vtd_inflight_drain(f.vtd);
    fx_fini(&f);
}

/* Units destroyed while a thread that used them lives on: its stale slots
 * are never touched again (ASan would see it), and it exits cleanly. */
struct unit_hopper {
    struct vtio_mem *mem;
    int ok;
};

static void *hopper_main(void *arg)
{
    struct unit_hopper *u = arg;
    struct vtio_vtd_caps caps = { 0 };
    struct vtio_vtd_platform p = vtdb_mem_platform(u->mem);
    for (int i = 0; i < 40; i++) {
        struct vtio_vtd *v1, *v2;
        if (vtio_vtd_create(&caps, &p, &v1) < 0 || vtio_vtd_create(&caps, &p, &v2) < 0)
            return NULL;
        vtd_access_begin(v1);
        vtd_access_begin(v2);
        vtd_access_end(v2);
        vtd_access_end(v1);
        vtio_vtd_destroy(v1);
        vtd_inflight_drain(v2);
        vtio_vtd_destroy(v2);
    }
    u->ok = 1;
    return NULL;
}

static void t_unit_lifetimes(void)
{
    struct fx f;
    fx_init(&f, NULL);
    struct unit_hopper u = { f.mem, 0 };
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, hopper_main, &u), 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_EQ(u.ok, 1);
    /* The main thread: a unit it used is destroyed, a new one works. */
    struct vtio_vtd_caps caps = { 0 };
    struct vtio_vtd_platform p = vtdb_mem_platform(f.mem);
    struct vtio_vtd *v;
    CHECK_OK(vtio_vtd_create(&caps, &p, &v));
    vtd_access_begin(v);
    vtd_access_end(v);
    vtio_vtd_destroy(v);
    vtd_access_begin(f.vtd);
    vtd_access_end(f.vtd);
    vtd_inflight_drain(f.vtd);
    fx_fini(&f);
}

static const struct vtio_test tests[] = {
    { "hit_4k", "a 4 KiB fill hits for every address of its page, with its pa and permissions, and misses outside it", t_hit_4k },
    { "superpages", "2 MiB and 1 GiB entries hit for any address inside them and coexist with a 4 KiB entry of another domain", t_superpages },
    { "fill_rules", "an insert counts only after a missed lookup of the same page with no invalidation in between, also for nested misses", t_fill_rules },
    { "tags", "entries are tagged by domain id and PASID (VTD_NO_PASID apart), and the device-TLB is separate", t_tags },
    { "capacity", "filling more pages than the IOTLB holds evicts some but never returns a wrong translation", t_capacity },
    { "inv_global_domain", "domain invalidation drops every PASID and page size of that domain only; global drops all", t_inv_global_domain },
    { "inv_page", "page-selective invalidation drops 2^AM aligned pages of the domain, and any superpage overlapping them", t_inv_page },
    { "inv_pasid", "PASID-based invalidation drops the PASID's entries (plus the domain's no-PASID ones), all or page-selective", t_inv_pasid },
    { "devtlb", "the device-TLB is tagged by source-id, knows its ATS endpoints, and drops ranges of one or every PASID", t_devtlb },
    { "concurrent_lookups", "lookups on two threads while fills and invalidations run never see a torn or wrong entry", t_concurrent_lookups },
    { "drain_waits", "a drain waits for an access that began before it, and not for the caller's own", t_drain_waits },
    { "drain_ignores_later", "a drain does not wait for an access that began after it started", t_drain_ignores_later },
    { "thread_lifetimes", "threads that exit, even inside an access, give back their slots so drains never wait on them", t_thread_lifetimes },
    { "unit_lifetimes", "destroying a unit a live thread used leaves that thread and later units working", t_unit_lifetimes },
};

VTIO_TEST_MAIN(tests)
