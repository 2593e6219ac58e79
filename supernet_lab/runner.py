"""Running experiment modules: presets, seeds, run directories and results.

An experiment module (see `supernet_lab/experiments/`) defines:

- `DESCRIPTION`: one line; `REPRODUCES`: the thesis table/figure it targets;
- `Config`: a frozen dataclass with every knob, including `seed`;
- `PRESETS`: `{"smoke": Config(...), "cpu": Config(...), "paper": Config(...)}`;
- `main(config, context) -> dict`: runs and returns the metrics;
- `report(records, out_dir) -> list[Path]`: renders tables and figures from
  stored records, without retraining;
- `CLAIMS`: the source's claims it tests, as `supernet_lab.findings.Claim`s;
  the runner judges them over the stored seeds and renders each preset's
  findings table, the chapter summaries and `findings.json`.

`run_experiment` does everything around `main`: seeding and op determinism,
the run directory, stage timings, progress output and appending one JSON
line to `<out>/results/<name>.jsonl`.

`run_sweep` runs several seeds, optionally only one shard of them
(`--seeds 0-7 --shard i/n`): shard `i` of `n` runs the seeds at positions
`i, i + n, i + 2n, ...`. Each seed is a full, independent run appended to the
same JSON-lines store (append-safe across processes), and reports aggregate
by seed, so `supernet report` merges the shards into the table an unsharded
sweep gives.
"""

import ast
import collections
import dataclasses
import datetime
import fnmatch
import hashlib
import importlib
import json
import os
import pickle
import re
import shutil
import time
import zlib
from pathlib import Path

from supernet import reports
from supernet._validation import DivergenceError
from supernet_lab import DEFAULT_OUT, catalog, findings


EXPERIMENTS = catalog.EXPERIMENTS


