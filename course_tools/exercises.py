"""Exercises: nbgrader metadata in the built notebooks, and the student versions nbgrader makes.

    python -m course_tools build        # writes the student versions with the notebooks
    python -m course_tools exercises    # only notebooks/<lang>/exercises/NN-x.ipynb

An exercise in a notebook source (notebooks/src) is three cells: a markdown cell with the task,
a code cell tagged `solution` whose answer sits between `### BEGIN SOLUTION` and
`### END SOLUTION` lines, then a check cell (the next code cell) whose asserts run inside
`with exercise_check(n):` (utils.exercises). A tag `points-N` on the check cell gives it N points.

- The full notebook gets nbgrader's cell metadata (schema 3): solution cells
  `solution: true, grade: false`, check cells `grade: true, points: N, locked: true`, with the
  cell id as `grade_id`. So `nbgrader generate_assignment` and `autograde` work on it.
- The student version is made by nbgrader's own preprocessors (ClearSolutions: each solution
  region becomes `raise NotImplementedError()`; LockCells). What nbgrader does not do is done
  here: the check cell, and every later cell that reads a name only a solution defines, is
  tagged `raises-exception` (nbval accepts the error until the exercise is solved); relative
  links gain one `../` (the student version is one folder down); a note links the full version.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import re
import warnings
from pathlib import Path

import nbformat

from utils.i18n import LANGUAGES

from .notebooks import badges, dumps_notebook
from .sources import ROOT, parse_source

NOTEBOOKS = ROOT / "notebooks"
FOLDER = "exercises"  # notebooks/<lang>/exercises/
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"  # nbgrader's default delimiters

STUDENT_NOTE = {
    "en": "**Student version.** Each exercise cell holds `raise NotImplementedError()` where your "
          "code goes; the check after it grades your attempt. The complete notebook, with "
          "solutions, for instructors: [{stem}](../{stem}.ipynb).",
    "fr": "**Version étudiant.** Chaque cellule d'exercice contient `raise NotImplementedError()` "
          "à l'endroit où écrire votre code\u00a0; la vérification qui la suit évalue votre tentative. "
          "Le notebook complet, avec les solutions, pour les enseignants\u00a0: [{stem}](../{stem}.ipynb).",
    "es": "**Versión para estudiantes.** Cada celda de ejercicio contiene `raise NotImplementedError()` "
          "donde va tu código; la comprobación que la sigue evalúa tu intento. El notebook "
          "completo, con las soluciones, para docentes: [{stem}](../{stem}.ipynb).",
    "it": "**Versione per studenti.** Ogni cella di esercizio contiene `raise NotImplementedError()` "
          "dove va il tuo codice; il controllo che la segue valuta il tuo tentativo. Il notebook "
          "completo, con le soluzioni, per i docenti: [{stem}](../{stem}.ipynb).",
    "pt": "**Versão do estudante.** Cada célula de exercício contém `raise NotImplementedError()` "
          "onde vai o seu código; a verificação logo depois avalia a sua tentativa. O notebook "
          "completo, com as soluções, para professores: [{stem}](../{stem}.ipynb).",
    "zh": "**学生版。** 每个练习单元格中，你要写代码的位置是 `raise NotImplementedError()`；"
          "紧随其后的检查单元格会为你的作答评分。带答案的完整 notebook（供教师使用）：[{stem}](../{stem}.ipynb)。",
}


# The lesson pages' label for the solved notebook beside a student version.
WITH_SOLUTIONS = {"en": "with solutions", "fr": "avec les solutions", "es": "con las soluciones",
                  "it": "con le soluzioni", "pt": "com as soluções", "zh": "含答案"}


class ExerciseError(ValueError):
    """A notebook's exercise cells are not laid out as solution cell + check cell."""


# ------------------------------------------------------------------ nbgrader metadata


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _tags(cell: dict) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _is_solution(cell: dict) -> bool:
    return cell["cell_type"] == "code" and "solution" in _tags(cell)


def add_grading_metadata(cells: list[dict], where: str = "notebook") -> None:
    """Give solution cells and their check cells nbgrader metadata (in place)."""
    for i, cell in enumerate(cells):
        if not _is_solution(cell):
            continue
        if BEGIN not in _source(cell) or END not in _source(cell):
            raise ExerciseError(f"{where}: solution cell {cell.get('id')!r} needs '{BEGIN}' and "
                                f"'{END}' lines around the answer")
        check = next((c for c in cells[i + 1:] if c["cell_type"] == "code"), None)
        if check is None or _is_solution(check):
            raise ExerciseError(f"{where}: solution cell {cell.get('id')!r} has no check cell after "
                                "it (a code cell of asserts)")
        points = [int(m.group(1)) for tag in _tags(check) if (m := re.fullmatch(r"points-(\d+)", tag))]
        cell["metadata"]["nbgrader"] = {"grade": False, "grade_id": cell["id"], "locked": False,
                                        "schema_version": 3, "solution": True, "task": False}
        check["metadata"]["nbgrader"] = {"grade": True, "grade_id": check["id"], "locked": True,
                                         "points": points[0] if points else 1, "schema_version": 3,
                                         "solution": False, "task": False}


