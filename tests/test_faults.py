"""SIGKILL at the named fault points of :mod:`dseh_jax.faults`, then resume: the same codes.

Marked ``fault``: ``pytest -m fault`` runs these tests alone, ``-m "not fault"`` skips them.

Each seed trains a tiny digits run like ``test_trainer.py``'s (8 bits; two rounds of two
LabNet and two ImgNet epochs, 4 steps each; a checkpoint after every epoch) once without
interruption, then once along a chain of kills: the command runs with ``DSEH_FAULT`` set
to the chain's first spec and must die there by SIGKILL, the same command reruns (and
resumes) with the next spec, and so on; a last rerun without ``DSEH_FAULT`` finishes. A
spec counts from the start of its own process: ``imgnet_step:6`` is the sixth ImgNet step
after that rerun resumed. The codes (byte for byte), the history (timings aside) and the
results (MAPs included) must equal the uninterrupted run's, and so must ``semantic.npz``
(both networks' float features): at this size ImgNet's codes barely differ between inputs.

A chain costs about one process per kill, half of a separate run and rerun per kill. The
default suite runs :data:`FULL` (12 kills at all 8 points, inside both networks' phases and
during checkpoint writes) for seed 0 and 3 kills for seeds 1 and 2 (2.5 CPU minutes: 4.5
minutes on 2 cores shared with other jobs); ``DSEH_FAULT_FULL=1`` runs :data:`FULL` for all
three seeds (about 6 minutes there). The runs share the session's persistent XLA compilation
cache (`conftest.py`), and each seed's uninterrupted run is trained once.
"""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from dseh_jax import faults
from scripts import tiny_digits_overrides

pytestmark = pytest.mark.fault

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = tiny_digits_overrides("(2,2)", "(2,2)")
# Epochs 1-2 LabNet round 0, 3-4 ImgNet round 0, 5-6 LabNet round 1, 7-8 ImgNet round 1;
# checkpoint step k after epoch k. The comments give where each kill lands in the chain.
FULL = (
    "labnet_step:2",        # round 0 LabNet, first epoch: nothing saved yet
    "epoch_end:1",          # epoch 1 logged, not saved
    "phase_summary:1",      # round 0 LabNet summary, before step 2 (step 1 on disk)
    "checkpoint_write:1",   # step 2 written by orbax, no checksums: resumes from step 1
    "imgnet_step:6",        # round 0 ImgNet, second epoch (step 3 on disk)
    "checkpoint_saved:1",   # step 4 complete: resumes at a phase boundary
    "labnet_step:6",        # round 1 LabNet, second epoch: resumes mid-phase from step 5
    "imgnet_step:1",        # round 1 ImgNet, first step (step 6 on disk)
    "phase_summary:1",      # the final ImgNet summary (the MAP), before step 8
    "checkpoint_write:1",   # step 8 without checksums: resumes from step 7
    "codes_written:1",      # codes.npz written, results.json not
    "results_written:1",    # results.json written: the last rerun finds the length done
)
SHORT = {
    1: ("checkpoint_write:1",   # the first step, without checksums (loaded unverified)
        "imgnet_step:3",        # round 0 ImgNet, first epoch (step 2 on disk)
        "labnet_step:6"),       # round 1 LabNet, second epoch (step 5 on disk)
    2: ("labnet_step:5",        # round 0 LabNet, second epoch (step 1 on disk)
        "checkpoint_saved:3",   # step 4 complete
        "results_written:1"),
}
FULL_RUN = os.environ.get("DSEH_FAULT_FULL", "") not in ("", "0")


@pytest.fixture(scope="module")
def env():
  """The subprocesses' environment: 2 CPU devices, the session's compilation cache
  (``conftest.py``), no fault."""
  e = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
           JAX_PLATFORMS="cpu")
  e.pop(faults.ENV, None)
  return e


@pytest.fixture(scope="module")
def reference(tmp_path_factory, env):
  """``reference(seed)``: the workdir of an uninterrupted run of ``seed``, trained once per
  module (the kill chains and the damaged-checkpoint test of seed 0 share it)."""
  done = {}

  def get(seed):
    if seed not in done:
      workdir = tmp_path_factory.mktemp(f"ref{seed}")
      ref = run(cli(workdir, seed), env)
      assert ref.returncode == 0, ref.stderr[-3000:]
      done[seed] = workdir
    return done[seed]

  return get


def cli(workdir, seed):
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "train_dseh.py"), "--config",
         "digits", "--config.bits=8", f"--config.seed={seed}", "--workdir", str(workdir),
         "--no_progress"]
  return cmd + [f"--config.{item}" for item in TINY]


def run(cmd, env):
  return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def steps_on_disk(bit_dir):
  ckpt = bit_dir / "checkpoints"
  return sorted(int(p) for p in os.listdir(ckpt) if p.isdigit()) if ckpt.exists() else []