def load_module(name):
    """The experiment module `supernet_lab.experiments.<name>`, with a clear error if unknown."""
    catalog.check_name(name)
    return importlib.import_module(f"supernet_lab.experiments.{name}")


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
    config: object = None

    def log(self, message):
        """Progress output: elapsed wall time and a message, flushed at once."""
        if self.verbose:
            elapsed = time.perf_counter() - self._start
            print(f"[{self.name} {elapsed:7.1f}s] {message}", flush=True)

    def stage(self, name):
        """Time a stage (wall and CPU seconds), logging its start and end."""
        return _LoggedStage(self, name)

    def resumable(self, key, compute):
        """`compute()`, or its stored result if an earlier run of this config finished it.

        Makes a run resumable stage by stage: the result of `compute()`
        (numbers, arrays, dicts, lists and Keras models, which are stored as
        `.keras` files) and the stage timings recorded while it ran are
        saved in `run_dir/resume/<config hash>/<key>/`, written to a temporary
        folder first and renamed into place, so a run killed at any point
        leaves either a complete entry or none. Rerunning the same command
        loads finished entries instead of recomputing them, adds their
        original timings back to the timer, and lists them in the record's
        `resumed_stages`.

        Randomness is re-seeded from `(config.seed, key)` before `compute()`
        and again after the stage (on both paths), so a resumed run
        reproduces an uninterrupted one exactly: no stage depends on how
        much random state earlier stages consumed. `run_experiment` deletes
        the resume folder once the run's record is stored.

        Args:
            key: str, unique within the run, e.g. `"member_3"`.
            compute: a function of no arguments returning the stage's result.

        Returns:
            The result of `compute()` (or its stored copy).
        """
        if self.config is None:
            return compute()
        key = str(key)
        if key in self._resumable_keys:
            raise ValueError(f"Argument `key` must be unique within a run. Received: key={key!r} a second time")
        self._resumable_keys.add(key)
        folder = self.resume_dir / re.sub(r"[^A-Za-z0-9_.-]+", "_", key)
        done = folder / "done.json"
        if done.exists():
            info = json.loads(done.read_text())
            result = _load_result(folder)
            self.timer.credit(info["wall_s"], info["cpu_s"], info["stages"])
            self.resumed_stages.append(key)
            self.log(f"{key}: resumed from {folder} (originally wall {info['wall_s']:.1f}s)")
        else:
            _reseed(self.config.seed, key)
            before = self.timer.as_dict()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            result = compute()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            stages = {
                name: {t: times[t] - before.get(name, {}).get(t, 0.0) for t in ("wall_s", "cpu_s")}
                for name, times in self.timer.as_dict().items()
                if name not in self.timer.open_stages and times != before.get(name)
            }
            _store_result(folder, result, {"key": key, "wall_s": wall, "cpu_s": cpu, "stages": stages})
        _reseed(self.config.seed, key + "/after")
        return result

    def trained_model(self, key, train, data=None):
        """A trained Keras model kept in the run folder, or reused from an earlier run's.

        Runs keep the models worth trying variants on (e.g. the members of
        a SuperModel, whose heads are cheap to vary): `train()` returns
        `(model, info)`, the model is saved as `run_dir/models/<key>.keras`
        and `info` (a JSON-able dict, e.g. the training history) beside it.
        When the config has `reuse_models` set to an earlier run's folder
        (of the same seed, so the same data split), the model and its info
        are loaded from there instead of trained, and the record lists them
        in `reused_models`.

        Args:
            key: str, unique within the run, e.g. `"members_fmnist"`.
            train: a function of no arguments returning `(model, info)`.
            data: optional JSON-able description of the data the model
                trains on (e.g. the number of training examples), stored
                with it; a reused model stored with another description is
                refused (models stored without one are not checked), e.g.
                members that saw all the training data for a run that holds
                part of it out from them.

        Returns:
            `(model, info)`.
        """
        import keras

        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(key))
        source = getattr(self.config, "reuse_models", "") if self.config is not None else ""
        if source:
            folder = Path(source) / "models"
            if not (folder / f"{name}.keras").exists():
                raise ValueError(
                    f"Config field `reuse_models` must be a run folder holding models/{name}.keras. "
                    f"Received: reuse_models={source!r}"
                )
            stored = json.loads((folder / f"{name}.json").read_text())
            if stored["seed"] != self.config.seed:
                # The seed draws the data split: other members would have seen this run's validation data.
                raise ValueError(
                    f"Config field `reuse_models` must point at a run of the same seed. Received: "
                    f"reuse_models={source!r} (seed {stored['seed']}) for a run of seed {self.config.seed}"
                )
            if "data" in stored and stored["data"] != data:
                raise ValueError(
                    f"Config field `reuse_models` must point at a run whose {key} trained on the same data. "
                    f"Received: reuse_models={source!r}, trained on {stored.get('data')}, for a run training on {data}"
                )
            model, info = keras.saving.load_model(folder / f"{name}.keras"), stored["info"]
            self.reused_models[key] = str(folder / f"{name}.keras")
            self.log(f"{key}: reused from {folder / f'{name}.keras'}")
            return model, info
        model, info = train()
        _store_model(self.run_dir / "models", name, model, {"seed": self.config.seed, "info": info, "data": data})
        return model, info

    def cached_model(self, name, key, train):
        """A Keras model from the output folder's cache, or trained by `train()` and stored there.

        For models that later runs can load instead of train (e.g.
        pre-trained networks): the cache is shared by every experiment and
        seed written to the same output folder, so two experiments built on
        the same nets train them once. `key` is a JSON-able dict of
        everything that determines the model (config fields, data size,
        seed, member index ...), and `name` says what it is: two callers
        that pass the same name and key get the same model. `train()`
        returns `(model, info)`; the model is saved as
        `out_dir/cache/<name>_<hash of key>.keras` and
        `{"key": key, "info": info}` beside it as `.json`. When both files
        exist and the stored key equals `key`, the model is loaded
        (uncompiled) instead of trained. Each file is written under a
        temporary name and renamed into place, the `.json` last, so a run
        killed at any point leaves either a complete entry or one that is
        trained again.

        Unlike `resumable` entries, cache entries outlive the run, so a
        killed run skips the models it finished without a `resumable`
        around them. As in `resumable`, randomness is re-seeded from
        `(config.seed, name)` before `train()` and again after the model is
        trained or loaded, so later stages do not depend on which happened.
        A loaded model's training time is not added to the timer: keep it
        in `info`. The record lists the run's cached models in
        `cached_models`, each `"loaded"` or `"trained"`.

        Args:
            name: str, the start of the file name, e.g. `"pretrain_3"`.
            key: dict, JSON-able; values JSON cannot hold are compared as
                their `str`.
            train: a function of no arguments returning `(model, info)`,
                `info` a JSON-able dict (e.g. the training time).

        Returns:
            `(model, info)`, `info` with `cached` added: True when loaded.
        """
        import keras

        name, key, folder, file = self._cache_entry(name, key)
        model_path, key_path = folder / f"{file}.keras", folder / f"{file}.json"
        stored = json.loads(key_path.read_text()) if key_path.exists() else {}
        seed = None if self.config is None else self.config.seed
        cached = model_path.exists() and stored.get("key") == key
        if cached:
            model, info = keras.saving.load_model(model_path, compile=False), stored["info"]
            self.log(f"{name}: loaded from {model_path}")
        else:
            if seed is not None:
                _reseed(seed, name)
            model, info = train()
            _store_model(folder, file, model, {"key": key, "info": info})
        if seed is not None:
            _reseed(seed, name + "/after")
        self.cached_models[name] = "loaded" if cached else "trained"
        return model, dict(info, cached=cached)

    def cached_value(self, name, key, compute):
        """A JSON-able value from the output folder's cache, or computed by `compute()` and stored there.

        `cached_model` for results that are not models, e.g. a
        hyper-parameter chosen by trial runs from a cached net: the same
        folder, `name` and `key` rules and re-seeding. The value is stored
        as `out_dir/cache/<name>_<hash of key>.json` holding
        `{"key": key, "value": value}`, written under a temporary name and
        renamed into place. The record lists it in `cached_models` too.

        Returns:
            `(value, cached)`: `cached` is True when the value was loaded.
        """
        name, key, folder, file = self._cache_entry(name, key)
        path = folder / f"{file}.json"
        stored = json.loads(path.read_text()) if path.exists() else {}
        seed = None if self.config is None else self.config.seed
        cached = stored.get("key") == key and "value" in stored
        if cached:
            value = stored["value"]
            self.log(f"{name}: loaded from {path}")
        else:
            if seed is not None:
                _reseed(seed, name)
            value = compute()
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f"{file}.tmp{os.getpid()}.json"
            tmp.write_text(json.dumps({"key": key, "value": value}))
            os.replace(tmp, path)
        if seed is not None:
            _reseed(seed, name + "/after")
        self.cached_models[name] = "loaded" if cached else "computed"
        return value, cached

    def _cache_entry(self, name, key):
        """`(name, key, folder, file)` of a cache entry: the name made file-safe, the key as stored (tuples become lists)."""
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name))
        canonical = _canonical_json(key)
        file = f"{name}_{hashlib.sha1(canonical.encode()).hexdigest()[:12]}"
        return name, json.loads(canonical), self.out_dir / "cache", file

    @property
    def resume_dir(self):
        """`run_dir/resume/<hash of experiment, preset and config>`."""
        fields = dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else repr(self.config)
        payload = _canonical_json([self.name, self.preset, fields])
        return self.run_dir / "resume" / hashlib.sha1(payload.encode()).hexdigest()[:16]

    def __post_init__(self):
        self._start = time.perf_counter()
        self.resumed_stages = []
        self.reused_models = {}
        self.cached_models = {}
        self._resumable_keys = set()


