/* SPDX-License-Identifier: MIT */
/* PROXY protocol header parser: v1 and v2, IPv4, IPv6, LOCAL, UNKNOWN, TLVs,
 * every malformed shape, each fed whole, byte by byte and in two halves, and
 * never consuming a byte past the header. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "portcullis.h"
#include "filter/proxy_header.h"

#define TAIL "GET / HTTP/1.1\r\n"

typedef struct result_s {
    int rc;
    int cause;
    size_t consumed; /* of the input, in total */
    proxy_header_t h;
} result_t;

/* Feed in pieces of `step` bytes (0: all at once) until decided. */
static result_t feed(const uint8_t *in, size_t n, size_t step, unsigned versions, proxy_parser_t *p)
{
    result_t r;
    memset(&r, 0, sizeof r);
    proxy_parser_init(p, versions);
    size_t off = 0;
    r.rc = PROXY_NEED_MORE;
    do {
        size_t k = step ? (n - off < step ? n - off : step) : n - off;
        size_t used = 12345;
        r.cause = -1;
        r.rc = proxy_parser_feed(p, in + off, k, &used, &r.h, &r.cause);
        assert_true(used <= k);
        if (r.rc == PROXY_NEED_MORE) assert_int_equal(used, k);
        off += used;
    } while (r.rc == PROXY_NEED_MORE && off < n);
    r.consumed = off;
    return r;
}

/* The same verdict whole, byte by byte and split in the middle. */
static result_t parse_all_ways(const void *in, size_t n, unsigned versions)
{
    static proxy_parser_t p1, p2, p3;
    result_t a = feed(in, n, 0, versions, &p1);
    result_t b = feed(in, n, 1, versions, &p2);
    result_t c = feed(in, n, n / 2 ? n / 2 : 1, versions, &p3);
    assert_int_equal(a.rc, b.rc);
    assert_int_equal(a.rc, c.rc);
    if (a.rc != PROXY_FAILED) { /* a failure may be seen a few bytes later whole */
        assert_int_equal(a.consumed, b.consumed);
        assert_int_equal(a.consumed, c.consumed);
    }
    if (a.rc == PROXY_FAILED) {
        assert_true(b.consumed <= a.consumed);
        assert_int_equal(a.cause, b.cause);
        assert_int_equal(a.cause, c.cause);
    }
    if (a.rc == PROXY_DONE) {
        assert_int_equal(a.h.length, a.consumed);
        assert_int_equal(b.h.length, a.consumed);
        assert_int_equal(a.h.local, b.h.local);
        assert_memory_equal(&a.h.src, &b.h.src, sizeof a.h.src);
        assert_int_equal(a.h.src_port, c.h.src_port);
        assert_int_equal(a.h.tlv_len, b.h.tlv_len);
    }
    return a;
}

static void expect_fail(const void *in, size_t n, unsigned versions, int cause)
{
    result_t r = parse_all_ways(in, n, versions);
    if (r.rc != PROXY_FAILED)
        fail_msg("expected failure %s, got rc %d (%.*s)", pc_proxy_error_str(cause), r.rc, (int)n,
                 (const char *)in);
    if (r.cause != cause)
        fail_msg("expected cause '%s', got '%s'", pc_proxy_error_str(cause),
                 pc_proxy_error_str(r.cause));
}

static void expect_fail_s(const char *s, int cause)
{
    expect_fail(s, strlen(s), 0, cause);
}

static void expect_need_more(const void *in, size_t n)
{
    result_t r = parse_all_ways(in, n, 0);
    assert_int_equal(r.rc, PROXY_NEED_MORE);
    assert_int_equal(r.consumed, n);
}

static void check_addr(const addr_t *a, int family, const char *text)
{
    char buf[PC_ADDR_STRLEN];
    assert_int_equal(a->family, family);
    addr_format(a, buf, sizeof buf);
    assert_string_equal(buf, text);
}

/* ---- v1 ------------------------------------------------------------------- */

