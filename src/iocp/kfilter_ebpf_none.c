/* SPDX-License-Identifier: MIT */
/* The eBPF tier when it is not built (no libbpf at build time): every open
 * says so, and the listener's kernel filter tries the classic tier instead. */
#include <stdio.h>

#include "kfilter_ebpf.h"

int kf_ebpf_open(const kf_ebpf_config_t *cfg, const pc_rules_t *rules, int fd, kf_ebpf_t **out,
                 char *why, size_t whylen)
{
    (void)cfg;
    (void)rules;
    (void)fd;
    if (out) *out = NULL;
    if (why && whylen) snprintf(why, whylen, "eBPF tier not built");
    return PC_ENOSYS;
}

int kf_ebpf_set_rules(kf_ebpf_t *k, pc_rules_t *old_rules, const pc_rules_t *new_rules, char *why,
                      size_t whylen)
{
    (void)k;
    (void)old_rules;
    (void)new_rules;
    if (why && whylen) snprintf(why, whylen, "eBPF tier not built");
    return PC_ENOSYS;
}

void kf_ebpf_collect_hits(kf_ebpf_t *k, pc_rules_t *rules)
{
    (void)k;
    (void)rules;
}

int kf_ebpf_block_source(kf_ebpf_t *k, const pc_addr_t *src, int block)
{
    (void)k;
    (void)src;
    (void)block;
    return PC_ENOSYS;
}

void kf_ebpf_stats(kf_ebpf_t *k, kf_ebpf_stats_t *out)
{
    (void)k;
    if (out) *out = (kf_ebpf_stats_t){0};
}

void kf_ebpf_close(kf_ebpf_t *k, int fd)
{
    (void)k;
    (void)fd;
}
