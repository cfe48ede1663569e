/**
 * Faults of real backend processes, end to end: a real gateway (in-process, or the CLI as its own
 * process) runs `command` models that are the fake llama-server (test-support/fake-upstream.ts) with
 * scripted faults: slow or failed starts, crashes mid-stream, SIGTERM ignored, slow streams under a
 * swap, TTL, queue and memory limits, shutdown and SIGKILL of the gateway.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterEach, test } from "node:test";
import type { EventEnvelope, EventName } from "../events/bus.js";
import { type TestGateway, startGateway } from "../test-support/gateway.js";

const FAKE = fileURLToPath(new URL("../test-support/fake-upstream.js", import.meta.url));
const CLI = fileURLToPath(new URL("../cli/main.js", import.meta.url));
/** On every fake's command line, so leftovers of this run (and only those) can be found and killed. */
const RUN_TAG = `lr-faults-${process.pid}`;
const RUNNER = { load_timeout_s: 2, stop_grace_s: 0.5 };

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** A `command` model running the fake upstream with `flags`; `tag` lets the test find its processes. */
function fake(tag: string, flags = "", extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { command: `${quote(process.execPath)} ${quote(FAKE)} --port \${PORT} --log-line ${quote(`${RUN_TAG}:${tag}`)} ${flags}`, ...extra };
}

// ---- processes, from /proc -------------------------------------------------------------------

interface Proc {
  pid: number;
  ppid: number;
  pgid: number;
  state: string;
  argv: string[];
}

async function processes(): Promise<Proc[]> {
  const out: Proc[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const argv = (await readFile(`/proc/${name}/cmdline`, "utf8")).split("\0").filter((a) => a !== "");
      out.push({ pid: Number(name), state: fields[0] ?? "?", ppid: Number(fields[1]), pgid: Number(fields[2]), argv });
    } catch {
      // Gone while we looked.
    }
  }
  return out;
}

/** Live fake-upstream processes started with `--log-line RUN_TAG:tag` (all of this run when tag is omitted). */
async function fakePids(tag?: string): Promise<number[]> {
  const marker = tag === undefined ? RUN_TAG : `${RUN_TAG}:${tag}`;
  return (await processes())
    .filter((p) => p.state !== "Z" && p.argv[1] === FAKE && p.argv.some((a) => (tag === undefined ? a.startsWith(marker) : a === marker)))
    .map((p) => p.pid);
}

/** Every live process below `pid`: for a command backend, the sh watchdog and what it runs. */
async function descendantsOf(pid: number): Promise<Proc[]> {
  const all = (await processes()).filter((p) => p.state !== "Z");
  const found: Proc[] = [];
  const parents = new Set([pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) {
      if (parents.has(p.ppid) && !parents.has(p.pid)) {
        parents.add(p.pid);
        found.push(p);
        grew = true;
      }
    }
  }
  return found;
}

