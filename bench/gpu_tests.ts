/**
 * The webgpu tests, as one entry point that bench/gpu.sh bundles (`.gpu/webgpu-tests.js`, every npm
 * package inside) so that a GPU machine without network can run them: `bench/gpu.sh tests`. They
 * are the tests CI runs on lavapipe; on another adapter they check the same kernels on its driver.
 *
 * @module
 */

import "../tests/runtime/engine/philox_test.ts";
import "../tests/runtime/engine/webgpu_test.ts";
import "../tests/runtime/engine/kernels/webgpu_test.ts";
import "../tests/runtime/engine/kernels/matmul_webgpu_test.ts";
import "../tests/runtime/engine/kernels/slice_webgpu_test.ts";
import "../tests/runtime/engine/kernels/adamw_webgpu_test.ts";
import "../tests/runtime/engine/kernels/norm_webgpu_test.ts";
import "../tests/runtime/rl/objectives/group_webgpu_test.ts";
import "../tests/runtime/rl/objectives/gift_webgpu_test.ts";
import "../tests/runtime/rl/kl_webgpu_test.ts";
import "../tests/runtime/engine/optim_device_test.ts";
import "../tests/runtime/rl/train_step_device_test.ts";
import "../tests/runtime/rl/sample_device_test.ts";
import "../tests/runtime/engine/webgpu_dispatch_test.ts";
import "../tests/runtime/engine/webgpu_uploads_test.ts";
import "../tests/runtime/engine/webgpu_counters_test.ts";
