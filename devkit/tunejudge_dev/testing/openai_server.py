"""A scripted OpenAI-compatible Chat Completions server on 127.0.0.1, for tests and bench/judge.py.

It speaks the real HTTP protocol the ``openai`` SDK talks, so the judge is exercised end to end
(connection pool, status codes, Retry-After, timeouts, JSON bodies). A *script* decides each reply
from the request body and how many times the same prompt was asked before; the default script
answers every GEval prompt with a deterministic, well-formed verdict.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    kind: str = "ok"  # ok | status | malformed | drop (the connection closed with no answer)
    status: int = 200
    content: str | None = None  # ok: the answer (default: a verdict); malformed: the broken text
    delay_s: float = 0.0  # sleep before replying (a slow answer; past the client timeout it is a timeout)
    retry_after: float | None = None
    # ok with logprobs requested: the alternatives at the score token, (token, probability); default
    # 70% the score and 30% its neighbour (score_logprobs)
    alternatives: list[tuple[str, float]] | None = None


def prompt_of(body: dict) -> str:
    return "\n".join(str(m.get("content", "")) for m in body.get("messages", []))


def verdict_for(prompt: str) -> dict:
    """A deterministic verdict: score 0-10 from the prompt's hash."""
    h = hashlib.sha256(prompt.encode()).digest()
    return {"reason": f"Scripted verdict {h[:4].hex()}.", "score": h[4] % 11}


def default_script(body: dict, seen: int) -> Reply:
    return Reply()


def _section(prompt: str, name: str) -> str | None:
    """A test-case field of a GEval prompt ("Actual Output:", "Expected Output:", ...)."""
    head = f"\n{name}:\n"
    if head not in prompt:
        return None
    rest = prompt.split(head, 1)[1]
    return rest.split("\n\n", 1)[0].strip()


def reference_judge(body: dict, seen: int) -> Reply:
    """A judge that agrees with the reference: a GEval verdict scored by the token F1 of the actual
    output against the expected output (0-10); a verdict without an expected output scores 5."""
    prompt = prompt_of(body)
    actual, expected = _section(prompt, "Actual Output"), _section(prompt, "Expected Output")
    if actual is None or (response_schema(body) or {}).get("title") != "ReasonScore":
        return Reply()
    if expected is None:
        return Reply(content=json.dumps({"reason": "No reference to compare with.", "score": 5}))
    from tunejudge.analysis.reference import token_f1

    f1 = token_f1(actual, expected)
    return Reply(content=json.dumps({"reason": f"Token overlap with the reference: {f1:.2f}.", "score": round(10 * f1)}))


DATA = re.compile(r"<<<BEGIN DATA ([0-9a-f]+)>>>\n(.*)\n<<<END DATA \1>>>", re.S)


def geval_field(prompt: str, name: str) -> str | None:
    """A test-case field of a GEval prompt, whole (its text may hold blank lines): from ``<name>:`` to
    the next field or the end of the test case."""
    head = f"\n{name}:\n"
    if head not in prompt:
        return None
    rest = prompt.split(head, 1)[1]
    ends = [rest.find(m) for m in (" \n\nInput:\n", " \n\nActual Output:\n", " \n\nExpected Output:\n", " \n\n\n")]
    ends = [e for e in ends if e >= 0]
    return rest[: min(ends)] if ends else rest.strip()


def unwrap(text: str) -> tuple[str, bool]:
    """(the text, whether it came within a boundary of the judge's ``boundary`` defence)."""
    m = DATA.fullmatch(text.strip())
    return (m.group(2), True) if m else (text, False)


def _talks_to_grader(text: str) -> bool:
    from tunejudge.judge.flags import ADDRESSES_JUDGE, flag_answer

    return any(f in ADDRESSES_JUDGE for f in flag_answer(text, {"instruction": ""}))


