/* SPDX-License-Identifier: MIT */
/* Faults the server must survive: running out of file descriptors in accept
 * (EMFILE: the accept thread backs off, counts it, logs at a bounded rate and
 * serves the waiting clients once descriptors free up), and the errors
 * accept(2) asks to be treated as "try again" (ECONNABORTED, EPROTO, ...:
 * neither counted nor backed off; accept4 is wrapped to report them, see
 * CMakeLists.txt). POSIX only: the descriptor limit is the process's
 * RLIMIT_NOFILE (not built for Windows). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "pick.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static atomic_int g_warns; /* written by the accept thread's log line */
static void count_warns(void *u, pc_log_level_t lvl, const char *line)
{
    (void)u;
    if (lvl >= PC_LOG_WARN && strstr(line, "accept failed")) g_warns++;
}

/* The lowest descriptor number not in use, probed by dup. */
static int next_fd(void)
{
    int fd = dup(0);
    close(fd);
    return fd;
}

/* Leave the server no descriptor for accept4 (the old limit in *old), then
 * connect the n sockets cli to it: they wait in its backlog. */
static void connect_without_fds(const int *cli, int n, struct rlimit *old)
{
    getrlimit(RLIMIT_NOFILE, old);
    struct rlimit tight = *old;
    tight.rlim_cur = (rlim_t)next_fd();
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)g_port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    for (int i = 0; i < n; i++)
        if (connect(cli[i], (struct sockaddr *)&a, sizeof a) != 0)
            fail_msg("connect %d: %s", i, strerror(errno));
}

static void emfile_backs_off_and_recovers(void **state)
{
    (void)state;
    pc_log_set_handler(count_warns, NULL);
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    enum { N = 8 };
    int cli[N];
    for (int i = 0; i < N; i++)
        cli[i] = socket(AF_INET, SOCK_STREAM, 0);
    struct rlimit old;
    connect_without_fds(cli, N, &old);
    WAIT_FOR(stats().accept_errors >= 2, 3000);
    uint64_t errs = stats().accept_errors;
    assert_true(errs >= 2);
    /* a descriptor another thread frees meanwhile may let one through */
    assert_true(atomic_load(&g_opens) < N);
    shim_sleep_ms(300);
    /* backing off, not spinning: 10 ms doubling to 1 s gives a handful */
    assert_true(stats().accept_errors - errs < 20);
    assert_true(g_warns >= 1 && g_warns <= 3); /* logged at a bounded rate */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    /* every waiting client is served once descriptors are back */
    for (int i = 0; i < N; i++) {
        shim_set_timeout(cli[i], 5000);
        expect_echo(cli[i], "after EMFILE");
    }
    assert_int_equal(atomic_load(&g_opens), N);
    for (int i = 0; i < N; i++)
        close(cli[i]);
    pc_log_set_handler(NULL, NULL);
}

/* A stop while the accept thread backs off after EMFILE: the back-off (up to
 * 1 s a step) ends with the stop instead of running its course. Before, the
 * thread slept its step out, so pc_server_stop took up to a second more. */
static void stop_during_backoff_is_prompt(void **state)
{
    (void)state;
    pc_log_set_handler(count_warns, NULL);
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    int cli = socket(AF_INET, SOCK_STREAM, 0);
    struct rlimit old;
    connect_without_fds(&cli, 1, &old);
    /* steps of 10, 20, ... 640 ms, then 1 s: the 8th failure starts a 1 s step */
    uint64_t t_end = shim_now_ms() + 5000;
    while (stats().accept_errors < 8 && shim_now_ms() < t_end)
        shim_sleep_ms(1);
    assert_true(stats().accept_errors >= 8);
    shim_sleep_ms(20); /* well inside that step */
    uint64_t t0 = shim_now_ms();
    assert_int_equal(pc_server_stop(g_srv, 0), 0);
    uint64_t took = shim_now_ms() - t0;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    close(cli);
    pc_log_set_handler(NULL, NULL);
    if (took >= 500)
        fail_msg("pc_server_stop took %llu ms behind an accept back-off", (unsigned long long)took);
}

/* A connection accepted ends the back-off: the next run of EMFILE starts
 * again at 10 ms, not at the 1 s step the previous run reached. */
