// js_client.mjs MODULE_DIR HUB_URL — drives the real @huggingface/hub client against the local
// Hub server and prints what it got as one JSON object (test_js_client.py checks it).
import crypto from "node:crypto";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [moduleDir, hubUrl] = process.argv.slice(2);
const hub = await import(pathToFileURL(path.join(moduleDir, "@huggingface/hub/dist/index.mjs")));
const sha256 = (buf) => crypto.createHash("sha256").update(buf).digest("hex");
const out = {};

const info = await hub.modelInfo({ name: "demo/stories", hubUrl, additionalFields: ["sha"] });
out.sha = info.sha;
out.files = [];
for await (const f of hub.listFiles({ repo: "demo/stories", recursive: true, hubUrl }))
  out.files.push({ path: f.path, size: f.size, type: f.type, lfs: f.lfs ? f.lfs.oid : null });
const weights = await hub.downloadFile({ repo: "demo/stories", path: "model.safetensors", hubUrl });
out.weights = sha256(Buffer.from(await weights.arrayBuffer()));
const config = await hub.downloadFile({ repo: "demo/stories", path: "config.json", hubUrl,
                                        accessToken: "hf_good" });
out.config = sha256(Buffer.from(await config.arrayBuffer()));
out.exists = [await hub.fileExists({ repo: "demo/stories", path: "config.json", hubUrl }),
              await hub.fileExists({ repo: "demo/stories", path: "nope.json", hubUrl })];
out.errors = {};
for (const [name, repo, token] of [["missing", "demo/none", undefined],
                                   ["gated_anonymous", "org/gated", undefined],
                                   ["gated_other", "org/gated", "hf_other"],
                                   ["bad_token", "org/gated", "hf_bad"]]) {
  try {
    await hub.downloadFile({ repo, path: "f.txt", hubUrl, accessToken: token });
    out.errors[name] = null;
  } catch (e) {
    out.errors[name] = [e.statusCode ?? null, String(e.message).split(". URL:")[0]];
  }
}
const gated = await hub.downloadFile({ repo: "org/gated", path: "f.txt", hubUrl,
                                       accessToken: "hf_good" });
out.gated = await gated.text();
console.log(JSON.stringify(out));
