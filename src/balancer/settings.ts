// Parsing of the balancer's knobs as a person types them: addresses, durations (a plain number is
// milliseconds, as in HAProxy), and --max-lag limits in bytes or seconds.
import { LabError } from '../common/errors.js';
import { parsePort } from '../common/ports.js';

export function parseAddress(text: string, what: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text.trim()) ?? /^()()(\d+)$/.exec(text.trim());
  if (!match) throw new LabError('USAGE', `Invalid ${what} "${text}": expected HOST:PORT, e.g. 127.0.0.1:15432`);
  const host = match[1] || match[2] || '127.0.0.1';
  return { host, port: parsePort(match[3]!, `${what} port`) };
}

export function formatAddress(address: { host: string; port: number }): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** "100", "100ms", "2s", "1m" -> milliseconds. */
export function parseMs(text: string | number, what: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(String(text).trim());
  if (!match) throw new LabError('USAGE', `Invalid ${what} "${text}": expected milliseconds or a duration such as 500ms, 2s, 1m`);
  const value = Number(match[1]);
  const unit = match[2] ?? 'ms';
  return Math.round(unit === 'ms' ? value : unit === 's' ? value * 1000 : value * 60_000);
}

export function parseCount(text: string | number, what: string, min = 1): number {
  const value = Number(String(text).trim());
  if (!Number.isInteger(value) || value < min) throw new LabError('USAGE', `Invalid ${what} "${text}": expected an integer of at least ${min}`);
  return value;
}

const BYTE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** `--max-lag 16MB`, `--max-lag 5s`, or both comma-separated: a limit in bytes and/or seconds. */
export function parseMaxLag(values: string[]): { maxLagBytes: number | null; maxLagSeconds: number | null } {
  const result = { maxLagBytes: null as number | null, maxLagSeconds: null as number | null };
  for (const part of values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean)) {
    const match = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|ms|s|min)?$/i.exec(part);
    if (!match) throw new LabError('USAGE', `Invalid --max-lag "${part}": expected bytes (16MB, 512kB, 1048576) or seconds (5s, 500ms)`);
    const value = Number(match[1]);
    const unit = (match[2] ?? 'b').toLowerCase();
    if (unit in BYTE_UNITS) result.maxLagBytes = Math.round(value * BYTE_UNITS[unit]!);
    else result.maxLagSeconds = unit === 'ms' ? value / 1000 : unit === 'min' ? value * 60 : value;
  }
  return result;
}
