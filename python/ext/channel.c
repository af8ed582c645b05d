/*
 * Channels: Channel(self, remote=proxy) is a direct, ordered stream between
 * two chares; ch.send(*values) never blocks, ch.recv() (in a coroutine)
 * returns the next value sent by the other end.
 *
 * Each end has an id, unique among the ends any chare talks to (the PE
 * that made it in the high bits, a per-process random start in the low
 * ones, so that ends made after a restart do not meet old ids). An end's
 * messages are entry-method messages to the peer's element with a
 * reserved method number, so they travel as calls do: to the element
 * wherever it is (location.c), in order from one sender, by reference on
 * one PE, big buffers without pickling. Two kinds:
 *
 *   CPY_M_CHANOPEN  (fut_id: the sender's end id; fut_pe: k, the end's
 *                   ordinal among the ends the sender made towards this
 *                   peer; args: (the sender's element proxy,)): sent once,
 *                   when a chare makes its end. The k-th end a chare makes
 *                   towards a peer pairs with the k-th end the peer makes
 *                   towards it (by ordinal, not by arrival: a migrating
 *                   sender's opens may arrive out of order). When the
 *                   receiver has not made its k-th end yet, the end is
 *                   made now (unclaimed) and keeps the data that comes for
 *                   it until its Channel() claims it.
 *   CPY_M_CHAN      (fut_id: the sender's end id; fut_pe: the message's
 *                   number on that end; args: the values): data. Data may
 *                   overtake its end's open (the sender moved between the
 *                   two): it waits for the open.
 *
 * A chare's ends live in its __dict__, so they travel when it migrates or
 * is checkpointed: "_charmpy_chans" maps a peer end's id to this chare's
 * end paired with it, "_charmpy_chanq" maps a peer's element proxy to a
 * dict from ordinal to this chare's ends towards it that are not paired
 * yet (made by Channel() and waiting for the peer's open, or made by an
 * open and waiting for Channel()), "_charmpy_chank" a peer's proxy to the
 * number of ends Channel() made towards it, "_charmpy_chanearly" a peer
 * end's id to the data that came before its open. An end is pickled only
 * with its chare (migration, checkpoints: cpy_chan_moving); sent as an
 * argument, it would become a second sender of the same numbers.
 *
 * Data is numbered on each end; arrivals go into a ring indexed by number,
 * so the order holds even when a migrating sender's messages take
 * different paths. A value that completes the next one wakes the
 * coroutine waiting in recv() (or in charm.iwait()): it runs right here,
 * from the scheduler, as coro.resume() would run it; the accounting that
 * only profiling or a communication-aware balancer needs is left to
 * coro.resume() itself.
 */
#include "cpy.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    PyObject_HEAD
    uint64_t id;      /* this end's id (the peer's table keys on it) */
    PyObject *remote; /* the peer's element proxy */
    PyObject *local;  /* this end's element proxy: how the peer names it */
    uint32_t sent;    /* values sent */
    uint32_t taken;   /* values returned by recv() */
    PyObject **ring;  /* arrived, not taken: value number s at s & (cap - 1) */
    uint32_t cap;     /* a power of two, or 0 */
    uint32_t nbuf;    /* values in the ring */
    PyObject *waiter; /* the coroutine in recv(), or NULL */
    PyObject *multi;  /* the coroutine in charm.iwait(), or NULL */
    int opened;       /* this end's open went (Channel() made or claimed it) */
    int paired;       /* the peer's open arrived */
    long k;           /* its ordinal among this chare's ends towards the peer */
    uint64_t peer;    /* the peer end's id once paired (0: not yet) */
} ChannelObject;

static cpy_state *state_of(PyObject *self) { return cpy_state_of_type(Py_TYPE(self)); }

/* ---- the ring ------------------------------------------------------------- */

