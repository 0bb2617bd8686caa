/**
 * Users import mimetic from a URL. This serves the checkout over HTTP on loopback with tools/serve.ts (the server
 * the README names), imports `mod.ts` from that URL
 * in a fresh Deno process (so kernels load over HTTP too), and runs a small computation there.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { noGpu } from "./harness.ts";
import { serveCheckout } from "../tools/serve.ts";

const root = fileURLToPath(new URL("..", import.meta.url));

Deno.test({
  name: "mod.ts imported over HTTP from loopback runs a computation with its kernels",
  ignore: noGpu,
  async fn() {
    const served: string[] = [];
    // The server the README tells users to run (tools/serve.ts), watched for what it serves.
    const inner = serveCheckout(root, "127.0.0.1", 0);
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
      served.push(decodeURIComponent(new URL(req.url).pathname));
      return fetch(`http://127.0.0.1:${inner.addr.port}${new URL(req.url).pathname}`);
    });
    try {
      const base = `http://127.0.0.1:${server.addr.port}`;
      const script = `
        const m = await import("${base}/mod.ts");
        await m.initGpu();
        const a = m.tensor([1, 2, 3, 4, 5, 6], [1, 2, 3]);
        const b = m.tensor([1, 0, 0, 1, 1, 1], [1, 3, 2]);
        const y = m.silu(m.matmul(a, b));
        console.log(JSON.stringify(Array.from(await y.toArray())));
      `;
      const dir = await Deno.makeTempDir();
      const file = join(dir, "client.ts");
      await Deno.writeTextFile(file, script);
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--no-lock", `--reload=${base}`, "--no-config", file],
        stdout: "piped",
        stderr: "piped",
        env: { DENO_NO_UPDATE_CHECK: "1" },
      }).output();
      const stdout = new TextDecoder().decode(out.stdout);
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, `client failed:\n${stderr}`);
      const got: number[] = JSON.parse(stdout.trim().split("\n").at(-1)!);
      // [[1,2,3],[4,5,6]] @ [[1,0],[0,1],[1,1]] = [[4,5],[10,11]], then silu
      const want = [4, 5, 10, 11].map((x) => x / (1 + Math.exp(-x)));
      got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-5, `${v} vs ${want[i]}`));
      assert.ok(
        served.includes("/mod.ts") && served.some((p) => p.endsWith(".wgsl")),
        "kernels were not fetched over HTTP",
      );
      await Deno.remove(dir, { recursive: true });
    } finally {
      await server.shutdown();
      await inner.shutdown();
    }
  },
});
