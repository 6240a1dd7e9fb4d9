/* SPDX-License-Identifier: MIT */
/* Per-source tracker (see source_tracker.h).
 *
 * Slot protocol. Each slot has a tag word: 0 (empty), or a fingerprint of
 * the key (hash bits and the family) with a state, CLAIMING or READY. The key
 * words, count and bucket live in the slot body.
 *   - Lookup: scan the key's window for READY with the fingerprint and equal
 *     key words, add one to count, then re-read the tag; if it changed the
 *     slot was being reused for another key: undo and retry.
 *   - Insert: when the whole window lacks the key, CAS the first empty or
 *     idle slot to CLAIMING (a reused slot is checked idle again after the
 *     CAS: count 0, bucket full — the lookup above and this check are the two
 *     sides of a store-then-load handshake, so at least one sees the other).
 *     Until the claim stands, the slot keeps the previous key's words, and a
 *     lookup of that key waits on it as on a claim of its own key: the claim
 *     may yet be undone (the slot found busy, or a back-off below) and the
 *     old tag put back, and a key counted absent meanwhile would be inserted
 *     a second time. Only lookups wait so (they hold no claim), so no cycle.
 *     Then look for another thread inserting the same key: a READY copy, or a
 *     CLAIMING one earlier in the window, wins and we back off (restoring the
 *     slot's previous tag); a CLAIMING one later in the window is waited for
 *     (it either backs off, having seen us, or becomes READY and we back off).
 *     So exactly one slot per key, and nobody waits in a cycle.
 * Counts only change by atomic add/sub, so concurrent limits are exact. */
#include "filter/source_tracker.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "portcullis.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/thread.h"

#define PROBE 16

/* Points where a test that includes this file runs other threads' steps
 * (tests/unit/test_tracker_claim.c): just before and after an insert's
 * claim of its candidate slot. Nothing in the library's build. */
#ifndef TRACKER_HOOK_BEFORE_CLAIM
#define TRACKER_HOOK_BEFORE_CLAIM(t, idx) ((void)0)
#endif
#ifndef TRACKER_HOOK_AFTER_CLAIM
#define TRACKER_HOOK_AFTER_CLAIM(t, idx) ((void)0)
#endif

#define ST_MASK     3ull
#define ST_CLAIMING 1ull
#define ST_READY    2ull

typedef struct tracker_slot_s {
    _Atomic uint64_t key_hi, key_lo;
    _Atomic uint64_t tat; /* GCRA theoretical arrival time, ns; <= now: bucket full */
    _Atomic uint32_t count;
    char pad[64 - 3 * sizeof(uint64_t) - sizeof(uint32_t)];
} tracker_slot_t;

struct tracker_s {
    tracker_config_t cfg;
    uint32_t mask; /* capacity - 1 */
    uint32_t capacity;
    uint32_t m4;          /* IPv4 key mask */
    uint64_t m6hi, m6lo;  /* IPv6 key mask */
    uint64_t interval_ns; /* 1/rate; 0 = no rate limit */
    uint64_t tau_ns;      /* (burst - 1) * interval */
    uint64_t seed;
    _Atomic uint64_t *tags;
    tracker_slot_t *slots; /* capacity + 1: the last is the shared overflow entry */
    void *slots_mem;
    _Atomic uint64_t full_events;
    _Atomic uint64_t used; /* slots ever made READY (never emptied again) */
    /* Sources with open connections, kept at each count's 0 <-> 1 step so
     * stats never scan the table (a scan of the default 65536 slots touches
     * 4.5 MB: milliseconds of a worker per /metrics). Kept off the cache
     * lines of the fields above (read by every acquire), as workers write it
     * on release; padded rather than aligned, as the record comes from
     * pc__calloc. */
    char pad_[64];
    _Atomic uint64_t active;
};

void tracker_config_init(tracker_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->prefix_v4 = 32;
    c->prefix_v6 = 64;
    c->capacity = 65536;
    c->full_policy = TRACKER_FULL_SHARED;
}

static uint64_t mask_bits(unsigned len) /* top len bits of 64 */
{
    return len == 0 ? 0 : len >= 64 ? ~0ull : ~0ull << (64 - len);
}

