/*
 * Attacks on memory through the rogue's own requests: beyond its mappings,
 * against a mapping's permission, around a sub-page mapping, after an
 * unmap, after its driver stopped it, and after flooding the fault log.
 *
 * Each attack gives the rogue a driver that maps what an honest driver
 * would, plus a page of host secrets that nobody maps for it, and then
 * judges by content: a read "succeeded" only if secret bytes came back, a
 * write only if the target's bytes changed.  Addresses are tried both as
 * the rogue's DMA addresses near its mappings and as raw physical
 * addresses (what a device without an IOMMU, or in an identity domain,
 * would use).
 */
#include <vtio/dev/rogue.h>
#include <vtio/device.h>
#include <vtio/host.h>
#include <vtio/iommu.h>
#include <vtio/mem.h>
#include <vtio/page_alloc.h>
#include <vtio/pci.h>
#include <vtio/pci_enum.h>

#include <errno.h>
#include <string.h>
#include <time.h>

#include "attack/attack_priv.h"

#define PROBE 64u    /* bytes per probing access */

/* A page the rogue's driver maps for it (the first len bytes of it). */
struct rogue_buf {
    uint64_t pa;
    vtio_dma_addr_t iova;
};

/* Allocates the page, zeroed or full of the host's secret, and maps it. */
static bool map_buf(struct attack_scene *sc, bool secret, size_t len,
                    enum vtio_dma_direction dir, struct rogue_buf *b)
{
    if (secret ? !(b->pa = attack_secret_page(sc, SECRET_HOST))
               : vtio_page_alloc(sc->h->pages, 0, VTIO_PAGE_ZERO, &b->pa) < 0)
        return false;
    b->iova = vtio_dma_map_page(sc->rogue_dev, b->pa, len, dir);
    return !vtio_dma_mapping_error(sc->rogue_dev, b->iova);
}

/* Reads PROBE bytes at each address; returns how many secret bytes came back
 * and the address that gave the first. */
static size_t probe_reads(struct attack_scene *sc, const uint64_t *addr, unsigned n,
                          uint64_t seed, uint64_t *where)
{
    size_t leaked = 0;
    for (unsigned i = 0; i < n; i++) {
        uint8_t buf[PROBE];
        if (vtio_rogue_read(sc->rogue, addr[i], buf, sizeof(buf)) < 0)
            continue;
        size_t got = attack_secret_bytes(buf, sizeof(buf), seed, addr[i] % ATTACK_PAGE);
        if (got && !leaked)
            *where = addr[i];
        leaked += got;
    }
    return leaked;
}

void attack_read_outside(struct attack_scene *sc)
{
    struct rogue_buf rp;
    uint64_t secret = attack_secret_page(sc, SECRET_HOST);
    if (!secret || !map_buf(sc, false, ATTACK_PAGE, VTIO_DMA_BIDIRECTIONAL, &rp)) {
        attack_report(sc, VTIO_ATTACK_NA, "no memory for the scene");
        return;
    }
    /* The secret by its physical address, and the pages on either side of
     * the rogue's mapping (where a sloppy driver might map more than asked). */
    uint64_t addr[] = { secret, secret + 1024, rp.iova + ATTACK_PAGE, rp.iova - ATTACK_PAGE };
    uint64_t where = 0;
    size_t leaked = probe_reads(sc, addr, 4, SECRET_HOST, &where);
    if (leaked)
        attack_report(sc, VTIO_ATTACK_SUCCEEDED, "read %zu secret bytes at %#llx", leaked,
                      (unsigned long long)where);
    else
        attack_report(sc, VTIO_ATTACK_BLOCKED, "4 reads outside the mapping refused");
}

/* Writes a PROBE-byte pattern at each address; true if the page at pa changed. */
static bool probe_writes(struct attack_scene *sc, const uint64_t *addr, unsigned n,
                         uint64_t pa, uint64_t seed, unsigned *refused)
{
    uint8_t junk[PROBE];
    memset(junk, 0xee, sizeof(junk));
    *refused = 0;
    for (unsigned i = 0; i < n; i++)
        if (vtio_rogue_write(sc->rogue, addr[i], junk, sizeof(junk)) < 0)
            (*refused)++;
    return !attack_secret_intact(sc, pa, seed);
}

void attack_write_outside(struct attack_scene *sc)
{
    struct rogue_buf rp;
    uint64_t secret = attack_secret_page(sc, SECRET_HOST);
    if (!secret || !map_buf(sc, false, ATTACK_PAGE, VTIO_DMA_BIDIRECTIONAL, &rp)) {
        attack_report(sc, VTIO_ATTACK_NA, "no memory for the scene");
        return;
    }
    uint64_t addr[] = { secret, secret + 2048, rp.iova + ATTACK_PAGE };
    unsigned refused;
    if (probe_writes(sc, addr, 3, secret, SECRET_HOST, &refused))
        attack_report(sc, VTIO_ATTACK_SUCCEEDED, "overwrote a host page at %#llx",
                      (unsigned long long)secret);
    else
        attack_report(sc, VTIO_ATTACK_BLOCKED, "%u of 3 writes refused, the page intact",
                      refused);
}

