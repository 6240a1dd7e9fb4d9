/* SPDX-License-Identifier: MIT */
/* Embedding by id (issue 17): memory held by send queues bounded whatever the
 * message sizes, the per-connection send limit, control by id from other
 * threads (post_to, abort_id, stale ids), on_sent, per-connection and server
 * timers, the idle timeout with outbound-only traffic, pc-chat's broadcast
 * scenario, and what a review found racy (a send after abort_id, ids of
 * connections before on_open, timers due together, posts during a stop).
 * Run on every backend. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "budget_alloc.h"
#include "chat_app.h"
#include "core/clock.h"
#include "core/thread.h"
#include "harness.h"
#include "pick.h"
#include "portcullis.h"
#include "shim.h"

/* RSS says something about the library only without a sanitizer: ASan keeps
 * freed memory in its quarantine and both add shadow memory */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define PC_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PC_SANITIZED 1
#endif
#ifdef __linux__
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#endif
#if defined(__linux__) && !defined(PC_SANITIZED)
#define CHECK_RSS 1
#include <unistd.h>
/* Resident memory of this process in bytes (Linux). */
static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%llu %llu", &size, &res) != 2) res = 0;
        fclose(f);
    }
    return res * (uint64_t)sysconf(_SC_PAGESIZE);
}
#endif

/* A connection id seen by the harness's on_open (the last one). */
static pc_conn_id_t wait_open_id(int n)
{
    WAIT_FOR(atomic_load(&g_opens) >= n, 5000);
    assert_true(atomic_load(&g_opens) >= n);
    return atomic_load(&g_last_id);
}

/* A server with the base config and one client connected to it: the
 * client's socket, and the connection's id in *id. */
static shim_sock_t start_one_client(pc_conn_id_t *id)
{
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    shim_sock_t s = connect_server(10000);
    *id = wait_open_id(1);
    return s;
}

/* A client that never reads: tiny receive buffer, so the kernel takes
 * little of what is sent to it. */
static shim_sock_t connect_nonreader(void)
{
    shim_sock_t s = connect_server(10000);
    shim_set_rcvbuf(s, 4096);
    return s;
}

/* The server's send counters account for exactly `total` bytes: written to
 * sockets, or still waiting to be (stats' send_queued counts a send until it
 * completes). A send completing between the two counters' reads can make
 * one call miss, so callers wait for it. */
static int bytes_accounted(uint64_t total)
{
    pc_server_stats_t st = stats();
    return st.bytes_out + st.send_queued_bytes == total;
}

/* ---- 1. the 16-byte send_to loop: refused before memory grows past 2x the cap */

static void send_to_16b_bounded(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.max_buffered_bytes = 256u << 10;
    cfg.send_queue_limit = SIZE_MAX; /* only the global cap applies here */
    start_server(&cfg);
    shim_sock_t s = connect_nonreader();
    pc_conn_id_t id = wait_open_id(1);
#ifdef CHECK_RSS
    uint64_t rss0 = rss_bytes();
#endif
    static const char msg[16] = "0123456789abcde\n";
    uint64_t accepted = 0, max_held = 0;
    int rc = 0;
    /* bounded: 64 MiB of messages at most (the issue's figure was 192,394
     * accepted sends and 64 MiB held for a 256 KiB cap) */
    for (uint64_t i = 0; i < (64u << 20) / 16; i++) {
        rc = pc_server_send_to(g_srv, id, msg, sizeof msg);
        if (rc != 0) break;
        accepted++;
        if ((i & 1023) == 0) {
            uint64_t h = stats().send_held_bytes;
            if (h > max_held) max_held = h;
        }
    }
    assert_int_equal(rc, PC_ENOBUFS);
    pc_server_stats_t st = stats();
    if (st.send_held_bytes > max_held) max_held = st.send_held_bytes;
    assert_true(st.send_refused >= 1);
    /* the bound: memory held by the queues, not payload */
    assert_true(max_held <= 2 * cfg.max_buffered_bytes);
    /* small messages coalesce: about the cap's worth of them is accepted
     * (one 4 KiB chunk each would have stopped at 64) */
    assert_true(accepted * sizeof msg >= cfg.max_buffered_bytes / 2);
    /* nothing accepted is lost: every byte was written to the socket or
     * still waits, queued or in a send the kernel has not finished. Which of
     * the two is not fixed: loopback's send buffer can grow past the cap and
     * take it all (send_queued was 0 once in a loaded CI run, send_held 0
     * once in a coverage build), so the check is the sum. */
    int all_there = 0;
    WAIT_FOR((all_there = bytes_accounted(accepted * sizeof msg)), 5000);
    assert_true(all_there);
    assert_true(pc_server_send_queued(g_srv, id) >= 0);
#ifdef CHECK_RSS
    uint64_t rss1 = rss_bytes();
    print_message("16-byte sends: %llu accepted, held %llu B (cap %zu), RSS +%lld KiB\n",
                  (unsigned long long)accepted, (unsigned long long)max_held,
                  cfg.max_buffered_bytes, ((long long)rss1 - (long long)rss0) / 1024);
    /* plus 256 KiB: the allocator commits memory a page of a size class
     * and a thread heap at a time (+388..472 KiB here in 30 runs, +516
     * once under a loaded CI run); the defect this guards against held
     * the whole 64 MiB */
    assert_true(rss1 <= rss0 + 2 * cfg.max_buffered_bytes + (256u << 10));
#endif
    /* refused sends queued nothing: aborting frees everything */
    assert_int_equal(pc_server_abort_id(g_srv, id), 0);
    WAIT_FOR(atomic_load(&g_closes) == 1, 5000);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_ABORT]), 1);
    WAIT_FOR(stats().send_held_bytes == 0, 5000);
    assert_int_equal(stats().send_held_bytes, 0);
    assert_int_equal(stats().send_queued_bytes, 0);
    shim_close(s);
}

/* ---- 1b. senders by id racing: the cap is never passed */

enum { RACERS = 4, RACE_TRIALS = 20 };
#define RACE_CAP ((size_t)4 << 20)
static char g_race_msg[RACE_CAP / 2 + 8192];
static atomic_int g_race_ready, g_race_go;

typedef struct {
    pc_conn_id_t id;
    size_t len;
    int rc;
} racer_t;

static void racer_main(void *arg)
{
    racer_t *r = arg;
    atomic_fetch_add(&g_race_ready, 1);
    while (!atomic_load(&g_race_go)) {
    }
    r->rc = pc_server_send_to(g_srv, r->id, g_race_msg, r->len);
}

/* Queue bytes to the non-reader, a MiB at a time, until the kernel's
 * buffers are full (a few MiB on loopback) and at least 256 KiB wait in its
 * send queue, which then stays still: the same count over 100 ms (one
 * 20 ms look could catch a worker that a loaded machine had not run yet,
 * whose send then freed chunks during the race and made room for two). */
static void fill_until_held(pc_conn_id_t id)
{
    size_t last = 0;
    int same = 0;
    for (int i = 0; i < 400; i++) {
        int64_t sq = pc_server_send_queued(g_srv, id);
        if (sq < 0) fail_msg("send_queued: %s", pc_err_name((int)sq));
        size_t q = (size_t)sq;
        same = q == last ? same + 1 : 0;
        if (q >= (256u << 10) && same >= 5) return;
        last = q;
        if (q < (256u << 10))
            assert_int_equal(pc_server_send_to(g_srv, id, g_race_msg, 1u << 20), 0);
        shim_sleep_ms(20);
    }
    fail_msg("the send queue did not settle");
}

/* Threads sending by id at the same moment, each a message that needs a
 * chunk of its own more than half the room left under the cap: exactly
 * one is taken, the others are refused, and the memory held never passes
 * the cap (a check followed by the count let two or more through). */
static void send_to_racers_cap_exact(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.max_buffered_bytes = RACE_CAP;
    cfg.send_queue_limit = SIZE_MAX; /* only the global cap applies here */
    start_server(&cfg);
    memset(g_race_msg, 'r', sizeof g_race_msg);
    for (int trial = 0; trial < RACE_TRIALS; trial++) {
        shim_sock_t s = connect_nonreader();
        pc_conn_id_t id = wait_open_id(trial + 1);
        fill_until_held(id);
        uint64_t held = stats().send_held_bytes;
        /* a fill chunk or two; what the race needs is room for one message
         * and not two (below), with no refusal for lack of any */
        if (!(held > 0 && held < RACE_CAP - (1u << 20)))
            print_message("trial %d: %llu B held after the fill, %lld B queued\n", trial,
                          (unsigned long long)held, (long long)pc_server_send_queued(g_srv, id));
        assert_true(held > 0 && held <= RACE_CAP - (256u << 10));
        size_t len = (size_t)(RACE_CAP - held) / 2 + 4096; /* one fits, two do not */
        racer_t r[RACERS];
        pc_thread_t th[RACERS];
        atomic_store(&g_race_ready, 0);
        atomic_store(&g_race_go, 0);
        for (int i = 0; i < RACERS; i++) {
            r[i].id = id;
            r[i].len = len;
            r[i].rc = 1;
            assert_int_equal(pc__thread_start(&th[i], racer_main, &r[i], "racer"), 0);
        }
        WAIT_FOR(atomic_load(&g_race_ready) == RACERS, 5000);
        atomic_store(&g_race_go, 1);
        int taken = 0;
        for (int i = 0; i < RACERS; i++) {
            pc__thread_join(th[i]);
            if (r[i].rc == 0)
                taken++;
            else
                assert_int_equal(r[i].rc, PC_ENOBUFS);
        }
        pc_server_stats_t st = stats();
        if (taken != 1 || st.send_held_bytes > RACE_CAP)
            print_message("trial %d: %d of %d taken, %llu B held (cap %llu)\n", trial, taken,
                          RACERS, (unsigned long long)st.send_held_bytes,
                          (unsigned long long)RACE_CAP);
        assert_int_equal(taken, 1);
        assert_true(st.send_held_bytes <= RACE_CAP);
        assert_int_equal(pc_server_abort_id(g_srv, id), 0);
        WAIT_FOR(atomic_load(&g_closes) == trial + 1, 5000);
        assert_int_equal(atomic_load(&g_closes), trial + 1);
        WAIT_FOR(stats().send_held_bytes == 0, 5000);
        assert_int_equal(stats().send_held_bytes, 0);
        shim_close(s);
    }
}

/* ---- 2. per-connection limit: the non-reader is refused, a reader is not */

static void send_queue_limit_per_connection(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.send_queue_limit = 64u << 10;
    start_server(&cfg);
    shim_sock_t slow = connect_nonreader();
    pc_conn_id_t slow_id = wait_open_id(1);
    shim_sock_t fast = connect_server(10000);
    pc_conn_id_t fast_id = wait_open_id(2);
    assert_true(fast_id != slow_id);
    char line[1000];
    memset(line, 'x', sizeof line);
    line[sizeof line - 1] = '\n';
    /* Lines until the limit refuses one. The refusal can come while the
     * kernel still takes bytes (the test thread outran the strand), and the
     * queue then drains below the limit: so again, until the kernel's
     * buffers are full and the queue stays where the refusal left it. */
    int64_t q = -1, last = -1;
    int settled = 0;
    for (int round = 0; round < 250 && !settled; round++) { /* bounded: 250 rounds of 20 ms */
        int rc = 0;
        for (int i = 0; i < 100000 && rc == 0; i++)
            rc = pc_server_send_to(g_srv, slow_id, line, sizeof line);
        assert_int_equal(rc, PC_ENOBUFS);
        shim_sleep_ms(20);
        q = pc_server_send_queued(g_srv, slow_id);
        assert_true(q >= 0 && (size_t)q <= cfg.send_queue_limit);
        /* refused at the limit: a line more would have passed it */
        settled = q == last && (size_t)q + sizeof line > cfg.send_queue_limit;
        last = q;
    }
    if (!settled)
        fail_msg("the queue did not settle at the limit (last %lld of %llu)", (long long)q,
                 (unsigned long long)cfg.send_queue_limit);
    assert_true(stats().send_limit_refused >= 1);
    /* the reader gets every line it is sent, never refused */
    uint64_t refused = stats().send_limit_refused;
    char *buf = malloc(sizeof line);
    for (int i = 0; i < 300; i++) {
        assert_int_equal(pc_server_send_to(g_srv, fast_id, line, sizeof line), 0);
        assert_int_equal(shim_recv_exact(fast, buf, sizeof line), sizeof line);
        assert_memory_equal(buf, line, sizeof line);
    }
    free(buf);
    assert_int_equal(stats().send_limit_refused, refused);
    /* a send into an empty queue is never refused by the limit (the last
     * send's completion may still be on its way after the client has the
     * bytes: wait for the queue to be empty) */
    WAIT_FOR(pc_server_send_queued(g_srv, fast_id) == 0, 5000);
    assert_int_equal(pc_server_send_queued(g_srv, fast_id), 0);
    char *big = calloc(1, 256u << 10);
    assert_int_equal(pc_server_send_to(g_srv, fast_id, big, 256u << 10), 0);
    char *got = malloc(256u << 10);
    assert_int_equal(shim_recv_exact(fast, got, 256u << 10), 256u << 10);
    free(got);
    free(big);
    /* kick the slow one: reset, its queue dropped */
    assert_int_equal(pc_server_abort_id(g_srv, slow_id), 0);
    WAIT_FOR(atomic_load(&g_reasons[PC_CLOSE_ABORT]) == 1, 5000);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_ABORT]), 1);
    assert_int_equal(pc_server_send_queued(g_srv, slow_id), PC_ENOTCONN);
    assert_int_equal(pc_server_send_to(g_srv, slow_id, "x", 1), PC_ENOTCONN);
    shim_close(slow);
    shim_close(fast);
}

/* ---- 2c. pc_conn_send_queued from another thread: bytes sent by id are
 * never missing from it while the worker moves them from the inbox's count
 * to the send queue's. Allowed from any thread that knows the connection
 * is open (threads as pc_conn_id), it read the two counts without the
 * lock: the queue's before the kick added the bytes, the inbox's after it
 * took them off. The kernel's buffers are full first, so nothing leaves
 * and a sampler sees the count only grow. Linux: under Wine, writes to the
 * peer that does not read still complete after the queue has settled (a
 * 256 KiB write left 2 s in), so there the count falls for a good reason. */
#ifdef __linux__
/* pc_conn_send_queued of the connection (arg) from this thread: not below
 * its last look (last) */
typedef struct cq_look_s {
    pc_conn_t *c;
    size_t last;
} cq_look_t;

static int cq_no_dip(void *arg)
{
    cq_look_t *l = arg;
    size_t q = pc_conn_send_queued(l->c);
    int ok = q >= l->last;
    l->last = q;
    return ok;
}

static void send_queued_other_thread_no_dip(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.send_queue_limit = SIZE_MAX; /* nothing refused */
    start_server(&cfg);
    shim_sock_t s = connect_nonreader();
    pc_conn_id_t id = wait_open_id(1);
    cq_look_t look = {atomic_load(&g_last_conn), 0};
    fill_until_held(id);
    sampler_t sp;
    sampler_start(&sp, cq_no_dip, &look);
    static const char b[64];
    for (int i = 0; i < 40000; i++) {
        assert_int_equal(pc_server_send_to(g_srv, id, b, sizeof b), 0);
        if (i % 16 == 0) shim_sleep_ms(0); /* let the kicks take them */
    }
    assert_int_equal(sampler_stop(&sp), 0);
    assert_int_equal(pc_server_abort_id(g_srv, id), 0);
    shim_close(s);
}
#endif

/* ---- 3. post_to: pause and resume a connection from another thread */

static atomic_int g_post_runs, g_post_null;

static void post_pause(pc_conn_t *c, void *arg)
{
    (void)arg;
    assert_non_null(c);
    assert_int_equal(pc_conn_pause_read(c), 0);
    atomic_fetch_add(&g_post_runs, 1);
}

static void post_resume(pc_conn_t *c, void *arg)
{
    (void)arg;
    assert_non_null(c);
    assert_int_equal(pc_conn_resume_read(c), 0);
    /* every pc_conn_* call is legal here: send from the strand */
    assert_int_equal(pc_conn_send(c, NULL, 1), PC_EINVAL); /* nothing to copy from */
    assert_int_equal(pc_conn_sendv(c, NULL, 1), PC_EINVAL);
    assert_int_equal(pc_conn_send(c, NULL, 0), 0);
    assert_int_equal(pc_conn_send(c, "R", 1), 0);
    atomic_fetch_add(&g_post_runs, 1);
}

