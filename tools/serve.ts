/**
 * Serves this checkout over HTTP so that analysis scripts elsewhere can `import ... from "http://HOST:PORT/mod.ts"`.
 * Deno takes a module's language from the server's Content-Type: `.ts` files must come as TypeScript
 * (`application/typescript`), which common static servers do not do (`python3 -m http.server` sends `.ts` as
 * `video/mp2t`, and Deno then refuses the module). Kernels (`.wgsl`) and the matmul tuning table load over the same
 * server.
 *
 *   deno run --allow-net --allow-read tools/serve.ts [--port 8765] [--hostname 127.0.0.1]
 * @module
 */
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { parseFlags, runMain } from "../lib/study/cli.ts";

const TYPES: Record<string, string> = {
  ".ts": "application/typescript; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".wgsl": "text/plain; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
};

/** Starts the server on `root`; returns it (`.addr.port`, `.shutdown()`). */
export function serveCheckout(
  root: string,
  hostname = "127.0.0.1",
  port = 8765,
): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname, port, onListen: () => {} }, async (req) => {
    const path = normalize(decodeURIComponent(new URL(req.url).pathname));
    if (path.split("/").includes("..")) return new Response("bad path", { status: 400 });
    try {
      const body = await Deno.readFile(join(root, path));
      const type = TYPES[extname(path)] ?? "application/octet-stream";
      return new Response(body, { headers: { "content-type": type } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
}

if (import.meta.main) {
  await runMain("serve", async () => {
    const f = parseFlags(Deno.args, {
      port: { type: "number", integer: true, min: 0, max: 65535, default: 8765, help: "port" },
      hostname: { type: "string", default: "127.0.0.1", help: "address to listen on" },
    });
    const root = fileURLToPath(new URL("..", import.meta.url));
    const server = serveCheckout(root, f.hostname, f.port);
    console.error(`serve: http://${f.hostname}:${server.addr.port}/mod.ts (Ctrl-C to stop)`);
    await server.finished;
  });
}
