/*
 * rogue: the malicious device of include/vtio/dev/rogue.h.
 *
 * The PCI face is ordinary: BAR0 is 4 KiB of scratch registers (a read
 * returns what was last written there, at any naturally aligned size up to
 * 8 bytes; each 8-byte word is one atomic, so a 64-bit access is
 * single-copy atomic and narrower ones update their bytes of it), BAR2
 * holds the MSI-X table and PBA, which the bus emulates.  Function Level
 * Reset returns the device to its power-on state: registers zero, no
 * forged requester id, bus mastering respected again.  A loop keeps
 * running across a reset (the device's thread is the attacker's, not the
 * function's), but from then on its requests meet a cleared BME.
 *
 * Everything the device does to memory goes through its DMA port; the
 * malicious powers are the port's (forge_rid, ignore_bme).  Accomplice
 * functions (1..7) are bare: an identity and a DMA port, no BARs, no
 * reset; function 0's header says multi-function when there are any.
 *
 * The loop.  vtio_rogue_loop_start() creates one thread that repeats the
 * access until vtio_rogue_loop_stop() asks it to end and joins it.  Before
 * each access the thread reads CLOCK_MONOTONIC (t); after it, it reads the
 * mark.  vtio_rogue_loop_mark() stores the clock's value with a seq_cst
 * store, so an access that starts after mark() returned sees t >= mark and
 * is counted after the mark; one that started before mark() read the clock
 * has t < mark and is not.  (One that overlaps the mark() call itself may
 * fall either way.)  The counters belong to the loop thread alone until
 * the join, which publishes them to loop_stop().  loop_start() waits on a
 * condition variable for the first access to complete, so the caller knows
 * the device is already hammering when it returns.
 *
 * Threads: single accesses from any thread; loop_start, loop_stop and
 * destroy from one controlling thread; loop_mark from any thread.
 */
#include <vtio/dev/rogue.h>
#include <vtio/pci.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/error.h"

#define REG_WORDS    (VTIO_ROGUE_REGS_SIZE / 8)
#define LOOP_MAX_LEN 4096u
#define NO_MARK      UINT64_MAX

struct vtio_rogue {
    struct vtio_pci_dev *pci;              /* function 0 */
    struct vtio_dma_port *port;            /* ... and its port */
    struct vtio_pci_dev *fn[VTIO_ROGUE_FUNCTIONS];
    unsigned functions;
    _Atomic uint64_t regs[REG_WORDS];      /* BAR0, little-endian words */

    /* The loop.  running is the controlling thread's; the thread owns loop
     * and counts until it is joined. */
    bool running;
    pthread_t thread;
    struct vtio_rogue_loop loop;
    struct vtio_rogue_loop_stats counts;
    atomic_bool stop;
    _Atomic uint64_t mark_ns;
    pthread_mutex_t lock;                  /* guards first_done */
    pthread_cond_t first_cv;
    bool first_done;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- BAR0: scratch registers */

/* The bits of an access of `size` bytes at `off` within its 8-byte word. */
static uint64_t lane_mask(uint64_t off, unsigned size)
{
    uint64_t m = size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;
    return m << (8 * (off & 7));
}

static uint64_t regs_read(void *opaque, uint64_t off, unsigned size)
{
    struct vtio_rogue *r = opaque;
    uint64_t w = atomic_load(&r->regs[off / 8]);
    return (w & lane_mask(off, size)) >> (8 * (off & 7));
}

static void regs_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct vtio_rogue *r = opaque;
    uint64_t m = lane_mask(off, size), v = (val << (8 * (off & 7))) & m;
    uint64_t old = atomic_load(&r->regs[off / 8]);
    while (!atomic_compare_exchange_weak(&r->regs[off / 8], &old, (old & ~m) | v))
        ;
}

static const struct vtio_mmio_ops regs_ops = {
    .read = regs_read,
    .write = regs_write,
};

/* FLR and bus reset: power-on state (the bus has cleared BME already). */
static void rogue_reset(void *opaque)
{
    struct vtio_rogue *r = opaque;
    for (unsigned i = 0; i < REG_WORDS; i++)
        atomic_store(&r->regs[i], 0);
    vtio_dma_port_forge_rid(r->port, r->port->rid);
    vtio_dma_port_ignore_bme(r->port, false);
}

/* ---- life cycle */

