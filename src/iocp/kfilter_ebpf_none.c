/* SPDX-License-Identifier: MIT */
/* The eBPF tier when it is not built (no libbpf or no bpf-capable clang at
 * build time, or PC_EBPF=OFF): kf_ebpf_open says so and nothing else runs. */
#include <stdio.h>

#include "portcullis.h"
#include "iocp/kfilter_ebpf.h"

int kf_ebpf_open(const kf_ebpf_config_t *cfg, const pc_rules_t *rules, int fd, kf_ebpf_t **out,
                 char *why, size_t whylen)
{
    if (out) *out = NULL;
    if (why && whylen) snprintf(why, whylen, "eBPF tier not built");
    return PC_ENOSYS;
}

int kf_ebpf_set_rules(kf_ebpf_t *k, pc_rules_t *old_rules, const pc_rules_t *new_rules, char *why,
                      size_t whylen)
{
    if (why && whylen) snprintf(why, whylen, "eBPF tier not built");
    return PC_ENOSYS;
}

void kf_ebpf_collect_hits(kf_ebpf_t *k, pc_rules_t *rules) {}

int kf_ebpf_block_source(kf_ebpf_t *k, const addr_t *src, int block)
{
    return PC_ENOSYS;
}

void kf_ebpf_stats(kf_ebpf_t *k, kf_ebpf_stats_t *out)
{
    if (out) *out = (kf_ebpf_stats_t){0};
}

int kf_ebpf_prog_fd(const kf_ebpf_t *k)
{
    return -1;
}

int kf_ebpf_source_map_entries(const kf_ebpf_t *k, unsigned *buckets, unsigned *blocked)
{
    return PC_ENOSYS;
}

int kf_ebpf_kernel_bytes(const kf_ebpf_t *k, uint64_t *bytes)
{
    return PC_ENOSYS;
}

void kf_ebpf_close(kf_ebpf_t *k, int fd) {}

int kf_ebpf_source_bytes(const kf_ebpf_t *k, uint64_t *bytes)
{
    return PC_ENOSYS;
}