def _canonical_json(payload):
    """`payload` as JSON with sorted keys, values JSON cannot hold written as their `str`."""
    return json.dumps(payload, sort_keys=True, default=str)


def _store_model(folder, file, model, meta):
    """`folder/<file>.keras` and the JSON `meta` as `folder/<file>.json`, each renamed into place, the `.json` last."""
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob(f"{file}.tmp*"):  # of a killed writer
        leftover.unlink()
    tmp = f"{file}.tmp{os.getpid()}"
    model.save(folder / f"{tmp}.keras")
    (folder / f"{tmp}.json").write_text(json.dumps(meta))
    os.replace(folder / f"{tmp}.keras", folder / f"{file}.keras")
    os.replace(folder / f"{tmp}.json", folder / f"{file}.json")


def _reseed(seed, key):
    import keras

    keras.utils.set_random_seed((int(seed) * 1_000_003 + zlib.crc32(key.encode())) % 2**31)


# Attributes that code sets on Keras models and that a `.keras` file does not hold.
_MODEL_ATTRIBUTES = ("soup_info",)


class _Pickler(pickle.Pickler):
    def __init__(self, file, folder):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.folder, self.count = folder, 0

    def persistent_id(self, obj):
        import keras

        if isinstance(obj, keras.Model):
            name = f"model_{self.count}.keras"
            self.count += 1
            obj.save(self.folder / name)
            extra = {a: getattr(obj, a) for a in _MODEL_ATTRIBUTES if hasattr(obj, a)}
            return ("keras_model", name, extra)
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, folder):
        super().__init__(file)
        self.folder = folder

    def persistent_load(self, pid):
        import keras

        kind, name, extra = pid
        if kind != "keras_model":
            raise pickle.UnpicklingError(f"Unknown persistent id {pid!r} in {self.folder}")
        model = keras.saving.load_model(self.folder / name)
        for attribute, value in extra.items():
            setattr(model, attribute, value)
        return model


def _store_result(folder, result, info):
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with open(tmp / "result.pkl", "wb") as f:
        _Pickler(f, tmp).dump(result)
    (tmp / "done.json").write_text(json.dumps(info))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def _load_result(folder):
    with open(folder / "result.pkl", "rb") as f:
        return _Unpickler(f, folder).load()


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


def _type_name(field):
    return field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))


def _with_article(kind):
    return f"an {kind}" if kind == "int" else f"a {kind}"


