"""`python -m local_runtime`: the command line in cli.py."""

from local_runtime.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
