"""The two figures of a run: accuracy against sparsity, and the learning rate of every epoch."""

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_accuracy_vs_sparsity", "plot_lr_schedule"]


def plot_accuracy_vs_sparsity(
    path: str, title: str, dense_accuracy: float | None, points: list[tuple[float, float, str]], metric: str, legend: str
) -> None:
    """One point per (sparsity, accuracy, label) of `points` (IMP: the end of each cycle; GMP: of each
    pruned epoch), joined as `legend`; the dense model as a line."""
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    sparsity = [100 * p[0] for p in points]
    accuracy = [100 * p[1] for p in points]
    axes.plot(sparsity, accuracy, "o-", color="tab:blue", label=legend)
    for s, a, (_, _, label) in zip(sparsity, accuracy, points):
        axes.annotate(f"{a:.2f}%", (s, a), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
        axes.annotate(label, (s, a), textcoords="offset points", xytext=(0, -13), ha="center", fontsize=7, color="gray")
    if dense_accuracy is not None:
        axes.axhline(100 * dense_accuracy, color="black", linestyle="--", linewidth=1, label=f"dense {100 * dense_accuracy:.2f}%")
    axes.set_xlabel("sparsity (% of prunable weights removed)")
    axes.set_ylabel(f"{metric} (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_lr_schedule(
    path: str, title: str, epochs: np.ndarray, rates: np.ndarray, cycle_starts: list[int], dense_epochs: int,
    pruning_window: tuple[float, float] | None = None,
) -> None:
    """The learning rate over the run's epochs; retraining cycles shaded and numbered, or GMP's
    pruning window (first and last mask update, in epochs) shaded."""
    figure, axes = plt.subplots(figsize=(6.4, 3.6))
    axes.plot(epochs, rates, color="tab:red", linewidth=1.2)
    if pruning_window is not None:
        axes.axvspan(*pruning_window, color="tab:blue", alpha=0.12)
        axes.text(sum(pruning_window) / 2, 1.0, "GMP window", transform=axes.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)
    ends = list(cycle_starts[1:]) + [float(epochs[-1]) if len(epochs) else 0.0]
    for number, (start, end) in enumerate(zip(cycle_starts, ends), start=1):
        axes.axvspan(start, end, color="tab:blue" if number % 2 else "tab:cyan", alpha=0.12)
        axes.text((start + end) / 2, 1.0, f"cycle {number}", transform=axes.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)
    if dense_epochs and cycle_starts and cycle_starts[0] > 0:
        axes.text(cycle_starts[0] / 2, 1.0, "dense", transform=axes.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)
    axes.set_xlabel("epoch")
    axes.set_ylabel("learning rate")
    axes.set_title(title, pad=14)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
