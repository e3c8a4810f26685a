/* Thread-local error messages: C code never exits on bad input, it returns a
 * status and leaves the reason here for the caller (the Lua binding). */
#include <stdarg.h>
#include <stdio.h>
#include "aviary/tensor.h"

static _Thread_local char err_buf[1024];

const char *av_last_error(void) { return err_buf[0] ? err_buf : "unknown error"; }

void av_error_clear(void) { err_buf[0] = 0; }

int av_fail(const char *fmt, ...) {
    /* format into a scratch buffer first: callers pass av_last_error() as an argument */
    char tmp[sizeof err_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    snprintf(err_buf, sizeof err_buf, "%s", tmp);
    return -1;
}
