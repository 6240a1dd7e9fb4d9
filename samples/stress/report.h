/* SPDX-License-Identifier: MIT */
/* pc-stress's final report: the run's options, counters and latency
 * histograms as readable text or as one JSON object (--json). */
#ifndef PC_SAMPLE_STRESS_REPORT_H
#define PC_SAMPLE_STRESS_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "hist.h"

/* Error kinds counted by pc-stress: E_<name>, and the label the report uses. */
#define STRESS_ERROR_MAP(XX)               \
    XX(CONNECT_REFUSED, "connect_refused") \
    XX(CONNECT_TIMEOUT, "connect_timeout") \
    XX(CONNECT_OTHER, "connect_other")     \
    XX(RESET, "reset")                     \
    XX(TIMEOUT, "timeout")                 \
    XX(CLOSED, "closed_early")             \
    XX(STATUS, "bad_status")               \
    XX(PARSE, "parse")                     \
    XX(TLS, "tls_handshake")               \
    XX(OTHER, "other")

enum {
#define XX_ENUM(name, label) E_##name,
    STRESS_ERROR_MAP(XX_ENUM)
#undef XX_ENUM
        E_COUNT
};

/* The labels of the error kinds, by E_* index. */
extern const char *const stress_error_names[E_COUNT];

/* Counters summed over every thread. requests: responses received in the
 * run. Requests sent and never answered are in unanswered (still in flight
 * when the run ended, the connection open) or dropped (pipelined behind a
 * response that announced the connection's close, which the server then
 * made), or are part of an error (a connection that ended otherwise: one
 * error per connection, whatever it had in flight). None of the three is
 * counted in errors_total. */
typedef struct stress_totals_s {
    uint64_t requests, bytes, connects, opened, closed, errors[E_COUNT], errors_total;
    /* connections that completed after the run ended (while it stopped):
     * not in connects nor in the connect times */
    uint64_t late_connects;
    uint64_t unanswered, dropped;
    /* connects neither completed nor failed when the run ended (no answer
     * to the SYN, or a TLS handshake unfinished); not errors either */
    uint64_t unconnected;
    uint64_t tls_full, tls_resumed;
} stress_totals_t;

/* What the run was asked to do (pc-stress's options). */
typedef struct stress_run_s {
    const char *url;
    unsigned conns;
    int threads;
    unsigned pipeline;
    int close_mode; /* --close */
    double rate;    /* --rate, 0 for closed loop */
    int tls;        /* https:// */
    int tls_resume; /* --tls-resume */
    int insecure;   /* --insecure */
    const char *cacert;
} stress_run_t;

/* What it measured. latency/connect: every request / connect (connect plus
 * TLS handshake for https); hs_full / hs_resumed: https connects by kind. */
typedef struct stress_result_s {
    double secs;     /* measured run time */
    uint64_t unsent; /* --rate: scheduled requests no connection could take */
    const stress_totals_t *totals;
    const hist_t *latency, *connect, *hs_full, *hs_resumed;
} stress_result_t;

/* Write the report to out: readable lines, or one JSON object and a newline.
 * Neither flushes out. */
void stress_report_text(FILE *out, const stress_run_t *run, const stress_result_t *r);
void stress_report_json(FILE *out, const stress_run_t *run, const stress_result_t *r);

#endif
