/*
 * vtio: the command-line tool.  One file per subcommand; this one only
 * dispatches.
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"

static const struct vtio_command commands[] = {
    { "demo", "run the main job on the default machine", cmd_demo },
    { "dump", "decode the VT-d unit's live state (--example programs one first)", cmd_dump },
    { "attack", "run the DMA attack suite against configurations (matrix + JSON)", cmd_attack },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: vtio <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n`vtio <command> --help` describes a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "vtio: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
