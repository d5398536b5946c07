"""Airflow DAG `reconcile_bank`: the monthly 银行存款余额调节表 (see archive_hub.dag_factory and
archive_hub/bank_reconciliation.py, archive_hub/bank_reconciliation_record.py).

Defined while config/bank_accounts.yaml (or ARCHIVE_HUB_BANK_ACCOUNTS) exists; schedule:
ARCHIVE_HUB_BANK_RECONCILE_SCHEDULE (default @monthly). Airflow's safe-mode parser only opens files that
mention both "airflow" and "dag"; this one does.
"""

from archive_hub.dag_factory import build_reconcile_bank_dag

reconcile_bank = build_reconcile_bank_dag()