static void v1_tcp4(void **state)
{
    (void)state;
    const char *hdr = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n";
    char in[256];
    snprintf(in, sizeof in, "%s%s", hdr, TAIL);
    result_t r = parse_all_ways(in, strlen(in), 0);
    assert_int_equal(r.rc, PROXY_DONE);
    assert_int_equal(r.consumed, strlen(hdr)); /* the request is left alone */
    assert_int_equal(r.h.version, 1);
    assert_int_equal(r.h.local, 0);
    check_addr(&r.h.src, 4, "192.0.2.7");
    check_addr(&r.h.dst, 4, "198.51.100.1");
    assert_int_equal(r.h.src_port, 56324);
    assert_int_equal(r.h.dst_port, 443);
    assert_null(r.h.tlv);
    /* extreme ports */
    const char *p2 = "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n";
    r = parse_all_ways(p2, strlen(p2), 0);
    assert_int_equal(r.rc, PROXY_DONE);
    assert_int_equal(r.h.src_port, 0);
    assert_int_equal(r.h.dst_port, 65535);
}

static void v1_tcp6(void **state)
{
    (void)state;
    const char *hdr = "PROXY TCP6 2001:db8::7 2001:db8::1 4000 80\r\n";
    result_t r = parse_all_ways(hdr, strlen(hdr), 0);
    assert_int_equal(r.rc, PROXY_DONE);
    check_addr(&r.h.src, 6, "2001:db8::7");
    check_addr(&r.h.dst, 6, "2001:db8::1");
    assert_int_equal(r.h.src_port, 4000);
    /* an IPv4-mapped client is an IPv4 client (the rules' invariant) */
    const char *m = "PROXY TCP6 ::ffff:192.0.2.9 ::1 1 2\r\n";
    r = parse_all_ways(m, strlen(m), 0);
    assert_int_equal(r.rc, PROXY_DONE);
    check_addr(&r.h.src, 4, "192.0.2.9");
    check_addr(&r.h.dst, 6, "::1");
}

static void v1_unknown(void **state)
{
    (void)state;
    const char *a = "PROXY UNKNOWN\r\n";
    result_t r = parse_all_ways(a, strlen(a), 0);
    assert_int_equal(r.rc, PROXY_DONE);
    assert_int_equal(r.h.local, 1);
    assert_int_equal(r.consumed, 15);
    /* anything after UNKNOWN up to the CRLF is ignored */
    const char *b = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\nxyz";
    r = parse_all_ways(b, strlen(b), 0);
    assert_int_equal(r.rc, PROXY_DONE);
    assert_int_equal(r.h.local, 1);
    assert_int_equal(r.consumed, strlen(b) - 3);
}

static void v1_longest(void **state)
{
    (void)state;
    /* the spec's worst case is 107 bytes with the CRLF */
    const char *w = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(w), 104);
    result_t r = parse_all_ways(w, strlen(w), 0);
    assert_int_equal(r.rc, PROXY_DONE);
    char u[128];
    memset(u, 'x', sizeof u);
    memcpy(u, "PROXY UNKNOWN ", 14);
    memcpy(u + 105, "\r\n", 2); /* exactly 107 */
    r = parse_all_ways(u, 107, 0);
    assert_int_equal(r.rc, PROXY_DONE);
    memcpy(u + 105, "x\r\n", 3); /* 108 */
    expect_fail(u, 108, 0, PC_PROXY_ERR_TOO_LONG);
    /* and a line with no LF at all stops at 107 bytes, not later */
    memset(u + 14, 'x', sizeof u - 14);
    result_t t = parse_all_ways(u, sizeof u, 0);
    assert_int_equal(t.rc, PROXY_FAILED);
    assert_int_equal(t.cause, PC_PROXY_ERR_TOO_LONG);
    assert_int_equal(t.consumed, 107);
}