def has_exercises(nb: dict) -> bool:
    return any(_is_solution(c) for c in nb["cells"])


def source_has_exercises(stem: str, root: Path = ROOT) -> bool:
    """Whether notebooks/src/<stem>.py has a solution cell, so a student version."""
    path = root / "notebooks" / "src" / f"{stem}.py"
    return path.exists() and any(c.kind == "code" and "solution" in c.tags for c in parse_source(path))


def lesson_link(stem: str, lang: str, up: str) -> str | None:
    """A lesson page's link to a notebook that has exercises: its student version and badges,
    the solved notebook beside it (None when the notebook has no exercise). `up` leads from
    the page to the repository root."""
    if not source_has_exercises(stem):
        return None
    full, student = f"notebooks/{lang}/{stem}.ipynb", f"notebooks/{lang}/{FOLDER}/{stem}.ipynb"
    label = WITH_SOLUTIONS.get(lang, WITH_SOLUTIONS["en"])
    return f"[`{stem}.ipynb`]({up}/{student}) ([{label}]({up}/{full})) {badges(student)}"


# ------------------------------------------------------------------ student versions


def _deeper_links(markdown: str, lang: str, stem: str) -> str:
    """Relative links gain one '../' (the student version is one folder down); the language
    links (../fr/x.ipynb) and the Colab/Binder badges point to the student versions."""
    codes = "|".join(LANGUAGES)

    def fix(match: re.Match) -> str:
        opening, target = match.groups()
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
            return match.group(0)  # absolute URL, anchor or absolute path
        other = re.fullmatch(rf"\.\./({codes})/{re.escape(stem)}\.ipynb", target)
        if other:
            return f"{opening}../../{other.group(1)}/{FOLDER}/{stem}.ipynb"
        return f"{opening}../{target}"

    markdown = re.sub(r'(\]\(|src=")([^)\s"]+)', fix, markdown)
    return re.sub(rf"notebooks/({codes})/{re.escape(stem)}\.ipynb",
                  rf"notebooks/\1/{FOLDER}/{stem}.ipynb", markdown)


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
           ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _free_loads(node: ast.AST) -> set[str]:
    """Names `node` reads, minus those bound inside its own functions and comprehensions."""
    loads, local, stack = set(), set(), [(node, False)]
    while stack:
        n, nested = stack.pop()
        nested = nested or isinstance(n, _SCOPES)
        if isinstance(n, ast.Name):
            (loads if isinstance(n.ctx, ast.Load) else local if nested else set()).add(n.id)
        elif isinstance(n, ast.arg):
            local.add(n.arg)
        stack += [(child, nested) for child in ast.iter_child_nodes(n)]
    return loads - local


def _targets(node: ast.AST | None) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} if node else set()


def _nested_names(node: ast.AST) -> set[str]:
    return {n.id for scope in ast.walk(node) if isinstance(scope, _SCOPES)
            for n in ast.walk(scope) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _scan(block: list[ast.stmt], defined: set[str], read: set[str]) -> None:
    """Walk statements in order: a name counts as read only if the cell has not bound it yet."""
    for node in block:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            read |= _free_loads(node) - defined
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.If, ast.While)):
            read |= _free_loads(node.test) - defined
            _scan(node.body + node.orelse, defined, read)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            read |= _free_loads(node.iter) - defined
            defined |= _targets(node.target)
            _scan(node.body + node.orelse, defined, read)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                read |= _free_loads(item.context_expr) - defined
                defined |= _targets(item.optional_vars)
            _scan(node.body, defined, read)
        elif isinstance(node, ast.Try):
            _scan(node.body, defined, read)
            for handler in node.handlers:
                defined |= {handler.name} if handler.name else set()
                _scan(handler.body, defined, read)
            _scan(node.orelse + node.finalbody, defined, read)
        else:  # a simple statement: what it reads, then what it binds
            read |= _free_loads(node) - defined
            defined |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
                        and isinstance(n.ctx, ast.Store)} - _nested_names(node)


