/* SPDX-License-Identifier: MIT */
/* pc-stress's histogram (samples/stress/hist.c: bucket edges, percentile
 * ranks, merge) and its reports, JSON and text (samples/stress/report.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "hist.h"
#include "report.h"

/* ---- histogram --------------------------------------------------------------- */

/* The highest value of v's bucket: exact below 2 * HIST_SUB, else v with the
 * bits below its top HIST_SUB_BITS + 1 set; values of 2^(HIST_MAX_EXP + 1)
 * and above share the last bucket. */
static uint64_t expected_high(uint64_t v)
{
    if (v < 2 * HIST_SUB) return v;
    unsigned e = 63;
    while (!(v >> e))
        e--;
    if (e > HIST_MAX_EXP) return ((uint64_t)1 << (HIST_MAX_EXP + 1)) - 1;
    unsigned s = e - HIST_SUB_BITS;
    return (((v >> s) + 1) << s) - 1;
}

/* p50 of {v, UINT64_MAX}: the rank-1 value, v's bucket's highest value. */
static uint64_t bucket_high_of(uint64_t v)
{
    hist_t h;
    hist_init(&h);
    hist_record(&h, v);
    hist_record(&h, UINT64_MAX);
    return hist_percentile(&h, 50);
}

static void test_bucket_edges(void **state)
{
    (void)state;
    for (uint64_t v = 0; v < 4 * HIST_SUB; v++)
        assert_int_equal(bucket_high_of(v), expected_high(v));
    /* around every power of two up to past the clamp, and the top */
    for (unsigned k = 8; k < 64; k++) {
        uint64_t p = (uint64_t)1 << k;
        uint64_t vs[] = {p - 1, p, p + 1, p + (p >> 1), p + (p >> 3) - 1, p + (p >> 3)};
        for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
            uint64_t got = bucket_high_of(vs[i]), want = expected_high(vs[i]);
            if (got != want)
                fail_msg("%llu: bucket high %llu, expected %llu", (unsigned long long)vs[i],
                         (unsigned long long)got, (unsigned long long)want);
            /* below the clamp: within 1/HIST_SUB above the value */
            if (k <= HIST_MAX_EXP) assert_true(got >= vs[i] && got - vs[i] <= vs[i] / HIST_SUB);
        }
    }
    assert_int_equal(bucket_high_of(UINT64_MAX), expected_high(UINT64_MAX));
}

static void test_percentile_ranks(void **state)
{
    (void)state;
    hist_t h;
    hist_init(&h);
    assert_int_equal(hist_percentile(&h, 50), 0); /* empty */
    assert_true(hist_mean(&h) == 0.0);
    for (uint64_t v = 1; v <= 100; v++)
        hist_record(&h, v);
    /* the smallest value with at least p% of the values at or below it */
    assert_int_equal(hist_percentile(&h, 0), 1);
    assert_int_equal(hist_percentile(&h, 4.9e-324), 1); /* p% of the count rounds to 0 */
    assert_int_equal(hist_percentile(&h, 1), 1);
    assert_int_equal(hist_percentile(&h, 50), 50);
    assert_int_equal(hist_percentile(&h, 50.5), 51);
    assert_int_equal(hist_percentile(&h, 90), 90);
    assert_int_equal(hist_percentile(&h, 99), 99);
    assert_int_equal(hist_percentile(&h, 99.9), 100);
    assert_int_equal(hist_percentile(&h, 100), 100);
    assert_true(hist_mean(&h) == 50.5);

    /* a rank between two values rounds up: 10 values, p55 is the 6th */
    hist_init(&h);
    for (uint64_t v = 1; v <= 10; v++)
        hist_record(&h, v * 10);
    assert_int_equal(hist_percentile(&h, 55), 60);
    assert_int_equal(hist_percentile(&h, 50), 50);
    assert_int_equal(hist_percentile(&h, 5), 10);

    /* the bucket's highest value is capped at the exact maximum */
    hist_init(&h);
    hist_record(&h, 1001);
    assert_int_equal(expected_high(1001), 1003);
    assert_int_equal(hist_percentile(&h, 50), 1001);
    hist_record(&h, 5000);
    assert_int_equal(hist_percentile(&h, 50), 1003);
    /* p0 is the exact minimum, not its bucket's highest value */
    assert_int_equal(hist_percentile(&h, 0), 1001);
}

