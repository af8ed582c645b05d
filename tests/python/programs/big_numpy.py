"""A 256 MiB numpy array as an argument to a chare on another PE (the last
one; the same PE at P=1), checked by CRC there, and a 256 MiB result sent
back and checked here."""
import time
import zlib

import numpy

from charmpy import *

NBYTES = 256 * 1024 * 1024


def crc(arr):
    return zlib.crc32(memoryview(arr).cast("B"))


class Receiver(Chare):
    def check(self, arr, expected_crc, shape, dtype):
        assert isinstance(arr, numpy.ndarray), type(arr)
        assert arr.shape == shape and str(arr.dtype) == dtype, (arr.shape, arr.dtype)
        assert arr.nbytes == NBYTES, arr.nbytes
        assert crc(arr) == expected_crc, "checksum mismatch on the receiving PE"
        self.kept = arr
        return charm.myPe()

    def send_back(self):
        self.kept += 1
        return self.kept


def main(args):
    P = charm.numPes()
    r = Chare(Receiver, onPE=P - 1)
    arr = numpy.arange(NBYTES // 8, dtype=numpy.int64).reshape(2048, -1)
    arr *= 2654435761          # not a plain ramp: every byte matters to the CRC
    expected = crc(arr)
    t0 = time.time()
    pe = r.check(arr, expected, arr.shape, str(arr.dtype), ret=True).get()
    t1 = time.time()
    assert pe == P - 1, pe
    back = r.send_back(ret=True).get()
    t2 = time.time()
    assert isinstance(back, numpy.ndarray) and back.shape == arr.shape, back.shape
    if P > 1:
        assert crc(arr) == expected, "the sender's array changed"
        arr += 1
    assert crc(back) == crc(arr), "the 256 MiB result came back wrong"
    print(f"256 MiB to PE {P - 1} and back: {t1 - t0:.2f} s, {t2 - t1:.2f} s")
    print("OK big_numpy")
    charm.exit()


charm.start(main)
