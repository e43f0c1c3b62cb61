/*
 * Tests of a process (include/vtio/process.h, src/host/proc/proc_priv.h) on
 * a booted host without an IOMMU: its memory is machine RAM (what the
 * pointer shows is what the physical address holds), munmap's rules,
 * pinning and RLIMIT_MEMLOCK accounting, pages that outlive their mapping
 * while pinned, the file table, and exit.  Memory given back is checked on
 * the page allocator's counters.
 */
#include "host/test_dma_fixture.h"

#include <vtio/process.h>

#include "host/proc/proc_priv.h"

#include <stdatomic.h>
#include <stdlib.h>

#define RAM  (1 * VTIO_GiB)
#define PG   VTIO_PAGE_SIZE
#define HP   VTIO_HUGE_SIZE

static struct rig rig;
static struct vtio_process *proc;

static void up(void)
{
    rig_up(&rig, RIG_NO_IOMMU, RAM, NULL);
    CHECK_OK(vtio_process_create(rig.h, "test", &proc));
}

static void down(void)
{
    vtio_process_destroy(proc);
    proc = NULL;
    rig_down(&rig);
}

static uint64_t free_bytes(void)
{
    return vtio_page_alloc_free_bytes(rig.h->pages);
}

static struct vtio_process_stats stats(void)
{
    struct vtio_process_stats st;
    vtio_process_get_stats(proc, &st);
    return st;
}

static uint64_t phys(const void *va)
{
    uint64_t pa = 0;
    CHECK_OK(vtio_process_virt_to_phys(proc, va, &pa));
    return pa;
}

static uint8_t *map(uint64_t size, unsigned flags)
{
    void *va = NULL;
    CHECK_OK(vtio_process_mmap(proc, size, flags, &va));
    return va;
}

static bool all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

/* The program's view and the physical view of every page of [va, +size)
 * are the same bytes, both ways. */
static void check_same_bytes(uint8_t *va, uint64_t size)
{
    for (uint64_t off = 0; off < size; off += PG) {
        uint64_t pa = phys(va + off);
        CHECK_EQ(pa & (PG - 1), 0);
        uint8_t *direct = rig_va(&rig, pa);
        va[off + 17] = (uint8_t)(off >> 12) | 1;
        CHECK_EQ(direct[17], (uint8_t)(off >> 12) | 1);
        direct[4000] = 0x5a;
        CHECK_EQ(va[off + 4000], 0x5a);
        CHECK_EQ(phys(va + off + 4000), pa + 4000);
    }
}

/* Makes the next n order-0 allocations come back one page apart (so a new
 * mapping has one run per page): takes 2n pages, gives back every other one.
 * @returns the pages kept, for unfragment(). */
static uint64_t *fragment(uint64_t n)
{
    uint64_t *kept = malloc(2 * n * sizeof(*kept));
    CHECK(kept != NULL);
    for (uint64_t i = 0; i < 2 * n; i++)
        CHECK_OK(vtio_page_alloc(rig.h->pages, 0, 0, &kept[i]));
    for (uint64_t i = 0; i < n; i++) {
        CHECK_OK(vtio_page_free(rig.h->pages, kept[2 * i + 1], 0));
        kept[i] = kept[2 * i];
    }
    return kept;
}

static void unfragment(uint64_t *kept, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        CHECK_OK(vtio_page_free(rig.h->pages, kept[i], 0));
    free(kept);
}

/* ---- mmap */

static void t_mmap_small(void)
{
    up();
    uint64_t before = free_bytes();
    uint8_t *va = map(64 * PG, 0);
    CHECK_EQ((uintptr_t)va & (PG - 1), 0);
    CHECK(all_zero(va, 64 * PG));
    CHECK_EQ(free_bytes(), before - 64 * PG);
    CHECK_EQ(stats().mapped_bytes, 64 * PG);
    check_same_bytes(va, 64 * PG);
    /* a page's content is zero even if the page was used before */
    memset(va, 0xff, 64 * PG);
    CHECK_OK(vtio_process_munmap(proc, va, 64 * PG));
    CHECK_EQ(free_bytes(), before);
    va = map(64 * PG, 0);
    CHECK(all_zero(va, 64 * PG));
    down();
}

/* RAM written by anyone before (here: the host through its direct map)
 * reads as zeros once mapped, through the pointer and at the physical
 * address. */
static void t_mmap_zeroes_used_ram(void)
{
    up();
    for (unsigned huge = 0; huge < 2; huge++) {
        unsigned order = huge ? VTIO_PAGE_ORDER_2M : 0;
        uint64_t size = PG << order, pa;
        CHECK_OK(vtio_page_alloc(rig.h->pages, order, 0, &pa));
        memset(rig_va(&rig, pa), 0xaa, size);
        CHECK_OK(vtio_page_free(rig.h->pages, pa, order));
        uint8_t *va = map(size, huge ? VTIO_PROCESS_MAP_HUGE : 0);
        CHECK_EQ(phys(va), pa);              /* the allocator reuses it */
        CHECK(all_zero(rig_va(&rig, pa), size));
        CHECK(all_zero(va, size));
    }
    down();
}

static void t_mmap_huge(void)
{
    up();
    uint64_t before = free_bytes();
    uint8_t *va = map(3 * HP, VTIO_PROCESS_MAP_HUGE);
    CHECK_EQ((uintptr_t)va & (HP - 1), 0);
    CHECK(all_zero(va, 3 * HP));
    CHECK_EQ(free_bytes(), before - 3 * HP);
    for (int i = 0; i < 3; i++) {
        uint64_t pa = phys(va + i * HP);
        CHECK_EQ(pa & (HP - 1), 0);
        CHECK_EQ(phys(va + i * HP + HP - 1), pa + HP - 1);
    }
    check_same_bytes(va, 3 * HP);
    CHECK_EQ(stats().mapped_bytes, 3 * HP);
    down();
}

