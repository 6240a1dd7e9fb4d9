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
#include <bpf/bpf_endian.h>
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
    __type(value, struct kf_bucket); /* GCRA time and recent attempts */
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

/* The slot hash of a connection attempt: its full source address, port and
 * initial sequence number mixed into 32 bits, never 0 (an empty slot). */
static __always_inline __u64 attempt_hash(__u64 hi, __u64 lo, __u32 sport, __u32 isn)
{
    __u64 x = (hi * 0x9e3779b97f4a7c15ull) ^ lo;
    x = (x ^ (x >> 31)) * 0xbf58476d1ce4e5b9ull;
    x ^= (__u64)sport << 32 | isn; /* after a round: no address bit cancels them */
    x = (x ^ (x >> 29)) * 0x94d049bb133111ebull;
    x = (x ^ (x >> 32)) * 0xd6e8feb86659fd93ull;
    __u64 h = x >> 32;
    return h ? h : 1;
}

/* Per-source SYN rate as GCRA (equivalent to a token bucket of size burst
 * refilled at rate): pass when the source's theoretical arrival time is at
 * most window ns ahead of now, then push it one interval further. Before
 * that, a SYN repeating one of the source's recent attempts that took a
 * token passes free (kf_bucket). Returns KF_DROP, KF_PASS (charged) or
 * KF_RETX. */
enum { KF_DROP, KF_PASS, KF_RETX };
static __always_inline int rate_check(const struct kf_cfg *c, const struct kf_src *src, __u64 h,
                                      __u64 now)
{
    __u64 t = (now >> 30) & 0xffffff;
    __u64 mine = h << 32 | t << 8; /* this attempt's slot once it took a token */
    struct kf_bucket *b = bpf_map_lookup_elem(&buckets, src);
    if (!b) {
        struct kf_bucket nb = {.tat = now + c->interval_ns, .slot = {mine}};
        if (bpf_map_update_elem(&buckets, src, &nb, BPF_NOEXIST) == 0) return KF_PASS;
        /* another CPU inserted it first: take the common path */
        b = bpf_map_lookup_elem(&buckets, src);
        if (!b) return KF_PASS; /* evicted meanwhile (LRU) or the map is full */
    }
    /* A retransmission? The slots run from the newest attempt (0) to the
     * oldest; a charged attempt goes in front, dropping the oldest, or its
     * own used-up slot if it had one. */
    __u32 gone = KF_SLOTS - 1;
    for (__u32 i = 0; i < KF_SLOTS; i++) {
        __u64 s = b->slot[i];
        if (s && s >> 32 == h && ((t - (s >> 8)) & 0xffffff) <= KF_RETX_UNITS) {
            if ((s & 0xff) < KF_RETX_MAX && __sync_val_compare_and_swap(&b->slot[i], s, s + 1) == s)
                return KF_RETX;
            gone = i; /* used up (or a racing CPU counted it first): charged */
            break;
        }
    }
    __u64 *tat = &b->tat;
    __u64 v = *tat;
    if (v < now) {
        /* Idle source: restart from now. A CPU racing us either wins this
         * exchange or has already added its interval; both are fine. */
        __sync_val_compare_and_swap(tat, v, now);
        v = now;
    }
    if (v - now > c->window_ns) return KF_DROP;
    __sync_fetch_and_add(tat, c->interval_ns);
    /* (a race with another CPU here can lose or repeat a slot, no more) */
    for (__u32 i = KF_SLOTS - 1; i > 0; i--)
        if (i <= gone) b->slot[i] = b->slot[i - 1];
    b->slot[0] = mine;
    return KF_PASS;
}

static __always_inline int load(struct __sk_buff *skb, __u32 off, void *to, __u32 len)
{
    return bpf_skb_load_bytes_relative(skb, off, to, len, BPF_HDR_START_NET);
}

SEC("socket")
int kfilter(struct __sk_buff *skb)
{
    __u8 h[KF_HEAD6], t[14];
    const __u8 *th; /* the TCP header's first 14 bytes: in h, or read into t */
    int v4;
    if (skb->protocol == bpf_htons(KF_ETH_P_V6)) {
        /* shorter: not TCP */
        if (load(skb, 0, h, KF_HEAD6) || (h[0] >> 4) != 6) return skb->len;
        v4 = 0;
        th = h + 40;
        /* Extension headers (hop-by-hop, destination options, ...) before
         * TCP: on a TCP socket the packet is trimmed to the IPv6 payload
         * length and skb->data is at the TCP header, so what lies between
         * the network header and skb->data is the fixed header and those
         * extension headers. Under BPF_PROG_TEST_RUN skb->data is the
         * network header (nothing between): TCP is taken to follow the fixed
         * header, and a packet that says otherwise passes below. */
        __u32 ip_len = 40 + ((__u32)h[4] << 8 | h[5]);
        if (ip_len > skb->len && ip_len - skb->len != 40) {
            __u32 thoff = ip_len - skb->len;
            /* extension headers come in multiples of 8 bytes: anything else
             * is not that layout, and passes */
            if (thoff < 48 || (thoff & 7) || thoff > KF_EXT6_MAX || load(skb, thoff, t, sizeof t))
                return skb->len;
            th = t;
            h[6] = KF_IPPROTO_TCP; /* the kernel delivered it to a TCP socket */
        }
    } else if (load(skb, 0, h, KF_HEAD)) {
        return skb->len; /* no TCP packet is this short */
    } else if ((v4 = (h[0] >> 4) == 4)) {
        __u32 thoff = (__u32)(h[0] & 0xf) * 4;
        if (thoff == 20) {
            th = h + 20;
        } else {
            /* IHL below 5 is no IPv4 header (the kernel drops it before any
             * socket): the TCP header would be read inside the IP header */
            if (thoff < 20 || load(skb, thoff, t, sizeof t)) return skb->len;
            th = t;
        }
    } else if ((h[0] >> 4) == 6) {
        /* IPv6 in a packet not marked so (not expected): TCP right after
         * the fixed header (else: passed below) */
        if (load(skb, 40, t, sizeof t)) return skb->len;
        th = t;
    } else {
        return skb->len;
    }
    if ((th[13] & (KF_TCP_SYN | KF_TCP_ACK)) != KF_TCP_SYN) return skb->len;

    /* A SYN from here on. */
    __u32 zero = 0;
    struct kf_cfg *c = bpf_map_lookup_elem(&cfg, &zero);
    if (!c) return skb->len;
    struct kf_src src = {};
    __u64 ah = 0, al = 0;
    __u32 a4 = 0;
    if (v4) {
        /* TCP, and its header in this packet: a fragment past the first
         * (offset != 0) carries payload where the flags were read (the
         * kernel reassembles before any socket sees one) */
        if (h[9] != KF_IPPROTO_TCP || (h[6] & 0x1f) || h[7]) return skb->len;
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

    if (c->blocks && bpf_map_lookup_elem(&blocked, &src)) {
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

    if (!c->interval_ns) return skb->len;
    __u64 ha = attempt_hash(v4 ? (__u64)a4 << 32 : ah, v4 ? 0 : al, (__u32)th[0] << 8 | th[1],
                            (__u32)th[4] << 24 | (__u32)th[5] << 16 | (__u32)th[6] << 8 | th[7]);
    int r = rate_check(c, &src, ha, bpf_ktime_get_ns());
    if (r == KF_RETX) count(KF_ST_SYN_RETX);
    if (r != KF_DROP) return skb->len;
    if (c->shadow) {
        count(KF_ST_WOULD_DROP);
        return skb->len;
    }
    count(KF_ST_DROP_RATE);
    return 0;
}
