/* A wall-clock jump for one process tree, the host clock untouched: an
 * LD_PRELOAD shim that adds the seconds written in $SPIN_WALL_OFFSET_FILE
 * (re-read every 100 ms, so a test moves the clock by rewriting the file)
 * to CLOCK_REALTIME, gettimeofday() and time(). CLOCK_MONOTONIC and
 * sleeps are left alone, as NTP leaves them.
 *
 * Why not libfaketime (Debian's faketime 0.9.10): with
 * FAKETIME_DONT_FAKE_MONOTONIC=1 every time.sleep() of Python 3.11 fails
 * with EINVAL (its absolute clock_nanosleep on CLOCK_MONOTONIC gets the
 * offset), which breaks subprocess; without it CLOCK_MONOTONIC jumps too.
 *
 * Built by tests/faults.py: gcc -shared -fPIC -o wallclock.so wallclock.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static long offset;
static struct timespec checked;

static long current_offset(void)
{
	struct timespec now;
	if (!real_clock_gettime)
		real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
	real_clock_gettime(CLOCK_MONOTONIC, &now);
	long ms = (now.tv_sec - checked.tv_sec) * 1000 + (now.tv_nsec - checked.tv_nsec) / 1000000;
	if (checked.tv_sec == 0 || ms >= 100) {
		const char *path = getenv("SPIN_WALL_OFFSET_FILE");
		FILE *f = path ? fopen(path, "r") : NULL;
		long v;
		if (f) {
			if (fscanf(f, "%ld", &v) == 1)
				offset = v;
			fclose(f);
		}
		checked = now;
	}
	return offset;
}

int clock_gettime(clockid_t clk, struct timespec *ts)
{
	if (!real_clock_gettime)
		real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
	int rc = real_clock_gettime(clk, ts);
	if (rc == 0 && (clk == CLOCK_REALTIME || clk == CLOCK_REALTIME_COARSE))
		ts->tv_sec += current_offset();
	return rc;
}

int gettimeofday(struct timeval *tv, void *tz)
{
	struct timespec ts;
	(void)tz;
	int rc = clock_gettime(CLOCK_REALTIME, &ts);
	if (rc == 0) {
		tv->tv_sec = ts.tv_sec;
		tv->tv_usec = ts.tv_nsec / 1000;
	}
	return rc;
}

time_t time(time_t *t)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (t)
		*t = ts.tv_sec;
	return ts.tv_sec;
}
