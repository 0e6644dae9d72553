"""A SOAR platform's webhook receiver for tests: every delivery verified with the
standardwebhooks library, replays refused."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError


class Receiver:
    """The SOAR platform's endpoint: every delivery is verified with the standardwebhooks
    library (signature over id, timestamp and body; the timestamp within its 5 minutes); a
    webhook-id accepted before is a replay and refused (409). It answers 500 while ``failures``
    are left or ``always_fail`` is set, and ``status`` (with ``headers``) when given."""

    def __init__(self):
        self.secret: str | None = None
        self.failures = 0
        self.always_fail = False
        self.status: int | None = None
        self.headers: dict = {}
        self.arrived: list[str] = []         # the webhook-id of every request, accepted or not
        self.accepted: list[dict] = []       # {"id", "type", "data", "timestamp"} verified, in order
        self.refused: list[tuple[str, str]] = []  # (webhook-id, why) refused as not genuine
        self.raw: list[tuple[dict, bytes]] = []   # accepted requests as received (headers, body)
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        me = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _answer(self, code: int, headers: dict | None = None):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = dict(self.headers.items())
                msg_id = self.headers.get("webhook-id") or ""
                with me._lock:
                    me.arrived.append(msg_id)
                    if me.status is not None:
                        return self._answer(me.status, me.headers)
                    if me.always_fail or me.failures > 0:
                        me.failures -= 1
                        return self._answer(500)
                    try:
                        payload = Webhook(me.secret).verify(body, headers)
                    except WebhookVerificationError as exc:
                        me.refused.append((msg_id, str(exc)))
                        return self._answer(401)
                    if msg_id in me._seen:
                        me.refused.append((msg_id, "replayed"))
                        return self._answer(409)
                    me._seen.add(msg_id)
                    me.accepted.append({"id": msg_id, "type": payload["type"], "data": payload["data"],
                                        "timestamp": payload["timestamp"]})
                    me.raw.append((headers, body))
                return self._answer(204)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/teams"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def types(self) -> list[str]:
        return [a["type"] for a in self.accepted]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
