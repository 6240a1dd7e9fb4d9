/* SPDX-License-Identifier: MIT */
/* The TLS API in a library built without OpenSSL: every call answers
 * PC_ENOSYS, so applications and tests link either way and can ask
 * pc_tls_available. */
#include "portcullis.h"

#include "tls/tls_sess.h"

int pc_tls_available(void)
{
    return 0;
}

void pc_tls_server_config_init(pc_tls_server_config_t *cfg)
{
    if (!cfg) return;
    *cfg = (pc_tls_server_config_t){0};
    cfg->min_version = PC_TLS_V1_2;
    cfg->ticket_rotate_s = 3600;
}

void pc_tls_client_config_init(pc_tls_client_config_t *cfg)
{
    if (!cfg) return;
    *cfg = (pc_tls_client_config_t){0};
    cfg->min_version = PC_TLS_V1_2;
}

int pc_tls_ctx_new_server(const pc_tls_server_config_t *cfg, pc_tls_ctx_t **out)
{
    (void)cfg;
    if (out) *out = NULL;
    return PC_ENOSYS;
}

int pc_tls_ctx_new_client(const pc_tls_client_config_t *cfg, pc_tls_ctx_t **out)
{
    (void)cfg;
    if (out) *out = NULL;
    return PC_ENOSYS;
}

void pc_tls_ctx_free(pc_tls_ctx_t *ctx)
{
    (void)ctx;
}

void tls_ctx_ref(pc_tls_ctx_t *ctx)
{
    (void)ctx;
}

int tls_ctx_is_server(const pc_tls_ctx_t *ctx)
{
    (void)ctx;
    return 0;
}

tls_sess_t *tls_sess_new(pc_tls_ctx_t *ctx, const char *host)
{
    (void)ctx;
    (void)host;
    return NULL;
}

void tls_sess_free(tls_sess_t *s)
{
    (void)s;
}

int tls_sess_start(tls_sess_t *s, const tls_io_t *io, void *arg)
{
    (void)s;
    (void)io;
    (void)arg;
    return PC_ENOSYS;
}

int tls_sess_feed(tls_sess_t *s, const void *data, size_t n, const tls_io_t *io, void *arg)
{
    (void)s;
    (void)data;
    (void)n;
    (void)io;
    (void)arg;
    return PC_ENOSYS;
}

int tls_sess_has_rest(const tls_sess_t *s)
{
    (void)s;
    return 0;
}

size_t tls_sess_pend_len(const tls_sess_t *s)
{
    (void)s;
    return 0;
}

size_t tls_sess_pend_flushed(const tls_sess_t *s)
{
    (void)s;
    return 0;
}

size_t tls_sess_pend_cap(const tls_sess_t *s)
{
    (void)s;
    return 0;
}

size_t tls_sess_pend_grow(const tls_sess_t *s, size_t add)
{
    (void)s;
    (void)add;
    return 0;
}

int tls_sess_pend_reserve(tls_sess_t *s, size_t add, int exact)
{
    (void)s;
    (void)add;
    (void)exact;
    return 0;
}

int tls_sess_write(tls_sess_t *s, const pc_buf_t *bufs, unsigned n, const tls_io_t *io, void *arg)
{
    (void)s;
    (void)bufs;
    (void)n;
    (void)io;
    (void)arg;
    return PC_ENOSYS;
}

int tls_sess_close_notify(tls_sess_t *s, const tls_io_t *io, void *arg)
{
    (void)s;
    (void)io;
    (void)arg;
    return 0;
}

int tls_sess_info(const tls_sess_t *s, pc_tls_info_t *out)
{
    (void)s;
    (void)out;
    return PC_ENOSYS;
}

int tls_sess_established(const tls_sess_t *s)
{
    (void)s;
    return 0;
}

size_t tls_sess_fragment(const tls_sess_t *s)
{
    (void)s;
    return TLS_PLAIN_CHUNK;
}

int tls_sess_multiblock(const tls_sess_t *s)
{
    (void)s;
    return 0;
}

int tls_sess_resumed(const tls_sess_t *s)
{
    (void)s;
    return 0;
}
