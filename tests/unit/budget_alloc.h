/* SPDX-License-Identifier: MIT */
/* A counting allocator for tests: once its budget of allocations is spent
 * every further allocation fails; it counts the blocks still live, and
 * their bytes, so a test can assert that an error path leaked nothing or
 * that memory was given back. Atomic: servers allocate
 * from worker threads too. Install with pc_set_allocator(&budget_allocator). */
#ifndef PC_TEST_BUDGET_ALLOC_H
#define PC_TEST_BUDGET_ALLOC_H

#include "portcullis.h"

extern const pc_allocator_t budget_allocator;

/* Allow budget more allocations (< 0: unlimited) and zero the live and
 * failed counts. */
void budget_alloc_reset(long budget);
/* Blocks allocated and not yet freed since the last reset. */
long budget_alloc_live(void);
/* Bytes of those blocks (the sizes asked for). */
long long budget_alloc_live_bytes(void);
/* Allocations refused since the last reset. */
long budget_alloc_failed(void);

#endif