static void free_rogue(struct vtio_rogue *r)
{
    pthread_cond_destroy(&r->first_cv);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* What every function of the card shows: its identity, nothing more. */
static struct vtio_pci_dev_info identity(const char *name)
{
    return (struct vtio_pci_dev_info){
        .name = name,
        .vendor_id = VTIO_ROGUE_VENDOR_ID,
        .device_id = VTIO_ROGUE_DEVICE_ID,
        .subsystem_vendor_id = VTIO_ROGUE_VENDOR_ID,
        .subsystem_id = VTIO_ROGUE_DEVICE_ID,
        .class_code = VTIO_ROGUE_CLASS,
    };
}

/* Every slot the card needs is free (so a failed create plugs nothing in). */
static int check_slots(struct vtio_pci_bus *bus, uint8_t busno, uint8_t devfn,
                       unsigned functions)
{
    if (functions == 0 || functions > VTIO_ROGUE_FUNCTIONS)
        return vtio_fail(-EINVAL, "rogue: %u functions (1..%d)", functions,
                         VTIO_ROGUE_FUNCTIONS);
    if (functions > 1 && VTIO_PCI_RID_FN(devfn) != 0)
        return vtio_fail(-EINVAL, "rogue: a multi-function card starts at function 0");
    for (unsigned fn = 0; fn < functions; fn++)
        if (vtio_pci_bus_find(bus, (uint16_t)(busno << 8 | (devfn + fn))))
            return vtio_fail(-EEXIST, "rogue: slot %02x:%02x.%u is taken", busno,
                             VTIO_PCI_RID_DEV(devfn), fn);
    return 0;
}

int vtio_rogue_create(struct vtio_pci_bus *bus, uint8_t busno, uint8_t devfn,
                      unsigned functions, struct vtio_rogue **out)
{
    if (!bus || !out)
        return vtio_fail(-EINVAL, "rogue: no bus or no result pointer");
    int rc = check_slots(bus, busno, devfn, functions);
    if (rc < 0)
        return rc;
    struct vtio_rogue *r = calloc(1, sizeof(*r));
    if (!r)
        return vtio_fail(-ENOMEM, "rogue: out of memory");
    for (unsigned i = 0; i < REG_WORDS; i++)
        atomic_init(&r->regs[i], 0);
    atomic_init(&r->stop, false);
    atomic_init(&r->mark_ns, NO_MARK);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->first_cv, NULL);

    struct vtio_pci_dev_info info = identity("rogue");
    info.multifunction = functions > 1;
    info.bar[VTIO_ROGUE_BAR_REGS] = (struct vtio_pci_bar_info){
        .size = VTIO_ROGUE_REGS_SIZE, .ops = &regs_ops, .opaque = r };
    info.bar[VTIO_ROGUE_BAR_MSIX] = (struct vtio_pci_bar_info){ .size = VTIO_ROGUE_MSIX_SIZE };
    info.msix_vectors = VTIO_ROGUE_VECTORS;
    info.msix_bar = VTIO_ROGUE_BAR_MSIX;
    info.msix_table_offset = VTIO_ROGUE_MSIX_TABLE;
    info.msix_pba_offset = VTIO_ROGUE_MSIX_PBA;
    info.reset = rogue_reset;
    info.opaque = r;
    rc = vtio_pci_dev_create(bus, busno, devfn, &info, &r->pci);
    const struct vtio_pci_dev_info accomplice = identity("rogue-accomplice");
    for (unsigned fn = 1; rc == 0 && fn < functions; fn++)
        rc = vtio_pci_dev_create(bus, busno, (uint8_t)(devfn + fn), &accomplice, &r->fn[fn]);
    if (rc < 0) {
        free_rogue(r);      /* the functions plugged in stay with the bus */
        return rc;
    }
    r->fn[0] = r->pci;
    r->functions = functions;
    r->port = vtio_pci_dev_dma_port(r->pci);
    *out = r;
    return 0;
}

void vtio_rogue_destroy(struct vtio_rogue *r)
{
    if (!r)
        return;
    if (r->running)
        vtio_rogue_loop_stop(r, NULL);
    free_rogue(r);
}

struct vtio_pci_dev *vtio_rogue_pci(struct vtio_rogue *r)
{
    return r ? r->pci : NULL;
}

struct vtio_pci_dev *vtio_rogue_function(struct vtio_rogue *r, unsigned fn)
{
    return r && fn < r->functions ? r->fn[fn] : NULL;
}

