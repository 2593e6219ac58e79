"""Runs survive `kill -9`: finished stages are reused, results are never half-written.

`RunContext.resumable` stores a stage's result and timings in the run
directory; a rerun of the same command loads them instead of recomputing
and ends with exactly the metrics of an uninterrupted run. The results store
and the rendered tables are written so that a kill leaves either the old or
the new content, never a fragment.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from supernet import reports
from supernet_lab import runner as experiment
from supernet.models import mlp

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class _Config:
    seed: int = 0
    width: int = 4


def _context(tmp_path, config=_Config()):
    run_dir = tmp_path / "runs" / "demo" / f"smoke-seed{config.seed}"
    return experiment.RunContext("demo", "smoke", run_dir, tmp_path, reports.StageTimer(), verbose=False, config=config)


def _stage(context, calls):
    """A stage returning a trained-looking model, arrays and numbers."""

    def compute():
        calls.append(1)
        with context.timer.stage("inner"):
            time.sleep(0.05)
            model = mlp(6, [context.config.width], 3)
        return {"model": model, "array": np.random.default_rng(1).normal(size=(3, 2)), "draw": float(np.random.uniform()), "n": 7}

    return compute


def test_resumable_stores_and_reloads_models_arrays_and_timings(tmp_path):
    first, calls = _context(tmp_path), []
    with first.timer.stage("outer"):
        stored = first.resumable("unit 1", _stage(first, calls))
        after_first = np.random.uniform()
    assert calls == [1] and first.resumed_stages == []
    second = _context(tmp_path)
    with second.timer.stage("outer"):
        loaded = second.resumable("unit 1", _stage(second, calls))
        after_second = np.random.uniform()
    assert calls == [1], "a finished stage was computed again"
    assert second.resumed_stages == ["unit 1"]
    x = np.ones((2, 6), "float32")
    np.testing.assert_array_equal(loaded["model"].predict(x, verbose=0), stored["model"].predict(x, verbose=0))
    np.testing.assert_array_equal(loaded["array"], stored["array"])
    assert (loaded["draw"], loaded["n"]) == (stored["draw"], stored["n"])
    # The random state after the stage does not depend on whether it ran or was loaded.
    assert after_first == after_second
    # The original timings are restored: inner stage, enclosing stage and total.
    inner = first.timer.as_dict()["inner"]
    assert second.timer.as_dict()["inner"] == inner and inner["wall_s"] >= 0.05
    # The enclosing stage is credited the stage's time too (first's also holds the time to store it).
    assert second.timer.as_dict()["outer"]["wall_s"] >= inner["wall_s"]
    assert second.timer.total["wall_s"] >= inner["wall_s"]


def test_resumable_reseeds_each_stage_from_seed_and_key(tmp_path):
    context = _context(tmp_path)
    np.random.uniform(size=100)  # random state consumed before the stage does not matter
    a = context.resumable("a", lambda: float(np.random.uniform()))
    b = context.resumable("b", lambda: float(np.random.uniform()))
    other = _context(tmp_path / "other", _Config(seed=1))
    assert a != b
    assert other.resumable("a", lambda: float(np.random.uniform())) != a


def test_resumable_keys_must_be_unique_within_a_run(tmp_path):
    context = _context(tmp_path)
    context.resumable("unit", lambda: 1)
    with pytest.raises(ValueError, match=r"Argument `key` must be unique within a run. Received: key='unit'"):
        context.resumable("unit", lambda: 2)


def test_changed_config_invalidates_stored_stages(tmp_path):
    calls = []
    first = _context(tmp_path)
    first.resumable("unit", _stage(first, calls))
    changed = _context(tmp_path, _Config(width=5))
    result = changed.resumable("unit", _stage(changed, calls))
    assert calls == [1, 1] and changed.resumed_stages == []
    assert result["model"].layers[0].units == 5


def test_half_written_stage_is_recomputed(tmp_path):
    context, calls = _context(tmp_path), []
    # What a kill during `_store_result` leaves: a temporary folder, no `done.json`.
    partial = context.resume_dir / "unit.tmp12345"
    partial.mkdir(parents=True)
    (partial / "result.pkl").write_bytes(b"\x80\x05trunc")
    context.resumable("unit", _stage(context, calls))
    assert calls == [1] and context.resumed_stages == []


def test_finished_run_clears_its_resume_cache(tmp_path):
    record = experiment.run_experiment(
        "table4_partitioning", "smoke", seed=0, out_dir=tmp_path, overrides={"sizes": ("small",), "num_members": (1,), "max_epochs": 1},
        verbose=False, render=False,
    )
    run_dir = tmp_path / "runs" / "table4_partitioning" / "smoke-seed0"
    assert record["resumed_stages"] == []
    assert run_dir.is_dir() and not (run_dir / "resume").exists()


def _command(out):
    return [
        sys.executable, "-m", "experiments.table4_partitioning", "--preset", "smoke", "--seed", "3",
        "--out", str(out), "--set", "num_members=(1, 2, 3, 4)",
    ]


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")


def _run_until(command, marker, timeout=600):
    """Start `command`, read its progress output until `marker`, then `kill -9` it."""
    process = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen, deadline = [], time.monotonic() + timeout
    try:
        for line in process.stdout:
            seen.append(line)
            if marker in line:
                time.sleep(1.0)  # well inside this unit's training
                process.send_signal(signal.SIGKILL)
                break
            assert time.monotonic() < deadline, "".join(seen)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    return "".join(seen)


@pytest.mark.slow
def test_killed_run_resumes_and_matches_an_uninterrupted_run(tmp_path):
    # Killed while training unit 3 of 4 (K=3); units K=1 and K=2 are done.
    seen = _run_until(_command(tmp_path / "killed"), "small root 12-24-24, K=3")
    assert "small K=2: test acc" in seen and "small K=3: test acc" not in seen
    store = tmp_path / "killed" / "results" / "table4_partitioning.jsonl"
    assert not store.exists(), "a killed run must not append a record"
    resumed = subprocess.run(_command(tmp_path / "killed"), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "small_k1: resumed" in resumed.stdout and "small_k2: resumed" in resumed.stdout
    assert "small_k3: resumed" not in resumed.stdout
    fresh = subprocess.run(_command(tmp_path / "fresh"), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    [after_kill] = reports.ResultsStore(store).read()
    [uninterrupted] = reports.ResultsStore(tmp_path / "fresh" / "results" / "table4_partitioning.jsonl").read()
    assert after_kill["resumed_stages"] == ["small_k1", "small_k2"]
    assert uninterrupted["resumed_stages"] == []
    assert after_kill["metrics"] == uninterrupted["metrics"]
    # Every unit's timings are in the record, the resumed ones included.
    assert set(after_kill["timings"]) == set(uninterrupted["timings"])
    assert not (tmp_path / "killed" / "runs" / "table4_partitioning" / "smoke-seed3" / "resume").exists()


_APPENDER = """
import sys
from supernet import reports
store = reports.ResultsStore(sys.argv[1])
payload = "x" * 300_000  # larger than any pipe or file buffer
i = 0
print("ready", flush=True)
while True:
    store.append({"i": i, "payload": payload})
    i += 1
