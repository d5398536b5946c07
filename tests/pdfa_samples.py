"""Small PDFs that are, or only claim to be, PDF/A: fixtures for the PDF/A validation tests.

Built by hand so that what makes one conform is visible: an XMP packet naming the flavour, a file ID,
and only a calibrated colour space (CalRGB), so no font and no output intent is needed. `calibrated=False`
paints in DeviceRGB without an output intent, which ISO 19005 forbids (PDF/A-1 clause 6.2.3.3).
"""

from __future__ import annotations

from connectors.erp.sample_erp.pdf_bytes import assemble_pdf


def pdf_claiming_pdfa(part: str = "1", conformance: str = "B", *, calibrated: bool = True) -> bytes:
    xmp = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/">'
        f"<pdfaid:part>{part}</pdfaid:part><pdfaid:conformance>{conformance}</pdfaid:conformance>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    ).encode()
    paint = b"/CS0 cs 0.1 0.3 0.8 sc" if calibrated else b"0.1 0.3 0.8 rg"
    content = paint + b"\n50 50 200 100 re f\n"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R /Metadata 4 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 5 0 R"
        b" /Resources << /ColorSpace << /CS0 [/CalRGB << /WhitePoint [0.9505 1 1.089] >>] >> >> >>",
        b"<< /Type /Metadata /Subtype /XML /Length %d >>\nstream\n" % len(xmp) + xmp + b"\nendstream",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    return assemble_pdf(objects, file_id=True)
