"""`python -m polycrowd` runs the CLI."""

from polycrowd.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
