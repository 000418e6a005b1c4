"""Access to the LLMs that the judge, RAGAS generation and the QA audit share.

``client`` (bounded, retried, budgeted OpenAI-protocol requests), ``server`` (the local
llama-cpp-python server), ``backends`` (config -> identity and a client), ``store`` (answers kept
across runs, safe for jobs on several nodes over a shared filesystem).
"""
