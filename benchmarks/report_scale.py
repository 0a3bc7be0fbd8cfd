"""How long `dapbench report` takes, and how much memory, on the paper's full grid.

    python benchmarks/report_scale.py [--reps 2000] [--epochs 200] [--seeds 10] [--keep DIR]

Writes a synthetic results folder (`dapbench.analysis.synthetic.write_grid`): the 8 tasks x 7 algorithms
(PPO, PPO-DAP and the five baselines' labels) x 10 seeds x 200 epochs = 560 runs, 112,000 per-epoch rows.
Then builds the full report (HTML and PDF, every aggregate at `--reps` bootstrap repetitions) in a fresh
process pinned to one core with torch/numpy/BLAS threads at 1, and prints: the process's wall-clock from
start to exit (imports included), its CPU time (what the wall-clock would be on an idle core), the build's own
time step by step, and the process's peak RSS.
Writes the figures to benchmarks/out/report_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LABELS = ["ppo", "ppo-dap", "ppo-gc", "ppo-arc", "abppo", "ppo-diffaug", "dtql"]
THREADS = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}

CHILD = """
import json, os, sys, time
t0 = time.perf_counter()
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
import torch
torch.set_num_threads(1)
from pathlib import Path
from dapbench.report.build import ReportOptions, build_report
t1 = time.perf_counter()
out = build_report(ReportOptions(results=[Path(sys.argv[1])], out=Path(sys.argv[2]), reps=int(sys.argv[3])))
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "steps": out.seconds, "pages": out.pdf_pages,
                  "figures": out.figures, "cores": sorted(os.sched_getaffinity(0))}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--keep", type=Path, default=None, help="keep the results folder and report here")
    args = p.parse_args()

    from dapbench.analysis.synthetic import write_grid
    from dapbench.tasks.registry import TASKS

    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        results, out = base / "results" / "scale", base / "report"
        t0 = time.perf_counter()
        write_grid(results, list(TASKS), LABELS, list(range(args.seeds)), args.epochs)
        write_s = time.perf_counter() - t0
        runs = len(TASKS) * len(LABELS) * args.seeds
        print(f"wrote {runs} synthetic runs x {args.epochs} epochs in {write_s:.1f} s")

        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, str(results), str(out), str(args.reps)],
                              env={**os.environ, **THREADS}, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            sys.exit(proc.stderr)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_mb, cpu_s = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
        load = os.getloadavg()[0]
        child = json.loads(proc.stdout.strip().splitlines()[-1])

    record = {"runs": runs, "epochs": args.epochs, "rows": runs * args.epochs, "reps": args.reps,
              "process_wall_s": round(wall, 2), "process_cpu_s": round(cpu_s, 2), "load_average_1min": load,
              "import_s": round(child["import_s"], 2),
              "build_s": round(child["build_s"], 2), "peak_rss_mb": round(peak_mb, 1),
              "steps_s": {k: round(v, 2) for k, v in child["steps"].items()}, "pdf_pages": child["pages"],
              "figures": child["figures"], "cores": child["cores"], "cpu": platform.processor() or platform.machine(),
              "python": platform.python_version()}
    print(f"report of {runs} runs ({runs * args.epochs:,} rows), {args.reps:,} bootstrap repetitions, one core:")
    print(f"  process wall-clock {wall:.1f} s (imports {child['import_s']:.1f} s, build {child['build_s']:.1f} s), "
          f"CPU time {cpu_s:.1f} s, peak RSS {peak_mb:.0f} MB, PDF {child['pages']} pages, {child['figures']} figures "
          f"(machine load average {load:.1f} at the end: wall-clock above CPU time means the core was shared)")
    for k, v in child["steps"].items():
        print(f"    {k:<28} {v:6.2f} s")
    dest = Path(__file__).parent / "out" / "report_scale.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written {dest}")


if __name__ == "__main__":
    main()
