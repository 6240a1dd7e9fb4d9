/* SPDX-License-Identifier: MIT */
/* Allocation failure on a live server (issue 6): an allocator installed with
 * pc_set_allocator fails every Nth allocation once the server runs, while
 * many clients talk to an echo application and the test thread pushes bytes
 * (pc_server_send_to), posts work (pc_server_post) and swaps rule sets.
 *
 * What must hold: nothing crashes or hangs; a failed call reports PC_ENOMEM
 * and changes nothing (every client receives exactly a prefix of what it
 * sent, a refused push or post never arrives, an accepted one arrives once);
 * once the allocator stops failing the same server serves a fresh batch of
 * clients completely; after pc_server_destroy every block is back (no leak);
 * and failures were really injected, or the test would prove nothing.
 *
 * Scenarios: every Nth allocation fails (N = 3, 7, 17, 101) under 50 echo
 * clients; every allocation fails (a fresh server cannot take connections);
 * a connection accepted while allocation fails; pc_server_stop while it
 * fails; pc_server_send_to on a closed connection's id while it fails.
 *
 * The hooks are used whatever the default allocator is: PC_ALLOC_SYSTEM
 * (sanitizer builds) only swaps mimalloc for the C library behind the
 * default hooks, so the test means the same under ASan and TSan. Portable:
 * the client side goes through shim.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "pick.h"

/* ---- the failing, counting allocator ----------------------------------------- */

static atomic_long fa_live;    /* blocks handed out and not yet freed */
static atomic_ulong fa_calls;  /* malloc/calloc/realloc calls while armed */
static atomic_ulong fa_failed; /* calls failed on purpose */
static atomic_ulong fa_every;  /* 0: never fail; N: fail every Nth armed call */
static atomic_ulong fa_hooked; /* calls of any hook, armed or not */
static atomic_int fa_reallocs; /* set: every realloc fails, nothing else does */

static int fa_should_fail(void)
{
    atomic_fetch_add(&fa_hooked, 1);
    unsigned long n = atomic_load(&fa_every);
    if (n == 0) return 0;
    if ((atomic_fetch_add(&fa_calls, 1) + 1) % n != 0) return 0;
    atomic_fetch_add(&fa_failed, 1);
    return 1;
}

static void *fa_malloc(void *u, size_t n)
{
    (void)u;
    if (fa_should_fail()) return NULL;
    void *p = malloc(n);
    if (p) atomic_fetch_add(&fa_live, 1);
    return p;
}

static void *fa_calloc(void *u, size_t n, size_t sz)
{
    (void)u;
    if (fa_should_fail()) return NULL;
    void *p = calloc(n, sz);
    if (p) atomic_fetch_add(&fa_live, 1);
    return p;
}

/* The library never asks for size 0 (pc__realloc rounds it up to 1). */
static void *fa_realloc(void *u, void *p, size_t n)
{
    (void)u;
    if (atomic_load(&fa_reallocs)) {
        atomic_fetch_add(&fa_failed, 1);
        return NULL;
    }
    if (fa_should_fail()) return NULL; /* p stays valid and live */
    void *q = realloc(p, n);
    if (q && !p) atomic_fetch_add(&fa_live, 1);
    return q;
}

static void fa_free(void *u, void *p)
{
    (void)u;
    atomic_fetch_add(&fa_hooked, 1);
    if (p) atomic_fetch_sub(&fa_live, 1);
    free(p);
}

static const pc_allocator_t fa_allocator = {fa_malloc, fa_calloc, fa_realloc, fa_free, NULL};

static void fa_install(void)
{
    atomic_store(&fa_every, 0);
    atomic_store(&fa_reallocs, 0);
    atomic_store(&fa_calls, 0);
    atomic_store(&fa_failed, 0);
    atomic_store(&fa_live, 0);
    assert_int_equal(pc_set_allocator(&fa_allocator), 0);
}

static void fa_arm(unsigned long every)
{
    atomic_store(&fa_calls, 0);
    atomic_store(&fa_every, every);
}

static void fa_disarm(void)
{
    atomic_store(&fa_every, 0);
    atomic_store(&fa_reallocs, 0);
}

/* Set once a client got no answer: the others then wait briefly, so that a
 * server that stopped answering fails the test quickly instead of costing
 * every client its full receive timeout. */
static int g_hang_seen;

/* ---- the application: echo; out of memory ends the connection ---------------- */

static atomic_int app_opens, app_closes, app_nomem, app_send_other;
static _Atomic uint64_t app_last_id;
static atomic_int app_posts_run;
/* on_close for a connection whose on_open never ran, and how it ended */
static atomic_int app_orphan_closes, app_orphan_reason, app_orphan_err;
static char app_marker; /* a connection's user data once on_open ran */

static void app_open(pc_conn_t *c)
{
    pc_conn_set_user_data(c, &app_marker);
    atomic_store(&app_last_id, pc_conn_id(c));
    atomic_fetch_add(&app_opens, 1);
}

static void app_data(pc_conn_t *c, const void *data, size_t len)
{
    int rc = pc_conn_send(c, data, len);
    if (rc == 0) return;
    if (rc != PC_ENOMEM) {
        atomic_fetch_add(&app_send_other, 1);
        pc_conn_abort(c);
        return;
    }
    /* The bytes were not queued: carrying on would corrupt the stream.
     * End the connection, both ways over the population (odd slots reset,
     * even ones close gracefully: what was queued is still flushed). */
    atomic_fetch_add(&app_nomem, 1);
    if (pc_conn_id(c) & 1)
        pc_conn_abort(c);
    else
        pc_conn_close(c);
}

static void app_close(pc_conn_t *c, pc_close_reason_t r, int err)
{
    if (pc_conn_user_data(c) != &app_marker) {
        atomic_store(&app_orphan_reason, (int)r);
        atomic_store(&app_orphan_err, err);
        atomic_fetch_add(&app_orphan_closes, 1);
    }
    atomic_fetch_add(&g_reasons[r], 1);
    atomic_fetch_add(&app_closes, 1);
}

static void app_post(pc_server_t *s, void *arg)
{
    (void)s;
    (void)arg;
    atomic_fetch_add(&app_posts_run, 1);
}

/* Install the allocator, then create, listen and start: startup itself is
 * not under test, so nothing fails yet. tweak (if not NULL) changes the
 * configuration before the create. */
