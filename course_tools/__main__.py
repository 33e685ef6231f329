"""The course's authoring tools: build the notebooks and pages, check what CI checks.

    python -m course_tools build            # notebooks/<lang>/ (+ exercises/) and lessons/<lang>/
    python -m course_tools check            # what CI fails on (exit 1 when anything is wrong)
    python -m course_tools exercises        # only the student versions, from the built notebooks
    python -m course_tools update           # merge the English into every .po (stale -> fuzzy)
    python -m course_tools todo --lang fr   # what to translate, with its English
    python -m course_tools terms --lang fr  # advice: glossary terms a translation does not use
    python -m course_tools train MODEL      # retrain a bundled model (course_tools/retrain.py)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from utils.i18n import LANGUAGES

from .sources import ROOT, rel

ACTIONS = ["build", "check", "exercises", "update", "todo", "terms"]


def _print_problems(problems: list, as_json: bool) -> None:
    if as_json:
        print(json.dumps([asdict(p) for p in problems], indent=1, ensure_ascii=False))
        return
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        from .retrain import main as train_main

        return train_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m course_tools", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("--lang", action="append", help="only these languages (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    unknown = [lang for lang in args.lang or [] if lang not in LANGUAGES]
    if unknown:
        parser.error(f"unknown language {unknown[0]!r}; choose one of {', '.join(LANGUAGES)}")
    if args.action == "build":
        from .build import build_all, find_problems

        written = build_all(args.lang)
        for path in written:
            print(f"wrote {rel(path, ROOT)}")
        left = find_problems(args.lang, parts=("notebooks", "lessons"))
        for p in left:
            print(f"warning: {p}", file=sys.stderr)
        print(f"{len(written)} file(s) written; {len(left)} translation(s) missing or stale "
              "(built in English meanwhile)")
        return 0
    if args.action == "exercises":
        from .exercises import main as exercises_main

        return exercises_main(args.lang)
    if args.action == "update":
        from .translations import update_catalogs

        for path in update_catalogs(ROOT, args.lang):
            print(f"wrote {rel(path, ROOT)}")
        return 0
    if args.action == "terms":
        from .glossary import terms_advice

        advice = terms_advice(langs=args.lang)
        print(json.dumps(advice, indent=1, ensure_ascii=False) if args.json else "\n".join(advice))
        return 0
    if args.action == "todo":
        from .build import find_problems

        items = [p for p in find_problems(args.lang, parts=("notebooks", "lessons", "catalogs"))
                 if p.english]
        if args.json:
            print(json.dumps([asdict(p) for p in items], indent=1, ensure_ascii=False))
            return 0
        for p in items:
            print(f"## {p}\n{p.english}\n")
        print(f"{len(items)} item(s) to translate")
        return 0
    from .build import find_problems

    problems = find_problems(args.lang)
    _print_problems(problems, args.json)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