static int ring_put(ChannelObject *ch, uint32_t seq, PyObject *v) {
    uint32_t off = seq - ch->taken; /* wraps like the numbers */
    if (off >= (1u << 31)) {
        PyErr_Format(PyExc_RuntimeError,
                     "channel message %u arrived after message %u was received: a "
                     "message came twice",
                     (unsigned)seq, (unsigned)ch->taken);
        return -1;
    }
    if (off >= ch->cap) {
        uint32_t cap = ch->cap ? ch->cap : 8;
        while (off >= cap)
            cap *= 2;
        PyObject **r = PyMem_Calloc(cap, sizeof *r);
        if (!r) {
            PyErr_NoMemory();
            return -1;
        }
        for (uint32_t i = 0; i < ch->cap; i++) {
            uint32_t s = ch->taken + i;
            r[s & (cap - 1)] = ch->ring[s & (ch->cap - 1)];
        }
        PyMem_Free(ch->ring);
        ch->ring = r;
        ch->cap = cap;
    }
    PyObject **slot = &ch->ring[seq & (ch->cap - 1)];
    if (*slot) {
        PyErr_Format(PyExc_RuntimeError, "channel message %u came twice", (unsigned)seq);
        return -1;
    }
    *slot = Py_NewRef(v);
    ch->nbuf++;
    return 0;
}

static inline int ring_ready(const ChannelObject *ch) {
    return ch->nbuf && ch->ring[ch->taken & (ch->cap - 1)] != NULL;
}

/* The next value (new reference); the caller checked ring_ready. */
static PyObject *ring_take(ChannelObject *ch) {
    PyObject **slot = &ch->ring[ch->taken & (ch->cap - 1)];
    PyObject *v = *slot;
    *slot = NULL;
    ch->nbuf--;
    ch->taken++;
    return v;
}

/* ---- ends ----------------------------------------------------------------- */

static uint64_t new_id(cpy_state *st) {
    if (!st->chan_next) {
        uint64_t r = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid() << 16 ^
                     (uint64_t)(uintptr_t)&r;
        st->chan_next = (r & 0xffffffffffull) | 1;
    }
    uint64_t pe = (uint64_t)(cp_my_pe(st->ctx) & 0xfffff);
    return pe << 44 | (st->chan_next++ & 0xfffffffffffull);
}

static ChannelObject *new_end(cpy_state *st, PyObject *remote, PyObject *local) {
    ChannelObject *ch = PyObject_GC_New(ChannelObject, (PyTypeObject *)st->chan_type);
    if (!ch)
        return NULL;
    ch->id = 0;
    ch->remote = Py_NewRef(remote);
    ch->local = Py_XNewRef(local);
    ch->sent = ch->taken = ch->cap = ch->nbuf = 0;
    ch->ring = NULL;
    ch->waiter = ch->multi = NULL;
    ch->opened = ch->paired = 0;
    ch->k = 0;
    ch->peer = 0;
    PyObject_GC_Track(ch);
    return ch;
}

/* obj.__dict__[name], made (an empty dict) when missing; borrowed from
 * the chare's dict, or NULL with an exception. */
static PyObject *chare_table(PyObject *dict, PyObject *name) {
    PyObject *t = PyDict_GetItemWithError(dict, name);
    if (t || PyErr_Occurred())
        return t;
    t = PyDict_New();
    if (!t || PyDict_SetItem(dict, name, t) < 0) {
        Py_XDECREF(t);
        return NULL;
    }
    Py_DECREF(t);
    return t;
}

static PyObject *chare_dict(PyObject *obj) {
    PyObject *d = PyObject_GenericGetDict(obj, NULL);
    if (!d)
        return NULL;
    if (!PyDict_Check(d)) {
        Py_DECREF(d);
        PyErr_SetString(PyExc_TypeError, "a chare's __dict__ must be a dict");
        return NULL;
    }
    return d;
}

/* Send this end's open to the peer. */
static int send_open(cpy_state *st, ChannelObject *ch) {
    em_hdr h = {.method = CPY_M_CHANOPEN, .fut_id = ch->id, .fut_pe = (int32_t)ch->k};
    PyObject *args = PyTuple_Pack(1, ch->local);
    if (!args)
        return -1;
    int rc = cpy_proxy_send(st, ch->remote, &h, st->str_chan_open, args);
    Py_DECREF(args);
    if (rc == 0)
        ch->opened = 1;
    return rc;
}

