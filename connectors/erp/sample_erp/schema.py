"""Tables of the sample ERP (SQLAlchemy Core), shared by the seeder and the database connector."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

company = Table(
    "erp_company",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(20), nullable=False, unique=True),  # 公司编码
    Column("name", String(200), nullable=False),  # 公司名称
    Column("fonds_no", String(20), nullable=False),  # 全宗号 used by the archive
    Column("base_currency", String(3), nullable=False, default="CNY"),
)

account = Table(
    "erp_account",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(40), nullable=False, unique=True),  # 科目编码, e.g. 1002.01
    Column("name", String(200), nullable=False),  # 科目名称
    Column("category", String(20), nullable=False),  # 资产/负债/权益/成本/损益
    Column("balance_direction", String(1), nullable=False),  # D or C
)

voucher = Table(
    "erp_voucher",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("company_id", Integer, ForeignKey("erp_company.id"), nullable=False),
    Column("book_code", String(20), nullable=False),  # 账簿
    Column("fiscal_year", Integer, nullable=False),
    Column("period", Integer, nullable=False),  # 1..12
    Column("voucher_word", String(4), nullable=False),  # 凭证字: 记/收/付/转
    Column("voucher_no", Integer, nullable=False),  # 凭证号 within book/year/period/word
    # Kept as text on purpose: real ERP exports carry dates as strings and some are broken.
    Column("voucher_date", String(20), nullable=False),
    Column("summary", Text),  # 摘要 of the first line, as most ERPs show it
    Column("currency", String(3), nullable=False),
    Column("preparer", String(50)),  # 制单
    Column("reviewer", String(50)),  # 审核
    Column("poster", String(50)),  # 记账
    Column("chief_accountant", String(50)),  # 会计主管
    Column("attachment_count", Integer, nullable=False, default=0),  # 附单据数
    Column("status", String(10), nullable=False),  # draft/audited/posted
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False, index=True),  # change timestamp for the cursor
)

voucher_line = Table(
    "erp_voucher_line",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("voucher_id", Integer, ForeignKey("erp_voucher.id"), nullable=False, index=True),
    Column("line_no", Integer, nullable=False),
    Column("summary", Text),  # 摘要
    Column("account_code", String(40)),  # may be NULL in broken data
    Column("debit", Numeric(18, 2), nullable=False, default=0),  # 借方
    Column("credit", Numeric(18, 2), nullable=False, default=0),  # 贷方
    Column("currency", String(3), nullable=False),
    Column("exchange_rate", Numeric(18, 6), nullable=False, default=1),
    Column("aux_customer", String(100)),  # 辅助核算: 客户
    Column("aux_supplier", String(100)),  # 供应商
    Column("aux_department", String(100)),  # 部门
    Column("aux_employee", String(100)),  # 职员
    Column("aux_project", String(100)),  # 项目
    UniqueConstraint("voucher_id", "line_no"),
)

attachment = Table(
    "erp_attachment",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("voucher_id", Integer, ForeignKey("erp_voucher.id"), nullable=False, index=True),
    Column("file_name", String(255), nullable=False),
    Column("mime_type", String(100), nullable=False),
    # Relative to the ERP's attachment root (a file server share in real life).
    Column("storage_path", String(500), nullable=False),
    Column("size", Integer, nullable=False),
    Column("uploaded_at", DateTime, nullable=False),
)
