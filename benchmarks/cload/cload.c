/*
 * cload: a closed-loop load generator for raftsql's wire protocol, in C.
 *
 * Why: etcd is driven by wrk (C) and a Python driver costs ~90 us of CPU per request at
 * one client (and ~30 us at 64) on the 2 cores it shares with the three nodes, so part of
 * what the Python driver measured was itself. This one does what benchmarks/loadgen.py
 * does (same requests, same checks, same counting) for a few microseconds a request.
 *
 * Protocol: frames of `u32 big-endian length | one CBOR item`; the first frame on a
 * connection is {"hello": "client"}; each request is a map with an "id"; each answer a
 * map whose "ok" is true or false. Every answer is parsed: an error answer counts as an
 * error, never as an op.
 *
 * Usage (benchmarks/cloadgen.py builds and runs it):
 *   cload -a HOST:PORT [-a ...] -c CLIENTS -d SECONDS -w WARMUP -W WORKLOAD
 *         -i INSERT_SQL -r READ_SQL -p PAYLOAD -k KEYS -C CONSISTENCY -o LATENCY_FILE
 *         [-D DEPTH]
 * WORKLOAD: insert_param | insert_literal | txn10 | read.
 * DEPTH: callers per connection (default 1), CLIENTS * DEPTH in all. Each caller has its
 * own session and one request in flight, and sends its next request when its answer
 * arrives, as asynchronous callers sharing a connection do (PySyncObj's peak is measured
 * with 10,000 calls in flight). A request's id names its caller (id = seq << 20 | caller),
 * so answers may come back in any order (an error is answered at once). A caller whose
 * request failed waits RETRY_PAUSE before its next one, as the client library does (it
 * retries an overloaded write after 10 ms, then longer): callers that resend a refused
 * request at once would measure a storm of refusals, not the database.
 * Prints "start <monotonic seconds>" when the first requests leave, then one JSON line:
 * ops, errors, errors_outside (error answers to requests sent in the warmup, which are
 * not counted otherwise), seconds, cpu_s, error_samples (answers as hex CBOR). Latencies (seconds,
 * float64, native byte order) of the ops counted go to LATENCY_FILE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_ADDRS 16
#define MAX_SAMPLES 5
#define MAX_FRAME (64u << 20)

typedef struct {
    unsigned char *p;
    size_t len, cap;
} buf_t;

static void die(const char *what) {
    fprintf(stderr, "cload: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void reserve(buf_t *b, size_t more) {
    if (b->len + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) die("realloc");
    b->cap = cap;
}

static void put(buf_t *b, const void *data, size_t n) {
    reserve(b, n);
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

/* A CBOR head: major type and argument, shortest form (as cbor2 writes it). */
static void head(buf_t *b, int major, uint64_t v) {
    unsigned char h[9];
    size_t n;
    if (v < 24) {
        h[0] = (unsigned char)(major << 5 | v);
        n = 1;
    } else if (v <= 0xff) {
        h[0] = (unsigned char)(major << 5 | 24);
        h[1] = (unsigned char)v;
        n = 2;
    } else if (v <= 0xffff) {
        h[0] = (unsigned char)(major << 5 | 25);
        h[1] = (unsigned char)(v >> 8);
        h[2] = (unsigned char)v;
        n = 3;
    } else if (v <= 0xffffffffu) {
        h[0] = (unsigned char)(major << 5 | 26);
        for (int i = 0; i < 4; i++) h[1 + i] = (unsigned char)(v >> (24 - 8 * i));
        n = 5;
    } else {
        h[0] = (unsigned char)(major << 5 | 27);
        for (int i = 0; i < 8; i++) h[1 + i] = (unsigned char)(v >> (56 - 8 * i));
        n = 9;
    }
    put(b, h, n);
}

static void text(buf_t *b, const char *s) {
    size_t n = strlen(s);
    head(b, 3, n);
    put(b, s, n);
}

