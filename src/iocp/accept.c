/* The verdict pipeline as run by every accept loop (accept_posix.c after
 * accept4, accept_win.c inside the WSAAccept condition function). Runs on the
 * accept thread: no allocation, no lock, no blocking. The capacity step
 * reserves a slot in srv->active; any later rejection gives it back, so
 * max_connections holds exactly even with several listeners. */
#include "server.h"

static int reserve_slot(pc_server_t *s)
{
    uint64_t a = atomic_load(&s->active);
    while (a < s->cfg.max_connections) {
        if (atomic_compare_exchange_weak(&s->active, &a, a + 1)) return 1;
    }
    return 0;
}

pc_verdict_t accept_decide(listener_t *l, const struct sockaddr *peer,
                           const struct sockaddr *local, int *step)
{
    pc_server_t *s = l->srv;
    /* 1. capacity */
    if (!reserve_slot(s)) {
        *step = PC_STEP_CAPACITY;
        if (s->cfg.at_capacity == PC_CAPACITY_REJECT) {
            counter_add(&s->rejected[PC_STEP_CAPACITY], 1);
            return PC_REJECT;
        }
        return PC_DEFER;
    }
    /* 2-4. rules and per-source limits: see the accept filter (src/filter) */
    /* 5. user condition */
    if (s->cfg.condition) {
        pc_verdict_t v = s->cfg.condition(s->cfg.condition_user, peer, local);
        if (v != PC_ACCEPT) {
            atomic_fetch_sub(&s->active, 1);
            *step = PC_STEP_CONDITION;
            if (v == PC_REJECT) counter_add(&s->rejected[PC_STEP_CONDITION], 1);
            return v;
        }
    }
    *step = -1;
    return PC_ACCEPT;
}
