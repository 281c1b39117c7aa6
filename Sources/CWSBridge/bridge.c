#define _GNU_SOURCE
#include "CWSBridge.h"

#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Data. Commands cross threads under `lock`; connections live on the service thread only.

typedef enum { CMD_CONNECT, CMD_SEND, CMD_CLOSE } cmd_kind;

typedef struct cmd {
    struct cmd *next;
    cmd_kind kind;
    int64_t id;
    // connect
    char *host;
    char *path;
    int port;
    int tls;
    // send: LWS_PRE bytes of headroom, then the payload
    uint8_t *buf;
    size_t len;
    int binary;
    // close
    int code;
    char reason[124];
    size_t reason_len;
} cmd;

typedef struct out_msg {
    struct out_msg *next;
    uint8_t *buf;  // LWS_PRE + len
    size_t len;
    int binary;
} out_msg;

typedef struct conn {
    struct conn *next;
    int64_t id;
    struct lws *wsi;
    char *host;  // kept alive for lws while connecting
    char *path;
    out_msg *out_head, *out_tail;
    uint8_t *rx;
    size_t rx_len, rx_cap;
    int rx_binary;
    int established;
    int close_requested;
    int close_code;
    char close_reason[124];
    size_t close_reason_len;
    int peer_closed;
    int peer_code;
    char peer_reason[124];
    size_t peer_reason_len;
    int done;  // the terminal event was reported; reaped on the next drain
} conn;

struct wsb_client {
    pthread_mutex_t lock;
    struct lws_context *ctx;  // NULL under `lock` before destruction, so no late cancel touches it
    cmd *cmd_head, *cmd_tail;
    atomic_int stop;
    // service thread only
    int destroying;  // inside lws_context_destroy: connections end because the runtime stops
    conn *conns;
    lws_retry_bo_t policy;
    size_t max_message_bytes;
    wsb_event_fn on_event;
    void *event_context;
    char *ca_file;
};

static wsb_log_fn log_emit;
static int log_levels;
// The last error lws logged on this thread: a TLS failure's real reason reaches only the log
// ("unable to get local issuer certificate"), the callback gets "connect SSL err 1: error:00000001".
static __thread char last_error[200];

// ---------------------------------------------------------------------------------------------
// Helpers (service thread).

static void emit(wsb_client *c, conn *k, int kind, const void *data, size_t len, int code) {
    c->on_event(c->event_context, k->id, kind, (const uint8_t *)data, len, code);
}

static void emit_terminal(wsb_client *c, conn *k, int kind, const void *data, size_t len, int code) {
    if (k->done)
        return;
    k->done = 1;
    if (k->wsi)
        lws_set_opaque_user_data(k->wsi, NULL);
    k->wsi = NULL;
    emit(c, k, kind, data, len, code);
}

static void free_outbox(conn *k) {
    out_msg *m = k->out_head;
    while (m) {
        out_msg *n = m->next;
        free(m->buf);
        free(m);
        m = n;
    }
    k->out_head = k->out_tail = NULL;
}

static void free_conn(conn *k) {
    free_outbox(k);
    free(k->rx);
    free(k->host);
    free(k->path);
    free(k);
}

static conn *find_conn(wsb_client *c, int64_t id) {
    for (conn *k = c->conns; k; k = k->next)
        if (k->id == id && !k->done)
            return k;
    return NULL;
}

static void reap(wsb_client *c) {
    conn **p = &c->conns;
    while (*p) {
        if ((*p)->done) {
            conn *k = *p;
            *p = k->next;
            free_conn(k);
        } else {
            p = &(*p)->next;
        }
    }
}

static void free_cmd(cmd *m) {
    free(m->host);
    free(m->path);
    free(m->buf);
    free(m);
}

static void start_connect(wsb_client *c, cmd *m) {
    conn *k = c->ctx ? calloc(1, sizeof(*k)) : NULL;
    if (!k) {
        conn tmp = {.id = m->id};
        static const char failed[] = "could not start the connection";
        emit(c, &tmp, WSB_EVENT_ERROR, failed, sizeof(failed) - 1, 0);
        return;
    }
    k->id = m->id;
    k->host = m->host;
    k->path = m->path;
    m->host = m->path = NULL;
    k->next = c->conns;
    c->conns = k;

    struct lws_client_connect_info info;
    memset(&info, 0, sizeof(info));
    info.context = c->ctx;
    info.address = k->host;
    info.port = m->port;
    info.path = k->path;  // with its query string: lws sends it verbatim in the request line
    info.host = k->host;  // Host header, SNI and the certificate's hostname check
    info.origin = NULL;
    info.protocol = NULL;
    info.ietf_version_or_minus_one = -1;
    // Strict TLS: no self-signed, no hostname skip. ALPN pinned to HTTP/1.1: the upgrade is HTTP/1.1.
    info.ssl_connection = m->tls ? LCCSCF_USE_SSL : 0;
    info.alpn = "http/1.1";
    info.opaque_user_data = k;
    info.retry_and_idle_policy = &c->policy;
    // No `pwsi`: lws would write through it after the connection ends, and `k` is freed by then.

    struct lws *wsi = lws_client_connect_via_info(&info);
    if (k->done)
        return;  // lws reported CLIENT_CONNECTION_ERROR from inside the call
    if (!wsi) {
        static const char failed[] = "could not start the connection";
        emit_terminal(c, k, WSB_EVENT_ERROR, failed, sizeof(failed) - 1, 0);
        return;
    }
    k->wsi = wsi;
}

