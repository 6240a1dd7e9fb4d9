/* SPDX-License-Identifier: MIT */
/* Backend selection: AUTO is IOCP on Windows; on Linux io_uring where the
 * kernel offers it (the cheaper backend, docs/uring.md), else epoll; the
 * environment variable picks a backend for AUTO; pc_server_stats and the
 * start-up log report the backend in force and why. When the io_uring probe
 * fails (PORTCULLIS_URING_PROBE_FAIL, a test seam that acts like a kernel
 * refusing io_uring), AUTO falls back to epoll and says why, and an explicit
 * io_uring request fails with PC_ENOSYS (never another backend silently). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portcullis.h"

static void on_data(pc_conn_t *c, const void *d, size_t n)
{
    (void)c;
    (void)d;
    (void)n;
}

/* The last "backend: ..." line logged (pc_server_create logs it), and the
 * last warning about PORTCULLIS_BACKEND's value. */
static char last_backend_line[256];
static char last_env_warning[256];

static void log_sink(void *user, pc_log_level_t level, const char *line)
{
    (void)user;
    const char *b = strstr(line, "backend: ");
    if (b) snprintf(last_backend_line, sizeof last_backend_line, "%s", b);
    b = strstr(line, "PORTCULLIS_BACKEND=");
    if (b && level == PC_LOG_WARN) snprintf(last_env_warning, sizeof last_env_warning, "%s", b);
}

/* Create a server asking for want; *got is the backend in force and, if
 * why is not NULL, the reason the stats give. */
static int backend_why_of(pc_backend_t want, pc_backend_t *got, char *why)
{
    pc_server_config_t cfg;
    pc_server_config_init(&cfg);
    cfg.threads = 1;
    cfg.cb.on_data = on_data;
    cfg.backend = want;
    pc_server_t *s;
    int rc = pc_server_create(&cfg, &s);
    if (rc < 0) return rc;
    pc_server_stats_t st;
    pc_server_stats(s, &st);
    *got = st.backend;
    if (why) memcpy(why, st.backend_why, sizeof st.backend_why);
    pc_server_destroy(s);
    return 0;
}

/* backend_why_of with the log at INFO: last_backend_line is the start-up
 * line it logged ("" if none). */
static int backend_logged(pc_backend_t want, pc_backend_t *got, char *why)
{
    pc_log_set_handler(log_sink, NULL);
    pc_log_set_level(PC_LOG_INFO);
    last_backend_line[0] = 0;
    last_env_warning[0] = 0;
    int rc = backend_why_of(want, got, why);
    pc_log_set_level(PC_LOG_ERROR);
    pc_log_set_handler(NULL, NULL);
    return rc;
}

static int backend_of(pc_backend_t want, pc_backend_t *got)
{
    return backend_why_of(want, got, NULL);
}

#ifndef _WIN32
/* Asking for want runs expect, for the reason given. */
static void expect_choice(pc_backend_t want, pc_backend_t expect, const char *reason)
{
    pc_backend_t got;
    char why[PC_BACKEND_WHY_MAX];
    assert_int_equal(backend_why_of(want, &got, why), 0);
    assert_int_equal(got, expect);
    assert_string_equal(why, reason);
}
#endif

