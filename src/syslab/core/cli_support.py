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
    """A CSV that must have these numeric columns, with no gaps; anything else is an InputError naming the file,
    the column and (for a bad value) the row."""
    import pandas as pd

    if not path.is_file():
        raise InputError("file not found.", file=path, fix=f"pass a CSV with column(s) {', '.join(columns)}.")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"not a readable CSV ({e.__class__.__name__}).", file=path,
                         fix=f"write a CSV with a header row naming {', '.join(columns)}.") from e
    for c in columns:
        if c not in df.columns:
            raise InputError("missing column.", file=path, field=c,
                             fix=f"add a column {c!r} (columns found: {', '.join(map(str, df.columns))}).")
        if not pd.api.types.is_numeric_dtype(df[c]) or df[c].isna().any():
            row = int(pd.to_numeric(df[c], errors="coerce").isna().to_numpy().argmax()) + 2
            raise InputError(f"row {row} is not a number.", file=path, field=c, fix="give one number per row.")
    return df


def need_torch(problem: str = "this tool traces PyTorch programs and needs torch.") -> None:
    """Raise an InputError with the install hint when torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        raise InputError(problem, field="torch", fix="pip install 'syslab[torch]'.")
