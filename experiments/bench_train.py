"""Benchmark: DSEH's three training steps in JAX, on 1 and N devices, against PyTorch.

    pip install -e '.[bench]'                            # PyTorch (optional: else JAX only)
    python experiments/bench_train.py --out bench_train.json          # 1 and 2 devices
    python experiments/bench_train.py --quick --out runs/bench_quick.json   # tiny shapes, 3 steps

Steps, built from the ``nuswide21`` recipe config (32 bits, 21 labels, a bank of 10,500
training points):

* ``imgnet``: ImgNet with CNN-F on 224×224 images, batch 32 (random flips, dropout);
* ``features``: feature-mode ImgNet on 4096-d inputs, batch 128;
* ``labnet``: LabNet, batch 32 (the batch's bank rows written before the loss).

JAX runs them as a user does: ``jax.jit`` of the public step with ``axis_name=None`` on one
device, and ``train_steps.pmap_step`` over all local devices (``--devices N`` on CPU: N
simulated devices, XLA_FLAGS set here before JAX is imported). PyTorch runs
``experiments/torch_reference.py`` on the CPU: eager, a thread per core, in a child process
of this run with glibc's default malloc (``DSEH_MALLOC_TOP_PAD=0``), as a PyTorch user has
it; JAX runs in this process, which never imports PyTorch, with ``dseh_jax``'s
(:mod:`dseh_jax.host_memory`). The two must not share a process: each one's allocations
change the other's speed through glibc (measured: PyTorch's CNN-F step 1.25 → 1.72 s with
the slack that JAX's steps need; JAX's steps faster with PyTorch imported).
The first call (trace + compile + one step; PyTorch: its first step) is timed apart from
``--steps`` timed steps, each waited for (``block_until_ready``). ms/step is the median;
"JAX/PyTorch" is PyTorch's median over JAX's (>1: JAX faster). The batch stays on the
devices: the timings are the step alone, without an input pipeline.
"""
from __future__ import annotations

import argparse
import functools
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

STEPS = ("imgnet", "features", "labnet")
NUM_CLASSES = 21


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="", help="write the results to this JSON file")
  p.add_argument("--devices", type=int, default=2,
                 help="devices of the pmap run (CPU: simulated with XLA_FLAGS)")
  p.add_argument("--steps", type=int, default=0, help="timed steps (0: 20, --quick 3)")
  p.add_argument("--only", nargs="+", choices=STEPS, default=list(STEPS))
  p.add_argument("--bits", type=int, default=32)
  p.add_argument("--bank", type=int, default=0, help="training points (0: 10,500)")
  p.add_argument("--quick", action="store_true",
                 help="tiny shapes (64×64 images, 64-d features, small batches and bank)")
  p.add_argument("--no_torch", action="store_true", help="skip PyTorch")
  p.add_argument("--torch_only", action="store_true",
                 help="PyTorch rows only, written to --out (the child process of a run)")
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  args.steps = args.steps or (3 if args.quick else 20)
  args.bank = args.bank or (256 if args.quick else 10500)
  return args


def shapes(args) -> dict[str, dict[str, Any]]:
  """Per step: global batch and the shape of one input (labels for LabNet)."""
  q = args.quick
  return {"imgnet": dict(batch=8 if q else 32, input=(64, 64, 3) if q else (224, 224, 3)),
          "features": dict(batch=16 if q else 128, input=(64,) if q else (4096,)),
          "labnet": dict(batch=8 if q else 32, input=(NUM_CLASSES,))}


