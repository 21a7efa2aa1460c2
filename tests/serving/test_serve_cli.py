"""``syslab serve simulate``: JSON outputs, input validation and memory fit."""

import json

import pytest

from syslab.cli import main
from syslab.core.errors import InputError
from syslab.serving import cli as S


class _Out:
    def __init__(self, code, output):
        self.exit_code, self.output = code, output


def _run(capsys, *args):
    """Through the real entry point (its error boundary turns InputError into exit 2)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code or 0
    cap = capsys.readouterr()
    return _Out(code, cap.out + cap.err)


def _cli(capsys, *args):
    return _run(capsys, "serve", "simulate", *args)


def test_closed_batch_json_keys_and_sane_values(capsys):
    r = _cli(capsys, "--model", "llama2-7b", "--gpu", "A100-SXM", "--tp", "1", "--batch", "64", "--input", "128",
             "--output", "32", "--json")
    assert r.exit_code == 0, r.output
    v = json.loads(r.output)
    assert set(v) == {"output_tokens_per_s", "ttft_s_p50", "tpot_s_p50"}
    assert v["output_tokens_per_s"] > 0 and 0 < v["ttft_s_p50"] < 10 and 0 < v["tpot_s_p50"] < 1


def test_model_names_are_forgiving():
    for name in ("Llama-2-7B", "LLAMA2_7B", "meta-llama-2-7b", "llama2-7b"):
        assert S.resolve_model(name).name == "llama2-7b"
    assert S.resolve_model("Qwen2.5-7B").name == "qwen2.5-7b"


@pytest.mark.parametrize("args", [("--model", "gpt-9"), ("--gpu", "TPU-v5"), ("--tp", "0"), ("--batch", "-3"),
                                  ("--output", "nan"), ("--tp", "3")])
def test_bad_inputs_exit_2_without_traceback(args, capsys):
    r = _cli(capsys, *args, "--json") if "--batch" in args else _cli(capsys, *args, "--batch", "4", "--json")
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output


def test_70b_fits_on_two_a100s_but_not_one(capsys):
    with pytest.raises(InputError):
        S.simulate_closed("llama2-70b", "A100-SXM", 1, 4, 128, 16)
    v = S.simulate_closed("llama2-70b", "A100-SXM", 2, 4, 128, 16)
    assert v["output_tokens_per_s"] > 0
    r = _cli(capsys, "--model", "llama2-70b", "--gpu", "A100-SXM", "--tp", "1", "--batch", "4", "--json")
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_trace_replay_on_static_instances(tmp_path, capsys):
    f = tmp_path / "t.csv"
    rows = [f"2023-11-16 18:15:{s:02d}.000000,{200 + 10 * s},{20 + s}" for s in range(30)]
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    r = _cli(capsys, "--model", "llama3-8b", "--gpu", "H100", "--trace", str(f), "--instances", "2", "--json")
    assert r.exit_code == 0, r.output
    v = json.loads(r.output)
    assert {"output_tokens_per_s", "ttft_s_p50", "tpot_s_p50"} <= set(v) and v["requests"] == 30
    missing = _cli(capsys, "--trace", str(tmp_path / "nope.csv"), "--json")
    assert missing.exit_code == 2 and "Traceback" not in missing.output
