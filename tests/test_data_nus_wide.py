"""NUS-WIDE-21 from the official layout (SPEC §6), checked against an independent recount."""
import os

import numpy as np
import pytest
from PIL import Image

from dseh_jax.data.listing import to_retrieval_data
from dseh_jax.data.nus_wide import build_nus_wide21
import fixtures_datasets as fx

Q, T = 2, 3   # per class


@pytest.fixture(scope="module")
def nus(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("nus"))
  return root, fx.write_nus_wide(root, np.random.default_rng(0))


def _recount(fix, top=21):
  """Kept concepts (list order), per-path label vectors and the removed count."""
  concepts, labels = fix["concepts"], fix["labels"]
  counts = {c: int(labels[c].sum()) for c in concepts}
  kept = set(sorted(concepts, key=lambda c: (-counts[c], c))[:top])
  kept = [c for c in concepts if c in kept]
  vectors = {p: [int(labels[c][i]) for c in kept] for i, p in enumerate(fix["paths"])}
  removed = sum(1 for v in vectors.values() if not any(v))
  return kept, vectors, removed, counts


def test_fixture_has_a_tie_at_the_boundary(nus):
  _, fix = nus
  kept, _, _, counts = _recount(fix)
  assert counts["zz_tie"] == counts["c20"] == min(counts[c] for c in kept)
  assert "c20" in kept and "zz_tie" not in kept   # the name breaks the tie


def test_classes_labels_and_removed_count(nus):
  root, fix = nus
  kept, vectors, removed, _ = _recount(fix)
  ds = build_nus_wide21(root, seed=0, query_per_class=Q, train_per_class=T)
  assert ds.class_names == tuple(kept)
  assert removed > 0
  assert ds.stats["images_listed"] == len(fix["paths"])
  assert ds.stats["images_without_label_removed"] == removed
  assert ds.stats["images_used"] == len(fix["paths"]) - removed
  line = {p: i for i, p in enumerate(fix["paths"])}
  for split, listing in ds.splits.items():
    for path, label, image_id in zip(listing.paths, listing.labels, listing.ids):
      assert label.tolist() == vectors[path], (split, path)
      assert image_id == line[path]        # id = line number in Imagelist.txt
      assert os.path.isfile(os.path.join(root, path))


def test_split_sizes_disjointness_and_overlap_report(nus):
  root, fix = nus
  _, _, removed, _ = _recount(fix)
  ds = build_nus_wide21(root, seed=0, query_per_class=Q, train_per_class=T)
  q, t, db = (set(ds.splits[s].ids.tolist()) for s in ("query", "train", "database"))
  assert len(q) == 21 * Q and len(t) == 21 * T and not q & t
  used = len(fix["paths"]) - removed
  assert len(db) == used - 21 * Q and t <= db and not q & db
  assert ds.stats["overlaps"] == {"query&train": 0, "query&database": 0,
                                  "train&database": 21 * T, "train_repeated": 0,
                                  "query_repeated": 0, "database_repeated": 0}
  for split, per_class in (("query", Q), ("train", T)):
    assert np.all(ds.splits[split].labels.sum(0) >= per_class)
  no_train = build_nus_wide21(root, seed=0, query_per_class=Q, train_per_class=T,
                              database_includes_train=False)
  assert no_train.stats["overlaps"]["train&database"] == 0
  assert len(no_train.splits["database"]) == used - 21 * (Q + T)


def test_seed_determinism(nus):
  root, _ = nus
  a = build_nus_wide21(root, seed=5, query_per_class=Q, train_per_class=T)
  b = build_nus_wide21(root, seed=5, query_per_class=Q, train_per_class=T)
  c = build_nus_wide21(root, seed=6, query_per_class=Q, train_per_class=T)
  for split in ("query", "train", "database"):
    np.testing.assert_array_equal(a.splits[split].ids, b.splits[split].ids)
  assert set(a.splits["query"].ids.tolist()) != set(c.splits["query"].ids.tolist())


def test_num_classes_option_and_windows_prefix(tmp_path):
  fix = fx.write_nus_wide(str(tmp_path), np.random.default_rng(1), num_images=80,
                          tie=False, backslash_prefix="C:\\ImageData\\Flickr\\")
  kept, _, _, _ = _recount(fix, top=4)
  ds = build_nus_wide21(str(tmp_path), num_classes=4, query_per_class=1, train_per_class=2)
  assert ds.class_names == tuple(kept)
  assert set(ds.splits["database"].paths) <= set(fix["paths"])


def test_lazy_images_decode_the_listed_files(nus):
  root, _ = nus
  ds = build_nus_wide21(root, seed=0, query_per_class=Q, train_per_class=T)
  data = to_retrieval_data(ds, image_size=20, mean=(10.0, 20.0, 30.0))
  assert data.query.inputs.shape == (21 * Q, 20, 20, 3)
  assert data.stats["overlaps"]["query&train"] == 0
  got = data.query.inputs[np.array([3, 0])]
  for row, i in enumerate((3, 0)):
    with Image.open(os.path.join(root, ds.splits["query"].paths[i])) as img:
      want = np.asarray(img.convert("RGB").resize((20, 20), Image.BILINEAR), np.float64)
    np.testing.assert_allclose(got[row], want - [10.0, 20.0, 30.0], atol=1e-4)


def test_drop_missing_files(tmp_path):
  fix = fx.write_nus_wide(str(tmp_path), np.random.default_rng(2))
  _, vectors, removed, _ = _recount(fix)
  gone = [p for p in fix["paths"] if any(vectors[p])][:3]
  for p in gone:
    os.remove(os.path.join(tmp_path, p))
  ds = build_nus_wide21(str(tmp_path), query_per_class=Q, train_per_class=T,
                        drop_missing_files=True)
  assert ds.stats["missing_files_removed"] == 3
  assert ds.stats["images_used"] == len(fix["paths"]) - removed - 3
  listed = set().union(*(ds.splits[s].paths for s in ds.splits))
  assert not listed & set(gone)
  kept = build_nus_wide21(str(tmp_path), query_per_class=Q, train_per_class=T)
  data = to_retrieval_data(kept, image_size=8)
  row = kept.splits["database"].paths.index(gone[0]) if gone[0] in \
      kept.splits["database"].paths else None
  assert row is not None
  with pytest.raises(ValueError, match=gone[0].split("/")[-1]):
    data.database.inputs[row]


def _label_file(root, concept):
  return os.path.join(root, "Groundtruth", "AllLabels", f"Labels_{concept}.txt")


@pytest.mark.parametrize("edit,message", [
    ("short", r"Labels_c03\.txt: 59 lines; expected 60"),
    ("value", r"Labels_c03\.txt: line 5 is '2'; expected 0 or 1"),
    ("missing", r"Labels_c03\.txt: file not found"),
    ("empty_list", r"Imagelist\.txt: the image list is empty"),
])
def test_malformed_layout_errors_name_file_and_line(tmp_path, edit, message):
  root = str(tmp_path)
  fx.write_nus_wide(root, np.random.default_rng(3), num_images=60, tie=False)
  path = _label_file(root, "c03")
  lines = open(path).read().splitlines()
  if edit == "short":
    lines = lines[:-1]
  elif edit == "value":
    lines[4] = "2"
  if edit == "missing":
    os.remove(path)
  elif edit == "empty_list":
    open(os.path.join(root, "ImageList", "Imagelist.txt"), "w").close()
  else:
    with open(path, "w") as f:
      f.write("\n".join(lines) + "\n")
  with pytest.raises(ValueError, match=message):
    build_nus_wide21(root, query_per_class=1, train_per_class=1)