static void test_merge(void **state)
{
    (void)state;
    hist_t a, b, empty;
    hist_init(&a);
    hist_init(&b);
    hist_init(&empty);
    hist_record(&a, 300);
    hist_record(&a, 7);
    hist_record(&b, 5);
    hist_record(&b, 90000);
    hist_merge(&a, &empty);
    assert_int_equal(a.count, 2);
    assert_int_equal(a.min, 7);
    hist_merge(&a, &b);
    assert_int_equal(a.count, 4);
    assert_int_equal(a.min, 5);
    assert_int_equal(a.max, 90000);
    assert_int_equal(a.sum, 300 + 7 + 5 + 90000);
    assert_int_equal(hist_percentile(&a, 25), 5);
    assert_int_equal(hist_percentile(&a, 50), 7);
    assert_int_equal(hist_percentile(&a, 75), expected_high(300));
    assert_int_equal(hist_percentile(&a, 100), 90000);
    /* into an empty one */
    hist_merge(&empty, &b);
    assert_int_equal(empty.min, 5);
    assert_int_equal(empty.max, 90000);
    /* values past the clamp: the last bucket is merged too */
    hist_t big, sum;
    hist_init(&big);
    hist_init(&sum);
    hist_record(&big, (uint64_t)1 << 50);
    hist_record(&big, UINT64_MAX);
    hist_merge(&sum, &big);
    assert_int_equal(hist_percentile(&sum, 50), expected_high((uint64_t)1 << 50));
    assert_int_equal(hist_percentile(&sum, 50), hist_percentile(&big, 50));
}

/* ---- JSON report ------------------------------------------------------------- */

typedef void (*report_fn)(FILE *, const stress_run_t *, const stress_result_t *);

/* What emit(run, res) wrote, as one string (the caller frees it). */
static char *report_str(report_fn emit, const stress_run_t *run, const stress_result_t *res)
{
    static const char path[] = "test_stress_report.tmp"; /* tmpfile() may not work on Windows */
    FILE *f = fopen(path, "w+b");
    assert_non_null(f);
    emit(f, run, res);
    long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    remove(path);
    return s;
}

static char *report_json(const stress_run_t *run, const stress_result_t *res)
{
    return report_str(stress_report_json, run, res);
}

/* The number after "key": in s, where key may be a path "a.b" (the first
 * key b after the first key a). */
static double json_num(const char *s, const char *path)
{
    char key[64];
    const char *at = s;
    while (*path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        snprintf(key, sizeof key, "\"%.*s\":", (int)n, path);
        at = strstr(at, key);
        if (!at) fail_msg("no %s in %s", key, s);
        at += strlen(key);
        path += n + (dot ? 1 : 0);
    }
    char *end;
    double v = strtod(at, &end);
    if (end == at) fail_msg("%s: not a number at %.20s", path, at);
    return v;
}

/* A figure printed with one decimal ("%.1f") is x. */
static int near1(double printed, double x)
{
    double d = printed - x;
    return d <= 0.05 + 1e-9 && d >= -0.05 - 1e-9;
}

/* Totals with every counter distinct and non-zero (over 4 s: 250 req/s,
 * 0.75 MB/s, 10 connects/s), and two kinds of error. */
static void sample_totals(stress_totals_t *t)
{
    memset(t, 0, sizeof *t);
    t->requests = 1000;
    t->bytes = 3000000;
    t->connects = 40;
    t->unanswered = 3;
    t->dropped = 4;
    t->unconnected = 5;
    t->late_connects = 6;
    t->errors[E_RESET] = 2;
    t->errors[E_OTHER] = 1;
    t->errors_total = 3;
}

