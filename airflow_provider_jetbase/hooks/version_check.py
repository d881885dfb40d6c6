"""The one "has the database reached this version?" check, shared by the sensor (in a worker) and
the trigger (in the triggerer). Blocking I/O: the trigger runs it in a thread.

One :class:`VersionChecker` (one Engine) serves every check of a trigger run, or of a sensor's
task instance: the connection is looked up and SQLAlchemy's dialect start-up queries run once per
run instead of once per check. The Engine uses ``NullPool``, so between checks no database session
is held (500 waiting triggers must not hold 500 idle sessions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


class VersionChecker:
    """Checks whether ``jetbase_conn_id``'s database is at or past ``target_version``, reusing one
    Engine (built by the first check, in the caller's thread) until :meth:`close`.

    Each check is ONE query, for the latest applied versioned version. It reads every versioned
    row of ``jetbase_migrations`` and picks the highest in Python: Jetbase's version order
    (``1.9 < 1.10``, ``1_2 == 1.2``, any number of parts) is not expressible in portable SQL, and
    the rows are short (5,000 of them cost ~10-20 ms).
    """

    def __init__(self, jetbase_conn_id: str, target_version: str | None = None) -> None:
        self.jetbase_conn_id = jetbase_conn_id
        # None: a checker that only reads versions (versions()), as the version-change trigger.
        self.target_version = None if target_version is None else str(target_version)
        self._engine: Engine | None = None

    def check(self) -> tuple[bool, str | None]:
        """(reached, current); a missing version table means "not yet", a version table the user
        may not read raises TablePermissionError (never "not yet"). Blocking: call it off the
        event loop. ``target_version`` accepts ``1.2`` and ``1_2``."""
        from airflow_provider_jetbase.migration.state import fetch_current_version
        from airflow_provider_jetbase.migration.versions import normalise_version, version_key

        if self.target_version is None:
            raise ValueError("VersionChecker.check() needs a target_version")
        # An invalid target fails before any I/O, naming the parameter.
        target = version_key(normalise_version(self.target_version, "target_version"))
        with self._engine_().connect() as connection:
            current = fetch_current_version(connection)
        return (current is not None and version_key(current) >= target), current

    def versions(self) -> list[str] | None:
        """Every applied versioned version in Jetbase's version order (ONE query, as check()), or
        None when the version table does not exist yet. Blocking: call it off the event loop."""
        from airflow_provider_jetbase.migration.state import fetch_versioned_versions
        from airflow_provider_jetbase.migration.versions import version_order

        with self._engine_().connect() as connection:
            found = fetch_versioned_versions(connection)
        return None if found is None else sorted({v for v in found if v}, key=version_order)

    def _engine_(self) -> Engine:
        # Built by the first check, in the caller's thread (the connection lookup happens there).
        if self._engine is None:
            from sqlalchemy.pool import NullPool

            from airflow_provider_jetbase.hooks.jetbase import JetbaseHook

            hook = JetbaseHook(jetbase_conn_id=self.jetbase_conn_id)
            self._engine = hook.get_sqlalchemy_engine({"poolclass": NullPool})
        return self._engine

    def close(self) -> None:
        """Dispose of the Engine. With NullPool no connection is pooled, so this does no I/O and is
        safe to call on the event loop (e.g. in a cancelled trigger's ``finally``)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()
