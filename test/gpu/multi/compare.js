// What the multi-GPU rank scripts share: how they compare results, and how they end.

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

/**
 * Runs a rank script's main(), which resolves to { rank, failures } once its group is destroyed:
 * prints the rank's summary and exits 0 when nothing failed; exits 1 on failures or when main throws.
 */
function runRankScript(main) {
  main().then(
    ({ rank, failures }) => {
      console.log(`rank ${rank}: ${failures === 0 ? 'all passed' : `${failures} failed`}`);
      process.exit(failures === 0 ? 0 : 1);
    },
    (error) => {
      console.error(`${error.code ?? ''} ${error.message}`);
      process.exit(1);
    },
  );
}

module.exports = { relativeError, runRankScript };