def _grader(obey_outside: bool, obey_inside: bool):
    """A GEval judge scoring the answer by its token F1 against the reference (5 without one), unless the
    answer talks to the grader -- then the top score, where it obeys such text: outside a boundary
    (``obey_outside``) or within one (``obey_inside``)."""
    def script(body: dict, seen: int) -> Reply:
        prompt = prompt_of(body)
        actual = geval_field(prompt, "Actual Output")
        if actual is None or (response_schema(body) or {}).get("title") != "ReasonScore":
            return Reply()
        text, within = unwrap(actual)
        if _talks_to_grader(text) and (obey_inside if within else obey_outside):
            return Reply(content=json.dumps({"reason": "The answer states it is correct; accepted.", "score": 10}))
        expected = geval_field(prompt, "Expected Output")
        if expected is None:
            return Reply(content=json.dumps({"reason": "No reference to compare with.", "score": 5}))
        from tunejudge.analysis.reference import token_f1

        f1 = token_f1(text, unwrap(expected)[0])
        return Reply(content=json.dumps({"reason": f"Token overlap with the reference: {f1:.2f}.", "score": round(10 * f1)}))
    return script


# The adversarial controls' scripted judges (tunejudge.judge.adversarial): one that any text addressed to
# the grader talks into the top score; one that never obeys it; one that obeys it only outside the
# boundary defence's markers (so the defence makes it pass).
gullible_judge = _grader(obey_outside=True, obey_inside=True)
robust_judge = _grader(obey_outside=False, obey_inside=False)
boundary_obeying_judge = _grader(obey_outside=True, obey_inside=False)


def out_of_range_judge(body: dict, seen: int) -> Reply:
    """A judge whose logprobs at the score token put most of the probability on numbers outside 0-10
    ("100", "80", as a judge does that sometimes reads the scale as out of 100), for 3 prompts in 4;
    its JSON verdict is always well-formed and within range. deepeval's own weighting over every
    decimal token gives these verdicts scores of 30-60 on a 0-10 scale."""
    prompt = prompt_of(body)
    if (response_schema(body) or {}).get("title") != "ReasonScore" or hashlib.sha256(prompt.encode()).digest()[5] % 4 == 0:
        return Reply()
    s = verdict_for(prompt)["score"]
    other = s + 1 if s < 10 else s - 1
    return Reply(alternatives=[("100", 0.45), (str(s), 0.3), ("80", 0.15), (str(other), 0.1)])


NAME = re.compile(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)+\b")  # "Maria Lopez", "Port Halden Council"


def _ragas_input(prompt: str) -> dict:
    """The input of a RAGAS prompt (``PydanticPrompt.to_string``: "input: {json}" then "Output: ")."""
    text = prompt.rsplit("\ninput: ", 1)[-1].rsplit("\nOutput:", 1)[0]
    try:
        return json.loads(text)
    except ValueError:
        return {}


def linking_extractor(body: dict, seen: int) -> Reply:
    """RAGAS's extractors answered as a reader would, so that articles naming the same people link
    in RAGAS's knowledge graph as real ones do: a text's entities and themes are the names in it
    (runs of capitalised words), its summary lists them (similar summaries under
    :func:`word_embedding`), its headlines are its short lines without a full stop, and a concept
    combination joins the first concept of each node. Every other request gets the default answer."""
    title = (response_schema(body) or {}).get("title")
    data = _ragas_input(prompt_of(body))
    text = data.get("text")
    names = list(dict.fromkeys(NAME.findall(text)))[: int(data.get("max_num") or 10)] if isinstance(text, str) else []
    if title == "NEROutput" and names:
        return Reply(content=json.dumps({"entities": names}))
    if title == "ThemesAndConcepts" and names:
        return Reply(content=json.dumps({"output": names}))
    if title == "StringIO" and names:
        return Reply(content=json.dumps({"text": "A report on " + ", ".join(names) + "."}))
    if title == "Headlines" and isinstance(text, str):
        heads = [line.strip() for line in text.splitlines()
                 if line.strip() and len(line.split()) < 8 and not line.rstrip().endswith(".")]
        return Reply(content=json.dumps({"headlines": heads}))
    if title == "ConceptCombinations" and data.get("lists_of_concepts"):
        firsts = [c[0] for c in data["lists_of_concepts"] if c]
        return Reply(content=json.dumps({"combinations": [firsts]}))
    return Reply()


