"""Quizzes before and after each lesson: load, validate, take, export.

Each lesson has one file `quiz/<lesson>.json` holding a pre-lecture quiz (`pre`, 3-5
questions) and a post-lecture quiz (`post`, 5-8 questions), every text in every course
language. `quiz/schema.json` is the JSON Schema of these files; `quiz/README.md` explains it.

Three question types, each graded by `Question.is_correct(response)`:
- `single`:   one option is right; `answer` is its index (0-based).
- `multiple`: "select all that apply"; `answer` is the list of right indices, and a
              response is right only when it picks exactly those.
- `numeric`:  `answer` is a number; a response x is right when |x - answer| <= tolerance.

    show("01-contrastive-learning", "post", "fr")          # in a notebook (ipywidgets)
    python -m utils quiz 01-contrastive-learning --stage post --lang fr      # in a terminal
    python -m utils quiz all --stage both --export gift --out quiz.gift      # for Moodle
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import sys
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TextIO

from .errors import CourseError
from .i18n import LANGUAGES, SOURCE_LANG, get_language

ROOT = Path(__file__).resolve().parent.parent
LESSONS = (
    "overview",
    "00-setup",
    "01-contrastive-learning",
    "02-zero-shot-classification",
    "03-image-search",
    "04-vqgan-clip",
    "05-dall-e",
)
STAGES = ("pre", "post")
LETTERS = "ABCDEFGH"  # options are shown as A, B, C... (at most 8 per question)


class QuizError(CourseError, ValueError):
    """A quiz file is missing or malformed; the message lists every problem, one per line."""


# ------------------------------------------------------------------ where the files are


def quiz_dirs() -> list[Path]:
    """Folders searched for quiz files, in order: $COURSE_QUIZ_DIR, the course checkout,
    then a cache of files downloaded from the course repository (pip installs lack quiz/)."""
    dirs = [Path(os.environ["COURSE_QUIZ_DIR"])] if os.environ.get("COURSE_QUIZ_DIR") else []
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "multimodal-course"
    return dirs + [ROOT / "quiz", cache / "quiz"]


def quiz_file(name: str) -> Path:
    """The path of `quiz/<name>.json` (a lesson, `schema` or `ui`); downloads it if needed."""
    for folder in quiz_dirs():
        if (folder / f"{name}.json").exists():
            return folder / f"{name}.json"
    if name not in (*LESSONS, "schema", "ui"):
        raise QuizError(f"No quiz called {name!r}. Lessons: {', '.join(LESSONS)}.")
    target = quiz_dirs()[-1] / f"{name}.json"
    return _download(f"quiz/{name}.json", target)


def _download(path_in_repo: str, target: Path) -> Path:
    """Fetch one file of the course repository (used only outside a course checkout)."""
    from . import COURSE_REPO

    url = f"https://raw.githubusercontent.com/{COURSE_REPO}/main/{path_in_repo}"
    help_text = (f"{path_in_repo} is not here (a pip install has no quiz/ folder). Work in a "
                 f"clone of https://github.com/{COURSE_REPO}, or set COURSE_QUIZ_DIR to a folder "
                 "holding the quiz files.")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise QuizError(help_text + " (Offline mode: nothing was downloaded.)")
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - fixed https URL
            data = response.read()
    except OSError as err:
        raise QuizError(f"{help_text} Downloading {url} failed: {err}") from None
    from .assets import write_atomic

    return write_atomic(target, data)  # a temporary file, renamed: never half a file


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------ the data


@dataclass
class Option:
    text: dict[str, str]
    explanation: dict[str, str]


@dataclass
class Question:
    id: str
    type: str  # "single" | "multiple" | "numeric"
    text: dict[str, str]
    options: list[Option]
    answer: int | list[int] | float
    tolerance: float = 0.0
    explanation: dict[str, str] | None = None

    @property
    def correct(self) -> set[int]:
        """Indices of the right options (empty for a numeric question)."""
        if self.type == "single":
            return {int(self.answer)}
        if self.type == "multiple":
            return {int(i) for i in self.answer}
        return set()

    def is_correct(self, response) -> bool:
        """single: an index; multiple: a collection of indices; numeric: a number."""
        if response is None:
            return False
        if self.type == "numeric":
            return abs(float(response) - float(self.answer)) <= self.tolerance + 1e-9
        chosen = {int(response)} if self.type == "single" else {int(i) for i in response}
        return chosen == self.correct

    def answer_text(self, lang: str) -> str:
        """The right answer as a student reads it: 'B', 'A, C' or '992 (± 0.5)'."""
        if self.type == "numeric":
            tol = f" (± {fmt_number(self.tolerance)})" if self.tolerance else ""
            return fmt_number(self.answer) + tol
        return ", ".join(LETTERS[i] for i in sorted(self.correct))


@dataclass
class Quiz:
    lesson: str
    title: dict[str, str]
    stages: dict[str, list[Question]]
    path: Path | None = None

    def questions(self, stage: str) -> list[Question]:
        if stage not in STAGES:
            raise QuizError(f"Unknown stage {stage!r}: choose 'pre' (before the lesson) or 'post'.")
        return self.stages[stage]


def fmt_number(x: float) -> str:
    """992.0 -> '992', 0.96250 -> '0.9625'."""
    x = float(x)
    return str(int(x)) if x.is_integer() else f"{x:.6g}"


def tr(text: dict[str, str], lang: str) -> str:
    """The text of a localised field in `lang` (every language is present once validated)."""
    return text[lang]


def check_language(lang: str) -> str:
    if lang not in LANGUAGES:
        raise QuizError(f"Unknown language {lang!r}; choose one of {', '.join(LANGUAGES)}.")
    return lang


# ------------------------------------------------------------------ validation


def schema() -> dict:
    return json.loads(quiz_file("schema").read_text(encoding="utf-8"))


def _where(path: list, data) -> tuple[str, str]:
    """('question 'temp-drop' (post #2)', 'options[1].text') for a JSON path into a quiz."""
    if len(path) >= 2 and path[0] in STAGES and isinstance(path[1], int):
        stage, index = path[0], path[1]
        try:
            qid = data[stage][index].get("id")
        except (AttributeError, IndexError, KeyError, TypeError):
            qid = None
        where = f"question {qid!r} ({stage} #{index + 1})" if qid else f"{stage} question #{index + 1}"
        rest = path[2:]
    else:
        where, rest = "top level", path
    field = ""
    for part in rest:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    return where, field


def _describe(error) -> str:
    """One short sentence for one jsonschema error (its own messages repeat whole objects)."""
    path = list(error.absolute_path)
    _, field = _where(path, {})
    name = field or (str(path[-1]) if path else "the file")
    inst, kind, value = error.instance, error.validator, error.validator_value
    if kind == "required":
        missing = [key for key in value if isinstance(inst, dict) and key not in inst]
        key = missing[0] if missing else "?"
        if key in LANGUAGES:
            return f"{field or 'a text'} lacks language {key!r} ({LANGUAGES[key]})"
        if key == "answer":
            return "missing 'answer' (the right option's index, a list of indices, or a number)"
        return f"missing {key!r}" + (f" in {field}" if field else "")
    if kind == "additionalProperties":
        extra = sorted(set(inst) - set(error.schema.get("properties", {})))
        return f"{name}: unknown field(s) {', '.join(map(repr, extra))}"
    if kind in ("minItems", "maxItems"):
        size = "at least" if kind == "minItems" else "at most"
        return f"{name} has {len(inst)} item(s); it needs {size} {value}"
    if kind == "type":
        return f"{name} must be of type {value}, not {type(inst).__name__} ({inst!r:.40})"
    if kind in ("enum", "const"):
        return f"{name} is {inst!r:.40}; allowed: {value!r}"
    if kind == "minLength":
        return f"{name} is empty"
    if kind == "pattern":
        return f"{name} {inst!r:.40} does not match the pattern {value}"
    if kind == "not":
        keys = ", ".join(value.get("required", [])) or "a field"
        return f"a {inst.get('type', '?')} question must not have {keys}"
    if kind == "uniqueItems":
        return f"{name} lists the same item twice"
    return f"{name}: {error.message[:160]}"


def validate(data, source: str = "<quiz>") -> list[str]:
    """Every problem of one quiz (parsed JSON), as 'file: question 'id' (stage #n): problem'.

    Structure comes from quiz/schema.json; the checks a schema cannot express follow:
    answer indices within the options, unique question ids, file name = lesson id."""
    from jsonschema import Draft202012Validator

    problems = []
    errors = Draft202012Validator(schema()).iter_errors(data)
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        where, _ = _where(list(error.absolute_path), data)
        problems.append(f"{source}: {where}: {_describe(error)}")
    if not isinstance(data, dict):
        return problems
    stem = Path(source).stem
    if source.endswith(".json") and isinstance(data.get("lesson"), str) and data["lesson"] != stem:
        problems.append(f"{source}: top level: lesson {data['lesson']!r} differs from the file "
                        f"name {stem!r}; rename one of them")
    seen: dict[str, str] = {}
    for stage in STAGES:
        items = data.get(stage)
        for index, q in enumerate(items if isinstance(items, list) else []):
            if not isinstance(q, dict):
                continue
            where, _ = _where([stage, index], data)
            qid = q.get("id")
            if isinstance(qid, str):
                if qid in seen:
                    problems.append(f"{source}: {where}: duplicate id {qid!r} (also {seen[qid]}); "
                                    "ids must be unique within a file")
                seen.setdefault(qid, f"{stage} #{index + 1}")
            problems += [f"{source}: {where}: {p}" for p in _answer_problems(q)]
    return problems


def _answer_problems(q: dict) -> list[str]:
    options, answer = q.get("options"), q.get("answer")
    if q.get("type") not in ("single", "multiple") or not isinstance(options, list):
        return []
    indices = answer if isinstance(answer, list) else [answer]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        return []  # a type error the schema already reported
    n = len(options)
    out = [f"answer index {i} is out of range: the question has {n} options (valid: 0 to {n - 1})"
           for i in indices if not 0 <= i < n]
    english = [o.get("text", {}).get(SOURCE_LANG) for o in options if isinstance(o, dict)]
    english = [e for e in english if isinstance(e, str)]
    if len(set(english)) < len(english):
        out.append("two options have the same English text")
    return out


def parse_quiz(data: dict, path: Path | None = None) -> Quiz:
    """Validate parsed JSON and build a Quiz; raises QuizError listing every problem."""
    source = _display_path(path) if path else "<quiz>"
    problems = validate(data, source)
    if problems:
        problems = list(dict.fromkeys(problems))  # the schema may report one problem twice
        raise QuizError(f"{len(problems)} problem(s) in {source}:\n" + "\n".join(problems))
    stages = {}
    for stage in STAGES:
        stages[stage] = [
            Question(
                id=q["id"], type=q["type"], text=q["question"],
                options=[Option(o["text"], o["explanation"]) for o in q.get("options", [])],
                answer=q["answer"], tolerance=float(q.get("tolerance", 0.0)),
                explanation=q.get("explanation"),
            )
            for q in data[stage]
        ]
    return Quiz(data["lesson"], data["title"], stages, path)


def load_quiz(lesson: str | Path) -> Quiz:
    """The validated quiz of a lesson id ('03-image-search') or of a file path."""
    path = Path(lesson) if str(lesson).endswith(".json") else quiz_file(str(lesson))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QuizError(f"{_display_path(path)}: no such file") from None
    except json.JSONDecodeError as err:
        raise QuizError(f"{_display_path(path)}: not valid JSON (line {err.lineno}, "
                        f"column {err.colno}): {err.msg}") from None
    except UnicodeDecodeError as err:
        raise QuizError(f"{_display_path(path)}: not UTF-8 text (byte {err.start}); save the "
                        "file as UTF-8.") from None
    except OSError as err:
        raise QuizError(f"{_display_path(path)}: cannot be read ({err.strerror}).") from None
    return parse_quiz(data, path)


_cache: dict[str, dict] = {}


def ui(key: str, lang: str, **values) -> str:
    """A localised interface string from quiz/ui.json ('check' -> 'Vérifier')."""
    if "ui" not in _cache:
        _cache["ui"] = json.loads(quiz_file("ui").read_text(encoding="utf-8"))
    text = _cache["ui"][key].get(lang) or _cache["ui"][key][SOURCE_LANG]
    return text.format(**values) if values else text


def _stage_title(quiz: Quiz, stage: str, lang: str) -> str:
    return f"{tr(quiz.title, lang)} · {ui('stage_' + stage, lang)}"


# ------------------------------------------------------------------ in a notebook


def to_html(text: str) -> str:
    """Escape text for HTML (a '<script>' shows as text), then `code` -> <code>code</code>."""
    out = html.escape(text, quote=False)  # text nodes: &, <, > are enough
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return out.replace("\n", "<br>")


class QuizWidget:
    """An ipywidgets quiz: a Check button and feedback per question, a score at the end.

    Grading: a wrong first try shows why the chosen options are wrong and allows a retry;
    the second wrong try reveals the answer. The score counts right first tries."""

    def __init__(self, quiz: Quiz, stage: str, lang: str):
        import ipywidgets as w

        self.quiz, self.stage, self.lang = quiz, stage, check_language(lang)
        self.questions = quiz.questions(stage)
        n = len(self.questions)
        self.attempts = [0] * n
        self.first_try: list[bool | None] = [None] * n
        self.inputs: list = []
        self.feedback = [w.HTML() for _ in range(n)]
        self.buttons = []
        self.score = w.HTML(ui("score", lang, first=0, answered=0, n=n))
        rows = [w.HTML(f"<h3>{to_html(_stage_title(quiz, stage, lang))}</h3>")]
        for i, q in enumerate(self.questions):
            head = f"<b>{i + 1}. {to_html(tr(q.text, lang))}</b> <i>({to_html(_hint(q, lang))})</i>"
            control = self._control(q, w)
            button = w.Button(description=ui("check", lang), button_style="primary")
            button.on_click(lambda _b, i=i: self.check(i))
            self.buttons.append(button)
            rows.append(w.VBox([w.HTML(head), control, button, self.feedback[i]],
                               layout=w.Layout(margin="0 0 14px 0")))
        rows.append(self.score)
        self.box = w.VBox(rows)

    def _control(self, q: Question, w):
        if q.type == "numeric":
            box = w.Text(placeholder=ui("type_number", self.lang), tooltip=ui("type_number", self.lang))
            self.inputs.append(box)
            return box
        # Keyboard and screen readers: each option is a native checkbox (Tab, Space) whose
        # label is its letter and whose tooltip is its text (plain text, never HTML).
        boxes = [w.Checkbox(value=False, indent=False, description=f"{LETTERS[k]}.",
                            tooltip=tr(o.text, self.lang), layout=w.Layout(width="auto"))
                 for k, o in enumerate(q.options)]
        if q.type == "single":  # radio behaviour: ticking one unticks the others
            for box in boxes:
                box.observe(partial(_untick_others, boxes), names="value")
        self.inputs.append(boxes)
        rows = [w.HBox([box, w.HTML(to_html(tr(o.text, self.lang)))])
                for box, o in zip(boxes, q.options)]
        return w.VBox(rows)

    def response(self, i: int):
        """The current answer to question i: an index, a list of indices, a float, or None."""
        q, control = self.questions[i], self.inputs[i]
        if q.type == "numeric":
            return parse_number(control.value)
        ticked = [k for k, box in enumerate(control) if box.value]
        if q.type == "single":
            return ticked[0] if len(ticked) == 1 else None
        return ticked or None

    def check(self, i: int) -> bool:
        """Grade question i (what its Check button does); updates the feedback and the score."""
        q, lang = self.questions[i], self.lang
        response = self.response(i)
        if response is None:
            key = "number_first" if q.type == "numeric" else "choose_first"
            self.feedback[i].value = f"<span style='color:#b45309'>{to_html(ui(key, lang))}</span>"
            return False
        self.attempts[i] += 1
        ok = q.is_correct(response)
        if self.first_try[i] is None:
            self.first_try[i] = ok
        reveal = ok or self.attempts[i] >= 2
        if ok:
            verdict = f"<b style='color:#15803d'>✔ {to_html(ui('correct', lang))}</b>"
        elif reveal:
            verdict = (f"<b style='color:#b91c1c'>✘ {to_html(ui('wrong', lang))}</b> "
                       + to_html(ui("answer_is", lang, answer=q.answer_text(lang))))
        else:
            verdict = f"<b style='color:#b91c1c'>✘ {to_html(ui('wrong_retry', lang))}</b>"
        notes = explanations(q, response, lang, reveal)
        items = "".join(f"<li>{to_html(note)}</li>" for note in notes)
        self.feedback[i].value = verdict + (f"<ul>{items}</ul>" if items else "")
        first = sum(1 for f in self.first_try if f)
        answered = sum(1 for f in self.first_try if f is not None)
        self.score.value = "<b>" + to_html(ui("score", lang, first=first, answered=answered,
                                                   n=len(self.questions))) + "</b>"
        return ok


def _untick_others(boxes: list, change: dict) -> None:
    if change["new"]:
        for box in boxes:
            if box is not change["owner"]:
                box.value = False


def explanations(q: Question, response, lang: str, reveal: bool) -> list[str]:
    """The notes shown after an answer. Before the answer is revealed, only the chosen
    wrong options are explained (so a retry is still a real question)."""
    if q.type == "numeric":
        return [tr(q.explanation, lang)] if reveal and q.explanation else []
    chosen = {int(response)} if q.type == "single" else {int(k) for k in response}
    notes = [] if reveal or not chosen < q.correct else [ui("missing_some", lang)]
    for k, option in enumerate(q.options):
        if reveal or (k in chosen and k not in q.correct):
            mark = "✔" if k in q.correct else "✘"
            notes.append(f"{mark} {LETTERS[k]}. {tr(option.explanation, lang)}")
    if reveal and q.explanation:
        notes.append(tr(q.explanation, lang))
    return notes


def _hint(q: Question, lang: str) -> str:
    key = {"single": "pick_one", "multiple": "pick_many", "numeric": "type_number"}[q.type]
    text = ui(key, lang)
    if q.type == "numeric" and q.tolerance:
        text += ui("tolerance", lang, tolerance=fmt_number(q.tolerance))
    return text


def show(lesson: str, stage: str = "post", lang: str | None = None) -> None:
    """Display the quiz of `lesson` ('pre' before the lesson, 'post' after) in a notebook."""
    from IPython.display import display

    display(QuizWidget(load_quiz(lesson), stage, lang or get_language()).box)


# ------------------------------------------------------------------ in a terminal


def parse_number(text: str) -> float | None:
    """'0.75', '0,75' (decimal comma), ' 1e3 ' -> float; anything else -> None."""
    try:
        value = float(str(text).strip().replace(",", "."))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_choice(text: str, q: Question):
    """'B' / '2' -> 1 for a single choice; 'a, c' / '1 3' -> [0, 2] for a multiple choice."""
    parts = [p for p in re.split(r"[\s,;]+", text.strip().upper()) if p]
    indices = []
    for part in parts:
        if part in LETTERS[: len(q.options)]:
            indices.append(LETTERS.index(part))
        elif part.isascii() and part.isdigit() and 1 <= int(part) <= len(q.options):  # not a superscript
            indices.append(int(part) - 1)
        else:
            return None
    if q.type == "single":
        return indices[0] if len(indices) == 1 else None
    return sorted(set(indices)) or None


def take_quiz(quiz: Quiz, stage: str, lang: str, stdin: TextIO | None = None,
              stdout: TextIO | None = None) -> tuple[int, int]:
    """Ask every question in a terminal; returns (right answers, questions asked)."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    questions = quiz.questions(stage)

    def say(text: str = "") -> None:
        print(text, file=stdout, flush=True)

    say(_stage_title(quiz, stage, lang))
    score = asked = 0
    for i, q in enumerate(questions):
        say()
        say(ui("question_n", lang, i=i + 1, n=len(questions)) + f" ({_hint(q, lang)})")
        say(tr(q.text, lang))
        for k, option in enumerate(q.options):
            say(f"  {LETTERS[k]}) {tr(option.text, lang)}")
        response = None
        while response is None:
            stdout.write(ui("prompt", lang))
            stdout.flush()
            line = stdin.readline()
            if line and not stdin.isatty():  # piped answers: echo them so the log reads well
                stdout.write(line if line.endswith("\n") else line + "\n")
            if not line:  # end of input: stop and give the score so far
                say()
                say(ui("stopped", lang))
                say(ui("final_score", lang, score=score, n=asked))
                return score, asked
            response = parse_number(line) if q.type == "numeric" else parse_choice(line, q)
            if response is None:
                say(ui("invalid", lang, letters=f"A-{LETTERS[len(q.options) - 1]}")
                    if q.options else ui("number_first", lang))
        asked += 1
        ok = q.is_correct(response)
        score += ok
        say(("✔ " + ui("correct", lang)) if ok else
            ("✘ " + ui("wrong", lang) + " " + ui("answer_is", lang, answer=q.answer_text(lang))))
        for note in explanations(q, response, lang, reveal=True):
            say("  " + note)
    say()
    say(ui("final_score", lang, score=score, n=asked))
    return score, asked


