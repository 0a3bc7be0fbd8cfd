"""`dapbench` / `python -m dapbench`: one dispatcher of subcommands.

Exit codes: 0 success, 1 some run failed, 2 bad input (nothing was started).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dapbench.errors import BadInputError, DapbenchError
from dapbench.launch import plan
from dapbench.suite import DatasetEntry, RunSpec, expand, filter_specs, load_suite, results_folder

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False)

# Options whose defaults belong to what they configure (one source): `report`'s to ReportOptions, `check`'s to the
# gate's Tolerances, `data make`'s to MakeRequest, `reproduce`'s to reproduce(). Named as 'module:object' and
# imported only when needed (the report's imports take seconds; a command never pays for another's).
REPORT_OPTIONS = "dapbench.report.build:ReportOptions"
TOLERANCES = "dapbench.verify.gate:Tolerances"
MAKE_REQUEST = "dapbench.data.make:MakeRequest"
REPRODUCE = "dapbench.verify.reproduce:reproduce"


def _default(owner: str, name: str) -> Any:
    """The default of `name` in `owner`: a pydantic model's field, a dataclass's field or a function's parameter."""
    module, attr = owner.split(":")
    obj = getattr(importlib.import_module(module), attr)
    if isinstance(obj, type) and issubclass(obj, BaseModel):
        return obj.model_fields[name].default
    if dataclasses.is_dataclass(obj):
        return next(f.default for f in dataclasses.fields(obj) if f.name == name)
    return inspect.signature(obj).parameters[name].default


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        owner = getattr(action, "owner", None)
        if owner is None or "(default" in (action.help or ""):
            return super()._get_help_string(action)
        return f"{action.help or ''} (default: {_default(owner, action.dest)})".lstrip()


_OWNED: dict[str, list[str]] = {}  # owner -> the options `_owned` declared for it


def _owned(parser: argparse.ArgumentParser, flag: str, owner: str, **kw: Any) -> None:
    """An option whose default is that of the field (or parameter) of the same name in `owner` ('module:object'):
    left out of the parsed arguments unless given, so that the owner fills it in; --help reads it from the owner."""
    action = parser.add_argument(flag, default=argparse.SUPPRESS, **kw)
    action.owner = owner  # type: ignore[attr-defined]
    _OWNED.setdefault(owner, []).append(action.dest)


