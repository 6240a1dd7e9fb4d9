/* SPDX-License-Identifier: MIT */
/* Integration tests written for the Windows engine (IOCP, WSAAccept accept
 * thread), run under Wine by CTest. Most scenarios are portable and also run
 * on the Linux backends; the Windows-only ones (error translation, the IOCP
 * dequeue/skip-on-success variants) skip elsewhere. Run one test by passing
 * its name as the first argument. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portcullis.h"
#include "core/thread.h"
#include "harness.h"
#include "pick.h"

#ifdef _WIN32
#include <psapi.h>
#include "iocp/error_win.h"
#include "iocp/server.h"
#else
#include <unistd.h>
#endif

/* ---- log capture (the echo server, its counters and helpers are harness.c's) ----------- */

#define LOG_LINES 64
static pc_mutex_t g_log_lock;
static char g_log[LOG_LINES][512];
static int g_nlog;

static void capture_log(void *user, pc_log_level_t level, const char *line)
{
    (void)user;
    (void)level;
    pc__mutex_lock(&g_log_lock);
    if (g_nlog < LOG_LINES) snprintf(g_log[g_nlog++], sizeof g_log[0], "%s", line);
    pc__mutex_unlock(&g_log_lock);
}

/* Number of captured lines containing all of the given substrings. */
static int log_count(const char *a, const char *b)
{
    int n = 0;
    pc__mutex_lock(&g_log_lock);
    for (int i = 0; i < g_nlog; i++)
        if (strstr(g_log[i], a) && (!b || strstr(g_log[i], b))) n++;
    pc__mutex_unlock(&g_log_lock);
    return n;
}

static void log_start(void)
{
    pc__mutex_lock(&g_log_lock);
    g_nlog = 0;
    pc__mutex_unlock(&g_log_lock);
    pc_log_set_handler(capture_log, NULL);
    pc_log_set_level(PC_LOG_DEBUG); /* Linux logs its (only) mode at debug level */
}

/* harness.c's teardown, then the log back to its default */
static int win_teardown(void **state)
{
    teardown(state);
    pc_log_set_handler(NULL, NULL);
    pc_log_set_level(PC_LOG_WARN);
    return 0;
}

/* After recv said 0 (EOF): did the connection end with a reset? A Wine
 * client whose recv starts after the reset arrived gets 0, not
 * WSAECONNRESET (a Linux client of the same Wine server sees the reset);
 * but the next send fails at once, where after a graceful close it would
 * succeed. */
static int eof_was_reset(shim_sock_t s)
{
    int failed = 0;
    for (int i = 0; i < 3 && !failed; i++) {
        failed = shim_send_all(s, "?", 1) != 0;
        if (!failed) shim_sleep_ms(20);
    }
    return failed;
}

/* Resident memory of this process in bytes (working set on Windows). */
static uint64_t resident_bytes(void)
{
#ifdef _WIN32
    PROCESS_MEMORY_COUNTERS pmc;
    if (GetProcessMemoryInfo(GetCurrentProcess(), &pmc, sizeof pmc)) return pmc.WorkingSetSize;
    return 0;
#else
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, rss = 0;
    if (!f) return 0;
    if (fscanf(f, "%lu %lu", &size, &rss) != 2) rss = 0;
    fclose(f);
    return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
#endif
}

/* ---- accept mode ---------------------------------------------------------------------- */

#ifdef _WIN32
/* Does this stack take SO_CONDITIONAL_ACCEPT on a new socket (Wine refuses
 * it: WSAENOPROTOOPT)? */
static int stack_takes_conditional_accept(void)
{
    SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    assert_true(s != INVALID_SOCKET);
    DWORD one = 1;
    int ok = setsockopt(s, SOL_SOCKET, SO_CONDITIONAL_ACCEPT, (const char *)&one, sizeof one) == 0;
    closesocket(s);
    return ok;
}
#endif

