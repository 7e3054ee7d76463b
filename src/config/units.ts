/**
 * Durations and sizes in the config always carry units ("250ms", "1MiB"), so a
 * bare number can never be misread as seconds when milliseconds were meant.
 */

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;
const DURATION_UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** Parses "250ms", "10s", "1m30s", "2h" to milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  if (text.length === 0) return undefined;
  DURATION_PART.lastIndex = 0;
  let total = 0;
  while (DURATION_PART.lastIndex < text.length) {
    const match = DURATION_PART.exec(text);
    if (match === null) return undefined;
    total += Number(match[1]) * (DURATION_UNIT_MS[match[2] as string] as number);
  }
  return Math.round(total);
}

const SIZE = /^(\d+(?:\.\d+)?)(B|KB|MB|GB|KiB|MiB|GiB)$/;
const SIZE_UNIT_BYTES: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
};

/** Parses "512B", "16KiB", "1MB" to bytes; undefined when malformed. */
export function parseSize(text: string): number | undefined {
  const match = SIZE.exec(text);
  if (match === null) return undefined;
  return Math.floor(Number(match[1]) * (SIZE_UNIT_BYTES[match[2] as string] as number));
}

/** Formats milliseconds the way the config writes them, for logs and /debug/state. */
export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1_000 === 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}
