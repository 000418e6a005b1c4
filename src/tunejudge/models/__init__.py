"""Model families behind one contract (:class:`~.core.CausalLM`): tunejudge's GPT-2
(:mod:`.gpt2`: network, weights, decoding, tokenizer, native kernels) and any transformers causal LM,
full or LoRA (:mod:`.hf`).

:func:`.auto.open_lm` is the one door: a base or a trained model's folder in, a CausalLM out. The
trainer (:mod:`tunejudge.training`) and the responder (:func:`.respond.respond`) see nothing else.
Named bases and their files (:mod:`.bases`) are torch-free: the DAG reads them at parse time, so this
package's ``__init__`` imports nothing.
"""
