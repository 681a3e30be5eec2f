// A report directory: report.json (every figure), report.md (for people), timeline.svg (the picture).
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { renderReportMarkdown } from './report-markdown.js';
import { renderTimelineSvg } from './timeline-svg.js';
import type { Report } from './types.js';

export interface WrittenReport {
  dir: string;
  json: string;
  markdown: string;
  svg: string;
}

export async function writeReport(dir: string, report: Report): Promise<WrittenReport> {
  const root = path.resolve(dir);
  await mkdir(root, { recursive: true });
  const files: WrittenReport = {
    dir: root,
    json: path.join(root, 'report.json'),
    markdown: path.join(root, 'report.md'),
    svg: path.join(root, 'timeline.svg'),
  };
  await writeFile(files.json, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(files.markdown, renderReportMarkdown(report, path.basename(files.svg)));
  await writeFile(files.svg, renderTimelineSvg(report));
  return files;
}