/** Alive and not a zombie (a dead process whose parent, perhaps init, has not reaped it yet). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

async function waitFor(condition: () => boolean | Promise<boolean>, ms: number, stepMs = 25): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await sleep(stepMs);
  }
  return condition();
}

// ---- gateways and requests ------------------------------------------------------------------

const gateways: TestGateway[] = [];
const cliChildren: ChildProcess[] = [];
const tempDirs: string[] = [];

afterEach(async () => {
  await Promise.all(gateways.splice(0).map((gw) => gw.close().catch(() => {})));
  for (const child of cliChildren.splice(0)) child.kill("SIGKILL");
  // Whatever a failed test left behind: every fake of this run, and its watchdog shell.
  for (const pid of await fakePids()) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  await Promise.all(tempDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function gateway(config: Record<string, unknown>): Promise<TestGateway> {
  const gw = await startGateway({ runner: RUNNER, ...config });
  gateways.push(gw);
  return gw;
}

interface Seen {
  event: EventName;
  model: string;
  reason?: string;
  error?: string;
  at: number;
}

function record(gw: TestGateway): Seen[] {
  const seen: Seen[] = [];
  gw.app.bus.subscribe("*", (e: EventEnvelope) => {
    const data = e.data as { model_id: string; reason?: string; error?: string };
    seen.push({ event: e.event, model: data.model_id, reason: data.reason, error: data.error, at: Date.now() });
  });
  return seen;
}

const count = (seen: Seen[], event: EventName, model: string) => seen.filter((s) => s.event === event && s.model === model).length;

function chat(base: string, model: string, extra: Record<string, unknown> = {}): Promise<Response> {
  return fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], ...extra }),
    signal: AbortSignal.timeout(15_000),
  });
}

interface OpenAIErrorBody {
  error: { message: string; type: string; code: string; param?: unknown };
}

async function errorBody(res: Response): Promise<OpenAIErrorBody["error"]> {
  const text = await res.text();
  let body: OpenAIErrorBody;
  try {
    body = JSON.parse(text) as OpenAIErrorBody;
  } catch {
    assert.fail(`expected a JSON error body, got: ${text}`);
  }
  assert.equal(typeof body.error?.message, "string", text);
  assert.equal(typeof body.error?.type, "string", text);
  assert.equal(typeof body.error?.code, "string", text);
  return body.error;
}

/** The `data:` payloads of an SSE body. */
const sseData = (text: string) =>
  text
    .split("\n\n")
    .map((block) => block.trim())
    .filter((block) => block.startsWith("data: "))
    .map((block) => block.slice("data: ".length));

const contentOf = (data: string[]) =>
  data
    .filter((d) => d !== "[DONE]")
    .map((d) => JSON.parse(d) as { choices?: Array<{ delta?: { content?: string } }> })
    .map((c) => c.choices?.[0]?.delta?.content ?? "")
    .filter((c) => c !== "");

// ---- tests ------------------------------------------------------------------------------------

test("slow start: concurrent first requests wait for ONE process and all succeed", { timeout: 20_000 }, async () => {
  const gw = await gateway({ models: { m: fake("slow", "--start-delay-ms 800") } });
  const seen = record(gw);
  const began = Date.now();
  const responses = await Promise.all(Array.from({ length: 6 }, () => chat(gw.lmstudio, "m")));
  for (const res of responses) {
    const text = await res.text();
    assert.equal(res.status, 200, text);
    assert.equal((JSON.parse(text) as { object: string }).object, "chat.completion");
  }
  assert.ok(Date.now() - began >= 700, "the requests waited for the backend to become healthy");
  assert.equal(count(seen, "model.loading", "m"), 1, "single flight: one load for six concurrent requests");
  assert.equal(count(seen, "model.started", "m"), 1);
  assert.equal((await fakePids("slow")).length, 1, "exactly one backend process");
  const status = gw.app.lifecycle.status("m");
  assert.equal(status.state, "ready");
  assert.equal(status.inFlight, 0);
});

test("never healthy: 503 within about the load timeout, with the backend's log lines; no process left", { timeout: 20_000 }, async () => {
  const gw = await gateway({ models: { m: fake("never", "--never-healthy --log-line NEVER-HEALTHY-MARKER") } });
  const seen = record(gw);
  const began = Date.now();
  const res = await chat(gw.lmstudio, "m");
  const elapsed = Date.now() - began;
  assert.equal(res.status, 503);
  const error = await errorBody(res);
  assert.equal(error.code, "service_unavailable");
  assert.ok(elapsed >= 1900 && elapsed < 4500, `failed after ${elapsed} ms; the load timeout is 2 s`);
  assert.match(error.message, /NEVER-HEALTHY-MARKER/, "the error carries the backend's last log lines");
  const status = gw.app.lifecycle.status("m");
  assert.equal(status.state, "error");
  assert.match(status.error ?? "", /NEVER-HEALTHY-MARKER/);
  assert.equal(count(seen, "model.error", "m"), 1);
  assert.ok(await waitFor(async () => (await fakePids("never")).length === 0, 1000), "the backend process is gone");
  assert.match(
    error.message,
    /did not answer \/health with 200 within 2 s/,
    `a load timeout is reported as an unexpected exit of the backend the supervisor itself stopped; message was: ${error.message}`,
  );
});

