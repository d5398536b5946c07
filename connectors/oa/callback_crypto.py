"""Callback message crypto of WeCom (企业微信) and DingTalk, which share one scheme, and Feishu's decryption.

All three push approval events to the hub over the public internet, so the hub checks the signature before
it trusts a byte, refuses anything that does not decrypt to exactly the documented layout, and never lets a
token or key reach an exception message (exceptions end up in run logs and the catalog).

WeCom/DingTalk scheme (WXBizMsgCrypt):
    signature  = sha1_hex(sorted concatenation of token, timestamp, nonce, encrypt)
    key        = base64decode(EncodingAESKey + "=")  (43 characters -> 32 bytes), IV = key[:16]
    plaintext  = random(16) + len(msg) as 4-byte big-endian + msg (UTF-8) + receive id
    cipher     = AES-256-CBC with PKCS#7 padding to 32-byte blocks (pad value 1..32)
Feishu:
    key        = sha256(encrypt_key), ciphertext = base64decode(encrypt) = IV(16) + AES-256-CBC(PKCS#7, 16)
    signature  = sha256_hex(timestamp + nonce + encrypt_key + body), header X-Lark-Signature
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

import defusedxml.ElementTree as DefusedET
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml import DefusedXmlException
from lxml import etree

__all__ = [
    "CallbackCrypt",
    "CallbackError",
    "feishu_decrypt",
    "feishu_encrypt",
    "feishu_signature",
    "wecom_envelope",
    "wecom_envelope_encrypt",
]

WECOM_BLOCK = 32  # WXBizMsgCrypt pads to 32 bytes, not to the AES block size
AES_BLOCK = 16
MAX_ENVELOPE_BYTES = 1 << 20  # callback envelopes are a few KB; refuse to parse anything huge


class CallbackError(Exception):
    """A callback that must be refused. `.reason` is a short fixed phrase a caller can branch on; the message
    adds a detail but never contains the token, the key or the decrypted text."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _b64decode(text: str) -> bytes:
    """Strict base64: a callback with stray characters is refused rather than silently trimmed."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise CallbackError("not base64", "the encrypted field is not valid base64 text") from None


def _pkcs7_pad(data: bytes, block: int) -> bytes:
    pad = block - len(data) % block
    return data + bytes([pad]) * pad


def _pkcs7_unpad(data: bytes, block: int) -> bytes:
    """Check every pad byte, so a message padded differently is refused, not half-read."""
    pad = data[-1]
    if not 1 <= pad <= block or data[-pad:] != bytes([pad]) * pad:
        raise CallbackError("bad padding", f"the plaintext does not end in PKCS#7 padding to {block} bytes")
    return data[:-pad]


def _aes_cbc(key: bytes, iv: bytes, data: bytes, *, encrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    worker = cipher.encryptor() if encrypt else cipher.decryptor()
    return worker.update(data) + worker.finalize()


class CallbackCrypt:
    """WXBizMsgCrypt for one WeCom app (receive id = corpid) or DingTalk app (suiteKey/appKey/corpId)."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        if not token:
            raise ValueError("the callback token setting is empty")
        if not receive_id:
            raise ValueError("the callback receive id setting (corpid/suiteKey/appKey) is empty")
        key: bytes | None = None
        if isinstance(encoding_aes_key, str) and len(encoding_aes_key) == 43:
            try:
                key = base64.b64decode((encoding_aes_key + "=").encode("ascii"), validate=True)
            except (UnicodeEncodeError, binascii.Error, ValueError):
                key = None
        if key is None or len(key) != 32:
            # Never echo the value: it is the shared secret.
            raise ValueError(
                "the EncodingAESKey setting must be 43 base64 characters that decode to 32 bytes"
            )
        self._token = token
        self._key = key
        self._receive_id = receive_id.encode("utf-8")
        self.receive_id = receive_id

    def __repr__(self) -> str:
        return f"CallbackCrypt(receive_id={self.receive_id!r})"  # no token, no key

    def signature(self, timestamp: str, nonce: str, encrypt: str) -> str:
        """msg_signature as WeCom/DingTalk compute it: sha1 of the four values sorted and joined."""
        return hashlib.sha1(
            "".join(sorted([self._token, timestamp, nonce, encrypt])).encode("utf-8")
        ).hexdigest()

    def encrypt(self, message: str, *, random16: bytes | None = None) -> str:
        """Base64 ciphertext of `message`; `random16` is fixed only by known-answer tests."""
        prefix = os.urandom(16) if random16 is None else random16
        if len(prefix) != 16:
            raise ValueError("random16 must be exactly 16 bytes")
        body = message.encode("utf-8")
        plain = prefix + struct.pack(">I", len(body)) + body + self._receive_id
        return base64.b64encode(
            _aes_cbc(self._key, self._key[:16], _pkcs7_pad(plain, WECOM_BLOCK), encrypt=True)
        ).decode("ascii")

    def decrypt(self, encrypt: str) -> str:
        """The message inside `encrypt`. Call only after the signature is checked (verify_and_decrypt): the
        distinct reasons below would otherwise be a padding oracle."""
        raw = _b64decode(encrypt)
        if not raw or len(raw) % WECOM_BLOCK:
            raise CallbackError(
                "bad padding", f"the ciphertext is not a whole number of {WECOM_BLOCK}-byte blocks"
            )
        plain = _pkcs7_unpad(_aes_cbc(self._key, self._key[:16], raw, encrypt=False), WECOM_BLOCK)
        if len(plain) < 20:
            raise CallbackError("length field out of range", "the plaintext is shorter than its fixed header")
        (length,) = struct.unpack(">I", plain[16:20])
        if length > len(plain) - 20:
            raise CallbackError("length field out of range", "the message length exceeds the plaintext")
        message, receive_id = plain[20 : 20 + length], plain[20 + length :]
        if receive_id != self._receive_id:
            raise CallbackError("receive id mismatch", "the message was sealed for another corp or app")
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError:
            raise CallbackError("not utf-8", "the decrypted message is not UTF-8 text") from None

    def verify_and_decrypt(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> str:
        """The only entry point for untrusted input: signature first, in constant time, then decryption."""
        expected = self.signature(timestamp, nonce, encrypt).encode("ascii")
        if not hmac.compare_digest(expected, msg_signature.encode("utf-8", "replace")):
            raise CallbackError(
                "signature mismatch", "msg_signature does not match token, timestamp, nonce, encrypt"
            )
        return self.decrypt(encrypt)

    def seal(self, message: str, *, timestamp: str, nonce: str) -> tuple[str, str]:
        """(encrypt, msg_signature) as a sender produces them; used by the local peers and tests."""
        encrypted = self.encrypt(message)
        return encrypted, self.signature(timestamp, nonce, encrypted)


def wecom_envelope(encrypt: str, *, to_user: str, agent_id: str) -> bytes:
    """The XML body WeCom POSTs to a callback URL, with each value in CDATA as WeCom sends it."""
    root = etree.Element("xml")
    for tag, value in (("ToUserName", to_user), ("AgentID", agent_id), ("Encrypt", encrypt)):
        etree.SubElement(root, tag).text = etree.CDATA(value)  # lxml splits a "]]>" safely
    return etree.tostring(root, encoding="utf-8")


def wecom_envelope_encrypt(body: bytes) -> str:
    """The Encrypt text of a WeCom callback body. Parsed with defusedxml and any DOCTYPE refused, since the
    body arrives before its signature can be checked."""
    if len(body) > MAX_ENVELOPE_BYTES:
        raise CallbackError("not an XML envelope", f"the body is larger than {MAX_ENVELOPE_BYTES} bytes")
    try:
        root = DefusedET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise CallbackError("not an XML envelope", "DOCTYPE and entity declarations are refused") from None
    except (DefusedET.ParseError, ValueError, UnicodeError):
        raise CallbackError("not an XML envelope", "the body is not well-formed XML") from None
    if root.tag != "xml":
        raise CallbackError("not an XML envelope", "the root element is not <xml>")
    element = root.find("Encrypt")
    text = (element.text or "").strip() if element is not None else ""
    if not text:
        raise CallbackError("no Encrypt element", "the envelope has no non-empty <Encrypt> element")
    return text


def _feishu_key(encrypt_key: str) -> bytes:
    if not encrypt_key:
        raise ValueError("the Feishu Encrypt Key setting is empty")
    return hashlib.sha256(encrypt_key.encode("utf-8")).digest()


def feishu_decrypt(encrypt_key: str, encrypt: str) -> str:
    """The JSON text inside a Feishu `encrypt` field. Check feishu_signature first when the app has one."""
    key = _feishu_key(encrypt_key)
    raw = _b64decode(encrypt)
    if len(raw) < 2 * AES_BLOCK or len(raw) % AES_BLOCK:
        raise CallbackError("bad padding", "the ciphertext is not an IV plus whole 16-byte blocks")
    plain = _pkcs7_unpad(_aes_cbc(key, raw[:AES_BLOCK], raw[AES_BLOCK:], encrypt=False), AES_BLOCK)
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise CallbackError("not utf-8", "the decrypted message is not UTF-8 text") from None


def feishu_encrypt(encrypt_key: str, plaintext: str, *, iv: bytes | None = None) -> str:
    """What Feishu would send for `plaintext`; for local peers and tests."""
    key = _feishu_key(encrypt_key)
    vector = os.urandom(AES_BLOCK) if iv is None else iv
    if len(vector) != AES_BLOCK:
        raise ValueError("iv must be exactly 16 bytes")
    sealed = _aes_cbc(key, vector, _pkcs7_pad(plaintext.encode("utf-8"), AES_BLOCK), encrypt=True)
    return base64.b64encode(vector + sealed).decode("ascii")


def feishu_signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """X-Lark-Signature: sha256 hex of timestamp + nonce + encrypt_key + the raw request body."""
    digest = hashlib.sha256((timestamp + nonce + encrypt_key).encode("utf-8"))
    digest.update(body)
    return digest.hexdigest()
