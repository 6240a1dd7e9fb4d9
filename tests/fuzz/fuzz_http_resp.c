/* SPDX-License-Identifier: MIT */
/* libFuzzer target for samples/stress/http_resp (pc-stress's response parser).
 *
 * Each input is a byte stream from a server, fed several ways, and any
 * disagreement aborts:
 *   - whole, in one call;
 *   - in two calls, split at a position derived from the input;
 *   - in chunks of 1..16 bytes whose sizes come from the input;
 *   - whole again with a callback that stops after every response, feeding
 *     the rest from where the parser stopped (which must be the end of that
 *     response);
 * and each must report the responses (status, whether the connection ends
 * after it, and for the last run where each ended) of a plain whole-buffer reference parser written
 * from the rules in http_resp.h. Every call consumes at most what it was
 * given (all of it unless told to stop); after an error or the end nothing
 * more is accepted; statuses are within 100..599 (never 1xx, which are
 * interim).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_resp.h"

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                 \
        }                                                                            \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What a run reported: a count and running hashes of the responses. */
typedef struct res_s {
    uint64_t n;
    uint64_t h;    /* status, close */
    uint64_t hoff; /* status, close, end offset (reference and stop runs) */
    int error;
    int eof; /* http_resp_eof's result, or HTTP_RESP_ERROR */
} res_t;

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static void add(res_t *r, int status, int conn_close, uint64_t end)
{
    r->n++;
    r->h = mix(r->h, (uint64_t)status * 2 + (uint64_t)conn_close);
    r->hoff = mix(r->hoff, ((uint64_t)status * 2 + (uint64_t)conn_close) ^ (end << 11));
}

/* ---- reference: the whole stream at once ----------------------------------------- */

static int lower_is(const char *l, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    if (n < k) return 0;
    for (size_t i = 0; i < k; i++) {
        char ch = l[i];
        if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
        if (ch != lit[i]) return 0;
    }
    return 1;
}

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* One element of a Connection list (l[0, n), blanks trimmed here) equal
 * to lit, any case. */
static int option_is(const char *l, size_t n, const char *lit)
{
    while (n && is_blank(*l)) {
        l++;
        n--;
    }
    while (n && is_blank(l[n - 1]))
        n--;
    return n == strlen(lit) && lower_is(l, n, lit);
}

static void reference(const char *buf, size_t len, res_t *r)
{
    memset(r, 0, sizeof *r);
    size_t pos = 0;
    for (;;) { /* one response (or interim response) */
        int status = 0, conn_close = 0, keep_alive = 0, http10 = 0, te = 0, have_len = 0;
        uint64_t cl = 0;
        if (pos == len) return; /* clean end between responses */
        for (int first = 1;; first = 0) {
            const char *l = buf + pos;
            const char *nl = memchr(l, '\n', len - pos);
            if (!nl) { /* the stream ends inside a line */
                r->eof = 1;
                return;
            }
            size_t n = (size_t)(nl - l);
            pos += n + 1;
            if (n > HTTP_RESP_LINE_KEEP) n = HTTP_RESP_LINE_KEEP;
            if (n > 0 && l[n - 1] == '\r') n--;
            if (first) {
                int ok = n >= 12 && !memcmp(l, "HTTP/1.", 7) && l[8] == ' ';
                for (int k = 9; ok && k < 12; k++)
                    ok = l[k] >= '0' && l[k] <= '9';
                if (!ok || l[7] < '0' || l[7] > '9' || l[9] == '0' || l[9] > '5') goto error;
                status = atoi((char[4]){l[9], l[10], l[11], 0});
                http10 = l[7] == '0';
            } else if (n == 0) {
                break;
            } else if (lower_is(l, n, "content-length:")) {
                size_t i = 15;
                while (i < n && is_blank(l[i]))
                    i++;
                size_t d = i;
                cl = 0;
                for (; i < n && l[i] >= '0' && l[i] <= '9'; i++) {
                    if (cl > 1844674407370955160ull) goto error; /* UINT64_MAX / 10 - 1 */
                    cl = cl * 10 + (uint64_t)(l[i] - '0');
                }
                if (d == n) goto error;
                while (i < n && is_blank(l[i]))
                    i++;
                if (i != n) goto error;
                have_len = 1;
            } else if (lower_is(l, n, "connection:")) {
                for (size_t b = 11, i = 11; i <= n; i++) {
                    if (i < n && l[i] != ',') continue;
                    if (option_is(l + b, i - b, "close")) conn_close = 1;
                    if (option_is(l + b, i - b, "keep-alive")) keep_alive = 1;
                    b = i + 1;
                }
            } else if (lower_is(l, n, "transfer-encoding:")) {
                te = 1;
            }
            if (pos == len) { /* the stream ends after a line of the head */
                r->eof = 1;
                return;
            }
        }
        if (status < 200) continue; /* interim */
        if (te) goto error;
        int closing = conn_close || (http10 && !keep_alive);
        if (status == 204 || status == 304) {
            cl = 0;
        } else if (!have_len) { /* to the end of the stream, which it ends */
            add(r, status, 1, len);
            return;
        }
        if (cl > len - pos) {
            r->eof = 1;
            return;
        }
        pos += (size_t)cl;
        add(r, status, closing, pos);
    }
error:
    r->error = 1;
    r->eof = HTTP_RESP_ERROR;
}

/* ---- the incremental parser --------------------------------------------------------- */

