#!/usr/bin/env python3
"""Large-block workloads side by side: time, page faults, peak and idle RSS.

  python3 bench/largebench.py [--runs 3] [--mimalloc3 PATH/libmimalloc.so.3]
                              [--malloc-large PATH/malloc-large] [--only a,b]
                              [--xalloc-lib LABEL=PATH] [--xalloc-conf LABEL=CONF]
                              [--skip glibc,jemalloc,...] [--no-pretouch]
                              [--no-plots]

Runs each workload under each allocator, interleaved (a workload's
rounds run every allocator once each, each round starting one allocator
further along the list), and reports medians: largebench.md, and with
gnuplot largebench.png/.svg (with the script, largebench.gp, and its data,
largebench_rel_K.dat), each workload's time, page faults, peak RSS and
idle RSS relative to xalloc's.  Before each run of
weights and malloc-large, build/bench/launch -t writes that much memory
first (launch.c says why; --no-pretouch: not).
Workloads (bench/*.c, built by `make bench-progs`):

  infer-cat      bench/infer, K/V tensors grown allocate-copy-free (and
                 the live bytes' peak: infer.c)
  infer-realloc  bench/infer, K/V tensors grown with realloc
  kvpool         bench/kvpool, paged KV cache of 32 KiB blocks
  weights        bench/weights, 3 x 384 MiB written once, read at random;
                 also the readers' data-TLB load misses where the machine
                 counts them (weights.c)
  large          bench/large, 1 MiB..16 MiB blocks, realloc growth
  shift          bench/shift, 48 MiB of 1 MiB blocks and of 16-128 B
                 objects by turns (the memory one kind freed, needed by
                 the other)
  malloc-large   mimalloc-bench's malloc-large, when --malloc-large names
                 its binary (built from mimalloc-bench's sources outside
                 this repository)

Allocators: xalloc (lib/libxalloc.so), glibc, and the Debian packages of
jemalloc, tcmalloc and mimalloc 2.0 where installed; mimalloc 3 when
--mimalloc3 names its library (built outside this repository).  Faults
and peak RSS come from wait4's rusage; the idle RSS (2 s after the
program freed everything), AnonHugePages, the live peak and the dTLB
counts from the programs.
"""
import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import run as R

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bench")

PEERS = [
    ("jemalloc", "/usr/lib/*/libjemalloc.so.2"),
    ("tcmalloc", "/usr/lib/*/libtcmalloc_minimal.so.4"),
    ("mimalloc", "/usr/lib/*/libmimalloc.so.2"),
]


# Extra columns a workload's table has: (output key, heading, format,
# divisor).
DTLB = [("dtlb_load_misses", "dTLB load misses", "%.3g", 1), ("dtlb_loads", "dTLB loads", "%.3g", 1)]
LIVE = [("live_peak_kb", "live peak MB", "%.1f", 1024)]


def workloads(args):
    """(name, argv, metric: the output key of its speed or None (wall
    time), MiB to pretouch, extra columns)."""
    w = [
        ("infer-cat", [os.path.join(BIN, "infer"), "2", "2", "cat", "2000"], "tokens_per_s", 0, LIVE),
        ("infer-realloc", [os.path.join(BIN, "infer"), "2", "8", "realloc", "2000"], "tokens_per_s", 0, LIVE),
        ("kvpool", [os.path.join(BIN, "kvpool"), "2", "1", "32", "2000"], "steps_per_s", 0, []),
        ("weights", [os.path.join(BIN, "weights"), "2", "0.5", "2000"], "read_s", 1200, DTLB),
        ("large", [os.path.join(BIN, "large"), "1", "0.03125"], None, 0, []),
        ("shift", [os.path.join(BIN, "shift"), "1", "1", "2000"], "seconds", 0, LIVE),
    ]
    if args.malloc_large:
        w.append(("malloc-large", [args.malloc_large], None, 700, []))
    if args.only:
        keep = set(args.only.split(","))
        w = [x for x in w if x[0] in keep]
    return w


