"""Student versions of the notebooks: the solutions come out, placeholders go in.

    python -m utils.exercises build     # notebooks/<lang>/NN-x.ipynb -> notebooks/<lang>/exercises/NN-x.ipynb
    python -m utils.exercises check     # report student versions that are missing or stale

An exercise in a notebook source is three cells: a markdown cell with the task, a code cell
tagged `solution`, then a code cell of asserts that checks it. In the student version:

- the solution cell becomes a placeholder. Imports and leading comments stay; each top-level
  function (or method of a class) keeps its signature and docstring, and its body becomes
  `raise NotImplementedError("Exercise: ...")`. Any other top-level statement is replaced by
  one such `raise` at the end of the cell, which is then tagged `raises-exception`.
- the next code cell (the check) is tagged `raises-exception`: nbval accepts the error the
  placeholder causes there until the student writes a solution. So is every later code cell
  that reads a name only a solution defines (found with `ast`, through chains of cells).

The error message names the task: a first comment line `# Exercise: <what to do>` in the
solution, else the numbered title of the task cell (`**Exercise 2: …**` or `## Exercise 2: …`).
Only notebooks with solution cells get a student version. It sits one folder below the full
one, so relative links in markdown get one more `../`. A student version that was run or edited is never
overwritten by `build` (it records a hash of the cells it wrote); `--force` overwrites it.
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import json
import re
import sys
from pathlib import Path

from .i18n import LANGUAGES, dumps_notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
FOLDER = "exercises"  # notebooks/<lang>/exercises/

STUDENT_NOTE = {
    "en": "**Student version.** Code cells marked *Exercise* raise `NotImplementedError` until you "
          "write your solution; the check after each one tells you when it is right. The complete "
          "notebook, with solutions: [{stem}](../{stem}.ipynb).",
    "fr": "**Version étudiant.** Les cellules de code marquées *Exercise* lèvent `NotImplementedError` "
          "tant que vous n'avez pas écrit votre solution ; la vérification qui suit chacune vous dit "
          "quand elle est juste. Le notebook complet, avec les solutions : [{stem}](../{stem}.ipynb).",
    "es": "**Versión para estudiantes.** Las celdas de código marcadas como *Exercise* lanzan "
          "`NotImplementedError` hasta que escribas tu solución; la comprobación que sigue a cada una "
          "te dice cuándo es correcta. El notebook completo, con las soluciones: [{stem}](../{stem}.ipynb).",
    "it": "**Versione per studenti.** Le celle di codice segnate *Exercise* sollevano "
          "`NotImplementedError` finché non scrivi la tua soluzione; il controllo che segue ciascuna ti "
          "dice quando è giusta. Il notebook completo, con le soluzioni: [{stem}](../{stem}.ipynb).",
    "pt": "**Versão do estudante.** As células de código marcadas com *Exercise* lançam "
          "`NotImplementedError` até você escrever sua solução; a verificação depois de cada uma diz "
          "quando ela está certa. O notebook completo, com as soluções: [{stem}](../{stem}.ipynb).",
    "zh": "**学生版。** 标有 *Exercise* 的代码单元在你写出答案之前会抛出 `NotImplementedError`；"
          "每个单元后面的检查会告诉你答案是否正确。带答案的完整 notebook：[{stem}](../{stem}.ipynb)。",
}


class ExerciseError(ValueError):
    """A notebook's exercise cells are not laid out as solution cell + check cell."""


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _tags(cell: dict) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _raise(message: str) -> ast.stmt:
    return ast.Raise(exc=ast.Call(func=ast.Name("NotImplementedError", ast.Load()),
                                  args=[ast.Constant(message)], keywords=[]), cause=None)


def _docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    is_doc = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
        and isinstance(first.value.value, str)
    return [first] if is_doc else []


def _stub(node: ast.stmt, hint: str) -> ast.stmt | None:
    """A function keeps signature + docstring and raises; a class keeps its declarations and
    stubs its methods; anything else is not kept (None)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        stub = copy.deepcopy(node)
        stub.body = _docstring(node.body) + [_raise(hint or f"Exercise: complete {node.name}()")]
        return stub
    if isinstance(node, ast.ClassDef):
        stub = copy.deepcopy(node)
        body = []
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body.append(_stub(item, hint or f"Exercise: complete {node.name}.{item.name}()"))
            elif isinstance(item, (ast.AnnAssign, ast.Assign, ast.Expr, ast.Pass)):
                body.append(item)  # fields, docstring: the interface the checks rely on
        stub.body = body or [ast.Pass()]
        return stub
    return None


def task_title(markdown: str) -> str | None:
    """'Exercise 2: a colour-only classifier' from a task cell whose bold text or heading
    reads 'Exercise 2: …' (or 'Exercice 2 : …', '练习 2：…': any language), else None."""
    for pattern in (r"\*\*(.+?)\*\*", r"^#+\s*(.+)$"):
        for match in re.finditer(pattern, markdown, flags=re.M):
            numbered = re.match(r"\s*\S+\s*(\d+)\s*[:：.]\s*(.+?)[.。]?\s*$", match.group(1))
            if numbered:
                return f"Exercise {numbered.group(1)}: {numbered.group(2)}"
    return None


def placeholder(solution: str, task: str | None = None) -> tuple[str, bool]:
    """(placeholder code, whether it raises when the cell runs) for one solution cell.

    The error message is the solution's `# Exercise: …` comment, else `task`, else generic."""
    lines = solution.splitlines()
    comments = []
    for line in lines:  # the leading comment block usually restates the task: keep it
        if line.startswith("#") or not line.strip():
            comments.append(line)
        else:
            break
    hint = next((m.group(1).strip() for ln in comments
                 if (m := re.match(r"#\s*(Exercise:.*)", ln))), task or "")
    fallback = hint or "Exercise: write your solution here (see the task above)"
    try:
        tree = ast.parse(solution)
    except SyntaxError:  # IPython magics and the like: replace the whole cell
        tree = None
    kept, raises = [], tree is None
    for node in tree.body if tree else []:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            kept.append(ast.get_source_segment(solution, node))
        elif (stub := _stub(node, hint)) is not None:
            kept.append(ast.unparse(ast.fix_missing_locations(stub)))
        else:
            raises = True
    if raises:
        kept.append(ast.unparse(_raise(fallback)))
    head = [ln for ln in comments if ln.strip()]
    if not any(re.match(r"#\s*Exercise\b", ln) for ln in head):
        head.insert(0, f"# {fallback}")
    return "\n".join(head + ["\n\n".join(kept)]).strip() + "\n", raises


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


