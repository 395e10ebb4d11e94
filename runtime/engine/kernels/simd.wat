;; Loops of giftwrap's CPU paths in WebAssembly with 128-bit SIMD, written by hand: V8 ran them
;; as plain JavaScript several times slower (float64 arithmetic, a rounding per Math.fround, a
;; bounds check per access; bench/RESULTS.md, "kernel choices"), and as tfjs ops they cost more in
;; dispatch than in arithmetic. The matrix
;; products run in OpenBLAS.
;;
;; - the sampler's (runtime/engine/kernels/decode.ts): RMSNorm, residual adds, RoPE, SwiGLU's
;;   silu(gate) · up, and one query's attention over the KV cache;
;; - the train step's RoPE fused with the split into heads (runtime/engine/kernels/rope.ts) and RMSNorm's
;;   forward and gradient (runtime/engine/kernels/rms_norm.ts), on the tensors where the wasm backend
;;   keeps them (simd.ts instantiates this module on its memory).
;;
;; `deno task wasm` assembles it into simd_wasm.ts; a test checks that the two agree.
;;
;; Every pointer is a byte offset into the imported memory, every array float32. Loops take 4
;; lanes at a time, then the remaining elements one by one. Sums run in float32 lanes, so results
;; differ from float64 loops by float32 rounding (tests/runtime/engine/kernels/decode_test.ts holds the
;; sampler's logits to forward()'s within 1e-5 relative; ropeHeads is exact).
(module
  (import "env" "memory" (memory 1))

  ;; e^x in 4 lanes: x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by Cephes expf's polynomial, 2^n
  ;; through the exponent bits. Relative error ~1e-7; x is clamped to [−87, 88] (e^x stays a
  ;; normal float32: e^−87 ≈ 1.6e−38 stands for 0, e^88 ≈ 1.7e38 for overflow).
  (func $exp4 (param $x v128) (result v128)
    (local $n v128) (local $r v128) (local $p v128)
    (local.set $x
      (f32x4.max
        (f32x4.min (local.get $x) (v128.const f32x4 88 88 88 88))
        (v128.const f32x4 -87 -87 -87 -87)))
    (local.set $n
      (f32x4.nearest
        (f32x4.mul (local.get $x)
          (v128.const f32x4 1.44269504088896341 1.44269504088896341 1.44269504088896341 1.44269504088896341))))
    ;; r = x − n·ln 2, ln 2 split in two so that n·hi is exact
    (local.set $r
      (f32x4.sub
        (f32x4.sub (local.get $x)
          (f32x4.mul (local.get $n) (v128.const f32x4 0.693359375 0.693359375 0.693359375 0.693359375)))
        (f32x4.mul (local.get $n)
          (v128.const f32x4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4))))
    (local.set $p (v128.const f32x4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4))
    (local.set $p
      (f32x4.add (f32x4.mul (local.get $p) (local.get $r))
        (v128.const f32x4 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3)))
    (local.set $p
      (f32x4.add (f32x4.mul (local.get $p) (local.get $r))
        (v128.const f32x4 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3)))
    (local.set $p
      (f32x4.add (f32x4.mul (local.get $p) (local.get $r))
        (v128.const f32x4 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2)))
    (local.set $p
      (f32x4.add (f32x4.mul (local.get $p) (local.get $r))
        (v128.const f32x4 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1)))
    (local.set $p
      (f32x4.add (f32x4.mul (local.get $p) (local.get $r))
        (v128.const f32x4 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1)))
    ;; e^r = p·r² + r + 1
    (local.set $p
      (f32x4.add
        (f32x4.add
          (f32x4.mul (local.get $p) (f32x4.mul (local.get $r) (local.get $r)))
          (local.get $r))
        (v128.const f32x4 1 1 1 1)))
    ;; · 2^n: n + 127 in the exponent field
    (f32x4.mul (local.get $p)
      (i32x4.shl
        (i32x4.add (i32x4.trunc_sat_f32x4_s (local.get $n)) (v128.const i32x4 127 127 127 127))
        (i32.const 23))))

  ;; e^x of one value, through the same lanes (every exponential here rounds alike)
  (func $exp (param $x f32) (result f32)
    (f32x4.extract_lane 0 (call $exp4 (f32x4.splat (local.get $x)))))

  ;; The sum of a vector's 4 lanes.
  (func $lanes (param $v v128) (result f32)
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $v)) (f32x4.extract_lane 1 (local.get $v)))
      (f32.add (f32x4.extract_lane 2 (local.get $v)) (f32x4.extract_lane 3 (local.get $v)))))

  ;; out[r] = x[r] / sqrt(mean(x[r]²) + eps) · w, for `rows` rows of `d` (x, out: [rows, d]; w: [d]).
  (func (export "rmsNorm")
    (param $x i32) (param $w i32) (param $out i32) (param $rows i32) (param $d i32) (param $eps f32)
    (local $row i32) (local $i i32) (local $quads i32) (local $acc v128) (local $sum f32)
    (local $inv f32) (local $scale v128)
    (local.set $quads (i32.and (local.get $d) (i32.const -4)))
    (block $done (loop $rows
      (br_if $done (i32.ge_u (local.get $row) (local.get $rows)))
      (local.set $acc (v128.const i32x4 0 0 0 0))
      (local.set $i (i32.const 0))
      (block $q (loop $sq
        (br_if $q (i32.ge_u (local.get $i) (local.get $quads)))
        (local.set $scale (v128.load (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (local.get $scale) (local.get $scale))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $sq)))
      (local.set $sum (call $lanes (local.get $acc)))
      (block $t (loop $st
        (br_if $t (i32.ge_u (local.get $i) (local.get $d)))
        (local.set $inv (f32.load (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $sum (f32.add (local.get $sum) (f32.mul (local.get $inv) (local.get $inv))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $st)))
      (local.set $inv
        (f32.div (f32.const 1)
          (f32.sqrt (f32.add (f32.div (local.get $sum) (f32.convert_i32_u (local.get $d))) (local.get $eps)))))
      (local.set $scale (f32x4.splat (local.get $inv)))
      (local.set $i (i32.const 0))
      (block $q2 (loop $wq
        (br_if $q2 (i32.ge_u (local.get $i) (local.get $quads)))
        (v128.store (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2)))
          (f32x4.mul
            (f32x4.mul (v128.load (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2)))) (local.get $scale))
            (v128.load (i32.add (local.get $w) (i32.shl (local.get $i) (i32.const 2))))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $wq)))
      (block $t2 (loop $wt
        (br_if $t2 (i32.ge_u (local.get $i) (local.get $d)))
        (f32.store (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2)))
          (f32.mul
            (f32.mul (f32.load (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2)))) (local.get $inv))
            (f32.load (i32.add (local.get $w) (i32.shl (local.get $i) (i32.const 2))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $wt)))
      (local.set $x (i32.add (local.get $x) (i32.shl (local.get $d) (i32.const 2))))
      (local.set $out (i32.add (local.get $out) (i32.shl (local.get $d) (i32.const 2))))
      (local.set $row (i32.add (local.get $row) (i32.const 1)))
      (br $rows))))

  ;; x[i] += y[i] for i < n.
  (func (export "addInto") (param $x i32) (param $y i32) (param $n i32)
    (local $end i32) (local $quads i32)
    (local.set $end (i32.add (local.get $x) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $quads (i32.add (local.get $x) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (block $q (loop $l
      (br_if $q (i32.ge_u (local.get $x) (local.get $quads)))
      (v128.store (local.get $x) (f32x4.add (v128.load (local.get $x)) (v128.load (local.get $y))))
      (local.set $x (i32.add (local.get $x) (i32.const 16)))
      (local.set $y (i32.add (local.get $y) (i32.const 16)))
      (br $l)))
    (block $t (loop $l
      (br_if $t (i32.ge_u (local.get $x) (local.get $end)))
      (f32.store (local.get $x) (f32.add (f32.load (local.get $x)) (f32.load (local.get $y))))
      (local.set $x (i32.add (local.get $x) (i32.const 4)))
      (local.set $y (i32.add (local.get $y) (i32.const 4)))
      (br $l))))

  ;; gate[i] ← gate[i] · sigmoid(gate[i]) · up[i] for i < n (SwiGLU's silu(gate) · up).
  (func (export "siluTimes") (param $gate i32) (param $up i32) (param $n i32)
    (local $end i32) (local $quads i32) (local $g v128) (local $s f32)
    (local.set $end (i32.add (local.get $gate) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $quads
      (i32.add (local.get $gate) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (block $q (loop $l
      (br_if $q (i32.ge_u (local.get $gate) (local.get $quads)))
      (local.set $g (v128.load (local.get $gate)))
      (v128.store (local.get $gate)
        (f32x4.mul
          (f32x4.div (local.get $g)
            (f32x4.add (v128.const f32x4 1 1 1 1) (call $exp4 (f32x4.neg (local.get $g)))))
          (v128.load (local.get $up))))
      (local.set $gate (i32.add (local.get $gate) (i32.const 16)))
      (local.set $up (i32.add (local.get $up) (i32.const 16)))
      (br $l)))
    (block $t (loop $l
      (br_if $t (i32.ge_u (local.get $gate) (local.get $end)))
      (local.set $s (f32.load (local.get $gate)))
      (f32.store (local.get $gate)
        (f32.mul
          (f32.div (local.get $s) (f32.add (f32.const 1) (call $exp (f32.neg (local.get $s)))))
          (f32.load (local.get $up))))
      (local.set $gate (i32.add (local.get $gate) (i32.const 4)))
      (local.set $up (i32.add (local.get $up) (i32.const 4)))
      (br $l))))

  ;; RoPE of one head in HF's rotate-half layout: with x1, x2 the halves of src (`half` values
  ;; each) and s = sign·sin, dst ← [x1·cos − x2·s, x2·cos + x1·s] (sign −1: the transposed
  ;; rotation, RoPE's gradient). cos and sin: the position's `half` values. dst may be src. Each
  ;; product and sum rounds to float32 once, as tfjs's mul and add kernels round them.
  (func $rotate
    (param $src i32) (param $dst i32) (param $cos i32) (param $sin i32) (param $half i32)
    (param $sign f32)
    (local $i i32) (local $quads i32) (local $o i32) (local $h i32)
    (local $x1 v128) (local $x2 v128) (local $c v128) (local $s v128)
    (local $a f32) (local $b f32) (local $cs f32) (local $sn f32)
    (local.set $quads (i32.and (local.get $half) (i32.const -4)))
    (local.set $h (i32.shl (local.get $half) (i32.const 2)))
    (block $q (loop $l
      (br_if $q (i32.ge_u (local.get $i) (local.get $quads)))
      (local.set $o (i32.shl (local.get $i) (i32.const 2)))
      (local.set $x1 (v128.load (i32.add (local.get $src) (local.get $o))))
      (local.set $x2 (v128.load (i32.add (i32.add (local.get $src) (local.get $h)) (local.get $o))))
      (local.set $s (f32x4.mul (f32x4.splat (local.get $sign)) (v128.load (i32.add (local.get $sin) (local.get $o)))))
      (local.set $c (v128.load (i32.add (local.get $cos) (local.get $o))))
      (v128.store (i32.add (local.get $dst) (local.get $o))
        (f32x4.sub (f32x4.mul (local.get $x1) (local.get $c)) (f32x4.mul (local.get $x2) (local.get $s))))
      (v128.store (i32.add (i32.add (local.get $dst) (local.get $h)) (local.get $o))
        (f32x4.add (f32x4.mul (local.get $x2) (local.get $c)) (f32x4.mul (local.get $x1) (local.get $s))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l)))
    (block $t (loop $l
      (br_if $t (i32.ge_u (local.get $i) (local.get $half)))
      (local.set $o (i32.shl (local.get $i) (i32.const 2)))
      (local.set $a (f32.load (i32.add (local.get $src) (local.get $o))))
      (local.set $b (f32.load (i32.add (i32.add (local.get $src) (local.get $h)) (local.get $o))))
      (local.set $cs (f32.load (i32.add (local.get $cos) (local.get $o))))
      (local.set $sn (f32.mul (local.get $sign) (f32.load (i32.add (local.get $sin) (local.get $o)))))
      (f32.store (i32.add (local.get $dst) (local.get $o))
        (f32.sub (f32.mul (local.get $a) (local.get $cs)) (f32.mul (local.get $b) (local.get $sn))))
      (f32.store (i32.add (i32.add (local.get $dst) (local.get $h)) (local.get $o))
        (f32.add (f32.mul (local.get $b) (local.get $cs)) (f32.mul (local.get $a) (local.get $sn))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))

  (func (export "rope")
    (param $src i32) (param $dst i32) (param $cos i32) (param $sin i32) (param $half i32)
    (call $rotate (local.get $src) (local.get $dst) (local.get $cos) (local.get $sin) (local.get $half)
      (f32.const 1)))

  ;; One query's attention: q ([hd]) against the cached positions [first, last) of one head
  ;; (keys, values: [positions, hd], position 0 at the pointer), scores scaled by `scale`, softmax,
  ;; and out ([hd]) ← Σ p·value. `scores` is room for `last` floats.
  (func (export "attend")
    (param $q i32) (param $keys i32) (param $values i32) (param $first i32) (param $last i32)
    (param $hd i32) (param $scale f32) (param $scores i32) (param $out i32)
    (local $s i32) (local $i i32) (local $quads i32) (local $row i32) (local $acc v128)
    (local $dot f32) (local $max f32) (local $sum f32) (local $e f32) (local $p v128)
    (local $stride i32)
    ;; no key (a padding position's query): out ← 0, as the masked softmax leaves it in forward()
    (if (i32.ge_u (local.get $first) (local.get $last))
      (then
        (memory.fill (local.get $out) (i32.const 0) (i32.shl (local.get $hd) (i32.const 2)))
        (return)))
    (local.set $quads (i32.and (local.get $hd) (i32.const -4)))
    (local.set $stride (i32.shl (local.get $hd) (i32.const 2)))
    (local.set $max (f32.const -inf))
    ;; scores and their maximum
    (local.set $s (local.get $first))
    (block $done (loop $positions
      (br_if $done (i32.ge_u (local.get $s) (local.get $last)))
      (local.set $row (i32.add (local.get $keys) (i32.mul (local.get $s) (local.get $stride))))
      (local.set $acc (v128.const i32x4 0 0 0 0))
      (local.set $i (i32.const 0))
      (block $q (loop $l
        (br_if $q (i32.ge_u (local.get $i) (local.get $quads)))
        (local.set $acc
          (f32x4.add (local.get $acc)
            (f32x4.mul
              (v128.load (i32.add (local.get $q) (i32.shl (local.get $i) (i32.const 2))))
              (v128.load (i32.add (local.get $row) (i32.shl (local.get $i) (i32.const 2)))))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $l)))
      (local.set $dot (call $lanes (local.get $acc)))
      (block $t (loop $l
        (br_if $t (i32.ge_u (local.get $i) (local.get $hd)))
        (local.set $dot
          (f32.add (local.get $dot)
            (f32.mul
              (f32.load (i32.add (local.get $q) (i32.shl (local.get $i) (i32.const 2))))
              (f32.load (i32.add (local.get $row) (i32.shl (local.get $i) (i32.const 2)))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (local.set $dot (f32.mul (local.get $dot) (local.get $scale)))
      (f32.store (i32.add (local.get $scores) (i32.shl (local.get $s) (i32.const 2))) (local.get $dot))
      (local.set $max (f32.max (local.get $max) (local.get $dot)))
      (local.set $s (i32.add (local.get $s) (i32.const 1)))
      (br $positions)))
    ;; e^(score − max) and their sum
    (local.set $sum (f32.const 0))
    (local.set $s (local.get $first))
    (block $done (loop $positions
      (br_if $done (i32.ge_u (local.get $s) (local.get $last)))
      (local.set $row (i32.add (local.get $scores) (i32.shl (local.get $s) (i32.const 2))))
      (local.set $e (call $exp (f32.sub (f32.load (local.get $row)) (local.get $max))))
      (f32.store (local.get $row) (local.get $e))
      (local.set $sum (f32.add (local.get $sum) (local.get $e)))
      (local.set $s (i32.add (local.get $s) (i32.const 1)))
      (br $positions)))
    ;; out ← Σ e·value / Σ e, 4 outputs at a time
    (local.set $i (i32.const 0))
    (block $q (loop $l
      (br_if $q (i32.ge_u (local.get $i) (local.get $quads)))
      (local.set $acc (v128.const i32x4 0 0 0 0))
      (local.set $s (local.get $first))
      (block $done (loop $positions
        (br_if $done (i32.ge_u (local.get $s) (local.get $last)))
        (local.set $p (f32x4.splat (f32.load (i32.add (local.get $scores) (i32.shl (local.get $s) (i32.const 2))))))
        (local.set $acc
          (f32x4.add (local.get $acc)
            (f32x4.mul (local.get $p)
              (v128.load
                (i32.add
                  (i32.add (local.get $values) (i32.mul (local.get $s) (local.get $stride)))
                  (i32.shl (local.get $i) (i32.const 2)))))))
        (local.set $s (i32.add (local.get $s) (i32.const 1)))
        (br $positions)))
      (v128.store (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2)))
        (f32x4.div (local.get $acc) (f32x4.splat (local.get $sum))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l)))
    (block $t (loop $l
      (br_if $t (i32.ge_u (local.get $i) (local.get $hd)))
      (local.set $dot (f32.const 0))
      (local.set $s (local.get $first))
      (block $done (loop $positions
        (br_if $done (i32.ge_u (local.get $s) (local.get $last)))
        (local.set $dot
          (f32.add (local.get $dot)
            (f32.mul
              (f32.load (i32.add (local.get $scores) (i32.shl (local.get $s) (i32.const 2))))
              (f32.load
                (i32.add
                  (i32.add (local.get $values) (i32.mul (local.get $s) (local.get $stride)))
                  (i32.shl (local.get $i) (i32.const 2)))))))
        (local.set $s (i32.add (local.get $s) (i32.const 1)))
        (br $positions)))
      (f32.store (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2)))
        (f32.div (local.get $dot) (local.get $sum)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))

  ;; RoPE (HF's rotate-half layout) of every head of a [B, T, H, hd] tensor, written as [B, H, T,
  ;; hd] (`toHeads` 1), or the other way round (`toHeads` 0). cos and sin: [rows, T, hd] (rows 1:
  ;; shared by the batch), of which each row's first hd / 2 values are read. `sign` −1 rotates
  ;; backwards (the gradient: x·cos + rotate_halfᵀ(x)·sin). Each product and sum rounds to float32
  ;; as tfjs's mul and add kernels round them.
  (func (export "ropeHeads")
    (param $x i32) (param $out i32) (param $cos i32) (param $sin i32) (param $batch i32)
    (param $time i32) (param $heads i32) (param $hd i32) (param $rows i32) (param $sign f32)
    (param $toHeads i32)
    (local $b i32) (local $t i32) (local $h i32) (local $half i32)
    (local $bth i32) (local $bht i32) (local $src i32) (local $dst i32) (local $table i32)
    (local.set $half (i32.shr_u (local.get $hd) (i32.const 1)))
    (block $bd (loop $bl
      (br_if $bd (i32.ge_u (local.get $b) (local.get $batch)))
      (local.set $t (i32.const 0))
      (block $td (loop $tl
        (br_if $td (i32.ge_u (local.get $t) (local.get $time)))
        (local.set $table
          (i32.shl
            (i32.mul
              (i32.add
                (i32.mul (select (i32.const 0) (local.get $b) (i32.eq (local.get $rows) (i32.const 1))) (local.get $time))
                (local.get $t))
              (local.get $hd))
            (i32.const 2)))
        (local.set $h (i32.const 0))
        (block $hd_ (loop $hl
          (br_if $hd_ (i32.ge_u (local.get $h) (local.get $heads)))
          ;; element offsets (in bytes) of this (b, t, h) head in both layouts
          (local.set $bth
            (i32.shl
              (i32.mul
                (i32.add (i32.mul (i32.add (i32.mul (local.get $b) (local.get $time)) (local.get $t)) (local.get $heads)) (local.get $h))
                (local.get $hd))
              (i32.const 2)))
          (local.set $bht
            (i32.shl
              (i32.mul
                (i32.add (i32.mul (i32.add (i32.mul (local.get $b) (local.get $heads)) (local.get $h)) (local.get $time)) (local.get $t))
                (local.get $hd))
              (i32.const 2)))
          (if (local.get $toHeads)
            (then
              (local.set $src (i32.add (local.get $x) (local.get $bth)))
              (local.set $dst (i32.add (local.get $out) (local.get $bht))))
            (else
              (local.set $src (i32.add (local.get $x) (local.get $bht)))
              (local.set $dst (i32.add (local.get $out) (local.get $bth)))))
          (call $rotate (local.get $src) (local.get $dst) (i32.add (local.get $cos) (local.get $table))
            (i32.add (local.get $sin) (local.get $table)) (local.get $half) (local.get $sign))
          (local.set $h (i32.add (local.get $h) (i32.const 1)))
          (br $hl)))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $tl)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $bl))))

  ;; 1 / sqrt(mean(x²) + eps) of one row of d values, the squares summed in float32 lanes.
  (func $inverseRms (param $x i32) (param $d i32) (param $eps f32) (result f32)
    (f32.div (f32.const 1)
      (f32.sqrt
        (f32.add
          (f32.div (call $dot (local.get $x) (local.get $x) (local.get $d)) (f32.convert_i32_u (local.get $d)))
          (local.get $eps)))))

  ;; Σ x[i]·y[i] for i < n.
  (func $dot (param $x i32) (param $y i32) (param $n i32) (result f32)
    (local $i i32) (local $quads i32) (local $acc v128) (local $sum f32)
    (local.set $quads (i32.and (local.get $n) (i32.const -4)))
    (block $q (loop $l
      (br_if $q (i32.ge_u (local.get $i) (local.get $quads)))
      (local.set $acc
        (f32x4.add (local.get $acc)
          (f32x4.mul
            (v128.load (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2))))
            (v128.load (i32.add (local.get $y) (i32.shl (local.get $i) (i32.const 2)))))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l)))
    (local.set $sum (call $lanes (local.get $acc)))
    (block $t (loop $l
      (br_if $t (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $sum
        (f32.add (local.get $sum)
          (f32.mul
            (f32.load (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2))))
            (f32.load (i32.add (local.get $y) (i32.shl (local.get $i) (i32.const 2)))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $sum))

  ;; RMSNorm's gradient for the train step, from dy [rows, d]: with r = 1 / rms of each row of x,
  ;; dx = r·w·dy − x·r³·(Σ dy·w·x) / d, and dw = Σ over rows of dy·x·r, summed in float64 in
  ;; `acc` (room for d float64, zeros on entry) and written to dw as float32 at the end.
  (func (export "rmsNormBackward")
    (param $x i32) (param $w i32) (param $dy i32) (param $dx i32) (param $dw i32) (param $acc i32)
    (param $rows i32) (param $d i32) (param $eps f32)
    (local $row i32) (local $i i32) (local $o i32) (local $r f32) (local $c f32) (local $dot f32)
    (local $rv v128) (local $cv v128) (local $t v128) (local $bytes i32) (local $pairs i32)
    (local $a f32)
    (local.set $bytes (i32.shl (local.get $d) (i32.const 2)))
    (local.set $pairs (i32.and (local.get $d) (i32.const -4)))
    (block $done (loop $rowl
      (br_if $done (i32.ge_u (local.get $row) (local.get $rows)))
      (local.set $r (call $inverseRms (local.get $x) (local.get $d) (local.get $eps)))
      ;; Σ dy·w·x
      (local.set $t (v128.const i32x4 0 0 0 0))
      (local.set $i (i32.const 0))
      (block $q (loop $l
        (br_if $q (i32.ge_u (local.get $i) (local.get $pairs)))
        (local.set $o (i32.shl (local.get $i) (i32.const 2)))
        (local.set $t
          (f32x4.add (local.get $t)
            (f32x4.mul
              (f32x4.mul (v128.load (i32.add (local.get $dy) (local.get $o))) (v128.load (i32.add (local.get $w) (local.get $o))))
              (v128.load (i32.add (local.get $x) (local.get $o))))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $l)))
      (local.set $dot (call $lanes (local.get $t)))
      (block $q (loop $l
        (br_if $q (i32.ge_u (local.get $i) (local.get $d)))
        (local.set $o (i32.shl (local.get $i) (i32.const 2)))
        (local.set $dot
          (f32.add (local.get $dot)
            (f32.mul
              (f32.mul (f32.load (i32.add (local.get $dy) (local.get $o))) (f32.load (i32.add (local.get $w) (local.get $o))))
              (f32.load (i32.add (local.get $x) (local.get $o))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (local.set $c
        (f32.div (f32.mul (f32.mul (f32.mul (local.get $r) (local.get $r)) (local.get $r)) (local.get $dot))
          (f32.convert_i32_u (local.get $d))))
      (local.set $rv (f32x4.splat (local.get $r)))
      (local.set $cv (f32x4.splat (local.get $c)))
      (local.set $i (i32.const 0))
      (block $q (loop $l
        (br_if $q (i32.ge_u (local.get $i) (local.get $pairs)))
        (local.set $o (i32.shl (local.get $i) (i32.const 2)))
        (v128.store (i32.add (local.get $dx) (local.get $o))
          (f32x4.sub
            (f32x4.mul (f32x4.mul (local.get $rv) (v128.load (i32.add (local.get $w) (local.get $o))))
              (v128.load (i32.add (local.get $dy) (local.get $o))))
            (f32x4.mul (v128.load (i32.add (local.get $x) (local.get $o))) (local.get $cv))))
        ;; dw's terms dy·x·r, added in float64: lanes 0–1, then 2–3
        (local.set $t
          (f32x4.mul
            (f32x4.mul (v128.load (i32.add (local.get $dy) (local.get $o))) (v128.load (i32.add (local.get $x) (local.get $o))))
            (local.get $rv)))
        (v128.store (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 3)))
          (f64x2.add (v128.load (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 3))))
            (f64x2.promote_low_f32x4 (local.get $t))))
        (v128.store (i32.add (local.get $acc) (i32.add (i32.shl (local.get $i) (i32.const 3)) (i32.const 16)))
          (f64x2.add (v128.load (i32.add (local.get $acc) (i32.add (i32.shl (local.get $i) (i32.const 3)) (i32.const 16))))
            (f64x2.promote_low_f32x4
              (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $t) (local.get $t)))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $l)))
      (block $t2 (loop $l
        (br_if $t2 (i32.ge_u (local.get $i) (local.get $d)))
        (local.set $o (i32.shl (local.get $i) (i32.const 2)))
        (f32.store (i32.add (local.get $dx) (local.get $o))
          (f32.sub
            (f32.mul (f32.mul (local.get $r) (f32.load (i32.add (local.get $w) (local.get $o))))
              (f32.load (i32.add (local.get $dy) (local.get $o))))
            (f32.mul (f32.load (i32.add (local.get $x) (local.get $o))) (local.get $c))))
        (local.set $a
          (f32.mul (f32.mul (f32.load (i32.add (local.get $dy) (local.get $o))) (f32.load (i32.add (local.get $x) (local.get $o))))
            (local.get $r)))
        (f64.store (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 3)))
          (f64.add (f64.load (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 3))))
            (f64.promote_f32 (local.get $a))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (local.set $x (i32.add (local.get $x) (local.get $bytes)))
      (local.set $dy (i32.add (local.get $dy) (local.get $bytes)))
      (local.set $dx (i32.add (local.get $dx) (local.get $bytes)))
      (local.set $row (i32.add (local.get $row) (i32.const 1)))
      (br $rowl)))
    (local.set $i (i32.const 0))
    (block $q (loop $l
      (br_if $q (i32.ge_u (local.get $i) (local.get $d)))
      (f32.store (i32.add (local.get $dw) (i32.shl (local.get $i) (i32.const 2)))
        (f32.demote_f64 (f64.load (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 3))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))

  ;; One AdamW update of n values, in the tfjs ops' float32 steps (runtime/engine/optim.ts), each into a
  ;; fresh array: g' = g·clip (clip 1: g), m' = m·b1 + g'·(1 − b1), v' = v·b2 + g'²·(1 − b2),
  ;; step = (m' / c1) / (sqrt(v' / c2) + eps), p' = p − (step + p·decay)·lr (decay 0: step·lr).
  (func (export "adamW")
    (param $p i32) (param $g i32) (param $m i32) (param $v i32) (param $pOut i32) (param $mOut i32)
    (param $vOut i32) (param $n i32) (param $b1 f32) (param $b2 f32) (param $keep1 f32)
    (param $keep2 f32) (param $c1 f32) (param $c2 f32) (param $eps f32) (param $lr f32)
    (param $clip f32) (param $decay f32)
    (local $o i32) (local $end i32)
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    ;; 4 values at a time, then the last 1–3 one at a time
    (block $q (loop $l
      (br_if $q (i32.gt_u (i32.add (local.get $o) (i32.const 16)) (local.get $end)))
      (call $adamW4 (local.get $p) (local.get $g) (local.get $m) (local.get $v) (local.get $pOut)
        (local.get $mOut) (local.get $vOut) (local.get $o) (local.get $b1) (local.get $b2)
        (local.get $keep1) (local.get $keep2) (local.get $c1) (local.get $c2) (local.get $eps)
        (local.get $lr) (local.get $clip) (local.get $decay) (i32.const 4))
      (local.set $o (i32.add (local.get $o) (i32.const 16)))
      (br $l)))
    (block $t (loop $l
      (br_if $t (i32.ge_u (local.get $o) (local.get $end)))
      (call $adamW4 (local.get $p) (local.get $g) (local.get $m) (local.get $v) (local.get $pOut)
        (local.get $mOut) (local.get $vOut) (local.get $o) (local.get $b1) (local.get $b2)
        (local.get $keep1) (local.get $keep2) (local.get $c1) (local.get $c2) (local.get $eps)
        (local.get $lr) (local.get $clip) (local.get $decay) (i32.const 1))
      (local.set $o (i32.add (local.get $o) (i32.const 4)))
      (br $l))))

  ;; adamW's step at byte offset o: 4 values (lanes = 4), or 1 (lanes = 1: lane 0 only is read
  ;; and written, the others computed on copies of it).
  (func $adamW4
    (param $p i32) (param $g i32) (param $m i32) (param $v i32) (param $pOut i32) (param $mOut i32)
    (param $vOut i32) (param $o i32) (param $b1 f32) (param $b2 f32) (param $keep1 f32)
    (param $keep2 f32) (param $c1 f32) (param $c2 f32) (param $eps f32) (param $lr f32)
    (param $clip f32) (param $decay f32) (param $lanes i32)
    (local $gv v128) (local $mv v128) (local $vv v128) (local $pv v128) (local $step v128)
    (if (i32.eq (local.get $lanes) (i32.const 4))
      (then
        (local.set $gv (v128.load (i32.add (local.get $g) (local.get $o))))
        (local.set $mv (v128.load (i32.add (local.get $m) (local.get $o))))
        (local.set $vv (v128.load (i32.add (local.get $v) (local.get $o))))
        (local.set $pv (v128.load (i32.add (local.get $p) (local.get $o)))))
      (else
        (local.set $gv (f32x4.splat (f32.load (i32.add (local.get $g) (local.get $o)))))
        (local.set $mv (f32x4.splat (f32.load (i32.add (local.get $m) (local.get $o)))))
        (local.set $vv (f32x4.splat (f32.load (i32.add (local.get $v) (local.get $o)))))
        (local.set $pv (f32x4.splat (f32.load (i32.add (local.get $p) (local.get $o)))))))
    (if (f32.ne (local.get $clip) (f32.const 1))
      (then (local.set $gv (f32x4.mul (local.get $gv) (f32x4.splat (local.get $clip))))))
    (local.set $mv
      (f32x4.add (f32x4.mul (local.get $mv) (f32x4.splat (local.get $b1)))
        (f32x4.mul (local.get $gv) (f32x4.splat (local.get $keep1)))))
    (local.set $vv
      (f32x4.add (f32x4.mul (local.get $vv) (f32x4.splat (local.get $b2)))
        (f32x4.mul (f32x4.mul (local.get $gv) (local.get $gv)) (f32x4.splat (local.get $keep2)))))
    (local.set $step
      (f32x4.div (f32x4.div (local.get $mv) (f32x4.splat (local.get $c1)))
        (f32x4.add (f32x4.sqrt (f32x4.div (local.get $vv) (f32x4.splat (local.get $c2))))
          (f32x4.splat (local.get $eps)))))
    (if (f32.gt (local.get $decay) (f32.const 0))
      (then
        (local.set $step
          (f32x4.add (local.get $step) (f32x4.mul (local.get $pv) (f32x4.splat (local.get $decay)))))))
    (local.set $pv (f32x4.sub (local.get $pv) (f32x4.mul (local.get $step) (f32x4.splat (local.get $lr)))))
    (if (i32.eq (local.get $lanes) (i32.const 4))
      (then
        (v128.store (i32.add (local.get $mOut) (local.get $o)) (local.get $mv))
        (v128.store (i32.add (local.get $vOut) (local.get $o)) (local.get $vv))
        (v128.store (i32.add (local.get $pOut) (local.get $o)) (local.get $pv)))
      (else
        (f32.store (i32.add (local.get $mOut) (local.get $o)) (f32x4.extract_lane 0 (local.get $mv)))
        (f32.store (i32.add (local.get $vOut) (local.get $o)) (f32x4.extract_lane 0 (local.get $vv)))
        (f32.store (i32.add (local.get $pOut) (local.get $o)) (f32x4.extract_lane 0 (local.get $pv))))))
)