static void queue_send(wsb_client *c, cmd *m) {
    conn *k = find_conn(c, m->id);
    if (!k)
        return;  // closed meanwhile; the Swift side has been told
    out_msg *o = calloc(1, sizeof(*o));
    if (!o)
        return;
    o->buf = m->buf;
    o->len = m->len;
    o->binary = m->binary;
    m->buf = NULL;
    if (k->out_tail)
        k->out_tail->next = o;
    else
        k->out_head = o;
    k->out_tail = o;
    if (k->established && k->wsi)
        lws_callback_on_writable(k->wsi);
}

static void queue_close(wsb_client *c, cmd *m) {
    conn *k = find_conn(c, m->id);
    if (!k || k->close_requested)
        return;
    k->close_requested = 1;
    k->close_code = m->code;
    memcpy(k->close_reason, m->reason, m->reason_len);
    k->close_reason_len = m->reason_len;
    if (!k->wsi)
        return;
    if (k->established)
        lws_callback_on_writable(k->wsi);
    else
        lws_set_timeout(k->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);  // still connecting: abort
}

static void drain(wsb_client *c) {
    pthread_mutex_lock(&c->lock);
    cmd *m = c->cmd_head;
    c->cmd_head = c->cmd_tail = NULL;
    pthread_mutex_unlock(&c->lock);
    reap(c);
    while (m) {
        cmd *next = m->next;
        switch (m->kind) {
        case CMD_CONNECT: start_connect(c, m); break;
        case CMD_SEND: queue_send(c, m); break;
        case CMD_CLOSE: queue_close(c, m); break;
        }
        free_cmd(m);
        m = next;
    }
}

// ---------------------------------------------------------------------------------------------
// The one protocol callback.

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
    (void)user;
    struct lws_context *context = lws_get_context(wsi);
    wsb_client *c = context ? lws_context_user(context) : NULL;
    if (!c)
        return 0;
    conn *k = (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED) ? NULL : lws_get_opaque_user_data(wsi);

    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        // Broadcast to every protocol of every vhost; there is one of each, so this runs once.
        drain(c);
        return 0;

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        if (!k)
            return 0;
        char text[512];
        const char *what = in ? (const char *)in : "connection failed";
        if (last_error[0])
            snprintf(text, sizeof(text), "%s (%s)", what, last_error);
        else
            snprintf(text, sizeof(text), "%s", what);
        last_error[0] = 0;
        emit_terminal(c, k, WSB_EVENT_ERROR, text, strlen(text), 0);
        return 0;
    }

    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (!k)
            return 0;
        k->established = 1;
        k->wsi = wsi;
        emit(c, k, WSB_EVENT_OPEN, NULL, 0, 0);
        if (k->out_head || k->close_requested)
            lws_callback_on_writable(wsi);
        return 0;

    case LWS_CALLBACK_CLIENT_RECEIVE: {
        if (!k)
            return 0;
        if (lws_is_first_fragment(wsi)) {
            k->rx_len = 0;
            k->rx_binary = lws_frame_is_binary(wsi);
        }
        if (k->rx_len + len > c->max_message_bytes) {
            static const char big[] = "message too big";
            lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)big, sizeof(big) - 1);
            emit_terminal(c, k, WSB_EVENT_CLOSED, big, sizeof(big) - 1, 1009);
            return -1;
        }
        if (k->rx_len + len > k->rx_cap) {
            size_t cap = k->rx_cap ? k->rx_cap : 4096;
            while (cap < k->rx_len + len)
                cap *= 2;
            uint8_t *grown = realloc(k->rx, cap);
            if (!grown)
                return -1;
            k->rx = grown;
            k->rx_cap = cap;
        }
        if (len)
            memcpy(k->rx + k->rx_len, in, len);
        k->rx_len += len;
        if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
            emit(c, k, k->rx_binary ? WSB_EVENT_BINARY : WSB_EVENT_TEXT, k->rx, k->rx_len, 0);
            k->rx_len = 0;
            if (k->rx_cap > 65536) {  // do not keep a large buffer for small chat messages
                free(k->rx);
                k->rx = NULL;
                k->rx_cap = 0;
            }
        }
        return 0;
    }

    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        if (!k)
            return 0;
        out_msg *o = k->out_head;
        if (o) {
            k->out_head = o->next;
            if (!k->out_head)
                k->out_tail = NULL;
            int n = lws_write(wsi, o->buf + LWS_PRE, o->len, o->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
            free(o->buf);
            free(o);
            if (n < 0)
                return -1;  // lws closes it; CLIENT_CLOSED reports 1006
            if (k->out_head || k->close_requested)
                lws_callback_on_writable(wsi);
            return 0;
        }
        if (k->close_requested) {
            lws_close_reason(wsi, (enum lws_close_status)k->close_code, (unsigned char *)k->close_reason,
                             k->close_reason_len);
            return -1;  // lws sends the close frame and waits for the peer's
        }
        return 0;
    }

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (!k)
            return 0;
        k->peer_closed = 1;
        if (len >= 2) {
            const uint8_t *p = in;
            k->peer_code = (p[0] << 8) | p[1];
            size_t n = len - 2 > sizeof(k->peer_reason) ? sizeof(k->peer_reason) : len - 2;
            memcpy(k->peer_reason, p + 2, n);
            k->peer_reason_len = n;
        } else {
            k->peer_code = 1005;  // no status code present
        }
        return 0;  // lws echoes the close

    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        if (!k)
            return 0;
        if (k->peer_closed) {
            emit_terminal(c, k, WSB_EVENT_CLOSED, k->peer_reason, k->peer_reason_len, k->peer_code);
        } else if (k->close_requested && k->established) {
            emit_terminal(c, k, WSB_EVENT_CLOSED, k->close_reason, k->close_reason_len, k->close_code);
        } else if (k->established && c->destroying) {
            static const char stopped[] = "the WebSocket runtime stopped";
            emit_terminal(c, k, WSB_EVENT_CLOSED, stopped, sizeof(stopped) - 1, 1001);
        } else if (k->established) {
            static const char gone[] = "connection lost";
            emit_terminal(c, k, WSB_EVENT_CLOSED, gone, sizeof(gone) - 1, 1006);  // the peer vanished
        } else {
            const char *text = k->close_requested ? "closed while connecting" : "connection failed";
            emit_terminal(c, k, WSB_EVENT_ERROR, text, strlen(text), 0);
        }
        return 0;

    default:
        return 0;
    }
}