static void post_to_pause_resume(void **state)
{
    (void)state;
    atomic_store(&g_post_runs, 0);
    pc_conn_id_t id;
    shim_sock_t s = start_one_client(&id);
    expect_echo(s, "before");
    assert_int_equal(pc_server_post_to(g_srv, id, post_pause, NULL), 0);
    WAIT_FOR(atomic_load(&g_post_runs) == 1, 5000);
    assert_int_equal(atomic_load(&g_post_runs), 1);
    /* paused: nothing is read, so nothing echoes */
    assert_int_equal(shim_send_all(s, "paused", 6), 0);
    char buf[16];
    shim_set_timeout(s, 400);
    assert_int_equal(shim_recv_some(s, buf, sizeof buf), -2); /* timeout */
    shim_set_timeout(s, 10000);
    assert_int_equal(pc_server_post_to(g_srv, id, post_resume, NULL), 0);
    /* the function's "R" first, then the echo of what waited */
    assert_int_equal(shim_recv_exact(s, buf, 7), 7);
    assert_memory_equal(buf, "Rpaused", 7);
    assert_int_equal(atomic_load(&g_post_runs), 2);
    expect_echo(s, "after");
    shim_close(s);
}

/* A posted function pauses and resumes at once while the connection waits
 * for input (its receive pending): nothing changes, reading goes on with
 * that same receive (a second one, started for the resume while the first
 * was pending, was never given back: the closed connection stayed
 * unreleased, and the stop said so after waiting for it). */
static void post_pause_resume_at_once(pc_conn_t *c, void *arg)
{
    (void)arg;
    assert_non_null(c);
    assert_int_equal(pc_conn_pause_read(c), 0);
    assert_int_equal(pc_conn_resume_read(c), 0);
    atomic_fetch_add(&g_post_runs, 1);
}

static void post_to_pause_resume_at_once(void **state)
{
    (void)state;
    atomic_store(&g_post_runs, 0);
    pc_conn_id_t id;
    shim_sock_t s = start_one_client(&id);
    expect_echo(s, "before");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pc_server_post_to(g_srv, id, post_pause_resume_at_once, NULL), 0);
        WAIT_FOR(atomic_load(&g_post_runs) == i + 1, 5000);
        assert_int_equal(atomic_load(&g_post_runs), i + 1);
    }
    expect_echo(s, "after");
    shim_close(s);
    WAIT_FOR(stats().active == 0, 5000);
    assert_int_equal(stats().active, 0);
    log_capture_begin("not released");
    assert_int_equal(pc_server_stop(g_srv, 2000), 0);
    log_capture_end();
    pc_server_destroy(g_srv);
    g_srv = NULL;
    if (g_nstart_lines) fail_msg("%s", g_start_lines[0]);
}

/* A post queued before the connection closed runs with c == NULL. */
static void post_null(pc_conn_t *c, void *arg)
{
    int *flag = arg;
    if (!c) atomic_fetch_add(&g_post_null, 1);
    free(flag);
}

static void abort_after_post(pc_conn_t *c, const void *data, size_t len)
{
    (void)data;
    (void)len;
    int *arg = malloc(sizeof *arg); /* freed by post_null whatever happens */
    assert_int_equal(pc_server_post_to(pc_conn_server(c), pc_conn_id(c), post_null, arg), 0);
    pc_conn_abort(c);
    /* closed now: the id is stale for every later post */
    assert_int_equal(pc_server_post_to(pc_conn_server(c), pc_conn_id(c), post_null, NULL),
                     PC_ENOTCONN);
}

static void post_to_after_close_gets_null(void **state)
{
    (void)state;
    atomic_store(&g_post_null, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.cb.on_data = abort_after_post;
    start_server(&cfg);
    shim_sock_t s = connect_server(10000);
    assert_int_equal(shim_send_all(s, "x", 1), 0);
    WAIT_FOR(atomic_load(&g_post_null) == 1, 5000);
    assert_int_equal(atomic_load(&g_post_null), 1);
    shim_close(s);
}

/* An empty send from another thread than the connection's (by pointer or by
 * id): 0 while it is open, PC_ENOTCONN once its close was asked for, as for
 * a send with bytes (the state is the strand's: it is read under the
 * connection's lock). */
static void empty_send_from_other_thread(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.threads = 1; /* worker_hold holds the connection's worker */
    start_server(&cfg);
    shim_sock_t s = connect_server(10000);
    WAIT_FOR(atomic_load(&g_last_conn) != NULL, 5000);
    pc_conn_t *c = atomic_load(&g_last_conn);
    assert_non_null(c);
    pc_conn_id_t id = pc_conn_id(c);
    assert_int_equal(pc_conn_sendv(c, NULL, 0), 0);
    assert_int_equal(pc_conn_send(c, "", 0), 0);
    assert_int_equal(pc_server_send_to(g_srv, id, "", 0), 0);
    assert_int_equal(pc_server_sendv_to(g_srv, id, NULL, 0), 0);
    worker_hold(g_srv);
    assert_int_equal(pc_conn_close(c), 0); /* asked; done once the worker runs */
    assert_int_equal(pc_conn_sendv(c, NULL, 0), PC_ENOTCONN);
    assert_int_equal(pc_conn_send(c, "x", 1), PC_ENOTCONN);
    /* by id too: an empty send is answered as a send with bytes */
    assert_int_equal(pc_server_send_to(g_srv, id, "", 0), PC_ENOTCONN);
    assert_int_equal(pc_server_sendv_to(g_srv, id, NULL, 0), PC_ENOTCONN);
    assert_int_equal(pc_server_send_to(g_srv, id, "x", 1), PC_ENOTCONN);
    worker_release();
    shim_close(s);
    WAIT_FOR(atomic_load(&g_closes) == 1, 5000);
    assert_int_equal(atomic_load(&g_closes), 1);
}

/* From the strand, once a close was asked for: a second pc_conn_close is a
 * no-op (0), pause, resume and the header timeout are refused; once an
 * abort closed it, a second abort and a close are refused too. The close
 * still ends in a FIN, the abort in a reset. */
static atomic_int g_sac_done;

static void sac_on_data(pc_conn_t *c, const void *data, size_t len)
{
    if (len >= 5 && memcmp(data, "close", 5) == 0) {
        assert_int_equal(pc_conn_close(c), 0);
        assert_int_equal(pc_conn_close(c), 0); /* closing already */
        assert_int_equal(pc_conn_pause_read(c), PC_ENOTCONN);
        assert_int_equal(pc_conn_resume_read(c), PC_ENOTCONN);
        assert_int_equal(pc_conn_set_header_timeout(c, 100), PC_ENOTCONN);
        atomic_store(&g_sac_done, 1);
    } else {
        assert_int_equal(pc_conn_abort(c), 0);
        assert_int_equal(pc_conn_abort(c), PC_ENOTCONN);
        assert_int_equal(pc_conn_close(c), PC_ENOTCONN);
        atomic_store(&g_sac_done, 2);
    }
}

static void strand_calls_after_close(void **state)
{
    (void)state;
    atomic_store(&g_sac_done, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.cb.on_data = sac_on_data;
    start_server(&cfg);
    shim_sock_t s = connect_server(10000);
    assert_int_equal(shim_send_all(s, "close", 5), 0);
    shim_set_timeout(s, 5000);
    size_t n;
    assert_int_equal(shim_wait_close(s, &n), 0); /* FIN */
    shim_close(s);
    /* the FIN, like the reset below, can reach us while on_data's checks
     * still run (and on_close with it, from within the call) */
    WAIT_FOR(atomic_load(&g_sac_done) == 1, 5000);
    assert_int_equal(atomic_load(&g_sac_done), 1);
    WAIT_FOR(atomic_load(&g_closes) == 1, 5000);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_LOCAL]), 1);
    s = connect_server(10000);
    assert_int_equal(shim_send_all(s, "abort", 5), 0);
    shim_set_timeout(s, 5000);
    assert_int_equal(shim_wait_reset(s, &n), -1); /* reset */
    shim_close(s);
    WAIT_FOR(atomic_load(&g_sac_done) == 2, 5000);
    assert_int_equal(atomic_load(&g_sac_done), 2);
    WAIT_FOR(atomic_load(&g_closes) == 2, 5000);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_ABORT]), 1);
}

/* ---- 4. stale ids for every by-id call */

static void post_never(pc_conn_t *c, void *arg)
{
    (void)c;
    (void)arg;
    fail_msg("post_to ran for a stale id");
}

/* Every by-id call refuses id with PC_ENOTCONN: it names no open
 * connection (post_never fails the test if a post by it ever runs). */
static void expect_id_refused(pc_conn_id_t id)
{
    pc_buf_t b;
    b.base = (void *)"x";
    b.len = 1;
    int64_t rc[6]; /* in this order: an initialiser list leaves it open */
    rc[0] = pc_server_send_to(g_srv, id, "x", 1);
    rc[1] = pc_server_sendv_to(g_srv, id, &b, 1);
    rc[2] = pc_server_send_queued(g_srv, id);
    rc[3] = pc_server_post_to(g_srv, id, post_never, NULL);
    rc[4] = pc_server_close_id(g_srv, id);
    rc[5] = pc_server_abort_id(g_srv, id);
    static const char *const calls[6] = {"send_to", "sendv_to", "send_queued",
                                         "post_to", "close_id", "abort_id"};
    for (int i = 0; i < 6; i++)
        if (rc[i] != PC_ENOTCONN)
            fail_msg("pc_server_%s(%#llx): %lld, not PC_ENOTCONN", calls[i], (unsigned long long)id,
                     (long long)rc[i]);
}

static void post_sendv_empty_entry(pc_conn_t *c, void *arg)
{
    (void)arg;
    if (!c) return;
    pc_buf_t b[3];
    b[0].base = NULL;
    b[0].len = 0;
    b[1].base = (void *)"efgh";
    b[1].len = 4;
    b[2].base = NULL;
    b[2].len = 0;
    assert_int_equal(pc_conn_sendv(c, b, 3), 0);
}

static void stale_ids_every_call(void **state)
{
    (void)state;
    pc_conn_id_t id;
    shim_sock_t s = start_one_client(&id);
    pc_conn_id_t ids[8];
    assert_int_equal(pc_server_conn_ids(g_srv, ids, 8), 1);
    assert_true(ids[0] == id);
    shim_close(s);
    WAIT_FOR(atomic_load(&g_closes) == 1, 5000);
    assert_int_equal(atomic_load(&g_closes), 1);
    /* a new connection may take the same slot: the old id must stay stale */
    shim_sock_t s2 = connect_server(10000);
    pc_conn_id_t id2 = wait_open_id(2);
    assert_true(id2 != id);
    pc_conn_id_t bad[] = {id, 0, id ^ ((uint64_t)7 << 32), ((uint64_t)1 << 32) | 999999u};
    pc_buf_t b = {0};
    b.base = (void *)"x";
    b.len = 1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_id_refused(bad[i]);
    assert_int_equal(pc_server_conn_ids(g_srv, ids, 8), 1);
    assert_true(ids[0] == id2);
    /* nothing to copy from: refused before the id is looked at */
    assert_int_equal(pc_server_send_to(g_srv, id2, NULL, 1), PC_EINVAL);
    assert_int_equal(pc_server_sendv_to(g_srv, id2, NULL, 1), PC_EINVAL);
    assert_int_equal(pc_server_send_to(g_srv, id2, NULL, 0), 0);
    /* no server: refused before anything is looked at, by every call */
    assert_int_equal(pc_server_send_to(NULL, id2, "x", 1), PC_EINVAL);
    assert_int_equal(pc_server_sendv_to(NULL, id2, &b, 1), PC_EINVAL);
    assert_int_equal(pc_server_close_id(NULL, id2), PC_EINVAL);
    assert_int_equal(pc_server_abort_id(NULL, id2), PC_EINVAL);
    assert_int_equal(pc_server_send_queued(NULL, id2), PC_EINVAL);
    assert_int_equal(pc_server_post_to(NULL, id2, post_never, NULL), PC_EINVAL);
    /* nothing to run: refused, whatever the id */
    assert_int_equal(pc_server_post_to(g_srv, id2, NULL, NULL), PC_EINVAL);
    assert_int_equal(pc_server_post_to(g_srv, id, NULL, NULL), PC_EINVAL);
    /* the live one still works, gather form included; an empty buffer may
     * have no base (nothing is copied from it: the sanitizer build checks) */
    pc_buf_t three[3];
    three[0].base = (void *)"ab";
    three[0].len = 2;
    three[1].base = NULL;
    three[1].len = 0;
    three[2].base = (void *)"cd";
    three[2].len = 2;
    assert_int_equal(pc_server_sendv_to(g_srv, id2, three, 3), 0);
    char buf[8];
    assert_int_equal(shim_recv_exact(s2, buf, 4), 4);
    assert_memory_equal(buf, "abcd", 4);
    /* and from the strand (pc_conn_sendv) */
    assert_int_equal(pc_server_post_to(g_srv, id2, post_sendv_empty_entry, NULL), 0);
    assert_int_equal(shim_recv_exact(s2, buf, 4), 4);
    assert_memory_equal(buf, "efgh", 4);
    shim_close(s2);
}

/* Gather lengths whose sum passes SIZE_MAX are refused (PC_EINVAL) before
 * anything is copied, by id and from the strand: the sum used to wrap, so
 * a chunk for the wrapped (small) total was taken and the copy ran past
 * it. Where pc_buf_t.len is narrower than size_t (Windows) the sum of at
 * most UINT_MAX lengths cannot wrap. */
static atomic_int g_wrap_rc;

static void wrap_bufs(pc_buf_t b[2])
{
    static char byte[8];
    size_t big = SIZE_MAX - 2;
    b[0].base = byte;
    b[0].len = big;
    b[1].base = byte;
    b[1].len = 4; /* the sum wraps to 1 */
}

static void post_sendv_wrap(pc_conn_t *c, void *arg)
{
    (void)arg;
    if (!c) return;
    pc_buf_t b[2];
    wrap_bufs(b);
    atomic_store(&g_wrap_rc, pc_conn_sendv(c, b, 2));
}

static void sendv_lengths_wrap_refused(void **state)
{
    (void)state;
    if (sizeof(((pc_buf_t *)0)->len) < sizeof(size_t)) skip();
    pc_conn_id_t id;
    shim_sock_t s = start_one_client(&id);
    pc_buf_t b[2];
    wrap_bufs(b);
    assert_int_equal(pc_server_sendv_to(g_srv, id, b, 2), PC_EINVAL);
    atomic_store(&g_wrap_rc, 1);
    assert_int_equal(pc_server_post_to(g_srv, id, post_sendv_wrap, NULL), 0);
    WAIT_FOR(atomic_load(&g_wrap_rc) != 1, 5000);
    assert_int_equal(atomic_load(&g_wrap_rc), PC_EINVAL);
    assert_int_equal(pc_server_send_queued(g_srv, id), 0);
    expect_echo(s, "still open");
    shim_close(s);
}

/* ---- 5. on_sent order */

#define EV_MAX 64
static char g_ev[EV_MAX];
static atomic_int g_nev;
static atomic_size_t g_sent_queued; /* pc_conn_send_queued seen in on_sent */

static void ev(char e)
{
    int i = atomic_fetch_add(&g_nev, 1);
    if (i < EV_MAX) g_ev[i] = e;
}

static void sent_on_open(pc_conn_t *c)
{
    ev('o');
    atomic_store(&g_last_id, pc_conn_id(c));
    atomic_fetch_add(&g_opens, 1);
    /* more than the kernel takes at once (a 4 MiB send buffer and the
     * client's small receive buffer): the queue drains in several sends */
    size_t n = 16u << 20;
    char *big = malloc(n);
    memset(big, 'b', n);
    assert_int_equal(pc_conn_send(c, big, n), 0);
    free(big);
}

static void sent_on_data(pc_conn_t *c, const void *data, size_t len)
{
    ev('d');
    pc_conn_send(c, data, len);
}

static void sent_on_drain(pc_conn_t *c)
{
    (void)c;
    ev('w');
}

static void sent_on_sent(pc_conn_t *c)
{
    ev('s');
    atomic_store(&g_sent_queued, pc_conn_send_queued(c));
}

static void sent_on_close(pc_conn_t *c, pc_close_reason_t r, int err)
{
    (void)c;
    (void)r;
    (void)err;
    ev('c');
    atomic_fetch_add(&g_closes, 1);
}

