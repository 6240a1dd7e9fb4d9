/* SPDX-License-Identifier: MIT */
/* Backend selection: the environment variable picks a backend for AUTO; when
 * the io_uring probe fails (PORTCULLIS_URING_PROBE_FAIL, a test seam that
 * acts like a kernel refusing io_uring), AUTO falls back to epoll and an
 * explicit io_uring request fails with PC_ENOSYS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "portcullis.h"

static void on_data(pc_conn_t *c, const void *d, size_t n)
{
    (void)c;
    (void)d;
    (void)n;
}

static int backend_of(pc_backend_t want, pc_backend_t *got)
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
    pc_server_destroy(s);
    return 0;
}

static void explicit_and_env(void **state)
{
    (void)state;
    pc_backend_t got;
#ifdef _WIN32
    assert_int_equal(backend_of(PC_BACKEND_AUTO, &got), 0);
    assert_int_equal(got, PC_BACKEND_IOCP);
    assert_int_equal(backend_of(PC_BACKEND_EPOLL, &got), PC_ENOSYS);
#else
    assert_int_equal(backend_of(PC_BACKEND_EPOLL, &got), 0);
    assert_int_equal(got, PC_BACKEND_EPOLL);
    assert_int_equal(backend_of(PC_BACKEND_IOCP, &got), PC_ENOSYS);
    setenv("PORTCULLIS_BACKEND", "epoll", 1);
    assert_int_equal(backend_of(PC_BACKEND_AUTO, &got), 0);
    assert_int_equal(got, PC_BACKEND_EPOLL);
    unsetenv("PORTCULLIS_BACKEND");
#endif
}

static void probe_failure_falls_back(void **state)
{
    (void)state;
#if defined(_WIN32) || !defined(PC_HAVE_URING)
    skip();
#else
    pc_backend_t got;
    unsetenv("PORTCULLIS_BACKEND");
    setenv("PORTCULLIS_URING_PROBE_FAIL", "1", 1);
    assert_int_equal(backend_of(PC_BACKEND_AUTO, &got), 0);
    assert_int_equal(got, PC_BACKEND_EPOLL);
    assert_int_equal(backend_of(PC_BACKEND_URING, &got), PC_ENOSYS);
    unsetenv("PORTCULLIS_URING_PROBE_FAIL");
    /* with the probe passing, AUTO prefers io_uring on this kernel */
    assert_int_equal(backend_of(PC_BACKEND_URING, &got), 0);
    assert_int_equal(got, PC_BACKEND_URING);
    assert_int_equal(backend_of(PC_BACKEND_AUTO, &got), 0);
    assert_int_equal(got, PC_BACKEND_URING);
#endif
}

int main(void)
{
    pc_log_set_level(PC_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(explicit_and_env),
        cmocka_unit_test(probe_failure_falls_back),
    };
    return cmocka_run_group_tests_name("backend_select", tests, NULL, NULL);
}
