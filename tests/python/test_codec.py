"""The binary encoding of entry-method arguments (python/ext/codec.c):
round trips of every type, types kept, out-of-band buffers, zero-copy
decoding, errors for what cannot be serialized, and malformed input."""
import array
import collections
import dataclasses
import enum
import math
import pickle
import random
import socket
import subprocess
import sys

import pytest

from charmpy import _charmpy

encode = _charmpy.encode
decode = _charmpy.decode
decode_zerocopy = _charmpy.decode_zerocopy

OOB_MIN = 64 * 1024  # CPY_OOB_MIN in codec.h


def roundtrip(value):
    """Encode, decode with and without an owner; both results."""
    data = encode(value)
    return decode(data), decode_zerocopy(bytearray(data))


def same(a, b):
    """Equal, of the same types all the way down, NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b) or (
            math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return (list(a) == list(b) and all(same(k, l) for k, l in zip(a, b))
                and all(same(a[k], b[k]) for k in a))
    return a == b


def check(value):
    for got in roundtrip(value):
        assert same(got, value), (value, got)


# ---- scalars ---------------------------------------------------------------

@pytest.mark.parametrize("value", [
    None, True, False,
    0, 1, -1, 127, -128, 128, -129, 2**31 - 1, -2**31, 2**31, -2**31 - 1,
    2**63 - 1, -2**63, 2**63, -2**63 - 1, 2**64, -2**64, 10**100, -10**100,
    0.0, 1.5, -2.25, 1e308, 5e-324, math.inf, -math.inf, math.pi,
    1 + 2j, complex(-0.0, math.inf),
])
def test_scalars(value):
    check(value)


def test_huge_ints():
    for value in (2**(8 * OOB_MIN + 3) - 1, -(3**200000), 2**4000 + 1):
        data = encode(value)
        assert len(data) < value.bit_length() // 8 + 128
        for got in roundtrip(value):
            assert type(got) is int and got == value


def test_negative_zero_and_nan():
    for got in roundtrip(-0.0):
        assert got == 0.0 and math.copysign(1, got) == -1
    for got in roundtrip(float("nan")):
        assert math.isnan(got)
    got = decode(encode((math.nan, -0.0)))
    assert math.isnan(got[0]) and math.copysign(1, got[1]) == -1


def test_small_values_are_compact():
    assert len(encode(None)) == 1
    assert len(encode(5)) == 2
    assert len(encode(1.0)) == 9
    assert len(encode("abc")) == 5
    assert len(encode((1, 2, 3))) == 8


@pytest.mark.parametrize("value", [
    "", "abc", "caf\u00e9", "\u4e2d\u6587", "\U0001f600 emoji \U00010348",
    "\ud800 lone surrogate", "nul\x00inside", "a" * (OOB_MIN + 1),
    "\u00e9" * OOB_MIN, "\U0001f600" * 20000,
])
def test_str(value):
    check(value)


@pytest.mark.parametrize("value", [
    b"", b"abc", bytes(range(256)), b"x" * (OOB_MIN - 1), b"y" * OOB_MIN,
    bytearray(), bytearray(b"abc"), bytearray(b"z" * (OOB_MIN + 5)),
])
def test_bytes_and_bytearray(value):
    check(value)


# ---- containers ------------------------------------------------------------

@pytest.mark.parametrize("value", [
    (), [], {}, ((),), [[]], {(): {}},
    (1, 2.5, "abc"),
    [1, [2, [3, [4, None]]], (True, False)],
    {"a": 1, 2: "b", (3, 4): [5, {6: 7}], None: 1.5, 2.5: b"x", False: 0},
    {"nested": {"deeper": {"deepest": [1, 2, 3]}}},
    tuple(range(1000)),
    [{"k": i, "v": [float(i)] * 3} for i in range(100)],
])
def test_containers(value):
    check(value)


def test_dict_order_kept():
    d = {k: k for k in ["z", "a", "m", 3, 1, 2]}
    for got in roundtrip(d):
        assert list(got) == list(d)


def test_deep_nesting_goes_through_pickle():
    value = []
    for _ in range(300):
        value = [value, 1]
    for got in roundtrip(value):
        assert got == value


def test_self_referencing_containers():
    lst = [1, "a"]
    lst.append(lst)
    d = {"x": 1}
    d["self"] = d
    for got in roundtrip(lst):
        assert got[:2] == [1, "a"] and got[2] is got
    for got in roundtrip((d, 5)):
        assert got[0]["self"] is got[0] and got[1] == 5


def test_too_deep_for_pickle_is_a_type_error():
    value = []
    for _ in range(100000):
        value = [value]
    with pytest.raises(TypeError, match="cannot serialize object of type list"):
        encode(value)


# ---- other types: pickle, subclasses -----------------------------------------

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return type(other) is Point and (self.x, self.y) == (other.x, other.y)


@dataclasses.dataclass
class Record:
    name: str
    values: list


class MyInt(int):
    pass


class MyFloat(float):
    pass


class MyStr(str):
    pass


class MyBytes(bytes):
    pass


class MyList(list):
    pass


class MyTuple(tuple):
    pass


class MyDict(dict):
    pass


class Color(enum.IntEnum):
    RED = 1


Pair = collections.namedtuple("Pair", "a b")


@pytest.mark.parametrize("value", [
    Point(1, 2), Record("r", [1, 2.0]), MyInt(3), MyFloat(2.5), MyStr("s"),
    MyBytes(b"b"), MyList([1, 2]), MyTuple((1,)), MyDict(a=1), Color.RED,
    Pair(1, "x"), collections.OrderedDict(a=1, b=2), collections.defaultdict(list, a=[1]),
    {1, 2, 3}, frozenset({"a"}), range(3), slice(1, 2), Ellipsis, NotImplemented, int, len,
    pickle.PickleBuffer(b"small"),
])
def test_pickled_types_keep_their_type(value):
    for got in roundtrip(value):
        if isinstance(value, pickle.PickleBuffer):
            assert bytes(got) == b"small"
            continue
        assert type(got) is type(value)
        assert got == value


def test_subclasses_inside_containers():
    value = [MyInt(1), {"k": MyStr("v")}, (Point(0, 1), Color.RED)]
    for got in roundtrip(value):
        assert got == value
        assert type(got[0]) is MyInt and type(got[1]["k"]) is MyStr
        assert type(got[2][1]) is Color


def test_big_buffer_inside_a_pickle_is_out_of_band():
    value = pickle.PickleBuffer(b"q" * (1 << 20))
    data = encode(value)
    assert len(data) < (1 << 20) + 256
    assert data.find(b"q" * 64) % 64 == 0
    assert bytes(decode(data)) == b"q" * (1 << 20)


# ---- errors ----------------------------------------------------------------

def generator():
    yield 1


@pytest.mark.parametrize("make, name", [
    (lambda: (lambda: 0), "function"),
    (lambda: generator(), "generator"),
    (lambda: socket.socket(), "socket"),
    (lambda: [1, {"k": (2, generator())}], "generator"),
    (lambda: Point(1, generator()), "Point"),
])
def test_unserializable_raises_type_error(make, name):
    value = make()
    try:
        with pytest.raises(TypeError, match=f"cannot serialize object of type {name}: ") as ei:
            encode(value)
        assert ei.value.__cause__ is not None
    finally:
        if isinstance(value, socket.socket):
            value.close()


def test_unsupported_memoryview_format():
    np = pytest.importorskip("numpy")
    with pytest.raises(TypeError, match="cannot serialize object of type memoryview"):
        encode(memoryview(np.zeros(3, ">f8")))


def test_released_memoryview():
    m = memoryview(b"abc")
    m.release()
    with pytest.raises(TypeError, match="cannot serialize object of type memoryview"):
        encode(m)


class Clearer:
    """Empties a list while it is being encoded."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        self.target.clear()
        return (int, (0,))


