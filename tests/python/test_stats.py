"""charm.printStats (issue 13): the figures against what the program did,
under charmrun at 1 to 4 and 8 PEs and under mpirun. programs/stats_exact.py
says what it prints; the test reads the lines."""
import re
import shutil

import pytest

from conftest import PYTHON, program_path, run_command, run_program

K = 17
MSG = re.compile(r"^(?:(before|after) )?(PE (\d+)|all PEs): messages sent (\d+), received (\d+), "
                 r"bytes sent (\d+), received (\d+)$")
TIME = re.compile(r"^(?:(before|after) )?(PE (\d+)|all PEs): time ([0-9.]+) s: entry methods "
                  r"([0-9.]+) s \(.*\), main ([0-9.]+) s \(.*\), scheduler ([0-9.]+) s \(.*\), "
                  r"receiving ([0-9.]+) s \(.*\), idle ([0-9.]+) s \(.*\); sending ([0-9.]+) s")
METHOD = re.compile(r"^(?:(before|after) )?(PE (\d+)|all PEs): (\w+)\.(\w+) calls (\d+) total "
                    r"([0-9.]+) s mean ([0-9.]+) us max ([0-9.]+) us$")


def parse(stdout):
    """{(tag or None, label): {"msgs": (sent, recv, bsent, brecv), "time": (...),
    "methods": {(cls, name): (calls, total, mean, max)}}}"""
    out = {}
    for ln in stdout.splitlines():
        for rx, key in ((MSG, "msgs"), (TIME, "time"), (METHOD, "methods")):
            m = rx.match(ln.strip())
            if not m:
                continue
            d = out.setdefault((m[1], m[2]), {"methods": {}})
            if key == "msgs":
                d["msgs"] = tuple(int(x) for x in m.groups()[3:])
            elif key == "time":
                d["time"] = tuple(float(x) for x in m.groups()[3:])
            else:
                d["methods"][(m[4], m[5])] = (int(m[6]),) + tuple(float(x) for x in m.groups()[6:])
    return out


def check(stdout, npes, profiling=True):
    got = parse(stdout)
    t = npes - 1
    before, after = got.get(("before", f"PE {t}")), got.get(("after", f"PE {t}"))
    assert before and after, stdout
    # Exactly as sent: on PE t, between its two reports, the K ticks and the
    # second `show` arrived and the answer to the first left (at 1 PE main's
    # messages to its own PE count too: the K ticks, the second show, the
    # first one's answer).
    ds = after["msgs"][0] - before["msgs"][0]
    dr = after["msgs"][1] - before["msgs"][1]
    if npes == 1:
        assert (ds, dr) == (K + 2, K + 2), (ds, dr, stdout)
    else:
        assert (ds, dr) == (1, K + 1), (ds, dr, stdout)
    assert after["msgs"][3] > before["msgs"][3] and after["msgs"][2] > before["msgs"][2]
    rows = [got.get((None, f"PE {pe}")) for pe in range(npes)]
    assert all(rows), f"main's printStats lacks a PE's rows:\n{stdout}"
    total = got.get((None, "all PEs"))
    assert total, f"no totals row:\n{stdout}"
    assert total["msgs"] == tuple(sum(r["msgs"][i] for r in rows) for i in range(4)), stdout
    if not profiling:
        assert not any("time" in d or d["methods"] for d in got.values()), stdout
        assert "need profiling" in stdout, stdout
        return
    for d in rows + [total, before, after]:
        wall, em, main, sched, recv, idle, send = d["time"]
        assert min(d["time"]) >= 0 and wall > 0, d
        # the parts add up to the whole (printed to the microsecond)
        assert abs(em + main + sched + recv + idle - wall) < 1e-5 + 1e-4 * wall, d
        assert send <= wall + 1e-6, d
        # entry methods in all = the sum of the method rows
        assert abs(sum(m[1] for m in d["methods"].values()) - em) < 1e-5 * (1 + len(d["methods"]))
    ticks = after["methods"].get(("Probe", "tick"))
    assert ticks and ticks[0] == K, after["methods"]
    # each tick is busy for 0.5 ms
    assert ticks[1] >= K * 0.0005 * 0.9 and ticks[3] >= 0.0005 * 0.9, ticks
    assert abs(ticks[2] * 1e-6 * K - ticks[1]) < 1e-5 * K, ticks
    assert ("Probe", "tick") not in before["methods"], before["methods"]
    assert total["methods"][("Probe", "tick")][0] == K, total["methods"]
    for (cls, name), (calls, tot, mean, mx) in total["methods"].items():
        assert calls == sum(r["methods"].get((cls, name), (0,))[0] for r in rows), (cls, name)
        assert mx == max(r["methods"].get((cls, name), (0, 0, 0, 0))[3] for r in rows)
    assert rows[t]["time"][1] >= ticks[1] - 1e-6


@pytest.mark.parametrize("how", ["option", "+stats", "plain"])
def test_stats_exact(npes, how):
    args = {"option": [], "+stats": ["plain", "+stats"], "plain": ["plain"]}[how]
    res = run_program("stats_exact", npes, str(K), *args, timeout=60)
    assert res.stdout.rstrip().endswith("OK stats_exact"), res.stdout + res.stderr
    check(res.stdout, npes, profiling=how != "plain")


def test_stats_exact_8pes():
    res = run_program("stats_exact", 8, str(K), timeout=120)
    check(res.stdout, 8)


MPIRUN = shutil.which("mpirun")


@pytest.mark.skipif(MPIRUN is None, reason="no mpirun on PATH (apt-get install openmpi-bin)")
@pytest.mark.parametrize("np", [1, 3])
def test_stats_exact_mpirun(np):
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(np), "--mca", "btl",
           "self,vader", str(PYTHON), str(program_path("stats_exact")), str(K)]
    rc, out, err = run_command(cmd, timeout=120)
    assert out.rstrip().endswith("OK stats_exact"), out + err
    check(out, np)