static void af_start_with(void (*tweak)(pc_server_config_t *cfg))
{
    fa_install();
    g_hang_seen = 0;
    atomic_store(&app_opens, 0);
    atomic_store(&app_closes, 0);
    atomic_store(&app_nomem, 0);
    atomic_store(&app_send_other, 0);
    atomic_store(&app_posts_run, 0);
    atomic_store(&app_orphan_closes, 0);
    for (int i = 0; i < PC_CLOSE_REASON_COUNT; i++)
        atomic_store(&g_reasons[i], 0);
    pc_server_config_t cfg;
    pc_server_config_init(&cfg);
    cfg.threads = 2;
    cfg.close_linger_ms = 2000;
    cfg.cb.on_open = app_open;
    cfg.cb.on_data = app_data;
    cfg.cb.on_close = app_close;
    if (tweak) tweak(&cfg);
    assert_int_equal(pc_server_create(&cfg, &g_srv), 0);
    /* memory must go back to the allocator that gave it */
    assert_int_equal(pc_set_allocator(NULL), PC_EBUSY);
    int idx = pc_server_listen(g_srv, "127.0.0.1:0");
    assert_true(idx >= 0);
    g_port = pc_server_listener_port(g_srv, idx);
    assert_true(g_port > 0);
    assert_int_equal(pc_server_start(g_srv), 0);
}

static void af_start(void)
{
    af_start_with(NULL);
}

/* Stop and destroy with the allocator disarmed, then every block must be
 * back and the default allocator restorable. */
static void af_finish(void)
{
    fa_disarm();
    assert_int_equal(pc_server_stop(g_srv, 3000), 0);
    pc_server_destroy(g_srv);
    g_srv = NULL;
    long live = atomic_load(&fa_live);
    if (live != 0) fail_msg("%ld block(s) leaked (allocated through the hooks, never freed)", live);
    assert_int_equal(pc_set_allocator(NULL), 0);
    /* the default is back: a server's life no longer reaches the hooks */
    unsigned long hooked = atomic_load(&fa_hooked);
    pc_server_config_t cfg;
    pc_server_config_init(&cfg);
    cfg.threads = 1;
    cfg.cb.on_data = app_data;
    pc_server_t *s = NULL;
    assert_int_equal(pc_server_create(&cfg, &s), 0);
    pc_server_destroy(s);
    assert_int_equal(atomic_load(&fa_hooked), hooked);
}

static int af_teardown(void **state)
{
    fa_disarm();
    teardown(state); /* stops and destroys g_srv if a test failed half-way */
    pc_set_allocator(NULL);
    return 0;
}

/* Every accepted connection the application saw open got its on_close, and
 * on_close never ran for a connection the application never saw open (its
 * pc_conn_t would be one the application knows nothing of). */
static void opens_and_closes_pair(void)
{
    WAIT_FOR(atomic_load(&app_closes) == atomic_load(&app_opens) + atomic_load(&app_orphan_closes),
             5000);
    int orphans = atomic_load(&app_orphan_closes);
    if (orphans)
        fail_msg("on_close ran %d time(s) for an accepted connection whose on_open never ran "
                 "(last: reason \"%s\", err %s)",
                 orphans, pc_close_reason_str((pc_close_reason_t)atomic_load(&app_orphan_reason)),
                 pc_err_name(atomic_load(&app_orphan_err)));
    assert_int_equal(atomic_load(&app_closes), atomic_load(&app_opens));
}

/* ---- echo clients --------------------------------------------------------------- */

enum cli_state { CLI_LIVE = 0, CLI_ENDED, CLI_HUNG, CLI_CORRUPT, CLI_NOCONN };

typedef struct echo_cli_s {
    shim_sock_t s;
    int idx;
    int state;
    size_t sent, got; /* bytes of the stream sent, and echoed back so far */
} echo_cli_t;

/* Byte off of client idx's stream: every client has its own phase, so bytes
 * of another connection (or a repeat, or a hole) do not compare equal. */
static unsigned char stream_byte(int idx, size_t off)
{
    return pattern_byte(off + (size_t)idx * 100003u);
}

/* A server that accepts and resets at once (no memory for the connection)
 * can do so before this thread is back from connect(), which then fails
 * with the reset: that client was ended, as if the reset came later. */
static void cli_open(echo_cli_t *c, int idx, int timeout_ms)
{
    memset(c, 0, sizeof *c);
    c->idx = idx;
    c->s = shim_connect("127.0.0.1", g_port, NULL, timeout_ms);
    c->state = c->s != SHIM_INVALID ? CLI_LIVE : shim_connect_was_reset() ? CLI_ENDED : CLI_NOCONN;
}

/* Queue this round's message (its length varies with client and round). */
static void cli_send_round(echo_cli_t *c, int round)
{
    unsigned char buf[2048];
    if (c->state != CLI_LIVE) return;
    size_t len = 64 + (size_t)((c->idx * 37 + round * 101) % 1900);
    for (size_t i = 0; i < len; i++)
        buf[i] = stream_byte(c->idx, c->sent + i);
    if (shim_send_all(c->s, buf, len) != 0) {
        c->state = CLI_ENDED; /* the server already ended it (reset) */
        return;
    }
    c->sent += len;
}

/* Read the echo of everything sent. The server may end the connection (EOF
 * or reset) at any point, but what came back must be exactly the prefix of
 * what was sent, and it must never just stop answering. */
static void cli_read_round(echo_cli_t *c)
{
    unsigned char buf[4096];
    if (g_hang_seen && c->state == CLI_LIVE) shim_set_timeout(c->s, 100);
    while (c->state == CLI_LIVE && c->got < c->sent) {
        size_t want = c->sent - c->got;
        int n = shim_recv_some(c->s, buf, want < sizeof buf ? want : sizeof buf);
        if (n > 0) {
            for (int i = 0; i < n; i++) {
                if (buf[i] != stream_byte(c->idx, c->got + (size_t)i)) {
                    c->state = CLI_CORRUPT;
                    return;
                }
            }
            c->got += (size_t)n;
        } else if (n == -2) {
            c->state = CLI_HUNG;
            g_hang_seen = 1;
        } else {
            c->state = CLI_ENDED; /* EOF, reset or another error: ended */
        }
    }
}

typedef struct tally_s {
    int live, ended, hung, corrupt, noconn;
} tally_t;