def _given(args: argparse.Namespace, owner: str) -> dict[str, Any]:
    """The options of `owner`'s fields given on the command line (the others keep the owner's defaults)."""
    return {k: getattr(args, k) for k in dict.fromkeys(_OWNED.get(owner, ())) if hasattr(args, k)}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dapbench", formatter_class=_Formatter,
        description="Benchmark and reproduce on-policy RL with diffusion action priors (PPO-DAP and baselines).",
        epilog="examples:\n  dapbench run suites/quick.yaml\n  dapbench run suites/mujoco8.yaml --dry-run\n"
               "  dapbench status suites/quick.yaml\n  dapbench report results/quick -o reports/quick\n"
               "  dapbench tasks\n  dapbench algos ppo",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", formatter_class=_Formatter, help="run a suite (idempotent: done runs are skipped, "
                       "partial runs resume)",
                       description="Run every cell (task x algorithm x seed) of a suite. Runs already done are "
                       "skipped, partial or failed runs resume from their last checkpoint; a failing run is "
                       "reported and does not stop the others. Exit 1 if any run failed, 2 on bad input.")
    r.add_argument("suite", type=Path, help="suite YAML file (see docs/suites.md)")
    r.add_argument("--dry-run", action="store_true", help="print the grid and an estimate of the work; run nothing")
    r.add_argument("--only", action="append", default=[], metavar="KEY=VALUE",
                   help="keep only runs whose KEY (task, algorithm, label, seed) is one of the comma-separated "
                   "VALUEs; repeatable (all must match)")
    r.add_argument("--jobs", type=int, default=None, help="parallel runs for the local launcher "
                   "(default: the suite's launcher.jobs, else the number of cores)")
    r.add_argument("--launcher", choices=["debug", "local", "slurm"], default=None,
                   help="debug: in this process, one run after another; local: a process pool; slurm: job "
                   "arrays on the Slurm cluster (docs/slurm.md) (default: the suite's launcher.name)")
    r.add_argument("--wait", action="store_true", help="slurm: wait for the jobs to end and report every run "
                   "(default: submit and return; follow with `dapbench status`)")
    r.add_argument("--results", type=Path, default=None, help="results folder (default: the suite's results_dir, "
                   "else results/<suite name>)")
    r.add_argument("--skip-unavailable", action="store_true",
                   help="drop cells whose task or algorithm is not available yet instead of refusing to start")

    s = sub.add_parser("status", formatter_class=_Formatter,
                       help="pending / queued / running / done / failed runs of a suite",
                       description="Counts of a suite's runs by state and a per-run table, from the run folders "
                       "and, for runs submitted to Slurm, the scheduler's view of their jobs. A run folder that "
                       "`run` would refuse (a spec, status or metrics file that does not read, another spec) is "
                       "shown as damaged or other spec, with one error line naming the file; the exit code is "
                       "then 2.")
    c = sub.add_parser("cancel", formatter_class=_Formatter, help="cancel a suite's queued and running Slurm jobs",
                       description="scancel the suite's jobs that are still queued or running (its training "
                       "arrays and, without --only, its preparation jobs). Finished epochs are kept: running "
                       "the suite again resumes the runs from their checkpoints.")
    for x in (s, c):
        x.add_argument("suite", type=Path)
        x.add_argument("--results", type=Path, default=None, help="results folder (default: the suite's)")
        x.add_argument("--only", action="append", default=[], metavar="KEY=VALUE", help="as for run")

    rp = sub.add_parser("report", formatter_class=_Formatter, help="HTML and PDF report of results folders "
                        "(final return, ALC@40, rliable aggregates, overheads, audit, provenance)",
                        description="Build a self-contained HTML page and a PDF of it from one or more results "
                        "folders (run folders <results>/<task>/<label>/seed_<k>/ anywhere below them). See "
                        "docs/report.md for every definition.")
    rp.add_argument("results", type=Path, nargs="+", help="results folder(s), e.g. results/mujoco8")
    rp.add_argument("-o", "--out", type=Path, default=None,
                    help="output folder for report.html, report.pdf, runs.csv, aggregates.csv "
                    "(default: reports/<name of the first results folder>)")
    _owned(rp, "--reps", REPORT_OPTIONS, type=int, help="bootstrap repetitions for every confidence interval "
           "(a few hundred for a quick look; 50,000 for a final report)")
    _owned(rp, "--seed", REPORT_OPTIONS, type=int, help="random state of the bootstrap")
    _owned(rp, "--final-n", REPORT_OPTIONS, type=int, help="final return = mean of each run's last N evaluations")
    _owned(rp, "--alc-n", REPORT_OPTIONS, type=int, help="ALC over the evaluations at the ends of the first N "
           "epochs of 5,000 steps (ALC@40: 200k steps)")
    _owned(rp, "--missing", REPORT_OPTIONS, choices=["drop", "fail"],
           help="runs that are not complete (failed, running, pending; missing from --suite's grid): drop them with "
           "a warning shown in the report, or fail")
    _owned(rp, "--suite", REPORT_OPTIONS, type=Path,
           help="the suite whose runs to report: runs of its grid without a folder count as missing, run folders "
                "outside its grid (another suite sharing the results folder) are left out")
    _owned(rp, "--baseline", REPORT_OPTIONS, help="label that ALC and overheads are relative to")
    _owned(rp, "--target", REPORT_OPTIONS, help="label whose probability of improvement over each other algorithm "
           "is estimated")
    rp.add_argument("--no-pdf", action="store_true", help="write the HTML page only")

    t = sub.add_parser("tasks", formatter_class=_Formatter, help="the task table; `tasks measure` re-measures "
                       "random-policy reference scores",
                       description="Without an action: print the task registry with its reference scores.")
    tsub = t.add_subparsers(dest="tasks_command", metavar="ACTION")
    m = tsub.add_parser("measure", formatter_class=_Formatter,
                        help="measure random-policy scores and env speed into dapbench/tasks/reference_scores.json",
                        description="Run uniform random actions on each available task and write the mean "
                        "return (and raw env steps/s) into the reference score file.")
    m.add_argument("--episodes", type=int, default=20, help="episodes per task")
    m.add_argument("--seed", type=int, default=0, help="episode i uses seed SEED+i")
    m.add_argument("--task", action="append", default=None, help="only these tasks (repeatable)")

    d = sub.add_parser("data", formatter_class=_Formatter, help="logged datasets (Minari): make, list, show, validate",
                       description="Logged datasets for the offline stage, in Minari's format, in the Minari "
                       "datasets folder ($MINARI_DATASETS_PATH, default ~/.minari/datasets). See docs/datasets.md.")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dm = dsub.add_parser("make", formatter_class=_Formatter, help="make a dataset (trains or reuses the behaviour PPO)",
                         description="Make dapbench/<task>/<quality>[-s<seed>]-v0. random: uniform actions; "
                         "medium: the behaviour PPO at the first epoch a third of the way from random to its final "
                         "return; replay: the behaviour run's training stream up to that epoch; expert: the end of "
                         "the behaviour run. The behaviour run is an ordinary resumable dapbench run.")
    dm.add_argument("task")
    dm.add_argument("--quality", choices=["random", "medium", "replay", "expert"],
                    default=DatasetEntry.model_fields["quality"].default)
    _owned(dm, "--seed", MAKE_REQUEST, type=int, help="behaviour run seed and collection seed")
    _owned(dm, "--steps", MAKE_REQUEST, type=int, help="transitions to record (not for replay)")
    _owned(dm, "--behaviour-steps", MAKE_REQUEST, type=int,
           help="budget of the behaviour PPO run (default: the task's default budget)")
    _owned(dm, "--behaviour-root", MAKE_REQUEST, type=Path, help="where behaviour runs live")
    dm.add_argument("--force", action="store_true", help="remake the dataset if it exists")
    dsub.add_parser("list", formatter_class=_Formatter, help="datasets in the Minari datasets folder")
    for name, helptext in (("show", "episodes, steps, return statistics and provenance of a dataset"),
                           ("validate", "check spaces, finiteness and episode boundaries")):
        x = dsub.add_parser(name, formatter_class=_Formatter, help=helptext, description=helptext)
        x.add_argument("dataset_id", help="a Minari id, e.g. dapbench/hopper/medium-v0 or mujoco/hopper/medium-v0")
        x.add_argument("--task", default=None, help="check against this task (default: from the dataset)")

    a = sub.add_parser("algos", formatter_class=_Formatter, help="registered algorithms with their config fields",
                       description="List registered algorithms, what they need, and every config field with "
                       "its default; algorithms of the protocol not implemented yet are listed too.")
    a.add_argument("name", nargs="?", help="show one algorithm only")

    rp = sub.add_parser("reproduce", formatter_class=_Formatter, help="re-execute a finished run and compare its "
                        "per-epoch table with the stored one (exit 0: reproduces, 1: does not)",
                        description="Re-execute a finished run from its stored spec in a scratch folder and compare "
                        "every non-timing column of the new per-epoch table with the stored one. On the same "
                        "software stack (packages, Python, CPU/GPU in the run's provenance) the tables must be "
                        "bit-identical; on another stack the differences are listed and must be within --rtol.")
    rp.add_argument("run_dir", type=Path, help="a run folder, e.g. results/quick/hopper/ppo/seed_0")
    rp.add_argument("--scratch", type=Path, default=None, help="where to re-execute (default: a temporary folder, "
                    "removed afterwards)")
    _owned(rp, "--rtol", REPRODUCE, type=float, help="relative tolerance per value when the software stack differs "
           "(on the same stack only bit-identity counts)")

    ck = sub.add_parser("check", formatter_class=_Formatter, help="regression checks of a results folder against a "
                        "stored baseline (exit 0: pass, 1: regression, 2: bad input)",
                        description="Compare per-task, per-algorithm final return and ALC@40 (bootstrap interval of "
                        "the difference), speed (steps/s over the raw env steps/s measured in the same run), peak "
                        "memory and audit metrics against a baseline file; --repeat also requires bit-identical "
                        "tables between two runs of the same suite. Tolerances: docs/regression.md.")
    ck.add_argument("results", type=Path, help="a results folder (e.g. what `run --results DIR` wrote)")
    ck.add_argument("--baseline", type=Path, required=True, help="baseline JSON, e.g. results/baselines/ci.json")
    ck.add_argument("--update", action="store_true", help="write the baseline from RESULTS instead of checking")
    ck.add_argument("--repeat", type=Path, default=None, metavar="OTHER", help="a second results folder of the same "
                    "suite: every table must equal its twin's (determinism gate)")
    _owned(ck, "--reps", TOLERANCES, type=int, help="bootstrap repetitions")
    _owned(ck, "--rel-tol", TOLERANCES, type=float, help="learning: relative drop that counts as material")
    _owned(ck, "--abs-tol", TOLERANCES, type=float, help="learning: smallest drop that counts as material")
    _owned(ck, "--speed-tol", TOLERANCES, type=float, help="speed: allowed relative slowdown")
    _owned(ck, "--mem-tol", TOLERANCES, type=float, help="memory: allowed relative growth")
    return p


