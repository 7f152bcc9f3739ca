/*
 * gguf.c -- GGUF files: a reader of versions 2 and 3 that trusts nothing it reads, and a
 * writer of version 3.
 *
 * Layout (all little-endian):
 *   "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv x      { string key | u32 value type | value }
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml type | u64 offset }
 *   zero padding to the alignment | data section (tensor offsets are relative to its start)
 * A string is a u64 byte count and that many bytes, no NUL. An array value is a u32 element
 * type, a u64 count and the elements without per-element types (arrays may nest).
 *
 * The reader parses the header twice with the same code: a measuring pass that checks every
 * field against the bytes left and only counts the value nodes and text bytes it will need,
 * then a filling pass into allocations of exactly that size. So nothing is ever allocated
 * from a count that the file has not already proven by holding the bytes it implies.
 */
#define _XOPEN_SOURCE 700 /* realpath, pread, O_NOFOLLOW */

#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4          /* ggml's GGML_MAX_DIMS */
#define GGUF_MAX_NESTING 16      /* arrays of arrays deeper than this are refused */
#define GGUF_MAX_NAME 64         /* ggml's GGML_MAX_NAME, NUL included: the writer's limit */
#define ALIGNMENT_KEY "general.alignment"
/* The largest general.alignment taken: ggml writes 32, nobody needs more than a page or two,
 * and a huge one only pads files (2^31 made `kqcl quantize` write 2 GiB of zeros). */
#define GGUF_MAX_ALIGNMENT (1u << 20)
/* The first read of a file's header; doubled while the parser runs out of bytes. */
#define GGUF_FIRST_READ (1u << 20)
/* The most a header (all before the data section, read into memory whole) may take, and the
 * most one string may: real files, tokenizers included, need tens of MB at most -- the longest
 * strings are whole tokenizer.json files -- while a lying length in a large (or sparse) file
 * would otherwise be read, doubling, up to the whole file before it was refused. */
#define GGUF_MAX_HEADER ((uint64_t)256 << 20)
#define GGUF_MAX_STRING ((uint64_t)64 << 20)

/* The fewest bytes each item can take: a count is checked against the bytes left divided by
 * these before anything is reserved for it. */
#define MIN_STRING_BYTES 8       /* the u64 length of an empty string */
#define MIN_ARRAY_BYTES 12       /* u32 element type + u64 count of an empty array */
#define MIN_KV_BYTES 13          /* empty key (8) + value type (4) + a one-byte value */
#define MIN_TENSOR_BYTES 24      /* empty name (8) + n_dims (4) + type (4) + offset (8) */

/* ------------------------------------------------------------------------------------------ */
/* The parsed file                                                                              */

typedef struct kv_entry {
    const char *key;  /* in the text arena (its offset there until resolve_pointers) */
    uint64_t key_len;
    size_t node;      /* index of its value in nodes[] */
} kv_entry;

typedef struct name_index {
    const char *name;
    uint64_t len;
    int64_t index;
} name_index;

struct kqcl_gguf {
    const uint8_t *base;       /* the header's bytes: a heap copy (files) or the caller's buffer */
    size_t size;               /* bytes at base: the header and maybe more, never the whole
                                * model */
    size_t file_size;          /* the file's (or buffer's) size at open */
    const uint8_t *data_base;  /* where tensor data pointers point: the mapping, or base */
    void *mapping;             /* what to munmap (file_size bytes); NULL for a caller's buffer */
    uint8_t *header_copy;      /* what to free: base of a file, read with pread */
    int fd;                    /* the file, kept open for pread; -1 for a caller's buffer */
    char *path;                /* for messages */
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;      /* start of the data section in the file */

    kqcl_gguf_value *nodes;    /* every value, array elements of strings/arrays included */
    size_t n_nodes;
    char *text;                /* keys, names and string values, each NUL-terminated */
    size_t text_size;

    kv_entry *kvs;
    int64_t n_kv;
    kqcl_gguf_tensor *tensors;
    int64_t n_tensors;
    name_index *keys_sorted;   /* for find and the duplicate check */
    name_index *names_sorted;
};

/* ------------------------------------------------------------------------------------------ */
/* Little-endian decoding, independent of the host's byte order                                */

static uint16_t load_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t load_u64(const uint8_t *p)
{
    return (uint64_t)load_u32(p) | ((uint64_t)load_u32(p + 4) << 32);
}

