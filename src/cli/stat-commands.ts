// Declarations of `lab stat ...` and `lab top` (issue 4).
import { Command } from 'commander';

export function statCommand(): Command {
  return new Command('stat').description('tables of replication, transactions and balancer state, once or --watch');
}

export function topCommand(): Command {
  return new Command('top').description('replication, transactions and balancers in one screen, refreshed in place');
}
