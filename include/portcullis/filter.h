/* SPDX-License-Identifier: MIT */
/*
 * portcullis — accept rule sets (part of the public API; included by
 * portcullis.h, may also be included alone).
 *
 * A rule set is a list of allow/deny rules over IPv4 and IPv6 prefixes,
 * compiled into longest-prefix-match tables. The accept pipeline looks up
 * each peer address: the longest matching prefix decides (deny rejects the
 * connection; allow lets it through, optionally exempt from the per-source
 * limits); an address no rule matches is allowed.
 *
 * TEXT FORMAT (one rule per line)
 *
 *     # comment                     whole-line comments, blank lines ignored
 *     deny  10.0.0.0/8              IPv4 prefix
 *     allow 10.1.0.0/16  # note     trailing comments
 *     deny  192.0.2.7               no length: a single host (/32, /128)
 *     deny  2001:db8::/32           IPv6 prefix (RFC 4291 text forms)
 *
 * Parsing is strict; any of these refuses the whole text:
 *   - an action other than "allow" or "deny" (lowercase);
 *   - a malformed address: IPv4 parts must be 0..255 without leading zeros
 *     (010 is octal to some parsers), exactly four parts; IPv6 one "::" at
 *     most, 1-4 hex digits per group, no zone index; no host names (no DNS);
 *   - a length out of range (IPv4 0..32, IPv6 0..128) or with a leading zero;
 *   - host bits set beyond the length ("10.0.0.1/8");
 *   - an IPv4-mapped IPv6 prefix (::ffff:0:0/96 or longer): mapped peers are
 *     matched as IPv4, so such a rule could never match — write it as IPv4
 *     (a shorter IPv6 prefix that covers them, such as ::/0, is accepted and
 *     matches IPv6 peers only);
 *   - the same prefix with both actions (allow on one line, deny on another),
 *     naming both lines: "FILE:LINE: 'allow P' conflicts with 'deny P' at
 *     line N" (or "at OTHERFILE:N" across sources);
 *   - anything but a comment after the address.
 * The message names the first offending line: "FILE:LINE: what is wrong".
 *
 * DUPLICATES: the same prefix again with the same action (as in lists built
 * by concatenating others) is accepted: the first line is kept, the later
 * ones are folded into it and counted. pc_rules_duplicates reports how many
 * and the first example with both lines, for the caller to log once (the
 * library logs nothing about it); the count of the set in force is also in
 * pc_server_stats_t.rule_duplicates.
 *
 * PLAIN LISTS (PC_RULES_DENY_LIST, PC_RULES_ALLOW_LIST; the shapes of FireHOL
 * .netset and Spamhaus DROP files): one address or prefix per line, the
 * action given by the caller; '#' and ';' start comments, so trailing text
 * after ';' is ignored:
 *
 *     # FireHOL-style header            ; Spamhaus-style header
 *     1.2.3.0/24                        1.10.16.0/20 ; SBL256894
 *     192.0.2.7                         2001:db8::/32 ; SBL1
 *
 * The address syntax and its errors are those of the rule text. A builder
 * (pc_rules_builder_*) combines any number of rule texts and lists into one
 * set; duplicates and conflicts across sources are handled as within one,
 * messages naming "FILE:LINE" on each side.
 *
 * THREADS AND LIFETIME
 *
 * Loading and freeing run on any thread. A loaded set is immutable apart from
 * its hit counters; pc_rules_count, pc_rules_get and pc_rules_match may be
 * called from any number of threads at once. While a rule set exists the
 * allocator may not be replaced (pc_set_allocator returns PC_EBUSY). A set
 * handed to a server belongs to the server: it is swapped in atomically
 * between two accepts, counters of rules that survive a reload (same action
 * and prefix) carry over, and the server frees it.
 */
#ifndef PORTCULLIS_FILTER_H
#define PORTCULLIS_FILTER_H

#include "portcullis.h"

