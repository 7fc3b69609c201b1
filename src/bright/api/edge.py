"""REST routes of the edge: the quarantine of rejected readings and the live energy view."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from bright.edge.live import LiveBoard, live_view
from bright.edge.mqtt import Ingestor
from bright.edge.quarantine import Quarantine
from bright.twin.errors import BadRequestData, ResourceNotFound
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService

router = APIRouter(prefix="/api", tags=["edge"])

#: Largest row id / offset the databases hold (a signed 64-bit integer, SQLite and PostgreSQL).
MAX_DB_INT = 2**63 - 1


def _edge(request: Request) -> tuple[Ingestor, LiveBoard]:
    return request.app.state.ingestor, request.app.state.live_board


@router.get("/edge/quarantine")
def list_quarantine(
    request: Request, status: str = "open", topic: str | None = None, limit: int = 100, offset: int = 0
) -> dict[str, Any]:
    """Rejected payloads with the reason and the raw payload (oldest first)."""
    if status not in ("open", "replayed", "all"):
        raise BadRequestData(f"status {status!r} is not open, replayed or all")
    if not 0 < limit <= 1000:
        raise BadRequestData(f"limit must be 1..1000; got {limit}", field="limit")
    if not 0 <= offset <= MAX_DB_INT:
        raise BadRequestData(f"offset must be 0..{MAX_DB_INT}; got {offset}", field="offset")
    q: Quarantine = request.app.state.quarantine
    entries = q.list(status=None if status == "all" else status, topic=topic, limit=limit, offset=offset)
    return {"entries": [e.as_dict() for e in entries], "count": len(entries)}


@router.post("/edge/quarantine/replay")
def replay_quarantine(request: Request, ids: list[int] | None = None) -> dict[str, Any]:
    """Re-process quarantined payloads after a fix (e.g. the meter now exists).

    The body is a JSON list of entry ids (1 .. 2**63-1), or nothing to replay every open entry;
    an id out of that range is a ``400 BadRequestData`` naming ``ids``.
    """
    bad = [i for i in ids or () if not 1 <= i <= MAX_DB_INT]
    if bad:
        raise BadRequestData(f"ids must be quarantine entry ids 1..{MAX_DB_INT}; got {bad[0]}", field="ids")
    ingestor, _ = _edge(request)
    return dataclasses.asdict(ingestor.replay(ids))


@router.delete("/edge/quarantine/{entry_id}", status_code=204)
def delete_quarantine(request: Request, entry_id: Annotated[int, Path(ge=1, le=MAX_DB_INT)]) -> None:
    q: Quarantine = request.app.state.quarantine
    if q.delete([entry_id]) == 0:
        raise ResourceNotFound(f"no quarantine entry {entry_id}")


@router.get("/communities/{community_key}/live")
def live(request: Request, community_key: str) -> dict[str, Any]:
    """Live power and today's energy per member and for the community (Home Assistant parity)."""
    twin: TwinService = request.app.state.twin
    _, board = _edge(request)
    view = live_view(SeriesStore(twin.engine), twin.store, community_key, board=board)
    return view.as_dict()


def install(app: Any, service: TwinService) -> None:
    """Mount the routes and keep an ingestor (for replays) and a live board on the app."""
    ingestor = Ingestor(service.engine)
    board = LiveBoard()
    ingestor.listeners.append(board.update)
    service.store.listeners.append(ingestor.directory.on_entity_event)
    app.state.ingestor = ingestor
    app.state.live_board = board
    app.state.quarantine = Quarantine(service.engine)
    app.include_router(router)
