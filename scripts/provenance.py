"""Rule provenance: results/provenance.json (what the results rest on)."""

from tunejudge.io import run_step, write_json
from tunejudge.run.provenance import collect


def main(snakemake):
    i = snakemake.input
    write_json(snakemake.output[0], collect(
        dict(snakemake.params.config), manifests=i.manifests, downloads=i.downloads, bases=snakemake.params.bases,
        judge_files=i.judge, workflow_dir=snakemake.params.workflow_dir, responses=i.responses,
        histories=i.histories))


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
