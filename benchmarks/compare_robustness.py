"""Two bench_robustness results compared seed by seed: one row of each, trained apart.

For rows that could not be trained in one run (other ``--set`` values, other epochs): the row of ``B`` is
compared with the row of ``A`` on the training seeds both ran, as bench_robustness compares rows of one
run: per column the mean and sd of the paired differences (B − A), the paired t-test's p and the sign
test's wins–losses; mCE too, where both results took it against the same baseline (else it is left out,
and the table says so). Refused when the two results do not measure the same thing: other data, image
size or hold-out sets.

    .venv/bin/python benchmarks/compare_robustness.py A.json B.json [--row robust/local]
        [--row-b REGIME/NORM] [--out NAME]

Prints the table and writes benchmarks/results/NAME.json (default ``compare-<A>-<B>``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_robustness", HERE / "bench_robustness.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

SAME = ("data", "image_size", "holdout")  # what both results must share to be compared at all


def baseline(result: dict, name: str) -> str | None:
    """The result's mCE baseline as ``ROW (FILE)``: a row of its own run is named with its own file ``name``,
    so it matches a later result that took the same runs with ``--mce-from``."""
    row = result.get("mce_baseline")
    return f"{row} ({name})" if row and not row.endswith(".json)") else row


def row(result: dict, name: str, label: str) -> dict:
    """The summary row REGIME/NORM ``name`` of a result; ValueError naming the rows it has if none."""
    found = [r for r in result["summary"] if f"{r['regime']}/{r['input_norm']}" == name]
    if not found:
        have = ", ".join(f"{r['regime']}/{r['input_norm']}" for r in result["summary"])
        raise ValueError(f"result {label} has no row {name} (it has: {have})")
    return found[0]


def pair(a: dict, b: dict, row_a: str, row_b: str, names: tuple[str, str] = ("A", "B")) -> dict:
    """Row ``row_b`` of result ``b`` against row ``row_a`` of result ``a`` (REGIME/NORM each), on their
    common seeds; mCE too where both took it against the same baseline (``names``: the results' file
    names). Raises ValueError, naming the key, when the results measure different things."""
    for key in SAME:
        if a.get(key) != b.get(key):
            raise ValueError(f"the results differ in {key!r}: {a.get(key)!r} against {b.get(key)!r}")
    # compare() keys rows by (regime, input stage): relabelled A and B, on one input stage
    rows = [{**row(a, row_a, "A"), "regime": "A"}, {**row(b, row_b, "B"), "regime": "B"}]
    if baseline(a, names[0]) != baseline(b, names[1]):  # mCEs against different baselines do not pair
        rows = [{**r, "mce_values": {}} for r in rows]
    rows[1]["input_norm"] = rows[0]["input_norm"]
    compared = bench.compare(rows, ("A", rows[0]["input_norm"]))
    if not compared:
        raise ValueError(
            f"fewer than two seeds in common: A ran {rows[0]['seeds']}, B ran {rows[1]['seeds']}"
        )
    return compared[0]


def table(p: dict, a: dict, b: dict) -> str:
    """Markdown: per column, A's and B's mean ± sd over the common seeds and the paired difference B − A
    (points; wins are seeds where B is higher, which for an mCE, lower is better, are losses)."""

    def on_common(r: dict, values: list[float]) -> tuple[float, float | None]:
        v = [values[r["seeds"].index(s)] for s in p["seeds"]]
        return bench._mean(v), bench._sd(v)

    cells = [(n, c, a["values"][n], b["values"][n]) for n, c in p["columns"].items()]
    cells += [(n, c, a["mce_values"][n], b["mce_values"][n]) for n, c in sorted(p["mce"].items())]
    lines = ["| column | A | B | B − A (wins–losses, t p) |", "|---|---:|---:|---:|"]
    for name, c, in_a, in_b in cells:
        sd = f" ± {100 * c['sd_diff']:.1f}" if c["sd_diff"] is not None else ""
        t = f", t p={c['t_p']:.2f}" if c["t_p"] is not None else ""
        diff = f"{100 * c['mean_diff']:+.1f}{sd} ({c['wins']}–{c['losses']}{t})"
        lines.append(
            f"| {name} | {bench._pm(*on_common(a, in_a))} | {bench._pm(*on_common(b, in_b))} | {diff} |"
        )
    if not p["mce"]:
        lines.append("\n(no mCE: the results took it against different baselines, or neither took it)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="the reference result (a bench_robustness JSON)")
    parser.add_argument("b", type=Path, help="the result compared with it")
    parser.add_argument("--row", default="robust/local", help="REGIME/NORM of A's row (and B's, by default)")
    parser.add_argument("--row-b", help="REGIME/NORM of B's row, where it differs")
    parser.add_argument("--results", type=Path, default=bench.RESULTS, help="where the JSON goes")
    parser.add_argument("--out", help="name of the JSON under --results (default compare-<A>-<B>)")
    args = parser.parse_args()
    loaded = []
    for path in (args.a, args.b):
        try:
            loaded.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as e:
            sys.exit(f"{path}: cannot read a bench_robustness result: {e}")
    a, b = loaded
    row_b = args.row_b or args.row
    try:
        p = pair(a, b, args.row, row_b, (args.a.name, args.b.name))
    except ValueError as e:
        sys.exit(f"{args.a} against {args.b}: {e}")
    print(f"A = {args.a.name} {args.row}; B = {args.b.name} {row_b}; seeds {p['seeds']}")
    print(table(p, row(a, args.row, "A"), row(b, row_b, "B")))
    out = args.out or f"compare-{args.a.stem}-{args.b.stem}"
    report = {
        "a": {
            "result": args.a.name,
            "row": args.row,
            "epochs": a.get("epochs"),
            "overrides": a.get("overrides"),
        },
        "b": {
            "result": args.b.name,
            "row": row_b,
            "epochs": b.get("epochs"),
            "overrides": b.get("overrides"),
        },
        "mce_baseline": baseline(a, args.a.name) if p["mce"] else None,
        "paired": p,  # B − A per column, over the common seeds
        "command": "benchmarks/compare_robustness.py " + " ".join(sys.argv[1:]),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{out}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"→ {args.results / out}.json")


if __name__ == "__main__":
    main()
