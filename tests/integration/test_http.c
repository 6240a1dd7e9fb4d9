/* SPDX-License-Identifier: MIT */
/* pc-http over real loopback sockets: the server logic of the sample
 * (samples/http/http_app.c) driven by a plain blocking client (shim.h), on
 * every backend (PORTCULLIS_BACKEND) and under Wine. Run one test by passing
 * its name as the first argument (CTest registers each separately). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_app.h"
#include "metrics.h"
#include "portcullis.h"
#include "pick.h"
#include "shim.h"

/* ---- allocation seam
 * ---------------------------------------------------------------
 * http_app.c is built with HTTP_APP_ALLOC_SEAM: its malloc, calloc and
 * realloc come here, and the next g_fail_allocs of them fail. */

static atomic_int g_fail_allocs;

static int seam_fails(void)
{
    int v = atomic_load(&g_fail_allocs);
    while (v > 0)
        if (atomic_compare_exchange_weak(&g_fail_allocs, &v, v - 1)) return 1;
    return 0;
}

void *http_app_seam_malloc(size_t n);
void *http_app_seam_calloc(size_t n, size_t size);
void *http_app_seam_realloc(void *p, size_t n);

void *http_app_seam_malloc(size_t n)
{
    return seam_fails() ? NULL : malloc(n);
}

void *http_app_seam_calloc(size_t n, size_t size)
{
    return seam_fails() ? NULL : calloc(n, size);
}

void *http_app_seam_realloc(void *p, size_t n)
{
    return seam_fails() ? NULL : realloc(p, n);
}

/* ---- server harness
 * ---------------------------------------------------------------- */

static pc_server_t *g_srv;
static int g_port;

static void start_opts(unsigned header_timeout_ms, size_t send_high_water, size_t max_header_bytes)
{
    http_app_config_t cfg;
    http_app_config_init(&cfg);
    cfg.header_timeout_ms = header_timeout_ms;
    if (max_header_bytes) cfg.max_header_bytes = max_header_bytes;
    if (send_high_water) {
        cfg.server.send_high_water = send_high_water;
        cfg.server.send_low_water = send_high_water / 4;
    }
    cfg.server.threads = 2;
    cfg.server.close_linger_ms = 3000;
    cfg.listen[0] = "127.0.0.1:0";
    cfg.nlisten = 1;
    assert_int_equal(http_app_start(&cfg, &g_srv, &g_port), 0);
    assert_true(g_port > 0);
}

static int setup(void **state)
{
    (void)state;
    start_opts(0, 0, 0);
    return 0;
}

static int setup_header_timeout(void **state)
{
    (void)state;
    start_opts(400, 0, 0);
    return 0;
}

/* a 4 KiB high water: nearly every pipelined /metrics answer waits */
static int setup_small_queue(void **state)
{
    (void)state;
    start_opts(0, 4096, 0);
    return 0;
}

/* --max-header-bytes 1024 */
static int setup_small_head(void **state)
{
    (void)state;
    start_opts(0, 0, 1024);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    http_app_destroy(g_srv, 1000);
    g_srv = NULL;
    return 0;
}

/* ---- client
 * ------------------------------------------------------------------------- */

#define CBUF (256 * 1024)

typedef struct client_s {
    shim_sock_t s;
    size_t len;
    int eof; /* 1 FIN seen, -1 reset */
    char buf[CBUF];
} client_t;

typedef struct resp_s {
    int status;
    char head[4096]; /* NUL-terminated */
    size_t body_len;
    char body[32768]; /* NUL-terminated */
} resp_t;

static client_t *client_open(void)
{
    client_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->s = shim_connect("127.0.0.1", g_port, NULL, 3000);
    assert_true(c->s != SHIM_INVALID);
    return c;
}

static void client_close(client_t *c)
{
    shim_close(c->s);
    free(c);
}

static void client_send(client_t *c, const void *p, size_t n)
{
    assert_int_equal(shim_send_all(c->s, p, n), 0);
}

static void client_sends(client_t *c, const char *s)
{
    client_send(c, s, strlen(s));
}

/* Read more bytes into the buffer; 0 on EOF/reset/timeout. */
static int client_fill(client_t *c)
{
    if (c->eof || c->len == CBUF) return 0;
    int n = shim_recv_some(c->s, c->buf + c->len, CBUF - c->len);
    if (n > 0) {
        c->len += (size_t)n;
        return 1;
    }
    if (n == 0) c->eof = 1;
    if (n == -1) c->eof = -1;
    return 0;
}

static void client_consume(client_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

static const char *find_mem(const char *h, size_t hn, const char *needle)
{
    size_t nn = strlen(needle);
    for (size_t i = 0; i + nn <= hn; i++)
        if (memcmp(h + i, needle, nn) == 0) return h + i;
    return NULL;
}

/* Value of a header in r->head ("" if absent); case as sent by the server. */
static const char *header(const resp_t *r, const char *name, char *out, size_t cap)
{
    char key[64];
    snprintf(key, sizeof key, "\r\n%s: ", name);
    const char *p = strstr(r->head, key);
    out[0] = 0;
    if (!p) return out;
    p += strlen(key);
    const char *e = strstr(p, "\r\n");
    size_t n = (size_t)(e - p) < cap - 1 ? (size_t)(e - p) : cap - 1;
    memcpy(out, p, n);
    out[n] = 0;
    return out;
}

/* Read one response (head, then Content-Length bytes of body unless
 * head_only). Returns 0, or -1 if the connection ended first. */
static int read_response(client_t *c, resp_t *r, int head_only)
{
    memset(r, 0, sizeof *r);
    const char *end;
    while (!(end = find_mem(c->buf, c->len, "\r\n\r\n")))
        if (!client_fill(c)) return -1;
    size_t hl = (size_t)(end - c->buf) + 4;
    assert_true(hl < sizeof r->head);
    memcpy(r->head, c->buf, hl);
    r->head[hl] = 0;
    client_consume(c, hl);
    assert_true(sscanf(r->head, "HTTP/1.1 %d ", &r->status) == 1);
    char v[64];
    size_t clen = (size_t)strtoul(header(r, "Content-Length", v, sizeof v), NULL, 10);
    if (head_only) return 0;
    assert_true(clen < sizeof r->body);
    while (c->len < clen)
        if (!client_fill(c)) return -1;
    memcpy(r->body, c->buf, clen);
    r->body[clen] = 0;
    r->body_len = clen;
    client_consume(c, clen);
    return 0;
}

/* After a Connection: close response: nothing more, then FIN (not a reset). */
static void expect_fin(client_t *c)
{
    while (client_fill(c)) {
    }
    assert_int_equal(c->len, 0);
    assert_int_equal(c->eof, 1);
}

/* Writes pre, n bytes of fill, then post into buf (cap bytes): a request
 * with one long part. Returns its length. */
static size_t padded(char *buf, size_t cap, const char *pre, char fill, size_t n, const char *post)
{
    size_t a = strlen(pre), b = strlen(post);
    assert_true(a + n + b <= cap);
    memcpy(buf, pre, a);
    memset(buf + a, fill, n);
    memcpy(buf + a + n, post, b);
    return a + n + b;
}

/* One request on a new connection, expecting status and a close. */
static void expect_error_close(const void *req, size_t n, int status)
{
    client_t *c = client_open();
    client_send(c, req, n);
    resp_t r;
    char v[64];
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, status);
    assert_string_equal(header(&r, "Connection", v, sizeof v), "close");
    expect_fin(c);
    client_close(c);
}

