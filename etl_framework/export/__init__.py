"""Exports of a workflow to other orchestrators (SPEC §12): `airflow.py` renders an Airflow DAG file."""
