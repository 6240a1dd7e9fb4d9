/* SPDX-License-Identifier: MIT */
/* Rule sets: the address parser, the text format (every error with its line
 * and message), lookups, files, allocation failures. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "budget_alloc.h"

#include "portcullis.h"
#include "portcullis/filter.h"
#include "filter/addr.h"
#include "filter/rules.h"

/* ---- addresses ------------------------------------------------------------ */

static void expect_addr(const char *text, int family, const char *hex, const char *canon)
{
    addr_t a;
    const char *why = NULL;
    int rc = addr_parse(text, strlen(text), &a, &why);
    if (rc != 0) fail_msg("'%s' refused: %s", text, why);
    assert_int_equal(a.family, family);
    char got[40] = "";
    for (unsigned i = 0; i < (family == 4 ? 4u : 16u); i++)
        snprintf(got + 2 * i, sizeof got - 2 * i, "%02x", a.b[i]);
    assert_string_equal(got, hex);
    char f[PC_ADDR_STRLEN];
    size_t n = addr_format(&a, f, sizeof f);
    assert_int_equal(n, strlen(canon));
    assert_string_equal(f, canon);
}

static void expect_bad_addr(const char *text, const char *reason)
{
    addr_t a;
    const char *why = NULL;
    if (addr_parse(text, strlen(text), &a, &why) == 0) fail_msg("'%s' accepted", text);
    assert_non_null(why);
    if (!strstr(why, reason)) fail_msg("'%s': reason '%s', expected '%s'", text, why, reason);
}

static void test_addr_valid(void **state)
{
    (void)state;
    expect_addr("0.0.0.0", 4, "00000000", "0.0.0.0");
    expect_addr("255.255.255.255", 4, "ffffffff", "255.255.255.255");
    expect_addr("10.0.0.1", 4, "0a000001", "10.0.0.1");
    expect_addr("::", 6, "00000000000000000000000000000000", "::");
    expect_addr("::1", 6, "00000000000000000000000000000001", "::1");
    expect_addr("1::", 6, "00010000000000000000000000000000", "1::");
    expect_addr("2001:DB8:0:0:8:800:200C:417A", 6, "20010db80000000000080800200c417a",
                "2001:db8::8:800:200c:417a");
    expect_addr("2001:0db8:0000:0000:0000:0000:0000:0001", 6, "20010db8000000000000000000000001",
                "2001:db8::1");
    expect_addr("::ffff:192.0.2.1", 6, "00000000000000000000ffffc0000201", "::ffff:192.0.2.1");
    expect_addr("1:2:3:4:5:6:7::", 6, "00010002000300040005000600070000", "1:2:3:4:5:6:7:0");
    expect_addr("::2:3:4:5:6:7:8", 6, "00000002000300040005000600070008", "0:2:3:4:5:6:7:8");
    expect_addr("1:2:3:4:5:6:1.2.3.4", 6, "00010002000300040005000601020304",
                "1:2:3:4:5:6:102:304");
    expect_addr("1:0:0:1:0:0:0:1", 6, "00010000000000010000000000000001", "1:0:0:1::1");
    expect_addr("1:0:0:2:0:0:3:4", 6, "00010000000000020000000000030004", "1::2:0:0:3:4");
    expect_addr("fe80::", 6, "fe800000000000000000000000000000", "fe80::");
    expect_addr("::FFFF:ABCD", 6, "000000000000000000000000ffffabcd", "::ffff:abcd");
}

static void test_addr_invalid(void **state)
{
    (void)state;
    expect_bad_addr("", "empty");
    expect_bad_addr("1.2.3", "four dotted parts");
    expect_bad_addr("1.2.3.4.5", "more than four parts");
    expect_bad_addr("1.2.3.256", "greater than 255");
    expect_bad_addr("1.2.3.1000", "more than three digits");
    expect_bad_addr("01.2.3.4", "leading zero");
    expect_bad_addr("1.2.3.00", "leading zero");
    expect_bad_addr("1..3.4", "empty or non-decimal");
    expect_bad_addr(".1.2.3", "empty or non-decimal");
    expect_bad_addr("1.2.3.4.", "more than four parts");
    expect_bad_addr("1.2.3.-4", "empty or non-decimal");
    expect_bad_addr("1.2.3.4x", "unexpected character");
    expect_bad_addr("1.2.3x4", "unexpected character");
    expect_bad_addr("example.com", "empty or non-decimal");
    expect_bad_addr("1::2::3", "more than one '::'");
    expect_bad_addr(":::", "empty group");
    expect_bad_addr(":1::", "single ':'");
    expect_bad_addr("1:", "single ':'");
    expect_bad_addr("1:2:3:4:5:6:7:8:9", "more than eight groups");
    expect_bad_addr("1:2:3:4:5:6:7:8::", "at least one zero group");
    expect_bad_addr("12345::", "more than four hex digits");
    expect_bad_addr("1:2:3", "eight groups");
    expect_bad_addr("g::", "unexpected character");
    expect_bad_addr("fe80::1%eth0", "zone index");
    expect_bad_addr("fe80::%eth0", "zone index");
    expect_bad_addr("1:2g::", "unexpected character");
    expect_bad_addr("::1.2.3", "embedded IPv4");
    expect_bad_addr("::1.2.3.4:5", "embedded IPv4");
    expect_bad_addr("1:2:3:4:5:6:7:1.2.3.4", "too many groups");
    expect_bad_addr("[::1]", "unexpected character");
}

static void test_addr_mask_normalize(void **state)
{
    (void)state;
    addr_t a;
    assert_int_equal(addr_parse("::ffff:10.1.2.3", 15, &a, NULL), 0);
    assert_true(addr_is_v4mapped(&a));
    addr_normalize(&a);
    assert_int_equal(a.family, 4);
    assert_int_equal(addr_v4_u32(&a), 0x0a010203);
    assert_true(addr_host_bits_set(&a, 8));
    addr_mask(&a, 12);
    assert_int_equal(addr_v4_u32(&a), 0x0a000000);
    assert_false(addr_host_bits_set(&a, 12));
    assert_int_equal(addr_parse("2001:db8:ffff::1", 16, &a, NULL), 0);
    addr_mask(&a, 36);
    char f[PC_ADDR_STRLEN];
    addr_format(&a, f, sizeof f);
    assert_string_equal(f, "2001:db8:f000::");
    /* truncating format still terminates */
    assert_int_equal(addr_format(&a, f, 5), strlen("2001:db8:f000::"));
    assert_string_equal(f, "2001");
}

