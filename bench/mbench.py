#!/usr/bin/env python3
"""mimalloc-bench's standard rows side by side, from a build made elsewhere.

  python3 bench/mbench.py --mb BUILD_DIR --mb-src BENCH_SRC_DIR
                          [--mimalloc3 PATH/libmimalloc.so.3] [--runs 3]
                          [--procs 2 | --procs-list 1,4,8,16] [--seconds 5]
                          [--only row,row] [--xalloc-conf LABEL=CONF]
                          [--xalloc-lib LABEL=PATH] [--skip name,name]

mimalloc-bench (github.com/daanx/mimalloc-bench) is the suite the field
quotes.  Neither its sources nor its binaries belong in this repository:
build its bench/ folder with its own CMakeLists.txt somewhere else, then
give this script that build folder (--mb, where cfrac, larson, rptest...
are) and the bench/ source folder (--mb-src, for espresso's and barnes's
inputs).  The rows and their arguments are mimalloc-bench's bench.sh ones
at --procs threads (the 19 rows that need nothing beyond that build).

Every row runs under every allocator, interleaved (each round runs every
cell once, the allocator order rotated per round), and the medians are
reported: wall time, peak RSS and minor faults (wait4 rusage, taken by
build/bench/launch), and geomeans relative to mimalloc 2.0.  Allocators:
xalloc (lib/libxalloc.so), glibc, the Debian jemalloc, tcmalloc and
mimalloc 2.0 where installed, and mimalloc 3 when --mimalloc3 names its
library (also built outside this repository).  BENCH_XALLOC, BENCH_JEMALLOC,
BENCH_TCMALLOC and BENCH_MIMALLOC name other copies of the libraries (on a
machine without the Debian packages).  --xalloc-lib adds another xalloc
build under its own label (an interleaved A/B of two commits); --skip
leaves allocators out.

--procs-list runs the rows at each thread count in turn (one table per
count, then a scaling table of xalloc against the best peer); --seconds
sets how long larson and xmalloc-test run (bench.sh: 5), for machines lent
for minutes: they report a rate, so a shorter run measures the same thing
with more noise.
"""
import argparse
import glob
import os
import re
import statistics
import sys

import run as R

ROOT = R.ROOT


def rows(args):
    mb, src, n, sec = args.mb, args.mb_src, str(args.procs), str(args.seconds)
    x = lambda name: os.path.join(mb, name)
    r = [
        ("cfrac", [x("cfrac"), "17545186520507317056371138836327483792789528"], None),
        ("espresso", [x("espresso"), os.path.join(src, "espresso", "largest.espresso")], None),
        ("barnes", [x("barnes")], os.path.join(src, "barnes", "input")),
        ("alloc-test1", [x("alloc-test"), "1"], None),
        ("alloc-testN", [x("alloc-test"), n], None),
        ("larsonN", [x("larson"), sec, "8", "1000", "5000", "100", "4141", n], None),
        ("larsonN-sized", [x("larson-sized"), sec, "8", "1000", "5000", "100", "4141", n], None),
        ("xmalloc-testN", [x("xmalloc-test"), "-w", n, "-t", sec, "-s", "64"], None),
        ("cache-thrash1", [x("cache-thrash"), "1", "1000", "1", "2000000", n], None),
        ("cache-thrashN", [x("cache-thrash"), n, "1000", "1", "2000000", n], None),
        ("cache-scratch1", [x("cache-scratch"), "1", "1000", "1", "2000000", n], None),
        ("cache-scratchN", [x("cache-scratch"), n, "1000", "1", "2000000", n], None),
        ("malloc-large", [x("malloc-large")], None),
        ("mstressN", [x("mstress"), n, "50", "25"], None),
        ("mleak10", [x("mleak"), "5"], None),
        ("mleak100", [x("mleak"), "50"], None),
        ("rptestN", [x("rptest"), n, "0", "1", "2", "500", "1000", "100", "8", "16000"], None),
        ("glibc-simple", [x("glibc-simple")], None),
        ("glibc-thread", [x("glibc-thread"), n], None),
    ]
    if args.only:
        keep = set(args.only.split(","))
        r = [w for w in r if w[0] in keep]
    return r


# Rows that run for a fixed time or count and print their rate: their
# "time" is bench.sh's relative time, derived from that output.
RELATIVE = [
    ("larson", r"time: ([0-9.]+)", lambda v: v),
    ("rptest", r"\.\.\.([0-9]+) memory ops", lambda v: 2000000.0 / v),
    ("xmalloc", r"rtime: ([0-9.]+)", lambda v: v),
    ("glibc-thread", r"^([0-9.]+)", lambda v: 1e9 / v),
]


