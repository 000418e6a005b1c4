"""CNN/DailyMail QA generated with RAGAS: offline pieces, the RAGAS-facing LLM, the generator.

The auditor that checks each generated item lives in :mod:`tunejudge.data.audit`.
"""

from ...run.telemetry import disable_telemetry

disable_telemetry()  # before anything imports ragas
