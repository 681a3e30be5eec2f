// A cancel sent inside TLS, the way asyncpg and postgres.js send it: one session (on TLS, from
// `lab env --json`) runs pg_sleep(sleepSeconds) and the driver's own cancel ends it. Through an L4
// balancer such a CancelRequest is opaque, so it reaches whatever server the balancer picks for that new
// connection; with more than one server it can be lost, and the sleep then runs to its end.
import { optionsFromEnv, runAsyncpg, type LabEnv } from './matrix.js';
import { postgresJsCancel, type CancelOutcome } from './postgres-js.js';

const TLS_MODES = ['require', 'verify-ca', 'verify-full'];

/**
 * ok: the query ended with 57014 within 3 s of the cancel (the matrix's bound). elapsedMs: from the cancel
 * to the query's end; a lost cancel gives ok=false once the sleep has run out (elapsedMs about the rest of
 * it), never a throw. The session uses the lab's sslmode when it is require or stronger, else require.
 */
export async function cancelThroughTls(client: 'asyncpg' | 'postgres.js', env: LabEnv, sleepSeconds: number): Promise<CancelOutcome> {
  const sleep = Math.max(1, Math.round(sleepSeconds));
  try {
    const base = optionsFromEnv(env);
    const sslmode = TLS_MODES.includes(base.sslmode) ? base.sslmode : 'require';
    const options = { ...base, sslmode };
    if (client === 'postgres.js') {
      // cancel_timeout past the sleep: postgres.js would otherwise close the connection 5 s after a lost cancel
      return await postgresJsCancel(options, sleep, sleep + 10);
    }
    const run = await runAsyncpg(options, { ...env, PGSSLMODE: sslmode }, (sleep + 30) * 1000, ['cancel'], ['--sleep', String(sleep)]);
    const result = run.checks.cancel as { ok: boolean; detail: string; elapsedMs?: number } | undefined;
    if (!result) return { ok: false, elapsedMs: -1, detail: `asyncpg: ${run.error ?? 'no cancel result'}` };
    return { ok: result.ok, elapsedMs: result.elapsedMs ?? -1, detail: result.detail };
  } catch (error) {
    return { ok: false, elapsedMs: -1, detail: `${client}: ${(error as Error).message}` };
  }
}
