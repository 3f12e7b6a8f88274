/* The sub-commands whose machinery later work items build. Each says so and exits 2. */
#include "cli/cli.h"

int cmd_train(int argc, char **argv) {
    (void)argc; (void)argv;
    return cli_not_built("train", "the trainer and checkpointing come with the jobs work item");
}

int cmd_resume(int argc, char **argv) {
    (void)argc; (void)argv;
    return cli_not_built("resume", "the trainer and checkpointing come with the jobs work item");
}

int cmd_eval(int argc, char **argv) {
    (void)argc; (void)argv;
    return cli_not_built("eval", "evaluation comes with the jobs work item");
}

int cmd_plan(int argc, char **argv) {
    (void)argc; (void)argv;
    return cli_not_built("plan", "the memory planner comes with the model and training work items");
}