/* addr_to_sockaddr: the address and port in the family's sockaddr, and
 * back through addr_from_sockaddr; a v4-mapped address stays AF_INET6
 * there; too small a buffer is refused and left as it was. */
static void test_addr_sockaddr_round_trip(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    addr_t a, b;
    assert_int_equal(addr_parse("192.0.2.7", 9, &a, NULL), 0);
    memset(&ss, 0xab, sizeof ss);
    assert_int_equal(addr_to_sockaddr(&a, 8080, (struct sockaddr *)&ss, sizeof ss),
                     (int)sizeof(struct sockaddr_in));
    const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
    assert_int_equal(in->sin_family, AF_INET);
    assert_int_equal(ntohs(in->sin_port), 8080);
    assert_memory_equal(&in->sin_addr, a.b, 4);
    assert_int_equal(((const unsigned char *)&ss)[sizeof ss - 1], 0); /* all of it zeroed */
    assert_int_equal(addr_from_sockaddr((struct sockaddr *)&ss, &b), 0);
    assert_true(b.family == 4 && memcmp(a.b, b.b, 4) == 0);

    assert_int_equal(addr_parse("2001:db8::1", 11, &a, NULL), 0);
    assert_int_equal(addr_to_sockaddr(&a, 443, (struct sockaddr *)&ss, sizeof ss),
                     (int)sizeof(struct sockaddr_in6));
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
    assert_int_equal(in6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(in6->sin6_port), 443);
    assert_int_equal(addr_from_sockaddr((struct sockaddr *)&ss, &b), 0);
    assert_true(b.family == 6 && memcmp(a.b, b.b, 16) == 0);

    assert_int_equal(addr_parse("::ffff:10.1.2.3", 15, &a, NULL), 0);
    assert_int_equal(addr_to_sockaddr(&a, 0, (struct sockaddr *)&ss, sizeof ss),
                     (int)sizeof(struct sockaddr_in6));
    assert_int_equal(in6->sin6_family, AF_INET6);
    assert_memory_equal(&in6->sin6_addr, a.b, 16);

    unsigned char small[sizeof(struct sockaddr_in6) - 1];
    memset(small, 0xab, sizeof small);
    assert_int_equal(addr_parse("192.0.2.7", 9, &b, NULL), 0);
    assert_int_equal(
        addr_to_sockaddr(&b, 0, (struct sockaddr *)(void *)small, sizeof(struct sockaddr_in) - 1),
        PC_EINVAL);
    assert_int_equal(small[0], 0xab);
    assert_int_equal(addr_to_sockaddr(&a, 0, (struct sockaddr *)(void *)small, sizeof small),
                     PC_EINVAL);
    assert_int_equal(small[0], 0xab);
}

/* ---- the text format ------------------------------------------------------ */

static pc_rules_t *load_ok(const char *text)
{
    pc_rules_t *r = NULL;
    char err[256];
    int rc = pc_rules_load_string(text, strlen(text), "t.rules", &r, err, sizeof err);
    if (rc != 0) fail_msg("load failed (%s): %s", pc_err_name(rc), err);
    assert_non_null(r);
    return r;
}

static void expect_rule(const pc_rules_t *r, size_t i, const char *text, unsigned line)
{
    pc_rule_info_t info;
    assert_int_equal(pc_rules_get(r, i, &info), 0);
    assert_string_equal(info.text, text);
    assert_int_equal(info.line, line);
    assert_int_equal(info.hits, 0);
    assert_int_equal(info.action, strncmp(text, "deny", 4) == 0 ? PC_RULE_DENY : PC_RULE_ALLOW);
}

static void expect_match(const pc_rules_t *r, const char *addr, int matched, size_t idx)
{
    pc_rule_action_t act = PC_RULE_ALLOW;
    size_t got = 999;
    int rc = pc_rules_match_text(r, addr, &act, &got);
    if (rc != matched) fail_msg("%s: matched %d, expected %d", addr, rc, matched);
    if (matched == 1 && got != idx) fail_msg("%s: rule %zu, expected %zu", addr, got, idx);
}

static void test_format_valid(void **state)
{
    (void)state;
    const char *text = "# header comment\n"
                       "\n"
                       "   deny 10.0.0.0/8   # trailing comment\n"
                       "allow 10.1.0.0/16\n"
                       "\tdeny\t192.0.2.7\r\n"
                       "deny 2001:DB8::/32#attached comment\n"
                       "   \t  \n"
                       "allow ::/0\n"
                       "deny 0.0.0.0/0\n"
                       "#deny 1.1.1.1\n"
                       "deny ::fffe:0:0/95\n"
                       "deny 198.51.100.0/24"; /* no final newline */
    pc_rules_t *r = load_ok(text);
    assert_int_equal(pc_rules_count(r), 8);
    expect_rule(r, 0, "deny 10.0.0.0/8", 3);
    expect_rule(r, 1, "allow 10.1.0.0/16", 4);
    expect_rule(r, 2, "deny 192.0.2.7/32", 5);
    expect_rule(r, 3, "deny 2001:db8::/32", 6);
    expect_rule(r, 4, "allow ::/0", 8);
    expect_rule(r, 5, "deny 0.0.0.0/0", 9);
    expect_rule(r, 6, "deny ::fffe:0:0/95", 11);
    expect_rule(r, 7, "deny 198.51.100.0/24", 12);
    pc_rule_info_t info;
    assert_int_equal(pc_rules_get(r, 3, &info), 0);
    assert_int_equal(info.family, 6);
    assert_int_equal(info.prefix_len, 32);
    assert_int_equal(pc_rules_get(r, 8, &info), PC_EINVAL);

    expect_match(r, "10.2.3.4", 1, 0);
    expect_match(r, "10.1.3.4", 1, 1);
    expect_match(r, "192.0.2.7", 1, 2);
    expect_match(r, "192.0.2.8", 1, 5);
    expect_match(r, "198.51.100.255", 1, 7);
    expect_match(r, "2001:db8:1::1", 1, 3);
    expect_match(r, "2001:db9::1", 1, 4);
    expect_match(r, "::1", 1, 4);
    expect_match(r, "::fffe:1:2", 1, 6);
    /* a mapped address is IPv4: 10.0.0.0/8, not ::fffe:0:0/95 */
    expect_match(r, "::ffff:10.9.9.9", 1, 0);
    assert_int_equal(pc_rules_match_text(r, "10.0.0.0/8", NULL, NULL), PC_EINVAL);
    assert_int_equal(pc_rules_match_text(r, "host.example", NULL, NULL), PC_EINVAL);
    pc_rules_free(r);
}

