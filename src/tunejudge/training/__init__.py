"""The training stage: one trainer for every model family (:mod:`.trainer`: full or LoRA, accumulation,
length grouping, checkpointed resume) and its trackers (:mod:`.trackers`)."""
