"""OpenAI-compatible serving endpoints (``backend: openai``): a self-hosted vLLM server, a Databricks serving endpoint,
any server that speaks ``/v1/chat/completions`` (or ``/v1/completions``).

The engine lives in the Spark Python worker like every other one, but holds no model: each task's rows go out as HTTP
requests, at most ``concurrency`` at a time per engine, spaced by a client-side rate limit, each retried with
exponential backoff and jitter on 429, 5xx, a dropped connection or a timeout (``Retry-After`` honoured). A row that
still fails becomes a per-row ``error`` (finish_reason ``error``): no row is ever lost or returned twice. 401/403
(bad key) and 404 (unknown model) fail the task with one line, since every other row would fail the same way.

Options (``profile.options``); the served model name is the profile's ``model``:

- ``base_url``: up to and including ``/v1`` (vLLM) or ``/serving-endpoints`` (Databricks).
- ``api_key_env``: the environment variable holding the key (default ``OPENAI_API_KEY``; unset or empty = no
  ``Authorization`` header, fine for a loopback vLLM server). ``api_key_secret: {scope, key}``: a Databricks secret
  instead. The key is read here, on the executor, when the engine starts; it never enters the profile.
- ``api``: ``chat`` (default) or ``completions`` (the prompt rendered with ``profile.tokenizer``'s chat template).
- ``prefill``: ``continue`` (default): the prefill goes as a trailing assistant message with vLLM's
  ``continue_final_message``; ``message``: the trailing assistant message alone (servers that continue one by
  themselves); ``none``: left out (the model starts its answer freely; the logprob judge refuses).
- ``concurrency`` (8), ``max_requests_per_s`` (null = unlimited), ``max_retries`` (5), ``timeout_s`` (120),
  ``backoff_s`` (0.5, the first retry's delay, doubled each time up to ``backoff_max_s``, 30), ``logprobs_top_k`` (20).

A request's output constraint (backforth.structured) goes in the body: ``structured_outputs`` (regex, choice: vLLM
servers) or ``response_format`` with a JSON schema (``json``: the standard form other servers accept too).

No local length check: a prompt the server refuses as too long (a 400 naming the context length) becomes the row's
``prompt_too_long`` error, like the local engines' check.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from backforth.engines.base import Engine, Generation, ModelProfile, Request, Sampling
from backforth.structured import openai_fields

log = logging.getLogger("backforth.engines.endpoint")

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
FATAL_STATUS = {401: "the endpoint refused the API key", 403: "the endpoint refused the API key",
                404: "no such model or path on the endpoint"}  # fmt: skip
TOO_LONG_WORDS = ("maximum context length", "context length", "too long", "max_model_len", "maximum input length")


class EndpointError(RuntimeError):
    """The endpoint cannot serve any row (bad key, unknown model, no logprobs): fails the task."""


class RowFailed(Exception):
    """One request failed for good: its row gets ``message`` as error."""


def endpoint_host(base_url: str) -> str:
    """``https://user:pw@host:443/v1`` → ``host:443``: what identifies an endpoint in step versions and logs."""
    return urlsplit(base_url).netloc.rpartition("@")[2]