static void on_sent_order(void **state)
{
    (void)state;
    atomic_store(&g_nev, 0);
    memset(g_ev, 0, sizeof g_ev);
    atomic_store(&g_sent_queued, 99);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.cb.on_open = sent_on_open;
    cfg.cb.on_data = sent_on_data;
    cfg.cb.on_drain = sent_on_drain;
    cfg.cb.on_sent = sent_on_sent;
    cfg.cb.on_close = sent_on_close;
    cfg.send_high_water = 1u << 20;
    cfg.send_low_water = 256u << 10;
    start_server(&cfg);
    shim_sock_t s = connect_server(20000);
    shim_set_rcvbuf(s, 64u << 10);
    WAIT_FOR(atomic_load(&g_opens) == 1, 5000);
    shim_sleep_ms(200);                       /* the queue stays non-empty: nothing is read yet */
    assert_int_equal(atomic_load(&g_nev), 1); /* 'o' only: no on_sent yet */
    size_t n = 16u << 20;
    char *got = malloc(n);
    assert_int_equal(shim_recv_exact(s, got, n), n);
    free(got);
    WAIT_FOR(atomic_load(&g_nev) >= 3, 5000);
    /* open, drain (below low water), then sent (queue empty) once */
    assert_int_equal(atomic_load(&g_nev), 3);
    assert_memory_equal(g_ev, "ows", 3);
    assert_int_equal(atomic_load(&g_sent_queued), 0);
    /* a small echo: data, then sent */
    expect_echo(s, "ping");
    WAIT_FOR(atomic_load(&g_nev) >= 5, 5000);
    assert_int_equal(atomic_load(&g_nev), 5);
    assert_memory_equal(g_ev, "owsds", 5);
    shim_close(s);
    WAIT_FOR(atomic_load(&g_closes) == 1, 5000);
    assert_int_equal(atomic_load(&g_nev), 6);
    assert_memory_equal(g_ev, "owsdsc", 6);
}

/* ---- 5b. bytes sent by id before a close from the strand, and on_sent */

/* An application thread sends XSENDER_MAX bytes by id when asked (the
 * harness's xsender); the connection's callback waits until that send
 * returned, then closes gracefully: the bytes were accepted before the
 * close, so they go out before the FIN (they were dropped: the close sent
 * the FIN with the connection's own queue empty, and the kick that carried
 * the inbox found the FIN sent). */
static atomic_int g_xc_rc;

static void xc_on_data(pc_conn_t *c, const void *data, size_t len)
{
    (void)data;
    (void)len;
    atomic_store(&g_xc_rc, xsender_send(c, XSENDER_MAX));
    pc_conn_close(c);
}

static void close_keeps_bytes_sent_by_id(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.cb.on_data = xc_on_data;
    start_server(&cfg);
    xsender_start();
    for (int round = 0; round < 5; round++) {
        shim_sock_t s = connect_server(10000);
        assert_int_equal(shim_send_all(s, "x", 1), 0);
        size_t got = 0;
        int end = shim_wait_close(s, &got);
        shim_close(s);
        if (got != XSENDER_MAX || end != 0)
            print_message("round %d: send_to %s, %llu of %d bytes, then %s\n", round,
                          pc_err_name(atomic_load(&g_xc_rc)), (unsigned long long)got, XSENDER_MAX,
                          end == 0    ? "FIN"
                          : end == -1 ? "reset"
                                      : "timeout");
        assert_int_equal(atomic_load(&g_xc_rc), 0);
        assert_int_equal(got, XSENDER_MAX);
        assert_int_equal(end, 0);
    }
    xsender_stop();
    WAIT_FOR(stats().send_queued_bytes == 0, 5000);
    assert_int_equal(stats().send_queued_bytes, 0);
}

/* Bytes sent by id and functions posted to a connection leave in the
 * order they were given from one thread: send "a", post (sends "b"), send
 * the middle, post (sends "d"), send "e" reach the peer as "ab...de" (the
 * worker used to move every waiting byte into the send queue before it ran
 * the posts: "a...ebd"). The middle is one byte (it joins the tail of what
 * waits) or 48 KiB (a buffer of its own). The first round queues all of it
 * while the worker is held, so it is all waiting when the worker takes it;
 * the others race the worker. Then a posted close: the byte sent after it
 * was accepted before the close ran, and leaves before the FIN. */
#define ORD_BIG (48u << 10)

static void sends_and_posts_keep_order(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.threads = 1;
    start_server(&cfg);
    shim_sock_t s = connect_server(10000);
    pc_conn_id_t id = wait_open_id(1);
    static char big[ORD_BIG], got[ORD_BIG + 4];
    memset(big, 'c', sizeof big);
    int bad = 0;
    for (int round = 0; round < 100; round++) {
        size_t mid = round % 2 ? ORD_BIG : 1;
        if (round == 0) worker_hold(g_srv);
        assert_int_equal(pc_server_send_to(g_srv, id, "a", 1), 0);
        assert_int_equal(pc_server_post_to(g_srv, id, post_send_str, "b"), 0);
        assert_int_equal(pc_server_send_to(g_srv, id, big, mid), 0);
        assert_int_equal(pc_server_post_to(g_srv, id, post_send_str, "d"), 0);
        assert_int_equal(pc_server_send_to(g_srv, id, "e", 1), 0);
        if (round == 0) worker_release();
        assert_int_equal(shim_recv_exact(s, got, mid + 4), mid + 4);
        int ok = got[0] == 'a' && got[1] == 'b' && got[mid + 2] == 'd' && got[mid + 3] == 'e' &&
                 memcmp(got + 2, big, mid) == 0;
        if (!ok && bad++ == 0)
            print_message("round %d (middle %llu bytes): got %c%c..%c%c\n", round,
                          (unsigned long long)mid, got[0], got[1], got[mid + 2], got[mid + 3]);
    }
    assert_int_equal(bad, 0);
    worker_hold(g_srv);
    assert_int_equal(pc_server_send_to(g_srv, id, "x", 1), 0);
    assert_int_equal(pc_server_post_to(g_srv, id, post_close, NULL), 0);
    assert_int_equal(pc_server_send_to(g_srv, id, "y", 1), 0);
    worker_release();
    assert_int_equal(shim_recv_exact(s, got, 2), 2);
    assert_memory_equal(got, "xy", 2);
    size_t more = 0;
    assert_int_equal(shim_wait_close(s, &more), 0); /* a FIN, nothing after it */
    assert_int_equal(more, 0);
    shim_close(s);
    WAIT_FOR(stats().send_queued_bytes == 0, 5000);
    assert_int_equal(stats().send_queued_bytes, 0);
}

/* From the connection's own callback the by-id calls act at once, and a
 * function posted there runs after the callback returns (documented):
 * post_to(own id, fn sending "b") then send_to(own id, "c") sends "cb". */
static void own_order_data(pc_conn_t *c, const void *data, size_t len)
{
    (void)data;
    (void)len;
    pc_server_t *s = pc_conn_server(c);
    assert_int_equal(pc_server_post_to(s, pc_conn_id(c), post_send_str, "b"), 0);
    assert_int_equal(pc_server_send_to(s, pc_conn_id(c), "c", 1), 0);
}

static void own_callback_by_id_acts_at_once(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.cb.on_data = own_order_data;
    start_server(&cfg);
    shim_sock_t s = connect_server(10000);
    char got[2];
    for (int round = 0; round < 10; round++) {
        assert_int_equal(shim_send_all(s, "x", 1), 0);
        assert_int_equal(shim_recv_exact(s, got, 2), 2);
        assert_memory_equal(got, "cb", 2);
    }
    shim_close(s);
}

/* on_sent means every byte queued so far has been handed to the kernel,
 * bytes sent by id included. The callback queues a byte of its own, then
 * has another thread send three by id and waits for that send to return
 * (they wait in the inbox for the kick): on_sent must not run until those
 * have left too (it ran as soon as the connection's own queue was empty,
 * with the three still waiting). Nothing else is sent, so on_sent must see
 * nothing queued, once per round. */
static atomic_int g_os_bad, g_os_runs;

static void os_on_data(pc_conn_t *c, const void *data, size_t len)
{
    (void)data;
    (void)len;
    assert_int_equal(pc_conn_send(c, "x", 1), 0);
    assert_int_equal(xsender_send(c, 3), 0);
}

static void os_on_sent(pc_conn_t *c)
{
    atomic_fetch_add(&g_os_runs, 1);
    if (pc_conn_send_queued(c)) atomic_fetch_add(&g_os_bad, 1);
}

