"""LLM-as-a-judge: deepeval GEval metrics over any OpenAI-compatible endpoint or a local model.

``metrics`` (config -> GEval), ``client`` (bounded, retried, budgeted requests), ``llm`` (deepeval's
model interface), ``cache`` (SQLite verdicts), ``server`` (the local llama-cpp-python server),
``backends`` (config -> judge), ``runner`` (judge one model's answers).
"""

from ..telemetry import disable_telemetry

disable_telemetry()  # before anything imports deepeval
