/* SPDX-License-Identifier: MIT */
/* pc-stress: an HTTP/1.1 load generator built on portcullis: a server object
 * with no listener whose worker threads run outbound connections (pc_connect,
 * or pc_connect_tls for https:// URLs).
 *
 *   pc-stress URL [-c CONNS] [-d SECONDS] [-t THREADS] [--pipeline N] [--close]
 *             [--rate R] [--source ADDR] [--timeout MS] [-H "Name: value"]...
 *             [--json] [--proxy-v2] [--cacert FILE | --insecure] [--tls-resume]
 *
 * Closed loop by default: every connection keeps --pipeline requests in
 * flight (keep-alive), or with --close opens a new connection per request
 * (Connection: close: churn). With --rate the main thread paces requests
 * open-loop at R per second over the connections, and latency is measured
 * from each request's scheduled time (no coordinated omission; request k is
 * scheduled at k / R from the start, and the main thread wakes for it, or
 * at least every 250 us). Each connection needs a descriptor: the soft
 * open-file limit is raised to what -c needs (plus the engine's own), and
 * a hard limit below that refuses the run (exit 1). A progress line goes
 * to stderr every second; the final report (or one JSON object
 * with --json; report.c writes both) to stdout. Exit 0 when the run
 * completed, whatever it measured (errors, or no request answered at all:
 * the report says so, and stderr too), 1 on setup failure, 2 on bad
 * arguments (counts and milliseconds are whole numbers). With --proxy-v2 every
 * connection starts with a PROXY protocol v2 header naming its own address
 * (a server that trusts this source then parses it: the header's cost),
 * sent by the library ahead of everything, the TLS handshake included.
 *
 * https:// URLs: the connection's TLS handshake runs before on_open, so the
 * connect time is TCP connect plus TLS handshake; it is reported split into
 * full and resumed handshakes (--tls-resume offers the session ticket of an
 * earlier connection; useful with --close). The server certificate is
 * verified against --cacert FILE, else the system's store, and its name
 * against the URL's host; --insecure skips both, as load generators often do.
 * ALPN offers http/1.1.
 *
 * A response after which the server closes the connection (Connection:
 * close, HTTP/1.0 without keep-alive, a body that runs to the close) ends
 * the requests on that connection: pc-stress waits for the server's close
 * and opens a new one, as with --close (where a response that does not
 * announce the close has pc-stress close the connection itself). Requests
 * sent and never answered are reported: "unanswered" when the run ended
 * with them in flight, "dropped" when pipelined behind such a closing
 * response (the server answers none of them, RFC 9112 section 9.6); a
 * connection that ends otherwise with requests in flight is one error
 * (reset, timeout, closed_early...). Neither unanswered nor dropped is an error. Connects
 * still in flight when the run ended are "unconnected" (a server whose
 * kernel filter drops the SYNs answers none of them), not errors either. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hist.h"
#include "http_resp.h"
#include "report.h"
#include "portcullis.h"
#include "portcullis/tls.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <dirent.h>
#include <sys/resource.h>
#include <time.h>
#endif

/* ---- clock and sleep --------------------------------------------------------- */

static uint64_t now_ns(void)
{
#ifdef _WIN32
    static LARGE_INTEGER freq;
    LARGE_INTEGER c;
    if (!freq.QuadPart) QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&c);
    uint64_t f = (uint64_t)freq.QuadPart, v = (uint64_t)c.QuadPart;
    return v / f * 1000000000u + v % f * 1000000000u / f;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

/* Windows sleeps at least a scheduler tick (1 ms with a raised timer
 * resolution, else about 15.6 ms): --rate pacing is coarser there. */
static void sleep_us(unsigned us)
{
#ifdef _WIN32
    Sleep(us < 1000 ? 1 : us / 1000);
#else
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000L};
    nanosleep(&ts, NULL);
#endif
}

/* Every connection holds a descriptor: raise the soft open-file limit to
 * what -c needs (up to the hard limit), or refuse the run, rather than
 * have connects fail with EMFILE and count as errors. The need is conns
 * plus engine (the descriptors the engine holds: its workers have two or
 * more each, so -t 256 takes over 500; a fixed allowance of 64 let connects
 * fail with EMFILE, counted as connect_other) plus room for a few more.
 * quiet: raise as far as the hard limit allows, print nothing. Returns 0
 * or -1. */
static int fd_room(unsigned conns, unsigned long engine, int quiet)
{
#ifdef _WIN32
    (void)conns;
    (void)engine;
    (void)quiet;
    return 0;
#else
    const rlim_t need = (rlim_t)conns + (rlim_t)engine + 64;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return 0;
    if (rl.rlim_max >= need) { /* RLIM_INFINITY is the largest value */
        rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0) return 0;
    } else if (quiet) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (quiet) return -1;
    fprintf(stderr,
            "pc-stress: -c %u needs about %llu open files; the limit is %llu (hard %llu): "
            "raise it (ulimit -n) or use fewer connections\n",
            conns, (unsigned long long)need, (unsigned long long)rl.rlim_cur,
            (unsigned long long)rl.rlim_max);
    return -1;
#endif
}

#ifndef _WIN32
/* Descriptors open in this process now: /proc/self/fd's entries (less the
 * one reading them), else a guess (a few per worker). */
static unsigned long fds_open(int threads)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return 16 + 4ul * (unsigned long)threads;
    unsigned long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n ? n - 1 : 0;
}
#else
static unsigned long fds_open(int threads)
{
    (void)threads;
    return 0;
}
#endif

/* ---- options ------------------------------------------------------------------ */

#define MAX_HEADERS 16

