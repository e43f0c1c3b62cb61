/*
 * The DMA port: every device access to memory, and every interrupt message,
 * passes through here.
 *
 * An access happens in two passes over the same range.  The first asks the
 * translator (if any) for each piece and checks that the physical address it
 * names is RAM or MMIO; only if all of it is does the second pass move data,
 * translating again (an IOMMU answers that from its IOTLB).  So a refused
 * access reads and writes nothing.  The second pass copies RAM spans
 * directly between host mappings, which is what lets a device's copy run at
 * memcpy speed, and sends anything else through the address space's MMIO
 * dispatch.
 *
 * Writes into the interrupt window 0xFEE00000-0xFEEFFFFF are interrupt
 * messages, not memory writes, as on an x86 platform: a 4-byte aligned write
 * goes out as vtio_dma_msi(), where an IOMMU may remap or block it; any
 * other write that touches the window is refused.
 *
 * Each public call is one access for the translator: both passes run inside
 * its access_begin/access_end bracket, which is how an IOMMU knows which
 * DMA is in flight when it must wait for it after an invalidation.
 *
 * The requester id is read once when an access begins and travels with it
 * (struct request), so both passes and the translator's bracket name the
 * same requester even if a malicious model changes it meanwhile.  A forged
 * id (one that is not the function's own) first meets the fabric's source
 * check, which may drop the request before anything is translated: the
 * IOMMU never hears of it.  Honest traffic pays one relaxed load and a
 * compare for this.
 *
 * The port keeps no lock: bus mastering, the translator and the requester id
 * are atomics read once per access, and the counters are relaxed atomics.
 */
#include <vtio/dma_port.h>
#include <vtio/intr.h>
#include <vtio/mem.h>

#include <errno.h>
#include <string.h>

#include "hw/mem/mem_internal.h"

#define COUNT(port, field, n) \
    atomic_fetch_add_explicit(&(port)->stats.field, (n), memory_order_relaxed)

void vtio_dma_port_init(struct vtio_dma_port *port, struct vtio_mem *mem, uint16_t rid)
{
    memset(port, 0, sizeof(*port));
    port->mem = mem;
    port->rid = rid;
    atomic_init(&port->req_rid, rid);
    atomic_init(&port->bus_master, false);
    atomic_init(&port->ignore_bme, false);
    atomic_init(&port->xlat, NULL);
}

void vtio_dma_port_set_bus_master(struct vtio_dma_port *port, bool on)
{
    atomic_store_explicit(&port->bus_master, on, memory_order_release);
}

void vtio_dma_port_set_translator(struct vtio_dma_port *port,
                                  const struct vtio_dma_translator *xlat)
{
    atomic_store_explicit(&port->xlat, xlat, memory_order_release);
}

void vtio_dma_port_set_source_check(struct vtio_dma_port *port,
                                    vtio_dma_source_check_fn fn, void *opaque)
{
    port->source_check = fn;
    port->source_opaque = opaque;
}

void vtio_dma_port_forge_rid(struct vtio_dma_port *port, uint16_t rid)
{
    atomic_store_explicit(&port->req_rid, rid, memory_order_relaxed);
}

void vtio_dma_port_ignore_bme(struct vtio_dma_port *port, bool ignore)
{
    atomic_store_explicit(&port->ignore_bme, ignore, memory_order_relaxed);
}

void vtio_dma_port_get_stats(struct vtio_dma_port *port, struct vtio_dma_port_stats *st)
{
    st->reads = atomic_load(&port->stats.reads);
    st->writes = atomic_load(&port->stats.writes);
    st->bytes_read = atomic_load(&port->stats.bytes_read);
    st->bytes_written = atomic_load(&port->stats.bytes_written);
    st->faults = atomic_load(&port->stats.faults);
    st->master_aborts = atomic_load(&port->stats.master_aborts);
    st->msis = atomic_load(&port->stats.msis);
    st->source_violations = atomic_load(&port->stats.source_violations);
}

/* ------------------------------------------------------------------------
 * Translation and checking.
 */

/* One access as it leaves the function: the translator that will answer
 * for it and the requester id it carries, both fixed when it begins. */
struct request {
    const struct vtio_dma_translator *xl;
    uint16_t rid;
};

