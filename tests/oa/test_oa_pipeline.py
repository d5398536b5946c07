"""OA approvals end to end: WeCom (a real peer process) → callbacks to the real receiver process → the
approval inbox → archive run → `oa reconcile` against the archived sample books, then the DAG under Airflow.

The sample approvals are written from the seeded sample ERP with one exception of each kind
(connectors/oa/sample_wecom.py); the test checks the reconciliation finds exactly those.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select

from archive_hub.catalog import Catalog
from archive_hub.catalog.events import verify_chain
from archive_hub.catalog.models import ArchiveRecordRow, EventRow, QuarantineRow
from archive_hub.demo_oa import deliver_callbacks, running_wecom, sample_dir, wecom_env
from archive_hub.pipeline.runner import run_sync
from connectors.erp.sample_erp.seed import touch_voucher
from connectors.oa.sample_wecom import write_sample_wecom
from tests.conftest import Hub, seed
from tests.test_cli import cli


def _codes(catalog: Catalog, source_id: str) -> dict[str, str]:
    with catalog.reading() as s:
        return dict(
            s.execute(
                select(ArchiveRecordRow.business_id, ArchiveRecordRow.archival_code).where(
                    ArchiveRecordRow.source_id == source_id
                )
            ).all()
        )


def test_approvals_archived_from_callbacks_and_paired_with_their_vouchers(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(hub, vouchers=600)
    sample = write_sample_wecom(hub.erp_url, sample_dir(hub.settings))
    assert sample.approvals > 40, sample  # enough for one exception of each kind
    for name in ("WECOM_CORP_ID", "WECOM_SECRET", "WECOM_CALLBACK_TOKEN", "WECOM_CALLBACK_AES_KEY"):
        monkeypatch.delenv(name, raising=False)
    env = wecom_env(hub.settings)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WECOM_API_URL", raising=False)

    assert run_sync("erp_sample", "erp-1")["status"] == "success"
    with running_wecom(hub.settings) as (peer_url, receiver_url):
        monkeypatch.setenv("WECOM_API_URL", peer_url)
        delivered = deliver_callbacks(hub.settings, receiver_url, "wecom_approvals")
        assert delivered.sent == 2 * sample.approvals and delivered.kept == delivered.sent
        assert delivered.refused_forgery
        first = run_sync("wecom_approvals", "oa-1")
        again = run_sync("wecom_approvals", "oa-2")  # the look-back re-reads the newest: nothing new
    ex = sample.exceptions
    rejected, lost = ex["rejected (not archived)"], ex["invoice file missing at WeCom"]
    assert first["archived"] == sample.approvals - 2 and first["quarantined"] == 1
    assert again["archived"] == 0 and again["new_versions"] == 0

    catalog = Catalog(hub.settings.catalog_url)
    approvals = _codes(catalog, "wecom_approvals")
    assert rejected not in approvals and lost not in approvals
    with catalog.reading() as s:
        (item,) = s.scalars(select(QuarantineRow).where(QuarantineRow.source_id == "wecom_approvals")).all()
    assert item.business_id == lost and "发票" in item.reason and "invalid media_id" in item.reason
    refused = list((hub.home / "quarantine" / "wecom_approvals" / "callbacks").iterdir())
    assert len(refused) == 1 and "signature mismatch" in refused[0].read_text()

    # The package holds WeCom's answer and the invoice as sent; the 数电票 is claimed (booked once).
    code = approvals[ex["approved, never booked"]]
    shown = json.loads(cli("show", code, "--json").stdout)
    paths = [f["path"] for f in shown["versions"][0]["files"]]
    assert "data/attachments/01-审批单.json" in paths and any(p.endswith(".ofd") for p in paths)
    assert shown["retention"] == "30年" and len(shown["invoices"]) == 1

    out = cli("oa", "reconcile", "--json")
    assert out.returncode == 0, out.stderr
    (report,) = json.loads(out.stdout)
    vouchers = _codes(catalog, "erp_sample")
    unbooked = {u["审批单号"] for u in report["unbooked"]}
    unapproved = {u["档号"] for u in report["unapproved"]}
    missing_voucher = vouchers[ex["voucher without approval"].removeprefix("erp voucher ")]
    assert {ex["approved, never booked"], ex["amount differs from the books"]} <= unbooked
    assert missing_voucher in unapproved
    assert report["matched"] == report["linked_now"] == report["approvals"] - len(unbooked)
    assert report["matched"] >= sample.approvals - 6 and not report["problems"]

    # A pair is named from both sides, and reconciling again links nothing twice.
    pairs = [a for a in approvals.values() if a not in {approvals[n] for n in unbooked}]
    shown = json.loads(cli("show", pairs[0], "--json").stdout)
    (link,) = shown["links"]
    assert link["relation"] == "入账凭证" and "金额" in link["basis"]
    back = json.loads(cli("show", link["archival_code"], "--json").stdout)
    assert {"relation": "审批单", "archival_code": pairs[0], "basis": link["basis"]} in back["links"]
    (report,) = json.loads(cli("oa", "reconcile", "--json").stdout)
    assert report["linked_now"] == 0 and report["matched"] == len(pairs)
    with catalog.reading() as s:
        linked = s.scalars(select(EventRow).where(EventRow.kind == "approval-linked")).all()
        assert len(linked) == len(pairs)
        assert verify_chain(s).ok
    catalog.dispose()

    # A 移交 hands the relation over with the 件: the 移交清册 names each pair from both sides.
    out = cli(
        "transfer", "out", str(hub.home / "handover"), "--code", "J001-KJ·2025-D30-PZ", "--to", "档案馆",
        "--handed-by", "赵敏", "--received-by", "档案馆 王", "--supervised-by", "孙丽华",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    register = (hub.home / "handover" / "移交清册.xml").read_text(encoding="utf-8")
    assert f'<关联 关系="入账凭证" 档号="{link["archival_code"]}">{link["basis"]}</关联>' in register
    assert f'<关联 关系="审批单" 档号="{pairs[0]}">' in register
    assert cli("transfer", "check", str(hub.home / "handover")).returncode == 0


def test_approval_dag_runs_under_airflow_and_keeps_secrets_out(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archive_hub.airflow_runner import run_airflow_dag

    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    seed(hub, vouchers=200)
    write_sample_wecom(hub.erp_url, sample_dir(hub.settings))
    env = wecom_env(hub.settings)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with running_wecom(hub.settings) as (peer_url, receiver_url):
        monkeypatch.setenv("WECOM_API_URL", peer_url)
        deliver_callbacks(hub.settings, receiver_url, "wecom_approvals")
        log = hub.home / "dag.log"
        rc = run_airflow_dag("archive_wecom_approvals", hub.settings, log, timeout=240)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    with sqlite3.connect(hub.home / "airflow" / "airflow.db") as db:
        states = dict(
            db.execute("select task_id, state from task_instance where dag_id='archive_wecom_approvals'")
        )
        xcoms = dict(db.execute("select task_id, value from xcom where dag_id='archive_wecom_approvals'"))
    assert states == {t: "success" for t in ("extract", "map", "validate", "archive", "finalize")}
    final = json.loads(xcoms["finalize"])
    final = json.loads(final) if isinstance(final, str) else final
    catalog = Catalog(hub.settings.catalog_url)
    assert final["archived"] == len(_codes(catalog, "wecom_approvals")) > 10
    catalog.dispose()

    # The daily reconcile_approvals DAG pairs them with the books (archived here by a plain sync).
    assert run_sync("erp_sample", "erp-1")["status"] == "success"
    rc = run_airflow_dag("reconcile_approvals", hub.settings, hub.home / "reconcile.log", timeout=240)
    assert rc == 0, (hub.home / "reconcile.log").read_text()[-3000:]
    with sqlite3.connect(hub.home / "airflow" / "airflow.db") as db:
        (value,) = db.execute("select value from xcom where dag_id='reconcile_approvals'").fetchone()
    summary = json.loads(value)
    summary = (json.loads(summary) if isinstance(summary, str) else summary)["wecom_approvals:erp_sample"]
    assert summary["approvals"] == final["archived"] and summary["linked_now"] == summary["matched"] > 10
    report = json.loads(Path(summary["report"]).read_text(encoding="utf-8"))
    assert len(report["unbooked"]) == summary["unbooked"] == summary["approvals"] - summary["matched"]
    secrets = [env["WECOM_SECRET"], env["WECOM_CALLBACK_TOKEN"], env["WECOM_CALLBACK_AES_KEY"]]
    places: list[tuple[str, bytes]] = [("airflow log", text.encode()), ("xcom", repr(xcoms).encode())]
    places.append(("catalog", (hub.home / "catalog.sqlite").read_bytes()))
    places += [(str(p), p.read_bytes()) for p in (hub.home / "runs").rglob("*") if p.is_file()]
    places += [(str(p), p.read_bytes()) for p in (hub.home / "logs").rglob("*.log")]
    for secret in secrets:
        for where, data in places:
            assert secret.encode() not in data, f"a secret is in {where}"
    assert Path(hub.home / "sample_wecom" / "secrets.env").stat().st_mode & 0o077 == 0


def _book_two_person_voucher(erp_url: str, day: str, amounts: dict[str, str]) -> int:
    """A 差旅费 voucher reimbursing two people at once (one 分录 each, one cash credit)."""
    import datetime as dt
    from decimal import Decimal

    path = erp_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as erp:
        vid = erp.execute("select max(id) + 1 from erp_voucher").fetchone()[0]
        number = erp.execute("select max(voucher_no) + 1 from erp_voucher").fetchone()[0]
        now = dt.datetime(2025, 6, 30, 18, 0)
        erp.execute(
            "insert into erp_voucher (id, company_id, book_code, fiscal_year, period, voucher_word, voucher_no,"
            " voucher_date, summary, currency, preparer, reviewer, poster, chief_accountant, attachment_count,"
            " status, created_at, updated_at) values (?, 1, '01', 2025, 6, '付', ?, ?, '报销差旅费', 'CNY',"
            " '李娜', '孙丽华', '赵敏', '孙丽华', 0, 'posted', ?, ?)",
            (vid, number, day, now, now),
        )
        total = sum(Decimal(a) for a in amounts.values())
        lines = [(f"{p}报销差旅费", "6602.02", a, "0", p) for p, a in amounts.items()]
        lines.append(("报销差旅费", "1001", "0", str(total), None))
        for n, (summary, account, debit, credit, person) in enumerate(lines, 1):
            erp.execute(
                "insert into erp_voucher_line (id, voucher_id, line_no, summary, account_code, debit, credit,"
                " currency, exchange_rate, aux_employee) values (?, ?, ?, ?, ?, ?, ?, 'CNY', 1, ?)",
                (vid * 100 + n, vid, n, summary, account, debit, credit, person),
            )
    return int(vid)


def test_a_voucher_for_two_people_pairs_each_and_a_changed_voucher_breaks_the_kept_pair(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(hub, vouchers=200)
    vid = _book_two_person_voucher(hub.erp_url, "2025-06-30", {"张伟": "500.00", "李娜": "300.00"})
    write_sample_wecom(hub.erp_url, sample_dir(hub.settings))
    for name, value in wecom_env(hub.settings).items():
        monkeypatch.setenv(name, value)
    assert run_sync("erp_sample", "erp-1")["status"] == "success"
    with running_wecom(hub.settings) as (peer_url, receiver_url):
        monkeypatch.setenv("WECOM_API_URL", peer_url)
        deliver_callbacks(hub.settings, receiver_url, "wecom_approvals")
        run_sync("wecom_approvals", "oa-1")
    catalog = Catalog(hub.settings.catalog_url)
    voucher = _codes(catalog, "erp_sample")[str(vid)]

    def reconcile() -> dict:  # type: ignore[type-arg]
        out = cli("oa", "reconcile", "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)[0]

    def approvals_of(code: str) -> list[dict]:  # type: ignore[type-arg]
        return [
            k for k in json.loads(cli("show", code, "--json").stdout)["links"] if k["relation"] == "审批单"
        ]

    first = reconcile()
    assert {"张伟", "李娜"} == {k["basis"].split()[1] for k in approvals_of(voucher)}
    assert voucher not in {u["档号"] for u in first["unapproved"]}
    again = reconcile()  # the kept pairs stay with their own person; nothing is paired twice
    assert again["linked_now"] == 0 and again["matched"] == first["matched"] and not again["problems"]
    assert again["unapproved"] == first["unapproved"] and len(approvals_of(voucher)) == 2

    # The books change 张伟's line after the pair was kept: a new voucher version no longer bears it out.
    with sqlite3.connect(hub.erp_url.removeprefix("sqlite:///")) as erp:
        erp.execute(
            "update erp_voucher_line set debit = '520.00' where voucher_id = ? and line_no = 1", (vid,)
        )
        erp.execute(
            "update erp_voucher_line set credit = '820.00' where voucher_id = ? and line_no = 3", (vid,)
        )
    touch_voucher(hub.erp_url, vid, new_summary="张伟报销差旅费 (更正)")
    assert run_sync("erp_sample", "erp-2")["new_versions"] == 1
    after = reconcile()
    (problem,) = after["problems"]
    assert voucher in problem and "张伟" in problem and "520.00" in problem and "no longer holds" in problem
    assert after["matched"] == first["matched"] - 1 and after["linked_now"] == 0
    assert not cli("oa", "reconcile", "--dry-run").returncode
    catalog.dispose()


def test_an_archived_approval_withdrawn_later_is_noted_once_and_listed_with_its_voucher(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors.oa.callback_crypto import CallbackCrypt
    from connectors.oa.wecom_peer import send_approval_callback

    seed(hub, vouchers=200)
    folder = sample_dir(hub.settings)
    write_sample_wecom(hub.erp_url, folder)
    env = wecom_env(hub.settings)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert run_sync("erp_sample", "erp-1")["status"] == "success"
    with running_wecom(hub.settings) as (peer_url, receiver_url):
        monkeypatch.setenv("WECOM_API_URL", peer_url)
        deliver_callbacks(hub.settings, receiver_url, "wecom_approvals")
        run_sync("wecom_approvals", "oa-1")
        (before,) = json.loads(cli("oa", "reconcile", "--json").stdout)
        assert before["revoked"] == []
        shown = json.loads(cli("show", _paired_approval(hub), "--json").stdout)
        sp_no = shown["source"].split(":", 1)[1]
        voucher = shown["links"][0]["archival_code"]
        # The applicant withdraws it in WeCom after approval (通过后撤销): WeCom says so and calls back.
        path = folder / "approvals" / f"{sp_no}.json"
        info = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps({**info, "sp_status": 6}, ensure_ascii=False, indent=1), encoding="utf-8")
        crypt = CallbackCrypt(
            env["WECOM_CALLBACK_TOKEN"], env["WECOM_CALLBACK_AES_KEY"], env["WECOM_CORP_ID"]
        )
        answer = send_approval_callback(
            f"{receiver_url}/callbacks/wecom_approvals", crypt, corp_id=env["WECOM_CORP_ID"], agent_id="3010040",
            sp_no=sp_no, sp_status=6, sp_name="报销", template_id=info["template_id"],
            apply_time=info["apply_time"], applyer_userid=info["applyer"]["userid"],
        )  # fmt: skip
        assert answer.text == "success"
        for run in ("oa-2", "oa-3"):
            summary = run_sync("wecom_approvals", run)
            assert summary["archived"] == 0 and summary["new_versions"] == 0  # the 原始凭证 stays as it was
    catalog = Catalog(hub.settings.catalog_url)
    with catalog.reading() as s:
        noted = s.scalars(select(EventRow).where(EventRow.kind == "approval-revoked")).all()
    assert [e.subject for e in noted] == [shown["archival_code"]]  # once, though read twice
    (after,) = json.loads(cli("oa", "reconcile", "--json").stdout)
    assert after["revoked"] == [
        {
            "档号": shown["archival_code"],
            "审批单号": sp_no,
            "applicant": after["revoked"][0]["applicant"],
            "voucher": voucher,
        }
    ]
    assert after["matched"] == before["matched"] - 1 and not after["problems"]
    assert sp_no not in {u["审批单号"] for u in after["unbooked"]}
    catalog.dispose()


def _paired_approval(hub: Hub) -> str:
    catalog = Catalog(hub.settings.catalog_url)
    try:
        with catalog.reading() as s:
            from archive_hub.catalog.models import ApprovalLinkRow

            return s.scalars(select(ApprovalLinkRow.approval_code).order_by(ApprovalLinkRow.id)).first() or ""
    finally:
        catalog.dispose()


def _split_approval(folder: Path, applicant: str, amount: str, parts: tuple[str, str]) -> list[str]:
    """Turn the sample approval of `applicant` for `amount` into two approvals of `parts` (each with its own
    数电票), as when one person's two 报销单 are booked in one voucher."""
    import datetime as dt
    from decimal import Decimal

    from connectors.erp.sample_erp.einvoices import SampleInvoice, einvoice_ofd

    (path,) = [
        p
        for p in (folder / "approvals").glob("*.json")
        if (info := json.loads(p.read_text(encoding="utf-8")))["applyer"]["userid"] == applicant
        and any(
            c["control"] == "Money" and c["value"]["new_money"] == amount
            for c in info["apply_data"]["contents"]
        )
    ]
    info = json.loads(path.read_text(encoding="utf-8"))
    callbacks = json.loads((folder / "callbacks.json").read_text(encoding="utf-8"))
    numbers = []
    for n, part in enumerate(parts):
        sp_no = info["sp_no"] if n == 0 else info["sp_no"][:8] + "9999"
        file_id = f"WWCISP_{sp_no}_split{n}"
        invoice = SampleInvoice(
            f"25442000999{n:09d}", dt.date(2025, 6, 28), "*住宿服务*差旅费", Decimal(part), Decimal("0")
        )
        (folder / "media" / file_id).write_bytes(einvoice_ofd(invoice))
        (folder / "media" / f"{file_id}.json").write_text(
            json.dumps({"file_name": f"数电票_{invoice.number}.ofd", "content_type": "application/ofd"}),
            encoding="utf-8",
        )
        contents = []
        for c in info["apply_data"]["contents"]:
            c = json.loads(json.dumps(c))
            if c["control"] == "Money":
                c["value"]["new_money"] = part
            if c["control"] == "File":
                c["value"]["files"] = [{"file_id": file_id}]
            contents.append(c)
        detail = {**info, "sp_no": sp_no, "apply_data": {"contents": contents}}
        (folder / "approvals" / f"{sp_no}.json").write_text(
            json.dumps(detail, ensure_ascii=False), encoding="utf-8"
        )
        if n:
            callbacks += [{**c, "sp_no": sp_no} for c in callbacks if c["sp_no"] == info["sp_no"]]
        numbers.append(sp_no)
    (folder / "callbacks.json").write_text(json.dumps(callbacks, ensure_ascii=False), encoding="utf-8")
    return numbers


