"""The course's build and authoring tools; lessons never import this package (utils is theirs).

- `sources`: read the English sources (notebooks with jupytext, lesson pages as blocks).
- `notebooks`, `lessons`, `exercises`, `build`: write the built notebooks, student versions,
  lesson and glossary pages, and compare the committed ones with a fresh build.
- `po`, `translations`: translations as gettext `.po` files, and their checks.
- `quiz_export`: quiz exports. `python -m course_tools --help` lists the commands.
"""
