/*
 * Shared by the fuzz targets (tests/fuzz/fuzz_*.c) and the replay driver
 * (tests/fuzz/replay.c).
 *
 * A target reads its input as a little program: an op byte, then that op's
 * operands, then the next op, until the input runs out.  The reader below
 * never fails: past the end it yields zeros, so every byte string is a
 * valid program and a truncated one simply does less.  Multi-byte operands
 * are little-endian.
 *
 * An invariant that does not hold is a finding: FUZZ_CHECK prints what was
 * wrong and aborts, which libFuzzer reports as a crash (and keeps the input)
 * and which makes a replay test fail.
 */
#ifndef VTIO_TESTS_FUZZ_H
#define VTIO_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libFuzzer's entry points (replay.c calls them the same way). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

struct fuzz_in {
    const uint8_t *p;
    size_t left;
};

static inline struct fuzz_in fuzz_in_make(const uint8_t *data, size_t size)
{
    return (struct fuzz_in){ .p = data, .left = size };
}

static inline int fuzz_more(const struct fuzz_in *in)
{
    return in->left > 0;
}

/* n bytes into buf; zeros past the end of the input. */
static inline void fuzz_bytes(struct fuzz_in *in, void *buf, size_t n)
{
    size_t k = n < in->left ? n : in->left;
    memcpy(buf, in->p, k);
    memset((uint8_t *)buf + k, 0, n - k);
    in->p += k;
    in->left -= k;
}

static inline uint64_t fuzz_uint(struct fuzz_in *in, unsigned bytes)
{
    uint8_t b[8];
    uint64_t v = 0;
    fuzz_bytes(in, b, bytes);
    for (unsigned i = bytes; i--;)
        v = v << 8 | b[i];
    return v;
}

static inline uint8_t fuzz_u8(struct fuzz_in *in)   { return (uint8_t)fuzz_uint(in, 1); }
static inline uint16_t fuzz_u16(struct fuzz_in *in) { return (uint16_t)fuzz_uint(in, 2); }
static inline uint32_t fuzz_u32(struct fuzz_in *in) { return (uint32_t)fuzz_uint(in, 4); }
static inline uint64_t fuzz_u64(struct fuzz_in *in) { return fuzz_uint(in, 8); }

/* VTIO_FUZZ_TRACE=1 in the environment: targets say what each op did (to
 * check that a seed does what it was written for). */
static inline int fuzz_tracing(void)
{
    static int on = -1;
    if (on < 0)
        on = getenv("VTIO_FUZZ_TRACE") != NULL;
    return on;
}

#define FUZZ_TRACE(...)                                                        \
    do {                                                                       \
        if (fuzz_tracing())                                                    \
            fprintf(stderr, __VA_ARGS__);                                      \
    } while (0)

#define FUZZ_CHECK(cond, ...)                                                  \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: invariant broken: %s\n  ", __FILE__,        \
                    __LINE__, #cond);                                          \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

#endif
