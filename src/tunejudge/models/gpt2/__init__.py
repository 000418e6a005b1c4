"""tunejudge's GPT-2, the study's model, whole in one folder: the network (:mod:`.model`), its weights
(:mod:`.weights`: checkpoints, the Hub's safetensors, random init), decoding (:mod:`.decode`, on the
native kernels of :mod:`.kernels` where a compiler is at hand), the tokenizer (:mod:`.tokenizer`) and the
:class:`~tunejudge.models.core.CausalLM` over them (:mod:`.lm`)."""