/* Bytes of one number or bool of `type`; 0 for strings, arrays and unknown types. */
static size_t scalar_size(uint32_t type)
{
    switch (type) {
    case KQCL_GGUF_TYPE_UINT8: case KQCL_GGUF_TYPE_INT8: case KQCL_GGUF_TYPE_BOOL: return 1;
    case KQCL_GGUF_TYPE_UINT16: case KQCL_GGUF_TYPE_INT16: return 2;
    case KQCL_GGUF_TYPE_UINT32: case KQCL_GGUF_TYPE_INT32: case KQCL_GGUF_TYPE_FLOAT32: return 4;
    case KQCL_GGUF_TYPE_UINT64: case KQCL_GGUF_TYPE_INT64: case KQCL_GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

KQCL_API const char *kqcl_gguf_type_name(kqcl_gguf_type type)
{
    static const char *const names[] = {"u8",  "i8",   "u16",    "i16",   "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
    if ((int)type < 0 || (size_t)type >= sizeof names / sizeof names[0])
        return "none";
    return names[type];
}

/* ------------------------------------------------------------------------------------------ */
/* The parser                                                                                   */

typedef struct parser {
    const uint8_t *base;
    size_t size;         /* bytes read: the header or more, up to the whole file */
    size_t file_size;    /* bytes in the file (or buffer): what any length is bounded by */
    size_t pos;
    bool filling;        /* false: measuring pass, only counts; true: writes into g */
    kqcl_gguf *g;
    size_t n_nodes;      /* nodes reserved so far */
    size_t text_used;    /* text bytes used so far */
    uint64_t *refs;      /* filling pass: per node, a file offset or text offset (fixed up) */
    int depth;           /* arrays currently open */
    bool needs_more;     /* a check failed for lack of bytes: a longer read may pass it */
    char where[160];     /* the item being parsed, for messages */
} parser;

static size_t bytes_left(const parser *p) { return p->size - p->pos; }

/* Fail with KQCL_ERR_FORMAT: "GGUF <where>, byte <at>: <what>". */
static kqcl_status malformed(const parser *p, size_t at, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static kqcl_status malformed(const parser *p, size_t at, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return kq_fail(NULL, KQCL_ERR_FORMAT, "GGUF %s, byte %zu: %s", p->where, at, what);
}

static uint64_t file_left(const parser *p) { return (uint64_t)(p->file_size - p->pos); }

/* count * size, or UINT64_MAX when that overflows: a claim no file can back. */
static uint64_t claimed_bytes(uint64_t count, uint64_t size)
{
    return count > UINT64_MAX / size ? UINT64_MAX : count * size;
}

/* What n more bytes at the cursor would run past, for a message ("the end of the file (10
 * bytes left)"), or NULL when they have been read. The end of the file and the most a header
 * may take refuse them for good, so a length the file cannot back fails on the first read;
 * only bytes the file holds but that were not read yet set needs_more, for a longer read. */
static const char *runs_past(parser *p, uint64_t n, char *why, size_t size)
{
    if (n <= bytes_left(p))
        return NULL;
    if (n > file_left(p)) {
        snprintf(why, size, "the end of the file (%" PRIu64 " bytes left)", file_left(p));
    } else if ((uint64_t)p->pos + n > GGUF_MAX_HEADER) {
        snprintf(why, size, "the %" PRIu64 " MiB a GGUF header may take", GGUF_MAX_HEADER >> 20);
    } else {
        p->needs_more = true;
        snprintf(why, size, "the %zu bytes read", bytes_left(p));
    }
    return why;
}

/* Take n bytes from the cursor; *out points at them. */
static kqcl_status take(parser *p, uint64_t n, const char *what, const uint8_t **out)
{
    char why[96];
    if (runs_past(p, n, why, sizeof why) != NULL)
        return malformed(p, p->pos, "%s of %" PRIu64 " bytes runs past %s", what, n, why);
    *out = p->base + p->pos;
    p->pos += (size_t)n;
    return KQCL_OK;
}

static kqcl_status read_u32(parser *p, const char *what, uint32_t *out)
{
    const uint8_t *at = NULL;
    kqcl_status st = take(p, 4, what, &at);
    if (st == KQCL_OK)
        *out = load_u32(at);
    return st;
}

static kqcl_status read_u64(parser *p, const char *what, uint64_t *out)
{
    const uint8_t *at = NULL;
    kqcl_status st = take(p, 8, what, &at);
    if (st == KQCL_OK)
        *out = load_u64(at);
    return st;
}

/* Read a string; in the filling pass copy it, NUL-terminated, into the text arena at
 * *text_offset. *bytes points at it in the file. */
static kqcl_status read_string(parser *p, const char *what, uint64_t *length,
                               const uint8_t **bytes, size_t *text_offset)
{
    size_t length_at = p->pos;
    char why[96];
    kqcl_status st = read_u64(p, what, length);
    if (st != KQCL_OK)
        return st;
    /* the cap before any longer read; past the file's end is the plainer message */
    if (*length > GGUF_MAX_STRING && *length <= file_left(p))
        return malformed(p, length_at, "%s length %" PRIu64 " is longer than the %" PRIu64
                         " MiB a GGUF string may take", what, *length, GGUF_MAX_STRING >> 20);
    if (runs_past(p, *length, why, sizeof why) != NULL)
        return malformed(p, length_at, "%s length %" PRIu64 " runs past %s", what, *length,
                         why);
    *bytes = p->base + p->pos;
    p->pos += (size_t)*length;
    *text_offset = p->text_used;
    if (p->filling) {
        memcpy(p->g->text + p->text_used, *bytes, (size_t)*length);
        p->g->text[p->text_used + (size_t)*length] = '\0';
    }
    p->text_used += (size_t)*length + 1;
    return KQCL_OK;
}

/* Reserve n consecutive value nodes (n already checked against the bytes left). */
static size_t reserve_nodes(parser *p, uint64_t n)
{
    size_t first = p->n_nodes;
    p->n_nodes += (size_t)n;
    return first;
}

static void set_node(parser *p, size_t node, uint32_t type, uint32_t elem_type, uint64_t length,
                     uint64_t ref)
{
    if (!p->filling)
        return;
    kqcl_gguf_value *v = &p->g->nodes[node];
    v->type = (kqcl_gguf_type)type;
    v->elem_type = (kqcl_gguf_type)elem_type;
    v->length = length;
    v->impl_ = NULL;
    p->refs[node] = ref;
}

static kqcl_status parse_value(parser *p, uint32_t type, size_t node);

/* An array: element type, count, elements. Numbers stay in the file (the node refers to the
 * first); strings and arrays get a node each, consecutive, so element j is node first + j. */
static kqcl_status parse_array(parser *p, size_t node)
{
    size_t header_at = p->pos;
    uint32_t elem_type;
    uint64_t count;
    char why[96];
    kqcl_status st;
    if (p->depth >= GGUF_MAX_NESTING)
        return malformed(p, header_at, "arrays nested deeper than %d levels", GGUF_MAX_NESTING);
    if ((st = read_u32(p, "array element type", &elem_type)) != KQCL_OK ||
        (st = read_u64(p, "array length", &count)) != KQCL_OK)
        return st;

    size_t elem_size = scalar_size(elem_type);
    if (elem_size != 0) {
        if (runs_past(p, claimed_bytes(count, elem_size), why, sizeof why) != NULL)
            return malformed(p, header_at, "array of %" PRIu64 " %s values runs past %s", count,
                             kqcl_gguf_type_name((kqcl_gguf_type)elem_type), why);
        set_node(p, node, KQCL_GGUF_TYPE_ARRAY, elem_type, count, p->pos);
        p->pos += (size_t)count * elem_size;
        return KQCL_OK;
    }
    if (elem_type != KQCL_GGUF_TYPE_STRING && elem_type != KQCL_GGUF_TYPE_ARRAY)
        return malformed(p, header_at, "array of unknown value type %" PRIu32, elem_type);

    size_t min_bytes = elem_type == KQCL_GGUF_TYPE_STRING ? MIN_STRING_BYTES : MIN_ARRAY_BYTES;
    if (runs_past(p, claimed_bytes(count, min_bytes), why, sizeof why) != NULL)
        return malformed(p, header_at, "array of %" PRIu64 " %ss (%zu bytes each at least) runs "
                         "past %s", count, kqcl_gguf_type_name((kqcl_gguf_type)elem_type),
                         min_bytes, why);
    size_t first = reserve_nodes(p, count);
    set_node(p, node, KQCL_GGUF_TYPE_ARRAY, elem_type, count, first);
    p->depth++;
    for (uint64_t j = 0; j < count; j++)
        if ((st = parse_value(p, elem_type, first + (size_t)j)) != KQCL_OK)
            break;
    p->depth--;
    return st;
}

/* One value of `type` into node `node`. Numbers are left in the file and decoded on access. */
static kqcl_status parse_value(parser *p, uint32_t type, size_t node)
{
    size_t size = scalar_size(type);
    if (size != 0) {
        size_t at = p->pos;
        const uint8_t *bytes;
        kqcl_status st = take(p, size, kqcl_gguf_type_name((kqcl_gguf_type)type), &bytes);
        if (st == KQCL_OK)
            set_node(p, node, type, (uint32_t)KQCL_GGUF_TYPE_NONE, 0, at);
        return st;
    }
    if (type == KQCL_GGUF_TYPE_STRING) {
        uint64_t length;
        const uint8_t *bytes;
        size_t text_offset;
        kqcl_status st = read_string(p, "string", &length, &bytes, &text_offset);
        if (st == KQCL_OK)
            set_node(p, node, type, (uint32_t)KQCL_GGUF_TYPE_NONE, length, text_offset);
        return st;
    }
    if (type == KQCL_GGUF_TYPE_ARRAY)
        return parse_array(p, node);
    return malformed(p, p->pos, "unknown value type %" PRIu32, type);
}

/* Describe the current item in p->where, quoting at most 80 bytes of its name. */
static void set_where(parser *p, const char *kind, uint64_t index, const uint8_t *name,
                      uint64_t name_len)
{
    if (name == NULL)
        snprintf(p->where, sizeof p->where, "%s %" PRIu64, kind, index);
    else
        snprintf(p->where, sizeof p->where, "%s %" PRIu64 " '%.*s'", kind, index,
                 (int)(name_len < 80 ? name_len : 80), (const char *)name);
}

static kqcl_status parse_header(parser *p, uint32_t *version, uint64_t *n_tensors,
                                uint64_t *n_kv)
{
    const uint8_t *magic = NULL;
    kqcl_status st;
    snprintf(p->where, sizeof p->where, "header");
    if (p->size < 4)
        return malformed(p, 0, "a file of %zu bytes is too short for the magic 'GGUF'",
                         p->size);
    if ((st = take(p, 4, "magic", &magic)) != KQCL_OK)
        return st;
    if (memcmp(magic, GGUF_MAGIC, 4) != 0)
        return malformed(p, 0, "bad magic %02x %02x %02x %02x (a GGUF file starts with 'GGUF')",
                         magic[0], magic[1], magic[2], magic[3]);
    if ((st = read_u32(p, "version", version)) != KQCL_OK)
        return st;
    if (*version == 0x02000000u || *version == 0x03000000u)
        return kq_fail(NULL, KQCL_ERR_UNSUPPORTED, "GGUF: big-endian files are not supported");
    if (*version == 1)
        return kq_fail(NULL, KQCL_ERR_UNSUPPORTED, "GGUF: version 1 (32-bit counts) is not "
                       "supported; re-convert the model to version 3");
    if (*version == 0)
        return malformed(p, 4, "version 0 does not exist");
    if (*version > 3)
        return kq_fail(NULL, KQCL_ERR_UNSUPPORTED, "GGUF: version %" PRIu32 " is newer than "
                       "this reader (2 and 3)", *version);
    if ((st = read_u64(p, "tensor count", n_tensors)) != KQCL_OK ||
        (st = read_u64(p, "metadata count", n_kv)) != KQCL_OK)
        return st;
    /* Each count alone, then both together, against the bytes left (the sum cannot overflow
     * once each count's bytes are within the file). */
    char why[96];
    uint64_t kv_bytes = claimed_bytes(*n_kv, MIN_KV_BYTES);
    uint64_t tensor_bytes = claimed_bytes(*n_tensors, MIN_TENSOR_BYTES);
    if (runs_past(p, kv_bytes, why, sizeof why) != NULL)
        return malformed(p, 16, "metadata count %" PRIu64 " (%d bytes each at least) runs past "
                         "%s", *n_kv, MIN_KV_BYTES, why);
    if (runs_past(p, tensor_bytes, why, sizeof why) != NULL ||
        runs_past(p, kv_bytes + tensor_bytes, why, sizeof why) != NULL)
        return malformed(p, 8, "tensor count %" PRIu64 " (%d bytes each at least) runs past %s",
                         *n_tensors, MIN_TENSOR_BYTES, why);
    return KQCL_OK;
}

static kqcl_status parse_kvs(parser *p, uint64_t n_kv)
{
    for (uint64_t i = 0; i < n_kv; i++) {
        uint64_t key_len;
        const uint8_t *key;
        size_t key_text;
        uint32_t type;
        kqcl_status st;
        set_where(p, "metadata key", i, NULL, 0);
        if ((st = read_string(p, "key", &key_len, &key, &key_text)) != KQCL_OK)
            return st;
        set_where(p, "metadata key", i, key, key_len);
        /* Keys are looked up as C strings: "k\0a" and "k\0b" would read back as one key. */
        if (memchr(key, '\0', (size_t)key_len) != NULL)
            return malformed(p, p->pos - (size_t)key_len, "the key holds a NUL byte");
        if ((st = read_u32(p, "value type", &type)) != KQCL_OK)
            return st;
        size_t node = reserve_nodes(p, 1);
        if ((st = parse_value(p, type, node)) != KQCL_OK)
            return st;
        if (p->filling)
            p->g->kvs[i] = (kv_entry){.key = (const char *)(uintptr_t)key_text,
                                      .key_len = key_len, .node = node};
    }
    return KQCL_OK;
}

/* Bytes of a tensor of any type ggml defines from its shape, or a format error when the row
 * is not a whole number of blocks or the size overflows. */
static kqcl_status tensor_bytes(parser *p, size_t at, uint32_t type, const int64_t ne[4],
                                int64_t n_elements, uint64_t *nbytes)
{
    int64_t block;
    size_t block_bytes;
    const char *name = "?";
    *nbytes = 0;
    if (!kq_ggml_type_size(type, &block, &block_bytes))
        return KQCL_OK; /* an id ggml does not define: listed, never read */
    kqcl_ggml_type_info(type, &name, NULL, NULL);
    if (ne[0] % block != 0)
        return malformed(p, at, "ne[0] = %" PRId64 " is not a multiple of the %s block of "
                         "%" PRId64 " values", ne[0], name, block);
    if (n_elements == 0)
        return KQCL_OK;
    uint64_t blocks = (uint64_t)(n_elements / block); /* ne[0] is a multiple of block */
    if (blocks > SIZE_MAX / block_bytes)
        return malformed(p, at, "%" PRId64 " %s values overflow the address space", n_elements,
                         name);
    *nbytes = blocks * block_bytes;
    return KQCL_OK;
}

/* n_dims, the dimensions and their product, checked for sign and overflow. */
static kqcl_status read_shape(parser *p, uint32_t *n_dims, int64_t ne[4], int64_t *n_elements)
{
    size_t at = p->pos;
    const uint8_t *dims = NULL;
    kqcl_status st = read_u32(p, "n_dims", n_dims);
    if (st != KQCL_OK)
        return st;
    if (*n_dims > GGUF_MAX_DIMS)
        return malformed(p, at, "n_dims = %" PRIu32 " (at most %d)", *n_dims, GGUF_MAX_DIMS);
    at = p->pos;
    if ((st = take(p, 8 * (uint64_t)*n_dims, "dimensions", &dims)) != KQCL_OK)
        return st;
    *n_elements = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        ne[d] = d < (int)*n_dims ? (int64_t)load_u64(dims + 8 * d) : 1;
        if (ne[d] < 0)
            return malformed(p, at + 8 * (size_t)d, "ne[%d] = %" PRId64 " is negative", d,
                             ne[d]);
        if (ne[d] != 0 && *n_elements > INT64_MAX / ne[d])
            return malformed(p, at, "the dimensions' product overflows 2^63 at ne[%d] = "
                             "%" PRId64, d, ne[d]);
        *n_elements *= ne[d];
    }
    return KQCL_OK;
}

static kqcl_status parse_tensor_info(parser *p, uint64_t i)
{
    uint64_t name_len, offset;
    const uint8_t *name;
    size_t name_text;
    uint32_t n_dims, type;
    int64_t ne[4] = {0, 0, 0, 0}, n_elements = 0;
    kqcl_status st;
    set_where(p, "tensor", i, NULL, 0);
    if ((st = read_string(p, "name", &name_len, &name, &name_text)) != KQCL_OK)
        return st;
    set_where(p, "tensor", i, name, name_len);
    if (memchr(name, '\0', (size_t)name_len) != NULL)
        return malformed(p, p->pos - (size_t)name_len, "the name holds a NUL byte");
    if ((st = read_shape(p, &n_dims, ne, &n_elements)) != KQCL_OK)
        return st;
    size_t type_at = p->pos;
    if ((st = read_u32(p, "type", &type)) != KQCL_OK ||
        (st = read_u64(p, "data offset", &offset)) != KQCL_OK)
        return st;
    int known = kq_type_is_known((kqcl_type)type);
    uint64_t nbytes = 0;
    if ((st = tensor_bytes(p, type_at, type, ne, n_elements, &nbytes)) != KQCL_OK)
        return st;
    if (p->filling) {
        kqcl_gguf_tensor *t = &p->g->tensors[i];
        *t = (kqcl_gguf_tensor){.name = (const char *)(uintptr_t)name_text, .type = type,
                                .known = known, .n_dims = (int)n_dims, .offset = offset,
                                .nbytes = nbytes};
        memcpy(t->ne, ne, sizeof t->ne);
    }
    return KQCL_OK;
}

/* The whole header; returns the position where the tensor infos end. */
static kqcl_status parse_all(parser *p, uint64_t *n_tensors, uint64_t *n_kv)
{
    uint32_t version;
    kqcl_status st = parse_header(p, &version, n_tensors, n_kv);
    if (st != KQCL_OK)
        return st;
    if (p->filling)
        p->g->version = version;
    if ((st = parse_kvs(p, *n_kv)) != KQCL_OK)
        return st;
    for (uint64_t i = 0; i < *n_tensors; i++)
        if ((st = parse_tensor_info(p, i)) != KQCL_OK)
            return st;
    return KQCL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* After parsing: pointers, alignment, data bounds, duplicates                                  */

/* Turn the offsets stored while filling into pointers, now that nothing moves: node refs, and
 * the key and tensor name fields, which held their text offsets cast to pointers. */
static void resolve_pointers(kqcl_gguf *g, const uint64_t *refs)
{
    for (size_t n = 0; n < g->n_nodes; n++) {
        kqcl_gguf_value *v = &g->nodes[n];
        if (v->type == KQCL_GGUF_TYPE_STRING)
            v->impl_ = g->text + refs[n];
        else if (v->type == KQCL_GGUF_TYPE_ARRAY && scalar_size(v->elem_type) == 0)
            v->impl_ = &g->nodes[refs[n]];
        else
            v->impl_ = g->base + refs[n];
    }
    for (int64_t i = 0; i < g->n_kv; i++)
        g->kvs[i].key = g->text + (uintptr_t)g->kvs[i].key;
    for (int64_t i = 0; i < g->n_tensors; i++)
        g->tensors[i].name = g->text + (uintptr_t)g->tensors[i].name;
}

static int compare_names(const void *a, const void *b)
{
    const name_index *x = a, *y = b;
    uint64_t common = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, (size_t)common);
    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Sort names for lookups; a repeated name is a format error (ggml refuses them too). */
static kqcl_status sort_unique(name_index *sorted, int64_t n, const char *kind)
{
    qsort(sorted, (size_t)n, sizeof *sorted, compare_names);
    for (int64_t i = 1; i < n; i++)
        if (compare_names(&sorted[i - 1], &sorted[i]) == 0)
            return kq_fail(NULL, KQCL_ERR_FORMAT, "GGUF: %s %" PRId64 " '%.80s' repeats %s %"
                           PRId64, kind, sorted[i].index, sorted[i].name, kind,
                           sorted[i - 1].index);
    return KQCL_OK;
}

static kqcl_status index_names(kqcl_gguf *g)
{
    g->keys_sorted = malloc(((size_t)g->n_kv + 1) * sizeof *g->keys_sorted);
    g->names_sorted = malloc(((size_t)g->n_tensors + 1) * sizeof *g->names_sorted);
    if (g->keys_sorted == NULL || g->names_sorted == NULL)
        return kq_fail(NULL, KQCL_ERR_OUT_OF_MEMORY, "GGUF: out of memory for the name index");
    for (int64_t i = 0; i < g->n_kv; i++)
        g->keys_sorted[i] = (name_index){g->kvs[i].key, g->kvs[i].key_len, i};
    for (int64_t i = 0; i < g->n_tensors; i++)
        g->names_sorted[i] =
            (name_index){g->tensors[i].name, strlen(g->tensors[i].name), i};
    kqcl_status st = sort_unique(g->keys_sorted, g->n_kv, "metadata key");
    if (st == KQCL_OK)
        st = sort_unique(g->names_sorted, g->n_tensors, "tensor");
    return st;
}

/* general.alignment, when present, must be a u32 power of two (as ggml requires). */
static kqcl_status read_alignment(kqcl_gguf *g)
{
    int64_t i = kqcl_gguf_find_key(g, ALIGNMENT_KEY);
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (i < 0)
        return KQCL_OK;
    const kqcl_gguf_value *v = &g->nodes[g->kvs[i].node];
    if (v->type != KQCL_GGUF_TYPE_UINT32)
        return kq_fail(NULL, KQCL_ERR_FORMAT, "GGUF metadata key %" PRId64 " '"
                       ALIGNMENT_KEY "' is a %s, not a u32", i, kqcl_gguf_type_name(v->type));
    uint32_t alignment = load_u32(v->impl_);
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        return kq_fail(NULL, KQCL_ERR_FORMAT, "GGUF metadata key %" PRId64 " '"
                       ALIGNMENT_KEY "' = %" PRIu32 " is not a power of two", i, alignment);
    if (alignment > GGUF_MAX_ALIGNMENT)
        return kq_fail(NULL, KQCL_ERR_FORMAT, "GGUF metadata key %" PRId64 " '"
                       ALIGNMENT_KEY "' = %" PRIu32 " is larger than %u", i, alignment,
                       GGUF_MAX_ALIGNMENT);
    g->alignment = alignment;
    return KQCL_OK;
}

/* The data section starts at the first aligned byte after the tensor infos, inside the file
 * (a file that ends with its tensor infos and has no tensor may leave the padding out); each
 * tensor's offset must be aligned and its bytes, for every type ggml defines, must lie inside
 * the file. */
static kqcl_status place_tensor_data(kqcl_gguf *g, size_t infos_end)
{
    g->data_offset = ((uint64_t)infos_end + g->alignment - 1) / g->alignment * g->alignment;
    bool header_only = g->n_tensors == 0 && infos_end == g->file_size;
    if (g->data_offset > g->file_size && !header_only)
        return kq_fail(NULL, KQCL_ERR_FORMAT, "GGUF: the data section would start at byte %"
                       PRIu64 " (alignment %" PRIu64 "), past the end of the file (%zu bytes)",
                       g->data_offset, g->alignment, g->file_size);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        kqcl_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return kq_fail(NULL, KQCL_ERR_FORMAT, "GGUF tensor %" PRId64 " '%.80s': data offset "
                           "%" PRIu64 " is not a multiple of the alignment %" PRIu64, i,
                           t->name, t->offset, g->alignment);
        uint64_t room = g->file_size - g->data_offset;
        if (t->offset > room || t->nbytes > room - t->offset)
            return kq_fail(NULL, KQCL_ERR_FORMAT, "GGUF tensor %" PRId64 " '%.80s': data at "
                           "file byte %" PRIu64 " + %" PRIu64 " (%" PRIu64 " bytes) runs past "
                           "the end of the file (%zu bytes)", i, t->name, g->data_offset,
                           t->offset, t->nbytes, g->file_size);
        t->data = g->data_base + g->data_offset + t->offset;
    }
    return KQCL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Opening and closing                                                                          */

/* Free what parsing allocated, so that a longer read can be parsed again into g. */
static void free_parsed(kqcl_gguf *g)
{
    free(g->nodes);
    free(g->text);
    free(g->kvs);
    free(g->tensors);
    free(g->keys_sorted);
    free(g->names_sorted);
    g->nodes = NULL, g->text = NULL, g->kvs = NULL, g->tensors = NULL;
    g->keys_sorted = NULL, g->names_sorted = NULL;
    g->n_nodes = 0, g->text_size = 0, g->n_kv = 0, g->n_tensors = 0;
}

KQCL_API void kqcl_gguf_close(kqcl_gguf *g)
{
    if (g == NULL)
        return;
    if (g->mapping != NULL)
        munmap(g->mapping, g->file_size);
    if (g->fd >= 0)
        close(g->fd);
    free_parsed(g);
    free(g->header_copy);
    free(g->path);
    free(g);
}

/* Allocate exactly what the measuring pass counted (+1 so that zero counts still allocate). */
static kqcl_status allocate_parsed(kqcl_gguf *g, const parser *measured, uint64_t n_kv,
                                   uint64_t n_tensors, uint64_t **refs)
{
    g->n_nodes = measured->n_nodes;
    g->text_size = measured->text_used;
    g->n_kv = (int64_t)n_kv;
    g->n_tensors = (int64_t)n_tensors;
    g->nodes = calloc(g->n_nodes + 1, sizeof *g->nodes);
    g->text = malloc(g->text_size + 1);
    g->kvs = calloc((size_t)n_kv + 1, sizeof *g->kvs);
    g->tensors = calloc((size_t)n_tensors + 1, sizeof *g->tensors);
    *refs = calloc(g->n_nodes + 1, sizeof **refs);
    if (g->nodes == NULL || g->text == NULL || g->kvs == NULL || g->tensors == NULL ||
        *refs == NULL)
        return kq_fail(NULL, KQCL_ERR_OUT_OF_MEMORY, "GGUF: out of memory for %zu metadata "
                       "values and %zu bytes of text", g->n_nodes, g->text_size);
    return KQCL_OK;
}

/* Parse g->base[0, g->size). *needs_more: the header failed for lack of bytes, so a longer
 * read of the file may pass. */
static kqcl_status parse_into(kqcl_gguf *g, bool *needs_more)
{
    parser measure = {.base = g->base, .size = g->size, .file_size = g->file_size};
    uint64_t n_tensors, n_kv, *refs = NULL;
    kqcl_status st = parse_all(&measure, &n_tensors, &n_kv);
    *needs_more = measure.needs_more;
    if (st != KQCL_OK)
        return st;
    if ((st = allocate_parsed(g, &measure, n_kv, n_tensors, &refs)) == KQCL_OK) {
        parser fill = {.base = g->base, .size = g->size, .file_size = g->file_size,
                       .filling = true, .g = g, .refs = refs};
        st = parse_all(&fill, &n_tensors, &n_kv); /* cannot fail: the same bytes passed */
        if (st == KQCL_OK) {
            resolve_pointers(g, refs);
            st = index_names(g);
        }
        if (st == KQCL_OK)
            st = read_alignment(g);
        if (st == KQCL_OK)
            st = place_tensor_data(g, fill.pos);
    }
    free(refs);
    return st;
}

kqcl_status kq_gguf_open_memory(const void *data, size_t size, kqcl_gguf **out)
{
    if (out == NULL || (data == NULL && size != 0))
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kq_gguf_open_memory: NULL argument");
    *out = NULL;
    kq_clear_error(NULL);
    kqcl_gguf *g = calloc(1, sizeof *g);
    if (g == NULL)
        return kq_fail(NULL, KQCL_ERR_OUT_OF_MEMORY, "GGUF: out of memory");
    static const uint8_t empty[1];
    g->fd = -1;
    g->base = size != 0 ? data : empty;
    g->size = size;
    g->file_size = size;
    g->data_base = g->base;
    bool needs_more;
    kqcl_status st = parse_into(g, &needs_more);
    if (st != KQCL_OK) {
        kqcl_gguf_close(g);
        return st;
    }
    *out = g;
    return KQCL_OK;
}

/* Read exactly n bytes at `offset`; false (errno set, 0 for a file that got shorter) else. */
static bool read_at(int fd, void *dst, size_t n, uint64_t offset)
{
    uint8_t *p = dst;
    while (n > 0) {
        size_t chunk = n < ((size_t)1 << 30) ? n : (size_t)1 << 30;
        ssize_t got = pread(fd, p, chunk, (off_t)offset);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            if (got == 0)
                errno = 0;
            return false;
        }
        p += got, n -= (size_t)got, offset += (uint64_t)got;
    }
    return true;
}

static kqcl_status read_failed(const char *path, const char *what)
{
    int err = errno;
    if (err == 0)
        return kq_fail(NULL, KQCL_ERR_IO, "'%s' got shorter while %s (truncated by someone?)",
                       path, what);
    return kq_fail(NULL, KQCL_ERR_IO, "cannot read '%s' (%s): %s", path, what, strerror(err));
}

/* Open without blocking (a FIFO or a device would hang a plain open) and take only regular
 * files. */
static kqcl_status open_regular(const char *path, int *fd_out, size_t *size)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    struct stat st;
    *fd_out = -1;
    if (fd < 0)
        return kq_fail(NULL, KQCL_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return kq_fail(NULL, KQCL_ERR_IO, "cannot stat '%s': %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return kq_fail(NULL, KQCL_ERR_IO, "'%s' is not a regular file", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX / 2) {
        close(fd);
        return kq_fail(NULL, KQCL_ERR_UNSUPPORTED, "'%s' is too large to map", path);
    }
    *size = (size_t)st.st_size;
    *fd_out = fd;
    return KQCL_OK;
}

/* Read the header into g: a first piece, doubled until the parser has all it needs, never
 * more than the file or GGUF_MAX_HEADER (the parser asks for more only for bytes that both
 * hold). The header lives in heap memory, so metadata stays readable whatever happens to the
 * file. */
static kqcl_status read_header(kqcl_gguf *g)
{
    size_t limit = g->file_size < GGUF_MAX_HEADER ? g->file_size : (size_t)GGUF_MAX_HEADER;
    size_t want = limit < GGUF_FIRST_READ ? limit : GGUF_FIRST_READ;
    for (;;) {
        uint8_t *grown = realloc(g->header_copy, want + 1);
        if (grown == NULL)
            return kq_fail(NULL, KQCL_ERR_OUT_OF_MEMORY, "GGUF: out of memory for a %zu-byte "
                           "header", want);
        g->header_copy = grown;
        if (!read_at(g->fd, grown, want, 0))
            return read_failed(g->path, "reading the header");
        g->base = grown;
        g->size = want;
        bool needs_more;
        kqcl_status st = parse_into(g, &needs_more);
        if (st == KQCL_OK || !needs_more || want == limit)
            return st;
        free_parsed(g);
        want = want > limit / 2 ? limit : want * 2;
    }
}

/* Map the whole file read-only for kqcl_gguf_tensor.data. The library itself never reads
 * through the mapping (a page of a file truncated later would raise SIGBUS): it preads. */
static kqcl_status map_file(kqcl_gguf *g)
{
    if (g->file_size == 0)
        return KQCL_OK; /* mmap refuses length 0 */
    void *m = mmap(NULL, g->file_size, PROT_READ, MAP_PRIVATE, g->fd, 0);
    if (m == MAP_FAILED) {
        int err = errno;
        return kq_fail(NULL, err == ENOMEM ? KQCL_ERR_OUT_OF_MEMORY : KQCL_ERR_IO,
                       "cannot map '%s': %s", g->path, strerror(err));
    }
    g->mapping = m;
    return KQCL_OK;
}

/* Put "PATH: " in front of this thread's last message. */
static void name_file_in_message(const char *path)
{
    size_t capacity;
    char *msg = kq_thread_error_buffer(&capacity);
    if (strncmp(msg, path, strlen(path)) == 0)
        return; /* already named */
    char *copy = strdup(msg);
    if (copy != NULL) {
        snprintf(msg, capacity, "%s: %s", path, copy);
        free(copy);
    }
}

KQCL_API kqcl_status kqcl_gguf_open(const char *path, kqcl_gguf **out)
{
    if (out != NULL)
        *out = NULL;
    if (path == NULL || out == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_gguf_open: NULL argument");
    kq_clear_error(NULL);
    kqcl_gguf *g = calloc(1, sizeof *g);
    if (g == NULL || (g->path = strdup(path)) == NULL) {
        free(g);
        return kq_fail(NULL, KQCL_ERR_OUT_OF_MEMORY, "GGUF: out of memory");
    }
    kqcl_status st = open_regular(path, &g->fd, &g->file_size);
    /* The mapping first: tensor data pointers are set while parsing. */
    if (st == KQCL_OK)
        st = map_file(g);
    g->data_base = g->mapping;
    if (st == KQCL_OK)
        st = read_header(g);
    if (st != KQCL_OK) {
        name_file_in_message(path);
        kqcl_gguf_close(g);
        return st;
    }
    *out = g;
    return KQCL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Accessors                                                                                    */

KQCL_API int kqcl_gguf_version(const kqcl_gguf *g) { return g ? (int)g->version : 0; }
KQCL_API uint64_t kqcl_gguf_alignment(const kqcl_gguf *g) { return g ? g->alignment : 0; }
KQCL_API uint64_t kqcl_gguf_data_offset(const kqcl_gguf *g) { return g ? g->data_offset : 0; }
KQCL_API int64_t kqcl_gguf_kv_count(const kqcl_gguf *g) { return g ? g->n_kv : 0; }
KQCL_API int64_t kqcl_gguf_tensor_count(const kqcl_gguf *g) { return g ? g->n_tensors : 0; }

static bool kv_in_range(const kqcl_gguf *g, int64_t i) { return g && i >= 0 && i < g->n_kv; }

KQCL_API const char *kqcl_gguf_key(const kqcl_gguf *g, int64_t i)
{
    return kv_in_range(g, i) ? g->kvs[i].key : NULL;
}

KQCL_API kqcl_gguf_type kqcl_gguf_kv_type(const kqcl_gguf *g, int64_t i)
{
    return kv_in_range(g, i) ? g->nodes[g->kvs[i].node].type : KQCL_GGUF_TYPE_NONE;
}

static int64_t find_sorted(const name_index *sorted, int64_t n, const char *name)
{
    if (sorted == NULL || name == NULL)
        return -1;
    name_index probe = {name, strlen(name), -1};
    const name_index *hit = bsearch(&probe, sorted, (size_t)n, sizeof *sorted, compare_names);
    return hit ? hit->index : -1;
}

KQCL_API int64_t kqcl_gguf_find_key(const kqcl_gguf *g, const char *key)
{
    return g ? find_sorted(g->keys_sorted, g->n_kv, key) : -1;
}

KQCL_API int64_t kqcl_gguf_find_tensor(const kqcl_gguf *g, const char *name)
{
    return g ? find_sorted(g->names_sorted, g->n_tensors, name) : -1;
}

KQCL_API kqcl_status kqcl_gguf_get_value(const kqcl_gguf *g, int64_t i, kqcl_gguf_value *out)
{
    if (out == NULL || !kv_in_range(g, i))
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_gguf_get_value: no metadata pair %"
                       PRId64, i);
    *out = g->nodes[g->kvs[i].node];
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_gguf_tensor_info(const kqcl_gguf *g, int64_t i,
                                           kqcl_gguf_tensor *out)
{
    if (out == NULL || g == NULL || i < 0 || i >= g->n_tensors)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_gguf_tensor_info: no tensor %" PRId64,
                       i);
    *out = g->tensors[i];
    return KQCL_OK;
}

/* A value's integer as a sign flag and magnitude-safe pair; false when it is no integer. */
static bool value_integer(const kqcl_gguf_value *v, int64_t *as_signed, uint64_t *as_unsigned,
                          bool *is_negative)
{
    const uint8_t *p = v->impl_;
    int64_t s = 0;
    if (p == NULL)
        return false;
    uint64_t u = 0;
    switch (v->type) {
    case KQCL_GGUF_TYPE_UINT8: u = p[0]; s = (int64_t)u; break;
    case KQCL_GGUF_TYPE_INT8: s = (int8_t)p[0]; break;
    case KQCL_GGUF_TYPE_UINT16: u = load_u16(p); s = (int64_t)u; break;
    case KQCL_GGUF_TYPE_INT16: s = (int16_t)load_u16(p); break;
    case KQCL_GGUF_TYPE_UINT32: u = load_u32(p); s = (int64_t)u; break;
    case KQCL_GGUF_TYPE_INT32: s = (int32_t)load_u32(p); break;
    case KQCL_GGUF_TYPE_UINT64: u = load_u64(p); s = (int64_t)(u & INT64_MAX); break;
    case KQCL_GGUF_TYPE_INT64: s = (int64_t)load_u64(p); break;
    default: return false;
    }
    bool is_unsigned = v->type == KQCL_GGUF_TYPE_UINT8 || v->type == KQCL_GGUF_TYPE_UINT16 ||
                       v->type == KQCL_GGUF_TYPE_UINT32 || v->type == KQCL_GGUF_TYPE_UINT64;
    if (!is_unsigned)
        u = (uint64_t)s;
    *is_negative = !is_unsigned && s < 0;
    *as_signed = s;
    *as_unsigned = u;
    return true;
}

static kqcl_status not_convertible(const kqcl_gguf_value *v, const char *to)
{
    return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "GGUF value of type %s does not convert to %s",
                   v ? kqcl_gguf_type_name(v->type) : "(NULL)", to);
}

KQCL_API kqcl_status kqcl_gguf_value_int64(const kqcl_gguf_value *v, int64_t *out)
{
    int64_t s;
    uint64_t u;
    bool negative;
    if (v == NULL || out == NULL || !value_integer(v, &s, &u, &negative))
        return not_convertible(v, "int64");
    if (v->type == KQCL_GGUF_TYPE_UINT64 && u > INT64_MAX)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "GGUF value %" PRIu64 " does not fit int64",
                       u);
    *out = s;
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_gguf_value_uint64(const kqcl_gguf_value *v, uint64_t *out)
{
    int64_t s;
    uint64_t u;
    bool negative;
    if (v == NULL || out == NULL || !value_integer(v, &s, &u, &negative))
        return not_convertible(v, "uint64");
    if (negative)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "GGUF value %" PRId64 " does not fit uint64",
                       s);
    *out = u;
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_gguf_value_double(const kqcl_gguf_value *v, double *out)
{
    int64_t s;
    uint64_t u;
    bool negative;
    if (v == NULL || out == NULL || v->impl_ == NULL)
        return not_convertible(v, "double");
    if (v->type == KQCL_GGUF_TYPE_FLOAT32) {
        uint32_t bits = load_u32(v->impl_);
        float f;
        memcpy(&f, &bits, sizeof f);
        *out = f;
    } else if (v->type == KQCL_GGUF_TYPE_FLOAT64) {
        uint64_t bits = load_u64(v->impl_);
        memcpy(out, &bits, sizeof *out);
    } else if (value_integer(v, &s, &u, &negative)) {
        *out = negative ? (double)s : (double)u;
    } else {
        return not_convertible(v, "double");
    }
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_gguf_value_bool(const kqcl_gguf_value *v, int *out)
{
    if (v == NULL || out == NULL || v->impl_ == NULL || v->type != KQCL_GGUF_TYPE_BOOL)
        return not_convertible(v, "bool");
    *out = *(const uint8_t *)v->impl_ != 0;
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_gguf_value_string(const kqcl_gguf_value *v, const char **text,
                                            size_t *length)
{
    if (v == NULL || text == NULL || v->impl_ == NULL || v->type != KQCL_GGUF_TYPE_STRING)
        return not_convertible(v, "string");
    *text = v->impl_;
    if (length != NULL)
        *length = (size_t)v->length;
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_gguf_value_item(const kqcl_gguf_value *v, uint64_t j,
                                          kqcl_gguf_value *out)
{
    if (v == NULL || out == NULL || v->impl_ == NULL || v->type != KQCL_GGUF_TYPE_ARRAY)
        return not_convertible(v, "array");
    if (j >= v->length)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "GGUF array index %" PRIu64 " out of range "
                       "(length %" PRIu64 ")", j, v->length);
    size_t elem_size = scalar_size(v->elem_type);
    if (elem_size == 0) {
        *out = ((const kqcl_gguf_value *)v->impl_)[j];
        return KQCL_OK;
    }
    *out = (kqcl_gguf_value){.type = v->elem_type, .elem_type = KQCL_GGUF_TYPE_NONE,
                             .impl_ = (const uint8_t *)v->impl_ + (size_t)j * elem_size};
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_gguf_get_int64(const kqcl_gguf *g, int64_t i, int64_t *out)
{
    kqcl_gguf_value v = {0}; /* set by get_value on success; zeroed so no path reads garbage */
    kqcl_status st = kqcl_gguf_get_value(g, i, &v);
    return st != KQCL_OK ? st : kqcl_gguf_value_int64(&v, out);
}

KQCL_API kqcl_status kqcl_gguf_get_uint64(const kqcl_gguf *g, int64_t i, uint64_t *out)
{
    kqcl_gguf_value v = {0}; /* set by get_value on success; zeroed so no path reads garbage */
    kqcl_status st = kqcl_gguf_get_value(g, i, &v);
    return st != KQCL_OK ? st : kqcl_gguf_value_uint64(&v, out);
}

KQCL_API kqcl_status kqcl_gguf_get_double(const kqcl_gguf *g, int64_t i, double *out)
{
    kqcl_gguf_value v = {0}; /* set by get_value on success; zeroed so no path reads garbage */
    kqcl_status st = kqcl_gguf_get_value(g, i, &v);
    return st != KQCL_OK ? st : kqcl_gguf_value_double(&v, out);
}

KQCL_API kqcl_status kqcl_gguf_get_bool(const kqcl_gguf *g, int64_t i, int *out)
{
    kqcl_gguf_value v = {0}; /* set by get_value on success; zeroed so no path reads garbage */
    kqcl_status st = kqcl_gguf_get_value(g, i, &v);
    return st != KQCL_OK ? st : kqcl_gguf_value_bool(&v, out);
}

KQCL_API kqcl_status kqcl_gguf_get_string(const kqcl_gguf *g, int64_t i, const char **text,
                                          size_t *length)
{
    kqcl_gguf_value v = {0}; /* set by get_value on success; zeroed so no path reads garbage */
    kqcl_status st = kqcl_gguf_get_value(g, i, &v);
    return st != KQCL_OK ? st : kqcl_gguf_value_string(&v, text, length);
}

/* ------------------------------------------------------------------------------------------ */
/* Loading onto a device                                                                        */

/* A file's tensor data read with pread into a new buffer: a file truncated since it was opened
 * then gives KQCL_ERR_IO, where touching the mapping would have raised SIGBUS. */
static kqcl_status read_tensor_data(kqcl_context *ctx, const kqcl_gguf *g,
                                    const kqcl_gguf_tensor *info, void **out)
{
    *out = malloc((size_t)info->nbytes);
    if (*out == NULL)
        return kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY, "tensor '%s': no host memory for %" PRIu64
                       " bytes", info->name, info->nbytes);
    if (read_at(g->fd, *out, (size_t)info->nbytes, g->data_offset + info->offset))
        return KQCL_OK;
    kqcl_status st = read_failed(g->path, "reading tensor data");
    kq_fail(ctx, st, "tensor '%s': %s", info->name, kqcl_last_error(NULL));
    free(*out);
    *out = NULL;
    return st;
}

KQCL_API kqcl_status kqcl_gguf_load_tensor(kqcl_context *ctx, const kqcl_gguf *g, int64_t index,
                                           kqcl_tensor **out)
{
    return kqcl_gguf_load_tensor_split(ctx, g, index, KQCL_SPLIT_NONE, out);
}

KQCL_API kqcl_status kqcl_gguf_load_tensor_split(kqcl_context *ctx, const kqcl_gguf *g, int64_t index,
                                                 kqcl_split split, kqcl_tensor **out)
{
    kqcl_gguf_tensor info;
    if (out != NULL)
        *out = NULL;
    if (ctx == NULL || out == NULL || g == NULL || index < 0 || index >= g->n_tensors)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_gguf_load_tensor: bad argument or no "
                       "tensor %" PRId64, index);
    info = g->tensors[index];
    if (!info.known)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "tensor '%s' has ggml type %" PRIu32
                       ", which kqcl does not support", info.name, info.type);
    if (info.nbytes == 0)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "tensor '%s' is empty", info.name);
    int64_t rows = info.ne[1] * info.ne[2] * info.ne[3]; /* no overflow: checked at open */
    kqcl_tensor *t = NULL;
    kqcl_status st = split == KQCL_SPLIT_NONE
                         ? kqcl_tensor_create(ctx, (kqcl_type)info.type, rows, info.ne[0], &t)
                         : kqcl_tensor_create_split(ctx, (kqcl_type)info.type, rows, info.ne[0], split, &t);
    if (st != KQCL_OK)
        return st;
    const void *data = info.data;
    void *copy = NULL;
    if (g->fd >= 0 && (st = read_tensor_data(ctx, g, &info, &copy)) == KQCL_OK)
        data = copy;
    if (st == KQCL_OK)
        st = kqcl_tensor_write(t, data, (size_t)info.nbytes);
    free(copy);
    if (st != KQCL_OK) {
        kqcl_tensor_destroy(t);
        return st;
    }
    *out = t;
    return KQCL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Writer                                                                                       */

typedef struct byte_buffer {
    uint8_t *bytes;
    size_t length, capacity;
    bool failed;         /* an allocation failed; later appends are dropped */
} byte_buffer;

static void put_bytes(byte_buffer *b, const void *src, size_t n)
{
    if (b->failed || n == 0)
        return;
    if (n > SIZE_MAX / 2 - b->length) {
        b->failed = true;
        return;
    }
    if (b->length + n > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 64;
        while (capacity < b->length + n)
            capacity *= 2;
        uint8_t *grown = realloc(b->bytes, capacity);
        if (grown == NULL) {
            b->failed = true;
            return;
        }
        b->bytes = grown;
        b->capacity = capacity;
    }
    memcpy(b->bytes + b->length, src, n);
    b->length += n;
}

static void put_le(byte_buffer *b, uint64_t value, size_t size)
{
    uint8_t le[8];
    for (size_t k = 0; k < size; k++)
        le[k] = (uint8_t)(value >> (8 * k));
    put_bytes(b, le, size);
}

static void put_u32(byte_buffer *b, uint32_t v) { put_le(b, v, 4); }
static void put_u64(byte_buffer *b, uint64_t v) { put_le(b, v, 8); }

static void put_string(byte_buffer *b, const char *s, size_t length)
{
    put_u64(b, length);
    put_bytes(b, s, length);
}

/* One number of a host type (uint8_t .. double, bool) as GGUF's little-endian bytes. */
static void put_host_scalar(byte_buffer *b, kqcl_gguf_type type, const void *value)
{
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    switch (scalar_size(type)) {
    case 1:
        /* a bool is read as its byte: any nonzero byte is true (a byte other than 0 or 1 read
         * as a bool is undefined, found by fuzz_writer) */
        u8 = *(const uint8_t *)value;
        u8 = type == KQCL_GGUF_TYPE_BOOL ? (uint8_t)(u8 != 0) : u8;
        put_bytes(b, &u8, 1);
        break;
    case 2: memcpy(&u16, value, 2); put_le(b, u16, 2); break;
    case 4: memcpy(&u32, value, 4); put_le(b, u32, 4); break;
    case 8: memcpy(&u64, value, 8); put_le(b, u64, 8); break;
    default: break;
    }
}

typedef struct writer_kv {
    char *key;
    byte_buffer value;   /* u32 value type + the encoded value */
} writer_kv;

typedef struct writer_tensor {
    char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;
    uint64_t nbytes;
} writer_tensor;

struct kqcl_gguf_writer {
    writer_kv *kvs;
    size_t n_kvs, kv_capacity;
    writer_tensor *tensors;
    size_t n_tensors, tensor_capacity;
};

KQCL_API kqcl_status kqcl_gguf_writer_create(kqcl_gguf_writer **out)
{
    if (out == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_gguf_writer_create: NULL argument");
    *out = calloc(1, sizeof **out);
    if (*out == NULL)
        return kq_fail(NULL, KQCL_ERR_OUT_OF_MEMORY, "GGUF writer: out of memory");
    return KQCL_OK;
}

KQCL_API void kqcl_gguf_writer_destroy(kqcl_gguf_writer *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n_kvs; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].value.bytes);
    }
    for (size_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->kvs);
    free(w->tensors);
    free(w);
}

/* Grow an array of `size`-byte items to hold one more. */
static bool grow(void **items, size_t *capacity, size_t count, size_t size)
{
    if (count < *capacity)
        return true;
    size_t wanted = *capacity ? *capacity * 2 : 16;
    void *grown = realloc(*items, wanted * size);
    if (grown == NULL)
        return false;
    *items = grown;
    *capacity = wanted;
    return true;
}

/* Store an encoded value under key: replaces the value of an existing key, else appends.
 * Takes ownership of `value`'s bytes in every case. */
static kqcl_status writer_store(kqcl_gguf_writer *w, const char *key, byte_buffer *value)
{
    if (value->failed) {
        free(value->bytes);
        return kq_fail(NULL, KQCL_ERR_OUT_OF_MEMORY, "GGUF writer: out of memory for '%s'",
                       key);
    }
    for (size_t i = 0; i < w->n_kvs; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            free(w->kvs[i].value.bytes);
            w->kvs[i].value = *value;
            return KQCL_OK;
        }
    }
    char *copy = strdup(key);
    if (copy == NULL || !grow((void **)&w->kvs, &w->kv_capacity, w->n_kvs, sizeof *w->kvs)) {
        free(copy);
        free(value->bytes);
        return kq_fail(NULL, KQCL_ERR_OUT_OF_MEMORY, "GGUF writer: out of memory for '%s'",
                       key);
    }
    w->kvs[w->n_kvs++] = (writer_kv){copy, *value};
    return KQCL_OK;
}

