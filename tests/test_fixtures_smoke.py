from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL


def test_each_database_is_fresh_and_reachable(db_url: URL) -> None:
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE smoke (id INTEGER)"))
            conn.execute(text("INSERT INTO smoke VALUES (1)"))
            assert conn.execute(text("SELECT COUNT(*) FROM smoke")).scalar_one() == 1
    finally:
        engine.dispose()