static void t_mmap_errors(void)
{
    up();
    uint64_t before = free_bytes();
    void *va = NULL;
    CHECK_ERR(vtio_process_mmap(proc, 0, 0, &va), -EINVAL);
    CHECK_ERR(vtio_process_mmap(proc, PG + 1, 0, &va), -EINVAL);
    CHECK_ERR(vtio_process_mmap(proc, PG, VTIO_PROCESS_MAP_HUGE, &va), -EINVAL);
    CHECK_ERR(vtio_process_mmap(proc, HP + PG, VTIO_PROCESS_MAP_HUGE, &va), -EINVAL);
    CHECK_ERR(vtio_process_mmap(proc, PG, 0x2, &va), -EINVAL);
    CHECK_ERR(vtio_process_mmap(proc, PG, 0, NULL), -EINVAL);
    CHECK_ERR(vtio_process_mmap(NULL, PG, 0, &va), -EINVAL);
    CHECK_ERR(vtio_process_mmap(proc, 2 * RAM, 0, &va), -ENOMEM);
    CHECK_ERR(vtio_process_mmap(proc, ~0ull & ~(HP - 1), VTIO_PROCESS_MAP_HUGE, &va), -ENOMEM);
    CHECK(va == NULL);
    CHECK_EQ(free_bytes(), before);
    CHECK_EQ(stats().mapped_bytes, 0);
    down();
}

/* A huge mapping that finds fewer 2 MiB blocks than it needs, with enough
 * RAM free in 4 KiB pieces, fails with -ENOMEM and gives back the blocks it
 * took. */
static void t_mmap_out_of_ram(void)
{
    up();
    uint64_t n = free_bytes() / PG;
    uint64_t *pages = malloc(n * sizeof(*pages));
    CHECK(pages != NULL);
    for (uint64_t i = 0; i < n; i++)
        CHECK_OK(vtio_page_alloc(rig.h->pages, 0, 0, &pages[i]));
    CHECK_EQ(free_bytes(), 0);
    /* give back every 8th 2 MiB block whole and every other page of the
     * blocks after those */
    for (uint64_t i = 0; i < n; i++) {
        uint64_t blk = pages[i] / HP;
        if (blk % 8 == 0 || (blk % 8 == 1 && (pages[i] / PG) % 2 == 0)) {
            CHECK_OK(vtio_page_free(rig.h->pages, pages[i], 0));
            pages[i] = ~0ull;
        }
    }
    struct vtio_page_alloc_stats st;
    vtio_page_alloc_get_stats(rig.h->pages, &st);
    uint64_t blocks = 0;
    for (unsigned k = VTIO_PAGE_ORDER_2M; k <= VTIO_PAGE_MAX_ORDER; k++)
        blocks += st.free_blocks[k] << (k - VTIO_PAGE_ORDER_2M);
    uint64_t mid = free_bytes();
    CHECK_GT(blocks, 0);
    CHECK_LE((blocks + 1) * HP, mid);
    void *va = NULL;
    CHECK_ERR(vtio_process_mmap(proc, (blocks + 1) * HP, VTIO_PROCESS_MAP_HUGE, &va), -ENOMEM);
    CHECK_EQ(free_bytes(), mid);
    CHECK_EQ(stats().mapped_bytes, 0);
    /* the same size in 4 KiB pages fits */
    CHECK_OK(vtio_process_mmap(proc, (blocks + 1) * HP, 0, &va));
    CHECK_OK(vtio_process_munmap(proc, va, (blocks + 1) * HP));
    CHECK_EQ(free_bytes(), mid);
    for (uint64_t i = 0; i < n; i++)
        if (pages[i] != ~0ull)
            CHECK_OK(vtio_page_free(rig.h->pages, pages[i], 0));
    free(pages);
    down();
}

/* ---- munmap */

static void munmap_partial(bool fragmented)
{
    uint64_t *kept = fragmented ? fragment(16) : NULL;
    uint64_t before = free_bytes();
    uint8_t *va = map(16 * PG, 0);
    if (fragmented)
        CHECK_NE(phys(va + PG), phys(va) + PG);
    uint64_t pa12 = phys(va + 12 * PG);
    va[12 * PG] = 0x77;
    /* head, tail, a hole in the middle */
    CHECK_OK(vtio_process_munmap(proc, va, 2 * PG));
    CHECK_OK(vtio_process_munmap(proc, va + 14 * PG, 2 * PG));
    CHECK_OK(vtio_process_munmap(proc, va + 6 * PG, 3 * PG));
    CHECK_EQ(stats().mapped_bytes, 9 * PG);
    CHECK_EQ(free_bytes(), before - 9 * PG);
    uint64_t pa;
    static const int gone[] = { 0, 1, 6, 7, 8, 14, 15 };
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
        CHECK_ERR(vtio_process_virt_to_phys(proc, va + gone[i] * PG, &pa), -EFAULT);
    CHECK_EQ(phys(va + 12 * PG), pa12);
    CHECK_EQ(va[12 * PG], 0x77);
    check_same_bytes(va + 2 * PG, 4 * PG);
    check_same_bytes(va + 9 * PG, 5 * PG);
    /* a range over both pieces and the holes around them */
    CHECK_OK(vtio_process_munmap(proc, va, 16 * PG));
    CHECK_EQ(stats().mapped_bytes, 0);
    CHECK_EQ(free_bytes(), before);
    /* unmapping nothing is fine, as munmap(2) */
    CHECK_OK(vtio_process_munmap(proc, va, 16 * PG));
    if (kept)
        unfragment(kept, 16);
}

