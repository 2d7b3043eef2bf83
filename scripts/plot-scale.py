#!/usr/bin/env python3
"""Growth curves from the JSON that `../shared/bench/scale/scale --json` writes.

    python3 scripts/plot-scale.py RUN.json [MORE.json ...] -o docs/bench/scale-growth.png

One small panel per figure that was measured at two sizes or more (K routes,
S servers, C connections, N connections), one line per system, both axes
logarithmic, so a figure that grows linearly is a straight line of slope 1
and a quadratic one shows as slope 2. Several JSON files are merged (a later
file's value wins for the same system, figure and size), which lets a quick
ginx-only run be drawn against an earlier side-by-side one.

Needs matplotlib (`pip install matplotlib`); it draws off-screen (Agg), so no
display is needed.
"""

import argparse
import json
import math
import re
import sys

COLOURS = {"ginx": "#d62728", "ginx-nowatch": "#ff9896", "nginx": "#2ca02c", "haproxy": "#1f77b4"}
SIZE_NAMES = {"k": "K routes + upstreams", "s": "S servers in one upstream",
              "c": "C client connections", "n": "N connections"}


def read_results(paths):
    """(subcommand, metric, size key) -> {system: {size: (median, figure, unit)}}"""
    series = {}
    for path in paths:
        with open(path) as f:
            document = json.load(f)
        for row in document.get("results", []):
            params = row.get("params") or {}
            sizes = [(k, v) for k, v in params.items() if isinstance(v, (int, float))]
            if len(sizes) != 1 or row.get("median") is None:
                continue
            key, size = sizes[0]
            group = series.setdefault((row["subcommand"], row["metric"], key), {})
            group.setdefault(row["system"], {})[size] = (row["median"], row["figure"], row.get("unit", ""))
    return series


def title_of(figure):
    # "check (ginx --check, ...), s (K=10)" -> "check (ginx --check, ...), s"
    return re.sub(r"\s*\([A-Za-z]+=[^)]*\)\s*$", "", figure)


def minor_label(value, _):
    # Label 2x and 5x of each decade, so a panel spanning less than one decade still has numbers.
    leading = f"{value:e}"[0]
    return f"{value:g}" if leading in "25" else ""


def plot(series, out, columns):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    panels = [(group_key, by_system) for group_key, by_system in sorted(series.items())
              if max(len(points) for points in by_system.values()) >= 2]
    if not panels:
        sys.exit("no figure was measured at two sizes or more: run scale with a list, e.g. --k 10,1000,10000")
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for axis, ((subcommand, metric, size_key), by_system) in zip(axes.flat, panels):
        positive = True
        for system, points in sorted(by_system.items()):
            sizes = sorted(points)
            values = [points[s][0] for s in sizes]
            positive &= all(v > 0 for v in values)
            axis.plot(sizes, values, marker="o", label=system, color=COLOURS.get(system))
            figure = points[sizes[0]][1]
        axis.set_xscale("log")
        if positive:
            axis.set_yscale("log")
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        axis.xaxis.set_major_formatter(plain)
        axis.yaxis.set_major_formatter(plain)
        axis.yaxis.set_minor_formatter(FuncFormatter(minor_label))
        axis.set_title(f"{subcommand}: {title_of(figure)}", fontsize=8)
        axis.set_xlabel(SIZE_NAMES.get(size_key, size_key), fontsize=7)
        axis.tick_params(which="both", labelsize=7)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(panels):]:
        axis.set_visible(False)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(f"{out}: {len(panels)} panels")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="files written by scale --json")
    parser.add_argument("-o", "--out", default="scale-growth.png", help="PNG to write")
    parser.add_argument("--columns", type=int, default=3)
    parser.add_argument("--metric", action="append", default=[],
                        help="only these metrics (repeatable), e.g. --metric check_s --metric start_s")
    args = parser.parse_args()
    series = read_results(args.json)
    if args.metric:
        series = {k: v for k, v in series.items() if k[1] in args.metric}
    plot(series, args.out, args.columns)


if __name__ == "__main__":
    main()
