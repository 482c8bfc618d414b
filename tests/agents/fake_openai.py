"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions API (JSON and SSE).

Runs ``http.server`` in a thread. By default it answers classification prompts with a JSON
classification and generation prompts with ``reply`` (streamed word by word as SSE when the
request asks for ``stream: true``). ``script`` queues one-off answers (status codes, bad bodies)
that are used first, in order.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Scripted:
    status: int = 200
    body: Any = None  # dict -> JSON, str -> raw text
    headers: dict[str, str] = field(default_factory=dict)
    #: For status 200 and a streaming request: raw SSE lines to send instead of the reply.
    sse_lines: list[str] | None = None


class FakeOpenAI:
    def __init__(
        self,
        *,
        reply: str = "Olá João! Posso te enviar o catálogo do produto X?",
        classification: dict[str, Any] | None = None,
        token_delay: float = 0.0,
    ) -> None:
        self.reply = reply
        self.classification = classification or {
            "intent": "purchase_intent",
            "confidence": 0.93,
            "sentiment": "positive",
            "language": "pt",
            "rationale": "the customer wants to buy product X",
        }
        self.token_delay = token_delay
        self.script: deque[Scripted] = deque()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.disconnects = 0
        self.streamed_tokens = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = (json.dumps(body) if not isinstance(body, str) else body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _sse(self, lines: list[str]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.end_headers()
                try:
                    for line in lines:
                        self.wfile.write(f"{line}\n\n".encode())
                        self.wfile.flush()
                        if line.startswith("data: {"):
                            fake.streamed_tokens += 1
                        time.sleep(fake.token_delay)
                except (BrokenPipeError, ConnectionResetError):
                    fake.disconnects += 1

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length))
                fake.requests.append(body)
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path != "/v1/chat/completions":
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                scripted = fake.script.popleft() if fake.script else None
                if scripted is not None and scripted.status != 200:
                    self._json(
                        scripted.status, scripted.body or {"error": {"message": "scripted"}}, scripted.headers
                    )
                    return
                if body.get("stream"):
                    if scripted is not None and scripted.sse_lines is not None:
                        self._sse(scripted.sse_lines)
                        return
                    words = fake.reply.split(" ")
                    lines = [
                        "data: "
                        + json.dumps(
                            {
                                "choices": [
                                    {
                                        "index": 0,
                                        "delta": {"content": w + (" " if i < len(words) - 1 else "")},
                                    }
                                ]
                            }
                        )
                        for i, w in enumerate(words)
                    ]
                    self._sse([": keep-alive", *lines, "data: [DONE]"])
                    return
                if scripted is not None and scripted.body is not None:
                    self._json(200, scripted.body)
                    return
                system = body["messages"][0]["content"]
                content = json.dumps(fake.classification) if "classify" in system else fake.reply
                self._json(
                    200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
                )

        return Handler
