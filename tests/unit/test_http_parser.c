/* SPDX-License-Identifier: MIT */
/* Unit tests for samples/http/http_parser: grammar, limits, error statuses, and
 * that any split of the input (down to one byte at a time) gives the result of
 * parsing it whole. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http_parser.h"

#define MAXH 64

typedef struct parsed_s {
    int rc;
    http_request_t req;
    http_header_t hdrs[MAXH];
} parsed_t;

/* Parses buf[0, n) in one call with a fresh parser. */
static int parse_whole(parsed_t *o, const char *buf, size_t n, size_t limit, size_t maxh)
{
    http_parser_t p;
    http_parser_init(&p, limit);
    http_request_init(&o->req, o->hdrs, maxh);
    o->rc = http_parse_request(&p, buf, n, &o->req);
    return o->rc;
}

/* Feeds buf one more byte per call; every call before the first non-zero
 * result must return 0, and later calls must repeat that result. */
static int parse_bytewise(parsed_t *o, const char *buf, size_t n, size_t limit, size_t maxh)
{
    http_parser_t p;
    int rc = 0;
    http_parser_init(&p, limit);
    http_request_init(&o->req, o->hdrs, maxh);
    for (size_t k = 1; k <= n; k++) {
        int r = http_parse_request(&p, buf, k, &o->req);
        if (rc == 0)
            rc = r;
        else
            assert_int_equal(r, rc);
    }
    o->rc = rc;
    return rc;
}

/* Compares two results parsed from the same buffer. */
static void assert_same(const parsed_t *a, const parsed_t *b)
{
    assert_int_equal(a->rc, b->rc);
    if (a->rc <= 0) return;
    const http_request_t *x = &a->req, *y = &b->req;
    assert_int_equal(x->method, y->method);
    assert_ptr_equal(x->method_str, y->method_str);
    assert_int_equal(x->method_len, y->method_len);
    assert_ptr_equal(x->target, y->target);
    assert_int_equal(x->target_len, y->target_len);
    assert_ptr_equal(x->path, y->path);
    assert_int_equal(x->path_len, y->path_len);
    assert_ptr_equal(x->host, y->host);
    assert_int_equal(x->host_len, y->host_len);
    assert_int_equal(x->target_form, y->target_form);
    assert_int_equal(x->version_minor, y->version_minor);
    assert_true(x->content_length == y->content_length);
    assert_int_equal(x->flags, y->flags);
    assert_int_equal(x->num_headers, y->num_headers);
    for (size_t k = 0; k < x->num_headers; k++) {
        assert_ptr_equal(x->headers[k].name, y->headers[k].name);
        assert_int_equal(x->headers[k].name_len, y->headers[k].name_len);
        assert_ptr_equal(x->headers[k].value, y->headers[k].value);
        assert_int_equal(x->headers[k].value_len, y->headers[k].value_len);
    }
}

/* Parses whole, byte by byte, and split at every position with two calls;
 * all must agree. Returns the result; o holds the whole parse. */
static int parse_n(parsed_t *o, const char *s, size_t n, size_t limit, size_t maxh)
{
    parsed_t *t = malloc(sizeof(*t));
    assert_non_null(t);
    parse_whole(o, s, n, limit, maxh);
    parse_bytewise(t, s, n, limit, maxh);
    assert_same(o, t);
    for (size_t cut = 1; cut < n; cut++) {
        http_parser_t p;
        http_parser_init(&p, limit);
        http_request_init(&t->req, t->hdrs, maxh);
        int r1 = http_parse_request(&p, s, cut, &t->req);
        t->rc = http_parse_request(&p, s, n, &t->req);
        if (r1 != 0) assert_int_equal(r1, t->rc);
        assert_same(o, t);
    }
    free(t);
    return o->rc;
}

static int parse_s(parsed_t *o, const char *s)
{
    return parse_n(o, s, strlen(s), 0, MAXH);
}

static void assert_slice(const char *p, size_t n, const char *want)
{
    assert_int_equal(n, strlen(want));
    assert_memory_equal(p, want, n);
}

/* Expected status for a request given as a NUL-free string. */
typedef struct {
    const char *req;
    int rc; /* > 0: the head length is strlen(req); otherwise the error */
} status_case_t;

static void run_cases(const status_case_t *c, size_t n)
{
    parsed_t o;
    for (size_t k = 0; k < n; k++) {
        int want = c[k].rc > 0 ? (int)strlen(c[k].req) : c[k].rc;
        int got = parse_s(&o, c[k].req);
        if (got != want) print_error("case %u: %s\n", (unsigned)k, c[k].req);
        assert_int_equal(got, want);
    }
}

#define OK 1

/* ---- valid requests ------------------------------------------------------ */

static void test_simple_get(void **state)
{
    (void)state;
    parsed_t o;
    const char *s = "GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n"
                    "Accept: */*\r\n\r\n";
    assert_int_equal(parse_s(&o, s), (int)strlen(s));
    assert_int_equal(o.req.method, HTTP_GET);
    assert_slice(o.req.method_str, o.req.method_len, "GET");
    assert_slice(o.req.target, o.req.target_len, "/index.html?x=1");
    assert_slice(o.req.path, o.req.path_len, "/index.html?x=1");
    assert_int_equal(o.req.target_form, HTTP_TARGET_ORIGIN);
    assert_int_equal(o.req.version_minor, 1);
    assert_slice(o.req.host, o.req.host_len, "example.com");
    assert_int_equal(o.req.num_headers, 3);
    assert_slice(o.req.headers[1].name, o.req.headers[1].name_len, "User-Agent");
    assert_slice(o.req.headers[1].value, o.req.headers[1].value_len, "t");
    assert_ptr_equal(o.req.headers[2].name, s + o.req.headers[2].name_off);
    assert_ptr_equal(o.req.headers[2].value, s + o.req.headers[2].value_off);
    assert_true(o.req.flags & HTTP_F_KEEP_ALIVE);
    assert_true(o.req.flags & HTTP_F_HOST);
    assert_false(o.req.flags & HTTP_F_CONTENT_LENGTH);
    assert_true(o.req.content_length == 0);
}

static void test_http10_no_headers(void **state)
{
    (void)state;
    parsed_t o;
    const char *s = "HEAD / HTTP/1.0\r\n\r\n";
    assert_int_equal(parse_s(&o, s), (int)strlen(s));
    assert_int_equal(o.req.method, HTTP_HEAD);
    assert_int_equal(o.req.version_minor, 0);
    assert_int_equal(o.req.num_headers, 0);
    assert_null(o.req.host);
    assert_false(o.req.flags & HTTP_F_KEEP_ALIVE);
}

static void test_methods(void **state)
{
    (void)state;
    static const struct {
        const char *m;
        http_method_t want;
    } ms[] = {{"GET", HTTP_GET},
              {"HEAD", HTTP_HEAD},
              {"POST", HTTP_POST},
              {"PUT", HTTP_PUT},
              {"DELETE", HTTP_DELETE},
              {"OPTIONS", HTTP_OPTIONS},
              {"PATCH", HTTP_METHOD_UNKNOWN},
              {"get", HTTP_METHOD_UNKNOWN},
              {"GETS", HTTP_METHOD_UNKNOWN},
              {"HEAP", HTTP_METHOD_UNKNOWN},
              {"POSE", HTTP_METHOD_UNKNOWN},
              {"PUX", HTTP_METHOD_UNKNOWN},
              {"DELETA", HTTP_METHOD_UNKNOWN},
              {"OPTIONZ", HTTP_METHOD_UNKNOWN},
              {"M-SEARCH", HTTP_METHOD_UNKNOWN},
              {"X!#$%&'*+-.^_`|~9", HTTP_METHOD_UNKNOWN}};
    for (size_t k = 0; k < sizeof(ms) / sizeof(ms[0]); k++) {
        char buf[128];
        parsed_t o;
        size_t n = (size_t)snprintf(buf, sizeof(buf), "%s /p HTTP/1.1\r\nHost: h\r\n\r\n", ms[k].m);
        assert_int_equal(parse_n(&o, buf, n, 0, MAXH), (int)n);
        assert_int_equal(o.req.method, ms[k].want);
        assert_slice(o.req.method_str, o.req.method_len, ms[k].m);
        if (ms[k].want != HTTP_METHOD_UNKNOWN)
            assert_string_equal(http_method_name(ms[k].want), ms[k].m);
    }
    assert_string_equal(http_method_name(HTTP_METHOD_UNKNOWN), "UNKNOWN");
}

