/* placeholder until the HDF5 helpers land (same work item) */
#include "cli/cli.h"
int cmd_inspect(int argc, char **argv) { (void)argc; (void)argv; return cli_not_built("inspect", "HDF5 helpers"); }
