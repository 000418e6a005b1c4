"""tunejudge: instruction-tune GPT-2 and score every answer with an LLM judge."""

__version__ = "0.1.0"
