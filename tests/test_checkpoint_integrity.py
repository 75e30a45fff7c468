"""Checkpoint checksums: a damaged newest step falls back to the previous one, loudly."""
import json
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dseh_jax import checkpointing, faults
from dseh_jax.checkpointing import MANIFEST, CheckpointDamagedError, RunCheckpointer

# The files orbax-checkpoint 0.12 writes for one step (plus content-named data files under
# state/d/ and state/ocdbt.process_0/d/); the damage below targets them by name.
ORBAX_FILES = [
    "_CHECKPOINT_METADATA", "commit_success.txt",
    "meta/metadata", "meta/commit_success.txt",
    "state/_METADATA", "state/_sharding", "state/manifest.ocdbt", "state/commit_success.txt",
    "state/array_metadatas/process_0", "state/ocdbt.process_0/manifest.ocdbt",
]
JSON_FILES = ["_CHECKPOINT_METADATA", "meta/metadata", "state/_METADATA", "state/_sharding",
              "state/array_metadatas/process_0"]


def make_state(i):
  rng = np.random.default_rng(i)
  state = {"params": {"w": rng.normal(size=(4, 8)).astype(np.float32),
                      "b": rng.normal(size=(8,)).astype(np.float32)},
           "opt": {"mu": rng.normal(size=(4, 8)).astype(np.float32),
                   "count": np.asarray(10 * i, np.int32)},
           "key": jax.random.key_data(jax.random.PRNGKey(i))}
  return {**jax.tree_util.tree_map(jnp.asarray, state), "epoch": i}   # jax arrays, as saved


def make_meta(i):
  return {"epochs_done": i, "history": [{"kind": "labnet_round", "loss": 0.5 / i}]}


def assert_same(restored, expected):
  got, want = jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(expected)
  assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(expected)
  for g, w in zip(got, want):
    assert np.asarray(g).dtype == np.asarray(w).dtype
    np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def files_of(step_dir):
  return sorted(os.path.relpath(os.path.join(r, f), step_dir).replace(os.sep, "/")
                for r, _, fs in os.walk(step_dir) for f in fs)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
  """A directory with intact checkpoints 1 and 2; tests damage copies of it."""
  path = str(tmp_path_factory.mktemp("template") / "checkpoints")
  ckpt = RunCheckpointer(path)
  for i in (1, 2):
    ckpt.save(i, make_state(i), make_meta(i))
  ckpt.close()
  return path


def copy_of(template, tmp_path, name="checkpoints"):
  path = str(tmp_path / name)
  shutil.copytree(template, path)
  return path


def flip_middle_byte(path):
  with open(path, "r+b") as f:
    data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF
    f.seek(0)
    f.write(data)


def assert_falls_back(path, caplog, what=""):
  """``path`` has step 2 damaged: restore_latest gives step 1 exactly and says why."""
  caplog.clear()
  ckpt = RunCheckpointer(path)
  with caplog.at_level(logging.WARNING, logger="dseh_jax"):
    step, state, meta = ckpt.restore_latest(make_state(0))
  ckpt.close()
  assert step == 1, what
  assert_same(state, make_state(1))
  assert meta == make_meta(1)
  text = caplog.text
  assert f"checkpoint 2 in {path} is damaged" in text and "falling back to step 1" in text, what
  assert os.path.isdir(os.path.join(path, "damaged", "2"))
  assert not os.path.exists(os.path.join(path, "2"))
  return text