/* A UTF-8 byte-order mark at the start is skipped (some Windows editors
 * write one), in every format; one anywhere else is an error. */
static void test_format_bom(void **state)
{
    (void)state;
    pc_rules_t *r = load_ok("\xef\xbb\xbf"
                            "deny 192.0.2.0/24\r\n"
                            "allow 192.0.2.7\r\n");
    assert_int_equal(pc_rules_count(r), 2);
    expect_rule(r, 0, "deny 192.0.2.0/24", 1);
    expect_match(r, "192.0.2.9", 1, 0);
    pc_rules_free(r);
    r = load_ok("\xef\xbb\xbf# a comment first\n");
    assert_int_equal(pc_rules_count(r), 0);
    pc_rules_free(r);
    /* the mark alone: what an editor saves for an empty UTF-8 file */
    r = load_ok("\xef\xbb\xbf");
    assert_int_equal(pc_rules_count(r), 0);
    pc_rules_free(r);

    pc_rules_builder_t *b = NULL;
    char err[256];
    const char *list = "\xef\xbb\xbf"
                       "198.51.100.0/24\n";
    assert_int_equal(pc_rules_builder_new(&b), 0);
    assert_int_equal(pc_rules_builder_add_string(b, PC_RULES_DENY_LIST, list, strlen(list), "l.txt",
                                                 err, sizeof err),
                     0);
    assert_int_equal(pc_rules_builder_finish(b, &r, err, sizeof err), 0);
    expect_rule(r, 0, "deny 198.51.100.0/24", 1);
    pc_rules_free(r);

    const char *second = "deny 192.0.2.1\n\xef\xbb\xbf"
                         "deny 192.0.2.2\n";
    r = NULL;
    assert_int_equal(pc_rules_load_string(second, strlen(second), "t.rules", &r, err, sizeof err),
                     PC_EPARSE);
    assert_null(r);
    assert_true(strncmp(err, "t.rules:2: unknown action", 25) == 0);
}

/* Every whitespace byte but the newline separates and pads: tab, CR,
 * vertical tab, form feed. */
static void test_format_whitespace(void **state)
{
    (void)state;
    pc_rules_t *r = load_ok("\v\fdeny\v10.0.0.0/8\f\r\n"
                            "allow\f10.1.0.0/16\v# c\n");
    assert_int_equal(pc_rules_count(r), 2);
    expect_rule(r, 0, "deny 10.0.0.0/8", 1);
    expect_rule(r, 1, "allow 10.1.0.0/16", 2);
    pc_rules_free(r);
}

static void test_format_empty(void **state)
{
    (void)state;
    pc_rules_t *r = load_ok("# nothing but comments\n\n   \n");
    assert_int_equal(pc_rules_count(r), 0);
    expect_match(r, "1.2.3.4", 0, 0);
    expect_match(r, "::1", 0, 0);
    pc_rules_free(r);
    r = NULL;
    assert_int_equal(pc_rules_load_string("", 0, NULL, &r, NULL, 0), 0);
    assert_int_equal(pc_rules_count(r), 0);
    pc_rules_free(r);
    assert_int_equal(pc_rules_count(NULL), 0);
    assert_int_equal(pc_rules_match_text(NULL, "1.2.3.4", NULL, NULL), 0);
}

struct bad_case {
    const char *text;
    const char *message; /* the whole message: "t.rules:LINE: ..." */
};