static void v1_malformed(void **state)
{
    (void)state;
    expect_fail_s("GET / HTTP/1.1\r\n", PC_PROXY_ERR_SIGNATURE);
    expect_fail_s("PROXX TCP4 1.2.3.4 1.2.3.5 1 2\r\n", PC_PROXY_ERR_SIGNATURE);
    expect_fail_s("proxy TCP4 1.2.3.4 1.2.3.5 1 2\r\n", PC_PROXY_ERR_SIGNATURE);
    expect_fail_s("PROXY\r\n", PC_PROXY_ERR_SIGNATURE);
    expect_fail_s("PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n", PC_PROXY_ERR_V1_SYNTAX);
    /* UNKNOWN is a whole field, as in HAProxy: a longer word is no protocol */
    expect_fail_s("PROXY UNKNOWNX\r\n", PC_PROXY_ERR_V1_SYNTAX);
    expect_fail_s("PROXY UNKNOWN6 ::1 ::1 1 2\r\n", PC_PROXY_ERR_V1_SYNTAX);
    expect_fail_s("PROXY TCP4 1.2.3.4 1.2.3.5 1 2\n", PC_PROXY_ERR_V1_SYNTAX);
    expect_fail_s("PROXY TCP4  1.2.3.4 1.2.3.5 1 2\r\n", PC_PROXY_ERR_V1_SYNTAX);
    expect_fail_s("PROXY TCP4 1.2.3.4 1.2.3.5 1 2 \r\n", PC_PROXY_ERR_V1_SYNTAX);
    /* an empty field is a syntax error, not an address or a port to parse */
    expect_fail_s("PROXY TCP4  1.2.3.5 1 2\r\n", PC_PROXY_ERR_V1_SYNTAX);
    expect_fail_s("PROXY TCP4 1.2.3.4 1.2.3.5 1 \r\n", PC_PROXY_ERR_V1_SYNTAX);
    expect_fail_s("PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n", PC_PROXY_ERR_V1_SYNTAX);
    expect_fail_s("PROXY TCP4 1.2.3.4 1.2.3.5 1 2 3\r\n", PC_PROXY_ERR_V1_SYNTAX);
    expect_fail_s("PROXY TCP4 1.2.3.4\r1.2.3.5 1 2\r\n", PC_PROXY_ERR_V1_SYNTAX);
    expect_fail_s("PROXY \r\n", PC_PROXY_ERR_V1_SYNTAX);
    expect_fail_s("PROXY TCP4 1.2.3.4 1.2.3.5 1 2\r\r\n", PC_PROXY_ERR_V1_SYNTAX);
    expect_fail_s("PROXY TCP4 01.2.3.4 1.2.3.5 1 2\r\n", PC_PROXY_ERR_ADDRESS);
    expect_fail_s("PROXY TCP4 1.2.3.256 1.2.3.5 1 2\r\n", PC_PROXY_ERR_ADDRESS);
    expect_fail_s("PROXY TCP4 1.2.3 1.2.3.5 1 2\r\n", PC_PROXY_ERR_ADDRESS);
    expect_fail_s("PROXY TCP4 ::1 1.2.3.5 1 2\r\n", PC_PROXY_ERR_ADDRESS);
    expect_fail_s("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", PC_PROXY_ERR_ADDRESS);
    expect_fail_s("PROXY TCP6 ::1%eth0 ::1 1 2\r\n", PC_PROXY_ERR_ADDRESS);
    expect_fail_s("PROXY TCP4 1.2.3.4 1.2.3.5 65536 2\r\n", PC_PROXY_ERR_ADDRESS);
    expect_fail_s("PROXY TCP4 1.2.3.4 1.2.3.5 080 2\r\n", PC_PROXY_ERR_ADDRESS);
    expect_fail_s("PROXY TCP4 1.2.3.4 1.2.3.5 -1 2\r\n", PC_PROXY_ERR_ADDRESS);
    expect_fail_s("PROXY TCP4 1.2.3.4 1.2.3.5 1 0x2\r\n", PC_PROXY_ERR_ADDRESS);
    /* a leading zero in a two-digit port; ':' (the byte after '9') is no digit */
    expect_fail_s("PROXY TCP4 1.2.3.4 1.2.3.5 05 2\r\n", PC_PROXY_ERR_ADDRESS);
    expect_fail_s("PROXY TCP4 1.2.3.4 1.2.3.5 1 2:\r\n", PC_PROXY_ERR_ADDRESS);
    expect_fail_s("PROXY TCP4 host.example 1.2.3.5 1 2\r\n", PC_PROXY_ERR_ADDRESS);
    /* a NUL inside the line */
    const char nul[] = "PROXY TCP4 1.2.3.4\0001.2.3.5 1 2\r\n";
    expect_fail(nul, sizeof nul - 1, 0, PC_PROXY_ERR_V1_SYNTAX);
    /* ... found by the line check, not by the field it lands in (the one
     * above also breaks the field count) */
    const char nul_port[] = "PROXY TCP4 1.2.3.4 1.2.3.5 1 2\000\r\n";
    expect_fail(nul_port, sizeof nul_port - 1, 0, PC_PROXY_ERR_V1_SYNTAX);
    /* incomplete: need more, every byte taken */
    expect_need_more("PROXY TCP4 1.2.3.4 1.2.3.5 1 2\r", 31);
    expect_need_more("PRO", 3);
}

