"""What every command-line tool shares: the two consoles, strict JSON on stdout, a checked CSV reader and the
torch check. Cheap to import (rich only); pandas and the claims module are imported where they are used."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from syslab.core.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

out = Console()
err = Console(stderr=True)


def print_json(obj: Any) -> None:
    """Strict JSON on stdout: NaN and infinities become null, numpy values plain numbers."""
    from syslab.core.claims import jsonable

    sys.stdout.write(json.dumps(jsonable(obj), indent=2, default=str, allow_nan=False) + "\n")


def read_csv_columns(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A CSV that must have these numeric columns, finite, with no gaps and at least one row; anything else is an
    InputError naming the file, the column and (for a bad value) the row (``core.inputs.read_csv``)."""
    from syslab.core.inputs import Column, read_csv

    return read_csv(path, columns={c: Column("float") for c in columns},
                    fix=f"write a CSV with a header row naming {', '.join(columns)} and one number per row.")


def need_torch(problem: str = "this tool traces PyTorch programs and needs torch.") -> None:
    """Raise an InputError with the install hint when torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        raise InputError(problem, field="torch", fix="pip install 'syslab[torch]'.")
