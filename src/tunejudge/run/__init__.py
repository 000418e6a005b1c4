"""What a run is made of, shared by every stage: its config (how files compose, the checks past the
schema), its runs (each model per seed, sweep points), where its inputs come from (the Hub fetched once
and read offline, files by URL, files inside installed packages), the libraries' telemetry switched
off, and what it records (provenance). No stage logic: every stage package may import this one."""