def make_data(step: str, batch: int, input_shape, args) -> dict[str, np.ndarray]:
  """Random bank and batch (numpy, shared by JAX and PyTorch); images NHWC."""
  rng = np.random.default_rng(args.seed)
  n = args.bank
  labels = (rng.random((n, NUM_CLASSES)) < 0.1).astype(np.float32)
  labels[np.arange(n), rng.integers(0, NUM_CLASSES, n)] = 1.0
  index = rng.choice(n, batch, replace=False).astype(np.int32)
  if step == "labnet":                      # round 0: buffers of N(0, 1) noise (SPEC §3)
    semantic = rng.standard_normal((n, 512))
    codes = rng.standard_normal((n, args.bits))
    inputs = labels[index]
  else:                                     # LabNet's features and {0, 1} codes
    semantic = np.maximum(rng.standard_normal((n, 512)), 0.0)
    codes = (rng.random((n, args.bits)) < 0.5)
    inputs = rng.standard_normal((batch,) + tuple(input_shape))
  f32 = lambda x: np.asarray(x, np.float32)
  return dict(semantic=f32(semantic), codes=f32(codes), labels=labels, index=index,
              inputs=f32(inputs), batch_labels=labels[index])


def timed(call: Callable[[], None], steps: int) -> tuple[float, list[float]]:
  """``(first call in s, [ms of each of the next steps])``."""
  t0 = time.perf_counter()
  call()
  first = time.perf_counter() - t0
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    call()
    times.append(1e3 * (time.perf_counter() - t0))
  return first, times


def jax_setup(step: str, data, input_shape, config, args):
  """``(step_fn, static kwargs, state, bank, batch, key)`` of one JAX step (on the host)."""
  import jax  # pylint: disable=import-outside-toplevel
  from dseh_jax import networks  # pylint: disable=import-outside-toplevel
  from dseh_jax import train_steps as ts  # pylint: disable=import-outside-toplevel

  key = jax.random.PRNGKey(args.seed)
  if step == "labnet":
    state = networks.create_labnet_state(config, NUM_CLASSES, args.bits, args.bank, key)
    fn, kw = ts.labnet_train_step, dict(loss_kwargs=networks.labnet_loss_kwargs(config))
  else:
    config.imgnet.backbone = "cnnf" if step == "imgnet" else "none"
    state = networks.create_imgnet_state(config, tuple(input_shape), args.bits, args.bank, key)
    fn, kw = ts.imgnet_train_step, dict(loss_kwargs=networks.imgnet_loss_kwargs(config))
    if step == "imgnet":
      kw.update(flip=bool(config.imgnet.random_flip),
                max_shift=int(config.imgnet.random_shift))
  bank = (ts.LabNetBuffers if step == "labnet" else ts.LabNetTargets)(
      data["semantic"], data["codes"], data["labels"])
  batch = {"inputs": data["inputs"], "labels": data["batch_labels"], "index": data["index"]}
  return fn, kw, state, bank, batch, key


def jax_step(setup, devices: int) -> Callable[[], None]:
  """A callable running one JAX step: ``jax.jit`` on 1 device, else ``pmap_step``; state
  and bank donated, as the trainer runs them (PyTorch updates them in place too)."""
  import jax  # pylint: disable=import-outside-toplevel
  from dseh_jax import train_steps as ts  # pylint: disable=import-outside-toplevel

  fn, kw, state, bank, batch, key = setup
  if devices == 1:
    fn = jax.jit(functools.partial(fn, axis_name=None, **kw), donate_argnums=(0, 1))
    carry = list(jax.device_put(jax.tree.map(np.array, (state, bank))))  # donated: copies
    batch, rng = jax.device_put((batch, key))
  else:
    fn = ts.pmap_step(fn, donate=True, **kw)
    carry = list(ts.replicate((state, bank)))
    rng = ts.replicate(key)
    batch = jax.pmap(lambda b: b)(ts.shard_batch(batch, devices))

  def call():
    carry[0], carry[1], metrics = fn(carry[0], carry[1], batch, rng)
    jax.block_until_ready((carry, metrics))

  return call


