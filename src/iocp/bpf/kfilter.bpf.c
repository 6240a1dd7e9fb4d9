/* SPDX-License-Identifier: MIT */
/* The listener's kernel filter, eBPF tier: a socket filter attached to a
 * listening TCP socket (SO_ATTACH_BPF). Built with clang -target bpf and
 * embedded in the library; kfilter_ebpf.c loads it with libbpf. Layout and
 * measurements: docs/kernel-filter-ebpf.md.
 *
 * Return value: 0 drops the packet (no SYN-ACK), skb->len keeps it whole.
 * Every packet read is relative to the network header (BPF_HDR_START_NET):
 * on a TCP socket skb->data already points at the TCP header, under
 * BPF_PROG_TEST_RUN at the IP header; relative loads work in both. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "kfilter_shared.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Rule ranges, IPv4: sorted disjoint intervals covering the address space,
 * entry = start << 32 | value (value: KF_VAL_*). idx4[h] holds first(h) |
 * first(h + 1) << 32, first(h) being the first entry whose start is
 * >= h << 16, so a lookup reads both bounds of its top 16 bits' entries at
 * once and searches only those. Filled through mmap by the loader. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, 1);
} ranges4 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, KF_IDX4_N);
} idx4 SEC(".maps");

/* Rule ranges, IPv6: sorted disjoint intervals, plain binary search. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, __u32);
    __type(value, struct kf_range6);
    __uint(max_entries, 1);
} ranges6 SEC(".maps");

/* Kernel drops per rule (index = rule index), atomic adds; the loader reads
 * and zeroes them through mmap (atomic exchange). */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, 1);
} rule_drops SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, __u32);
    __type(value, struct kf_cfg);
    __uint(max_entries, 1);
} cfg SEC(".maps");

/* The maps below outlive a rule swap: the loader hands them to the next
 * program (bpf_map__reuse_fd). */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, KF_ST_N);
} stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __type(key, struct kf_src);
    __type(value, __u64); /* GCRA: theoretical arrival time, ns */
    __uint(max_entries, 1);
} buckets SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __type(key, struct kf_src);
    __type(value, __u8);
    __uint(max_entries, 1);
} blocked SEC(".maps");

static __always_inline void count(__u32 what)
{
    __u64 *c = bpf_map_lookup_elem(&stats, &what);
    if (c) *c += 1; /* per-CPU slot: no atomic needed */
}

