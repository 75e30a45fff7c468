"""Multi-label 2×2 mosaics of CIFAR-10 photos, built the way the embedded digits mosaics are.

Each photo is shrunk to a ``16×16`` cell (2×2 average pooling); a mosaic is a ``2×2`` grid
of 1–4 filled cells (the others black), so it is ``32×32×3`` like a CIFAR image, and its
label is the multi-hot set of classes it shows (10 labels). The 60,000 photos (official
train and test together) are cut into disjoint query / train / retrieval pools, stratified
by class (``digits_mosaic.split_source_pools``), so a query mosaic never shares a photo with
a database mosaic. Everything is drawn from ``np.random.default_rng([seed, SEED_SALT])``.
This is a development set for multi-label retrieval (the paper's NUS-WIDE and MS-COCO are
multi-label); it is not a published benchmark.
"""
from __future__ import annotations

import numpy as np

from dseh_jax.data import cifar10
from dseh_jax.data.digits_mosaic import make_mosaics, split_source_pools
from dseh_jax.data.listing import overlap_report
from dseh_jax.data.splits import RetrievalData, Split

SEED_SALT = 0x30A1C
CELL = 16


def shrink_to_cells(images: np.ndarray, scale: float) -> np.ndarray:
  """``[m, 32, 32, 3]`` uint8 → ``[m, 16, 16, 3]`` float32 cells, 2×2 means / ``scale``."""
  m, h, w, c = images.shape
  x = images.reshape(m, h // 2, 2, w // 2, 2, c).astype(np.float32)
  return x.mean(axis=(2, 4)) / np.float32(scale)


def build_cifar10_mosaic(data_dir: str, *, seed: int = 0, layout: str = "auto",
                         flatten: bool = False, scale: float = 255.0, num_query: int = 1000,
                         num_train: int = 5000, num_retrieval: int = 10000,
                         min_photos: int = 1, max_photos: int = 4,
                         database_includes_train: bool = True) -> RetrievalData:
  """CIFAR-10 mosaics (module docstring) from the python batches or class folders.

  Args:
    data_dir, layout: as :func:`dseh_jax.data.cifar10.build_cifar10`.
    seed: seeds the pools and the mosaics.
    flatten: ``False``: inputs ``[n, 32, 32, 3]``; ``True``: ``[n, 3072]`` (HWC order).
    scale: inputs are ``pixel / scale`` (0..1 by default).
    num_query, num_train, num_retrieval: mosaics per split (database = train + retrieval
      when ``database_includes_train``, as in the authors' protocol).
    min_photos, max_photos: filled cells per mosaic, within ``1..4``.
  Returns: a validated ``RetrievalData`` named ``cifar10_mosaic``.
  """
  for name, value in (("num_query", num_query), ("num_train", num_train),
                      ("num_retrieval", num_retrieval)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"cifar10_mosaic: {name} must be an int >= 1; got {value!r}")
  if (any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
          for v in (min_photos, max_photos)) or not 1 <= min_photos <= max_photos <= 4):
    raise ValueError(f"cifar10_mosaic: min_photos={min_photos!r}, max_photos={max_photos!r}; "
                     "expected ints with 1 <= min_photos <= max_photos <= 4")
  if layout not in cifar10.LAYOUTS:
    raise ValueError(f"cifar10_mosaic: layout={layout!r}; expected one of {cifar10.LAYOUTS}")
  if (isinstance(scale, bool) or not isinstance(scale, (int, float, np.number))
      or not np.isfinite(scale) or scale <= 0):
    raise ValueError(f"cifar10_mosaic: scale={scale!r}; expected a positive number")
  used = cifar10.detect_layout(str(data_dir)) if layout == "auto" else layout
  reader = cifar10.read_python_batches if used == "python" else cifar10.read_folder
  images, train_labels, test_labels, names = reader(str(data_dir))
  targets = np.concatenate([train_labels, test_labels])
  cells = shrink_to_cells(images, float(scale))
  rng = np.random.default_rng([int(seed), SEED_SALT])
  pools = split_source_pools(targets, rng)
  sizes = (int(num_query), int(num_train), int(num_retrieval))
  made = [make_mosaics(cells, targets, pool, n, 2, int(min_photos), int(max_photos), r,
                       num_classes=len(names))
          for pool, n, r in zip(pools, sizes, rng.spawn(3))]
  starts = np.cumsum((0,) + sizes)
  query, train, retrieval = (
      Split(x.reshape(len(x), -1) if flatten else x, y,
            np.arange(starts[i], starts[i + 1], dtype=np.int64))
      for i, (x, y) in enumerate(made))
  database = retrieval
  if database_includes_train:
    database = Split(np.concatenate([train.inputs, retrieval.inputs]),
                     np.concatenate([train.labels, retrieval.labels]),
                     np.concatenate([train.ids, retrieval.ids]))
  stats = {"layout": used, "seed": int(seed), "photos_per_pool": [len(p) for p in pools],
           "overlaps": overlap_report({"query": query.ids, "train": train.ids,
                                       "database": database.ids})}
  return RetrievalData("cifar10_mosaic", train, query, database, names,
                       stats=stats).validate()
