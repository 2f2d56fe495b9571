/*
 * connectors.decoders._jsonrows: flat JSON objects straight into Arrow columns.
 *
 * Why this exists: pyarrow's JSON reader costs ~0.5 us of CPU per small record, which on two
 * cores is half of what the Perspective update itself costs. Most topics carry flat objects
 * of a few scalar fields; for those a single pass over the bytes writes each field straight
 * into its column's Arrow buffers, with the GIL released.
 *
 * It is a fast path and nothing more. It accepts only what it is sure pyarrow's reader
 * (explicit schema, unknown fields ignored) turns into exactly the same values: strict JSON,
 * one object per value, integers for integer columns, numbers for float columns, true/false
 * for boolean columns, strings (valid UTF-8) for string columns, numbers for datetime columns
 * (epochs, scaled to milliseconds as the pyarrow path scales them), null anywhere. On anything
 * else (a malformed record, a type mismatch, an escaped key, a duplicate field, NaN, a
 * number that needs more than the exact fast conversion and strtod, invalid UTF-8) it
 * returns None for the whole batch, and the caller parses the batch with pyarrow, which
 * also classifies the bad records. So a clean batch costs one pass; a dirty one costs what
 * it always did, plus that pass.
 *
 * Numbers: an integer column takes JSON integers in the int64 range. A float column takes
 * any JSON number, converted with correct rounding (the exact fast path when the digits fit
 * in 2^53 and the power of ten is at most 22, else the C library's strtod, which rounds
 * correctly), the same values pyarrow's reader produces.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* KIND_EPOCH: a datetime column's epoch numbers, as int64 milliseconds (epoch_to_ms); its
 * ISO 8601 strings are left to pyarrow. */
enum kind { KIND_INT = 0, KIND_FLOAT = 1, KIND_BOOL = 2, KIND_STRING = 3, KIND_EPOCH = 4 };

#define MAX_COLUMNS 256
#define MAX_DEPTH 64
#define MAX_NUMBER_CHARS 128

typedef struct {
    const char *name;
    Py_ssize_t name_len;
    int kind;
    uint8_t *valid;   /* validity bitmap */
    uint8_t *data;    /* int64/float64 values, boolean bitmap, or string bytes */
    int32_t *offsets; /* strings */
    size_t used;      /* string bytes written */
    size_t capacity;  /* string bytes available */
    Py_ssize_t nulls;
} Column;

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Cursor;