test("exits on start: 503 at once, saying it exited, with its log line", { timeout: 20_000 }, async () => {
  const gw = await gateway({ models: { m: fake("exit", "--exit-on-start 3 --log-line EXIT-ON-START-MARKER") } });
  const began = Date.now();
  const res = await chat(gw.lmstudio, "m");
  const elapsed = Date.now() - began;
  assert.equal(res.status, 503);
  const error = await errorBody(res);
  assert.equal(error.code, "service_unavailable");
  assert.ok(elapsed < 1500, `an exit is noticed at once, not after the load timeout (took ${elapsed} ms)`);
  assert.match(error.message, /exit/);
  assert.match(error.message, /EXIT-ON-START-MARKER/);
  assert.equal(gw.app.lifecycle.status("m").state, "error");
  assert.deepEqual(await fakePids("exit"), []);
});

test("crash mid-stream: the client gets the first chunks, then an SSE error, and the stream ends; the next request gets a new process", { timeout: 20_000 }, async () => {
  const gw = await gateway({ models: { m: fake("crash", "--chunks 10 --chunk-delay-ms 150 --crash-after-chunks 3") } });
  const seen = record(gw);
  const res = await chat(gw.lmstudio, "m", { stream: true });
  assert.equal(res.status, 200);
  const firstPid = gw.app.lifecycle.status("m").pid;
  const [firstFake] = await fakePids("crash");
  assert.ok(firstPid !== undefined && firstFake !== undefined);
  const text = await res.text(); // a hang fails the test by its timeout; a reset throws here
  const data = sseData(text);
  assert.deepEqual(contentOf(data.slice(0, -1)), ["tok1 ", "tok2 ", "tok3 "], text);
  const last = JSON.parse(data.at(-1) ?? "{}") as Partial<OpenAIErrorBody>;
  assert.equal(typeof last.error?.message, "string", `the stream ends with an error event: ${text}`);
  assert.ok(!text.includes("[DONE]"));

  // Waits for the crash to be noticed first: a request sent in the few ms before that is granted to the
  // dead backend and gets a 502 (ECONNREFUSED), a known race reported separately, not asserted here.
  assert.ok(await waitFor(() => count(seen, "model.error", "m") === 1, 3000), "model.error published");
  assert.deepEqual(
    seen.filter((s) => s.event === "model.stopped").map((s) => [s.model, s.reason]),
    [["m", "crashed"]],
  );
  assert.equal(gw.app.lifecycle.status("m").state, "error");

  const next = await chat(gw.lmstudio, "m");
  assert.equal(next.status, 200, await next.clone().text());
  assert.equal(count(seen, "model.loading", "m"), 2);
  const status = gw.app.lifecycle.status("m");
  assert.equal(status.state, "ready");
  assert.notEqual(status.pid, firstPid, "a new process");
  assert.deepEqual((await fakePids("crash")).filter((pid) => pid === firstFake), [], "the crashed one is gone");
});

