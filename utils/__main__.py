"""`python -m utils`: the course's command line, defined in utils/cli.py."""
from .cli import COMMANDS, DALLE_MAX_N, main  # noqa: F401 (imported from here by tests and scripts)

if __name__ == "__main__":
    raise SystemExit(main())
