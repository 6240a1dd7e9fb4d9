/* SPDX-License-Identifier: MIT */
/* The in-process echo server of the integration tests. */
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

#ifndef _WIN32
#include <arpa/inet.h>
#include <sys/socket.h>
#endif
#ifdef __linux__
#include <dirent.h>
#include <unistd.h>
#endif

pc_server_t *g_srv;
int g_port;
int g_behaviour;
size_t g_big;
atomic_int g_opens, g_closes, g_drains;
atomic_int g_reasons[PC_CLOSE_REASON_COUNT];
_Atomic uint64_t g_last_id;
const char *g_reject_src; /* condition rejects this IPv4 source */
atomic_int g_defer_left;
_Atomic(pc_conn_t *) g_last_conn;
atomic_int g_stalls;
unsigned g_stall_ms;

unsigned char pattern_byte(size_t i)
{
    return (unsigned char)((i * 131u + (i >> 12) * 7u) & 0xff);
}

void fill_pattern(unsigned char *p, size_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = pattern_byte(off + i);
}

static void on_open(pc_conn_t *c)
{
    atomic_fetch_add(&g_opens, 1);
    atomic_store(&g_last_id, pc_conn_id(c));
    atomic_store(&g_last_conn, c);
    if (g_behaviour == B_BIG_THEN_CLOSE || g_behaviour == B_BIG_ON_OPEN) {
        unsigned char *buf = malloc(g_big);
        fill_pattern(buf, 0, g_big);
        assert_int_equal(pc_conn_send(c, buf, g_big), 0);
        free(buf);
        if (g_behaviour == B_BIG_THEN_CLOSE) assert_int_equal(pc_conn_close(c), 0);
    }
}

static void on_data(pc_conn_t *c, const void *data, size_t len)
{
    if (g_behaviour == B_ABORT_ON_DATA) {
        pc_conn_abort(c);
        return;
    }
    if (g_behaviour == B_ECHO_BYE_ABORTS && len >= 3 && memcmp(data, "bye", 3) == 0) {
        pc_conn_abort(c);
        return;
    }
    if (g_behaviour == B_ECHO_STALL && len >= 5 && memcmp(data, "stall", 5) == 0) {
        atomic_fetch_add(&g_stalls, 1);
        shim_sleep_ms(g_stall_ms); /* the worker is busy: nothing else runs on it */
    }
    if (g_behaviour == B_ECHO_STALL && memchr(data, '\n', len))
        pc_conn_set_header_timeout(c, 0); /* the head is complete */
    pc_conn_send(c, data, len);
}

static void on_drain(pc_conn_t *c)
{
    (void)c;
    atomic_fetch_add(&g_drains, 1);
}

static void on_close(pc_conn_t *c, pc_close_reason_t r, int err)
{
    (void)err;
    pc_conn_t *expected = c;
    atomic_compare_exchange_strong(&g_last_conn, &expected, NULL);
    atomic_fetch_add(&g_reasons[r], 1);
    atomic_fetch_add(&g_closes, 1);
}

static pc_verdict_t condition(void *user, const struct sockaddr *peer, const struct sockaddr *local)
{
    (void)user;
    (void)local;
    if (g_reject_src && peer->sa_family == AF_INET) {
        struct in_addr a;
        inet_pton(AF_INET, g_reject_src, &a);
        struct sockaddr_in p4; /* copied: a struct sockaddr promises less alignment */
        memcpy(&p4, peer, sizeof p4);
        if (p4.sin_addr.s_addr == a.s_addr) return PC_REJECT;
    }
    if (atomic_load(&g_defer_left) > 0) {
        atomic_fetch_sub(&g_defer_left, 1);
        return PC_DEFER;
    }
    return PC_ACCEPT;
}

void base_config(pc_server_config_t *cfg)
{
    pc_server_config_init(cfg);
    cfg->threads = 2;
    cfg->cb.on_open = on_open;
    cfg->cb.on_data = on_data;
    cfg->cb.on_drain = on_drain;
    cfg->cb.on_close = on_close;
    cfg->condition = condition;
    cfg->close_linger_ms = 3000;
    /* these tests judge the post-handshake pipeline (hits, resets);
     * test_kfilter.c tests the listener's kernel filter */
    cfg->kernel_filter = PC_KERNEL_FILTER_OFF;
}

