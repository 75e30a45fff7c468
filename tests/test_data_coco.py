"""MS-COCO 2014 from the annotation JSON files (SPEC §6), against an independent recount."""
import json
import os

import numpy as np
import pytest

import fixtures_datasets as fx
from dseh_jax.data.coco import build_coco


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("coco"))
  return root, fx.write_coco(root, np.random.default_rng(0))


def test_labels_classes_and_removed_count(coco):
  root, fix = coco
  ds = build_coco(root, num_query=6, num_train=10, seed=0)
  sorted_ids = sorted(fix["names"])
  assert ds.class_names == tuple(fix["names"][c] for c in sorted_ids)
  assert ds.stats["images_listed"] == len(fix["files"]) == 64
  assert ds.stats["images_without_label_removed"] == 10
  assert ds.stats["images_used"] == len(fix["categories"]) == 54
  for listing in ds.splits.values():
    for path, label, image_id in zip(listing.paths, listing.labels, listing.ids):
      assert path == fix["files"][int(image_id)]
      want = [1.0 if c in fix["categories"][int(image_id)] else 0.0 for c in sorted_ids]
      assert label.tolist() == want
      assert os.path.isfile(os.path.join(root, path))


def test_split_sizes_overlaps_and_seed(coco):
  root, fix = coco
  ds = build_coco(root, num_query=6, num_train=10, seed=1)
  q, t, db = (set(ds.splits[s].ids.tolist()) for s in ("query", "train", "database"))
  assert len(q) == 6 and len(t) == 10 and not q & t
  assert db == set(fix["categories"]) - q            # database includes train
  assert ds.stats["overlaps"]["train&database"] == 10
  assert ds.stats["overlaps"]["query&database"] == 0
  again = build_coco(root, num_query=6, num_train=10, seed=1)
  np.testing.assert_array_equal(again.splits["train"].ids, ds.splits["train"].ids)
  other = build_coco(root, num_query=6, num_train=10, seed=2)
  assert set(other.splits["query"].ids.tolist()) != q
  rest = build_coco(root, num_query=6, num_train=10, seed=1, database_includes_train=False)
  assert set(rest.splits["database"].ids.tolist()) == set(fix["categories"]) - q - t


def _edit_json(root, name, edit):
  path = os.path.join(root, "annotations", name)
  with open(path) as f:
    doc = json.load(f)
  edit(doc)
  with open(path, "w") as f:
    json.dump(doc, f)


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.pop("categories"), "instances_val2014.json: the top level has no field "
                                    "'categories'"),
    (lambda d: d["annotations"][0].update(category_id=2),
     r"instances_val2014.json: annotations\[0\].category_id 2 is not in 'categories'"),
    (lambda d: d["annotations"][1].update(image_id=1),
     r"instances_val2014.json: annotations\[1\].image_id 1 is not in 'images'"),
    (lambda d: d["images"][2].pop("file_name"),
     r"instances_val2014.json: images\[2\] has no field 'file_name'"),
    (lambda d: d["images"][0].update(id="7"),
     r"instances_val2014.json: field images\[0\].id is str; expected int"),
])
def test_malformed_json_errors_name_file_and_field(tmp_path, edit, message):
  root = str(tmp_path)
  fx.write_coco(root, np.random.default_rng(1), num_train=8, num_val=8, unlabeled=1)
  _edit_json(root, "instances_val2014.json", edit)
  with pytest.raises(ValueError, match=message):
    build_coco(root, num_query=2, num_train=2)


def test_missing_annotation_file(tmp_path):
  fx.write_coco(str(tmp_path), np.random.default_rng(2), num_train=4, num_val=4,
                unlabeled=0)
  os.remove(os.path.join(tmp_path, "annotations", "instances_train2014.json"))
  with pytest.raises(ValueError, match="instances_train2014.json: file not found"):
    build_coco(str(tmp_path), num_query=1, num_train=1)