static kqcl_status check_key(const kqcl_gguf_writer *w, const char *key, const char *fn)
{
    if (w == NULL || key == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: NULL argument", fn);
    return KQCL_OK;
}

static bool is_number_type(kqcl_gguf_type type) { return scalar_size(type) != 0; }

KQCL_API kqcl_status kqcl_gguf_writer_set_scalar(kqcl_gguf_writer *w, const char *key,
                                                 kqcl_gguf_type type, const void *value)
{
    kqcl_status st = check_key(w, key, "kqcl_gguf_writer_set_scalar");
    if (st != KQCL_OK)
        return st;
    if (value == NULL || !is_number_type(type))
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_gguf_writer_set_scalar: '%s': type %d "
                       "is not a number or bool, or value is NULL", key, (int)type);
    byte_buffer b = {0};
    put_u32(&b, (uint32_t)type);
    put_host_scalar(&b, type, value);
    return writer_store(w, key, &b);
}

KQCL_API kqcl_status kqcl_gguf_writer_set_u32(kqcl_gguf_writer *w, const char *key,
                                              uint32_t value)
{
    return kqcl_gguf_writer_set_scalar(w, key, KQCL_GGUF_TYPE_UINT32, &value);
}

KQCL_API kqcl_status kqcl_gguf_writer_set_i32(kqcl_gguf_writer *w, const char *key,
                                              int32_t value)
{
    return kqcl_gguf_writer_set_scalar(w, key, KQCL_GGUF_TYPE_INT32, &value);
}