static const struct bad_case bad_cases[] = {
    {"allow 1.2.3.4\nblock 1.2.3.4\n",
     "t.rules:2: unknown action 'block' (expected 'allow' or 'deny')"},
    {"Deny 1.2.3.4", "t.rules:1: unknown action 'Deny' (expected 'allow' or 'deny')"},
    {"deny10.0.0.0/8", "t.rules:1: unknown action 'deny10.0.0.0/8' (expected 'allow' or 'deny')"},
    {"allowed 10.0.0.0/8", "t.rules:1: unknown action 'allowed' (expected 'allow' or 'deny')"},
    {"denied 10.0.0.0/8", "t.rules:1: unknown action 'denied' (expected 'allow' or 'deny')"},
    {"allo 10.0.0.0/8", "t.rules:1: unknown action 'allo' (expected 'allow' or 'deny')"},
    {"# c\n\ndeny\n", "t.rules:3: missing address after 'deny'"},
    {"allow   # nothing", "t.rules:1: missing address after 'allow'"},
    {"deny 1.2.3", "t.rules:1: bad IPv4 address '1.2.3': needs four dotted parts"},
    {"deny 1.2.3.256", "t.rules:1: bad IPv4 address '1.2.3.256': part greater than 255"},
    {"deny 010.2.3.4",
     "t.rules:1: bad IPv4 address '010.2.3.4': leading zero in a part (ambiguous: octal or "
     "decimal?)"},
    {"deny 1.2..4", "t.rules:1: bad IPv4 address '1.2..4': empty or non-decimal part"},
    {"deny 1.2.3.4.5", "t.rules:1: bad IPv4 address '1.2.3.4.5': more than four parts"},
    {"deny example.com", "t.rules:1: bad IPv4 address 'example.com': empty or non-decimal part"},
    {"deny 1.2.3.4/33", "t.rules:1: prefix length 33 out of range for IPv4 (0-32)"},
    {"deny ::/129", "t.rules:1: prefix length 129 out of range for IPv6 (0-128)"},
    {"deny 1.2.3.4/99999", "t.rules:1: prefix length 99999 out of range for IPv4 (0-32)"},
    /* lengths that wrap an unsigned to 24 and 0: refused, not taken modulo 2^32 */
    {"deny 1.2.3.0/4294967320", "t.rules:1: prefix length 4294967320 out of range for IPv4 (0-32)"},
    {"deny ::/4294967296", "t.rules:1: prefix length 4294967296 out of range for IPv6 (0-128)"},
    {"deny 1.2.3.4/", "t.rules:1: missing prefix length after '/'"},
    {"deny 1.2.3.4/x", "t.rules:1: bad prefix length 'x'"},
    {"deny 1.2.3.4/-1", "t.rules:1: bad prefix length '-1'"},
    {"deny 1.2.3.0/24/8", "t.rules:1: bad prefix length '24/8'"},
    {"deny 1.2.3.4/08", "t.rules:1: prefix length '08' has a leading zero"},
    {"deny 10.0.0.1/8",
     "t.rules:1: host bits set beyond /8 in '10.0.0.1/8' (the network is 10.0.0.0/8)"},
    {"deny 2001:db8::1/32",
     "t.rules:1: host bits set beyond /32 in '2001:db8::1/32' (the network is 2001:db8::/32)"},
    {"deny 1::2::3", "t.rules:1: bad IPv6 address '1::2::3': more than one '::'"},
    {"deny 1:2:3:4:5:6:7:8:9",
     "t.rules:1: bad IPv6 address '1:2:3:4:5:6:7:8:9': more than eight groups"},
    {"deny 12345::", "t.rules:1: bad IPv6 address '12345::': group has more than four hex digits"},
    {"deny 1:2:3", "t.rules:1: bad IPv6 address '1:2:3': needs eight groups or a '::'"},
    {"deny fe80::1%eth0", "t.rules:1: bad IPv6 address 'fe80::1%eth0': zone index not allowed"},
    {"deny 1:2:3:4:5:6:7:8::",
     "t.rules:1: bad IPv6 address '1:2:3:4:5:6:7:8::': '::' must stand for at least one zero "
     "group"},
    {"deny ::ffff:1.2.3.0/120",
     "t.rules:1: IPv4-mapped IPv6 prefix never matches (mapped peers are matched as IPv4): "
     "write 1.2.3.0/24"},
    /* /96 is the shortest mapped prefix refused (docs/filter.md) */
    {"deny ::ffff:0:0/96",
     "t.rules:1: IPv4-mapped IPv6 prefix never matches (mapped peers are matched as IPv4): "
     "write 0.0.0.0/0"},
    {"allow ::ffff:192.0.2.7",
     "t.rules:1: IPv4-mapped IPv6 prefix never matches (mapped peers are matched as IPv4): "
     "write 192.0.2.7/32"},
    {"deny 1.2.3.4 5.6.7.8", "t.rules:1: unexpected '5.6.7.8' after the address"},
    {"deny 1.2.3.4 allow # c", "t.rules:1: unexpected 'allow' after the address"},
    {"deny 10.0.0.0/8\nallow 10.0.0.0/8\n",
     "t.rules:2: 'allow 10.0.0.0/8' conflicts with 'deny 10.0.0.0/8' at line 1"},
    {"allow 2001:db8::/32\n# c\ndeny 2001:0db8:0::/32\n",
     "t.rules:3: 'deny 2001:db8::/32' conflicts with 'allow 2001:db8::/32' at line 1"},
    {"deny 1.0.0.0/8\ndeny 2.0.0.0/8\ndeny 2.0.0.0/8\nallow 1.0.0.0/8\nallow 2.0.0.0/8\n",
     "t.rules:4: 'allow 1.0.0.0/8' conflicts with 'deny 1.0.0.0/8' at line 1"},
    {"deny 1.2.3.4\ndeny 1.2.3.4/32\nallow 1.2.3.4\n",
     "t.rules:3: 'allow 1.2.3.4/32' conflicts with 'deny 1.2.3.4/32' at line 1"},
    {"deny 1.2.3.4 ; SBL1\n", "t.rules:1: unexpected ';' after the address"},
    {"deny 1.2.3.4\r\ndeny x\r\n", "t.rules:2: bad IPv4 address 'x': empty or non-decimal part"},
    {"deny 1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17:18:19:20",
     "t.rules:1: bad IPv6 address '1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17:18...': more than "
     "eight groups"},
    /* 44 bytes, the most a message quotes whole */
    {"deny 1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17:18",
     "t.rules:1: bad IPv6 address '1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17:18': more than "
     "eight groups"},
};

static void test_format_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *c = &bad_cases[i];
        pc_rules_t *r = (pc_rules_t *)(uintptr_t)1;
        char err[256] = "unchanged";
        int rc = pc_rules_load_string(c->text, strlen(c->text), "t.rules", &r, err, sizeof err);
        if (rc != PC_EPARSE) fail_msg("case %zu (%s): rc %s", i, c->text, pc_err_name(rc));
        assert_null(r);
        if (strcmp(err, c->message) != 0)
            fail_msg("case %zu:\n  got      '%s'\n  expected '%s'", i, err, c->message);
    }
}

static void test_format_error_details(void **state)
{
    (void)state;
    pc_rules_t *r = NULL;
    char err[32];
    /* NULL name, truncated buffer, NUL byte in the text */
    const char text[] = "deny 1.2.3.4\0";
    assert_int_equal(pc_rules_load_string(text, sizeof text - 1, NULL, &r, err, sizeof err),
                     PC_EPARSE);
    assert_int_equal(strlen(err), sizeof err - 1);
    assert_memory_equal(err, "<string>:1: bad IPv4 address '", 30);
    /* no buffer at all */
    assert_int_equal(pc_rules_load_string("bad", 3, NULL, &r, NULL, 0), PC_EPARSE);
    assert_int_equal(pc_rules_load_string("deny 1.2.3.4", 12, NULL, NULL, err, sizeof err),
                     PC_EINVAL);
    assert_int_equal(pc_rules_load_string(NULL, 5, NULL, &r, err, sizeof err), PC_EINVAL);
}

