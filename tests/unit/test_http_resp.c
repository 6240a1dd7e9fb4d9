/* SPDX-License-Identifier: MIT */
/* Unit tests for samples/stress/http_resp (pc-stress's response parser):
 * framing (Content-Length, 1xx, 204/304, read-to-close), whether the
 * connection ends after a response (version, Connection options), errors,
 * long-line truncation, and that any split of a stream (at every byte position, in two
 * and three pieces, one byte at a time, stopping after each response) gives
 * the responses of feeding it whole. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http_resp.h"

#define MAXR 64

/* What a run reported. */
typedef struct got_s {
    int n;
    int status[MAXR];
    int close[MAXR];
    int error; /* a feed returned HTTP_RESP_ERROR */
    int eof;   /* http_resp_eof's result (when no error) */
    int stop;  /* callback asks to stop after each response */
} got_t;

static int on_resp(void *user, int status, int conn_close)
{
    got_t *g = user;
    assert_true(g->n < MAXR);
    assert_true(status >= 200 && status <= 599);
    g->status[g->n] = status;
    g->close[g->n] = conn_close;
    g->n++;
    return g->stop;
}

/* Feeds buf[0, len) to st, re-feeding after each stop; returns 0 or -1. */
static int feed_all(http_resp_t *st, got_t *g, const char *buf, size_t len)
{
    size_t off = 0;
    do {
        int before = g->n;
        ptrdiff_t r = http_resp_feed(st, buf + off, len - off, on_resp, g);
        if (r < 0) {
            assert_int_equal(r, HTTP_RESP_ERROR);
            return -1;
        }
        assert_true((size_t)r <= len - off);
        /* fewer bytes only when the callback asked to stop, once */
        if ((size_t)r < len - off) assert_true(g->stop && g->n == before + 1);
        if (g->stop) assert_true(g->n <= before + 1);
        off += (size_t)r;
    } while (off < len);
    return 0;
}

/* Feeds buf in pieces cut at cuts[0..ncut) (ascending), then ends it. */
static void run(got_t *g, const char *buf, size_t len, const size_t *cuts, int ncut, int stop)
{
    http_resp_t st;
    memset(g, 0, sizeof *g);
    g->stop = stop;
    http_resp_init(&st);
    size_t at = 0;
    for (int k = 0; k <= ncut; k++) {
        size_t to = k < ncut ? cuts[k] : len;
        if (feed_all(&st, g, buf + at, to - at) < 0) {
            g->error = 1;
            /* sticky */
            assert_int_equal(http_resp_feed(&st, "HTTP/1.1 200 OK\r\n\r\n", 19, on_resp, g),
                             HTTP_RESP_ERROR);
            assert_int_equal(http_resp_busy(&st), 1);
            assert_int_equal(http_resp_eof(&st, on_resp, g), HTTP_RESP_ERROR);
            return;
        }
        at = to;
    }
    g->eof = http_resp_eof(&st, on_resp, g);
    /* spent */
    assert_int_equal(http_resp_feed(&st, "x", 1, on_resp, g), HTTP_RESP_ERROR);
}

static void run_whole(got_t *g, const char *buf, size_t len)
{
    run(g, buf, len, NULL, 0, 0);
}

static void assert_same(const got_t *a, const got_t *b)
{
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->error, b->error);
    assert_int_equal(a->eof, b->eof);
    for (int k = 0; k < a->n; k++) {
        assert_int_equal(a->status[k], b->status[k]);
        assert_int_equal(a->close[k], b->close[k]);
    }
}

/* Every split of buf in two pieces, a sample of splits in three, one byte
 * per call, and stopping after each response give the whole result. */
