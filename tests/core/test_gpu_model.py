"""The shared GPU cost model: limits, monotonicity, calibration provenance, validation, its CLI, and that no system
keeps an efficiency constant of its own."""

import importlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syslab.core import gpu as G
from syslab.core.gpu import comm, validation
from syslab.core.hardware import GPUS, gpu, link, roofline_s
from syslab.core.models import model

C = importlib.import_module("syslab.core.gpu.calibration")   # the module (the package re-exports its function)
SRC = Path(__file__).resolve().parents[2] / "src" / "syslab"
dims = st.integers(min_value=1, max_value=65536)


@pytest.mark.parametrize("name", list(GPUS))
def test_every_gpu_is_calibrated_with_sane_fractions(name):
    cal = C.calibration(name)
    assert 0.3 < cal.gemm_eff("bf16") <= 1.0 and 0.5 < cal.hbm_eff <= 1.0 and 0 < cal.launch_s < 50e-6
    for eff_max, s0 in cal.attention_fits.values():
        assert 0.2 < eff_max <= 1.0 and s0 >= 0


@settings(max_examples=60, deadline=None)
@given(m=dims, n=dims, k=dims, name=st.sampled_from(list(GPUS)))
def test_gemm_never_beats_the_datasheet(m, n, k, name):
    g = gpu(name)
    dtype = "bf16" if "bf16" in g.peak_tflops else "fp16"
    t = G.gemm_s(m, n, k, g, dtype)
    assert t >= roofline_s(2.0 * m * n * k, 2.0 * (m * k + k * n + m * n), g, dtype)


@settings(max_examples=60, deadline=None)
@given(m=dims, n=dims, k=dims, grow=st.sampled_from(["m", "n", "k"]))
def test_gemm_time_grows_with_size(m, n, k, grow):
    bigger = {"m": (2 * m, n, k), "n": (m, 2 * n, k), "k": (m, n, 2 * k)}[grow]
    for name in ("A100-SXM-80GB", "H100-SXM"):
        assert G.gemm_s(*bigger, name) >= G.gemm_s(m, n, k, name) * (1 - 1e-12)


def test_skinny_gemm_is_memory_bound_and_large_gemm_reaches_the_fitted_fraction():
    a100 = gpu("A100-SXM-80GB")
    cal = C.calibration(a100)
    # decode: m = 1 against an 8192 x 8192 weight reads 134 MB at the fitted HBM fraction
    t = G.gemm_s(1, 8192, 8192, a100)
    assert t == pytest.approx(8192 * 8192 * 2 / (a100.hbm_bytes_per_s * cal.hbm_eff) + cal.launch_s, rel=0.01)
    # large square: within 2% of the fitted maximum (wave quantisation only)
    assert G.gemm_tflops(16384, 16384, 16384, a100) / 312 == pytest.approx(cal.gemm_eff(), rel=0.02)
    # efficiency rises from skinny to square
    effs = [G.gemm_tflops(m, 8192, 8192, a100) for m in (1, 16, 64, 256, 1024, 8192)]
    assert effs == sorted(effs)


def test_sm_fraction_scales_compute_but_not_saturated_bandwidth():
    big = G.gemm_s(8192, 8192, 8192, "H100-SXM")
    half = G.gemm_s(8192, 8192, 8192, "H100-SXM", sm_fraction=0.5)
    assert half / big == pytest.approx(2.0, rel=0.05)
    # a decode GEMV on 50% of the SMs is already bandwidth-saturated under the default curve (0.4)
    assert G.gemm_s(1, 8192, 8192, "H100-SXM", sm_fraction=0.5) == pytest.approx(G.gemm_s(1, 8192, 8192, "H100-SXM"))
    slow = G.gemm_s(1, 8192, 8192, "H100-SXM", sm_fraction=0.1)
    assert slow > 3 * G.gemm_s(1, 8192, 8192, "H100-SXM")
    assert G.memory_s(1e9, "A100", sm_fraction=0.2, curve=G.SMCurve(memory_saturation=0.2)) == pytest.approx(
        G.memory_s(1e9, "A100"))
    with pytest.raises(ValueError):
        G.gemm_s(1, 1, 1, "A100", sm_fraction=0.0)


def test_gemm_is_vectorised_over_m():
    ms = np.array([0, 1, 7, 128, 4096])
    np.testing.assert_allclose(G.gemm_s(ms, 4096, 4096, "A100"), [G.gemm_s(int(m), 4096, 4096, "A100") for m in ms])
    assert G.gemm_s(0, 4096, 4096, "A100") == 0.0


@settings(max_examples=40, deadline=None)
@given(seq=st.integers(64, 131072), heads=st.integers(1, 128), hd=st.sampled_from([64, 128, 256]),
       causal=st.booleans(), backward=st.booleans())
