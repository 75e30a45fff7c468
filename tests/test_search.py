"""Exact Hamming top-k search, encoding a split, the encode/search commands and FAISS export.

References are computed independently: distances by counting unequal bits of unpacked
{0, 1} arrays, rankings by Python's ``sorted`` on ``(distance, database row)``.
"""
from __future__ import annotations

import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dseh_jax import models
from dseh_jax.evaluation import faiss_index
from dseh_jax.evaluation.code_files import load_code_file, save_code_file
from dseh_jax.evaluation.encoding import encode_split
from dseh_jax.evaluation.search import (hamming_top_k, load_search_result,
                                        search_code_files)
from scripts import load_script

HAVE_FAISS = importlib.util.find_spec("faiss") is not None


def _script(name):
  return load_script(name)


def _bits(rng, n, k):
  return (rng.random((n, k)) < 0.5).astype(np.int8)


def _brute_top_k(q_bits, db_bits, k):
  dist = (q_bits[:, None, :] != db_bits[None, :, :]).sum(-1)
  idx = np.array([sorted(range(db_bits.shape[0]), key=lambda j: (row[j], j))[:k]
                  for row in dist])
  return idx, np.take_along_axis(dist, idx, 1)


def _unpack(packed, k):
  """Independent unpacking: bit j of a code is bit j % 32 of word j // 32."""
  words = packed.astype(np.uint64)
  return np.stack([(words[:, j // 32] >> np.uint64(j % 32)) & np.uint64(1)
                   for j in range(k)], 1).astype(np.int8)


# --------------------------------------------------------------------------- top-k

@pytest.mark.parametrize("k_bits, top_k, chunk", [(8, 25, 7), (8, 300, None), (40, 10, 16),
                                                  (3, 50, 5)])
def test_top_k_equals_stable_brute_force(k_bits, top_k, chunk):
  rng = np.random.default_rng(k_bits + top_k)
  q, db = _bits(rng, 33, k_bits), _bits(rng, 260, k_bits)   # 8 bits, 260 items: many ties
  idx, dist = hamming_top_k(2 * q - 1, 2 * db - 1, top_k, chunk_size=chunk)
  ref_idx, ref_dist = _brute_top_k(q, db, min(top_k, 260))
  np.testing.assert_array_equal(idx, ref_idx)
  np.testing.assert_array_equal(dist, ref_dist)
  assert idx.dtype == np.int64 and dist.dtype == np.int32


def test_top_k_with_a_tiny_memory_budget_and_identical_codes():
  rng = np.random.default_rng(5)
  db = np.repeat(_bits(rng, 4, 8), 30, axis=0)[rng.permutation(120)]   # only 4 distinct
  q = db[:9]
  idx, dist = hamming_top_k(2 * q - 1, 2 * db - 1, 40, max_block_bytes=1)
  ref_idx, ref_dist = _brute_top_k(q, db, 40)
  np.testing.assert_array_equal(idx, ref_idx)
  np.testing.assert_array_equal(dist, ref_dist)


def test_top_k_rejects_bad_input():
  codes = np.ones((3, 8), np.int8)
  with pytest.raises(ValueError, match="top_k=0"):
    hamming_top_k(codes, codes, 0)
  with pytest.raises(ValueError, match="database_codes has 16 bits per row; num_bits=8"):
    hamming_top_k(codes, np.ones((3, 16), np.int8), 2)


def test_search_code_files_attaches_ids(tmp_path):
  rng = np.random.default_rng(2)
  q, db = _bits(rng, 6, 16), _bits(rng, 50, 16)
  db_ids = rng.permutation(10_000)[:50]
  save_code_file(str(tmp_path / "q.npz"), 2 * q - 1, np.arange(6), split="query")
  save_code_file(str(tmp_path / "d.npz"), 2 * db - 1, db_ids, split="database")
  r = search_code_files(load_code_file(str(tmp_path / "q.npz")),
                        load_code_file(str(tmp_path / "d.npz")), 12)
  ref_idx, ref_dist = _brute_top_k(q, db, 12)
  np.testing.assert_array_equal(r.ids, db_ids[ref_idx])
  np.testing.assert_array_equal(r.distances, ref_dist)
  assert r.top_k == 12 and r.num_bits == 16


# --------------------------------------------------------------------------- encode_split

def test_encode_split_equals_sign_of_a_direct_apply():
  model = models.ImgNet(num_bits=40, backbone=None, semantic_units=16)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 12)))["params"]
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (37, 12)), np.float32)
  packed, k = encode_split(model.apply, params, x, batch_size=8)   # 37 = 4 × 8 + 5 rows
  assert k == 40 and packed.shape == (37, 2) and packed.dtype == np.uint32
  logits = np.asarray(model.apply({"params": params}, x).hash_logits)
  np.testing.assert_array_equal(_unpack(packed, 40), (logits >= 0).astype(np.int8))


