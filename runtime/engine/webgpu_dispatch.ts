/**
 * Dispatch without per-kernel set-up on webgpu: tfjs-backend-webgpu 4.22 prepares every kernel it
 * runs from scratch, and on a GPU a train step is bound by that host work, kernel by kernel
 * (docs/tfjs.md). Per dispatch, its `recordAndSubmit` builds the kernel's uniforms (shapes,
 * strides, constants) into a fresh uniform buffer written with `queue.writeBuffer`
 * (`makeUniforms`), looks the pipeline's bind group layout up (`getBindGroupLayout(0)`) and
 * creates a bind group (`createBindGroup`, ≈ 13 µs on Deno's WebGPU), and submits the command
 * encoder every `WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE` (15) dispatches. The shapes of a run do not
 * change from step to step, so nearly all of that is the same every step.
 * {@linkcode installWebgpuDispatch} patches the backend instance (own properties over three of
 * `WebGPUBackend`'s methods, and over two of its buffer manager's), so that:
 *
 * - uniforms are cached by content (their bytes, found by a hash of them and compared word by
 *   word): a kernel whose uniforms some earlier kernel already wrote binds that buffer, with no
 *   `writeBuffer`; a block whose hash another holds takes its place. A cached uniform buffer is
 *   never written again; the {@linkcode WebgpuDispatchOptions.maxUniforms} most recently used are kept
 *   (taken from tfjs's buffer pool, so `tf.memory()` counts them), and one pushed out returns to
 *   the pool at the next submit, as tfjs returns its uniform buffers: work already recorded may
 *   still read it.
 * - bind groups are cached by (pipeline, each bound buffer): one per pipeline per combination of
 *   `GPUBuffer`s, found through `WeakMap`s keyed by the pipeline and the buffers in binding order.
 *   A bind group only names buffers (tfjs binds each whole), so one found in the cache binds what
 *   a new one would; what must never happen is using one after a buffer in it was destroyed.
 *   tfjs 4.22 destroys a buffer in two places only: `BufferManager.releaseBuffer(buffer, false)`
 *   (upload staging buffers, which are never bound) and `BufferManager.dispose()` (the backend's
 *   end); both are wrapped here to drop the whole bind group cache when a buffer that could be
 *   bound goes. Tensors over a caller's own buffer (`createTensorFromGPUData` with `zeroCopy`,
 *   which the caller may destroy) and textures are bound as tfjs binds them, uncached. The cache
 *   holds at most {@linkcode WebgpuDispatchOptions.maxBindGroups} and starts empty when full.
 * - the buffer pool hands out its lowest-numbered free buffer of the size asked for, not the one
 *   freed last (`keepOrdered`), so that the same kernels get the same buffers step after step and
 *   their bind groups are found again. With tfjs's last-freed-first order they never settle: a
 *   step frees its tensors in another order than it made them. With this order a step's buffers
 *   follow from the free buffers at its start, which settle within the first steps of a run
 *   (about 10 for the front-door model on lavapipe, as its parameters and the optimiser's moments
 *   find their buffers); until then some bind groups are still made. A buffer released goes back
 *   from its known place in the pool's list of used buffers (`releaseFromPool`), where tfjs
 *   searched that list (`indexOf`) on every release; the list ends the same.
 * - the bind group layout of each pipeline is asked for once, and the pipeline's key
 *   (`makeShaderKey`: string building and broadcast axes, per kernel) is remembered by what it is
 *   made of (`runWebGPUProgram` below), found by a hash of that as numbers (`KeyWords`), as the
 *   uniforms are found by a hash of their words: building strings to look them up by cost more
 *   than the lookups themselves.
 * - fewer submits: every {@linkcode WebgpuDispatchOptions.submitDispatches} dispatches instead of
 *   15, or sooner once the memory held for the submit reaches
 *   {@linkcode WebgpuDispatchOptions.submitPendingBytes}: tfjs keeps a tensor freed while a
 *   recorded kernel reads it (`tensorDataPendingDisposal`), and the upload staging buffers, until
 *   the next submit, so a longer batch holds more memory and the pool, unable to hand those
 *   buffers back, creates new ones. The byte bound keeps that extra memory at most its value
 *   (32 MiB by default: a fraction of any GPU's memory, and more than the 11 MB the front-door
 *   step holds at most between two submits at 256 dispatches, so it does not cut that step's
 *   batches; the step's pool grew from 32 to 38 MB); the dispatch bound keeps the GPU fed on a
 *   real device, which runs a batch only once it is submitted. tfjs's
 *   `WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE` no longer applies while the patch is on.
 *
 * A warm front-door train step (then 826 dispatches, webgpu_counters_test.ts) made 0 bind groups
 * and 0 uniform writes instead of 826 each, in 5 submits and 10 passes instead of 58 and 61; the
 * host time per dispatch went from about 100 µs to about 34 µs of main-thread CPU on lavapipe. On
 * today's 388-dispatch step, the hashed keys and the pool's known places took it from about 39 to
 * 34 µs (medians of 28 steps each, back to back, on a loaded 2-core machine; about 30 when it is
 * quiet). What is left is mostly tfjs-core's engine, the kernels' own JavaScript, Deno's command
 * recording (`finish`, a tenth) and V8's tiering: in a short run these functions stay on its
 * middle tier (Maglev).
 *
 * Everything else is tfjs's own code path: the patched `runWebGPUProgram` and `recordAndSubmit`
 * are 4.22's with lookups in place of creations, and hand back to tfjs's originals whenever they
 * would do something else (a kernel timed by `tf.profile`/`tf.time`, a pixel kernel, a pipeline
 * still compiling). The same kernels run in the same order with the same inputs, so every result is
 * bit for bit what the unpatched backend computes (tests/runtime/engine/webgpu_dispatch_test.ts).
 * The patch is written against tfjs-backend-webgpu 4.22.0's code and refuses any other version.
 *
 * @module
 */

