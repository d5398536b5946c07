"""`archive-hub destruction execute`: destroy what a signed 销毁清册 lists, under supervision (监销).

The decision is committed first, in one transaction: every check of catalog/destruction.py passes, the
records turn destroyed and the chain records, per record, the manifest hash of each version that goes.
Only then are the package directories removed: each is renamed out of view (atomic, so no package is ever
seen half-deleted), then deleted, and the renames made durable. A crash in between leaves the list
"destroying"; running execute again finishes it, and `verify` names any package still on disk meanwhile.
The archive lock of every source concerned is held throughout, so no sync adds a version to a record
while it is being destroyed.
"""

from __future__ import annotations

import datetime as dt
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from archive_hub.catalog import Catalog
from archive_hub.catalog.destruction import execution_problems, get_list, listed_records, mark_destroyed
from archive_hub.catalog.locks import source_lock
from archive_hub.destruction_roles import WITNESSES, DestructionRefused
from archive_sink.filesystem import remove_packages

TRASH = ".destroying"  # hidden: published_packages and verify never list it


@dataclass
class DestructionDone:
    list_id: int
    records: int
    packages: int
    bytes: int
    resumed: bool


def execute(
    catalog: Catalog,
    archive_root: Path,
    staging_root: Path,
    list_id: int,
    witnesses: dict[str, str],
    today: dt.date | None = None,
) -> DestructionDone:
    missing = [title for role, title in WITNESSES.items() if not witnesses.get(role, "").strip()]
    if missing:
        raise DestructionRefused(
            f"销毁清册 {list_id}: destruction is witnessed (监销); name the {', '.join(missing)}"
        )
    today = today or dt.date.today()
    with catalog.reading() as session:
        sources = sorted({i.record.source_id for i in listed_records(session, list_id)})
    with ExitStack() as locks:
        for source_id in sources:  # the order verify takes them in: no deadlock between the two
            locks.enter_context(source_lock(catalog, staging_root / source_id, source_id))
        with catalog.transaction() as session:
            lst = get_list(session, list_id, lock=True)
            listed = listed_records(session, list_id)
            resumed = lst.status == "destroying"
            if lst.status not in ("draft", "destroying"):
                raise DestructionRefused(f"销毁清册 {list_id} is {lst.status}: nothing to execute")
            if not resumed:
                problems = execution_problems(session, lst, listed, today)
                if problems:
                    raise DestructionRefused("\n".join(problems))
                mark_destroyed(session, lst, listed, {k: v.strip() for k, v in witnesses.items()})
            paths = [(p.id, p.path) for item in listed for p in item.packages]
            done = DestructionDone(
                list_id,
                len(listed),
                len(paths),
                sum(p.byte_size for i in listed for p in i.packages),
                resumed,
            )
        remove_packages(
            archive_root, [(str(pid), rel) for pid, rel in paths], archive_root / TRASH / str(list_id)
        )
        with catalog.transaction() as session:
            get_list(session, list_id, lock=True).status = "destroyed"
    return done