def row_time(wname, res):
    """The row's time: wall time, or the relative time bench.sh derives from
    the output of rows that run for a fixed time.  None if it is missing."""
    for prefix, rx, f in RELATIVE:
        if wname.startswith(prefix):
            m = re.search(rx, res.stdout + "\n" + res.stderr, re.M)
            return f(float(m.group(1))) if m and float(m.group(1)) > 0 else None
    return res.wall


def allocators(args):
    lib = R.XALLOC_SO
    a = [R.Alloc("xalloc", lib)]
    for v in args.xalloc_conf:
        label, conf = v.split("=", 1)
        al = R.Alloc(label, lib)
        al.conf = conf
        a.append(al)
    for v in args.xalloc_lib:
        label, path = v.split("=", 1)
        a.append(R.Alloc(label, path))
    a.append(R.Alloc("glibc", None))
    for name, pats, _ in R.PEERS:
        hits = [h for p in pats for h in sorted(glob.glob(p))]
        if os.environ.get("BENCH_%s" % name.upper()):
            hits = [os.environ["BENCH_%s" % name.upper()]]
        if hits:
            a.append(R.Alloc(name, hits[0]))
        else:
            print("note: %s not installed, skipped" % name, file=sys.stderr)
    if args.mimalloc3:
        a.append(R.Alloc("mimalloc3", args.mimalloc3))
    skip = set(x for x in args.skip.split(",") if x)
    return [al for al in a if al.name not in skip]


def measure(args, ws, als, scratch):
    """Every row under every allocator, args.runs rounds, interleaved.
    Returns ({(row, allocator): [RunResult]}, [failure lines])."""
    cells, failed = {}, []
    for rnd in range(args.runs):
        order = als[rnd % len(als):] + als[:rnd % len(als)]
        for wname, cmd, stdin in ws:
            for al in order:
                # malloc-large peaks at 400-620 MB: memory written first, as
                # run.py does for its memory-heavy rows (launch.c -t)
                pre = 700 if wname == "malloc-large" and not args.no_pretouch else 0
                res = R.run_child(cmd, al.env(), args.timeout, stdin_path=stdin, cwd=scratch,
                                  pretouch_mib=pre)
                if res.status == "OK":
                    res.wall = row_time(wname, res)
                    if res.wall is None:
                        res.status, res.note = "FAIL", "no rate in the output"
                tag = "%s/%s %d threads run %d" % (wname, al.name, args.procs, rnd)
                if res.status != "OK":
                    failed.append("%s: %s %s" % (tag, res.status, res.note))
                    print(failed[-1], file=sys.stderr, flush=True)
                    continue
                cells.setdefault((wname, al.name), []).append(res)
                print("%-40s %7.3f s %8.1f MB %8d faults" % (
                    tag, res.wall, res.maxrss / 1024.0, res.faults), file=sys.stderr, flush=True)
    return cells, failed


def median_of(cells, wname, aname, key):
    rs = cells.get((wname, aname))
    return statistics.median(getattr(x, key) for x in rs) if rs else None


def variants(args):
    return ["xalloc"] + [v.split("=", 1)[0] for v in args.xalloc_conf + args.xalloc_lib]


