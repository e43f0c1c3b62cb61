/* The vtio tool's subcommands: each takes its own argv (argv[0] is its name)
 * and returns the process exit status. */
#ifndef VTIO_TOOL_COMMANDS_H
#define VTIO_TOOL_COMMANDS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct vtio_command {
    const char *name;
    const char *help;
    int (*run)(int argc, char **argv);
};

int cmd_demo(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_attack(int argc, char **argv);

struct vtio_mem;
/* Decodes the VT-d unit whose registers are at base in mem (and the tables
 * they point to) as text or JSON: see dump.c. */
void vtio_tool_dump_vtd(FILE *f, struct vtio_mem *mem, uint64_t base, bool json);

struct vtio_host;
struct vtio_dmae;
/* The demo's IOMMU half (demo_iommu.c): e0 is the first engine, src/dst two
 * 1 MiB buffers.  @returns 0 if everything worked. */
int vtio_tool_demo_iommu(struct vtio_host *h, struct vtio_dmae *e0, uint64_t src, uint64_t dst);
/* The demo's VFIO part (demo_vfio.c): the engine-th DMA engine is bound to
 * vfio-pci and driven from a process beside e0, the in-host driver's.
 * @returns 0 if everything worked (0 also without an IOMMU: nothing to show). */
int vtio_tool_demo_vfio(struct vtio_host *h, struct vtio_dmae *e0, unsigned engine);

/* Fills len bytes of RAM at pa with a pseudo-random sequence from seed;
 * compares two ranges of RAM. */
void vtio_tool_fill_random(struct vtio_mem *mem, uint64_t pa, uint64_t len, uint64_t seed);
bool vtio_tool_same_bytes(struct vtio_mem *mem, uint64_t a, uint64_t b, uint64_t len);

/* Parses "64M", "4K", "1G", "123" (bytes); returns 0 on error. */
unsigned long long vtio_tool_parse_size(const char *s);

#endif
