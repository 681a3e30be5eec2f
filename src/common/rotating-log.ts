// A log written through a file descriptor and rotated by size: NAME.log -> NAME.log.1 -> ... -> NAME.log.N,
// the oldest dropped. The balancer writes its log through the descriptor `lab balancer start` opened (0600,
// O_NOFOLLOW, in the 0700 balancer dir); at rotation the file is renamed within that dir and a new one is
// created 0600 with O_EXCL | O_NOFOLLOW, so no generation is ever a link, another user's or readable by others.
import { closeSync, fstatSync, lstatSync, renameSync, writeSync } from 'node:fs';
import { messageOf } from './errors.js';
import { createPrivateAppendSync } from './safe-files.js';

export interface RotationSettings {
  /** Rotate before a write would take the file past this size. */
  maxBytes: number;
  /** Rotated generations kept beside the live file (NAME.log.1 is the newest). */
  keep: number;
}

export const DEFAULT_ROTATION: RotationSettings = { maxBytes: 10 * 1024 * 1024, keep: 3 };

/** "10MB", "512k", "2000" (bytes); undefined when unset or not a size. */
export function parseByteSize(text: string | undefined): number | undefined {
  const match = /^(\d+)\s*(k|kb|m|mb|g|gb)?$/i.exec((text ?? '').trim());
  if (!match) return undefined;
  const unit = (match[2] ?? '').toLowerCase()[0];
  const value = Number(match[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1);
  return value > 0 ? value : undefined;
}

/** Rotation from the environment: LAB_BALANCER_LOG_SIZE (default 10MB), LAB_BALANCER_LOG_KEEP (default 3). */
export function rotationFromEnv(env: NodeJS.ProcessEnv = process.env): RotationSettings {
  const keep = Number(env.LAB_BALANCER_LOG_KEEP);
  return {
    maxBytes: parseByteSize(env.LAB_BALANCER_LOG_SIZE) ?? DEFAULT_ROTATION.maxBytes,
    keep: Number.isInteger(keep) && keep >= 1 && keep <= 99 ? keep : DEFAULT_ROTATION.keep,
  };
}

function sameFile(a: { dev: number; ino: number }, b: { dev: number; ino: number }): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * Writes to `fd`, which must be `file` (checked: same device and inode, else undefined: the caller writes
 * as before, unrotated). Rotation failures are reported once through the log itself and writing goes on.
 */
export function rotatingLog(file: string, fd: number, settings: RotationSettings): { write(text: string): void } | undefined {
  let current = fd;
  let size: number;
  try {
    const opened = fstatSync(fd);
    if (!opened.isFile() || !sameFile(opened, lstatSync(file))) return undefined;
    size = opened.size;
  } catch {
    return undefined;
  }
  let broken = false;
  const rotate = (): void => {
    // Only the file we write is renamed: a path changed under us is left alone, and rotation stops.
    if (!sameFile(fstatSync(current), lstatSync(file))) throw new Error(`${file} is no longer the file this balancer writes`);
    for (let generation = settings.keep - 1; generation >= 1; generation -= 1) {
      try {
        renameSync(`${file}.${generation}`, `${file}.${generation + 1}`);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
    renameSync(file, `${file}.1`);
    const next = createPrivateAppendSync(file);
    if (current !== fd) closeSync(current);
    current = next;
    size = 0;
  };
  return {
    write(text: string): void {
      const bytes = Buffer.byteLength(text);
      if (!broken && size > 0 && size + bytes > settings.maxBytes) {
        try {
          rotate();
        } catch (error) {
          broken = true;
          text = `${new Date().toISOString()} log rotation stopped: ${messageOf(error)}\n${text}`;
        }
      }
      writeSync(current, text);
      size += bytes;
    },
  };
}