def test_container_changed_during_encoding():
    lst = [1, 2, 3]
    lst.insert(0, Clearer(lst))
    with pytest.raises(RuntimeError, match="changed size"):
        encode(lst)
    d = {}
    d["c"] = Clearer(d)
    d["x"] = 1
    with pytest.raises(RuntimeError, match="changed size"):
        encode(d)


# ---- malformed input ---------------------------------------------------------

def sample_values():
    np_values = []
    try:
        import numpy as np
        np_values = [np.arange(6.0).reshape(2, 3), np.arange(OOB_MIN // 8 + 1)]
    except ImportError:
        pass
    return [
        None, 5, -300, 2**40, 2**70, 1.5, 1j, "h\u00e9llo", b"bytes", bytearray(b"ba"),
        (1, (2, [3, {"k": "v"}])), {1: [None, True], "s": ()}, Point(1, 2),
        array.array("i", [1, 2, 3]), memoryview(b"mv"), b"o" * (OOB_MIN + 10),
        (b"p" * OOB_MIN, "s" * (OOB_MIN + 1)), pickle.PickleBuffer(b"r" * OOB_MIN),
    ] + np_values


def test_truncated_input_raises_value_error():
    for value in sample_values():
        data = encode(value)
        step = 1 if len(data) < 4096 else 61
        for n in list(range(0, min(len(data), 4096))) + list(range(4096, len(data), step)):
            with pytest.raises(ValueError, match="corrupt message"):
                decode(data[:n])
            with pytest.raises(ValueError, match="corrupt message"):
                decode_zerocopy(bytearray(data[:n]))


def test_garbage_never_crashes():
    rng = random.Random(1234)
    fast = [v for v in sample_values() if not isinstance(v, (Point, pickle.PickleBuffer))]
    for value in fast:
        data = encode(value)
        if len(data) > 4096:
            continue
        for _ in range(300):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            # A mutated tag may make a pickle out of anything, and unpickling
            # may raise anything: what matters is that nothing crashes.
            for dec, buf in ((decode, bytes(mutated)), (decode_zerocopy, mutated)):
                try:
                    dec(buf)
                except Exception:
                    pass
    for _ in range(2000):
        blob = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        if blob[:1] == b"p":  # a pickle: could be anything
            continue
        try:
            decode(blob)
        except (ValueError, TypeError, OverflowError, MemoryError):
            pass


@pytest.mark.parametrize("data", [
    b"", b"\xff", b"t\x05NN", b"s\x0aab", b"y\x01", b"y\x03\x00\x00\x00\x00",
    b"y\x03" + (2**63).to_bytes(8, "little"), b"l\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    b"m\x01N", b"d\x00", b"s\x04\xff\xfe", b"m\x01l\x00N", b"t" + b"\x01t" * 100 + b"N",
])
def test_malformed_input(data):
    with pytest.raises(ValueError, match="corrupt message"):
        decode(data)


def _make_point(x, y):
    return _Point(x, y)


class _Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __reduce__(self):
        return (_make_point, (self.x, self.y))


class _SubPoint(_Point):
    pass


class _OtherReduce(_Point):
    def __reduce__(self):
        return (_Point, (self.x, self.y))


def test_reducible_classes_travel_natively():
    """codec_reducible(cls, rebuild): an instance of cls goes as the
    arguments of its __reduce__ (record R), not as a pickle; futures do."""
    from charmpy.futures import _FutureRef
    _charmpy.codec_reducible(_Point, _make_point)
    _charmpy.codec_reducible(_Point, _make_point)       # again: no change
    _charmpy.codec_reducible(_OtherReduce, _make_point)  # its __reduce__ says otherwise
    b = encode(_Point(3, "four"))
    assert b[:1] == b"R" and b"four" in b and b"_Point" not in b
    p = decode(b)
    assert type(p) is _Point and (p.x, p.y) == (3, "four")
    inner = decode(encode([1, (_Point(1.5, [2]), None)]))
    assert type(inner[1][0]) is _Point and inner[1][0].y == [2]
    # Only the exact class; a __reduce__ with another function: a pickle.
    for obj in (_SubPoint(1, 2), _OtherReduce(1, 2)):
        b = encode(obj)
        assert b[:1] == b"p", b
        assert type(decode(b)) in (_SubPoint, _Point)
    f = decode(encode(_FutureRef(5, 77, 2)))
    assert encode(_FutureRef(5, 77, 2))[:1] == b"R"
    assert type(f) is _FutureRef and (f.pe, f.fid, f.num_vals) == (5, 77, 2)
    with pytest.raises(TypeError, match="takes a class"):
        _charmpy.codec_reducible(_Point(1, 2), _make_point)
    with pytest.raises(ValueError, match="another rebuild"):
        _charmpy.codec_reducible(_Point, _Point)
    with pytest.raises(ValueError, match="corrupt message.*unknown reducible"):
        decode(b"R\x07t\x00")
    with pytest.raises(ValueError, match="corrupt message.*not a tuple"):
        decode(b"R\x00N")


def test_reducible_classes_are_bounded():
    code = ("from charmpy import _charmpy\n"
            "import pytest\n"
            "classes = [type(f'C{i}', (), {}) for i in range(8)]\n"
            "with pytest.raises(ValueError, match='at most 8 classes .*one too many.*leave .* to pickle'):\n"
            "    for c in classes:\n"
            "        _charmpy.codec_reducible(c, c)\n"
            "print('bounded')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "bounded" in r.stdout, r.stderr


def test_decode_accepts_any_bytes_like():
    data = encode((1, "two", [3.0]))
    for buf in (data, bytearray(data), memoryview(data)):
        assert decode(buf) == (1, "two", [3.0])
        assert decode_zerocopy(buf) == (1, "two", [3.0])


def test_out_of_band_buffers_are_aligned():
    parts = (b"a" * (OOB_MIN + 1), b"b" * (OOB_MIN + 3), b"c" * (OOB_MIN + 7))
    data = encode(parts)
    for p in parts:
        assert data.find(p[:64]) % 64 == 0
    assert len(data) < sum(map(len, parts)) + 3 * 64 + 64
    assert decode(data) == parts


# ---- array.array and memoryview ---------------------------------------------

@pytest.mark.parametrize("typecode", ["b", "B", "h", "H", "i", "I", "l", "L", "q", "Q", "f", "d"])
def test_array_array(typecode):
    for n in (0, 5, OOB_MIN):
        value = array.array(typecode, [i % 100 for i in range(n)])
        for got in roundtrip(value):
            assert type(got) is array.array and got.typecode == typecode and got == value


def test_memoryview():
    for value in (memoryview(b"abc"), memoryview(bytearray(b"xyz")),
                  memoryview(array.array("d", [1.5, 2.5])),
                  memoryview(b"\x00" * 24).cast("i", (2, 3)),
                  memoryview(b"\x01" * 8).cast("q", ()),
                  memoryview(bytearray(OOB_MIN * 2)).cast("H")):
        for got in roundtrip(value):
            assert type(got) is memoryview
            assert (got.format, got.shape, got.readonly) == (value.format, value.shape,
                                                              value.readonly)
            assert got.tolist() == value.tolist()


def test_memoryview_zero_copy():
    value = memoryview(b"m" * (OOB_MIN * 2))
    owner = bytearray(encode(value))
    got = decode_zerocopy(owner)
    at = owner.find(b"m" * 64)
    owner[at] = ord("Z")
    assert got[0] == ord("Z")
    assert decode(bytes(owner))[0] == ord("Z")
    copy = decode(owner)
    owner[at] = ord("W")
    assert copy[0] == ord("Z")


def test_bytes_stay_bytes_with_an_owner():
    value = b"k" * (OOB_MIN * 2)
    owner = bytearray(encode(value))
    got = decode_zerocopy(owner)
    assert type(got) is bytes and got == value


# ---- numpy -------------------------------------------------------------------

NP_DTYPES = ["?", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8",
             "c8", "c16", ">f8", ">i4", "S3", "U5", "M8[ns]", "m8[s]", "O",
             [("a", "i4"), ("b", "f8")]]


@pytest.mark.parametrize("dtype", NP_DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 4), (2, 3, 4), (0, 5)])
def test_numpy_dtypes_and_shapes(dtype, shape):
    np = pytest.importorskip("numpy")
    n = int(np.prod(shape))
    base = np.arange(n) % 7
    if np.dtype(dtype).kind == "O":
        value = np.array([str(x) for x in base], dtype=object).reshape(shape)
    elif np.dtype(dtype).names:
        value = np.zeros(shape, dtype=dtype)
        if n:
            value["a"].flat = base
    else:
        value = base.astype(dtype).reshape(shape)
    for got in roundtrip(value):
        assert type(got) is np.ndarray
        assert got.dtype == value.dtype and got.shape == value.shape
        assert np.array_equal(got, value)


def test_numpy_layouts():
    np = pytest.importorskip("numpy")
    a = np.arange(60.0).reshape(3, 4, 5)
    for value in (a, a.T, a[:, ::2], a[::-1], a[..., 1], a[1:, :, 2:4], np.asfortranarray(a),
                  a.transpose(1, 0, 2), np.arange(10)[::3], np.broadcast_to(np.arange(3), (4, 3))):
        for got in roundtrip(value):
            assert np.array_equal(got, value) and got.dtype == value.dtype
            assert got.shape == value.shape
            if value.flags.f_contiguous and not value.flags.c_contiguous:
                assert got.flags.f_contiguous
            else:
                assert got.flags.c_contiguous


def test_numpy_writeable_flag():
    np = pytest.importorskip("numpy")
    a = np.arange(5)
    for got in roundtrip(a):
        got[0] = 10  # writeable, like pickle gives
    a.flags.writeable = False
    for got in roundtrip(a):
        assert not got.flags.writeable


def test_numpy_big_array_zero_copy():
    np = pytest.importorskip("numpy")
    value = np.arange(1 << 17, dtype="f8").reshape(256, 512)  # 1 MiB
    data = encode(value)
    assert len(data) < value.nbytes + 256
    owner = bytearray(data)
    got = decode_zerocopy(owner)
    raw = np.frombuffer(owner, np.uint8)
    assert np.shares_memory(got, raw)
    assert got.ctypes.data % 64 == raw.ctypes.data % 64
    owner_f8 = np.frombuffer(owner, np.uint8)
    at = got.ctypes.data - owner_f8.ctypes.data
    owner[at:at + 8] = np.float64(-7.0).tobytes()
    assert got[0, 0] == -7.0
    copy = decode(owner)
    assert not np.shares_memory(copy, raw)
    assert np.array_equal(copy, got)


def test_numpy_inside_objects_out_of_band_and_zero_copy():
    np = pytest.importorskip("numpy")
    value = Record("r", [np.arange(1 << 17, dtype="i8"), np.ones((300, 300), order="F")])
    data = encode(value)
    assert len(data) < (1 << 20) + 300 * 300 * 8 + 4096
    owner = bytearray(data)
    raw = np.frombuffer(owner, np.uint8)
    got = decode_zerocopy(owner)
    assert type(got) is Record
    for g, v in zip(got.values, value.values):
        assert np.array_equal(g, v) and np.shares_memory(g, raw)
    assert got.values[1].flags.f_contiguous
    for g in decode(owner).values:
        assert not np.shares_memory(g, raw)


def test_numpy_subclass_keeps_type():
    np = pytest.importorskip("numpy")
    value = np.ma.masked_array([1, 2, 3], mask=[0, 1, 0])
    for got in roundtrip(value):
        assert type(got) is type(value)
        assert got.mask.tolist() == [False, True, False]


def test_numpy_not_imported_without_arrays():
    code = (
        "import sys\n"
        "from charmpy import _charmpy as c\n"
        "v = (1, 'a', [2.0], {'k': b'x'}, bytearray(70000))\n"
        "assert c.decode(c.encode(v)) == v\n"
        "assert 'numpy' not in sys.modules, 'numpy was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