/* ---- v2 ------------------------------------------------------------------- */

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Build a v2 header: ver_cmd, fam, then body; returns its length. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t blen)
{
    memcpy(out, sig, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(blen >> 8);
    out[15] = (uint8_t)blen;
    if (blen) memcpy(out + 16, body, blen);
    return 16 + blen;
}

static const uint8_t body4[12] = {192, 0, 2, 7, 198, 51, 100, 1, 0xDC, 0x04, 0x01, 0xBB};

static void v2_ipv4(void **state)
{
    (void)state;
    uint8_t b[128];
    size_t n = v2(b, 0x21, 0x11, body4, sizeof body4);
    memcpy(b + n, TAIL, strlen(TAIL));
    result_t r = parse_all_ways(b, n + strlen(TAIL), 0);
    assert_int_equal(r.rc, PROXY_DONE);
    assert_int_equal(r.consumed, 28);
    assert_int_equal(r.h.version, 2);
    assert_int_equal(r.h.local, 0);
    check_addr(&r.h.src, 4, "192.0.2.7");
    check_addr(&r.h.dst, 4, "198.51.100.1");
    assert_int_equal(r.h.src_port, 56324);
    assert_int_equal(r.h.dst_port, 443);
    assert_null(r.h.tlv);
    /* transport UNSPEC is taken too */
    n = v2(b, 0x21, 0x10, body4, sizeof body4);
    assert_int_equal(parse_all_ways(b, n, 0).rc, PROXY_DONE);
}

static void v2_ipv6(void **state)
{
    (void)state;
    uint8_t body[36] = {0x20, 0x01, 0x0d, 0xb8};
    body[15] = 7;
    body[16] = 0x20;
    body[17] = 0x01;
    body[18] = 0x0d;
    body[19] = 0xb8;
    body[31] = 1;
    body[32] = 0x12;
    body[33] = 0x34;
    body[34] = 0;
    body[35] = 80;
    uint8_t b[128];
    size_t n = v2(b, 0x21, 0x21, body, sizeof body);
    result_t r = parse_all_ways(b, n, 0);
    assert_int_equal(r.rc, PROXY_DONE);
    check_addr(&r.h.src, 6, "2001:db8::7");
    check_addr(&r.h.dst, 6, "2001:db8::1");
    assert_int_equal(r.h.src_port, 0x1234);
    assert_int_equal(r.h.dst_port, 80);
    /* mapped source -> IPv4 */
    uint8_t m[36] = {0};
    m[10] = m[11] = 0xff;
    m[12] = 10;
    m[15] = 9;
    n = v2(b, 0x21, 0x21, m, sizeof m);
    r = parse_all_ways(b, n, 0);
    assert_int_equal(r.rc, PROXY_DONE);
    check_addr(&r.h.src, 4, "10.0.0.9");
}

static void v2_local_unspec_unix(void **state)
{
    (void)state;
    uint8_t b[512];
    /* LOCAL with no block (HAProxy's health checks) */
    size_t n = v2(b, 0x20, 0x00, NULL, 0);
    memcpy(b + n, "x", 1);
    result_t r = parse_all_ways(b, n + 1, 0);
    assert_int_equal(r.rc, PROXY_DONE);
    assert_int_equal(r.consumed, 16);
    assert_int_equal(r.h.local, 1);
    /* LOCAL ignores the block, whatever it holds (even a bad family) */
    uint8_t junk[7] = {1, 2, 3, 4, 5, 6, 7};
    n = v2(b, 0x20, 0xF7, junk, sizeof junk);
    r = parse_all_ways(b, n, 0);
    assert_int_equal(r.rc, PROXY_DONE);
    assert_int_equal(r.h.local, 1);
    assert_int_equal(r.consumed, 23);
    /* PROXY with family UNSPEC: addresses ignored */
    n = v2(b, 0x21, 0x00, junk, sizeof junk);
    r = parse_all_ways(b, n, 0);
    assert_int_equal(r.rc, PROXY_DONE);
    assert_int_equal(r.h.local, 1);
    /* UNIX: no IP to judge, taken as local; the block must hold the paths */
    uint8_t ux[216] = {'/'};
    n = v2(b, 0x21, 0x31, ux, sizeof ux);
    r = parse_all_ways(b, n, 0);
    assert_int_equal(r.rc, PROXY_DONE);
    assert_int_equal(r.h.local, 1);
    n = v2(b, 0x21, 0x31, ux, 215);
    expect_fail(b, n, 0, PC_PROXY_ERR_FAMILY);
    /* UNIX DGRAM is refused as IP DGRAM is; a transport past DGRAM is
     * invalid for every family (spec 2.2), not only for INET/INET6 */
    n = v2(b, 0x21, 0x32, ux, sizeof ux);
    expect_fail(b, n, 0, PC_PROXY_ERR_FAMILY);
    n = v2(b, 0x21, 0x3F, ux, sizeof ux);
    expect_fail(b, n, 0, PC_PROXY_ERR_FAMILY);
    n = v2(b, 0x21, 0x0F, junk, sizeof junk);
    expect_fail(b, n, 0, PC_PROXY_ERR_FAMILY);
    n = v2(b, 0x21, 0x03, junk, sizeof junk);
    expect_fail(b, n, 0, PC_PROXY_ERR_FAMILY);
}

static size_t put_tlv(uint8_t *p, uint8_t type, const void *v, size_t len)
{
    p[0] = type;
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)len;
    memcpy(p + 3, v, len);
    return 3 + len;
}

