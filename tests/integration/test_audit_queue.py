"""The audit log's queue for rows that record no change of their own: committed by its writer thread, by
``flush``, before ``recent`` reads, and by ``close`` at shutdown, in the order they were queued."""

from __future__ import annotations

from sqlalchemy import func, select

from idp_mcp.core.audit import AuditLog
from idp_mcp.core.identity import IdentityCore
from idp_mcp.domain import Actor
from idp_mcp.store.tables import audit_log

ACTOR = Actor(tenant_id="default", sub="user-1", client_id="client-1", client_name="Agent")


def committed(core: IdentityCore, action_prefix: str) -> list[str]:
    with core.db.read() as conn:
        query = select(audit_log.c.action).where(audit_log.c.action.startswith(action_prefix))
        return list(conn.execute(query.order_by(audit_log.c.id)).scalars())


def queue_of(core: IdentityCore) -> AuditLog:
    """An audit log on the core's database whose writer thread would wait an hour: only flush/close commit."""
    return AuditLog(core.db, core.clock, flush_interval=3600.0)


def test_queued_rows_are_committed_by_close_in_order(core: IdentityCore) -> None:
    log = queue_of(core)
    for i in range(5):
        log.enqueue(ACTOR, f"test.row{i}", details={"i": i})
    assert committed(core, "test.") == []

    log.close()

    assert committed(core, "test.") == [f"test.row{i}" for i in range(5)]


def test_recent_commits_the_queue_first_and_keeps_human_and_agent(core: IdentityCore) -> None:
    log = queue_of(core)
    log.enqueue(ACTOR, "test.read", details={"access_token": "secret-value"})

    [entry] = [entry for entry in log.recent("default") if entry.action == "test.read"]

    assert (entry.actor_sub, entry.actor_client_id, entry.actor_client_name) == ("user-1", "client-1", "Agent")
    assert entry.details == {"access_token": "[redacted]"}  # queued rows pass the scrubber too
    log.close()


def test_the_writer_thread_commits_a_batch_in_one_go(core: IdentityCore) -> None:
    log = AuditLog(core.db, core.clock, flush_interval=0.01)
    for i in range(50):
        log.enqueue(ACTOR, "test.batch", details={"i": i})
    log.close()  # joins the writer; whatever it had not committed yet, close does

    with core.db.read() as conn:
        count = conn.execute(select(func.count()).where(audit_log.c.action == "test.batch")).scalar_one()
    assert count == 50


def test_a_closed_log_starts_its_writer_again_when_rows_come(core: IdentityCore) -> None:
    log = AuditLog(core.db, core.clock, flush_interval=0.01)
    log.enqueue(ACTOR, "test.before")
    log.close()
    log.enqueue(ACTOR, "test.after")
    log.flush()

    assert committed(core, "test.") == ["test.before", "test.after"]
    log.close()


def test_a_riding_row_takes_the_rows_queued_before_it_into_the_changes_transaction(core: IdentityCore) -> None:
    log = queue_of(core)
    log.enqueue(ACTOR, "test.read")
    with log.riding(ACTOR, "test.call") as call, core.db.transaction() as conn:
        log.write(conn, ACTOR, "test.change")

    assert call.written
    assert committed(core, "test.") == ["test.read", "test.change", "test.call"]
    log.close()


def test_rows_taken_by_a_change_that_rolls_back_return_to_the_queue(core: IdentityCore) -> None:
    log = queue_of(core)
    log.enqueue(ACTOR, "test.read")
    try:
        with log.riding(ACTOR, "test.call"), core.db.transaction() as conn:
            log.write(conn, ACTOR, "test.change")
            raise RuntimeError("the change fails after its audit row")
    except RuntimeError:
        pass
    assert committed(core, "test.") == []

    log.close()

    assert committed(core, "test.") == ["test.read"]


def test_a_use_case_that_changes_nothing_still_records_the_riding_row_in_its_transaction(core: IdentityCore) -> None:
    log = queue_of(core)
    with log.riding(ACTOR, "test.call") as call, core.db.transaction() as conn:
        log.ride(conn)

    assert call.written
    assert committed(core, "test.") == ["test.call"]
    log.close()