static void assert_split_invariant(const char *buf, size_t len, const got_t *whole)
{
    got_t g;
    for (size_t i = 0; i <= len; i++) {
        run(&g, buf, len, &i, 1, 0);
        assert_same(whole, &g);
        run(&g, buf, len, &i, 1, 1);
        assert_same(whole, &g);
        for (size_t j = i; j <= len; j += 7) {
            size_t cuts[2] = {i, j};
            run(&g, buf, len, cuts, 2, (int)(j & 1));
            assert_same(whole, &g);
        }
    }
    size_t *cuts = malloc((len + 1) * sizeof *cuts);
    assert_non_null(cuts);
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    run(&g, buf, len, cuts, (int)(len ? len - 1 : 0), 0);
    assert_same(whole, &g);
    free(cuts);
}

#define S(lit) lit, sizeof(lit) - 1

/* ---- framing --------------------------------------------------------------------- */

static const char k_pipelined[] = "HTTP/1.1 200 OK\r\n"
                                  "Content-Length: 5\r\n"
                                  "\r\n"
                                  "hello"
                                  "HTTP/1.1 100 Continue\r\n"
                                  "\r\n"
                                  "HTTP/1.1 404 Not Found\r\n"
                                  "content-length:\t0 \r\n"
                                  "Server: x\r\n"
                                  "\r\n"
                                  "HTTP/1.1 204 No Content\r\n"
                                  "Content-Length: 7\r\n"
                                  "\r\n"
                                  "HTTP/1.1 304 Not Modified\r\n"
                                  "\r\n"
                                  "HTTP/1.0 301 Moved\n" /* bare LF */
                                  "CONTENT-LENGTH: 3\n"
                                  "\n"
                                  "abc"
                                  "HTTP/1.1 500 Oops\r\n"
                                  "Content-Length: 10\r\n"
                                  "Content-Length: 2\r\n" /* the last one wins */
                                  "\r\n"
                                  "ok"
                                  "HTTP/1.1 200 OK\r\n"
                                  "Connection: keep-alive, Close\r\n"
                                  "Content-Length: 1\r\n"
                                  "\r\n"
                                  "!"
                                  "HTTP/1.1 200 OK\r\n"
                                  "Content-Type: text/plain\r\n"
                                  "\r\n"
                                  "to the end HTTP/1.1 200 OK\r\n\r\n";

static void test_pipelined_stream(void **state)
{
    (void)state;
    got_t w;
    run_whole(&w, S(k_pipelined));
    static const int status[] = {200, 404, 204, 304, 301, 500, 200, 200};
    /* HTTP/1.0 without keep-alive, Connection: close, and a body that runs to
     * the end each end the connection */
    static const int close[] = {0, 0, 0, 0, 1, 0, 1, 1};
    assert_int_equal(w.error, 0);
    assert_int_equal(w.n, 8); /* the last one completed by the end of the stream */
    assert_int_equal(w.eof, 0);
    for (int k = 0; k < 8; k++) {
        assert_int_equal(w.status[k], status[k]);
        assert_int_equal(w.close[k], close[k]);
    }
    assert_split_invariant(S(k_pipelined), &w);
}

static void test_interim_then_final(void **state)
{
    (void)state;
    static const char in[] = "HTTP/1.1 100 Continue\r\n\r\n"
                             "HTTP/1.1 103 Early Hints\r\n"
                             "Link: </a.css>; rel=preload\r\n"
                             "Content-Length: 9\r\n"     /* ignored in a 1xx */
                             "Transfer-Encoding: x\r\n"  /* ignored in a 1xx */
                             "Connection: close\r\n\r\n" /* ignored in a 1xx */
                             "HTTP/1.1 199 Last\r\n\r\n" /* the last interim code */
                             "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    got_t w;
    run_whole(&w, S(in));
    assert_int_equal(w.error, 0);
    assert_int_equal(w.n, 1);
    assert_int_equal(w.status[0], 200);
    assert_int_equal(w.close[0], 0);
    assert_int_equal(w.eof, 0);
    assert_split_invariant(S(in), &w);

    /* an interim response alone is not a response; ending there is clean */
    run_whole(&w, S("HTTP/1.1 100 Continue\r\n\r\n"));
    assert_int_equal(w.n, 0);
    assert_int_equal(w.eof, 0);
}

