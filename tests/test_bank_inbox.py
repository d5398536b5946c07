"""The bank statement connector end to end: inbox → packages (original byte-for-byte) → catalog entries.

Real files only: peer statements from ../shared/peers (copied into a temporary inbox at test time,
never into the repository), our fixtures, and bad files made here. Runs the pipeline on both
catalog dialects and the generated Airflow DAG for real.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import defusedxml.ElementTree as DET
import pytest
from sqlalchemy import func, select

from archive_hub.catalog import Catalog
from archive_hub.catalog.events import verify_chain
from archive_hub.catalog.models import (
    ArchiveRecordRow,
    BankStatementEntryRow,
    BankStatementRow,
    EventRow,
    PackageRow,
    QuarantineRow,
)
from archive_hub.pipeline import run_sync
from archive_hub.pipeline.context import RunContext
from archive_hub.pipeline.redrive import redrive
from archive_hub.sources import find_source
from archive_hub.verification import verify_archive
from connectors.bank.inbox import BankInboxStream, stream_from_config
from connectors.bank.statement_catalog import SKIP_EVENT
from connectors.errors import ConfigError
from connectors.testing import read_all, stream_test_class
from tests.bank.test_bad_input import BILLION_LAUGHS, GOOD_MT940, camt_doc
from tests.conftest import Hub

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO / ".." / "shared" / "peers"
FIXTURES = REPO / "tests" / "bank" / "fixtures"
NS = {"m": "urn:archive-hub:da-t-94:1"}

GOOD_PEERS = [
    "mt940/mBank/mt940.sta",  # end-of-day statement repeating the three bookings of mt942.sta
    "mt940/mBank/mt942.sta",
    "mt940/sberbank/171011_01234945.sta",
    "mt940/cmxl/mt940.sta",  # three statements (DEM, EUR, PLN) in one file
    "camt/camt053.v2.multi.statement.xml",
    "camt/camt052.v2.xml",
    "camt/camt054.v2.xml",
]
GOOD_FIXTURES = sorted(p.name for p in FIXTURES.iterdir() if p.is_file())
BAD = {
    "cut.xml": camt_doc()[: len(camt_doc()) // 2],
    "bomb.xml": camt_doc(prolog=BILLION_LAUGHS, text="&lol9;"),
    "unbalanced.sta": GOOD_MT940.replace(b":62F:C240102EUR950,25", b":62F:C240102EUR960,25"),
    "currency.sta": GOOD_MT940.replace(b"EUR", b"EUX"),
}
EXPECTED_REASON = {
    "cut.xml": "not well-formed",
    "bomb.xml": "<!DOCTYPE",
    "unbalanced.sta": "does not add up: opening 1000.00 EUR + 2 entries -49.75 EUR = 950.25 EUR, but the "
    "closing balance is 960.25 EUR: off by 10.00 EUR.",
    "currency.sta": "EUX",
}


def settle(path: Path, minutes: int = 10) -> None:
    """Files arrived a while ago (the source config waits a few seconds for uploads to finish)."""
    old = (dt.datetime.now() - dt.timedelta(minutes=minutes)).timestamp()
    os.utime(path, (old, old))


def drop(inbox: Path, name: str, data: bytes) -> Path:
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    path.write_bytes(data)
    settle(path)
    return path


def drop_peer(inbox: Path, rel: str, name: str | None = None) -> Path:
    return drop(inbox, name or rel.replace("/", "_"), (PEERS / rel).read_bytes())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fill_inbox(hub: Hub) -> dict[str, bytes]:
    inbox = hub.home / "bank_inbox"
    dropped: dict[str, bytes] = {}
    for rel in GOOD_PEERS:
        path = drop_peer(inbox, rel)
        dropped[path.name] = path.read_bytes()
    for name in GOOD_FIXTURES:
        dropped[name] = drop(inbox, name, (FIXTURES / name).read_bytes()).read_bytes()
    # Not statement files: a dotfile and a partial upload are ignored.
    drop(inbox, ".DS_Store", b"\x00\x01")
    drop(inbox, "upload.sta.part", GOOD_MT940[:50])
    return dropped


def package_dir(hub: Hub, path: str) -> Path:
    return hub.settings.archive_root / path


def test_inbox_archives_good_files_quarantines_bad_ones_and_reimports_nothing(
    hub: Hub, catalog_url: str
) -> None:
    good = fill_inbox(hub)
    inbox = hub.home / "bank_inbox"
    for name, data in BAD.items():
        drop(inbox, name, data)

    summary = run_sync("bank_inbox", "run-1")
    assert summary["status"] == "success", summary
    assert summary["read"] == len(good) + len(BAD)
    assert summary["archived"] == len(good) and summary["quarantined"] == len(BAD)

    catalog = Catalog(catalog_url)
    with catalog.reading() as s:
        records = {r.business_id: r for r in s.execute(select(ArchiveRecordRow)).scalars()}
        packages = {p.record_id: p for p in s.execute(select(PackageRow)).scalars()}
        items = list(s.execute(select(QuarantineRow)).scalars())
        statements = list(s.execute(select(BankStatementRow)).scalars())
        entries = list(s.execute(select(BankStatementEntryRow)).scalars())
    # One package per good file, holding the original byte-for-byte, filed as 其他/银行对账单 for 10 years.
    assert set(records) == {sha256(d) for d in good.values()}
    for name, data in good.items():
        record = records[sha256(data)]
        assert record.category == "QT" and record.retention == "D10"
        assert record.archival_code.startswith(f"J001-KJ·{record.fiscal_year}-D10-QT-")
        folder = package_dir(hub, packages[record.id].path)
        originals = sorted((folder / "data" / "attachments").glob("01-*"))
        assert len(originals) == 1 and sha256(originals[0].read_bytes()) == sha256(data), name
        parsed = json.loads(next((folder / "data" / "attachments").glob("02-statement.json")).read_text())
        assert parsed["sha256"] == sha256(data) and parsed["statements"]
        meta = DET.parse(folder / "data" / "metadata.xml").getroot()
        assert meta.findtext(".//m:会计资料形式", namespaces=NS) == "其他"
        assert meta.findtext(".//m:会计资料类别", namespaces=NS) == "银行对账单"
        assert meta.findtext(".//m:保管期限", namespaces=NS) == "10年"
        assert "银行对账单" in meta.findtext(".//m:题名", namespaces=NS)  # type: ignore[operator]

    # Each bad file: quarantined with its one-line reason, its bytes kept under quarantine/.
    assert {i.business_id for i in items} == {sha256(d) for d in BAD.values()}
    by_sha = {sha256(d): n for n, d in BAD.items()}
    for item in items:
        name = by_sha[item.business_id]
        assert item.stage == "extract" and item.status == "open"
        assert "\n" not in item.reason and item.reason.startswith(f"{name}: ")
        assert EXPECTED_REASON[name] in item.reason, item.reason
        kept = hub.home / "quarantine" / "bank_inbox" / f"{item.business_id}-{name}"
        assert kept.read_bytes() == BAD[name] and str(kept) in item.reason
        assert json.loads(item.raw_payload)["quarantined_copy"] == str(kept)

    # Statements and booked entries for reconciliation; mt940.sta repeats the bookings of mt942.sta.
    assert len({s.fingerprint for s in statements}) == len(statements)
    mbank = [e for e in entries if e.account == "PL29114010810000267002001002"]
    assert len(mbank) == 3 and sorted(str(e.amount) for e in mbank) == ["0.0100"] * 3
    assert Counter((e.account, e.entry_hash, e.occurrence) for e in entries).most_common(1)[0][1] == 1
    icbc = [e for e in entries if e.account == "1202021209900123456"]
    assert icbc and all(e.archival_code == records[sha256(good["icbc_gbk.csv"])].archival_code for e in icbc)

    report = verify_archive(catalog, hub.settings.archive_root, record_event=False)
    assert report.ok, report.problems

    # The same file dropped again under another name, and the same statement re-exported as another
    # camt version: nothing new is archived, and the bad files are not re-parsed until re-driven.
    shutil.copy(inbox / "mt940_mBank_mt940.sta", inbox / "copy-of-statement.txt")
    settle(inbox / "copy-of-statement.txt")
    drop_peer(inbox, "camt/camt052.v1.xml")  # same report as camt052.v2.xml, older message version
    second = run_sync("bank_inbox", "run-2")
    assert second["status"] == "success"
    assert second["archived"] == 0 and second["new_versions"] == 0 and second["quarantined"] == 0
    with catalog.reading() as s:
        assert s.execute(select(func.count(ArchiveRecordRow.id))).scalar_one() == len(good)
        assert s.execute(select(func.count(PackageRow.id))).scalar_one() == len(good)
        assert s.execute(select(func.count(BankStatementEntryRow.id))).scalar_one() == len(entries)
        skipped = [
            json.loads(e.detail)
            for e in s.execute(select(EventRow).where(EventRow.kind == SKIP_EVENT)).scalars()
        ]
        assert [d["file"] for d in skipped] == ["camt_camt052.v1.xml"]
        assert skipped[0]["archived_as"] == [records[sha256(good["camt_camt052.v2.xml"])].archival_code]
        assert verify_chain(s).ok
    catalog.dispose()


def test_overlapping_intraday_reports_store_each_booking_once(hub: Hub) -> None:
    inbox = hub.home / "bank_inbox"
    # MT942: the bank's first report of the day has two bookings, the later one all three.
    full = (PEERS / "mt940/mBank/mt942.sta").read_bytes()
    head, _, tail = full.partition(b":61:1701190119CN0,01NTRFNONREF//MB170119012121")
    early = (
        head.replace(b":20:ST170119CYC/0001", b":20:ST170119CYC/0000") + b":90D:0PLN0,00\n:90C:2PLN0,02\n-\n"
    )
    assert tail and early != full
    drop(inbox, "intraday-1000.sta", early)
    drop(inbox, "intraday-1800.sta", full)
    # camt.052: a second report repeats the first report's booking and adds one.
    report = (PEERS / "camt/camt052.v2.xml").read_text()
    start, end = report.index("<Ntry>"), report.index("</Ntry>") + len("</Ntry>")
    extra = report[start:end].replace('<Amt Ccy="SEK">200000</Amt>', '<Amt Ccy="SEK">1500</Amt>')
    extra = extra.replace("AAAASESS-FP-ACCR-01", "AAAASESS-FP-ACCR-02")
    later = report[:end] + extra + report[end:]
    later = later.replace("<Id>AAAASESS-FP-ACCR001</Id>", "<Id>AAAASESS-FP-ACCR002</Id>", 1)
    drop(inbox, "camt052-1.xml", report.encode())
    drop(inbox, "camt052-2.xml", later.encode())

    summary = run_sync("bank_inbox", "run-1")
    assert summary["archived"] == 4 and summary["quarantined"] == 0, summary
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        entries = list(s.execute(select(BankStatementEntryRow)).scalars())
        statements = s.execute(select(func.count(BankStatementRow.id))).scalar_one()
    catalog.dispose()
    assert statements == 4
    mbank = sorted(e.bank_reference or "" for e in entries if e.account.startswith("PL"))
    assert mbank == ["MB170119012058", "MB170119012085", "MB170119012121"]
    camt = sorted(str(e.amount) for e in entries if e.account.startswith("CH"))
    assert camt == ["-1500.0000", "-200000.0000"]


def test_refused_file_is_not_reread_but_can_be_redriven(hub: Hub) -> None:
    inbox = hub.home / "bank_inbox"
    drop(inbox, "unbalanced.sta", BAD["unbalanced.sta"])
    drop_peer(inbox, "mt940/sberbank/171011_01234945.sta")
    first = run_sync("bank_inbox", "run-1")
    assert first["archived"] == 1 and first["quarantined"] == 1
    # Re-runs inside the look-back window do not count the same refusal again (no threshold failure).
    again = run_sync("bank_inbox", "run-2")
    assert again["read"] == 0 and again["status"] == "success"
    # The operator re-drives it (after fixing the cause): the original is read from the inbox again.
    (inbox / "unbalanced.sta").unlink()  # even when gone from the inbox, the quarantine copy remains
    ctx = RunContext.open("bank_inbox", "retry-1")
    try:
        result = redrive(ctx)
    finally:
        ctx.close()
    assert result["retried"] == 1 and result["still_quarantined"] == 1
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        (item,) = s.execute(select(QuarantineRow)).scalars()
    catalog.dispose()
    assert item.attempts == 2 and "off by 10.00 EUR" in item.reason


def test_config_errors_name_the_setting(hub: Hub, tmp_path: Path) -> None:
    config = find_source("bank_inbox", hub.settings)
    with pytest.raises(ConfigError, match=r"setting 'connection.inbox': is required"):
        stream_from_config(config.model_copy(update={"connection": {}}))
    with pytest.raises(ConfigError, match=r"setting 'connection.folder': unknown setting"):
        stream_from_config(config.model_copy(update={"connection": {"folder": "x"}}))
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    stream = stream_from_config(config.model_copy(update={"connection": {"inbox": str(not_a_dir)}}))
    with pytest.raises(ConfigError, match=r"connection.inbox': .* is not a directory"):
        stream.check()
    stream = stream_from_config(
        config.model_copy(update={"connection": {"inbox": str(tmp_path / "in"), "layout": "nosuchbank"}})
    )
    with pytest.raises(ConfigError, match=r"connection.layout': .*no such layout"):
        stream.check()


def test_a_file_still_being_written_waits_for_the_next_run(tmp_path: Path) -> None:
    stream = BankInboxStream(
        "t", tmp_path / "in", work_dir=tmp_path / "w", quarantine_dir=tmp_path / "q", settle_seconds=60
    )
    stream.check()
    (tmp_path / "in" / "fresh.sta").write_bytes(GOOD_MT940)
    assert read_all(stream) == []
    settle(tmp_path / "in" / "fresh.sta")
    assert [r.data["file"] for r in read_all(stream)] == ["fresh.sta"]


def inbox_stream(tmp_path: Path) -> BankInboxStream:
    inbox = tmp_path / "inbox"
    if not inbox.exists():
        for rel in GOOD_PEERS + ["mt940/jejik/rabobank-iban.sta", "camt/camt053.v4.xml"]:
            drop_peer(inbox, rel)
        for name in GOOD_FIXTURES:
            drop(inbox, name, (FIXTURES / name).read_bytes())
    return BankInboxStream(
        "bank_test",
        inbox,
        work_dir=tmp_path / "work",
        quarantine_dir=tmp_path / "quarantine",
        system="bank-files",
    )


TestBankInboxStream = stream_test_class(inbox_stream)


def test_dag_runs_for_real(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from archive_hub.airflow_runner import run_airflow_dag
    from tests.test_dag import airflow_db

    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    inbox = hub.home / "bank_inbox"
    for rel in ("mt940/mBank/mt940.sta", "camt/camt053.v2.multi.statement.xml"):
        drop_peer(inbox, rel)
    drop(inbox, "bomb.xml", BAD["bomb.xml"])
    log = hub.home / "dag.log"
    rc = run_airflow_dag("archive_bank_inbox", hub.settings, log)
    assert rc == 0, log.read_text()[-3000:]
    with airflow_db(hub) as db:
        runs = db.execute("select state from dag_run where dag_id='archive_bank_inbox'").fetchall()
        tasks = dict(
            db.execute(
                "select task_id, state from task_instance where dag_id='archive_bank_inbox'"
            ).fetchall()
        )
    assert runs == [("success",)]
    assert tasks == {t: "success" for t in ("extract", "map", "validate", "archive", "finalize")}
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        assert s.execute(select(func.count(ArchiveRecordRow.id))).scalar_one() == 2
        assert s.execute(select(func.count(BankStatementEntryRow.id))).scalar_one() == 5
        (item,) = s.execute(select(QuarantineRow)).scalars()
    catalog.dispose()
    assert item.reason.startswith("bomb.xml: line 2: XML contains a <!DOCTYPE declaration")


# --- SFTP drop: a real SFTP server (asyncssh) on loopback ----------------------------------------------
SFTP_PASSWORD = "pw-Do-Not-Leak-7f3a"


class SftpPeer:
    """asyncssh's SSH/SFTP server in a background thread, chrooted to `root`, password login."""

    def __init__(self, root: Path) -> None:
        import asyncio
        import threading

        import asyncssh

        class Server(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                return username == "bank" and password == SFTP_PASSWORD

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        key = asyncssh.generate_private_key("ssh-ed25519")

        async def start():  # type: ignore[no-untyped-def]
            return await asyncssh.create_server(
                Server,
                "127.0.0.1",
                0,
                server_host_keys=[key],
                sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root).encode()),
            )

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)
        self.port = self.server.sockets[0].getsockname()[1]
        self.known_hosts_line = f"[127.0.0.1]:{self.port} {key.export_public_key().decode().strip()}\n"

    def close(self) -> None:
        import asyncio

        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def sftp_peer(tmp_path: Path):  # type: ignore[no-untyped-def]
    root = tmp_path / "sftp-root"
    (root / "outbox").mkdir(parents=True)
    peer = SftpPeer(root)
    yield peer, root / "outbox"
    peer.close()