def untimed(entries):
  return [{k: v for k, v in h.items() if "seconds" not in k} for h in entries]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_killed_runs_resume_to_the_same_codes(tmp_path, env, reference, seed):
  chain = FULL if seed == 0 or FULL_RUN else SHORT[seed]
  bit_dir, log = tmp_path / "killed" / "bits8", []
  for spec in chain:
    before = steps_on_disk(bit_dir)
    got = run(cli(tmp_path / "killed", seed), {**env, faults.ENV: spec})
    log.append(f"{spec} (steps on disk before: {before})")
    assert got.returncode == -signal.SIGKILL, (
        f"seed {seed}: {spec} did not kill the run (rc {got.returncode}); chain so far: "
        f"{log}\n{got.stderr[-3000:]}")
    late = spec.split(":")[0] in ("codes_written", "results_written")
    assert (bit_dir / "codes.npz").exists() == late, f"seed {seed}, {spec}: {log}"
  done = run(cli(tmp_path / "killed", seed), env)
  assert done.returncode == 0, done.stderr[-3000:]
  assert_same_run(reference(seed), tmp_path / "killed", f"seed {seed} after the kills {log}")


@pytest.mark.slow
def test_damaged_newest_checkpoint_falls_back_to_the_same_codes(tmp_path, env, reference):
  """One byte flipped in an array file of the newest step: the rerun warns, resumes from
  the step before it and ends as the uninterrupted run does."""
  got = run(cli(tmp_path / "killed", 0), {**env, faults.ENV: "checkpoint_saved:5"})
  assert got.returncode == -signal.SIGKILL, got.stderr[-3000:]
  bit_dir = tmp_path / "killed" / "bits8"
  assert steps_on_disk(bit_dir)[-1] == 5
  data_files = sorted(p for p in (bit_dir / "checkpoints" / "5" / "state").rglob("*")
                      if p.is_file() and "/d/" in str(p))
  target = max(data_files, key=lambda p: p.stat().st_size)   # the largest array chunk
  raw = bytearray(target.read_bytes())
  raw[len(raw) // 2] ^= 0x01
  target.write_bytes(bytes(raw))
  done = run(cli(tmp_path / "killed", 0), env)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "checkpoint 5" in done.stdout and "is damaged" in done.stdout, done.stdout[-3000:]
  assert "falling back to step 4" in done.stdout
  assert (bit_dir / "checkpoints" / "damaged" / "5").exists()
  assert_same_run(reference(0), tmp_path / "killed", "after a damaged step 5")


def assert_same_run(ref_root, got_root, where):
  """History (timings aside), codes.npz, semantic.npz and the results entry are equal."""
  ref_dir, bit_dir = ref_root / "bits8", got_root / "bits8"
  want_h, have_h = (untimed(json.loads((d / "history.json").read_text()))
                    for d in (ref_dir, bit_dir))
  first = next((i for i, (w, h) in enumerate(zip(want_h, have_h)) if w != h), None)
  assert first is None and len(want_h) == len(have_h), (
      f"history differs at entry {first}, {where}: {want_h[first or 0]} != "
      f"{have_h[first or 0]}")
  for npz in ("codes.npz", "semantic.npz"):
    with np.load(ref_dir / npz) as want, np.load(bit_dir / npz) as have:
      assert sorted(have.files) == sorted(want.files), where
      for name in want.files:
        a, b = want[name], have[name]
        same = (a.dtype, a.shape, a.tobytes()) == (b.dtype, b.shape, b.tobytes())
        assert same, f"{npz}: {name} differs, {where}"
  want_r, have_r = (json.loads((p / "results.json").read_text())["bits"]["8"]
                    for p in (ref_root, got_root))
  assert have_r["map"] == want_r["map"], where
  assert untimed([have_r]) == untimed([want_r]), where


@pytest.mark.parametrize("spec", ["nowhere:1", "epoch_end", "epoch_end:0", "epoch_end:x"])
def test_a_bad_spec_names_the_variable(monkeypatch, spec):
  monkeypatch.setenv(faults.ENV, spec)
  with pytest.raises(ValueError, match=faults.ENV):
    faults.reached("epoch_end")


def test_without_the_variable_points_do_nothing(monkeypatch):
  monkeypatch.delenv(faults.ENV, raising=False)
  for point in faults.POINTS * 3:
    assert faults.reached(point) is None


def test_the_nth_visit_of_the_point_kills_the_process():
  code = ("from dseh_jax import faults\n"
          "for i in range(3):\n"
          "  faults.reached('labnet_step')\n"
          "  faults.reached('imgnet_step')\n"
          "  print(i, flush=True)\n")
  env = dict(os.environ, **{faults.ENV: "imgnet_step:2"})
  got = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
  assert got.returncode == -signal.SIGKILL, got.stderr
  assert got.stdout == "0\n"
