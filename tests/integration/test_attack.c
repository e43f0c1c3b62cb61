/*
 * The attack matrix, asserted: every attack against every default
 * configuration gives the result docs/attacks.md promises.
 *
 * Rows are attacks, columns the default configurations in their order
 * (none, pt, strict, lazy, lazy-bounce, strict-noir).  'S' succeeded, 'B'
 * blocked, 'N' n/a, 'W' a window that closed; lazy's IOVA reuse may show
 * 'W' or, on a machine slow enough that the flush-queue timer fires before
 * the rogue's next read, 'B' (written '?').  Beyond the table, every run is
 * checked for the one thing that must never happen: an attack getting
 * through where the booted host claims to stop it.
 */
#include <vtio/attack.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

static const char *const configs[] = { "none", "pt", "strict", "lazy", "lazy-bounce",
                                       "strict-noir" };
#define NCFG (sizeof(configs) / sizeof(configs[0]))

static const struct {
    const char *attack;
    const char *expect;        /* one letter per configuration */
} matrix[] = {
    { "read-outside",   "SSBBBB" },
    { "write-outside",  "SSBBBB" },
    { "write-readonly", "SSBBBB" },
    { "subpage-read",   "SSSSBS" },
    { "iova-reuse",     "SSB?BB" },
    { "dma-tables",     "NSBBBB" },
    { "dma-irt",        "NSBBBN" },
    { "spoof-rid",      "SBBBBB" },
    { "other-function", "SSBBBB" },
    { "forge-compat",   "SBBBBS" },
    { "forge-sid",      "SBBBBS" },
    { "forge-vector",   "SBBBBS" },
    { "spoof-msi",      "SBBBBB" },
    { "bme-off",        "SSBBBB" },
    { "fault-flood",    "SSBBBB" },
};

static bool matches(char want, enum vtio_attack_result got)
{
    switch (want) {
    case 'S': return got == VTIO_ATTACK_SUCCEEDED;
    case 'B': return got == VTIO_ATTACK_BLOCKED;
    case 'N': return got == VTIO_ATTACK_NA;
    case 'W': return got == VTIO_ATTACK_WINDOW;
    case '?': return got == VTIO_ATTACK_WINDOW || got == VTIO_ATTACK_BLOCKED;
    }
    return false;
}

static struct vtio_attack_outcome run(const char *config, const char *attack)
{
    int c = vtio_attack_config_find(config), a = vtio_attack_find(attack);
    CHECK(c >= 0 && a >= 0);
    struct vtio_attack_outcome o;
    CHECK_OK(vtio_attack_run(vtio_attack_config_get((unsigned)c), (unsigned)a, &o));
    CHECK(o.detail[0] != 0);
    return o;
}

/* Runs rows [first, last) of the matrix; prints every cell that differs. */
static void run_rows(unsigned first, unsigned last)
{
    unsigned wrong = 0;
    for (unsigned r = first; r < last; r++)
        for (unsigned j = 0; j < NCFG; j++) {
            struct vtio_attack_outcome o = run(configs[j], matrix[r].attack);
            if (!matches(matrix[r].expect[j], o.result) || vtio_attack_is_bug(&o)) {
                fprintf(stderr, "  %s on %s: %s (want %c), claimed %d: %s\n",
                        matrix[r].attack, configs[j], vtio_attack_result_name(o.result),
                        matrix[r].expect[j], o.claimed, o.detail);
                wrong++;
            }
        }
    CHECK_EQ(wrong, 0);
}

static void test_memory(void)
{
    run_rows(0, 5);
}

static void test_iommu_memory(void)
{
    run_rows(5, 9);
}

static void test_interrupts(void)
{
    run_rows(9, 13);
}

static void test_quiesced_and_flood(void)
{
    run_rows(13, 15);
}

/* The table covers the suite and the default configurations exactly. */
static void test_registry(void)
{
    CHECK_EQ(vtio_attack_count(), sizeof(matrix) / sizeof(matrix[0]));
    for (unsigned i = 0; i < vtio_attack_count(); i++)
        CHECK(!strcmp(vtio_attack_get(i)->name, matrix[i].attack));
    unsigned defaults = 0;
    for (unsigned i = 0; i < vtio_attack_config_count(); i++)
        defaults += vtio_attack_config_is_default(i);
    CHECK_EQ(defaults, NCFG);
    CHECK_EQ(vtio_attack_find("no-such-attack"), -ENOENT);
    CHECK_EQ(vtio_attack_config_find("no-such-config"), -ENOENT);
    struct vtio_attack_outcome o;
    CHECK_ERR(vtio_attack_run(NULL, 0, &o), -EINVAL);
    CHECK_ERR(vtio_attack_run(vtio_attack_config_get(0), vtio_attack_count(), &o), -EINVAL);
    for (unsigned j = 0; j < NCFG; j++)
        CHECK(vtio_attack_config_is_default((unsigned)vtio_attack_config_find(configs[j])));
}

/* What a window says: lazy's reads after the unmap got through for a while,
 * then stopped; strict's never did. */
static void test_window_numbers(void)
{
    struct vtio_attack_outcome o = run("strict", "iova-reuse");
    CHECK_EQ(o.window_accesses, 0);
    CHECK(o.have & VTIO_PROT_STRICT);
    o = run("lazy", "iova-reuse");
    CHECK(!(o.have & VTIO_PROT_STRICT) && (o.have & VTIO_PROT_TRANSLATE));
    if (o.result == VTIO_ATTACK_WINDOW)
        CHECK(o.window_accesses > 0 && o.window_ns > 0);
    CHECK(!o.claimed);
}

static const struct vtio_test tests[] = {
    { "registry", "attacks and default configurations are the matrix's", test_registry },
    { "memory", "outside, read-only, sub-page and reuse rows", test_memory },
    { "iommu_memory", "IOMMU tables, IRT, spoofed and other-function rows", test_iommu_memory },
    { "interrupts", "forged and spoofed interrupt rows", test_interrupts },
    { "quiesced_flood", "BME-off and fault-flood rows", test_quiesced_and_flood },
    { "window", "strict has no reuse window; lazy's is counted", test_window_numbers },
};

VTIO_TEST_MAIN(tests)