/* The mode in force is logged once per listener and matches the stats. */
static void check_mode_reported(pc_cond_accept_t setting)
{
    log_start();
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.conditional_accept = setting;
    start_server(&cfg);
    assert_int_equal(log_count("conditional accept", NULL), 1);
    pc_server_stats_t st = stats();
    if (log_count("conditional accept: pre-handshake", NULL) == 1) {
        assert_int_equal(st.accept_mode, PC_ACCEPT_MODE_PRE_HANDSHAKE);
        assert_int_not_equal(setting, PC_COND_ACCEPT_OFF);
    } else {
        assert_int_equal(st.accept_mode, PC_ACCEPT_MODE_POST_HANDSHAKE);
        assert_int_equal(log_count("conditional accept: post-handshake", NULL), 1);
#ifdef _WIN32
        if (setting == PC_COND_ACCEPT_OFF) {
            assert_int_equal(log_count("conditional accept: post-handshake (reason:", NULL), 1);
        } else {
            /* asked for and refused: the reason is given (Wine: WSAENOPROTOOPT) */
            assert_int_equal(
                log_count("conditional accept: post-handshake fallback (reason:", NULL), 1);
        }
#endif
    }
#ifdef _WIN32
    assert_int_equal(st.backend, PC_BACKEND_IOCP);
    /* pre-handshake exactly when asked for and the stack took the option */
    int pre = setting != PC_COND_ACCEPT_OFF && stack_takes_conditional_accept();
    assert_int_equal(st.accept_mode,
                     pre ? PC_ACCEPT_MODE_PRE_HANDSHAKE : PC_ACCEPT_MODE_POST_HANDSHAKE);
#endif
    /* and the server works in that mode */
    shim_sock_t s = connect_server(3000);
    expect_echo(s, "mode");
    shim_close(s);
}

static void accept_mode_reported(void **state)
{
    (void)state;
    check_mode_reported(PC_COND_ACCEPT_AUTO);
}

static void accept_mode_off_reported(void **state)
{
    (void)state;
    check_mode_reported(PC_COND_ACCEPT_OFF);
}

static void accept_mode_on_reported(void **state)
{
    (void)state;
    check_mode_reported(PC_COND_ACCEPT_ON);
}

/* ---- verdicts ------------------------------------------------------------------------- */

/* A denied source never reaches on_open: refused before the handshake
 * (pre-handshake mode) or reset right after it (post-handshake). */
static void denied_source_never_opens(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    g_reject_src = "127.0.0.2";
    start_server(&cfg);
    for (int i = 0; i < 3; i++) {
        shim_sock_t s = shim_connect("127.0.0.1", g_port, "127.0.0.2", 3000);
        if (s != SHIM_INVALID && i == 0) {
            /* post-handshake, a client that sends nothing: the end it sees
             * is a reset, not a FIN (after bytes sent, a closed socket
             * answers with a reset whichever way it was closed) */
            size_t n = 0;
            assert_int_equal(shim_wait_reset(s, &n), -1);
            assert_int_equal(n, 0);
            shim_close(s);
        } else if (s != SHIM_INVALID) { /* post-handshake: must end without a byte served */
            shim_send_all(s, "hello", 5);
            char buf[16];
            int r = shim_recv_some(s, buf, sizeof buf);
            assert_true(r == -1 || r == 0);            /* never data, never a hang */
            if (r == 0) assert_true(eof_was_reset(s)); /* a reset, not a graceful close */
            shim_close(s);
        }
    }
    WAIT_FOR(stats().rejected[PC_STEP_CONDITION] == 3, 3000);
    pc_server_stats_t st = stats();
    assert_int_equal(st.rejected[PC_STEP_CONDITION], 3);
    assert_int_equal(st.accepted, 0);
    assert_int_equal(atomic_load(&g_opens), 0);
    assert_int_equal(st.active, 0);
    /* an allowed source is served */
    shim_sock_t ok = shim_connect("127.0.0.1", g_port, "127.0.0.1", 3000);
    assert_true(ok != SHIM_INVALID);
    expect_echo(ok, "allowed");
    shim_close(ok);
    assert_int_equal(atomic_load(&g_opens), 1);
}

