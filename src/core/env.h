/* SPDX-License-Identifier: MIT */
/* Environment-variable knobs (PORTCULLIS_*): the one parser for test,
 * tuning and diagnosis switches read by the engine and its backends. All
 * functions only read the environment (getenv): call them from any thread
 * that does not race a setenv, in practice at server or port creation. None
 * fails: a value that cannot be read counts as unset (pc__env_uint logs it
 * once per call as a warning). */
#ifndef PC_CORE_ENV_H
#define PC_CORE_ENV_H

/* The value of name, or NULL if it is unset or empty. */
const char *pc__env(const char *name);

/* An on/off switch: 0 for "0" or "off", 1 for "1" or "on", -1 when unset or
 * anything else (the caller's default applies; anything else is also
 * logged as a warning, "NAME=... ignored (allowed: 0, off, 1, on)"). */
int pc__env_switch(const char *name);

/* One of n words: the index of the value in choices, -1 when unset or
 * empty. Any other value is ignored with a warning ("NAME=... ignored
 * (allowed: a, b)") and -1 is returned. */
int pc__env_choice(const char *name, const char *const *choices, int n);

/* A flag: 1 when set, non-empty and not "0"; 0 otherwise. */
int pc__env_flag(const char *name);

/* A decimal unsigned in [lo, hi]; def when unset or empty. A value that is
 * not a number in range is ignored with a warning ("NAME=... ignored
 * (allowed: lo..hi)") and def is returned. */
unsigned pc__env_uint(const char *name, unsigned def, unsigned lo, unsigned hi);

#endif
