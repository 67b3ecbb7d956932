#ifndef SMOOTHD_CZSTD_SHIM_H
#define SMOOTHD_CZSTD_SHIM_H
// ZSTD_STATIC_LINKING_ONLY is not needed: only the stable streaming and frame APIs are used.
#include <zstd.h>
#include <zstd_errors.h>
#endif
