#!/usr/bin/python3
"""The client matrix's asyncpg driver (Debian's python3-asyncpg, run with /usr/bin/python3).

Connects to HOST:PORT as an asyncpg user would, runs the checks named by --checks and prints one JSON
line: {"client": "asyncpg", "version": ..., "checks": {NAME: {"ok": bool, "detail": str}}}.
A check that fails is reported, never raised; the exit code is 0 whenever the line was printed.

Checks: require, verify-full, prefer (each: connects with that sslmode and reads pg_stat_ssl.ssl),
scram (the pgpass file's password logs in; the role's password is a SCRAM verifier), wrong-password
(the server's FATAL 28P01), extended (a parameterised query, a prepared statement reused 300 times),
copy (a few MB in and out, byte for byte), cancel (asyncpg's own cancel of pg_sleep(--sleep) ends it
with 57014 within 3 s of the cancel; the cancel result also carries elapsedMs).

asyncpg sends its CancelRequest inside a new TLS session when the session it cancels uses TLS
(connect_utils._cancel), unlike libpq 15, psycopg, pgjdbc and node-postgres, which send it in plaintext.
"""
import argparse
import asyncio
import hashlib
import json
import ssl
import sys
import time
import traceback

try:
    import asyncpg
except ImportError as error:  # the test reports a missing runtime itself; this is the fallback
    print(json.dumps({"client": "asyncpg", "error": f"asyncpg is not importable: {error} (scripts/setup.sh installs python3-asyncpg)"}))
    sys.exit(3)

COPY_ROWS = 60_000  # about 4.5 MB of COPY text
CHECK_TIMEOUT = 60  # seconds, each check; a longer --sleep gets that much more
CANCEL_AFTER = 0.5  # seconds: the fetch timeout that makes asyncpg cancel the running query
SSL_QUERY = "SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", required=True)
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--user", default="postgres")
    p.add_argument("--dbname", default="postgres")
    p.add_argument("--sslmode", default="verify-full", help="sslmode of the checks that are not about sslmode")
    p.add_argument("--rootcert", required=True)
    p.add_argument("--passfile", required=True, help="a pgpass file (libpq's format; asyncpg reads it as passfile=)")
    p.add_argument("--sleep", type=int, default=30, help="seconds of the pg_sleep the cancel check cancels")
    p.add_argument("--checks", required=True, help="comma-separated check names")
    return p.parse_args()


def ssl_for(args, mode):
    """verify-full as an SSLContext (the lab's CA, host name checked); other modes as asyncpg's own strings."""
    if mode == "verify-full":
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.rootcert)
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        return context
    return mode  # 'require', 'prefer', ...: asyncpg 0.27 parses libpq's sslmode names


async def connect(args, sslmode=None, **override):
    params = dict(host=args.host, port=args.port, user=args.user, database=args.dbname,
                  passfile=args.passfile, ssl=ssl_for(args, sslmode or args.sslmode), timeout=10,
                  command_timeout=CHECK_TIMEOUT, server_settings={"application_name": "client-matrix-asyncpg"})
    params.update(override)
    return await asyncpg.connect(**params)


def ssl_text(row):
    return f"{row['ssl']} {row['version'] or ''} {row['cipher'] or ''}".strip()


async def check_sslmode(args, mode):
    conn = await connect(args, sslmode=mode)
    try:
        row = await conn.fetchrow(SSL_QUERY)
        how = "an ssl.SSLContext (the lab's CA, check_hostname)" if mode == "verify-full" else f"ssl={mode!r}"
        return row["ssl"] is True, f"sslmode={mode} as {how}: pg_stat_ssl.ssl={ssl_text(row)}"
    finally:
        await conn.close(timeout=5)


async def check_scram(args):
    conn = await connect(args)
    try:
        verifier = await conn.fetchval("SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = current_user")
        ssl_on = await conn.fetchval(SSL_QUERY.replace("ssl, version, cipher", "ssl"))
        return verifier == "SCRAM-SHA-256$", f"logged in with the lab password from passfile= (ssl={ssl_on}); role verifier {verifier!r}"
    finally:
        await conn.close(timeout=5)


async def check_wrong_password(args):
    try:
        conn = await connect(args, password=f"wrong-{args.port}", passfile=None)
    except asyncpg.PostgresError as error:
        ok = error.sqlstate == "28P01" and "password authentication failed" in str(error)
        return ok, f"refused: sqlstate={error.sqlstate} {getattr(error, 'severity', '')} {error}"
    await conn.close(timeout=5)
    return False, "a wrong password was accepted"


async def check_extended(args):
    conn = await connect(args)
    try:
        row = await conn.fetchrow("SELECT $1::int + $2::int AS sum, $3::text AS t", 2, 3, "matrix")
        if (row["sum"], row["t"]) != (5, "matrix"):
            return False, f"parameterised query returned {dict(row)!r}"
        statement = await conn.prepare("SELECT $1::int * 2 AS v")
        total = 0
        for i in range(300):
            total += await statement.fetchval(i)
        prepared = await conn.fetchval(
            "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql AND statement = 'SELECT $1::int * 2 AS v'")
        ok = total == 2 * sum(range(300)) and prepared == 1
        return ok, (f"parameterised query ok; 300 executions of conn.prepare()'s statement {statement.get_name()} "
                    f"(pg_prepared_statements: {prepared}), sum {total}")
    finally:
        await conn.close(timeout=5)


