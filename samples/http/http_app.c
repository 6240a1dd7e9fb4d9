/* SPDX-License-Identifier: MIT */
/* The pc-http responder: request framing over http_parser, routing, response
 * formatting, the response counters behind /metrics (metrics.c formats the
 * page). See http_app.h for the behaviour. */
#include "http_app.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_parser.h"
#include "metrics.h"

/* test_http builds this file with HTTP_APP_ALLOC_SEAM to fail its
 * allocations on demand (the 500 answers); the sample calls the C library. */
#ifdef HTTP_APP_ALLOC_SEAM
void *http_app_seam_malloc(size_t n);
void *http_app_seam_calloc(size_t n, size_t size);
void *http_app_seam_realloc(void *p, size_t n);
#define malloc(n)     http_app_seam_malloc(n)
#define calloc(n, s)  http_app_seam_calloc(n, s)
#define realloc(p, n) http_app_seam_realloc(p, n)
#endif

#define OUT_CAP        16384 /* per-thread output buffer: one send per on_data */
#define METRICS_CAP    16384
#define PARTIAL_MIN    1024 /* first allocation for a partial head */
#define COUNTER_SHARDS 16

/* Status codes counted for /metrics; the last entry counts the others. */
static const int k_codes[] = {200, 400, 404, 405, 413, 414, 431, 500, 501, 505, 0};
#define NCODES (sizeof k_codes / sizeof k_codes[0])

/* Response counters, sharded per worker thread so the request path never
 * shares a cache line with another worker (each shard is padded to 128
 * bytes, which keeps shards on separate lines at any 16-byte alignment). */
typedef struct shard_s {
    _Atomic uint64_t by_code[NCODES];
    char pad[128 - NCODES * sizeof(uint64_t)];
} shard_t;

typedef struct app_s {
    size_t max_head;
    size_t send_high_water; /* the server's: past it, pipelined requests wait */
    uint64_t max_body;
    unsigned header_timeout_ms;
    http_metrics_hook_fn metrics_hook;
    void *metrics_hook_user;
    shard_t shards[COUNTER_SHARDS];
} app_t;

/* What answering a request needs from its head, kept while a chunked body
 * is read (the response follows the body; the head's bytes are gone). */
typedef struct route_s {
    unsigned char method; /* http_method_t */
    unsigned char path;   /* PATH_* */
    unsigned char minor;  /* HTTP/1.minor */
    unsigned flags;       /* HTTP_F_* */
} route_t;

enum { PATH_OTHER = 0, PATH_ROOT, PATH_METRICS, PATH_WHOAMI, PATH_STAR };

/* What a connection keeps between reads: only while a head or a body is
 * split across reads, or pipelined requests wait for the send queue to
 * drain. The bytes of a partial head live in one block behind the header
 * array the parser fills as lines complete. */
typedef struct hstate_s {
    uint64_t body_left; /* Content-Length body bytes still to discard */
    /* bytes of a read not parsed yet, the send queue being past high water
     * (on_drain takes them): waiting_len bytes at waiting + waiting_off */
    char *waiting;
    size_t waiting_off, waiting_len;
    char *taking;    /* the block on_drain is parsing: a new wait keeps it */
    size_t len, cap; /* partial head bytes buffered / room */
    char *block;     /* http_header_t[HTTP_APP_MAX_HEADERS], then cap bytes */
    int chunked;     /* a chunked body is being read: ck, then answer route */
    http_chunked_t ck;
    route_t route;
    http_parser_t p;
    http_request_t req;
} hstate_t;

#define HDRS_BYTES (HTTP_APP_MAX_HEADERS * sizeof(http_header_t))

/* A canned "200 Hello" response: head_len bytes of head, then the body. */
typedef struct canned_s {
    size_t len, head_len;
    char text[256];
} canned_t;

/* Per-thread state: the Date header and the canned 200 responses (keep-alive
 * and Connection: close; formatted once per second per thread), and the
 * output buffer of the running on_data. */
typedef struct tcache_s {
    int64_t sec;
    size_t date_len;
    size_t out_len;
    int out_failed; /* a send of the running on_data was refused */
    canned_t hello, hello_close;
    char date[48];
    char out[OUT_CAP];
} tcache_t;

