/* SPDX-License-Identifier: MIT */
/* pc-stress's final report, as text or one JSON object (report.h). */
#include "report.h"

const char *const stress_error_names[E_COUNT] = {
#define XX_NAME(name, label) label,
    STRESS_ERROR_MAP(XX_NAME)
#undef XX_NAME
};

static const double k_pct[] = {50, 90, 99, 99.9};
static const char *const k_pname[] = {"p50", "p90", "p99", "p99_9"};

/* s as a JSON string, quotes included: '"', '\\' and control bytes
 * escaped (a URL may hold any of them). */
static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

/* "1.23ms" style. */
static const char *fmt_dur(uint64_t ns, char *buf, size_t cap)
{
    if (ns < 10000)
        snprintf(buf, cap, "%lluns", (unsigned long long)ns);
    else if (ns < 10000000)
        snprintf(buf, cap, "%.1fus", (double)ns / 1e3);
    else if (ns < 10000000000ull)
        snprintf(buf, cap, "%.2fms", (double)ns / 1e6);
    else
        snprintf(buf, cap, "%.2fs", (double)ns / 1e9);
    return buf;
}

void stress_report_json(FILE *out, const stress_run_t *run, const stress_result_t *r)
{
    const stress_totals_t *t = r->totals;
    const hist_t *lat = r->latency, *con = r->connect, *hs_full = r->hs_full,
                 *hs_resumed = r->hs_resumed;
    double rps = r->secs > 0 ? (double)t->requests / r->secs : 0;
    double bps = r->secs > 0 ? (double)t->bytes / r->secs : 0;
    double cps = r->secs > 0 ? (double)t->connects / r->secs : 0;
    fputs("{\"url\":", out);
    json_string(out, run->url);
    fprintf(out,
            ",\"connections\":%u,\"threads\":%d,\"duration_s\":%.3f,"
            "\"pipeline\":%u,\"close\":%s,\"rate\":%.15g,\"requests\":%llu,"
            "\"req_per_s\":%.1f,\"bytes\":%llu,\"bytes_per_s\":%.1f,\"connects\":%llu,"
            "\"connects_per_s\":%.1f,\"late_connects\":%llu,\"unsent\":%llu,\"unanswered\":%llu,"
            "\"unconnected\":%llu,\"dropped\":%llu,\"latency_us\":{",
            run->conns, run->threads, r->secs, run->pipeline, run->close_mode ? "true" : "false",
            run->rate, (unsigned long long)t->requests, rps, (unsigned long long)t->bytes, bps,
            (unsigned long long)t->connects, cps, (unsigned long long)t->late_connects,
            (unsigned long long)r->unsent, (unsigned long long)t->unanswered,
            (unsigned long long)t->unconnected, (unsigned long long)t->dropped);
    for (int i = 0; i < 4; i++)
        fprintf(out, "\"%s\":%.1f,", k_pname[i], (double)hist_percentile(lat, k_pct[i]) / 1e3);
    fprintf(out,
            "\"max\":%.1f,\"mean\":%.1f},\"connect_us\":{\"p50\":%.1f,\"p99\":%.1f,"
            "\"max\":%.1f},\"errors_total\":%llu,\"errors\":{",
            (double)lat->max / 1e3, hist_mean(lat) / 1e3, (double)hist_percentile(con, 50) / 1e3,
            (double)hist_percentile(con, 99) / 1e3, (double)con->max / 1e3,
            (unsigned long long)t->errors_total);
    for (int k = 0; k < E_COUNT; k++)
        fprintf(out, "%s\"%s\":%llu", k ? "," : "", stress_error_names[k],
                (unsigned long long)t->errors[k]);
    fprintf(out, "}");
    if (run->tls) {
        const hist_t *hh[2] = {hs_full, hs_resumed};
        fprintf(out, ",\"tls\":{\"resume\":%s,\"verify\":%s,\"full\":%llu,\"resumed\":%llu",
                run->tls_resume ? "true" : "false", run->insecure ? "false" : "true",
                (unsigned long long)t->tls_full, (unsigned long long)t->tls_resumed);
        for (int k = 0; k < 2; k++) {
            fprintf(out, ",\"%s_handshake_us\":{", k ? "resumed" : "full");
            for (int i = 0; i < 4; i++)
                fprintf(out, "\"%s\":%.1f,", k_pname[i],
                        (double)hist_percentile(hh[k], k_pct[i]) / 1e3);
            fprintf(out, "\"max\":%.1f,\"mean\":%.1f}", (double)hh[k]->max / 1e3,
                    hist_mean(hh[k]) / 1e3);
        }
        fprintf(out, "}");
    }
    fprintf(out, "}\n");
}