static void t_munmap_partial(void)
{
    up();
    munmap_partial(false);
    munmap_partial(true);
    down();
}

static void t_munmap_spans_mappings(void)
{
    up();
    uint64_t before = free_bytes();
    uint8_t *a = map(4 * PG, 0), *b = map(2 * HP, VTIO_PROCESS_MAP_HUGE);
    uint8_t *lo = a < b ? a : b, *hi = a < b ? b : a;
    uint64_t hi_size = a < b ? 2 * HP : 4 * PG;
    CHECK_OK(vtio_process_munmap(proc, lo, (uint64_t)(hi - lo) + hi_size));
    CHECK_EQ(stats().mapped_bytes, 0);
    CHECK_EQ(free_bytes(), before);
    down();
}

static void t_munmap_errors(void)
{
    up();
    uint8_t *va = map(4 * PG, 0), *h = map(2 * HP, VTIO_PROCESS_MAP_HUGE);
    CHECK_ERR(vtio_process_munmap(proc, va, 0), -EINVAL);
    CHECK_ERR(vtio_process_munmap(proc, va + 1, PG), -EINVAL);
    CHECK_ERR(vtio_process_munmap(proc, va, PG + 1), -EINVAL);
    CHECK_ERR(vtio_process_munmap(NULL, va, PG), -EINVAL);
    CHECK_ERR(vtio_process_munmap(proc, (void *)(uintptr_t)(~0ull & ~(PG - 1)), 2 * PG),
              -EINVAL);
    /* 4 KiB cuts of a huge mapping */
    CHECK_ERR(vtio_process_munmap(proc, h + PG, HP), -EINVAL);
    CHECK_ERR(vtio_process_munmap(proc, h, HP + PG), -EINVAL);
    CHECK_ERR(vtio_process_munmap(proc, h + HP - PG, 2 * PG), -EINVAL);
    CHECK_EQ(stats().mapped_bytes, 4 * PG + 2 * HP);
    check_same_bytes(h, 2 * HP);
    /* a 2 MiB-aligned cut is fine */
    CHECK_OK(vtio_process_munmap(proc, h + HP, HP));
    uint64_t pa;
    CHECK_ERR(vtio_process_virt_to_phys(proc, h + HP, &pa), -EFAULT);
    CHECK_OK(vtio_process_virt_to_phys(proc, h, &pa));
    CHECK_ERR(vtio_process_virt_to_phys(proc, (void *)8, &pa), -EFAULT);
    down();
}

/* ---- pinning */

/* Pins all of [va, +pages) run by run: each run is physically contiguous
 * and as long as it can be.  @returns the number of runs. */
static unsigned pin_all_runs(uint8_t *va, uint64_t pages)
{
    uint64_t covered = 0, pa;
    unsigned runs = 0;
    while (covered < pages * PG) {
        long n = vtio_process_pin_run(proc, (uintptr_t)va + covered, pages - covered / PG, &pa);
        CHECK_GT(n, 0);
        CHECK_EQ(pa, phys(va + covered));
        for (long i = 0; i < n; i++)
            CHECK_EQ(phys(va + covered + i * PG), pa + i * PG);
        covered += (uint64_t)n * PG;
        if (covered < pages * PG)   /* the run was the longest one */
            CHECK_NE(phys(va + covered), pa + n * PG);
        vtio_process_unpin_run(proc, pa, (uint64_t)n);
        runs++;
    }
    return runs;
}

static void t_pin_run(void)
{
    up();
    uint8_t *va = map(256 * PG, 0);
    uint64_t v = (uintptr_t)va, pa;
    CHECK_GE(pin_all_runs(va, 256), 1);
    uint64_t *kept = fragment(8);
    uint8_t *frag = map(8 * PG, 0);
    CHECK_EQ(pin_all_runs(frag, 8), 8);
    CHECK_EQ(stats().locked_bytes, 0);
    CHECK_OK(vtio_process_munmap(proc, frag, 8 * PG));
    unfragment(kept, 8);
    /* max_pages bounds the run */
    CHECK_EQ(vtio_process_pin_run(proc, v, 1, &pa), 1);
    CHECK_EQ(stats().locked_bytes, PG);
    vtio_process_unpin_run(proc, pa, 1);

    uint8_t *h = map(2 * HP, VTIO_PROCESS_MAP_HUGE);
    long n = vtio_process_pin_run(proc, (uintptr_t)h + 3 * PG, 4096, &pa);
    CHECK_GE(n, 509);
    CHECK_EQ(pa, phys(h + 3 * PG));
    CHECK_EQ(stats().locked_bytes, (uint64_t)n * PG);
    vtio_process_unpin_run(proc, pa, (uint64_t)n);

    CHECK_ERR(vtio_process_pin_run(proc, v + 1, 1, &pa), -EINVAL);
    CHECK_ERR(vtio_process_pin_run(proc, v, 0, &pa), -EINVAL);
    CHECK_OK(vtio_process_munmap(proc, va, PG));
    CHECK_ERR(vtio_process_pin_run(proc, v, 1, &pa), -EFAULT);
    CHECK_ERR(vtio_process_pin_run(proc, 0, 1, &pa), -EFAULT);
    CHECK_ERR(vtio_process_pin_run(NULL, v, 1, &pa), -EINVAL);
    CHECK_EQ(stats().locked_bytes, 0);
    down();
}

