"""One-call accelerator benchmark (under 8 minutes): the training steps in float32 and
bfloat16, with their FLOPs and the fraction of the measured matmul peak.

    python experiments/bench_gpu.py --out runs/bench_gpu.json     # on the GPU machine
    python experiments/bench_gpu.py --quick                       # tiny shapes (CPU smoke)

Synthetic inputs (``bench_train.make_data``); the ``nuswide21`` recipe at 32 bits with a
bank of 10,500 training points. For each step (ImgNet with CNN-F on 224² images, ImgNet
in feature mode on 4096-d inputs, LabNet) and compute dtype (``imgnet.compute_dtype``;
parameters, outputs and losses stay float32; LabNet is float32 only) it prints ms/step
(median of ``--steps`` after the compiling call), samples/s, the step's FLOPs (XLA's cost
analysis of the compiled step) and achieved FLOP/s over the peak of a large matmul
measured in the same dtype in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def matmul_peak(dtype, size: int, repeats: int = 5) -> float:
  """FLOP/s of a ``size × size`` matmul in ``dtype`` (best of ``repeats``)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32).astype(dtype)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = np.inf
  for _ in range(repeats):
    t0 = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2.0 * size ** 3 / best


def step_flops(setup) -> float:
  """XLA's FLOP count of one compiled step (0 when the backend gives none)."""
  import functools  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  fn, kw, state, bank, batch, key = setup
  compiled = jax.jit(functools.partial(fn, axis_name=None, **kw)).lower(
      state, bank, batch, key).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float((cost or {}).get("flops", 0.0))


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="tiny shapes, 2 steps")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--imgnet_batch", type=int, default=128)
  p.add_argument("--out", default="")
  args = p.parse_args(argv)
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import bench_train as bt  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from dseh_jax import configs  # pylint: disable=import-outside-toplevel
  args.seed, args.bits = 0, 32
  args.bank = 256 if args.quick else 10500
  steps = 2 if args.quick else args.steps
  peak = {d: matmul_peak(getattr(jnp, d), 512 if args.quick else 8192)
          for d in ("float32", "bfloat16")}
  cases = {"imgnet": (8 if args.quick else args.imgnet_batch,
                      (64, 64, 3) if args.quick else (224, 224, 3)),
           "features": (16 if args.quick else 128, (64,) if args.quick else (4096,)),
           "labnet": (8 if args.quick else 32, (bt.NUM_CLASSES,))}
  rows = []
  for step, (batch, shape) in cases.items():
    for dtype in (("float32",) if step == "labnet" else ("float32", "bfloat16")):
      config = configs.get_config("nuswide21")
      config.imgnet.compute_dtype = dtype
      setup = bt.jax_setup(step, bt.make_data(step, batch, shape, args), shape, config, args)
      first, times = bt.timed(bt.jax_step(setup, 1), steps)
      ms = statistics.median(times)
      flops = step_flops(setup)
      achieved = flops / (ms / 1e3)
      rows.append({"step": step, "dtype": dtype, "batch": batch, "first_call_s": first,
                   "ms_per_step": ms, "samples_per_s": batch / (ms / 1e3),
                   "gflop_per_step": flops / 1e9, "tflops": achieved / 1e12,
                   "fraction_of_peak": achieved / peak[dtype]})
  device = jax.devices()[0]
  print(f"\n{device.platform} {getattr(device, 'device_kind', '')}; jax {jax.__version__}; "
        f"matmul peak float32 {peak['float32'] / 1e12:.1f} TFLOP/s, bfloat16 "
        f"{peak['bfloat16'] / 1e12:.1f} TFLOP/s\n")
  print("| step | compute | batch | ms/step | samples/s | GFLOP/step | TFLOP/s | of peak |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['step']} | {r['dtype']} | {r['batch']} | {r['ms_per_step']:.2f} | "
          f"{r['samples_per_s']:.0f} | {r['gflop_per_step']:.2f} | {r['tflops']:.2f} | "
          f"{r['fraction_of_peak']:.0%} |")
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump({"device": f"{device.platform} {getattr(device, 'device_kind', '')}",
                 "peak_flops": peak, "rows": rows}, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