static tally_t tally(const echo_cli_t *c, int n)
{
    tally_t t = {0, 0, 0, 0, 0};
    for (int i = 0; i < n; i++) {
        switch (c[i].state) {
        case CLI_LIVE:
            t.live++;
            break;
        case CLI_ENDED:
            t.ended++;
            break;
        case CLI_HUNG:
            t.hung++;
            break;
        case CLI_CORRUPT:
            t.corrupt++;
            break;
        default:
            t.noconn++;
            break;
        }
    }
    return t;
}

static void report_bad(const echo_cli_t *c, int n, const char *phase)
{
    for (int i = 0; i < n; i++)
        if (c[i].state == CLI_HUNG || c[i].state == CLI_CORRUPT)
            print_message("%s: client %d %s after %lu of %lu bytes echoed\n", phase, c[i].idx,
                          c[i].state == CLI_HUNG ? "got no answer (hang)" : "got wrong bytes",
                          (unsigned long)c[i].got, (unsigned long)c[i].sent);
}

static void close_all(echo_cli_t *c, int n)
{
    for (int i = 0; i < n; i++)
        if (c[i].s != SHIM_INVALID) shim_close(c[i].s);
}

/* Once the allocator is back to normal the same server serves a fresh batch
 * completely and exactly. */
static void fresh_batch_served(int first_idx)
{
    enum { M = 20, ROUNDS = 3 };
    echo_cli_t c[M];
    for (int i = 0; i < M; i++)
        cli_open(&c[i], first_idx + i, 5000);
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < M; i++)
            cli_send_round(&c[i], r);
        for (int i = 0; i < M; i++)
            cli_read_round(&c[i]);
    }
    tally_t t = tally(c, M);
    report_bad(c, M, "after disarming");
    close_all(c, M);
    assert_int_equal(t.live, M);
}

/* ---- the test thread's own calls while armed ------------------------------------ */

enum { NPUSH = 4, REC = 16, PUSHES_PER_ROUND = 20, POSTS_PER_ROUND = 20, MAX_ROUNDS = 8 };

typedef struct pusher_s {
    shim_sock_t s;
    pc_conn_id_t id;
    unsigned long seq;                                /* next record number */
    unsigned long acc[MAX_ROUNDS * PUSHES_PER_ROUND]; /* records accepted, in order */
    int nacc;
} pusher_t;

/* "k:sssssssssssss\n": pusher k's record number s, REC bytes. */
static void make_rec(char rec[REC + 1], int k, unsigned long seq)
{
    char tmp[64]; /* wide enough for any int and unsigned long */
    snprintf(tmp, sizeof tmp, "%1d:%013lu\n", k % 10, seq % 1000000000ul);
    memcpy(rec, tmp, REC + 1);
}

typedef struct calls_s {
    int push_ok, push_nomem, post_ok, post_nomem, rules_ok, rules_nomem, other;
} calls_t;

static const char rules_text[] = "deny  192.0.2.0/24\n"
                                 "deny  198.51.100.7\n"
                                 "allow 127.0.0.0/8\n"
                                 "deny  10.0.0.0/8\n"
                                 "allow 10.1.0.0/16\n"
                                 "deny  2001:db8::/32\n"
                                 "allow ::1\n"
                                 "deny  203.0.113.0/24\n";

/* One round of pushes to every pusher, posts, and a few rule set swaps. Each
 * call must succeed or say PC_ENOMEM; nothing else. */
static void armed_calls(pusher_t *p, calls_t *k)
{
    for (int i = 0; i < NPUSH; i++) {
        for (int j = 0; j < PUSHES_PER_ROUND; j++) {
            char rec[REC + 1];
            make_rec(rec, i, p[i].seq);
            int rc = pc_server_send_to(g_srv, p[i].id, rec, REC);
            if (rc == 0) {
                p[i].acc[p[i].nacc++] = p[i].seq;
                k->push_ok++;
            } else if (rc == PC_ENOMEM) {
                k->push_nomem++;
            } else {
                print_message("pc_server_send_to: %s\n", pc_err_name(rc));
                k->other++;
            }
            p[i].seq++;
        }
    }
    for (int j = 0; j < POSTS_PER_ROUND; j++) {
        int rc = pc_server_post(g_srv, app_post, NULL);
        if (rc == 0)
            k->post_ok++;
        else if (rc == PC_ENOMEM)
            k->post_nomem++;
        else {
            print_message("pc_server_post: %s\n", pc_err_name(rc));
            k->other++;
        }
    }
    for (int j = 0; j < 4; j++) {
        pc_rules_t *r = NULL;
        char err[128];
        int rc =
            pc_rules_load_string(rules_text, sizeof rules_text - 1, "armed", &r, err, sizeof err);
        if (rc == 0) {
            assert_non_null(r);
            assert_int_equal(pc_server_set_rules(g_srv, r), 0); /* the server owns it now */
            k->rules_ok++;
        } else if (rc == PC_ENOMEM) {
            assert_null(r);
            k->rules_nomem++;
        } else {
            print_message("pc_rules_load_string: %s (%s)\n", pc_err_name(rc), err);
            k->other++;
        }
    }
}

/* Each pusher receives exactly the records whose send_to returned 0, in
 * order: a refused one left nothing behind. */
static void check_pushers(pusher_t *p)
{
    for (int i = 0; i < NPUSH; i++) {
        size_t want = (size_t)p[i].nacc * REC;
        char *got = malloc(want + 1);
        assert_non_null(got);
        size_t n = shim_recv_exact(p[i].s, got, want);
        if (n != want)
            fail_msg("pusher %d: %lu of %lu pushed bytes arrived", i, (unsigned long)n,
                     (unsigned long)want);
        for (int j = 0; j < p[i].nacc; j++) {
            char rec[REC + 1];
            make_rec(rec, i, p[i].acc[j]);
            if (memcmp(got + (size_t)j * REC, rec, REC) != 0)
                fail_msg("pusher %d: record %d is not push #%lu", i, j, p[i].acc[j]);
        }
        free(got);
        /* and nothing more: no refused record shows up late */
        char extra;
        shim_set_timeout(p[i].s, 200);
        assert_int_equal(shim_recv_some(p[i].s, &extra, 1), -2);
    }
}

/* ---- the scenario ----------------------------------------------------------------- */

