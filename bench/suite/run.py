#!/usr/bin/env python3
"""charmpy beside the systems its users would pick instead: one run, one machine.

    python3 bench/suite/run.py                      every benchmark, every peer (~10-15 min);
                                                    writes docs/suite.md, docs/suite-results.json,
                                                    docs/img/suite-*.png, bench/suite/out/results.json
    python3 bench/suite/run.py --only latency --sizes 8,1024 --pes 2
    python3 bench/suite/run.py --only jacobi --pes 1,2 --sizes 1024 --systems charmpy,mpi4py
    python3 bench/suite/run.py --smoke              tiny sizes, each benchmark with each available
                                                    system once; ends with `smoke: N passed, M failed`
    python3 bench/suite/run.py --no-install         do not install peers (use what is there)
    python3 bench/suite/run.py --report bench/suite/out/results.json
                                                    measure nothing: docs/ again from a run's results

Benchmarks: latency, rate, bw, jacobi, bcast, create (see docs/suite.md).
Systems: charmpy (shm layer, charmrun), charmpy-mpi (mpi layer, mpirun),
mpi4py (pickled), mpi4py-buf (buffers), charm4py, pipe (multiprocessing),
futures (concurrent.futures), ray, dask, python (plain objects, create only).

Standard library only: runs under any python3. The peers live in
bench/suite/.venv, installed by bench/suite/setup_peers.sh (which this
script runs first unless --no-install or --smoke); matplotlib from there
draws the plots.
"""
import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "out")
RAW = os.path.join(OUT, "raw")
CP_PY = os.path.join(ROOT, ".venv", "bin", "python")
CHARMRUN = os.path.join(ROOT, ".venv", "bin", "charmrun")
SUITE_PY = os.path.join(HERE, ".venv", "bin", "python")
DOC = os.path.join(ROOT, "docs", "suite.md")
DOC_JSON = os.path.join(ROOT, "docs", "suite-results.json")
IMG = os.path.join(ROOT, "docs", "img")
MARK_BEGIN, MARK_END = "<!-- suite:begin -->", "<!-- suite:end -->"
MIB = 1 << 20

# ---- the systems -----------------------------------------------------------------
MPIRUN = ["mpirun", "--oversubscribe", "--mca", "pml", "ob1", "--mca", "btl", "self,vader",
          "--mca", "oob_tcp_if_include", "lo"]          # shared memory; loopback for the launch
if os.geteuid() == 0:
    MPIRUN.insert(1, "--allow-run-as-root")


def prog(*p):
    return os.path.join(HERE, *p)


class System:
    def __init__(self, key, label, needs, argv, env=None):
        self.key, self.label, self.needs = key, label, needs
        self._argv, self.env = argv, env or {}

    def argv(self, mode, pes, opts):
        return self._argv(mode, pes, [f"{k}={v}" for k, v in opts.items()])


def peer_py():
    """Python for the standard-library peers: the suite's venv when it has
    numpy, else charmpy's (the same interpreter, with numpy)."""
    return SUITE_PY if PEERS.get("numpy", {}).get("ok") else CP_PY


SYSTEMS = {s.key: s for s in [
    System("charmpy", "charmpy (shm)", [],
           lambda m, p, o: [CHARMRUN, "-n", str(p), prog("chares.py"), m, *o]),
    System("charmpy-mpi", "charmpy (mpi layer)", ["mpirun"],
           lambda m, p, o: MPIRUN + ["-np", str(p), CP_PY, prog("chares.py"), m, *o]),
    System("mpi4py", "mpi4py", ["mpirun", "mpi4py"],
           lambda m, p, o: MPIRUN + ["-np", str(p), SUITE_PY, prog("peers", "mpi4py_bench.py"),
                                     m, "variant=pickled", *o]),
    System("mpi4py-buf", "mpi4py buffer", ["mpirun", "mpi4py"],
           lambda m, p, o: MPIRUN + ["-np", str(p), SUITE_PY, prog("peers", "mpi4py_bench.py"),
                                     m, "variant=buffer", *o]),
    System("charm4py", "charm4py 1.1", ["charm4py"],
           lambda m, p, o: [SUITE_PY, "-m", "charmrun.start", f"+p{p}", prog("chares.py"), m, *o,
                            "++local"],
           env={"SUITE_CHARM": "charm4py"}),
    System("pipe", "multiprocessing Pipe", [],
           lambda m, p, o: [peer_py(), prog("peers", "pipe_bench.py"), m, *o]),
    System("futures", "concurrent.futures", [],
           lambda m, p, o: [peer_py(), prog("peers", "rpc_bench.py"), "futures", m, *o]),
    System("ray", "Ray actor", ["ray"],
           lambda m, p, o: [SUITE_PY, prog("peers", "rpc_bench.py"), "ray", m, *o]),
    System("dask", "Dask actor", ["dask"],
           lambda m, p, o: [SUITE_PY, prog("peers", "rpc_bench.py"), "dask", m, *o]),
    System("python", "plain Python objects", [],
           lambda m, p, o: [peer_py(), prog("peers", "pipe_bench.py"), m, *o]),
]}

