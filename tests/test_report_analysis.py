"""Analysis behind the report: metrics on hand-made curves, the tidy loader and its missing-run policy,
normalisation, and the rliable wrapper against rliable called directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rliable import library as rly
from rliable import metrics as rm

from dapbench.analysis import aggregate as agg
from dapbench.analysis import claims
from dapbench.analysis.load import load_results
from dapbench.analysis.metrics import (
    alc,
    alc_by_steps,
    alc_trapezoid,
    alc_vs_baseline,
    evaluations,
    final_return,
    overheads,
    per_run,
)
from dapbench.analysis.normalise import load_table
from dapbench.analysis.power import detectability, z_sum
from dapbench.analysis.scores import common_tasks, curve_arrays, score_matrices
from dapbench.analysis.synthetic import write_run
from dapbench.errors import BadInputError, RunFolderError
from dapbench.results.store import RunStore, Status
from dapbench.suite import expand, load_suite
from dapbench.tasks.registry import TASKS
from tests.conftest import REPO, cli, write_suite

STEPS = 5000 * np.arange(1, 41)


# ----- per-run metrics on hand-made curves ------------------------------------------------------------------
def test_alc_on_hand_made_curves() -> None:
    y = np.arange(1, 41, dtype=float) ** 2  # y_i = i^2
    assert alc(y) == pytest.approx(41 * 81 / 6)  # (1/40) sum i^2 = 553.5
    # trapezoid: (sum y - (y_1 + y_40) / 2) / 39 intervals of equal width
    assert alc_trapezoid(STEPS, y) == pytest.approx((22140 - 1601 / 2) / 39)
    lin = 10.0 * np.arange(1, 51)  # 50 evaluations: only the first 40 count
    assert alc(lin) == pytest.approx(205.0) and alc_trapezoid(5000 * np.arange(1, 51), lin) == pytest.approx(205.0)
    assert alc(np.full(40, 7.0)) == 7.0
    assert np.isnan(alc(np.ones(39))) and np.isnan(alc_trapezoid(STEPS[:39], np.ones(39))), "no shorter window"
    assert alc(np.arange(10.0), n=4) == pytest.approx(1.5)


def test_final_return_is_the_mean_of_the_last_evaluations_never_the_best() -> None:
    y = np.array([0, 5, 100, 5, 1, 2, 3, 4, 5], float)  # peak 100 mid-training
    assert final_return(y, 5) == pytest.approx(3.0)
    assert final_return(y, 1) == 5.0
    assert np.isnan(final_return(y[:3], 5))


def test_evaluations_skip_epochs_without_one() -> None:
    curve = pd.DataFrame({"env_steps": [3, 1, 2, 4], "eval_return_mean": [30.0, 10.0, np.nan, 40.0]})
    x, y = evaluations(curve)
    assert list(x) == [1, 3, 4] and list(y) == [10, 30, 40]


def test_per_run_metrics_overheads_and_ppo_normalised_alc(tmp_path: Path) -> None:
    # PPO: seed 0 costs 100 s, seed 1 200 s. PPO-DAP: 118 s and 240 s, so paired ratios are 1.18 and 1.20
    # (pairing the wrong seeds would give 0.59 and 2.4).
    up = np.arange(1, 46, dtype=float)
    write_run(tmp_path, "hopper", "ppo", 0, up, wall_clock_s=100, peak_rss_mb=500)
    write_run(tmp_path, "hopper", "ppo", 1, 3 * up, wall_clock_s=200, peak_rss_mb=500)
    write_run(tmp_path, "hopper", "ppo-dap", 0, 4 * up, wall_clock_s=118, peak_rss_mb=525,
              extra={"oglr": np.zeros(45), "spr": np.zeros(45), "ess_k": np.linspace(1, 0.5, 45)})
    write_run(tmp_path, "hopper", "ppo-dap", 1, 4 * up, wall_clock_s=240, peak_rss_mb=550,
              extra={"oglr": np.zeros(45), "spr": np.zeros(45), "ess_k": np.linspace(1, 0.5, 45)})
    res = load_results(tmp_path)
    audit = [k for k, v in res.declared.items() if v["audit"]]
    runs = per_run(res.curves, alc_n=40, final_n=5, metrics=audit).set_index(["label", "seed"])
    assert runs.loc[("ppo", 0), "alc"] == pytest.approx(20.5)  # mean of 1..40
    assert runs.loc[("ppo", 0), "final_return"] == pytest.approx(43.0)  # mean of 41..45
    assert runs.loc[("ppo", 1), "alc"] == pytest.approx(61.5)
    assert runs.loc[("ppo-dap", 0), "ess_k_mean"] == pytest.approx(0.75)
    assert runs.loc[("ppo-dap", 0), "ess_k_max"] == 1.0 and runs.loc[("ppo-dap", 1), "oglr_max"] == 0.0
    assert np.isnan(runs.loc[("ppo", 0), "ess_k_mean"]), "PPO logs no audit metrics"
    flat = runs.reset_index()
    ratio = alc_vs_baseline(flat, "ppo")  # ALC / mean PPO ALC on the task = ALC / 41
    assert ratio[(flat["label"] == "ppo-dap")].to_numpy() == pytest.approx([82 / 41, 82 / 41])
    ov = overheads(flat, "ppo").set_index("seed")
    assert ov["wall_clock_ratio"].to_dict() == pytest.approx({0: 1.18, 1: 1.20})
    assert ov["peak_rss_ratio"].to_dict() == pytest.approx({0: 1.05, 1: 1.10})
    assert ov["cuda_peak_ratio"].isna().all() and set(ov["label"]) == {"ppo-dap"}


def test_alc_picks_evaluations_by_environment_steps_and_flags_another_protocol(tmp_path: Path) -> None:
    """ALC@40 = the evaluations at 5k, 10k, ..., 200k steps. Epochs of 2,500 steps (80 evaluations by 200k) pick the
    same 40 points, never the first 40 evaluations; a run with fewer has none; another horizon is flagged."""
    y = np.arange(1, 81, dtype=float)
    write_run(tmp_path, "hopper", "half-epochs", 0, y, steps_per_epoch=2500)  # y at 2.5k k: ALC@40 = mean(2, 4, .., 80)
    write_run(tmp_path, "hopper", "protocol", 0, y[:40])
    write_run(tmp_path, "hopper", "short", 0, y[:39])
    write_run(tmp_path, "hopper", "own-horizon", 0, y[:40], horizon_steps=None)  # schedules scaled to 200k
    runs = per_run(load_results(tmp_path).curves).set_index("label")
    assert runs.loc["half-epochs", "alc"] == pytest.approx(np.arange(2, 81, 2).mean())  # not mean(1..40) = 20.5
    assert runs.loc["half-epochs", "alc_flag"] == "epochs of 2,500 steps, not 5,000"
    assert runs.loc["protocol", "alc"] == pytest.approx(20.5) and runs.loc["protocol", "alc_flag"] == ""
    assert runs.loc["protocol", "alc_steps"] == 200_000
    assert np.isnan(runs.loc["short", "alc"]), "39 evaluations: no ALC@40, never a shorter window"
    assert runs.loc["own-horizon", "alc"] == pytest.approx(20.5)
    assert runs.loc["own-horizon", "alc_flag"] == "schedules scaled to a 200k horizon, not 1M"
    assert alc_by_steps(STEPS, np.arange(1.0, 41.0)) == pytest.approx(20.5)
    assert np.isnan(alc_by_steps(STEPS[1:], np.arange(2.0, 41.0)))


def test_overhead_ratios_leave_evaluation_out(tmp_path: Path) -> None:
    """Both runs spend 50 s evaluating: wall-clock 100 vs 118 s is 1.18x in total but 68 / 50 = 1.36x in training,
    the work that differs; the ratios are of totals over the run."""
    up = np.arange(1, 41, dtype=float)
    write_run(tmp_path, "hopper", "ppo", 0, up, wall_clock_s=100, eval_s=50)
    write_run(tmp_path, "hopper", "ppo-dap", 0, up, wall_clock_s=118, eval_s=50)
    ov = overheads(per_run(load_results(tmp_path).curves), "ppo").iloc[0]
    assert ov["wall_clock_ratio"] == pytest.approx(1.18)
    assert ov["train_time_ratio"] == pytest.approx(68 / 50) and ov["cpu_time_ratio"] == pytest.approx(68 / 50)


# ----- the tidy loader -------------------------------------------------------------------------------------
def test_tidy_table_has_one_row_per_run_and_epoch_with_spec_fields(tmp_path: Path) -> None:
    for seed in (0, 1):
        write_run(tmp_path, "hopper", "ppo", seed, np.arange(5.0))
    res = load_results(tmp_path)
    assert len(res.curves) == 2 * 5 and res.warnings == []
    for col in ("suite", "task", "algorithm", "label", "seed", "total_steps", "steps_per_epoch", "evaluation_episodes",
                "spec_hash", "run", "epoch", "env_steps", "eval_return_mean"):
        assert col in res.curves.columns, col
    assert set(res.curves["suite"]) == {tmp_path.name}
    assert res.curves.groupby("run").size().to_dict() == {"hopper/ppo/seed_0": 5, "hopper/ppo/seed_1": 5}
    # evaluation episodes (10 per evaluation here) are inside a row: runs are the unit of every statistic
    s = score_matrices(per_run(res.curves, alc_n=2, final_n=2), "final_return", ["ppo"], ["hopper"])
    assert s.matrices["ppo"].shape == (2, 1)


def test_incomplete_runs_are_dropped_with_a_warning_or_fail(tmp_path: Path) -> None:
    write_run(tmp_path, "hopper", "ppo", 0, np.arange(5.0))
    write_run(tmp_path, "hopper", "ppo", 1, np.arange(3.0), epochs=5, state="failed")
    write_run(tmp_path, "hopper", "ppo", 2, np.arange(2.0), epochs=5, state="running")
    res = load_results(tmp_path, missing="drop")
    assert set(res.curves["seed"]) == {0}
    text = "\n".join(res.warnings)
    assert "dropped 2 of 3 runs" in text
    assert "hopper/ppo/seed_1: failed at epoch 3/5: TrainingError: synthetic failure" in text
    assert "hopper/ppo/seed_2: interrupted at epoch 2/5 (its process is gone; `run` resumes it)" in text
    assert res.runs.set_index("seed")["included"].to_dict() == {0: True, 1: False, 2: False}
    with pytest.raises(BadInputError, match=r"(?s)2 of 3 runs are not complete.*hopper/ppo/seed_1: failed"):
        load_results(tmp_path, missing="fail")


def test_runs_a_suite_expects_but_never_started_count_as_missing(tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "s.yaml", seeds=[0, 1])
    results = tmp_path / "r"
    spec = next(s for s in expand(load_suite(suite)) if s.seed == 0)
    store = RunStore(results / spec.relpath())
    store.init(spec)
    store.write_metrics([{"epoch": e, "env_steps": e * spec.steps_per_epoch, "eval_return_mean": float(e),
                          "wall_clock_s": 1.0 * e, "peak_rss_mb": 100.0} for e in range(1, spec.epochs + 1)])
    store.write_status(Status(state="done", epoch=spec.epochs, epochs=spec.epochs))
    res = load_results(results, suite=suite)
    assert "hopper/ppo/seed_1: missing (no run folder)" in "\n".join(res.warnings)
    assert set(res.curves["suite"]) == {load_suite(suite).name}
    with pytest.raises(BadInputError, match="1 of 2 runs are not complete"):
        load_results(results, suite=suite, missing="fail")
    # another suite's run in the same results folder: left out of this suite's report, and said so
    write_run(results, "hopper", "ppo", 7, np.arange(5.0))
    res = load_results(results, suite=suite)
    assert 7 not in set(res.runs["seed"]) and "left out 1 run folders outside" in "\n".join(res.warnings)
    assert 7 in set(load_results(results).runs["seed"]), "without --suite every run folder counts"


def test_bad_results_folders_give_one_clear_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(BadInputError, match=f"{tmp_path / 'nope'}: no such results folder"):
        load_results(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no run folders in it"):
        load_results(tmp_path / "empty")
    run = write_run(tmp_path / "r", "hopper", "ppo", 0, np.arange(5.0))
    (run / "metrics.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(RunFolderError, match=f"{run / 'metrics.parquet'}: corrupt metrics table"):
        load_results(tmp_path / "r")
    capsys.readouterr()
    assert cli("report", tmp_path / "r", "-o", tmp_path / "out", "--reps", 10) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "metrics.parquet: corrupt metrics table" in err and not (tmp_path / "out").exists()
    assert cli("report", tmp_path / "empty", "--reps", 0) == 2
    assert "--reps: Input should be greater than 0" in " ".join(capsys.readouterr().err.split())
    write_run(tmp_path / "dup", "hopper", "ppo", 0, np.arange(5.0))
    with pytest.raises(BadInputError, match="appears twice"):
        load_results([tmp_path / "dup", tmp_path / "dup" / "hopper"])


# ----- normalisation ---------------------------------------------------------------------------------------
def test_normalisation_table_covers_every_task_with_sources() -> None:
    table = load_table()
    assert set(TASKS) <= set(table.tasks)
    hopper = table.tasks["hopper"]
    for name in TASKS:  # every task: the final evaluation of its committed behaviour run (docs/datasets.md)
        t = table.tasks[name]
        final = pd.read_parquet(REPO / "results" / "behaviour" / name / "ppo" / "seed_0" / "metrics.parquet")
        assert t.reference_kind == "measured" and t.usable, name
        assert t.reference_return == pytest.approx(final["eval_return_mean"].iloc[-1], abs=1e-5), name
    assert table.normalise("hopper", hopper.random_return) == pytest.approx(0.0)
    assert table.normalise("hopper", hopper.reference_return) == pytest.approx(1.0)
    for name, t in table.tasks.items():
        assert t.random_return is not None and "dapbench tasks measure" in t.random_source, name
        assert t.reference_source, name
        assert t.usable == (t.reference_kind is not None), name


# ----- the rliable wrapper -----------------------------------------------------------------------------------
def test_vectorised_statistics_equal_rliable_metrics() -> None:
    rng = np.random.default_rng(0)
    for shape in [(10, 6), (3, 1), (5, 8), (4, 3)]:
        x = rng.normal(size=shape).round(1)  # rounding makes ties, which P(X > Y) counts as half
        y = rng.normal(size=(7, shape[1])).round(1)
        assert agg.iqm(x) == pytest.approx(rm.aggregate_iqm(x))
        assert agg.mean(x) == pytest.approx(rm.aggregate_mean(x))
        assert agg.median(x) == pytest.approx(rm.aggregate_median(x))
        assert agg.optimality_gap(x) == pytest.approx(rm.aggregate_optimality_gap(x))
        assert agg.probability_of_improvement(x, y) == pytest.approx(rm.probability_of_improvement(x, y))
        assert agg.probability_of_improvement(x, x) == pytest.approx(0.5)
        taus = np.linspace(-2, 2, 9)
        assert agg.score_distribution(x, taus) == pytest.approx(rly.score_distributions(x, taus))


def test_aggregates_on_a_known_matrix_equal_rliable_called_directly() -> None:
    # 4 runs x 3 tasks. IQM: the middle 6 of the 12 values (0.4 .. 0.9) average 0.65; task means 0.25, 0.65, 1.05
    # give mean and median 0.65; optimality gap = 1 - mean(min(score, 1)) = 1 - 7.5 / 12 = 0.375
    a = np.array([[0.1, 0.5, 0.9], [0.2, 0.6, 1.0], [0.3, 0.7, 1.1], [0.4, 0.8, 1.2]])
    b = a[::-1] * 0.5
    scores, reps, seed = {"a": a, "b": b}, 100, 7
    points, cis = agg.aggregate_metrics(scores, reps, seed)
    assert points["a"] == pytest.approx([0.65, 0.65, 0.65, 0.375])

    def rliable_four(x: np.ndarray) -> np.ndarray:
        return np.array([rm.aggregate_iqm(x), rm.aggregate_mean(x), rm.aggregate_median(x),
                         rm.aggregate_optimality_gap(x)])

    state = np.random.get_state()
    np.random.seed(seed)
    ref_points, ref_cis = rly.get_interval_estimates(scores, rliable_four, reps=reps)
    for k in scores:
        assert points[k] == pytest.approx(ref_points[k]) and cis[k] == pytest.approx(ref_cis[k])
    np.random.set_state(state)
    # fixed random state: the same again, and the caller's global RNG untouched
    before = np.random.get_state()[1].copy()
    again = agg.aggregate_metrics(scores, reps, seed)[1]
    assert all(np.array_equal(again[k], cis[k]) for k in scores)
    assert np.array_equal(np.random.get_state()[1], before)

    pp, pci = agg.improvement_probabilities(scores, "a", reps, seed)
    np.random.seed(seed)
    rp, rci = rly.get_interval_estimates({"a,b": (a, b)}, rm.probability_of_improvement, reps=reps)
    assert pp["a,b"] == pytest.approx(rp["a,b"]) and pci["a,b"] == pytest.approx(rci["a,b"])

    taus = np.linspace(0, 1.2, 13)
    prof, prof_ci = agg.performance_profiles(scores, taus, reps, seed)
    np.random.seed(seed)
    rprof, rprof_ci = rly.create_performance_profile(scores, taus, reps=reps)
    for k in scores:
        assert prof[k] == pytest.approx(rprof[k]) and prof_ci[k] == pytest.approx(rprof_ci[k])

    curves = {"a": np.stack([a, a + 0.1, a + 0.2], axis=-1)}
    se, se_ci = agg.sample_efficiency(curves, reps, seed)
    np.random.seed(seed)
    rse, rse_ci = rly.get_interval_estimates(
        curves, lambda x: np.array([rm.aggregate_iqm(x[..., j]) for j in range(x.shape[-1])]), reps=reps)
    assert se["a"] == pytest.approx(rse["a"]) and se_ci["a"] == pytest.approx(rse_ci["a"])
    assert se["a"] == pytest.approx([0.65, 0.75, 0.85])


def test_score_matrices_need_equal_runs_per_task(tmp_path: Path) -> None:
    runs = pd.DataFrame({"task": ["hopper"] * 3 + ["ant"] * 2 + ["hopper"],
                         "label": ["x"] * 5 + ["y"], "seed": [2, 0, 1, 0, 1, 0],
                         "final_return": [3.0, 1.0, 2.0, 10.0, np.nan, 5.0]})
    assert common_tasks(runs, "final_return", ["x", "y"]) == ["hopper"]
    s = score_matrices(runs, "final_return", ["x"], ["ant", "hopper"])
    assert s.matrices["x"].tolist() == [[10.0, 1.0]], "one finite run on ant: the first seed of hopper"
    assert s.seeds["x"] == {"ant": [0], "hopper": [0]} and "left out: hopper 2 of 3" in s.notes[0]
    curves = pd.DataFrame({"task": "hopper", "label": "x", "seed": [0, 0, 0, 1, 1], "env_steps": [1, 2, 3, 1, 2],
                           "v": [1.0, 2.0, 3.0, 4.0, 5.0]})
    steps, arrays = curve_arrays(curves, score_matrices(runs.assign(task="hopper").iloc[1:3], "final_return", ["x"],
                                                         ["hopper"]), "v")
    assert list(steps) == [1, 2] and arrays["x"].tolist() == [[[1.0, 2.0]], [[4.0, 5.0]]]


def test_reconstructed_and_unregistered_algorithms_are_marked() -> None:
    from dapbench.registry import get_algorithm
    from dapbench.report.build import _reconstructions

    runs = pd.DataFrame({"label": ["mine", "abppo", "ppo"], "algorithm": ["not-registered", "abppo", "ppo"]})
    why = _reconstructions(runs)
    assert why["abppo"] == f"reconstruction: {get_algorithm('abppo').reconstruction}"
    assert "not registered in this installation" in why["mine"] and "ppo" not in why


# ----- how many seeds, and the paper's claims ---------------------------------------------------------------
def test_seeds_needed_match_the_normal_formula_on_data_with_a_known_effect() -> None:
    """a ~ N(1, 1), b ~ N(0, 1), 400 runs each: SE = sqrt(2 / 400), MDE = 2.80 SE = 0.198, and detecting the true
    effect 1.0 needs 2 (2.80 / 1.0)^2 = 15.7 -> 16 seeds per algorithm (the textbook two-sample size)."""
    rng = np.random.default_rng(0)
    a, b = 1.0 + rng.standard_normal(400), rng.standard_normal(400)
    d = detectability(a, b)
    assert d.se == pytest.approx(np.sqrt(2 / 400), rel=0.1)
    assert d.mde == pytest.approx(z_sum() * np.sqrt(2 / 400), rel=0.1) and z_sum() == pytest.approx(2.80, abs=0.01)
    assert d.ci[0] < 1.0 < d.ci[1] and d.diff == pytest.approx(1.0, abs=0.15)
    assert 13 <= d.seeds_for(1.0) <= 19
    assert d.seeds_for(0.1) > 100 * d.seeds_for(1.0) * 0.8  # 10x smaller effect: ~100x the seeds
    assert np.isnan(detectability(a[:1], b).mde)


@pytest.mark.parametrize(("skill", "verdict"), [(1.8, claims.HOLDS), (0.5, claims.FAILS), (1.0, claims.UNTOLD),
                                               ((1.8, 1.8, 1.0, 1.0), claims.PARTLY)])
def test_the_alc_claim_verdict_follows_the_interval(tmp_path: Path, skill, verdict: str) -> None:
    """PPO-DAP's curves are PPO's scaled by `skill` (plus noise): better on every task holds, worse fails, the same
    cannot be told; much better on two tasks and the same on two is a gain on aggregate, not a consistent one."""
    rng = np.random.default_rng(1)
    skills = skill if isinstance(skill, tuple) else (skill,) * 4
    for task, k in zip(("hopper", "halfcheetah", "walker2d", "ant"), skills, strict=True):
        for seed in range(5):
            base = 100 * np.arange(1, 41, dtype=float)
            write_run(tmp_path, task, "ppo", seed, base * (1 + 0.2 * rng.standard_normal()))
            write_run(tmp_path, task, "ppo-dap", seed, k * base * (1 + 0.2 * rng.standard_normal()))
    runs = per_run(load_results(tmp_path).curves)
    c = claims.alc_claim(runs, "ppo-dap", "ppo", protocol=True, n_tasks=8, reps=500, seed=0)
    assert c.verdict == verdict, c
    assert "on 4 of 8 tasks" in c.measured and c.why.startswith("judged on the 4 tasks with runs of both, not all 8")
    assert claims.alc_claim(runs, "ppo-dap", "ppo", protocol=False, n_tasks=8, reps=500, seed=0).verdict == \
        claims.NOT_MEASURED


def test_the_mechanisms_table_summarises_declared_non_audit_metrics_over_runs() -> None:
    from dapbench.report.tables import diagnostics_table

    runs = pd.DataFrame({
        "task": ["hopper"] * 5, "label": ["ppo-dap"] * 3 + ["dap-x"] * 2, "seed": [0, 1, 2, 0, 1],
        "bound_share_mean": [0.1, 0.2, 0.3, 0.5, np.nan], "ess_k_mean": [0.9] * 5,
        "q_gain_mean": [np.nan] * 5,
    })
    declared = {"bound_share": {"description": "share on the bound", "audit": False},
                "ess_k": {"description": "ESS/K", "audit": True},
                "q_gain": {"description": "never logged here", "audit": False}}
    t = diagnostics_table(runs, ["ppo-dap", "dap-x"], {"hopper": "Hopper-v5"}, declared)
    rows = [[c.text for c in r] for r in t.rows]
    assert rows == [["Hopper-v5", "bound_share", "ppo-dap", "0.2000 ± 0.1000", "0.1000 to 0.3000", "3"],
                    ["Hopper-v5", "bound_share", "dap-x", "0.5000", "0.5000 to 0.5000", "1"]]
    # audit metrics live in the audit table; a metric no run logs appears nowhere
    assert t.notes == ["bound_share: share on the bound"]


def test_a_declaration_field_an_older_run_lacks_comes_from_a_newer_run(tmp_path: Path) -> None:
    """Runs of one algorithm made before a Metric field existed (degenerate_at) and after: the report knows it."""
    import json

    old_decl = {"description": "binding share", "gate": None, "bound": 1e-4, "audit": False, "allow_inf": False}
    for seed, decl in ((0, old_decl), (1, {**old_decl, "degenerate_at": 0.0})):
        d = write_run(tmp_path, "hopper", "ppo-gc", seed, [1.0, 2.0], extra={"bind": [0.0, 0.0]})
        (d / "metrics.json").write_text(json.dumps({"algorithm": "ppo-gc", "columns": {"bind": decl}}))
    res = load_results([tmp_path])
    assert res.declared["bind"]["degenerate_at"] == 0.0 and res.declared["bind"]["description"] == "binding share"


def test_a_built_report_has_the_mechanisms_table_of_non_audit_metrics(tmp_path: Path) -> None:
    import json

    decl = {"bound_share": {"description": "share on the bound", "gate": None, "bound": 1e-4, "audit": False,
                            "allow_inf": False}}
    for seed, share in ((0, 0.25), (1, 0.75)):
        d = write_run(tmp_path / "r", "hopper", "ppo-dap", seed, [1.0, 2.0, 3.0, 4.0],
                      extra={"bound_share": [share] * 4})
        (d / "metrics.json").write_text(json.dumps({"algorithm": "ppo-dap", "columns": decl}))
    assert cli("report", tmp_path / "r", "-o", tmp_path / "out", "--reps", 100, "--no-pdf") == 0
    t = pd.read_csv(tmp_path / "out" / "tables" / "diagnostics.csv")
    assert t.to_dict("records") == [{"task": "Hopper-v5", "metric": "bound_share", "algorithm": "ppo-dap",
                                     "mean ± std": "0.5000 ± 0.3536", "range": "0.2500 to 0.7500", "runs": 2}]
    assert "Mechanisms" in (tmp_path / "out" / "report.html").read_text()


def test_the_degenerate_table_counts_the_epochs_a_variant_acted_in_and_never_prints_a_nonzero_rate_as_zero() -> None:
    from dapbench.report.tables import degeneracy_table

    curves = pd.DataFrame({"task": ["hopper"] * 4, "label": ["ppo-gc"] * 4, "run": ["a", "a", "b", "b"],
                           "bind": [0.0, 1.6e-5, 0.0, 0.0]})
    declared = {"bind": {"description": "binding share", "degenerate_at": 0.0}}
    [row] = [[c.text for c in r] for r in degeneracy_table(curves, ["ppo-gc"], {}, declared).rows]
    assert row == ["hopper", "ppo-gc", "bind", "4.0e-06", "1.6e-05", "acted in 1 of 4 epochs (1 of 2 runs)"]
    curves["bind"] = 0.0
    [row] = [[c.text for c in r] for r in degeneracy_table(curves, ["ppo-gc"], {}, declared).rows]
    assert row[3:] == ["0.0000", "0.0000", "numerically its base in every epoch"]


def test_report_tables_say_what_their_labels_say_with_negative_returns_unequal_seeds_and_a_missing_run(
        tmp_path: Path) -> None:
    """Four labels that once read wrong: a ratio to PPO on a task whose returns are negative (-250 / -221 read
    1.13 for a worse run) is left out and said why; 'seeds now' gives each side's count when they differ (it
    printed their mean, 2 for 1 run against 3); the device column names the CPU when a missing run's row made
    the GPU field NaN (it printed 'cpu: nan'); an aggregate over 1 run per task has no interval (it printed
    [x, x] as a 95% CI)."""
    suite = write_suite(tmp_path / "s.yaml", tasks=["hopper", "pusher"], algorithms=["ppo", "ppo-dap"],
                        seeds=[0, 1, 2])
    results = tmp_path / "r"
    returns = {("hopper", "ppo"): 100.0, ("hopper", "ppo-dap"): 200.0, ("pusher", "ppo"): -200.0,
               ("pusher", "ppo-dap"): -250.0}
    for spec in expand(load_suite(suite)):
        if (spec.task, spec.label) == ("hopper", "ppo-dap") and spec.seed > 0:
            continue  # never ran: missing
        store = RunStore(results / spec.relpath())
        store.init(spec)
        store.add_provenance({"started": "2026-01-01T00:00:00+00:00", "device": "cpu", "cpu": "synthetic",
                              "gpu": None, "hostname": "synthetic"})
        y = returns[spec.task, spec.label]
        store.write_metrics([{"epoch": e, "env_steps": e * spec.steps_per_epoch, "eval_return_mean": y + spec.seed,
                              "wall_clock_s": 1.0 * e, "peak_rss_mb": 100.0} for e in range(1, spec.epochs + 1)])
        store.write_status(Status(state="done", epoch=spec.epochs, epochs=spec.epochs))
    assert cli("report", results, "--suite", suite, "-o", tmp_path / "out", "--reps", 100, "--no-pdf") == 0
    tables = tmp_path / "out" / "tables"
    ratio = pd.read_csv(tables / "alc_vs_baseline.csv").set_index("task")
    assert ratio.loc["Hopper-v5", "ppo-dap"].startswith("1.98") and ratio.loc["Pusher-v5", "ppo-dap"] == "-"
    assert "No ratio where ppo&#39;s mean is not positive (Pusher-v5)" in (tmp_path / "out" / "report.html").read_text()
    seeds = pd.read_csv(tables / "seeds_alc.csv").set_index("task")
    assert str(seeds.loc["Hopper-v5", "seeds now"]) == "1 (ppo: 3)" and str(seeds.loc["Pusher-v5", "seeds now"]) == "3"
    cells = pd.read_csv(tables / "cells.csv")
    assert set(cells["device"]) == {"cpu: synthetic"}
    agg_alc = pd.read_csv(tables / "agg_alc.csv").set_index("algorithm")  # ppo-dap: 1 run on hopper, so 1 per task
    assert agg_alc.loc["ppo-dap", "IQM"].endswith("(no interval: 1 run per task)")
    assert agg_alc["runs per task"].to_dict() == {"ppo": 3, "ppo-dap": 1} and "[" in agg_alc.loc["ppo", "IQM"]


def test_the_per_task_interval_is_welchs_and_keeps_its_coverage_at_three_and_five_seeds() -> None:
    """The difference's interval is Welch's t interval (scipy's, to the last digit), and over 400 simulated pairs
    of normal samples it covers the true difference ~95% of the time at 3 and 5 seeds, where a percentile
    bootstrap of the same pairs covers it far less (the reason it was replaced)."""
    from scipy import stats

    a, b = np.array([1.0, 2.0, 4.0]), np.array([0.0, 0.5, 0.2])
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval()
    assert detectability(a, b).ci == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert detectability(np.full(3, 2.0), np.full(3, 1.0)).ci == (1.0, 1.0), "no spread: the difference is exact"
    rng = np.random.default_rng(0)
    for n in (3, 5):
        welch = boot = 0
        for _ in range(400):
            x, y = 1.0 + rng.standard_normal(n), rng.standard_normal(n)
            lo, hi = detectability(x, y).ci
            welch += lo <= 1.0 <= hi
            d = x[rng.integers(0, n, (1000, n))].mean(1) - y[rng.integers(0, n, (1000, n))].mean(1)
            blo, bhi = np.percentile(d, [2.5, 97.5])
            boot += blo <= 1.0 <= bhi
        assert welch / 400 >= 0.92 and boot / 400 <= 0.91, (n, welch, boot)


def test_numbers_in_tables_never_print_a_nonzero_as_zero_or_infinity_as_missing() -> None:
    from dapbench.report.tables import _small, fmt

    assert fmt(0.04) == "0.04" and fmt(-0.04) == "-0.04" and fmt(0.0) == "0.0" and fmt(1234.56) == "1,234.6"
    assert fmt(float("inf")) == "inf" and fmt(float("nan")) == "-" and fmt(None) == "-"
    assert _small(4.07e-7) == "4.1e-07" and _small(2e-6, 3) == "2.0e-06" and _small(0.25) == "0.2500"


def test_the_final_return_claim_compares_with_the_papers_on_policy_baselines_only() -> None:
    """DTQL (offline first) and PPO-DAP's own ablations are not 'the strongest on-policy baselines': PPO-DAP level
    with PPO on all eight tasks holds, however far ahead a DTQL run is."""
    tasks = sorted(TASKS)[:8]
    rows = [{"task": t, "label": lab, "seed": s, "final_return": v + s}
            for t in tasks for s in range(3)
            for lab, v in (("ppo", 100.0), ("ppo-dap", 100.0), ("dtql", 1000.0), ("dap-frozen-prior", 500.0))]
    claim = claims.final_claim(pd.DataFrame(rows), "ppo-dap", horizon_ok=True)
    assert claim.verdict == claims.HOLDS, claim
    assert "at least the best other's on 8 of 8" in claim.measured


def test_the_overhead_claims_interval_resamples_tasks_not_only_pairs() -> None:
    """Two tasks whose 5 pairs each read 1.0x and 3.0x: the pairs of a task are not independent draws, so the
    interval is the spread over tasks, [1.0, 3.0] (a pooled bootstrap of the 10 pairs gave about [1.4, 2.6])."""
    pairs = pd.DataFrame([{"task": t, "label": "ppo-dap", "seed": s, "cpu_time_ratio": v}
                          for t, v in (("hopper", 1.0), ("ant", 3.0)) for s in range(5)])
    c = claims.overhead_claim(pairs, "ppo-dap", "wall_clock", "cpu_time_ratio", device_ok=False, reps=2000, seed=0,
                              what="CPU time")
    assert "CPU time: 2.00x [1.00, 3.00] over 10 task-seed pairs of 2 tasks" in c.measured
    assert c.verdict == claims.UNTOLD and "measured on CPU" in c.why