/* The user condition defers a few times, then accepts: the connection is
 * served, nothing leaks from the capacity accounting. */
static void condition_defer_then_accept(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.max_connections = 1;
    atomic_store(&g_defer_left, 3);
    start_server(&cfg);
    shim_sock_t s = connect_server(5000);
    expect_echo(s, "deferred, then served");
    assert_int_equal(atomic_load(&g_defer_left), 0);
    assert_true(stats().deferred >= 1);
    assert_int_equal(stats().active, 1);
    shim_close(s);
    WAIT_FOR(stats().active == 0, 3000);
    /* the one slot is free again */
    s = connect_server(3000);
    expect_echo(s, "again");
    shim_close(s);
}

typedef struct closer_s {
    shim_sock_t s;
    int delay_ms;
    atomic_int opens_before; /* on_open count just before closing */
    _Atomic uint64_t closed_at;
} closer_t;

static void closer_main(void *arg)
{
    closer_t *cl = arg;
    shim_sleep_ms(cl->delay_ms);
    atomic_store(&cl->opens_before, atomic_load(&g_opens));
    atomic_store(&cl->closed_at, shim_now_ms());
    shim_close(cl->s);
}

/* max_connections = 1: the second client waits (deferred, not refused) and is
 * served once the first one leaves. */
static void defer_under_capacity(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.max_connections = 1;
    cfg.at_capacity = PC_CAPACITY_DEFER;
    cfg.defer_timeout_ms = 10000;
    start_server(&cfg);
    shim_sock_t c1 = connect_server(3000);
    expect_echo(c1, "first");
    assert_int_equal(atomic_load(&g_opens), 1);

    /* c1 leaves in 500 ms, from another thread: with pre-handshake accept the
     * second connect() itself waits until the verdict changes */
    closer_t cl;
    cl.s = c1;
    cl.delay_ms = 500;
    atomic_store(&cl.opens_before, -1);
    atomic_store(&cl.closed_at, 0);
    pc_thread_t t;
    assert_int_equal(pc__thread_start(&t, closer_main, &cl, "closer"), 0);

    shim_sock_t c2 = connect_server(8000);
    expect_echo(c2, "second");
    uint64_t served_at = shim_now_ms();
    pc__thread_join(t);
    /* c2 was served only after c1 closed, and never refused */
    assert_int_equal(atomic_load(&cl.opens_before), 1);
    assert_true(atomic_load(&cl.closed_at) != 0 && served_at >= atomic_load(&cl.closed_at));
    pc_server_stats_t st = stats();
    assert_true(st.deferred >= 1);
    assert_int_equal(st.rejected[PC_STEP_CAPACITY], 0);
    assert_int_equal(st.accepted, 2);
    assert_int_equal(atomic_load(&g_opens), 2);
    shim_close(c2);
}

/* ---- many idle connections ---------------------------------------------------------- */

#define IDLE_CONNS 2000

/* 2000 idle connections are held with zero-byte reads (no receive buffer
 * each), the server still echoes on them and on new ones. */
