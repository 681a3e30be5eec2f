// A program's output as lines while it runs: split on \n, \r\n, or the \r that pg_basebackup and
// pgbench redraw their progress line with. Shared by host processes and containers.

/**
 * Calls `onLine` for every line of `stream` as it comes, blank ones included, and for an unterminated
 * last line at the end. Resolves when the stream ends or fails.
 */
export function followLines(stream: NodeJS.ReadableStream | null | undefined, onLine: (line: string) => void): Promise<void> {
  if (!stream) return Promise.resolve();
  let rest = '';
  return new Promise<void>((resolve) => {
    stream.on('data', (chunk: Buffer | string) => {
      const lines = (rest + chunk.toString()).split(/\r\n|\r|\n/);
      rest = lines.pop() ?? '';
      for (const line of lines) onLine(line);
    });
    stream.on('end', () => {
      if (rest) onLine(rest);
      rest = '';
      resolve();
    });
    stream.on('error', () => resolve());
  });
}
