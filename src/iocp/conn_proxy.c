/* SPDX-License-Identifier: MIT */
/* The PROXY protocol phase of a connection from a trusted proxy: feed the
 * header parser (src/filter/proxy_header.c), replace the peer address with
 * the real client's, run the second verdict on it (rules, per-source limits
 * keyed by it, the user condition; capacity was settled at accept), and keep
 * what the application may ask for later (the proxy's address, the TLVs).
 *
 * Memory: while the header is pending the connection holds one parser
 * (PROXY_HEADER_MAX bytes and a few more); once it is parsed the parser is
 * freed and, only for a proxied (not LOCAL) connection, one record with the
 * proxy's address and a copy of the TLVs is kept until the connection's
 * release. Runs in the connection's strand. */
#include "server.h"

#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "filter/proxy_header.h"
#include "filter/rules.h"

typedef struct conn_proxy_s {
    sockaddr_any_t proxy; /* the proxy's own address (the socket's peer) */
    size_t tlv_len;
    uint8_t tlv[]; /* v2 TLVs as received (checked by the parser) */
} conn_proxy_t;

int server_proxy_trusted(const pc_server_t *s, const addr_t *a)
{
    const pc_rules_t *r = s->cfg.proxy_trusted;
    if (!r || (a->family != 4 && a->family != 6)) return 0;
    uint32_t i = rules_lookup(r, a);
    return i != RULE_NONE && rules_action(r, i) == PC_RULE_ALLOW;
}

int conn_proxy_begin(pc_conn_t *c)
{
    conn_ext_t *x = conn_ext(c);
    proxy_parser_t *p = x ? pc__malloc(sizeof *p) : NULL;
    if (!p) return PC_ENOMEM;
    proxy_parser_init(p, conn_srv(c)->cfg.proxy_versions);
    x->px = p;
    c->px_state = PX_PENDING;
    return 0;
}

void conn_proxy_free(pc_conn_t *c)
{
    if (c->ext) {
        pc__free(c->ext->px);
        c->ext->px = NULL;
    }
    c->px_state = PX_NONE;
}

void conn_proxy_timed_out(pc_conn_t *c)
{
    counter_add(&conn_worker(c)->proxy_timeouts, 1);
}

typedef struct px_cond_s {
    pc_server_t *s;
    const pc_conn_t *c;
} px_cond_t;

static pc_verdict_t run_condition(void *ud)
{
    px_cond_t *cx = ud;
    pc_verdict_t v =
        cx->s->cfg.condition(cx->s->cfg.condition_user, &cx->c->peer.sa, pc_conn_local_addr(cx->c));
    /* an established connection cannot wait in the kernel's queue */
    return v == PC_ACCEPT ? PC_ACCEPT : PC_REJECT;
}

int conn_proxy_feed(worker_t *w, pc_conn_t *c, const char *data, size_t n, size_t *used)
{
    pc_server_t *s = conn_srv(c);
    proxy_parser_t *p = c->ext->px; /* PX_PENDING: conn_proxy_begin made both */
    proxy_header_t h;
    int cause = 0;
    int rc = proxy_parser_feed(p, data, n, used, &h, &cause);
    if (rc == PROXY_NEED_MORE) return 0;
    if (rc == PROXY_FAILED) {
        counter_add(&conn_worker(c)->proxy_errors[cause], 1);
        PC_LOGD("PROXY header refused: %s", pc_proxy_error_str(cause));
        return PC_EPARSE;
    }
    counter_add(&conn_worker(c)->proxy_headers, 1);
    conn_proxy_t *info = NULL;
    if (!h.local) {
        info = pc__malloc(sizeof *info + h.tlv_len);
        if (!info) return PC_ENOMEM;
        info->proxy = c->peer;
        info->tlv_len = h.tlv_len;
        if (h.tlv_len) memcpy(info->tlv, h.tlv, h.tlv_len);
        addr_to_sockaddr(&h.src, h.src_port, &c->peer.sa, sizeof c->peer);
    }
    pc__free(p);
    c->ext->px = info;
    c->px_state = PX_DONE;
    if (h.local) return 1; /* the proxy speaking for itself: judged at accept */
    /* the second verdict, on the real client */
    filter_release(s->filter, &c->ticket); /* holds nothing (steps 3-4 skipped), to be sure */
    px_cond_t cx = {s, c};
    int step = PC_STEP_COUNT;
    pc_verdict_t v =
        filter_decide_ex(s->filter, PX_READER(w), &h.src, pc__now_ns(), 0, 0,
                         s->cfg.condition ? run_condition : NULL, &cx, &c->ticket, &step);
    if (v != PC_ACCEPT) {
        counter_add(&conn_worker(c)->proxy_rejected, 1);
        return PC_EACCES;
    }
    return 1;
}

