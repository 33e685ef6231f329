"""Quizzes before (`pre`) and after (`post`) each lesson, from `quiz/<lesson>.json` (installed as
`utils/quizdata/`; format in quiz/README.md): load and validate them, take them in a notebook,
`show("01-contrastive-learning", "post", "fr")`, or in a terminal, `python -m utils quiz LESSON`.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import sys
import unicodedata
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import TextIO

from .errors import CourseError, to_json
from .i18n import LANGUAGES, SOURCE_LANG, get_language, number

HERE = Path(__file__).resolve().parent
LESSONS = ("overview", "00-setup", "01-contrastive-learning", "02-zero-shot-classification",
           "03-image-search", "04-vqgan-clip", "05-dall-e")
STAGES = ("pre", "post")
LETTERS = "ABCDEFGH"  # option labels (at most 8 per question)


class QuizError(CourseError, ValueError):
    """A quiz file is missing or malformed; the message lists every problem, one per line."""


def quiz_file(name: str) -> Path:
    """The first `<name>.json` (lesson, schema, ui) in $COURSE_QUIZ_DIR, utils/quizdata, quiz/."""
    env = os.environ.get("COURSE_QUIZ_DIR")
    folders = ([Path(env)] if env else []) + [HERE / "quizdata", HERE.parent / "quiz"]
    for path in (folder / f"{name}.json" for folder in folders):
        if path.is_file():
            return path
    if name not in (*LESSONS, "schema", "ui"):
        raise QuizError(f"No quiz called {name!r}. Lessons: {', '.join(LESSONS)}.")
    raise QuizError(f"{name}.json is in none of {', '.join(map(str, folders))}.", "Reinstall the "
                    "course (pip install .) or set COURSE_QUIZ_DIR to the quiz/ folder.")


def display_path(path: Path) -> str:
    inside = path.resolve().is_relative_to(HERE.parent)
    return str(path.resolve().relative_to(HERE.parent)) if inside else str(path)


@dataclass
class Option:
    text: dict[str, str]
    explanation: dict[str, str]


@dataclass
class Question:
    """`single` (answer: an index), `multiple` (exactly the right indices) or `numeric` (right
    when |x - answer| <= tolerance); every text is {language: text}."""
    id: str
    type: str
    text: dict[str, str]
    options: list[Option]
    answer: int | list[int] | float
    tolerance: float = 0.0
    explanation: dict[str, str] | None = None

    def chosen(self, response) -> set[int]:
        """The options a choice picks: 2 (single) or [0, 2] (multiple) -> {2} or {0, 2}."""
        return {int(response)} if self.type == "single" else {int(i) for i in response}

    @property
    def correct(self) -> set[int]:
        return set() if self.type == "numeric" else self.chosen(self.answer)

    def is_correct(self, response) -> bool:
        if response is None:
            return False
        if self.type == "numeric":
            return abs(float(response) - float(self.answer)) <= self.tolerance + 1e-9
        return self.chosen(response) == self.correct

    def answer_text(self, lang: str) -> str:
        """The right answer as a student reads it: 'B', 'A, C' or '992 (± 0.5)'."""
        if self.type == "numeric":
            tol = f" (± {fmt_number(self.tolerance, lang)})" if self.tolerance else ""
            return fmt_number(self.answer, lang) + tol
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


def fmt_number(x: float, lang: str = SOURCE_LANG) -> str:
    """992.0 -> '992', 0.96250 -> '0.9625' (in fr '0,9625': the language's decimal mark)."""
    x = float(x)
    return str(int(x)) if x.is_integer() else number(x, ".6g", lang)


def tr(text: dict[str, str], lang: str) -> str:
    """The text of a localised field in `lang` (every language is present once validated)."""
    return text[lang]


def check_language(lang: str) -> str:
    if lang not in LANGUAGES:
        raise QuizError(f"Unknown language {lang!r}; choose one of {', '.join(LANGUAGES)}.")
    return lang


def _describe(error, data) -> str:
    """Where and what: "question 'x' (post #1): options[2].text: 'fr' is a required property"."""
    path, where = list(error.absolute_path), "top level"
    if len(path) >= 2 and path[0] in STAGES and isinstance(path[1], int):
        stage, n, path = path[0], path[1] + 1, path[2:]
        item = data[stage][n - 1]
        qid = item.get("id") if isinstance(item, dict) else None
        where = f"question {qid!r} ({stage} #{n})" if qid else f"{stage} question #{n}"
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).removeprefix(".")
    message, shown, limit = error.message, repr(error.instance), error.validator_value
    if error.validator == "not" and isinstance(error.instance, dict):  # fields a type may not have
        message = f"a {error.instance.get('type')!r} question must not have {limit.get('required')}"
    elif len(shown) > 40 and message.startswith(shown):  # jsonschema repeats a whole object
        message = (field or "it") + message[len(shown):]
    elif field:
        message = f"{field}: {message}"
    if isinstance(limit, int) and not isinstance(limit, bool) and str(limit) not in message:
        message += f" ({error.validator} {limit})"
    return f"{where}: {message[:200]}"


