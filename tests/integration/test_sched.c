/* SPDX-License-Identifier: MIT */
/* pc_server_config_t.sched_batch: every thread the server starts runs under
 * batch scheduling when asked, none when not; a thread that inherited
 * another policy keeps it; what runs is in the stats, and where it cannot
 * be had that is said once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#ifdef __linux__
#include <dirent.h>
#include <sched.h>

/* The scheduling policy of each of this process's threads named name:
 * how many there are, and how many run under policy. */
static void count_threads(const char *name, int policy, int *n, int *under)
{
    *n = *under = 0;
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[300], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue; /* the thread ended meanwhile */
        if (!fgets(comm, sizeof comm, f)) comm[0] = 0;
        fclose(f);
        comm[strcspn(comm, "\n")] = 0;
        if (strcmp(comm, name) != 0) continue;
        (*n)++;
        if (sched_getscheduler(atoi(e->d_name)) == policy) (*under)++;
    }
    closedir(d);
}

static int named(const char *name)
{
    int n, under;
    count_threads(name, SCHED_OTHER, &n, &under);
    return n;
}

/* Every worker (2) and the accept thread (1 listener) run under policy. */
static void expect_server_threads(int policy)
{
    /* each thread names itself once it runs: maybe after start returned */
    WAIT_FOR(named("pc-worker") == 2 && named("pc-accept") == 1, 2000);
    int n, under;
    count_threads("pc-worker", policy, &n, &under);
    assert_int_equal(n, 2);
    assert_int_equal(under, 2);
    count_threads("pc-accept", policy, &n, &under);
    assert_int_equal(n, 1);
    assert_int_equal(under, 1);
}
#endif

static void echo_once(void)
{
    shim_sock_t s = shim_connect("127.0.0.1", g_port, NULL, 2000);
    assert_true(s != SHIM_INVALID);
    expect_echo(s, "hello");
    shim_close(s);
}

static void batch_on_every_thread(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.sched_batch = 1;
    start_server_logging(&cfg, "sched_batch");
#ifdef _WIN32
    assert_int_equal(stats().sched_batch, 0);
    assert_int_equal(g_nstart_lines, 1); /* said once, not per thread */
    assert_non_null(strstr(g_start_lines[0], "no batch scheduling class on this platform"));
#else
    assert_int_equal(g_nstart_lines, 0);
    assert_int_equal(stats().sched_batch, 1);
    expect_server_threads(SCHED_BATCH);
    assert_int_equal(sched_getscheduler(0), SCHED_OTHER); /* the caller's own is left alone */
#endif
    echo_once();
}

static void off_by_default(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    pc_server_config_init(&cfg);
    assert_int_equal(cfg.sched_batch, 0);
    base_config(&cfg);
    start_server_logging(&cfg, "sched_batch");
    assert_int_equal(g_nstart_lines, 0);
    assert_int_equal(stats().sched_batch, 0);
#ifdef __linux__
    expect_server_threads(SCHED_OTHER);
#endif
    echo_once();
}

#ifdef __linux__
/* Threads inherit their creator's policy: a server started from a
 * SCHED_IDLE thread keeps SCHED_IDLE (batch would raise it), says so once
 * and reports batch scheduling off, and serves. */
static void other_policy_kept(void **state)
{
    (void)state;
    struct sched_param sp = {0};
    assert_int_equal(sched_setscheduler(0, SCHED_IDLE, &sp), 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.sched_batch = 1;
    start_server_logging(&cfg, "sched_batch");
    /* back to the default (root, or RLIMIT_NICE allowing it; else this
     * test's process stays idle-class, which changes nothing below) */
    (void)sched_setscheduler(0, SCHED_OTHER, &sp);
    assert_int_equal(g_nstart_lines, 1);
    assert_non_null(strstr(g_start_lines[0], "keep SCHED_IDLE"));
    assert_int_equal(stats().sched_batch, 0);
    expect_server_threads(SCHED_IDLE);
    echo_once();
}
#endif

int main(int argc, char **argv)
{
    shim_init();
    pc_log_set_level(PC_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(batch_on_every_thread, teardown),
        cmocka_unit_test_teardown(off_by_default, teardown),
#ifdef __linux__
        cmocka_unit_test_teardown(other_policy_kept, teardown), /* not on Windows */
#endif
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("sched", tests, NULL, NULL);
}
