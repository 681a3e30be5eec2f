// A container's output so far (`docker logs`), as text. Without a TTY the engine multiplexes stdout
// and stderr into frames: [stream, 0, 0, 0, size (uint32 BE)] followed by `size` bytes.
import type { ContainerRuntimeClient } from 'testcontainers';

export function demuxLogs(raw: Buffer): string {
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= raw.length) {
    const stream = raw[offset];
    const size = raw.readUInt32BE(offset + 4);
    if (stream === undefined || stream > 2 || raw[offset + 1] !== 0 || raw[offset + 2] !== 0 || raw[offset + 3] !== 0) {
      return raw.toString('utf8'); // not multiplexed (a TTY container): the bytes are the text
    }
    parts.push(raw.subarray(offset + 8, offset + 8 + size));
    offset += 8 + size;
  }
  return Buffer.concat(parts).toString('utf8');
}

export async function containerLogs(engine: ContainerRuntimeClient, containerId: string, tail?: number): Promise<string> {
  const raw: unknown = await engine.container.dockerode
    .getContainer(containerId)
    .logs({ stdout: true, stderr: true, follow: false, tail: tail ?? 'all' } as never);
  return demuxLogs(Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw)));
}

/** The last `lines` lines, labelled like the process runtime's log tails. */
export function logsTail(text: string, lines: number, what: string): string | undefined {
  const body = text.trimEnd().split('\n').slice(-lines).join('\n');
  return body ? `last lines of ${what}:\n${body}` : undefined;
}