int tracker_create(const tracker_config_t *c, tracker_t **out)
{
    *out = NULL;
    if (c->prefix_v4 > 32 || c->prefix_v6 > 128) return PC_EINVAL;
    if (!(c->rate >= 0) || isinf(c->rate)) return PC_EINVAL;
    if (c->rate > 0 && c->burst < 1) return PC_EINVAL;
    if (c->full_policy != TRACKER_FULL_REJECT && c->full_policy != TRACKER_FULL_SHARED)
        return PC_EINVAL;
    if (c->capacity > TRACKER_CAPACITY_MAX) return PC_EINVAL;
    uint64_t interval = 0, tau = 0;
    if (c->rate > 0) {
        /* one token per ~11.6 days at the slowest: a slower rate is refused
         * rather than raised */
        if (c->rate < TRACKER_RATE_MIN) return PC_EINVAL;
        double iv = 1e9 / c->rate;
        interval = iv < 1 ? 1 : (uint64_t)iv;
        /* the bucket's window, (burst - 1) intervals, must stay within the
         * clock arithmetic of take_token (now + tau + interval < 2^64 for
         * ~146 years of uptime); refused, not cut short */
        if ((uint64_t)(c->burst - 1) > TRACKER_WINDOW_MAX_NS / interval) return PC_EINVAL;
        tau = (uint64_t)(c->burst - 1) * interval;
    }

    tracker_t *t = pc__calloc(1, sizeof *t);
    if (!t) return PC_ENOMEM;
    t->cfg = *c;
    uint32_t cap = PROBE;
    while (cap < c->capacity)
        cap <<= 1;
    t->capacity = cap;
    t->mask = cap - 1;
    t->m4 = (uint32_t)(mask_bits(c->prefix_v4) >> 32);
    t->m6hi = mask_bits(c->prefix_v6);
    t->m6lo = c->prefix_v6 > 64 ? mask_bits(c->prefix_v6 - 64u) : 0;
    t->interval_ns = interval;
    t->tau_ns = tau;
    /* Seeded per tracker: a peer cannot aim its sources at one window
     * without knowing it. */
    t->seed = pc__now_ns() ^ (uint64_t)(uintptr_t)t ^ 0x9e3779b97f4a7c15ull;
    t->tags = pc__calloc(cap, sizeof *t->tags);
    t->slots_mem = pc__calloc((size_t)cap + 2, sizeof(tracker_slot_t));
    if (!t->tags || !t->slots_mem) {
        tracker_destroy(t);
        return PC_ENOMEM;
    }
    uintptr_t p = ((uintptr_t)t->slots_mem + 63) & ~(uintptr_t)63; /* one slot per cache line */
    t->slots = (tracker_slot_t *)(void *)p;
    *out = t;
    return 0;
}

void tracker_destroy(tracker_t *t)
{
    if (!t) return;
    pc__free((void *)t->tags);
    pc__free(t->slots_mem);
    pc__free(t);
}

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

typedef struct key_s {
    uint64_t hi, lo;
    uint64_t tag; /* fingerprint and family, state bits clear */
    uint32_t pos; /* window start */
} src_key_t;

static inline void make_key(const tracker_t *t, const addr_t *a, src_key_t *k)
{
    uint64_t fam6;
    if (a->family == 4) {
        k->hi = addr_v4_u32(a) & t->m4;
        k->lo = 0;
        fam6 = 0;
    } else {
        k->hi = addr_load_be64(a->b) & t->m6hi;
        k->lo = addr_load_be64(a->b + 8) & t->m6lo;
        fam6 = 4;
    }
    uint64_t h = mix64(k->hi ^ t->seed ^ (fam6 << 60));
    h = mix64(h ^ k->lo ^ (t->seed << 1));
    k->tag = (h & ~7ull) | fam6;
    k->pos = (uint32_t)(h >> 32) & t->mask;
}

static inline void cpu_relax(void)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_ia32_pause();
#endif
}

/* Wait until *w no longer holds v (another accept thread is finishing an
 * insert: a few stores, unless it was preempted). */
static void wait_change(_Atomic uint64_t *w, uint64_t v)
{
    unsigned spins = 0;
    while (atomic_load_explicit(w, memory_order_acquire) == v) {
        if (++spins < 1000)
            cpu_relax();
        else
            pc__sleep_ms(1);
    }
}

static inline int slot_has_key(tracker_slot_t *s, const src_key_t *k)
{
    return atomic_load_explicit(&s->key_hi, memory_order_relaxed) == k->hi &&
           atomic_load_explicit(&s->key_lo, memory_order_relaxed) == k->lo;
}

static inline int slot_idle(tracker_slot_t *s, uint64_t now)
{
    return atomic_load_explicit(&s->count, memory_order_seq_cst) == 0 &&
           atomic_load_explicit(&s->tat, memory_order_relaxed) <= now;
}

/* Count one connection in s; the source becomes active at its first. */
static uint32_t count_up(tracker_t *t, tracker_slot_t *s)
{
    uint32_t n = atomic_fetch_add_explicit(&s->count, 1, memory_order_seq_cst);
    if (n == 0) atomic_fetch_add_explicit(&t->active, 1, memory_order_relaxed);
    return n + 1;
}

