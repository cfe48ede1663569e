#!/usr/bin/env node
// Builds llama.cpp's `llama-server` (CPU only, no network) from the llama.cpp source that ships inside
// node-llama-cpp's npm package (node_modules/node-llama-cpp/llama/gitRelease.bundle) and caches it outside
// the repository, keyed by the node-llama-cpp version and the llama.cpp release it bundles:
//
//   ${LLAMA_RUNNER_CACHE:-${XDG_CACHE_HOME:-~/.cache}/llama-runner}/llama-server/<key>/llama-server
//
// Idempotent: when the cached binary exists and `--version` exits 0 it prints the path and exits at once.
// Otherwise it clones the bundle into a temporary folder, configures with CMake, builds only the
// `llama-server` target (about 9 minutes on 2 cores), installs the binary with a rename, removes the
// temporary folders and prints the path. Concurrent runs wait on a lock file; the final rename means a
// reader never sees a half-written binary.
//
// Usage: node scripts/build-llama-server.mjs [--if-missing | --print-path | --expected-path | --force]
//   --if-missing     (default) build unless a working binary is cached; print its path
//   --print-path     print the cached path if a working binary is there, else exit 1; never builds
//   --expected-path  print where the binary lives (or would live) and exit 0; never builds
//   --force          rebuild even if a working binary is cached
// Progress goes to stderr; stdout carries only the path.
// Environment: LLAMA_RUNNER_CACHE (cache root), XDG_CACHE_HOME, LLAMA_SERVER_BUILD_JOBS (parallel jobs,
// default: available cores), LLAMA_SERVER_NATIVE=1|0 (force -DGGML_NATIVE), LLAMA_SERVER_KEEP_BUILD=1
// (keep the temporary source/build folder for debugging).
//
// The path logic is mirrored in src/runner/llama-server-binary.ts; its test checks that both agree.

import { spawn, spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { randomBytes } from "node:crypto";
import os from "node:os";
import path from "node:path";
import fs from "node:fs";
import { fileURLToPath } from "node:url";

const TAG = "[build-llama-server]";
const LOCK_POLL_MS = 2000;
const LOCK_WAIT_MS = 90 * 60 * 1000;
const FOREIGN_LOCK_STALE_MS = 3 * 60 * 60 * 1000;

function log(message) {
  process.stderr.write(`${TAG} ${message}\n`);
}

class BuildError extends Error {}

// ---------------------------------------------------------------- paths and cache key (mirrored in TS)

function expandHome(p) {
  if (p === "~") return os.homedir();
  if (p.startsWith("~/")) return path.join(os.homedir(), p.slice(2));
  return p;
}

export function cacheRoot(env = process.env) {
  if (env.LLAMA_RUNNER_CACHE) return path.resolve(expandHome(env.LLAMA_RUNNER_CACHE));
  // XDG: a relative XDG_CACHE_HOME is invalid and must be ignored.
  const xdg = env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : path.join(os.homedir(), ".cache");
  return path.join(xdg, "llama-runner");
}

function findNodeLlamaCppDir() {
  const require = createRequire(import.meta.url);
  let entry;
  try {
    entry = require.resolve("node-llama-cpp");
  } catch {
    throw new BuildError("node-llama-cpp is not installed (run `npm ci` first): its package carries the llama.cpp source");
  }
  for (let dir = path.dirname(entry); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const pkg = path.join(dir, "package.json");
    if (fs.existsSync(pkg) && JSON.parse(fs.readFileSync(pkg, "utf8")).name === "node-llama-cpp") return dir;
  }
  throw new BuildError(`cannot find node-llama-cpp's package folder above ${entry}`);
}

function readJson(file) {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"));
  } catch {
    return undefined;
  }
}

