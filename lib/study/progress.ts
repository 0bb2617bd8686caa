/**
 * Progress on stderr for long work: a line redrawn in place when stderr is a terminal, otherwise a plain line at
 * most every `everySeconds` (so logs of batch jobs stay short).
 * @module
 */

/** A progress reporter: call `update` often; it decides when to print. */
export class Progress {
  #last = 0;
  readonly #tty: boolean;
  readonly #t0 = performance.now();
  constructor(readonly label: string, readonly everySeconds = 15, readonly enabled = true) {
    let tty = false;
    try {
      tty = Deno.stderr.isTerminal();
    } catch { /* not a terminal */ }
    this.#tty = tty;
  }

  /** Seconds since creation. */
  get elapsed(): number {
    return (performance.now() - this.#t0) / 1000;
  }

  /** Reports `done` of `total` with an optional detail string. */
  update(done: number, total: number, detail = "", force = false): void {
    if (!this.enabled) return;
    const now = performance.now();
    const interval = this.#tty ? 200 : this.everySeconds * 1000;
    if (!force && now - this.#last < interval && done < total) return;
    this.#last = now;
    const pct = total > 0 ? ((100 * done) / total).toFixed(0).padStart(3) : "  ?";
    const eta = done > 0 && done < total ? ` eta ${fmtSeconds((this.elapsed * (total - done)) / done)}` : "";
    const line = `${this.label} ${pct}% ${done}/${total} ${fmtSeconds(this.elapsed)}${eta} ${detail}`;
    const enc = new TextEncoder();
    if (this.#tty) Deno.stderr.writeSync(enc.encode(`\r\x1b[2K${line}${done >= total ? "\n" : ""}`));
    else Deno.stderr.writeSync(enc.encode(line + "\n"));
  }
}

/** "1m05s" style durations. */
export function fmtSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s - 60 * m)).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}
