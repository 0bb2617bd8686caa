// Parts shared by the SSD scan kernels (ssd_scan_*.wgsl), spliced in by `//@use` lines (see `kernelSource` in
// lib/core/kernels.ts): the staging of one tile of S steps (t0 .. t0+S-1) in workgroup memory, steps past T as zeros,
// and the backward's per-step sums over row threads and column slices. Not a kernel on its own.

//@part stage_bc: B and C of the tile's steps, as vec4s of states (sb, sc: S × NN4)
    for (var i = lid; i < S * NN4; i += WG) {
      let s = i / NN4;
      let n = (i % NN4) * 4u;
      let t = t0 + s;
      var bv = vec4<f32>(0.0);
      var cv = vec4<f32>(0.0);
      if (t < prm.T) {
        let base = ((kb * prm.T + t) * prm.G + g) * N + n;
        if (n < N) { bv.x = Bm[base]; cv.x = Cm[base]; }
        if (n + 1u < N) { bv.y = Bm[base + 1u]; cv.y = Cm[base + 1u]; }
        if (n + 2u < N) { bv.z = Bm[base + 2u]; cv.z = Cm[base + 2u]; }
        if (n + 3u < N) { bv.w = Bm[base + 3u]; cv.w = Cm[base + 3u]; }
      }
      sb[i] = bv;
      sc[i] = cv;
    }
//@endpart

//@part stage_x_dy: x and dy of the tile's steps (sx, sdy: S × PP)
    for (var i = lid; i < S * PP; i += WG) {
      let s = i / PP;
      let q = i % PP;
      let t = t0 + s;
      var v = 0.0;
      var e = 0.0;
      if (t < prm.T && q < P) {
        let idx = ((kb * prm.T + t) * prm.H + h) * P + q;
        v = X[idx];
        e = DY[idx];
      }
      sx[i] = v;
      sdy[i] = e;
    }
//@endpart

//@part stage_dt: dt and exp(dt·A) of the tile's steps (sdt, sdec: S)
    for (var l = lid; l < S; l += WG) {
      let t = t0 + l;
      var dtv = 0.0;
      if (t < prm.T) { dtv = DT[(kb * prm.T + t) * prm.H + h]; }
      sdt[l] = dtv;
      sdec[l] = exp(dtv * a);
    }
//@endpart

//@part row_sums SRC MID BC SLICE DST OUT SCALE: the backward's per-step sums of a (S, TP, NN4) partial
// {{SRC}} over the TP row threads (in two levels through {{MID}} when FB > 1, so no thread walks a long serial
// chain), written to {{DST}} after scaling by {{SCALE}}; then its dot product with {{BC}} by column slices
// ({{SLICE}}), and those slices summed in FQ interleaved parts into {{OUT}}.
    if (FB > 1u) {
      for (var i = lid; i < S * NN4 * FB; i += WG) {
        let item = i / FB;
        let s = item / NN4;
        let n4 = item % NN4;
        var acc = vec4<f32>(0.0);
        for (var j = i % FB; j < TP; j += FB) { acc += {{SRC}}[(s * TP + j) * NN4 + n4]; }
        {{MID}}[i] = acc;
      }
      workgroupBarrier();
    }
    for (var i = lid; i < S * NN4; i += WG) {
      let s = i / NN4;
      let n4 = i % NN4;
      var acc = vec4<f32>(0.0);
      if (FB > 1u) {
        for (var f = 0u; f < FB; f++) { acc += {{MID}}[i * FB + f]; }
      } else {
        for (var j = 0u; j < TP; j++) { acc += {{SRC}}[(s * TP + j) * NN4 + n4]; }
      }
      {{SLICE}}[i] = dot(acc, {{BC}}[i]); // by column slices
      acc *= {{SCALE}};
      let t = t0 + s;
      let n = n4 * 4u;
      if (t < prm.T) {
        let base = (((kb - prm.okb) * prm.T + t) * prm.H + h) * N + n;
        if (n < N) { {{DST}}[base] = acc.x; }
        if (n + 1u < N) { {{DST}}[base + 1u] = acc.y; }
        if (n + 2u < N) { {{DST}}[base + 2u] = acc.z; }
        if (n + 3u < N) { {{DST}}[base + 3u] = acc.w; }
      }
    }
    workgroupBarrier();
    // the column slices in FQ interleaved parts (parallel); the caller sums the parts
    for (var i = lid; i < S * FQ; i += WG) {
      let s = i / FQ;
      var acc = 0.0;
      for (var n4 = i % FQ; n4 < NN4; n4 += FQ) { acc += {{SLICE}}[s * NN4 + n4]; }
      {{OUT}}[i] = acc;
    }
    workgroupBarrier();
//@endpart
