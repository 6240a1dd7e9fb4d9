/* SPDX-License-Identifier: MIT */
/* PROXY protocol header parser (see proxy_header.h). */
#include "filter/proxy_header.h"

#include <string.h>

static const uint8_t sig_v1[6] = {'P', 'R', 'O', 'X', 'Y', ' '};
static const uint8_t sig_v2[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

#define V2_FIXED 16 /* signature, version/command, family, length */

void proxy_parser_init(proxy_parser_t *p, unsigned versions)
{
    p->len = 0;
    p->want = 0;
    versions &= PC_PROXY_V1 | PC_PROXY_V2;
    p->versions = (uint8_t)(versions ? versions : PC_PROXY_V1 | PC_PROXY_V2);
    p->result = PROXY_NEED_MORE;
    p->err = 0;
}

/* ---- v1 ------------------------------------------------------------------- */

/* A decimal port: 1-5 digits, no leading zero (except "0"), <= 65535. */
static int parse_port(const uint8_t *s, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5 || (s[0] == '0' && n > 1)) return -1;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (v > 65535) return -1;
    *out = (uint16_t)v;
    return 0;
}

/* The next field of a v1 line: bytes up to a space (or the end). */
static size_t field_len(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n && s[i] != ' ')
        i++;
    return i;
}

/* line: the whole header without its CRLF, starting after "PROXY ". */
static int parse_v1(const uint8_t *s, size_t n, proxy_header_t *h)
{
    size_t f = field_len(s, n);
    int fam;
    if (f == 7 && memcmp(s, "UNKNOWN", 7) == 0) {
        /* the spec: ignore whatever follows, up to the CRLF */
        h->local = 1;
        return 0;
    }
    if (f == 4 && memcmp(s, "TCP4", 4) == 0)
        fam = 4;
    else if (f == 4 && memcmp(s, "TCP6", 4) == 0)
        fam = 6;
    else
        return PC_PROXY_ERR_V1_SYNTAX;
    s += f;
    n -= f;
    const uint8_t *fld[4];
    size_t fl[4];
    for (int i = 0; i < 4; i++) {
        if (n == 0 || s[0] != ' ') return PC_PROXY_ERR_V1_SYNTAX;
        s++;
        n--;
        fld[i] = s;
        fl[i] = field_len(s, n);
        if (fl[i] == 0) return PC_PROXY_ERR_V1_SYNTAX;
        s += fl[i];
        n -= fl[i];
    }
    if (n != 0) return PC_PROXY_ERR_V1_SYNTAX;
    addr_t *a[2] = {&h->src, &h->dst};
    for (int i = 0; i < 2; i++) {
        const char *why;
        memset(a[i], 0, sizeof *a[i]);
        if (fam == 4) {
            if (addr_parse_v4((const char *)fld[i], fl[i], a[i]->b, &why) != 0)
                return PC_PROXY_ERR_ADDRESS;
            a[i]->family = 4;
        } else {
            /* a dotted quad alone is no IPv6 address: require a colon */
            if (!memchr(fld[i], ':', fl[i]) ||
                addr_parse_v6((const char *)fld[i], fl[i], a[i]->b, &why) != 0)
                return PC_PROXY_ERR_ADDRESS;
            a[i]->family = 6;
            addr_normalize(a[i]);
        }
    }
    if (parse_port(fld[2], fl[2], &h->src_port) != 0 ||
        parse_port(fld[3], fl[3], &h->dst_port) != 0)
        return PC_PROXY_ERR_ADDRESS;
    return 0;
}

/* ---- v2 ------------------------------------------------------------------- */

int proxy_tlv_check(const uint8_t *tlv, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (len - i < 3) return -1;
        size_t vl = (size_t)tlv[i + 1] << 8 | tlv[i + 2];
        if (len - i - 3 < vl) return -1;
        i += 3 + vl;
    }
    return 0;
}

const uint8_t *proxy_tlv_find(const uint8_t *tlv, size_t len, unsigned type, size_t *vlen)
{
    if (!tlv) return NULL;
    if (type >= PC_PROXY_TLV_SSL_VERSION && type <= PC_PROXY_TLV_SSL_KEY_ALG) {
        size_t sl;
        const uint8_t *ssl = proxy_tlv_find(tlv, len, PC_PROXY_TLV_SSL, &sl);
        if (!ssl || sl < 5) return NULL;
        tlv = ssl + 5; /* after client (1 byte) and verify (4 bytes) */
        len = sl - 5;
    }
    size_t i = 0;
    while (i < len && len - i >= 3) {
        size_t vl = (size_t)tlv[i + 1] << 8 | tlv[i + 2];
        if (len - i - 3 < vl) return NULL; /* a malformed sub-block */
        if (tlv[i] == type) {
            *vlen = vl;
            return tlv + i + 3;
        }
        i += 3 + vl;
    }
    return NULL;
}

