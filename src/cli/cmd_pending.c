/* The sub-commands whose machinery later work items build. Each says so and exits 2. */
#include "cli/cli.h"

int cmd_plan(int argc, char **argv) {
    (void)argc; (void)argv;
    return cli_not_built("plan", "the memory planner comes with the GPU backend");
}