static void fail_every(unsigned long every)
{
    enum { N = 50, ROUNDS = 4 };
    af_start();

    /* Push targets, connected before arming: ids taken from on_open in
     * order, one connection at a time. */
    static pusher_t p[NPUSH];
    memset(p, 0, sizeof p);
    for (int i = 0; i < NPUSH; i++) {
        p[i].s = connect_server(5000);
        WAIT_FOR(atomic_load(&app_opens) == i + 1, 3000);
        assert_int_equal(atomic_load(&app_opens), i + 1);
        p[i].id = atomic_load(&app_last_id);
    }

    fa_arm(every);
    static echo_cli_t c[N];
    for (int i = 0; i < N; i++)
        cli_open(&c[i], i, 5000);
    calls_t k;
    memset(&k, 0, sizeof k);
    size_t echoed_msgs = 0;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N; i++)
            cli_send_round(&c[i], r);
        armed_calls(p, &k);
        for (int i = 0; i < N; i++) {
            cli_read_round(&c[i]);
            if (c[i].state == CLI_LIVE) echoed_msgs++;
        }
    }
    tally_t t = tally(c, N);
    unsigned long calls = atomic_load(&fa_calls), failed = atomic_load(&fa_failed);
    fa_disarm();
    print_message("every %lu: %lu allocations, %lu failed; echo clients: %d served all rounds, "
                  "%d ended by the server, %d hung, %d corrupt, %d not connected; app saw "
                  "PC_ENOMEM %d times; send_to %d ok / %d ENOMEM, post %d / %d, rules %d / %d\n",
                  every, calls, failed, t.live, t.ended, t.hung, t.corrupt, t.noconn,
                  atomic_load(&app_nomem), k.push_ok, k.push_nomem, k.post_ok, k.post_nomem,
                  k.rules_ok, k.rules_nomem);
    report_bad(c, N, "armed");

    /* (e) failures were injected, and they were seen where expected */
    assert_true(failed > 0);
    assert_true(atomic_load(&app_nomem) + k.push_nomem + k.post_nomem + k.rules_nomem > 0);
    /* (b) nothing corrupted, nothing stuck, and the echo still worked */
    assert_int_equal(t.hung, 0);
    assert_int_equal(t.corrupt, 0);
    assert_int_equal(t.noconn, 0);
    assert_int_equal(k.other, 0);
    assert_int_equal(atomic_load(&app_send_other), 0);
    assert_true(echoed_msgs > 0);
    assert_true(t.live > 0); /* some clients were served every round */
    /* refused pushes and posts left nothing behind; accepted ones arrive once */
    check_pushers(p);
    WAIT_FOR(atomic_load(&app_posts_run) >= k.post_ok, 3000);
    shim_sleep_ms(50);
    assert_int_equal(atomic_load(&app_posts_run), k.post_ok);

    /* (c) recovered */
    close_all(c, N);
    fresh_batch_served(1000);
    for (int i = 0; i < NPUSH; i++)
        shim_close(p[i].s);
    opens_and_closes_pair();
    /* (a) we are still here; (d) no leak, default allocator restorable */
    af_finish();
}

static void fail_every_3(void **state)
{
    (void)state;
    fail_every(3);
}

static void fail_every_7(void **state)
{
    (void)state;
    fail_every(7);
}

static void fail_every_17(void **state)
{
    (void)state;
    fail_every(17);
}

static void fail_every_101(void **state)
{
    (void)state;
    fail_every(101);
}

/* Open client idx and run one echo round on it, which must be served. */
static void cli_open_live(echo_cli_t *c, int idx)
{
    cli_open(c, idx, 3000);
    cli_send_round(c, 0);
    cli_read_round(c);
    assert_int_equal(c->state, CLI_LIVE);
}

/* Every allocation fails: a fresh server cannot even grow its connection
 * table, so new clients are reset (counted as accept errors) and every call
 * of the test thread says PC_ENOMEM; with an open connection the echo ends
 * it. Then the allocator recovers and so does the server. */
static void fail_all_then_recover(void **state)
{
    (void)state;
    af_start();
    fa_arm(1);
    enum { N = 4 };
    echo_cli_t c[N];
    for (int i = 0; i < N; i++) {
        cli_open(&c[i], i, 3000);
        cli_send_round(&c[i], 0);
        cli_read_round(&c[i]);
    }
    tally_t t = tally(c, N);
    report_bad(c, N, "all failing");
    close_all(c, N);
    if (t.ended != N)
        fail_msg("all failing: %d of %d clients ended (%d live, %d not connected)", t.ended, N,
                 t.live, t.noconn);
    assert_int_equal(atomic_load(&app_opens), 0);
    WAIT_FOR(stats().accept_errors >= N, 2000);
    assert_true(stats().accept_errors >= N);
    assert_int_equal(pc_server_post(g_srv, app_post, NULL), PC_ENOMEM);
    pc_rules_t *r = NULL;
    assert_int_equal(pc_rules_load_string(rules_text, sizeof rules_text - 1, NULL, &r, NULL, 0),
                     PC_ENOMEM);
    assert_null(r);

    /* one connection opened while memory is there, then none is */
    fa_disarm();
    echo_cli_t one;
    cli_open_live(&one, 100);
    WAIT_FOR(atomic_load(&app_opens) == 1, 2000);
    pc_conn_id_t id = atomic_load(&app_last_id);
    fa_arm(1);
    assert_int_equal(pc_server_send_to(g_srv, id, "x", 1), PC_ENOMEM);
    /* the echo cannot queue: the app ends the connection. An echo may still
     * go out without allocating while the previous round's chunk waits for
     * its send completion (it coalesces into it; seen on IOCP), so allow a
     * few rounds for the allocation that fails */
    for (int round = 1; round < 16 && one.state == CLI_LIVE; round++) {
        cli_send_round(&one, round);
        cli_read_round(&one);
    }
    assert_int_equal(one.state, CLI_ENDED);
    shim_close(one.s);
    assert_true(atomic_load(&fa_failed) > 0);
    fa_disarm();

    fresh_batch_served(2000);
    opens_and_closes_pair();
    af_finish();
}

/* A connection accepted while memory runs out must still be either served
 * or refused cleanly: the client sees it end, and the application is not
 * told of a close for a connection it was never told of. With one
 * connection open on worker 0, the next goes to worker 1 (round robin),
 * whose per-worker connection state (io_uring: receive records, allocated
 * by the first attach) does not exist yet, so attaching it to the port has
 * to allocate, and fails. */
