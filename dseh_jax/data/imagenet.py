"""ImageNet-100 for hashing (SPEC §6): 100 ILSVRC classes, single label (one-hot).

Expected under ``data_dir``: the ILSVRC2012 training set from image-net.org unpacked as
``train/<wnid>/<file>.JPEG`` (one folder per class).

100 classes are drawn from the sorted class folders with the seed (or read from a class
list file, one wnid per line); 50 query and 100 train images per class are drawn; the
database is the classes' other images (plus train by default). An image's id is
``class_folder_index * 2**20 + file_index``, both over sorted names, so it does not
depend on which classes were drawn.
"""
from __future__ import annotations

import os

import numpy as np

from dseh_jax.data import listing, protocols
from dseh_jax.data.listing import ImageDataset, ImageListing, finish_stats, read_text_lines

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
FILES_PER_CLASS_LIMIT = 2 ** 20


def class_folders(data_dir: str) -> tuple[str, ...]:
  """Sorted names of the class folders under ``data_dir/train``."""
  return listing.class_folders(os.path.join(data_dir, "train"), "train/<wnid>/*.JPEG")


def choose_classes(wnids: tuple[str, ...], num_classes: int, rng: np.random.Generator,
                   class_list_file: str = "") -> np.ndarray:
  """Indices into ``wnids`` of the classes used, ascending.

  Args:
    wnids: sorted class folder names.
    num_classes: classes to draw (paper 100); ignored with ``class_list_file``.
    rng: draws ``num_classes`` distinct classes uniformly.
    class_list_file: optional file with one wnid per line.
  """
  if class_list_file:
    lines = [line.strip() for line in read_text_lines(class_list_file)]
    position = {w: i for i, w in enumerate(wnids)}
    chosen = []
    for number, wnid in enumerate(lines, start=1):
      if not wnid:
        continue
      if wnid not in position:
        raise ValueError(f"{class_list_file}: line {number}: class {wnid!r} has no folder "
                         "under train/")
      chosen.append(position[wnid])
    if not chosen or len(set(chosen)) != len(chosen):
      raise ValueError(f"{class_list_file}: expected distinct wnids, one per line")
    return np.sort(np.asarray(chosen, np.int64))
  if not 1 <= num_classes <= len(wnids):
    raise ValueError(f"num_classes={num_classes}; the train folder has {len(wnids)} classes")
  return np.sort(rng.choice(len(wnids), size=int(num_classes), replace=False)).astype(np.int64)


def list_class_images(data_dir: str, wnids: tuple[str, ...], chosen: np.ndarray
                      ) -> ImageListing:
  """Every image of the chosen classes: paths ``train/<wnid>/<file>``, one-hot labels."""
  paths, ids, columns = [], [], []
  for column, k in enumerate(chosen.tolist()):
    folder = os.path.join(data_dir, "train", wnids[k])
    files = sorted(e.name for e in os.scandir(folder)
                   if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))
    if not files:
      raise ValueError(f"{folder}: no images (*.JPEG, *.jpg, *.png)")
    if len(files) >= FILES_PER_CLASS_LIMIT:
      raise ValueError(f"{folder}: {len(files)} images; ids allow fewer than 2**20")
    paths += [f"train/{wnids[k]}/{name}" for name in files]
    ids += [k * FILES_PER_CLASS_LIMIT + j for j in range(len(files))]
    columns += [column] * len(files)
  labels = np.zeros((len(paths), chosen.shape[0]), np.float32)
  labels[np.arange(len(paths)), columns] = 1.0
  return ImageListing(tuple(paths), labels, np.asarray(ids, np.int64))


def build_imagenet100(data_dir: str, *, seed: int = 0, num_classes: int = 100,
                      query_per_class: int = 50, train_per_class: int = 100,
                      database_includes_train: bool = True,
                      class_list_file: str = "") -> ImageDataset:
  """ImageNet-100 by the paper's protocol (SPEC §6).

  Args:
    data_dir: holds ``train/<wnid>/*.JPEG``.
    seed: seeds the class draw and then the query/train draw.
    num_classes: paper 100.
    query_per_class: paper 50.
    train_per_class: paper 100.
    database_includes_train: database = the classes' non-query images (authors' code).
    class_list_file: use these classes instead of a seeded draw.

  Returns:
    The listed dataset; ``stats`` has ``classes_available``, ``images_used``,
    ``class_counts`` and the overlap report.
  """
  wnids = class_folders(data_dir)
  class_rng = np.random.default_rng(seed)
  chosen = choose_classes(wnids, int(num_classes), class_rng, class_list_file)
  class_names = tuple(wnids[k] for k in chosen.tolist())
  catalog = list_class_images(data_dir, wnids, chosen)
  idx = protocols.per_class_split(catalog.labels, query_per_class=query_per_class,
                                  train_per_class=train_per_class,
                                  seed=int(class_rng.integers(2 ** 31)),
                                  database_includes_train=database_includes_train,
                                  class_names=class_names)
  splits = {s: catalog.take(i) for s, i in idx.as_dict().items()}
  stats = {"classes_available": len(wnids),
           "images_used": len(catalog),
           "class_counts": dict(zip(class_names, catalog.labels.sum(0).astype(int).tolist())),
           "seed": int(seed)}
  return ImageDataset("imagenet100", data_dir, class_names, splits,
                      finish_stats("imagenet100", splits, stats))