static void idle_2000_connections(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.recv_buffer_size = 64u << 10;
    start_server(&cfg);
    shim_sock_t *cs = calloc(IDLE_CONNS, sizeof *cs);
    assert_non_null(cs);
    /* warm up allocator and stacks before measuring */
    shim_sock_t w = connect_server(5000);
    expect_echo(w, "warm");
    uint64_t before = resident_bytes();
    uint64_t t0 = shim_now_ms();
    for (int i = 0; i < IDLE_CONNS; i++) {
        cs[i] = connect_server(10000);
    }
    WAIT_FOR(stats().active == IDLE_CONNS + 1 && atomic_load(&g_opens) == IDLE_CONNS + 1, 30000);
    assert_int_equal(stats().active, IDLE_CONNS + 1);
    assert_int_equal(atomic_load(&g_opens), IDLE_CONNS + 1);
    uint64_t after = resident_bytes();
    uint64_t grow = after > before ? after - before : 0;
    print_message("%d idle connections opened in %llu ms; resident memory +%llu KiB "
                  "(%llu bytes per connection, both ends in this process)\n",
                  IDLE_CONNS, (unsigned long long)(shim_now_ms() - t0),
                  (unsigned long long)(grow >> 10), (unsigned long long)(grow / IDLE_CONNS));
    /* A 64 KiB buffer pinned per idle connection would be 125 MiB here. */
    if (before && after) assert_true(grow < (uint64_t)IDLE_CONNS * (16u << 10));

    /* still echoing: on held connections spread over the set, and a new one */
    for (int i = 0; i < IDLE_CONNS; i += IDLE_CONNS / 10)
        expect_echo(cs[i], "still here");
    expect_echo(cs[IDLE_CONNS - 1], "last one");
    expect_echo(w, "warm again");
    shim_sock_t n = connect_server(5000);
    expect_echo(n, "newcomer");
    shim_close(n);
    shim_close(w);
    for (int i = 0; i < IDLE_CONNS; i++)
        shim_close(cs[i]);
    free(cs);
    WAIT_FOR(stats().active == 0, 30000);
    assert_int_equal(stats().active, 0);
    assert_int_equal(atomic_load(&g_closes), IDLE_CONNS + 2);
}

/* ---- close with operations pending ---------------------------------------------------- */

/* A client that connects and sends nothing leaves a read pending in the
 * kernel; stopping the server cancels it cleanly. */
static void stop_with_read_pending(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    shim_sock_t s = connect_server(3000);
    WAIT_FOR(atomic_load(&g_opens) == 1, 3000);
    assert_int_equal(atomic_load(&g_opens), 1);
    shim_sleep_ms(50); /* the zero-byte read is pending now */
    uint64_t t0 = shim_now_ms();
    assert_int_equal(pc_server_stop(g_srv, 300), 0);
    uint64_t took = shim_now_ms() - t0;
    assert_true(took < 3000);
    assert_int_equal(atomic_load(&g_closes), 1);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_SERVER_STOP]), 1);
    pc_server_stats_t st = stats();
    assert_int_equal(st.active, 0);
    assert_int_equal(st.send_queued_bytes, 0);
    /* the client sees the end of the connection: FIN, then reset after the drain */
    char buf[8];
    int r = shim_recv_some(s, buf, sizeof buf);
    assert_true(r == 0 || r == -1);
    shim_close(s);
    pc_server_destroy(g_srv);
    g_srv = NULL;
}

/* pc_conn_abort from another thread while a large overlapped send is in
 * flight: the send is cancelled, the client gets a reset, nothing leaks. */
static void abort_during_big_send(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    cfg.send_high_water = 64u << 20;
    cfg.send_low_water = 1u << 20;
    g_behaviour = B_BIG_ON_OPEN; /* on_open queues g_big bytes, keeps the connection */
    g_big = 16u << 20;
    start_server(&cfg);
    shim_sock_t s = connect_server(5000);
    shim_set_rcvbuf(s, 8192); /* and never read: the send stays in flight */
    WAIT_FOR(atomic_load(&g_last_conn) != NULL, 3000);
    pc_conn_t *c = atomic_load(&g_last_conn);
    assert_non_null(c);
    WAIT_FOR(stats().bytes_out > 0 || stats().send_queued_bytes > 0, 3000);
    shim_sleep_ms(100);
    assert_true(stats().send_queued_bytes > 0); /* not all of it could go */
    assert_int_equal(pc_conn_abort(c), 0);
    WAIT_FOR(atomic_load(&g_closes) == 1, 3000);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_ABORT]), 1);
    WAIT_FOR(stats().send_queued_bytes == 0 && stats().active == 0, 3000);
    assert_int_equal(stats().send_queued_bytes, 0);
    assert_int_equal(stats().active, 0);
    size_t n = 0;
    int r = shim_wait_close(s, &n); /* reset, after whatever was in flight */
    assert_true(r == -1 || (r == 0 && eof_was_reset(s)));
    assert_true(n < (16u << 20)); /* and never the whole 16 MiB */
    shim_close(s);
    /* the server is unharmed */
    g_behaviour = B_ECHO;
    shim_sock_t s2 = connect_server(3000);
    expect_echo(s2, "after abort");
    shim_close(s2);
}

