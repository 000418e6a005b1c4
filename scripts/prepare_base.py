"""Rule prepare_base: a transformers base (Hub cache, folder or GGUF) as a plain from_pretrained folder."""

import logging
from pathlib import Path

from tunejudge.io import atomic_folder, read_json, run_step, sha256_file
from tunejudge.models.bases import BaseSpec, gguf_file
from tunejudge.models.hf import load_source, save_prepared

log = logging.getLogger("tunejudge.prepare_base")


def main(snakemake):
    spec = BaseSpec(**snakemake.params.base)
    out = Path(snakemake.output[0])
    source = {"base": spec.name, "where": spec.where()}
    if spec.hub:
        got = read_json(snakemake.input[0])
        source.update(got)
        model, tok = load_source(hub={"repo": spec.hub["repo"], "revision": got["commit"]})
    elif spec.gguf:
        path = gguf_file(spec)
        source.update(gguf=str(path), sha256=sha256_file(path))
        model, tok = load_source(gguf=path)
    else:
        model, tok = load_source(path=spec.path)
    with atomic_folder(out) as tmp:  # whole or not at all; readable as the umask says
        save_prepared(model, tok, tmp, source)
    log.info("%s: %s, %s parameters -> %s", spec.name, type(model).__name__,
             f"{sum(p.numel() for p in model.parameters()):,}", out)


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
