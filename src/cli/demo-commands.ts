// Declarations of `lab bench`, `lab workload` and `lab demo` (issue 5).
import { Command } from 'commander';

export function benchCommand(): Command {
  return new Command('bench').description('pgbench: init on the master, run through the balancer');
}

export function workloadCommand(): Command {
  return new Command('workload').description('a load generator for drills, with several URLs and --tolerate-errors');
}

export function demoCommand(): Command {
  return new Command('demo').description('the seeds\' failover drills end to end, measured, with a report');
}
