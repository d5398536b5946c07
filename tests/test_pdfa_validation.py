"""PDF/A claims checked with the real veraPDF (fetched from Maven Central by scripts/verapdf.sh)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import pytest

from archive_hub.pipeline import run_sync
from archive_sink import pdfa_validation
from archive_sink.pdfa_validation import VeraPdf
from tests.conftest import Hub, seed, service_script
from tests.pdfa_samples import pdf_claiming_pdfa
from tests.test_cli import cli

GOOD_1B = pdf_claiming_pdfa("1", "B")
GOOD_2B = pdf_claiming_pdfa("2", "B")
FALSE_1B = pdf_claiming_pdfa("1", "B", calibrated=False)


@pytest.fixture(scope="session")
def verapdf() -> Iterator[str]:
    # A first run fetches about 19 MB of jars (and Java or Maven if missing).
    yield service_script("verapdf.sh", "install")


def test_verapdf_checks_each_file_against_the_flavour_it_claims(
    verapdf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pdfa_validation, "BATCH", 2)  # three JVMs for five files: the order must hold
    validator = VeraPdf(verapdf)
    good, false, good2, truncated, good_again = validator.validate(
        [GOOD_1B, FALSE_1B, GOOD_2B, GOOD_1B[:300], GOOD_1B]
    )
    assert validator.version == "veraPDF 1.28.2"
    assert (good.compliant, good.profile, good.failed) == (True, "PDF/A-1B validation profile", ())
    assert (good2.compliant, good2.profile) == (True, "PDF/A-2B validation profile")
    assert good_again == good
    assert not false.compliant and false.error is None
    assert [(r.specification, r.clause) for r in false.failed] == [("ISO 19005-1:2005", "6.2.3.3")]
    assert "DeviceRGB" in false.failed[0].description and false.failed[0].checks == 2
    assert not truncated.compliant and "startxref" in (truncated.error or "")
    assert truncated.summary().startswith("not validated: ")


def test_formats_validate_counts_only_conformant_pdfa_as_long_term(hub: Hub, verapdf: str) -> None:
    seed(hub, vouchers=40, bad_records=False, attachment_every=1)
    with sqlite3.connect(hub.erp_url.removeprefix("sqlite:///")) as erp:
        rows = erp.execute(
            "select id, storage_path from erp_attachment where mime_type = 'application/pdf' order by id limit 3"
        ).fetchall()
        for (att_id, rel), data in zip(rows, (GOOD_1B, FALSE_1B, GOOD_2B), strict=True):
            (hub.home / "sample_erp" / "attachments" / rel).write_bytes(data)
            erp.execute("update erp_attachment set size = ? where id = ?", (len(data), att_id))
    run_sync("erp_sample", "run-1")

    claimed = json.loads(cli("formats", "--json").stdout)  # the claims alone: all three count
    assert {f["label"]: f["files"] for f in claimed["formats"]}["PDF/A-1b"] == 2

    refused = cli("formats", "--validate")
    assert refused.returncode == 2 and "ARCHIVE_HUB_VERAPDF" in refused.stderr
    broken = cli("formats", "--validate", env={"ARCHIVE_HUB_VERAPDF": str(hub.home / "no-verapdf")})
    assert broken.returncode == 2 and "veraPDF not found" in broken.stderr

    env = {"ARCHIVE_HUB_VERAPDF": verapdf}
    out = cli("formats", "--validate", "--json", env=env)
    assert out.returncode == 4, out.stderr  # a false claim is a finding
    report = json.loads(out.stdout)
    counts = {f["label"]: (f["files"], f["long_term"]) for f in report["formats"]}
    assert counts["PDF/A-1b (veraPDF: conformant)"] == (1, True)
    assert counts["PDF/A-2b (veraPDF: conformant)"] == (1, True)
    assert counts["PDF/A-1b claimed, not conformant"] == (1, False)
    assert "PDF/A-1b" not in counts and report["pdfa_validated_with"] == "veraPDF 1.28.2"
    false = [v for v in report["pdfa_verdicts"] if not v["compliant"]]
    assert len(report["pdfa_verdicts"]) == 3 and len(false) == 1
    assert [r["clause"] for r in false[0]["failed_rules"]] == ["6.2.3.3"]
    assert {"archival_code": false[0]["archival_code"], "version": 1, "path": false[0]["path"]} | {
        "format": "PDF/A-1b claimed, not conformant"
    } in report["to_convert"]

    shown = cli("formats", "--validate", env=env)
    assert shown.returncode == 4
    assert "PDF/A claims checked with veraPDF 1.28.2: 3, 1 not conformant" in shown.stdout
    assert (
        f"{false[0]['archival_code']} v1  {false[0]['path']}  claims PDF/A-1b, not conformant" in shown.stdout
    )
    assert "ISO 19005-1:2005 6.2.3.3" in shown.stdout