static inline void skip_ws(Cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static inline void set_bit(uint8_t *bits, Py_ssize_t i) { bits[i >> 3] |= (uint8_t)(1u << (i & 7)); }

/* Length of the valid UTF-8 sequence starting at p (whose first byte is >= 0x80), or 0. */
static int utf8_sequence(const uint8_t *p, const uint8_t *end) {
    uint8_t b = p[0];
    int len;
    uint32_t min;
    if (b >= 0xC2 && b <= 0xDF) {
        len = 2;
        min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3;
        min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (end - p < len) return 0;
    uint32_t cp = b & (0xFF >> (len + 1));
    for (int i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

static int hex4(const uint8_t *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t h = p[i];
        v <<= 4;
        if (h >= '0' && h <= '9')
            v |= (uint32_t)(h - '0');
        else if (h >= 'a' && h <= 'f')
            v |= (uint32_t)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F')
            v |= (uint32_t)(h - 'A' + 10);
        else
            return 0;
    }
    *out = v;
    return 1;
}

/*
 * A JSON string at c->p (just after the opening quote). With out != NULL, its decoded bytes
 * are written there (never more than its encoded length) and *written is set. Returns 0 when
 * it is not a string this fast path accepts.
 */
static int read_string(Cursor *c, uint8_t *out, size_t *written) {
    const uint8_t *p = c->p, *end = c->end;
    uint8_t *o = out;
    while (p < end) {
        uint8_t b = *p;
        if (b == '"') {
            c->p = p + 1;
            if (written) *written = (size_t)(o - out);
            return 1;
        }
        if (b < 0x20) return 0;
        if (b == '\\') {
            if (end - p < 2) return 0;
            uint8_t e = p[1];
            uint8_t ch;
            switch (e) {
                case '"': ch = '"'; break;
                case '\\': ch = '\\'; break;
                case '/': ch = '/'; break;
                case 'b': ch = '\b'; break;
                case 'f': ch = '\f'; break;
                case 'n': ch = '\n'; break;
                case 'r': ch = '\r'; break;
                case 't': ch = '\t'; break;
                case 'u': {
                    uint32_t cp;
                    if (end - p < 6 || !hex4(p + 2, &cp)) return 0;
                    p += 6;
                    if (cp >= 0xDC00 && cp <= 0xDFFF) return 0;
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        uint32_t low;
                        if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, &low) ||
                            low < 0xDC00 || low > 0xDFFF)
                            return 0;
                        p += 6;
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    }
                    if (out) {
                        if (cp < 0x80) {
                            *o++ = (uint8_t)cp;
                        } else if (cp < 0x800) {
                            *o++ = (uint8_t)(0xC0 | (cp >> 6));
                            *o++ = (uint8_t)(0x80 | (cp & 0x3F));
                        } else if (cp < 0x10000) {
                            *o++ = (uint8_t)(0xE0 | (cp >> 12));
                            *o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                            *o++ = (uint8_t)(0x80 | (cp & 0x3F));
                        } else {
                            *o++ = (uint8_t)(0xF0 | (cp >> 18));
                            *o++ = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
                            *o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                            *o++ = (uint8_t)(0x80 | (cp & 0x3F));
                        }
                    }
                    continue;
                }
                default:
                    return 0;
            }
            if (out) *o++ = ch;
            p += 2;
            continue;
        }
        if (b >= 0x80) {
            int len = utf8_sequence(p, end);
            if (!len) return 0;
            if (out) {
                memcpy(o, p, (size_t)len);
                o += len;
            }
            p += len;
            continue;
        }
        if (out) *o++ = b;
        p++;
    }
    return 0;
}

/* The extent of a JSON number at c->p: sets digits/fraction/exponent facts; 0 if not one. */
typedef struct {
    const uint8_t *start;
    size_t length;
    int negative;
    int integral; /* no fraction, no exponent */
    int exponent; /* has an exponent */
} Number;

static int scan_number(Cursor *c, Number *n) {
    const uint8_t *p = c->p, *end = c->end;
    n->start = p;
    n->negative = 0;
    n->integral = 1;
    n->exponent = 0;
    if (p < end && *p == '-') {
        n->negative = 1;
        p++;
    }
    if (p >= end) return 0;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return 0;
    }
    if (p < end && *p == '.') {
        n->integral = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9') return 0;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        n->integral = 0;
        n->exponent = 1;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return 0;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    n->length = (size_t)(p - n->start);
    c->p = p;
    return 1;
}

static int number_to_int64(const Number *n, int64_t *out) {
    const uint8_t *p = n->start + n->negative, *end = n->start + n->length;
    uint64_t v = 0;
    if (end - p > 19) return 0;
    for (; p < end; p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    if (n->negative) {
        if (v > (uint64_t)INT64_MAX + 1) return 0;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX) return 0;
        *out = (int64_t)v;
    }
    return 1;
}

