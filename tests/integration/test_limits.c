/* SPDX-License-Identifier: MIT */
/* Timeouts and memory bounds on a live server: the header (first-request)
 * timeout that trickled bytes cannot extend, the write timeout for a peer
 * that stops reading (and not for one that reads slowly), the global cap on
 * buffered output, and the on_shutdown notice of a graceful stop. Portable:
 * runs on every backend and under Wine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#endif

#include <cmocka.h>

#include "portcullis.h"
#include "core/thread.h"
#include "harness.h"
#include "pick.h"
#include "shim.h"

/* Trickle one byte every step_ms until the server ends the connection or
 * limit_ms pass. Returns the ms from start to the server's FIN/reset, or -1
 * if it never came. */
static int trickle_until_closed(shim_sock_t s, uint64_t start, int step_ms, int limit_ms)
{
    shim_set_timeout(s, step_ms);
    while (shim_now_ms() - start < (uint64_t)limit_ms) {
        if (shim_send_all(s, "a", 1) != 0) return (int)(shim_now_ms() - start);
        char buf[64];
        int r = shim_recv_some(s, buf, sizeof buf);
        if (r == 0 || r == -1) return (int)(shim_now_ms() - start);
    }
    return -1;
}

/* ---- header timeout ------------------------------------------------------------- */

/* on_data: '!' completes a "head" (cancels the header timeout), '?' starts a
 * new one (arms it for 300 ms); everything is echoed. */
static void hdr_on_data(pc_conn_t *c, const void *data, size_t len)
{
    const char *p = data;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '!') assert_int_equal(pc_conn_set_header_timeout(c, 0), 0);
        if (p[i] == '?') assert_int_equal(pc_conn_set_header_timeout(c, 300), 0);
    }
    pc_conn_send(c, data, len);
}

static void header_timeout_trickle(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.header_timeout_ms = 400;
    cfg.idle_timeout_ms = 0;
    cfg.cb.on_data = hdr_on_data;
    start_server(&cfg);

    /* a client that trickles a byte every 100 ms: bytes arrive all the
     * time, yet it is cut off once the 400 ms have passed */
    uint64_t t0 = shim_now_ms();
    shim_sock_t slow = connect_server(2000);
    /* a client that completes its head at once stays */
    shim_sock_t good = connect_server(2000);
    expect_echo(good, "head!");
    int cut = trickle_until_closed(slow, t0, 100, 3000);
    assert_true(cut >= 350);
    assert_true(cut <= 1500);
    shim_close(slow);
    WAIT_FOR(atomic_load(&g_reasons[PC_CLOSE_HEADER_TIMEOUT]) == 1, 3000);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_HEADER_TIMEOUT]), 1);
    shim_sleep_ms(200); /* well past 400 ms since it opened */
    expect_echo(good, "still here");

    /* a second "request": armed again (300 ms), then trickled: cut again,
     * and the trickle does not push the deadline back */
    uint64_t t1 = shim_now_ms();
    expect_echo(good, "?");
    cut = trickle_until_closed(good, t1, 50, 3000);
    assert_true(cut >= 250);
    assert_true(cut <= 1200);
    shim_close(good);
    WAIT_FOR(atomic_load(&g_reasons[PC_CLOSE_HEADER_TIMEOUT]) == 2, 3000);
    assert_int_equal(stats().closed[PC_CLOSE_HEADER_TIMEOUT], 2);
}

/* A connection that never sends a byte is cut by the header timeout too
 * (the idle timeout is off). One at a time, several times over four
 * workers: on a shared port (Windows) a connection's first event often runs
 * on a worker other than its home one, and the deadline must not wait for
 * some other traffic to wake a worker up (it did, once). */
static void header_timeout_silent(void **state)
{
    (void)state;
    enum { ROUNDS = 6 };
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.threads = 4;
    cfg.header_timeout_ms = 300;
    start_server(&cfg);
    for (int i = 0; i < ROUNDS; i++) {
        uint64_t t0 = shim_now_ms();
        shim_sock_t s = connect_server(3000);
        size_t n = 0;
        assert_int_equal(shim_wait_close(s, &n), 0); /* FIN: a graceful close */
        uint64_t dt = shim_now_ms() - t0;
        assert_true(dt >= 250 && dt <= 1500);
        shim_close(s);
        WAIT_FOR(atomic_load(&g_closes) == i + 1, 3000);
        assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_HEADER_TIMEOUT]), i + 1);
    }
}

/* ---- write timeout -------------------------------------------------------------- */

/* A server (cfg) that queues big bytes of the pattern on every connection
 * as it opens (B_BIG_ON_OPEN), and a client to it whose receive buffer is
 * rcvbuf bytes. */
static shim_sock_t connect_big_sender(pc_server_config_t *cfg, size_t big, int rcvbuf)
{
    g_behaviour = B_BIG_ON_OPEN;
    g_big = big;
    start_server(cfg);
    shim_sock_t s = connect_server(3000);
    shim_set_rcvbuf(s, rcvbuf);
    return s;
}

/* A peer that never reads while 32 MiB are queued for it: reset with
 * PC_CLOSE_WRITE_TIMEOUT once no progress was made for 300 ms. At once
 * (portcullis.h: "is reset"), not by a graceful close, which would wait
 * close_linger_ms more for a peer known not to read, holding the queue:
 * with a linger far longer than the wait here, only the reset ends the
 * connection in time, and the peer sees the reset. */
