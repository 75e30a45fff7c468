"""The scripts' command lines on ``ml_collections.config_flags`` (absl flags).

``--config`` is a config file with its argument (``dseh_jax/configs/coco.py:method=dpsh``;
the short names of :data:`dseh_jax.configs.NAMES` stand for the package's files, e.g.
``--config digits:choices=code``), and ``--config.FIELD=VALUE`` overrides one field
(``--config.imgnet.optimizer.lr=3e-4``, ``--config.bits=16,32``,
``--config.data.kwargs.data_dir=/data/NUS-WIDE``). Each call parses into a fresh
``FlagValues``, so a script's ``main(argv)`` can run many times in one process (tests).
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import flags
from ml_collections import config_flags

from dseh_jax import configs

CONFIG_HELP = ("config file and argument, e.g. digits, nuswide21:method=dpsh or "
               "path/to/config.py:choices=code; --config.FIELD=VALUE overrides a field")
_FAILURES = (flags.Error, KeyError, ValueError, TypeError, AttributeError, OSError)


def _expand(argv: Sequence[str]) -> list[str]:
  """``--config NAME[:ARG]`` → the package's config file for the short names."""
  out = list(argv)
  for i, arg in enumerate(out):
    if arg.startswith("--config="):
      out[i] = "--config=" + configs.config_file(arg[len("--config="):])
    elif arg == "--config" and i + 1 < len(out):
      out[i + 1] = configs.config_file(out[i + 1])
  return out


def _one_line(error: BaseException, argv: Sequence[str]) -> str:
  """The last line of ``error`` (config_flags wraps a config file's error in its
  traceback); an unknown field names the override that asked for it."""
  if isinstance(error, KeyError) and error.args:
    field = str(error.args[0]).splitlines()[0].strip("'\"")
    asked = [a.split("=")[0] for a in argv if a.startswith("--config.") and
             field in a.split("=")[0].split(".")]
    return f"{(asked or ['--config'])[0]}: the config has no field {field!r}"
  lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
  return lines[-1] if lines else type(error).__name__


def parse(argv: Sequence[str] | None, define: Callable[[flags.FlagValues], None], *,
          description: str, default_config: str = "digits") -> flags.FlagValues:
  """The flags that ``define(flag_values)`` declares plus ``--config``, parsed from ``argv``
  (without the program name; ``None``: ``sys.argv[1:]``). ``--help`` prints the flags and
  exits 0; a bad flag, config file or override raises ``SystemExit`` with one line."""
  argv = [sys.argv[0] if sys.argv else "prog",
          *_expand(sys.argv[1:] if argv is None else argv)]
  values = flags.FlagValues()
  try:
    define(values)
    config_flags.DEFINE_config_file(
        "config", configs.config_file(default_config), CONFIG_HELP, flag_values=values,
        lock_config=False, accept_new_attributes=True, sys_argv=argv)
    if any(a in ("--help", "-h", "--helpfull") for a in argv[1:]):
      print(f"{description}\n\n{values.get_help()}")
      raise SystemExit(0)
    extra = values(argv)[1:]
    if extra:
      raise ValueError(f"unexpected arguments {extra}: every option is a --flag")
    _ = values.config.method            # a config file that failed to load fails here
  except _FAILURES as e:
    raise SystemExit(_one_line(e, argv)) from None
  return values


def apply_overrides(config, overrides: Sequence[str]):
  """``config`` with ``["FIELD=VALUE", ...]`` applied as config_flags applies
  ``--config.FIELD=VALUE`` (same parsing and type checks); returns it."""
  argv = ["prog", *(f"--config.{item}" for item in overrides)]
  values = flags.FlagValues()
  try:
    config_flags.DEFINE_config_dict("config", config, flag_values=values,
                                    lock_config=False, accept_new_attributes=True,
                                    sys_argv=argv)
    values(argv)
    return values.config
  except _FAILURES as e:
    raise SystemExit(_one_line(e, argv).replace("--config.", "--set ")) from None
