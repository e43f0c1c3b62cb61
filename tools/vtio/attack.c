/*
 * vtio attack: runs the attack suite (include/vtio/attack.h) against
 * configurations and prints the matrix, attack by configuration, then
 * writes every outcome as JSON.
 *
 * A cell reads "blocked", "succeeded", "window <ms>" or "n/a".  A "!" marks
 * a cell where the configuration claims to stop the attack and did not: a
 * bug.  The exit status is 0 only if there is no such cell and, in the
 * configuration without an IOMMU, every attack that applies succeeded (an
 * attack that cannot get through where nothing protects proves nothing).
 *
 * Runs are independent machines, so they go on --jobs threads at once.
 */
#include <vtio/attack.h>

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

struct cell {
    unsigned attack, config;
    int err;
    struct vtio_attack_outcome out;
};

struct plan {
    unsigned nattacks, nconfigs;
    unsigned attack[64], config[32];
    struct cell *cells;          /* nattacks * nconfigs, row by attack */
    atomic_uint next;
};

static void *worker(void *arg)
{
    struct plan *p = arg;
    unsigned n = p->nattacks * p->nconfigs;
    for (unsigned i; (i = atomic_fetch_add(&p->next, 1)) < n;) {
        struct cell *c = &p->cells[i];
        c->err = vtio_attack_run(vtio_attack_config_get(c->config), c->attack, &c->out);
    }
    return NULL;
}

/* Adds the comma-separated names in list to idx[]; -1 on an unknown name. */
static int add_names(const char *list, unsigned *idx, unsigned *n, unsigned max,
                     int (*find)(const char *), const char *kind)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *save, *name = strtok_r(buf, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        int i = find(name);
        if (i < 0) {
            fprintf(stderr, "vtio attack: no %s named '%s' (--list shows them)\n", kind, name);
            return -1;
        }
        if (*n < max)
            idx[(*n)++] = (unsigned)i;
    }
    return 0;
}

static const char *prot_names[] = { "translate", "strict", "bounce", "ir", "acs" };

/* "translate+strict+ir" (text, "-" for none) or "\"translate\", ..." (JSON). */
static const char *prots(char *buf, size_t len, unsigned bits, bool json)
{
    size_t at = 0;
    buf[0] = 0;
    for (unsigned b = 0; b < 5 && at < len; b++)
        if (bits & (1u << b))
            at += (size_t)snprintf(buf + at, len - at, json ? "%s\"%s\"" : "%s%s",
                                   !at ? "" : json ? ", " : "+", prot_names[b]);
    if (!at && !json)
        snprintf(buf, len, "-");
    return buf;
}

static void list(void)
{
    printf("attacks (protections that claim to stop it):\n");
    for (unsigned i = 0; i < vtio_attack_count(); i++) {
        const struct vtio_attack_info *a = vtio_attack_get(i);
        char buf[64];
        printf("  %-15s %s (%s)\n", a->name, a->summary, prots(buf, sizeof(buf), a->needs, false));
    }
    printf("\nconfigurations (* = run by default):\n");
    for (unsigned i = 0; i < vtio_attack_config_count(); i++) {
        const struct vtio_attack_config *c = vtio_attack_config_get(i);
        printf(" %c%-17s %s%s [%s]\n", vtio_attack_config_is_default(i) ? '*' : ' ', c->name,
               c->no_iommu ? "machine without VT-d; " : "", c->summary,
               *c->cmdline ? c->cmdline : "no options");
    }
}

static void cell_text(const struct cell *c, char *buf, size_t len)
{
    if (c->err) {
        snprintf(buf, len, "error");
        return;
    }
    const char *mark = vtio_attack_is_bug(&c->out) ? "!" : "";
    if (c->out.result == VTIO_ATTACK_WINDOW)
        snprintf(buf, len, "window %.1fms%s", c->out.window_ns / 1e6, mark);
    else
        snprintf(buf, len, "%s%s", vtio_attack_result_name(c->out.result), mark);
}