/* pin_runs pins run after run under one call, each what pin_run would
 * pin, stopping at max_runs, max_pages or a page it cannot pin. */
static void t_pin_runs(void)
{
    up();
    uint64_t *kept = fragment(8);
    uint8_t *frag = map(8 * PG, 0);
    unfragment(kept, 8);
    uint64_t v = (uintptr_t)frag;
    struct vtio_pin_run runs[16];
    unsigned n = 99;
    CHECK_EQ(vtio_process_pin_runs(proc, v, 8, runs, 16, &n), 8);
    CHECK_EQ(n, 8);
    for (unsigned i = 0; i < 8; i++) {
        CHECK_EQ(runs[i].pa, phys(frag + i * PG));
        CHECK_EQ(runs[i].pages, 1);
    }
    CHECK_EQ(stats().locked_bytes, 8 * PG);
    vtio_process_unpin_runs(proc, runs, n);
    CHECK_EQ(stats().locked_bytes, 0);

    /* bounded by max_runs, then by max_pages */
    CHECK_EQ(vtio_process_pin_runs(proc, v + PG, 8, runs, 3, &n), 3);
    CHECK_EQ(n, 3);
    CHECK_EQ(runs[0].pa, phys(frag + PG));
    vtio_process_unpin_runs(proc, runs, n);
    CHECK_EQ(vtio_process_pin_runs(proc, v, 5, runs, 16, &n), 5);
    CHECK_EQ(n, 5);
    vtio_process_unpin_runs(proc, runs, n);

    /* contiguous memory: one run, the one pin_run pins */
    uint8_t *va = map(64 * PG, 0);
    uint64_t pa;
    long one = vtio_process_pin_run(proc, (uintptr_t)va, 64, &pa);
    CHECK_GT(one, 0);
    CHECK_EQ(vtio_process_pin_runs(proc, (uintptr_t)va, (uint64_t)one, runs, 16, &n), one);
    CHECK_EQ(n, 1);
    CHECK_EQ(runs[0].pa, pa);
    CHECK_EQ(runs[0].pages, (uint64_t)one);
    vtio_process_unpin_run(proc, pa, (uint64_t)one);
    vtio_process_unpin_runs(proc, runs, n);
    CHECK_EQ(stats().locked_bytes, 0);

    /* a hole: what comes before it is pinned, the next call gets -EFAULT */
    CHECK_OK(vtio_process_munmap(proc, frag + 4 * PG, PG));
    CHECK_EQ(vtio_process_pin_runs(proc, v, 8, runs, 16, &n), 4);
    CHECK_EQ(n, 4);
    CHECK_ERR(vtio_process_pin_runs(proc, v + 4 * PG, 4, runs + 4, 12, &n), -EFAULT);
    CHECK_EQ(n, 0);
    CHECK_EQ(stats().locked_bytes, 4 * PG);
    vtio_process_unpin_runs(proc, runs, 4);

    /* the limit: the runs under it are pinned, the next call gets -ENOMEM
     * with nothing pinned */
    CHECK_OK(vtio_process_set_memlock_limit(proc, 2 * PG));
    CHECK_EQ(vtio_process_pin_runs(proc, v, 4, runs, 16, &n), 2);
    CHECK_EQ(n, 2);
    CHECK_ERR(vtio_process_pin_runs(proc, v + 2 * PG, 2, runs + 2, 14, &n), -ENOMEM);
    CHECK(strstr(vtio_last_error(), "RLIMIT_MEMLOCK (8192) exceeded") != NULL);
    CHECK_EQ(n, 0);
    CHECK_EQ(stats().locked_bytes, 2 * PG);
    vtio_process_unpin_runs(proc, runs, 2);
    CHECK_EQ(stats().locked_bytes, 0);

    /* bad arguments change nothing; unpinning what is not pinned is reported */
    CHECK_ERR(vtio_process_pin_runs(proc, v, 1, NULL, 16, &n), -EINVAL);
    CHECK_ERR(vtio_process_pin_runs(proc, v, 1, runs, 0, &n), -EINVAL);
    CHECK_ERR(vtio_process_pin_runs(proc, v, 1, runs, 16, NULL), -EINVAL);
    CHECK_ERR(vtio_process_pin_runs(proc, v + 1, 1, runs, 16, &n), -EINVAL);
    CHECK_ERR(vtio_process_pin_runs(proc, v, 0, runs, 16, &n), -EINVAL);
    CHECK_ERR(vtio_process_pin_runs(NULL, v, 1, runs, 16, &n), -EINVAL);
    CHECK_EQ(stats().locked_bytes, 0);
    struct vtio_pin_run stray = { phys(frag), 1 };
    vtio_process_unpin_runs(proc, &stray, 1);
    CHECK(rig_log_has(&rig, "were not pinned"));
    CHECK_EQ(stats().locked_bytes, 0);
    down();
}