def _checked(field, value):
    """`value` as the type `field` declares (int, float, bool, str, tuple; `object` takes anything)."""
    kind = _type_name(field)
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "tuple" and isinstance(value, list):
        return tuple(value)
    expected = {"int": int, "float": float, "bool": bool, "str": str, "tuple": tuple}.get(kind)
    if expected is None or (isinstance(value, expected) and not (expected is int and isinstance(value, bool))):
        return value
    raise ValueError(
        f"Config field `{field.name}` takes {_with_article(kind)}. Received: {field.name}={value!r} ({type(value).__name__})"
    )


def parse_value(config, key, text):
    """The value of `--set KEY=TEXT` for `config`, parsed as the field's type.

    Numbers, booleans, tuples and `None` are Python literals (`epochs=20`,
    `hidden_units=(200,466)`); a `str` field takes the text as it is, and so
    does an `object` field whose text is no literal (`downscale=auto`).

    Example:

    >>> Config = dataclasses.make_dataclass("Config", [("epochs", int, 1), ("downscale", object, 1.0)])
    >>> parse_value(Config(), "epochs", "20"), parse_value(Config(), "downscale", "auto")
    (20, 'auto')
    """
    fields = {f.name: f for f in dataclasses.fields(config)}
    if key not in fields:
        raise ValueError(f"Unknown config field {key!r}. Known fields: {sorted(fields)}")
    if _type_name(fields[key]) == "str":
        return text
    if _type_name(fields[key]) == "bool" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if _type_name(fields[key]) != "object":
            raise ValueError(
                f"Config field `{key}` takes {_with_article(_type_name(fields[key]))}, written as a Python literal. "
                f"Received: {key}={text}"
            ) from None
        value = text
    return _checked(fields[key], value)


def parse_overrides(name, preset, pairs):
    """`--set KEY=TEXT` pairs of experiment `name` as typed values (see `parse_value`)."""
    module = load_module(name)
    if preset not in module.PRESETS:
        resolve_config(module, preset)  # raises the unknown-preset error
    return {key: parse_value(module.PRESETS[preset], key, text) for key, text in pairs}


def resolve_config(module, preset, seed=None, overrides=None):
    """The preset's config with the seed and `key=value` overrides applied.

    Overrides are checked against the types the `Config` declares: a string
    for an `int` field raises a `ValueError` before anything runs.
    """
    if preset not in module.PRESETS:
        raise ValueError(
            f"Unknown preset {preset!r} for this experiment. "
            f"Known presets: {', '.join(module.PRESETS)}"
        )
    config = module.PRESETS[preset]
    changes = dict(overrides or {})
    if seed is not None:
        changes["seed"] = seed
    fields = {f.name: f for f in dataclasses.fields(config)}
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        raise ValueError(f"Unknown config fields {unknown}. Known fields: {sorted(fields)}")
    return dataclasses.replace(config, **{key: _checked(fields[key], value) for key, value in changes.items()})


def results_path(out_dir, name):
    return Path(out_dir) / "results" / f"{name}.jsonl"


def parse_seeds(text):
    """Seeds from `"0,1,5"`, an inclusive range `"0-4"`, or a mix `"0-3,9"`.

    Returns:
        list of distinct ints, in the order given.
    """
    seeds = []
    for item in str(text).split(","):
        item = item.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not match:
            raise ValueError(
                "Argument `--seeds` must be a comma list of seeds or inclusive "
                f"ranges, e.g. 0,1,2 or 0-7. Received: --seeds={text}"
            )
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if last < first:
            raise ValueError(
                f"Argument `--seeds` has a range that ends before it starts: {item!r}. "
                f"Received: --seeds={text}"
            )
        seeds.extend(range(first, last + 1))
    duplicates = sorted({s for s in seeds if seeds.count(s) > 1})
    if duplicates:
        raise ValueError(
            f"Argument `--seeds` lists seeds more than once: {duplicates}. Received: --seeds={text}"
        )
    return seeds


def parse_shard(text):
    """`"i/n"` -> `(i, n)`, 0-based shard `i` of `n`, with `0 <= i < n`."""
    match = re.fullmatch(r"\s*(-?\d+)\s*/\s*(-?\d+)\s*", str(text))
    if not match:
        raise ValueError(
            f"Argument `--shard` must be i/n, e.g. 0/4 (0-based shard i of n). Received: --shard={text}"
        )
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise ValueError(f"Argument `--shard` needs n >= 1 shards. Received: --shard={text}")
    if not 0 <= index < count:
        raise ValueError(
            f"Argument `--shard` needs 0 <= i < n (shards are 0-based). Received: --shard={text}"
        )
    return index, count


def shard_runs(runs, shard=None):
    """The runs of shard `(i, n)`: those whose position modulo `n` is `i`."""
    if shard is None:
        return list(runs)
    index, count = shard
    return list(runs)[index::count]


