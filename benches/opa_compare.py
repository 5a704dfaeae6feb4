#!/usr/bin/env python3
"""Evaluate Paved's Rego policies with OPA's own engine, for `cargo bench --bench policy`.

Usage: python3 benches/opa_compare.py DIR

DIR holds `cases.json`, written by the bench:
  {"policies": [{"path": ..., "text": ...}],
   "rules": [{"path": "data.main.deny", "kind": "deny" | "warn"}],
   "cases": [{"input": {...}, "data": {"paved": {...}}}]}

For each case this evaluates every rule with the case's input and data, normalises the
values the way Paved does (conftest conventions: a set of strings, of objects with `msg`,
or `true`), writes `opa_results.json` with the verdicts and the rate, and prints one JSON
line on stdout.

OPA runs in-process through the `opa-golib-python-bindings` package (OPA's Go library as
a c-shared library): `pip install --ignore-requires-python opa-golib-python-bindings`.
Each distinct `data` document gets its own engine, loaded once; the query over all rules is
prepared on first use and cached by the engine, so the timed loop is evaluation only (plus
the binding's JSON round trip, measured separately and reported).
"""

import json
import sys
import time

RUNS = 5


def message_of(v):
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and isinstance(v.get("msg"), str):
        return v["msg"]
    return json.dumps(v, separators=(",", ":"), sort_keys=True)


def collect(rule_name, value):
    """Messages of one rule's value, as Paved's `collect` does."""
    if value is None or value is False:
        return []
    if value is True:
        return [f"{rule_name} is true"]
    if isinstance(value, list):
        return [message_of(x) for x in value]
    return [message_of(value)]


def main():
    if len(sys.argv) != 2:
        print("usage: opa_compare.py DIR", file=sys.stderr)
        return 2
    base = sys.argv[1]
    try:
        from opa_bindings import OpaEngine
    except ImportError as e:
        print(json.dumps({"error": f"opa_bindings not installed: {e}"}))
        return 3

    with open(f"{base}/cases.json", encoding="utf-8") as f:
        spec = json.load(f)
    rules = spec["rules"]
    cases = spec["cases"]

    # One query for every rule; each comprehension is defined even when the rule is not.
    query = "; ".join(f"r{i} := [x | x := {r['path']}]" for i, r in enumerate(rules))

    engines = {}

    def engine_for(data):
        key = json.dumps(data, sort_keys=True)
        e = engines.get(key)
        if e is None:
            e = OpaEngine()
            for p in spec["policies"]:
                e.add_policy(p["path"], p["text"])
            e.add_data(data)
            engines[key] = e
        return e

    prepared = [(engine_for(c["data"]), c["input"]) for c in cases]

    def run_all():
        out = []
        for engine, inp in prepared:
            out.append(engine.eval_query(query, inp))
        return out

    run_all()  # warm-up: prepares and caches the query in every engine
    # Best of RUNS, like the Rust side: the machine may be busy.
    elapsed = float("inf")
    results = None
    for _ in range(RUNS):
        start = time.perf_counter()
        out = run_all()
        t = time.perf_counter() - start
        if t < elapsed:
            elapsed, results = t, out

    # The binding's own cost (ctypes, JSON both ways, OPA reading the input): the same
    # calls with a trivial query. Subtracting it gives an upper bound for OPA's evaluation.
    overhead = float("inf")
    for _ in range(RUNS):
        start = time.perf_counter()
        for engine, inp in prepared:
            engine.eval_query("true", inp)
        overhead = min(overhead, time.perf_counter() - start)

    verdicts = []
    for bindings_list in results:
        deny, warn = [], []
        b = bindings_list[0] if bindings_list else {}
        for i, r in enumerate(rules):
            name = r["path"][len("data."):] if r["path"].startswith("data.") else r["path"]
            values = b.get(f"r{i}", [])
            msgs = []
            for v in values:
                msgs.extend(collect(name, v))
            (deny if r["kind"] == "deny" else warn).extend(msgs)
        verdicts.append({"deny": sorted(deny), "warn": sorted(warn)})

    n = len(cases)
    report = {
        "cases": n,
        "engines": len(engines),
        "seconds": elapsed,
        "rate": n / elapsed if elapsed > 0 else 0.0,
        "binding_overhead_seconds": overhead,
        "rate_without_binding_overhead": n / (elapsed - overhead) if elapsed > overhead else None,
    }
    with open(f"{base}/opa_results.json", "w", encoding="utf-8") as f:
        json.dump({"verdicts": verdicts, **report}, f)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
