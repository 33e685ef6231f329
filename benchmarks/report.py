"""One benchmark report: run every benchmark, write benchmarks/results/<date>-<host>.json, print a table.

Each `bench_*.py` runs in its own process with `--json`; its peak memory is that process's
peak resident set size (RSS, from the operating system's accounting of the finished child),
and on a GPU its CUDA max allocated when the benchmark reports one. The report also says which
machine it ran on (CPU model, cores, load average before and after, torch version, device).

    python benchmarks/report.py                  # everything (the slow benchmarks take a while)
    python benchmarks/report.py --quick          # smoke test of the benchmark code, < 2 minutes;
                                                 # its numbers say nothing about speed
    python benchmarks/report.py --only dalle generate
    python benchmarks/report.py --readme benchmarks/results/FILE.json   # README's table from a file
    python benchmarks/report.py --write-readme benchmarks/results/FILE.json   # ... written into README
    python benchmarks/report.py --claims benchmarks/results/FILE.json   # its ratios into the claims

A full run (not --quick) also merges every ratio into `reports/claims.json` as
`bench.<benchmark>.<ratio path>` (course_tools/claims.py). README's performance table is written
from the results file itself (--write-readme); tests/test_benchmarks.py checks that the table,
the `bench.*` claims and the claims imported from make bench outputs are all that one run.

`make bench` runs the first form (BENCH_QUICK=1 for the second).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RATIO_KEY = re.compile(r"(^|_)(ratio|speedup)(_|$)")  # "ratio_to_goal", "speedup"; not "iterations"
RESULTS = HERE / "results"

# name: (script, arguments of the full run, arguments of the quick run). All print JSON.
# The quick run uses one thread: two OpenMP threads on a busy machine (CI) can be 10x slower.
BENCHES: dict[str, tuple[str, list[str], list[str]]] = {
    "shapes": ("bench_shapes.py", [], ["--images", "256"]),
    "tinyclip": ("bench_tinyclip.py", ["--recipe", "live"], ["--steps", "10", "--threads", "1"]),
    "dalle": ("bench_dalle.py", ["--recipe", "fast", "--every", "300", "--repeats", "10"], ["--quick", "--threads", "1"]),
    "generate": ("bench_generate.py", [], ["--quick", "--threads", "1"]),
    "retrieval": ("bench_retrieval.py", [], ["--quick", "--threads", "1"]),
    "memory": ("bench_memory.py", [], ["--quick", "--threads", "1"]),
}


def machine() -> dict:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"host": socket.gethostname(), "cpu": cpu, "cores": os.cpu_count(),
            "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    try:
        info["bf16_cpu"] = "avx512_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        pass
    return info


def ratios(result, prefix: str = "") -> dict[str, float]:
    """Every number under a key that names a ratio or a speed-up, flattened: {"a.b.ratio": 1.5}."""
    found = {}
    if isinstance(result, dict):
        for key, value in result.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and RATIO_KEY.search(str(key)):
                found[path] = value
            elif isinstance(value, (dict, list)):
                found.update(ratios(value, path))
    elif isinstance(result, list):
        for i, value in enumerate(result):
            found.update(ratios(value, f"{prefix}[{i}]"))
    return found


def run_bench(name: str, quick: bool, timeout: float) -> dict:
    """Run one benchmark in its own process; its JSON, seconds, exit code and peak RSS."""
    script, full, quick_args = BENCHES[name]
    cmd = [sys.executable, str(HERE / script), "--json", *(quick_args if quick else full)]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=HERE.parent)
        try:
            # os.wait4 gives the resources of this child alone: ru_maxrss is its peak RSS (KiB on Linux)
            status, usage = _wait(proc, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return {"command": " ".join(cmd[1:]), "error": f"timed out after {timeout:.0f} s"}
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    row = {"command": " ".join(cmd[1:]), "seconds": round(time.perf_counter() - start, 1),
           "exit_code": status, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1) if usage else None}
    try:
        row["result"] = json.loads(stdout[stdout.index("{"):]) if "{" in stdout else None
    except ValueError:
        row["result"] = None
    if status != 0 or row["result"] is None:
        row["error"] = (stderr.strip().splitlines() or ["no output"])[-1][:500]
    return row


def _wait(proc: subprocess.Popen, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(0.2)


def table(report: dict) -> str:
    """The report as one plain-text table: benchmark, measure, value; peak RSS per benchmark."""
    lines = [f"{'benchmark':<10} {'measure':<58} {'value':>10}"]
    for name, row in report["benchmarks"].items():
        rss = f"peak RSS {row['peak_rss_mb']:.0f} MB, {row.get('seconds', 0):.0f} s" if row.get("peak_rss_mb") \
            else ""
        if "error" in row:
            lines.append(f"{name:<10} {'FAILED: ' + row['error'][:50]:<58} {'':>10}")
        for key, value in ratios(row.get("result") or {}).items():
            lines.append(f"{name:<10} {key[:58]:<58} {value:>9.2f}x")
        lines.append(f"{name:<10} {rss:<58}")
    m = report["machine"]
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['device']}; load average "
                 f"{report['load_average_before']} before, {report['load_average_after']} after")
    return "\n".join(lines)


def readme_table(report: dict) -> str:
    """Markdown rows for README's performance table, from a results file."""
    m = report["machine"]
    rows = ["| benchmark | measure | value | peak RSS |", "|---|---|---|---|"]
    for name, row in report["benchmarks"].items():
        for key, value in ratios(row.get("result") or {}).items():
            rows.append(f"| {name} | `{key}` | {value:.2f}x | {row.get('peak_rss_mb') or '-'} MB |")
    rows.append(f"\nMeasured {report['date']} on {m['cpu']} ({m['cores']} cores, load average "
                f"{report['load_average_before'][0]:.1f} at the start), torch {m['torch']}, {m['device']}"
                f"{' (quick mode: smoke test, not a speed measurement)' if report['quick'] else ''}.")
    return "\n".join(rows)


