// Log lines written in batches. A busy balancer logs a line per connection (hundreds a second under
// `pgbench -C`): one write(2) per batch instead of one per line. Lines are joined and written at most
// every `flushMs`, or at once when `maxLines` are waiting; `flush()` writes what is left (before exit,
// after an error).

export interface BatchedLines {
  write(line: string): void;
  flush(): void;
}

/** Where batches go: a stream, or anything with a write of text (a rotating log). */
export interface TextSink {
  write(text: string): unknown;
}

export function batchedLines(out: TextSink, flushMs = 100, maxLines = 512): BatchedLines {
  let waiting: string[] = [];
  let timer: NodeJS.Timeout | null = null;
  const flush = (): void => {
    if (timer) clearTimeout(timer);
    timer = null;
    if (waiting.length === 0) return;
    const text = waiting.join('');
    waiting = [];
    out.write(text);
  };
  return {
    write(line: string): void {
      waiting.push(line);
      if (waiting.length >= maxLines) flush();
      else timer ??= setTimeout(flush, flushMs);
    },
    flush,
  };
}
