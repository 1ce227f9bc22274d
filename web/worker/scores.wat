;; The inner loop of vector search (web/worker/vectors.js): one query against every stored row,
;; by inner product, four f32 lanes at a time. V8 does not vectorise the same loop written in JS
;; (measured ~2.2 ns per multiply-add over 17.5k x 384 floats, 15 ms per question); this one is
;; bound by memory bandwidth instead. Compiled to scores.wasm by wasm_pkg/scores.mjs (wabt).
;;
;; Layout, all in the caller's memory: rows are `stride` floats apart, `stride` a multiple of 16
;; (the caller pads with zeros), addresses 16-byte aligned; one f32 score per row goes to `out`.
(module
  (import "env" "memory" (memory 1))
  (func (export "scores")
    (param $query i32) (param $rows i32) (param $count i32) (param $stride i32) (param $out i32)
    (local $end i32) (local $row_end i32) (local $q i32) (local $r i32)
    (local $a v128) (local $b v128) (local $c v128) (local $d v128)
    (local.set $end (i32.add (local.get $out) (i32.shl (local.get $count) (i32.const 2))))
    (block $all_done
      (loop $each_row
        (br_if $all_done (i32.ge_u (local.get $out) (local.get $end)))
        (local.set $row_end (i32.add (local.get $rows) (i32.shl (local.get $stride) (i32.const 2))))
        (local.set $q (local.get $query))
        (local.set $r (local.get $rows))
        ;; Four independent sums so consecutive multiply-adds do not wait on each other.
        (local.set $a (v128.const f32x4 0 0 0 0))
        (local.set $b (v128.const f32x4 0 0 0 0))
        (local.set $c (v128.const f32x4 0 0 0 0))
        (local.set $d (v128.const f32x4 0 0 0 0))
        (block $row_done
          (loop $sixteen
            (br_if $row_done (i32.ge_u (local.get $r) (local.get $row_end)))
            (local.set $a (f32x4.add (local.get $a)
              (f32x4.mul (v128.load offset=0 (local.get $r)) (v128.load offset=0 (local.get $q)))))
            (local.set $b (f32x4.add (local.get $b)
              (f32x4.mul (v128.load offset=16 (local.get $r)) (v128.load offset=16 (local.get $q)))))
            (local.set $c (f32x4.add (local.get $c)
              (f32x4.mul (v128.load offset=32 (local.get $r)) (v128.load offset=32 (local.get $q)))))
            (local.set $d (f32x4.add (local.get $d)
              (f32x4.mul (v128.load offset=48 (local.get $r)) (v128.load offset=48 (local.get $q)))))
            (local.set $r (i32.add (local.get $r) (i32.const 64)))
            (local.set $q (i32.add (local.get $q) (i32.const 64)))
            (br $sixteen)))
        (local.set $a (f32x4.add (f32x4.add (local.get $a) (local.get $b))
                                 (f32x4.add (local.get $c) (local.get $d))))
        (f32.store (local.get $out)
          (f32.add (f32.add (f32x4.extract_lane 0 (local.get $a)) (f32x4.extract_lane 1 (local.get $a)))
                   (f32.add (f32x4.extract_lane 2 (local.get $a)) (f32x4.extract_lane 3 (local.get $a)))))
        (local.set $rows (local.get $row_end))
        (local.set $out (i32.add (local.get $out) (i32.const 4)))
        (br $each_row)))))