async def check_copy(args):
    payload = "".join(f"{i}\tasyncpg row {i:08d} {'x' * 48}\n" for i in range(COPY_ROWS)).encode()

    async def chunks():
        for offset in range(0, len(payload), 64 * 1024):
            yield payload[offset:offset + 64 * 1024]

    out = bytearray()

    async def collect(chunk):
        out.extend(chunk)

    conn = await connect(args)
    try:
        await conn.execute("CREATE TEMP TABLE matrix_copy (id int, payload text)")
        started = time.monotonic()
        status_in = await conn.copy_to_table("matrix_copy", source=chunks())
        status_out = await conn.copy_from_table("matrix_copy", output=collect)
        seconds = time.monotonic() - started
        same = hashlib.sha256(out).digest() == hashlib.sha256(payload).digest()
        ok = status_in == f"COPY {COPY_ROWS}" and status_out == f"COPY {COPY_ROWS}" and same
        return ok, f"{len(payload) / 1e6:.1f} MB in ({status_in}) and out ({status_out}, identical: {same}) in {seconds:.2f} s"
    finally:
        await conn.close(timeout=5)


async def cancel_sleep(args, seconds):
    """asyncpg's own cancel: a fetch whose timeout runs out sends a CancelRequest and raises TimeoutError.

    asyncpg then swallows the server's ErrorResponse (the caller has its TimeoutError already), so the
    pg_sleep runs in a DO block whose handler raises a NOTICE with the SQLSTATE before re-raising it: the
    statement still ends with that error, and the notice shows which. The query ended when the next
    query on the connection returns (asyncpg holds it until the cancelled one's ReadyForQuery).
    Returns (ok, elapsed_ms, detail); elapsed is from the cancel (the timeout) to the query's end.
    """
    conn = await connect(args)
    try:
        session = ssl_text(await conn.fetchrow(SSL_QUERY))
        ended = []
        conn.add_log_listener(lambda _conn, message: ended.append((time.monotonic(), message.message)))
        sleep = (f"DO $$ BEGIN PERFORM pg_sleep({int(seconds)}); "
                 "EXCEPTION WHEN query_canceled THEN RAISE NOTICE '%: %', SQLSTATE, SQLERRM; RAISE; END $$")
        started = time.monotonic()
        try:
            await conn.execute(sleep, timeout=CANCEL_AFTER)
            return False, (time.monotonic() - started) * 1000, f"pg_sleep({seconds}) returned before the {CANCEL_AFTER} s timeout"
        except asyncio.TimeoutError:
            cancelled_at = time.monotonic()
        await conn.fetchval("SELECT 1", timeout=seconds + 10)
        done_at = time.monotonic()
        await asyncio.sleep(0)  # log listeners run through call_soon
        notice = next((n for n in ended if n[1].startswith("57014")), None)
        end = notice[0] if notice else done_at
        elapsed = end - cancelled_at
        how = (f"fetch timeout={CANCEL_AFTER} s: TimeoutError, asyncpg's CancelRequest sent inside a new TLS session "
               f"(asyncpg does so whenever the session is TLS; session pg_stat_ssl.ssl={session})")
        if notice is None and elapsed < min(3, seconds - 1):
            # asyncpg drains a cancelled query's messages after its TimeoutError, the notice among them at
            # times: the statement ending this long before its pg_sleep would have is the cancel's doing.
            return True, elapsed * 1000, f"{how}; the statement ended {elapsed:.2f} s after the cancel, {seconds - elapsed:.1f} s before its pg_sleep({seconds}) would have (the 57014 notice was drained by asyncpg)"
        if notice is None:
            said = "; ".join(n[1] for n in ended) or "no notice"
            return False, elapsed * 1000, f"{how}; not cancelled: the statement ended without 57014 ({said}), {elapsed:.2f} s after the cancel"
        return elapsed < 3, elapsed * 1000, f"{how}; the statement ended with {notice[1]} {elapsed:.2f} s after the cancel"
    finally:
        await conn.close(timeout=5)


CHECKS = {
    "require": lambda a: check_sslmode(a, "require"),
    "verify-full": lambda a: check_sslmode(a, "verify-full"),
    "prefer": lambda a: check_sslmode(a, "prefer"),
    "scram": check_scram,
    "wrong-password": check_wrong_password,
    "extended": check_extended,
    "copy": check_copy,
}


async def run_check(args, name):
    if name == "cancel":
        ok, elapsed_ms, detail = await asyncio.wait_for(cancel_sleep(args, args.sleep), CHECK_TIMEOUT + args.sleep)
        return {"ok": bool(ok), "detail": detail, "elapsedMs": round(elapsed_ms)}
    check = CHECKS.get(name)
    if check is None:
        return {"ok": False, "detail": "unknown check for asyncpg"}
    ok, detail = await asyncio.wait_for(check(args), CHECK_TIMEOUT)
    return {"ok": bool(ok), "detail": detail}


async def main():
    args = parse_args()
    results = {}
    for name in [c for c in args.checks.split(",") if c]:
        try:
            results[name] = await run_check(args, name)
        except asyncio.TimeoutError:
            results[name] = {"ok": False, "detail": f"no result within the check's bound ({CHECK_TIMEOUT} s)"}
        except Exception as error:  # noqa: BLE001 - reported as the check's failure
            where = traceback.format_exc(limit=1).strip().splitlines()[-1]
            results[name] = {"ok": False, "detail": f"{type(error).__name__}: {error} {where}"}
    version = f"asyncpg {asyncpg.__version__}, Python {sys.version.split()[0]}"
    print(json.dumps({"client": "asyncpg", "version": version, "checks": results}))


if __name__ == "__main__":
    asyncio.run(main())