static void test_match_sockaddr(void **state)
{
    (void)state;
    pc_rules_t *r = load_ok("deny 10.0.0.0/8\nallow 10.1.0.0/16\ndeny 2001:db8::/32\n");
    struct sockaddr_in in;
    memset(&in, 0, sizeof in);
    in.sin_family = AF_INET;
    const uint8_t a4[4] = {10, 1, 2, 3};
    memcpy(&in.sin_addr, a4, 4);
    pc_rule_action_t act;
    size_t idx;
    assert_int_equal(pc_rules_match(r, (struct sockaddr *)&in, &act, &idx), 1);
    assert_int_equal(act, PC_RULE_ALLOW);
    assert_int_equal(idx, 1);

    struct sockaddr_in6 in6;
    memset(&in6, 0, sizeof in6);
    in6.sin6_family = AF_INET6;
    const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 2, 0, 1};
    memcpy(&in6.sin6_addr, mapped, 16);
    assert_int_equal(pc_rules_match(r, (struct sockaddr *)&in6, &act, &idx), 1);
    assert_int_equal(act, PC_RULE_DENY);
    assert_int_equal(idx, 0);
    const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    memcpy(&in6.sin6_addr, v6, 16);
    assert_int_equal(pc_rules_match(r, (struct sockaddr *)&in6, &act, NULL), 1);
    assert_int_equal(act, PC_RULE_DENY);
    in6.sin6_addr.s6_addr[0] = 0x30;
    assert_int_equal(pc_rules_match(r, (struct sockaddr *)&in6, &act, NULL), 0);

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_family = AF_UNSPEC;
    assert_int_equal(pc_rules_match(r, (struct sockaddr *)&ss, NULL, NULL), PC_EINVAL);
    assert_int_equal(pc_rules_match(r, NULL, NULL, NULL), PC_EINVAL);
    pc_rules_free(r);
}

static void test_load_file(void **state)
{
    (void)state;
    const char *path = "test_rules_tmp.rules";
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("# from a file\ndeny 203.0.113.0/24\nallow 203.0.113.8/29\n", f);
    fclose(f);
    pc_rules_t *r = NULL;
    char err[256];
    assert_int_equal(pc_rules_load_file(path, &r, err, sizeof err), 0);
    assert_int_equal(pc_rules_count(r), 2);
    expect_rule(r, 1, "allow 203.0.113.8/29", 3);
    pc_rules_free(r);

    f = fopen(path, "wb");
    assert_non_null(f);
    fputs("deny 203.0.113.0/24\ndeny 203.0.113.1/24\n", f);
    fclose(f);
    r = NULL;
    assert_int_equal(pc_rules_load_file(path, &r, err, sizeof err), PC_EPARSE);
    assert_null(r);
    assert_string_equal(err, "test_rules_tmp.rules:2: host bits set beyond /24 in "
                             "'203.0.113.1/24' (the network is 203.0.113.0/24)");

    /* empty (a file being rewritten reads so): refused; comments alone: no rules */
    f = fopen(path, "wb");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(pc_rules_load_file(path, &r, err, sizeof err), PC_EPARSE);
    assert_null(r);
    assert_string_equal(err, "test_rules_tmp.rules:1: empty file (0 bytes), refused; to load no "
                             "rules, write a comment line");
    pc_rules_builder_t *b = NULL;
    assert_int_equal(pc_rules_builder_new(&b), 0);
    assert_int_equal(pc_rules_builder_add_file(b, PC_RULES_DENY_LIST, path, err, sizeof err),
                     PC_EPARSE);
    pc_rules_builder_free(b);
    f = fopen(path, "wb");
    assert_non_null(f);
    fputs("# no rules for now\n", f);
    fclose(f);
    assert_int_equal(pc_rules_load_file(path, &r, err, sizeof err), 0);
    assert_int_equal(pc_rules_count(r), 0);
    pc_rules_free(r);
    r = NULL;
    remove(path);

    assert_int_equal(pc_rules_load_file("no/such/dir/x.rules", &r, err, sizeof err), PC_ENOENT);
    assert_string_equal(err, "no/such/dir/x.rules: no such file or directory");
    int rc = pc_rules_load_file(".", &r, err, sizeof err);
    assert_true(rc == PC_EIO || rc == PC_EACCES);
    assert_memory_equal(err, ".: ", 3);
    assert_null(r);
}

static void test_allocator_pinned(void **state)
{
    (void)state;
    pc_rules_t *r = load_ok("deny 1.2.3.4\n");
    pc_allocator_t a = {NULL, NULL, NULL, NULL, NULL};
    assert_int_equal(pc_set_allocator(&a), PC_EBUSY);
    pc_rules_free(r);
    assert_int_equal(pc_set_allocator(&a), 0);
}

/* Every allocation of a builder with duplicates across sources failing in turn:
 * PC_ENOMEM and nothing leaked, until the budget suffices. */
static void test_builder_alloc_failure(void **state)
{
    (void)state;
    char *list = malloc(32 * 1024);
    size_t len = 0;
    for (int i = 0; i < 400; i++) /* every prefix twice, and a v6 one */
        len += (size_t)snprintf(list + len, 32 * 1024 - len, "10.%d.0.0/16 ; x\n%s\n", i % 200,
                                i % 50 ? "" : "2001:db8::/32");
    assert_int_equal(pc_set_allocator(&budget_allocator), 0);
    int ok = 0;
    for (long budget = 0; budget < 100000 && !ok; budget++) {
        budget_alloc_reset(budget);
        pc_rules_t *r = NULL;
        pc_rules_builder_t *b = NULL;
        char err[128] = "";
        int rc = pc_rules_builder_new(&b);
        int made = rc == 0;
        if (rc == 0)
            rc = pc_rules_builder_add_string(b, PC_RULES_TEXT, "allow 10.1.2.0/24\n", 18, "a", err,
                                             sizeof err);
        if (rc == 0)
            rc =
                pc_rules_builder_add_string(b, PC_RULES_DENY_LIST, list, len, "l", err, sizeof err);
        if (rc == 0)
            rc = pc_rules_builder_finish(b, &r, err, sizeof err);
        else
            pc_rules_builder_free(b);
        if (rc == 0) {
            ok = 1;
            assert_int_equal(pc_rules_count(r), 202);
            assert_int_equal(pc_rules_duplicates(r, NULL, NULL, NULL, 0), 207);
            pc_rules_free(r);
        } else {
            assert_int_equal(rc, PC_ENOMEM);
            assert_null(r);
            /* a source's name while it is added, then the set's (the
             * builder's own allocation has no message) */
            if (made && strcmp(err, "a: out of memory") != 0 &&
                strcmp(err, "l: out of memory") != 0 && strcmp(err, "rule set: out of memory") != 0)
                fail_msg("budget %ld: message '%s'", budget, err);
        }
        assert_int_equal(budget_alloc_live(), 0);
    }
    assert_true(ok);
    assert_int_equal(pc_set_allocator(NULL), 0);
    free(list);
}