static void test_no_body_statuses(void **state)
{
    (void)state;
    static const char in[] = "HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\n"
                             "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n"
                             "HTTP/1.1 304 Not Modified\r\n\r\n"
                             "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
                             "HTTP/1.1 503 Busy\r\nContent-Length: 00\r\nConnection: close\r\n\r\n";
    got_t w;
    run_whole(&w, S(in));
    assert_int_equal(w.error, 0);
    assert_int_equal(w.n, 5);
    assert_int_equal(w.status[0], 204);
    assert_int_equal(w.status[1], 304);
    assert_int_equal(w.status[2], 304);
    assert_int_equal(w.status[3], 200);
    assert_int_equal(w.status[4], 503);
    assert_int_equal(w.close[4], 1);
    assert_int_equal(w.eof, 0);
    assert_split_invariant(S(in), &w);
}

/* The status code is the three digits, each in its place. */
static void test_status_codes(void **state)
{
    (void)state;
    static const char in[] = "HTTP/1.1 226 IM Used\r\nContent-Length: 0\r\n\r\n"
                             "HTTP/1.1 429 Too Many\r\nContent-Length: 0\r\n\r\n"
                             "HTTP/1.1 418 Teapot\r\nContent-Length: 0\r\n\r\n"
                             "HTTP/1.1 599 Last\r\nContent-Length: 0\r\n\r\n"
                             "HTTP/1.1 250 Odd\r\nContent-Length: 0\r\n\r\n";
    static const int status[] = {226, 429, 418, 599, 250};
    got_t w;
    run_whole(&w, S(in));
    assert_int_equal(w.error, 0);
    assert_int_equal(w.n, 5);
    for (int k = 0; k < 5; k++)
        assert_int_equal(w.status[k], status[k]);
    assert_split_invariant(S(in), &w);
}

/* Header lines of one byte or of a colon alone are header lines (ignored),
 * not the end of the head. */
static void test_short_header_lines(void **state)
{
    (void)state;
    static const char in[] = "HTTP/1.1 200 OK\r\nX\r\n:\nContent-Length: 2\r\n\r\nok"
                             "HTTP/1.1 201 Created\r\nY\nContent-Length: 0\r\n\r\n";
    got_t w;
    run_whole(&w, S(in));
    assert_int_equal(w.error, 0);
    assert_int_equal(w.n, 2);
    assert_int_equal(w.status[0], 200);
    assert_int_equal(w.status[1], 201);
    assert_int_equal(w.close[0], 0);
    assert_int_equal(w.eof, 0);
    assert_split_invariant(S(in), &w);
}

/* Whether the connection ends after a response: the version's default, and
 * the Connection options (whole tokens, any case, any line, close wins). */