static const double POWERS_OF_TEN[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int number_to_double(const Number *n, double *out) {
    /* Exact fast path (Clinger): all significant digits fit in 2^53 and |power| <= 22, so one
     * IEEE multiplication or division of exact operands rounds correctly. */
    const uint8_t *p = n->start + n->negative, *end = n->start + n->length;
    uint64_t mantissa = 0;
    int digits = 0, exponent = 0, fast = 1;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (mantissa || *p != '0') digits++;
        if (digits > 19) {
            fast = 0;
            break;
        }
        mantissa = mantissa * 10 + (uint64_t)(*p - '0');
    }
    if (fast && p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
            if (mantissa || *p != '0') digits++;
            if (digits > 19) {
                fast = 0;
                break;
            }
            mantissa = mantissa * 10 + (uint64_t)(*p - '0');
            exponent--;
        }
    }
    if (fast && p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int sign = 1, value = 0;
        if (*p == '+' || *p == '-') sign = *p++ == '-' ? -1 : 1;
        for (; p < end; p++) {
            if (value > 10000) {
                fast = 0;
                break;
            }
            value = value * 10 + (*p - '0');
        }
        exponent += sign * value;
    }
    if (fast && mantissa <= (1ULL << 53) && exponent >= -22 && exponent <= 22) {
        double v = (double)mantissa;
        v = exponent < 0 ? v / POWERS_OF_TEN[-exponent] : v * POWERS_OF_TEN[exponent];
        *out = n->negative ? -v : v;
        return 1;
    }
    char text[MAX_NUMBER_CHARS + 1];
    if (n->length > MAX_NUMBER_CHARS) return 0;
    memcpy(text, n->start, n->length);
    text[n->length] = '\0';
    char *stop;
    errno = 0;
    double v = strtod(text, &stop);
    /* Out of range either way (overflow, or underflow to zero or a subnormal): pyarrow's
     * answer may differ, so the batch is left to it. */
    if (stop != text + n->length || errno == ERANGE || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

/*
 * Whether a number is surely finite as a double: pyarrow's reader converts every number,
 * even one of a field no column takes, and refuses the record when it overflows (1e400,
 * 400 digits). The decimal exponent of the first significant digit tells: below 308 it is
 * finite; at 308 and above it may not be, and the batch is left to pyarrow.
 */
static int number_fits_double(const Number *n) {
    if (!n->exponent && n->length < 300) return 1; /* the usual case: fewer than 300 digits */
    const uint8_t *p = n->start + n->negative, *end = n->start + n->length;
    long magnitude = -1; /* of the first non-zero digit; stays -1 for zero */
    const uint8_t *q = p;
    while (q < end && *q >= '0' && *q <= '9') q++;
    long position = (long)(q - p) - 1; /* decimal exponent of the digit at p */
    int found = 0;
    for (; p < end && (*p == '.' || (*p >= '0' && *p <= '9')); p++) {
        if (*p == '.') continue;
        if (*p != '0') {
            magnitude = position;
            found = 1;
            break;
        }
        position--;
    }
    if (!found) return 1; /* zero, whatever its exponent */
    while (p < end && *p != 'e' && *p != 'E') p++;
    long exponent = 0;
    if (p < end) {
        p++;
        int sign = 1;
        if (*p == '+' || *p == '-') sign = *p++ == '-' ? -1 : 1;
        for (; p < end; p++) {
            if (exponent > 100000) break; /* saturated: far beyond either limit */
            exponent = exponent * 10 + (*p - '0');
        }
        exponent *= sign;
    }
    return magnitude + exponent < 308;
}

/* An epoch number in s, ms, us or ns (told apart by magnitude) as milliseconds: the same
 * double operations, floor and range check as connectors/decoders/columns.py's
 * epoch_to_timestamp_ms (float64 multiply, floor, safe cast to int64). */
static int epoch_to_ms(double v, int64_t *out) {
    double m = fabs(v);
    double scale = m < 1e11 ? 1000.0 : m < 1e14 ? 1.0 : m < 1e17 ? 1e-3 : 1e-6;
    double ms = floor(v * scale);
    if (!(ms >= -9223372036854775808.0 && ms < 9223372036854775808.0)) return 0;
    *out = (int64_t)ms;
    return 1;
}

static int match_literal(Cursor *c, const char *word, size_t len) {
    if ((size_t)(c->end - c->p) < len || memcmp(c->p, word, len) != 0) return 0;
    c->p += len;
    return 1;
}

/* Skip (and validate) any JSON value: the fields no column takes. */
static int skip_value(Cursor *c, int depth) {
    if (depth > MAX_DEPTH || c->p >= c->end) return 0;
    uint8_t b = *c->p;
    if (b == '"') {
        c->p++;
        return read_string(c, NULL, NULL);
    }
    if (b == '{' || b == '[') {
        uint8_t close = b == '{' ? '}' : ']';
        c->p++;
        skip_ws(c);
        if (c->p < c->end && *c->p == close) {
            c->p++;
            return 1;
        }
        for (;;) {
            if (b == '{') {
                if (c->p >= c->end || *c->p != '"') return 0;
                c->p++;
                if (!read_string(c, NULL, NULL)) return 0;
                skip_ws(c);
                if (c->p >= c->end || *c->p != ':') return 0;
                c->p++;
                skip_ws(c);
            }
            if (!skip_value(c, depth + 1)) return 0;
            skip_ws(c);
            if (c->p >= c->end) return 0;
            if (*c->p == ',') {
                c->p++;
                skip_ws(c);
                continue;
            }
            if (*c->p == close) {
                c->p++;
                return 1;
            }
            return 0;
        }
    }
    if (b == 't') return match_literal(c, "true", 4);
    if (b == 'f') return match_literal(c, "false", 5);
    if (b == 'n') return match_literal(c, "null", 4);
    Number n;
    return scan_number(c, &n) && number_fits_double(&n);
}

static int read_field(Cursor *c, Column *col, Py_ssize_t row) {
    if (c->p >= c->end) return 0;
    if (*c->p == 'n') {
        if (!match_literal(c, "null", 4)) return 0;
        col->nulls++;
        if (col->kind == KIND_STRING) col->offsets[row + 1] = (int32_t)col->used;
        return 1;
    }
    switch (col->kind) {
        case KIND_INT: {
            Number n;
            int64_t v;
            if (!scan_number(c, &n) || !n.integral || !number_to_int64(&n, &v)) return 0;
            ((int64_t *)col->data)[row] = v;
            break;
        }
        case KIND_FLOAT: {
            Number n;
            double v;
            if (!scan_number(c, &n) || !number_to_double(&n, &v)) return 0;
            ((double *)col->data)[row] = v;
            break;
        }
        case KIND_EPOCH: {
            Number n;
            double v;
            if (!scan_number(c, &n) || !number_to_double(&n, &v)) return 0;
            int64_t ms;
            if (!epoch_to_ms(v, &ms)) return 0;
            ((int64_t *)col->data)[row] = ms;
            break;
        }
        case KIND_BOOL:
            if (*c->p == 't') {
                if (!match_literal(c, "true", 4)) return 0;
                set_bit(col->data, row);
            } else if (!match_literal(c, "false", 5)) {
                return 0;
            }
            break;
        case KIND_STRING: {
            if (*c->p != '"') return 0;
            c->p++;
            size_t written;
            /* A string's decoded bytes never outnumber its encoded ones (capacity holds). */
            if (!read_string(c, col->data + col->used, &written)) return 0;
            if (col->used + written > (size_t)INT32_MAX) return 0;
            col->used += written;
            col->offsets[row + 1] = (int32_t)col->used;
            break;
        }
        default:
            return 0;
    }
    set_bit(col->valid, row);
    return 1;
}

static int find_column(Column *columns, int count, int hint, const uint8_t *key, size_t len) {
    for (int k = 0; k < count; k++) {
        int i = (hint + k) % count;
        if ((size_t)columns[i].name_len == len && memcmp(columns[i].name, key, len) == 0) return i;
    }
    return -1;
}

/* One record: a JSON object whose fields go to their columns at ``row``. */
static int read_record(Cursor *c, Column *columns, int count, Py_ssize_t row, uint8_t *seen) {
    skip_ws(c);
    if (c->p >= c->end || *c->p != '{') return 0;
    c->p++;
    memset(seen, 0, (size_t)count);
    skip_ws(c);
    int hint = 0;
    if (c->p < c->end && *c->p == '}') {
        c->p++;
    } else {
        for (;;) {
            if (c->p >= c->end || *c->p != '"') return 0;
            const uint8_t *key = ++c->p;
            while (c->p < c->end && *c->p != '"' && *c->p != '\\' && *c->p >= 0x20 && *c->p < 0x80)
                c->p++;
            if (c->p >= c->end || *c->p != '"') {
                /* An escaped or non-ASCII key: leave the record to pyarrow unless no column
                 * could match it (validated and skipped like any unknown field). */
                c->p = key;
                if (!read_string(c, NULL, NULL)) return 0;
                for (const uint8_t *q = key; q < c->p - 1; q++)
                    if (*q == '\\') return 0;
            } else {
                c->p++;
            }
            size_t key_len = (size_t)(c->p - 1 - key);
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':') return 0;
            c->p++;
            skip_ws(c);
            int i = find_column(columns, count, hint, key, key_len);
            if (i >= 0) {
                if (seen[i]) return 0; /* pyarrow refuses a field given twice */
                seen[i] = 1;
                if (!read_field(c, &columns[i], row)) return 0;
                hint = i + 1 < count ? i + 1 : 0;
            } else if (!skip_value(c, 1)) {
                return 0;
            }
            skip_ws(c);
            if (c->p >= c->end) return 0;
            if (*c->p == ',') {
                c->p++;
                skip_ws(c);
                continue;
            }
            if (*c->p == '}') {
                c->p++;
                break;
            }
            return 0;
        }
    }
    skip_ws(c);
    if (c->p != c->end) return 0; /* more than one document in the value */
    for (int i = 0; i < count; i++) {
        if (!seen[i]) {
            columns[i].nulls++;
            if (columns[i].kind == KIND_STRING) columns[i].offsets[row + 1] = (int32_t)columns[i].used;
        }
    }
    return 1;
}

