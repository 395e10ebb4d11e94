/**
 * The recipe language: typed builders, the JSON Schema, validation, the compiler and the plan.
 * Nothing in `dsl/` touches a tensor; everything here runs before TensorFlow.js is loaded.
 *
 * @module
 */

export * from "./builders.ts";
export * from "./compile.ts";
export * from "./format.ts";
export * from "./issues.ts";
export * from "./load.ts";
export * from "./objectives.ts";
export * from "./plan.ts";
export * from "./schema.ts";
export * from "./tasks.ts";
export * from "./validate.ts";