static void accept_while_failing(void **state)
{
    (void)state;
    af_start();
    echo_cli_t one;
    cli_open_live(&one, 0);
    fa_arm(1);
    echo_cli_t two;
    cli_open(&two, 1, 3000);
    cli_send_round(&two, 0);
    cli_read_round(&two);
    assert_int_equal(two.state, CLI_ENDED);
    shim_close(two.s);
    assert_true(atomic_load(&fa_failed) > 0);
    fa_disarm();
    cli_send_round(&one, 1);
    cli_read_round(&one);
    assert_int_equal(one.state, CLI_LIVE); /* the first one was not disturbed */
    shim_close(one.s);
    fresh_batch_served(100);
    opens_and_closes_pair();
    af_finish();
}

/* A connection the accept thread judged and admitted, but could not start
 * (no memory for its record), gives back what the verdict took: its slot
 * under max_connections and its per-source count. With both at 1, a
 * leaked slot or count would refuse every later client. */
static void one_slot_one_source(pc_server_config_t *cfg)
{
    cfg->max_connections = 1;
    cfg->per_source_max = 1;
}

static void failed_start_gives_slot_back(void **state)
{
    (void)state;
    af_start_with(one_slot_one_source);
    fa_arm(1);
    echo_cli_t c;
    cli_open(&c, 0, 3000);
    if (c.state == CLI_LIVE) {
        shim_set_timeout(c.s, 3000);
        size_t n = 0;
        assert_int_equal(shim_wait_reset(c.s, &n), -1); /* reset at once, not left open */
        shim_close(c.s);
    }
    WAIT_FOR(stats().accept_errors >= 1, 2000);
    fa_disarm();
    pc_server_stats_t st = stats();
    assert_int_equal(st.accept_errors, 1);
    assert_int_equal(st.accepted, 0);
    assert_int_equal(st.active, 0);
    assert_int_equal(st.source_active, 0);
    echo_cli_t one;
    cli_open_live(&one, 1); /* same source, the one slot: served */
    shim_close(one.s);
    st = stats();
    assert_int_equal(st.rejected[PC_STEP_CAPACITY] + st.rejected[PC_STEP_SOURCE_MAX], 0);
    opens_and_closes_pair();
    af_finish();
}

/* The fault-injected server with one live client open on it: the
 * connection's id. */
static pc_conn_id_t start_with_one_open(echo_cli_t *one)
{
    af_start();
    cli_open_live(one, 0);
    WAIT_FOR(atomic_load(&app_opens) == 1, 2000);
    return atomic_load(&app_last_id);
}

/* The id of a closed connection gets PC_ENOTCONN from pc_server_send_to
 * (the threading contract in portcullis.h), whatever the allocator does: a
 * send to a connection that is gone must not depend on memory for the data
 * it will never send. */
static void send_to_closed_id_while_failing(void **state)
{
    (void)state;
    echo_cli_t one;
    pc_conn_id_t id = start_with_one_open(&one);
    shim_close(one.s);
    WAIT_FOR(atomic_load(&app_closes) == 1, 3000);
    assert_int_equal(atomic_load(&app_closes), 1);
    /* with memory: PC_ENOTCONN (once the record is released) */
    WAIT_FOR(pc_server_send_to(g_srv, id, "x", 1) == PC_ENOTCONN, 2000);
    assert_int_equal(pc_server_send_to(g_srv, id, "x", 1), PC_ENOTCONN);
    assert_int_equal(pc_server_close_id(g_srv, id), PC_ENOTCONN);
    fa_arm(1);
    assert_int_equal(pc_server_close_id(g_srv, id), PC_ENOTCONN);
    int rc = pc_server_send_to(g_srv, id, "x", 1);
    fa_disarm();
    if (rc != PC_ENOTCONN)
        fail_msg("pc_server_send_to(id of a closed connection) with allocation failing: %s, "
                 "not PC_ENOTCONN",
                 pc_err_name(rc));
    opens_and_closes_pair();
    af_finish();
}

/* pc_server_stop while allocations keep failing: every connection still
 * ends (nothing waits for memory), what was accepted for sending is
 * flushed before the FIN, and stop + destroy give every block back. */
static void stop_while_failing(void **state)
{
    (void)state;
    enum { N = 30, NP = 2, PUSHES = 40 };
    af_start();
    shim_sock_t ps[NP];
    pc_conn_id_t pid[NP];
    for (int i = 0; i < NP; i++) {
        ps[i] = connect_server(5000);
        WAIT_FOR(atomic_load(&app_opens) == i + 1, 3000);
        assert_int_equal(atomic_load(&app_opens), i + 1);
        pid[i] = atomic_load(&app_last_id);
    }
    fa_arm(5);
    static echo_cli_t c[N];
    for (int i = 0; i < N; i++)
        cli_open(&c[i], i, 5000);
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < N; i++)
            cli_send_round(&c[i], r);
    unsigned long acc[NP][PUSHES];
    int nacc[NP] = {0, 0};
    for (int i = 0; i < NP; i++) {
        for (int j = 0; j < PUSHES; j++) {
            char rec[REC + 1];
            make_rec(rec, i, (unsigned long)j);
            int rc = pc_server_send_to(g_srv, pid[i], rec, REC);
            if (rc == 0)
                acc[i][nacc[i]++] = (unsigned long)j;
            else
                assert_int_equal(rc, PC_ENOMEM);
        }
    }
    /* the echoes of most clients are in flight, some failed: stop now */
    shim_sleep_ms(20);
    uint64_t t0 = shim_now_ms();
    assert_int_equal(pc_server_stop(g_srv, 3000), 0);
    uint64_t took = shim_now_ms() - t0;
    assert_int_equal(pc_server_post(g_srv, app_post, NULL), PC_ENOTCONN);
    unsigned long failed = atomic_load(&fa_failed);
    fa_disarm();
    assert_int_equal(pc_server_send_to(g_srv, pid[0], "x", 1), PC_ENOTCONN);
    print_message("stop under failing allocations: %lu failed, stop took %lu ms\n", failed,
                  (unsigned long)took);
    assert_true(took < 6000);
    assert_true(failed > 0);
    /* every echo client: a prefix of its stream, then the end */
    for (int i = 0; i < N; i++) {
        cli_read_round(&c[i]);
        if (c[i].state == CLI_LIVE) { /* all echoed: the FIN follows */
            size_t extra = 1;
            c[i].state = shim_wait_close(c[i].s, &extra) == -2 || extra ? CLI_HUNG : CLI_ENDED;
        }
    }
    tally_t t = tally(c, N);
    report_bad(c, N, "stopped");
    close_all(c, N);
    assert_int_equal(t.ended, N);
    /* the pushers: exactly the accepted records, then FIN */
    for (int i = 0; i < NP; i++) {
        size_t want = (size_t)nacc[i] * REC;
        char got[PUSHES * REC];
        size_t n = shim_recv_exact(ps[i], got, want);
        if (n != want)
            fail_msg("pusher %d: %lu of %lu pushed bytes arrived before the close", i,
                     (unsigned long)n, (unsigned long)want);
        for (int j = 0; j < nacc[i]; j++) {
            char rec[REC + 1];
            make_rec(rec, i, acc[i][j]);
            assert_memory_equal(got + (size_t)j * REC, rec, REC);
        }
        size_t extra = 1;
        assert_int_equal(shim_wait_close(ps[i], &extra), 0);
        assert_int_equal(extra, 0);
        shim_close(ps[i]);
    }
    opens_and_closes_pair();
    af_finish(); /* stop again: a no-op */
}

