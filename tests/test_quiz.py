"""Quizzes: every file validates, exports are well-formed, text is escaped, bad files are named.

utils.quiz (what students run) and course_tools.quiz_export (exports and authors' checks).
The GIFT export is parsed back here by a small parser written for the test (not the exporter's
code), so a wrong escape or a wrong number of right answers shows up as a mismatch."""

from __future__ import annotations

import html
import io
import json
import math
import re
from pathlib import Path

import pytest

from course_tools import quiz_export as X
from utils import quiz as Q
from utils.i18n import LANGUAGES

ROOT = Path(__file__).resolve().parent.parent
LANGS = list(LANGUAGES)


def raw(lesson: str) -> dict:
    return json.loads((ROOT / "quiz" / f"{lesson}.json").read_text(encoding="utf-8"))


def localised_fields(node, path="") -> list[tuple[str, dict]]:
    """Every dict that holds an 'en' text, found by walking the JSON (independent of the schema)."""
    found = []
    if isinstance(node, dict):
        if "en" in node:
            found.append((path, node))
        for key, value in node.items():
            found += localised_fields(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += localised_fields(value, f"{path}[{i}]")
    return found


# ------------------------------------------------------------------ the quiz files


@pytest.mark.parametrize("lesson", Q.LESSONS)
def test_every_quiz_validates_with_both_stages_in_every_language(lesson):
    quiz = Q.load_quiz(lesson)  # raises QuizError listing every problem
    assert 3 <= len(quiz.questions("pre")) <= 5
    assert 5 <= len(quiz.questions("post")) <= 8
    data = raw(lesson)
    fields = localised_fields(data)
    n_questions = len(data["pre"]) + len(data["post"])
    assert len(fields) > 3 * n_questions  # question, options and explanations were all found
    for path, text in fields:
        missing = [lang for lang in LANGS if not str(text.get(lang, "")).strip()]
        assert not missing, f"{lesson}{path} lacks {missing}"
        assert set(text) == set(LANGS), f"{lesson}{path} has unknown languages {set(text) - set(LANGS)}"
    for stage in Q.STAGES:
        for q in data[stage]:
            for option in q.get("options", []):
                assert option["explanation"]["en"].strip(), f"{lesson} {q['id']}: option without explanation"


def test_quiz_check_reports_no_problem_for_the_course():
    assert X.check_all() == []
    assert sorted(p.stem for p in (ROOT / "quiz").glob("*.json")) == sorted([*Q.LESSONS, "schema", "ui"])


def test_interface_strings_exist_in_every_language():
    ui = json.loads((ROOT / "quiz" / "ui.json").read_text(encoding="utf-8"))
    for key, text in ui.items():
        assert set(text) == set(LANGS), key
        placeholders = set(re.findall(r"{(\w+)}", text["en"]))
        for lang in LANGS:
            assert set(re.findall(r"{(\w+)}", text[lang])) == placeholders, (key, lang)


@pytest.mark.parametrize("lesson", Q.LESSONS)
def test_right_answers_grade_right_and_wrong_ones_wrong(lesson):
    quiz = Q.load_quiz(lesson)
    for stage in Q.STAGES:
        for q in quiz.questions(stage):
            if q.type == "numeric":
                assert q.is_correct(q.answer)
                assert q.is_correct(q.answer + 0.5 * q.tolerance)
                assert not q.is_correct(q.answer + q.tolerance + max(1e-3, abs(q.answer) * 0.01))
            elif q.type == "single":
                assert q.is_correct(q.answer)
                wrong = (q.answer + 1) % len(q.options)
                assert not q.is_correct(wrong)
            else:
                assert q.is_correct(list(q.answer))
                assert not q.is_correct(list(q.answer)[:-1] or [0, 1, 2, 3][: len(q.options)])
                assert not q.is_correct(range(len(q.options)))  # ticking everything is wrong


def test_single_choice_answers_are_not_always_in_the_same_place():
    for lesson in Q.LESSONS:
        quiz = Q.load_quiz(lesson)
        positions = [q.answer for s in Q.STAGES for q in quiz.questions(s) if q.type == "single"]
        assert len(set(positions)) >= 2, f"{lesson}: every right answer is {Q.LETTERS[positions[0]]}"


def test_numeric_answers_match_the_computations_they_explain():
    expected = {
        ("03-image-search", "recall-at-3"): sum(r <= 3 for r in (1, 3, 7, 2)) / 4,
    }
    questions = {(lesson, q.id): q for lesson in Q.LESSONS
                 for s in Q.STAGES for q in Q.load_quiz(lesson).questions(s)}
    for key, value in expected.items():
        assert questions[key].is_correct(value), (key, questions[key].answer, value)


def test_understanding_questions_quote_the_right_worked_numbers():
    """01's starting loss and 02's softmax were calculator questions; now they ask what the
    number means, and the right option and its explanation still quote it correctly."""
    questions = {(lesson, q.id): q for lesson in Q.LESSONS
                 for s in Q.STAGES for q in Q.load_quiz(lesson).questions(s)}
    loss = questions["01-contrastive-learning", "initial-loss"]
    assert loss.type == "single"
    right = loss.options[loss.answer]
    assert f"ln 64 ≈ {math.log(64):.2f}" in Q.tr(right.text, "en") + Q.tr(right.explanation, "en")
    softmax = questions["02-zero-shot-classification", "softmax-probability"]
    assert softmax.type == "single"
    probs = [math.exp(100 * (s - 0.30)) for s in (0.30, 0.28, 0.25, 0.20)]
    probs = [p / sum(probs) for p in probs]
    explained = Q.tr(softmax.options[softmax.answer].explanation, "en")
    assert f"≈ {probs[0]:.2f}" in explained and f"about {probs[1]:.2f}" in explained, explained


def test_the_numbers_in_distractors_and_explanations_are_right_in_every_language():
    """Wrong options and explanations quote arithmetic too: each number is recomputed here, and
    every language must quote it (with its own decimal sign)."""
    import inspect

    from utils import tinyclip

    logits = [100 * c for c in (0.30, 0.28, 0.25, 0.20)]
    gaps = [logits[0] - x for x in logits[1:]]
    expected = {  # quiz -> numbers, as English writes them
        "01-contrastive-learning": [f"{2 * math.log(64):.1f}"],  # ln 64 both ways: about 8.3
        "02-zero-shot-classification": [f"{sum((0.30, 0.28, 0.25, 0.20)):.2f}",  # 0.30 / 1.03
                                         f"{0.30 / sum((0.30, 0.28, 0.25, 0.20)):.2f}",  # 0.29
                                         f"{math.exp(-2):.2f}"],  # e^-2 ≈ 0.14
    }
    assert (min(gaps), max(gaps)) == pytest.approx((2, 10))  # "2 to 10 apart"
    assert "math.log(100)" in inspect.getsource(tinyclip.train_clip)  # "caps s at 100"
    for lesson, numbers in expected.items():
        quiz = Q.load_quiz(lesson)
        for lang in ("en", "fr", "es", "it", "pt", "zh"):
            said = " ".join(Q.tr(part, lang) for st in Q.STAGES for q in quiz.questions(st)
                            for o in q.options for part in (o.text, o.explanation) if part)
            for n in numbers:
                assert n in said or n.replace(".", ",") in said, (lesson, lang, n)


def test_every_notebook_source_ends_with_its_post_quiz():
    sources = sorted((ROOT / "notebooks" / "src").glob("[0-9][0-9]-*.py"))
    assert sources, "no notebook sources found"
    for src in sources:
        cells = src.read_text(encoding="utf-8").rstrip().split("# %%")
        if src == sources[-1]:  # the lesson's own post quiz closes the last notebook (the lesson page says so)
            assert re.search(r'show\(\s*"overview"\s*,\s*"post"\s*,\s*LANG\s*\)\s*$', cells[-1]), \
                f"{src.name}: the last cell must call show(\"overview\", \"post\", LANG)"
            while "overview" in cells[-1]:  # its cell and the markdown cell that introduces it
                cells.pop()
        last_cell = cells[-1]
        match = re.search(r'show\(\s*"([^"]+)"\s*,\s*"post"\s*,\s*LANG\s*\)\s*$', last_cell)
        assert match, f"{src.name}: the last cell must call show(\"<lesson>\", \"post\", LANG)"
        assert match.group(1) == src.stem, f"{src.name}: shows the quiz of {match.group(1)!r}"


# ------------------------------------------------------------------ malformed files


def write_quiz(tmp_path: Path, data: dict, name: str = "01-contrastive-learning") -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(Q.QuizError) as info:
        Q.load_quiz(path)
    lines = str(info.value).splitlines()
    assert str(path) in lines[0]
    return lines[1:]


def test_missing_answer_is_named(tmp_path):
    data = raw("01-contrastive-learning")
    qid = data["post"][1]["id"]
    del data["post"][1]["answer"]
    problems = problems_of(write_quiz(tmp_path, data))
    assert len(problems) == 1, problems
    assert str(tmp_path) in problems[0]
    assert f"question {qid!r} (post #2)" in problems[0]
    assert "'answer' is a required property" in problems[0]


def test_answer_index_out_of_range_is_named(tmp_path):
    data = raw("01-contrastive-learning")
    q = next(q for q in data["pre"] if q["type"] == "single")
    q["answer"] = 7
    problems = problems_of(write_quiz(tmp_path, data))
    assert len(problems) == 1, problems
    assert f"question {q['id']!r}" in problems[0]
    assert "answer index 7 is out of range" in problems[0]
    assert f"{len(q['options'])} options" in problems[0]


def test_out_of_range_index_in_a_multiple_choice_is_named(tmp_path):
    data = raw("02-zero-shot-classification")
    q = next(q for q in data["post"] if q["type"] == "multiple")
    q["answer"] = [0, 9]
    problems = problems_of(write_quiz(tmp_path, data, "02-zero-shot-classification"))
    assert problems == [f"{tmp_path / '02-zero-shot-classification.json'}: question {q['id']!r} "
                        f"(post #{data['post'].index(q) + 1}): answer index 9 is out of range: the "
                        f"question has {len(q['options'])} options (valid: 0 to {len(q['options']) - 1})"]


def test_missing_language_is_named(tmp_path):
    data = raw("01-contrastive-learning")
    q = data["post"][0]
    del q["options"][2]["explanation"]["fr"]
    problems = problems_of(write_quiz(tmp_path, data))
    assert len(problems) == 1, problems
    assert f"question {q['id']!r} (post #1)" in problems[0]
    assert "options[2].explanation: 'fr' is a required property" in problems[0]


def test_duplicate_ids_are_named(tmp_path):
    data = raw("01-contrastive-learning")
    data["post"][3]["id"] = data["pre"][0]["id"]
    path = write_quiz(tmp_path, data)
    assert Q.load_quiz(path).lesson == "01-contrastive-learning"  # it runs: only authors care
    problems = X.check(path)
    assert len(problems) == 1, problems
    assert f"duplicate id {data['pre'][0]['id']!r} (also pre #1)" in problems[0]
    assert "(post #4)" in problems[0]


def test_several_problems_are_all_reported(tmp_path):
    data = raw("03-image-search")
    del data["pre"][0]["question"]["zh"]
    data["post"] = data["post"][:2]  # too few questions after the lesson
    data["post"][1]["tolerance"] = -1
    problems = problems_of(write_quiz(tmp_path, data, "03-image-search"))
    text = "\n".join(problems)
    assert "question: 'zh' is a required property" in text
    assert "post is too short (minItems 5)" in text
    assert "tolerance: -1 is less than the minimum of 0" in text
    assert len(problems) == 3, problems


def test_a_field_that_a_question_type_may_not_have_is_named(tmp_path):
    data = raw("02-zero-shot-classification")
    index, q = next((i, q) for i, q in enumerate(data["pre"]) if q["type"] == "single")
    q["tolerance"] = 0.5
    problems = problems_of(write_quiz(tmp_path, data, "02-zero-shot-classification"))
    assert problems == [f"{tmp_path / '02-zero-shot-classification.json'}: question {q['id']!r} "
                        f"(pre #{index + 1}): a 'single' question must not have ['tolerance']"]


def test_wrong_file_name_and_bad_json_are_named(tmp_path):
    data = raw("00-setup")
    data["pre"][0]["options"][1]["text"]["en"] = data["pre"][0]["options"][0]["text"]["en"]
    problems = X.check(write_quiz(tmp_path, data, "00-typo"))
    assert len(problems) == 2, problems
    assert "differs from the file name '00-typo'" in problems[0]
    assert "(pre #1): two options have the same English text" in problems[1]
    bad = tmp_path / "05-dall-e.json"
    bad.write_text('{"lesson": "05-dall-e",\n  "title": }', encoding="utf-8")
    with pytest.raises(Q.QuizError, match=r"05-dall-e\.json: not valid JSON \(line 2"):
        Q.load_quiz(bad)


def test_a_modified_copy_still_validates(tmp_path):
    """The tests above fail for the reason they name, not because copies never validate."""
    assert Q.load_quiz(write_quiz(tmp_path, raw("01-contrastive-learning"))).lesson == \
        "01-contrastive-learning"


# ------------------------------------------------------------------ GIFT, parsed back


def gift_unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append("\n" if text[i + 1] == "n" else text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def split_unescaped(text: str, seps: str) -> list[tuple[str, str]]:
    """'=a~b' -> [('=', 'a'), ('~', 'b')], ignoring escaped separators."""
    parts, current, sep, i = [], [], "", 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            current.append(text[i:i + 2])
            i += 2
            continue
        if ch in seps:
            parts.append((sep, "".join(current)))
            current, sep = [], ch
        else:
            current.append(ch)
        i += 1
    parts.append((sep, "".join(current)))
    return parts


def unescaped_index(text: str, target: str, start: int = 0) -> int:
    i = start
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(target, i):
            return i
        i += 1
    return -1


def strict(segment: str) -> str:
    """A text segment of a GIFT question: every special character must be escaped."""
    bare = re.sub(r"\\.", "", segment)  # drop escaped pairs
    assert not set(bare) & set("~=#{}:"), f"unescaped special character in {segment!r}"
    return segment


def parse_gift(text: str) -> list[dict]:
    """Questions of a GIFT file: name, text, kind, answers [(weight %, text, feedback)]."""
    questions = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith(("//", "$"))]
        if not lines:
            continue
        body = "\n".join(lines)
        assert body.startswith("::"), body[:80]
        end_name = unescaped_index(body, "::", 2)
        name, rest = body[2:end_name], body[end_name + 2:]
        open_at = unescaped_index(rest, "{")
        close_at = len(rest) - 1
        assert rest.rstrip().endswith("}") and unescaped_index(rest, "{", open_at + 1) == -1
        assert unescaped_index(rest[:close_at], "}") == -1, "an unescaped } inside a question"
        qtext, answers_text = rest[:open_at].strip(), rest[open_at + 1:close_at]
        general = ""
        g = unescaped_index(answers_text, "####")
        if g >= 0:
            answers_text, general = answers_text[:g], gift_unescape(strict(answers_text[g + 4:].strip()))
        q = {"name": gift_unescape(strict(name)), "text": strict(qtext), "general": general,
             "answers": []}
        if answers_text.strip().startswith("#"):
            value, _, feedback = answers_text.strip()[1:].partition("#")
            number, _, tolerance = value.partition(":")
            q.update(kind="numeric", value=float(number), tolerance=float(tolerance),
                     feedback=gift_unescape(strict(feedback)))
        else:
            q["kind"] = "choice"
            for sep, chunk in split_unescaped(answers_text, "=~")[1:]:
                chunk = chunk.strip()
                weight = 100.0 if sep == "=" else 0.0
                m = re.match(r"%(-?[\d.]+)%", chunk)
                if m:
                    weight, chunk = float(m.group(1)), chunk[m.end():]
                pieces = split_unescaped(chunk, "#")
                assert len(pieces) <= 2, f"two unescaped # in {chunk!r}"
                answer = gift_unescape(strict(pieces[0][1].strip()))
                feedback = gift_unescape(strict("".join(p[1] for p in pieces[1:]).strip()))
                q["answers"].append((weight, answer, feedback, sep))
        questions.append(q)
    return questions


@pytest.mark.parametrize("lesson", Q.LESSONS)
def test_gift_export_is_well_formed_in_every_language(lesson):
    quiz = Q.load_quiz(lesson)
    for stage in Q.STAGES:
        for lang in LANGS:
            text = X.to_gift(quiz, stage, lang)
            parsed = parse_gift(text)
            questions = quiz.questions(stage)
            assert len(parsed) == len(questions)
            for q, p in zip(questions, parsed):
                assert p["name"] == f"{lesson}-{stage}-{q.id}"
                assert html.unescape(gift_unescape(p["text"].removeprefix("[markdown]"))) == \
                    Q.tr(q.text, lang)
                if q.type == "numeric":
                    assert p["kind"] == "numeric"
                    assert p["value"] == pytest.approx(q.answer)
                    assert p["tolerance"] == pytest.approx(q.tolerance)
                    assert html.unescape(p["feedback"]) == Q.tr(q.explanation, lang)
                    continue
                assert p["kind"] == "choice" and len(p["answers"]) == len(q.options)
                for k, (_, answer, feedback, _) in enumerate(p["answers"]):
                    assert html.unescape(answer) == Q.tr(q.options[k].text, lang)
                    assert html.unescape(feedback) == Q.tr(q.options[k].explanation, lang)
                right = [k for k, a in enumerate(p["answers"]) if a[0] > 0]
                assert right == sorted(q.correct), (q.id, lang)
                if q.type == "single":
                    assert [a[3] for a in p["answers"]].count("=") == 1
                else:
                    assert sum(a[0] for a in p["answers"] if a[0] > 0) == pytest.approx(100, abs=0.01)
                    wrong = [a[0] for a in p["answers"] if a[0] <= 0]
                    if wrong:
                        assert sum(wrong) == pytest.approx(-100, abs=0.01)


def tricky_quiz(tmp_path: Path) -> Q.Quiz:
    """A valid quiz whose texts hold every GIFT special character and some HTML."""
    data = raw("01-contrastive-learning")
    nasty = 'Is a {b} = ~c #d: e\\f? <script>alert("x")</script>\nline two & more'
    for lang in LANGS:
        data["post"][0]["question"][lang] = nasty
        data["post"][0]["options"][0]["text"][lang] = "=~#{}: <b>bold</b>"
        data["post"][0]["options"][1]["explanation"][lang] = "50% off: ~#= <img src=x onerror=alert(1)>"
    return Q.load_quiz(write_quiz(tmp_path, data))


def test_gift_escapes_every_special_character(tmp_path):
    quiz = tricky_quiz(tmp_path)
    text = X.to_gift(quiz, "post", "en")
    assert "<script" not in text and "<b>" not in text
    first = parse_gift(text)[0]
    assert html.unescape(gift_unescape(first["text"].removeprefix("[markdown]"))) == \
        Q.tr(quiz.questions("post")[0].text, "en")
    assert html.unescape(first["answers"][0][1]) == "=~#{}: <b>bold</b>"
    assert html.unescape(first["answers"][1][2]) == "50% off: ~#= <img src=x onerror=alert(1)>"
    assert [a[0] > 0 for a in first["answers"]].count(True) == 1


# ------------------------------------------------------------------ HTML is escaped


def html_values(widget) -> list[str]:
    values = [widget.value] if type(widget).__name__ == "HTML" else []
    for child in getattr(widget, "children", ()):
        values += html_values(child)
    return values


def test_script_in_a_question_renders_as_text(tmp_path):
    quiz = tricky_quiz(tmp_path)
    widget = Q.QuizWidget(quiz, "post", "en")
    shown = "\n".join(html_values(widget.box))
    assert '&lt;script&gt;alert("x")&lt;/script&gt;' in shown
    assert "&lt;b&gt;bold&lt;/b&gt;" in shown
    assert "<script" not in shown and "<b>bold" not in shown
    widget.inputs[0][1].value = True  # option B carries the <img onerror> explanation
    widget.check(0)  # right: every explanation is shown; wrong: the chosen one is
    assert "&lt;img src=x onerror=alert(1)&gt;" in widget.feedback[0].value
    assert "<img" not in widget.feedback[0].value
    markdown = X.to_markdown(quiz, "post", "en")
    assert "<script" not in markdown and "&lt;script&gt;" in markdown
    jq = json.dumps(X.to_jupyterquiz(quiz, "post", "en"))
    assert "<script" not in jq and "<img" not in jq


# ------------------------------------------------------------------ the notebook widget


def test_widget_grades_retries_reveals_and_scores():
    quiz = Q.load_quiz("01-contrastive-learning")
    widget = Q.QuizWidget(quiz, "post", "fr")
    n = len(widget.questions)
    q0 = widget.questions[0]
    assert q0.type == "single"
    boxes = widget.inputs[0]
    assert widget.check(0) is False and "Choisissez d'abord" in widget.feedback[0].value
    assert widget.attempts[0] == 0  # an empty answer is not an attempt
    wrong = (q0.answer + 1) % len(boxes)
    boxes[wrong].value = True
    assert widget.check(0) is False
    assert "réessayez" in widget.feedback[0].value
    assert "La réponse" not in widget.feedback[0].value  # not revealed after one try
    boxes[(wrong + 1) % len(boxes)].value = True
    assert sum(b.value for b in boxes) == 1  # single choice: ticking one unticks the other
    boxes[wrong].value = True
    assert widget.check(0) is False
    assert f"La réponse\u00a0: {Q.LETTERS[q0.answer]}" in widget.feedback[0].value
    loss = next(i for i, q in enumerate(widget.questions) if q.id == "initial-loss")
    widget.inputs[loss][widget.questions[loss].answer].value = True
    assert widget.check(loss) is True
    multi = next(i for i, q in enumerate(widget.questions) if q.type == "multiple")
    right = sorted(widget.questions[multi].correct)
    assert len(right) >= 2
    widget.inputs[multi][right[0]].value = True  # right, but not all of them
    assert widget.check(multi) is False
    assert "mais il en manque" in widget.feedback[multi].value
    for k in right:
        widget.inputs[multi][k].value = True
    assert widget.check(multi) is True
    assert widget.score.value == f"<b>Score\u00a0: 1/{n} justes du premier coup, 3/{n} répondues</b>"


def test_widget_accepts_a_decimal_comma_in_a_number():
    widget = Q.QuizWidget(Q.load_quiz("03-image-search"), "post", "fr")
    numeric = next(i for i, q in enumerate(widget.questions) if q.id == "recall-at-3")
    widget.inputs[numeric].value = "0,75"  # a decimal comma is accepted
    assert widget.check(numeric) is True


# ------------------------------------------------------------------ terminal and exports


def right_reply(q: Q.Question) -> str:
    if q.type == "numeric":
        return Q.fmt_number(q.answer)
    return ", ".join(Q.LETTERS[k].lower() for k in sorted(q.correct))


def test_choices_typed_on_a_cjk_keyboard_parse_like_ascii():
    q = Q.Question("x", "multiple", {}, [Q.Option({}, {})] * 4, [0, 2])
    for typed in ("a，c", "a、c", "Ａ，Ｃ", "a；c"):
        assert Q.parse_choice(typed, q) == Q.parse_choice("a,c", q) == [0, 2], typed
    assert Q.parse_choice("²", q) is None  # a superscript digit is not choice 2


def test_numbers_in_a_french_quiz_use_a_decimal_comma():
    q = Q.Question("x", "numeric", {}, [], 0.9625, tolerance=0.05)
    assert q.answer_text("en") == "0.9625 (± 0.05)"
    assert q.answer_text("fr") == "0,9625 (± 0,05)"
    assert "0,05" in Q.hint(q, "fr") and "0.05" in Q.hint(q, "en")


def test_terminal_quiz_with_right_answers_scores_full_marks():
    quiz = Q.load_quiz("04-vqgan-clip")
    questions = quiz.questions("post")
    replies = ["Z", "42, b"] if questions[0].type != "numeric" else ["abc"]
    replies += [right_reply(q) for q in questions]
    out = io.StringIO()
    score, asked = Q.take_quiz(quiz, "post", "es", io.StringIO("\n".join(replies) + "\n"), out)
    assert (score, asked) == (len(questions), len(questions))
    text = out.getvalue()
    assert text.count("¡Correcto!") == len(questions)
    assert "Responde con las letras" in text  # the invalid replies were refused, then asked again
    assert f"Tu puntuación: {len(questions)}/{len(questions)}" in text


def test_terminal_quiz_stops_cleanly_at_end_of_input():
    quiz = Q.load_quiz("00-setup")
    q = quiz.questions("pre")[0]
    wrong = Q.LETTERS[(q.answer + 1) % len(q.options)]
    out = io.StringIO()
    assert Q.take_quiz(quiz, "pre", "en", io.StringIO(wrong + "\n"), out) == (0, 1)
    assert "Quiz stopped before the end." in out.getvalue()
    assert f"The answer: {Q.LETTERS[q.answer]}" in out.getvalue()


def test_cli_json_export_and_check(tmp_path, capsys):
    from utils.__main__ import main

    assert main(["quiz", "03-image-search", "--stage", "pre", "--lang", "fr", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["lang"] == "fr" and printed["stage"] == "pre"
    assert len(printed["questions"]) == len(Q.load_quiz("03-image-search").questions("pre"))
    assert printed["questions"][0]["question"] == raw("03-image-search")["pre"][0]["question"]["fr"]
    assert main(["quiz", "03-image-search", "--stage", "both", "--json"]) == 0
    assert [item["stage"] for item in json.loads(capsys.readouterr().out)] == list(Q.STAGES)

    out = tmp_path / "all.gift"
    assert X.main(["all", "--stage", "both", "--lang", "zh", "--format", "gift",
                   "--out", str(out)]) == 0
    total = sum(len(Q.load_quiz(x).questions(s)) for x in Q.LESSONS for s in Q.STAGES)
    assert len(parse_gift(out.read_text(encoding="utf-8"))) == total

    assert X.main(["05-dall-e", "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert "## Answer key" in markdown and markdown.count("**1.**") == 2

    assert X.main(["--check"]) == 0
    assert "0 problem(s)" in capsys.readouterr().out


@pytest.mark.parametrize("lesson", Q.LESSONS)
def test_jupyterquiz_export_marks_the_right_answers(lesson):
    quiz = Q.load_quiz(lesson)
    for stage in Q.STAGES:
        items = X.to_jupyterquiz(quiz, stage, "it")
        for q, item in zip(quiz.questions(stage), items, strict=True):
            assert item["question"] == html.escape(Q.tr(q.text, "it"))
            if q.type == "numeric":
                assert item["type"] == "numeric"
                values = [a for a in item["answers"] if a.get("type") == "value"]
                assert values == [{"type": "value", "value": q.answer, "correct": True,
                                   "feedback": html.escape(Q.tr(q.explanation, "it"))}]
                assert item["answers"][-1]["type"] == "default"
            else:
                expected = "multiple_choice" if q.type == "single" else "many_choice"
                assert item["type"] == expected
                assert [a["correct"] for a in item["answers"]] == \
                    [k in q.correct for k in range(len(q.options))]


def test_markdown_export_lists_questions_then_the_key():
    quiz = Q.load_quiz("02-zero-shot-classification")
    text = X.to_markdown(quiz, "post", "pt")
    questions = quiz.questions("post")
    key = text.split("## Gabarito", 1)
    assert len(key) == 2
    for i, q in enumerate(questions, 1):
        assert f"**{i}.** {html.escape(Q.tr(q.text, 'pt'), quote=False)}" in key[0]
        assert f"**{i}.** {q.answer_text('pt')}" in key[1]


def test_pyproject_installs_the_quiz_files_as_package_data():
    """pip install: quiz/*.json become utils/quizdata/*.json (the package utils.quizdata
    is the folder quiz/), so an installed course needs neither a checkout nor the network."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"]["utils.quizdata"] == "quiz"
    assert "utils.quizdata" in setuptools["packages"]
    assert "*.json" in setuptools["package-data"]["utils.quizdata"]


def test_installed_package_finds_its_quiz_files_without_the_checkout(tmp_path, monkeypatch):
    installed = tmp_path / "site-packages" / "utils"
    (installed / "quizdata").mkdir(parents=True)
    for path in (ROOT / "quiz").glob("*.json"):
        (installed / "quizdata" / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(Q, "HERE", installed)  # where utils/quiz.py would be once installed
    monkeypatch.delenv("COURSE_QUIZ_DIR", raising=False)
    assert Q.quiz_file("ui").parent == installed / "quizdata"
    assert Q.load_quiz("01-contrastive-learning").path.parent == installed / "quizdata"
    (installed / "quizdata" / "05-dall-e.json").unlink()
    with pytest.raises(Q.QuizError, match="05-dall-e.json is in none of"):
        Q.quiz_file("05-dall-e")


def test_unknown_lesson_stage_and_language_say_what_to_do():
    with pytest.raises(Q.QuizError, match="Lessons: overview, 00-setup"):
        Q.quiz_file("06-sora")
    quiz = Q.load_quiz("overview")
    with pytest.raises(Q.QuizError, match="choose 'pre'"):
        quiz.questions("during")
    with pytest.raises(Q.QuizError, match="choose one of en, fr"):
        Q.QuizWidget(quiz, "post", "de")


def test_multiple_choice_weights_follow_moodle_grades():
    quiz = Q.load_quiz("03-image-search")
    q = next(q for q in quiz.questions("post") if q.type == "multiple")
    assert len(q.correct) == 2 and len(q.options) == 4
    block = X.to_gift(quiz, "post", "en").split(f"::03-image-search-post-{q.id}::")[1].split("}")[0]
    assert block.count("~%50%") == 2 and block.count("~%-50%") == 2