static void expect_hello(const resp_t *r)
{
    char v[64];
    assert_int_equal(r->status, 200);
    assert_true(strncmp(r->head, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_string_equal(header(r, "Content-Type", v, sizeof v), "text/plain");
    assert_string_equal(header(r, "Content-Length", v, sizeof v), "13");
    assert_string_equal(header(r, "Server", v, sizeof v), "portcullis");
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    header(r, "Date", v, sizeof v);
    assert_int_equal(strlen(v), 29);
    assert_true(v[3] == ',' && v[4] == ' ' && strcmp(v + 26, "GMT") == 0);
}

#define GET_ROOT "GET / HTTP/1.1\r\nHost: t\r\n\r\n"

/* GET / on c answers the canned 200 (the connection still serves). */
static void get_root_ok(client_t *c, resp_t *r)
{
    client_sends(c, GET_ROOT);
    assert_int_equal(read_response(c, r, 0), 0);
    expect_hello(r);
}

/* ---- tests
 * ---------------------------------------------------------------------------
 */

static void get_root(void **state)
{
    (void)state;
    client_t *c = client_open();
    resp_t r;
    for (int i = 0; i < 2; i++) { /* keep-alive: the same connection twice */
        get_root_ok(c, &r);
        assert_string_equal(r.body, "Hello, World!");
        assert_null(strstr(r.head, "Connection:"));
    }
    client_close(c);
}

static void head_root(void **state)
{
    (void)state;
    client_t *c = client_open();
    resp_t r;
    client_sends(c, "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_response(c, &r, 1), 0);
    expect_hello(&r);
    /* no body follows: the next bytes are the next response */
    get_root_ok(c, &r);
    assert_string_equal(r.body, "Hello, World!");
    assert_int_equal(c->len, 0);
    client_close(c);
}

/* HEAD on every route: the head of what GET would get (Content-Length
 * included) and no body, whatever the status (RFC 9110 section 9.3.2).
 * Pipelined, so a body sent after any head would be read as the next
 * response. */
static void head_every_route_no_body(void **state)
{
    (void)state;
    static const char *const paths[] = {"/nope", "/whoami", "/metrics", "/"};
    static const int status[] = {404, 200, 200, 200};
    client_t *c = client_open();
    resp_t r;
    char v[64];
    for (int i = 0; i < 4; i++) {
        char req[64];
        snprintf(req, sizeof req, "HEAD %s HTTP/1.1\r\nHost: t\r\n\r\n", paths[i]);
        client_sends(c, req);
    }
    client_sends(c, GET_ROOT);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(read_response(c, &r, 1), 0);
        assert_int_equal(r.status, status[i]);
        assert_true(strtoul(header(&r, "Content-Length", v, sizeof v), NULL, 10) > 0);
    }
    assert_int_equal(read_response(c, &r, 0), 0);
    expect_hello(&r);
    assert_string_equal(r.body, "Hello, World!");
    assert_int_equal(c->len, 0);
    client_close(c);
}

static void pipelined_three(void **state)
{
    (void)state;
    client_t *c = client_open();
    resp_t r;
    client_sends(c, GET_ROOT "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
                             "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_response(c, &r, 0), 0);
    expect_hello(&r);
    assert_string_equal(r.body, "Hello, World!");
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 404);
    assert_int_equal(read_response(c, &r, 1), 0);
    expect_hello(&r);
    assert_int_equal(c->len, 0);
    /* the connection stays usable */
    client_sends(c, GET_ROOT);
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    client_close(c);
}

static void garbage_400(void **state)
{
    (void)state;
    static const char req[] = "garbage\r\n\r\n";
    expect_error_close(req, sizeof req - 1, 400);
}

static void metrics_prometheus(void **state)
{
    (void)state;
    /* a connection that came and went: accepted 2 and active 1 below */
    client_t *gone = client_open();
    client_close(gone);
    pc_server_stats_t st;
    for (int i = 0; i < 1000; i++) {
        pc_server_stats(g_srv, &st);
        if (st.accepted == 1 && st.active == 0) break;
        shim_sleep_ms(5);
    }
    assert_true(st.accepted == 1 && st.active == 0);
    client_t *c = client_open();
    resp_t r;
    char v[64];
    client_sends(c, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_true(strncmp(header(&r, "Content-Type", v, sizeof v), "text/plain; version=0.0.4", 25) ==
                0);
    assert_non_null(strstr(r.body, "# TYPE pc_connections_accepted_total counter\n"));
    assert_non_null(strstr(r.body, "\npc_connections_accepted_total 2\n"));
    assert_non_null(strstr(r.body, "# HELP pc_connections_rejected_total "));
    assert_non_null(strstr(r.body, "\npc_connections_rejected_total{step=\"capacity\"} 0\n"));
    assert_non_null(strstr(r.body, "\npc_connections_active 1\n"));
    assert_non_null(strstr(r.body, "# TYPE pc_conditional_accept_mode gauge\n"));
    /* 1 for the mode in force, 0 for the others; kernel_counts "yes" only
     * with the eBPF tier */
    pc_server_stats(g_srv, &st);
    static const struct {
        pc_accept_mode_t mode;
        const char *name;
    } modes[] = {{PC_ACCEPT_MODE_POST_HANDSHAKE, "post_handshake"},
                 {PC_ACCEPT_MODE_PRE_HANDSHAKE, "pre_handshake"},
                 {PC_ACCEPT_MODE_KERNEL, "kernel"}};
    char line[160];
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        snprintf(line, sizeof line, "\npc_conditional_accept_mode{mode=\"%s\"} %d\n", modes[i].name,
                 st.accept_mode == modes[i].mode);
        assert_non_null(strstr(r.body, line));
    }
    assert_non_null(strstr(r.body, "# TYPE pc_kernel_filter gauge\n"));
    snprintf(line, sizeof line, "\npc_kernel_filter{tier=\"%s\",kernel_counts=\"%s\"} 1\n",
             pc_kernel_filter_name(st.kernel_filter),
             st.kernel_filter == PC_KERNEL_FILTER_EBPF ? "yes" : "no");
    assert_non_null(strstr(r.body, line));
    assert_non_null(strstr(r.body, "\npc_backend_info{backend=\""));
    assert_non_null(
        strstr(r.body, "\npc_connections_closed_total{reason=\"peer\"} 1\n")); /* gone */
    /* every line is a comment or "name[{labels}] value" */
    for (const char *l = r.body; *l;) {
        const char *e = strchr(l, '\n');
        assert_non_null(e);
        if (*l != '#') assert_non_null(memchr(l, ' ', (size_t)(e - l)));
        l = e + 1;
    }
    client_close(c);
}

/* /metrics counts every response under its status code, the canned 200s
 * (GET and HEAD /) and the 414 included, and http_app_responses sums them by
 * class. */
static void metrics_counts_by_code(void **state)
{
    (void)state;
    client_t *c = client_open();
    resp_t r;
    client_sends(c, GET_ROOT "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
                             "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
                             "BREW / HTTP/1.1\r\nHost: t\r\n\r\n");
    static const int status[] = {200, 200, 404, 501};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(read_response(c, &r, i == 1), 0);
        assert_int_equal(r.status, status[i]);
    }
    static char req[9100];
    size_t n = padded(req, sizeof req, "GET /", 'a', 9000, " HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_error_close(req, n, 414);

    client_sends(c, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    static const char *const want[] = {"\npc_http_responses_total{code=\"200\"} 2\n",
                                       "\npc_http_responses_total{code=\"404\"} 1\n",
                                       "\npc_http_responses_total{code=\"414\"} 1\n",
                                       "\npc_http_responses_total{code=\"501\"} 1\n",
                                       "\npc_http_responses_total{code=\"400\"} 0\n",
                                       "\npc_http_responses_total{code=\"other\"} 0\n"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(r.body, want[i])) print_error("missing: %s", want[i] + 1);
        assert_non_null(strstr(r.body, want[i]));
    }
    /* the /metrics response is counted too, before it is sent */
    assert_int_equal(http_app_responses(g_srv, 2), 3);
    assert_int_equal(http_app_responses(g_srv, 4), 2);
    assert_int_equal(http_app_responses(g_srv, 5), 1);
    assert_int_equal(http_app_responses(g_srv, 1), 0);
    client_close(c);
}

static size_t hook_lines(void *user, pc_server_t *s, char *out, size_t cap)
{
    (void)user;
    (void)s;
    static const char line[] = "test_hook_line 1\n";
    size_t n = sizeof line - 1 < cap ? sizeof line - 1 : cap;
    memcpy(out, line, n);
    return n;
}

/* http_metrics_format itself: codes with a 0 are "other", the hook's lines
 * come last, and a page larger than cap is cut short, NUL-terminated, at
 * every cap (the text fits METRICS_CAP in pc-http, but the hook's lines
 * are the caller's). */
static void metrics_format_cut_short(void **state)
{
    (void)state;
    static const int codes[] = {200, 0};
    static const uint64_t counts[] = {5, 7};
    http_metrics_src_t src = {codes, counts, 2, hook_lines, NULL};
    static char full[32768], part[32768 + 64];
    size_t n = http_metrics_format(&src, g_srv, full, sizeof full);
    assert_true(n > 0 && n < sizeof full - 1);
    assert_int_equal(strlen(full), n);
    assert_non_null(strstr(full, "\npc_http_responses_total{code=\"200\"} 5\n"));
    assert_non_null(strstr(full, "\npc_http_responses_total{code=\"other\"} 7\n"));
    assert_true(n > 17 && strcmp(full + n - 17, "test_hook_line 1\n") == 0);
    for (size_t cap = 1; cap <= n + 1; cap += cap < 64 ? 1 : 61) {
        memset(part, 'Z', sizeof part);
        size_t k = http_metrics_format(&src, g_srv, part, cap);
        if (k >= cap || strlen(part) != k) print_error("cap %u: %u\n", (unsigned)cap, (unsigned)k);
        assert_true(k < cap);
        assert_int_equal(strlen(part), k);
        assert_int_equal(part[cap], 'Z'); /* nothing written past cap */
        assert_memory_equal(part, full, k);
    }
}

/* The 500s: no memory for the /metrics page, or for keeping a head that
 * came in part; each answer closes, and /metrics counts it as a 500. */
static void no_memory_500(void **state)
{
    (void)state;
    atomic_store(&g_fail_allocs, 1);
    static const char metrics[] = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
    expect_error_close(metrics, sizeof metrics - 1, 500);
    assert_int_equal(atomic_load(&g_fail_allocs), 0);

    atomic_store(&g_fail_allocs, 1);
    static const char part[] = "GET / HTTP/1.1\r\nHo";
    expect_error_close(part, sizeof part - 1, 500);
    assert_int_equal(atomic_load(&g_fail_allocs), 0);

    /* a kept head that must grow past its first 1 KiB block when more of it
     * arrives (or, read in one piece, cannot be kept at all): 500 either way */
    static char big[2100];
    size_t bn = padded(big, sizeof big, "GET / HTTP/1.1\r\nX: ", 'x', 2000, "");
    client_t *c = client_open();
    client_send(c, big, 100);
    shim_sleep_ms(20); /* most likely a read of its own; either way the answer is 500 */
    atomic_store(&g_fail_allocs, 1);
    client_send(c, big + 100, bn - 100);
    resp_t r;
    char v[64];
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 500);
    assert_string_equal(header(&r, "Connection", v, sizeof v), "close");
    expect_fin(c);
    client_close(c);
    assert_int_equal(atomic_load(&g_fail_allocs), 0);

    c = client_open();
    client_sends(c, metrics);
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\npc_http_responses_total{code=\"500\"} 3\n"));
    assert_null(strstr(r.body, "{code=\"other\"} 1"));
    client_close(c);
}

