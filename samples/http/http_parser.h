/* SPDX-License-Identifier: MIT */
/*
 * http_parser — a strict, incremental HTTP/1.0 and HTTP/1.1 request-head
 * parser for pc-http. Standalone: C11 and the C library only, no allocation.
 *
 * The caller keeps the bytes of the current request in its own buffer and
 * calls http_parse_request with everything buffered so far each time more
 * arrives. The parser remembers how far it has validated, so every byte is
 * examined once however the head is split (total work O(n)). When the head is
 * complete it fills an http_request_t whose slices point into the caller's
 * buffer, and returns the head length: the body, or the next pipelined
 * request, starts right after it.
 *
 * Every rejection is an HTTP status the server answers before closing: 400,
 * 414, 431, 501 or 505 (see docs/http-parser.md for the grammar and the
 * mapping).
 *
 * A request with Transfer-Encoding: chunked (HTTP_F_CHUNKED) carries a
 * chunked body after its head: http_chunked_parse walks it incrementally
 * (RFC 9112 section 7), with the same no-allocation, examine-once design.
 *
 * THREADING: none needed and none provided. A parser and its request belong to
 * one connection and are used by one thread at a time. The module has no
 * global mutable state, so different parsers may be used concurrently.
 */
#ifndef PC_HTTP_PARSER_H
#define PC_HTTP_PARSER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Default limit on the head (request line + header lines + final CRLF). */
#define HTTP_DEFAULT_MAX_HEAD 8192u

/* Largest Content-Length accepted (INT64_MAX); anything larger is a 400. */
#define HTTP_MAX_CONTENT_LENGTH UINT64_C(0x7fffffffffffffff)

/* Method. Methods are case-sensitive: "get" is a valid token but UNKNOWN. */
typedef enum http_method_e {
    HTTP_METHOD_UNKNOWN = 0, /* any other token; its text is in method_str */
    HTTP_GET,
    HTTP_HEAD,
    HTTP_POST,
    HTTP_PUT,
    HTTP_DELETE,
    HTTP_OPTIONS
} http_method_t;

/* Form of the request-target (RFC 9112 section 3.2). */
typedef enum http_target_form_e {
    HTTP_TARGET_ORIGIN = 0, /* "/path?query" */
    HTTP_TARGET_ABSOLUTE,   /* "http://host/path" or "https://..." (any case) */
    HTTP_TARGET_ASTERISK,   /* "*": OPTIONS, or an UNKNOWN method */
    HTTP_TARGET_AUTHORITY   /* "host:port": only with an UNKNOWN method (CONNECT) */
} http_target_form_t;

/* Request flags (http_request_t.flags). */
#define HTTP_F_KEEP_ALIVE      0x001u /* connection persists after this request */
#define HTTP_F_CONTENT_LENGTH  0x002u /* a Content-Length header was present */
#define HTTP_F_HOST            0x004u /* a Host header was present */
#define HTTP_F_CONN_CLOSE      0x008u /* Connection lists "close" */
#define HTTP_F_CONN_KEEP_ALIVE 0x010u /* Connection lists "keep-alive" */
#define HTTP_F_CONN_UPGRADE    0x020u /* Connection lists "upgrade" */
#define HTTP_F_UPGRADE         0x040u /* an Upgrade header was present */
#define HTTP_F_EXPECT          0x080u /* an Expect header was present (HTTP/1.1 only) */
#define HTTP_F_EXPECT_CONTINUE 0x100u /* Expect is exactly "100-continue" (HTTP/1.1 only) */
#define HTTP_F_TRANSFER_ENC    0x200u /* a Transfer-Encoding header was present */
#define HTTP_F_CHUNKED         0x400u /* the body is chunked (Transfer-Encoding: chunked) */

/*
 * One header line. name and value point into the caller's buffer and are not
 * NUL-terminated; value has leading and trailing SP/HTAB removed and may be
 * empty. name_off and value_off are the same positions as offsets from the
 * start of the buffer passed to http_parse_request, so the caller may move its
 * buffer afterwards and recompute the pointers.
 */
typedef struct http_header_s {
    const char *name;
    const char *value;
    uint32_t name_off;
    uint32_t name_len;
    uint32_t value_off;
    uint32_t value_len;
} http_header_t;

/*
 * The parsed head. Set headers and max_headers (http_request_init) before the
 * first call; the parser fills everything else. Pass the same request object
 * to every call for one request: header lines are stored as they complete.
 */