/* The first cross-thread send into an empty inbox allocates its chunk and
 * then the connection's send side (conn_tx_t) that carries the inbox to
 * the strand, so that the kick never needs memory for bytes already
 * accepted. The second allocation failing must refuse that send with
 * PC_ENOMEM and free the chunk (af_finish checks for leaks); the connection
 * goes on: a later send arrives, the refused one never does. */
static void send_to_carrier_fails(void **state)
{
    (void)state;
    echo_cli_t one;
    pc_conn_id_t id = start_with_one_open(&one);
    fa_arm(2); /* the chunk (first call) is had, the carrier (second) is not */
    int rc = pc_server_send_to(g_srv, id, "refused\n", 8);
    unsigned long failed = atomic_load(&fa_failed);
    fa_disarm();
    assert_int_equal(rc, PC_ENOMEM);
    assert_int_equal(failed, 1);
    assert_int_equal(pc_server_send_to(g_srv, id, "accepted\n", 9), 0);
    char got[9];
    assert_int_equal(shim_recv_exact(one.s, got, sizeof got), sizeof got);
    assert_memory_equal(got, "accepted\n", sizeof got);
    shim_close(one.s);
    opens_and_closes_pair();
    af_finish();
}

/* The same for pc_server_post_to: its record (first allocation), then the
 * inbox that carries it (second) when the inbox is empty. Refused with
 * PC_ENOMEM, the function never runs; a later post runs once. */
static atomic_int carrier_posts_run;

static void carrier_post(pc_conn_t *c, void *arg)
{
    (void)arg;
    if (c) atomic_fetch_add(&carrier_posts_run, 1);
}

static void post_to_carrier_fails(void **state)
{
    (void)state;
    echo_cli_t one;
    pc_conn_id_t id = start_with_one_open(&one);
    atomic_store(&carrier_posts_run, 0);
    fa_arm(2); /* the record is had, the inbox is not */
    int rc = pc_server_post_to(g_srv, id, carrier_post, NULL);
    unsigned long failed = atomic_load(&fa_failed);
    fa_disarm();
    assert_int_equal(rc, PC_ENOMEM);
    assert_int_equal(failed, 1);
    assert_int_equal(pc_server_post_to(g_srv, id, carrier_post, NULL), 0);
    WAIT_FOR(atomic_load(&carrier_posts_run) == 1, 2000);
    shim_sleep_ms(50);
    assert_int_equal(atomic_load(&carrier_posts_run), 1);
    shim_close(one.s);
    opens_and_closes_pair();
    af_finish();
}

/* Under max_buffered_bytes a send takes its chunk's memory from the cap
 * before allocating it; when that allocation fails (PC_ENOMEM) the take is
 * given back: send_held_bytes is 0 again at once (the connection holds
 * nothing), and the cap is not eaten away by failed sends. */
static void cap_1mib(pc_server_config_t *cfg)
{
    cfg->max_buffered_bytes = 1u << 20;
}

static void send_to_chunk_fails_under_cap(void **state)
{
    (void)state;
    echo_cli_t one;
    af_start_with(cap_1mib);
    cli_open_live(&one, 0);
    WAIT_FOR(atomic_load(&app_opens) == 1, 2000);
    pc_conn_id_t id = atomic_load(&app_last_id);
    /* the echo of cli_open_live's round is sent (its chunk freed) */
    WAIT_FOR(stats().send_held_bytes == 0, 2000);
    assert_int_equal(stats().send_held_bytes, 0);
    for (int i = 0; i < 3; i++) {
        fa_arm(1); /* the chunk: the first allocation */
        int rc = pc_server_send_to(g_srv, id, "refused\n", 8);
        fa_disarm();
        assert_int_equal(rc, PC_ENOMEM);
        assert_int_equal(stats().send_held_bytes, 0);
    }
    assert_int_equal(pc_server_send_to(g_srv, id, "accepted\n", 9), 0);
    char got[9];
    assert_int_equal(shim_recv_exact(one.s, got, sizeof got), sizeof got);
    assert_memory_equal(got, "accepted\n", sizeof got);
    WAIT_FOR(stats().send_held_bytes == 0, 2000);
    assert_int_equal(stats().send_held_bytes, 0);
    assert_int_equal(stats().send_refused, 0);
    shim_close(one.s);
    opens_and_closes_pair();
    af_finish();
}

/* A trusted proxy's client sends its first bytes in the segment of its
 * PROXY header, and on_open pauses: those bytes must wait for the resume.
 * Keeping them takes a copy; with no memory for it the connection goes
 * (PC_CLOSE_NOMEM, a reset). It used to deliver them anyway: on_data ran on
 * a paused connection, against pc_conn_pause_read's contract. on_open arms
 * "every allocation fails" right after its pause, so the copy is the call
 * that fails; on_data and on_close disarm. */
static atomic_int pp_data_runs;

static void pp_open(pc_conn_t *c)
{
    app_open(c);
    assert_int_equal(pc_conn_pause_read(c), 0);
    fa_arm(1);
}

static void pp_data(pc_conn_t *c, const void *data, size_t len)
{
    (void)c;
    (void)data;
    (void)len;
    fa_disarm();
    atomic_fetch_add(&pp_data_runs, 1);
}

static void pp_close(pc_conn_t *c, pc_close_reason_t r, int err)
{
    fa_disarm();
    app_close(c, r, err);
}

