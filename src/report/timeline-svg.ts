// timeline.svg: transactions per second per node over time, the drill's events as labelled vertical
// lines, and the clients' errors as red marks under the time axis. Plain SVG text, no dependency.
import type { Report, ReportEvent } from './types.js';

export const NODE_COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#17becf', '#e377c2', '#7f7f7f'];
export const ERROR_COLOUR = '#e00000';
export const EVENT_COLOURS: Record<string, string> = {
  kill: '#b00020',
  detection: '#d97706',
  're-add': '#2b6cb0',
  readmission: '#2f855a',
};
const OTHER_EVENT_COLOUR = '#555555';

const WIDTH = 1000;
const HEIGHT_BASE = 460;
const LEFT = 70;
const RIGHT = 190;
const BOTTOM = 70;
const FONT = 'font-family="DejaVu Sans, Arial, Helvetica, sans-serif"';
const LABEL_FONT_PX = 12;
const LABEL_ROW_PX = 17;

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** 1, 2, 5, 10, 20, 50... so that about `count` ticks cover `max`. */
export function niceStep(max: number, count: number): number {
  if (!(max > 0)) return 1;
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const factor of [1, 2, 5, 10]) if (factor * power >= raw) return factor * power;
  return 10 * power;
}

function eventColour(event: ReportEvent): string {
  return EVENT_COLOURS[event.kind] ?? OTHER_EVENT_COLOUR;
}

/** Labels are laid out in rows above the plot so that close events (a kill and its detection) do not overlap. */
function layoutLabels(events: ReportEvent[], xOf: (ms: number) => number, plotRight: number) {
  const charPx = LABEL_FONT_PX * 0.6;
  const rowsEnd: number[] = [];
  return [...events]
    .sort((a, b) => a.at_ms - b.at_ms)
    .map((event) => {
      const x = xOf(event.at_ms);
      const text = `${event.label} (${(event.at_ms / 1000).toFixed(1)}s)`;
      const width = text.length * charPx + 6;
      const anchorEnd = x + width > plotRight + RIGHT - 10;
      const start = anchorEnd ? x - width : x;
      let row = rowsEnd.findIndex((end) => end < start - 4);
      if (row === -1) {
        row = rowsEnd.length;
        rowsEnd.push(0);
      }
      rowsEnd[row] = start + width;
      return { event, x, text, row, anchorEnd };
    });
}

