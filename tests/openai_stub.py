"""Test servers for the openai engine: a deterministic OpenAI-compatible responder with no model, and a proxy that
injects 429s, 5xx and dropped connections in front of any upstream (the responder or a real vLLM server).

Both are threaded ``http.server`` servers on loopback, started with :func:`serve` and stopped with ``.shutdown()``."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def serve(handler: type[BaseHTTPRequestHandler], **state: Any) -> ThreadingHTTPServer:
    """``handler`` on a free loopback port in a daemon thread; ``state`` becomes attributes of the server."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    for k, v in state.items():
        setattr(server, k, v)
    server.lock = threading.Lock()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def base_url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def row_key(body: dict[str, Any]) -> str:
    """What identifies a row's request across retries: its messages or prompt (and seed)."""
    return hashlib.sha256(json.dumps([body.get("messages"), body.get("prompt"), body.get("seed")]).encode()).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass

    def send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


class Responder(_Handler):
    """Answers chat/completions with "Could you explain <words of the prompt>?" (max_tokens words at most), usage
    counted in words, and digit log-probabilities when asked for logprobs (unless ``server.logprobs`` is False).
    Records the Authorization headers it saw in ``server.auth`` and the served row keys in ``server.served``."""

    def do_GET(self) -> None:
        self.send_json(200, {"object": "list", "data": [{"id": self.server.model, "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.read_body())
        server: Any = self.server
        with server.lock:
            server.auth.append(self.headers.get("Authorization"))
            server.served[row_key(body)] += 1
        if server.key and self.headers.get("Authorization") != f"Bearer {server.key}":
            self.send_json(401, {"error": {"message": "Invalid API key"}})
            return
        if body.get("model") != server.model:
            self.send_json(404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}})
            return
        chat = self.path.endswith("/chat/completions")
        prompt = " ".join(m["content"] for m in body["messages"]) if chat else body["prompt"]
        words = re.findall(r"[A-Za-z]{5,}", prompt)
        text_words = ["Could", "you", "explain", *words[-3:]]
        max_tokens = int(body.get("max_tokens") or 16)
        finish = "length" if len(text_words) > max_tokens else "stop"
        text = " ".join(text_words[:max_tokens])
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
        if body.get("logprobs") and server.logprobs:
            top = {"3": -0.4, " 3": -3.0, "4": -1.5, "1": -2.5, "Hello": -4.0}
            if chat:
                items = [{"token": t, "logprob": lp} for t, lp in top.items()]
                choice["logprobs"] = {"content": [{"token": "3", "logprob": -0.4, "top_logprobs": items}]}
            else:
                choice["logprobs"] = {"top_logprobs": [top]}
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
        self.send_json(200, {"object": "chat.completion", "choices": [choice], "usage": usage})


def responder(model: str = "stub-model", logprobs: bool = True, key: str | None = None) -> ThreadingHTTPServer:
    """A :class:`Responder`; with ``key``, requests without ``Authorization: Bearer <key>`` get a 401."""
    return serve(Responder, model=model, logprobs=logprobs, key=key, auth=[], served=Counter())


Plan = Callable[[str, bytes, int], str | None]


def default_plan(key: str, raw: bytes, attempt: int) -> str | None:
    """Deterministic faults from the row key: a quarter of the rows get a 429 first, a quarter a dropped connection,
    a quarter a 503 then a connection dropped after the upstream answered (the retry must not duplicate the row);
    a request whose text holds ``POISON`` fails with 503 every time."""
    if b"POISON" in raw:
        return "503"
    kind = int(key[:8], 16) % 4
    plans = {0: ["429"], 1: ["reset"], 2: ["503", "reset_after"], 3: []}[kind]
    return plans[attempt] if attempt < len(plans) else None


class FaultProxy(_Handler):
    """Forwards POSTs to ``server.upstream``, except that ``server.plan(key, body, attempt)`` may answer 429 (with
    Retry-After), 503, or drop the connection before (``reset``) or after (``reset_after``) forwarding. Counts the
    attempts per row key in ``server.attempts`` and the faults in ``server.faults``."""

    def do_GET(self) -> None:
        with urllib.request.urlopen(self.server.upstream + self.path.removeprefix("/v1"), timeout=30) as r:
            self.send_json(r.status, json.load(r))

    def do_POST(self) -> None:
        raw = self.read_body()
        server: Any = self.server
        key = row_key(json.loads(raw))
        with server.lock:
            attempt = server.attempts[key]
            server.attempts[key] += 1
        fault = server.plan(key, raw, attempt)
        if fault:
            with server.lock:
                server.faults[fault] += 1
        if fault == "429":
            self.send_json(429, {"error": {"message": "rate limited"}}, {"Retry-After": "0"})
            return
        if fault == "503":
            self.send_json(503, {"error": {"message": "overloaded"}})
            return
        if fault == "reset":
            self.close_connection = True
            return
        upstream = server.upstream + self.path.removeprefix("/v1")
        headers = {"Content-Type": "application/json"}
        if self.headers.get("Authorization"):
            headers["Authorization"] = self.headers["Authorization"]
        request = urllib.request.Request(upstream, data=raw, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=300) as r:
                status, body = r.status, json.load(r)
        except urllib.error.HTTPError as exc:
            status, body = exc.code, json.load(exc)
        if fault == "reset_after":  # the upstream did the work; the answer never arrives
            self.close_connection = True
            return
        self.send_json(status, body)


def fault_proxy(upstream: str, plan: Plan = default_plan) -> ThreadingHTTPServer:
    """A :class:`FaultProxy` in front of ``upstream`` (a base URL ending in /v1)."""
    return serve(FaultProxy, upstream=upstream.removesuffix("/v1").rstrip("/") + "/v1", plan=plan,
                 attempts=Counter(), faults=Counter())  # fmt: skip