typedef struct http_request_s {
    http_method_t method;
    const char *method_str; /* the method token as sent (also for known methods) */
    size_t method_len;
    const char *target; /* the request-target as sent */
    size_t target_len;
    const char *path; /* origin-form part: target without scheme://authority; may be */
    size_t path_len;  /* empty or start with '?' for absolute-form ("/" is meant) */
    const char *host; /* Host header value, NULL if absent (may be empty) */
    size_t host_len;
    http_target_form_t target_form;
    int version_minor;       /* 0 or 1: HTTP/1.0 or HTTP/1.1 */
    uint64_t content_length; /* 0 when HTTP_F_CONTENT_LENGTH is not set */
    unsigned flags;          /* HTTP_F_* */
    http_header_t *headers;  /* caller-provided array ... */
    size_t max_headers;      /* ... of this many entries; one more header is a 431 */
    size_t num_headers;      /* entries filled */
} http_request_t;

/*
 * Private state of one parser; fields are internal. 64 bytes, no allocation:
 * embed it in the connection. Offsets fit 32 bits because the head limit does.
 */
typedef struct http_parser_s {
    uint64_t content_length;
    uint32_t max_head;   /* limit on the head length, <= INT32_MAX */
    uint32_t off;        /* bytes [0, off) of the buffer are validated */
    uint32_t mark;       /* start of the token being scanned */
    uint32_t name_off;   /* current header name */
    uint32_t name_len;   /* (value starts after its OWS) */
    uint32_t method_off; /* request line slices, as offsets */
    uint32_t method_len;
    uint32_t target_off;
    uint32_t target_len;
    uint32_t path_skip; /* path = target without its first path_skip bytes */
    uint32_t host_idx;  /* index of the Host header */
    uint16_t flags;     /* HTTP_F_* collected so far */
    uint16_t status;    /* 0, or the status of a sticky error */
    unsigned char state;
    unsigned char lit; /* position inside "HTTP/" */
    unsigned char major;
    unsigned char minor;
    unsigned char method;
    unsigned char form;
} http_parser_t;

/*
 * Prepares a parser for the first request of a connection. max_head_bytes
 * limits the head (request line included); 0 means HTTP_DEFAULT_MAX_HEAD and
 * values above INT32_MAX are clamped. Cannot fail.
 */
void http_parser_init(http_parser_t *p, size_t max_head_bytes);

/*
 * Forgets the request just parsed (or the error) and keeps the limit, for the
 * next request on the connection: call it, then pass the buffer starting right
 * after the previous request's head and body. Cannot fail.
 */
void http_parser_reset(http_parser_t *p);

/*
 * Points req at the caller's header array (max_headers entries, may be 0) and
 * clears the rest. Cannot fail.
 */
void http_request_init(http_request_t *req, http_header_t *headers, size_t max_headers);

/*
 * Parses the head of the request at the start of buf, of which len bytes are
 * buffered so far. Call again with the same buf contents extended by the bytes
 * that arrived (the buffer may move, the bytes already passed must not change
 * and len must not shrink); only the new bytes are examined.
 *
 * Returns:
 *   > 0  the head is complete; the value is its length (leading empty lines,
 *        request line, header lines and the final CRLF), and req is filled.
 *        Calling again returns the same value and leaves req alone.
 *   0    more bytes are needed (len is below the limit and no error yet).
 *   < 0  minus the HTTP status to answer before closing the connection:
 *        -400 malformed (including Transfer-Encoding with Content-Length, in
 *        an HTTP/1.0 request, or with chunked not the final coding or listed
 *        twice), -414 request-target running past the head limit, -431
 *        head longer than the limit or more headers than req->max_headers,
 *        -501 a transfer coding other than chunked, -505
 *        HTTP version other than 1.0 and 1.1. The error is sticky until
 *        http_parser_reset. req then holds what was parsed before the error
 *        (best effort, for logging).
 *
 * A head that is not complete within max_head_bytes is a -431 (a -414 while
 * still in the request-target) as soon as that many bytes are buffered,
 * whatever len is. A valid head with an UNKNOWN method
 * is returned as success: the server answers 501 (and may keep the
 * connection, since the framing is known).
 *
 * The body: with HTTP_F_CHUNKED it is chunked (content_length is 0; see
 * http_chunked_parse); otherwise it is content_length bytes (0 without
 * HTTP_F_CONTENT_LENGTH).
 */
