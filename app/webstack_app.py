"""The stack-status app: shows a new ops engineer the stack at work, and serves notes.

Runs under gunicorn (Debian's package) behind nginx on each web server. Configuration comes from
the environment (a root-only file written by the deploy, read by systemd):
  DB_NAME, DB_USER, DB_PASSWORD, DB_PORT, APP_REPLICA_MAX_LAG (seconds), APP_MAX_NOTE_LENGTH,
  APP_DB_CONNECT_TIMEOUT (seconds), APP_WRITE_RETRY_S (seconds), DB_TOPOLOGY_FILE;
and which database is the primary from DB_TOPOLOGY_FILE (DB_PRIMARY=, DB_REPLICAS= lines), re-read
whenever it changes: a database failover repoints the app without a restart or a dropped request
(ops/promote_replica.py). DB_PRIMARY/DB_REPLICAS in the environment are the fallback. Each is a
host or host:port (DB_PORT by default); with automatic failover they are the web server's local
routes (127.0.0.1:3306 writes, :3307 reads), which follow the database agents.
/healthz never touches the database: a database outage must not empty the load balancer's pool.
"""

import datetime
import os
import socket
import time
from contextlib import closing

import pymysql
from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 64 * 1024  # the JSON API never needs more

DB = {
    "primary": os.environ.get("DB_PRIMARY", ""),
    "replicas": [r for r in os.environ.get("DB_REPLICAS", "").split(",") if r],
    "name": os.environ.get("DB_NAME", "webstack"),
    "user": os.environ.get("DB_USER", "webstack"),
    "password": os.environ.get("DB_PASSWORD", ""),
    "port": int(os.environ.get("DB_PORT", "3306")),
}
MAX_LAG = float(os.environ.get("APP_REPLICA_MAX_LAG", "5"))
MAX_NOTE = int(os.environ.get("APP_MAX_NOTE_LENGTH", "1000"))
CONNECT_TIMEOUT = float(os.environ.get("APP_DB_CONNECT_TIMEOUT", "1"))
WRITE_RETRY_S = float(os.environ.get("APP_WRITE_RETRY_S", "3"))
READ_ONLY = 1290  # ER_OPTION_PREVENTS_STATEMENT: the server refused the write, nothing applied
HOSTNAME = socket.gethostname()
TOPOLOGY_FILE = os.environ.get("DB_TOPOLOGY_FILE", "")
VERSION_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "VERSION")
VERSION = open(VERSION_FILE).read().strip() if os.path.exists(VERSION_FILE) else "unknown"
_topology_seen = {"mtime": None}


def refresh_topology() -> None:
    """Re-read DB_TOPOLOGY_FILE when it changed (one stat per request)."""
    try:
        mtime = os.stat(TOPOLOGY_FILE).st_mtime_ns if TOPOLOGY_FILE else None
    except OSError:
        return  # keep the last known topology
    if mtime is None or mtime == _topology_seen["mtime"]:
        return
    with open(TOPOLOGY_FILE) as f:
        values = dict(line.strip().split("=", 1) for line in f
                      if "=" in line and not line.startswith("#"))
    DB["primary"] = values.get("DB_PRIMARY", DB["primary"])
    DB["replicas"] = [r for r in values.get("DB_REPLICAS", "").split(",") if r]
    _topology_seen["mtime"] = mtime


class DatabaseDown(Exception):
    pass


def endpoint(address: str) -> tuple[str, int]:
    """'10.0.0.31' or '127.0.0.1:3307' -> (host, port); DB_PORT when no port is given."""
    host, sep, port = address.rpartition(":")
    return (host, int(port)) if sep and port.isdigit() else (address, DB["port"])


def connect(address: str):
    if not address:
        raise DatabaseDown("no database host configured")
    host, port = endpoint(address)
    try:
        return pymysql.connect(host=host, port=port, user=DB["user"],
                               password=DB["password"], database=DB["name"], autocommit=True,
                               connect_timeout=CONNECT_TIMEOUT, read_timeout=5, write_timeout=5)
    except pymysql.MySQLError as e:
        raise DatabaseDown(f"{address}: {e.args[-1] if e.args else e}") from e


def query(address: str, sql: str, args=()):
    with closing(connect(address)) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


HEARTBEAT = "SELECT ts FROM ha_heartbeat.heartbeat WHERE id = 1"


def replica_lag(address: str) -> float | None:
    """How far the replica's copy of the primary's heartbeat (written every second) trails the
    primary's own: 0 when caught up, even when idle. With the primary down: the beat's age."""
    rows = query(address, HEARTBEAT)
    if not rows:
        return None
    try:
        newest = query(DB["primary"], HEARTBEAT)[0][0]
    except (DatabaseDown, pymysql.MySQLError, IndexError):
        newest = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    return max(0.0, (newest - rows[0][0]).total_seconds())


def server_state(address: str, role: str) -> dict:
    state = {"address": address, "role": role, "reachable": False, "read_only": None,
             "lag_seconds": None, "error": None}
    try:
        state["read_only"] = bool(query(address, "SELECT @@global.read_only")[0][0])
        state["reachable"] = True
        if role == "replica":
            state["lag_seconds"] = replica_lag(address)
    except (DatabaseDown, pymysql.MySQLError) as e:
        state["error"] = str(e)
    return state


def read_server(states: list[dict]) -> str:
    """A replica fresh enough to read from, else the primary."""
    for s in states:
        lag = s["lag_seconds"]
        if s["role"] == "replica" and s["reachable"] and lag is not None and lag <= MAX_LAG:
            return s["address"]
    return DB["primary"]


