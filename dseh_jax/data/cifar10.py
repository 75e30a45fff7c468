"""CIFAR-10 for hashing (SPEC §6): 100 test images per class as queries, 500 training
images per class for training, every non-query image (59,000) as the database.

Two layouts under ``data_dir``, chosen by ``layout="auto"``:

* ``"python"``: the official python batches, ``cifar-10-batches-py/{data_batch_1..5,
  test_batch, batches.meta}`` (or ``data_dir`` itself being that folder);
* ``"folder"``: ``train/<class>/*.{jpg,jpeg,png}`` and ``test/<class>/*``, 32×32 images;
  the label index of a class is its position among the sorted class folders.

Images are numbered over the concatenation [official train ; official test]: official
train image ``i`` is ``i`` and official test image ``j`` is ``n_train + j`` (``50,000 +
j`` for the full set). The python layout keeps the batches' order; the folder layout
lists classes sorted, then file names sorted within a class. That number is the image's
id in every split. The protocol draws by rank within a class, so two layouts that hold the
same images in the same within-class order give the same split.

Images stay in memory (60,000 × 3,072 bytes as uint8); the float32 inputs are
``pixel / scale`` (0..1 by default) with no mean subtracted.
"""
from __future__ import annotations

import concurrent.futures
import os
import pickle
from typing import Sequence

import numpy as np

from dseh_jax.data.listing import class_folders, overlap_report
from dseh_jax.data.protocols import SplitIndices
from dseh_jax.data.splits import RetrievalData, Split

NUM_CLASSES = 10
SIDE = 32
BATCH_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LAYOUTS = ("auto", "python", "folder")
SEED_SALT = 0xC1FA10          # second word of the protocol's seed: [seed, SEED_SALT]
CONVERT_ROWS = 4096           # rows converted to float32 at a time


def _check_count(name: str, value: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
    raise ValueError(f"cifar10: {name} must be an int >= 0; got {value!r}")
  return int(value)


def _check_labels(name: str, labels: np.ndarray, num_classes: int) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"cifar10: {name} has shape {labels.shape} and dtype {labels.dtype}; "
                     "expected [n] integers")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"cifar10: {name} holds values in [{labels.min()}, {labels.max()}]; "
                     f"expected 0..{num_classes - 1}")
  return labels.astype(np.int64)


def _draw(rng: np.random.Generator, labels: np.ndarray, per_class: int, offset: int,
          split: str, pool: str, class_names: Sequence[str]) -> np.ndarray:
  """``per_class`` indices (+ ``offset``) of every class, drawn by rank within the class."""
  chosen = []
  for k, name in enumerate(class_names):
    members = np.flatnonzero(labels == k)
    if members.shape[0] < per_class:
      raise ValueError(f"cifar10: class {name!r} has {members.shape[0]} official {pool} "
                       f"images; {split}_per_class={per_class} requested")
    chosen.append(members[rng.choice(members.shape[0], size=per_class, replace=False)])
  return np.sort(np.concatenate(chosen)).astype(np.int64) + offset


def cifar10_protocol(train_labels: np.ndarray, test_labels: np.ndarray, *, seed: int,
                     query_per_class: int = 100, train_per_class: int = 500,
                     class_names: Sequence[str] | None = None) -> SplitIndices:
  """The standard deep-hashing CIFAR-10 split (SPEC §6).

  Queries are ``query_per_class`` official test images per class; train is
  ``train_per_class`` official train images per class; the database is every
  non-query image (train included). One ``np.random.default_rng([seed, SEED_SALT])``
  draws, classes in label order, queries first.

  Args:
    train_labels: ``[n_train]`` int labels of the official train images (50,000).
    test_labels: ``[n_test]`` int labels of the official test images (10,000).
    seed: the protocol seed.
    query_per_class: 100 in the standard protocol.
    train_per_class: 500 in the standard protocol.
    class_names: names of the classes (default ``"0"``..``"9"``), for errors; their
      number is the number of classes.

  Returns:
    Indices into [official train ; official test], ascending within each split.
  """
  names = tuple(class_names) if class_names is not None else tuple(
      str(k) for k in range(NUM_CLASSES))
  train_labels = _check_labels("train_labels", train_labels, len(names))
  test_labels = _check_labels("test_labels", test_labels, len(names))
  query_per_class = _check_count("query_per_class", query_per_class)
  train_per_class = _check_count("train_per_class", train_per_class)
  rng = np.random.default_rng([int(seed), SEED_SALT])
  n_train = train_labels.shape[0]
  query = _draw(rng, test_labels, query_per_class, n_train, "query", "test", names)
  train = _draw(rng, train_labels, train_per_class, 0, "train", "train", names)
  in_query = np.zeros(n_train + test_labels.shape[0], bool)
  in_query[query] = True
  return SplitIndices(query, train, np.flatnonzero(~in_query).astype(np.int64))


