// postgresql.conf and pg_hba.conf rendered from the templates in lab/ for one node and version.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { packageRoot } from '../common/package-root.js';
import type { Dialect } from './dialect.js';

/** The repo's lab/ folder (config templates a lab is built from). */
export const templatesDir = path.join(packageRoot, 'lab');

export interface ConfValues {
  port: number;
  clusterName: string;
  listenAddresses: string;
  socketDir: string;
  ssl: boolean;
}

export function renderTemplate(template: string, values: Record<string, string>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (whole, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`template placeholder ${whole} has no value`);
    return value;
  });
}

export async function renderPostgresqlConf(dialect: Dialect, values: ConfValues): Promise<string> {
  const template = await readFile(path.join(templatesDir, 'postgresql.conf'), 'utf8');
  return renderTemplate(template, {
    port: String(values.port),
    cluster_name: values.clusterName,
    listen_addresses: values.listenAddresses,
    socket_dir: values.socketDir,
    wal_level: dialect.walLevel,
    wal_keep: dialect.walKeepLine,
    slot_keep: dialect.slotKeepLine,
    ssl: values.ssl ? 'on' : 'off',
  });
}

export interface HbaValues {
  user: string;
  /** pg_hba.conf method: scram-sha-256 or trust */
  method: 'scram-sha-256' | 'trust';
  /** TCP lines: host (plaintext or TLS), or hostssl (TLS only) */
  hostType: 'host' | 'hostssl';
  /** A lab made with --hosts: its subnet (10.213.N.0/24), let in for clients and replication. */
  subnet?: string;
}

export async function renderPgHba(values: HbaValues): Promise<string> {
  const template = await readFile(path.join(templatesDir, 'pg_hba.conf'), 'utf8');
  const text = renderTemplate(template, { user: values.user, method: values.method, host: values.hostType.padEnd(7) });
  if (!values.subnet) return text;
  const host = values.hostType.padEnd(13);
  return `${text.trimEnd()}\n# --hosts: the lab's nodes and this machine's bridge address\n${host} all             all             ${values.subnet.padEnd(23)} ${values.method}\n${host} replication     ${values.user.padEnd(15)} ${values.subnet.padEnd(23)} ${values.method}\n`;
}