"""


def _lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.slow
def test_kills_during_appends_never_damage_a_stored_record(tmp_path):
    # Linux may stop a large write() at a page boundary when SIGKILL arrives
    # (seen in about 1 of 25 kills with 300 kB records under O_APPEND), so the
    # store writes a temporary file and renames it: a kill leaves no fragment.
    path = tmp_path / "results.jsonl"
    kills = 3
    for attempt in range(kills):
        lines_before = _lines(path)
        process = subprocess.Popen([sys.executable, "-c", _APPENDER, str(path)], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 120
        # Kill only once this writer has stored a record, at a different moment each time.
        while _lines(path) <= lines_before and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05 * attempt)
        process.send_signal(signal.SIGKILL)
        process.wait()
    store = reports.ResultsStore(path)
    store.append({"i": -1, "payload": "after the kills"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = store.read()
    assert not [w for w in caught if "skipping" in str(w.message)]
    assert len(records) == path.read_bytes().count(b"\n")
    assert len(records) >= kills + 1
    assert all(len(r["payload"]) == 300_000 for r in records[:-1])
    assert records[-1] == {"i": -1, "payload": "after the kills"}


def test_truncated_line_from_another_writer_is_skipped_and_not_glued(tmp_path):
    path = tmp_path / "results.jsonl"
    store = reports.ResultsStore(path)
    store.append({"i": 0})
    with open(path, "ab") as f:
        f.write(b'{"i": 1, "metri')  # what a writer without single writes could leave
    store.append({"i": 2})
    with pytest.warns(UserWarning, match="bad line"):
        assert [r["i"] for r in store.read()] == [0, 2]


def test_tables_are_replaced_atomically(tmp_path, monkeypatch):
    stem = tmp_path / "t"
    reports.write_table(reports.Table("T", ["a"], [[1]]), stem)
    before = (tmp_path / "t.md").read_text()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed between writing and renaming")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        reports.write_table(reports.Table("T", ["a"], [[2]]), stem)
    assert (tmp_path / "t.md").read_text() == before  # the old table, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.md", "t.tex"]  # no temporary left


@dataclasses.dataclass(frozen=True)
class _ReuseConfig:
    seed: int = 0
    reuse_models: str = ""


def _trained(calls):
    def train():
        calls.append(1)
        return mlp(6, [4], 3), {"epochs_run": 5}

    return train


def test_trained_models_are_kept_and_reused_by_a_later_run(tmp_path):
    calls = []
    first = _context(tmp_path / "a", _ReuseConfig())
    model, info = first.trained_model("members fmnist", _trained(calls))
    assert (first.run_dir / "models" / "members_fmnist.keras").is_file() and first.reused_models == {}
    again = _context(tmp_path / "b", _ReuseConfig(reuse_models=str(first.run_dir)))
    loaded, loaded_info = again.trained_model("members fmnist", _trained(calls))
    assert calls == [1], "a reused model was trained again"
    assert loaded_info == info == {"epochs_run": 5}
    x = np.ones((2, 6), "float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert again.reused_models == {"members fmnist": str(first.run_dir / "models" / "members_fmnist.keras")}


def test_reuse_needs_the_same_seed_and_a_kept_model(tmp_path):
    first = _context(tmp_path / "a", _ReuseConfig())
    first.trained_model("members", _trained([]))
    other_seed = _context(tmp_path / "b", _ReuseConfig(seed=1, reuse_models=str(first.run_dir)))
    with pytest.raises(ValueError, match="same seed"):
        other_seed.trained_model("members", _trained([]))
    missing = _context(tmp_path / "c", _ReuseConfig(reuse_models=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match="models/members.keras"):
        missing.trained_model("members", _trained([]))


def test_reuse_needs_members_trained_on_the_same_data(tmp_path):
    calls = []
    first = _context(tmp_path / "a", _ReuseConfig())
    first.trained_model("members", _trained(calls), data={"train_examples": 100})
    again = _context(tmp_path / "b", _ReuseConfig(reuse_models=str(first.run_dir)))
    again.trained_model("members", _trained(calls), data={"train_examples": 100})
    assert calls == [1] and set(again.reused_models) == {"members"}
    held_out = _context(tmp_path / "c", _ReuseConfig(reuse_models=str(first.run_dir)))
    with pytest.raises(ValueError, match="trained on the same data"):
        held_out.trained_model("members", _trained(calls), data={"train_examples": 90})
    assert calls == [1]



# A cache key as experiments build it: config fields (tuples included), data size, index.
_KEY = {"seed": 0, "dataset_kwargs": (("num_train", 60),), "size": 60, "k": 1}


def _cache_entries(context):
    """The names of the files in `context`'s cache."""
    return sorted(p.name for p in (context.out_dir / "cache").iterdir())