int http_parse_request(http_parser_t *p, const char *buf, size_t len, http_request_t *req);

/* ---- chunked bodies (RFC 9112 section 7.1) --------------------------------- */

/* Longest chunk-size line (size, extensions, CRLF) accepted; longer is a 400. */
#define HTTP_CHUNK_LINE_MAX 4096u

/*
 * State of one chunked body; fields are internal. 48 bytes, no allocation:
 * keep it on the stack while the body is in one buffer, in the connection's
 * state while it spans reads.
 */
typedef struct http_chunked_s {
    uint64_t left;     /* data bytes left in the current chunk / the size being read */
    uint64_t total;    /* data bytes so far */
    uint64_t max_body; /* limit on total */
    uint32_t line;     /* bytes of the current chunk-size line */
    uint32_t trailer;  /* bytes of the trailer section so far */
    uint32_t extra;    /* extension bytes and extra leading zeros so far */
    uint32_t max_trailer;
    uint16_t status; /* 0, or the status of a sticky error */
    unsigned char state;
} http_chunked_t;

/* Receives the data bytes of a chunked body, in order, as they are found
 * (a chunk split across calls comes in several pieces). */
typedef void (*http_chunk_data_fn)(void *user, const char *data, size_t len);

/*
 * Prepares c for the body of one request. max_body limits the data bytes
 * (the sum of the chunk sizes; UINT64_MAX for no limit); max_trailer limits
 * the trailer section (field lines and the final CRLF) and, counted apart,
 * the size-line bytes that carry no size over the whole body (chunk
 * extensions with the blanks and ';' before them, leading zeros after a
 * size's first digit); 0 means HTTP_DEFAULT_MAX_HEAD. Cannot fail.
 */
void http_chunked_init(http_chunked_t *c, uint64_t max_body, size_t max_trailer);

/*
 * Walks the next len bytes of a chunked body at buf. Unlike
 * http_parse_request it takes only the bytes not passed before (nothing needs
 * to be kept: the state machine remembers where it is) and reports in
 * *consumed how many it used. Chunk extensions and trailer fields are
 * checked for framing (CRLF line ends, no control bytes, a trailer line is
 * "name: value") and skipped; data bytes go to on_data (may be NULL: the
 * body is discarded).
 *
 * Returns:
 *   1    the body is complete: *consumed bytes end with its final CRLF; the
 *        next request starts at buf + *consumed. Calling again returns 1 and
 *        consumes nothing.
 *   0    all len bytes used (*consumed == len), the body goes on.
 *   < 0  minus the HTTP status to answer before closing the connection:
 *        -400 malformed framing (a size that is not hex, overflows
 *        HTTP_MAX_CONTENT_LENGTH or whose line exceeds HTTP_CHUNK_LINE_MAX,
 *        bytes other than ';' after it, a missing CRLF, control bytes in an
 *        extension or trailer, a bad trailer line), -413 the data would
 *        exceed max_body (found from the chunk-size line, before the data),
 *        -431 trailer section, or extensions and extra leading zeros, over
 *        max_trailer (*consumed counts the byte that went over). Sticky;
 *        *consumed says where it was found.
 *
 * One thread at a time per http_chunked_t; no global state.
 */
int http_chunked_parse(http_chunked_t *c, const char *buf, size_t len, size_t *consumed,
                       http_chunk_data_fn on_data, void *user);

/* Data bytes of the body seen so far. Cannot fail. */
uint64_t http_chunked_total(const http_chunked_t *c);

/*
 * Reason phrase for an HTTP status ("Bad Request" for 400); a negative status
 * from http_parse_request is accepted as is (-400 gives "Bad Request").
 * Unknown codes give "Unknown". Returns a static string; thread-safe.
 */
const char *http_reason(int status);

/*
 * Writes the status line "HTTP/1.1 <status> <reason>\r\n" to out (no NUL is
 * added) and returns its length, or 0 if status is outside 100..999 (negative
 * values are negated first) or the line does not fit in cap bytes. Thread-safe.
 */
size_t http_status_line(char *out, size_t cap, int status);

/*
 * Name of a method ("GET"), or "UNKNOWN". Returns a static string; thread-safe.
 */
const char *http_method_name(http_method_t m);

#ifdef __cplusplus
}
#endif

#endif
