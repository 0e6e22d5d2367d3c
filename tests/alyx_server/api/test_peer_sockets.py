"""`Peers`: sockets in the run directory of a database, real Unix sockets in one process."""

from __future__ import annotations

import stat
from pathlib import Path

from aiohttp import web

from alyx_server.api.peers import Peers, parse_socket_name, socket_name


async def serve_state(peers: Peers, body: dict[str, str]) -> web.AppRunner:
    async def state(request: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/state", state)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, peers.listen()).start()
    return runner


async def test_call_all_answers_each_sibling_and_removes_the_socket_of_a_dead_one(tmp_path: Path) -> None:
    database = tmp_path / "alyx.db"
    me, sibling = Peers(database, "1", pid=101), Peers(database, "2", pid=102)
    runner = await serve_state(sibling, {"name": "2"})
    dead = Peers(database, "3", pid=103)
    gone = dead.listen()
    gone.close()  # a process killed before it removed its socket
    try:
        assert [(p.worker, p.pid) for p in me.siblings()] == [("2", 102), ("3", 103)]

        answers = await me.call_all("/state", timeout=5)

        assert [(a.peer.worker, a.status, a.body) for a in answers] == [("2", 200, {"name": "2"})]
        assert not dead.path.exists()
        assert [(p.worker, p.pid) for p in me.siblings()] == [("2", 102)]
    finally:
        sibling.close()
        await runner.cleanup()
    assert not sibling.path.exists()
    assert stat.S_IMODE(me.folder.stat().st_mode) == 0o700


async def test_a_sibling_that_hangs_is_answered_with_its_error_not_waited_for(tmp_path: Path) -> None:
    database = tmp_path / "alyx.db"
    me, stuck = Peers(database, "1", pid=201), Peers(database, "2", pid=202)
    listener = stuck.listen()  # listens, never accepts: a worker whose loop is blocked
    try:
        answers = await me.call_all("/state", timeout=0.2)
        assert [(a.peer.worker, a.status, a.ok) for a in answers] == [("2", None, False)]
        assert answers[0].error
        assert stuck.path.exists()  # alive: its socket stays
    finally:
        listener.close()
        stuck.close()


def test_socket_names_hold_the_worker_and_pid_and_nothing_else() -> None:
    assert parse_socket_name(socket_name("web-1", 42)) == ("web-1", 42)
    assert parse_socket_name(socket_name("a/b c", 7)) == ("a_b_c", 7)
    assert parse_socket_name(".peer-1-42.sock.0a1b2c3d") is None  # one being put in place
    assert parse_socket_name("wake-42.sock") is None
    assert len(str(Peers(Path("/x" * 200) / "alyx.db", "1").path)) < 100
