/* wsload: the compiled side of the bench's load generator (see bench/README.md).
 *
 * A Python load generator parsing every delivery used a whole core at about 130 k deliveries/s,
 * so the servers' fan-out could not be measured above that. This program does the parts of the
 * bench that scale with the servers' speed: opening connections (handshakes), receiving a
 * room's messages (subscribe), the recovery storm's reconnects (storm) and the presence
 * churn's joins and leaves (churn). The publisher and everything else stay in Python.
 *
 *   wsload handshakes HOST PORT PATH PROTO COUNT CONCURRENCY
 *       COUNT connections, CONCURRENCY at a time (one thread each): connect, upgrade, wait for
 *       the hello, close. Prints one JSON object.
 *   wsload subscribe HOST PORT_A PORT_B PATH PROTO ROOM COUNT SLOW
 *       COUNT subscribers of ROOM, alternating between the two ports; the last SLOW stop reading
 *       once joined. Prints "ready", then reads commands on stdin:
 *         start                  the measured span begins (CPU and wall time are counted from here)
 *         finish LAST DEADLINE   stop once every reader has message LAST or was closed by the
 *                                server, or DEADLINE ms pass, and print one JSON object
 *                                (percentiles are null when nothing was received)
 *   wsload storm HOST PORT_A PORT_B PATH ROOM COUNT
 *       the recovery storm's subscribers: on A, then on B with since once A's socket closes
 *       (storm.c says how it is driven and what it counts; ours only, JSON)
 *   wsload churn HOST PORT_A PORT_B PATH ROOM COUNT
 *       the presence churn's churners: each joins and leaves ROOM as fast as answered
 *       (churn.c; ours only, JSON)
 *
 * PROTO is "json" (ours, the reference, Channels) or "socketio" (Engine.IO 4 framing).
 * Every mode reads one header line per connection on stdin first ("" for none), e.g.
 * "Authorization: Bearer ...". Message texts are "SEQ SENT_NS ...", SENT_NS being the
 * publisher's CLOCK_MONOTONIC (Python's time.monotonic_ns()), so latency is measured here.
 */
#include "wsload.h"

const char *host, *path;
int socketio;
static char **headers;
static int header_count;

void die(const char *what) {
    fprintf(stderr, "wsload: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(1);
}

int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

double cpu_s(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec +
           u.ru_stime.tv_usec / 1e6;
}

void read_headers(int count) {
    headers = calloc((size_t)count, sizeof *headers);
    char *line = NULL;
    size_t cap = 0;
    for (header_count = 0; header_count < count; header_count++) {
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        headers[header_count] = strdup(line);
    }
    free(line);
}

const char *header_for(int index) {
    return index < header_count ? headers[index] : "";
}

/* --- bytes on a socket ------------------------------------------------------------------ */

int write_all(int fd, const unsigned char *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, IO_TIMEOUT_S * 1000) <= 0) return -1;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return -1;
        }
    }
    return 0;
}

/* One masked client frame (RFC 6455 5.3: a client masks everything it sends). */
int ws_send(int fd, int opcode, const char *payload, size_t len) {
    unsigned char frame[16 + 4096];
    static const unsigned char mask[4] = {0x5a, 0x3c, 0xa5, 0xc3};
    if (len > 4096) return -1;
    size_t h = 0;
    frame[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        frame[h++] = (unsigned char)(0x80 | len);
    } else {
        frame[h++] = 0x80 | 126;
        frame[h++] = (unsigned char)(len >> 8);
        frame[h++] = (unsigned char)len;
    }
    memcpy(frame + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < len; i++) frame[h + i] = (unsigned char)payload[i] ^ mask[i & 3];
    return write_all(fd, frame, h + len);
}

int ws_send_text(int fd, const char *text) {
    return ws_send(fd, 1, text, strlen(text));
}

/* Reads what the socket has into the buffer; >0 bytes, 0 at EOF, -1 on error (or EAGAIN). */
ssize_t fill(conn_t *c) {
    if (c->off > 0) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->cap - c->len < READ_CHUNK) {
        c->cap = c->cap ? c->cap * 2 : 2 * READ_CHUNK;
        c->buf = realloc(c->buf, c->cap);
        if (!c->buf) die("out of memory");
    }
    ssize_t n;
    do {
        n = read(c->fd, c->buf + c->len, c->cap - c->len);
    } while (n < 0 && errno == EINTR);
    if (n > 0) c->len += (size_t)n;
    return n;
}

/* The next whole frame in the buffer: 1 (and consumes it), 0 if more bytes are needed,
 * -1 if the server broke the protocol (a masked or fragmented frame, a length over MAX_FRAME). */
