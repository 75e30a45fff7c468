"""The collapse guard of the trainer (SPEC §5 hazards): stop with checkpoints kept, resume
with ``on_collapse="warn"``, and ImgNet's bit agreement judged after the last round only."""
import copy
import logging
import os

import jax.numpy as jnp
import numpy as np
import pytest

from dseh_jax.checkpointing import RunCheckpointer
from dseh_jax.data.registry import load_dataset
from dseh_jax.run_identity import NOT_TRAINING
from dseh_jax.train import CollapseError, DSEHTrainer
from test_trainer import tiny_config


def guard_config():
  c = tiny_config()
  c.data.kwargs.update(num_query=16, num_train=40, num_retrieval=24)
  c.labnet.epochs_per_round = (2, 1)
  c.imgnet.epochs_per_round = (1, 1)
  c.eval.top_k = 0
  c.on_collapse = "stop"
  return c


@pytest.fixture(scope="module")
def data():
  return load_dataset(guard_config().data)


def _steps(workdir):
  return sorted(int(p) for p in os.listdir(os.path.join(workdir, "checkpoints"))
                if p.isdigit())


def _meta(workdir):
  ckpt = RunCheckpointer(os.path.join(workdir, "checkpoints"))
  try:
    step = ckpt.latest_step()
    return step, ckpt.read_meta(step)
  finally:
    ckpt.close()


@pytest.mark.slow
def test_labnet_collapse_stops_keeps_checkpoints_and_resumes_with_warn(tmp_path, data,
                                                                       caplog):
  # The floor is every distinct training label set (fraction 1.0); 4-bit codes take at
  # most 16 values, fewer than the label sets: nh < floor whatever LabNet learns.
  distinct = np.unique(data.train.labels, axis=0).shape[0]
  assert distinct > 2 ** 4
  config = guard_config()
  config.collapse_nh_fraction = 1.0
  workdir = str(tmp_path / "run")
  trainer = DSEHTrainer(config, data, 4, workdir, progress=False)
  with pytest.raises(CollapseError) as err:
    trainer.run()
  message = str(err.value)
  step, meta = _meta(workdir)
  summary = [h for h in meta["history"] if h["kind"] == "labnet_round"]
  assert len(summary) == 1 and summary[0]["round"] == 0 and summary[0]["collapsed"]
  nh = summary[0]["nh"]
  assert f"LabNet collapsed in round 0 at 4 bits: nh = {nh} distinct codes for {distinct} " \
         f"distinct training label sets (floor {distinct})" in message
  assert "lower labnet.optimizer.lr" in message and "on_collapse='warn'" in message
  assert f"{workdir}/checkpoints" in message
  # The checkpoints up to the collapsed phase's end are on disk; nothing after it ran.
  assert step == 2 and _steps(workdir)[-1] == 2 and meta["epochs_done"] == 2
  assert [h["network"] for h in meta["history"] if h["kind"] == "epoch"] == ["labnet"] * 2
  # nh recounted from the checkpointed LabNet on the training labels
  labnet = DSEHTrainer(config, data, 4, workdir, progress=False).restore()[1]["labnet"]
  out = labnet.apply_fn({"params": labnet.params}, jnp.asarray(data.train.labels))
  codes = np.asarray(out.codes, np.float64)
  assert np.unique(codes >= 0, axis=0).shape[0] == nh <= 2 ** 4

  # Rerunning the same command meets the same guard before any training.
  with pytest.raises(CollapseError, match="LabNet collapsed in round 0 at 4 bits"):
    DSEHTrainer(config, data, 4, workdir, progress=False).run()
  assert _steps(workdir)[-1] == 2

  # The same run with on_collapse="warn" (a resumable field) continues from epoch 2.
  assert "on_collapse" in NOT_TRAINING
  config_warn = copy.deepcopy(config)
  config_warn.on_collapse = "warn"
  resumed = DSEHTrainer(config_warn, data, 4, workdir, progress=False)
  ran = []
  run_epoch = resumed._run_epoch                     # pylint: disable=protected-access

  def counting(phase, epoch, state, bank):
    ran.append((phase.network, phase.round, epoch))
    return run_epoch(phase, epoch, state, bank)

  resumed._run_epoch = counting                      # pylint: disable=protected-access
  caplog.clear()
  with caplog.at_level(logging.INFO, logger="dseh_jax"):
    result = resumed.run()
  assert ran == [("imgnet", 0, 0), ("labnet", 1, 0), ("imgnet", 1, 0)]   # not from epoch 0
  assert "resuming 4-bit run after epoch 2 of 5" in caplog.text
  epochs = [h for h in result.history if h["kind"] == "epoch"]
  assert len(epochs) == 5
  assert epochs[:2] == [h for h in meta["history"] if h["kind"] == "epoch"]   # kept as is
  rounds = [h for h in result.history if h["kind"] == "labnet_round"]
  assert [h["round"] for h in rounds] == [0, 1] and all(h["collapsed"] for h in rounds)
  warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert any("LabNet collapsed in round 1 at 4 bits" in m and
             "lower labnet.optimizer.lr" in m for m in warned)
  assert result.query_codes.shape == (16, 4) and 0.0 <= result.metrics["map"] <= 1.0
  assert _steps(workdir)[-1] == 5


@pytest.mark.slow
def test_imgnet_guard_stops_after_the_last_round_only(tmp_path, data, caplog):
  config = guard_config()
  config.labnet.epochs_per_round = (1, 1)
  config.collapse_nh_fraction = 0.0           # floor 2: LabNet's guard stays quiet
  config.collapse_min_bit_agreement = 1.01    # unreachable
  workdir = str(tmp_path / "run")
  with caplog.at_level(logging.WARNING, logger="dseh_jax"):
    with pytest.raises(CollapseError) as err:
      DSEHTrainer(config, data, 8, workdir, progress=False).run()
  step, meta = _meta(workdir)
  assert step == 4 and meta["epochs_done"] == 4                 # every epoch ran and is kept
  img = [h for h in meta["history"] if h["kind"] == "imgnet_round"]
  assert [(h["round"], h["collapsed"]) for h in img] == [(0, False), (1, True)]
  assert all(not h["collapsed"] for h in meta["history"] if h["kind"] == "labnet_round")
  message = str(err.value)
  assert ("ImgNet's codes are degenerate after the last round (1) at 8 bits: bit agreement "
          f"with LabNet's codes {img[1]['bit_agreement']:.3f} (at least "
          "collapse_min_bit_agreement=1.01 expected), nh = "
          f"{img[1]['nh']} distinct training codes") in message
  assert "raise imgnet.optimizer.lr" in message and "on_collapse='warn'" in message
  warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert any(f"bit agreement with LabNet's codes is only {img[0]['bit_agreement']:.3f} "
             f"(nh {img[0]['nh']}) after round 0" in m for m in warned)
  assert not any("round 0" in m and "degenerate" in m for m in warned)
  # the last ImgNet summary carries the retrieval metrics; the first does not
  assert "map" in img[1] and "map" not in img[0]


def test_unknown_on_collapse_is_refused_at_construction(tmp_path, data):
  config = guard_config()
  config.on_collapse = "bogus"
  with pytest.raises(ValueError, match=r"on_collapse='bogus'; expected one of "
                                       r"\('stop', 'warn'\)"):
    DSEHTrainer(config, data, 8, str(tmp_path / "run"), progress=False)
  assert not (tmp_path / "run").exists()