/** The commit a git bundle's HEAD points to, read from the bundle's text header (no git needed). */
function bundleHead(bundle) {
  const fd = fs.openSync(bundle, "r");
  try {
    const buf = Buffer.alloc(4096);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    const lines = buf.subarray(0, n).toString("latin1").split("\n");
    if (!/^# v[23] git bundle$/.test(lines[0] ?? "")) return undefined;
    const refs = lines.slice(1).map((l) => /^([0-9a-f]{40,64}) (\S+)$/.exec(l)).filter(Boolean);
    return (refs.find((m) => m[2] === "HEAD") ?? refs[0])?.[1];
  } finally {
    fs.closeSync(fd);
  }
}

function safe(s) {
  return String(s).replace(/[^A-Za-z0-9._-]/g, "_");
}

export function llamaServerInfo(env = process.env) {
  const nlcDir = findNodeLlamaCppDir();
  const nlcVersion = JSON.parse(fs.readFileSync(path.join(nlcDir, "package.json"), "utf8")).version;
  const llamaDir = path.join(nlcDir, "llama");
  const bundle = path.join(llamaDir, "gitRelease.bundle");
  const release =
    readJson(path.join(llamaDir, "binariesGithubRelease.json"))?.release ?? readJson(path.join(llamaDir, "llama.cpp.info.json"))?.tag ?? "unknown";
  const commit = fs.existsSync(bundle) ? bundleHead(bundle) : undefined;
  const key = [`nlc-${safe(nlcVersion)}`, `llama-${safe(release)}${commit ? `-${commit.slice(0, 10)}` : ""}`, `${process.platform}-${process.arch}`].join("_");
  const dir = path.join(cacheRoot(env), "llama-server", key);
  const exe = process.platform === "win32" ? "llama-server.exe" : "llama-server";
  return { nlcDir, nlcVersion, release, commit, bundle, key, dir, binary: path.join(dir, exe) };
}

// ---------------------------------------------------------------- helpers

/** A working binary: present, executable, and `--version` exits 0 within 15 s. */
function binaryWorks(binary) {
  try {
    fs.accessSync(binary, fs.constants.X_OK);
  } catch {
    return false;
  }
  const r = spawnSync(binary, ["--version"], { stdio: "ignore", timeout: 15_000 });
  return r.status === 0;
}

function haveTool(cmd, args = ["--version"]) {
  const r = spawnSync(cmd, args, { stdio: "ignore" });
  return r.status === 0;
}

let currentChild;

function run(cmd, args, options = {}) {
  return new Promise((resolve, reject) => {
    log(`$ ${[cmd, ...args].join(" ")}`);
    // The child's stdout goes to our stderr: our stdout carries only the resulting path.
    // Own process group, so that an interrupt reaches cmake's ninja/make and the compilers below it.
    const child = spawn(cmd, args, { stdio: ["ignore", 2, 2], detached: true, ...options });
    currentChild = child;
    child.on("error", (err) => {
      currentChild = undefined;
      reject(new BuildError(`${cmd} could not start: ${err.message}`));
    });
    child.on("exit", (code, signal) => {
      currentChild = undefined;
      if (code === 0) resolve();
      else reject(new BuildError(`${cmd} ${args[0] ?? ""} failed (${signal ? `signal ${signal}` : `exit code ${code}`})`));
    });
  });
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function rmrf(p) {
  try {
    fs.rmSync(p, { recursive: true, force: true });
  } catch (err) {
    log(`warning: could not remove ${p}: ${err.message}`);
  }
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === "EPERM";
  }
}

// ---------------------------------------------------------------- lock

/**
 * An exclusive lock file (O_EXCL create) holding {pid, host, startedAt}. A lock whose process is gone
 * (same host) or that is very old (other host, shared cache) is stale and is taken over.
 */
async function acquireLock(lockFile) {
  const me = JSON.stringify({ pid: process.pid, host: os.hostname(), startedAt: Date.now() });
  const deadline = Date.now() + LOCK_WAIT_MS;
  let announced = false;
  for (;;) {
    try {
      fs.writeFileSync(lockFile, me, { flag: "wx" });
      return () => {
        try {
          if (fs.readFileSync(lockFile, "utf8") === me) fs.unlinkSync(lockFile);
        } catch {}
      };
    } catch (err) {
      if (err.code !== "EEXIST") throw new BuildError(`cannot create lock ${lockFile}: ${err.message}`);
    }
    let raw = "";
    let holder;
    try {
      raw = fs.readFileSync(lockFile, "utf8");
      holder = JSON.parse(raw);
    } catch {
      holder = undefined; // being written right now, or garbage
    }
    const stale = holder
      ? holder.host === os.hostname()
        ? !pidAlive(holder.pid)
        : Date.now() - holder.startedAt > FOREIGN_LOCK_STALE_MS
      : safeMtimeAge(lockFile) > 60_000;
    if (stale) {
      log(`removing stale lock ${lockFile}${holder ? ` (pid ${holder.pid} on ${holder.host})` : ""}`);
      try {
        // Only remove the lock we judged stale, not one a competitor created meanwhile.
        if (fs.readFileSync(lockFile, "utf8") === raw) fs.unlinkSync(lockFile);
      } catch {}
      continue;
    }
    if (Date.now() > deadline) throw new BuildError(`gave up waiting for the lock ${lockFile} (held by ${raw})`);
    if (!announced) {
      log(`another build is running (pid ${holder?.pid ?? "?"}${holder?.host ? ` on ${holder.host}` : ""}); waiting for it`);
      announced = true;
    }
    await sleep(LOCK_POLL_MS);
  }
}

function safeMtimeAge(file) {
  try {
    return Date.now() - fs.statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------- build

/**
 * GGML_NATIVE=OFF on x86-64 machines with AVX2/FMA/F16C: ggml then compiles for exactly that set
 * (x86-64-v3 without AVX-512), which is what `-march=native` picks on our AMD EPYC CI machines anyway,
 * and the binary stays correct if a cache folder moves to another AVX2 machine. Elsewhere (older x86,
 * ARM, where the portable baseline would lose dot-product/SIMD kernels) use GGML_NATIVE=ON; the cache
 * is per machine. LLAMA_SERVER_NATIVE=1|0 overrides.
 */
function chooseNative(env) {
  if (env.LLAMA_SERVER_NATIVE === "1" || env.LLAMA_SERVER_NATIVE === "0") return env.LLAMA_SERVER_NATIVE === "1";
  if (process.arch === "x64" && process.platform === "linux") {
    try {
      const flags = /^flags\s*:\s*(.*)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.split(/\s+/) ?? [];
      return !["avx2", "fma", "f16c"].every((f) => flags.includes(f));
    } catch {
      return true;
    }
  }
  return true;
}

function cmakeArgs(env) {
  return [
    "-DCMAKE_BUILD_TYPE=Release",
    // Static llama/ggml libraries: one self-contained file to cache.
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    // Without these two the configure step downloads the web UI.
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    // HTTPS is for downloading models, which we never do; also drops the libssl dependency.
    "-DLLAMA_OPENSSL=OFF",
    `-DGGML_NATIVE=${chooseNative(env) ? "ON" : "OFF"}`,
    "-DGGML_CCACHE=OFF",
  ];
}

async function build(info, env) {
  for (const [tool, args] of [["git", ["--version"]], ["cmake", ["--version"]]]) {
    if (!haveTool(tool, args)) throw new BuildError(`${tool} is required to build llama-server (install git, cmake and a C++ compiler, e.g. apt-get install git cmake g++)`);
  }
  if (!haveTool(env.CXX || "c++") && !haveTool("g++") && !haveTool("clang++")) {
    throw new BuildError("a C++ compiler is required to build llama-server (e.g. apt-get install g++)");
  }
  if (!fs.existsSync(info.bundle)) throw new BuildError(`llama.cpp source bundle not found: ${info.bundle}`);

  const jobs = Number(env.LLAMA_SERVER_BUILD_JOBS) > 0 ? Number(env.LLAMA_SERVER_BUILD_JOBS) : os.availableParallelism();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "llama-server-build-"));
  cleanups.add(() => env.LLAMA_SERVER_KEEP_BUILD === "1" || rmrf(work));
  const src = path.join(work, "src");
  const bld = path.join(work, "build");
  const args = cmakeArgs(env);
  const started = Date.now();
  log(`building llama-server ${info.release} (${info.commit?.slice(0, 10) ?? "?"}) from node-llama-cpp ${info.nlcVersion} in ${work}; this takes ~10 minutes on 2 cores`);

  await run("git", ["-c", "advice.detachedHead=false", "clone", "--quiet", info.bundle, src]);
  const generator = haveTool("ninja") ? ["-G", "Ninja"] : [];
  await run("cmake", ["-S", src, "-B", bld, ...generator, ...args]);
  await run("cmake", ["--build", bld, "--target", "llama-server", "-j", String(jobs)]);

  const exe = path.basename(info.binary);
  const built = [path.join(bld, "bin", exe), path.join(bld, "tools", "server", exe), path.join(bld, exe)].find((p) => fs.existsSync(p));
  if (!built) throw new BuildError(`the build finished but ${exe} was not found under ${bld}`);
  const deps = sharedLibraries(built, work);
  const seconds = Math.round((Date.now() - started) / 1000);
  log(`built ${built} in ${seconds} s`);

  // Stage next to the final folder (same file system) so that the install is one rename.
  const parent = path.dirname(info.dir);
  const stage = path.join(parent, `.stage-${info.key}-${process.pid}-${randomBytes(4).toString("hex")}`);
  cleanups.add(() => rmrf(stage));
  fs.mkdirSync(stage, { recursive: true });
  fs.copyFileSync(built, path.join(stage, exe));
  fs.chmodSync(path.join(stage, exe), 0o755);
  fs.writeFileSync(
    path.join(stage, "build-info.json"),
    JSON.stringify(
      {
        key: info.key,
        nodeLlamaCppVersion: info.nlcVersion,
        llamaCppRelease: info.release,
        llamaCppCommit: info.commit,
        cmakeArgs: args,
        generator: generator[1] ?? "default",
        jobs,
        buildSeconds: seconds,
        builtAt: new Date().toISOString(),
        host: os.hostname(),
        sharedLibraries: deps,
      },
      null,
      2,
    ) + "\n",
  );
  if (!binaryWorks(path.join(stage, exe))) throw new BuildError(`the built ${exe} does not run (\`${exe} --version\` failed)`);
  install(stage, info.dir);
  if (env.LLAMA_SERVER_KEEP_BUILD === "1") log(`kept the build folder ${work}`);
}

/** `ldd` of the binary: everything must resolve, and nothing may come from the (temporary) build tree. */
function sharedLibraries(binary, buildTree) {
  if (process.platform !== "linux") return [];
  const r = spawnSync("ldd", [binary], { encoding: "utf8" });
  if (r.status !== 0) {
    log(`warning: ldd failed: ${r.stderr.trim()}`);
    return [];
  }
  const lines = r.stdout.split("\n").map((l) => l.trim()).filter(Boolean);
  const missing = lines.filter((l) => l.includes("not found"));
  if (missing.length) throw new BuildError(`llama-server needs shared libraries that are missing:\n  ${missing.join("\n  ")}`);
  const local = lines.filter((l) => l.includes(buildTree));
  if (local.length) throw new BuildError(`llama-server links shared libraries from its build tree (expected a static build):\n  ${local.join("\n  ")}`);
  log(`shared libraries (system): ${lines.map((l) => l.split(/\s+/)[0]).join(", ")}`);
  return lines;
}

/** Rename the staged folder into place; a broken folder already there is moved aside first. */
function install(stage, dir) {
  if (fs.existsSync(dir)) {
    const trash = `${dir}.trash-${process.pid}-${randomBytes(4).toString("hex")}`;
    fs.renameSync(dir, trash);
    rmrf(trash);
  }
  fs.renameSync(stage, dir);
}

// ---------------------------------------------------------------- main

const cleanups = new Set();
function cleanup() {
  for (const fn of [...cleanups].reverse()) {
    try {
      fn();
    } catch {}
  }
  cleanups.clear();
}

let interrupted = false;
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, async () => {
    if (interrupted) return;
    interrupted = true;
    log(`interrupted (${sig}); cleaning up`);
    const child = currentChild;
    if (child?.pid && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once("exit", r));
      const kill = (s) => {
        try {
          process.kill(-child.pid, s);
        } catch {}
      };
      kill("SIGTERM");
      const timer = setTimeout(() => kill("SIGKILL"), 5000);
      await gone;
      clearTimeout(timer);
    }
    cleanup();
    process.exit(sig === "SIGINT" ? 130 : 143);
  });
}