static void v2_tlvs(void **state)
{
    (void)state;
    uint8_t body[512];
    memcpy(body, body4, 12);
    size_t k = 12;
    k += put_tlv(body + k, PC_PROXY_TLV_ALPN, "h2", 2);
    k += put_tlv(body + k, PC_PROXY_TLV_AUTHORITY, "example.com", 11);
    k += put_tlv(body + k, PC_PROXY_TLV_NOOP, "", 0);
    uint8_t ssl[64] = {0x01, 0, 0, 0, 0}; /* client: SSL; verify: 0 */
    size_t sk = 5;
    sk += put_tlv(ssl + sk, PC_PROXY_TLV_SSL_VERSION, "TLSv1.3", 7);
    sk += put_tlv(ssl + sk, PC_PROXY_TLV_SSL_CN, "alice", 5);
    sk += put_tlv(ssl + sk, PC_PROXY_TLV_SSL_KEY_ALG, "RSA2048", 7); /* the last sub-type */
    k += put_tlv(body + k, PC_PROXY_TLV_SSL, ssl, sk);
    k += put_tlv(body + k, PC_PROXY_TLV_UNIQUE_ID, "\x01\x02\x03", 3);
    uint8_t b[600];
    size_t n = v2(b, 0x21, 0x11, body, k);
    result_t r = parse_all_ways(b, n, 0);
    assert_int_equal(r.rc, PROXY_DONE);
    assert_int_equal(r.h.tlv_len, k - 12);
    size_t vl = 99;
    const uint8_t *v = proxy_tlv_find(r.h.tlv, r.h.tlv_len, PC_PROXY_TLV_AUTHORITY, &vl);
    assert_non_null(v);
    assert_int_equal(vl, 11);
    assert_memory_equal(v, "example.com", 11);
    v = proxy_tlv_find(r.h.tlv, r.h.tlv_len, PC_PROXY_TLV_ALPN, &vl);
    assert_non_null(v);
    assert_memory_equal(v, "h2", 2);
    v = proxy_tlv_find(r.h.tlv, r.h.tlv_len, PC_PROXY_TLV_NOOP, &vl);
    assert_non_null(v);
    assert_int_equal(vl, 0);
    v = proxy_tlv_find(r.h.tlv, r.h.tlv_len, PC_PROXY_TLV_SSL_CN, &vl);
    assert_non_null(v);
    assert_int_equal(vl, 5);
    assert_memory_equal(v, "alice", 5);
    v = proxy_tlv_find(r.h.tlv, r.h.tlv_len, PC_PROXY_TLV_SSL_VERSION, &vl);
    assert_non_null(v);
    assert_memory_equal(v, "TLSv1.3", 7);
    v = proxy_tlv_find(r.h.tlv, r.h.tlv_len, PC_PROXY_TLV_SSL_KEY_ALG, &vl);
    assert_non_null(v);
    assert_int_equal(vl, 7);
    assert_memory_equal(v, "RSA2048", 7);
    v = proxy_tlv_find(r.h.tlv, r.h.tlv_len, PC_PROXY_TLV_UNIQUE_ID, &vl);
    assert_non_null(v);
    assert_int_equal(vl, 3);
    /* a TLV of 300 bytes (its length's high byte counts) and one after it */
    static uint8_t big[300];
    uint8_t tb[320];
    memset(big, 'a', sizeof big);
    memcpy(tb, body4, 12);
    size_t kb = 12 + put_tlv(tb + 12, PC_PROXY_TLV_AUTHORITY, big, sizeof big);
    kb += put_tlv(tb + kb, PC_PROXY_TLV_ALPN, "h2", 2);
    n = v2(b, 0x21, 0x11, tb, kb);
    r = parse_all_ways(b, n, 0);
    assert_int_equal(r.rc, PROXY_DONE);
    assert_int_equal(r.h.tlv_len, 3 + 300 + 5);
    v = proxy_tlv_find(r.h.tlv, r.h.tlv_len, PC_PROXY_TLV_AUTHORITY, &vl);
    assert_non_null(v);
    assert_int_equal(vl, 300);
    v = proxy_tlv_find(r.h.tlv, r.h.tlv_len, PC_PROXY_TLV_ALPN, &vl);
    assert_non_null(v);
    assert_memory_equal(v, "h2", 2);
    /* an empty TLV (3 bytes) that ends the block is found */
    uint8_t te[16];
    size_t ke = put_tlv(te, PC_PROXY_TLV_ALPN, "h2", 2);
    ke += put_tlv(te + ke, PC_PROXY_TLV_NOOP, "", 0);
    assert_int_equal(proxy_tlv_check(te, ke), 0);
    vl = 99;
    v = proxy_tlv_find(te, ke, PC_PROXY_TLV_NOOP, &vl);
    assert_ptr_equal(v, te + ke);
    assert_int_equal(vl, 0);
    assert_null(proxy_tlv_find(r.h.tlv, r.h.tlv_len, PC_PROXY_TLV_SSL_CIPHER, &vl));
    assert_null(proxy_tlv_find(r.h.tlv, r.h.tlv_len, PC_PROXY_TLV_NETNS, &vl));
    /* a malformed SSL sub-block answers NULL, never reads past it */
    uint8_t bad_ssl[16] = {0x01, 0, 0, 0, 0, PC_PROXY_TLV_SSL_CN, 0, 50, 'a'};
    uint8_t t2[32];
    size_t k2 = put_tlv(t2, PC_PROXY_TLV_SSL, bad_ssl, 9);
    assert_int_equal(proxy_tlv_check(t2, k2), 0);
    assert_null(proxy_tlv_find(t2, k2, PC_PROXY_TLV_SSL_CN, &vl));
    uint8_t short_ssl[5] = {1, 0, 0, 0, 0};
    k2 = put_tlv(t2, PC_PROXY_TLV_SSL, short_ssl, 3);
    assert_null(proxy_tlv_find(t2, k2, PC_PROXY_TLV_SSL_CN, &vl));
    /* 4 bytes: one short of client and verify, with a CN sub-TLV lying just
     * past the given length: not read */
    memset(t2, 0, sizeof t2);
    k2 = put_tlv(t2, PC_PROXY_TLV_SSL, short_ssl, 4);
    t2[k2 + 1] = PC_PROXY_TLV_SSL_CN;
    t2[k2 + 3] = 1;
    t2[k2 + 4] = 'x';
    assert_int_equal(proxy_tlv_check(t2, k2), 0);
    assert_null(proxy_tlv_find(t2, k2, PC_PROXY_TLV_SSL_CN, &vl));
    /* 5 bytes: an SSL TLV with no sub-TLV */
    k2 = put_tlv(t2, PC_PROXY_TLV_SSL, short_ssl, 5);
    assert_null(proxy_tlv_find(t2, k2, PC_PROXY_TLV_SSL_CN, &vl));
}

