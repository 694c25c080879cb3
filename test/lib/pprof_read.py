#!/usr/bin/env python3
"""Read an uncompressed pprof profile (profile.proto) with no library:
a protobuf wire-format decoder for the fields xalloc writes.  Prints the
profile as JSON: sample types, samples (each its addresses, innermost
first, and values), mappings, period, comments, drop_frames.  The tests
check what xalloc writes with it, independently of pprof itself."""
import json
import sys


def varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return v, i


def fields(b):
    """(field, wire type, value) for each field of message b; value is an
    int (varint) or bytes (length-delimited)."""
    i = 0
    out = []
    while i < len(b):
        key, i = varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 2:
            n, i = varint(b, i)
            v = b[i:i + n]
            if len(v) != n:
                raise ValueError("truncated field %d" % f)
            i += n
        elif wt == 1:
            v = int.from_bytes(b[i:i + 8], "little")
            i += 8
        elif wt == 5:
            v = int.from_bytes(b[i:i + 4], "little")
            i += 4
        else:
            raise ValueError("wire type %d" % wt)
        out.append((f, wt, v))
    return out


def packed(wt, v):
    if wt == 0:
        return [v]
    vals, i = [], 0
    while i < len(v):
        x, i = varint(v, i)
        vals.append(x)
    return vals


def signed(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def read(data):
    strings, types, samples, locs, maps, comments = [], [], [], {}, [], []
    top = {}
    for f, wt, v in fields(data):
        if f == 6:
            strings.append(v.decode())
        elif f == 1:
            types.append(dict((k, x) for k, _, x in fields(v)))
        elif f == 2:
            s = {"loc": [], "value": []}
            for k, w, x in fields(v):
                if k == 1:
                    s["loc"] += packed(w, x)
                elif k == 2:
                    s["value"] += [signed(y) for y in packed(w, x)]
            samples.append(s)
        elif f == 3:
            maps.append(dict((k, x) for k, _, x in fields(v)))
        elif f == 4:
            d = dict((k, x) for k, _, x in fields(v) if k in (1, 2, 3))
            locs[d[1]] = d
        elif f == 13:
            comments += packed(wt, v)
        elif f == 11:
            top["period_type"] = dict((k, x) for k, _, x in fields(v))
        else:
            top[f] = v
    st = lambda i: strings[i] if i < len(strings) else "<bad string %d>" % i
    return {
        "sample_type": [[st(t.get(1, 0)), st(t.get(2, 0))] for t in types],
        "default_sample_type": st(top.get(14, 0)),
        "period_type": [st(top["period_type"].get(1, 0)), st(top["period_type"].get(2, 0))] if "period_type" in top else None,
        "period": top.get(12, 0),
        "time_nanos": top.get(9, 0),
        "drop_frames": st(top.get(7, 0)),
        "comments": [st(c) for c in comments],
        "samples": [{"addresses": [locs[l].get(3, 0) for l in s["loc"]],
                     "mappings": [locs[l].get(2, 0) for l in s["loc"]],
                     "value": s["value"]} for s in samples],
        "mappings": [{"id": m.get(1), "start": m.get(2, 0), "limit": m.get(3, 0), "offset": m.get(4, 0),
                      "file": st(m.get(5, 0)), "build_id": st(m.get(6, 0))} for m in maps],
        "strings_ok": len(strings) > 0 and strings[0] == "",
    }


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as fh:
        print(json.dumps(read(fh.read()), indent=1))