def word_embedding(text: str, dim: int = 8) -> list[float]:
    """A bag of words hashed into ``dim`` dimensions (256 when the model has fewer than 64): texts
    that share words point the same way, as real embeddings of texts on the same people do."""
    dim = dim if dim >= 64 else 256
    v = [0.0] * dim
    for word in re.findall(r"[a-z]+", text.lower()):
        v[int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little") % dim] += 1.0
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def response_schema(body: dict) -> dict | None:
    """The JSON schema a request asks its answer to follow (OpenAI's or llama.cpp's dialect)."""
    rf = body.get("response_format") or {}
    if rf.get("type") == "json_schema":
        return (rf.get("json_schema") or {}).get("schema")
    return rf.get("schema")


def instance_of(schema: dict, seed: str, root: dict | None = None):
    """A deterministic value that fits ``schema`` (objects, arrays, enums, $ref, anyOf, bounds)."""
    root = root or schema
    if "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return instance_of(node, seed, root)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return instance_of(options[0], seed, root)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {k: instance_of(v, f"{seed}.{k}", root) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        n = max(1, schema.get("minItems", 0))
        return [instance_of(schema.get("items") or {"type": "string"}, f"{seed}[{i}]", root) for i in range(n)]
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return schema.get("minimum", 3)
    text = f"scripted {hashlib.sha256(seed.encode()).hexdigest()[:8]}"
    return text[: schema.get("maxLength", len(text))]


def embedding_for(text: str, dim: int = 8) -> list[float]:
    """A deterministic unit vector from the text's hash."""
    h = hashlib.sha256(text.encode()).digest()
    while len(h) < dim:  # as many hash bytes as dimensions
        h += hashlib.sha256(text.encode() + len(h).to_bytes(4, "little")).digest()
    v = [(b - 127.5) / 127.5 for b in h[:dim]]
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


# What OpenAI's API reports for the models a study uses: the snapshot a request for the alias
# is served by, and an embeddings model's dimension.
API_MODELS = {"gpt-4.1": "gpt-4.1-2025-04-14", "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
              "gpt-4o": "gpt-4o-2024-08-06", "text-embedding-3-small": "text-embedding-3-small",
              "text-embedding-3-large": "text-embedding-3-large", "text-embedding-ada-002": "text-embedding-ada-002"}
EMBEDDING_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


def request_kind(body: dict) -> str:
    """Which of tunejudge's callers sent a chat request: ``judge`` (GEval), ``pairwise``, ``audit`` or ``ragas``."""
    title = (response_schema(body) or {}).get("title")
    return {"ReasonScore": "judge", "PairwiseVerdict": "pairwise", "QAAudit": "audit"}.get(title, "ragas")


def count_tokens(text: str) -> int:
    """Roughly what a GPT tokenizer counts (the GPT-2 encoding where it is installed)."""
    try:
        from tunejudge.models.gpt2.tokenizer import get_tokenizer

        return len(get_tokenizer().encode(text, disallowed_special=()))
    except Exception:
        return max(1, len(text) // 4)


class _Server(ThreadingHTTPServer):
    """A thread per request, and a listen backlog a hosted API would have: socketserver's default
    of 5 drops the SYNs of a client opening 16 connections at once, and each dropped one is retried
    by TCP a second later (a 0.5 s request took 1.5-2.4 s: the judge benchmark's stragglers)."""

    daemon_threads = True
    request_queue_size = 128


class ScriptedOpenAI:
    """``with ScriptedOpenAI(script, latency_s) as srv:`` then point a client at ``srv.base_url``.

    As OpenAI's API does, when asked to (``api_like=True``): a wrong key gets 401, a model it does
    not serve 404 ``model_not_found``; answers name the model snapshot that served them; usage counts
    tokens; embeddings have the model's dimension (1,536 for ``text-embedding-3-small``); every
    ``rate_limit_every``-th chat request is refused once with 429 and ``Retry-After``.
    ``max_in_flight``: a chat request arriving while that many are being answered gets 429 (a
    provider's concurrency limit); ``peak_in_flight`` and ``in_flight_seen`` record what arrived.

    The Batch API: ``POST /files`` (purpose ``batch``), ``POST /batches``, ``GET /batches/{id}``,
    ``GET /files/{id}/content``. A batch is ``in_progress`` until it has been retrieved
    ``batch_polls`` times, then ``completed``; each line is answered as the same request sent alone
    would be (the script included), with no latency. ``batches`` and ``files`` record what was sent.
    """

    def __init__(self, script=default_script, latency_s: float = 0.0, *, api_like: bool = False,
                 api_key: str | None = None, models: dict | None = None, rate_limit_every: int = 0,
                 retry_after_s: float = 0.2, port: int = 0, max_in_flight: int | None = None,
                 batch_polls: int = 2, embed=None):
        self.script, self.latency_s = script, latency_s
        self.embed = embed or embedding_for  # (text, dim) -> the vector an embeddings request gets
        self.api_like, self.api_key = api_like, api_key
        self.models = dict(models or API_MODELS) if api_like else None
        self.rate_limit_every, self.retry_after_s = rate_limit_every, retry_after_s
        self.max_in_flight = max_in_flight
        self.active = 0  # chat requests being answered
        self.in_flight_seen: list[int] = []  # requests open as each chat request arrived (itself included)
        self.requests: list[dict] = []  # every chat request body, in arrival order
        self.auth_headers: list[str] = []
        self.embedding_requests = 0
        self.embedded_texts = 0
        self.kinds: Counter = Counter()  # judge / audit / ragas / embeddings -> requests answered 200
        self.usage: Counter = Counter()  # prompt_tokens / completion_tokens, as reported
        self.replies: Counter = Counter()  # kind/status -> count
        self._seen: Counter = Counter()
        self._arrivals = 0
        # the Batch API: uploaded files, batches, and how many retrievals a batch takes to complete
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.batch_polls = batch_polls
        self.fail_batches = False  # True: a batch ends failed (as one with an invalid line does)
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), self._handler())
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    def answer(self, body: dict, throttle: bool = False) -> tuple[int, dict, dict, float]:
        """(status, payload, headers, delay) of the reply to one chat request: the script's verdict,
        a refusal, a malformed answer, or a value fitting the requested schema."""
        prompt = prompt_of(body)
        with self._lock:
            seen = self._seen[prompt]
            self._seen[prompt] += 1
            self.requests.append(body)
            self._arrivals += 1
            limited = throttle and self.rate_limit_every and self._arrivals % self.rate_limit_every == 0
        reply = self.script(body, seen)
        if limited and reply.kind == "ok":  # as a rate limit does: refused, to be asked again
            reply = Reply(kind="status", status=429, retry_after=self.retry_after_s)
        with self._lock:
            self.replies[reply.kind if reply.kind != "status" else f"http_{reply.status}"] += 1
        if reply.kind == "drop":
            return 0, {}, {}, reply.delay_s
        if reply.kind == "status":
            headers = {"Retry-After": str(reply.retry_after)} if reply.retry_after is not None else {}
            return reply.status, {"error": {"message": f"scripted {reply.status}", "type": "scripted"}}, headers, \
                reply.delay_s
        with self._lock:
            self.kinds[request_kind(body)] += 1
        if reply.kind == "malformed":
            content = reply.content if reply.content is not None else "Sure! The score is seven."
            return 200, self._completion(body, prompt, content), {}, reply.delay_s
        verdict = verdict_for(prompt)
        schema = response_schema(body)
        if reply.content is None and schema and schema.get("title") != "ReasonScore":
            # a request for another shape (the QA auditor, RAGAS's prompts): a value that fits
            return 200, self._completion(body, prompt, json.dumps(instance_of(schema, prompt))), {}, reply.delay_s
        content = reply.content if reply.content is not None else json.dumps(verdict)
        score = verdict["score"] if reply.content is None else _score_in(content)
        return 200, self._completion(body, prompt, content, score if body.get("logprobs") else None,
                                     reply.alternatives), {}, reply.delay_s

    def _completion(self, body, prompt, content, logprob_score=None, alternatives=None) -> dict:
        out = completion(body, content, logprob_score, alternatives)
        if self.api_like:
            out["model"] = self.models.get(body.get("model"), body.get("model"))
            out["usage"] = {"prompt_tokens": count_tokens(prompt), "completion_tokens": count_tokens(content)}
            out["usage"]["total_tokens"] = sum(out["usage"].values())
            out["system_fingerprint"] = "fp_scripted"
        with self._lock:
            self.usage["prompt_tokens"] += out["usage"]["prompt_tokens"]
            self.usage["completion_tokens"] += out["usage"]["completion_tokens"]
        return out

    # ------------------------------------------------------------ the Batch API
    def add_file(self, content: bytes, filename: str, purpose: str) -> dict:
        with self._lock:
            fid = f"file-scripted{len(self.files) + 1}"
            obj = {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                   "filename": filename, "purpose": purpose, "status": "processed"}
            self.files[fid] = {"object": obj, "content": content}
        return obj

    def create_batch(self, body: dict) -> tuple[int, dict]:
        with self._lock:
            f = self.files.get(body.get("input_file_id"))
            if f is None or f["object"]["purpose"] != "batch":
                return 400, {"error": {"message": f"invalid input_file_id {body.get('input_file_id')!r}"}}
            bid = f"batch_scripted{len(self.batches) + 1}"
            lines = [json.loads(x) for x in f["content"].decode("utf-8").splitlines() if x.strip()]
            self.batches[bid] = {
                "id": bid, "object": "batch", "endpoint": body.get("endpoint"), "errors": None,
                "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window"),
                "status": "validating", "output_file_id": None, "error_file_id": None,
                "created_at": int(time.time()), "metadata": body.get("metadata"),
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0}, "_polls": 0,
            }
            return 200, {k: v for k, v in self.batches[bid].items() if not k.startswith("_")}

    def poll_batch(self, bid: str) -> dict:
        with self._lock:
            batch = self.batches[bid]
            batch["_polls"] += 1
            ready = batch["status"] == "in_progress" and batch["_polls"] >= self.batch_polls
            if batch["status"] == "validating":
                batch["status"] = "in_progress"
                ready = batch["_polls"] >= self.batch_polls
            if ready and self.fail_batches:
                batch.update(status="failed", errors={"object": "list", "data": [
                    {"code": "scripted", "message": "the scripted server failed this batch", "line": 1}]})
                ready = False
            lines = ready and [json.loads(x) for x in self.files[batch["input_file_id"]]["content"]
                               .decode("utf-8").splitlines() if x.strip()]
        if ready:
            out, failed = [], 0
            for n, line in enumerate(lines):
                status, payload, _, _ = self.answer(line["body"])
                failed += status != 200
                out.append({"id": f"batch_req_{n}", "custom_id": line["custom_id"],
                            "response": {"status_code": status, "request_id": f"req_{n}", "body": payload},
                            "error": None})
            text = "".join(json.dumps(o) + "\n" for o in out).encode()
            obj = self.add_file(text, f"{bid}_output.jsonl", "batch_output")
            with self._lock:
                batch.update(status="completed", output_file_id=obj["id"], completed_at=int(time.time()),
                             request_counts={"total": len(out), "completed": len(out) - failed, "failed": failed})
        with self._lock:
            return {k: v for k, v in batch.items() if not k.startswith("_")}

    @property
    def chat_requests(self) -> int:
        with self._lock:
            return len(self.requests)

    def _handler(self):
        return type("Handler", (ScriptedHandler,), {"scripted": self})