static struct request request_of(struct vtio_dma_port *port)
{
    return (struct request){
        .xl = atomic_load(&port->xlat),
        .rid = atomic_load_explicit(&port->req_rid, memory_order_relaxed),
    };
}

/* Starts one access: fixes its request and opens the translator's bracket. */
static struct request access_begin(struct vtio_dma_port *port)
{
    struct request rq = request_of(port);
    if (rq.xl && rq.xl->ops->access_begin)
        rq.xl->ops->access_begin(rq.xl->opaque);
    return rq;
}

static void access_end(const struct vtio_dma_translator *xl)
{
    if (xl && xl->ops->access_end)
        xl->ops->access_end(xl->opaque);
}

/* Translates the piece of [iova, iova + len) that starts at iova. */
static int xlate(const struct request *rq, uint64_t iova, uint64_t len,
                 enum vtio_dma_access access, uint64_t *pa, uint64_t *span)
{
    const struct vtio_dma_translator *xl = rq->xl;
    if (!xl) {
        *pa = iova;
        *span = len;
        return 0;
    }
    int ret = xl->ops->translate(xl->opaque, rq->rid, iova, len, access, pa, span);
    if (ret == 0 && (*span == 0 || *span > len))
        ret = -EFAULT;      /* a translator that answers nothing moves nothing */
    return ret;
}

static bool in_msi_window(uint64_t addr, uint64_t len)
{
    return addr < VTIO_MSI_WINDOW_BASE + VTIO_MSI_WINDOW_SIZE &&
           VTIO_MSI_WINDOW_BASE < addr + len;
}

/* Whether the request may leave the function at all: bus mastering (unless
 * the model ignores it) and, for a forged requester id, the fabric's source
 * check.  A dropped request is never translated. */
static int requester_ok(struct vtio_dma_port *port, const struct request *rq)
{
    if (!atomic_load_explicit(&port->bus_master, memory_order_acquire) &&
        !atomic_load_explicit(&port->ignore_bme, memory_order_relaxed)) {
        COUNT(port, master_aborts, 1);
        return -EPERM;
    }
    if (rq->rid != port->rid && port->source_check &&
        port->source_check(port->source_opaque, port->rid, rq->rid) < 0) {
        COUNT(port, source_violations, 1);
        return -EPERM;
    }
    return 0;
}

static int range_ok(uint64_t addr, uint64_t len)
{
    return len && addr + len - 1 < addr ? -EINVAL : 0;
}

/* The common gate of every access: the requester, then the range itself. */
static int gate(struct vtio_dma_port *port, const struct request *rq, uint64_t addr,
                uint64_t len)
{
    int ret = requester_ok(port, rq);
    return ret < 0 ? ret : range_ok(addr, len);
}

/* The first byte of [pa, pa + len) that is in no region (len if none). */
static uint64_t mapped_prefix(struct vtio_mem *mem, uint64_t pa, uint64_t len)
{
    uint64_t lo = 0, hi = len;                /* [pa, pa + lo) mapped; pa + hi not */
    if (vtio_mem_is_mapped(mem, pa, len))
        return len;
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (vtio_mem_is_mapped(mem, pa + lo, mid - lo))
            lo = mid;
        else
            hi = mid;
    }
    return vtio_mem_is_mapped(mem, pa, 1) ? lo : 0;
}

/* First pass: every byte translates and lands in RAM or MMIO.  On failure
 * *fault (if not NULL) is the first device address refused; translation
 * stops at the first refused piece, so an IOMMU records one fault. */
static int check_range(struct vtio_dma_port *port, const struct request *rq,
                       uint64_t addr, uint64_t len, enum vtio_dma_access access,
                       uint64_t *fault)
{
    while (len) {
        uint64_t pa, span;
        int ret = xlate(rq, addr, len, access, &pa, &span);
        /* A translation into the interrupt window is undefined in VT-d
         * (software must not map it); vtio refuses it. */
        if (ret == 0 && rq->xl && in_msi_window(pa, span))
            ret = -EFAULT;
        uint64_t ok = ret == 0 ? mapped_prefix(port->mem, pa, span) : 0;
        if (ret == 0 && ok < span)
            ret = -EFAULT;
        if (ret < 0) {
            COUNT(port, faults, 1);
            if (fault)
                *fault = addr + ok;
            return ret;
        }
        addr += span, len -= span;
    }
    return 0;
}

