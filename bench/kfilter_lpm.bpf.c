/* SPDX-License-Identifier: MIT */
/* The benchmark's comparison layout for pc-kfilter-ebpf-bench: the same SYN
 * path as src/iocp/bpf/kfilter.bpf.c (rule lookup, per-rule drop count,
 * per-CPU counter) with the rules in the kernel's BPF_MAP_TYPE_LPM_TRIE, one
 * for IPv4 and one for IPv6. No bucket and no blocked-source check: the
 * benchmark runs the library program without a rate or a per-source maximum
 * too (it then skips both). */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "kfilter_shared.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct lpm4_key {
    __u32 prefixlen;
    __u8 a[4];
};
struct lpm6_key {
    __u32 prefixlen;
    __u8 a[16];
};

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct lpm4_key);
    __type(value, __u32);
    __uint(max_entries, 1);
} lpm4 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct lpm6_key);
    __type(value, __u32);
    __uint(max_entries, 1);
} lpm6 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, 1);
} rule_drops SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, KF_ST_N);
} stats SEC(".maps");

static __always_inline int load(struct __sk_buff *skb, __u32 off, void *to, __u32 len)
{
    return bpf_skb_load_bytes_relative(skb, off, to, len, BPF_HDR_START_NET);
}

SEC("socket")
int kfilter_lpm(struct __sk_buff *skb)
{
    __u8 h[KF_HEAD6], flags;
    __u32 thoff, *val;
    int v4;
    /* the headers read as the library program reads them (one call each) */
    if (skb->protocol == bpf_htons(KF_ETH_P_V6)) {
        if (load(skb, 0, h, KF_HEAD6) || (h[0] >> 4) != 6) return skb->len;
        v4 = 0;
        flags = h[KF_HEAD6 - 1];
    } else if (load(skb, 0, h, KF_HEAD)) {
        return skb->len;
    } else if ((v4 = (h[0] >> 4) == 4)) {
        thoff = (__u32)(h[0] & 0xf) * 4;
        if (thoff == 20)
            flags = h[KF_HEAD - 1];
        else if (load(skb, thoff + 13, &flags, 1))
            return skb->len;
    } else if ((h[0] >> 4) == 6) {
        if (load(skb, 40 + 13, &flags, 1)) return skb->len;
    } else {
        return skb->len;
    }
    if ((flags & (KF_TCP_SYN | KF_TCP_ACK)) != KF_TCP_SYN) return skb->len;
    __u32 st = KF_ST_SYN;
    __u64 *c = bpf_map_lookup_elem(&stats, &st);
    if (c) *c += 1;
    if (v4) {
        struct lpm4_key k = {.prefixlen = 32};
        __builtin_memcpy(k.a, h + 12, 4);
        val = bpf_map_lookup_elem(&lpm4, &k);
    } else {
        struct lpm6_key k = {.prefixlen = 128};
        __builtin_memcpy(k.a, h + 8, 16);
        val = bpf_map_lookup_elem(&lpm6, &k);
    }
    if (val && (*val & KF_VAL_DENY)) {
        __u32 rule = (*val & KF_VAL_RULE) - 1;
        __u64 *d = bpf_map_lookup_elem(&rule_drops, &rule);
        if (d) __sync_fetch_and_add(d, 1);
        return 0;
    }
    return skb->len;
}

/* The cost of BPF_PROG_TEST_RUN itself: the benchmark subtracts it. */
SEC("socket")
int pass_all(struct __sk_buff *skb)
{
    return skb->len;
}