static void write_timeout_stalled_peer(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.write_timeout_ms = 300;
    cfg.close_linger_ms = 30000;
    cfg.send_high_water = 64u << 20; /* the whole burst is queued */
    shim_sock_t s = connect_big_sender(&cfg, (size_t)32 << 20, 16 << 10);
    WAIT_FOR(atomic_load(&g_closes) == 1, 5000);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_WRITE_TIMEOUT]), 1);
    assert_int_equal(stats().closed[PC_CLOSE_WRITE_TIMEOUT], 1);
    WAIT_FOR(stats().send_queued_bytes == 0, 2000);
    assert_int_equal(stats().send_queued_bytes, 0); /* the queue was dropped */
    shim_set_timeout(s, 5000);
    size_t n = 0;
    assert_int_equal(shim_wait_reset(s, &n), -1); /* reset, not FIN */
    assert_true(n < g_big);
    shim_close(s);
}

#ifndef _WIN32
/* A send stalled part-way on an echo connection: the server's socket has a
 * small send buffer, its peer s reads nothing, 128 KiB are echoed. Returns
 * what the server's kernel took by then (the bytes in s's receive queue
 * and in the server's send queue, and the 1 byte echoed first), part of it
 * written by the stalled send; *inq: the bytes in s's receive queue. */
static uint64_t stall_echo(shim_sock_t s, int *inq)
{
    shim_set_rcvbuf(s, 16 << 10);
    expect_echo(s, "x");
    int fd = server_end(s), small = 4096;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    enum { N = 128 << 10 };
    unsigned char *buf = malloc(N);
    fill_pattern(buf, 0, N);
    assert_int_equal(shim_send_all(s, buf, N), 0);
    free(buf);
    /* what the kernel took so far: only grows until the connection ends */
    int in = 0, out = 0;
    uint64_t until = shim_now_ms() + 500;
    while (shim_now_ms() < until && atomic_load(&g_closes) == 0) {
        int i = 0, o = 0;
        if (ioctl(s, FIONREAD, &i) == 0 && ioctl(fd, SIOCOUTQ, &o) == 0 && i + o > in + out) {
            in = i;
            out = o;
        }
        shim_sleep_ms(10);
    }
    assert_true(in > 0 && out > 0 && in + out < N); /* stalled part-way */
    *inq = in;
    return 1 + (uint64_t)in + (uint64_t)out;
}

/* stats.bytes_out counts at least what the kernel took (stall_echo) */
static void expect_bytes_out_at_least(uint64_t took)
{
    WAIT_FOR(stats().bytes_out >= took, 2000);
    if (stats().bytes_out < took)
        fprintf(stderr, "bytes_out %llu, the kernel took %llu\n",
                (unsigned long long)stats().bytes_out, (unsigned long long)took);
    assert_true(stats().bytes_out >= took);
}

/* stats.bytes_out counts what a send wrote before the write timeout's reset
 * cancelled it. (A backend that completed a cancelled send as having
 * written nothing lost that part from bytes_out.) */
static void write_timeout_counts_partial_send(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.write_timeout_ms = 1000;
    start_server(&cfg);
    shim_sock_t s = connect_server(3000);
    int inq = 0;
    uint64_t took = stall_echo(s, &inq);
    WAIT_FOR(atomic_load(&g_closes) == 1, 5000);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_WRITE_TIMEOUT]), 1);
    shim_set_timeout(s, 5000);
    size_t n = 0;
    assert_int_equal(shim_wait_reset(s, &n), -1);
    assert_true(n >= (size_t)inq);
    expect_bytes_out_at_least(took);
    shim_close(s);
}

/* The same when the send fails: the peer resets the connection while the
 * send waits for room. (A backend that failed a send as having written
 * nothing lost its written part from bytes_out.) */
static void peer_reset_counts_partial_send(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    shim_sock_t s = connect_server(3000);
    int inq = 0;
    uint64_t took = stall_echo(s, &inq);
    shim_close_reset(s);
    WAIT_FOR(atomic_load(&g_closes) == 1, 5000);
    assert_int_equal(atomic_load(&g_closes), 1);
    assert_int_equal(
        atomic_load(&g_reasons[PC_CLOSE_RESET]) + atomic_load(&g_reasons[PC_CLOSE_ERROR]), 1);
    expect_bytes_out_at_least(took);
}
#endif

/* The send queue starts in a function posted to the connection, with bytes
 * sent by id after it in the same kick (counted as queued before their
 * chunks are): the write timeout still starts with the queue. It did not:
 * the start was judged from the byte count, which the bytes sent by id
 * after the post had already made non-zero, so no deadline was armed and a
 * peer that never reads kept 32 MiB queued for good. */
static void post_send_32mib(pc_conn_t *c, void *arg)
{
    (void)arg;
    if (!c) return;
    size_t n = 32u << 20;
    unsigned char *buf = malloc(n);
    fill_pattern(buf, 0, n);
    assert_int_equal(pc_conn_send(c, buf, n), 0);
    free(buf);
}

static void write_timeout_send_in_post(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.threads = 1; /* worker_hold holds the connection's worker */
    cfg.write_timeout_ms = 300;
    cfg.send_high_water = 64u << 20;
    cfg.send_queue_limit = 128u << 20;
    start_server(&cfg);
    shim_sock_t s = connect_server(3000);
    shim_set_rcvbuf(s, 16 << 10);
    WAIT_FOR(atomic_load(&g_opens) == 1, 2000);
    uint64_t id = atomic_load(&g_last_id);
    worker_hold(g_srv); /* the post and the send by id go in one kick */
    assert_int_equal(pc_server_post_to(g_srv, id, post_send_32mib, NULL), 0);
    assert_int_equal(pc_server_send_to(g_srv, id, "tail", 4), 0);
    worker_release();
    WAIT_FOR(atomic_load(&g_closes) == 1, 5000);
    assert_int_equal(atomic_load(&g_closes), 1);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_WRITE_TIMEOUT]), 1);
    assert_int_equal(stats().closed[PC_CLOSE_WRITE_TIMEOUT], 1);
    WAIT_FOR(stats().send_queued_bytes == 0, 2000);
    assert_int_equal(stats().send_queued_bytes, 0);
    shim_close(s);
}

