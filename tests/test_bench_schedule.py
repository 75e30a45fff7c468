"""experiments/bench_schedule.py --quick: the whole schedule on NUS-shaped data, timed."""
import json

import numpy as np
import pytest

from dseh_jax.data import synthetic
from scripts import load_script


def test_nus_shaped_labels_follow_the_frequencies():
  labels = synthetic.nus_shaped_labels(10_500, seed=0)
  assert labels.shape == (10_500, 21) and labels.any(axis=1).all()
  freq = labels.mean(axis=0)
  assert np.argmax(freq) == 0 and freq[0] > 3 * freq[-1]   # skewed like NUS-WIDE-21
  np.testing.assert_array_equal(labels, synthetic.nus_shaped_labels(10_500, seed=0))


@pytest.mark.slow
def test_bench_schedule_quick_times_every_phase(tmp_path):
  bench = load_script("bench_schedule")
  assert bench.main(["--quick", "--bits", "16", "--out", str(tmp_path)]) == 0
  report = json.loads((tmp_path / "bench_schedule.json").read_text())
  assert report["shapes"] == {"train": 1050, "query": 210, "database": 5000, "dim": 256}
  assert sorted(report["phase_seconds"]) == ["imgnet round 0", "imgnet round 1",
                                             "labnet round 0", "labnet round 1"]
  assert report["end_to_end_seconds"] >= report["training_seconds"] > 0
  assert 0.0 <= report["map"] <= 1.0
  assert "end to end" in (tmp_path / "bench_schedule.md").read_text()
  # Run again into the same --out: the trainer would resume the finished run, so the
  # benchmark refuses before it builds any data.
  with pytest.raises(SystemExit, match="holds an earlier run"):
    bench.main(["--quick", "--bits", "16", "--out", str(tmp_path)])


def test_bench_schedule_epochs_are_the_configs_or_the_codes():
  bench = load_script("bench_schedule")
  config = bench.make_config(bench.parse_args(["--out", "x"]))
  code = bench.make_config(bench.parse_args(["--out", "x", "--epochs", "code"]))
  assert tuple(config.imgnet.epochs_per_round) == (100, 100, 100)      # the recipe
  assert tuple(code.imgnet.epochs_per_round) == (40, 40, 40)           # SPEC: NUS-WIDE
  assert tuple(code.labnet.epochs_per_round) == tuple(config.labnet.epochs_per_round) == (
      30, 20, 10)
  assert code.imgnet.optimizer.lr == config.imgnet.optimizer.lr        # only the epochs
