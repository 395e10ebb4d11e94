/**
 * Counting what the webgpu backend asks of Deno's WebGPU: kernel dispatches, compute passes, queue
 * submits, uploads from the CPU, reads back to it, and the objects it creates on the way, with the
 * host time per dispatch. On a GPU the webgpu train step is bound by the host, kernel by kernel
 * (docs/tfjs.md), so these counts are what a change to it must lower, and what a test can hold.
 *
 * `installWebgpuCounters()` wraps methods of WebGPU's classes (their prototypes, so every device
 * is counted, whenever it was made); nothing is wrapped until it is called, and the wrappers only
 * count and read the clock: they pass every argument and return every result unchanged. What each
 * count is, in tfjs-backend-webgpu 4.22's terms:
 *
 * - `dispatches`: `GPUComputePassEncoder.dispatchWorkgroups` (and `…Indirect`): one per kernel
 *   run on the GPU (`runWebGPUProgram`). Kernels tfjs runs on the CPU (small inputs still on it,
 *   `WEBGPU_CPU_FORWARD`) and reshapes dispatch nothing.
 * - `computePasses`: `GPUCommandEncoder.beginComputePass`; tfjs ends a pass before a copy (an
 *   upload through a staging buffer, a read) and at each submit.
 * - `submits`: `GPUQueue.submit`: tfjs submits every `WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE` (15)
 *   dispatches and before each read (with `webgpu_dispatch.ts`, every 256 dispatches or once
 *   32 MiB of freed tensors are held, and before each read).
 * - `uploads`, `uploadBytes`, `scalarUploads`: tensor data written from the CPU. tfjs 4.22 uploads a
 *   tensor's values when a kernel first reads it (`uploadToGPU`): into a new buffer created
 *   `mappedAtCreation`, or, when its buffer pool hands back a used one, into a staging buffer created
 *   so and copied over; either way one buffer mapped for writing and unmapped. An upload is counted
 *   at that `GPUBuffer.unmap` (of a buffer created `mappedAtCreation` or mapped with
 *   `mapAsync(GPUMapMode.WRITE)`), and at `GPUQueue.writeBuffer` into a buffer that is not a
 *   uniform buffer; its bytes are the mapped (or written) range; a scalar upload is one of at most
 *   4 bytes (a `tf.scalar`, a constant the code made on the CPU).
 * - `uniformWrites`, `uniformBytes`: `GPUQueue.writeBuffer` into a `UNIFORM` buffer: tfjs writes
 *   each kernel's shapes and constants so, one per dispatch (with `webgpu_dispatch.ts`, only
 *   uniforms not already in its cache).
 * - `reads`, `readBytes`: `GPUBuffer.mapAsync(GPUMapMode.READ)`: tfjs reads a tensor back
 *   (`data()`, `dataSync()` of a GPU tensor, `array()`) by copying it to a staging buffer, submitting
 *   and mapping that; `workDoneWaits`: `GPUQueue.onSubmittedWorkDone` (tfjs 4.22 calls none).
 * - `copies`: `GPUCommandEncoder.copyBufferToBuffer` (staging uploads and reads, tensor copies).
 * - `bindGroups`, `pipelines`, `buffers` (`bufferBytes`): `GPUDevice.createBindGroup` (one per
 *   dispatch in tfjs; with `webgpu_dispatch.ts`, one per bind group not already in its cache),
 *   `createComputePipeline` and `createComputePipelineAsync` (one per kernel shape tfjs
 *   has not compiled yet: a warm step creates none), `createBuffer` (what tfjs's pool could not
 *   hand back, staging buffers included).
 *
 * Host time: `wallMs` is the wall time of the span counted (of `countWebgpu`'s function, or since
 * `resetWebgpuCounters()`), `submitMs` the part of it spent inside `GPUQueue.submit`, and `waitMs`
 * the part during which a read (`mapAsync(READ)`) or `onSubmittedWorkDone` was pending: the
 * program waited on the GPU. `hostUsPerDispatch` = (wallMs − submitMs − waitMs) / dispatches, in
 * µs: the host's cost of one kernel, tfjs's JavaScript, the encoding and the rest of the step's
 * own code included, the GPU's time excluded wherever the program waited for it. `submit` is left
 * out because on lavapipe it runs the kernels themselves (the device is the CPU: a front-door step
 * spends most of its wall time there); on a GPU it also holds host work (Deno's WebGPU records a
 * pass's commands at `end`/`finish`/`submit`, docs/tfjs.md), which `submitMs` shows apart.
 *
 * @module
 */

