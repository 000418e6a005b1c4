"""A scripted OpenAI-compatible Chat Completions server on 127.0.0.1, for tests and bench/judge.py.

It speaks the real HTTP protocol the ``openai`` SDK talks, so the judge is exercised end to end
(connection pool, status codes, Retry-After, timeouts, JSON bodies). A *script* decides each reply
from the request body and how many times the same prompt was asked before; the default script
answers every GEval prompt with a deterministic, well-formed verdict.
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    kind: str = "ok"  # ok | status | malformed
    status: int = 200
    content: str | None = None  # ok: the answer (default: a verdict); malformed: the broken text
    delay_s: float = 0.0  # sleep before replying (a slow answer; past the client timeout it is a timeout)
    retry_after: float | None = None


def prompt_of(body: dict) -> str:
    return "\n".join(str(m.get("content", "")) for m in body.get("messages", []))


def verdict_for(prompt: str) -> dict:
    """A deterministic verdict: score 0-10 from the prompt's hash."""
    h = hashlib.sha256(prompt.encode()).digest()
    return {"reason": f"Scripted verdict {h[:4].hex()}.", "score": h[4] % 11}


def default_script(body: dict, seen: int) -> Reply:
    return Reply()


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
    v = [(b - 127.5) / 127.5 for b in h[:dim]]
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


class ScriptedOpenAI:
    """``with ScriptedOpenAI(script, latency_s) as srv:`` then point a client at ``srv.base_url``."""

    def __init__(self, script=default_script, latency_s: float = 0.0):
        self.script, self.latency_s = script, latency_s
        self.requests: list[dict] = []  # every chat request body, in arrival order
        self.auth_headers: list[str] = []
        self.embedding_requests = 0
        self.replies: Counter = Counter()  # kind/status -> count
        self._seen: Counter = Counter()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def chat_requests(self) -> int:
        with self._lock:
            return len(self.requests)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
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
                if self.path == "/_stats":  # for a client in another process (bench/judge.py)
                    with server._lock:
                        self._send(200, {"chat_requests": len(server.requests), "replies": dict(server.replies)})
                elif self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/").endswith("/embeddings"):
                    texts = body.get("input")
                    texts = [texts] if isinstance(texts, str) else list(texts or [])
                    with server._lock:
                        server.embedding_requests += 1
                    self._send(200, {"object": "list", "model": body.get("model", "scripted"),
                                     "data": [{"object": "embedding", "index": i, "embedding": embedding_for(str(t))}
                                              for i, t in enumerate(texts)],
                                     "usage": {"prompt_tokens": 1, "total_tokens": 1}})
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                prompt = prompt_of(body)
                with server._lock:
                    seen = server._seen[prompt]
                    server._seen[prompt] += 1
                    server.requests.append(body)
                    server.auth_headers.append(self.headers.get("Authorization", ""))
                reply = server.script(body, seen)
                time.sleep(server.latency_s + reply.delay_s)
                with server._lock:
                    server.replies[reply.kind if reply.kind != "status" else f"http_{reply.status}"] += 1
                if reply.kind == "status":
                    headers = {"Retry-After": str(reply.retry_after)} if reply.retry_after is not None else {}
                    self._send(reply.status, {"error": {"message": f"scripted {reply.status}",
                                                        "type": "scripted"}}, headers)
                    return
                if reply.kind == "malformed":
                    content = reply.content if reply.content is not None else "Sure! The score is seven."
                    self._send(200, completion(body, content))
                    return
                verdict = verdict_for(prompt)
                schema = response_schema(body)
                if reply.content is None and schema and schema.get("title") != "ReasonScore":
                    # a request for another shape (the QA auditor, RAGAS's prompts): a value that fits
                    self._send(200, completion(body, json.dumps(instance_of(schema, prompt))))
                    return
                content = reply.content if reply.content is not None else json.dumps(verdict)
                self._send(200, completion(body, content, verdict["score"] if body.get("logprobs") else None))

        return Handler


def completion(body: dict, content: str, logprob_score: int | None = None) -> dict:
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop",
              "logprobs": None}
    if logprob_score is not None:
        choice["logprobs"] = {"content": score_logprobs(content, logprob_score)}
    return {
        "id": "chatcmpl-scripted", "object": "chat.completion", "created": 0,
        "model": body.get("model", "scripted"), "choices": [choice],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def score_logprobs(content: str, score: int) -> list[dict]:
    """Token logprobs where the score token is 70% ``score`` and 30% its neighbour."""
    other = score + 1 if score < 10 else score - 1
    at = content.rfind(str(score))
    top = [
        {"token": str(score), "logprob": math.log(0.7), "bytes": None},
        {"token": str(other), "logprob": math.log(0.3), "bytes": None},
    ]
    return [
        {"token": content[:at], "logprob": 0.0, "bytes": None, "top_logprobs": []},
        {"token": str(score), "logprob": math.log(0.7), "bytes": None, "top_logprobs": top},
        {"token": content[at + len(str(score)):], "logprob": 0.0, "bytes": None, "top_logprobs": []},
    ]


def main(argv=None) -> None:
    """``python -m tunejudge.testing.openai_server --latency 0.25``: serve until killed.

    Prints ``READY <base_url>`` once listening; ``GET /_stats`` returns the request count.
    """
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before every reply")
    args = ap.parse_args(argv)
    with ScriptedOpenAI(latency_s=args.latency) as srv:
        print(f"READY {srv.base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
