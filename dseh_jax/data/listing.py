"""Image datasets as lists of files: per-split paths, multi-hot labels and ids (SPEC §6).

Every image loader (raw layouts, list files, the authors' HDF5 lists) first builds an
``ImageDataset``: for each of ``train``, ``query`` and ``database`` the image paths
(relative to one root folder), the ``[n, c]`` labels and stable int64 ids. Only
``to_retrieval_data`` turns it into a ``RetrievalData`` whose inputs are lazy
``ImageArray``s, so nothing is decoded up front.

Overlaps between splits are counted by id and reported, never hidden: SPEC §6 lists
known leaks in released list files.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from typing import Any, Mapping, Sequence

import numpy as np

from dseh_jax.data.splits import RetrievalData, Split

log = logging.getLogger("dseh_jax")

SPLITS = ("train", "query", "database")


@dataclasses.dataclass(frozen=True)
class ImageListing:
  """One split as image files.

  Attributes:
    paths: ``n`` paths relative to the dataset's image root, ``/``-separated.
    labels: ``[n, c]`` float32 multi-hot labels.
    ids: ``[n]`` int64 ids; the same image has the same id in every split.
  """
  paths: tuple[str, ...]
  labels: np.ndarray
  ids: np.ndarray

  def __len__(self) -> int:
    return len(self.paths)

  def take(self, index: np.ndarray) -> "ImageListing":
    """The rows ``index`` (``[m]`` int) of this listing, in that order."""
    index = np.asarray(index, np.int64)
    return ImageListing(tuple(self.paths[i] for i in index), self.labels[index],
                        self.ids[index])


@dataclasses.dataclass(frozen=True)
class ImageDataset:
  """A retrieval dataset of image files (SPEC §6), before any image is read.

  Attributes:
    name: dataset name (``nus_wide21``, ``coco``, ...).
    root: folder that the listings' paths are relative to.
    class_names: ``c`` names, the label columns in order.
    splits: ``{"train", "query", "database"} -> ImageListing``.
    stats: counts worth reporting (removed images, split sizes, overlaps by id).
  """
  name: str
  root: str
  class_names: tuple[str, ...]
  splits: Mapping[str, ImageListing]
  stats: Mapping[str, Any]


def path_id(path: str) -> int:
  """A stable non-negative int64 id for a relative image path (first 63 bits of BLAKE2b).

  Used where a layout has no ids of its own (list files, HDF5 lists): the same path gets
  the same id in every file and on every machine.
  """
  digest = hashlib.blake2b(path.encode("utf-8"), digest_size=8).digest()
  return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


def path_ids(paths: Sequence[str], where: str) -> np.ndarray:
  """``[n]`` int64 ``path_id`` of every path; raises if two different paths collide."""
  ids = np.fromiter((path_id(p) for p in paths), np.int64, count=len(paths))
  unique_paths = set(paths)
  if len(np.unique(ids)) != len(unique_paths):   # 63-bit collision: astronomically rare
    raise ValueError(f"{where}: two different paths hash to the same id; rename one")
  return ids


def overlap_report(ids: Mapping[str, np.ndarray]) -> dict[str, int]:
  """Number of shared ids between every pair of splits, and repeated ids within one.

  Args:
    ids: ``{"train", "query", "database"} -> [n]`` int ids.

  Returns:
    ``{"query&train": .., "query&database": .., "train&database": ..,
    "<split>_repeated": ..}`` counts.
  """
  report = {}
  for a, b in (("query", "train"), ("query", "database"), ("train", "database")):
    report[f"{a}&{b}"] = int(np.intersect1d(ids[a], ids[b]).shape[0])
  for split in SPLITS:
    report[f"{split}_repeated"] = int(ids[split].shape[0] - np.unique(ids[split]).shape[0])
  return report


def finish_stats(name: str, splits: Mapping[str, ImageListing],
                 stats: Mapping[str, Any]) -> dict[str, Any]:
  """``stats`` plus split sizes and the overlap report; logs a line about overlaps."""
  out = dict(stats)
  out["split_sizes"] = {s: len(splits[s]) for s in SPLITS}
  out["overlaps"] = overlap_report({s: splits[s].ids for s in SPLITS})
  leaks = {k: v for k, v in out["overlaps"].items() if k.startswith("query&") and v}
  log.info("%s: splits %s; overlaps by id %s", name, out["split_sizes"], out["overlaps"])
  if leaks:
    log.warning("%s: query images also in other splits: %s", name, leaks)
  return out


def resolve_mean(mean: Any) -> np.ndarray:
  """The per-channel RGB mean subtracted from images (SPEC §4).

  Args:
    mean: ``"vgg_f"`` (the published VGG-F mean), ``"none"`` (zeros), 3 numbers, or
      3 comma-separated numbers in a string (``--config.data.mean=123.7,116.8,103.9``).

  Returns:
    ``[3]`` float32.
  """
  if isinstance(mean, str) and "," in mean:
    try:
      mean = [float(v) for v in mean.strip("()[] ").split(",")]
    except ValueError as e:
      raise ValueError(f"data.mean={mean!r}; expected 'vgg_f', 'none' or 3 numbers") from e
  if isinstance(mean, str):
    if mean == "vgg_f":
      from dseh_jax.input_pipeline import VGG_F_RGB_MEAN  # pylint: disable=import-outside-toplevel
      return np.asarray(VGG_F_RGB_MEAN, np.float32)
    if mean == "none":
      return np.zeros(3, np.float32)
    raise ValueError(f"data.mean={mean!r}; expected 'vgg_f', 'none' or 3 numbers")
  values = np.asarray(mean, np.float64)
  if values.shape != (3,) or not np.all(np.isfinite(values)):
    raise ValueError(f"data.mean={mean!r}; expected 'vgg_f', 'none' or 3 finite numbers")
  return values.astype(np.float32)


def to_retrieval_data(dataset: ImageDataset, *, image_size: int = 224, resize_to: int = 0,
                      mean: Any = "vgg_f") -> RetrievalData:
  """A ``RetrievalData`` whose splits' inputs are lazy ``ImageArray``s over the files.

  Args:
    dataset: the listed dataset.
    image_size: side of the square images fed to the network (SPEC §4: 224).
    resize_to: 0 resizes straight to ``image_size``; else resize to this, centre-crop.
    mean: see ``resolve_mean``.

  Returns:
    The validated dataset; ``stats`` carries ``dataset.stats``.
  """
  # Imported here: the input pipeline imports JAX, which listing files does not need.
  from dseh_jax.input_pipeline import (  # pylint: disable=import-outside-toplevel
      FileBytes, ImageArray)
  mean_rgb = resolve_mean(mean)
  splits = {}
  for split in SPLITS:
    listing = dataset.splits[split]
    inputs = ImageArray(FileBytes(dataset.root, listing.paths), image_size=int(image_size),
                        resize_to=int(resize_to), mean=mean_rgb)
    splits[split] = Split(inputs, np.asarray(listing.labels, np.float32),
                          np.asarray(listing.ids, np.int64))
  return RetrievalData(dataset.name, splits["train"], splits["query"], splits["database"],
                       tuple(dataset.class_names), stats=dict(dataset.stats)).validate()


def existing_files(root: str, paths: Sequence[str]) -> np.ndarray:
  """``[n]`` bool: whether ``root/path`` is a file, for loaders that drop missing images."""
  return np.fromiter((os.path.isfile(os.path.join(root, p)) for p in paths), bool,
                     count=len(paths))


def read_text_lines(path: str) -> list[str]:
  """The lines of a UTF-8 text file without line ends; a missing file is a ValueError."""
  try:
    with open(path, encoding="utf-8") as f:
      return f.read().splitlines()
  except FileNotFoundError as e:
    raise ValueError(f"{path}: file not found") from e
  except (OSError, UnicodeDecodeError) as e:
    raise ValueError(f"{path}: cannot read as UTF-8 text ({e})") from e


def class_folders(split_dir: str, expected: str) -> tuple[str, ...]:
  """Sorted names of the class folders under ``split_dir``; ``expected`` describes the
  layout in the error (e.g. ``"train/<wnid>/*.JPEG"``)."""
  if not os.path.isdir(split_dir):
    raise ValueError(f"{split_dir}: folder not found; expected {expected}")
  names = tuple(sorted(e.name for e in os.scandir(split_dir) if e.is_dir()))
  if not names:
    raise ValueError(f"{split_dir}: no class folders; expected {expected}")
  return names