def validate(data, source: str = "<quiz>") -> list[str]:
    """What quiz/schema.json refuses: ["file: question 'id' (post #2): field: problem", ...]."""
    from jsonschema import Draft202012Validator
    schema = json.loads(quiz_file("schema").read_text(encoding="utf-8"))
    errors = sorted(Draft202012Validator(schema).iter_errors(data),
                    key=lambda e: list(map(str, e.path)))
    return list(dict.fromkeys(f"{source}: {_describe(e, data)}" for e in errors))  # no repeats


def _question(q: dict) -> Question:
    """A question as the quiz file writes it (validated: `validate`)."""
    return Question(id=q["id"], type=q["type"], text=q["question"],
                    options=[Option(**o) for o in q.get("options", [])], answer=q["answer"],
                    tolerance=float(q.get("tolerance", 0.0)), explanation=q.get("explanation"))


def load_quiz(lesson: str | Path) -> Quiz:
    """A lesson's quiz ('03-image-search') or a file's, validated; QuizError lists every problem."""
    path = Path(lesson) if str(lesson).endswith(".json") else quiz_file(str(lesson))
    shown = display_path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QuizError(f"{shown}: no such file") from None
    except json.JSONDecodeError as err:
        raise QuizError(f"{shown}: not valid JSON (line {err.lineno}, column {err.colno}): "
                        f"{err.msg}") from None
    except UnicodeDecodeError as err:
        raise QuizError(f"{shown}: not UTF-8 text (byte {err.start}); "
                        "save the file as UTF-8.") from None
    except OSError as err:
        raise QuizError(f"{shown}: cannot be read ({err.strerror}).") from None
    problems = validate(data, shown)
    if not problems:
        stages = {stage: [_question(q) for q in data[stage]] for stage in STAGES}
        problems = [f"{shown}: question {q.id!r} ({stage} #{n}): answer index {i} is out of range: "
                    f"the question has {len(q.options)} options (valid: 0 to {len(q.options) - 1})"
                    for stage in STAGES for n, q in enumerate(stages[stage], 1)
                    for i in sorted(q.correct) if not 0 <= i < len(q.options)]
    if problems:
        raise QuizError(f"{len(problems)} problem(s) in {shown}:\n" + "\n".join(problems))
    return Quiz(data["lesson"], data["title"], stages, path)


@cache
def _ui_texts() -> dict[str, dict[str, str]]:
    return json.loads(quiz_file("ui").read_text(encoding="utf-8"))


def ui(key: str, lang: str, **values) -> str:
    """A localised interface string from quiz/ui.json ('check' -> 'Vérifier')."""
    text = _ui_texts()[key].get(lang) or _ui_texts()[key][SOURCE_LANG]
    return text.format(**values) if values else text


def stage_title(quiz: Quiz, stage: str, lang: str) -> str:
    """'Contrastive learning · quiz after the lesson'."""
    return f"{tr(quiz.title, lang)} · {ui('stage_' + stage, lang)}"


def hint(q: Question, lang: str) -> str:
    """How to answer: 'choose one', 'choose all that apply', 'type a number, within ±0.5'."""
    key = {"single": "pick_one", "multiple": "pick_many", "numeric": "type_number"}[q.type]
    text = ui(key, lang)
    if q.type == "numeric" and q.tolerance:
        text += ui("tolerance", lang, tolerance=fmt_number(q.tolerance, lang))
    return text