/* ---- single accesses and powers */

int vtio_rogue_read(struct vtio_rogue *r, uint64_t addr, void *buf, size_t len)
{
    return vtio_dma_read(r->port, addr, buf, len);
}

int vtio_rogue_write(struct vtio_rogue *r, uint64_t addr, const void *buf, size_t len)
{
    return vtio_dma_write(r->port, addr, buf, len);
}

int vtio_rogue_msi(struct vtio_rogue *r, uint64_t addr, uint32_t data)
{
    return vtio_dma_msi(r->port, addr, data);
}

int vtio_rogue_raise(struct vtio_rogue *r, unsigned vector)
{
    return vtio_pci_msix_notify(r->pci, vector);
}

void vtio_rogue_forge_rid(struct vtio_rogue *r, uint16_t rid)
{
    vtio_dma_port_forge_rid(r->port, rid);
}

void vtio_rogue_ignore_bme(struct vtio_rogue *r, bool ignore)
{
    vtio_dma_port_ignore_bme(r->port, ignore);
}

/* ---- the loop */

static void count_access(struct vtio_rogue_loop_stats *c, uint64_t start, uint64_t mark, bool ok)
{
    c->accesses++;
    c->ok += ok;
    if (start < mark)
        return;
    c->after_mark++;
    if (ok) {
        c->ok_after_mark++;
        c->last_ok_ns = start - mark;
    }
}

static void *loop_main(void *arg)
{
    struct vtio_rogue *r = arg;
    const struct vtio_rogue_loop *l = &r->loop;
    uint8_t buf[LOOP_MAX_LEN];
    memset(buf, l->fill, l->len);
    bool first = true;
    do {
        uint64_t start = now_ns();
        int rc = l->access == VTIO_DMA_READ ? vtio_dma_read(r->port, l->addr, buf, l->len)
                                            : vtio_dma_write(r->port, l->addr, buf, l->len);
        count_access(&r->counts, start, atomic_load(&r->mark_ns), rc == 0);
        if (first) {
            first = false;
            pthread_mutex_lock(&r->lock);
            r->first_done = true;
            pthread_cond_signal(&r->first_cv);
            pthread_mutex_unlock(&r->lock);
        }
    } while (!atomic_load_explicit(&r->stop, memory_order_relaxed));
    return NULL;
}

static int loop_check(const struct vtio_rogue_loop *loop)
{
    if (!loop)
        return vtio_fail(-EINVAL, "rogue: no loop");
    if (loop->access != VTIO_DMA_READ && loop->access != VTIO_DMA_WRITE)
        return vtio_fail(-EINVAL, "rogue: loop access %d is neither read nor write",
                         (int)loop->access);
    if (loop->len == 0 || loop->len > LOOP_MAX_LEN)
        return vtio_fail(-EINVAL, "rogue: loop length %u is not 1..%u", loop->len,
                         LOOP_MAX_LEN);
    return 0;
}

int vtio_rogue_loop_start(struct vtio_rogue *r, const struct vtio_rogue_loop *loop)
{
    if (!r)
        return vtio_fail(-EINVAL, "rogue: no device");
    int rc = loop_check(loop);
    if (rc < 0)
        return rc;
    if (r->running)
        return vtio_fail(-EBUSY, "rogue: a loop is already running");
    r->loop = *loop;
    r->counts = (struct vtio_rogue_loop_stats){ 0 };
    r->first_done = false;
    atomic_store(&r->stop, false);
    atomic_store(&r->mark_ns, NO_MARK);
    if (pthread_create(&r->thread, NULL, loop_main, r) != 0)
        return vtio_fail(-ENOMEM, "rogue: cannot start the loop thread");
    r->running = true;
    pthread_mutex_lock(&r->lock);
    while (!r->first_done)
        pthread_cond_wait(&r->first_cv, &r->lock);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

void vtio_rogue_loop_mark(struct vtio_rogue *r)
{
    if (r)
        atomic_store(&r->mark_ns, now_ns());
}

int vtio_rogue_loop_stop(struct vtio_rogue *r, struct vtio_rogue_loop_stats *st)
{
    if (!r || !r->running)
        return vtio_fail(-EINVAL, "rogue: no loop is running");
    atomic_store_explicit(&r->stop, true, memory_order_relaxed);
    pthread_join(r->thread, NULL);
    r->running = false;
    if (st)
        *st = r->counts;
    return 0;
}
