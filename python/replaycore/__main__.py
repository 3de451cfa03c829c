"""``python -m replaycore``: the ``replaycore`` command line (SPEC 11)."""

from replaycore.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