static void test_json_arithmetic(void **state)
{
    (void)state;
    hist_t lat, con, none;
    hist_init(&lat);
    hist_init(&con);
    hist_init(&none);
    for (uint64_t i = 1; i <= 100; i++)
        hist_record(&lat, i * 1000); /* 1..100 us */
    hist_record(&con, 2000);
    hist_record(&con, 4000);
    stress_totals_t t;
    sample_totals(&t);
    stress_run_t run = {.url = "http://h/\"q\"", .conns = 8, .threads = 2, .pipeline = 1};
    stress_result_t res = {.secs = 4.0,
                           .unsent = 7,
                           .totals = &t,
                           .latency = &lat,
                           .connect = &con,
                           .hs_full = &none,
                           .hs_resumed = &none};
    char *s = report_json(&run, &res);
    assert_non_null(strstr(s, "\"url\":\"http://h/\\\"q\\\"\""));
    assert_true(json_num(s, "connections") == 8);
    assert_true(json_num(s, "threads") == 2);
    assert_true(json_num(s, "duration_s") == 4.0);
    assert_true(json_num(s, "pipeline") == 1);
    assert_non_null(strstr(s, ",\"close\":false,"));
    assert_null(strstr(s, "\"tls\":")); /* http:// */
    assert_true(json_num(s, "requests") == 1000);
    assert_true(json_num(s, "req_per_s") == 250.0);
    assert_true(json_num(s, "bytes_per_s") == 750000.0);
    assert_true(json_num(s, "connects_per_s") == 10.0);
    assert_true(json_num(s, "late_connects") == 6);
    assert_true(json_num(s, "unsent") == 7);
    assert_true(json_num(s, "unanswered") == 3);
    assert_true(json_num(s, "unconnected") == 5);
    assert_true(json_num(s, "dropped") == 4);
    /* microseconds, from the histogram's nanoseconds */
    assert_true(near1(json_num(s, "latency_us.p50"), (double)hist_percentile(&lat, 50) / 1e3));
    assert_true(near1(json_num(s, "latency_us.p90"), (double)hist_percentile(&lat, 90) / 1e3));
    assert_true(near1(json_num(s, "latency_us.p99"), (double)hist_percentile(&lat, 99) / 1e3));
    assert_true(near1(json_num(s, "latency_us.p99_9"), 100.0));
    assert_true(json_num(s, "latency_us.max") == 100.0);
    assert_true(json_num(s, "latency_us.mean") == 50.5);
    assert_true(json_num(s, "connect_us.p50") == 2.0);
    assert_true(json_num(s, "connect_us.p99") == 4.0);
    assert_true(json_num(s, "connect_us.max") == 4.0);
    assert_true(json_num(s, "errors_total") == 3);
    assert_true(json_num(s, "errors.reset") == 2);
    assert_true(json_num(s, "errors.other") == 1);
    /* the error object: every kind, comma-separated, then the end */
    const char *e = strstr(s, "\"errors\":{");
    assert_non_null(e);
    assert_non_null(strstr(e, "{\"connect_refused\":0,\"connect_timeout\":0,"));
    assert_non_null(strstr(e, ",\"other\":1}}\n"));
    free(s);

    /* no time measured: rates 0, not a division by zero */
    res.secs = 0;
    s = report_json(&run, &res);
    assert_true(json_num(s, "req_per_s") == 0.0);
    assert_true(json_num(s, "bytes_per_s") == 0.0);
    assert_true(json_num(s, "connects_per_s") == 0.0);
    free(s);
}