# ---- the benchmarks ----------------------------------------------------------------
# sizes: the variable of the benchmark (bytes, elements, grid side);
# per_launch: one program launch per size (fresh processes), else all sizes in one;
# ladder: sizes ascending, a size is skipped when the previous one predicts a
# launch longer than --launch-budget.
RPC_NA = "an actor or worker is a whole process: no collection of fine-grained objects"
BENCHES = {
    "latency": dict(
        title="Ping-pong latency", unit="µs one-way",
        systems=["charmpy", "charmpy-mpi", "mpi4py", "mpi4py-buf", "pipe", "futures", "ray",
                 "dask", "charm4py"],
        sizes=[8, 64, 512, 4096, 32768, 262144, 2 * MIB, 16 * MIB], smoke_sizes=[8, 4096],
        pes=[2], launches=3, opt="sizes", labels={"mpi4py": "mpi4py pickled"}),
    "rate": dict(
        title="Small-message rate", unit="msg/s",
        systems=["charmpy", "charmpy-mpi", "mpi4py", "mpi4py-buf", "pipe", "futures", "ray",
                 "dask", "charm4py"],
        sizes=[None], smoke_sizes=[None], pes=[2], launches=3, opt=None,
        labels={"mpi4py": "mpi4py pickled"}),
    "bw": dict(
        title="Bandwidth of numpy arrays", unit="GB/s",
        systems=["charmpy", "charmpy-mpi", "mpi4py-buf", "pipe", "futures", "ray", "dask",
                 "charm4py"],
        na={"mpi4py": "a numpy array is a buffer: mpi4py's buffer API is the one to use"},
        sizes=[4096, 65536, MIB, 16 * MIB], smoke_sizes=[65536], pes=[2], launches=1,
        opt="sizes"),
    "jacobi": dict(
        title="2-D Jacobi", unit="ms per iteration",
        systems=["charmpy", "charmpy-mpi", "mpi4py", "charm4py"],
        na={"ray": "a stencil needs neighbour exchange between long-lived workers",
            "dask": "a stencil needs neighbour exchange between long-lived workers",
            "futures": "no communication between workers", "pipe": "not a parallel runtime"},
        sizes=[2048], smoke_sizes=[64], pes=[1, 2], launches=1, opt="grid", per_launch=True,
        time=0.5, extra={"blocks": 4}, labels={"mpi4py": "mpi4py (Isend/Irecv)"}),
    "bcast": dict(
        title="Broadcast + sum reduction over n chares", unit="µs per round",
        systems=["charmpy", "charmpy-mpi", "mpi4py", "charm4py"],
        na={"ray": RPC_NA, "dask": RPC_NA, "futures": RPC_NA, "pipe": RPC_NA},
        sizes=[1000, 10000, 100000, 1000000], smoke_sizes=[100], pes=[2], launches=1,
        opt="n", per_launch=True, ladder=True, labels={"mpi4py": "mpi4py bcast/reduce"}),
    "create": dict(
        title="Creating n array elements", unit="s, B per element",
        systems=["charmpy", "charm4py", "python"],
        na={"ray": RPC_NA, "dask": RPC_NA, "mpi4py": "no distributed objects",
            "futures": RPC_NA, "pipe": RPC_NA},
        sizes=[10000, 100000, 1000000], smoke_sizes=[1000], pes=[2], launches=1, opt="n",
        per_launch=True, ladder=True),
}

PEERS = {}       # name -> {"ok": bool, "version" | "reason"} (setup_peers.sh)


def log(msg):
    print(f"suite: {msg}", file=sys.stderr, flush=True)


# ---- the machine -------------------------------------------------------------------
def sh(cmd, default=""):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        return default


def machine():
    info = {"cores": os.cpu_count(), "cpu_model": "", "memory_gib": None,
            "os": platform.platform(), "kernel": platform.release()}
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            info["cpu_model"] = m.group(1).strip() if m else ""
        with open("/proc/meminfo") as f:
            m = re.search(r"^MemTotal:\s*(\d+)", f.read(), re.M)
            info["memory_gib"] = round(int(m.group(1)) / 1048576, 1) if m else None
        with open("/etc/os-release") as f:
            m = re.search(r'^PRETTY_NAME="?([^"\n]*)', f.read(), re.M)
            if m:
                info["os"] = f"{m.group(1)}, Linux {platform.release()}"
    except OSError:
        pass
    return info


def versions():
    v = {"python": sh([CP_PY, "-c", "import sys; print(sys.version.split()[0])"]),
         "charmpy_numpy": sh([CP_PY, "-c", "import numpy; print(numpy.__version__)"]),
         "charmpy_git": sh(["git", "-C", ROOT, "describe", "--always", "--dirty"]),
         "mpirun": sh(["mpirun", "--version"]).split("\n")[0]}
    for name, p in PEERS.items():
        v[name] = p.get("version") if p.get("ok") else None
    return v


# ---- CPU load: other programs distort every figure on 2 cores -----------------------
def cpu_ticks():
    with open("/proc/stat") as f:
        a = [int(x) for x in f.readline().split()[1:9]]
    return sum(a) - a[3] - a[4], sum(a)          # busy, total


def busy_pct(dt=0.3):
    b0, t0 = cpu_ticks()
    time.sleep(dt)
    b1, t1 = cpu_ticks()
    return 100 * (b1 - b0) / max(1, t1 - t0)


