// An error's remedy in the caller's terms. The code below the library phrases what to do as a person at
// a shell does it (`lab node start replica1`, --hosts); a program that called the library does it with a
// method or an option. Each CLI verb here has one library call, the same object model's: the CLI's
// phrasing is translated at the library's edge (Lab.run), the CLI's own messages are left as they are.
// A command with no library call (`lab versions install 17`: a machine's setup) stays a command.
import { LabError } from '../common/errors.js';

const NAME = "([^`\\s]+)";

/** A node's name as an argument: quoted, or a placeholder of the CLI's (NAME, NODE) as a variable. */
const arg = (name: string): string => (/^[A-Z]+$/.test(name) ? name.toLowerCase() : `'${name}'`);

type Replacement = string | ((...groups: string[]) => string);

/** [CLI phrasing, library phrasing], applied in order. */
const REMEDIES: [RegExp, Replacement][] = [
  [new RegExp(`\`lab node (start|stop|restart|kill) ${NAME}\``, 'g'), (_, verb, name) => `\`lab.node(${arg(name!)}).${verb}()\``],
  [new RegExp(`\`lab node rewind ${NAME} --primary ${NAME}\``, 'g'), (_, name, primary) => `\`lab.node(${arg(name!)}).rewind({ primary: ${arg(primary!)} })\``],
  [new RegExp(`\`lab node rewind ${NAME}\``, 'g'), (_, name) => `\`lab.node(${arg(name!)}).rewind()\``],
  [new RegExp(`\`lab fault heal ${NAME}\``, 'g'), (_, name) => `\`lab.node(${arg(name!)}).heal()\``],
  [new RegExp(`\`lab fault (pause|lag|partition|delay|loss) ${NAME}[^\`]*\``, 'g'), (_, kind, name) => `\`lab.node(${arg(name!)}).${kind}()\``],
  [/`lab fault list`/g, '`lab.faults()`'],
  [new RegExp(`\`lab promote ${NAME}\``, 'g'), (_, name) => `\`lab.promote(${arg(name!)})\``],
  [new RegExp(`\`lab replica add ${NAME}[^\`]*\``, 'g'), (_, name) => `\`lab.addReplica({ name: ${arg(name!)} })\``],
  [new RegExp(`\`lab replica remove ${NAME}\``, 'g'), (_, name) => `\`lab.removeReplica(${arg(name!)})\``],
  [new RegExp(`\`lab replica follow ${NAME} --(?:upstream|primary) ${NAME}\``, 'g'), (_, name, upstream) => `\`lab.node(${arg(name!)}).follow(${arg(upstream!)})\``],
  [new RegExp(`\`lab replica follow ${NAME}[^\`]*\``, 'g'), (_, name) => `\`lab.node(${arg(name!)}).follow()\``],
  [/`lab (?:--lab-dir \S+ )?destroy --yes`/g, '`lab.destroy()`'],
  [new RegExp(`\`lab switchover ${NAME}\``, 'g'), (_, name) => `\`lab.switchover(${arg(name!)})\``],
  [/`lab status`/g, '`lab.status()`'],
  [/`lab master start --hosts`/g, '`Lab.start({ hosts: true })`'],
  [/`lab master start`/g, '`Lab.start()`'],
  [/^lab fault (pause|lag|partition|delay|loss) needs\b/, 'node.$1() needs'],
  [/`lab balancer status`/g, '`lab.stat.balancers()`'],
  [/`lab stat (replication|xact)`/g, '`lab.stat.$1()`'],
  [/`lab env`/g, '`lab.env()`'],
  [/`lab bench init`/g, '`lab.initBench()`'],
  [/(a lab (?:made|started) )with --hosts\b/g, '$1with hosts: true'],
  [/(a lab (?:made|started) )without --hosts\b/g, '$1without hosts: true'],
  [/--hosts\b/g, 'hosts: true'],
  [/--tls off\b/g, "tls: 'off'"],
  [/--auth trust\b/g, "auth: 'trust'"],
  [/--os-user\b/g, 'osUser'],
  [/pass --pg\b/g, 'pass pg'],
  [/--runtime\b/g, 'runtime'],
  [/use another --lab-dir\b/g, 'use another dir'],
];

/** `message` with the CLI's remedies in the library's terms. */
export function libraryMessage(message: string): string {
  return REMEDIES.reduce((text, [pattern, replacement]) => (typeof replacement === 'string' ? text.replace(pattern, replacement) : text.replace(pattern, replacement)), message);
}

/** A LabError raised below the library, as its caller reads it (the CLI's phrasing kept in facts.cliMessage). */
export function forLibrary(error: unknown): unknown {
  if (!(error instanceof LabError)) return error;
  const message = libraryMessage(error.message);
  if (message === error.message) return error;
  const translated = new LabError(error.code, message, { detail: error.detail, cause: error.cause, facts: { ...error.facts, cliMessage: error.message } });
  translated.stack = error.stack;
  return translated;
}