static struct {
    char endpoint[80];  /* "127.0.0.1:8080" for pc_connect */
    char authority[80]; /* Host header */
    const char *url;
    const char *path;
    const char *headers[MAX_HEADERS];
    int nheaders;
    const char *source;
    unsigned conns;
    double duration;
    int threads;
    unsigned pipeline;
    int close_mode;
    double rate;
    unsigned timeout_ms;
    int json;
    int proxy_v2;
    int tls;            /* https:// */
    char tls_host[80];  /* the URL's host: SNI (a name) and the name checked */
    const char *cacert; /* --cacert */
    int insecure;       /* --insecure */
    int tls_resume;     /* --tls-resume */
} opt;

static char *g_req; /* one request */
static size_t g_req_len;
static char *g_req_pipe; /* --pipeline copies of it */
static size_t g_req_pipe_len;

/* ---- statistics: one block per thread, merged at the end ------------------------ */

/* Counters are written only by the owning thread and read by the main thread
 * for the progress line: relaxed single-writer updates, no locked ops. */
typedef struct tstat_s {
    _Atomic uint64_t requests;
    _Atomic uint64_t bytes;
    _Atomic uint64_t connects;
    _Atomic uint64_t late_connects; /* completed after the run ended */
    _Atomic uint64_t opened, closed;
    _Atomic uint64_t errors[E_COUNT];
    _Atomic uint64_t unanswered;  /* in flight when the run ended */
    _Atomic uint64_t unconnected; /* connects in flight when the run ended */
    _Atomic uint64_t dropped;     /* pipelined behind a response that closed */
    _Atomic uint64_t tls_full, tls_resumed;
    hist_t latency;
    hist_t connect;
    hist_t hs_full, hs_resumed; /* https: connect + handshake, by kind */
} tstat_t;

#define MAX_TSTATS (256 + 1) /* -t allows 256 workers, and the main thread records too */
static _Atomic(tstat_t *) g_tstats[MAX_TSTATS];
static atomic_int g_ntstats;
static _Thread_local tstat_t *tls_stat;
static tstat_t g_overflow_stat; /* if more than MAX_TSTATS threads ever record (never here) */

static tstat_t *my_stat(void)
{
    if (tls_stat) return tls_stat;
    int i = atomic_fetch_add(&g_ntstats, 1);
    tstat_t *t = i < MAX_TSTATS ? calloc(1, sizeof *t) : NULL;
    if (!t) return tls_stat = &g_overflow_stat;
    hist_init(&t->latency);
    hist_init(&t->connect);
    hist_init(&t->hs_full);
    hist_init(&t->hs_resumed);
    atomic_store(&g_tstats[i], t);
    return tls_stat = t;
}