def _nested_names(node: ast.AST) -> set[str]:
    return {n.id for scope in ast.walk(node) if isinstance(scope, _SCOPES)
            for n in ast.walk(scope) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


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
    current += [t for t in tags if t not in current]


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


def student_notebook(nb: dict, lang: str, stem: str) -> dict:
    """The student version of one built notebook (a new dict; `nb` is not changed)."""
    out = copy.deepcopy(nb)
    cells = out["cells"]
    solutions = [i for i, c in enumerate(cells)
                 if c["cell_type"] == "code" and "solution" in _tags(c)]
    originals = {i: _source(cells[i]) for i in solutions}
    for i in solutions:
        check = next((j for j in range(i + 1, len(cells)) if cells[j]["cell_type"] == "code"), None)
        if check is None or "solution" in _tags(cells[check]):
            raise ExerciseError(f"{lang}/{stem}: solution cell {cells[i].get('id')!r} has no check "
                                "cell after it (a code cell of asserts)")
        task = next((_source(cells[j]) for j in range(i - 1, -1, -1)
                     if cells[j]["cell_type"] == "markdown"), "")
        code, raises = placeholder(_source(cells[i]), task_title(task))
        tags = [t for t in _tags(cells[i]) if t != "solution"] + ["exercise"]
        if raises:
            tags.append("raises-exception")
        cells[i]["source"] = code.splitlines(keepends=True)
        cells[i]["metadata"]["tags"] = tags
        _tag(cells[check], "raises-exception")
    _tag_dependent_cells(cells, originals)
    for cell in cells:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        else:
            cell["source"] = _deeper_links(_source(cell), lang, stem).splitlines(keepends=True)
    note = {"cell_type": "markdown", "id": "student-note", "metadata": {},
            "source": STUDENT_NOTE.get(lang, STUDENT_NOTE["en"]).format(stem=stem)}
    after = next((k + 1 for k, c in enumerate(cells) if c.get("id") == "title"), min(1, len(cells)))
    cells.insert(after, note)
    return out


def has_exercises(nb: dict) -> bool:
    return any(c["cell_type"] == "code" and "solution" in _tags(c) for c in nb["cells"])


def _cells_hash(nb: dict) -> str:
    return hashlib.sha1(json.dumps(nb["cells"], sort_keys=True).encode("utf-8")).hexdigest()


def _student_text(nb: dict, lang: str, stem: str) -> str:
    student = student_notebook(nb, lang, stem)
    # Remember what was generated: a later build must not overwrite a student's work.
    student["metadata"]["exercises"] = {"full_version": f"../{stem}.ipynb",
                                        "cells_sha1": _cells_hash(student)}
    return dumps_notebook(student)


def edited_by_student(path: Path) -> bool:
    """True when the cells of a student version differ from what the build wrote there
    (the student ran or edited it)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    return nb.get("metadata", {}).get("exercises", {}).get("cells_sha1") != _cells_hash(nb)


def _pairs(langs: list[str] | None, root: Path):
    """(lang, full notebook, its parsed JSON, student version path) for notebooks with exercises."""
    for lang in langs or LANGUAGES:
        for path in sorted((root / lang).glob("[0-9][0-9]-*.ipynb")):
            nb = json.loads(path.read_text(encoding="utf-8"))
            if has_exercises(nb):
                yield lang, path, nb, root / lang / FOLDER / path.name


def build(langs: list[str] | None = None, root: Path = NOTEBOOKS, force: bool = False,
          log=print) -> list[Path]:
    """Write notebooks/<lang>/exercises/<stem>.ipynb for every built notebook that has
    solution cells; returns the files written. A student version someone ran or edited
    is kept (a warning says so) unless `force`."""
    written = []
    for lang, src, nb, dst in _pairs(langs, root):
        text = _student_text(nb, lang, src.stem)
        if dst.exists() and dst.read_text(encoding="utf-8") == text:
            continue
        if dst.exists() and edited_by_student(dst) and not force:
            log(f"kept {dst}: it holds your work. Move it away (or use --force) to rebuild it.")
            continue
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
            problems.append(f"{name}: missing (run make exercises)")
        elif dst.read_text(encoding="utf-8") != _student_text(nb, lang, src.stem):
            problems.append(f"{name}: differs from a fresh build (run make exercises)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.exercises", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["build", "check"])
    parser.add_argument("--lang", action="append", choices=list(LANGUAGES), help="only these languages")
    parser.add_argument("--force", action="store_true", help="overwrite student versions even if edited")
    args = parser.parse_args(argv)
    if args.action == "build":
        for path in build(args.lang, force=args.force):
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    problems = check(args.lang)
    print("\n".join(problems + [f"{len(problems)} problem(s)"]))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
