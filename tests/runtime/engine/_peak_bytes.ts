/**
 * The peak of live backend buffers while a function runs, counted per data buffer (tfjs's own
 * `numBytes` counts every reshape as a copy). For memory tests.
 *
 * @module
 */

import { tf } from "../../../runtime/engine/backend.ts";

/** tfjs-core's `Engine`, as far as the peak measure below hooks it. */
interface Engine {
  state: { tensorInfo: WeakMap<object, { bytes: number }> };
  trackTensor(t: tf.Tensor, backend: unknown): void;
  removeDataId(dataId: object, backend: unknown): void;
}

/** The most bytes of backend data that `f` holds at once beyond what existed before it. */
export function peakBytes(f: () => void): number {
  const engine = tf.engine() as unknown as Engine;
  const { trackTensor, removeDataId } = engine;
  let live = 0;
  let peak = 0;
  engine.trackTensor = function (t, backend) {
    const fresh = !engine.state.tensorInfo.has(t.dataId);
    trackTensor.call(this, t, backend);
    if (fresh) live += engine.state.tensorInfo.get(t.dataId)!.bytes;
    peak = Math.max(peak, live);
  };
  engine.removeDataId = function (dataId, backend) {
    live -= engine.state.tensorInfo.get(dataId)?.bytes ?? 0;
    removeDataId.call(this, dataId, backend);
  };
  try {
    f();
  } finally {
    engine.trackTensor = trackTensor;
    engine.removeDataId = removeDataId;
  }
  return peak;
}