/* A data write must not touch the interrupt window (see the top comment). */
static int check_target(struct vtio_dma_port *port, const struct request *rq,
                        uint64_t addr, uint64_t len, uint64_t *fault)
{
    const uint64_t win = VTIO_MSI_WINDOW_BASE;
    if (in_msi_window(addr, len)) {
        /* The part below the window first: *fault is the first byte refused. */
        int ret = addr < win ? check_range(port, rq, addr, win - addr, VTIO_DMA_WRITE, fault)
                             : 0;
        if (ret < 0)
            return ret;
        COUNT(port, faults, 1);
        if (fault)
            *fault = addr > win ? addr : win;
        return -EFAULT;
    }
    return check_range(port, rq, addr, len, VTIO_DMA_WRITE, fault);
}

static int do_check(struct vtio_dma_port *port, const struct request *rq,
                    uint64_t addr, uint64_t len, enum vtio_dma_access access, uint64_t *fault)
{
    int ret = gate(port, rq, addr, len);
    if (ret < 0 && fault)
        *fault = addr;
    if (ret == 0)
        ret = access == VTIO_DMA_WRITE ? check_target(port, rq, addr, len, fault)
                                       : check_range(port, rq, addr, len, access, fault);
    return ret;
}

/* ------------------------------------------------------------------------
 * Second pass: moving data.  A segment is a run of the transfer that is
 * contiguous both in the device's address space and in physical memory and
 * lies in one region: host != NULL for RAM, else MMIO at pa.
 */

struct segment {
    uint64_t pa, len;
    uint8_t *host;
};

static int segment_at(struct vtio_dma_port *port, const struct request *rq,
                      uint64_t addr, uint64_t len, enum vtio_dma_access access,
                      struct segment *seg)
{
    uint64_t span;
    int ret = xlate(rq, addr, len, access, &seg->pa, &span);
    if (ret < 0)
        return ret;
    void *host;
    if (vtio_mem_ram_span(port->mem, seg->pa, span, &host, &seg->len) == 0) {
        seg->host = host;
    } else {
        seg->host = NULL;
        seg->len = span < 64 ? span : 64;   /* MMIO: a register's worth at a time */
    }
    return 0;
}

static int move_in(struct vtio_dma_port *port, const struct request *rq,
                   uint64_t addr, uint8_t *buf, uint64_t len)
{
    while (len) {
        struct segment s;
        int ret = segment_at(port, rq, addr, len, VTIO_DMA_READ, &s);
        if (ret < 0)
            return ret;
        if (s.host)
            vtio_ram_load(buf, s.host, s.len);
        else if ((ret = vtio_mem_dev_read(port->mem, s.pa, buf, s.len)) < 0)
            return ret;
        addr += s.len, buf += s.len, len -= s.len;
    }
    return 0;
}

static int move_out(struct vtio_dma_port *port, const struct request *rq,
                    uint64_t addr, const uint8_t *buf, uint64_t len)
{
    while (len) {
        struct segment s;
        int ret = segment_at(port, rq, addr, len, VTIO_DMA_WRITE, &s);
        if (ret < 0)
            return ret;
        if (s.host)
            vtio_ram_store(s.host, buf, s.len);
        else if ((ret = vtio_mem_dev_write(port->mem, s.pa, buf, s.len)) < 0)
            return ret;
        addr += s.len, buf += s.len, len -= s.len;
    }
    return 0;
}

/* An interrupt message that has passed the gate: the translator may remap
 * or block it (-ENOSYS: it lets the write go on to the window). */
static int send_msi(struct vtio_dma_port *port, const struct request *rq, uint64_t addr,
                    uint32_t data)
{
    int ret = -ENOSYS;
    if (rq->xl && rq->xl->ops->msi)
        ret = rq->xl->ops->msi(rq->xl->opaque, rq->rid, addr, data);
    if (ret == -ENOSYS)
        ret = vtio_mem_dev_write(port->mem, addr, &data, 4);
    if (ret == 0)
        COUNT(port, msis, 1);
    else
        COUNT(port, faults, 1);
    return ret;
}