typedef struct run_s {
    res_t res;
    int stop;    /* the callback stops after every response */
    int in_call; /* responses reported during the current call */
    int last_status, last_close;
} run_t;

static int on_resp(void *user, int status, int conn_close)
{
    run_t *u = user;
    CHECK(status >= 100 && status <= 599);
    CHECK(status >= 200); /* 1xx are interim, never reported */
    CHECK(conn_close == 0 || conn_close == 1);
    u->in_call++;
    u->last_status = status;
    u->last_close = conn_close;
    u->res.n++;
    u->res.h = mix(u->res.h, (uint64_t)status * 2 + (uint64_t)conn_close);
    return u->stop;
}

static void check_state(const http_resp_t *st)
{
    CHECK(st->state <= HTTP_RESP_S_ENDED);
    CHECK(st->line_len <= HTTP_RESP_LINE_KEEP);
    if (st->state != HTTP_RESP_S_STATUS && st->state != HTTP_RESP_S_HEADERS)
        CHECK(st->line_len == 0);
    CHECK(http_resp_busy(st) == 0 || http_resp_busy(st) == 1);
}

/* After an error or the end: nothing is accepted, nothing reported. */
static void check_spent(http_resp_t *st, run_t *u, const char *buf, size_t len)
{
    uint64_t n = u->res.n;
    CHECK(http_resp_feed(st, buf, len, on_resp, u) == HTTP_RESP_ERROR);
    CHECK(http_resp_feed(st, "HTTP/1.1 200 OK\r\n\r\n", 19, on_resp, u) == HTTP_RESP_ERROR);
    CHECK(u->res.n == n);
}

/* Feed buf[0, len) in pieces: sizes[k] bytes for k < nsizes, then the rest.
 * In stop mode the offset at which each response ended is hashed too. */
static void run(run_t *u, const char *buf, size_t len, const size_t *sizes, size_t nsizes, int stop)
{
    http_resp_t st;
    memset(u, 0, sizeof *u);
    u->stop = stop;
    http_resp_init(&st);
    size_t off = 0;
    for (size_t k = 0; off < len || k == 0; k++) {
        size_t piece = k < nsizes && sizes[k] < len - off ? sizes[k] : len - off;
        size_t end = off + piece;
        while (off < end || piece == 0) {
            u->in_call = 0;
            ptrdiff_t r = http_resp_feed(&st, buf + off, end - off, on_resp, u);
            check_state(&st);
            if (r < 0) {
                CHECK(r == HTTP_RESP_ERROR);
                CHECK(st.state == HTTP_RESP_S_FAILED);
                CHECK(http_resp_busy(&st) == 1);
                u->res.error = 1;
                u->res.eof = http_resp_eof(&st, on_resp, u);
                CHECK(u->res.eof == HTTP_RESP_ERROR);
                check_spent(&st, u, buf, len);
                return;
            }
            CHECK((size_t)r <= end - off);
            if (!stop) CHECK((size_t)r == end - off);
            if (stop) CHECK(u->in_call <= 1);
            if ((size_t)r < end - off) CHECK(u->in_call == 1);
            off += (size_t)r;
            if (stop && u->in_call)
                u->res.hoff =
                    mix(u->res.hoff, ((uint64_t)u->last_status * 2 + (uint64_t)u->last_close) ^
                                         ((uint64_t)off << 11));
            if (piece == 0) break;
        }
    }
    int busy = http_resp_busy(&st);
    int to_close = st.state == HTTP_RESP_S_BODY_TO_CLOSE;
    u->in_call = 0;
    u->res.eof = http_resp_eof(&st, on_resp, u);
    CHECK(u->res.eof == busy);
    CHECK(u->in_call == to_close);
    if (stop && to_close)
        u->res.hoff = mix(u->res.hoff, ((uint64_t)u->last_status * 2 + (uint64_t)u->last_close) ^
                                           ((uint64_t)len << 11));
    CHECK(st.state == HTTP_RESP_S_ENDED && http_resp_busy(&st) == 0);
    check_spent(&st, u, buf, len);
}

static void check_same(const res_t *ref, const res_t *got, int with_offsets)
{
    CHECK(ref->n == got->n);
    CHECK(ref->h == got->h);
    CHECK(ref->error == got->error);
    CHECK(ref->eof == got->eof);
    if (with_offsets) CHECK(ref->hoff == got->hoff);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static size_t sizes[1 << 16];
    static run_t u;
    const char *buf = (const char *)data;
    res_t ref;
    reference(buf, size, &ref);

    run(&u, buf, size, NULL, 0, 0); /* whole */
    check_same(&ref, &u.res, 0);

    if (size) { /* two pieces */
        size_t cut = ((size_t)data[0] << 8 | data[size - 1]) % (size + 1);
        run(&u, buf, size, &cut, 1, 0);
        check_same(&ref, &u.res, 0);
    }

    { /* small chunks */
        size_t n = 0, total = 0;
        for (size_t i = 0; total < size && n < sizeof sizes / sizeof sizes[0]; i++) {
            sizes[n] = 1 + (size_t)(data[(i * 7) % size] % 16);
            total += sizes[n++];
        }
        run(&u, buf, size, sizes, n, 0);
        check_same(&ref, &u.res, 0);
    }

    run(&u, buf, size, NULL, 0, 1); /* stop after each response */
    check_same(&ref, &u.res, 1);
    return 0;
}