static void on_sent_counts_sends_by_id(void **state)
{
    (void)state;
    atomic_store(&g_os_bad, 0);
    atomic_store(&g_os_runs, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.cb.on_data = os_on_data;
    cfg.cb.on_sent = os_on_sent;
    start_server(&cfg);
    xsender_start();
    shim_sock_t s = connect_server(10000);
    for (int round = 0; round < 20; round++) {
        char got[4];
        assert_int_equal(shim_send_all(s, "g", 1), 0);
        assert_int_equal(shim_recv_exact(s, got, sizeof got), sizeof got);
        assert_memory_equal(got, "xzzz", 4);
        WAIT_FOR(atomic_load(&g_os_runs) > round, 5000);
    }
    shim_close(s);
    xsender_stop();
    if (atomic_load(&g_os_bad) || atomic_load(&g_os_runs) != 20)
        print_message("on_sent ran %d times in 20 rounds, %d with bytes sent by id queued\n",
                      atomic_load(&g_os_runs), atomic_load(&g_os_bad));
    assert_int_equal(atomic_load(&g_os_bad), 0);
    assert_int_equal(atomic_load(&g_os_runs), 20); /* once per round */
}

/* ---- 6. per-connection timer: fires, re-arms, cancelled on close */

static atomic_int g_ticks;
static atomic_int g_late_ticks; /* a timer that must never fire */

static void tick(pc_conn_t *c)
{
    int n = atomic_fetch_add(&g_ticks, 1) + 1;
    assert_int_equal(pc_conn_send(c, "T", 1), 0);
    if (n < 3) assert_int_equal(pc_conn_timer(c, 50, tick), 0);
}

static void late_tick(pc_conn_t *c)
{
    (void)c;
    atomic_fetch_add(&g_late_ticks, 1);
}

static void timer_on_data(pc_conn_t *c, const void *data, size_t len)
{
    /* "t": tick three times; "l": a timer 500 ms out; "x": arm and cancel */
    for (size_t i = 0; i < len; i++) {
        char k = ((const char *)data)[i];
        if (k == 't') assert_int_equal(pc_conn_timer(c, 50, tick), 0);
        if (k == 'l') assert_int_equal(pc_conn_timer(c, 500, late_tick), 0);
        if (k == 'x') {
            assert_int_equal(pc_conn_timer(c, 100, late_tick), 0);
            assert_int_equal(pc_conn_timer(c, 0, NULL), 0);
            assert_int_equal(pc_conn_send(c, "X", 1), 0);
        }
    }
}

static void conn_timer_fires_and_cancelled(void **state)
{
    (void)state;
    atomic_store(&g_ticks, 0);
    atomic_store(&g_late_ticks, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.cb.on_data = timer_on_data;
    start_server(&cfg);
    /* other threads may not arm it */
    shim_sock_t s = connect_server(10000);
    assert_int_equal(shim_send_all(s, "t", 1), 0);
    char buf[4];
    assert_int_equal(shim_recv_exact(s, buf, 3), 3);
    assert_memory_equal(buf, "TTT", 3);
    assert_int_equal(atomic_load(&g_ticks), 3);
    /* arm then cancel: never fires */
    assert_int_equal(shim_send_all(s, "x", 1), 0);
    assert_int_equal(shim_recv_exact(s, buf, 1), 1);
    assert_int_equal(buf[0], 'X');
    /* armed, then the peer closes: cancelled with the connection */
    shim_sock_t s2 = connect_server(10000);
    assert_int_equal(shim_send_all(s2, "l", 1), 0);
    shim_sleep_ms(50);
    shim_close(s2);
    WAIT_FOR(atomic_load(&g_closes) == 1, 5000);
    assert_int_equal(atomic_load(&g_closes), 1);
    shim_sleep_ms(800);
    assert_int_equal(atomic_load(&g_late_ticks), 0);
    assert_int_equal(atomic_load(&g_ticks), 3);
    /* armed and the server stops: cancelled too */
    assert_int_equal(shim_send_all(s, "l", 1), 0);
    shim_sleep_ms(50);
    pc_server_stop(g_srv, 2000);
    shim_sleep_ms(600);
    assert_int_equal(atomic_load(&g_late_ticks), 0);
    shim_close(s);
}

/* ---- 7. server timers: repeat, one-shot, cancel, cancelled at stop */

static atomic_int g_rep, g_once, g_never;
static _Atomic int64_t g_self_id;

static void st_rep(pc_server_t *s, void *arg)
{
    (void)s;
    (void)arg;
    atomic_fetch_add(&g_rep, 1);
}

static void st_once(pc_server_t *s, void *arg)
{
    (void)s;
    int *p = arg;
    assert_int_equal(*p, 42);
    atomic_fetch_add(&g_once, 1);
}

/* A timer armed now, due in 10 ms, runs once with its argument: timers
 * still work (after whatever the test did to the wheels). */
static void expect_timer_runs(void)
{
    atomic_store(&g_once, 0);
    static int answer = 42;
    assert_true(pc_server_timer(g_srv, 10, 0, st_once, &answer) > 0);
    WAIT_FOR(atomic_load(&g_once) == 1, 5000);
    assert_int_equal(atomic_load(&g_once), 1);
}

static void st_never(pc_server_t *s, void *arg)
{
    (void)s;
    (void)arg;
    atomic_fetch_add(&g_never, 1);
}

/* cancels itself on its third run */
static void st_self(pc_server_t *s, void *arg)
{
    atomic_int *n = arg;
    if (atomic_fetch_add(n, 1) + 1 == 3)
        assert_int_equal(pc_server_timer_cancel(s, atomic_load(&g_self_id)), 0);
}

static void server_timers(void **state)
{
    (void)state;
    atomic_store(&g_rep, 0);
    atomic_store(&g_once, 0);
    atomic_store(&g_never, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    assert_int_equal(pc_server_timer(g_srv, 0, 1, st_rep, NULL), PC_EINVAL);
    assert_int_equal(pc_server_timer(g_srv, 10, 0, NULL, NULL), PC_EINVAL);
    static int answer = 42;
    int64_t once = pc_server_timer(g_srv, 30, 0, st_once, &answer);
    assert_true(once > 0);
    int64_t rep = pc_server_timer(g_srv, 20, 1, st_rep, NULL);
    assert_true(rep > 0 && rep != once);
    static atomic_int self_runs;
    atomic_store(&self_runs, 0);
    atomic_store(&g_self_id, 0);
    /* the id is stored before the first run can look for it (100 ms) */
    int64_t self = pc_server_timer(g_srv, 100, 1, st_self, &self_runs);
    assert_true(self > 0);
    atomic_store(&g_self_id, self);
    int64_t never = pc_server_timer(g_srv, 60000, 0, st_never, NULL);
    assert_true(never > 0);
    WAIT_FOR(atomic_load(&g_once) == 1 && atomic_load(&g_rep) >= 5, 5000);
    assert_int_equal(atomic_load(&g_once), 1);
    assert_true(atomic_load(&g_rep) >= 5);
    /* a one-shot timer that ran is gone */
    assert_int_equal(pc_server_timer_cancel(g_srv, once), PC_ENOENT);
    int rc = pc_server_timer_cancel(g_srv, rep);
    assert_true(rc == 0 || rc == PC_EBUSY);
    shim_sleep_ms(100); /* a run in progress at the cancel ends */
    int after = atomic_load(&g_rep);
    shim_sleep_ms(300);
    assert_int_equal(atomic_load(&g_rep), after);
    assert_int_equal(pc_server_timer_cancel(g_srv, rep), PC_ENOENT);
    assert_int_equal(pc_server_timer_cancel(g_srv, 987654), PC_ENOENT);
    WAIT_FOR(atomic_load(&self_runs) >= 3, 5000);
    shim_sleep_ms(400);
    assert_int_equal(atomic_load(&self_runs), 3);
    /* stop cancels what is left; no timer after it */
    int64_t rep2 = pc_server_timer(g_srv, 20, 1, st_rep, NULL);
    assert_true(rep2 > 0);
    assert_int_equal(pc_server_stop(g_srv, 1000), 0);
    after = atomic_load(&g_rep);
    shim_sleep_ms(200);
    assert_int_equal(atomic_load(&g_rep), after);
    assert_int_equal(atomic_load(&g_never), 0);
    assert_int_equal(pc_server_timer(g_srv, 10, 0, st_never, NULL), PC_ENOTCONN);
    assert_int_equal(pc_server_timer_cancel(g_srv, never), PC_ENOENT);
}

/* A timer cancelled while it runs on a worker: the cancel and every one after
 * it answer PC_EBUSY until that run returns, then PC_ENOENT, so retrying
 * until not PC_EBUSY is a wait for the run (a retry used to answer
 * PC_ENOENT at once, and a caller freeing arg then freed it under fn). */
static atomic_int g_slow_in, g_slow_go, g_slow_done;

static void st_slow(pc_server_t *s, void *arg)
{
    (void)s;
    (void)arg;
    atomic_store(&g_slow_in, 1);
    while (!atomic_load(&g_slow_go))
        shim_sleep_ms(1);
    shim_sleep_ms(50);
    atomic_store(&g_slow_done, 1);
}

static void timer_cancel_waits_for_run(void **state)
{
    (void)state;
    atomic_store(&g_slow_in, 0);
    atomic_store(&g_slow_go, 0);
    atomic_store(&g_slow_done, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    int64_t id = pc_server_timer(g_srv, 10, 1, st_slow, NULL);
    assert_true(id > 0);
    WAIT_FOR(atomic_load(&g_slow_in), 5000);
    int first = pc_server_timer_cancel(g_srv, id);
    int again = pc_server_timer_cancel(g_srv, id); /* still running */
    atomic_store(&g_slow_go, 1);                   /* (before any assert: the stop waits for it) */
    assert_int_equal(first, PC_EBUSY);
    assert_int_equal(again, PC_EBUSY);
    int rc, tries = 0;
    while ((rc = pc_server_timer_cancel(g_srv, id)) == PC_EBUSY && tries++ < 5000)
        shim_sleep_ms(1);
    assert_int_equal(rc, PC_ENOENT);
    assert_int_equal(atomic_load(&g_slow_done), 1); /* the run was over */
}

/* Server timers never run early: 2000 one-shot timers of 0-99 ms, each
 * timed from before its pc_server_timer call. (The deadline was now + ms
 * on a millisecond clock that truncates: about 3% ran up to 0.9 ms early.) */
#define NE_TIMERS 2000
typedef struct ne_s {
    uint64_t armed_ns;
    unsigned ms;
    _Atomic uint64_t ran_ns;
} ne_t;
static ne_t g_ne[NE_TIMERS];
static atomic_int g_ne_runs;

static void ne_fire(pc_server_t *s, void *arg)
{
    (void)s;
    ne_t *t = arg;
    atomic_store(&t->ran_ns, pc__now_ns());
    atomic_fetch_add(&g_ne_runs, 1);
}

static void server_timer_never_early(void **state)
{
    (void)state;
    atomic_store(&g_ne_runs, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    for (int i = 0; i < NE_TIMERS; i++) {
        g_ne[i].ms = (unsigned)(i * 37 % 100);
        atomic_store(&g_ne[i].ran_ns, 0);
        g_ne[i].armed_ns = pc__now_ns();
        assert_true(pc_server_timer(g_srv, g_ne[i].ms, 0, ne_fire, &g_ne[i]) > 0);
        if (i % 100 == 99) shim_sleep_ms(1); /* spread over the clock's milliseconds */
    }
    WAIT_FOR(atomic_load(&g_ne_runs) == NE_TIMERS, 10000);
    assert_int_equal(atomic_load(&g_ne_runs), NE_TIMERS);
    int early = 0;
    uint64_t worst = 0;
    for (int i = 0; i < NE_TIMERS; i++) {
        uint64_t took = atomic_load(&g_ne[i].ran_ns) - g_ne[i].armed_ns;
        uint64_t want = (uint64_t)g_ne[i].ms * 1000000u;
        if (took < want) {
            early++;
            if (want - took > worst) worst = want - took;
        }
    }
    if (early)
        print_message("%d of %d timers ran early, by up to %llu us\n", early, NE_TIMERS,
                      (unsigned long long)(worst / 1000));
    assert_int_equal(early, 0);
}

/* Cancelling a timer costs the same whatever its age among many live
 * ones: with 50k timers armed (one minute out), cancelling the newest 500
 * takes about as long as cancelling the oldest 500. (Cancel walked the list
 * of live timers under the lock the workers need to run theirs: ~0.8 ms
 * per cancel of a recent timer among 100k.) Best of five batches each, so
 * a preempted batch does not decide; a ratio, not a time. */
#define CC_TIMERS 50000
#define CC_BATCH  100

static uint64_t cancel_batch_ns(const int64_t *ids, int from, int step)
{
    uint64_t t0 = pc__now_ns();
    for (int k = 0; k < CC_BATCH; k++)
        assert_int_equal(pc_server_timer_cancel(g_srv, ids[from + k * step]), 0);
    return pc__now_ns() - t0;
}

static void server_timer_cancel_cost_flat(void **state)
{
    (void)state;
    atomic_store(&g_never, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    int64_t *ids = malloc(CC_TIMERS * sizeof *ids);
    assert_non_null(ids);
    for (int i = 0; i < CC_TIMERS; i++) {
        ids[i] = pc_server_timer(g_srv, 60000, 0, st_never, NULL);
        assert_true(ids[i] > 0);
    }
    uint64_t oldest = UINT64_MAX, newest = UINT64_MAX;
    for (int b = 0; b < 5; b++) {
        uint64_t o = cancel_batch_ns(ids, b * CC_BATCH, 1);
        uint64_t n = cancel_batch_ns(ids, CC_TIMERS - 1 - b * CC_BATCH, -1);
        if (o < oldest) oldest = o;
        if (n < newest) newest = n;
    }
    print_message("%d cancels among %d timers: oldest %llu us, newest %llu us\n", CC_BATCH,
                  CC_TIMERS, (unsigned long long)(oldest / 1000),
                  (unsigned long long)(newest / 1000));
    /* the walk made it thousands of times slower; allow 20x for noise */
    assert_true(newest <= 20 * oldest + 2000000u);
    assert_int_equal(pc_server_timer_cancel(g_srv, ids[0]), PC_ENOENT); /* cancelled above */
    assert_int_equal(pc_server_stop(g_srv, 1000), 0);
    assert_int_equal(atomic_load(&g_never), 0);
    free(ids);
}

/* After a spike of server timers the registry gives its memory back: 50k
 * timers armed and cancelled leave the library holding about what it held
 * before them (the table of chains by id used to keep its peak size, 256
 * KiB of chains for 50k timers). Counted by the unit tests' budget
 * allocator, which knows the size of every block it hands out, so the test
 * means the same under the sanitizers. */
#define SP_TIMERS 50000

static int budget_teardown(void **state)
{
    int rc = teardown(state);
    assert_int_equal(pc_set_allocator(NULL), 0);
    return rc;
}

/* The library's memory beyond before (budget allocator), waited for up
 * to ms to come down to slack bytes or less: what it is then. Records
 * freed by a worker (a timer cancelled on its way to it) come back
 * a little after the call that let them go. */
static long long held_beyond(long long before, long long slack, int ms)
{
    long long over = budget_alloc_live_bytes() - before;
    for (uint64_t end = shim_now_ms() + (uint64_t)ms; over > slack && shim_now_ms() < end;) {
        shim_sleep_ms(10);
        over = budget_alloc_live_bytes() - before;
    }
    return over;
}

static void server_timer_memory_returns(void **state)
{
    (void)state;
    atomic_store(&g_never, 0);
    budget_alloc_reset(-1);
    assert_int_equal(pc_set_allocator(&budget_allocator), 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    /* one timer first, so the table's smallest size is in the baseline */
    int64_t keep = pc_server_timer(g_srv, 60000, 0, st_never, NULL);
    assert_true(keep > 0);
    shim_sleep_ms(100);
    long long before = budget_alloc_live_bytes();
    int64_t *ids = malloc(SP_TIMERS * sizeof *ids);
    assert_non_null(ids);
    for (int i = 0; i < SP_TIMERS; i++) {
        ids[i] = pc_server_timer(g_srv, 60000, 0, st_never, NULL);
        assert_true(ids[i] > 0);
    }
    long long peak = budget_alloc_live_bytes();
    for (int i = 0; i < SP_TIMERS; i++)
        assert_int_equal(pc_server_timer_cancel(g_srv, ids[i]), 0);
    free(ids);
    /* a timer cancelled on its way to a worker is freed by that worker */
    long long after = before + held_beyond(before, 4095, 1000);
    print_message("library memory: %lld bytes before %d timers, %lld with them, %lld after "
                  "their cancel\n",
                  before, SP_TIMERS, peak, after);
    assert_true(peak - before >= (long long)SP_TIMERS * 64); /* the counting works */
    assert_true(after - before < 4096);
    /* the timer kept through the spike is still there and cancellable */
    assert_int_equal(pc_server_timer_cancel(g_srv, keep), 0);
    assert_int_equal(pc_server_stop(g_srv, 1000), 0);
    assert_int_equal(atomic_load(&g_never), 0);
}

/* ---- 8. idle timeout: outbound traffic keeps a write-only client open */

static atomic_int g_feed; /* 1: keep writing to the client */

static void feed(pc_conn_t *c)
{
    if (!atomic_load(&g_feed)) return;
    assert_int_equal(pc_conn_send(c, "f", 1), 0);
    assert_int_equal(pc_conn_timer(c, 100, feed), 0);
}

static void feed_on_open(pc_conn_t *c)
{
    atomic_fetch_add(&g_opens, 1);
    assert_int_equal(pc_conn_timer(c, 100, feed), 0);
}

static void write_only_client_kept_alive(void **state)
{
    (void)state;
    atomic_store(&g_feed, 1);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.idle_timeout_ms = 800;
    cfg.cb.on_open = feed_on_open;
    start_server(&cfg);
    shim_sock_t s = connect_server(10000);
    /* the client never sends; for 2.5 idle timeouts it only reads */
    uint64_t until = shim_now_ms() + 2000;
    size_t got = 0;
    char buf[64];
    while (shim_now_ms() < until) {
        int n = shim_recv_some(s, buf, sizeof buf);
        assert_true(n > 0); /* never EOF: kept open by what it is sent */
        got += (size_t)n;
    }
    assert_true(got >= 5);
    assert_int_equal(atomic_load(&g_closes), 0);
    /* no traffic either way: the idle timeout closes it */
    atomic_store(&g_feed, 0);
    WAIT_FOR(atomic_load(&g_closes) == 1, 5000);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_IDLE_TIMEOUT]), 1);
    shim_close(s);
}

/* ---- 9. pc-chat: readers get every line in order, the non-reader is kicked */

typedef struct reader_s {
    shim_sock_t s;
    int lines_ok;  /* lines received in order before the end line */
    int end_count; /* the count the end line announced, -1 if none seen */
    int bad;
} reader_t;

#define LINE_FMT "line %07d padding-padding-padding\n"

static void reader_main(void *arg)
{
    reader_t *r = arg;
    char buf[16384];
    char line[64];
    size_t ll = 0;
    int next = 0;
    int welcomed = 0;
    r->end_count = -1;
    for (;;) {
        int n = shim_recv_some(r->s, buf, sizeof buf);
        if (n <= 0) break;
        for (int i = 0; i < n; i++) {
            if (ll < sizeof line) line[ll++] = buf[i];
            if (buf[i] != '\n') continue;
            char want[64];
            int wl = snprintf(want, sizeof want, LINE_FMT, next);
            if (!welcomed) { /* the greeting comes first */
                welcomed = ll == 10 && memcmp(line, "* welcome\n", 10) == 0;
                if (!welcomed) r->bad++;
            } else if ((size_t)wl == ll && memcmp(line, want, ll) == 0) {
                next++;
            } else if (ll > 4 && memcmp(line, "end ", 4) == 0) {
                r->end_count = atoi(line + 4);
                r->lines_ok = next;
                return;
            } else {
                r->bad++;
            }
            ll = 0;
        }
    }
    r->lines_ok = next;
}

typedef struct talker_s {
    shim_sock_t s;
    chat_t *ch;
    int max_lines;
    int lines; /* sent */
    int rc;
} talker_t;

/* Lines at full speed until the non-reader has been kicked (whatever the
 * kernel's buffers absorbed first), then as many again, then the end line. */
static void talker_main(void *arg)
{
    talker_t *t = arg;
    char buf[8192];
    size_t len = 0;
    int stop_at = t->max_lines;
    t->rc = 0;
    int i = 0;
    for (; i < stop_at; i++) {
        char line[64];
        int n = snprintf(line, sizeof line, LINE_FMT, i);
        if (len + (size_t)n > sizeof buf) {
            if (shim_send_all(t->s, buf, len) != 0) t->rc = -1;
            len = 0;
            chat_stats_t cs;
            chat_stats(t->ch, &cs);
            if (cs.kicked && stop_at == t->max_lines) stop_at = i + 2 * i / 10 + 1000;
            if (stop_at > t->max_lines) stop_at = t->max_lines;
        }
        memcpy(buf + len, line, (size_t)n);
        len += (size_t)n;
    }
    if (len && shim_send_all(t->s, buf, len) != 0) t->rc = -1;
    char end[32];
    int n = snprintf(end, sizeof end, "end %d\n", i);
    if (shim_send_all(t->s, end, (size_t)n) != 0) t->rc = -1;
    t->lines = i;
}

static void chat_broadcast(void **state)
{
    (void)state;
    enum { READERS = 10 };
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.send_queue_limit = 256u << 10;
    cfg.send_high_water = 64u << 10;
    cfg.send_low_water = 16u << 10;
    chat_config_t cc;
    chat_config_init(&cc);
    cc.patience_ms = 3000; /* readers share 2 loaded cores with the server */
    chat_t *ch;
    assert_int_equal(chat_create(&cc, &cfg, &ch), 0);
    start_server(&cfg);
    assert_int_equal(chat_start(ch, g_srv), 0);
    reader_t rd[READERS];
    pc_thread_t th[READERS];
    for (int i = 0; i < READERS; i++) {
        rd[i].s = connect_server(20000);
        rd[i].lines_ok = rd[i].bad = 0;
    }
    shim_sock_t nr = connect_nonreader();
    /* every client is open before the first line */
    pc_conn_id_t ids[READERS + 2];
    uint64_t t_end = shim_now_ms() + 5000;
    while (pc_server_conn_ids(g_srv, ids, READERS + 2) < READERS + 1 && shim_now_ms() < t_end)
        shim_sleep_ms(5);
    assert_int_equal(pc_server_conn_ids(g_srv, ids, READERS + 2), READERS + 1);
    for (int i = 0; i < READERS; i++)
        assert_int_equal(pc__thread_start(&th[i], reader_main, &rd[i], "reader"), 0);
    /* reader 0's socket also talks; bounded: 2M lines (84 MB) at most */
    talker_t tk = {rd[0].s, ch, 2000000, 0, 0};
    pc_thread_t tt;
    assert_int_equal(pc__thread_start(&tt, talker_main, &tk, "talker"), 0);
    pc__thread_join(tt);
    assert_int_equal(tk.rc, 0);
    for (int i = 0; i < READERS; i++)
        pc__thread_join(th[i]);
    chat_stats_t cs;
    chat_stats(ch, &cs);
    print_message("chat: %d lines, %llu rounds, %llu kicked, %llu paused, %llu resumed\n", tk.lines,
                  (unsigned long long)cs.rounds, (unsigned long long)cs.kicked,
                  (unsigned long long)cs.paused, (unsigned long long)cs.resumed);
    /* every reader got every line, in order */
    for (int i = 0; i < READERS; i++) {
        assert_int_equal(rd[i].bad, 0);
        assert_int_equal(rd[i].end_count, tk.lines);
        assert_int_equal(rd[i].lines_ok, tk.lines);
    }
    assert_int_equal(cs.lines, (uint64_t)tk.lines + 1);
    /* the non-reader alone was refused by its limit and kicked */
    assert_int_equal(cs.kicked, 1);
    assert_true(stats().send_limit_refused >= 1);
    assert_int_equal(pc_server_send_queued(g_srv, cs.last_kicked), PC_ENOTCONN);
    assert_int_equal(pc_server_conn_ids(g_srv, ids, READERS + 2), READERS);
    for (int i = 0; i < READERS; i++)
        assert_true(ids[i] != cs.last_kicked);
    /* it was reset: what it had not read is gone */
    size_t discarded = 0;
    shim_set_timeout(nr, 5000);
    int end = shim_wait_close(nr, &discarded);
#ifdef _WIN32
    /* a Wine client whose recv starts after the reset arrived gets 0, not
     * WSAECONNRESET (docs/windows.md); the next send fails at once, where
     * after a graceful close it would succeed */
    if (end == 0) {
        int failed = 0;
        for (int i = 0; i < 3 && !failed; i++) {
            failed = shim_send_all(nr, "?", 1) != 0;
            if (!failed) shim_sleep_ms(20);
        }
        if (failed) end = -1;
    }
#endif
    assert_int_equal(end, -1);
    pc_server_stop(g_srv, 2000);
    chat_stop(ch);
    for (int i = 0; i < READERS; i++)
        shim_close(rd[i].s);
    shim_close(nr);
    pc_server_destroy(g_srv);
    g_srv = NULL;
    chat_destroy(ch);
}

/* ---- 10. a close by id shuts sends at once; hidden before on_open */

static atomic_int g_gate_in, g_gate_open, g_second_in;

/* holds the strand until g_gate_open, so that the next kick waits */
static void post_gate(pc_conn_t *c, void *arg)
{
    (void)c;
    (void)arg;
    atomic_store(&g_gate_in, 1);
    WAIT_FOR(atomic_load(&g_gate_open), 10000);
}

/* runs in the kick that takes the abort, before the close itself */
static void post_second(pc_conn_t *c, void *arg)
{
    (void)arg;
    assert_non_null(c);
    atomic_store(&g_second_in, 1);
    shim_sleep_ms(200);
}

static void abort_id_refuses_later_sends(void **state)
{
    (void)state;
    atomic_store(&g_gate_in, 0);
    atomic_store(&g_gate_open, 0);
    atomic_store(&g_second_in, 0);
    pc_conn_id_t id;
    shim_sock_t s = start_one_client(&id);
    assert_int_equal(pc_server_post_to(g_srv, id, post_gate, NULL), 0);
    WAIT_FOR(atomic_load(&g_gate_in), 5000);
    assert_true(atomic_load(&g_gate_in));
    assert_int_equal(pc_server_post_to(g_srv, id, post_second, NULL), 0);
    assert_int_equal(pc_server_abort_id(g_srv, id), 0);
    assert_int_equal(pc_server_send_to(g_srv, id, "A", 1), PC_ENOTCONN);
    pc_conn_id_t ids[4];
    assert_int_equal(pc_server_conn_ids(g_srv, ids, 4), 0);
    atomic_store(&g_gate_open, 1);
    /* the strand took the abort and runs the posted function before the
     * close: still no send is accepted */
    WAIT_FOR(atomic_load(&g_second_in), 5000);
    assert_true(atomic_load(&g_second_in));
    assert_int_equal(pc_server_send_to(g_srv, id, "B", 1), PC_ENOTCONN);
    assert_int_equal(pc_server_close_id(g_srv, id), 0); /* not closed yet */
    WAIT_FOR(atomic_load(&g_closes) == 1, 5000);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_ABORT]), 1);
    assert_int_equal(pc_server_send_queued(g_srv, id), PC_ENOTCONN);
    pc_server_stats_t st = stats();
    assert_int_equal(st.send_queued_bytes, 0);
    assert_int_equal(st.send_held_bytes, 0);
    char buf[4];
    shim_set_timeout(s, 5000);
    int r = shim_recv_some(s, buf, sizeof buf);
    assert_true(r == -1 || r == 0); /* closed (a reset; Wine reports EOF), no byte */
    shim_close(s);
}

/* A server whose 127.0.0.1 is a trusted proxy, and one connection from it
 * that has not sent its header: accepted, on its worker, hidden. */
static shim_sock_t start_hidden_connection(void)
{
    pc_server_config_t cfg;
    base_config(&cfg);
    pc_rules_t *r = NULL;
    const char *trusted = "allow 127.0.0.1\n";
    assert_int_equal(pc_rules_load_string(trusted, strlen(trusted), "trusted", &r, NULL, 0), 0);
    cfg.proxy_trusted = r;
    cfg.proxy_timeout_ms = 30000; /* the header's deadline ends nothing here */
    start_server(&cfg);
    shim_sock_t s = connect_server(10000);
    WAIT_FOR(stats().accepted == 1, 5000);
    assert_int_equal(stats().accepted, 1);
    shim_sleep_ms(100); /* on its worker, waiting for the header */
    return s;
}

/* A trusted proxy's connection waits for its header before on_open; until
 * then no call by id reaches it (the application has not seen its id). */
static void hidden_until_on_open(void **state)
{
    (void)state;
    shim_sock_t s = start_hidden_connection();
    pc_conn_id_t ids[4];
    assert_int_equal(pc_server_conn_ids(g_srv, ids, 4), 0);
    assert_int_equal(atomic_load(&g_opens), 0);
    const char *hdr = "PROXY TCP4 127.0.0.9 127.0.0.1 5555 80\r\n";
    assert_int_equal(shim_send_all(s, hdr, strlen(hdr)), 0);
    pc_conn_id_t id = wait_open_id(1);
    assert_int_equal(pc_server_conn_ids(g_srv, ids, 4), 1);
    assert_true(ids[0] == id);
    assert_int_equal(pc_server_send_to(g_srv, id, "hi", 2), 0);
    char buf[2];
    shim_set_timeout(s, 5000);
    assert_int_equal(shim_recv_exact(s, buf, 2), 2); /* nothing came before */
    assert_memory_equal(buf, "hi", 2);
    expect_echo(s, "after");
    /* the server's own close reaches a hidden connection: a stop's graceful
     * close sends it a FIN, then (neither client answers) its reset ends the
     * 300 ms drain; it is not left to a 10 s wait */
    shim_sock_t s2 = connect_server(10000);
    WAIT_FOR(stats().accepted == 2, 5000);
    shim_sleep_ms(100);
    assert_int_equal(pc_server_conn_ids(g_srv, ids, 4), 1);
    uint64_t t0 = shim_now_ms();
    assert_int_equal(pc_server_stop(g_srv, 300), 0);
    assert_true(shim_now_ms() - t0 < 2000);
    size_t n = 0;
    shim_set_timeout(s2, 5000);
    assert_int_equal(shim_wait_close(s2, &n), 0); /* the FIN */
    shim_close(s2);
    shim_close(s);
}

/* ---- 11. server timers due in one pass; posts racing a stop */

static _Atomic int64_t g_pair[2];
static atomic_int g_pair_runs, g_pair_cancel_rc;

static void block_worker(pc_server_t *s, void *arg)
{
    (void)s;
    (void)arg;
    shim_sleep_ms(150);
}

/* each cancels the other: whichever runs first, the other is due in the
 * same pass and must not run */
static void st_pair(pc_server_t *s, void *arg)
{
    int me = (int)(intptr_t)arg;
    atomic_fetch_add(&g_pair_runs, 1);
    atomic_store(&g_pair_cancel_rc, pc_server_timer_cancel(s, atomic_load(&g_pair[!me])));
}

static void server_timer_cancels_one_due_with_it(void **state)
{
    (void)state;
    atomic_store(&g_pair_runs, 0);
    atomic_store(&g_pair_cancel_rc, 1);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.threads = 1;
    start_server(&cfg);
    /* the worker is busy while both come due: they expire in one pass */
    assert_int_equal(pc_server_post(g_srv, block_worker, NULL), 0);
    atomic_store(&g_pair[0], pc_server_timer(g_srv, 10, 0, st_pair, (void *)(intptr_t)0));
    atomic_store(&g_pair[1], pc_server_timer(g_srv, 20, 0, st_pair, (void *)(intptr_t)1));
    assert_true(atomic_load(&g_pair[0]) > 0 && atomic_load(&g_pair[1]) > 0);
    WAIT_FOR(atomic_load(&g_pair_runs) >= 1, 5000);
    shim_sleep_ms(200);
    assert_int_equal(atomic_load(&g_pair_runs), 1);
    assert_int_equal(atomic_load(&g_pair_cancel_rc), 0);
#ifdef __linux__
    /* no timer left: the worker sleeps until there is work (a miscounted
     * wheel woke it every 10 ms, ~50 times in this half second) */
    long w0 = worker_wakeups();
    shim_sleep_ms(500);
    long woke = worker_wakeups() - w0;
    assert_true(woke < 10);
#endif
    expect_timer_runs(); /* and timers still work */
}

/* A worker whose next timer is ms away sleeps until it: from 100 ms after
 * arming to 100 ms before it is due, it wakes at most twice (the backend's
 * wait given the whole timeout; io_uring's in a timespec, where a
 * millisecond count taken as microseconds, or the seconds dropped, woke the
 * worker hundreds of times, or every second); then the timer runs. */
#ifdef __linux__
static void sleeps_until_timer(unsigned ms)
{
    atomic_store(&g_once, 0);
    static int answer = 42;
    assert_true(pc_server_timer(g_srv, ms, 0, st_once, &answer) > 0);
    shim_sleep_ms(100);
    long w0 = worker_wakeups();
    shim_sleep_ms((int)ms - 200);
    long woke = worker_wakeups() - w0;
    if (woke > 2) print_error("%u ms timer: the worker woke %ld times\n", ms, woke);
    assert_true(woke <= 2);
    assert_int_equal(atomic_load(&g_once), 0);
    WAIT_FOR(atomic_load(&g_once) == 1, 5000);
    assert_int_equal(atomic_load(&g_once), 1);
}
#endif

static void worker_sleeps_until_timer(void **state)
{
    (void)state;
#ifdef __linux__
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.threads = 1;
    start_server(&cfg);
    sleeps_until_timer(700);  /* under a second */
    sleeps_until_timer(2700); /* seconds and a part */
#else
    skip(); /* counts the worker's wake-ups in /proc */
#endif
}

static atomic_int g_posted, g_post_ran, g_poster_stop;

static void post_count(pc_server_t *s, void *arg)
{
    (void)s;
    (void)arg;
    atomic_fetch_add(&g_post_ran, 1);
}

static void poster_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&g_poster_stop))
        if (pc_server_post(g_srv, post_count, NULL) == 0) atomic_fetch_add(&g_posted, 1);
}

