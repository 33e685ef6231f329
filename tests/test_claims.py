"""Every measured number has one source: `reports/claims.json`, written by the scripts that measure.

Lesson sources read claims through `{{claim KEY:SPEC}}`, formatted per language by Babel;
README.md marks its numbers with `<!-- claim:KEY:SPEC -->`, checked here against the file; quiz
texts that quote a measured number are listed in QUIZ_CLAIMS and checked in every language.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polib
import pytest

from course_tools import claims as cl
from course_tools import lessons, measures

ROOT = Path(__file__).resolve().parent.parent
CLAIMS = {"acc": {"value": 0.8765, "unit": "fraction"}, "n": {"value": 50000, "unit": "images"},
          "t": {"value": 1967.84, "unit": "s"}}


@pytest.mark.parametrize("lang, expected", [
    ("en", "87.7% of 50,000 in 1,967.8 s, 0.88"),
    ("fr", "87,7\u00a0% of 50\u202f000 in 1\u202f967,8 s, 0,88"),
    ("zh", "87.7% of 50,000 in 1,967.8 s, 0.88"),
])
def test_claim_macro_is_formatted_for_the_page_language(lang, expected):
    text = "{{claim acc:.1%}} of {{claim n:,d}} in {{claim t:.1f}} s, {{ claim acc:.2f }}"
    assert cl.expand_claims(text, lang, CLAIMS) == expected


def test_an_unknown_claim_fails_the_lesson_build_and_names_the_key(tmp_path):
    src = tmp_path / "lessons" / "src" / "page.md"
    src.parent.mkdir(parents=True)
    src.write_text("<!-- i18n: top -->\nIt took {{claim timings.all.nonexistent:.0f}} s.\n", encoding="utf-8")
    (tmp_path / "lessons" / "glossary.json").write_text('{"page": {}}', encoding="utf-8")
    with pytest.raises(KeyError, match=r"page\.md, block 'top' \(en\).*unknown claim 'timings\.all\.nonexistent'"):
        lessons.build_lesson(src, "en", tmp_path / "lessons" / "i18n")


def test_a_bad_number_format_says_which_formats_exist():
    with pytest.raises(ValueError, match=r"use \.Nf, \.N%, \+\.Nf or ,d"):
        cl.expand_claims("{{claim acc:3g}}", "en", CLAIMS)


def test_record_merges_and_is_deterministic(tmp_path):
    path = tmp_path / "claims.json"
    cl.record({"a.x": (1.5, "s")}, "python a.py", "a.py", on="here", path=path)
    cl.record({"b.y": {"value": 2, "unit": "cells"}}, "python b.py", "b.py", on="here", path=path)
    first = path.read_text(encoding="utf-8")
    assert list(json.loads(first)) == ["a.x", "b.y"], "other scripts' claims are kept, keys sorted"
    cl.record({"b.y": {"value": 2, "unit": "cells"}}, "python b.py", "b.py", on="here", path=path)
    assert path.read_text(encoding="utf-8") == first, "measuring the same number again changes nothing"
    with pytest.raises(TypeError, match="not a number"):
        cl.record({"c.z": ("fast", "s")}, "python c.py", "c.py", path=path)


def test_readme_markers_equal_the_claims():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert cl.README_MARKER.search(text), "README.md has no claim marker"
    assert cl.readme_mismatches(text) == []


def test_a_readme_number_that_differs_from_its_claim_is_reported():
    good = "88%<!-- claim:acc:.0% --> and 50,000<!-- claim:n:,d -->"
    assert cl.readme_mismatches(good, CLAIMS) == [], "88% is 0.8765 rounded"
    problems = cl.readme_mismatches(good.replace("88%", "91%"), CLAIMS)
    assert len(problems) == 1 and "'acc' expects '88%'" in problems[0], problems
    problems = cl.readme_mismatches(good.replace("50,000", "150,000"), CLAIMS)
    assert len(problems) == 1 and "'n'" in problems[0], problems
    assert cl.readme_mismatches("x 91%<!-- claim:nope -->", CLAIMS)[0].count("unknown claim 'nope'") == 1


def test_every_claim_names_the_script_that_measures_it():
    claims = cl.load_claims()
    assert claims, "reports/claims.json is empty"
    for key, claim in claims.items():
        assert set(claim) >= {"value", "unit", "measured_by", "measured_on", "written_by"}, key
        script = cl.script_of(claim["measured_by"])
        assert script is not None and script.exists(), f"{key}: {claim['measured_by']!r} runs no file here"
        writer = ROOT / claim["written_by"]
        assert writer.exists(), f"{key}: its writer {claim['written_by']} does not exist"
        namespace = key.split(".")[0]
        assert any(namespace in path.read_text(encoding="utf-8") for path in (writer, script)), \
            f"{key}: neither {claim['written_by']} nor {script.name} mentions {namespace!r}"


def test_every_claim_used_by_a_lesson_or_notebook_exists_and_translations_keep_the_macros():
    claims = cl.load_claims()
    used = set()
    for src in sorted((ROOT / "lessons" / "src").glob("*.md")):
        used |= {m.split(":")[0] for m in cl.claim_macros(src.read_text(encoding="utf-8"))}
    assert used, "no lesson reads a claim"
    assert used <= set(claims), f"unknown claims: {sorted(used - set(claims))}"
    for src in sorted((ROOT / "notebooks" / "src").glob("*.py")):
        used |= {m.split(":")[0] for m in cl.claim_macros(src.read_text(encoding="utf-8"))}
    assert used <= set(claims), f"unknown claims: {sorted(used - set(claims))}"
    for po_path in sorted((ROOT / "lessons" / "i18n").glob("*/*.po")) + sorted((ROOT / "notebooks" / "i18n").glob("*/*.po")):
        for entry in polib.pofile(str(po_path)):
            if entry.msgstr and "fuzzy" not in entry.flags:
                assert cl.claim_macros(entry.msgstr) == cl.claim_macros(entry.msgid), \
                    f"{po_path.relative_to(ROOT)}: {entry.msgctxt!r} must keep the claim macros verbatim"


def test_timing_claims_are_recomputed_from_timings_json():
    sys.path.insert(0, str(ROOT / "lessons"))
    import measure_timings

    data = json.loads((ROOT / "lessons" / "timings.json").read_text(encoding="utf-8"))
    recomputed = measure_timings.timing_claims(data)
    stored = cl.load_claims()
    for key, (value, _unit) in recomputed.items():
        assert stored[key]["value"] == value, f"{key}: rerun python lessons/measure_timings.py --render"
    total = sum(nb["cells_total_seconds"] for nb in data["notebooks"].values())
    assert recomputed["timings.all.cells_seconds"][0] == pytest.approx(total, abs=0.05)


def test_asset_claims_equal_the_bundled_models_records():
    stored = cl.load_claims()
    for command, found in cl.asset_claims().items():
        for key, claim in found.items():
            assert stored[key]["value"] == claim["value"], f"{key}: rerun python -m course_tools.claims --from-assets"
            assert stored[key]["measured_by"] == command


def test_a_full_benchmark_report_writes_its_ratios_as_claims_and_a_quick_one_does_not(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import report

    monkeypatch.setattr(cl, "CLAIMS_PATH", tmp_path / "claims.json")
    run = {"date": "2026-12-07 01:00 UTC", "quick": False, "load_average_before": [1.0, 1.0, 1.0],
           "machine": {"cpu": "test CPU", "cores": 2, "torch": "2", "device": "cpu"},
           "benchmarks": {"generate": {"result": {"batched": {"speedup": 1.98}, "iterations": 30}},
                          "dalle": {"error": "timed out", "result": {"speedup": 9.0}}}}
    report.write_claims(run)
    found = cl.load_claims(tmp_path / "claims.json")
    assert list(found) == ["bench.generate.batched.speedup"], "ratios only, and none of a failed benchmark"
    assert found["bench.generate.batched.speedup"]["value"] == 1.98
    assert found["bench.generate.batched.speedup"]["measured_by"] == "python benchmarks/report.py --only generate"
    (tmp_path / "claims.json").unlink()
    assert report.write_claims({**run, "quick": True}) is None and not (tmp_path / "claims.json").exists()


def test_imported_claims_equal_the_saved_output_they_came_from():
    imported = {}
    for key, claim in cl.load_claims().items():
        if claim.get("source", "").startswith("reports/"):
            imported.setdefault(claim["source"], {})[key] = claim["value"]
    assert imported, "no claim imported from a saved output in reports/"
    for source, found in imported.items():
        prefix = next(iter(found)).split(".")[0]
        again = cl.flatten(json.loads((ROOT / source).read_text(encoding="utf-8")), prefix)
        assert found == again, f"{source}: rerun python -m course_tools.claims --import {source}"


def test_an_imported_number_takes_its_unit_from_its_key():
    keys = [("training.seconds_to_bar", 169.0), ("training.ratio_to_goal", 0.56),
            ("batch8.new_vs_old_ratio", 1.05), ("batch8.speedup", 4.79),
            ("batch8.kv_cache_images_per_s", 108.3), ("n10000.ivf_build_s", 0.2),
            ("test.accuracy", 0.939), ("training.steps", 1800)]
    assert [cl.imported_unit(key, value) for key, value in keys] == [
        "seconds", "ratio", "ratio", "ratio", "per second", "seconds", "fraction", "number"]


def test_tiny_clip_claims_are_what_the_bundled_model_measures_now():
    stored = cl.load_claims()
    for key, (value, _unit) in cl.tiny_clip_claims().items():  # the claims' 1,000 images: exact
        assert stored[key]["value"] == value, f"{key}: run python -m course_tools.claims --measure tiny-clip"


# Quiz texts that quote a measured number: (quiz, question id, claim key, format). A quiz is
# plain text shown to students, so it carries no marker; this table says where each number is.
QUIZ_CLAIMS = [
    ("01-contrastive-learning", "tiny-scale", "tiny-shapes.logit_scale", ".1f"),
    ("01-contrastive-learning", "tiny-scale", "tiny-shapes.temperature", ".3f"),
]


def quiz_question(lesson: str, qid: str) -> dict:
    data = json.loads((ROOT / "quiz" / f"{lesson}.json").read_text(encoding="utf-8"))
    return next(q for stage in ("pre", "post") for q in data[stage] if q["id"] == qid)


def texts_in(node, lang: str) -> list[str]:
    """Every text of a quiz question in `lang`."""
    if isinstance(node, dict):
        if isinstance(node.get("en"), str):
            return [node[lang]]
        return [t for value in node.values() for t in texts_in(value, lang)]
    if isinstance(node, list):
        return [t for value in node for t in texts_in(value, lang)]
    return []


@pytest.mark.parametrize("lesson, qid, key, spec", QUIZ_CLAIMS)
def test_quiz_numbers_equal_the_claims_in_every_language(lesson, qid, key, spec):
    """The quiz writes the claim in each language's format (22.9, 22,9), in the question and
    wherever its options repeat it, as often as the English does."""
    claims = cl.load_claims()
    q = quiz_question(lesson, qid)
    english = cl.claim_text(key, spec, "en", claims)
    count = sum(t.count(english) for t in texts_in(q, "en"))
    assert count, f"quiz/{lesson}.json {qid!r} no longer quotes {key} = {english}: update QUIZ_CLAIMS or the quiz"
    for lang in ("en", "fr", "es", "it", "pt", "zh"):
        local = cl.claim_text(key, spec, lang, claims)
        found = sum(t.count(local) for t in texts_in(q, lang))
        assert found == count, (f"quiz/{lesson}.json {qid!r} ({lang}): {key} is {local} now; "
                                f"write it there as often as the English does ({count}), found {found}")


def test_logit_scale_claim_is_the_bundled_model_s():
    stored = cl.load_claims()
    for key, (value, _unit) in cl.logit_scale_claims().items():
        assert stored[key]["value"] == value, f"{key}: run python -m course_tools.claims --measure logit-scale"


def test_search_claims_are_what_notebook_03_measures_now():
    stored = cl.load_claims()
    for key, (value, _unit) in cl.search_claims().items():
        assert stored[key]["value"] == value, f"{key}: run python -m course_tools.claims --measure search"


@pytest.mark.slow
def test_ensembling_claims_are_what_notebook_02_measures_now():
    stored = cl.load_claims()
    # the full run (3,000 + 1,000 images, about 10 s on one thread): README and notebook 02 quote
    # gains in images (+7, -8), which a smaller run cannot check
    for key, (value, _unit) in measures.ensembling_claims().items():
        assert stored[key]["value"] == value, \
            f"{key}: run python -m course_tools.claims --measure ensembling"


def test_what_the_text_says_about_the_ensembling_claims_holds():
    value = {key: claim["value"] for key, claim in cl.load_claims().items()
             if key.startswith("ensembling.")}
    langs = ("en", "fr", "es", "it", "pt", "zh")
    gain = {(lang, split): value[f"ensembling.{lang}.{split}.gain_images"] for lang in langs
            for split in ("seen", "heldout")}
    # notebook 02 (ensemble-discussion): "some languages gain most on the held-out pairs and
    # others on the seen pairs"
    assert any(gain[lang, "heldout"] > gain[lang, "seen"] for lang in langs), gain
    assert any(gain[lang, "seen"] > gain[lang, "heldout"] for lang in langs), gain
    # README: over one template, "in the five other languages from -8 (zh, held-out) to +23
    # images (fr, held-out)", the two ends of the range
    others = [value[f"ensembling.{lang}.{split}.template_gain_images"] for lang in langs[1:]
              for split in ("seen", "heldout")]
    assert min(others) == value["ensembling.zh.heldout.template_gain_images"], others
    assert max(others) == value["ensembling.fr.heldout.template_gain_images"], others


def test_lesson04_cpu_claims_agree_with_what_the_text_says_of_them():
    """README and notebook 04 say the section runs within Binder's 2 GB, and quote the run's
    average step: its steps take less than the whole cell, which also loads and warms up."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_lesson04_cpu import BINDER_BYTES

    value = {key: claim["value"] for key, claim in cl.load_claims().items()
             if key.startswith("lesson04.cpu.")}
    for key in ("lesson04.cpu.peak_mb", "lesson04.cpu.peak_mb_with_text"):
        assert value[key] * 1e6 < BINDER_BYTES, f"{key} = {value[key]} MB: over Binder's memory"
    assert value["lesson04.cpu.peak_mb"] < value["lesson04.cpu.peak_mb_with_text"], \
        "freeing the text tower saves memory"
    run_seconds = value["lesson04.cpu.steps"] * value["lesson04.cpu.seconds_per_step"]
    assert run_seconds < 60 * value["lesson04.cpu.cell_minutes"], (
        "seconds_per_step is not the run's average: rerun "
        "python benchmarks/bench_lesson04_cpu.py --threads 2 --binder --record")