KQCL_API kqcl_status kqcl_gguf_writer_set_u64(kqcl_gguf_writer *w, const char *key,
                                              uint64_t value)
{
    return kqcl_gguf_writer_set_scalar(w, key, KQCL_GGUF_TYPE_UINT64, &value);
}

KQCL_API kqcl_status kqcl_gguf_writer_set_i64(kqcl_gguf_writer *w, const char *key,
                                              int64_t value)
{
    return kqcl_gguf_writer_set_scalar(w, key, KQCL_GGUF_TYPE_INT64, &value);
}

KQCL_API kqcl_status kqcl_gguf_writer_set_f32(kqcl_gguf_writer *w, const char *key, float value)
{
    return kqcl_gguf_writer_set_scalar(w, key, KQCL_GGUF_TYPE_FLOAT32, &value);
}

KQCL_API kqcl_status kqcl_gguf_writer_set_f64(kqcl_gguf_writer *w, const char *key,
                                              double value)
{
    return kqcl_gguf_writer_set_scalar(w, key, KQCL_GGUF_TYPE_FLOAT64, &value);
}

KQCL_API kqcl_status kqcl_gguf_writer_set_bool(kqcl_gguf_writer *w, const char *key, int value)
{
    bool b = value != 0;
    return kqcl_gguf_writer_set_scalar(w, key, KQCL_GGUF_TYPE_BOOL, &b);
}