/* Read g_big bytes from s, 16 KiB at a time with pace_ms between reads,
 * and expect them to be the pattern. Returns 1 if the server still had
 * bytes queued at a read late_ms or more after the first (0: not looked
 * at). */
static int recv_pattern_paced(shim_sock_t s, unsigned pace_ms, uint64_t late_ms)
{
    unsigned char *got = malloc(g_big), *want = malloc(g_big);
    fill_pattern(want, 0, g_big);
    uint64_t t0 = shim_now_ms();
    int queued_late = 0;
    size_t off = 0;
    while (off < g_big) {
        size_t n = g_big - off < 16384 ? g_big - off : 16384;
        size_t r = shim_recv_exact(s, got + off, n);
        if (r != n)
            fprintf(stderr, "short read at %zu: closes %d write-timeout %d\n", off,
                    atomic_load(&g_closes), atomic_load(&g_reasons[PC_CLOSE_WRITE_TIMEOUT]));
        assert_int_equal(r, n);
        off += n;
        if (late_ms && shim_now_ms() - t0 >= late_ms && stats().send_queued_bytes > 0)
            queued_late = 1;
        if (pace_ms) shim_sleep_ms(pace_ms);
    }
    assert_memory_equal(got, want, g_big);
    free(got);
    free(want);
    return queued_late;
}

/* A peer that reads slowly but steadily is not a stalled peer: 4 MiB
 * arrive exactly, at about 1 MiB/s, with a 3 s write timeout. (Progress is
 * seen when the kernel takes more bytes, and with megabytes of socket send
 * buffer it wakes the sender only once a good part of that has drained, so
 * a write timeout, like nginx's send_timeout, is meant in seconds.) */
static void write_timeout_slow_reader_survives(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.write_timeout_ms = 3000;
    shim_sock_t s = connect_big_sender(&cfg, (size_t)4 << 20, 32 << 10);
    (void)recv_pattern_paced(s, 15, 0);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_WRITE_TIMEOUT]), 0);
    assert_int_equal(atomic_load(&g_closes), 0);
    shim_close(s);
}

#ifndef _WIN32
/* The write timeout bounds a stretch without progress, not the whole
 * send: with the server's send buffer made small, 4 MiB for a peer reading
 * about 1 MiB/s stay queued for several write timeouts (checked: still
 * queued after 2.5 s with a 1 s timeout), and the connection survives
 * because every send that completes moves the deadline. */
static void write_timeout_progress_moves(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.write_timeout_ms = 1000;
    cfg.send_high_water = 64u << 20;
    shim_sock_t s = connect_big_sender(&cfg, (size_t)4 << 20, 32 << 10);
    WAIT_FOR(atomic_load(&g_opens) == 1, 2000);
    int small = 32 << 10;
    assert_int_equal(setsockopt(server_end(s), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    /* the queue outlives the write timeout more than twice */
    assert_true(recv_pattern_paced(s, 15, 2500));
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_WRITE_TIMEOUT]), 0);
    assert_int_equal(atomic_load(&g_closes), 0);
    shim_close(s);
}
#endif

#ifndef _WIN32
/* A peer that stops reading leaves a send waiting for room: the backend
 * waits for writability (POLLOUT / EPOLLOUT), it does not retry at once.
 * Measured: the process spends next to no CPU while 4 MiB stay queued for
 * a second (a send retried at once on EAGAIN spins a worker, about a core),
 * and once the peer reads, every byte arrives, in order. */
static void stalled_peer_costs_no_cpu(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.send_high_water = 64u << 20; /* the whole burst is queued */
    shim_sock_t s = connect_big_sender(&cfg, (size_t)4 << 20, 16 << 10);
    /* the socket buffers are full: nothing more leaves for 200 ms */
    uint64_t out = 0, since = shim_now_ms(), until = since + 5000;
    while (shim_now_ms() < until && shim_now_ms() - since < 200) {
        pc_server_stats_t st = stats();
        if (st.bytes_out != out || !st.send_queued_bytes) {
            out = st.bytes_out;
            since = shim_now_ms();
        }
        shim_sleep_ms(10);
    }
    assert_true(stats().send_queued_bytes > 0);
    expect_idle_cpu(4); /* under a quarter of one core */
    shim_set_timeout(s, 10000);
    (void)recv_pattern_paced(s, 0, 0);
    assert_int_equal(atomic_load(&g_closes), 0);
    shim_close(s);
}
#endif

/* ---- deferral at capacity ------------------------------------------------------ */

/* A new client to g_port is refused, reset or closed: never an answer (the
 * connect itself may fail if the reset wins the race). Returns the ms from
 * t0 until the client saw it. */
static int wait_rejected(uint64_t t0, int timeout_ms)
{
    shim_sock_t b = shim_connect("127.0.0.1", g_port, NULL, timeout_ms);
    if (b != SHIM_INVALID) {
        shim_send_all(b, "b", 1);
        char ch;
        int n = shim_recv_some(b, &ch, 1);
        shim_close(b);
        assert_true(n == -1 || n == 0); /* rejected, not served, not timed out */
    }
    return (int)(shim_now_ms() - t0);
}

