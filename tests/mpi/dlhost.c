/*
 * dlhost LIBRARY [ARGS...]: loads LIBRARY (dljob.c with the runtime and
 * MPI, as a shared object) with dlopen(RTLD_NOW | RTLD_LOCAL) and runs its
 * charmpy_dljob_main. This is how Python loads the extension module: MPI's
 * symbols stay out of the global scope, and Open MPI's plugins, which
 * expect to find them there, fail to load unless the mpi layer makes
 * libmpi global before MPI_Init. dlhost itself does not link MPI.
 */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: dlhost LIBRARY [ARGS...]\n");
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "TESTFAIL dlhost: dlopen %s: %s\n", argv[1], dlerror());
        return 2;
    }
    int (*job)(int, char **);
    *(void **)&job = dlsym(lib, "charmpy_dljob_main");
    if (!job) {
        fprintf(stderr, "TESTFAIL dlhost: no charmpy_dljob_main in %s\n", argv[1]);
        return 2;
    }
    return job(argc - 1, argv + 1);
}
