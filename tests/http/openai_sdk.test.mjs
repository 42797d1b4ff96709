// fot-server's HTTP port end to end through the official `openai` SDK for
// Node (pinned in package-lock.json): the real server (FOT_SERVER) with
// models/fot-dict (FOT_MODEL) and API keys, a session made and filled with
// fotctl (FOTCTL) over gRPC, then completions, a streamed chat, stop strings,
// errors, keys, a client that hangs up, /metrics and /healthz over HTTP.
// ctest runs it as http_sdk_tests (CMakeLists.txt); `npm ci` in this folder
// installs the SDK (tools/install_deps.sh does).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dictionary, startServer, stopServer } from "./fot_server.mjs";

let OpenAI;
try {
  ({ default: OpenAI } = await import("openai"));
} catch (e) {
  throw new Error(`the openai SDK is not installed: run 'npm ci' in tests/http (${e.message})`);
}

// Keys of the server's key file: an unprefixed reader, a writer for fotctl,
// and a reader limited to sessions starting with "alice-".
const KEYS = {
  reader: "reader-0123456789abcdef0123456789",
  writer: "writer-0123456789abcdef0123456789",
  alice: "alice-0123456789abcdef01234567890",
};

const work = mkdtempSync(join(tmpdir(), "fotserve-http-"));
const records = dictionary(60, 17);
const [askedKey] = records[3];  // far from the question: its record is in memory
let server, base, fotctl;

function client(key = KEYS.reader) {
  return new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0, timeout: 60000 });
}

async function metrics() {
  const response = await fetch(`${base}/metrics`, {
    headers: { Authorization: `Bearer ${KEYS.reader}` },
  });
  assert.equal(response.status, 200);
  return response.text();
}

// The value of the sample `name{labels}` in a text exposition (0 if absent).
function sample(text, series) {
  for (const line of text.split("\n")) {
    if (line.startsWith(series + " ")) return Number(line.slice(series.length + 1));
  }
  return 0;
}

before(async () => {
  writeFileSync(join(work, "dict.txt"), records.map(([k, v]) => `${k}=${v};`).join(""));
  ({ server, base, fotctl } = await startServer({
    work,
    keyLines: [`${KEYS.reader} read-only`, KEYS.writer, `${KEYS.alice} read-only prefix=alice-`],
    writerKey: KEYS.writer,
    extraArgs: ["--data_dir", join(work, "data")],
  }));
  fotctl("sessions", "create", "notes", "--retrieval", "knn:64");
  fotctl("sessions", "create", "alice-notes");
  fotctl("ingest", "notes", join(work, "dict.txt"), "--quiet");
});

after(async () => {
  await stopServer(server);
  rmSync(work, { recursive: true, force: true });
});

test("healthz answers 200 once the model and the sessions have loaded, without a key", async () => {
  const response = await fetch(`${base}/healthz`);
  assert.equal(response.status, 200);
  assert.equal((await response.json()).status, "ok");
});

test("models lists the sessions a key covers", async () => {
  const all = [];
  for await (const model of client().models.list()) all.push(model.id);
  assert.deepEqual(all.sort(), ["alice-notes", "notes"]);
  const alices = [];
  for await (const model of client(KEYS.alice).models.list()) alices.push(model.id);
  assert.deepEqual(alices, ["alice-notes"]);
  const notes = await client().models.retrieve("notes");
  assert.equal(notes.object, "model");
  assert.equal(notes.fotserve.retrieval, "knn:64");
});

test("a completion answers as the gRPC Generate does, with usage", async () => {
  const question = `?${askedKey}=`;
  const grpc = JSON.parse(fotctl("--json", "ask", "notes", question, "--max-tokens", "6"));
  const completion = await client().completions.create({
    model: "notes", prompt: question, max_tokens: 6, temperature: 0,
  });
  assert.equal(completion.object, "text_completion");
  assert.match(completion.id, /^cmpl-/);
  assert.equal(completion.model, "notes");
  const [choice] = completion.choices;
  assert.equal(choice.text, grpc.text);
  assert.equal(choice.finish_reason, grpc.finish_reason === "length" ? "length" : "stop");
  assert.equal(completion.usage.prompt_tokens, grpc.prompt_tokens);
  assert.equal(completion.usage.completion_tokens, grpc.generated_tokens);
  assert.equal(completion.usage.total_tokens, grpc.prompt_tokens + grpc.generated_tokens);
});