static void bytes(buf_t *b, const unsigned char *s, size_t n) {
    head(b, 2, n);
    put(b, s, n);
}

static void boolean(buf_t *b, int v) {
    unsigned char c = v ? 0xf5 : 0xf4;
    put(b, &c, 1);
}

/* Past one CBOR item, or NULL if it is malformed or runs past `end`. */
static const unsigned char *skip(const unsigned char *p, const unsigned char *end, int depth) {
    if (p >= end || depth > 64) return NULL;
    int major = *p >> 5, ai = *p & 31;
    p++;
    uint64_t v;
    if (ai < 24) {
        v = (uint64_t)ai;
    } else if (ai <= 27) {
        int n = 1 << (ai - 24);
        if (end - p < n) return NULL;
        v = 0;
        for (int i = 0; i < n; i++) v = v << 8 | p[i];
        p += n;
    } else {
        return NULL; /* indefinite lengths: cbor2 does not write them */
    }
    switch (major) {
        case 0: case 1: case 7: return p;
        case 2: case 3: return (uint64_t)(end - p) < v ? NULL : p + v;
        case 4:
            for (uint64_t i = 0; i < v && p; i++) p = skip(p, end, depth + 1);
            return p;
        case 5:
            for (uint64_t i = 0; i < 2 * v && p; i++) p = skip(p, end, depth + 1);
            return p;
        default: return skip(p, end, depth + 1); /* a tag: its item follows */
    }
}

/* An unsigned CBOR integer at p, or -1 if p holds something else. */
static int64_t uint_at(const unsigned char *p, const unsigned char *end) {
    if (p >= end || *p >> 5 != 0) return -1;
    int ai = *p & 31;
    if (ai < 24) return ai;
    if (ai > 27) return -1;
    int n = 1 << (ai - 24);
    if (end - p - 1 < n) return -1;
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[1 + i];
    return v > INT64_MAX ? -1 : (int64_t)v;
}

/* Whether the answer is a map whose "ok" is true (1), not (0), or not one CBOR item (-1);
   its "id" goes to *id (-1 if it has none). */
static int answer_ok(const unsigned char *p, const unsigned char *end, int64_t *id) {
    *id = -1;
    if (skip(p, end, 0) != end) return -1;
    if (*p >> 5 != 5) return 0;
    uint64_t pairs = *p & 31;
    if (pairs >= 24) {
        int n = 1 << (pairs - 24);
        pairs = 0;
        for (int i = 0; i < n; i++) pairs = pairs << 8 | p[1 + i];
        p += n;
    }
    p++;
    int ok = 0;
    for (uint64_t i = 0; i < pairs; i++) {
        const unsigned char *value = skip(p, end, 1);
        if (p[0] == 0x62 && p[1] == 'o' && p[2] == 'k') ok = value[0] == 0xf5;
        if (p[0] == 0x62 && p[1] == 'i' && p[2] == 'd') *id = uint_at(value, end);
        p = skip(value, end, 1);
    }
    return ok;
}

#define CALLER_BITS 20
#define RETRY_PAUSE 0.01

/* Callers waiting out RETRY_PAUSE, in the order they failed (so by when they resume). */
typedef struct {
    struct conn *conn;
    uint32_t caller;
    double resume_at;
} paused_t;

typedef struct conn {
    int fd, index, writing;
    uint64_t number;  /* requests sent on this connection: the row's n */
    double *sent_at;  /* per caller: when its request in flight left (< 0: none) */
    uint64_t *seq;    /* per caller: its session's last seq */
    unsigned char session[16]; /* caller k's session: this one with k in its last bytes */
    buf_t in, out;
    size_t out_off;
} conn_t;

static struct {
    const char *workload, *insert_sql, *read_sql, *payload, *consistency;
    uint64_t keys, rng;
} cfg = {"insert_param", "", "", "", "linearizable", 10000, 88172645463325252ull};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t next_random(void) { /* xorshift64 */
    cfg.rng ^= cfg.rng << 13;
    cfg.rng ^= cfg.rng >> 7;
    cfg.rng ^= cfg.rng << 17;
    return cfg.rng;
}