KQCL_API kqcl_status kqcl_gguf_writer_set_string(kqcl_gguf_writer *w, const char *key,
                                                 const char *value)
{
    kqcl_status st = check_key(w, key, "kqcl_gguf_writer_set_string");
    if (st != KQCL_OK)
        return st;
    if (value == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_gguf_writer_set_string: '%s': NULL "
                       "value", key);
    byte_buffer b = {0};
    put_u32(&b, KQCL_GGUF_TYPE_STRING);
    put_string(&b, value, strlen(value));
    return writer_store(w, key, &b);
}

KQCL_API kqcl_status kqcl_gguf_writer_set_array(kqcl_gguf_writer *w, const char *key,
                                                kqcl_gguf_type elem_type, const void *values,
                                                uint64_t n)
{
    kqcl_status st = check_key(w, key, "kqcl_gguf_writer_set_array");
    if (st != KQCL_OK)
        return st;
    size_t size = scalar_size(elem_type);
    if (size == 0 || (values == NULL && n != 0))
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_gguf_writer_set_array: '%s': element "
                       "type %d is not a number or bool, or values is NULL", key,
                       (int)elem_type);
    /* A bool array takes `bool`s, which are one byte wherever GGUF is used. */
    size_t host_size = elem_type == KQCL_GGUF_TYPE_BOOL ? sizeof(bool) : size;
    byte_buffer b = {0};
    put_u32(&b, KQCL_GGUF_TYPE_ARRAY);
    put_u32(&b, (uint32_t)elem_type);
    put_u64(&b, n);
    for (uint64_t j = 0; j < n && !b.failed; j++)
        put_host_scalar(&b, elem_type, (const uint8_t *)values + (size_t)j * host_size);
    return writer_store(w, key, &b);
}