/* The proxy naming `obj` (its element proxy), or `local` checked to be one. */
static PyObject *self_proxy(cpy_state *st, PyObject *obj) {
    PyObject *tp = PyObject_GetAttrString(obj, "thisProxy");
    if (!tp) {
        PyErr_Clear();
        return PyErr_Format(PyExc_TypeError,
                            "Channel(chare, remote=...): the first argument must be the chare "
                            "that owns this end (self), not %.100s",
                            Py_TYPE(obj)->tp_name);
    }
    int el = cpy_proxy_is_element(st, tp);
    if (el != 0) {
        if (el < 0) {
            Py_DECREF(tp);
            return NULL;
        }
        return tp;
    }
    PyObject *idx = PyObject_GetAttrString(obj, "thisIndex");
    PyObject *p = idx ? PyObject_GetItem(tp, idx) : NULL;
    Py_DECREF(tp);
    Py_XDECREF(idx);
    return p;
}

static PyObject *ch_new(PyTypeObject *tp, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"chare", "remote", "local", NULL};
    PyObject *obj, *remote, *local = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:Channel", kw, &obj, &remote, &local))
        return NULL;
    cpy_state *st = cpy_state_of_type(tp);
    if (cpy_need_runtime(st))
        return NULL;
    int el = cpy_proxy_is_element(st, remote);
    if (el <= 0) {
        if (el == 0)
            PyErr_Format(PyExc_TypeError,
                         "Channel(self, remote=...): remote must be the proxy of one chare "
                         "(an element proxy such as proxy[i], or a single chare's proxy), "
                         "not %R",
                         remote);
        return NULL;
    }
    PyObject *me = self_proxy(st, obj);
    if (!me)
        return NULL;
    if (local != Py_None) {
        int eq = PyObject_RichCompareBool(local, me, Py_EQ);
        if (eq <= 0) {
            if (eq == 0)
                PyErr_Format(PyExc_ValueError,
                             "Channel(self, remote, local=%R): local must be the proxy of "
                             "self (%R)",
                             local, me);
            Py_DECREF(me);
            return NULL;
        }
    }
    PyObject *dict = chare_dict(obj);
    PyObject *q = dict ? chare_table(dict, st->str_chanq) : NULL;
    PyObject *kt = q ? chare_table(dict, st->str_chank) : NULL;
    ChannelObject *ch = NULL;
    PyObject *kobj = NULL, *pend = NULL;
    if (!kt)
        goto fail;
    /* This end's ordinal towards remote: the ends made so far. */
    PyObject *made = PyDict_GetItemWithError(kt, remote);
    long k = made ? PyLong_AsLong(made) : 0;
    if ((!made && PyErr_Occurred()) || (k == -1 && PyErr_Occurred()) ||
        !(kobj = PyLong_FromLong(k)))
        goto fail;
    pend = PyDict_GetItemWithError(q, remote);
    if (!pend && PyErr_Occurred())
        goto fail;
    ch = pend ? (ChannelObject *)PyDict_GetItemWithError(pend, kobj) : NULL;
    if (ch) {
        /* The peer's k-th end came first: claim it. */
        Py_INCREF(ch);
        Py_XSETREF(ch->local, Py_NewRef(me));
    } else if (PyErr_Occurred() || !(ch = new_end(st, remote, me))) {
        goto fail;
    }
    ch->k = k;
    ch->id = new_id(st);
    if (send_open(st, ch) < 0)
        goto fail;
    /* Only now is it this chare's: a failed open leaves nothing behind. */
    PyObject *next = PyLong_FromLong(k + 1);
    int rc = next ? PyDict_SetItem(kt, remote, next) : -1;
    Py_XDECREF(next);
    if (rc < 0)
        goto fail;
    if (ch->paired) { /* claimed */
        if (PyDict_DelItem(pend, kobj) < 0 ||
            (PyDict_GET_SIZE(pend) == 0 && PyDict_DelItem(q, remote) < 0))
            goto fail;
    } else {
        if (!pend) {
            pend = PyDict_New();
            if (!pend || PyDict_SetItem(q, remote, pend) < 0) {
                Py_XDECREF(pend);
                goto fail;
            }
            Py_DECREF(pend);
        }
        if (PyDict_SetItem(pend, kobj, (PyObject *)ch) < 0)
            goto fail;
    }
    Py_DECREF(kobj);
    Py_DECREF(dict);
    Py_DECREF(me);
    return (PyObject *)ch;
fail:
    Py_XDECREF(kobj);
    Py_XDECREF((PyObject *)ch);
    Py_XDECREF(dict);
    Py_DECREF(me);
    return NULL;
}

/* ---- receiving ------------------------------------------------------------ */