# ----- run ------------------------------------------------------------------------------------------------
def _fmt_hours(h: float) -> str:
    if h < 1 / 60:
        return f"{h * 3600:.0f} s"
    return f"{h * 60:.0f} min" if h < 1 else f"{h:,.1f} h"


def _dry_run(name: str, specs: list[RunSpec], results: Path) -> None:
    g = plan.grid_plan(specs, results)
    table = Table(title=f"suite {name}: {g.runs} runs -> {results}/")
    for col in ("task", "algorithm", "seeds", "steps/run", "epochs", "state", "CPU time left", "from"):
        table.add_column(col, justify="right" if col in ("seeds", "steps/run", "epochs", "CPU time left") else "left")
    for c in g.cells:
        state = ", ".join(f"{n} {k}" if len(c.states) > 1 else k for k, n in c.states.items())
        basis = f"{c.measured} run{'s' * (c.measured != 1)}" if c.measured else "PPO's rate" if c.estimated else ""
        table.add_row(c.task, c.label, str(c.runs), f"{c.total_steps:,}", str(c.epochs), state,
                      _fmt_hours(c.hours) if c.estimated else "?", basis, style=None if c.runnable else "dim")
    console.print(table)
    from dapbench.launch.launchers import default_jobs

    console.print(f"{g.runs} runs ({g.runnable} runnable now), {g.total_steps:,} environment steps, "
                  f"~{_fmt_hours(g.hours)} of CPU time left (~{_fmt_hours(g.hours / default_jobs())} on the "
                  f"{default_jobs()} cores here)"
                  + (f" ({g.unknown} runs without an estimate)" if g.unknown else "")
                  + "; estimate: one core per run, the epochs still to run at the CPU time per epoch the cell's own "
                  "runs measured (\"from: k runs\"), else at PPO's measured cost per step on top of the task's "
                  "measured env rate with evaluation episodes at full length (\"from: PPO's rate\": algorithms "
                  "heavier than PPO cost more).")
    for r in g.reasons:
        console.print(f"  [dim]not runnable yet: {r}[/dim]")


