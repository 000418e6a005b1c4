"""Model families behind one contract: a transformers causal LM (a small Llama the test builds) beside
tunejudge's GPT-2 -- greedy decoding, the two SFT traps, LoRA resume, exports transformers loads alone,
the weights check on a mis-converted base."""

import pytest
import torch
from tunejudge_dev.testing.tiny import tiny_llama

from tunejudge.data.fit import fit_prompt
from tunejudge.data.records import make_record
from tunejudge.errors import TunejudgeError
from tunejudge.models.auto import open_lm
from tunejudge.models.bases import LORA_DEFAULTS, BaseSpec
from tunejudge.models.gpt2.lm import GPT2LM
from tunejudge.models.gpt2.model import GPT2, GPTConfig
from tunejudge.models.respond import respond
from tunejudge.models.sanity import PARAGRAPH, check_perplexity
from tunejudge.training.trainer import TrainConfig, collate, encode_examples, train

RECS = [make_record("Name a color.", "", "Red", "t"), make_record("Classify the sentiment.", "a great film", "Positive", "t"),
        make_record("What is two plus two?", "", "Four", "t"), make_record("Repeat the word.", "blue", "blue blue", "t")]


def spec(folder, prompt="alpaca"):
    return BaseSpec(name="tiny", family="transformers", path=str(folder), prompt=prompt)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("llama") / "model", seed=0)


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("chat") / "model", seed=1, chat=True)


def gpt2_lm(seed=0):
    torch.manual_seed(seed)
    return GPT2LM(GPT2(GPTConfig(n_ctx=256, n_embd=64, n_layer=2, n_head=2)))


@pytest.mark.parametrize("family", ["transformers", "gpt2"])
def test_batched_greedy_equals_one_prompt_at_a_time(llama_dir, family):
    lm = open_lm(spec(llama_dir), llama_dir) if family == "transformers" else gpt2_lm()
    recs = RECS + [make_record("Summarize the following text in one sentence.", PARAGRAPH, "x", "t")]
    prompts = [lm.prompt_ids(r) for r in recs]
    assert len({len(p) for p in prompts}) == len(prompts)  # left padding is exercised
    batched = lm.generate(prompts, 12, batch_size=3)
    assert batched == [lm.generate([p], 12, batch_size=1)[0] for p in prompts]


def memorize(lm, recs, steps=100):
    settings = dict(epochs=steps, batch_size=len(recs), micro_batch_size=len(recs), lr=3e-3, eval_every=1000,
                    checkpoint_every=1000, device="cpu", weight_decay=0.0, seed=0, mask_prompt=True)
    return train(lm, recs, [], TrainConfig.from_dict(settings), progress=False)


@pytest.mark.parametrize("prompt", ["alpaca", "chat"])
def test_eos_is_learned_though_it_pads_and_generation_stops_on_it(llama_dir, chat_dir, prompt):
    """The trap of SFT collators that mask labels by the pad id when pad == EOS: the model never learns
    to stop. Here padding is masked by position: the end token stays a target, and decoding stops on it
    (the chat template's end of turn with prompt: chat)."""
    folder = chat_dir if prompt == "chat" else llama_dir
    lm = open_lm(spec(folder, prompt), folder)
    end = lm.end_of_turn if prompt == "chat" else lm.eos_ids[0]
    assert lm.pad_id == lm.eos_ids[0] and end in lm.stop_ids
    examples, _ = encode_examples(RECS, lm, 256, "truncate_input")
    _, y = collate(examples, False, "cpu", lm.pad_id)
    for r, e in enumerate(examples):
        assert e.ids[-1] == end and y[r, len(e.ids) - 2] == end  # the end token is the last target
    memorize(lm, RECS)
    answers, stats = respond(lm, RECS, max_new_tokens=24)
    assert answers == [r["output"] for r in RECS]
    assert stats.new_tokens < 24 * len(RECS) / 3  # every answer stopped, none ran to max_new_tokens