def test_cached_model_is_loaded_by_a_later_run(tmp_path):
    calls = []
    first = _context(tmp_path)
    model, info = first.cached_model("net 1", _KEY, _trained(calls))
    after_first = np.random.uniform()
    assert info == {"epochs_run": 5, "cached": False} and first.cached_models == {"net_1": "trained"}
    [stored, stored_model] = _cache_entries(first)
    assert stored_model.startswith("net_1_") and stored_model.endswith(".keras") and stored == stored_model[:-6] + ".json"
    again = _context(tmp_path)
    loaded, loaded_info = again.cached_model("net 1", _KEY, _trained(calls))
    after_again = np.random.uniform()
    assert calls == [1], "a cached model was trained again"
    assert loaded_info == {"epochs_run": 5, "cached": True} and again.cached_models == {"net_1": "loaded"}
    x = np.ones((2, 6), "float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # The random state after the call does not depend on whether the model was trained or loaded.
    assert after_first == after_again


def test_cached_model_is_shared_by_experiments_in_one_output_folder(tmp_path):
    calls = []
    model, _ = _context(tmp_path).cached_model("net_1", _KEY, _trained(calls))
    other = experiment.RunContext(
        "other", "cpu", tmp_path / "runs" / "other" / "cpu-seed0", tmp_path, reports.StageTimer(), verbose=False, config=_Config()
    )
    loaded, info = other.cached_model("net_1", _KEY, _trained(calls))
    assert calls == [1] and info["cached"] is True and other.cached_models == {"net_1": "loaded"}
    x = np.ones((2, 6), "float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # Another output folder has its own cache.
    _context(tmp_path / "elsewhere").cached_model("net_1", _KEY, _trained(calls))
    assert calls == [1, 1]


def test_cached_model_of_another_key_is_trained(tmp_path):
    calls = []
    _context(tmp_path).cached_model("net_1", _KEY, _trained(calls))
    context = _context(tmp_path)
    _, info = context.cached_model("net_1", dict(_KEY, size=61), _trained(calls))
    assert calls == [1, 1] and info["cached"] is False
    assert len(_cache_entries(context)) == 4, "each key has its own entry"


@pytest.mark.parametrize("damage", ["stale key", "only the model", "only the key"])
def test_stale_or_half_written_cache_entry_is_trained_again(tmp_path, damage):
    calls = []
    first = _context(tmp_path)
    first.cached_model("net_1", _KEY, _trained(calls))
    [key_file, model_file] = [first.out_dir / "cache" / name for name in _cache_entries(first)]
    if damage == "stale key":
        key_file.write_text(json.dumps({"key": dict(_KEY, size=59), "info": {"epochs_run": 5}}))
    else:
        (key_file if damage == "only the model" else model_file).unlink()
    again = _context(tmp_path)
    _, info = again.cached_model("net_1", _KEY, _trained(calls))
    assert calls == [1, 1] and info["cached"] is False and again.cached_models == {"net_1": "trained"}
    # The retrained entry is whole again: a third call loads it.
    _, info = _context(tmp_path).cached_model("net_1", _KEY, _trained(calls))
    assert calls == [1, 1] and info["cached"] is True
    assert _cache_entries(again) == [key_file.name, model_file.name], "no temporary file left"


def test_cached_value_is_computed_once_per_key_and_output_folder(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"rate": 1e-3, "scores": [0.5, None]}

    first = _context(tmp_path)
    value, cached = first.cached_value("lr choice", _KEY, compute)
    after_first = np.random.uniform()
    assert value == {"rate": 1e-3, "scores": [0.5, None]} and cached is False
    assert first.cached_models == {"lr_choice": "computed"}
    [entry] = _cache_entries(first)
    assert entry.startswith("lr_choice_") and entry.endswith(".json"), "no temporary file left"
    again = _context(tmp_path)
    loaded, cached = again.cached_value("lr choice", _KEY, compute)
    assert calls == [1] and cached is True and loaded == value and again.cached_models == {"lr_choice": "loaded"}
    # The random state after the call does not depend on whether the value was computed or loaded.
    assert np.random.uniform() == after_first
    # Another key, or a stale entry, is computed again.
    _context(tmp_path).cached_value("lr choice", dict(_KEY, size=61), compute)
    assert calls == [1, 1]
    path = first.out_dir / "cache" / entry
    path.write_text(json.dumps({"key": dict(_KEY, size=59), "value": 0}))
    assert _context(tmp_path).cached_value("lr choice", _KEY, compute) == (value, False) and calls == [1, 1, 1]