static void v2_malformed(void **state)
{
    (void)state;
    uint8_t b[2048];
    size_t n = v2(b, 0x21, 0x11, body4, sizeof body4);
    b[5] ^= 1; /* signature */
    expect_fail(b, n, 0, PC_PROXY_ERR_SIGNATURE);
    /* the signature is judged byte by byte: an early mismatch fails at once */
    result_t r = parse_all_ways("\r\nX", 3, 0);
    assert_int_equal(r.rc, PROXY_FAILED);
    assert_int_equal(r.cause, PC_PROXY_ERR_SIGNATURE);
    assert_int_equal(r.consumed, 3);
    n = v2(b, 0x11, 0x11, body4, sizeof body4);
    expect_fail(b, n, 0, PC_PROXY_ERR_VERSION);
    n = v2(b, 0x31, 0x11, body4, sizeof body4);
    expect_fail(b, n, 0, PC_PROXY_ERR_VERSION);
    n = v2(b, 0x22, 0x11, body4, sizeof body4);
    expect_fail(b, n, 0, PC_PROXY_ERR_COMMAND);
    n = v2(b, 0x2F, 0x11, body4, sizeof body4);
    expect_fail(b, n, 0, PC_PROXY_ERR_COMMAND);
    n = v2(b, 0x21, 0x41, body4, sizeof body4);
    expect_fail(b, n, 0, PC_PROXY_ERR_FAMILY);
    n = v2(b, 0x21, 0x12, body4, sizeof body4); /* DGRAM */
    expect_fail(b, n, 0, PC_PROXY_ERR_FAMILY);
    n = v2(b, 0x21, 0x13, body4, sizeof body4);
    expect_fail(b, n, 0, PC_PROXY_ERR_FAMILY);
    n = v2(b, 0x21, 0x11, body4, 11); /* block shorter than the addresses */
    expect_fail(b, n, 0, PC_PROXY_ERR_FAMILY);
    uint8_t body6[36] = {0};
    n = v2(b, 0x21, 0x21, body6, 35);
    expect_fail(b, n, 0, PC_PROXY_ERR_FAMILY);
    n = v2(b, 0x21, 0x21, body4, 12); /* INET6 with an INET block */
    expect_fail(b, n, 0, PC_PROXY_ERR_FAMILY);
    /* TLVs that do not tile the block */
    uint8_t body[64];
    memcpy(body, body4, 12);
    body[12] = PC_PROXY_TLV_ALPN;
    body[13] = 0;
    body[14] = 5;
    memcpy(body + 15, "h2", 2);
    n = v2(b, 0x21, 0x11, body, 17); /* value cut short */
    expect_fail(b, n, 0, PC_PROXY_ERR_TLV);
    n = v2(b, 0x21, 0x11, body, 14); /* TLV head cut short */
    expect_fail(b, n, 0, PC_PROXY_ERR_TLV);
    n = v2(b, 0x21, 0x11, body, 13);
    expect_fail(b, n, 0, PC_PROXY_ERR_TLV);
    /* longer than the buffer: refused as soon as the length is known */
    memcpy(b, sig, 12);
    b[12] = 0x21;
    b[13] = 0x11;
    b[14] = 0x04;
    b[15] = 0x00; /* 1024 + 16 */
    r = parse_all_ways(b, 16, 0);
    assert_int_equal(r.rc, PROXY_FAILED);
    assert_int_equal(r.cause, PC_PROXY_ERR_TOO_LONG);
    assert_int_equal(r.consumed, 16);
    b[14] = 0x03;
    b[15] = 0xF0; /* exactly PROXY_HEADER_MAX: taken (a LOCAL one) */
    b[12] = 0x20;
    memset(b + 16, 0, 0x3F0);
    r = parse_all_ways(b, 16 + 0x3F0, 0);
    assert_int_equal(r.rc, PROXY_DONE);
    assert_int_equal(r.consumed, PROXY_HEADER_MAX);
    /* incomplete */
    n = v2(b, 0x21, 0x11, body4, sizeof body4);
    expect_need_more(b, n - 1);
    expect_need_more(b, 15);
    expect_need_more(b, 1);
}

