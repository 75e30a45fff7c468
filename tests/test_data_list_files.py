"""Released list files and the authors' Img.h5/Lab.h5 layout (SPEC §6)."""
import hashlib
import os

import h5py
import numpy as np
import pytest

import fixtures_datasets as fx
from dseh_jax.data.hdf5_layout import build_hdf5_layout
from dseh_jax.data.list_files import build_list_files


def _hash_id(path):
  """Independent re-statement of the documented id: first 63 bits of BLAKE2b-64."""
  return int(hashlib.blake2b(path.encode(), digest_size=8).hexdigest(), 16) % 2 ** 63


def _check_against(ds, want, root):
  for split, (paths, labels) in want.items():
    listing = ds.splits[split]
    assert list(listing.paths) == paths
    np.testing.assert_array_equal(listing.labels, labels.astype(np.float32))
    assert listing.ids.tolist() == [_hash_id(p) for p in paths]
    for p in paths:
      assert os.path.isfile(os.path.join(root, p))


def test_list_files_load_and_report_the_leak(tmp_path):
  want = fx.write_list_files(str(tmp_path), np.random.default_rng(0), c=5, leak=3)
  ds = build_list_files(str(tmp_path))
  _check_against(ds, want, str(tmp_path))
  assert ds.class_names == ("0", "1", "2", "3", "4")
  assert ds.stats["overlaps"]["query&database"] == 3      # reported, not hidden
  assert ds.stats["overlaps"]["query&train"] == 0
  assert ds.stats["overlaps"]["train&database"] == 0
  assert ds.stats["split_sizes"] == {"train": 8, "query": 6, "database": 19}


def test_list_files_prefix_and_image_root(tmp_path):
  want = fx.write_list_files(str(tmp_path / "imgs"), np.random.default_rng(1), c=3)
  lists = tmp_path / "lists"
  lists.mkdir()
  for name in ("train.txt", "test.txt", "database.txt"):
    text = (tmp_path / "imgs" / name).read_text()
    (lists / name).write_text("".join(f"/old/home/{line}\n" for line in text.splitlines()))
  ds = build_list_files(str(lists), image_root=str(tmp_path / "imgs"),
                        strip_prefix="/old/home/", class_names=("a", "b", "c"))
  _check_against(ds, want, str(tmp_path / "imgs"))
  assert ds.root == str(tmp_path / "imgs") and ds.class_names == ("a", "b", "c")


@pytest.mark.parametrize("file,line,message", [
    ("test.txt", "x.jpg 0 1 0", r"test.txt: line 7 has 3 labels; expected 5"),
    ("train.txt", "x.jpg 0 2 0 0 1", r"train.txt: line 9: label '2'; expected 0 or 1"),
    ("database.txt", "x.jpg 0 1 0 0 0.5", r"database.txt: line 20: label '0.5'"),
    ("train.txt", "x.jpg", r"train.txt: line 9 has a path but no labels"),
])
def test_list_file_errors_name_file_and_line(tmp_path, file, line, message):
  fx.write_list_files(str(tmp_path), np.random.default_rng(2), c=5)
  with open(tmp_path / file, "a") as f:
    f.write(line + "\n")
  with pytest.raises(ValueError, match=message):
    build_list_files(str(tmp_path))


def test_list_files_empty_and_width_mismatch(tmp_path):
  fx.write_list_files(str(tmp_path), np.random.default_rng(3), c=5)
  (tmp_path / "test.txt").write_text("\n\n")
  with pytest.raises(ValueError, match="test.txt: the list file is empty"):
    build_list_files(str(tmp_path))
  (tmp_path / "test.txt").write_text("a.jpg 0 1 0 0\n")
  with pytest.raises(ValueError, match=r"test.txt: 4 labels per line; expected 5"):
    build_list_files(str(tmp_path))
  with pytest.raises(ValueError, match="nothing.txt: file not found"):
    build_list_files(str(tmp_path), train_file="nothing.txt")


@pytest.mark.parametrize("label_dtype", [np.float64, np.int32])
def test_hdf5_layout(tmp_path, label_dtype):
  want = fx.write_hdf5_layout(str(tmp_path), np.random.default_rng(4), label_dtype=label_dtype)
  ds = build_hdf5_layout(str(tmp_path))
  _check_against(ds, want, str(tmp_path))
  assert ds.stats["overlaps"]["train&database"] == 10
  assert ds.stats["overlaps"]["query&database"] == 0


def _rewrite(path, name, data):
  with h5py.File(path, "a") as f:
    del f[name]
    if data is not None:
      f.create_dataset(name, data=data)


@pytest.mark.parametrize("file,field,data,message", [
    ("Lab.h5", "LabQuery", np.zeros((3, 4)), r"Lab.h5: field 'LabQuery' has shape \(3, 4\); "
                                             r"expected \[4, c\]"),
    ("Lab.h5", "LabTrain", np.full((10, 4), 0.5),
     r"Lab.h5: field 'LabTrain' must hold only 0 and 1; row 0 column 0 is 0.5"),
    ("Lab.h5", "LabDataBase", np.zeros((20, 3)), r"Lab.h5: field 'LabDataBase' has 3 columns"),
    ("Img.h5", "ImgDataBase", None, r"Img.h5: missing dataset\(s\) \['ImgDataBase'\]"),
    ("Img.h5", "ImgQuery", np.asarray([b"a.jpg", b"", b"c.jpg", b"d.jpg"]),
     r"Img.h5: field 'ImgQuery' row 1 is ''; expected a path"),
])
def test_hdf5_errors_name_file_and_field(tmp_path, file, field, data, message):
  fx.write_hdf5_layout(str(tmp_path), np.random.default_rng(5))
  _rewrite(str(tmp_path / file), field, data)
  with pytest.raises(ValueError, match=message):
    build_hdf5_layout(str(tmp_path))
