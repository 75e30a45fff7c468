"""Loads a script of ``experiments/`` as a module, for tests of its functions."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(name: str):
  """``experiments/<name>.py`` as a fresh module named ``<name>_script``."""
  spec = importlib.util.spec_from_file_location(
      f"{name}_script", os.path.join(ROOT, "experiments", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
