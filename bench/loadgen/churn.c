/* wsload churn: the presence churn's churners (bench/presence_churn.py).
 *
 *   wsload churn HOST PORT_A PORT_B PATH ROOM COUNT
 *       COUNT churners (one header line each on stdin), alternating between the two ports,
 *       each on a socket of its own; "ready" once every one has its hello. Commands on stdin:
 *         start              CPU is counted from here; every churner joins ROOM, leaves it once
 *                            `joined` came, joins again once `left` came, and so on
 *         stop DEADLINE      each churner finishes the join and leave it is in and stops; once
 *                            all have, or DEADLINE ms pass, prints one JSON object and exits
 *
 * A join is counted when its leave was answered, as the Python churners counted. The room's
 * messages and presence frames that arrive while joined are read and ignored; an `error`
 * frame, a closed socket, or a cycle unfinished at the deadline is a failed churner (the first
 * failure reported as it came).
 */
#include "wsload.h"

enum { AWAIT_JOINED, AWAIT_LEFT, STOPPED, FAILED };

typedef struct {
    conn_t c;
    int index, state;
    long joins;
} churner_t;

static churner_t *churners;
static int count, settled, failed;
static int stopping;
static const char *room;
static char first_failure[256];

static void fail(churner_t *h, const char *why, cursor detail, size_t len) {
    if (!first_failure[0])
        snprintf(first_failure, sizeof first_failure, "churner %d: %s %.*s", h->index, why,
                 (int)(len > 160 ? 160 : len), detail ? (const char *)detail : "");
    h->state = FAILED;
    failed++;
    settled++;
    close(h->c.fd); /* closing removes it from the epoll set */
    h->c.fd = -1;
}

static void send_op(churner_t *h, const char *op, int next_state) {
    char frame[512];
    snprintf(frame, sizeof frame, "{\"op\":\"%s\",\"room\":\"%s\"}", op, room);
    if (ws_send_text(h->c.fd, frame) < 0) return fail(h, "could not send", NULL, 0);
    h->state = next_state;
}

static void on_text(churner_t *h, cursor p, size_t len) {
    size_t type_len;
    cursor type = field(p, len, "type", &type_len);
    if (is_string(type, type_len, "error")) {
        fail(h, "refused:", p, len);
    } else if (h->state == AWAIT_JOINED && is_string(type, type_len, "joined")) {
        send_op(h, "leave", AWAIT_LEFT);
    } else if (h->state == AWAIT_LEFT && is_string(type, type_len, "left")) {
        h->joins++;
        if (!stopping) return send_op(h, "join", AWAIT_JOINED);
        h->state = STOPPED;
        settled++;
    }
}

static void on_readable(churner_t *h) {
    conn_t *c = &h->c;
    ssize_t n = fill(c);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) return fail(h, "the server closed the socket", NULL, 0);
    int opcode, r;
    unsigned char *p;
    size_t len;
    while (h->state < STOPPED && (r = next_frame(c, &opcode, &p, &len)) == 1) {
        if (opcode == 1) {
            on_text(h, p, len);
        } else if (opcode == 9) {
            if (ws_send(c->fd, 10, (const char *)p, len) < 0) fail(h, "pong failed", NULL, 0);
        } else if (opcode == 8) {
            return fail(h, "the server closed the socket", p, len);
        }
    }
    if (h->state < STOPPED && r < 0) fail(h, "a broken frame", NULL, 0);
}

int churn(int argc, char **argv) {
    if (argc != 8) return 2;
    host = argv[2];
    int ports[2] = {atoi(argv[3]), atoi(argv[4])};
    path = argv[5];
    room = argv[6];
    count = atoi(argv[7]);
    if (count <= 0 || strlen(room) > 200) return 2;
    read_headers(count);
    churners = calloc((size_t)count, sizeof *churners);
    int epoll_fd = epoll_create1(0);
    if (epoll_fd < 0) die("epoll_create1");
    for (int i = 0; i < count; i++) {
        churner_t *h = &churners[i];
        h->index = i;
        errno = 0;
        if (ws_open(&h->c, ports[i % 2], header_for(i)) < 0) {
            fprintf(stderr, "wsload: churner %d of %d could not connect\n", i, count);
            die("set-up");
        }
        fcntl(h->c.fd, F_SETFL, fcntl(h->c.fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, h->c.fd, &ev) < 0) die("epoll_ctl");
    }
    struct epoll_event in = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, STDIN_FILENO, &in) < 0) die("epoll_ctl stdin");
    printf("ready\n");
    fflush(stdout);

    double cpu0 = cpu_s();
    int64_t deadline = 0;
    char line[256];
    size_t line_len = 0;
    struct epoll_event events[512];
    for (;;) {
        int n = epoll_wait(epoll_fd, events, 512, 100);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int e = 0; e < n; e++) {
            uint32_t i = events[e].data.u32;
            if (i != UINT32_MAX) {
                if (churners[i].state < STOPPED) on_readable(&churners[i]);
                continue;
            }
            ssize_t got = read(STDIN_FILENO, line + line_len, sizeof line - 1 - line_len);
            if (got <= 0) return 1; /* the bench went away */
            line_len += (size_t)got;
            line[line_len] = 0;
            char *nl;
            while ((nl = strchr(line, '\n'))) {
                *nl = 0;
                long long ms;
                if (strcmp(line, "start") == 0) {
                    cpu0 = cpu_s();
                    for (int k = 0; k < count; k++) send_op(&churners[k], "join", AWAIT_JOINED);
                } else if (sscanf(line, "stop %lld", &ms) == 1) {
                    stopping = 1;
                    deadline = now_ns() + ms * 1000000LL;
                }
                size_t rest = line_len - (size_t)(nl + 1 - line);
                memmove(line, nl + 1, rest + 1);
                line_len = rest;
            }
        }
        if (stopping && (settled >= count || now_ns() > deadline)) break;
    }
    long joins = 0;
    for (int i = 0; i < count; i++) {
        joins += churners[i].joins;
        if (churners[i].state < STOPPED)
            fail(&churners[i], "its join or leave went unanswered", NULL, 0);
    }
    printf("{\"churners\": %d, \"joins\": %ld, \"failed\": %d, \"cpu_s\": %.3f, "
           "\"first_failure\": ",
           count, joins, failed, cpu_s() - cpu0);
    print_json_string(first_failure);
    printf("}\n");
    fflush(stdout);
    return 0;
}