/* pc_server_post from another thread while the server stops: every post
 * that returned 0 has run when pc_server_stop returns (none lost, none
 * leaked), later ones are refused. */
static void post_racing_stop_runs_or_refused(void **state)
{
    (void)state;
    for (int round = 0; round < 10; round++) {
        atomic_store(&g_posted, 0);
        atomic_store(&g_post_ran, 0);
        atomic_store(&g_poster_stop, 0);
        pc_server_config_t cfg;
        base_config(&cfg);
        start_server(&cfg);
        pc_thread_t th;
        assert_int_equal(pc__thread_start(&th, poster_main, NULL, "poster"), 0);
        WAIT_FOR(atomic_load(&g_posted) >= 100, 5000);
        assert_int_equal(pc_server_stop(g_srv, 0), 0);
        int ran = atomic_load(&g_post_ran);
        assert_int_equal(pc_server_post(g_srv, post_count, NULL), PC_ENOTCONN);
        atomic_store(&g_poster_stop, 1);
        pc__thread_join(th);
        assert_true(ran >= 100);
        assert_int_equal(atomic_load(&g_posted), ran);
        pc_server_destroy(g_srv);
        g_srv = NULL;
    }
}

/* A pc_connect connection is used by id before it is open (here: its only
 * worker is busy, so the connect has not even started): a function posted
 * to it runs after its on_open, where it can send, and a graceful close by
 * id waits for the open too, then flushes what was sent and sends a FIN.
 * (Before: the post ran first with a c that could not send, and the close
 * reset the connection, dropping its queue, on_open never ran.) If the
 * connect fails, the posted function runs with NULL. */
static atomic_int g_oc_open, g_oc_close, g_oc_reason = -1, g_oc_post, g_oc_post_rc = 99;
static atomic_int g_oc_post_saw_open = -1, g_oc_post_null;
static char g_oc_buf[64];
static atomic_int g_oc_len;

static void oc_open(pc_conn_t *c)
{
    (void)c;
    atomic_fetch_add(&g_oc_open, 1);
}
static void oc_close(pc_conn_t *c, pc_close_reason_t r, int err)
{
    (void)c;
    (void)err;
    atomic_store(&g_oc_reason, (int)r);
    atomic_fetch_add(&g_oc_close, 1);
}
static void oc_post(pc_conn_t *c, void *arg)
{
    (void)arg;
    if (!c) {
        atomic_fetch_add(&g_oc_post_null, 1);
        return;
    }
    atomic_store(&g_oc_post_saw_open, atomic_load(&g_oc_open));
    atomic_store(&g_oc_post_rc, pc_conn_send(c, "post!", 5));
    atomic_fetch_add(&g_oc_post, 1);
}
static void oc_cli_data(pc_conn_t *c, const void *d, size_t n)
{
    (void)c, (void)d, (void)n;
}
static void oc_srv_data(pc_conn_t *c, const void *d, size_t n) /* one worker */
{
    (void)c;
    int at = atomic_load(&g_oc_len);
    if ((size_t)at + n > sizeof g_oc_buf) n = sizeof g_oc_buf - (size_t)at;
    memcpy(g_oc_buf + at, d, n);
    atomic_store(&g_oc_len, at + (int)n);
}

static void outbound_post_and_close_wait_for_open(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.threads = 1;
    cfg.cb.on_data = oc_srv_data; /* the accepted side keeps what it gets */
    start_server(&cfg);
    pc_callbacks_t cli = {.on_open = oc_open, .on_data = oc_cli_data, .on_close = oc_close};
    char ep[64];
    snprintf(ep, sizeof ep, "127.0.0.1:%d", g_port);
    assert_int_equal(pc_server_post(g_srv, block_worker, NULL), 0);
    pc_conn_id_t id = 0;
    assert_int_equal(pc_connect(g_srv, ep, "127.0.0.5", &cli, NULL, &id), 0);
    assert_int_equal(pc_server_send_to(g_srv, id, "hello", 5), 0);
    assert_int_equal(pc_server_post_to(g_srv, id, oc_post, NULL), 0);
    assert_int_equal(pc_server_send_to(g_srv, id, "after", 5), 0); /* follows the post's */
    assert_int_equal(pc_server_close_id(g_srv, id), 0);
    assert_int_equal(pc_server_send_to(g_srv, id, "late", 4), PC_ENOTCONN);
    WAIT_FOR(atomic_load(&g_oc_close) == 1 && atomic_load(&g_reasons[PC_CLOSE_PEER]) == 1, 5000);
    assert_int_equal(atomic_load(&g_oc_open), 1);
    assert_int_equal(atomic_load(&g_oc_close), 1);
    assert_int_equal(atomic_load(&g_oc_reason), PC_CLOSE_LOCAL);
    assert_int_equal(atomic_load(&g_oc_post), 1);
    assert_int_equal(atomic_load(&g_oc_post_saw_open), 1); /* after on_open */
    assert_int_equal(atomic_load(&g_oc_post_rc), 0);
    /* the accepted side got all three, in order, then a FIN (not a reset) */
    assert_int_equal(atomic_load(&g_oc_len), 15);
    assert_memory_equal(g_oc_buf, "hellopost!after", 15);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_PEER]), 1);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_RESET]), 0);

    /* a connect that fails: the kept function runs with NULL */
    atomic_store(&g_oc_close, 0);
    atomic_store(&g_oc_open, 0);
    assert_int_equal(pc_server_post(g_srv, block_worker, NULL), 0);
    assert_int_equal(pc_connect(g_srv, "127.0.0.1:1", NULL, &cli, NULL, &id), 0);
    assert_int_equal(pc_server_post_to(g_srv, id, oc_post, NULL), 0);
    WAIT_FOR(atomic_load(&g_oc_post_null) == 1, 5000);
    assert_int_equal(atomic_load(&g_oc_post_null), 1);
    assert_int_equal(atomic_load(&g_oc_close), 1);
    assert_int_equal(atomic_load(&g_oc_open), 0);
    assert_int_equal(atomic_load(&g_oc_reason), PC_CLOSE_ERROR);
    assert_int_equal(atomic_load(&g_oc_post), 1); /* not run again */
}

/* A pc_connect connection that closes itself gracefully from on_open,
 * while a function posted during the connect still waits for open_kept
 * with a byte sent after it ("c"), and on_open has another thread send
 * one more ("z", waiting in the inbox): the close takes the kept byte
 * before the inbox's, so the accepted side reads "acz", then a FIN (the
 * close took only the inbox: "azc"). The posted function runs after the
 * close began: its own send is refused. */
static atomic_int g_ocz_post_rc;

static void ocz_open(pc_conn_t *c)
{
    assert_int_equal(xsender_send(c, 1), 0);
    assert_int_equal(pc_conn_close(c), 0);
}

static void ocz_post(pc_conn_t *c, void *arg)
{
    (void)arg;
    atomic_store(&g_ocz_post_rc, c ? pc_conn_send(c, "b", 1) : 1);
}

static void outbound_close_in_on_open_keeps_order(void **state)
{
    (void)state;
    atomic_store(&g_oc_len, 0);
    atomic_store(&g_oc_close, 0);
    atomic_store(&g_ocz_post_rc, 1);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.threads = 1;
    cfg.cb.on_data = oc_srv_data; /* the accepted side keeps what it gets */
    start_server(&cfg);
    xsender_start();
    static const pc_callbacks_t cli = {
        .on_open = ocz_open, .on_data = oc_cli_data, .on_close = oc_close};
    char ep[64];
    snprintf(ep, sizeof ep, "127.0.0.1:%d", g_port);
    pc_conn_id_t id = 0;
    worker_hold(g_srv);
    assert_int_equal(pc_connect(g_srv, ep, NULL, &cli, NULL, &id), 0);
    assert_int_equal(pc_server_send_to(g_srv, id, "a", 1), 0);
    assert_int_equal(pc_server_post_to(g_srv, id, ocz_post, NULL), 0);
    assert_int_equal(pc_server_send_to(g_srv, id, "c", 1), 0);
    worker_release();
    WAIT_FOR(atomic_load(&g_oc_close) == 1 && atomic_load(&g_reasons[PC_CLOSE_PEER]) == 1, 5000);
    xsender_stop();
    assert_int_equal(atomic_load(&g_oc_close), 1);
    assert_int_equal(atomic_load(&g_ocz_post_rc), PC_ENOTCONN);
    assert_int_equal(atomic_load(&g_oc_len), 3);
    assert_memory_equal(g_oc_buf, "acz", 3);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_PEER]), 1); /* a FIN */
}

