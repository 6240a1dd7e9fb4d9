/* SPDX-License-Identifier: MIT */
/* pc-chat's server logic: a line broadcast server (a new client is greeted
 * with "* welcome\n"; every line after it is a broadcast) whose broadcaster is a
 * thread of its own that reaches connections only by id (pc_server_conn_ids,
 * pc_server_send_to, pc_server_abort_id, pc_server_post_to). Used by pc-chat
 * and by the integration tests, on every backend. */
#ifndef PC_SAMPLES_CHAT_APP_H
#define PC_SAMPLES_CHAT_APP_H

#include <stddef.h>
#include <stdint.h>

#include "portcullis.h"

typedef struct chat_s chat_t;

typedef struct chat_config_s {
    /* A line longer than this (without its newline): the client is told
     * and closed. Default 1024; less than 16 runs as 16. */
    size_t max_line;
    /* Bytes of lines waiting for the broadcaster. A talker whose line takes
     * them past it stops being read until the broadcaster has caught up
     * (it resumes it with pc_server_post_to). Default 64 KiB. */
    size_t inbox_limit;
    /* The broadcaster sends at most this much per connection per round;
     * keep it well under send_queue_limit, so that only a client that
     * really stopped reading is refused. Default 16 KiB. */
    size_t batch_max;
    /* A batch refused for lack of room (the client's send_queue_limit, or
     * the server's max_buffered_bytes) is retried for up to this long,
     * counted once per round however many clients are refused: a reader
     * slowed for a moment loses nothing, and everybody waits at most this
     * long for those that stopped reading. Then a client whose queue has
     * not shrunk meanwhile (not empty) is kicked; a reader refused only by
     * the server's cap is retried for another such window. Default 1000 ms,
     * at most 60000. */
    unsigned patience_ms;
} chat_config_t;

typedef struct chat_stats_s {
    uint64_t lines;   /* lines received */
    uint64_t rounds;  /* broadcast rounds */
    uint64_t kicked;  /* clients aborted because their queue was full */
    uint64_t paused;  /* talkers paused by the inbox limit */
    uint64_t resumed; /* ... and resumed by the broadcaster */
    pc_conn_id_t last_kicked;
} chat_stats_t;

void chat_config_init(chat_config_t *cc);
/* Create the chat and install its callbacks and user_data in cfg (the
 * caller then creates the server from cfg; set cfg->send_queue_limit
 * first: the broadcaster reads it). Returns 0 or PC_ENOMEM. */
int chat_create(const chat_config_t *cc, pc_server_config_t *cfg, chat_t **out);
/* Start the broadcaster thread for the started server srv. Returns 0 or a
 * PC_E* code. */
int chat_start(chat_t *ch, pc_server_t *srv);
/* Stop and join the broadcaster (after pc_server_stop). */
void chat_stop(chat_t *ch);
void chat_stats(chat_t *ch, chat_stats_t *out);
void chat_destroy(chat_t *ch);

#endif
