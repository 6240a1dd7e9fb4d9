/* SPDX-License-Identifier: MIT */
/* pc-http's /metrics page: a server's stats in the Prometheus text format
 * (metrics.h). */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>

typedef struct mbuf_s {
    char *p;
    size_t len, cap;
} mbuf_t;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
mput(mbuf_t *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(m->p + m->len, m->cap - m->len, fmt, ap);
    va_end(ap);
    if (n > 0) m->len += (size_t)n < m->cap - m->len ? (size_t)n : m->cap - m->len - 1;
}

static void mhead(mbuf_t *m, const char *name, const char *type, const char *help)
{
    mput(m, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *const k_reason_label[] = {
#define PC__REASON_NAME(name, msg) #name,
    PC_CLOSE_REASON_MAP(PC__REASON_NAME)
#undef PC__REASON_NAME
};

static const char *const k_proxy_cause_label[] = {
#define PC__PE_NAME(name, msg) #name,
    PC_PROXY_ERROR_MAP(PC__PE_NAME)
#undef PC__PE_NAME
};

static void lower_copy(char *dst, const char *src, size_t cap)
{
    size_t i = 0;
    for (; src[i] && i + 1 < cap; i++)
        dst[i] = (char)(src[i] >= 'A' && src[i] <= 'Z' ? src[i] + 32 : src[i]);
    dst[i] = 0;
}

/* The hook's lines (e.g. the filter's top rule hits) after the server's. */
static void metrics_hook_lines(const http_metrics_src_t *src, pc_server_t *s, mbuf_t *m)
{
    if (!src->hook) return;
    size_t room = m->cap - m->len - 1;
    size_t n = src->hook(src->hook_user, s, m->p + m->len, room);
    m->len += n < room ? n : room;
    m->p[m->len] = 0;
}

size_t http_metrics_format(const http_metrics_src_t *src, pc_server_t *s, char *out, size_t cap)
{
    pc_server_stats_t st;
    pc_server_stats(s, &st);
    mbuf_t m = {out, 0, cap};
    out[0] = 0;
    char label[32];

    mhead(&m, "pc_connections_accepted_total", "counter",
          "Connections accepted (passed the accept pipeline).");
    mput(&m, "pc_connections_accepted_total %llu\n", (unsigned long long)st.accepted);
    mhead(&m, "pc_connections_rejected_total", "counter",
          "Connections rejected, by accept pipeline step.");
    for (int i = 0; i < PC_STEP_COUNT; i++)
        mput(&m, "pc_connections_rejected_total{step=\"%s\"} %llu\n", pc_step_name((pc_step_t)i),
             (unsigned long long)st.rejected[i]);
    mhead(&m, "pc_connections_would_reject_total", "counter",
          "Shadow mode: connections that would have been rejected, by step.");
    for (int i = 0; i < PC_STEP_COUNT; i++)
        mput(&m, "pc_connections_would_reject_total{step=\"%s\"} %llu\n",
             pc_step_name((pc_step_t)i), (unsigned long long)st.would_reject[i]);
    mhead(&m, "pc_connections_deferred_total", "counter",
          "Defer decisions of the accept pipeline.");
    mput(&m, "pc_connections_deferred_total %llu\n", (unsigned long long)st.deferred);
    mhead(&m, "pc_accept_errors_total", "counter", "accept() failures (EMFILE, ...).");
    mput(&m, "pc_accept_errors_total %llu\n", (unsigned long long)st.accept_errors);
    mhead(&m, "pc_connections_active", "gauge", "Open connections.");
    mput(&m, "pc_connections_active %llu\n", (unsigned long long)st.active);
    mhead(&m, "pc_connections_closed_total", "counter", "Connections ended, by reason.");
    for (int i = 0; i < PC_CLOSE_REASON_COUNT; i++) {
        lower_copy(label, k_reason_label[i], sizeof label);
        mput(&m, "pc_connections_closed_total{reason=\"%s\"} %llu\n", label,
             (unsigned long long)st.closed[i]);
    }
    mhead(&m, "pc_proxy_headers_total", "counter", "PROXY protocol headers parsed.");
    mput(&m, "pc_proxy_headers_total %llu\n", (unsigned long long)st.proxy_headers);
    mhead(&m, "pc_proxy_errors_total", "counter", "Malformed PROXY headers, by cause.");
    for (int i = 0; i < PC_PROXY_ERR_COUNT; i++) {
        lower_copy(label, k_proxy_cause_label[i], sizeof label);
        mput(&m, "pc_proxy_errors_total{cause=\"%s\"} %llu\n", label,
             (unsigned long long)st.proxy_errors[i]);
    }
    mhead(&m, "pc_proxy_timeouts_total", "counter",
          "Connections from trusted proxies without a header in time.");
    mput(&m, "pc_proxy_timeouts_total %llu\n", (unsigned long long)st.proxy_timeouts);
    mhead(
        &m, "pc_proxy_rejected_total", "counter",
        "Real clients rejected after their PROXY header (also in pc_connections_rejected_total).");
    mput(&m, "pc_proxy_rejected_total %llu\n", (unsigned long long)st.proxy_rejected);
    mhead(&m, "pc_tls_handshakes_total", "counter",
          "TLS handshakes started (after the accept verdict; a rejected client starts none).");
    mput(&m, "pc_tls_handshakes_total %llu\n", (unsigned long long)st.tls_handshakes);
    mhead(&m, "pc_tls_handshake_errors_total", "counter", "TLS handshakes that failed.");
    mput(&m, "pc_tls_handshake_errors_total %llu\n", (unsigned long long)st.tls_handshake_errors);
    mhead(&m, "pc_tls_handshakes_completed_total", "counter",
          "TLS handshakes completed (full or resumed); started minus completed minus failed were "
          "cut by a hang-up, a timeout or a stop, or are running.");
    mput(&m, "pc_tls_handshakes_completed_total %llu\n",
         (unsigned long long)st.tls_handshakes_done);
    mhead(&m, "pc_tls_resumed_total", "counter", "TLS handshakes completed by resumption.");
    mput(&m, "pc_tls_resumed_total %llu\n", (unsigned long long)st.tls_resumed);
    mhead(&m, "pc_received_bytes_total", "counter", "Bytes received.");
    mput(&m, "pc_received_bytes_total %llu\n", (unsigned long long)st.bytes_in);
    mhead(&m, "pc_sent_bytes_total", "counter", "Bytes sent.");
    mput(&m, "pc_sent_bytes_total %llu\n", (unsigned long long)st.bytes_out);
    mhead(&m, "pc_send_queued_bytes", "gauge", "Bytes waiting in send queues.");
    mput(&m, "pc_send_queued_bytes %llu\n", (unsigned long long)st.send_queued_bytes);
    mhead(&m, "pc_conditional_accept_mode", "gauge",
          "Conditional-accept mode in force (1 for the mode in force).");
    mput(&m, "pc_conditional_accept_mode{mode=\"post_handshake\"} %d\n",
         st.accept_mode == PC_ACCEPT_MODE_POST_HANDSHAKE);
    mput(&m, "pc_conditional_accept_mode{mode=\"pre_handshake\"} %d\n",
         st.accept_mode == PC_ACCEPT_MODE_PRE_HANDSHAKE);
    mput(&m, "pc_conditional_accept_mode{mode=\"kernel\"} %d\n",
         st.accept_mode == PC_ACCEPT_MODE_KERNEL);
    /* the weakest listener's tier; only eBPF counts kernel drops per rule */
    mhead(&m, "pc_kernel_filter", "gauge",
          "Kernel filter tier in force (weakest listener); kernel_counts: drops "
          "counted per rule (eBPF) or not (cBPF: rule hits are post-handshake only)");
    mput(&m, "pc_kernel_filter{tier=\"%s\",kernel_counts=\"%s\"} 1\n",
         pc_kernel_filter_name(st.kernel_filter),
         st.kernel_filter == PC_KERNEL_FILTER_EBPF ? "yes" : "no");
    mhead(&m, "pc_kernel_filter_bytes", "gauge",
          "Kernel memory the listeners' eBPF filter programs and maps hold (fdinfo memlock).");
    mput(&m, "pc_kernel_filter_bytes %llu\n", (unsigned long long)st.kernel_filter_bytes);
    mhead(&m, "pc_kernel_syn_total", "counter",
          "SYNs the eBPF kernel filter judged (0 with the classic tier, which cannot count).");
    mput(&m, "pc_kernel_syn_total %llu\n", (unsigned long long)st.kernel_syn_seen);
    mhead(&m, "pc_kernel_dropped_total", "counter",
          "SYNs the eBPF kernel filter dropped before the handshake, by cause "
          "(shadow: counted and passed).");
    mput(&m, "pc_kernel_dropped_total{cause=\"rules\"} %llu\n",
         (unsigned long long)st.kernel_dropped_rules);
    mput(&m, "pc_kernel_dropped_total{cause=\"rate\"} %llu\n",
         (unsigned long long)st.kernel_dropped_rate);
    mput(&m, "pc_kernel_dropped_total{cause=\"max\"} %llu\n",
         (unsigned long long)st.kernel_dropped_max);
    mput(&m, "pc_kernel_dropped_total{cause=\"shadow\"} %llu\n",
         (unsigned long long)st.kernel_would_drop);
    mhead(&m, "pc_kernel_syn_retransmits_total", "counter",
          "Retransmitted SYNs the eBPF kernel filter passed without charging the "
          "per-source rate again.");
    mput(&m, "pc_kernel_syn_retransmits_total %llu\n",
         (unsigned long long)st.kernel_syn_retransmits);
    mhead(&m, "pc_backend_info", "gauge", "Completion backend in use.");
    mput(&m, "pc_backend_info{backend=\"%s\"} 1\n", pc_backend_name(st.backend));
    mhead(&m, "pc_accept_batch_waits_total", "counter",
          "Accept-thread sleeps that let new connections gather (accept_batch_us).");
    mput(&m, "pc_accept_batch_waits_total %llu\n", (unsigned long long)st.accept_batch_waits);
    mhead(&m, "pc_accept_data_wait_seconds", "gauge",
          "How long the kernel holds a new connection for its first bytes (0: off).");
    mput(&m, "pc_accept_data_wait_seconds %u\n", st.accept_data_wait_s);
    mhead(&m, "pc_sched_batch", "gauge",
          "1 when the server's threads run under batch scheduling (SCHED_BATCH).");
    mput(&m, "pc_sched_batch %d\n", st.sched_batch);
    mhead(&m, "pc_worker_threads", "gauge", "Worker threads.");
    mput(&m, "pc_worker_threads %d\n", st.threads);
    mhead(&m, "pc_http_responses_total", "counter", "HTTP responses sent, by status code.");
    for (size_t i = 0; i < src->ncodes; i++) {
        if (src->codes[i])
            mput(&m, "pc_http_responses_total{code=\"%d\"} %llu\n", src->codes[i],
                 (unsigned long long)src->counts[i]);
        else
            mput(&m, "pc_http_responses_total{code=\"other\"} %llu\n",
                 (unsigned long long)src->counts[i]);
    }
    metrics_hook_lines(src, s, &m);
    return m.len;
}
