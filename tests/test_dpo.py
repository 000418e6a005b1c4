"""Preference tuning: seeded sampling, preference sets that never hold a test prompt, DPO's loss against TRL's
DPOTrainer on the same model and batch, SimPO, a judge that fails its controls refused, and a DPO run killed
mid-epoch that resumes to the same adapter."""

import math

import pytest
import torch
from test_models import gpt2_lm, spec
from tunejudge_dev.testing.tiny import tiny_llama

from tunejudge.data import preferences as P
from tunejudge.data.records import make_record
from tunejudge.errors import ConfigError, SplitError
from tunejudge.models.auto import open_lm
from tunejudge.models.bases import LORA_DEFAULTS
from tunejudge.models.sampling import Sampling, sample
from tunejudge.training.preference import Preference
from tunejudge.training.trainer import TrainConfig, train

RECS = [make_record(f"Classify item {i}: is it good?", "a fine thing" * (i % 3 + 1), "Positive", "sst2")
        for i in range(6)]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("llama") / "model", seed=0, hidden=32)


def lora_lm(folder, seed=7, dropout=0.0):
    lm = open_lm(spec(folder), folder)
    lm.add_lora({**LORA_DEFAULTS, "r": 4, "dropout": dropout}, seed=seed)
    return lm


@pytest.mark.parametrize("family", ["transformers", "gpt2"])
def test_sampling_is_seeded_and_the_same_batched_or_one_prompt_at_a_time(llama_dir, family):
    lm = open_lm(spec(llama_dir), llama_dir) if family == "transformers" else gpt2_lm()
    lm.module.eval()
    prompts = [lm.prompt_ids(r) for r in RECS[:4]]
    s = Sampling(temperature=1.0, top_p=0.9, seed=5)
    batched = sample(lm, prompts, 3, s, 8, batch_size=8)
    assert batched == [sample(lm, [p], 3, s, 8, batch_size=1)[0] for p in prompts]  # one prompt at a time
    assert batched == sample(lm, prompts[::-1], 3, s, 8, batch_size=2)[::-1]  # in another order and batching
    assert batched == sample(lm, prompts, 3, s, 8, batch_size=8)  # again
    assert batched != sample(lm, prompts, 3, Sampling(1.0, 0.9, 6), 8)  # another seed, other samples
    assert any(len({tuple(x) for x in row}) > 1 for row in batched)  # the k samples of a prompt differ
    with pytest.raises(ConfigError, match="temperature"):
        Sampling(temperature=0.0)


def pair_rows():
    rows = []
    for i, r in enumerate(RECS):
        rows.append({"prompt": "p", "chosen": "Positive", "rejected": "Negative, clearly" + "!" * i, "id": r["id"],
                     "source": r["source"], "instruction": r["instruction"], "input": r["input"], "output": r["output"],
                     "part": "train", "margin": 1.0})
    return rows


