"""The standard connector suite on the database voucher stream over the seeded sample ERP."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.erp.database import DatabaseVoucherStream
from connectors.erp.sample_erp.seed import seed_sample_erp
from connectors.errors import ConfigError
from connectors.testing import read_all, stream_test_class


def sample_stream(tmp_path: Path) -> DatabaseVoucherStream:
    url = f"sqlite:///{tmp_path / 'erp.sqlite'}"
    if not (tmp_path / "erp.sqlite").exists():
        seed_sample_erp(url, tmp_path / "att", vouchers=90)
    return DatabaseVoucherStream("erp_test", url, tmp_path / "att", system="sample-erp")


TestDatabaseVoucherStream = stream_test_class(sample_stream)


def test_records_carry_lines_and_attachments(tmp_path: Path) -> None:
    records = read_all(sample_stream(tmp_path))
    assert all(r.data["lines"] for r in records)
    with_files = [r for r in records if r.attachments]
    assert with_files and all(Path(a["uri"]).is_absolute() for r in with_files for a in r.attachments)
    shared = {}
    for r in records:
        shared.setdefault(r.changed_at, []).append(r.key)
    assert any(len(v) > 1 for v in shared.values()), (
        "the seed shares timestamps so the id tie-break is exercised"
    )


def test_wrong_url_fails_at_once_naming_the_setting(tmp_path: Path) -> None:
    stream = DatabaseVoucherStream("erp_test", f"sqlite:///{tmp_path / 'missing' / 'erp.sqlite'}", None)
    with pytest.raises(ConfigError, match=r"erp_test: setting 'connection.url': cannot read erp_voucher"):
        stream.check()
