/* cli — the orpo-hpc sub-commands. Each returns a process exit code (DESIGN.md).
 *
 *   cli_commands[] / cli_ncommands   the command table: name, handler, one-line summary, usage text
 *   cli_find(name)                   look a command up by name (NULL when unknown)
 *   cli_print_help(fp)               the overview printed by `orpo-hpc --help`
 *   cli_print_command_help(c, fp)    the usage text of one command
 *   cli_not_built(name, issue)       "not built yet" message; returns 2
 *   cli_fail()                       print err_msg() as an error and return its exit code
 *   cli_out_parent(out)              create the missing parent directories of an output file (mkdir -p)
 */
#ifndef ORPO_CLI_H
#define ORPO_CLI_H

#include <stdio.h>

typedef struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);  /* argv[0] is the command name */
    const char *summary;
    const char *usage;
} cli_command;

extern const cli_command cli_commands[];
extern const int cli_ncommands;

const cli_command *cli_find(const char *name);
void cli_print_help(FILE *fp);
void cli_print_command_help(const cli_command *c, FILE *fp);
int cli_not_built(const char *name, const char *what);
int cli_fail(void);
int cli_out_parent(const char *out);
int cli_wants_help(int argc, char **argv);

int cmd_train(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_import_model(int argc, char **argv);
int cmd_import_data(int argc, char **argv);
int cmd_make_demo(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_import_adapter(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_device(int argc, char **argv);

#endif