static void whoami_direct(void **state)
{
    (void)state;
    client_t *c = client_open();
    resp_t r;
    client_sends(c, "GET /whoami HTTP/1.1\r\nHost: t\r\n\r\nPOST /whoami HTTP/1.1\r\nHost: "
                    "t\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    /* no PROXY protocol here: the socket's peer, no proxy */
    assert_true(strncmp(r.body, "client 127.0.0.1:", 17) == 0);
    assert_non_null(strstr(r.body, "\nproxy -\n"));
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.body, "Method Not Allowed"));
    client_close(c);
}

/* Known methods other than GET and HEAD on a route that exists: 405 with
 * Allow, and the connection stays. */
static void method_not_allowed_405(void **state)
{
    (void)state;
    static const char *const reqs[] = {"POST /metrics", "DELETE /", "PUT /whoami",
                                       "OPTIONS /metrics"};
    client_t *c = client_open();
    resp_t r;
    char v[64];
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        char req[96];
        snprintf(req, sizeof req, "%s HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", reqs[i]);
        client_sends(c, req);
        assert_int_equal(read_response(c, &r, 0), 0);
        if (r.status != 405) print_error("%s: %d\n", reqs[i], r.status);
        assert_int_equal(r.status, 405);
        assert_string_equal(header(&r, "Allow", v, sizeof v), "GET, HEAD");
        assert_null(strstr(r.head, "Connection:"));
    }
    get_root_ok(c, &r);
    client_close(c);
}

