"""NUS-WIDE-21 from the official NUS-WIDE layout (SPEC §6).

Expected under ``data_dir`` (the files the NUS lab distributes, plus the Flickr images):

* ``ImageList/Imagelist.txt``: one image per line, Windows-style, e.g.
  ``actor\\0001_2124494179.jpg`` (a longer prefix such as ``C:\\ImageData\\Flickr\\`` is
  allowed: the last two components are kept);
* ``Concepts81.txt``: the concept names, one per line;
* ``Groundtruth/AllLabels/Labels_<concept>.txt``: one ``0``/``1`` per line, line ``i``
  for image ``i`` of the image list;
* ``Flickr/<concept folder>/<file>.jpg``: the images.

The protocol keeps the 21 most frequent concepts (ties broken by name, alphabetically
first wins), drops the images carrying none of them (and counts them), then draws
100 query and 500 train images per class (``dseh_jax.data.protocols``). An image's id
is its 0-based line number in ``Imagelist.txt``.
"""
from __future__ import annotations

import os
import re

import numpy as np

from dseh_jax.data import protocols
from dseh_jax.data.listing import (ImageDataset, ImageListing, existing_files, finish_stats,
                                   read_text_lines)

IMAGE_LIST = os.path.join("ImageList", "Imagelist.txt")
CONCEPTS = "Concepts81.txt"
LABEL_DIR = os.path.join("Groundtruth", "AllLabels")


def read_image_list(data_dir: str, image_subdir: str = "Flickr") -> tuple[str, ...]:
  """Relative paths (``Flickr/<concept>/<file>``) of every line of ``Imagelist.txt``."""
  path = os.path.join(data_dir, IMAGE_LIST)
  paths = []
  for number, line in enumerate(read_text_lines(path), start=1):
    parts = [p for p in re.split(r"[\\/]", line.strip()) if p]
    if len(parts) < 2:
      raise ValueError(f"{path}: line {number} is {line!r}; expected "
                       "'<concept folder>\\<file>.jpg'")
    paths.append("/".join([image_subdir] + parts[-2:]) if image_subdir
                 else "/".join(parts[-2:]))
  if not paths:
    raise ValueError(f"{path}: the image list is empty")
  return tuple(paths)


def read_concept_labels(data_dir: str, num_images: int) -> tuple[tuple[str, ...], np.ndarray]:
  """Concept names and the ``[num_images, num_concepts]`` uint8 0/1 label matrix."""
  concept_path = os.path.join(data_dir, CONCEPTS)
  names = tuple(line.strip() for line in read_text_lines(concept_path) if line.strip())
  if not names:
    raise ValueError(f"{concept_path}: no concept names")
  if len(set(names)) != len(names):
    raise ValueError(f"{concept_path}: a concept name is listed twice")
  labels = np.zeros((num_images, len(names)), np.uint8)
  for k, name in enumerate(names):
    path = os.path.join(data_dir, LABEL_DIR, f"Labels_{name}.txt")
    lines = [line.strip() for line in read_text_lines(path)]
    while lines and not lines[-1]:
      lines.pop()
    if len(lines) != num_images:
      raise ValueError(f"{path}: {len(lines)} lines; expected {num_images} (one per line "
                       f"of {IMAGE_LIST})")
    values = np.asarray(lines, dtype=str)
    ones = values == "1"
    bad = np.flatnonzero(~ones & (values != "0"))
    if bad.shape[0]:
      raise ValueError(f"{path}: line {bad[0] + 1} is {lines[bad[0]]!r}; expected 0 or 1")
    labels[:, k] = ones
  return names, labels


def build_nus_wide21(data_dir: str, *, seed: int = 0, num_classes: int = 21,
                     query_per_class: int = 100, train_per_class: int = 500,
                     database_includes_train: bool = True, drop_missing_files: bool = False,
                     image_subdir: str = "Flickr") -> ImageDataset:
  """NUS-WIDE-21 by the paper's protocol (SPEC §6).

  Args:
    data_dir: the official layout (module docstring).
    seed: seeds the query/train draw.
    num_classes: most frequent concepts kept (paper 21).
    query_per_class: paper 100.
    train_per_class: paper 500.
    database_includes_train: database = all non-query images (authors' code).
    drop_missing_files: drop (and count) listed images whose file is absent, before the
      draw; otherwise a missing file fails when it is read.
    image_subdir: folder under ``data_dir`` holding the concept folders.

  Returns:
    The listed dataset; ``stats`` has ``images_listed``, ``images_without_label_removed``,
    ``missing_files_removed``, ``class_counts`` and the overlap report.
  """
  paths = read_image_list(data_dir, image_subdir)
  concept_names, all_labels = read_concept_labels(data_dir, len(paths))
  keep_classes = protocols.top_classes(all_labels.sum(0), concept_names, int(num_classes))
  class_names = tuple(concept_names[k] for k in keep_classes)
  labels = all_labels[:, keep_classes].astype(np.float32)
  labelled = labels.any(axis=1)
  present = existing_files(data_dir, paths) if drop_missing_files else np.ones_like(labelled)
  rows = np.flatnonzero(labelled & present)
  catalog = ImageListing(tuple(paths[i] for i in rows), labels[rows], rows.astype(np.int64))
  idx = protocols.per_class_split(catalog.labels, query_per_class=query_per_class,
                                  train_per_class=train_per_class, seed=seed,
                                  database_includes_train=database_includes_train,
                                  class_names=class_names)
  splits = {s: catalog.take(i) for s, i in idx.as_dict().items()}
  stats = {"images_listed": len(paths),
           "images_without_label_removed": int((~labelled).sum()),
           "missing_files_removed": int((labelled & ~present).sum()),
           "images_used": len(catalog),
           "class_counts": dict(zip(class_names, catalog.labels.sum(0).astype(int).tolist())),
           "seed": int(seed)}
  return ImageDataset("nus_wide21", data_dir, class_names, splits,
                      finish_stats("nus_wide21", splits, stats))