void start_server(const pc_server_config_t *cfg)
{
    atomic_store(&g_opens, 0);
    atomic_store(&g_closes, 0);
    atomic_store(&g_drains, 0);
    for (int i = 0; i < PC_CLOSE_REASON_COUNT; i++)
        atomic_store(&g_reasons[i], 0);
    start_server_on(cfg, "127.0.0.1:0");
}

char g_start_lines[4][256];
int g_nstart_lines;
static const char *start_key;

static void start_log_sink(void *user, pc_log_level_t level, const char *line)
{
    (void)user;
    (void)level;
    if (strstr(line, start_key) && g_nstart_lines < 4)
        snprintf(g_start_lines[g_nstart_lines++], sizeof g_start_lines[0], "%s", line);
}

void log_capture_begin(const char *key)
{
    start_key = key;
    g_nstart_lines = 0;
    pc_log_set_handler(start_log_sink, NULL);
}

void log_capture_end(void)
{
    pc_log_set_handler(NULL, NULL);
}

void start_server_logging(const pc_server_config_t *cfg, const char *key)
{
    log_capture_begin(key);
    start_server(cfg);
    log_capture_end();
}

int create_server_on(const pc_server_config_t *cfg, const char *endpoint)
{
    assert_int_equal(pc_server_create(cfg, &g_srv), 0);
    int idx = pc_server_listen(g_srv, endpoint);
    assert_true(idx >= 0);
    g_port = pc_server_listener_port(g_srv, idx);
    assert_true(g_port > 0);
    return g_port;
}

int start_server_on(const pc_server_config_t *cfg, const char *endpoint)
{
    create_server_on(cfg, endpoint);
    assert_int_equal(pc_server_start(g_srv), 0);
    return g_port;
}

int teardown(void **state)
{
    (void)state;
    if (g_srv) {
        pc_server_stop(g_srv, 2000);
        pc_server_destroy(g_srv);
        g_srv = NULL;
    }
    g_behaviour = B_ECHO;
    g_reject_src = NULL;
    atomic_store(&g_defer_left, 0);
    atomic_store(&g_last_conn, NULL);
    atomic_store(&g_stalls, 0);
    g_stall_ms = 0;
    return 0;
}

pc_server_t *start_client_server(const pc_callbacks_t *cb, const pc_server_config_t *base)
{
    pc_server_config_t cc;
    if (base)
        cc = *base;
    else
        pc_server_config_init(&cc);
    cc.threads = 1;
    cc.cb = *cb;
    pc_server_t *cs;
    assert_int_equal(pc_server_create(&cc, &cs), 0);
    assert_int_equal(pc_server_start(cs), 0);
    return cs;
}

static atomic_int g_hold, g_held;

static void hold_fn(pc_server_t *s, void *arg)
{
    (void)s;
    (void)arg;
    atomic_store(&g_held, 1);
    uint64_t end = shim_now_ms() + 5000;
    while (atomic_load(&g_hold) && shim_now_ms() < end)
        shim_sleep_ms(1);
}

void worker_hold(pc_server_t *s)
{
    atomic_store(&g_held, 0);
    atomic_store(&g_hold, 1);
    assert_int_equal(pc_server_post(s, hold_fn, NULL), 0);
    WAIT_FOR(atomic_load(&g_held), 5000);
    assert_int_equal(atomic_load(&g_held), 1);
}

void worker_release(void)
{
    atomic_store(&g_hold, 0);
}

static atomic_int xs_req, xs_done, xs_rc; /* xs_req: 0 idle, 1 send, -1 exit */
static _Atomic uint64_t xs_id;
static atomic_size_t xs_len;
static pc_thread_t xs_thread;

