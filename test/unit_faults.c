/* unit_faults: the randomised model of test/ops.h under injected mapping
 * failures (the OS layer's xa_os_fail_maps hook, reachable only from a
 * static link).  In windows of 500 operations, the next 1..64 mappings
 * xalloc asks for fail (after malloc_trim, so that new chunks are needed);
 * every call must then either succeed or fail cleanly (NULL with ENOMEM,
 * EINVAL/ENOMEM codes, the old block of a failed realloc intact), and the
 * model checks every live block as usual.  When the faults stop, the same
 * model must run with no failure at all: memory that came back is usable.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ops.h"
#include "os.h"

#define SEEDS 4
#define WINDOW 500

static void test_faults_then_recovery(void **state)
{
    (void)state;
    ops_report_crashes();
    ops_model *m = malloc(sizeof *m);
    assert_non_null(m);
    unsigned long ops = 0, injected = 0, windows = 0, ooms = 0, clean_ops = 0;
    tu_rng r;
    tu_seed(&r, 77);
    for (unsigned seed = 1; seed <= SEEDS; seed++) {
        ops_init_seed(m, 1000 + seed, 0);
        m->oom_ok = 1;
        for (unsigned w = 0; w < 40; w++) {
            malloc_trim(0);
            unsigned long k = tu_range(&r, 1, 64);
            xa_os_fail_maps = k;
            ops_run(m, m->op + WINDOW);
            injected += k - xa_os_fail_maps;
            xa_os_fail_maps = 0;
            windows++;
            ops_run(m, m->op + WINDOW);          /* and between windows, none */
        }
        ooms += m->ooms;
        /* faults over: nothing may fail any more */
        m->oom_ok = 0;
        unsigned long before = m->op;
        ops_run(m, m->op + 20000);
        clean_ops += m->op - before;
        ops_free_all(m);
        ops += m->st.ops;
        if (atomic_load(&m->own_budget.live) != 0) fail_msg("budget accounting leaked");
    }
    free(m);
    print_message("faults: %lu ops in %lu windows, %lu mapping failures injected, %lu requests answered "
                  "NULL/ENOMEM, then %lu ops with no failure\n",
                  ops, windows, injected, ooms, clean_ops);
    assert_true(injected > 0);
    assert_true(ooms > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faults_then_recovery),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