static void bump(_Atomic uint64_t *a, uint64_t v)
{
    atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static void count_error(int kind)
{
    bump(&my_stat()->errors[kind], 1);
}

/* ---- connection slots -------------------------------------------------------------- */

/* One entry per request in flight: when it was sent (or scheduled) and the
 * id of the connection it went out on. */
typedef struct sent_s {
    uint64_t t;
    uint64_t id;
} sent_t;

/* A slot is one of the -c concurrent connections. It outlives the
 * connections it carries (a new one replaces one that ended), so the pacer
 * thread may look at it at any time. The ring of requests in flight has one
 * consumer (the worker that reads the responses); producers (the worker,
 * and the pacer with --rate) take plock to push. */
typedef struct slot_s {
    _Atomic uint64_t id; /* pc_conn_id of the open connection, 0 if none */
    atomic_int busy;     /* a connection is being opened or is open */
    atomic_flag plock;   /* producer side of the ring */
    uint64_t t_connect;  /* when pc_connect was called */
    uint64_t intended;   /* --rate --close: scheduled time of its request */
    int opened;
    int aborted;
    int closing;      /* a response said the connection ends after it (worker) */
    http_resp_t resp; /* response parser (worker) */
    /* requests in flight */
    _Atomic uint32_t head, tail;
    uint32_t mask;
    sent_t *ring;
} slot_t;

static slot_t *g_slots;
static pc_server_t *g_srv;
static pc_tls_ctx_t *g_tls;       /* client context for https:// */
static uint64_t g_t0;             /* start of the run */
static _Atomic uint64_t g_issued; /* --rate: scheduled requests handed out */
static atomic_int g_stopping;
static volatile sig_atomic_t g_sigint;

static void on_open(pc_conn_t *c);
static void on_data(pc_conn_t *c, const void *data, size_t len);
static void on_close(pc_conn_t *c, pc_close_reason_t reason, int err);
static const pc_callbacks_t k_cb = {.on_open = on_open, .on_data = on_data, .on_close = on_close};

static uint32_t ring_inflight(slot_t *s)
{
    return atomic_load_explicit(&s->tail, memory_order_acquire) -
           atomic_load_explicit(&s->head, memory_order_acquire);
}

static void plock(slot_t *s)
{
    while (atomic_flag_test_and_set_explicit(&s->plock, memory_order_acquire)) {
    }
}

static void punlock(slot_t *s)
{
    atomic_flag_clear_explicit(&s->plock, memory_order_release);
}

/* Producer side (under plock when there is more than one producer).
 * Returns 0, or -1 when the ring is full. */
static int ring_push(slot_t *s, uint64_t t, uint64_t id)
{
    uint32_t tail = atomic_load_explicit(&s->tail, memory_order_relaxed);
    if (tail - atomic_load_explicit(&s->head, memory_order_acquire) > s->mask) return -1;
    s->ring[tail & s->mask].t = t;
    s->ring[tail & s->mask].id = id;
    atomic_store_explicit(&s->tail, tail + 1, memory_order_release);
    return 0;
}

/* Consumer side: the send time of the oldest request of connection id, or
 * 0 if none is in flight (entries of earlier connections are dropped). */
static uint64_t ring_pop(slot_t *s, uint64_t id)
{
    uint32_t head = atomic_load_explicit(&s->head, memory_order_relaxed);
    uint32_t tail = atomic_load_explicit(&s->tail, memory_order_acquire);
    while (head != tail) {
        sent_t e = s->ring[head & s->mask];
        head++;
        if (e.id == id) {
            atomic_store_explicit(&s->head, head, memory_order_release);
            return e.t;
        }
    }
    atomic_store_explicit(&s->head, head, memory_order_release);
    return 0;
}

/* How many requests of connection id are in flight (consumer side). */
static uint32_t ring_count(slot_t *s, uint64_t id)
{
    uint32_t head = atomic_load_explicit(&s->head, memory_order_relaxed);
    uint32_t tail = atomic_load_explicit(&s->tail, memory_order_acquire);
    uint32_t n = 0;
    for (; head != tail; head++)
        n += s->ring[head & s->mask].id == id;
    return n;
}

/* --rate: how many scheduled requests are due at now. Request k is
 * scheduled at g_t0 + k / rate, so request 0 is due at once and
 * floor(elapsed * rate) + 1 are due after elapsed seconds. */
static uint64_t due_at(uint64_t now)
{
    return (uint64_t)((double)(now - g_t0) / 1e9 * opt.rate) + 1;
}

/* --rate: the scheduled time of request k (due_at's inverse). */
static uint64_t sched_at(uint64_t k)
{
    return g_t0 + (uint64_t)((double)k * 1e9 / opt.rate);
}

/* --rate: take the oldest scheduled request not yet handed out, if it is due
 * now. *when receives its scheduled time. Any thread. */
static int claim(uint64_t *when)
{
    uint64_t due = due_at(now_ns());
    uint64_t k = atomic_load(&g_issued);
    while (k < due) {
        if (atomic_compare_exchange_weak(&g_issued, &k, k + 1)) {
            *when = sched_at(k);
            return 1;
        }
    }
    return 0;
}

/* --rate, keep-alive: hand a due request to the slot's connection id if it
 * has room. Returns 1 if sent (or its connection just died: the entry is
 * then skipped), 0 if the slot is full, -1 if nothing is due. */
static int rate_send(slot_t *s, uint64_t id, pc_conn_t *c)
{
    uint64_t when;
    plock(s);
    if (ring_inflight(s) >= opt.pipeline) {
        punlock(s);
        return 0;
    }
    if (!claim(&when)) {
        punlock(s);
        return -1;
    }
    ring_push(s, when, id);
    punlock(s);
    if (c)
        pc_conn_send(c, g_req, g_req_len);
    else
        pc_server_send_to(g_srv, id, g_req, g_req_len);
    return 1;
}

/* Open a connection for the slot (any thread). busy must be set by the
 * caller. Returns 0 or a PC_E* code (then busy is cleared). */
static int slot_connect(slot_t *s)
{
    s->opened = 0;
    s->aborted = 0;
    s->closing = 0;
    s->t_connect = now_ns();
    /* --proxy-v2: the library sends the header first (before the TLS
     * handshake on https), naming the connection's own addresses */
    pc_connect_opts_t o;
    pc_connect_opts_init(&o);
    o.source = opt.source;
    o.tls = opt.tls ? g_tls : NULL;
    o.tls_host = opt.tls_host;
    o.proxy_v2 = opt.proxy_v2;
    int rc = pc_connect_ex(g_srv, opt.endpoint, &o, &k_cb, s, NULL);
    if (rc < 0) {
        /* PC_ENOTCONN: the run ended between a close and this reconnect, and
         * our own server, stopping, takes no new connection: not an error */
        if (rc != PC_ENOTCONN || !atomic_load(&g_stopping))
            count_error(rc == PC_ECONNREFUSED ? E_CONNECT_REFUSED : E_CONNECT_OTHER);
        atomic_store(&s->busy, 0);
    }
    return rc;
}

static void on_open(pc_conn_t *c)
{
    slot_t *s = pc_conn_user_data(c);
    tstat_t *ts = my_stat();
    uint64_t now = now_ns();
    uint64_t id = pc_conn_id(c);
    s->opened = 1;
    http_resp_init(&s->resp);
    bump(&ts->opened, 1);
    /* forget requests of the previous connection (the producer only pushes
     * for a published id, and none is published now) */
    atomic_store_explicit(&s->head, atomic_load(&s->tail), memory_order_release);
    /* the run ended while this one was connecting: nothing to measure (it
     * closes with the server), and no request sent is then left unanswered;
     * not a connect of the run either (a SYN retried past the end would add
     * seconds to the connect times and a connect to a rate over the run) */
    if (atomic_load(&g_stopping)) {
        bump(&ts->late_connects, 1);
        return;
    }
    hist_record(&ts->connect, now - s->t_connect);
    pc_tls_info_t info;
    if (opt.tls && pc_conn_tls_info(c, &info) == 0) {
        hist_record(info.resumed ? &ts->hs_resumed : &ts->hs_full, now - s->t_connect);
        bump(info.resumed ? &ts->tls_resumed : &ts->tls_full, 1);
    }
    bump(&ts->connects, 1);
    if (opt.rate > 0 && opt.close_mode) {
        ring_push(s, s->intended, id);
        pc_conn_send(c, g_req, g_req_len);
    } else if (opt.rate <= 0) {
        for (unsigned i = 0; i < opt.pipeline; i++)
            ring_push(s, now, id);
        pc_conn_send(c, g_req_pipe, g_req_pipe_len);
    }
    atomic_store(&s->id, id); /* the pacer may use it from now on */
    if (opt.rate > 0 && !opt.close_mode)
        while (rate_send(s, id, c) > 0) {
        }
}

/* The connection and its slot, for the parser's callback. */
typedef struct conn_ref_s {
    pc_conn_t *c;
    slot_t *s;
    int ending; /* from on_close: the connection is gone, send nothing more */
} conn_ref_t;

/* One response is complete (http_resp_cb; user is a conn_ref_t): record it
 * and send the next request, unless the connection is ending. */
static int response_done(void *user, int status, int closing)
{
    conn_ref_t *ref = user;
    pc_conn_t *c = ref->c;
    slot_t *s = ref->s;
    /* after the run's end its request stays in flight: on_close counts it
     * as unanswered */
    if (atomic_load_explicit(&g_stopping, memory_order_relaxed)) return 0;
    tstat_t *ts = my_stat();
    uint64_t id = pc_conn_id(c);
    uint64_t t = ring_pop(s, id);
    uint64_t now = now_ns();
    if (t) hist_record(&ts->latency, now > t ? now - t : 0);
    bump(&ts->requests, 1);
    if (status < 200 || status > 399) bump(&ts->errors[E_STATUS], 1);
    if (closing && !s->closing) {
        /* the server closes after this response (Connection: close, HTTP/1.0
         * without keep-alive, a body read to the close): no request more on
         * this connection, the pacer's included; its close brings a new one
         * (on_close), and what was pipelined behind this response is counted
         * there as dropped */
        s->closing = 1;
        atomic_store(&s->id, 0);
    }
    if (opt.close_mode && !s->closing && !ref->ending) {
        /* the request said Connection: close, so the connection ends after
         * this response (RFC 9112 section 9.6) even if the server keeps it
         * open: close it (its close brings the next one) rather than wait
         * for --timeout with the slot idle */
        s->closing = 1;
        atomic_store(&s->id, 0);
        pc_conn_close(c);
        return 0;
    }
    if (opt.close_mode || s->closing || ref->ending) return 0;
    if (opt.rate <= 0) {
        ring_push(s, now_ns(), id);
        pc_conn_send(c, g_req, g_req_len);
    } else {
        rate_send(s, id, c); /* a due request may be waiting for room */
    }
    return 0;
}

static void parse_error(pc_conn_t *c, slot_t *s)
{
    if (!atomic_load(&g_stopping)) count_error(E_PARSE);
    s->aborted = 1;
    pc_conn_abort(c);
}

static void on_data(pc_conn_t *c, const void *data, size_t len)
{
    slot_t *s = pc_conn_user_data(c);
    bump(&my_stat()->bytes, len);
    conn_ref_t ref = {c, s, 0};
    if (http_resp_feed(&s->resp, data, len, response_done, &ref) < 0) parse_error(c, s);
}

/* A connection that ended in its TLS handshake (refused certificate, no
 * common version or cipher, not TLS at all). */
static int is_tls_failure(pc_close_reason_t reason)
{
    return reason == PC_CLOSE_TLS;
}

static void on_close(pc_conn_t *c, pc_close_reason_t reason, int err)
{
    slot_t *s = pc_conn_user_data(c);
    tstat_t *ts = my_stat();
    uint64_t id = pc_conn_id(c);
    int stopping = atomic_load(&g_stopping);
    atomic_store(&s->id, 0);
    /* a response cut short (not a read-to-close body: the peer's close
     * completes that one) */
    int cut = 0;
    uint32_t left = 0; /* requests sent on this connection and not answered */
    if (s->opened) {
        bump(&ts->closed, 1);
        cut = http_resp_busy(&s->resp);
        conn_ref_t ref = {c, s, 1};
        if (reason == PC_CLOSE_PEER) http_resp_eof(&s->resp, response_done, &ref);
        left = ring_count(s, id);
    }
    if (stopping) {
        /* the run ended with these in flight: not errors (a keep-alive run
         * always ends with some), but reported, so that a server that never
         * answers does not look clean */
        bump(&ts->unanswered, left);
        /* and connects that had not completed: a server that drops the
         * SYNs (a kernel filter) answers none, and that must show too */
        if (!s->opened) bump(&ts->unconnected, 1);
    } else {
        int pending = left > 0;
        if (!s->opened && err == PC_ECONNRESET) {
            /* reset before on_open, as without TLS: during the handshake
             * (how pc-http rejects a client after the accept or a PROXY
             * header; a handshake that failed first keeps its PC_ETLS), or
             * (rare) a connect that reported it */
            count_error(E_RESET);
        } else if (!s->opened && is_tls_failure(reason)) {
            count_error(E_TLS);
        } else if (!s->opened) {
            count_error(err == PC_ECONNREFUSED                                   ? E_CONNECT_REFUSED
                        : err == PC_ETIMEDOUT || reason == PC_CLOSE_IDLE_TIMEOUT ? E_CONNECT_TIMEOUT
                                                                                 : E_CONNECT_OTHER);
        } else if (s->aborted) {
            /* counted when we aborted */
        } else if (reason == PC_CLOSE_RESET || err == PC_ECONNRESET) {
            count_error(E_RESET);
        } else if (reason == PC_CLOSE_IDLE_TIMEOUT) {
            if (pending) count_error(E_TIMEOUT);
        } else if (reason == PC_CLOSE_ERROR) {
            count_error(E_OTHER);
        } else if (cut) {
            count_error(E_CLOSED);
        } else if (pending && s->closing && reason == PC_CLOSE_PEER) {
            /* requests pipelined behind a response that announced the close,
             * which the server then made: it answers none of them (RFC 9112
             * section 9.6), not an error; counted one by one */
            bump(&ts->dropped, left);
        } else if (pending) {
            count_error(E_CLOSED);
        }
    }
    /* Closed loop: replace a connection that worked at once; after a failed
     * connect leave the slot to the main thread's next tick (a back-off). */
    int was_open = s->opened;
    if (!stopping && opt.rate <= 0 && was_open) {
        slot_connect(s); /* busy stays set */
        return;
    }
    uint64_t when;
    if (!stopping && opt.rate > 0 && opt.close_mode && claim(&when)) {
        s->intended = when;
        slot_connect(s);
        return;
    }
    atomic_store(&s->busy, 0);
}

/* ---- report ------------------------------------------------------------------------- */

static void sum_counters(stress_totals_t *t)
{
    memset(t, 0, sizeof *t);
    int n = atomic_load(&g_ntstats);
    if (n > MAX_TSTATS) n = MAX_TSTATS;
    for (int i = 0; i < n; i++) {
        tstat_t *s = atomic_load(&g_tstats[i]);
        if (!s) continue;
        t->requests += atomic_load_explicit(&s->requests, memory_order_relaxed);
        t->bytes += atomic_load_explicit(&s->bytes, memory_order_relaxed);
        t->connects += atomic_load_explicit(&s->connects, memory_order_relaxed);
        t->late_connects += atomic_load_explicit(&s->late_connects, memory_order_relaxed);
        t->opened += atomic_load_explicit(&s->opened, memory_order_relaxed);
        t->closed += atomic_load_explicit(&s->closed, memory_order_relaxed);
        t->unanswered += atomic_load_explicit(&s->unanswered, memory_order_relaxed);
        t->unconnected += atomic_load_explicit(&s->unconnected, memory_order_relaxed);
        t->dropped += atomic_load_explicit(&s->dropped, memory_order_relaxed);
        t->tls_full += atomic_load_explicit(&s->tls_full, memory_order_relaxed);
        t->tls_resumed += atomic_load_explicit(&s->tls_resumed, memory_order_relaxed);
        for (int k = 0; k < E_COUNT; k++) {
            uint64_t e = atomic_load_explicit(&s->errors[k], memory_order_relaxed);
            t->errors[k] += e;
            t->errors_total += e;
        }
    }
}

static void merge_hists(hist_t *lat, hist_t *con, hist_t *full, hist_t *resumed)
{
    hist_init(lat);
    hist_init(con);
    hist_init(full);
    hist_init(resumed);
    int n = atomic_load(&g_ntstats);
    if (n > MAX_TSTATS) n = MAX_TSTATS;
    for (int i = 0; i < n; i++) {
        tstat_t *s = atomic_load(&g_tstats[i]);
        if (!s) continue;
        hist_merge(lat, &s->latency);
        hist_merge(con, &s->connect);
        hist_merge(full, &s->hs_full);
        hist_merge(resumed, &s->hs_resumed);
    }
}

/* The final report (report.c): the run's options, counters and histograms.
 * Returns the responses counted. */
static uint64_t report(double secs, uint64_t unsent)
{
    stress_totals_t t;
    sum_counters(&t);
    static hist_t lat, con, hs_full, hs_resumed;
    merge_hists(&lat, &con, &hs_full, &hs_resumed);
    stress_run_t run = {opt.url,  opt.conns, opt.threads,    opt.pipeline, opt.close_mode,
                        opt.rate, opt.tls,   opt.tls_resume, opt.insecure, opt.cacert};
    stress_result_t res = {secs, unsent, &t, &lat, &con, &hs_full, &hs_resumed};
    if (opt.json)
        stress_report_json(stdout, &run, &res);
    else
        stress_report_text(stdout, &run, &res);
    fflush(stdout);
    return t.requests;
}

/* ---- setup -------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(
        f, "usage: pc-stress URL [-c CONNS] [-d SECONDS] [-t THREADS] [--pipeline N] [--close]\n"
           "                 [--rate R] [--source ADDR] [--timeout MS] [-H HEADER]... [--json]\n"
           "                 [--proxy-v2] [--cacert FILE | --insecure] [--tls-resume]\n"
           "  URL             http[s]://IP[:PORT][/path] (IPv6 as [::1]; 'localhost' = 127.0.0.1)\n"
           "  -c CONNS        concurrent connections, 1 to 1000000 (default 10)\n"
           "  -d SECONDS      duration, fractions allowed, up to 1000000 (default 10)\n"
           "  -t THREADS      worker threads, 1 to 256 (default 2)\n"
           "  --pipeline N    requests in flight per connection, 1 to 1024 (default 1)\n"
           "  --close         a new connection per request (Connection: close)\n"
           "  --rate R        open loop: R requests/s in total (latency from schedule)\n"
           "  --source ADDR   bind this local IP address: IPv4, or IPv6 without brackets\n"
           "                  (no port), of the URL's family\n"
           "  --timeout MS    close a connection with requests in flight and no data for\n"
           "                  MS ms (counted as timeout), 0 to 86400000; 0 = never (a\n"
           "                  silent server then holds its connections to the end; they\n"
           "                  show as unanswered; default 10000)\n"
           "  -H HEADER       extra request header (repeatable)\n"
           "  --json          final report as one JSON object on stdout\n"
           "  --proxy-v2      start every connection with a PROXY v2 header naming itself\n"
           "  --cacert FILE   https: trust the CAs in FILE (PEM) instead of the system store\n"
           "  --insecure      https: no certificate or name verification\n"
           "  --tls-resume    https: offer the session of an earlier connection (resumed\n"
           "                  handshakes; see the report's full/resumed split; with --close)\n"

           "  -v, --verbose   the library's info lines too (default: warnings, errors)\n"
           "Counts and milliseconds are whole numbers: digits only, no sign or blank.\n"
           "The report counts responses (requests), errors by kind, and requests never\n"
           "answered: unanswered (in flight when the run ended) and dropped (pipelined\n"
           "behind a response that closed its connection: Connection: close, HTTP/1.0\n"
           "without keep-alive, a body that runs to the close); and unconnected, connects\n"
           "in flight when the run ended (a server that drops the SYNs answers none).\n"
           "Exit status: 0 when the run completed, whatever it measured: errors, or no\n"
           "request answered at all (the report then says so, and so does stderr); 1 on\n"
           "a setup failure; 2 on bad arguments.\n");
}

/* A decimal number from 0 to max: digits first (no blank, sign, inf or nan
 * before them), a fraction and an exponent allowed, nothing after. */
static int parse_num(const char *s, double max, double *out)
{
    char *end;
    if (!s || ((*s < '0' || *s > '9') && *s != '.')) return -1;
    if (s[strspn(s, "0123456789.eE+-")]) return -1; /* no hex floats */
    double v = strtod(s, &end);
    if (end == s || *end || v != v || v > max) return -1;
    *out = v;
    return 0;
}

/* A whole number from min to max, digits only (strtoul would take leading
 * blanks and a sign, and wrap "-5"). */
static int parse_whole(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9') return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || v < min || v > max) return -1;
    *out = (unsigned long)v;
    return 0;
}

/* The whole-number options: their flag, range and what they set. */
typedef struct whole_opt_s {
    const char *flag;
    unsigned long min, max;
    const char *what;
} whole_opt_t;

static const whole_opt_t k_whole[] = {
    {"-c", 1, 1000000, "a whole number of connections from 1 to 1000000"},
    {"-t", 1, 256, "a whole number of threads from 1 to 256"},
    {"--pipeline", 1, 1024, "a whole number of requests from 1 to 1024"},
    {"--timeout", 0, 86400000, "whole milliseconds from 0 (never) to 86400000"},
};

/* --source: an IP address as pc_connect_ex binds it (IPv4, or IPv6 without
 * brackets; no port): AF_INET or AF_INET6, or -1 if it is none. Parsed the
 * way the library parses it, so whatever passes here binds there. */
static int source_family(const char *s)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    char ep[80];
    if (!*s || strlen(s) > 64 || strpbrk(s, "[]")) return -1;
    snprintf(ep, sizeof ep, "[%s]:0", s);
    if (pc_parse_endpoint(ep, &ss, &sl) == 0) return AF_INET6;
    snprintf(ep, sizeof ep, "%s:0", s);
    if (pc_parse_endpoint(ep, &ss, &sl) == 0) return AF_INET;
    return -1;
}