def test_attention_limits(seq, heads, hd, causal, backward):
    for name in ("A100-SXM-80GB", "H100-SXM"):
        t = G.attention_s(1, seq, heads, hd, name, causal=causal, backward=backward)
        flops = G.attention_flops(1, seq, heads, hd, causal, backward)
        assert flops / t < gpu(name).peak_flops("bf16")
        assert G.attention_s(1, 2 * seq, heads, hd, name, causal=causal, backward=backward) > t


def test_attention_efficiency_rises_with_length_and_causal_is_slower_at_short_length():
    fwd = [G.attention_flops(16384 // s, s, 16, 128, False, False) / G.attention_s(16384 // s, s, 16, 128, "H100")
           for s in (512, 2048, 16384)]
    assert fwd == sorted(fwd)
    short = lambda causal: G.attention_flops(32, 512, 16, 128, causal, False) / G.attention_s(  # noqa: E731
        32, 512, 16, 128, "H100", causal=causal)
    assert short(True) < short(False)


def test_decode_attention_and_memory_ops_are_bytes_over_fitted_bandwidth():
    cal = C.calibration("H100-SXM")
    tokens = 1e6
    t = G.decode_attention_s(tokens, 8, 128, "H100-SXM")
    floor = max(cal.decode_floor_s, cal.launch_s)
    assert t == pytest.approx(2 * tokens * 8 * 128 * 2 / (3350e9 * cal.decode_eff) + floor)
    assert 0 < cal.decode_floor_s < 50e-6                       # fitted on FlashInfer's shortest KV read
    assert G.decode_attention_s(0, 8, 128, "H100") == 0.0
    assert G.memory_s(2e9, "A100") > G.memory_s(1e9, "A100") > 1e9 / 2039e9


@pytest.mark.parametrize("op", comm.OPS)
def test_collectives_approach_bandwidth_for_large_and_latency_for_small_messages(op):
    small = G.collective_s(op, 8, 8, "A100")
    large = G.collective_s(op, 8e9, 8, "A100")
    assert small < 100e-6 and G.collective_s(op, 64, 8, "A100") == pytest.approx(small, rel=0.01)
    _, bus = G.algbw_busbw(op, 8e9, 8, large)
    assert bus == pytest.approx(comm.busbw_gbps("nvlink3", op), rel=0.01)
    assert bus <= link("nvlink3").gbps                     # A100: no in-switch reduction, under the line rate
    sizes = np.logspace(0, 10, 21)
    times = [G.collective_s(op, b, 8, "A100") for b in sizes]
    assert times == sorted(times)
    assert G.collective_s(op, 1e9, 1, "A100") == 0.0


def test_multi_node_collectives_are_bounded_by_the_nics():
    one = G.collective_s("allreduce", 8e9, 8, "H100-SXM")
    two = G.collective_s("allreduce", 8e9, 16, "H100-SXM", nodes=2)
    assert two > one
    _, bus = G.algbw_busbw("allreduce", 8e9, 16, two)
    assert bus <= 8 * link("ib-ndr").gbps
    a2a = G.collective_s("alltoall", 8e9, 16, "H100-SXM", nodes=2)
    assert a2a >= 8e9 * 8 / 16 / (link("ib-ndr").gbps * 1e9)   # half of each rank's data crosses one NIC
    with pytest.raises(ValueError):
        G.collective_s("allreduce", 1e6, 12, "A100", nodes=5)
    with pytest.raises(ValueError):
        G.collective_s("gossip", 1e6, 8, "A100")


def test_copies_and_storage():
    assert G.copy_s(1e9, "A100-PCIe-80GB") > G.copy_s(1e9, "H100-PCIe")          # PCIe 4 vs 5
    assert G.copy_s(2e9, "A100") > G.copy_s(1e9, "A100") > 1e9 / (link("pcie4").gbps * 1e9)
    assert G.storage_s(1e9) > G.storage_s(1e9, "nvme-array")
    assert G.copy_s(1e9, "A100", pinned=False) > 2 * G.copy_s(1e9, "A100")     # host-staged: ~10 GB/s on DGX A100
    with pytest.raises(LookupError):
        G.storage_s(1e9, "tape")


def test_calibration_rows_are_cited_and_fit_rows_are_never_validated():
    for rows in (C.compute_rows(), C.comm_rows()):
        assert rows
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids))
        for r in rows:
            assert r["role"] in ("fit", "validate") and r["source"] and r["locator"], r["id"]
            assert math.isfinite(r["value"]) and r["value"] > 0, r["id"]
    checked = {c.id for c in validation.checks()}
    fit = {r["id"] for rows in (C.compute_rows(), C.comm_rows()) for r in rows if r["role"] == "fit"}
    assert checked and not checked & fit


def test_validation_table_reports_its_errors():
    items = validation.checks()
    s = validation.summary(items)
    assert s["checks"] == len(items) >= 50
    assert all(math.isfinite(c.rel_error) for c in items)
    # the model is honest about where it is off: at least one check is off by more than 25%
    assert any(abs(c.rel_error) > 0.25 for c in items)


