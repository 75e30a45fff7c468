"""List files as most later hashing papers release them (SPEC §6).

``train.txt``, ``test.txt`` (the query set) and ``database.txt``: one image per line,
``relative/path.jpg 0 1 0 ...``: a path without spaces, then one 0/1 label per class.
Works without TFDS. An image's id is ``path_id`` of its path (after ``strip_prefix``),
so the same path has the same id in every file; overlaps between the files are
counted and reported (SPEC §6 lists known leaks in released lists).
"""
from __future__ import annotations

import os

import numpy as np

from dseh_jax.data.label_matrix import class_names_for
from dseh_jax.data.listing import (ImageDataset, ImageListing, finish_stats, path_ids,
                                   read_text_lines)

DEFAULT_FILES = {"train": "train.txt", "query": "test.txt", "database": "database.txt"}


def normalize_path(path: str, strip_prefix: str = "") -> str:
  """``path`` with ``strip_prefix`` and a leading ``./`` removed, ``/``-separated."""
  if strip_prefix and path.startswith(strip_prefix):
    path = path[len(strip_prefix):]
  path = path.replace("\\", "/")
  while path.startswith("./"):
    path = path[2:]
  return path


def parse_labels(tokens: list[str], path: str, number: int) -> list[float]:
  """Label tokens of one line as 0.0/1.0; anything else is a ValueError naming the line."""
  values = []
  for token in tokens:
    try:
      value = float(token)
    except ValueError:
      value = float("nan")
    if value not in (0.0, 1.0):
      raise ValueError(f"{path}: line {number}: label {token!r}; expected 0 or 1")
    values.append(value)
  return values


def read_list_file(path: str, strip_prefix: str = "") -> tuple[tuple[str, ...], np.ndarray]:
  """One list file: relative paths and ``[n, c]`` float32 labels.

  Blank lines are skipped; an empty file, a line without labels, a line whose label
  count differs from the first line's, or a label other than 0/1 raise ``ValueError``
  naming the file and the line.
  """
  paths, rows, width = [], [], None
  for number, line in enumerate(read_text_lines(path), start=1):
    tokens = line.split()
    if not tokens:
      continue
    if len(tokens) < 2:
      raise ValueError(f"{path}: line {number} has a path but no labels; expected "
                       "'path 0 1 0 ...'")
    if width is None:
      width = len(tokens) - 1
    elif len(tokens) - 1 != width:
      raise ValueError(f"{path}: line {number} has {len(tokens) - 1} labels; expected "
                       f"{width} (as on the first line)")
    paths.append(normalize_path(tokens[0], strip_prefix))
    rows.append(parse_labels(tokens[1:], path, number))
  if not paths:
    raise ValueError(f"{path}: the list file is empty")
  return tuple(paths), np.asarray(rows, np.float32)


def build_list_files(data_dir: str, *, image_root: str = "", strip_prefix: str = "",
                     train_file: str = DEFAULT_FILES["train"],
                     query_file: str = DEFAULT_FILES["query"],
                     database_file: str = DEFAULT_FILES["database"],
                     class_names: tuple[str, ...] = (),
                     name: str = "list_files") -> ImageDataset:
  """The three list files under ``data_dir`` as an ``ImageDataset``.

  Args:
    data_dir: folder holding the list files (names relative to it, or absolute).
    image_root: folder the listed paths are relative to (default ``data_dir``).
    strip_prefix: removed from the start of every listed path (released lists often
      start with the authors' own folders).
    train_file: the train list.
    query_file: the query list (``test.txt`` in released lists).
    database_file: the database list.
    class_names: optional names; default ``"0"``, ``"1"``, ...
    name: dataset name.

  Returns:
    The dataset with ids from the paths and the overlap report in ``stats``.
  """
  files = {"train": train_file, "query": query_file, "database": database_file}
  splits, width, first = {}, None, ""
  for split, file_name in files.items():
    path = os.path.join(data_dir, file_name)
    paths, labels = read_list_file(path, strip_prefix)
    if width is None:
      width, first = labels.shape[1], path
    elif labels.shape[1] != width:
      raise ValueError(f"{path}: {labels.shape[1]} labels per line; expected {width} "
                       f"(as in {first})")
    splits[split] = ImageListing(paths, labels, path_ids(paths, path))
  names = class_names_for(class_names, width, "each line of the list files")
  stats = {"files": {s: os.path.join(data_dir, f) for s, f in files.items()}}
  return ImageDataset(name, image_root or data_dir, names, splits,
                      finish_stats(name, splits, stats))
