/*
 * Internal error reporting: vtio_fail() records a message for
 * vtio_last_error() and returns the negative errno it was given, so a
 * failure site reads as one statement that names both:
 *
 *     if (size % VTIO_HUGE_SIZE)
 *         return vtio_fail(-EINVAL, "RAM size %#llx is not 2 MiB aligned", size);
 */
#ifndef VTIO_UTIL_ERROR_H
#define VTIO_UTIL_ERROR_H

int vtio_fail(int negerr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