static void t_accounting(void)
{
    up();
    uint8_t *va = map(8 * PG, 0);
    uint64_t v = (uintptr_t)va, pa, pa2;
    CHECK_EQ(stats().memlock_limit, VTIO_PROCESS_MEMLOCK_DEFAULT);
    long n = vtio_process_pin_run(proc, v, 2, &pa);
    CHECK_EQ(n, 2);
    CHECK_EQ(vtio_process_pin_run(proc, v, 2, &pa2), 2);     /* pinned twice */
    CHECK_EQ(pa2, pa);
    CHECK_EQ(stats().locked_bytes, 2 * PG);
    vtio_process_unpin_run(proc, pa, 2);
    CHECK_EQ(stats().locked_bytes, 2 * PG);
    vtio_process_unpin_run(proc, pa, 1);                       /* in pieces */
    vtio_process_unpin_run(proc, pa + PG, 1);
    CHECK_EQ(stats().locked_bytes, 0);

    /* over the limit: -ENOMEM, Linux's message, nothing pinned */
    CHECK_OK(vtio_process_set_memlock_limit(proc, 3 * PG));
    CHECK_EQ(vtio_process_pin_run(proc, v, 2, &pa), 2);
    uint64_t pa_far = phys(va + 4 * PG);
    CHECK_ERR(vtio_process_pin_run(proc, v + 4 * PG, 2, &pa2), -ENOMEM);
    CHECK(strstr(vtio_last_error(), "RLIMIT_MEMLOCK (12288) exceeded") != NULL);
    CHECK_EQ(stats().locked_bytes, 2 * PG);
    /* nothing of the refused run stayed pinned: a page of it is one pin */
    CHECK_EQ(vtio_process_pin_run(proc, v + 4 * PG, 1, &pa2), 1);
    CHECK_EQ(pa2, pa_far);
    CHECK_EQ(stats().locked_bytes, 3 * PG);
    vtio_process_unpin_run(proc, pa2, 1);
    CHECK_EQ(stats().locked_bytes, 2 * PG);

    /* CAP_IPC_LOCK: counted, never refused */
    vtio_process_set_cap_ipc_lock(proc, true);
    n = vtio_process_pin_run(proc, v + 2 * PG, 6, &pa2);
    CHECK_GT(n, 0);
    CHECK_EQ(stats().locked_bytes, (uint64_t)(2 + n) * PG);
    vtio_process_set_cap_ipc_lock(proc, false);

    /* a limit below what is locked: allowed; new pins fail, old ones stay,
     * pinning an already pinned page costs nothing */
    CHECK_OK(vtio_process_set_memlock_limit(proc, PG));
    CHECK_EQ(stats().memlock_limit, PG);
    CHECK_EQ(stats().locked_bytes, (uint64_t)(2 + n) * PG);
    uint64_t pa3;
    CHECK_EQ(vtio_process_pin_run(proc, v, 1, &pa3), 1);
    vtio_process_unpin_run(proc, pa3, 1);
    vtio_process_unpin_run(proc, pa2, (uint64_t)n);
    if (2 + n < 8)
        CHECK_ERR(vtio_process_pin_run(proc, v + (2 + n) * PG, 1, &pa3), -ENOMEM);
    vtio_process_unpin_run(proc, pa, 2);
    CHECK_EQ(stats().locked_bytes, 0);

    CHECK_OK(vtio_process_set_memlock_limit(proc, VTIO_PROCESS_MEMLOCK_INFINITY));
    CHECK_EQ(vtio_process_pin_run(proc, v, 1, &pa), 1);
    vtio_process_unpin_run(proc, pa, 1);
    CHECK_ERR(vtio_process_set_memlock_limit(NULL, 0), -EINVAL);

    /* unpinning what is not pinned is reported and changes nothing */
    CHECK_EQ(vtio_process_pin_run(proc, v + PG, 1, &pa2), 1);
    CHECK_EQ(pa2, pa + PG);
    vtio_process_unpin_run(proc, pa, 2);            /* only its 2nd page is pinned */
    CHECK(rig_log_has(&rig, "were not pinned"));
    CHECK_EQ(stats().locked_bytes, 0);
    vtio_process_unpin_run(proc, pa, 1);
    vtio_process_unpin_run(proc, 1ull << 50, 4);    /* not RAM at all */
    CHECK_EQ(stats().locked_bytes, 0);
    CHECK_EQ(vtio_process_pin_run(proc, v, 2, &pa), 2);
    CHECK_EQ(stats().locked_bytes, 2 * PG);
    vtio_process_unpin_run(proc, pa, 2);
    CHECK_EQ(stats().locked_bytes, 0);
    down();
}

/* Pages unmapped while pinned leave the address space at once and machine
 * RAM at their last unpin. */
static void t_munmap_pinned(void)
{
    up();
    uint64_t before = free_bytes();
    uint8_t *va = map(4 * PG, 0);
    uint64_t pa;
    CHECK_EQ(vtio_process_pin_run(proc, (uintptr_t)va + PG, 1, &pa), 1);
    CHECK_EQ(vtio_process_pin_run(proc, (uintptr_t)va + PG, 1, &pa), 1);
    CHECK_OK(vtio_process_munmap(proc, va, 4 * PG));
    uint64_t gone;
    CHECK_ERR(vtio_process_virt_to_phys(proc, va + PG, &gone), -EFAULT);
    CHECK_EQ(free_bytes(), before - PG);
    CHECK_EQ(stats().orphan_bytes, PG);
    CHECK_EQ(stats().mapped_bytes, 0);
    CHECK_EQ(stats().locked_bytes, PG);
    vtio_process_unpin_run(proc, pa, 1);
    CHECK_EQ(free_bytes(), before - PG);
    vtio_process_unpin_run(proc, pa, 1);
    CHECK_EQ(free_bytes(), before);
    CHECK_EQ(stats().orphan_bytes, 0);
    CHECK_EQ(stats().locked_bytes, 0);

    /* a huge page stays whole until none of its 512 pages is pinned */
    uint8_t *h = map(2 * HP, VTIO_PROCESS_MAP_HUGE);
    uint64_t pa_a, pa_b;
    CHECK_EQ(vtio_process_pin_run(proc, (uintptr_t)h + 5 * PG, 1, &pa_a), 1);
    CHECK_EQ(vtio_process_pin_run(proc, (uintptr_t)h + 9 * PG, 2, &pa_b), 2);
    CHECK_OK(vtio_process_munmap(proc, h, 2 * HP));
    CHECK_EQ(free_bytes(), before - HP);
    CHECK_EQ(stats().orphan_bytes, HP);
    vtio_process_unpin_run(proc, pa_b, 1);
    vtio_process_unpin_run(proc, pa_a, 1);
    CHECK_EQ(free_bytes(), before - HP);
    vtio_process_unpin_run(proc, pa_b + PG, 1);
    CHECK_EQ(free_bytes(), before);
    CHECK_EQ(stats().orphan_bytes, 0);
    CHECK_EQ(stats().locked_bytes, 0);
    down();
}