static int parse_v2(const uint8_t *b, size_t total, proxy_header_t *h)
{
    unsigned cmd = b[12] & 0x0F;
    unsigned af = b[13] >> 4, tp = b[13] & 0x0F;
    const uint8_t *blk = b + V2_FIXED;
    size_t blen = total - V2_FIXED;
    if (cmd == 0) { /* LOCAL: the block is discarded, family included */
        h->local = 1;
        return 0;
    }
    if (cmd != 1) return PC_PROXY_ERR_COMMAND;
    /* transports are UNSPEC, STREAM, DGRAM; other values must be rejected
     * (spec 2.2), whatever the family */
    if (tp > 2) return PC_PROXY_ERR_FAMILY;
    size_t need;
    switch (af) {
    case 0: /* UNSPEC: the addresses are to be ignored */
        h->local = 1;
        return 0;
    case 1:
        need = 12;
        break;
    case 2:
        need = 36;
        break;
    case 3: /* UNIX: no IP address to judge; DGRAM refused as for IP */
        if (tp == 2 || blen < 216) return PC_PROXY_ERR_FAMILY;
        h->local = 1;
        return 0;
    default:
        return PC_PROXY_ERR_FAMILY;
    }
    if (tp == 2) return PC_PROXY_ERR_FAMILY; /* DGRAM */
    if (blen < need) return PC_PROXY_ERR_FAMILY;
    memset(&h->src, 0, sizeof h->src);
    memset(&h->dst, 0, sizeof h->dst);
    if (af == 1) {
        h->src.family = h->dst.family = 4;
        memcpy(h->src.b, blk, 4);
        memcpy(h->dst.b, blk + 4, 4);
        h->src_port = (uint16_t)(blk[8] << 8 | blk[9]);
        h->dst_port = (uint16_t)(blk[10] << 8 | blk[11]);
    } else {
        h->src.family = h->dst.family = 6;
        memcpy(h->src.b, blk, 16);
        memcpy(h->dst.b, blk + 16, 16);
        h->src_port = (uint16_t)(blk[32] << 8 | blk[33]);
        h->dst_port = (uint16_t)(blk[34] << 8 | blk[35]);
        addr_normalize(&h->src);
        addr_normalize(&h->dst);
    }
    if (proxy_tlv_check(blk + need, blen - need) != 0) return PC_PROXY_ERR_TLV;
    if (blen > need) {
        h->tlv = blk + need;
        h->tlv_len = blen - need;
    }
    return 0;
}

/* ---- feeding -------------------------------------------------------------- */

static int fail(proxy_parser_t *p, int cause, int *cause_out)
{
    p->result = PROXY_FAILED;
    p->err = (uint8_t)cause;
    *cause_out = cause;
    return PROXY_FAILED;
}

static int finish(proxy_parser_t *p, proxy_header_t *out, int *cause)
{
    memset(out, 0, sizeof *out);
    out->length = p->len;
    int rc;
    if (p->buf[0] == 'P') {
        out->version = 1;
        /* between "PROXY " and the CRLF */
        rc = parse_v1(p->buf + sizeof sig_v1, (size_t)p->len - sizeof sig_v1 - 2, out);
    } else {
        out->version = 2;
        rc = parse_v2(p->buf, p->len, out);
    }
    if (rc != 0) return fail(p, rc, cause);
    p->result = PROXY_DONE;
    return PROXY_DONE;
}

/* Check the signature bytes from `from` to p->len; once the whole signature
 * is in, check the version is accepted. -1 (fine) or a cause (the first
 * cause, PC_PROXY_ERR_SIGNATURE, is 0). */
static int check_sig(proxy_parser_t *p, size_t from)
{
    int v1 = p->buf[0] == 'P';
    const uint8_t *sig = v1 ? sig_v1 : sig_v2;
    size_t sl = v1 ? sizeof sig_v1 : sizeof sig_v2;
    for (size_t i = from; i < p->len && i < sl; i++)
        if (p->buf[i] != sig[i]) return PC_PROXY_ERR_SIGNATURE;
    if (from < sl && p->len >= sl && !(p->versions & (v1 ? PC_PROXY_V1 : PC_PROXY_V2)))
        return PC_PROXY_ERR_VERSION;
    return -1;
}

