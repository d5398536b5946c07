"""Was a signed OFD changed after it was signed? The digests its signatures cover (真实性, 电子签名).

An OFD 电子签章 (GB/T 33190 §18) lists, in each ``Signature.xml``, the package parts it protects:
``SignedInfo/References`` with a ``CheckMethod`` and, per part, a ``Reference FileRef`` with the
base64 ``CheckValue`` of that part's bytes. The signature value itself (``SignedValue``, an SM2
signature in a GM/T 0031 / GB/T 38540 structure) signs that list. If a protected part's bytes no
longer give its check value, the file was altered after signing (a changed amount on a page, say),
whatever the signature value says. That is what is checked here, from the bytes alone.

What is not checked here: the SM2 signature value and the seal's certificate chain (who signed, and
whether their certificate was valid then). That needs the signer's trust anchors; an e-invoice's are
the tax authority's. So an intact result means "unchanged since signing", not "signed by the tax
bureau".
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from archive_sink.ofd import OfdPackage, child_text, local

# CheckMethod values seen in the field (OIDs and names), to hashlib names.
_METHODS = {
    "1.2.156.10197.1.401": "sm3",
    "sm3": "sm3",
    "1.3.14.3.2.26": "sha1",
    "sha1": "sha1",
    "sha-1": "sha1",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "sha256": "sha256",
    "sha-256": "sha256",
    "1.2.840.113549.2.5": "md5",
    "md5": "md5",
}
# Without a CheckMethod the digest's length narrows it down; a 32-byte value may be SM3 or SHA-256.
_BY_LENGTH = {16: ("md5",), 20: ("sha1",), 32: ("sm3", "sha256")}


@dataclass(frozen=True)
class SignatureCheck:
    signature: str  # the Signature.xml part
    parts: int  # protected parts whose digest was compared
    changed: tuple[str, ...]  # what differs: "part (SM3 differs)", "part (missing)"
    unchecked: str | None = None  # why this signature's digests could not be compared

    def described(self) -> str:
        """The check as metadata.xml records it (业务行为 检测)."""
        if self.unchecked:
            return f"签章 {self.signature} 未能核对: {self.unchecked}"
        return f"签章 {self.signature} 保护的 {self.parts} 个部件自签署后未改动 (签名值与印章证书未验证)"


def check_signatures(data: bytes | OfdPackage) -> list[SignatureCheck]:
    """One result per signature the OFD carries (none for an unsigned OFD). Raises Unreadable when the
    package or its signature parts cannot be read."""
    package = data if isinstance(data, OfdPackage) else OfdPackage(data)
    checks = []
    for body in (n for n in package.root if local(n.tag) == "DocBody"):
        listed = child_text(body, "Signatures")
        if not listed:
            continue
        where = package.resolve(listed, "OFD.xml")
        if where is None:
            checks.append(SignatureCheck(listed, 0, (), f"the signature list {listed} is not in the package"))
            continue
        for entry in (n for n in package.xml(where) if local(n.tag) == "Signature"):
            base = entry.get("BaseLoc", "")
            signature = package.resolve(base, where)
            if signature is None:
                checks.append(SignatureCheck(base, 0, (), f"the signature {base} is not in the package"))
                continue
            checks.append(_check(package, signature))
    return checks


def _check(package: OfdPackage, signature: str) -> SignatureCheck:
    info = next((n for n in package.xml(signature) if local(n.tag) == "SignedInfo"), None)
    references = next((n for n in info if local(n.tag) == "References"), None) if info is not None else None
    if references is None:
        return SignatureCheck(signature, 0, (), "it lists no References")
    method = (references.get("CheckMethod") or "").strip()
    named = _METHODS.get(method.lower()) if method else None
    if method and named is None:
        return SignatureCheck(signature, 0, (), f"CheckMethod {method!r} is not one this check knows")
    parts, changed = 0, []
    for ref in (n for n in references if local(n.tag) == "Reference"):
        location = ref.get("FileRef", "")
        try:
            expected = base64.b64decode(child_text(ref, "CheckValue") or "", validate=True)
        except binascii.Error:
            changed.append(f"{location} (its CheckValue is not base64)")
            continue
        part = package.resolve(location, signature)
        if part is None:
            changed.append(f"{location} (missing)")
            continue
        candidates = (named,) if named else _BY_LENGTH.get(len(expected), ())
        if not candidates:
            changed.append(f"{location} (a {len(expected)}-byte CheckValue fits no digest)")
            continue
        parts += 1
        if expected not in package.digests(part, candidates).values():
            changed.append(f"{part} ({'/'.join(c.upper() for c in candidates)} differs)")
    return SignatureCheck(signature, parts, tuple(changed))


def altered_after_signing(data: bytes) -> str | None:
    """Why this OFD is not what was signed, or None (unsigned, or every protected part unchanged)."""
    return altered(check_signatures(data))


def altered(checks: list[SignatureCheck] | tuple[SignatureCheck, ...]) -> str | None:
    found = [c for c in checks if c.changed]
    if not found:
        return None
    return "; ".join(f"signature {c.signature} covers {', '.join(c.changed)}" for c in found)
