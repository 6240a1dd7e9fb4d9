/* SPDX-License-Identifier: MIT */
/* pc_server_config_t.accept_data_wait_s: on Linux a connection reaches the
 * accept thread (and the application) only once its first bytes arrived, a
 * silent one after the wait; every connection still gets its verdict; what
 * runs is in the stats, and where it cannot run (Windows) that is said. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "pick.h"

static void start_waiting(unsigned s)
{
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.accept_data_wait_s = s;
    start_server_logging(&cfg, "accept_data_wait_s");
}

/* A client that connected and sent nothing is not accepted; its first bytes
 * bring it to the accept thread and the application at once. */
static void held_until_first_bytes(void **state)
{
    (void)state;
    start_waiting(3);
    shim_sock_t c = connect_server(2000);
#ifdef _WIN32
    assert_int_equal(stats().accept_data_wait_s, 0);
    assert_int_equal(g_nstart_lines, 1); /* no data wait here: said once */
    assert_non_null(strstr(g_start_lines[0], "no accept data wait on this platform"));
    WAIT_FOR(stats().accepted == 1, 2000); /* accepted at the handshake */
    assert_int_equal(stats().accepted, 1);
#else
    assert_int_equal(stats().accept_data_wait_s, 3); /* 3 s is on the kernel's schedule */
    assert_int_equal(g_nstart_lines, 0);
    shim_sleep_ms(400); /* long enough for an accept (a few ms), well inside the wait */
    assert_int_equal(stats().accepted, 0);
    assert_int_equal(atomic_load(&g_opens), 0);
#endif
    uint64_t t0 = shim_now_ms();
    expect_echo(c, "first bytes");
    assert_true(shim_now_ms() - t0 < 1000); /* not held to the end of the wait */
    assert_int_equal(stats().accepted, 1);
    assert_int_equal(atomic_load(&g_opens), 1);
    shim_close(c);
}

/* Without the option a silent client is accepted as its handshake
 * completes: the difference the option makes. */
static void off_accepts_at_handshake(void **state)
{
    (void)state;
    start_waiting(0);
    assert_int_equal(stats().accept_data_wait_s, 0);
    shim_sock_t c = connect_server(2000);
    WAIT_FOR(atomic_load(&g_opens) == 1, 2000);
    assert_int_equal(atomic_load(&g_opens), 1);
    assert_int_equal(stats().accepted, 1);
    assert_int_equal(g_nstart_lines, 0);
    shim_close(c);
}

/* A client that never sends is not lost: it is accepted once the wait
 * ends (when it answers the SYN-ACK the kernel sends again), and served. */
static void silent_client_accepted_after_wait(void **state)
{
    (void)state;
    start_waiting(1);
    uint64_t t0 = shim_now_ms();
    shim_sock_t c = connect_server(5000);
    WAIT_FOR(atomic_load(&g_opens) == 1, 5000);
    assert_int_equal(atomic_load(&g_opens), 1);
#ifndef _WIN32
    assert_int_equal(stats().accept_data_wait_s, 1);
    assert_true(shim_now_ms() - t0 >= 800); /* the SYN-ACK is sent again after ~1 s */
#else
    (void)t0;
#endif
    expect_echo(c, "late");
    shim_close(c);
}

/* The verdict still comes first: a rejected source's first bytes bring it
 * to the accept thread, which refuses it; the application never sees it. */
static void verdict_still_applies(void **state)
{
    (void)state;
    g_reject_src = "127.0.0.2"; /* start_server keeps it; teardown clears it */
    start_waiting(3);
    expect_refused("127.0.0.2");
    shim_sock_t ok = shim_connect("127.0.0.1", g_port, "127.0.0.3", 2000);
    assert_true(ok != SHIM_INVALID);
    expect_echo(ok, "welcome");
    assert_int_equal(stats().rejected[PC_STEP_CONDITION], 1);
    assert_int_equal(atomic_load(&g_opens), 1);
    shim_close(ok);
}

/* The kernel keeps the wait on its SYN-ACK retransmission schedule (1, 3,
 * 7, 15 s, ...), rounding up: the stats report the wait in force, not the
 * one asked for. */
static void stats_report_kernel_rounding(void **state)
{
    (void)state;
    start_waiting(2);
#ifdef _WIN32
    assert_int_equal(stats().accept_data_wait_s, 0);
#else
    assert_int_equal(stats().accept_data_wait_s, 3);
    teardown(NULL);
    start_waiting(4);
    assert_int_equal(stats().accept_data_wait_s, 7);
#endif
}

static void bounds(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    expect_bound(&cfg, &cfg.accept_data_wait_s, PC_ACCEPT_DATA_WAIT_MAX_S);
}

int main(int argc, char **argv)
{
    shim_init();
    pc_log_set_level(PC_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(held_until_first_bytes, teardown),
        cmocka_unit_test_teardown(off_accepts_at_handshake, teardown),
        cmocka_unit_test_teardown(silent_client_accepted_after_wait, teardown),
        cmocka_unit_test_teardown(verdict_still_applies, teardown),
        cmocka_unit_test_teardown(stats_report_kernel_rounding, teardown),
        cmocka_unit_test(bounds),
    };
    if (PICK_TEST(tests, argc, argv) != 0) return 1;
    return cmocka_run_group_tests_name("data_wait", tests, NULL, NULL);
}