def test_round_trip_writes_checksums_of_every_file(template, tmp_path, caplog):
  path = copy_of(template, tmp_path)
  step_dir = os.path.join(path, "2")
  names = files_of(step_dir)
  assert set(ORBAX_FILES + [MANIFEST]) <= set(names)
  assert any(n.startswith("state/ocdbt.process_0/d/") for n in names)
  with open(os.path.join(step_dir, MANIFEST), encoding="utf-8") as f:
    recorded = json.load(f)["files"]
  assert sorted(recorded) == [n for n in names if n != MANIFEST]
  assert all(v["size"] == os.path.getsize(os.path.join(step_dir, n))
             for n, v in recorded.items())
  ckpt = RunCheckpointer(path)
  assert ckpt.verify(1) == ckpt.verify(2) == []
  with caplog.at_level(logging.WARNING, logger="dseh_jax"):
    step, state, meta = ckpt.restore_latest(make_state(0))
    assert ckpt.latest_intact_meta() == (2, make_meta(2))
  assert step == 2 and meta == make_meta(2)
  assert_same(state, make_state(2))
  assert caplog.text == ""
  assert_same(ckpt.restore(1, make_state(0)), make_state(1))   # the old API still works
  assert ckpt.read_meta(1) == make_meta(1)
  ckpt.close()


def test_pruning_keeps_the_newest_steps_with_their_checksums(tmp_path):
  ckpt = RunCheckpointer(str(tmp_path / "c"), max_to_keep=2)
  for i in (1, 2, 3):
    ckpt.save(i, make_state(i), make_meta(i))
  assert sorted(os.listdir(tmp_path / "c")) == ["2", "3"]
  assert ckpt.latest_step() == 3 and ckpt.verify(2) == ckpt.verify(3) == []
  with pytest.raises(ValueError, match="already holds step 3"):
    ckpt.save(3, make_state(3), make_meta(3))           # orbax alone would skip it silently
  ckpt.close()


def test_no_steps_gives_none(tmp_path):
  ckpt = RunCheckpointer(str(tmp_path / "empty"))
  assert ckpt.restore_latest(make_state(0)) is None
  assert ckpt.latest_intact_meta() is None
  ckpt.close()


def test_each_flipped_byte_falls_back_never_silently(template, tmp_path, caplog):
  # Without checksums some flips restore quietly with other weights; with them none does.
  names = files_of(os.path.join(template, "2"))
  for i, name in enumerate(names):
    path = copy_of(template, tmp_path, f"flip{i}")
    flip_middle_byte(os.path.join(path, "2", name))
    ckpt = RunCheckpointer(path)
    assert ckpt.verify(2), name
    ckpt.close()
    text = assert_falls_back(path, caplog, name)
    assert name in text or (name == MANIFEST and f"{MANIFEST}: unreadable" in text), name


def test_random_bytes_over_array_files(template, tmp_path, caplog):
  names = [n for n in files_of(os.path.join(template, "2")) if "/d/" in n]
  assert names
  for i, name in enumerate(names):
    path = copy_of(template, tmp_path, f"random{i}")
    target = os.path.join(path, "2", name)
    size = os.path.getsize(target)
    with open(target, "wb") as f:
      f.write(np.random.default_rng(i).bytes(size))
    assert f"{name}: digest mismatch" in assert_falls_back(path, caplog, name)


def test_garbage_json_in_metadata_files(template, tmp_path, caplog):
  for i, name in enumerate(JSON_FILES):
    path = copy_of(template, tmp_path, f"json{i}")
    with open(os.path.join(path, "2", name), "w", encoding="utf-8") as f:
      f.write('{"garbage": [1, 2')
    assert name in assert_falls_back(path, caplog, name)