#ifdef __cplusplus
extern "C" {
#endif

/* pc_rules_t is declared in portcullis.h (included above). */

typedef enum pc_rule_action_e {
    PC_RULE_ALLOW = 0,
    PC_RULE_DENY = 1,
} pc_rule_action_t;

/* Longest canonical rule text ("allow " + IPv6 address + "/128") plus NUL. */
#define PC_RULE_TEXT_MAX 64

/* One rule, as returned by pc_rules_get. */
typedef struct pc_rule_info_s {
    char text[PC_RULE_TEXT_MAX]; /* canonical form: "deny 10.0.0.0/8", "allow 2001:db8::/32" */
    pc_rule_action_t action;
    int family;          /* 4 or 6 */
    unsigned prefix_len; /* 0..32 or 0..128 */
    unsigned line;       /* line of the rule in its text (its source, for a set
                            built from several), from 1 */
    uint64_t hits;       /* connections this rule decided (longest match), including
                            those counted before reloads that kept the rule */
} pc_rule_info_t;

/* Parse and compile len bytes of rule text (need not be NUL-terminated).
 * name labels error messages ("rules.txt:12: ..."; NULL means "<string>").
 * On success *out is a new rule set (free it with pc_rules_free unless a
 * server takes it). On failure *out is NULL and, if err is not NULL, err
 * receives a NUL-terminated message of at most errlen bytes.
 * Returns 0, PC_EPARSE (bad text: "NAME:LINE: what is wrong"), PC_EINVAL
 * (out NULL, text NULL with len > 0, or more than 2^26 rules), PC_ENOMEM.
 * Any thread. */
PC_API int pc_rules_load_string(const char *text, size_t len, const char *name, pc_rules_t **out,
                                char *err, size_t errlen);

/* Read a rule file and compile it as pc_rules_load_string does, naming the
 * file in messages. An empty file (0 bytes) is refused with PC_EPARSE: a file
 * being rewritten in place reads empty, and a reload taking it would drop
 * every rule; a file of comments alone loads no rules. Returns 0, PC_EPARSE
 * ("PATH:LINE: ..."), PC_ENOENT (no
 * such file), PC_EACCES (permission denied), PC_EIO (unreadable, e.g. a
 * directory), PC_ENOMEM, PC_EINVAL; errors reading the file are reported as
 * "PATH: reason". Any thread; blocks on the file system. */
PC_API int pc_rules_load_file(const char *path, pc_rules_t **out, char *err, size_t errlen);

/* Formats of a rule source (see PLAIN LISTS above). */
typedef enum pc_rules_format_e {
    PC_RULES_TEXT = 0,       /* "allow|deny ADDR[/LEN]" lines */
    PC_RULES_DENY_LIST = 1,  /* "ADDR[/LEN]" lines, each a deny rule */
    PC_RULES_ALLOW_LIST = 2, /* "ADDR[/LEN]" lines, each an allow rule */
} pc_rules_format_t;

/* Builds one rule set from several sources (a rules file plus any number of
 * deny and allow lists). Use: pc_rules_builder_new, any number of
 * pc_rules_builder_add_file / _add_string, then pc_rules_builder_finish
 * (which frees the builder) or pc_rules_builder_free to give up. A builder is
 * used by one thread at a time; any thread. While it exists the allocator may
 * not be replaced. */
typedef struct pc_rules_builder_s pc_rules_builder_t;

/* A new, empty builder in *out. Returns 0, PC_EINVAL (out NULL), PC_ENOMEM
 * (*out NULL). */
PC_API int pc_rules_builder_new(pc_rules_builder_t **out);

/* Parse len bytes of text in format fmt as the next source, named name in
 * messages (NULL: "<string>"; the name is copied). On error nothing of this
 * source is kept (the builder stays usable) and err receives
 * "NAME:LINE: what is wrong". Returns 0, PC_EPARSE, PC_EINVAL (b NULL, bad
 * fmt, text NULL with len > 0, more than 2^26 rules in all, more than 255
 * sources), PC_ENOMEM. */
PC_API int pc_rules_builder_add_string(pc_rules_builder_t *b, pc_rules_format_t fmt,
                                       const char *text, size_t len, const char *name, char *err,
                                       size_t errlen);

/* Read the file at path and add it as pc_rules_builder_add_string does,
 * named by its path; an empty file (0 bytes) is refused as by
 * pc_rules_load_file (PC_EPARSE). Errors as pc_rules_load_file's (PC_ENOENT, PC_EACCES,
 * PC_EIO: "PATH: reason"), plus those of pc_rules_builder_add_string. Blocks
 * on the file system. */
PC_API int pc_rules_builder_add_file(pc_rules_builder_t *b, pc_rules_format_t fmt, const char *path,
                                     char *err, size_t errlen);

/* Compile everything added into one set in *out (rules numbered in the
 * order they were added: sources in order, lines in order; duplicates
 * folded). Frees b in every case. Returns 0, PC_EPARSE (a prefix with both
 * actions: "FILE:LINE: 'deny P' conflicts with 'allow P' at OTHER:LINE"),
 * PC_EINVAL (b or out NULL), PC_ENOMEM; on error *out is NULL. */
PC_API int pc_rules_builder_finish(pc_rules_builder_t *b, pc_rules_t **out, char *err,
                                   size_t errlen);

/* Free a builder without compiling (NULL is a no-op). */
PC_API void pc_rules_builder_free(pc_rules_builder_t *b);

/* Duplicates folded when r was built (same prefix, same action as an
 * earlier line). Returns how many (0 for NULL or none). When there are any,
 * *dup_line receives the line of the first one (the earliest loaded) and
 * *first_line the line it repeats (each pointer may be NULL; lines in their
 * own sources). msg (if not NULL) receives a NUL-terminated one-line summary
 * of at most msglen bytes, "" when there are none:
 *   "3 duplicate rules ignored (same prefix, same action); first: b.txt:7:
 *    deny 192.0.2.0/24, already at a.txt:2"
 * Any thread. */
PC_API size_t pc_rules_duplicates(const pc_rules_t *r, unsigned *dup_line, unsigned *first_line,
                                  char *msg, size_t msglen);

/* Free a rule set (NULL is a no-op). Not for a set handed to a server. */
PC_API void pc_rules_free(pc_rules_t *r);

/* Number of rules (0 for NULL). Rules are numbered 0..count-1 in the order
 * of their lines. Any thread. */
PC_API size_t pc_rules_count(const pc_rules_t *r);

/* Describe rule i (text, action, line, hit counter read atomically).
 * Returns 0 or PC_EINVAL (r or out NULL, i out of range). Any thread. */
PC_API int pc_rules_get(const pc_rules_t *r, size_t i, pc_rule_info_t *out);

/* Look up an address (AF_INET or AF_INET6; IPv4-mapped IPv6 is matched as
 * IPv4, so only IPv4 rules match it: ::/0 covers IPv6 peers only) without
 * counting a hit. Returns 1 and sets *action and *rule_index
 * (each may be NULL) when a rule matches (the longest prefix), 0 when none
 * does (a NULL set matches nothing), PC_EINVAL for a NULL or unsupported
 * address. Any thread. */
PC_API int pc_rules_match(const pc_rules_t *r, const struct sockaddr *sa, pc_rule_action_t *action,
                          size_t *rule_index);

/* Same with an address in text ("192.0.2.1", "2001:db8::1", strict syntax,
 * no length, no DNS). Returns 1, 0, or PC_EINVAL (bad text). Any thread. */
PC_API int pc_rules_match_text(const pc_rules_t *r, const char *addr, pc_rule_action_t *action,
                               size_t *rule_index);

#ifdef __cplusplus
}
#endif

#endif /* PORTCULLIS_FILTER_H */
