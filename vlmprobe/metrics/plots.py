"""PNG figures for the metrics (matplotlib, Agg backend; nothing is shown on screen)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


class ReliabilityFigure:
    """A reliability diagram drawn into one reusable figure: bar per confidence bin, accuracy
    (bars) vs the diagonal, the |confidence - accuracy| gap shaded; ``bins`` from
    ``calibration.reliability_bins`` (edges [B+1], accuracy [B], confidence [B]; empty bins NaN,
    drawn empty).

    Everything but the bars and the title (axes, ticks, labels) is rendered once (fixed margins,
    no tight layout) and kept as a pixel background; ``png`` restores it and draws only the bars,
    the diagonal, the legend and the title over it (Agg blitting), so a report of hundreds of runs
    (``study/report.py``) costs a few milliseconds per diagram instead of a fresh figure's draw.
    The same bins and title give the same bytes."""

    def __init__(self, compress_level: int = 6):
        self.compress_level = compress_level
        self.fig = self.edges = None

    def _build(self, edges: np.ndarray) -> None:
        plt = _pyplot()
        self.close()
        fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
        width, zero = np.diff(edges), np.zeros(len(edges) - 1)
        self.acc = ax.bar(edges[:-1], zero, width=width, align="edge", edgecolor="black", color="#4878cf",
                          label="accuracy")
        self.gap = ax.bar(edges[:-1], zero, width=width, align="edge", color="#d65f5f", alpha=0.4, label="gap")
        (self.diag,) = ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        self.legend = ax.legend(loc="upper left")
        self.title = ax.set_title("")
        fig.subplots_adjust(left=0.14, right=0.96, bottom=0.11, top=0.92)
        # in a full draw's order (zorder): bars 1, diagonal 2, spines 2.5 (a bar of height 1 touches
        # the top spine), legend 5, title
        self.moving = [*self.acc, *self.gap, self.diag, *ax.spines.values(), self.legend, self.title]
        for a in self.moving:
            a.set_animated(True)  # left out of the background
        fig.canvas.draw()
        self.background = fig.canvas.copy_from_bbox(fig.bbox)
        self.fig, self.ax, self.edges = fig, ax, edges

    def png(self, bins: dict, title: str = "Reliability", ece: float | None = None, blit: bool = True) -> bytes:
        """The PNG of one diagram; ``blit=False``: a full draw of the figure (the reference path,
        pixel-identical; tested)."""
        import io

        from PIL import Image

        edges = np.asarray(bins["edges"], dtype=float)
        if self.edges is None or not np.array_equal(edges, self.edges):
            self._build(edges)
        acc = np.nan_to_num(np.asarray(bins["accuracy"], dtype=float))
        conf = np.asarray(bins["confidence"], dtype=float)
        gap_base = np.where(np.isnan(conf), 0, np.minimum(acc, np.nan_to_num(conf)))
        gap = np.where(np.isnan(conf), 0, np.abs(np.nan_to_num(conf) - acc))
        for bar, h in zip(self.acc, acc):
            bar.set_height(h)
        for bar, h, y in zip(self.gap, gap, gap_base):
            bar.set_height(h)
            bar.set_y(y)
        self.title.set_text(title + (f" (ECE {ece:.3f})" if ece is not None else ""))
        canvas = self.fig.canvas
        if blit:
            canvas.restore_region(self.background)
            for a in self.moving:
                self.fig.draw_artist(a)
        else:
            for a in self.moving:
                a.set_animated(False)
            canvas.draw()
            for a in self.moving:
                a.set_animated(True)
        buf = io.BytesIO()
        Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).save(
            buf, format="png", compress_level=self.compress_level)
        return buf.getvalue()

    def close(self) -> None:
        if self.fig is not None:
            _pyplot().close(self.fig)
            self.fig = self.edges = None


def reliability_diagram(bins: dict, path, title: str = "Reliability", ece: float | None = None) -> Path:
    """``ReliabilityFigure`` once, written to ``path`` (PNG, atomically)."""
    from ..cache import atomic_write

    fig = ReliabilityFigure()
    try:
        png = fig.png(bins, title, ece)
        atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(png))
    finally:
        fig.close()
    return Path(path)


def roc_plot(curves: dict, path, title: str = "OOD detection (ID positive)") -> Path:
    """``curves``: {label: (fpr, tpr, auroc)}; one line per score."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("false positive rate (OOD)")
    ax.set_ylabel("true positive rate (ID)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    return _save(fig, path)


def frequency_scatter(counts, accuracy, names, path, title: str = "Class frequency vs accuracy", annotate: int = 10) -> Path:
    """log10(1 + mentions) on x, per-class accuracy on y; the ``annotate`` most and least
    frequent classes are labelled."""
    plt = _pyplot()
    x = np.log10(1.0 + np.asarray(counts, dtype=float))
    y = np.asarray(accuracy, dtype=float)
    keep = ~np.isnan(y)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    ax.scatter(x[keep], y[keep], s=12, alpha=0.7)
    order = np.argsort(x[keep])
    idx = np.flatnonzero(keep)[order]
    for i in list(idx[:annotate // 2]) + list(idx[-(annotate - annotate // 2):] if annotate > 1 else []):
        ax.annotate(str(names[i]), (x[i], y[i]), fontsize=6, alpha=0.8)
    ax.set_xlabel("log10(1 + mentions in corpus)")
    ax.set_ylabel("per-class accuracy")
    ax.set_title(title)
    return _save(fig, path)


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)
    return path
