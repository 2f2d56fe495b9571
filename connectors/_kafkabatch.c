/*
 * connectors._kafkabatch: a batch of Kafka messages as columns, with no Python object per message.
 *
 * Why this exists: confluent-kafka's Consumer.consume() builds a Python Message object per
 * record, and reading its fields costs a method call each, all under the GIL. At ~55-byte
 * records that is most of the consumer thread's CPU and it competes for the GIL with the
 * applier. This module reads the same librdkafka queue and writes a whole batch straight
 * into a few flat buffers laid out as Arrow columns (values and keys as offsets + data,
 * partitions, offsets and timestamps as fixed-width arrays), with the GIL released while it
 * waits and copies.
 *
 * It is a data path only. The confluent-kafka Consumer stays the control plane: it is
 * created, configured (every librdkafka property, SASL/SSL included), assigned, asked for
 * watermarks and offsets, and it serves librdkafka's callbacks (statistics, errors, logs) when
 * the owner calls its poll(). What this module adds is a queue of its own that the
 * partitions' fetch queues are forwarded to (rd_kafka_queue_forward), so messages arrive here
 * and events stay on the consumer's queue, served with confluent-kafka's own call state.
 *
 * It uses the librdkafka that confluent-kafka's wheel has already loaded (looked up by path with
 * RTLD_NOLOAD, never a second copy), and declares the few stable public librdkafka functions
 * and the public rd_kafka_message_t layout it needs, so it builds with a C compiler and the
 * Python headers alone.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

/* ---- the public librdkafka API this module uses (rdkafka.h, stable since 1.x) ---------- */

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;
typedef struct rd_kafka_queue_s rd_kafka_queue_t;
typedef struct rd_kafka_headers_s rd_kafka_headers_t;
typedef int rd_kafka_resp_err_t;
typedef int rd_kafka_timestamp_type_t;

typedef struct rd_kafka_message_s {
    rd_kafka_resp_err_t err;
    rd_kafka_topic_t *rkt;
    int32_t partition;
    void *payload;
    size_t len;
    void *key;
    size_t key_len;
    int64_t offset;
    void *_private;
} rd_kafka_message_t;

static struct {
    const char *(*name)(const rd_kafka_t *);
    rd_kafka_queue_t *(*queue_new)(rd_kafka_t *);
    void (*queue_destroy)(rd_kafka_queue_t *);
    rd_kafka_queue_t *(*queue_get_partition)(rd_kafka_t *, const char *, int32_t);
    void (*queue_forward)(rd_kafka_queue_t *, rd_kafka_queue_t *);
    size_t (*queue_length)(rd_kafka_queue_t *);
    ssize_t (*consume_batch_queue)(rd_kafka_queue_t *, int, rd_kafka_message_t **, size_t);
    void (*message_destroy)(rd_kafka_message_t *);
    int64_t (*message_timestamp)(const rd_kafka_message_t *, rd_kafka_timestamp_type_t *);
    const char *(*topic_name)(const rd_kafka_topic_t *);
    const char *(*err2str)(rd_kafka_resp_err_t);
    rd_kafka_resp_err_t (*message_headers)(const rd_kafka_message_t *, rd_kafka_headers_t **);
    size_t (*header_cnt)(const rd_kafka_headers_t *);
    rd_kafka_resp_err_t (*header_get_all)(const rd_kafka_headers_t *, size_t, const char **,
                                          const void **, size_t *);
} rk;
static void *rk_library = NULL;

static int load_symbol(void **slot, const char *symbol) {
    *slot = dlsym(rk_library, symbol);
    if (*slot == NULL) {
        PyErr_Format(PyExc_ImportError, "librdkafka has no symbol %s", symbol);
        return -1;
    }
    return 0;
}