static PyObject *new_zeroed_bytes(Py_ssize_t size) {
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, size);
    if (bytes != NULL) memset(PyBytes_AS_STRING(bytes), 0, (size_t)size);
    return bytes;
}

/*
 * parse(count, offsets, data, columns) -> list | None
 *
 * ``offsets``: count + 1 int64 byte offsets of the values in ``data`` (an Arrow
 * large_binary array's buffers, the array's own offset already applied). ``columns``:
 * [(name: bytes, kind: int)], kind 0 integer, 1 float, 2 boolean, 3 string, 4 epoch
 * number (as int64 milliseconds). Returns, per
 * column, (validity bitmap bytes, data bytes, offsets bytes or None, null count), or None
 * when the batch is not for the fast path.
 */
static PyObject *jr_parse(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_ssize_t count;
    Py_buffer offsets_view, data_view;
    PyObject *spec;
    if (!PyArg_ParseTuple(args, "ny*y*O!", &count, &offsets_view, &data_view, &PyList_Type, &spec))
        return NULL;
    PyObject *result = NULL;
    Column columns[MAX_COLUMNS];
    PyObject *holders[MAX_COLUMNS][3];
    uint8_t seen[MAX_COLUMNS];
    Py_ssize_t ncols = PyList_GET_SIZE(spec);
    memset(holders, 0, sizeof(holders));
    /* count + 1 offsets must fit in the buffer: compared by division, so no product of an
     * absurd count can wrap around and pass. */
    if (ncols < 1 || ncols > MAX_COLUMNS || count < 0 ||
        count >= offsets_view.len / (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "bad arguments");
        goto done;
    }
    const int64_t *offsets = (const int64_t *)offsets_view.buf;
    const uint8_t *data = (const uint8_t *)data_view.buf;
    /* Every value must lie inside the data, in order: the string columns' capacity (the
     * bytes between the first and last offsets) holds only then, and no read strays. */
    if (offsets[0] < 0 || offsets[count] > data_view.len) {
        PyErr_SetString(PyExc_ValueError, "offsets outside the data");
        goto done;
    }
    for (Py_ssize_t row = 0; row < count; row++) {
        if (offsets[row + 1] < offsets[row]) {
            PyErr_SetString(PyExc_ValueError, "offsets out of order");
            goto done;
        }
    }
    size_t total = (size_t)(offsets[count] - offsets[0]);
    Py_ssize_t bitmap = (count + 7) / 8;
    for (Py_ssize_t i = 0; i < ncols; i++) {
        PyObject *item = PyList_GET_ITEM(spec, i);
        const char *name;
        Py_ssize_t name_len;
        int kind;
        if (!PyArg_ParseTuple(item, "y#i", &name, &name_len, &kind)) goto done;
        Column *col = &columns[i];
        memset(col, 0, sizeof(*col));
        col->name = name;
        col->name_len = name_len;
        col->kind = kind;
        holders[i][0] = new_zeroed_bytes(bitmap);
        if (holders[i][0] == NULL) goto done;
        col->valid = (uint8_t *)PyBytes_AS_STRING(holders[i][0]);
        Py_ssize_t data_size;
        switch (kind) {
            case KIND_INT:
            case KIND_FLOAT:
            case KIND_EPOCH: data_size = count * 8; break;
            case KIND_BOOL: data_size = bitmap; break;
            case KIND_STRING: data_size = (Py_ssize_t)total; break;
            default: PyErr_SetString(PyExc_ValueError, "unknown column kind"); goto done;
        }
        holders[i][1] = kind == KIND_BOOL ? new_zeroed_bytes(data_size)
                                          : PyBytes_FromStringAndSize(NULL, data_size);
        if (holders[i][1] == NULL) goto done;
        col->data = (uint8_t *)PyBytes_AS_STRING(holders[i][1]);
        col->capacity = (size_t)data_size;
        if (kind == KIND_STRING) {
            holders[i][2] = new_zeroed_bytes((count + 1) * 4);
            if (holders[i][2] == NULL) goto done;
            col->offsets = (int32_t *)PyBytes_AS_STRING(holders[i][2]);
        } else if (kind != KIND_BOOL) {
            memset(col->data, 0, (size_t)data_size); /* null slots read as 0 */
        }
    }

    int accepted = 1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t row = 0; row < count; row++) {
        Cursor c = {data + offsets[row], data + offsets[row + 1]};
        if (!read_record(&c, columns, (int)ncols, row, seen)) {
            accepted = 0;
            break;
        }
    }
    Py_END_ALLOW_THREADS
    if (!accepted) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = PyList_New(ncols);
    if (result == NULL) goto done;
    for (Py_ssize_t i = 0; i < ncols; i++) {
        Column *col = &columns[i];
        if (col->kind == KIND_STRING && _PyBytes_Resize(&holders[i][1], (Py_ssize_t)col->used) < 0) {
            Py_CLEAR(result);
            goto done;
        }
        PyObject *entry = Py_BuildValue("(OOOn)", col->nulls ? holders[i][0] : Py_None,
                                        holders[i][1], holders[i][2] ? holders[i][2] : Py_None,
                                        col->nulls);
        if (entry == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, entry);
    }

done:
    for (Py_ssize_t i = 0; i < MAX_COLUMNS && i < ncols; i++)
        for (int j = 0; j < 3; j++) Py_XDECREF(holders[i][j]);
    PyBuffer_Release(&offsets_view);
    PyBuffer_Release(&data_view);
    return result;
}

static PyMethodDef module_methods[] = {
    {"parse", jr_parse, METH_VARARGS,
     "parse(count, offsets, data, columns) -> [(validity, data, offsets, nulls)] | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "connectors.decoders._jsonrows",
    .m_doc = "Flat JSON objects straight into Arrow column buffers (a fast path that declines "
             "anything it is not sure of).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__jsonrows(void) { return PyModule_Create(&module); }
