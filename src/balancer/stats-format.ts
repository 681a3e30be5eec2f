// The balancer's statistics in the formats people and tools read: HAProxy-style CSV, Prometheus text
// and an HTML page that refreshes itself.
import type { BalancerServerStats, BalancerStats, CancelDropReason, CancelDrops } from './stats-types.js';

function cancelsDroppedTotal(drops: CancelDrops): number {
  return Object.values(drops).reduce((total, n) => total + n, 0);
}

const CSV_COLUMNS = [
  'pxname', 'svname', 'qcur', 'qmax', 'scur', 'smax', 'slim', 'stot', 'bin', 'bout', 'dreq', 'dresp', 'ereq', 'econ', 'eresp',
  'wretr', 'wredis', 'status', 'weight', 'act', 'bck', 'chkfail', 'chkdown', 'lastchg', 'downtime', 'qlimit', 'pid', 'iid',
  'sid', 'throttle', 'lbtot', 'tracked', 'type', 'rate', 'rate_lim', 'rate_max', 'check_status', 'check_code', 'check_duration',
  'last_chk',
] as const;

function csvField(value: string | number | null): string {
  const text = value === null ? '' : String(value);
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** HAProxy's `;csv` layout: one FRONTEND row, one row per server, one BACKEND row. */
export function statsCsv(stats: BalancerStats): string {
  const row = (values: Partial<Record<(typeof CSV_COLUMNS)[number], string | number | null>>) =>
    CSV_COLUMNS.map((column) => csvField(values[column] ?? '')).join(',');
  const sum = (pick: (s: BalancerServerStats) => number) => stats.servers.reduce((total, s) => total + pick(s), 0);
  const up = stats.servers.filter((s) => s.status === 'UP');
  const lines = [`# ${CSV_COLUMNS.join(',')}`];
  // dreq: HAProxy's requests denied by a tcp-request rule; here the CancelRequests dropped.
  const dreq = stats.cancelsDropped ? cancelsDroppedTotal(stats.cancelsDropped) : '';
  lines.push(row({ pxname: stats.name, svname: 'FRONTEND', scur: stats.sessionsCurrent, slim: stats.maxconn ?? '', stot: stats.sessionsTotal, bin: sum((s) => s.bytesIn), bout: sum((s) => s.bytesOut), dreq, status: 'OPEN', pid: process.pid, iid: 1, sid: 0, type: 0 }));
  stats.servers.forEach((s, index) => {
    lines.push(row({
      pxname: stats.name, svname: s.name, qcur: 0, qmax: 0, scur: s.sessionsCurrent, smax: s.sessionsMax, slim: s.maxconn ?? '', stot: s.sessionsTotal,
      bin: s.bytesIn, bout: s.bytesOut, econ: s.connectionErrors, eresp: 0, wretr: s.retries, wredis: s.redispatches,
      status: s.status, weight: s.weight, act: 1, bck: 0, chkfail: s.checksFailed, chkdown: s.downTransitions,
      lastchg: s.lastChangeS, downtime: s.downtimeS, pid: process.pid, iid: 1, sid: index + 1, lbtot: s.sessionsTotal,
      type: 2, check_status: s.checkStatus, last_chk: s.checkMessage,
    }));
  });
  lines.push(row({
    pxname: stats.name, svname: 'BACKEND', qcur: stats.queueCurrent ?? 0, qmax: stats.queueMax ?? 0, scur: sum((s) => s.sessionsCurrent), stot: sum((s) => s.sessionsTotal), bin: sum((s) => s.bytesIn),
    bout: sum((s) => s.bytesOut), econ: sum((s) => s.connectionErrors), wretr: sum((s) => s.retries), wredis: sum((s) => s.redispatches),
    status: up.length ? 'UP' : 'DOWN', weight: up.reduce((t, s) => t + s.weight, 0), act: up.length, bck: 0, pid: process.pid, iid: 1, sid: 0, type: 1,
  }));
  return `${lines.join('\n')}\n`;
}

function label(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Prometheus text exposition (version 0.0.4). */
export function statsPrometheus(stats: BalancerStats): string {
  const out: string[] = [];
  const metric = (name: string, help: string, type: 'gauge' | 'counter', rows: [Record<string, string>, number | null][]) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of rows) {
      if (value === null) continue;
      const text = Object.entries({ balancer: stats.name, ...labels }).map(([k, v]) => `${k}="${label(v)}"`).join(',');
      out.push(`${name}{${text}} ${value}`);
    }
  };
  const per = (pick: (s: BalancerServerStats) => number | null) => stats.servers.map((s): [Record<string, string>, number | null] => [{ server: s.name }, pick(s)]);
  metric('lab_balancer_uptime_seconds', 'Seconds since the balancer started', 'gauge', [[{}, stats.uptimeS]]);
  metric('lab_balancer_current_sessions', 'Client connections open now', 'gauge', [[{}, stats.sessionsCurrent]]);
  metric('lab_balancer_sessions_total', 'Client connections accepted', 'counter', [[{}, stats.sessionsTotal]]);
  metric('lab_balancer_max_connections', 'Client connections allowed at once (maxconn)', 'gauge', [[{}, stats.maxconn ?? null]]);
  metric('lab_balancer_queue_current', 'Clients waiting for a server slot now', 'gauge', [[{}, stats.queueCurrent ?? null]]);
  metric('lab_balancer_queue_max', 'Most clients waiting for a server slot at once', 'gauge', [[{}, stats.queueMax ?? null]]);
  metric('lab_balancer_queue_timeouts_total', 'Clients that waited past timeout queue', 'counter', [[{}, stats.queueTimeouts ?? null]]);
  metric('lab_balancer_cancels_forwarded_total', 'CancelRequests relayed to at least one server', 'counter', [[{}, stats.cancelsForwarded ?? null]]);
  metric('lab_balancer_cancels_inside_tls_total', 'CancelRequests seen inside TLS, which passthrough cannot route (--tls terminate can)', 'counter', [[{}, stats.cancelsInsideTls ?? null]]);
  metric('lab_balancer_cancels_dropped_total', 'CancelRequests dropped, by reason', 'counter',
    Object.entries(stats.cancelsDropped ?? {}).map(([reason, n]): [Record<string, string>, number] => [{ reason }, n]));
  metric('lab_balancer_server_max_connections', 'Server connections allowed at once (maxconn)', 'gauge', per((s) => s.maxconn ?? null));
  metric('lab_balancer_server_up', '1 when the server takes new sessions', 'gauge', per((s) => (s.status === 'UP' ? 1 : 0)));
  metric('lab_balancer_server_status', 'Server state (1 for the current one)', 'gauge',
    stats.servers.flatMap((s) => (['UP', 'DOWN', 'MAINT', 'DRAIN', 'NOLB'] as const).map((state): [Record<string, string>, number] => [{ server: s.name, state }, s.status === state ? 1 : 0])));
  metric('lab_balancer_server_current_sessions', 'Sessions open on the server', 'gauge', per((s) => s.sessionsCurrent));
  metric('lab_balancer_server_max_sessions', 'Most sessions open at once', 'gauge', per((s) => s.sessionsMax));
  metric('lab_balancer_server_sessions_total', 'Sessions established on the server', 'counter', per((s) => s.sessionsTotal));
  metric('lab_balancer_server_bytes_in_total', 'Bytes received from clients', 'counter', per((s) => s.bytesIn));
  metric('lab_balancer_server_bytes_out_total', 'Bytes sent to clients', 'counter', per((s) => s.bytesOut));
  metric('lab_balancer_server_connection_errors_total', 'Failed connection attempts to the server', 'counter', per((s) => s.connectionErrors));
  metric('lab_balancer_server_retries_total', 'Connection attempts retried on the server', 'counter', per((s) => s.retries));
  metric('lab_balancer_server_redispatches_total', 'Sessions moved to the server after another failed', 'counter', per((s) => s.redispatches));
  metric('lab_balancer_server_cancels_total', 'CancelRequests relayed to the server', 'counter', per((s) => s.cancelsSent ?? null));
  metric('lab_balancer_server_cancels_dropped_total', 'CancelRequests not sent to the server: it had its cap of them open', 'counter', per((s) => s.cancelsDropped ?? null));
  metric('lab_balancer_server_check_failures_total', 'Failed health checks', 'counter', per((s) => s.checksFailed));
  metric('lab_balancer_server_down_transitions_total', 'UP to DOWN transitions', 'counter', per((s) => s.downTransitions));
  metric('lab_balancer_server_downtime_seconds_total', 'Seconds spent DOWN', 'counter', per((s) => s.downtimeS));
  metric('lab_balancer_server_last_change_seconds', 'Seconds since the last state change', 'gauge', per((s) => s.lastChangeS));
  metric('lab_balancer_server_weight', 'Server weight', 'gauge', per((s) => s.weight));
  metric('lab_balancer_server_replay_lag_bytes', 'Replay lag seen by the sql check', 'gauge', per((s) => s.lagBytes));
  return `${out.join('\n')}\n`;
}