test("crash before a non-stream response: an OpenAI-format 502/503 error, never a hang or a reset", { timeout: 20_000 }, async () => {
  const gw = await gateway({ models: { m: fake("early", "--crash-before-response") } });
  const seen = record(gw);
  for (const path of ["/v1/chat/completions", "/v1/completions"]) {
    const res = await fetch(`${gw.lmstudio}${path}`, {
      method: "POST",
      body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }], prompt: "hi" }),
      signal: AbortSignal.timeout(10_000),
    });
    assert.ok(res.status === 502 || res.status === 503, `${path}: status ${res.status}`);
    assert.match(res.headers.get("content-type") ?? "", /application\/json/);
    const error = await errorBody(res);
    assert.ok(["upstream_error", "service_unavailable"].includes(error.code), error.code);
    // Let the gateway notice the exit before the second round, which then loads a new process.
    assert.ok(await waitFor(() => gw.app.lifecycle.status("m").state === "error", 3000));
  }
  // Each request reaches a backend that dies before answering, so it is retried once on a fresh
  // instance (which dies too): two loads per request, and no more.
  assert.equal(count(seen, "model.loading", "m"), 4);
});

test("SIGTERM ignored: a swap SIGKILLs the backend after the grace period and completes; so does a stop", { timeout: 20_000 }, async () => {
  const gw = await gateway({
    concurrentRunners: 1,
    models: { a: fake("stubborn-a", "--ignore-sigterm"), b: fake("stubborn-b", "--ignore-sigterm") },
  });
  const seen = record(gw);
  assert.equal((await chat(gw.lmstudio, "a")).status, 200);
  const [fakeA] = await fakePids("stubborn-a");
  assert.ok(fakeA !== undefined);

  let began = Date.now();
  const res = await chat(gw.lmstudio, "b");
  let elapsed = Date.now() - began;
  assert.equal(res.status, 200, await res.clone().text());
  assert.ok(elapsed >= 450 && elapsed < 3000, `swap took ${elapsed} ms (grace 500 ms)`);
  assert.ok(!alive(fakeA), "a was killed");
  assert.deepEqual(seen.filter((s) => s.event === "model.stopped").map((s) => [s.model, s.reason]), [["a", "evicted"]]);
  assert.equal(gw.app.lifecycle.status("a").state, "unloaded");

  const [fakeB] = await fakePids("stubborn-b");
  assert.ok(fakeB !== undefined);
  began = Date.now();
  gw.app.lifecycle.stop("b");
  assert.ok(await waitFor(() => count(seen, "model.stopped", "b") === 1, 3000), "b stopped");
  elapsed = Date.now() - began;
  assert.ok(elapsed >= 450, `stop took ${elapsed} ms: not before the grace period`);
  assert.ok(await waitFor(() => !alive(fakeB), 500), "b was killed");
  assert.equal(gw.app.lifecycle.status("b").state, "unloaded");
});

test("a slow stream is never cut by a swap: A finishes, then A stops, then B is served", { timeout: 20_000 }, async () => {
  const gw = await gateway({ concurrentRunners: 1, models: { a: fake("swap-a", "--chunks 15 --chunk-delay-ms 100"), b: fake("swap-b") } });
  const seen = record(gw);
  const res = await chat(gw.lmstudio, "a", { stream: true });
  assert.equal(res.status, 200);
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = "";
  let lastContentAt = 0;
  let b: Promise<{ status: number; at: number }> | undefined;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
    if (text.includes("tok")) {
      if (lastContentAt === 0 && text.includes("tok15 ")) lastContentAt = Date.now();
      // B arrives while A is answering.
      b ??= chat(gw.lmstudio, "b").then(async (r) => ({ status: r.status, at: (await r.text(), Date.now()) }));
    }
  }
  const aDoneAt = Date.now();
  const data = sseData(text);
  assert.deepEqual(contentOf(data), Array.from({ length: 15 }, (_, i) => `tok${i + 1} `), "every chunk of A arrived");
  assert.equal(data.at(-1), "[DONE]", "A's stream ended normally");
  assert.ok(!text.includes('"error"'), text);

  assert.ok(b);
  const bResult = await b;
  assert.equal(bResult.status, 200);
  assert.ok(bResult.at >= aDoneAt, "B was answered after A finished");
  const stoppedA = seen.find((s) => s.event === "model.stopped" && s.model === "a");
  const loadingB = seen.find((s) => s.event === "model.loading" && s.model === "b");
  assert.equal(stoppedA?.reason, "evicted");
  assert.ok(stoppedA && stoppedA.at >= lastContentAt, "A was stopped only after its last chunk");
  assert.ok(loadingB && loadingB.at >= stoppedA.at, "B loaded only once A was gone (one runner)");
});