def table(args, ws, names, cells, failed):
    """The markdown table of one thread count: medians and geomeans."""
    med = lambda w, n, key: median_of(cells, w, n, key)
    peers = [n for n in names if n not in variants(args)]
    lines = ["# mimalloc-bench rows, %d threads (median of %d interleaved runs)" % (args.procs, args.runs), "",
             "Time in seconds (for larson, rptest, xmalloc-test and glibc-thread, bench.sh's relative time "
             "from their rate) / peak RSS in MB / minor faults.  `xalloc/best`: xalloc's time over the best peer's.", ""]
    head = "| row | " + " | ".join(names) + " | xalloc/best |"
    lines += [head, "|---|" + "---|" * (len(names) + 1)]
    for wname, _, _ in ws:
        cellv = []
        for n in names:
            t, m, f = med(wname, n, "wall"), med(wname, n, "maxrss"), med(wname, n, "faults")
            cellv.append("FAIL" if t is None else "%.3f / %.1f / %d" % (t, m / 1024.0, f))
        pt = [med(wname, p, "wall") for p in peers]
        pt = [v for v in pt if v is not None]
        xt = med(wname, "xalloc", "wall")
        best = "%.2f" % (xt / min(pt)) if pt and xt else "-"
        lines.append("| %s | %s | %s |" % (wname, " | ".join(cellv), best))
    lines += ["", "Geomeans relative to mimalloc (2.0), over the rows every allocator finished:", "",
              "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    ok = [w for w, _, _ in ws if all(med(w, n, "wall") for n in names)]
    for key, label in [("wall", "time"), ("maxrss", "peak RSS"), ("faults", "faults")]:
        if "mimalloc" not in names or not ok:
            break
        vals = []
        for n in names:
            vals.append("%.3f" % R.geomean([max(med(w, n, key), 1) / max(med(w, "mimalloc", key), 1) for w in ok]))
        lines.append("| %s | %s |" % (label, " | ".join(vals)))
    if failed:
        lines += ["", "Failed runs:", ""] + ["- " + f for f in failed]
    return lines


def scaling_table(args, procs_list, row_names, names, per_procs):
    """Rows x thread counts: xalloc's time, the best peer's, their ratio."""
    peers = [n for n in names if n not in variants(args)]
    lines = ["# Scaling: xalloc against the best peer at each thread count", "",
             "Median time (s) of xalloc / the best peer (which) = ratio; below 1.00 xalloc is ahead.", "",
             "| row | " + " | ".join("%d threads" % p for p in procs_list) + " |",
             "|---|" + "---|" * len(procs_list)]
    for wname in row_names:
        cellv = []
        for p in procs_list:
            cells = per_procs[p]
            xt = median_of(cells, wname, "xalloc", "wall")
            pt = [(median_of(cells, wname, n, "wall"), n) for n in peers]
            pt = [v for v in pt if v[0] is not None]
            if xt is None or not pt:
                cellv.append("-")
                continue
            bt, bn = min(pt)
            cellv.append("%.3f / %.3f (%s) = %.2f" % (xt, bt, bn, xt / bt))
        lines.append("| %s | %s |" % (wname, " | ".join(cellv)))
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", required=True, help="mimalloc-bench build folder (binaries)")
    ap.add_argument("--mb-src", required=True, help="mimalloc-bench bench/ source folder (inputs)")
    ap.add_argument("--mimalloc3", default="")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--procs-list", default="", help="thread counts, e.g. 1,4,8,16 (instead of --procs)")
    ap.add_argument("--seconds", type=int, default=5, help="how long larson and xmalloc-test run")
    ap.add_argument("--no-pretouch", action="store_true",
                    help="no memory written before each malloc-large run (launch.c -t)")
    ap.add_argument("--only", default="")
    ap.add_argument("--xalloc-conf", action="append", default=[],
                    help="LABEL=CONF: also xalloc with XALLOC_CONF=CONF")
    ap.add_argument("--xalloc-lib", action="append", default=[],
                    help="LABEL=PATH: also another xalloc build (e.g. the base of an A/B)")
    ap.add_argument("--skip", default="", help="allocators left out, e.g. glibc,jemalloc")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "mbench"))
    args = ap.parse_args()
    if not os.access(R.LAUNCH, os.X_OK):
        sys.exit("mbench: %s is missing: run `make bench-progs` first" % R.LAUNCH)
    os.makedirs(args.out, exist_ok=True)
    scratch = os.path.join(args.out, "cwd")   # rptest writes a file where it runs
    os.makedirs(scratch, exist_ok=True)
    procs_list = [int(p) for p in args.procs_list.split(",")] if args.procs_list else [args.procs]
    als = allocators(args)
    names = [a.name for a in als]
    md, per_procs, xfailed = [], {}, False
    for p in procs_list:
        args.procs = p
        ws = rows(args)
        cells, failed = measure(args, ws, als, scratch)
        xfailed = xfailed or any(f.split("/")[1].startswith(tuple(variants(args))) for f in failed)
        md += table(args, ws, names, cells, failed) + [""]
        per_procs[p] = cells
    if len(procs_list) > 1:
        md += scaling_table(args, procs_list, [w for w, _, _ in ws], names, per_procs) + [""]
    text = "\n".join(md)
    with open(os.path.join(args.out, "mbench.md"), "w") as f:
        f.write(text)
    print(text)
    return 1 if xfailed else 0


if __name__ == "__main__":
    sys.exit(main())
