"""What an OA vendor's callback rules look like to the hub's receiver (archive_hub/oa_callbacks.py).

Each vendor signs and encrypts its event pushes its own way (WeCom: XML envelope, "success"; DingTalk: JSON
{"encrypt"}, an encrypted "success" back). The receiver asks the vendor's handler only three things, so it
never needs to know whose request it holds.
"""

from __future__ import annotations

from typing import Protocol


class CallbackHandler(Protocol):
    signature_params: tuple[str, ...]  # query parameters kept with the body (signature, timestamp, nonce)

    def verify_url(self, params: dict[str, str]) -> str:
        """A GET that checks the URL: the text to answer, or CallbackError."""

    def accept(self, params: dict[str, str], body: bytes) -> bool:
        """Check signature and decryption of a POST (CallbackError when they fail); True when the request
        is to be kept in the approval inbox, False for a vendor's own check that carries no event."""

    def answer(self) -> tuple[bytes, str]:
        """The body and media type that tell the vendor the request was taken (it retries otherwise)."""
