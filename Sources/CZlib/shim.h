#ifndef INFEROPS_CZLIB_SHIM_H
#define INFEROPS_CZLIB_SHIM_H
#include <zlib.h>

// inflateInit2 is a macro, which Swift cannot call. A window of 15 bits plus 32 reads both gzip and
// zlib streams, telling them apart by their header.
static inline int czlib_inflate_init_any(z_streamp stream) { return inflateInit2(stream, 15 + 32); }
#endif
