"""Checks of the merged config that go past its JSON schema, for the Snakefile (parse time only:
jsonschema comes with Snakemake, and no rule's script imports this module)."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ConfigError
from .config import panel_judge


def check_panel(judge: Mapping, schema: Mapping) -> list[str]:
    """The panel judges' names, each one's merged settings checked against the judge section's schema."""
    import jsonschema

    sub = schema["properties"]["judge"]
    names = list((judge.get("panel") or {}).get("judges") or {})
    for name in names:
        cfg = panel_judge(judge, name)
        errors = sorted(jsonschema.Draft202012Validator(sub).iter_errors(cfg), key=lambda e: list(e.absolute_path))
        if errors:
            where = ".".join(str(p) for p in errors[0].absolute_path)
            raise ConfigError(f"config: judge.panel.judges.{name}" + (f" (as merged: judge.{where})" if where else "")
                              + f": {errors[0].message}")
    return names