test("TTL: an idle model unloads about 1-2 s after its last request and reloads on demand", { timeout: 20_000 }, async () => {
  const gw = await gateway({ models: { m: fake("ttl", "", { ttl: 1 }) } });
  const seen = record(gw);
  const res = await chat(gw.lmstudio, "m");
  assert.equal(res.status, 200);
  await res.text();
  const lastUsed = Date.now();
  assert.ok(gw.app.lifecycle.status("m").expiresAt !== undefined);
  assert.ok(await waitFor(() => gw.app.lifecycle.status("m").state === "unloaded", 4000, 50), "unloaded by TTL");
  const after = Date.now() - lastUsed;
  assert.ok(after >= 900 && after <= 2700, `unloaded ${after} ms after the last request (ttl 1 s, 1 s ticks)`);
  assert.deepEqual(seen.filter((s) => s.event === "model.stopped").map((s) => s.reason), ["ttl"]);
  assert.deepEqual(await fakePids("ttl"), []);
  const again = await chat(gw.lmstudio, "m");
  assert.equal(again.status, 200);
  assert.equal(count(seen, "model.loading", "m"), 2);
});

test("queue bound: beyond max_queue waiting requests get 503 with Retry-After", { timeout: 20_000 }, async () => {
  const gw = await gateway({ max_queue: 2, models: { m: fake("queue", "--start-delay-ms 1000") } });
  const responses = await Promise.all(Array.from({ length: 5 }, () => chat(gw.lmstudio, "m")));
  const ok = responses.filter((r) => r.status === 200);
  const refused = responses.filter((r) => r.status === 503);
  assert.equal(ok.length, 2, `statuses: ${responses.map((r) => r.status).join(",")}`);
  assert.equal(refused.length, 3);
  for (const res of refused) {
    assert.match(res.headers.get("retry-after") ?? "", /^\d+$/, "Retry-After header");
    const error = await errorBody(res);
    assert.equal(error.code, "service_unavailable");
    assert.match(error.message, /queue/i);
  }
});

test("queue ahead: a backend gets its slots plus queue_ahead requests at once; the rest wait in the gateway", { timeout: 20_000 }, async () => {
  const slow = "--chunks 10 --chunk-delay-ms 100";
  const gw = await gateway({
    models: {
      // A command backend's default is 0: it may refuse work beyond its slots.
      plain: fake("ahead-plain", slow, { parameters: { parallel: 1 } }),
      ahead: fake("ahead-2", slow, { parameters: { parallel: 1 }, queue_ahead: 2 }),
    },
  });
  const { lifecycle } = gw.app;
  for (const model of ["plain", "ahead"]) {
    const responses = Array.from({ length: 4 }, () => chat(gw.lmstudio, model, { stream: true }));
    const admitted = model === "plain" ? 1 : 3;
    assert.ok(
      await waitFor(() => lifecycle.status(model).inFlight === admitted && (lifecycle.queueDepth().get(model) ?? 0) === 4 - admitted, 5000),
      `${model}: in flight ${lifecycle.status(model).inFlight}, waiting ${lifecycle.queueDepth().get(model) ?? 0}`,
    );
    for (const res of await Promise.all(responses)) {
      assert.equal(res.status, 200);
      assert.match(await res.text(), /\[DONE\]/);
    }
    assert.equal(lifecycle.status(model).inFlight, 0);
  }
});

