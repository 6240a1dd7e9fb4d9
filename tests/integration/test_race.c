/* SPDX-License-Identifier: MIT */
/* Races at the seams the threading contract promises are safe, hammered for
 * a bounded time (loopback only) and checked by invariants (and by the
 * sanitizers): pc_server_set_rules racing with the stop. Run on every
 * backend. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/thread.h"
#include "harness.h"
#include "pick.h"
#include "portcullis.h"
#include "portcullis/filter.h"
#include "shim.h"

static atomic_int g_hammer_stop, g_rules_ok;

static const char *const rule_sets[] = {
    "allow 127.0.0.0/8\n",
    "deny 10.0.0.0/8\nallow 127.0.0.1\n",
    "deny 192.0.2.0/24\ndeny 198.51.100.7\nallow 127.0.0.0/8\n",
};

static void rules_main(void *arg)
{
    unsigned i = (unsigned)(uintptr_t)arg;
    while (!atomic_load(&g_hammer_stop)) {
        const char *t = rule_sets[i++ % 3];
        pc_rules_t *r;
        assert_int_equal(pc_rules_load_string(t, strlen(t), NULL, &r, NULL, 0), 0);
        int rc = pc_server_set_rules(g_srv, r);
        assert_int_equal(rc, 0);
        atomic_fetch_add(&g_rules_ok, 1);
        shim_sleep_ms(1);
    }
}

/* ---- 1. pc_server_set_rules racing with the stop -------------------------------- */

/* pc_server_set_rules from another thread while the server stops ("any
 * thread"): the stop closes the listeners under kf_lock, which the swap
 * holds while it reads them. (The stop also wrote a listener's fd once more
 * after releasing that lock: a data race ThreadSanitizer reported.) */
static void set_rules_racing_stop(void **state)
{
    (void)state;
    for (int round = 0; round < 10; round++) {
        atomic_store(&g_hammer_stop, 0);
        atomic_store(&g_rules_ok, 0);
        pc_server_config_t cfg;
        base_config(&cfg);
        start_server(&cfg);
        pc_thread_t th;
        assert_int_equal(pc__thread_start(&th, rules_main, (void *)(uintptr_t)round, "rules"), 0);
        WAIT_FOR(atomic_load(&g_rules_ok) >= 3, 5000);
        shim_sock_t cs = shim_connect("127.0.0.1", g_port, NULL, 5000);
        assert_true(cs != SHIM_INVALID);
        expect_echo(cs, "hi"); /* accepts go on under the swaps */
        shim_close(cs);
        assert_int_equal(pc_server_stop(g_srv, 0), 0);
        shim_sleep_ms(5); /* swaps after the stop too */
        atomic_store(&g_hammer_stop, 1);
        pc__thread_join(th);
        pc_server_destroy(g_srv);
        g_srv = NULL;
    }
}

int main(int argc, char **argv)
{
    shim_init();
    pc_log_set_level(PC_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(set_rules_racing_stop, teardown),
    };
    if (PICK_TEST(tests, argc, argv) != 0) return 1;
    return cmocka_run_group_tests_name("race", tests, NULL, NULL);
}
