/* libFuzzer target for samples/http/http_parser.
 *
 * Each input is parsed as a request head several ways, and any disagreement
 * aborts:
 *   - whole, in one call;
 *   - split in two calls at a position derived from the first byte, with the
 *     second call on a moved copy of the buffer (slices must follow it);
 *   - one more byte per call;
 *   - whole again with a small head limit and header count derived from the
 *     first byte, which must agree with the default limits unless it is 431.
 * Successful results must be self-consistent (head length within the input
 * and the limit, every slice inside the head, flags coherent), and the bytes
 * after a head are parsed as further pipelined requests.
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
    CHECK(!(q->flags & HTTP_F_TRANSFER_ENC));
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static run_t whole, other;
    const char *buf = (const char *)data;
    if (size == 0) return 0;

    /* whole, default limits */
    parse_whole(&whole, buf, size, 0, MAXH);
    if (whole.rc > 0) check_ok(&whole, buf, size, HTTP_DEFAULT_MAX_HEAD, MAXH);
    if (whole.rc < 0)
        CHECK(whole.rc == -400 || whole.rc == -431 || whole.rc == -501 || whole.rc == -505);
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
        if (other.rc != -431) check_same(&whole, buf, &other, buf);
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
            if (other.req.content_length > size - pos - (size_t)other.rc) break;
            pos += (size_t)other.rc + (size_t)other.req.content_length;
        }
    }

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
