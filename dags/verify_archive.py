"""Airflow DAG `verify_archive`: the scheduled check of the whole archive (see archive_hub.dag_factory).

Schedule: ARCHIVE_HUB_VERIFY_SCHEDULE (default @daily). Airflow's safe-mode parser only opens files
that mention both "airflow" and "dag"; this one does.
"""

from archive_hub.dag_factory import build_verify_dag

verify_archive = build_verify_dag()
