/* SPDX-License-Identifier: MIT */
/* The listener's kernel filter on Windows: there is none (no socket filter
 * in Winsock), so every listener runs with the tier off and the rules are
 * judged by the accept thread alone; pc_server_listener_filter reports
 * PC_KERNEL_FILTER_OFF and, when a tier was asked for, why (as on Linux when
 * the kernel refuses one). An explicit tier asked for is logged as refused,
 * as on Linux. The other functions are server.h's, doing nothing. */
#include "server.h"

#include <stdio.h>

#include "core/log.h"

int kfilter_attach(pc_server_t *s, listener_t *l, sock_t fd, const pc_rules_t *rules)
{
    (void)rules;
    pc_kernel_filter_t want = s->cfg.kernel_filter;
    l->kf.tier = PC_KERNEL_FILTER_OFF;
    l->kf.why[0] = '\0';
    if (want == PC_KERNEL_FILTER_OFF) return 0;
    snprintf(l->kf.why, sizeof l->kf.why,
             "no kernel filter on Windows (conditional accept is its pre-handshake verdict)");
    char name[64];
    listener_name(fd, NULL, name, sizeof name);
    if (want == PC_KERNEL_FILTER_AUTO)
        PC_LOGI("listener %s: kernel filter off; %s", name, l->kf.why);
    else
        PC_LOGW("listener %s: kernel filter %s refused, running off: %s", name,
                pc_kernel_filter_name(want), l->kf.why);
    return 0;
}

void kfilter_reload(pc_server_t *s, listener_t *l, pc_rules_t *old, const pc_rules_t *rules)
{
    (void)s, (void)l, (void)old, (void)rules;
}

void kfilter_detach(pc_server_t *s, listener_t *l)
{
    (void)s;
    l->kf.tier = PC_KERNEL_FILTER_OFF;
    snprintf(l->kf.why, sizeof l->kf.why, "the listener is closed");
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
