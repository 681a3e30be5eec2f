// The commands that make and inspect a lab's network (src/network/): `ip` (iproute2) with its failures as
// one-line LabErrors, the links and namespaces on this machine, and a program run in a node's namespace.
import { execa } from 'execa';
import { LabError, messageOf } from '../common/errors.js';

export async function ip(args: string[], what: string): Promise<string> {
  try {
    const { stdout } = await execa('ip', args, { timeout: 20_000 });
    return stdout;
  } catch (error) {
    const e = error as { code?: string; stderr?: string };
    if (e.code === 'ENOENT') throw new LabError('ENVIRONMENT', 'No `ip` command (iproute2): --hosts needs it (apt-get install iproute2)');
    throw new LabError('COMMAND_FAILED', `${what} failed: ip ${args.join(' ')}: ${(e.stderr ?? messageOf(error)).trim().split('\n').pop()}`);
  }
}

/**
 * --hosts refused in one line where namespaces cannot be made: not root, no `ip`, no iptables, and for
 * processes no setpriv (the docker runtime's servers run as the image's user without it). `instead`:
 * what else the person can do (a drill that would make its lab with --hosts says which phase to leave out).
 */
export async function checkCanMakeHosts(runtime: string, instead = 'drop --hosts'): Promise<void> {
  if (process.geteuid?.() !== 0) throw new LabError('ENVIRONMENT', `--hosts needs root (it makes network namespaces, veth links and a bridge): run lab as root, or ${instead}`);
  const tools: [string, string[]][] = [['ip', ['-V']], ['iptables', ['-V']]];
  if (runtime === 'process') tools.push(['setpriv', ['--version']]);
  for (const [tool, args] of tools) {
    try {
      await execa(tool, [...args], { timeout: 10_000 });
    } catch {
      throw new LabError('ENVIRONMENT', `--hosts needs the \`${tool}\` command (iproute2, iptables, util-linux), which does not run here: install it, or ${instead}`);
    }
  }
}

export interface LinkInfo {
  name: string;
  mac?: string;
  alias?: string;
  /** A veth's peer's namespace, by name (`link-netns`). */
  netns?: string;
}

/** The links of this machine (`ip -o link show`: one line each, `\\` where ip would break it). */
export async function links(): Promise<LinkInfo[]> {
  const out = await ip(['-o', 'link', 'show'], 'listing links');
  const found: LinkInfo[] = [];
  for (const line of out.split('\n')) {
    const name = /^\d+:\s+([^:@\s]+)/.exec(line)?.[1];
    if (!name) continue;
    found.push({
      name,
      mac: /link\/ether ([0-9a-f:]+)/.exec(line)?.[1],
      netns: / link-netns (\S+)/.exec(line)?.[1],
      alias: /\\\s+alias (.*?)\s*$/.exec(line)?.[1],
    });
  }
  return found;
}

export async function linkNames(): Promise<string[]> {
  return (await links()).map((link) => link.name);
}

export async function netnsNames(): Promise<string[]> {
  const out = await ip(['netns', 'list'], 'listing namespaces');
  return out.split('\n').map((line) => line.split(' ')[0]!).filter(Boolean);
}

/** `ip link del` / `ip netns del` of something that may vanish meanwhile (a veth goes with its namespace, asynchronously). */
export async function deleteGone(args: string[], what: string): Promise<boolean> {
  try {
    await ip(args, what);
    return true;
  } catch (error) {
    if (/Cannot find device|No such file or directory/.test(messageOf(error))) return false;
    throw error;
  }
}

/** Whether the namespace exists now. */
export async function netnsExists(netns: string): Promise<boolean> {
  return (await netnsNames()).includes(netns);
}

/** `file args` run in the namespace (ip netns exec), its stdout; a failure as one line. */
export async function inNetns(netns: string, file: string, args: string[], input?: string): Promise<string> {
  try {
    const { stdout } = await execa('ip', ['netns', 'exec', netns, file, ...args], { input, timeout: 20_000 });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string };
    throw new LabError('COMMAND_FAILED', `${file} in ${netns} failed: ${(e.stderr ?? messageOf(error)).trim().split('\n').pop()}`);
  }
}
