#!/usr/bin/env python3
"""The oscillating workload under memory limits: who survives, at what peak.

  sudo python3 bench/limits.py [--limits 64,80,96,128,192,256,512] [--runs 3]
                               [--mimalloc3 PATH/libmimalloc.so.3] [--out DIR]
                               [--xalloc-lib LABEL=PATH[@CONF]] [--xalloc-conf LABEL=CONF]

Each run gets a memory cgroup of its own (cgroup v1's memory controller
where it is mounted, else cgroup v2), with the limit in MiB, and runs
bench/oscillate (build it with `make bench-progs`) under one allocator.
A run the kernel kills (SIGKILL from the OOM killer) counts as killed;
for the others the cgroup's peak usage (v1 memory.max_usage_in_bytes, v2
memory.peak) is recorded.  Allocators are interleaved, the order rotated
each round.  Needs root (it creates cgroups).

Output: a table per limit: survived runs and median peak usage per
allocator, as markdown on stdout and in DIR/limits.md, with the raw rows
in DIR/limits.csv.
"""
import argparse
import glob
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROG = os.path.join(ROOT, "build", "bench", "oscillate")
PEERS = [("jemalloc", "/usr/lib/*/libjemalloc.so.2"),
         ("tcmalloc", "/usr/lib/*/libtcmalloc_minimal.so.4"),
         ("mimalloc", "/usr/lib/*/libmimalloc.so.2.0")]


def allocators(args):
    a = [("xalloc", os.path.join(ROOT, "lib", "libxalloc.so"), ""), ("glibc", None, "")]
    for v in args.xalloc_conf:
        label, conf = v.split("=", 1)
        a.insert(1, (label, os.path.join(ROOT, "lib", "libxalloc.so"), conf))
    for v in args.xalloc_lib:             # LABEL=PATH[@CONF]: another xalloc build (an A/B)
        label, path = v.split("=", 1)
        path, _, conf = path.partition("@")
        a.insert(1, (label, os.path.abspath(path), conf))
    labels = [x[0] for x in a]
    if len(set(labels)) != len(labels):
        sys.exit("limits: a label is used twice: " + " ".join(labels))
    for name, pat in PEERS:
        hits = sorted(glob.glob(pat))
        if hits:
            a.append((name, hits[0], ""))
    if args.mimalloc3:
        a.append(("mimalloc3", args.mimalloc3, ""))
    return a


class Cgroup:
    """A fresh memory cgroup with a limit; v1 where its memory controller
    is mounted, else v2."""

    def __init__(self, name, limit):
        v1 = "/sys/fs/cgroup/memory"
        if os.path.exists(os.path.join(v1, "memory.limit_in_bytes")):
            self.v2 = False
            self.path = os.path.join(v1, name)
        else:
            self.v2 = True
            parent = "/sys/fs/cgroup/xalloc-bench"
            os.makedirs(parent, exist_ok=True)
            with open("/sys/fs/cgroup/cgroup.subtree_control", "w") as f:
                f.write("+memory")
            with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
                f.write("+memory")
            self.path = os.path.join(parent, name)
        os.makedirs(self.path, exist_ok=True)
        self.write("memory.max" if self.v2 else "memory.limit_in_bytes", str(limit))
        if self.v2:
            self.write("memory.swap.max", "0", missing_ok=True)

    def write(self, f, v, missing_ok=False):
        try:
            with open(os.path.join(self.path, f), "w") as fh:
                fh.write(v)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def read(self, f):
        try:
            with open(os.path.join(self.path, f)) as fh:
                return fh.read()
        except OSError:
            return ""

    def peak(self):
        v = self.read("memory.peak" if self.v2 else "memory.max_usage_in_bytes").strip()
        return int(v) if v.isdigit() else None

    def remove(self):
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.05)


