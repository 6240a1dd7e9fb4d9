/* SPDX-License-Identifier: MIT */
/* pc_server_config_t.batch_wait_us: under load the threads let work gather
 * before they wake, a lone exchange is never held back, what runs is in the
 * stats, and less than asked is said. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifdef __linux__
#include <sys/utsname.h>
#endif

#include "harness.h"

#define NCONN 48

/* The workers batch on io_uring from Linux 6.12 (IORING_FEAT_MIN_TIMEOUT). */
static int kernel_has_min_timeout(void)
{
#ifdef __linux__
    struct utsname u;
    int maj = 0, min = 0;
    if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &maj, &min) != 2) return 0;
    return maj > 6 || (maj == 6 && min >= 12);
#else
    return 0;
#endif
}

static void set_env(const char *name, const char *value)
{
#ifdef _WIN32
    char buf[128];
    snprintf(buf, sizeof buf, "%s=%s", name, value ? value : "");
    _putenv(buf);
#else
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
#endif
}

static char batch_lines[4][256];
static int nbatch_lines;

static void log_sink(void *user, pc_log_level_t level, const char *line)
{
    (void)user;
    (void)level;
    if (strstr(line, "batch_wait_us") && nbatch_lines < 4)
        snprintf(batch_lines[nbatch_lines++], sizeof batch_lines[0], "%s", line);
}

static void start_batched(unsigned us)
{
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.batch_wait_us = us;
    nbatch_lines = 0;
    pc_log_set_handler(log_sink, NULL);
    start_server(&cfg);
    pc_log_set_handler(NULL, NULL);
}

/* One exchange at a time: each sleep of the worker sees one or two
 * completions, never a pile, so no exchange waits for the 50 ms batch. */
static void ping_pong(int rounds, uint64_t *ms)
{
    shim_sock_t s = shim_connect("127.0.0.1", g_port, NULL, 2000);
    assert_true(s != SHIM_INVALID);
    uint64_t t0 = shim_now_ms();
    for (int i = 0; i < rounds; i++)
        expect_echo(s, "ping");
    *ms = shim_now_ms() - t0;
    shim_close(s);
}

/* NCONN connections opened back to back (they pile up in the backlog), then
 * rounds of a message on each before any reply is read: completions pile up
 * on the workers. Every byte comes back, in order, per connection. */
static void burst(int rounds)
{
    shim_sock_t c[NCONN];
    for (int i = 0; i < NCONN; i++) {
        c[i] = shim_connect("127.0.0.1", g_port, NULL, 2000);
        assert_true(c[i] != SHIM_INVALID);
    }
    for (int r = 0; r < rounds; r++) {
        char msg[NCONN][32];
        for (int i = 0; i < NCONN; i++) {
            int n = snprintf(msg[i], sizeof msg[i], "r%d-c%d;", r, i);
            assert_int_equal(shim_send_all(c[i], msg[i], (size_t)n), 0);
        }
        for (int i = 0; i < NCONN; i++) {
            char got[32];
            size_t n = strlen(msg[i]);
            assert_int_equal(shim_recv_exact(c[i], got, n), n);
            assert_memory_equal(got, msg[i], n);
        }
    }
    for (int i = 0; i < NCONN; i++)
        shim_close(c[i]);
}

static void busy_server_gathers(void **state)
{
    (void)state;
    start_batched(2000);
    pc_server_stats_t st = stats();
#ifdef _WIN32
    assert_int_equal(st.batch_wait_us_accept, 0);
#else
    assert_int_equal(st.batch_wait_us_accept, 2000);
#endif
    int workers = st.backend == PC_BACKEND_URING && kernel_has_min_timeout();
    assert_int_equal(st.batch_wait_us_workers, workers ? 2000 : 0);
    assert_int_equal(st.batch_waits, 0);
    burst(20);
    st = stats();
    if (st.batch_wait_us_workers || st.batch_wait_us_accept)
        assert_true(st.batch_waits > 0);
    else
        assert_int_equal(st.batch_waits, 0);
    /* all closed, nothing lost */
    WAIT_FOR(atomic_load(&g_closes) == NCONN, 5000);
    assert_int_equal(atomic_load(&g_opens), NCONN);
    assert_int_equal(atomic_load(&g_closes), NCONN);
}

static void lone_exchange_not_held(void **state)
{
    (void)state;
    start_batched(50000); /* 50 ms: held exchanges would show */
    uint64_t ms;
    ping_pong(20, &ms);
    assert_true(ms < 500); /* 20 held exchanges take >= 1000 ms */
    /* one connection at a time: the accept thread takes each at once */
    uint64_t t0 = shim_now_ms();
    for (int i = 0; i < 12; i++) {
        shim_sock_t s = shim_connect("127.0.0.1", g_port, NULL, 2000);
        assert_true(s != SHIM_INVALID);
        expect_echo(s, "hello");
        shim_close(s);
    }
    assert_true(shim_now_ms() - t0 < 500); /* 12 held accepts take >= 600 ms */
    /* after a burst made the workers busy, a lone exchange is held at most
     * once (the first sleep after the burst), not each time */
    burst(3);
    ping_pong(20, &ms);
    assert_true(ms < 500);
}

static void less_than_asked_is_said(void **state)
{
    (void)state;
    set_env("PORTCULLIS_URING_NO_BATCH", "1");
    start_batched(300);
    set_env("PORTCULLIS_URING_NO_BATCH", NULL);
    pc_server_stats_t st = stats();
    assert_int_equal(st.batch_wait_us_workers, 0);
    int said = 0;
    for (int i = 0; i < nbatch_lines; i++)
        said += strstr(batch_lines[i], "workers wake on every completion") != NULL;
    assert_int_equal(said, 1);
    if (st.backend == PC_BACKEND_URING) {
        int named = 0;
        for (int i = 0; i < nbatch_lines; i++)
            named += strstr(batch_lines[i], "IORING_FEAT_MIN_TIMEOUT") != NULL;
        assert_int_equal(named, 1);
    }
#ifdef _WIN32
    assert_int_equal(nbatch_lines, 2); /* and the accept threads */
#else
    assert_int_equal(nbatch_lines, 1);
#endif
    /* and it still serves */
    uint64_t ms;
    ping_pong(5, &ms);
}

static void bounds(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    pc_server_t *s = NULL;
    cfg.batch_wait_us = 100001;
    assert_int_equal(pc_server_create(&cfg, &s), PC_EINVAL);
    assert_null(s);
    cfg.batch_wait_us = 100000;
    assert_int_equal(pc_server_create(&cfg, &s), 0);
    pc_server_destroy(s);
}

int main(int argc, char **argv)
{
    shim_init();
    pc_log_set_level(PC_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(busy_server_gathers, teardown),
        cmocka_unit_test_teardown(lone_exchange_not_held, teardown),
        cmocka_unit_test_teardown(less_than_asked_is_said, teardown),
        cmocka_unit_test(bounds),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("batch", tests, NULL, NULL);
}
