/* SPDX-License-Identifier: MIT */
/* Strict address text parsing and canonical formatting (see addr.h). */
#include "filter/addr.h"

#include <stdio.h>

#include "portcullis.h"

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int fail(const char **why, const char *reason)
{
    if (why) *why = reason;
    return PC_EINVAL;
}

int addr_parse_v4(const char *s, size_t n, uint8_t out[4], const char **why)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n) return fail(why, "needs four dotted parts");
            if (s[i] != '.') return fail(why, "unexpected character");
            i++;
        }
        if (i >= n || !is_digit(s[i])) return fail(why, "empty or non-decimal part");
        size_t start = i;
        unsigned v = 0;
        while (i < n && is_digit(s[i])) {
            if (i - start == 3) return fail(why, "part has more than three digits");
            v = v * 10 + (unsigned)(s[i] - '0');
            i++;
        }
        if (i - start > 1 && s[start] == '0')
            return fail(why, "leading zero in a part (ambiguous: octal or decimal?)");
        if (v > 255) return fail(why, "part greater than 255");
        out[part] = (uint8_t)v;
    }
    if (i != n) return fail(why, s[i] == '.' ? "more than four parts" : "unexpected character");
    return 0;
}

int addr_parse_v6(const char *s, size_t n, uint8_t out[16], const char **why)
{
    uint16_t g[8];
    int ng = 0;  /* groups parsed */
    int dc = -1; /* group index where "::" stands */
    size_t i = 0;

    if (n == 0) return fail(why, "empty address");
    if (s[0] == ':') {
        if (n < 2 || s[1] != ':') return fail(why, "starts with a single ':'");
        dc = 0;
        i = 2;
    }
    while (i < n) {
        /* A dotted quad may end the address: look ahead for '.' before ':'. */
        size_t j = i;
        while (j < n && s[j] != ':' && s[j] != '.')
            j++;
        if (j < n && s[j] == '.') {
            if (ng > 6) return fail(why, "too many groups before the embedded IPv4 address");
            uint8_t q[4];
            const char *w;
            if (addr_parse_v4(s + i, n - i, q, &w) != 0)
                return fail(why, "bad embedded IPv4 address (it must end the address)");
            g[ng++] = (uint16_t)(q[0] << 8 | q[1]);
            g[ng++] = (uint16_t)(q[2] << 8 | q[3]);
            i = n;
            break;
        }
        size_t start = i;
        unsigned v = 0;
        int h;
        while (i < n && (h = hex_value(s[i])) >= 0) {
            if (i - start == 4) return fail(why, "group has more than four hex digits");
            v = v << 4 | (unsigned)h;
            i++;
        }
        if (i == start) {
            if (s[i] == '%') return fail(why, "zone index not allowed");
            return fail(why, s[i] == ':' ? "empty group (':::' or misplaced '::')"
                                         : "unexpected character");
        }
        if (ng == 8) return fail(why, "more than eight groups");
        g[ng++] = (uint16_t)v;
        if (i == n) break;
        if (s[i] == '%') return fail(why, "zone index not allowed");
        if (s[i] != ':') return fail(why, "unexpected character");
        i++;
        if (i < n && s[i] == ':') {
            if (dc >= 0) return fail(why, "more than one '::'");
            dc = ng;
            i++;
        } else if (i == n) {
            return fail(why, "ends with a single ':'");
        }
    }
    if (dc < 0 && ng != 8) return fail(why, "needs eight groups or a '::'");
    if (dc >= 0 && ng > 7) return fail(why, "'::' must stand for at least one zero group");

    uint16_t full[8] = {0};
    if (dc < 0) {
        memcpy(full, g, sizeof full);
    } else {
        int tail = ng - dc;
        for (int k = 0; k < dc; k++)
            full[k] = g[k];
        for (int k = 0; k < tail; k++)
            full[8 - tail + k] = g[dc + k];
    }
    for (int k = 0; k < 8; k++) {
        out[2 * k] = (uint8_t)(full[k] >> 8);
        out[2 * k + 1] = (uint8_t)full[k];
    }
    return 0;
}

int addr_parse(const char *s, size_t n, addr_t *out, const char **why)
{
    memset(out, 0, sizeof *out);
    if (memchr(s, ':', n)) {
        out->family = 6;
        return addr_parse_v6(s, n, out->b, why);
    }
    out->family = 4;
    return addr_parse_v4(s, n, out->b, why);
}

int addr_is_v4mapped(const addr_t *a)
{
    static const uint8_t pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return a->family == 6 && memcmp(a->b, pfx, sizeof pfx) == 0;
}

void addr_normalize(addr_t *a)
{
    if (!addr_is_v4mapped(a)) return;
    uint8_t v4[4];
    memcpy(v4, a->b + 12, 4);
    memset(a->b, 0, sizeof a->b);
    memcpy(a->b, v4, 4);
    a->family = 4;
}

void addr_mask(addr_t *a, unsigned len)
{
    unsigned bits = addr_bits(a);
    if (len >= bits) return;
    unsigned byte = len / 8, rem = len % 8;
    if (rem) a->b[byte++] &= (uint8_t)(0xff00u >> rem);
    memset(a->b + byte, 0, 16 - byte);
}

int addr_host_bits_set(const addr_t *a, unsigned len)
{
    addr_t m = *a;
    addr_mask(&m, len);
    return memcmp(m.b, a->b, sizeof a->b) != 0;
}

size_t addr_format(const addr_t *a, char *buf, size_t size)
{
    char tmp[PC_ADDR_STRLEN];
    int len;
    if (a->family == 4) {
        len = snprintf(tmp, sizeof tmp, "%u.%u.%u.%u", a->b[0], a->b[1], a->b[2], a->b[3]);
    } else {
        unsigned g[8];
        for (int k = 0; k < 8; k++)
            g[k] = (unsigned)a->b[2 * k] << 8 | a->b[2 * k + 1];
        /* Longest run of >= 2 zero groups, the first one on a tie (RFC 5952). */
        int best = -1, bestlen = 1;
        for (int k = 0; k < 8;) {
            if (g[k] != 0) {
                k++;
                continue;
            }
            int e = k;
            while (e < 8 && g[e] == 0)
                e++;
            if (e - k > bestlen) {
                best = k;
                bestlen = e - k;
            }
            k = e;
        }
        int ngroups = 8;
        if (addr_is_v4mapped(a)) ngroups = 6; /* ::ffff:a.b.c.d */
        len = 0;
        for (int k = 0; k < ngroups;) {
            if (k == best) {
                len += snprintf(tmp + len, sizeof tmp - (size_t)len, "::");
                k += bestlen;
                continue;
            }
            if (k > 0 && k != best + bestlen)
                len += snprintf(tmp + len, sizeof tmp - (size_t)len, ":");
            len += snprintf(tmp + len, sizeof tmp - (size_t)len, "%x", g[k]);
            k++;
        }
        if (ngroups == 6)
            len += snprintf(tmp + len, sizeof tmp - (size_t)len, ":%u.%u.%u.%u", a->b[12], a->b[13],
                            a->b[14], a->b[15]);
    }
    if (size > 0) {
        size_t c = (size_t)len < size ? (size_t)len : size - 1;
        memcpy(buf, tmp, c);
        buf[c] = '\0';
    }
    return (size_t)len;
}