/* One slot, PC_CAPACITY_DEFER, post-handshake (Linux; Windows without
 * conditional accept), with or without accept batching. */
static void defer_config(pc_server_config_t *cfg, unsigned timeout_ms, unsigned batch_us)
{
    base_config(cfg);
    cfg->max_connections = 1;
    cfg->at_capacity = PC_CAPACITY_DEFER;
    cfg->defer_timeout_ms = timeout_ms;
    cfg->accept_batch_us = batch_us; /* Linux: a non-blocking listener and poll() */
    /* native Windows would defer before the handshake (connect() itself
     * waits; test_windows covers it): here the accept thread's pauses */
    cfg->conditional_accept = PC_COND_ACCEPT_OFF;
}

/* A client arriving while the accept thread already pauses for capacity is
 * rejected when that pause ends, at most defer_timeout_ms after it connected
 * (it used to be held for a second full timeout, ~1.95 s), and is counted as
 * deferred once (it was 3). */
static void run_defer_timeout_bounds_wait(unsigned batch_us)
{
    pc_server_config_t cfg;
    defer_config(&cfg, 1000, batch_us);
    start_server(&cfg);
    shim_sock_t a = connect_server(3000);
    expect_echo(a, "a");
    shim_sleep_ms(50); /* the accept thread pauses for capacity */
    int took = wait_rejected(shim_now_ms(), 5000);
    pc_server_stats_t st = stats();
    fprintf(stderr, "deferred client rejected after %d ms (defer_timeout_ms 1000), deferred %llu\n",
            took, (unsigned long long)st.deferred);
    assert_true(took < 1500);
    assert_int_equal(st.deferred, 1);
    assert_int_equal(st.rejected[PC_STEP_CAPACITY], 1);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(atomic_load(&g_opens), 1);
    expect_echo(a, "still served"); /* the holder is untouched */
    shim_close(a);
}

static void defer_timeout_bounds_wait(void **state)
{
    (void)state;
    run_defer_timeout_bounds_wait(0);
}

static void defer_timeout_bounds_wait_batch(void **state)
{
    (void)state;
    run_defer_timeout_bounds_wait(1000);
}

/* A pause for capacity that ended with no client queued rejects nobody: the
 * client arriving later still gets its own defer_timeout_ms, and is counted
 * once (it was 2: the empty pause counted too). */
static void run_defer_timeout_after_empty_pause(unsigned batch_us)
{
    pc_server_config_t cfg;
    defer_config(&cfg, 600, batch_us);
    start_server(&cfg);
    shim_sock_t a = connect_server(3000);
    expect_echo(a, "a");
    shim_sleep_ms(900); /* a pause of 600 ms began and ended, nobody queued */
    assert_int_equal(stats().deferred, 0);
    int took = wait_rejected(shim_now_ms(), 5000);
    pc_server_stats_t st = stats();
    fprintf(stderr, "late client rejected after %d ms (defer_timeout_ms 600), deferred %llu\n",
            took, (unsigned long long)st.deferred);
    assert_true(took >= 400); /* deferred, not rejected at once */
    assert_true(took < 900);
    assert_int_equal(st.deferred, 1);
    assert_int_equal(st.rejected[PC_STEP_CAPACITY], 1);
    shim_close(a);
}

static void defer_timeout_after_empty_pause(void **state)
{
    (void)state;
    run_defer_timeout_after_empty_pause(0);
}

static void defer_timeout_after_empty_pause_batch(void **state)
{
    (void)state;
    run_defer_timeout_after_empty_pause(1000);
}

/* Clients queued while at capacity are counted as deferred while they wait,
 * once each, and served in turn as the slot frees: the pauses around them
 * count nothing more (each pause used to count one, whether or not anyone
 * was queued). */
static void run_defer_counted_once_when_admitted(unsigned batch_us)
{
    enum { N = 4 };
    pc_server_config_t cfg;
    defer_config(&cfg, 5000, batch_us);
    start_server(&cfg);
    shim_sock_t s[N];
    s[0] = connect_server(3000);
    expect_echo(s[0], "0");
    shim_sleep_ms(50);
    for (int i = 1; i < N; i++) { /* queued behind the one slot */
        s[i] = connect_server(5000);
        char m = (char)('0' + i);
        assert_int_equal(shim_send_all(s[i], &m, 1), 0);
    }
    /* counted while they wait (Windows without conditional accept sees one
     * queued connection at a time: the others as they reach the head) */
    WAIT_FOR(stats().deferred >= 1, 2000);
#ifndef _WIN32
    WAIT_FOR(stats().deferred == N - 1, 2000);
    assert_int_equal(stats().deferred, N - 1);
#endif
    shim_sleep_ms(200);
    assert_int_equal(atomic_load(&g_opens), 1); /* they wait */
    for (int i = 1; i < N; i++) {
        shim_close(s[i - 1]);
        char ch;
        assert_int_equal(shim_recv_exact(s[i], &ch, 1), 1); /* served once the slot frees */
        assert_int_equal(ch, '0' + i);
        shim_sleep_ms(100); /* the accept thread pauses again (s[i] holds the slot) */
#ifndef _WIN32
        assert_int_equal(stats().deferred, N - 1); /* nothing more */
#endif
    }
    pc_server_stats_t st = stats();
    assert_int_equal(st.deferred, N - 1);
    assert_int_equal(st.rejected[PC_STEP_CAPACITY], 0);
    assert_int_equal(st.accepted, N);
    shim_close(s[N - 1]);
}

/* Each wave of clients queued behind the one slot is counted: the client
 * taken off the backlog after a pause leaves that pause's count, so the
 * one queued later, behind the next holder, is counted by the next pause. */
