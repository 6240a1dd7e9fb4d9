/* SPDX-License-Identifier: MIT */
/* The listener's kernel filter on Windows: there is none (no socket filter
 * in Winsock), so every listener runs with the tier off and the rules are
 * judged by the accept thread alone; pc_server_listener_filter reports
 * PC_KERNEL_FILTER_OFF. The functions are server.h's, doing nothing. */
#include "server.h"

int kfilter_attach(pc_server_t *s, listener_t *l, sock_t fd, const pc_rules_t *rules)
{
    (void)s, (void)fd, (void)rules;
    l->kf.tier = PC_KERNEL_FILTER_OFF;
    return 0;
}

void kfilter_reload(pc_server_t *s, listener_t *l, pc_rules_t *old, const pc_rules_t *rules)
{
    (void)s, (void)l, (void)old, (void)rules;
}

void kfilter_detach(pc_server_t *s, listener_t *l)
{
    (void)s, (void)l;
}

void kfilter_accepted(listener_t *l, sock_t fd)
{
    (void)l, (void)fd;
}

void kfilter_source_changed(pc_server_t *s, const struct sockaddr *peer)
{
    (void)s, (void)peer;
}

int kfilter_per_source_in_kernel(const pc_server_t *s, const listener_t *l)
{
    (void)s, (void)l;
    return 0;
}

void kfilter_collect_hits(pc_server_t *s)
{
    (void)s;
}

void kfilter_counts(pc_server_t *s, pc_server_stats_t *out)
{
    (void)s, (void)out;
}