def torch_step(step: str, data, input_shape, config, args):
  """A callable running one PyTorch step of ``experiments/torch_reference.py``."""
  import torch  # pylint: disable=import-outside-toplevel
  from dseh_jax import models, networks  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import torch_reference as tr  # pylint: disable=import-outside-toplevel

  torch.manual_seed(args.seed)
  t = lambda x: torch.tensor(np.ascontiguousarray(x))    # a copy: the bank is written in place
  bank = tr.Bank(t(data["semantic"]), t(data["codes"]), t(data["labels"]))
  labels, index = t(data["batch_labels"]), t(data["index"]).long()
  if step == "labnet":
    c = config.labnet
    model = tr.LabNet(NUM_CLASSES, args.bits, c.hidden_units, c.semantic_units)
    opt = tr.make_adam(model, c.optimizer.lr, c.optimizer.lr_mult_pretrained,
                       c.optimizer.lr_mult_new)
    kw = networks.labnet_loss_kwargs(config)
    return lambda: tr.labnet_step(model, opt, bank, labels, index, kw)
  c = config.imgnet
  images = step == "imgnet"
  model = tr.ImgNet(args.bits, spec=models.CNNF if images else None,
                    image_size=input_shape[0], in_features=input_shape[0],
                    semantic_units=c.semantic_units, hash_from_pre_relu=c.hash_from_pre_relu,
                    dropout_rate=c.dropout_rate,
                    feature_dropout=0.0 if images else c.feature_dropout)
  opt = tr.make_adam(model, c.optimizer.lr, c.optimizer.lr_mult_pretrained,
                     c.optimizer.lr_mult_new)
  inputs = t(data["inputs"].transpose(0, 3, 1, 2) if images else data["inputs"])
  kw = networks.imgnet_loss_kwargs(config)
  flip = images and bool(c.random_flip)
  return lambda: tr.imgnet_step(model, opt, bank, inputs, labels, index, kw, flip=flip)


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def versions(torch_ok: bool) -> dict[str, str]:
  out = {"python": platform.python_version()}
  for name in ("jax", "jaxlib", "flax", "optax", "numpy") + (("torch",) if torch_ok else ()):
    out[name] = importlib.metadata.version(name)
  return out


def row(step, impl, devices, batch, first, times) -> dict[str, Any]:
  ms = statistics.median(times)
  return dict(step=step, impl=impl, devices=devices, batch=batch, first_call_s=first,
              ms_per_step=ms, samples_per_s=1e3 * batch / ms, step_ms=times)


def table(rows, shape) -> str:
  """The Markdown table; JAX rows carry PyTorch's ms/step over theirs."""
  lines = ["| step | input | implementation | devices | batch | first call (s) | ms/step | "
           "samples/s | JAX/PyTorch |", "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    ratio = r.get("jax_over_torch")
    lines.append(
        f"| {r['step']} | {'×'.join(map(str, shape[r['step']]['input']))} | {r['impl']} | "
        f"{r['devices']} | {r['batch']} | {r['first_call_s']:.2f} | {r['ms_per_step']:.1f} "
        f"| {r['samples_per_s']:.1f} | {'—' if ratio is None else f'{ratio:.2f}×'} |")
  return "\n".join(lines)


def torch_rows(args, shape) -> list[dict[str, Any]]:
  """PyTorch's rows, measured in this process (``--torch_only``)."""
  import torch  # pylint: disable=import-outside-toplevel
  from dseh_jax import configs  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(os.cpu_count() or 1)
  rows = []
  for step in args.only:
    b, input_shape = shape[step]["batch"], shape[step]["input"]
    call = torch_step(step, make_data(step, b, input_shape, args), input_shape,
                      configs.get_config("nuswide21"), args)
    rows.append(row(step, "pytorch", 1, b, *timed(call, args.steps)))
  return rows


def torch_rows_in_child(argv) -> tuple[list[dict[str, Any]], Any]:
  """``(rows, threads)`` from a child ``--torch_only`` run with glibc's default malloc;
  ``([], None)`` when PyTorch is not installed."""
  import json  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import tempfile  # pylint: disable=import-outside-toplevel
  try:
    importlib.metadata.version("torch")
  except importlib.metadata.PackageNotFoundError:
    print("PyTorch is not installed (pip install -e '.[bench]'): JAX rows only")
    return [], None
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "torch.json")
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--torch_only", "--out", out]
    env = {**os.environ, "DSEH_MALLOC_TOP_PAD": "0"}
    subprocess.run(cmd, env=env, check=True)
    with open(out, encoding="utf-8") as f:
      result = json.load(f)
  return result["rows"], result["machine"]["torch_threads"]


