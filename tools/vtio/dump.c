/*
 * vtio dump: decodes a VT-d unit's live state, the way a debugger (or
 * Linux's /sys/kernel/debug/iommu/intel) shows it.
 *
 * The decoder reads only what software can read: the unit's registers at
 * its base and the tables in memory they point to, through CPU-side loads
 * (vtio_mem_read*), so it decodes any unit whose registers are mapped in an
 * address space, never the model's internals.  It shows the registers (CAP
 * and ECAP field by field, GSTS, the queue and table registers, pending
 * fault records), the root and context entries that are present (with the
 * PASID directory and tables in scalable mode), each domain's page tables
 * as merged ranges (IOVA range -> PA, page size, permissions), and the
 * present entries of the interrupt remapping table.  Every loop over table
 * memory is bounded by the table's size, and page walks by a budget of
 * table reads.
 *
 * No host driver programs the unit yet, so `--example` first programs a
 * small legacy-mode setup itself, through RAM and register writes as a
 * driver would: a root table, a context entry for 00:03.0 in domain 1,
 * second-level mappings with 4 KiB and 2 MiB pages, an interrupt remapping
 * table with one entry, queued invalidation, then IRE and TE.
 */
#include <vtio/intr.h>
#include <vtio/machine.h>
#include <vtio/mem.h>
#include <vtio/pci.h>
#include <vtio/vtd_regs.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"

/* ------------------------------------------------------------------------
 * Output: one tree, printed as indented text or as JSON.  In text, an
 * object that is an array element prints on one line.
 */

#define OUT_DEPTH 12

struct out {
    FILE *f;
    bool json;
    int depth;
    bool comma[OUT_DEPTH];      /* JSON: a sibling was printed at this depth */
    bool inline_obj[OUT_DEPTH]; /* text: this level prints on one line */
    bool is_array[OUT_DEPTH];
};

static void indent(struct out *o)
{
    fprintf(o->f, "\n%*s", 2 * o->depth, "");
}

/* Starts a value (or container) named key in the current container. */
static void item(struct out *o, const char *key)
{
    if (o->json) {
        if (o->comma[o->depth])
            fputc(',', o->f);
        o->comma[o->depth] = true;
        if (o->depth)
            indent(o);
        if (key && !o->is_array[o->depth])
            fprintf(o->f, "\"%s\": ", key);
    } else if (o->inline_obj[o->depth]) {
        fprintf(o->f, " %s=", key);
    } else {
        fprintf(o->f, "%*s%s: ", 2 * (o->depth - 1), "", key);
    }
}

/* line: in text, the object's members follow its key on one line. */
static void open_(struct out *o, const char *key, bool array, bool line)
{
    bool elem = o->is_array[o->depth];
    if (o->json) {
        item(o, key);
        fputc(array ? '[' : '{', o->f);
    } else if (elem && !array) {
        fprintf(o->f, "%*s-", 2 * (o->depth - 1), "");
    } else if (key) {
        fprintf(o->f, "%*s%s:%s", 2 * (o->depth - 1), "", key, line ? "" : "\n");
    }
    o->depth++;
    o->comma[o->depth] = false;
    o->is_array[o->depth] = array;
    o->inline_obj[o->depth] = !o->json && ((elem && !array) || line);
}

static void obj_begin(struct out *o, const char *key) { open_(o, key, false, false); }
static void obj_line(struct out *o, const char *key) { open_(o, key, false, true); }
static void arr_begin(struct out *o, const char *key) { open_(o, key, true, false); }

static void end(struct out *o)
{
    bool array = o->is_array[o->depth], printed = o->comma[o->depth];
    bool line = o->inline_obj[o->depth];
    o->depth--;
    if (o->json) {
        if (printed)
            indent(o);
        fputc(array ? ']' : '}', o->f);
    } else if (line) {
        fputc('\n', o->f);
    }
}

/* A value: JSON strings are quoted, text is bare; one line unless inline. */
static void __attribute__((format(printf, 4, 5)))
val(struct out *o, const char *key, bool quote, const char *fmt, ...)
{
    va_list ap;
    item(o, key);
    if (o->json && quote)
        fputc('"', o->f);
    va_start(ap, fmt);
    vfprintf(o->f, fmt, ap);
    va_end(ap);
    if (o->json && quote)
        fputc('"', o->f);
    if (!o->json && !o->inline_obj[o->depth])
        fputc('\n', o->f);
}
#define val_hex(o, k, v) val(o, k, true, "%#llx", (unsigned long long)(v))
#define val_int(o, k, v) val(o, k, false, "%llu", (unsigned long long)(v))
#define val_str(o, k, v) val(o, k, true, "%s", v)

