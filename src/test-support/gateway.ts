/**
 * A real gateway for tests: a temp home, a config file on disk, both listeners on free loopback
 * ports, real backend processes behind it.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { type App, buildApp } from "../main.js";

export interface TestGateway {
  app: App;
  home: string;
  configFile: string;
  /** Base URLs without a trailing slash, e.g. http://127.0.0.1:40123 */
  lmstudio: string;
  ollama: string;
  close(): Promise<void>;
}

export async function startGateway(config: Record<string, unknown> = {}): Promise<TestGateway> {
  const home = await mkdtemp(join(tmpdir(), "lr-gateway-"));
  const configFile = join(home, "config.json");
  // Tests send far more than 100 requests a minute from loopback; the limit tests switch this off.
  const proxies = (config["proxies"] ?? {}) as Record<string, { rate_limits?: Record<string, unknown> } | undefined>;
  const listener = (name: string) => ({
    port: 0,
    ...proxies[name],
    rate_limits: { exempt_loopback: true, ...proxies[name]?.rate_limits },
  });
  await writeFile(
    configFile,
    JSON.stringify({
      demo_model: false,
      models_dir: join(home, "models"),
      ...config,
      proxies: { ollama: listener("ollama"), lmstudio: listener("lmstudio") },
    }),
  );
  const app = await buildApp({ configFile, home, logger: pino({ level: process.env["TEST_LOG_LEVEL"] ?? "silent" }) });
  const bound = await app.listen();
  const url = (name: "lmstudio" | "ollama") => `http://127.0.0.1:${bound.get(name)?.port ?? 0}`;
  return {
    app,
    home,
    configFile,
    lmstudio: url("lmstudio"),
    ollama: url("ollama"),
    async close() {
      await app.close();
      await rm(home, { recursive: true, force: true });
    },
  };
}