import { version as tfjsWebgpuVersion } from "@tensorflow/tfjs-backend-webgpu/dist/version.js";
import { tf } from "./tf.ts";

/** The tfjs-backend-webgpu version whose code this patch follows. */
export const PATCHED_TFJS_WEBGPU_VERSION = "4.22.0";

/** Options of {@linkcode installWebgpuDispatch}. */
export interface WebgpuDispatchOptions {
  /** Uniform buffers kept, the most recently used. @default 4096 */
  maxUniforms?: number;
  /** Bind groups kept; the cache starts empty when it holds more. @default 16384 */
  maxBindGroups?: number;
  /** Pipeline keys remembered by kernel and shapes; forgotten all at once when full. @default 8192 */
  maxShaderKeys?: number;
  /** Dispatches recorded before a submit (tfjs: 15). @default 256 */
  submitDispatches?: number;
  /**
   * Bytes of freed tensors and upload staging buffers held for the next submit that make it
   * happen now (see the module doc). @default 33554432 (32 MiB)
   */
  submitPendingBytes?: number;
}

/** What the caches did since the patch was installed. */
export interface WebgpuDispatchStats {
  /** Uniforms found in the cache (no `writeBuffer`). */
  uniformHits: number;
  /** Uniforms written to a new buffer. */
  uniformMisses: number;
  /** Uniform buffers in the cache now. */
  uniformsCached: number;
  /** Bind groups found in the cache. */
  bindGroupHits: number;
  /** Bind groups created and cached. */
  bindGroupMisses: number;
  /** Bind groups created uncached (a caller's buffer, a texture). */
  bindGroupsUncached: number;
  /** Bind groups in the cache now. */
  bindGroupsCached: number;
  /** Times the bind group cache was dropped (full, or a bindable buffer destroyed). */
  bindGroupDrops: number;
  /** The most bytes held for a submit (`submitPendingBytes`) at a dispatch. */
  pendingBytesPeak: number;
  /** Pipeline keys found by kernel and shapes (no `makeShaderKey`). */
  shaderKeyHits: number;
  /** Kernels run by tfjs's own `runWebGPUProgram` (a key not remembered, or its other paths). */
  shaderKeyMisses: number;
}

/** Whether the patch can go on this backend, and why not. */
export type WebgpuDispatchInstall = { installed: true } | { installed: false; reason: string };

// tfjs-backend-webgpu 4.22's internals that the patch reads or calls, as they are in its dist.

interface TensorData {
  resource?: unknown;
  external?: boolean;
  dtype: string;
}

interface Uniform {
  type: string;
  data: number[];
}

interface Binding {
  offset: number;
  size: number;
  buffer: GPUBuffer;
}

interface Program {
  shaderKey: string;
  workgroupSize?: number[];
  variableNames: string[];
  pipeline: GPUComputePipeline | Promise<GPUComputePipeline>;
  pixelsOpType?: number | null;
  size?: boolean;
  outputShape: number[];
  outputComponent?: number;
  dispatch: [number, number, number];
}

interface Info {
  dataId: object;
  shape: number[];
  dtype: string;
}

interface BufferManager {
  freeBuffers: Map<string, GPUBuffer[]>;
  usedBuffers: Map<string, GPUBuffer[]>;
  numUsedBuffers: number;
  numBytesUsed: number;
  numFreeBuffers: number;
  numBytesAllocated: number;
  acquireBuffer(
    size: number,
    usage: number,
    mappedAtCreation?: boolean,
    reuse?: boolean,
  ): GPUBuffer;
  releaseBuffer(buffer: GPUBuffer, reuse?: boolean): void;
  dispose(): void;
}

/** The parts of tfjs-backend-webgpu 4.22's `WebGPUBackend` the patch uses. */
interface Backend {
  device: GPUDevice;
  queue: GPUQueue;
  tensorMap: { get(dataId: object): TensorData | undefined };
  pipelineCache: Record<string, GPUComputePipeline | Promise<GPUComputePipeline>>;
  makeTensorInfo(shape: number[], dtype: string): Info;
  uploadToGPU(dataId: object): void;
  commandQueueOwnedIds: WeakSet<object>;
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  dispatchCountInPass: number;
  tensorDataPendingDisposal: object[];
  stagingPendingDisposal: GPUBuffer[];
  uniformPendingDisposal: GPUBuffer[];
  activeTimers?: unknown;
  bufferManager: BufferManager;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  tensorToBinding(info: Info): GPUBindingResource | null;
  makeUniforms(uniforms: Uniform[]): Binding;
  recordAndSubmit(program: Program, output: Info, inputs: Info[], defined?: Uniform[]): void;
  runWebGPUProgram(
    program: Program,
    inputs: Info[],
    outputDtype: string,
    defined?: Uniform[],
    output?: Info,
  ): Info;
}

