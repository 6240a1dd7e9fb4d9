/* SPDX-License-Identifier: MIT */
/* The echo server the integration tests run against (in-process), with
 * counters the tests assert on, and small client helpers. */
#ifndef PC_TEST_HARNESS_H
#define PC_TEST_HARNESS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "portcullis.h"
#include "core/thread.h"
#include "shim.h"

enum behaviour {
    B_ECHO = 0,
    B_BIG_THEN_CLOSE,  /* on_open: queue g_big bytes of pattern, then pc_conn_close */
    B_ABORT_ON_DATA,   /* on_data: pc_conn_abort */
    B_BIG_ON_OPEN,     /* on_open: queue g_big bytes of pattern, keep open */
    B_ECHO_BYE_ABORTS, /* echo; data starting with "bye": pc_conn_abort instead */
    B_ECHO_STALL,      /* echo; data starting with "stall": g_stalls++, then the
                        * worker sleeps g_stall_ms before echoing; a '\n' in
                        * the data ends the header timeout (a request head) */
};

extern pc_server_t *g_srv;
extern int g_port;
extern int g_behaviour;
extern size_t g_big;
extern atomic_int g_opens, g_closes, g_drains;
extern atomic_int g_reasons[PC_CLOSE_REASON_COUNT];
extern _Atomic uint64_t g_last_id;
extern const char *g_reject_src;         /* the user condition rejects this IPv4 source */
extern atomic_int g_defer_left;          /* then the condition defers this many times */
extern _Atomic(pc_conn_t *) g_last_conn; /* the last opened connection, NULL once it closed */
extern atomic_int g_stalls;              /* B_ECHO_STALL: stalls begun */
extern unsigned g_stall_ms;

unsigned char pattern_byte(size_t i);
void fill_pattern(unsigned char *p, size_t off, size_t n);
/* Defaults for the tests: 2 threads, the harness callbacks and condition. */
void base_config(pc_server_config_t *cfg);
/* Reset the counters, create, listen on 127.0.0.1:0 (g_port), start. */
void start_server(const pc_server_config_t *cfg);
/* start_server, keeping the log lines that contain key (up to 4) in
 * g_start_lines / g_nstart_lines: what creating and listening said. */
void start_server_logging(const pc_server_config_t *cfg, const char *key);
extern char g_start_lines[4][256];
extern int g_nstart_lines;
/* Keep the log lines that contain key (up to 4) in g_start_lines /
 * g_nstart_lines until log_capture_end, whichever thread logs them (read
 * them once that thread is joined, or after log_capture_end). */
void log_capture_begin(const char *key);
void log_capture_end(void);
/* Create g_srv from cfg and listen on endpoint (port 0: a free one), not
 * started; the port, also in g_port. The counters are left alone. */
int create_server_on(const pc_server_config_t *cfg, const char *endpoint);
/* Create, listen on endpoint (port 0: a free one), start; the port, also
 * in g_port. The counters are left alone. */
int start_server_on(const pc_server_config_t *cfg, const char *endpoint);
/* cmocka teardown: stop and destroy g_srv, reset the behaviour. */
int teardown(void **state);
/* A client connected from 127.0.0.1 to the server under test (g_port),
 * the connect given timeout_ms; fails the test when it cannot connect. */
shim_sock_t connect_server(int timeout_ms);
/* Send msg and expect it echoed exactly. */
void expect_echo(shim_sock_t s, const char *msg);
pc_server_stats_t stats(void);
#ifndef _WIN32
/* The server's socket of the connection whose client end is cfd (the server
 * runs in this process): the fd whose peer is cfd's local address. */
int server_end(int cfd);
#endif
#ifdef __linux__
/* The thread ids of this process's pc-worker threads (at most max, into
 * tids); their number. */
int worker_tids(int *tids, int max);
/* Voluntary context switches of this process's pc-worker threads, summed:
 * how often they woke up. */
long worker_wakeups(void);
/* CPU time this process's pc-worker threads have used, in ms. */
long worker_cpu_ms(void);
#endif
/* A thread that checks a count while the test moves it: ok(arg) is called
 * in a loop until sampler_stop; the calls are counted (samples, readable
 * meanwhile), and those that returned 0. */
typedef struct sampler_s {
    pc_thread_t t;
    int (*ok)(void *arg);
    void *arg;
    atomic_int stop;
    atomic_uint_fast64_t samples, bad;
} sampler_t;
void sampler_start(sampler_t *sp, int (*ok)(void *arg), void *arg);
/* Stop and join the thread; at least one sample was taken. Returns the
 * number of samples that were not ok. */
uint64_t sampler_stop(sampler_t *sp);
/* A connection from src (IPv4 text; NULL: any) to g_port is refused: the connect fails,
 * or a byte sent on it gets EOF or a reset, never an answer. */
void expect_refused(const char *src);
/* pc_server_create refuses *field = max + 1 (PC_EINVAL, nothing created)
 * and accepts max; field points into cfg. */
void expect_bound(pc_server_config_t *cfg, unsigned *field, unsigned max);
/* Over the next second the whole process (the server's threads and the
 * test's) uses under 1/part of one core: what an idle server, or one
 * waiting on its peers, costs. The figures are printed when it does not. */
void expect_idle_cpu(unsigned part);
/* A started one-worker server without listeners, for pc_connect clients
 * whose connections run cb; base: the other settings (NULL: defaults). */
pc_server_t *start_client_server(const pc_callbacks_t *cb, const pc_server_config_t *base);
/* Hold s's worker busy (at most 5 s) until worker_release, returning once
 * it is held: what is posted or kicked to it meanwhile waits (for instance
 * bytes queued by id before a connect starts). One hold at a time. */
void worker_hold(pc_server_t *s);
void worker_release(void);
/* A thread that sends by id on request, for tests where another thread's
 * send must land while a connection's callback runs. xsender_start before
 * the first xsender_send, xsender_stop after the last. */
#define XSENDER_MAX 100000
void xsender_start(void);
/* From a callback of c (on g_srv): the thread sends len bytes of 'z' (at
 * most XSENDER_MAX) to c by id; returns that send's result once it
 * returned, so the bytes wait in c's inbox for the kick (-1: no answer in
 * 5 s). */
int xsender_send(pc_conn_t *c, size_t len);
void xsender_stop(void);
/* Functions to post with pc_server_post_to: send the string arg (its
 * strlen) from the strand, or close gracefully; nothing when c is NULL.
 * Each asserts the call returned 0. */
void post_send_str(pc_conn_t *c, void *arg);
void post_close(pc_conn_t *c, void *arg);

/* Wait until cond() holds or ms pass. */
#define WAIT_FOR(expr, ms)                        \
    do {                                          \
        uint64_t t_end_ = shim_now_ms() + (ms);   \
        while (!(expr) && shim_now_ms() < t_end_) \
            shim_sleep_ms(5);                     \
    } while (0)

#endif
