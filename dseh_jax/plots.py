"""Training curves of one run: what a person looks at to see whether rounds are healthy.

The paper's retrieval figures (SPEC §7, Figs. 3–5) are in
:mod:`dseh_jax.evaluation.curves_plot`.
"""
from __future__ import annotations

from typing import Any, Sequence

from dseh_jax.atomic_io import save_figure


def plot_history(history: Sequence[dict[str, Any]], path: str, title: str = "") -> None:
  """Writes a PNG with LabNet's and ImgNet's per-epoch loss, LabNet's ``nh`` and ``map_l``,
  ImgNet's bit agreement with LabNet's codes, and the ImgNet MAP of every round that was
  scored (the last one; every one on a validation split).
  Epochs are numbered across the whole run; rounds are shaded alternately."""
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  epochs = [h for h in history if h["kind"] == "epoch"]
  rounds = [h for h in history if h["kind"] == "imgnet_round" and "map" in h]
  fig = Figure(figsize=(12, 7), layout="constrained")
  axes = fig.subplots(2, 3).ravel()
  panels = [("labnet", "loss", "LabNet loss"), ("imgnet", "loss", "ImgNet loss"),
            ("labnet", "nh", "LabNet distinct codes nh"),
            ("labnet", "map_l", "LabNet label-retrieval MAP"),
            ("imgnet", "bit_agreement", "ImgNet bit agreement with LabNet")]
  for ax, (net, key, label) in zip(axes, panels):
    for r in sorted({h["round"] for h in epochs}):   # one segment per round: no line
      xs = [i for i, h in enumerate(epochs)          # across the other network's phase
            if h["network"] == net and h["round"] == r and key in h]
      ax.plot(xs, [epochs[i][key] for i in xs], marker=".", lw=1, color="C0")
    ax.set_title(label, fontsize=10)
    ax.set_xlabel("epoch (whole run)")
    _shade_rounds(ax, epochs)
  ax = axes[5]
  ax.plot([r["round"] for r in rounds], [r["map"] for r in rounds], marker="o")
  ax.set_title("ImgNet MAP (scored rounds)", fontsize=10)
  ax.set_xlabel("round")
  ax.set_xticks([r["round"] for r in rounds])
  if title:
    fig.suptitle(title)
  save_figure(fig, path, dpi=90)


def _shade_rounds(ax, epochs) -> None:
  start = 0
  for i in range(1, len(epochs) + 1):
    if i == len(epochs) or epochs[i]["round"] != epochs[start]["round"]:
      if epochs[start]["round"] % 2:
        ax.axvspan(start - 0.5, i - 0.5, color="0.92", zorder=0)
      start = i
