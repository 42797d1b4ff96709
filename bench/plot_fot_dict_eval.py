#!/usr/bin/env python3
"""Plots fot-dict-eval --csv files: accuracy and attention-mass recall of the
IVF rows against the share of keys a query scanned, one line per memory size,
with the exact rows as horizontal references.

    bench/plot_fot_dict_eval.py OUT.png seed0.csv [seed1.csv ...]

Needs Debian's python3-matplotlib (not a build or test dependency).
"""
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(paths):
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                row["file"] = path
                rows.append(row)
    return rows


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, rows = sys.argv[1], read(sys.argv[2:])
    fig, (acc_ax, mass_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    curves = defaultdict(set)  # (file, tokens) -> {(scanned, accuracy, mass)}
    exact = {}  # (file, tokens) -> accuracy of exact search over the same memory
    for r in rows:
        key = (r["file"], int(r["tokens"]))
        if "exact" in r["configuration"]:
            exact[key] = 100 * float(r["accuracy"])
        elif "IVF" in r["configuration"]:
            curves[key].add(
                (100 * float(r["keys_scanned"]), 100 * float(r["accuracy"]), float(r["mass_recall"]))
            )
    for (path, tokens), points in sorted(curves.items()):
        points = sorted(points)
        label = f"{tokens // 1024}k tokens ({path.rsplit('/', 1)[-1]})"
        xs = [p[0] for p in points]
        line = acc_ax.plot(xs, [p[1] for p in points], marker="o", label=label)[0]
        if (path, tokens) in exact:
            acc_ax.axhline(exact[(path, tokens)], linestyle=":", color=line.get_color())
        missed = [(x, max(1 - p[2], 1e-6)) for x, p in zip(xs, points) if p[2] > 0]
        mass_ax.plot([m[0] for m in missed], [m[1] for m in missed], marker="o", label=label)
    acc_ax.set_xlabel("keys scanned per query (% of the store)")
    acc_ax.set_ylabel("answers (% exact match); dotted: exact search, same memory")
    acc_ax.set_title("fot-dict accuracy, knn:64 over IVF")
    mass_ax.set_xlabel("keys scanned per query (% of the store)")
    mass_ax.set_ylabel("attention mass missed (1 - mass recall, floor 1e-6)")
    mass_ax.set_yscale("log")
    mass_ax.set_title("the model's own queries vs exact top-64")
    for ax in (acc_ax, mass_ax):
        ax.set_xscale("log")
        ax.grid(True, which="both", linewidth=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
