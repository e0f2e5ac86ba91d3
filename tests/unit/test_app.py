"""The default app (app/webstack_app.py) answering requests, with MariaDB replaced by a stub.

Flask's test client drives the real app; pymysql.connect is replaced by FakeDatabases, which
speaks just the app's SQL and records every connection, so a test can tell which server a read
or write went to. The lab's tests/test_app.py checks the same contract through nginx on real
hosts; these run in milliseconds and cover the database's failure modes.
"""

import datetime
import importlib.util
import os

import pymysql
import pytest

from webstack import ROOT

PRIMARY, REPLICA = "10.9.0.31", "10.9.0.32"
NOW = datetime.datetime(2025, 3, 1, 12, 0, 0)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class FakeServer:
    def __init__(self, read_only: bool, heartbeat: datetime.datetime | None, notes: int):
        self.up = True
        self.read_only = read_only
        self.heartbeat = heartbeat
        self.notes = [(i, f"note {i}", "web-01", NOW - datetime.timedelta(minutes=10 - i))
                      for i in range(1, notes + 1)]


class FakeDatabases:
    """pymysql.connect for a primary and a replica; `log` holds (address, statement)."""

    def __init__(self):
        self.servers = {PRIMARY: FakeServer(read_only=False, heartbeat=NOW, notes=3),
                        REPLICA: FakeServer(read_only=True, heartbeat=NOW, notes=3)}
        self.log: list[tuple[str, str]] = []

    def connect(self, host, port=3306, **kwargs):
        host = host if port == 3306 else f"{host}:{port}"  # a route: its own "server"
        self.log.append((host, "CONNECT"))
        server = self.servers.get(host)
        if server is None or not server.up:
            raise pymysql.err.OperationalError(
                2003, f"Can't connect to MySQL server on '{host}' (timed out)")
        return FakeConnection(self, host, server)

    def statements(self, prefix: str) -> list[str]:
        """The addresses that ran statements starting with prefix, in order."""
        return [address for address, sql in self.log if sql.startswith(prefix)]


class FakeConnection:
    def __init__(self, databases, address, server):
        self.databases, self.address, self.server = databases, address, server

    def cursor(self):
        return FakeCursor(self)

    def close(self):
        pass


class FakeCursor:
    def __init__(self, conn):
        self.conn, self.rows, self.lastrowid = conn, (), None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, args=()):
        server = self.conn.server
        self.conn.databases.log.append((self.conn.address, sql))
        if sql == "SELECT @@global.read_only":
            self.rows = ((int(server.read_only),),)
        elif sql == "SELECT @@global.bind_address":
            self.rows = ((self.conn.address,),)
        elif sql.startswith("SELECT ts FROM ha_heartbeat.heartbeat"):
            self.rows = ((server.heartbeat,),) if server.heartbeat else ()
        elif sql.startswith("INSERT INTO notes"):
            if server.read_only:
                raise pymysql.err.OperationalError(
                    1290, "The MariaDB server is running with the --read-only option so it "
                          "cannot execute this statement")
            self.lastrowid = len(server.notes) + 1
            server.notes.append((self.lastrowid, args[0], args[1], NOW))
        elif sql.startswith("SELECT id, text, web_server, created_at FROM notes"):
            self.rows = tuple(sorted(server.notes, reverse=True)[:100])
        else:
            raise AssertionError(f"SQL the stub does not know: {sql}")

    def fetchall(self):
        return self.rows


@pytest.fixture(scope="module")
def webstack_app():
    spec = importlib.util.spec_from_file_location("webstack_app", ROOT / "app/webstack_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def db(webstack_app, monkeypatch):
    fake = FakeDatabases()
    monkeypatch.setattr(webstack_app.pymysql, "connect", fake.connect)
    monkeypatch.setitem(webstack_app.DB, "primary", PRIMARY)
    monkeypatch.setitem(webstack_app.DB, "replicas", [REPLICA])
    monkeypatch.setattr(webstack_app, "TOPOLOGY_FILE", "")
    monkeypatch.setattr(webstack_app, "MAX_LAG", 5.0)
    monkeypatch.setattr(webstack_app, "MAX_NOTE", 1000)
    monkeypatch.setattr(webstack_app, "WRITE_RETRY_S", 0.3)
    return fake


@pytest.fixture
def client(webstack_app, db):
    return webstack_app.app.test_client()


def test_healthz_answers_without_touching_the_database(client, db, webstack_app):
    for server in db.servers.values():
        server.up = False
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "server": webstack_app.HOSTNAME,
                                   "version": (ROOT / "app/VERSION").read_text().strip()}
    assert db.log == []


