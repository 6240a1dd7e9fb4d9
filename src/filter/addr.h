/* SPDX-License-Identifier: MIT */
/* Addresses as the filter sees them: a family-tagged 16-byte value, parsed by
 * our own strict text parser (no inet_pton, no DNS: identical on every
 * platform) and converted from socket addresses in one small file
 * (addr_sockaddr.c), so the rest of src/filter never includes socket headers.
 *
 * Invariant kept by every producer: an IPv4-mapped IPv6 peer (::ffff:a.b.c.d)
 * is represented as IPv4, because the kernel hands dual-stack listeners IPv4
 * clients in that form and they must meet the IPv4 rules and limits. */
#ifndef PC_FILTER_ADDR_H
#define PC_FILTER_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct sockaddr;

typedef struct addr_s {
    uint8_t family; /* 4 or 6 */
    uint8_t b[16];  /* network byte order; IPv4 uses b[0..3], the rest is zero */
} addr_t;

/* Longest text addr_format produces ("ffff:...:255.255.255.255") plus NUL. */
#define PC_ADDR_STRLEN 46

/* Parse a dotted quad: exactly four decimal parts 0..255, no leading zeros
 * (010 would be octal to inet_aton), nothing else. s need not be
 * NUL-terminated. Returns 0, or PC_EINVAL with *why set to a static reason. */
int addr_parse_v4(const char *s, size_t n, uint8_t out[4], const char **why);

/* Parse an IPv6 address in the RFC 4291 text forms: eight groups of 1-4 hex
 * digits, one "::" standing for one or more zero groups, an optional dotted
 * quad in the last 32 bits. No zone index ("%eth0"). Returns 0 or PC_EINVAL
 * with *why set. */
int addr_parse_v6(const char *s, size_t n, uint8_t out[16], const char **why);

/* Parse either family (IPv6 if the text contains ':'). The result is not
 * normalised: "::ffff:1.2.3.4" stays IPv6 (see addr_normalize). */
int addr_parse(const char *s, size_t n, addr_t *out, const char **why);

/* Format canonically: dotted quad, or RFC 5952 IPv6 (lowercase, longest run
 * of two or more zero groups as "::", IPv4-mapped as ::ffff:a.b.c.d). Writes
 * at most size bytes including the NUL; returns the length of the full text
 * (like snprintf). */
size_t addr_format(const addr_t *a, char *buf, size_t size);

/* Is a (IPv6) in ::ffff:0:0/96? */
int addr_is_v4mapped(const addr_t *a);

/* Turn an IPv4-mapped IPv6 address into the IPv4 one; others unchanged. */
void addr_normalize(addr_t *a);

/* Maximum prefix length of the family (32 or 128). */
static inline unsigned addr_bits(const addr_t *a)
{
    return a->family == 4 ? 32u : 128u;
}

/* Clear every bit after the first len bits. */
void addr_mask(addr_t *a, unsigned len);

/* Does a have any bit set after the first len bits? */
int addr_host_bits_set(const addr_t *a, unsigned len);

static inline uint32_t addr_v4_u32(const addr_t *a)
{
    return (uint32_t)a->b[0] << 24 | (uint32_t)a->b[1] << 16 | (uint32_t)a->b[2] << 8 | a->b[3];
}

static inline uint64_t addr_load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static inline void addr_store_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static inline void addr_set_v4(addr_t *a, uint32_t v)
{
    memset(a, 0, sizeof *a);
    a->family = 4;
    a->b[0] = (uint8_t)(v >> 24);
    a->b[1] = (uint8_t)(v >> 16);
    a->b[2] = (uint8_t)(v >> 8);
    a->b[3] = (uint8_t)v;
}

static inline void addr_set_v6(addr_t *a, uint64_t hi, uint64_t lo)
{
    a->family = 6;
    addr_store_be64(a->b, hi);
    addr_store_be64(a->b + 8, lo);
}

/* Convert a socket address (AF_INET or AF_INET6) to a addr_t, IPv4-mapped
 * IPv6 becoming IPv4. Returns 0 or PC_EINVAL (NULL or another family).
 * Implemented in addr_sockaddr.c, the only file of src/filter that includes
 * socket headers. */
int addr_from_sockaddr(const struct sockaddr *sa, addr_t *out);

/* The reverse: a's address and port (host order) as a sockaddr_in or
 * sockaddr_in6 (IPv4-mapped IPv6 stays AF_INET6) in out, whose cap bytes
 * are zeroed first. Returns the length written, or PC_EINVAL if cap is too
 * small for a's family. Implemented in addr_sockaddr.c. */
int addr_to_sockaddr(const addr_t *a, uint16_t port, struct sockaddr *out, size_t cap);

#endif
