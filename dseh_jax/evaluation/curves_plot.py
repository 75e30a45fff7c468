"""The paper's figures: PR curves (Fig. 3), precision@top-N (Fig. 4), PCA of semantic
features (Fig. 5), SPEC §7.

Layout of Figs. 3–4: one figure per dataset and code length, one line per method, with
markers, a legend, a grid and labelled axes. The PR curve has recall on x and precision
on y, one point per Hamming radius ``0…K`` (``RetrievalReport.pr_curve``); the P@N curve
has the number of returned items on x (``RetrievalReport.precision_at_n`` and
``precision_at[policy]``).

Every figure is written atomically as a PNG (matplotlib's Agg canvas, no display needed),
and the plotted numbers next to it as ``<name>.json`` and ``<name>.csv`` (floats written
with ``repr``, so they read back exactly).
"""
from __future__ import annotations

import csv
import io
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from dseh_jax.atomic_io import save_figure, write_json, write_text

MARKERS = ("o", "s", "^", "D", "v", "<", ">", "p", "*", "h", "X", "P")


def sidecar_paths(path: str) -> tuple[str, str]:
  """``(json_path, csv_path)`` written next to the figure ``path``."""
  stem = os.path.splitext(path)[0]
  return stem + ".json", stem + ".csv"


def _field(value: Any, name: str) -> Any:
  if hasattr(value, name):
    return getattr(value, name)
  if isinstance(value, Mapping) and name in value:
    return value[name]
  return None


def _series(values: Any, where: str, field: str, unit_interval: bool) -> list[float]:
  arr = np.asarray(values, np.float64)
  if arr.ndim != 1 or arr.size == 0:
    raise ValueError(f"{where}: field {field!r} has shape {arr.shape}; expected a "
                     "non-empty list of numbers")
  if not np.all(np.isfinite(arr)) or (unit_interval and (arr.min() < 0 or arr.max() > 1)):
    raise ValueError(f"{where}: field {field!r} holds values outside "
                     f"{'[0, 1]' if unit_interval else 'the finite numbers'}")
  return [float(v) for v in arr]


def pr_curve_of(value: Any, where: str = "curves") -> dict[str, list[float]]:
  """``{"radius", "precision", "recall"}`` from a ``RetrievalReport``, its ``to_dict()``, or
  a ``pr_curve`` dict itself; ``ValueError`` naming ``where`` and the field otherwise."""
  curve = _field(value, "pr_curve")
  curve = value if curve is None else curve
  if not isinstance(curve, Mapping):
    raise ValueError(f"{where}: expected a 'pr_curve' with 'precision' and 'recall'")
  missing = [f for f in ("precision", "recall") if f not in curve]
  if missing:
    raise ValueError(f"{where}: field 'pr_curve' lacks {missing}; expected 'radius', "
                     "'precision' and 'recall' lists as in RetrievalReport.pr_curve")
  precision = _series(curve["precision"], where, "pr_curve.precision", True)
  recall = _series(curve["recall"], where, "pr_curve.recall", True)
  radius = list(curve.get("radius", range(len(precision))))
  if not len(precision) == len(recall) == len(radius):
    raise ValueError(f"{where}: field 'pr_curve' has {len(radius)} radii, "
                     f"{len(precision)} precisions and {len(recall)} recalls; expected "
                     "equal lengths (one per Hamming radius 0…K)")
  return {"radius": [int(r) for r in radius], "precision": precision, "recall": recall}


def precision_at_n_of(value: Any, policy: str = "stable",
                      where: str = "curves") -> dict[str, list[float]]:
  """``{"n", "precision"}`` from a ``RetrievalReport`` or its ``to_dict()`` (fields
  ``precision_at_n`` and ``precision_at[policy]``)."""
  ns, by_policy = _field(value, "precision_at_n"), _field(value, "precision_at")
  if ns is None or by_policy is None:
    raise ValueError(f"{where}: expected fields 'precision_at_n' and 'precision_at' as in "
                     "RetrievalReport.to_dict()")
  if isinstance(by_policy, Mapping):
    if policy not in by_policy:
      raise ValueError(f"{where}: field 'precision_at' has no tie policy {policy!r}; it "
                       f"has {sorted(by_policy)}")
    values = by_policy[policy]
  else:
    values = by_policy
  precision = _series(values, where, f"precision_at.{policy}", True)
  n = [int(v) for v in _series(ns, where, "precision_at_n", False)]
  if len(n) != len(precision):
    raise ValueError(f"{where}: field 'precision_at_n' has {len(n)} entries and "
                     f"'precision_at.{policy}' {len(precision)}; expected equal lengths")
  return {"n": n, "precision": precision}


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(header)
  for row in rows:
    writer.writerow([repr(v) if isinstance(v, float) else v for v in row])
  return buf.getvalue()