KQCL_API kqcl_status kqcl_gguf_writer_set_string_array(kqcl_gguf_writer *w, const char *key,
                                                       const char *const *values, uint64_t n)
{
    kqcl_status st = check_key(w, key, "kqcl_gguf_writer_set_string_array");
    if (st != KQCL_OK)
        return st;
    for (uint64_t j = 0; j < n; j++)
        if (values == NULL || values[j] == NULL)
            return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_gguf_writer_set_string_array: "
                           "'%s': string %" PRIu64 " is NULL", key, j);
    byte_buffer b = {0};
    put_u32(&b, KQCL_GGUF_TYPE_ARRAY);
    put_u32(&b, KQCL_GGUF_TYPE_STRING);
    put_u64(&b, n);
    for (uint64_t j = 0; j < n && !b.failed; j++)
        put_string(&b, values[j], strlen(values[j]));
    return writer_store(w, key, &b);
}

/* A read value's body (without its type): numbers are copied as the file held them. */
static void put_value_body(byte_buffer *b, const kqcl_gguf_value *v)
{
    size_t size = scalar_size(v->type);
    if (size != 0) {
        put_bytes(b, v->impl_, size);
    } else if (v->type == KQCL_GGUF_TYPE_STRING) {
        put_string(b, v->impl_, (size_t)v->length);
    } else if (v->type == KQCL_GGUF_TYPE_ARRAY) {
        put_u32(b, (uint32_t)v->elem_type);
        put_u64(b, v->length);
        size_t elem_size = scalar_size(v->elem_type);
        if (elem_size != 0) {
            put_bytes(b, v->impl_, (size_t)v->length * elem_size);
        } else {
            for (uint64_t j = 0; j < v->length && !b->failed; j++)
                put_value_body(b, &((const kqcl_gguf_value *)v->impl_)[j]);
        }
    }
}