static void print_matrix(const struct plan *p)
{
    printf("%-15s", "");
    for (unsigned j = 0; j < p->nconfigs; j++)
        printf(" %-15s", vtio_attack_config_get(p->config[j])->name);
    printf("\n");
    for (unsigned i = 0; i < p->nattacks; i++) {
        printf("%-15s", vtio_attack_get(p->attack[i])->name);
        for (unsigned j = 0; j < p->nconfigs; j++) {
            char buf[32];
            cell_text(&p->cells[i * p->nconfigs + j], buf, sizeof(buf));
            printf(" %-15s", buf);
        }
        printf("\n");
    }
    printf("\nprotections the booted hosts have:\n");
    for (unsigned j = 0; j < p->nconfigs; j++) {
        char buf[64];
        printf("  %-15s %s\n", vtio_attack_config_get(p->config[j])->name,
               prots(buf, sizeof(buf), p->cells[j].out.have, false));
    }
}

static void print_details(const struct plan *p)
{
    for (unsigned i = 0; i < p->nattacks; i++)
        for (unsigned j = 0; j < p->nconfigs; j++) {
            const struct cell *c = &p->cells[i * p->nconfigs + j];
            printf("%-15s %-12s %s%s\n", vtio_attack_get(c->attack)->name,
                   vtio_attack_config_get(c->config)->name,
                   vtio_attack_is_bug(&c->out) ? "BUG: " : "",
                   c->err ? "the machine did not boot" : c->out.detail);
        }
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void write_json(FILE *f, const struct plan *p, unsigned bugs)
{
    fprintf(f, "{\n  \"configs\": [");
    for (unsigned j = 0; j < p->nconfigs; j++) {
        const struct vtio_attack_config *c = vtio_attack_config_get(p->config[j]);
        fprintf(f, "%s\n    {\"name\": ", j ? "," : "");
        json_string(f, c->name);
        fprintf(f, ", \"cmdline\": ");
        json_string(f, c->cmdline);
        char buf[128];
        fprintf(f, ", \"no_iommu\": %s, \"protections\": [%s]}", c->no_iommu ? "true" : "false",
                prots(buf, sizeof(buf), p->cells[j].out.have, true));
    }
    fprintf(f, "\n  ],\n  \"results\": [");
    for (unsigned k = 0; k < p->nattacks * p->nconfigs; k++) {
        const struct cell *c = &p->cells[k];
        fprintf(f, "%s\n    {\"attack\": ", k ? "," : "");
        json_string(f, vtio_attack_get(c->attack)->name);
        fprintf(f, ", \"config\": ");
        json_string(f, vtio_attack_config_get(c->config)->name);
        fprintf(f, ", \"result\": ");
        json_string(f, c->err ? "error" : vtio_attack_result_name(c->out.result));
        fprintf(f, ", \"claimed\": %s, \"bug\": %s, \"window_ns\": %llu, "
                   "\"window_accesses\": %llu, \"faults\": %llu, \"detail\": ",
                c->out.claimed ? "true" : "false", vtio_attack_is_bug(&c->out) ? "true" : "false",
                (unsigned long long)c->out.window_ns, (unsigned long long)c->out.window_accesses,
                (unsigned long long)c->out.faults);
        json_string(f, c->out.detail);
        fputc('}', f);
    }
    fprintf(f, "\n  ],\n  \"bugs\": %u\n}\n", bugs);
}

/* Cells that fail the run, each printed: bugs (claimed, got through; also
 * counted in *bugs), attacks blocked where nothing protects, and runs whose
 * machine did not boot. */
static unsigned verdict(const struct plan *p, unsigned *bugs)
{
    unsigned bad = 0;
    *bugs = 0;
    for (unsigned k = 0; k < p->nattacks * p->nconfigs; k++) {
        const struct cell *c = &p->cells[k];
        const struct vtio_attack_config *cfg = vtio_attack_config_get(c->config);
        const char *name = vtio_attack_get(c->attack)->name;
        if (c->err) {
            fprintf(stderr, "vtio attack: %s on %s: the machine did not boot\n", name, cfg->name);
            bad++;
        } else if (vtio_attack_is_bug(&c->out)) {
            (*bugs)++;
            fprintf(stderr, "vtio attack: BUG: %s got through on %s, which claims to stop it\n",
                    name, cfg->name);
            bad++;
        } else if (cfg->no_iommu && c->out.result == VTIO_ATTACK_BLOCKED) {
            fprintf(stderr, "vtio attack: %s was blocked with no IOMMU: the attack is broken\n",
                    name);
            bad++;
        }
    }
    return bad;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vtio attack [--config NAME[,NAME...]] [--attack NAME[,NAME...]]\n"
            "                   [--json FILE] [--jobs N] [--details] [--list]\n"
            "Runs each attack against each configuration on a fresh machine, prints\n"
            "the matrix and writes the outcomes as JSON (default vtio-attack.json;\n"
            "'-' for stdout).  Exit status 1 if a configuration failed to stop an\n"
            "attack it claims to stop.\n");
}