/* Stopping right after start, with the accept thread waiting for a
 * connection: the stop's event must wake it promptly (the listener stays
 * open until the thread has been joined). */
static void stop_unblocks_accept(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    for (int i = 0; i < 3; i++) {
        start_server(&cfg);
        shim_sleep_ms(20);
        uint64_t t0 = shim_now_ms();
        assert_int_equal(pc_server_stop(g_srv, 100), 0);
        assert_true(shim_now_ms() - t0 < 2000);
        pc_server_destroy(g_srv);
        g_srv = NULL;
    }
}

/* ---- Windows only ------------------------------------------------------------------ */

#ifdef _WIN32
static void win_error_mapping(void **state)
{
    (void)state;
    assert_int_equal(pc__from_win32(0), 0);
    assert_int_equal(pc__from_win32(WSAEWOULDBLOCK), PC_EAGAIN);
    assert_int_equal(pc__from_win32(WSAECONNRESET), PC_ECONNRESET);
    assert_int_equal(pc__from_win32(ERROR_NETNAME_DELETED), PC_ECONNRESET);
    assert_int_equal(pc__from_win32(WSAECONNREFUSED), PC_ECONNREFUSED);
    assert_int_equal(pc__from_win32(WSAECONNABORTED), PC_ECONNABORTED);
    assert_int_equal(pc__from_win32(WSAENOPROTOOPT), PC_ENOPROTOOPT);
    assert_int_equal(pc__from_win32(WSAEADDRINUSE), PC_EADDRINUSE);
    assert_int_equal(pc__from_win32(WSAEACCES), PC_EACCES);
    assert_int_equal(pc__from_win32(WSAEMFILE), PC_EMFILE);
    assert_int_equal(pc__from_win32(WSAENOBUFS), PC_ENOBUFS);
    assert_int_equal(pc__from_win32(WSAETIMEDOUT), PC_ETIMEDOUT);
    assert_int_equal(pc__from_win32(ERROR_OPERATION_ABORTED), PC_ECANCELED);
    assert_int_equal(pc__from_win32(WSATRY_AGAIN), PC_EAGAIN);
    assert_int_equal(pc__from_win32(WSAESHUTDOWN), PC_EPIPE);
    assert_int_equal(pc__from_win32(0x7fffabcdUL), PC_EUNKNOWN);
    assert_int_equal(pc__from_ntstatus(0), 0);
    assert_int_equal(pc__from_ntstatus((long)0xC0000120L), PC_ECANCELED);  /* CANCELLED */
    assert_int_equal(pc__from_ntstatus((long)0xC000020DL), PC_ECONNRESET); /* CONNECTION_RESET */
    assert_int_equal(pc__from_ntstatus((long)0xC0000236L),
                     PC_ECONNREFUSED); /* CONNECTION_REFUSED */
    assert_int_equal(pc__from_ntstatus((long)0xC0000022L),
                     PC_EACCES); /* ACCESS_DENIED, via ntdll */
    /* the statuses a socket's operations complete with, each to its own code */
    assert_int_equal(pc__from_ntstatus((long)0xC0000237L), PC_EPIPE); /* GRACEFUL_DISCONNECT */
    assert_int_equal(pc__from_ntstatus((long)0xC0000241L),
                     PC_ECONNABORTED);                                    /* CONNECTION_ABORTED */
    assert_int_equal(pc__from_ntstatus((long)0xC00000B5L), PC_ETIMEDOUT); /* IO_TIMEOUT */
}

