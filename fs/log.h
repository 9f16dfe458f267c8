/* log.h — leveled logging for the hfmount daemon.
 *
 * One sink for every module: stderr while in the foreground, syslog (ident "hfmount") once
 * daemonized. A log file (--log FILE, or the cache dir's hfmount.log where no syslog socket
 * exists) is the stderr sink: main() points fd 2 at the file, so that libfuse's and the
 * sanitizers' messages land there too. Messages are single lines; callers name the repo, path
 * and cause themselves.
 * The sink and level are process-wide state set once by main() before any thread starts, the
 * same way openlog(3) state is; everything else in fs/ takes its state as arguments. */
#ifndef HF_LOG_H
#define HF_LOG_H

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN = 1, LOG_LVL_INFO = 2, LOG_LVL_DEBUG = 3 };

/* Select the sink: use_syslog != 0 sends to syslog, else stderr. The first call sets the level
 * and comes before threads start; a later one may only switch the sink to syslog, with the
 * same level (a daemon does so once it serves). */
void log_setup(int use_syslog, enum log_level level);
/* Current threshold (messages above it are dropped). */
enum log_level log_get_level(void);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