# ------------------------------------------------------------------ exports for instructors


def resolved(quiz: Quiz, stage: str, lang: str) -> dict:
    """One stage in one language as plain JSON (what `--json` prints)."""
    questions = []
    for q in quiz.questions(stage):
        item = {"id": q.id, "type": q.type, "question": tr(q.text, lang)}
        if q.options:
            item["options"] = [{"text": tr(o.text, lang), "explanation": tr(o.explanation, lang),
                                "correct": k in q.correct} for k, o in enumerate(q.options)]
        item["answer"] = q.answer
        if q.type == "numeric":
            item["tolerance"] = q.tolerance
        if q.explanation:
            item["explanation"] = tr(q.explanation, lang)
        questions.append(item)
    return {"lesson": quiz.lesson, "stage": stage, "lang": lang,
            "title": _stage_title(quiz, stage, lang), "questions": questions}


def gift_escape(text: str) -> str:
    """Escape text for GIFT: backslash and ~ = # { } : get a backslash; newlines become \\n.

    The text is HTML-escaped first because the questions use the [markdown] format."""
    text = html.escape(text, quote=False)
    text = re.sub(r"([\\~=#{}:])", r"\\\1", text)
    return text.replace("\r", "").replace("\n", r"\n")


def _weight(percent: float) -> str:
    """A Moodle grade percentage: 50 -> '50', 100/3 -> '33.33333'."""
    return f"{percent:.5f}".rstrip("0").rstrip(".")