// rx_buffer_size 64 KiB, not lws's default 4 KiB: with the default (and with 16 KiB), lws 4.1.6 writes
// one byte past its receive buffer while it delivers a message larger than the buffer (valgrind:
// "Invalid write of size 1 ... 0 bytes after a block of size 4,116"), which later aborts in free().
// At 64 KiB valgrind stays clean for 100 KB and 1 MB messages. Messages are still reassembled here.
static const struct lws_protocols protocols[] = {
    {"inferops-ws", callback, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

// ---------------------------------------------------------------------------------------------
// Public API.

static void log_trampoline(int level, const char *line) {
    wsb_log_fn fn = log_emit;
    if (!line)
        return;
    char copy[1024];
    size_t n = strlen(line);
    if (n >= sizeof(copy))
        n = sizeof(copy) - 1;
    memcpy(copy, line, n);
    while (n && (copy[n - 1] == '\n' || copy[n - 1] == '\r'))
        n--;
    copy[n] = 0;
    if (level & LLL_ERR) {
        size_t m = n < sizeof(last_error) ? n : sizeof(last_error) - 1;
        memcpy(last_error, copy, m);
        last_error[m] = 0;
    }
    if (fn && (level & log_levels))
        fn(level, copy);
}

void wsb_set_log(int levels, wsb_log_fn fn) {
    log_emit = fn;
    log_levels = fn ? levels : 0;
    lws_set_log_level(log_levels | LLL_ERR, log_trampoline);  // errors always, for last_error
}

wsb_client *wsb_create(const wsb_options *options, char *error, size_t error_len) {
    wsb_client *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(error, error_len, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    c->max_message_bytes = options->max_message_bytes ? options->max_message_bytes : (1u << 20);
    c->on_event = options->on_event;
    c->event_context = options->event_context;
    c->policy.secs_since_valid_ping = options->ping_after_seconds;
    c->policy.secs_since_valid_hangup = options->hangup_after_seconds;
    if (options->ca_file)
        c->ca_file = strdup(options->ca_file);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.user = c;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.client_ssl_ca_filepath = c->ca_file;
    info.connect_timeout_secs = options->connect_timeout_seconds;  // TCP connect
    // The TLS handshake and the wait for the HTTP 101 use lws's general network timeout (5 s by
    // default, whatever connect_timeout_secs says): make it the same bound.
    info.timeout_secs = options->connect_timeout_seconds;
    info.fd_limit_per_thread = 64;  // a client with a handful of sockets; the default sizes tables for ulimit -n
    c->ctx = lws_create_context(&info);
    if (!c->ctx) {
        snprintf(error, error_len, "lws_create_context failed (see the libwebsockets log)");
        pthread_mutex_destroy(&c->lock);
        free(c->ca_file);
        free(c);
        return NULL;
    }
    return c;
}

void wsb_set_context(wsb_client *client, void *event_context) { client->event_context = event_context; }

void wsb_run(wsb_client *client) {
    while (!atomic_load(&client->stop)) {
        if (lws_service(client->ctx, 0) < 0)
            break;
    }
    pthread_mutex_lock(&client->lock);
    struct lws_context *ctx = client->ctx;
    client->ctx = NULL;
    cmd *m = client->cmd_head;
    client->cmd_head = client->cmd_tail = NULL;
    pthread_mutex_unlock(&client->lock);
    // Connects queued too late to run are reported as failed; queued sends and closes are dropped.
    while (m) {
        cmd *next = m->next;
        if (m->kind == CMD_CONNECT) {
            conn tmp = {.id = m->id};
            static const char stopped[] = "the WebSocket runtime stopped";
            emit(client, &tmp, WSB_EVENT_ERROR, stopped, sizeof(stopped) - 1, 1001);
        }
        free_cmd(m);
        m = next;
    }
    client->destroying = 1;
    lws_context_destroy(ctx);  // reports CLIENT_CLOSED for open connections, on this thread
    for (conn *k = client->conns; k; k = k->next) {
        static const char stopped[] = "the WebSocket runtime stopped";
        emit_terminal(client, k, WSB_EVENT_CLOSED, stopped, sizeof(stopped) - 1, 1001);
    }
    reap(client);
}

void wsb_stop(wsb_client *client) {
    pthread_mutex_lock(&client->lock);
    atomic_store(&client->stop, 1);
    if (client->ctx)
        lws_cancel_service(client->ctx);
    pthread_mutex_unlock(&client->lock);
}

void wsb_free(wsb_client *client) {
    if (!client)
        return;
    if (client->ctx)  // never ran
        lws_context_destroy(client->ctx);
    cmd *m = client->cmd_head;
    while (m) {
        cmd *next = m->next;
        free_cmd(m);
        m = next;
    }
    conn *k = client->conns;
    while (k) {
        conn *next = k->next;
        free_conn(k);
        k = next;
    }
    pthread_mutex_destroy(&client->lock);
    free(client->ca_file);
    free(client);
}

static int enqueue(wsb_client *c, cmd *m) {
    pthread_mutex_lock(&c->lock);
    int ok = !atomic_load(&c->stop) && c->ctx;
    if (ok) {
        if (c->cmd_tail)
            c->cmd_tail->next = m;
        else
            c->cmd_head = m;
        c->cmd_tail = m;
        lws_cancel_service(c->ctx);  // the only lws call made off the service thread
    }
    pthread_mutex_unlock(&c->lock);
    if (!ok)
        free_cmd(m);
    return ok ? 0 : -1;
}

int wsb_connect(wsb_client *client, int64_t connection, const char *host, int port, const char *path, int tls) {
    cmd *m = calloc(1, sizeof(*m));
    if (!m)
        return -1;
    m->kind = CMD_CONNECT;
    m->id = connection;
    m->host = strdup(host);
    m->path = strdup(path);
    m->port = port;
    m->tls = tls;
    if (!m->host || !m->path) {
        free_cmd(m);
        return -1;
    }
    return enqueue(client, m);
}

int wsb_send(wsb_client *client, int64_t connection, const uint8_t *data, size_t len, int binary) {
    cmd *m = calloc(1, sizeof(*m));
    if (!m)
        return -1;
    m->kind = CMD_SEND;
    m->id = connection;
    m->buf = malloc(LWS_PRE + len + 1);
    if (!m->buf) {
        free(m);
        return -1;
    }
    if (len)
        memcpy(m->buf + LWS_PRE, data, len);
    m->len = len;
    m->binary = binary;
    return enqueue(client, m);
}

int wsb_close(wsb_client *client, int64_t connection, int code, const char *reason) {
    cmd *m = calloc(1, sizeof(*m));
    if (!m)
        return -1;
    m->kind = CMD_CLOSE;
    m->id = connection;
    m->code = code;
    if (reason) {
        size_t n = strlen(reason);
        if (n > 123)
            n = 123;  // a close frame's reason must fit in 123 bytes
        memcpy(m->reason, reason, n);
        m->reason_len = n;
    }
    return enqueue(client, m);
}

void wsb_set_thread_name(const char *name) {
    char copy[16];
    snprintf(copy, sizeof(copy), "%s", name);  // Linux limit: 15 characters
    pthread_setname_np(pthread_self(), copy);
}
