/**
 * nginx as the reference "proxy that costs nothing", configured exactly as the Method says: one
 * worker, an upstream block with keepalive, HTTP/1.1 upstream with an empty Connection header, no
 * buffering, and keepalive_requests high on both sides so the load generator never reconnects.
 */
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Child, childPids, freePort, sleep, startChild, waitHttpOk } from "./util.js";

export function nginxConfig({ prefix, port, upstreamPort }: { prefix: string; port: number; upstreamPort: number }): string {
  return `# written by the LlamaRunner bench (src/bench/nginx.ts)
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  upstream backend {
    server 127.0.0.1:${upstreamPort};
    keepalive 256;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
  }
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 16m;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 600s;
    }
  }
}
`;
}

export interface RunningProxy {
  name: string;
  url: string;
  /** Every process whose CPU counts as the proxy's (nginx: master and worker). */
  pids(): number[];
  /** The process whose RSS is reported. */
  mainPid: number;
  child: Child;
  stop(): Promise<void>;
}

export async function startNginx({ binary, dir, upstreamPort, cpus }: { binary: string; dir: string; upstreamPort: number; cpus: string | undefined }): Promise<RunningProxy> {
  const prefix = join(dir, `nginx-${upstreamPort}`);
  for (const sub of ["", "body", "proxy"]) {
    mkdirSync(join(prefix, sub), { recursive: true });
    // The worker runs as nobody when the master is root.
    chmodSync(join(prefix, sub), 0o777);
  }
  const port = await freePort();
  const conf = join(prefix, "nginx.conf");
  writeFileSync(conf, nginxConfig({ prefix, port, upstreamPort }));
  const child = startChild("nginx", binary, ["-p", prefix, "-e", join(prefix, "error.log"), "-c", conf, "-g", "daemon off;"], { cpus });
  const url = `http://127.0.0.1:${port}`;
  await waitHttpOk(`${url}/health`, { child, timeoutMs: 15_000 });
  // The worker is forked after the master starts; wait until it shows up.
  for (let i = 0; i < 50 && childPids(child.pid).length === 0; i++) await sleep(20);
  return {
    name: "nginx",
    url,
    mainPid: child.pid,
    pids: () => [child.pid, ...childPids(child.pid)],
    child,
    stop: () => child.stop(),
  };
}
