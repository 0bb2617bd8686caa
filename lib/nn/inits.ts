/**
 * The table of initialisations, keyed by kind. A run's spec names its init as plain data
 * (`{ kind: "mimetic", A: true, c: 8, delta: true, qk: true, conv: true, convScope: "xBC", layers: [3] }`), and
 * the table turns it into the mimetic components of each layer. Adding an init is one entry of {@link INITS} and one
 * member of {@link InitSpec}.
 * @module
 */
import { DEFAULT_INIT, type Mimetic } from "./init.ts";

/** The default (mamba_ssm) initialisation of every layer. */
export interface DefaultInitSpec {
  kind: "default";
}

/** The mimetic components (paper section 3) on the chosen layers; the others keep the default init. */
export interface MimeticInitSpec {
  kind: "mimetic";
  /** A ≈ 1 through A = −exp(−c·A_log). */
  A: boolean;
  c: number;
  /** Δ ≈ 1: W_Δ = 0, b_Δ = softplus⁻¹(1). */
  delta: boolean;
  /** W_Cᵀ W_B ≈ I. */
  qk: boolean;
  /** Identity convolution. */
  conv: boolean;
  /** Mamba 2: the identity conv covers x, B and C (`xBC`) or x only (`x`). */
  convScope: "xBC" | "x";
  /** Which layers (0-based) get the components: `all`, or a list. */
  layers: "all" | number[];
}

/** An initialisation as data. */
export type InitSpec = DefaultInitSpec | MimeticInitSpec;

/** What an init kind provides. */
export interface InitRule<S extends InitSpec> {
  /** Checks the spec against a model of `nLayers` layers, throwing a RangeError naming the field. */
  validate(spec: S, nLayers: number): void;
  /** The mimetic components of layer `layer`. */
  layer(spec: S, layer: number): Mimetic;
  /** A short label for charts and logs, e.g. "default", "mimetic", "mimetic A+Δ @3". */
  label(spec: S): string;
}

const COMPONENTS = ["A", "delta", "qk", "conv"] as const;

/** Every init, by kind. */
export const INITS: { readonly [K in InitSpec["kind"]]: InitRule<Extract<InitSpec, { kind: K }>> } = {
  default: {
    validate: () => {},
    layer: () => DEFAULT_INIT,
    label: () => "default",
  },
  mimetic: {
    validate(spec, nLayers) {
      for (const c of COMPONENTS) {
        if (typeof spec[c] !== "boolean") throw new RangeError(`init: mimetic ${c} must be true or false`);
      }
      if (!(spec.c > 0) || !Number.isFinite(spec.c)) {
        throw new RangeError(`init: mimetic c must be a positive number, got ${spec.c}`);
      }
      if (spec.convScope !== "xBC" && spec.convScope !== "x") {
        throw new RangeError(
          `init: mimetic convScope must be "xBC" or "x", got ${JSON.stringify(spec.convScope)}`,
        );
      }
      if (spec.layers !== "all") {
        if (!Array.isArray(spec.layers) || spec.layers.length === 0) {
          throw new RangeError(`init: mimetic layers must be "all" or a non-empty list of layer indices`);
        }
        for (const l of spec.layers) {
          if (!Number.isInteger(l) || l < 0 || l >= nLayers) {
            throw new RangeError(`init: mimetic layer ${l} is not a layer of this ${nLayers}-layer model`);
          }
        }
        if (new Set(spec.layers).size !== spec.layers.length) {
          throw new RangeError(`init: mimetic layers [${spec.layers}] name a layer twice`);
        }
      }
    },
    layer(spec, layer) {
      if (spec.layers !== "all" && !spec.layers.includes(layer)) return DEFAULT_INIT;
      const { A, c, delta, qk, conv, convScope } = spec;
      return { A, c, delta, qk, conv, convScope };
    },
    label(spec) {
      const on = COMPONENTS.filter((c) => spec[c]);
      const all = on.length === COMPONENTS.length;
      const parts = all ? "" : ` ${on.length ? on.map((c) => (c === "delta" ? "Δ" : c)).join("+") : "none"}`;
      const where = spec.layers === "all" ? "" : ` @${spec.layers.join(",")}`;
      return `mimetic${parts}${where}`;
    },
  },
};

/** The rule of a spec's kind; a RangeError naming the kinds when there is none. */
export function initRule<S extends InitSpec>(spec: S): InitRule<S> {
  const rule = (INITS as Record<string, InitRule<InitSpec> | undefined>)[(spec as { kind: string }).kind];
  if (!rule) {
    throw new RangeError(
      `init: unknown kind ${JSON.stringify((spec as { kind: unknown }).kind)}; expected one of ${
        Object.keys(INITS).join(", ")
      }`,
    );
  }
  return rule as unknown as InitRule<S>;
}

/** The mimetic-init spec with every component on, c = 8, on every layer (the paper's Mamba 2 choice). */
export const MIMETIC_ALL: MimeticInitSpec = {
  kind: "mimetic",
  A: true,
  c: 8,
  delta: true,
  qk: true,
  conv: true,
  convScope: "xBC",
  layers: "all",
};
