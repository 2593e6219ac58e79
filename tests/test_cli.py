"""The `supernet` command: instant listing, typed overrides, one-line user errors."""

import dataclasses
import subprocess
import sys

import pytest

from supernet.data import DatasetNotFoundError
from supernet_lab import catalog, cli, runner


def test_help_and_list_import_no_backend():
    # A fresh interpreter: this test process has imported Keras already.
    code = (
        "import sys\n"
        "from supernet_lab import cli\n"
        "assert cli.main(['list']) == 0\n"
        "assert cli.main(['list', '--markdown']) == 0\n"
        "heavy = sorted(m for m in ('keras', 'tensorflow', 'jax', 'supernet') if m in sys.modules)\n"
        "print('IMPORTED', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "IMPORTED []" in done.stdout
    assert "quickstart" in done.stdout and done.stderr == ""


def test_catalog_reads_what_the_modules_define():
    for name in ("quickstart", "table6_head_init", "starsse_transfer"):
        module = runner.load_module(name)
        entry = catalog.describe(name)
        assert entry.description == module.DESCRIPTION
        assert entry.reproduces == module.REPRODUCES
        assert entry.presets == tuple(module.PRESETS)


@dataclasses.dataclass(frozen=True)
class _Config:
    seed: int = 0
    epochs: int = 3
    learning_rate: float = 1e-3
    cache: bool = True
    dataset: str = "digits"
    hidden_units: tuple = (8, 8)
    downscale: object = 1.0


@pytest.mark.parametrize(
    "key, text, value",
    [
        ("epochs", "20", 20),
        ("learning_rate", "1e-2", 0.01),
        ("learning_rate", "1", 1.0),
        ("cache", "false", False),
        ("cache", "True", True),
        ("dataset", "fashion_mnist", "fashion_mnist"),
        ("hidden_units", "(200, 466)", (200, 466)),
        ("hidden_units", "[4]", (4,)),
        ("downscale", "auto", "auto"),
        ("downscale", "2.5", 2.5),
        ("downscale", "None", None),
    ],
)
def test_set_values_are_parsed_to_the_field_type(key, text, value):
    parsed = runner.parse_value(_Config(), key, text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize(
    "key, text, message",
    [
        ("epochs", "abc", "takes an int"),
        ("epochs", "1.5", "takes an int"),
        ("epochs", "True", "takes an int"),
        ("learning_rate", "fast", "takes a float"),
        ("hidden_units", "8", "takes a tuple"),
        ("epochz", "1", "Unknown config field 'epochz'"),
    ],
)
def test_bad_set_values_raise(key, text, message):
    with pytest.raises(ValueError, match=message):
        runner.parse_value(_Config(), key, text)


def test_resolve_config_checks_python_overrides_too():
    module = runner.load_module("quickstart")
    with pytest.raises(ValueError, match="takes an int"):
        runner.resolve_config(module, "smoke", overrides={"epochs": "3"})
    assert runner.resolve_config(module, "smoke", overrides={"learning_rate": 1}).learning_rate == 1.0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "quickstart", "--set", "epochs=abc"], "Config field `epochs` takes an int"),
        (["run", "quickstart", "--set", "epochs=1.5"], "takes an int"),
        (["run", "quickstart", "--set", "epochz=1"], "Unknown config field"),
        (["run", "quickstart", "--set", "epochs"], "Overrides are --set KEY=VALUE"),
        (["run", "quickstart", "--preset", "gpu"], "Unknown preset 'gpu'"),
        (["run", "nope"], "Unknown experiment 'nope'"),
        (["run", "quickstart", "--seeds", "3-1"], "ends before it starts"),
        (["run", "quickstart", "--seeds", "0,1", "--shard", "2/2"], "0 <= i < n"),
        (["run", "quickstart", "--seed", "x"], "invalid int value"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(cli.main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("supernet: error: ") and "\n" not in err and message in err, err


def test_missing_dataset_is_a_user_error(monkeypatch, capsys):
    def run_experiment(*args, **kwargs):
        raise DatasetNotFoundError("Dataset 'cifar10' was not found in the data directory /nowhere.\nLooked for: x")

    monkeypatch.setattr(runner, "run_experiment", run_experiment)
    assert cli.main(["run", "quickstart"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "supernet: error: Dataset 'cifar10' was not found in the data directory /nowhere. Looked for: x"


@pytest.mark.parametrize("error", [KeyError("metrics"), FileNotFoundError("/tmp/cache/model.keras")])
def test_bugs_keep_their_traceback(error, monkeypatch):
    def run_experiment(*args, **kwargs):
        raise error

    monkeypatch.setattr(runner, "run_experiment", run_experiment)
    with pytest.raises(type(error)):
        cli.main(["run", "quickstart"])


def test_runs_default_to_an_untracked_folder():
    args = cli.build_parser().parse_args(["run", "quickstart"])
    assert args.out == runner.DEFAULT_OUT == "out"
