// HAProxy configuration text to words per line: `#` starts a comment outside quotes, words are split
// on blanks, "double" and 'single' quotes group words, a backslash escapes the next character.
// Indentation means nothing to HAProxy (a section keyword starts a section wherever it is).

export interface ConfigLine {
  /** 1-based line number in the file, for messages. */
  line: number;
  words: string[];
}

export function tokenizeHaproxyConfig(text: string): ConfigLine[] {
  const lines: ConfigLine[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const words = splitWords(raw);
    if (words.length > 0) lines.push({ line: index + 1, words });
  });
  return lines;
}

function splitWords(raw: string): string[] {
  const words: string[] = [];
  let current = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    if (ch === '\\' && quote !== "'" && i + 1 < raw.length) {
      current += raw[++i];
      inWord = true;
    } else if (quote) {
      if (ch === quote) quote = null;
      else current += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      inWord = true;
    } else if (ch === '#') {
      break;
    } else if (ch === ' ' || ch === '\t') {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else {
      current += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(current);
  return words;
}