/** The names the patch sets on the backend and its buffer manager (their own properties). */
const BACKEND_METHODS = ["makeUniforms", "recordAndSubmit", "runWebGPUProgram"] as const;
const MANAGER_METHODS = ["acquireBuffer", "releaseBuffer", "dispose"] as const;

/**
 * A pool buffer's number (`keepOrdered`), its size, its free list's key, whether it binds, and
 * where it is in its list of used buffers (`releaseBuffer`; -1 when not known).
 */
interface Facts {
  serial: number;
  size: number;
  key: string;
  bindable: boolean;
  usedAt: number;
}

/** A level of the bind group cache: the buffer bound next, or the bind group once all are. */
interface Node {
  next: WeakMap<GPUBuffer, Node>;
  group?: GPUBindGroup;
}

/** Usages a bind group can bind a buffer with. */
const BINDABLE = 0x0080 | 0x0040; // GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM

/** A pipeline key in the cache: what it was made from (`KeyWords`) and the key. */
interface KnownKey {
  words: Int32Array;
  key: string;
}

/** A uniform block in the cache: its words (to tell blocks of one hash apart) and its buffer. */
interface CachedUniform {
  words: Int32Array;
  buffer: GPUBuffer;
}

/** The patch on one backend: its caches, its options, and how to take it off. */
interface Patch {
  backend: Backend;
  options: Required<WebgpuDispatchOptions>;
  /** Uniform blocks by their hash (`UniformWriter.hash`), least recently used first. */
  uniforms: Map<number, CachedUniform>;
  layouts: WeakMap<GPUComputePipeline, GPUBindGroupLayout>;
  /** What `makeShaderKey` returned, by a hash of everything it reads (`KeyWords`). */
  shaderKeys: Map<number, KnownKey>;
  /** The numbers of the strings in `shaderKeys`' words, forgotten with them. */
  keyNames: Map<string, number>;
  bindGroups: WeakMap<GPUComputePipeline, Node>;
  /** The pending lists last counted (tfjs replaces them at each submit), how far, their bytes. */
  pending: { tensors: object[]; staging: GPUBuffer[]; tensorsSeen: number; stagingSeen: number };
  pendingBytes: number;
  /** What the patch reads of each pool buffer, read once (Deno's getters check their object). */
  facts: WeakMap<GPUBuffer, Facts>;
  /** The device's `maxComputeWorkgroupsPerDimension`. */
  maxWorkgroups: number;
  nextSerial: number;
  stats: WebgpuDispatchStats;
  restore(): void;
}

let patch: Patch | null = null;

function zeroStats(): WebgpuDispatchStats {
  return {
    uniformHits: 0,
    uniformMisses: 0,
    uniformsCached: 0,
    bindGroupHits: 0,
    bindGroupMisses: 0,
    bindGroupsUncached: 0,
    bindGroupsCached: 0,
    bindGroupDrops: 0,
    pendingBytesPeak: 0,
    shaderKeyHits: 0,
    shaderKeyMisses: 0,
  };
}

/** Why `backend` cannot take the patch, or null when it can. */
function refusal(backend: unknown): string | null {
  if (tfjsWebgpuVersion !== PATCHED_TFJS_WEBGPU_VERSION) {
    return `tfjs-backend-webgpu is ${tfjsWebgpuVersion}, and the dispatch caches follow ` +
      `${PATCHED_TFJS_WEBGPU_VERSION}'s code`;
  }
  const b = backend as Partial<Record<string, unknown>>;
  const missing = [
    ...BACKEND_METHODS,
    "submitQueue",
    "tensorToBinding",
    "ensureCommandEncoderReady",
    "endComputePassEncoder",
  ].filter((name) => typeof b[name] !== "function");
  for (const field of ["tensorDataPendingDisposal", "uniformPendingDisposal"]) {
    if (!Array.isArray(b[field])) missing.push(field);
  }
  const manager = b.bufferManager as Partial<Record<string, unknown>> | undefined;
  if (!manager || typeof manager.acquireBuffer !== "function") missing.push("bufferManager");
  return missing.length > 0
    ? `the webgpu backend lacks what the dispatch caches use (${missing.join(", ")})`
    : null;
}

/**
 * A kernel's uniforms, written field by field as tfjs-backend-webgpu 4.22's `makeUniforms` lays
 * them out (WGSL's alignment: 4 bytes for a scalar, 8 for a vec2, 16 for vec3 to vec6 and after a
 * vec5 or vec6; an empty field holds a 1; the size rounded up to the largest alignment), into
 * one reused scratch buffer instead of an `ArrayBuffer` and typed array per field: the bytes are
 * only a key until they are found missing from the cache, and only then written to the device.
 */
class UniformWriter {
  /** The largest uniform block written in place; a larger one gets its own (none in tfjs 4.22). */
  static readonly SCRATCH = 4096;
  bytes = new ArrayBuffer(UniformWriter.SCRATCH);
  i32 = new Int32Array(this.bytes);
  u32 = new Uint32Array(this.bytes);
  f32 = new Float32Array(this.bytes);
  offset = 0;
  previous = 0;
  maxAlignment = 1;

  begin(): void {
    this.offset = 0;
    this.previous = 0;
    this.maxAlignment = 1;
  }

