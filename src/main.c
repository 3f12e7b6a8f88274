/* orpo-hpc — entry point: global flags, then one sub-command (src/cli/). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/err.h"
#include "io/log.h"
#include "io/mem.h"

/* cJSON (tokenizer.json, safetensors headers, config files) allocates through mem_alloc: out of memory there
 * exits 4 with a message, as everywhere else, instead of a NULL that reads as a parse error or crashes */
static void *json_alloc(size_t n) { return mem_alloc(n, "parsed JSON"); }

int main(int argc, char **argv) {
    cJSON_InitHooks(&(cJSON_Hooks){json_alloc, free});
    if (argc < 2) {
        cli_print_help(stderr);
        return ERR_ARGS;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("orpo-hpc %s\n", ORPO_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        cli_print_help(stdout);
        return 0;
    }
    if (!strcmp(cmd, "help")) {
        if (argc < 3) {
            cli_print_help(stdout);
            return 0;
        }
        const cli_command *c = cli_find(argv[2]);
        if (!c) {
            log_error("help: unknown command '%s' (see orpo-hpc --help)", argv[2]);
            return ERR_ARGS;
        }
        cli_print_command_help(c, stdout);
        return 0;
    }
    const cli_command *c = cli_find(cmd);
    if (!c) {
        log_error("unknown command '%s' (see orpo-hpc --help)", cmd);
        return ERR_ARGS;
    }
    if (cli_wants_help(argc - 1, argv + 1)) {
        cli_print_command_help(c, stdout);
        return 0;
    }
    return c->run(argc - 1, argv + 1);
}
