"""Rehearse the study's path offline: a stand-in Hub, a scripted OpenAI-compatible API, a file server.

``python -m tunejudge.rehearsal`` (``make rehearse``) runs it; ``python -m tunejudge.rehearsal.hub``
builds only the stand-in Hub from a folder of corpus files.
"""