function escapeHtml(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function duration(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${seconds % 60}s`;
  return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
}

function bytes(value: number | null): string {
  if (value === null) return '';
  if (value < 1024) return `${value} B`;
  if (value < 1024 ** 2) return `${(value / 1024).toFixed(1)} kB`;
  if (value < 1024 ** 3) return `${(value / 1024 ** 2).toFixed(1)} MB`;
  return `${(value / 1024 ** 3).toFixed(2)} GB`;
}

const DROP_LABELS: Record<CancelDropReason, string> = {
  clientRate: 'client rate', totalRate: 'balancer rate', serverInFlight: 'server busy', duplicate: 'duplicate', noSession: 'no session',
};

/** " cancels F forwarded, D dropped (why: n, ...) ·" for the built-in engine, "" without the counters. */
function cancelsLine(stats: BalancerStats): string {
  if (stats.cancelsForwarded === undefined || !stats.cancelsDropped) return '';
  const drops = stats.cancelsDropped;
  const why = (Object.keys(DROP_LABELS) as CancelDropReason[]).filter((reason) => drops[reason] > 0).map((reason) => `${DROP_LABELS[reason]} ${drops[reason]}`);
  const insideTls = stats.cancelsInsideTls ? `, <span id="cancels-inside-tls">${stats.cancelsInsideTls}</span> inside TLS, not routable (--tls terminate routes them)` : '';
  return `
cancels <span id="cancels">${stats.cancelsForwarded}</span> forwarded, <span id="cancels-dropped">${cancelsDroppedTotal(drops)}</span> dropped${why.length ? ` (${why.join(', ')})` : ''}${insideTls} ·`;
}

/** A page a person leaves open in a browser tab during a drill: it refreshes every 2 s. */
export function statsHtml(stats: BalancerStats, links: { json: string; csv: string; metrics: string }): string {
  const rows = stats.servers.map((s) => `
    <tr class="server status-${escapeHtml(s.status)}" data-server="${escapeHtml(s.name)}">
      <td>${escapeHtml(s.name)}</td><td>${escapeHtml(s.address)}</td>
      <td class="status">${escapeHtml(s.status)}</td><td>${escapeHtml(s.role ?? '')}</td>
      <td>${escapeHtml(s.checkStatus)}</td><td class="message">${escapeHtml(s.checkMessage)}</td>
      <td>${duration(s.lastChangeS)}</td><td>${duration(s.downtimeS)}</td><td>${s.checksFailed}</td><td>${s.downTransitions}</td>
      <td>${s.sessionsCurrent}</td><td>${s.sessionsMax}</td><td>${s.maxconn ?? ''}</td><td>${s.sessionsTotal}</td>
      <td>${bytes(s.bytesIn)}</td><td>${bytes(s.bytesOut)}</td><td>${s.connectionErrors}</td><td>${s.retries}</td><td>${s.redispatches}</td>
      <td>${s.cancelsSent ?? ''}</td><td>${s.cancelsDropped ?? ''}</td><td>${bytes(s.lagBytes)}</td><td>${s.weight}</td>
    </tr>`).join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>lab balancer ${escapeHtml(stats.name)}</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
  table { border-collapse: collapse; font-size: 0.9em; }
  th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; }
  th { background: #345; color: #fff; }
  tr.status-UP td.status { background: #8d8; }
  tr.status-DOWN td.status { background: #e77; }
  tr.status-DRAIN td.status, tr.status-NOLB td.status { background: #fc6; }
  tr.status-MAINT td.status { background: #9bd; }
  td.message { max-width: 28em; }
  td:nth-child(n+7) { text-align: right; }
  p.meta { color: #555; }
</style></head>
<body>
<h1>lab balancer <span id="name">${escapeHtml(stats.name)}</span></h1>
<p class="meta">engine ${escapeHtml(stats.engine)}${stats.relay ? `, ${stats.relay} relay` : ''}${stats.tls ? `, TLS ${stats.tls}` : ''} · listening on ${escapeHtml(stats.listen)} · up ${duration(stats.uptimeS)} ·
sessions ${stats.sessionsCurrent} now, ${stats.sessionsTotal} total${stats.maxconn ? `, maxconn ${stats.maxconn}` : ''} ·
queue <span id="qcur">${stats.queueCurrent ?? 0}</span> now, <span id="qmax">${stats.queueMax ?? 0}</span> max, ${stats.queueTimeouts ?? 0} timed out ·${cancelsLine(stats)}
<a href="${escapeHtml(links.json)}">JSON</a> · <a href="${escapeHtml(links.csv)}">CSV</a> · <a href="${escapeHtml(links.metrics)}">Prometheus</a></p>
<table id="servers">
<thead><tr><th>server</th><th>address</th><th>status</th><th>role</th><th>check</th><th>last check message</th>
<th>last change</th><th>downtime</th><th>checks failed</th><th>down</th><th>cur</th><th>max</th><th>limit</th><th>total</th>
<th>bytes in</th><th>bytes out</th><th>conn errors</th><th>retries</th><th>redispatches</th><th>cancels</th><th>cancels dropped</th><th>lag</th><th>weight</th></tr></thead>
<tbody>${rows || '<tr><td colspan="23">no server in the pool</td></tr>'}
</tbody></table>
</body></html>
`;
}
