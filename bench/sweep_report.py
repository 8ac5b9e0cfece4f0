"""Where ebbtide wins and loses in a saved sweep, per dimension of the grid.

    .venv/bin/ebbtide simulate --sweep --grid full --save sweep.json ...
    .venv/bin/python bench/sweep_report.py sweep.json

Prints, per value of each dimension, the same breakdown `ebbtide simulate --sweep` prints,
then the cells ebbtide loses to a rival by the most points.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ebbtide.cli.output import table
from ebbtide.sim.sweep import BREAKDOWN_HEADERS, DIMENSIONS, RIVALS, breakdown_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved", type=Path, help="a sweep's JSON (--save or -o json)")
    parser.add_argument("--worst", type=int, default=10, help="losses to list")
    args = parser.parse_args()
    cells = json.loads(args.saved.read_text())["cells"]
    for dimension in DIMENSIONS:
        print(f"by {dimension}:")
        print(table(BREAKDOWN_HEADERS, breakdown_rows(cells, dimension)))
        print()
    losses = [
        (float(c["ebbtide_over_percent"]) - float(c[f"{rival}_over_percent"]), rival, c)
        for c in cells
        for rival in RIVALS
        if float(c["ebbtide_over_percent"]) > float(c[f"{rival}_over_percent"])
    ]
    losses.sort(key=lambda loss: -loss[0])
    rows = [
        [
            f"{c['workload']} x{c['speedup']:g} r{c['rate_scale']:g} {c['cpu_ms']:g}ms "
            f"start {c['start_time']:g}s seed {c['seed']}",
            rival,
            f"{c['ebbtide_over_percent']:.2f}%",
            f"{c[f'{rival}_over_percent']:.2f}%",
            f"{c['ebbtide_vs_oracle']:.2f}x",
            f"{c[f'{rival}_vs_oracle']:.2f}x",
        ]
        for _, rival, c in losses[: args.worst]
    ]
    print(f"largest losses ({len(losses)} cell-rival pairs lost in all):")
    print(
        table(("CELL", "RIVAL", "EBBTIDE-OVER", "RIVAL-OVER", "EBBTIDE-COST", "RIVAL-COST"), rows)
    )


if __name__ == "__main__":
    main()