int next_frame(conn_t *c, int *opcode, unsigned char **payload, size_t *len) {
    unsigned char *p = c->buf + c->off;
    size_t have = c->len - c->off;
    if (have < 2) return 0;
    if (!(p[0] & 0x80) || (p[1] & 0x80)) return -1;
    size_t h = 2, n = p[1] & 0x7f;
    if (n == 126) {
        if (have < 4) return 0;
        n = ((size_t)p[2] << 8) | p[3];
        h = 4;
    } else if (n == 127) {
        if (have < 10) return 0;
        uint64_t length = 0;
        for (int i = 2; i < 10; i++) length = (length << 8) | p[i];
        if (length >> 63 || length > MAX_FRAME) return -1;
        n = (size_t)length;
        h = 10;
    }
    if (n > have - h) return 0; /* have >= h here, so nothing overflows */
    *opcode = p[0] & 0x0f;
    *payload = p + h;
    *len = n;
    c->off += h + n;
    return 1;
}

/* The next text frame, blocking (set-up only); pings are answered, Engine.IO pings too. */
static int read_text(conn_t *c, unsigned char **payload, size_t *len) {
    for (;;) {
        int opcode, r;
        while ((r = next_frame(c, &opcode, payload, len)) == 1) {
            if (opcode == 9) {
                if (ws_send(c->fd, 10, (const char *)*payload, *len) < 0) return -1;
            } else if (opcode == 8) {
                return -1;
            } else if (opcode == 1) {
                if (socketio && *len == 1 && **payload == '2') {
                    if (ws_send_text(c->fd, "3") < 0) return -1;
                    continue;
                }
                return 0;
            }
        }
        if (r < 0 || fill(c) <= 0) return -1;
    }
}

int starts_with(const unsigned char *p, size_t len, const char *prefix) {
    size_t n = strlen(prefix);
    return len >= n && memcmp(p, prefix, n) == 0;
}

int contains(const unsigned char *p, size_t len, const char *needle) {
    return memmem(p, len, needle, strlen(needle)) != NULL;
}

/* The HTTP upgrade request with the connection's one extra header; its length, or -1. */
int upgrade_request(char *out, size_t cap, int port, const char *header) {
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s\r\n",
                     path, host, port, header, header[0] ? "\r\n" : "");
    return n <= 0 || (size_t)n >= cap ? -1 : n;
}

/* Connects, upgrades, and waits for the system's hello; 0 on success. */
int ws_open(conn_t *c, int port, const char *header) {
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) return -1;
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) return -1;
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0) return -1;
    char request[8192];
    int n = upgrade_request(request, sizeof request, port, header);
    if (n < 0 || write_all(c->fd, (unsigned char *)request, (size_t)n) < 0) return -1;
    unsigned char *end;
    for (;;) { /* the buffer is NULL until the first fill */
        if (c->len > 0 && (end = memmem(c->buf, c->len, "\r\n\r\n", 4))) break;
        if (c->len > 16384 || fill(c) <= 0) return -1;
    }
    if (!starts_with(c->buf, c->len, "HTTP/1.1 101")) return -1;
    c->off = (size_t)(end + 4 - c->buf);
    unsigned char *p;
    size_t len;
    if (socketio) {
        if (read_text(c, &p, &len) < 0 || !starts_with(p, len, "0")) return -1;
        if (ws_send_text(c->fd, "40") < 0) return -1;
        do {
            if (read_text(c, &p, &len) < 0) return -1;
        } while (!starts_with(p, len, "42[\"hello\""));
    } else {
        if (read_text(c, &p, &len) < 0 || !contains(p, len, "\"hello\"")) return -1;
    }
    return 0;
}

static int ws_join(conn_t *c, const char *room) {
    char frame[512];
    unsigned char *p;
    size_t len;
    if (socketio) {
        snprintf(frame, sizeof frame, "421[\"join\",{\"room\":\"%s\"}]", room);
        if (ws_send_text(c->fd, frame) < 0) return -1;
        do {
            if (read_text(c, &p, &len) < 0) return -1;
        } while (!starts_with(p, len, "431["));
    } else {
        snprintf(frame, sizeof frame, "{\"op\":\"join\",\"room\":\"%s\"}", room);
        if (ws_send_text(c->fd, frame) < 0) return -1;
        do {
            if (read_text(c, &p, &len) < 0 || contains(p, len, "\"error\"")) return -1;
        } while (!contains(p, len, "\"joined\""));
    }
    return 0;
}

/* With `polite` (only after a successful ws_open): our close frame, then the server's (or
 * EOF). Otherwise the socket is just closed: a failed open has no WebSocket to close. */
