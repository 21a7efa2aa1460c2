"""``python -m syslab ...``: the same as the ``syslab`` command."""

from syslab.cli import main

if __name__ == "__main__":
    main()