test("memory budget: a model larger than the whole budget is refused with 400 naming budget and estimate", { timeout: 20_000 }, async () => {
  const gw = await gateway({ memory_budget: "100MiB", models: { m: fake("memory", "", { memory: "1GiB" }) } });
  const seen = record(gw);
  const res = await chat(gw.lmstudio, "m");
  assert.equal(res.status, 400);
  const error = await errorBody(res);
  assert.equal(error.code, "invalid_request");
  assert.match(error.message, /memory budget of 100 MiB/);
  assert.match(error.message, /1024 MiB/);
  assert.equal(count(seen, "model.loading", "m"), 0, "nothing was started");
});

test("gateway close kills a backend that ignores SIGTERM", { timeout: 20_000 }, async () => {
  const gw = await gateway({ models: { m: fake("close", "--ignore-sigterm") } });
  assert.equal((await chat(gw.lmstudio, "m")).status, 200);
  const leader = gw.app.lifecycle.status("m").pid;
  const [fakePid] = await fakePids("close");
  assert.ok(leader !== undefined && fakePid !== undefined);
  // The backend runs in the process group the gateway spawned (today under the sh watchdog, its leader).
  const group = (await processes()).filter((p) => p.pgid === leader && p.state !== "Z").map((p) => p.pid);
  assert.ok(group.includes(fakePid), "the backend is in the group the gateway started");
  gateways.splice(gateways.indexOf(gw), 1);
  const began = Date.now();
  await gw.close();
  assert.ok(Date.now() - began < 3000, "close does not hang");
  // SIGKILL has been sent when close() returns; allow the kernel a moment to tear the processes down.
  assert.ok(await waitFor(() => !alive(fakePid), 300), `backend ${fakePid} is gone after close()`);
  assert.deepEqual(group.filter(alive), [], "nothing of the backend's process group is left");
});

test("stop_command: ${PID} is the backend's pid, and the command stops it", { timeout: 20_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), "lr-faults-stop-"));
  tempDirs.push(dir);
  const pidFile = join(dir, "pid");
  const gw = await gateway({ models: { m: fake("stop-cmd", "", { stop_command: `echo \${PID} > ${quote(pidFile)}; kill -TERM \${PID}` }) } });
  const seen = record(gw);
  assert.equal((await chat(gw.lmstudio, "m")).status, 200);
  const [backend] = await fakePids("stop-cmd");
  const watchdog = gw.app.lifecycle.status("m").pid;
  assert.ok(backend !== undefined && watchdog !== undefined);
  gw.app.lifecycle.stop("m");
  assert.ok(await waitFor(() => count(seen, "model.stopped", "m") === 1, 3000), "stopped");
  assert.ok(await waitFor(() => !alive(backend), 500), "the backend is gone");
  const given = Number((await readFile(pidFile, "utf8")).trim());
  assert.equal(
    given,
    backend,
    `stop_command got \${PID}=${given}, the pid of the sh watchdog (${watchdog}), not of the backend (${backend}); ` +
      "a stop_command that sends any signal but TERM/INT to it kills the watchdog, and the backend is then SIGKILLed with its group",
  );
});

test("closing the lifecycle right after a load began leaves no process behind", { timeout: 20_000 }, async () => {
  const gw = await gateway({ models: { m: fake("close-loading") } });
  const entry = gw.app.catalog.resolve("m");
  assert.ok(entry);
  const load = gw.app.lifecycle.start(entry).then(
    () => "loaded",
    (e: unknown) => (e as Error).message,
  );
  await gw.app.lifecycle.close();
  const outcome = await Promise.race([load, sleep(2500).then(() => "pending")]);
  // Give a late spawn time to show up (a shell first, then node after its exec).
  await sleep(1000);
  const left = await fakePids("close-loading");
  assert.deepEqual(
    left,
    [],
    `Lifecycle.close() during a load's freePort() step returns, then the backend is spawned anyway and outlives close() (load outcome: ${outcome})`,
  );
});