/* The stop must not close the listening handle while the accept thread may
 * still pass it to WSAAccept: between the thread's stop check and the call,
 * a closed handle's value can be reused by any new socket or handle, and
 * WSAAccept would then wait on (and take a connection from) someone else's
 * listener. The hook holds the accept thread in that gap until the stop has
 * begun, then watches the handle for a while: it must still be the
 * listener. */
static volatile LONG g_gap_calls, g_gap_saw_stop, g_gap_closed;

static void gap_hook(sock_t lfd)
{
    if (InterlockedIncrement(&g_gap_calls) != 1) return; /* the first call only */
    uint64_t end = shim_now_ms() + 5000;
    while (!pc_server_stopping(g_srv) && shim_now_ms() < end)
        shim_sleep_ms(1);
    g_gap_saw_stop = pc_server_stopping(g_srv);
    end = shim_now_ms() + 300;
    while (shim_now_ms() < end) {
        int type = 0, len = (int)sizeof type;
        if (getsockopt(lfd, SOL_SOCKET, SO_TYPE, (char *)&type, &len) != 0) {
            g_gap_closed = 1;
            break;
        }
        shim_sleep_ms(1);
    }
}

static void stop_keeps_listener_until_accept_done(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    g_gap_calls = g_gap_saw_stop = g_gap_closed = 0;
    accept_win_gap_hook = gap_hook;
    start_server(&cfg);
    WAIT_FOR(g_gap_calls >= 1, 3000);
    assert_true(g_gap_calls >= 1);
    uint64_t t0 = shim_now_ms();
    int rc = pc_server_stop(g_srv, 0);
    accept_win_gap_hook = NULL;
    assert_int_equal(rc, 0);
    assert_true(shim_now_ms() - t0 < 3000);
    assert_true(g_gap_saw_stop);
    assert_int_equal(g_gap_closed, 0);
}

/* An idle server's accept thread sleeps: once a connection has been taken,
 * it resets the listener's event and recorded FD_ACCEPT before it waits
 * again. One that left the event set would find it signalled at every wait
 * and call WSAAccept in a loop, a core's worth of CPU while nobody connects. */
static void idle_accept_thread_sleeps(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    shim_sock_t c = connect_server(3000);
    expect_echo(c, "taken"); /* FD_ACCEPT was signalled, and the connection taken */
    shim_close(c);
    WAIT_FOR(stats().active == 0, 3000);
    assert_int_equal(stats().active, 0);
    /* idle: next to nothing (0 ms here); spinning under Wine took ~300 ms,
     * much of its time being the wineserver's */
    expect_idle_cpu(10);
}

/* What pw_input_held relies on (a peer deadline is put off while a
 * connection's receive has completed but its result is not yet dispatched):
 * a pending overlapped receive has Internal = STATUS_PENDING, a completed one
 * its result. Checked on a zero-byte WSARecv, the backend's receive. */
static void overlapped_internal_pending(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    shim_sock_t c = connect_server(3000);
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    assert_non_null(ov.hEvent);
    WSABUF none = {0, NULL};
    DWORD got = 0, flags = 0;
    int r = WSARecv(c, &none, 1, &got, &flags, &ov, NULL);
    assert_true(r == SOCKET_ERROR && WSAGetLastError() == WSA_IO_PENDING);
    assert_true(ov.Internal == (ULONG_PTR)0x103L); /* STATUS_PENDING */
    assert_int_equal(shim_send_all(c, "x", 1), 0); /* the echo completes it */
    assert_int_equal(WaitForSingleObject(ov.hEvent, 5000), WAIT_OBJECT_0);
    assert_true(ov.Internal != (ULONG_PTR)0x103L);
    CloseHandle(ov.hEvent);
    shim_close(c);
}

/* Accepted connections are not inheritable, like every socket the engine
 * makes (the listener too): a child process started with handle
 * inheritance would otherwise hold each open connection, and closing it
 * here would not end it for the peer (nor free the port). WSAAccept does not
 * carry the listener's WSA_FLAG_NO_HANDLE_INHERIT over (Wine, and Windows
 * too), so the engine clears the flag itself. */
