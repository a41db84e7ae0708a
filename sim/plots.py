"""Figures from run directories: consensus curves with the decay theory predicts, accuracy
against rounds (with the FedAvg and centralized baselines), accuracy against bytes sent."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from sim.config import BASELINES
from sim.rundir import read_run

__all__ = ["plot_runs"]

Series = dict[str, list[Any]]


def _lambda2_by_algorithm(stat: dict[str, Any]) -> dict[str, float]:
    """lambda_2 of the matrix each algorithm mixes with. Run directories written before
    ``lambda2_pushsum`` existed hold only ``lambda2``, which then stands for both."""
    return {
        "dpsgd": float(stat["lambda2"]),
        "pushsum": float(stat.get("lambda2_pushsum", stat["lambda2"])),
    }


def _collect(runs: list[Path]) -> tuple[dict[str, Series], dict[tuple[str, str], float]]:
    """Rows grouped by run label, and lambda_2 per (topology label, algorithm)."""
    series: dict[str, Series] = {}
    lambda2: dict[tuple[str, str], float] = {}
    labels = []
    for run in runs:
        config, rows = read_run(run)
        for stat in config.get("topology_stats", []):
            for algorithm, lam in _lambda2_by_algorithm(stat).items():
                lambda2[(stat["name"], algorithm)] = lam
        grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            grouped[(row["algorithm"], row["topology"])].append(row)
        for (algorithm, topology), group in grouped.items():
            label = BASELINES.get(algorithm, f"{topology} · {algorithm}")
            labels.append((run, label, algorithm, topology, group))
    repeated = {label for _, label, *_ in labels if sum(1 for x in labels if x[1] == label) > 1}
    for run, label, algorithm, topology, group in labels:
        name = f"{label} [{run.name}]" if label in repeated else label
        series[name] = {
            "algorithm": [algorithm],
            "topology": [topology],
            **{key: [r[key] for r in group] for key in group[0] if key not in ("algorithm", "topology")},
        }
    return series, lambda2


def _draw_theory(
    ax: Any, s: Series, points: list[tuple[int, float]], lambda2: dict[tuple[str, str], float], color: str
) -> bool:
    """Dashed ``c0 * lambda_2^(2 (t - t0))`` from a run's first point, where it applies: a
    matrix-mixing algorithm whose peers start apart (round 0 already disagrees), with the
    lambda_2 of that algorithm's own matrix. Runs that start in consensus only show the
    gradient-noise floor, which theory does not predict."""
    lam = lambda2.get((s["topology"][0], s["algorithm"][0]))
    if lam is None or not 0 < lam < 1:
        return False
    r0, c0 = points[0]
    if r0 != 0:
        return False
    floor = min(c for _, c in points) / 100  # stop the line where it would stretch the axis
    curve = [(r, c0 * lam ** (2 * (r - r0))) for r, _ in points]
    ax.plot(
        *zip(*[(r, y) for r, y in curve if y >= floor], strict=True),
        color=color,
        linestyle="--",
        linewidth=1,
        alpha=0.8,
    )
    return True


def plot_runs(runs: list[Path], out: Path, title: str = "") -> Path:
    """Write a three-panel figure for ``runs`` to ``out`` (.png, .svg or .pdf)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series, lambda2 = _collect(runs)
    if not series:
        raise ValueError("the run directories hold no metrics rows")
    fig, (ax_c, ax_a, ax_b) = plt.subplots(1, 3, figsize=(18, 5.2), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    predicted_drawn = False
    for i, (name, s) in enumerate(sorted(series.items())):
        color = colors[i % len(colors)]
        baseline = s["algorithm"][0] in BASELINES
        style = {
            "color": "black" if s["algorithm"][0] == "central" else color,
            "linestyle": ":" if baseline else "-",
            "linewidth": 2 if baseline else 1.6,
        }
        rounds, cd = s["round"], s["consensus_distance"]
        points = [(r, c) for r, c in zip(rounds, cd, strict=True) if c is not None and c > 0]
        if points:
            ax_c.plot(*zip(*points, strict=True), marker="o", markersize=3, label=name, **style)
            predicted_drawn |= _draw_theory(ax_c, s, points, lambda2, color)
        ax_a.plot(rounds, s["test_accuracy"], label=name, **style)
        sent = [(b, a) for b, a in zip(s["bytes_sent"], s["test_accuracy"], strict=True) if b > 0]
        if sent:  # the centralized baseline sends nothing and has no place here
            ax_b.plot(*zip(*sent, strict=True), label=name, **style)
    ax_c.set_yscale("log")
    ax_c.set_xlabel("round")
    ax_c.set_ylabel("consensus distance (1/N) Σ‖xᵢ − x̄‖²")
    ax_c.set_title(
        "Consensus" + (" (dashed: theory's λ₂^(2t) decay from round 0)" if predicted_drawn else "")
    )
    ax_a.set_xlabel("round")
    ax_a.set_ylabel("test accuracy of the averaged model")
    ax_a.set_title("Accuracy vs rounds")
    ax_b.set_xscale("log")
    ax_b.set_xlabel("bytes sent, all peers (cumulative)")
    ax_b.set_ylabel("test accuracy")
    has_central = any(s["algorithm"][0] == "central" for s in series.values())
    ax_b.set_title("Accuracy vs communication" + (" (centralized sends nothing)" if has_central else ""))
    for ax in (ax_c, ax_a, ax_b):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
