/* SPDX-License-Identifier: MIT */
/* Log-bucketed histogram: bucket index from the position of the highest set
 * bit and the HIST_SUB_BITS bits below it. */
#include "hist.h"

#include <string.h>

static unsigned top_bit(uint64_t v)
{
#if defined(__GNUC__)
    return 63u - (unsigned)__builtin_clzll(v);
#else
    unsigned e = 0;
    while (v >>= 1)
        e++;
    return e;
#endif
}

static size_t bucket_of(uint64_t v)
{
    if (v < 2 * HIST_SUB) return (size_t)v; /* exact: the first two runs */
    unsigned e = top_bit(v);
    if (e > HIST_MAX_EXP) return HIST_BUCKETS - 1;
    uint64_t m = v >> (e - HIST_SUB_BITS); /* HIST_SUB .. 2*HIST_SUB-1 */
    return HIST_SUB + (size_t)(e - HIST_SUB_BITS) * HIST_SUB + (size_t)(m - HIST_SUB);
}

/* Highest value that lands in bucket i. */
static uint64_t bucket_high(size_t i)
{
    if (i < 2 * HIST_SUB) return (uint64_t)i;
    unsigned e = HIST_SUB_BITS + (unsigned)((i - HIST_SUB) / HIST_SUB);
    uint64_t m = HIST_SUB + (uint64_t)((i - HIST_SUB) % HIST_SUB);
    return ((m + 1) << (e - HIST_SUB_BITS)) - 1;
}

void hist_init(hist_t *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void hist_record(hist_t *h, uint64_t v)
{
    h->buckets[bucket_of(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min) h->min = v;
    if (v > h->max) h->max = v;
}

void hist_merge(hist_t *dst, const hist_t *src)
{
    if (!src->count) return;
    for (size_t i = 0; i < HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min) dst->min = src->min;
    if (src->max > dst->max) dst->max = src->max;
}

uint64_t hist_percentile(const hist_t *h, double p)
{
    if (!h->count) return 0;
    if (p <= 0) return h->min;
    if (p >= 100) return h->max;
    /* rank of the value: the smallest r with r >= p% of count (1-based) */
    double want = p / 100.0 * (double)h->count;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want) rank++;
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = bucket_high(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

double hist_mean(const hist_t *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