static void test_which_responses_end_the_connection(void **state)
{
    (void)state;
#define R(v, hdrs) "HTTP/1." v " 200 OK\r\n" hdrs "Content-Length: 2\r\n\r\nok"
    static const struct {
        const char *in;
        int close;
    } cases[] = {
        {R("1", ""), 0},
        {R("0", ""), 1}, /* HTTP/1.0: no keep-alive unless asked for */
        {R("0", "Connection: keep-alive\r\n"), 0},
        {R("0", "connection:\tKeep-Alive \r\n"), 0},
        {R("0", "Connection: Upgrade,keep-alive\r\n"), 0},
        {R("0", "Connection: keep-alive, close\r\n"), 1},
        {R("0", "Connection: keep-alive\r\nConnection: close\r\n"), 1},
        {R("0", "Connection: keep-alives\r\n"), 1},
        {R("0", "Connection: keep alive\r\n"), 1},
        {R("0", "Keep-Alive: timeout=5\r\n"), 1}, /* not the Connection option */
        {R("1", "Connection: close\r\n"), 1},
        {R("1", "Connection: CLOSE\r\n"), 1},
        {R("1", "Connection: , ,close,\r\n"), 1},
        {R("1", "Connection: keep-alive\r\n"), 0},
        {R("1", "Connection: closed\r\n"), 0}, /* whole options only */
        {R("1", "Connection: not-close\r\n"), 0},
        {R("1", "Connection:\r\n"), 0},
        {R("1", "X-Connection: close\r\n"), 0},
        {R("9", ""), 0}, /* a later 1.x is persistent like 1.1 */
        {"HTTP/1.0 204 No Content\r\n\r\n", 1},
        {"HTTP/1.0 304 Not Modified\r\nConnection: keep-alive\r\n\r\n", 0},
    };
#undef R
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        got_t w;
        run_whole(&w, cases[k].in, strlen(cases[k].in));
        assert_int_equal(w.error, 0);
        assert_int_equal(w.n, 1);
        assert_int_equal(w.close[0], cases[k].close);
        assert_int_equal(w.eof, 0);
        assert_split_invariant(cases[k].in, strlen(cases[k].in), &w);
    }
    /* each response on its own: a closing one does not leak into the next,
     * and the parser reads on after it (a server may answer anyway) */
    static const char in[] =
        "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
    got_t w;
    run_whole(&w, S(in));
    assert_int_equal(w.n, 4);
    assert_int_equal(w.close[0], 1);
    assert_int_equal(w.close[1], 0);
    assert_int_equal(w.close[2], 1);
    assert_int_equal(w.close[3], 0);
    assert_split_invariant(S(in), &w);
}

/* Content-Length 0 completes at the end of the head, in the same call. */
static void test_content_length_zero(void **state)
{
    (void)state;
    http_resp_t st;
    got_t g;
    memset(&g, 0, sizeof g);
    http_resp_init(&st);
    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(http_resp_feed(&st, S(in), on_resp, &g), (ptrdiff_t)sizeof(in) - 1);
    assert_int_equal(g.n, 1);
    assert_int_equal(http_resp_busy(&st), 0);
    /* one byte short of the head: nothing yet, and the end would cut it */
    http_resp_init(&st);
    g.n = 0;
    assert_int_equal(http_resp_feed(&st, in, sizeof(in) - 2, on_resp, &g),
                     (ptrdiff_t)sizeof(in) - 2);
    assert_int_equal(g.n, 0);
    assert_int_equal(http_resp_busy(&st), 1);
    assert_int_equal(http_resp_eof(&st, on_resp, &g), 1);
    assert_int_equal(g.n, 0);
}

static void test_read_to_close(void **state)
{
    (void)state;
    http_resp_t st;
    got_t g;
    memset(&g, 0, sizeof g);
    http_resp_init(&st);
    static const char head[] = "HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n";
    assert_int_equal(http_resp_feed(&st, S(head), on_resp, &g), (ptrdiff_t)sizeof(head) - 1);
    assert_int_equal(g.n, 0);
    assert_int_equal(st.state, HTTP_RESP_S_BODY_TO_CLOSE);
    assert_int_equal(http_resp_busy(&st), 0); /* the end completes it */
    /* anything is body now, a status line too */
    static const char body[] = "HTTP/1.1 500 no\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_int_equal(http_resp_feed(&st, S(body), on_resp, &g), (ptrdiff_t)sizeof(body) - 1);
    assert_int_equal(g.n, 0);
    assert_int_equal(http_resp_eof(&st, on_resp, &g), 0);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.status[0], 200);
    assert_int_equal(g.close[0], 1);
    /* spent */
    assert_int_equal(http_resp_feed(&st, "x", 1, on_resp, &g), HTTP_RESP_ERROR);
    assert_int_equal(http_resp_eof(&st, on_resp, &g), 0);
    assert_int_equal(g.n, 1);

    /* without Connection: close the response still ends with the stream, and
     * the connection with it */
    got_t w;
    run_whole(&w, S("HTTP/1.1 404 Not Found\r\n\r\n"));
    assert_int_equal(w.n, 1);
    assert_int_equal(w.status[0], 404);
    assert_int_equal(w.close[0], 1);
    assert_int_equal(w.eof, 0);
    run_whole(&w, S("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nbody"));
    assert_int_equal(w.n, 1);
    assert_int_equal(w.close[0], 1);
}