static void versions_mask(void **state)
{
    (void)state;
    const char *h1 = "PROXY TCP4 1.2.3.4 1.2.3.5 1 2\r\n";
    uint8_t b[64];
    size_t n = v2(b, 0x21, 0x11, body4, sizeof body4);
    assert_int_equal(parse_all_ways(h1, strlen(h1), PC_PROXY_V1).rc, PROXY_DONE);
    expect_fail(h1, strlen(h1), PC_PROXY_V2, PC_PROXY_ERR_VERSION);
    assert_int_equal(parse_all_ways(b, n, PC_PROXY_V2).rc, PROXY_DONE);
    expect_fail(b, n, PC_PROXY_V1, PC_PROXY_ERR_VERSION);
    /* refused as soon as the signature is whole */
    result_t r = parse_all_ways(b, 13, PC_PROXY_V1);
    assert_int_equal(r.rc, PROXY_FAILED);
    assert_int_equal(r.consumed, 12);
    r = parse_all_ways(h1, strlen(h1), PC_PROXY_V2);
    assert_int_equal(r.consumed, 6);
}

static void sticky_result(void **state)
{
    (void)state;
    proxy_parser_t p;
    proxy_header_t h;
    int cause = -1;
    size_t used;
    proxy_parser_init(&p, 0);
    assert_int_equal(proxy_parser_feed(&p, "X", 1, &used, &h, &cause), PROXY_FAILED);
    assert_int_equal(used, 1);
    assert_int_equal(proxy_parser_feed(&p, "PROXY", 5, &used, &h, &cause), PROXY_FAILED);
    assert_int_equal(used, 0);
    assert_int_equal(cause, PC_PROXY_ERR_SIGNATURE);
    proxy_parser_init(&p, 0);
    const char *h1 = "PROXY UNKNOWN\r\n";
    assert_int_equal(proxy_parser_feed(&p, h1, strlen(h1), &used, &h, &cause), PROXY_DONE);
    assert_int_equal(proxy_parser_feed(&p, "more", 4, &used, &h, &cause), PROXY_DONE);
    assert_int_equal(used, 0);
    assert_int_equal(h.local, 1);
    /* zero bytes: nothing happens */
    proxy_parser_init(&p, 0);
    assert_int_equal(proxy_parser_feed(&p, "", 0, &used, &h, &cause), PROXY_NEED_MORE);
    assert_int_equal(used, 0);
    assert_string_equal(pc_proxy_error_str(PC_PROXY_ERR_TLV), "malformed v2 TLV");
    assert_string_equal(pc_proxy_error_str(PC_PROXY_ERR_COUNT), "unknown");
}

