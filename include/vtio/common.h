/*
 * Things every vtio header needs: the export macro and small helpers.
 *
 * Error convention (the whole library): a call that can fail returns 0 or a
 * non-negative size on success and a negative errno value (-EINVAL, -ENOMEM,
 * ...) on failure, and a failed call changes nothing.  Where a failure needs
 * more words than an errno, the call also records a message that
 * vtio_last_error() returns (per thread).
 */
#ifndef VTIO_COMMON_H
#define VTIO_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef VTIO_BUILDING
#define VTIO_API __attribute__((visibility("default")))
#else
#define VTIO_API
#endif

#define VTIO_KiB (1ull << 10)
#define VTIO_MiB (1ull << 20)
#define VTIO_GiB (1ull << 30)

#define VTIO_PAGE_SHIFT 12
#define VTIO_PAGE_SIZE  (1ull << VTIO_PAGE_SHIFT)
#define VTIO_HUGE_SHIFT 21
#define VTIO_HUGE_SIZE  (1ull << VTIO_HUGE_SHIFT)   /* 2 MiB */

/* The message of the last failed vtio call on this thread ("" if none). */
VTIO_API const char *vtio_last_error(void);

#endif