int proxy_parser_feed(proxy_parser_t *p, const void *data, size_t n, size_t *consumed,
                      proxy_header_t *out, int *cause)
{
    const uint8_t *d = data;
    size_t used = 0;
    *consumed = 0;
    if (p->result == PROXY_FAILED) {
        *cause = p->err;
        return PROXY_FAILED;
    }
    if (p->result == PROXY_DONE) return finish(p, out, cause);
    while (used < n) {
        size_t from = p->len;
        uint8_t first = from ? p->buf[0] : d[used];
        if (first != 'P' && first != sig_v2[0]) {
            *consumed = used + 1;
            return fail(p, PC_PROXY_ERR_SIGNATURE, cause);
        }
        if (first == 'P') {
            /* v1: take bytes up to and including the first LF */
            /* the signature first, so that a mismatch is found at the same
             * byte however the input is split */
            size_t room = p->len < sizeof sig_v1 ? sizeof sig_v1 - p->len : PROXY_V1_MAX - p->len;
            size_t take = n - used < room ? n - used : room;
            const uint8_t *lf = memchr(d + used, '\n', take);
            if (lf) take = (size_t)(lf - (d + used)) + 1;
            memcpy(p->buf + p->len, d + used, take);
            p->len = (uint16_t)(p->len + take);
            used += take;
            *consumed = used;
            int rc = check_sig(p, from);
            if (rc >= 0) return fail(p, rc, cause);
            if (lf) {
                if (p->len < sizeof sig_v1 + 2 || p->buf[p->len - 2] != '\r')
                    return fail(p, PC_PROXY_ERR_V1_SYNTAX, cause);
                /* no stray CR or NUL inside the line */
                for (size_t i = sizeof sig_v1; i + 2 < p->len; i++)
                    if (p->buf[i] == '\r' || p->buf[i] == 0)
                        return fail(p, PC_PROXY_ERR_V1_SYNTAX, cause);
                return finish(p, out, cause);
            }
            if (p->len == PROXY_V1_MAX) return fail(p, PC_PROXY_ERR_TOO_LONG, cause);
            continue;
        }
        /* v2: the fixed part first, then exactly the announced length */
        size_t target = p->len < sizeof sig_v2 ? sizeof sig_v2
                        : p->len < 13          ? 13
                        : p->want              ? p->want
                                               : V2_FIXED;
        size_t take = target - p->len;
        if (take > n - used) take = n - used;
        memcpy(p->buf + p->len, d + used, take);
        p->len = (uint16_t)(p->len + take);
        used += take;
        *consumed = used;
        int rc = check_sig(p, from);
        if (rc >= 0) return fail(p, rc, cause);
        if (p->len >= 13 && from < 13 && (p->buf[12] >> 4) != 2)
            return fail(p, PC_PROXY_ERR_VERSION, cause);
        if (!p->want && p->len == V2_FIXED) {
            size_t total = V2_FIXED + ((size_t)p->buf[14] << 8 | p->buf[15]);
            if (total > PROXY_HEADER_MAX) return fail(p, PC_PROXY_ERR_TOO_LONG, cause);
            p->want = (uint16_t)total;
        }
        if (p->want && p->len == p->want) return finish(p, out, cause);
    }
    *consumed = used;
    return PROXY_NEED_MORE;
}

/* ---- building (outbound) ---------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* a's 16 bytes as IPv6 (IPv4 as ::ffff:a.b.c.d) */
static void as_v6(const addr_t *a, uint8_t out[16])
{
    if (a->family == 6) {
        memcpy(out, a->b, 16);
        return;
    }
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, a->b, 4);
}

size_t proxy_v2_build(const addr_t *src, uint16_t sport, const addr_t *dst, uint16_t dport,
                      uint8_t out[PROXY_V2_BUILT_MAX])
{
    if ((src->family != 4 && src->family != 6) || (dst->family != 4 && dst->family != 6)) return 0;
    memcpy(out, sig_v2, sizeof sig_v2);
    out[12] = 0x21; /* version 2, command PROXY */
    size_t n;
    if (src->family == 4 && dst->family == 4) {
        out[13] = 0x11; /* INET, STREAM */
        memcpy(out + 16, src->b, 4);
        memcpy(out + 20, dst->b, 4);
        put16(out + 24, sport);
        put16(out + 26, dport);
        n = 12;
    } else {
        out[13] = 0x21; /* INET6, STREAM */
        as_v6(src, out + 16);
        as_v6(dst, out + 32);
        put16(out + 48, sport);
        put16(out + 50, dport);
        n = 36;
    }
    put16(out + 14, (uint16_t)n);
    return 16 + n;
}