/* Where the end of the stream falls decides http_resp_eof's answer. */
static void test_eof_positions(void **state)
{
    (void)state;
    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    size_t len = sizeof(in) - 1;
    for (size_t k = 0; k <= len; k++) {
        http_resp_t st;
        got_t g;
        memset(&g, 0, sizeof g);
        http_resp_init(&st);
        assert_int_equal(http_resp_feed(&st, in, k, on_resp, &g), (ptrdiff_t)k);
        int busy = http_resp_busy(&st);
        assert_int_equal(busy, k > 0 && k < len);
        assert_int_equal(http_resp_eof(&st, on_resp, &g), busy);
        assert_int_equal(g.n, k == len);
    }
}

/* The callback stops the feed right after a response's last byte. */
static void test_stop(void **state)
{
    (void)state;
    static const char one[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    static const char two[] = "HTTP/1.1 204 No Content\r\n\r\n";
    char buf[sizeof one + sizeof two];
    memcpy(buf, one, sizeof one - 1);
    memcpy(buf + sizeof one - 1, two, sizeof two);
    size_t len = sizeof one - 1 + sizeof two - 1;
    http_resp_t st;
    got_t g;
    memset(&g, 0, sizeof g);
    g.stop = 1;
    http_resp_init(&st);
    assert_int_equal(http_resp_feed(&st, buf, len, on_resp, &g), (ptrdiff_t)sizeof one - 1);
    assert_int_equal(g.n, 1);
    assert_int_equal(http_resp_feed(&st, buf + sizeof one - 1, len - (sizeof one - 1), on_resp, &g),
                     (ptrdiff_t)sizeof two - 1);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.status[1], 204);
    assert_int_equal(http_resp_feed(&st, buf, 0, on_resp, &g), 0);
}

/* ---- errors ---------------------------------------------------------------------- */

static void expect_error(const char *in, size_t len, int responses_before)
{
    got_t w;
    run_whole(&w, in, len);
    assert_int_equal(w.error, 1);
    assert_int_equal(w.n, responses_before);
    assert_split_invariant(in, len, &w);
}

static void test_bad_status_line(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",    "HTTP/1.1 20 OK\r\n\r\n",   "HTTP/1.1 600 Nope\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n", "HTTP/1.1  200 OK\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n",
        "http/1.1 200 OK\r\n\r\n",  "\r\nHTTP/1.1 200 OK\r\n",  "GET / HTTP/1.1\r\n\r\n",
        "HTTP/1.1\t200 OK\r\n",     "HTTP/1.1 -20 OK\r\n",      "XTTP/1.1 200 OK\r\n\r\n",
        "HTTP/1.x 200 OK\r\n\r\n",  "HTTP/1. 200 OK\r\n\r\n",   "HTTP/1.10 200 OK\r\n\r\n",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        expect_error(bad[k], strlen(bad[k]), 0);
    /* "HTTP/1.1 200" with nothing after it is enough */
    got_t w;
    run_whole(&w, S("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"));
    assert_int_equal(w.error, 0);
    assert_int_equal(w.n, 1);
    /* a good response first is reported before the error */
    expect_error(S("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/9.9 200 OK\r\n"), 1);
    /* a short status line (bare LF) kept across calls after a line that
     * left digits where a code would end: the kept line ends at its own
     * length, what lies beyond it in the buffer is not read */
    expect_error(S("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: 0000000000\r\n\r\n"
                   "HTTP/1.1 20\n\n"),
                 1);
}

static void test_bad_content_length(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length:  \t \r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5,5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        expect_error(bad[k], strlen(bad[k]), 0);
    /* big but in range: a long body follows, the end cuts it */
    got_t w;
    run_whole(&w, S("HTTP/1.1 200 OK\r\nContent-Length: 1844674407370955160\r\n\r\nabc"));
    assert_int_equal(w.error, 0);
    assert_int_equal(w.n, 0);
    assert_int_equal(w.eof, 1);
}

