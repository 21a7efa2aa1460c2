import numpy as np
import pytest

from syslab.core import workloads
from syslab.core.errors import InputError
from tests.conftest import need


def test_poisson_rate_and_gamma_burstiness():
    rng = np.random.default_rng(0)
    t = workloads.poisson_arrivals(10.0, 20000, rng)
    assert t[0] == 0 and np.all(np.diff(t) >= 0)
    assert 1 / np.diff(t).mean() == pytest.approx(10.0, rel=0.03)
    g = np.diff(workloads.gamma_arrivals(10.0, 3.0, 20000, rng))
    assert g.std() / g.mean() == pytest.approx(3.0, rel=0.1)
    with pytest.raises(InputError):
        workloads.poisson_arrivals(0, 10, rng)


def test_lognormal_lengths_median_and_bounds():
    x = workloads.lognormal_lengths(1000, 0.5, 10000, np.random.default_rng(1), low=10, high=4000)
    assert x.min() >= 10 and x.max() <= 4000 and np.median(x) == pytest.approx(1000, rel=0.05)


def test_azure_trace_loads():
    store = need("azure_llm_2023")
    df = workloads.load_azure_llm(store.path("azure_llm_2023", "azure_conv_2023.csv"))
    assert len(df) == 19366 and df.arrival_s.iloc[0] == 0 and df.arrival_s.is_monotonic_increasing
    assert df.arrival_s.iloc[-1] < 3600 and (df.prompt_tokens > 0).all()
    assert len(workloads.time_scale(df, 4.0)) == len(df)


def test_bad_trace_files_name_file_and_column(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("TIMESTAMP,ContextTokens\n2023-11-16 18:15:46,10\n")
    with pytest.raises(InputError, match="GeneratedTokens") as e:
        workloads.load_azure_llm(p)
    assert str(p) in str(e.value)
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,ten,3\n")
    with pytest.raises(InputError, match="ContextTokens"):
        workloads.load_azure_llm(p)
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,3\n")
    with pytest.raises(InputError, match="TIMESTAMP"):
        workloads.load_azure_llm(p)
