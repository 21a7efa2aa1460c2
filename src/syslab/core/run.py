"""The run context handed to every ``reproduce``: scale, seed, output directory, data, progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from syslab.core.claims import Figure
from syslab.core.data import DataStore

Scale = Literal["quick", "full"]


def _no_progress(message: str) -> None:
    pass


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (no display on servers and in workers)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


@dataclass
class Run:
    """One reproduction's settings. ``quick`` must finish in under 60 s on 2 cores; ``full`` is paper scale.

    ``control``: a negative control. ``reproduce`` replaces the system's mechanism by the paper's main baseline
    (same workload, same everything else) so that no finding of kind ``claim`` can hold; one that still holds
    is measuring something other than the mechanism. Under control a reproduction may skip work that only
    feeds checks.
    """

    system: str = "adhoc"
    scale: Scale = "quick"
    seed: int = 0
    out_dir: Path = field(default_factory=lambda: Path("report"))
    data: DataStore = field(default_factory=DataStore)
    progress: Callable[[str], None] = _no_progress
    control: bool = False

    def __post_init__(self) -> None:
        if self.scale not in ("quick", "full"):
            raise ValueError(f"scale must be 'quick' or 'full', not {self.scale!r}")
        self.out_dir = Path(self.out_dir)

    @property
    def quick(self) -> bool:
        return self.scale == "quick"

    def rng(self, stream: int = 0) -> np.random.Generator:
        """A generator seeded by (seed, stream): independent, reproducible streams per use."""
        return np.random.default_rng([self.seed, stream])

    def save_figure(self, fig: Any, name: str, caption: str) -> Figure:
        """Save a matplotlib figure as figures/<system>/<name>.png, close it, and return its report entry."""
        import matplotlib.pyplot as plt

        path, rel = self.figure_path(name)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return Figure(rel, caption)

    def figure_path(self, name: str) -> tuple[Path, str]:
        """Absolute path to write a PNG to, and the same path relative to the report directory."""
        rel = Path("figures") / self.system / f"{name}.png"
        path = self.out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, rel.as_posix()