/** What was counted: see the module doc for what each field counts. */
export interface WebgpuCounts {
  /** `dispatchWorkgroups` (+ `Indirect`): kernels run on the GPU. */
  dispatches: number;
  /** `beginComputePass`. */
  computePasses: number;
  /** `GPUQueue.submit`. */
  submits: number;
  /** Tensor data written from the CPU (mapped-for-writing buffers unmapped, `writeBuffer` outside uniforms). */
  uploads: number;
  /** Of `uploads`, those of at most 4 bytes. */
  scalarUploads: number;
  /** Bytes of `uploads`. */
  uploadBytes: number;
  /** `writeBuffer` into a uniform buffer (tfjs: one per dispatch; cached: new uniforms only). */
  uniformWrites: number;
  /** Bytes of `uniformWrites`. */
  uniformBytes: number;
  /** `mapAsync(GPUMapMode.READ)`: reads back to the CPU. */
  reads: number;
  /** Bytes of `reads`. */
  readBytes: number;
  /** `GPUQueue.onSubmittedWorkDone`. */
  workDoneWaits: number;
  /** `copyBufferToBuffer`. */
  copies: number;
  /** `createBindGroup`. */
  bindGroups: number;
  /** `createComputePipeline` and `createComputePipelineAsync`. */
  pipelines: number;
  /** `createBuffer`. */
  buffers: number;
  /** Bytes of `buffers`. */
  bufferBytes: number;
  /** Wall time of the span counted, ms. */
  wallMs: number;
  /** Time inside `GPUQueue.submit`, ms. */
  submitMs: number;
  /** Time with a read or `onSubmittedWorkDone` pending, ms. */
  waitMs: number;
  /** (wallMs − submitMs − waitMs) / dispatches, in µs; null without dispatches. */
  hostUsPerDispatch: number | null;
}

/** The counts as they are kept: less the wall time and the host time per dispatch derived from it. */
type Tally = Omit<WebgpuCounts, "wallMs" | "hostUsPerDispatch">;

function zero(): Tally {
  return {
    dispatches: 0,
    computePasses: 0,
    submits: 0,
    uploads: 0,
    scalarUploads: 0,
    uploadBytes: 0,
    uniformWrites: 0,
    uniformBytes: 0,
    reads: 0,
    readBytes: 0,
    workDoneWaits: 0,
    copies: 0,
    bindGroups: 0,
    pipelines: 0,
    buffers: 0,
    bufferBytes: 0,
    submitMs: 0,
    waitMs: 0,
  };
}

let tally: Tally = zero();
let since = performance.now();
/** Waits (reads, `onSubmittedWorkDone`) pending now, and since when one has been. */
let pending = 0;
let pendingSince = 0;
/** Buffers mapped for writing (created `mappedAtCreation`, or `mapAsync(WRITE)`): their bytes. */
const mappedForWriting = new WeakMap<GPUBuffer, number>();
/** The original methods, by class and name, while the counters are installed. */
let originals: { target: object; name: string; method: unknown }[] | null = null;

function upload(bytes: number): void {
  tally.uploads++;
  tally.uploadBytes += bytes;
  if (bytes <= 4) tally.scalarUploads++;
}

function waitBegins(): void {
  if (pending++ === 0) pendingSince = performance.now();
}

function waitEnds(): void {
  if (--pending === 0) tally.waitMs += performance.now() - pendingSince;
}

/** The WebGPU classes whose methods are counted. */
const CLASSES = [
  "GPUComputePassEncoder",
  "GPUCommandEncoder",
  "GPUQueue",
  "GPUDevice",
  "GPUBuffer",
] as const;

/** The prototypes of `CLASSES` in this runtime, or null where it has no WebGPU. */
function prototypes(): Record<typeof CLASSES[number], object> | null {
  const g = globalThis as unknown as Record<string, { prototype: object } | undefined>;
  const found = CLASSES.map((name) => [name, g[name]?.prototype] as const);
  if (found.some(([, proto]) => proto === undefined)) return null;
  return Object.fromEntries(found) as Record<typeof CLASSES[number], object>;
}

