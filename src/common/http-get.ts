// One bounded HTTP GET for the stats readers. Not fetch(): its AbortSignal.timeout timer is unref'd,
// and a server that accepts and closes at once can leave fetch's promise pending with nothing else
// keeping Node alive, so the CLI exited (13 under a top-level await) without a word. Here a ref'd timer
// bounds the whole exchange, and every way it can end settles the promise with a one-line reason.
import http from 'node:http';

export interface HttpAnswer {
  status: number;
  text: string;
}

/** Largest body accepted: a stats page is a few kB. */
const MAX_BODY = 8 * 1024 * 1024;

export function httpGet(url: string, timeoutMs: number, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (error: Error | null, answer?: HttpAnswer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.destroy();
      if (error) reject(error);
      else resolve(answer!);
    };
    const request = http.get(url, { headers, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY) return finish(new Error(`answer larger than ${MAX_BODY} bytes`));
        chunks.push(chunk);
      });
      response.on('end', () => finish(null, { status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      response.on('error', (error) => finish(new Error(`answer cut off: ${error.message}`)));
      response.on('close', () => finish(new Error('answer cut off: the connection closed')));
    });
    const timer = setTimeout(() => finish(Object.assign(new Error(`no answer within ${timeoutMs / 1000} s`), { name: 'TimeoutError' })), timeoutMs);
    request.on('error', (error: NodeJS.ErrnoException) => {
      const reason = error.code === 'ECONNREFUSED' ? 'connection refused'
        : error.code === 'ECONNRESET' || error.message === 'socket hang up' ? 'the connection closed without an answer'
        : error.message;
      finish(Object.assign(new Error(reason), { code: error.code }));
    });
    request.on('close', () => finish(new Error('the connection closed without an answer')));
  });
}