def test_truncated_metadata(template, tmp_path, caplog):
  path = copy_of(template, tmp_path)
  target = os.path.join(path, "2", "state", "_METADATA")
  os.truncate(target, os.path.getsize(target) // 2)
  assert "state/_METADATA: " in assert_falls_back(path, caplog)


def test_deleted_state_directory(template, tmp_path, caplog):
  path = copy_of(template, tmp_path)
  shutil.rmtree(os.path.join(path, "2", "state"))
  assert "missing" in assert_falls_back(path, caplog)


def test_deleted_checksums(template, tmp_path, caplog):
  path = copy_of(template, tmp_path)
  os.remove(os.path.join(path, "2", MANIFEST))
  assert f"no {MANIFEST}" in assert_falls_back(path, caplog)


def test_latest_intact_meta_skips_a_damaged_step(template, tmp_path, caplog):
  path = copy_of(template, tmp_path)
  flip_middle_byte(os.path.join(path, "2", "meta", "metadata"))
  ckpt = RunCheckpointer(path)
  with caplog.at_level(logging.WARNING, logger="dseh_jax"):
    assert ckpt.latest_intact_meta() == (1, make_meta(1))
  assert "checkpoint 2" in caplog.text
  assert os.path.isdir(os.path.join(path, "2"))        # reading meta moves nothing
  ckpt.close()


def test_after_a_fallback_the_run_saves_that_step_again(template, tmp_path, caplog):
  path = copy_of(template, tmp_path)
  flip_middle_byte(os.path.join(path, "2", "state", "_METADATA"))
  ckpt = RunCheckpointer(path)
  with caplog.at_level(logging.WARNING, logger="dseh_jax"):
    assert ckpt.restore_latest(make_state(0))[0] == 1
  assert ckpt.latest_step() == 1
  ckpt.save(2, make_state(5), make_meta(5))
  step, state, meta = ckpt.restore_latest(make_state(0))
  assert step == 2 and meta == make_meta(5)
  assert_same(state, make_state(5))
  ckpt.close()


def test_killed_before_the_checksums_falls_back(tmp_path, monkeypatch, caplog):
  path = str(tmp_path / "c")
  ckpt = RunCheckpointer(path)
  ckpt.save(1, make_state(1), make_meta(1))

  def die(point):
    if point == "checkpoint_write":
      raise KeyboardInterrupt(point)
  monkeypatch.setattr(checkpointing.faults, "reached", die)
  with pytest.raises(KeyboardInterrupt):
    ckpt.save(2, make_state(2), make_meta(2))
  ckpt.close()
  monkeypatch.setattr(checkpointing.faults, "reached", faults.reached)
  assert f"no {MANIFEST}" in assert_falls_back(path, caplog)


def test_steps_of_an_older_version_load_with_a_warning(template, tmp_path, caplog):
  path = copy_of(template, tmp_path)
  for step in ("1", "2"):
    os.remove(os.path.join(path, step, MANIFEST))
  ckpt = RunCheckpointer(path)
  with caplog.at_level(logging.WARNING, logger="dseh_jax"):
    step, state, meta = ckpt.restore_latest(make_state(0))
  ckpt.close()
  assert step == 2 and meta == make_meta(2)
  assert_same(state, make_state(2))
  assert f"checkpoint 2 in {path} has no checksum" in caplog.text


def test_unverified_old_step_that_fails_to_load_falls_back(template, tmp_path, caplog):
  path = copy_of(template, tmp_path)
  for step in ("1", "2"):
    os.remove(os.path.join(path, step, MANIFEST))
  shutil.rmtree(os.path.join(path, "2", "state"))
  assert "has no checksum" in assert_falls_back(path, caplog)


def test_all_steps_damaged_is_one_clear_error(template, tmp_path):
  path = copy_of(template, tmp_path)
  flip_middle_byte(os.path.join(path, "1", "state", "_METADATA"))
  shutil.rmtree(os.path.join(path, "2", "state"))
  ckpt = RunCheckpointer(path)
  for call in (lambda: ckpt.restore_latest(make_state(0)), ckpt.latest_intact_meta):
    with pytest.raises(CheckpointDamagedError) as err:
      call()
    message = str(err.value)
    assert "\n" not in message and path in message and "move the directory aside" in message
    assert "step 2 (" in message and "step 1 (state/_METADATA: digest mismatch)" in message
  assert sorted(os.listdir(path)) == ["1", "2"]       # nothing is moved when nothing is intact
  ckpt.close()
