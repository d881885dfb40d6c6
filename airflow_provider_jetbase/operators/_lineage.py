"""OpenLineage facets of an upgrade or rollback task (docs/operators.md, "Lineage").

Imported only by ``get_openlineage_facets_on_complete``/``_on_failure``, which the OpenLineage
provider's listener calls, so a deployment without OpenLineage never imports this module. The
facet classes come through ``airflow.providers.common.compat.openlineage`` as in Airflow's own SQL
operators; what the run changed is worked out by the pure migration/lineage.py.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.openlineage.facet import (
    LifecycleStateChange,
    LifecycleStateChangeDatasetFacet,
    OutputDataset,
    PreviousIdentifier,
    RunFacet,
    SQLJobFacet,
)
from airflow.providers.openlineage.extractors import OperatorLineage
from attrs import define

from airflow_provider_jetbase.migration.lineage import LineageRecord

RUN_FACET_KEY = "jetbase"


@define
class JetbaseRunFacet(RunFacet):
    """The Jetbase side of a run: the command, the schema versions before and after, and the
    migration files it ran (in a failed run, those that committed), each with its version, type and
    checksum."""

    command: str
    versionBefore: str | None  # noqa: N815 - OpenLineage facets are camelCase
    versionAfter: str | None  # noqa: N815
    dryRun: bool  # noqa: N815
    failed: bool
    migrations: list[dict[str, Any]]


def run_facet(record: LineageRecord) -> JetbaseRunFacet:
    return JetbaseRunFacet(
        command=record.command,
        versionBefore=record.version_before,
        versionAfter=record.version_after,
        dryRun=record.dry_run,
        failed=record.failed,
        migrations=[
            {
                "filename": run.filename,
                "version": run.version,
                "migrationType": run.migration_type,
                "checksum": run.checksum,
            }
            for run in record.runs
        ],
    )


def operator_lineage(record: LineageRecord) -> OperatorLineage:
    """One output dataset per table the run created, altered, dropped (renamed, truncated), with
    its ``lifecycleStateChange`` facet; the ``sql`` job facet with the statements sent; the
    ``jetbase`` run facet. A dry run changed nothing: the run facet only."""
    run_facets: dict[str, Any] = {RUN_FACET_KEY: run_facet(record)}
    statements = record.statements
    if not statements:
        return OperatorLineage(run_facets=run_facets)
    namespace = record.target.namespace
    outputs = []
    for change in record.changes():
        previous = (
            PreviousIdentifier(namespace=namespace, name=change.previous_name)
            if change.previous_name is not None
            else None
        )
        facet = LifecycleStateChangeDatasetFacet(
            lifecycleStateChange=LifecycleStateChange(change.state), previousIdentifier=previous
        )
        outputs.append(
            OutputDataset(namespace=namespace, name=change.name, facets={"lifecycleStateChange": facet})
        )
    query = "\n".join(s.strip().rstrip(";") + ";" for s in statements)
    return OperatorLineage(
        outputs=outputs, run_facets=run_facets, job_facets={"sql": SQLJobFacet(query=query)}
    )
