#ifndef INFEROPS_CLIBWEBSOCKETS_SHIM_H
#define INFEROPS_CLIBWEBSOCKETS_SHIM_H
// libwebsockets 4.1.6 (Debian 12). Only CWSBridge includes it: its threading rules are kept in C there.
#include <libwebsockets.h>
#endif