def run_sweep(name, preset="smoke", seeds=None, out_dir=DEFAULT_OUT, overrides=None, shard=None, verbose=True):
    """Run one experiment for several seeds, or only one shard of them.

    Args:
        name, preset, out_dir, overrides, verbose: as in `run_experiment`.
        seeds: list of ints; `None` runs the preset's seed once.
        shard: `None`, or `(i, n)` to run only the seeds at positions `p` with
            `p % n == i` (see `parse_shard`). Each record then carries
            `"shard": "i/n"`. With `n > 1` the tables are not rendered
            after each run (other shards are still writing and would race on
            the same files): run `supernet report` once every shard is done.

    Returns:
        list of the records written, possibly empty when this shard has no
        seeds (e.g. an array job wider than the sweep).
    """
    runs = [None] if seeds is None else list(seeds)
    mine = shard_runs(runs, shard)
    label = None if shard is None else f"{shard[0]}/{shard[1]}"
    render = shard is None or shard[1] == 1
    if verbose and shard is not None:
        shown = ", ".join("preset seed" if s is None else str(s) for s in mine) or "none"
        print(f"[{name}] shard {label}: {len(mine)} of {len(runs)} run(s), seeds: {shown}", flush=True)
    records = [
        run_experiment(name, preset, seed, out_dir, overrides, verbose, shard=label, render=render)
        for seed in mine
    ]
    if verbose and not render:
        print(f"[{name}] shard {label} done; after all shards: supernet report --out {out_dir}", flush=True)
    return records


def run_experiment(name, preset="smoke", seed=None, out_dir=DEFAULT_OUT, overrides=None, verbose=True, shard=None, render=True):
    """Run one experiment and append its record to the results store.

    Args:
        shard: optional `"i/n"` label stored in the record (see `run_sweep`).
        render: re-render the experiment's tables after appending.

    Returns:
        The record written (see `supernet.reports.make_record`).
    """
    module = load_module(name)
    config = resolve_config(module, preset, seed, overrides)
    out_dir = Path(out_dir)
    run_dir = out_dir / "runs" / name / f"{preset}-seed{config.seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    context = RunContext(name, preset, run_dir, out_dir, reports.StageTimer(), verbose, config=config)
    # Entries of another config cannot be reused: drop them.
    for stale in (run_dir / "resume").glob("*"):
        if stale != context.resume_dir:
            shutil.rmtree(stale, ignore_errors=True)
    enable_determinism(config.seed)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    context.log(f"preset={preset} seed={config.seed} run_dir={run_dir}")
    if context.resume_dir.exists():
        context.log(f"resuming: finished stages are loaded from {context.resume_dir}")
    status, failure = "ok", None
    try:
        with context.timer.stage("total"):
            metrics = module.main(config, context)
    except DivergenceError as error:
        # A diverged run is stored as failed (aggregates skip it), then reported.
        status, failure, metrics = "failed: diverged", error, {"error": str(error)}
        context.log(f"FAILED: {error}")
    record = reports.make_record(
        experiment=name,
        preset=preset,
        config=config,
        seed=config.seed,
        metrics=metrics,
        timings=context.timer.as_dict(),
        status=status,
        extra={
            "started_utc": started,
            "resumed_stages": list(context.resumed_stages),
            **({"reused_models": dict(context.reused_models)} if context.reused_models else {}),
            **({"cached_models": dict(context.cached_models)} if context.cached_models else {}),
            **({"shard": shard} if shard is not None else {}),
        },
    )
    store = reports.ResultsStore(results_path(out_dir, name))
    store.append(record)
    context.log(f"results appended to {store.path}")
    if failure is not None:
        # Stages finished before the divergence stay resumable; rerunning with
        # the same config would diverge again, so nothing is rendered.
        raise failure
    # The record is stored: a rerun of this command is a new run, not a resume.
    shutil.rmtree(run_dir / "resume", ignore_errors=True)
    written = render_tables(module, current_runs(module, store.read()), out_dir) if render else []
    for path in written:
        context.log(f"wrote {path}")
    if verbose:
        # The run's tables, aggregated over every stored seed of this preset.
        for path in written:
            if Path(path).suffix == ".md" and _preset_of(path, list(module.PRESETS)) == preset:
                print("\n" + Path(path).read_text(), flush=True)
    return record


markdown_index = catalog.markdown_index


