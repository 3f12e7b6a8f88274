/* placeholder until the job module lands (same work item) */
#include "cli/cli.h"
int cmd_validate(int argc, char **argv) { (void)argc; (void)argv; return cli_not_built("validate", "job module"); }
