"""LLM-as-a-judge: deepeval GEval metrics over any OpenAI-compatible endpoint or a local model.

``metrics`` (config -> GEval), ``llm`` (deepeval's model interface over ``tunejudge.llm``'s client),
``runner`` (judge one model's answers). The client, server, backends and answer store are shared
with RAGAS generation and the audit: ``tunejudge.llm``.
"""

from ..run.telemetry import disable_telemetry

disable_telemetry()  # before anything imports deepeval
