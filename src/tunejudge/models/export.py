"""The model card every exported model carries (``README.md``, the Hub's format: YAML metadata, then
prose): the base, the data mix, the fine-tuning method and hyperparameters, the final validation loss.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def card_text(card: dict, facts: dict) -> str:
    ft = card.get("finetune") or {}
    lora = ft.get("method") in ("lora", "qlora") or ft.get("adapter") == "lora"
    dpo = ft.get("method") == "dpo"
    meta = {"library_name": "transformers", "pipeline_tag": "text-generation",
            "tags": ["tunejudge", "instruction-tuning", *(["dpo"] if dpo else []), *(["lora", "peft"] if lora else [])]}
    if card.get("base_model"):
        meta["base_model"] = card["base_model"]
    if dpo:
        how = (f"Preference-tuned by tunejudge ({ft.get('loss', 'sigmoid')} loss, beta {ft.get('beta')}) from "
               f"**{card['base']}**" + (f", starting from model `{ft['init']}`," if ft.get("init") else "")
               + f" on preference set `{ft.get('preferences')}`.")
    else:
        how = (f"Instruction-tuned by tunejudge from **{card['base']}**"
               + (f" on experiment `{card['experiment']}`." if card.get("experiment") else " (no fine-tuning)."))
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "", f"# {card['model']}", "", how, ""]
    if card.get("random_init"):
        lines += ["**The base is a random init: this model's answers are noise.** It exists to exercise the pipeline.", ""]
    lines += ["| | |", "|---|---|",
              f"| family | {facts.get('family')} ({facts.get('class')}) |",
              f"| parameters | {facts.get('parameters'):,} |" if facts.get("parameters") else "| parameters | n/a |",
              f"| fine-tuning | {ft.get('method', 'none')}"
              + (f" (rank {ft['r']}, alpha {ft['alpha']}, dropout {ft['dropout']}, modules {ft['target_modules']};"
                 " merged into these weights, the adapter alone in `adapter/`)" if lora else "")
              + (" over the base in 4-bit NF4 (double quantization, bf16 compute); these weights are that base "
                 "dequantized to bf16 with the adapter merged in" if ft.get("method") == "qlora" else "")
              + " |",
              f"| prompt | {facts.get('prompt')} |",
              f"| final validation loss | {card.get('final_val_loss', 'n/a')} |"]
    if (card.get("processes") or 1) > 1:
        lines.append(f"| trained in | {card['processes']} processes ({card.get('parallel', 'ddp')}) |")
    if card.get("mix"):
        lines.append(f"| data mix | {', '.join(f'{k}: {v}' for k, v in card['mix'].items())} |")
    ex = card.get("examples")
    if ex:
        lines.append(f"| examples | {ex['train']} train / {ex['val']} validation |" if isinstance(ex, dict)
                     else f"| examples | {ex} |")
    lines += ["", "Training settings:", "", "```json", json.dumps(card.get("train") or {}, indent=2, sort_keys=True), "```", "",
              "Load it with transformers alone:", "", "```python",
              "from transformers import AutoModelForCausalLM, AutoTokenizer",
              f'model = AutoModelForCausalLM.from_pretrained("{card.get("folder", ".")}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{card.get("folder", ".")}")', "```", ""]
    if facts.get("prompt") == "alpaca":
        lines += ["Prompts follow the study's Alpaca format (`### Instruction:`, `### Input:`, `### Response:`); "
                  "the model ends its answer with its EOS token.", ""]
    return "\n".join(lines)


def write_card(folder, card: dict, facts: dict) -> None:
    folder = Path(folder)
    (folder / "README.md").write_text(card_text(card, facts))
    (folder / "tunejudge.json").write_text(json.dumps({"card": card, "model": facts}, indent=2, sort_keys=True,
                                                      default=str) + "\n")