static int do_read(struct vtio_dma_port *port, const struct request *rq, uint64_t addr,
                   void *buf, size_t len)
{
    int ret = gate(port, rq, addr, len);
    if (ret == 0)
        ret = check_range(port, rq, addr, len, VTIO_DMA_READ, NULL);
    if (ret == 0)
        ret = move_in(port, rq, addr, buf, len);
    if (ret == 0) {
        COUNT(port, reads, 1);
        COUNT(port, bytes_read, len);
    }
    return ret;
}

static int do_write(struct vtio_dma_port *port, const struct request *rq, uint64_t addr,
                    const void *buf, size_t len)
{
    int ret = gate(port, rq, addr, len);
    if (ret < 0)
        return ret;
    if (in_msi_window(addr, len)) {
        uint32_t data;
        if (len != 4 || (addr & 3)) {
            COUNT(port, faults, 1);
            return -EFAULT;
        }
        memcpy(&data, buf, 4);
        return send_msi(port, rq, addr, data);
    }
    ret = check_range(port, rq, addr, len, VTIO_DMA_WRITE, NULL);
    if (ret == 0)
        ret = move_out(port, rq, addr, buf, len);
    if (ret == 0) {
        COUNT(port, writes, 1);
        COUNT(port, bytes_written, len);
    }
    return ret;
}

/*
 * The device-internal operations walk two ranges (or one) segment by
 * segment; where a segment is not RAM they stage through a small buffer.
 */
static int do_copy(struct vtio_dma_port *port, const struct request *rq, uint64_t dst,
                   uint64_t src, uint64_t len, enum vtio_dma_access *which)
{
    enum vtio_dma_access side = VTIO_DMA_READ;
    int ret = gate(port, rq, src, len);
    if (ret == 0)
        ret = range_ok(dst, len);
    if (ret == 0 && (ret = check_range(port, rq, src, len, VTIO_DMA_READ, NULL)) == 0 &&
        (ret = check_target(port, rq, dst, len, NULL)) < 0)
        side = VTIO_DMA_WRITE;
    while (ret == 0 && len) {
        struct segment s, d;
        if ((ret = segment_at(port, rq, src, len, VTIO_DMA_READ, &s)) < 0) {
            side = VTIO_DMA_READ;
            break;
        }
        if ((ret = segment_at(port, rq, dst, len, VTIO_DMA_WRITE, &d)) < 0) {
            side = VTIO_DMA_WRITE;
            break;
        }
        uint64_t n = s.len < d.len ? s.len : d.len;
        if (s.host && d.host && n > 8) {
            memmove(d.host, s.host, n);
        } else if (s.host && d.host) {
            uint64_t word;          /* keep small aligned copies single-copy atomic */
            vtio_ram_load(&word, s.host, n);
            vtio_ram_store(d.host, &word, n);
        } else {
            uint8_t bounce[64];
            n = n < sizeof(bounce) ? n : sizeof(bounce);
            if ((ret = move_in(port, rq, src, bounce, n)) < 0 ||
                (ret = move_out(port, rq, dst, bounce, n)) < 0)
                break;
        }
        COUNT(port, bytes_read, n);
        COUNT(port, bytes_written, n);
        src += n, dst += n, len -= n;
    }
    if (ret == 0) {
        COUNT(port, reads, 1);
        COUNT(port, writes, 1);
    } else if (which) {
        *which = side;
    }
    return ret;
}

static int do_fill(struct vtio_dma_port *port, const struct request *rq, uint64_t dst,
                   uint64_t pattern, uint64_t len)
{
    int ret = gate(port, rq, dst, len);
    if (ret == 0)
        ret = check_target(port, rq, dst, len, NULL);
    /* A pattern buffer whose byte i is pattern byte i % 8, with 8 bytes of
     * slack so a segment at any transfer offset starts at the right phase. */
    uint64_t buf[513];
    for (size_t i = 0; i < sizeof(buf) / 8; i++)
        buf[i] = pattern;
    const size_t chunk = sizeof(buf) - 8;
    uint64_t done = 0;
    while (ret == 0 && done < len) {
        struct segment d;
        if ((ret = segment_at(port, rq, dst + done, len - done, VTIO_DMA_WRITE, &d)) < 0)
            break;
        uint64_t left = d.len;
        while (left && ret == 0) {
            size_t n = left < chunk ? left : chunk;
            const uint8_t *from = (const uint8_t *)buf + (done % 8);
            if (d.host)
                vtio_ram_store(d.host + (d.len - left), from, n);
            else
                ret = move_out(port, rq, dst + done, from, n);
            done += n, left -= n;
        }
    }
    if (ret == 0) {
        COUNT(port, writes, 1);
        COUNT(port, bytes_written, len);
    }
    return ret;
}

