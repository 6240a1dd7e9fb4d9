/* SPDX-License-Identifier: MIT */
/* Strict incremental HTTP/1.x request-head parser: a byte-class table and a
 * small state machine whose states each run a tight loop over their token. */
#include "http_parser.h"

#include <limits.h>
#include <string.h>

_Static_assert(sizeof(http_parser_t) <= 64, "the parser lives in every connection: keep it small");

/* ---- character classes ------------------------------------------------------
 * Built at compile time from the RFC 9110/9112/3986 definitions, so the table
 * cannot drift from the grammar and needs no run-time initialisation. */
enum {
    C_TCHAR = 0x01,  /* token character (method, header name) */
    C_TARGET = 0x02, /* request-target character other than '%' */
    C_VALUE = 0x04,  /* field-value byte: HTAB, SP, VCHAR, obs-text */
    C_HOST = 0x08,   /* Host value: reg-name / IP-literal / port characters */
    C_HEX = 0x10     /* hex digit (percent-encoding) */
};

#define IS_ALPHA(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')
#define IS_UNRESERVED(c) \
    (IS_ALPHA(c) || IS_DIGIT(c) || (c) == '-' || (c) == '.' || (c) == '_' || (c) == '~')
#define IS_SUBDELIM(c)                                                                    \
    ((c) == '!' || (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' || \
     (c) == '*' || (c) == '+' || (c) == ',' || (c) == ';' || (c) == '=')
#define IS_TCHAR(c)                                                                        \
    (IS_ALPHA(c) || IS_DIGIT(c) || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || \
     (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' ||  \
     (c) == '^' || (c) == '_' || (c) == '`' || (c) == '|' || (c) == '~')
/* '[' and ']' are allowed anywhere (IP literals in absolute-form authorities). */
#define IS_TARGET(c)                                                                               \
    (IS_UNRESERVED(c) || IS_SUBDELIM(c) || (c) == ':' || (c) == '@' || (c) == '/' || (c) == '?' || \
     (c) == '[' || (c) == ']')
#define IS_VALUE(c) ((c) == '\t' || ((c) >= 0x20 && (c) != 0x7f))
#define IS_HOST(c) \
    (IS_UNRESERVED(c) || IS_SUBDELIM(c) || (c) == ':' || (c) == '[' || (c) == ']' || (c) == '%')
#define IS_HEX(c) (IS_DIGIT(c) || ((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F'))

#define CLS(c)                                                                                   \
    ((IS_TCHAR(c) ? C_TCHAR : 0) | (IS_TARGET(c) ? C_TARGET : 0) | (IS_VALUE(c) ? C_VALUE : 0) | \
     (IS_HOST(c) ? C_HOST : 0) | (IS_HEX(c) ? C_HEX : 0))
#define R4(b)  CLS(b), CLS((b) + 1), CLS((b) + 2), CLS((b) + 3)
#define R16(b) R4(b), R4((b) + 4), R4((b) + 8), R4((b) + 12)
#define R64(b) R16(b), R16((b) + 16), R16((b) + 32), R16((b) + 48)

static const unsigned char cls[256] = {R64(0), R64(64), R64(128), R64(192)};

/* Whether any of the 8 bytes at s is a control byte (< 0x20, which includes
 * HTAB) or DEL: then the byte loop decides. Bytes >= 0x80 (obs-text) do not
 * count. Field values are the bulk of a head, so they are skipped a word at a
 * time; the standard "has a byte less than n" and "has a zero byte" tricks are
 * exact for the any-byte question asked here. */
static int word_has_ctl(const unsigned char *s)
{
    uint64_t w;
    memcpy(&w, s, 8);
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    uint64_t del = w ^ (ones * 0x7f);
    return (((w - ones * 0x20) & ~w) | ((del - ones) & ~del)) & highs ? 1 : 0;
}

/* ---- states ------------------------------------------------------------------ */
enum {
    S_START,   /* before the request line: empty lines, or the method's first byte */
    S_LEAD_LF, /* CR of a leading empty line seen */
    S_METHOD,
    S_TARGET,
    S_PCT1, /* after '%' in the target */
    S_PCT2,
    S_VER, /* matching "HTTP/" (lit = bytes matched) */
    S_VER_MAJ,
    S_VER_DOT,
    S_VER_MIN,
    S_RL_CR,
    S_RL_LF,
    S_LINE, /* start of a header line, or of the final CRLF */
    S_NAME,
    S_OWS, /* after the colon */
    S_VALUE,
    S_VAL_LF,
    S_END_LF, /* CR of the final empty line seen */
    S_DONE,
    S_ERROR
};

/* Case-insensitive comparison with a lowercase literal made of letters, digits
 * and '-'. OR-ing 0x20 folds exactly the letters for the bytes that can reach
 * here (tokens and field values contain no control characters but HTAB, and
 * HTAB folds to ')', which no literal contains). */
static int lower_eq(const unsigned char *s, const char *lit, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if ((unsigned char)(s[k] | 0x20) != (unsigned char)lit[k]) return 0;
    return 1;
}

static unsigned char method_of(const unsigned char *m, size_t n)
{
    switch (n) {
    case 3:
        if (memcmp(m, "GET", 3) == 0) return HTTP_GET;
        if (memcmp(m, "PUT", 3) == 0) return HTTP_PUT;
        break;
    case 4:
        if (memcmp(m, "HEAD", 4) == 0) return HTTP_HEAD;
        if (memcmp(m, "POST", 4) == 0) return HTTP_POST;
        break;
    case 6:
        if (memcmp(m, "DELETE", 6) == 0) return HTTP_DELETE;
        break;
    case 7:
        if (memcmp(m, "OPTIONS", 7) == 0) return HTTP_OPTIONS;
        break;
    default:
        break;
    }
    return HTTP_METHOD_UNKNOWN;
}

/* The target is complete and its characters valid: decide its form and path.
 * Known methods take origin- or absolute-form (asterisk-form for OPTIONS);
 * UNKNOWN methods (answered 501) may also use authority-form. */
static int target_done(http_parser_t *p, const unsigned char *b)
{
    const unsigned char *t = b + p->target_off;
    size_t n = p->target_len;
    size_t a = 0;

    p->path_skip = 0;
    if (t[0] == '/') {
        p->form = HTTP_TARGET_ORIGIN;
        return 0;
    }
    if (n == 1 && t[0] == '*') {
        p->form = HTTP_TARGET_ASTERISK;
        return p->method == HTTP_METHOD_UNKNOWN || p->method == HTTP_OPTIONS ? 0 : 400;
    }
    if (n > 7 && lower_eq(t, "http://", 7))
        a = 7;
    else if (n > 8 && lower_eq(t, "https://", 8))
        a = 8;
    if (a) {
        size_t e = a;
        while (e < n && t[e] != '/' && t[e] != '?') {
            if (t[e] == '@') return 400; /* userinfo is not allowed in http(s) targets */
            e++;
        }
        if (e == a) return 400; /* empty host */
        p->form = HTTP_TARGET_ABSOLUTE;
        p->path_skip = (uint32_t)e;
        return 0;
    }
    if (p->method != HTTP_METHOD_UNKNOWN) return 400;
    for (size_t k = 0; k < n; k++)
        if (t[k] == '/' || t[k] == '?') return 400;
    p->form = HTTP_TARGET_AUTHORITY;
    p->path_skip = (uint32_t)n;
    return 0;
}

/* Content-Length = 1*DIGIT, nothing else (no sign, no list, no inner space). */
static int parse_length(const unsigned char *v, size_t n, uint64_t *out)
{
    uint64_t x = 0;
    if (n == 0) return -1;
    for (size_t k = 0; k < n; k++) {
        unsigned d = (unsigned)v[k] - '0';
        if (d > 9) return -1;
        if (x > (HTTP_MAX_CONTENT_LENGTH - d) / 10) return -1;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

/* Internal flags (never reported in http_request_t.flags): what the
 * Transfer-Encoding lines said so far. The list may span several lines. */
#define F_TE_CHUNKED_LAST 0x0800u /* the last coding so far is chunked */
#define F_TE_OTHER        0x1000u /* a coding other than chunked */
#define F_TE_BAD          0x2000u /* chunked not final or twice, chunked;params, bad syntax */
#define F_INTERNAL        (F_TE_CHUNKED_LAST | F_TE_OTHER | F_TE_BAD)

/* Transfer-Encoding = #transfer-coding, transfer-coding = token *(OWS ";" OWS
 * param). Empty elements are ignored; codings compare case-insensitively. */
static unsigned transfer_coding_flags(unsigned f, const unsigned char *v, size_t n)
{
    size_t k = 0;
    while (k < n) {
        while (k < n && (v[k] == ' ' || v[k] == '\t' || v[k] == ','))
            k++;
        if (k == n) break;
        size_t s = k;
        while (k < n && (cls[v[k]] & C_TCHAR))
            k++;
        size_t name_len = k - s;
        size_t e = k;
        while (e < n && (v[e] == ' ' || v[e] == '\t'))
            e++;
        int params = e < n && v[e] == ';';
        if (name_len == 0 || (e < n && v[e] != ',' && !params)) return f | F_TE_BAD;
        while (k < n && v[k] != ',') /* parameters (quoted commas are not expected here) */
            k++;
        if (f & F_TE_CHUNKED_LAST) f |= F_TE_BAD; /* something after chunked */
        if (name_len == 7 && lower_eq(v + s, "chunked", 7)) {
            if (params) f |= F_TE_BAD; /* chunked defines no parameters */
            f |= F_TE_CHUNKED_LAST;
        } else {
            f = (f & ~F_TE_CHUNKED_LAST) | F_TE_OTHER;
        }
    }
    return f;
}

/* Connection = #token, case-insensitive; empty elements and unknown tokens
 * are ignored. */
static unsigned connection_flags(const unsigned char *v, size_t n)
{
    unsigned f = 0;
    size_t k = 0;
    while (k < n) {
        while (k < n && (v[k] == ' ' || v[k] == '\t' || v[k] == ','))
            k++;
        size_t s = k;
        while (k < n && v[k] != ',')
            k++;
        size_t e = k;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        size_t len = e - s;
        if (len == 5 && lower_eq(v + s, "close", 5))
            f |= HTTP_F_CONN_CLOSE;
        else if (len == 10 && lower_eq(v + s, "keep-alive", 10))
            f |= HTTP_F_CONN_KEEP_ALIVE;
        else if (len == 7 && lower_eq(v + s, "upgrade", 7))
            f |= HTTP_F_CONN_UPGRADE;
    }
    return f;
}

/* A header line is complete: [name_off, +name_len) and the value [vs, ve)
 * with leading OWS already skipped. Returns 0 or a status. */
static int header_done(http_parser_t *p, http_request_t *req, const unsigned char *b, size_t vs,
                       size_t ve)
{
    while (ve > vs && (b[ve - 1] == ' ' || b[ve - 1] == '\t'))
        ve--;
    if (req->num_headers >= req->max_headers) return 431;

    size_t idx = req->num_headers++;
    http_header_t *h = &req->headers[idx];
    h->name_off = (uint32_t)p->name_off;
    h->name_len = (uint32_t)p->name_len;
    h->value_off = (uint32_t)vs;
    h->value_len = (uint32_t)(ve - vs);

    const unsigned char *name = b + p->name_off;
    const unsigned char *v = b + vs;
    size_t vn = ve - vs;
    switch (p->name_len) {
    case 4:
        if (!lower_eq(name, "host", 4)) break;
        if (p->flags & HTTP_F_HOST) return 400; /* more than one Host */
        for (size_t k = 0; k < vn; k++)
            if (!(cls[v[k]] & C_HOST)) return 400;
        p->flags |= HTTP_F_HOST;
        p->host_idx = (uint32_t)idx;
        break;
    case 6:
        if (!lower_eq(name, "expect", 6)) break;
        p->flags |= HTTP_F_EXPECT;
        if (vn == 12 && lower_eq(v, "100-continue", 12)) p->flags |= HTTP_F_EXPECT_CONTINUE;
        break;
    case 7:
        if (lower_eq(name, "upgrade", 7)) p->flags |= HTTP_F_UPGRADE;
        break;
    case 10:
        if (lower_eq(name, "connection", 10)) p->flags |= connection_flags(v, vn);
        break;
    case 14:
        if (!lower_eq(name, "content-length", 14)) break;
        if (p->flags & HTTP_F_CONTENT_LENGTH) return 400; /* duplicate, even if equal */
        if (parse_length(v, vn, &p->content_length) != 0) return 400;
        p->flags |= HTTP_F_CONTENT_LENGTH;
        break;
    case 17:
        if (!lower_eq(name, "transfer-encoding", 17)) break;
        p->flags = (uint16_t)transfer_coding_flags(p->flags | HTTP_F_TRANSFER_ENC, v, vn);
        break;
    default:
        break;
    }
    return 0;
}

/* The final CRLF has arrived: checks that need the whole head.
 * Transfer-Encoding (RFC 9112 section 6): with Content-Length, or in an
 * HTTP/1.0 request, the framing is faulty (400); chunked must be the final
 * coding, once, without parameters (400); any other coding is not
 * implemented (501); an empty list names no framing (400). */
static int head_done(http_parser_t *p)
{
    unsigned f = p->flags;
    if ((f & HTTP_F_TRANSFER_ENC) && (f & HTTP_F_CONTENT_LENGTH)) return 400;
    if (p->minor == 1 && !(f & HTTP_F_HOST)) return 400;
    /* a server MUST ignore a 100-continue expectation in HTTP/1.0 (RFC 9110
     * section 10.1.1); no other expectation is defined */
    if (p->minor == 0) f &= ~(HTTP_F_EXPECT | HTTP_F_EXPECT_CONTINUE);
    if (f & HTTP_F_TRANSFER_ENC) {
        if (p->minor == 0 || (f & F_TE_BAD)) return 400;
        if (f & F_TE_OTHER) return 501;
        if (!(f & F_TE_CHUNKED_LAST)) return 400;
        f |= HTTP_F_CHUNKED;
    }
    int ka = p->minor == 1 ? !(f & HTTP_F_CONN_CLOSE)
                           : (f & HTTP_F_CONN_KEEP_ALIVE) && !(f & HTTP_F_CONN_CLOSE);
    if (ka) f |= HTTP_F_KEEP_ALIVE;
    p->flags = (uint16_t)f;
    return 0;
}

/* Turns the offsets collected so far into pointers into buf (which may have
 * moved since earlier calls). */
static void fill_request(const http_parser_t *p, http_request_t *req, const char *buf)
{
    req->method = (http_method_t)p->method;
    req->method_str = buf + p->method_off;
    req->method_len = p->method_len;
    req->target = buf + p->target_off;
    req->target_len = p->target_len;
    req->path = req->target + p->path_skip;
    req->path_len = p->target_len - p->path_skip;
    req->target_form = (http_target_form_t)p->form;
    req->version_minor = p->minor;
    req->content_length = p->content_length;
    req->flags = p->flags & ~F_INTERNAL;
    for (size_t k = 0; k < req->num_headers; k++) {
        http_header_t *h = &req->headers[k];
        h->name = buf + h->name_off;
        h->value = buf + h->value_off;
    }
    if (p->flags & HTTP_F_HOST) {
        req->host = req->headers[p->host_idx].value;
        req->host_len = req->headers[p->host_idx].value_len;
    } else {
        req->host = NULL;
        req->host_len = 0;
    }
}

void http_parser_init(http_parser_t *p, size_t max_head_bytes)
{
    memset(p, 0, sizeof(*p));
    if (max_head_bytes == 0) max_head_bytes = HTTP_DEFAULT_MAX_HEAD;
    if (max_head_bytes > INT32_MAX) max_head_bytes = INT32_MAX;
    p->max_head = (uint32_t)max_head_bytes;
    p->state = S_START;
}

void http_parser_reset(http_parser_t *p)
{
    http_parser_init(p, p->max_head);
}

void http_request_init(http_request_t *req, http_header_t *headers, size_t max_headers)
{
    memset(req, 0, sizeof(*req));
    req->headers = headers;
    req->max_headers = headers ? max_headers : 0;
}

int http_parse_request(http_parser_t *p, const char *buf, size_t len, http_request_t *req)
{
    if (p->state == S_DONE) return (int)p->off;
    if (p->state == S_ERROR) return -p->status;
    if (len <= p->off) return 0;
    if (p->off == 0 && p->state == S_START) req->num_headers = 0;

    const unsigned char *b = (const unsigned char *)buf;
    size_t i = p->off;
    size_t end = len < p->max_head ? len : p->max_head;
    unsigned st = p->state;
    int status = 0;

    while (i < end) {
        switch (st) {
        case S_START:
            if (b[i] == '\r') {
                st = S_LEAD_LF;
                i++;
                continue;
            }
            p->mark = (uint32_t)i;
            st = S_METHOD;
            /* fallthrough */
        case S_METHOD:
            while (i < end && (cls[b[i]] & C_TCHAR))
                i++;
            if (i == end) goto out;
            if (b[i] != ' ' || i == p->mark) goto bad;
            p->method_off = p->mark;
            p->method_len = (uint32_t)(i - p->mark);
            p->method = method_of(b + p->mark, p->method_len);
            p->mark = (uint32_t)++i;
            st = S_TARGET;
            continue;
        case S_LEAD_LF:
            if (b[i] != '\n') goto bad;
            i++;
            st = S_START;
            continue;
        case S_TARGET:
            while (i < end && (cls[b[i]] & C_TARGET))
                i++;
            if (i == end) goto out;
            if (b[i] == '%') {
                st = S_PCT1;
                i++;
                continue;
            }
            if (b[i] != ' ' || i == p->mark) goto bad;
            p->target_off = p->mark;
            p->target_len = (uint32_t)(i - p->mark);
            if ((status = target_done(p, b)) != 0) goto fail;
            i++;
            p->lit = 0;
            st = S_VER;
            continue;
        case S_PCT1:
        case S_PCT2:
            if (!(cls[b[i]] & C_HEX)) goto bad;
            i++;
            st = st == S_PCT1 ? S_PCT2 : S_TARGET;
            continue;
        case S_VER:
            /* Fast path for the two versions we serve, when all ten bytes are here. */
            if (p->lit == 0 && end - i >= 10 && memcmp(b + i, "HTTP/1.", 7) == 0 &&
                (b[i + 7] == '1' || b[i + 7] == '0') && b[i + 8] == '\r' && b[i + 9] == '\n') {
                p->major = 1;
                p->minor = (unsigned char)(b[i + 7] - '0');
                i += 10;
                st = S_LINE;
                continue;
            }
            if (b[i] != (unsigned char)"HTTP/"[p->lit]) goto bad;
            i++;
            if (++p->lit == 5) st = S_VER_MAJ;
            continue;
        case S_VER_MAJ:
        case S_VER_MIN:
            if (!IS_DIGIT(b[i])) goto bad;
            if (st == S_VER_MAJ) {
                p->major = (unsigned char)(b[i] - '0');
                st = S_VER_DOT;
            } else {
                p->minor = (unsigned char)(b[i] - '0');
                st = S_RL_CR;
            }
            i++;
            continue;
        case S_VER_DOT:
            if (b[i] != '.') goto bad;
            i++;
            st = S_VER_MIN;
            continue;
        case S_RL_CR:
            if (b[i] != '\r') goto bad;
            i++;
            st = S_RL_LF;
            continue;
        case S_RL_LF:
            if (b[i] != '\n') goto bad;
            i++;
            if (p->major != 1 || p->minor > 1) {
                status = 505;
                goto fail;
            }
            st = S_LINE;
            continue;
        case S_LINE:
        line:
            if (b[i] == '\r') {
                st = S_END_LF;
                i++;
                continue;
            }
            /* SP/HTAB here is obs-fold (or whitespace before the first header). */
            if (!(cls[b[i]] & C_TCHAR)) goto bad;
            p->mark = (uint32_t)i++;
            st = S_NAME;
            /* fallthrough */
        case S_NAME:
            while (i < end && (cls[b[i]] & C_TCHAR))
                i++;
            if (i == end) goto out;
            if (b[i] != ':') goto bad; /* includes whitespace before the colon */
            p->name_off = p->mark;
            p->name_len = (uint32_t)(i - p->mark);
            i++;
            st = S_OWS;
            /* fallthrough */
        case S_OWS:
            while (i < end && (b[i] == ' ' || b[i] == '\t'))
                i++;
            if (i == end) goto out;
            p->mark = (uint32_t)i;
            st = S_VALUE;
            /* fallthrough */
        case S_VALUE:
            while (end - i >= 8 && !word_has_ctl(b + i))
                i += 8;
            while (i < end && (cls[b[i]] & C_VALUE))
                i++;
            if (i == end) goto out;
            if (b[i] != '\r') goto bad; /* NUL, bare LF, other controls, DEL */
            i++;
            st = S_VAL_LF;
            if (i == end) goto out;
            /* fallthrough */
        case S_VAL_LF:
            if (b[i] != '\n') goto bad;
            /* the value ends at the CR just before this LF */
            if ((status = header_done(p, req, b, p->mark, i - 1)) != 0) goto fail;
            i++;
            st = S_LINE;
            if (i == end) goto out;
            goto line; /* straight to the next line, not through the switch */
        case S_END_LF:
            if (b[i] != '\n') goto bad;
            i++;
            if ((status = head_done(p)) != 0) goto fail;
            p->off = (uint32_t)i;
            p->state = S_DONE;
            fill_request(p, req, buf);
            return (int)i;
        default:
            goto bad;
        }
    }
out:
    p->off = (uint32_t)i;
    p->state = (unsigned char)st;
    if (i < p->max_head) return 0;
    /* max_head bytes buffered and the head is not complete: a request-target
     * that long is a 414 (RFC 9112 section 3), anything else a 431 */
    status = st == S_TARGET || st == S_PCT1 || st == S_PCT2 ? 414 : 431;
    goto fail;
bad:
    status = 400;
fail:
    p->off = (uint32_t)i;
    p->state = S_ERROR;
    p->status = (uint16_t)status;
    fill_request(p, req, buf);
    return -status;
}

/* ---- chunked bodies ------------------------------------------------------------
 * chunked-body = *chunk last-chunk trailer-section CRLF
 * chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 * last-chunk   = 1*"0" [ chunk-ext ] CRLF
 * One state per grammar position; data bytes are passed over in one step. */
enum {
    K_SIZE0,    /* first hex digit of a chunk-size */
    K_SIZE,     /* more hex digits */
    K_EXT_BWS,  /* right after the size: ';', BWS or CR */
    K_EXT_SEMI, /* after BWS: more BWS, then ';' */
    K_EXT,      /* inside the extensions, up to CR */
    K_SIZE_LF,  /* CR of the size line seen */
    K_DATA,     /* left data bytes to pass */
    K_DATA_CR,  /* CRLF after the data */
    K_DATA_LF,
    K_TR_LINE,  /* start of a trailer line, or of the final CRLF */
    K_TR_NAME,  /* trailer field name, up to ':' */
    K_TR_VALUE, /* trailer field value, up to CR */
    K_TR_LF,
    K_END_LF, /* CR of the final CRLF seen */
    K_DONE,
    K_ERROR
};

void http_chunked_init(http_chunked_t *c, uint64_t max_body, size_t max_trailer)
{
    memset(c, 0, sizeof(*c));
    c->max_body = max_body;
    if (max_trailer == 0) max_trailer = HTTP_DEFAULT_MAX_HEAD;
    if (max_trailer > INT32_MAX) max_trailer = INT32_MAX;
    c->max_trailer = (uint32_t)max_trailer;
    c->state = K_SIZE0;
}

uint64_t http_chunked_total(const http_chunked_t *c)
{
    return c->total;
}

static int hex_value(unsigned char ch)
{
    if (IS_DIGIT(ch)) return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

int http_chunked_parse(http_chunked_t *c, const char *buf, size_t len, size_t *consumed,
                       http_chunk_data_fn on_data, void *user)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t i = 0;
    unsigned st = c->state;
    int status = 0;

    *consumed = 0;
    if (st == K_DONE) return 1;
    if (st == K_ERROR) return -c->status;

/* One byte of a chunk-size line / of the trailer section is used: both are
 * bounded (data is bounded by max_body). */
#define TAKE_LINE()                                    \
    do {                                               \
        i++;                                           \
        if (++c->line > HTTP_CHUNK_LINE_MAX) goto bad; \
    } while (0)
#define TAKE_TRAILER()                               \
    do {                                             \
        i++;                                         \
        if (++c->trailer > c->max_trailer) goto big; \
    } while (0)
/* A byte of a size line that carries no size: an extension byte or a leading
 * zero past the first digit. Over the whole body they are bounded by
 * max_trailer too (RFC 9112 section 7.1.1: limit the chunk extensions), so a
 * body costs at most a few wire bytes per data byte plus that. */
#define TAKE_EXTRA()                               \
    do {                                           \
        TAKE_LINE();                               \
        if (++c->extra > c->max_trailer) goto big; \
    } while (0)

    while (i < len) {
        unsigned char ch = b[i];
        switch (st) {
        case K_SIZE0:
        case K_SIZE: {
            int d = hex_value(ch);
            if (d < 0) {
                if (st == K_SIZE0) goto bad; /* no digit */
                /* the size is known: refuse what would pass the limit before
                 * any of its data arrives */
                if (c->left > c->max_body - c->total) {
                    status = 413;
                    goto fail;
                }
                st = K_EXT_BWS;
                continue; /* look at ch again */
            }
            if (c->left > (HTTP_MAX_CONTENT_LENGTH - (uint64_t)d) / 16) goto bad;
            if (d == 0 && c->left == 0 && st == K_SIZE)
                TAKE_EXTRA(); /* a leading zero after the first */
            else
                TAKE_LINE();
            c->left = c->left * 16 + (uint64_t)d;
            st = K_SIZE;
            continue;
        }
        case K_EXT_BWS:
        case K_EXT_SEMI:
            if (ch == ';')
                st = K_EXT;
            else if (ch == '\r' && st == K_EXT_BWS) {
                st = K_SIZE_LF;
                TAKE_LINE();
                continue;
            } else if (ch == ' ' || ch == '\t')
                st = K_EXT_SEMI;
            else
                goto bad;
            TAKE_EXTRA();
            continue;
        case K_EXT:
            /* extensions are skipped: any field-value bytes up to the CR */
            while (i < len && (cls[b[i]] & C_VALUE))
                TAKE_EXTRA();
            if (i == len) goto out;
            if (b[i] != '\r') goto bad;
            st = K_SIZE_LF;
            TAKE_LINE();
            continue;
        case K_SIZE_LF:
            if (ch != '\n') goto bad;
            TAKE_LINE();
            c->line = 0;
            st = c->left ? K_DATA : K_TR_LINE;
            continue;
        case K_DATA: {
            size_t take = len - i;
            if ((uint64_t)take > c->left) take = (size_t)c->left;
            if (on_data) on_data(user, buf + i, take);
            c->left -= take;
            c->total += take;
            i += take;
            if (c->left == 0) st = K_DATA_CR;
            continue;
        }
        case K_DATA_CR:
            if (ch != '\r') goto bad;
            st = K_DATA_LF;
            i++;
            continue;
        case K_DATA_LF:
            if (ch != '\n') goto bad;
            st = K_SIZE0;
            i++;
            continue;
        case K_TR_LINE:
            if (ch == '\r')
                st = K_END_LF;
            else if (cls[ch] & C_TCHAR) /* SP/HTAB here would be obs-fold */
                st = K_TR_NAME;
            else
                goto bad;
            TAKE_TRAILER();
            continue;
        case K_TR_NAME:
            if (ch == ':')
                st = K_TR_VALUE;
            else if (!(cls[ch] & C_TCHAR))
                goto bad;
            TAKE_TRAILER();
            continue;
        case K_TR_VALUE:
            while (i < len && (cls[b[i]] & C_VALUE))
                TAKE_TRAILER();
            if (i == len) goto out;
            if (b[i] != '\r') goto bad;
            st = K_TR_LF;
            TAKE_TRAILER();
            continue;
        case K_TR_LF:
            if (ch != '\n') goto bad;
            st = K_TR_LINE;
            TAKE_TRAILER();
            continue;
        case K_END_LF:
            if (ch != '\n') goto bad;
            TAKE_TRAILER();
            c->state = K_DONE;
            *consumed = i;
            return 1;
        default:
            goto bad;
        }
    }
#undef TAKE_LINE
#undef TAKE_TRAILER
#undef TAKE_EXTRA
out:
    c->state = (unsigned char)st;
    *consumed = i;
    return 0;
big:
    status = 431;
    goto fail;
bad:
    status = 400;
fail:
    c->state = K_ERROR;
    c->status = (uint16_t)status;
    *consumed = i;
    return -status;
}

const char *http_reason(int status)
{
    if (status < 0) status = -status;
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

size_t http_status_line(char *out, size_t cap, int status)
{
    if (status < 0) status = -status;
    if (status < 100 || status > 999) return 0;
    const char *reason = http_reason(status);
    size_t rn = strlen(reason);
    size_t n = 9 + 3 + 1 + rn + 2; /* "HTTP/1.1 " code ' ' reason CRLF */
    if (n > cap) return 0;
    memcpy(out, "HTTP/1.1 ", 9);
    out[9] = (char)('0' + status / 100);
    out[10] = (char)('0' + status / 10 % 10);
    out[11] = (char)('0' + status % 10);
    out[12] = ' ';
    memcpy(out + 13, reason, rn);
    memcpy(out + 13 + rn, "\r\n", 2);
    return n;
}

const char *http_method_name(http_method_t m)
{
    switch (m) {
    case HTTP_GET:
        return "GET";
    case HTTP_HEAD:
        return "HEAD";
    case HTTP_POST:
        return "POST";
    case HTTP_PUT:
        return "PUT";
    case HTTP_DELETE:
        return "DELETE";
    case HTTP_OPTIONS:
        return "OPTIONS";
    default:
        return "UNKNOWN";
    }
}
