#ifndef INFEROPS_CWSBRIDGE_H
#define INFEROPS_CWSBRIDGE_H
// A thread-safe WebSocket client over libwebsockets. The header has no lws types on purpose:
// Swift sees an opaque handle, plain values and one event callback.
//
// Threading: wsb_connect, wsb_send and wsb_close may be called from any thread; they queue a
// command and wake the service thread (lws_cancel_service, the one lws call that is safe from
// anywhere). Every other lws call, and every event callback, happens on the thread inside wsb_run.
#include <stddef.h>
#include <stdint.h>

typedef struct wsb_client wsb_client;

typedef enum {
    WSB_EVENT_OPEN = 1,    // handshake done
    WSB_EVENT_TEXT = 2,    // a whole text message (data, len)
    WSB_EVENT_BINARY = 3,  // a whole binary message
    WSB_EVENT_CLOSED = 4,  // terminal: code, data = reason (UTF-8, not NUL-terminated)
    WSB_EVENT_ERROR = 5,   // terminal: connect/TLS/handshake failure, data = lws's message; code 1001
                           // when the connect was still queued as the runtime stopped
} wsb_event_kind;

/// Called on the service thread only. `data` is valid during the call; copy it.
typedef void (*wsb_event_fn)(void *context, int64_t connection, int kind, const uint8_t *data, size_t len, int code);

/// libwebsockets' log levels (LLL_ERR, LLL_WARN, LLL_NOTICE), without its header.
enum { WSB_LOG_ERR = 1 << 0, WSB_LOG_WARN = 1 << 1, WSB_LOG_NOTICE = 1 << 2 };

/// One log line from libwebsockets (`level` is an LLL_* bit), without the trailing newline.
typedef void (*wsb_log_fn)(int level, const char *line);

typedef struct {
    /// PEM file of extra trusted CAs (added to the system ones), or NULL.
    const char *ca_file;
    /// Client PING after this many idle seconds; 0 disables.
    uint16_t ping_after_seconds;
    /// Hang up when nothing valid (PONG or data) arrived for this many seconds; 0 disables.
    uint16_t hangup_after_seconds;
    /// Give up connecting (TCP + TLS + handshake) after this many seconds; 0 keeps lws's defaults. Also bounds
    /// lws's other network waits (the close handshake).
    unsigned int connect_timeout_seconds;
    /// Messages larger than this close the connection with 1009.
    size_t max_message_bytes;
    wsb_event_fn on_event;
    void *event_context;
} wsb_options;

/// Routes libwebsockets' log (process-wide: lws has one logger) to `emit`, for the levels in `levels`.
/// Errors are always captured, to explain connection errors (a TLS failure's reason is only logged).
/// Call before wsb_create. `emit` NULL silences lws.
void wsb_set_log(int levels, wsb_log_fn emit);

/// Creates the lws context. Returns NULL (with `error` filled) on failure.
wsb_client *wsb_create(const wsb_options *options, char *error, size_t error_len);

/// Sets the `event_context` passed to `on_event`. Only before wsb_run starts.
void wsb_set_context(wsb_client *client, void *event_context);

/// Runs the service loop on the calling thread until wsb_stop; destroys the context before it
/// returns (open connections report WSB_EVENT_CLOSED from inside this call).
void wsb_run(wsb_client *client);

/// Asks wsb_run to return. Any thread; idempotent.
void wsb_stop(wsb_client *client);

/// Frees the handle. Only after wsb_run returned (or when it never ran), and once nobody calls in.
void wsb_free(wsb_client *client);

/// Opens a connection. `path` includes the query string. Any thread. Returns 0, or -1 once stopped.
int wsb_connect(wsb_client *client, int64_t connection, const char *host, int port, const char *path, int tls);

/// Queues one message. Any thread. Returns 0, or -1 once stopped.
int wsb_send(wsb_client *client, int64_t connection, const uint8_t *data, size_t len, int binary);

/// Starts the close handshake (after queued messages are written). Any thread.
int wsb_close(wsb_client *client, int64_t connection, int code, const char *reason);

/// Names the calling thread (visible in `top -H`); Glibc hides pthread_setname_np from Swift.
void wsb_set_thread_name(const char *name);

#endif
