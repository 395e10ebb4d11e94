/**
 * Backpropagation that frees memory as it goes.
 *
 * tfjs's `engine.gradients` (behind `tf.variableGrads` and `tf.grad`) keeps every gradient it
 * computes, and every tensor saved for the backward pass, until the whole backward pass ends. A
 * train step's peak therefore holds the forward activations and the gradient of each of them at
 * once, about twice what PyTorch holds for the same step. This is the same algorithm (tfjs-core 4.22, `engine.ts` `gradients` and
 * `tape.ts`), except that once a node's gradient has been computed, the tensors it saved and the
 * gradients of its outputs are disposed: nothing later reads them. Gradients are bit-identical,
 * and a batch that overflowed the wasm heap trains within it (bench/RESULTS.md, "kernel choices").
 *
 * @module
 */

import { deviceConstant } from "./kernels/constants.ts";
import { tf } from "./tf.ts";

/** tfjs-core's `TapeNode`, as far as it is read here. */
interface TapeNode {
  id: number;
  kernelName: string;
  outputs: tf.Tensor[];
  inputs: Record<string, tf.Tensor>;
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
  saved?: tf.Tensor[];
}

/** The parts of tfjs-core's `Engine` that `gradients` uses. */
interface Engine {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  startTape(): void;
  endTape(): void;
  tidy<T extends tf.TensorContainer>(name: string | (() => T), f?: () => T): T;
  gradients(
    f: () => tf.Tensor,
    xs: tf.Tensor[],
    dy?: tf.Tensor | null,
    allowNoGradients?: boolean,
  ): { value: tf.Tensor; grads: tf.Tensor[] };
}

/** The nodes of `tape` on a path from some x to y, inputs not from x pruned (tfjs's own rule). */
function nodesFromXToY(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set(xs.map((x) => x.id));
  const nodesFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((input) => fromX.has(input.id))) {
      for (const output of node.outputs) fromX.add(output.id);
      nodesFromX.add(node.id);
    }
  }
  const toY = new Set([y.id]);
  const nodesToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    if (node.outputs.some((output) => toY.has(output.id))) {
      for (const input of Object.values(node.inputs)) toY.add(input.id);
      nodesToY.add(node.id);
    }
  }
  return tape
    .filter((node) => nodesFromX.has(node.id) && nodesToY.has(node.id))
    .map((node) => ({
      ...node,
      inputs: Object.fromEntries(
        Object.entries(node.inputs).filter(([, input]) => fromX.has(input.id)),
      ),
    }));
}

/** Whether two shapes are equal (tfjs's `util.arraysEqual`; no strings built per gradient). */
function sameShape(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Walks `nodes` backward from `gradients` (tensor id → its gradient, seeded with y's), filling in
 * the gradient of every input; with `free`, each node's saved tensors and its outputs' gradients
 * are disposed once its inputs' gradients are computed (except those still held for another id).
 */
function backpropagate(
  gradients: Map<number, tf.Tensor>,
  nodes: TapeNode[],
  tidy: (f: () => tf.Tensor) => tf.Tensor,
  keep: ReadonlySet<number>,
  free: boolean,
): void {
  // How many ids each gradient tensor is stored under: a gradient function may hand dy through.
  const holders = new Map<tf.Tensor, number>();
  const hold = (t: tf.Tensor, n: number) => holders.set(t, (holders.get(t) ?? 0) + n);
  for (const g of gradients.values()) hold(g, 1);
  const release = (id: number) => {
    const g = gradients.get(id);
    if (g === undefined) return;
    gradients.delete(id);
    hold(g, -1);
    if (holders.get(g)! === 0) {
      holders.delete(g);
      g.dispose();
    }
  };
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i]!;
    const dys = node.outputs.map((o) => gradients.get(o.id) ?? null);
    if (node.gradient === undefined) {
      throw new Error(
        `Cannot compute gradient: gradient function not found for ${node.kernelName}.`,
      );
    }
    const inputGradients = node.gradient(dys);
    for (const [name, x] of Object.entries(node.inputs)) {
      if (!(name in inputGradients)) {
        throw new Error(
          `Cannot backprop through input ${name}. Available gradients found: ${
            Object.keys(inputGradients)
          }.`,
        );
      }
      const dx = tidy(() => inputGradients[name]!());
      if (dx.dtype !== "float32") {
        throw new Error(
          `Error in gradient for op ${node.kernelName}. The gradient of input ${name} must have ` +
            `'float32' dtype, but has '${dx.dtype}'`,
        );
      }
      if (!sameShape(dx.shape, x.shape)) {
        throw new Error(
          `Error in gradient for op ${node.kernelName}. The gradient of input '${name}' has ` +
            `shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`,
        );
      }
      const current = gradients.get(x.id);
      if (current === undefined) {
        gradients.set(x.id, dx);
        hold(dx, 1);
      } else {
        const sum = tf.add(current, dx);
        gradients.set(x.id, sum);
        hold(sum, 1);
        hold(current, -1);
        if (holders.get(current)! === 0) {
          holders.delete(current);
          current.dispose();
        }
        if (!holders.has(dx)) dx.dispose(); // tfjs leaves it to the backward tidy
      }
    }
    if (!free) continue;
    for (const t of node.saved ?? []) t.dispose();
    for (const o of node.outputs) if (!keep.has(o.id)) release(o.id);
  }
}

