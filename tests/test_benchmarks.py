"""The benchmark report (`make bench`): its quick mode runs every benchmark's code end to end.

Nothing here asserts a speed: the quick mode is a smoke test of the benchmark scripts, so that
the report the README's table comes from keeps working.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import BENCHES, README_START, ratios, readme_block, readme_table, table  # noqa: E402


def test_ratios_are_found_anywhere_in_a_result():
    result = {"sampling": {"batch8": {"speedup": 3.5, "kv_cache_images_per_s": 90}},
              "rows": [{"name": "tiny", "ratio": 1.6, "iterations": 20}], "ratio_to_goal": None,
              "flag_ratio": True}
    assert ratios(result) == {"sampling.batch8.speedup": 3.5, "rows[0].ratio": 1.6}


def _report(benchmarks: dict) -> dict:
    return {"date": "2026-01-01 00:00 UTC", "quick": False, "load_average_before": [1.5, 1.0, 0.5],
            "load_average_after": [2.0, 1.0, 0.5], "benchmarks": benchmarks,
            "machine": {"cpu": "Some CPU", "cores": 2, "torch": "2.x", "device": "cpu"}}


def test_table_and_readme_rows_say_the_machine_and_every_ratio():
    report = _report({"dalle": {"result": {"training": {"ratio_to_goal": 0.9}}, "peak_rss_mb": 812.0,
                                "seconds": 300.0},
                      "memory": {"error": "timed out after 10 s", "result": None}})
    text = table(report)
    assert "training.ratio_to_goal" in text and "0.90x" in text and "peak RSS 812 MB" in text
    assert "FAILED: timed out" in text and "Some CPU, 2 cores" in text
    rows = readme_table(report)
    assert "| dalle | `training.ratio_to_goal` | 0.90x | 812.0 MB |" in rows
    assert "Some CPU (2 cores, load average 1.5" in rows


def test_readme_performance_table_is_made_from_a_committed_full_report():
    """README's table is `report.py --readme` of the committed results file it names, a full run."""
    readme = (ROOT / "README.md").read_text()
    assert readme.count(README_START) == 1, "README has one performance table between bench-table markers"
    results_file = readme.split(README_START, 1)[1].split(" -->", 1)[0]
    report = json.loads((ROOT / results_file).read_text())
    assert not report["quick"], f"{results_file} is a quick run: its numbers say nothing about speed"
    assert set(report["benchmarks"]) == set(BENCHES), "the committed report ran every benchmark"
    assert readme_block(results_file) in readme, (
        f"README's performance table differs from {results_file}: run "
        f"`python benchmarks/report.py --write-readme {results_file}`")


def test_make_bench_claims_are_the_run_of_readme_s_table():
    """README's claims measured by `make bench` (their saved outputs in reports/) and the
    `bench.*` ratios are the results of the run that README's performance table names."""
    from course_tools.claims import load_claims

    readme = (ROOT / "README.md").read_text()
    results_file = readme.split(README_START, 1)[1].split(" -->", 1)[0]
    run = json.loads((ROOT / results_file).read_text())["benchmarks"]
    claims = load_claims()
    saved = {claim["source"]: claim["measured_by"] for claim in claims.values()
             if "(make bench" in claim["measured_by"] and "source" in claim}
    assert saved, "no claim says it was measured by make bench"
    for source, measured_by in saved.items():
        name = next(name for name, (script, _, _) in BENCHES.items()
                    if f"benchmarks/{script} " in measured_by)
        assert json.loads((ROOT / source).read_text()) == run[name]["result"], (
            f"{source} is not the {name} result of {results_file}: import that run's result "
            "(python -m course_tools.claims --import ...) or rewrite README's table")
    ratios_of_run = {f"bench.{name}.{key}": value for name, row in run.items()
                     for key, value in ratios(row.get("result") or {}).items()}
    stored = {key: claim["value"] for key, claim in claims.items() if key.startswith("bench.")}
    assert stored == ratios_of_run, (f"the bench.* claims are not {results_file}'s: "
                                     f"python benchmarks/report.py --claims {results_file}")


@pytest.mark.slow
def test_quick_report_runs_every_benchmark(tmp_path):
    """`make bench BENCH_QUICK=1`: every benchmark exits 0 with a JSON result and a peak RSS."""
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["quick"] is True and set(report["benchmarks"]) == set(BENCHES)
    assert report["machine"]["cores"] >= 1 and report["machine"]["torch"]
    for name, row in report["benchmarks"].items():
        assert row["exit_code"] == 0 and isinstance(row["result"], dict), (name, row)
        assert row["peak_rss_mb"] > 50, (name, row)  # a Python process with torch loaded
    found = ratios(report["benchmarks"]["dalle"]["result"])
    assert "sampling.batch8.speedup" in found
    assert "rows.tiny_world.ratio" in ratios(report["benchmarks"]["generate"]["result"])
    memory = report["benchmarks"]["memory"]["result"]
    assert [r["images"] for r in memory["index_build"]] == [300, 1200]
    assert "wrote" in proc.stdout and "machine:" in proc.stdout