def _names(source: str) -> tuple[set[str], set[str], set[str]]:
    """(names a cell binds, of which imported, names it reads before binding them), with ast."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics: nothing known
        return set(), set(), set()
    imported = {(a.asname or a.name).split(".")[0] for node in tree.body
                if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
    defined: set[str] = set()
    read: set[str] = set()
    _scan(tree.body, defined, read)
    return defined, imported, read


def _tag(cell: dict, *tags: str) -> None:
    current = cell.setdefault("metadata", {}).setdefault("tags", [])
    current += [tg for tg in tags if tg not in current]


def _tag_dependent_cells(cells: list[dict], solution_sources: dict[int, str]) -> None:
    """Tag `raises-exception` on every code cell that reads a name only a solution defines
    (directly or through a cell that does): those cells fail until the exercise is done."""
    unsolved: set[str] = set()
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        if i in solution_sources:
            defined, imported, _ = _names(solution_sources[i])
            unsolved |= defined - imported
            continue
        defined, _, read = _names(_source(cell))
        if read & unsolved or "raises-exception" in _tags(cell):
            _tag(cell, "raises-exception")
            unsolved |= defined
        else:
            unsolved -= defined


def _raises_at_top_level(source: str) -> bool:
    """Whether running the cell raises by itself (a stub outside any function)."""
    try:
        return any(isinstance(node, ast.Raise) for node in ast.parse(source).body)
    except SyntaxError:
        return True


def clear_solutions(nb: dict) -> nbformat.NotebookNode:
    """nbgrader's ClearSolutions and LockCells applied to a notebook (a new one)."""
    from nbgrader.preprocessors import ClearSolutions, LockCells

    node = nbformat.from_dict(copy.deepcopy(nb))
    for cell in node.cells:
        cell.source = _source(cell)
    for preprocessor in (ClearSolutions(), LockCells()):
        node, _ = preprocessor.preprocess(node, {})
    return node


def student_notebook(nb: dict, lang: str, stem: str) -> nbformat.NotebookNode:
    """The student version of one built notebook (a new one; `nb` is not changed)."""
    full = nbformat.from_dict(copy.deepcopy(nb))
    add_grading_metadata(full.cells, f"{lang}/{stem}")
    out = clear_solutions(full)
    cells = out.cells
    originals = {i: _source(c) for i, c in enumerate(full.cells) if _is_solution(c)}
    for i in originals:
        cells[i].metadata["tags"] = [tg for tg in _tags(cells[i]) if tg != "solution"] + ["exercise"]
        if _raises_at_top_level(cells[i].source):
            _tag(cells[i], "raises-exception")
        check = next(c for c in cells[i + 1:] if c.cell_type == "code")
        _tag(check, "raises-exception")
    _tag_dependent_cells(cells, originals)
    for cell in cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        else:
            cell.source = _deeper_links(cell.source, lang, stem)
    note = nbformat.v4.new_markdown_cell(STUDENT_NOTE.get(lang, STUDENT_NOTE["en"]).format(stem=stem),
                                         id="student-note")
    after = next((k + 1 for k, c in enumerate(cells) if c.get("id") == "title"), min(1, len(cells)))
    cells.insert(after, note)
    return out


def can_build_student_versions() -> bool:
    """Whether nbgrader is installed. Without it (Binder's image, Colab) `course_tools build`
    keeps the committed student versions and says so; the tests need it."""
    if importlib.util.find_spec("nbgrader") is not None:
        return True
    warnings.warn("nbgrader is not installed: student versions (notebooks/*/exercises) are not "
                  "rebuilt or checked. Install it with: pip install -e '.[grading]'", stacklevel=2)
    return False


def student_text(nb: dict, lang: str, stem: str) -> str:
    """The file content of the student version of a built notebook."""
    return dumps_notebook(student_notebook(nb, lang, stem))


# ------------------------------------------------------------------ build and check


def _pairs(langs: list[str] | None, root: Path):
    """(lang, full notebook path, its parsed JSON, student version path) for notebooks with exercises."""
    for lang in langs or LANGUAGES:
        for path in sorted((root / lang).glob("[0-9][0-9]-*.ipynb")):
            nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
            if has_exercises(nb):
                yield lang, path, nb, root / lang / FOLDER / path.name


def build(langs: list[str] | None = None, root: Path = NOTEBOOKS) -> list[Path]:
    """Write notebooks/<lang>/exercises/<stem>.ipynb for every built notebook that has
    solution cells; returns the files that changed."""
    written = []
    for lang, src, nb, dst in _pairs(langs, root):
        text = student_text(nb, lang, src.stem)
        if not dst.exists() or dst.read_text(encoding="utf-8") != text:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(text, encoding="utf-8")
            written.append(dst)
    return written


def check(langs: list[str] | None = None, root: Path = NOTEBOOKS) -> list[str]:
    """Student versions that are missing or differ from a fresh build."""
    problems = []
    for lang, src, nb, dst in _pairs(langs, root):
        name = f"{lang}/{FOLDER}/{dst.name}"
        if not dst.exists():
            problems.append(f"{name}: missing (run make notebooks)")
        elif dst.read_text(encoding="utf-8") != student_text(nb, lang, src.stem):
            problems.append(f"{name}: differs from a fresh build (run make notebooks)")
    return problems


def main(langs: list[str] | None = None) -> int:
    """`python -m course_tools exercises`: rebuild the student versions from the built notebooks."""
    for path in build(langs):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0