function usage() {
  return "usage: node scripts/build-llama-server.mjs [--if-missing | --print-path | --expected-path | --force]";
}

async function main(argv) {
  let mode = "if-missing";
  for (const a of argv) {
    if (a === "--if-missing" || a === "--print-path" || a === "--expected-path" || a === "--force") mode = a.slice(2);
    else if (a === "-h" || a === "--help") {
      process.stdout.write(usage() + "\n");
      return 0;
    } else {
      log(`unknown argument: ${a}\n${usage()}`);
      return 2;
    }
  }
  const env = process.env;
  const info = llamaServerInfo(env);

  if (mode === "expected-path") {
    process.stdout.write(info.binary + "\n");
    return 0;
  }
  if (mode === "print-path") {
    if (binaryWorks(info.binary)) {
      process.stdout.write(info.binary + "\n");
      return 0;
    }
    log(`no working llama-server at ${info.binary}; run \`node scripts/build-llama-server.mjs\` to build it`);
    return 1;
  }
  if (mode === "if-missing" && binaryWorks(info.binary)) {
    process.stdout.write(info.binary + "\n");
    return 0;
  }

  fs.mkdirSync(path.dirname(info.dir), { recursive: true });
  const release = await acquireLock(`${info.dir}.lock`);
  cleanups.add(release);
  // A concurrent run may have finished the build while we waited for the lock.
  if (mode === "if-missing" && binaryWorks(info.binary)) {
    log("another run built it meanwhile");
  } else {
    await build(info, env);
  }
  process.stdout.write(info.binary + "\n");
  return 0;
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  main(process.argv.slice(2))
    .then((code) => {
      cleanup();
      process.exitCode = code;
    })
    .catch((err) => {
      cleanup();
      log(`error: ${err instanceof BuildError ? err.message : err?.stack ?? err}`);
      log("llama-server was not built");
      process.exitCode = 1;
    });
}
