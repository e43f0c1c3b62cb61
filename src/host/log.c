/*
 * log: the host's messages (vtio_host_log, like the kernel's printk).
 *
 * A message at `level` or more urgent than the host's log_level (0 means
 * VTIO_LOG_WARN) is formatted once into a bounded buffer (longer ones are
 * cut) and handed to the options' log_fn, or written to stderr with a
 * "vtio: " prefix and a newline.  A trailing newline in the format is
 * dropped so both sinks see one line.  Thread-safe: no state of its own;
 * stderr writes are one fprintf each.
 */
#include <vtio/host.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define LOG_LINE_MAX 512

void vtio_host_log(struct vtio_host *h, int level, const char *fmt, ...)
{
    int max = h && h->opts.log_level ? h->opts.log_level : VTIO_LOG_WARN;
    if (level > max || !fmt)
        return;
    char line[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    if (len && line[len - 1] == '\n')
        line[len - 1] = '\0';
    if (h && h->opts.log_fn)
        h->opts.log_fn(h->opts.log_opaque, level, line);
    else
        fprintf(stderr, "vtio: %s\n", line);
}