static void accepted_socket_not_inheritable(void **state)
{
    (void)state;
    pc_server_config_t cfg;
    base_config(&cfg);
    start_server(&cfg);
    shim_sock_t c = connect_server(3000);
    expect_echo(c, "opened"); /* the worker has the socket by now */
    SOCKET s = shim_socket_on_port(g_port, c);
    assert_true(s != INVALID_SOCKET);
    DWORD flags = 0;
    assert_true(GetHandleInformation((HANDLE)s, &flags));
    assert_int_equal(flags & HANDLE_FLAG_INHERIT, 0);
    SOCKET l = shim_socket_on_port(g_port, SHIM_INVALID);
    assert_true(l != INVALID_SOCKET);
    flags = 0;
    assert_true(GetHandleInformation((HANDLE)l, &flags));
    assert_int_equal(flags & HANDLE_FLAG_INHERIT, 0);
    shim_close(c);
}

/* There is no kernel filter on Windows: a listener asked for one runs
 * without, and says so as Linux does when the kernel refuses a tier (a
 * warning for an explicit tier, the reason in pc_server_listener_filter);
 * after the stop, the listener is closed. */
static void kernel_filter_refusal_reported(void **state)
{
    (void)state;
    static const pc_kernel_filter_t asked[] = {PC_KERNEL_FILTER_EBPF, PC_KERNEL_FILTER_CBPF,
                                               PC_KERNEL_FILTER_AUTO, PC_KERNEL_FILTER_OFF};
    for (size_t i = 0; i < sizeof asked / sizeof asked[0]; i++) {
        log_start();
        pc_server_config_t cfg;
        base_config(&cfg);
        cfg.kernel_filter = asked[i];
        start_server(&cfg);
        int explicit_tier = asked[i] == PC_KERNEL_FILTER_EBPF || asked[i] == PC_KERNEL_FILTER_CBPF;
        assert_int_equal(log_count("kernel filter", "refused, running off"), explicit_tier);
        pc_listener_filter_t lf;
        assert_int_equal(pc_server_listener_filter(g_srv, 0, &lf), 0);
        assert_int_equal(lf.tier, PC_KERNEL_FILTER_OFF);
        if (asked[i] == PC_KERNEL_FILTER_OFF)
            assert_string_equal(lf.why, ""); /* as asked */
        else
            assert_non_null(strstr(lf.why, "no kernel filter on Windows"));
        assert_int_equal(pc_server_stop(g_srv, 100), 0);
        assert_int_equal(pc_server_listener_filter(g_srv, 0, &lf), 0);
        assert_string_equal(lf.why, "the listener is closed");
        pc_server_destroy(g_srv);
        g_srv = NULL;
    }
}

/* The IOCP variants give the same results: batches or one
 * GetQueuedCompletionStatus per packet, with and without skip-on-success
 * (synchronous successes staged on the worker's ready list). */