def to_gift(quiz: Quiz, stage: str, lang: str) -> str:
    """Moodle GIFT. single: '=' marks the one right option; multiple: right options share
    +100 % and wrong ones share -100 % (ticking everything scores 0); numeric: {#x:tol}."""
    out = [f"// {quiz.lesson} ({stage}, {lang}): generated by "
           f"python -m utils quiz {quiz.lesson} --stage {stage} --lang {lang} --export gift",
           f"$CATEGORY: $course$/top/multimodal-course/{quiz.lesson}-{stage}", ""]
    for q in quiz.questions(stage):
        name = gift_escape(f"{quiz.lesson}-{stage}-{q.id}")
        lines = [f"::{name}::[markdown]{gift_escape(tr(q.text, lang))} {{"]
        if q.type == "numeric":
            lines.append(f"\t#{fmt_number(q.answer)}:{fmt_number(q.tolerance)}"
                         f"#{gift_escape(tr(q.explanation, lang))}")
        else:
            right = q.correct
            wrong = len(q.options) - len(right)
            for k, option in enumerate(q.options):
                if q.type == "single":
                    mark = "=" if k in right else "~"
                elif k in right:
                    mark = f"~%{_weight(100 / len(right))}%"
                else:
                    mark = f"~%-{_weight(100 / wrong)}%"
                lines.append(f"\t{mark}{gift_escape(tr(option.text, lang))}"
                             f"#{gift_escape(tr(option.explanation, lang))}")
            if q.explanation:
                lines.append(f"\t####{gift_escape(tr(q.explanation, lang))}")
        lines.append("}")
        out += lines + [""]
    return "\n".join(out)