README_START = "<!-- bench-table: "
README_END = "<!-- bench-table-end -->"


def readme_block(results_file: str) -> str:
    """README's performance section for a committed results file (path relative to the repository)."""
    report = json.loads((HERE.parent / results_file).read_text())
    return f"{README_START}{results_file} -->\n{readme_table(report)}\n{README_END}"


def write_readme(results_file: str, readme: Path = HERE.parent / "README.md") -> None:
    """Replace README's performance table by the one made from `results_file`."""
    text = readme.read_text()
    start, end = text.index(README_START), text.index(README_END) + len(README_END)
    readme.write_text(text[:start] + readme_block(results_file) + text[end:])


def write_claims(report: dict, source: str | None = None) -> Path | None:
    """Merge the ratios of a full report into reports/claims.json; quick numbers say nothing."""
    if report["quick"]:
        return None
    sys.path.insert(0, str(HERE.parent))
    from course_tools.claims import record

    m = report["machine"]
    on = f"{m['cpu']} ({m['cores']} cores, load average {report['load_average_before'][0]:.1f}), " \
         f"torch {m['torch']}, {m['device']}, {report['date']}"
    path = None
    for name, row in report["benchmarks"].items():
        if "error" in row:
            continue
        claims = {f"bench.{name}.{key}": {"value": value, "unit": "ratio"}
                  for key, value in ratios(row.get("result") or {}).items()}
        if source:
            claims = {key: {**claim, "source": source} for key, claim in claims.items()}
        if claims:
            path = record(claims, f"python benchmarks/report.py --only {name}", "benchmarks/report.py", on=on)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=bool(os.environ.get("BENCH_QUICK")),
                        help="smoke test: tiny sizes, < 2 minutes (also BENCH_QUICK=1)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHES), help="run only these benchmarks")
    parser.add_argument("--out", default=None, help="results file (default benchmarks/results/<date>-<host>.json)")
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per benchmark")
    parser.add_argument("--readme", metavar="RESULTS_JSON", help="print README's table from a results file")
    parser.add_argument("--write-readme", metavar="RESULTS_JSON",
                        help="write README's performance table from a results file (a path in the repository)")
    parser.add_argument("--claims", metavar="RESULTS_JSON", help="merge a results file's ratios into the claims")
    args = parser.parse_args(argv)
    if args.readme:
        print(readme_table(json.loads(Path(args.readme).read_text())))
        return 0
    if args.write_readme:
        write_readme(Path(args.write_readme).resolve().relative_to(HERE.parent).as_posix())
        print(f"wrote README.md's performance table from {args.write_readme}")
        return 0
    if args.claims:
        written = write_claims(json.loads(Path(args.claims).read_text()), source=args.claims)
        if written is None:
            print(f"{args.claims} is a quick run (or has no ratio): its numbers are not claims", file=sys.stderr)
            return 1
        print(f"wrote {written}")
        return 0
    now = dt.datetime.now(dt.timezone.utc)
    report = {"date": now.strftime("%Y-%m-%d %H:%M UTC"), "quick": args.quick, "machine": machine(),
              "load_average_before": [round(x, 2) for x in os.getloadavg()], "benchmarks": {}}
    for name in args.only or BENCHES:
        print(f"== {name}{' (quick)' if args.quick else ''}", file=sys.stderr, flush=True)
        report["benchmarks"][name] = run_bench(name, args.quick, args.timeout)
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out) if args.out else RESULTS / (
        f"{now:%Y-%m-%d}-{socket.gethostname()}{'-quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"wrote {out}")
    claims = write_claims(report)
    if claims:
        print(f"wrote {claims}")
    return 1 if any("error" in row for row in report["benchmarks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