  /** Room for a field of `n` (1 to 6) 4-byte values, zeroing the padding before it: its index. */
  field(n: number): number {
    if (n > 6) throw new Error(`Unsupported ${n}D shape`);
    let alignment = n === 1 ? 4 : n === 2 ? 8 : 16;
    if (this.previous === 5 || this.previous === 6) alignment = 16;
    if (alignment > this.maxAlignment) this.maxAlignment = alignment;
    const at = Math.ceil(this.offset / alignment) * alignment;
    this.room(at + n * 4);
    for (let i = this.offset >> 2; i < at >> 2; i++) this.i32[i] = 0;
    this.previous = n;
    this.offset = at + n * 4;
    return at >> 2;
  }

  /** A field of `data` as `type` ("int32", "uint32", else float32). */
  values(type: string, data: ArrayLike<number>): void {
    if (data.length === 0) {
      const at = this.field(1);
      if (type === "int32") this.i32[at] = 1;
      else if (type === "uint32") this.u32[at] = 1;
      else this.f32[at] = 1;
      return;
    }
    const at = this.field(data.length);
    const view = type === "int32" ? this.i32 : type === "uint32" ? this.u32 : this.f32;
    for (let j = 0; j < data.length; j++) view[at + j] = data[j]!;
  }

  /** A shape's strides as int32 (`util.computeStrides`: one fewer than its rank, an empty → 1). */
  strides(shape: readonly number[]): void {
    const rank = shape.length;
    if (rank < 2) {
      this.i32[this.field(1)] = 1;
      return;
    }
    const at = this.field(rank - 1);
    this.i32[at + rank - 2] = shape[rank - 1]!;
    for (let i = rank - 3; i >= 0; --i) this.i32[at + i] = this.i32[at + i + 1]! * shape[i + 1]!;
  }

  /** Ends the block: its size in bytes, padding zeroed. */
  end(): number {
    const size = Math.ceil(this.offset / this.maxAlignment) * this.maxAlignment;
    this.room(size);
    for (let i = this.offset >> 2; i < size >> 2; i++) this.i32[i] = 0;
    return size;
  }

  /**
   * A hash of the block's `size` bytes (FNV-1a over its 32-bit words): the cache's key. It was a
   * string of the bytes' 16-bit halves, whose making and hashing took ~2 µs of a train step's
   * dispatch; blocks with one hash are told apart by `same`.
   */
  hash(size: number): number {
    const words = size >> 2;
    let h = 0x811c9dc5 ^ words;
    for (let i = 0; i < words; i++) h = Math.imul(h ^ this.i32[i]!, 0x01000193);
    return h;
  }

  /** Whether the block's `size` bytes are `words`. */
  same(words: Int32Array, size: number): boolean {
    const n = size >> 2;
    if (words.length !== n) return false;
    for (let i = 0; i < n; i++) if (words[i] !== this.i32[i]) return false;
    return true;
  }

  /** Grows the scratch to hold `bytes`, keeping what is written. */
  private room(bytes: number): void {
    if (bytes <= this.bytes.byteLength) return;
    const grown = new ArrayBuffer(Math.max(bytes, this.bytes.byteLength * 2));
    new Uint8Array(grown).set(new Uint8Array(this.bytes));
    this.bytes = grown;
    this.i32 = new Int32Array(grown);
    this.u32 = new Uint32Array(grown);
    this.f32 = new Float32Array(grown);
  }
}

const writer = new UniformWriter();

/** The uniform buffer holding the block `writer` holds (`size` bytes), written once. */
function cachedUniforms(p: Patch, size: number): Binding {
  const key = writer.hash(size);
  const { uniforms: cache } = p;
  let found = cache.get(key);
  if (found && writer.same(found.words, size)) {
    p.stats.uniformHits++;
    cache.delete(key); // to the end: the most recently used
  } else {
    p.stats.uniformMisses++;
    if (found) {
      // another block with this hash: it leaves the cache, as the least recently used would
      cache.delete(key);
      p.backend.uniformPendingDisposal.push(found.buffer);
    }
    const usage = GPUBufferUsage.COPY_DST | GPUBufferUsage.UNIFORM;
    const buffer = p.backend.bufferManager.acquireBuffer(size, usage);
    p.backend.queue.writeBuffer(buffer, 0, writer.bytes, 0, size);
    if (cache.size >= p.options.maxUniforms) {
      // the least recently used goes back to the pool after the next submit: work already
      // recorded may read it, and the pool may hand it out to be written again
      const [oldest, old] = cache.entries().next().value!;
      cache.delete(oldest);
      p.backend.uniformPendingDisposal.push(old.buffer);
    }
    found = { words: new Int32Array(writer.bytes.slice(0, size)), buffer };
  }
  cache.set(key, found);
  return { offset: 0, size, buffer: found.buffer };
}

/** `makeUniforms(uniforms)` of tfjs 4.22, cached by content (for tfjs's own `recordAndSubmit`). */
function makeUniforms(p: Patch, uniforms: Uniform[]): Binding {
  writer.begin();
  for (const d of uniforms) writer.values(d.type, d.data);
  return cachedUniforms(p, writer.end());
}