static void test_chunked_is_error(void **state)
{
    (void)state;
    expect_error(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
                 0);
    expect_error(S("HTTP/1.1 204 No Content\r\n\r\n"
                   "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\nContent-Length: 3\r\n\r\nabc"),
                 1);
}

/* ---- long lines -------------------------------------------------------------------- */

/* Lines longer than HTTP_RESP_LINE_KEEP are cut the same way whether they
 * arrive whole or in pieces, and framing around them is kept. */
static void test_long_lines(void **state)
{
    (void)state;
    char buf[2048];
    int n = 0;
    char pad[301];
    memset(pad, 'a', 300);
    pad[300] = 0;
    n += snprintf(buf + n, sizeof buf - (size_t)n, "HTTP/1.1 200 %s\r\n", pad);
    n += snprintf(buf + n, sizeof buf - (size_t)n, "X-Long: %s\r\n", pad);
    n += snprintf(buf + n, sizeof buf - (size_t)n, "Content-Length: 4\r\n\r\nbody");
    n += snprintf(buf + n, sizeof buf - (size_t)n, "HTTP/1.1 201 Created\r\nX-A: %s\r\n", pad);
    n +=
        snprintf(buf + n, sizeof buf - (size_t)n, "Connection: close\r\nContent-Length: 0\r\n\r\n");
    got_t w;
    run_whole(&w, buf, (size_t)n);
    assert_int_equal(w.error, 0);
    assert_int_equal(w.n, 2);
    assert_int_equal(w.status[0], 200);
    assert_int_equal(w.status[1], 201);
    assert_int_equal(w.close[1], 1);
    assert_int_equal(w.eof, 0);
    assert_split_invariant(buf, (size_t)n, &w);

    /* "close" past the kept part of a Connection line is not seen */
    n = snprintf(buf, sizeof buf,
                 "HTTP/1.1 200 OK\r\nConnection: %.*s, close\r\nContent-Length: 0\r\n\r\n", 88,
                 pad);
    run_whole(&w, buf, (size_t)n);
    assert_int_equal(w.n, 1);
    assert_int_equal(w.close[0], 0);
    assert_split_invariant(buf, (size_t)n, &w);
    n = snprintf(buf, sizeof buf,
                 "HTTP/1.1 200 OK\r\nConnection: %.*s, close\r\nContent-Length: 0\r\n\r\n", 77,
                 pad);
    run_whole(&w, buf, (size_t)n);
    assert_int_equal(w.n, 1);
    assert_int_equal(w.close[0], 1); /* ends exactly at the limit */
    assert_split_invariant(buf, (size_t)n, &w);

    /* a Content-Length line cut inside its digits: the kept digits count */
    char zeros[101];
    memset(zeros, '0', 100);
    zeros[100] = 0;
    n = snprintf(buf, sizeof buf, "HTTP/1.1 200 OK\r\nContent-Length: %s7\r\n\r\n", zeros);
    run_whole(&w, buf, (size_t)n);
    assert_int_equal(w.error, 0);
    assert_int_equal(w.n, 1); /* 0, not 7 */
    assert_split_invariant(buf, (size_t)n, &w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipelined_stream),
        cmocka_unit_test(test_interim_then_final),
        cmocka_unit_test(test_no_body_statuses),
        cmocka_unit_test(test_status_codes),
        cmocka_unit_test(test_short_header_lines),
        cmocka_unit_test(test_which_responses_end_the_connection),
        cmocka_unit_test(test_content_length_zero),
        cmocka_unit_test(test_read_to_close),
        cmocka_unit_test(test_eof_positions),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_bad_status_line),
        cmocka_unit_test(test_bad_content_length),
        cmocka_unit_test(test_chunked_is_error),
        cmocka_unit_test(test_long_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
