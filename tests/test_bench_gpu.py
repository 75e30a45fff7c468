"""``experiments/bench_gpu.py --quick`` on CPU: every step in both compute dtypes, FLOPs
from XLA's cost analysis, and consistent throughput numbers."""
import json
import pytest

from scripts import load_script


@pytest.mark.slow
def test_gpu_benchmark_runs_every_case_on_cpu(tmp_path):
  out = tmp_path / "gpu.json"
  assert load_script("bench_gpu").main(["--quick", "--out", str(out)]) == 0
  got = json.loads(out.read_text())
  assert [(r["step"], r["dtype"]) for r in got["rows"]] == [
      ("imgnet", "float32"), ("imgnet", "bfloat16"), ("features", "float32"),
      ("features", "bfloat16"), ("labnet", "float32")]
  for r in got["rows"]:
    assert r["gflop_per_step"] > 0 and r["ms_per_step"] > 0
    assert abs(r["samples_per_s"] - r["batch"] / (r["ms_per_step"] / 1e3)) < 1e-6 * r[
        "samples_per_s"]
    assert abs(r["fraction_of_peak"] - r["tflops"] * 1e12 / got["peak_flops"][r["dtype"]]) < 1e-9
