#!/usr/bin/env node
// Produce the expected token ids of tests/tok/expected/ with the reference library (the
// Hugging Face `tokenizers` Rust library, npm package `tokenizers`). Run once; the tests only
// read the stored files. Usage (the exact command is recorded in docs/TOKENIZER.md):
//   NODE_PATH=DIR_WITH_node_modules node tests/tok/make-expected.js ../shared/data tests/tok/expected [NAME...]
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const { Tokenizer } = require('tokenizers');

const [, , DATA, OUT, ...ONLY] = process.argv; // ONLY: regenerate just these files
if (!DATA || !OUT) {
  console.error('usage: make-expected.js SHARED_DATA OUTDIR');
  process.exit(2);
}
const TOK = path.join(DATA, 'tokenizers');
const VEC = path.join(DATA, 'vectors');
const MAIN = ['gpt2', 'llama-2', 'qwen2.5', 'llama-3.1'];
const TEXTS = {
  wikitext: 'text/wikitext-2-raw/wiki.test.raw',
  shakespeare: 'text/tinyshakespeare/input.txt',
  tinystories: 'text/tinystories-sample/tinystories_sample.txt',
};
// Bytes that are not valid UTF-8: the reference sees them decoded with U+FFFD replacement
// (Buffer#toString uses the WHATWG decoder, which replaces maximal subparts exactly as
// Python's errors="replace" does).
const BAD_UTF8 = ['61ff62', 'c3', 'e282', 'e228a1', 'f09f98', 'eda080', 'c0af', 'f4908080',
  '4865ed9fbf6c6c6f', '80bfc2', 'f0288cbc', 'e2829f21'];

const write = (name, obj) => {
  fs.mkdirSync(path.dirname(path.join(OUT, name)), { recursive: true });
  fs.writeFileSync(path.join(OUT, name), zlib.gzipSync(JSON.stringify(obj), { level: 9 }));
};

async function ids(tok, text, special) {
  const enc = await tok.encode(text, null, { addSpecialTokens: special });
  return enc.getIds();
}

function llamaCppCases(file) {
  const inp = fs.readFileSync(path.join(VEC, 'llama.cpp', file + '.inp'), 'utf8')
    .split('\n__ggml_vocab_test__\n');
  const out = fs.readFileSync(path.join(VEC, 'llama.cpp', file + '.out'), 'utf8').split('\n');
  inp[inp.length - 1] = inp[inp.length - 1].replace(/\n__ggml_vocab_test__\n?$/, '');
  return inp.map((text, i) => ({
    src: `llama.cpp/${file} #${i}`, text, special: false,
    want: out[i] === undefined ? null : out[i].trim().split(/\s+/).filter(Boolean).map(Number),
  }));
}

function swiftMultilingual(file, special) {
  const inputs = JSON.parse(fs.readFileSync(
    path.join(VEC, 'swift-transformers/multilingual-conformance/inputs.json'))).inputs;
  const ref = JSON.parse(fs.readFileSync(
    path.join(VEC, 'swift-transformers/multilingual-conformance', file))).entries;
  return inputs.map((e) => ({ src: `swift/${file} ${e.id}`, text: e.text, special,
    want: ref[e.id] ? ref[e.id].input_ids : null }));
}

function swiftEncoded(file) {
  const e = JSON.parse(fs.readFileSync(path.join(VEC, 'swift-transformers/encoded', file)));
  return [{ src: `swift/encoded/${file}`, text: e.text, special: true, want: e.token_ids }];
}

function swiftTests(key) {
  const t = JSON.parse(fs.readFileSync(
    path.join(VEC, 'swift-transformers/encoded/tokenizer_tests.json')))[key];
  return t.map((c, i) => ({ src: `swift/tokenizer_tests ${key} #${i}`, text: c.input,
    special: true, want: c.encoded.input_ids }));
}

