"""Airflow DAG `reconcile_approvals`: OA approvals against the vouchers that booked them (审批单 ↔ 记账凭证;
see archive_hub.dag_factory and archive_hub/approvals.py).

Defined while config/approval_reconciliation.yaml (or ARCHIVE_HUB_APPROVALS) exists; schedule:
ARCHIVE_HUB_APPROVALS_RECONCILE_SCHEDULE (default @daily). Airflow's safe-mode parser only opens files that
mention both "airflow" and "dag"; this one does.
"""

from archive_hub.dag_factory import build_reconcile_approvals_dag

reconcile_approvals = build_reconcile_approvals_dag()
