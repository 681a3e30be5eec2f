// Colour only for people: on a terminal, and never when NO_COLOR is set (https://no-color.org).
export interface Paint {
  red(text: string): string;
  green(text: string): string;
  yellow(text: string): string;
}

const plain: Paint = { red: (t) => t, green: (t) => t, yellow: (t) => t };
const ansi: Paint = {
  red: (t) => `\x1b[31m${t}\x1b[39m`,
  green: (t) => `\x1b[32m${t}\x1b[39m`,
  yellow: (t) => `\x1b[33m${t}\x1b[39m`,
};

export function paintFor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): Paint {
  const noColor = env.NO_COLOR !== undefined && env.NO_COLOR !== '';
  return stream.isTTY && !noColor ? ansi : plain;
}

export const noPaint = plain;
