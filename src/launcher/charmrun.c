/* charmrun: see launcher.h. */
#include "launcher.h"

int main(int argc, char **argv) { return cp_launcher_main(argc, argv); }