/** tfjs-core's `Engine.gradients`, freeing as it goes (see the module doc). */
function freeingGradients(
  this: Engine,
  f: () => tf.Tensor,
  xs: tf.Tensor[],
  dy?: tf.Tensor | null,
  allowNoGradients = false,
): { value: tf.Tensor; grads: tf.Tensor[] } {
  if (xs.length === 0) throw new Error("gradients() received an empty list of xs.");
  if (dy !== undefined && dy !== null && dy.dtype !== "float32") {
    throw new Error(`dy must have 'float32' dtype, but has '${dy.dtype}'`);
  }
  const y = this.scopedRun(
    () => this.startTape(),
    () => this.endTape(),
    () => this.tidy("forward", f),
  );
  if (!(y instanceof tf.Tensor)) throw new Error("The result y returned by f() must be a tensor.");
  const tape = this.state.activeTape!;
  const nodes = nodesFromXToY(tape, xs, y);
  if (!allowNoGradients && nodes.length === 0 && xs.length > 0) {
    throw new Error(
      "Cannot compute gradient of y=f(x) with respect to x. Make sure that the f you passed " +
        "encloses all operations that lead from x to y.",
    );
  }
  return this.tidy("backward", () => {
    // y's own gradient, 1 (from a device constant: `tf.ones` would upload it on webgpu)
    const seed = dy ?? tf.broadcastTo(deviceConstant(1), y.shape);
    const gradients = new Map<number, tf.Tensor>([[y.id, seed]]);
    const outermost = this.state.gradientDepth === 0; // not inside a higher-order gradient
    const keep = new Set([y.id, ...xs.map((x) => x.id)]);
    backpropagate(gradients, nodes, (g) => this.tidy(g), keep, outermost);
    const grads = xs.map((x) => gradients.get(x.id)!);
    if (outermost) {
      for (const node of tape) for (const t of node.saved ?? []) t.dispose();
      this.state.activeTape = null;
    }
    return { value: y, grads } as unknown as tf.TensorContainer;
  }) as unknown as { value: tf.Tensor; grads: tf.Tensor[] };
}

let original: Engine["gradients"] | null = null;

/**
 * Makes `tf.variableGrads`, `tf.grad` and the other gradient functions free memory during the
 * backward pass (`on`, the default), or restores tfjs's own `gradients` (`false`, for tests).
 */
export function freeDuringBackprop(on = true): void {
  const engine = tf.engine() as unknown as Engine;
  if (original === null) original = engine.gradients;
  engine.gradients = on ? freeingGradients : original;
}