static void xsender_main(void *arg)
{
    (void)arg;
    static char b[XSENDER_MAX];
    memset(b, 'z', sizeof b);
    for (;;) {
        while (!atomic_load(&xs_req))
            shim_sleep_ms(1);
        if (atomic_load(&xs_req) < 0) return;
        atomic_store(&xs_req, 0);
        atomic_store(&xs_rc,
                     pc_server_send_to(g_srv, atomic_load(&xs_id), b, atomic_load(&xs_len)));
        atomic_store(&xs_done, 1);
    }
}

void xsender_start(void)
{
    atomic_store(&xs_req, 0);
    assert_int_equal(pc__thread_start(&xs_thread, xsender_main, NULL, "xsender"), 0);
}

int xsender_send(pc_conn_t *c, size_t len)
{
    assert_true(len <= XSENDER_MAX);
    atomic_store(&xs_id, pc_conn_id(c));
    atomic_store(&xs_len, len);
    atomic_store(&xs_done, 0);
    atomic_store(&xs_req, 1);
    for (int i = 0; i < 5000 && !atomic_load(&xs_done); i++)
        shim_sleep_ms(1);
    return atomic_load(&xs_done) ? atomic_load(&xs_rc) : -1;
}

void xsender_stop(void)
{
    atomic_store(&xs_req, -1);
    pc__thread_join(xs_thread);
}

void post_send_str(pc_conn_t *c, void *arg)
{
    if (c) assert_int_equal(pc_conn_send(c, arg, strlen(arg)), 0);
}

void post_close(pc_conn_t *c, void *arg)
{
    (void)arg;
    if (c) assert_int_equal(pc_conn_close(c), 0);
}

shim_sock_t connect_server(int timeout_ms)
{
    shim_sock_t s = shim_connect("127.0.0.1", g_port, NULL, timeout_ms);
    assert_true(s != SHIM_INVALID);
    return s;
}

void expect_echo(shim_sock_t s, const char *msg)
{
    size_t n = strlen(msg);
    char buf[256];
    assert_int_equal(shim_send_all(s, msg, n), 0);
    assert_int_equal(shim_recv_exact(s, buf, n), n);
    assert_memory_equal(buf, msg, n);
}

#ifndef _WIN32
int server_end(int cfd)
{
    struct sockaddr_storage me, peer;
    socklen_t ml = sizeof me;
    assert_int_equal(getsockname(cfd, (struct sockaddr *)&me, &ml), 0);
    for (int fd = 3; fd < 4096; fd++) {
        socklen_t pl = sizeof peer;
        if (fd != cfd && getpeername(fd, (struct sockaddr *)&peer, &pl) == 0 && pl == ml &&
            memcmp(&peer, &me, ml) == 0)
            return fd;
    }
    fail_msg("no server end for the client's connection");
    return -1;
}
#endif

#ifdef __linux__
int worker_tids(int *tids, int max)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        if (e->d_name[0] == '.') continue;
        char path[300], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (!fgets(comm, sizeof comm, f)) comm[0] = 0;
        fclose(f);
        if (strncmp(comm, "pc-worker", 9) == 0) tids[n++] = atoi(e->d_name);
    }
    closedir(d);
    return n;
}

/* f's values for this process's pc-worker threads, summed; f reads the
 * thread's /proc/self/task/<tid>/ files (path: that directory). */
static long workers_sum(long (*f)(const char *path))
{
    int tids[64];
    int n = worker_tids(tids, 64);
    long total = 0;
    for (int i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/task/%d", tids[i]);
        total += f(path);
    }
    return total;
}

static long task_wakeups(const char *dir)
{
    char path[320], line[128];
    long n = 0;
    snprintf(path, sizeof path, "%s/status", dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "voluntary_ctxt_switches:", 24) == 0) n += atol(line + 24);
    fclose(f);
    return n;
}

/* utime + stime, in clock ticks (fields 14 and 15 of stat, the 12th and
 * 13th after the command's closing parenthesis) */