static void ws_close(conn_t *c, int polite) {
    if (c->fd >= 0) {
        static const char normal[2] = {0x03, (char)0xe8}; /* 1000 */
        if (polite && ws_send(c->fd, 8, normal, 2) == 0) {
            int opcode = 0, r;
            unsigned char *p;
            size_t len;
            while ((r = next_frame(c, &opcode, &p, &len)) == 1 || (r == 0 && fill(c) > 0)) {
                if (r == 1 && opcode == 8) break;
            }
        }
        close(c->fd);
    }
    free(c->buf);
    c->buf = NULL;
    c->fd = -1;
}

int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The same rule as bench/scenarios.py: the value at index int(q * n) of the sorted values,
 * as JSON: milliseconds, or null when there are no values (no figure, never a good one). */
static const char *percentile_ms(char out[32], const int64_t *sorted, size_t n, double q) {
    if (n == 0) return "null";
    size_t i = (size_t)(q * (double)n);
    if (i >= n) i = n - 1;
    snprintf(out, 32, "%.2f", sorted[i] / 1e6);
    return out;
}

/* --- handshakes ------------------------------------------------------------------------- */

static int hs_port, hs_count;
static int hs_next, hs_failures;
static int64_t *hs_times;
static char hs_first_error[256];

static void *hs_worker(void *unused) {
    (void)unused;
    for (;;) {
        int i = __atomic_fetch_add(&hs_next, 1, __ATOMIC_RELAXED);
        if (i >= hs_count) return NULL;
        conn_t c = {.fd = -1};
        errno = 0;
        int64_t started = now_ns();
        int opened = ws_open(&c, hs_port, header_for(i)) == 0;
        if (opened) {
            hs_times[i] = now_ns() - started;
        } else {
            hs_times[i] = -1;
            if (__atomic_fetch_add(&hs_failures, 1, __ATOMIC_RELAXED) == 0)
                snprintf(hs_first_error, sizeof hs_first_error, "%s",
                         errno ? strerror(errno) : "protocol");
        }
        ws_close(&c, opened);
    }
}

static int handshakes(int argc, char **argv) {
    if (argc != 8) return 2;
    host = argv[2];
    hs_port = atoi(argv[3]);
    path = argv[4];
    socketio = strcmp(argv[5], "socketio") == 0;
    hs_count = atoi(argv[6]);
    int concurrency = atoi(argv[7]);
    if (hs_count <= 0 || concurrency <= 0) return 2;
    read_headers(hs_count);
    hs_times = calloc((size_t)hs_count, sizeof *hs_times);
    pthread_t *threads = calloc((size_t)concurrency, sizeof *threads);
    double cpu0 = cpu_s();
    int64_t wall0 = now_ns();
    for (int t = 0; t < concurrency; t++) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        if (pthread_create(&threads[t], &attr, hs_worker, NULL) != 0) die("pthread_create");
    }
    for (int t = 0; t < concurrency; t++) pthread_join(threads[t], NULL);
    double wall = (now_ns() - wall0) / 1e9;
    size_t ok = 0;
    for (int i = 0; i < hs_count; i++)
        if (hs_times[i] >= 0) hs_times[ok++] = hs_times[i];
    qsort(hs_times, ok, sizeof *hs_times, cmp_i64);
    char p50[32], p99[32];
    printf("{\"connections\": %d, \"failures\": %d, \"first_failure\": \"%s\", "
           "\"conn_per_s\": %.1f, \"hello_p50_ms\": %s, \"hello_p99_ms\": %s, "
           "\"loadgen_cpu\": %.2f}\n",
           hs_count, hs_failures, hs_first_error, ok / wall,
           percentile_ms(p50, hs_times, ok, 0.50), percentile_ms(p99, hs_times, ok, 0.99),
           (cpu_s() - cpu0) / wall);
    return 0;
}

/* --- subscribe -------------------------------------------------------------------------- */

static conn_t *subs;
static int sub_count;
static int64_t *latencies;
static size_t lat_len, lat_cap;
static long duplicates, errors, reads, wakeups;
static int64_t last_receive;
static long finish_seq = -1;
static int finishing; /* "finish" was read */
/* After "finish": readers that have message LAST, and readers the server closed before it. */
static int readers_done, readers_gone, readers_closed;

static int has_seq(const conn_t *c, long seq) {
    return seq >= 0 && (size_t)seq < c->seen_cap && c->seen[seq];
}

