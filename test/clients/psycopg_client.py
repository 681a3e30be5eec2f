#!/usr/bin/python3
"""The client matrix's psycopg 3 driver (Debian's python3-psycopg, run with /usr/bin/python3).

Connects to HOST:PORT as a libpq client would, runs the checks named by --checks and prints one JSON
line: {"client": "psycopg", "version": ..., "checks": {NAME: {"ok": bool, "detail": str}}}.
A check that fails is reported, never raised; the exit code is 0 whenever the line was printed.

Checks: require, verify-full, prefer (each: connects with that sslmode and reads pg_stat_ssl.ssl),
scram (the right password logs in; the role's password is a SCRAM verifier), wrong-password (the
server's FATAL 28P01), extended (a parameterised query, a prepared statement reused 300 times), copy
(a few MB in and out, byte for byte), cancel (conn.cancel() of pg_sleep(30) ends it with 57014).
"""
import argparse
import hashlib
import json
import sys
import threading
import time
import traceback

try:
    import psycopg
    from psycopg import errors as pgerrors
except ImportError as error:  # the test reports a missing runtime itself; this is the fallback
    print(json.dumps({"client": "psycopg", "error": f"psycopg 3 is not importable: {error} (scripts/setup.sh installs python3-psycopg)"}))
    sys.exit(3)

COPY_ROWS = 60_000  # about 4.5 MB of COPY text


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", required=True)
    p.add_argument("--port", required=True)
    p.add_argument("--user", default="postgres")
    p.add_argument("--dbname", default="postgres")
    p.add_argument("--sslmode", default="verify-full", help="sslmode of the checks that are not about sslmode")
    p.add_argument("--rootcert", required=True)
    p.add_argument("--passfile", help="a pgpass file (libpq's passfile)")
    p.add_argument("--password", help="the password, instead of --passfile")
    p.add_argument("--checks", required=True, help="comma-separated check names")
    return p.parse_args()


def conninfo(args, **override):
    params = dict(host=args.host, port=args.port, user=args.user, dbname=args.dbname,
                  sslmode=args.sslmode, sslrootcert=args.rootcert, connect_timeout="10",
                  application_name="client-matrix-psycopg")
    if args.password is not None:
        params["password"] = args.password
    elif args.passfile:
        params["passfile"] = args.passfile
    params.update(override)
    return psycopg.conninfo.make_conninfo(**params)


def connect(args, **override):
    return psycopg.connect(conninfo(args, **override), autocommit=True)


def ssl_in_use(conn):
    row = conn.execute("SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    return row


def check_sslmode(args, mode):
    with connect(args, sslmode=mode) as conn:
        ssl, version, cipher = ssl_in_use(conn)
        return ssl is True, f"sslmode={mode}: pg_stat_ssl.ssl={ssl} {version or ''} {cipher or ''}".strip()


def check_scram(args):
    with connect(args) as conn:
        verifier = conn.execute("SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = current_user").fetchone()[0]
        ssl = ssl_in_use(conn)[0]
        return verifier == "SCRAM-SHA-256$", f"logged in with the lab password (ssl={ssl}); role verifier {verifier!r}"


def check_wrong_password(args):
    try:
        connect(args, password="wrong-" + args.port, passfile="").close()
    except psycopg.OperationalError as error:
        message = str(error)
        # libpq has no SQLSTATE for a failed connection: psycopg keeps the server's message only.
        ok = "password authentication failed" in message and "FATAL" in message
        return ok, f"refused: sqlstate={error.sqlstate} {message.strip().splitlines()[-1]}"
    return False, "a wrong password was accepted"


def check_extended(args):
    with connect(args) as conn:
        row = conn.execute("SELECT %s::int + %s::int AS sum, %s::text AS t", (2, 3, "matrix")).fetchone()
        if row != (5, "matrix"):
            return False, f"parameterised query returned {row!r}"
        total = 0
        for i in range(300):
            total += conn.execute("SELECT %s::int * 2", (i,), prepare=True).fetchone()[0]
        prepared = conn.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql AND statement LIKE 'SELECT $1::int * 2%%'").fetchone()[0]
        ok = total == 2 * sum(range(300)) and prepared == 1
        return ok, f"parameterised query ok; 300 executions of one server-side prepared statement (pg_prepared_statements: {prepared}), sum {total}"


def check_copy(args):
    payload = "".join(f"{i}\tpsycopg row {i:08d} {'x' * 48}\n" for i in range(COPY_ROWS)).encode()
    with connect(args) as conn:
        conn.execute("CREATE TEMP TABLE matrix_copy (id int, payload text)")
        started = time.monotonic()
        with conn.cursor() as cur:
            with cur.copy("COPY matrix_copy FROM STDIN") as copy:
                for offset in range(0, len(payload), 64 * 1024):
                    copy.write(payload[offset:offset + 64 * 1024])
            rows_in = cur.rowcount
            out = bytearray()
            with cur.copy("COPY matrix_copy TO STDOUT") as copy:
                for chunk in copy:
                    out += chunk
        seconds = time.monotonic() - started
        same = hashlib.sha256(out).digest() == hashlib.sha256(payload).digest()
        return rows_in == COPY_ROWS and same, f"{len(payload) / 1e6:.1f} MB in ({rows_in} rows) and out (identical: {same}) in {seconds:.2f} s"


def check_cancel(args):
    with connect(args) as conn:
        cancelled_at = [0.0]

        def cancel():
            cancelled_at[0] = time.monotonic()
            conn.cancel()

        timer = threading.Timer(0.5, cancel)
        timer.start()
        try:
            conn.execute("SELECT pg_sleep(30)")
            return False, "pg_sleep(30) was not cancelled"
        except pgerrors.QueryCanceled as error:
            elapsed = time.monotonic() - cancelled_at[0]
            return elapsed < 3, f"conn.cancel(): {error.sqlstate} {str(error).strip().splitlines()[0]} {elapsed:.2f} s after the cancel"
        except psycopg.Error as error:
            return False, f"ended with {error.sqlstate}: {error}"
        finally:
            timer.cancel()


CHECKS = {
    "require": lambda a: check_sslmode(a, "require"),
    "verify-full": lambda a: check_sslmode(a, "verify-full"),
    "prefer": lambda a: check_sslmode(a, "prefer"),
    "scram": check_scram,
    "wrong-password": check_wrong_password,
    "extended": check_extended,
    "copy": check_copy,
    "cancel": check_cancel,
}


def main():
    args = parse_args()
    results = {}
    for name in [c for c in args.checks.split(",") if c]:
        check = CHECKS.get(name)
        if check is None:
            results[name] = {"ok": False, "detail": "unknown check for psycopg"}
            continue
        try:
            ok, detail = check(args)
        except Exception as error:  # noqa: BLE001 - reported as the check's failure
            ok, detail = False, f"{type(error).__name__}: {error} {traceback.format_exc(limit=1).strip().splitlines()[-1]}"
        results[name] = {"ok": bool(ok), "detail": detail}
    print(json.dumps({"client": "psycopg", "version": f"psycopg {psycopg.__version__}, libpq {psycopg.pq.version()}", "checks": results}))


if __name__ == "__main__":
    main()