/* bind(path): use the librdkafka already loaded from ``path``. */
static PyObject *kb_bind(PyObject *Py_UNUSED(module), PyObject *arg) {
    const char *path = PyUnicode_AsUTF8(arg);
    if (path == NULL) return NULL;
    if (rk_library != NULL) Py_RETURN_NONE;
    void *library = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (library == NULL) {
        PyErr_Format(PyExc_ImportError, "librdkafka is not loaded from %s: %s", path, dlerror());
        return NULL;
    }
    rk_library = library;
    if (load_symbol((void **)&rk.name, "rd_kafka_name") ||
        load_symbol((void **)&rk.queue_new, "rd_kafka_queue_new") ||
        load_symbol((void **)&rk.queue_destroy, "rd_kafka_queue_destroy") ||
        load_symbol((void **)&rk.queue_get_partition, "rd_kafka_queue_get_partition") ||
        load_symbol((void **)&rk.queue_forward, "rd_kafka_queue_forward") ||
        load_symbol((void **)&rk.queue_length, "rd_kafka_queue_length") ||
        load_symbol((void **)&rk.consume_batch_queue, "rd_kafka_consume_batch_queue") ||
        load_symbol((void **)&rk.message_destroy, "rd_kafka_message_destroy") ||
        load_symbol((void **)&rk.message_timestamp, "rd_kafka_message_timestamp") ||
        load_symbol((void **)&rk.topic_name, "rd_kafka_topic_name") ||
        load_symbol((void **)&rk.err2str, "rd_kafka_err2str") ||
        load_symbol((void **)&rk.message_headers, "rd_kafka_message_headers") ||
        load_symbol((void **)&rk.header_cnt, "rd_kafka_header_cnt") ||
        load_symbol((void **)&rk.header_get_all, "rd_kafka_header_get_all")) {
        rk_library = NULL;
        dlclose(library);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- Reader ---------------------------------------------------------------------------- */

#define MAX_TOPICS 256

typedef struct {
    PyObject_HEAD
    PyObject *consumer;            /* keeps the rd_kafka_t alive while this reader exists */
    rd_kafka_t *handle;
    rd_kafka_queue_t *queue;       /* the partitions' fetch queues are forwarded here */
    rd_kafka_message_t **messages; /* scratch for one batch */
    size_t capacity;
    const rd_kafka_topic_t *topic_handles[MAX_TOPICS];
    PyObject *topic_names;         /* list of str, index = topic id */
} Reader;

/* confluent-kafka's Consumer object starts with PyObject_HEAD and then its rd_kafka_t pointer
 * (struct Handle in its confluent_kafka.h); the owner checks the pair with rd_kafka_name. */
typedef struct {
    PyObject_HEAD
    rd_kafka_t *rk;
} ConsumerHandle;

static int Reader_init(Reader *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"consumer", "client_id", "capacity", NULL};
    PyObject *consumer;
    const char *client_id;
    Py_ssize_t capacity = 10000;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Os|n", keywords, &consumer, &client_id,
                                     &capacity))
        return -1;
    if (rk_library == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind() the loaded librdkafka first");
        return -1;
    }
    if (self->consumer != NULL) { /* a second __init__ would leak the first queue */
        PyErr_SetString(PyExc_RuntimeError, "a Reader is initialised once");
        return -1;
    }
    if (strcmp(Py_TYPE(consumer)->tp_name, "cimpl.Consumer") != 0) {
        PyErr_Format(PyExc_TypeError, "a confluent_kafka Consumer is needed, not %s",
                     Py_TYPE(consumer)->tp_name);
        return -1;
    }
    rd_kafka_t *handle = ((ConsumerHandle *)consumer)->rk;
    if (handle == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the consumer is closed");
        return -1;
    }
    /* rd_kafka_name() is "<client.id>#consumer-<n>": proves the pointer is the handle. */
    const char *name = rk.name(handle);
    size_t id_len = strlen(client_id);
    if (name == NULL || strncmp(name, client_id, id_len) != 0 || name[id_len] != '#') {
        PyErr_SetString(PyExc_RuntimeError,
                        "this confluent_kafka build does not lay out its Consumer as expected");
        return -1;
    }
    if (capacity < 1) capacity = 1;
    self->messages = PyMem_Calloc((size_t)capacity, sizeof(rd_kafka_message_t *));
    if (self->messages == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->capacity = (size_t)capacity;
    self->topic_names = PyList_New(0);
    if (self->topic_names == NULL) return -1;
    self->queue = rk.queue_new(handle);
    if (self->queue == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "librdkafka could not create a queue");
        return -1;
    }
    Py_INCREF(consumer);
    self->consumer = consumer;
    self->handle = handle;
    return 0;
}

