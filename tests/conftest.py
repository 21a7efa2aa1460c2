import os
from pathlib import Path

import pytest

from syslab.core.data import DataStore

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config):
    # Developers and CI point SYSLAB_DATA at ../shared/data; fall back to it when it sits beside the checkout.
    if not os.environ.get("SYSLAB_DATA") and SHARED.is_dir():
        os.environ["SYSLAB_DATA"] = str(SHARED)


@pytest.fixture
def store():
    return DataStore()


def need(dataset: str) -> DataStore:
    s = DataStore()
    if not s.has(dataset):
        pytest.skip(f"dataset {dataset} not available (set SYSLAB_DATA)")
    return s
