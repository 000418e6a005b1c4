"""Rule preflight (localrule, no output: runs whenever asked): checks and the planned requests and cost."""

import logging

from tunejudge.io import run_step, write_json
from tunejudge.preflight.checks import ensure_ok, run_checks
from tunejudge.preflight.plan import plan_from_files, render
from tunejudge.preflight.power import planned_power, render_power
from tunejudge.run import hub

hub.go_online()  # it checks that the Hub answers
log = logging.getLogger("tunejudge.preflight")


def main(snakemake):
    cfg, params = snakemake.config, snakemake.params
    hub_loaders = {key: loader for key, (loader, _) in params.hub_datasets.items()}
    checks = run_checks(cfg, hub_loaders, params.model_repos, params.downloads)
    plan = plan_from_files(cfg, judged=params.judged, runs=params.runs, meta_judges=params.meta_judges)
    power = planned_power(cfg)
    log.info("\n%s", "\n".join([render(checks, plan, cfg["judge"].get("prices")), *render_power(power)]))
    write_json("results/preflight.json", {"checks": [c.__dict__ for c in checks],
                                          "plan": plan.as_dict(cfg["judge"].get("prices")), "power": power})
    ensure_ok(checks)


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