/* 127.0.0.1 is a trusted proxy. */
static void px_trusted(pc_server_config_t *cfg)
{
    static const char trusted[] = "allow 127.0.0.1\n";
    pc_rules_t *r = NULL;
    assert_int_equal(pc_rules_load_string(trusted, strlen(trusted), "trusted", &r, NULL, 0), 0);
    cfg->proxy_trusted = r;
}

static void pp_config(pc_server_config_t *cfg)
{
    px_trusted(cfg);
    cfg->threads = 1;
    cfg->cb.on_open = pp_open;
    cfg->cb.on_data = pp_data;
    cfg->cb.on_close = pp_close;
}

static void proxy_pause_without_memory(void **state)
{
    (void)state;
    atomic_store(&pp_data_runs, 0);
    af_start_with(pp_config);
    shim_sock_t s = connect_server(3000);
    static const char msg[] = "PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\nhello";
    assert_int_equal(shim_send_all(s, msg, sizeof msg - 1), 0);
    WAIT_FOR(atomic_load(&app_closes) == 1 || atomic_load(&pp_data_runs) > 0, 5000);
    fa_disarm();
    if (atomic_load(&pp_data_runs))
        fail_msg("on_data ran on a paused connection (no memory to keep the bytes)");
    assert_int_equal(atomic_load(&app_opens), 1);
    assert_int_equal(atomic_load(&app_closes), 1);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_NOMEM]), 1);
    assert_true(atomic_load(&fa_failed) > 0);
    size_t n;
    shim_set_timeout(s, 3000);
    int r = shim_wait_close(s, &n); /* a reset (Wine's shows as a FIN) */
    assert_true(r == -1 || r == 0);
    shim_close(s);
    opens_and_closes_pair();
    af_finish();
}

/* The same pause kept the header segment's bytes (a copy), and a receive
 * started before it (on_open resumed, then paused again: io_uring) brings
 * more: they go behind the kept ones, which takes a bigger copy. With no
 * memory for it the pause still holds and the connection goes (PC_CLOSE_NOMEM),
 * rather than drop those bytes and carry on. on_open makes every realloc
 * fail (the copy's malloc still succeeds) until a timer resumes; where no
 * receive was started (epoll) the resume delivers both, in order. */
static atomic_int pa_resumed, pa_early;

static void pa_resume(pc_conn_t *c)
{
    fa_disarm();
    atomic_store(&pa_resumed, 1);
    assert_int_equal(pc_conn_resume_read(c), 0);
}

static void pa_open(pc_conn_t *c)
{
    app_open(c);
    assert_int_equal(pc_conn_pause_read(c), 0);
    assert_int_equal(pc_conn_resume_read(c), 0);
    assert_int_equal(pc_conn_pause_read(c), 0);
    assert_int_equal(pc_conn_timer(c, 1500, pa_resume), 0);
    atomic_store(&fa_reallocs, 1);
}

static void pa_data(pc_conn_t *c, const void *data, size_t len)
{
    if (!atomic_load(&pa_resumed)) atomic_fetch_add(&pa_early, 1);
    assert_int_equal(pc_conn_send(c, data, len), 0);
}

static void pa_config(pc_server_config_t *cfg)
{
    pp_config(cfg);
    cfg->cb.on_open = pa_open;
    cfg->cb.on_data = pa_data;
}

static void proxy_pause_append_without_memory(void **state)
{
    (void)state;
    atomic_store(&pa_resumed, 0);
    atomic_store(&pa_early, 0);
    af_start_with(pa_config);
    shim_sock_t s = connect_server(3000);
    static const char msg[] = "PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\nhello";
    assert_int_equal(shim_send_all(s, msg, sizeof msg - 1), 0);
    /* "hello" is kept in the event that ran on_open: "second" comes after */
    WAIT_FOR(atomic_load(&app_opens) == 1, 5000);
    assert_int_equal(atomic_load(&app_opens), 1);
    assert_int_equal(shim_send_all(s, "second", 6), 0);
    shim_set_timeout(s, 10000);
    char echo[11];
    size_t got = shim_recv_exact(s, echo, sizeof echo);
    if (got == sizeof echo) { /* no receive was pending: nothing to append */
        assert_memory_equal(echo, "hellosecond", sizeof echo);
        assert_int_equal(atomic_load(&app_closes), 0);
    } else {
        if (got) fail_msg("%zu of 11 bytes echoed (the rest lost?)", got);
        WAIT_FOR(atomic_load(&app_closes) == 1, 5000);
        assert_int_equal(atomic_load(&app_closes), 1);
        assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_NOMEM]), 1);
        assert_true(atomic_load(&fa_failed) > 0);
    }
    assert_int_equal(atomic_load(&pa_early), 0);
    shim_close(s);
    opens_and_closes_pair();
    af_finish();
}

/* Nothing fails here: every way the PROXY phase ends gives its memory back
 * (the parser, the proxy's record with its TLVs, the header an outbound
 * connection sends): a malformed header, a peer gone mid-header, no header
 * in time, a real client rejected, a proxied connection served (the server
 * connects to itself with pc_connect_ex and proxy_v2), a header still
 * pending at the stop. af_finish counts what was not freed. */
static void px_phase_config(pc_server_config_t *cfg)
{
    px_trusted(cfg);
    cfg->proxy_timeout_ms = 200;
    static const char deny[] = "deny 192.0.2.66\n";
    assert_int_equal(pc_rules_load_string(deny, strlen(deny), "rules", &cfg->rules, NULL, 0), 0);
}

static shim_sock_t px_send(const char *bytes)
{
    shim_sock_t s = connect_server(3000);
    if (*bytes) assert_int_equal(shim_send_all(s, bytes, strlen(bytes)), 0);
    return s;
}

