/**
 * Seeded randomness for what must come out the same every time: a taught head's start weights,
 * split and order (head.js), a lesson's generated points (line-fit.js).
 */

/** A seeded generator of numbers in [0, 1) (mulberry32). */
export function seededRandom(seed) {
  let a = (Number(seed) >>> 0) || 0x9e3779b9;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
