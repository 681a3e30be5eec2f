// Which server takes the next session: roundrobin (smooth weighted, as nginx does it) or leastconn
// (fewest sessions per weight); backup servers only when no normal server is usable. A server at its
// maxconn is skipped: the client takes another one, or waits in the queue (balancer.ts).
import type { BackendServer } from './backend-server.js';

export type Algorithm = 'roundrobin' | 'leastconn';

export class ServerPicker {
  /** Smooth weighted round robin: each server's running credit. */
  private readonly credit = new Map<BackendServer, number>();

  constructor(private readonly algorithm: Algorithm) {}

  pick(servers: Iterable<BackendServer>, exclude: ReadonlySet<BackendServer>): BackendServer | undefined {
    // Backups stand in for normal servers that are down, not for ones that are full (HAProxy).
    const up = [...servers].filter((s) => s.usable && s.config.weight > 0 && !exclude.has(s));
    const tier = up.some((s) => !s.config.backup) ? up.filter((s) => !s.config.backup) : up;
    const candidates = tier.filter((s) => s.hasRoom);
    if (candidates.length === 0) return undefined;
    return this.algorithm === 'leastconn' ? this.leastConn(candidates) : this.roundRobin(candidates);
  }

  /** Some server that could take sessions is at its maxconn: a client should queue, not be refused. */
  busy(servers: Iterable<BackendServer>): boolean {
    const up = [...servers].filter((s) => s.usable && s.config.weight > 0);
    const tier = up.some((s) => !s.config.backup) ? up.filter((s) => !s.config.backup) : up;
    return tier.some((s) => !s.hasRoom);
  }

  /** Some server that could take sessions has a free slot. */
  hasRoom(servers: Iterable<BackendServer>): boolean {
    const up = [...servers].filter((s) => s.usable && s.config.weight > 0);
    const tier = up.some((s) => !s.config.backup) ? up.filter((s) => !s.config.backup) : up;
    return tier.some((s) => s.hasRoom);
  }

  private roundRobin(candidates: BackendServer[]): BackendServer {
    let total = 0;
    let best: BackendServer | undefined;
    let bestCredit = -Infinity;
    for (const server of candidates) {
      const credit = (this.credit.get(server) ?? 0) + server.config.weight;
      this.credit.set(server, credit);
      total += server.config.weight;
      if (credit > bestCredit) {
        best = server;
        bestCredit = credit;
      }
    }
    this.credit.set(best!, bestCredit - total);
    return best!;
  }

  private leastConn(candidates: BackendServer[]): BackendServer {
    // Ties go round robin so an idle pool still spreads sessions.
    const load = (s: BackendServer) => s.sessions.size / s.config.weight;
    const least = Math.min(...candidates.map(load));
    return this.roundRobin(candidates.filter((s) => load(s) === least));
  }

  forget(server: BackendServer): void {
    this.credit.delete(server);
  }
}