def test_encode_split_refuses_non_finite_outputs():
  model = models.ImgNet(num_bits=8, backbone=None, semantic_units=4)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))["params"]
  x = np.zeros((5, 3), np.float32)
  x[3, 1] = np.nan
  with pytest.raises(ValueError, match=r"NaN or infinite for 1 of 5 rows \(first: \[3\]\)"):
    encode_split(model.apply, params, x, batch_size=4)


# --------------------------------------------------------------------------- search CLI

def _code_files(tmp_path, rng, overlap):
  q, db = _bits(rng, 10, 8), _bits(rng, 80, 8)
  db_ids = np.arange(100, 180)
  q_ids = np.arange(0, 10) + (100 if overlap else 0)
  save_code_file(str(tmp_path / "q.npz"), 2 * q - 1, q_ids, split="query")
  save_code_file(str(tmp_path / "d.npz"), 2 * db - 1, db_ids, split="database")
  return q, db, db_ids


def test_search_cli_refuses_leakage_then_writes_results_when_allowed(tmp_path, capsys):
  cli = _script("search")
  q, db, db_ids = _code_files(tmp_path, np.random.default_rng(3), overlap=True)
  argv = ["--query", str(tmp_path / "q.npz"), "--database", str(tmp_path / "d.npz"),
          "--top_k", "15", "--out", str(tmp_path / "res.npz")]
  assert cli.main(argv) == 2
  assert "10 of 10 queries are also in the database" in capsys.readouterr().err
  assert not (tmp_path / "res.npz").exists()
  assert cli.main(argv + ["--allow_overlap", "--chunk_size", "3"]) == 0
  r = load_search_result(str(tmp_path / "res.npz"))
  ref_idx, ref_dist = _brute_top_k(q, db, 15)
  np.testing.assert_array_equal(r.ids, db_ids[ref_idx])
  np.testing.assert_array_equal(r.distances, ref_dist)
  np.testing.assert_array_equal(r.query_ids, np.arange(100, 110))
  assert r.meta["overlaps"]["query_in_database"] == 10 and r.meta["allow_overlap"]


def test_search_cli_checks_query_against_train(tmp_path, capsys):
  cli = _script("search")
  _code_files(tmp_path, np.random.default_rng(4), overlap=False)
  save_code_file(str(tmp_path / "t.npz"), np.ones((3, 8), np.int8), np.array([2, 50, 51]),
                 split="train")
  argv = ["--query", str(tmp_path / "q.npz"), "--database", str(tmp_path / "d.npz"),
          "--train", str(tmp_path / "t.npz"), "--out", str(tmp_path / "res.npz")]
  assert cli.main(argv) == 2
  assert "1 of 10 queries are also training items" in capsys.readouterr().err


def test_search_cli_faiss_export_or_clear_error(tmp_path, capsys):
  cli = _script("search")
  _code_files(tmp_path, np.random.default_rng(6), overlap=False)
  argv = ["--query", str(tmp_path / "q.npz"), "--database", str(tmp_path / "d.npz"),
          "--top_k", "20", "--out", str(tmp_path / "res.npz"),
          "--faiss_index", str(tmp_path / "db.faissbin")]
  status = cli.main(argv)
  if HAVE_FAISS:
    assert status == 0 and "parity with the exact search: OK" in capsys.readouterr().out
    assert load_search_result(str(tmp_path / "res.npz")).meta["faiss"]["ok"]
    assert (tmp_path / "db.faissbin").stat().st_size > 80
  else:
    assert status == 2 and "faiss-cpu" in capsys.readouterr().err


