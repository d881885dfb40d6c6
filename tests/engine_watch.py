"""Counting what the sensor and trigger do with SQLAlchemy, through its own events: how many
Engines start up, connections open, statements run, and Engines are disposed."""

from __future__ import annotations

from typing import Any

import pytest


class EngineWatch:
    """Counts, for every Engine the code under test builds: dialect start-ups (the pool's
    ``first_connect``, once per Engine), connections opened, statements sent, and disposals."""

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from sqlalchemy.pool import Pool

        self.first_connects = 0
        self.connects = 0
        self.statements: list[str] = []
        self.disposed: list[int] = []
        real_dispose = Engine.dispose

        def dispose(engine: Engine, close: bool = True) -> None:
            self.disposed.append(id(engine))
            real_dispose(engine, close)

        def on_first_connect(*_: Any) -> None:
            self.first_connects += 1

        def on_connect(*_: Any) -> None:
            self.connects += 1

        def on_statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            self.statements.append(statement)

        mp.setattr(Engine, "dispose", dispose)
        self._listeners: list[tuple[Any, str, Any]] = [
            (Pool, "first_connect", on_first_connect),
            (Pool, "connect", on_connect),
            (Engine, "before_cursor_execute", on_statement),
        ]
        for target, name, fn in self._listeners:
            event.listen(target, name, fn)

    def stop(self) -> None:
        from sqlalchemy import event

        for target, name, fn in self._listeners:
            event.remove(target, name, fn)