/* The URL as a JSON string: control bytes (and DEL) as \\u escapes. */
static void test_json_url_control_bytes(void **state)
{
    (void)state;
    hist_t none;
    hist_init(&none);
    stress_totals_t t;
    memset(&t, 0, sizeof t);
    stress_run_t run = {
        .url = "http://h/\x01\x1f \x7f~\\", .conns = 1, .threads = 1, .pipeline = 1};
    stress_result_t res = {.secs = 1.0,
                           .totals = &t,
                           .latency = &none,
                           .connect = &none,
                           .hs_full = &none,
                           .hs_resumed = &none};
    char *s = report_json(&run, &res);
    assert_non_null(strstr(s, "{\"url\":\"http://h/\\u0001\\u001f \\u007f~\\\\\","));
    free(s);
}

/* s holds line (a whole line, its newline included). */
static void assert_line(const char *s, const char *line)
{
    const char *at = strstr(s, line);
    if (!at || (at != s && at[-1] != '\n')) fail_msg("no line %s in:\n%s", line, s);
}

/* https://: the JSON report's tls object and the text report's lines, each
 * handshake kind with its own counts and percentiles. */
static void test_tls_reports(void **state)
{
    (void)state;
    hist_t none, full, resumed;
    hist_init(&none);
    hist_init(&full);
    hist_init(&resumed);
    /* at their buckets' highest values: p50 and p90 3007, p99 5119, max 8000 */
    for (int i = 0; i < 100; i++)
        hist_record(&full, i < 90 ? 3007 : i < 99 ? 5119 : 8000);
    hist_record(&resumed, 1000);
    stress_totals_t t;
    memset(&t, 0, sizeof t);
    t.connects = 8;
    t.tls_full = 3;
    t.tls_resumed = 5;
    stress_run_t run = {.url = "https://h/",
                        .conns = 1,
                        .threads = 1,
                        .pipeline = 1,
                        .close_mode = 1,
                        .rate = 0.01,
                        .tls = 1,
                        .tls_resume = 1};
    stress_result_t res = {.secs = 1.0,
                           .totals = &t,
                           .latency = &none,
                           .connect = &none,
                           .hs_full = &full,
                           .hs_resumed = &resumed};
    char *s = report_json(&run, &res);
    assert_non_null(strstr(s, ",\"close\":true,"));
    assert_true(json_num(s, "rate") == 0.01); /* as given, not rounded */
    assert_non_null(strstr(s, "\"tls\":{\"resume\":true,\"verify\":true,"));
    assert_true(json_num(s, "tls.full") == 3);
    assert_true(json_num(s, "tls.resumed") == 5);
    assert_true(json_num(s, "tls.full_handshake_us.p50") == 3.0);
    assert_true(json_num(s, "tls.full_handshake_us.p99") == 5.1);
    assert_true(json_num(s, "tls.full_handshake_us.max") == 8.0);
    assert_true(json_num(s, "tls.resumed_handshake_us.p50") == 1.0);
    assert_true(json_num(s, "tls.resumed_handshake_us.p99_9") == 1.0);
    assert_true(json_num(s, "tls.resumed_handshake_us.mean") == 1.0);
    free(s);

    s = report_str(stress_report_text, &run, &res);
    assert_line(s, "  connects   8 (8.0/s), connect time p50 0ns  p99 0ns (TCP connect + TLS "
                   "handshake)\n");
    assert_line(s, "  full hs    3 (3.0/s), handshake p50 3007ns  p90 3007ns  p99 5119ns  max "
                   "8000ns\n");
    assert_line(s, "  resumed    5 (5.0/s), handshake p50 1000ns  p90 1000ns  p99 1000ns  max "
                   "1000ns\n");
    assert_line(s, "  tls        verified against the system store, resumption offered "
                   "(--tls-resume)\n");
    free(s);

    /* no resumption, --cacert; then --insecure */
    t.tls_full = 8;
    t.tls_resumed = 0;
    run.tls_resume = 0;
    run.cacert = "ca.pem";
    s = report_str(stress_report_text, &run, &res);
    assert_line(s, "  resumed    0\n");
    assert_line(s, "  tls        verified against --cacert, every handshake full\n");
    free(s);
    run.insecure = 1;
    s = report_str(stress_report_text, &run, &res);
    assert_line(s, "  tls        no verification (--insecure), every handshake full\n");
    free(s);
    s = report_json(&run, &res);
    assert_non_null(strstr(s, "\"tls\":{\"resume\":false,\"verify\":false,"));
    free(s);
}