def test_pil_shapes_claims_are_what_the_bundled_model_measures_now():
    stored = cl.load_claims()
    for key, (value, _unit) in measures.pil_shapes_claims().items():
        assert stored[key]["value"] == value, f"{key}: run python -m course_tools.claims --measure pil-shapes"


@pytest.mark.parametrize("name, smaller", [("vq-roundtrip", {"n": 384}), ("reranker", {"n": 384})])
def test_lesson05_tokenizer_and_reranker_claims_are_close_to_a_smaller_run_now(name, smaller):
    stored = cl.load_claims()
    # 384 pictures instead of the claims' 3,000 keep this fast; the full run is exact
    for key, (value, unit) in cl.MEASURES[name](**smaller).items():
        if unit == "fraction":
            assert abs(stored[key]["value"] - value) < 0.1, f"{key}: run python -m course_tools.claims --measure {name}"


def test_tiny_generate_claims_of_one_prompt_are_what_generate_gives_now():
    stored = cl.load_claims()
    again = measures.tiny_generate_claims(pairs=[("red", "circle")])
    for key in ("tiny-generate.red_circle.start_score", "tiny-generate.red_circle.final_score"):
        # exact on the same code; a change in the generation loop's arithmetic moves it a little
        assert abs(stored[key]["value"] - again[key][0]) < 0.02, f"{key}: run python -m course_tools.claims --measure tiny-generate"
    assert again["tiny-generate.colour_dominant"][0] == 1, "the red circle is no longer mostly red"
    assert stored["tiny-generate.n_prompts"]["value"] == 24


def test_model_size_is_recounted_from_the_architecture():
    stored = cl.load_claims()
    for key, (value, _unit) in measures.model_size_claims().items():
        assert stored[key]["value"] == value, f"{key}: run python -m course_tools.claims --measure model-size"


def test_vit_speed_estimates_follow_from_its_measured_rates():
    from utils.zeroshot import IMAGENET_CLASSNAMES, SIMPLE_IMAGENET_TEMPLATES

    stored = {key: claim["value"] for key, claim in cl.load_claims().items() if key.startswith("vit-speed.")}
    assert stored["vit-speed.imagenet_texts"] == len(IMAGENET_CLASSNAMES) * len(SIMPLE_IMAGENET_TEMPLATES)
    minutes = stored["vit-speed.imagenet_texts"] / stored["vit-speed.texts_per_cpu_s"] / 60
    assert stored["vit-speed.imagenet_cpu_minutes"] == pytest.approx(minutes, rel=0.01)
    minutes = 20_000 / stored["vit-speed.images_per_cpu_s"] / 60
    assert stored["vit-speed.images_20000_cpu_minutes"] == pytest.approx(minutes, rel=0.01)
