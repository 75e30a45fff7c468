"""Search refuses query and database code files of different runs (``config_hash``)."""
from __future__ import annotations

import numpy as np
import pytest

from dseh_jax.evaluation.code_files import config_hash, save_code_file
from dseh_jax.evaluation.search import check_same_run, load_search_result
from scripts import load_script

HASH_A, HASH_B = config_hash({"seed": 0}), config_hash({"seed": 1})


def _write(tmp_path, name, split, ids, meta, num_bits=8):
  codes = np.where(np.random.default_rng(len(ids)).random((len(ids), num_bits)) < 0.5, -1, 1)
  path = str(tmp_path / name)
  save_code_file(path, codes.astype(np.int8), ids, split=split, meta=meta)
  return path


def _files(tmp_path, q_meta, d_meta, d_bits=8):
  q = _write(tmp_path, "q.npz", "query", np.arange(5), q_meta)
  d = _write(tmp_path, "d.npz", "database", np.arange(100, 140), d_meta, d_bits)
  return q, d, ["--query", q, "--database", d, "--top_k", "7",
                "--out", str(tmp_path / "res.npz")]


def test_check_same_run_library():
  a, b = {"config_hash": HASH_A}, {"config_hash": HASH_B}
  assert check_same_run(a, "q.npz", dict(a), "d.npz") == []
  with pytest.raises(ValueError) as e:
    check_same_run(a, "q.npz", b, "d.npz")
  msg = str(e.value)
  assert "\n" not in msg
  for part in ("q.npz", "d.npz", HASH_A, HASH_B, "re-encode", "--allow_mixed_runs"):
    assert part in msg
  (w,) = check_same_run(a, "q.npz", b, "d.npz", allow_mixed=True)
  assert HASH_A in w and HASH_B in w and "searching anyway" in w
  (w,) = check_same_run(a, "q.npz", {}, "old.npz")
  assert "no config_hash in old.npz" in w


def test_cli_refuses_mixed_runs_then_warns_when_allowed(tmp_path, capsys):
  cli = load_script("search")
  q, d, argv = _files(tmp_path, {"config_hash": HASH_A}, {"config_hash": HASH_B})
  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and "\n" not in err
  for part in (q, d, HASH_A, HASH_B, "--allow_mixed_runs"):
    assert part in err
  assert not (tmp_path / "res.npz").exists()
  assert cli.main(argv + ["--allow_mixed_runs"]) == 0
  err = capsys.readouterr().err
  assert "warning: " in err and HASH_A in err and HASH_B in err
  r = load_search_result(str(tmp_path / "res.npz"))
  assert r.meta["allow_mixed_runs"] and len(r.meta["run_warnings"]) == 1


def test_cli_same_run_passes_silently(tmp_path, capsys):
  cli = load_script("search")
  *_, argv = _files(tmp_path, {"config_hash": HASH_A}, {"config_hash": HASH_A})
  assert cli.main(argv) == 0
  assert "warning" not in capsys.readouterr().err
  assert load_search_result(str(tmp_path / "res.npz")).meta["run_warnings"] == []


def test_cli_warns_for_files_without_config_hash(tmp_path, capsys):
  cli = load_script("search")
  _, d, argv = _files(tmp_path, {"config_hash": HASH_A}, {})
  assert cli.main(argv) == 0
  assert f"warning: no config_hash in {d}" in capsys.readouterr().err


def test_cli_checks_train_file_run(tmp_path, capsys):
  cli = load_script("search")
  *_, argv = _files(tmp_path, {"config_hash": HASH_A}, {"config_hash": HASH_A})
  t = _write(tmp_path, "t.npz", "train", np.arange(200, 210), {"config_hash": HASH_B})
  assert cli.main(argv + ["--train", t]) == 2
  err = capsys.readouterr().err
  assert t in err and HASH_B in err


def test_cli_refuses_different_bit_lengths_even_when_mixing_allowed(tmp_path, capsys):
  cli = load_script("search")
  q, d, argv = _files(tmp_path, {"config_hash": HASH_A}, {"config_hash": HASH_A}, d_bits=16)
  assert cli.main(argv + ["--allow_mixed_runs"]) == 2
  err = capsys.readouterr().err.strip()
  assert err == (f"error: {q} holds 8-bit codes, {d} 16-bit codes; encode both at the same "
                 "--bits")
