/**
 * Principal component analysis of feature rows, for /learn/pca (issue 15).
 *
 * n photos, each d numbers (MobileNetV2: d = 1280, n a few dozen). With n much smaller than d,
 * the d x d covariance is large and mostly empty; its non-zero eigenvalues are those of the
 * n x n Gram matrix of the centred rows, G = Xc Xc^T, and its eigenvectors follow from G's:
 *
 *   1. centre: Xc = X - mean(X)                                  (TF.js)
 *   2. G = Xc Xc^T                                               (TF.js, tf.matMul)
 *   3. G's eigenvalues l_i and unit eigenvectors u_i             (Jacobi rotations, in float64 JS:
 *                                                                TF.js has no eigen-decomposition)
 *   4. component i: v_i = Xc^T u_i / sqrt(l_i), a unit vector of d numbers (TF.js)
 *   5. the photos' coordinates on it: Xc v_i = u_i sqrt(l_i)
 *   6. variance along it: l_i / (n - 1); of the total: l_i / trace(G)
 *
 * The same as the SVD of Xc (singular values sqrt(l_i), right singular vectors v_i), which is
 * what the server's numpy computes (POST /api/learn/pca); a component's sign is arbitrary.
 */
import { tf } from './tf.js';

/**
 * Eigenvalues and eigenvectors of a symmetric matrix (Float64Array n*n, row by row) by cyclic
 * Jacobi rotations: {values: Float64Array n (descending), vectors: Float64Array[] (unit, one per value)}.
 */
export function symmetricEigen(matrix, n, { sweeps = 100, tolerance = 1e-15 } = {}) {
  const a = Float64Array.from(matrix);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i += 1) v[i * n + i] = 1;
  const scale = Math.max(1e-300, a.reduce((sum, x) => sum + x * x, 0));
  for (let sweep = 0; sweep < sweeps; sweep += 1) {
    let off = 0;
    for (let p = 0; p < n; p += 1) for (let q = p + 1; q < n; q += 1) off += a[p * n + q] ** 2;
    if (off <= tolerance * tolerance * scale) break;
    for (let p = 0; p < n - 1; p += 1) {
      for (let q = p + 1; q < n; q += 1) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k += 1) { // columns p and q
          const akp = a[k * n + p];
          const akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k += 1) { // rows p and q
          const apk = a[p * n + k];
          const aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k += 1) {
          const vkp = v[k * n + p];
          const vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = [...Array(n).keys()].sort((i, j) => a[j * n + j] - a[i * n + i]);
  return {
    values: Float64Array.from(order, (i) => a[i * n + i]),
    vectors: order.map((i) => Float64Array.from({ length: n }, (_, k) => v[k * n + i])),
  };
}

/**
 * PCA of `rows` (n arrays of d numbers), the first `k` components (at most n - 1: n centred
 * rows span n - 1 directions). Resolves to {mean: Float32Array d, components: Float32Array[] (k,
 * unit, d each), explainedVariance: number[] k, ratio: number[] k, totalVariance, projected:
 * number[][] (n rows of k), ms}.
 */
export async function pca(rows, k = 2) {
  const start = performance.now();
  const n = rows.length;
  const d = rows[0]?.length ?? 0;
  if (n < 2) throw new Error('PCA needs at least two photos.');
  k = Math.max(1, Math.min(k, n - 1, d));
  const flat = new Float32Array(n * d);
  rows.forEach((row, i) => flat.set(row, i * d));
  const [centred, mean, gram] = tf.tidy(() => {
    const x = tf.tensor2d(flat, [n, d]);
    const m = tf.mean(x, 0);
    const xc = tf.sub(x, m);
    return [xc, m, tf.matMul(xc, xc, false, true)];
  });
  let components;
  try {
    const { values, vectors } = symmetricEigen(Float64Array.from(await gram.data()), n);
    const total = values.reduce((sum, l) => sum + Math.max(l, 0), 0);
    const kept = [...Array(k).keys()].filter((i) => values[i] > 1e-12 * Math.max(total, 1e-300));
    const u = new Float32Array(n * kept.length); // [n, k] columns u_i / sqrt(l_i)
    kept.forEach((i, col) => vectors[i].forEach((value, row) => { u[row * kept.length + col] = value / Math.sqrt(values[i]); }));
    components = tf.tidy(() => tf.matMul(centred, tf.tensor2d(u, [n, kept.length]), true, false)); // [d, k]
    const columns = await components.data();
    return {
      mean: await mean.data(),
      components: kept.map((_, col) => Float32Array.from({ length: d }, (__, j) => columns[j * kept.length + col])),
      explainedVariance: kept.map((i) => values[i] / (n - 1)),
      ratio: kept.map((i) => (total > 0 ? values[i] / total : 0)),
      totalVariance: total / (n - 1),
      projected: Array.from({ length: n }, (_, row) => kept.map((i) => vectors[i][row] * Math.sqrt(values[i]))),
      ms: performance.now() - start,
    };
  } finally {
    tf.dispose([centred, mean, gram, components].filter(Boolean));
  }
}