static void defer_counted_per_wave(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    defer_config(&cfg, 5000, 0);
    start_server(&cfg);
    shim_sock_t s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = connect_server(5000);
        char m = (char)('0' + i), got = 0;
        assert_int_equal(shim_send_all(s[i], &m, 1), 0);
        if (i > 0) { /* queued behind s[i - 1]: counted while it waits */
            WAIT_FOR(stats().deferred == (uint64_t)i, 2000);
            assert_int_equal(stats().deferred, i);
            shim_close(s[i - 1]); /* the slot frees: s[i] is served */
        }
        assert_int_equal(shim_recv_exact(s[i], &got, 1), 1);
        assert_int_equal(got, m);
    }
    shim_close(s[2]);
    pc_server_stats_t st = stats();
    assert_int_equal(st.deferred, 2);
    assert_int_equal(st.accepted, 3);
    assert_int_equal(st.rejected[PC_STEP_CAPACITY], 0);
}

#ifndef _WIN32
/* A client joining the backlog during a pause that has counted another one
 * already is counted once: each look at the backlog counts only the clients
 * beyond those it counted (not on Windows: without conditional accept it
 * sees one queued connection at a time). */
static void defer_counted_once_across_looks(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    defer_config(&cfg, 5000, 0);
    start_server(&cfg);
    shim_sock_t s[3];
    s[0] = connect_server(3000);
    expect_echo(s[0], "0"); /* holds the one slot */
    s[1] = connect_server(5000);
    WAIT_FOR(stats().deferred == 1, 2000);
    assert_int_equal(stats().deferred, 1);
    s[2] = connect_server(5000); /* behind it, in the same pause */
    WAIT_FOR(stats().deferred >= 2, 2000);
    shim_sleep_ms(200); /* the pause looks at the backlog a few more times */
    assert_int_equal(stats().deferred, 2);
    assert_int_equal(atomic_load(&g_opens), 1);
    for (int i = 1; i < 3; i++) { /* served in turn as the slot frees */
        shim_close(s[i - 1]);
        expect_echo(s[i], "next");
    }
    shim_close(s[2]);
    assert_int_equal(stats().accepted, 3);
    assert_int_equal(stats().deferred, 2);
    assert_int_equal(stats().rejected[PC_STEP_CAPACITY], 0);
}
#endif

/* Clients that connect while the one slot is taken and reset while they wait
 * in the backlog withdrew; they are not accept errors, and the next client is
 * served at once (under Wine, WSAAccept reports such a client as WSAENOTCONN,
 * which was counted as an error with a back-off doubling per client: 10
 * resets delayed the next echo by ~4.2 s). */
static void reset_in_backlog_not_an_error(void **state)
{
    (void)state;
    enum { N = 10 };
    pc_server_config_t cfg;
    defer_config(&cfg, 5000, 0);
    start_server(&cfg);
    shim_sock_t a = connect_server(3000);
    expect_echo(a, "a");
    shim_sock_t gone[N];
    for (int i = 0; i < N; i++) {
        gone[i] = connect_server(3000);
    }
    shim_sleep_ms(100);
    for (int i = 0; i < N; i++)
        shim_close_reset(gone[i]);
    shim_sleep_ms(100);
    shim_close(a);
    WAIT_FOR(atomic_load(&g_closes) >= 1, 3000);
    uint64_t t0 = shim_now_ms();
    shim_sock_t b = connect_server(10000);
    expect_echo(b, "b");
    uint64_t took = shim_now_ms() - t0;
    pc_server_stats_t st = stats();
    fprintf(stderr, "after %d clients reset in the backlog: echo in %llu ms, accept_errors %llu\n",
            N, (unsigned long long)took, (unsigned long long)st.accept_errors);
    assert_int_equal(st.accept_errors, 0);
    assert_true(took < 1000);
    shim_close(b);
}

static void defer_counted_once_when_admitted(void **state)
{
    (void)state;
    run_defer_counted_once_when_admitted(0);
}

static void defer_counted_once_when_admitted_batch(void **state)
{
    (void)state;
    run_defer_counted_once_when_admitted(1000);
}

/* ---- global cap on buffered output ---------------------------------------------- */

static atomic_int g_refused, g_first_rc;

static void cap_on_open(pc_conn_t *c)
{
    enum { A = 200 << 10, B = 100 << 10 };
    unsigned char *buf = malloc(A);
    fill_pattern(buf, 0, A);
    atomic_store(&g_first_rc, pc_conn_send(c, buf, A));
    /* 300 KiB would pass the 256 KiB cap: refused, nothing queued */
    if (pc_conn_send(c, buf, B) == PC_ENOBUFS) atomic_fetch_add(&g_refused, 1);
    free(buf);
    assert_int_equal(pc_conn_close(c), 0);
}

/* A cap below PC_MAX_BUFFERED_MIN is refused by pc_server_create (under one
 * chunk it refused every send, and pc-chat --max-buffered 1000 sent nothing,
 * silently); 0 (no cap) and the least cap are taken. */
static void buffered_cap_least(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    pc_server_t *s = NULL;
    size_t caps[] = {1, 1000, PC_MAX_BUFFERED_MIN - 1};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        cfg.max_buffered_bytes = caps[i];
        assert_int_equal(pc_server_create(&cfg, &s), PC_EINVAL);
        assert_null(s);
    }
    size_t good[] = {0, PC_MAX_BUFFERED_MIN};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cfg.max_buffered_bytes = good[i];
        assert_int_equal(pc_server_create(&cfg, &s), 0);
        pc_server_destroy(s);
        s = NULL;
    }
}