static uint32_t building; /* the caller whose request build_request makes */

/* The same requests as benchmarks/raftsql_load.py makes (see its WORKLOADS). */
static void build_request(conn_t *c, buf_t *b) {
    uint64_t i = (uint64_t)c->index, n = c->number, seq = c->seq[building];
    int txn = strcmp(cfg.workload, "txn10") == 0;
    if (strcmp(cfg.workload, "read") == 0) {
        head(b, 5, 5);
        text(b, "op"); text(b, "read");
        text(b, "sql"); text(b, cfg.read_sql);
        text(b, "params"); head(b, 4, 1); head(b, 0, next_random() % cfg.keys);
        text(b, "consistency"); text(b, cfg.consistency);
    } else {
        head(b, 5, txn ? 6 : 5);
        text(b, "op"); text(b, "write");
        text(b, "stmts");
        if (strcmp(cfg.workload, "insert_literal") == 0) {
            char sql[4096];
            snprintf(sql, sizeof sql, "INSERT INTO t (client, n, payload) VALUES (%llu, %llu, '%s')",
                     (unsigned long long)i, (unsigned long long)n, cfg.payload);
            head(b, 4, 1); head(b, 4, 2); text(b, sql); head(b, 4, 0);
        } else {
            int count = txn ? 10 : 1;
            head(b, 4, (uint64_t)count);
            for (int k = 0; k < count; k++) {
                head(b, 4, 2); text(b, cfg.insert_sql);
                head(b, 4, 3); head(b, 0, i); head(b, 0, txn ? n * 10 + (uint64_t)k : n);
                text(b, cfg.payload);
            }
        }
        if (txn) { text(b, "atomic"); boolean(b, 1); }
        unsigned char session[sizeof c->session];
        memcpy(session, c->session, sizeof session);
        for (int k = 0; k < 4; k++) session[sizeof session - 1 - k] ^= (unsigned char)(building >> (8 * k));
        text(b, "session"); bytes(b, session, sizeof session);
        text(b, "seq"); head(b, 0, seq);
    }
    text(b, "id"); head(b, 0, seq << CALLER_BITS | building);
}

/* Append one frame to the connection's output (sent by the next flush). */
static void frame(conn_t *c, void (*body)(conn_t *, buf_t *)) {
    buf_t item = {0};
    body(c, &item);
    unsigned char len[4] = {(unsigned char)(item.len >> 24), (unsigned char)(item.len >> 16),
                            (unsigned char)(item.len >> 8), (unsigned char)item.len};
    if (c->out_off == c->out.len) c->out.len = c->out_off = 0;
    put(&c->out, len, 4);
    put(&c->out, item.p, item.len);
    free(item.p);
}

static void hello(conn_t *c, buf_t *b) {
    (void)c;
    head(b, 5, 1);
    text(b, "hello"); text(b, "client");
}

static void flush(int ep, conn_t *c) {
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) break;
            die("send");
        }
        c->out_off += (size_t)n;
    }
    int want = c->out_off < c->out.len;
    if (want != c->writing) {
        c->writing = want;
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
    }
}

/* Queue caller k's next request (its seq and the row's n start at 1); the caller of this
   function flushes. */
static void queue_next(conn_t *c, uint32_t k, double t) {
    c->number++;
    c->seq[k]++;
    building = k;
    frame(c, build_request);
    c->sent_at[k] = t;
}