class Quiet:
    """Waits (within a budget for the whole run) until the CPUs are idle."""

    def __init__(self, budget):
        self.budget = budget

    def wait(self):
        said = False
        while self.budget > 0:
            b = busy_pct()
            if b <= 15:
                return
            if not said:
                log(f"CPUs {b:.0f}% busy with other work: waiting (up to {self.budget:.0f} s in all)")
                said = True
            time.sleep(1)
            self.budget -= 1.3


# ---- one launch ----------------------------------------------------------------------
def base_env(reps, rep_time):
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               RAY_USAGE_STATS_ENABLED="0", PYTHONDONTWRITEBYTECODE="1",
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1",
               SUITE_REPS=str(reps), SUITE_TIME=str(rep_time))
    env.pop("SUITE_CHARM", None)
    return env


def why_failed(err, rc, timeout):
    if rc == "timeout":
        return f"timed out after {timeout} s"
    lines = [l.strip() for l in err.splitlines() if l.strip()]
    pick = [l for l in lines if re.search(r"error|exception|abort|could not|not found", l, re.I)]
    last = (pick or lines or [f"exit code {rc}, no message"])[-1]
    return f"exit {rc}: {last[:300]}"


def launch(argv, env, timeout, name):
    """Runs one program in its own process group; kills the group on time-out.
    Returns (rc or 'timeout', stdout, stderr, seconds, cpu% of other programs)."""
    os.makedirs(RAW, exist_ok=True)
    c0 = os.times()
    b0, t0 = cpu_ticks()
    w0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, cwd=ROOT, start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                break
            try:
                out, err = p.communicate(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            out, err = p.communicate()
        rc = "timeout"
    wall = time.monotonic() - w0
    b1, t1 = cpu_ticks()
    c1 = os.times()
    hz = os.sysconf("SC_CLK_TCK")
    mine = (c1.children_user + c1.children_system - c0.children_user - c0.children_system) * hz
    others = max(0.0, 100 * ((b1 - b0) - mine) / max(1, t1 - t0))
    with open(os.path.join(RAW, name + ".out"), "w") as f:
        f.write(" ".join(argv) + "\n" + (out or ""))
    with open(os.path.join(RAW, name + ".err"), "w") as f:
        f.write(err or "")
    return rc, out or "", err or "", wall, others


def results_of(out):
    recs = []
    for line in out.splitlines():
        if line.startswith("RESULT "):
            try:
                recs.append(json.loads(line[7:]))
            except ValueError:
                pass
    return recs


# ---- the run -------------------------------------------------------------------------
class Run:
    def __init__(self, args):
        self.args = args
        self.smoke = args.smoke
        self.results = []           # one record per figure (launches merged)
        self.status = []            # per bench/system/pes/size: not measured, and why
        self.checks = []            # smoke: (label, ok, detail)
        self.quiet = Quiet(0 if self.smoke else args.quiet_wait)
        self.retries = 0 if self.smoke else 6
        self.t_start = time.monotonic()
        self.reps = args.reps or (1 if self.smoke else 5)
        self.rep_time = args.time or (0.005 if self.smoke else None)

    def over_budget(self):
        return time.monotonic() - self.t_start > self.args.budget

    def unavailable(self, sysm):
        for need in sysm.needs:
            if need == "mpirun":
                if not sh(["sh", "-c", "command -v mpirun"]):
                    return "Open MPI's mpirun is not installed"
            elif not PEERS.get(need, {}).get("ok"):
                return PEERS.get(need, {}).get("reason", f"{need} is not installed")
        if sysm.key.startswith("charmpy") and not os.access(CHARMRUN, os.X_OK):
            return f"{CHARMRUN} missing (run make venv)"
        return None

    def note(self, bench, system, state, reason, pes=None, size=None):
        self.status.append(dict(bench=bench, system=system, state=state, reason=reason,
                                pes=pes, size=size))

    def run_bench(self, name):
        b = BENCHES[name]
        systems = [s for s in b["systems"] if not self.args.systems or s in self.args.systems]
        sizes = self.args.sizes or (b["smoke_sizes"] if self.smoke else b["sizes"])
        if b["opt"] is None:
            sizes = [None]
        pes_list = self.args.pes or b["pes"]
        launches = self.args.launches or (1 if self.smoke else b["launches"])
        rep_time = self.rep_time or b.get("time", 0.1)
        for key, why in b.get("na", {}).items():
            if not self.args.systems or key in self.args.systems:
                self.note(name, key, "n/a", why)
        for key in systems:
            sysm = SYSTEMS[key]
            why = self.unavailable(sysm)
            if why:
                self.note(name, key, "unavailable", why)
                if self.smoke:
                    print(f"skip {name} {key}: {why}")
                continue
            for pes in pes_list:
                groups = [[s] for s in sizes] if b.get("per_launch") else [sizes]
                prev = None                      # (size, seconds) of the last launch
                for group in groups:
                    size = group[0]
                    if self.over_budget():
                        self.note(name, key, "skipped", f"the suite's time budget "
                                  f"({self.args.budget:.0f} s) was used up", pes, size)
                        continue
                    if b.get("ladder") and prev and not self.smoke:
                        guess = prev[1] * size / prev[0]
                        if guess > self.args.launch_budget:
                            self.note(name, key, "skipped",
                                      f"predicted {guess:.0f} s from n={prev[0]} "
                                      f"(> {self.args.launch_budget:.0f} s a launch)", pes, size)
                            continue
                    wall = self.measure(name, b, sysm, pes, group, launches, rep_time)
                    if wall is None:
                        break                    # failed: larger sizes would fail too
                    prev = (size, wall)
        if name == "jacobi" and self.smoke:
            self.jacobi_check(systems)

    def opts(self, name, b, group):
        o = dict(b.get("extra", {}))
        if b["opt"] == "sizes":
            o["sizes"] = ",".join(str(s) for s in group)
        elif b["opt"]:
            o[b["opt"]] = group[0]
        if name == "jacobi" and self.args.blocks:
            o["blocks"] = self.args.blocks
        return o

    def measure(self, name, b, sysm, pes, group, launches, rep_time):
        """All launches of one program; merges their figures. Returns the
        wall time of the last launch, None when it failed."""
        argv = sysm.argv(name, pes, self.opts(name, b, group))
        env = base_env(self.reps, rep_time)
        env.update(sysm.env)
        one = group[0] if len(group) == 1 and group[0] else None      # a single size
        tag = f"{name}-{sysm.key}-p{pes}" + (f"-{one}" if one else "")
        per_fig = {}                                      # fig key -> list of launch records
        wall = None
        for l in range(launches):
            label = f"{name} {sysm.key} P={pes}" + (f" {b['opt']}={one}" if one else "") + \
                (f" ({l + 1}/{launches})" if launches > 1 else "")
            if not self.smoke:
                self.quiet.wait()
            log(label)
            rc, out, err, wall, others = launch(argv, env, self.args.timeout, f"{tag}-l{l + 1}")
            if rc == 0 and others > 20 and self.retries > 0:
                self.retries -= 1
                log(f"  other programs took {others:.0f}% of the CPUs meanwhile: once more")
                again = launch(argv, env, self.args.timeout, f"{tag}-l{l + 1}b")
                if again[0] == 0 and again[4] < others:
                    rc, out, err, wall, others = again
            recs = results_of(out)
            for r in recs:
                r["others_cpu"] = round(others, 1)
                k = tuple((kk, r.get(kk)) for kk in ("bench", "size", "n", "grid"))
                per_fig.setdefault(k, []).append(r)
            if rc != 0:
                why = why_failed(err, rc, self.args.timeout)
                got = {r.get("size") for r in recs}
                missing = [s for s in group if s not in got] if b["opt"] == "sizes" else group
                for s in missing or [None]:
                    self.note(name, sysm.key, "failed", why, pes, s)
                log(f"  failed: {why}")
                if self.smoke:
                    self.checks.append((label, False, why))
                self.merge(name, sysm, pes, per_fig, wall)
                return None
            if self.smoke:
                want = {"latency": "latency", "rate": "rate", "bw": "bw", "bcast": "bcast",
                        "jacobi": "jacobi", "create": "create"}[name]
                ok = any(r["bench"] == want for r in recs)
                shown = [f"{r['median']:.4g} {r['unit']}" for r in recs if r["bench"] == want]
                self.checks.append((label, ok, ", ".join(shown) or "no RESULT line"))
        self.merge(name, sysm, pes, per_fig, wall)
        return wall

    def merge(self, name, sysm, pes, per_fig, wall):
        for recs in per_fig.values():
            r0 = dict(recs[0])
            if r0["bench"] == "startup" and name != "latency":
                continue                 # the start-up time is reported once
            allreps = [v for r in recs for v in r["reps"]]
            meds = [r["median"] for r in recs]
            r0.update(system=sysm.key, label=self.label(name, sysm.key), pes=pes,
                      median=statistics.median(meds), min=min(allreps), max=max(allreps),
                      reps=allreps, launch_medians=meds, launches=len(recs),
                      others_cpu=max(r["others_cpu"] for r in recs),
                      launch_seconds=round(wall, 2) if wall else None)
            self.results.append(r0)

    @staticmethod
    def label(bench, key):
        return BENCHES[bench].get("labels", {}).get(key, SYSTEMS[key].label)

    def jacobi_check(self, systems):
        """The same algorithm everywhere: 10 iterations of the smoke grid give
        the same max change on every system and PE count."""
        vals = []
        for key in systems:
            sysm = SYSTEMS[key]
            if self.unavailable(sysm):
                continue
            for pes in (1, 2):
                argv = sysm.argv("jacobi", pes, {"grid": 64, "blocks": 4, "check": 10})
                env = base_env(1, 0.005)
                env.update(sysm.env)
                rc, out, err, _, _ = launch(argv, env, self.args.timeout, f"jacobi-check-{key}-p{pes}")
                got = [r["median"] for r in results_of(out) if r["bench"] == "jacobi_check"]
                if rc == 0 and got:
                    vals.append((f"{key} P={pes}", got[0]))
                else:
                    self.checks.append((f"jacobi check {key} P={pes}", False,
                                        why_failed(err, rc, self.args.timeout)))
        if vals:
            ref = vals[0][1]
            ok = all(abs(v - ref) <= 1e-12 * max(1.0, abs(ref)) for _, v in vals)
            self.checks.append(("jacobi same result on every system", ok,
                                ", ".join(f"{k}: {v:.12g}" for k, v in vals)))


# ---- the report ----------------------------------------------------------------------
def fnum(v, unit=""):
    if v is None:
        return "—"
    if unit == "msg/s":
        return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.1f} k"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fsize(n):
    if n is None:
        return "—"
    for u, s in (("MiB", MIB), ("KiB", 1024)):
        if n >= s and n % s == 0:
            return f"{n // s} {u}"
    return f"{n} B"


