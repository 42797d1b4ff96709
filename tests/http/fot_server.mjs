// What the HTTP tests share: the real fot-server (FOT_SERVER, FOT_MODEL) on
// free gRPC and HTTP ports with a key file, fotctl (FOTCTL) over gRPC with
// the writer's key, and the dictionary documents of models/fot-dict's task.
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

// The environment variable `name`, set by ctest (CMakeLists.txt).
export function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the HTTP tests through ctest`);
  return value;
}

// `count` KEY=VALUE records (4 capital letters, 4 digits) from `seed`.
export function dictionary(count, seed) {
  let state = seed >>> 0;
  const next = () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0);
  const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  const records = [];
  for (let i = 0; i < count; i++) {
    let key = "";
    for (let j = 0; j < 4; j++) key += letters[next() % 26];
    records.push([key, String(1000 + (next() % 9000))]);
  }
  return records;
}

// Starts fot-server on `model` (a model folder; FOT_MODEL's by default) in
// `work` with `keyLines` as its key file (`writerKey` also goes to
// work/writer.key for fotctl) and `extraArgs`; resolves once both ports are
// known. Its stderr so far is `stderr()`.
export async function startServer({ work, keyLines, writerKey, extraArgs = [],
                                    model = required("FOT_MODEL") }) {
  writeFileSync(join(work, "keys.txt"), keyLines.join("\n") + "\n");
  writeFileSync(join(work, "writer.key"), writerKey + "\n");
  const server = spawn(
    required("FOT_SERVER"),
    ["--model", model, "--listen", "127.0.0.1:0", "--http_listen", "127.0.0.1:0",
     "--api-keys", join(work, "keys.txt"), ...extraArgs],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  server.stderr.on("data", (chunk) => { stderr += chunk; });
  let grpcPort, httpPort;
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline && !grpcPort && server.exitCode === null) {
    httpPort ||= stderr.match(/HTTP port .* listening on 127\.0\.0\.1:(\d+)/)?.[1];
    grpcPort = stderr.match(/serving .* on 127\.0\.0\.1:(\d+)/)?.[1];
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(grpcPort && httpPort, `fot-server did not start:\n${stderr}`);
  const fotctl = (...args) =>
    execFileSync(
      required("FOTCTL"),
      ["--server", `127.0.0.1:${grpcPort}`, "--api-key-file", join(work, "writer.key"), ...args],
      { encoding: "utf8" },
    );
  return { server, grpcPort, httpPort, base: `http://127.0.0.1:${httpPort}`, fotctl,
           stderr: () => stderr };
}

// SIGTERM, and waits for the exit.
export async function stopServer(server) {
  if (!server || server.exitCode !== null) return;
  const exited = new Promise((resolve) => server.once("exit", resolve));
  server.kill("SIGTERM");
  await exited;
}
