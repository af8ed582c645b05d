/*
 * codec: the compact binary encoding of entry-method arguments.
 *
 * The sender encodes in two phases: cpy_enc_add() walks the values and
 * builds a small inline stream (tags and scalars) plus a list of
 * out-of-band buffers it only references; cpy_enc_size() then tells how
 * many bytes the encoding takes, so the caller can allocate the message,
 * and cpy_enc_write() writes the encoding into it, copying each big buffer
 * once, straight from the object's memory. The receiver decodes with
 * cpy_dec_value(), either copying big buffers or handing out zero-copy
 * views onto the message memory.
 *
 * Layout written by cpy_enc_write at dst (64-byte aligned):
 *
 *   [inline stream: one self-delimiting record per added value]
 *   [zero padding to 64][buffer 0][zero padding to 64][buffer 1]...
 *
 * A record is a tag byte and its data, little-endian. Out-of-band buffers
 * are referenced from the stream by their length and by their offset
 * counted from the offset field itself, so an encoding can be decoded
 * wherever it lies in a message without knowing where it starts. Raw
 * buffers (numpy data, array.array, memoryview) are copied in the
 * sender's native byte order: every PE of a job runs on one architecture.
 *
 * What travels how:
 *  - exact None, bool, int, float, complex, str, bytes, bytearray, tuple,
 *    list, dict: own tags, no Python-level call (ints beyond 64 bits go
 *    through int.to_bytes/from_bytes);
 *  - exact numpy.ndarray of kinds b i u f c S U: dtype string, shape and
 *    the data as one raw buffer (strided arrays are gathered by the single
 *    copy into the message); numpy is never imported unless such an array
 *    is decoded;
 *  - exact array.array and memoryview (with a native single-character
 *    format): typecode/format, shape and the raw data;
 *  - everything else, subclasses of the types above included: pickle, at
 *    the protocol of charm.options.pickle_protocol (5 by default, the
 *    highest); at protocol 5 with a buffer_callback, so contiguous buffers
 *    found inside (numpy arrays, PickleBuffer) of at least CPY_OOB_MIN
 *    bytes travel out of band, never inside the pickle.
 *  Data of at least CPY_OOB_MIN bytes goes out of band; smaller data is
 *  inline in the stream.
 *
 * Containers nested deeper than CPY_ENC_MAXDEPTH (self-referencing ones
 * among them) make the whole value given to cpy_enc_add go through pickle,
 * which keeps cycles and shared references. Values encoded by the fast
 * paths do not keep identity: a list holding the same object twice decodes
 * into a list holding two equal objects.
 *
 * All functions need the GIL.
 */
#ifndef CHARMPY_CODEC_H
#define CHARMPY_CODEC_H

#include "cpy.h"

/* Data of at least this many bytes is written out of band (64-byte
 * aligned, copied once); smaller data is inline in the stream. */
#define CPY_OOB_MIN (64 * 1024)

/* Containers nested deeper than this go through pickle (see above). */
#define CPY_ENC_MAXDEPTH 64

/* Bytes of inline stream kept inside the cpy_enc before it allocates. */
#define CPY_ENC_SMALL 256

struct cpy_enc_oob; /* one out-of-band buffer: private to codec.c */

/* An encoder. Lives on the caller's stack; must not be copied or moved
 * while in use (buf may point into small). */
typedef struct cpy_enc {
    cpy_state *st; /* borrowed */
    char *buf;     /* the inline stream: small or PyMem memory */
    size_t len, cap;
    struct cpy_enc_oob **oob; /* out-of-band buffers in stream order, each
                                 holding a buffer view (a strong reference
                                 to the exporting object) */
    size_t noob, capoob;
    int depth; /* container nesting of the value being added */
    char small[CPY_ENC_SMALL];
} cpy_enc;

void cpy_enc_init(cpy_enc *e, cpy_state *st);

/* Append one value (borrowed). Returns 0, or -1 with an exception:
 * TypeError "cannot serialize object of type X: <reason>" when a value
 * inside cannot be serialized, MemoryError, or RuntimeError when a
 * container changed size while it was encoded. After an error the encoder
 * is good only for cpy_enc_release. Objects whose buffers go out of band
 * are referenced (and, for bytearray and the like, locked against resizing)
 * until cpy_enc_release. */
int cpy_enc_add(cpy_enc *e, PyObject *obj);

/* The number of bytes cpy_enc_write writes. */
size_t cpy_enc_size(const cpy_enc *e);

/* Write the encoding of every value added, in order, into dst, which has
 * cpy_enc_size(e) bytes and should be 64-byte aligned (then every
 * out-of-band buffer is 64-byte aligned in memory; decoding works at any
 * alignment). Cannot fail. The encoder stays valid: it may be written again
 * (e.g. once per destination) before it is released. */
void cpy_enc_write(const cpy_enc *e, char *dst);

/* Sending the out-of-band buffers from where they lie (cp_send_segs, whose
 * layout is the one above: each buffer at the next multiple of 64 bytes):
 * cpy_enc_write_inline writes only the inline stream, cpy_enc_inline_size
 * bytes, with the buffers' offsets as cpy_enc_write gives them.
 * cpy_enc_contiguous_oob returns the number of out-of-band buffers, or -1
 * when one of them is not contiguous (it must be gathered by a copy).
 * cpy_enc_take_oob moves the buffers' views into views[] (that many
 * entries): the caller releases them with PyBuffer_Release, and the
 * encoder holds none after it, so call it after cpy_enc_write_inline. */
void cpy_enc_write_inline(const cpy_enc *e, char *dst);
size_t cpy_enc_inline_size(const cpy_enc *e);
Py_ssize_t cpy_enc_contiguous_oob(const cpy_enc *e);
void cpy_enc_take_oob(cpy_enc *e, Py_buffer *views);

/* Release the references, views and memory the encoder holds. Safe after
 * an error, and more than once. */
void cpy_enc_release(cpy_enc *e);

/* Decode one value starting at *p and advance *p past its inline record.
 * `end` is the end of the whole encoding (dst + cpy_enc_size: out-of-band
 * data lies after the inline stream); nothing at or past it is read.
 *
 * `owner` (borrowed) is NULL, or an object exporting the buffer protocol
 * over memory that contains [*p, end) and stays valid while owner lives
 * (e.g. a message wrapper). Without owner, out-of-band data is copied into
 * new objects. With owner, out-of-band numpy arrays, memoryviews and the
 * buffers given to pickle are zero-copy views (slices of a memoryview of
 * owner) that keep owner alive; bytes, bytearray, str and array.array own
 * their memory and are always copies.
 *
 * Returns a new reference, or NULL with an exception: ValueError starting
 * with "corrupt message" on malformed input, or what unpickling raised
 * (e.g. AttributeError for a class missing on this side). */
PyObject *cpy_dec_value(cpy_state *st, const char **p, const char *end,
                        PyObject *owner);

/* encode / decode / decode_zerocopy for Python (and the tests), for the
 * module's method table (PyModule_AddFunctions). */
extern PyMethodDef cpy_codec_methods[];

#endif /* CHARMPY_CODEC_H */