KQCL_API kqcl_status kqcl_gguf_writer_set_value(kqcl_gguf_writer *w, const char *key,
                                                const kqcl_gguf_value *value)
{
    kqcl_status st = check_key(w, key, "kqcl_gguf_writer_set_value");
    if (st != KQCL_OK)
        return st;
    if (value == NULL || value->impl_ == NULL || value->type < KQCL_GGUF_TYPE_UINT8 ||
        value->type > KQCL_GGUF_TYPE_FLOAT64)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_gguf_writer_set_value: '%s': not a "
                       "value read from a GGUF file", key);
    byte_buffer b = {0};
    put_u32(&b, (uint32_t)value->type);
    put_value_body(&b, value);
    return writer_store(w, key, &b);
}

KQCL_API kqcl_status kqcl_gguf_writer_copy_kv(kqcl_gguf_writer *w, const kqcl_gguf *g,
                                              int64_t i)
{
    kqcl_gguf_value v = {0}; /* set by get_value on success; zeroed so no path reads garbage */
    kqcl_status st = kqcl_gguf_get_value(g, i, &v);
    if (st != KQCL_OK)
        return st;
    return kqcl_gguf_writer_set_value(w, kqcl_gguf_key(g, i), &v);
}

/* The shape checks of add_tensor; *nbytes_expected is 0 for an id ggml does not define. */
static kqcl_status check_tensor_shape(const char *name, uint32_t type, int n_dims,
                                      const int64_t *ne, uint64_t *nbytes_expected)
{
    int64_t n_elements = 1;
    *nbytes_expected = 0;
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || ne == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "GGUF writer: tensor '%s': n_dims %d (1..4)",
                       name, n_dims);
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 0 || (ne[d] != 0 && n_elements > INT64_MAX / ne[d]))
            return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "GGUF writer: tensor '%s': bad ne[%d] = %"
                           PRId64, name, d, ne[d]);
        n_elements *= ne[d];
    }
    int64_t block;
    size_t block_bytes;
    if (!kq_ggml_type_size(type, &block, &block_bytes) || n_elements == 0)
        return KQCL_OK;
    uint64_t blocks = (uint64_t)(n_elements / block);
    if (ne[0] % block != 0 || blocks > SIZE_MAX / block_bytes)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "GGUF writer: tensor '%s': ne[0] = %" PRId64
                       " is not a whole number of blocks of ggml type %" PRIu32, name, ne[0],
                       type);
    *nbytes_expected = blocks * block_bytes;
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_gguf_writer_add_tensor(kqcl_gguf_writer *w, const char *name,
                                                 uint32_t type, int n_dims, const int64_t *ne,
                                                 const void *data, uint64_t nbytes)
{
    uint64_t expected;
    if (w == NULL || name == NULL || (data == NULL && nbytes != 0))
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_gguf_writer_add_tensor: NULL argument");
    if (strlen(name) >= GGUF_MAX_NAME)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "GGUF writer: tensor name '%.80s' is longer "
                       "than ggml's %d bytes", name, GGUF_MAX_NAME - 1);
    kqcl_status st = check_tensor_shape(name, type, n_dims, ne, &expected);
    if (st != KQCL_OK)
        return st;
    int64_t block_values;
    size_t block_bytes;
    if (kq_ggml_type_size(type, &block_values, &block_bytes) && nbytes != expected)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "GGUF writer: tensor '%s': nbytes %" PRIu64
                       ", its shape needs %" PRIu64, name, nbytes, expected);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "GGUF writer: tensor '%s' added twice",
                           name);
    char *copy = strdup(name);
    if (copy == NULL || !grow((void **)&w->tensors, &w->tensor_capacity, w->n_tensors,
                              sizeof *w->tensors)) {
        free(copy);
        return kq_fail(NULL, KQCL_ERR_OUT_OF_MEMORY, "GGUF writer: out of memory");
    }
    writer_tensor *t = &w->tensors[w->n_tensors++];
    *t = (writer_tensor){.name = copy, .type = type, .n_dims = (uint32_t)n_dims, .data = data,
                         .nbytes = nbytes};
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        t->ne[d] = d < n_dims ? ne[d] : 1;
    return KQCL_OK;
}

