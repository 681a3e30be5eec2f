// How a program connects to a lab's node or balancer: node-postgres settings, a URL, or libpq variables,
// each carrying the lab's own password and CA (never read from the caller's environment).
import type { ConnectionOptions } from 'node:tls';

/** The lab's access, as Lab hands it to the things it made (what connectionConfig, connectionString and env are made of). */
export interface ConnectionAccess {
  user: string;
  /** undefined on a trust lab */
  password: string | undefined;
  /** The lab's CA certificate; undefined on a lab without TLS. */
  ca: Buffer | undefined;
  caFile: string | undefined;
  /** accessEnv: PGUSER, PGDATABASE, PGPASSFILE, PGSSLMODE, PGSSLROOTCERT, NODE_EXTRA_CA_CERTS */
  env: Record<string, string>;
}

/** node-postgres's ClientConfig / PoolConfig fields (kept structural: no import of pg's types needed). */
export interface ConnectionConfig {
  host: string;
  port: number;
  user: string;
  database: string;
  password?: string;
  /** TLS verified against the lab's CA and the address (verify-full), or false on a lab without TLS. */
  ssl: false | ConnectionOptions;
}

export interface ConnectOptions {
  /** Default postgres. */
  database?: string;
  /** Default the lab's superuser. */
  user?: string;
}

/** Something clients connect to: a node, or a balancer. */
export abstract class Connectable {
  protected abstract endpoint(): { host: string; port: number };
  protected abstract connectionAccess(): ConnectionAccess;

  /** For `new pg.Client(...)` / `new pg.Pool(...)`: host, port, user, database, password, ssl. */
  connectionConfig(options: ConnectOptions = {}): ConnectionConfig {
    const { host, port } = this.endpoint();
    const access = this.connectionAccess();
    return {
      host,
      port,
      user: options.user ?? access.user,
      database: options.database ?? 'postgres',
      ...(access.password !== undefined ? { password: access.password } : {}),
      ssl: access.ca ? { ca: access.ca } : false,
    };
  }

  /** postgresql://user:password@host:port/database?sslmode=verify-full&sslrootcert=... (libpq, psycopg, asyncpg, JDBC-style tools). */
  connectionString(options: ConnectOptions = {}): string {
    const config = this.connectionConfig(options);
    const access = this.connectionAccess();
    const host = config.host.includes(':') ? `[${config.host}]` : config.host;
    const auth = `${encodeURIComponent(config.user)}${config.password !== undefined ? `:${encodeURIComponent(config.password)}` : ''}`;
    const query = access.caFile ? `sslmode=verify-full&sslrootcert=${encodeURIComponent(access.caFile)}` : 'sslmode=disable';
    return `postgresql://${auth}@${host}:${config.port}/${encodeURIComponent(config.database)}?${query}`;
  }

  /** libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSFILE, PGSSLMODE, PGSSLROOTCERT, NODE_EXTRA_CA_CERTS) for a child process. */
  env(options: ConnectOptions = {}): Record<string, string> {
    const { host, port } = this.endpoint();
    const access = this.connectionAccess();
    return { ...access.env, PGHOST: host, PGPORT: String(port), PGUSER: options.user ?? access.user, PGDATABASE: options.database ?? 'postgres' };
  }
}