static void backoff_restarts_after_success(void **state)
{
    (void)state;
    pc_log_set_handler(count_warns, NULL);
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    for (int run = 0; run < 2; run++) {
        int cli = socket(AF_INET, SOCK_STREAM, 0);
        uint64_t errs = stats().accept_errors;
        struct rlimit old;
        connect_without_fds(&cli, 1, &old);
        /* steps of 10, 20, 40, 80 ms: the 5th failure within ~150 ms
         * (the first run goes on to its 1 s steps) */
        unsigned want = run == 0 ? 8 : 5;
        WAIT_FOR(stats().accept_errors >= errs + want, run == 0 ? 5000 : 1000);
        uint64_t got = stats().accept_errors - errs;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
        if (got < want)
            fail_msg("run %d: %llu accept errors, expected %u: backing off from a stale step", run,
                     (unsigned long long)got, want);
        shim_set_timeout(cli, 5000);
        expect_echo(cli, "served"); /* within the step under way (up to 1 s) */
        /* cli may have been taken before the first failure: a client that
         * connects now is accepted after the last one, ending the back-off */
        shim_sock_t s = connect_server(5000);
        expect_echo(s, "after the back-off");
        shim_close(s);
        close(cli);
        /* their descriptors are free again before the next run counts them */
        WAIT_FOR(atomic_load(&g_closes) == 2 * run + 2, 5000);
        assert_int_equal(atomic_load(&g_closes), 2 * run + 2);
    }
    pc_log_set_handler(NULL, NULL);
}

/* A stop wakes the accept thread out of accept(2) with an error (Linux:
 * shutdown of the listener gives EINVAL): that is the stop, not an accept
 * failure to count, log and back off from. */
static void stop_is_no_accept_error(void **state)
{
    (void)state;
    pc_log_set_handler(count_warns, NULL);
    g_warns = 0;
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    /* a client served: the accept thread is back in accept(2) for the next */
    shim_sock_t s = connect_server(3000);
    shim_set_timeout(s, 3000);
    expect_echo(s, "served");
    shim_close(s);
    assert_int_equal(pc_server_stop(g_srv, 0), 0);
    assert_int_equal(stats().accept_errors, 0);
    assert_int_equal(g_warns, 0);
    pc_log_set_handler(NULL, NULL);
}

/* A listen that fails (the port is another socket's) closes the socket it
 * made: retried, it takes no descriptor each time. */
static void failed_listen_keeps_no_fd(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg); /* g_port: taken by this server's listener */
    pc_server_t *other;
    assert_int_equal(pc_server_create(&cfg, &other), 0);
    char ep[32];
    snprintf(ep, sizeof ep, "127.0.0.1:%d", g_port);
    int before = next_fd();
    for (int i = 0; i < 3; i++)
        assert_int_equal(pc_server_listen(other, ep), PC_EADDRINUSE);
    int after = next_fd();
    pc_server_destroy(other);
    assert_int_equal(after, before);
}

#ifdef __linux__
/* accept4 wrapped (only the accept thread calls it here): while errnos are
 * queued, a connection taken off the backlog is closed and reported as the
 * next of them, as if it had gone before it could be accepted. */
int __real_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
static const int g_transient[] = {ECONNABORTED, EPROTO,      EPERM,  ENETDOWN,
                                  ENOPROTOOPT,  EHOSTDOWN,   ENONET, EHOSTUNREACH,
                                  EOPNOTSUPP,   ENETUNREACH, EINTR};
enum { NTRANSIENT = sizeof g_transient / sizeof g_transient[0] };
static atomic_int g_fail_next = NTRANSIENT; /* index of the next errno to report */

int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    int c = __real_accept4(fd, addr, len, flags);
    int i = atomic_load(&g_fail_next);
    if (c < 0 || i >= NTRANSIENT) return c;
    atomic_store(&g_fail_next, i + 1); /* before the client can see the close */
    close(c);
    errno = g_transient[i];
    return -1;
}

/* Each error accept(2) documents as "treat like EAGAIN and retry", once:
 * not an accept error (no count, no back-off, no log line), and the next
 * client is served. */
static void transient_errors_not_counted(void **state)
{
    (void)state;
    pc_log_set_handler(count_warns, NULL);
    g_warns = 0;
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    atomic_store(&g_fail_next, 0);
    for (int i = 0; i < NTRANSIENT; i++) {
        shim_sock_t s = connect_server(3000);
        shim_set_timeout(s, 3000);
        size_t n = 0;
        assert_true(shim_wait_close(s, &n) != -2); /* closed by the wrapper */
        shim_close(s);
        assert_int_equal(atomic_load(&g_fail_next), i + 1);
    }
    shim_sock_t s = connect_server(3000);
    expect_echo(s, "served");
    shim_close(s);
    pc_server_stats_t st = stats();
    assert_int_equal(st.accept_errors, 0);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(g_warns, 0);
    pc_log_set_handler(NULL, NULL);
}
#endif

int main(int argc, char **argv)
{
    shim_init();
    pc_log_set_level(PC_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(emfile_backs_off_and_recovers, teardown),
        cmocka_unit_test_teardown(stop_during_backoff_is_prompt, teardown),
        cmocka_unit_test_teardown(backoff_restarts_after_success, teardown),
        cmocka_unit_test_teardown(stop_is_no_accept_error, teardown),
        cmocka_unit_test_teardown(failed_listen_keeps_no_fd, teardown),
#ifdef __linux__
        cmocka_unit_test_teardown(transient_errors_not_counted, teardown),
#endif
    };
    if (PICK_TEST(tests, argc, argv) != 0) return 1;
    return cmocka_run_group_tests_name("faults", tests, NULL, NULL);
}
