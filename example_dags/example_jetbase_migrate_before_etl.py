"""Migrate before ETL: bring the schema up to date, then load data into the tables it created.

Connection: ``jetbase_demo``. ``make demo`` (``scripts/demo.py``) points it at an embedded SQLite
file with ``AIRFLOW_CONN_JETBASE_DEMO='{"conn_type": "sqlite", "host": "/abs/path/demo.db"}'``;
any other supported database works the same (``postgres://user:pass@host:5432/db``...). Each example
DAG has its own migrations folder and connection id; point them at different databases or, on
PostgreSQL, at different schemas (``postgres_schema``), as Jetbase keeps one version table per schema.

Migrations: ``migrations/migrate_before_etl/`` next to this file (a relative ``migrations_dir`` is
resolved against the DAG file's folder). When ``migrate`` applies something it emits an event for
the asset ``jetbase://jetbase_demo``; a DAG scheduled on ``jetbase_asset("jetbase_demo")`` runs
after each schema change.

Run it without a scheduler: ``python example_jetbase_migrate_before_etl.py`` (``dag.test()``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_jetbase.operators.jetbase import JetbaseUpgradeOperator

CONN_ID = "jetbase_demo"
CUSTOMERS = {1: "Ada", 2: "Grace"}
ORDERS = ((1, 1250), (2, 4999), (1, 300))  # (customer_id, amount_cents) loaded for each day


with DAG(
    dag_id="example_jetbase_migrate_before_etl",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1),
    catchup=False,
    tags=["example", "jetbase"],
    doc_md=__doc__,
) as dag:
    migrate = JetbaseUpgradeOperator(
        task_id="migrate",
        jetbase_conn_id=CONN_ID,
        migrations_dir="migrations/migrate_before_etl",
    )

    @task
    def load_daily_sales(ds: str | None = None) -> dict[str, Any]:
        """Uses the tables the migrations created: orders of the day, then their daily total."""
        from sqlalchemy import text

        from airflow_provider_jetbase.hooks.jetbase import JetbaseHook

        day = ds or dt.date.today().isoformat()
        first_id = int(day.replace("-", "")) * 10  # deterministic ids: a re-run replaces the day
        engine = JetbaseHook(jetbase_conn_id=CONN_ID).get_sqlalchemy_engine()
        try:
            with engine.begin() as conn:
                known = {row[0] for row in conn.execute(text("SELECT id FROM customers"))}
                for customer_id, name in CUSTOMERS.items():
                    if customer_id not in known:
                        conn.execute(
                            text("INSERT INTO customers (id, name) VALUES (:id, :name)"),
                            {"id": customer_id, "name": name},
                        )
                conn.execute(text("DELETE FROM orders WHERE ordered_on = :day"), {"day": day})
                for offset, (customer_id, cents) in enumerate(ORDERS):
                    conn.execute(
                        text(
                            "INSERT INTO orders (id, customer_id, amount_cents, ordered_on) "
                            "VALUES (:id, :customer_id, :cents, :day)"
                        ),
                        {"id": first_id + offset, "customer_id": customer_id, "cents": cents, "day": day},
                    )
                conn.execute(text("DELETE FROM daily_sales WHERE sales_day = :day"), {"day": day})
                conn.execute(
                    text(
                        "INSERT INTO daily_sales (sales_day, orders_count, total_cents) "
                        "SELECT ordered_on, COUNT(*), SUM(amount_cents) FROM orders "
                        "WHERE ordered_on = :day GROUP BY ordered_on"
                    ),
                    {"day": day},
                )
                count, total = conn.execute(
                    text("SELECT orders_count, total_cents FROM daily_sales WHERE sales_day = :day"),
                    {"day": day},
                ).one()
        finally:
            engine.dispose()
        print(f"Loaded {count} orders for {day}, {total} cents in total")
        return {"day": day, "orders": int(count), "total_cents": int(total)}

    migrate >> load_daily_sales()


if __name__ == "__main__":
    dag.test()