/* Routes match the path without its query, in origin- and absolute-form
 * (RFC 9112 section 3.2.2; "http://t" with no path is "/"). */
static void route_query_and_absolute_form(void **state)
{
    (void)state;
    static const char *const targets[] = {"/?x=1", "http://t", "HTTP://t?x=1", "http://t/"};
    client_t *c = client_open();
    resp_t r;
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        char req[96];
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", targets[i]);
        client_sends(c, req);
        assert_int_equal(read_response(c, &r, 0), 0);
        if (r.status != 200) print_error("%s: %d\n", targets[i], r.status);
        expect_hello(&r);
    }
    client_sends(c, "GET http://t/metrics?x HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\npc_connections_active 1\n"));
    client_close(c);
}

static void not_found_404(void **state)
{
    (void)state;
    client_t *c = client_open();
    resp_t r;
    client_sends(c, "GET /nope?x=1 HTTP/1.1\r\nHost: t\r\n\r\n" GET_ROOT);
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "Not Found\n");
    assert_int_equal(read_response(c, &r, 0), 0); /* still open */
    assert_int_equal(r.status, 200);
    client_close(c);
}

static void http10_closes(void **state)
{
    (void)state;
    static const char req[] = "GET / HTTP/1.0\r\n\r\n";
    expect_error_close(req, sizeof req - 1, 200);
    /* HTTP/1.0 with keep-alive stays open and says so */
    client_t *c = client_open();
    resp_t r;
    char v[64];
    client_sends(c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(header(&r, "Connection", v, sizeof v), "keep-alive");
    client_sends(c, GET_ROOT);
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    client_close(c);
}

static void connection_close(void **state)
{
    (void)state;
    client_t *c = client_open();
    resp_t r;
    char v[64];
    /* the request pipelined after the close is not answered */
    client_sends(c, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" GET_ROOT);
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "Hello, World!");
    assert_string_equal(header(&r, "Connection", v, sizeof v), "close");
    expect_fin(c);
    client_close(c);
}

/* Connection: close on a request whose body is still to come: the answer
 * goes out at the head, and the server then reads and discards the body
 * (the linger close) rather than closing at once, so the client can finish
 * sending it and sees a FIN, not a reset. */
static void close_with_body_pending_lingers(void **state)
{
    (void)state;
    client_t *c = client_open();
    resp_t r;
    char v[64];
    client_sends(c, "POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                    "Content-Length: 200000\r\n\r\n");
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 405);
    assert_string_equal(header(&r, "Connection", v, sizeof v), "close");
    expect_fin(c); /* the server is done sending */
    static char chunk[10000];
    memset(chunk, 'b', sizeof chunk);
    for (int i = 0; i < 20; i++) /* a reset would fail these sends */
        client_send(c, chunk, sizeof chunk);
    shim_shutdown_write(c->s);
    size_t extra = 0;
    assert_int_equal(shim_wait_close(c->s, &extra), 0); /* FIN again, no reset */
    assert_int_equal(extra, 0);
    client_close(c);
}

static char g_big_req[(1 << 20) + 64];

static void header_1mib_431(void **state)
{
    (void)state;
    size_t n = padded(g_big_req, sizeof g_big_req, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: ", 'a',
                      1024 * 1024, "\r\n\r\n");
    /* the server answers after 8 KiB and reads and discards the rest */
    expect_error_close(g_big_req, n, 431);
}

/* The start of a head kept across reads, then one write far past the head
 * limit: the server appends at most up to the limit (8 KiB) to what it
 * kept, answers 431 and discards the rest. */
static void split_head_then_flood_431(void **state)
{
    (void)state;
    static char flood[256 * 1024];
    memset(flood, 'a', sizeof flood);
    for (int i = 0; i < 3; i++) {
        client_t *c = client_open();
        resp_t r;
        char v[64];
        client_sends(c, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: ");
        shim_sleep_ms(20); /* makes the split likely; correct code passes either way */
        client_send(c, flood, sizeof flood);
        assert_int_equal(read_response(c, &r, 0), 0);
        assert_int_equal(r.status, 431);
        assert_string_equal(header(&r, "Connection", v, sizeof v), "close");
        expect_fin(c);
        client_close(c);
    }
    client_t *c = client_open(); /* the server is still there */
    resp_t r;
    get_root_ok(c, &r);
    client_close(c);
}

static void duplicate_content_length_400(void **state)
{
    (void)state;
    static const char req[] = "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                              "Content-Length: 3\r\n\r\nabc";
    expect_error_close(req, sizeof req - 1, 400);
}

static void content_length_and_te_400(void **state)
{
    (void)state;
    static const char req[] = "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                              "Transfer-Encoding: chunked\r\n\r\nabc";
    expect_error_close(req, sizeof req - 1, 400);
}

static void transfer_encoding_501(void **state)
{
    (void)state;
    /* a coding other than chunked is not implemented */
    static const char req[] =
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        "0\r\n\r\n";
    expect_error_close(req, sizeof req - 1, 501);
    /* chunked in HTTP/1.0 is faulty framing */
    static const char req10[] = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    expect_error_close(req10, sizeof req10 - 1, 400);
}

#define POST_CHUNKED "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"

/* Chunked bodies are read and discarded, answered when they end, and the
 * connection goes on: in one write with the next request, and spread over
 * many writes split anywhere. */
static void chunked_body_pipelined(void **state)
{
    (void)state;
    client_t *c = client_open();
    resp_t r;
    client_sends(c, POST_CHUNKED "\r\n5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n"
                                 "0\r\nX-Trailer: t\r\n\r\n" GET_ROOT);
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 405);
    assert_int_equal(read_response(c, &r, 0), 0);
    expect_hello(&r);

    /* 300 chunks of 1000 bytes that look like requests, sent in pieces of
     * 777 bytes so sizes, extensions, data and CRLFs all straddle reads */
    size_t cap = 400000, n = 0;
    char *body = malloc(cap);
    assert_non_null(body);
    n += (size_t)snprintf(body, cap,
                          "GET /metrics HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
                          "chunked\r\n\r\n");
    for (int i = 0; i < 300; i++) {
        n += (size_t)snprintf(body + n, cap - n, "3e8;i=%d\r\n", i);
        for (int j = 0; j < 1000; j += 25)
            memcpy(body + n + j, GET_ROOT, 25);
        n += 1000;
        memcpy(body + n, "\r\n", 2);
        n += 2;
    }
    n += (size_t)snprintf(body + n, cap - n, "0\r\n\r\n" GET_ROOT);
    for (size_t off = 0; off < n; off += 777) {
        client_send(c, body + off, n - off < 777 ? n - off : 777);
        if (off % (777 * 64) == 0) shim_sleep_ms(2);
    }
    free(body);
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "pc_http_responses_total{code=\"405\"} 1"));
    assert_int_equal(read_response(c, &r, 0), 0);
    expect_hello(&r);
    assert_int_equal(c->len, 0);
    client_close(c);
}