def test_forward_model_adds_up_its_kernels():
    fm = G.ForwardModel(model("llama2-7b"), gpu("A100"), tp=1)
    assert fm.forward_s(1) > fm.linear_s(1) > 0
    assert fm.forward_s(256, kv_read_tokens=1e5) > fm.forward_s(256)
    tp2 = G.ForwardModel(model("llama2-70b"), gpu("H100"), tp=8)
    assert tp2.fixed_s(2048) > 0                        # the all-reduces are in


# a named efficiency (GEMM_EFF = 0.6, MEM_EFF, GEMM_EFF = ..., eta_gemm: float = ...), or a literal fraction that
# scales a datasheet peak or bandwidth (peak_flops("bf16") * 0.85, hbm_bytes_per_s * 0.8, 0.8 * link.gbps)
PRIVATE = re.compile(r"^\s*(?:[A-Z_]*_EFF\b|EFFICIENCY\b|eta_\w+|compute_eff|memory_eff)[^\n=]*=[^=][^\n]*"
                     r"|(?:peak_flops\([^)]*\)|peak_tflops\[[^]]*\]|hbm_bytes_per_s|\.gbps)\s*\*\s*0\.\d+[^\n]*"
                     r"|\b0\.\d+\s*\*\s*[\w.]*(?:peak_flops|hbm_bytes_per_s|gbps)[^\n]*"
                     r"|^\s*(?:[A-Z]+_FLOPS)\s*=\s*[\d.]+e12[^\n]*", re.M)
MODELLED = ["serving/engine.py", "serving/nanoflow", "serving/weaver", "serving/blitzscale", "serving/deepserve",
            "serving/llmstation", "serving/kvcache_wild", "training/obscura", "training/optimus", "training/flexpipe",
            "training/crosspipe", "training/popfetcher", "training/mtuner", "training/wlb_llm", "training/greyhound"]


@pytest.mark.parametrize("where", MODELLED)
def test_no_system_keeps_a_private_efficiency_constant(where):
    files = [SRC / where] if where.endswith(".py") else sorted((SRC / where).rglob("*.py"))
    hits = [f"{f.relative_to(SRC)}:{text.strip()}" for f in files for text in PRIVATE.findall(f.read_text())]
    assert not hits, f"efficiency constants outside core.gpu: {hits}"


def _cli(*args):
    from typer.testing import CliRunner

    from syslab.cli import app
    return CliRunner().invoke(app, list(args))


def test_cli_json_outputs():
    r = _cli("gpu", "gemm", "--gpu", "h100-sxm", "--m", "8192", "--n", "8192", "--k", "8192", "--json")
    assert r.exit_code == 0, r.output
    v = json.loads(r.output)
    assert set(v) == {"time_s", "tflops"} and 500 < v["tflops"] < 989.4
    r = _cli("gpu", "attention", "--gpu", "A100-SXM", "--seq", "32768", "--heads", "8", "--causal", "--backward",
             "--json")
    assert r.exit_code == 0 and set(json.loads(r.output)) == {"time_s", "tflops"}
    r = _cli("gpu", "collective", "--op", "allreduce", "--gpu", "A100-SXM", "--ranks", "16", "--nodes", "2",
             "--bytes", "1e9", "--json")
    assert r.exit_code == 0 and set(json.loads(r.output)) == {"time_s", "busbw_gbps", "algbw_gbps"}
    r = _cli("gpu", "copy", "--gpu", "A100-PCIe", "--bytes", "1e9", "--direction", "h2d", "--json")
    assert r.exit_code == 0 and set(json.loads(r.output)) == {"time_s", "gbps"}
    r = _cli("gpu", "validate", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["summary"]["checks"] >= 50
    assert _cli("gpu", "list", "--json").exit_code == 0


@pytest.mark.parametrize("args", [
    ("gpu", "gemm", "--gpu", "TPU", "--m", "1", "--n", "1", "--k", "1"),
    ("gpu", "gemm", "--m", "0", "--n", "1", "--k", "1"),
    ("gpu", "gemm", "--m", "1", "--n", "1", "--k", "1", "--sm-fraction", "1.5"),
    ("gpu", "gemm", "--m", "1", "--n", "1", "--k", "1", "--dtype", "fp8"),           # A100 has no fp8
    ("gpu", "collective", "--op", "gossip", "--bytes", "1e6"),
    ("gpu", "collective", "--op", "allreduce", "--bytes", "nan"),
    ("gpu", "collective", "--op", "allreduce", "--bytes", "1e6", "--ranks", "12", "--nodes", "5"),
    ("gpu", "copy", "--bytes", "1e9", "--direction", "sideways"),
])
def test_cli_bad_input_is_an_input_error(args):
    from syslab.cli import main
    with pytest.raises(SystemExit) as e:
        main(list(args))
    assert e.value.code == 2