static void test_header_values_trimmed(void **state)
{
    (void)state;
    parsed_t o;
    const char *s = "GET / HTTP/1.1\r\nHost:h\r\nA: \t x y \t \r\nB:\r\nC:   \r\n"
                    "D: caf\xc3\xa9 \"q\" (c)\r\n\r\n";
    assert_int_equal(parse_s(&o, s), (int)strlen(s));
    assert_int_equal(o.req.num_headers, 5);
    assert_slice(o.req.headers[0].value, o.req.headers[0].value_len, "h");
    assert_slice(o.req.headers[1].value, o.req.headers[1].value_len, "x y");
    assert_slice(o.req.headers[2].value, o.req.headers[2].value_len, "");
    assert_slice(o.req.headers[3].value, o.req.headers[3].value_len, "");
    assert_slice(o.req.headers[4].value, o.req.headers[4].value_len, "caf\xc3\xa9 \"q\" (c)");
}

static void test_case_insensitive_names(void **state)
{
    (void)state;
    parsed_t o;
    const char *s = "POST /u HTTP/1.1\r\nhOsT: a\r\nCONTENT-LENGTH: 12\r\nconnection: CLOSE\r\n"
                    "eXpEcT: 100-Continue\r\n\r\n";
    assert_int_equal(parse_s(&o, s), (int)strlen(s));
    assert_slice(o.req.host, o.req.host_len, "a");
    assert_true(o.req.flags & HTTP_F_CONTENT_LENGTH);
    assert_true(o.req.content_length == 12);
    assert_true(o.req.flags & HTTP_F_CONN_CLOSE);
    assert_false(o.req.flags & HTTP_F_KEEP_ALIVE);
    assert_true(o.req.flags & HTTP_F_EXPECT_CONTINUE);
    /* names are reported as sent */
    assert_slice(o.req.headers[0].name, o.req.headers[0].name_len, "hOsT");
    assert_int_equal(parse_s(&o, "GET / HTTP/1.1\r\nHost: a\r\ntransfer-ENCODING: x\r\n\r\n"),
                     -501);
}