/* A builder reserves room for the lines of its text (one rule a line at
 * most), not for the most rules a set may hold. */
static void test_builder_sized_by_text(void **state)
{
    (void)state;
    assert_int_equal(pc_set_allocator(&budget_allocator), 0);
    budget_alloc_reset(-1);
    pc_rules_builder_t *b = NULL;
    char err[128];
    assert_int_equal(pc_rules_builder_new(&b), 0);
    assert_int_equal(
        pc_rules_builder_add_string(b, PC_RULES_TEXT, "deny 192.0.2.1\n", 15, "s", err, sizeof err),
        0);
    long long bytes = budget_alloc_live_bytes();
    if (bytes > 64 * 1024) fail_msg("a one-line builder holds %lld bytes", bytes);
    pc_rules_t *r = NULL;
    assert_int_equal(pc_rules_builder_finish(b, &r, err, sizeof err), 0);
    assert_int_equal(pc_rules_count(r), 1);
    pc_rules_free(r);
    assert_int_equal(budget_alloc_live(), 0);
    assert_int_equal(pc_set_allocator(NULL), 0);
}

/* ---- duplicates, plain lists, several sources ------------------------------ */

static void test_duplicates_folded(void **state)
{
    (void)state;
    const char *text = "deny 1.0.0.0/8\n"                 /* 1 */
                       "deny 2.0.0.0/8\n"                 /* 2 */
                       "deny 2.0.0.0/8\n"                 /* 3: repeats 2 (the first example) */
                       "deny 1.0.0.0/8\n"                 /* 4: repeats 1 */
                       "allow 2001:db8::/32\n"            /* 5 */
                       "allow 2001:0db8:0::/32 # again\n" /* 6: repeats 5 */
                       "deny 2.0.0.0/8\n";                /* 7: repeats 2 */
    pc_rules_t *r = load_ok(text);
    assert_int_equal(pc_rules_count(r), 3);
    expect_rule(r, 0, "deny 1.0.0.0/8", 1);
    expect_rule(r, 1, "deny 2.0.0.0/8", 2);
    expect_rule(r, 2, "allow 2001:db8::/32", 5);
    expect_match(r, "1.2.3.4", 1, 0);
    expect_match(r, "2.2.3.4", 1, 1);
    expect_match(r, "2001:db8::7", 1, 2);
    expect_match(r, "3.0.0.1", 0, 0);
    unsigned dup = 0, first = 0;
    char msg[256];
    assert_int_equal(pc_rules_duplicates(r, &dup, &first, msg, sizeof msg), 4);
    assert_int_equal(dup, 3);
    assert_int_equal(first, 2);
    assert_string_equal(msg, "4 duplicate rules ignored (same prefix, same action); first: "
                             "t.rules:3: deny 2.0.0.0/8, already at line 2");
    /* a short buffer gets a truncated, terminated message; NULLs are fine */
    char small[8];
    assert_int_equal(pc_rules_duplicates(r, NULL, NULL, small, sizeof small), 4);
    assert_string_equal(small, "4 dupli");
    pc_rules_free(r);

    r = load_ok("deny 1.2.3.4\ndeny 5.6.7.8\n");
    dup = first = 77;
    assert_int_equal(pc_rules_duplicates(r, &dup, &first, msg, sizeof msg), 0);
    assert_int_equal(dup, 77);
    assert_string_equal(msg, "");
    pc_rules_free(r);
    assert_int_equal(pc_rules_duplicates(NULL, NULL, NULL, msg, sizeof msg), 0);
    assert_string_equal(msg, "");
}

/* Only equal prefixes (address and length) are duplicates or conflicts:
 * one address at several lengths, and IPv6 addresses that differ only in
 * their low 64 bits, are distinct rules. */
static void test_duplicates_need_equal_prefix(void **state)
{
    (void)state;
    pc_rules_t *r = load_ok("deny 10.0.0.0/8\n"
                            "deny 10.0.0.0/16\n"
                            "allow 10.0.0.0/24\n"
                            "deny 2001:db8::/32\n"
                            "deny 2001:db8::/48\n"
                            "allow 2001:db8::/64\n"
                            "deny 2001:db8::1\n"
                            "deny 2001:db8::2\n");
    assert_int_equal(pc_rules_count(r), 8);
    assert_int_equal(pc_rules_duplicates(r, NULL, NULL, NULL, 0), 0);
    expect_match(r, "10.1.0.1", 1, 0);
    expect_match(r, "10.0.1.1", 1, 1);
    expect_match(r, "10.0.0.1", 1, 2);
    expect_match(r, "2001:db8:1::1", 1, 3);
    expect_match(r, "2001:db8:0:1::1", 1, 4);
    expect_match(r, "2001:db8::3", 1, 5);
    expect_match(r, "2001:db8::1", 1, 6);
    expect_match(r, "2001:db8::2", 1, 7);
    pc_rules_free(r);
}

