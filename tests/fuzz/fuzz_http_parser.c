/* SPDX-License-Identifier: MIT */
/* libFuzzer target for samples/http/http_parser.
 *
 * Each input is parsed as a request head several ways, and any disagreement
 * aborts:
 *   - whole, in one call;
 *   - split in two calls at a position derived from the first byte, with the
 *     second call on a moved copy of the buffer (slices must follow it);
 *   - one more byte per call;
 *   - whole again with a small head limit and header count derived from the
 *     first byte, which must agree with the default limits unless it is 431
 *     or 414 (the limit reached in the head or in the request-target).
 * Successful results must be self-consistent (head length within the input
 * and the limit, every slice inside the head, flags coherent), and the bytes
 * after a head are parsed as further pipelined requests (their Content-Length
 * or chunked bodies skipped).
 *
 * The input after its first byte is also decoded as a chunked body, whole, a
 * byte per call and split at a position from the first byte: the three must
 * agree with each other and with a reference decoder written separately below
 * (non-incremental, on the whole buffer): same outcome, same length, same
 * data bytes. With small body and trailer limits the outcome is the same or
 * 413/431 (the trailer limit also bounds chunk extensions and extra leading
 * zeros).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parser.h"

#define MAXH 64

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                 \
        }                                                                            \
    } while (0)

typedef struct run_s {
    int rc;
    http_request_t req;
    http_header_t hdrs[MAXH];
} run_t;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int in_head(const char *p, size_t n, const char *base, int rc)
{
    return p >= base && n <= (size_t)rc && (size_t)(p - base) <= (size_t)rc - n;
}

/* Invariants of a successful parse of base[0, len) with limit and maxh. */
static void check_ok(const run_t *r, const char *base, size_t len, size_t limit, size_t maxh)
{
    const http_request_t *q = &r->req;
    CHECK(r->rc > 0 && (size_t)r->rc <= len && (size_t)r->rc <= limit);
    CHECK(r->rc >= 4 && memcmp(base + r->rc - 4, "\r\n\r\n", 4) == 0);
    CHECK(q->method_len > 0 && in_head(q->method_str, q->method_len, base, r->rc));
    CHECK(q->target_len > 0 && in_head(q->target, q->target_len, base, r->rc));
    CHECK(q->path >= q->target && q->path + q->path_len == q->target + q->target_len);
    CHECK(q->version_minor == 0 || q->version_minor == 1);
    CHECK(q->num_headers <= maxh);
    for (size_t k = 0; k < q->num_headers; k++) {
        const http_header_t *h = &q->headers[k];
        CHECK(h->name_len > 0 && in_head(h->name, h->name_len, base, r->rc));
        CHECK(in_head(h->value, h->value_len, base, r->rc));
        CHECK(h->name == base + h->name_off && h->value == base + h->value_off);
        CHECK(h->value > h->name);
        if (h->value_len) {
            CHECK(h->value[0] != ' ' && h->value[0] != '\t');
            CHECK(h->value[h->value_len - 1] != ' ' && h->value[h->value_len - 1] != '\t');
        }
        for (size_t c = 0; c < h->name_len; c++)
            CHECK(h->name[c] > ' ' && h->name[c] != ':' && (unsigned char)h->name[c] < 0x7f);
        for (size_t c = 0; c < h->value_len; c++)
            CHECK(h->value[c] != '\r' && h->value[c] != '\n' && h->value[c] != '\0');
    }
    if (q->flags & HTTP_F_HOST)
        CHECK(q->host && in_head(q->host, q->host_len, base, r->rc));
    else
        CHECK(q->host == NULL);
    if (q->version_minor == 1) CHECK(q->flags & HTTP_F_HOST);
    /* a successful Transfer-Encoding is exactly chunked, in HTTP/1.1, without Content-Length */
    CHECK(!(q->flags & HTTP_F_TRANSFER_ENC) == !(q->flags & HTTP_F_CHUNKED));
    if (q->flags & HTTP_F_CHUNKED)
        CHECK(q->version_minor == 1 && !(q->flags & HTTP_F_CONTENT_LENGTH));
    CHECK((q->flags & ~0x7ffu) == 0); /* public flags only */
    CHECK(!((q->flags & HTTP_F_KEEP_ALIVE) && (q->flags & HTTP_F_CONN_CLOSE)));
    if (!(q->flags & HTTP_F_CONTENT_LENGTH)) CHECK(q->content_length == 0);
    CHECK(q->content_length <= HTTP_MAX_CONTENT_LENGTH);
    if (q->flags & HTTP_F_EXPECT_CONTINUE) CHECK(q->flags & HTTP_F_EXPECT);
    CHECK(q->target_form <= HTTP_TARGET_AUTHORITY);
    if (q->method != HTTP_METHOD_UNKNOWN) CHECK(q->target_form != HTTP_TARGET_AUTHORITY);
}

