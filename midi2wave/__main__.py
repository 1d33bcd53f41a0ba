"""`python -m midi2wave ...`: the same command line as `midi2wave ...`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
