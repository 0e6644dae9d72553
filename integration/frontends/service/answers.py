"""What the HTTP API answers: an Answer (status, body, media type, headers) and the ASGI
response it becomes without a Starlette Response built; a problem (problems.py) or a command's
result as one."""
from __future__ import annotations

import json

from .. import wire
from .problems import MEDIA_TYPE, Problem

dumps = wire.dumps


class Answer:
    """What a request answers: status, body bytes, media type, headers."""

    __slots__ = ("status", "body", "media_type", "headers")

    def __init__(self, status: int, body: bytes, media_type: str = "application/json", headers: dict | None = None):
        self.status, self.body, self.media_type, self.headers = status, body, media_type, dict(headers or {})

    def response(self):
        """The answer as an ASGI response: the headers and body Starlette's Response would send
        (the answer's headers, then content-length and content-type), without building one."""
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        keys = {k for k, _ in raw}
        if b"content-length" not in keys and not (self.status < 200 or self.status in (204, 304)):
            raw.append((b"content-length", str(len(self.body)).encode("latin-1")))
        if self.media_type is not None and b"content-type" not in keys:
            raw.append((b"content-type", self.media_type.encode("latin-1")))
        return _Sent(self.status, raw, self.body)


class _Sent:
    """An ASGI response of a status, raw headers and a body (Answer.response)."""

    __slots__ = ("status_code", "raw_headers", "body")

    def __init__(self, status: int, raw_headers: list, body: bytes):
        self.status_code, self.raw_headers, self.body = status, raw_headers, body

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


def problem_answer(p: Problem, instance: str | None = None) -> Answer:
    return Answer(p.status, dumps(p.body(instance)), MEDIA_TYPE, p.headers)


def result_body(result) -> dict:
    """A result as the Python API gives it (CommandResult), with its outputs and next link."""
    return {"command": result.command, "flow": result.flow, "context": result.context(),
            "readable": result.readable, "raw": result.raw, "outputs": list(result.outputs),
            "next_link": result.next_link, "exit_code": result.exit_code, "failed": result.failed}


def code_of(answer: Answer) -> str:
    try:
        return str(json.loads(answer.body).get("code") or answer.status)
    except (ValueError, AttributeError):
        return str(answer.status)
