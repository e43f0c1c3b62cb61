#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets: tests/fuzz/corpus/<target>/.

Each seed is a meaningful program in the target's input language (the op
tables at the top of tests/fuzz/fuzz_<target>.c; the op numbers below must
match their enums).  libFuzzer starts from these and mutates them, so the
seeds put it next to the deep states at once: translation enabled over
well-formed tables, queued invalidation and interrupt remapping running, a
DMA ring doing real copies, a VFIO container with a device open.

It also writes the hand-made reproducers: regress/ (bugs that were fixed;
the replay tests run them) and known/ (bugs found and not fixed yet, which
no test runs; docs/fuzzing.md says what each shows).

Run it after changing an input format:  python3 tests/fuzz/make_seeds.py
A format change also changes what the inputs libFuzzer found mean: check
that each file in regress/ still reproduces its bug on the old code, or
re-minimize it.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def u8(v): return struct.pack('<B', v & 0xff)
def u16(v): return struct.pack('<H', v & 0xffff)
def u32(v): return struct.pack('<I', v & 0xffffffff)
def u64(v): return struct.pack('<Q', v & 0xffffffffffffffff)


def write(target, name, data):
    d = os.path.join(HERE, 'corpus', target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


# ---------------------------------------------------------------------------
# fuzz_vtd
(V_REG_W32, V_REG_W64, V_REG_R, V_RAM_W64, V_RAM_BYTES, V_XLATE, V_ATS, V_INTR,
 V_QI_PUSH, V_ROOT, V_QI_ON, V_IR_ON, V_CTX, V_SL_MAP, V_SM_CTX, V_PASID,
 V_FL_MAP, V_IRTE, V_RESET, V_FLUSH) = range(20)
ARCH = 0x8000               # register operand: index into arch_regs[]
R_GSTS, R_FSTS, R_FECTL = ARCH | 4, ARCH | 8, ARCH | 9
SID = 0x0018                # 00:03.0


def caps(width=48, scalable=False, first_level=False, nested=False, dtlb=False,
         frcds=8, no_qi=False, no_ir=False):
    a = {39: 0, 48: 1, 57: 2}[width] | (4 if scalable else 0) | (8 if first_level else 0)
    a |= (16 if nested else 0) | (32 if dtlb else 0)
    b = (frcds - 1) | (16 if no_ir else 0) | (64 if no_qi else 0)
    return u8(a) + u8(b)


def root(page, smt=False, te=True):
    return u8(V_ROOT) + u16(page) + u8((1 if smt else 0) | (0 if te else 4))


def ctx(sid, levels=4, did=1, tbl=0, tt=0, fpd=False):
    return u8(V_CTX) + u16(sid) + u8(tt | (levels - 3) << 2 | (0x80 if fpd else 0)) + \
        u16(did) + u8(tbl)


def sl_map(tbl, levels, iova, pa, shift=12, perm=3):
    lv = (levels - 3) | ((shift - 12) // 9) << 2
    return u8(V_SL_MAP) + u8(tbl) + u8(lv) + u64(iova) + u32(pa >> 4) + u8(perm)


def xlate(sid, addr, write=False, pasid=None, ats=False, priv=False, sel=3):
    f = (1 if pasid is not None else 0) | (4 if write else 0) | (16 if priv else 0) | sel << 5
    return u8(V_ATS if ats else V_XLATE) + u16(sid) + u8(f) + u32(pasid or 0) + u64(addr)


def reg32(sel, val): return u8(V_REG_W32) + u16(sel) + u32(val)
def reg64(sel, val): return u8(V_REG_W64) + u16(sel) + u64(val)
def regr(sel, size=4): return u8(V_REG_R) + u16(sel) + u8(size)
def ram64(off, val): return u8(V_RAM_W64) + u32(off) + u64(val)


def qi_push(q0, q1, q2=0, q3=0, slots=1):
    return u8(V_QI_PUSH) + u8(slots - 1) + u64(q0) + u64(q1) + u64(q2) + u64(q3)


def intr(sid, addr, data=0):
    return u8(V_INTR) + u16(sid) + u8(0) + u32(addr) + u32(data)


def vtd_seeds():
    # Legacy mode: a 4-level second-level mapping, read, write, a hole, and the
    # fault record cleared as Linux's handler does.
    p = caps() + root(0x10, te=False) + ctx(SID, 4, did=1, tbl=0)
    p += sl_map(0, 4, 0x10000, 0x80000, perm=1)            # read-only page
    p += sl_map(0, 4, 0x200000, 0x400000, shift=21, perm=3)  # 2 MiB page
    p += root(0x10)
    p += xlate(SID, 0x10123) + xlate(SID, 0x10123, write=True)
    p += xlate(SID, 0x2345678) + xlate(SID, 0x201000, write=True)
    p += regr(R_FSTS) + reg32(ARCH | 34, 0x80000000) + reg32(R_FSTS, 3)
    write('vtd', 'legacy-translate', p)

    # Pass-through and ATS contexts on two functions.
    p = caps(dtlb=True) + root(0x10, te=False)
    p += ctx(SID + 1, tt=2, did=3) + ctx(SID + 2, tt=1, did=4, tbl=1)
    p += sl_map(1, 4, 0x5000, 0x6000) + root(0x10)
    p += xlate(SID + 1, 0x123456) + xlate(SID + 2, 0x5008, ats=True)
    p += xlate(SID + 2, 0x6000, write=True)
    write('vtd', 'passthrough-ats', p)

    # Queued invalidation: context-cache and IOTLB global, then a wait with a
    # status write; an error (unknown type) halts the queue, FSTS.IQE clears it.
    p = caps() + u8(V_QI_ON) + u16(0x20) + u8(0)
    p += qi_push(0x1 | 1 << 4, 0) + qi_push(0x2 | 1 << 4, 0)
    p += qi_push(0x5 | 1 << 5 | 0xabcd << 32, 0x30000)
    p += qi_push(0xf, 0) + regr(ARCH | 27, 8) + reg32(R_FSTS, 0x10)
    p += qi_push(0x5 | 1 << 4, 0)
    write('vtd', 'queued-invalidation', p)

    # Interrupt remapping: one IRTE (vector 0x40, SID-checked), a remapped
    # request, a wrong source, a compatibility-format request (blocked).
    irt = 0x40000
    p = caps() + u8(V_QI_ON) + u16(0x20) + u8(0) + u8(V_IR_ON) + u16(irt >> 12) + u8(3)
    p += ram64(irt + 16 * 2, 1 | 0x40 << 16 | 1 << 40) + ram64(irt + 16 * 2 + 8, SID | 1 << 18)
    p += reg32(R_FECTL, 0) + intr(SID, 0xfee00000 | 1 << 4 | 2 << 5)
    p += intr(SID + 8, 0xfee00000 | 1 << 4 | 2 << 5) + intr(SID, 0xfee00000)
    p += u8(V_IR_ON) + u16(irt >> 12) + u8(3 | 16) + intr(SID, 0xfee01000, 0x31)
    write('vtd', 'interrupt-remapping', p)

    # Scalable mode: RID_PASID with second-level tables, a PASID with
    # first-level tables (user page, write sets D).
    p = caps(scalable=True, first_level=True) + root(0x10, smt=True, te=False)
    p += u8(V_SM_CTX) + u16(SID) + u8(0) + u8(8) + u8(1) + u32(0)
    p += u8(V_PASID) + u8(1) + u32(0) + u8(5) + u16(2) + u8(2) + u8(3) + u8(2)
    p += sl_map(2, 4, 0x4000, 0x9000)
    p += u8(V_PASID) + u8(1) + u32(5) + u8(0) + u16(3) + u8(2) + u8(3) + u8(0)
    p += u8(V_FL_MAP) + u8(3) + u8(0) + u64(0x7000) + u32(0xa000 >> 4) + u8(7)
    p += root(0x10, smt=True) + xlate(SID, 0x4004) + xlate(SID, 0x7010, write=True, pasid=5)
    p += xlate(SID, 0x7010, pasid=5, priv=True)
    write('vtd', 'scalable-first-level', p)

    # Nested translation (PGTT 3) over a second level that maps the pool.
    p = caps(scalable=True, nested=True) + root(0x10, smt=True)
    p += u8(V_SM_CTX) + u16(SID) + u8(0) + u8(0) + u8(1) + u32(0)
    p += u8(V_PASID) + u8(1) + u32(0) + u8(6) + u16(2) + u8(2) + u8(3) + u8(2)
    p += sl_map(2, 4, 0, 0, shift=30) + u8(V_FL_MAP) + u8(3) + u8(0) + u64(0x3000) \
        + u32(0x5000 >> 4) + u8(7)
    p += xlate(SID, 0x3000) + xlate(SID, 0x3000, write=True)
    write('vtd', 'nested', p)

    # Register-based invalidation (no queue) and one FRCD overflowing.
    p = caps(no_qi=True, frcds=1) + root(0x10) + ctx(SID, 3, tbl=0)
    p += sl_map(0, 3, 0x1000, 0x2000) + xlate(SID, 0x1000)
    p += reg64(ARCH | 6, 1 << 63 | 1 << 61) + reg64(ARCH | 30, 1 << 63 | 1 << 60)
    p += xlate(SID + 1, 0x1000) + xlate(SID + 2, 0x1000) + regr(R_FSTS)
    write('vtd', 'register-invalidation', p)

    # Scalable mode's 256-bit queue: PASID-based IOTLB (PASID, then page),
    # PASID cache, device-TLB and PASID-based device-TLB (for an ATS
    # endpoint and for a source with none: ITE), page-group response, wait.
    p = caps(scalable=True, first_level=True, dtlb=True) + u8(V_QI_ON) + u16(0x20) + u8(8)
    p += root(0x10, smt=True, te=False)
    p += u8(V_SM_CTX) + u16(SID) + u8(0) + u8(8 | 4) + u8(1) + u32(0)
    p += u8(V_PASID) + u8(1) + u32(5) + u8(0) + u16(3) + u8(2) + u8(3) + u8(0)
    p += u8(V_FL_MAP) + u8(3) + u8(0) + u64(0x7000) + u32(0xa000 >> 4) + u8(7)
    p += root(0x10, smt=True) + xlate(SID, 0x7000, pasid=5, ats=True)
    p += qi_push(0x6 | 2 << 4 | 3 << 16 | 5 << 32, 0)
    p += qi_push(0x6 | 3 << 4 | 3 << 16 | 5 << 32, 0x7000)
    p += qi_push(0x7 | 1 << 4 | 3 << 16 | 5 << 32, 0)
    p += qi_push(0x3 | SID << 32, 0x7000)
    p += qi_push(0x8 | SID << 16 | 5 << 32, 0x7000)
    p += qi_push(0x9 | SID << 16, 0)
    p += qi_push(0x5 | 1 << 5 | 1 << 32, 0x30000)
    p += qi_push(0x3 | (SID + 1) << 32, 0) + qi_push(0x5 | 1 << 5 | 2 << 32, 0x30000)
    p += regr(R_FSTS) + reg32(R_FSTS, 0x40) + xlate(SID, 0x7000, pasid=5, ats=True)
    write('vtd', 'scalable-queued-invalidation', p)

    # A leaf changed under a cached translation: stale until a global flush
    # (registers, then the queue), after which the new page must show.  The
    # pool hands out 0x100000 (SL root), 0x101000 (context table), then the
    # level 3, 2 and 1 tables: the leaf of 0x10000 is at 0x104080.
    for queued in (False, True):
        p = caps() + root(0x10, te=False) + ctx(SID, 4, did=1, tbl=0)
        p += sl_map(0, 4, 0x10000, 0x80000) + root(0x10)
        if queued:
            p += u8(V_QI_ON) + u16(0x20) + u8(0)
        p += xlate(SID, 0x10008) + ram64(0x104080, 0x90000 | 1) + xlate(SID, 0x10008)
        p += u8(V_FLUSH) + xlate(SID, 0x10008) + xlate(SID, 0x10008, write=True)
        write('vtd', 'stale-then-flush' + ('-queued' if queued else ''), p)


# ---------------------------------------------------------------------------
# fuzz_dma_engine
D_DESC, D_SG, D_RAM, D_DOORBELL, D_REG, D_BME, D_MSIX = range(7)
ARENA, SGL = 0x10000, 0x8000


def arena(off): return off                      # address operands (fuzz_dma_engine.c)
def ctrl(off): return 6 << 60 | off
def hole(off): return 10 << 60 | off
def raw(addr): return addr                      # top bits 14-15: the address itself


def desc(ch, slot, op, src=0, dst=0, length=0, completion=0, flags=0, sg=(0, 0), cookie=0):
    return u8(D_DESC) + u8(ch) + u8(slot) + u8(op) + u8(flags) + u64(src) + u64(dst) + \
        u64(ln(length)) + u64(completion) + u16(sg[0]) + u16(sg[1]) + u8(cookie) + u8(0)


def ln(n):
    """A length operand that keeps n (its top two bits pick the mask)."""
    for sel, bits in enumerate((12, 16, 20)):
        if n < 1 << bits:
            return sel << 62 | n
    return 3 << 62 | n


def sg(idx, addr, length): return u8(D_SG) + u16(idx) + u64(addr) + u32(length) + u8(0)
def doorbell(ch, n): return u8(D_DOORBELL) + u8(ch) + u8(n)
def dreg(ch, reg, val): return u8(D_REG) + u8(ch) + u8(reg) + u64(val)


def dma_engine_seeds():
    rec = arena(0x30000)
    # One copy with an interrupt and a completion record.
    write('dma_engine', 'copy', desc(0, 0, 1, arena(0), arena(0x8000), 0x1000, rec, flags=1,
                                     cookie=7) + doorbell(0, 1))
    # FILL, COMPARE (different), a fenced NOP, on both channels.
    p = desc(0, 0, 2, 0x1122334455667788, arena(0x100), 0x333, rec)
    p += desc(0, 1, 3, arena(0), arena(0x1000), 0x800, rec + 32)
    p += desc(0, 2, 0, flags=2) + desc(0, 3, 1, arena(0x2000), arena(0x3000), 0x40, rec + 64)
    p += desc(1, 0, 2, 0xff, arena(0x9000), 0x1000, rec + 96) + doorbell(0, 4) + doorbell(1, 1)
    write('dma_engine', 'fill-compare-fence', p)
    # COPY_SG: two source entries, three destination entries, 0x300 bytes.
    p = sg(0, arena(0x100), 0x100) + sg(1, arena(0x400), 0x200)
    p += sg(16, arena(0x9000), 0x80) + sg(17, arena(0xa000), 0x180) + sg(18, arena(0xb000), 0x100)
    p += desc(0, 0, 4, ctrl(SGL), ctrl(SGL + 16 * 16), 0x300, rec, sg=(2, 3)) + doorbell(0, 1)
    write('dma_engine', 'copy-sg', p)
    # A destination in the hole halts the channel; RESET, start again, copy.
    p = desc(0, 0, 1, arena(0), hole(0x1000), 0x100, rec) + doorbell(0, 1)
    p += dreg(0, 2, 2) + dreg(0, 6, 0)
    p += desc(0, 0, 1, arena(0), arena(0x4000), 0x100, rec) + doorbell(0, 1)
    write('dma_engine', 'fault-reset-restart', p)
    # Ring errors: a ring size that is no power of two, a TAIL past the end.
    p = dreg(0, 2, 0) + dreg(0, 0x81, 3) + dreg(0, 2, 1) + dreg(1, 4, 200)
    write('dma_engine', 'ring-errors', p)
    # Bus mastering off: the fetch fails; on again after a reset.
    p = desc(0, 0, 1, arena(0), arena(0x4000), 0x100, rec) + u8(D_BME) + u8(0) + doorbell(0, 1)
    p += u8(D_BME) + u8(1) + dreg(0, 2, 2) + dreg(0, 6, 0) + doorbell(0, 1)
    write('dma_engine', 'bus-master-off', p)
    # A destination that wraps past 2^64 into address 0.
    p = desc(0, 0, 2, 0xabababababababab, raw(0xfffffffffffff000), 0x2000, rec)
    p += doorbell(0, 1)
    write('dma_engine', 'wrap', p)


# ---------------------------------------------------------------------------
# fuzz_vfio
(F_IOCTL, F_MAP, F_PREAD, F_PWRITE, F_MMAP, F_MMIO, F_MUNMAP, F_OPEN, F_CLOSE,
 F_UNMAP_MEM, F_MEMLOCK, F_POKE, F_WAIT) = range(13)
(I_API, I_CHECK_EXT, I_SET_IOMMU, I_GROUP_STATUS, I_SET_CONTAINER, I_UNSET_CONTAINER,
 I_GET_DEVICE_FD, I_DEV_INFO, I_REGION_INFO, I_IRQ_INFO, I_SET_IRQS, I_RESET, I_IOMMU_INFO,
 I_MAP, I_UNMAP, I_ENABLE, I_DISABLE, I_DIRTY) = range(18)
FD_CONTAINER, FD_GROUP, FD_DEVICE = 0, 1, 2
CONFIG, BAR0, BAR2 = 7, 0, 2                   # region indexes


def ioctl(fd, req, body=b'', argsz=None, n=None):
    """body: the argument after its argsz word."""
    argsz = 4 + len(body) if argsz is None else argsz
    return u8(F_IOCTL) + u8(fd) + u8(req) + u16(argsz) + u16(len(body) if n is None else n) + body


def map_dma(iova, pages, off=0, flags=3):
    return u8(F_MAP) + u8(FD_CONTAINER) + u8(flags) + u32(off) + u64(iova) + u32(pages - 1)


def unmap_dma(iova, size, flags=0, bitmap=b''):
    return ioctl(FD_CONTAINER, I_UNMAP, u32(flags) + u64(iova) + u64(size) + bitmap)


def pwrite(region, off, data, fd=FD_DEVICE):
    return u8(F_PWRITE) + u8(fd) + u8(region) + u32(off) + u16(len(data)) + data


def pread(region, off, count, fd=FD_DEVICE):
    return u8(F_PREAD) + u8(fd) + u8(region) + u32(off) + u16(count)


def mmio(m, off, val=0, write=True):
    return u8(F_MMIO) + u8(m) + u16(off) + u32(val) + u8(1 if write else 0)


def poke(off, data): return u8(F_POKE) + u32(off) + u8(len(data)) + data


def dmae_desc(op, src, dst, length, completion, flags=0):
    return struct.pack('<IIQQQQIIQQ', op | flags << 16, 0, src, dst, length, completion, 0, 0,
                       0x77, 0)


def vfio_seeds():
    # Everything a DPDK-style driver asks at start, then map and unmap.
    p = u8(5) + u8(15)
    p += ioctl(FD_CONTAINER, I_API) + ioctl(FD_CONTAINER, I_CHECK_EXT, n=3)
    p += ioctl(FD_GROUP, I_GROUP_STATUS, u32(0))
    p += ioctl(FD_CONTAINER, I_IOMMU_INFO, u32(0) * 3, argsz=0x100)
    p += ioctl(FD_DEVICE, I_DEV_INFO, u32(0) * 5)
    for index in (BAR0, BAR2, CONFIG, 8):
        p += ioctl(FD_DEVICE, I_REGION_INFO, u32(0) + u32(index) + u32(0) + u64(0) + u64(0),
                   argsz=0x100)
    p += ioctl(FD_DEVICE, I_IRQ_INFO, u32(0) + u32(2) + u32(0))
    p += map_dma(0x100000, 16) + map_dma(0x200000, 4, off=4)
    p += unmap_dma(0x100000, 0x10000) + unmap_dma(0, 0, flags=2)
    write('vfio', 'setup-map-unmap', p)

    # The device at work: bus mastering on, BAR0 mapped, one FILL descriptor
    # in the program's memory at IOVA 0x100000, then one aimed outside the
    # mappings (an IOMMU fault; the channel halts).
    ring, data = 0x100000, 0x101000
    p = u8(5) + u8(15) + map_dma(ring, 16) + pwrite(CONFIG, 4, u16(6))
    p += u8(F_MMAP) + u8(FD_DEVICE) + u8(BAR0) + u32(0) + u32(0x10000) + u8(3)
    p += poke(0, dmae_desc(2, 0x5a5a5a5a5a5a5a5a, data, 0x100, data + 0x800))
    p += poke(64, dmae_desc(2, 0x1, 0x40000000, 0x100, data + 0x820))
    p += mmio(0, 0x1000, ring) + mmio(0, 0x1004, 0) + mmio(0, 0x1008, 64) + mmio(0, 0x100c, 5)
    p += mmio(0, 0x1014, 1) + u8(F_WAIT) + u8(0) + u8(0) + mmio(0, 0x1014, 2)
    p += u8(F_WAIT) + u8(0) + u8(0)
    p += pread(CONFIG, 0, 64)
    write('vfio', 'device-dma', p)

    # Interrupts: two MSI-X vectors on the program's eventfds, loopback
    # trigger, mask, unmask, tear down.
    irq = lambda flags, start, count, data=b'': ioctl(
        FD_DEVICE, I_SET_IRQS, u32(flags) + u32(2) + u32(start) + u32(count) + data)
    p = u8(5) + u8(3) + irq(4 | 32, 0, 2, u32(0) + u32(1)) + irq(1 | 32, 0, 2)
    p += irq(1 | 8, 1, 1) + irq(1 | 16, 1, 1) + irq(2 | 32, 0, 2, u8(1) + u8(0))
    p += irq(4 | 32, 1, 1, struct.pack('<i', -1)) + irq(1 | 32, 0, 0)
    write('vfio', 'msix-eventfds', p)

    # Dirty tracking: start, map, read the bitmap, unmap with a bitmap.
    bm = lambda size: u64(4096) + u64(size) + u64(1)
    p = u8(5) + u8(15) + ioctl(FD_CONTAINER, I_DIRTY, u32(1)) + map_dma(0x300000, 8)
    p += ioctl(FD_CONTAINER, I_DIRTY, u32(4) + u64(0x300000) + u64(0x8000) + bm(8))
    p += unmap_dma(0x300000, 0x8000, flags=1, bitmap=bm(8))
    p += ioctl(FD_CONTAINER, I_DIRTY, u32(2))
    write('vfio', 'dirty-pages', p)

    # Order errors: the device before the IOMMU, the container set twice,
    # unset while the device is open, closing the group first.
    p = u8(3) + u8(1) + ioctl(FD_GROUP, I_GET_DEVICE_FD, n=1)
    p += ioctl(FD_GROUP, I_SET_CONTAINER, n=FD_CONTAINER)
    p += ioctl(FD_CONTAINER, I_SET_IOMMU, n=3) + ioctl(FD_GROUP, I_GET_DEVICE_FD, n=1)
    p += ioctl(FD_GROUP, I_UNSET_CONTAINER) + u8(F_CLOSE) + u8(FD_GROUP)
    p += ioctl(0x83, I_DEV_INFO, u32(0) * 5) + u8(F_OPEN) + u8(1) + u8(F_OPEN) + u8(0)
    write('vfio', 'order-errors', p)

    # The memlock limit (4 pages) refuses a larger mapping; the program
    # unmaps pinned memory, which stays pinned until UNMAP_DMA.
    p = u8(4) + u8(0x40 | 15) + map_dma(0x100000, 8) + map_dma(0x100000, 4)
    p += u8(F_UNMAP_MEM) + u32(0) + u8(1) + unmap_dma(0x100000, 0x4000)
    p += u8(F_MEMLOCK) + u32(64) + map_dma(0x400000, 8, off=2)
    write('vfio', 'memlock-and-munmap', p)


def write_regress(target, name, data):
    d = os.path.join(HERE, 'regress', target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def vtd_regress():
    """Hand-made reproducers of what the fuzzer found (docs/fuzzing.md)."""
    # The IOTLB answered a first-level request from an entry walked for the
    # other privilege.  PASID 5: first-level tables, one 4 KiB page at 0x7000.
    def fl_pasid(pasid_flags, leaf_flags):
        p = caps(scalable=True, first_level=True) + root(0x10, smt=True)
        p += u8(V_SM_CTX) + u16(SID) + u8(0) + u8(8) + u8(1) + u32(0)
        p += u8(V_PASID) + u8(1) + u32(5) + u8(0) + u16(3) + u8(2) + u8(3) + u8(pasid_flags)
        p += u8(V_FL_MAP) + u8(3) + u8(0) + u64(0x7000) + u32(0xa000 >> 4) + u8(leaf_flags)
        return p
    # A user's walk, then a supervisor request although SRE is clear (81h).
    write_regress('vtd', 'iotlb-priv-user-fill-supervisor-hit',
                  fl_pasid(0, 7) + xlate(SID, 0x7010, write=True, pasid=5) +
                  xlate(SID, 0x7010, pasid=5, priv=True))
    # A supervisor's walk of a supervisor-only page (U/S clear), then a user
    # request (81h).
    write_regress('vtd', 'iotlb-priv-supervisor-fill-user-hit',
                  fl_pasid(2, 3) + xlate(SID, 0x7010, pasid=5, priv=True) +
                  xlate(SID, 0x7010, pasid=5))
    # A supervisor write to a read-only page (WPE clear lets it), then a user
    # write (85h).
    write_regress('vtd', 'iotlb-priv-supervisor-write-user-write',
                  fl_pasid(2, 5) + xlate(SID, 0x7010, write=True, pasid=5, priv=True) +
                  xlate(SID, 0x7010, write=True, pasid=5))
    # The device-TLB (ATS) had the same flaw: a user's ATS request, then a
    # supervisor's although SRE is clear (81h).
    p = caps(scalable=True, first_level=True, dtlb=True) + root(0x10, smt=True)
    p += u8(V_SM_CTX) + u16(SID) + u8(0) + u8(8 | 4) + u8(1) + u32(0)
    p += u8(V_PASID) + u8(1) + u32(5) + u8(0) + u16(3) + u8(2) + u8(3) + u8(0)
    p += u8(V_FL_MAP) + u8(3) + u8(0) + u64(0x7000) + u32(0xa000 >> 4) + u8(7)
    p += xlate(SID, 0x7010, pasid=5, ats=True) + xlate(SID, 0x7010, pasid=5, priv=True, ats=True)
    write_regress('vtd', 'devtlb-priv-user-fill-supervisor-hit', p)


def write_known(target, name, data):
    d = os.path.join(HERE, 'known', target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def dma_engine_known():
    """Reproducers of bugs found but not fixed (docs/fuzzing.md); no test runs
    them.  The engine's channels DMA into the engine's own registers (BAR0)."""
    bar0 = lambda off: 12 << 60 | off
    # Channel 0 starts channel 1, then both fill a big buffer and stop each
    # other through CTRL: each waits for the other's descriptor to end, which
    # waits for it.  A hang about once in 800 runs (2 cores).
    p = desc(0, 0, 2, 2, bar0(0x2014), 4) + desc(0, 1, 2, 0x11, arena(0), 0x20000)
    p += desc(0, 2, 2, 0, bar0(0x200c), 4) + desc(1, 0, 2, 0x22, arena(0x20000), 0x20000)
    p += desc(1, 1, 2, 0, bar0(0x100c), 4) + doorbell(0, 3)
    write_known('dma_engine', 'p2p-channels-stop-each-other-hang', p)
    # A channel resets itself through CTRL: the descriptor retires after the
    # reset, so the channel is IDLE with HEAD 1 and COMPLETED 1, not 0.
    write_known('dma_engine', 'p2p-self-reset-keeps-head',
                desc(0, 0, 2, 2, bar0(0x100c), 4, arena(0x30000)) + doorbell(0, 1))


if __name__ == '__main__':
    vtd_seeds()
    dma_engine_seeds()
    vfio_seeds()
    vtd_regress()
    dma_engine_known()