def to_jupyterquiz(quiz: Quiz, stage: str, lang: str) -> list[dict]:
    """The question list of the jupyterquiz package (`display_quiz(questions)`).

    It shows texts as HTML, so they are escaped. Numeric answers: an exact value, a range
    [answer - tol, answer + tol) (jupyterquiz ranges exclude the upper end), a default."""
    e = html.escape
    questions = []
    for q in quiz.questions(stage):
        item: dict = {"question": e(tr(q.text, lang))}
        if q.type == "numeric":
            explanation = e(tr(q.explanation, lang))
            answers = [{"type": "value", "value": q.answer, "correct": True, "feedback": explanation}]
            if q.tolerance:
                answers.append({"type": "range", "range": [q.answer - q.tolerance,
                                                           q.answer + q.tolerance],
                                "correct": True, "feedback": explanation})
            answers.append({"type": "default", "feedback": e(ui("wrong_retry", lang))})
            item.update(type="numeric", answers=answers)
        else:
            item["type"] = "multiple_choice" if q.type == "single" else "many_choice"
            item["answers"] = [{"answer": e(tr(o.text, lang)), "correct": k in q.correct,
                                "feedback": e(tr(o.explanation, lang))}
                               for k, o in enumerate(q.options)]
        questions.append(item)
    return questions