# ---------------------------------------------------------------------------------------
# The official python batches.


def batch_folder(data_dir: str) -> str:
  """The folder holding ``data_batch_1``: ``data_dir/cifar-10-batches-py`` or ``data_dir``."""
  for folder in (os.path.join(data_dir, BATCH_FOLDER), data_dir):
    if os.path.isfile(os.path.join(folder, TRAIN_BATCHES[0])):
      return folder
  raise ValueError(f"{data_dir}: no {BATCH_FOLDER}/data_batch_1; expected the official "
                   "CIFAR-10 python batches")


def _unpickle(path: str) -> dict:
  try:
    with open(path, "rb") as f:
      content = pickle.load(f, encoding="bytes")
  except FileNotFoundError as e:
    raise ValueError(f"{path}: file not found; expected a CIFAR-10 python batch") from e
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"{path}: cannot unpickle ({e}); expected a CIFAR-10 python batch") \
        from e
  if not isinstance(content, dict):
    raise ValueError(f"{path}: holds a {type(content).__name__}; expected a dict")
  return content


def read_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
  """One python batch.

  Returns:
    images: ``[n, 32, 32, 3]`` uint8 (rows of 1,024 R, G, B values moved to HWC).
    labels: ``[n]`` int64.
  """
  content = _unpickle(path)
  for key in (b"data", b"labels"):
    if key not in content:
      raise ValueError(f"{path}: missing field {key!r}; expected b'data' and b'labels'")
  data = np.asarray(content[b"data"])
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE:
    raise ValueError(f"{path}: field b'data' has shape {data.shape} and dtype {data.dtype}; "
                     "expected [n, 3072] uint8")
  labels = np.asarray(content[b"labels"])
  if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{path}: field b'labels' has shape {labels.shape}; expected "
                     f"{data.shape[0]} ints")
  images = data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), labels.astype(np.int64)


def read_python_batches(data_dir: str
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
  """All six batches: ``[60000, 32, 32, 3]`` uint8 images (train first), train labels,
  test labels and the class names of ``batches.meta``."""
  folder = batch_folder(data_dir)
  meta_path = os.path.join(folder, META_FILE)
  meta = _unpickle(meta_path)
  if b"label_names" not in meta:
    raise ValueError(f"{meta_path}: missing field b'label_names'; expected the class names")
  names = tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n)
                for n in meta[b"label_names"])
  parts = [read_batch(os.path.join(folder, b)) for b in TRAIN_BATCHES + (TEST_BATCH,)]
  images = np.concatenate([p[0] for p in parts])
  train_labels = np.concatenate([p[1] for p in parts[:-1]])
  return images, train_labels, parts[-1][1], names


# ---------------------------------------------------------------------------------------
# The image-folder layout.


def _class_folders(split_dir: str) -> tuple[str, ...]:
  return class_folders(split_dir, "<split>/<class>/*.jpg")


def list_folder(data_dir: str, split: str, class_names: Sequence[str]
                ) -> tuple[list[str], np.ndarray]:
  """Paths of ``data_dir/split/<class>/*`` (classes in order, names sorted) and labels."""
  paths, labels = [], []
  for k, name in enumerate(class_names):
    folder = os.path.join(data_dir, split, name)
    if not os.path.isdir(folder):
      raise ValueError(f"{folder}: folder not found; expected the same class folders under "
                       "train/ and test/")
    files = sorted(e.name for e in os.scandir(folder)
                   if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))
    paths += [os.path.join(folder, f) for f in files]
    labels += [k] * len(files)
  return paths, np.asarray(labels, np.int64)


def _decode_into(out: np.ndarray, paths: Sequence[str], start: int, stop: int) -> None:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  for i in range(start, stop):
    try:
      with Image.open(paths[i]) as image:
        pixels = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as e:
      raise ValueError(f"{paths[i]}: cannot decode the image ({e})") from e
    if pixels.shape != (SIDE, SIDE, 3):
      raise ValueError(f"{paths[i]}: image is {pixels.shape[1]}x{pixels.shape[0]}; expected "
                       f"{SIDE}x{SIDE}")
    out[i] = pixels


def decode_images(paths: Sequence[str], *, workers: int = 0) -> np.ndarray:
  """``[n, 32, 32, 3]`` uint8 RGB of every path, decoded by a thread pool.

  Args:
    paths: image files (any format Pillow reads).
    workers: threads; 0 picks ``min(16, 2 * cpu count)``.
  """
  out = np.empty((len(paths), SIDE, SIDE, 3), np.uint8)
  workers = workers or min(16, 2 * (os.cpu_count() or 1))
  chunk = 512
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    jobs = [pool.submit(_decode_into, out, paths, s, min(s + chunk, len(paths)))
            for s in range(0, len(paths), chunk)]
    for job in jobs:
      job.result()
  return out


