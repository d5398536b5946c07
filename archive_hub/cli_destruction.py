"""`archive-hub destruction ...`: holds, 销毁清册, signatures and supervised destruction (Art. 18).

The order the law sets is the order of the commands: `due` shows what has run out; `hold` keeps what must
stay (未结清的债权债务); `draw-up` writes the list from the appraisal; five people `sign` it; `execute`
destroys under three witnesses (监销). Every step is in the event chain; a refusal is one line naming
what stands in the way, and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from archive_hub.cli_common import archive_registers_now, console, err
from archive_hub.cli_common import open_catalog as _catalog
from archive_hub.destruction_roles import SIGNATORIES, WITNESSES, DestructionRefused
from archive_hub.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

T = TypeVar("T")
destruction_app = typer.Typer(
    help="销毁: holds, 销毁清册, signatures and witnessed destruction of records past their 保管期限.",
    no_args_is_help=True,
)


def _who() -> str:
    from archive_hub.copies import requester

    return requester()


def _refused(exc: Exception) -> typer.Exit:
    for line in str(exc).splitlines():
        err.print(f"[red]refused:[/red] {line}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _step(work: Callable[[Session], T]) -> T:
    """One step in one catalog transaction; a refusal rolls it back and is printed, one line per reason. Who
    acts is known before the transaction opens (with SSO that may ask the identity provider)."""
    _who()
    try:
        with _catalog().transaction() as session:
            return work(session)
    except DestructionRefused as exc:
        raise _refused(exc) from None


@destruction_app.command("hold")
def hold_cmd(
    code: Annotated[str, typer.Argument(help="档号, exactly")],
    reason: Annotated[str, typer.Option(help="why it is kept, e.g. 未结清的债权债务: 合同 HT-2019-031")],
) -> None:
    """Keep a record past its 保管期限: it is never listed for destruction while held."""
    from archive_hub.catalog.destruction import place_hold

    _step(lambda session: place_hold(session, code, reason, _who()))
    console.print(f"{code}: held ({reason.strip()})", highlight=False)


@destruction_app.command("release")
def release_cmd(code: Annotated[str, typer.Argument(help="档号, exactly")]) -> None:
    """Lift a hold (the debt is settled); the record may then be appraised for destruction again."""
    from archive_hub.catalog.destruction import release_hold

    hold = _step(lambda session: release_hold(session, code, _who()))
    console.print(f"{code}: hold released ({hold.reason})", highlight=False)


@destruction_app.command("holds")
def holds_cmd() -> None:
    """The records held now, with why and by whom."""
    from sqlalchemy import select

    from archive_hub.catalog.models import ArchiveRecordRow, DestructionHoldRow

    with _catalog().reading() as session:
        rows = session.execute(
            select(ArchiveRecordRow.archival_code, DestructionHoldRow)
            .join(DestructionHoldRow, DestructionHoldRow.record_id == ArchiveRecordRow.id)
            .where(DestructionHoldRow.released_at.is_(None))
            .order_by(ArchiveRecordRow.archival_code)
        ).all()
    table = Table(title=f"{len(rows)} record(s) held from destruction")
    for col in ("档号", "reason", "by", "since"):
        table.add_column(col)
    for code, hold in rows:
        table.add_row(code, hold.reason, hold.placed_by, f"{hold.placed_at:%Y-%m-%d}")
    console.print(table)


@destruction_app.command("draw-up")
def draw_up_cmd(
    opinion: Annotated[str, typer.Option(help="the appraisal's opinion (鉴定意见)")],
    on: Annotated[
        str | None, typer.Option("--on", help="records due by this date, YYYY-MM-DD (default: today)")
    ] = None,
    code: Annotated[
        str | None, typer.Option("--code", help="only 档号 starting with this (a fonds, a year, a class)")
    ] = None,
) -> None:
    """Draw up a 销毁清册 of every record due by --on that is neither held nor on another open list."""
    from archive_hub.catalog.destruction import draw_up

    try:
        day = dt.date.fromisoformat(on) if on else dt.date.today()
    except ValueError:
        raise typer.BadParameter(f"{on!r} is not a date (YYYY-MM-DD)", param_hint="--on") from None

    def work(session: Session) -> tuple[int, int, int]:
        lst, held = draw_up(session, day, opinion, _who(), code)
        return lst.id, _count(session, lst.id), held

    list_id, records, held = _step(work)
    console.print(
        f"销毁清册 {list_id} drawn up: {records} record(s) due by {day}"
        + (f"; {held} held record(s) left off" if held else "")
        + f". Next: five signatures (`archive-hub destruction sign {list_id} --role ROLE --name NAME`, "
        f"roles {', '.join(SIGNATORIES)})",
        highlight=False,
        soft_wrap=True,
    )


def _count(session: Any, list_id: int) -> int:
    from sqlalchemy import func, select

    from archive_hub.catalog.models import DestructionItemRow

    return session.execute(select(func.count()).where(DestructionItemRow.list_id == list_id)).scalar_one()


@destruction_app.command("sign")
def sign_cmd(
    list_id: Annotated[int, typer.Argument(help="the 销毁清册's number")],
    role: Annotated[str, typer.Option(help=" | ".join(f"{k} ({v})" for k, v in SIGNATORIES.items()))],
    name: Annotated[
        str | None,
        typer.Option(
            help="the signatory's name (with SSO: the signed-in user's, which it must match if given)"
        ),
    ] = None,
) -> None:
    """Sign the list as it stands; the signature covers its content hash.

    With SSO configured (ARCHIVE_HUB_OIDC_ISSUER) the signatory is the user signed in with `archive-hub login`,
    who must hold the realm role signatory-<role>; the name is the one the directory has for them."""
    from archive_hub.catalog.destruction import sign, signatures

    signer, sso = _signatory(role, name)

    def work(session: Session) -> list[str]:
        sign(session, list_id, role, signer, sso)
        return [v for k, v in SIGNATORIES.items() if k not in signatures(session, list_id)]

    missing = _step(work)
    console.print(
        f"销毁清册 {list_id}: signed by {SIGNATORIES.get(role, role)} {signer.strip()}; "
        + (f"still to sign: {', '.join(missing)}" if missing else "all five have signed"),
        highlight=False,
        soft_wrap=True,
    )


def _signatory(role: str, name: str | None) -> tuple[str, dict[str, str] | None]:
    """Who signs: the typed name without SSO; with SSO the signed-in user, if the realm gives them the role."""
    from sso.login import LoginSettings, signed_in

    settings = LoginSettings.from_env()
    if settings is None:
        if not name:
            raise _refused(DestructionRefused("--name: a signature needs the signatory's name"))
        return name, None
    who = signed_in(settings)
    needed = f"signatory-{role}"
    if needed not in who.roles:
        raise _refused(
            DestructionRefused(
                f"{who.username} does not hold the role {needed} ({SIGNATORIES.get(role, role)})"
            )
        )
    if name and name.strip() not in (who.name, who.username):
        raise _refused(DestructionRefused(f"signed in as {who.name or who.username}, not {name.strip()}"))
    # the username keeps two people of the same name apart (the two 经办人 must be two people)
    signer = f"{who.name} ({who.username})" if who.name else who.username
    return signer, {"username": who.username, "subject": who.subject}


@destruction_app.command("withdraw")
def withdraw_cmd(
    list_id: Annotated[int, typer.Argument(help="the 销毁清册's number")],
    reason: Annotated[str, typer.Option(help="why (a record was held, the appraisal changed ...)")],
) -> None:
    """Withdraw a draft list; its records may be listed again."""
    from archive_hub.catalog.destruction import withdraw

    _step(lambda session: withdraw(session, list_id, reason, _who()))
    console.print(f"销毁清册 {list_id} withdrawn", highlight=False)


@destruction_app.command("execute")
def execute_cmd(
    list_id: Annotated[int, typer.Argument(help="the 销毁清册's number")],
    archives_witness: Annotated[str, typer.Option(help=WITNESSES["archives"])],
    accounting_witness: Annotated[str, typer.Option(help=WITNESSES["accounting"])],
    it_witness: Annotated[str, typer.Option(help=WITNESSES["it"])],
) -> None:
    """Destroy what a fully signed list holds, witnessed (监销); run again to finish an interrupted one."""
    from archive_hub.destruction import execute

    settings = Settings.from_env()
    witnesses = {"archives": archives_witness, "accounting": accounting_witness, "it": it_witness}
    catalog = _catalog()
    try:
        done = execute(catalog, settings.archive_root, settings.staging_root, list_id, witnesses)
    except DestructionRefused as exc:
        raise _refused(exc) from None
    console.print(
        f"销毁清册 {list_id}: {done.records} record(s) destroyed, {done.packages} package version(s), "
        f"{done.bytes / 1_048_576:.1f} MB removed"
        + (" (finished an interrupted run)" if done.resumed else "")
        + "; the catalog keeps their 档号 and hashes",
        highlight=False,
        soft_wrap=True,
    )
    archive_registers_now(catalog, {f"销毁清册-{list_id:04d}": f"销毁清册 {list_id}"}, "永久")


@destruction_app.command("lists")
def lists_cmd() -> None:
    """Every 销毁清册 with its state and signatures."""
    from sqlalchemy import func, select

    from archive_hub.catalog.models import DestructionItemRow, DestructionListRow, DestructionSignatureRow

    with _catalog().reading() as session:
        rows = session.execute(select(DestructionListRow).order_by(DestructionListRow.id)).scalars().all()
        counts = dict(
            session.execute(
                select(DestructionItemRow.list_id, func.count()).group_by(DestructionItemRow.list_id)
            ).all()
        )
        signed = dict(
            session.execute(
                select(DestructionSignatureRow.list_id, func.count()).group_by(
                    DestructionSignatureRow.list_id
                )
            ).all()
        )
    table = Table(title=f"{len(rows)} 销毁清册")
    for col in ("no.", "status", "件数", "due by", "signatures", "drawn up", "destroyed"):
        table.add_column(col)
    for lst in rows:
        table.add_row(
            str(lst.id),
            lst.status,
            str(counts.get(lst.id, 0)),
            str(lst.judged_on),
            f"{signed.get(lst.id, 0)}/{len(SIGNATORIES)}",
            f"{lst.drawn_at:%Y-%m-%d} {lst.drawn_by}",
            f"{lst.destroyed_at:%Y-%m-%d}" if lst.destroyed_at else "",
        )
    console.print(table)


@destruction_app.command("show")
def show_cmd(
    list_id: Annotated[int, typer.Argument(help="the 销毁清册's number")],
    xlsx: Annotated[
        Path | None, typer.Option("--xlsx", help="write the 销毁清册 as an Excel workbook")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the list as one JSON object")] = False,
) -> None:
    """The 销毁清册: its lines by class, the records, the signatures and the witnesses."""
    from archive_hub.catalog.destruction import list_document

    try:
        with _catalog().reading() as session:
            data = list_document(session, list_id, dt.date.today())
    except DestructionRefused as exc:
        raise _refused(exc) from None
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
        return
    if xlsx is not None:
        from archive_hub.destruction_xlsx import write_destruction_xlsx

        try:
            written = write_destruction_xlsx(xlsx, data)
        except OSError as exc:
            err.print(f"[red]error:[/red] cannot write the workbook {xlsx}: {exc.strerror or exc}")
            raise typer.Exit(2) from None
        console.print(f"workbook: {written}", highlight=False, soft_wrap=True)
    table = Table(
        title=f"销毁清册 {list_id} ({data['status']}): {len(data['records'])} 件, 鉴定意见: {data['opinion']}"
    )
    for col in ("名称", "件数", "起止年度", "档案编号", "应保管期限", "已保管期限", "销毁时间"):
        table.add_column(col)
    for line in data["lines"]:
        table.add_row(*(str(v) for v in line.values()))
    console.print(table)
    for title in SIGNATORIES.values():
        s = data["signatures"].get(title)
        console.print(
            f"  {title}: {s['name'] + ' ' + s['at'][:10] if s else '(not signed)'}", highlight=False
        )
    for title in WITNESSES.values():
        console.print(f"  {title}: {data['witnesses'].get(title, '')}", highlight=False)