/* Run coroutine g of chare obj (from the scheduler), as coro.resume does. */
static int resume(cpy_state *st, PyObject *g, PyObject *obj) {
    if (st->profiling || st->lb_comm) {
        PyObject *r = PyObject_CallOneArg(st->chan_resume, g);
        Py_XDECREF(r);
        return r ? 0 : -1;
    }
    double t0 = st->lb_on ? cp_wall_time() : 0;
    PyObject *r = PyObject_CallMethodNoArgs(g, st->str_switch);
    if (!r)
        return -1;
    Py_DECREF(r);
    if (st->lb_on && cpy_lb_add(st, obj, cp_wall_time() - t0) < 0)
        return -1;
    PyObject *dead = PyObject_GetAttr(g, st->str_dead);
    if (!dead)
        return -1;
    int ended = dead == Py_True;
    Py_DECREF(dead);
    if (ended || st->migrating) {
        r = PyObject_CallOneArg(st->chan_after_run, g);
        if (!r)
            return -1;
        Py_DECREF(r);
    }
    return cpy_recheck_held(st, obj);
}

/* The next value of ch is here: wake the coroutine waiting for it. */
static int wake(cpy_state *st, ChannelObject *ch, PyObject *obj) {
    PyObject *g = ch->waiter ? ch->waiter : ch->multi;
    if (!g || !ring_ready(ch))
        return 0;
    /* The waiter's own reference keeps it alive while it runs. */
    if (g == ch->waiter)
        ch->waiter = NULL;
    else
        ch->multi = NULL;
    Py_INCREF(ch);
    int rc = resume(st, g, obj);
    Py_DECREF(g);
    Py_DECREF(ch);
    return rc;
}

/* Move the data that came for peer end `id` before its open into ch. */
static int take_early(cpy_state *st, PyObject *dict, PyObject *key, ChannelObject *ch) {
    PyObject *early = PyDict_GetItemWithError(dict, st->str_chanearly);
    PyObject *list = early ? PyDict_GetItemWithError(early, key) : NULL;
    if (!list)
        return PyErr_Occurred() ? -1 : 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        PyObject *item = PyList_GET_ITEM(list, i); /* (seq, value) */
        unsigned long s = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(item, 0));
        if (PyErr_Occurred() || ring_put(ch, (uint32_t)s, PyTuple_GET_ITEM(item, 1)) < 0)
            return -1;
    }
    if (PyDict_DelItem(early, key) < 0)
        return -1;
    return PyDict_GET_SIZE(early) == 0 ? PyDict_DelItem(dict, st->str_chanearly) : 0;
}

static int on_open(cpy_state *st, PyObject *obj, PyObject *dict, uint64_t id, long k,
                   PyObject *args) {
    if (PyTuple_GET_SIZE(args) != 1)
        return PyErr_SetString(PyExc_RuntimeError, "a channel's open is malformed"), -1;
    PyObject *peer = PyTuple_GET_ITEM(args, 0);
    PyObject *chans = chare_table(dict, st->str_chans);
    PyObject *q = chans ? chare_table(dict, st->str_chanq) : NULL;
    PyObject *pend = q ? PyDict_GetItemWithError(q, peer) : NULL;
    PyObject *kobj = PyLong_FromLong(k), *key = PyLong_FromUnsignedLongLong(id);
    ChannelObject *ch = NULL;
    int rc = -1;
    if (!q || !kobj || !key || (!pend && PyErr_Occurred()))
        goto done;
    if (!pend) {
        if (!(pend = PyDict_New()) || PyDict_SetItem(q, peer, pend) < 0) {
            Py_XDECREF(pend);
            goto done;
        }
        Py_DECREF(pend);
    }
    ch = (ChannelObject *)PyDict_GetItemWithError(pend, kobj);
    if (ch && ch->opened) {
        /* This chare's k-th end towards peer waited for it: paired now. */
        Py_INCREF(ch);
        if (PyDict_DelItem(pend, kobj) < 0 ||
            (PyDict_GET_SIZE(pend) == 0 && PyDict_DelItem(q, peer) < 0))
            goto done;
    } else if (ch) {
        ch = NULL;
        PyErr_Format(PyExc_RuntimeError, "channel end %ld of %R opened twice", k, peer);
        goto done;
    } else {
        /* This chare has not made its k-th end yet: made now, unclaimed. */
        if (PyErr_Occurred() || !(ch = new_end(st, peer, NULL)))
            goto done;
        ch->k = k;
        if (PyDict_SetItem(pend, kobj, (PyObject *)ch) < 0)
            goto done;
    }
    ch->paired = 1;
    ch->peer = id;
    if (PyDict_SetItem(chans, key, (PyObject *)ch) < 0 || take_early(st, dict, key, ch) < 0)
        goto done;
    rc = wake(st, ch, obj); /* data came first, and a coroutine waits for it */
done:
    Py_XDECREF(kobj);
    Py_XDECREF(key);
    Py_XDECREF(ch);
    return rc;
}

