"""check_gpt2's perplexity check: weights read right pass, a missing Conv1D transpose fails loudly."""

import pytest
import torch
from safetensors.torch import save_file

from tunejudge.errors import TunejudgeError
from tunejudge.models.gpt2.model import config_for
from tunejudge.models.gpt2.tokenizer import get_tokenizer
from tunejudge.models.gpt2.weights import _HUB_TRANSPOSED, init_random, tunejudge_to_hub
from tunejudge.models.sanity import PARAGRAPH, check_weights


@pytest.fixture(scope="module")
def fluent():
    """A small GPT-2 that has learned the check's paragraph: low perplexity when read right."""
    model = init_random("gpt2-tiny", 0)
    ids = torch.tensor([get_tokenizer().encode(PARAGRAPH)])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(80):
        opt.zero_grad()
        model.loss(ids[:, :-1], ids[:, 1:]).backward()
        opt.step()
    return model.eval()


def _save_hub(model, path, transpose=True):
    state = tunejudge_to_hub(model.state_dict(), config_for("gpt2-tiny"))
    if not transpose:  # the bug the check exists for: square Conv1D weights kept in nn.Linear's orientation
        # (a non-square one would not load at all: its shape names it); loads fine, reads wrong
        state = {k: (v.t().contiguous() if k.endswith(_HUB_TRANSPOSED) and v.shape[0] == v.shape[1] else v)
                 for k, v in state.items()}
    save_file(state, str(path))


def test_weights_read_right_pass(fluent, tmp_path):
    _save_hub(fluent, tmp_path / "model.safetensors")
    result = check_weights(tmp_path / "model.safetensors", "gpt2-tiny", max_perplexity=20)
    assert result["perplexity"] < 20 and result["tokens"] > 50


def test_a_missing_transpose_fails_loudly(fluent, tmp_path):
    _save_hub(fluent, tmp_path / "model.safetensors", transpose=False)
    with pytest.raises(TunejudgeError, match=r"perplexity \d+ on a plain English paragraph, above gpt2.max_perplexity = 20"):
        check_weights(tmp_path / "model.safetensors", "gpt2-tiny", max_perplexity=20)


def test_random_weights_score_about_the_vocabulary_size(tmp_path):
    _save_hub(init_random("gpt2-tiny", 1), tmp_path / "model.safetensors")
    result = check_weights(tmp_path / "model.safetensors", "gpt2-tiny", max_perplexity=None)  # measured only
    assert result["perplexity"] > 10_000