def _new_axes(figsize=(5.6, 4.6)):
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  fig = Figure(figsize=figsize, layout="constrained")
  return fig, fig.subplots()


def _finish_axes(ax, xlabel: str, ylabel: str, title: str) -> None:
  """Labels, a [0, 1] precision axis, grid, legend and title shared by Figs. 3 and 4."""
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_ylim(0.0, 1.02)
  ax.grid(True, alpha=0.4)
  ax.legend(loc="best", fontsize=8)
  if title:
    ax.set_title(title)


def _check_methods(curves_by_method: Mapping[str, Any]) -> None:
  if not curves_by_method:
    raise ValueError("curves_by_method is empty; expected at least one method")


def plot_pr_curves(curves_by_method: Mapping[str, Any], path: str, title: str = "") -> None:
  """Fig. 3: precision (y) against recall (x), one point per Hamming radius ``0…K``.

  Args:
    curves_by_method: method name → ``RetrievalReport``, its ``to_dict()`` or its
      ``pr_curve`` (see :func:`pr_curve_of`), in legend order.
    path: the PNG; ``.json`` and ``.csv`` with the same stem are written beside it.
  """
  _check_methods(curves_by_method)
  curves = {name: pr_curve_of(v, f"curves of {name!r}") for name, v in curves_by_method.items()}
  fig, ax = _new_axes()
  for i, (name, c) in enumerate(curves.items()):
    ax.plot(c["recall"], c["precision"], marker=MARKERS[i % len(MARKERS)], markersize=4,
            lw=1.3, label=name)
  ax.set_xlim(0.0, 1.02)
  _finish_axes(ax, "Recall", "Precision", title)
  json_path, csv_path = sidecar_paths(path)
  write_json(json_path, {"figure": "precision_recall", "title": title, "x": "recall",
                         "y": "precision", "points": "hamming radius 0..K",
                         "methods": curves})
  write_text(csv_path, _csv_text(
      ("method", "radius", "recall", "precision"),
      [(name, r, rc, p) for name, c in curves.items()
       for r, rc, p in zip(c["radius"], c["recall"], c["precision"])]))
  save_figure(fig, path)


