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
#include "pick.h"

#ifdef __linux__
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <sys/resource.h>

#include "core/thread.h"

/* Of this process's threads named name: how many (*n), and how many run
 * under policy at nice value nice (*match). */
static void count_threads(const char *name, int policy, int nice, int *n, int *match)
{
    *n = *match = 0;
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
        int tid = atoi(e->d_name);
        errno = 0;
        int v = getpriority(PRIO_PROCESS, (id_t)tid);
        if (errno == 0 && v == nice && sched_getscheduler(tid) == policy) (*match)++;
    }
    closedir(d);
}

static int named(const char *name)
{
    int n, match;
    count_threads(name, SCHED_OTHER, 0, &n, &match);
    return n;
}

/* Every worker (2) and the accept thread (1 listener) run under policy,
 * with nice value nice. */
static void expect_server_threads(int policy, int nice)
{
    /* each thread names itself once it runs: maybe after start returned */
    WAIT_FOR(named("pc-worker") == 2 && named("pc-accept") == 1, 2000);
    int n, match;
    count_threads("pc-worker", policy, nice, &n, &match);
    assert_int_equal(n, 2);
    assert_int_equal(match, 2);
    count_threads("pc-accept", policy, nice, &n, &match);
    assert_int_equal(n, 1);
    assert_int_equal(match, 1);
}

/* Threads inherit their creator's scheduling: pc_server_start called from
 * a thread of its own that first takes policy (prio: its priority) and nice
 * value nice, so that this test's thread keeps its own. */
static int start_policy, start_prio, start_nice, start_rc, start_setup_rc;

static void starter(void *arg)
{
    (void)arg;
    struct sched_param sp = {0};
    sp.sched_priority = start_prio;
    start_setup_rc = sched_setscheduler(0, start_policy, &sp) == 0 &&
                             setpriority(PRIO_PROCESS, 0, start_nice) == 0
                         ? 0
                         : errno;
    start_rc = start_setup_rc ? -1 : pc_server_start(g_srv);
}

/* Start g_srv from a starter thread under policy (prio), nice value nice:
 * 0, or the errno of taking them there (nothing started). */
static int start_under(int policy, int prio, int nice)
{
    start_policy = policy;
    start_prio = prio;
    start_nice = nice;
    log_capture_begin("sched_batch"); /* pc_server_start logs on the starter */
    pc_thread_t t;
    assert_int_equal(pc__thread_start(&t, starter, NULL, "test-starter"), 0);
    pc__thread_join(t);
    log_capture_end();
    if (start_setup_rc) return start_setup_rc;
    assert_int_equal(start_rc, 0);
    return 0;
}
#endif

static void echo_once(void)
{
    shim_sock_t s = connect_server(2000);
    expect_echo(s, "hello");
    shim_close(s);
}

static void batch_on_every_thread(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.sched_batch = 1;
#ifdef _WIN32
    start_server_logging(&cfg, "sched_batch");
    assert_int_equal(stats().sched_batch, 0);
    assert_int_equal(g_nstart_lines, 1); /* said once, not per thread */
    assert_non_null(strstr(g_start_lines[0], "no batch scheduling class on this platform"));
#elif defined(__linux__)
    /* started from a thread at nice 3: the threads keep that nice value */
    create_server_on(&cfg, "127.0.0.1:0");
    assert_int_equal(start_under(SCHED_OTHER, 0, 3), 0);
    assert_int_equal(g_nstart_lines, 0);
    assert_int_equal(stats().sched_batch, 1);
    expect_server_threads(SCHED_BATCH, 3);
    assert_int_equal(sched_getscheduler(0), SCHED_OTHER); /* this thread's is left alone */
#endif
    echo_once();
    pc_server_stop(g_srv, 2000);
    assert_int_equal(stats().sched_batch, 0); /* no thread left */
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
    /* the threads inherit this thread's nice value: 0 unless the suite
     * itself runs under nice */
    errno = 0;
    int own_nice = getpriority(PRIO_PROCESS, 0);
    assert_int_equal(errno, 0);
    expect_server_threads(SCHED_OTHER, own_nice);
#endif
    echo_once();
}

#ifdef __linux__
/* A server started from a thread under another policy than the default
 * keeps it: SCHED_RR where this test may take it (root), else SCHED_IDLE
 * (batch would raise it). It says so once, reports batch scheduling off,
 * and serves. */
static void other_policy_kept(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.sched_batch = 1;
    create_server_on(&cfg, "127.0.0.1:0");
    int policy = SCHED_RR;
    int rc = start_under(SCHED_RR, 1, 0);
    if (rc == EPERM) {
        policy = SCHED_IDLE;
        rc = start_under(SCHED_IDLE, 0, 0);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(g_nstart_lines, 1);
    assert_non_null(
        strstr(g_start_lines[0], policy == SCHED_RR ? "keep SCHED_RR" : "keep SCHED_IDLE"));
    assert_int_equal(stats().sched_batch, 0);
    expect_server_threads(policy, 0);
    echo_once();
}
/* A server started from a thread already under SCHED_BATCH: its threads
 * inherit batch scheduling, which is what was asked, not another policy to
 * keep: nothing said, the stats report it on. */
static void batch_inherited(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.sched_batch = 1;
    create_server_on(&cfg, "127.0.0.1:0");
    assert_int_equal(start_under(SCHED_BATCH, 0, 0), 0);
    assert_int_equal(g_nstart_lines, 0);
    assert_int_equal(stats().sched_batch, 1);
    expect_server_threads(SCHED_BATCH, 0);
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
        cmocka_unit_test_teardown(batch_inherited, teardown),   /* not on Windows */
#endif
    };
    if (PICK_TEST(tests, argc, argv) != 0) return 1;
    return cmocka_run_group_tests_name("sched", tests, NULL, NULL);
}
