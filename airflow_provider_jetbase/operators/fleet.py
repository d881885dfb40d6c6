"""JetbaseFleetSummaryOperator: one table for a fleet run (a mapped ``JetbaseUpgradeOperator``).

It runs after every mapped upgrade (``trigger_rule="all_done"``), reads what each left in XCom (its
return value, or its ``jetbase_error`` record when it failed), logs one line per database and
returns the rows. The DAG run's state comes from its leaf tasks, and this task is the leaf: so that
a failed database still fails the run, the summary fails after pushing its table when any database
failed or has no result (``fail_on_error=False`` to report only).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_jetbase.errors import JetbaseProviderError, ParameterError
from airflow_provider_jetbase.operators import _params

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class FleetFailedError(JetbaseProviderError):
    """At least one database of the fleet failed to migrate (or its task never ran)."""


class JetbaseFleetSummaryOperator(BaseOperator):
    """Reduce the mapped XComs of a fleet upgrade into one table.

    :param upgrade_task_id: task id of the mapped :class:`JetbaseUpgradeOperator`.
    :param jetbase_conn_ids: the targets, in the order given to ``.expand(jetbase_conn_id=...)``
        (the same list or upstream task output): map index ``i`` migrated ``jetbase_conn_ids[i]``.
        Templated; a rendered JSON list is accepted.
    :param fail_on_error: fail (after pushing the table to XCom) when a database failed or its
        task left no result. Templated.
    :return: ``{"databases": [{"database", "status", "version_before", "version_after", "applied",
        "duration_ms", "error"}, ...], "counts": {status: n}, "failed": [conn_id, ...]}``; status is
        ``"migrated"``, ``"up to date"``, ``"failed"`` or ``"no result"``.
    """

    template_fields: Sequence[str] = ("jetbase_conn_ids", "fail_on_error")
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        upgrade_task_id: str,
        jetbase_conn_ids: Any,
        fail_on_error: bool | str = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.upgrade_task_id = upgrade_task_id
        self.jetbase_conn_ids = jetbase_conn_ids
        self.fail_on_error = fail_on_error

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_jetbase import fleet
        from airflow_provider_jetbase.operators.jetbase import ERROR_XCOM_KEY

        conn_ids = _conn_ids(self.jetbase_conn_ids)
        ti = context["ti"]
        # One pull per map index, so a failed or never-run index is a None in its place on every
        # Airflow 3.x (no reliance on how xcom_pull orders or skips missing indexes).
        indexes = list(range(len(conn_ids)))
        results = _pull(ti, self.upgrade_task_id, "return_value", indexes)
        errors = _pull(ti, self.upgrade_task_id, ERROR_XCOM_KEY, indexes)
        rows = fleet.summarize(conn_ids, results, errors)
        tally = fleet.counts(rows)
        failed = [row.database for row in rows if row.status in (fleet.FAILED, fleet.NO_RESULT)]
        self.log.info(
            "Fleet of %d database(s): %s\n%s",
            len(rows),
            ", ".join(f"{n} {status}" for status, n in tally.items() if n),
            fleet.render_table(rows),
        )
        summary = {"databases": [row.to_dict() for row in rows], "counts": tally, "failed": failed}
        if failed and _params.to_bool("fail_on_error", self.fail_on_error):
            # A failing task's return value is never pushed: push the table first.
            ti.xcom_push(key="return_value", value=summary)
            raise FleetFailedError(f"{len(failed)} of {len(rows)} database(s) failed: {', '.join(failed)}")
        return summary


def _conn_ids(value: Any) -> list[str]:
    if isinstance(value, str):
        # A template renders to text unless the DAG renders native objects: accept a JSON list.
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ParameterError(
            f"Parameter 'jetbase_conn_ids' must be a list of connection ids (or its JSON), got {value!r}"
        )
    return [str(v) for v in value]


def _pull(ti: Any, task_id: str, key: str, indexes: list[int]) -> list[Any]:
    if not indexes:
        return []
    values = ti.xcom_pull(task_ids=task_id, key=key, map_indexes=indexes)
    found = list(values) if isinstance(values, (list, tuple)) else [values]
    return [v if isinstance(v, dict) else None for v in found] + [None] * (len(indexes) - len(found))