static int do_compare(struct vtio_dma_port *port, const struct request *rq, uint64_t a,
                      uint64_t b, uint64_t len, uint64_t *diff)
{
    int ret = gate(port, rq, a, len);
    if (ret == 0 && (ret = range_ok(b, len)) == 0 &&
        (ret = check_range(port, rq, a, len, VTIO_DMA_READ, NULL)) == 0)
        ret = check_range(port, rq, b, len, VTIO_DMA_READ, NULL);
    uint64_t off = 0;
    while (ret == 0 && off < len) {
        uint8_t ba[64], bb[64];
        struct segment sa, sb;
        if ((ret = segment_at(port, rq, a + off, len - off, VTIO_DMA_READ, &sa)) < 0 ||
            (ret = segment_at(port, rq, b + off, len - off, VTIO_DMA_READ, &sb)) < 0)
            break;
        uint64_t n = sa.len < sb.len ? sa.len : sb.len;
        const uint8_t *pa = sa.host, *pb = sb.host;
        if (!pa || !pb) {
            n = n < sizeof(ba) ? n : sizeof(ba);
            if ((ret = move_in(port, rq, a + off, ba, n)) < 0 ||
                (ret = move_in(port, rq, b + off, bb, n)) < 0)
                break;
            pa = ba, pb = bb;
        }
        if (memcmp(pa, pb, n) != 0) {
            while (*pa == *pb)
                pa++, pb++, off++;
            break;
        }
        off += n;
    }
    if (ret == 0) {
        *diff = off;
        COUNT(port, reads, 2);
        COUNT(port, bytes_read, 2 * (off < len ? off + 1 : len));
    }
    return ret;
}

/*
 * The public calls: each access is one bracket for the translator.
 */
#define BRACKETED(call)                                                        \
    do {                                                                       \
        const struct request rq_ = access_begin(port);                        \
        const struct request *rq = &rq_;                                       \
        int ret = call;                                                        \
        access_end(rq->xl);                                                    \
        return ret;                                                            \
    } while (0)

int vtio_dma_check(struct vtio_dma_port *port, uint64_t addr, uint64_t len,
                   enum vtio_dma_access access)
{
    BRACKETED(do_check(port, rq, addr, len, access, NULL));
}

int vtio_dma_find_fault(struct vtio_dma_port *port, uint64_t addr, uint64_t len,
                        enum vtio_dma_access access, uint64_t *fault)
{
    BRACKETED(do_check(port, rq, addr, len, access, fault));
}

int vtio_dma_read(struct vtio_dma_port *port, uint64_t addr, void *buf, size_t len)
{
    BRACKETED(do_read(port, rq, addr, buf, len));
}

int vtio_dma_write(struct vtio_dma_port *port, uint64_t addr, const void *buf, size_t len)
{
    BRACKETED(do_write(port, rq, addr, buf, len));
}

int vtio_dma_copy(struct vtio_dma_port *port, uint64_t dst, uint64_t src, uint64_t len,
                  enum vtio_dma_access *which)
{
    BRACKETED(do_copy(port, rq, dst, src, len, which));
}

int vtio_dma_fill(struct vtio_dma_port *port, uint64_t dst, uint64_t pattern, uint64_t len)
{
    BRACKETED(do_fill(port, rq, dst, pattern, len));
}

int vtio_dma_compare(struct vtio_dma_port *port, uint64_t a, uint64_t b, uint64_t len,
                     uint64_t *diff)
{
    BRACKETED(do_compare(port, rq, a, b, len, diff));
}

int vtio_dma_msi(struct vtio_dma_port *port, uint64_t addr, uint32_t data)
{
    const struct request rq = request_of(port);
    int ret = gate(port, &rq, addr, 4);
    return ret < 0 ? ret : send_msi(port, &rq, addr, data);
}