static void iocp_variants_echo(void **state)
{
    (void)state;
    static const char *const variants[][2] = {
        {"PORTCULLIS_IOCP_SKIP=", "PORTCULLIS_IOCP_GQCSEX="},
        {"PORTCULLIS_IOCP_SKIP=0", "PORTCULLIS_IOCP_GQCSEX="},
        {"PORTCULLIS_IOCP_SKIP=", "PORTCULLIS_IOCP_GQCSEX=0"},
        {"PORTCULLIS_IOCP_SKIP=1", "PORTCULLIS_IOCP_GQCSEX=0"},
    };
    static const char *const expect[][2] = {
        {"skip-on-success: ", "GetQueuedCompletionStatusEx batches"}, /* the platform's choice */
        {"skip-on-success: off (disabled", "GetQueuedCompletionStatusEx batches"},
        {"skip-on-success: ", "GetQueuedCompletionStatus (disabled"},
        {"skip-on-success: on (forced", "GetQueuedCompletionStatus (disabled"},
    };
    size_t big = 1u << 20;
    unsigned char *out = malloc(big), *in = malloc(big);
    assert_non_null(out);
    assert_non_null(in);
    for (size_t i = 0; i < big; i++)
        out[i] = (unsigned char)(i * 7 + (i >> 10));
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        _putenv(variants[v][0]);
        _putenv(variants[v][1]);
        log_start();
        pc_server_config_t cfg;
        base_config(&cfg);
        start_server(&cfg);
        assert_int_equal(log_count("iocp:", expect[v][0]), 1);
        assert_int_equal(log_count("iocp:", expect[v][1]), 1);
        /* many small round trips: reads that find data already there */
        shim_sock_t s = connect_server(5000);
        for (int i = 0; i < 200; i++)
            expect_echo(s, "ping-pong");
        /* one big stream, written and read at once */
        for (size_t off = 0; off < big;) {
            size_t chunk = big - off < 65536 ? big - off : 65536;
            assert_int_equal(shim_send_all(s, out + off, chunk), 0);
            assert_int_equal(shim_recv_exact(s, in + off, chunk), chunk);
            off += chunk;
        }
        assert_memory_equal(in, out, big);
        shim_close(s);
        WAIT_FOR(stats().active == 0, 3000);
        assert_int_equal(stats().active, 0);
        pc_server_stop(g_srv, 1000);
        pc_server_destroy(g_srv);
        g_srv = NULL;
    }
    _putenv("PORTCULLIS_IOCP_SKIP=");
    _putenv("PORTCULLIS_IOCP_GQCSEX=");
    free(out);
    free(in);
}
#else /* the Windows-only tests, skipped elsewhere */
#define SKIPPED(name)              \
    static void name(void **state) \
    {                              \
        (void)state;               \
        skip();                    \
    }
SKIPPED(win_error_mapping)
SKIPPED(iocp_variants_echo)
SKIPPED(overlapped_internal_pending)
SKIPPED(accepted_socket_not_inheritable)
SKIPPED(stop_keeps_listener_until_accept_done)
SKIPPED(kernel_filter_refusal_reported)
SKIPPED(idle_accept_thread_sleeps)
#endif

int main(int argc, char **argv)
{
    shim_init();
    pc__mutex_init(&g_log_lock);
    pc_log_set_level(PC_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(accept_mode_reported, win_teardown),
        cmocka_unit_test_teardown(accept_mode_off_reported, win_teardown),
        cmocka_unit_test_teardown(accept_mode_on_reported, win_teardown),
        cmocka_unit_test_teardown(denied_source_never_opens, win_teardown),
        cmocka_unit_test_teardown(condition_defer_then_accept, win_teardown),
        cmocka_unit_test_teardown(defer_under_capacity, win_teardown),
        cmocka_unit_test_teardown(idle_2000_connections, win_teardown),
        cmocka_unit_test_teardown(stop_with_read_pending, win_teardown),
        cmocka_unit_test_teardown(abort_during_big_send, win_teardown),
        cmocka_unit_test_teardown(stop_unblocks_accept, win_teardown),
        cmocka_unit_test_teardown(win_error_mapping, win_teardown),
        cmocka_unit_test_teardown(iocp_variants_echo, win_teardown),
        cmocka_unit_test_teardown(overlapped_internal_pending, win_teardown),
        cmocka_unit_test_teardown(accepted_socket_not_inheritable, win_teardown),
        cmocka_unit_test_teardown(stop_keeps_listener_until_accept_done, win_teardown),
        cmocka_unit_test_teardown(kernel_filter_refusal_reported, win_teardown),
        cmocka_unit_test_teardown(idle_accept_thread_sleeps, win_teardown),
    };
    if (PICK_TEST(tests, argc, argv) != 0) return 1;
    return cmocka_run_group_tests_name("windows", tests, NULL, NULL);
}
