/*
 * The test harness: runs a table of tests, each isolated by setjmp so that a
 * failed CHECK ends only its own test.  See harness.h.
 */
#include "harness.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static jmp_buf test_env;
static int in_test;

static void end_test(void) __attribute__((noreturn));
static void end_test(void)
{
    fflush(stdout);
    if (in_test)
        longjmp(test_env, 1);
    _Exit(1);
}

void vtio_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    printf("    FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    end_test();
}

void vtio_test_fail_eq(const char *file, int line, const char *op,
                       const char *ea, const char *eb, uint64_t a, uint64_t b)
{
    printf("    FAIL %s:%d: CHECK(%s %s %s)\n", file, line, ea, op, eb);
    printf("         %s = %" PRId64 " (0x%" PRIx64 ")\n", ea, (int64_t)a, a);
    printf("         %s = %" PRId64 " (0x%" PRIx64 ")\n", eb, (int64_t)b, b);
    end_test();
}

void vtio_test_fail_mem(const char *file, int line, const char *ea, const char *eb,
                        const void *a, const void *b, size_t len)
{
    const unsigned char *pa = a, *pb = b;
    size_t i = 0;
    while (i < len && pa[i] == pb[i])
        i++;
    printf("    FAIL %s:%d: CHECK_MEM_EQ(%s, %s, %zu)\n", file, line, ea, eb, len);
    printf("         first difference at byte %zu: 0x%02x != 0x%02x\n", i, pa[i], pb[i]);
    end_test();
}

const char *vtio_test_errname(int negerr)
{
    /* Two buffers, so one message can name two errors. */
    static __thread char buf[2][64];
    static __thread int which;
    if (negerr >= 0)
        return "ok";
    which ^= 1;
    snprintf(buf[which], sizeof(buf[which]), "%s", strerror(-negerr));
    return buf[which];
}

uint64_t vtio_test_rand(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

void vtio_test_fill(void *buf, size_t len, uint64_t seed)
{
    unsigned char *p = buf;
    uint64_t s = seed | 1;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t r = vtio_test_rand(&s);
        size_t n = len - i < 8 ? len - i : 8;
        memcpy(p + i, &r, n);
    }
}

static int selected(const char *name, int argc, char **argv)
{
    if (argc <= 1)
        return 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Runs one test; returns whether it passed.  setjmp lives here, away from
 * the caller's loop state, so nothing the loop holds can be clobbered. */
static int run_one(const struct vtio_test *t)
{
    printf("[ RUN  ] %s: %s\n", t->name, t->checks);
    double t0 = now_ms();
    in_test = 1;
    if (setjmp(test_env) != 0) {
        in_test = 0;
        printf("[ FAIL ] %s\n", t->name);
        return 0;
    }
    t->fn();
    in_test = 0;
    printf("[   OK ] %s (%.1f ms)\n", t->name, now_ms() - t0);
    return 1;
}

int vtio_test_main(const struct vtio_test *tests, size_t n, int argc, char **argv)
{
    size_t run = 0, failed = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (size_t i = 0; i < n; i++) {
        if (!selected(tests[i].name, argc, argv))
            continue;
        run++;
        if (!run_one(&tests[i]))
            failed++;
    }
    printf("%zu test%s, %zu failed\n", run, run == 1 ? "" : "s", failed);
    return failed ? 1 : 0;
}