def explanations(q: Question, response, lang: str, reveal: bool) -> list[str]:
    """The notes after an answer; before the reveal, only what the chosen options got wrong."""
    if q.type == "numeric":
        return [tr(q.explanation, lang)] if reveal and q.explanation else []
    chosen = q.chosen(response)
    notes = [] if reveal or not chosen < q.correct else [ui("missing_some", lang)]
    for k, option in enumerate(q.options):
        if reveal or (k in chosen and k not in q.correct):
            mark = "✔" if k in q.correct else "✘"
            notes.append(f"{mark} {LETTERS[k]}. {tr(option.explanation, lang)}")
    if reveal and q.explanation:
        notes.append(tr(q.explanation, lang))
    return notes


def to_html(text: str) -> str:
    """Escape text for HTML (a '<script>' shows as text), then `code` -> <code>code</code>."""
    escaped = html.escape(text, quote=False)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped).replace("\n", "<br>")


class QuizWidget:
    """An ipywidgets quiz with a Check button per question: a wrong first try explains and allows a
    retry, the second reveals the answer; the score counts right first tries."""

    def __init__(self, quiz: Quiz, stage: str, lang: str):
        import ipywidgets as w
        self.quiz, self.stage, self.lang = quiz, stage, check_language(lang)
        self.questions = quiz.questions(stage)
        n = len(self.questions)
        self.attempts = [0] * n
        self.first_try: list[bool | None] = [None] * n
        self.inputs: list = []
        self.feedback = [w.HTML() for _ in range(n)]
        self.buttons = [w.Button(description=ui("check", lang), button_style="primary")
                        for _ in range(n)]
        self.score = w.HTML(ui("score", lang, first=0, answered=0, n=n))
        rows = [w.HTML(f"<h3>{to_html(stage_title(quiz, stage, lang))}</h3>")]
        for i, (q, button) in enumerate(zip(self.questions, self.buttons)):
            head = f"<b>{i + 1}. {to_html(tr(q.text, lang))}</b> <i>({to_html(hint(q, lang))})</i>"
            button.on_click(lambda _b, i=i: self.check(i))
            rows.append(w.VBox([w.HTML(head), self._control(q, w), button, self.feedback[i]],
                               layout=w.Layout(margin="0 0 14px 0")))
        self.box = w.VBox([*rows, self.score])

    def _control(self, q: Question, w):
        if q.type == "numeric":
            label = ui("type_number", self.lang)
            box = w.Text(placeholder=label, tooltip=label)
            self.inputs.append(box)
            return box
        # native checkboxes for the keyboard and screen readers; the tooltip is plain text
        boxes = [w.Checkbox(value=False, indent=False, description=f"{LETTERS[k]}.",
                            tooltip=tr(o.text, self.lang), layout=w.Layout(width="auto"))
                 for k, o in enumerate(q.options)]
        if q.type == "single":  # radio behaviour: ticking one unticks the others
            for box in boxes:
                box.observe(partial(_untick_others, boxes), names="value")
        self.inputs.append(boxes)
        return w.VBox([w.HBox([box, w.HTML(to_html(tr(o.text, self.lang)))])
                       for box, o in zip(boxes, q.options)])

    def response(self, i: int):
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
        colour, mark, key = (("#15803d", "✔", "correct") if ok else
                             ("#b91c1c", "✘", "wrong" if reveal else "wrong_retry"))
        verdict = f"<b style='color:{colour}'>{mark} {to_html(ui(key, lang))}</b>"
        if reveal and not ok:
            verdict += " " + to_html(ui("answer_is", lang, answer=q.answer_text(lang)))
        notes = explanations(q, response, lang, reveal)
        items = "".join(f"<li>{to_html(note)}</li>" for note in notes)
        self.feedback[i].value = verdict + (f"<ul>{items}</ul>" if items else "")
        first = sum(f is True for f in self.first_try)
        answered = sum(f is not None for f in self.first_try)
        score = ui("score", lang, first=first, answered=answered, n=len(self.questions))
        self.score.value = f"<b>{to_html(score)}</b>"
        return ok


def _untick_others(boxes: list, change: dict) -> None:
    """A single-answer question: ticking one box unticks the others."""
    if not change["new"]:
        return
    for box in boxes:
        if box is not change["owner"]:
            box.value = False