static __always_inline __u32 lookup4(const struct kf_cfg *c, __u32 a)
{
    /* Last entry with start <= a: search [lo, hi) for the first entry
     * starting after a; the answer is the one before it. Entry 0 starts at
     * 0, so lo >= 1 keeps the answer in range. */
    __u32 lo = 1, hi = c->n4;
    if (hi > KF_SMALL4) {
        /* narrow to the entries of a's top 16 bits: entry first(h) - 1
         * starts at or before h << 16 */
        __u32 h = a >> 16;
        __u64 *p = bpf_map_lookup_elem(&idx4, &h);
        if (!p) return 0;
        __u64 b = *p;
        lo = (__u32)b, hi = (__u32)(b >> 32);
        if (lo == 0) lo = 1;
    }
    for (int i = 0; i < KF_SEARCH_STEPS4; i++) {
        if (lo >= hi) break;
        __u32 mid = lo + (hi - lo) / 2;
        __u64 *e = bpf_map_lookup_elem(&ranges4, &mid);
        if (!e) return 0;
        if ((__u32)(*e >> 32) <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    __u32 k = lo - 1;
    __u64 *e = bpf_map_lookup_elem(&ranges4, &k);
    return e ? (__u32)*e : 0;
}

static __always_inline __u32 lookup6(const struct kf_cfg *c, __u64 ah, __u64 al)
{
    __u32 lo = 1, hi = c->n6; /* entry 0 starts at :: */
    for (int i = 0; i < KF_SEARCH_STEPS6; i++) {
        if (lo >= hi) break;
        __u32 mid = lo + (hi - lo) / 2;
        struct kf_range6 *e = bpf_map_lookup_elem(&ranges6, &mid);
        if (!e) return 0;
        if (e->hi < ah || (e->hi == ah && e->lo <= al))
            lo = mid + 1;
        else
            hi = mid;
    }
    __u32 k = lo - 1;
    struct kf_range6 *e = bpf_map_lookup_elem(&ranges6, &k);
    return e ? e->val : 0;
}

/* Per-source SYN rate as GCRA (equivalent to a token bucket of size burst
 * refilled at rate): pass when the source's theoretical arrival time is at
 * most window ns ahead of now, then push it one interval further. */
static __always_inline int rate_ok(const struct kf_cfg *c, const struct kf_src *src)
{
    __u64 now = bpf_ktime_get_ns();
    __u64 *tat = bpf_map_lookup_elem(&buckets, src);
    if (!tat) {
        __u64 v = now + c->interval_ns;
        if (bpf_map_update_elem(&buckets, src, &v, BPF_NOEXIST) == 0) return 1;
        /* another CPU inserted it first: take the common path */
        tat = bpf_map_lookup_elem(&buckets, src);
        if (!tat) return 1; /* evicted meanwhile (LRU) or the map is full */
    }
    __u64 t = *tat;
    if (t < now) {
        /* Idle source: restart from now. A CPU racing us either wins this
         * exchange or has already added its interval; both are fine. */
        __sync_val_compare_and_swap(tat, t, now);
        t = now;
    }
    if (t - now > c->window_ns) return 0;
    __sync_fetch_and_add(tat, c->interval_ns);
    return 1;
}

static __always_inline int load(struct __sk_buff *skb, __u32 off, void *to, __u32 len)
{
    return bpf_skb_load_bytes_relative(skb, off, to, len, BPF_HDR_START_NET);
}

/* The first bytes of a packet: an IPv4 header without options and the TCP
 * header up to its flags, or the IPv6 header and its source address. One
 * helper call reads them for the common case. */
#define KF_HEAD 34

SEC("socket")
int kfilter(struct __sk_buff *skb)
{
    __u8 h[KF_HEAD], flags;
    __u32 thoff;
    if (load(skb, 0, h, KF_HEAD)) return skb->len; /* no TCP packet is this short */
    int v4 = (h[0] >> 4) == 4;
    if (v4) {
        thoff = (__u32)(h[0] & 0xf) * 4;
        if (thoff == 20)
            flags = h[33];
        else if (load(skb, thoff + 13, &flags, 1))
            return skb->len;
    } else if ((h[0] >> 4) == 6) {
        /* TCP right after the fixed header (else: passed below) */
        if (load(skb, 40 + 13, &flags, 1)) return skb->len;
    } else {
        return skb->len;
    }
    if ((flags & (KF_TCP_SYN | KF_TCP_ACK)) != KF_TCP_SYN) return skb->len;

    /* A SYN from here on. */
    __u32 zero = 0;
    struct kf_cfg *c = bpf_map_lookup_elem(&cfg, &zero);
    if (!c) return skb->len;
    struct kf_src src = {};
    __u64 ah = 0, al = 0;
    __u32 a4 = 0;
    if (v4) {
        if (h[9] != KF_IPPROTO_TCP) return skb->len;
        a4 = (__u32)h[12] << 24 | (__u32)h[13] << 16 | (__u32)h[14] << 8 | h[15];
    } else {
        if (h[6] != KF_IPPROTO_TCP) return skb->len;
        __builtin_memcpy(&ah, h + 8, 8);
        __builtin_memcpy(&al, h + 16, 8);
        ah = __builtin_bswap64(ah);
        al = __builtin_bswap64(al);
        if (ah == 0 && (al >> 32) == 0xffff) { /* ::ffff:a.b.c.d is IPv4 */
            v4 = 1;
            a4 = (__u32)al;
        }
    }
    if (v4) {
        src.family = 4;
        src.hi = (__u64)(a4 & c->mask4) << 32;
    } else {
        src.family = 6;
        src.hi = ah & c->mask6_hi;
        src.lo = al & c->mask6_lo;
    }
    count(KF_ST_SYN);

    if (bpf_map_lookup_elem(&blocked, &src)) {
        if (c->shadow) {
            count(KF_ST_WOULD_DROP);
            return skb->len;
        }
        count(KF_ST_DROP_MAX);
        return 0;
    }

    __u32 val = v4 ? lookup4(c, a4) : lookup6(c, ah, al);
    if (val & KF_VAL_DENY) {
        if (c->shadow) {
            count(KF_ST_WOULD_DROP);
            return skb->len;
        }
        __u32 rule = (val & KF_VAL_RULE) - 1;
        __u64 *d = bpf_map_lookup_elem(&rule_drops, &rule);
        if (d) __sync_fetch_and_add(d, 1);
        count(KF_ST_DROP_RULES);
        return 0;
    }

    if (c->interval_ns && !rate_ok(c, &src)) {
        if (c->shadow) {
            count(KF_ST_WOULD_DROP);
            return skb->len;
        }
        count(KF_ST_DROP_RATE);
        return 0;
    }
    return skb->len;
}