static void test_plain_lists(void **state)
{
    (void)state;
    const char *netset = "#\n# firehol-style header\n#\n"
                         "1.2.3.0/24\n"
                         "  192.0.2.7\t# a host\n"
                         "2001:db8::/32\r\n"
                         "\n";
    const char *drop = "; Spamhaus DROP List 2026/12/02\n"
                       "; Last-Modified: Wed, 02 Dec 2026\n"
                       "198.51.100.0/24 ; SBL123\n"
                       "203.0.113.0/25;SBL7 trailing words ; and more\n"
                       "1.2.3.0/24 ; SBL9, listed in the netset too\n";
    pc_rules_builder_t *b = NULL;
    char err[256];
    assert_int_equal(pc_rules_builder_new(&b), 0);
    assert_int_equal(
        pc_rules_builder_add_string(b, PC_RULES_TEXT, "allow 1.2.3.128/25\n", 19, "r", err, 256),
        0);
    assert_int_equal(pc_rules_builder_add_string(b, PC_RULES_DENY_LIST, netset, strlen(netset),
                                                 "fh.netset", err, sizeof err),
                     0);
    assert_int_equal(pc_rules_builder_add_string(b, PC_RULES_DENY_LIST, drop, strlen(drop),
                                                 "drop.txt", err, sizeof err),
                     0);
    assert_int_equal(pc_rules_builder_add_string(b, PC_RULES_ALLOW_LIST, "198.51.100.9\n", 13,
                                                 "ok.txt", err, sizeof err),
                     0);
    pc_rules_t *r = NULL;
    assert_int_equal(pc_rules_builder_finish(b, &r, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_int_equal(pc_rules_count(r), 7);
    expect_rule(r, 0, "allow 1.2.3.128/25", 1);
    expect_rule(r, 1, "deny 1.2.3.0/24", 4);
    expect_rule(r, 2, "deny 192.0.2.7/32", 5);
    expect_rule(r, 3, "deny 2001:db8::/32", 6);
    expect_rule(r, 4, "deny 198.51.100.0/24", 3);
    expect_rule(r, 5, "deny 203.0.113.0/25", 4);
    expect_rule(r, 6, "allow 198.51.100.9/32", 1);
    expect_match(r, "1.2.3.4", 1, 1);
    expect_match(r, "1.2.3.200", 1, 0);
    expect_match(r, "198.51.100.8", 1, 4);
    expect_match(r, "198.51.100.9", 1, 6);
    expect_match(r, "203.0.113.127", 1, 5);
    expect_match(r, "203.0.113.128", 0, 0);
    unsigned dup = 0, first = 0;
    char msg[256];
    assert_int_equal(pc_rules_duplicates(r, &dup, &first, msg, sizeof msg), 1);
    assert_int_equal(dup, 5);
    assert_int_equal(first, 4);
    assert_string_equal(msg, "1 duplicate rule ignored (same prefix, same action); first: "
                             "drop.txt:5: deny 1.2.3.0/24, already at fh.netset:4");
    pc_rules_free(r);
}

struct list_bad {
    const char *text, *message;
};
static const struct list_bad list_bad_cases[] = {
    {"1.2.3.0/24\n1.2.3.4/24\n",
     "l.txt:2: host bits set beyond /24 in '1.2.3.4/24' (the network is 1.2.3.0/24)"},
    {"deny 1.2.3.4\n", "l.txt:1: bad IPv4 address 'deny': empty or non-decimal part"},
    {"# c\n1.2.3.4 5.6.7.8\n", "l.txt:2: unexpected '5.6.7.8' after the address"},
    {"; c\n\n10.0.0.0/33 ; x\n", "l.txt:3: prefix length 33 out of range for IPv4 (0-32)"},
    {"1.2.3.4/\n", "l.txt:1: missing prefix length after '/'"},
    {"# c\n/24 ; no address\n", "l.txt:2: bad IPv4 address '': empty or non-decimal part"},
    /* IPv6 rules taken before the error are given back too */
    {"2001:db8::/32\n2001:db8:1::/48\n2001:db8::1/32\n",
     "l.txt:3: host bits set beyond /32 in '2001:db8::1/32' (the network is 2001:db8::/32)"},
};

static void test_list_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof list_bad_cases / sizeof list_bad_cases[0]; i++) {
        const struct list_bad *c = &list_bad_cases[i];
        pc_rules_builder_t *b = NULL;
        char err[256] = "unchanged";
        assert_int_equal(pc_rules_builder_new(&b), 0);
        int rc = pc_rules_builder_add_string(b, PC_RULES_DENY_LIST, c->text, strlen(c->text),
                                             "l.txt", err, sizeof err);
        if (rc != PC_EPARSE) fail_msg("case %zu: rc %s", i, pc_err_name(rc));
        if (strcmp(err, c->message) != 0)
            fail_msg("case %zu:\n  got      '%s'\n  expected '%s'", i, err, c->message);
        /* a refused source leaves the builder as it was, still usable */
        assert_int_equal(pc_rules_builder_add_string(b, PC_RULES_DENY_LIST,
                                                     "9.9.9.9\n2001:db8:9::/48\n", 24, "m.txt", err,
                                                     sizeof err),
                         0);
        pc_rules_t *r = NULL;
        assert_int_equal(pc_rules_builder_finish(b, &r, err, sizeof err), 0);
        assert_int_equal(pc_rules_count(r), 2);
        expect_rule(r, 0, "deny 9.9.9.9/32", 1);
        expect_rule(r, 1, "deny 2001:db8:9::/48", 2);
        expect_match(r, "2001:db8:9::1", 1, 1);
        expect_match(r, "2001:db8::1", 0, 0);
        expect_match(r, "2001:db8:1::1", 0, 0);
        pc_rules_free(r);
    }
    pc_rules_builder_t *b = NULL;
    char err[256];
    assert_int_equal(pc_rules_builder_new(&b), 0);
    assert_int_equal(pc_rules_builder_add_string(b, (pc_rules_format_t)7, "", 0, NULL, err, 256),
                     PC_EINVAL);
    assert_int_equal(pc_rules_builder_add_string(NULL, PC_RULES_TEXT, "", 0, NULL, err, 256),
                     PC_EINVAL);
    assert_int_equal(pc_rules_builder_add_string(b, PC_RULES_TEXT, NULL, 3, NULL, err, 256),
                     PC_EINVAL);
    assert_int_equal(pc_rules_builder_finish(b, NULL, err, sizeof err), PC_EINVAL); /* frees b */
    assert_int_equal(pc_rules_builder_new(NULL), PC_EINVAL);
    pc_rules_builder_free(NULL);
}

static void test_conflict_across_sources(void **state)
{
    (void)state;
    pc_rules_builder_t *b = NULL;
    char err[256];
    assert_int_equal(pc_rules_builder_new(&b), 0);
    assert_int_equal(pc_rules_builder_add_string(b, PC_RULES_TEXT,
                                                 "allow 10.0.0.0/8\nallow 2001:db8::/48\n", 37,
                                                 "site.rules", err, sizeof err),
                     0);
    const char *list = "; drop\n192.0.2.0/24\n2001:db8::/48 ; SBL5\n10.0.0.0/8\n";
    assert_int_equal(pc_rules_builder_add_string(b, PC_RULES_DENY_LIST, list, strlen(list),
                                                 "drop.txt", err, sizeof err),
                     0);
    pc_rules_t *r = (pc_rules_t *)(uintptr_t)1;
    assert_int_equal(pc_rules_builder_finish(b, &r, err, sizeof err), PC_EPARSE);
    assert_null(r);
    /* the earliest conflicting line is reported, with the line it contradicts */
    assert_string_equal(err, "drop.txt:3: 'deny 2001:db8::/48' conflicts with "
                             "'allow 2001:db8::/48' at site.rules:2");
}

