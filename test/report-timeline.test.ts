// The report's files from synthetic data of a failover drill, and the timeline rendered to PNG by a
// real headless Chromium: the picture must show a line per node, the event markers and the errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { writeReport } from '../src/report/write-report.js';
import { ERROR_COLOUR, EVENT_COLOURS, NODE_COLOURS } from '../src/report/timeline-svg.js';
import { atMs, reportFromWorkload } from '../src/report/from-workload.js';
import type { Report } from '../src/report/types.js';
import type { WorkloadError, WorkloadResult, WorkloadSample } from '../src/workload/types.js';

const CHROMIUM = '/usr/bin/chromium';
const NAMES = { '5433': 'replica1', '5434': 'replica2', '5435': 'replica3', '5432': 'master1' };

/** 60 s of load over three replicas; replica2 is killed at 20 s, detected at 20.4 s, back at 34.2 s. */
function syntheticDrill(): { samples: WorkloadSample[]; errors: WorkloadError[] } {
  const samples: WorkloadSample[] = [];
  for (let second = 1; second <= 60; second++) {
    const r2Down = second > 20 && second <= 35;
    const wobble = (n: number) => Math.round(70 + 8 * Math.sin(second / 3 + n));
    const by_port: Record<string, number> = r2Down
      ? { '5433': 100 + wobble(1) - 70, '5435': 100 + wobble(2) - 70 }
      : { '5433': wobble(1), '5434': wobble(3), '5435': wobble(2) };
    const ops = Object.values(by_port).reduce((a, b) => a + b, 0);
    samples.push({
      second, elapsed_ms: second * 1000, interval_ms: 1000, ops, errors: second === 21 ? 5 : 0, errors_total: second > 20 ? 5 : 0,
      ops_per_sec: ops, ops_per_sec_cum: ops, p50_ms: 2, p95_ms: 6, p99_ms: 9, max_ms: 20, by_port, by_url: {},
    });
  }
  // The last error arrives after the detection (20,400) on a session opened before it: the kill's, not the balancer's.
  const errors: WorkloadError[] = [20_050, 20_120, 20_200, 20_310, 20_430].map((at_ms, worker) => ({
    at_ms, session_started_ms: 19_900 + worker, worker, url: 'postgresql://postgres@127.0.0.1:15432/postgres', port: 5434, phase: 'transaction', message: 'Connection terminated unexpectedly', code: null,
  }));
  return { samples, errors };
}

function syntheticWorkload(): WorkloadResult {
  const { samples, errors } = syntheticDrill();
  const by_port: Record<string, number> = {};
  for (const sample of samples) for (const [port, n] of Object.entries(sample.by_port)) by_port[port] = (by_port[port] ?? 0) + n;
  const ops = samples.reduce((sum, s) => sum + s.ops, 0);
  return {
    samples,
    errors,
    summary: {
      mode: 'select', urls: ['postgresql://postgres@127.0.0.1:15432/postgres'], concurrency: 16, connect_per_tx: true, tolerate_errors: true, scale: 10,
      started_epoch_ms: Date.parse('2026-11-21T14:00:00.000Z'), started_at: '2026-11-21T14:00:00.000Z', duration_ms: 60_000,
      ops, errors: errors.length, errors_recorded: errors.length, ops_per_sec: ops / 60, p50_ms: 2, p95_ms: 6, p99_ms: 9, max_ms: 20,
      connections: ops, connections_by_port: by_port, failovers: 0, by_port, by_url: {}, stopped_by: 'duration',
    },
  };
}

function syntheticReport(): Report {
  const workload = syntheticWorkload();
  const at = (iso: string) => atMs(Date.parse(iso), workload);
  return reportFromWorkload({
    title: 'pglab failover drill: kill -9 replica2 under select load',
    workload,
    names: NAMES,
    primary: 'master1',
    events: [
      { at_ms: at('2026-11-21T14:00:33.000Z'), kind: 're-add', label: 'replica add replica2' },
      { at_ms: 20_000, kind: 'kill', label: 'kill -9 replica2' },
      { at_ms: 20_400, kind: 'detection', label: 'lb marks replica2 DOWN' },
      { at_ms: 34_200, kind: 'readmission', label: 'lb sends replica2 traffic' },
    ],
    summary: ['replica2 was detected down 400 ms after the kill and re-admitted 1200 ms after its re-add'],
    crosscheck: [
      { node: 'replica1', workload: 5000, pg_stat_database: 5003, agrees: true },
      { node: 'replica2', workload: 3000, pg_stat_database: 2900, agrees: false, note: 'the server lost its counters in the crash' },
    ],
    notes: ['synthetic data'],
  });
}

test('report: figures follow from the events and the workload', () => {
  const report = syntheticReport();
  assert.equal(report.figures.detection_ms, 400);
  assert.equal(report.figures.readmission_ms, 1200);
  assert.equal(report.figures.errors_after_detection, 0, 'the five errors are of sessions opened before the detection');
  assert.equal(report.figures.serving_at_end, 'replica1, replica2, replica3');
  assert.equal(report.figures.master_transactions, 0);
  assert.equal(report.errors_total, 5);
  assert.deepEqual(report.events.map((e) => e.kind), ['kill', 'detection', 're-add', 'readmission'], 'events in time order');
});

