/* wsload storm: the subscribers of the recovery storm (bench/recovery_storm.py).
 *
 *   wsload storm HOST PORT_A PORT_B PATH ROOM COUNT
 *       COUNT subscribers (one header line each on stdin, as in the other modes) join ROOM on
 *       port A, OPEN_AT_ONCE handshakes at a time, each learning the room's epoch and offset
 *       from its `joined`; then "ready" is printed. From then on each subscriber whose socket
 *       on A closes (the bench kills A) reconnects to port B at once, with a nonblocking
 *       connect on the same epoll loop, and joins with since = {offset: the last offset it
 *       received, epoch: the epoch of its first joined}, the same header (token) as before.
 *       Commands on stdin:
 *         start                  CPU is counted from here; answered with "started"
 *         killed NS DEADLINE     A was killed at NS (CLOCK_MONOTONIC, Python's monotonic_ns):
 *                                the origin of the figures. Once every subscriber is recovered
 *                                or ended, or DEADLINE ms pass, prints {"storm_cpu_s": ...}
 *         finish LAST DEADLINE   stop once every subscriber has offset LAST or ended, or
 *                                DEADLINE ms pass; prints one JSON object and exits
 *
 * Counted as bench/recovery_storm.py always did: an offset at or below the last one received
 * is a duplicate (repeated or out of order), offsets passed over are skipped (lost), and a
 * subscriber is recovered once it has B's `joined` and every offset up to the one `joined`
 * named (a `joined` without recovered:true counts in not_recovered). Only the frames'
 * top-level keys are read (type, offset, epoch, recovered), so a key of the same name inside
 * a nested object or a string is never taken for one; presence frames are ignored.
 */
#include "wsload.h"

#include <stddef.h>

#define OPEN_AT_ONCE 50 /* concurrent handshakes while the subscribers join A */
#define EPOCH_MAX 160   /* the epoch's JSON string, quotes and escapes included */

enum { CONNECTING, UPGRADING, AWAIT_HELLO, JOINING, LIVE, ENDED };

typedef struct {
    conn_t c;
    int index, state, on_b;
    char epoch[EPOCH_MAX]; /* as A's joined spelt it: sent back verbatim in since */
    long last, target;     /* target: the offset B's joined named, -1 before it */
    long duplicates, skipped, gaps, not_recovered;
    int64_t closed_ns, hello_ns, recovered_ns; /* 0 until it happens */
} sub_t;

static sub_t *subs;
static int count, ports[2], epoll_fd;
static const char *room;
static int next_open, joined_on_a, ended, recovered;
static long unparsed;
static char first_failure[256];

/* --- one subscriber ---------------------------------------------------------------------- */

static void end_sub(sub_t *s, const char *why, cursor detail, size_t detail_len) {
    if (s->state == ENDED) return;
    if (joined_on_a < count) { /* not everyone is on A yet: the set-up failed */
        fprintf(stderr, "wsload storm: subscriber %d on A: %s %.*s\n", s->index, why,
                (int)detail_len, detail ? (const char *)detail : "");
        exit(1);
    }
    if (!first_failure[0])
        snprintf(first_failure, sizeof first_failure, "subscriber %d on %c: %s %.*s", s->index,
                 s->on_b ? 'B' : 'A', why, (int)(detail_len > 160 ? 160 : detail_len),
                 detail ? (const char *)detail : "");
    s->state = ENDED;
    ended++;
    if (s->c.fd >= 0) close(s->c.fd); /* closing removes it from the epoll set */
    s->c.fd = -1;
}

static void start_connect(sub_t *s) {
    conn_t *c = &s->c;
    free(c->buf);
    *c = (conn_t){.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)};
    s->state = CONNECTING;
    if (c->fd < 0) return end_sub(s, strerror(errno), NULL, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ports[s->on_b])};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) die("HOST is not an IPv4 address");
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)
        return end_sub(s, strerror(errno), NULL, 0);
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)s->index};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
}

static void connected(sub_t *s) {
    int error = 0;
    socklen_t size = sizeof error;
    if (getsockopt(s->c.fd, SOL_SOCKET, SO_ERROR, &error, &size) < 0 || error)
        return end_sub(s, "connect:", (cursor)strerror(error), strlen(strerror(error)));
    char request[8192];
    int n = upgrade_request(request, sizeof request, ports[s->on_b], header_for(s->index));
    if (n < 0 || write_all(s->c.fd, (unsigned char *)request, (size_t)n) < 0)
        return end_sub(s, "could not send the upgrade", NULL, 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)s->index};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, s->c.fd, &ev) < 0) die("epoll_ctl");
    s->state = UPGRADING;
}

/* Its socket on A closed: straight to B, as a client would. */
static void lost_a(sub_t *s, int64_t now) {
    close(s->c.fd);
    s->closed_ns = now;
    s->on_b = 1;
    start_connect(s);
}

static void receive(sub_t *s, long offset) {
    if (offset < 0) {
        unparsed++;
    } else if (offset <= s->last) {
        s->duplicates++;
    } else {
        s->skipped += offset - s->last - 1;
        s->last = offset;
    }
}

