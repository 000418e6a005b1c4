"""Rehearse the study's path offline: a stand-in Hub, a scripted OpenAI-compatible API, a file server.

``python -m tunejudge_dev.rehearsal`` (``make rehearse``) runs it; ``python -m tunejudge_dev.rehearsal.hub``
builds only the stand-in Hub from a folder of corpus files.
"""
