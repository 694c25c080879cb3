#!/usr/bin/env python3
"""xalloc benchmark runner (python3 standard library only).

  python3 bench/run.py [options]             all workloads x all allocators
  python3 bench/run.py --quick               CI mode, < 60 s on 2 cores
  python3 bench/run.py callgrind [options]   instructions per malloc/free pair
  bench/scaling [options]                    thread scaling (see that script)

Every workload runs under every allocator: xalloc (LD_PRELOAD=lib/libxalloc.so),
glibc (no preload), jemalloc, tcmalloc, mimalloc (LD_PRELOAD of the Debian
libraries).  Runs are interleaved -- run 1 of every (workload, allocator), then
run 2, ... with the allocator order rotated each run -- and the median of the
runs is reported.  Per run: wall time, user+sys CPU time and peak RSS of the
child (wait4 rusage ru_maxrss, taken by the static helper build/bench/launch,
see launch.c for why not os.wait4 here).  A missing peer library is skipped with a note; an
xalloc cell that fails (library missing, not interposing malloc, crash,
verification failure, timeout) is reported as FAIL and the runner goes on, but
exits with status 1 at the end.

Results go to bench/results/ (override with --out): results.csv (medians),
raw.csv (every run), table.md (also printed), rss_time.png/.svg and
time.png/.svg (gnuplot), and the gnuplot scripts and data they came from.
"""
import argparse
import csv
import glob
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "bench")
DEFAULT_OUT = os.path.join(ROOT, "bench", "results")
# BENCH_XALLOC=/path/to/lib.so measures another build in the xalloc column
# (then `make lib` is not run)
XALLOC_SO = os.environ.get("BENCH_XALLOC") or os.path.join(ROOT, "lib", "libxalloc.so")

# --------------------------------------------------------------------------
# allocators

PEERS = [
    # name, glob patterns (first existing wins), Debian package (for the version)
    ("jemalloc", ["/usr/lib/*/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2",
                  "/usr/local/lib/libjemalloc.so.2"], "libjemalloc2"),
    ("tcmalloc", ["/usr/lib/*/libtcmalloc_minimal.so.4", "/usr/lib/libtcmalloc_minimal.so.4",
                  "/usr/local/lib/libtcmalloc_minimal.so.4"], "libtcmalloc-minimal4"),
    ("mimalloc", ["/usr/lib/*/libmimalloc.so.2", "/usr/lib/*/libmimalloc.so.2.*",
                  "/usr/lib/libmimalloc.so.2", "/usr/local/lib/libmimalloc.so.2*"], "libmimalloc2.0"),
]
ALL_ALLOCS = ["xalloc", "glibc", "jemalloc", "tcmalloc", "mimalloc"]


class Alloc:
    def __init__(self, name, lib, note="", ok=True):
        self.name = name
        self.lib = lib          # path to LD_PRELOAD, or None for glibc
        self.note = note        # why it is unusable / extra info
        self.ok = ok            # False: every cell is FAIL (xalloc) or skipped (peer)
        self.version = ""
        self.conf = ""          # XALLOC_CONF for this column (variants)

    def env(self, base=None):
        env = dict(os.environ if base is None else base)
        env.pop("LD_PRELOAD", None)
        if self.lib:
            env["LD_PRELOAD"] = self.lib
        if self.conf:
            env["XALLOC_CONF"] = self.conf
        return env


def find_peer(patterns):
    for pat in patterns:
        for p in sorted(glob.glob(pat)):
            if os.path.exists(p):
                return p
    return None