/* Expect: 100-continue with a chunked body: "100 Continue", then the body,
 * then the response, and the connection stays (what curl -T - does). */
static void chunked_expect_continue(void **state)
{
    (void)state;
    client_t *c = client_open();
    resp_t r;
    client_sends(c, "PUT / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                    "Expect: 100-continue\r\n\r\n");
    assert_int_equal(read_response(c, &r, 1), 0);
    assert_int_equal(r.status, 100);
    assert_string_equal(r.head, "HTTP/1.1 100 Continue\r\n\r\n");
    client_sends(c, "4\r\ndata\r\n0\r\n\r\n");
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 405);
    assert_null(strstr(r.head, "Connection:"));
    get_root_ok(c, &r);
    client_close(c);
}

/* A head that arrives a byte at a time, then its chunked body in two reads;
 * with Connection: close the response follows the body, then a FIN. */
static void chunked_split_head_close(void **state)
{
    (void)state;
    client_t *c = client_open();
    resp_t r;
    char v[64];
    static const char head[] = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n";
    for (size_t i = 0; i < sizeof head - 1; i++) {
        client_send(c, head + i, 1);
        if (i % 8 == 0) shim_sleep_ms(1);
    }
    client_sends(c, "3\r\nab");
    shim_sleep_ms(20);
    client_sends(c, "c\r\n0\r\n\r\n");
    assert_int_equal(read_response(c, &r, 0), 0);
    expect_hello(&r);
    assert_string_equal(header(&r, "Connection", v, sizeof v), "close");
    expect_fin(c);
    client_close(c);
}

/* Malformed chunk framing: 400 and a close, whatever came before. */
static void chunked_malformed_400(void **state)
{
    (void)state;
    static const char *const bad[] = {
        POST_CHUNKED "\r\nzz\r\nhello\r\n0\r\n\r\n",              /* not hex */
        POST_CHUNKED "\r\n5\r\nhelloXX\r\n0\r\n\r\n",             /* no CRLF after data */
        POST_CHUNKED "\r\n5\nhello\r\n0\r\n\r\n",                 /* bare LF */
        POST_CHUNKED "\r\nfffffffffffffffffff\r\n",               /* overflow */
        POST_CHUNKED "\r\n5\r\nhello\r\n0\r\n folded: t\r\n\r\n", /* bad trailer */
        POST_CHUNKED "\r\n2\r\nok\r\n5 x\r\nhello\r\n0\r\n\r\n",  /* junk after a size */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_error_close(bad[i], strlen(bad[i]), 400);
}

/* --max-body-bytes (1 MiB here) counts chunk data: one chunk over it is
 * refused from its size line, and so are several that add up past it. */
static void chunked_too_large_413(void **state)
{
    (void)state;
    static const char one[] = POST_CHUNKED "\r\n100001\r\nabc";
    expect_error_close(one, sizeof one - 1, 413);

    client_t *c = client_open();
    resp_t r;
    char v[64];
    static char chunk[65536 + 16];
    size_t hn = (size_t)snprintf(chunk, 16, "10000\r\n");
    memset(chunk + hn, 'x', 65536);
    memcpy(chunk + hn + 65536, "\r\n", 2);
    client_sends(c, POST_CHUNKED "\r\n");
    for (int i = 0; i < 16; i++) /* exactly 1 MiB: accepted so far */
        client_send(c, chunk, hn + 65536 + 2);
    client_sends(c, "1\r\nx\r\n");
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 413);
    assert_string_equal(header(&r, "Connection", v, sizeof v), "close");
    expect_fin(c);
    client_close(c);
}

/* Chunk extensions (and extra leading zeros) are bounded over the whole body
 * (max_trailer, pc-http's head limit: 8 KiB), not only per line: chunks of
 * one data byte behind 4000-byte extension lines are refused by the third,
 * where each line alone is under HTTP_CHUNK_LINE_MAX and the data far under
 * the body limit. */