# The summaries' claims: each with the experiments' claims that test it, as
# `experiment:claim id` patterns (`fnmatch`), so that a finding is listed
# under the claims it bears on. Thesis section 3.6 summarises chapter 3 in
# five claims; the sixth is ours.
CHAPTER3_CLAIMS = (
    ("Training only the last layer(s) boosts a trained network quickly.", (
        "table3_layer_by_layer:*", "fig7_training_regimes:ii_similar_to_i", "table7_best_submodels:retraining_raises_late_accuracy",
    )),
    ("A partitioned network merged by a re-trained last layer (SuperModel) beats its sub-networks and the dense net.", (
        "table4_partitioning:*_beats_single", "fig7_training_regimes:iii_*", "table5_loss_statistics:higher_accuracy",
        "table5_loss_statistics:*reaches_*", "table6_head_init:*_reaches_*", "table8_9_size_sweep:*reaches*",
        "table8_9_size_sweep:*separate_beats_whole",
    )),
    ("Higher ensemble accuracy need not mean lower cross-entropy: SuperModels are overconfident; down-scaling and L2 on the head reduce the loss.", (
        "table4_partitioning:*_higher_loss", "table5_loss_statistics:*_loss*", "table6_head_init:*downscaling_lowers_loss",
        "table6_head_init:*copied_loss*", "table6_head_init:*downscaled_accuracy*", "fig10_head_l2:*",
        "table8_9_size_sweep:*lower_loss",
    )),
    ("Slightly overconfident (later) sub-models make more accurate SuperModels; the last layer causes the high loss.", (
        "table7_best_submodels:late_*", "table7_best_submodels:retraining_lowers_late_loss",
        "table7_best_submodels:early_output_map_*", "table7_best_submodels:penultimate_*",
    )),
    ("SuperModels beat classical MLPs of the same size beyond a threshold and reach a given accuracy in less CPU time.", (
        "table8_9_size_sweep:*beats_mlp", "table8_9_size_sweep:*mlp_beats_supermodel", "table10_11_time_to_accuracy:*",
    )),
    ("Ours, not the thesis's: a head re-trained on data its members never saw (stacking) generalises better than the thesis's train-set head.", (
        "table5_loss_statistics:holdout_*", "table6_head_init:*holdout*", "table8_9_size_sweep:*holdout*",
    )),
)


# The goals of the conv / snapshot chapters (thesis sections 4.1 to 4.3) and
# the StarSSE paper's claims, listed the same way; chapter 4's last claim is ours.
CHAPTER4_CLAIMS = (
    ("Re-training the last layers one at a time raises accuracy at every stage (thesis: +2 to 5 points in 13 epochs).", (
        "fig1_3_last_layer:*", "table3_layer_by_layer:*", "fig4_snapshot_boost:*",
    )),
    ("A SuperNet of conv nets beats softmax voting, majority voting and its best member.", (
        "table12_conv_supernet:supernet_beats_*", "fig16_optimizers:*",
    )),
    ("SuperNet accuracy rises with the number of members.", ("table12_conv_supernet:six_members_beat_one",)),
    ("FGE snapshots agree with each other more than independently trained nets.", (
        "fig20_21_agreement:*", "table13_fge_supernet:fge_agree_more_than_independent",
    )),
    ("A SuperNet of FGE snapshots beats their softmax vote; independent nets make a better SuperNet.", ("table13_fge_supernet:*beats*",)),
    ("The Table 14 pipeline (last layers, FGE, SuperNet) beats one net given the same CPU time.", ("table14_fge_pipeline:*",)),
    ("Ours, the premise of the thesis's SuperNet protocol: re-training the copied head improves on it.", (
        "table13_fge_supernet:*_retrained_head_over_copied",
    )),
)
TRANSFER_CLAIMS = (
    ("StarSSE's ensemble is at least as accurate as local DE's and SSE's.", ("starsse_transfer:star_sse_beats_*",)),
    ("Soups of StarSSE models beat soups of SSE and local DE.", ("starsse_transfer:star_sse_*_soup_*",)),
    ("Global DE (one pre-trained checkpoint per member) is the most diverse and beats local DE, but its members lie in different basins: its soup is useless.", (
        "starsse_transfer:global_de_*",
    )),
    ("StarSSE costs no more than local DE, and parameter-efficient StarSSE saves time at comparable accuracy.", (
        "starsse_transfer:*costs*", "starsse_transfer:peft_*",
    )),
    ("The protocol's premise: the cycles start from a converged first fine-tuning.", ("starsse_transfer:first_finetune_converged*",)),
)
SUMMARIES = (
    ("chapter3_summary.md", "Thesis chapter 3 summary", CHAPTER3_CLAIMS),
    ("chapter4_summary.md", "Thesis chapter 4 (conv nets, layer-by-layer, FGE SuperNets)", CHAPTER4_CLAIMS),
    ("transfer_summary.md", "Transfer learning (StarSSE paper)", TRANSFER_CLAIMS),
)
SUMMARY_SOURCES = ("thesis section 3.6", "thesis sections 4.1-4.3", "Sadrtdinov et al. 2023")


def summary_experiments(patterns):
    """The experiment names of `experiment:claim id` patterns, in order."""
    return tuple(dict.fromkeys(pattern.split(":", 1)[0] for pattern in patterns))


