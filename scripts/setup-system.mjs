#!/usr/bin/env node
/**
 * System packages the gateway needs beyond npm: the audio decoder (ffmpeg) and the OpenMP runtime
 * the whisper binary links against (libgomp1); with --test also the tools the test suite makes its
 * audio with (espeak-ng, sox).
 *
 *   node scripts/setup-system.mjs [--test] [--check]
 *
 * Idempotent and fast: when everything is present it only looks at PATH and the library folders
 * (a few milliseconds, no process started). When something is missing and we run as root on a
 * Debian-like system, the missing packages are installed with apt-get; otherwise the script prints
 * the command to run and exits 0, so a machine that serves no audio still starts. (The gateway itself
 * refuses to start when audio models are configured and the decoder is missing.) --check never
 * installs; it exits 1 when something is missing.
 */
import { spawnSync } from "node:child_process";
import { accessSync, constants, existsSync, readdirSync } from "node:fs";
import { delimiter, join } from "node:path";

const args = new Set(process.argv.slice(2));
const forTests = args.has("--test");
const checkOnly = args.has("--check");

/** What we need, how to tell it is there, and the Debian package that provides it. */
const REQUIREMENTS = [
  { what: "ffmpeg (decodes uploaded audio)", package: "ffmpeg", present: () => onPath("ffmpeg") },
  { what: "libgomp1 (OpenMP runtime of the whisper binary)", package: "libgomp1", present: () => hasLibrary("libgomp.so.1") },
  ...(forTests
    ? [
        { what: "espeak-ng (speech for audio tests)", package: "espeak-ng", present: () => onPath("espeak-ng") },
        { what: "sox (audio conversion for audio tests)", package: "sox", present: () => onPath("sox") },
      ]
    : []),
];

function onPath(command) {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      // not in this folder
    }
  }
  return false;
}

const LIBRARY_DIRS = ["/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/local/lib"];

function hasLibrary(name) {
  for (const base of LIBRARY_DIRS) {
    if (existsSync(join(base, name))) return true;
    let entries = [];
    try {
      entries = readdirSync(base, { withFileTypes: true });
    } catch {
      continue;
    }
    // Multiarch folders: /usr/lib/x86_64-linux-gnu and the like.
    for (const entry of entries) {
      if (entry.isDirectory() && entry.name.endsWith("-linux-gnu") && existsSync(join(base, entry.name, name))) return true;
    }
  }
  return false;
}

const missing = () => REQUIREMENTS.filter((r) => !r.present());

let todo = missing();
if (todo.length === 0) process.exit(0);

const names = todo.map((r) => r.package);
const canInstall = !checkOnly && process.platform === "linux" && process.getuid?.() === 0 && onPath("apt-get");

if (canInstall) {
  console.error(`setup-system: installing ${names.join(", ")} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const install = () =>
    spawnSync("apt-get", ["install", "-y", "-q", "--no-install-recommends", ...names], { stdio: ["ignore", "ignore", "inherit"], env }).status;
  // A fresh container has no package lists; refresh them only when the first attempt fails.
  if (install() !== 0) {
    spawnSync("apt-get", ["update", "-q"], { stdio: ["ignore", "ignore", "inherit"], env });
    install();
  }
  todo = missing();
  if (todo.length === 0) process.exit(0);
}

console.error(
  [
    "setup-system: missing system packages:",
    ...todo.map((r) => `  - ${r.what}`),
    `Install them with:  sudo apt-get install --no-install-recommends ${todo.map((r) => r.package).join(" ")}`,
    "(or run `sudo node scripts/setup-system.mjs" + (forTests ? " --test" : "") + "`)",
  ].join("\n"),
);
process.exit(checkOnly ? 1 : 0);