# --------------------------------------------------------------------------- FAISS

def test_faiss_dimension_rule_needs_no_faiss():
  assert faiss_index.faiss_dimension(48) == 48
  assert faiss_index.faiss_dimension(12, pad=True) == 16
  with pytest.raises(ValueError, match="multiple of 8; num_bits=12.*pad=True"):
    faiss_index.faiss_dimension(12)
  packed = np.array([[0x0ABC], [0x0001]], np.uint32)
  np.testing.assert_array_equal(faiss_index.faiss_bytes(packed, 12, pad=True),
                                [[0xBC, 0x0A], [0x01, 0x00]])


def test_missing_faiss_raises_an_error_naming_the_extra(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "faiss", None)      # import faiss now fails
  with pytest.raises(faiss_index.MissingExtraError, match="optional extra 'faiss-cpu'"):
    faiss_index.export_faiss_index(np.zeros((2, 1), np.uint32), 32,
                                   str(tmp_path / "x.faissbin"))
  assert not (tmp_path / "x.faissbin").exists()


@pytest.mark.parametrize("k_bits, pad", [(8, False), (32, False), (64, False), (12, True)])
def test_faiss_index_matches_exact_search_or_errors_clearly(tmp_path, k_bits, pad):
  rng = np.random.default_rng(k_bits)
  q, db = _bits(rng, 20, k_bits), _bits(rng, 150, k_bits)
  path = str(tmp_path / "db.faissbin")
  db_packed = load_packed(2 * db - 1)
  if not HAVE_FAISS:
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
      faiss_index.export_faiss_index(db_packed, k_bits, path, pad=pad)
    return
  faiss_index.export_faiss_index(db_packed, k_bits, path, pad=pad)
  index = faiss_index.read_faiss_index(path)
  assert index.ntotal == 150
  parity = faiss_index.check_faiss_parity(path, load_packed(2 * q - 1), db_packed, k_bits,
                                          30, pad=pad)
  assert parity.ok and parity.num_queries == 20 and parity.top_k == 30
  f_dist, f_idx = index.search(faiss_index.faiss_bytes(load_packed(2 * q - 1), k_bits, pad),
                               30)
  _, ref_dist = _brute_top_k(q, db, 30)
  np.testing.assert_array_equal(f_dist, ref_dist)            # FAISS's own distances
  true = (q[:, None, :] != db[f_idx]).sum(-1)
  np.testing.assert_array_equal(true, ref_dist)


def test_faiss_parity_detects_a_wrong_index():
  if not HAVE_FAISS:
    with pytest.raises(ImportError, match="faiss-cpu"):
      faiss_index.build_faiss_index(np.zeros((2, 1), np.uint32), 32)
    return
  rng = np.random.default_rng(9)
  q, db = load_packed(2 * _bits(rng, 10, 32) - 1), load_packed(2 * _bits(rng, 60, 32) - 1)
  wrong = faiss_index.build_faiss_index(db[::-1].copy(), 32)  # rows in another order
  parity = faiss_index.check_faiss_parity(wrong, q, db, 32, 5)
  assert not parity.ok and parity.id_mismatches > 0 and parity.first_bad_query == 0


