/* SPDX-License-Identifier: MIT */
/* Incremental HTTP/1.x response parser for pc-stress: framing only.
 *
 * Feed it the bytes of one connection as they arrive, split anywhere; it
 * reports each complete response (status, and whether the connection ends
 * after it) through a callback. No allocation, no copies on the fast path (a
 * line that arrives in one piece is parsed where it is; only a line split
 * across calls is kept, up to HTTP_RESP_LINE_KEEP bytes), no I/O.
 *
 * What it understands:
 *   - a status line "HTTP/1.D NNN ..." (D a digit) with NNN in 100..599;
 *   - Content-Length (digits with optional blanks around; the last one wins),
 *     Connection (a comma-separated list of options, any case, blanks
 *     around them; "close" and "keep-alive" are the ones that matter; every
 *     Connection line counts), and Transfer-Encoding (any value: an error,
 *     chunked bodies are not supported);
 *   - whether the connection ends after a response (RFC 9112 section 9.3):
 *     it does with a "close" option (any version, whatever else is listed),
 *     in HTTP/1.0 unless the response has a "keep-alive" option, and after
 *     a body that runs to the end of the connection; HTTP/1.1 (and 1.2..1.9)
 *     responses are persistent otherwise;
 *   - 1xx interim responses (skipped, not reported), 204 and 304 (no body
 *     whatever the headers say), and a body without Content-Length, which
 *     runs to the end of the connection (http_resp_eof completes it).
 * Every line (status and headers) is cut to its first HTTP_RESP_LINE_KEEP
 * bytes before it is parsed, whether it arrived in one piece or not, so the
 * result never depends on how the stream was split. */
#ifndef PC_HTTP_RESP_H
#define PC_HTTP_RESP_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_RESP_LINE_KEEP 96 /* bytes of a line kept (the rest is skipped) */
#define HTTP_RESP_ERROR     (-1)

/* Parser states (http_resp_t.state). */
enum {
    HTTP_RESP_S_STATUS = 0,    /* before or inside a status line */
    HTTP_RESP_S_HEADERS,       /* inside the header block */
    HTTP_RESP_S_BODY,          /* inside a body of known length (body_left) */
    HTTP_RESP_S_BODY_TO_CLOSE, /* inside a body that ends with the connection */
    HTTP_RESP_S_FAILED,        /* a parse error: nothing more is accepted */
    HTTP_RESP_S_ENDED          /* http_resp_eof was called */
};

/* Parser state: plain data, one per connection; copyable. */
typedef struct http_resp_s {
    uint8_t state;
    uint8_t conn_close; /* Connection: close seen in this response */
    uint8_t keep_alive; /* Connection: keep-alive seen in this response */
    uint8_t minor;      /* HTTP/1.minor of this response's status line */
    uint8_t chunked;    /* Transfer-Encoding seen in this response */
    uint8_t have_len;   /* Content-Length seen in this response */
    int status;
    uint64_t body_left;
    unsigned line_len; /* bytes kept of a line split across calls (0: none) */
    char line[HTTP_RESP_LINE_KEEP];
} http_resp_t;

/* Called once per complete final (non-1xx) response, in order, from
 * http_resp_feed or http_resp_eof. closing is 1 when the connection ends
 * after this response (the server closes it: Connection: close, HTTP/1.0
 * without keep-alive, or a body read to the end of the connection), else 0.
 * The parser is already reset for the next response when it runs, and keeps
 * parsing what follows (a server may send nothing more, or answer anyway).
 * Return 0 to go on, non-zero to make http_resp_feed return right after
 * this response's last byte. */
typedef int (*http_resp_cb)(void *user, int status, int closing);

/* Start of a connection. */
void http_resp_init(http_resp_t *st);

/* Parse data[0, len) (len <= PTRDIFF_MAX) as the next bytes of the stream,
 * calling cb (not NULL) for each response completed. Returns the bytes
 * consumed: len, or fewer when cb asked to stop (feed the rest later); or
 * HTTP_RESP_ERROR on a malformed or unsupported response, after which (and
 * after http_resp_eof) every call returns HTTP_RESP_ERROR. Responses that
 * completed before the error in the same call have been reported. */
ptrdiff_t http_resp_feed(http_resp_t *st, const void *data, size_t len, http_resp_cb cb,
                         void *user);

/* Whether the stream is inside a response that the end of the connection
 * would cut short: a partial status line or head, or a body short of its
 * Content-Length (also after an error). 0 between responses and inside a
 * read-to-close body. */
int http_resp_busy(const http_resp_t *st);

/* The peer closed the connection cleanly. A read-to-close body is complete
 * then: its response is reported through cb (may be NULL). Returns 0 if
 * nothing was cut short, 1 if the connection ended inside a response (see
 * http_resp_busy), HTTP_RESP_ERROR if the parser had failed. The parser is
 * spent afterwards (http_resp_init to reuse it). */
int http_resp_eof(http_resp_t *st, http_resp_cb cb, void *user);

#endif
