/* A tiny driver over the real jlog C library (built by ci/build-jlog), used by Cohort's interop
 * test and benchmark to write arbitrary records and to read as a subscriber. Not part of Cohort.
 *
 *   jlog-driver init DIR [UNIT_LIMIT]      create a jlog
 *   jlog-driver add DIR SUB                add a subscriber at the beginning
 *   jlog-driver write DIR                  append one record per stdin line (payload in hex)
 *   jlog-driver read DIR SUB [MAX]         print "LLLLLLLL:MMMMMMMM HEX" per record, checkpointing
 *                                          after each interval, until caught up (or MAX records)
 *   jlog-driver bench-write DIR COUNT LEN  append COUNT records of LEN bytes; print records/s
 *   jlog-driver bench-read DIR SUB         read everything; print records/s
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include "jlog.h"

static void die(jlog_ctx *ctx, const char *what) {
  fprintf(stderr, "jlog-driver: %s failed: %d %s (errno %d)\n", what, jlog_ctx_err(ctx),
          jlog_ctx_err_string(ctx), jlog_ctx_errno(ctx));
  exit(2);
}

static double now(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return tv.tv_sec + tv.tv_usec / 1e6;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static long read_all(jlog_ctx *ctx, int print, long max) {
  long total = 0;
  while (max < 0 || total < max) {
    jlog_id begin, end;
    int count = jlog_ctx_read_interval(ctx, &begin, &end);
    if (count < 0) die(ctx, "read_interval");
    if (count == 0) break;
    if (max >= 0 && count > max - total) count = (int)(max - total);
    for (int i = 0; i < count; i++, JLOG_ID_ADVANCE(&begin)) {
      jlog_message m;
      end = begin;
      if (jlog_ctx_read_message(ctx, &begin, &m) != 0) die(ctx, "read_message");
      if (print) {
        printf("%08x:%08x ", begin.log, begin.marker);
        for (unsigned j = 0; j < m.mess_len; j++) printf("%02x", ((unsigned char *)m.mess)[j]);
        printf("\n");
      }
      total++;
    }
    if (jlog_ctx_read_checkpoint(ctx, &end) != 0) die(ctx, "read_checkpoint");
  }
  return total;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: jlog-driver init|add|write|read|bench-write|bench-read DIR ...\n");
    return 2;
  }
  const char *cmd = argv[1], *dir = argv[2];
  jlog_ctx *ctx = jlog_new(dir);
  if (!strcmp(cmd, "init")) {
    if (argc > 3) jlog_ctx_alter_journal_size(ctx, (size_t)atol(argv[3]));
    if (jlog_ctx_init(ctx) != 0) die(ctx, "init");
  } else if (!strcmp(cmd, "add") && argc > 3) {
    if (jlog_ctx_add_subscriber(ctx, argv[3], JLOG_BEGIN) != 0) die(ctx, "add_subscriber");
  } else if (!strcmp(cmd, "write")) {
    if (jlog_ctx_open_writer(ctx) != 0) die(ctx, "open_writer");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
      while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
      size_t len = (size_t)n / 2;
      unsigned char *buf = malloc(len + 1);
      for (size_t i = 0; i < len; i++) {
        int hi = hexval(line[2 * i]), lo = hexval(line[2 * i + 1]);
        if (hi < 0 || lo < 0) { fprintf(stderr, "jlog-driver: bad hex\n"); return 2; }
        buf[i] = (unsigned char)(hi * 16 + lo);
      }
      if (jlog_ctx_write(ctx, buf, len) != 0) die(ctx, "write");
      free(buf);
    }
  } else if (!strcmp(cmd, "read") && argc > 3) {
    if (jlog_ctx_open_reader(ctx, argv[3]) != 0) die(ctx, "open_reader");
    read_all(ctx, 1, argc > 4 ? atol(argv[4]) : -1);
  } else if (!strcmp(cmd, "bench-write") && argc > 4) {
    long count = atol(argv[3]);
    size_t len = (size_t)atol(argv[4]);
    char *msg = malloc(len);
    memset(msg, 'X', len);
    if (jlog_ctx_open_writer(ctx) != 0) die(ctx, "open_writer");
    double t0 = now();
    for (long i = 0; i < count; i++)
      if (jlog_ctx_write(ctx, msg, len) != 0) die(ctx, "write");
    jlog_ctx_close(ctx);
    printf("%.0f\n", count / (now() - t0));
    return 0;
  } else if (!strcmp(cmd, "bench-read") && argc > 3) {
    if (jlog_ctx_open_reader(ctx, argv[3]) != 0) die(ctx, "open_reader");
    double t0 = now();
    long total = read_all(ctx, 0, -1);
    printf("%.0f %ld\n", total / (now() - t0), total);
  } else {
    fprintf(stderr, "jlog-driver: unknown command %s\n", cmd);
    return 2;
  }
  jlog_ctx_close(ctx);
  return 0;
}
