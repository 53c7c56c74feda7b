#!/usr/bin/python3
"""BENCHMARKS.md's per-module sensitivity table (issue 15) from two `dsv4 certify --sensitivity --json`
reports: the committed golden's and a longer golden's.

Each cell is the worst, over layers (`layers.N` -> `layers.*`) and over the steps of its column
(prefill; decode = every decodeK), of the smallest error caught in both directions, "scale / offset"
(the JSON's caught_from; "not caught" where a direction is never caught on the ladder; "n=...: not
caught (limit)" where neither is). Then, for the FP8-quantised outputs and the indexer scores, the
range of their statistical limits (scale_limit, offset_limit) per column, for the row labels.

  /usr/bin/python3 tests/bench/sensitivity_table.py sens_p6.json sens_140.json
"""
import json
import re
import sys


def pct(e):
    return "%.3g%%" % (100 * e)


def load(path):
    d = json.load(open(path))
    groups = {}
    for r in d["rows"]:
        step, rest = r["output"].split("/", 1)
        key = re.sub(r"layers\.\d+", "layers.*", rest)
        groups.setdefault((key, "prefill" if step == "prefill" else "decode"), []).append(r)
    return d, groups


def worst(rows, directions):
    v = []
    for r in rows:
        for k in directions:
            c = r[k]["caught_from"]
            if c is None or c < 0:
                return None
            v.append(c)
    return max(v)


def cell(rows):
    if rows is None:
        return ""
    s = worst(rows, ("scale_up", "scale_down"))
    o = worst(rows, ("offset_up", "offset_down"))
    if s is None and o is None:
        return "n=%d: not caught (limit)" % max(r["elements"] for r in rows)
    return "%s / %s" % ("not caught" if s is None else pct(s), "not caught" if o is None else pct(o))


def limits(rows):
    if not rows:
        return "-"
    out = []
    for k in ("scale_limit", "offset_limit"):
        v = [r[k] for r in rows if r.get(k) is not None and r[k] >= 0]
        out.append("%s-%s" % (pct(min(v)), pct(max(v))) if v else "-")
    return " / ".join(out)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: sensitivity_table.py SHORT.json LONG.json")
    (d1, a), (d2, b) = load(sys.argv[1]), load(sys.argv[2])
    keys = []
    for k, _ in list(a) + list(b):
        if k not in keys:
            keys.append(k)
    cols = [(a, "prefill"), (a, "decode"), (b, "prefill"), (b, "decode")]
    print("| output (worst over layers and steps) | p6 prefill scale / offset | p6 decode | p140 prefill | p140 decode |")
    print("|---|---|---|---|---|")
    for k in keys:
        print("| `%s` | %s |" % (k, " | ".join(cell(g.get((k, s))) for g, s in cols)))
    print("\nlimits (scale / offset, min-max over layers and steps) per column p6 prefill; p6 decode; p140 prefill; p140 decode:")
    for k in keys:
        if "attn/kv" in k or "compressor" in k or "indexer" in k:
            print("`%s`: %s" % (k, "; ".join(limits(g.get((k, s))) for g, s in cols)))
    for name, d in (("short", d1), ("long", d2)):
        print("%s: Holm family m = %d, the faithful candidate passes: %s" % (name, d["structure_family"], d["clean_pass"]))


if __name__ == "__main__":
    main()