static void buffered_cap_refuses(void **state)
{
    (void)state;
    atomic_store(&g_refused, 0);
    atomic_store(&g_first_rc, 1);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.max_buffered_bytes = 256u << 10;
    cfg.cb.on_open = cap_on_open;
    start_server(&cfg);
    shim_sock_t s = connect_server(5000);
    shim_set_rcvbuf(s, 16 << 10);
    shim_sleep_ms(100); /* the server has queued what it could */
    enum { A = 200 << 10 };
    unsigned char *got = malloc(A + 1), *want = malloc(A);
    fill_pattern(want, 0, A);
    assert_int_equal(shim_recv_exact(s, got, A), A);
    assert_memory_equal(got, want, A);
    size_t extra = 0;
    assert_int_equal(shim_wait_close(s, &extra), 0); /* then FIN, nothing more */
    assert_int_equal(extra, 0);
    free(got);
    free(want);
    shim_close(s);
    assert_int_equal(atomic_load(&g_first_rc), 0);
    assert_int_equal(atomic_load(&g_refused), 1);
    assert_int_equal(stats().send_refused, 1);
    WAIT_FOR(stats().send_queued_bytes == 0, 2000);
    assert_int_equal(stats().send_queued_bytes, 0);
}

/* A send the cap refuses while the connection's own queue holds bytes
 * stops its reading (what it reads would make more output) until that
 * queue has drained to the low water: each byte the client sends makes the
 * server send 1 MiB, and the client reads nothing until a send is refused;
 * the byte it sends then is read only once it has read enough. */
#define CR_BLOCK (1u << 20)
static atomic_int g_cr_calls, g_cr_refused, g_cr_early;
static atomic_int g_cr_after_refusal; /* set by the refusal, cleared by a send */

static void cr_data(pc_conn_t *c, const void *data, size_t len)
{
    (void)data;
    (void)len;
    static unsigned char block[CR_BLOCK];
    if (atomic_load(&g_cr_after_refusal) && pc_conn_send_queued(c) > (16u << 10))
        atomic_fetch_add(&g_cr_early, 1);
    int rc = pc_conn_send(c, block, sizeof block);
    if (rc == PC_ENOBUFS) atomic_fetch_add(&g_cr_refused, 1);
    atomic_store(&g_cr_after_refusal, rc == PC_ENOBUFS);
    atomic_fetch_add(&g_cr_calls, 1);
}

static void buffered_cap_refusal_pauses_reading(void **state)
{
    (void)state;
    atomic_store(&g_cr_calls, 0);
    atomic_store(&g_cr_refused, 0);
    atomic_store(&g_cr_early, 0);
    atomic_store(&g_cr_after_refusal, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.max_buffered_bytes = 8u << 20;
    cfg.send_high_water = 64u << 20; /* only the refusal pauses */
    cfg.send_low_water = 16u << 10;
    cfg.cb.on_data = cr_data;
    start_server(&cfg);
    shim_sock_t s = connect_server(5000);
    shim_set_rcvbuf(s, 16 << 10);
    int n = 0;
    while (!atomic_load(&g_cr_refused) && n < 100) {
        assert_int_equal(shim_send_all(s, "x", 1), 0);
        n++;
        WAIT_FOR(atomic_load(&g_cr_calls) == n, 5000);
        assert_int_equal(atomic_load(&g_cr_calls), n);
    }
    assert_int_equal(atomic_load(&g_cr_refused), 1);
    assert_int_equal(shim_send_all(s, "y", 1), 0);
    /* not read while the queue holds megabytes (a reading server would
     * take the byte at once) */
    WAIT_FOR(atomic_load(&g_cr_calls) > n, 1000);
    assert_int_equal(atomic_load(&g_cr_calls), n);
    /* the client reads: the queue drains, then the byte is read */
    static char sink[1 << 16];
    shim_set_timeout(s, 10000);
    while (atomic_load(&g_cr_calls) == n)
        if (shim_recv_some(s, sink, sizeof sink) <= 0) break;
    WAIT_FOR(atomic_load(&g_cr_calls) == n + 1, 5000);
    assert_int_equal(atomic_load(&g_cr_calls), n + 1);
    assert_int_equal(atomic_load(&g_cr_early), 0);
    shim_close(s);
}

/* A send that fits the room left in the queue's tail chunk needs no new
 * memory, so max_buffered_bytes takes nothing for it: it is taken even when
 * the cap has less left than a new chunk would need. on_open (the sends
 * start once it returns, so nothing leaves the queue meanwhile) fills the
 * 1 MiB cap with two big chunks and a 4 KiB one holding 1000 bytes, up to
 * 100 bytes short of the cap (the chunk header's size learned from
 * send_held_bytes), then sends exactly the tail's room. */
#define FIT_CAP (1u << 20)
static atomic_int g_fit_rc[4], g_fit_done;
static _Atomic uint64_t g_fit_held;

static void fit_open(pc_conn_t *c)
{
    static unsigned char buf[FIT_CAP];
    pc_server_stats_t st;
    size_t b = FIT_CAP / 2;
    atomic_store(&g_fit_rc[0], pc_conn_send(c, buf, b));
    pc_server_stats(pc_conn_server(c), &st);
    size_t hdr = (size_t)st.send_held_bytes - b;
    size_t d = FIT_CAP - 3 * hdr - b - 4096 - 100;
    atomic_store(&g_fit_rc[1], pc_conn_send(c, buf, d));
    atomic_store(&g_fit_rc[2], pc_conn_send(c, buf, 1000));
    atomic_store(&g_fit_rc[3], pc_conn_send(c, buf, 4096 - 1000)); /* the tail's room */
    pc_server_stats(pc_conn_server(c), &st);
    atomic_store(&g_fit_held, st.send_held_bytes);
    atomic_store(&g_fit_done, 1);
    pc_conn_abort(c);
}

static void buffered_cap_tail_fit_takes_nothing(void **state)
{
    (void)state;
    atomic_store(&g_fit_done, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.max_buffered_bytes = FIT_CAP;
    cfg.send_queue_limit = 64u << 20;
    cfg.cb.on_open = fit_open;
    start_server(&cfg);
    shim_sock_t s = connect_server(5000);
    WAIT_FOR(atomic_load(&g_fit_done), 5000);
    assert_int_equal(atomic_load(&g_fit_done), 1);
    for (int i = 0; i < 4; i++)
        assert_int_equal(atomic_load(&g_fit_rc[i]), 0);
    assert_int_equal(atomic_load(&g_fit_held), FIT_CAP - 100);
    assert_int_equal(stats().send_refused, 0);
    shim_close(s);
}

/* ---- graceful stop tells the application -------------------------------------- */

static atomic_int g_shutdowns, g_stopping_seen;

static void sd_on_shutdown(pc_conn_t *c)
{
    atomic_fetch_add(&g_shutdowns, 1);
    if (pc_server_stopping(pc_conn_server(c))) atomic_fetch_add(&g_stopping_seen, 1);
    assert_int_equal(pc_conn_send(c, "bye\n", 4), 0);
}

static void stop_main(void *arg)
{
    (void)arg;
    pc_server_stop(g_srv, 5000);
}

static void stop_notifies_application(void **state)
{
    (void)state;
    atomic_store(&g_shutdowns, 0);
    atomic_store(&g_stopping_seen, 0);
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.cb.on_shutdown = sd_on_shutdown;
    start_server(&cfg);
    enum { N = 5 };
    shim_sock_t socks[N];
    for (int i = 0; i < N; i++) {
        socks[i] = connect_server(5000);
        expect_echo(socks[i], "hello");
    }
    assert_int_equal(pc_server_stopping(g_srv), 0);
    pc_thread_t t;
    assert_int_equal(pc__thread_start(&t, stop_main, NULL, "stopper"), 0);
    for (int i = 0; i < N; i++) {
        char buf[8];
        assert_int_equal(shim_recv_exact(socks[i], buf, 4), 4);
        assert_memory_equal(buf, "bye\n", 4);
        size_t extra = 0;
        assert_int_equal(shim_wait_close(socks[i], &extra), 0); /* FIN, not a reset */
        assert_int_equal(extra, 0);
        shim_close(socks[i]);
    }
    pc__thread_join(t);
    assert_int_equal(atomic_load(&g_shutdowns), N);
    assert_int_equal(atomic_load(&g_stopping_seen), N);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_SERVER_STOP]), N);
    assert_int_equal(pc_server_stopping(g_srv), 1);
}

