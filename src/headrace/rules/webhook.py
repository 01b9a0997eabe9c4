"""The webhook sink: one HTTP(S) POST per batch, signed.

Body: a JSON array of the batch's messages (the rule's format, or the transform's
values). ``X-Headrace-Signature: sha256=<hex>`` is the HMAC-SHA256 of the body with the
rule's secret; ``X-Headrace-Rule`` names the rule, ``X-Headrace-Seq`` the stream
positions of the first and last record (``first-last``). 2xx is delivered; 408, 429, 5xx
and transport errors are retried with backoff; any other status dead-letters the batch
with the response.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import httpx

from .formats import Message
from .model import WebhookSink


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(slots=True)
class Answer:
    status: int  # 0: no answer (transport error, timeout)
    body: str
    error: str = ""

    @property
    def delivered(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retry(self) -> bool:
        return self.status == 0 or self.status in (408, 429) or self.status >= 500


class WebhookDelivery:
    def __init__(self, sink: WebhookSink, rule_id: str) -> None:
        self.sink = sink
        self.rule_id = rule_id
        self.client = httpx.AsyncClient(timeout=sink.timeout, follow_redirects=False)

    @staticmethod
    def body(messages: list[Message]) -> bytes:
        return b"[" + b",".join(m.value for m in messages) + b"]"

    async def send(self, messages: list[Message]) -> Answer:
        body = self.body(messages)
        headers = {
            **self.sink.headers,
            "content-type": "application/json",
            "x-headrace-signature": signature(self.sink.secret, body),
            "x-headrace-rule": self.rule_id,
            "x-headrace-seq": f"{messages[0].seq}-{messages[-1].seq}",
        }
        try:
            r = await self.client.post(self.sink.url, content=body, headers=headers)
        except httpx.HTTPError as e:
            return Answer(0, "", f"webhook: {type(e).__name__}: {e}")
        text = r.text[:2000]
        err = "" if 200 <= r.status_code < 300 else f"webhook answered {r.status_code}"
        return Answer(r.status_code, text, err)

    async def close(self) -> None:
        await self.client.aclose()
