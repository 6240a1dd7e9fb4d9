/* SPDX-License-Identifier: MIT */
/* Fuzz target: the PROXY protocol header parser (src/filter/proxy_header.c),
 * which reads bytes from the network before any application code.
 *
 * The first input byte picks the accepted versions and a split size; the
 * rest is the stream. Invariants (abort() on violation):
 *   - the verdict, the cause and (on success) the header are the same fed
 *     whole, byte by byte and in pieces of the chosen size;
 *   - consumed never exceeds what was given; on success it equals the
 *     header length, which is at most PROXY_HEADER_MAX (107 for v1), and the
 *     header starts with a signature of an accepted version;
 *   - a done or failed parser answers the same again, consuming nothing;
 *   - the TLV block lies inside the header and passes proxy_tlv_check; every
 *     proxy_tlv_find answer (all 256 types) lies inside the block.
 * The input is copied into an exact-size heap buffer so ASan sees over-reads. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis.h"
#include "filter/proxy_header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static proxy_parser_t g_p[3];

static int run(proxy_parser_t *p, const uint8_t *in, size_t n, size_t step, unsigned versions,
               size_t *consumed, proxy_header_t *h, int *cause)
{
    proxy_parser_init(p, versions);
    size_t off = 0;
    int rc;
    do {
        size_t k = step && n - off > step ? step : n - off;
        size_t used = SIZE_MAX;
        rc = proxy_parser_feed(p, in + off, k, &used, h, cause);
        if (used > k) abort();
        if (rc == PROXY_NEED_MORE && used != k) abort();
        off += used;
    } while (rc == PROXY_NEED_MORE && off < n);
    *consumed = off;
    return rc;
}

static void check_done(const proxy_parser_t *p, const proxy_header_t *h, size_t consumed,
                       unsigned versions)
{
    if (h->length != consumed || h->length > PROXY_HEADER_MAX || h->length < 15) abort();
    if (h->version == 1) {
        if (!(versions & PC_PROXY_V1) || h->length > PROXY_V1_MAX) abort();
        if (memcmp(p->buf, "PROXY ", 6) != 0) abort();
        if (p->buf[h->length - 2] != '\r' || p->buf[h->length - 1] != '\n') abort();
        if (h->tlv) abort();
    } else if (h->version == 2) {
        if (!(versions & PC_PROXY_V2) || h->length < 16) abort();
        if ((p->buf[12] >> 4) != 2) abort();
    } else {
        abort();
    }
    if (!h->local) {
        if (h->src.family != 4 && h->src.family != 6) abort();
        if (h->dst.family != 4 && h->dst.family != 6) abort();
    }
    if (h->tlv) {
        if (h->tlv < p->buf || h->tlv + h->tlv_len > p->buf + h->length || !h->tlv_len) abort();
        if (proxy_tlv_check(h->tlv, h->tlv_len) != 0) abort();
        for (unsigned t = 0; t < 256; t++) {
            size_t vl = SIZE_MAX;
            const uint8_t *v = proxy_tlv_find(h->tlv, h->tlv_len, t, &vl);
            if (v && (v < h->tlv || vl > h->tlv_len || v + vl > h->tlv + h->tlv_len)) abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096) return 0;
    unsigned versions = data[0] & 3;
    if (!versions) versions = PC_PROXY_V1 | PC_PROXY_V2;
    size_t step = (size_t)(data[0] >> 2) + 2;
    size_t n = size - 1;
    uint8_t *in = malloc(n ? n : 1);
    if (!in) return 0;
    memcpy(in, data + 1, n);

    size_t used[3];
    proxy_header_t h[3];
    int cause[3] = {-1, -1, -1};
    int rc[3];
    rc[0] = run(&g_p[0], in, n, 0, versions, &used[0], &h[0], &cause[0]);
    rc[1] = run(&g_p[1], in, n, 1, versions, &used[1], &h[1], &cause[1]);
    rc[2] = run(&g_p[2], in, n, step, versions, &used[2], &h[2], &cause[2]);
    for (int i = 1; i < 3; i++) {
        if (rc[i] != rc[0]) abort();
        if (rc[0] == PROXY_FAILED && cause[i] != cause[0]) abort();
        if (rc[0] != PROXY_FAILED && used[i] != used[0]) abort();
        if (rc[0] == PROXY_DONE &&
            (h[i].length != h[0].length || h[i].local != h[0].local ||
             memcmp(&h[i].src, &h[0].src, sizeof h[0].src) != 0 ||
             memcmp(&h[i].dst, &h[0].dst, sizeof h[0].dst) != 0 || h[i].src_port != h[0].src_port ||
             h[i].dst_port != h[0].dst_port || h[i].tlv_len != h[0].tlv_len))
            abort();
    }
    if (rc[0] == PROXY_FAILED && (cause[0] < 0 || cause[0] >= PC_PROXY_ERR_COUNT)) abort();
    if (rc[0] == PROXY_DONE) check_done(&g_p[0], &h[0], used[0], versions);
    if (rc[0] == PROXY_NEED_MORE && used[0] != n) abort();
    /* decided parsers are sticky */
    if (rc[0] != PROXY_NEED_MORE && n) {
        size_t u = SIZE_MAX;
        proxy_header_t h2;
        int c2 = -1;
        if (proxy_parser_feed(&g_p[0], in, n, &u, &h2, &c2) != rc[0] || u != 0) abort();
        if (rc[0] == PROXY_FAILED && c2 != cause[0]) abort();
    }
    free(in);
    return 0;
}
