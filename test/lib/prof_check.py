#!/usr/bin/env python3
"""prof_check.py PROFILE BINARY KIND [SITE=BYTES ...] [--tol F] [--caller NAME]

Check a heap profile xalloc wrote for BINARY (a non-PIE test program
built with frame pointers): the profile's structure for KIND (live, peak
or leak), BINARY's mapping and build ID, and the live bytes the samples
attribute to each allocation site against the true ones, within the
relative tolerance F (default 0.25).  The site of a sample is its
innermost frame after pprof's pruning (drop_frames), named by addr2line.
SITE=0 asks that nothing be attributed to SITE.  --caller NAME asks that
the frame after each expected site be NAME (for at least 95% of its
bytes): the stack goes on past the allocation's call site.  Prints one line per check;
exit 0 if all passed."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pprof_read  # noqa: E402

fails = 0


def check(cond, what):
    global fails
    print(("ok:   " if cond else "FAIL: ") + what)
    if not cond:
        fails += 1


def build_id(binary):
    out = subprocess.run(["readelf", "-n", binary], capture_output=True, text=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", out)
    return m.group(1) if m else ""


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    tol, caller = 0.25, None
    for a in sys.argv[1:]:
        if a.startswith("--tol="):
            tol = float(a.split("=", 1)[1])
        if a.startswith("--caller="):
            caller = a.split("=", 1)[1]
    path, binary, kind = args[0], os.path.realpath(args[1]), args[2]
    want = dict((s.split("=")[0], int(s.split("=")[1])) for s in args[3:])
    with open(path, "rb") as fh:
        p = pprof_read.read(fh.read())
    name = os.path.basename(path)

    check(p["strings_ok"], "%s: string table starts with the empty string" % name)
    types = [t for t, _ in p["sample_type"]]
    if kind == "peak":
        check(types == ["inuse_objects", "inuse_space"], "%s: sample types %s" % (name, types))
    else:
        check(types == ["alloc_objects", "alloc_space", "inuse_objects", "inuse_space"],
              "%s: sample types %s" % (name, types))
    check(p["default_sample_type"] == "inuse_space", "%s: default sample type inuse_space" % name)
    check(p["period_type"] == ["space", "bytes"] and p["period"] > 0,
          "%s: period %s %s" % (name, p["period"], p["period_type"]))
    check(any(("peak" in c) == (kind == "peak") and ("exit" in c) == (kind == "leak") for c in p["comments"]),
          "%s: comment says what it is: %s" % (name, p["comments"]))
    check(p["time_nanos"] > 1.5e18, "%s: wall-clock time set" % name)
    mine = [m for m in p["mappings"] if m["file"] == binary]
    check(len(mine) == 1 and mine[0]["build_id"] == build_id(binary),
          "%s: one mapping of %s, with its build ID %s" % (name, binary, mine[0]["build_id"] if mine else None))
    check(all(m["start"] < m["limit"] for m in p["mappings"]), "%s: mappings well formed" % name)

    # name every address inside the binary (non-PIE: addresses are its own)
    ids = {m["id"] for m in mine}
    addrs = sorted({a for s in p["samples"] for a, mi in zip(s["addresses"], s["mappings"]) if mi in ids})
    names = {}
    if addrs:
        out = subprocess.run(["addr2line", "-f", "-e", binary] + ["%x" % a for a in addrs],
                             capture_output=True, text=True).stdout.split("\n")
        names = dict(zip(addrs, out[0::2]))
    drop = re.compile("^(" + p["drop_frames"] + ")$") if p["drop_frames"] else None
    col = types.index("inuse_space")
    sites, called = {}, {}
    for s in p["samples"]:
        frames = [names.get(a, "?") if mi in ids else "<outside>" for a, mi in zip(s["addresses"], s["mappings"])]
        if drop:   # pprof: from the root, the first frame that matches goes, with all it called
            for i in range(len(frames) - 1, -1, -1):
                if drop.match(frames[i]):
                    frames = frames[i + 1:]
                    break
        site = frames[0] if frames else "<none>"
        sites[site] = sites.get(site, 0) + s["value"][col]
        if len(frames) > 1 and frames[1] == caller:
            called[site] = called.get(site, 0) + s["value"][col]
    total = sum(sites.values())
    print("      sites: %s" % ", ".join("%s %d" % kv for kv in sorted(sites.items(), key=lambda kv: -kv[1])))
    for site, b in want.items():
        got = sites.get(site, 0)
        if b == 0:
            check(got == 0, "%s: nothing from %s (%d)" % (name, site, got))
        else:
            check(abs(got - b) <= tol * b, "%s: %s holds %d bytes, true %d (within %d%%)" % (name, site, got, b, tol * 100))
    if caller:
        for site, b in want.items():
            if b:
                check(called.get(site, 0) >= 0.95 * sites.get(site, 0),
                      "%s: %s called from %s for %d of %d bytes" % (name, site, caller, called.get(site, 0), sites.get(site, 0)))
    if want and all(b for b in want.values()):
        other = total - sum(sites.get(s, 0) for s in want)
        check(other <= 0.05 * total, "%s: other sites hold %d of %d bytes" % (name, other, total))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