def test_chat_prompts_use_the_template_and_end_with_its_end_of_turn(chat_dir):
    lm = open_lm(spec(chat_dir, "chat"), chat_dir)
    ids, prompt_len = lm.example_ids(RECS[1])
    text = lm.tok.decode(ids)
    assert text == ("<|im_start|>user\nClassify the sentiment.\n\na great film<|im_end|>\n<|im_start|>assistant\n"
                    "Positive<|im_end|>")
    assert ids[:prompt_len] == lm.prompt_ids(RECS[1]) and lm.tok.convert_ids_to_tokens(lm.end_of_turn) == "<|im_end|>"


def test_a_mask_that_leaves_nothing_to_learn_is_an_error_naming_the_record():
    """The other SFT trap: a completion-only mask that masks every token gives a loss of zero, silently."""

    class WrongPromptLength(GPT2LM):  # a prompt format whose prompt swallows the answer
        def example_ids(self, record):
            ids, _ = super().example_ids(record)
            return ids, len(ids) - 1

    lm = WrongPromptLength(gpt2_lm().net)
    with pytest.raises(TunejudgeError, match=r"record \w+ \(t\): with train.mask_prompt its answer has no token to "
                                             r"learn .* the loss would silently be zero"):
        encode_examples(RECS, lm, 256, "truncate_input", mask_prompt=True)
    encode_examples(RECS, lm, 256, "truncate_input", mask_prompt=False)  # without the mask it trains on everything


def lora_lm(folder):
    lm = open_lm(spec(folder), folder)
    lm.add_lora(LORA_DEFAULTS, seed=7)
    return lm


def adapter(lm):
    return {k: v.clone() for k, v in lm.trainable_state().items()}


def test_a_lora_run_killed_mid_epoch_resumes_to_the_same_adapter(llama_dir, tmp_path):
    recs = [make_record(f"Repeat item {i}.", "alpha beta " * (i % 5 + 1), f"item {i}", "t") for i in range(24)]
    tc = TrainConfig.from_dict(dict(epochs=2, batch_size=4, micro_batch_size=2, lr=1e-3, eval_every=2,
                                    checkpoint_every=2, device="cpu", seed=3))
    whole = lora_lm(llama_dir)
    frozen = {k: v.clone() for k, v in whole.core.state_dict().items() if "lora" not in k}
    assert 0 < whole.num_trainable() < whole.num_parameters() / 10
    ref = train(whole, recs, recs[:4], tc, resume_dir=tmp_path / "a", progress=False)
    part = train(lora_lm(llama_dir), recs, recs[:4], tc, resume_dir=tmp_path / "b", progress=False,
                 stop_after_steps=5)  # mid-epoch (6 steps an epoch); the state of step 4 is on disk
    assert not part.completed and (tmp_path / "b" / "state.pt").exists()
    assert set(torch.load(tmp_path / "b" / "state.pt", weights_only=True)["model"]) == set(adapter(whole))
    resumed = lora_lm(llama_dir)  # a fresh process: base + a new adapter, the state from disk
    res = train(resumed, recs, recs[:4], tc, resume_dir=tmp_path / "b", progress=False)
    assert res.completed and res.history["evaluations"] == ref.history["evaluations"]
    a, b = adapter(whole), adapter(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(v, adapter(lora_lm(llama_dir))[k]) for k, v in a.items())  # it did train
    for k, v in whole.core.state_dict().items():  # the base stayed frozen
        if "lora" not in k:
            assert torch.equal(v, frozen[k]), k