/* Bytes sent by id to a pc_connect connection before its first kick stay
 * counted while that kick starts the connect: pc_server_send_queued (and
 * the send_queue_limit check of a send by id, which reads the same sum
 * under the same lock) never sees them in neither count. The kick took
 * them off the inbox's count under the lock but added them to the send
 * queue's only after conn_open (the port's attach and the connect call):
 * a reader between saw 0, and a send by id then could pass the limit by
 * up to the limit again. A sampler reads the count while the held worker
 * is let go; the accepted side never reads, so the 32 MiB cannot all
 * leave, and the count stays above half of them. */
#define FK_BYTES ((size_t)32 << 20)
static pc_server_t *g_fk_cs;

static int fk_above_half(void *arg)
{
    return pc_server_send_queued(g_fk_cs, *(const pc_conn_id_t *)arg) >= (int64_t)(FK_BYTES / 2);
}

static void fk_pause_open(pc_conn_t *c)
{
    assert_int_equal(pc_conn_pause_read(c), 0);
}

static void outbound_first_kick_keeps_count(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.cb.on_open = fk_pause_open; /* the accepted side never reads */
    start_server(&cfg);
    pc_server_config_t ccfg;
    pc_server_config_init(&ccfg);
    ccfg.send_queue_limit = SIZE_MAX;
    static const pc_callbacks_t cli = {.on_data = oc_cli_data};
    g_fk_cs = start_client_server(&cli, &ccfg);
    char ep[64];
    snprintf(ep, sizeof ep, "127.0.0.1:%d", g_port);
    char *big = calloc(1, FK_BYTES);
    assert_non_null(big);
    int low = 0;
    for (int trial = 0; trial < 20 && !low; trial++) {
        pc_server_stats_t st;
        pc_server_stats(g_fk_cs, &st);
        uint64_t out0 = st.bytes_out;
        pc_conn_id_t id = 0;
        worker_hold(g_fk_cs); /* the connect's first kick waits */
        assert_int_equal(pc_connect(g_fk_cs, ep, NULL, &cli, NULL, &id), 0);
        assert_int_equal(pc_server_send_to(g_fk_cs, id, big, FK_BYTES), 0);
        assert_int_equal(pc_server_send_queued(g_fk_cs, id), (int64_t)FK_BYTES);
        sampler_t sp;
        sampler_start(&sp, fk_above_half, &id);
        WAIT_FOR(atomic_load(&sp.samples) > 0, 5000);
        worker_release();
        /* the kick ran and the connection opened: bytes leave */
        WAIT_FOR((pc_server_stats(g_fk_cs, &st), st.bytes_out > out0), 5000);
        low = sampler_stop(&sp) > 0;
        assert_true(st.bytes_out > out0);
        assert_int_equal(pc_server_abort_id(g_fk_cs, id), 0);
        WAIT_FOR((pc_server_stats(g_fk_cs, &st), st.send_held_bytes == 0), 5000);
    }
    /* a connect that fails: the bytes leave every count, once */
    pc_conn_id_t id = 0;
    worker_hold(g_fk_cs);
    assert_int_equal(pc_connect(g_fk_cs, "127.0.0.1:1", NULL, &cli, NULL, &id), 0);
    assert_int_equal(pc_server_send_to(g_fk_cs, id, big, 1000), 0);
    worker_release();
    pc_server_stats_t st;
    WAIT_FOR((pc_server_stats(g_fk_cs, &st), st.outbound == 0 && st.send_held_bytes == 0), 5000);
    assert_int_equal(st.outbound, 0);
    assert_int_equal(st.send_queued_bytes, 0);
    assert_int_equal(st.send_held_bytes, 0);
    free(big);
    pc_server_stop(g_fk_cs, 1000);
    pc_server_destroy(g_fk_cs);
    assert_int_equal(low, 0);
}

/* A pc_connect connection whose peer speaks first, its bytes there before
 * the connecting worker takes the connect's completion: the readiness that
 * came with the completion, before any receive was pending, is not lost.
 * epoll reports both in one event, and the receive started once the
 * connection opens must complete from it (an edge-triggered loop sees no
 * later edge: a backend that waited for one never delivered the greeting).
 * The worker is held while the connect is queued, then takes the connect
 * and, in the same batch, a gate that holds it until the greeting is sent
 * (the connect's completion is then still to be taken). */
static atomic_int g_greet_len; /* and post_gate's g_gate_in, g_gate_open */

static void greet_data(pc_conn_t *c, const void *d, size_t n)
{
    (void)c, (void)d;
    atomic_fetch_add(&g_greet_len, (int)n);
}

static void greet_gate(pc_server_t *s, void *arg)
{
    (void)s;
    post_gate(NULL, arg);
}

static void outbound_peer_speaks_before_connect_taken(void **state)
{
    (void)state;
    atomic_store(&g_greet_len, 0);
    atomic_store(&g_gate_in, 0);
    atomic_store(&g_gate_open, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    g_behaviour = B_BIG_ON_OPEN; /* the accepted side sends g_big bytes at once */
    g_big = 5;
    start_server(&cfg);
    static const pc_callbacks_t cli = {.on_data = greet_data};
    pc_server_t *cs = start_client_server(&cli, NULL);
    char ep[64];
    snprintf(ep, sizeof ep, "127.0.0.1:%d", g_port);
    pc_conn_id_t id = 0;
    worker_hold(cs);
    assert_int_equal(pc_connect(cs, ep, NULL, &cli, NULL, &id), 0);
    assert_int_equal(pc_server_post(cs, greet_gate, NULL), 0); /* right after the connect */
    worker_release();
    WAIT_FOR(atomic_load(&g_gate_in), 5000);
    assert_int_equal(atomic_load(&g_gate_in), 1);
    /* io_uring submits the connect when its worker next enters the kernel,
     * after the gate: there the gate opens at once */
    pc_server_stats_t cst;
    pc_server_stats(cs, &cst);
    if (cst.backend != PC_BACKEND_URING) {
        WAIT_FOR(stats().bytes_out == 5, 5000);
        assert_int_equal(stats().bytes_out, 5); /* the connect started, the greeting is sent */
    }
    atomic_store(&g_gate_open, 1);
    WAIT_FOR(atomic_load(&g_greet_len) == 5, 5000);
    assert_int_equal(atomic_load(&g_greet_len), 5);
#ifdef __linux__
    /* and the connections, idle now, cost no CPU: the readiness was taken
     * once (a backend that kept reporting it, or a level-triggered loop,
     * kept a worker spinning) */
    long cpu0 = worker_cpu_ms();
    shim_sleep_ms(1000);
    long busy = worker_cpu_ms() - cpu0;
    if (busy >= 150) print_error("the workers used %ld ms of CPU in 1 s idle\n", busy);
    assert_true(busy < 150);
#endif
    assert_int_equal(pc_server_abort_id(cs, id), 0);
    pc_server_stop(cs, 1000);
    pc_server_destroy(cs);
}

/* A pc_connect connection whose connect is slow: a function posted while
 * it connects waits for the connect, and bytes sent by id after it, even
 * those another kick takes later, still wait behind it: the accepted side
 * reads "abc". The connect is held back by a listener whose accept queue is
 * full (backlog 0 and a connection not yet accepted: Linux drops the SYN
 * and the client sends it again about a second later); the queue is freed
 * once both sends and the post have been taken. Linux: Winsock refuses a
 * connect to a full queue. */
#ifdef __linux__
static void outbound_slow_connect_keeps_order(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.threads = 1;
    start_server(&cfg);
    int port;
    int l = shim_listen(0, &port);
    assert_true(l >= 0);
    shim_set_timeout(l, 10000);
    shim_sock_t filler = shim_connect("127.0.0.1", port, NULL, 5000);
    assert_true(filler != SHIM_INVALID);
    /* pc_connect keeps a pointer to these until the connection is gone */
    static const pc_callbacks_t cli = {.on_data = oc_cli_data, .on_close = oc_close};
    atomic_store(&g_oc_close, 0);
    char ep[64];
    snprintf(ep, sizeof ep, "127.0.0.1:%d", port);
    pc_conn_id_t id = 0;
    assert_int_equal(pc_connect(g_srv, ep, NULL, &cli, NULL, &id), 0);
    assert_int_equal(pc_server_send_to(g_srv, id, "a", 1), 0);
    assert_int_equal(pc_server_post_to(g_srv, id, post_send_str, "b"), 0);
    shim_sleep_ms(200); /* the kick has kept the post */
    assert_int_equal(pc_server_send_to(g_srv, id, "c", 1), 0);
    shim_sleep_ms(200);            /* and another has taken "c" */
    int f = accept(l, NULL, NULL); /* the filler: room for the next SYN */
    assert_true(f >= 0);
    int p = accept(l, NULL, NULL);
    assert_true(p >= 0);
    shim_set_timeout(p, 10000);
    char got[4] = {0};
    assert_int_equal(shim_recv_exact(p, got, 3), 3);
    assert_memory_equal(got, "abc", 3);
    assert_int_equal(pc_server_close_id(g_srv, id), 0);
    close(p);
    WAIT_FOR(atomic_load(&g_oc_close) == 1, 5000);
    assert_int_equal(atomic_load(&g_oc_close), 1);
    close(f);
    close(l);
    shim_close(filler);
}
#endif

/* ---- 2b. the limit itself is allowed: a send that fills the queue exactly
 * to send_queue_limit passes, the next byte is refused */

static atomic_int g_fit_rc[3];
static void fit_open(pc_conn_t *c)
{
    size_t lim = 64u << 10;
    char *buf = calloc(1, lim);
    /* within one callback nothing leaves the queue (the send starts once
     * it returns), so the counts are exact */
    atomic_store(&g_fit_rc[0], pc_conn_send(c, buf, 1000));
    atomic_store(&g_fit_rc[1], pc_conn_send(c, buf, lim - 1000));
    atomic_store(&g_fit_rc[2], pc_conn_send(c, buf, 1));
    free(buf);
    atomic_fetch_add(&g_opens, 1);
}

static void send_queue_limit_exact_fit(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.send_queue_limit = 64u << 10;
    cfg.cb.on_open = fit_open;
    for (int i = 0; i < 3; i++)
        atomic_store(&g_fit_rc[i], 1);
    start_server(&cfg);
    shim_sock_t s = connect_server(10000);
    wait_open_id(1);
    assert_int_equal(atomic_load(&g_fit_rc[0]), 0);
    assert_int_equal(atomic_load(&g_fit_rc[1]), 0); /* up to the limit: queued */
    assert_int_equal(atomic_load(&g_fit_rc[2]), PC_ENOBUFS);
    assert_int_equal(stats().send_limit_refused, 1);
    char *got = malloc(cfg.send_queue_limit);
    assert_int_equal(shim_recv_exact(s, got, cfg.send_queue_limit), cfg.send_queue_limit);
    free(got);
    shim_close(s);
}

/* The same hidden connection, named by an id the application guessed (the
 * layout is documented: slot low, generation high): every by-id call
 * treats it as not open until on_open (portcullis.h), the closing ones
 * included. hidden_until_on_open never names it (the application is not
 * told the id), so a close by id that skipped the check went unnoticed: it
 * closed the connection before on_open and returned 0. */
static void hidden_refuses_guessed_ids(void **state)
{
    (void)state;
    shim_sock_t s = start_hidden_connection();
    for (uint64_t gen = 1; gen <= 4; gen++)
        for (uint64_t slot = 0; slot < 8; slot++)
            expect_id_refused(gen << 32 | slot);
    const char *hdr = "PROXY TCP4 127.0.0.9 127.0.0.1 5555 80\r\n";
    assert_int_equal(shim_send_all(s, hdr, strlen(hdr)), 0);
    wait_open_id(1);
    shim_set_timeout(s, 5000);
    expect_echo(s, "opened untouched");
    assert_int_equal(atomic_load(&g_closes), 0);
    shim_close(s);
}

/* A connection's own timer never runs early either (portcullis.h:
 * pc_conn_timer, "never early"): 60 timers of 1-60 ms in turn, each timed
 * from before its pc_conn_timer call. conn_timer_fires_and_cancelled
 * counts runs but not their time, so a deadline of half the delay passed
 * it. */
static _Atomic uint64_t g_cte_armed_ns;
static atomic_uint g_cte_ms;
static atomic_int g_cte_early;
static _Atomic uint64_t g_cte_worst_ns; /* the earliest run, as ns before its due time */

static void cte_fire(pc_conn_t *c)
{
    uint64_t ran = pc__now_ns();
    uint64_t due = atomic_load(&g_cte_armed_ns) + (uint64_t)atomic_load(&g_cte_ms) * 1000000u;
    if (ran < due) {
        atomic_fetch_add(&g_cte_early, 1);
        if (due - ran > atomic_load(&g_cte_worst_ns)) atomic_store(&g_cte_worst_ns, due - ran);
    }
    assert_int_equal(pc_conn_send(c, "F", 1), 0);
}

static void cte_on_data(pc_conn_t *c, const void *data, size_t len)
{
    unsigned ms = ((const unsigned char *)data)[len - 1];
    atomic_store(&g_cte_ms, ms);
    atomic_store(&g_cte_armed_ns, pc__now_ns());
    assert_int_equal(pc_conn_timer(c, ms, cte_fire), 0);
}

static void conn_timer_never_early(void **state)
{
    (void)state;
    atomic_store(&g_cte_early, 0);
    atomic_store(&g_cte_worst_ns, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.cb.on_data = cte_on_data;
    start_server(&cfg);
    shim_sock_t s = connect_server(10000);
    shim_set_timeout(s, 5000);
    for (unsigned ms = 1; ms <= 60; ms++) {
        unsigned char b = (unsigned char)ms;
        assert_int_equal(shim_send_all(s, &b, 1), 0);
        char got;
        assert_int_equal(shim_recv_exact(s, &got, 1), 1);
        assert_int_equal(got, 'F');
    }
    if (atomic_load(&g_cte_early))
        fail_msg("%d of 60 connection timers ran early (the worst by %llu us)",
                 atomic_load(&g_cte_early),
                 (unsigned long long)(atomic_load(&g_cte_worst_ns) / 1000u));
    shim_close(s);
}

/* ---- 12. ids: a reused record, a table with no record yet, bounded snapshots */

/* A closed connection's record is taken by a later one (same slot, the
 * low half of the id): the new id differs in its generation, and every call
 * by the old id is refused without touching the new connection (a
 * generation that did not move at release let the old id reach it).
 * stale_ids_every_call does not know whether its second connection took the
 * first one's record; this one connects until one has. */
static void reused_record_new_generation(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.threads = 1;
    start_server(&cfg);
    shim_sock_t s = SHIM_INVALID;
    pc_conn_id_t old = 0, id = 0;
    int n = 0;
    for (;;) { /* bounded: 50 connections */
        s = connect_server(10000);
        id = wait_open_id(++n);
        if (old && (uint32_t)id == (uint32_t)old) break; /* the last one's record */
        if (n == 50) fail_msg("%d connections, none took a closed one's record", n);
        shim_close(s);
        WAIT_FOR(atomic_load(&g_closes) == n, 5000);
        assert_int_equal(atomic_load(&g_closes), n);
        old = id;
        /* a released record reaches the table's free list within 10 ms
         * (FREE_FLUSH_MS), and the next connection takes the newest one */
        shim_sleep_ms(30);
    }
    assert_true(id != old);
    expect_id_refused(old);
    /* the new connection got none of it: its first bytes are its echo */
    expect_echo(s, "untouched");
    assert_true(pc_server_send_queued(g_srv, id) >= 0); /* open */
    assert_int_equal(atomic_load(&g_closes), n - 1);
    shim_close(s);
}

/* Before the table holds any record, an id naming its first slot is
 * refused like any other (the lookup compared the slot with the count of
 * records: one at the count read a chunk not yet allocated). */
static void ids_before_any_connection(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    for (uint64_t gen = 1; gen <= 2; gen++)
        expect_id_refused(gen << 32); /* slot 0 */
    pc_conn_id_t ids[2];
    assert_int_equal(pc_server_conn_ids(g_srv, ids, 2), 0);
}

/* pc_server_conn_ids writes at most max ids, and says max when there may
 * be more: three open connections, room for two. */
static void conn_ids_bounded_by_max(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    shim_sock_t s[3];
    for (int i = 0; i < 3; i++)
        s[i] = connect_server(10000);
    wait_open_id(3);
    pc_conn_id_t ids[4] = {0, 0, 77, 77};
    assert_int_equal(pc_server_conn_ids(g_srv, ids, 2), 2);
    assert_true(ids[0] != 0 && ids[1] != 0 && ids[0] != ids[1]);
    assert_true(ids[2] == 77); /* nothing past max */
    assert_int_equal(pc_server_conn_ids(g_srv, ids, 1), 1);
    assert_true(ids[1] != 77 && ids[2] == 77);
    assert_int_equal(pc_server_conn_ids(g_srv, ids, 4), 3);
    assert_true(ids[3] == 77);
    assert_int_equal(pc_server_conn_ids(g_srv, ids, 0), 0);
    assert_int_equal(pc_server_conn_ids(g_srv, NULL, 4), 0);
    for (int i = 0; i < 3; i++)
        shim_close(s[i]);
}

/* abort_id drops what other threads queued at once, whatever the worker is
 * doing (the bytes leave the counts before the call returns), and a
 * graceful close asked after it does not turn the abort back into a close
 * that would flush: on_close runs with PC_CLOSE_ABORT and the peer gets a
 * reset, no byte. The worker is held, so everything waits for it. */
static void abort_id_drops_at_once_and_stays_abort(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.threads = 1;
    start_server(&cfg);
    shim_sock_t s = connect_server(10000);
    pc_conn_id_t id = wait_open_id(1);
    worker_hold(g_srv);
    assert_int_equal(pc_server_send_to(g_srv, id, "lost", 4), 0);
    assert_int_equal(pc_server_send_queued(g_srv, id), 4);
    assert_int_equal(stats().send_queued_bytes, 4);
    assert_int_equal(pc_server_abort_id(g_srv, id), 0);
    assert_int_equal(pc_server_send_queued(g_srv, id), 0); /* not closed yet: 0, not ENOTCONN */
    assert_int_equal(stats().send_queued_bytes, 0);
    assert_int_equal(pc_server_close_id(g_srv, id), 0); /* asked, after the abort */
    worker_release();
    WAIT_FOR(atomic_load(&g_closes) == 1, 5000);
    assert_int_equal(atomic_load(&g_closes), 1);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_ABORT]), 1);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_LOCAL]), 0);
    assert_int_equal(stats().send_queued_bytes, 0);
    char buf[8];
    shim_set_timeout(s, 5000);
    int r = shim_recv_some(s, buf, sizeof buf);
    assert_true(r == -1 || r == 0); /* a reset (Wine reports EOF), no byte */
    shim_close(s);
}