def fcount(n):
    return f"10^{len(str(n)) - 1}" if str(n).strip("0") == "1" else f"{n:,}"


def spread(r):
    """Half the range of the repetitions, in percent of the median."""
    if not r or r["median"] == 0 or len(r["reps"]) < 2:
        return ""
    return f" ±{50 * (r['max'] - r['min']) / r['median']:.0f}%"


class Report:
    def __init__(self, data):
        self.d = data
        self.res = data["results"]
        self.status = data["status"]

    def get(self, bench, system, pes=None, **k):
        for r in self.res:
            if r["bench"] == bench and r["system"] == system and (pes is None or r["pes"] == pes) \
                    and all(r.get(kk) == vv for kk, vv in k.items()):
                return r
        return None

    def why(self, bench, system, pes=None, size=None):
        for s in self.status:
            if s["bench"] == bench and s["system"] == system and \
                    (s["pes"] in (None, pes)) and (s["size"] in (None, size)):
                return s
        return None

    def cell(self, bench, system, unit, pes=None, **k):
        r = self.get(bench, system, pes, **k)
        if r:
            return fnum(r["median"], unit) + spread(r)
        size = next(iter(k.values()), None)
        s = self.why("create" if bench == "create_mem" else bench, system, pes, size)
        if s and s["state"] == "skipped":
            return "skipped¹"
        return "—"

    def systems_in(self, bench):
        b = BENCHES[bench]
        return [s for s in b["systems"] if any(r["bench"] == bench and r["system"] == s
                                               for r in self.res)
                or any(st["bench"] == bench and st["system"] == s for st in self.status)]

    def absent(self, bench):
        """Lines saying which systems are not in a table, and why."""
        lines, seen = [], set()
        for s in self.status:
            if s["bench"] != bench:
                continue
            key = (s["system"], s["state"], s["reason"])
            if key in seen:
                continue
            seen.add(key)
            where = ""
            if s["size"] is not None or s["pes"] is not None:
                parts = []
                if s["pes"] is not None:
                    parts.append(f"P={s['pes']}")
                if s["size"] is not None:
                    parts.append(str(s["size"]))
                where = " (" + ", ".join(parts) + ")"
            what = {"n/a": "not expressible", "unavailable": "not measured",
                    "failed": "failed", "skipped": "skipped¹"}[s["state"]]
            label = Run.label(bench, s["system"]) if s["system"] in SYSTEMS else s["system"]
            lines.append(f"- {label}{where}: {what}: {s['reason']}")
        return lines

    def table_by_size(self, bench, key, fmt_key, unit, systems):
        rows = sorted({r[key] for r in self.res if r["bench"] == bench and r.get(key) is not None})
        out = ["| " + key + " | " + " | ".join(Run.label(bench, s) for s in systems) + " |",
               "| ---: | " + " | ".join("---:" for _ in systems) + " |"]
        for v in rows:
            out.append(f"| {fmt_key(v)} | " +
                       " | ".join(self.cell(bench, s, unit, **{key: v}) for s in systems) + " |")
        return out

    def markdown(self):
        d = self.d
        m, v = d["machine"], d["versions"]
        L = [f"Measured {d['date']} by `python3 bench/suite/run.py` ({d['seconds']:.0f} s), "
             f"charmpy at {v.get('charmpy_git') or '?'}.", ""]
        L.append(f"- machine: {m['cores']} cores, {m['cpu_model']}, {m['memory_gib']} GiB, {m['os']}")
        peers = ", ".join(f"{k} {v[k]}" for k in ("mpi4py", "ray", "dask", "charm4py", "numpy")
                          if v.get(k))
        L.append(f"- Python {v.get('python')}; charmpy's numpy {v.get('charmpy_numpy')}; "
                 f"peers (bench/suite/.venv): {peers or 'none'}; {v.get('mpirun')}")
        missing = [f"{k}: {p.get('reason')}" for k, p in d["peers"].items() if not p.get("ok")]
        if missing:
            L.append("- peers that could not be installed: " + "; ".join(missing))
        s = d["settings"]
        L.append(f"- figures: median of {s['reps']} repetitions of ~{s['rep_time']} s "
                 f"(Jacobi ~{s['jacobi_rep_time']} s) after a warm-up; latency and rate: median "
                 f"of the medians of {s['launches']['latency']} launches, each a fresh start; "
                 f"± is half the range of all repetitions, in % of the median")
        worst = max((r.get("others_cpu") or 0 for r in self.res), default=0)
        busy = sorted({f"{r['bench']} {r['system']}" for r in self.res
                       if (r.get("others_cpu") or 0) > 20 and r["bench"] in BENCHES})
        L.append(f"- other programs' CPU use during a launch: at most {worst:.0f}%" +
                 (f" (over 20% during: {', '.join(busy)})" if busy else ""))
        L.append("")
        L += self.targets()
        L += self.sec_latency() + self.sec_rate() + self.sec_bw() + self.sec_bcast() + \
            self.sec_jacobi() + self.sec_create()
        if any(st["state"] == "skipped" for st in self.status):
            L += ["¹ skipped to keep the run bounded in time; run it alone with "
                  "`--only BENCH --sizes N --launch-budget SECONDS`.", ""]
        return "\n".join(L)

    def section(self, bench, body):
        b = BENCHES[bench]
        L = [f"### {b['title']} ({b['unit']})", ""] + body
        ab = self.absent(bench)
        if ab:
            L += [""] + ab
        return L + [""]

    def sec_latency(self):
        systems = self.systems_in("latency")
        body = self.table_by_size("latency", "size", fsize, "us", systems)
        su = [f"{SYSTEMS[r['system']].label} {r['median']:.1f} s" for r in self.res
              if r["bench"] == "startup"]
        if su:
            body += ["", "Start-up (first launch, included in no figure): " + ", ".join(su) + "."]
        body += ["", "![latency](img/suite-latency.png)"]
        return self.section("latency", body)

    def sec_rate(self):
        cp = self.get("rate", "charmpy")
        body = ["| system | msg/s | charmpy (shm) / system |", "| --- | ---: | ---: |"]
        for s in self.systems_in("rate"):
            r = self.get("rate", s)
            ratio = f"{cp['median'] / r['median']:.2f}" if r and cp else "—"
            body.append(f"| {Run.label('rate', s)} | {self.cell('rate', s, 'msg/s')} | {ratio} |")
        w = cp.get("window") if cp else None
        body += ["", f"Windows of {w or 64} calls of 8 B (an int) in flight, one acknowledgement "
                 "a window.", "", "![rate](img/suite-rate.png)"]
        return self.section("rate", body)

    def sec_bw(self):
        systems = self.systems_in("bw")
        body = self.table_by_size("bw", "size", fsize, "GB/s", systems)
        body += ["", "![bandwidth](img/suite-bandwidth.png)"]
        return self.section("bw", body)

    def sec_bcast(self):
        systems = self.systems_in("bcast")
        body = self.table_by_size("bcast", "n", fcount, "us", systems)
        body += ["", "![bcast](img/suite-bcast.png)"]
        return self.section("bcast", body)

    def sec_jacobi(self):
        pes = sorted({r["pes"] for r in self.res if r["bench"] == "jacobi"})
        grid = next((r["grid"] for r in self.res if r["bench"] == "jacobi"), None)
        hdr = "| system | " + " | ".join(f"P={p} ms/iter" for p in pes) + \
              " | " + " | ".join(f"P={p} / mpi4py" for p in pes) + " | parallel efficiency |"
        body = [hdr, "| --- |" + " ---: |" * (2 * len(pes) + 1)]
        for s in self.systems_in("jacobi"):
            cells = [self.cell("jacobi", s, "ms", p) for p in pes]
            ratios = []
            for p in pes:
                r, m = self.get("jacobi", s, p), self.get("jacobi", "mpi4py", p)
                ratios.append(f"{r['median'] / m['median']:.2f}" if r and m else "—")
            eff = "—"
            if len(pes) > 1 and pes[0] == 1:
                r1, rp = self.get("jacobi", s, 1), self.get("jacobi", s, pes[-1])
                if r1 and rp:
                    eff = f"{r1['median'] / (pes[-1] * rp['median']):.2f} (P={pes[-1]})"
            body.append(f"| {Run.label('jacobi', s)} | " + " | ".join(cells + ratios) + f" | {eff} |")
        blocks = next((r.get("blocks") for r in self.res if r["bench"] == "jacobi"
                       and r["system"] == "charmpy"), None)
        body += ["", f"Grid {grid}x{grid}; charmpy and charm4py: {blocks} blocks (chares) in all, "
                 "spread over the PEs; mpi4py: one block per rank. Parallel efficiency = "
                 "T(1) / (P T(P)).", "", "![jacobi](img/suite-jacobi.png)"]
        return self.section("jacobi", body)

    def sec_create(self):
        systems = self.systems_in("create")
        ns = sorted({r["n"] for r in self.res if r["bench"] == "create"})
        body = ["| n | " + " | ".join(f"{Run.label('create', s)} s | B/element" for s in systems) + " |",
                "| ---: |" + " ---: | ---: |" * len(systems)]
        for n in ns:
            cells = []
            for s in systems:
                cells.append(self.cell("create", s, "s", n=n))
                cells.append(self.cell("create_mem", s, "B", n=n))
            body.append(f"| {fcount(n)} | " + " | ".join(cells) + " |")
        pes = next((r["pes"] for r in self.res if r["bench"] == "create" and r["system"] != "python"), None)
        body += ["", f"Array elements of an empty chare class on {pes} PEs; `Array(...)` + "
                 "`awaitCreation`; memory: growth of the resident set summed over the PEs, per "
                 "element. Plain Python objects: one process, an instance with its index tuple, "
                 "kept in a list."]
        return self.section("create", body)

    def target_rows(self):
        """(target, charmpy figure, peer figure, ratio, required, met?)."""
        rows = []
        lat = [r for r in self.res if r["bench"] == "latency" and r["system"] == "charmpy"]
        small = min((r["size"] for r in lat), default=None)

        def lat_of(sysk):
            r = self.get("latency", sysk, size=small)
            return r["median"] if r else None

        def row(text, a, b, ratio, need, higher_better, unit):
            rows.append(dict(text=text, a=a, b=b, ratio=ratio, need=need,
                             higher=higher_better, unit=unit))
        for layer in ("charmpy", "charmpy-mpi"):
            cp = lat_of(layer)
            if cp is None:
                continue
            tag = "" if layer == "charmpy" else " (mpi layer)"
            for peer, need, text in (("mpi4py", 1.0, "at or below mpi4py pickled"),
                                     ("charm4py", 3.0, "at least 3x lower than charm4py"),
                                     ("ray", 50.0, "at least 50x lower than Ray actor calls"),
                                     ("dask", 50.0, "at least 50x lower than Dask actor calls")):
                if layer == "charmpy-mpi" and peer != "mpi4py":
                    continue
                p = lat_of(peer)
                if peer == "mpi4py":
                    row(f"latency {fsize(small)}{tag} {text}", cp, p,
                        p and cp / p, need, False, "µs")
                else:
                    row(f"latency {fsize(small)}{tag} {text}", cp, p,
                        p and p / cp, need, True, "µs")
        rc = self.get("rate", "charmpy")
        if rc:
            row("message rate at least 1 M/s per PE pair", rc["median"], None,
                rc["median"] / 1e6, 1.0, True, "msg/s")
            r4 = self.get("rate", "charm4py")
            row("message rate at least 5x charm4py", rc["median"], r4 and r4["median"],
                r4 and rc["median"] / r4["median"], 5.0, True, "msg/s")
        for r in sorted((r for r in self.res if r["bench"] == "bw" and r["system"] == "charmpy"),
                        key=lambda r: r["size"]):
            m = self.get("bw", "mpi4py-buf", size=r["size"])
            row(f"numpy bandwidth {fsize(r['size'])} at least 0.8x mpi4py buffers",
                r["median"], m and m["median"], m and r["median"] / m["median"], 0.8, True, "GB/s")
        for r in sorted((r for r in self.res if r["bench"] == "jacobi" and r["system"] == "charmpy"),
                        key=lambda r: r["pes"]):
            m = self.get("jacobi", "mpi4py", r["pes"])
            row(f"Jacobi P={r['pes']} within 1.1x of mpi4py's time per iteration",
                r["median"], m and m["median"], m and r["median"] / m["median"], 1.1, False, "ms")
        return rows

    def targets(self):
        L = ["### Targets", "",
             "| target | charmpy | peer | ratio | required | met? |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
        for t in self.target_rows():
            unit = t["unit"]
            a, b = fnum(t["a"], unit), fnum(t["b"], unit) if t["b"] is not None else "—"
            if t["ratio"] is None:
                L.append(f"| {t['text']} | {a} | {b} | — | — | not measured |")
                continue
            need = ("≥ " if t["higher"] else "≤ ") + f"{t['need']:g}"
            ok = t["ratio"] >= t["need"] if t["higher"] else t["ratio"] <= t["need"]
            gap = t["ratio"] / t["need"] if t["higher"] else t["need"] / t["ratio"]
            verdict = (f"yes (margin {gap:.2f}x)" if ok else f"**no** (short by {1 / gap:.2f}x)")
            L.append(f"| {t['text']} | {a} | {b} | {t['ratio']:.2f} | {need} | {verdict} |")
        L += ["", "Ratios: latency and Jacobi are charmpy / peer (lower is better) except where "
              "the target says \"x lower than\" (peer / charmpy); rate and bandwidth are "
              "charmpy / peer. Every ratio compares figures of this run.", ""]
        return L

    def text_summary(self):
        """What a user running one benchmark alone sees on the terminal."""
        L = []
        for r in self.res:
            k = next((f"{kk}={r[kk]}" for kk in ("size", "n", "grid") if r.get(kk) is not None), "")
            L.append(f"{r['bench']:12s} {r['label']:22s} P={r['pes']} {k:14s} "
                     f"{fnum(r['median'], r['unit'])} {r['unit']}{spread(r)}")
        for s in self.status:
            if s["state"] != "n/a":
                L.append(f"{s['bench']:12s} {s['system']:22s} {s['state']}: {s['reason']}")
        return "\n".join(L)


def write_doc(md):
    block = f"{MARK_BEGIN}\n{md}\n{MARK_END}"
    text = ""
    if os.path.exists(DOC):
        with open(DOC) as f:
            text = f.read()
    if MARK_BEGIN in text and MARK_END in text:
        a = text.index(MARK_BEGIN)
        b = text.index(MARK_END) + len(MARK_END)
        text = text[:a] + block + text[b:]
    else:
        text = "# charmpy beside its peers\n\n## Results\n\n" + block + "\n"
    with open(DOC, "w") as f:
        f.write(text)


def load_peers(install):
    script = os.path.join(HERE, "setup_peers.sh")
    cmd = [script] if install else [script, "--check"]
    if install:
        log("installing the peers into bench/suite/.venv (setup_peers.sh; minutes the first time)")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        log(f"setup_peers.sh failed: {r.stderr.strip()[-300:]}")
    try:
        with open(os.path.join(OUT, "peers.json")) as f:
            PEERS.update(json.load(f)["peers"])
    except (OSError, ValueError, KeyError) as e:
        log(f"no peer status ({e}): every peer is reported unavailable")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[1:]))
    lst = lambda t: [x for x in t.split(",") if x]          # noqa: E731
    ints = lambda t: [int(float(x)) for x in lst(t)]        # noqa: E731
    ap.add_argument("--only", type=lst, help=f"benchmarks, comma-separated ({', '.join(BENCHES)})")
    ap.add_argument("--systems", type=lst, help=f"systems ({', '.join(SYSTEMS)})")
    ap.add_argument("--sizes", type=ints, help="bytes (latency, bw), elements (bcast, create), "
                    "grid side (jacobi); e.g. 8,1024 or 1e6")
    ap.add_argument("--pes", type=ints, help="PE counts (default 2; jacobi 1,2); latency, rate "
                    "and bw run between PE 0 and PE 1 (both on PE 0 with 1 PE); mpi4py needs 2 "
                    "there, and the other peers ignore it")
    ap.add_argument("--blocks", type=int, help="jacobi: blocks per side for charmpy/charm4py (4)")
    ap.add_argument("--launches", type=int, help="launches per program (latency, rate: 3)")
    ap.add_argument("--reps", type=int, help="repetitions per launch (5)")
    ap.add_argument("--time", type=float, help="seconds per repetition (0.1; jacobi 0.5)")
    ap.add_argument("--timeout", type=float, default=240, help="seconds a launch may take (240)")
    ap.add_argument("--launch-budget", type=float, default=60,
                    help="bcast/create: skip a size predicted to take longer (60 s)")
    ap.add_argument("--budget", type=float, default=840,
                    help="seconds for the whole run; later launches are skipped (840)")
    ap.add_argument("--quiet-wait", type=float, default=90,
                    help="seconds in all to wait for idle CPUs before launches (90)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, everything once")
    ap.add_argument("--no-install", action="store_true", help="do not install peers")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/ (full run)")
    ap.add_argument("--report", metavar="RESULTS.json",
                    help="measure nothing: write docs/ again from a full run's results file")
    args = ap.parse_args()
    if args.report:
        with open(args.report) as f:
            data = json.load(f)
        PEERS.update(data["peers"])
        publish(data, Report(data).markdown())
        return
    if args.smoke:
        args.timeout = min(args.timeout, 120)
    for b in args.only or []:
        if b not in BENCHES:
            ap.error(f"unknown benchmark {b!r} (one of {', '.join(BENCHES)})")
    for s in args.systems or []:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s!r} (one of {', '.join(SYSTEMS)})")
    if not os.access(CHARMRUN, os.X_OK):
        sys.exit(f"suite: {CHARMRUN} is missing: run `make venv` first")
    os.makedirs(RAW, exist_ok=True)

    load_peers(install=not (args.no_install or args.smoke))
    run = Run(args)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for name in args.only or BENCHES:
        run.run_bench(name)
    data = {"date": date, "seconds": round(time.monotonic() - run.t_start, 1),
            "machine": machine(), "versions": versions(), "peers": PEERS,
            "settings": {"reps": run.reps, "rep_time": run.rep_time or 0.1,
                         "jacobi_rep_time": run.rep_time or BENCHES["jacobi"]["time"],
                         "launches": {k: (args.launches or (1 if args.smoke else b["launches"]))
                                      for k, b in BENCHES.items()},
                         "rate_window": 64, "bw_window": 8, "smoke": args.smoke,
                         "argv": sys.argv[1:]},
            "results": run.results, "status": run.status}
    rep = Report(data)

    if args.smoke:
        with open(os.path.join(OUT, "smoke.json"), "w") as f:
            json.dump(data, f, indent=1)
        npass = sum(ok for _, ok, _ in run.checks)
        nfail = len(run.checks) - npass
        for label, ok, detail in run.checks:
            print(f"{'ok  ' if ok else 'FAIL'} {label}: {detail}")
        print(f"smoke: {npass} passed, {nfail} failed")
        sys.exit(1 if nfail or not run.checks else 0)

    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(data, f, indent=1)
    print(rep.text_summary())
    md = rep.markdown()
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(md + "\n")
    log(f"results: {os.path.relpath(os.path.join(OUT, 'results.json'), ROOT)}, "
        f"{os.path.relpath(os.path.join(OUT, 'results.md'), ROOT)} ({data['seconds']:.0f} s)")
    if args.only or args.no_docs or args.systems or args.sizes or args.pes:
        return
    publish(data, md)


def publish(data, md):
    """A full run's committed copies: docs/suite-results.json, the tables in
    docs/suite.md, the plots in docs/img/."""
    with open(DOC_JSON, "w") as f:
        json.dump(data, f, indent=1)
    write_doc(md)
    if PEERS.get("matplotlib", {}).get("ok"):
        os.makedirs(IMG, exist_ok=True)
        r = subprocess.run([SUITE_PY, os.path.join(HERE, "plot.py"), DOC_JSON, IMG],
                           capture_output=True, text=True, timeout=300)
        log("plots: " + (r.stdout.strip() or r.stderr.strip()[-300:]))
    else:
        log("no plots: matplotlib is not installed in bench/suite/.venv")
    log(f"wrote {os.path.relpath(DOC, ROOT)} and {os.path.relpath(DOC_JSON, ROOT)}")


if __name__ == "__main__":
    main()