/* The alignment to write with: general.alignment when set as a u32 power of two. */
static kqcl_status writer_alignment(const kqcl_gguf_writer *w, uint64_t *alignment)
{
    *alignment = GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kvs; i++) {
        if (strcmp(w->kvs[i].key, ALIGNMENT_KEY) != 0)
            continue;
        const byte_buffer *v = &w->kvs[i].value;
        uint32_t value = v->length == 8 ? load_u32(v->bytes + 4) : 0;
        if (load_u32(v->bytes) != KQCL_GGUF_TYPE_UINT32 || value == 0 ||
            (value & (value - 1)) != 0 || value > GGUF_MAX_ALIGNMENT)
            return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "GGUF writer: " ALIGNMENT_KEY " must be "
                           "a u32 power of two, at most %u", GGUF_MAX_ALIGNMENT);
        *alignment = value;
    }
    return KQCL_OK;
}

static uint64_t padding(uint64_t position, uint64_t alignment)
{
    return (alignment - position % alignment) % alignment;
}

/* Everything before the data section, padding included. */
static void build_header(const kqcl_gguf_writer *w, uint64_t alignment, byte_buffer *b)
{
    static const uint8_t zeros[256];
    put_bytes(b, GGUF_MAGIC, 4);
    put_u32(b, 3);
    put_u64(b, w->n_tensors);
    put_u64(b, w->n_kvs);
    for (size_t i = 0; i < w->n_kvs; i++) {
        put_string(b, w->kvs[i].key, strlen(w->kvs[i].key));
        put_bytes(b, w->kvs[i].value.bytes, w->kvs[i].value.length);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        put_string(b, t->name, strlen(t->name));
        put_u32(b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            put_u64(b, (uint64_t)t->ne[d]);
        put_u32(b, t->type);
        put_u64(b, offset);
        offset += t->nbytes + padding(t->nbytes, alignment);
    }
    for (uint64_t pad = padding(b->length, alignment); pad > 0;) {
        size_t chunk = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
        put_bytes(b, zeros, chunk);
        pad -= chunk;
    }
}

static bool write_zeros(FILE *f, uint64_t n)
{
    static const uint8_t zeros[256];
    while (n > 0) {
        size_t chunk = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (fwrite(zeros, 1, chunk, f) != chunk)
            return false;
        n -= chunk;
    }
    return true;
}

/* Header, then each tensor's data padded to the alignment -- the last one too, as ggml's
 * writer does and its non-mmap reader expects. */
static bool write_file(const kqcl_gguf_writer *w, const byte_buffer *header, uint64_t alignment,
                       FILE *f)
{
    if (fwrite(header->bytes, 1, header->length, f) != header->length)
        return false;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        if (t->nbytes != 0 && fwrite(t->data, 1, (size_t)t->nbytes, f) != t->nbytes)
            return false;
        if (!write_zeros(f, padding(t->nbytes, alignment)))
            return false;
    }
    return fflush(f) == 0;
}

/* Where to write `path` from: the file it names (through symbolic links), which must be a
 * regular file when it exists -- a device node, FIFO or directory is refused, never replaced.
 * *mode gets an existing file's permissions (-1: a new file, the umask decides). */
static kqcl_status writer_target(const char *path, char **target, int *mode)
{
    struct stat st;
    *target = NULL;
    *mode = -1;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT)
            return kq_fail(NULL, KQCL_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
        struct stat link;
        /* a dangling symbolic link is refused: where it points is not ours to create */
        char *resolved = lstat(path, &link) == 0 && S_ISLNK(link.st_mode) ? NULL : strdup(path);
        if (resolved == NULL)
            return kq_fail(NULL, KQCL_ERR_IO, "cannot write '%s': a dangling symbolic link", path);
        *target = resolved;
        return KQCL_OK;
    }
    if (!S_ISREG(st.st_mode))
        return kq_fail(NULL, KQCL_ERR_IO, "cannot write '%s': it exists and is not a regular "
                       "file (left as it is)", path);
    *mode = (int)(st.st_mode & 07777);
    *target = realpath(path, NULL);
    if (*target == NULL)
        return kq_fail(NULL, KQCL_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    return KQCL_OK;
}

/* Bytes of target's directory part, its last '/' included (0: the current directory). */
static size_t directory_length(const char *target)
{
    const char *slash = strrchr(target, '/');
    return slash ? (size_t)(slash - target) + 1 : 0;
}

/* A new file of our own in target's directory ("DIR/kqcl-tmp-PID-N", O_EXCL), so that nothing
 * but that file is ever removed on failure, and the rename into place stays on one file system.
 * Its name does not grow from target's own: at most 40 bytes, so it fits NAME_MAX however
 * long target's name is (TARGET.kqcl-tmp-PID-N could not be made for names of 231 bytes on). */
static kqcl_status writer_temp(const char *target, int mode, char **tmp, FILE **f)
{
    static unsigned counter; /* names differ between calls; O_EXCL settles any race */
    size_t dir_length = directory_length(target), size = dir_length + 64;
    *tmp = malloc(size);
    *f = NULL;
    if (*tmp == NULL)
        return kq_fail(NULL, KQCL_ERR_OUT_OF_MEMORY, "GGUF writer: out of memory");
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned n = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
        memcpy(*tmp, target, dir_length);
        snprintf(*tmp + dir_length, size - dir_length, "kqcl-tmp-%ld-%u", (long)getpid(), n);
        int fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
        if (fd < 0 && errno == EEXIST)
            continue;
        if (fd < 0)
            break;
        if (mode >= 0)
            (void)fchmod(fd, (mode_t)mode); /* keep an existing file's permissions */
        *f = fdopen(fd, "wb");
        if (*f != NULL)
            return KQCL_OK;
        close(fd);
        unlink(*tmp);
        break;
    }
    int err = errno;
    free(*tmp);
    *tmp = NULL;
    return kq_fail(NULL, KQCL_ERR_IO, "cannot create a file beside '%s': %s", target,
                   strerror(err));
}

KQCL_API kqcl_status kqcl_gguf_writer_write(const kqcl_gguf_writer *w, const char *path)
{
    uint64_t alignment;
    if (w == NULL || path == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_gguf_writer_write: NULL argument");
    kqcl_status st = writer_alignment(w, &alignment);
    if (st != KQCL_OK)
        return st;
    byte_buffer header = {0};
    build_header(w, alignment, &header);
    if (header.failed) {
        free(header.bytes);
        return kq_fail(NULL, KQCL_ERR_OUT_OF_MEMORY, "GGUF writer: out of memory");
    }
    char *target = NULL, *tmp = NULL;
    int mode;
    FILE *f = NULL;
    st = writer_target(path, &target, &mode);
    if (st == KQCL_OK)
        st = writer_temp(target, mode, &tmp, &f);
    if (st != KQCL_OK) {
        free(header.bytes);
        free(target);
        return st;
    }
    bool ok = write_file(w, &header, alignment, f) && fsync(fileno(f)) == 0;
    int err = errno;
    free(header.bytes);
    if (fclose(f) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (ok && rename(tmp, target) != 0) {
        ok = false;
        err = errno;
    }
    if (!ok)
        unlink(tmp); /* ours alone: what was at path is untouched */
    free(tmp);
    free(target);
    if (!ok)
        return kq_fail(NULL, KQCL_ERR_IO, "cannot write '%s': %s", path, strerror(err));
    return KQCL_OK;
}