static void proxy_phase_frees_everything(void **state)
{
    (void)state;
    af_start_with(px_phase_config);
    const char *ends[] = {"GET / HTTP/1.1\r\n\r\n", "", "PROXY TCP4 192.0.2.66 127.0.0.1 1 2\r\n"};
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        shim_sock_t s = px_send(ends[i]); /* malformed, timed out, rejected */
        size_t n;
        assert_int_equal(shim_wait_reset(s, &n), -1);
        shim_close(s);
    }
    shim_sock_t s = px_send("PROXY TCP4 "); /* gone mid-header */
    WAIT_FOR(stats().active == 1, 5000);
    shim_close_reset(s);
    WAIT_FOR(stats().closed[PC_CLOSE_PROXY] == 4, 5000);
    assert_int_equal(stats().closed[PC_CLOSE_PROXY], 4);
    pc_connect_opts_t o;
    pc_connect_opts_init(&o);
    o.proxy_v2 = 1;
    struct sockaddr_storage real;
    socklen_t rlen;
    assert_int_equal(pc_parse_endpoint("203.0.113.9:4444", &real, &rlen), 0);
    o.proxy_src = (const struct sockaddr *)&real;
    char ep[64];
    snprintf(ep, sizeof ep, "127.0.0.1:%d", g_port);
    pc_conn_id_t id = 0;
    assert_int_equal(pc_connect_ex(g_srv, ep, &o, NULL, NULL, &id), 0);
    WAIT_FOR(atomic_load(&app_opens) == 2, 5000); /* both ends */
    assert_int_equal(stats().proxy_headers, 2);
    assert_int_equal(pc_server_close_id(g_srv, id), 0);
    WAIT_FOR(atomic_load(&app_closes) == 2, 5000);
    s = px_send("PROXY "); /* pending at the stop */
    WAIT_FOR(stats().active == 1, 5000);
    assert_int_equal(stats().active, 1);
    opens_and_closes_pair();
    af_finish();
    shim_close(s);
}

/* No memory for the proxy's record once the header is whole: the
 * connection is reset at once and counted as PC_CLOSE_NOMEM, not left
 * waiting for its PROXY deadline. The header's first bytes are read
 * (bytes_in) before every allocation is made to fail, so the parser is
 * there and the record is the call that fails. */
static void px_nomem_config(pc_server_config_t *cfg)
{
    px_trusted(cfg);
    cfg->threads = 1;
    cfg->proxy_timeout_ms = 2000;
}

static void proxy_record_without_memory(void **state)
{
    (void)state;
    af_start_with(px_nomem_config);
    shim_sock_t s = px_send("PROXY TCP4 ");
    WAIT_FOR(stats().bytes_in == 11, 5000);
    assert_int_equal(stats().bytes_in, 11);
    fa_arm(1);
    const char *rest = "192.0.2.7 127.0.0.1 5555 80\r\n";
    assert_int_equal(shim_send_all(s, rest, strlen(rest)), 0);
    size_t n;
    assert_int_equal(shim_wait_reset(s, &n), -1);
    fa_disarm();
    shim_close(s);
    WAIT_FOR(stats().active == 0, 5000);
    pc_server_stats_t st = stats();
    assert_int_equal(st.closed[PC_CLOSE_NOMEM], 1);
    assert_int_equal(st.proxy_timeouts, 0);
    assert_true(atomic_load(&fa_failed) > 0);
    assert_int_equal(atomic_load(&app_opens), 0);
    opens_and_closes_pair();
    af_finish();
}

/* A graceful close from the strand flushes what another thread's send by
 * id had queued without needing memory: the inbox's own send side (its
 * sender allocated it) becomes the connection's, as when a kick takes the
 * bytes. Every allocation fails during the pc_conn_close call; the peer
 * still gets all the bytes, then a FIN. (The close took a second send side
 * from the allocator: the bytes were dropped and the connection reset,
 * PC_CLOSE_NOMEM; found by the review of the change.) */
static atomic_int cn_rc;

static void cn_data(pc_conn_t *c, const void *data, size_t len)
{
    (void)data;
    (void)len;
    atomic_store(&cn_rc, xsender_send(c, XSENDER_MAX / 2));
    fa_arm(1);
    pc_conn_close(c);
    fa_disarm();
}

static void cn_config(pc_server_config_t *cfg)
{
    cfg->threads = 1;
    cfg->cb.on_data = cn_data;
}

static void close_flushes_by_id_without_memory(void **state)
{
    (void)state;
    atomic_store(&cn_rc, 99);
    af_start_with(cn_config);
    xsender_start();
    shim_sock_t s = connect_server(3000);
    assert_int_equal(shim_send_all(s, "x", 1), 0);
    size_t n = 0;
    shim_set_timeout(s, 5000);
    int r = shim_wait_close(s, &n);
    shim_close(s);
    WAIT_FOR(atomic_load(&app_closes) == 1, 5000);
    if (r != 0 || n != XSENDER_MAX / 2)
        print_message("%llu of %d bytes, then %s; close reason %s\n", (unsigned long long)n,
                      XSENDER_MAX / 2,
                      r == 0    ? "FIN"
                      : r == -1 ? "reset"
                                : "timeout",
                      atomic_load(&g_reasons[PC_CLOSE_NOMEM]) ? "nomem" : "other");
    assert_int_equal(atomic_load(&cn_rc), 0);
    assert_int_equal(n, XSENDER_MAX / 2);
    assert_int_equal(r, 0);
    assert_int_equal(atomic_load(&g_reasons[PC_CLOSE_NOMEM]), 0);
    xsender_stop();
    opens_and_closes_pair();
    af_finish();
}

int main(int argc, char **argv)
{
    shim_init();
    pc_log_set_level(PC_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(fail_every_3, af_teardown),
        cmocka_unit_test_teardown(fail_every_7, af_teardown),
        cmocka_unit_test_teardown(fail_every_17, af_teardown),
        cmocka_unit_test_teardown(fail_every_101, af_teardown),
        cmocka_unit_test_teardown(fail_all_then_recover, af_teardown),
        cmocka_unit_test_teardown(accept_while_failing, af_teardown),
        cmocka_unit_test_teardown(failed_start_gives_slot_back, af_teardown),
        cmocka_unit_test_teardown(stop_while_failing, af_teardown),
        cmocka_unit_test_teardown(send_to_closed_id_while_failing, af_teardown),
        cmocka_unit_test_teardown(send_to_carrier_fails, af_teardown),
        cmocka_unit_test_teardown(post_to_carrier_fails, af_teardown),
        cmocka_unit_test_teardown(send_to_chunk_fails_under_cap, af_teardown),
        cmocka_unit_test_teardown(proxy_pause_without_memory, af_teardown),
        cmocka_unit_test_teardown(proxy_pause_append_without_memory, af_teardown),
        cmocka_unit_test_teardown(close_flushes_by_id_without_memory, af_teardown),
        cmocka_unit_test_teardown(proxy_phase_frees_everything, af_teardown),
        cmocka_unit_test_teardown(proxy_record_without_memory, af_teardown),
    };
    if (PICK_TEST(tests, argc, argv) != 0) return 1;
    return cmocka_run_group_tests_name("alloc_faults", tests, NULL, NULL);
}