def _without_out(argv: list[str]) -> list[str]:
  """``argv`` less its ``--out`` option (the child writes its own file)."""
  out, skip = [], False
  for arg in argv:
    if skip or arg == "--out" or arg.startswith("--out="):
      skip = arg == "--out"
      continue
    out.append(arg)
  return out


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  args = parse_args(argv)
  shape = shapes(args)
  if args.torch_only:                        # the child: PyTorch only, no JAX step
    import torch  # pylint: disable=import-outside-toplevel
    from dseh_jax.atomic_io import write_json  # pylint: disable=import-outside-toplevel
    rows = torch_rows(args, shape)
    write_json(args.out, dict(machine={"torch_threads": torch.get_num_threads()}, rows=rows))
    return 0
  torch_by_step, torch_threads = {}, None
  if not args.no_torch:
    torch_list, torch_threads = torch_rows_in_child(_without_out(argv))
    torch_by_step = {r["step"]: r for r in torch_list}
  if args.devices > 1 and "jax" not in sys.modules:
    from dseh_jax.host_devices import simulate_cpu_devices  # pylint: disable=import-outside-toplevel
    simulate_cpu_devices(args.devices)
  # JAX is imported only after XLA_FLAGS is final.
  import jax  # pylint: disable=import-outside-toplevel
  from dseh_jax import configs  # pylint: disable=import-outside-toplevel
  from dseh_jax.atomic_io import write_json  # pylint: disable=import-outside-toplevel

  torch_ok = bool(torch_by_step)
  n_dev = jax.local_device_count()
  if n_dev != args.devices:
    print(f"note: JAX has {n_dev} local devices (asked for {args.devices}); the pmap rows "
          f"use all {n_dev}")
  rows = []
  for step in args.only:
    b, input_shape = shape[step]["batch"], shape[step]["input"]
    data = make_data(step, b, input_shape, args)
    step_rows = [torch_by_step[step]] if step in torch_by_step else []
    setup = jax_setup(step, data, input_shape, configs.get_config("nuswide21"), args)
    for devices, impl in ((1, "jax.jit"), (n_dev, "pmap_step"))[:1 + (n_dev > 1)]:
      step_rows.append(row(step, impl, devices, b, *timed(jax_step(setup, devices),
                                                          args.steps)))
    if step in torch_by_step:
      for r in step_rows[1:]:
        r["jax_over_torch"] = step_rows[0]["ms_per_step"] / r["ms_per_step"]
    rows += step_rows
    print(f"{step}: done", flush=True)

  machine = dict(cpu=cpu_model(), cores=os.cpu_count(),
                 usable_cores=len(os.sched_getaffinity(0)),
                 system=f"{platform.system()} {platform.release()}",
                 jax_backend=jax.default_backend(), jax_devices=n_dev,
                 torch_threads=torch_threads)
  vers = versions(torch_ok)
  size = "--quick: tiny shapes" if args.quick else "full size"
  print(f"\nDSEH training steps, JAX vs PyTorch ({size}; nuswide21 recipe, {args.bits} bits, "
        f"bank {args.bank:,}, median of {args.steps} steps)")
  print(f"machine: {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} "
        f"usable), {machine['system']}; JAX {machine['jax_backend']} with {n_dev} device(s); "
        f"torch threads {machine['torch_threads']} (its own process)")
  print("versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
  print()
  print(table(rows, shape))
  if args.out:
    write_json(args.out, dict(machine=machine, versions=vers, args=vars(args), rows=rows))
    print(f"\nwrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