void stress_report_text(FILE *out, const stress_run_t *run, const stress_result_t *r)
{
    const stress_totals_t *t = r->totals;
    const hist_t *lat = r->latency, *con = r->connect, *hs_full = r->hs_full,
                 *hs_resumed = r->hs_resumed;
    double rps = r->secs > 0 ? (double)t->requests / r->secs : 0;
    double bps = r->secs > 0 ? (double)t->bytes / r->secs : 0;
    double cps = r->secs > 0 ? (double)t->connects / r->secs : 0;
    char b1[32], b2[32], b3[32], b4[32], b5[32];
    fprintf(out, "pc-stress %s: %u connections, %d threads, %.2fs, pipeline %u%s", run->url,
            run->conns, run->threads, r->secs, run->pipeline,
            run->close_mode ? ", close (churn)" : ", keep-alive");
    /* --rate takes fractions: 0.5/s is not "0/s" */
    if (run->rate >= 100)
        fprintf(out, ", rate %.0f/s", run->rate);
    else if (run->rate > 0)
        fprintf(out, ", rate %.3g/s", run->rate);
    fprintf(out, "\n  requests   %llu (%.1f req/s), %.2f MB/s received\n",
            (unsigned long long)t->requests, rps, bps / 1e6);
    fprintf(out, "  latency    p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
            fmt_dur(hist_percentile(lat, 50), b1, sizeof b1),
            fmt_dur(hist_percentile(lat, 90), b2, sizeof b2),
            fmt_dur(hist_percentile(lat, 99), b3, sizeof b3),
            fmt_dur(hist_percentile(lat, 99.9), b4, sizeof b4), fmt_dur(lat->max, b5, sizeof b5));
    fprintf(out, "  connects   %llu (%.1f/s), connect time p50 %s  p99 %s%s\n",
            (unsigned long long)t->connects, cps, fmt_dur(hist_percentile(con, 50), b1, sizeof b1),
            fmt_dur(hist_percentile(con, 99), b2, sizeof b2),
            run->tls ? " (TCP connect + TLS handshake)" : "");
    if (t->late_connects)
        fprintf(out, "             %llu more completed after the end (not counted)\n",
                (unsigned long long)t->late_connects);
    if (run->tls) {
        const hist_t *hh[2] = {hs_full, hs_resumed};
        uint64_t n[2] = {t->tls_full, t->tls_resumed};
        for (int k = 0; k < 2; k++) {
            fprintf(out, "  %-10s %llu", k ? "resumed" : "full hs", (unsigned long long)n[k]);
            if (n[k])
                fprintf(out, " (%.1f/s), handshake p50 %s  p90 %s  p99 %s  max %s",
                        r->secs > 0 ? (double)n[k] / r->secs : 0,
                        fmt_dur(hist_percentile(hh[k], 50), b1, sizeof b1),
                        fmt_dur(hist_percentile(hh[k], 90), b2, sizeof b2),
                        fmt_dur(hist_percentile(hh[k], 99), b3, sizeof b3),
                        fmt_dur(hh[k]->max, b4, sizeof b4));
            fprintf(out, "\n");
        }
        fprintf(out, "  tls        %s, %s\n",
                run->insecure ? "no verification (--insecure)"
                : run->cacert ? "verified against --cacert"
                              : "verified against the system store",
                run->tls_resume ? "resumption offered (--tls-resume)" : "every handshake full");
    }
    if (r->unsent)
        fprintf(out, "  unsent     %llu (scheduled, no connection free)\n",
                (unsigned long long)r->unsent);
    fprintf(out, "  unanswered %llu (in flight when the run ended)\n",
            (unsigned long long)t->unanswered);
    if (t->unconnected)
        fprintf(out,
                "  unconnected %llu (connects in flight when the run ended: no answer to the "
                "SYN%s)\n",
                (unsigned long long)t->unconnected, run->tls ? " or the handshake unfinished" : "");
    if (t->dropped)
        fprintf(out, "  dropped    %llu (pipelined behind a response that closed its connection)\n",
                (unsigned long long)t->dropped);
    fprintf(out, "  errors     %llu", (unsigned long long)t->errors_total);
    for (int k = 0; k < E_COUNT; k++)
        if (t->errors[k])
            fprintf(out, "  %s %llu", stress_error_names[k], (unsigned long long)t->errors[k]);
    fprintf(out, "\n");
    if (!t->requests) fprintf(out, "  no request was answered\n");
}