def md_escape(text: str) -> str:
    """Quiz text made safe for a Markdown line: raw HTML (< > &) is escaped so that a
    '<script>' stays text; line breaks become spaces, so a text cannot start a heading, a list
    or a quote of its own; '](' is escaped, so no link or image can be made. `code` spans and
    *emphasis* written by the quiz authors still render."""
    text = " ".join(html.escape(text, quote=False).splitlines())
    return text.replace("](", "]\\(")


def to_markdown(quiz: Quiz, stage: str, lang: str) -> str:
    """The questions, then an answer key with every explanation."""
    lines = [f"# {md_escape(_stage_title(quiz, stage, lang))}", ""]
    questions = quiz.questions(stage)
    for i, q in enumerate(questions, 1):
        lines.append(f"**{i}.** {md_escape(tr(q.text, lang))} *({md_escape(_hint(q, lang))})*")
        lines.append("")
        lines += [f"- **{LETTERS[k]}.** {md_escape(tr(o.text, lang))}"
                  for k, o in enumerate(q.options)]
        lines.append("")
    lines += [f"## {md_escape(ui('answer_key', lang))}", ""]
    for i, q in enumerate(questions, 1):
        lines.append(f"**{i}.** {md_escape(q.answer_text(lang))}")
        lines.append("")
        for k, o in enumerate(q.options):
            mark = "✔" if k in q.correct else "✘"
            lines.append(f"- {mark} **{LETTERS[k]}.** {md_escape(tr(o.explanation, lang))}")
        if q.explanation:
            lines.append(("- " if q.options else "") + md_escape(tr(q.explanation, lang)))
        lines.append("")
    return "\n".join(lines)


