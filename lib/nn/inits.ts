/**
 * The table of initialisations, keyed by kind. A run's spec names its init as plain data
 * (`{ kind: "mimetic", A: true, c: 8, delta: true, qk: true, conv: true, convScope: "xBC", layers: [3] }`), and
 * the table turns it into the mimetic components of each layer (drawn inits), or into the parameters themselves
 * (`params`: inits that start from weights, e.g. a pretrained checkpoint). Adding an init is one entry of
 * {@link INITS} and one member of {@link InitSpec}.
 *
 * The weight-based inits name their folder and its content hash ({@link checkpointDigest}), so a run's spec (and
 * its id) changes when the weights do, and loading refuses a folder whose content no longer matches the spec.
 * @module
 */
import { DEFAULT_INIT, type Mimetic } from "./init.ts";
import type { HostRun, LMConfig } from "./lm.ts";
import { checkpointDigest, type PretrainedHost, readPretrainedHost } from "./pretrained.ts";

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

/**
 * Every parameter from a local Hugging Face folder (`loadPretrained`): the run's model config must be the
 * checkpoint's (`readPretrainedConfig` with the same symbols gives it).
 */
export interface PretrainedInitSpec {
  kind: "pretrained";
  /** The folder: config.json, model.safetensors (or shards), tokenizer.json. */
  dir: string;
  /** {@link checkpointDigest} of the folder, taken when the run was planned. */
  sha256: string;
  /**
   * The task's symbols in id order: each maps to the tokenizer's single-character token, and the embedding keeps
   * only those rows (see `tokenIdsForSymbols`).
   */
  symbols: string[];
}

/**
 * A student whose every layer starts as layer `layer` of a pretrained teacher (paper section 6, S_j := T_i): each
 * block's norm and mixer are the teacher block's; the embedding (the symbols' rows) and the final norm are the
 * teacher's too, so every student reads the same token vectors and only the layer differs. The student's model
 * config is the teacher's with its own number of layers.
 */
export interface TeacherLayerInitSpec {
  kind: "teacherLayer";
  /** The teacher's folder. */
  dir: string;
  /** {@link checkpointDigest} of the teacher's folder. */
  sha256: string;
  /** As {@link PretrainedInitSpec.symbols}. */
  symbols: string[];
  /** The teacher layer i (0-based) copied into every student layer. */
  layer: number;
}

/** An initialisation as data. */
export type InitSpec = DefaultInitSpec | MimeticInitSpec | PretrainedInitSpec | TeacherLayerInitSpec;

