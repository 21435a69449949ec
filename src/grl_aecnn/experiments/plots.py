"""Figure helpers shared by the experiments: a headless pyplot and atomic PNG writes."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Write a figure atomically (temp file + rename) and close it."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120)
    pyplot().close(fig)
    tmp.replace(path)
    return path