static void record(conn_t *c, long seq, int64_t sent, int64_t received) {
    if (seq < 0 || seq > MAX_SEQ) {
        errors++;
        return;
    }
    if ((size_t)seq >= c->seen_cap) {
        size_t cap = c->seen_cap ? c->seen_cap : 4096;
        while (cap <= (size_t)seq) cap *= 2;
        c->seen = realloc(c->seen, cap);
        if (!c->seen) die("out of memory");
        memset(c->seen + c->seen_cap, 0, cap - c->seen_cap);
        c->seen_cap = cap;
    }
    if (c->seen[seq]) {
        duplicates++;
        return;
    }
    c->seen[seq] = 1;
    c->delivered++;
    if (seq == finish_seq) readers_done++;
    if (lat_len == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 1 << 20;
        latencies = realloc(latencies, lat_cap * sizeof *latencies);
        if (!latencies) die("out of memory");
    }
    latencies[lat_len++] = received - sent;
    last_receive = received;
}

/* A non-negative decimal of at most MAX_DIGITS digits, or -1. */
long parse_number(const unsigned char **p, const unsigned char *end) {
    long value = 0;
    int digits = 0;
    const unsigned char *q = *p;
    if (q >= end || *q < '0' || *q > '9') return -1;
    while (q < end && *q >= '0' && *q <= '9') {
        if (++digits > MAX_DIGITS) return -1;
        value = value * 10 + (*q++ - '0');
    }
    *p = q;
    return value;
}

/* A text frame that may be a room message: finds its text, "SEQ SENT_NS ...". */
static void on_text(conn_t *c, const unsigned char *p, size_t len, int64_t received) {
    if (socketio) {
        if (len == 1 && p[0] == '2') {
            if (ws_send_text(c->fd, "3") < 0) errors++;
            return;
        }
        if (!starts_with(p, len, "42[\"message\"")) return;
    }
    const unsigned char *end = p + len;
    const unsigned char *q = memmem(p, len, "\"text\"", 6);
    if (!q) return;
    q += 6;
    while (q < end && (*q == ' ' || *q == ':')) q++;
    if (q >= end || *q++ != '"') {
        errors++;
        return;
    }
    long seq = parse_number(&q, end);
    if (q < end && *q == ' ') q++;
    long sent = parse_number(&q, end);
    if (sent < 0) {
        errors++;
        return;
    }
    record(c, seq, sent, received);
}

/* One read per readiness event: level-triggered epoll reports the socket again if more is
 * waiting, and under load each read brings many frames, so the cost per delivery falls. */
static void on_readable(conn_t *c, int epoll_fd) {
    ssize_t n = fill(c);
    reads++;
    if (n < 0 && errno == EAGAIN) return;
    int64_t received = now_ns();
    int opcode, r;
    unsigned char *p;
    size_t len;
    while ((r = next_frame(c, &opcode, &p, &len)) == 1) {
        if (opcode == 1) {
            on_text(c, p, len, received);
        } else if (opcode == 9) {
            if (ws_send(c->fd, 10, (const char *)p, len) < 0) errors++;
        } else if (opcode == 8) {
            n = 0;
            break;
        }
    }
    if (r < 0) errors++;
    if (n <= 0 || r < 0) {
        c->closed = 1;
        readers_closed++;
        if (finishing && !has_seq(c, finish_seq)) readers_gone++; /* LAST never comes */
        epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    }
}

static void check_slow(int64_t now) {
    for (int i = 0; i < sub_count; i++) {
        conn_t *c = &subs[i];
        if (!c->slow || c->closed_at) continue;
        struct tcp_info info;
        socklen_t size = sizeof info;
        if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &info, &size) == 0 &&
            info.tcpi_state != TCP_ESTABLISHED)
            c->closed_at = now;
    }
}

static void report(double cpu0, int64_t wall0, int readers) {
    long delivered = 0;
    for (int i = 0; i < sub_count; i++) delivered += subs[i].delivered;
    qsort(latencies, lat_len, sizeof *latencies, cmp_i64);
    char p50[32], p99[32], p999[32];
    printf("{\"subscribers\": %d, \"readers\": %d, \"delivered\": %ld, \"duplicates\": %ld, "
           "\"errors\": %ld, \"readers_closed\": %d, \"last_receive_ns\": %lld, "
           "\"p50_ms\": %s, \"p99_ms\": %s, \"p999_ms\": %s, \"cpu_s\": %.3f, "
           "\"wall_s\": %.3f, \"reads\": %ld, \"wakeups\": %ld, \"slow_closed_ns\": [",
           sub_count, readers, delivered, duplicates, errors, readers_closed,
           (long long)last_receive, percentile_ms(p50, latencies, lat_len, 0.50),
           percentile_ms(p99, latencies, lat_len, 0.99),
           percentile_ms(p999, latencies, lat_len, 0.999), cpu_s() - cpu0,
           (now_ns() - wall0) / 1e9, reads, wakeups);
    const char *sep = "";
    for (int i = 0; i < sub_count; i++) {
        if (subs[i].slow && subs[i].closed_at) {
            printf("%s%lld", sep, (long long)subs[i].closed_at);
            sep = ", ";
        }
    }
    printf("]}\n");
    fflush(stdout);
}