// The pairing table of ../shared/data/README.md.
const PAIRS = {
  'gpt2': () => [...llamaCppCases('ggml-vocab-gpt-2.gguf'),
    ...swiftMultilingual('openai-community__gpt2.json', true),
    ...swiftEncoded('gpt2_encoded_tokens.json'), ...swiftTests('distilgpt2')],
  'llama-2': () => [...llamaCppCases('ggml-vocab-llama-spm.gguf'),
    ...swiftMultilingual('TinyLlama__TinyLlama-1.1B-Chat-v1.0.json', true),
    ...swiftEncoded('llama_encoded.json'),
    ...swiftTests('coreml-projects/Llama-2-7b-chat-coreml')],
  'llama-3': () => llamaCppCases('ggml-vocab-llama-bpe.gguf'),
  'llama-3.1': () => [...llamaCppCases('ggml-vocab-llama-bpe.gguf'),
    ...swiftEncoded('llama_3.2_encoded.json'),
    ...swiftTests('pcuenq/Llama-3.2-1B-Instruct-tokenizer')],
  'qwen2.5': () => [...llamaCppCases('ggml-vocab-qwen2.gguf'),
    ...swiftMultilingual('Qwen__Qwen2.5-0.5B.json', true)],
  'qwen3': () => [...llamaCppCases('ggml-vocab-qwen2.gguf'),
    ...swiftMultilingual('Qwen__Qwen2.5-0.5B.json', true)],
  'falcon-7b': () => [...llamaCppCases('ggml-vocab-falcon.gguf'),
    ...swiftEncoded('falcon_encoded.json'), ...swiftTests('tiiuae/falcon-7b')],
  'phi-3-mini': () => llamaCppCases('ggml-vocab-phi-3.gguf'),
  'gemma': () => [...swiftEncoded('gemma_encoded.json'), ...swiftTests('pcuenq/gemma-tokenizer')],
  'gpt-neox-20b': () => [],
  'mistral-7b': () => [],
  'phi-2': () => [],
  't5-small': () => swiftMultilingual('google-t5__t5-small.json', true),
};

// Strings every tokenizer gets on top of its vectors: the multilingual set without its ids,
// special-token edge cases and invalid UTF-8.
function extraCases() {
  const inputs = JSON.parse(fs.readFileSync(
    path.join(VEC, 'swift-transformers/multilingual-conformance/inputs.json'))).inputs;
  const cases = inputs.map((e) => ({ src: `multilingual ${e.id}`, text: e.text }));
  const specials = ['<s>hello</s>', 'a <s> b', ' <|endoftext|> x<|endoftext|>y ',
    '<|begin_of_text|>Hi<|eot_id|>', '<|im_start|>user\nhi<|im_end|>', '<mask> the  and the',
    'singing the theme', '', ' ', '\n\n\n', 'a  b   c    d', '   leading and trailing   ',
    "I'M you'RE 12345678 ٣٤٥ ①②", '\u00a0\u2028\u3000\u0085x', 'Ｆｕｌｌｗｉｄｔｈ ﬁ ℌ',
    'e\u0301 café Å Å', '🦙🦙 🦙', 'İstanbul ΣΑΣ'];
  specials.forEach((t, i) => cases.push({ src: `edge #${i}`, text: t }));
  // long runs: regex backtracking (\s+(?!\S)), digit grouping, merges over long words
  const runs = [' '.repeat(5000), '7'.repeat(5000), '!?'.repeat(2500), 'ab'.repeat(2500),
    '\n \n'.repeat(1500), 'x'.repeat(5000), '\u2581'.repeat(300) + 'a b', '\t \u3000 '.repeat(800)];
  runs.forEach((t, i) => cases.push({ src: `run #${i}`, text: t }));
  randomMix(150).forEach((t, i) => cases.push({ src: `random #${i}`, text: t }));
  BAD_UTF8.forEach((h) => cases.push({ src: `invalid-utf8 ${h}`, hex: h }));
  return cases;
}