def sftp_source(hub: Hub, monkeypatch: pytest.MonkeyPatch, port: int, known_hosts: Path) -> None:
    """A source file of its own (kind bank.inbox with `sftp:`), in a temporary sources folder."""
    sources = hub.home / "sources"
    sources.mkdir()
    doc = (
        (REPO / "config" / "sources" / "bank_inbox.yaml")
        .read_text()
        .replace("id: bank_inbox", "id: bank_sftp")
    )
    doc = doc.replace(
        'inbox: "${ARCHIVE_HUB_HOME}/bank_inbox"',
        'inbox: "${ARCHIVE_HUB_HOME}/bank_sftp_inbox"\n'
        f"  sftp: {{host: 127.0.0.1, port: {port}, username: bank, password: '${{BANK_SFTP_PASSWORD}}',"
        f" path: /outbox, known_hosts: '{known_hosts}'}}",
    )
    (sources / "bank_sftp.yaml").write_text(doc)
    monkeypatch.setenv("ARCHIVE_HUB_SOURCES_DIR", str(sources))
    hub.settings = hub.settings.__class__.from_env()


def test_sftp_drop_is_fetched_into_the_inbox_and_archived(hub: Hub, sftp_peer, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    peer, outbox = sftp_peer
    known_hosts = hub.home / "known_hosts"
    known_hosts.write_text(peer.known_hosts_line)
    sftp_source(hub, monkeypatch, peer.port, known_hosts)
    monkeypatch.setenv("BANK_SFTP_PASSWORD", SFTP_PASSWORD)
    for rel in ("mt940/mBank/mt940.sta", "camt/camt053.v2.multi.statement.xml"):
        drop_peer(outbox, rel)
    drop(outbox, "bomb.xml", BAD["bomb.xml"])
    drop(outbox, "upload.sta.part", GOOD_MT940[:40])  # the bank is still uploading this one

    summary = run_sync("bank_sftp", "run-1")
    assert summary["archived"] == 2 and summary["quarantined"] == 1 and summary["status"] == "success"
    inbox = hub.home / "bank_sftp_inbox"
    assert sorted(p.name for p in inbox.iterdir()) == sorted(
        ["bomb.xml", "camt_camt053.v2.multi.statement.xml", "mt940_mBank_mt940.sta"]
    )
    for p in inbox.iterdir():
        assert p.read_bytes() == (outbox / p.name).read_bytes()

    # Next run: nothing new on the server, nothing new in the archive.
    again = run_sync("bank_sftp", "run-2")
    assert again["read"] == 0 and again["archived"] == 0
    # A new file on the server arrives on the next run.
    drop_peer(outbox, "mt940/sberbank/171011_01234945.sta")
    third = run_sync("bank_sftp", "run-3")
    assert third["archived"] == 1

    # The password is nowhere: not in run files, packages, quarantine or the catalog.
    for path in hub.home.rglob("*"):
        if path.is_file():
            assert SFTP_PASSWORD.encode() not in path.read_bytes(), path


def test_sftp_wrong_password_and_unknown_host_key_fail_naming_the_setting(  # type: ignore[no-untyped-def]
    hub: Hub, sftp_peer, monkeypatch
) -> None:
    peer, _ = sftp_peer
    known_hosts = hub.home / "known_hosts"
    known_hosts.write_text(peer.known_hosts_line)
    sftp_source(hub, monkeypatch, peer.port, known_hosts)
    monkeypatch.setenv("BANK_SFTP_PASSWORD", "wrong-" + SFTP_PASSWORD)
    stream = stream_from_config(find_source("bank_sftp", hub.settings))
    with pytest.raises(
        ConfigError, match=r"connection.sftp.password': SFTP login refused for bank@127.0.0.1"
    ) as info:
        stream.check()
    assert SFTP_PASSWORD not in str(info.value) and SFTP_PASSWORD not in repr(stream)

    known_hosts.write_text(peer.known_hosts_line.replace("[127.0.0.1]", "[127.0.0.2]"))
    monkeypatch.setenv("BANK_SFTP_PASSWORD", SFTP_PASSWORD)
    stream = stream_from_config(find_source("bank_sftp", hub.settings))
    with pytest.raises(ConfigError, match=r"connection.sftp.known_hosts': host key of 127.0.0.1"):
        stream.check()
