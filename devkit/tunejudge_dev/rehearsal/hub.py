"""``python -m tunejudge_dev.rehearsal.hub CORPORA OUT``: a stand-in Hub from corpus files in their public formats.

Serve it with olah (``olah-cli -c OUT/olah.toml``) and point ``HF_ENDPOINT`` at it.
"""

import argparse
import sys
from pathlib import Path

from tunejudge.errors import TunejudgeError

from .corpora import export_samples, read_corpora
from .standin import build_mirror, olah_config


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tunejudge_dev.rehearsal.hub", description=__doc__.splitlines()[0])
    ap.add_argument("corpora", type=Path, help="folder of corpus files (see tunejudge_dev.rehearsal.corpora)")
    ap.add_argument("out", type=Path, help="the mirror folder to write (datasets/..., models/...)")
    ap.add_argument("--gpt2", nargs="*", default=[], help="GPT-2 sizes to hold as seeded random inits")
    ap.add_argument("--port", type=int, default=8090, help="port written into OUT/olah.toml")
    ap.add_argument("--export-samples", type=Path, metavar="SAMPLES",
                    help="first write SAMPLES (the bundled data/samples) into CORPORA in the public formats")
    args = ap.parse_args(argv)
    try:
        if args.export_samples:
            export_samples(args.export_samples, args.corpora)
        datasets = read_corpora(args.corpora)
        if not datasets:
            raise TunejudgeError(f"{args.corpora}: no corpus files found (see tunejudge_dev.rehearsal.corpora)")
        commits = build_mirror(datasets, args.out, gpt2_sizes=args.gpt2)
        (args.out / "olah.toml").write_text(olah_config(args.out, args.out / ".olah-repos", args.port))
    except TunejudgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for repo, commit in commits.items():
        print(f"{repo} @ {commit[:12]}")
    print(f"serve: olah-cli -c {args.out / 'olah.toml'}; then HF_ENDPOINT=http://127.0.0.1:{args.port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
