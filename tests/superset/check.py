"""Superset against `strata serve --pg`, through Superset's REST API. Run with the Superset venv's
python; run.sh sets everything up and calls it.

  check.py tap LISTEN_PORT UPSTREAM_PORT LOG
      A transparent TCP relay that logs every statement a client sends (simple and extended
      protocol) and every error the server answers to LOG, one line each (text JSON-quoted).
  check.py api SUPERSET_URL PG_URI EXPECTED_JSON [WIRE_LOG]
      The steps: connection, schemas and tables, dataset, chart and its data; then checks
      that need only those (time grain, time range filter, SQL Lab), all run. EXPECTED_JSON
      holds `strata show -o json` of `status, n, n_range` (orders by status, all and from
      2024-03-01 to 2024-06-01) to compare with. Prints one `ok` line per step; on a failure
      prints the response and the statements the server refused (from WIRE_LOG), and exits 1.
"""

import json
import socket
import struct
import sys
import threading


# -- the wire tap -----------------------------------------------------------------------------

def _read(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def _cstr(body):
    return body.split(b"\0", 1)[0].decode("utf-8", "replace")


def _relay(conn_id, client, server, log, lock):
    def write(line):
        with lock:
            log.write(f"c{conn_id} {line}\n")
            log.flush()

    def close_both():
        for s in (client, server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def raw(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        close_both()

    def messages(src, dst, on_message):
        try:
            while True:
                kind = _read(src, 1)
                length = struct.unpack("!i", _read(src, 4))[0]
                body = _read(src, length - 4)
                on_message(kind, body)
                dst.sendall(kind + struct.pack("!i", length) + body)
        except (EOFError, OSError):
            pass
        close_both()

    def from_client(kind, body):
        if kind == b"Q":
            write("Q " + json.dumps(_cstr(body)))
        elif kind == b"P":
            name = _cstr(body)
            write("P " + json.dumps(_cstr(body[len(name.encode()) + 1:])))

    def from_server(kind, body):
        if kind == b"E":
            fields = {chr(p[0]): p[1:].decode("utf-8", "replace") for p in body.split(b"\0") if p}
            write(f"E {fields.get('S', '')} {fields.get('C', '')}: {json.dumps(fields.get('M', ''))}")

    # Startup: SSL/GSS requests (answered with one byte), then the untyped startup message.
    followed = True
    try:
        while True:
            head = _read(client, 8)
            length, code = struct.unpack("!ii", head)
            server.sendall(head + _read(client, length - 8))
            if code not in (80877103, 80877104):
                break
            answer = _read(server, 1)
            client.sendall(answer)
            if answer != b"N":  # TLS or GSS encryption: relay without reading
                followed = False
                break
    except (EOFError, OSError):
        close_both()
        return
    if followed:
        pairs = [(messages, client, server, from_client), (messages, server, client, from_server)]
    else:
        pairs = [(raw, client, server), (raw, server, client)]
    threads = [threading.Thread(target=p[0], args=p[1:], daemon=True) for p in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    server.close()


def tap(listen_port, upstream_port, log_path):
    log = open(log_path, "a", encoding="utf-8")
    lock = threading.Lock()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(listen_port)))
    listener.listen(64)
    n = 0
    while True:
        client, _ = listener.accept()
        n += 1
        try:
            server = socket.create_connection(("127.0.0.1", int(upstream_port)))
        except OSError:
            client.close()
            continue
        threading.Thread(target=_relay, args=(n, client, server, log, lock), daemon=True).start()


def refused_statements(wire_log):
    """Each error in the wire log with the statement before it on the same connection."""
    last, out = {}, []
    try:
        lines = open(wire_log, encoding="utf-8").read().splitlines()
    except OSError:
        return out
    for line in lines:
        conn, _, rest = line.partition(" ")
        if rest.startswith(("Q ", "P ")):
            last[conn] = json.loads(rest[2:])
        elif rest.startswith("E "):
            out.append((last.get(conn, "?"), rest[2:]))
    return out


# -- the REST API steps -----------------------------------------------------------------------

class StepFailed(Exception):
    pass


def api(base, pg_uri, expected_path, wire_log=None):
    import requests
    import prison as rison

    rows = json.load(open(expected_path))["show"]
    expected = {r["status"]: r["n"] for r in rows}
    expected_range = {r["status"]: r["n_range"] for r in rows if r["n_range"]}
    s = requests.Session()
    s.headers["Referer"] = base
    seen_errors = [0]

    def fail(step, resp=None, detail=""):
        print(f"FAIL {step}{': ' + detail if detail else ''}")
        if resp is not None:
            print(f"  HTTP {resp.status_code} {resp.request.method} {resp.request.url}")
            print("  " + resp.text[:4000])
        if wire_log:
            errs = refused_statements(wire_log)[seen_errors[0]:]
            seen_errors[0] += len(errs)
            if errs:
                print("  statements Strata refused during this step:")
            for sql, err in errs:
                print(f"    SQL:   {' '.join(sql.split())[:2000]}")
                print(f"    ERROR: {err}")
        raise StepFailed(step)

    def step_done(name):
        print(f"ok {name}")
        if wire_log:
            seen_errors[0] = len(refused_statements(wire_log))

    def call(step, method, path, ok=(200, 201), **kw):
        r = s.request(method, base + path, timeout=120, **kw)
        if r.status_code not in ok:
            fail(step, r)
        try:
            return r.json()
        except ValueError:
            fail(step, r, "not JSON")

    metric = {"expressionType": "SQL", "sqlExpression": "COUNT(*)", "label": "n"}

    def chart_data(step, ds_id, **query):
        body = call(step, "POST", "/api/v1/chart/data", json={
            "datasource": {"id": ds_id, "type": "table"},
            "queries": [dict({"metrics": [metric], "row_limit": 1000}, **query)],
            "result_format": "json", "result_type": "full"})
        return by_status(step, body)

    def by_status(step, body):
        q = body["result"][0]
        if q.get("error"):
            fail(step, detail=q["error"])
        return {r["status"]: r["n"] for r in q["data"]}

    def same(step, got, want, what="strata show"):
        if got != want:
            fail(step, detail=f"got {got}, {what} gives {want}")
        step_done(f"{step}: {len(got)} rows, {sum(got.values())} orders, as {what}")

    # The main path; each step needs the one before.
    def main_path():
        body = call("login", "POST", "/api/v1/security/login",
                    json={"username": "admin", "password": "admin", "provider": "db", "refresh": True})
        s.headers["Authorization"] = "Bearer " + body["access_token"]
        s.headers["X-CSRFToken"] = call("csrf token", "GET", "/api/v1/security/csrf_token/")["result"]
        step_done("login to Superset")

        # 1. the database connection
        call("test connection", "POST", "/api/v1/database/test_connection/",
             json={"database_name": "strata", "sqlalchemy_uri": pg_uri})
        step_done("test connection")
        db_id = call("add database", "POST", "/api/v1/database/",
                     json={"database_name": "strata", "sqlalchemy_uri": pg_uri,
                           "expose_in_sqllab": True})["id"]
        step_done(f"add database (id {db_id})")

        # 2. schemas and tables
        schemas = call("list schemas", "GET", f"/api/v1/database/{db_id}/schemas/",
                       params={"q": rison.dumps({"force": True})})["result"]
        if "gold" not in schemas:
            fail("list schemas", detail=f"no gold schema in {schemas}")
        step_done(f"list schemas: {', '.join(schemas)}")
        tables = call("list tables", "GET", f"/api/v1/database/{db_id}/tables/",
                      params={"q": rison.dumps({"schema_name": "gold", "force": True})})["result"]
        names = sorted(t["value"] for t in tables)
        if "orders" not in names:
            fail("list tables", detail=f"no orders table in {names}")
        step_done(f"list tables in gold: {', '.join(names)}")
        meta = call("table metadata", "GET", f"/api/v1/database/{db_id}/table_metadata/",
                    params={"name": "orders", "schema": "gold"})
        cols = [c["name"] for c in meta.get("columns", [])]
        if "status" not in cols:
            fail("table metadata", detail=f"columns {cols}")
        step_done(f"table metadata of gold.orders: {len(cols)} columns")

        # 3. the dataset (Superset reads its columns through SQLAlchemy's inspector)
        ds_id = call("create dataset", "POST", "/api/v1/dataset/",
                     json={"database": db_id, "schema": "gold", "table_name": "orders"})["id"]
        ds = call("read dataset", "GET", f"/api/v1/dataset/{ds_id}")["result"]
        ds_cols = {c["column_name"]: c for c in ds["columns"]}
        if sorted(ds_cols) != sorted(cols):
            fail("create dataset", detail=f"dataset columns {sorted(ds_cols)}, table columns {cols}")
        if not ds_cols["order_date"]["is_dttm"]:
            fail("create dataset", detail=f"order_date is not temporal: {ds_cols['order_date']}")
        step_done(f"create dataset gold.orders (id {ds_id}, {len(ds_cols)} columns)")

        # 4. a chart: count(*) by status, and its data
        form_data = {"datasource": f"{ds_id}__table", "viz_type": "echarts_timeseries_bar",
                     "x_axis": "status", "metrics": [metric], "groupby": [], "row_limit": 1000}
        query_context = {
            "datasource": {"id": ds_id, "type": "table"},
            "queries": [{"columns": ["status"], "metrics": [metric],
                         "orderby": [[metric, False]], "row_limit": 1000}],
            "form_data": form_data,
            "result_format": "json",
            "result_type": "full",
        }
        chart_id = call("create chart", "POST", "/api/v1/chart/", json={
            "slice_name": "Orders by status", "viz_type": "echarts_timeseries_bar",
            "datasource_id": ds_id, "datasource_type": "table",
            "params": json.dumps(form_data), "query_context": json.dumps(query_context)})["id"]
        step_done(f"create chart (id {chart_id})")
        query_context["form_data"]["slice_id"] = chart_id
        same("chart data", by_status("chart data", call(
            "chart data", "POST", "/api/v1/chart/data", json=query_context)), expected)
        same("saved chart's data", by_status("saved chart's data", call(
            "saved chart's data", "GET", f"/api/v1/chart/{chart_id}/data/")), expected)
        return db_id, ds_id

    try:
        db_id, ds_id = main_path()
    except StepFailed:
        sys.exit(1)

    # Independent checks of what charts, dashboards and SQL Lab do next; all run.
    failed = []

    def big_number():
        body = call("big number", "POST", "/api/v1/chart/data", json={
            "datasource": {"id": ds_id, "type": "table"},
            "queries": [{"metrics": [metric], "columns": []}],
            "result_format": "json", "result_type": "full"})["result"][0]
        if body.get("error") or body["data"] != [{"n": sum(expected.values())}]:
            fail("big number", detail=json.dumps(body)[:2000])
        step_done(f"big number: {body['data'][0]['n']} orders")

    def time_grain():
        step = "monthly time grain (DATE_TRUNC)"
        body = call(step, "POST", "/api/v1/chart/data", json={
            "datasource": {"id": ds_id, "type": "table"},
            "queries": [{"metrics": [metric], "row_limit": 1000, "columns": [{
                "timeGrain": "P1M", "columnType": "BASE_AXIS", "sqlExpression": "order_date",
                "label": "order_date", "expressionType": "SQL"}]}],
            "result_format": "json", "result_type": "full"})["result"][0]
        if body.get("error") or sum(r["n"] for r in body["data"]) != sum(expected.values()):
            fail(step, detail=json.dumps(body)[:2000])
        step_done(f"{step}: {len(body['data'])} months, {sum(r['n'] for r in body['data'])} orders")

    def time_range():
        # A chart's or dashboard's time range: Superset writes the bounds as TO_DATE(..., 'YYYY-MM-DD').
        step = "time range filter 2024-03-01 : 2024-06-01"
        same(step, chart_data(step, ds_id, columns=["status"], filters=[
            {"col": "order_date", "op": "TEMPORAL_RANGE", "val": "2024-03-01 : 2024-06-01"}]),
            expected_range)

    def sql_lab():
        # SQL Lab with schema gold selected: Superset sets search_path, the table is unqualified.
        step = "SQL Lab in schema gold"
        body = call(step, "POST", "/api/v1/sqllab/execute/", json={
            "database_id": db_id, "schema": "gold", "runAsync": False, "client_id": "strata1",
            "sql": "SELECT status, COUNT(*) AS n FROM orders GROUP BY status",
            "queryLimit": 1000, "select_as_cta": False, "tab": "check"})
        same(step, {r["status"]: r["n"] for r in body["data"]}, expected)

    for check in (big_number, time_grain, time_range, sql_lab):
        try:
            check()
        except StepFailed as e:
            failed.append(str(e))
    if failed:
        print(f"{len(failed)} failed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "tap":
        tap(*args)
    elif cmd == "api":
        api(*args)
    else:
        sys.exit(f"unknown command {cmd}")