@pytest.mark.parametrize(("body", "content_type", "status", "error"), [
    (b'{"txt": "x"}', "application/json", 400, '"text" field'),
    (b"not json", "application/json", 400, '"text" field'),
    (b'["text"]', "application/json", 400, '"text" field'),
    (b'{"text": 42}', "application/json", 422, "non-empty string"),
    (b'{"text": "   "}', "application/json", 422, "non-empty string"),
    (b'{"text": "' + b"x" * 1001 + b'"}', "application/json", 422, "longer than 1000"),
    (b'{"text": "' + b"x" * 70000 + b'"}', "application/json", 413, "too large"),
    (b"text=x", "application/x-www-form-urlencoded", 415, "send JSON"),
])
def test_bad_note_input_gets_a_json_error_and_writes_nothing(client, db, body, content_type,
                                                             status, error):
    response = client.post("/api/notes", data=body, content_type=content_type)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert error in response.get_json()["error"]
    assert db.log == []


@pytest.mark.parametrize("text", ["hello, stack", "é" * 1000])
def test_a_note_is_written_to_the_primary(client, db, webstack_app, text):
    response = client.post("/api/notes", json={"text": text})
    assert response.status_code == 201
    assert response.get_json() == {"id": 4, "text": text, "written_to": PRIMARY,
                                   "server": webstack_app.HOSTNAME}
    assert db.servers[PRIMARY].notes[-1][:3] == (4, text, webstack_app.HOSTNAME)
    assert db.statements("INSERT") == [PRIMARY]
    assert len(db.servers[REPLICA].notes) == 3


def test_a_note_with_the_primary_down_is_a_503(client, db):
    db.servers[PRIMARY].up = False
    response = client.post("/api/notes", json={"text": "hello"})
    assert response.status_code == 503
    assert response.get_json()["error"].startswith("the primary database is unavailable")


def test_a_write_meeting_a_switchover_is_retried_on_the_new_primary(client, db, webstack_app,
                                                                    tmp_path, monkeypatch):
    # The old primary is read-only (a switchover in progress): the write is refused, nothing
    # applied; then the topology file names the promoted replica and the retry lands there.
    topology = tmp_path / "app.databases"
    monkeypatch.setattr(webstack_app, "TOPOLOGY_FILE", str(topology))
    monkeypatch.setitem(webstack_app._topology_seen, "mtime", None)
    topology.write_text(f"DB_PRIMARY={PRIMARY}\nDB_REPLICAS={REPLICA}\n")
    db.servers[PRIMARY].read_only = True
    refused = db.connect

    def switch_after_the_refusal(host, **kwargs):
        if db.statements("INSERT"):  # an attempt was refused: the replica is promoted
            db.servers[REPLICA].read_only = False
            topology.write_text(f"DB_PRIMARY={REPLICA}\nDB_REPLICAS={PRIMARY}\n")
            os.utime(topology, ns=(2, 2))
        return refused(host, **kwargs)

    monkeypatch.setattr(webstack_app.pymysql, "connect", switch_after_the_refusal)
    response = client.post("/api/notes", json={"text": "during the switchover"})
    assert response.status_code == 201
    assert response.get_json()["written_to"] == REPLICA
    *refused_on, applied_on = db.statements("INSERT")
    assert set(refused_on) == {PRIMARY} and applied_on == REPLICA
    assert len(db.servers[PRIMARY].notes) == 3  # the refused attempts wrote nothing


def test_a_write_whose_fate_is_unknown_is_not_retried(client, db, webstack_app, monkeypatch):
    # The connection broke after the INSERT was sent: it may have been applied, so a retry
    # could write the note twice. The client gets the error instead.
    def lost(self, sql, args=()):
        self.conn.databases.log.append((self.conn.address, sql))
        raise pymysql.err.OperationalError(2013, "Lost connection to server during query")

    monkeypatch.setattr(FakeCursor, "execute", lost)
    response = client.post("/api/notes", json={"text": "hello"})
    assert response.status_code == 503
    assert db.statements("INSERT") == [PRIMARY]


def _read(client):
    response = client.get("/api/notes")
    body = response.get_json()
    return response.status_code, body.get("read_from"), [n["id"] for n in body.get("notes", [])]


def test_notes_are_read_from_a_fresh_replica(client, db):
    db.servers[REPLICA].notes.pop()  # the replica's copy differs: the answer shows its source
    assert _read(client) == (200, REPLICA, [2, 1])
    assert db.statements("SELECT id, text") == [REPLICA]
    note = client.get("/api/notes").get_json()["notes"][0]
    assert note == {"id": 2, "text": "note 2", "web_server": "web-01",
                    "created_at": "2025-03-01T11:52:00"}


