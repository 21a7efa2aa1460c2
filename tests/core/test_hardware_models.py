import pytest

from syslab.core.hardware import GPUS, LINKS, gpu, link, roofline_s
from syslab.core.models import MODELS, model


@pytest.mark.parametrize("name,billions", [("llama2-7b", 6.74), ("llama2-13b", 13.0), ("llama2-70b", 69.0),
                                           ("llama3-8b", 8.03), ("llama3-70b", 70.6), ("qwen2.5-7b", 7.62),
                                           ("qwen2.5-72b", 72.7), ("gpt3-175b", 175.0), ("mixtral-8x7b", 46.7)])
def test_parameter_counts_match_published_sizes(name, billions):
    assert model(name).params / 1e9 == pytest.approx(billions, rel=0.01)


def test_mixtral_activates_two_experts():
    m = model("mixtral-8x7b")
    assert m.active_params / 1e9 == pytest.approx(12.9, rel=0.02)   # Mistral: "12.9B active parameters"


def test_kv_cache_bytes():
    # Llama-2 7B, bf16: 2 (K,V) x 32 layers x 4096 x 2 bytes = 512 KiB per token; GQA models are smaller.
    assert model("llama2-7b").kv_bytes_per_token() == 2 * 32 * 4096 * 2
    assert model("llama3-8b").kv_bytes_per_token() == 2 * 32 * 8 * 128 * 2


def test_flop_formulas():
    m = model("llama2-7b")
    assert m.attention_flops(1000) == 2 * 32 * 4096 * 1000 ** 2
    assert m.training_flops(512) == pytest.approx(3 * m.prefill_flops(512))
    assert m.decode_flops(0) == m.linear_flops_per_token()


def test_datasheet_values_and_roofline():
    h100 = gpu("H100-SXM")
    assert h100.peak_tflops["bf16"] == 989.4 and h100.hbm_gbps == 3350 and h100.sm_count == 132
    assert gpu("A100-80GB").peak_tflops["bf16"] == 312
    # Memory-bound: 1 GB at 3.35 TB/s; compute-bound: 989.4 TFLOP.
    assert roofline_s(1.0, 1e9, h100) == pytest.approx(1 / 3350)
    assert roofline_s(989.4e12, 1.0, h100) == pytest.approx(1.0)
    assert link("pcie5").transfer_s(63e9) == pytest.approx(1.0 + 1.5e-6)
    assert all(g.source for g in GPUS.values()) and all(lk.source for lk in LINKS.values())
    assert len(MODELS) >= 9
    with pytest.raises(KeyError):
        gpu("TPU")