/** The bind group of `pipeline` over `buffers` (in binding order), created once. */
function cachedBindGroup(
  p: Patch,
  pipeline: GPUComputePipeline,
  buffers: GPUBuffer[],
  uniform: Binding,
): GPUBindGroup {
  let node: Node | undefined = p.bindGroups.get(pipeline);
  if (!node) {
    node = { next: new WeakMap() };
    p.bindGroups.set(pipeline, node);
  }
  for (const buffer of buffers) {
    let next: Node | undefined = node.next.get(buffer);
    if (!next) {
      next = { next: new WeakMap() };
      node.next.set(buffer, next);
    }
    node = next;
  }
  if (node.group) {
    p.stats.bindGroupHits++;
    return node.group;
  }
  p.stats.bindGroupMisses++;
  const entries: GPUBindGroupEntry[] = buffers.map((buffer, i) => ({
    binding: i,
    resource: i === buffers.length - 1 ? uniform : { buffer },
  }));
  const group = p.backend.device.createBindGroup({ layout: layout(p, pipeline), entries });
  if (p.stats.bindGroupsCached >= p.options.maxBindGroups) {
    dropBindGroups(p); // full: start again, this one uncached
  } else {
    node.group = group;
    p.stats.bindGroupsCached++;
  }
  return group;
}

/** The bind group layout of `pipeline` (group 0), asked for once. */
function layout(p: Patch, pipeline: GPUComputePipeline): GPUBindGroupLayout {
  let found = p.layouts.get(pipeline);
  if (!found) {
    found = pipeline.getBindGroupLayout(0);
    p.layouts.set(pipeline, found);
  }
  return found;
}

function dropBindGroups(p: Patch): void {
  p.bindGroups = new WeakMap();
  p.stats.bindGroupsCached = 0;
  p.stats.bindGroupDrops++;
}

/**
 * Moves `buffer`, just pushed onto its free list, to its place in the list's order: by serial
 * number, the lowest last, where `acquireBuffer` pops. tfjs pops the buffer released last; then
 * which buffer a kernel gets depends on the order of earlier releases, which differs from step to
 * step (a step frees its tensors in another order than it made them), and no bind group would be
 * found again. Handing out the lowest-numbered free buffer makes the buffers of a step a function
 * of the set of free buffers at its start and the step's own sequence of kernels, which repeats
 * once that set does (module doc).
 */
function keepOrdered(p: Patch, list: GPUBuffer[] | undefined, buffer: GPUBuffer): void {
  if (!list || list[list.length - 1] !== buffer) return;
  const mine = facts(p, buffer).serial;
  let i = list.length - 1;
  while (i > 0 && facts(p, list[i - 1]!).serial < mine) {
    list[i] = list[i - 1]!;
    i--;
  }
  list[i] = buffer;
}

/**
 * tfjs-backend-webgpu 4.22's `BufferManager.releaseBuffer` with the buffer's place in its list
 * of used buffers known (`Facts.usedAt`, kept by `acquireBuffer` and here) instead of searched
 * for (`indexOf` over every used buffer of its size), and its size and key read once instead of
 * through Deno's getters: the same swap with the last and pop, so the lists end as tfjs leaves
 * them, the same counts, the same free list or `destroy`.
 */
function releaseFromPool(
  p: Patch,
  manager: BufferManager,
  buffer: GPUBuffer,
  known: Facts,
  reuse: boolean,
): void {
  if (manager.freeBuffers.size === 0) return; // tfjs's: disposed
  const used = manager.usedBuffers.get(known.key)!;
  let index = known.usedAt;
  if (used[index] !== buffer) index = used.indexOf(buffer); // not acquired through the patch
  if (index < 0) throw new Error("Cannot find the buffer in buffer manager");
  const last = used[used.length - 1]!;
  used[index] = last;
  used.pop();
  if (last !== buffer) facts(p, last).usedAt = index;
  known.usedAt = -1;
  manager.numUsedBuffers--;
  manager.numBytesUsed -= known.size;
  if (reuse) {
    manager.freeBuffers.get(known.key)!.push(buffer);
    manager.numFreeBuffers++;
  } else {
    buffer.destroy();
    manager.numBytesAllocated -= known.size;
  }
}

/** A buffer's number, given on first sight. */
function facts(p: Patch, buffer: GPUBuffer): Facts {
  let found = p.facts.get(buffer);
  if (!found) {
    const { size, usage } = buffer;
    found = {
      serial: p.nextSerial++,
      size,
      key: `${size}_${usage}`,
      bindable: (usage & BINDABLE) !== 0,
      usedAt: -1,
    };
    p.facts.set(buffer, found);
  }
  return found;
}

/** Adds the bytes freed into the pending lists since last counted; true when past the bound. */
function pendingPastBound(p: Patch): boolean {
  const b = p.backend;
  const seen = p.pending;
  if (seen.tensors !== b.tensorDataPendingDisposal || seen.staging !== b.stagingPendingDisposal) {
    // a submit emptied them (tfjs replaces both arrays)
    seen.tensors = b.tensorDataPendingDisposal;
    seen.staging = b.stagingPendingDisposal;
    seen.tensorsSeen = 0;
    seen.stagingSeen = 0;
    p.pendingBytes = 0;
  }
  for (; seen.tensorsSeen < seen.tensors.length; seen.tensorsSeen++) {
    const resource = b.tensorMap.get(seen.tensors[seen.tensorsSeen]!)?.resource;
    if (resource instanceof GPUBuffer) p.pendingBytes += facts(p, resource).size;
  }
  for (; seen.stagingSeen < seen.staging.length; seen.stagingSeen++) {
    p.pendingBytes += facts(p, seen.staging[seen.stagingSeen]!).size;
  }
  if (p.pendingBytes > p.stats.pendingBytesPeak) p.stats.pendingBytesPeak = p.pendingBytes;
  return p.pendingBytes >= p.options.submitPendingBytes;
}

