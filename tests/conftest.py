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


def shared_cores(key: str) -> list:
    """Marks for a test that runs ``key``'s whole reproduction: a system the catalog does not run alone
    (not ``exclusive``: deterministic, nothing timed or counted) may share the two cores with another, so
    ``make test`` runs these two at a time, each system's tests in one process (its quick result is shared)."""
    from syslab import catalog

    if catalog.get(key).exclusive:
        return []
    return [pytest.mark.shared_cores, pytest.mark.xdist_group(key)]


def system_params(keys) -> list:
    """``keys`` as parameters carrying ``shared_cores``' marks."""
    return [pytest.param(k, marks=shared_cores(k)) for k in keys]


@pytest.fixture(scope="session")
def quick_reproduction(tmp_path_factory):
    """``quick_reproduction(key)`` -> (result, output folder): the system's quick, seed-0 reproduction, run once
    per test session and shared by the tests that read it (the per-system test and the sensitivity tests)."""
    from syslab import catalog

    results: dict[str, tuple[dict, Path]] = {}

    def run(key: str) -> tuple[dict, Path]:
        if key not in results:
            out = tmp_path_factory.mktemp(key)
            results[key] = catalog.run_system(key, "quick", 0, out), out
        return results[key]
    return run


def table(result: dict, title_prefix: str) -> dict:
    """The table of a reproduction's result whose title starts with ``title_prefix``."""
    return next(t for t in result["tables"] if t["title"].startswith(title_prefix))