/* ---- files */

struct fake_file {
    atomic_int releases;
    atomic_int ioctls;
    struct vtio_process *unpin_proc;   /* release unpins this run, as VFIO does */
    uint64_t unpin_pa, unpin_n;
};

static long fake_ioctl(void *priv, struct vtio_process *p, unsigned long request,
                       unsigned long arg)
{
    (void)p;
    struct fake_file *f = priv;
    atomic_fetch_add(&f->ioctls, 1);
    return (long)(request + arg);
}

static ssize_t fake_read(void *priv, void *buf, size_t count, uint64_t off)
{
    (void)priv;
    memset(buf, (int)off, count);
    return (ssize_t)count;
}

static int fake_mmap(void *priv, uint64_t off, uint64_t len, unsigned prot,
                     struct vtio_mmio *out)
{
    (void)priv;
    (void)prot;
    *out = (struct vtio_mmio){ .mem = NULL, .base = 0xd0000000 + off, .size = len };
    return 0;
}

static void fake_release(void *priv)
{
    struct fake_file *f = priv;
    if (f->unpin_proc)
        vtio_process_unpin_run(f->unpin_proc, f->unpin_pa, f->unpin_n);
    atomic_fetch_add(&f->releases, 1);
}

static const struct vtio_file_ops fake_ops = {
    .ioctl = fake_ioctl, .read = fake_read, .mmap = fake_mmap, .release = fake_release,
};
static const struct vtio_file_ops bare_ops = { .release = fake_release };

static void t_fds(void)
{
    up();
    struct fake_file a = { 0 }, b = { 0 }, c = { 0 };
    CHECK_EQ(vtio_process_fd_install(proc, &fake_ops, &a), 0);
    CHECK_EQ(vtio_process_fd_install(proc, &fake_ops, &b), 1);
    CHECK_EQ(vtio_process_fd_install(proc, &fake_ops, &c), 2);
    CHECK_EQ(stats().open_files, 3);
    CHECK_OK(vtio_process_fd_close(proc, 1));
    CHECK_EQ(b.releases, 1);
    CHECK_EQ(vtio_process_fd_install(proc, &fake_ops, &b), 1);   /* lowest free */
    CHECK_OK(vtio_process_fd_close(proc, 0));
    CHECK_OK(vtio_process_fd_close(proc, 2));
    CHECK_EQ(vtio_process_fd_install(proc, &fake_ops, &a), 0);
    CHECK_EQ(vtio_process_fd_install(proc, &fake_ops, &c), 2);

    CHECK_ERR(vtio_process_fd_close(proc, 3), -EBADF);
    CHECK_ERR(vtio_process_fd_close(proc, -1), -EBADF);
    CHECK_ERR(vtio_process_fd_close(proc, VTIO_PROCESS_MAX_FILES), -EBADF);
    CHECK(vtio_process_fget(proc, 3) == NULL);
    CHECK(vtio_process_fget(proc, -5) == NULL);
    CHECK(strstr(vtio_last_error(), "fd") != NULL);
    CHECK_ERR(vtio_process_fd_install(proc, NULL, &a), -EINVAL);
    CHECK_ERR(vtio_process_fd_install(proc, &(struct vtio_file_ops){ 0 }, &a), -EINVAL);

    /* the calls on a descriptor */
    CHECK_EQ(vtio_process_ioctl(proc, 2, 40, 2), 42);
    CHECK_EQ(c.ioctls, 1);
    uint8_t buf[8];
    CHECK_EQ(vtio_process_pread(proc, 2, buf, sizeof(buf), 7), 8);
    CHECK_EQ(buf[5], 7);
    CHECK_ERR(vtio_process_pwrite(proc, 2, buf, sizeof(buf), 0), -EINVAL);
    CHECK_ERR(vtio_process_ioctl(proc, 5, 1, 0), -EBADF);
    CHECK_ERR(vtio_process_pread(proc, 5, buf, 1, 0), -EBADF);
    CHECK_ERR(vtio_process_pwrite(proc, 5, buf, 1, 0), -EBADF);
    struct fake_file d = { 0 };
    int fd = vtio_process_fd_install(proc, &bare_ops, &d);
    CHECK_EQ(fd, 3);
    CHECK_ERR(vtio_process_ioctl(proc, fd, 1, 0), -ENOTTY);
    CHECK_ERR(vtio_process_pread(proc, fd, buf, 1, 0), -EINVAL);
    struct vtio_mmio m;
    CHECK_ERR(vtio_process_file_mmap(proc, fd, 0, 4096, VTIO_PROT_READ, &m), -ENODEV);
    CHECK_EQ(d.releases, 0);

    /* a reference outlives close; release runs once, at the last put */
    struct fake_file e = { 0 };
    int fe = vtio_process_fd_install(proc, &fake_ops, &e);
    CHECK_EQ(fe, 4);
    struct vtio_file *f = vtio_process_fget(proc, fe);
    CHECK(f != NULL);
    CHECK(vtio_file_ops_of(f) == &fake_ops);
    CHECK(vtio_file_priv(f) == &e);
    CHECK_OK(vtio_process_fd_close(proc, fe));
    CHECK_EQ(e.releases, 0);
    CHECK_ERR(vtio_process_ioctl(proc, fe, 1, 0), -EBADF);
    vtio_file_put(f);
    CHECK_EQ(e.releases, 1);
    vtio_file_put(NULL);

    /* a full table */
    int n = stats().open_files;
    struct fake_file many = { 0 };
    for (int i = n; i < VTIO_PROCESS_MAX_FILES; i++)
        CHECK_GE(vtio_process_fd_install(proc, &bare_ops, &many), 0);
    CHECK_ERR(vtio_process_fd_install(proc, &bare_ops, &many), -EMFILE);
    CHECK_EQ(many.releases, 0);
    CHECK_EQ(stats().open_files, VTIO_PROCESS_MAX_FILES);
    CHECK_OK(vtio_process_fd_close(proc, 700));
    CHECK_EQ(vtio_process_fd_install(proc, &bare_ops, &many), 700);
    CHECK_EQ(many.releases, 1);
    down();
    CHECK_EQ(many.releases, VTIO_PROCESS_MAX_FILES - n + 1);
    CHECK_EQ(a.releases, 2);
    CHECK_EQ(b.releases, 2);
    CHECK_EQ(c.releases, 2);
    CHECK_EQ(d.releases, 1);
    CHECK_EQ(e.releases, 1);
}