def plot_precision_at_n(curves_by_method: Mapping[str, Any], path: str, title: str = "",
                        policy: str = "stable") -> None:
  """Fig. 4: precision of the top ``N`` returned items against ``N``.

  Args:
    curves_by_method: method name → ``RetrievalReport`` or its ``to_dict()``.
    path: the PNG; ``.json`` and ``.csv`` beside it.
    policy: which tie policy's ``precision_at`` to draw.
  """
  _check_methods(curves_by_method)
  curves = {name: precision_at_n_of(v, policy, f"curves of {name!r}")
            for name, v in curves_by_method.items()}
  fig, ax = _new_axes()
  for i, (name, c) in enumerate(curves.items()):
    ax.plot(c["n"], c["precision"], marker=MARKERS[i % len(MARKERS)], markersize=4, lw=1.3,
            label=name)
  _finish_axes(ax, "Number of top returned items N", "Precision@N", title)
  json_path, csv_path = sidecar_paths(path)
  write_json(json_path, {"figure": "precision_at_n", "title": title, "x": "n",
                         "y": "precision", "tie_policy": policy, "methods": curves})
  write_text(csv_path, _csv_text(
      ("method", "n", "precision"),
      [(name, n, p) for name, c in curves.items() for n, p in zip(c["n"], c["precision"])]))
  save_figure(fig, path)


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The first two principal components of the rows of ``x`` ``[n, d]`` (float64).

  Returns ``(coords [n, 2], explained_variance_ratio [2])``. Each component's sign is fixed
  so that its largest-magnitude loading is positive (PCA leaves the sign open).
  """
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
    raise ValueError(f"PCA needs [n >= 2, d >= 2] features; got shape {x.shape}")
  centered = x - x.mean(axis=0)
  _, s, vt = np.linalg.svd(centered, full_matrices=False)
  comps = vt[:2]
  signs = np.sign(comps[np.arange(2), np.argmax(np.abs(comps), axis=1)])
  comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
  var = s ** 2
  total = var.sum()
  ratio = var[:2] / total if total > 0 else np.zeros(2)
  return centered @ comps.T, ratio


def _label_index(labels: Optional[np.ndarray], n: int) -> Optional[np.ndarray]:
  """One class index per row (the first label of a multi-hot row; -1 for none)."""
  if labels is None:
    return None
  labels = np.asarray(labels)
  if labels.ndim == 2 and labels.shape[0] == n:
    return np.where(labels.any(axis=1), np.argmax(labels != 0, axis=1), -1)
  if labels.ndim == 1 and labels.shape[0] == n and np.issubdtype(labels.dtype, np.integer):
    return labels.astype(np.int64)
  raise ValueError(f"labels has shape {labels.shape} and dtype {labels.dtype}; expected "
                   f"[{n}, num_classes] multi-hot or [{n}] class indices, one per item of "
                   "each feature set")


def plot_semantic_pca(labnet_features: np.ndarray, imgnet_features: np.ndarray, path: str,
                      labels: Optional[np.ndarray] = None, title: str = "") -> None:
  """Fig. 5: 2-D PCA of LabNet's and ImgNet's semantic features in one common space.

  The PCA is fitted on both sets together (``[n_l + n_v, d]``), so distances between the
  two marker styles are meaningful. With ``labels`` (one row per item, shared by both
  sets: the paper plots the same 100 items through both networks) points are coloured
  by their first label.

  Args:
    labnet_features: ``[n_l, d]`` LabNet semantic features ``f^l``.
    imgnet_features: ``[n_v, d]`` ImgNet semantic features ``f^v``.
    path: the PNG; ``.json`` (explained variance, coordinates) and ``.csv`` beside it.
  """
  lab = np.asarray(labnet_features, np.float64)
  img = np.asarray(imgnet_features, np.float64)
  if lab.ndim != 2 or img.ndim != 2 or lab.shape[1] != img.shape[1]:
    raise ValueError(f"labnet_features {lab.shape} and imgnet_features {img.shape} must be "
                     "[n, d] with the same width d")
  for name, x in (("labnet_features", lab), ("imgnet_features", img)):
    if not np.all(np.isfinite(x)):
      raise ValueError(f"{name} holds NaN or infinite values")
  if labels is not None and lab.shape[0] != img.shape[0]:
    raise ValueError(f"labels need the same items in both sets; got {lab.shape[0]} LabNet "
                     f"and {img.shape[0]} ImgNet rows")
  coords, ratio = pca_2d(np.concatenate([lab, img]))
  classes = _label_index(labels, lab.shape[0])
  n_l = lab.shape[0]
  fig, ax = _new_axes((5.6, 5.0))
  # pylint: disable=import-outside-toplevel
  from matplotlib import colormaps
  from matplotlib.lines import Line2D
  palette = colormaps["tab10" if classes is None or classes.max() < 10 else "tab20"]
  handles = []
  for net, sl, marker in (("LabNet", slice(0, n_l), "o"), ("ImgNet", slice(n_l, None), "^")):
    xy = coords[sl]
    if classes is None:
      color = palette(0 if marker == "o" else 1)
      ax.scatter(xy[:, 0], xy[:, 1], marker=marker, s=22, alpha=0.8, color=color)
    else:
      color = (0.35, 0.35, 0.35, 1.0)
      colors = [palette(c % palette.N) if c >= 0 else (0.6, 0.6, 0.6, 1.0) for c in classes]
      ax.scatter(xy[:, 0], xy[:, 1], marker=marker, s=22, alpha=0.8, c=colors,
                 edgecolors="k" if marker == "o" else "none", linewidths=0.4)
    handles.append(Line2D([], [], ls="", marker=marker, color=color, label=net))
  ax.set_xlabel(f"PC 1 ({100 * ratio[0]:.1f}% variance)")
  ax.set_ylabel(f"PC 2 ({100 * ratio[1]:.1f}% variance)")
  ax.grid(True, alpha=0.4)
  ax.legend(handles=handles, loc="best", fontsize=8)
  if title:
    ax.set_title(title)
  rows = []
  for i in range(coords.shape[0]):
    net, j = ("labnet", i) if i < n_l else ("imgnet", i - n_l)
    label = "" if classes is None else int(classes[j])
    rows.append((net, j, label, float(coords[i, 0]), float(coords[i, 1])))
  json_path, csv_path = sidecar_paths(path)
  write_json(json_path, {"figure": "semantic_pca", "title": title,
                         "explained_variance_ratio": [float(r) for r in ratio],
                         "num_labnet": int(n_l), "num_imgnet": int(img.shape[0]),
                         "labnet": coords[:n_l].tolist(), "imgnet": coords[n_l:].tolist()})
  write_text(csv_path, _csv_text(("network", "index", "label", "pc1", "pc2"), rows))
  save_figure(fig, path)


def nice_title(dataset: str, num_bits: int, what: str) -> str:
  """``"<what> on <dataset> @ <K> bits"``, the figures' default title."""
  return f"{what} on {dataset} @ {num_bits} bits" if dataset else f"{what} @ {num_bits} bits"

