"""Writers of tiny datasets in each real layout (SPEC §6), with small random JPEGs.

Every writer returns what it wrote (paths, label sets) so that tests can recount it
independently of the loaders.
"""
from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image


def write_jpeg(path: str, rng: np.random.Generator, side: int = 12) -> None:
  """A random RGB JPEG of ``side × (side + 4)`` pixels at ``path`` (folders created)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pixels = rng.integers(0, 256, size=(side, side + 4, 3), dtype=np.uint8)
  Image.fromarray(pixels).save(path, format="JPEG")


# --------------------------------------------------------------------------- NUS-WIDE

def write_nus_wide(root: str, rng: np.random.Generator, *, num_images: int = 300,
                   num_concepts: int = 24, top: int = 21, frequent_p: float = 0.25,
                   rare_p: float = 0.03, tie: bool = True,
                   backslash_prefix: str = "") -> dict:
  """The official NUS-WIDE layout with ``num_concepts`` concepts.

  Concepts ``c00 .. c{top-1}`` are frequent (``c{top-1}`` about half as often as the
  others), the rest rare, and a share of the images carries only rare concepts or none.
  With ``tie``, the two concepts at the top-``top`` boundary get equal counts (concept
  ``"zz_tie"``, listed first, and ``c{top-1}``) so that only the name breaks the tie.

  Returns:
    ``{"paths": relative paths by line, "labels": {concept: [n] 0/1}, "concepts": list}``.
  """
  concepts = [f"c{k:02d}" for k in range(num_concepts)]
  if tie:
    concepts[-1] = "zz_tie"
    concepts = [concepts[-1]] + concepts[:-1]   # listed first, loses the tie by name
  frequent = [f"c{k:02d}" for k in range(top)]
  labels = {}
  for name in concepts:
    p = rare_p if name not in frequent else frequent_p / (2 if name == frequent[-1] else 1)
    labels[name] = (rng.random(num_images) < p).astype(np.int64)
  none_rows = rng.random(num_images) < 0.1      # images with no frequent concept
  for name in frequent:
    labels[name][none_rows] = 0
  if tie:
    labels["zz_tie"] = labels[frequent[-1]][::-1].copy()   # same count, other images
  paths, lines = [], []
  for i in range(num_images):
    folder = concepts[i % len(concepts)]
    file_name = f"{i:04d}_{1000 + i}.jpg"
    lines.append(backslash_prefix + f"{folder}\\{file_name}")
    paths.append(f"Flickr/{folder}/{file_name}")
    write_jpeg(os.path.join(root, "Flickr", folder, file_name), rng)
  _write_lines(os.path.join(root, "ImageList", "Imagelist.txt"), lines)
  _write_lines(os.path.join(root, "Concepts81.txt"), concepts)
  for name in concepts:
    _write_lines(os.path.join(root, "Groundtruth", "AllLabels", f"Labels_{name}.txt"),
                 [str(v) for v in labels[name]])
  return {"paths": paths, "labels": labels, "concepts": concepts}


def _write_lines(path: str, lines) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write("".join(f"{line}\n" for line in lines))


# --------------------------------------------------------------------------- MS-COCO

COCO_CATEGORY_IDS = (1, 3, 7, 8, 13, 44, 90)   # not contiguous, as in the real files


def write_coco(root: str, rng: np.random.Generator, *, num_train: int = 40,
               num_val: int = 24, unlabeled: int = 5) -> dict:
  """``annotations/instances_{train,val}2014.json`` plus ``train2014/``, ``val2014/``.

  The first ``unlabeled`` images of each file get no annotation; the others one to three
  annotations (a category may repeat on an image). Image ids are scattered, as in COCO.

  Returns:
    ``{"files": {image id: relative path}, "categories": {image id: set of category
    ids}, "names": {category id: name}}`` (unannotated images absent from
    ``categories``).
  """
  names = {cid: f"cat{cid}" for cid in COCO_CATEGORY_IDS}
  files, categories = {}, {}
  next_id = 9
  for folder, count in (("train2014", num_train), ("val2014", num_val)):
    images, annotations = [], []
    for i in range(count):
      next_id += int(rng.integers(1, 50))
      file_name = f"COCO_{folder}_{next_id:012d}.jpg"
      images.append({"id": next_id, "file_name": file_name, "width": 16, "height": 12})
      write_jpeg(os.path.join(root, folder, file_name), rng)
      files[next_id] = f"{folder}/{file_name}"
      if i < unlabeled:
        continue
      for _ in range(int(rng.integers(1, 4))):
        cid = int(rng.choice(COCO_CATEGORY_IDS))
        annotations.append({"id": len(annotations) + 1, "image_id": next_id,
                            "category_id": cid, "iscrowd": 0, "bbox": [0, 0, 1, 1]})
        categories.setdefault(next_id, set()).add(cid)
    # The categories in another order than sorted, so the loader must sort the ids.
    cats = [{"id": cid, "name": names[cid], "supercategory": "x"}
            for cid in reversed(COCO_CATEGORY_IDS)]
    doc = {"info": {}, "images": images[::-1], "annotations": annotations,
           "categories": cats}
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    with open(os.path.join(root, "annotations", f"instances_{folder}.json"), "w") as f:
      json.dump(doc, f)
  return {"files": files, "categories": categories, "names": names}


# --------------------------------------------------------------------------- ImageNet

def write_imagenet(root: str, rng: np.random.Generator, *, num_classes: int = 7,
                   per_class: int = 9) -> dict:
  """``train/<wnid>/<wnid>_<k>.JPEG``; the class folders are written in shuffled order.

  Returns:
    ``{"wnids": sorted wnids, "files": {wnid: sorted file names}}``.
  """
  wnids = sorted(f"n{int(v):08d}" for v in rng.choice(10 ** 7, num_classes, replace=False))
  files = {}
  for wnid in rng.permutation(wnids):
    names = [f"{wnid}_{int(k)}.JPEG" for k in rng.choice(10 ** 5, per_class, replace=False)]
    for name in names:
      write_jpeg(os.path.join(root, "train", str(wnid), name), rng)
    files[str(wnid)] = sorted(names)
  _write_lines(os.path.join(root, "train", "README.txt"), ["not a class folder"])
  return {"wnids": list(wnids), "files": files}


# --------------------------------------------------------------------------- list files

def labelled_images(root: str, rng: np.random.Generator, n: int, c: int,
                    prefix: str = "images") -> tuple[list[str], np.ndarray]:
  """``n`` JPEGs under ``root/prefix`` with random non-empty ``[n, c]`` 0/1 labels."""
  paths = [f"{prefix}/img_{i:03d}.jpg" for i in range(n)]
  labels = (rng.random((n, c)) < 0.3).astype(np.int64)
  labels[np.arange(n), rng.integers(0, c, n)] = 1
  for p in paths:
    write_jpeg(os.path.join(root, p), rng)
  return paths, labels


def write_list_files(root: str, rng: np.random.Generator, *, c: int = 5,
                     leak: int = 3) -> dict:
  """``train.txt``, ``test.txt``, ``database.txt`` over 30 images.

  Query rows 0-5, train rows 6-13, database rows 14-29 plus the first ``leak`` query
  images (a leak like HashNet's MS-COCO lists, SPEC §6).

  Returns:
    ``{"train"|"query"|"database": (paths, labels [n, c])}``.
  """
  paths, labels = labelled_images(root, rng, 30, c)
  rows = {"query": list(range(0, 6)), "train": list(range(6, 14)),
          "database": list(range(14, 30)) + list(range(leak))}
  files = {"query": "test.txt", "train": "train.txt", "database": "database.txt"}
  out = {}
  for split, r in rows.items():
    _write_lines(os.path.join(root, files[split]),
                 [f"{paths[i]} " + " ".join(str(v) for v in labels[i]) for i in r])
    out[split] = ([paths[i] for i in r], labels[r])
  return out


def write_hdf5_layout(root: str, rng: np.random.Generator, *, c: int = 4,
                      label_dtype=np.float64) -> dict:
  """``Img.h5`` / ``Lab.h5`` over 24 images; database = train + 10 others.

  Returns:
    ``{"train"|"query"|"database": (paths, labels [n, c])}``.
  """
  import h5py
  paths, labels = labelled_images(root, rng, 24, c, prefix="data/imgs")
  rows = {"query": list(range(0, 4)), "train": list(range(4, 14)),
          "database": list(range(4, 24))}
  fields = {"query": ("ImgQuery", "LabQuery"), "train": ("ImgTrain", "LabTrain"),
            "database": ("ImgDataBase", "LabDataBase")}
  out = {}
  with h5py.File(os.path.join(root, "Img.h5"), "w") as fi, \
       h5py.File(os.path.join(root, "Lab.h5"), "w") as fl:
    for split, r in rows.items():
      fi.create_dataset(fields[split][0], data=np.asarray([paths[i].encode() for i in r]))
      fl.create_dataset(fields[split][1], data=labels[r].astype(label_dtype))
      out[split] = ([paths[i] for i in r], labels[r])
  return out


# --------------------------------------------------------------------------- features

def feature_arrays(rng: np.random.Generator, d: int = 6, c: int = 3,
                   sizes=(("train", 10), ("query", 4), ("database", 14))) -> dict:
  """The six feature-file arrays: ``x_<split>`` float32 ``[n, d]``, ``y_<split>`` 0/1."""
  arrays = {}
  for split, n in sizes:
    y = (rng.random((n, c)) < 0.4).astype(np.float64)
    y[np.arange(n), rng.integers(0, c, n)] = 1
    arrays[f"x_{split}"] = rng.standard_normal((n, d)).astype(np.float32)
    arrays[f"y_{split}"] = y
  return arrays


def write_feature_file(path: str, arrays: dict) -> None:
  """``arrays`` as ``.npz``, ``.mat`` (v5) or ``.h5`` by the suffix of ``path``."""
  suffix = os.path.splitext(path)[1]
  if suffix == ".npz":
    np.savez(path, **arrays)
  elif suffix == ".mat":
    import scipy.io
    scipy.io.savemat(path, arrays)
  else:
    import h5py
    with h5py.File(path, "w") as f:
      for k, v in arrays.items():
        f.create_dataset(k, data=v)