test('report: an error count taken from a cut error list says it is a lower bound, whoever counted', () => {
  const workload = syntheticWorkload();
  workload.summary.errors = 12; // 12 errors happened, 5 were recorded (maxRecordedErrors)
  const events = [
    { at_ms: 20_000, kind: 'kill', label: 'kill -9 replica2' },
    { at_ms: 20_400, kind: 'detection', label: 'lb marks replica2 DOWN' },
  ];
  const counted = reportFromWorkload({ title: 't', workload, names: NAMES, events });
  assert.equal(counted.figures.errors_after_detection_note, 'counted among the first 5 recorded errors only');
  // The failover drill counts against its own clock and passes the figure in: the note must stay.
  const passed = reportFromWorkload({ title: 't', workload, names: NAMES, events, figures: { errors_after_detection: 0 } });
  assert.equal(passed.figures.errors_after_detection_note, 'counted among the first 5 recorded errors only');
  workload.summary.errors = 5;
  assert.equal(reportFromWorkload({ title: 't', workload, names: NAMES, events }).figures.errors_after_detection_note, undefined, 'no note when every error was recorded');
});

test('report: the per-phase counts and series come from the workload\'s samples', () => {
  const report = syntheticReport();
  assert.deepEqual(report.series.map((s) => s.node), ['master1', 'replica1', 'replica2', 'replica3'], 'one series per node, by port');
  const replica2 = report.transactions.find((t) => t.node === 'replica2')!;
  assert.ok(replica2.before > 0 && replica2.after > 0);
  assert.equal(replica2.during, 0, 'replica2 served nothing while it was down');
  assert.equal(report.transactions.find((t) => t.node === 'master1')!.total, 0);
  assert.equal(report.series[2]!.points[25]!.tps, 0);
});

test('report: writes report.json, report.md and a timeline.svg that Chromium renders with every line, marker and error', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pglab-report-'));
  const report = syntheticReport();
  // A fresh profile dir per run (playwright passes it as --user-data-dir).
  const browser = await chromium.launchPersistentContext(path.join(dir, 'chromium-profile'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1000, height: 600 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const files = await writeReport(dir, report);
    assert.deepEqual(JSON.parse(await readFile(files.json, 'utf8')).figures, report.figures);
    const markdown = await readFile(files.markdown, 'utf8');
    assert.match(markdown, /\| detection_ms \| 400 ms \|/);
    assert.match(markdown, /\| errors_after_detection \| 0 \|/);
    assert.match(markdown, /\| replica2 \| \d+ \| 0 \| \d+ \| \d+ \|/);
    assert.match(markdown, /\| 20\.0s \| kill \| kill -9 replica2 \|/);
    assert.match(markdown, /counts disagree for replica2/);
    assert.match(markdown, /!\[.*\]\(timeline\.svg\)/);
    const svg = await readFile(files.svg, 'utf8');
    assert.equal((svg.match(/class="series"/g) ?? []).length, 4);
    assert.equal((svg.match(/class="event"/g) ?? []).length, 4);
    assert.match(svg, /kill -9 replica2 \(20\.0s\)/);

    const page = await browser.newPage();
    await page.goto(`file://${files.svg}`);
    const png = await page.locator('svg').screenshot({ path: path.join(dir, 'timeline.png') });
    if (process.env.PGLAB_TIMELINE_PNG) await copyFile(path.join(dir, 'timeline.png'), process.env.PGLAB_TIMELINE_PNG);
    assert.equal(png.subarray(1, 4).toString(), 'PNG');
    assert.ok(png.length > 20_000, `PNG of ${png.length} bytes is too small to hold the picture`);
    assert.equal(png.readUInt32BE(16), 1000, 'PNG width');

    // Count the pixels of each colour in the rendered PNG, decoded by the browser itself (in an HTML page).
    await page.goto('about:blank');
    const colours = [...NODE_COLOURS.slice(0, 3), ERROR_COLOUR, EVENT_COLOURS.kill!, EVENT_COLOURS.detection!, EVENT_COLOURS['re-add']!, EVENT_COLOURS.readmission!];
    const counts = await page.evaluate(
      async ({ data, colours }) => {
        // Runs in the page: the DOM is there, not in this file's TypeScript lib.
        const dom = globalThis as any;
        const image = new dom.Image();
        image.src = `data:image/png;base64,${data}`;
        await image.decode();
        const canvas = dom.document.createElement('canvas');
        canvas.width = image.width;
        canvas.height = image.height;
        const context = canvas.getContext('2d');
        context.drawImage(image, 0, 0);
        const pixels: Uint8ClampedArray = context.getImageData(0, 0, image.width, image.height).data;
        const wanted = colours.map((hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)));
        const result = wanted.map(() => 0);
        for (let p = 0; p < pixels.length; p += 4) {
          wanted.forEach(([r, g, b], i) => {
            if (Math.abs(pixels[p]! - r!) < 12 && Math.abs(pixels[p + 1]! - g!) < 12 && Math.abs(pixels[p + 2]! - b!) < 12) result[i]! += 1;
          });
        }
        return result;
      },
      { data: png.toString('base64'), colours },
    );
    colours.forEach((colour, i) => assert.ok(counts[i]! > 40, `colour ${colour} has only ${counts[i]} pixels in the PNG: ${counts.join(', ')}`));
  } finally {
    await browser.close();
    await rm(dir, { recursive: true, force: true });
  }
});
