"""The study's Alpaca-style prompt (LLMs from Scratch, ch. 7) and response extraction."""

from __future__ import annotations

PREAMBLE = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
RESPONSE_HEADER = "\n\n### Response:\n"


def format_prompt(record: dict) -> str:
    """The prompt the model sees: preamble, instruction, optional input, then the response header."""
    text = f"{PREAMBLE}\n\n### Instruction:\n{record['instruction']}"
    if record.get("input"):
        text += f"\n\n### Input:\n{record['input']}"
    return text + RESPONSE_HEADER


def user_turn(record: dict) -> str:
    """The record as one chat user turn: the instruction, then its input (chat prompts, endpoint models)."""
    return record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")


def format_example(record: dict) -> str:
    """Prompt and expected response: one training example."""
    return format_prompt(record) + record["output"]


def extract_response(generated: str) -> str:
    """The answer part of a generation: text after '### Response:' if the model repeated it, stripped."""
    marker = "### Response:"
    if marker in generated:
        generated = generated.split(marker, 1)[1]
    return generated.strip()