const struct sockaddr *pc_conn_proxy_addr(const pc_conn_t *c)
{
    if (!c || c->px_state != PX_DONE || !c->ext || !c->ext->px) return NULL;
    return &((const conn_proxy_t *)c->ext->px)->proxy.sa;
}

const void *pc_conn_proxy_tlv(const pc_conn_t *c, unsigned type, size_t *len)
{
    if (!c || c->px_state != PX_DONE || !c->ext || !c->ext->px) return NULL;
    const conn_proxy_t *info = c->ext->px;
    size_t vl = 0;
    const uint8_t *v = proxy_tlv_find(info->tlv_len ? info->tlv : NULL, info->tlv_len, type, &vl);
    if (v && len) *len = vl;
    return v;
}

/* ---- outbound: the header a connection sends first (pc_connect_ex) ---- */

_Static_assert(CONN_PROXY_OUT_MAX >= PROXY_V2_BUILT_MAX, "room for the longest header");

/* The addresses the header names; family 0: the connection's own. */
typedef struct conn_proxy_out_s {
    sockaddr_any_t src, dst;
} conn_proxy_out_t;

/* o's address, or family 0 for NULL. */
static int sa_copy(const struct sockaddr *sa, sockaddr_any_t *out)
{
    if (sa) return sockaddr_store(out, sa);
    memset(out, 0, sizeof *out);
    return 0;
}

int conn_proxy_out_new(const pc_connect_opts_t *o, void **out)
{
    *out = NULL;
    if (!o || !o->proxy_v2) return 0;
    conn_proxy_out_t r;
    if (sa_copy(o->proxy_src, &r.src) < 0 || sa_copy(o->proxy_dst, &r.dst) < 0) return PC_EINVAL;
    conn_proxy_out_t *p = pc__malloc(sizeof *p);
    if (!p) return PC_ENOMEM;
    *p = r;
    *out = p;
    return 0;
}

/* sa's address and port (host order). Returns 0 or -1 (no IP family). */
static int sa_split(const struct sockaddr *sa, addr_t *a, uint16_t *port)
{
    sockaddr_any_t u;
    if (!sa || sockaddr_store(&u, sa) < 0 || addr_from_sockaddr(&u.sa, a) < 0) return -1;
    *port = ntohs(sa->sa_family == AF_INET ? u.v4.sin_port : u.v6.sin6_port);
    return 0;
}

size_t conn_proxy_out_build(pc_conn_t *c, uint8_t buf[CONN_PROXY_OUT_MAX])
{
    conn_proxy_out_t *r = c->ext->px;
    const struct sockaddr *src = r->src.sa.sa_family ? &r->src.sa : pc_conn_local_addr(c);
    const struct sockaddr *dst = r->dst.sa.sa_family ? &r->dst.sa : pc_conn_peer_addr(c);
    addr_t sa, da;
    uint16_t sp = 0, dp = 0;
    size_t n = 0;
    if (sa_split(src, &sa, &sp) == 0 && sa_split(dst, &da, &dp) == 0)
        n = proxy_v2_build(&sa, sp, &da, dp, buf);
    pc__free(r);
    c->ext->px = NULL;
    return n;
}
