"""A small but realistic ERP general-ledger database (总账) used by the demo, the tests and the benchmark.

The schema imitates what Kingdee/Yonyou/Odoo keep for vouchers: a voucher header (凭证头), its lines
(分录) with auxiliary dimensions (辅助核算), a chart of accounts (科目表) and attachments stored on a
file server and referenced by path, as real ERPs do.
"""