static void t_file_mmap(void)
{
    up();
    struct fake_file a = { 0 };
    int fd = vtio_process_fd_install(proc, &fake_ops, &a);
    struct vtio_mmio m1, m2;
    CHECK_OK(vtio_process_file_mmap(proc, fd, 0x1000, 0x2000, VTIO_PROT_READ, &m1));
    CHECK_EQ(m1.base, 0xd0001000);
    CHECK_EQ(m1.size, 0x2000);
    CHECK_OK(vtio_process_file_mmap(proc, fd, 0x8000, 0x1000,
                                    VTIO_PROT_READ | VTIO_PROT_WRITE, &m2));
    CHECK_ERR(vtio_process_file_mmap(proc, fd + 1, 0, 0x1000, VTIO_PROT_READ, &m2), -EBADF);
    CHECK_OK(vtio_process_fd_close(proc, fd));
    CHECK_EQ(a.releases, 0);              /* the mappings keep the file */
    CHECK_OK(vtio_process_file_munmap(proc, &m1));
    CHECK_EQ(a.releases, 0);
    CHECK_ERR(vtio_process_file_munmap(proc, &m1), -EINVAL);
    struct vtio_mmio bogus = { .base = 0x1234, .size = 1 };
    CHECK_ERR(vtio_process_file_munmap(proc, &bogus), -EINVAL);
    CHECK_OK(vtio_process_file_munmap(proc, &m2));
    CHECK_EQ(a.releases, 1);

    /* exit drops mappings too */
    fd = vtio_process_fd_install(proc, &fake_ops, &a);
    CHECK_OK(vtio_process_file_mmap(proc, fd, 0, 0x1000, VTIO_PROT_READ, &m1));
    CHECK_OK(vtio_process_fd_close(proc, fd));
    down();
    CHECK_EQ(a.releases, 2);
}

/* ---- exit */

/* Exit closes files first (whose release unpins, as VFIO's does), then
 * frees all memory. */
static void t_destroy(void)
{
    up();
    uint64_t before = free_bytes();
    uint8_t *va = map(32 * PG, 0);
    map(2 * HP, VTIO_PROCESS_MAP_HUGE);
    struct fake_file a = { .unpin_proc = proc };
    long n = vtio_process_pin_run(proc, (uintptr_t)va, 32, &a.unpin_pa);
    CHECK_GT(n, 0);
    a.unpin_n = (uint64_t)n;
    CHECK_GE(vtio_process_fd_install(proc, &fake_ops, &a), 0);
    CHECK_LT(free_bytes(), before);
    vtio_process_destroy(proc);
    proc = NULL;
    CHECK_EQ(a.releases, 1);
    CHECK_EQ(free_bytes(), before);
    vtio_process_destroy(NULL);
    down();
}

/* Pins that outlive the process keep its pages until the last unpin. */
static void t_destroy_pinned(void)
{
    up();
    uint64_t before = free_bytes();
    struct vtio_process *p = proc;
    uint8_t *va = map(8 * PG, 0);
    uint8_t *h = map(HP, VTIO_PROCESS_MAP_HUGE);
    uint64_t pa, hpa;
    long n = vtio_process_pin_run(p, (uintptr_t)va, 8, &pa);
    CHECK_GT(n, 0);
    CHECK_EQ(vtio_process_pin_run(p, (uintptr_t)h, 1, &hpa), 1);
    vtio_process_destroy(p);
    proc = NULL;
    CHECK_EQ(free_bytes(), before - (uint64_t)n * PG - HP);
    vtio_process_unpin_run(p, hpa, 1);
    CHECK_EQ(free_bytes(), before - (uint64_t)n * PG);
    vtio_process_unpin_run(p, pa, (uint64_t)n);      /* the last: p goes too */
    CHECK_EQ(free_bytes(), before);
    down();
}