def allocators(args):
    a = [("xalloc", os.path.join(ROOT, "lib", "libxalloc.so")), ("glibc", None)]
    for v in args.xalloc_conf:            # LABEL=CONF: xalloc with XALLOC_CONF=CONF
        label, conf = v.split("=", 1)
        a.insert(1, (label, os.path.join(ROOT, "lib", "libxalloc.so") + "@" + conf))
    for v in args.xalloc_lib:             # LABEL=PATH: another xalloc build (an A/B)
        label, path = v.split("=", 1)
        a.insert(1, (label, os.path.abspath(path)))
    for name, pat in PEERS:
        hits = sorted(glob.glob(pat))
        if hits:
            a.append((name, hits[0]))
        else:
            print("note: %s not installed, skipped" % name, file=sys.stderr)
    if args.mimalloc3:
        a.append(("mimalloc3", args.mimalloc3))
    skip = set(args.skip.split(",")) if args.skip else set()
    a = [x for x in a if x[0] not in skip]
    labels = [x[0] for x in a]
    twice = sorted({l for l in labels if labels.count(l) > 1})
    if twice:     # results are kept by label: two columns would mix their runs
        sys.exit("largebench: label%s used twice: %s (--xalloc-lib and --xalloc-conf need labels of their own)"
                 % ("s" if len(twice) > 1 else "", ", ".join(twice)))
    return a


def pretouch(mib):
    """Write and unmap mib MiB just before a run (launch.c -t says why: on a
    VM whose host takes back freed pages, the first process to touch
    memory after a pause pays the host's faults)."""
    fd, rep = tempfile.mkstemp(prefix="largebench-pretouch-")
    os.close(fd)
    try:
        subprocess.run([os.path.join(BIN, "launch"), "-t", str(mib), rep, "/bin/true"], check=False)
    except OSError as e:          # no build/bench/launch (make bench-progs): measured without
        print("note: no pretouch (%s)" % e, file=sys.stderr)
    os.unlink(rep)


