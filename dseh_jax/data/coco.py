"""MS-COCO 2014 for hashing (SPEC §6): 80 categories, multi-label.

Expected under ``data_dir`` (from cocodataset.org, the 2014 train/val release):

* ``annotations/instances_train2014.json`` and ``annotations/instances_val2014.json``
  (``images`` [{id, file_name, ...}], ``annotations`` [{image_id, category_id, ...}],
  ``categories`` [{id, name, ...}]);
* ``train2014/`` and ``val2014/`` holding the images.

Both annotation files are pooled. Category ids are not contiguous: the sorted ids map to
label columns 0..79. Images without any annotation are removed and counted (the paper
keeps 122,218). Query 5,000 and train 10,000 images are drawn at random, the database is
the rest (plus train by default, as in the authors' code). Ids are COCO image ids.
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from dseh_jax.data import protocols
from dseh_jax.data.listing import ImageDataset, ImageListing, existing_files, finish_stats

ANNOTATION_FILES = (("train2014", os.path.join("annotations", "instances_train2014.json")),
                    ("val2014", os.path.join("annotations", "instances_val2014.json")))


def _field(obj: Any, key: str, path: str, where: str, kind: type | tuple[type, ...]) -> Any:
  if not isinstance(obj, dict) or key not in obj:
    raise ValueError(f"{path}: {where} has no field {key!r}")
  value = obj[key]
  if isinstance(value, bool) or not isinstance(value, kind):
    raise ValueError(f"{path}: field {where}.{key} is {type(value).__name__}; expected "
                     f"{kind.__name__ if isinstance(kind, type) else 'a number'}")
  return value


def read_instances(path: str) -> tuple[dict[int, str], dict[int, set[int]], dict[int, str]]:
  """One ``instances_*.json``: image id → file name, image id → category ids, categories.

  Returns:
    ``(files, image_categories, categories)``: ``files`` maps every listed image id to
    its ``file_name``; ``image_categories`` maps image ids to the set of category ids of
    their annotations (unannotated images absent); ``categories`` maps id → name.
  """
  try:
    with open(path, encoding="utf-8") as f:
      doc = json.load(f)
  except FileNotFoundError as e:
    raise ValueError(f"{path}: file not found") from e
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: cannot read as JSON ({e})") from e
  for key in ("images", "annotations", "categories"):
    _field(doc, key, path, "the top level", list)
  categories = {}
  for i, cat in enumerate(doc["categories"]):
    cid = _field(cat, "id", path, f"categories[{i}]", int)
    categories[cid] = str(_field(cat, "name", path, f"categories[{i}]", str))
  files = {}
  for i, image in enumerate(doc["images"]):
    iid = _field(image, "id", path, f"images[{i}]", int)
    if iid in files:
      raise ValueError(f"{path}: images[{i}].id {iid} is listed twice")
    files[iid] = _field(image, "file_name", path, f"images[{i}]", str)
  image_categories: dict[int, set[int]] = {}
  for i, ann in enumerate(doc["annotations"]):
    iid = _field(ann, "image_id", path, f"annotations[{i}]", int)
    cid = _field(ann, "category_id", path, f"annotations[{i}]", int)
    if iid not in files:
      raise ValueError(f"{path}: annotations[{i}].image_id {iid} is not in 'images'")
    if cid not in categories:
      raise ValueError(f"{path}: annotations[{i}].category_id {cid} is not in 'categories'")
    image_categories.setdefault(iid, set()).add(cid)
  return files, image_categories, categories


def read_coco(data_dir: str) -> tuple[ImageListing, tuple[str, ...], int]:
  """Every labelled image of both 2014 annotation files, sorted by image id.

  Returns:
    ``(catalog, class_names, num_listed)``: paths ``train2014/<file>`` or
    ``val2014/<file>``, ``[n, c]`` labels over the sorted category ids, COCO image ids;
    the class names in sorted-id order; how many images the files list.
  """
  files: dict[int, str] = {}
  image_categories: dict[int, set[int]] = {}
  categories: dict[int, str] = {}
  for folder, relative in ANNOTATION_FILES:
    path = os.path.join(data_dir, relative)
    f, ic, cats = read_instances(path)
    for cid, name in cats.items():
      if categories.setdefault(cid, name) != name:
        raise ValueError(f"{path}: category {cid} is named {name!r} here and "
                         f"{categories[cid]!r} in the other annotation file")
    for iid, name in f.items():
      if iid in files:
        raise ValueError(f"{path}: image id {iid} is also listed in the other file")
      files[iid] = f"{folder}/{name}"
    image_categories.update(ic)
  if not categories:
    raise ValueError(f"{data_dir}: the annotation files list no categories")
  category_ids = sorted(categories)
  column = {cid: k for k, cid in enumerate(category_ids)}
  ids = np.asarray(sorted(image_categories), np.int64)
  labels = np.zeros((ids.shape[0], len(category_ids)), np.float32)
  for row, iid in enumerate(ids.tolist()):
    labels[row, [column[c] for c in image_categories[iid]]] = 1.0
  catalog = ImageListing(tuple(files[i] for i in ids.tolist()), labels, ids)
  return catalog, tuple(categories[c] for c in category_ids), len(files)


def build_coco(data_dir: str, *, seed: int = 0, num_query: int = 5000,
               num_train: int = 10000, database_includes_train: bool = True,
               drop_missing_files: bool = False) -> ImageDataset:
  """MS-COCO by the paper's protocol (SPEC §6).

  Args:
    data_dir: the 2014 layout (module docstring).
    seed: seeds the query/train draw.
    num_query: paper 5,000.
    num_train: paper 10,000.
    database_includes_train: database = all non-query images (authors' code).
    drop_missing_files: drop (and count) labelled images whose file is absent.

  Returns:
    The listed dataset; ``stats`` has ``images_listed``, ``images_without_label_removed``,
    ``missing_files_removed``, ``class_counts`` and the overlap report.
  """
  catalog, class_names, num_listed = read_coco(data_dir)
  removed_missing = 0
  if drop_missing_files:
    present = existing_files(data_dir, catalog.paths)
    removed_missing = int((~present).sum())
    catalog = catalog.take(np.flatnonzero(present))
  idx = protocols.random_split(len(catalog), num_query=num_query, num_train=num_train,
                               seed=seed, database_includes_train=database_includes_train)
  splits = {s: catalog.take(i) for s, i in idx.as_dict().items()}
  stats = {"images_listed": num_listed,
           "images_without_label_removed": num_listed - len(catalog) - removed_missing,
           "missing_files_removed": removed_missing,
           "images_used": len(catalog),
           "class_counts": dict(zip(class_names, catalog.labels.sum(0).astype(int).tolist())),
           "seed": int(seed)}
  return ImageDataset("coco", data_dir, class_names, splits,
                      finish_stats("coco", splits, stats))