/**
 * Wraps `target[name]` with `wrap(original)`, remembering the original for
 * `uninstallWebgpuCounters()`. A method the runtime lacks is left alone.
 */
function patch(
  target: object,
  name: string,
  wrap: (original: (...args: unknown[]) => unknown) => (...args: unknown[]) => unknown,
): void {
  const method = (target as Record<string, unknown>)[name];
  if (typeof method !== "function") return;
  originals!.push({ target, name, method });
  Object.defineProperty(target, name, {
    value: wrap(method as (...args: unknown[]) => unknown),
    writable: true,
    configurable: true,
    enumerable: false,
  });
}

/**
 * Starts counting WebGPU calls (see the module doc), for every device, made before or after; a
 * second call does nothing. Returns whether this runtime has WebGPU to count. The counters start
 * from zero.
 *
 * @example
 * ```ts
 * installWebgpuCounters();
 * await useBackend("webgpu");
 * // … a train step …
 * const { dispatches, uploads, reads } = webgpuCounters();
 * ```
 */
export function installWebgpuCounters(): boolean {
  const gpu = prototypes();
  if (!gpu) return false;
  if (originals) return true;
  originals = [];
  resetWebgpuCounters();
  const counting = (field: keyof Tally) => (original: (...args: unknown[]) => unknown) =>
    function (this: unknown, ...args: unknown[]) {
      tally[field]++;
      return original.apply(this, args);
    };
  patch(gpu.GPUComputePassEncoder, "dispatchWorkgroups", counting("dispatches"));
  patch(gpu.GPUComputePassEncoder, "dispatchWorkgroupsIndirect", counting("dispatches"));
  patch(gpu.GPUCommandEncoder, "beginComputePass", counting("computePasses"));
  patch(gpu.GPUCommandEncoder, "copyBufferToBuffer", counting("copies"));
  patch(gpu.GPUDevice, "createBindGroup", counting("bindGroups"));
  patch(gpu.GPUDevice, "createComputePipeline", counting("pipelines"));
  patch(gpu.GPUDevice, "createComputePipelineAsync", counting("pipelines"));
  patch(gpu.GPUDevice, "createBuffer", (original) =>
    function (this: unknown, ...args: unknown[]) {
      const buffer = original.apply(this, args) as GPUBuffer;
      const descriptor = args[0] as GPUBufferDescriptor;
      tally.buffers++;
      tally.bufferBytes += descriptor.size;
      if (descriptor.mappedAtCreation) mappedForWriting.set(buffer, descriptor.size);
      return buffer;
    });
  patch(gpu.GPUBuffer, "mapAsync", (original) =>
    function (this: GPUBuffer, ...args: unknown[]) {
      const [mode, offset = 0, size] = args as [number, number?, number?];
      const bytes = size ?? this.size - offset;
      if (mode & GPUMapMode.WRITE) mappedForWriting.set(this, bytes);
      if (!(mode & GPUMapMode.READ)) return original.apply(this, args);
      tally.reads++;
      tally.readBytes += bytes;
      waitBegins();
      return (original.apply(this, args) as Promise<undefined>).finally(waitEnds);
    });
  patch(gpu.GPUBuffer, "unmap", (original) =>
    function (this: GPUBuffer, ...args: unknown[]) {
      const bytes = mappedForWriting.get(this);
      if (bytes !== undefined) {
        mappedForWriting.delete(this);
        upload(bytes);
      }
      return original.apply(this, args);
    });
  patch(gpu.GPUQueue, "writeBuffer", (original) =>
    function (this: unknown, ...args: unknown[]) {
      const [buffer, , data, dataOffset = 0, size] = args as [
        GPUBuffer,
        number,
        BufferSource,
        number?,
        number?,
      ];
      // size and dataOffset count elements of a typed array, bytes of anything else
      const element = ArrayBuffer.isView(data) && "BYTES_PER_ELEMENT" in data
        ? (data as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT
        : 1;
      const bytes = size !== undefined ? size * element : data.byteLength - dataOffset * element;
      if (buffer.usage & GPUBufferUsage.UNIFORM) {
        tally.uniformWrites++;
        tally.uniformBytes += bytes;
      } else {
        upload(bytes);
      }
      return original.apply(this, args);
    });
  patch(gpu.GPUQueue, "submit", (original) =>
    function (this: unknown, ...args: unknown[]) {
      tally.submits++;
      const start = performance.now();
      try {
        return original.apply(this, args);
      } finally {
        tally.submitMs += performance.now() - start;
      }
    });
  patch(
    gpu.GPUQueue,
    "onSubmittedWorkDone",
    (original) =>
      function (this: unknown, ...args: unknown[]) {
        tally.workDoneWaits++;
        waitBegins();
        return (original.apply(this, args) as Promise<undefined>).finally(waitEnds);
      },
  );
  return true;
}

/**
 * Puts WebGPU's methods back as they were before `installWebgpuCounters()`; the counts stay as
 * they are (`webgpuCounters()` still reads them).
 *
 * @example
 * ```ts
 * installWebgpuCounters();
 * // … counted work …
 * uninstallWebgpuCounters(); // uncounted again, at no cost
 * ```
 */
export function uninstallWebgpuCounters(): void {
  if (!originals) return;
  for (const { target, name, method } of originals.reverse()) {
    Object.defineProperty(target, name, {
      value: method,
      writable: true,
      configurable: true,
      enumerable: false,
    });
  }
  originals = null;
}

/**
 * Whether the counters are installed.
 *
 * @example
 * ```ts
 * if (!webgpuCountersInstalled()) installWebgpuCounters();
 * ```
 */
export function webgpuCountersInstalled(): boolean {
  return originals !== null;
}

/**
 * Sets every count to zero and starts the wall clock of `webgpuCounters()` again.
 *
 * @example
 * ```ts
 * resetWebgpuCounters();
 * await step();
 * console.log(webgpuCounters().dispatches);
 * ```
 */
export function resetWebgpuCounters(): void {
  tally = zero();
  since = performance.now();
  // a wait still pending is counted from now
  if (pending > 0) pendingSince = since;
}

/** `tally` with its wall time and host time per dispatch. */
function withHostTime(t: Tally, wallMs: number): WebgpuCounts {
  const host = wallMs - t.submitMs - t.waitMs;
  return {
    ...t,
    wallMs,
    hostUsPerDispatch: t.dispatches > 0 ? (host * 1000) / t.dispatches : null,
  };
}

/** The pending wait's time so far, counted into a snapshot taken while it is pending. */
function snapshot(): Tally {
  const now = performance.now();
  return { ...tally, waitMs: tally.waitMs + (pending > 0 ? now - pendingSince : 0) };
}

/**
 * The counts since the counters were installed or last reset, the wall time since then included
 * (all zero while they are not installed).
 *
 * @example
 * ```ts
 * installWebgpuCounters();
 * const x = tf.add(a, b);
 * await x.data();
 * webgpuCounters(); // { dispatches: 1, reads: 1, … }
 * ```
 */
export function webgpuCounters(): WebgpuCounts {
  if (!originals) return withHostTime(zero(), 0);
  return withHostTime(snapshot(), performance.now() - since);
}

/**
 * Runs `fn` with the counters installed (installing them if needed; they stay installed) and
 * returns its result with what it made WebGPU do. The counts are those of `fn` alone, the
 * counters' own totals going on beside them; `wallMs` is `fn`'s wall time.
 *
 * @example
 * ```ts
 * const { result: loss, counts } = await countWebgpu(() => trainStep());
 * console.log(`${counts.dispatches} dispatches, ${counts.reads} reads`);
 * ```
 */
export async function countWebgpu<T>(
  fn: () => T | Promise<T>,
): Promise<{ result: T; counts: WebgpuCounts }> {
  installWebgpuCounters();
  const before = snapshot();
  const start = performance.now();
  const result = await fn();
  const wallMs = performance.now() - start;
  const after = snapshot();
  const counts = Object.fromEntries(
    Object.entries(after).map(([key, value]) => [key, value - before[key as keyof Tally]]),
  ) as Tally;
  return { result, counts: withHostTime(counts, wallMs) };
}
