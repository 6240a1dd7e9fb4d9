/* SPDX-License-Identifier: MIT */
/* Choosing the test an integration executable runs. */
#ifndef PC_TEST_PICK_H
#define PC_TEST_PICK_H

#include <stddef.h>

struct CMUnitTest;

/* With an argument (argc > 1), the one test of tests[0..n) named argv[1]
 * runs: sets cmocka's filter to it. A name that no line of the table
 * carries is an error (printed, -1): CTest registers one test per line of
 * the table, and a filter that matches nothing would let it pass without
 * running anything. Without an argument every test runs (0).
 * "--registered N" runs no test: it checks that CTest registered all of the
 * table, N being the number of tests it registered from this file, and
 * exits (0 if the table holds N tests, else 1 with both counts printed).
 * Call from main, before cmocka_run_group_tests. */
int pick_test(const struct CMUnitTest *tests, size_t n, int argc, char **argv);

#define PICK_TEST(tests, argc, argv) \
    pick_test(tests, sizeof(tests) / sizeof((tests)[0]), argc, argv)

#endif