/** What an init kind provides. */
export interface InitRule<S extends InitSpec> {
  /** Checks the spec against the model, without reading weights; throws a RangeError naming the field. */
  validate(spec: S, model: LMConfig): void;
  /** The mimetic components of layer `layer` (for drawn inits; not consulted when the rule has `params`). */
  layer(spec: S, layer: number): Mimetic;
  /**
   * For inits that start from weights: one run's parameters and constants (host tensors) for `model`, replacing
   * the drawn ones. Each run of a group gets its own (the run's seed still keys its data).
   */
  params?(spec: S, model: LMConfig): Promise<HostRun>;
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
    validate(spec, model) {
      const nLayers = model.layers.length;
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
  pretrained: {
    validate: (spec, model) => validateWeightsSpec("pretrained", spec, model),
    layer: () => DEFAULT_INIT,
    async params(spec, model) {
      const m = await pretrainedHost(spec);
      const diff = configDifference(model, m.cfg);
      if (diff) {
        throw new RangeError(
          `init: pretrained ${spec.dir}: the run's model differs from the checkpoint's (${diff}); plan the run ` +
            `with readPretrainedConfig's config`,
        );
      }
      return { params: m.params, consts: m.consts };
    },
    label: () => "pretrained",
  },
  teacherLayer: {
    validate(spec, model) {
      validateWeightsSpec("teacherLayer", spec, model);
      if (!Number.isInteger(spec.layer) || spec.layer < 0) {
        throw new RangeError(`init: teacherLayer layer must be an integer ≥ 0, got ${spec.layer}`);
      }
    },
    layer: () => DEFAULT_INIT,
    async params(spec, model) {
      const t = await pretrainedHost(spec);
      const L = t.cfg.layers.length;
      if (spec.layer >= L) {
        throw new RangeError(
          `init: teacherLayer ${spec.layer} is not a layer of the ${L}-layer teacher ${spec.dir}`,
        );
      }
      const student: LMConfig = {
        ...t.cfg,
        layers: model.layers.map(() => ({ ...t.cfg.layers[spec.layer] })),
      };
      const diff = configDifference(model, student);
      if (diff) {
        throw new RangeError(
          `init: teacherLayer ${spec.dir}: the student differs from the teacher with ${model.layers.length} ` +
            `layers (${diff})`,
        );
      }
      const tp = t.params as { embedding: unknown; normF: unknown; layers: unknown[] };
      const tc = t.consts as { layers: unknown[] };
      return {
        params: {
          embedding: tp.embedding,
          normF: tp.normF,
          layers: model.layers.map(() => tp.layers[spec.layer]),
        },
        consts: { layers: model.layers.map(() => tc.layers[spec.layer]) },
      };
    },
    label: (spec) => `teacher layer ${spec.layer}`,
  },
};

/** Checks the fields the weight-based inits share (no file is read: the folder is checked when it loads). */
function validateWeightsSpec(
  kind: string,
  spec: { dir: unknown; sha256: unknown; symbols: unknown },
  model: LMConfig,
): void {
  if (typeof spec.dir !== "string" || spec.dir === "") {
    throw new RangeError(`init: ${kind} dir must name a folder, got ${JSON.stringify(spec.dir)}`);
  }
  if (typeof spec.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(spec.sha256)) {
    throw new RangeError(`init: ${kind} sha256 must be 64 hex digits (checkpointDigest of the folder)`);
  }
  const symbols = spec.symbols;
  if (!Array.isArray(symbols) || symbols.some((s) => typeof s !== "string" || [...s].length !== 1)) {
    throw new RangeError(`init: ${kind} symbols must be a list of single characters`);
  }
  if (new Set(symbols).size !== symbols.length) {
    throw new RangeError(`init: ${kind} symbols repeat a character`);
  }
  if (symbols.length !== model.vocab) {
    throw new RangeError(`init: ${kind} has ${symbols.length} symbols for a model vocab of ${model.vocab}`);
  }
}

/** The first field where two model configs differ, as "path: a ≠ b"; null when they are equal. */
function configDifference(a: unknown, b: unknown, path = "model"): string | null {
  if (typeof a !== "object" || a === null || typeof b !== "object" || b === null) {
    return Object.is(a, b) ? null : `${path}: ${JSON.stringify(a)} ≠ ${JSON.stringify(b)}`;
  }
  if (Array.isArray(a) !== Array.isArray(b)) return `${path}: ${JSON.stringify(a)} ≠ ${JSON.stringify(b)}`;
  if (Array.isArray(a) && a.length !== (b as unknown[]).length) {
    return `${path}: ${a.length} entries ≠ ${(b as unknown[]).length}`;
  }
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  for (const k of keys) {
    const d = configDifference(
      (a as Record<string, unknown>)[k],
      (b as Record<string, unknown>)[k],
      Array.isArray(a) ? `${path}[${k}]` : `${path}.${k}`,
    );
    if (d) return d;
  }
  return null;
}

// The last checkpoint read (a group's runs share it; one at a time bounds host memory).
let lastRead: { key: string; model: Promise<PretrainedHost> } | null = null;

/** The checkpoint of a weight-based init on the host, after checking its content is what the spec names. */
function pretrainedHost(spec: { dir: string; sha256: string; symbols: string[] }): Promise<PretrainedHost> {
  const digest = checkpointDigest(spec.dir);
  if (digest !== spec.sha256) {
    throw new RangeError(
      `init: ${spec.dir} has changed since the run was planned (its content hash is ${
        digest.slice(0, 16)
      }…, ` +
        `the run's spec says ${spec.sha256.slice(0, 16)}…); plan the grid again`,
    );
  }
  const key = JSON.stringify([spec.dir, spec.sha256, spec.symbols]);
  if (lastRead?.key !== key) {
    const model = readPretrainedHost(spec.dir, { symbols: spec.symbols });
    lastRead = { key, model };
    model.catch(() => {
      if (lastRead?.model === model) lastRead = null;
    });
  }
  return lastRead.model;
}

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

/** The four mimetic components, by their field names in {@link MimeticInitSpec}. */
export const MIMETIC_COMPONENTS = ["A", "delta", "qk", "conv"] as const;
/** One mimetic component. */
export type MimeticComponent = (typeof MIMETIC_COMPONENTS)[number];

/**
 * The paper's choice of components for a mixer (section 3): Mamba 1 takes A ≈ 1, Δ ≈ 1 and W_Cᵀ W_B ≈ I; Mamba 2
 * also the identity conv (for Mamba 1 it was somewhat harmful in the paper's Fig. 3).
 */
export function paperComponents(mixer: "mamba1" | "mamba2"): MimeticComponent[] {
  return mixer === "mamba1" ? ["A", "delta", "qk"] : ["A", "delta", "qk", "conv"];
}

/**
 * A mimetic init spec from a list of components as a user gives them (a figure's flag): component names, or the
 * one word `paper` for {@link paperComponents} of `mixer`.
 * @throws {RangeError} when `paper` is listed with components, or a name is not a component (naming `flag`).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mimeticInit } from "./inits.ts";
 * const spec = mimeticInit(["paper"], "mamba1", { c: 8, layers: [3] });
 * assert.deepEqual([spec.A, spec.delta, spec.qk, spec.conv, spec.layers], [true, true, true, false, [3]]);
 * ```
 */
export function mimeticInit(
  components: readonly string[],
  mixer: "mamba1" | "mamba2",
  o: { c: number; convScope?: "xBC" | "x"; layers?: "all" | number[]; flag?: string },
): MimeticInitSpec {
  const flag = o.flag ?? "components";
  if (components.includes("paper") && components.length > 1) {
    throw new RangeError(`${flag}: "paper" stands for the paper's components; list either it or components`);
  }
  for (const c of components) {
    if (c !== "paper" && !(MIMETIC_COMPONENTS as readonly string[]).includes(c)) {
      throw new RangeError(
        `${flag}: expected paper or components from ${MIMETIC_COMPONENTS.join(", ")}, got "${c}"`,
      );
    }
  }
  const on = new Set<string>(components.includes("paper") ? paperComponents(mixer) : components);
  return {
    ...MIMETIC_ALL,
    c: o.c,
    A: on.has("A"),
    delta: on.has("delta"),
    qk: on.has("qk"),
    conv: on.has("conv"),
    convScope: o.convScope ?? "xBC",
    layers: o.layers ?? "all",
  };
}
