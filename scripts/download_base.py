"""Rule download_base (localrule): a transformers base's Hub repository at its pinned revision, into
the Hub cache, and where it came from."""

from tunejudge.errors import TunejudgeError
from tunejudge.io import run_step, write_json
from tunejudge.run import hub

hub.go_online()  # a download rule: the one kind of job that reaches the Hub


def main(snakemake):
    spec = snakemake.params.hub
    try:
        source = hub.fetch_model_snapshot(spec["repo"], spec.get("revision"))
    except Exception as e:  # network, auth, a revision that does not exist: one message for the user
        raise TunejudgeError(
            f"bases.{snakemake.wildcards.base}: could not download {spec['repo']}@{spec.get('revision') or 'main'} "
            f"from {hub.endpoint()} ({type(e).__name__}: {str(e)[:200]}). Without network, give the base as "
            "path: <a from_pretrained folder> instead") from None
    if not any(f.endswith(".safetensors") for f in source["files"]):
        raise TunejudgeError(f"{spec['repo']}: no .safetensors weights in the repository (files: {source['files']})")
    write_json(snakemake.output[0], source)


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
