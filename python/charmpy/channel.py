"""Channels: Channel(self, remote=proxy), a direct, ordered stream between
two chares. Everything is in C (python/ext/channel.c): the ends, the
pairing of the k-th end a chare makes towards a peer with the k-th end the
peer makes towards it, sending, the numbered arrivals and waking the
coroutine in recv() or charm.iwait(). This wires it to the coroutine layer."""
from greenlet import getcurrent

from . import _charmpy, coro

_charmpy.chan_setup(getcurrent, coro.Coroutine, coro.resume, coro._after_run)

Channel = _charmpy.Channel
