/**
 * Start-up checks, run only when whisper models are configured: the decoder runs, and the whisper
 * runner can load its native binding (which needs libgomp1). A missing piece stops start-up with a
 * message that says what to install, instead of surfacing as a 500 on the first request.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const RUNNER_ENTRY = fileURLToPath(new URL("./runner/main.js", import.meta.url));
const SETUP_HINT = "run `sudo node scripts/setup-system.mjs`, or on Debian/Ubuntu `sudo apt-get install --no-install-recommends";

function run(command: string, args: string[], timeoutMs: number): Promise<{ code: number | null; out: string; error?: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.stdout.setEncoding("utf8").on("data", (text: string) => (out += text));
    child.stderr.setEncoding("utf8").on("data", (text: string) => (out += text));
    child.once("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ code: null, out, error });
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** Problems found (empty when all is well); `version` is the decoder's first line. */
export async function preflight(ffmpeg: string): Promise<{ problems: string[]; version: string | undefined }> {
  const [decoder, runner] = await Promise.all([
    run(ffmpeg, ["-hide_banner", "-version"], 10_000),
    run(process.execPath, [RUNNER_ENTRY, "--self-check"], 20_000),
  ]);
  const problems: string[] = [];
  if (decoder.error?.code === "ENOENT") {
    problems.push(`audio: the decoder '${ffmpeg}' was not found. Install ffmpeg (${SETUP_HINT} ffmpeg\`) or set audio.ffmpeg to its path.`);
  } else if (decoder.code !== 0) {
    problems.push(`audio: the decoder '${ffmpeg} -version' failed (${decoder.error?.message ?? `exit code ${decoder.code}`}).`);
  }
  if (runner.code !== 0) {
    const why = runner.out.trim().split("\n").at(-1) ?? `exit code ${runner.code}`;
    const hint = /libgomp/.test(runner.out) ? ` Install libgomp1 (${SETUP_HINT} libgomp1\`).` : "";
    problems.push(`audio: the whisper engine (@fugood/whisper.node) cannot be loaded: ${why}.${hint}`);
  }
  return { problems, version: decoder.code === 0 ? decoder.out.split("\n")[0] : undefined };
}