static int parse_url(const char *url)
{
    const char *a;
    if (!strncmp(url, "http://", 7)) {
        a = url + 7;
    } else if (!strncmp(url, "https://", 8)) {
        a = url + 8;
        opt.tls = 1;
    } else {
        return -1;
    }
    const char *slash = strchr(a, '/');
    size_t alen = slash ? (size_t)(slash - a) : strlen(a);
    if (!alen || alen >= sizeof opt.authority) return -1;
    memcpy(opt.authority, a, alen);
    opt.authority[alen] = 0;
    opt.path = slash ? slash : "/";
    char host[80];
    const char *port = NULL;
    if (opt.authority[0] == '[') {
        const char *rb = strchr(opt.authority, ']');
        if (!rb) return -1;
        snprintf(host, sizeof host, "%.*s", (int)(rb - opt.authority + 1), opt.authority);
        if (rb[1] == ':')
            port = rb + 2;
        else if (rb[1])
            return -1;
    } else {
        const char *colon = strchr(opt.authority, ':');
        size_t hl = colon ? (size_t)(colon - opt.authority) : alen;
        snprintf(host, sizeof host, "%.*s", (int)hl, opt.authority);
        if (colon) port = colon + 1;
        snprintf(opt.tls_host, sizeof opt.tls_host, "%s", host);
        if (!strcmp(host, "localhost")) strcpy(host, "127.0.0.1");
    }
    if (host[0] == '[') /* the certificate names the address without brackets */
        snprintf(opt.tls_host, sizeof opt.tls_host, "%.*s", (int)strlen(host) - 2, host + 1);
    const char *pp = port && *port ? port : opt.tls ? "443" : "80";
    if (strlen(host) + 1 + strlen(pp) >= sizeof opt.endpoint) return -1;
    memcpy(opt.endpoint, host, strlen(host));
    opt.endpoint[strlen(host)] = ':';
    memcpy(opt.endpoint + strlen(host) + 1, pp, strlen(pp) + 1);
    struct sockaddr_storage ss;
    socklen_t sl;
    if (pc_parse_endpoint(opt.endpoint, &ss, &sl) < 0) return -1;
    /* port 0 is no server's (every connect would fail, counted as refused) */
    if ((ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                 : ((struct sockaddr_in6 *)&ss)->sin6_port) == 0)
        return -1;
    /* the path goes into the request line as it is: a blank or a control
     * byte (CR LF) would break it, or add header lines */
    for (const unsigned char *p = (const unsigned char *)opt.path; *p; p++)
        if (*p <= 0x20 || *p == 0x7f) return -1;
    return 0;
}