static const char *bdf(uint16_t sid, char buf[16])
{
    snprintf(buf, 16, "%02x:%02x.%x", sid >> 8, (sid >> 3) & 0x1f, sid & 7);
    return buf;
}

static const char *size_name(unsigned shift)
{
    return shift == 12 ? "4K" : shift == 21 ? "2M" : shift == 30 ? "1G" : "?";
}

/* ------------------------------------------------------------------------
 * Registers.
 */

struct field {
    const char *name;
    uint64_t mask;
};
/* Multi-bit fields from their vtd_regs.h getters, single bits as they are. */
#define FLD(name, get, shift) { name, (uint64_t)get(~0ull) << (shift) }
#define FBIT(name, bit)       { name, bit }

static const struct field cap_fields[] = {
    FLD("ND", VTD_CAP_ND, 0), FBIT("AFL", VTD_CAP_AFL), FBIT("RWBF", VTD_CAP_RWBF),
    FBIT("PLMR", VTD_CAP_PLMR), FBIT("PHMR", VTD_CAP_PHMR), FBIT("CM", VTD_CAP_CM),
    FLD("SAGAW", VTD_CAP_SAGAW, VTD_CAP_SAGAW_SHIFT),
    FLD("MGAW", VTD_CAP_MGAW, VTD_CAP_MGAW_SHIFT), FBIT("ZLR", VTD_CAP_ZLR),
    FLD("FRO", VTD_CAP_FRO, VTD_CAP_FRO_SHIFT),
    FLD("SSLPS", VTD_CAP_SSLPS, VTD_CAP_SSLPS_SHIFT), FBIT("PSI", VTD_CAP_PSI),
    FLD("NFR", VTD_CAP_NFR, VTD_CAP_NFR_SHIFT), FLD("MAMV", VTD_CAP_MAMV, VTD_CAP_MAMV_SHIFT),
    FBIT("DWD", VTD_CAP_DWD), FBIT("DRD", VTD_CAP_DRD), FBIT("FS1GP", VTD_CAP_FS1GP),
    FBIT("PI", VTD_CAP_PI), FBIT("FS5LP", VTD_CAP_FS5LP), FBIT("ECMDS", VTD_CAP_ECMDS),
    FBIT("ESIRTPS", VTD_CAP_ESIRTPS), FBIT("ESRTPS", VTD_CAP_ESRTPS),
};

static const struct field ecap_fields[] = {
    FBIT("C", VTD_ECAP_C), FBIT("QI", VTD_ECAP_QI), FBIT("DT", VTD_ECAP_DT),
    FBIT("IR", VTD_ECAP_IR), FBIT("EIM", VTD_ECAP_EIM), FBIT("PT", VTD_ECAP_PT),
    FBIT("SC", VTD_ECAP_SC), FLD("IRO", VTD_ECAP_IRO, VTD_ECAP_IRO_SHIFT),
    FLD("MHMV", VTD_ECAP_MHMV, VTD_ECAP_MHMV_SHIFT), FBIT("NEST", VTD_ECAP_NEST),
    FBIT("PRS", VTD_ECAP_PRS), FBIT("ERS", VTD_ECAP_ERS), FBIT("SRS", VTD_ECAP_SRS),
    FBIT("NWFS", VTD_ECAP_NWFS), FLD("PSS", VTD_ECAP_PSS, VTD_ECAP_PSS_SHIFT),
    FBIT("PASID", VTD_ECAP_PASID), FBIT("SMTS", VTD_ECAP_SMTS), FBIT("SSTS", VTD_ECAP_SSTS),
    FBIT("FSTS", VTD_ECAP_FSTS),
};

static const struct field gsts_fields[] = {
    FBIT("TES", VTD_GSTS_TES), FBIT("RTPS", VTD_GSTS_RTPS), FBIT("FLS", VTD_GSTS_FLS),
    FBIT("AFLS", VTD_GSTS_AFLS), FBIT("WBFS", VTD_GSTS_WBFS), FBIT("QIES", VTD_GSTS_QIES),
    FBIT("IRES", VTD_GSTS_IRES), FBIT("IRTPS", VTD_GSTS_IRTPS), FBIT("CFIS", VTD_GSTS_CFIS),
};

