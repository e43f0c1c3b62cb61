/*
 * vtio's test harness.
 *
 * A test program is a table of named tests, each with a sentence saying what
 * it checks; vtio_test_main() runs them in order (or only those named on the
 * command line), prints what each checks, and returns non-zero if any failed.
 * A failed CHECK prints file:line, the expression and both values, then ends
 * that test (longjmp) and the run goes on with the next one.
 *
 *   static void t_sparse(void) { CHECK_EQ(vtio_mem_ram_size(m), 16ull << 30); }
 *   static const struct vtio_test tests[] = {
 *       { "sparse", "16 GiB of RAM starts without touching a page", t_sparse },
 *   };
 *   VTIO_TEST_MAIN(tests)
 *
 * CHECKs may be used from helpers called by a test.  They are not for use on
 * threads other than the test's own: a worker thread records its result and
 * the test checks it after joining.
 */
#ifndef VTIO_TESTS_HARNESS_H
#define VTIO_TESTS_HARNESS_H

#include <stdint.h>
#include <stddef.h>
#include <inttypes.h>
#include <string.h>

struct vtio_test {
    const char *name;
    const char *checks;        /* one sentence: what the test asserts */
    void (*fn)(void);
};

int vtio_test_main(const struct vtio_test *tests, size_t n, int argc, char **argv);

#define VTIO_TEST_MAIN(table)                                                  \
    int main(int argc, char **argv)                                            \
    {                                                                          \
        return vtio_test_main(table, sizeof(table) / sizeof(table[0]), argc, argv); \
    }

/* Reporting; they do not return (the current test ends). */
void vtio_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
void vtio_test_fail_eq(const char *file, int line, const char *op,
                       const char *ea, const char *eb, uint64_t a, uint64_t b)
    __attribute__((noreturn));
void vtio_test_fail_mem(const char *file, int line, const char *ea, const char *eb,
                        const void *a, const void *b, size_t len)
    __attribute__((noreturn));

#define CHECK(cond)                                                            \
    do { if (!(cond)) vtio_test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); } while (0)

#define CHECKF(cond, ...)                                                      \
    do { if (!(cond)) vtio_test_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)

/* Integer comparisons: both sides are shown in decimal and hex.  Values are
 * compared as 64-bit patterns, so signed and unsigned operands mix safely. */
#define CHECK_OP_(a, op, b)                                                    \
    do {                                                                       \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                       \
        if (!(a_ op b_))                                                       \
            vtio_test_fail_eq(__FILE__, __LINE__, #op, #a, #b, a_, b_);        \
    } while (0)
#define CHECK_EQ(a, b) CHECK_OP_(a, ==, b)
#define CHECK_NE(a, b) CHECK_OP_(a, !=, b)

/* Ordered comparisons, unsigned. */
#define CHECK_LT(a, b) CHECK_OP_(a, <, b)
#define CHECK_LE(a, b) CHECK_OP_(a, <=, b)
#define CHECK_GT(a, b) CHECK_OP_(a, >, b)
#define CHECK_GE(a, b) CHECK_OP_(a, >=, b)

/* An errno-style return: CHECK_OK(call) requires 0 (or >= 0 for sizes). */
#define CHECK_OK(expr)                                                         \
    do {                                                                       \
        long long r_ = (long long)(expr);                                      \
        if (r_ < 0)                                                            \
            vtio_test_fail(__FILE__, __LINE__, "%s returned %lld (%s)", #expr, \
                           r_, vtio_test_errname((int)r_));                    \
    } while (0)
/* CHECK_ERR(call, -EINVAL): exactly that error. */
#define CHECK_ERR(expr, err)                                                   \
    do {                                                                       \
        long long r_ = (long long)(expr), e_ = (long long)(err);               \
        if (r_ != e_)                                                          \
            vtio_test_fail(__FILE__, __LINE__, "%s returned %lld (%s), want %lld (%s)", \
                           #expr, r_, vtio_test_errname((int)r_), e_,          \
                           vtio_test_errname((int)e_));                        \
    } while (0)

#define CHECK_MEM_EQ(a, b, len)                                                \
    do {                                                                       \
        const void *a_ = (a), *b_ = (b);                                       \
        size_t l_ = (len);                                                     \
        if (memcmp(a_, b_, l_) != 0)                                           \
            vtio_test_fail_mem(__FILE__, __LINE__, #a, #b, a_, b_, l_);        \
    } while (0)

const char *vtio_test_errname(int negerr);

/* Deterministic pseudo-random bytes for test data (xorshift64*). */
uint64_t vtio_test_rand(uint64_t *state);
void vtio_test_fill(void *buf, size_t len, uint64_t seed);

#endif