static void chunk_extensions_bounded_431(void **state)
{
    (void)state;
    static char line[4096];
    size_t n = padded(line, sizeof line, "1;", 'e', 4000, "\r\nx\r\n");
    client_t *c = client_open();
    resp_t r;
    char v[64];
    client_sends(c, POST_CHUNKED "\r\n");
    for (int i = 0; i < 3; i++)
        client_send(c, line, n);
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 431);
    assert_string_equal(header(&r, "Connection", v, sizeof v), "close");
    expect_fin(c);
    client_close(c);
    /* within the bound: two such chunks, then the end, are served */
    c = client_open();
    client_sends(c, POST_CHUNKED "\r\n");
    for (int i = 0; i < 2; i++)
        client_send(c, line, n);
    client_sends(c, "0\r\n\r\n");
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 405); /* POST /: the body was read to its end */
    client_close(c);
}

/* --max-header-bytes bounds the head, and also a chunked body's trailer
 * section and its chunk extensions (1 KiB here, not the decoder's default
 * 8 KiB); within it they are served. */
static void head_limit_bounds_chunked_body(void **state)
{
    (void)state;
    static char req[4096];
    size_t n = padded(req, sizeof req, "GET / HTTP/1.1\r\nHost: t\r\nX: ", 'h', 1100, "\r\n\r\n");
    expect_error_close(req, n, 431);
    n = padded(req, sizeof req, POST_CHUNKED "\r\n0\r\nX-T: ", 't', 1100, "\r\n\r\n");
    expect_error_close(req, n, 431);
    n = padded(req, sizeof req, POST_CHUNKED "\r\n1;", 'e', 1100, "\r\nx\r\n0\r\n\r\n");
    expect_error_close(req, n, 431);

    client_t *c = client_open();
    resp_t r;
    n = padded(req, sizeof req, POST_CHUNKED "\r\n1;", 'e', 900, "\r\nx\r\n0\r\nX-T: ");
    n += padded(req + n, sizeof req - n, "", 't', 900, "\r\n\r\n");
    client_send(c, req, n);
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 405); /* POST /: the body was read to its end */
    client_close(c);
}

/* A request-target longer than the head limit is a 414 (RFC 9112 section 3),
 * not a 431. */
