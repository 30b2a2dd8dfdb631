/** Timing helpers: a stopwatch and the median of the most recent measurements. */

/** Milliseconds since `start` (a performance.now() value). */
export function since(start) {
  return performance.now() - start;
}

/** Keeps the last `size` measurements and gives their median. */
export class RecentMedian {
  constructor(size = 20) {
    this.size = size;
    this.values = [];
  }

  add(value) {
    this.values.push(value);
    if (this.values.length > this.size) this.values.shift();
  }

  clear() {
    this.values = [];
  }

  get count() {
    return this.values.length;
  }

  /** The median of the kept values, or null when there are none. */
  median() {
    if (this.values.length === 0) return null;
    const sorted = [...this.values].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  }
}