def test_dpo_loss_equals_trls_dpo_trainer_on_the_same_model_and_batch(llama_dir, tmp_path):
    """TRL 1.16's DPOTrainer (loss_type sigmoid, the reference = the adapter disabled) on our tokens: the
    same loss to 1e-5 (float32), with a trained-looking adapter so that policy and reference differ."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    lm = lora_lm(llama_dir)
    with torch.no_grad():  # an adapter that moves the policy away from the reference
        g = torch.Generator().manual_seed(0)
        for name, p in lm.module.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    lm.module.eval()
    obj = Preference(loss_type="sigmoid", beta=0.3)
    examples, _ = obj.encode(pair_rows(), lm, 200, "truncate_input")
    obj.prepare(lambda fn: fn(lm), lm, examples, 8, torch.device("cpu"), lambda: torch.autocast("cpu", enabled=False),
                4096, None)
    ours = float(obj.loss(lm, examples, torch.device("cpu"), 4096)) / len(examples)
    tok = AutoTokenizer.from_pretrained(str(llama_dir))
    tok.pad_token = tok.eos_token
    args = DPOConfig(output_dir=str(tmp_path / "trl"), beta=0.3, loss_type=["sigmoid"], report_to=[],
                     per_device_train_batch_size=len(examples), max_length=None, use_cpu=True)
    ds = Dataset.from_list([{"prompt": "x", "chosen": "y", "rejected": "z"}])
    # TRL's own new adapter on the base (its reference: the adapter disabled, as ours), given our adapter's weights
    peft_config = LoraConfig(r=4, lora_alpha=LORA_DEFAULTS["alpha"], lora_dropout=0.0, target_modules="all-linear",
                             task_type="CAUSAL_LM", bias="none")
    base = AutoModelForCausalLM.from_pretrained(str(llama_dir), dtype=torch.float32)
    trainer = DPOTrainer(model=base, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config)
    ours_adapter = dict(lm.model.named_parameters())
    with torch.no_grad():
        copied = 0
        for name, p in trainer.model.named_parameters():
            if "lora_" in name:
                p.copy_(ours_adapter[name])
                copied += 1
    assert copied == sum("lora_" in n for n in ours_adapter) > 0
    batch = trainer.data_collator([{"prompt_ids": e.chosen[: e.prompt_len], "chosen_ids": e.chosen[e.prompt_len:],
                                    "rejected_ids": e.rejected[e.prompt_len:]} for e in examples])
    trainer.model.eval()
    with torch.no_grad():
        theirs = float(trainer._compute_loss(trainer.model, batch, False))
    assert not math.isclose(ours, math.log(2), rel_tol=1e-3)  # policy and reference differ
    assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-6)


def test_simpo_is_reference_free_and_length_normalised():
    obj = Preference(loss_type="simpo", beta=2.0, simpo_gamma=0.5)
    assert not obj.needs_reference
    from tunejudge.training.preference import PairExample

    part = [PairExample(chosen=[1, 2, 3, 4, 5], rejected=[1, 2, 3, 9], prompt_len=2)]
    got = obj.pair_losses(part, torch.tensor([-3.0]), torch.tensor([-4.0]))
    expected = -torch.nn.functional.logsigmoid(torch.tensor(2.0 * (-3.0 / 3 - -4.0 / 2) - 0.5))
    assert float(got[0]) == pytest.approx(float(expected))


def test_a_dpo_run_killed_mid_epoch_resumes_to_the_same_adapter(llama_dir, tmp_path):
    rows = pair_rows() * 4
    for i, r in enumerate(rows):
        r["chosen"] = f"Positive {i % 5}"
    tc = TrainConfig.from_dict(dict(epochs=2, batch_size=4, micro_batch_size=2, lr=1e-3, eval_every=2,
                                    checkpoint_every=2, device="cpu", seed=3))
    obj = Preference(beta=0.2)
    whole = lora_lm(llama_dir)
    ref = train(whole, rows, rows[:4], tc, resume_dir=tmp_path / "a", progress=False, objective=obj)
    part = train(lora_lm(llama_dir), rows, rows[:4], tc, resume_dir=tmp_path / "b", progress=False,
                 stop_after_steps=5, objective=obj)
    assert not part.completed and (tmp_path / "b" / "state.pt").exists()
    resumed = lora_lm(llama_dir)  # a fresh process: its reference log-likelihoods from the state
    res = train(resumed, rows, rows[:4], tc, resume_dir=tmp_path / "b", progress=False, objective=obj)
    assert res.completed and res.history["evaluations"] == ref.history["evaluations"]
    a = {k: v for k, v in whole.trainable_state().items()}
    b = {k: v for k, v in resumed.trainable_state().items()}
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    evals = ref.history["evaluations"]
    assert evals[-1]["val_loss"] < math.log(2) and evals[-1]["val_reward_accuracy"] >= 0.5  # it learned the pairs
    assert ref.history["objective"] == obj.describe()


def test_full_dpo_of_gpt2_compares_with_the_weights_before_the_first_update():
    lm = gpt2_lm()
    obj = Preference(beta=0.1)
    tc = TrainConfig.from_dict(dict(epochs=1, batch_size=4, micro_batch_size=4, lr=1e-3, eval_every=1,
                                    checkpoint_every=100, device="cpu", seed=0))
    res = train(lm, pair_rows(), pair_rows()[:2], tc, progress=False, objective=obj)
    first = res.history["evaluations"][0]
    assert first["val_loss"] < math.log(2) + 1e-6  # one step on the pairs: the val pairs' loss fell


def samples_doc(texts_by_id, part="train"):
    return {"model": "m", "sampling": {"samples": 3, "temperature": 1.0, "top_p": 1.0},
            "items": [{"part": part, "record": r, "samples": texts_by_id[r["id"]]} for r in RECS]}


def test_verifiable_rewards_pick_the_best_and_the_worst_above_the_margin():
    texts = {r["id"]: ["Negative", "Positive", "Positive."] for r in RECS}
    texts[RECS[0]["id"]] = ["Positive", "Positive", "Positive"]  # no margin
    score = lambda rec, a: float(a.strip(".") == rec["output"])  # noqa: E731
    rows, counts = P.build({"from": "verifiable", "min_margin": 0.5}, samples=samples_doc(texts), file_rows=None,
                           where="preferences.vr", score_verifiable=score)
    assert counts == {"prompts": 6, "kept": 5, "below_margin": 0, "identical": 1}
    assert all(r["chosen"] == "Positive" and r["rejected"] == "Negative" and r["margin"] == 1.0 for r in rows)
    assert rows[0]["prompt"].startswith("Below is an instruction") and rows[0]["origin"]["kind"] == "verifiable"


def test_no_preference_row_ever_asks_a_test_item():
    test = RECS[:2]
    rows, _ = P.build({"from": "verifiable"}, samples=samples_doc({r["id"]: ["Positive", "No"] for r in RECS}),
                      file_rows=None, where="x", score_verifiable=lambda rec, a: float(a == "Positive"))
    with pytest.raises(SplitError, match="also in the test set"):
        P.check_no_test_prompt(rows, test, 0.85, "vr")
    P.check_no_test_prompt(rows[2:], test, 0.85, "vr")  # the training prompts pass
    # a file that holds a test item's prompt, word for word, is refused too
    leak = [{"prompt": RECS[0]["instruction"], "input": RECS[0]["input"], "chosen": "a", "rejected": "b"}]
    with pytest.raises(SplitError):
        P.check_no_test_prompt(P.file_pairs(leak, "prefs.jsonl", 0.1, {"kind": "file"}), test, 0.85, "file")


def test_a_file_row_without_a_field_is_one_clear_error():
    from tunejudge.errors import DataError

    with pytest.raises(DataError, match="prefs.jsonl.*record 1.*rejected"):
        P.file_pairs([{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "chosen": "b"}], "prefs.jsonl",
                     0.1, {"kind": "file"})


def test_a_judge_that_fails_its_controls_is_refused_unless_the_set_says_so():
    texts = {r["id"]: ["Negative", "Positive", "Maybe"] for r in RECS}
    scores = {(r["id"], j): float(j) for r in RECS for j in range(3)}
    failing = {"enabled": True, "passes": False, "min_auc": 0.75, "failing_metrics": ["FactualCorrectness"],
               "adversarial": {"fooled_by": ["inject_verdict"]}}
    with pytest.raises(ConfigError, match="fails its controls.*FactualCorrectness.*inject_verdict.*allow_failing_judge"):
        P.build({"from": "judge"}, samples=samples_doc(texts), file_rows=None, where="preferences.j",
                judge_scores=scores, judge_verdict=failing)
    with pytest.raises(ConfigError, match="controls are off"):
        P.build({"from": "judge"}, samples=samples_doc(texts), file_rows=None, where="preferences.j",
                judge_scores=scores, judge_verdict={"enabled": False, "passes": None})
    rows, _ = P.build({"from": "judge", "allow_failing_judge": True}, samples=samples_doc(texts), file_rows=None,
                      where="preferences.j", judge_scores=scores, judge_verdict=failing)
    assert rows and all("fails its controls" in r["origin"]["judge_failed_controls"] for r in rows)
    assert all(r["chosen"] == "Maybe" and r["rejected"] == "Negative" for r in rows)
    passing = {"enabled": True, "passes": True}
    pairwise = {r["id"]: (("a", True) if i % 3 == 0 else ("b", False) if i % 3 == 1 else ("tie", True))
                for i, r in enumerate(RECS)}
    rows, counts = P.build({"from": "judge", "judge_mode": "pairwise"}, samples=samples_doc(texts), file_rows=None,
                           where="preferences.j", pairwise_verdicts=pairwise, judge_verdict=passing)
    assert counts["kept"] == 2 and counts["flipped"] == 2 and counts["tie"] == 2
    assert all(r["chosen"] == "Negative" for r in rows)  # 'a' (the first sample) won where the order held