test("a SIGKILLed gateway leaves no command backend behind: the sh watchdog stops it", { timeout: 30_000 }, async () => {
  const home = await mkdtemp(join(tmpdir(), "lr-faults-cli-"));
  tempDirs.push(home);
  const configFile = join(home, "config.json");
  await writeFile(
    configFile,
    JSON.stringify({
      demo_model: false,
      models_dir: join(home, "models"),
      concurrentRunners: 2,
      runner: RUNNER,
      proxies: { ollama: { port: 0 }, lmstudio: { port: 0 } },
      models: { polite: fake("orphan-polite"), stubborn: fake("orphan-stubborn", "--ignore-sigterm") },
    }),
  );
  const child = spawn(process.execPath, [CLI, "serve", "--config", configFile], {
    env: { ...process.env, LLAMA_RUNNER_HOME: home, LLAMA_RUNNER_LOG_LEVEL: "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  cliChildren.push(child);
  let out = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => (out += d));
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
      const match = /lmstudio listener on http:\/\/[\d.]+:(\d+)/.exec(out);
      if (match) resolve(Number(match[1]));
    });
    child.once("exit", (code) => reject(new Error(`serve exited with ${code}: ${out}`)));
  });
  const base = `http://127.0.0.1:${port}`;
  for (const model of ["polite", "stubborn"]) assert.equal((await chat(base, model)).status, 200, out);

  // Today: gateway → sh watchdog → fake. Found as descendants, so the test holds whatever the nesting.
  const below = await descendantsOf(child.pid ?? -1);
  const find = (tag: string) => below.find((p) => p.argv[1] === FAKE && p.argv.includes(`${RUN_TAG}:${tag}`))?.pid;
  const polite = find("orphan-polite");
  const stubborn = find("orphan-stubborn");
  assert.ok(polite !== undefined && stubborn !== undefined, `both backends run below the gateway: ${JSON.stringify(below.map((p) => p.argv.slice(0, 2)))}`);

  const killedAt = Date.now();
  child.kill("SIGKILL");
  assert.ok(await waitFor(() => !alive(polite), 2000, 50), "a backend that honours SIGTERM goes at once");
  assert.ok(await waitFor(() => !alive(stubborn), 7000, 50), `a backend that ignores SIGTERM is SIGKILLed by the watchdog (waited ${Date.now() - killedAt} ms)`);
  const left = () => below.filter((p) => alive(p.pid));
  assert.ok(await waitFor(() => left().length === 0, 7500 - (Date.now() - killedAt), 50), `nothing the gateway started is left: ${JSON.stringify(left())}`);
});

/** The CPU policy of every thread of `pid` (field 41 of /proc/PID/task/TID/stat: 0 SCHED_OTHER, 3 SCHED_BATCH). */
async function policies(pid: number): Promise<number[]> {
  const tids = await readdir(`/proc/${pid}/task`);
  return Promise.all(tids.map(async (tid) => {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[38]);
  }));
}

const hasChrt = process.platform === "linux" && ["/usr/bin/chrt", "/bin/chrt"].some((path) => existsSync(path));

test("backends run under SCHED_BATCH by default, under the normal policy with runner.scheduling: normal", { timeout: 20_000, skip: !hasChrt && "no chrt here" }, async () => {
  for (const [scheduling, policy] of [["batch", 3], ["normal", 0]] as const) {
    const gw = await gateway({ runner: { ...RUNNER, scheduling }, models: { m: fake(`sched-${scheduling}`) } });
    const res = await chat(gw.lmstudio, "m");
    assert.equal(res.status, 200, await res.clone().text());
    const pid = gw.app.lifecycle.status("m").pid;
    assert.ok(pid !== undefined);
    const seen = await policies(pid);
    assert.ok(seen.length > 0 && seen.every((p) => p === policy), `${scheduling}: every thread's policy is ${policy}: ${seen.join(",")}`);
  }
});
