"""generation.engine: vllm. Here (no CUDA, vLLM not installed) it is refused by name before any weight is read,
and preflight says so; with a stand-in `vllm` package (a test double recording its calls) the engine gets the
very prompt ids the default engine decodes from, greedy sampling parameters, the model's stop tokens, tensor
parallelism over the job's GPUs and a LoRA adapter as a LoRARequest (nothing merged)."""

import sys
import textwrap

import pytest

from tunejudge.data.records import make_record
from tunejudge.errors import TunejudgeError

STUB = {
    "vllm/__init__.py": """
        CALLS = {}
        class SamplingParams:
            def __init__(self, **kw):
                self.kw = kw
        class _Out:
            def __init__(self, ids):
                self.token_ids = ids
        class _Result:
            def __init__(self, ids):
                self.outputs = [_Out(ids)]
        class LLM:
            def __init__(self, **kw):
                CALLS["init"] = kw
            def generate(self, prompts, params, lora_request=None, use_tqdm=True):
                CALLS["generate"] = {"prompts": [p["prompt_token_ids"] for p in prompts], "params": params.kw,
                                     "lora": lora_request}
                return [_Result(list(CALLS["answer"])) for _ in prompts]
    """,
    "vllm/inputs.py": """
        def TokensPrompt(prompt_token_ids):
            return {"prompt_token_ids": prompt_token_ids}
    """,
    "vllm/lora/__init__.py": "",
    "vllm/lora/request.py": """
        class LoRARequest:
            def __init__(self, name, id, path):
                self.name, self.id, self.path = name, id, path
    """,
}


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from tunejudge_dev.testing.tiny import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("llama") / "model", seed=0, hidden=32)


def test_here_vllm_is_refused_by_name_before_any_weight_is_read(tmp_path):
    from tunejudge.models.vllm import engine_for, vllm_missing

    assert "vLLM is not installed" in vllm_missing()
    with pytest.raises(TunejudgeError, match=r"generation.engine: vllm \(my model\): vLLM is not installed"):
        engine_for("transformers", "my model", tmp_path / "does-not-exist")
    with pytest.raises(TunejudgeError, match="answers with transformers-family models.*family gpt2"):
        engine_for("gpt2", "a gpt2 model", tmp_path)


def test_preflight_lists_vllm_and_qlora():
    from tunejudge.preflight.checks import check_engines

    cfg = {"models": {"q": {"base": "b", "experiment": "full", "finetune": "qlora"}, "d": {"train": {"processes": 2}}},
           "generation": {"engine": "vllm"}, "train": {"device": "cpu"}}
    checks = {c.name: c for c in check_engines(cfg)}
    assert not checks["vllm"].ok and "vLLM is not installed" in checks["vllm"].detail
    assert checks["qlora"].ok and "q: 4-bit NF4 on cpu with bitsandbytes" in checks["qlora"].detail
    assert checks["processes"].ok and "d: 2 processes" in checks["processes"].detail


def test_the_engine_gets_the_default_engines_prompts_greedy_with_the_adapter_unmerged(llama, tmp_path, monkeypatch):
    for rel, text in STUB.items():
        (tmp_path / "stub" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "stub" / rel).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path / "stub"))
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        monkeypatch.delitem(sys.modules, name)
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    import vllm

    from tunejudge.models.core import GenerationStats
    from tunejudge.models.hf import load_hf
    from tunejudge.models.respond import fit_prompts, respond
    from tunejudge.models.vllm import engine_for

    export = tmp_path / "export"
    (export / "adapter").mkdir(parents=True)
    (export / "adapter" / "adapter_config.json").write_text('{"r": 16}')
    engine = engine_for("transformers", "lora model", export, base_weights=str(llama), gpus=4)
    assert vllm.CALLS["init"]["model"] == str(llama) and vllm.CALLS["init"]["tensor_parallel_size"] == 4
    assert vllm.CALLS["init"]["enable_lora"] is True and vllm.CALLS["init"]["max_lora_rank"] == 16

    lm = load_hf(llama, weights=False)  # the tokenizer and stop rules, no weights read
    assert next(lm.module.parameters()).device.type == "meta"
    records = [make_record("Name the capital.", "France", "Paris", "t"), make_record("Say yes.", "", "yes", "t")]
    vllm.CALLS["answer"] = lm.encode(" Paris") + [lm.stop_ids[0]] + lm.encode(" ignored")
    answers, stats = respond(lm, records, max_new_tokens=8, length_policy="truncate_input", engine=engine)
    expected = fit_prompts(load_hf(llama), records, 8, "truncate_input", GenerationStats())
    call = vllm.CALLS["generate"]
    assert call["prompts"] == expected  # the very ids the default engine decodes from
    assert call["params"]["temperature"] == 0.0 and call["params"]["max_tokens"] == 8
    assert call["params"]["stop_token_ids"] == list(lm.stop_ids)
    assert call["lora"].path == str(export / "adapter")
    assert answers == ["Paris", "Paris"] and stats.prompts == 2