def run_one(cmd, lib, timeout, pretouch_mib=0):
    """(wall s, exit status, stdout, stderr, rusage) of one run, or None on
    timeout.  wait4 gives this child's own faults and peak RSS.  The
    memory-heavy rows write pretouch_mib MiB first (pretouch)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.pop("XALLOC_CONF", None)
    if lib and "@" in lib:
        lib, env["XALLOC_CONF"] = lib.split("@", 1)
    if lib:
        env["LD_PRELOAD"] = lib
    if pretouch_mib:
        pretouch(pretouch_mib)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        _, status, ru = os.wait4(p.pid, 0)
        timer.cancel()
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if p.returncode == -9 and wall >= timeout:
            return None
        return wall, p.returncode, out.read().decode(), err.read().decode(), ru


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mimalloc3", default="")
    ap.add_argument("--malloc-large", default="")
    ap.add_argument("--only", default="")
    ap.add_argument("--xalloc-conf", action="append", default=[],
                    help="LABEL=CONF: also xalloc with XALLOC_CONF=CONF (e.g. xalloc-thp=thp:always)")
    ap.add_argument("--xalloc-lib", action="append", default=[],
                    help="LABEL=PATH: also this libxalloc.so (e.g. an older build, for an A/B)")
    ap.add_argument("--skip", default="",
                    help="allocators left out, comma-separated (e.g. glibc,jemalloc for a quick A/B)")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--no-pretouch", action="store_true",
                    help="no memory written before the weights and malloc-large runs (launch.c -t)")
    ap.add_argument("--no-plots", action="store_true", help="no largebench.png/.svg (they need gnuplot)")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "largebench"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    ws, als = workloads(args), allocators(args)
    cells = {}
    # One workload's rounds after another's, each round starting with the
    # next allocator: the first run after another workload pays for the
    # state that workload left the kernel in (weights: compacting memory
    # for 1.1 GiB of huge pages, 2-3 s): one of the workload's runs pays.
    for wname, cmd, metric, pre, _ in ws:
        for r in range(args.runs):
            k = r % len(als)
            for aname, lib in als[k:] + als[:k]:
                res = run_one(cmd, lib, args.timeout, 0 if args.no_pretouch else pre)
                if res is None or res[1] != 0:
                    why = "timeout" if res is None else "exit %d: %s" % (res[1], res[3].strip()[-200:])
                    print("%s/%s run %d FAILED (%s)" % (wname, aname, r, why), file=sys.stderr)
                    continue
                wall, _, out, _, ru = res
                kv = dict(l.split("=", 1) for l in out.splitlines() if "=" in l)
                row = {"wall": wall, "faults": ru.ru_minflt, "maxrss_mb": ru.ru_maxrss / 1024.0}
                for k, v in kv.items():
                    try:
                        row[k] = float(v)
                    except ValueError:
                        pass
                cells.setdefault((wname, aname), []).append(row)
                print("%-14s %-9s run %d: %.2f s, %d faults %s" % (wname, aname, r, wall, row["faults"],
                      " ".join("%s=%s" % kv_ for kv_ in kv.items())), file=sys.stderr, flush=True)
    md = report(ws, als, cells, args.runs)
    with open(os.path.join(args.out, "largebench.md"), "w") as f:
        f.write(md)
    print(md)
    if not args.no_plots:
        made = plot(args.out, ws, als, cells)
        if made:
            print("plots: %s" % ", ".join(os.path.join(args.out, m) for m in made))


def median_of(rows, key):
    """The median of key over the runs, or None unless every run has it."""
    return statistics.median(x[key] for x in rows) if rows and all(key in x for x in rows) else None


def report(ws, als, cells, runs):
    lines = ["# Large-block workloads (median of %d interleaved runs)" % runs, ""]
    for wname, cmd, metric, _, extra in ws:
        lines += ["## %s" % wname, "", "`%s`" % " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c
                                                          for c in cmd), ""]
        head = "| allocator | wall s |" + (" %s |" % metric if metric else "") + \
               " minor faults | peak RSS MB | idle RSS MB | AnonHugePages MB |" + \
               "".join(" %s |" % h for _, h, _, _ in extra)
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        counted = False
        for aname, _ in als:
            rows = cells.get((wname, aname))
            if not rows:
                lines.append("| %s | FAIL |" % aname)
                continue
            med = lambda k: median_of(rows, k)
            cell = lambda v, f: (f % v) if v is not None else "-"
            idle = med("rss_idle_kb")
            huge = med("anon_huge_kb")
            ex = [(lambda v: v / d if v is not None else None)(med(k)) for k, _, _, d in extra]
            counted = counted or any(v is not None for v in ex)
            lines.append("| %s | %s |%s %s | %s | %s | %s |%s" % (
                aname, cell(med("wall"), "%.2f"),
                (" %s |" % cell(med(metric), "%.3g")) if metric else "",
                cell(med("faults"), "%d"), cell(med("maxrss_mb"), "%.1f"),
                cell(idle / 1024.0 if idle is not None else None, "%.1f"),
                cell(huge / 1024.0 if huge is not None else None, "%.1f"),
                "".join(" %s |" % cell(v, f) for v, (_, _, f, _) in zip(ex, extra))))
        if extra and not counted:
            lines += ["", "(%s: not reported on this machine.)" % ", ".join(h for _, h, _, _ in extra)]
        lines.append("")
    return "\n".join(lines)


def speed_time(metric, row):
    """A run's time for the plot: its rate's inverse (tokens/s, steps/s),
    its measured phase (read_s), or its wall time."""
    if metric and metric.endswith("_per_s"):
        return 1.0 / row[metric] if row.get(metric) else None
    return row.get(metric or "wall")


def plot(out, ws, als, cells):
    """largebench.png/.svg: four panels, each workload's medians relative to
    xalloc's (time, minor faults, peak RSS, idle RSS)."""
    names = [a for a, _ in als if any(cells.get((w[0], a)) for w in ws)]   # allocators with a run
    if "xalloc" not in names:
        return []
    ref = names.index("xalloc")
    what = [("time (a rate's inverse, or the measured phase, where the row reports one, else wall; lower is faster)",
             "time / xalloc's",
             lambda m, r: speed_time(m, r)),
            ("minor page faults", "faults / xalloc's", lambda m, r: r.get("faults")),
            ("peak RSS", "peak RSS / xalloc's", lambda m, r: r.get("maxrss_mb")),
            ("RSS 2 s after everything is freed", "idle RSS / xalloc's", lambda m, r: r.get("rss_idle_kb"))]
    panels = []
    for title, ylabel, get in what:
        rows = []
        for wname, _, metric, _, _ in ws:
            meds = []
            for a in names:
                vs = [get(metric, r) for r in cells.get((wname, a), [])]
                meds.append(statistics.median(vs) if vs and all(v is not None for v in vs) else None)
            if meds[ref]:
                rows.append((wname, [v / meds[ref] if v is not None else None for v in meds]))
        panels.append(("Large blocks, medians relative to xalloc: %s" % title, ylabel, rows))
    return R.relative_bars(out, "largebench", panels, names, names, lambda m: print(m, file=sys.stderr))


if __name__ == "__main__":
    main()
