"""What the quizzes say: facts that match the code, questions on understanding, fair options.

tests/test_quiz.py checks the format and the exports; this file checks the content: a quiz
must not ask about code the lesson never shows, must agree with what the code does, must
not give its answers away by their length, and must write numbers the way each language does."""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import pytest

from utils import quiz as Q

ROOT = Path(__file__).resolve().parent.parent
CODE = re.compile(r"`([^`]*)`")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")


def raw(lesson: str) -> dict:
    return json.loads((ROOT / "quiz" / f"{lesson}.json").read_text(encoding="utf-8"))


def texts(node) -> list[dict]:
    """Every {"en": ..., "fr": ...} text of a quiz file."""
    if isinstance(node, dict):
        found = [node] if isinstance(node.get("en"), str) else []
        return found + [t for value in node.values() for t in texts(value)]
    if isinstance(node, list):
        return [t for value in node for t in texts(value)]
    return []


def question(lesson: str, qid: str) -> dict:
    data = raw(lesson)
    return next(q for stage in Q.STAGES for q in data[stage] if q["id"] == qid)


def lesson_source(lesson: str) -> str:
    """The text a student reads for `lesson`: its notebook source, or the lesson page."""
    if lesson == "overview":
        return (ROOT / "lessons" / "src" / "multimodal-networks.md").read_text(encoding="utf-8")
    return (ROOT / "notebooks" / "src" / f"{lesson}.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("lesson", Q.LESSONS)
def test_code_in_a_question_is_code_the_lesson_shows(lesson):
    """A quiz asks about `names` its lesson uses (00 once asked about `preprocess`, never taught)."""
    shown = lesson_source(lesson)
    utils_code = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "utils").glob("*.py"))
    missing = set()
    for text in texts(raw(lesson)):
        for code in CODE.findall(text["en"]):
            if not (IDENTIFIER.fullmatch(code) or re.search(r"[(=@_]", code)):
                continue  # a prompt such as `a lighthouse at dusk | blurry:-0.5`, not code
            for name in IDENTIFIER.findall(code):
                if name not in shown and not (lesson == "overview" and name in utils_code):
                    missing.add(name)
    assert not missing, f"{lesson}: the quiz names {sorted(missing)}, which the lesson never shows"


def test_the_cache_question_describes_what_the_index_really_checks():
    """utils/retrieval.py keys each cached file by path, size and mtime: no content hash."""
    source = (ROOT / "utils" / "retrieval.py").read_text(encoding="utf-8")
    assert "st.st_size, st.st_mtime_ns" in source, "the index no longer keys files by size and mtime"
    text = json.dumps(question("03-image-search", "cache-invalidation"), ensure_ascii=False)
    assert "hash" not in text.lower()
    assert "size and modification time" in text


def test_the_logit_scale_question_uses_the_bundled_model_and_the_real_cap():
    """01's question quotes the tiny CLIP's learned scale; it must match the shipped weights."""
    from safetensors.torch import load_file

    weights = load_file(str(ROOT / "utils" / "assets" / "tiny-shapes.safetensors"))
    scale = float(weights["logit_scale"].float().exp())
    q = question("01-contrastive-learning", "tiny-scale")
    shown = f"{scale:.1f}"
    for lang, text in q["question"].items():
        local = shown if lang in ("en", "zh") else shown.replace(".", ",")
        assert local in text, f"{lang}: the question should quote s ≈ {local}, the bundled model's scale"
    assert scale < 100, "the bundled model now sits at the cap: the question's premise is false"
    tree = ast.parse((ROOT / "utils" / "tinyclip.py").read_text(encoding="utf-8"))
    clamps = [ast.unparse(node) for node in ast.walk(tree)
              if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "clamp_"]
    assert any("math.log(100)" in c for c in clamps), "train_clip no longer caps the scale at 100"
    right = q["options"][q["answer"]]["text"]["en"]
    assert f"{1 / scale:.3f}" in right, "the temperature 1/s in the right option is wrong"


