#include "cli.h"
int dsrt_cmd_encode(int argc, char **argv) { (void)argc; (void)argv; return 1; }
int dsrt_cmd_parse(int argc, char **argv) { (void)argc; (void)argv; return 1; }
