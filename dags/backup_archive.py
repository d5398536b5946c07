"""Airflow DAG `backup_archive`: the scheduled 备份 (see archive_hub.dag_factory and archive_hub/backup.py).

Defined only when ARCHIVE_HUB_BACKUP_DIR names the backup (a folder on another disk or mount, or an
S3-compatible store as s3://bucket/prefix, credentials from the AWS_* environment); schedule:
ARCHIVE_HUB_BACKUP_SCHEDULE (default @daily). Airflow's safe-mode parser only opens files that mention
both "airflow" and "dag"; this one does.
"""

from archive_hub.dag_factory import build_backup_dag

backup_archive = build_backup_dag()
