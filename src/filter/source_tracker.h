/* SPDX-License-Identifier: MIT */
/* Per-source tracking: concurrent connections and a token-bucket connection
 * rate per source key (the IPv4 address masked to prefix_v4, default /32;
 * the IPv6 address masked to prefix_v6, default /64).
 *
 * A bounded open-addressing table allocated once at create: a key lives in
 * one of the PROBE (16) slots after its hash. A slot is reused for another
 * key only when it is idle: no open connection and a full bucket. When a new
 * source finds no usable slot in its window the table is "full" for it; the
 * event is counted and the configured policy applies:
 *   TRACKER_FULL_REJECT  fail closed: the new source is refused;
 *   TRACKER_FULL_SHARED  the new source is counted in one shared overflow
 *                        entry with the same limits as a single source, so
 *                        all sources that find no slot together get what one
 *                        source gets. Limiting never silently stops.
 *
 * The rate is a token bucket of `burst` tokens refilled at `rate` per
 * second, kept as one word per source in the equivalent GCRA form (the
 * theoretical arrival time), so it updates with a single CAS.
 *
 * Threads: acquire from any number of accept threads at once (lock-free; two
 * threads inserting the same new source at the same instant briefly wait for
 * each other), release and undo from any thread. Never allocates after
 * create. Time is passed in by the caller (tests use a fake clock). */
#ifndef PC_FILTER_SOURCE_TRACKER_H
#define PC_FILTER_SOURCE_TRACKER_H

#include <stddef.h>
#include <stdint.h>

#include "filter/addr.h"

typedef struct tracker_s tracker_t;

typedef enum tracker_full_policy_e {
    TRACKER_FULL_REJECT = 0,
    TRACKER_FULL_SHARED = 1,
} tracker_full_policy_t;

typedef struct tracker_config_s {
    unsigned max;      /* open connections per source; 0 = no limit */
    double rate;       /* new connections per second per source; 0 = no limit */
    unsigned burst;    /* bucket size; >= 1 when rate > 0 */
    uint8_t prefix_v4; /* source key length for IPv4, 0..32 (default 32) */
    uint8_t prefix_v6; /* source key length for IPv6, 0..128 (default 64) */
    unsigned capacity; /* slots, rounded up to a power of two >= 16 (default 65536) */
    int full_policy;   /* tracker_full_policy_t (default TRACKER_FULL_SHARED) */
} tracker_config_t;

/* tracker_acquire result bits (0: within limits). */
#define TRACK_OVER_MAX  1u /* the source is at its concurrent maximum */
#define TRACK_OVER_RATE 2u /* the source's bucket is empty */
#define TRACK_FULL      4u /* no slot for a new source, policy REJECT */
/* Slot value meaning "nothing held". */
#define TRACK_NO_SLOT UINT32_MAX

typedef struct tracker_stats_s {
    uint64_t full_events; /* new sources that found no free slot */
    size_t used;          /* slots holding a source (active or idle-but-reusable) */
    size_t active;        /* sources (incl. the overflow entry) with open connections */
    size_t capacity;
} tracker_stats_t;

void tracker_config_init(tracker_config_t *c);

/* Slowest rate accepted (one token per ~11.6 days) and longest bucket
 * window, (burst - 1) / rate, in ns (2^62: ~146 years). */
#define TRACKER_RATE_MIN      1e-6
#define TRACKER_WINDOW_MAX_NS (1ull << 62)
/* Most entries a tracker has (pc_server_config_t.source_table_size). */
#define TRACKER_CAPACITY_MAX (1u << 30)

/* Allocate a tracker. Returns 0, PC_EINVAL (bad config: a prefix too long,
 * a rate below TRACKER_RATE_MIN or not a number, no burst with a rate, a
 * window over TRACKER_WINDOW_MAX_NS, an unknown policy, capacity over TRACKER_CAPACITY_MAX),
 * PC_ENOMEM. */
int tracker_create(const tracker_config_t *c, tracker_t **out);
void tracker_destroy(tracker_t *t);

/* Count a new connection from a (normalised address) at now_ns (a monotonic
 * clock in nanoseconds: the rate needs finer than milliseconds above
 * 1000/s per source with a small burst). Enforcing
 * (shadow == 0): on 0 a slot is held and stored in *slot; otherwise nothing
 * is held (*slot = TRACK_NO_SLOT) and the result says which limit refused
 * (the first one: concurrent before rate; a refused connection takes no
 * token). Shadow: every check is evaluated and returned as bits, and the slot
 * is held whenever one exists (a token is taken only if one was available).
 * Accept threads; lock-free, no allocation. */
unsigned tracker_acquire(tracker_t *t, const addr_t *a, uint64_t now_ns, int shadow,
                         uint32_t *slot);

/* The connection counted in slot closed. Any thread. TRACK_NO_SLOT: no-op. */
void tracker_release(tracker_t *t, uint32_t slot);

/* Take back an enforcing acquire whose connection a later step refused:
 * release the slot and return its token. Any thread. */
void tracker_undo(tracker_t *t, uint32_t slot);

/* Counters, kept as they change (O(1): no scan). `used` and `active` are
 * exact once acquires and releases are quiet; while they run, a snapshot can
 * be off by the few in flight. Any thread. */
void tracker_stats(const tracker_t *t, tracker_stats_t *out);

/* The same figures counted by scanning every slot (O(capacity): the default
 * table is 4.5 MB); for tests and diagnostics. Any thread. */
void tracker_scan(const tracker_t *t, tracker_stats_t *out);

/* Open connections counted for a's source (0 if it has no slot); for tests
 * and diagnostics. Any thread. */
unsigned tracker_count(const tracker_t *t, const addr_t *a);

/* Open connections counted in the shared overflow entry. */
unsigned tracker_overflow_count(const tracker_t *t);

/* Call fn(arg, key) for every source holding at least min open connections
 * now (key: its address masked to the source prefix; the overflow entry,
 * which has no address, is left out). O(capacity): a scan of the table, for
 * rare events (a kernel program replaced). Any thread; counts changing
 * meanwhile may or may not be seen. */
void tracker_each_at(const tracker_t *t, unsigned min, void (*fn)(void *arg, const addr_t *key),
                     void *arg);

#endif