const NAN = [NaN];
/** The buffers a dispatch binds, in binding order (reused: `recordAndSubmit` is not reentrant). */
const bound: GPUBuffer[] = [];
const INFINITY = [Infinity];

/**
 * tfjs-backend-webgpu 4.22's `recordAndSubmit` (backend_webgpu.js) on its usual path: the same
 * uniforms, bindings, pass and dispatch, with the uniform buffer, the bind group and its layout
 * taken from the caches and the submit batched by `submitDispatches` and `submitPendingBytes`.
 */
function recordAndSubmit(
  p: Patch,
  original: Backend["recordAndSubmit"],
  program: Program,
  output: Info,
  inputs: Info[],
  defined?: Uniform[],
): void {
  const b = p.backend;
  if (
    program.pipeline instanceof Promise || (b.activeTimers ?? null) !== null ||
    (program.pixelsOpType ?? null) !== null
  ) {
    // compiling in parallel (tfjs throws), timing each kernel, or a pixel kernel: tfjs's own path
    original.call(b, program, output, inputs, defined);
    return;
  }
  const pipeline = program.pipeline;
  // 1) the uniforms: NaN, Infinity, each buffer's shape and strides, the size, the program's own
  writer.begin();
  writer.values("float32", NAN);
  writer.values("float32", INFINITY);
  for (const info of inputs) {
    writer.values("int32", info.shape);
    writer.strides(info.shape);
  }
  writer.values("int32", output.shape);
  writer.strides(output.shape);
  if (program.size) {
    const size = tf.util.sizeFromShape(program.outputShape);
    writer.values("int32", [program.outputComponent ? size / program.outputComponent : size]);
  }
  if (defined) { for (const d of defined) writer.values(d.type, d.data); }
  const uniform = cachedUniforms(p, writer.end());
  // 2) the bind group: cached over the tensors' own pool buffers, tfjs's way otherwise
  const buffers = bound;
  buffers.length = 0;
  let cacheable = true;
  for (let i = -1; i < inputs.length; i++) {
    const data = b.tensorMap.get((i < 0 ? output : inputs[i]!).dataId);
    const resource = data?.resource;
    if (!(resource instanceof GPUBuffer) || data!.external) {
      cacheable = false;
      break;
    }
    buffers.push(resource);
  }
  for (const input of inputs) b.commandQueueOwnedIds.add(input.dataId);
  b.commandQueueOwnedIds.add(output.dataId);
  let bindGroup: GPUBindGroup;
  if (cacheable) {
    buffers.push(uniform.buffer);
    bindGroup = cachedBindGroup(p, pipeline, buffers, uniform);
  } else {
    p.stats.bindGroupsUncached++;
    const bindings = [b.tensorToBinding(output), ...inputs.map((t) => b.tensorToBinding(t))];
    bindGroup = b.device.createBindGroup({
      layout: layout(p, pipeline),
      entries: [...bindings, uniform].map((resource, i) => ({
        binding: i,
        resource: resource as GPUBindingResource,
      })),
    });
  }
  // 3) record it in the open pass; submit when the batch is long enough or holds enough memory
  b.ensureCommandEncoderReady();
  if (!b.computePassEncoder) b.computePassEncoder = b.commandEncoder!.beginComputePass({});
  const pass = b.computePassEncoder;
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(program.dispatch[0], program.dispatch[1], program.dispatch[2]);
  countDispatch(b);
}

/** What `countDispatch` needs of the backend. */
interface DispatchCounter {
  dispatchCountInPass: number;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

/**
 * Counts a dispatch just recorded in `backend`'s open pass and submits when the batch is due: by
 * this module's rule (`submitDispatches`, `submitPendingBytes`) where it is installed on `backend`,
 * else by tfjs's (`WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE`). For tfjs's kernels (`recordAndSubmit`) and
 * for programs recorded outside them (AdamW's in-place update, kernels/adamw_webgpu.ts), so that
 * both follow one rule.
 *
 * @example
 * ```ts
 * pass.dispatchWorkgroups(x, y);
 * countDispatch(backend); // may end the pass and submit
 * ```
 */
export function countDispatch(backend: DispatchCounter): void {
  backend.dispatchCountInPass++;
  const p = patch !== null && (patch.backend as unknown) === backend ? patch : null;
  const due = p
    ? backend.dispatchCountInPass >= p.options.submitDispatches || pendingPastBound(p)
    : tf.env().getNumber("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE") <= backend.dispatchCountInPass;
  if (due) {
    backend.endComputePassEncoder();
    backend.submitQueue();
  }
}

/**
 * What a kernel's pipeline key is made of (`runWebGPUProgram`), written as 32-bit words into one
 * reused scratch array: numbers as they are, lists after their length, strings by their number in
 * `names` (given on first sight). It was one string joined from them per kernel, whose building
 * and hashing took ~3 µs of a train step's dispatch; a hash of the words finds the key, and the
 * words themselves tell two of one hash apart.
 */
class KeyWords {
  words = new Int32Array(256);
  length = 0;
  names = new Map<string, number>();

  /** Starts the words of a key, strings numbered by `names`. */
  begin(names: Map<string, number>): void {
    this.length = 0;
    this.names = names;
  }

  number(value: number): void {
    if (this.length === this.words.length) {
      const grown = new Int32Array(this.words.length * 2);
      grown.set(this.words);
      this.words = grown;
    }
    this.words[this.length++] = value;
  }

