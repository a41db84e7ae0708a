"""Drawing a topology to an image file, hospitals in their own colours."""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from topologies.builders import hospital_id

__all__ = ["draw"]


def draw(graph: nx.Graph, path: str | Path, title: str = "", seed: int = 0) -> Path:
    """Write a picture of ``graph`` (format from the suffix: .png, .svg, .pdf)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    n = graph.number_of_nodes()
    hospitals = [hospital_id(str(v)) for v in graph.nodes]
    coloured = all(h is not None for h in hospitals)
    colors = [h if h is not None else 0 for h in hospitals]
    # Sparse rings and meshes read best on a circle only when small; large graphs need springs.
    layout = (
        nx.circular_layout(graph)
        if n <= 64 and not coloured
        else nx.spring_layout(graph, seed=seed, k=1.5 / max(n, 1) ** 0.5)
    )
    fig, ax = plt.subplots(figsize=(7, 7), dpi=110)
    nx.draw_networkx_edges(graph, layout, ax=ax, alpha=0.4, arrows=graph.is_directed())
    nx.draw_networkx_nodes(
        graph,
        layout,
        ax=ax,
        node_size=max(20, 400 - 3 * n),
        node_color=colors,
        cmap="tab10" if coloured else None,
    )
    if n <= 64:
        nx.draw_networkx_labels(graph, layout, ax=ax, font_size=7)
    ax.set_title(title or f"{n} peers, {graph.number_of_edges()} links")
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
