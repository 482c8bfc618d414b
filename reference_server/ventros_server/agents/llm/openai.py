"""OpenAI-compatible chat completions over httpx: OpenAI, Ollama, vLLM, llama.cpp, Gemini...

Any server that speaks ``POST {base_url}/chat/completions`` (with ``stream: true`` answered as
server-sent events, ``data: {...}`` lines ending with ``data: [DONE]``) works:

    OpenAI     https://api.openai.com/v1                                   (key required)
    Ollama     http://localhost:11434/v1                                   (no key)
    vLLM       http://localhost:8000/v1
    llama.cpp  http://localhost:8080/v1
    Gemini     https://generativelanguage.googleapis.com/v1beta/openai     (key required)

Defaults come from OPENAI_BASE_URL, OPENAI_API_KEY and VENTROS_LLM_MODEL.

Failures: 429 and 500/502/503/504 and transport errors are retried (``max_retries`` times,
exponential backoff from ``backoff`` seconds, honouring a Retry-After up to ``max_backoff``)
as long as no text has been streamed yet. What is left is raised as a ventros status error
with ErrorDetails (metadata["upstream_status"] carries the HTTP status):

    429 Too Many Requests                  RESOURCE_EXHAUSTED  LLM_RATE_LIMITED (retry_after_ms)
    502 / 503 / 504, connect errors        UNAVAILABLE         LLM_UNAVAILABLE
    read timeout                           UNAVAILABLE         LLM_TIMEOUT
    stream cut after it started            UNAVAILABLE         LLM_STREAM_INTERRUPTED
    401 / 403                              INTERNAL            LLM_AUTH_FAILED
    500 and any other non-2xx              INTERNAL            LLM_ERROR
    unparseable body, error event in SSE   INTERNAL            LLM_BAD_RESPONSE / LLM_ERROR

Intent classification asks the model for a small JSON object; when the answer cannot be parsed
(or names an intent outside the labels), the rule-based classifier decides instead and the
result says so (``source="rules_fallback"``, surfaced as metadata["intent_source"]).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
from ventros import InternalError, ResourceExhaustedError, StatusError, UnavailableError

from .base import Classification, ClassificationRequest, GenerationRequest
from .rules import classify_intent, detect_language, detect_sentiment

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_CHECK_ENDPOINT = "Check that OPENAI_BASE_URL points at an OpenAI-compatible /v1 endpoint."
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # an HTTP date: treat as unknown


def _upstream_message(body: bytes) -> str:
    try:
        error = json.loads(body).get("error")
        message = error.get("message", "") if isinstance(error, dict) else str(error or "")
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace")
    return " ".join(message.split())[:200]


class OpenAICompatibleLLM:
    name = "openai"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        classify_with_llm: bool = True,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.model = model or os.environ.get("VENTROS_LLM_MODEL") or DEFAULT_MODEL
        if max_retries < 0 or backoff < 0 or max_backoff < 0:
            raise ValueError("max_retries, backoff and max_backoff must be >= 0")
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.classify_with_llm = classify_with_llm
        request_headers = {"accept": "application/json, text/event-stream", **(headers or {})}
        if self.api_key:
            request_headers["authorization"] = f"Bearer {self.api_key}"
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=request_headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"OpenAICompatibleLLM(base_url={self.base_url!r}, model={self.model!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- HTTP ----------------------------------------------------------------------------------

    def _error_for(self, status: int, body: bytes, retry_after: float | None) -> StatusError:
        upstream = _upstream_message(body)
        detail = f": {upstream}" if upstream else ""
        if status == 429:
            return ResourceExhaustedError.of(
                "LLM_RATE_LIMITED",
                f"the LLM backend throttled us (HTTP 429){detail}",
                suggestions=["Retry after retry_after_ms, or raise the LLM provider's rate limit."],
                retry_after_ms=str(int((retry_after if retry_after is not None else self.backoff) * 1000)),
                upstream_status="429",
            )
        if status in (502, 503, 504):
            return UnavailableError.of(
                "LLM_UNAVAILABLE",
                f"the LLM backend is unavailable (HTTP {status}){detail}",
                suggestions=["Retry later."],
                upstream_status=str(status),
            )
        code = "LLM_AUTH_FAILED" if status in (401, 403) else "LLM_ERROR"
        return InternalError.of(
            code,
            f"the LLM backend failed (HTTP {status}){detail}",
            suggestions=[
                "Check the server's LLM settings (OPENAI_BASE_URL, OPENAI_API_KEY, VENTROS_LLM_MODEL)."
            ],
            upstream_status=str(status),
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number ``attempt`` (0-based); None = do not retry."""
        if attempt >= self.max_retries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_backoff else None
        return min(self.backoff * (2**attempt), self.max_backoff)

    async def _open(self, body: dict[str, Any]) -> httpx.Response:
        """POST /chat/completions with retries; returns a 2xx response whose body is unread."""
        attempt = 0
        while True:
            try:
                request = self._client.build_request("POST", "/chat/completions", json=body)
                response = await self._client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                delay = self._delay(attempt, None)
                if delay is None:
                    raise UnavailableError.of(
                        "LLM_TIMEOUT",
                        f"the LLM backend did not answer in time ({type(exc).__name__})",
                        suggestions=["Retry later, or raise the backend timeout."],
                    ) from exc
            except httpx.TransportError as exc:
                delay = self._delay(attempt, None)
                if delay is None:
                    raise UnavailableError.of(
                        "LLM_UNAVAILABLE",
                        f"cannot reach the LLM backend at {self.base_url} ({type(exc).__name__})",
                        suggestions=["Check OPENAI_BASE_URL and that the model server is running."],
                    ) from exc
            else:
                if 200 <= response.status_code < 300:
                    return response
                payload = await response.aread()
                await response.aclose()
                retry_after = _retry_after(response)
                delay = (
                    self._delay(attempt, retry_after) if response.status_code in RETRYABLE_STATUS else None
                )
                if delay is None:
                    raise self._error_for(response.status_code, payload, retry_after)
            await asyncio.sleep(delay)
            attempt += 1

    def _body(
        self, system: str, prompt: str, *, max_tokens: int, temperature: float, stream: bool
    ) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": stream,
        }

    async def complete(
        self, system: str, prompt: str, *, max_tokens: int = 256, temperature: float = 0.0
    ) -> str:
        """One non-streamed completion; the message content."""
        response = await self._open(
            self._body(system, prompt, max_tokens=max_tokens, temperature=temperature, stream=False)
        )
        try:
            payload = await response.aread()
        finally:
            await response.aclose()
        try:
            return json.loads(payload)["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise InternalError.of(
                "LLM_BAD_RESPONSE",
                "the LLM backend's answer is not a chat completion",
                suggestions=[_CHECK_ENDPOINT],
            ) from exc

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        body = self._body(
            request.system,
            request.prompt,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            stream=True,
        )
        response = await self._open(body)
        try:
            if "text/event-stream" not in response.headers.get("content-type", ""):
                # A server that ignored stream=true: one JSON completion.
                payload = await response.aread()
                try:
                    text = json.loads(payload)["choices"][0]["message"]["content"] or ""
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    raise InternalError.of(
                        "LLM_BAD_RESPONSE",
                        "the LLM backend's answer is not a chat completion",
                        suggestions=[_CHECK_ENDPOINT],
                    ) from exc
                if text:
                    yield text
                return
            async for text in self._sse_deltas(response):
                yield text
        finally:
            await response.aclose()

    async def _sse_deltas(self, response: httpx.Response) -> AsyncIterator[str]:
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # comments, event:/id: lines, blank separators
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    event = json.loads(data)
                except ValueError as exc:
                    raise InternalError.of(
                        "LLM_BAD_RESPONSE",
                        "the LLM backend sent a malformed stream event",
                        suggestions=[_CHECK_ENDPOINT],
                    ) from exc
                if "error" in event:
                    raise InternalError.of(
                        "LLM_ERROR",
                        f"the LLM backend failed mid-stream: {_upstream_message(data.encode())}",
                        suggestions=["Retry later."],
                    )
                for choice in event.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        yield content
        except httpx.TimeoutException as exc:
            raise UnavailableError.of(
                "LLM_TIMEOUT",
                "the LLM backend stopped sending in the middle of a stream",
                suggestions=["Retry later."],
            ) from exc
        except httpx.TransportError as exc:
            raise UnavailableError.of(
                "LLM_STREAM_INTERRUPTED",
                f"the LLM backend's stream was cut ({type(exc).__name__})",
                suggestions=["Retry later."],
            ) from exc

    # -- classification ------------------------------------------------------------------------

    async def classify(self, request: ClassificationRequest) -> Classification:
        rules_intent, rules_confidence, rationale = classify_intent(request.message, request.labels)
        language = detect_language(request.message)
        sentiment = detect_sentiment(request.message)
        fallback = Classification(rules_intent, rules_confidence, sentiment, language, rationale, "rules")
        if not self.classify_with_llm:
            return fallback
        labels = "\n".join(f"- {name}: {meaning}" for name, meaning in request.labels.items())
        system = (
            "You classify one customer message for a CRM. Reply with a single JSON object and nothing else: "
            '{"intent": <one label>, "confidence": <0..1>, "sentiment": "positive"|"neutral"|"negative", '
            '"language": "pt"|"en", "rationale": <short reason>}.\nLabels:\n' + labels
        )
        prompt = (
            request.context_summary + "\n\n" if request.context_summary else ""
        ) + f"Message: {request.message}"
        text = await self.complete(system, prompt, max_tokens=200, temperature=request.temperature)
        parsed = _parse_classification(text, request.labels)
        if parsed is None:
            return Classification(
                rules_intent,
                rules_confidence,
                sentiment,
                language,
                f"model answer unusable; rules {rationale}",
                "rules_fallback",
            )
        intent, confidence, llm_sentiment, llm_language, reason = parsed
        return Classification(
            intent, confidence, llm_sentiment or sentiment, llm_language or language, reason or "model", "llm"
        )


def _parse_classification(text: str, labels: Any) -> tuple[str, float, str, str, str] | None:
    match = _JSON_OBJECT.search(text or "")
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
        intent = str(data["intent"])
        confidence = float(data.get("confidence", 0.5))
    except (ValueError, KeyError, TypeError):
        return None
    if intent not in labels or confidence != confidence:  # NaN
        return None
    sentiment = str(data.get("sentiment", ""))
    language = str(data.get("language", ""))
    return (
        intent,
        min(max(confidence, 0.0), 1.0),
        sentiment if sentiment in ("positive", "neutral", "negative") else "",
        language if language in ("pt", "en") else "",
        str(data.get("rationale", ""))[:200],
    )


__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MODEL", "OpenAICompatibleLLM"]