static int on_data(cpy_state *st, PyObject *obj, PyObject *dict, uint64_t id, uint32_t seq,
                   PyObject *args) {
    PyObject *chans = PyDict_GetItemWithError(dict, st->str_chans);
    PyObject *key = PyLong_FromUnsignedLongLong(id);
    ChannelObject *ch = key && chans ? (ChannelObject *)PyDict_GetItemWithError(chans, key)
                                     : NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    PyObject *v = n == 1 ? PyTuple_GET_ITEM(args, 0) : (n == 0 ? Py_None : args);
    if (!ch) {
        /* Before its end's open (the sender moved between the two): it
         * waits for the open. */
        PyObject *early = key && !PyErr_Occurred() ? chare_table(dict, st->str_chanearly) : NULL;
        PyObject *list = early ? PyDict_GetItemWithError(early, key) : NULL;
        int rc = -1;
        if (early && !list && !PyErr_Occurred()) {
            if ((list = PyList_New(0)) && PyDict_SetItem(early, key, list) < 0)
                Py_CLEAR(list);
            Py_XDECREF(list); /* the dict's now */
        }
        PyObject *item = list ? Py_BuildValue("(kO)", (unsigned long)seq, v) : NULL;
        if (item)
            rc = PyList_Append(list, item);
        Py_XDECREF(item);
        Py_XDECREF(key);
        return rc;
    }
    Py_DECREF(key);
    if (ring_put(ch, seq, v) < 0)
        return -1;
    return seq == ch->taken ? wake(st, ch, obj) : 0;
}

void cpy_chan_deliver(cpy_state *st, PyObject *obj, int method, uint64_t id, uint32_t seq,
                      PyObject *args) {
    PyObject *dict = chare_dict(obj);
    int rc = !dict ? -1
             : method == CPY_M_CHANOPEN ? on_open(st, obj, dict, id, (long)(int32_t)seq, args)
                                        : on_data(st, obj, dict, id, seq, args);
    Py_XDECREF(dict);
    if (rc < 0) {
        char where[256];
        snprintf(where, sizeof where, "a channel of %s on PE %d", Py_TYPE(obj)->tp_name,
                 cp_my_pe(st->ctx));
        cpy_report_error(st, where);
    }
}

/* ---- methods ---------------------------------------------------------------- */

static PyObject *ch_send(ChannelObject *self, PyObject *args) {
    cpy_state *st = state_of((PyObject *)self);
    if (cpy_need_runtime(st))
        return NULL;
    if (!self->opened)
        return PyErr_Format(PyExc_RuntimeError, "this channel end was not made by Channel()");
    em_hdr h = {.method = CPY_M_CHAN, .fut_id = self->id, .fut_pe = (int32_t)self->sent};
    if (cpy_proxy_send(st, self->remote, &h, st->str_chan_send, args) < 0)
        return NULL;
    self->sent++;
    Py_RETURN_NONE;
}

/* recv() without leaving the coroutine. A hop of a channel ping-pong
 * would switch from the scheduler into the receiving coroutine and back
 * (two greenlet switches, most of what a hop costs above an entry-method
 * call). While nothing else waits on this PE, the coroutine polls for its
 * next value itself for up to CHAN_SPIN_SECONDS (cp_poll_for): when that
 * is the message that comes, it is dispatched from here as the scheduler
 * would, finds no waiter to switch to, and recv() returns it; anything
 * else is the scheduler's next message, and the coroutine switches out as
 * before. Only messages that need nothing of the location service (no
 * reordering after a migration) are taken this way, and only while no
 * balancer measures loads and no profile times methods (the time waited
 * would count as the chare's). */
