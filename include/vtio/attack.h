/*
 * attack: what a malicious device can do to a vtio machine, configuration by
 * configuration.
 *
 * An attack is a script for the rogue device (include/vtio/dev/rogue.h) and
 * for the host software around it: a driver binds to the rogue and maps
 * memory for it as an honest driver would, a second device (the DMA engine
 * at 00:03.0, "the victim") has a driver with buffers and an interrupt of
 * its own, and the rogue tries to reach what is not its own.  Each attack
 * decides from the machine's memory and interrupt counters alone whether it
 * got through: a secret it read, a byte it changed, an interrupt that
 * reached a handler or a CPU.
 *
 * A configuration is a machine (with or without a VT-d unit) and a host
 * kernel command line (include/vtio/host.h): no IOMMU, pass-through,
 * strict, lazy, lazy with the rogue untrusted (bounce buffering), each with
 * or without interrupt remapping.  Every run boots a fresh machine, so runs
 * are independent.
 *
 * What a configuration claims is read off the booted host, not assumed:
 * the rogue's default domain translates (DMA or DMA-FQ), invalidates
 * strictly, bounces sub-page mappings (untrusted), interrupt remapping is
 * on, ACS Source Validation is on above the rogue.  Each attack names the
 * protections that together claim to stop it; an attack that gets through
 * where its protections are all on is a bug (vtio_attack_is_bug), and
 * vtio's own tests fail on it.
 *
 * Threads: vtio_attack_run() may be called from several threads at once
 * (each run has its own machine).
 */
#ifndef VTIO_ATTACK_H
#define VTIO_ATTACK_H

#include <vtio/common.h>

enum vtio_attack_result {
    VTIO_ATTACK_NA = 0,        /* nothing to attack here (no IOMMU tables, ...) */
    VTIO_ATTACK_BLOCKED,       /* refused every time */
    VTIO_ATTACK_SUCCEEDED,     /* got through */
    VTIO_ATTACK_WINDOW,        /* got through for a while, then was refused */
};

/* Protections a booted configuration has (bits of vtio_attack_outcome.have
 * and vtio_attack_info.needs). */
#define VTIO_PROT_TRANSLATE  0x01  /* the rogue's DMA is translated (DMA/DMA-FQ domain) */
#define VTIO_PROT_STRICT     0x02  /* unmap invalidates before it returns */
#define VTIO_PROT_BOUNCE     0x04  /* sub-page mappings are bounced (untrusted) */
#define VTIO_PROT_IR         0x08  /* interrupt remapping */
#define VTIO_PROT_ACS        0x10  /* ACS Source Validation above the rogue */

struct vtio_attack_info {
    const char *name;          /* "read-outside" */
    const char *summary;       /* one line: what the rogue tries */
    unsigned needs;            /* VTIO_PROT_*: all of these claim to stop it */
};

struct vtio_attack_config {
    const char *name;          /* "strict" */
    const char *cmdline;       /* host options (vtio_host_options_parse) */
    bool no_iommu;             /* a machine without a VT-d unit */
    const char *summary;
};

struct vtio_attack_outcome {
    enum vtio_attack_result result;
    unsigned have;             /* VTIO_PROT_* the booted configuration has */
    bool claimed;              /* (needs & have) == needs and the attack applies */
    char detail[200];          /* what happened, in a sentence */
    uint64_t window_ns;        /* WINDOW: how long after the unmap returned */
    uint64_t window_accesses;  /* WINDOW: accesses that got through meanwhile */
    uint64_t faults;           /* IOMMU faults the host saw during the run */
};

/* The attacks and the predefined configurations, in matrix order. */
VTIO_API unsigned vtio_attack_count(void);
VTIO_API const struct vtio_attack_info *vtio_attack_get(unsigned i);
/* @returns the index; -ENOENT no such attack. */
VTIO_API int vtio_attack_find(const char *name);

VTIO_API unsigned vtio_attack_config_count(void);
VTIO_API const struct vtio_attack_config *vtio_attack_config_get(unsigned i);
/* @returns the index; -ENOENT no such configuration. */
VTIO_API int vtio_attack_config_find(const char *name);
/* The configurations `vtio attack` runs when none is named. */
VTIO_API bool vtio_attack_config_is_default(unsigned i);

/*
 * Boots cfg on a fresh machine with the rogue, runs attack `attack`, and
 * tears everything down.
 * @returns 0 and *out; -EINVAL bad index or cfg; or the error that kept the
 * machine from booting (message in vtio_last_error()).
 */
VTIO_API int vtio_attack_run(const struct vtio_attack_config *cfg, unsigned attack,
                             struct vtio_attack_outcome *out);

/* Got through although the configuration claims to stop it. */
static inline bool vtio_attack_is_bug(const struct vtio_attack_outcome *o)
{
    return o->claimed &&
           (o->result == VTIO_ATTACK_SUCCEEDED || o->result == VTIO_ATTACK_WINDOW);
}

VTIO_API const char *vtio_attack_result_name(enum vtio_attack_result r);

#endif