test("stop strings end the text before them, with finish_reason stop", async () => {
  const value = records[3][1];
  const completion = await client().completions.create({
    model: "notes", prompt: `?${askedKey}=`, max_tokens: 12, temperature: 0, stop: [";", "\n"],
  });
  const [choice] = completion.choices;
  assert.equal(choice.finish_reason, "stop");
  assert.ok(!choice.text.includes(";"), choice.text);
  assert.equal(choice.text, value, "the answer from memory");
});

test("a streamed completion gives the same text as a whole one", async () => {
  const request = { model: "notes", prompt: `?${askedKey}=`, max_tokens: 10, temperature: 0 };
  const whole = await client().completions.create(request);
  let text = "";
  let finish = null;
  for await (const chunk of await client().completions.create({ ...request, stream: true })) {
    text += chunk.choices[0].text;
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  assert.equal(text, whole.choices[0].text);
  assert.equal(finish, whole.choices[0].finish_reason);
});

test("a streamed chat sends role, content chunks, a finish reason, usage and [DONE]", async () => {
  const request = {
    model: "notes",
    messages: [{ role: "system", content: "Answer from memory." },
               { role: "user", content: `?${askedKey}=` }],
    max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true },
  };
  const chunks = [];
  for await (const chunk of await client().chat.completions.create(request)) chunks.push(chunk);
  assert.ok(chunks.length >= 3, JSON.stringify(chunks));
  assert.equal(chunks[0].object, "chat.completion.chunk");
  assert.equal(chunks[0].choices[0].delta.role, "assistant");
  assert.ok(chunks.every((c) => c.id === chunks[0].id));
  const usage = chunks.at(-1);
  assert.deepEqual(usage.choices, []);
  assert.ok(usage.usage.prompt_tokens > 0);
  assert.ok(usage.usage.completion_tokens >= 1 && usage.usage.completion_tokens <= 8);
  const last = chunks.at(-2);
  assert.ok(["stop", "length"].includes(last.choices[0].finish_reason));
  const content = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
  const whole = await client().chat.completions.create({ ...request, stream: false,
                                                         stream_options: undefined });
  assert.equal(content, whole.choices[0].message.content);
  assert.equal(whole.usage.completion_tokens, usage.usage.completion_tokens);

  // On the wire: server-sent events ending in data: [DONE].
  const raw = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${KEYS.reader}`, "Content-Type": "application/json" },
    body: JSON.stringify(request),
  });
  assert.equal(raw.status, 200);
  assert.match(raw.headers.get("content-type"), /^text\/event-stream/);
  const body = await raw.text();
  assert.ok(body.startsWith("data: {"), body);
  assert.ok(body.endsWith("data: [DONE]\n\n"), body);
});

test("fotserve.trace names the memory entries each token read", async () => {
  const completion = await client().completions.create({
    model: "notes", prompt: `?${askedKey}=`, max_tokens: 2, temperature: 0,
    fotserve: { trace: true, trace_top: 4 },
  });
  const tokens = completion.fotserve.tokens;
  assert.equal(tokens.length, 2);
  const [layer] = tokens[0].trace;
  assert.equal(layer.layer, 2);  // models/fot-dict's memory layer
  const entries = layer.heads[0].entries;
  assert.equal(entries.length, 4);
  assert.ok(entries.some((e) => e.document === "dict.txt"), JSON.stringify(entries));
  assert.ok(entries.every((e) => e.attention_share >= 0 && e.attention_share <= 1));
});

test("errors come in OpenAI's shape with their HTTP status", async () => {
  await assert.rejects(
    client().completions.create({ model: "no-such-session", prompt: "x", max_tokens: 2 }),
    (e) => e.status === 404 && e.code === "model_not_found" && e.param === "model" &&
           e.type === "invalid_request_error" && /no-such-session/.test(e.message),
  );
  await assert.rejects(
    client().completions.create({ model: "notes", prompt: "x", max_tokens: 0 }),
    (e) => e.status === 400 && e.param === "max_tokens" && e.type === "invalid_request_error",
  );
  await assert.rejects(
    client().chat.completions.create({ model: "notes", messages: [], max_tokens: 2 }),
    (e) => e.status === 400 && e.param === "messages",
  );
  const raw = await fetch(`${base}/v1/completions`, {
    method: "POST", headers: { Authorization: `Bearer ${KEYS.reader}` }, body: "{not json",
  });
  assert.equal(raw.status, 400);
  const error = (await raw.json()).error;
  assert.deepEqual(Object.keys(error).sort(), ["code", "message", "param", "type"]);
});

test("keys: none gets 401, a key without the session gets 403", async () => {
  const missing = await fetch(`${base}/v1/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model: "notes", prompt: "x", max_tokens: 1 }),
  });
  assert.equal(missing.status, 401);
  assert.equal((await missing.json()).error.code, "invalid_api_key");
  await assert.rejects(client("not-a-key-0123456789abcdef").models.list(),
                       (e) => e.status === 401);
  await assert.rejects(
    client(KEYS.alice).completions.create({ model: "notes", prompt: "x", max_tokens: 1 }),
    (e) => e.status === 403 && e.type === "permission_error",
  );
  const metricsWithPrefixKey = await fetch(`${base}/metrics`, {
    headers: { Authorization: `Bearer ${KEYS.alice}` },
  });
  assert.equal(metricsWithPrefixKey.status, 403);
});

