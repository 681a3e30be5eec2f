// Which server takes the next session: roundrobin (smooth weighted, as nginx does it) or leastconn
// (fewest sessions per weight); backup servers only when no normal server is usable.
import type { BackendServer } from './backend-server.js';

export type Algorithm = 'roundrobin' | 'leastconn';

export class ServerPicker {
  /** Smooth weighted round robin: each server's running credit. */
  private readonly credit = new Map<BackendServer, number>();

  constructor(private readonly algorithm: Algorithm) {}

  pick(servers: Iterable<BackendServer>, exclude: ReadonlySet<BackendServer>): BackendServer | undefined {
    const usable = [...servers].filter((s) => s.usable && s.config.weight > 0 && !exclude.has(s));
    const normal = usable.filter((s) => !s.config.backup);
    const candidates = normal.length ? normal : usable.filter((s) => s.config.backup);
    if (candidates.length === 0) return undefined;
    return this.algorithm === 'leastconn' ? this.leastConn(candidates) : this.roundRobin(candidates);
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
