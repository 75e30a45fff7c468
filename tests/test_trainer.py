"""The alternating trainer end to end, and resume after ``kill -9``."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dseh_jax import configs
from dseh_jax.data.registry import load_dataset
from dseh_jax.experiment import train_and_evaluate
from dseh_jax.train import DSEHTrainer, make_plan
from scripts import tiny_digits_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = tiny_digits_overrides()


def tiny_config():
  c = configs.get_config("digits")
  c.bits = (8,)
  c.data.kwargs.update(num_query=40, num_train=64, num_retrieval=80)
  c.labnet.hidden_units = 64
  c.labnet.semantic_units = c.imgnet.semantic_units = 16
  c.labnet.batch_size = c.imgnet.batch_size = 16
  c.eval.batch_size = 32
  c.labnet.epochs_per_round = (3, 2)
  c.imgnet.epochs_per_round = (3, 2)
  c.eval.top_k = 20
  c.on_collapse = "warn"           # a few epochs do not fit; the guard has its own tests
  c.checkpoint_min_seconds = 0.0   # every epoch, so that kill tests find their checkpoint
  return c


def test_plan_alternates_labnet_and_imgnet():
  plan = make_plan(tiny_config())
  assert [(p.round, p.network, p.epochs, p.first_epoch) for p in plan] == [
      (0, "labnet", 3, 0), (0, "imgnet", 3, 3), (1, "labnet", 2, 6), (1, "imgnet", 2, 8)]


@pytest.mark.slow
def test_trainer_runs_rounds_and_logs_round_metrics(tmp_path):
  config = tiny_config()
  data = load_dataset(config.data)
  result = DSEHTrainer(config, data, 8, str(tmp_path / "run"), progress=False).run()
  assert result.query_codes.shape == (40, 8)
  assert result.database_codes.shape == (len(data.database), 8)
  assert set(np.unique(result.train_codes)) <= {-1, 1}
  kinds = [h["kind"] for h in result.history]
  assert kinds.count("epoch") == 10
  lab_rounds = [h for h in result.history if h["kind"] == "labnet_round"]
  img_rounds = [h for h in result.history if h["kind"] == "imgnet_round"]
  assert len(lab_rounds) == len(img_rounds) == 2
  for h in lab_rounds:
    assert 1 <= h["nh"] <= 64 and 0.0 <= h["map_l"] <= 1.0 and "collapsed" in h
  for h in img_rounds:
    assert 0.0 <= h["bit_agreement"] <= 1.0
  # The query set is scored once, after the last round (per-round MAP: validation only).
  assert "map" not in img_rounds[0] and 0.0 <= img_rounds[-1]["map"] <= 1.0
  epochs = [h for h in result.history if h["kind"] == "epoch" and h["network"] == "labnet"]
  assert all("nh" in h and "map_l" in h and np.isfinite(h["loss"]) for h in epochs)
  assert 0.0 <= result.metrics["map"] <= 1.0


@pytest.mark.slow
def test_train_and_evaluate_writes_results_and_codes(tmp_path):
  config = tiny_config()
  data = load_dataset(config.data)
  results = train_and_evaluate(config, data, str(tmp_path), progress=False)
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert on_disk["bits"]["8"]["map"] == results["bits"]["8"]["map"]
  assert on_disk["seed"] == 0 and "jax" in on_disk["versions"]
  codes = np.load(tmp_path / "bits8" / "codes.npz")
  np.testing.assert_array_equal(codes["query_ids"], data.query.ids)
  assert codes["database_codes"].shape == (len(data.database), 8)
  # Both tie policies, recomputed here from the saved codes by a numpy brute force.
  q, db = codes["query_codes"], codes["database_codes"]
  dist = (8 - q.astype(int) @ db.astype(int).T) // 2
  rel = (data.query.labels @ data.database.labels.T) > 0
  stable = [ref_ap(rel[i][np.argsort(dist[i], kind="stable")]) for i in range(len(q))]
  r = on_disk["bits"]["8"]
  assert r["map"] == pytest.approx(np.mean(stable), abs=1e-9)
  assert 0.0 <= r["map_tie_aware"] <= 1.0 and "map@20_tie_aware" in r
  assert {"precision_r2", "recall_r2"} <= set(r)
  assert on_disk["dataset"]["overlaps"]["query_in_database"] == 0
  curves = json.loads((tmp_path / "bits8" / "curves.json").read_text())
  assert curves["map"]["stable"] == pytest.approx(r["map"])
  assert len(curves["pr_curve"]["precision"]) == 9
  for name in ("pr_curve.png", "precision_at_n.png", "semantic_pca.png", "semantic.npz",
               "pr_curve.csv", "precision_at_n.json"):
    assert (tmp_path / "bits8" / name).stat().st_size > 0, name
  semantic = np.load(tmp_path / "bits8" / "semantic.npz")
  assert semantic["labnet_features"].shape == semantic["imgnet_features"].shape == (64, 16)
  # A checkpoint of another config is refused, not mixed in.
  config.labnet.loss.s = 0.5
  with pytest.raises(ValueError, match=r"different training config \(labnet\.loss\.s: "
                     r"1\.0 → 0\.5\)"):
    DSEHTrainer(config, data, 8, str(tmp_path / "bits8"), progress=False).run()


def ref_ap(rel_in_order):
  """AP of one ranked relevance list (0 without relevant items)."""
  hits = np.cumsum(rel_in_order)
  ranks = np.arange(1, len(rel_in_order) + 1)
  return float(np.sum(rel_in_order * hits / ranks) / hits[-1]) if hits[-1] else 0.0


def _cli(workdir):
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "train_dseh.py"), "--config",
         "digits", "--config.bits=8", "--workdir", str(workdir), "--no_progress"]
  return cmd + [f"--config.{item}" for item in TINY]


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_codes(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  # The uninterrupted reference run.
  subprocess.run(_cli(tmp_path / "ref"), env=env, check=True, capture_output=True,
                 timeout=600)
  # A run killed with SIGKILL once its third epoch is checkpointed (mid LabNet/ImgNet).
  ckpt = tmp_path / "killed" / "bits8" / "checkpoints"
  proc = subprocess.Popen(_cli(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None:
    steps = [int(p) for p in os.listdir(ckpt) if p.isdigit()] if ckpt.exists() else []
    if steps and max(steps) >= 4:
      proc.send_signal(signal.SIGKILL)
      break
    time.sleep(0.02)
  assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
  assert not (tmp_path / "killed" / "bits8" / "codes.npz").exists()
  resumed = subprocess.run(_cli(tmp_path / "killed"), env=env, check=True,
                           capture_output=True, text=True, timeout=600)
  assert "resuming 8-bit run after epoch" in resumed.stdout
  ref = np.load(tmp_path / "ref" / "bits8" / "codes.npz")
  got = np.load(tmp_path / "killed" / "bits8" / "codes.npz")
  for name in ("train_codes", "query_codes", "database_codes"):
    np.testing.assert_array_equal(got[name], ref[name])
  ref_hist = json.loads((tmp_path / "ref" / "bits8" / "history.json").read_text())
  got_hist = json.loads((tmp_path / "killed" / "bits8" / "history.json").read_text())
  assert [h.get("loss") for h in got_hist] == [h.get("loss") for h in ref_hist]


def test_non_finite_loss_stops_the_run_and_keeps_earlier_checkpoints(tmp_path):
  config = tiny_config()
  config.imgnet.optimizer.name = "sgd"
  config.imgnet.optimizer.clip = 0.0
  config.imgnet.optimizer.lr = 1e30          # diverges in the first ImgNet epoch
  data = load_dataset(config.data)
  with pytest.raises(FloatingPointError, match="imgnet loss became .* round 0"):
    DSEHTrainer(config, data, 8, str(tmp_path / "run"), progress=False).run()
  steps = sorted(int(p) for p in os.listdir(tmp_path / "run" / "checkpoints") if p.isdigit())
  assert steps and max(steps) == 3           # the three LabNet epochs are safe on disk


def test_feature_vectors_with_a_conv_backbone_say_to_set_feature_mode():
  import jax  # pylint: disable=import-outside-toplevel
  from dseh_jax.networks import create_imgnet_state  # pylint: disable=import-outside-toplevel
  with pytest.raises(ValueError, match=r"mini_cnnf.*width 12: set imgnet.backbone=none"):
    create_imgnet_state(tiny_config(), (12,), 8, 10, jax.random.PRNGKey(0))
