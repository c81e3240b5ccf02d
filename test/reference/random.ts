/**
 * Seeded pseudo-random numbers for reproducible test inputs (mulberry32: 32-bit state, fast, and
 * well enough distributed for test data; not for anything else).
 */

/** A generator of uniform numbers in [0, 1), the same sequence for the same seed. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  };
}

/** `length` float32 values uniform in [-scale, scale) (up to float32 rounding), from `seed`. */
export function randomArray(length: number, seed: number, scale = 1): Float32Array {
  const next = mulberry32(seed);
  const values = new Float32Array(length);
  for (let i = 0; i < length; i++) values[i] = scale * (2 * next() - 1);
  return values;
}