/* ---- 13. pc_conn_timer's arguments and thread */

/* pc_conn_timer refuses a function-less arming (PC_EINVAL; ms 0 cancels
 * and needs none), and any call from a thread that is not the
 * connection's strand, where it would race the worker (PC_EINVAL: a timer
 * armed so never runs). */
static atomic_int g_ta_rc[2];

static void ta_on_data(pc_conn_t *c, const void *data, size_t len)
{
    (void)data;
    (void)len;
    atomic_store(&g_ta_rc[0], pc_conn_timer(c, 10, NULL));
    atomic_store(&g_ta_rc[1], pc_conn_timer(c, 0, NULL));
    assert_int_equal(pc_conn_send(c, "k", 1), 0);
}

static void conn_timer_refuses_bad_calls(void **state)
{
    (void)state;
    atomic_store(&g_late_ticks, 0);
    atomic_store(&g_ta_rc[0], 1);
    atomic_store(&g_ta_rc[1], 1);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.cb.on_data = ta_on_data;
    start_server(&cfg);
    shim_sock_t s = connect_server(10000);
    WAIT_FOR(atomic_load(&g_last_conn) != NULL, 5000);
    pc_conn_t *c = atomic_load(&g_last_conn);
    assert_non_null(c);
    /* this thread is not the connection's strand */
    assert_int_equal(pc_conn_timer(c, 10, late_tick), PC_EINVAL);
    assert_int_equal(pc_conn_timer(c, 0, NULL), PC_EINVAL);
    assert_int_equal(pc_conn_timer(NULL, 10, late_tick), PC_EINVAL);
    char k;
    assert_int_equal(shim_send_all(s, "?", 1), 0);
    assert_int_equal(shim_recv_exact(s, &k, 1), 1);
    assert_int_equal(atomic_load(&g_ta_rc[0]), PC_EINVAL);
    assert_int_equal(atomic_load(&g_ta_rc[1]), 0);
    shim_sleep_ms(100); /* ten times the refused timer's delay */
    assert_int_equal(atomic_load(&g_late_ticks), 0);
    shim_close(s);
}

/* ---- 14. a repeating server timer after a stall skips the missed periods */

/* A 20 ms repeating timer whose first run takes 200 ms: its next run is a
 * period after that run ended, at the earliest (portcullis.h: the next
 * period is counted from the planned time, but never in the past: "a slow
 * run or a stall skips the missed periods"), not the nine missed ones back
 * to back. */
static _Atomic uint64_t g_sk_end_ns, g_sk_next_ns;
static atomic_int g_sk_runs;

static void st_stall_once(pc_server_t *s, void *arg)
{
    (void)s;
    (void)arg;
    int n = atomic_fetch_add(&g_sk_runs, 1) + 1;
    if (n == 1) {
        shim_sleep_ms(200);
        atomic_store(&g_sk_end_ns, pc__now_ns());
    } else if (n == 2) {
        atomic_store(&g_sk_next_ns, pc__now_ns());
    }
}

