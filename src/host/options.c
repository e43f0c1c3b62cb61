/*
 * options: a Linux kernel command line into struct vtio_host_options
 * (vtio_host_options_parse, include/vtio/host.h).
 *
 * Words are separated by blanks; each is key=value.  The line is parsed
 * into a copy of *o, which is written back only if every word was
 * understood, so a bad line changes nothing.  Linux keeps passthrough and
 * strictness as two settings (iommu=pt and iommu.strict=1 are independent,
 * and iommu=nopt returns to whichever of lazy and strict was chosen); the
 * parser does the same and folds them into iommu_mode at the end.
 */
#include <vtio/host.h>
#include <vtio/pci.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

#define WORD_MAX 256

struct parse {
    struct vtio_host_options o;
    bool passthrough, strict;
};

/* "on"/"off" (or the two words given) into *v.  @returns 0 or -EINVAL. */
static int parse_switch(const char *val, const char *yes, const char *no, bool *v)
{
    if (strcmp(val, yes) == 0)
        *v = true;
    else if (strcmp(val, no) == 0)
        *v = false;
    else
        return -EINVAL;
    return 0;
}

static int parse_intel_iommu(struct parse *p, const char *val)
{
    /* Linux takes a comma-separated list: intel_iommu=on,sm_on (no empty
     * items: "on," is refused, like an empty value) */
    char buf[WORD_MAX], *rest = buf;
    strcpy(buf, val);
    for (char *tok; (tok = strsep(&rest, ","));) {
        if (strcmp(tok, "on") == 0)
            p->o.iommu_off = false;
        else if (strcmp(tok, "off") == 0)
            p->o.iommu_off = true;
        else if (strcmp(tok, "sm_on") == 0)
            p->o.scalable_mode = true;
        else if (strcmp(tok, "sm_off") == 0)
            p->o.scalable_mode = false;
        else
            return -EINVAL;
    }
    return 0;
}

/* <bytes>[K|M|G], above zero. */
static int parse_size(const char *val, uint64_t *out)
{
    if (*val < '0' || *val > '9')
        return -EINVAL;
    uint64_t v = 0;
    for (; *val >= '0' && *val <= '9'; val++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -EINVAL;
        v = v * 10 + (uint64_t)(*val - '0');
    }
    unsigned shift = 0;
    switch (*val) {
    case 'K': case 'k': shift = 10; val++; break;
    case 'M': case 'm': shift = 20; val++; break;
    case 'G': case 'g': shift = 30; val++; break;
    }
    if (*val || v == 0 || v > UINT64_MAX >> shift)
        return -EINVAL;
    *out = v << shift;
    return 0;
}