static _Thread_local tcache_t tls;
static _Thread_local int tls_shard = -1;
static atomic_uint g_next_shard;

static const char k_hello_body[] = "Hello, World!";

/* ---- Date ------------------------------------------------------------------- */

/* Civil date from days since 1970-01-01 (proleptic Gregorian, era-based). */
static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

/* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" (IMF-fixdate). */
static size_t format_date(int64_t t, char *out, size_t cap)
{
    static const char wd[7][4] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
    static const char mon[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    int64_t days = t / 86400, rem = t % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int y, m, d;
    civil_from_days(days, &y, &m, &d);
    int w = (int)(((days % 7) + 7) % 7);
    int n = snprintf(out, cap, "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n", wd[w], d,
                     mon[m - 1], y, (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60));
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static void canned_hello(canned_t *c, const char *conn_line)
{
    int n = snprintf(c->text, sizeof c->text,
                     "HTTP/1.1 200 OK\r\nServer: portcullis\r\n%.*s%s"
                     "Content-Type: text/plain\r\nContent-Length: %u\r\n\r\n",
                     (int)tls.date_len, tls.date, conn_line, (unsigned)(sizeof k_hello_body - 1));
    c->head_len = (size_t)n;
    memcpy(c->text + n, k_hello_body, sizeof k_hello_body - 1);
    c->len = (size_t)n + sizeof k_hello_body - 1;
}

/* Refresh the per-thread Date and canned responses when the second changed.
 * One time() per on_data call, one formatting per second per thread. */
static tcache_t *tcache(void)
{
    int64_t now = (int64_t)time(NULL);
    if (now != tls.sec || !tls.date_len) {
        tls.sec = now;
        tls.date_len = format_date(now, tls.date, sizeof tls.date);
        canned_hello(&tls.hello, "");
        canned_hello(&tls.hello_close, "Connection: close\r\n");
    }
    if (tls_shard < 0) tls_shard = (int)(atomic_fetch_add(&g_next_shard, 1) % COUNTER_SHARDS);
    return &tls;
}

/* ---- output ------------------------------------------------------------------ */

/* A refused send (out of memory, or the server's cap on buffered output)
 * leaves a gap in the response stream: nothing more is queued after it and
 * on_data closes the connection (the client sees the responses before the
 * gap, then the FIN). */
static void out_send(pc_conn_t *c, const void *p, size_t n)
{
    if (!tls.out_failed && pc_conn_send(c, p, n) < 0) tls.out_failed = 1;
}

static void out_flush(pc_conn_t *c)
{
    if (tls.out_len) out_send(c, tls.out, tls.out_len);
    tls.out_len = 0;
}

static void out_put(pc_conn_t *c, const void *p, size_t n)
{
    if (n > OUT_CAP - tls.out_len) out_flush(c);
    if (n > OUT_CAP) {
        out_send(c, p, n);
        return;
    }
    memcpy(tls.out + tls.out_len, p, n);
    tls.out_len += n;
}

static void count_code(app_t *app, int status)
{
    size_t i = 0;
    while (k_codes[i] && k_codes[i] != status)
        i++;
    atomic_fetch_add_explicit(&app->shards[tls_shard].by_code[i], 1, memory_order_relaxed);
}

enum { CONN_HDR_NONE = 0, CONN_HDR_CLOSE, CONN_HDR_KEEP_ALIVE };

/* A complete response with a small head built here and body (omitted for
 * HEAD, Content-Length kept). */
static void respond(app_t *app, pc_conn_t *c, int status, const char *extra, const char *ctype,
                    const char *body, size_t blen, int head_only, int conn_hdr)
{
    static const char *const conn_line[] = {"", "Connection: close\r\n",
                                            "Connection: keep-alive\r\n"};
    char head[512];
    size_t n = http_status_line(head, sizeof head, status);
    int k =
        snprintf(head + n, sizeof head - n,
                 "Server: portcullis\r\n%.*s%s%sContent-Type: %s\r\nContent-Length: %llu\r\n\r\n",
                 (int)tls.date_len, tls.date, conn_line[conn_hdr], extra ? extra : "", ctype,
                 (unsigned long long)blen);
    if (k < 0 || (size_t)k >= sizeof head - n) k = 0;
    out_put(c, head, n + (size_t)k);
    if (!head_only && blen) out_put(c, body, blen);
    count_code(app, status);
}

/* An error response, then the connection closes; head_only for a request
 * known to be HEAD (its response has no body, RFC 9110 section 9.3.2). */
static void respond_error(app_t *app, pc_conn_t *c, int status, int head_only)
{
    char body[64];
    int n = snprintf(body, sizeof body, "%s\n", http_reason(status));
    respond(app, c, status, NULL, "text/plain", body, (size_t)n, head_only, CONN_HDR_CLOSE);
}

/* ---- /metrics ---------------------------------------------------------------- */

static uint64_t code_total(const app_t *app, size_t i)
{
    uint64_t t = 0;
    for (int s = 0; s < COUNTER_SHARDS; s++)
        t += atomic_load_explicit(&app->shards[s].by_code[i], memory_order_relaxed);
    return t;
}

/* The /metrics body: the server's stats, this app's response counts, the
 * hook's lines (metrics.c formats them). */
static size_t metrics_format(app_t *app, pc_server_t *s, char *out, size_t cap)
{
    uint64_t counts[NCODES];
    for (size_t i = 0; i < NCODES; i++)
        counts[i] = code_total(app, i);
    http_metrics_src_t src = {k_codes, counts, NCODES, app->metrics_hook, app->metrics_hook_user};
    return http_metrics_format(&src, s, out, cap);
}

/* ---- requests ------------------------------------------------------------------ */

/* R_CLOSE_ASKED: the client asked to close (no keep-alive) and sends
 * nothing more for this request: no linger needed once the response is out */
enum { R_KEEP = 0, R_CLOSE = 1, R_CLOSE_ASKED = 2 };

static int path_is(const http_request_t *r, const char *lit)
{
    size_t n = r->path_len;
    const char *q = memchr(r->path, '?', n);
    if (q) n = (size_t)(q - r->path);
    size_t ln = strlen(lit);
    if (n == 0) return ln == 1 && lit[0] == '/'; /* absolute-form with no path */
    return n == ln && memcmp(r->path, lit, n) == 0;
}

static route_t route_of(const http_request_t *r)
{
    route_t rt;
    rt.method = (unsigned char)r->method;
    /* "*" (asterisk-form) comes only with OPTIONS: the parser answers 400
     * to any other method */
    rt.path = r->path_len == 1 && r->path[0] == '*' ? PATH_STAR
              : path_is(r, "/")                     ? PATH_ROOT
              : path_is(r, "/metrics")              ? PATH_METRICS
              : path_is(r, "/whoami")               ? PATH_WHOAMI
                                                    : PATH_OTHER;
    rt.minor = (unsigned char)r->version_minor;
    rt.flags = r->flags;
    return rt;
}

/* The response to one request. Returns R_KEEP, R_CLOSE_ASKED when close is
 * set (the caller decides whether a body may still come), or R_CLOSE. */
static int answer(app_t *app, pc_conn_t *c, const route_t *rt, int close)
{
    int conn_hdr = close ? CONN_HDR_CLOSE : (rt->minor == 0 ? CONN_HDR_KEEP_ALIVE : CONN_HDR_NONE);
    int head_only = rt->method == HTTP_HEAD;
    int get = rt->method == HTTP_GET || head_only;

    if (rt->method == HTTP_METHOD_UNKNOWN) {
        static const char b[] = "Not Implemented\n";
        respond(app, c, 501, NULL, "text/plain", b, sizeof b - 1, 0, conn_hdr);
    } else if (rt->path == PATH_STAR) {
        /* OPTIONS * asks what the server as a whole supports (RFC 9110
         * section 9.3.7): every route here takes GET and HEAD */
        respond(app, c, 200, "Allow: GET, HEAD\r\n", "text/plain", "", 0, 0, conn_hdr);
    } else if (rt->path == PATH_ROOT) {
        if (!get) {
            static const char b[] = "Method Not Allowed\n";
            respond(app, c, 405, "Allow: GET, HEAD\r\n", "text/plain", b, sizeof b - 1, 0,
                    conn_hdr);
        } else if (conn_hdr != CONN_HDR_KEEP_ALIVE) {
            const canned_t *k = conn_hdr == CONN_HDR_NONE ? &tls.hello : &tls.hello_close;
            out_put(c, k->text, head_only ? k->head_len : k->len);
            count_code(app, 200);
        } else {
            respond(app, c, 200, NULL, "text/plain", k_hello_body, sizeof k_hello_body - 1,
                    head_only, conn_hdr);
        }
    } else if (rt->path == PATH_WHOAMI && !get) {
        static const char b[] = "Method Not Allowed\n";
        respond(app, c, 405, "Allow: GET, HEAD\r\n", "text/plain", b, sizeof b - 1, 0, conn_hdr);
    } else if (rt->path == PATH_WHOAMI) {
        /* the client as the server sees it: behind a trusted proxy, the real
         * client from the PROXY header, and the proxy */
        char body[160], peer[64], proxy[64] = "-";
        pc_format_endpoint(pc_conn_peer_addr(c), peer, sizeof peer);
        const struct sockaddr *pa = pc_conn_proxy_addr(c);
        if (pa) pc_format_endpoint(pa, proxy, sizeof proxy);
        int n = snprintf(body, sizeof body, "client %s\nproxy %s\n", peer, proxy);
        respond(app, c, 200, NULL, "text/plain", body, (size_t)n, head_only, conn_hdr);
    } else if (rt->path == PATH_METRICS) {
        if (!get) {
            static const char b[] = "Method Not Allowed\n";
            respond(app, c, 405, "Allow: GET, HEAD\r\n", "text/plain", b, sizeof b - 1, 0,
                    conn_hdr);
        } else {
            char *body = malloc(METRICS_CAP);
            if (!body) {
                respond_error(app, c, 500, head_only);
                return R_CLOSE;
            }
            size_t n = metrics_format(app, pc_conn_server(c), body, METRICS_CAP);
            respond(app, c, 200, NULL, "text/plain; version=0.0.4; charset=utf-8", body, n,
                    head_only, conn_hdr);
            free(body);
        }
    } else {
        static const char b[] = "Not Found\n";
        respond(app, c, 404, NULL, "text/plain", b, sizeof b - 1, head_only, conn_hdr);
    }
    return close ? R_CLOSE_ASKED : R_KEEP;
}

/* Handle one complete head. A Content-Length body is answered at once and
 * *body_left receives the bytes to discard after it. A chunked body is
 * answered when it ends (a client sending a body of unknown length, such as
 * curl -T -, stops sending and closes if an error status arrives first): the
 * route is saved in *route, *chunked set, and "100 Continue" sent if the
 * client waits for it. Returns R_CLOSE (or R_CLOSE_ASKED) when the
 * connection must close after the response. */
static int handle_request(app_t *app, pc_conn_t *c, const http_request_t *r, uint64_t *body_left,
                          int *chunked, route_t *route)
{
    *body_left = 0;
    *chunked = 0;
    if (r->content_length > app->max_body) {
        respond_error(app, c, 413, r->method == HTTP_HEAD);
        return R_CLOSE;
    }
    *route = route_of(r);
    if (r->flags & HTTP_F_CHUNKED) {
        static const char k_continue[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (r->flags & HTTP_F_EXPECT_CONTINUE) out_put(c, k_continue, sizeof k_continue - 1);
        *chunked = 1;
        return R_KEEP;
    }
    *body_left = r->content_length;
    int close = !(r->flags & HTTP_F_KEEP_ALIVE);
    /* We answer as soon as the head is complete. A client that asked for
     * 100-continue may then skip its body; rather than guess, close. */
    if ((r->flags & HTTP_F_EXPECT) && r->content_length) close = 1;
    int rr = answer(app, c, route, close);
    if (rr != R_CLOSE_ASKED) return rr;
    return (r->flags & HTTP_F_EXPECT) ? R_CLOSE : R_CLOSE_ASKED; /* a body may still come */
}

/* ---- per-connection state -------------------------------------------------------- */

static hstate_t *state_get(pc_conn_t *c)
{
    hstate_t *h = pc_conn_user_data(c);
    if (h) return h;
    h = calloc(1, sizeof *h);
    if (h) pc_conn_set_user_data(c, h);
    return h;
}

static void state_free(pc_conn_t *c, hstate_t *h)
{
    free(h->waiting);
    free(h->block);
    free(h);
    pc_conn_set_user_data(c, NULL);
}

/* Make room for need bytes of partial head (need <= max_head). */
static int partial_reserve(hstate_t *h, size_t need, size_t max_head)
{
    if (h->block && need <= h->cap) return 0;
    size_t cap = h->cap ? h->cap * 2 : PARTIAL_MIN;
    if (cap < need) cap = need;
    if (cap > max_head) cap = max_head;
    char *b = realloc(h->block, HDRS_BYTES + cap);
    if (!b) return -1;
    h->block = b;
    h->cap = cap;
    h->req.headers = (http_header_t *)(void *)b;
    return 0;
}

/* The bytes at p are the start of a head that is not complete: keep them,
 * with the parser and the header lines it has stored so far. */
static int partial_save(app_t *app, pc_conn_t *c, const http_parser_t *ps, const http_request_t *rq,
                        const char *p, size_t n)
{
    hstate_t *h = state_get(c);
    if (!h || partial_reserve(h, n, app->max_head) < 0) return -1;
    h->p = *ps;
    http_header_t *hdrs = (http_header_t *)(void *)h->block;
    h->req = *rq;
    h->req.headers = hdrs;
    memcpy(hdrs, rq->headers, rq->num_headers * sizeof *hdrs);
    memcpy(h->block + HDRS_BYTES, p, n);
    h->len = n;
    return 0;
}

/* ---- callbacks -------------------------------------------------------------------- */

/* Past high water (the whole queue: what is queued plus this call's
 * output), the rest of a read waits: with many requests pipelined in one
 * read, answering them all at once would queue without bound (past
 * send_queue_limit a response is refused and the connection closed). */
static int over_high_water(const app_t *app, pc_conn_t *c)
{
    return pc_conn_send_queued(c) + tls.out_len > app->send_high_water;
}

/* Keep the unparsed rest of a read until the queue drains, and pause
 * reading. The output is queued first: the queue is then past high water,
 * so the library has paused reading too and on_drain follows once it has
 * drained to low water (pc-http sends only from its callbacks, so
 * pc_conn_send_queued is that queue). 0, or -1 (no memory, or the output
 * was refused: the caller goes on as before). */
static int wait_for_drain(pc_conn_t *c, const char *p, size_t n)
{
    out_flush(c);
    if (tls.out_failed) return -1;
    hstate_t *h = state_get(c);
    if (!h) return -1;
    if (h->taking) { /* p is in the block on_drain parses: keep it, no copy */
        h->waiting = h->taking;
        h->waiting_off = (size_t)(p - h->taking);
        h->taking = NULL;
    } else {
        char *w = malloc(n);
        if (!w) return -1;
        memcpy(w, p, n);
        h->waiting = w;
        h->waiting_off = 0;
    }
    h->waiting_len = n;
    pc_conn_pause_read(c);
    return 0;
}

static void take_requests(pc_conn_t *c, const char *data, size_t len)
{
    app_t *app = pc_server_user_data(pc_conn_server(c));
    hstate_t *h = pc_conn_user_data(c);
    const char *p = data;
    size_t n = len;
    uint64_t body_left = h ? h->body_left : 0;
    /* a chunked body in progress: its decoder and the route to answer after
     * it live here while in this read, in h only across reads */
    int chunked = h ? h->chunked : 0;
    http_chunked_t ck;
    route_t route;
    int close = 0, status = 0, completed = 0, asked = 0, waits = 0, can_wait = 1;
    int err_head = 0; /* status answers a HEAD request: no body */

    if (chunked) {
        ck = h->ck;
        route = h->route;
    }
    tcache();
    tls.out_len = 0;
    tls.out_failed = 0;
    while (n) {
        if (body_left) {
            size_t take = body_left < n ? (size_t)body_left : n;
            body_left -= take;
            p += take;
            n -= take;
            continue;
        }
        if (chunked) {
            size_t used;
            int r = http_chunked_parse(&ck, p, n, &used, NULL, NULL);
            p += used;
            n -= used;
            if (r < 0) {
                status = -r;
                err_head = route.method == HTTP_HEAD;
                break;
            }
            if (r == 0) break; /* all used; the body goes on in the next read */
            chunked = 0;
            int rr = answer(app, c, &route, !(route.flags & HTTP_F_KEEP_ALIVE));
            if (rr != R_KEEP) {
                close = 1;
                asked = rr == R_CLOSE_ASKED;
                break;
            }
            continue;
        }
        http_request_t *req;
        int r;
        http_parser_t ps;
        http_request_t rq;
        http_header_t hd[HTTP_APP_MAX_HEADERS];
        if (can_wait && !(h && h->len) && over_high_water(app, c)) {
            int rc = wait_for_drain(c, p, n);
            h = pc_conn_user_data(c);
            if (rc == 0) {
                waits = 1;
                n = 0;
                break;
            }
            can_wait = 0; /* no memory: answered as they come, as before */
        }
        if (h && h->len) {
            /* a head split across reads: append at most up to the head limit
             * (the parser answers 431 or 414 once that many bytes are buffered) */
            size_t old = h->len;
            size_t add = app->max_head - old < n ? app->max_head - old : n;
            if (partial_reserve(h, old + add, app->max_head) < 0) {
                status = 500;
                break;
            }
            memcpy(h->block + HDRS_BYTES + old, p, add);
            h->len += add;
            r = http_parse_request(&h->p, h->block + HDRS_BYTES, h->len, &h->req);
            if (r == 0) {
                n = 0;
                break;
            }
            if (r < 0) {
                status = -r;
                err_head = h->req.method == HTTP_HEAD; /* best effort, as parsed */
                break;
            }
            p += (size_t)r - old;
            n -= (size_t)r - old;
            h->len = 0;
            req = &h->req;
        } else {
            http_parser_init(&ps, app->max_head);
            http_request_init(&rq, hd, HTTP_APP_MAX_HEADERS);
            r = http_parse_request(&ps, p, n, &rq);
            if (r == 0) {
                if (partial_save(app, c, &ps, &rq, p, n) < 0) status = 500;
                h = pc_conn_user_data(c);
                n = 0;
                break;
            }
            if (r < 0) {
                status = -r;
                err_head = rq.method == HTTP_HEAD; /* best effort, as parsed */
                break;
            }
            p += r;
            n -= (size_t)r;
            req = &rq;
        }
        completed++;
        int rr = handle_request(app, c, req, &body_left, &chunked, &route);
        if (rr != R_KEEP) {
            close = 1;
            asked = rr == R_CLOSE_ASKED;
            break;
        }
        if (chunked) http_chunked_init(&ck, app->max_body, app->max_head);
    }
    if (status) {
        respond_error(app, c, status, err_head);
        close = 1;
    }
    out_flush(c);
    if (close || tls.out_failed) {
        /* the client asked to close and sent nothing after its request: close
         * right after the response; otherwise read and discard what it may
         * still be sending, so its kernel does not reset the response away */
        if (asked && !status && !tls.out_failed && n == 0 && !body_left)
            pc_conn_close_nolinger(c);
        else
            pc_conn_close(c);
        return;
    }
    int body = body_left || chunked;
    if (body && !h) h = state_get(c);
    if (h) {
        if (!body && !h->len && !waits) {
            state_free(c, h);
            h = NULL; /* no head in progress: the deadline below is cancelled */
        } else {
            h->body_left = body_left;
            h->chunked = chunked;
            if (chunked) {
                h->ck = ck;
                h->route = route;
            }
            if (!h->len) http_parser_reset(&h->p);
        }
    }
    if (body && !h) {
        pc_conn_close(c); /* out of memory: cannot track the body */
        return;
    }
    if (app->header_timeout_ms) {
        /* a completed head ends its deadline; a head still arriving runs
         * against one (the first request's started when the connection
         * opened and is not pushed back) */
        if (completed) pc_conn_set_header_timeout(c, 0);
        if (h && h->len) pc_conn_set_header_timeout(c, app->header_timeout_ms);
    }
}

static void on_data(pc_conn_t *c, const void *data, size_t len)
{
    hstate_t *h = pc_conn_user_data(c);
    if (h && h->waiting_len) {
        /* reading is paused while requests wait; bytes delivered anyway (a
         * receive the library could not hold) go behind them */
        size_t end = h->waiting_off + h->waiting_len;
        char *w = realloc(h->waiting, end + len);
        if (!w) {
            pc_conn_close(c);
            return;
        }
        memcpy(w + end, data, len);
        h->waiting = w;
        h->waiting_len += len;
        return;
    }
    take_requests(c, data, len);
}

/* The send queue drained to low water: answer the requests that waited
 * (they may wait again), then read on. */
static void on_drain(pc_conn_t *c)
{
    hstate_t *h = pc_conn_user_data(c);
    if (!h || !h->waiting_len) return;
    char *w = h->waiting;
    size_t n = h->waiting_len;
    h->waiting = NULL;
    h->waiting_len = 0;
    h->taking = w;
    take_requests(c, w + h->waiting_off, n);
    /* the block stays if the requests wait again (wait_for_drain took it);
     * h is gone if nothing was left to keep */
    h = pc_conn_user_data(c);
    if (!h || h->waiting != w) free(w);
    if (h) h->taking = NULL;
    if (!h || !h->waiting_len) pc_conn_resume_read(c);
}

static void on_close(pc_conn_t *c, pc_close_reason_t reason, int err)
{
    (void)reason;
    (void)err;
    hstate_t *h = pc_conn_user_data(c);
    if (h) state_free(c, h);
}

/* ---- lifecycle -------------------------------------------------------------------- */

void http_app_config_init(http_app_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    pc_server_config_init(&cfg->server);
    cfg->max_header_bytes = HTTP_DEFAULT_MAX_HEAD;
    cfg->max_body_bytes = 1024 * 1024;
}

int http_app_create(const http_app_config_t *cfg, pc_server_t **out, int *failed_listen)
{
    if (failed_listen) *failed_listen = -1;
    if (!cfg || !out || cfg->nlisten < 0 || cfg->nlisten > HTTP_APP_MAX_LISTEN) return PC_EINVAL;
    app_t *app = calloc(1, sizeof *app);
    if (!app) return PC_ENOMEM;
    app->max_head = cfg->max_header_bytes ? cfg->max_header_bytes : HTTP_DEFAULT_MAX_HEAD;
    app->max_body = cfg->max_body_bytes;
    app->send_high_water = cfg->server.send_high_water;
    app->metrics_hook = cfg->metrics_hook;
    app->metrics_hook_user = cfg->metrics_hook_user;

    pc_server_config_t sc = cfg->server;
    sc.cb.on_open = NULL;
    sc.cb.on_data = on_data;
    sc.cb.on_drain = on_drain;
    sc.cb.on_close = on_close;
    sc.user_data = app;
    /* the library arms it when a connection opens; on_data cancels it when
     * a head completes and arms it again when the next one starts */
    sc.header_timeout_ms = cfg->header_timeout_ms;
    app->header_timeout_ms = cfg->header_timeout_ms;

    pc_server_t *s;
    int rc = pc_server_create(&sc, &s);
    if (rc < 0) {
        free(app);
        return rc;
    }
    int nl = cfg->nlisten;
    for (int i = 0; i < (nl ? nl : 1); i++) {
        const char *ep = nl ? cfg->listen[i] : "127.0.0.1:8080";
        int idx = cfg->tls ? pc_server_listen_tls(s, ep, cfg->tls) : pc_server_listen(s, ep);
        if (idx < 0) {
            if (failed_listen) *failed_listen = i;
            pc_server_destroy(s);
            free(app);
            return idx;
        }
    }
    *out = s;
    return 0;
}

int http_app_start(const http_app_config_t *cfg, pc_server_t **out, int *port)
{
    pc_server_t *s;
    int rc = http_app_create(cfg, &s, NULL);
    if (rc < 0) return rc;
    rc = pc_server_start(s);
    if (rc < 0) {
        http_app_destroy(s, 0);
        return rc;
    }
    if (port) *port = pc_server_listener_port(s, 0);
    *out = s;
    return 0;
}

void http_app_destroy(pc_server_t *s, unsigned drain_ms)
{
    if (!s) return;
    app_t *app = pc_server_user_data(s);
    pc_server_stop(s, drain_ms);
    pc_server_destroy(s);
    free(app);
}

uint64_t http_app_responses(const pc_server_t *s, int status_class)
{
    const app_t *app = pc_server_user_data(s);
    if (!app) return 0;
    uint64_t t = 0;
    for (size_t i = 0; i < NCODES; i++)
        if (k_codes[i] / 100 == status_class) t += code_total(app, i);
    return t;
}
