/*
 * The launcher as a function, so that the `charmrun` binary and the Python
 * package's `charmrun` command (which calls it from the extension module)
 * are one implementation. It takes charmrun's command line, runs the job to
 * its end and returns the exit code the caller should exit with; on bad
 * arguments it prints a one-line error and exits the process with code 2.
 * It changes the calling process's signal mask and dispositions: call it
 * only in a process that exits right after it returns.
 */
#ifndef CHARMPY_LAUNCHER_H
#define CHARMPY_LAUNCHER_H

int cp_launcher_main(int argc, char **argv);

#endif /* CHARMPY_LAUNCHER_H */
