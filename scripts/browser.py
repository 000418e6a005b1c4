"""Rule browser: results/browser.html, the answers and verdicts of the run in one self-contained page."""

import logging
from pathlib import Path

from tunejudge.analysis.browser import browser_data, render
from tunejudge.io import read_json, read_jsonl, run_step, write_text_atomic
from tunejudge.judge.scores import read_judge_rows

log = logging.getLogger("tunejudge.browser")


def main(snakemake):
    i = snakemake.input
    judge = [r for p in i.judge for r in read_judge_rows(p)]
    panel: dict = {}
    for p in i.panel:
        panel.setdefault(Path(p).parent.name, []).extend(read_judge_rows(p))
    first = judge[0]["judge"] if judge else {"backend": "none", "model": "none"}
    data = browser_data(read_json(i.responses), read_json(i.labels), judge,
                        [r for p in i.reference for r in read_jsonl(p)],
                        [r for p in i.controls for r in read_judge_rows(p)],
                        [r for p in i.pairwise for r in read_jsonl(p)], panel, snakemake.params.metrics,
                        {"config_files": snakemake.params.config_files, "judge": f"{first['backend']}/{first['model']}"})
    write_text_atomic(snakemake.output[0], render(data))
    log.info("%d items x %d models -> %s", len(data["items"]), len(data["models"]), snakemake.output[0])


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
