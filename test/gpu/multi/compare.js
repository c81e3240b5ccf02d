// What the multi-GPU scripts compare results with.

/** ‖actual − reference‖ / ‖reference‖ (the plain norm of the difference where the reference is all zeros). */
function relativeError(actual, reference) {
  let difference = 0;
  let norm = 0;
  for (let i = 0; i < reference.length; i++) {
    difference += (actual[i] - reference[i]) ** 2;
    norm += reference[i] ** 2;
  }
  return norm === 0 ? Math.sqrt(difference) : Math.sqrt(difference / norm);
}

module.exports = { relativeError };