def db_states() -> list[dict]:
    return [server_state(DB["primary"], "primary")] + [
        server_state(r, "replica") for r in DB["replicas"]]


def count_visit(states: list[dict]) -> dict:
    """Write a visit to the primary, read the count back from the read server."""
    visit = {"count": None, "read_from": None, "error": None}
    if not states[0]["reachable"]:
        visit["error"] = f"the primary is down ({states[0]['error']})"
        return visit
    try:
        query(DB["primary"], "INSERT INTO visits (web_server) VALUES (%s)", (HOSTNAME,))
        visit["read_from"] = read_server(states)
        visit["count"] = query(visit["read_from"], "SELECT COUNT(*) FROM visits")[0][0]
    except (DatabaseDown, pymysql.MySQLError) as e:
        visit["error"] = str(e)
    return visit


@app.before_request
def current_topology():
    refresh_topology()


@app.before_request
def limit_body():
    # Checked up front so an oversize body is a 413 even where a handler would read it silently.
    limit = app.config["MAX_CONTENT_LENGTH"]
    if request.content_length and request.content_length > limit:
        # Drain the body (nginx caps it at nginx_client_max_body_size) before answering:
        # closing with unread data makes the kernel reset the connection, and nginx would
        # then answer 502 instead of this 413.
        request.environ["wsgi.input"].read(request.content_length)
        return _error(413, f"request body too large (limit {limit} bytes)")


@app.get("/healthz")
def healthz():
    return jsonify(status="ok", server=HOSTNAME, version=VERSION)


@app.get("/health/db")
def health_db():
    states = db_states()
    ok = states[0]["reachable"]
    return jsonify(ok=ok, servers=states, read_from=read_server(states)), (200 if ok else 503)


@app.get("/")
def status_page():
    states = db_states()
    forwarded_proto = request.headers.get("X-Forwarded-Proto", "")
    # nginx sets X-Real-IP (the client, trusted from the load balancers only) and X-Proxy-Peer
    # (whoever connected to nginx): when they differ, the request came through a balancer.
    client = request.headers.get("X-Real-IP", request.remote_addr)
    peer = request.headers.get("X-Proxy-Peer", client)
    path = {
        "client": client,
        "load_balancer": peer if peer != client else "",
        "tls": forwarded_proto == "https",
        "proto": forwarded_proto or "http",
    }
    return render_template("status.html", server=HOSTNAME, path=path, states=states,
                           visit=count_visit(states), max_lag=MAX_LAG,
                           now=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))


def _error(status: int, message: str):
    return jsonify(error=message), status


@app.post("/api/notes")
def create_note():
    if not request.is_json:
        return _error(415, "send JSON with Content-Type: application/json")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "text" not in body:
        return _error(400, 'body must be a JSON object with a "text" field')
    text = body["text"]
    if not isinstance(text, str) or not text.strip():
        return _error(422, '"text" must be a non-empty string')
    if len(text) > MAX_NOTE:
        return _error(422, f'"text" is longer than {MAX_NOTE} characters')
    try:
        note_id, primary = insert_note(text)
    except (DatabaseDown, pymysql.MySQLError) as e:
        return _error(503, f"the primary database is unavailable: {e}")
    return jsonify(id=note_id, text=text, written_to=primary, server=HOSTNAME), 201


def insert_note(text: str) -> tuple[int, str]:
    """The note's id and the address of the primary that took it (its bind_address: the
    configured address may be a local route that any database host can be behind).

    During a switchover the old primary is read-only for a moment, then the topology file names
    the new one: a write refused as read-only, or that could not connect, was never applied, so
    it is retried (re-reading the topology) for up to APP_WRITE_RETRY_S. A write whose fate is
    unknown (the connection broke after the INSERT was sent) is not: it could be applied twice.
    """
    deadline = time.monotonic() + WRITE_RETRY_S
    while True:
        primary = DB["primary"]
        try:
            with closing(connect(primary)) as conn, conn.cursor() as cur:
                cur.execute("INSERT INTO notes (text, web_server) VALUES (%s, %s)",
                            (text, HOSTNAME))
                note_id = cur.lastrowid
                cur.execute("SELECT @@global.bind_address")
                return note_id, cur.fetchall()[0][0]
        except (DatabaseDown, pymysql.OperationalError) as e:
            never_applied = isinstance(e, DatabaseDown) or e.args[0] == READ_ONLY
            if not never_applied or time.monotonic() >= deadline:
                raise
        time.sleep(0.1)
        refresh_topology()


@app.get("/api/notes")
def list_notes():
    states = [server_state(r, "replica") for r in DB["replicas"]]
    source = read_server(states)
    try:
        rows = query(source, "SELECT id, text, web_server, created_at FROM notes "
                             "ORDER BY id DESC LIMIT 100")
    except (DatabaseDown, pymysql.MySQLError) as e:
        return _error(503, f"no database is available for reads: {e}")
    notes = [{"id": r[0], "text": r[1], "web_server": r[2], "created_at": r[3].isoformat()}
             for r in rows]
    return jsonify(notes=notes, read_from=source, server=HOSTNAME)


@app.errorhandler(HTTPException)
def http_error(e: HTTPException):
    """Every error of the API is JSON, including 404, 405 and 413 (body too large)."""
    return _error(e.code or 500, e.description or e.name)
