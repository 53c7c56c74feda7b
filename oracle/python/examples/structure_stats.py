"""Summarise the structure tests of a `dsv4 diff --teacher-forced --json` report (issue 15): for each
test (scale, offset, channel_scale, row_scale, quant_direction) how many ran, how many found the
candidate's error field equal to the official recomputation's (estimate 0), the smallest p-value
and where, against the Holm threshold of the run's family (alpha / m for the smallest p); and the
size checks' headroom (the local verdicts' "closest: <check> at <x>% of its limit").

    python3 structure_stats.py diff.json [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys


def summarise(report: dict, alpha: float = 1e-4) -> dict:
    tests = collections.defaultdict(list)
    not_run = collections.defaultdict(collections.Counter)
    headroom = []
    for m in report.get("modules", []):
        for o in m.get("outputs", []):
            for s in o.get("structure", []):
                if s.get("ran"):
                    tests[s["test"]].append(dict(s, output=o["name"]))
                else:
                    reason = re.sub(r"[0-9.]+", "N", s.get("not_run", ""))
                    not_run[s["test"]][reason] += 1
            r = re.search(r"closest: (\w+) at ([0-9.]+)% of its limit", o.get("reason", ""))
            if r:
                headroom.append((float(r.group(2)), r.group(1), o["name"]))
    m_total = sum(len(v) for v in tests.values())
    out = {"tests_run": m_total, "holm_first_threshold": alpha / max(m_total, 1), "tests": {}}
    for name in sorted(set(tests) | set(not_run)):
        ran = tests.get(name, [])
        zero = [s for s in ran if s.get("estimate") == 0]
        worst = min(ran, key=lambda s: s["p"]) if ran else None
        zmax = max((s["z"] for s in ran if s.get("z") is not None and abs(s["z"]) < 1e30), default=None)
        out["tests"][name] = {
            "ran": len(ran), "estimate_zero": len(zero), "rejected": sum(bool(s.get("rejected")) for s in ran),
            "min_p": worst["p"] if worst else None, "min_p_output": worst["output"] if worst else None,
            "min_p_estimate": worst.get("estimate") if worst else None, "min_p_se": worst.get("se") if worst else None,
            "min_p_allowance": worst.get("allowance") if worst else None, "max_z": zmax,
            "not_run": dict(not_run.get(name, {})),
            # calibration: of the tests whose estimate is not 0, how many p fall below 0.01 / 0.001
            # (a null-calibrated test gives about 1% / 0.1% of them; p = 1 when it sees nothing)
            "nonzero": len(ran) - len(zero),
            "p_below_0.01": sum(s["p"] < 0.01 for s in ran if s.get("estimate") != 0),
            "p_below_0.001": sum(s["p"] < 0.001 for s in ran if s.get("estimate") != 0),
        }
    headroom.sort()
    if headroom:
        vals = [h[0] for h in headroom]
        out["size_headroom"] = {
            "outputs": len(vals), "median_pct_of_limit": vals[len(vals) // 2],
            "p90_pct_of_limit": vals[int(0.9 * (len(vals) - 1))], "max_pct_of_limit": vals[-1],
            "closest": [{"pct": p, "check": c, "output": n} for p, c, n in headroom[-5:]],
            "by_check": dict(collections.Counter(h[1] for h in headroom)),
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("diff_json")
    ap.add_argument("--json", help="write the summary as JSON")
    a = ap.parse_args(argv)
    with open(a.diff_json) as f:
        s = summarise(json.load(f))
    print(f"structure tests run: {s['tests_run']} (Holm: the smallest p must be >= {s['holm_first_threshold']:.3g})")
    for name, t in s["tests"].items():
        print(f"  {name:16s} ran {t['ran']:4d}  estimate 0 (= official recomputation) {t['estimate_zero']:4d}  "
              f"rejected {t['rejected']}  min p {t['min_p'] if t['min_p'] is not None else '-':<10.3g}"
              if t["min_p"] is not None else
              f"  {name:16s} ran {t['ran']:4d}  not run: {t['not_run']}")
        if t["min_p"] is not None:
            print(f"      of {t['nonzero']} with a nonzero estimate: p < 0.01 in {t['p_below_0.01']}, "
                  f"p < 0.001 in {t['p_below_0.001']}")
            print(f"      min p at {t['min_p_output']}: estimate {t['min_p_estimate']:.3g} se {t['min_p_se'] or 0:.3g} "
                  f"allowance {t['min_p_allowance']:.3g}; largest z {t['max_z']:.3g}")
    h = s.get("size_headroom")
    if h:
        print(f"size checks: {h['outputs']} outputs, closest check at median {h['median_pct_of_limit']}% / "
              f"90th pct {h['p90_pct_of_limit']}% / max {h['max_pct_of_limit']}% of its limit ({h['by_check']})")
        for c in h["closest"]:
            print(f"      {c['pct']:5.1f}% {c['check']:8s} {c['output']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(s, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
