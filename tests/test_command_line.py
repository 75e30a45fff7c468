"""The command line on ``ml_collections.config_flags``: config files composed from a dataset,
a method and a variant; typed ``--config.FIELD=VALUE`` overrides; unknown fields refused."""
import pytest

from dseh_jax import command_line, configs, methods
from dseh_jax.configs import compose, variants
from dseh_jax.configs.validation import problems


def parse(*argv):
  return command_line.parse(list(argv), lambda values: None, description="test")


def test_config_argument_composes_dataset_method_and_variant():
  got = parse("--config", "nuswide21:method=dpsh,choices=code").config
  want = methods.configure(configs.import_module("nuswide21").dataset_config("code"), "dpsh")
  assert got.to_dict() == want.to_dict()
  ablated = parse("--config", "digits:variant=SS").config
  assert ablated.to_dict() == variants.apply_variant(configs.get_config("digits"),
                                                     "SS").to_dict()
  assert ablated.labnet.loss.weights.j1 == 0.0 and ablated.imgnet.loss.weights.j1 == 0.0


def test_short_names_and_paths_are_the_same_file(tmp_path):
  path = configs.config_file("coco")
  assert path.endswith("dseh_jax/configs/coco.py")
  assert configs.config_file("coco:method=dhn") == path + ":method=dhn"
  assert configs.config_file("my/own.py:x") == "my/own.py:x"
  assert (parse("--config", "coco:method=dhn").config.to_dict() ==
          parse(f"--config={path}:method=dhn").config.to_dict())
  own = tmp_path / "own.py"              # a user's config file editing a package config
  own.write_text("from dseh_jax.configs import cifar10\n\n\ndef get_config(arg=None):\n"
                 "  c = cifar10.get_config(arg)\n  c.imgnet.optimizer.lr = 0.5\n  return c\n")
  c = parse("--config", f"{own}:method=hashnet").config
  assert c.method == "hashnet" and c.imgnet.optimizer.lr == 0.5 and "hashnet" in c


def test_default_config_is_the_embedded_dseh_recipe():
  assert parse().config.to_dict() == configs.get_config("digits").to_dict()
  assert parse().config.method == "dseh"


def test_overrides_are_typed_by_the_field():
  c = parse("--config", "nuswide21", "--config.bits=16,32", "--config.seed=3",
            "--config.imgnet.optimizer.lr=3", "--config.labnet.epochs_per_round=(1,2)",
            "--config.imgnet.epochs_per_round=(4,5)",
            "--config.data.mean=123.5,116.5,104", "--config.on_collapse=warn",
            "--config.data.kwargs.data_dir=/data/NUS").config
  assert c.bits == (16, 32) and c.seed == 3
  assert c.imgnet.optimizer.lr == 3.0 and isinstance(c.imgnet.optimizer.lr, float)
  assert tuple(c.labnet.epochs_per_round) == (1, 2) and c.imgnet.epochs_per_round == (4, 5)
  assert c.data.mean == "123.5,116.5,104"      # a text field keeps the text (the loader parses)
  assert c.on_collapse == "warn" and c.data.kwargs.data_dir == "/data/NUS"
  assert parse("--config.bits=32").config.bits == (32,)
  assert problems(c) == []


def test_loader_keywords_are_open_and_other_new_fields_are_named():
  c = parse("--config.data.kwargs.path=f.npz", "--config.labnet.hiden_units=8").config
  assert c.data.kwargs.path == "f.npz"
  found = problems(c)
  assert len(found) == 1 and found[0].startswith("labnet.hiden_units: no such field; did "
                                                 "you mean 'hidden_units'?")
  with pytest.raises(SystemExit, match=r"--config.nope.x: the config has no field 'nope'"):
    parse("--config.nope.x=1")


@pytest.mark.parametrize("argv,message", [
    (["--config", "digits:method=nope"], "method='nope': expected one of"),
    (["--config", "digits:choices=best"], "choices='best': expected one of"),
    (["--config", "digits:variant=A,method=cnnh"], "the ablations edit DSEH's"),
    (["--config", "digits:lr=3"], "KEY one of ('choices', 'method', 'variant')"),
    (["--config", "missing.py"], "missing.py"),
    (["--config.labnet.batch_size=abc"], "--config.labnet.batch_size=abc"),
    (["--config.bits=8", "--config"], "--config"),
    (["stray"], "unexpected arguments ['stray']"),
])
def test_bad_command_lines_are_one_line(argv, message):
  with pytest.raises(SystemExit) as e:
    parse(*argv)
  assert isinstance(e.value.code, str) and "\n" not in e.value.code
  assert message in e.value.code


def test_parse_arg():
  assert compose.parse_arg(None) == {"choices": "recipe", "method": "dseh",
                                     "variant": "full"}
  assert compose.parse_arg("code") == {"choices": "code", "method": "dseh",
                                       "variant": "full"}
  assert compose.parse_arg("method=cnnh,choices=paper")["method"] == "cnnh"


def test_every_config_and_method_composes_valid():
  for name in configs.NAMES:
    for arg in (None, "code", "paper", *(f"method={m}" for m in methods.NAMES)):
      assert problems(configs.get_config(name, arg)) == [], (name, arg)


def test_parses_repeat_in_one_process_and_help(capsys):
  assert parse("--config.seed=4").config.seed == 4
  assert parse().config.seed == 0                    # nothing kept from the last parse
  with pytest.raises(SystemExit) as e:
    parse("--help")
  assert e.value.code == 0 and "--config" in capsys.readouterr().out


def test_apply_overrides_uses_the_same_parsers():
  c = configs.get_config("digits")
  command_line.apply_overrides(c, ["imgnet.optimizer.lr=3", "data.kwargs.path=x.npz"])
  assert c.imgnet.optimizer.lr == 3.0 and c.data.kwargs.path == "x.npz"
  with pytest.raises(SystemExit, match="--set nope.x: the config has no field 'nope'"):
    command_line.apply_overrides(c, ["nope.x=1"])