static void send_join(sub_t *s) {
    char frame[512];
    if (s->on_b)
        snprintf(frame, sizeof frame,
                 "{\"op\":\"join\",\"room\":\"%s\",\"since\":{\"offset\":%ld,\"epoch\":%s}}", room,
                 s->last, s->epoch);
    else
        snprintf(frame, sizeof frame, "{\"op\":\"join\",\"room\":\"%s\"}", room);
    if (ws_send_text(s->c.fd, frame) < 0) return end_sub(s, "could not send join", NULL, 0);
    s->state = JOINING;
}

static void joined(sub_t *s, cursor p, size_t len) {
    long offset = number_field(p, len, "offset");
    size_t epoch_len;
    cursor epoch = field(p, len, "epoch", &epoch_len);
    if (offset < 0 || !epoch || epoch_len >= EPOCH_MAX || *epoch != '"')
        return end_sub(s, "joined without an offset and an epoch:", p, len);
    s->state = LIVE;
    if (s->on_b) {
        size_t flag_len;
        cursor flag = field(p, len, "recovered", &flag_len);
        if (!(flag && flag_len == 4 && memcmp(flag, "true", 4) == 0)) s->not_recovered++;
        s->target = offset;
        return;
    }
    memcpy(s->epoch, epoch, epoch_len);
    s->epoch[epoch_len] = 0;
    s->last = offset;
    joined_on_a++;
    if (next_open < count) start_connect(&subs[next_open++]);
    if (joined_on_a == count) {
        printf("ready\n");
        fflush(stdout);
    }
}

/* One text frame; its subscriber may have ended after it. */
static void on_text(sub_t *s, cursor p, size_t len, int64_t now) {
    size_t type_len;
    cursor type = field(p, len, "type", &type_len);
    if (!type) {
        unparsed++;
    } else if (s->state == AWAIT_HELLO) {
        if (!is_string(type, type_len, "hello")) return end_sub(s, "expected hello, got", p, len);
        if (s->on_b) s->hello_ns = now;
        send_join(s);
    } else if (is_string(type, type_len, "error")) {
        end_sub(s, "refused:", p, len);
    } else if (is_string(type, type_len, "joined")) {
        if (s->state == JOINING) joined(s, p, len);
    } else if (s->state == JOINING && !s->on_b) {
        /* on A nothing counts before joined (the offset it names is the start) */
    } else if (is_string(type, type_len, "message")) {
        receive(s, number_field(p, len, "offset"));
    } else if (is_string(type, type_len, "gap")) {
        s->gaps++;
    }
    if (s->on_b && s->state == LIVE && s->target >= 0 && !s->recovered_ns && s->last >= s->target) {
        s->recovered_ns = now;
        recovered++;
    }
}

static void on_readable(sub_t *s, int64_t now) {
    conn_t *c = &s->c;
    ssize_t n = fill(c);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) return s->on_b ? end_sub(s, "B closed the socket", NULL, 0) : lost_a(s, now);
    if (s->state == UPGRADING) {
        unsigned char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end) {
            if (c->len > 16384) end_sub(s, "no end to the upgrade answer", NULL, 0);
            return;
        }
        if (!starts_with(c->buf, c->len, "HTTP/1.1 101"))
            return end_sub(s, "upgrade refused:", c->buf, (size_t)(end - c->buf));
        c->off = (size_t)(end + 4 - c->buf);
        s->state = AWAIT_HELLO;
    }
    int opcode, r;
    unsigned char *p;
    size_t len;
    while (s->state != ENDED && (r = next_frame(c, &opcode, &p, &len)) == 1) {
        if (opcode == 1) {
            on_text(s, p, len, now);
        } else if (opcode == 9) {
            if (ws_send(c->fd, 10, (const char *)p, len) < 0) end_sub(s, "pong failed", NULL, 0);
        } else if (opcode == 8) {
            return s->on_b ? end_sub(s, "B closed the socket", p, len) : lost_a(s, now);
        }
    }
    if (s->state != ENDED && r < 0) end_sub(s, "a broken frame", NULL, 0);
}

/* --- the figures ------------------------------------------------------------------------- */

/* Milliseconds after `origin` at quantile q, as bench/recovery_storm.py rounds them. */
static const char *after_ms(char out[32], int64_t origin, size_t field_offset, double q) {
    int64_t *values = calloc((size_t)count, sizeof *values);
    size_t n = 0;
    for (int i = 0; i < count; i++) {
        int64_t at = *(const int64_t *)((const char *)&subs[i] + field_offset);
        if (at) values[n++] = at - origin;
    }
    qsort(values, n, sizeof *values, cmp_i64);
    size_t i = (size_t)(q * (double)n);
    if (n) snprintf(out, 32, "%.1f", values[i < n ? i : n - 1] / 1e6);
    free(values);
    return n ? out : "null";
}

