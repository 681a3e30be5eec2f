// Declarations of `lab balancer ...` (issue 3).
import { Command } from 'commander';

export function balancerCommand(): Command {
  return new Command('balancer').description('the built-in TCP load balancer in front of the replicas');
}