def selects(patterns, experiment, claim_id):
    """Whether one of the `experiment:claim id` patterns names this experiment's claim."""
    return any(fnmatch.fnmatchcase(f"{experiment}:{claim_id}", pattern) for pattern in patterns)


def _is_source_scale(preset):
    """Whether a preset runs at the source's own settings: the `paper` presets."""
    return preset.startswith("paper")


def _tally(found):
    """`"2 hold, 1 fails, 3 inconclusive"` over `found`."""
    counts = collections.Counter(f.verdict for f in found)
    words = {findings.HOLDS: ("holds", "hold"), findings.FAILS: ("fails", "fail"), findings.INCONCLUSIVE: ("inconclusive", "inconclusive")}
    return ", ".join(f"{counts[v]} {single if counts[v] == 1 else plural}" for v, (single, plural) in words.items())


def _preset_of(path, presets):
    """The preset a generated file belongs to, from its `_<preset>` name part."""
    matches = [p for p in presets if f"_{p}" in Path(path).stem]
    return max(matches, key=len) if matches else presets[0]


def claims_summary(out_dir, summary=None, judged=()):
    """One claim-by-claim summary file: under each claim, the findings that test it.

    Under each claim, a tally of the verdicts (at the source's settings,
    `paper*` presets, and at reduced scales), then each experiment's claims
    that test it with one line per preset, the source's settings first.

    Args:
        out_dir: the reports folder.
        summary: an entry of `SUMMARIES`, `(file name, title, claims)`; the
            default is the thesis's chapter 3.
        judged: the `findings.Finding`s of every experiment; smoke runs are
            left out.

    Returns:
        The path of the summary written.
    """
    out_dir = Path(out_dir)
    filename, title, claims = summary or SUMMARIES[0]
    parts = [
        f"### {title}, claim by claim",
        "",
        "Generated by `supernet report` from the stored results (presets other than `smoke`). Under each claim: "
        "the tally of its findings' verdicts at the source's settings (`paper` presets) and at reduced scales, then "
        "each finding with our estimate, its 95% interval over seeds and the number of seeds. Verdicts: "
        + FINDINGS_CAPTION.split("the verdict: ", 1)[1],
        "",
    ]
    for number, (claim, patterns) in enumerate(claims, start=1):
        found = [f for f in judged if f.preset != "smoke" and selects(patterns, f.experiment, f.claim.id)]
        if not found:
            commands = ", ".join(f"`supernet run {n} --preset cpu`" for n in summary_experiments(patterns))
            parts += [f"{number}. **{claim}**", f"   - no stored run yet: {commands}"]
            continue
        scales = [("source's settings", [f for f in found if _is_source_scale(f.preset)]),
                  ("reduced scales", [f for f in found if not _is_source_scale(f.preset)])]
        tally = "; ".join(f"at the {name}: {_tally(group)}" for name, group in scales if group)
        parts.append(f"{number}. **{claim}** Verdicts {tally}.")
        groups = {}
        for f in found:
            groups.setdefault((f.experiment, f.claim.text, f.claim.where), []).append(f)
        for (experiment, text, where), group in groups.items():
            parts.append(f"   - `{experiment}`: {text} ({where})")
            group.sort(key=lambda f: not _is_source_scale(f.preset))
            parts += [f"     - `{f.preset}`: **{f.verdict}** ({f.evidence()})" for f in group]
    path = out_dir / filename
    reports.write_text_atomic(path, "\n".join(parts) + "\n")
    return path


def current_runs(module, records):
    """The runs a table shows: per preset, the latest configuration's runs, one per seed.

    A preset whose settings changed between runs (a fixed bug, a longer
    schedule) would otherwise average old and new runs into one table. Each
    stored config is completed with the defaults of fields added to the
    experiment's `Config` since it was written, then compared, seed aside,
    with the config of the preset's newest record, and so is the Keras
    backend (backends differ in their numbers); runs of any other config or
    backend stay in the store but leave the tables. `reuse_models` (where
    a seed's trained members were loaded from, listed in the record's
    `reused_models`) is not compared.

    Args:
        module: the experiment module (its `Config` gives the defaults).
        records: stored records of that experiment.

    Returns:
        The kept records, in store order (see `reports.latest_runs`).
    """
    defaults = dataclasses.asdict(module.Config()) if dataclasses.is_dataclass(getattr(module, "Config", None)) else {}

    def settings(record):
        config = {**defaults, **(record.get("config") or {})}
        # The seed, and the run folder a seed's members were reused from (each seed has its own).
        config.pop("seed", None)
        config.pop("reuse_models", None)
        return json.dumps([config, record.get("backend")], sort_keys=True, default=str)

    runs = reports.latest_runs(records)
    newest = {}
    for record in runs:
        if record.get("status", "ok") == "ok":
            newest[record.get("preset")] = settings(record)
    return [r for r in runs if r.get("preset") not in newest or settings(r) == newest[r.get("preset")]]