static void count_down(tracker_t *t, tracker_slot_t *s)
{
    uint32_t c = atomic_load_explicit(&s->count, memory_order_relaxed);
    while (c > 0 && !atomic_compare_exchange_weak_explicit(
                        &s->count, &c, c - 1, memory_order_release, memory_order_relaxed)) {
    }
    if (c == 0)
        PC_LOGE("source tracker: release without a matching acquire");
    else if (c == 1)
        atomic_fetch_sub_explicit(&t->active, 1, memory_order_relaxed);
}

/* Find (or insert) the key's slot and count one connection in it. Returns
 * the slot index, or TRACK_NO_SLOT when the window has no usable slot. */
static uint32_t find_and_count(tracker_t *t, const src_key_t *k, uint64_t now, uint32_t *count)
{
    const uint64_t ready = k->tag | ST_READY, claiming = k->tag | ST_CLAIMING;
    for (;;) {
        uint32_t cand = TRACK_NO_SLOT;
        uint64_t cand_tag = 0;
        int cand_off = 0, again = 0;
        for (int i = 0; i < PROBE && !again; i++) {
            uint32_t idx = (k->pos + (uint32_t)i) & t->mask;
            tracker_slot_t *s = &t->slots[idx];
            uint64_t tg = atomic_load_explicit(&t->tags[idx], memory_order_acquire);
            if (tg == ready && slot_has_key(s, k)) {
                uint32_t n = count_up(t, s);
                if (atomic_load_explicit(&t->tags[idx], memory_order_seq_cst) == tg) {
                    *count = n;
                    return idx;
                }
                count_down(t, s);
                again = 1;
            } else if ((tg & ST_MASK) == ST_CLAIMING && (tg == claiming || slot_has_key(s, k))) {
                /* Another thread inserts this key, or claims this key's idle
                 * slot for another key and may yet put it back (the key
                 * words change only once that claim is sure to stand):
                 * either way the key may be here after all. Counting it
                 * absent would put it in a second slot and split its count. */
                wait_change(&t->tags[idx], tg);
                again = 1;
            } else if (cand == TRACK_NO_SLOT &&
                       (tg == 0 || ((tg & ST_MASK) == ST_READY && slot_idle(s, now)))) {
                cand = idx;
                cand_tag = tg;
                cand_off = i;
            }
        }
        if (again) continue;
        if (cand == TRACK_NO_SLOT) return TRACK_NO_SLOT;

        TRACKER_HOOK_BEFORE_CLAIM(t, cand);
        uint64_t expect = cand_tag;
        if (!atomic_compare_exchange_strong_explicit(&t->tags[cand], &expect, claiming,
                                                     memory_order_seq_cst, memory_order_relaxed))
            continue;
        TRACKER_HOOK_AFTER_CLAIM(t, cand);
        tracker_slot_t *s = &t->slots[cand];
        if (cand_tag != 0 && !slot_idle(s, now)) {
            atomic_store_explicit(&t->tags[cand], cand_tag, memory_order_release);
            continue;
        }
        int back_off = 0;
        for (int i = 0; i < PROBE; i++) {
            if (i == cand_off) continue;
            uint32_t idx = (k->pos + (uint32_t)i) & t->mask;
            uint64_t tg = atomic_load_explicit(&t->tags[idx], memory_order_seq_cst);
            if (tg == ready && slot_has_key(&t->slots[idx], k)) {
                back_off = 1;
                break;
            }
            if (tg == claiming) {
                if (i < cand_off) {
                    back_off = 1;
                    break;
                }
                wait_change(&t->tags[idx], tg);
                i = -1; /* rescan the window */
            }
        }
        if (back_off) {
            atomic_store_explicit(&t->tags[cand], cand_tag, memory_order_release);
            continue;
        }
        atomic_store_explicit(&s->key_hi, k->hi, memory_order_relaxed);
        atomic_store_explicit(&s->key_lo, k->lo, memory_order_relaxed);
        atomic_store_explicit(&s->tat, 0, memory_order_relaxed);
        atomic_store_explicit(&t->tags[cand], ready, memory_order_release);
        if (cand_tag == 0) atomic_fetch_add_explicit(&t->used, 1, memory_order_relaxed);
        /* The next pass finds it READY and counts through the normal path. */
    }
}

/* GCRA: conforming if the theoretical arrival time is at most tau ahead. */
static int take_token(tracker_t *t, tracker_slot_t *s, uint64_t now)
{
    uint64_t tat = atomic_load_explicit(&s->tat, memory_order_relaxed);
    for (;;) {
        uint64_t start = tat > now ? tat : now;
        if (start - now > t->tau_ns) return 0;
        if (atomic_compare_exchange_weak_explicit(&s->tat, &tat, start + t->interval_ns,
                                                  memory_order_relaxed, memory_order_relaxed))
            return 1;
    }
}