static void report(int64_t killed_ns, long last, double storm_cpu) {
    long lost = 0, duplicated = 0, gaps = 0, not_recovered = 0;
    for (int i = 0; i < count; i++) {
        sub_t *s = &subs[i];
        lost += s->skipped + (last > s->last ? last - s->last : 0);
        duplicated += s->duplicates;
        gaps += s->gaps;
        not_recovered += s->not_recovered;
    }
    char a[32], b[32], c[32], d[32], e[32], f[32], g[32];
    size_t rec = offsetof(sub_t, recovered_ns), cl = offsetof(sub_t, closed_ns),
           he = offsetof(sub_t, hello_ns);
    printf("{\"recovered\": %d, \"recovered_p50_ms\": %s, \"recovered_p99_ms\": %s, "
           "\"recovered_max_ms\": %s, \"closed_p50_ms\": %s, \"closed_p99_ms\": %s, "
           "\"hello_p50_ms\": %s, \"hello_p99_ms\": %s, \"ended_early\": %d, "
           "\"not_recovered\": %ld, \"lost\": %ld, \"duplicated\": %ld, \"gaps\": %ld, "
           "\"unparsed_frames\": %ld, \"storm_cpu_s\": %.3f, \"first_failure\": ",
           recovered, after_ms(a, killed_ns, rec, 0.50), after_ms(b, killed_ns, rec, 0.99),
           after_ms(c, killed_ns, rec, 1.0), after_ms(d, killed_ns, cl, 0.50),
           after_ms(e, killed_ns, cl, 0.99), after_ms(f, killed_ns, he, 0.50),
           after_ms(g, killed_ns, he, 0.99), ended, not_recovered, lost, duplicated, gaps,
           unparsed, storm_cpu);
    print_json_string(first_failure);
    printf("}\n");
    fflush(stdout);
}

/* --- the loop ---------------------------------------------------------------------------- */

int storm(int argc, char **argv) {
    if (argc != 8) return 2;
    host = argv[2];
    ports[0] = atoi(argv[3]);
    ports[1] = atoi(argv[4]);
    path = argv[5];
    room = argv[6];
    count = atoi(argv[7]);
    if (count <= 0 || strlen(room) > 200) return 2;
    read_headers(count);
    subs = calloc((size_t)count, sizeof *subs);
    for (int i = 0; i < count; i++) subs[i] = (sub_t){.c.fd = -1, .index = i, .target = -1};
    if ((epoll_fd = epoll_create1(0)) < 0) die("epoll_create1");
    struct epoll_event in = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, STDIN_FILENO, &in) < 0) die("epoll_ctl stdin");
    while (next_open < count && next_open < OPEN_AT_ONCE) start_connect(&subs[next_open++]);

    double cpu0 = cpu_s(), storm_cpu = 0;
    int64_t killed_ns = 0, recovery_deadline = 0, finish_deadline = 0;
    int storm_reported = 0, finishing = 0;
    long last = 0;
    char line[256];
    size_t line_len = 0;
    struct epoll_event events[512];
    for (;;) {
        int n = epoll_wait(epoll_fd, events, 512, 100);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        int64_t now = now_ns();
        for (int e = 0; e < n; e++) {
            uint32_t i = events[e].data.u32;
            now = now_ns();
            if (i != UINT32_MAX) {
                sub_t *s = &subs[i];
                if (s->state == CONNECTING)
                    connected(s);
                else if (s->state != ENDED)
                    on_readable(s, now);
                continue;
            }
            ssize_t got = read(STDIN_FILENO, line + line_len, sizeof line - 1 - line_len);
            if (got <= 0) return 1; /* the bench went away */
            line_len += (size_t)got;
            line[line_len] = 0;
            char *nl;
            while ((nl = strchr(line, '\n'))) {
                *nl = 0;
                long long at, ms;
                if (strcmp(line, "start") == 0) {
                    cpu0 = cpu_s();
                    printf("started\n");
                    fflush(stdout);
                } else if (sscanf(line, "killed %lld %lld", &at, &ms) == 2) {
                    killed_ns = at;
                    recovery_deadline = now + ms * 1000000LL;
                } else if (sscanf(line, "finish %ld %lld", &last, &ms) == 2) {
                    finishing = 1;
                    finish_deadline = now + ms * 1000000LL;
                }
                size_t rest = line_len - (size_t)(nl + 1 - line);
                memmove(line, nl + 1, rest + 1);
                line_len = rest;
            }
        }
        if (killed_ns && !storm_reported &&
            (recovered + ended >= count || now > recovery_deadline)) {
            storm_cpu = cpu_s() - cpu0;
            storm_reported = 1;
            printf("{\"storm_cpu_s\": %.3f}\n", storm_cpu);
            fflush(stdout);
        }
        if (finishing) {
            int done = 0;
            for (int i = 0; i < count; i++) done += subs[i].state == ENDED || subs[i].last >= last;
            if (done == count || now > finish_deadline) {
                report(killed_ns, last, storm_cpu);
                return 0;
            }
        }
    }
}
