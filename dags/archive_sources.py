"""Airflow DAGs: one archiving DAG per file in config/sources/ (see archive_hub.dag_factory).

Airflow's safe-mode parser only opens files that mention both "airflow" and "dag"; this one does.
"""

from archive_hub.dag_factory import dags_from_config

globals().update(dags_from_config())