/* Two parses of the same bytes (possibly at different addresses) agree. */
static void check_same(const run_t *a, const char *ba, const run_t *b, const char *bb)
{
    CHECK(a->rc == b->rc);
    if (a->rc <= 0) return;
    const http_request_t *x = &a->req, *y = &b->req;
#define SAME_SLICE(f, n) CHECK(x->f - ba == y->f - bb && x->n == y->n)
    CHECK(x->method == y->method);
    SAME_SLICE(method_str, method_len);
    SAME_SLICE(target, target_len);
    SAME_SLICE(path, path_len);
    CHECK((x->host == NULL) == (y->host == NULL));
    if (x->host) SAME_SLICE(host, host_len);
    CHECK(x->target_form == y->target_form);
    CHECK(x->version_minor == y->version_minor);
    CHECK(x->content_length == y->content_length);
    CHECK(x->flags == y->flags);
    CHECK(x->num_headers == y->num_headers);
    for (size_t k = 0; k < x->num_headers; k++) {
        CHECK(x->headers[k].name_off == y->headers[k].name_off);
        CHECK(x->headers[k].name_len == y->headers[k].name_len);
        CHECK(x->headers[k].value_off == y->headers[k].value_off);
        CHECK(x->headers[k].value_len == y->headers[k].value_len);
        CHECK(x->headers[k].name - ba == y->headers[k].name - bb);
        CHECK(x->headers[k].value - ba == y->headers[k].value - bb);
    }
#undef SAME_SLICE
}

static void parse_whole(run_t *r, const char *buf, size_t len, size_t limit, size_t maxh)
{
    http_parser_t p;
    http_parser_init(&p, limit);
    http_request_init(&r->req, r->hdrs, maxh);
    r->rc = http_parse_request(&p, buf, len, &r->req);
    CHECK(r->rc <= 0 || (size_t)r->rc <= len);
    /* sticky */
    CHECK(http_parse_request(&p, buf, len, &r->req) == r->rc || r->rc == 0);
}

/* ---- chunked bodies ------------------------------------------------------------ */

typedef struct ck_res_s {
    int rc;          /* 1 complete, 0 incomplete, < 0 error (reference: -1) */
    size_t consumed; /* when complete */
    size_t data_len;
    uint8_t *data; /* size bytes of room */
} ck_res_t;