def pkg_version(pkg):
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True,
                           text=True, timeout=10)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def build_xalloc(log):
    """make lib; returns (ok, message)."""
    make = os.environ.get("MAKE", "make")
    try:
        r = subprocess.run([make, "-s", "lib"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as e:
        return False, "make lib could not run: %s" % e
    if r.returncode != 0:
        tail = (r.stdout + r.stderr).strip().splitlines()[-5:]
        log("make lib FAILED:\n    " + "\n    ".join(tail))
        return False, "make lib failed"
    return True, ""


def probe(alloc, timeout=20, wrapper=None):
    """Check that malloc/free/realloc/calloc resolve into the allocator's library.
    Returns '' if fine, else a reason."""
    exe = os.path.join(BUILD, "cg_micro")
    cmd = (wrapper or []) + [exe, "probe"]
    try:
        r = subprocess.run(cmd, env=alloc.env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "probe timed out"
    except OSError as e:
        return "probe failed: %s" % e
    if r.returncode != 0:
        return "probe exited with %s: %s" % (r.returncode, (r.stderr.strip().splitlines() or [""])[-1])
    want = os.path.realpath(alloc.lib) if alloc.lib else None
    got = {}
    for line in r.stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            got[parts[0]] = parts[1].strip()
    for fn in ("malloc", "free", "realloc", "calloc"):
        path = got.get(fn, "?")
        if path == "?":
            return "%s not found by dlsym" % fn
        real = os.path.realpath(path) if os.path.exists(path) else path
        if want:
            if real != want:
                return "%s resolves to %s, not %s" % (fn, path, alloc.lib)
        elif "libc.so" not in os.path.basename(path):
            return "%s resolves to %s, not glibc" % (fn, path)
    if "ERROR: ld.so" in r.stderr:
        return r.stderr.strip().splitlines()[0]
    return ""


def setup_allocators(names, build_lib, log, wrapper=None):
    allocs = []
    for name in names:
        if "=" in name or "@" in name:
            # A/B variant of xalloc: LABEL=/path/lib.so and/or LABEL@XALLOC_CONF
            label, _, conf = name.partition("@")
            label, _, lib = label.partition("=")
            a = Alloc(label, os.path.abspath(lib) if lib else XALLOC_SO)
            a.conf = conf
            a.version = conf
            why = probe(a, wrapper=wrapper) if os.path.exists(a.lib) else "no " + a.lib
            if why:
                a.ok, a.note = False, "not usable: " + why
            allocs.append(a)
        elif name == "xalloc":
            a = Alloc("xalloc", XALLOC_SO)
            if build_lib and not os.environ.get("BENCH_XALLOC"):
                ok, msg = build_xalloc(log)
                if not ok:
                    a.ok, a.note = False, msg
            if a.ok and not os.path.exists(XALLOC_SO):
                a.ok, a.note = False, "lib/libxalloc.so missing"
            if a.ok:
                why = probe(a, wrapper=wrapper)
                if why:
                    a.ok, a.note = False, "not usable: " + why
            allocs.append(a)
        elif name == "glibc":
            a = Alloc("glibc", None)
            a.version = platform.libc_ver()[1] or os.confstr("CS_GNU_LIBC_VERSION")
            why = probe(a, wrapper=wrapper)
            if why:
                a.ok, a.note = False, why
            allocs.append(a)
        else:
            spec = [p for p in PEERS if p[0] == name]
            if not spec:
                raise SystemExit("unknown allocator %r (known: %s)" % (name, ", ".join(ALL_ALLOCS)))
            _, pats, pkg = spec[0]
            env_path = os.environ.get("BENCH_%s" % name.upper())
            path = env_path or find_peer(pats)
            if not path or not os.path.exists(path):
                a = Alloc(name, None, "library not found (skipped)", ok=False)
            else:
                a = Alloc(name, path)
                a.version = pkg_version(pkg)
                why = probe(a, wrapper=wrapper)
                if why:
                    a.ok, a.note = False, "skipped: " + why
            allocs.append(a)
    return allocs


# --------------------------------------------------------------------------
# workloads

class Workload:
    def __init__(self, name, prog, threaded, quick_scale, extra=(), quick_extra=None, kind="time",
                 desc="", env=None, pretouch_mib=0):
        self.name = name
        self.prog = prog
        self.threaded = threaded
        self.quick_scale = quick_scale
        self.extra = list(extra)
        self.quick_extra = list(quick_extra) if quick_extra is not None else list(extra)
        self.kind = kind        # time | frag | rss
        self.desc = desc
        self.env = env or {}    # extra environment (e.g. BENCH_VERBOSE for diagnostics)
        # MiB written just before each run at scale 1 (run_child): about its
        # peak RSS, for the workloads whose time moved 2-4x with the order of
        # the runs on the shared VM (a run after a pause, on pages the host
        # had taken back, against one right after another run)
        self.pretouch_mib = pretouch_mib

    def argv(self, threads, scale, quick):
        return [os.path.join(BUILD, self.prog), str(threads if self.threaded else 1), "%g" % scale] + \
            [str(x) for x in (self.quick_extra if quick else self.extra)]


WORKLOADS = [
    Workload("larson", "larson", True, 0.08, desc="server sim, slot arrays handed to successor threads"),
    Workload("xmalloc", "xmalloc", True, 0.1, desc="producers allocate, consumers free (remote frees)"),
    Workload("cache-scratch", "cache_scratch", True, 0.1, desc="passive false sharing",
             env={"BENCH_VERBOSE": "1"}),
    Workload("cache-thrash", "cache_thrash", True, 0.15, desc="active false sharing",
             env={"BENCH_VERBOSE": "1"}),
    Workload("mstress", "mstress", True, 0.08, desc="mixed lifetimes/sizes, thread churn"),
    Workload("sh6bench", "sh6bench", True, 0.15, desc="bursts freed LIFO/FIFO/random"),
    Workload("sh8bench", "sh8bench", True, 0.1, desc="sh6 + cross-thread frees"),
    Workload("glibc-simple", "glibc_simple", False, 0.12, desc="1 thread, 4 small sizes, tight loops"),
    Workload("glibc-thread", "glibc_thread", True, 0.12, desc="threads, random sizes, working set"),
    Workload("exprtree", "exprtree", False, 0.1, desc="symbolic differentiation/simplification"),
    Workload("large", "large", False, 1.0 / 32, desc="1 MiB..512 MiB blocks, realloc growth",
             pretouch_mib=1500),
    Workload("frag", "frag", False, 0.15, kind="frag", desc="fragmentation phases", pretouch_mib=600),
    Workload("rss-time", "rss_time", False, 1.0 / 16, extra=[0, 15000, 100], quick_extra=[0, 1000, 100],
             kind="rss", desc="1 GiB of 16-112 B blocks freed, then idle", pretouch_mib=1200),
    Workload("rss-time-1pct", "rss_time", False, 1.0 / 16, extra=[10, 15000, 100],
             quick_extra=[10, 1000, 100], kind="rss", desc="same, 1% kept alive", pretouch_mib=1200),
]
THREADED = [w.name for w in WORKLOADS if w.threaded]


# --------------------------------------------------------------------------
# running one child

class RunResult:
    __slots__ = ("status", "wall", "cpu", "maxrss", "stdout", "note", "rc", "stderr", "faults")

    def __init__(self, status, wall=None, cpu=None, maxrss=None, stdout="", note="", rc=None, stderr=""):
        self.faults = None      # minor page faults
        self.status = status    # OK FAIL CRASH TIMEOUT SKIP
        self.wall = wall
        self.cpu = cpu
        self.maxrss = maxrss    # KiB
        self.stdout = stdout
        self.note = note
        self.rc = rc
        self.stderr = stderr


_current_child = [None]
LAUNCH = os.path.join(BUILD, "launch")


def run_child(argv, env, timeout, stdin_path=None, cwd=ROOT, pretouch_mib=0):
    """Run argv under the static helper build/bench/launch, which forks, execs
    argv, wait4()s for it and reports exit status, wall time, user/sys time and
    ru_maxrss (see launch.c for why Python's own os.wait4 would overstate
    ru_maxrss).  The helper and the program get their own process group,
    which is SIGKILLed on timeout.  stdin_path: the program's standard input
    (default /dev/null); cwd: its working directory; pretouch_mib: MiB the
    helper writes and unmaps first, untimed (launch.c -t: on a VM whose host
    takes back freed pages, the first process to touch memory after a pause
    pays the host's faults).  Returns a RunResult."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    rep_fd, rep_path = tempfile.mkstemp(prefix="bench-rusage-")
    os.close(rep_fd)
    lock = threading.Lock()
    state = {"done": False, "killed": False}
    exe = argv[0] if os.path.sep in argv[0] else (shutil.which(argv[0]) or argv[0])
    pre = ["-t", str(int(pretouch_mib))] if pretouch_mib >= 1 else []
    cmd = [LAUNCH] + pre + [rep_path, exe] + list(argv[1:])
    try:
        t0 = time.perf_counter()
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, stdin=stdin,
                             start_new_session=True, cwd=cwd)
        if stdin_path:
            stdin.close()
    except OSError as e:
        os.unlink(rep_path)
        return RunResult("FAIL", note="cannot start: %s" % e)
    _current_child[0] = p.pid

    def kill():
        with lock:
            if not state["done"]:
                state["killed"] = True
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass

    timer = threading.Timer(timeout, kill)
    timer.daemon = True
    timer.start()
    try:
        # wait without reaping, so the process group id stays ours until the
        # timer is disarmed; then reap
        while True:
            try:
                os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
                break
            except InterruptedError:
                continue
        py_wall = time.perf_counter() - t0
        with lock:
            state["done"] = True
        timer.cancel()
        try:  # nothing of the run may outlive it
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        _, lstatus, _ = os.wait4(p.pid, 0)
    finally:
        _current_child[0] = None
    p.returncode = -1  # reaped by us; keep Popen from waiting again
    out.seek(0)
    err.seek(0)
    stdout = out.read().decode("utf-8", "replace")
    stderr = err.read().decode("utf-8", "replace")
    out.close()
    err.close()
    try:
        with open(rep_path) as f:
            rep = f.read().split()
    except OSError:
        rep = []
    os.unlink(rep_path)
    last_err = " | ".join(stderr.strip().splitlines()[-2:])[:300]
    if state["killed"]:
        return RunResult("TIMEOUT", py_wall, None, None, stdout, "killed after %gs" % timeout)
    if len(rep) != 7:
        return RunResult("FAIL", py_wall, None, None, stdout,
                         "launcher failed (status %d): %s" % (lstatus, last_err))
    rc, sig = int(rep[0]), int(rep[1])
    wall, cpu, maxrss = float(rep[2]), float(rep[3]) + float(rep[4]), int(rep[5])
    if sig:
        try:
            signame = signal.Signals(sig).name
        except ValueError:
            signame = "signal %d" % sig
        return RunResult("CRASH", wall, cpu, maxrss, stdout, signame + (": " + last_err if last_err else ""),
                         rc=-sig)
    if rc != 0:
        kind = {3: "verification failed", 4: "out of memory", 2: "usage", 127: "exec failed"}.get(
            rc, "exit %d" % rc)
        return RunResult("FAIL", wall, cpu, maxrss, stdout, kind + (": " + last_err if last_err else ""), rc=rc)
    if "ERROR: ld.so" in stderr:
        return RunResult("FAIL", wall, cpu, maxrss, stdout, last_err, rc=rc)
    res = RunResult("OK", wall, cpu, maxrss, stdout, rc=0, stderr=stderr)
    res.faults = int(rep[6])
    return res


# --------------------------------------------------------------------------
# parsing workload output

def parse_kv(text):
    d = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            line = line[1:].strip()
        parts = line.split()
        if len(parts) == 2 and not re.match(r"^-?\d", parts[0]):
            try:
                d[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return d


def parse_rss(text):
    kv, samples = {}, []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line[1:].split()
            if len(parts) == 2:
                try:
                    kv[parts[0]] = float(parts[1])
                except ValueError:
                    pass
            continue
        parts = line.split()
        if len(parts) == 2:
            try:
                samples.append((float(parts[0]), float(parts[1])))
            except ValueError:
                pass
    return kv, samples


def time_metric(w, r):
    """The number the time table shows: wall seconds, except for rss-time
    where it is the burst (alloc + free) time the program measured itself."""
    if r.status != "OK":
        return None
    if w.kind == "rss":
        kv, _ = parse_rss(r.stdout)
        if "alloc_ms" in kv and "free_ms" in kv:
            return (kv["alloc_ms"] + kv["free_ms"]) / 1000.0
        return None
    return r.wall


# --------------------------------------------------------------------------
# formatting helpers

def fmt_num(v, digits=3):
    if v is None:
        return "-"
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    dec = max(0, digits - 1 - mag)
    return "%.*f" % (dec, v)


def fmt_ratio(v):
    return "-" if v is None else "x%.2f" % v


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    if not xs:
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def md_table(header, rows, align=None):
    out = ["| " + " | ".join(header) + " |"]
    align = align or (["l"] + ["r"] * (len(header) - 1))
    out.append("|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|")
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    return "\n".join(out)


def machine_info():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d CPUs, Linux %s, glibc %s" % (model or platform.machine(), os.cpu_count() or 0,
                                               platform.release(), platform.libc_ver()[1])


# --------------------------------------------------------------------------
# gnuplot

def have_gnuplot():
    return shutil.which("gnuplot") is not None


def run_gnuplot(script_path, log):
    try:
        r = subprocess.run(["gnuplot", script_path], capture_output=True, text=True, timeout=60,
                           cwd=os.path.dirname(script_path))
        if r.returncode != 0:
            log("gnuplot failed for %s: %s" % (os.path.basename(script_path), r.stderr.strip()[-300:]))
            return False
        return True
    except (OSError, subprocess.SubprocessError) as e:
        log("gnuplot failed: %s" % e)
        return False


def png_terminal():
    try:
        r = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True, timeout=20)
        if "pngcairo" in (r.stdout + r.stderr):
            return "pngcairo"
    except (OSError, subprocess.SubprocessError):
        pass
    return "png"


def gp_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------
# the main benchmark

def log_to(stream):
    def log(msg):
        print(msg, file=stream, flush=True)
    return log


def main_bench(args):
    log = log_to(sys.stderr)
    t_start = time.monotonic()
    quick = args.quick
    runs = args.runs if args.runs else (2 if quick else 5)
    rss_runs = args.rss_runs if args.rss_runs else 1
    threads = args.threads or max(2, os.cpu_count() or 2)
    timeout = args.timeout or (6.0 if quick else 300.0)
    budget = args.budget if args.budget is not None else (45.0 if quick else 0.0)
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)

    if not args.no_build:
        build_progs(log)
    names = args.alloc.split(",") if args.alloc else ALL_ALLOCS
    allocs = setup_allocators(names, build_lib=not args.no_build_lib, log=log)
    for a in allocs:
        status = "ok" if a.ok else ("FAIL" if a.name == "xalloc" else "skipped")
        log("allocator %-9s %-7s %s %s" % (a.name, status, a.lib or "(no preload)", a.note))

    wls = WORKLOADS
    if args.only:
        want = args.only.split(",")
        unknown = [x for x in want if x not in [w.name for w in WORKLOADS]]
        if unknown:
            raise SystemExit("unknown workload(s): %s" % ", ".join(unknown))
        wls = [w for w in WORKLOADS if w.name in want]

    # results[(w, a)] = list of RunResult
    results = {(w.name, a.name): [] for w in wls for a in allocs}
    failed_cells = set()
    active = [a for a in allocs if a.ok]
    for a in allocs:
        if not a.ok and a.name == "xalloc":
            for w in wls:
                results[(w.name, a.name)].append(RunResult("FAIL", note=a.note))
                failed_cells.add((w.name, a.name))

    raw_rows = []
    over_budget = False
    max_runs = max(runs, rss_runs)
    for run in range(max_runs):
        order = active[run % len(active):] + active[:run % len(active)] if active else []
        for w in wls:
            nruns = rss_runs if w.kind == "rss" else runs
            if run >= nruns:
                continue
            scale = (w.quick_scale if quick else 1.0) * args.scale
            for a in order:
                key = (w.name, a.name)
                if key in failed_cells:
                    continue
                if budget and time.monotonic() - t_start > budget:
                    if not over_budget:
                        log("time budget of %gs used up: remaining runs are skipped" % budget)
                    over_budget = True
                    results[key].append(RunResult("SKIP", note="time budget"))
                    continue
                argv = w.argv(threads, scale, quick)
                env = a.env()
                env.update(w.env)
                if args.verbose:
                    env["BENCH_VERBOSE"] = "1"
                r = run_child(argv, env, timeout,
                              pretouch_mib=0 if args.no_pretouch else w.pretouch_mib * scale)
                results[key].append(r)
                tm = time_metric(w, r)
                raw_rows.append([w.name, a.name, run + 1, r.status, "%.4f" % r.wall if r.wall is not None else "",
                                 "%.4f" % tm if tm is not None else "",
                                 "%.4f" % r.cpu if r.cpu is not None else "", r.maxrss or "",
                                 " ".join(argv[1:]), r.note])
                mark = "" if r.status == "OK" else "  <-- %s %s" % (r.status, r.note)
                log("run %d/%d %-14s %-9s wall %7.3fs cpu %7.3fs rss %8.1f MiB%s" % (
                    run + 1, nruns, w.name, a.name, r.wall or 0, r.cpu or 0, (r.maxrss or 0) / 1024.0, mark))
                if r.status != "OK":
                    failed_cells.add(key)

    # ---- summarise
    summary = {}
    for w in wls:
        for a in allocs:
            rs = results[(w.name, a.name)]
            ok = [r for r in rs if r.status == "OK"]
            bad = [r for r in rs if r.status not in ("OK", "SKIP")]
            s = {"status": "OK" if ok and not bad else (bad[0].status if bad else
                                                         ("SKIP" if rs else "n/a")),
                 "note": bad[0].note if bad else (rs[0].note if rs and not ok else ""),
                 "n": len(ok)}
            if not a.ok and a.name != "xalloc":
                s["status"], s["note"] = "n/a", a.note
            if ok and not bad:
                s["wall"] = statistics.median(r.wall for r in ok)
                s["cpu"] = statistics.median(r.cpu for r in ok)
                s["maxrss"] = statistics.median(r.maxrss for r in ok)
                tms = [time_metric(w, r) for r in ok]
                tms = [t for t in tms if t is not None]
                s["time"] = statistics.median(tms) if tms else None
                s["wall_min"] = min(r.wall for r in ok)
                s["wall_max"] = max(r.wall for r in ok)
                if w.kind == "frag":
                    kvs = [parse_kv(r.stdout) for r in ok]
                    s["frag"] = {k: statistics.median(kv[k] for kv in kvs if k in kv)
                                 for k in kvs[0] if all(k in kv for kv in kvs)}
                fs = [re.search(r"(\d+) thread pair\(s\) share a cache line", r.stderr) for r in ok]
                fs = [int(m.group(1)) for m in fs if m]
                if fs:
                    s["fs_pairs"] = max(fs)
                if w.kind == "rss":
                    parsed = [parse_rss(r.stdout) for r in ok]
                    s["rss_kv"] = parsed[0][0]
                    s["rss_samples"] = parsed[0][1]
            summary[(w.name, a.name)] = s

    write_raw_csv(os.path.join(out_dir, "raw.csv"), raw_rows)
    write_results_csv(os.path.join(out_dir, "results.csv"), wls, allocs, summary)
    ctx = {"quick": quick, "runs": runs, "rss_runs": rss_runs, "threads": threads, "timeout": timeout,
           "scale": args.scale, "elapsed": time.monotonic() - t_start, "over_budget": over_budget}
    md = make_tables(wls, allocs, summary, ctx)
    plots = make_plots(out_dir, wls, allocs, summary, log) if not args.no_plots else []
    if plots:
        md += "\nPlots: " + ", ".join(plots) + "\n"
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(md)
    print(md)
    log("results in %s (%.1fs)" % (os.path.relpath(out_dir, os.getcwd()), time.monotonic() - t_start))

    xfail = [w.name for w in wls if ("xalloc" in names) and
             summary.get((w.name, "xalloc"), {}).get("status") not in ("OK", "SKIP")]
    if xfail:
        log("xalloc FAILED in: %s" % ", ".join(xfail))
        return 1
    return 0


def build_progs(log):
    make = os.environ.get("MAKE", "make")
    r = subprocess.run([make, "-s", "bench-progs"], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit("building the benchmark programs failed")


def write_raw_csv(path, rows):
    with open(path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["workload", "allocator", "run", "status", "wall_s", "time_s", "cpu_s", "maxrss_kb",
                     "args", "note"])
        wr.writerows(rows)


def write_results_csv(path, wls, allocs, summary):
    frag_keys = ["baseline_kb", "peak_rss_kb", "peak_live_bytes", "meta_bytes", "final_rss_kb",
                 "final_live_bytes", "end_rss_kb"]
    rss_keys = ["baseline_kb", "peak_kb", "alloc_ms", "free_ms", "live_bytes", "floor_kb", "limit_kb",
                "end_kb"]
    with open(path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["workload", "allocator", "status", "runs_ok", "time_s", "wall_s", "wall_min_s",
                     "wall_max_s", "cpu_s", "maxrss_kb", "time_ratio_vs_xalloc", "rss_ratio_vs_xalloc"]
                    + ["frag_" + k for k in frag_keys] + ["rss_" + k for k in rss_keys]
                    + ["rss_t0_kb", "rss_last_kb", "false_sharing_pairs", "note"])
        for w in wls:
            x = summary.get((w.name, "xalloc"), {})
            for a in allocs:
                s = summary[(w.name, a.name)]

                def g(k, fmtv="%.4f"):
                    v = s.get(k)
                    return fmtv % v if v is not None else ""
                tr = rr = ""
                if s.get("time") and x.get("time"):
                    tr = "%.4f" % (s["time"] / x["time"])
                if s.get("maxrss") and x.get("maxrss"):
                    rr = "%.4f" % (s["maxrss"] / x["maxrss"])
                fr = s.get("frag", {})
                rk = s.get("rss_kv", {})
                smp = s.get("rss_samples") or []
                wr.writerow([w.name, a.name, s["status"], s["n"], g("time"), g("wall"), g("wall_min"),
                             g("wall_max"), g("cpu"), g("maxrss", "%d"), tr, rr]
                            + ["%d" % fr[k] if k in fr else "" for k in frag_keys]
                            + [("%g" % rk[k]) if k in rk else "" for k in rss_keys]
                            + ["%d" % smp[0][1] if smp else "", "%d" % smp[-1][1] if smp else "",
                               s.get("fs_pairs", ""), s.get("note", "")])


def cell_status(s):
    st = s.get("status")
    if st == "OK":
        return None
    if st == "n/a":
        return "n/a"
    return st or "-"


def make_tables(wls, allocs, summary, ctx):
    names = [a.name for a in allocs]
    have_x = any(summary[(w.name, "xalloc")].get("status") == "OK" for w in wls) if "xalloc" in names else False
    ref = "mimalloc" if any(a.name == "mimalloc" and a.ok for a in allocs) else \
        ("glibc" if "glibc" in names else names[0])
    L = []
    L.append("# xalloc benchmark results%s\n" % (" (quick mode)" if ctx["quick"] else ""))
    L.append("- machine: %s" % machine_info())
    L.append("- %d run(s) per cell (rss-time: %d), median; %d threads for threaded workloads; scale x%g; "
             "per-run timeout %gs; total %.0fs" % (ctx["runs"], ctx["rss_runs"], ctx["threads"], ctx["scale"],
                                                  ctx["timeout"], ctx["elapsed"]))
    for a in allocs:
        st = "ok" if a.ok else ("FAIL" if a.name == "xalloc" else "skipped")
        L.append("- %s: %s%s%s%s" % (a.name, a.lib or "no preload (system malloc)",
                                     (" (%s)" % a.version) if a.version else "",
                                     "" if a.ok else " -- " + st, (": " + a.note) if a.note and not a.ok else ""))
    if ctx["over_budget"]:
        L.append("- **time budget exhausted: some runs were skipped (SKIP)**")
    L.append("")
    L.append("Ratios `xN.NN` are peer / xalloc (above 1: xalloc is faster / smaller). "
             "The geomean rows are relative to %s, over the workloads where both succeeded. "
             "Rows marked with † show the burst (alloc + free) time the program measured itself "
             "instead of the wall time (which is dominated by the idle phase).\n" % ref)

    def metric_table(title, key, scale, unit, digits=3, geo=True):
        rows = []
        for w in wls:
            x = summary.get((w.name, "xalloc"), {})
            row = [w.name + (" †" if key == "time" and w.kind == "rss" else "")]
            for a in allocs:
                s = summary[(w.name, a.name)]
                st = cell_status(s)
                if st:
                    row.append(st)
                    continue
                v = s.get(key)
                if v is None:
                    row.append("-")
                    continue
                cell = fmt_num(v * scale, digits)
                if a.name != "xalloc" and have_x and x.get(key):
                    cell += " (%s)" % fmt_ratio(v / x[key])
                row.append(cell)
            rows.append(row)
        if geo:
            row = ["**geomean vs %s**" % ref]
            for a in allocs:
                rel = []
                for w in wls:
                    s, r = summary[(w.name, a.name)], summary.get((w.name, ref), {})
                    if s.get("status") == "OK" and r.get("status") == "OK" and s.get(key) and r.get(key):
                        rel.append(s[key] / r[key])
                g = geomean(rel)
                row.append("%.3f (n=%d)" % (g, len(rel)) if g else "-")
            rows.append(row)
        return "## %s\n\n%s\n" % (title + (" [%s]" % unit if unit else ""),
                                  md_table(["workload"] + names, rows))

    L.append(metric_table("Time", "time", 1.0, "s"))
    L.append(metric_table("CPU time (user+sys)", "cpu", 1.0, "s", geo=False))
    L.append(metric_table("Peak RSS", "maxrss", 1.0 / 1024.0, "MiB"))

    # false sharing (cache-scratch / cache-thrash diagnostics)
    cw = [w for w in wls if any("fs_pairs" in summary[(w.name, a.name)] for a in allocs)]
    if cw:
        pairs = ctx["threads"] * (ctx["threads"] - 1) // 2
        rows = []
        for w in cw:
            row = [w.name]
            for a in allocs:
                s = summary[(w.name, a.name)]
                st = cell_status(s)
                row.append(st if st else ("%d / %d" % (s["fs_pairs"], pairs) if "fs_pairs" in s else "?"))
            rows.append(row)
        L.append("## False sharing\n\nThread pairs whose first small objects (8 B) share a 64-byte cache line "
                 "(max over runs).  A nonzero count means the allocator placed objects used by different "
                 "threads in the same line: the time of the cache-* rows then depends on whether the threads "
                 "really run on different cores at the same time (on a small noisy VM they often do not).\n")
        L.append(md_table(["workload"] + names, rows) + "\n")

    # fragmentation
    fw = [w for w in wls if w.kind == "frag"]
    if fw:
        rows = []
        for a in allocs:
            s = summary[(fw[0].name, a.name)]
            st = cell_status(s)
            if st:
                rows.append([a.name] + [st] * 6)
                continue
            f = s.get("frag", {})
            try:
                base, meta = f["baseline_kb"], f["meta_bytes"] / 1024.0
                peak_ratio = f["peak_rss_kb"] * 1024.0 / f["peak_live_bytes"]
                peak_adj = (f["peak_rss_kb"] - base - meta) * 1024.0 / f["peak_live_bytes"]
                fin_adj = (f["final_rss_kb"] - base - meta) * 1024.0 / f["final_live_bytes"]
                rows.append([a.name, "%.1f" % (f["peak_rss_kb"] / 1024.0), "%.1f" % (f["peak_live_bytes"] / 2**20),
                             "%.3f / %.3f" % (peak_ratio, peak_adj),
                             "%.1f / %.1f" % (f["final_rss_kb"] / 1024.0, f["final_live_bytes"] / 2**20),
                             "%.3f" % fin_adj, "%.1f" % (f["end_rss_kb"] / 1024.0)])
            except (KeyError, ZeroDivisionError):
                rows.append([a.name] + ["?"] * 6)
        L.append("## Fragmentation (frag)\n\nPeak RSS is VmHWM; live = bytes requested and not yet freed. "
                 "'adj' subtracts the baseline RSS and the program's own pointer array (meta). "
                 "Final state = after phase 7 (10% of the mixed phases alive); end = after freeing all.\n")
        L.append(md_table(["allocator", "peak RSS MiB", "peak live MiB", "peak RSS/live (raw / adj)",
                           "final RSS / live MiB", "final RSS/live adj", "end RSS MiB"],
                          rows) + "\n")

    # rss-time
    rw = [w for w in wls if w.kind == "rss"]
    if rw:
        rows = []
        for w in rw:
            for a in allocs:
                s = summary[(w.name, a.name)]
                st = cell_status(s)
                if st:
                    rows.append([w.name, a.name] + [st] * 7)
                    continue
                kv, smp = s.get("rss_kv", {}), s.get("rss_samples") or []
                if not smp:
                    rows.append([w.name, a.name] + ["?"] * 7)
                    continue
                t1 = next((r for t, r in smp if t >= 1000), smp[-1][1])
                floor = kv.get("floor_kb", 0)
                lim = kv.get("limit_kb") if kv.get("keep_permille", 0) > 0 else None
                last = smp[-1][1]
                rows.append([w.name, a.name, "%.0f" % (kv.get("peak_kb", 0) / 1024),
                             "%.1f" % (smp[0][1] / 1024), "%.1f" % (t1 / 1024), "%.1f" % (last / 1024),
                             "%.1f" % (floor / 1024), "%.1f" % (lim / 1024) if lim else "-",
                             "%.2f" % (last / floor) if floor else "-"])
        L.append("## RSS after a burst, idle (rss-time)\n\nRSS in MiB at t=0 (frees just finished), t=1 s and "
                 "at the end of the idle phase; floor = baseline + live bytes (+ the program's own pointer "
                 "array); limit = page-granular limit (per-class dense packing, every page without a live "
                 "block returned).\n")
        L.append(md_table(["workload", "allocator", "peak", "t=0", "t=1s", "end", "floor", "limit",
                           "end/floor"], rows, align=["l", "l"] + ["r"] * 7) + "\n")
    return "\n".join(L)


def make_plots(out_dir, wls, allocs, summary, log):
    if not have_gnuplot():
        log("gnuplot not found: no plots")
        return []
    made = []
    term = png_terminal()
    names = [a.name for a in allocs]
    # --- RSS over time
    rw = [w for w in wls if w.kind == "rss"]
    panels = []
    for w in rw:
        series = []
        floor = lim = None
        for a in allocs:
            s = summary[(w.name, a.name)]
            smp = s.get("rss_samples")
            if s.get("status") != "OK" or not smp:
                continue
            fn = "rss_%s_%s.dat" % (w.name, a.name)
            with open(os.path.join(out_dir, fn), "w") as f:
                f.write("# t_s rss_mib  (%s under %s)\n" % (w.name, a.name))
                for t, r in smp:
                    f.write("%.3f %.3f\n" % (t / 1000.0, r / 1024.0))
            series.append((a.name, fn))
            kv = s.get("rss_kv", {})
            if floor is None and kv.get("floor_kb"):
                floor = kv["floor_kb"] / 1024.0
                if kv.get("keep_permille", 0) > 0:
                    lim = kv.get("limit_kb", 0) / 1024.0
        if series:
            panels.append((w.name, series, floor, lim))
    if panels:
        gp = ["set datafile commentschars '#'", "set key outside right top", "set grid",
              "set lmargin at screen 0.08", "set rmargin at screen 0.80",
              "set logscale y", "set xlabel 'seconds idle after the frees'", "set ylabel 'RSS [MiB]'"]
        body = ["set multiplot layout %d,1" % len(panels)]
        npts = max(len(summary[(w.name, a.name)].get("rss_samples") or []) for w in rw for a in allocs)
        pi = max(1, npts // 15)
        for title, series, floor, lim in panels:
            body.append("set title %s" % gp_str(title + ": RSS while idle"))
            plots = ["%s using 1:2 with linespoints pointinterval %d title %s" % (
                gp_str(fn), pi, gp_str(n)) for n, fn in series]
            if floor:
                plots.append("%g with lines dashtype 2 lc rgb 'black' title 'floor'" % max(floor, 0.01))
            if lim:
                plots.append("%g with lines dashtype 3 lc rgb 'red' title 'page-granular limit'" % lim)
            body.append("plot " + ", \\\n     ".join(plots))
        body.append("unset multiplot")
        script = "\n".join(gp + [
            "set terminal %s size 1000,%d" % (term, 380 * len(panels)),
            "set output 'rss_time.png'"] + body + [
            "set terminal svg size 1000,%d dynamic" % (380 * len(panels)),
            "set output 'rss_time.svg'"] + body + ["unset output"]) + "\n"
        sp = os.path.join(out_dir, "rss_time.gp")
        with open(sp, "w") as f:
            f.write(script)
        if run_gnuplot(sp, log):
            made += ["rss_time.png", "rss_time.svg"]
    # --- relative time bar chart
    ref = "xalloc" if any(summary.get((w.name, "xalloc"), {}).get("status") == "OK" for w in wls) \
        else ("mimalloc" if "mimalloc" in names else names[0])
    rows = []
    for w in wls:
        r = summary.get((w.name, ref), {})
        if r.get("status") != "OK" or not r.get("time"):
            continue
        vals = []
        for a in allocs:
            s = summary[(w.name, a.name)]
            vals.append(s["time"] / r["time"] if s.get("status") == "OK" and s.get("time") else None)
        rows.append((w.name, vals))
    shown = [a.name for a in allocs if a.ok or a.name == "xalloc"]
    panel = ("Relative time per workload (median)", "time relative to %s (lower is faster)" % ref, rows)
    made += relative_bars(out_dir, "time", [panel], names, shown, log)
    return made


def relative_bars(out_dir, stem, panels, names, shown, log, width=1200):
    """Clustered bar charts, one panel above another, of values relative
    to a reference allocator (1 = the reference, drawn dashed; log2 axis):
    stem.png and stem.svg in out_dir, with the data (stem_rel.dat, or
    stem_rel_K.dat for panel K) and the gnuplot script beside them.
    panels: (title, y label, rows); rows: (label, [value or None for
    each of names]); only the allocators in shown get bars.  Returns the
    files made."""
    if not have_gnuplot():
        log("gnuplot not found: no plots")
        return []
    panels = [p for p in panels if p[2]]
    if not panels:
        return []
    out_dir = os.path.abspath(out_dir)     # gnuplot runs there (run_gnuplot)
    body = ["set multiplot layout %d,1" % len(panels)] if len(panels) > 1 else []
    for k, (title, ylabel, rows) in enumerate(panels):
        dat = "%s_rel.dat" % stem if len(panels) == 1 else "%s_rel_%d.dat" % (stem, k)
        with open(os.path.join(out_dir, dat), "w") as f:
            f.write("workload " + " ".join(names) + "\n")
            for label, vals in rows:
                f.write(label + " " + " ".join("?" if v is None else "%.4f" % v for v in vals) + "\n")
        cols = [(i + 2, n) for i, n in enumerate(names) if n in shown]
        allv = [v for _, vals in rows for v in vals if v]
        body += ["set title %s" % gp_str(title), "set ylabel %s" % gp_str(ylabel)]
        if allv:
            body.append("set yrange [%g:%g]" % (min(allv) / 1.5, max(allv) * 1.5))
        body.append("plot " + ", ".join(
            "%s using %d:xtic(1) title %s" % (gp_str(dat), c, gp_str(n)) if j == 0 else
            "'' using %d title %s" % (c, gp_str(n)) for j, (c, n) in enumerate(cols)) +
            ", 1 with lines lc rgb 'black' dashtype 2 notitle")
    if len(panels) > 1:
        body.append("unset multiplot")
    common = ["set datafile missing '?'", "set style data histogram",
              "set style histogram cluster gap 1", "set style fill solid 0.85 border -1",
              "set boxwidth 0.9", "set key outside right top autotitle columnheader",
              "set xtics rotate by -35 nomirror", "set logscale y 2", "set grid ytics"]
    height = 520 * len(panels) if len(panels) == 1 else 420 * len(panels)
    script = "\n".join(common + ["set terminal %s size %d,%d" % (png_terminal(), width, height),
                                 "set output '%s.png'" % stem] + body +
                        ["set terminal svg size %d,%d dynamic" % (width, height), "set output '%s.svg'" % stem]
                        + body + ["unset output"]) + "\n"
    sp = os.path.join(out_dir, "%s.gp" % stem)
    with open(sp, "w") as f:
        f.write(script)
    return ["%s.png" % stem, "%s.svg" % stem] if run_gnuplot(sp, log) else []


# --------------------------------------------------------------------------
# callgrind

CG_SIZES = [16, 64, 256, 1024, 4096]


def callgrind_count(argv, env, timeout):
    """Total instructions ('refs') callgrind counted for argv, or (None, why)."""
    out = tempfile.NamedTemporaryFile(prefix="cg", suffix=".log", delete=False)
    out.close()
    try:
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "--log-file=" + out.name] + argv
        r = run_child(cmd, env, timeout)
        with open(out.name, errors="replace") as f:
            text = f.read()
    finally:
        os.unlink(out.name)
    if r.status != "OK":
        return None, "%s %s %s" % (r.status, r.note, text.strip().splitlines()[-1:] if text else "")
    m = re.search(r"refs:\s+([\d,]+)", text)
    if not m:
        return None, "no 'refs' line in callgrind output"
    return int(m.group(1).replace(",", "")), ""


def main_callgrind(args):
    log = log_to(sys.stderr)
    t_start = time.monotonic()
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind not found")
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    if not args.no_build:
        build_progs(log)
    names = args.alloc.split(",") if args.alloc else ALL_ALLOCS
    allocs = setup_allocators(names, build_lib=not args.no_build_lib, log=log)
    exe = os.path.join(BUILD, "cg_micro")
    base_n, extra_n = (20000, 200000) if args.quick else (100000, 1000000)
    base_c, extra_c = (1, 4) if args.quick else (2, 20)
    steps = (65536 - 32) // 16 + 1
    timeout = args.timeout or 600.0
    cols = ["%d B" % s for s in CG_SIZES] + ["realloc"]

    def measure(a, kind, size=None):
        if kind == "pair":
            a1, a2 = [exe, "pair", str(base_n), str(size)], [exe, "pair", str(base_n + extra_n), str(size)]
            div = float(extra_n)
        else:
            a1, a2 = [exe, "realloc", str(base_c)], [exe, "realloc", str(base_c + extra_c)]
            div = float(extra_c * steps)
        c1, why = callgrind_count(a1, a.env(), timeout)
        if c1 is None:
            return None, why
        c2, why = callgrind_count(a2, a.env(), timeout)
        if c2 is None:
            return None, why
        return (c2 - c1) / div, ""

    rows, csv_rows = [], []
    overhead, why = measure(Alloc("glibc", None), "pair", 0)
    log("loop overhead (no allocator calls): %s instructions/iteration" %
        ("%.1f" % overhead if overhead is not None else "? " + why))
    for a in allocs:
        if not a.ok:
            rows.append([a.name] + [("FAIL" if a.name == "xalloc" else "n/a")] * len(cols))
            csv_rows.append([a.name, "FAIL" if a.name == "xalloc" else "n/a"] + [""] * len(cols) + [a.note])
            log("%-9s %s" % (a.name, a.note))
            continue
        # interposition must also hold under valgrind
        why = probe(a, timeout=120, wrapper=["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                                             "-q"])
        if why:
            rows.append([a.name] + ["FAIL"] * len(cols))
            csv_rows.append([a.name, "FAIL"] + [""] * len(cols) + ["under valgrind: " + why])
            log("%-9s under valgrind: %s" % (a.name, why))
            continue
        vals, notes = [], []
        for s in CG_SIZES:
            v, why = measure(a, "pair", s)
            vals.append(v)
            if why:
                notes.append("%d B: %s" % (s, why))
            log("%-9s pair %5d B: %s" % (a.name, s, "%.1f" % v if v is not None else "FAIL " + why))
        v, why = measure(a, "realloc")
        vals.append(v)
        if why:
            notes.append("realloc: " + why)
        log("%-9s realloc growth: %s" % (a.name, "%.1f" % v if v is not None else "FAIL " + why))
        rows.append([a.name] + ["%.1f" % v if v is not None else "FAIL" for v in vals])
        csv_rows.append([a.name, "OK" if not notes else "PARTIAL"] +
                        ["%.2f" % v if v is not None else "" for v in vals] + ["; ".join(notes)])
    with open(os.path.join(out_dir, "callgrind.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["allocator", "status"] + ["pair_%d" % s for s in CG_SIZES] + ["realloc_step", "note"])
        wr.writerows(csv_rows)
        wr.writerow(["(loop overhead)", "OK"] + ["%.2f" % overhead if overhead is not None else ""] * len(CG_SIZES)
                    + ["", "same loop without allocator calls"])
    md = ["# Instructions per operation (callgrind)\n",
          "- machine: %s; valgrind %s" % (machine_info(), subprocess.run(
              ["valgrind", "--version"], capture_output=True, text=True).stdout.strip()),
          "- pair: steady-state ring of 64 live blocks, `free(r[j]); r[j] = malloc(n); r[j][0] = i`: "
          "(refs(N+%d) - refs(N)) / %d with N = %d. Includes the loop itself: %s instructions/iteration "
          "measured without allocator calls." % (extra_n, extra_n, base_n,
                                                 "%.1f" % overhead if overhead is not None else "?"),
          "- realloc: a block grown from 16 B by 16 B steps to 64 KiB (%d reallocs per cycle, last byte "
          "written each step): (refs(%d cycles) - refs(%d cycles)) / (%d x %d); includes the copies "
          "when a block moves." % (steps, base_c + extra_c, base_c, extra_c, steps),
          "- total time %.0fs\n" % (time.monotonic() - t_start),
          md_table(["allocator"] + cols, rows), ""]
    text = "\n".join(md)
    with open(os.path.join(out_dir, "callgrind.md"), "w") as f:
        f.write(text)
    print(text)
    bad = [r for r in rows if r[0] == "xalloc" and "FAIL" in r]
    return 1 if bad else 0


# --------------------------------------------------------------------------

def common_args(p):
    p.add_argument("--quick", action="store_true", help="CI mode: small scales, 2 runs, < 60 s")
    p.add_argument("--runs", type=int, default=0, help="runs per cell (default 5, quick 2)")
    p.add_argument("--alloc", default="", help="comma list of allocators (default: %s); "
                   "A/B variants of xalloc: LABEL=/path/lib.so, LABEL@XALLOC_CONF or both "
                   "(e.g. secure@secure:true)" % ",".join(ALL_ALLOCS))
    p.add_argument("--out", default=DEFAULT_OUT, help="output directory (default bench/results)")
    p.add_argument("--timeout", type=float, default=0, help="per-run timeout in seconds (default 300, quick 6)")
    p.add_argument("--no-build", action="store_true", help="do not run make bench-progs")
    p.add_argument("--no-build-lib", action="store_true",
                   help="do not run make lib; use lib/libxalloc.so as it is")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "callgrind":
        p = argparse.ArgumentParser(prog="run.py callgrind", description="callgrind instruction counts")
        common_args(p)
        args = p.parse_args(argv[1:])
        return main_callgrind(args)
    p = argparse.ArgumentParser(prog="run.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="workloads: " + ", ".join(w.name for w in WORKLOADS))
    common_args(p)
    p.add_argument("--rss-runs", type=int, default=0,
                   help="runs of the rss-time workloads (default 1: they idle 15 s each)")
    p.add_argument("--threads", type=int, default=0, help="threads for threaded workloads (default max(2, nproc))")
    p.add_argument("--scale", type=float, default=1.0, help="extra multiplier on every workload's scale")
    p.add_argument("--only", default="", help="comma list of workloads")
    p.add_argument("--budget", type=float, default=None,
                   help="stop starting runs after this many seconds (quick default 45; 0 = none)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-pretouch", action="store_true",
                   help="no memory written before the memory-heavy workloads' runs (launch.c -t)")
    p.add_argument("--verbose", action="store_true", help="set BENCH_VERBOSE=1 for the workloads")
    args = p.parse_args(argv)
    return main_bench(args)


def _on_signal(signum, frame):
    pid = _current_child[0]
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        pid = _current_child[0]
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        sys.exit(130)
