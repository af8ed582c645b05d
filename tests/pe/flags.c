/*
 * Runtime flags on the command line: cp_init removes them from argv and
 * keeps them for cp_flag / cp_flag_at, with their values, in order.
 * Run as: flags a +balancer GreedyLB b +LBDebug 1 +stats ++quiet
 *               +trace DIR/t.json +p3x c +LBPeriod
 * (+p3x is not a runtime flag: only +p followed by a number is).
 */
#include "pe_test.h"

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("flags", &argc, &argv);
    static const char *const kept[] = {"a", "b", "+p3x", "c"};
    PT_CHECK(ctx, argc == 5, "argc %d after cp_init, expected 5", argc);
    for (int i = 0; i < 4; i++)
        PT_CHECK(ctx, strcmp(argv[i + 1], kept[i]) == 0, "argv[%d] is '%s', expected '%s'",
                 i + 1, argv[i + 1], kept[i]);
    PT_CHECK(ctx, argv[argc] == NULL, "argv is not NULL-terminated");
    static const char *const names[] = {"+balancer", "+LBDebug", "+stats", "++quiet",
                                        "+trace",    "+LBPeriod"};
    static const char *const values[] = {"GreedyLB", "1", "", "", "t.json", ""};
    for (int i = 0; i < 6; i++) {
        const char *v = cp_flag(ctx, names[i]);
        /* +trace's file: t.json in a folder of the test's (tracing writes it) */
        size_t lv = v ? strlen(v) : 0, lw = strlen(values[i]);
        int same = v && (i == 4 ? lv >= lw && strcmp(v + lv - lw, values[i]) == 0
                                : strcmp(v, values[i]) == 0);
        PT_CHECK(ctx, same, "cp_flag(%s) is '%s', expected '%s'", names[i], v ? v : "(null)",
                 values[i]);
        const char *vi = NULL;
        const char *n = cp_flag_at(ctx, i, &vi);
        PT_CHECK(ctx, n && strcmp(n, names[i]) == 0 && vi == v, "cp_flag_at(%d) is '%s'", i,
                 n ? n : "(null)");
    }
    PT_CHECK(ctx, cp_flag_at(ctx, 6, NULL) == NULL, "a 7th flag was kept");
    PT_CHECK(ctx, cp_flag(ctx, "+p") == NULL, "+p3x was taken for +p");
    PT_CHECK(ctx, cp_flag(ctx, "+nothere") == NULL, "cp_flag of a flag not given");
    if (cp_my_pe(ctx) == 0)
        printf("OK flags P=%d\n", cp_num_pes(ctx));
    cp_barrier(ctx);
    return cp_finalize(ctx);
}