static int ref_tchar(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int ref_vbyte(uint8_t c) /* field-value byte: HTAB, SP, VCHAR, obs-text */
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int ref_hex(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* CRLF at b[*pos]: 1 consumed, 0 need more, -1 wrong bytes. */
static int ref_crlf(const uint8_t *b, size_t n, size_t *pos)
{
    if (*pos == n) return 0;
    if (b[*pos] != '\r') return -1;
    if (*pos + 1 == n) return 0;
    if (b[*pos + 1] != '\n') return -1;
    *pos += 2;
    return 1;
}

/* The reference: RFC 9112 7.1 on the whole buffer, no body or trailer limit,
 * a chunk-size line (CRLF included) of at most HTTP_CHUNK_LINE_MAX bytes. */
static void ref_chunked(const uint8_t *b, size_t n, ck_res_t *r)
{
    size_t pos = 0;
    r->data_len = 0;
    for (;;) {
        size_t line = pos;
        uint64_t sz = 0;
        int digits = 0, k;
#define LINE_NEED_MORE()                                 \
    do {                                                 \
        r->rc = n - line > HTTP_CHUNK_LINE_MAX ? -1 : 0; \
        return;                                          \
    } while (0)
        while (pos < n && (k = ref_hex(b[pos])) >= 0) {
            if (sz > (HTTP_MAX_CONTENT_LENGTH - (uint64_t)k) / 16) goto bad;
            sz = sz * 16 + (uint64_t)k;
            digits++;
            pos++;
        }
        if (pos == n) LINE_NEED_MORE();
        if (!digits) goto bad;
        if (b[pos] == ' ' || b[pos] == '\t' || b[pos] == ';') {
            while (pos < n && (b[pos] == ' ' || b[pos] == '\t'))
                pos++;
            if (pos == n) LINE_NEED_MORE();
            if (b[pos] != ';') goto bad;
            while (pos < n && ref_vbyte(b[pos]))
                pos++;
        }
        k = ref_crlf(b, n, &pos);
        if (k < 0) goto bad;
        if (k == 0) LINE_NEED_MORE();
        if (pos - line > HTTP_CHUNK_LINE_MAX) goto bad;
#undef LINE_NEED_MORE
        if (sz == 0) break;
        if (n - pos < sz) {
            r->rc = 0;
            return;
        }
        memcpy(r->data + r->data_len, b + pos, (size_t)sz);
        r->data_len += (size_t)sz;
        pos += (size_t)sz;
        k = ref_crlf(b, n, &pos);
        if (k < 0) goto bad;
        if (k == 0) {
            r->rc = 0;
            return;
        }
    }
    for (;;) { /* trailer section */
        if (pos == n) {
            r->rc = 0;
            return;
        }
        if (b[pos] == '\r') {
            int k = ref_crlf(b, n, &pos);
            if (k < 0) goto bad;
            r->rc = k; /* 1: complete; 0: the LF is missing */
            r->consumed = pos;
            return;
        }
        if (!ref_tchar(b[pos])) goto bad;
        while (pos < n && ref_tchar(b[pos]))
            pos++;
        if (pos == n) {
            r->rc = 0;
            return;
        }
        if (b[pos++] != ':') goto bad;
        while (pos < n && ref_vbyte(b[pos]))
            pos++;
        int k = ref_crlf(b, n, &pos);
        if (k < 0) goto bad;
        if (k == 0) {
            r->rc = 0;
            return;
        }
    }
bad:
    r->rc = -1;
}

static void ck_sink(void *user, const char *p, size_t n)
{
    ck_res_t *r = user;
    CHECK(n > 0);
    memcpy(r->data + r->data_len, p, n);
    r->data_len += n;
}

/* Decodes b[0, n) in pieces ending at cuts[] (then at n). */
static void dec_chunked(const uint8_t *b, size_t n, uint64_t max_body, size_t max_trailer,
                        const size_t *cuts, size_t ncuts, ck_res_t *r)
{
    http_chunked_t c;
    http_chunked_init(&c, max_body, max_trailer);
    size_t pos = 0;
    r->data_len = 0;
    r->rc = 0;
    for (size_t k = 0; k <= ncuts && r->rc == 0; k++) {
        size_t end = k < ncuts ? cuts[k] : n;
        if (end < pos) continue;
        size_t used = 0;
        r->rc = http_chunked_parse(&c, (const char *)b + pos, end - pos, &used, ck_sink, r);
        CHECK(used <= end - pos);
        if (r->rc == 0) CHECK(used == end - pos);
        pos += used;
    }
    r->consumed = pos;
    CHECK(http_chunked_total(&c) == r->data_len);
    CHECK(r->data_len <= max_body);
    CHECK(r->rc == 1 || r->rc == 0 || r->rc == -400 || r->rc == -413 || r->rc == -431);
    if (r->rc != 0) { /* sticky, consumes nothing */
        size_t used = 1, len = r->data_len;
        CHECK(http_chunked_parse(&c, (const char *)b, n, &used, ck_sink, r) == r->rc);
        CHECK(used == 0 && r->data_len == len);
    }
}

static void same_ck(const ck_res_t *a, const ck_res_t *b)
{
    CHECK(a->rc == b->rc);
    if (a->rc != 1) return;
    CHECK(a->consumed == b->consumed);
    CHECK(a->data_len == b->data_len);
    CHECK(memcmp(a->data, b->data, a->data_len) == 0);
}

static void fuzz_chunked(uint8_t seed, const uint8_t *b, size_t n)
{
    ck_res_t ref, whole, other;
    uint8_t *room = malloc(4 * n + 4);
    CHECK(room != NULL);
    ref.data = room;
    whole.data = room + n + 1;
    other.data = room + 2 * n + 2;

    ref_chunked(b, n, &ref);
    dec_chunked(b, n, UINT64_MAX, INT32_MAX, NULL, 0, &whole);
    CHECK(whole.rc != -413 && whole.rc != -431); /* no limit that small */
    CHECK((whole.rc == -400) == (ref.rc == -1));
    if (ref.rc >= 0) same_ck(&ref, &whole);

    size_t cut = (size_t)seed * n / 256;
    dec_chunked(b, n, UINT64_MAX, INT32_MAX, &cut, 1, &other);
    same_ck(&whole, &other);

    size_t *cuts = malloc((n + 1) * sizeof *cuts);
    CHECK(cuts != NULL);
    for (size_t k = 0; k < n; k++)
        cuts[k] = k + 1;
    dec_chunked(b, n, UINT64_MAX, INT32_MAX, cuts, n, &other);
    same_ck(&whole, &other);
    free(cuts);

    /* small limits: the same outcome, or the limit's status */
    uint64_t max_body = (uint64_t)seed * 3;
    size_t max_trailer = 1 + seed % 64;
    dec_chunked(b, n, max_body, max_trailer, &cut, 1, &other);
    if (other.rc == -413 || other.rc == -431) {
        /* the limit was hit where the bytes so far are a valid, incomplete body
         * (-431 counts the byte that went over) */
        ck_res_t pre;
        pre.data = room + 3 * n + 3;
        dec_chunked(b, other.consumed - (other.rc == -431), UINT64_MAX, INT32_MAX, NULL, 0, &pre);
        CHECK(pre.rc == 0);
        if (other.rc == -413) CHECK(other.data_len <= max_body);
    } else {
        same_ck(&whole, &other);
    }
    if (whole.rc == 1 && whole.data_len <= max_body && other.rc != -431) same_ck(&whole, &other);
    free(room);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static run_t whole, other;
    const char *buf = (const char *)data;
    if (size == 0) return 0;

    /* whole, default limits */
    parse_whole(&whole, buf, size, 0, MAXH);
    if (whole.rc > 0) check_ok(&whole, buf, size, HTTP_DEFAULT_MAX_HEAD, MAXH);
    if (whole.rc < 0)
        CHECK(whole.rc == -400 || whole.rc == -414 || whole.rc == -431 || whole.rc == -501 ||
              whole.rc == -505);
    if (whole.rc == 0) CHECK(size < HTTP_DEFAULT_MAX_HEAD);

    /* split at a position from the first byte; the second call sees a moved copy */
    {
        size_t cut = (size_t)data[0] * size / 256;
        char *copy = malloc(size);
        CHECK(copy != NULL);
        memcpy(copy, data, size);
        http_parser_t p;
        http_parser_init(&p, 0);
        http_request_init(&other.req, other.hdrs, MAXH);
        int r1 = http_parse_request(&p, buf, cut, &other.req);
        other.rc = http_parse_request(&p, copy, size, &other.req);
        /* a result already given by the first call is repeated, req left alone */
        if (r1 != 0) CHECK(r1 == other.rc);
        check_same(&whole, buf, &other, r1 != 0 ? buf : copy);
        free(copy);
    }

    /* one byte more per call */
    {
        http_parser_t p;
        int rc = 0;
        http_parser_init(&p, 0);
        http_request_init(&other.req, other.hdrs, MAXH);
        for (size_t k = 1; k <= size; k++) {
            int r = http_parse_request(&p, buf, k, &other.req);
            if (rc == 0)
                rc = r;
            else
                CHECK(r == rc);
        }
        other.rc = rc;
        check_same(&whole, buf, &other, buf);
    }

    /* tighter limits: must agree with the default ones unless they are hit */
    {
        size_t limit = 16 + (size_t)data[0] * 2;
        size_t maxh = data[0] % 8;
        parse_whole(&other, buf, size, limit, maxh);
        if (other.rc > 0) check_ok(&other, buf, size, limit, maxh);
        if (other.rc != -431 && other.rc != -414) check_same(&whole, buf, &other, buf);
        if (whole.rc > 0 && (size_t)whole.rc <= limit && whole.req.num_headers <= maxh)
            check_same(&whole, buf, &other, buf);
    }

    /* pipelined requests after the first */
    {
        size_t pos = 0;
        for (int n = 0; n < 16 && pos < size; n++) {
            parse_whole(&other, buf + pos, size - pos, 0, MAXH);
            if (other.rc <= 0) break;
            check_ok(&other, buf + pos, size - pos, HTTP_DEFAULT_MAX_HEAD, MAXH);
            pos += (size_t)other.rc;
            if (other.req.flags & HTTP_F_CHUNKED) {
                http_chunked_t ck;
                size_t used;
                http_chunked_init(&ck, UINT64_MAX, 0);
                if (http_chunked_parse(&ck, buf + pos, size - pos, &used, NULL, NULL) != 1) break;
                pos += used;
                continue;
            }
            if (other.req.content_length > size - pos) break;
            pos += (size_t)other.req.content_length;
        }
    }

    /* the rest of the input as a chunked body */
    fuzz_chunked(data[0], data + 1, size - 1);

    /* helpers never fail on any status */
    {
        char line[80];
        int st = (int)(data[0] * 4);
        CHECK(http_reason(st) != NULL);
        size_t n = http_status_line(line, sizeof(line), st);
        CHECK(n == 0 || (n <= sizeof(line) && line[n - 1] == '\n'));
    }
    return 0;
}
