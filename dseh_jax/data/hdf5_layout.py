"""The authors' HDF5 list layout (SPEC §6): ``Img.h5`` paths and ``Lab.h5`` labels.

* ``Img.h5``: datasets ``ImgTrain``, ``ImgQuery``, ``ImgDataBase``: 1-D arrays of image
  paths (byte or text strings), relative to the image root;
* ``Lab.h5``: datasets ``LabTrain``, ``LabQuery``, ``LabDataBase``: ``[n, c]`` float or
  int 0/1 labels, row ``i`` for path ``i``.

Ids come from the paths (``path_id``), as for list files.
"""
from __future__ import annotations

import os

import numpy as np

from dseh_jax.data.label_matrix import check_label_matrix, class_names_for

from dseh_jax.data.list_files import normalize_path
from dseh_jax.data.listing import ImageDataset, ImageListing, finish_stats, path_ids

FIELDS = {"train": ("ImgTrain", "LabTrain"), "query": ("ImgQuery", "LabQuery"),
          "database": ("ImgDataBase", "LabDataBase")}


def read_hdf5_datasets(path: str, names: tuple[str, ...], *,
                       required: bool = True) -> dict[str, np.ndarray]:
  """The datasets ``names`` of the HDF5 file ``path`` as numpy arrays; missing ones are an
  error (``required``) or left out. Errors name the file and the field."""
  import h5py  # pylint: disable=import-outside-toplevel
  try:
    f = h5py.File(path, "r")
  except FileNotFoundError as e:
    raise ValueError(f"{path}: file not found") from e
  except OSError as e:
    raise ValueError(f"{path}: cannot read as HDF5 ({e})") from e
  with f:
    missing = [n for n in names if n not in f]
    if missing and required:
      raise ValueError(f"{path}: missing dataset(s) {missing}; expected {list(names)}")
    out = {}
    for n in names:
      if n not in f:
        continue
      if not isinstance(f[n], h5py.Dataset):
        raise ValueError(f"{path}: field {n!r} is a group; expected a dataset")
      out[n] = f[n][()]
  return out


def _decode_paths(values: np.ndarray, path: str, field: str) -> tuple[str, ...]:
  values = np.asarray(values)
  if values.ndim == 2 and values.shape[1] == 1:
    values = values[:, 0]
  if values.ndim != 1 or values.shape[0] == 0:
    raise ValueError(f"{path}: field {field!r} has shape {values.shape}; expected [n] "
                     "strings, n >= 1")
  out = []
  for i, v in enumerate(values.tolist()):
    if isinstance(v, bytes):
      try:
        v = v.decode("utf-8")
      except UnicodeDecodeError as e:
        raise ValueError(f"{path}: field {field!r} row {i} is not UTF-8 ({e})") from e
    if not isinstance(v, str) or not v.strip():
      raise ValueError(f"{path}: field {field!r} row {i} is {v!r}; expected a path string")
    out.append(v.strip())
  return tuple(out)


def build_hdf5_layout(data_dir: str, *, image_root: str = "", strip_prefix: str = "",
                      img_file: str = "Img.h5", lab_file: str = "Lab.h5",
                      class_names: tuple[str, ...] = (),
                      name: str = "hdf5_layout") -> ImageDataset:
  """``Img.h5`` + ``Lab.h5`` under ``data_dir`` as an ``ImageDataset``.

  Args:
    data_dir: folder holding the two files.
    image_root: folder the stored paths are relative to (default ``data_dir``).
    strip_prefix: removed from the start of every stored path.
    img_file: the paths file.
    lab_file: the labels file.
    class_names: optional names; default ``"0"``, ``"1"``, ...
    name: dataset name.
  """
  img_path, lab_path = os.path.join(data_dir, img_file), os.path.join(data_dir, lab_file)
  images = read_hdf5_datasets(img_path, tuple(f[0] for f in FIELDS.values()))
  labels = read_hdf5_datasets(lab_path, tuple(f[1] for f in FIELDS.values()))
  splits, width = {}, None
  for split, (img_field, lab_field) in FIELDS.items():
    paths = tuple(normalize_path(p, strip_prefix)
                  for p in _decode_paths(images[img_field], img_path, img_field))
    y = check_label_matrix(labels[lab_field], lab_path, lab_field, len(paths),
                           rows="one row per image path")
    if width is None:
      width = y.shape[1]
    elif y.shape[1] != width:
      raise ValueError(f"{lab_path}: field {lab_field!r} has {y.shape[1]} columns; "
                       f"expected {width} (as in LabTrain)")
    splits[split] = ImageListing(paths, y, path_ids(paths, img_path))
  names = class_names_for(class_names, width, lab_path)
  stats = {"files": {"images": img_path, "labels": lab_path}}
  return ImageDataset(name, image_root or data_dir, names, splits,
                      finish_stats(name, splits, stats))
