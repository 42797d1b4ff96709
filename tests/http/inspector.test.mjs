// The web memory inspector (GET / on fot-server's HTTP port) in a real
// browser: Debian's headless Chromium driven by playwright-core (pinned in
// package-lock.json). The page lists the sessions, opens one with a
// dictionary document ingested over gRPC, asks a question, waits for the
// streamed answer, and must highlight for each token exactly the memory
// entries that the gRPC trace of the same question names, with the same
// shares. It saves a screenshot (FOT_ARTIFACTS/inspector.png).
// ctest runs it as http_inspector_tests (CMakeLists.txt).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dictionary, startServer, stopServer } from "./fot_server.mjs";

let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (e) {
  throw new Error(`playwright-core is not installed: run 'npm ci' in tests/http (${e.message})`);
}

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const KEYS = { reader: "reader-0123456789abcdef0123456789", writer: "writer-0123456789abcdef0123456789" };
const work = mkdtempSync(join(tmpdir(), "fotserve-inspector-"));
const artifacts = process.env.FOT_ARTIFACTS || work;

const records = dictionary(60, 17);
const question = `?${records[5][0]}=`;

let server, base, fotctl, browser;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (tools/install_deps.sh installs it)`);
  writeFileSync(join(work, "dictionary.txt"), records.map(([k, v]) => `${k}=${v};`).join(""));
  ({ server, base, fotctl } = await startServer({
    work, keyLines: [`${KEYS.reader} read-only`, KEYS.writer], writerKey: KEYS.writer,
  }));
  fotctl("sessions", "create", "notes", "--retrieval", "knn:64");
  fotctl("sessions", "create", "empty");
  fotctl("ingest", "notes", join(work, "dictionary.txt"), "--quiet");
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  await stopServer(server);
  rmSync(work, { recursive: true, force: true });
});

// What the page highlights now: entry id and share of each shaded token.
async function highlighted(page) {
  return page.$$eval("#heatmap .mem-token.hit", (spans) =>
    spans.map((s) => ({ id: Number(s.dataset.entryId), share: Number(s.dataset.share) })));
}

// How long a page may take to show something: a liveness bound, not a speed
// target. Playwright's 30 s default was exceeded once with ctest -j2 running
// the model's heavy tests beside Chromium on two cores.
const PAGE_TIMEOUT_MS = 180000;

function sameEntries(shown, traced, what) {
  const key = (list) => list.map((e) => e.id).sort((a, b) => a - b);
  assert.deepEqual(key(shown), key(traced), what);
  for (const t of traced) {
    const s = shown.find((e) => e.id === t.id);
    assert.ok(Math.abs(s.share - t.share) < 1e-5, `${what}: entry ${t.id} ${s.share} vs ${t.share}`);
  }
}

test("the inspector highlights the entries the gRPC trace names, token by token", async () => {
  const maxTokens = 4;
  const grpc = JSON.parse(fotctl("--json", "ask", "notes", question, "--max-tokens", String(maxTokens),
                                 "--temperature", "0", "--trace", "--trace-top", "8"));
  const page = await browser.newPage({ viewport: { width: 1360, height: 1000 } });
  page.setDefaultTimeout(PAGE_TIMEOUT_MS);
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/");
  await page.fill("#key", KEYS.reader);
  await page.dispatchEvent("#key", "change");
  await page.waitForSelector('tr.session[data-name="notes"]');
  assert.equal(await page.locator("tr.session").count(), 2);
  await page.click('tr.session[data-name="notes"]');
  await page.waitForSelector("#memory-chart svg rect");
  assert.match(await page.textContent("#documents"), /dictionary\.txt/);

  await page.fill("#question", question);
  await page.fill("#max-tokens", String(maxTokens));
  await page.click("#ask-button");
  await page.waitForSelector('#answer[data-state="done"]', { timeout: 60000 });
  const answer = await page.$$eval(".gen-token", (spans) => spans.map((s) => Number(s.dataset.tokenId)));
  assert.deepEqual(answer, grpc.tokens.map((t) => t.id), "the same answer as gRPC's Generate");

  const layer = grpc.tokens[0].trace[0];
  const heads = layer.heads.length;
  for (let i = 0; i < grpc.tokens.length; i++) {
    await page.click(`.gen-token[data-index="${i}"]`);
    for (let h = 0; h < heads; h++) {
      await page.selectOption("#head", String(h));
      await page.waitForFunction((view) => document.getElementById("heatmap").dataset.view === view,
                                 `${i}/${layer.layer}/${h}`);
      const traced = grpc.tokens[i].trace[0].heads[h].entries.map((e) => ({ id: e.entry.id, share: e.attention_share }));
      sameEntries(await highlighted(page), traced, `token ${i}, layer ${layer.layer}, head ${h}`);
    }
  }
  // Back to token 0, head 0 for the picture, with an entry's context open.
  await page.click('.gen-token[data-index="0"]');
  await page.selectOption("#head", "0");
  await page.waitForFunction((view) => document.getElementById("heatmap").dataset.view === view,
                             `0/${layer.layer}/0`);
  const strongest = grpc.tokens[0].trace[0].heads[0].entries[0];
  await page.click(`#heatmap .mem-token.hit[data-entry-id="${strongest.entry.id}"]`);
  await page.waitForSelector("#context .entry");
  assert.equal(await page.textContent("#context .entry"), strongest.entry.token_text.replace("▁", " "));
  assert.deepEqual(errors, []);
  await page.screenshot({ path: join(artifacts, "inspector.png"), fullPage: true });
  await page.close();
});

test("the inspector needs a key for the sessions once keys are set, and says so", async () => {
  const page = await browser.newPage();
  page.setDefaultTimeout(PAGE_TIMEOUT_MS);
  await page.goto(base + "/");
  await page.evaluate(() => localStorage.removeItem("fotserve-key"));
  await page.reload();
  await page.waitForFunction(() => document.getElementById("status").textContent !== "loading…");
  assert.match(await page.textContent("#status"), /key/i);
  assert.equal(await page.locator("tr.session").count(), 0);
  await page.close();
});