/* ---- close without linger ------------------------------------------------------ */

static void nolinger_on_data(pc_conn_t *c, const void *data, size_t len)
{
    (void)data;
    (void)len;
    assert_int_equal(pc_conn_send(c, "bye", 3), 0);
    assert_int_equal(pc_conn_close_nolinger(c), 0);
}

/* A server whose on_data is on_data, and a connection to it that sent "x". */
static shim_sock_t start_and_poke(void (*on_data)(pc_conn_t *, const void *, size_t))
{
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.cb.on_data = on_data;
    start_server(&cfg);
    shim_sock_t s = connect_server(3000);
    assert_int_equal(shim_send_all(s, "x", 1), 0);
    return s;
}

/* pc_conn_close_nolinger: the peer gets everything queued, then a FIN (no
 * reset), and the connection is closed on the server right away, without
 * waiting for the peer's FIN (which pc_conn_close would, up to the linger). */
static void close_nolinger(void **state)
{
    (void)state;
    shim_sock_t s = start_and_poke(nolinger_on_data);
    char buf[8];
    assert_int_equal(shim_recv_exact(s, buf, 3), 3);
    assert_memory_equal(buf, "bye", 3);
    size_t extra = 0;
    assert_int_equal(shim_wait_close(s, &extra), 0); /* FIN */
    assert_int_equal(extra, 0);
    /* our socket is still open, yet the server has closed its side */
    WAIT_FOR(atomic_load(&g_closes) == 1, 2000);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_LOCAL]), 1);
    shim_close(s);
}

static void close_on_data(pc_conn_t *c, const void *data, size_t len)
{
    (void)data;
    (void)len;
    assert_int_equal(pc_conn_close(c), 0);
}

/* stats.bytes_in counts every byte received, also what a closing
 * connection reads and discards while it waits for the peer's FIN (the
 * io_uring backend counted only bytes received while open: 1 here). */
static void linger_bytes_counted(void **state)
{
    (void)state;
    shim_sock_t s = start_and_poke(close_on_data);
    size_t extra = 0;
    assert_int_equal(shim_wait_close(s, &extra), 0); /* the server's FIN */
    assert_int_equal(extra, 0);
    static char more[64 * 1024];
    memset(more, 'm', sizeof more);
    assert_int_equal(shim_send_all(s, more, sizeof more), 0); /* read and discarded */
    shim_shutdown_write(s);
    WAIT_FOR(atomic_load(&g_closes) == 1, 5000);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_LOCAL]), 1);
    WAIT_FOR(stats().bytes_in == 1 + sizeof more, 5000);
    assert_int_equal(stats().bytes_in, 1 + sizeof more);
    shim_close(s);
}

