"""Packed code files: round trip, atomic writes, and clear errors on bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dseh_jax.evaluation.code_files import (FORMAT, config_hash, load_code_file,
                                            save_code_file)


def _codes(rng, n, k):
  return np.where(rng.random((n, k)) < 0.5, -1, 1).astype(np.int8)


def _bits_of(packed, k):
  """Independent unpacking: bit j of a code is bit j % 32 of word j // 32."""
  n = packed.shape[0]
  out = np.zeros((n, k), np.int8)
  for i in range(n):
    for j in range(k):
      out[i, j] = 1 if (int(packed[i, j // 32]) >> (j % 32)) & 1 else -1
  return out


@pytest.mark.parametrize("k", [8, 32, 40])
def test_round_trip_keeps_everything(tmp_path, k):
  rng = np.random.default_rng(k)
  codes = _codes(rng, 23, k)
  ids = rng.permutation(1000)[:23].astype(np.int64)
  labels = (rng.random((23, 5)) < 0.3).astype(np.float32)
  meta = {"method": "DSEH", "dataset": "toy", "config_hash": config_hash({"a": 1})}
  path = tmp_path / "sub" / "query.npz"
  save_code_file(str(path), codes, ids, split="query", labels=labels, meta=meta)
  assert sorted(p.name for p in path.parent.iterdir()) == ["query.npz"]   # no temp file
  c = load_code_file(str(path))
  assert c.num_bits == k and c.split == "query" and len(c) == 23
  assert c.packed.dtype == np.uint32 and c.packed.shape == (23, -(-k // 32))
  np.testing.assert_array_equal(_bits_of(c.packed, k), codes)
  np.testing.assert_array_equal(c.codes(), codes)
  np.testing.assert_array_equal(c.ids, ids)
  np.testing.assert_array_equal(c.labels, labels)
  assert c.labels.dtype == np.uint8
  assert dict(c.meta) == meta


def test_packed_input_and_no_labels(tmp_path):
  rng = np.random.default_rng(1)
  codes = _codes(rng, 7, 12)
  words = np.zeros((7, 1), np.uint32)
  for j in range(12):
    words[:, 0] |= (codes[:, j] > 0).astype(np.uint32) << np.uint32(j)
  path = tmp_path / "db.npz"
  save_code_file(str(path), words, np.arange(7), split="database", num_bits=12)
  c = load_code_file(str(path))
  assert c.labels is None and dict(c.meta) == {}
  np.testing.assert_array_equal(c.codes(), codes)


def test_config_hash_is_order_independent_and_sensitive():
  a = config_hash({"x": 1, "y": {"z": [1, 2]}})
  assert a == config_hash({"y": {"z": [1, 2]}, "x": 1})
  assert a != config_hash({"x": 2, "y": {"z": [1, 2]}})
  assert len(a) == 16 and int(a, 16) >= 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(ids=np.arange(4)), r"field 'ids'.*expected \(5,\)"),
    (dict(ids=np.arange(5.0)), r"field 'ids'.*integers"),
    (dict(labels=np.ones((4, 3))), r"field 'labels'.*\[5, num_classes\]"),
    (dict(labels=np.full((5, 3), 2)), r"field 'labels'.*only 0 and 1"),
    (dict(meta={"x": object()}), r"field 'meta' is not JSON"),
    (dict(split=""), r"field 'split'"),
    (dict(codes=np.zeros((5, 8))), r"field 'packed'.*-1 and \+1"),
])
def test_save_rejects_bad_input_naming_file_and_field(tmp_path, kwargs, match):
  args = dict(codes=np.ones((5, 8), np.int8), ids=np.arange(5), split="query")
  args.update(kwargs)
  path = str(tmp_path / "bad.npz")
  with pytest.raises(ValueError, match=match) as e:
    save_code_file(path, args.pop("codes"), args.pop("ids"), **args)
  assert "bad.npz" in str(e.value)
  assert list(tmp_path.iterdir()) == []


def _write_raw(path, **fields):
  base = dict(format=np.str_(FORMAT), version=np.int64(1),
              packed=np.zeros((3, 1), np.uint32), num_bits=np.int64(16),
              ids=np.arange(3, dtype=np.int64), split=np.str_("query"),
              meta=np.str_(json.dumps({})))
  base.update(fields)
  base = {k: v for k, v in base.items() if v is not None}
  np.savez(path, **base)


@pytest.mark.parametrize("fields, match", [
    (dict(ids=None), r"missing field\(s\) \['ids'\]"),
    (dict(format=np.str_("other")), r"field 'format'"),
    (dict(version=np.int64(99)), r"field 'version'"),
    (dict(num_bits=np.int64(40)), r"field 'packed'.*\[n, 2\]"),
    (dict(packed=np.full((3, 1), 1 << 20, np.uint32)), r"field 'packed'.*beyond bit 16"),
    (dict(packed=np.zeros((3, 1), np.int32)), r"field 'packed'.*uint32"),
    (dict(meta=np.str_("{not json")), r"field 'meta' is not valid JSON"),
    (dict(meta=np.str_("[1, 2]")), r"field 'meta'.*JSON object"),
    (dict(num_bits=np.str_("16")), r"field 'num_bits'.*integer"),
])
def test_load_rejects_bad_files_naming_file_and_field(tmp_path, fields, match):
  path = tmp_path / "raw.npz"
  _write_raw(str(path), **fields)
  with pytest.raises(ValueError, match=match) as e:
    load_code_file(str(path))
  assert "raw.npz" in str(e.value)


def test_load_rejects_missing_and_non_npz_files(tmp_path):
  with pytest.raises(ValueError, match="no such code file"):
    load_code_file(str(tmp_path / "absent.npz"))
  junk = tmp_path / "junk.npz"
  junk.write_bytes(b"this is not a zip archive")
  with pytest.raises(ValueError, match="junk.npz: not a readable .npz"):
    load_code_file(str(junk))


def test_failed_save_keeps_the_previous_file(tmp_path):
  path = str(tmp_path / "q.npz")
  save_code_file(path, np.ones((2, 8), np.int8), np.arange(2), split="query")
  with pytest.raises(ValueError):
    save_code_file(path, np.ones((2, 8), np.int8), np.arange(3), split="query")
  assert len(load_code_file(path)) == 2
  assert [p.name for p in tmp_path.iterdir()] == ["q.npz"]
