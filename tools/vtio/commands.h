/* The vtio tool's subcommands: each takes its own argv (argv[0] is its name)
 * and returns the process exit status. */
#ifndef VTIO_TOOL_COMMANDS_H
#define VTIO_TOOL_COMMANDS_H

struct vtio_command {
    const char *name;
    const char *help;
    int (*run)(int argc, char **argv);
};

int cmd_demo(int argc, char **argv);

/* Parses "64M", "4K", "1G", "123" (bytes); returns 0 on error. */
unsigned long long vtio_tool_parse_size(const char *s);

#endif
