"""Running experiment modules: presets, seeds, run directories and results.

An experiment module (see `experiments/`) defines:

- `DESCRIPTION`: one line; `REPRODUCES`: the thesis table/figure it targets;
- `Config`: a frozen dataclass with every knob, including `seed`;
- `PRESETS`: `{"smoke": Config(...), "cpu": Config(...), "paper": Config(...)}`;
- `main(config, context) -> dict`: runs and returns the metrics;
- `report(records, out_dir) -> list[Path]`: renders tables and figures from
  stored records, without retraining.

`run_experiment` does everything around `main`: seeding and op determinism,
the run directory, stage timings, progress output and appending one JSON
line to `<out>/results/<name>.jsonl`.
"""

import dataclasses
import datetime
import importlib
import pkgutil
import re
import sys
import time
from pathlib import Path

from supernet import reports



def _discover():
    import experiments

    def thesis_order(name):
        number = re.search(r"\d+", name)
        return (name != "quickstart", int(number.group()) if number else 1000, name)

    names = (m.name for m in pkgutil.iter_modules(experiments.__path__) if not m.name.startswith("_"))
    return tuple(sorted(names, key=thesis_order))


EXPERIMENTS = _discover()


def load_module(name):
    """The experiment module `experiments.<name>`, with a clear error if unknown."""
    if name not in EXPERIMENTS:
        raise ValueError(
            f"Unknown experiment {name!r}. Known experiments: {', '.join(EXPERIMENTS)}"
        )
    return importlib.import_module(f"experiments.{name}")


def enable_determinism(seed):
    """Seed Python, NumPy and the backend, and make TensorFlow ops deterministic."""
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
        # Retracing warnings from building many small models drown the progress output.
        tf.get_logger().setLevel("ERROR")


@dataclasses.dataclass
class RunContext:
    """What `main(config, context)` gets besides its config."""

    name: str
    preset: str
    run_dir: Path
    out_dir: Path
    timer: reports.StageTimer
    verbose: bool = True

    def log(self, message):
        """Progress output: elapsed wall time and a message, flushed at once."""
        if self.verbose:
            elapsed = time.perf_counter() - self._start
            print(f"[{self.name} {elapsed:7.1f}s] {message}", flush=True)

    def stage(self, name):
        """Time a stage (wall and CPU seconds), logging its start and end."""
        return _LoggedStage(self, name)

    def __post_init__(self):
        self._start = time.perf_counter()


class _LoggedStage:
    def __init__(self, context, name):
        self.context, self.name = context, name

    def __enter__(self):
        self.context.log(f"{self.name} ...")
        self._inner = self.context.timer.stage(self.name)
        self._inner.__enter__()
        return self

    def __exit__(self, *exc):
        self._inner.__exit__(*exc)
        times = self.context.timer.as_dict()[self.name]
        self.context.log(f"{self.name} done: wall {times['wall_s']:.1f}s, cpu {times['cpu_s']:.1f}s")
        return False


def resolve_config(module, preset, seed=None, overrides=None):
    """The preset's config with the seed and `key=value` overrides applied."""
    if preset not in module.PRESETS:
        raise ValueError(
            f"Unknown preset {preset!r} for this experiment. "
            f"Known presets: {', '.join(module.PRESETS)}"
        )
    config = module.PRESETS[preset]
    changes = dict(overrides or {})
    if seed is not None:
        changes["seed"] = seed
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise ValueError(f"Unknown config fields {unknown}. Known fields: {sorted(fields)}")
    return dataclasses.replace(config, **changes)


def results_path(out_dir, name):
    return Path(out_dir) / "results" / f"{name}.jsonl"


def run_experiment(name, preset="smoke", seed=None, out_dir="reports", overrides=None, verbose=True):
    """Run one experiment and append its record to the results store.

    Returns:
        The record written (see `supernet.reports.make_record`).
    """
    module = load_module(name)
    config = resolve_config(module, preset, seed, overrides)
    out_dir = Path(out_dir)
    run_dir = out_dir / "runs" / name / f"{preset}-seed{config.seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    context = RunContext(name, preset, run_dir, out_dir, reports.StageTimer(), verbose)
    enable_determinism(config.seed)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    context.log(f"preset={preset} seed={config.seed} run_dir={run_dir}")
    with context.timer.stage("total"):
        metrics = module.main(config, context)
    record = reports.make_record(
        experiment=name,
        preset=preset,
        config=config,
        seed=config.seed,
        metrics=metrics,
        timings=context.timer.as_dict(),
        extra={"started_utc": started},
    )
    store = reports.ResultsStore(results_path(out_dir, name))
    store.append(record)
    context.log(f"results appended to {store.path}")
    written = module.report(store.read(), out_dir)
    for path in written:
        context.log(f"wrote {path}")
    return record


def markdown_index():
    """The README's experiment table: experiment, thesis table, command, report."""
    lines = [
        "| experiment | reproduces | presets | command | report |",
        "|---|---|---|---|---|",
    ]
    for name in EXPERIMENTS:
        module = load_module(name)
        preset = "cpu" if "cpu" in module.PRESETS else next(iter(module.PRESETS))
        lines.append(
            f"| `{name}` | {module.REPRODUCES} | {', '.join(module.PRESETS)} | "
            f"`supernet run {name} --preset {preset}` | `reports/{name}/` |"
        )
    return "\n".join(lines)


def render_reports(out_dir="reports", names=None):
    """Re-render every experiment's tables and figures from stored results."""
    out_dir = Path(out_dir)
    written, index = [], []
    for name in names or EXPERIMENTS:
        module = load_module(name)
        records = reports.ResultsStore(results_path(out_dir, name)).read()
        if not records:
            continue
        paths = module.report(records, out_dir)
        written.extend(paths)
        presets = sorted({r["preset"] for r in records})
        for path in paths:
            if Path(path).suffix in (".md", ".png"):
                index.append((module.REPRODUCES, name, f"supernet run {name} --preset {presets[-1]}", ", ".join(presets), Path(path).relative_to(out_dir).as_posix()))
    table = reports.Table(
        title="Reports index",
        columns=["thesis table / figure", "experiment", "command", "presets", "file"],
        rows=[list(row) for row in index],
        caption="Every file here is generated from `results/*.jsonl` by `supernet report`; do not edit by hand.",
    )
    readme = out_dir / "README.md"
    readme.write_text(reports.to_markdown(table))
    written.append(readme)
    return written


def main_module(name, argv=None):
    """`python -m experiments.NAME [--preset P] [--seed N] [--out DIR]`."""
    from supernet import cli

    sys.exit(cli.main(["run", name, *(sys.argv[1:] if argv is None else argv)]))