def test_two_approvals_booked_as_one_sum_are_paired_with_that_voucher(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(hub, vouchers=200)
    vid = _book_two_person_voucher(hub.erp_url, "2025-06-30", {"张伟": "800.00"})
    folder = sample_dir(hub.settings)
    write_sample_wecom(hub.erp_url, folder)
    numbers = _split_approval(folder, "ZhangWei", "800.00", ("500.00", "300.00"))
    for name, value in wecom_env(hub.settings).items():
        monkeypatch.setenv(name, value)
    assert run_sync("erp_sample", "erp-1")["status"] == "success"
    with running_wecom(hub.settings) as (peer_url, receiver_url):
        monkeypatch.setenv("WECOM_API_URL", peer_url)
        deliver_callbacks(hub.settings, receiver_url, "wecom_approvals")
        run_sync("wecom_approvals", "oa-1")
    catalog = Catalog(hub.settings.catalog_url)
    voucher, approvals = _codes(catalog, "erp_sample")[str(vid)], _codes(catalog, "wecom_approvals")
    catalog.dispose()
    first = json.loads(cli("oa", "reconcile", "--json").stdout)[0]
    links = json.loads(cli("show", voucher, "--json").stdout)["links"]
    assert sorted(k["archival_code"] for k in links) == sorted(approvals[n] for n in numbers)
    assert all(
        "500.00 + 300.00 = 借方 800.00" in k["basis"] or "300.00 + 500.00" in k["basis"] for k in links
    )
    assert voucher not in {u["档号"] for u in first["unapproved"]}
    assert not set(numbers) & {u["审批单号"] for u in first["unbooked"]}
    again = json.loads(cli("oa", "reconcile", "--json").stdout)[0]  # the kept sum still holds
    assert again["linked_now"] == 0 and not again["problems"] and again["matched"] == first["matched"]