/* ---- threads */

#define STRESS_THREADS 4
#define STRESS_PAGES   512

struct stress {
    uint8_t *va;
    unsigned id;
    int failures;
};

/* Maps 4 pages, pins them, unmaps them while pinned, unpins them. */
static int orphan_cycle(void)
{
    void *tmp;
    uint64_t pa[4];
    long n[4];
    int runs = 0, rc = vtio_process_mmap(proc, 4 * PG, 0, &tmp);
    for (uint64_t off = 0; rc == 0 && off < 4 * PG; off += (uint64_t)n[runs++] * PG) {
        n[runs] = vtio_process_pin_run(proc, (uintptr_t)tmp + off, 4 - off / PG, &pa[runs]);
        if (n[runs] <= 0)
            return -1;
    }
    if (rc == 0)
        rc = vtio_process_munmap(proc, tmp, 4 * PG);
    for (int i = 0; i < runs; i++)
        vtio_process_unpin_run(proc, pa[i], (uint64_t)n[i]);
    return rc;
}

static void *stress_thread(void *arg)
{
    struct stress *s = arg;
    uint64_t seed = 0x9e3779b97f4a7c15ull * (s->id + 1);
    for (int iter = 0; iter < 2000; iter++) {
        uint64_t first = vtio_test_rand(&seed) % STRESS_PAGES;
        uint64_t max = 1 + vtio_test_rand(&seed) % 64;
        uint64_t pa;
        long n = vtio_process_pin_run(proc, (uintptr_t)s->va + first * PG, max, &pa);
        if (n <= 0 || (uint64_t)n > max)
            s->failures++;
        else
            vtio_process_unpin_run(proc, pa, (uint64_t)n);
        if (iter % 50 == 0 && orphan_cycle() < 0)
            s->failures++;
    }
    return NULL;
}

static void t_threads(void)
{
    up();
    uint64_t before = free_bytes();
    CHECK_OK(vtio_process_set_memlock_limit(proc, VTIO_PROCESS_MEMLOCK_INFINITY));
    uint8_t *va = map(STRESS_PAGES * PG, 0);
    pthread_t t[STRESS_THREADS];
    struct stress s[STRESS_THREADS];
    for (unsigned i = 0; i < STRESS_THREADS; i++) {
        s[i] = (struct stress){ .va = va, .id = i };
        CHECK_EQ(pthread_create(&t[i], NULL, stress_thread, &s[i]), 0);
    }
    for (unsigned i = 0; i < STRESS_THREADS; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ(s[i].failures, 0);
    }
    CHECK_EQ(stats().locked_bytes, 0);
    CHECK_EQ(stats().orphan_bytes, 0);
    CHECK_EQ(stats().mapped_bytes, STRESS_PAGES * PG);
    CHECK_OK(vtio_process_munmap(proc, va, STRESS_PAGES * PG));
    CHECK_EQ(free_bytes(), before);
    down();
}

static const struct vtio_test tests[] = {
    { "mmap_small", "4 KiB mappings are page aligned, zeroed, machine RAM both ways, and go back on munmap", t_mmap_small },
    { "mmap_zeroes", "RAM written before through the direct map reads as zeros once mapped, both ways", t_mmap_zeroes_used_ram },
    { "mmap_huge", "huge mappings are 2 MiB aligned, each 2 MiB page one aligned block of machine RAM", t_mmap_huge },
    { "mmap_errors", "bad sizes, flags and pointers are refused with nothing mapped", t_mmap_errors },
    { "mmap_out_of_ram", "a mapping that does not fit fails with -ENOMEM and gives back what it took", t_mmap_out_of_ram },
    { "munmap_partial", "head, tail and middle unmaps leave the rest mapped to the same pages (contiguous or scattered RAM)", t_munmap_partial },
    { "munmap_spans", "one munmap covers several mappings and the gaps between them", t_munmap_spans_mappings },
    { "munmap_errors", "misaligned ranges, size 0 and 4 KiB cuts of huge pages are refused, changing nothing", t_munmap_errors },
    { "pin_run", "pin_run returns the longest physically contiguous run (one per page on scattered RAM), bounded by max_pages; -EFAULT unmapped", t_pin_run },
    { "pin_runs", "pin_runs pins successive runs as pin_run would, bounded by max_runs and max_pages, stopping at a hole or the limit with what came before pinned", t_pin_runs },
    { "accounting", "a page counts once however often pinned; the limit refuses with nothing pinned; CAP_IPC_LOCK; low limits", t_accounting },
    { "munmap_pinned", "pages unmapped while pinned stay allocated until the last unpin (huge pages whole)", t_munmap_pinned },
    { "fds", "descriptors: lowest free number, EBADF, EMFILE, dispatch, release once at the last reference", t_fds },
    { "file_mmap", "a file mapping keeps its file after close until it is unmapped or the process exits", t_file_mmap },
    { "destroy", "exit closes files (which unpin) and gives all memory back", t_destroy },
    { "destroy_pinned", "pins that outlive the process keep their pages until the last unpin", t_destroy_pinned },
    { "threads", "pins, unpins, maps and unmaps of pinned memory from several threads keep the counts exact and free everything", t_threads },
};

VTIO_TEST_MAIN(tests)
