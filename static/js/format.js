/** Formatting numbers for people: milliseconds, megabytes, probabilities. */

/** "1 class", "3 classes": a count with its noun (`plural` when it is not just noun + "s"). */
export function count(n, noun, plural = `${noun}s`) {
  return `${n} ${n === 1 ? noun : plural}`;
}

/** "12 ms", "1.4 ms", "2.35 s"; an em dash for null. */
export function formatMs(ms) {
  if (ms == null || !Number.isFinite(ms)) return '—';
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${Math.round(ms)} ms`;
  return `${ms.toFixed(1)} ms`;
}

/** Bytes as megabytes (10^6): "14.1 MB", "0.27 MB". */
export function formatMB(bytes) {
  const mb = bytes / 1e6;
  return `${mb >= 10 ? mb.toFixed(1) : mb.toFixed(2)} MB`;
}

/** A probability 0..1 as a percentage with sensible precision: "87%", "4.6%", "0.46%". */
export function formatPercent(p) {
  const pct = p * 100;
  if (pct >= 10) return `${Math.round(pct)}%`;
  if (pct >= 1) return `${pct.toFixed(1)}%`;
  if (pct >= 0.01) return `${pct.toFixed(2)}%`;
  return '<0.01%';
}