#ifndef _WIN32
/* The peer sent more than the server read when it closed without linger:
 * the kernel resets the connection at close(), and the reply must have
 * left before (Linux; the last bytes of a closing connection are sent with
 * MSG_MORE so that the FIN rides with them, and a close() with unread bytes
 * would drop a held segment instead of sending it). With io_uring the
 * receive the server keeps posted may already have taken the rest of the
 * bytes, so there the close may not reset: the reply must arrive either way. */
static void close_nolinger_unread_bytes(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.cb.on_data = nolinger_on_data;
    cfg.recv_buffer_size = 4096; /* on_data runs on the first 4 KiB */
    start_server(&cfg);
    shim_sock_t s = connect_server(3000);
    /* more than the server reads before it closes (it reads up to 16 x 4 KiB
     * per wake-up and goes on discarding while closing), so bytes are left
     * unread; the reset this provokes may reach us while we are still
     * sending, so the send may fail: the reply must arrive either way */
    static char big[256 * 1024];
    memset(big, 'x', sizeof big);
    (void)shim_send_all(s, big, sizeof big);
    char buf[8];
    assert_int_equal(shim_recv_exact(s, buf, 3), 3); /* then a reset */
    assert_memory_equal(buf, "bye", 3);
    WAIT_FOR(atomic_load(&g_closes) == 1, 2000);
    assert_int_equal(atomic_load(&g_closes), 1);
    shim_close(s);
}
#endif

/* Arming the header timeout while one is pending keeps the earlier
 * deadline (portcullis.h), so a protocol that arms it as each piece of a
 * request comes in cannot have it pushed back by a peer that trickles
 * them. header_timeout_trickle arms once and trickles other bytes, so an
 * arm that replaced the pending deadline passed it; here every trickled
 * byte is a '?' that arms 300 ms again, and the cut still comes about
 * 300 ms after the first. */
static void header_timeout_rearm_keeps_deadline(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.header_timeout_ms = 0;
    cfg.cb.on_data = hdr_on_data;
    start_server(&cfg);
    shim_sock_t s = connect_server(2000);
    expect_echo(s, "x"); /* open, nothing armed */
    uint64_t t0 = shim_now_ms();
    int cut = -1;
    shim_set_timeout(s, 50);
    while (cut < 0 && shim_now_ms() - t0 < 3000) {
        if (shim_send_all(s, "?", 1) != 0) {
            cut = (int)(shim_now_ms() - t0);
            break;
        }
        char buf[64];
        int r = shim_recv_some(s, buf, sizeof buf);
        if (r == 0 || r == -1) cut = (int)(shim_now_ms() - t0);
    }
    assert_true(cut >= 250);
    assert_true(cut <= 1200);
    shim_close(s);
    WAIT_FOR(atomic_load(&g_reasons[PC_CLOSE_HEADER_TIMEOUT]) == 1, 3000);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_HEADER_TIMEOUT]), 1);
}

int main(int argc, char **argv)
{
    shim_init();
    pc_log_set_level(PC_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(header_timeout_trickle, teardown),
        cmocka_unit_test_teardown(header_timeout_rearm_keeps_deadline, teardown),
        cmocka_unit_test_teardown(header_timeout_silent, teardown),
        cmocka_unit_test_teardown(write_timeout_stalled_peer, teardown),
        cmocka_unit_test_teardown(write_timeout_slow_reader_survives, teardown),
        cmocka_unit_test_teardown(write_timeout_send_in_post, teardown),
#ifndef _WIN32
        cmocka_unit_test_teardown(write_timeout_counts_partial_send, teardown), /* not on Windows */
        cmocka_unit_test_teardown(peer_reset_counts_partial_send, teardown),    /* not on Windows */
        cmocka_unit_test_teardown(stalled_peer_costs_no_cpu, teardown),         /* not on Windows */
        cmocka_unit_test_teardown(write_timeout_progress_moves, teardown),      /* not on Windows */
#endif
        cmocka_unit_test(buffered_cap_least),
        cmocka_unit_test_teardown(buffered_cap_refuses, teardown),
        cmocka_unit_test_teardown(buffered_cap_refusal_pauses_reading, teardown),
        cmocka_unit_test_teardown(buffered_cap_tail_fit_takes_nothing, teardown),
        cmocka_unit_test_teardown(defer_timeout_bounds_wait, teardown),
        cmocka_unit_test_teardown(defer_timeout_after_empty_pause, teardown),
        cmocka_unit_test_teardown(defer_counted_once_when_admitted, teardown),
        cmocka_unit_test_teardown(defer_counted_per_wave, teardown),
#ifndef _WIN32
        cmocka_unit_test_teardown(defer_counted_once_across_looks, teardown), /* not on Windows */
#endif
        cmocka_unit_test_teardown(reset_in_backlog_not_an_error, teardown),
        cmocka_unit_test_teardown(defer_timeout_bounds_wait_batch, teardown),
        cmocka_unit_test_teardown(defer_timeout_after_empty_pause_batch, teardown),
        cmocka_unit_test_teardown(defer_counted_once_when_admitted_batch, teardown),
        cmocka_unit_test_teardown(stop_notifies_application, teardown),
        cmocka_unit_test_teardown(close_nolinger, teardown),
        cmocka_unit_test_teardown(linger_bytes_counted, teardown),
#ifndef _WIN32
        cmocka_unit_test_teardown(close_nolinger_unread_bytes, teardown), /* not on Windows */
#endif
    };
    if (PICK_TEST(tests, argc, argv) != 0) return 1;
    return cmocka_run_group_tests_name("limits", tests, NULL, NULL);
}