def export(quiz: Quiz, stage: str, lang: str, fmt: str) -> str:
    """A quiz stage as text in one of the formats 'gift', 'jupyterquiz', 'markdown'."""
    if fmt == "gift":
        return to_gift(quiz, stage, lang)
    if fmt == "jupyterquiz":
        return json.dumps(to_jupyterquiz(quiz, stage, lang), indent=1, ensure_ascii=False)
    if fmt == "markdown":
        return to_markdown(quiz, stage, lang)
    raise QuizError(f"Unknown export format {fmt!r}: choose gift, jupyterquiz or markdown.")


def check_all() -> list[str]:
    """Problems of every lesson's quiz file (what `--check` and the tests report)."""
    problems = []
    for lesson in LESSONS:
        try:
            load_quiz(lesson)
        except QuizError as err:
            problems += str(err).splitlines()[1:] or [str(err)]
    return problems


# ------------------------------------------------------------------ command line


def run(args) -> int:
    if args.check or not args.lesson:
        problems = check_all()
        if args.json:
            print(json.dumps({"lessons": list(LESSONS), "problems": problems}, indent=2))
        else:
            print("\n".join(problems + [f"{len(LESSONS)} quiz files, {len(problems)} problem(s)"]))
            if not args.lesson and not args.check:
                print("Take a quiz: python -m utils quiz LESSON --stage pre|post --lang "
                      f"{'|'.join(LANGUAGES)}\nLessons: {', '.join(LESSONS)}")
        return 1 if problems else 0
    lang = check_language(args.lang or get_language())
    lessons = list(LESSONS) if args.lesson == "all" else [args.lesson]
    stages = list(STAGES) if args.stage == "both" else [args.stage]
    pairs = [(load_quiz(lesson), stage) for lesson in lessons for stage in stages]
    if args.export:
        if args.export == "jupyterquiz":
            text = json.dumps([item for quiz, stage in pairs
                               for item in to_jupyterquiz(quiz, stage, lang)],
                              indent=1, ensure_ascii=False)
        else:
            text = "\n".join(export(quiz, stage, lang, args.export) for quiz, stage in pairs)
        if args.out:  # checked before: a new file, or --force (utils/__main__.validate)
            from .assets import write_atomic

            write_atomic(args.out, text + "\n")
            print(f"wrote {args.out} ({len(pairs)} quiz(zes), {args.export}, {lang})")
        else:
            print(text)
        return 0
    if args.json:
        items = [resolved(quiz, stage, lang) for quiz, stage in pairs]
        print(json.dumps(items[0] if len(items) == 1 else items, indent=2, ensure_ascii=False))
        return 0
    for quiz, stage in pairs:
        take_quiz(quiz, stage, lang)
    return 0


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "quiz", help="take a lesson's quiz in the terminal, or export it (GIFT, jupyterquiz, Markdown)")
    p.add_argument("lesson", nargs="?", choices=[*LESSONS, "all"],
                   help="lesson id, or 'all' (exports); none: check every quiz file")
    p.add_argument("--stage", choices=[*STAGES, "both"], default="post",
                   help="pre: before the lesson; post: after it (default)")
    p.add_argument("--lang", choices=list(LANGUAGES), help="language (default: en)")
    p.add_argument("--json", action="store_true", help="print the quiz as JSON instead of asking")
    p.add_argument("--export", choices=["gift", "jupyterquiz", "markdown"],
                   help="write the quiz for another platform instead of asking")
    p.add_argument("--out", help="new file to write the export to (default: print it)")
    p.add_argument("--force", action="store_true", help="let --out replace an existing file")
    p.add_argument("--check", action="store_true", help="validate every quiz file")
    p.set_defaults(func=run)