static void Reader_release(Reader *self) {
    if (self->queue != NULL) {
        rk.queue_destroy(self->queue);
        self->queue = NULL;
    }
}

static void Reader_dealloc(Reader *self) {
    Reader_release(self);
    PyMem_Free(self->messages);
    Py_CLEAR(self->topic_names);
    Py_CLEAR(self->consumer);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Reader_usable(Reader *self) {
    if (self->queue == NULL || self->consumer == NULL ||
        ((ConsumerHandle *)self->consumer)->rk != self->handle) {
        PyErr_SetString(PyExc_RuntimeError, "the reader or its consumer is closed");
        return 0;
    }
    return 1;
}

/* route(topic, partition): the partition's messages come to this reader from now on. */
static PyObject *Reader_route(Reader *self, PyObject *args) {
    const char *topic;
    int partition;
    if (!PyArg_ParseTuple(args, "si", &topic, &partition)) return NULL;
    if (!Reader_usable(self)) return NULL;
    rd_kafka_queue_t *fetch = rk.queue_get_partition(self->handle, topic, (int32_t)partition);
    if (fetch == NULL) {
        PyErr_Format(PyExc_RuntimeError, "no queue for %s[%d]", topic, partition);
        return NULL;
    }
    rk.queue_forward(fetch, self->queue);
    rk.queue_destroy(fetch);
    Py_RETURN_NONE;
}

/* close(): stop routing (partition queues back to the consumer) and drop the queue. */
static PyObject *Reader_close(Reader *self, PyObject *Py_UNUSED(ignored)) {
    Reader_release(self);
    Py_RETURN_NONE;
}

static PyObject *Reader_queued(Reader *self, PyObject *Py_UNUSED(ignored)) {
    if (!Reader_usable(self)) return NULL;
    return PyLong_FromSize_t(rk.queue_length(self->queue));
}

static int topic_id(Reader *self, const rd_kafka_topic_t *rkt) {
    Py_ssize_t known = PyList_GET_SIZE(self->topic_names);
    for (Py_ssize_t i = 0; i < known; i++)
        if (self->topic_handles[i] == rkt) return (int)i;
    if (known >= MAX_TOPICS) {
        PyErr_SetString(PyExc_RuntimeError, "too many topics for one reader");
        return -1;
    }
    PyObject *name = PyUnicode_FromString(rk.topic_name(rkt));
    if (name == NULL) return -1;
    int failed = PyList_Append(self->topic_names, name);
    Py_DECREF(name);
    if (failed) return -1;
    self->topic_handles[known] = rkt;
    return (int)known;
}

static PyObject *message_headers(const rd_kafka_message_t *m) {
    rd_kafka_headers_t *headers = NULL;
    if (rk.message_headers(m, &headers) != 0 || headers == NULL) Py_RETURN_NONE;
    size_t count = rk.header_cnt(headers);
    PyObject *list = PyList_New((Py_ssize_t)count);
    if (list == NULL) return NULL;
    for (size_t i = 0; i < count; i++) {
        const char *name;
        const void *value;
        size_t size;
        if (rk.header_get_all(headers, i, &name, &value, &size) != 0) {
            Py_DECREF(list);
            PyErr_SetString(PyExc_RuntimeError, "a header could not be read");
            return NULL;
        }
        /* Header names are whatever bytes the producer sent: one that is not UTF-8 must not
         * fail the batch (the consumer would restart at the same offset forever), so invalid
         * bytes become U+FFFD, as in the table's other text. */
        PyObject *key = PyUnicode_DecodeUTF8(name, (Py_ssize_t)strlen(name), "replace");
        if (key == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyObject *item;
        if (value == NULL)
            item = PyTuple_Pack(2, key, Py_None);
        else
            item = Py_BuildValue("(Oy#)", key, (const char *)value, (Py_ssize_t)size);
        Py_DECREF(key);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
}

static PyObject *new_bytes(Py_ssize_t size, char **data) {
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, size);
    if (bytes != NULL) *data = PyBytes_AS_STRING(bytes);
    return bytes;
}

/*
 * read(max_messages, timeout_ms, linger_ms, keys, timestamps, headers) -> dict | None
 *
 * Takes what is queued, up to max_messages; if nothing is, waits up to timeout_ms for one
 * message and then up to linger_ms for more. Returns None if there were none. Otherwise a dict of columns over the
 * data messages, in queue order (Kafka order per partition):
 *   count, values, value_offsets (int64, count+1), value_valid (uint8 per message, or None
 *   when no value is null), longest_value, partitions (int32), offsets (int64), topic_ids
 *   (int32, or None when every message is of the first topic seen), topics (list of str);
 *   when asked: keys, key_offsets, key_valid, longest_key; timestamps (int64, -1 when the
 *   message has none); headers (list per message of [(name, bytes|None)] or None).
 *   events: [(topic, partition, offset, error code, reason)] for the messages that carry an
 *   error (partition EOF included) instead of data.
 */
static PyObject *Reader_read(Reader *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"max_messages", "timeout_ms", "linger_ms", "keys", "timestamps",
                               "headers", NULL};
    Py_ssize_t wanted;
    int timeout_ms, linger_ms = 0, want_keys = 1, want_timestamps = 1, want_headers = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ni|ippp", keywords, &wanted, &timeout_ms,
                                     &linger_ms, &want_keys, &want_timestamps, &want_headers))
        return NULL;
    if (!Reader_usable(self)) return NULL;
    if (wanted < 1) wanted = 1;
    if ((size_t)wanted > self->capacity) wanted = (Py_ssize_t)self->capacity;

    rd_kafka_message_t **messages = self->messages;
    ssize_t taken;
    size_t data_count = 0, value_bytes = 0, key_bytes = 0, longest_value = 0, longest_key = 0;
    int null_values = 0, null_keys = 0;
    Py_BEGIN_ALLOW_THREADS
    /* What is queued already, up to max_messages; else wait for one message, then linger for
     * the rest of a burst: large batches under a backlog, low latency when live. */
    taken = rk.consume_batch_queue(self->queue, 0, messages, (size_t)wanted);
    if (taken == 0 && timeout_ms != 0) {
        taken = rk.consume_batch_queue(self->queue, timeout_ms, messages, 1);
        if (taken == 1 && linger_ms > 0 && wanted > 1) {
            ssize_t more =
                rk.consume_batch_queue(self->queue, linger_ms, messages + 1, (size_t)wanted - 1);
            if (more > 0) taken += more;
        }
    }
    for (ssize_t i = 0; i < taken; i++) {
        const rd_kafka_message_t *m = messages[i];
        if (m->err) continue;
        data_count++;
        value_bytes += m->len;
        if (m->len > longest_value) longest_value = m->len;
        if (m->payload == NULL) null_values = 1;
        key_bytes += m->key_len;
        if (m->key_len > longest_key) longest_key = m->key_len;
        if (m->key == NULL) null_keys = 1;
    }
    Py_END_ALLOW_THREADS
    if (taken <= 0) {
        if (taken < 0) return PyErr_Format(PyExc_RuntimeError, "consume failed on a closed queue");
        Py_RETURN_NONE;
    }

    PyObject *result = PyDict_New();
    PyObject *events = PyList_New(0);
    PyObject *headers = want_headers ? PyList_New((Py_ssize_t)data_count) : NULL;
    Py_ssize_t n = (Py_ssize_t)data_count;
    char *values = NULL, *value_offsets = NULL, *value_valid = NULL, *partitions = NULL;
    char *offsets = NULL, *topic_ids = NULL;
    char *keys = NULL, *key_offsets = NULL, *key_valid = NULL, *timestamps = NULL;
    PyObject *values_obj = new_bytes((Py_ssize_t)value_bytes, &values);
    PyObject *value_offsets_obj = new_bytes((n + 1) * 8, &value_offsets);
    PyObject *value_valid_obj = null_values ? new_bytes(n, &value_valid) : Py_NewRef(Py_None);
    PyObject *partitions_obj = new_bytes(n * 4, &partitions);
    PyObject *offsets_obj = new_bytes(n * 8, &offsets);
    PyObject *topic_ids_obj = new_bytes(n * 4, &topic_ids);
    PyObject *keys_obj = want_keys ? new_bytes((Py_ssize_t)key_bytes, &keys) : Py_NewRef(Py_None);
    PyObject *key_offsets_obj =
        want_keys ? new_bytes((n + 1) * 8, &key_offsets) : Py_NewRef(Py_None);
    PyObject *key_valid_obj =
        want_keys && null_keys ? new_bytes(n, &key_valid) : Py_NewRef(Py_None);
    PyObject *timestamps_obj =
        want_timestamps ? new_bytes(n * 8, &timestamps) : Py_NewRef(Py_None);
    int failed = result == NULL || events == NULL || (want_headers && headers == NULL) ||
                 values_obj == NULL || value_offsets_obj == NULL || value_valid_obj == NULL ||
                 partitions_obj == NULL || offsets_obj == NULL || topic_ids_obj == NULL ||
                 keys_obj == NULL || key_offsets_obj == NULL || key_valid_obj == NULL ||
                 timestamps_obj == NULL;

    /* Topic ids, headers and events need the GIL (they create Python objects); a batch of
     * one topic without headers or events costs one pass here over pointers. */
    int mixed_topics = 0;
    const rd_kafka_topic_t *last_rkt = NULL;
    int last_id = 0;
    Py_ssize_t row = 0;
    for (ssize_t i = 0; !failed && i < taken; i++) {
        const rd_kafka_message_t *m = messages[i];
        if (m->rkt != last_rkt) {
            last_id = topic_id(self, m->rkt);
            last_rkt = m->rkt;
            if (last_id < 0) {
                failed = 1;
                break;
            }
        }
        if (m->err) {
            const char *reason = m->payload != NULL ? (const char *)m->payload : rk.err2str(m->err);
            Py_ssize_t reason_len =
                m->payload != NULL ? (Py_ssize_t)strnlen(reason, m->len) : (Py_ssize_t)strlen(reason);
            /* The reason is librdkafka's text or a broker's: never trusted to be UTF-8. */
            PyObject *text = PyUnicode_DecodeUTF8(reason, reason_len, "replace");
            PyObject *event =
                text == NULL ? NULL
                             : Py_BuildValue("(OiLiO)", PyList_GET_ITEM(self->topic_names, last_id),
                                             (int)m->partition, (long long)m->offset, (int)m->err,
                                             text);
            Py_XDECREF(text);
            if (event == NULL || PyList_Append(events, event)) failed = 1;
            Py_XDECREF(event);
            continue;
        }
        if (last_id != 0) mixed_topics = 1;
        ((int32_t *)topic_ids)[row] = last_id;
        if (want_headers) {
            PyObject *item = message_headers(m);
            if (item == NULL) {
                failed = 1;
                break;
            }
            PyList_SET_ITEM(headers, row, item);
        }
        row++;
    }
    if (want_headers && !failed) {
        for (Py_ssize_t i = row; i < n; i++) PyList_SET_ITEM(headers, i, Py_NewRef(Py_None));
    }

    if (!failed) {
        Py_BEGIN_ALLOW_THREADS
        int64_t value_at = 0, key_at = 0;
        Py_ssize_t r = 0;
        for (ssize_t i = 0; i < taken; i++) {
            rd_kafka_message_t *m = messages[i];
            if (!m->err) {
                ((int64_t *)value_offsets)[r] = value_at;
                if (m->len) memcpy(values + value_at, m->payload, m->len);
                value_at += (int64_t)m->len;
                if (value_valid) value_valid[r] = m->payload != NULL;
                if (want_keys) {
                    ((int64_t *)key_offsets)[r] = key_at;
                    if (m->key_len) memcpy(keys + key_at, m->key, m->key_len);
                    key_at += (int64_t)m->key_len;
                    if (key_valid) key_valid[r] = m->key != NULL;
                }
                ((int32_t *)partitions)[r] = m->partition;
                ((int64_t *)offsets)[r] = m->offset;
                if (want_timestamps) ((int64_t *)timestamps)[r] = rk.message_timestamp(m, NULL);
                r++;
            }
            rk.message_destroy(m);
            messages[i] = NULL;
        }
        ((int64_t *)value_offsets)[r] = value_at;
        if (want_keys) ((int64_t *)key_offsets)[r] = key_at;
        Py_END_ALLOW_THREADS
    } else {
        for (ssize_t i = 0; i < taken; i++) {
            if (messages[i] != NULL) rk.message_destroy(messages[i]);
            messages[i] = NULL;
        }
    }

    PyObject *topics = failed ? NULL : PyList_GetSlice(self->topic_names, 0, PY_SSIZE_T_MAX);
    if (!failed && topics != NULL) {
        PyObject *count = PyLong_FromSsize_t(n);
        PyObject *longest_v = PyLong_FromSize_t(longest_value);
        PyObject *longest_k = PyLong_FromSize_t(longest_key);
        failed = count == NULL || longest_v == NULL || longest_k == NULL ||
                 PyDict_SetItemString(result, "count", count) ||
                 PyDict_SetItemString(result, "values", values_obj) ||
                 PyDict_SetItemString(result, "value_offsets", value_offsets_obj) ||
                 PyDict_SetItemString(result, "value_valid", value_valid_obj) ||
                 PyDict_SetItemString(result, "longest_value", longest_v) ||
                 PyDict_SetItemString(result, "partitions", partitions_obj) ||
                 PyDict_SetItemString(result, "offsets", offsets_obj) ||
                 PyDict_SetItemString(result, "topic_ids", mixed_topics ? topic_ids_obj : Py_None) ||
                 PyDict_SetItemString(result, "topics", topics) ||
                 PyDict_SetItemString(result, "keys", keys_obj) ||
                 PyDict_SetItemString(result, "key_offsets", key_offsets_obj) ||
                 PyDict_SetItemString(result, "key_valid", key_valid_obj) ||
                 PyDict_SetItemString(result, "longest_key", longest_k) ||
                 PyDict_SetItemString(result, "timestamps", timestamps_obj) ||
                 PyDict_SetItemString(result, "headers", headers ? headers : Py_None) ||
                 PyDict_SetItemString(result, "events", events);
        Py_XDECREF(count);
        Py_XDECREF(longest_v);
        Py_XDECREF(longest_k);
    } else {
        failed = 1;
    }
    Py_XDECREF(topics);
    Py_XDECREF(values_obj);
    Py_XDECREF(value_offsets_obj);
    Py_XDECREF(value_valid_obj);
    Py_XDECREF(partitions_obj);
    Py_XDECREF(offsets_obj);
    Py_XDECREF(topic_ids_obj);
    Py_XDECREF(keys_obj);
    Py_XDECREF(key_offsets_obj);
    Py_XDECREF(key_valid_obj);
    Py_XDECREF(timestamps_obj);
    Py_XDECREF(headers);
    Py_XDECREF(events);
    if (failed) {
        Py_XDECREF(result);
        if (!PyErr_Occurred()) PyErr_NoMemory();
        return NULL;
    }
    return result;
}

static PyMethodDef Reader_methods[] = {
    {"route", (PyCFunction)Reader_route, METH_VARARGS,
     "route(topic, partition): forward the partition's fetch queue to this reader."},
    {"read", (PyCFunction)(void (*)(void))Reader_read, METH_VARARGS | METH_KEYWORDS,
     "read(max_messages, timeout_ms, linger_ms=0, keys=True, timestamps=True, headers=False)"
     " -> dict | None"},
    {"queued", (PyCFunction)Reader_queued, METH_NOARGS, "Messages waiting in the queue."},
    {"close", (PyCFunction)Reader_close, METH_NOARGS,
     "Drop the queue: call before the consumer is closed."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "connectors._kafkabatch.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Reader(consumer, client_id, capacity=10000): batches of a consumer's messages "
              "as columns.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_methods = Reader_methods,
};

static PyMethodDef module_methods[] = {
    {"bind", kb_bind, METH_O, "bind(path): use the librdkafka loaded from path."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "connectors._kafkabatch",
    .m_doc = "Kafka message batches as flat columns, read from librdkafka without a Python "
             "object per message.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__kafkabatch(void) {
    if (PyType_Ready(&ReaderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
