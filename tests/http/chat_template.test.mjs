// A model folder's chat_template.json drives /v1/chat/completions: the real
// fot-server (FOT_SERVER) on a copy of models/fot-dict (FOT_MODEL, linked
// file by file) whose template renders a user message as the dictionary's
// question (`?KEY=`) and stops at the record's end (`;`), so that a chat
// answers the value from memory, as the completion of the same prompt does.
// A malformed template stops the server at startup. ctest runs it as
// http_chat_template_tests (CMakeLists.txt).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dictionary, required, startServer, stopServer } from "./fot_server.mjs";

let OpenAI;
try {
  ({ default: OpenAI } = await import("openai"));
} catch (e) {
  throw new Error(`the openai SDK is not installed: run 'npm ci' in tests/http (${e.message})`);
}

const KEYS = { reader: "reader-0123456789abcdef0123456789", writer: "writer-0123456789abcdef0123456789" };
// The dictionary's own format as a chat: "?KEY=" asks, "VALUE;" answers.
const TEMPLATE = {
  system: {},
  user: { prefix: "?", suffix: "=" },
  assistant: { suffix: ";" },
  stop: [";"],
};

const work = mkdtempSync(join(tmpdir(), "fotserve-chat-template-"));
const records = dictionary(60, 17);
let server, base, fotctl;

// A model folder with FOT_MODEL's files and `template` as chat_template.json.
function modelWith(name, template) {
  const dir = join(work, name);
  mkdirSync(dir);
  const source = required("FOT_MODEL");
  for (const file of readdirSync(source)) symlinkSync(join(source, file), join(dir, file));
  writeFileSync(join(dir, "chat_template.json"), template);
  return dir;
}

function client() {
  return new OpenAI({ baseURL: `${base}/v1`, apiKey: KEYS.reader, maxRetries: 0, timeout: 60000 });
}

before(async () => {
  writeFileSync(join(work, "dict.txt"), records.map(([k, v]) => `${k}=${v};`).join(""));
  ({ server, base, fotctl } = await startServer({
    work,
    model: modelWith("model", JSON.stringify(TEMPLATE)),
    keyLines: [`${KEYS.reader} read-only`, KEYS.writer],
    writerKey: KEYS.writer,
  }));
  fotctl("sessions", "create", "notes", "--retrieval", "knn:64");
  fotctl("ingest", "notes", join(work, "dict.txt"), "--quiet");
});

after(async () => {
  await stopServer(server);
  rmSync(work, { recursive: true, force: true });
});

test("models name the chat template in use", async () => {
  const notes = await client().models.retrieve("notes");
  assert.equal(notes.fotserve.chat_template, "chat_template.json");
});

test("a chat is rendered by the folder's template and stops at its stop string", async () => {
  const [key, value] = records[3];
  const chat = await client().chat.completions.create({
    model: "notes", messages: [{ role: "user", content: key }], max_tokens: 12, temperature: 0,
  });
  assert.equal(chat.choices[0].message.content, value, "the value from memory");
  assert.equal(chat.choices[0].finish_reason, "stop");
  const completion = await client().completions.create({
    model: "notes", prompt: `?${key}=`, max_tokens: 12, temperature: 0, stop: [";"],
  });
  assert.equal(chat.usage.prompt_tokens, completion.usage.prompt_tokens);
  assert.equal(chat.choices[0].message.content, completion.choices[0].text);
});

test("earlier turns render with the assistant's suffix", async () => {
  const [[k0, v0], [k1]] = [records[1], records[7]];
  const chat = await client().chat.completions.create({
    model: "notes", max_tokens: 12, temperature: 0,
    messages: [{ role: "user", content: k0 }, { role: "assistant", content: v0 },
               { role: "user", content: k1 }],
  });
  const completion = await client().completions.create({
    model: "notes", prompt: `?${k0}=${v0};?${k1}=`, max_tokens: 12, temperature: 0, stop: [";"],
  });
  assert.equal(chat.usage.prompt_tokens, completion.usage.prompt_tokens);
  assert.equal(chat.choices[0].message.content, completion.choices[0].text);
});

test("a malformed chat_template.json stops the server, naming the file, not its path", () => {
  const model = modelWith("bad-model", JSON.stringify({ ...TEMPLATE, user: { prefix: 1 } }));
  const run = spawnSync(
    required("FOT_SERVER"),
    ["--model", model, "--listen", "127.0.0.1:0", "--http_listen", "127.0.0.1:0"],
    { encoding: "utf8", timeout: 60000 },
  );
  assert.equal(run.status, 1, run.stderr);
  assert.match(run.stderr,
               /^fot-server: chat_template.json in the model folder: 'user.prefix' must be a string/m);
  assert.ok(!run.stderr.includes(model), run.stderr);
});