def run_in(cg, cmd, lib, conf, timeout):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.pop("XALLOC_CONF", None)
    if lib:
        env["LD_PRELOAD"] = lib
    if conf:
        env["XALLOC_CONF"] = conf
    procs = os.path.join(cg.path, "cgroup.procs")
    wrap = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', procs] + cmd
    t0 = time.monotonic()
    try:
        p = subprocess.run(wrap, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        rc = p.returncode
        out = p.stdout.decode()
    except subprocess.TimeoutExpired:
        rc, out = "timeout", ""
    return rc, time.monotonic() - t0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limits", default="64,80,96,112,128,160,192,256,512", help="MiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cycles", type=int, default=120)
    ap.add_argument("--mimalloc3", default="")
    ap.add_argument("--xalloc-conf", action="append", default=[], help="LABEL=CONF: xalloc with XALLOC_CONF=CONF")
    ap.add_argument("--xalloc-lib", action="append", default=[], help="LABEL=PATH[@CONF]: another xalloc build, with XALLOC_CONF=CONF")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "limits"))
    ap.add_argument("--from-csv", action="store_true", help="redo the table and plot from OUT/limits.csv")
    args = ap.parse_args()
    if args.from_csv:
        report(args, read_csv(os.path.join(args.out, "limits.csv")))
        return
    if not os.path.exists(PROG):
        sys.exit("build the programs first: make bench-progs")
    os.makedirs(args.out, exist_ok=True)
    limits = [int(x) for x in args.limits.split(",")]
    als = allocators(args)
    cmd = [PROG, "1", "1", str(args.cycles)]
    rows = []
    for r in range(args.runs):
        for li, limit in enumerate(limits):
            k = (r + li) % len(als)
            for name, lib, conf in als[k:] + als[:k]:
                cg = Cgroup("xalloc-limits-%d" % os.getpid(), limit << 20)
                try:
                    rc, wall, out = run_in(cg, cmd, lib, conf, args.timeout)
                    peak = cg.peak()
                finally:
                    cg.remove()
                status = "ok" if rc == 0 else "killed" if rc == -9 else "exit %s" % rc
                rows.append((limit, name, r, status, peak, wall))
                print("%4d MiB %-10s run %d: %-8s peak %s MB, %.2f s" %
                      (limit, name, r, status, "%.1f" % (peak / 1e6) if peak else "?", wall),
                      file=sys.stderr, flush=True)
    with open(os.path.join(args.out, "limits.csv"), "w") as f:
        f.write("limit_mib,allocator,run,status,peak_bytes,wall_s\n")
        for row in rows:
            f.write("%d,%s,%d,%s,%s,%.3f\n" % (row[0], row[1], row[2], row[3], row[4] or "", row[5]))
    report(args, rows)


def read_csv(path):
    rows = []
    with open(path) as f:
        next(f)
        for line in f:
            l, n, r, st, pk, w = line.rstrip("\n").split(",")
            rows.append((int(l), n, int(r), st, int(pk) if pk else None, float(w)))
    return rows


def report(args, rows):
    limits = sorted(set(x[0] for x in rows))
    names = []
    for x in rows:
        if x[1] not in names:
            names.append(x[1])
    runs = max(x[2] for x in rows) + 1
    lines = ["# bench/oscillate under memory limits (%d runs per cell)" % runs, "",
             "Cell: runs that finished / runs, and the median peak cgroup usage (MB) of those that did.", "",
             "| limit (MiB) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for limit in limits:
        cells = []
        for n in names:
            mine = [x for x in rows if x[0] == limit and x[1] == n]
            ok = [x for x in mine if x[3] == "ok"]
            peaks = [x[4] for x in ok if x[4]]
            cells.append("%d/%d%s" % (len(ok), len(mine), ", %.1f" % (statistics.median(peaks) / 1e6) if peaks else ""))
        lines.append("| %d | %s |" % (limit, " | ".join(cells)))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "limits.md"), "w") as f:
        f.write(text)
    print(text)
    plot(args.out, limits, names, rows)


def plot(out, limits, names, rows):
    """limits.png: median peak usage against the limit, one line per
    allocator, drawn only where every run survived (gnuplot, if installed)."""
    import shutil
    if not shutil.which("gnuplot"):
        print("note: gnuplot not installed, no plot", file=sys.stderr)
        return
    dat = os.path.join(out, "limits.dat")
    with open(dat, "w") as f:
        for n in names:
            f.write("# %s\n" % n)
            for limit in limits:
                mine = [x for x in rows if x[0] == limit and x[1] == n]
                if mine and all(x[3] == "ok" and x[4] for x in mine):
                    f.write("%d %.1f\n" % (limit, statistics.median(x[4] for x in mine) / 1e6))
            f.write("\n\n")
    series = ", ".join("'%s' index %d with linespoints lw 2 title '%s'" % (dat, i, n) for i, n in enumerate(names))
    script = (
        "set terminal pngcairo size 900,520\nset output '%s'\n"
        "set title 'bench/oscillate in a memory cgroup: peak usage where every run survived'\n"
        "set xlabel 'memory limit (MiB)'\nset ylabel 'peak cgroup usage (MB)'\n"
        "set logscale x 2\nset key outside right\nset grid\n"
        "plot %s, x*1.048576 with lines dt 2 lc rgb 'gray' title 'the limit'\n"
        % (os.path.join(out, "limits.png"), series))
    gp = os.path.join(out, "limits.gp")
    with open(gp, "w") as f:
        f.write(script)
    subprocess.run(["gnuplot", gp], check=False)


if __name__ == "__main__":
    main()