static int subscribe(int argc, char **argv) {
    if (argc != 10) return 2;
    host = argv[2];
    int ports[2] = {atoi(argv[3]), atoi(argv[4])};
    path = argv[5];
    socketio = strcmp(argv[6], "socketio") == 0;
    const char *room = argv[7];
    sub_count = atoi(argv[8]);
    int slow = atoi(argv[9]);
    if (sub_count <= 0 || slow < 0 || slow >= sub_count || strlen(room) > 200) return 2;
    read_headers(sub_count);
    subs = calloc((size_t)sub_count, sizeof *subs);
    int epoll_fd = epoll_create1(0);
    for (int i = 0; i < sub_count; i++) {
        conn_t *c = &subs[i];
        errno = 0;
        if (ws_open(c, ports[i % 2], header_for(i)) < 0 || ws_join(c, room) < 0) {
            fprintf(stderr, "wsload: subscriber %d of %d could not join\n", i, sub_count);
            die("set-up");
        }
        c->slow = i >= sub_count - slow;
        if (c->slow) continue; /* never read again: TCP backpressure builds up */
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    }
    int readers = sub_count - slow;
    struct epoll_event in = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, STDIN_FILENO, &in) < 0) die("epoll_ctl stdin");
    printf("ready\n");
    fflush(stdout);

    double cpu0 = cpu_s();
    int64_t wall0 = now_ns(), deadline = 0, last_check = 0;
    char line[256];
    size_t line_len = 0;
    struct epoll_event events[512];
    for (;;) {
        int n = epoll_wait(epoll_fd, events, 512, 100);
        wakeups++;
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int e = 0; e < n; e++) {
            if (events[e].data.u32 != UINT32_MAX) {
                on_readable(&subs[events[e].data.u32], epoll_fd);
                continue;
            }
            ssize_t got = read(STDIN_FILENO, line + line_len, sizeof line - 1 - line_len);
            if (got <= 0) return 1; /* the bench went away */
            line_len += (size_t)got;
            line[line_len] = 0;
            char *nl;
            while ((nl = strchr(line, '\n'))) {
                *nl = 0;
                long last, deadline_ms;
                if (strcmp(line, "start") == 0) {
                    cpu0 = cpu_s();
                    wall0 = now_ns();
                } else if (sscanf(line, "finish %ld %ld", &last, &deadline_ms) == 2) {
                    finish_seq = last;
                    finishing = 1;
                    readers_done = readers_gone = 0;
                    for (int i = 0; i < sub_count; i++) {
                        if (subs[i].slow) continue;
                        if (has_seq(&subs[i], last))
                            readers_done++;
                        else if (subs[i].closed)
                            readers_gone++;
                    }
                    deadline = now_ns() + deadline_ms * 1000000LL;
                }
                size_t rest = line_len - (size_t)(nl + 1 - line);
                memmove(line, nl + 1, rest + 1);
                line_len = rest;
            }
        }
        int64_t now = now_ns();
        if (slow && now - last_check >= 100000000LL) {
            check_slow(now);
            last_check = now;
        }
        /* every reader has LAST, or never will (closed by the server), or time is up */
        if (finishing && (readers_done + readers_gone >= readers || now > deadline)) {
            report(cpu0, wall0, readers);
            return 0;
        }
    }
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    int status = 2;
    if (argc > 1 && strcmp(argv[1], "handshakes") == 0) status = handshakes(argc, argv);
    if (argc > 1 && strcmp(argv[1], "subscribe") == 0) status = subscribe(argc, argv);
    if (argc > 1 && strcmp(argv[1], "storm") == 0) status = storm(argc, argv);
    if (argc > 1 && strcmp(argv[1], "churn") == 0) status = churn(argc, argv);
    if (status == 2)
        fprintf(stderr, "usage: wsload handshakes HOST PORT PATH PROTO COUNT CONCURRENCY\n"
                        "       wsload subscribe HOST PORT_A PORT_B PATH PROTO ROOM COUNT SLOW\n"
                        "       wsload storm HOST PORT_A PORT_B PATH ROOM COUNT\n"
                        "       wsload churn HOST PORT_A PORT_B PATH ROOM COUNT\n");
    return status;
}
