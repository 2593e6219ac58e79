import json
import multiprocessing
import time
import warnings

import numpy as np
import pytest

from supernet import reports

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- StageTimer ------------------------------------------------------------


def _busy(seconds):
    # Spins for `seconds` of this process's CPU time (not wall time), so the
    # assertions hold on a loaded machine too.
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1
    return x


def test_stage_timer_busy_and_sleep():
    timer = reports.StageTimer()
    with timer.stage("busy"):
        _busy(0.15)
    with timer.stage("sleep"):
        time.sleep(0.2)
    d = timer.as_dict()
    assert list(d) == ["busy", "sleep"]
    assert d["busy"]["wall_s"] >= 0.15
    assert d["busy"]["cpu_s"] > 0.05
    assert d["sleep"]["wall_s"] >= 0.2
    assert d["sleep"]["cpu_s"] < 0.5 * d["sleep"]["wall_s"]
    total = timer.total
    assert total["wall_s"] == pytest.approx(
        d["busy"]["wall_s"] + d["sleep"]["wall_s"]
    )


def test_stage_timer_accumulates_and_nests():
    timer = reports.StageTimer()
    for _ in range(2):
        with timer.stage("sleep"):
            time.sleep(0.05)
    assert timer.as_dict()["sleep"]["wall_s"] >= 0.1
    with timer.stage("outer"):
        with timer.stage("inner"):
            time.sleep(0.05)
        with pytest.raises(ValueError, match="already running"):
            with timer.stage("outer"):
                pass
    d = timer.as_dict()
    # Nested time is counted once in the total.
    assert timer.total["wall_s"] == pytest.approx(
        d["sleep"]["wall_s"] + d["outer"]["wall_s"]
    )
    assert d["inner"]["wall_s"] <= d["outer"]["wall_s"]


def test_stage_timer_records_time_when_body_raises():
    timer = reports.StageTimer()
    with pytest.raises(RuntimeError):
        with timer.stage("fails"):
            time.sleep(0.02)
            raise RuntimeError("boom")
    assert timer.as_dict()["fails"]["wall_s"] >= 0.02


# --- records and store -----------------------------------------------------


def test_make_record_converts_numpy_and_nan():
    rec = reports.make_record(
        experiment="demo",
        preset="smoke",
        config={"sizes": (3, 4), "lr": np.float32(0.5)},
        seed=np.int64(7),
        metrics={"acc": np.float64(0.25), "nll": float("nan"),
                 "cm": np.eye(2, dtype=np.int32), "inf": np.inf},
        timings={"train": {"wall_s": 1.0, "cpu_s": 2.0}},
        extra={"started_utc": "2020-01-01T00:00:00+00:00"},
    )
    assert rec["seed"] == 7 and type(rec["seed"]) is int
    assert rec["config"] == {"sizes": [3, 4], "lr": 0.5}
    assert rec["metrics"] == {"acc": 0.25, "nll": None,
                              "cm": [[1, 0], [0, 1]], "inf": None}
    assert rec["status"] == "ok"
    assert rec["started_utc"] == "2020-01-01T00:00:00+00:00"
    for key in ("git_commit", "git_dirty", "backend", "versions",
                "hostname", "cpu_count", "time_utc"):
        assert key in rec
    assert {"python", "numpy", "sklearn"} <= set(rec["versions"])
    json.dumps(rec, allow_nan=False)
    with pytest.raises(ValueError, match="extra"):
        reports.make_record(experiment="d", preset="p", config={}, seed=0,
                            metrics={}, timings={}, extra={"seed": 1})
    with pytest.raises(TypeError, match="config.fn"):
        reports.make_record(experiment="d", preset="p", config={"fn": print},
                            seed=0, metrics={}, timings={})


def test_store_round_trip(tmp_path):
    store = reports.ResultsStore(tmp_path / "a" / "b" / "runs.jsonl")
    assert store.read() == [] and len(store) == 0
    store.append({"seed": np.int32(1), "metrics": {"acc": np.float32(0.5),
                                                   "loss": np.nan},
                  "note": "line\nbreak"})
    store.append({"seed": 2, "metrics": {"acc": 0.75, "loss": 1.0}})
    raw = store.path.read_text()
    assert raw.count("\n") == 2 and raw.endswith("\n")
    assert store.read() == [
        {"seed": 1, "metrics": {"acc": 0.5, "loss": None}, "note": "line\nbreak"},
        {"seed": 2, "metrics": {"acc": 0.75, "loss": 1.0}},
    ]
    assert [r["seed"] for r in store] == [1, 2]


