"""Jetbase triggers (see :mod:`airflow_provider_jetbase.triggers.jetbase`)."""