def read_folder(data_dir: str
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
  """The folder layout: uint8 images (train first), train labels, test labels, classes."""
  names = _class_folders(os.path.join(data_dir, "train"))
  test_names = _class_folders(os.path.join(data_dir, "test"))
  if test_names != names:
    raise ValueError(f"{os.path.join(data_dir, 'test')}: class folders {list(test_names)}; "
                     f"expected those of train/ {list(names)}")
  train_paths, train_labels = list_folder(data_dir, "train", names)
  test_paths, test_labels = list_folder(data_dir, "test", names)
  return decode_images(train_paths + test_paths), train_labels, test_labels, names


def detect_layout(data_dir: str) -> str:
  """``"python"`` when the official batches are there, else ``"folder"`` when
  ``train/`` and ``test/`` are; a ValueError otherwise."""
  if not os.path.isdir(data_dir):
    raise ValueError(f"{data_dir}: folder not found; expected the CIFAR-10 data_dir")
  try:
    batch_folder(data_dir)
    return "python"
  except ValueError:
    pass
  if all(os.path.isdir(os.path.join(data_dir, s)) for s in ("train", "test")):
    return "folder"
  raise ValueError(f"{data_dir}: neither {BATCH_FOLDER}/data_batch_1 nor train/ and test/ "
                   "folders; expected the python batches or the image-folder layout")


# ---------------------------------------------------------------------------------------
# The dataset.


def to_float(images: np.ndarray, index: np.ndarray, scale: float, flatten: bool
             ) -> np.ndarray:
  """``images[index] / scale`` as float32, ``[m, 32, 32, 3]`` or ``[m, 3072]`` (HWC order),
  converted a few thousand rows at a time."""
  out = np.empty((index.shape[0],) + images.shape[1:], np.float32)
  for s in range(0, index.shape[0], CONVERT_ROWS):
    rows = index[s:s + CONVERT_ROWS]
    np.divide(images[rows], np.float32(scale), out=out[s:s + rows.shape[0]],
              dtype=np.float32)
  return out.reshape(index.shape[0], -1) if flatten else out


def build_cifar10(data_dir: str, *, seed: int = 0, layout: str = "auto",
                  flatten: bool = False, scale: float = 255.0, query_per_class: int = 100,
                  train_per_class: int = 500) -> RetrievalData:
  """CIFAR-10 by the standard deep-hashing protocol (SPEC §6), in memory.

  Args:
    data_dir: the python batches or the image folders (module docstring).
    seed: the protocol seed (``cifar10_protocol``).
    layout: ``"auto"``, ``"python"`` or ``"folder"``.
    flatten: ``False``: inputs ``[n, 32, 32, 3]``; ``True`` (feature mode): ``[n, 3072]``
      in HWC order.
    scale: inputs are ``pixel / scale`` float32 (0..1 by default; nothing subtracted).
    query_per_class: 100 in the standard protocol.
    train_per_class: 500 in the standard protocol.

  Returns:
    The validated dataset: one-hot labels ``[n, 10]``, ids = index into [official
    train ; official test]; ``stats`` has ``layout``, ``seed``, ``images``,
    ``split_sizes``, ``class_counts`` and ``overlaps``.
  """
  if layout not in LAYOUTS:
    raise ValueError(f"cifar10: layout={layout!r}; expected one of {LAYOUTS}")
  if not isinstance(scale, (int, float, np.number)) or not np.isfinite(scale) or scale <= 0:
    raise ValueError(f"cifar10: scale={scale!r}; expected a positive number")
  data_dir = str(data_dir)
  used = detect_layout(data_dir) if layout == "auto" else layout
  reader = read_python_batches if used == "python" else read_folder
  images, train_labels, test_labels, names = reader(data_dir)
  if len(names) != NUM_CLASSES:
    raise ValueError(f"{data_dir}: {len(names)} classes {list(names)}; expected "
                     f"{NUM_CLASSES}")
  idx = cifar10_protocol(train_labels, test_labels, seed=seed,
                         query_per_class=query_per_class, train_per_class=train_per_class,
                         class_names=names).as_dict()
  all_labels = np.concatenate([train_labels, test_labels])
  one_hot = np.eye(len(names), dtype=np.float32)
  splits = {s: Split(to_float(images, i, float(scale), bool(flatten)), one_hot[all_labels[i]],
                     i.astype(np.int64)) for s, i in idx.items()}
  stats = {"layout": used, "seed": int(seed),
           "images": {"train": int(train_labels.shape[0]), "test": int(test_labels.shape[0])},
           "split_sizes": {s: len(splits[s]) for s in ("train", "query", "database")},
           "class_counts": dict(zip(names, np.bincount(all_labels, minlength=len(names))
                                    .tolist())),
           "overlaps": overlap_report(idx)}
  return RetrievalData("cifar10", splits["train"], splits["query"], splits["database"],
                       names, stats=stats).validate()