static long task_cpu_ticks(const char *dir)
{
    char path[320], line[1024];
    snprintf(path, sizeof path, "%s/stat", dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t len = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[len] = 0;
    char *p = strrchr(line, ')');
    if (!p) return 0;
    long ticks = 0;
    for (int field = 3; field <= 15 && p; field++) {
        p = strchr(p + 1, ' ');
        if (p && field >= 14) ticks += atol(p + 1);
    }
    return ticks;
}

/* Voluntary context switches of this process's pc-worker threads. */
long worker_wakeups(void)
{
    return workers_sum(task_wakeups);
}

/* CPU time this process's pc-worker threads have used, in ms. */
long worker_cpu_ms(void)
{
    return workers_sum(task_cpu_ticks) * 1000 / sysconf(_SC_CLK_TCK);
}
#endif

static void sampler_run(void *arg)
{
    sampler_t *sp = arg;
    while (!atomic_load(&sp->stop)) {
        if (!sp->ok(sp->arg)) atomic_fetch_add(&sp->bad, 1);
        atomic_fetch_add(&sp->samples, 1);
    }
}

void sampler_start(sampler_t *sp, int (*ok)(void *arg), void *arg)
{
    sp->ok = ok;
    sp->arg = arg;
    atomic_store(&sp->stop, 0);
    atomic_store(&sp->samples, 0);
    atomic_store(&sp->bad, 0);
    assert_int_equal(pc__thread_start(&sp->t, sampler_run, sp, "sampler"), 0);
}

uint64_t sampler_stop(sampler_t *sp)
{
    atomic_store(&sp->stop, 1);
    pc__thread_join(sp->t);
    print_message("%llu samples\n", (unsigned long long)atomic_load(&sp->samples));
    assert_true(atomic_load(&sp->samples) > 0);
    return atomic_load(&sp->bad);
}

pc_server_stats_t stats(void)
{
    pc_server_stats_t st;
    pc_server_stats(g_srv, &st);
    return st;
}

void expect_refused(const char *src)
{
    shim_sock_t x = shim_connect("127.0.0.1", g_port, src, 1000);
    if (x == SHIM_INVALID) return;
    char c;
    shim_send_all(x, "?", 1);
    int n = shim_recv_some(x, &c, 1);
    assert_true(n == -1 || n == 0);
    shim_close(x);
}

void expect_bound(pc_server_config_t *cfg, unsigned *field, unsigned max)
{
    pc_server_t *s = NULL;
    *field = max + 1;
    assert_int_equal(pc_server_create(cfg, &s), PC_EINVAL);
    assert_null(s);
    *field = max;
    assert_int_equal(pc_server_create(cfg, &s), 0);
    pc_server_destroy(s);
}

void expect_idle_cpu(unsigned part)
{
    uint64_t cpu0 = shim_process_cpu_ms(), t0 = shim_now_ms();
    shim_sleep_ms(1000);
    uint64_t cpu = shim_process_cpu_ms() - cpu0, wall = shim_now_ms() - t0;
    if (cpu * part >= wall)
        fail_msg("%llu ms of CPU in %llu ms: not under 1/%u of a core", (unsigned long long)cpu,
                 (unsigned long long)wall, part);
}

int pick_test(const struct CMUnitTest *tests, size_t n, int argc, char **argv)
{
    if (argc < 2) return 0;
    if (strcmp(argv[1], "--registered") == 0 && argc > 2) {
        unsigned long named = 0;
        for (size_t i = 0; i < n; i++)
            named += tests[i].name != NULL;
        unsigned long want = strtoul(argv[2], NULL, 10);
        if (named != want) {
            fprintf(stderr, "%s: %lu tests in the table, %lu registered with CTest\n", argv[0],
                    named, want);
            exit(1);
        }
        printf("%s: all %lu tests of the table registered\n", argv[0], named);
        exit(0);
    }
    for (size_t i = 0; i < n; i++) {
        if (tests[i].name && strcmp(tests[i].name, argv[1]) == 0) {
            cmocka_set_test_filter(argv[1]);
            return 0;
        }
    }
    fprintf(stderr, "%s: no test named '%s' in this build\n", argv[0], argv[1]);
    return -1;
}