int cmd_attack(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' }, { "attack", required_argument, NULL, 'a' },
        { "json", required_argument, NULL, 'o' },   { "jobs", required_argument, NULL, 'j' },
        { "details", no_argument, NULL, 'd' },      { "list", no_argument, NULL, 'l' },
        { "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
    };
    static struct plan p;
    memset(&p, 0, sizeof(p));
    const char *json = "vtio-attack.json";
    unsigned jobs = 2;
    bool details = false;
    optind = 1;
    for (int ch; (ch = getopt_long(argc, argv, "c:a:o:j:dlh", opts, NULL)) != -1;) {
        switch (ch) {
        case 'c':
            if (add_names(optarg, p.config, &p.nconfigs, 32, vtio_attack_config_find,
                          "configuration") < 0)
                return 2;
            break;
        case 'a':
            if (add_names(optarg, p.attack, &p.nattacks, 64, vtio_attack_find, "attack") < 0)
                return 2;
            break;
        case 'o': json = optarg; break;
        case 'j': jobs = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'd': details = true; break;
        case 'l': list(); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || jobs == 0 || jobs > 64) {
        usage(stderr);
        return 2;
    }
    if (!p.nconfigs)
        for (unsigned j = 0; j < vtio_attack_config_count(); j++)
            if (vtio_attack_config_is_default(j))
                p.config[p.nconfigs++] = j;
    if (!p.nattacks)
        for (unsigned i = 0; i < vtio_attack_count() && i < 64; i++)
            p.attack[p.nattacks++] = i;

    p.cells = calloc((size_t)p.nattacks * p.nconfigs, sizeof(*p.cells));
    if (!p.cells)
        return 1;
    for (unsigned i = 0; i < p.nattacks; i++)
        for (unsigned j = 0; j < p.nconfigs; j++)
            p.cells[i * p.nconfigs + j] = (struct cell){ .attack = p.attack[i],
                                                         .config = p.config[j] };
    pthread_t t[64];
    unsigned started = 0;
    while (started < jobs && pthread_create(&t[started], NULL, worker, &p) == 0)
        started++;
    if (!started)
        worker(&p);
    for (unsigned i = 0; i < started; i++)
        pthread_join(t[i], NULL);

    print_matrix(&p);
    if (details) {
        printf("\n");
        print_details(&p);
    }
    fflush(stdout);
    unsigned bugs;
    unsigned bad = verdict(&p, &bugs);
    FILE *f = strcmp(json, "-") ? fopen(json, "w") : stdout;
    if (!f) {
        fprintf(stderr, "vtio attack: cannot write %s: %s\n", json, strerror(errno));
        bad++;
    } else {
        write_json(f, &p, bugs);
        if (f != stdout)
            fclose(f);
    }
    free(p.cells);
    return bad ? 1 : 0;
}
