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

/* ---- 2. pc_connect racing with the stop ----------------------------------------- */

#ifdef __linux__
/* pc__mutex_lock is wrapped (-Wl,--wrap, CMakeLists.txt): on a thread that
 * asks for it, every lock the library takes waits g_slow_ms first, which
 * stretches the windows between a pc_connect's steps to milliseconds. */
void __real_pc__mutex_lock(pc_mutex_t *m);
void __wrap_pc__mutex_lock(pc_mutex_t *m);
static _Thread_local int tl_slow;
static atomic_int g_slow_ms;

void __wrap_pc__mutex_lock(pc_mutex_t *m)
{
    if (tl_slow) shim_sleep_ms(atomic_load(&g_slow_ms));
    __real_pc__mutex_lock(m);
}

static atomic_int g_sc_rc, g_sc_close, g_sc_open;
static pc_server_t *g_sc_srv;

static void sc_open(pc_conn_t *c)
{
    (void)c;
    atomic_fetch_add(&g_sc_open, 1);
}

static void sc_close(pc_conn_t *c, pc_close_reason_t r, int err)
{
    (void)c, (void)r, (void)err;
    atomic_fetch_add(&g_sc_close, 1);
}

static void sc_data(pc_conn_t *c, const void *d, size_t n)
{
    (void)c, (void)d, (void)n;
}

static void slow_connector(void *arg)
{
    (void)arg;
    char ep[64];
    snprintf(ep, sizeof ep, "127.0.0.1:%d", g_port);
    tl_slow = 1;
    atomic_store(&g_sc_rc, pc_connect(g_sc_srv, ep, NULL, NULL, NULL, NULL));
    tl_slow = 0;
}

/* A pc_connect under way when pc_server_stop starts either is refused
 * (PC_ENOTCONN) or is closed by the stop like any other connection: its
 * on_close has run when the stop returns, and the stop does not wait out its
 * drain for it. The peer (g_srv, a sink) never closes on its own, so a
 * connection the stop did not ask to close stays open until the drain ends.
 * (Before: a connect that passed its check of the stop flag just before the
 * stop began, and published its state just after the stop's sweep of the
 * connections, was never asked to close; the stop waited the whole drain,
 * then reset it.) */
static void connect_racing_stop(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.condition = NULL;
    cfg.cb.on_data = sc_data; /* a sink: keeps its connections */
    start_server(&cfg);
    pc_callbacks_t cb = {.on_open = sc_open, .on_data = sc_data, .on_close = sc_close};
    pc_server_config_t ccfg;
    pc_server_config_init(&ccfg);
    ccfg.close_linger_ms = 100; /* the sink sends no FIN back */
    atomic_store(&g_slow_ms, 4);
    int made = 0;
    for (int round = 0; round < 24; round++) {
        atomic_store(&g_sc_rc, 1);
        atomic_store(&g_sc_close, 0);
        atomic_store(&g_sc_open, 0);
        g_sc_srv = start_client_server(&cb, &ccfg);
        pc_thread_t th;
        assert_int_equal(pc__thread_start(&th, slow_connector, NULL, "slowconn"), 0);
        shim_sleep_ms(round % 12 * 2 + 1); /* the stop lands somewhere in the connect */
        uint64_t t0 = shim_now_ms();
        assert_int_equal(pc_server_stop(g_sc_srv, 2000), 0);
        uint64_t took = shim_now_ms() - t0;
        int closes = atomic_load(&g_sc_close);
        pc__thread_join(th);
        int rc = atomic_load(&g_sc_rc);
        pc_server_stats_t st;
        pc_server_stats(g_sc_srv, &st);
        pc_server_destroy(g_sc_srv);
        g_sc_srv = NULL;
        if (took >= 1500 || (rc == 0) != (closes == 1))
            print_message("round %d: pc_connect %s, on_close %d, stop took %llu ms\n", round,
                          pc_err_name(rc), closes, (unsigned long long)took);
        assert_true(rc == 0 || rc == PC_ENOTCONN);
        assert_int_equal(closes, rc == 0 ? 1 : 0);
        assert_int_equal(st.outbound, 0);
        assert_int_equal(st.closed[PC_CLOSE_ABORT], 0); /* not reset after the drain */
        assert_true(took < 1500);
        made += rc == 0;
    }
    assert_true(made > 0); /* some connects were under way as a stop began */
}
#endif

int main(int argc, char **argv)
{
    shim_init();
    pc_log_set_level(PC_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(set_rules_racing_stop, teardown),
#ifdef __linux__
        cmocka_unit_test_teardown(connect_racing_stop, teardown), /* not on Windows */
#endif
    };
    if (PICK_TEST(tests, argc, argv) != 0) return 1;
    return cmocka_run_group_tests_name("race", tests, NULL, NULL);
}