static void target_too_long_414(void **state)
{
    (void)state;
    static char req[9100];
    size_t n = padded(req, sizeof req, "GET /", 'a', 9000, " HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_error_close(req, n, 414);
}

/* An error response to HEAD has no body (RFC 9110 section 9.3.2): the head,
 * then the close. */
static void head_error_no_body(void **state)
{
    (void)state;
    static const char *const reqs[] = {
        "HEAD / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n",         /* 413 */
        "HEAD / HTTP/1.1\r\n\r\n",                                                /* 400: no Host */
        "HEAD / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", /* 400 */
        "HEAD / HTTP/1.1\r\nHost: t\r\nX: \x01\r\n\r\n", /* 400, the head in two reads */
        POST_CHUNKED "\r\nzz\r\n",                       /* 400, not HEAD */
    };
    static const int status[] = {413, 400, 400, 400, 400};
    for (int i = 0; i < 5; i++) {
        client_t *c = client_open();
        resp_t r;
        char v[64];
        if (i == 3) { /* the start of the head is kept across reads */
            client_send(c, reqs[i], 17);
            shim_sleep_ms(20);
            client_sends(c, reqs[i] + 17);
        } else {
            client_sends(c, reqs[i]);
        }
        assert_int_equal(read_response(c, &r, 1), 0);
        assert_int_equal(r.status, status[i]);
        assert_string_equal(header(&r, "Connection", v, sizeof v), "close");
        size_t clen = (size_t)strtoul(header(&r, "Content-Length", v, sizeof v), NULL, 10);
        assert_true(clen > 0); /* the length the body would have */
        while (client_fill(c)) {
        }
        assert_int_equal(c->eof, 1);
        /* HEAD: nothing after the head; otherwise the body */
        assert_int_equal(c->len, i < 4 ? 0 : clen);
        client_close(c);
    }
}

/* OPTIONS * asks about the server as a whole (RFC 9110 section 9.3.7): 200
 * with what every route takes and an empty body, and the connection stays
 * open for the next request; another method with "*" is a 400. */
static void options_star_200(void **state)
{
    (void)state;
    client_t *c = client_open();
    resp_t r;
    char v[64];
    client_sends(c, "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(header(&r, "Allow", v, sizeof v), "GET, HEAD");
    assert_string_equal(header(&r, "Content-Length", v, sizeof v), "0");
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    client_close(c);

    c = client_open();
    client_sends(c, "DELETE * HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 400);
    client_close(c);
}

/* Expect: 100-continue in HTTP/1.0 is ignored (RFC 9110 section 10.1.1): a
 * keep-alive connection stays open and the pipelined request is answered. */
static void http10_expect_ignored(void **state)
{
    (void)state;
    client_t *c = client_open();
    resp_t r;
    char v[64];
    client_sends(c, "POST / HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\n"
                    "Content-Length: 3\r\n\r\nabc"
                    "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 405);
    assert_string_equal(header(&r, "Connection", v, sizeof v), "keep-alive");
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "Hello, World!");
    client_close(c);
}

/* Any Expect with a Content-Length body: the answer comes as soon as the
 * head is complete, and since the client may then skip its body, the
 * connection closes (Connection: close, then a FIN) rather than wait for it. */
static void expect_with_length_closes(void **state)
{
    (void)state;
    static const char req[] = "PUT / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                              "Content-Length: 4\r\n\r\n";
    expect_error_close(req, sizeof req - 1, 405);
    /* without a body there is nothing to skip: the connection stays */
    client_t *c = client_open();
    resp_t r;
    char v[64];
    client_sends(c, "GET / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(read_response(c, &r, 0), 0);
    expect_hello(&r);
    assert_string_equal(header(&r, "Connection", v, sizeof v), "");
    get_root_ok(c, &r);
    client_close(c);
}

static void unknown_version_505(void **state)
{
    (void)state;
    static const char req[] = "GET / HTTP/2.0\r\nHost: t\r\n\r\n";
    expect_error_close(req, sizeof req - 1, 505);
}

static void control_bytes_400(void **state)
{
    (void)state;
    static const char nul[] = "GET /a\0b HTTP/1.1\r\nHost: t\r\n\r\n";
    expect_error_close(nul, sizeof nul - 1, 400);
    static const char ctl[] = "GET /a\x01 HTTP/1.1\r\nHost: t\r\n\r\n";
    expect_error_close(ctl, sizeof ctl - 1, 400);
}

static void body_discarded_pipelined(void **state)
{
    (void)state;
    client_t *c = client_open();
    resp_t r;
    /* a body in the same write as the next request */
    client_sends(c, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello" GET_ROOT);
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 405);
    assert_int_equal(read_response(c, &r, 0), 0);
    expect_hello(&r);
    /* a body of 200000 bytes over many writes, then a request */
    client_sends(c, "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n");
    char chunk[10000];
    memset(chunk, 'G', sizeof chunk); /* looks like the start of a request */
    for (int i = 0; i < 20; i++) {
        client_send(c, chunk, sizeof chunk);
        if (i % 5 == 0) shim_sleep_ms(5);
    }
    client_sends(c, GET_ROOT);
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 404);
    assert_int_equal(read_response(c, &r, 0), 0);
    expect_hello(&r);
    client_close(c);
}

/* A pipelined flood whose answers are far more than a connection may queue
 * (2000 /metrics pages, about 12 MB, against send_queue_limit's 4 MiB):
 * requests past high water wait for the queue to drain instead of being
 * answered into a refused send. Every one is answered, in order (a body
 * between them included), none refused, then the peer's FIN closes it. It
 * used to close after about 660 answers, one read's worth queued. */
static void pipelined_flood_waits_for_drain(void **state)
{
    (void)state; /* also run with setup_small_queue: a wait per request */
    enum { FLOOD = 2000 };
    static const char get_metrics[] = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
    static const char post_body[] = "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    size_t cap = FLOOD * sizeof post_body, len = 0;
    char *flood = malloc(cap);
    assert_non_null(flood);
    for (int i = 0; i < FLOOD; i++) {
        const char *q = i % 50 == 49 ? post_body : get_metrics;
        memcpy(flood + len, q, strlen(q));
        len += strlen(q);
    }
    client_t *c = client_open();
    client_send(c, flood, len);
    shim_shutdown_write(c->s);
    free(flood);
    resp_t *r = malloc(sizeof *r);
    assert_non_null(r);
    for (int i = 0; i < FLOOD; i++) {
        if (read_response(c, r, 0) != 0) {
            pc_server_stats_t st;
            pc_server_stats(g_srv, &st);
            char why[256];
            int k = 0;
            for (int j = 0; j < PC_CLOSE_REASON_COUNT && k < 200; j++)
                if (st.closed[j])
                    k += snprintf(why + k, sizeof why - (size_t)k, " %s=%llu",
                                  pc_close_reason_str((pc_close_reason_t)j),
                                  (unsigned long long)st.closed[j]);
            fail_msg("connection ended after %d of %d answers (eof %d, %d bytes left);%s; limit "
                     "refusals %llu, cap refusals %llu",
                     i, FLOOD, c->eof, (int)c->len, k ? why : " none closed",
                     (unsigned long long)st.send_limit_refused,
                     (unsigned long long)st.send_refused);
        }
        assert_int_equal(r->status, i % 50 == 49 ? 405 : 200);
    }
    free(r);
    expect_fin(c);
    client_close(c);
    pc_server_stats_t st;
    pc_server_stats(g_srv, &st);
    assert_int_equal(st.send_limit_refused, 0);
    assert_int_equal(st.send_refused, 0);
}

static void pipelined_flood_small_queue(void **state)
{
    pipelined_flood_waits_for_drain(state);
}

static void body_too_large_413(void **state)
{
    (void)state;
    static const char req[] = "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\nab";
    expect_error_close(req, sizeof req - 1, 413);
    /* the limit (1 MiB here) is inclusive: one byte over is a 413, exactly
     * the limit is answered at the head and the connection stays */
    static const char over[] = "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n";
    expect_error_close(over, sizeof over - 1, 413);
    client_t *c = client_open();
    resp_t r;
    client_sends(c, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n");
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 405);
    assert_null(strstr(r.head, "Connection:"));
    client_close(c);
}

static void head_split_across_reads(void **state)
{
    (void)state;
    client_t *c = client_open();
    resp_t r;
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\nX-Long: 0123456789abcdef0123456789\r\n"
                              "Accept: */*\r\n\r\n";
    for (size_t i = 0; i < sizeof req - 1; i++) {
        client_send(c, req + i, 1);
        if (i % 8 == 0) shim_sleep_ms(1);
    }
    assert_int_equal(read_response(c, &r, 0), 0);
    expect_hello(&r);
    /* a complete request followed by half of the next one, then the rest */
    client_sends(c, GET_ROOT "GET / HT");
    assert_int_equal(read_response(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    shim_sleep_ms(20);
    client_sends(c, "TP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_response(c, &r, 0), 0);
    expect_hello(&r);
    client_close(c);
}

/* A head kept across reads that outgrows its first buffer by more than
 * double: its first part larger than the first allocation (1 KiB), then a
 * part that more than doubles what is kept; and one that outgrows it by a
 * single byte (1000 bytes kept, then 25 more). */
static void head_split_large_parts(void **state)
{
    (void)state;
    static char req[8192];
    size_t n =
        padded(req, sizeof req, "GET / HTTP/1.1\r\nHost: t\r\nX-Long: ", 'a', 7000, "\r\n\r\n");
    size_t cuts[][2] = {{3000, n}, {100, 6000}, {1000, 1025}};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        client_t *c = client_open();
        resp_t r;
        client_send(c, req, cuts[k][0]);
        shim_sleep_ms(20); /* most likely a read of its own; either way the answer is the same */
        client_send(c, req + cuts[k][0], cuts[k][1] - cuts[k][0]);
        shim_sleep_ms(20);
        client_send(c, req + cuts[k][1], n - cuts[k][1]);
        assert_int_equal(read_response(c, &r, 0), 0);
        expect_hello(&r);
        get_root_ok(c, &r);
        client_close(c);
    }
}

/* --header-timeout: the first request's deadline runs from the connection,
 * a completed head ends it (an idle keep-alive connection stays), and a later
 * head trickled byte by byte is cut off 400 ms after its first byte. */
static void header_timeout_keepalive(void **state)
{
    (void)state;
    client_t *c = client_open();
    resp_t r;
    get_root_ok(c, &r);
    shim_sleep_ms(600); /* past the first deadline: it was cancelled */
    get_root_ok(c, &r);
    uint64_t t0 = shim_now_ms();
    client_sends(c, "GET / HTTP/1.1\r\n");
    shim_set_timeout(c->s, 100);
    int cut = -1;
    while (shim_now_ms() - t0 < 3000) {
        if (shim_send_all(c->s, "X", 1) != 0) {
            cut = (int)(shim_now_ms() - t0);
            break;
        }
        char b[256];
        int n = shim_recv_some(c->s, b, sizeof b);
        if (n == 0 || n == -1) {
            cut = (int)(shim_now_ms() - t0);
            break;
        }
        assert_true(n == -2); /* nothing is answered to a head in progress */
    }
    assert_true(cut >= 350 && cut <= 1500);
    client_close(c);
    pc_server_stats_t st;
    uint64_t t_end = shim_now_ms() + 3000; /* counted when the socket closes */
    do {
        shim_sleep_ms(5);
        pc_server_stats(g_srv, &st);
    } while (st.closed[PC_CLOSE_HEADER_TIMEOUT] == 0 && shim_now_ms() < t_end);
    assert_int_equal(st.closed[PC_CLOSE_HEADER_TIMEOUT], 1);
}

/* A connection that sends nothing at all: the first request's deadline runs
 * from the accept, so it is closed (FIN, no response) at the header timeout. */
static void header_timeout_silent(void **state)
{
    (void)state;
    client_t *c = client_open();
    uint64_t t0 = shim_now_ms();
    shim_set_timeout(c->s, 3000);
    size_t got = 99;
    assert_int_equal(shim_wait_close(c->s, &got), 0);
    uint64_t cut = shim_now_ms() - t0;
    assert_int_equal(got, 0);
    assert_true(cut >= 350 && cut <= 1500);
    client_close(c);
}

/* http_app_create refuses a listener count outside 0..HTTP_APP_MAX_LISTEN
 * (cfg.listen has that many entries) and leaves *out alone. */
static void create_bad_nlisten(void **state)
{
    (void)state;
    http_app_config_t cfg;
    http_app_config_init(&cfg);
    for (int k = 0; k < HTTP_APP_MAX_LISTEN; k++)
        cfg.listen[k] = "127.0.0.1:0";
    static const int bad[] = {-1, HTTP_APP_MAX_LISTEN + 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.nlisten = bad[i];
        pc_server_t *s = (pc_server_t *)&cfg;
        int failed = 99;
        assert_int_equal(http_app_create(&cfg, &s, &failed), PC_EINVAL);
        assert_ptr_equal(s, (pc_server_t *)&cfg);
    }
}

/* A head that arrives in two reads with a header timeout set: the state
 * kept between them is freed once the head completes, and nothing reads it
 * after (a use after free the ASan build caught in a soak). */
static void header_timeout_split_head(void **state)
{
    (void)state;
    client_t *c = client_open();
    resp_t r;
    for (int i = 0; i < 3; i++) {
        client_sends(c, "GET / HTTP/1.1\r\n");
        shim_sleep_ms(50);
        client_sends(c, "Host: x\r\n\r\n");
        assert_int_equal(read_response(c, &r, 0), 0);
        expect_hello(&r);
    }
    client_close(c);
}

int main(int argc, char **argv)
{
    shim_init();
    pc_log_set_level(PC_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(get_root, setup, teardown),
        cmocka_unit_test_setup_teardown(head_root, setup, teardown),
        cmocka_unit_test_setup_teardown(head_every_route_no_body, setup, teardown),
        cmocka_unit_test_setup_teardown(pipelined_three, setup, teardown),
        cmocka_unit_test_setup_teardown(garbage_400, setup, teardown),
        cmocka_unit_test_setup_teardown(metrics_prometheus, setup, teardown),
        cmocka_unit_test_setup_teardown(metrics_counts_by_code, setup, teardown),
        cmocka_unit_test_setup_teardown(metrics_format_cut_short, setup, teardown),
        cmocka_unit_test_setup_teardown(no_memory_500, setup, teardown),
        cmocka_unit_test_setup_teardown(whoami_direct, setup, teardown),
        cmocka_unit_test_setup_teardown(method_not_allowed_405, setup, teardown),
        cmocka_unit_test_setup_teardown(route_query_and_absolute_form, setup, teardown),
        cmocka_unit_test_setup_teardown(not_found_404, setup, teardown),
        cmocka_unit_test_setup_teardown(http10_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(connection_close, setup, teardown),
        cmocka_unit_test_setup_teardown(close_with_body_pending_lingers, setup, teardown),
        cmocka_unit_test_setup_teardown(header_1mib_431, setup, teardown),
        cmocka_unit_test_setup_teardown(split_head_then_flood_431, setup, teardown),
        cmocka_unit_test_setup_teardown(duplicate_content_length_400, setup, teardown),
        cmocka_unit_test_setup_teardown(content_length_and_te_400, setup, teardown),
        cmocka_unit_test_setup_teardown(transfer_encoding_501, setup, teardown),
        cmocka_unit_test_setup_teardown(chunked_body_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(chunked_expect_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(chunked_split_head_close, setup, teardown),
        cmocka_unit_test_setup_teardown(chunked_malformed_400, setup, teardown),
        cmocka_unit_test_setup_teardown(chunked_too_large_413, setup, teardown),
        cmocka_unit_test_setup_teardown(chunk_extensions_bounded_431, setup, teardown),
        cmocka_unit_test_setup_teardown(target_too_long_414, setup, teardown),
        cmocka_unit_test_setup_teardown(head_limit_bounds_chunked_body, setup_small_head, teardown),
        cmocka_unit_test_setup_teardown(head_error_no_body, setup, teardown),
        cmocka_unit_test_setup_teardown(http10_expect_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(options_star_200, setup, teardown),
        cmocka_unit_test_setup_teardown(expect_with_length_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_version_505, setup, teardown),
        cmocka_unit_test_setup_teardown(control_bytes_400, setup, teardown),
        cmocka_unit_test_setup_teardown(body_discarded_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(pipelined_flood_waits_for_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(pipelined_flood_small_queue, setup_small_queue, teardown),
        cmocka_unit_test_setup_teardown(body_too_large_413, setup, teardown),
        cmocka_unit_test_setup_teardown(head_split_across_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(head_split_large_parts, setup, teardown),
        cmocka_unit_test_setup_teardown(header_timeout_keepalive, setup_header_timeout, teardown),
        cmocka_unit_test_setup_teardown(header_timeout_split_head, setup_header_timeout, teardown),
        cmocka_unit_test_setup_teardown(header_timeout_silent, setup_header_timeout, teardown),
        cmocka_unit_test_setup_teardown(create_bad_nlisten, setup, teardown),
    };
    if (PICK_TEST(tests, argc, argv) != 0) return 1;
    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