static void server_timer_stall_skips_periods(void **state)
{
    (void)state;
    atomic_store(&g_sk_runs, 0);
    atomic_store(&g_sk_end_ns, 0);
    atomic_store(&g_sk_next_ns, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    int64_t id = pc_server_timer(g_srv, 20, 1, st_stall_once, NULL);
    assert_true(id > 0);
    WAIT_FOR(atomic_load(&g_sk_runs) >= 2, 5000);
    int rc, tries = 0;
    while ((rc = pc_server_timer_cancel(g_srv, id)) == PC_EBUSY && tries++ < 5000)
        shim_sleep_ms(1);
    assert_int_equal(rc, 0);
    uint64_t end = atomic_load(&g_sk_end_ns), next = atomic_load(&g_sk_next_ns);
    assert_true(end > 0 && next > end);
    /* a period after the slow run, less the wheel's millisecond clock's
     * rounding (pc__deadline_ms never makes it early) */
    if (next - end < 19000000u)
        fail_msg("the run after a 200 ms one came %llu us after it (period 20 ms)",
                 (unsigned long long)((next - end) / 1000));
}

/* A connection's timer is not run early by another deadline of the same
 * connection: with an idle timeout of 600 ms that the client keeps moving
 * (a byte every 100 ms), the connection's timer fires at 600 ms to find
 * the idle deadline not due; a 1500 ms user timer must still wait its
 * 1500 ms (conn_timer_never_early has no other deadline, so a user timer
 * run whenever the connection's timer fired passed it). */
static void cti_on_data(pc_conn_t *c, const void *data, size_t len)
{
    if (((const char *)data)[0] != 'A' || len != 1) return; /* the keep-alive bytes */
    atomic_store(&g_cte_ms, 1500);
    atomic_store(&g_cte_armed_ns, pc__now_ns());
    assert_int_equal(pc_conn_timer(c, 1500, cte_fire), 0);
}

static void conn_timer_not_run_by_idle_deadline(void **state)
{
    (void)state;
    atomic_store(&g_cte_early, 0);
    atomic_store(&g_cte_worst_ns, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.idle_timeout_ms = 600; /* six of the client's 100 ms steps: a slow machine keeps it open */
    cfg.cb.on_data = cti_on_data;
    start_server(&cfg);
    shim_sock_t s = connect_server(10000);
    assert_int_equal(shim_send_all(s, "A", 1), 0);
    shim_set_timeout(s, 100);
    char got = 0;
    for (int i = 0; i < 40 && got != 'F'; i++) { /* bounded: 4 s */
        if (shim_recv_some(s, &got, 1) == 1) break;
        assert_int_equal(shim_send_all(s, ".", 1), 0); /* keeps the idle deadline moving */
    }
    assert_int_equal(got, 'F');
    if (atomic_load(&g_cte_early))
        fail_msg("a 1500 ms connection timer ran %llu us early",
                 (unsigned long long)(atomic_load(&g_cte_worst_ns) / 1000u));
    assert_int_equal(atomic_load(&g_closes), 0);
    shim_close(s);
}

/* on_sent for bytes sent by id alone: the application queued them (by id),
 * so the queue's emptying is told (on_sent_counts_sends_by_id queues a
 * byte of the connection's own each round, which alone set it due). */
static void on_sent_for_sends_by_id_alone(void **state)
{
    (void)state;
    atomic_store(&g_os_bad, 0);
    atomic_store(&g_os_runs, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.cb.on_sent = os_on_sent;
    start_server(&cfg);
    shim_sock_t s = connect_server(10000);
    pc_conn_id_t id = wait_open_id(1);
    char got[3];
    for (int round = 1; round <= 3; round++) {
        assert_int_equal(pc_server_send_to(g_srv, id, "abc", 3), 0);
        assert_int_equal(shim_recv_exact(s, got, 3), 3);
        assert_memory_equal(got, "abc", 3);
        WAIT_FOR(atomic_load(&g_os_runs) == round, 5000);
        assert_int_equal(atomic_load(&g_os_runs), round);
    }
    assert_int_equal(atomic_load(&g_os_bad), 0);
    shim_close(s);
}

/* ---- 15. pc-chat: fan-out past the broadcaster's first snapshot, line bounds */

/* A started chat server on g_srv (default chat settings but cc's max_line),
 * and the chat; end_chat stops both. */
static chat_t *start_chat(size_t max_line)
{
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.send_queue_limit = 256u << 10;
    chat_config_t cc;
    chat_config_init(&cc);
    cc.max_line = max_line;
    chat_t *ch;
    assert_int_equal(chat_create(&cc, &cfg, &ch), 0);
    start_server(&cfg);
    assert_int_equal(chat_start(ch, g_srv), 0);
    return ch;
}

static void end_chat(chat_t *ch)
{
    pc_server_stop(g_srv, 2000);
    chat_stop(ch);
    pc_server_destroy(g_srv);
    g_srv = NULL;
    chat_destroy(ch);
}

/* A chat client, greeted. */
static shim_sock_t chat_client(void)
{
    shim_sock_t s = connect_server(10000);
    shim_set_timeout(s, 5000);
    char hello[10];
    assert_int_equal(shim_recv_exact(s, hello, sizeof hello), sizeof hello);
    assert_memory_equal(hello, "* welcome\n", sizeof hello);
    return s;
}

/* More clients than the broadcaster's first id buffer holds (64): every
 * one of them gets the line (a snapshot that did not grow left the rest
 * out). */
enum { FAN = 70 };

static void chat_fan_out_past_first_snapshot(void **state)
{
    (void)state;
    chat_t *ch = start_chat(1024);
    shim_sock_t s[FAN];
    for (int i = 0; i < FAN; i++)
        s[i] = chat_client();
    pc_conn_id_t ids[FAN + 1];
    assert_int_equal(pc_server_conn_ids(g_srv, ids, FAN + 1), FAN);
    assert_int_equal(shim_send_all(s[FAN - 1], "to all\n", 7), 0);
    int missed = 0;
    for (int i = 0; i < FAN; i++) {
        char got[7];
        if (shim_recv_exact(s[i], got, sizeof got) != sizeof got ||
            memcmp(got, "to all\n", sizeof got) != 0)
            missed++;
    }
    if (missed) fail_msg("%d of %d clients did not get the line", missed, FAN);
    for (int i = 0; i < FAN; i++)
        shim_close(s[i]);
    end_chat(ch);
}

/* max_line is the longest line accepted, its newline not counted: a line
 * of exactly max_line bytes is broadcast, one byte more gets the client
 * told and closed. */
static void chat_longest_line_and_one_more(void **state)
{
    (void)state;
    chat_t *ch = start_chat(16);
    shim_sock_t a = chat_client(), b = chat_client();
    assert_int_equal(shim_send_all(a, "0123456789abcdef\n", 17), 0);
    char got[32];
    assert_int_equal(shim_recv_exact(b, got, 17), 17);
    assert_memory_equal(got, "0123456789abcdef\n", 17);
    assert_int_equal(shim_recv_exact(a, got, 17), 17); /* the talker too */
    assert_int_equal(shim_send_all(a, "0123456789abcdefg\n", 18), 0);
    static const char bye[] = "* line too long, bye\n";
    assert_int_equal(shim_recv_exact(a, got, sizeof bye - 1), sizeof bye - 1);
    assert_memory_equal(got, bye, sizeof bye - 1);
    size_t more = 0;
    assert_int_equal(shim_wait_close(a, &more), 0);
    assert_int_equal(more, 0);
    chat_stats_t cs;
    chat_stats(ch, &cs);
    assert_int_equal(cs.lines, 1);
    shim_close(a);
    shim_close(b);
    end_chat(ch);
}

/* ---- 16. server timers: ids, cancels that free at once, schedules, stop */

/* A fresh server's timer ids count up from 1 (portcullis.h: "ids count up
 * from 1 in each server"), and a cancel before the server's first timer
 * answers PC_ENOENT, before the start as after it: the registry has no
 * table of chains yet, and the lookup must not read one. */
static void server_timer_ids_count_from_one(void **state)
{
    (void)state;
    atomic_store(&g_never, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    assert_true(create_server_on(&cfg, "127.0.0.1:0") > 0);
    assert_int_equal(pc_server_timer_cancel(g_srv, 1), PC_ENOENT);
    assert_int_equal(pc_server_timer(g_srv, 10, 0, st_never, NULL), PC_ENOTCONN);
    assert_int_equal(pc_server_start(g_srv), 0);
    assert_int_equal(pc_server_timer_cancel(g_srv, 1), PC_ENOENT);
    int64_t a = pc_server_timer(g_srv, 60000, 0, st_never, NULL);
    int64_t b = pc_server_timer(g_srv, 60000, 1, st_never, NULL);
    assert_int_equal(a, 1);
    assert_int_equal(b, 2);
    assert_int_equal(pc_server_timer_cancel(g_srv, a), 0);
    assert_int_equal(pc_server_timer_cancel(g_srv, b), 0);
    assert_int_equal(pc_server_timer_cancel(g_srv, a), PC_ENOENT);
    assert_int_equal(pc_server_timer(g_srv, 60000, 0, st_never, NULL), 3);
    assert_int_equal(atomic_load(&g_never), 0);
}

/* Timers cancelled on their way to a worker (the worker is busy, so their
 * records wait behind the busy function: state ARMING) are gone for the
 * caller at once: a second cancel answers PC_ENOENT, not 0 again. The
 * worker that receives them frees them instead of arming them: with 100
 * such one-minute timers, the library holds what it held before them once
 * the worker is free (armed, each record stayed a minute). */
#define OW_TIMERS 100
static atomic_int g_hold_in, g_hold_go;

static void hold_worker(pc_server_t *s, void *arg)
{
    (void)s;
    (void)arg;
    atomic_store(&g_hold_in, 1);
    while (!atomic_load(&g_hold_go))
        shim_sleep_ms(1);
}

static void server_timer_cancelled_on_its_way(void **state)
{
    (void)state;
    atomic_store(&g_never, 0);
    atomic_store(&g_hold_in, 0);
    atomic_store(&g_hold_go, 0);
    budget_alloc_reset(-1);
    assert_int_equal(pc_set_allocator(&budget_allocator), 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.threads = 1;
    start_server(&cfg);
    /* one timer first, so the table of chains is in the baseline */
    int64_t keep = pc_server_timer(g_srv, 60000, 0, st_never, NULL);
    assert_true(keep > 0);
    assert_int_equal(pc_server_post(g_srv, hold_worker, NULL), 0);
    WAIT_FOR(atomic_load(&g_hold_in), 5000);
    long long before = budget_alloc_live_bytes();
    static int64_t ids[OW_TIMERS];
    static int first[OW_TIMERS], again[OW_TIMERS];
    for (int i = 0; i < OW_TIMERS; i++) {
        ids[i] = pc_server_timer(g_srv, 60000, 0, st_never, NULL);
        first[i] = pc_server_timer_cancel(g_srv, ids[i]);
        again[i] = pc_server_timer_cancel(g_srv, ids[i]);
    }
    long long held = budget_alloc_live_bytes();
    int was_held = atomic_load(&g_hold_in);
    atomic_store(&g_hold_go, 1); /* (before any assert: the stop waits for it) */
    assert_true(was_held);
    for (int i = 0; i < OW_TIMERS; i++) {
        assert_true(ids[i] > 0);
        assert_int_equal(first[i], 0);
        assert_int_equal(again[i], PC_ENOENT);
    }
    assert_true(held - before >= (long long)OW_TIMERS * 64); /* their records, not yet freed */
    long long over = held_beyond(before, 0, 2000);
    if (over > 0)
        fail_msg("%lld bytes still held after %d timers cancelled before they were armed", over,
                 OW_TIMERS);
    assert_int_equal(pc_server_timer_cancel(g_srv, keep), 0);
    assert_int_equal(pc_server_stop(g_srv, 1000), 0);
    assert_int_equal(atomic_load(&g_never), 0);
}

/* A repeating timer that cancels itself from its run is gone when the run
 * returns: its record is freed then (not kept on the wheel until the next
 * period, 1.5 s here), and a second cancel in the same run answers
 * PC_ENOENT (cancelled, and the run is the caller's own, so nothing to
 * wait for), not PC_EBUSY. */
static atomic_int g_sc_runs, g_sc_first, g_sc_again, g_sc_done;
static _Atomic int64_t g_sc_id;

static void st_cancel_twice(pc_server_t *s, void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_sc_runs, 1);
    atomic_store(&g_sc_first, pc_server_timer_cancel(s, atomic_load(&g_sc_id)));
    atomic_store(&g_sc_again, pc_server_timer_cancel(s, atomic_load(&g_sc_id)));
    atomic_store(&g_sc_done, 1);
}

static void server_timer_self_cancel_frees_at_once(void **state)
{
    (void)state;
    atomic_store(&g_sc_runs, 0);
    atomic_store(&g_sc_first, 1);
    atomic_store(&g_sc_again, 1);
    atomic_store(&g_sc_done, 0);
    budget_alloc_reset(-1);
    assert_int_equal(pc_set_allocator(&budget_allocator), 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    /* one timer first, so the table of chains is in the baseline */
    int64_t keep = pc_server_timer(g_srv, 60000, 0, st_never, NULL);
    assert_true(keep > 0);
    shim_sleep_ms(50);
    long long before = budget_alloc_live_bytes();
    /* the id is stored before the first run can look for it (1.5 s) */
    int64_t id = pc_server_timer(g_srv, 1500, 1, st_cancel_twice, NULL);
    atomic_store(&g_sc_id, id);
    assert_true(id > 0);
    WAIT_FOR(atomic_load(&g_sc_done), 5000);
    assert_int_equal(atomic_load(&g_sc_first), 0);
    assert_int_equal(atomic_load(&g_sc_again), PC_ENOENT);
    /* freed as the run returned; a record kept for its next period would
     * be held 1.5 s more: look for up to 1 s */
    assert_true(held_beyond(before, 0, 1000) <= 0);
    assert_int_equal(pc_server_timer_cancel(g_srv, id), PC_ENOENT);
    assert_int_equal(atomic_load(&g_sc_runs), 1);
    assert_int_equal(pc_server_timer_cancel(g_srv, keep), 0);
}

/* A repeating timer keeps to its planned times: each period is counted
 * from the previous deadline, not from the end of the run (portcullis.h:
 * "the next period from the planned time"), so a run that takes 30 ms of
 * a 100 ms period does not push the next ones back. Ten periods take
 * about 1000 ms (each run late by up to 70 ms keeps the plan), where
 * counting from the runs' ends took 1300 ms or more. */
#define KS_RUNS 11
static _Atomic uint64_t g_ks_ns[KS_RUNS];
static atomic_int g_ks_runs;

static void st_keeps_schedule(pc_server_t *s, void *arg)
{
    (void)s;
    (void)arg;
    int n = atomic_fetch_add(&g_ks_runs, 1);
    if (n < KS_RUNS) atomic_store(&g_ks_ns[n], pc__now_ns());
    shim_sleep_ms(30);
}

static void server_timer_repeat_keeps_schedule(void **state)
{
    (void)state;
    atomic_store(&g_ks_runs, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    int64_t id = pc_server_timer(g_srv, 100, 1, st_keeps_schedule, NULL);
    assert_true(id > 0);
    WAIT_FOR(atomic_load(&g_ks_runs) >= KS_RUNS, 10000);
    int rc, tries = 0;
    while ((rc = pc_server_timer_cancel(g_srv, id)) == PC_EBUSY && tries++ < 5000)
        shim_sleep_ms(1);
    assert_true(rc == 0 || rc == PC_ENOENT); /* PC_ENOENT: after a PC_EBUSY */
    uint64_t span = atomic_load(&g_ks_ns[KS_RUNS - 1]) - atomic_load(&g_ks_ns[0]);
    print_message("%d periods of 100 ms (30 ms runs) took %llu ms\n", KS_RUNS - 1,
                  (unsigned long long)(span / 1000000u));
    assert_true(span < 1200000000u);
}

/* pc_server_stop cancels every timer, however many: with 1000 one-minute
 * timers armed, each is unknown after the stop (PC_ENOENT), none ran. The
 * table of chains must not shrink under the stop's walk of it (each
 * cancel frees a record): a shrink mid-walk moved records into chains
 * already walked, and those stayed armed, found by a cancel after the
 * stop. */
#define SC_TIMERS 1000

static void stop_cancels_every_timer(void **state)
{
    (void)state;
    atomic_store(&g_never, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    static int64_t ids[SC_TIMERS];
    for (int i = 0; i < SC_TIMERS; i++) {
        ids[i] = pc_server_timer(g_srv, 60000, i & 1, st_never, NULL);
        assert_true(ids[i] > 0);
    }
    assert_int_equal(pc_server_stop(g_srv, 1000), 0);
    int left = 0;
    for (int i = 0; i < SC_TIMERS; i++)
        if (pc_server_timer_cancel(g_srv, ids[i]) != PC_ENOENT) left++;
    if (left) fail_msg("%d of %d timers not cancelled by the stop", left, SC_TIMERS);
    assert_int_equal(atomic_load(&g_never), 0);
}

static atomic_int g_ct_posts;

static void ct_post(pc_server_t *s, void *arg)
{
    (void)s;
    (void)arg;
    atomic_fetch_add(&g_ct_posts, 1);
}

/* Timers cancelled on every worker leave the workers asleep: a cancel
 * takes the record off the wheel of the worker that armed it (the record
 * says which; a cancel that took it off another worker's left both
 * wheels' counts wrong, and the workers spun on waits of 0 ms, as if a
 * timer were due). Two workers, timers posted to each in turn. */
static void cancelled_timers_leave_workers_asleep(void **state)
{
    (void)state;
    atomic_store(&g_never, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.threads = 2;
    start_server(&cfg);
    int64_t ids[8];
    for (int i = 0; i < 8; i++) {
        ids[i] = pc_server_timer(g_srv, 60000, 0, st_never, NULL);
        assert_true(ids[i] > 0);
    }
    shim_sleep_ms(100); /* armed on their workers' wheels */
    for (int i = 0; i < 8; i++)
        assert_int_equal(pc_server_timer_cancel(g_srv, ids[i]), 0);
    /* a cancel does not wake the worker: posts to each, in turn, make them
     * compute their next wait with what their wheels now hold */
    atomic_store(&g_ct_posts, 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pc_server_post(g_srv, ct_post, NULL), 0);
    WAIT_FOR(atomic_load(&g_ct_posts) == 4, 5000);
    assert_int_equal(atomic_load(&g_ct_posts), 4);
#ifdef __linux__
    /* nothing left to wait for: a few wake-ups at most in half a second
     * (a wheel counting a timer it does not hold: one every pass), and no
     * CPU (a wheel whose count says armed with no timer on it: waits of 0
     * ms, a spin, which wakes nothing) */
    shim_sleep_ms(50);
    long w0 = worker_wakeups(), cpu0 = worker_cpu_ms();
    shim_sleep_ms(1000);
    long woke = worker_wakeups() - w0, busy = worker_cpu_ms() - cpu0;
    if (woke >= 20 || busy >= 150)
        fail_msg("with no timer the workers woke %ld times and used %ld ms of CPU in 1 s", woke,
                 busy);
#endif
    expect_timer_runs(); /* and timers still work */
    assert_int_equal(atomic_load(&g_never), 0);
}

/* ---- 17. a worker's loop: an overloaded worker, released records */

/* A worker that never finds its port empty (120 posted functions that each
 * post themselves again: every wait leaves some staged, so none counts as
 * having seen everything) still runs server timers by the clock and still
 * judges its connections' deadlines, at most JUDGE_LAG_MS (1 s) behind
 * its waits: a 50 ms timer runs within 600 ms (judged by what the worker
 * had seen, it waited that second), and a connection idle for 300 ms is
 * closed by the idle timeout within 5 s (never, if what the worker has
 * seen were not brought to within that second). */
#define FL_CHAINS 120
static atomic_int g_fl_stop, g_fl_live;
static _Atomic uint64_t g_fl_ran_ns;

static void fl_chain(pc_server_t *s, void *arg)
{
    if (!atomic_load(&g_fl_stop) && pc_server_post(s, fl_chain, arg) == 0) return;
    atomic_fetch_sub(&g_fl_live, 1);
}

static void fl_timer(pc_server_t *s, void *arg)
{
    (void)s;
    (void)arg;
    atomic_store(&g_fl_ran_ns, pc__now_ns());
}

static void overloaded_worker_keeps_time(void **state)
{
    (void)state;
    atomic_store(&g_fl_stop, 0);
    atomic_store(&g_fl_live, FL_CHAINS);
    atomic_store(&g_fl_ran_ns, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.threads = 1;
    cfg.idle_timeout_ms = 300;
    start_server(&cfg);
    shim_sock_t c = connect_server(3000);
    expect_echo(c, "then idle");
    for (int i = 0; i < FL_CHAINS; i++)
        assert_int_equal(pc_server_post(g_srv, fl_chain, NULL), 0);
    uint64_t t0 = pc__now_ns();
    assert_true(pc_server_timer(g_srv, 50, 0, fl_timer, NULL) > 0);
    WAIT_FOR(atomic_load(&g_fl_ran_ns) != 0, 5000);
    shim_set_timeout(c, 5000);
    size_t n = 0;
    int closed = shim_wait_close(c, &n);
    uint64_t t1 = pc__now_ns();
    atomic_store(&g_fl_stop, 1); /* (before any assert: the stop would wait for them) */
    WAIT_FOR(atomic_load(&g_fl_live) == 0, 5000);
    assert_int_equal(atomic_load(&g_fl_live), 0);
    uint64_t ran = atomic_load(&g_fl_ran_ns);
    assert_true(ran != 0);
    if (ran - t0 >= 600000000u)
        fail_msg("a 50 ms timer ran %llu ms after it was armed, on an overloaded worker",
                 (unsigned long long)((ran - t0) / 1000000u));
    if (closed != 0)
        fail_msg("a connection idle for 300 ms still open %llu ms later, on an overloaded worker",
                 (unsigned long long)((t1 - t0) / 1000000u));
    shim_close(c); /* (its on_close waits for this FIN) */
    WAIT_FOR(atomic_load(&g_reasons[PC_CLOSE_IDLE_TIMEOUT]) == 1, 2000);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_IDLE_TIMEOUT]), 1);
}

/* A worker holding a closed connection's record hands it to the table
 * within FREE_FLUSH_MS, and then sleeps: the next connection takes that
 * record (the same slot, the id's low half), and the worker does not wake
 * every 10 ms meanwhile (a flush skipped after the waits that found
 * nothing kept it waking, and the record from the table). */
static void released_record_handed_back_then_sleeps(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.threads = 1;
    start_server(&cfg);
    shim_sock_t a = connect_server(3000);
    pc_conn_id_t ida = wait_open_id(1);
    expect_echo(a, "a");
    shim_close(a);
    WAIT_FOR(atomic_load(&g_closes) == 1, 5000);
    assert_int_equal(atomic_load(&g_closes), 1);
    shim_sleep_ms(100); /* released (io_uring: its cancelled receive back), then handed */
#ifdef __linux__
    long w0 = worker_wakeups();
    shim_sleep_ms(500);
    long woke = worker_wakeups() - w0;
    if (woke >= 10) fail_msg("the worker woke %ld times in 500 ms with nothing to do", woke);
#else
    shim_sleep_ms(500);
#endif
    shim_sock_t b = connect_server(3000);
    pc_conn_id_t idb = wait_open_id(2);
    expect_echo(b, "b");
    assert_int_equal((uint32_t)idb, (uint32_t)ida);
    assert_true(idb != ida);
    shim_close(b);
}

int main(int argc, char **argv)
{
    shim_init();
    pc_log_set_level(PC_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(send_to_16b_bounded, teardown),
        cmocka_unit_test_teardown(send_to_racers_cap_exact, teardown),
        cmocka_unit_test_teardown(send_queue_limit_per_connection, teardown),
        cmocka_unit_test_teardown(send_queue_limit_exact_fit, teardown),
#ifdef __linux__
        cmocka_unit_test_teardown(send_queued_other_thread_no_dip, teardown), /* not on Windows */
#endif
        cmocka_unit_test_teardown(post_to_pause_resume, teardown),
        cmocka_unit_test_teardown(post_to_pause_resume_at_once, teardown),
        cmocka_unit_test_teardown(post_to_after_close_gets_null, teardown),
        cmocka_unit_test_teardown(stale_ids_every_call, teardown),
        cmocka_unit_test_teardown(sendv_lengths_wrap_refused, teardown),
        cmocka_unit_test_teardown(empty_send_from_other_thread, teardown),
        cmocka_unit_test_teardown(strand_calls_after_close, teardown),
        cmocka_unit_test_teardown(on_sent_order, teardown),
        cmocka_unit_test_teardown(close_keeps_bytes_sent_by_id, teardown),
        cmocka_unit_test_teardown(on_sent_counts_sends_by_id, teardown),
        cmocka_unit_test_teardown(sends_and_posts_keep_order, teardown),
        cmocka_unit_test_teardown(own_callback_by_id_acts_at_once, teardown),
        cmocka_unit_test_teardown(conn_timer_fires_and_cancelled, teardown),
        cmocka_unit_test_teardown(conn_timer_never_early, teardown),
        cmocka_unit_test_teardown(server_timers, teardown),
        cmocka_unit_test_teardown(timer_cancel_waits_for_run, teardown),
        cmocka_unit_test_teardown(server_timer_never_early, teardown),
        cmocka_unit_test_teardown(server_timer_cancel_cost_flat, teardown),
        cmocka_unit_test_teardown(server_timer_memory_returns, budget_teardown),
        cmocka_unit_test_teardown(write_only_client_kept_alive, teardown),
        cmocka_unit_test_teardown(chat_broadcast, teardown),
        cmocka_unit_test_teardown(abort_id_refuses_later_sends, teardown),
        cmocka_unit_test_teardown(hidden_until_on_open, teardown),
        cmocka_unit_test_teardown(hidden_refuses_guessed_ids, teardown),
        cmocka_unit_test_teardown(server_timer_cancels_one_due_with_it, teardown),
        cmocka_unit_test_teardown(worker_sleeps_until_timer, teardown),
        cmocka_unit_test_teardown(outbound_post_and_close_wait_for_open, teardown),
        cmocka_unit_test_teardown(outbound_close_in_on_open_keeps_order, teardown),
        cmocka_unit_test_teardown(outbound_first_kick_keeps_count, teardown),
        cmocka_unit_test_teardown(outbound_peer_speaks_before_connect_taken, teardown),
#ifdef __linux__
        cmocka_unit_test_teardown(outbound_slow_connect_keeps_order, teardown), /* not on Windows */
#endif
        cmocka_unit_test_teardown(post_racing_stop_runs_or_refused, teardown),
        cmocka_unit_test_teardown(reused_record_new_generation, teardown),
        cmocka_unit_test_teardown(ids_before_any_connection, teardown),
        cmocka_unit_test_teardown(conn_ids_bounded_by_max, teardown),
        cmocka_unit_test_teardown(abort_id_drops_at_once_and_stays_abort, teardown),
        cmocka_unit_test_teardown(conn_timer_refuses_bad_calls, teardown),
        cmocka_unit_test_teardown(server_timer_stall_skips_periods, teardown),
        cmocka_unit_test_teardown(conn_timer_not_run_by_idle_deadline, teardown),
        cmocka_unit_test_teardown(on_sent_for_sends_by_id_alone, teardown),
        cmocka_unit_test_teardown(chat_fan_out_past_first_snapshot, teardown),
        cmocka_unit_test_teardown(chat_longest_line_and_one_more, teardown),
        cmocka_unit_test_teardown(server_timer_ids_count_from_one, teardown),
        cmocka_unit_test_teardown(server_timer_cancelled_on_its_way, budget_teardown),
        cmocka_unit_test_teardown(server_timer_self_cancel_frees_at_once, budget_teardown),
        cmocka_unit_test_teardown(server_timer_repeat_keeps_schedule, teardown),
        cmocka_unit_test_teardown(stop_cancels_every_timer, teardown),
        cmocka_unit_test_teardown(cancelled_timers_leave_workers_asleep, teardown),
        cmocka_unit_test_teardown(overloaded_worker_keeps_time, teardown),
        cmocka_unit_test_teardown(released_record_handed_back_then_sleeps, teardown),
    };
    if (PICK_TEST(tests, argc, argv) != 0) return 1;
    return cmocka_run_group_tests_name("embed", tests, NULL, NULL);
}