void attack_write_readonly(struct attack_scene *sc)
{
    struct rogue_buf b;
    if (!map_buf(sc, true, ATTACK_PAGE, VTIO_DMA_TO_DEVICE, &b)) {
        attack_report(sc, VTIO_ATTACK_NA, "could not map the page");
        return;
    }
    uint8_t buf[PROBE];
    bool readable = vtio_rogue_read(sc->rogue, b.iova, buf, sizeof(buf)) == 0;
    unsigned refused;
    if (probe_writes(sc, &b.iova, 1, b.pa, SECRET_HOST, &refused))
        attack_report(sc, VTIO_ATTACK_SUCCEEDED,
                      "wrote a TO_DEVICE buffer at DMA address %#llx", (unsigned long long)b.iova);
    else
        attack_report(sc, VTIO_ATTACK_BLOCKED, "write refused (the read %s)",
                      readable ? "worked, as it should" : "failed too");
    vtio_dma_unmap_page(sc->rogue_dev, b.iova, ATTACK_PAGE, VTIO_DMA_TO_DEVICE);
}

/* A 256-byte buffer at the start of a page whose other bytes are secrets,
 * as a kmalloc'd network buffer shares its page with other allocations. */
void attack_subpage_read(struct attack_scene *sc)
{
    const size_t len = 256;
    struct rogue_buf b;
    if (!map_buf(sc, true, len, VTIO_DMA_TO_DEVICE, &b)) {
        attack_report(sc, VTIO_ATTACK_NA, "could not map the buffer");
        return;
    }
    /* The buffer's own bytes are fair game; the rest of its page is not. */
    uint8_t page[ATTACK_PAGE];
    uint64_t base = b.iova & ~(uint64_t)(ATTACK_PAGE - 1);
    size_t leaked = 0;
    if (vtio_rogue_read(sc->rogue, base, page, sizeof(page)) == 0) {
        size_t off = b.iova - base;
        leaked = attack_secret_bytes(page, off, SECRET_HOST, 0) +
                 attack_secret_bytes(page + off + len, sizeof(page) - off - len, SECRET_HOST,
                                     off + len);
    }
    if (leaked)
        attack_report(sc, VTIO_ATTACK_SUCCEEDED, "read %zu secret bytes beside the buffer",
                      leaked);
    else
        attack_report(sc, VTIO_ATTACK_BLOCKED, "the page held only the buffer (%s)",
                      vtio_device_untrusted(sc->rogue_dev) ? "bounced" : "page read refused");
    vtio_dma_unmap_page(sc->rogue_dev, b.iova, len, VTIO_DMA_TO_DEVICE);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/*
 * The rogue reads its buffer in a loop on its own thread while the driver
 * unmaps it.  Reads that start after the unmap returned and still succeed
 * use a translation the IOMMU should have forgotten: with a flush queue
 * they go on until the queue is flushed (a window), without translation
 * they never stop.  The loop runs well past the flush-queue timeout.
 */
void attack_iova_reuse(struct attack_scene *sc)
{
    struct rogue_buf rp;
    if (!map_buf(sc, false, ATTACK_PAGE, VTIO_DMA_BIDIRECTIONAL, &rp)) {
        attack_report(sc, VTIO_ATTACK_NA, "could not map the buffer");
        return;
    }
    struct vtio_rogue_loop loop = { .access = VTIO_DMA_READ, .addr = rp.iova, .len = PROBE };
    if (vtio_rogue_loop_start(sc->rogue, &loop) < 0) {
        attack_report(sc, VTIO_ATTACK_NA, "the rogue's loop did not start");
        return;
    }
    vtio_dma_unmap_page(sc->rogue_dev, rp.iova, ATTACK_PAGE, VTIO_DMA_BIDIRECTIONAL);
    vtio_rogue_loop_mark(sc->rogue);
    unsigned timeout = sc->h->opts.fq_timeout_ms ? sc->h->opts.fq_timeout_ms : 10;
    sleep_ms(5 * timeout);
    struct vtio_rogue_loop_stats st;
    vtio_rogue_loop_stop(sc->rogue, &st);

    uint8_t buf[PROBE];
    bool still = vtio_rogue_read(sc->rogue, rp.iova, buf, sizeof(buf)) == 0;
    sc->out->window_accesses = st.ok_after_mark;
    sc->out->window_ns = st.last_ok_ns;
    if (still)
        attack_report(sc, VTIO_ATTACK_SUCCEEDED,
                      "%llu reads after the unmap, and the IOVA still works",
                      (unsigned long long)st.ok_after_mark);
    else if (st.ok_after_mark)
        attack_report(sc, VTIO_ATTACK_WINDOW, "%llu of %llu reads got through for %.2f ms",
                      (unsigned long long)st.ok_after_mark,
                      (unsigned long long)st.after_mark, st.last_ok_ns / 1e6);
    else
        attack_report(sc, VTIO_ATTACK_BLOCKED, "all %llu reads after the unmap refused",
                      (unsigned long long)st.after_mark);
}

/*
 * The driver does what a remove() does: unmaps its buffer (and the flush
 * queue is flushed, so this is not the iova-reuse window), clears Bus
 * Master Enable and unbinds.  A compliant device stops there; the rogue
 * ignores BME and writes both the old DMA address and the physical one.
 */
void attack_bme_off(struct attack_scene *sc)
{
    struct rogue_buf b;
    if (!map_buf(sc, true, ATTACK_PAGE, VTIO_DMA_BIDIRECTIONAL, &b)) {
        attack_report(sc, VTIO_ATTACK_NA, "could not map the buffer");
        return;
    }
    vtio_dma_unmap_page(sc->rogue_dev, b.iova, ATTACK_PAGE, VTIO_DMA_BIDIRECTIONAL);
    vtio_dma_flush(sc->h);
    vtio_pci_set_master(sc->rogue_fn, false);
    vtio_device_unbind(sc->rogue_dev);

    uint8_t junk[PROBE];
    memset(junk, 0xee, sizeof(junk));
    bool compliant_refused = vtio_rogue_write(sc->rogue, b.pa, junk, sizeof(junk)) == -EPERM;
    vtio_rogue_ignore_bme(sc->rogue, true);
    uint64_t addr[] = { b.iova, b.pa };
    unsigned refused;
    if (probe_writes(sc, addr, 2, b.pa, SECRET_HOST, &refused))
        attack_report(sc, VTIO_ATTACK_SUCCEEDED, "with BME clear, overwrote the old buffer");
    else
        attack_report(sc, VTIO_ATTACK_BLOCKED,
                      "BME clear: a compliant request %s, the rogue's %u refused",
                      compliant_refused ? "never left" : "went out", refused);
    vtio_rogue_ignore_bme(sc->rogue, false);
}

/*
 * Thousands of faulting reads, from all eight functions of the rogue's card
 * in turn (each function its own requester id), fill the fault recording
 * registers faster than the host drains them: the unit sets the overflow
 * bit (PFO) and drops faults until the host clears it.  Then function 0
 * reads a host secret: a unit whose log overflowed must go on refusing,
 * and once the host has caught up it records the new fault again.
 */
void attack_fault_flood(struct attack_scene *sc)
{
    enum { FLOOD = 4096 };
    uint64_t secret = attack_secret_page(sc, SECRET_HOST);
    if (!secret) {
        attack_report(sc, VTIO_ATTACK_NA, "no memory for the scene");
        return;
    }
    struct vtio_dma_port *port[VTIO_ROGUE_FUNCTIONS];
    for (unsigned fn = 0; fn < VTIO_ROGUE_FUNCTIONS; fn++) {
        port[fn] = vtio_pci_dev_dma_port(vtio_rogue_function(sc->rogue, fn));
        vtio_dma_port_ignore_bme(port[fn], true);    /* the accomplices have no driver */
    }
    uint64_t seen0 = sc->h->iommu ? vtio_iommu_fault_sync(sc->h) : 0;
    uint8_t buf[PROBE];
    unsigned refused = 0;
    for (unsigned i = 0; i < FLOOD; i++) {
        /* Low IOVAs the DMA layer does not hand out (it allocates from the
         * top of the 32-bit space down); pages of RAM without an IOMMU. */
        uint64_t addr = (1ull << 20) + (uint64_t)i * ATTACK_PAGE;
        refused += vtio_dma_read(port[i % VTIO_ROGUE_FUNCTIONS], addr, buf, sizeof(buf)) < 0;
    }
    uint64_t seen1 = sc->h->iommu ? vtio_iommu_fault_sync(sc->h) : 0;
    uint64_t where = 0;
    size_t leaked = probe_reads(sc, &secret, 1, SECRET_HOST, &where);
    uint64_t seen2 = sc->h->iommu ? vtio_iommu_fault_sync(sc->h) : 0;
    for (unsigned fn = 0; fn < VTIO_ROGUE_FUNCTIONS; fn++)
        vtio_dma_port_ignore_bme(port[fn], false);
    unsigned overflows = atomic_load(&sc->fault_overflows);
    if (leaked)
        attack_report(sc, VTIO_ATTACK_SUCCEEDED,
                      "%u of %d flood reads refused; the secret read got through", refused,
                      FLOOD);
    else
        attack_report(sc, VTIO_ATTACK_BLOCKED,
                      "%u flood reads refused, %llu faults recorded, %u overflow%s reported; "
                      "the secret read refused, its fault %s",
                      refused, (unsigned long long)(seen1 - seen0), overflows,
                      overflows == 1 ? "" : "s", seen2 > seen1 ? "recorded" : "lost");
}