@pytest.mark.parametrize("trouble", ["replica down", "replica lags", "replica without heartbeat"])
def test_notes_fall_back_to_the_primary(client, db, trouble):
    replica = db.servers[REPLICA]
    replica.notes.pop()
    if trouble == "replica down":
        replica.up = False
    elif trouble == "replica lags":
        replica.heartbeat = NOW - datetime.timedelta(seconds=5.5)  # the limit is 5 s
    else:
        replica.heartbeat = None
    assert _read(client) == (200, PRIMARY, [3, 2, 1])
    assert db.statements("SELECT id, text") == [PRIMARY]


def test_a_replica_at_the_lag_limit_is_still_read(client, db):
    db.servers[REPLICA].heartbeat = NOW - datetime.timedelta(seconds=5)
    assert _read(client)[:2] == (200, REPLICA)


def test_notes_with_no_replica_configured_come_from_the_primary(client, db, webstack_app,
                                                                monkeypatch):
    monkeypatch.setitem(webstack_app.DB, "replicas", [])
    assert _read(client) == (200, PRIMARY, [3, 2, 1])


def test_notes_with_every_database_down_are_a_503(client, db):
    for server in db.servers.values():
        server.up = False
    response = client.get("/api/notes")
    assert response.status_code == 503
    assert response.get_json()["error"].startswith("no database is available for reads")


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/no/such/page", 404),
    ("DELETE", "/api/notes", 405),
])
def test_http_errors_are_json(client, db, method, path, status):
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]
    assert db.log == []


def test_health_db_reports_each_server(client, db):
    db.servers[REPLICA].heartbeat = NOW - datetime.timedelta(seconds=2)
    response = client.get("/health/db")
    assert response.status_code == 200
    assert response.get_json() == {
        "ok": True, "read_from": REPLICA,
        "servers": [
            {"address": PRIMARY, "role": "primary", "reachable": True, "read_only": False,
             "lag_seconds": None, "error": None},
            {"address": REPLICA, "role": "replica", "reachable": True, "read_only": True,
             "lag_seconds": 2.0, "error": None},
        ]}


def test_health_db_with_the_primary_down_is_a_503_and_still_reads_a_fresh_replica(client, db):
    db.servers[PRIMARY].up = False
    # With the primary gone, the lag is the age of the last heartbeat the replica received.
    db.servers[REPLICA].heartbeat = _utcnow() - datetime.timedelta(seconds=1)
    response = client.get("/health/db")
    assert response.status_code == 503
    body = response.get_json()
    assert body["ok"] is False and body["read_from"] == REPLICA
    primary, replica = body["servers"]
    assert (primary["reachable"], primary["read_only"]) == (False, None)
    assert f"Can't connect to MySQL server on '{PRIMARY}'" in primary["error"]
    assert replica["reachable"] is True and 1 <= replica["lag_seconds"] < 5


def test_a_failover_repoints_the_app_through_the_topology_file(client, db, webstack_app,
                                                               monkeypatch, tmp_path):
    topology = tmp_path / "app.databases"
    monkeypatch.setattr(webstack_app, "TOPOLOGY_FILE", str(topology))
    monkeypatch.setitem(webstack_app._topology_seen, "mtime", None)

    def write(primary, replicas, mtime):
        topology.write_text(f"# written by the deploy\nDB_PRIMARY={primary}\n"
                            f"DB_REPLICAS={replicas}\n")
        os.utime(topology, ns=(mtime, mtime))  # distinct mtimes without waiting

    write(PRIMARY, REPLICA, 1_000_000_000)
    assert client.post("/api/notes", json={"text": "a"}).get_json()["written_to"] == PRIMARY
    db.servers[PRIMARY].up = False  # the failover: db-02 is promoted, the file rewritten
    db.servers[REPLICA].read_only = False
    write(REPLICA, "", 2_000_000_000)
    assert client.post("/api/notes", json={"text": "b"}).get_json()["written_to"] == REPLICA
    assert webstack_app.DB["replicas"] == []
    topology.unlink()  # a missing file keeps the last topology known
    assert client.post("/api/notes", json={"text": "c"}).status_code == 201
    assert db.statements("INSERT") == [PRIMARY, REPLICA, REPLICA]


def test_a_route_with_a_port_is_reached_on_that_port(client, db, webstack_app, monkeypatch):
    """Automatic failover: the app's databases are its web server's local routes."""
    route = "127.0.0.1:3316"  # not DB_PORT: the stub tells the two apart
    db.servers[route] = db.servers.pop(PRIMARY)
    monkeypatch.setitem(webstack_app.DB, "primary", route)
    response = client.post("/api/notes", json={"text": "via the route"})
    assert response.status_code == 201
    assert response.get_json()["written_to"] == route  # the stub's bind_address: the route
    assert db.statements("INSERT") == [route]
    assert webstack_app.endpoint("10.9.0.31") == ("10.9.0.31", 3306)