def backoff_delay(attempt: int, base: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """Seconds before retry ``attempt`` (0 = the first retry): ``base * 2**attempt`` capped at ``cap``, then scaled
    by a random factor in [0.5, 1) so that tasks that failed together do not come back together."""
    return min(cap, base * 2**attempt) * (0.5 + rng() / 2)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header (seconds, or an HTTP date) → seconds to wait; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class RateLimiter:
    """At most ``rate`` request starts per second across the engine's threads (evenly spaced; None = no limit)."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
        self.interval = 1.0 / rate if rate else 0.0
        self.clock, self.sleep = clock, sleep
        self.lock = threading.Lock()
        self.next_slot = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = self.clock()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.interval
        if slot > now:
            self.sleep(slot - now)


def parse_generation(body: dict[str, Any], api: str = "chat") -> Generation:
    """A chat or completions response → a Generation (text, token counts from ``usage``, finish_reason kept:
    ``length`` is counted downstream as truncation; anything but length is ``stop``)."""
    choice = (body.get("choices") or [{}])[0]
    text = (choice.get("message") or {}).get("content") if api == "chat" else choice.get("text")
    usage = body.get("usage") or {}
    finish = "length" if choice.get("finish_reason") == "length" else "stop"
    return Generation(text or "", None, int(usage.get("prompt_tokens") or 0),
                      int(usage.get("completion_tokens") or 0), finish)  # fmt: skip


def parse_top_logprobs(body: dict[str, Any], api: str = "chat") -> dict[str, float] | None:
    """The first generated position's top log-probabilities as {token text: logprob}; None when the response has
    none (the endpoint ignores ``logprobs``)."""
    choice = (body.get("choices") or [{}])[0]
    logprobs = choice.get("logprobs")
    if not logprobs:
        return None
    if api == "chat":
        content = logprobs.get("content") or []
        if not content or not content[0].get("top_logprobs"):
            return None
        return {t["token"]: float(t["logprob"]) for t in content[0]["top_logprobs"]}
    top = logprobs.get("top_logprobs") or []
    return {str(k): float(v) for k, v in top[0].items()} if top and top[0] else None


def candidate_probs(top: dict[str, float], candidates: list[str]) -> dict[str, float]:
    """Probability of each candidate from the top tokens: tokens equal to it up to surrounding whitespace add up;
    a candidate outside the top k counts as 0 (as in the vLLM engine)."""
    import math

    probs = dict.fromkeys(candidates, 0.0)
    for token, logprob in top.items():
        if token.strip() in probs:
            probs[token.strip()] += math.exp(logprob)
    return probs


def read_api_key(options: dict[str, Any]) -> str | None:
    """The API key from a Databricks secret (``api_key_secret: {scope, key}``) or an environment variable."""
    secret = options.get("api_key_secret")
    if secret:
        return databricks_secret(str(secret["scope"]), str(secret["key"]))
    name = options.get("api_key_env", "OPENAI_API_KEY")
    return os.environ.get(name) or None if name else None


def databricks_secret(scope: str, key: str) -> str:
    """A secret through ``dbutils`` on a Databricks cluster, else through the SDK's WorkspaceClient (which reads
    the usual DATABRICKS_HOST/TOKEN or config profile). Untested outside Databricks."""
    try:
        from databricks.sdk.runtime import dbutils  # type: ignore[import-not-found]

        return str(dbutils.secrets.get(scope=scope, key=key))
    except ImportError:
        import base64

        from databricks.sdk import WorkspaceClient  # type: ignore[import-not-found]

        value = WorkspaceClient().secrets.get_secret(scope=scope, key=key).value
        return base64.b64decode(value or "").decode()


class EndpointEngine(Engine):
    backend = "openai"
    structured = True  # asked of the server in the request body (backforth.structured.openai_fields)

    def __init__(self, profile: ModelProfile) -> None:
        super().__init__(profile)
        import httpx

        logging.getLogger("httpx").setLevel(logging.WARNING)  # its per-request INFO lines carry no use here
        opts = profile.options
        if not opts.get("base_url"):
            raise ValueError(f"model profile {profile.name}: backend openai needs options.base_url")
        self.base_url = str(opts["base_url"]).rstrip("/")
        self.host = endpoint_host(self.base_url)
        self.api = str(opts.get("api", "chat"))
        self.prefill_mode = str(opts.get("prefill", "continue"))
        if self.api not in ("chat", "completions") or self.prefill_mode not in ("continue", "message", "none"):
            raise ValueError(f"model profile {profile.name}: api chat|completions, prefill continue|message|none")
        self.concurrency = max(1, int(opts.get("concurrency", 8)))
        self.max_retries = max(0, int(opts.get("max_retries", 5)))
        self.backoff = (float(opts.get("backoff_s", 0.5)), float(opts.get("backoff_max_s", 30.0)))
        self.top_k = int(opts.get("logprobs_top_k", 20))
        self.limiter = RateLimiter(opts.get("max_requests_per_s"))
        self.stats = {"requests": 0, "retries": 0, "row_errors": 0}
        self.stats_lock = threading.Lock()
        if self.api == "completions":
            from transformers import AutoTokenizer

            from backforth.models import resolve_tokenizer

            if not profile.tokenizer:
                raise ValueError(f"model profile {profile.name}: api completions needs a tokenizer (its chat template)")
            self.tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer(profile.tokenizer))
        key = read_api_key(opts)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        timeout = httpx.Timeout(float(opts.get("timeout_s", 120)), connect=10.0)
        self.client = httpx.Client(headers=headers, timeout=timeout, limits=limits)
        self.pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="endpoint")
        self._httpx = httpx
        log.info("openai engine for %s: model %s at %s, %s API, %d at a time", profile.name, profile.model,
                 self.host, self.api, self.concurrency)  # fmt: skip

    # -- requests -----------------------------------------------------------------------------------------------
    def payload(self, request: Request, sampling: Sampling, prefill: str = "") -> dict[str, Any]:
        """The JSON body for one request (``prefill`` is the request's prefill unless ``prefill`` mode drops it)."""
        body: dict[str, Any] = {"model": self.profile.model, "max_tokens": sampling.max_tokens,
                                "temperature": sampling.temperature, "top_p": sampling.top_p}  # fmt: skip
        seed = request.seed if request.seed is not None else sampling.seed
        body["seed"] = int(seed)
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        body.update(openai_fields(request.constraint))
        if self.api == "completions":
            text = self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
            body["prompt"] = text + prefill
            return body
        messages = [dict(m) for m in request.messages]
        if prefill and self.prefill_mode != "none":
            messages.append({"role": "assistant", "content": prefill})
            if self.prefill_mode == "continue":
                body.update(continue_final_message=True, add_generation_prompt=False)
        body["messages"] = messages
        return body

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST with retries; the decoded response, or RowFailed / EndpointError."""
        url = f"{self.base_url}/{'chat/completions' if self.api == 'chat' else 'completions'}"
        problem = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                with self.stats_lock:
                    self.stats["retries"] += 1
            self.limiter.wait()
            wait: float | None = None
            try:
                with self.stats_lock:
                    self.stats["requests"] += 1
                response = self.client.post(url, json=body)
            except (self._httpx.TransportError, self._httpx.TimeoutException) as exc:
                problem = f"{type(exc).__name__}: {exc}"[:300]
            else:
                status = response.status_code
                if status < 300:
                    return dict(response.json())
                message = server_message(response)
                if status in FATAL_STATUS:
                    raise EndpointError(f"openai endpoint {self.host} ({self.profile.model}): HTTP {status}, "
                                        f"{FATAL_STATUS[status]}: {message}")  # fmt: skip
                if status == 400 and any(w in message.lower() for w in TOO_LONG_WORDS):
                    raise RowFailed(f"prompt_too_long: {message}")
                if status not in RETRY_STATUS:
                    raise RowFailed(f"endpoint_http_{status}: {message}")
                problem = f"HTTP {status}: {message}"
                wait = retry_after(response.headers.get("retry-after"))
            if attempt < self.max_retries:
                delay = backoff_delay(attempt, *self.backoff)
                time.sleep(min(self.backoff[1], wait) if wait is not None else delay)
        raise RowFailed(f"endpoint_failed after {self.max_retries + 1} attempts: {problem}")

    def run_all(self, bodies: list[dict[str, Any]], read: Callable[[dict[str, Any]], Generation]) -> list[Generation]:
        """Every body through :meth:`post` on the thread pool; results in order, one per body."""

        def one(body: dict[str, Any]) -> Generation:
            try:
                return read(self.post(body))
            except RowFailed as exc:
                with self.stats_lock:
                    self.stats["row_errors"] += 1
                return Generation(None, str(exc), finish_reason="error")

        futures = [self.pool.submit(one, b) for b in bodies]
        try:
            results = [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        log.info("openai engine %s: %d rows, %s", self.host, len(bodies), self.stats)
        return results

    # -- the engine API -----------------------------------------------------------------------------------------
    def generate(self, requests: list[Request], sampling: Sampling) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        todo = []
        for i, request in enumerate(requests):
            if empty_prompt(request):
                results[i] = Generation(None, "empty_prompt", finish_reason="error")
            else:
                todo.append(i)
        bodies = [self.payload(requests[i], sampling, self.prefill_of(requests[i])) for i in todo]
        for i, out in zip(todo, self.run_all(bodies, lambda b: parse_generation(b, self.api)), strict=True):
            results[i] = out
        return [r for r in results if r is not None]

    def prefill_of(self, request: Request) -> str:
        return "" if self.prefill_mode == "none" and self.api == "chat" else request.prefill

    def next_token_probs(self, requests: list[Request], candidates: list[str]) -> list[Generation]:
        """One-token requests with ``logprobs``/``top_logprobs``; candidates read from the top tokens. An endpoint
        that returns no log-probabilities fails the task with a message that names score mode ``text``."""
        if self.api == "chat" and self.prefill_mode != "continue" and any(r.prefill for r in requests):
            raise EndpointError(
                f"openai endpoint {self.host}: the logprob judge needs the answer prefilled "
                "(prefill: continue, a vLLM server, or api: completions); use score mode: text"
            )
        one = Sampling(temperature=1.0, top_p=1.0, max_tokens=1, seed=self.profile.seed)
        results: list[Generation | None] = [None] * len(requests)
        todo, bodies = [], []
        for i, request in enumerate(requests):
            if empty_prompt(request):
                results[i] = Generation(None, "empty_prompt", finish_reason="error")
                continue
            body = self.payload(request, one, request.prefill)
            body["logprobs"] = True if self.api == "chat" else self.top_k
            if self.api == "chat":
                body["top_logprobs"] = self.top_k
            todo.append(i)
            bodies.append(body)

        def read(body: dict[str, Any]) -> Generation:
            top = parse_top_logprobs(body, self.api)
            if top is None:
                raise EndpointError(f"openai endpoint {self.host} ({self.profile.model}) returned no log-probabilities:"
                                    " the logprob judge cannot run there; use score mode: text")  # fmt: skip
            usage = body.get("usage") or {}
            return Generation(None, None, int(usage.get("prompt_tokens") or 0), 0, "probs",
                              candidate_probs(top, candidates))  # fmt: skip

        for i, out in zip(todo, self.run_all(bodies, read), strict=True):
            results[i] = out
        return [r for r in results if r is not None]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()


def empty_prompt(request: Request) -> bool:
    """No user message with text: the row's ``empty_prompt`` error, as in the local engines' check."""
    return not any((m.get("content") or "").strip() for m in request.messages if m.get("role") == "user")


def server_message(response: Any) -> str:
    """The error message of a failed response, on one line (``{"error": {"message": ...}}`` or the body's start)."""
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        text = error.get("message") if isinstance(error, dict) else (error or body.get("message") or body)
    except ValueError:
        text = response.text
    return " ".join(str(text).split())[:300]
