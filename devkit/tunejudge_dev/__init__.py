"""tunejudge's development kit: what its tests, benchmarks and rehearsal need and its users do not.

- :mod:`tunejudge_dev.testing`: a scripted OpenAI-compatible server, tiny models, project-made articles
  and meta-evaluation sets in the public formats;
- :mod:`tunejudge_dev.rehearsal`: the study's path offline (``make rehearse``), with a stand-in Hub and
  stand-in servers on 127.0.0.1.

It is a package of its own (``devkit/pyproject.toml``, installed by ``make setup``), never part of the
``tunejudge`` wheel.
"""