static void test_builder_files(void **state)
{
    (void)state;
    const char *rp = "test_rules_b.rules", *lp = "test_rules_b.netset";
    FILE *f = fopen(rp, "wb");
    assert_non_null(f);
    fputs("allow 203.0.113.8/29\n", f);
    fclose(f);
    f = fopen(lp, "wb");
    assert_non_null(f);
    fputs("# netset\n203.0.113.0/24\n203.0.113.0/24\n", f);
    fclose(f);
    pc_rules_builder_t *b = NULL;
    char err[256];
    assert_int_equal(pc_rules_builder_new(&b), 0);
    assert_int_equal(pc_rules_builder_add_file(b, PC_RULES_TEXT, rp, err, sizeof err), 0);
    assert_int_equal(pc_rules_builder_add_file(b, PC_RULES_DENY_LIST, lp, err, sizeof err), 0);
    assert_int_equal(
        pc_rules_builder_add_file(b, PC_RULES_DENY_LIST, "no/such.netset", err, sizeof err),
        PC_ENOENT);
    assert_string_equal(err, "no/such.netset: no such file or directory");
    pc_rules_t *r = NULL;
    assert_int_equal(pc_rules_builder_finish(b, &r, err, sizeof err), 0);
    assert_int_equal(pc_rules_count(r), 2);
    expect_match(r, "203.0.113.9", 1, 0);
    expect_match(r, "203.0.113.1", 1, 1);
    char msg[256];
    assert_int_equal(pc_rules_duplicates(r, NULL, NULL, msg, sizeof msg), 1);
    assert_string_equal(msg, "1 duplicate rule ignored (same prefix, same action); first: "
                             "test_rules_b.netset:3: deny 203.0.113.0/24, already at line 2");
    pc_rules_free(r);
    remove(rp);
    remove(lp);
}

/* A rule records its source in a byte: 255 sources make a set, the 256th
 * is refused by name and leaves the builder as it was. */
static void test_builder_source_limit(void **state)
{
    (void)state;
    pc_rules_builder_t *b = NULL;
    char err[256], name[32], line[32];
    assert_int_equal(pc_rules_builder_new(&b), 0);
    for (int i = 0; i < 255; i++) {
        snprintf(name, sizeof name, "s%d.txt", i);
        int n = snprintf(line, sizeof line, "10.%d.%d.0/24\n", i / 256, i % 256);
        assert_int_equal(pc_rules_builder_add_string(b, PC_RULES_DENY_LIST, line, (size_t)n, name,
                                                     err, sizeof err),
                         0);
    }
    assert_int_equal(pc_rules_builder_add_string(b, PC_RULES_DENY_LIST, "192.0.2.1\n", 10,
                                                 "one.too.many", err, sizeof err),
                     PC_EINVAL);
    assert_string_equal(err, "one.too.many: too many sources in one rule set (at most 255)");
    /* and so is any further one */
    assert_int_equal(pc_rules_builder_add_string(b, PC_RULES_ALLOW_LIST, "10.0.254.0/24\n", 14,
                                                 "late.txt", err, sizeof err),
                     PC_EINVAL);
    assert_string_equal(err, "late.txt: too many sources in one rule set (at most 255)");
    pc_rules_t *r = NULL;
    assert_int_equal(pc_rules_builder_finish(b, &r, err, sizeof err), 0);
    assert_int_equal(pc_rules_count(r), 255);
    expect_match(r, "10.0.254.1", 1, 254);
    expect_match(r, "192.0.2.1", 0, 0);
    pc_rule_info_t info;
    assert_int_equal(pc_rules_get(r, 254, &info), 0);
    assert_string_equal(info.text, "deny 10.0.254.0/24");
    assert_int_equal(info.line, 1);
    pc_rules_free(r);
}

/* ---- allocation failures -------------------------------------------------- */

static void test_alloc_failure(void **state)
{
    (void)state;
    char *text = malloc(64 * 1024);
    size_t len = 0;
    for (int i = 0; i < 600; i++)
        len +=
            (size_t)snprintf(text + len, 64 * 1024 - len, "deny 10.%d.%d.0/24\n", i / 200, i % 200);
    for (int i = 0; i < 300; i++)
        len += (size_t)snprintf(text + len, 64 * 1024 - len, "allow 2001:db8:%x::/48\n", i);
    assert_int_equal(pc_set_allocator(&budget_allocator), 0);
    int ok = 0;
    for (long budget = 0; budget < 100000 && !ok; budget++) {
        budget_alloc_reset(budget);
        pc_rules_t *r = NULL;
        char err[128];
        int rc = pc_rules_load_string(text, len, "mem", &r, err, sizeof err);
        if (rc == 0) {
            ok = 1;
            assert_int_equal(pc_rules_count(r), 900);
            pc_rules_free(r);
        } else {
            assert_int_equal(rc, PC_ENOMEM);
            assert_null(r);
            assert_string_equal(err, "mem: out of memory");
        }
        assert_int_equal(budget_alloc_live(), 0);
    }
    assert_true(ok);
    assert_int_equal(pc_set_allocator(NULL), 0);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_valid),
        cmocka_unit_test(test_addr_invalid),
        cmocka_unit_test(test_addr_mask_normalize),
        cmocka_unit_test(test_addr_sockaddr_round_trip),
        /* the text format */
        cmocka_unit_test(test_format_valid),
        cmocka_unit_test(test_format_empty),
        cmocka_unit_test(test_format_bom),
        cmocka_unit_test(test_format_whitespace),
        cmocka_unit_test(test_format_errors),
        cmocka_unit_test(test_format_error_details),
        cmocka_unit_test(test_match_sockaddr),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_allocator_pinned),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_duplicates_folded),
        cmocka_unit_test(test_duplicates_need_equal_prefix),
        cmocka_unit_test(test_plain_lists),
        cmocka_unit_test(test_list_errors),
        cmocka_unit_test(test_conflict_across_sources),
        cmocka_unit_test(test_builder_files),
        cmocka_unit_test(test_builder_source_limit),
        cmocka_unit_test(test_builder_alloc_failure),
        cmocka_unit_test(test_builder_sized_by_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