test("a client that hangs up mid-stream stops its generation", async () => {
  const before = sample(await metrics(), "fotserve_generated_tokens_total");
  const abort = new AbortController();
  const stream = await client().completions.create(
    { model: "notes", prompt: `?${askedKey}=`, max_tokens: 60000, temperature: 0, stream: true,
      fotserve: { ignore_eos: true } },
    { signal: abort.signal },
  );
  let seen = 0;
  try {
    for await (const chunk of stream) {
      if (++seen === 20) {
        abort.abort();
        break;
      }
    }
  } catch (e) {
    assert.equal(e.name, "APIUserAbortError", String(e));  // or the iteration just ends
  }
  assert.equal(seen, 20);
  let text = "";
  for (let i = 0; i < 100; i++) {  // the server notices at its next write
    text = await metrics();
    if (sample(text, 'fotserve_active_streams{kind="generate"}') === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(sample(text, 'fotserve_active_streams{kind="generate"}'), 0);
  const generated = sample(text, "fotserve_generated_tokens_total") - before;
  assert.ok(generated < 60000, `generated ${generated} tokens after the client left`);
});

test("metrics count the calls above, over gRPC and HTTP", async () => {
  const text = await metrics();
  assert.match(text, /^# TYPE fotserve_requests_total counter$/m);
  const http = (route, code) =>
    sample(text, `fotserve_requests_total{api="http",method="${route}",code="${code}"}`);
  assert.ok(http("POST /v1/completions", 200) >= 5);
  assert.ok(http("POST /v1/chat/completions", 200) >= 3);
  assert.ok(http("POST /v1/completions", 404) >= 1);
  assert.ok(http("POST /v1/completions", 400) >= 2);
  assert.ok(http("POST /v1/completions", 401) >= 1);
  assert.ok(http("POST /v1/completions", 403) >= 1);
  assert.ok(sample(text, 'fotserve_requests_total{api="grpc",method="Ingest",code="OK"}') >= 1);
  assert.ok(sample(text, 'fotserve_requests_total{api="grpc",method="Generate",code="OK"}') >= 1);
  const streamTokens = sample(text, 'fotserve_session_stream_tokens{session="notes"}');
  assert.ok(streamTokens >= records.length * 10);
  assert.equal(sample(text, "fotserve_ingested_tokens_total"), streamTokens);
  assert.ok(sample(text, "fotserve_generated_tokens_total") > 20);
  assert.ok(sample(text, "fotserve_time_to_first_token_seconds_count") >= 8);
  assert.ok(sample(text, "fotserve_inter_token_latency_seconds_count") > 0);
  assert.ok(sample(text, 'fotserve_time_to_first_token_seconds_bucket{le="+Inf"}') >= 8);
  assert.equal(sample(text, "fotserve_sessions"), 2);
  assert.ok(sample(text, 'fotserve_memory_entries{session="notes",index="flat"}') > 0);
  assert.ok(sample(text, 'fotserve_memory_bytes{session="notes",index="flat"}') > 0);
  // The queries above searched memory (knn:64), which took some time.
  assert.ok(sample(text, 'fotserve_memory_searches_total{session="notes",index="flat"}') > 0);
  assert.match(text, /^# TYPE fotserve_memory_search_seconds_total counter$/m);
  assert.ok(sample(text, 'fotserve_memory_search_seconds_total{session="notes",index="flat"}') > 0);
  assert.ok(sample(text, "fotserve_store_writes_total{outcome=\"ok\"}") >= 1);
  assert.match(text, /^fotserve_request_duration_seconds_count\{api="http",method="POST \/v1\/completions"\} \d+$/m);
});