def _report(o, results: Path) -> None:
    rel = Path(o.run_dir).relative_to(results) if Path(o.run_dir).is_relative_to(results) else o.run_dir
    if o.state == "failed":
        err_console.print(f"[red]failed[/red] {rel} at epoch {o.epoch}:", escape(str(o.error)), soft_wrap=True)
    else:
        console.print(f"{o.state} {rel}" + (f" ({o.error})" if o.error else ""))


def cmd_run(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    specs = filter_specs(expand(suite), args.only)
    results = results_folder(suite, args.results)
    if not specs:
        raise BadInputError(f"{args.suite}: no runs match --only {' '.join(args.only)}")
    launcher = args.launcher or suite.launcher.name
    if args.dry_run:
        _dry_run(suite.name, specs, results)
        if launcher == "slurm":
            _dry_run_slurm(suite, [s for s in specs if s.runnable], results)
        return 0
    blocked, reasons = plan.blocked(specs)
    if blocked:
        if not args.skip_unavailable:
            raise BadInputError(
                f"{args.suite}: {len(blocked)} of {len(specs)} runs cannot run yet:\n  " + "\n  ".join(reasons)
                + "\nnothing was started; use --skip-unavailable to run the rest, or --only to choose cells"
            )
        err_console.print(f"[yellow]skipping {len(blocked)} runs that cannot run yet:[/yellow]\n  "
                          + "\n  ".join(reasons))
        specs = [s for s in specs if s.runnable]
    if args.jobs is not None and args.jobs < 1:
        raise BadInputError(f"--jobs must be at least 1 (got {args.jobs})")
    if launcher == "slurm":
        from dapbench.launch import scheduler

        why = scheduler.unavailable()
        if why:
            local = _suite_command(args, "run") + " --skip-unavailable" * args.skip_unavailable + " --launcher local"
            raise BadInputError(f"{args.suite} runs on Slurm, and no Slurm cluster answers here ({why}); to run "
                                f"it on this machine: {local}")
    plan.check_folders(specs, results)  # before any dataset is made; nothing is created on bad input
    if launcher == "slurm":
        return _run_slurm(args, suite, specs, results)
    plan.ensure_datasets(args.suite, suite, specs, log=console.print)
    dirs = plan.prepare(specs, results)
    todo = list(plan.not_done(dict(zip(dirs, specs, strict=True))))
    console.print(f"suite {suite.name}: {len(specs)} runs in {results}/ ({len(specs) - len(todo)} already done, "
                  f"{len(todo)} to run with the {launcher} launcher)")

    from dapbench.launch.launchers import launch

    outcomes = launch(launcher, todo, args.jobs or suite.launcher.jobs, lambda o: _report(o, results))
    counts = Counter(o.state for o in outcomes)
    console.print(f"results in {results}/: {len(specs) - len(todo) + counts['done']} done, {counts['failed']} failed"
                  + (f", {counts['running']} running elsewhere" if counts["running"] else ""))
    if any(o.bad_input for o in outcomes):  # a run folder's own files were refused: bad input, nothing trained
        return 2
    return 1 if counts["failed"] else 0


def _suite_command(args: argparse.Namespace, command: str) -> str:
    extra = f" --results {args.results}" if args.results else ""
    return f"dapbench {command} {args.suite}{extra}" + "".join(f" --only {o}" for o in args.only)


def _dry_run_slurm(suite, specs: list[RunSpec], results: Path) -> None:
    """The arrays a submission would make, with their sbatch options (as in the submission script)."""
    from dapbench.launch import slurm

    for line in slurm.dry_run_lines(suite, {results / s.relpath(): s for s in specs}, results):
        console.print(line, soft_wrap=True, markup=False, highlight=False)


def _run_slurm(args: argparse.Namespace, suite, specs: list[RunSpec], results: Path) -> int:
    from dapbench.launch import slurm

    datasets = plan.missing_datasets(args.suite, suite, specs)
    # the run folders are created by the submission, once Slurm accepts its jobs
    runs = plan.not_done({results / s.relpath(): s for s in specs})
    sub = slurm.submit(suite, args.suite, runs, results, datasets, log=console.print)
    new = sum(len(a.runs) for a in sub.arrays)
    for a in sub.arrays:
        after = f" after job{'s' * (len(a.after) > 1)} {', '.join(a.after)}" if a.after else ""
        limit = f", at most {suite.launcher.parallelism} at once" if suite.launcher.parallelism else ""
        packed = f" in {len(a.jobs)} job{'s' * (len(a.jobs) != 1)}" if len(a.jobs) != len(a.runs) else ""
        console.print(f"submitted array {a.job_id}: {len(a.runs)} runs{packed} ({slurm.describe(a.resources)}"
                      f"{limit}){after}")
    if sub.active:
        ids = sorted(set(sub.active.values()))
        console.print(f"left alone: {len(sub.active)} runs already queued or running (jobs {', '.join(ids[:6])}"
                      + (f", ... {len(ids) - 6} more)" if len(ids) > 6 else ")"))
    if sub.held:
        err_console.print(f"[yellow]held:[/yellow] {escape(slurm.release_hint(sub.held))}", soft_wrap=True)
    if sub.pruned:
        console.print(f"pruned {sub.pruned} old code snapshots and submission files from "
                      f"{results / slurm.SUBMIT_FOLDER}/")
    console.print(f"suite {suite.name}: {len(specs)} runs in {results}/: {len(specs) - len(runs)} done, "
                  f"{len(sub.active)} queued or running, {new} submitted"
                  + ("" if new else " (nothing to submit)") + f"; logs in {results / slurm.SUBMIT_FOLDER}/")
    if not args.wait:
        console.print(f"follow with: {_suite_command(args, 'status')}")
        return 0
    jobs = sub.jobs()
    console.print(f"waiting for {len(jobs)} jobs (a line when anything changes)")
    slurm.wait(jobs, log=console.print)
    states = _run_states(specs, results)
    for r in states:
        if (results / r.spec.relpath()) in runs or r.state != "done":
            from dapbench.training.trainer import RunOutcome

            _report(RunOutcome(str(results / r.spec.relpath()), r.state, r.status.epoch if r.status else 0, r.error),
                    results)
    counts = Counter(r.state for r in states)
    console.print(f"results in {results}/: " + ", ".join(f"{counts[k]} {k}" for k in sorted(counts)))
    return 0 if counts["done"] == len(specs) else 1


def _run_states(specs: list[RunSpec], results: Path, progress: bool = False) -> list[plan.RunState]:
    """The runs' states (plan.run_states), saying so when Slurm's view of their jobs is missing."""
    states = plan.run_states(specs, results, progress)
    if states.slurm_problem:
        err_console.print(f"[yellow]Slurm does not answer ({escape(states.slurm_problem)}); states from the run "
                          "folders only: a run with a job and no result is `unknown`[/yellow]", soft_wrap=True)
    return states.runs


def _fmt_eta(seconds: float) -> str:
    """Seconds left as '~12 min' / '~1.5 h' ('' when unknown)."""
    if seconds != seconds:
        return ""
    return f"~{seconds / 60:.0f} min" if seconds < 5400 else f"~{seconds / 3600:.1f} h"


def cmd_status(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    specs = filter_specs(expand(suite), args.only)
    results = results_folder(suite, args.results)
    table = Table(title=f"suite {suite.name} in {results}/")
    for col in ("run", "state", "epoch", "eval return", "ETA", "job"):
        table.add_column(col, justify="right" if col in ("eval return", "ETA") else "left")
    counts: Counter[str] = Counter()
    logs, notes, damaged = [], [], []
    for r in _run_states(specs, results, progress=True):
        s, st, ret = r.spec, r.status, r.eval_return
        counts[r.state] += 1
        eta = _fmt_eta(r.seconds_left) if r.state in ("running", "partial", "queued") else ""
        table.add_row(str(s.relpath()), r.state, f"{st.epoch}/{max(st.epochs, s.epochs)}" if st else "-",
                      "" if ret != ret else f"{ret:,.1f}", eta, r.job)
        if r.state in plan.FOLDER_PROBLEMS:
            damaged.append(r.error)
        elif r.error:
            notes.append(f"  {s.relpath()}: {r.error}")
        if r.state in ("failed", "interrupted"):
            logs.append(f"  {s.relpath()}: {results / s.relpath() / 'run.log'}"
                        + (f", job log {r.log}" if r.log else ""))
    console.print(table)
    if notes:
        console.print("what the runs say:\n" + "\n".join(notes), soft_wrap=True, markup=False)
    if logs:
        console.print("logs of the runs that did not finish:\n" + "\n".join(logs), soft_wrap=True, markup=False)
    _print_preparation(results)
    console.print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    for why in damaged:  # one line per run folder `run` would refuse, naming the file; the others are shown above
        err_console.print("[red]error:[/red]", escape(why), soft_wrap=True)
    return 2 if damaged else 0


# ----- report ----------------------------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from dapbench.report.build import ReportOptions, build_report

    out = args.out or Path("reports") / args.results[0].resolve().name
    try:
        opts = ReportOptions(results=args.results, out=out, pdf=not args.no_pdf, **_given(args, REPORT_OPTIONS),
                             command="dapbench " + " ".join(sys.argv[1:]) if sys.argv[1:] else None)
    except ValidationError as e:
        problems = "; ".join(f"--{str(x['loc'][0]).replace('_', '-')}: {x['msg']}" for x in e.errors())
        raise BadInputError(f"report: {problems}") from None
    result = build_report(opts, console=err_console)
    for w in result.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(w)}")
    console.print(f"report: {result.html}" + (f" and {result.pdf} ({result.pdf_pages} pages)" if result.pdf else "")
                  + f"; {result.figures} figures; runs.csv and aggregates.csv beside them")
    return 0


def _print_preparation(results: Path) -> None:
    for job in plan.preparation_jobs(results):
        shown = job.state or ("ended" if job.answered else "state unknown")
        failed = job.state and job.state.state in ("FAILED", "TIMEOUT", "OUT_OF_MEMORY")
        console.print(f"preparation job {job.job_id} {shown}: {job.what}" + (f" (log: {job.log})" if failed else ""),
                      soft_wrap=True)


def cmd_cancel(args: argparse.Namespace) -> int:
    from dapbench.launch import scheduler, slurm

    suite = load_suite(args.suite)
    specs = filter_specs(expand(suite), args.only)
    results = results_folder(suite, args.results)
    ids = plan.recorded_jobs(specs, results, preparation=not args.only)
    if not ids:
        console.print(f"suite {suite.name}: no Slurm jobs recorded in {results}/; nothing to cancel")
        return 0
    scheduler.require()
    active, stopping = slurm.cancel(ids)
    console.print(f"suite {suite.name}: cancelled {len(active)} job{'s' * (len(active) != 1)}"
                  + (f" ({', '.join(active)})" if active else "")
                  + (f"; {len(stopping)} still stopping ({', '.join(stopping)}: COMPLETING until their processes "
                     "exit; Slurm kills them after its KillWait)" if stopping else "")
                  + f"; finished epochs are kept: `{_suite_command(args, 'run')}` resumes the runs")
    return 0


# ----- tasks / algos ----------------------------------------------------------------------------------------
def cmd_tasks(args: argparse.Namespace) -> int:
    from dapbench.tasks.registry import TASKS, get_task, reference_scores

    if args.tasks_command == "measure":
        from dapbench.tasks.reference import measure

        tasks = [get_task(t) for t in args.task] if args.task else list(TASKS.values())
        measure(tasks, args.episodes, args.seed)
        reference_scores.cache_clear()
    ref = reference_scores()
    table = Table(title="tasks (random-policy scores: " + (ref["meta"].get("command") or "not measured") + ")")
    for col in ("task", "gym id", "episode", "default budget", "random return", "env steps/s", "status"):
        table.add_column(col, justify="right" if col not in ("task", "gym id", "status") else "left")
    for t in TASKS.values():
        r = ref["tasks"].get(t.name)
        table.add_row(t.name, t.gym_id, str(t.max_episode_steps), f"{t.default_total_steps:,}",
                      f"{r['random_return_mean']:.1f} ± {r['random_return_std']:.1f}" if r else "-",
                      f"{r['env_steps_per_s']:,.0f}" if r else "-",
                      "available" if t.available else f"unavailable: {t.unavailable}")
    console.print(table)
    return 0


def cmd_algos(args: argparse.Namespace) -> int:
    from dapbench.registry import PLANNED, algorithms, broken, get_algorithm, provider

    names = [args.name] if args.name else list(algorithms())
    for n in names:
        cls = get_algorithm(n)
        needs = [w for w, f in (("a logged dataset", cls.needs_dataset), ("a prior", cls.needs_prior)) if f]
        p = provider(n)
        console.print(f"[bold]{n}[/bold]  {cls.__module__}.{cls.__qualname__} (from {escape(p.dist)} {p.version}): "
                      f"{(cls.__doc__ or '').strip()}")
        console.print(f"  needs: {', '.join(needs) or 'nothing beyond the task'}")
        if cls.reconstruction:
            console.print(f"  [yellow]reconstruction:[/yellow] {cls.reconstruction}")
        table = Table(show_header=True, box=None, padding=(0, 2))
        for col in ("field", "type", "default", "about"):
            table.add_column(col)
        for fname, f in cls.Config.model_fields.items():
            ann = getattr(f.annotation, "__name__", None) or str(f.annotation).replace("typing.", "")
            table.add_row(fname, ann, repr(f.default), f.description or "")
        console.print(table)
    if not args.name:
        for n, why in PLANNED.items():
            if n not in algorithms():
                console.print(f"[dim]{n}  not implemented yet: {why}[/dim]")
        for n, b in broken().items():  # installed, but failed to load or to pass the registry's checks
            console.print(f"[red]{n}  broken[/red] (plug-in {escape(b.provider)}): {escape(b.error)}", soft_wrap=True)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from dapbench.data import load

    if args.data_command == "make":
        from dapbench.data.make import MakeRequest, make

        req = MakeRequest(args.task, args.quality, **_given(args, MAKE_REQUEST))
        ds_id = make(req, force=args.force, log=console.print)
        summary = load.validate(ds_id)
        console.print(f"{ds_id}: {summary['episodes']} episodes, {summary['steps']:,} steps, return "
                      f"{summary['return_mean']:.1f} ± {summary['return_std']:.1f} in {load.dataset_path(ds_id)}")
        return 0
    if args.data_command == "list":
        table = Table(title=f"datasets in {load.datasets_root()}")
        for col in ("id", "episodes", "steps", "return", "made by"):
            table.add_column(col)
        for ds_id in load.local_dataset_ids():
            try:
                ds = load.open_dataset(ds_id)
                meta = load.dapbench_metadata(ds)
                ret = f"{meta['return_mean']:.1f} ± {meta['return_std']:.1f}" if meta else "-"
                table.add_row(ds_id, str(ds.total_episodes), f"{ds.total_steps:,}", ret,
                              "dapbench" if meta else str(ds.storage.metadata.get("author", "?")))
            except load.DatasetError as e:
                table.add_row(ds_id, "-", "-", "-", f"unreadable: {e}")
        console.print(table)
        return 0
    task = _dataset_task(args)
    summary = load.validate(args.dataset_id, task)
    if args.data_command == "validate":
        console.print(f"{args.dataset_id}: valid ({summary['episodes']} episodes, {summary['steps']:,} steps"
                      + (f", matches task {task.name}" if task else "") + ")")
        return 0
    meta = load.dapbench_metadata(load.open_dataset(args.dataset_id))
    for k, v in summary.items():
        console.print(f"{k}: {v}")
    for k in ("quality", "seed", "content_hash", "command", "make_seconds", "code"):
        if k in meta:
            console.print(f"{k}: {meta[k]}")
    if meta.get("behaviour"):
        b = meta["behaviour"]
        console.print(f"behaviour: {b['run_dir']} ({b['steps']:,} steps, expert return {b['expert_return']:.1f}, "
                      f"medium epoch {b['medium_epoch']}, policy epoch {b.get('policy_epoch', '-')})")
    return 0


def _dataset_task(args: argparse.Namespace):
    from dapbench.data import load
    from dapbench.tasks.registry import TASKS, get_task

    if args.task:
        return get_task(args.task)
    ds = load.open_dataset(args.dataset_id)
    meta = load.dapbench_metadata(ds)
    if meta.get("task"):
        return get_task(meta["task"])
    gym_id = json.loads(ds.storage.metadata.get("env_spec") or "{}").get("id")
    return next((t for t in TASKS.values() if t.gym_id == gym_id), None)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from dapbench.verify.reproduce import reproduce

    err_console.print(f"re-executing {args.run_dir} from its spec ...")
    r = reproduce(args.run_dir, scratch=args.scratch, **_given(args, REPRODUCE))
    if r.same_stack:
        console.print("same machine type and software stack as the stored run: bit-identical tables expected")
    else:
        console.print("the software stack differs from the stored run's: " + "; ".join(r.stack_changes))
    if r.added:
        console.print(f"note: the current code also logs {', '.join(r.added)} (not in the stored table, not compared)")
    if r.bit_identical:
        console.print(f"[green]reproduces[/green]: {len(r.compared)} columns bit-identical in every epoch "
                      "(timing columns not compared)")
        return 0
    for m in r.missing:
        console.print(f"[red]mismatch[/red]: column or shape only on one side: {m}")
    if r.diffs:
        table = Table(title=f"{len(r.diffs)} of {len(r.compared)} columns differ")
        for col in ("column", "first epoch", "epochs differing", "stored", "new", "max abs diff", "max rel diff"):
            table.add_column(col)
        for d in r.diffs:
            num = lambda x: f"{x:.9g}" if isinstance(x, float) else str(x)  # noqa: E731
            table.add_row(d.column, str(d.first_epoch), str(d.n_epochs), num(d.stored), num(d.new),
                          f"{d.max_abs:.3g}", f"{d.max_rel:.3g}")
        console.print(table)
    if r.reproduces:
        console.print(f"[green]reproduces[/green] within rtol {r.rtol:g} (not bit-identical: the stack differs)")
        return 0
    console.print("[red]does not reproduce[/red]")
    return 1


def cmd_check(args: argparse.Namespace) -> int:
    from dapbench.verify.gate import Tolerances, run_check, write_baseline

    if args.update:
        b = write_baseline(args.results, args.baseline, " ".join(sys.argv))
        console.print(f"baseline written to {args.baseline}: {len(b.cells)} cells "
                      f"({', '.join(f'{k} x {len(c.seeds)} seeds' for k, c in b.cells.items())})")
        return 0
    tol = Tolerances(**_given(args, TOLERANCES))
    verdicts, notes = run_check(args.results, args.baseline, tol, args.repeat)
    table = Table(title=f"{args.results} against {args.baseline}")
    for col in ("cell", "check", "baseline", "new", "detail", "verdict"):
        table.add_column(col, overflow="fold")
    for v in verdicts:
        verdict = "[green]pass[/green]" if v.ok else "[red]FAIL[/red]"
        table.add_row(v.cell, v.check, v.baseline, v.new, v.detail, verdict)
    console.print(table)
    for n in notes:
        console.print(f"note: {n}")
    failed = [v for v in verdicts if not v.ok]
    if failed:
        console.print(f"[red]{len(failed)} of {len(verdicts)} checks failed[/red]: "
                      + "; ".join(f"{v.cell} {v.check} ({v.detail})" for v in failed))
        return 1
    console.print(f"[green]all {len(verdicts)} checks passed[/green]")
    return 0


COMMANDS = {"run": cmd_run, "status": cmd_status, "cancel": cmd_cancel, "report": cmd_report, "tasks": cmd_tasks,
            "algos": cmd_algos, "data": cmd_data, "reproduce": cmd_reproduce, "check": cmd_check}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except DapbenchError as e:
        err_console.print("[red]error:[/red]", escape(str(e)), soft_wrap=True)
        return e.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted; finished epochs are checkpointed, run the same command again to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