class ScriptedHandler(BaseHTTPRequestHandler):
    """One HTTP request to a :class:`ScriptedOpenAI` (``scripted``: the server it answers for)."""

    scripted: ScriptedOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        # as real servers do: no Nagle delay between the header and body writes
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, status: int, payload: dict | str, headers: dict | None = None):
        data = payload if isinstance(payload, str) else json.dumps(payload)
        raw = data.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): nothing to answer

    def do_GET(self):
        if self.path == "/_stats":  # for a client in another process (bench/judge.py, the rehearsal)
            with self.scripted._lock:
                self._send(200, {"chat_requests": len(self.scripted.requests), "replies": dict(self.scripted.replies),
                                 "kinds": dict(self.scripted.kinds), "usage": dict(self.scripted.usage),
                                 "in_flight_seen": list(self.scripted.in_flight_seen),
                                 "embedding_requests": self.scripted.embedding_requests,
                                 "embedded_texts": self.scripted.embedded_texts})
        elif not self._authorized():
            return
        elif "/batches/" in self.path or "/files/" in self.path:
            self._batch_get()
        elif self.path.rstrip("/").endswith("/models"):
            ids = list(self.scripted.models) if self.scripted.models else ["scripted"]
            self._send(200, {"object": "list", "data": [{"id": i, "object": "model", "owned_by": "system"}
                                                        for i in ids]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def _authorized(self) -> bool:
        if self.scripted.api_key is None or self.headers.get("Authorization") == f"Bearer {self.scripted.api_key}":
            return True
        self._send(401, {"error": {"message": "Incorrect API key provided. You can find your API key "
                                   "at https://platform.openai.com/account/api-keys.",
                                   "type": "invalid_request_error", "param": None,
                                   "code": "invalid_api_key"}})
        return False

    def _unknown_model(self, model) -> bool:
        if self.scripted.models is None or model in self.scripted.models:
            return False
        self._send(404, {"error": {"message": f"The model `{model}` does not exist or you do not have "
                                   "access to it.", "type": "invalid_request_error", "param": None,
                                   "code": "model_not_found"}})
        return True

    def do_POST(self):
        if self.path.rstrip("/").endswith("/files"):
            if self._authorized():
                self._upload()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if not self._authorized() or self._unknown_model(body.get("model")):
            return
        if self.path.rstrip("/").endswith("/batches"):
            status, payload = self.scripted.create_batch(body)
            self._send(status, payload)
            return
        if self.path.rstrip("/").endswith("/embeddings"):
            self._embeddings(body)
        elif self.path.rstrip("/").endswith("/chat/completions"):
            self._limited_chat(body)
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def _embeddings(self, body):
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        model = body.get("model", "scripted")
        dim = EMBEDDING_DIMS.get(model, 8) if self.scripted.api_like else 8
        tokens = sum(count_tokens(str(t)) for t in texts) if self.scripted.api_like else 1
        with self.scripted._lock:
            self.scripted.embedding_requests += 1
            self.scripted.embedded_texts += len(texts)
            self.scripted.kinds["embeddings"] += 1
        self._send(200, {"object": "list", "model": model,
                         "data": [{"object": "embedding", "index": i, "embedding": self.scripted.embed(str(t), dim)}
                                  for i, t in enumerate(texts)],
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _limited_chat(self, body):
        """A chat completion, or a 429 past ``max_in_flight`` requests at once."""
        with self.scripted._lock:
            self.scripted.active += 1
            self.scripted.in_flight_seen.append(self.scripted.active)
            over = self.scripted.max_in_flight is not None and self.scripted.active > self.scripted.max_in_flight
        try:
            if over:
                with self.scripted._lock:
                    self.scripted.replies["http_429"] += 1
                self._send(429, {"error": {"message": "scripted: too many requests in flight",
                                           "type": "rate_limit"}}, {"Retry-After": str(self.scripted.retry_after_s)})
                return
            self._chat(body)
        finally:
            with self.scripted._lock:
                self.scripted.active -= 1

    def _chat(self, body):
        with self.scripted._lock:
            self.scripted.auth_headers.append(self.headers.get("Authorization", ""))
        status, payload, headers, delay = self.scripted.answer(body, throttle=True)
        time.sleep(self.scripted.latency_s + delay)
        if status == 0:  # a dropped connection: no status line, the socket closed
            self.close_connection = True
            with contextlib.suppress(OSError):  # the client may have gone already (its timeout)
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(status, payload, headers)

    def _batch_get(self):
        parts = self.path.rstrip("/").split("/")
        if "batches" in parts:
            with self.scripted._lock:
                batch = self.scripted.batches.get(parts[-1])
            if batch is None:
                self._send(404, {"error": {"message": f"No batch found with id '{parts[-1]}'."}})
                return
            self._send(200, self.scripted.poll_batch(batch["id"]))
            return
        file_id = parts[-2] if parts[-1] == "content" else parts[-1]
        with self.scripted._lock:
            f = self.scripted.files.get(file_id)
        if f is None:
            self._send(404, {"error": {"message": f"No such File object: {file_id}"}})
        elif parts[-1] == "content":
            self._send(200, f["content"].decode("utf-8"))
        else:
            self._send(200, f["object"])

    def _upload(self):
        from email import policy
        from email.parser import BytesParser

        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        head = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
        msg = BytesParser(policy=policy.default).parsebytes(head + raw)
        fields = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[name] = (part.get_filename(), part.get_payload(decode=True))
        filename, content = fields.get("file", (None, b""))
        purpose = (fields.get("purpose") or (None, b""))[1].decode()
        self._send(200, self.scripted.add_file(content, filename or "upload.jsonl", purpose))


def _score_in(content: str) -> int | None:
    """The score of a scripted verdict's JSON, for its logprobs (None when it has none)."""
    try:
        score = json.loads(content).get("score")
    except (ValueError, AttributeError):
        return None
    return score if isinstance(score, int) and not isinstance(score, bool) else None


def completion(body: dict, content: str, logprob_score: int | None = None,
               alternatives: list[tuple[str, float]] | None = None) -> dict:
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop",
              "logprobs": None}
    if logprob_score is not None:
        choice["logprobs"] = {"content": score_logprobs(content, logprob_score, alternatives)}
    return {
        "id": "chatcmpl-scripted", "object": "chat.completion", "created": 0,
        "model": body.get("model", "scripted"), "choices": [choice],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def score_logprobs(content: str, score: int, alternatives: list[tuple[str, float]] | None = None) -> list[dict]:
    """Token logprobs at the score token: ``alternatives`` (token, probability), by default 70% ``score``
    and 30% its neighbour."""
    other = score + 1 if score < 10 else score - 1
    at = content.rfind(str(score))
    alternatives = alternatives or [(str(score), 0.7), (str(other), 0.3)]
    top = [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in alternatives]
    chosen = dict(alternatives).get(str(score), alternatives[0][1])
    return [
        {"token": content[:at], "logprob": 0.0, "bytes": None, "top_logprobs": []},
        {"token": str(score), "logprob": math.log(chosen), "bytes": None, "top_logprobs": top},
        {"token": content[at + len(str(score)):], "logprob": 0.0, "bytes": None, "top_logprobs": []},
    ]


def main(argv=None) -> None:
    """``python -m tunejudge_dev.testing.openai_server --latency 0.25``: serve until killed.

    Prints ``READY <base_url>`` once listening; ``GET /_stats`` returns the request count.
    """
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before every reply")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    ap.add_argument("--api-like", action="store_true", help="answer as OpenAI's API does (see ScriptedOpenAI)")
    ap.add_argument("--api-key-env", help="with --api-like: refuse other keys than this variable's value (401)")
    ap.add_argument("--rate-limit-every", type=int, default=0, help="every N-th chat request gets one 429")
    ap.add_argument("--max-in-flight", type=int, default=None, help="429 to chat requests beyond this many open")
    ap.add_argument("--retry-after", type=float, default=0.2, help="Retry-After of its 429s, seconds")
    args = ap.parse_args(argv)
    import os

    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    with ScriptedOpenAI(latency_s=args.latency, api_like=args.api_like, api_key=key, port=args.port,
                        rate_limit_every=args.rate_limit_every, max_in_flight=args.max_in_flight,
                        retry_after_s=args.retry_after) as srv:
        print(f"READY {srv.base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