// Deterministic random strings from fragments that stress every stage: scripts, case, marks,
// joiners, whitespace kinds, digits, punctuation, special-token pieces, control characters.
function randomMix(count) {
  let seed = 12345;
  const rnd = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
  const pool = ['a', 'b', 'Z', 'é', 'ß', 'İ', 'ﬁ', 'ǅ', 'Ω', 'σ', 'ς', ' ', '  ', '\t', '\n',
    '\r\n', '\u00a0', '\u3000', '\u2028', '\u0085', '1', '23', '٣', '①', '²', '.', ',', '!',
    '?', "'s", "'RE", "'", '"', '(', ')', '-', '_', '<s>', '</s>', '<|endoftext|>',
    '<|im_start|>', '<unk>', '▁', '中', '文', 'か', '한', 'ไ', '🦙', '👍🏽', 'e\u0301', '\u200d',
    '\u0000', '\u001f', '&', '@', '#', '$', '%', 'http://x.y', 'ab12', 'x'.repeat(40),
    ' '.repeat(20), '\n\n\n', '<', '>', '<|', '|>', '[UNK]', '\u{10FFFF}', '\uFEFF', '\u0301',
    '\u0915\u094d\u0937'];
  const out = [];
  for (let i = 0; i < count; i++) {
    let s = '';
    for (let k = 1 + Math.floor(rnd() * 12); k > 0; k--) s += pool[Math.floor(rnd() * pool.length)];
    out.push(s);
  }
  return out;
}

const caseText = (c) => c.hex !== undefined ? Buffer.from(c.hex, 'hex').toString('utf8') : c.text;

async function runCases(tok, cases) {
  const res = [];
  for (const c of cases) {
    const text = caseText(c);
    for (const special of c.special === undefined ? [true, false] : [c.special]) {
      const got = await ids(tok, text, special);
      // decode(ids, skip_special_tokens=false): what tok_decode must give back
      const r = { src: c.src, special, ids: got, decoded: await tok.decode(got, false) };
      if (c.hex !== undefined) r.hex = c.hex; else r.text = c.text;
      if (c.want && JSON.stringify(c.want) !== JSON.stringify(got)) {
        console.error(`note: ${c.src}: reference differs from the vector file`);
        r.vector_differs = true;
      }
      res.push(r);
    }
  }
  return res;
}

async function textIds(tok, name, file, full) {
  const buf = fs.readFileSync(path.join(DATA, file));
  const out = {};
  const slices = full ? [[0, buf.length]] : [];
  if (!full || buf.length > 100000) slices.push([0, Math.min(100000, buf.length)]);
  for (const [a, b] of slices) {
    const text = buf.subarray(a, b).toString('utf8');
    const t0 = process.hrtime.bigint();
    const got = await ids(tok, text, true);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    out[`${name}:${a}:${b}`] = got.join(' ');
    console.error(`  ${name} [${a}, ${b}): ${got.length} ids, ${ms.toFixed(0)} ms`);
  }
  return out;
}

// Vocabulary size with added tokens, and what the template puts around a sequence.
async function info(tok) {
  const plain = await ids(tok, 'x', false), full = await ids(tok, 'x', true);
  let i = 0;
  while (i < full.length && full[i] !== plain[0]) i++;
  return { vocab_size: tok.getVocabSize(true), before: full.slice(0, i),
    after: full.slice(i + plain.length) };
}

function variantJson(v) {
  const j = JSON.parse(fs.readFileSync(path.join(TOK, v.base, 'tokenizer.json'), 'utf8'));
  Object.assign(j, v.set || {});
  Object.assign(j.model, v.set_model || {});
  return JSON.stringify(j);
}

async function main() {
  const wanted = (n) => !ONLY.length || ONLY.includes(n);
  for (const name of Object.keys(PAIRS).filter(wanted)) {
    console.error(name);
    const tok = await Tokenizer.fromFile(path.join(TOK, name, 'tokenizer.json'));
    const cases = await runCases(tok, [...PAIRS[name](), ...extraCases()]);
    let texts = {};
    for (const [tname, file] of Object.entries(TEXTS))
      Object.assign(texts, await textIds(tok, tname, file, MAIN.includes(name)));
    write(`${name}.json.gz`, { tokenizer: name, info: await info(tok), cases, texts });
  }
  const variants = JSON.parse(fs.readFileSync(path.join(__dirname, 'variants.json'))).variants;
  for (const v of variants.filter((x) => wanted(`variant-${x.name}`))) {
    console.error(v.name);
    const tok = Tokenizer.fromString(variantJson(v));
    const cases = await runCases(tok, extraCases());
    const texts = await textIds(tok, 'tinystories', TEXTS.tinystories, true);
    Object.assign(texts, await textIds(tok, 'shakespeare', TEXTS.shakespeare, false));
    write(`variant-${v.name}.json.gz`,
      { tokenizer: v.base, variant: v.name, info: await info(tok), cases, texts });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
