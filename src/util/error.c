/*
 * The per-thread "last error" message behind vtio_last_error().
 */
#include <vtio/common.h>

#include <stdarg.h>
#include <stdio.h>

#include "util/error.h"

static __thread char last_error[256];

int vtio_fail(int negerr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    return negerr;
}

const char *vtio_last_error(void)
{
    return last_error;
}