static const struct field fsts_fields[] = {
    FBIT("PFO", VTD_FSTS_PFO), FBIT("PPF", VTD_FSTS_PPF), FBIT("AFO", VTD_FSTS_AFO),
    FBIT("APF", VTD_FSTS_APF), FBIT("IQE", VTD_FSTS_IQE), FBIT("ICE", VTD_FSTS_ICE),
    FBIT("ITE", VTD_FSTS_ITE), FBIT("PRO", VTD_FSTS_PRO),
    FLD("FRI", VTD_FSTS_FRI, VTD_FSTS_FRI_SHIFT),
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void fields(struct out *o, const char *key, uint64_t v, const struct field *f, size_t n)
{
    obj_line(o, key);
    val_hex(o, "raw", v);
    for (size_t i = 0; i < n; i++)
        val_int(o, f[i].name, (v & f[i].mask) >> __builtin_ctzll(f[i].mask));
    end(o);
}

static const char *fault_name(unsigned fr)
{
    static const char *const names[VTD_FR_IR_SID_ERR + 1] = {
        [VTD_FR_ROOT_ENTRY_P] = "root entry not present",
        [VTD_FR_CONTEXT_ENTRY_P] = "context entry not present",
        [VTD_FR_CONTEXT_ENTRY_INV] = "invalid context entry",
        [VTD_FR_ADDR_BEYOND_MGAW] = "address beyond MGAW",
        [VTD_FR_WRITE] = "write not permitted", [VTD_FR_READ] = "read not permitted",
        [VTD_FR_PAGING_ENTRY_INV] = "paging entry access error",
        [VTD_FR_PAGING_ENTRY_RSVD] = "paging entry reserved bits",
        [VTD_FR_IR_REQ_RSVD] = "IR request reserved fields",
        [VTD_FR_IR_INDEX_OVER] = "IR index beyond table",
        [VTD_FR_IR_ENTRY_P] = "IRTE not present", [VTD_FR_IR_ROOT_INVAL] = "IRT access error",
        [VTD_FR_IR_IRTE_RSVD] = "IRTE reserved bits",
        [VTD_FR_IR_REQ_COMPAT] = "compatibility-format interrupt blocked",
        [VTD_FR_IR_SID_ERR] = "IR source-id check failed",
    };
    return fr < N(names) && names[fr] ? names[fr] : "";
}

static void dump_faults(struct out *o, struct vtio_mem *mem, uint64_t base, uint64_t cap)
{
    uint64_t frcd = base + VTD_CAP_FRO(cap) * 16;
    char b[16];
    arr_begin(o, "pending_faults");
    for (unsigned i = 0; i <= VTD_CAP_NFR(cap); i++) {
        uint64_t lo = vtio_mem_read64(mem, frcd + i * VTD_FRCD_SIZE);
        uint64_t hi = vtio_mem_read64(mem, frcd + i * VTD_FRCD_SIZE + 8);
        if (!(hi & VTD_FRCD_HI_F))
            continue;
        unsigned fr = (unsigned)VTD_FRCD_HI_FR(hi);
        bool ir = fr >= VTD_FR_IR_REQ_RSVD && fr <= VTD_FR_IR_SID_ERR;
        obj_begin(o, NULL);
        val_int(o, "frcd", i);
        val_str(o, "sid", bdf((uint16_t)VTD_FRCD_HI_SID(hi), b));
        val_hex(o, "reason", fr);
        val_str(o, "what", fault_name(fr));
        if (ir)
            val_int(o, "index", lo >> VTD_FRCD_LO_IIDX_SHIFT);
        else
            val_hex(o, "addr", lo & VTD_FRCD_LO_FI_MASK);
        val_str(o, "type", ir ? "interrupt" : hi & VTD_FRCD_HI_T ? "read" : "write");
        if (hi & VTD_FRCD_HI_PP)
            val_hex(o, "pasid", VTD_FRCD_HI_PV(hi));
        end(o);
    }
    end(o);
}

static void dump_registers(struct out *o, struct vtio_mem *mem, uint64_t base)
{
    uint32_t ver = vtio_mem_read32(mem, base + VTD_VER_REG);
    uint64_t cap = vtio_mem_read64(mem, base + VTD_CAP_REG);
    uint64_t iqa = vtio_mem_read64(mem, base + VTD_IQA_REG);
    uint64_t irta = vtio_mem_read64(mem, base + VTD_IRTA_REG);
    uint64_t rtaddr = vtio_mem_read64(mem, base + VTD_RTADDR_REG);
    char v[16];
    obj_begin(o, "registers");
    snprintf(v, sizeof(v), "%u.%u", (ver >> 4) & 0xf, ver & 0xf);
    val_str(o, "VER", v);
    fields(o, "CAP", cap, cap_fields, N(cap_fields));
    fields(o, "ECAP", vtio_mem_read64(mem, base + VTD_ECAP_REG), ecap_fields, N(ecap_fields));
    fields(o, "GSTS", vtio_mem_read32(mem, base + VTD_GSTS_REG), gsts_fields, N(gsts_fields));
    obj_line(o, "RTADDR");
    val_hex(o, "table", rtaddr & VTD_RTADDR_ADDR_MASK);
    val_str(o, "mode", VTD_RTADDR_TTM(rtaddr) == 0 ? "legacy"
                     : VTD_RTADDR_TTM(rtaddr) == 1 ? "scalable" : "reserved");
    end(o);
    obj_line(o, "IQA");
    val_hex(o, "base", iqa & VTD_IQA_ADDR_MASK);
    val_int(o, "descriptor_bits", iqa & VTD_IQA_DW ? 256 : 128);
    val_int(o, "QS", VTD_IQA_QS(iqa));
    end(o);
    val_hex(o, "IQH", vtio_mem_read64(mem, base + VTD_IQH_REG));
    val_hex(o, "IQT", vtio_mem_read64(mem, base + VTD_IQT_REG));
    obj_line(o, "IRTA");
    val_hex(o, "table", irta & VTD_IRTA_ADDR_MASK);
    val_int(o, "entries", 2ull << VTD_IRTA_S(irta));
    val_int(o, "EIME", !!(irta & VTD_IRTA_EIME));
    end(o);
    fields(o, "FSTS", vtio_mem_read32(mem, base + VTD_FSTS_REG), fsts_fields, N(fsts_fields));
    val_hex(o, "FECTL", vtio_mem_read32(mem, base + VTD_FECTL_REG));
    dump_faults(o, mem, base, cap);
    end(o);
}

/* ------------------------------------------------------------------------
 * Page tables as merged ranges.
 */

struct walk {
    struct out *o;
    struct vtio_mem *mem;
    bool fl;                    /* first-level (x86-64) format, else second-level */
    unsigned budget;            /* table pages left to read */
    bool open;                  /* a range is being accumulated */
    uint64_t start, end, pa;    /* [start, end) -> pa */
    unsigned shift;
    bool r, w;
};

#define WALK_BUDGET 4096
#define PTE_ADDR(e) ((e) & VTD_SL_ADDR_MASK(52))

static void flush(struct walk *wk)
{
    if (!wk->open)
        return;
    char perm[3] = { wk->r ? 'R' : '-', wk->w ? 'W' : '-', 0 };
    obj_begin(wk->o, NULL);
    val_hex(wk->o, "iova", wk->start);
    val_hex(wk->o, "last", wk->end - 1);
    val_hex(wk->o, "pa", wk->pa);
    val_str(wk->o, "page", size_name(wk->shift));
    val_str(wk->o, "perm", perm);
    end(wk->o);
    wk->open = false;
}

static void leaf(struct walk *wk, uint64_t va, uint64_t pa, unsigned shift, bool r, bool w)
{
    if (wk->open && va == wk->end && pa == wk->pa + (wk->end - wk->start) &&
        shift == wk->shift && r == wk->r && w == wk->w) {
        wk->end += 1ull << shift;
        return;
    }
    flush(wk);
    *wk = (struct walk){ .o = wk->o, .mem = wk->mem, .fl = wk->fl, .budget = wk->budget,
                         .open = true, .start = va, .end = va + (1ull << shift), .pa = pa,
                         .shift = shift, .r = r, .w = w };
}

/* One table of `level` (1 = 4 KiB PTEs) covering IOVAs from va. */
static void walk_table(struct walk *wk, uint64_t table, unsigned level, uint64_t va,
                       bool r, bool w)
{
    uint64_t ent[512];
    if (!wk->budget || !vtio_mem_is_ram(wk->mem, table, sizeof(ent)))
        return;
    wk->budget--;
    vtio_mem_read(wk->mem, table, ent, sizeof(ent));
    for (unsigned i = 0; i < 512; i++) {
        uint64_t e = ent[i];
        bool present = wk->fl ? (e & VTD_FL_P) : (e & (VTD_SL_R | VTD_SL_W));
        if (!present)
            continue;
        unsigned shift = VTD_LEVEL_SHIFT(level);
        uint64_t at = va + ((uint64_t)i << shift);
        bool er = r && (wk->fl || (e & VTD_SL_R));
        bool ew = w && (e & (wk->fl ? VTD_FL_RW : VTD_SL_W));
        if (level == 1 || (level <= 3 && (e & (wk->fl ? VTD_FL_PS : VTD_SL_PS))))
            leaf(wk, at, PTE_ADDR(e) & ~((1ull << shift) - 1), shift, er, ew);
        else
            walk_table(wk, PTE_ADDR(e), level - 1, at, er, ew);
    }
}

struct domain {
    uint16_t did;
    bool fl;
    uint64_t root;
    unsigned levels;
};

#define MAX_DOMAINS 64

struct domains {
    unsigned n;
    struct domain d[MAX_DOMAINS];
};

static void add_domain(struct domains *ds, uint16_t did, bool fl, uint64_t root,
                       unsigned levels)
{
    for (unsigned i = 0; i < ds->n; i++)
        if (ds->d[i].did == did && ds->d[i].fl == fl && ds->d[i].root == root)
            return;
    if (ds->n < MAX_DOMAINS)
        ds->d[ds->n++] = (struct domain){ did, fl, root, levels };
}

static void dump_domains(struct out *o, struct vtio_mem *mem, const struct domains *ds)
{
    arr_begin(o, "domains");
    for (unsigned i = 0; i < ds->n; i++) {
        const struct domain *d = &ds->d[i];
        if (o->json)
            obj_begin(o, NULL);
        else
            fprintf(o->f, "%*sdomain %u, %s, %u-level, root %#llx:\n", 2 * (o->depth - 1), "",
                    d->did, d->fl ? "first-level" : "second-level", d->levels,
                    (unsigned long long)d->root);
        if (o->json) {
            val_int(o, "did", d->did);
            val_str(o, "format", d->fl ? "first-level" : "second-level");
            val_int(o, "levels", d->levels);
            val_hex(o, "root", d->root);
        }
        arr_begin(o, o->json ? "ranges" : NULL);
        struct walk wk = { .o = o, .mem = mem, .fl = d->fl, .budget = WALK_BUDGET };
        walk_table(&wk, d->root, d->levels, 0, true, true);
        flush(&wk);
        end(o);
        if (o->json)
            end(o);
    }
    end(o);
}

/* ------------------------------------------------------------------------
 * Root, context and PASID structures.
 */

static void dump_pasid_dir(struct out *o, struct vtio_mem *mem, struct domains *ds,
                           uint64_t dir, unsigned pdts)
{
    uint64_t n = 1ull << (pdts + 7);
    arr_begin(o, "pasids");
    for (uint64_t di = 0; di < n && di < (1u << 14) && vtio_mem_is_ram(mem, dir, 8 * n); di++) {
        uint64_t de = vtio_mem_read64(mem, dir + 8 * di);
        if (!(de & VTD_PDIRE_P) || !vtio_mem_is_ram(mem, de & VTD_PDIRE_PTBL_MASK, 4096))
            continue;
        for (unsigned pi = 0; pi < 64; pi++) {
            uint64_t pe[8];
            vtio_mem_read(mem, (de & VTD_PDIRE_PTBL_MASK) + 64 * pi, pe, sizeof(pe));
            if (!(pe[0] & VTD_PTE_P))
                continue;
            unsigned pgtt = (unsigned)VTD_PTE_PGTT(pe[0]);
            uint16_t did = (uint16_t)VTD_PTE_DID(pe[1]);
            uint64_t sl = pe[0] & VTD_PTE_SSPTPTR_MASK, fl = pe[2] & VTD_PTE_FSPTPTR_MASK;
            static const char *const kinds[8] = { "?", "first-level", "second-level",
                                                  "nested", "pass-through", "?", "?", "?" };
            obj_begin(o, NULL);
            val_int(o, "pasid", di << 6 | pi);
            val_str(o, "pgtt", kinds[pgtt & 7]);
            val_int(o, "did", did);
            if (pgtt == VTD_PGTT_SL || pgtt == VTD_PGTT_NESTED) {
                val_int(o, "aw", VTD_PTE_AW(pe[0]));
                val_hex(o, "ssptptr", sl);
                add_domain(ds, did, false, sl, VTD_AW_TO_LEVELS(VTD_PTE_AW(pe[0])));
            }
            if (pgtt == VTD_PGTT_FL || pgtt == VTD_PGTT_NESTED) {
                unsigned levels = VTD_PTE_FSPM(pe[2]) ? 5 : 4;
                val_hex(o, "fsptptr", fl);
                val_int(o, "fs_levels", levels);
                if (pgtt == VTD_PGTT_FL)    /* nested: its tables are in GPA space */
                    add_domain(ds, did, true, fl, levels);
            }
            end(o);
        }
    }
    end(o);
}

static void dump_contexts(struct out *o, struct vtio_mem *mem, uint64_t base,
                          struct domains *ds)
{
    uint64_t rtaddr = vtio_mem_read64(mem, base + VTD_RTADDR_REG);
    uint64_t root = rtaddr & VTD_RTADDR_ADDR_MASK;
    bool sm = VTD_RTADDR_TTM(rtaddr) == 1;
    char b[16];
    arr_begin(o, "contexts");
    if (!(vtio_mem_read32(mem, base + VTD_GSTS_REG) & VTD_GSTS_RTPS) ||
        !vtio_mem_is_ram(mem, root, 4096))
        goto out;                                   /* no root table latched */
    for (unsigned bus = 0; bus < 256; bus++) {
        uint64_t re[2];
        vtio_mem_read(mem, root + 16 * bus, re, sizeof(re));
        for (unsigned devfn = 0; devfn < 256; devfn++) {
            /* Legacy: one table of 16-byte entries; scalable: lower and
             * upper tables of 32-byte entries. */
            uint64_t half = sm ? re[devfn >> 7] : re[0];
            if (!(half & VTD_ROOT_P) || !vtio_mem_is_ram(mem, half & VTD_ROOT_CTP_MASK, 4096))
                continue;
            uint64_t ce[4];
            uint64_t at = (half & VTD_ROOT_CTP_MASK) + (sm ? 32 * (devfn & 0x7f) : 16 * devfn);
            vtio_mem_read(mem, at, ce, sm ? 32 : 16);
            if (!(ce[0] & VTD_CTX_P))
                continue;
            obj_begin(o, NULL);
            val_str(o, "dev", bdf((uint16_t)(bus << 8 | devfn), b));
            if (!sm) {
                static const char *const tt[4] = { "untranslated", "device-tlb",
                                                   "pass-through", "reserved" };
                unsigned aw = (unsigned)VTD_CTX_AW(ce[1]);
                val_str(o, "tt", tt[VTD_CTX_TT(ce[0])]);
                val_int(o, "aw", aw);
                val_int(o, "did", VTD_CTX_DID(ce[1]));
                val_hex(o, "slptptr", ce[0] & VTD_CTX_SLPTPTR_MASK);
                val_int(o, "fpd", !!(ce[0] & VTD_CTX_FPD));
                if (VTD_CTX_TT(ce[0]) <= VTD_CTX_TT_DEV_IOTLB)
                    add_domain(ds, (uint16_t)VTD_CTX_DID(ce[1]), false,
                               ce[0] & VTD_CTX_SLPTPTR_MASK, VTD_AW_TO_LEVELS(aw));
            } else {
                unsigned pdts = (unsigned)VTD_SM_CTX_PDTS(ce[0]);
                val_hex(o, "pasid_dir", ce[0] & VTD_SM_CTX_PDIR_MASK);
                val_int(o, "pdts", pdts);
                val_int(o, "dte", !!(ce[0] & VTD_SM_CTX_DTE));
                val_int(o, "paside", !!(ce[0] & VTD_SM_CTX_PASIDE));
                val_int(o, "pre", !!(ce[0] & VTD_SM_CTX_PRE));
                val_int(o, "rid_pasid", VTD_SM_CTX_RID_PASID(ce[1]));
                val_int(o, "fpd", !!(ce[0] & VTD_SM_CTX_FPD));
                if (!o->json)
                    fputc('\n', o->f), o->inline_obj[o->depth] = false;
                dump_pasid_dir(o, mem, ds, ce[0] & VTD_SM_CTX_PDIR_MASK, pdts);
            }
            end(o);
        }
    }
out:
    end(o);
}

/* ------------------------------------------------------------------------
 * The interrupt remapping table.
 */

static void dump_irt(struct out *o, struct vtio_mem *mem, uint64_t base)
{
    uint64_t irta = vtio_mem_read64(mem, base + VTD_IRTA_REG);
    uint64_t table = irta & VTD_IRTA_ADDR_MASK;
    unsigned entries = 2u << VTD_IRTA_S(irta);
    bool x2apic = irta & VTD_IRTA_EIME;
    char b[16];
    arr_begin(o, "irtes");
    if (!(vtio_mem_read32(mem, base + VTD_GSTS_REG) & VTD_GSTS_IRTPS) ||
        !vtio_mem_is_ram(mem, table, 16ull * entries))
        entries = 0;                                /* no table latched */
    for (unsigned i = 0; i < entries; i++) {
        uint64_t e[2];
        vtio_mem_read(mem, table + 16ull * i, e, sizeof(e));
        if (!(e[0] & VTD_IRTE_P))
            continue;
        static const char *const svt[4] = { "none", "sid", "bus", "reserved" };
        obj_begin(o, NULL);
        val_int(o, "index", i);
        val_int(o, "vector", VTD_IRTE_V(e[0]));
        val_int(o, "dest", x2apic ? VTD_IRTE_DST(e[0]) : VTD_IRTE_XAPIC_DEST(e[0]));
        val_str(o, "dm", e[0] & VTD_IRTE_DM ? "logical" : "physical");
        val_int(o, "dlm", VTD_IRTE_DLM(e[0]));
        val_str(o, "tm", e[0] & VTD_IRTE_TM ? "level" : "edge");
        val_int(o, "fpd", !!(e[0] & VTD_IRTE_FPD));
        val_int(o, "posted", !!(e[0] & VTD_IRTE_IM));
        val_str(o, "sid", bdf((uint16_t)VTD_IRTE_SID(e[1]), b));
        val_int(o, "sq", VTD_IRTE_SQ(e[1]));
        val_str(o, "svt", svt[VTD_IRTE_SVT(e[1])]);
        end(o);
    }
    end(o);
}

/* The whole decoder: registers and the tables they name. */
void vtio_tool_dump_vtd(FILE *f, struct vtio_mem *mem, uint64_t base, bool json)
{
    struct out o = { .f = f, .json = json };
    struct domains ds = { 0 };
    obj_begin(&o, NULL);
    val_hex(&o, "unit", base);
    dump_registers(&o, mem, base);
    dump_contexts(&o, mem, base, &ds);
    dump_domains(&o, mem, &ds);
    dump_irt(&o, mem, base);
    end(&o);
    if (json)
        fputc('\n', f);
}

/* ------------------------------------------------------------------------
 * --example: a driver's legacy-mode bring-up, through RAM and registers.
 */

#define EX_ROOT   0x100000ull   /* root table */
#define EX_CTX    0x101000ull   /* context table of bus 0 */
#define EX_SL     0x102000ull   /* PML4, PDPT, PD, PT: 4 pages */
#define EX_IRT    0x106000ull   /* 256 IRTEs */
#define EX_IQ     0x107000ull   /* invalidation queue, 256 x 16 B */
#define EX_STATUS 0x108000ull   /* wait-descriptor status word */
#define EX_DEVFN  VTIO_PCI_DEVFN(VTIO_MACHINE_FIRST_DEV, 0)

struct example {
    struct vtio_mem *mem;
    uint64_t base;
    uint32_t gcmd;              /* the persistent GCMD bits, as Linux keeps them */
    unsigned tail;              /* next free queue slot */
};

/* Writes GCMD and waits for GSTS to show `bit` as `want` (Linux's IOMMU_WAIT_OP). */
static int command(struct example *ex, uint32_t cmd, uint32_t bit, bool want)
{
    vtio_mem_write32(ex->mem, ex->base + VTD_GCMD_REG, cmd);
    for (int i = 0; i < 1000000; i++)
        if (!!(vtio_mem_read32(ex->mem, ex->base + VTD_GSTS_REG) & bit) == want)
            return 0;
    fprintf(stderr, "dump: GSTS %#x never became %d\n", bit, want);
    return -1;
}

/* Queues descriptors plus a status-writing wait, and waits for it. */
static int submit(struct example *ex, const uint64_t *desc, unsigned n)
{
    static uint32_t seq;
    uint64_t wait[2] = { VTD_INV_DESC_WAIT | VTD_INV_WAIT_SW | (uint64_t)++seq << 32,
                         EX_STATUS };
    for (unsigned i = 0; i <= n; i++) {
        const uint64_t *d = i < n ? desc + 2 * i : wait;
        vtio_mem_write(ex->mem, EX_IQ + 16ull * ex->tail, d, 16);
        ex->tail = (ex->tail + 1) % 256;
    }
    vtio_mem_write64(ex->mem, ex->base + VTD_IQT_REG, (uint64_t)ex->tail << VTD_IQ_OFF_SHIFT);
    for (int i = 0; i < 1000000; i++)
        if (vtio_mem_read32(ex->mem, EX_STATUS) == seq)
            return 0;
    fprintf(stderr, "dump: invalidation wait never completed (FSTS %#x)\n",
            vtio_mem_read32(ex->mem, ex->base + VTD_FSTS_REG));
    return -1;
}

static int program_example(struct vtio_mem *mem, uint64_t base)
{
    struct example ex = { .mem = mem, .base = base };
    uint64_t cap = vtio_mem_read64(mem, base + VTD_CAP_REG);
    uint64_t ecap = vtio_mem_read64(mem, base + VTD_ECAP_REG);
    if (!(VTD_CAP_SAGAW(cap) & 4) || !(ecap & VTD_ECAP_QI) || !(ecap & VTD_ECAP_IR)) {
        fprintf(stderr, "dump: --example needs 4-level tables, QI and IR\n");
        return -1;
    }
    vtio_mem_set(mem, EX_ROOT, 0, 0x9000);
    /* Root entry of bus 0 -> context table; context entry of 00:03.0:
     * translate untranslated requests with 4-level tables, domain 1. */
    vtio_mem_write64(mem, EX_ROOT, EX_CTX | VTD_ROOT_P);
    vtio_mem_write64(mem, EX_CTX + 16 * EX_DEVFN,
                     EX_SL | (uint64_t)VTD_CTX_TT_MULTI_LEVEL << VTD_CTX_TT_SHIFT | VTD_CTX_P);
    vtio_mem_write64(mem, EX_CTX + 16 * EX_DEVFN + 8, 2 | 1ull << VTD_CTX_DID_SHIFT);
    /* Second level: PML4[0] -> PDPT, PDPT[0] -> PD; IOVA 0x1000000 (PD[8])
     * -> PT with 4 KiB pages; PD[32..33]: 2 MiB pages at IOVA 0x4000000. */
    uint64_t rw = VTD_SL_R | VTD_SL_W;
    vtio_mem_write64(mem, EX_SL, (EX_SL + 0x1000) | rw);
    vtio_mem_write64(mem, EX_SL + 0x1000, (EX_SL + 0x2000) | rw);
    vtio_mem_write64(mem, EX_SL + 0x2000 + 8 * 8, (EX_SL + 0x3000) | rw);
    for (unsigned i = 0; i < 4; i++)             /* 16 KiB read-write */
        vtio_mem_write64(mem, EX_SL + 0x3000 + 8 * i, (0x2000000 + 0x1000 * i) | rw);
    vtio_mem_write64(mem, EX_SL + 0x3000 + 8 * 4, 0x3000000 | VTD_SL_R);   /* read-only */
    for (unsigned i = 0; i < 2; i++)             /* 4 MiB in 2 MiB pages */
        vtio_mem_write64(mem, EX_SL + 0x2000 + 8 * (32 + i),
                         (0x8000000 + (i << 21)) | VTD_SL_PS | rw);
    /* One IRTE: index 5, vector 0x41 to APIC 1, only from 00:03.0. */
    uint64_t irte[2] = { VTD_IRTE_P | 0x41ull << VTD_IRTE_V_SHIFT |
                             (1ull << 8) << VTD_IRTE_DST_SHIFT,    /* xAPIC: id in DST[15:8] */
                         VTIO_PCI_RID(0, VTIO_MACHINE_FIRST_DEV, 0) |
                             (uint64_t)VTD_IRTE_SVT_SID << VTD_IRTE_SVT_SHIFT };
    vtio_mem_write(mem, EX_IRT + 16 * 5, irte, sizeof(irte));

    /* Linux's order: root table, queued invalidation, caches flushed,
     * interrupt remapping table, IRE (CFI stays clear), then TE. */
    vtio_mem_write64(mem, base + VTD_RTADDR_REG, EX_ROOT);
    if (command(&ex, ex.gcmd | VTD_GCMD_SRTP, VTD_GSTS_RTPS, true) < 0)
        return -1;
    vtio_mem_write64(mem, base + VTD_IQT_REG, 0);
    vtio_mem_write64(mem, base + VTD_IQA_REG, EX_IQ);
    ex.gcmd |= VTD_GCMD_QIE;
    if (command(&ex, ex.gcmd, VTD_GSTS_QIES, true) < 0)
        return -1;
    uint64_t flush_all[4] = { VTD_INV_DESC_CC | (uint64_t)VTD_INV_GLOBAL << VTD_INV_G_SHIFT, 0,
                              VTD_INV_DESC_IOTLB | (uint64_t)VTD_INV_GLOBAL << VTD_INV_G_SHIFT,
                              0 };
    if (submit(&ex, flush_all, 2) < 0)
        return -1;
    vtio_mem_write64(mem, base + VTD_IRTA_REG, EX_IRT | 7);       /* S=7: 256 entries */
    if (command(&ex, ex.gcmd | VTD_GCMD_SIRTP, VTD_GSTS_IRTPS, true) < 0)
        return -1;
    uint64_t iec[2] = { VTD_INV_DESC_IEC, 0 };                    /* global */
    if (submit(&ex, iec, 1) < 0)
        return -1;
    ex.gcmd |= VTD_GCMD_IRE;
    if (command(&ex, ex.gcmd, VTD_GSTS_IRES, true) < 0)
        return -1;
    ex.gcmd |= VTD_GCMD_TE;
    return command(&ex, ex.gcmd, VTD_GSTS_TES, true);
}

/* ------------------------------------------------------------------------ */

int cmd_dump(int argc, char **argv)
{
    bool json = false, example = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--example")) {
            example = true;
        } else {
            printf("usage: vtio dump [--json] [--example]\n"
                   "  decodes the VT-d unit of the default machine: registers, root and\n"
                   "  context entries, page tables per domain, interrupt remapping table\n"
                   "  --json     machine-readable output\n"
                   "  --example  first program a small legacy-mode setup, as a driver would\n");
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    struct vtio_machine_config cfg = { .ram_size = 512 * VTIO_MiB };
    struct vtio_machine *m;
    if (vtio_machine_create(&cfg, &m) < 0) {
        fprintf(stderr, "dump: cannot build the machine: %s\n", vtio_last_error());
        return 1;
    }
    int ret = 0;
    if (!m->fw.dmar.n_drhd) {
        fprintf(stderr, "dump: the machine has no VT-d unit\n");
        ret = 1;
    } else if (!example || program_example(m->mem, m->fw.dmar.drhd[0].base) == 0) {
        vtio_tool_dump_vtd(stdout, m->mem, m->fw.dmar.drhd[0].base, json);
    } else {
        ret = 1;
    }
    vtio_machine_destroy(m);
    return ret;
}
