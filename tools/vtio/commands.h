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

struct vtio_mem;
/* Decodes the VT-d unit whose registers are at base in mem (and the tables
 * they point to) as text or JSON: see dump.c. */
void vtio_tool_dump_vtd(FILE *f, struct vtio_mem *mem, uint64_t base, bool json);

/* Parses "64M", "4K", "1G", "123" (bytes); returns 0 on error. */
unsigned long long vtio_tool_parse_size(const char *s);

#endif