static void test_leading_empty_lines(void **state)
{
    (void)state;
    parsed_t o;
    const char *s = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_int_equal(parse_s(&o, s), (int)strlen(s));
    assert_ptr_equal(o.req.method_str, s + 4);
    assert_int_equal(parse_s(&o, "\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
    assert_int_equal(parse_s(&o, "\r\rGET / HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
}

static void test_expect_upgrade_flags(void **state)
{
    (void)state;
    parsed_t o;
    assert_true(parse_s(&o, "PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                            "Content-Length: 3\r\n\r\n") > 0);
    assert_true(o.req.flags & HTTP_F_EXPECT);
    assert_true(o.req.flags & HTTP_F_EXPECT_CONTINUE);
    assert_true(parse_s(&o, "GET / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n") > 0);
    assert_true(o.req.flags & HTTP_F_EXPECT);
    assert_false(o.req.flags & HTTP_F_EXPECT_CONTINUE);
    assert_true(parse_s(&o, "GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continues\r\n\r\n") > 0);
    assert_true(o.req.flags & HTTP_F_EXPECT);
    assert_false(o.req.flags & HTTP_F_EXPECT_CONTINUE);
    /* HTTP/1.0: the expectation is ignored (RFC 9110 section 10.1.1) */
    assert_true(parse_s(&o, "PUT /f HTTP/1.0\r\nExpect: 100-continue\r\n"
                            "Content-Length: 3\r\n\r\n") > 0);
    assert_false(o.req.flags & (HTTP_F_EXPECT | HTTP_F_EXPECT_CONTINUE));
    assert_true(parse_s(&o, "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
                            "Upgrade: websocket\r\n\r\n") > 0);
    assert_true(o.req.flags & HTTP_F_UPGRADE);
    assert_true(o.req.flags & HTTP_F_CONN_UPGRADE);
    assert_true(o.req.flags & HTTP_F_KEEP_ALIVE);
}

/* ---- incremental behaviour ----------------------------------------------- */

static const char *const sample_requests[] = {
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "\r\nPOST /form?a=%20b HTTP/1.0\r\nContent-Length: 0005\r\nConnection: keep-alive\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: [::1]:8080\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
    "GET http://ex.com:80/p?q HTTP/1.1\r\nHost: ex.com\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n Folded: no\r\n\r\n",
    "GET / HTTP/2.0\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
    "GET /%zz HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,\r\n\r\n",
    "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
};

static void test_bytewise_equals_whole(void **state)
{
    (void)state;
    parsed_t a, b;
    for (size_t k = 0; k < sizeof(sample_requests) / sizeof(sample_requests[0]); k++) {
        const char *s = sample_requests[k];
        parse_whole(&a, s, strlen(s), 0, MAXH);
        parse_bytewise(&b, s, strlen(s), 0, MAXH);
        assert_same(&a, &b);
        assert_int_not_equal(a.rc, 0);
    }
}

static void test_every_split_equals_whole(void **state)
{
    (void)state;
    parsed_t o;
    /* parse_n checks all two-call splits against the whole parse */
    for (size_t k = 0; k < sizeof(sample_requests) / sizeof(sample_requests[0]); k++)
        assert_int_not_equal(parse_s(&o, sample_requests[k]), 0);
}

static void test_buffer_moves_between_calls(void **state)
{
    (void)state;
    const char *s = "GET /moved HTTP/1.1\r\nHost: m\r\nX-A: 1\r\nX-B: 2\r\n\r\nBODY";
    size_t n = strlen(s);
    http_parser_t p;
    http_header_t hdrs[8];
    http_request_t req;
    char *cur = NULL;
    int rc = 0;
    http_parser_init(&p, 0);
    http_request_init(&req, hdrs, 8);
    /* The caller's buffer is reallocated to a fresh block before every call. */
    for (size_t k = 3; k <= n && rc == 0; k += 3) {
        char *nb = malloc(k);
        assert_non_null(nb);
        memcpy(nb, s, k);
        free(cur);
        cur = nb;
        rc = http_parse_request(&p, cur, k, &req);
    }
    assert_int_equal(rc, (int)(n - 4));
    assert_slice(req.target, req.target_len, "/moved");
    assert_slice(req.host, req.host_len, "m");
    assert_slice(req.headers[2].value, req.headers[2].value_len, "2");
    assert_true(req.headers[2].value >= cur && req.headers[2].value < cur + n);
    free(cur);
}

static void test_pipelined_three(void **state)
{
    (void)state;
    const char *s = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
                    "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
                    "\r\n" /* stray CRLF after a body, tolerated */
                    "GET /3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    size_t n = strlen(s), pos = 0;
    static const char *const targets[] = {"/1", "/2", "/3"};
    http_parser_t p;
    http_header_t hdrs[8];
    http_request_t req;
    http_parser_init(&p, 0);
    for (int k = 0; k < 3; k++) {
        http_request_init(&req, hdrs, 8);
        int rc = http_parse_request(&p, s + pos, n - pos, &req);
        assert_true(rc > 0);
        assert_slice(req.target, req.target_len, targets[k]);
        assert_int_equal(req.flags & HTTP_F_KEEP_ALIVE, k < 2 ? HTTP_F_KEEP_ALIVE : 0);
        pos += (size_t)rc + (size_t)req.content_length;
        http_parser_reset(&p);
    }
    assert_int_equal(pos, n);
    /* nothing left: need more */
    http_request_init(&req, hdrs, 8);
    assert_int_equal(http_parse_request(&p, s + n, 0, &req), 0);
}

/* The request object may be kept across http_parser_reset: each request
 * starts with no header lines of its own, not after the previous ones. */
static void test_request_reused_after_reset(void **state)
{
    (void)state;
    const char *s = "GET /a HTTP/1.1\r\nHost: one\r\nX-A: 1\r\n\r\n"
                    "GET /b HTTP/1.1\r\nHost: two\r\n\r\n";
    http_parser_t p;
    http_header_t hdrs[3];
    http_request_t req;
    http_parser_init(&p, 0);
    http_request_init(&req, hdrs, 3);
    int rc = http_parse_request(&p, s, strlen(s), &req);
    assert_true(rc > 0);
    assert_int_equal(req.num_headers, 2);
    http_parser_reset(&p);
    int rc2 = http_parse_request(&p, s + rc, strlen(s) - (size_t)rc, &req);
    assert_int_equal(rc2, (int)strlen(s) - rc);
    assert_int_equal(req.num_headers, 1);
    assert_slice(req.headers[0].name, req.headers[0].name_len, "Host");
    assert_slice(req.host, req.host_len, "two");
}

static void test_sticky_results_and_reset(void **state)
{
    (void)state;
    const char *good = "GET / HTTP/1.1\r\nHost: h\r\n\r\nGARBAGE";
    http_parser_t p;
    http_header_t hdrs[4];
    http_request_t req;
    http_parser_init(&p, 0);
    http_request_init(&req, hdrs, 4);
    int rc = http_parse_request(&p, good, strlen(good), &req);
    assert_int_equal(rc, (int)strlen(good) - 7);
    assert_int_equal(http_parse_request(&p, good, strlen(good), &req), rc);
    http_parser_reset(&p);
    /* "GARBAGE\r\n" is not a request line */
    assert_int_equal(http_parse_request(&p, "GARBAGE\r\n", 9, &req), -400);
    assert_int_equal(http_parse_request(&p, "GET / HTTP/1.1\r\n", 16, &req), -400);
    http_parser_reset(&p);
    assert_int_equal(http_parse_request(&p, good, strlen(good), &req), rc);
    assert_int_equal(http_parse_request(&p, NULL, 0, &req), rc);
}

/* ---- errors ---------------------------------------------------------------- */

static void test_bad_method(void **state)
{
    (void)state;
    static const status_case_t c[] = {
        {"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {" GET / HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GE:T / HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"G\"T / HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", -400}, /* empty target */
        {" / HTTP/1.1\r\nHost: h\r\n\r\n", -400},     /* empty method */
        {"BREW  HTTP/1.1\r\nHost: h\r\n\r\n", -400},  /* empty target, unknown method */
        {"GET\r\n\r\n", -400},
    };
    run_cases(c, sizeof(c) / sizeof(c[0]));
}

static void test_control_bytes_in_request_line(void **state)
{
    (void)state;
    static const char base[] = "GET /abc HTTP/1.1\r\nHost: h\r\n\r\n";
    const size_t rl_end = 17; /* before the CR of the request line */
    static const unsigned char bad[] = {0x00, 0x01, 0x08, 0x0b, 0x0c, 0x0e, 0x1f, 0x7f, 0x0a, 0x0d};
    parsed_t o;
    for (size_t pos = 0; pos < rl_end; pos++) {
        for (size_t k = 0; k < sizeof(bad); k++) {
            char buf[sizeof(base)];
            memcpy(buf, base, sizeof(base));
            buf[pos] = (char)bad[k];
            int rc = parse_n(&o, buf, sizeof(base) - 1, 0, MAXH);
            if (rc != -400) print_error("byte 0x%02x at %u\n", bad[k], (unsigned)pos);
            assert_int_equal(rc, -400);
        }
    }
    /* also NUL and controls in a header value, and in a name */
    char v[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a?b\r\n\r\n";
    size_t n = sizeof(v) - 1;
    for (size_t k = 0; k < sizeof(bad); k++) {
        v[29] = (char)bad[k];
        assert_int_equal(parse_n(&o, v, n, 0, MAXH), -400);
    }
    char nm[] = "GET / HTTP/1.1\r\nHost: h\r\nX?Y: a\r\n\r\n";
    nm[26] = '\0';
    assert_int_equal(parse_n(&o, nm, sizeof(nm) - 1, 0, MAXH), -400);
}

/* Field values are scanned 8 bytes at a time when that many are buffered
 * (word_has_ctl): a control byte or DEL anywhere in a long value is a 400
 * there too, at every offset in the word, and every other byte is accepted
 * (the short value above takes the byte path only). */
static void test_control_bytes_in_long_value(void **state)
{
    (void)state;
    static const char base[] = "GET / HTTP/1.1\r\nHost: h\r\nX: abcdefghijklmnopqrstuvwx\r\n\r\n";
    const size_t v0 = 28, vn = 24; /* the value "abc...x" */
    parsed_t o;
    for (unsigned ch = 0; ch < 0x100; ch++) {
        int ok = ch == '\t' || (ch >= 0x20 && ch != 0x7f);
        for (size_t pos = v0; pos < v0 + vn; pos++) {
            char buf[sizeof(base)];
            memcpy(buf, base, sizeof(base));
            buf[pos] = (char)ch;
            int rc = parse_whole(&o, buf, sizeof(base) - 1, 0, MAXH);
            if (rc != (ok ? (int)(sizeof(base) - 1) : -400))
                print_error("byte 0x%02x at %u: %d\n", ch, (unsigned)pos, rc);
            assert_int_equal(rc, ok ? (int)(sizeof(base) - 1) : -400);
        }
    }
}

static void test_target_chars(void **state)
{
    (void)state;
    static const status_case_t c[] = {
        {"GET /a-b._~!$&'()*+,;=:@/?x=%2F%aa HTTP/1.1\r\nHost: h\r\n\r\n", OK},
        {"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /a\"b HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /<x> HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /a\\b HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /{x}|^` HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /%4 HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /% HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", -400},
    };
    run_cases(c, sizeof(c) / sizeof(c[0]));
}

static void test_target_forms(void **state)
{
    (void)state;
    parsed_t o;
    assert_true(parse_s(&o, "GET http://Example.com:8080/a/b?c HTTP/1.1\r\nHost: x\r\n\r\n") > 0);
    assert_int_equal(o.req.target_form, HTTP_TARGET_ABSOLUTE);
    assert_slice(o.req.target, o.req.target_len, "http://Example.com:8080/a/b?c");
    assert_slice(o.req.path, o.req.path_len, "/a/b?c");
    assert_true(parse_s(&o, "GET HTTPS://[::1] HTTP/1.1\r\nHost: x\r\n\r\n") > 0);
    assert_int_equal(o.req.target_form, HTTP_TARGET_ABSOLUTE);
    assert_int_equal(o.req.path_len, 0);
    assert_true(parse_s(&o, "GET http://h?q=1 HTTP/1.1\r\nHost: x\r\n\r\n") > 0);
    assert_slice(o.req.path, o.req.path_len, "?q=1");
    assert_true(parse_s(&o, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n") > 0);
    assert_int_equal(o.req.target_form, HTTP_TARGET_ASTERISK);
    assert_true(parse_s(&o, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n") >
                0);
    assert_int_equal(o.req.method, HTTP_METHOD_UNKNOWN);
    assert_int_equal(o.req.target_form, HTTP_TARGET_AUTHORITY);
    static const status_case_t c[] = {
        {"GET * HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n", -400}, /* "*" is the whole target */
        {"OPTIONS */ HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET h:443 HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET http:// HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"BREW a/b HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"BREW * HTTP/1.1\r\nHost: h\r\n\r\n", OK},
    };
    run_cases(c, sizeof(c) / sizeof(c[0]));
}

static void test_versions(void **state)
{
    (void)state;
    static const status_case_t c[] = {
        {"GET / HTTP/2.0\r\nHost: h\r\n\r\n", -505},
        {"GET / HTTP/1.2\r\nHost: h\r\n\r\n", -505},
        {"GET / HTTP/9.9\r\nHost: h\r\n\r\n", -505},
        {"GET / HTTP/0.9\r\nHost: h\r\n\r\n", -505},
        {"GET / HTTP/0.1\r\nHost: h\r\n\r\n", -505}, /* major 0, minor in range */
        {"GET / HTTP/0.0\r\n\r\n", -505},
        {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", -505},
        {"GET / HTTP/x\r\nHost: h\r\n\r\n", -400},
        {"GET / HTTP/1.x\r\nHost: h\r\n\r\n", -400},
        {"GET / HTTP/1\r\nHost: h\r\n\r\n", -400},
        {"GET / http/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET / HTTP/1.10\r\nHost: h\r\n\r\n", -400},
        {"GET / HTTP/11.1\r\nHost: h\r\n\r\n", -400},
        {"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", -400},
        {"GET / HTTP/1.1\rHost: h\r\n\r\n", -400},
        /* CR then a byte other than LF, the ten bytes "HTTP/1.1\rX" all here */
        {"GET / HTTP/1.1\rXHost: h\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\tHost: h\r\n\r\n", -400},
        {"GET / HTTPS/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /\r\n\r\n", -400}, /* HTTP/0.9 simple request */
        {"GET / HTTP/1.0\r\n\r\n", OK},
    };
    run_cases(c, sizeof(c) / sizeof(c[0]));
}

static void test_host_rules(void **state)
{
    (void)state;
    static const status_case_t c[] = {
        {"GET / HTTP/1.1\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nX-Host: h\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", -400},
        {"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: \r\n\r\n", OK},
        {"GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n", OK},
        {"GET / HTTP/1.0\r\n\r\n", OK},
    };
    run_cases(c, sizeof(c) / sizeof(c[0]));
}

static void test_content_length_valid(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        uint64_t want;
    } c[] = {{"0", 0},
             {"5", 5},
             {"007", 7},
             {"  42  ", 42},
             {"\t13", 13},
             {"000000000000000000000000000001", 1},
             {"9223372036854775807", UINT64_C(9223372036854775807)}};
    for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
        char buf[160];
        parsed_t o;
        size_t n = (size_t)snprintf(
            buf, sizeof(buf), "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:%s\r\n\r\n", c[k].v);
        assert_int_equal(parse_n(&o, buf, n, 0, MAXH), (int)n);
        assert_true(o.req.flags & HTTP_F_CONTENT_LENGTH);
        assert_true(o.req.content_length == c[k].want);
    }
}

static void test_content_length_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {"",
                                      "+5",
                                      "-1",
                                      "5 5",
                                      "5,5",
                                      "5, 5",
                                      "0x10",
                                      "1e3",
                                      "5;",
                                      "1:",       /* '0' + 10 */
                                      "\xd9\xa5", /* Arabic-Indic five */
                                      "9223372036854775808",
                                      "18446744073709551616",
                                      "99999999999999999999999999999999"};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        char buf[160];
        parsed_t o;
        size_t n = (size_t)snprintf(
            buf, sizeof(buf), "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %s\r\n\r\n", bad[k]);
        int rc = parse_n(&o, buf, n, 0, MAXH);
        if (rc != -400) print_error("Content-Length: %s\n", bad[k]);
        assert_int_equal(rc, -400);
    }
}

static void test_content_length_duplicate(void **state)
{
    (void)state;
    static const status_case_t c[] = {
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nContent-Length: 1\r\nHost: h\r\nCONTENT-LENGTH: 1\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Lengths: 6\r\n\r\n", OK},
    };
    run_cases(c, sizeof(c) / sizeof(c[0]));
}

static void test_transfer_encoding(void **state)
{
    (void)state;
    static const status_case_t c[] = {
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", OK},
        {"POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: ChUnKeD\r\n\r\n", OK},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , chunked ,\r\n\r\n", OK},
        /* a coding other than chunked: not implemented */
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", -501},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", -501},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
         "\r\n",
         -501},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip;q=1\r\n\r\n", -501},
        /* no framing, or chunked not final / twice / with parameters: 400 */
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
         "chunked\r\n"
         "\r\n",
         -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked x\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ;q=1\r\n\r\n", -400}, /* no name */
        /* HTTP/1.0 with Transfer-Encoding: faulty framing (RFC 9112 6.1) */
        {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", -400},
        {"POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
         -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
         -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n",
         -400},
        /* the malformed request wins over the unimplemented one */
        {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", -400},
    };
    run_cases(c, sizeof(c) / sizeof(c[0]));
    parsed_t o;
    assert_true(parse_s(&o, c[0].req) > 0);
    assert_int_equal(o.req.flags & (HTTP_F_TRANSFER_ENC | HTTP_F_CHUNKED | HTTP_F_CONTENT_LENGTH),
                     HTTP_F_TRANSFER_ENC | HTTP_F_CHUNKED);
    assert_true(o.req.flags & HTTP_F_KEEP_ALIVE);
    assert_true(o.req.content_length == 0);
    /* only the public flags are reported */
    assert_int_equal(o.req.flags & ~0x7ffu, 0);
    parse_s(&o, c[3].req);
    assert_true(o.req.flags & HTTP_F_TRANSFER_ENC); /* best effort after an error */
    assert_false(o.req.flags & HTTP_F_CHUNKED);
}

/* ---- chunked bodies ---------------------------------------------------------- */

typedef struct ck_out_s {
    int rc;
    size_t consumed; /* over all calls */
    size_t data_len;
    char data[512];
} ck_out_t;

static void ck_sink(void *user, const char *p, size_t n)
{
    ck_out_t *o = user;
    assert_true(n > 0);
    assert_true(o->data_len + n <= sizeof o->data);
    memcpy(o->data + o->data_len, p, n);
    o->data_len += n;
}

/* Feeds s[0, n) in pieces ending at the cut positions (each call gets only
 * the bytes not consumed yet); stops at the first non-zero result. */
static void ck_feed(ck_out_t *o, const char *s, size_t n, uint64_t max_body, size_t max_trailer,
                    const size_t *cuts, size_t ncuts)
{
    http_chunked_t c;
    http_chunked_init(&c, max_body, max_trailer);
    memset(o, 0, sizeof *o);
    size_t pos = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : n;
        if (end < pos) continue;
        size_t used = 0;
        o->rc = http_chunked_parse(&c, s + pos, end - pos, &used, ck_sink, o);
        assert_true(used <= end - pos);
        pos += used;
        if (o->rc != 0) break;
        assert_int_equal(pos, end); /* 0: everything used */
    }
    o->consumed = pos;
    if (o->rc == 1) {
        size_t used = 99;
        assert_int_equal(http_chunked_parse(&c, s + pos, n - pos, &used, ck_sink, o), 1);
        assert_int_equal(used, 0); /* sticky, consumes nothing */
        assert_true(http_chunked_total(&c) == o->data_len);
    } else if (o->rc < 0) {
        size_t used = 99;
        assert_int_equal(http_chunked_parse(&c, s, n, &used, ck_sink, o), o->rc);
        assert_int_equal(used, 0);
    }
}

/* Whole, byte by byte and at every two-piece split: all must agree. */
static void ck_all(ck_out_t *o, const char *s, size_t n, uint64_t max_body, size_t max_trailer)
{
    ck_out_t *t = malloc(sizeof *t);
    assert_non_null(t);
    ck_feed(o, s, n, max_body, max_trailer, NULL, 0);
    size_t *cuts = malloc((n + 1) * sizeof *cuts);
    assert_non_null(cuts);
    for (size_t k = 0; k < n; k++)
        cuts[k] = k + 1;
    ck_feed(t, s, n, max_body, max_trailer, cuts, n);
    assert_int_equal(t->rc, o->rc);
    assert_int_equal(t->consumed, o->consumed);
    assert_int_equal(t->data_len, o->data_len);
    assert_memory_equal(t->data, o->data, o->data_len);
    for (size_t cut = 0; cut <= n; cut++) {
        ck_feed(t, s, n, max_body, max_trailer, &cut, 1);
        assert_int_equal(t->rc, o->rc);
        assert_int_equal(t->consumed, o->consumed);
        assert_int_equal(t->data_len, o->data_len);
        assert_memory_equal(t->data, o->data, o->data_len);
    }
    free(cuts);
    free(t);
}

typedef struct {
    const char *body;
    int rc;           /* 1: complete; 0: incomplete; < 0: the error */
    const char *data; /* the data when complete */
    const char *rest; /* bytes after the body, when complete */
} ck_case_t;

static void run_ck_cases(const ck_case_t *c, size_t n, uint64_t max_body, size_t max_trailer)
{
    ck_out_t o;
    for (size_t k = 0; k < n; k++) {
        size_t len = strlen(c[k].body);
        ck_all(&o, c[k].body, len, max_body, max_trailer);
        if (o.rc != c[k].rc) print_error("case %u: %s\n", (unsigned)k, c[k].body);
        assert_int_equal(o.rc, c[k].rc);
        if (c[k].rc == 1) {
            assert_int_equal(o.data_len, strlen(c[k].data));
            assert_memory_equal(o.data, c[k].data, o.data_len);
            assert_string_equal(c[k].body + o.consumed, c[k].rest);
        }
        if (c[k].rc == 0) assert_int_equal(o.consumed, len);
    }
}

static void test_chunked_valid(void **state)
{
    (void)state;
    static const ck_case_t c[] = {
        {"0\r\n\r\n", 1, "", ""},
        {"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n", 1, "hello world",
         "GET / HTTP/1.1\r\n"},
        /* hex in either case, leading zeros */
        {"00000A\r\n0123456789\r\nf\r\nabcdefghijklmno\r\n000\r\n\r\n", 1,
         "0123456789abcdefghijklmno", ""},
        {"1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\nX", 1, "abcdefghijklmnopqrstuvwxyz", "X"},
        /* extensions are skipped, with BWS before ';' */
        {"5;name=val;q=\"x y;z\"\r\nhello\r\n0;last\r\n\r\n", 1, "hello", ""},
        {"5 \t;a\r\nhello\r\n0 ;b=\xc3\xa9\r\n\r\n", 1, "hello", ""},
        /* trailers are skipped */
        {"3\r\nabc\r\n0\r\nX-Checksum: 1234\r\nEmpty:\r\nY:  \t v \r\n\r\nnext", 1, "abc", "next"},
        /* data may hold anything, CRLF and NUL-free here for the string form */
        {"4\r\n\r\n\r\n\r\n0\r\n\r\n", 1, "\r\n\r\n", ""},
        /* incomplete at every stage */
        {"5", 0, NULL, NULL},
        {"5\r\nhel", 0, NULL, NULL},
        {"5\r\nhello\r", 0, NULL, NULL},
        {"5\r\nhello\r\n0\r\n", 0, NULL, NULL},
        {"0\r\nX: y\r\n", 0, NULL, NULL},
        {"0\r\n\r", 0, NULL, NULL},
        {"5;ext", 0, NULL, NULL},
    };
    run_ck_cases(c, sizeof c / sizeof c[0], UINT64_MAX, 0);
}

static void test_chunked_malformed(void **state)
{
    (void)state;
    static const ck_case_t c[] = {
        {"\r\n", -400, NULL, NULL},  /* no size */
        {"x\r\n", -400, NULL, NULL}, /* not hex */
        {"-5\r\nhello\r\n0\r\n\r\n", -400, NULL, NULL},
        {"+5\r\nhello\r\n0\r\n\r\n", -400, NULL, NULL},
        {"0x5\r\nhello\r\n0\r\n\r\n", -400, NULL, NULL},
        {" 5\r\nhello\r\n0\r\n\r\n", -400, NULL, NULL}, /* whitespace before the size */
        {"5 \r\nhello\r\n0\r\n\r\n", -400, NULL, NULL}, /* BWS not followed by ';' */
        {"5 x\r\nhello\r\n0\r\n\r\n", -400, NULL, NULL},
        {"5x\r\nhello\r\n0\r\n\r\n", -400, NULL, NULL},
        {"5\nhello\r\n0\r\n\r\n", -400, NULL, NULL}, /* bare LF */
        {"5\r\rhello\r\n0\r\n\r\n", -400, NULL, NULL},
        {"5\r\nhelloX\r\n0\r\n\r\n", -400, NULL, NULL}, /* data longer than its size */
        {"5\r\nhello\n0\r\n\r\n", -400, NULL, NULL},    /* no CRLF after the data */
        {"5\r\nhello\r0\r\n\r\n", -400, NULL, NULL},
        {"5\r\nhelloX\n0\r\n\r\n", -400, NULL, NULL}, /* a byte other than CR, then LF */
        {"5\r\nhello\n\n0\r\n\r\n", -400, NULL, NULL},
        {"5\r\nhello\r\r0\r\n\r\n", -400, NULL, NULL},       /* CR, then a byte other than LF */
        {"5;a\x01\r\nhello\r\n0\r\n\r\n", -400, NULL, NULL}, /* control byte in an extension */
        {"5;a\nhello\r\n0\r\n\r\n", -400, NULL, NULL},
        {"5;a\x7f\r\nhello\r\n0\r\n\r\n", -400, NULL, NULL},
        /* overflow: 2^63 and 17 digits */
        {"8000000000000000\r\n", -400, NULL, NULL},
        {"10000000000000000\r\n", -400, NULL, NULL},
        {"ffffffffffffffffffff\r\n", -400, NULL, NULL},
        /* trailers */
        {"0\r\n X: folded\r\n\r\n", -400, NULL, NULL},
        {"0\r\nNoColon\r\n\r\n", -400, NULL, NULL},
        {"0\r\nBad Name: v\r\n\r\n", -400, NULL, NULL},
        {"0\r\n: v\r\n\r\n", -400, NULL, NULL},
        {"0\r\nX: a\x01\r\n\r\n", -400, NULL, NULL},
        {"0\r\nX: a\n\r\n", -400, NULL, NULL},
        {"0\r\n\r\r", -400, NULL, NULL},
        {"0\r\n\n", -400, NULL, NULL},
    };
    run_ck_cases(c, sizeof c / sizeof c[0], UINT64_MAX, 0);
    /* the largest size is framing-valid; only the body limit stops it */
    static const ck_case_t big[] = {{"7fffffffffffffff\r\n", 0, NULL, NULL},
                                    {"7FFFFFFFFFFFFFFF;x\r\nab", 0, NULL, NULL}};
    run_ck_cases(big, 2, UINT64_MAX, 0);
}

static void test_chunked_limits(void **state)
{
    (void)state;
    /* the body limit counts data bytes; refused at the size line */
    static const ck_case_t body10[] = {
        {"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 1, "helloworld", ""},
        {"a\r\n0123456789\r\n0\r\n\r\n", 1, "0123456789", ""},
        {"b\r\n", -413, NULL, NULL},
        {"5\r\nhello\r\n6\r\n", -413, NULL, NULL},
        {"5\r\nhello\r\n5\r\nworld\r\n1\r\n", -413, NULL, NULL},
        {"7fffffffffffffff\r\n", -413, NULL, NULL},
    };
    run_ck_cases(body10, sizeof body10 / sizeof body10[0], 10, 0);
    static const ck_case_t body0[] = {{"0\r\n\r\n", 1, "", ""}, {"1\r\n", -413, NULL, NULL}};
    run_ck_cases(body0, 2, 0, 0);

    /* the trailer section (lines and the final CRLF) is bounded */
    static const ck_case_t tr16[] = {
        {"0\r\nX: 123456789\r\n\r\n", 1, "", ""},         /* 14 + 2 = 16 bytes */
        {"0\r\nX: 1234567890\r\n\r\n", -431, NULL, NULL}, /* 17 */
        {"0\r\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", -431, NULL, NULL},
    };
    run_ck_cases(tr16, sizeof tr16 / sizeof tr16[0], UINT64_MAX, 16);

    /* size-line bytes that carry no size (extensions with their BWS and ';',
     * leading zeros after the first) are bounded by the same number over the
     * whole body, counted apart from the trailer section */
    static const ck_case_t ext16[] = {
        {"5;abcdefghijklmno\r\nhello\r\n0\r\n\r\n", 1, "hello", ""},    /* 16 */
        {"5;abcdefghijklmnop\r\nhello\r\n0\r\n\r\n", -431, NULL, NULL}, /* 17 */
        {"5 \t;abcdefghijklm\r\nhello\r\n0\r\n\r\n", 1, "hello", ""},   /* 16 */
        {"5 \t;abcdefghijklmn\r\nhello\r\n0\r\n\r\n", -431, NULL, NULL},
        /* over the body, not per line: 8 + 8, then one more */
        {"1;abcdefg\r\nx\r\n1;abcdefg\r\ny\r\n0\r\n\r\n", 1, "xy", ""},
        {"1;abcdefg\r\nx\r\n1;abcdefg\r\ny\r\n1;\r\nz\r\n", -431, NULL, NULL},
        {"1;abcdefg\r\nx\r\n1;abcdefg\r\ny\r\n0;\r\n\r\n", -431, NULL, NULL},
        /* 17 zeros: the first is the size's own digit, 16 extra */
        {"000000000000000001\r\nx\r\n0\r\n\r\n", 1, "x", ""},
        {"0000000000000000001\r\nx\r\n0\r\n\r\n", -431, NULL, NULL},
        {"1\r\nx\r\n00000000000000000\r\n\r\n", 1, "x", ""},
        {"1\r\nx\r\n000000000000000000\r\n\r\n", -431, NULL, NULL},
        /* a full extension budget and a full trailer section together */
        {"0;abcdefghijklmno\r\nX: 123456789\r\n\r\n", 1, "", ""},
        /* significant digits and the CRLFs are not counted */
        {"a\r\n0123456789\r\na\r\n0123456789\r\na\r\n0123456789\r\n"
         "a\r\n0123456789\r\na\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
         1, "012345678901234567890123456789012345678901234567890123456789", ""},
    };
    run_ck_cases(ext16, sizeof ext16 / sizeof ext16[0], UINT64_MAX, 16);

    /* a chunk-size line (size, extensions, CRLF) is at most HTTP_CHUNK_LINE_MAX */
    size_t room = HTTP_CHUNK_LINE_MAX - 3; /* "5;" + ext + CRLF: one byte too many */
    char *s = malloc(HTTP_CHUNK_LINE_MAX + 64);
    assert_non_null(s);
    memcpy(s, "5;", 2);
    memset(s + 2, 'a', room);
    strcpy(s + 2 + room, "\r\nhello\r\n0\r\n\r\n");
    http_chunked_t c;
    size_t used;
    http_chunked_init(&c, UINT64_MAX, 0);
    assert_int_equal(http_chunked_parse(&c, s, strlen(s), &used, NULL, NULL), -400);
    room--;
    memset(s + 2, 'a', room);
    strcpy(s + 2 + room, "\r\nhello\r\n0\r\n\r\n");
    http_chunked_init(&c, UINT64_MAX, 0);
    assert_int_equal(http_chunked_parse(&c, s, strlen(s), &used, NULL, NULL), 1);
    assert_int_equal(used, strlen(s));
    assert_true(http_chunked_total(&c) == 5);
    /* a max_trailer above INT32_MAX is clamped, not truncated to its low 32
     * bits (0 would refuse the final CRLF) */
    static const char tr[] = "1\r\nx\r\n0\r\nX: y\r\n\r\n";
    http_chunked_init(&c, UINT64_MAX, (size_t)1 << 32);
    assert_int_equal(http_chunked_parse(&c, tr, strlen(tr), &used, NULL, NULL), 1);
    assert_int_equal(used, strlen(tr));
    /* leading zeros count against the line too */
    memset(s, '0', HTTP_CHUNK_LINE_MAX + 8);
    http_chunked_init(&c, UINT64_MAX, 0);
    assert_int_equal(http_chunked_parse(&c, s, HTTP_CHUNK_LINE_MAX + 8, &used, NULL, NULL), -400);
    free(s);
}

/* A large body fed in uneven pieces: every data byte comes out once, in order. */
typedef struct big_sink_s {
    uint8_t *p;
    size_t n, cap;
} big_sink_t;

static void big_sink(void *user, const char *p, size_t n)
{
    big_sink_t *b = user;
    assert_true(n > 0 && b->n + n <= b->cap);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void test_chunked_large_uneven(void **state)
{
    (void)state;
    enum { NCHUNK = 200 };
    size_t cap = 200000;
    char *s = malloc(cap);
    uint8_t *want = malloc(cap);
    big_sink_t got = {malloc(cap), 0, cap};
    assert_non_null(s);
    assert_non_null(want);
    assert_non_null(got.p);
    size_t n = 0, wn = 0;
    unsigned seed = 12345;
    for (int k = 0; k < NCHUNK; k++) {
        seed = seed * 1103515245u + 12345u;
        size_t sz = 1 + (seed >> 16) % 700;
        n += (size_t)snprintf(s + n, cap - n, "%zx%s\r\n", sz, k % 3 ? "" : ";k=v");
        for (size_t j = 0; j < sz; j++) {
            seed = seed * 1103515245u + 12345u;
            want[wn++] = (uint8_t)(seed >> 24);
            s[n++] = (char)(seed >> 24);
        }
        memcpy(s + n, "\r\n", 2);
        n += 2;
    }
    n += (size_t)snprintf(s + n, cap - n, "0\r\nT: v\r\n\r\nNEXT");

    http_chunked_t c;
    http_chunked_init(&c, UINT64_MAX, 0);
    size_t pos = 0;
    int rc = 0;
    while (rc == 0) {
        seed = seed * 1103515245u + 12345u;
        size_t piece = 1 + (seed >> 16) % 997;
        if (piece > n - pos) piece = n - pos;
        size_t used = 0;
        rc = http_chunked_parse(&c, s + pos, piece, &used, big_sink, &got);
        if (rc == 0) assert_int_equal(used, piece);
        pos += used;
    }
    assert_int_equal(rc, 1);
    assert_int_equal(n - pos, 4);
    assert_memory_equal(s + pos, "NEXT", 4);
    assert_int_equal(got.n, wn);
    assert_memory_equal(got.p, want, wn);
    assert_true(http_chunked_total(&c) == wn);
    free(got.p);
    free(want);
    free(s);
}

static void test_header_syntax(void **state)
{
    (void)state;
    static const status_case_t c[] = {
        {"GET / HTTP/1.1\r\nHost : h\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\r\nX Y: z\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\r\n: z\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\r\nX@Y: z\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\r\nX-\xc3\xa9: z\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\r\nX: \x7f\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\r\n\r\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\r\nX!#$%&'*+-.^_`|~: ok\r\n\r\n", OK},
    };
    run_cases(c, sizeof(c) / sizeof(c[0]));
}

static void test_obs_fold_rejected(void **state)
{
    (void)state;
    static const status_case_t c[] = {
        {"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\n Host: h\r\n\r\n", -400}, /* whitespace before the first header */
        {"GET / HTTP/1.1\r\nHost: h\r\n \r\n\r\n", -400},
        /* a folded line that looks like a header of its own */
        {"GET / HTTP/1.1\r\nHost: h\r\n X: y\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\r\n\tX: y\r\n\r\n", -400},
    };
    run_cases(c, sizeof(c) / sizeof(c[0]));
}

static void test_bare_lf_rejected(void **state)
{
    (void)state;
    static const status_case_t c[] = {
        {"GET / HTTP/1.1\nHost: h\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\r\n\n", -400},
        {"GET / HTTP/1.0\n\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\r\nX: a\nb\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\r\nX: a\n\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\n\nX: a\r\n\r\n", -400},
    };
    run_cases(c, sizeof(c) / sizeof(c[0]));
}

static void test_keep_alive_rules(void **state)
{
    (void)state;
    static const struct {
        const char *minor, *conn; /* conn NULL: no Connection header */
        int ka;
    } c[] = {
        {"1", NULL, 1},
        {"1", "close", 0},
        {"1", "Close", 0},
        {"1", "keep-alive", 1},
        {"1", "Upgrade, close", 0},
        {"1", " ,  , close ,", 0},
        {"1", "closed", 1},
        {"1", "close-ish", 1},
        {"1", "keep-alive, close", 0},
        {"0", NULL, 0},
        {"0", "keep-alive", 1},
        {"0", "Keep-Alive", 1},
        {"0", "foo,\tKEEP-ALIVE\t", 1},
        {"0", "close", 0},
        {"0", "keep-alive, close", 0},
        {"0", "keep-alive-ish", 0},
        {"0", "keep alive", 0},
    };
    for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
        char buf[160];
        parsed_t o;
        size_t n;
        if (c[k].conn)
            n = (size_t)snprintf(buf, sizeof(buf),
                                 "GET / HTTP/1.%s\r\nHost: h\r\nConnection: %s\r\n\r\n", c[k].minor,
                                 c[k].conn);
        else
            n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.%s\r\nHost: h\r\n\r\n",
                                 c[k].minor);
        assert_int_equal(parse_n(&o, buf, n, 0, MAXH), (int)n);
        if (!!(o.req.flags & HTTP_F_KEEP_ALIVE) != c[k].ka)
            print_error("HTTP/1.%s Connection: %s\n", c[k].minor, c[k].conn ? c[k].conn : "-");
        assert_int_equal(!!(o.req.flags & HTTP_F_KEEP_ALIVE), c[k].ka);
    }
    /* two Connection lines combine */
    parsed_t o;
    assert_true(
        parse_s(&o, "GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n") > 0);
    assert_false(o.req.flags & HTTP_F_KEEP_ALIVE);
}

/* ---- limits ------------------------------------------------------------------ */

static void test_huge_header_431_early(void **state)
{
    (void)state;
    const size_t big = 1u << 20, limit = 8192, chunk = 1000;
    char *buf = malloc(big + 64);
    assert_non_null(buf);
    size_t n = (size_t)snprintf(buf, 64, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
    memset(buf + n, 'a', big);
    n += big;
    memcpy(buf + n, "\r\n\r\n", 4);
    n += 4;

    /* whole */
    parsed_t *o = malloc(sizeof(*o));
    assert_non_null(o);
    assert_int_equal(parse_whole(o, buf, n, limit, MAXH), -431);
    /* as it arrives: answered as soon as the limit is buffered */
    http_parser_t p;
    http_parser_init(&p, limit);
    http_request_init(&o->req, o->hdrs, MAXH);
    size_t have = 0;
    int rc = 0;
    while (rc == 0 && have < n) {
        have = have + chunk < n ? have + chunk : n;
        rc = http_parse_request(&p, buf, have, &o->req);
    }
    assert_int_equal(rc, -431);
    assert_true(have >= limit && have < limit + chunk);
    /* byte by byte: exactly at the limit */
    http_parser_init(&p, limit);
    http_request_init(&o->req, o->hdrs, MAXH);
    for (have = 1, rc = 0; rc == 0; have++)
        rc = http_parse_request(&p, buf, have, &o->req);
    assert_int_equal(rc, -431);
    assert_int_equal(have - 1, limit);
    /* a long request line is bounded by the same limit: inside the target
     * it is a 414 (RFC 9112 section 3), see test_long_target_414 */
    memcpy(buf, "GET /", 5);
    memset(buf + 5, 'a', 20000);
    assert_int_equal(parse_whole(o, buf, 20005, limit, MAXH), -414);
    free(o);
    free(buf);
}

/* The head limit reached inside the request-target is a 414, whole, as it
 * arrives and byte by byte (also inside a %-escape); in the method, the
 * version or a header it stays a 431. */
static void test_long_target_414(void **state)
{
    (void)state;
    enum { LIMIT = 64 };
    char buf[256];
    parsed_t o;
    memcpy(buf, "GET /", 5);
    memset(buf + 5, 'a', 200);
    assert_int_equal(parse_whole(&o, buf, 205, LIMIT, MAXH), -414);
    assert_int_equal(parse_n(&o, buf, 205, LIMIT, MAXH), -414);
    http_parser_t p;
    http_request_t req;
    int rc = 0;
    size_t have;
    http_parser_init(&p, LIMIT);
    http_request_init(&req, NULL, 0);
    for (have = 1; rc == 0; have++)
        rc = http_parse_request(&p, buf, have, &req);
    assert_int_equal(rc, -414);
    assert_int_equal(have - 1, LIMIT);
    assert_int_equal(req.method, HTTP_GET); /* parsed before the error */
    /* the limit falls between '%' and its two hex digits */
    memcpy(buf + LIMIT - 1, "%41", 3);
    assert_int_equal(parse_whole(&o, buf, 205, LIMIT, MAXH), -414);
    memcpy(buf + LIMIT - 2, "%41", 3);
    assert_int_equal(parse_whole(&o, buf, 205, LIMIT, MAXH), -414);
    /* a target that fits is not affected, the head beyond it is a 431 */
    size_t n = (size_t)snprintf(buf, sizeof buf, "GET /%050d HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    assert_int_equal(parse_whole(&o, buf, n, LIMIT, MAXH), -431);
    assert_true(n > LIMIT);
    memset(buf, 'G', 200); /* a method running past the limit */
    assert_int_equal(parse_whole(&o, buf, 200, LIMIT, MAXH), -431);
    assert_string_equal(http_reason(414), "URI Too Long");
}

static void test_head_exactly_at_limit(void **state)
{
    (void)state;
    parsed_t o;
    const char *s = "GET / HTTP/1.1\r\nHost: h\r\nX: 0123456789\r\n\r\n";
    size_t n = strlen(s);
    assert_int_equal(parse_n(&o, s, n, n, MAXH), (int)n);
    assert_int_equal(parse_n(&o, s, n, n - 1, MAXH), -431);
    /* more bytes than the head (a body) do not matter */
    char buf[128];
    memcpy(buf, s, n);
    memset(buf + n, 'b', 50);
    assert_int_equal(parse_whole(&o, buf, n + 50, n, MAXH), (int)n);
    /* the limit is not reached yet: need more */
    assert_int_equal(parse_whole(&o, s, n - 1, n, MAXH), 0);
    /* leading empty lines count */
    assert_int_equal(parse_whole(&o, "\r\n\r\n\r\n\r\n", 8, 8, MAXH), -431);
}

static void test_header_count_limit(void **state)
{
    (void)state;
    parsed_t o;
    const char *four = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    const char *five = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    assert_int_equal(parse_n(&o, four, strlen(four), 0, 4), (int)strlen(four));
    assert_int_equal(o.req.num_headers, 4);
    assert_int_equal(parse_n(&o, five, strlen(five), 0, 4), -431);
    assert_int_equal(parse_n(&o, five, strlen(five), 0, 5), (int)strlen(five));
    /* 64 is the usual array; the 65th header line is a 431 */
    char buf[2048];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n");
    for (int k = 0; k < 65; k++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "H%d: v\r\n", k);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
    assert_int_equal(parse_whole(&o, buf, n, 0, MAXH), -431);
    /* no array at all */
    http_parser_t p;
    http_request_t req;
    http_parser_init(&p, 0);
    http_request_init(&req, NULL, 10);
    assert_int_equal(http_parse_request(&p, four, strlen(four), &req), -431);
}

static void test_default_and_clamped_limit(void **state)
{
    (void)state;
    http_parser_t p;
    http_parser_init(&p, 0);
    assert_int_equal(p.max_head, HTTP_DEFAULT_MAX_HEAD);
    http_parser_init(&p, (size_t)1 << 40);
    assert_true(p.max_head <= 0x7fffffff);
    parsed_t o;
    /* clamped, not truncated to its low 32 bits (0): a request parses */
    static const char get[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_int_equal(parse_whole(&o, get, strlen(get), (size_t)1 << 40, MAXH), (int)strlen(get));
    assert_int_equal(parse_whole(&o, get, strlen(get), (size_t)1 << 32, MAXH), (int)strlen(get));
    char *buf = malloc(HTTP_DEFAULT_MAX_HEAD + 16);
    assert_non_null(buf);
    memcpy(buf, "GET / HTTP/1.1\r\nX: ", 19);
    memset(buf + 19, 'x', HTTP_DEFAULT_MAX_HEAD - 3);
    assert_int_equal(parse_whole(&o, buf, HTTP_DEFAULT_MAX_HEAD - 1, 0, MAXH), 0);
    assert_int_equal(parse_whole(&o, buf, HTTP_DEFAULT_MAX_HEAD, 0, MAXH), -431);
    memcpy(buf, "GET /", 5); /* the same limit in the request-target */
    memset(buf + 5, 'x', HTTP_DEFAULT_MAX_HEAD + 11);
    assert_int_equal(parse_whole(&o, buf, HTTP_DEFAULT_MAX_HEAD - 1, 0, MAXH), 0);
    assert_int_equal(parse_whole(&o, buf, HTTP_DEFAULT_MAX_HEAD, 0, MAXH), -414);
    free(buf);
}

static void test_error_keeps_request_line(void **state)
{
    (void)state;
    parsed_t o;
    assert_int_equal(parse_s(&o, "DELETE /x HTTP/3.0\r\n\r\n"), -505);
    assert_int_equal(o.req.method, HTTP_DELETE);
    assert_slice(o.req.target, o.req.target_len, "/x");
}

/* ---- helpers ----------------------------------------------------------------- */

static void test_reason_and_status_line(void **state)
{
    (void)state;
    assert_string_equal(http_reason(400), "Bad Request");
    assert_string_equal(http_reason(-431), "Request Header Fields Too Large");
    assert_string_equal(http_reason(501), "Not Implemented");
    assert_string_equal(http_reason(505), "HTTP Version Not Supported");
    assert_string_equal(http_reason(200), "OK");
    assert_string_equal(http_reason(799), "Unknown");
    char line[64];
    size_t n = http_status_line(line, sizeof(line), -400);
    assert_slice(line, n, "HTTP/1.1 400 Bad Request\r\n");
    n = http_status_line(line, sizeof(line), 404);
    assert_slice(line, n, "HTTP/1.1 404 Not Found\r\n");
    assert_int_equal(http_status_line(line, 10, 400), 0);
    /* "HTTP/1.1 400 Bad Request\r\n" is 26 bytes: one short is refused, not cut */
    memset(line, '#', sizeof line);
    assert_int_equal(http_status_line(line, 25, 400), 0);
    assert_int_equal(line[24], '#');
    assert_int_equal(http_status_line(line, 26, 400), 26);
    assert_int_equal(http_status_line(line, sizeof(line), 42), 0);
    assert_int_equal(http_status_line(line, sizeof(line), 1000), 0);
    n = http_status_line(line, sizeof(line), 999);
    assert_slice(line, n, "HTTP/1.1 999 Unknown\r\n");
    n = http_status_line(line, sizeof(line), 100);
    assert_slice(line, n, "HTTP/1.1 100 Continue\r\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_http10_no_headers),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_header_values_trimmed),
        cmocka_unit_test(test_case_insensitive_names),
        cmocka_unit_test(test_leading_empty_lines),
        cmocka_unit_test(test_expect_upgrade_flags),
        cmocka_unit_test(test_bytewise_equals_whole),
        cmocka_unit_test(test_every_split_equals_whole),
        cmocka_unit_test(test_buffer_moves_between_calls),
        cmocka_unit_test(test_pipelined_three),
        cmocka_unit_test(test_request_reused_after_reset),
        cmocka_unit_test(test_sticky_results_and_reset),
        cmocka_unit_test(test_bad_method),
        cmocka_unit_test(test_control_bytes_in_request_line),
        cmocka_unit_test(test_control_bytes_in_long_value),
        cmocka_unit_test(test_target_chars),
        cmocka_unit_test(test_target_forms),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_host_rules),
        cmocka_unit_test(test_content_length_valid),
        cmocka_unit_test(test_content_length_invalid),
        cmocka_unit_test(test_content_length_duplicate),
        cmocka_unit_test(test_transfer_encoding),
        cmocka_unit_test(test_chunked_valid),
        cmocka_unit_test(test_chunked_malformed),
        cmocka_unit_test(test_chunked_limits),
        cmocka_unit_test(test_chunked_large_uneven),
        cmocka_unit_test(test_header_syntax),
        cmocka_unit_test(test_obs_fold_rejected),
        cmocka_unit_test(test_bare_lf_rejected),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_huge_header_431_early),
        cmocka_unit_test(test_long_target_414),
        cmocka_unit_test(test_head_exactly_at_limit),
        cmocka_unit_test(test_header_count_limit),
        cmocka_unit_test(test_default_and_clamped_limit),
        cmocka_unit_test(test_error_keeps_request_line),
        cmocka_unit_test(test_reason_and_status_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