export function renderTimelineSvg(report: Report): string {
  const durationMs = Math.max(
    report.duration_ms,
    ...report.series.flatMap((s) => s.points.map((p) => p.at_ms)),
    ...report.events.map((e) => e.at_ms),
    1000,
  );
  const maxTps = Math.max(1, ...report.series.flatMap((s) => s.points.map((p) => p.tps)));
  const yStep = niceStep(maxTps * 1.1, 5);
  const yMax = Math.ceil((maxTps * 1.05) / yStep) * yStep;
  const xStepS = niceStep(durationMs / 1000, 10);
  const xMaxS = Math.ceil(durationMs / 1000 / xStepS) * xStepS;

  const plotLeft = LEFT;
  const plotRight = WIDTH - RIGHT;
  // The label rows need the x scale, which does not depend on the top margin.
  const xOf = (ms: number) => plotLeft + (ms / 1000 / xMaxS) * (plotRight - plotLeft);
  const labels = layoutLabels(report.events, xOf, plotRight);
  const rows = labels.reduce((max, l) => Math.max(max, l.row + 1), 0);
  const top = 50 + rows * LABEL_ROW_PX;
  const height = HEIGHT_BASE + rows * LABEL_ROW_PX;
  const plotTop = top;
  const plotBottom = height - BOTTOM;
  const yOf = (tps: number) => plotBottom - (tps / yMax) * (plotBottom - plotTop);

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" ${FONT} font-size="${LABEL_FONT_PX}">`,
    `<rect x="0" y="0" width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="${WIDTH / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(report.title)}</text>`,
  );

  // Grid and axes.
  for (let tps = 0; tps <= yMax + 1e-9; tps += yStep) {
    const y = yOf(tps).toFixed(1);
    parts.push(
      `<line x1="${plotLeft}" y1="${y}" x2="${plotRight}" y2="${y}" stroke="#e5e5e5" stroke-width="1"/>`,
      `<text x="${plotLeft - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${Number(tps.toFixed(6))}</text>`,
    );
  }
  for (let s = 0; s <= xMaxS + 1e-9; s += xStepS) {
    const x = xOf(s * 1000).toFixed(1);
    parts.push(
      `<line x1="${x}" y1="${plotTop}" x2="${x}" y2="${plotBottom}" stroke="#f0f0f0" stroke-width="1"/>`,
      `<line x1="${x}" y1="${plotBottom}" x2="${x}" y2="${plotBottom + 5}" stroke="#333"/>`,
      `<text x="${x}" y="${plotBottom + 18}" text-anchor="middle">${Number(s.toFixed(6))}</text>`,
    );
  }
  parts.push(
    `<line x1="${plotLeft}" y1="${plotBottom}" x2="${plotRight}" y2="${plotBottom}" stroke="#333" stroke-width="1.5"/>`,
    `<line x1="${plotLeft}" y1="${plotTop}" x2="${plotLeft}" y2="${plotBottom}" stroke="#333" stroke-width="1.5"/>`,
    `<text x="${(plotLeft + plotRight) / 2}" y="${height - 12}" text-anchor="middle">time since the start of the load (s)</text>`,
    `<text transform="translate(18 ${(plotTop + plotBottom) / 2}) rotate(-90)" text-anchor="middle">${escapeXml(report.y_label ?? 'transactions per second')}</text>`,
  );

  // Events: a dashed line through the plot, its label in a row above it.
  for (const { event, x, text, row, anchorEnd } of labels) {
    const colour = eventColour(event);
    const labelY = 46 + row * LABEL_ROW_PX;
    parts.push(
      `<g class="event" data-kind="${escapeXml(event.kind)}">`,
      `<line x1="${x.toFixed(1)}" y1="${labelY + 3}" x2="${x.toFixed(1)}" y2="${plotBottom}" stroke="${colour}" stroke-width="2" stroke-dasharray="6 4"/>`,
      `<text x="${(anchorEnd ? x - 3 : x + 3).toFixed(1)}" y="${labelY}" text-anchor="${anchorEnd ? 'end' : 'start'}" fill="${colour}" font-weight="bold">${escapeXml(text)}</text>`,
      '</g>',
    );
  }

  // One line per node.
  report.series.forEach((series, index) => {
    const colour = NODE_COLOURS[index % NODE_COLOURS.length]!;
    const points = [...series.points].sort((a, b) => a.at_ms - b.at_ms);
    if (points.length === 0) return;
    const path = points.map((p) => `${xOf(p.at_ms).toFixed(1)},${yOf(p.tps).toFixed(1)}`).join(' ');
    parts.push(
      `<polyline class="series" data-node="${escapeXml(series.node)}" points="${path}" fill="none" stroke="${colour}" stroke-width="2.5" stroke-linejoin="round"/>`,
    );
  });

  // Errors: a red tick under the axis per pixel column that saw one, with the count per second above 1.
  const errorXs = new Map<number, number>();
  for (const error of report.errors) {
    const x = Math.round(xOf(error.at_ms));
    errorXs.set(x, (errorXs.get(x) ?? 0) + 1);
  }
  for (const x of [...errorXs.keys()].sort((a, b) => a - b)) {
    parts.push(`<line class="error" x1="${x}" y1="${plotBottom + 22}" x2="${x}" y2="${plotBottom + 34}" stroke="${ERROR_COLOUR}" stroke-width="2"/>`);
  }

  // Legend.
  const legendX = plotRight + 20;
  let legendY = plotTop + 10;
  parts.push(`<text x="${legendX}" y="${legendY}" font-weight="bold">nodes</text>`);
  report.series.forEach((series, index) => {
    legendY += 20;
    const colour = NODE_COLOURS[index % NODE_COLOURS.length]!;
    const total = series.points.reduce((sum, p) => sum + p.tps, 0);
    parts.push(
      `<line x1="${legendX}" y1="${legendY - 4}" x2="${legendX + 24}" y2="${legendY - 4}" stroke="${colour}" stroke-width="3"/>`,
      `<text x="${legendX + 30}" y="${legendY}">${escapeXml(series.node)}${total === 0 ? ' (idle)' : ''}</text>`,
    );
  });
  legendY += 28;
  const errorCount = report.errors_total ?? report.errors.length;
  parts.push(
    `<line x1="${legendX + 12}" y1="${legendY - 12}" x2="${legendX + 12}" y2="${legendY}" stroke="${ERROR_COLOUR}" stroke-width="2"/>`,
    `<text x="${legendX + 30}" y="${legendY - 2}">client errors: ${errorCount}</text>`,
  );
  if (report.errors.length > 0) {
    parts.push(`<text x="${plotLeft - 6}" y="${plotBottom + 32}" text-anchor="end" fill="${ERROR_COLOUR}" font-size="10">errors</text>`);
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