def test_store_skips_truncated_last_line(tmp_path):
    store = reports.ResultsStore(tmp_path / "runs.jsonl")
    store.append({"seed": 0})
    store.append({"seed": 1})
    full = json.dumps({"seed": 2, "metrics": {"acc": 0.9}})
    with open(store.path, "a") as f:  # a run killed mid-write
        f.write(full[: len(full) // 2])
    with pytest.warns(UserWarning, match="truncated last line"):
        assert store.read() == [{"seed": 0}, {"seed": 1}]
    # The next append starts a fresh line: the new record survives and the
    # fragment stays a (skipped) line of its own.
    store.append({"seed": 3})
    with pytest.warns(UserWarning, match="bad line"):
        assert store.read() == [{"seed": 0}, {"seed": 1}, {"seed": 3}]


def test_store_keeps_complete_last_line_without_newline(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"seed": 0}\n\n{"seed": 1}')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reports.ResultsStore(path).read() == [{"seed": 0}, {"seed": 1}]


def _append_many(path, worker, count):
    store = reports.ResultsStore(path)
    for i in range(count):
        # ~3 KB per line so writes are not trivially small.
        store.append({"worker": worker, "i": i, "pad": "x" * 3000})


def test_store_concurrent_appends(tmp_path):
    path = str(tmp_path / "runs.jsonl")
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    procs = [ctx.Process(target=_append_many, args=(path, w, 50)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with open(path) as f:
        lines = f.read().split("\n")
    assert lines[-1] == "" and len(lines) == 201
    records = [json.loads(line) for line in lines[:-1]]
    assert sorted((r["worker"], r["i"]) for r in records) == [
        (w, i) for w in range(4) for i in range(50)
    ]


# --- aggregation and formatting -------------------------------------------


def _fake_records():
    records = []
    accs = {2: [0.80, 0.82, 0.87], 4: [0.90, 0.91, 0.95]}
    for members, values in accs.items():
        for seed, acc in enumerate(values):
            records.append({
                "experiment": "demo", "preset": "smoke", "seed": seed,
                "status": "ok", "config": {"num_members": members},
                "metrics": {"ensemble": {"accuracy": acc},
                            "nll": None if seed == 0 else 0.1 * seed},
            })
    records.append({"experiment": "demo", "preset": "smoke", "seed": 3,
                    "status": "error: OOM", "config": {"num_members": 4},
                    "metrics": {}})
    records.append({"experiment": "demo", "preset": "smoke", "seed": 0,
                    "status": "error: diverged", "config": {"num_members": 8},
                    "metrics": {}})
    return records


def test_aggregate_hand_computed():
    groups = reports.aggregate(
        _fake_records(),
        by=["preset", "config.num_members"],
        metrics=["metrics.ensemble.accuracy", "metrics.nll"],
    )
    assert [g["group"] for g in groups] == [
        {"preset": "smoke", "config.num_members": 2},
        {"preset": "smoke", "config.num_members": 4},
        {"preset": "smoke", "config.num_members": 8},
    ]
    g2, g4, g8 = groups
    acc2 = g2["metrics"]["metrics.ensemble.accuracy"]
    assert acc2["n"] == 3 and acc2["values"] == [0.80, 0.82, 0.87]
    assert acc2["mean"] == pytest.approx(0.83)
    # Sample std: deviations -0.03, -0.01, 0.04 -> sqrt(0.0026 / 2).
    assert acc2["std"] == pytest.approx(np.sqrt(0.0026 / 2))
    acc4 = g4["metrics"]["metrics.ensemble.accuracy"]
    assert acc4["mean"] == pytest.approx(0.92)
    assert acc4["std"] == pytest.approx(np.sqrt((0.0004 + 0.0001 + 0.0009) / 2))
    assert (g2["failed"], g4["failed"], g8["failed"]) == (0, 1, 1)
    assert (g2["n_runs"], g4["n_runs"], g8["n_runs"]) == (3, 3, 0)
    nll = g2["metrics"]["metrics.nll"]
    assert nll["n"] == 2 and nll["missing"] == 1
    assert nll["mean"] == pytest.approx(0.15)
    empty = g8["metrics"]["metrics.ensemble.accuracy"]
    assert empty["n"] == 0 and empty["mean"] is None and empty["std"] is None


def test_aggregate_single_run_and_string_guard():
    recs = [{"status": "ok", "metrics": {"acc": 0.5}}]
    stat = reports.aggregate(recs, by=[], metrics=["metrics.acc"])[0]
    assert stat["metrics"]["metrics.acc"]["std"] is None
    with pytest.raises(TypeError):
        reports.aggregate(recs, by="preset", metrics=["metrics.acc"])


@pytest.mark.parametrize(
    "args, kwargs, expected",
    [
        ((0.91364, 0.0012, 3), {"scale": 100}, "91.36 ± 0.12"),
        ((0.91364, 0.0012, 1), {"scale": 100}, "91.36"),
        ((0.91364, None, 3), {"scale": 100}, "91.36"),
        ((0.5, float("nan"), 2), {}, "0.50"),
        ((1.23456, 0.01, 2), {"digits": 3}, "1.235 ± 0.010"),
        ((None,), {}, "—"),
        ((float("nan"), 0.1, 3), {}, "—"),
    ],
)
def test_format_mean_std(args, kwargs, expected):
    assert reports.format_mean_std(*args, **kwargs) == expected


# --- tables ----------------------------------------------------------------


EXPECTED_MD = """\
### Table 6: Last layer init (demo)

Test accuracy [%], mean ± std over 3 seeds, preset `smoke`. Thesis numbers: thesis Table 6.

| Members | Thesis | Ours |
| --- | --- | --- |
| 2 | 83.10 | 83.00 ± 3.61 [1] |
| 4 | 92.50 | 92.00 ± 2.65 |
| 8 | 95.00 | — [2] |

1. 3 seeds instead of 10; 50% of the epochs
2. failed runs: 1 (a\\|b)
"""

EXPECTED_TEX = r"""\begin{table}[ht]
\centering
\caption{Table 6: Last layer init (demo) Test accuracy [\%], mean $\pm$ std over 3 seeds, preset `smoke`. Thesis numbers: thesis Table 6.}
\label{tab:table6}
\begin{tabular}{lrr}
\toprule
Members & Thesis & Ours \\
\midrule
2 & 83.10 & 83.00 $\pm$ 3.61 [1] \\
4 & 92.50 & 92.00 $\pm$ 2.65 \\
8 & 95.00 & --- [2] \\
\bottomrule
\end{tabular}
\par\smallskip
{\footnotesize [1] 3 seeds instead of 10; 50\% of the epochs}\\
{\footnotesize [2] failed runs: 1 (a|b)}\\
\end{table}
"""


def test_results_to_table_round_trip(tmp_path):
    store = reports.ResultsStore(tmp_path / "results" / "runs.jsonl")
    for rec in _fake_records():
        store.append(rec)
    groups = reports.aggregate(store.read(), by=["config.num_members"],
                               metrics=["metrics.ensemble.accuracy"])
    thesis = {2: 83.1, 4: 92.5, 8: 95.0}
    table = reports.Table(
        title="Table 6: Last layer init (demo)",
        columns=["Members", "Thesis", "Ours"],
        rows=[],
        caption="Test accuracy [%], mean ± std over 3 seeds, preset `smoke`.",
        source="thesis Table 6",
    )
    for g in groups:
        members = g["group"]["config.num_members"]
        s = g["metrics"]["metrics.ensemble.accuracy"]
        ours = reports.format_mean_std(s["mean"], s["std"], s["n"], scale=100)
        if members == 2:
            ours += " " + table.footnote("3 seeds instead of 10; 50% of the epochs")
        if g["n_runs"] == 0:
            ours += " " + table.footnote(f"failed runs: {g['failed']} (a|b)")
        table.rows.append([members, f"{thesis[members]:.2f}", ours])
    assert table.footnote("3 seeds instead of 10; 50% of the epochs") == "[1]"

    assert reports.to_markdown(table) == EXPECTED_MD
    paths = reports.write_table(table, tmp_path / "tables" / "table6")
    assert [p.name for p in paths] == ["table6.md", "table6.tex"]
    assert paths[0].read_text(encoding="utf-8") == EXPECTED_MD
    assert paths[1].read_text(encoding="utf-8") == EXPECTED_TEX


def test_latex_escapes_specials_and_checks_width():
    table = reports.Table("A_b & c", ["x#", "y"], [["5% $1 {z} ~ ^", None],
                                                   [r"a\b", float("nan")]])
    tex = reports.to_latex(table)
    assert r"\caption{A\_b \& c}" in tex
    assert r"x\# & y \\" in tex
    assert (r"5\% \$1 \{z\} \textasciitilde{} \textasciicircum{} & --- \\"
            in tex)
    assert r"a\textbackslash{}b & --- \\" in tex
    bad = reports.Table("t", ["a", "b"], [["only one"]])
    with pytest.raises(ValueError, match="2 columns"):
        reports.to_markdown(bad)


# --- figures ---------------------------------------------------------------


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == PNG_MAGIC


def test_plot_curves(tmp_path):
    histories = {f"member {i}": {"val_accuracy": list(0.5 + 0.1 * np.log1p(
        np.arange(10) + i))} for i in range(3)}
    histories["no metric"] = {"loss": [1.0, 0.5]}
    path = reports.plot_curves(
        histories, "val_accuracy", tmp_path / "figs" / "curves.png",
        title="Fig. 7", markers={"SuperNet": (10, 0.8)},
    )
    assert path == tmp_path / "figs" / "curves.png" and _is_png(path)
    with pytest.raises(ValueError, match="metric"):
        reports.plot_curves(histories, "nope", tmp_path / "x.png")


def test_plot_curves_against_given_x_values(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(reports, "_save", lambda fig, path: figures.append(fig) or path)
    histories = {"normal": {"acc": [0.5, 0.6, 0.7]}, "boost": {"acc": [0.65, 0.72]}}
    reports.plot_curves(histories, "acc", tmp_path / "t.png", xlabel="CPU seconds", x={"boost": [40.0, 45.5]})
    normal, boost = figures[0].axes[0].lines
    np.testing.assert_array_equal(normal.get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(boost.get_xdata(), [40.0, 45.5])
    np.testing.assert_array_equal(boost.get_ydata(), [0.65, 0.72])
    with pytest.raises(ValueError, match="2 values of `acc` but 3 x values"):
        reports.plot_curves(histories, "acc", tmp_path / "t.png", x={"boost": [1, 2, 3]})


def test_plot_agreement_matrix(tmp_path):
    m = np.array([[100.0, 91.2, 88.0], [91.2, 100.0, 90.5],
                  [88.0, 90.5, 100.0]])
    path = reports.plot_agreement_matrix(m, ["A", "B", "C"],
                                         tmp_path / "agree.png", title="Fig. 20")
    assert _is_png(path)
    with pytest.raises(ValueError, match="square"):
        reports.plot_agreement_matrix(m[:2], ["A", "B"], tmp_path / "bad.png")


def test_plot_loss_histogram(tmp_path):
    rng = np.random.default_rng(0)
    losses = {"member": np.exp(rng.uniform(-25, 3, size=500)),
              "SuperNet": np.concatenate([np.zeros(10), rng.exponential(0.1, 300)])}
    path = reports.plot_loss_histogram(losses, tmp_path / "hist.png", bins=30)
    assert _is_png(path)


def test_plot_embedding_separated_clusters(tmp_path):
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=20.0, size=(3, 16))
    labels = np.repeat(np.arange(3), 100)
    acts = centers[labels] + rng.normal(size=(300, 16))
    path = tmp_path / "emb.png"
    acc = reports.plot_embedding(acts, labels, path, title="Fig. 3",
                                 max_points=200, seed=1)
    assert _is_png(path)
    assert 0.95 <= acc <= 1.0


def test_plot_embedding_random_labels_are_not_separable(tmp_path):
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(150, 8))
    one_hot = np.eye(3)[rng.integers(0, 3, size=150)]
    acc = reports.plot_embedding(acts, one_hot, tmp_path / "emb.png")
    assert acc < 0.6


def test_subsample_is_stratified_and_seeded():
    labels = np.array([0] * 900 + [1] * 100)
    idx = reports._subsample(labels, 100, seed=3)
    assert len(idx) == 100 and len(set(idx)) == 100
    assert np.sum(labels[idx] == 1) == 10
    assert np.array_equal(idx, reports._subsample(labels, 100, seed=3))
    assert not np.array_equal(idx, reports._subsample(labels, 100, seed=4))


def test_get_path_hand_values():
    record = {"metrics": {"rows": {"supernet": {"test_accuracy": 0.9}}, "scalar": 3}}
    assert reports.get_path(record, "metrics.rows.supernet.test_accuracy") == 0.9
    assert reports.get_path(record, "metrics.rows.softmax.test_accuracy") is None
    # A path that walks through a non-dict value is missing, not an error.
    assert reports.get_path(record, "metrics.scalar.value") is None


def test_get_path_indexes_lists():
    record = {"metrics": {"members": [0.7, {"accuracy": 0.8}], "grid": {"0": 0.5}}}
    assert reports.get_path(record, "metrics.members.0") == 0.7
    assert reports.get_path(record, "metrics.members.1.accuracy") == 0.8
    assert reports.get_path(record, "metrics.grid.0") == 0.5  # a digit key of a dict stays a key
    assert reports.get_path(record, "metrics.members.2") is None
    assert reports.get_path(record, "metrics.members.first") is None