def load_packed(codes):
  """Packs {-1, +1} codes with an independent loop (bit j -> word j // 32, bit j % 32)."""
  n, k = codes.shape
  out = np.zeros((n, -(-k // 32)), np.uint32)
  for j in range(k):
    out[:, j // 32] |= (codes[:, j] > 0).astype(np.uint32) << np.uint32(j % 32)
  return out


# --------------------------------------------------------------------------- encode CLI

def _tiny_run(tmp_path):
  """A two-epoch feature-mode run (SPEC §4 feature mode) on a random feature file."""
  import ml_collections
  from dseh_jax import configs
  from dseh_jax.data.registry import load_dataset
  from dseh_jax.experiment import train_and_evaluate
  rng = np.random.default_rng(0)
  arrays = {}
  for split, n in (("train", 32), ("query", 8), ("database", 40)):
    arrays[f"x_{split}"] = rng.normal(size=(n, 16)).astype(np.float32)
    arrays[f"y_{split}"] = np.eye(4, dtype=np.float32)[rng.integers(0, 4, n)]
  np.savez(tmp_path / "features.npz", **arrays)
  c = configs.get_config("digits")
  c.bits = (8,)
  c.data.name = "features_npz"
  c.data.kwargs = ml_collections.ConfigDict({"path": str(tmp_path / "features.npz")})
  c.imgnet.backbone = "none"
  c.labnet.hidden_units = 32
  c.labnet.semantic_units = c.imgnet.semantic_units = 8
  c.labnet.batch_size = c.imgnet.batch_size = 16
  c.eval.batch_size = 16
  c.labnet.epochs_per_round = (1,)
  c.imgnet.epochs_per_round = (1,)
  c.eval.labnet_map_every = 0
  c.on_collapse = "warn"           # one epoch each: a smoke run, not a converged one
  data = load_dataset(c.data, seed=c.seed)
  train_and_evaluate(c, data, str(tmp_path / "run"), progress=False)
  return data


def test_encode_cli_from_codes_and_from_checkpoint_agree_with_the_trainer(tmp_path):
  cli = _script("encode")
  data = _tiny_run(tmp_path)
  run = str(tmp_path / "run")
  with np.load(os.path.join(run, "bits8", "codes.npz")) as npz:
    stored = {k: npz[k] for k in npz.files}
  assert cli.main(["--workdir", run, "--bits", "8", "--split", "all",
                   "--out", str(tmp_path / "fast"), "--with_labels"]) == 0
  assert cli.main(["--workdir", run, "--bits", "8", "--split", "all", "--source",
                   "checkpoint", "--out", str(tmp_path / "ckpt")]) == 0
  for split in ("train", "query", "database"):
    fast = load_code_file(str(tmp_path / "fast" / f"{split}.npz"))
    ckpt = load_code_file(str(tmp_path / "ckpt" / f"{split}.npz"))
    for c in (fast, ckpt):
      np.testing.assert_array_equal(_unpack(c.packed, 8) * 2 - 1, stored[f"{split}_codes"])
      np.testing.assert_array_equal(c.ids, stored[f"{split}_ids"])
      np.testing.assert_array_equal(c.labels, data.splits()[split].labels)
      assert c.meta["method"] == "DSEH" and c.meta["dataset"] == "features_npz"
    assert fast.meta["config_hash"] == ckpt.meta["config_hash"]
    assert fast.meta["source"] == "codes.npz" and ckpt.meta["complete"] is True


def test_encode_cli_reports_a_missing_run(tmp_path, capsys):
  cli = _script("encode")
  assert cli.main(["--workdir", str(tmp_path / "none"), "--bits", "8", "--split", "query",
                   "--out", str(tmp_path / "o")]) == 2
  assert "no checkpoints" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["ties", "skewed", "k_is_n", "one", "rare_near"])
def test_stable_top_k_is_exact_where_the_sampled_cut_is_wrong(case):
  """The sampled cut-off only speeds the search up: all-equal rows, rows whose few near
  items the sample misses, k = n and k = 1 give the first k of a stable argsort."""
  from dseh_jax.evaluation.search import _stable_top_k  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(7)
  n, k = 50_000, 100
  if case == "ties":
    dist = np.full((3, n), 5, np.uint8)
  elif case == "skewed":
    dist = rng.binomial(64, 0.5, size=(3, n)).astype(np.uint8)
  elif case == "rare_near":                      # 150 near items at unsampled positions
    dist = np.full((3, n), 40, np.uint8)
    dist[:, rng.choice(np.flatnonzero(np.arange(n) % 3), 150, replace=False)] = 2
  else:
    dist = rng.integers(0, 9, size=(3, n)).astype(np.uint8)
    k = n if case == "k_is_n" else 1
  idx, d = _stable_top_k(dist, k)
  want = np.argsort(dist, axis=1, kind="stable")[:, :k]
  np.testing.assert_array_equal(idx, want)
  np.testing.assert_array_equal(d, np.take_along_axis(dist, want, 1))
