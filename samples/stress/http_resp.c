/* SPDX-License-Identifier: MIT */
/* Incremental HTTP/1.x response parser (framing only); see http_resp.h. */
#include "http_resp.h"

#include <string.h>

void http_resp_init(http_resp_t *st)
{
    st->state = HTTP_RESP_S_STATUS;
    st->conn_close = st->keep_alive = st->chunked = st->have_len = 0;
    st->minor = 0;
    st->status = 0;
    st->body_left = 0;
    st->line_len = 0;
}

static int lower_prefix(const char *line, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    if (n < k) return 0;
    for (size_t i = 0; i < k; i++) {
        char ch = line[i];
        if (ch >= 'A' && ch <= 'Z') ch = (char)(ch + 32);
        if (ch != lit[i]) return 0;
    }
    return 1;
}

static int is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* The options of a Connection header (l, n: its value): a comma-separated
 * list of tokens, any case, blanks around them; only "close" and
 * "keep-alive" matter. */
static void connection_options(http_resp_t *st, const char *l, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t b = i;
        while (i < n && l[i] != ',')
            i++;
        size_t e = i++;
        while (b < e && is_ows(l[b]))
            b++;
        while (e > b && is_ows(l[e - 1]))
            e--;
        if (e - b == 5 && lower_prefix(l + b, 5, "close")) st->conn_close = 1;
        if (e - b == 10 && lower_prefix(l + b, 10, "keep-alive")) st->keep_alive = 1;
    }
}

/* A header line (without its line end); only the framing headers matter.
 * Returns 0 or -1. */
static int header_line(http_resp_t *st, const char *l, size_t n)
{
    if (lower_prefix(l, n, "content-length:")) {
        size_t i = 15;
        while (i < n && (l[i] == ' ' || l[i] == '\t'))
            i++;
        if (i == n) return -1;
        uint64_t v = 0;
        for (; i < n && l[i] >= '0' && l[i] <= '9'; i++) {
            if (v > UINT64_MAX / 10 - 1) return -1;
            v = v * 10 + (uint64_t)(l[i] - '0');
        }
        while (i < n && (l[i] == ' ' || l[i] == '\t'))
            i++;
        if (i != n) return -1;
        st->body_left = v;
        st->have_len = 1;
    } else if (lower_prefix(l, n, "connection:")) {
        connection_options(st, l + 11, n - 11);
    } else if (lower_prefix(l, n, "transfer-encoding:")) {
        st->chunked = 1;
    }
    return 0;
}

/* Whether the connection ends after the response being parsed: the server
 * said so (Connection: close), or it is HTTP/1.0 and did not ask for
 * keep-alive, or its body runs to the end of the connection. */
static int closing(const http_resp_t *st)
{
    return st->conn_close || (st->minor == 0 && !st->keep_alive) ||
           st->state == HTTP_RESP_S_BODY_TO_CLOSE;
}

/* A response is complete: reset, then report it. Returns cb's verdict. */
static int response_done(http_resp_t *st, http_resp_cb cb, void *user)
{
    int status = st->status, closes = closing(st);
    http_resp_init(st);
    return cb(user, status, closes);
}

/* A complete line of the head (l, n: at most HTTP_RESP_LINE_KEEP bytes, no
 * '\n'). Returns 0, 1 (a response is complete: the caller reports it, so
 * that this stays small enough to inline) or -1. */
static int head_line(http_resp_t *st, const char *l, size_t n)
{
    if (n && l[n - 1] == '\r') n--;
    if (st->state == HTTP_RESP_S_STATUS) {
        if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || l[7] < '0' || l[7] > '9' || l[8] != ' ' ||
            l[9] < '1' || l[9] > '5' || l[10] < '0' || l[10] > '9' || l[11] < '0' || l[11] > '9')
            return -1;
        st->minor = (uint8_t)(l[7] - '0');
        st->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
        st->state = HTTP_RESP_S_HEADERS;
        return 0;
    }
    if (n) return header_line(st, l, n);
    /* end of the head */
    if (st->status < 200) { /* interim response: the real one follows */
        http_resp_init(st);
        return 0;
    }
    if (st->chunked) return -1; /* not needed against the servers we drive */
    if (st->status == 204 || st->status == 304) {
        st->body_left = 0;
    } else if (!st->have_len) {
        st->state = HTTP_RESP_S_BODY_TO_CLOSE;
        return 0;
    }
    st->state = HTTP_RESP_S_BODY;
    return st->body_left == 0;
}

ptrdiff_t http_resp_feed(http_resp_t *st, const void *data, size_t len, http_resp_cb cb, void *user)
{
    const char *const base = data;
    const char *p = base, *end = base + len;
    if (st->state >= HTTP_RESP_S_FAILED) return HTTP_RESP_ERROR;
    while (p < end) {
        if (st->state == HTTP_RESP_S_BODY) {
            size_t avail = (size_t)(end - p);
            size_t take = st->body_left < avail ? (size_t)st->body_left : avail;
            st->body_left -= take;
            p += take;
            if (!st->body_left && response_done(st, cb, user)) break;
            continue;
        }
        if (st->state > HTTP_RESP_S_HEADERS) {
            if (st->state == HTTP_RESP_S_BODY_TO_CLOSE) p = end; /* all body */
            break; /* (or cb ended the stream with http_resp_eof) */
        }
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        int rc;
        if (!nl || st->line_len) {
            /* a line split across calls: keep its start */
            size_t room = HTTP_RESP_LINE_KEEP - st->line_len;
            size_t k = n < room ? n : room;
            memcpy(st->line + st->line_len, p, k);
            st->line_len += (unsigned)k;
            p += n;
            if (!nl) break;
            p++;
            n = st->line_len;
            st->line_len = 0;
            rc = head_line(st, st->line, n);
        } else {
            rc = head_line(st, p, n < HTTP_RESP_LINE_KEEP ? n : HTTP_RESP_LINE_KEEP);
            p = nl + 1;
        }
        if (rc) {
            if (rc < 0) {
                st->state = HTTP_RESP_S_FAILED;
                return HTTP_RESP_ERROR;
            }
            if (response_done(st, cb, user)) break;
        }
    }
    return p - base;
}

int http_resp_busy(const http_resp_t *st)
{
    switch (st->state) {
    case HTTP_RESP_S_STATUS:
        return st->line_len != 0;
    case HTTP_RESP_S_HEADERS:
    case HTTP_RESP_S_BODY:
    case HTTP_RESP_S_FAILED:
        return 1;
    default:
        return 0;
    }
}

int http_resp_eof(http_resp_t *st, http_resp_cb cb, void *user)
{
    if (st->state == HTTP_RESP_S_FAILED) return HTTP_RESP_ERROR;
    int busy = http_resp_busy(st);
    int to_close = st->state == HTTP_RESP_S_BODY_TO_CLOSE;
    int status = st->status, closes = closing(st);
    http_resp_init(st);
    st->state = HTTP_RESP_S_ENDED;
    if (to_close && cb) cb(user, status, closes);
    return busy;
}