def test_the_temperature_question_states_its_premise_in_both_directions():
    """The loss is symmetric: a falling loss needs the right pair to win its row AND its column."""
    text = question("01-contrastive-learning", "temperature-drop")["question"]["en"]
    assert "row" in text and "column" in text


def test_few_questions_are_arithmetic_only():
    """Numeric questions are kept only where the computation is the idea (ln N, recall@k...)."""
    numeric = [(lesson, q["id"]) for lesson in Q.LESSONS for stage in Q.STAGES
               for q in raw(lesson)[stage] if q["type"] == "numeric"]
    total = sum(len(raw(lesson)[stage]) for lesson in Q.LESSONS for stage in Q.STAGES)
    assert len(numeric) <= total // 10, f"{len(numeric)} numeric questions out of {total}: {numeric}"
    for lesson in Q.LESSONS:
        assert sum(1 for item in numeric if item[0] == lesson) <= 2, lesson


@pytest.mark.parametrize("lesson", Q.LESSONS)
def test_the_right_option_is_not_usually_the_longest(lesson):
    """A right answer that is always the longest, most careful option gives itself away."""
    singles = [q for stage in Q.STAGES for q in raw(lesson)[stage] if q["type"] == "single"]
    longest = []
    for q in singles:
        lengths = [len(o["text"]["en"]) for o in q["options"]]
        if lengths[q["answer"]] == max(lengths) and lengths.count(max(lengths)) == 1:
            longest.append(q["id"])
    assert len(longest) <= len(singles) / 2, f"{lesson}: the right option is the longest in {longest}"


DECIMAL = re.compile(r"(?<![\d.,])\d+\.\d+(?![\d.,])")
THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d,])")
GROUP = {"fr": "[ \u00a0\u202f]", "es": "[.\u00a0\u202f ]", "it": "[.\u00a0\u202f ]", "pt": "[.\u00a0\u202f ]"}


@pytest.mark.parametrize("lesson", Q.LESSONS)
def test_numbers_follow_each_language(lesson):
    """0.28 is 0,28 in fr/es/it/pt; 32,768 is 32 768 in fr and 32.768 in es/it/pt (code aside)."""
    problems = []
    for text in texts(raw(lesson)):
        english = CODE.sub("", text["en"])
        for number in DECIMAL.findall(english):
            for lang in GROUP:
                if number.replace(".", ",") not in CODE.sub("", text[lang]):
                    problems.append(f"{lang}: {number} -> {text[lang]!r}")
        for number in THOUSANDS.findall(english):
            for lang, group in GROUP.items():
                pattern = re.escape(number).replace(",", group)
                if len(number.replace(",", "")) == 4 and lang != "fr":
                    pattern = f"(?:{pattern}|{number.replace(',', '')})"  # 1000 is fine in es/it/pt
                if not re.search(pattern, text[lang]):
                    problems.append(f"{lang}: {number} -> {text[lang]!r}")
    assert not problems, "\n".join(problems)


def test_widget_options_are_labelled_checkboxes_reachable_by_keyboard():
    """Every control is a native input (Tab to reach, Space to tick, Enter on Check) with a label."""
    quiz = Q.load_quiz("02-zero-shot-classification")
    widget = Q.QuizWidget(quiz, "post", "fr")
    for q, control, button in zip(widget.questions, widget.inputs, widget.buttons):
        assert type(button).__name__ == "Button" and not button.disabled
        if q.type == "numeric":
            assert type(control).__name__ == "Text" and not control.disabled
            assert control.tooltip, "the number box needs a label for screen readers"
            continue
        for k, (box, option) in enumerate(zip(control, q.options)):
            assert type(box).__name__ == "Checkbox" and not box.disabled
            assert box.description == f"{Q.LETTERS[k]}."
            assert box.tooltip == Q.tr(option.text, "fr")
    assert math.isclose(len(widget.buttons), len(widget.questions))
