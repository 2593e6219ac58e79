"""Every experiment's smoke preset runs, records and renders; the CLI works."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from supernet import reports
from supernet_lab import findings
from supernet_lab import runner as experiment

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_is_discovered_first():
    assert experiment.EXPERIMENTS[0] == "quickstart"


# The quickstart's smoke run by default; every other experiment's with `-m slow`.
DEFAULT_SMOKE = ("quickstart",)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n in DEFAULT_SMOKE else pytest.mark.slow) for n in experiment.EXPERIMENTS]
)
def test_smoke_preset_runs_records_and_reports(name, tmp_path):
    module = experiment.load_module(name)
    assert {"smoke", "cpu"} <= set(module.PRESETS)
    assert module.REPRODUCES and module.DESCRIPTION
    record = experiment.run_experiment(name, "smoke", seed=0, out_dir=tmp_path, verbose=False)
    assert record["status"] == "ok"
    assert record["experiment"] == name and record["preset"] == "smoke"
    assert record["timings"]["total"]["cpu_s"] > 0
    stored = reports.ResultsStore(experiment.results_path(tmp_path, name)).read()
    assert stored == [json.loads(json.dumps(record))]
    written = experiment.render_reports(tmp_path, names=[name])
    tables = [p for p in written if p.suffix == ".md" and p.name != "README.md"]
    assert tables, "report() wrote no Markdown table"
    assert all(p.read_text().strip() for p in tables)
    # Every declared claim is measurable on the smoke record, and smoke data is never judged.
    judged = experiment.experiment_findings(module, stored)
    assert [f.claim.id for f in judged] == [c.id for c in getattr(module, "CLAIMS", ())]
    assert {f.verdict for f in judged} <= {"not judged"}
    if judged:
        claims_table = tmp_path / name / f"{name}_smoke_claims.md"
        assert claims_table in written and "not judged" in claims_table.read_text()


@pytest.mark.slow
def test_quickstart_numbers_are_sane(tmp_path):
    record = experiment.run_experiment("quickstart", "smoke", seed=1, out_dir=tmp_path, verbose=False)
    rows = record["metrics"]["rows"]
    assert record["seed"] == 1 and record["config"]["seed"] == 1
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows.values())
    # Even after 3 epochs the SuperNet head beats chance on 10 balanced classes by far.
    assert rows["SuperNet, re-trained head"]["accuracy"] > 0.5
    assert record["metrics"]["downscale"] > 0


def test_overrides_and_bad_arguments():
    module = experiment.load_module("quickstart")
    config = experiment.resolve_config(module, "smoke", seed=7, overrides={"epochs": 1})
    assert (config.seed, config.epochs) == (7, 1)
    with pytest.raises(ValueError, match="Unknown preset"):
        experiment.resolve_config(module, "gpu")
    with pytest.raises(ValueError, match="Unknown config fields"):
        experiment.resolve_config(module, "smoke", overrides={"epochz": 1})
    with pytest.raises(ValueError, match="Unknown experiment"):
        experiment.load_module("table99")


def _cli(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_list_run_report(tmp_path):
    listed = _cli("-m", "supernet_lab.cli", "list")
    assert listed.returncode == 0, listed.stderr
    for name in experiment.EXPERIMENTS:
        assert name in listed.stdout
    run = _cli("-m", "experiments.quickstart", "--preset", "smoke", "--seed", "3", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert "SuperNet, re-trained head" in run.stdout  # progress output
    (tmp_path / "quickstart" / "quickstart_smoke.md").unlink()
    report = _cli("-m", "supernet_lab.cli", "report", "--out", str(tmp_path))
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "quickstart" / "quickstart_smoke.md").exists()
    index = (tmp_path / "README.md").read_text()
    assert "quickstart/quickstart_smoke.md" in index
    bad = _cli("-m", "supernet_lab.cli", "run", "nope", "--out", str(tmp_path))
    assert bad.returncode == 2 and "Unknown experiment" in bad.stderr


@pytest.mark.slow
def test_same_seed_same_metrics(tmp_path):
    first = experiment.run_experiment("quickstart", "smoke", seed=4, out_dir=tmp_path / "a", verbose=False)
    second = experiment.run_experiment("quickstart", "smoke", seed=4, out_dir=tmp_path / "b", verbose=False)
    other = experiment.run_experiment("quickstart", "smoke", seed=5, out_dir=tmp_path / "c", verbose=False)
    assert first["metrics"] == second["metrics"]
    assert first["metrics"] != other["metrics"]


def test_docs_list_every_experiment():
    docs = (ROOT / "docs" / "experiments.md").read_text()
    assert experiment.markdown_index() in docs, "docs/experiments.md's table is stale: paste `supernet list --markdown`"


def _finding(name, preset, values, baseline, claim_id="beats"):
    claim = findings.Claim(claim_id, "A beats B.", "thesis Table 1", "metrics.a", minus="metrics.b", scale=100, unit=" points")
    records = [{"preset": preset, "seed": s, "status": "ok", "config": {}, "metrics": {"a": a, "b": b}}
               for s, (a, b) in enumerate(zip(values, baseline))]
    return findings.judge(name, preset, claim, records)


def test_claims_summary_lists_structured_findings(tmp_path):
    judged = [
        _finding("table6_head_init", "cpu", [0.90, 0.91, 0.92], [0.88, 0.89, 0.90], claim_id="tng_none_downscaling_lowers_loss"),
        _finding("table6_head_init", "paper", [0.90, 0.91, 0.92], [0.88, 0.89, 0.93], claim_id="tng_none_downscaling_lowers_loss"),
        _finding("table6_head_init", "smoke", [0.9], [0.1], claim_id="tng_none_downscaling_lowers_loss"),
        _finding("table6_head_init", "cpu", [0.90, 0.91, 0.92], [0.88, 0.89, 0.90], claim_id="not_in_any_summary"),
    ]
    summary = experiment.claims_summary(tmp_path, experiment.SUMMARIES[0], judged).read_text()
    lines = summary.splitlines()
    theme = next(i for i, line in enumerate(lines) if line.startswith("3. "))
    assert lines[theme].endswith("Verdicts at the source's settings: 0 hold, 0 fail, 1 inconclusive; "
                                 "at the reduced scales: 1 holds, 0 fail, 0 inconclusive.")
    assert lines[theme + 1] == "   - `table6_head_init`: A beats B. (thesis Table 1)"
    # The source's settings first, then the reduced scales; each finding once, under the claims it tests.
    assert lines[theme + 2].startswith("     - `paper`: **inconclusive** (+1.00 points, 95% interval [")
    assert lines[theme + 3].startswith("     - `cpu`: **holds** (+2.00 points, 95% interval [+2.00 points, +2.00 points], 3 seeds")
    assert summary.count("A beats B.") == 1
    assert "- `smoke`:" not in summary  # smoke runs are not evidence
    assert "no stored run yet" in summary  # e.g. claim 4 has no finding here


def test_summaries_list_every_declared_claim_and_no_unknown_one():
    for filename, _, claims in experiment.SUMMARIES:
        patterns = [pattern for _, patterns in claims for pattern in patterns]
        declared = [(name, claim.id) for name in experiment.summary_experiments(patterns)
                    for claim in experiment.load_module(name).CLAIMS]
        for name, claim_id in declared:
            assert experiment.selects(patterns, name, claim_id), f"{filename} lists no claim for {name}:{claim_id}"
        for pattern in patterns:
            assert any(experiment.selects([pattern], *key) for key in declared), f"{filename}: {pattern} names no claim"


@pytest.mark.slow
def test_starsse_grid_picks_each_methods_best_held_out_point(tmp_path):
    grid = ((1.0, 1.0), (2.0, 0.5))
    record = experiment.run_experiment(
        "starsse_transfer", "smoke", seed=0, out_dir=tmp_path, overrides={"fge_grid": grid}, verbose=False
    )
    metrics = record["metrics"]
    assert sorted(metrics["grid"]) == ["0", "1"]
    assert "global_de" not in metrics["methods"] and "peft_star_sse" not in metrics["methods"]
    assert len(metrics["pretrain"]["source_accuracy"]) == 1  # one checkpoint is enough
    for method in ("sse", "star_sse"):
        points = [metrics["grid"][i] for i in ("0", "1")]
        best = max(points, key=lambda p: p[method]["val_accuracy"])  # first point wins ties, as in the run
        chosen = metrics["methods"][method]
        assert chosen["best_point"] == [best["fge_lr_factor"], best["fge_epochs_factor"]]
        assert chosen["accuracy"] == best[method]["accuracy"]
        assert metrics["soups"][method] == best[method]["soups"]
    written = experiment.render_reports(tmp_path, names=["starsse_transfer"])
    grid_table = tmp_path / "starsse_transfer" / "starsse_transfer_smoke_grid.md"
    assert grid_table in written
    assert "| 2 | 0.5 |" in grid_table.read_text()


@pytest.mark.slow
def test_distillation_reports_the_candidate_with_the_best_validation_accuracy(tmp_path):
    record = experiment.run_experiment(
        "beyond_distillation", "smoke", seed=0, out_dir=tmp_path, overrides={"candidates": ((2.0, 0.1), (4.0, 0.5))}, verbose=False
    )
    metrics = record["metrics"]
    assert sorted(metrics["candidates"]) == ["T2_a0p1", "T4_a0p5"]
    best = max(metrics["candidates"].values(), key=lambda c: c["val_accuracy"])
    assert metrics["chosen"] == {"temperature": best["temperature"], "alpha": best["alpha"]}
    assert metrics["rows"]["student"]["accuracy"] == best["test_accuracy"]


def test_starsse_cost_finding_counts_the_schedule_and_reports_cpu_time():
    module = experiment.load_module("starsse_transfer")

    def run(star_extra):
        local = {"cpu_s": 40.0, "member_wall_s": [1.0] * 4, "num_failed": 0}
        star = {"cpu_s": 35.0, "member_wall_s": [0.0, 1.0, 1.0, 1.0], "num_failed": 0, **star_extra}
        return {"config": {"fge_epochs_factor": 1.0}, "metrics": {"methods": {"local_de": local, "star_sse": star}}}

    text = module._star_cost([run({})])
    assert "M = 4" in text and "trains 4 fine-tuning lengths" in text and "3.50x" in text
    # A grid run chose half-length cycles: 1 + 3 x 0.5 fine-tunings.
    assert "trains 2.5 fine-tuning lengths" in module._star_cost([run({"best_point": [2.0, 0.5]})])
    assert module._star_cost([run({"num_failed": 1})]) == ""


def test_tables_show_only_the_presets_latest_configuration():
    import dataclasses
    import types

    @dataclasses.dataclass(frozen=True)
    class Config:
        seed: int = 0
        epochs: int = 10
        added_later: tuple = ()

    module = types.SimpleNamespace(Config=Config)

    def record(seed, preset="cpu", **config):
        return {"experiment": "e", "preset": preset, "seed": seed, "status": "ok", "config": {"seed": seed, **config}}

    old = record(0, epochs=5, added_later=[])  # the preset's old setting
    before_field = record(1, epochs=10)  # written before `added_later` existed: its default applies
    other_preset = record(0, preset="smoke", epochs=1)
    rerun = record(0, epochs=10, added_later=[])  # seed 0 again at the new setting
    kept = experiment.current_runs(module, [old, before_field, other_preset, rerun])
    assert kept == [before_field, other_preset, rerun]
    # Before the rerun, the old seed 0 is the newest record: the table shows it alone.
    assert experiment.current_runs(module, [before_field, old]) == [old]
    # Seeds whose members were reused from their own earlier runs share one configuration.
    reused = [record(seed, epochs=10, reuse_models=f"out/runs/e/cpu-seed{seed}") for seed in (0, 1)]
    assert experiment.current_runs(module, reused) == reused


def test_table5_cosine_schedule_decays_to_zero_over_the_member_epochs():
    import dataclasses
    import math

    module = experiment.load_module("table5_loss_statistics")
    config = experiment.resolve_config(module, "smoke", overrides={"lr_schedule": "cosine", "epochs": 4, "batch_size": 100})
    schedule = module._member_learning_rate(config, num_train=1000)
    steps = 4 * 10
    for step in (0, 7, steps // 2, steps):
        expected = config.learning_rate * 0.5 * (1 + math.cos(math.pi * step / steps))
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert module._member_learning_rate(dataclasses.replace(config, lr_schedule="constant"), 1000) == config.learning_rate
    with pytest.raises(ValueError, match="Argument `lr_schedule` must be"):
        module._member_learning_rate(dataclasses.replace(config, lr_schedule="step"), 1000)


@pytest.mark.slow
def test_table5_runs_with_the_cosine_schedule(tmp_path):
    record = experiment.run_experiment(
        "table5_loss_statistics", "smoke", seed=0, out_dir=tmp_path, overrides={"lr_schedule": "cosine"}, verbose=False,
        render=False,
    )
    assert record["status"] == "ok" and record["config"]["lr_schedule"] == "cosine"


@pytest.mark.slow
def test_table5_holdout_head_is_compared_with_the_train_set_head_on_the_same_kept_members(tmp_path):
    overrides = {"head_data": "holdout", "head_holdout_size": 0.25}
    first = experiment.run_experiment(
        "table5_loss_statistics", "smoke", seed=0, out_dir=tmp_path, overrides=overrides, verbose=False, render=False
    )
    metrics = first["metrics"]
    assert metrics["head_data"] == {"protocol": "holdout", "members_train": 360, "head_train": 120}
    assert set(metrics["supermodel_train_head"]) == set(metrics["supermodel"])
    run_dir = tmp_path / "runs" / "table5_loss_statistics" / "smoke-seed0"
    second = experiment.run_experiment(
        "table5_loss_statistics", "smoke", seed=0, out_dir=tmp_path, verbose=False, render=False,
        overrides=dict(overrides, reuse_models=str(run_dir)),
    )
    assert set(second["reused_models"]) == {"members"}
    for key in ("members_avg", "softmax_vote", "supermodel_copied"):
        assert second["metrics"][key] == metrics[key]
    module = experiment.load_module("table5_loss_statistics")
    (runs,) = module.by_preset([first])
    rows = [row[0] for row in module._rows(runs)]
    assert rows[-2:] == ["supermodel_train_head", "supermodel"]
    claims = {finding.claim.id for finding in findings.judge_all(module.NAME, module.CLAIMS, [first, second])}
    assert {"holdout_head_higher_accuracy", "holdout_head_lower_nll"} <= claims


@pytest.mark.slow
def test_table6_heads_can_be_retried_on_the_members_of_an_earlier_run(tmp_path):
    first = experiment.run_experiment("table6_head_init", "smoke", seed=0, out_dir=tmp_path, verbose=False, render=False)
    run_dir = tmp_path / "runs" / "table6_head_init" / "smoke-seed0"
    assert sorted(p.name for p in (run_dir / "models").glob("*.keras")) == ["members_fmnist.keras", "members_tng.keras"]
    second = experiment.run_experiment(
        "table6_head_init", "smoke", seed=0, out_dir=tmp_path, verbose=False, render=False,
        overrides={"reuse_models": str(run_dir), "fmnist_head_epochs": 2},
    )
    assert set(second["reused_models"]) == {"members_fmnist", "members_tng"}
    assert second["metrics"]["fmnist"]["members"] == first["metrics"]["fmnist"]["members"]
    assert "train_members_fmnist" in second["timings"]


@pytest.mark.slow
def test_table4_heads_can_be_retried_on_the_kept_members_of_an_earlier_run(tmp_path):
    overrides = {"sizes": ("small",)}
    first = experiment.run_experiment(
        "table4_partitioning", "smoke", seed=0, out_dir=tmp_path, overrides=overrides, verbose=False, render=False
    )
    run_dir = tmp_path / "runs" / "table4_partitioning" / "smoke-seed0"
    assert [p.name for p in (run_dir / "models").glob("*.keras")] == ["members_small_k6.keras"]
    second = experiment.run_experiment(
        "table4_partitioning", "smoke", seed=0, out_dir=tmp_path, verbose=False, render=False,
        overrides=dict(overrides, reuse_models=str(run_dir), head_epochs=2),
    )
    assert set(second["reused_models"]) == {"members_small_k6"}
    before, after = first["metrics"]["results"]["small"]["k6"], second["metrics"]["results"]["small"]["k6"]
    for key in ("softmax_vote", "mean_member_accuracy", "epochs", "best_epochs", "copied_head"):
        assert after[key] == before[key]
    assert after["nll"] != before["nll"], "the head trained a different number of epochs"


@pytest.mark.slow
def test_table6_holdout_heads_are_compared_with_train_set_heads_on_the_same_members(tmp_path):
    record = experiment.run_experiment(
        "table6_head_init", "smoke", seed=0, out_dir=tmp_path, overrides={"head_l2s": (0.0,)}, verbose=False
    )
    for tag in ("fmnist", "tng"):
        result = record["metrics"][tag]
        assert result["head_data"] == {"protocol": "holdout", "members_train": 240, "head_train": 80}
        assert set(result["heads"]) == {"random", "copy", "copy_hand", "copy_auto"}
        assert set(result["train_set_heads"]) == {"copy_hand", "copy_auto"}
        held, thesis = result["heads"]["copy_hand"]["none"], result["train_set_heads"]["copy_hand"]["none"]
        assert held["downscale"] == thesis["downscale"] == 6.0, "same members, same copied start"
        assert held["initial_val_nll"] == pytest.approx(thesis["initial_val_nll"])
        assert held["curves"] != thesis["curves"], "the two heads trained on the same data"
    table = tmp_path / "table6_head_init" / "table6_head_init_smoke_head_data.md"
    assert "held-out" in table.read_text() and "members' training set (thesis)" in table.read_text()
    module = experiment.load_module("table6_head_init")
    judged = {f.claim.id: f for f in findings.judge_all(module.NAME, module.CLAIMS, [record])}
    assert {f"{tag}_holdout_{init}_{c}" for tag in ("fmnist", "tng") for init in ("copy_hand", "copy_auto")
            for c in ("higher_accuracy", "lower_nll")} <= set(judged)
    assert {f.verdict for f in judged.values()} == {"not judged"}
    with pytest.raises(ValueError, match="`head_data` must be 'train' or 'holdout'"):
        experiment.run_experiment(
            "table6_head_init", "smoke", seed=0, out_dir=tmp_path, overrides={"head_data": "test"}, verbose=False,
            render=False,
        )


@pytest.mark.slow
def test_table8_holdout_head_is_scored_beside_the_train_set_head_on_the_same_members(tmp_path):
    overrides = {"sizes": ((2_837_000, 0.2),), "head_holdout_size": 0.25}
    record = experiment.run_experiment(
        "table8_9_size_sweep", "smoke", seed=0, out_dir=tmp_path, overrides=overrides, verbose=False
    )
    result = record["metrics"]["results"]["2837000"]
    supermodel = result["supermodel"]
    assert supermodel["head_data"] == {"members_train": 360, "head_train": 120}
    assert {"val_accuracy", "val_nll", "accuracy", "nll"} <= set(supermodel["train_set_head"])
    assert supermodel["train_set_head"]["val_nll"] != supermodel["val_nll"], "the two heads trained on the same data"
    table = (tmp_path / "table8_9_size_sweep" / "table8_9_size_sweep_smoke_head_data.md").read_text()
    assert "held-out" in table and "members' training set (thesis)" in table
    with pytest.raises(ValueError, match="`head_data` must be 'train' or 'holdout'"):
        experiment.run_experiment(
            "table8_9_size_sweep", "smoke", seed=0, out_dir=tmp_path, overrides=dict(overrides, head_data="test"),
            verbose=False, render=False,
        )


@pytest.mark.parametrize(
    "boost_cpu_seconds, expected_epoch, expected_val",
    [([3.0, 3.0], 2, 0.2), ([15.0], 3, 0.3), ([20.0], 4, 0.4), ([40.0], None, None)],
)
def test_boost_is_compared_with_normal_training_at_the_cpu_time_it_ends(boost_cpu_seconds, expected_epoch, expected_val):
    """Five normal epochs of 10 CPU-s; a boost of the epoch-2 snapshot starts at 20 s."""
    from supernet_lab.experiments._conv import same_cpu_time

    result = same_cpu_time([0.1, 0.2, 0.3, 0.4, 0.5], [10.0] * 5, 2, boost_cpu_seconds)
    assert result == {
        "boost_end_cpu_s": 20.0 + sum(boost_cpu_seconds),
        "normal_epoch_same_cpu_time": expected_epoch,
        "normal_val_same_cpu_time": expected_val,
    }


@pytest.mark.slow
def test_fge_learning_rate_is_chosen_by_the_validation_nll_of_a_short_run():
    import dataclasses

    import keras

    from supernet import data
    from supernet.models import thesis_cnn
    from supernet_lab.experiments._conv import SMOKE_FGE, FGEConfig, choose_fge_lr

    config = FGEConfig(
        dataset="synthetic", validation_size=16, **{**SMOKE_FGE, "fge_lr_grid": (1e-3, 1e-2), "bn_update": False},
        fge_lr_max=1e-2, fge_lr_min=5e-4,
    )
    ds = data.load("synthetic", validation_size=16, num_train=48, num_test=8, input_shape=(8, 8, 3), num_classes=3)
    keras.utils.set_random_seed(0)
    base = thesis_cnn(input_shape=(8, 8, 3), num_classes=3)
    chosen, choice = choose_fge_lr(base, ds, config, seed=1)
    nll = choice["validation_nll"]
    assert sorted(nll) == ["0.001", "0.01"] and all(v > 0 for v in nll.values())
    assert choice["fge_lr_max"] == float(min(nll, key=nll.get)) == chosen.fge_lr_max
    assert chosen.fge_lr_min == pytest.approx(chosen.fge_lr_max * 5e-4 / 1e-2)
    assert dataclasses.replace(chosen, fge_lr_max=1e-2, fge_lr_min=5e-4) == config, "only the rates change"
    # A rate that blows the weights up scores None and loses.
    _, choice = choose_fge_lr(base, ds, dataclasses.replace(config, fge_lr_grid=(1e-3, 1e12)), seed=1)
    assert choice["validation_nll"]["1000000000000.0"] is None and choice["fge_lr_max"] == 1e-3
    assert choose_fge_lr(base, ds, dataclasses.replace(config, fge_lr_grid=()), seed=1) == (
        dataclasses.replace(config, fge_lr_grid=()), {}
    )
    no_validation = data.load("synthetic", validation_size=0, num_train=48, num_test=8, input_shape=(8, 8, 3), num_classes=3)
    with pytest.raises(ValueError, match="needs a validation split"):
        choose_fge_lr(base, no_validation, config, seed=1)


@pytest.mark.slow
def test_starsse_source_checkpoints_are_checked_against_their_records(tmp_path):
    import json

    from supernet_lab.experiments import starsse_sources
    from supernet_lab.experiments.starsse_sources import checkpoint_path, load_checkpoints, source_task

    for seed in (0, 1):
        record = experiment.run_experiment("starsse_sources", "smoke", seed=seed, out_dir=tmp_path, verbose=False)
        path = checkpoint_path(tmp_path, "smoke", seed)
        info = json.loads(path.with_suffix(".json").read_text())
        assert info["sha256"] == record["metrics"]["sha256"] == starsse_sources.sha256(path)
    config = starsse_sources.PRESETS["smoke"]
    _, _, x_test, y_test = source_task(config)
    folder = checkpoint_path(tmp_path, "smoke", 0).parent
    models, infos = load_checkpoints(folder, 2, config.source_classes, x_test, y_test)
    assert [i["seed"] for i in infos] == [0, 1]
    assert [i["checked_accuracy"] for i in infos] == pytest.approx([i["source_accuracy"] for i in infos], abs=1e-9)
    assert models[0].output_shape == (None, 2)

    with pytest.raises(ValueError, match="3 source checkpoints needed, 2 found"):
        load_checkpoints(folder, 3, config.source_classes, x_test, y_test)
    with pytest.raises(ValueError, match=r"trained on classes \[0, 1\], not \[3, 4\]"):
        load_checkpoints(folder, 2, (3, 4), x_test, y_test)
    entry = folder / "smoke-seed1.json"
    info = json.loads(entry.read_text())
    entry.write_text(json.dumps(dict(info, source_accuracy=info["source_accuracy"] + 0.2)))
    with pytest.raises(ValueError, match="its record says"):
        load_checkpoints(folder, 2, config.source_classes, x_test, y_test)
    entry.write_text(json.dumps(info))
    with open(folder / "smoke-seed1.keras", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="does not match the SHA-256"):
        load_checkpoints(folder, 2, config.source_classes, x_test, y_test)


@pytest.mark.slow
def test_starsse_transfer_fine_tunes_the_recorded_source_checkpoints(tmp_path):
    from supernet_lab.experiments.starsse_sources import checkpoint_path

    for seed in (0, 1):
        experiment.run_experiment("starsse_sources", "smoke", seed=seed, out_dir=tmp_path, verbose=False)
    overrides = {
        "source": "files", "source_dir": str(checkpoint_path(tmp_path, "smoke", 0).parent), "source_classes": (0, 1),
        "target_classes": (2, 3), "fge_grid": ((1.0, 1.0), (2.0, 1.0)), "grid_peft": True,
    }
    record = experiment.run_experiment("starsse_transfer", "smoke", seed=0, out_dir=tmp_path, overrides=overrides, verbose=False)
    pretrain = record["metrics"]["pretrain"]
    assert [c["seed"] for c in pretrain["checkpoints"]] == [0, 1] and pretrain["global_de"] is True
    methods = record["metrics"]["methods"]
    assert {"local_de", "global_de", "sse", "star_sse", "peft_star_sse"} <= set(methods)
    assert methods["peft_star_sse"]["best_point"] == methods["star_sse"]["best_point"]


@pytest.mark.slow
def test_pretrained_fge_lr_reuses_the_choice_for_the_same_net(tmp_path, monkeypatch):
    import dataclasses

    import keras

    from supernet import data
    from supernet.models import thesis_cnn
    from supernet_lab.experiments import _conv
    from supernet_lab.experiments._conv import SMOKE_FGE, PretrainedConfig, fge_lr_text, pretrained_fge_lr

    # One rate and no BN refresh keep the three searches cheap; what is tested is the cache.
    config = PretrainedConfig(
        dataset="synthetic", validation_size=16, **{**SMOKE_FGE, "fge_lr_grid": (1e-2,), "bn_update": False}
    )
    ds = data.load("synthetic", validation_size=16, num_train=48, num_test=8, input_shape=(8, 8, 3), num_classes=3)
    keras.utils.set_random_seed(0)
    base = thesis_cnn(input_shape=(8, 8, 3), num_classes=3)
    searches = []
    search = _conv.choose_fge_lr
    monkeypatch.setattr(_conv, "choose_fge_lr", lambda *a, **k: searches.append(1) or search(*a, **k))

    def context(name):
        return experiment.RunContext(
            name, "cpu", tmp_path / "runs" / name, tmp_path, reports.StageTimer(), verbose=False, config=config
        )

    first, choice = pretrained_fge_lr(base, ds, config, context("table13_fge_supernet"), seed=99)
    again, reused = pretrained_fge_lr(base, ds, config, context("fig20_21_agreement"), seed=99)
    assert searches == [1], "the second experiment searched again"
    assert first == again and first.fge_lr_max == choice["fge_lr_max"] == 1e-2
    assert choice["cached"] is False and reused == dict(choice, cached=True)
    pretrained_fge_lr(base, ds, config, context("fig20_21_agreement"), seed=100)
    pretrained_fge_lr(base, ds, dataclasses.replace(config, cache=False), context("fig20_21_agreement"), seed=99)
    assert searches == [1, 1, 1], "another search seed, or no cache, searches"

    records = [{"metrics": {"fge_lr_choice": c}} for c in (choice, reused)]
    text = fge_lr_text(dataclasses.asdict(config), records)
    assert f"took {choice['cpu_s']:.0f} CPU-s per seed" in text and "1 seed(s) reused the choice" in text


@pytest.mark.slow
def test_table6_runs_one_dataset_when_asked(tmp_path):
    record = experiment.run_experiment(
        "table6_head_init", "smoke", seed=0, out_dir=tmp_path, overrides={"stages": ("tng",), "head_l2s": (0.0,)},
        verbose=False,
    )
    assert set(record["metrics"]) == {"tng"}
    table = (tmp_path / "table6_head_init" / "table6_head_init_smoke.md").read_text()
    assert "This preset runs 20 Newsgroups only." in table
    # Only the columns name the dataset it did not run; the caption and footnotes do not.
    text = [line for line in table.splitlines() if not line.startswith("|")]
    assert not [line for line in text if "F-MNIST" in line or "Fashion-MNIST" in line]
    module = experiment.load_module("table6_head_init")
    judged = {f.claim.id for f in findings.judge_all(module.NAME, module.CLAIMS, [record])}
    assert judged and all(claim.startswith("tng_") for claim in judged)


@pytest.mark.parametrize("stages", [(), ("fmnist", "cifar10")])
def test_table6_rejects_unknown_stages(tmp_path, stages):
    with pytest.raises(ValueError, match="`stages` must be a non-empty subset of"):
        experiment.run_experiment(
            "table6_head_init", "smoke", seed=0, out_dir=tmp_path, overrides={"stages": stages}, verbose=False,
            render=False,
        )
