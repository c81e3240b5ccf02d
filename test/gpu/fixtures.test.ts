// The five Hugging Face fixtures on cuda:0: float32 to 1e-5, bfloat16 to 2e-2 of transformers' output.
import { describe, expect, it } from 'vitest';

import { MoELayer, Tensor } from '../../lib/index';
import { FIXTURE_FAMILIES, fixtureDir, idSets, readExpectation, relativeError } from '../helpers/fixtures';
import { GPU, HAS_GPU } from './gpu';

const TOLERANCE = { float32: 1e-5, bfloat16: 2e-2, float16: 5e-3 } as const;

describe.skipIf(!HAS_GPU).each(FIXTURE_FAMILIES)('%s fixture on the GPU', (family) => {
  for (const dtype of ['float32', 'bfloat16', 'float16'] as const) {
    it(`${dtype} matches transformers' float32 output`, async () => {
      const expected = await readExpectation(family);
      using layer = await MoELayer.fromPretrained(fixtureDir(family), { layer: 0, device: GPU, dtype });
      using x = Tensor.fromArray(expected.input, [expected.tokens, expected.hidden], { device: GPU });
      using result = layer.forward(x);
      const output = await result.output.toFloat32Array();
      const error = relativeError(output, expected.output);
      console.log(`gpu fixture ${family} ${dtype}: relative error ${error.toExponential(2)}`);
      expect(error).toBeLessThanOrEqual(TOLERANCE[dtype]);
      if (dtype === 'float32') {
        expect(idSets(await result.topkIds.toArray(), expected.topK)).toEqual(idSets(expected.topkIds, expected.topK));
      }
    });
  }
});
