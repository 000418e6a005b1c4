"""config/schema.yaml is enforced before any job runs; the shipped configs pass it."""

import pytest
import yaml
from conftest import REPO, make_workdir, snakemake
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

SCHEMA = str(REPO / "config" / "schema.yaml")


def load(name):
    return yaml.safe_load((REPO / "config" / name).read_text())


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_validate(name):
    """As Snakemake loads them: the Snakefile's config.yaml, then `--configfile` merged over it."""
    from snakemake.utils import update_config

    cfg = load("config.yaml")
    update_config(cfg, load(name))
    validate(cfg, SCHEMA)


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c.update(sedd=1), "sedd"),
        (lambda c: c["curation"].update(max_tokens="many"), "max_tokens"),
        (lambda c: c.pop("sources"), "sources"),
        (lambda c: c["sources"]["sst2"].update(bulider="sst2"), "bulider"),
        (lambda c: c["curation"].update(length_policy="cut"), "length_policy"),
    ],
)
def test_bad_config_names_the_key(mutate, key):
    cfg = load("config.yaml")
    mutate(cfg)
    with pytest.raises(WorkflowError, match=key):
        validate(cfg, SCHEMA)


@pytest.mark.pipeline
def test_snakemake_refuses_a_bad_config_before_any_job(tmp_path):
    wd = make_workdir(tmp_path, {"curation.max_tokens": "many"})
    proc = snakemake(wd, "-n", check=False)
    assert proc.returncode != 0
    assert "max_tokens" in proc.stderr + proc.stdout
    assert not (wd / "data" / "instructions").exists()