def backend_note(records):
    """The sentence every table of `records` carries about the Keras backend of its runs."""
    backends = {}
    for record in records:
        backends.setdefault(record.get("backend", "unknown"), set()).add(record.get("preset"))
    if len(backends) == 1:
        return f"Keras backend: {next(iter(backends))}."
    per_preset = "; ".join(f"{b} ({', '.join(sorted(map(str, p)))})" for b, p in sorted(backends.items()))
    return f"Keras backends by preset: {per_preset}."


def experiment_name(module):
    return module.__name__.rsplit(".", 1)[-1]


def experiment_findings(module, records):
    """`module.CLAIMS` judged over `records` (see `findings.judge_all`); none without claims."""
    return findings.judge_all(experiment_name(module), getattr(module, "CLAIMS", ()), records)


FINDINGS_CAPTION = (
    "Each claim of the source that this experiment tests, judged over the stored seeds: our estimate, its 95% "
    "t-interval over seeds (paired where the claim compares two methods of the same run) and the verdict: "
    "holds or fails when the whole interval lies on one side of the claim's value, inconclusive when it "
    "straddles it or with fewer than two seeds; smoke and synthetic-data runs are not judged."
)


def findings_table(name, preset, judged):
    """A `reports.Table` of one preset's findings."""
    rows = []
    for f in judged:
        claim, signed = f.claim, f.claim.minus is not None
        number = lambda v, signed=False: "—" if v is None else findings.format_number(claim, v, signed)  # noqa: E731
        side = f"{claim.compare} {number(claim.threshold, signed)}"
        interval = "—" if f.low is None else f"[{number(f.low, signed)}, {number(f.high, signed)}]"
        rows.append([claim.text, claim.where, f"{claim.label} {side}".strip(), number(claim.source_value),
                     number(f.estimate, signed), interval, f.n, f.verdict])
    return reports.Table(
        title=f"Claims tested by {name} ({preset})",
        columns=["claim", "source", "measured (claim)", "source value", "ours", "95% interval", "seeds", "verdict"],
        rows=rows,
        caption=FINDINGS_CAPTION,
    )


def render_tables(module, records, out_dir, judged=None):
    """`module.report(records, out_dir)` and the findings table of each preset.

    Every table states the Keras backend of its runs. `judged`: the
    experiment's findings over `records`, if already computed.
    """
    name = experiment_name(module)
    judged = experiment_findings(module, records) if judged is None else judged
    with reports.table_note(backend_note(records)):
        written = list(module.report(records, out_dir))
        for preset in dict.fromkeys(f.preset for f in judged):
            table = findings_table(name, preset, [f for f in judged if f.preset == preset])
            written += reports.write_table(table, Path(out_dir) / name / f"{name}_{preset}_claims")
    return written


def render_reports(out_dir="reports", names=None):
    """Re-render every experiment's tables and figures from stored results."""
    out_dir = Path(out_dir)
    written, index, judged = [], [], []
    for name in names or EXPERIMENTS:
        module = load_module(name)
        records = current_runs(module, reports.ResultsStore(results_path(out_dir, name)).read())
        if not records:
            continue
        found = experiment_findings(module, records)
        judged += found
        paths = render_tables(module, records, out_dir, found)
        written.extend(paths)
        presets = sorted({r["preset"] for r in records})
        for path in paths:
            if Path(path).suffix in (".md", ".png"):
                preset = _preset_of(path, presets)
                index.append((module.REPRODUCES, name, f"supernet run {name} --preset {preset}", preset, Path(path).relative_to(out_dir).as_posix()))
    if names is None:
        summaries = [(claims_summary(out_dir, summary, judged), source) for summary, source in zip(SUMMARIES, SUMMARY_SOURCES)]
        for path, source in summaries:
            written.append(path)
            index.append((source, "(all above)", "supernet report", "—", path.relative_to(out_dir).as_posix()))
        path = out_dir / "findings.json"
        reports.write_text_atomic(path, json.dumps([f.as_dict() for f in judged], indent=1) + "\n")
        written.append(path)
        index.append(("every declared claim", "(all above)", "supernet report", "—", path.relative_to(out_dir).as_posix()))
    table = reports.Table(
        title="Reports index",
        columns=["thesis table / figure", "experiment", "command", "preset", "file"],
        rows=[list(row) for row in index],
        caption="Every file here is generated from `results/*.jsonl` by `supernet report`; do not edit by hand.",
    )
    readme = out_dir / "README.md"
    reports.write_text_atomic(readme, reports.to_markdown(table))
    written.append(readme)
    return written
