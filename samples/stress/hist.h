/* SPDX-License-Identifier: MIT */
/*
 * hist — a log-bucketed histogram of unsigned 64-bit values (pc-stress keeps
 * latencies in nanoseconds), in the manner of HdrHistogram: values below 128
 * are exact; above, each power of two is split into 128 linear buckets, so a
 * reported value is within 1/128 (< 0.8%, better than two significant
 * digits) of the recorded one. Values above 2^44 (about 4.9 hours in ns) are
 * clamped into the last bucket; the exact maximum is kept separately.
 *
 * THREADING: none. Keep one histogram per thread and merge them at the end.
 */
#ifndef PC_STRESS_HIST_H
#define PC_STRESS_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_MAX_EXP  44
#define HIST_BUCKETS  (HIST_SUB + (HIST_MAX_EXP - HIST_SUB_BITS + 1) * HIST_SUB)

typedef struct hist_s {
    uint64_t count;
    uint64_t min, max;
    uint64_t sum;
    uint64_t buckets[HIST_BUCKETS];
} hist_t;

/* Empty the histogram. */
void hist_init(hist_t *h);
/* Count one value. */
void hist_record(hist_t *h, uint64_t v);
/* Add every count of src to dst. */
void hist_merge(hist_t *dst, const hist_t *src);
/* The value at percentile p (0..100): the highest value equivalent to the
 * bucket holding that rank, capped at the exact maximum. 0 when empty. */
uint64_t hist_percentile(const hist_t *h, double p);
/* Arithmetic mean of the recorded values (exact), 0 when empty. */
double hist_mean(const hist_t *h);

#endif
