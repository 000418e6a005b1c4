"""Names of base weights, free of torch: the DAG (rules/common.smk) imports this at parse time."""

HUB_REPOS = {name: f"openai-community/{name}" for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")}


def base_label(size: str, weights: str, seed: int) -> str:
    """How every output names the base weights; random weights always say so."""
    if weights == "random":
        return f"{size}, random init (seed {seed}): not a pretrained GPT-2"
    return f"{size}, pretrained ({HUB_REPOS.get(size, size)})"
