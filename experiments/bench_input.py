"""Decode + resize throughput of the image input pipeline, one thread vs the thread pool.

    python experiments/bench_input.py --num_images 256 --threads 0

Writes ``--num_images`` synthetic JPEGs (500×375 by default, the size of a typical Flickr
image in NUS-WIDE) to a temporary folder, then times ``ImageArray`` reading them all
(file read, JPEG decode, bilinear resize to 224×224 [or 256 + centre crop], mean
subtraction) with one thread and with the pool, and prints a table (SPEC §4, §6).
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import PIL
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.dirname(HERE) not in sys.path:
  sys.path.insert(0, os.path.dirname(HERE))

from dseh_jax import input_pipeline as ip  # pylint: disable=wrong-import-position


def synthetic_jpeg(rng: np.random.Generator, width: int, height: int) -> bytes:
  """A photo-like JPEG: smooth colour gradients plus texture noise (quality 90)."""
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  base = np.stack([np.sin(x / rng.uniform(20, 80) + rng.uniform(0, 6)),
                   np.cos(y / rng.uniform(20, 80) + rng.uniform(0, 6)),
                   np.sin((x + y) / rng.uniform(30, 90))], axis=-1)
  pixels = 128 + 80 * base + rng.normal(0, 12, (height, width, 3))
  buf = io.BytesIO()
  Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
  return buf.getvalue()


def throughput(images: ip.ImageArray, repeats: int) -> float:
  """Median images/s of decoding every image of ``images`` (one untimed warm-up pass)."""
  everything = np.arange(len(images))
  images[everything[:8]]
  rates = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    images[everything]
    rates.append(len(images) / (time.perf_counter() - t0))
  return statistics.median(rates)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--num_images", type=int, default=256)
  p.add_argument("--width", type=int, default=500)
  p.add_argument("--height", type=int, default=375)
  p.add_argument("--threads", type=int, default=0, help="pool size (0: CPU count)")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  cpus = os.cpu_count() or 1
  pool = args.threads or cpus
  rng = np.random.default_rng(args.seed)
  with tempfile.TemporaryDirectory() as folder:
    names = []
    for i in range(args.num_images):
      name = f"img{i:05d}.jpg"
      with open(os.path.join(folder, name), "wb") as f:
        f.write(synthetic_jpeg(rng, args.width, args.height))
      names.append(name)
    mean_kb = sum(os.path.getsize(os.path.join(folder, n)) for n in names) / len(names) / 1024
    files = ip.FileBytes(folder, names)
    rows = []
    for label, resize_to in (("resize 224", 0), ("resize 256, crop 224", 256)):
      one = throughput(ip.ImageArray(files, resize_to=resize_to, num_threads=1), args.repeats)
      many = throughput(ip.ImageArray(files, resize_to=resize_to, num_threads=pool),
                        args.repeats)
      rows.append((label, one, many))
  print(f"machine: {cpus} CPUs, {platform.platform()}, {platform.processor() or '?'}")
  print(f"versions: python {platform.python_version()}, Pillow {PIL.__version__}, "
        f"numpy {np.__version__}")
  print(f"data: {args.num_images} synthetic JPEGs {args.width}x{args.height} "
        f"(mean {mean_kb:.0f} KiB), median of {args.repeats} passes")
  print()
  print(f"| pipeline | 1 thread (img/s) | {pool} threads (img/s) | ratio |")
  print("|---|---|---|---|")
  for label, one, many in rows:
    print(f"| {label} | {one:.0f} | {many:.0f} | {many / one:.2f} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
