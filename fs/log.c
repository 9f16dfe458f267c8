/* log.c — see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>

/* The level is set by log_setup() before threads start. The sink is atomic: a daemon switches
 * to syslog only once its start-up is done, when worker threads may already be logging. */
static atomic_int log_use_syslog;
static enum log_level log_level_max = LOG_LVL_INFO;

void log_setup(int use_syslog, enum log_level level)
{
    if (log_level_max != level) log_level_max = level; /* a later call changes only the sink */
    if (use_syslog) openlog("hfmount", LOG_PID, LOG_DAEMON);
    atomic_store_explicit(&log_use_syslog, use_syslog, memory_order_release);
}

enum log_level log_get_level(void)
{
    return log_level_max;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    if (level > log_level_max) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (atomic_load_explicit(&log_use_syslog, memory_order_acquire)) {
        syslog(prio[level], "%s", line);
        return;
    }
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    /* One fprintf per line so that lines of concurrent threads do not interleave. */
    fprintf(stderr, "%02d:%02d:%02d.%03ld hfmount %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000, names[level], line);
}