def show(lesson: str, stage: str = "post", lang: str | None = None) -> None:
    """Display the quiz of `lesson` ('pre' before the lesson, 'post' after) in a notebook."""
    from IPython.display import display
    display(QuizWidget(load_quiz(lesson), stage, lang or get_language()).box)


def parse_number(text: str) -> float | None:
    """'0.75', '0,75' (decimal comma), ' 1e3 ' -> float; anything else -> None."""
    try:
        value = float(str(text).strip().replace(",", "."))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_choice(text: str, q: Question):
    """'B'/'2' -> 1 (single); 'a, c'/'1 3'/'Ａ，Ｃ'/'a、c' -> [0, 2] (multiple); else None."""
    if any(c.isdigit() and not c.isdecimal() for c in text):  # '²': NFKC would make it a '2'
        return None
    text = unicodedata.normalize("NFKC", text)  # full-width letters and ，； from a CJK keyboard
    indices = []
    for part in (p for p in re.split(r"[\s,;、]+", text.strip().upper()) if p):
        if part in LETTERS[: len(q.options)]:
            indices.append(LETTERS.index(part))
        elif part.isascii() and part.isdigit() and 1 <= int(part) <= len(q.options):
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
    say = partial(print, file=stdout, flush=True)
    questions = quiz.questions(stage)
    say(stage_title(quiz, stage, lang))
    score = asked = 0
    for i, q in enumerate(questions):
        say(f"\n{ui('question_n', lang, i=i + 1, n=len(questions))} ({hint(q, lang)})")
        say(tr(q.text, lang))
        for k, option in enumerate(q.options):
            say(f"  {LETTERS[k]}) {tr(option.text, lang)}")
        response = None
        while response is None:
            say(ui("prompt", lang), end="")
            line = stdin.readline()
            if not line:  # end of input: stop and give the score so far
                say(f"\n{ui('stopped', lang)}\n{ui('final_score', lang, score=score, n=asked)}")
                return score, asked
            if not stdin.isatty():  # piped answers: echo them so the log reads well
                stdout.write(line if line.endswith("\n") else line + "\n")
            response = parse_number(line) if q.type == "numeric" else parse_choice(line, q)
            if response is None:
                say(ui("invalid", lang, letters=f"A-{LETTERS[len(q.options) - 1]}")
                    if q.options else ui("number_first", lang))
        asked += 1
        ok = q.is_correct(response)
        score += ok
        say(f"✔ {ui('correct', lang)}" if ok else
            f"✘ {ui('wrong', lang)} {ui('answer_is', lang, answer=q.answer_text(lang))}")
        for note in explanations(q, response, lang, reveal=True):
            say("  " + note)
    say("\n" + ui("final_score", lang, score=score, n=asked))
    return score, asked


def add_cli(subparsers) -> None:
    """The `quiz` command of `python -m utils` (utils/cli.py)."""
    p = subparsers.add_parser("quiz", help="take a lesson's quiz in the terminal")
    p.add_argument("lesson", choices=LESSONS, help="lesson id")
    p.add_argument("--stage", choices=[*STAGES, "both"], default="post",
                   help="pre: before the lesson; post: after it (default)")
    p.add_argument("--lang", choices=list(LANGUAGES), help="language (default: en)")
    p.add_argument("--json", action="store_true",
                   help="print the quiz, answers included, as JSON instead of asking")
    p.set_defaults(func=run_cli)


def run_cli(args) -> int:
    """Ask the questions of one lesson's quiz in the terminal, or print them (--json)."""
    lang = check_language(args.lang or get_language())
    quiz = load_quiz(args.lesson)
    stages = list(STAGES) if args.stage == "both" else [args.stage]
    if args.json:
        items = [quiz_as_json(quiz, stage, lang) for stage in stages]
        print(to_json(items[0] if len(items) == 1 else items, indent=2))
    else:
        for stage in stages:
            take_quiz(quiz, stage, lang)
    return 0


def quiz_as_json(quiz: Quiz, stage: str, lang: str) -> dict:
    """One stage of a quiz in one language, answers and explanations included."""
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
            "title": stage_title(quiz, stage, lang), "questions": questions}
