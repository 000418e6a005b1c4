"""Rule provenance: results/provenance.json (what the results rest on)."""

from tunejudge.io import run_step, write_json
from tunejudge.provenance import collect


def main(snakemake):
    i = snakemake.input
    write_json(snakemake.output[0], collect(
        dict(snakemake.params.config), manifests=i.manifests, downloads=i.downloads, weights=i.weights,
        weights_source=i.weights_source[0] if i.weights_source else None,
        perplexity=i.perplexity[0] if i.perplexity else None, judge_files=i.judge,
        workflow_dir=snakemake.params.workflow_dir, base_label=snakemake.params.base_label))


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