static int build_requests(void)
{
    size_t cap = 256 + strlen(opt.path) + strlen(opt.authority);
    for (int i = 0; i < opt.nheaders; i++)
        cap += strlen(opt.headers[i]) + 2;
    g_req = malloc(cap);
    if (!g_req) return -1;
    int n = snprintf(g_req, cap, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: pc-stress\r\n",
                     opt.path, opt.authority);
    for (int i = 0; i < opt.nheaders; i++)
        n += snprintf(g_req + n, cap - (size_t)n, "%s\r\n", opt.headers[i]);
    n += snprintf(g_req + n, cap - (size_t)n, "%s\r\n",
                  opt.close_mode ? "Connection: close\r\n" : "");
    g_req_len = (size_t)n;
    g_req_pipe_len = g_req_len * opt.pipeline;
    g_req_pipe = malloc(g_req_pipe_len);
    if (!g_req_pipe) return -1;
    for (unsigned i = 0; i < opt.pipeline; i++)
        memcpy(g_req_pipe + i * g_req_len, g_req, g_req_len);
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    g_sigint = 1;
}

static int parse_args(int argc, char **argv)
{
    opt.conns = 10;
    opt.duration = 10;
    opt.threads = 2;
    opt.pipeline = 1;
    opt.timeout_ms = 10000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
        const whole_opt_t *w = NULL;
        for (size_t k = 0; k < sizeof k_whole / sizeof k_whole[0]; k++)
            if (!strcmp(a, k_whole[k].flag)) w = &k_whole[k];
        if (w) {
            unsigned long n;
            if (parse_whole(v, w->min, w->max, &n) < 0) {
                if (v)
                    fprintf(stderr, "pc-stress: %s needs %s, not '%s'\n", a, w->what, v);
                else
                    fprintf(stderr, "pc-stress: %s needs %s\n", a, w->what);
                return -1;
            }
            if (!strcmp(a, "-c")) opt.conns = (unsigned)n;
            if (!strcmp(a, "-t")) opt.threads = (int)n;
            if (!strcmp(a, "--pipeline")) opt.pipeline = (unsigned)n;
            if (!strcmp(a, "--timeout")) opt.timeout_ms = (unsigned)n;
            i++;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--close")) {
            opt.close_mode = 1;
            continue;
        } else if (!strcmp(a, "--json")) {
            opt.json = 1;
            continue;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            pc_log_set_level(PC_LOG_INFO);
            continue;
        } else if (!strcmp(a, "--proxy-v2")) {
            opt.proxy_v2 = 1;
            continue;
        } else if (!strcmp(a, "--insecure")) {
            opt.insecure = 1;
            continue;
        } else if (!strcmp(a, "--tls-resume")) {
            opt.tls_resume = 1;
            continue;
        } else if (a[0] != '-') {
            if (opt.url) {
                fprintf(stderr, "pc-stress: a second URL '%s' (one URL only)\n", a);
                return -1;
            }
            opt.url = a;
            continue;
        } else if (!v && (!strcmp(a, "--cacert") || !strcmp(a, "--source") || !strcmp(a, "-H"))) {
            fprintf(stderr, "pc-stress: %s needs a value\n", a);
            return -1;
        } else if (!strcmp(a, "--cacert")) {
            if (!*v) {
                fprintf(stderr, "pc-stress: bad value for --cacert: '' (a PEM file)\n");
                return -1;
            }
            opt.cacert = v;
        } else if (!strcmp(a, "-d") || !strcmp(a, "--rate")) {
            int rate = !strcmp(a, "--rate");
            if (parse_num(v, rate ? 1e9 : 1e6, &d) < 0 || !(d > 0)) {
                fprintf(stderr, "pc-stress: %s needs %s above 0, up to %s (digits first)\n", a,
                        rate ? "requests per second" : "seconds", rate ? "1e9" : "1e6");
                return -1;
            }
            if (rate)
                opt.rate = d;
            else
                opt.duration = d;
        } else if (!strcmp(a, "--source")) {
            if (source_family(v) < 0) {
                fprintf(stderr,
                        "pc-stress: --source needs a local IP address (IPv4, or IPv6 without "
                        "brackets; no port), not '%s'\n",
                        v);
                return -1;
            }
            opt.source = v;
        } else if (!strcmp(a, "-H")) {
            if (!strchr(v, ':') || strpbrk(v, "\r\n")) {
                fprintf(stderr, "pc-stress: bad value for -H: '%s' (want \"Name: value\")\n", v);
                return -1;
            }
            if (opt.nheaders == MAX_HEADERS) {
                fprintf(stderr, "pc-stress: at most %d -H headers\n", MAX_HEADERS);
                return -1;
            }
            opt.headers[opt.nheaders++] = v;
        } else {
            fprintf(stderr, "pc-stress: unknown argument '%s'\n", a);
            return -1;
        }
        i++;
    }
    if (!opt.url) {
        fprintf(stderr, "pc-stress: no URL\n");
        return -1;
    }
    if (parse_url(opt.url) < 0) {
        fprintf(stderr,
                "pc-stress: bad URL '%s' (want http[s]://IP[:PORT][/path]: port 1 to 65535, "
                "no blank or control byte in the path)\n",
                opt.url);
        return -1;
    }
    if (opt.source) {
        struct sockaddr_storage ss;
        socklen_t sl;
        int fam = source_family(opt.source);
        if (pc_parse_endpoint(opt.endpoint, &ss, &sl) == 0 && ss.ss_family != fam) {
            fprintf(stderr, "pc-stress: --source %s is %s, the URL's address is not\n", opt.source,
                    fam == AF_INET6 ? "IPv6" : "IPv4");
            return -1;
        }
    }
    if (!opt.tls && (opt.cacert || opt.insecure || opt.tls_resume)) {
        fprintf(stderr, "pc-stress: --cacert, --insecure and --tls-resume need an https:// URL\n");
        return -1;
    }
    if (opt.cacert && opt.insecure) {
        fprintf(stderr, "pc-stress: --cacert and --insecure contradict each other\n");
        return -1;
    }
    if (opt.close_mode) opt.pipeline = 1;
    return 0;
}

