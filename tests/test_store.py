"""The answer store: several processes writing at once (as jobs on several nodes would over NFS),
one killed mid-run; everything completed stays readable, nothing half-written is ever read."""

import signal
import subprocess
import sys
import time

import pytest

from tunejudge.errors import TunejudgeError
from tunejudge.llm.store import AnswerStore, cache_key

WRITER = """
import sys
from tunejudge.llm.store import AnswerStore, cache_key
store = AnswerStore(sys.argv[1])
w = int(sys.argv[2])
for i in range(500):
    # a quarter of the keys are shared by every writer: the same answer asked by several jobs
    key = cache_key("geval", {"item": i if i % 4 == 0 else f"{w}:{i}"})
    store.put(key, "geval", {"score": (i % 11) / 10, "reason": "x" * 200, "writer": w, "i": i})
    print(key, flush=True)  # completed: put() returned
"""


def test_eight_writers_one_killed_mid_run(tmp_path):
    root = tmp_path / "answers"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(w)], stdout=subprocess.PIPE, text=True)
             for w in range(8)]
    victim, done = procs[3], []
    deadline = time.monotonic() + 120
    while len(done) < 100 and time.monotonic() < deadline:  # let it get well into its run
        done.append(victim.stdout.readline().strip())
    victim.send_signal(signal.SIGKILL)
    completed = {k for k in done if k}
    outs = [p.communicate(timeout=300)[0] for p in procs if p is not victim]
    victim.wait(timeout=30)
    completed |= {k for out in outs for k in out.split()} | {k for k in victim.stdout.read().split()}
    assert all(p.returncode == 0 for p in procs if p is not victim) and victim.returncode == -signal.SIGKILL
    assert len(completed) >= 7 * 375 + 100
    store = AnswerStore(root, sweep_older_than_s=None)
    got = store.get_many(completed)
    assert set(got) == completed  # every completed answer is readable, whole
    assert store.check() == []  # every file parses and sits under its own key
    assert len(store) >= len(completed)
    store.sweep(0)  # what a later open does to a killed writer's temporary file (after an hour)
    assert store.temporary_files() == []
    leftovers = [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".json")]
    assert leftovers == []  # no lock files, no journals


def test_reads_ignore_temporary_files_and_a_file_path_says_how_to_import(tmp_path):
    store = AnswerStore(tmp_path / "answers")
    key = cache_key("geval", {"x": 1})
    (tmp_path / "answers" / key[:2]).mkdir()
    (tmp_path / "answers" / key[:2] / f".{key}.123.ab{'.tmp'}").write_text('{"key": "')  # killed mid-write
    assert store.get(key) is None and len(store) == 0
    store.put(key, "geval", {"score": 0.5})
    assert store.get(key) == {"score": 0.5}
    a_file = tmp_path / "answers.json"
    a_file.write_text("{}")
    with pytest.raises(TunejudgeError, match="answers.json: a file, not an answer store folder: set judge.cache"):
        AnswerStore(a_file)
