"""A run's history next to its train.log: ``metrics.csv`` (one row per epoch) and ``curves.png``.

Columns: ``epoch, global_step, loss`` (mean training loss of the epoch),
``lr`` (of its last step), ``images_per_second``, the task's metric names
(empty in epochs without evaluation), ``epoch_seconds`` and ``wall_seconds``
(training time since the run started, resumed runs included). A resumed run
keeps the rows up to the epoch it resumes from and appends after them, so a
row is never duplicated. Both files are rewritten atomically after each epoch.
"""
import csv
import io
import math
import os

from src.utils.io import atomic_path, atomic_write_text

CSV_NAME = "metrics.csv"
PLOT_NAME = "curves.png"
LEADING = ("epoch", "global_step", "loss", "lr", "images_per_second")
TRAILING = ("epoch_seconds", "wall_seconds")


class RunHistory:
    """Rows of ``metrics.csv`` in ``folder``; ``add`` appends one and redraws ``curves.png``."""

    def __init__(self, folder: str, metric_names, primary_metric: str, resumed_epoch=None):
        self.csv_path = os.path.join(folder, CSV_NAME)
        self.plot_path = os.path.join(folder, PLOT_NAME)
        self.columns = [*LEADING, *metric_names, *TRAILING]
        self.primary = primary_metric
        self.rows = []
        if resumed_epoch is not None:
            self.rows = [row for row in read_rows(self.csv_path)
                         if _number(row.get("epoch")) is not None
                         and _number(row["epoch"]) <= resumed_epoch]

    @property
    def wall_seconds(self) -> float:
        """Training time of the rows kept (where a resumed run's clock continues)."""
        if not self.rows:
            return 0.0
        return _number(self.rows[-1].get("wall_seconds")) or 0.0

    def add(self, epoch: int, global_step: int, loss: float, lr: float, images_per_second: float,
            metrics, epoch_seconds: float, wall_seconds: float) -> None:
        row = {"epoch": epoch, "global_step": global_step, "loss": f"{loss:.6g}",
               "lr": f"{lr:.6g}", "images_per_second": f"{images_per_second:.1f}",
               "epoch_seconds": f"{epoch_seconds:.1f}", "wall_seconds": f"{wall_seconds:.1f}"}
        for name in self.columns[len(LEADING):-len(TRAILING)]:
            value = (metrics or {}).get(name)
            row[name] = f"{value:.6g}" if isinstance(value, (int, float)) else ""
        self.rows.append(row)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.columns, extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.csv_path, text.getvalue())
        self._plot()

    def _plot(self) -> None:
        # The object API with the Agg canvas: no pyplot state, no display needed.
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=import-outside-toplevel
        from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
        from matplotlib.ticker import MaxNLocator  # pylint: disable=import-outside-toplevel

        figure = Figure(figsize=(9, 3.6), dpi=100)
        FigureCanvasAgg(figure)
        loss_axes, metric_axes = figure.subplots(1, 2)
        epochs = [_number(row["epoch"]) for row in self.rows]
        losses = [_number(row["loss"]) for row in self.rows]
        loss_axes.plot(epochs, [math.nan if v is None else v for v in losses], "o-")
        loss_axes.set(title="training loss (epoch mean)", xlabel="epoch", ylabel="loss")
        scored = [(e, _number(row.get(self.primary))) for e, row in zip(epochs, self.rows)]
        scored = [(e, v) for e, v in scored if v is not None]
        if scored:
            metric_axes.plot(*zip(*scored), "o-", color="tab:green")
        else:
            metric_axes.text(0.5, 0.5, "not evaluated yet\n(checkpoint.eval_every_epochs)",
                             ha="center", va="center", transform=metric_axes.transAxes)
        metric_axes.set(title=f"evaluation: {self.primary}", xlabel="epoch", ylabel=self.primary)
        last = max([e for e in epochs if e is not None] or [1])
        for axes in (loss_axes, metric_axes):
            axes.grid(alpha=0.3)
            axes.set_xlim(0.5, last + 0.5)  # whole epochs, also for a single row
            axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        figure.tight_layout()
        with atomic_path(self.plot_path) as tmp:
            figure.savefig(tmp, format="png")


def read_rows(path: str):
    """The rows of a ``metrics.csv`` as dicts of strings ([] when there is none)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