static void give_token(tracker_t *t, tracker_slot_t *s)
{
    uint64_t tat = atomic_load_explicit(&s->tat, memory_order_relaxed);
    for (;;) {
        uint64_t n = tat > t->interval_ns ? tat - t->interval_ns : 0;
        if (atomic_compare_exchange_weak_explicit(&s->tat, &tat, n, memory_order_relaxed,
                                                  memory_order_relaxed))
            return;
    }
}

unsigned tracker_acquire(tracker_t *t, const addr_t *a, uint64_t now, int shadow, uint32_t *slot)
{
    src_key_t k;
    uint32_t n = 0;
    unsigned res = 0;
    *slot = TRACK_NO_SLOT;
    make_key(t, a, &k);
    uint32_t idx = find_and_count(t, &k, now, &n);
    if (idx == TRACK_NO_SLOT) {
        atomic_fetch_add_explicit(&t->full_events, 1, memory_order_relaxed);
        if (t->cfg.full_policy != TRACKER_FULL_SHARED) return TRACK_FULL;
        idx = t->capacity;
        n = count_up(t, &t->slots[idx]);
    }
    tracker_slot_t *s = &t->slots[idx];
    if (t->cfg.max && n > t->cfg.max) {
        res |= TRACK_OVER_MAX;
        if (!shadow) {
            count_down(t, s);
            return res;
        }
    }
    if (t->interval_ns && !take_token(t, s, now)) {
        res |= TRACK_OVER_RATE;
        if (!shadow) {
            count_down(t, s);
            return res;
        }
    }
    *slot = idx;
    return res;
}

void tracker_release(tracker_t *t, uint32_t slot)
{
    if (slot == TRACK_NO_SLOT) return;
    if (slot > t->capacity) {
        PC_LOGE("source tracker: release of an invalid slot %u", (unsigned)slot);
        return;
    }
    count_down(t, &t->slots[slot]);
}

void tracker_undo(tracker_t *t, uint32_t slot)
{
    if (slot == TRACK_NO_SLOT || slot > t->capacity) return;
    if (t->interval_ns) give_token(t, &t->slots[slot]);
    count_down(t, &t->slots[slot]);
}

void tracker_stats(const tracker_t *t, tracker_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->full_events = atomic_load_explicit(&t->full_events, memory_order_relaxed);
    out->capacity = t->capacity;
    out->used = (size_t)atomic_load_explicit(&t->used, memory_order_relaxed);
    out->active = (size_t)atomic_load_explicit(&t->active, memory_order_relaxed);
}

void tracker_scan(const tracker_t *t, tracker_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->full_events = atomic_load_explicit(&t->full_events, memory_order_relaxed);
    out->capacity = t->capacity;
    for (uint32_t i = 0; i <= t->capacity; i++) {
        if (i < t->capacity) {
            uint64_t tg = atomic_load_explicit(&t->tags[i], memory_order_relaxed);
            if ((tg & ST_MASK) != ST_READY) continue;
            out->used++;
        }
        if (atomic_load_explicit(&t->slots[i].count, memory_order_relaxed) > 0) out->active++;
    }
}

unsigned tracker_count(const tracker_t *t, const addr_t *a)
{
    src_key_t k;
    make_key(t, a, &k);
    for (int i = 0; i < PROBE; i++) {
        uint32_t idx = (k.pos + (uint32_t)i) & t->mask;
        uint64_t tg = atomic_load_explicit(&t->tags[idx], memory_order_acquire);
        if (tg == (k.tag | ST_READY) && slot_has_key(&t->slots[idx], &k))
            return atomic_load_explicit(&t->slots[idx].count, memory_order_relaxed);
    }
    return 0;
}

void tracker_each_at(const tracker_t *t, unsigned min, void (*fn)(void *arg, const addr_t *key),
                     void *arg)
{
    for (uint32_t i = 0; i < t->capacity; i++) {
        uint64_t tg = atomic_load_explicit(&t->tags[i], memory_order_acquire);
        if ((tg & ST_MASK) != ST_READY) continue;
        const tracker_slot_t *s = &t->slots[i];
        if (atomic_load_explicit(&s->count, memory_order_relaxed) < min) continue;
        uint64_t hi = atomic_load_explicit(&s->key_hi, memory_order_relaxed);
        uint64_t lo = atomic_load_explicit(&s->key_lo, memory_order_relaxed);
        if (atomic_load_explicit(&t->tags[i], memory_order_acquire) != tg) continue; /* reused */
        addr_t a;
        if (tg & 4) /* the family bit of the tag (make_key) */
            addr_set_v6(&a, hi, lo);
        else
            addr_set_v4(&a, (uint32_t)hi);
        fn(arg, &a);
    }
}

unsigned tracker_overflow_count(const tracker_t *t)
{
    return atomic_load_explicit(&t->slots[t->capacity].count, memory_order_relaxed);
}