static int connect_to(const char *spec) {
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || (size_t)(colon - spec) >= sizeof host) {
        fprintf(stderr, "cload: bad address %s\n", spec);
        exit(2);
    }
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
        fprintf(stderr, "cload: cannot resolve %s\n", spec);
        exit(2);
    }
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) < 0) die("connect");
    freeaddrinfo(res);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int main(int argc, char **argv) {
    const char *addrs[MAX_ADDRS], *latency_path = NULL;
    int naddrs = 0, clients = 1, depth = 1, opt;
    double duration = 5, warmup = 0.5;
    while ((opt = getopt(argc, argv, "a:c:d:w:W:i:r:p:k:C:o:D:")) != -1) {
        switch (opt) {
            case 'a': if (naddrs < MAX_ADDRS) addrs[naddrs++] = optarg; break;
            case 'c': clients = atoi(optarg); break;
            case 'd': duration = atof(optarg); break;
            case 'w': warmup = atof(optarg); break;
            case 'W': cfg.workload = optarg; break;
            case 'i': cfg.insert_sql = optarg; break;
            case 'r': cfg.read_sql = optarg; break;
            case 'p': cfg.payload = optarg; break;
            case 'k': cfg.keys = strtoull(optarg, NULL, 10); break;
            case 'C': cfg.consistency = optarg; break;
            case 'o': latency_path = optarg; break;
            case 'D': depth = atoi(optarg); break;
            default: fprintf(stderr, "cload: see the comment at the top of cload.c\n"); return 2;
        }
    }
    if (!naddrs || clients < 1 || depth < 1 || depth > 1 << CALLER_BITS || !latency_path ||
        cfg.keys == 0) {
        fprintf(stderr, "cload: -a, -c >= 1, -k >= 1 and -o are required; 1 <= -D <= 2^20\n");
        return 2;
    }
    FILE *lat = fopen(latency_path, "wb");
    if (!lat) die(latency_path);
    int ep = epoll_create1(0), urandom = open("/dev/urandom", O_RDONLY);
    if (ep < 0 || urandom < 0) die("setup");
    if (read(urandom, &cfg.rng, sizeof cfg.rng) != sizeof cfg.rng) die("urandom");
    cfg.rng |= 1;
    conn_t *conns = calloc((size_t)clients, sizeof *conns);
    for (int i = 0; i < clients; i++) {
        conn_t *c = &conns[i];
        c->index = i;
        c->sent_at = malloc((size_t)depth * sizeof *c->sent_at);
        c->seq = calloc((size_t)depth, sizeof *c->seq);
        if (!c->sent_at || !c->seq) die("calloc");
        for (int k = 0; k < depth; k++) c->sent_at[k] = -1;
        c->fd = connect_to(addrs[i % naddrs]);
        if (read(urandom, c->session, sizeof c->session) != sizeof c->session) die("urandom");
        frame(c, hello);
        if (send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL) != (ssize_t)c->out.len) die("hello");
        c->out.len = 0;
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    }
    double start = now(), measure_from = start + warmup, stop_at = measure_from + duration;
    printf("start %.9f\n", start);
    fflush(stdout);
    long inflight = (long)clients * depth;
    /* at most one entry per caller: a ring of all of them */
    uint64_t paused_cap = (uint64_t)clients * (uint64_t)depth, paused_head = 0, paused_tail = 0;
    paused_t *paused = malloc(paused_cap * sizeof *paused);
    if (!paused) die("malloc");
    for (int i = 0; i < clients; i++) {
        for (int k = 0; k < depth; k++) queue_next(&conns[i], (uint32_t)k, now());
        flush(ep, &conns[i]);
    }
    long ops = 0, errors = 0, errors_outside = 0;
    int nsamples = 0;
    char *samples[MAX_SAMPLES];
    struct epoll_event events[256];
    while (inflight) {
        int timeout_ms = 1000;
        if (paused_head < paused_tail) {
            double wait = paused[paused_head % paused_cap].resume_at - now();
            timeout_ms = wait <= 0 ? 0 : (int)(wait * 1000) + 1;
        }
        int n = epoll_wait(ep, events, 256, timeout_ms);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (double t = now(); paused_head < paused_tail; paused_head++) {
            paused_t *w = &paused[paused_head % paused_cap];
            if (w->resume_at > t) break;
            if (t < stop_at) {
                queue_next(w->conn, w->caller, t);
                flush(ep, w->conn);
            } else {
                inflight--;
            }
        }
        if (now() > stop_at + 30) {
            fprintf(stderr, "cload: %ld requests unanswered 30 s after the end\n", inflight);
            return 3;
        }
        for (int e = 0; e < n; e++) {
            conn_t *c = events[e].data.ptr;
            if (events[e].events & EPOLLOUT) flush(ep, c);
            if (!(events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            reserve(&c->in, 1 << 16);
            ssize_t got = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
            if (got < 0 && errno == EAGAIN) continue;
            if (got <= 0) {
                fprintf(stderr, "cload: node closed connection %d\n", c->index);
                return 3;
            }
            c->in.len += (size_t)got;
            size_t used = 0;
            while (c->in.len - used >= 4) {
                const unsigned char *f = c->in.p + used;
                uint32_t len = (uint32_t)f[0] << 24 | (uint32_t)f[1] << 16 | (uint32_t)f[2] << 8 | f[3];
                if (len > MAX_FRAME) {
                    fprintf(stderr, "cload: frame of %u bytes\n", len);
                    return 3;
                }
                if (c->in.len - used - 4 < len) {
                    reserve(&c->in, 4 + len);
                    break;
                }
                double t = now();
                int64_t id;
                int ok = answer_ok(f + 4, f + 4 + len, &id);
                uint32_t k = (uint32_t)((uint64_t)id & ((1u << CALLER_BITS) - 1));
                if (id < 0 || k >= (uint32_t)depth || c->sent_at[k] < 0 ||
                    (uint64_t)id >> CALLER_BITS != c->seq[k]) {
                    fprintf(stderr, "cload: an answer to no request in flight (id %lld) on connection %d\n",
                            (long long)id, c->index);
                    return 3;
                }
                double sent_at = c->sent_at[k];
                c->sent_at[k] = -1;
                inflight--;
                if (sent_at < measure_from) { /* the warmup: not counted, but errors noted */
                    errors_outside += ok != 1;
                } else {
                    if (ok == 1) {
                        double latency = t - sent_at;
                        fwrite(&latency, sizeof latency, 1, lat);
                        ops++;
                    } else {
                        errors++;
                        if (nsamples < MAX_SAMPLES && (samples[nsamples] = malloc(2 * (size_t)len + 1))) {
                            for (uint32_t k = 0; k < len; k++) sprintf(samples[nsamples] + 2 * k, "%02x", f[4 + k]);
                            samples[nsamples][2 * len] = 0;
                            nsamples++;
                        }
                    }
                }
                used += 4 + (size_t)len;
                if (t < stop_at && ok == 1) {
                    queue_next(c, k, t);
                    inflight++;
                } else if (t < stop_at) { /* in flight until it resumes (or the run ends) */
                    paused[paused_tail++ % paused_cap] = (paused_t){c, k, t + RETRY_PAUSE};
                    inflight++;
                }
            }
            memmove(c->in.p, c->in.p + used, c->in.len - used);
            c->in.len -= used;
            flush(ep, c); /* the next requests of every caller answered in this read */
        }
    }
    double end = now();
    if (fclose(lat) != 0) die("latency file");
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
    printf("{\"ops\": %ld, \"errors\": %ld, \"errors_outside\": %ld, \"seconds\": %.6f, "
           "\"cpu_s\": %.6f, \"error_samples\": [",
           ops, errors, errors_outside, (end < stop_at ? end : stop_at) - measure_from, cpu);
    for (int i = 0; i < nsamples; i++) printf("%s\"%s\"", i ? ", " : "", samples[i]);
    printf("]}\n");
    for (int i = 0; i < clients; i++) close(conns[i].fd);
    return 0;
}
