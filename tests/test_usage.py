"""利用登记: every consultation (show), copy and loan is registered in the event chain; a loan is a verified
copy with a due date, checked when it comes back (intact: removed; altered or gone: registered as such)."""

from __future__ import annotations

import datetime as dt
import json
import shutil

from sqlalchemy import update

from archive_hub.catalog import Catalog
from archive_hub.catalog.models import LoanRow
from archive_hub.pipeline import run_sync
from archive_hub.verification import verify_archive
from archive_sink.filesystem import published_packages
from tests.conftest import Hub, seed
from tests.test_cli import cli
from tests.test_destruction import OLD_YEAR, WITNESS_ARGS, sign_all

NEXT_MONTH = (dt.date.today() + dt.timedelta(days=30)).isoformat()


def usage(*args: str) -> list[dict]:
    out = cli("usage", "--json", *args)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_a_loan_is_a_verified_copy_registered_until_it_comes_back_intact(hub: Hub, catalog_url: str) -> None:
    seed(hub, vouchers=12, bad_records=False)
    run_sync("erp_sample", "run-1")
    package = published_packages(hub.settings.archive_root)[3]
    code = package.parent.name
    shelf = hub.home / "borrowed"

    past = cli(
        "loan", "out", code, str(shelf), "--to", "审计组 刘", "--until", "2020-01-01", "--purpose", "审计"
    )
    assert past.returncode == 2 and "has passed already" in past.stderr
    out = cli(
        "loan", "out", code, str(shelf), "--to", "审计组 刘", "--until", NEXT_MONTH, "--purpose", "年度审计"
    )
    assert out.returncode == 0, out.stderr
    copy = shelf / f"{code}-v1"
    assert sorted(f.relative_to(copy) for f in copy.rglob("*") if f.is_file()) == sorted(
        f.relative_to(package) for f in package.rglob("*") if f.is_file()
    )
    listed = cli("loan", "list")
    assert "1 loan(s)" in listed.stdout and "审计组 刘" in listed.stdout
    assert "0 loan(s) overdue" in cli("loan", "list", "--overdue").stdout

    back = cli("loan", "return", "1")
    assert back.returncode == 0 and "returned intact; the copy was removed" in back.stdout
    assert not copy.exists() and package.is_dir()  # the borrower's copy ends, the original stays
    again = cli("loan", "return", "1")
    assert again.returncode == 2 and "was returned on" in again.stderr
    assert "0 loan(s)" in cli("loan", "list").stdout

    entries = usage("--code", code)
    assert [(e["kind"], e["borrower"], e["purpose"]) for e in entries] == [
        ("借阅", "审计组 刘", "年度审计"),
        ("归还", None, None),
    ]
    assert entries[1]["detail"]["state"] == "intact" and entries[0]["loan"] == entries[1]["loan"] == 1


def test_an_altered_or_lost_copy_is_registered_as_such_and_the_original_is_untouched(hub: Hub) -> None:
    seed(hub, vouchers=8, bad_records=False)
    run_sync("erp_sample", "run-1")
    first, second = (p.parent.name for p in published_packages(hub.settings.archive_root)[:2])
    shelf = hub.home / "borrowed"
    for code in (first, second):
        out = cli(
            "loan", "out", code, str(shelf), "--to", "税务稽查", "--until", NEXT_MONTH, "--purpose", "稽查"
        )
        assert out.returncode == 0, out.stderr
    tampered = shelf / f"{first}-v1" / "data" / "metadata.xml"
    tampered.write_bytes(tampered.read_bytes().replace(b"</", b" </", 1))
    back = cli("loan", "return", "1")
    assert back.returncode == 3
    assert "data/metadata.xml" in back.stderr and "returned altered" in back.stderr
    assert tampered.is_file()  # kept as evidence

    shutil.rmtree(shelf / f"{second}-v1")
    lost = cli("loan", "return", "2")
    assert lost.returncode == 3 and "returned missing" in lost.stderr

    catalog = Catalog(hub.settings.catalog_url)
    assert verify_archive(catalog, hub.settings.archive_root).ok  # the originals never changed
    with catalog.reading() as s:
        states = [loan.return_state for loan in s.query(LoanRow).order_by(LoanRow.id)]
    catalog.dispose()
    assert states == ["altered", "missing"]


def test_every_consultation_and_copy_is_in_the_register_and_overdue_loans_are_named(hub: Hub) -> None:
    seed(hub, vouchers=6, bad_records=False)
    run_sync("erp_sample", "run-1")
    code = published_packages(hub.settings.archive_root)[0].parent.name
    assert cli("show", code, "--purpose", "核对凭证").returncode == 0
    assert cli("show", code, "--json").returncode == 0
    assert cli("copy", code, str(hub.home / "copies"), "--purpose", "法院调取").returncode == 0
    assert (
        cli(
            "loan", "out", code, str(hub.home / "b"), "--to", "王", "--until", NEXT_MONTH, "--purpose", "查账"
        ).returncode
        == 0
    )
    assert [(e["kind"], e["purpose"]) for e in usage()] == [
        ("查阅", "核对凭证"),
        ("查阅", None),
        ("复制", "法院调取"),
        ("借阅", "查账"),
    ]
    assert all(e["by"] for e in usage())
    assert usage("--code", "J999") == []

    catalog = Catalog(hub.settings.catalog_url)
    with catalog.transaction() as s:  # a month later
        s.execute(update(LoanRow).values(due=dt.date.today() - dt.timedelta(days=1)))
    catalog.dispose()
    overdue = cli("loan", "list", "--overdue")
    assert "1 loan(s) overdue" in overdue.stdout and code in overdue.stdout
    back = cli("loan", "return", "1")
    assert back.returncode == 0
    (returned,) = [e for e in usage() if e["kind"] == "归还"]
    assert returned["detail"]["overdue_days"] == 1


def test_a_record_on_loan_is_not_destroyed_until_it_comes_back(hub: Hub) -> None:
    seed(hub, vouchers=4, fiscal_year=OLD_YEAR, bad_records=False)
    run_sync("erp_sample", "run-1")
    code = published_packages(hub.settings.archive_root)[1].parent.name
    out = cli(
        "loan", "out", code, str(hub.home / "b"), "--to", "审计组", "--until", NEXT_MONTH, "--purpose", "审计"
    )
    assert out.returncode == 0
    assert cli("destruction", "draw-up", "--opinion", "可销毁").returncode == 0
    sign_all(1)
    refused = cli("destruction", "execute", "1", *WITNESS_ARGS)
    assert refused.returncode == 2 and f"{code}: on loan to 审计组" in refused.stderr
    assert cli("loan", "return", "1").returncode == 0
    assert cli("destruction", "execute", "1", *WITNESS_ARGS).returncode == 0
    refused_loan = cli(
        "loan", "out", code, str(hub.home / "b2"), "--to", "x", "--until", NEXT_MONTH, "--purpose", "y"
    )
    assert refused_loan.returncode == 2 and "destroyed under a 销毁清册" in refused_loan.stderr
