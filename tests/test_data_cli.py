"""End to end: ``train_dseh.py --config nuswide21 --config.data.kwargs.data_dir=<NUS-WIDE tree>`` with CNN-F at
224×224 on a tiny fixture (SPEC §4, §6), and ``prepare_dataset.py`` on the same tree."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fixtures_datasets as fx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = ("data.kwargs.num_classes=4", "data.kwargs.query_per_class=2",
        "data.kwargs.train_per_class=3", "labnet.epochs_per_round=(1,)",
        "imgnet.epochs_per_round=(1,)", "labnet.batch_size=4", "imgnet.batch_size=4",
        "labnet.hidden_units=64", "eval.batch_size=8", "eval.top_k=10", "on_collapse=warn")


@pytest.mark.slow
def test_train_cli_on_a_nus_wide_tree(tmp_path):
  data_dir = tmp_path / "NUS-WIDE"
  fix = fx.write_nus_wide(str(data_dir), np.random.default_rng(0), num_images=40, tie=False)
  labelled = sum(1 for i in range(40)
                 if any(fix["labels"][c][i] for c in sorted(
                     fix["concepts"], key=lambda c: (-fix["labels"][c].sum(), c))[:4]))
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "train_dseh.py"), "--config",
         "nuswide21", f"--config.data.kwargs.data_dir={data_dir}", "--config.bits=16",
         "--config.seed=1", "--workdir", str(tmp_path / "run"), "--no_progress"]
  cmd += [f"--config.{item}" for item in TINY]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  assert results["dataset"]["name"] == "nus_wide21"
  assert results["dataset"]["query"] == 8 and results["dataset"]["train"] == 12
  assert results["dataset"]["database"] == labelled - 8
  assert 0.0 <= results["bits"]["16"]["map"] <= 1.0
  codes = np.load(tmp_path / "run" / "bits16" / "codes.npz")
  assert codes["query_codes"].shape == (8, 16)
  assert not set(codes["query_ids"].tolist()) & set(codes["train_ids"].tolist())
  assert "overlaps by id" in proc.stdout


def test_prepare_cli(tmp_path):
  fx.write_nus_wide(str(tmp_path / "manual"), np.random.default_rng(1), num_images=40,
                    tie=False)
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "prepare_dataset.py"),
         "--dataset", "nus_wide21", "--manual_dir", str(tmp_path / "manual"),
         "--data_dir", str(tmp_path / "tfds"), "--option", "num_classes=3",
         "--option", "query_per_class=1", "--option", "train_per_class=2"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "--config.data.name=tfds --config.data.kwargs.builder=nus_wide21" in proc.stdout
  bad = subprocess.run(cmd[:5] + [str(tmp_path / "nothing"), "--data_dir",
                                  str(tmp_path / "tfds2")],
                       capture_output=True, text=True, timeout=300)
  assert bad.returncode == 1 and "manual_dir is missing or empty" in bad.stderr
  assert "Imagelist.txt" in bad.stderr
