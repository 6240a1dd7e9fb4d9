/* SPDX-License-Identifier: MIT */
/* PROXY protocol headers (HAProxy's doc/proxy-protocol.txt, v1 text and v2
 * binary), parsed incrementally: pure computation, no syscall, no
 * allocation. Bytes are fed as they arrive (one at a time works); the parser
 * copies into its own fixed buffer only the bytes that belong to the header,
 * so it never consumes a byte past the header's end and never reads past
 * what it was given.
 *
 * What is accepted:
 *   v1  "PROXY TCP4 <src> <dst> <sport> <dport>\r\n" (and TCP6), single
 *       spaces, strict addresses (no leading zeros in IPv4 parts), ports
 *       0..65535 without leading zeros, at most 107 bytes with the CRLF;
 *       "PROXY UNKNOWN\r\n" or "PROXY UNKNOWN <anything>\r\n" (the word
 *       whole: "UNKNOWNX" is a syntax error) means: use the socket's
 *       addresses.
 *   v2  the 12-byte signature, version 2, command LOCAL (use the socket's
 *       addresses; the rest of the block is skipped) or PROXY; families
 *       INET and INET6 over STREAM (or UNSPEC transport); UNSPEC and UNIX
 *       families are taken like LOCAL (no IP address to judge); DGRAM is
 *       refused (this is a TCP server), and so is a transport above 2.
 *       The TLVs after the addresses must tile the rest of the block
 *       exactly. The whole header must fit in PROXY_HEADER_MAX bytes.
 *
 * Threads: a parser belongs to one connection (its strand); the functions
 * keep no global state and may run on any thread. */
#ifndef PC_FILTER_PROXY_HEADER_H
#define PC_FILTER_PROXY_HEADER_H

#include <stddef.h>
#include <stdint.h>

#include "portcullis.h"
#include "filter/addr.h"

/* Longest header taken (v2 with TLVs); longer ones fail with
 * PC_PROXY_ERR_TOO_LONG. v1 lines are limited to 107 bytes by the spec. */
#define PROXY_HEADER_MAX 1024u
#define PROXY_V1_MAX     107u

/* proxy_parser_feed results */
enum { PROXY_FAILED = -1, PROXY_NEED_MORE = 0, PROXY_DONE = 1 };

/* A parsed header. Pointers refer into the parser's buffer. */
typedef struct proxy_header_s {
    uint8_t version; /* 1 or 2 */
    uint8_t local;   /* 1: no client address (v2 LOCAL, v1 UNKNOWN, v2 UNSPEC/UNIX
                      * family): the connection keeps the socket's addresses */
    addr_t src, dst; /* family 4 or 6 when !local (IPv4-mapped IPv6 as IPv4) */
    uint16_t src_port, dst_port;
    const uint8_t *tlv; /* v2 TLV block (NULL when none) */
    size_t tlv_len;
    size_t length; /* bytes of the header */
} proxy_header_t;

typedef struct proxy_parser_s {
    uint16_t len;     /* bytes collected in buf */
    uint16_t want;    /* v2: whole header length once known, else 0 */
    uint8_t versions; /* PC_PROXY_V1 | PC_PROXY_V2 accepted */
    int8_t result;    /* PROXY_NEED_MORE until it is decided */
    uint8_t err;      /* pc_proxy_error_t once failed */
    uint8_t buf[PROXY_HEADER_MAX];
} proxy_parser_t;

/* Reset p to expect a header of the versions in the mask (PC_PROXY_V1,
 * PC_PROXY_V2; 0 is taken as both). */
void proxy_parser_init(proxy_parser_t *p, unsigned versions);

/* Feed n bytes (n may be 0). *consumed receives how many of them belong to
 * the header (all of them on PROXY_NEED_MORE; on PROXY_DONE the bytes after
 * it, data + *consumed onwards, are the application's). Returns
 * PROXY_NEED_MORE, PROXY_DONE with *out filled (valid while p is unchanged),
 * or PROXY_FAILED with *cause (pc_proxy_error_t) set. A parser that is done
 * or failed keeps answering the same (consuming nothing). */
int proxy_parser_feed(proxy_parser_t *p, const void *data, size_t n, size_t *consumed,
                      proxy_header_t *out, int *cause);

/* Longest header proxy_v2_build writes (INET6: 16 + 36 bytes). */
#define PROXY_V2_BUILT_MAX 52u

/* Write a v2 header for a connection going out: command PROXY, transport
 * STREAM, naming src:sport -> dst:dport (ports in host order), no TLVs.
 * Both addresses IPv4: family INET (28 bytes); otherwise INET6 (52 bytes),
 * an IPv4 address written IPv4-mapped. Returns the length, or 0 when an
 * address is of no family (not 4 or 6). Pure; any thread. */
size_t proxy_v2_build(const addr_t *src, uint16_t sport, const addr_t *dst, uint16_t dport,
                      uint8_t out[PROXY_V2_BUILT_MAX]);

/* Check that a TLV block is a sequence of whole TLVs. Returns 0 or -1. */
int proxy_tlv_check(const uint8_t *tlv, size_t len);

/* The first TLV of this type in a (checked) block: its value and length in
 * *vlen, or NULL. Types 0x21-0x25 are looked up among the sub-TLVs of the
 * PROXY_TLV_SSL value (after its 1-byte client and 4-byte verify fields),
 * bounds-checked (PC_PROXY_TLV_* in portcullis.h). */
const uint8_t *proxy_tlv_find(const uint8_t *tlv, size_t len, unsigned type, size_t *vlen);

#endif