def hf_greedy(folder, prompts, n):
    """Greedy tokens by transformers alone: AutoModelForCausalLM, its own generate."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    tok = AutoTokenizer.from_pretrained(str(folder))
    out = []
    for p in prompts:
        gen = model.generate(torch.tensor([p]), generation_config=GenerationConfig(
            max_new_tokens=n, do_sample=False, eos_token_id=model.generation_config.eos_token_id,
            pad_token_id=tok.pad_token_id or tok.eos_token_id))
        new = gen[0, len(p):].tolist()
        stop = model.generation_config.eos_token_id
        stops = set(stop if isinstance(stop, list) else [stop])
        out.append(new[: next((i for i, t in enumerate(new) if t in stops), len(new))])
    return out, tok


@pytest.mark.parametrize("family", ["gpt2", "transformers-lora"])
def test_an_export_loaded_by_transformers_alone_gives_the_same_greedy_tokens(llama_dir, tmp_path, family):
    from tunejudge.data.prompt import format_prompt

    lm = gpt2_lm() if family == "gpt2" else lora_lm(llama_dir)
    memorize(lm, RECS, steps=8)
    prompts = [lm.prompt_ids(r) for r in RECS]
    ours = lm.generate(prompts, 16)
    lm.export(tmp_path / "hf", {"model": "m", "base": "b", "experiment": "e", "finetune": {"method": "full"},
                                "train": {}, "final_val_loss": 1.0})
    theirs, tok = hf_greedy(tmp_path / "hf", prompts, 16)
    assert theirs == ours and any(ours)
    assert [tok(format_prompt(r)).input_ids for r in RECS] == prompts  # the exported tokenizer is the model's
    card = (tmp_path / "hf" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers") and "final validation loss | 1.0" in card
    if family != "gpt2":  # the adapter beside the merged weights, for peft
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(str(llama_dir))
        peft = PeftModel.from_pretrained(base, str(tmp_path / "hf" / "adapter")).eval()
        merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
        x = torch.tensor([prompts[0]])
        with torch.no_grad():
            assert torch.allclose(peft(x).logits, merged(x).logits, atol=1e-4)
    # and tunejudge reads its own export back to the same tokens
    again = open_lm(spec(tmp_path / "hf") if family != "gpt2" else BaseSpec("g", "gpt2"), tmp_path / "hf")
    assert again.generate(prompts, 16) == ours


def test_the_weights_check_stops_a_base_whose_norm_weights_are_off_by_one(tmp_path):
    """A conversion bug the check exists for: RMSNorm weights stored in Gemma's (w - 1) convention and
    read as w (every norm weight off by one) load without a shape error and read as noise."""
    from safetensors.torch import load_file, save_file

    good = tiny_llama(tmp_path / "good", seed=2, teach=PARAGRAPH, steps=80)
    ok = check_perplexity(open_lm(spec(good), good), "base good", 20, "bases.good.max_perplexity")
    assert ok["perplexity"] < 20
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in good.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    state = load_file(str(good / "model.safetensors"))
    save_file({k: v - 1 if k.endswith("norm.weight") else v for k, v in state.items()}, str(bad / "model.safetensors"),
              metadata={"format": "pt"})
    with pytest.raises(TunejudgeError, match=r"base bad: perplexity (\d+) on a plain English paragraph, above "
                                             r"bases.bad.max_perplexity = 20") as e:
        check_perplexity(open_lm(spec(bad), bad), "base bad", 20, "bases.bad.max_perplexity")
    assert int(e.value.args[0].split("perplexity ")[1].split()[0]) > 40


def test_prompts_too_long_for_the_model_get_the_length_policy_counted(tmp_path):
    short = tiny_llama(tmp_path / "short", seed=4, context=160)
    lm = open_lm(spec(short), short)
    long = make_record("Summarize.", PARAGRAPH * 3, "x", "t")
    ids, how = fit_prompt(lm, long, 120, "truncate_input")
    assert how == "truncated" and len(ids) <= 120 and lm.decode(ids).endswith("### Response:\n")
    ids, how = fit_prompt(lm, make_record("Say " * 200, "", "x", "t"), 120, "truncate_input")
    assert how == "clipped" and len(ids) == 120
    answers, stats = respond(lm, [long, RECS[0]], max_new_tokens=40)  # context 160: 120 tokens for the prompt
    assert stats.truncated == 1 and stats.clipped == 0 and len(answers) == 2
