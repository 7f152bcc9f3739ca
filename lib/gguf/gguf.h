/*
 * gguf.h -- what gguf.c offers the library's own tests and fuzzers beyond kqcl.h.
 */
#ifndef KQCL_GGUF_H
#define KQCL_GGUF_H

#include "base/internal.h"

/* Parse a GGUF image held in memory, with every check of kqcl_gguf_open. The buffer is
 * referenced, not copied: it must outlive the handle. size 0 (data may be NULL) is a format
 * error like any other too-short file. */
kqcl_status kq_gguf_open_memory(const void *data, size_t size, kqcl_gguf **out);

#endif
