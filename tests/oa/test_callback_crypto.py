"""Callback crypto of WeCom/DingTalk (WXBizMsgCrypt) and Feishu, against the vendors' published vectors and
against ciphertext built here directly with `cryptography`, so a bug shared by encrypt and decrypt cannot
hide behind a round trip."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from connectors.oa.callback_crypto import (
    CallbackCrypt,
    CallbackError,
    feishu_decrypt,
    feishu_encrypt,
    feishu_signature,
    wecom_envelope,
    wecom_envelope_encrypt,
)

# WeCom's published WXBizMsgCrypt sample (Tencent, author jonyqin, "Sample.py"), as distributed in
# https://github.com/sbzhu/weworkapi_python/blob/master/callback/Sample.py (examples 1 and 2).
WECOM_TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
WECOM_AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
WECOM_CORP_ID = "ww1436e0e65a779aee"
WECOM_VERIFY = {
    "msg_signature": "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb",
    "timestamp": "1476416373",
    "nonce": "47744683",
    "encrypt": "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA==",
}
WECOM_POST_SIGNATURE = "0c3914025cb4b4d68103f6bfc8db550f79dcf48e"
WECOM_POST_TIMESTAMP = "1476422779"
WECOM_POST_NONCE = "1597212914"
WECOM_POST_ENCRYPT = (
    "Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAgGzBhzTtRLNshw2AEew"
    "+kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24Yh"
    "mZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwo"
    "cugux082f49HKYg84EpHSGXAyh+/oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+"
)
WECOM_POST_BODY = (
    "<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName>\n"
    f"<Encrypt><![CDATA[{WECOM_POST_ENCRYPT}]]></Encrypt>\n"
    "<AgentID><![CDATA[1000002]]></AgentID>\n</xml>"
).encode()
WECOM_POST_PLAINTEXT = (
    "<xml><ToUserName>ww1436e0e65a779aee</ToUserName><FromUserName>ChenJiaShun</FromUserName>"
    "<CreateTime>1476422779</CreateTime><MsgType>text</MsgType><Content>你好</Content>"
    "<MsgId>1456453720</MsgId><AgentID>1000002</AgentID></xml>"
)
WECOM_POST_RANDOM16 = b"694ce5a83ae07fe3"  # the sample's random prefix, read back from its plaintext

# DingTalk's published callback test data (the "回调接口本地调试" example of the DingTalk open platform docs,
# quoted with the same values by several SDKs' tests, e.g. open-dingtalk/DingTalk-Callback-Crypto users).
DING_TOKEN = "123456"
DING_AES_KEY = "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij"
DING_SUITE_KEY = "suite4xxxxxxxxxxxxxxx"
DING_SIGNATURE = "5a65ceeef9aab2d149439f82dc191dd6c5cbe2c0"
DING_TIMESTAMP = "1445827045067"
DING_NONCE = "nEXhMP4r"
DING_ENCRYPT = (
    "1a3NBxmCFwkCJvfoQ7WhJHB+iX3qHPsc9JbaDznE1i03peOk1LaOQoRz3+nlyGNhwmwJ3vDMG+OzrHMeiZI7gTRWVdUBmfxjZ8Ej23JVYa9V"
    "rYeJ5as7XM/ZpulX8NEQis44w53h1qAgnC3PRzM7Zc/D6Ibr0rgUathB6zRHP8PYrfgnNOS9PhSBdHlegK+AGGanfwjXuQ9+0pZcy0w9lQ=="
)
DING_PLAINTEXT = (
    '{"EventType":"check_create_suite_url","Random":"LPIdSnlF","TestSuiteKey":"suite4xxxxxxxxxxxxxxx"}'
)

# Feishu's documented example (open.feishu.cn, event subscription "Encrypt Key" decryption sample).
FEISHU_KEY = "test key"
FEISHU_ENCRYPT = "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="


def wecom() -> CallbackCrypt:
    return CallbackCrypt(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORP_ID)


def raw_key() -> bytes:
    return base64.b64decode(WECOM_AES_KEY + "=")


def seal_directly(plaintext: bytes) -> str:
    """AES-256-CBC with key = IV source exactly as the scheme says, with no padding added here."""
    key = raw_key()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plaintext) + encryptor.finalize()).decode()


def frame(message: bytes, receive_id: bytes, random16: bytes = b"R" * 16) -> bytes:
    return random16 + struct.pack(">I", len(message)) + message + receive_id


def pad_to(data: bytes, block: int) -> bytes:
    pad = block - len(data) % block
    return data + bytes([pad]) * pad


def reason_of(excinfo: pytest.ExceptionInfo[CallbackError]) -> str:
    return excinfo.value.reason


# --- published known answers --------------------------------------------------------------------------


def test_wecom_sample_url_verification() -> None:
    crypt = wecom()
    assert (
        crypt.signature(WECOM_VERIFY["timestamp"], WECOM_VERIFY["nonce"], WECOM_VERIFY["encrypt"])
        == (WECOM_VERIFY["msg_signature"])
    )
    assert crypt.verify_and_decrypt(**WECOM_VERIFY) == "1288432023552776189"


def test_wecom_sample_message_from_envelope() -> None:
    encrypt = wecom_envelope_encrypt(WECOM_POST_BODY)
    assert encrypt == WECOM_POST_ENCRYPT
    plaintext = wecom().verify_and_decrypt(
        WECOM_POST_SIGNATURE, WECOM_POST_TIMESTAMP, WECOM_POST_NONCE, encrypt
    )
    assert plaintext == WECOM_POST_PLAINTEXT


def test_wecom_sample_encrypt_reproduces_published_ciphertext() -> None:
    assert wecom().encrypt(WECOM_POST_PLAINTEXT, random16=WECOM_POST_RANDOM16) == WECOM_POST_ENCRYPT


def test_dingtalk_published_vector() -> None:
    crypt = CallbackCrypt(DING_TOKEN, DING_AES_KEY, DING_SUITE_KEY)
    assert (
        crypt.verify_and_decrypt(DING_SIGNATURE, DING_TIMESTAMP, DING_NONCE, DING_ENCRYPT) == DING_PLAINTEXT
    )
    assert crypt.encrypt(DING_PLAINTEXT, random16=b"hU3bEfGZZewzhG5a") == DING_ENCRYPT


def test_feishu_documented_example() -> None:
    assert feishu_decrypt(FEISHU_KEY, FEISHU_ENCRYPT) == "hello world"


# --- independent known answers (ciphertext built here, not by the module) ----------------------------


def test_encrypt_matches_an_independent_construction() -> None:
    message = "审批 sp_no=202401010001 状态 2".encode()
    random16 = bytes(range(16))
    expected = seal_directly(pad_to(frame(message, WECOM_CORP_ID.encode(), random16), 32))
    assert wecom().encrypt(message.decode(), random16=random16) == expected
    assert wecom().decrypt(expected) == message.decode()


def test_signature_is_sha1_of_the_sorted_values() -> None:
    values = [WECOM_TOKEN, "1700000000", "nonce-1", "ENCRYPTED+/="]
    assert wecom().signature("1700000000", "nonce-1", "ENCRYPTED+/=") == (
        hashlib.sha1("".join(sorted(values)).encode()).hexdigest()
    )


def test_feishu_matches_an_independent_construction() -> None:
    iv = bytes(range(16, 32))
    text = '{"type":"url_verification","challenge":"审批"}'
    padder = padding.PKCS7(128).padder()
    padded = padder.update(text.encode()) + padder.finalize()
    encryptor = Cipher(
        algorithms.AES(hashlib.sha256(FEISHU_KEY.encode()).digest()), modes.CBC(iv)
    ).encryptor()
    expected = base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode()
    assert feishu_encrypt(FEISHU_KEY, text, iv=iv) == expected
    assert feishu_decrypt(FEISHU_KEY, expected) == text


def test_feishu_signature() -> None:
    body = '{"encrypt":"审批"}'.encode()
    expected = hashlib.sha256(b"1700000000n0ncetest key" + body).hexdigest()
    assert feishu_signature("1700000000", "n0nce", "test key", body) == expected


# --- round trips ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message", ["", "x", "a" * 31, "b" * 32, "审批通过 ✓ " * 50, "<xml>" + "z" * 5000 + "</xml>"]
)
def test_round_trip(message: str) -> None:
    crypt = wecom()
    encrypt, signature = crypt.seal(message, timestamp="1700000000", nonce="abc")
    assert len(base64.b64decode(encrypt)) % 32 == 0
    assert crypt.verify_and_decrypt(signature, "1700000000", "abc", encrypt) == message


def test_round_trip_through_envelope() -> None:
    crypt = wecom()
    encrypt, signature = crypt.seal("<xml><Event>sys_approval_change</Event></xml>", timestamp="1", nonce="2")
    body = wecom_envelope(encrypt, to_user=WECOM_CORP_ID, agent_id="3010040")
    assert body.startswith(b"<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName>")
    assert b"<AgentID><![CDATA[3010040]]></AgentID>" in body
    assert crypt.verify_and_decrypt(signature, "1", "2", wecom_envelope_encrypt(body)).endswith("</xml>")


@pytest.mark.parametrize("text", ["", "hello", "x" * 16, '{"challenge":"审批"}' * 40])
def test_feishu_round_trip(text: str) -> None:
    assert feishu_decrypt("k3y", feishu_encrypt("k3y", text)) == text


# --- refusals -------------------------------------------------------------------------------------------

MESSAGE_40 = "m" * 40  # plaintext 16+4+40+18 = 78 bytes -> 96 with 18 bytes of padding


def sealed_40() -> bytearray:
    return bytearray(base64.b64decode(wecom().encrypt(MESSAGE_40, random16=b"Q" * 16)))


def test_wrong_signature() -> None:
    crypt = wecom()
    encrypt, signature = crypt.seal("hello", timestamp="1", nonce="2")
    wrong = ("0" if signature[0] != "0" else "1") + signature[1:]
    with pytest.raises(CallbackError) as excinfo:
        crypt.verify_and_decrypt(wrong, "1", "2", encrypt)
    assert reason_of(excinfo) == "signature mismatch"
    with pytest.raises(CallbackError, match="signature mismatch"):
        crypt.verify_and_decrypt(signature, "1", "3", encrypt)  # nonce changed
    with pytest.raises(CallbackError, match="signature mismatch"):
        crypt.verify_and_decrypt("签名", "1", "2", encrypt)  # non-ASCII input is refused, not a TypeError


def test_tampered_ciphertext_fails_the_signature_first() -> None:
    crypt = wecom()
    encrypt, signature = crypt.seal(MESSAGE_40, timestamp="1", nonce="2")
    raw = bytearray(base64.b64decode(encrypt))
    raw[40] ^= 1
    with pytest.raises(CallbackError) as excinfo:
        crypt.verify_and_decrypt(signature, "1", "2", base64.b64encode(raw).decode())
    assert reason_of(excinfo) == "signature mismatch"


def test_tampered_length_field() -> None:
    raw = sealed_40()
    raw[0] ^= 0x80  # CBC: flips the top bit of plaintext byte 16, the length field's first byte
    with pytest.raises(CallbackError) as excinfo:
        wecom().decrypt(base64.b64encode(raw).decode())
    assert reason_of(excinfo) == "length field out of range"


def test_tampered_receive_id() -> None:
    raw = sealed_40()
    raw[60 - 16] ^= 0x01  # flips plaintext byte 60, the receive id's first byte
    with pytest.raises(CallbackError) as excinfo:
        wecom().decrypt(base64.b64encode(raw).decode())
    assert reason_of(excinfo) == "receive id mismatch"


def test_tampered_padding() -> None:
    raw = sealed_40()
    raw[-17] ^= 0x01  # flips the last plaintext byte: pad 18 becomes 19
    with pytest.raises(CallbackError) as excinfo:
        wecom().decrypt(base64.b64encode(raw).decode())
    assert reason_of(excinfo) == "bad padding"


def test_wrong_receive_id() -> None:
    encrypt = wecom().encrypt("hello")
    other = CallbackCrypt(WECOM_TOKEN, WECOM_AES_KEY, "ww0000000000000000")
    with pytest.raises(CallbackError) as excinfo:
        other.decrypt(encrypt)
    assert reason_of(excinfo) == "receive id mismatch"


@pytest.mark.parametrize(
    "padded",
    [
        frame(b"m" * 40, WECOM_CORP_ID.encode()) + bytes(17) + b"\x12",  # pad value 18, pad bytes not all 18
        frame(b"m" * 40, WECOM_CORP_ID.encode()) + b"\x00" * 18,  # pad value 0
        frame(b"m" * 25, WECOM_CORP_ID.encode()) + b"\x21" * 33,  # pad value 33 > 32
    ],
    ids=["inconsistent", "zero", "33"],
)
def test_wrong_padding(padded: bytes) -> None:
    assert len(padded) % 32 == 0
    with pytest.raises(CallbackError) as excinfo:
        wecom().decrypt(seal_directly(padded))
    assert reason_of(excinfo) == "bad padding"


def test_message_padded_to_16_byte_blocks_is_refused() -> None:
    plaintext = frame(b"m" * 40, WECOM_CORP_ID.encode())  # 78 bytes
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    assert len(padded) == 80  # a whole number of AES blocks, but not of 32-byte blocks
    with pytest.raises(CallbackError) as excinfo:
        wecom().decrypt(seal_directly(padded))
    assert reason_of(excinfo) == "bad padding"


def test_length_field_beyond_plaintext() -> None:
    plaintext = b"R" * 16 + struct.pack(">I", 1000) + b"short" + WECOM_CORP_ID.encode()
    with pytest.raises(CallbackError) as excinfo:
        wecom().decrypt(seal_directly(pad_to(plaintext, 32)))
    assert reason_of(excinfo) == "length field out of range"


@pytest.mark.parametrize("text", ["not base64!", "abc", "YWJj\n", "éé=="])
def test_not_base64(text: str) -> None:
    with pytest.raises(CallbackError) as excinfo:
        wecom().decrypt(text)
    assert reason_of(excinfo) == "not base64"


def test_feishu_refusals() -> None:
    sealed = base64.b64decode(feishu_encrypt(FEISHU_KEY, "hello world", iv=b"I" * 16))
    for bad in (
        base64.b64encode(sealed[:-1]).decode(),  # not whole blocks
        base64.b64encode(sealed[:16]).decode(),  # IV only
        base64.b64encode(sealed[:-17] + bytes([sealed[-17] ^ 1]) + sealed[-16:]).decode(),  # pad 5 -> 4
    ):
        with pytest.raises(CallbackError) as excinfo:
            feishu_decrypt(FEISHU_KEY, bad)
        assert reason_of(excinfo) == "bad padding"
    with pytest.raises(CallbackError, match="not base64"):
        feishu_decrypt(FEISHU_KEY, "%%%")
    with pytest.raises(CallbackError):
        feishu_decrypt("another key", FEISHU_ENCRYPT)
    with pytest.raises(ValueError, match="Encrypt Key"):
        feishu_decrypt("", FEISHU_ENCRYPT)


# --- envelopes ----------------------------------------------------------------------------------------

EVIL_BODIES = {
    "billion laughs": b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
    b"<xml><Encrypt>&b;</Encrypt></xml>",
    "external entity": b'<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><Encrypt>&x;</Encrypt></xml>',
    "bare doctype": b"<!DOCTYPE xml><xml><Encrypt><![CDATA[abc]]></Encrypt></xml>",
    "external dtd": b'<!DOCTYPE xml SYSTEM "http://127.0.0.1:1/x.dtd"><xml><Encrypt>abc</Encrypt></xml>',
}


@pytest.mark.parametrize("body", EVIL_BODIES.values(), ids=EVIL_BODIES.keys())
def test_envelope_with_doctype_is_refused(body: bytes) -> None:
    with pytest.raises(CallbackError) as excinfo:
        wecom_envelope_encrypt(body)
    assert reason_of(excinfo) == "not an XML envelope"
    assert "DOCTYPE" in str(excinfo.value)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not an XML envelope"),
        (b"{json: 1}", "not an XML envelope"),
        (b"<xml><Encrypt>abc</Encrypt>", "not an XML envelope"),
        (b"<root><Encrypt>abc</Encrypt></root>", "not an XML envelope"),
        (b"<xml><ToUserName>x</ToUserName></xml>", "no Encrypt element"),
        (b"<xml><Encrypt>  </Encrypt></xml>", "no Encrypt element"),
        (b"<xml><Other><Encrypt>abc</Encrypt></Other></xml>", "no Encrypt element"),
    ],
)
def test_bad_envelopes(body: bytes, reason: str) -> None:
    with pytest.raises(CallbackError) as excinfo:
        wecom_envelope_encrypt(body)
    assert reason_of(excinfo) == reason


def test_envelope_values_cannot_inject_elements() -> None:
    body = wecom_envelope("abc", to_user="x]]><Encrypt>evil</Encrypt><![CDATA[", agent_id="1")
    assert wecom_envelope_encrypt(body) == "abc"


# --- settings and secrecy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [WECOM_AES_KEY[:-1], WECOM_AES_KEY + "A", "!" * 43, "", "é" * 43],
    ids=["42 chars", "44 chars", "not base64", "empty", "non-ascii"],
)
def test_bad_encoding_aes_key(key: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        CallbackCrypt(WECOM_TOKEN, key, WECOM_CORP_ID)
    assert "EncodingAESKey" in str(excinfo.value)
    if key:
        assert key not in str(excinfo.value)


def test_empty_token_or_receive_id() -> None:
    with pytest.raises(ValueError, match="token"):
        CallbackCrypt("", WECOM_AES_KEY, WECOM_CORP_ID)
    with pytest.raises(ValueError, match="receive id"):
        CallbackCrypt(WECOM_TOKEN, WECOM_AES_KEY, "")


def test_errors_and_repr_never_carry_secrets() -> None:
    crypt = wecom()
    encrypt, signature = crypt.seal("secret approval text", timestamp="1", nonce="2")
    messages = [repr(crypt)]
    attempts = [
        lambda: crypt.verify_and_decrypt("0" * 40, "1", "2", encrypt),
        lambda: CallbackCrypt(WECOM_TOKEN, WECOM_AES_KEY, "other").decrypt(encrypt),
        lambda: crypt.decrypt("!!"),
        lambda: crypt.decrypt(base64.b64encode(bytes(32)).decode()),
    ]
    for attempt in attempts:
        with pytest.raises(CallbackError) as excinfo:
            attempt()
        messages.append(str(excinfo.value))
    for message in messages:
        for secret in (
            WECOM_TOKEN,
            WECOM_AES_KEY,
            base64.b64encode(raw_key()).decode(),
            "secret approval text",
        ):
            assert secret not in message