#define CHAN_SPIN_SECONDS 5e-5

typedef struct {
    cpy_state *st;
    uint64_t peer;
} chan_want;

static int want_data(const cp_msg *msg, void *arg) {
    const chan_want *w = arg;
    if (msg->handler != (uint32_t)w->st->h_entry || msg->tag || w->st->nmoved ||
        msg->size < sizeof(em_hdr))
        return 0;
    const em_hdr *h = cp_msg_data((cp_msg *)msg);
    return h->method == CPY_M_CHAN && h->fut_id == w->peer && !h->seq &&
           !(h->flags & (EM_ROUTE | EM_BCAST | EM_SECT | EM_BCOPY));
}

static PyObject *ch_recv(ChannelObject *self, PyObject *noargs) {
    (void)noargs;
    cpy_state *st = state_of((PyObject *)self);
    while (!ring_ready(self)) {
        if (self->waiter)
            return PyErr_Format(PyExc_RuntimeError,
                                "Channel.recv(): another coroutine already waits on this "
                                "channel (one receiver at a time)");
        PyObject *g = st->chan_getcurrent ? PyObject_CallNoArgs(st->chan_getcurrent) : NULL;
        if (!g) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_RuntimeError, "charmpy channels are not set up");
            return NULL;
        }
        int in_coro = PyObject_TypeCheck(g, (PyTypeObject *)st->chan_coro_type);
        PyObject *parent = in_coro ? PyObject_GetAttr(g, st->str_parent) : NULL;
        if (!parent) {
            Py_DECREF(g);
            if (in_coro)
                return NULL;
            return PyErr_Format(PyExc_RuntimeError,
                                "Channel.recv() blocks, so it can only be called in a "
                                "coroutine: decorate the entry method with @coro");
        }
        /* Not while loads or entry times are measured, nor traced: they
         * would count the wait as work. */
        if (self->peer && st->ctx && !st->lb_on && !st->profiling && !st->tracing) {
            chan_want w = {st, self->peer};
            if (cp_poll_for(st->ctx, CHAN_SPIN_SECONDS, want_data, &w)) {
                Py_DECREF(parent);
                Py_DECREF(g);
                continue; /* it came (the ring says whether it is the next) */
            }
        }
        self->waiter = g; /* the reference goes to whoever resumes it */
        PyObject *r = PyObject_CallMethodNoArgs(parent, st->str_switch);
        Py_DECREF(parent);
        if (self->waiter == g) { /* woken by something else */
            self->waiter = NULL;
            Py_DECREF(g);
        }
        if (!r)
            return NULL;
        Py_DECREF(r);
    }
    return ring_take(self);
}

static PyObject *ch_ready(ChannelObject *self, PyObject *noargs) {
    (void)noargs;
    return PyBool_FromLong(ring_ready(self));
}

static PyObject *ch_wait_ready(ChannelObject *self, PyObject *args) {
    (void)self;
    (void)args;
    Py_RETURN_NONE;
}

static PyObject *ch_reduce(ChannelObject *self, PyObject *noargs) {
    (void)noargs;
    cpy_state *st = state_of((PyObject *)self);
    if (!st->chan_moving)
        return PyErr_Format(PyExc_TypeError,
                            "a channel end cannot be sent or pickled: it travels only with "
                            "its chare (migration, checkpoints); make a Channel on the chare "
                            "that is to use it");
    if (self->waiter || self->multi)
        return PyErr_Format(PyExc_RuntimeError,
                            "a channel cannot be saved or moved while a coroutine waits on "
                            "it (in recv() or charm.iwait())");
    PyObject *vals = PyList_New(0);
    for (uint32_t i = 0; vals && i < self->cap; i++) {
        uint32_t s = self->taken + i;
        PyObject *v = self->ring[s & (self->cap - 1)];
        if (!v)
            continue;
        PyObject *item = Py_BuildValue("(IO)", (unsigned)s, v);
        if (!item || PyList_Append(vals, item) < 0)
            Py_CLEAR(vals);
        Py_XDECREF(item);
    }
    if (!vals)
        return NULL;
    PyObject *r = Py_BuildValue("O(KOOIIOiilK)", st->chan_rebuild,
                                (unsigned long long)self->id, self->remote,
                                self->local ? self->local : Py_None, (unsigned)self->sent,
                                (unsigned)self->taken, vals, self->opened, self->paired,
                                self->k, (unsigned long long)self->peer);
    Py_DECREF(vals);
    return r;
}

