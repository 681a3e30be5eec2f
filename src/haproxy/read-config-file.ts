// `--config FILE`: a HAProxy configuration file read from disk, its errors naming the file.
import { readFile } from 'node:fs/promises';
import { LabError } from '../common/errors.js';
import { parseHaproxyConfig, type ParseHaproxyOptions, type ParsedHaproxyConfig } from './parse-config.js';

export async function readHaproxyConfigFile(file: string, options: ParseHaproxyOptions = {}): Promise<ParsedHaproxyConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new LabError(code === 'ENOENT' ? 'NOT_FOUND' : 'USAGE', `Cannot read the HAProxy configuration ${file}: ${code ?? String(error)}`);
  }
  try {
    const config = parseHaproxyConfig(text, options);
    return { ...config, warnings: config.warnings.map((w) => `${file} ${w}`) };
  } catch (error) {
    if (error instanceof LabError) throw new LabError(error.code, `${file} ${error.message}`, { detail: error.detail });
    throw error;
  }
}