/* Hex digits up to max, the whole string. */
static int parse_hex(const char *s, size_t len, unsigned max, unsigned *out)
{
    if (len == 0 || len > 4)
        return -EINVAL;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
                   : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                   : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16;
        if (d == 16)
            return -EINVAL;
        v = v * 16 + d;
    }
    if (v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

/* [segment:]bus:dev.fn, hex, segment 0 only (vtio has one segment). */
static int parse_bdf(const char *s, uint16_t *rid)
{
    const char *dot = strchr(s, '.');
    const char *colon = strrchr(s, ':');
    if (!dot || !colon || colon > dot)
        return -EINVAL;
    const char *first = strchr(s, ':');
    unsigned seg = 0, bus, dev, fn;
    if (first != colon && (parse_hex(s, (size_t)(first - s), 0, &seg) < 0 ||
                           strchr(first + 1, ':') != colon))
        return -EINVAL;
    const char *b = first != colon ? first + 1 : s;
    if (parse_hex(b, (size_t)(colon - b), 0xff, &bus) < 0 ||
        parse_hex(colon + 1, (size_t)(dot - colon - 1), 0x1f, &dev) < 0 ||
        parse_hex(dot + 1, strlen(dot + 1), 7, &fn) < 0)
        return -EINVAL;
    *rid = VTIO_PCI_RID(bus, dev, fn);
    return 0;
}

static int parse_untrusted(struct parse *p, const char *val)
{
    char buf[WORD_MAX], *rest = buf;
    strcpy(buf, val);
    unsigned n = 0;
    uint16_t rids[VTIO_HOST_MAX_UNTRUSTED];
    for (char *tok; (tok = strsep(&rest, ","));) {
        if (n == VTIO_HOST_MAX_UNTRUSTED || parse_bdf(tok, &rids[n]) < 0)
            return -EINVAL;
        n++;
    }
    memcpy(p->o.untrusted_rid, rids, n * sizeof(rids[0]));
    p->o.n_untrusted = n;
    return 0;
}

static int parse_loglevel(struct parse *p, const char *val)
{
    if (val[0] < '0' || val[0] > '7' || val[1])
        return -EINVAL;
    p->o.log_level = val[0] - '0';
    return 0;
}

/* One key=value word.  @returns 0; -EINVAL (unknown key: -ENOENT). */
static int parse_word(struct parse *p, const char *key, const char *val)
{
    bool b;
    int rc;
    if (strcmp(key, "intel_iommu") == 0)
        return parse_intel_iommu(p, val);
    if (strcmp(key, "iommu") == 0) {
        if ((rc = parse_switch(val, "pt", "nopt", &b)) == 0)
            p->passthrough = b;
        return rc;
    }
    if (strcmp(key, "iommu.passthrough") == 0) {
        if ((rc = parse_switch(val, "1", "0", &b)) == 0)
            p->passthrough = b;
        return rc;
    }
    if (strcmp(key, "iommu.strict") == 0) {
        if ((rc = parse_switch(val, "1", "0", &b)) == 0)
            p->strict = b;
        return rc;
    }
    if (strcmp(key, "iommu.forcedac") == 0)
        return parse_switch(val, "1", "0", &p->o.forcedac);
    if (strcmp(key, "intremap") == 0) {
        if ((rc = parse_switch(val, "off", "on", &b)) == 0)
            p->o.no_intr_remap = b;
        return rc;
    }
    if (strcmp(key, "dma_debug") == 0)
        return parse_switch(val, "on", "off", &p->o.dma_debug);
    if (strcmp(key, "swiotlb") == 0)
        return parse_size(val, &p->o.swiotlb_bytes);
    if (strcmp(key, "vtio.untrusted") == 0)
        return parse_untrusted(p, val);
    if (strcmp(key, "loglevel") == 0)
        return parse_loglevel(p, val);
    return -ENOENT;
}

int vtio_host_options_parse(struct vtio_host_options *o, const char *cmdline)
{
    if (!o || !cmdline)
        return vtio_fail(-EINVAL, "options: NULL argument");
    struct parse p = {
        .o = *o,
        .passthrough = o->iommu_mode == VTIO_HOST_IOMMU_PASSTHROUGH,
        .strict = o->iommu_mode == VTIO_HOST_IOMMU_STRICT,
    };
    const char *s = cmdline;
    for (;;) {
        s += strspn(s, " \t\n\r");
        if (!*s)
            break;
        size_t len = strcspn(s, " \t\n\r");
        char word[WORD_MAX];
        if (len >= sizeof(word))
            return vtio_fail(-EINVAL, "options: word '%.32s...' is too long", s);
        memcpy(word, s, len);
        word[len] = '\0';
        s += len;
        char *eq = strchr(word, '=');
        if (!eq)
            return vtio_fail(-EINVAL, "options: unknown word '%s'", word);
        *eq = '\0';
        int rc = parse_word(&p, word, eq + 1);
        if (rc == -ENOENT)
            return vtio_fail(-EINVAL, "options: unknown word '%s=%s'", word, eq + 1);
        if (rc < 0)
            return vtio_fail(-EINVAL, "options: bad value in '%s=%s'", word, eq + 1);
    }
    p.o.iommu_mode = p.passthrough ? VTIO_HOST_IOMMU_PASSTHROUGH
                   : p.strict      ? VTIO_HOST_IOMMU_STRICT
                                   : VTIO_HOST_IOMMU_LAZY;
    *o = p.o;
    return 0;
}