/* What proxy_v2_build writes parses back to the same addresses and ports,
 * for IPv4, IPv6 and a mix (written as INET6 with the IPv4 one mapped, which
 * the parser gives back as IPv4); nothing past the header is consumed. */
static void v2_build_round_trip(void **state)
{
    (void)state;
    static const struct {
        const char *src, *dst;
        uint16_t sport, dport;
        size_t len;
    } cases[] = {
        {"203.0.113.7", "192.0.2.1", 40000, 443, 28},
        {"2001:db8::7", "2001:db8::1", 1, 65535, 52},
        {"203.0.113.7", "2001:db8::1", 0, 8443, 52},
        {"2001:db8::7", "192.0.2.1", 65535, 80, 52},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        addr_t s, d;
        assert_int_equal(addr_parse(cases[i].src, strlen(cases[i].src), &s, NULL), 0);
        assert_int_equal(addr_parse(cases[i].dst, strlen(cases[i].dst), &d, NULL), 0);
        uint8_t buf[PROXY_V2_BUILT_MAX + sizeof TAIL];
        size_t n = proxy_v2_build(&s, cases[i].sport, &d, cases[i].dport, buf);
        assert_int_equal(n, cases[i].len);
        memcpy(buf + n, TAIL, sizeof TAIL - 1);
        result_t r = parse_all_ways(buf, n + sizeof TAIL - 1, PC_PROXY_V2);
        assert_int_equal(r.rc, PROXY_DONE);
        assert_int_equal(r.consumed, n);
        assert_int_equal(r.h.version, 2);
        assert_int_equal(r.h.local, 0);
        assert_int_equal(r.h.src.family, s.family);
        assert_memory_equal(r.h.src.b, s.b, 16);
        assert_int_equal(r.h.dst.family, d.family);
        assert_memory_equal(r.h.dst.b, d.b, 16);
        assert_int_equal(r.h.src_port, cases[i].sport);
        assert_int_equal(r.h.dst_port, cases[i].dport);
        assert_int_equal(r.h.tlv_len, 0);
    }
    addr_t none;
    memset(&none, 0, sizeof none);
    uint8_t buf[PROXY_V2_BUILT_MAX];
    addr_t ok;
    addr_set_v4(&ok, 0x7f000001);
    assert_int_equal(proxy_v2_build(&none, 1, &ok, 2, buf), 0);
    assert_int_equal(proxy_v2_build(&ok, 1, &none, 2, buf), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v1_tcp4),
        cmocka_unit_test(v1_tcp6),
        cmocka_unit_test(v1_unknown),
        cmocka_unit_test(v1_longest),
        cmocka_unit_test(v1_malformed),
        cmocka_unit_test(v2_ipv4),
        cmocka_unit_test(v2_ipv6),
        cmocka_unit_test(v2_local_unspec_unix),
        cmocka_unit_test(v2_tlvs),
        cmocka_unit_test(v2_malformed),
        cmocka_unit_test(versions_mask),
        cmocka_unit_test(sticky_result),
        cmocka_unit_test(v2_build_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