/* --rate, main thread: hand due requests to connections that have room (the
 * workers also take them as responses free room). Returns how many
 * scheduled requests are still waiting; their latency keeps counting from
 * the schedule. */
static uint64_t pace(unsigned *cursor)
{
    for (unsigned k = 0; k < opt.conns; k++) {
        slot_t *s = &g_slots[*cursor];
        *cursor = (*cursor + 1) % opt.conns;
        if (opt.close_mode) {
            int expect = 0;
            if (!atomic_compare_exchange_strong(&s->busy, &expect, 1)) continue;
            uint64_t when;
            if (!claim(&when)) {
                atomic_store(&s->busy, 0);
                break;
            }
            s->intended = when;
            slot_connect(s);
        } else {
            uint64_t id = atomic_load(&s->id);
            if (!id) continue;
            int r;
            while ((r = rate_send(s, id, NULL)) > 0) {
            }
            if (r < 0) break;
        }
    }
    uint64_t due = due_at(now_ns());
    uint64_t issued = atomic_load(&g_issued);
    return due > issued ? due - issued : 0;
}

int main(int argc, char **argv)
{
    pc_log_set_level(PC_LOG_WARN); /* the report only; -v for the library's info lines */
    if (parse_args(argc, argv) < 0) {
        usage(stderr);
        return 2;
    }
    if (build_requests() < 0) return 1;
    /* room for the engine's workers first (counted once they run) */
    fd_room(opt.conns, 8ul * (unsigned long)opt.threads, 1);
    uint32_t ring = 1;
    while (ring < opt.pipeline)
        ring <<= 1;
    g_slots = calloc(opt.conns, sizeof *g_slots);
    sent_t *rings = calloc((size_t)opt.conns * ring, sizeof *rings);
    if (!g_slots || !rings) {
        fprintf(stderr, "pc-stress: out of memory\n");
        return 1;
    }
    for (unsigned i = 0; i < opt.conns; i++) {
        g_slots[i].ring = rings + (size_t)i * ring;
        g_slots[i].mask = ring - 1;
    }

    if (opt.tls) {
        pc_tls_client_config_t tc;
        pc_tls_client_config_init(&tc);
        tc.ca_file = opt.cacert;
        tc.insecure = opt.insecure;
        tc.alpn = "http/1.1";
        tc.resume = opt.tls_resume;
        int trc = pc_tls_ctx_new_client(&tc, &g_tls);
        if (trc < 0) {
            fprintf(stderr, "pc-stress: TLS client context: %s%s%s\n", pc_strerror(trc),
                    opt.cacert ? ", --cacert " : "", opt.cacert ? opt.cacert : "");
            return 1;
        }
    }
    pc_server_config_t cfg;
    pc_server_config_init(&cfg);
    cfg.threads = opt.threads;
    cfg.idle_timeout_ms = opt.timeout_ms;
    cfg.close_linger_ms = 1000;
    cfg.cb = k_cb;
    int rc = pc_server_create(&cfg, &g_srv);
    if (rc == 0) rc = pc_server_start(g_srv);
    if (rc < 0) {
        fprintf(stderr, "pc-stress: %s\n", pc_strerror(rc));
        return 1;
    }
    if (fd_room(opt.conns, fds_open(opt.threads), 0) < 0) {
        pc_server_stop(g_srv, 0);
        pc_server_destroy(g_srv);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    uint64_t t0 = now_ns();
    g_t0 = t0;
    uint64_t end = t0 + (uint64_t)(opt.duration * 1e9);
    uint64_t next_progress = t0 + 1000000000u, unsent = 0, last_req = 0;
    unsigned cursor = 0;
    unsigned tick_us = opt.rate > 0 ? 250 : 5000;
    if (!(opt.rate > 0 && opt.close_mode))
        for (unsigned i = 0; i < opt.conns; i++) {
            atomic_store(&g_slots[i].busy, 1);
            slot_connect(&g_slots[i]);
        }
    for (;;) {
        uint64_t now = now_ns();
        if (now >= end || g_sigint) break;
        if (opt.rate > 0) unsent = pace(&cursor);
        if (!(opt.rate > 0 && opt.close_mode)) /* re-open slots whose connect failed */
            for (unsigned i = 0; i < opt.conns; i++) {
                int expect = 0;
                if (atomic_compare_exchange_strong(&g_slots[i].busy, &expect, 1))
                    slot_connect(&g_slots[i]);
            }
        if (now >= next_progress) {
            stress_totals_t t;
            sum_counters(&t);
            fprintf(stderr, "[%5.1fs] %9.0f req/s  errors %llu  open %llu\n",
                    (double)(now - t0) / 1e9, (double)(t.requests - last_req),
                    (unsigned long long)t.errors_total, (unsigned long long)(t.opened - t.closed));
            last_req = t.requests;
            next_progress += 1000000000u;
        }
        unsigned sleep_for = tick_us;
        if (opt.rate > 0) { /* wake for the next scheduled request if it comes sooner */
            uint64_t next = sched_at(atomic_load(&g_issued)), t = now_ns();
            if (next > t && next - t < (uint64_t)tick_us * 1000u)
                sleep_for = (unsigned)((next - t) / 1000u) + 1;
        }
        sleep_us(sleep_for);
    }
    atomic_store(&g_stopping, 1);
    double secs = (double)(now_ns() - t0) / 1e9;
    pc_server_stop(g_srv, 1000);
    uint64_t answered = report(secs, unsent);
    if (!answered) /* exit 0 still, as with errors: the report is the verdict */
        fprintf(stderr, "pc-stress: no request was answered in %.2f s\n", secs);
    pc_server_destroy(g_srv);
    pc_tls_ctx_free(g_tls);
    free(rings);
    free(g_slots);
    free(g_req);
    free(g_req_pipe);
    return 0;
}