static PyObject *ch_repr(ChannelObject *self) {
    return PyUnicode_FromFormat("<Channel to %R: %u sent, %u received, %u waiting%s>",
                                self->remote, (unsigned)self->sent, (unsigned)self->taken,
                                (unsigned)self->nbuf,
                                self->paired ? "" : " (the peer has not made its end yet)");
}

static PyObject *ch_get_multi(ChannelObject *self, void *c) {
    (void)c;
    return Py_NewRef(self->multi ? self->multi : Py_None);
}

static int ch_set_multi(ChannelObject *self, PyObject *v, void *c) {
    (void)c;
    if (!v)
        return PyErr_SetString(PyExc_AttributeError, "_multi cannot be deleted"), -1;
    Py_XSETREF(self->multi, v == Py_None ? NULL : Py_NewRef(v));
    return 0;
}

static PyObject *ch_get_remote(ChannelObject *self, void *c) {
    (void)c;
    return Py_NewRef(self->remote);
}

static PyGetSetDef ch_getset[] = {
    {"_multi", (getter)ch_get_multi, (setter)ch_set_multi, "the coroutine in charm.iwait()",
     NULL},
    {"remote", (getter)ch_get_remote, NULL, "the proxy of the other end's chare", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef ch_methods[] = {
    {"send", (PyCFunction)ch_send, METH_VARARGS,
     "send(*values): send values to the other end (never blocks)."},
    {"recv", (PyCFunction)ch_recv, METH_NOARGS,
     "recv(): the next value sent by the other end (a tuple when it sent several), "
     "waiting for it (in a coroutine)."},
    {"ready", (PyCFunction)ch_ready, METH_NOARGS, "ready(): recv() would not wait."},
    {"waitReady", (PyCFunction)ch_wait_ready, METH_VARARGS, "charm4py compatibility."},
    {"__reduce__", (PyCFunction)ch_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static int ch_traverse(ChannelObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->remote);
    Py_VISIT(self->local);
    Py_VISIT(self->waiter);
    Py_VISIT(self->multi);
    for (uint32_t i = 0; i < self->cap; i++)
        Py_VISIT(self->ring[i]);
    return 0;
}

static int ch_clear(ChannelObject *self) {
    Py_CLEAR(self->remote);
    Py_CLEAR(self->local);
    Py_CLEAR(self->waiter);
    Py_CLEAR(self->multi);
    for (uint32_t i = 0; i < self->cap; i++)
        Py_CLEAR(self->ring[i]);
    self->nbuf = 0;
    return 0;
}

static void ch_dealloc(ChannelObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    ch_clear(self);
    PyMem_Free(self->ring);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyType_Slot ch_slots[] = {
    {Py_tp_new, ch_new},
    {Py_tp_dealloc, ch_dealloc},
    {Py_tp_traverse, ch_traverse},
    {Py_tp_clear, ch_clear},
    {Py_tp_methods, ch_methods},
    {Py_tp_getset, ch_getset},
    {Py_tp_repr, ch_repr},
    {Py_tp_doc, "Channel(self, remote=proxy): a direct, ordered stream between two chares."},
    {0, NULL},
};

static PyType_Spec ch_spec = {
    .name = "charmpy._charmpy.Channel",
    .basicsize = sizeof(ChannelObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = ch_slots,
};

/* ---- module functions ------------------------------------------------------- */

/* chan_setup(getcurrent, Coroutine, resume, after_run) */
static PyObject *mod_chan_setup(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *gc, *ct, *res, *after;
    if (!PyArg_ParseTuple(args, "OO!OO", &gc, &PyType_Type, &ct, &res, &after))
        return NULL;
    Py_XSETREF(st->chan_getcurrent, Py_NewRef(gc));
    Py_XSETREF(st->chan_coro_type, Py_NewRef(ct));
    Py_XSETREF(st->chan_resume, Py_NewRef(res));
    Py_XSETREF(st->chan_after_run, Py_NewRef(after));
    Py_RETURN_NONE;
}

/* The end a pickle of Channel rebuilds. */
static PyObject *mod_chan_rebuild(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    unsigned long long id;
    unsigned sent, taken;
    PyObject *remote, *local, *vals;
    int opened, paired;
    long k;
    unsigned long long peer = 0; /* (not in pickles made before it was kept) */
    if (!PyArg_ParseTuple(args, "KOOIIO!iil|K", &id, &remote, &local, &sent, &taken,
                          &PyList_Type, &vals, &opened, &paired, &k, &peer))
        return NULL;
    ChannelObject *ch = new_end(st, remote, local == Py_None ? NULL : local);
    if (!ch)
        return NULL;
    ch->id = id;
    ch->sent = sent;
    ch->taken = taken;
    ch->opened = opened;
    ch->paired = paired;
    ch->k = k;
    ch->peer = peer;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(vals); i++) {
        unsigned s;
        PyObject *v;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(vals, i), "IO", &s, &v) ||
            ring_put(ch, s, v) < 0) {
            Py_DECREF(ch);
            return NULL;
        }
    }
    return (PyObject *)ch;
}

/* chan_moving(flag): chares are being pickled to migrate or be saved (their
 * channel ends may be pickled with them); returns the previous flag. */
static PyObject *mod_chan_moving(PyObject *module, PyObject *arg) {
    cpy_state *st = PyModule_GetState(module);
    int was = st->chan_moving, on = PyObject_IsTrue(arg);
    if (on < 0)
        return NULL;
    st->chan_moving = on;
    return PyBool_FromLong(was);
}

static PyMethodDef chan_methods[] = {
    {"chan_setup", mod_chan_setup, METH_VARARGS, NULL},
    {"chan_moving", mod_chan_moving, METH_O, NULL},
    {"_chan_rebuild", mod_chan_rebuild, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

int cpy_chan_init(PyObject *module, cpy_state *st) {
    st->chan_type = PyType_FromModuleAndSpec(module, &ch_spec, NULL);
    if (!st->chan_type || PyModule_AddObjectRef(module, "Channel", st->chan_type) < 0 ||
        PyModule_AddFunctions(module, chan_methods) < 0)
        return -1;
    st->chan_rebuild = PyObject_GetAttrString(module, "_chan_rebuild");
    st->str_switch = PyUnicode_InternFromString("switch");
    st->str_dead = PyUnicode_InternFromString("dead");
    st->str_parent = PyUnicode_InternFromString("parent");
    st->str_chans = PyUnicode_InternFromString("_charmpy_chans");
    st->str_chanq = PyUnicode_InternFromString("_charmpy_chanq");
    st->str_chank = PyUnicode_InternFromString("_charmpy_chank");
    st->str_chanearly = PyUnicode_InternFromString("_charmpy_chanearly");
    st->str_chan_send = PyUnicode_InternFromString("Channel.send");
    st->str_chan_open = PyUnicode_InternFromString("Channel()");
    if (!st->chan_rebuild || !st->str_switch || !st->str_dead || !st->str_parent ||
        !st->str_chans || !st->str_chanq || !st->str_chan_send || !st->str_chan_open ||
        !st->str_chank || !st->str_chanearly)
        return -1;
    return 0;
}

int cpy_chan_traverse(cpy_state *st, visitproc visit, void *arg) {
    Py_VISIT(st->chan_type);
    Py_VISIT(st->chan_rebuild);
    Py_VISIT(st->chan_getcurrent);
    Py_VISIT(st->chan_coro_type);
    Py_VISIT(st->chan_resume);
    Py_VISIT(st->chan_after_run);
    return 0;
}

void cpy_chan_clear(cpy_state *st) {
    Py_CLEAR(st->chan_type);
    Py_CLEAR(st->chan_rebuild);
    Py_CLEAR(st->chan_getcurrent);
    Py_CLEAR(st->chan_coro_type);
    Py_CLEAR(st->chan_resume);
    Py_CLEAR(st->chan_after_run);
    Py_CLEAR(st->str_switch);
    Py_CLEAR(st->str_dead);
    Py_CLEAR(st->str_parent);
    Py_CLEAR(st->str_chans);
    Py_CLEAR(st->str_chanq);
    Py_CLEAR(st->str_chank);
    Py_CLEAR(st->str_chanearly);
    Py_CLEAR(st->str_chan_send);
    Py_CLEAR(st->str_chan_open);
}
