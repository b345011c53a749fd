/* What the modes of wsload share (wsload.c): the connection buffer, frames, the clock. */
#ifndef WSLOAD_H
#define WSLOAD_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_S 10
#define READ_CHUNK 65536
#define MAX_FRAME (16u << 20) /* larger frames are a broken server, not a message */
#define MAX_SEQ 100000000L     /* one byte per sequence number per reader: bounds that map */
#define MAX_DIGITS 18          /* a long holds any 18-digit number */

typedef struct {
    int fd;
    unsigned char *buf;
    size_t off, len, cap; /* unread bytes are buf[off..len) */
    unsigned char *seen;  /* one byte per sequence number */
    size_t seen_cap;
    long delivered;
    int slow, closed;
    int64_t closed_at;
} conn_t;

extern const char *host, *path;
extern int socketio;

void die(const char *what);
int64_t now_ns(void);
double cpu_s(void);
void read_headers(int count);
const char *header_for(int index);
int write_all(int fd, const unsigned char *data, size_t len);
int ws_send(int fd, int opcode, const char *payload, size_t len);
int ws_send_text(int fd, const char *text);
ssize_t fill(conn_t *c);
int next_frame(conn_t *c, int *opcode, unsigned char **payload, size_t *len);
int starts_with(const unsigned char *p, size_t len, const char *prefix);
int contains(const unsigned char *p, size_t len, const char *needle);
int upgrade_request(char *out, size_t cap, int port, const char *header);
int cmp_i64(const void *a, const void *b);
long parse_number(const unsigned char **p, const unsigned char *end);

/* json.c */
typedef const unsigned char *cursor;
cursor field(cursor p, size_t size, const char *key, size_t *len);
int is_string(cursor value, size_t len, const char *text);
long number_field(cursor p, size_t size, const char *key);
void print_json_string(const char *text);

int ws_open(conn_t *c, int port, const char *header);
int storm(int argc, char **argv); /* storm.c */
int churn(int argc, char **argv); /* churn.c */

#endif