static void explicit_and_env(void **state)
{
    (void)state;
    pc_backend_t got;
    char why[PC_BACKEND_WHY_MAX];
#ifdef _WIN32
    assert_int_equal(backend_logged(PC_BACKEND_AUTO, &got, why), 0);
    assert_int_equal(got, PC_BACKEND_IOCP);
    assert_string_equal(why, "auto: IOCP, the Windows backend");
    assert_string_equal(last_backend_line, "backend: iocp (auto: IOCP, the Windows backend)");
    assert_int_equal(backend_of(PC_BACKEND_EPOLL, &got), PC_ENOSYS);
#else
    expect_choice(PC_BACKEND_EPOLL, PC_BACKEND_EPOLL, "requested by the configuration");
    assert_int_equal(backend_of(PC_BACKEND_IOCP, &got), PC_ENOSYS);
    setenv("PORTCULLIS_BACKEND", "epoll", 1);
    expect_choice(PC_BACKEND_AUTO, PC_BACKEND_EPOLL, "requested by PORTCULLIS_BACKEND=epoll");
    /* the configuration wins over the environment */
    setenv("PORTCULLIS_BACKEND", "iocp", 1);
    expect_choice(PC_BACKEND_EPOLL, PC_BACKEND_EPOLL, "requested by the configuration");
    /* PORTCULLIS_BACKEND=auto is AUTO */
    setenv("PORTCULLIS_BACKEND", "auto", 1);
    assert_int_equal(backend_why_of(PC_BACKEND_AUTO, &got, why), 0);
    assert_true(strncmp(why, "auto: ", 6) == 0);
    /* a value that names no backend: AUTO, and a warning that says so */
    setenv("PORTCULLIS_BACKEND", "epol", 1);
    assert_int_equal(backend_logged(PC_BACKEND_AUTO, &got, why), 0);
    assert_true(strncmp(why, "auto: ", 6) == 0);
    assert_string_equal(last_env_warning,
                        "PORTCULLIS_BACKEND=epol is not a backend name; using auto");
    /* and none for a value that does */
    setenv("PORTCULLIS_BACKEND", "epoll", 1);
    assert_int_equal(backend_logged(PC_BACKEND_AUTO, &got, why), 0);
    assert_int_equal(got, PC_BACKEND_EPOLL);
    assert_string_equal(last_env_warning, "");
    unsetenv("PORTCULLIS_BACKEND");
#endif
}

/* Issue 14: io_uring is the cheaper backend (docs/uring.md), so AUTO runs it
 * where the kernel offers it, and says so in the stats and the log. */
static void auto_prefers_uring(void **state)
{
    (void)state;
#ifdef _WIN32
    skip();
#else
    pc_backend_t got;
    char why[PC_BACKEND_WHY_MAX];
    unsetenv("PORTCULLIS_BACKEND");
    unsetenv("PORTCULLIS_URING_PROBE_FAIL");
    /* the start-up log says the same as the stats */
    assert_int_equal(backend_logged(PC_BACKEND_AUTO, &got, why), 0);
    char line[256];
    /* the log names the port's implementation: "io_uring", "epoll" */
    snprintf(line, sizeof line, "backend: %s (%s)", got == PC_BACKEND_URING ? "io_uring" : "epoll",
             why);
    assert_string_equal(last_backend_line, line);
#ifdef PC_HAVE_URING
    assert_int_equal(got, PC_BACKEND_URING);
    assert_string_equal(why, "auto: io_uring, the kernel offers every operation needed");
    expect_choice(PC_BACKEND_URING, PC_BACKEND_URING, "requested by the configuration");
    setenv("PORTCULLIS_BACKEND", "uring", 1);
    expect_choice(PC_BACKEND_AUTO, PC_BACKEND_URING, "requested by PORTCULLIS_BACKEND=uring");
    unsetenv("PORTCULLIS_BACKEND");
#else
    assert_int_equal(got, PC_BACKEND_EPOLL);
    assert_string_equal(why, "auto: io_uring not built");
    assert_int_equal(backend_of(PC_BACKEND_URING, &got), PC_ENOSYS);
#endif
#endif
}

static void probe_failure(void **state)
{
    (void)state;
#if defined(_WIN32) || !defined(PC_HAVE_URING)
    skip();
#else
    pc_backend_t got;
    char why[PC_BACKEND_WHY_MAX];
    unsetenv("PORTCULLIS_BACKEND");
    setenv("PORTCULLIS_URING_PROBE_FAIL", "1", 1);
    assert_int_equal(backend_why_of(PC_BACKEND_AUTO, &got, why), 0);
    assert_int_equal(got, PC_BACKEND_EPOLL);
    assert_true(strncmp(why, "auto: io_uring unavailable (", 28) == 0);
    assert_int_equal(backend_of(PC_BACKEND_URING, &got), PC_ENOSYS);
    setenv("PORTCULLIS_BACKEND", "uring", 1);
    assert_int_equal(backend_of(PC_BACKEND_AUTO, &got), PC_ENOSYS);
    unsetenv("PORTCULLIS_BACKEND");
    unsetenv("PORTCULLIS_URING_PROBE_FAIL");
    assert_int_equal(backend_of(PC_BACKEND_URING, &got), 0);
    assert_int_equal(got, PC_BACKEND_URING);
#endif
}

int main(void)
{
    pc_log_set_level(PC_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(explicit_and_env),
        cmocka_unit_test(auto_prefers_uring),
        cmocka_unit_test(probe_failure),
    };
    return cmocka_run_group_tests_name("backend_select", tests, NULL, NULL);
}
