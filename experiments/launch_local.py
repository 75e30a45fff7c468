"""Starts a multi-process run on this machine: N processes with a local coordinator.

    python experiments/launch_local.py --processes 2 --devices_per_process 1 -- \\
        experiments/train_dseh.py --config digits --workdir runs/digits_2p

Every process runs the given script with its arguments, with ``DSEH_COORDINATOR``
(``localhost:<free port>``), ``DSEH_NUM_PROCESSES`` and ``DSEH_PROCESS_ID`` set
(:mod:`dseh_jax.distributed`) and, on CPU, ``--xla_force_host_platform_device_count`` in
``XLA_FLAGS``. Process 0's output is shown; the others' goes to ``--log_dir`` when given.
The exit status is the first non-zero one (a killed process stops the others).
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def process_env(index: int, count: int, port: int, devices: int) -> dict[str, str]:
  env = dict(os.environ, DSEH_COORDINATOR=f"localhost:{port}",
             DSEH_NUM_PROCESSES=str(count), DSEH_PROCESS_ID=str(index))
  if devices:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={devices}").strip()
  return env


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--processes", type=int, default=2)
  p.add_argument("--devices_per_process", type=int, default=0,
                 help="CPU devices each process simulates (0: the platform's own)")
  p.add_argument("--log_dir", default="", help="folder for process{i}.log of processes ≥ 1")
  p.add_argument("command", nargs=argparse.REMAINDER,
                 help="-- SCRIPT ARGS...: the Python script every process runs")
  args = p.parse_args(argv)
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if not command or args.processes < 1:
    raise SystemExit("expected --processes N (≥ 1) and -- SCRIPT ARGS...")
  port = free_port()
  procs = []
  for i in range(args.processes):
    out = None
    if i and args.log_dir:
      os.makedirs(args.log_dir, exist_ok=True)
      out = open(os.path.join(args.log_dir, f"process{i}.log"), "w", encoding="utf-8")
    elif i:
      out = subprocess.DEVNULL
    procs.append(subprocess.Popen([sys.executable, *command], stdout=out, stderr=out,
                                  env=process_env(i, args.processes, port,
                                                  args.devices_per_process)))
  status = 0
  while any(pr.poll() is None for pr in procs):
    failed = [pr.returncode for pr in procs if pr.returncode not in (None, 0)]
    if failed:                                  # the others would wait for it forever
      status = failed[0]
      for pr in procs:
        if pr.poll() is None:
          pr.kill()
    time.sleep(0.2)
  codes = [pr.returncode for pr in procs]
  return status or next((c for c in codes if c), 0)


if __name__ == "__main__":
  sys.exit(main())