/* ---- text report ------------------------------------------------------------- */

static void test_text_report(void **state)
{
    (void)state;
    /* values at their buckets' highest value, so that the percentiles are
     * exact; each percentile's rank well inside one run of values */
    hist_t lat, con;
    hist_init(&lat);
    hist_init(&con);
    static const struct {
        uint64_t v;
        int n;
    } runs[] = {{9983, 1200},      /* p50 */
                {20479, 700},      /* p90 */
                {1048575, 90},     /* p99 */
                {12582911, 9},     /* p99.9 */
                {20000000000, 1}}; /* max */
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++)
        for (int i = 0; i < runs[k].n; i++)
            hist_record(&lat, runs[k].v);
    hist_record(&con, 10000);
    stress_totals_t t;
    sample_totals(&t);
    stress_run_t run = {.url = "http://h/", .conns = 8, .threads = 2, .pipeline = 1};
    stress_result_t res = {.secs = 4.0,
                           .unsent = 7,
                           .totals = &t,
                           .latency = &lat,
                           .connect = &con,
                           .hs_full = &con,
                           .hs_resumed = &con};
    char *s = report_str(stress_report_text, &run, &res);
    assert_line(s,
                "pc-stress http://h/: 8 connections, 2 threads, 4.00s, pipeline 1, keep-alive\n");
    assert_line(s, "  requests   1000 (250.0 req/s), 0.75 MB/s received\n");
    assert_line(s,
                "  latency    p50 9983ns  p90 20.5us  p99 1048.6us  p99.9 12.58ms  max 20.00s\n");
    assert_line(s, "  connects   40 (10.0/s), connect time p50 10.0us  p99 10.0us\n");
    assert_line(s, "             6 more completed after the end (not counted)\n");
    assert_line(s, "  unsent     7 (scheduled, no connection free)\n");
    assert_line(s, "  unanswered 3 (in flight when the run ended)\n");
    assert_line(s,
                "  unconnected 5 (connects in flight when the run ended: no answer to the SYN)\n");
    assert_line(s, "  dropped    4 (pipelined behind a response that closed its connection)\n");
    assert_line(s, "  errors     3  reset 2  other 1\n");
    assert_null(strstr(s, "no request was answered"));
    free(s);

    /* --close and a rate; nothing of what is printed only when non-zero */
    memset(&t, 0, sizeof t);
    t.unanswered = 2;
    run.close_mode = 1;
    run.rate = 100;
    res.unsent = 0;
    s = report_str(stress_report_text, &run, &res);
    assert_line(s,
                "pc-stress http://h/: 8 connections, 2 threads, 4.00s, pipeline 1, close (churn), "
                "rate 100/s\n");
    assert_line(s, "  unanswered 2 (in flight when the run ended)\n");
    assert_line(s, "  errors     0\n");
    assert_line(s, "  no request was answered\n");
    assert_null(strstr(s, "more completed"));
    assert_null(strstr(s, "unsent"));
    assert_null(strstr(s, "unconnected"));
    assert_null(strstr(s, "dropped"));
    free(s);

    /* closed loop: no rate */
    run.rate = 0;
    s = report_str(stress_report_text, &run, &res);
    assert_non_null(strstr(s, "close (churn)\n"));
    assert_null(strstr(s, "rate"));
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_edges),
        cmocka_unit_test(test_percentile_ranks),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_json_arithmetic),
        cmocka_unit_test(test_json_url_control_bytes),
        cmocka_unit_test(test_tls_reports),
        cmocka_unit_test(test_text_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
