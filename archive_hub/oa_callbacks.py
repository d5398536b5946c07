"""The OA callback receiver (接收事件服务器): `archive-hub oa serve`.

WeCom calls `GET /callbacks/<source>` once to verify the URL (it must answer the decrypted echostr) and
`POST /callbacks/<source>` for every event, retrying when the answer is slow or not "success". The
receiver does only what must happen before it answers: it checks the signature and decrypts the body
(so a forged or garbled message is refused at the door with 403), then keeps the request as received
in the source's approval inbox, durable before "success" goes back. Fetching the form and the files
is the archiving run's job, never the receiver's: nothing here waits on the catalog. DingTalk (事件订阅,
HTTP推送) has no GET: it checks the URL with a signed POST `check_url` event, which is answered and not
kept, and every answer it accepts is the encrypted "success" JSON the vendor's handler makes. Feishu
signs in headers: a handler's `signature_headers` are kept with the request like query parameters.

A refused request is kept too, byte for byte, with its reason, under quarantine/<source>/callbacks/,
so an operator can see who sent what. No SSO here: the caller is the OA system and its proof is the
signature made with the shared Token and EncodingAESKey.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from archive_hub.settings import Settings
from archive_hub.sources import SourceConfig, find_source
from connectors.errors import ConfigError
from connectors.oa.approval_inbox import ApprovalInbox, approval_inbox_dir
from connectors.oa.callback_crypto import CallbackError
from connectors.oa.callbacks import CallbackHandler

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # a WeCom event is a few KB; anything near a megabyte is not one
MAX_KEPT_REFUSED = 1000  # refused requests kept byte for byte (an operator clears them after reading)
# kind → "module:function(config)" giving the vendor's CallbackHandler
HANDLERS = {
    "oa.wecom": "connectors.oa.wecom:callback_handler",
    "oa.dingtalk": "connectors.oa.dingtalk:callback_handler",
    "oa.feishu": "connectors.oa.feishu:callback_handler",
}


class Receiver:
    def __init__(self, config: SourceConfig, settings: Settings) -> None:
        self.source_id = config.id
        self.handler: CallbackHandler = callback_handler(config)
        self.inbox = ApprovalInbox(approval_inbox_dir(settings.home, config.id))
        self.refused = ApprovalInbox(settings.home / "quarantine" / config.id / "callbacks")

    def refuse(self, params: dict[str, str], body: bytes, reason: str) -> PlainTextResponse:
        """Keep what was refused, up to MAX_KEPT_REFUSED requests: past that, a flood of forgeries would fill
        the disk the genuine callbacks need, so only its hash and size are logged."""
        if self._kept_refusals() < MAX_KEPT_REFUSED:
            kept = str(self.refused.put_refused(params, body, reason))
        else:
            kept = f"not kept, {MAX_KEPT_REFUSED} refused requests are; sha256 {hashlib.sha256(body).hexdigest()}"
        log.warning("%s: refused a callback of %d bytes: %s (%s)", self.source_id, len(body), reason, kept)
        return PlainTextResponse(f"refused: {reason}", status_code=403)

    def _kept_refusals(self) -> int:
        try:
            with os.scandir(self.refused.folder) as it:
                return sum(1 for _ in it)
        except FileNotFoundError:
            return 0


def callback_handler(config: SourceConfig) -> CallbackHandler:
    """The vendor's callback rules for an OA source (`kind: oa.<vendor>`)."""
    if config.kind not in HANDLERS:
        raise ConfigError(
            config.id, "kind", f"{config.kind} takes no callbacks (known: {', '.join(HANDLERS)})"
        )
    module, _, name = HANDLERS[config.kind].partition(":")
    return getattr(importlib.import_module(module), name)(config)  # type: ignore[no-any-return]


def make_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    app = FastAPI(title="archive-hub OA callbacks", docs_url=None, redoc_url=None, openapi_url=None)

    def receiver(source_id: str) -> Receiver | PlainTextResponse:
        try:
            config = find_source(source_id, settings)
            if not config.kind.startswith("oa."):
                return PlainTextResponse(f"{source_id} is not an OA source", status_code=404)
            return Receiver(config, settings)
        except ConfigError as exc:
            # The setting's name, never its value; an unknown source is the caller's mistake.
            status = 404 if exc.setting == "source" else 503
            return PlainTextResponse(f"{source_id}: not receiving ({exc.setting})", status_code=status)

    @app.get("/callbacks/{source_id}", response_class=PlainTextResponse)
    def verify_url(source_id: str, request: Request) -> Response:
        """URL verification (WeCom): answer the decrypted echostr, and only to a correct signature."""
        r = receiver(source_id)
        if isinstance(r, PlainTextResponse):
            return r
        params = dict(request.query_params)
        try:
            plain = r.handler.verify_url(params)
        except CallbackError as exc:
            return r.refuse(params, b"", f"URL verification: {exc.reason}")
        return PlainTextResponse(plain)

    @app.post("/callbacks/{source_id}", response_class=PlainTextResponse)
    async def receive(source_id: str, request: Request) -> Response:
        r = receiver(source_id)
        if isinstance(r, PlainTextResponse):
            return r
        params = {k: request.query_params.get(k, "") for k in r.handler.signature_params}
        # Feishu signs with headers (X-Lark-Signature ...): kept beside the query parameters, lower-case, so
        # the stream can check the signature again when it reads the inbox.
        for name in getattr(r.handler, "signature_headers", ()):
            params[name.lower()] = request.headers.get(name, "")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return r.refuse(params, body[:MAX_BODY], f"body larger than {MAX_BODY} bytes")
        try:
            keep = r.handler.accept(params, body)
        except CallbackError as exc:
            return r.refuse(params, body, exc.reason)
        if keep:
            kept = r.inbox.put_callback(params, body)
            log.info("%s: callback kept as %s", source_id, kept.name)
        content, media_type = r.handler.answer()
        return Response(content, media_type=media_type)

    return app