  name(text: string): void {
    let id = this.names.get(text);
    if (id === undefined) {
      id = this.names.size;
      this.names.set(text, id);
    }
    this.number(id);
  }

  /** A list of numbers (a shape, a workgroup size) after its length; -1 for none. */
  numbers(values: readonly number[] | undefined): void {
    if (values === undefined) return this.number(-1);
    this.number(values.length);
    for (let i = 0; i < values.length; i++) this.number(values[i]!);
  }

  /** A list of strings after its length. */
  strings(values: readonly string[]): void {
    this.number(values.length);
    for (let i = 0; i < values.length; i++) this.name(values[i]!);
  }

  /** FNV-1a over the words. */
  hash(): number {
    let h = 0x811c9dc5 ^ this.length;
    for (let i = 0; i < this.length; i++) h = Math.imul(h ^ this.words[i]!, 0x01000193);
    return h;
  }

  same(words: Int32Array): boolean {
    if (words.length !== this.length) return false;
    for (let i = 0; i < this.length; i++) if (words[i] !== this.words[i]) return false;
    return true;
  }
}

const keyWords = new KeyWords();

/**
 * tfjs-backend-webgpu 4.22's `runWebGPUProgram` (backend_webgpu.js) with its `makeShaderKey`
 * remembered: that key names the pipeline from the kernel's own key, its workgroup size, input
 * names, whether its dispatch is flat, and its inputs' and output's ranks, dtypes, broadcast axes
 * and shape equalities, all functions of what `memo` below is made of (`KeyWords`) (the shapes themselves in
 * place of what is derived from them), and building it (broadcast axes, joins) was a tenth of the
 * host's time per kernel. On a key not seen yet, on a pipeline not compiled yet, and on whatever
 * tfjs does differently (a pixel kernel, a dispatch over the device's limits, parallel
 * compilation, complex inputs) tfjs's own function runs, and its key is remembered.
 */
function runWebGPUProgram(
  p: Patch,
  original: Backend["runWebGPUProgram"],
  program: Program,
  inputs: Info[],
  outputDtype: string,
  defined?: Uniform[],
  given?: Info,
): Info {
  const b = p.backend;
  const tfjs = (output?: Info) => {
    p.stats.shaderKeyMisses++;
    return original.call(b, program, inputs, outputDtype, defined, output);
  };
  if ((program.pixelsOpType ?? null) !== null || tf.env().getBool("WEBGPU_ENGINE_COMPILE_ONLY")) {
    return tfjs(given);
  }
  const output = given ?? b.makeTensorInfo(program.outputShape, outputDtype);
  if (tf.util.sizeFromShape(output.shape) === 0) return tfjs(output);
  const limit = p.maxWorkgroups;
  const [x, y, z] = program.dispatch;
  if (x > limit || y > limit || z > limit) return tfjs(output); // tfjs reshapes the dispatch
  b.uploadToGPU(output.dataId);
  if (p.shaderKeys.size >= p.options.maxShaderKeys) {
    // full: forget them all, and the strings' numbers with them
    p.shaderKeys.clear();
    p.keyNames.clear();
  }
  const memo = keyWords;
  memo.begin(p.keyNames);
  memo.name(program.shaderKey);
  memo.numbers(program.workgroupSize);
  memo.strings(program.variableNames);
  memo.number(y === 1 && z === 1 ? 1 : 0);
  memo.name(output.dtype);
  memo.numbers(output.shape);
  for (const input of inputs) {
    if (input.dtype === "complex64") return tfjs(output); // tfjs throws its error
    const data = b.tensorMap.get(input.dataId)!;
    // tfjs uploads what has no resource yet (undefined or null) and returns at once otherwise
    if ((data.resource ?? null) === null) b.uploadToGPU(input.dataId);
    memo.name(data.dtype);
    memo.numbers(input.shape);
  }
  const hash = memo.hash();
  const known = p.shaderKeys.get(hash);
  const key = known !== undefined && memo.same(known.words) ? known.key : undefined;
  const pipeline = key === undefined ? undefined : b.pipelineCache[key];
  if (key === undefined || pipeline === undefined) {
    const words = memo.words.slice(0, memo.length); // before tfjs's code could run a kernel
    const result = tfjs(output); // makes the key (into program.shaderKey) and the pipeline
    p.shaderKeys.set(hash, { words, key: program.shaderKey }); // one of a hash: the latest
    return result;
  }
  p.stats.shaderKeyHits++;
  program.shaderKey = key;
  program.pipeline = pipeline;
  b.recordAndSubmit(program, output, inputs, defined);
  return output;
}

/**
 * Puts the dispatch caches on `backend` (the active one by default), a tfjs-backend-webgpu
 * 4.22.0 `WebGPUBackend` (see the module doc); installing again replaces the options and keeps
 * the caches. Returns why not where it cannot: another version of tfjs-backend-webgpu, or a
 * backend that is not webgpu's; then nothing is changed.
 *
 * @example
 * ```ts
 * await useBackend("webgpu"); // installs it
 * const done = installWebgpuDispatch(tf.backend(), { submitDispatches: 64 });
 * if (!done.installed) console.warn(done.reason);
 * ```
 */
export function installWebgpuDispatch(
  backend: tf.KernelBackend = tf.backend(),
  options: WebgpuDispatchOptions = {},
): WebgpuDispatchInstall {
  const why = refusal(backend);
  if (why) return { installed: false, reason: why };
  const resolved: Required<WebgpuDispatchOptions> = {
    maxUniforms: options.maxUniforms ?? 4096,
    maxBindGroups: options.maxBindGroups ?? 16384,
    maxShaderKeys: options.maxShaderKeys ?? 8192,
    submitDispatches: options.submitDispatches ?? 256,
    submitPendingBytes: options.submitPendingBytes ?? 32 * 1024 * 1024,
  };
  const b = backend as unknown as Backend;
  if (patch?.backend === b) {
    patch.options = resolved;
    return { installed: true };
  }
  uninstallWebgpuDispatch();
  const original = b.recordAndSubmit;
  const run = b.runWebGPUProgram;
  const manager = b.bufferManager;
  const acquireBuffer = manager.acquireBuffer;
  const dispose = manager.dispose;
  const p: Patch = {
    backend: b,
    options: resolved,
    uniforms: new Map(),
    layouts: new WeakMap(),
    shaderKeys: new Map(),
    keyNames: new Map(),
    bindGroups: new WeakMap(),
    pending: { tensors: [], staging: [], tensorsSeen: 0, stagingSeen: 0 },
    pendingBytes: 0,
    facts: new WeakMap(),
    maxWorkgroups: b.device.limits.maxComputeWorkgroupsPerDimension,
    nextSerial: 0,
    stats: zeroStats(),
    restore() {
      for (const name of BACKEND_METHODS) delete (b as unknown as Record<string, unknown>)[name];
      for (const name of MANAGER_METHODS) {
        delete (manager as unknown as Record<string, unknown>)[name];
      }
    },
  };
  const own = (target: object, name: string, value: unknown) =>
    Object.defineProperty(target, name, { value, writable: true, configurable: true });
  own(b, "makeUniforms", (uniforms: Uniform[]) => makeUniforms(p, uniforms));
  own(
    b,
    "recordAndSubmit",
    (program: Program, output: Info, inputs: Info[], defined?: Uniform[]) =>
      recordAndSubmit(p, original, program, output, inputs, defined),
  );
  own(
    b,
    "runWebGPUProgram",
    (program: Program, inputs: Info[], dtype: string, defined?: Uniform[], output?: Info) =>
      runWebGPUProgram(p, run, program, inputs, dtype, defined, output),
  );
  own(manager, "acquireBuffer", function (
    this: BufferManager,
    size: number,
    usage: number,
    mappedAtCreation = false,
    reuse = true,
  ) {
    const buffer = acquireBuffer.call(this, size, usage, mappedAtCreation, reuse);
    const known = facts(p, buffer);
    known.usedAt = this.usedBuffers.get(known.key)!.length - 1; // tfjs pushed it last
    return buffer;
  });
  own(manager, "releaseBuffer", function (this: BufferManager, buffer: GPUBuffer, reuse = true) {
    const known = facts(p, buffer);
    // a destroyed buffer must leave no bind group behind (tfjs destroys staging buffers only)
    if (!reuse) {
      if (known.bindable) dropBindGroups(p);
      p.facts.delete(buffer);
    }
    releaseFromPool(p, this, buffer, known, reuse);
    if (reuse) keepOrdered(p, this.freeBuffers.get(known.key), buffer);
  });
  own(manager, "dispose", function (this: BufferManager) {
    // every buffer is destroyed: the cached uniforms with them
    dropBindGroups(p);
    p.uniforms.clear();
    return dispose.call(this);
  });
  // the free lists in order from the start (`keepOrdered` keeps them so), the used ones indexed
  for (const list of manager.freeBuffers.values()) {
    list.sort((x, y) => facts(p, y).serial - facts(p, x).serial);
  }
  for (const list of manager.usedBuffers.values()) {
    list.forEach((buffer, i) => facts(p, buffer).usedAt = i);
  }
  patch = p;
  return { installed: true };
}

/**
 * Takes the dispatch caches off the backend they are on: tfjs's own methods again, the cached
 * uniform buffers back to the pool at the next submit. Nothing happens when they are not on.
 *
 * @example
 * ```ts
 * uninstallWebgpuDispatch(); // tfjs 4.22's dispatch, exactly
 * ```
 */
export function uninstallWebgpuDispatch(): void {
  if (!patch) return;
  const p = patch;
  patch = null;
  p.restore();
  // recorded work may still read them: back to the pool when tfjs releases its own, at the submit
  for (const { buffer } of p.uniforms.values()) p.backend.uniformPendingDisposal.push(buffer);
  p.uniforms.clear();
  dropBindGroups(p);
}

/**
 * Whether the dispatch caches are on the active backend.
 *
 * @example
 * ```ts
 * await useBackend("webgpu");
 * webgpuDispatchInstalled(); // true (with tfjs-backend-webgpu 4.22.0)
 * ```
 */
export function webgpuDispatchInstalled(): boolean {
  return patch !== null && patch.backend === (tf.backend() as unknown as Backend);
}

/**
 * What the dispatch caches did since they were installed (all zero when they are not).
 *
 * @example
 * ```ts
 * const { bindGroupHits, bindGroupMisses } = webgpuDispatchStats();
 * ```
 */
export function webgpuDispatchStats(): WebgpuDispatchStats {
  if (!patch) return zeroStats();
  return { ...patch.stats, uniformsCached: patch.uniforms.size };
}
